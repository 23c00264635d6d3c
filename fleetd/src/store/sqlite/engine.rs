//! [`EngineStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::engine::{Assignment, UpdateOutcome};
use crate::store::{EngineStore, StoreError};

#[async_trait]
impl EngineStore for SqliteStore {
    async fn current_assignment(
        &self,
        _device_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<Assignment>, StoreError> {
        Ok(None)
    }

    async fn record_result(
        &self,
        _device_id: &str,
        _rollout_id: &str,
        _outcome: UpdateOutcome,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}
