//! Device groups: the nodes of the fleet's group tree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A device group as fleetd stores and returns it.
///
/// `tags` is a `BTreeMap` so serialisation is ordered and stable: the
/// provider compares responses against state, and a map that reorders on
/// every read would look like drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceGroup {
    /// Server-assigned identifier (a UUID).
    #[schema(example = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f")]
    pub id: String,
    /// Name, unique among the group's siblings.
    #[schema(example = "meters")]
    pub name: String,
    /// Free text; empty when not set.
    pub description: String,
    /// Parent group's id, or `null` for a top-level group.
    pub parent_id: Option<String>,
    /// Arbitrary key/value labels.
    pub tags: BTreeMap<String, String>,
    /// Names from the root down to this group joined by `/`, e.g.
    /// `prod/meters`. Computed: renaming or moving an ancestor changes it.
    #[schema(example = "prod/meters")]
    pub path: String,
    /// Dynamic membership: devices matching this expression over device
    /// fields and attributes are members in addition to the static ones,
    /// e.g. `hardware == "m1" and attr.region == "eu"`. `null` when unset.
    #[schema(example = "hardware == \"m1\" and attr.region == \"eu\"")]
    pub query: Option<String>,
    /// Desired device configuration set on this group (a JSON object).
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// Computed: the configs of the root group down to this one merged
    /// key by key (objects recursively); a child's value wins.
    #[schema(value_type = Object)]
    pub effective_config: Map<String, Value>,
    /// Computed: devices in this group, static members plus devices
    /// matching `query`, each counted once. Subgroups are not included.
    #[schema(example = 42)]
    pub device_count: i64,
    /// Devices of this group not seen for this long turn `stale`
    /// (canonical duration, e.g. `15m`); `null`: never.
    #[serde(default)]
    #[schema(example = "15m")]
    pub stale_after: Option<String>,
    /// Computed: compliance of the devices in this group and its
    /// subgroups, as of their last check-in.
    #[serde(default)]
    pub compliance: GroupCompliance,
    /// Creation time (RFC 3339, UTC).
    #[schema(example = "2025-01-31T12:00:00.000Z")]
    pub created_at: String,
    /// Time of the last change (RFC 3339, UTC).
    #[schema(example = "2025-01-31T12:00:00.000Z")]
    pub updated_at: String,
    /// Optimistic-concurrency version: 1 on creation, +1 on every update.
    #[schema(example = 1)]
    pub version: i64,
}

/// Body of `POST /v1/device-groups`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroupCreate {
    /// 1–128 characters: letters, digits, `-`, `_`, `.`; starting with a
    /// letter or digit. Unique among siblings.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// At most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    /// Parent group's id; omitted or `null` for a top-level group.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// At most 50 tags; keys 1–128 characters, values at most 256.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Dynamic membership expression; omitted or `null` for none. A syntax
    /// error is a 400 with `field: "query"` and its line and column.
    #[serde(default)]
    pub query: Option<String>,
    /// Desired device configuration (a JSON object, at most 64 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// A duration (`90s`, `15m`, `2h`, `1d`; 1s to 365d): devices silent
    /// for longer turn `stale`. Omitted or `null`: never.
    #[serde(default)]
    pub stale_after: Option<String>,
}

/// Body of `PUT /v1/device-groups/{id}`: a full replacement of the mutable
/// fields (an omitted optional field is cleared, not kept), plus the
/// version the caller last read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroupUpdate {
    /// Same rules as on creation.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    /// Moving a group under one of its own descendants is refused.
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub stale_after: Option<String>,
    /// The version this update is based on; if the stored group has moved
    /// on, the update is refused with 409 and nothing changes.
    pub version: i64,
}

/// Devices of a group (subgroups included) by compliance state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupCompliance {
    /// Firmware and config as desired.
    pub in_sync: u64,
    /// The applied config's digest is not the desired one's.
    pub config_drift: u64,
    /// Running another firmware than the last completed rollout installed.
    pub firmware_drift: u64,
    /// Silent for longer than `stale_after`.
    pub stale: u64,
    /// Devices that checked in at least once.
    pub total: u64,
    /// `in_sync / total`; 1 when no device reported.
    #[schema(example = 0.98)]
    pub in_sync_ratio: f64,
}

/// A device that is not in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NonCompliantDevice {
    pub device_id: String,
    pub name: String,
    /// `config_drift`, `firmware_drift` or `stale`.
    #[schema(example = "firmware_drift")]
    pub state: String,
    #[schema(example = "runs firmware 1.0.0, its completed rollout installed 2.0.0")]
    pub reason: String,
    /// Last check-in (RFC 3339, UTC).
    pub last_seen: Option<String>,
}

/// Response of `GET /v1/device-groups/{id}/compliance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupComplianceReport {
    pub group_id: String,
    pub path: String,
    // The counts of [`GroupCompliance`], spelled out: `serde(flatten)`
    // cannot carry numbers under serde_json's arbitrary precision.
    pub in_sync: u64,
    pub config_drift: u64,
    pub firmware_drift: u64,
    pub stale: u64,
    pub total: u64,
    pub in_sync_ratio: f64,
    /// Up to 10 non-compliant devices (lowest ids first); the full list is
    /// `GET /v1/device-groups/{id}/compliance/devices`.
    pub noncompliant_sample: Vec<NonCompliantDevice>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults_optional_fields() {
        let c: DeviceGroupCreate = serde_json::from_str(r#"{"name":"prod"}"#).unwrap();
        assert_eq!(
            c,
            DeviceGroupCreate {
                name: "prod".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn create_rejects_unknown_fields() {
        let err = serde_json::from_str::<DeviceGroupCreate>(r#"{"name":"a","colour":"red"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn update_requires_version() {
        let err = serde_json::from_str::<DeviceGroupUpdate>(r#"{"name":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `version`"), "{err}");
    }

    #[test]
    fn group_round_trips_with_snake_case_fields() {
        let g = DeviceGroup {
            id: "id-1".into(),
            name: "meters".into(),
            description: String::new(),
            parent_id: Some("id-0".into()),
            tags: BTreeMap::from([("env".into(), "prod".into())]),
            path: "prod/meters".into(),
            query: Some("hardware == \"m1\"".into()),
            config: Map::new(),
            effective_config: serde_json::json!({"a": 1}).as_object().unwrap().clone(),
            device_count: 2,
            stale_after: Some("15m".into()),
            compliance: GroupCompliance {
                in_sync: 3,
                stale: 1,
                total: 4,
                in_sync_ratio: 0.75,
                ..Default::default()
            },
            created_at: "2025-01-31T12:00:00.000Z".into(),
            updated_at: "2025-01-31T12:00:00.000Z".into(),
            version: 3,
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["parent_id"], "id-0");
        assert_eq!(v["created_at"], "2025-01-31T12:00:00.000Z");
        assert_eq!(v["tags"]["env"], "prod");
        assert_eq!(v["compliance"]["in_sync_ratio"], 0.75);
        let back: DeviceGroup = serde_json::from_value(v).unwrap();
        assert_eq!(back, g);
    }
}
