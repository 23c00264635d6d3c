//! Rollout execution state: per-device assignments, results and the
//! rollout counters the engine maintains: the [`EngineStore`] part of the
//! store.

use async_trait::async_trait;

/// Persistence for the rollout engine. Same conventions as
/// [`super::GroupStore`].
#[async_trait]
pub trait EngineStore: Send + Sync + 'static {}
