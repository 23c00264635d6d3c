//! terraform-provider-fleet.
//!
//! `tfplugin` is the protocol layer and small resource framework: it knows
//! Terraform, gRPC and msgpack, and nothing of fleets. `resources/` and
//! `data_sources/` declare the fleet types on top of it; `client` talks to
//! fleetd's admin API; `provider` ties configuration to the type list.

pub mod client;
pub mod data_sources;
pub mod ephemeral_resources;
pub mod provider;
pub mod resources;
pub mod tfplugin;
