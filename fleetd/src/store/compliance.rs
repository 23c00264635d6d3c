//! Compliance: desired vs reported device state, per device and per group.
//!
//! Check-ins (see [`super::device_api::CheckinReport::compliance`]) keep
//! each device's state and the per-group counters current; the engine's
//! periodic pass turns silent devices stale with [`ComplianceStore::sweep_stale`].
//! Reads are O(1) in the fleet size: a group's summary is its counters,
//! and the list of non-compliant devices only visits non-compliant rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
pub use crate::domain::compliance::{State, Summary};

/// A device that is not in sync, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonCompliantDevice {
    pub device_id: String,
    pub name: String,
    pub state: State,
    pub reason: String,
    pub last_seen: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ComplianceStore: Send + Sync + 'static {
    /// Marks stale up to `limit` devices whose `stale_at` has passed;
    /// returns how many.
    async fn sweep_stale(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// The counters of a group (its subgroups' devices included), or
    /// [`StoreError::NotFound`].
    async fn group_compliance(&self, group_id: &str) -> Result<Summary, StoreError>;

    /// Up to `limit` (capped at [`super::MAX_PAGE_SIZE`] + 1) devices of
    /// the group (or its subgroups) that are not in sync, optionally only
    /// in `state`, with an id greater than `after`, ordered by id.
    async fn noncompliant_devices(
        &self,
        group_id: &str,
        state: Option<State>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NonCompliantDevice>, StoreError>;
}
