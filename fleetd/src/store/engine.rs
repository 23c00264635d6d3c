//! Rollout execution state: per-device assignments, results and the
//! rollout counters the engine maintains: the [`EngineStore`] part of the
//! store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// The firmware a device should install now, as handed out by the
/// device API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub rollout_id: String,
    pub firmware_id: String,
    pub firmware_version: String,
    pub url: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub signature: Option<String>,
    /// 1 for the first delivery, +1 for each retry after a timeout.
    pub attempt: u32,
    pub assigned_at: DateTime<Utc>,
    /// After this the device is considered to have timed out.
    pub deadline: DateTime<Utc>,
}

/// What a device reports for an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Succeeded,
    Failed { reason: String },
    RolledBack,
}

/// Persistence for the rollout engine. Same conventions as
/// [`super::GroupStore`].
#[async_trait]
pub trait EngineStore: Send + Sync + 'static {
    /// The firmware assignment a device should act on now (None if none),
    /// marking it in_progress on first delivery.
    async fn current_assignment(
        &self,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Assignment>, StoreError>;

    /// A device's result for an assignment; idempotent (a repeated
    /// identical report changes nothing); unknown rollout/device →
    /// NotFound.
    async fn record_result(
        &self,
        device_id: &str,
        rollout_id: &str,
        outcome: UpdateOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}
