//! The Terraform plugin protocol (tfplugin6 over go-plugin) and a small
//! framework for declaring resources. No fleet words live here.
//!
//! - `plugin_server`: go-plugin launch, handshake, AutoMTLS, health,
//!   controller; serves any tfplugin6 service.
//! - `value`: cty types and values, msgpack/JSON DynamicValue codec.
//! - `schema`, `validators`, `diag`: how resources are declared and how
//!   errors reach the user.
//! - `framework`: the traits a provider, resource and data source implement.
//! - `plan`: generic planning from schema declarations.
//! - `server`: the tfplugin6 `Provider` service over a framework provider.

pub mod convert;
pub mod diag;
pub mod framework;
pub mod model;
pub mod plan;
pub mod plugin_server;
pub mod plugin_tls;
pub mod schema;
pub mod server;
pub mod validators;
pub mod value;

pub use diag::{AttrPath, Diagnostic, Diagnostics};
pub use framework::{
    AnyDataSource, AnyEphemeralResource, AnyResource, DataSource, EphemeralResource, PlanChange,
    Provider, Resource,
};
pub use schema::{Attribute, Block, NestedBlock, Schema};
pub use value::{Type, Value};
