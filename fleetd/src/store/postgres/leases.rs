//! Rollout engine leases: how replicas sharing one database divide the
//! engine's work.
//!
//! Every engine tick starts with [`EngineStore::engine_rollout_ids`]
//! (crate::store::EngineStore), which on PostgreSQL runs [`claim`]: in
//! one write transaction the replica
//! 1. records itself alive in `engine_replicas` until now + TTL;
//! 2. computes its fair share, ⌈active rollouts / live replicas⌉;
//! 3. renews the leases it holds (releasing any beyond its share, so a
//!    replica that joins gets work), then claims free or expired leases up
//!    to its share, in id order;
//! 4. returns the rollouts it now holds: the only ones it drives this tick.
//!
//! A replica that dies stops renewing; once its leases and its liveness
//! row expire (TTL, [`DEFAULT_LEASE_TTL`] unless `FLEETD_ENGINE_LEASE`
//! says otherwise) the others share its rollouts out at their next tick.
//! Leases only partition work: exactly-once is guaranteed independently
//! by each engine step re-checking its guard inside its own transaction
//! (under the store's write lock), so a replica that stalls past its lease
//! and then wakes up cannot apply a step twice.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::db::{self, params, Connection};
use super::time;
use crate::store::StoreError;

/// How long a lease lasts without renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// The lease TTL: `FLEETD_ENGINE_LEASE` (seconds, fractions allowed) or
/// [`DEFAULT_LEASE_TTL`].
pub fn lease_ttl_from_env() -> Duration {
    std::env::var("FLEETD_ENGINE_LEASE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_LEASE_TTL)
}

/// Renews and claims this replica's share of the rollouts with engine
/// work; returns the ids it holds, in id order. Runs inside the caller's
/// write transaction.
pub(super) fn claim(
    conn: &Connection,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let now_text = time::to_text(now);
    let until = time::to_text(
        now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(15)),
    );
    conn.prepare_cached(
        "INSERT INTO engine_replicas (holder, expires_at) VALUES (?1, ?2)
         ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at",
    )?
    .execute(params![holder, until])?;
    conn.prepare_cached("DELETE FROM engine_replicas WHERE expires_at <= ?1")?
        .execute([&now_text])?;
    // Leases of rollouts without engine work, or of replicas gone, go.
    conn.prepare_cached(
        "DELETE FROM rollout_leases l
          WHERE l.expires_at <= ?1
             OR NOT EXISTS (SELECT 1 FROM rollouts r WHERE r.id = l.rollout_id
                              AND (r.engine_cleaned_at IS NULL OR r.count_in_progress > 0))",
    )?
    .execute([&now_text])?;

    let active: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM rollouts
              WHERE engine_cleaned_at IS NULL OR count_in_progress > 0
              ORDER BY id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    let replicas: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM engine_replicas")?
        .query_row([], |r| r.get(0))?;
    let replicas = usize::try_from(replicas.max(1)).unwrap_or(1);
    let share = active.len().div_ceil(replicas);

    let mut mine: Vec<String> = conn
        .prepare_cached(
            "SELECT rollout_id FROM rollout_leases WHERE holder = ?1 ORDER BY rollout_id",
        )?
        .query_map([holder], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    if mine.len() > share {
        let mut release =
            conn.prepare_cached("DELETE FROM rollout_leases WHERE rollout_id = ?1")?;
        for id in mine.split_off(share) {
            release.execute([&id])?;
        }
    }
    conn.prepare_cached("UPDATE rollout_leases SET expires_at = ?2 WHERE holder = ?1")?
        .execute(params![holder, until])?;
    if mine.len() < share {
        let held: std::collections::HashSet<String> = conn
            .prepare_cached("SELECT rollout_id FROM rollout_leases")?
            .query_map([], |r| r.get(0))?
            .collect::<db::Result<_>>()?;
        let mut take = conn.prepare_cached(
            "INSERT INTO rollout_leases (rollout_id, holder, expires_at) VALUES (?1, ?2, ?3)",
        )?;
        for id in active.iter().filter(|id| !held.contains(*id)) {
            if mine.len() >= share {
                break;
            }
            take.execute(params![id, holder, until])?;
            mine.push(id.clone());
        }
        mine.sort();
    }
    Ok(mine)
}
