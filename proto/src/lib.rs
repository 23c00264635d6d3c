//! Generated gRPC bindings for the wire contracts in `proto/proto/`.
//!
//! * [`tfplugin6`]: the Terraform plugin protocol 6.10 (service `Provider`).
//! * [`plugin`]: go-plugin's side services (controller, stdio, broker).
//!
//! Server traits are generated with default method bodies that answer
//! `Unimplemented`, so implementors only write the RPCs they support.
//! The gRPC health service is not here; use the `tonic-health` crate.

/// Terraform plugin protocol, version 6.10 (package `tfplugin6`).
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    unused_qualifications
)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin services (package `plugin`): `GRPCController`, `GRPCStdio`,
/// `GRPCBroker`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    unused_qualifications
)]
pub mod plugin {
    tonic::include_proto!("plugin");
}

/// Re-exported for `google.protobuf.Timestamp` fields (e.g. `renew_at`).
pub use prost_types;
