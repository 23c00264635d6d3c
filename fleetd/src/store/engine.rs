//! Rollout execution state: per-device assignments, results and the
//! rollout counters the engine maintains: the [`EngineStore`] part of the
//! store.
//!
//! Every targeted device of a started rollout has one row (rollout,
//! device) whose state moves `pending → in_progress → succeeded | failed |
//! rolled_back`, or to `cancelled` when the rollout ends first. Each
//! transition updates the rollout's counters in the same transaction
//! (`count = count + delta`), so the counts a client reads are exact and
//! O(1) to read. The decisions themselves (who to assign, when a phase
//! advances, what a timeout or a result does) are the pure functions of
//! [`crate::domain::rollout_engine`]; the store applies them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Rollout, StoreError};
use crate::domain::rollout_engine::{Action, Counts, DeviceState, Progress, RollbackState, Status};

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

/// One device's result, as queued for [`EngineStore::record_results`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    pub device_id: String,
    pub rollout_id: String,
    pub outcome: UpdateOutcome,
    pub at: DateTime<Utc>,
}

/// A rollout as the engine sees it: its definition and its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineRollout {
    pub rollout: Rollout,
    pub progress: Progress,
}

impl EngineRollout {
    /// What [`EngineStore::apply_engine_action`] re-checks before acting.
    pub fn guard(&self) -> EngineGuard {
        EngineGuard {
            version: self.rollout.version,
            status: self.progress.status,
            current_phase: self.progress.current_phase,
        }
    }
}

/// The view a decision was made on. If an operator edited the rollout (its
/// version moved) or its status or phase changed in between, the action is
/// not applied: the engine decides again on fresh data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineGuard {
    pub version: i64,
    pub status: Status,
    pub current_phase: usize,
}

/// What applying an action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied; `devices` rows changed (assigned, timed out, added,
    /// cancelled, rolled back).
    Done { devices: u64 },
    /// The guard no longer matched; nothing changed.
    Stale,
}

/// One device's row in a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutDevice {
    pub rollout_id: String,
    pub device_id: String,
    pub state: DeviceState,
    /// Deliveries so far (0 while pending).
    pub attempt: u32,
    /// 0-based phase the device was assigned in.
    pub phase: Option<u32>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// What a rollback reassigns, when known.
    pub previous_firmware_id: Option<String>,
    pub rollback: Option<RollbackState>,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A change the engine made to a rollout, from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    pub at: DateTime<Utc>,
    /// `status` or `phase`.
    pub kind: String,
    /// Statuses (`running`), or 1-based phase numbers.
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// Persistence for the rollout engine. Same conventions as
/// [`super::GroupStore`], except that the engine's writes do not bump a
/// rollout's `version` (that is the operator's optimistic-concurrency
/// token; an engine step must never make a Terraform apply conflict).
/// Status changes are still audited, by actor `engine`.
#[async_trait]
pub trait EngineStore: Send + Sync + 'static {
    /// The firmware assignment a device should act on now (None if none),
    /// marking it in_progress on first delivery.
    ///
    /// An assignment not yet delivered is only handed out while its
    /// rollout is `running`; one already delivered keeps being returned
    /// (the device may be mid-install) until the device reports. A
    /// rollback assignment (previous firmware) is handed out until the
    /// device reports on it. With several, the oldest comes first.
    async fn current_assignment(
        &self,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Assignment>, StoreError>;

    /// A device's result for an assignment; idempotent (a repeated
    /// identical report changes nothing); unknown rollout/device →
    /// NotFound. A result that contradicts the recorded one (or a result
    /// for a device never assigned) is a [`StoreError::Conflict`].
    async fn record_result(
        &self,
        device_id: &str,
        rollout_id: &str,
        outcome: UpdateOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// [`EngineStore::record_result`] for many results in one transaction
    /// (group commit under load). Each item succeeds or fails on its own
    /// (NotFound, Conflict), exactly as alone; `Err` means the whole batch
    /// failed and nothing was written.
    async fn record_results(
        &self,
        batch: Vec<ResultRecord>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// Ids of the rollouts the engine still has work for (not finished, or
    /// finished with devices in flight), in creation order. Called at the
    /// start of every engine tick. A store shared by several fleetd
    /// processes returns only this process's share: the PostgreSQL store
    /// renews and claims rollout leases here.
    async fn engine_rollout_ids(&self) -> Result<Vec<String>, StoreError>;

    /// A rollout with its progress as of `now` (which devices are past
    /// their deadline depends on it).
    async fn engine_rollout(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<EngineRollout, StoreError>;

    /// Applies one decision of [`crate::domain::rollout_engine::decide`]
    /// in one transaction, if `guard` still holds.
    /// [`Action::Assign`] and [`Action::ExpireTimeouts`] handle at most
    /// one batch.
    async fn apply_engine_action(
        &self,
        id: &str,
        guard: EngineGuard,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError>;

    /// One device's row in a rollout, or NotFound.
    async fn get_rollout_device(
        &self,
        rollout_id: &str,
        device_id: &str,
    ) -> Result<RolloutDevice, StoreError>;

    /// Up to `limit` rows of a rollout (in `state`, if given) with a device
    /// id greater than `after`, ordered by device id.
    async fn list_rollout_devices(
        &self,
        rollout_id: &str,
        state: Option<DeviceState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RolloutDevice>, StoreError>;

    /// The engine's status and phase changes of a rollout, oldest first.
    async fn engine_events(&self, rollout_id: &str) -> Result<Vec<EngineEvent>, StoreError>;

    /// The counters as stored next to a recount by scanning the rollout's
    /// devices: `(stored, scanned)`. For diagnostics and tests; they are
    /// equal unless the database was edited by hand. Before a rollout
    /// starts it has no device rows and its `targeted` is the estimate made
    /// when it was written.
    async fn recount_rollout(&self, rollout_id: &str) -> Result<(Counts, Counts), StoreError>;
}
