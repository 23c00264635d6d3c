//! Zero-touch enrollments: rules under which a device presenting a
//! certificate chained to a CA registers itself into a group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An enrollment as fleetd returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Enrollment {
    /// Server-assigned identifier (a UUID).
    #[schema(example = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f")]
    pub id: String,
    /// Name, unique among enrollments.
    #[schema(example = "meters-eu")]
    pub name: String,
    /// Devices must present a certificate chained to this CA.
    pub ca_id: String,
    /// Enrolled devices join this group.
    pub group_id: String,
    /// How an enrolled device is named: `{cn}`, `{serial}`, `{hardware}`,
    /// `{attr.KEY}`, `{{`/`}}` for literal braces. Default `{cn}`.
    #[schema(example = "meter-{serial}")]
    pub name_template: String,
    /// Attributes assigned to every enrolled device (override what the
    /// device reports).
    pub attributes: BTreeMap<String, String>,
    /// Hardware models allowed to enroll; empty = any.
    pub allowed_hardware: Vec<String>,
    /// Cap on the number of devices this enrollment creates; `null` = no cap.
    pub max_devices: Option<u64>,
    /// `false` stops all enrollments without deleting the rules.
    pub enabled: bool,
    /// Only certificates whose common name matches this glob (`*`, `?`)
    /// enroll; `null` = any. When several enrollments of a CA admit a
    /// device, the most specific wins (pattern, then hardware list).
    #[serde(default)]
    #[schema(example = "meter-prod-*")]
    pub common_name_pattern: Option<String>,
    /// Devices enrolled so far through this enrollment.
    pub enrolled_count: u64,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Time of the last change (RFC 3339, UTC).
    pub updated_at: String,
    /// Optimistic-concurrency version: 1 on creation, +1 on every update.
    pub version: i64,
}

/// Body of `POST /v1/enrollments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentCreate {
    /// 1–128 characters: letters, digits, `-`, `_`, `.`; unique.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// An existing CA's id.
    pub ca_id: String,
    /// An existing device group's id.
    pub group_id: String,
    /// Default `{cn}`; validated on write (errors give the position).
    #[serde(default)]
    pub name_template: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_hardware: Vec<String>,
    /// At least 1 when set.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_devices: Option<u64>,
    /// Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Glob over the certificate common name (`*`, `?`); default any.
    #[serde(default)]
    pub common_name_pattern: Option<String>,
}

/// Body of `PUT /v1/enrollments/{id}`: a full replacement (an omitted
/// optional field goes back to its default), plus the version the caller
/// last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentUpdate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    pub ca_id: String,
    pub group_id: String,
    #[serde(default)]
    pub name_template: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_hardware: Vec<String>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_devices: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub common_name_pattern: Option<String>,
    /// The version this update is based on; a stale one gets 409.
    pub version: i64,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults() {
        let c: EnrollmentCreate =
            serde_json::from_str(r#"{"name":"e","ca_id":"c","group_id":"g"}"#).unwrap();
        assert!(c.enabled);
        assert_eq!(c.name_template, None);
        assert_eq!(c.max_devices, None);
        assert!(c.allowed_hardware.is_empty());
    }

    #[test]
    fn update_requires_version_and_rejects_unknown_fields() {
        let err =
            serde_json::from_str::<EnrollmentUpdate>(r#"{"name":"e","ca_id":"c","group_id":"g"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("missing field `version`"), "{err}");
        let err = serde_json::from_str::<EnrollmentUpdate>(
            r#"{"name":"e","ca_id":"c","group_id":"g","enrolled_count":3,"version":1}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `enrolled_count`"),
            "{err}"
        );
    }
}
