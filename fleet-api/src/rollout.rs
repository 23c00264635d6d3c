//! Firmware rollouts: a firmware release delivered to target groups in
//! phases or at a growing rate.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One phase: reach `percent` of the targeted devices, then wait `soak`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPhase {
    /// Cumulative share of targeted devices, > 0 and ≤ 100; strictly
    /// increasing across phases, the last one exactly 100.
    #[schema(example = 10.0)]
    pub percent: f64,
    /// Wait before the next phase, e.g. `30m`, `2h30m`; `0s` for none.
    #[serde(default = "zero_duration")]
    #[schema(example = "1h")]
    pub soak: String,
}

fn zero_duration() -> String {
    "0s".to_owned()
}

/// Exponential rate: `per_minute` devices in the first minute, multiplied
/// by `growth_factor` every minute after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRate {
    /// 1–1,000,000.
    pub per_minute: u32,
    /// At least 1 (1 keeps the rate constant). Defaults to 1.
    #[serde(default = "one")]
    pub growth_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// When to stop: once `min_devices` have finished and more than `percent`
/// of them failed, do `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureThreshold {
    /// 0–100; default 5.
    pub percent: f64,
    /// At least 1; default 10.
    pub min_devices: u32,
    /// `pause` (default), `abort` or `rollback`.
    #[schema(example = "pause")]
    pub action: String,
}

/// Updates only start inside this weekly window (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// `mon` … `sun`.
    #[schema(example = json!(["sat", "sun"]))]
    pub days: Vec<String>,
    /// `HH:MM`, 24-hour UTC.
    #[schema(example = "02:00")]
    pub start: String,
    /// 1m–7d, e.g. `4h`.
    #[schema(example = "4h")]
    pub duration: String,
}

/// Device counts by update state. Stored counters, maintained by the
/// rollout engine; `targeted` is computed when the rollout is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutCounts {
    pub targeted: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rolled_back: i64,
}

/// A rollout as fleetd stores and returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: String,
    pub name: String,
    /// The release being rolled out. Fixed for the rollout's life.
    pub firmware_id: String,
    /// Groups whose devices (static and dynamic members, subgroups
    /// included) are targeted, in the order given.
    pub target_group_ids: Vec<String>,
    /// Empty when `rate` is set.
    pub phases: Vec<RolloutPhase>,
    /// `null` when `phases` are set.
    pub rate: Option<RolloutRate>,
    /// Always present; defaults filled in.
    pub failure_threshold: FailureThreshold,
    /// How long a device may take to report a result; default `1h`.
    pub device_timeout: String,
    /// Retries per device before it counts as failed; default 2.
    pub max_retries: u32,
    /// Not before this time (RFC 3339), if set.
    pub start_at: Option<String>,
    pub maintenance_window: Option<MaintenanceWindow>,
    /// Devices that join a target group later are updated too.
    pub continuous: bool,
    /// Desired state: `running`, `paused` or `cancelled`.
    pub state: String,
    /// Computed: `pending`, `running`, `paused`, `completed`, `aborted`,
    /// `rolled_back` or `cancelled`.
    pub status: String,
    pub counts: RolloutCounts,
    /// Computed: index of the phase in progress (0-based).
    pub current_phase: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Optimistic-concurrency version: +1 on every update.
    pub version: i64,
}

/// Body of `POST /v1/rollouts`. Give `phases` or `rate`, not both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutCreate {
    /// Same character rules as group names.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    pub firmware_id: String,
    /// 1 or more existing groups, no duplicates.
    pub target_group_ids: Vec<String>,
    #[serde(default)]
    pub phases: Vec<RolloutPhase>,
    #[serde(default)]
    pub rate: Option<RolloutRate>,
    #[serde(default)]
    pub failure_threshold: Option<FailureThreshold>,
    #[serde(default)]
    pub device_timeout: Option<String>,
    #[serde(default)]
    #[schema(maximum = 10)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub start_at: Option<String>,
    #[serde(default)]
    pub maintenance_window: Option<MaintenanceWindow>,
    #[serde(default)]
    pub continuous: bool,
    /// `running` (default), `paused` or `cancelled`.
    #[serde(default)]
    pub state: Option<String>,
}

/// Body of `PUT /v1/rollouts/{id}`: a full replacement of everything but
/// the firmware. `firmware_id` may be sent but must equal the stored one
/// (another firmware is another rollout: 409 naming `firmware_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutUpdate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[serde(default)]
    pub firmware_id: Option<String>,
    pub target_group_ids: Vec<String>,
    #[serde(default)]
    pub phases: Vec<RolloutPhase>,
    #[serde(default)]
    pub rate: Option<RolloutRate>,
    #[serde(default)]
    pub failure_threshold: Option<FailureThreshold>,
    #[serde(default)]
    pub device_timeout: Option<String>,
    #[serde(default)]
    #[schema(maximum = 10)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub start_at: Option<String>,
    #[serde(default)]
    pub maintenance_window: Option<MaintenanceWindow>,
    #[serde(default)]
    pub continuous: bool,
    /// Omitted: keep the current state. `cancelled` is terminal.
    #[serde(default)]
    pub state: Option<String>,
    /// The version this update is based on; a stale one is refused with 409.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_soak_and_growth_factor_default() {
        let p: RolloutPhase = serde_json::from_str(r#"{"percent":100}"#).unwrap();
        assert_eq!(p.soak, "0s");
        let r: RolloutRate = serde_json::from_str(r#"{"per_minute":5}"#).unwrap();
        assert_eq!(r.growth_factor, 1.0);
    }

    #[test]
    fn create_rejects_unknown_fields() {
        let err = serde_json::from_str::<RolloutCreate>(
            r#"{"name":"r","firmware_id":"f","target_group_ids":["g"],"phase":[]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `phase`"), "{err}");
    }
}
