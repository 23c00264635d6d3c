//! Ephemeral resource types (Terraform ≥ 1.10), one file per type name.
//! Their results never reach plan or state.

use std::sync::Arc;

pub mod fleet_device_credentials;

use crate::client::Client;
use crate::tfplugin::AnyEphemeralResource;

pub fn all() -> Vec<Arc<dyn AnyEphemeralResource<Client>>> {
    vec![Arc::new(fleet_device_credentials::DeviceCredentials)]
}
