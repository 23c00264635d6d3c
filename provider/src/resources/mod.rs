//! Managed resource types, one file per Terraform type name.

use std::sync::Arc;

use crate::client::{Client, ClientError};
use crate::tfplugin::{AnyResource, AttrPath, Diagnostic, Diagnostics};

pub mod fleet_certificate;
pub mod fleet_certificate_authority;
pub mod fleet_device;
pub mod fleet_device_group;
pub mod fleet_enrollment;
pub mod fleet_firmware;
pub mod fleet_firmware_rollout;
pub mod fleet_policy;
pub mod fleet_policy_attachment;

pub fn all() -> Vec<Arc<dyn AnyResource<Client>>> {
    vec![
        Arc::new(fleet_device_group::DeviceGroup),
        Arc::new(fleet_device::Device),
        Arc::new(fleet_policy::Policy),
        Arc::new(fleet_policy_attachment::PolicyAttachment),
        Arc::new(fleet_firmware::Firmware),
        Arc::new(fleet_certificate_authority::CertificateAuthority),
        Arc::new(fleet_certificate::Certificate),
        Arc::new(fleet_enrollment::Enrollment),
        Arc::new(fleet_firmware_rollout::FirmwareRollout),
    ]
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
                            "The object was modified in fleetd since Terraform last read it (expected version {}, found {}), for example by another Terraform run; nothing was changed. Run `terraform plan` or `terraform apply -refresh-only` to refresh, then apply again.\n\nfleetd: {}",
                            api.expected_version.unwrap_or_default(),
                            api.current_version.unwrap_or_default(),
                            api.message,
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

/// Re-aims diagnostics at paths Terraform can address: fleetd's wire name
/// of a block list becomes the HCL block name (`statements[1]` →
/// `statement[1]`), and an element of a set attribute (`group_ids[2]`)
/// becomes the attribute, since set elements have no index.
pub fn retarget(mut diags: Diagnostics, renames: &[(&str, &str)], sets: &[&str]) -> Diagnostics {
    use crate::tfplugin::diag::Step;
    for d in &mut diags.0 {
        let Some(path) = &mut d.path else { continue };
        let Some(Step::Attr(first)) = path.0.first_mut() else {
            continue;
        };
        if let Some((_, to)) = renames.iter().find(|(from, _)| from == first) {
            *first = to.to_string();
        }
        if sets.contains(&first.as_str()) {
            path.0.truncate(1);
        }
    }
    diags
}

/// Validates that a string attribute holds a JSON object.
pub fn json_object() -> crate::tfplugin::schema::Validator {
    crate::tfplugin::validators::string(|s| match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err("must be a JSON object, e.g. jsonencode({ sample_rate = 60 })".into()),
        Err(e) => Err(format!("is not valid JSON: {e}")),
    })
}

/// Parses a JSON-object attribute for the API (validated at plan already).
pub fn parse_config(
    s: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>, Diagnostics> {
    match serde_json::from_str::<serde_json::Value>(s.unwrap_or("{}")) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => {
            Err(Diagnostic::error("Invalid JSON object", "the value must be a JSON object").into())
        }
    }
}

/// Compact JSON with object keys sorted: one text per meaning.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: std::collections::BTreeMap<_, _> =
                    m.iter().map(|(k, v)| (k.clone(), sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(xs) => serde_json::Value::Array(xs.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sort(v)).unwrap_or_default()
}

/// The JSON text to keep in state for `value`: `known` (what the
/// configuration or state already says) when it means the same JSON, else
/// the canonical text. This is semantic equality for JSON attributes.
pub fn json_text(value: &serde_json::Value, known: Option<&str>) -> String {
    if let Some(k) = known {
        if serde_json::from_str::<serde_json::Value>(k).ok().as_ref() == Some(value) {
            return k.to_string();
        }
    }
    canonical_json(value)
}
