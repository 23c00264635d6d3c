//! Devices registered through the admin API (large fleets enroll
//! themselves through the device API and show up here too).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A device as fleetd stores and returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Server-assigned identifier (a UUID).
    #[schema(example = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f")]
    pub id: String,
    /// Unique across the fleet.
    #[schema(example = "meter-0001")]
    pub name: String,
    /// Hardware model, matched against firmware `hardware` lists.
    #[schema(example = "m1")]
    pub hardware: String,
    /// Arbitrary key/value attributes, usable in group queries as
    /// `attr.<key>` and in policies as `${device.attr.<key>}`.
    pub attributes: BTreeMap<String, String>,
    /// Groups the device is a static member of, sorted. Dynamic
    /// membership (group queries) is not listed here.
    pub group_ids: Vec<String>,
    /// Computed: firmware version the device last reported, if any.
    #[schema(example = "1.4.2")]
    pub firmware_version: Option<String>,
    /// Computed: time of the device's last check-in (RFC 3339, UTC).
    pub last_seen: Option<String>,
    /// Computed: health the device last reported (e.g. `ok`, `degraded`).
    pub health: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Time of the last change (RFC 3339, UTC).
    pub updated_at: String,
    /// Optimistic-concurrency version: 1 on creation, +1 on every update.
    pub version: i64,
}

/// Body of `POST /v1/devices`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceCreate {
    /// 1–128 characters: letters, digits, `-`, `_`, `.`; starting with a
    /// letter or digit. Unique across the fleet.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// Hardware model: same character rules as `name`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub hardware: String,
    /// At most 50 attributes; keys 1–128 characters, values at most 256.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Groups to make the device a static member of; each must exist.
    /// Order and duplicates do not matter: fleetd stores the sorted set.
    #[serde(default)]
    pub group_ids: Vec<String>,
}

/// Body of `PUT /v1/devices/{id}`: a full replacement of the mutable
/// fields plus the version the caller last read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub hardware: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub group_ids: Vec<String>,
    /// The version this update is based on; a stale one is refused with 409.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults_and_rejects_unknown_fields() {
        let c: DeviceCreate = serde_json::from_str(r#"{"name":"d","hardware":"m1"}"#).unwrap();
        assert!(c.attributes.is_empty() && c.group_ids.is_empty());
        let err = serde_json::from_str::<DeviceCreate>(r#"{"name":"d","hardware":"m1","x":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn computed_fields_serialize_as_null() {
        let d = Device {
            id: "i".into(),
            name: "d".into(),
            hardware: "m1".into(),
            attributes: BTreeMap::new(),
            group_ids: vec![],
            firmware_version: None,
            last_seen: None,
            health: None,
            created_at: "t".into(),
            updated_at: "t".into(),
            version: 1,
        };
        let v = serde_json::to_value(&d).unwrap();
        assert!(v["firmware_version"].is_null() && v["last_seen"].is_null());
        assert_eq!(serde_json::from_value::<Device>(v).unwrap(), d);
    }
}
