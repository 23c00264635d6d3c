//! The rollout engine: a background task that moves rollouts forward.
//!
//! Every `--engine-interval` it lists the rollouts that still have work
//! (not finished, or finished with devices in flight) and, for each, runs
//! the loop *read progress → [`decide`] → apply one action* until the
//! decision is to wait. Decisions are the pure functions of
//! [`crate::domain::rollout_engine`]; each action is one store
//! transaction (an assignment batch is one transaction of up to
//! [`Options::batch_size`] devices), guarded by the version, status and
//! phase the decision was made on.
//!
//! All state is in the store, none in the task: after a crash or a
//! `kill -9`, the next tick reads the same progress and continues. A
//! transition is either committed (with its counters) or not at all, and
//! a device leaves `pending` only once, so nothing is assigned twice.
//!
//! Several fleetd processes sharing one database (PostgreSQL replicas)
//! could run the engine at once without harm for the same reason (every
//! step re-checks its guard inside the transaction). They do not duplicate
//! work either: on PostgreSQL, [`EngineStore::engine_rollout_ids`] returns
//! only the rollouts this replica holds a lease on, leases being shared
//! out between live replicas and taken over when one expires.

pub mod plan;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::rollout_engine::{decide, Action, Options};
use crate::store::engine::Applied;
use crate::store::prelude::*;
use crate::store::StoreError;

pub use plan::plan_of;

/// Default time between ticks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Most steps one rollout takes per tick: bounds a tick's length when a
/// rollout has a great deal to do (it continues on the next tick).
pub const MAX_STEPS_PER_ROLLOUT: usize = 1_000;

/// How the background task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub interval: Duration,
    pub options: Options,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            interval: DEFAULT_INTERVAL,
            options: Options::default(),
        }
    }
}

/// Wakes the engine task before its next tick: sent when an operator
/// creates or changes a rollout, so its first assignments go out at once
/// rather than up to one `--engine-interval` later. Cheap to clone; a wake
/// while a tick runs makes another tick follow it.
#[derive(Debug, Clone, Default)]
pub struct EngineWake(Arc<tokio::sync::Notify>);

impl EngineWake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Rollouts looked at.
    pub rollouts: usize,
    /// Actions applied.
    pub steps: usize,
    /// Devices touched by those actions.
    pub devices: u64,
    /// Actions skipped because the rollout changed under them.
    pub stale: usize,
    /// Rollouts that failed (logged); the others went on.
    pub errors: usize,
    /// Devices that turned stale (silent past their groups' `stale_after`).
    pub turned_stale: u64,
}

/// The engine's memory between ticks: only what to avoid logging twice.
#[derive(Debug, Default)]
pub struct Engine {
    options: Options,
    invalid: HashSet<String>,
}

impl Engine {
    pub fn new(options: Options) -> Engine {
        Engine {
            options,
            invalid: HashSet::new(),
        }
    }

