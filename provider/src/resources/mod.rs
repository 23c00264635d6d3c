//! Managed resource types, one file per Terraform type name.

use std::sync::Arc;

use crate::client::{Client, ClientError};
use crate::tfplugin::{AnyResource, AttrPath, Diagnostic, Diagnostics};

pub mod fleet_device_group;

pub fn all() -> Vec<Arc<dyn AnyResource<Client>>> {
    vec![Arc::new(fleet_device_group::DeviceGroup)]
}

/// Turns a fleetd error into a diagnostic pointing at the attribute fleetd
/// named, with wording a Terraform user can act on.
pub fn api_diag(action: &str, e: ClientError) -> Diagnostics {
    match e {
        ClientError::Api(api) => {
            use fleet_api::ErrorKind::*;
            let summary = match api.error {
                Conflict if api.current_version.is_some() => {
                    return Diagnostic::error(
                        format!("{action}: changed outside Terraform"),
                        format!(
                            "{} The object was modified in fleetd since Terraform last read it (expected version {}, found {}). Run `terraform plan` or `terraform apply -refresh-only` to refresh, then apply again.",
                            api.message,
                            api.expected_version.unwrap_or_default(),
                            api.current_version.unwrap_or_default()
                        ),
                    )
                    .into()
                }
                Unauthorized => format!("{action}: fleetd refused the token"),
                _ => action.to_string(),
            };
            let d = Diagnostic::error(summary, api.message);
            match api.field {
                Some(f) if !f.is_empty() => d.at(AttrPath::parse(&f)).into(),
                _ => d.into(),
            }
        }
        other => Diagnostic::error(action.to_string(), other.to_string()).into(),
    }
}
