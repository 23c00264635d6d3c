//! The records of the [`FleetStore`](super::FleetStore): devices, policies
//! and attachments, firmware releases, rollouts.
//!
//! Like [`super::model`], these are fleetd's internal shapes; the API
//! converts them to and from the `fleet-api` wire types. Values arrive here
//! already validated by the rules in [`crate::domain`]; the store checks
//! only what depends on other rows (existence, uniqueness, references).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::policy::Statement;
use crate::domain::query::DeviceFacts;
use crate::domain::rollout::RolloutState;

// ------------------------------------------------------------------ devices

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub hardware: String,
    pub attributes: BTreeMap<String, String>,
    /// Static memberships, sorted.
    pub group_ids: Vec<String>,
    /// Reported by the device (device API); `None` until it checks in.
    pub firmware_version: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub health: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Device {
    /// What group queries and policies can see of this device.
    pub fn facts(&self) -> DeviceFacts {
        DeviceFacts {
            id: self.id.clone(),
            name: self.name.clone(),
            hardware: self.hardware.clone(),
            firmware: self.firmware_version.clone(),
            health: self.health.clone(),
            last_seen: self.last_seen,
            attributes: self.attributes.clone(),
        }
    }
}

/// The admin-controlled fields of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    pub name: String,
    pub hardware: String,
    pub attributes: BTreeMap<String, String>,
    /// In request order (errors name `group_ids[i]`); duplicates are
    /// ignored and reads return them sorted.
    pub group_ids: Vec<String>,
}

// ------------------------------------------------------------------ policies

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub statements: Vec<Statement>,
    /// +1 each time the statements change.
    pub policy_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub name: String,
    pub description: String,
    pub statements: Vec<Statement>,
}

/// One kept version of a policy's statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub policy_id: String,
    pub policy_version: i64,
    pub statements: Vec<Statement>,
    pub created_at: DateTime<Utc>,
}

/// What a policy is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentTarget {
    Group(String),
    Certificate(String),
}

/// A stored policy attachment (immutable: version is always 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAttachment {
    pub id: String,
    pub policy_id: String,
    pub target: AttachmentTarget,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAttachmentSpec {
    pub policy_id: String,
    pub target: AttachmentTarget,
}

// ------------------------------------------------------------------ firmware

/// A stored, immutable firmware release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub id: String,
    pub product: String,
    /// Semantic version, as given.
    pub version: String,
    pub hardware: Vec<String>,
    pub url: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size_bytes: i64,
    pub signature: Option<String>,
    pub signature_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// A validated release to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareSpec {
    pub product: String,
    pub version: String,
    pub hardware: Vec<String>,
    pub url: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub signature: Option<String>,
    pub signature_verified: bool,
}

// ------------------------------------------------------------------ rollouts

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub percent: f64,
    pub soak: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateRecord {
    pub per_minute: u32,
    pub growth_factor: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureThresholdRecord {
    pub percent: f64,
    pub min_devices: u32,
    /// `pause`, `abort` or `rollback`.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindowRecord {
    pub days: Vec<String>,
    pub start: String,
    pub duration: String,
}

/// Device counters of a rollout, maintained by the rollout engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutCounts {
    pub targeted: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rolled_back: i64,
}

/// A stored rollout definition and its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub id: String,
    pub name: String,
    pub firmware_id: String,
    pub target_group_ids: Vec<String>,
    pub phases: Vec<PhaseRecord>,
    pub rate: Option<RateRecord>,
    pub failure_threshold: FailureThresholdRecord,
    pub device_timeout: String,
    pub max_retries: u32,
    pub start_at: Option<String>,
    pub maintenance_window: Option<MaintenanceWindowRecord>,
    pub continuous: bool,
    pub state: RolloutState,
    pub status: String,
    pub counts: RolloutCounts,
    pub current_phase: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A validated rollout definition, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    pub name: String,
    /// On update: `Some` must equal the stored firmware.
    pub firmware_id: Option<String>,
    pub target_group_ids: Vec<String>,
    pub phases: Vec<PhaseRecord>,
    pub rate: Option<RateRecord>,
    pub failure_threshold: FailureThresholdRecord,
    pub device_timeout: String,
    pub max_retries: u32,
    pub start_at: Option<String>,
    pub maintenance_window: Option<MaintenanceWindowRecord>,
    pub continuous: bool,
    /// `None` on update keeps the current state; on create means running.
    pub state: Option<RolloutState>,
}