    /// One pass over every rollout with work, as of `now`.
    pub async fn tick(
        &mut self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<TickReport, StoreError> {
        let ids = store.engine_rollout_ids().await?;
        let mut report = TickReport {
            rollouts: ids.len(),
            ..TickReport::default()
        };
        // Compliance: devices silent past their deadline turn stale, a
        // bounded batch per transaction so check-ins are never held up long.
        loop {
            match store.sweep_stale(now, STALE_SWEEP_BATCH).await {
                Ok(n) => {
                    report.turned_stale += n;
                    if n < u64::from(STALE_SWEEP_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::error!("compliance: marking silent devices stale: {e:#}");
                    break;
                }
            }
        }
        for id in ids {
            if let Err(e) = self.run_rollout(store, &id, now, &mut report).await {
                match e {
                    // Deleted while we looked at it.
                    StoreError::NotFound { .. } => {}
                    e => {
                        report.errors += 1;
                        tracing::error!(rollout = %id, "rollout engine: {e:#}");
                    }
                }
            }
        }
        Ok(report)
    }

    async fn run_rollout(
        &mut self,
        store: &dyn Store,
        id: &str,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), StoreError> {
        let mut stale = 0;
        for _ in 0..MAX_STEPS_PER_ROLLOUT {
            let current = store.engine_rollout(id, now).await?;
            let plan = match plan_of(&current.rollout) {
                Ok(plan) => plan,
                Err(e) => {
                    if self.invalid.insert(id.to_owned()) {
                        tracing::warn!(rollout = %id, "rollout engine: skipping a rollout whose stored definition is invalid: {e}");
                    }
                    return Ok(());
                }
            };
            let action = decide(&plan, &current.progress, now, &self.options);
            if action.is_wait() {
                tracing::trace!(rollout = %id, ?action, "rollout engine: waiting");
                return Ok(());
            }
            let batch = matches!(
                action,
                Action::Assign { .. } | Action::ExpireTimeouts { .. }
            );
            tracing::debug!(rollout = %id, ?action, "rollout engine: step");
            match store
                .apply_engine_action(id, current.guard(), action, now)
                .await?
            {
                Applied::Stale => {
                    report.stale += 1;
                    stale += 1;
                    if stale >= 3 {
                        return Ok(());
                    }
                }
                Applied::Done { devices } => {
                    report.steps += 1;
                    report.devices += devices;
                    // A batch that changed nothing (every pending device
                    // busy in another rollout, say) would repeat forever.
                    if batch && devices == 0 {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Parses `--engine-interval`: a duration such as `1s`, `2m` or `1m30s`
/// (see [`crate::domain::duration`]), or milliseconds such as `250ms`.
/// Zero is refused.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = match s.strip_suffix("ms") {
        Some(ms) if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) => {
            Duration::from_millis(ms.parse().map_err(|e| format!("{s:?}: {e}"))?)
        }
        _ => Duration::from_secs(
            crate::domain::duration::parse("engine-interval", s).map_err(|e| e.message)?,
        ),
    };
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Devices marked stale per transaction of the sweep.
const STALE_SWEEP_BATCH: u32 = 5_000;

/// One tick at `now` with default options: for tests with an injected
/// clock (call it again with a later `now` to let time pass).
pub async fn tick_once(store: &dyn Store, now: DateTime<Utc>) -> Result<TickReport, StoreError> {
    Engine::new(Options::default()).tick(store, now).await
}

/// [`tick_once`] with explicit options.
pub async fn tick_with(
    store: &dyn Store,
    now: DateTime<Utc>,
    options: Options,
) -> Result<TickReport, StoreError> {
    Engine::new(options).tick(store, now).await
}

/// Runs the engine every `config.interval`, and at once when `wake` is
/// signalled, until `shutdown` completes. A tick in progress when it does
/// is finished first (each step is a short transaction), so the engine
/// never stops half-way through a step.
pub fn spawn(
    store: Arc<dyn Store>,
    config: EngineConfig,
    wake: EngineWake,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut engine = Engine::new(config.options);
        let period = config.interval.max(Duration::from_millis(10));
        // The first pass comes one period after start, not at once: a
        // process that starts and is immediately given work (or stopped)
        // behaves the same as one that has been running.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        tracing::info!(interval = ?config.interval, "rollout engine started");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
                () = wake.0.notified() => {
                    // The next periodic tick is one full period away again.
                    ticker.reset();
                }
            }
            let started = std::time::Instant::now();
            match engine.tick(store.as_ref(), Utc::now()).await {
                Ok(report) if report.steps > 0 || report.errors > 0 || report.turned_stale > 0 => {
                    tracing::debug!(
                        rollouts = report.rollouts,
                        steps = report.steps,
                        devices = report.devices,
                        errors = report.errors,
                        turned_stale = report.turned_stale,
                        elapsed = ?started.elapsed(),
                        "rollout engine tick"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!("rollout engine: listing rollouts: {e:#}"),
            }
        }
        tracing::info!("rollout engine stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("0ms").is_err());
        assert!(parse_interval("ms").is_err());
        assert!(parse_interval("fast")
            .unwrap_err()
            .contains("invalid duration"));
    }
}
