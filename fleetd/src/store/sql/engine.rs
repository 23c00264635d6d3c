//! [`EngineStore`] on either backend.
//!
//! Every method runs in one transaction on the store's connection. Device
//! transitions use prepared (cached) statements guarded by the state they
//! leave (`… WHERE state = 'pending'`), so a transition happens at most
//! once whatever runs concurrently, and each one adds to a
//! [`CountsDelta`] that is written to the rollout row in the same
//! transaction.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::db::{
    self, params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use super::{membership, rollouts, time, Backend};
use crate::domain::duration;
use crate::domain::query::Query;
use crate::domain::rollout_engine::{
    self as eng, Action, Baseline, Counts, CountsDelta, DeviceRecord, DeviceState, Outcome,
    Progress, RateAnchor, ResultEffect, RollbackState, Status, TimeoutMode, TimeoutOutcome,
};
use crate::store::engine::{
    Applied, Assignment, EngineEvent, EngineGuard, EngineRollout, ResultRecord, RolloutDevice,
    UpdateOutcome,
};
use crate::store::{EngineStore, ObjectKind, Rollout, StoreError};

/// Actor of the engine's audit rows.
const ENGINE_ACTOR: &str = "engine";
/// Devices handled per [`Action::ExpireTimeouts`].
const EXPIRE_BATCH: i64 = eng::DEFAULT_BATCH_SIZE as i64;
/// Expired assignment waves read per [`Action::ExpireTimeouts`] (a wave
/// whose devices all reported is only deleted).
const EXPIRE_WAVES: i64 = 64;
/// Query-group targets inserted per statement (static members go in one).
const TARGET_CHUNK: usize = 10_000;
/// Reason of a pending device targeted after the start (a continuous
/// rollout's refresh): it waits in the waiting index, see [`assign`].
const TARGETED_LATE: &str = "targeted after the start; waiting for assignment";
/// Reason of a pending device the assignment passed over because another
/// rollout was updating it; it waits in the waiting index.
const WAITING_BUSY: &str = "waiting: another rollout is updating this device";
/// Guard for recursive group walks (the hierarchy is at most 16 deep).
const MAX_DEPTH: i64 = 10_000;

/// SQL condition: the `rollout_devices` row named `$a` (an alias, or the
/// table's own name) is in progress in one of its rollout's assignment
/// waves (see [`assign`]) and has not been written since: pending,
/// without a reason, at or below its rollout's assignment cursor, the
/// SQL expression `$cursor`.
macro_rules! wave_device {
    ($a:literal, $cursor:expr) => {
        concat!(
            "(",
            $a,
            ".state = 'pending' AND ",
            $a,
            ".reason IS NULL AND ",
            $a,
            ".device_id <= ",
            $cursor,
            ")"
        )
    };
}

/// SQL condition: the `rollout_devices` row aliased `$a` is a wave device
/// ([`wave_device!`]), its rollout's cursor read by a subquery.
macro_rules! in_wave {
    ($a:literal) => {
        wave_device!(
            $a,
            concat!(
                "(SELECT c.assign_cursor FROM rollouts c WHERE c.seq = ",
                $a,
                ".rollout)"
            )
        )
    };
}

/// SQL condition: the row `rd` of the rollout `r` (joined) is a wave
/// device ([`wave_device!`]).
macro_rules! rd_in_wave {
    () => {
        wave_device!("rd", "r.assign_cursor")
    };
}

/// SQL expression: the effective state of the row `rd` of the rollout
/// `r` (a wave device is in progress).
macro_rules! effective_state {
    () => {
        concat!(
            "CASE WHEN ",
            rd_in_wave!(),
            " THEN 'in_progress' ELSE rd.state END"
        )
    };
}

/// SQL expression: column `$field` of the row `rd` of the rollout `r`, or
/// column `$wave` of its assignment wave while it is a wave device.
macro_rules! wave_or_row {
    ($field:literal) => {
        wave_or_row!($field, $field)
    };
    ($wave:literal, $field:literal) => {
        concat!(
            "CASE WHEN ",
            rd_in_wave!(),
            " THEN (SELECT w.",
            $wave,
            " FROM rollout_waves w
                         WHERE w.rollout = rd.rollout AND w.last_device >= rd.device_id
                         ORDER BY w.last_device LIMIT 1)
                  ELSE rd.",
            $field,
            " END"
        )
    };
}

/// SQL expression: what a rollback of the device `$device` would
/// reassign in the rollout keyed `$seq` of the firmware `$firmware`: the
/// release of the same product the device reports running, else the one
/// it last updated to in another rollout; NULL when neither is known.
///
/// `$seq` and `$firmware` must be parameters, not columns: each branch is
/// guarded by a condition on them alone, which the database evaluates
/// once per statement — whether the product has another release at all,
/// and whether another rollout of it has a device that succeeded — so
/// that a device's own lookups (a probe of its row, a search of its other
/// rollouts) are skipped where they cannot find anything.
macro_rules! previous_firmware {
    ($seq:literal, $firmware:literal, $device:literal) => {
        concat!(
            "COALESCE(
                CASE WHEN EXISTS (
                    SELECT 1 FROM firmware g
                     WHERE g.product = (SELECT t.product FROM firmware t WHERE t.id = ",
            $firmware,
            ") AND g.id <> ",
            $firmware,
            ") THEN (SELECT f.id FROM devices d
                   JOIN firmware f ON f.release_version = d.firmware_version
                  WHERE d.id = ",
            $device,
            " AND f.product = (SELECT t.product FROM firmware t WHERE t.id = ",
            $firmware,
            ") AND f.id <> ",
            $firmware,
            ") END,
                CASE WHEN EXISTS (
                    SELECT 1 FROM rollouts q JOIN firmware g ON g.id = q.firmware_id
                     WHERE q.seq <> ",
            $seq,
            " AND q.count_succeeded > 0
                       AND g.product = (SELECT t.product FROM firmware t WHERE t.id = ",
            $firmware,
            ") AND g.id <> ",
            $firmware,
            ") THEN (SELECT r.firmware_id FROM rollout_devices o
                   JOIN rollouts r ON r.seq = o.rollout
                   JOIN firmware f ON f.id = r.firmware_id
                  WHERE o.device_id = ",
            $device,
            " AND o.rollout <> ",
            $seq,
            " AND o.state = 'succeeded'
                    AND f.product = (SELECT t.product FROM firmware t WHERE t.id = ",
            $firmware,
            ") AND f.id <> ",
            $firmware,
            " ORDER BY o.updated_at DESC LIMIT 1) END)"
        )
    };
}

/// SQL condition on `rollout_devices` (not aliased): a wave device of
/// the rollout keyed `?1` (see [`in_wave!`]).
const WAVE_ROW: &str = concat!(
    "rollout = ?1 AND ",
    wave_device!(
        "rollout_devices",
        "(SELECT c.assign_cursor FROM rollouts c WHERE c.seq = ?1)"
    )
);

/// SQL assignments that write a wave device of the rollout keyed `?1`
/// (firmware `?2`) as the assigned row it stands for: its wave's phase,
/// assignment time and deadline, and its previous firmware, read now.
const WAVE_SET: &str = concat!(
    "attempt = 1, delivered_at = NULL,
     (phase, assigned_at, deadline) = (
         SELECT w.phase, w.assigned_at, w.deadline FROM rollout_waves w
          WHERE w.rollout = ?1 AND w.last_device >= rollout_devices.device_id
          ORDER BY w.last_device LIMIT 1),
     previous_firmware_id = ",
    previous_firmware!("?1", "?2", "rollout_devices.device_id")
);

/// SQL condition: the `rollout_devices` row aliased `$a` holds an
/// assignment for its device, i.e. may hand it something: a first
/// delivery or retry in flight (written, or in a wave), or a rollback not
/// yet reported. A device holding one is busy for every other rollout.
macro_rules! holds_assignment {
    ($a:literal) => {
        concat!(
            "(",
            $a,
            ".state = 'in_progress' OR (",
            $a,
            ".state = 'rolled_back' AND ",
            $a,
            ".rollback_state IN ('pending', 'delivered')) OR ",
            in_wave!($a),
            ")"
        )
    };
}

/// A device's rollout rows that hold an assignment (`?1` is the device).
const ASSIGNMENT_ROWS: &str = concat!("rd.device_id = ?1 AND ", holds_assignment!("rd"));

#[async_trait]
impl EngineStore for Backend {
    async fn current_assignment(
        &self,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Assignment>, StoreError> {
        let device_id = device_id.to_owned();
        self.call(move |conn| current_assignment(conn, &device_id, now))
            .await
    }

    async fn record_result(
        &self,
        device_id: &str,
        rollout_id: &str,
        outcome: UpdateOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = ResultRecord {
            device_id: device_id.to_owned(),
            rollout_id: rollout_id.to_owned(),
            outcome,
            at,
        };
        self.call(move |conn| {
            immediate(conn, |tx| {
                let mut out = record_batch(tx, std::slice::from_ref(&result))?;
                out.pop().unwrap_or(Ok(()))
            })
        })
        .await
    }

    async fn record_results(
        &self,
        batch: Vec<ResultRecord>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.call(move |conn| immediate(conn, |tx| record_batch(tx, &batch)))
            .await
    }

    async fn engine_rollout_ids(&self) -> Result<Vec<String>, StoreError> {
        self.engine_share().await
    }

    async fn engine_rollout(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<EngineRollout, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| load(conn, &id, now)).await
    }

    async fn apply_engine_action(
        &self,
        id: &str,
        guard: EngineGuard,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| immediate(conn, |tx| apply(tx, &id, guard, &action, now)))
            .await
    }

    async fn get_rollout_device(
        &self,
        rollout_id: &str,
        device_id: &str,
    ) -> Result<RolloutDevice, StoreError> {
        let (rollout_id, device_id) = (rollout_id.to_owned(), device_id.to_owned());
        self.call_read(move |conn| {
            conn.prepare_cached(&format!(
                "{DEVICE_SELECT} WHERE r.id = ?1 AND rd.device_id = ?2"
            ))?
            .query_row(params![rollout_id, device_id], device_from_row)
            .optional()?
            .ok_or_else(|| not_found(ObjectKind::Device, &device_id))
        })
        .await
    }

    async fn list_rollout_devices(
        &self,
        rollout_id: &str,
        state: Option<DeviceState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RolloutDevice>, StoreError> {
        let (rollout_id, after) = (rollout_id.to_owned(), after.map(str::to_owned));
        let limit = i64::from(limit.min(crate::store::MAX_PAGE_SIZE + 1));
        self.call_read(move |conn| {
            // Separate statements so that each is a range scan of the
            // primary key in device id order.
            let after = after.unwrap_or_default();
            let rows = match state {
                Some(state) => conn
                    .prepare_cached(&format!(
                        "{DEVICE_SELECT} WHERE r.id = ?1 AND {} = ?2 AND rd.device_id > ?3
                          ORDER BY rd.device_id LIMIT ?4",
                        effective_state!()
                    ))?
                    .query_map(
                        params![rollout_id, state.as_str(), after, limit],
                        device_from_row,
                    )?
                    .collect::<db::Result<_>>()?,
                None => conn
                    .prepare_cached(&format!(
                        "{DEVICE_SELECT} WHERE r.id = ?1 AND rd.device_id > ?2
                          ORDER BY rd.device_id LIMIT ?3"
                    ))?
                    .query_map(params![rollout_id, after, limit], device_from_row)?
                    .collect::<db::Result<_>>()?,
            };
            Ok(rows)
        })
        .await
    }

    async fn engine_events(&self, rollout_id: &str) -> Result<Vec<EngineEvent>, StoreError> {
        let rollout_id = rollout_id.to_owned();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT at, detail FROM audit_log
                  WHERE object_kind = 'rollout' AND object_id = ?1 AND detail IS NOT NULL
                  ORDER BY seq",
            )?;
            let mut rows = stmt.query([rollout_id])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let at = time::parse(&r.get::<_, String>(0)?)?;
                let detail: String = r.get(1)?;
                let v: serde_json::Value =
                    serde_json::from_str(&detail).map_err(StoreError::backend)?;
                let text = |k: &str| match &v[k] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.push(EngineEvent {
                    at,
                    kind: text("kind"),
                    from: text("from"),
                    to: text("to"),
                    reason: text("reason"),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn recount_rollout(&self, rollout_id: &str) -> Result<(Counts, Counts), StoreError> {
        let rollout_id = rollout_id.to_owned();
        self.call_read(move |conn| {
            let row = progress_row(conn, &rollout_id)?;
            let stored = row.counts;
            let mut scanned = Counts::default();
            // A wave device counts as in progress and assigned.
            let mut stmt = conn.prepare_cached(concat!(
                "SELECT CASE WHEN ",
                in_wave!("rd"),
                " THEN 'in_progress' ELSE rd.state END AS s, COUNT(*),
                        SUM(CASE WHEN rd.attempt > 0 OR ",
                in_wave!("rd"),
                " THEN 1 ELSE 0 END)
                   FROM rollout_devices rd WHERE rd.rollout = ?1 GROUP BY s"
            ))?;
            let mut rows = stmt.query([row.seq])?;
            while let Some(r) = rows.next()? {
                let state = parse_state(&r.get::<_, String>(0)?)?;
                let n: u64 = r.get(1)?;
                let ever_assigned: u64 = r.get(2)?;
                scanned.targeted += n;
                scanned.assigned += ever_assigned;
                *match state {
                    DeviceState::Pending => &mut scanned.pending,
                    DeviceState::InProgress => &mut scanned.in_progress,
                    DeviceState::Succeeded => &mut scanned.succeeded,
                    DeviceState::Failed => &mut scanned.failed,
                    DeviceState::RolledBack => &mut scanned.rolled_back,
                    DeviceState::Cancelled => &mut scanned.cancelled,
                } += n;
            }
            Ok((stored, scanned))
        })
        .await
    }
}

/// Runs `f` in an immediate (write-locking) transaction and commits it.
fn immediate<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn not_found(kind: ObjectKind, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

fn conflict(message: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        field: None,
        message: message.into(),
    }
}

fn bad_value(what: &str, value: &str) -> db::Error {
    db::Error::FromSqlConversionFailure(
        0,
        db::types::Type::Text,
        format!("unexpected {what} {value:?} in the database").into(),
    )
}

fn parse_state(s: &str) -> db::Result<DeviceState> {
    DeviceState::parse(s).ok_or_else(|| bad_value("device state", s))
}

fn parse_rollback(s: Option<String>) -> db::Result<Option<RollbackState>> {
    s.map(|s| RollbackState::parse(&s).ok_or_else(|| bad_value("rollback state", &s)))
        .transpose()
}

fn opt_time(s: Option<String>) -> db::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(time::parse).transpose()
}

fn opt_millis(ms: Option<i64>) -> db::Result<Option<DateTime<Utc>>> {
    ms.map(time::from_millis).transpose()
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

// ------------------------------------------------------------------ progress

/// The engine columns of a rollout row.
struct ProgressRow {
    /// The rollout's key in `rollout_devices`.
    seq: i64,
    status: Status,
    counts: Counts,
    progress: Progress,
    firmware_id: String,
    device_timeout: String,
    max_retries: u32,
    version: i64,
    /// The last device id the assignment scan has passed (see [`assign`]).
    assign_cursor: String,
}

fn progress_row(conn: &Connection, id: &str) -> Result<ProgressRow, StoreError> {
    conn.prepare_cached(
        "SELECT status, count_targeted, count_pending, count_in_progress, count_succeeded,
                count_failed, count_rolled_back, count_cancelled, count_assigned,
                engine_started_at, engine_cleaned_at, current_phase, phase_completed_at,
                rate_anchor_at, rate_anchor_assigned, baseline_succeeded, baseline_failed,
                targets_refreshed_at, firmware_id, device_timeout, max_retries, version, seq,
                assign_cursor
           FROM rollouts WHERE id = ?1",
    )?
    .query_row([id], |r| {
        let status: String = r.get(0)?;
        let status = Status::parse(&status).ok_or_else(|| bad_value("rollout status", &status))?;
        let counts = Counts {
            targeted: count(r.get(1)?),
            pending: count(r.get(2)?),
            in_progress: count(r.get(3)?),
            succeeded: count(r.get(4)?),
            failed: count(r.get(5)?),
            rolled_back: count(r.get(6)?),
            cancelled: count(r.get(7)?),
            assigned: count(r.get(8)?),
        };
        let rate_anchor = opt_time(r.get(13)?)?.map(|at| RateAnchor {
            at,
            assigned: count(r.get(14).unwrap_or(0)),
        });
        let progress = Progress {
            status,
            counts,
            started_at: opt_time(r.get(9)?)?,
            cleaned_up: r.get::<_, Option<String>>(10)?.is_some(),
            current_phase: count(r.get(11)?) as usize,
            phase_completed_at: opt_time(r.get(12)?)?,
            rate_anchor,
            baseline: Baseline {
                succeeded: count(r.get(15)?),
                failed: count(r.get(16)?),
            },
            targets_refreshed_at: opt_time(r.get(17)?)?,
            expired: 0,
            expired_final: 0,
        };
        Ok(ProgressRow {
            status,
            counts,
            progress,
            firmware_id: r.get(18)?,
            device_timeout: r.get(19)?,
            max_retries: r.get(20)?,
            version: r.get(21)?,
            seq: r.get(22)?,
            assign_cursor: r.get(23)?,
        })
    })
    .optional()?
    .ok_or_else(|| not_found(ObjectKind::Rollout, id))
}

fn load(conn: &Connection, id: &str, now: DateTime<Utc>) -> Result<EngineRollout, StoreError> {
    let rollout = rollouts::get(conn, id)?;
    let row = progress_row(conn, id)?;
    let mut progress = row.progress;
    let (expired, expired_final): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempt > ?3 THEN 1 ELSE 0 END), 0) FROM rollout_devices
              WHERE rollout = ?1 AND state = 'in_progress' AND deadline <= ?2",
        )?
        .query_row(params![row.seq, time::to_millis(now), row.max_retries], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    // A wave past its deadline counts as one expired device until
    // [`expire`] writes its devices (it may have none left).
    let waves: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM rollout_waves WHERE rollout = ?1 AND deadline <= ?2")?
        .query_row(params![row.seq, time::to_millis(now)], |r| r.get(0))?;
    progress.expired = count(expired + waves);
    progress.expired_final = count(expired_final + if row.max_retries == 0 { waves } else { 0 });
    Ok(EngineRollout { rollout, progress })
}

/// Adds `delta` to a rollout's counters.
fn write_counts(tx: &Connection, id: &str, d: &CountsDelta, now: &str) -> Result<(), StoreError> {
    if d.is_zero() {
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE rollouts
            SET count_targeted = count_targeted + ?2, count_pending = count_pending + ?3,
                count_in_progress = count_in_progress + ?4,
                count_succeeded = count_succeeded + ?5, count_failed = count_failed + ?6,
                count_rolled_back = count_rolled_back + ?7,
                count_cancelled = count_cancelled + ?8, count_assigned = count_assigned + ?9,
                updated_at = ?10
          WHERE id = ?1",
    )?
    .execute(params![
        id,
        d.targeted,
        d.pending,
        d.in_progress,
        d.succeeded,
        d.failed,
        d.rolled_back,
        d.cancelled,
        d.assigned,
        now
    ])?;
    Ok(())
}

/// Records an engine change in the audit log (the rollout's version does
/// not move: the engine is not an editor of the definition).
#[allow(clippy::too_many_arguments)]
fn audit(
    tx: &Connection,
    id: &str,
    version: i64,
    now: &str,
    kind: &str,
    from: &str,
    to: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let detail = serde_json::json!({ "kind": kind, "from": from, "to": to, "reason": reason });
    tx.prepare_cached(
        "INSERT INTO audit_log
             (at, actor, action, object_kind, object_id, before_version, after_version, detail)
         VALUES (?1, ?2, 'update', 'rollout', ?3, ?4, ?4, ?5)",
    )?
    .execute(params![now, ENGINE_ACTOR, id, version, detail.to_string()])?;
    tracing::info!(
        rollout = id,
        kind,
        from,
        to,
        reason,
        "rollout {kind} changed"
    );
    Ok(())
}

fn set_status(
    tx: &Connection,
    row: &ProgressRow,
    id: &str,
    to: Status,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let now_text = time::to_text(now);
    tx.prepare_cached("UPDATE rollouts SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, to.as_str(), now_text])?;
    audit(
        tx,
        id,
        row.version,
        &now_text,
        "status",
        row.status.as_str(),
        to.as_str(),
        reason,
    )?;
    if to.is_terminal() {
        clean_up(tx, row, id, to, now)
    } else {
        Ok(0)
    }
}

fn timeout_secs(row: &ProgressRow) -> i64 {
    duration::parse("device_timeout", &row.device_timeout)
        .unwrap_or(crate::domain::rollout::DEFAULT_DEVICE_TIMEOUT_SECS)
        .min(crate::domain::rollout::MAX_DEVICE_TIMEOUT_SECS) as i64
}

/// The end of a rollout: pending devices and assignments nobody fetched
/// yet are cancelled; on `rolled_back`, devices that updated get their
/// previous firmware assigned back (where it is known).
fn clean_up(
    tx: &Connection,
    row: &ProgressRow,
    id: &str,
    status: Status,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let now_text = time::to_text(now);
    let now_ms = time::to_millis(now);
    let reason = format!("rollout {status} before this device was updated");
    let mut delta = CountsDelta::default();
    // Wave devices first: they are in progress, and nobody fetched them.
    let w = tx
        .prepare_cached(&format!(
            "UPDATE rollout_devices SET state = 'cancelled', reason = ?3, updated_at = ?4,
                    {WAVE_SET}
              WHERE {WAVE_ROW}"
        ))?
        .execute(params![row.seq, row.firmware_id, reason, now_ms])? as u64;
    delta.moved(DeviceState::InProgress, DeviceState::Cancelled, w);
    tx.prepare_cached("DELETE FROM rollout_waves WHERE rollout = ?1")?
        .execute([row.seq])?;
    let n = tx
        .prepare_cached(
            "UPDATE rollout_devices SET state = 'cancelled', reason = ?2, updated_at = ?3
              WHERE rollout = ?1 AND state = 'pending'",
        )?
        .execute(params![row.seq, reason, now_ms])? as u64;
    delta.moved(DeviceState::Pending, DeviceState::Cancelled, n);
    let m = tx
        .prepare_cached(
            "UPDATE rollout_devices SET state = 'cancelled', reason = ?2, updated_at = ?3
              WHERE rollout = ?1 AND state = 'in_progress' AND delivered_at IS NULL",
        )?
        .execute(params![row.seq, reason, now_ms])? as u64;
    delta.moved(DeviceState::InProgress, DeviceState::Cancelled, m);
    let mut rolled = 0;
    if status == Status::RolledBack {
        let deadline = time::to_millis(now + Duration::seconds(timeout_secs(row)));
        rolled = tx
            .prepare_cached(
                "UPDATE rollout_devices
                    SET state = 'rolled_back', rollback_state = 'pending',
                        reason = 'rollout rolled back: previous firmware reassigned',
                        assigned_at = ?2, deadline = ?3, updated_at = ?2
                  WHERE rollout = ?1 AND state = 'succeeded'
                    AND previous_firmware_id IS NOT NULL",
            )?
            .execute(params![row.seq, now_ms, deadline])? as u64;
        delta.moved(DeviceState::Succeeded, DeviceState::RolledBack, rolled);
    }
    write_counts(tx, id, &delta, &now_text)?;
    tx.prepare_cached("UPDATE rollouts SET engine_cleaned_at = ?2 WHERE id = ?1")?
        .execute(params![id, now_text])?;
    Ok(w + n + m + rolled)
}

// ------------------------------------------------------------------ targets

/// Adds the rollout's current targets that are not in it yet, as pending:
/// static and query members of its target groups and of their subgroups,
/// whose hardware the firmware supports.
///
/// At the start (`waiting` is `None`) the new rows are the assignment
/// queue above the rollout's empty cursor. Later (a continuous rollout's
/// refresh) the cursor may have passed their ids, so they carry the
/// reason `waiting` and the assignment finds them through the waiting
/// index (see [`assign`]).
fn add_targets(
    tx: &Connection,
    rollout: &Rollout,
    seq: i64,
    now: DateTime<Utc>,
    waiting: Option<&str>,
    delta: &mut CountsDelta,
) -> Result<u64, StoreError> {
    let ids_json = serde_json::to_string(&rollout.target_group_ids).map_err(StoreError::backend)?;
    let groups: Vec<(String, Option<String>)> = tx
        .prepare_cached(&format!(
            "WITH RECURSIVE sub (id, depth) AS (
                 SELECT value, 0 FROM {}
                 UNION
                 SELECT g.id, s.depth + 1 FROM device_groups g JOIN sub s ON g.parent_id = s.id
                  WHERE s.depth < ?2
             )
             SELECT DISTINCT g.id, g.query FROM sub JOIN device_groups g ON g.id = sub.id",
            db::json_text_elements("?1")
        ))?
        .query_map(params![ids_json, MAX_DEPTH], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<db::Result<_>>()?;
    let hardware: String = tx
        .prepare_cached("SELECT hardware FROM firmware WHERE id = ?1")?
        .query_row([&rollout.firmware_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| not_found(ObjectKind::Firmware, &rollout.firmware_id))?;
    let group_ids: Vec<&str> = groups.iter().map(|(id, _)| id.as_str()).collect();
    let groups_json = serde_json::to_string(&group_ids).map_err(StoreError::backend)?;
    let now = time::to_millis(now);

    // Static members, in one statement. A device in several of the groups
    // comes once per group and the insert ignores the repeats: cheaper
    // than sorting for DISTINCT. Each group's members come in device id
    // order, the table's key order, so rows are mostly appended.
    let mut added = tx
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO rollout_devices
                    (rollout, device_id, state, attempt, reason, updated_at)
             SELECT ?1, m.device_id, 'pending', 0, ?5, ?4 FROM device_group_members m
               JOIN devices d ON d.id = m.device_id
              WHERE m.group_id IN (SELECT value FROM {})
                AND d.hardware IN (SELECT value FROM {})",
            db::json_text_elements("?2"),
            db::json_text_elements("?3")
        ))?
        .execute(params![seq, groups_json, hardware, now, waiting])? as u64;

    // Query members: each device's facts matched here, inserted in chunks
    // (a bounded parameter).
    let queries: Vec<Query> = groups
        .iter()
        .filter_map(|(id, q)| membership::parse_stored_query(id, q.as_deref()))
        .collect();
    if !queries.is_empty() {
        let supported: HashSet<String> =
            serde_json::from_str(&hardware).map_err(StoreError::backend)?;
        let mut matched = BTreeSet::new();
        membership::for_each_device(tx, |facts, _| {
            if supported.contains(&facts.hardware) && queries.iter().any(|q| q.matches(facts)) {
                matched.insert(facts.id.clone());
            }
        })?;
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO rollout_devices
                    (rollout, device_id, state, attempt, reason, updated_at)
             SELECT ?1, value, 'pending', 0, ?4, ?3 FROM {}",
            db::json_text_elements("?2")
        ))?;
        let matched: Vec<String> = matched.into_iter().collect();
        for chunk in matched.chunks(TARGET_CHUNK) {
            let ids = serde_json::to_string(chunk).map_err(StoreError::backend)?;
            added += stmt.execute(params![seq, ids, now, waiting])? as u64;
        }
    }
    delta.targets_added(added);
    Ok(added)
}

// ------------------------------------------------------------------ actions

fn apply(
    tx: &Transaction<'_>,
    id: &str,
    guard: EngineGuard,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    let row = progress_row(tx, id)?;
    if row.version != guard.version
        || row.status != guard.status
        || row.progress.current_phase != guard.current_phase
    {
        return Ok(Applied::Stale);
    }
    let now_text = time::to_text(now);
    let mut delta = CountsDelta::default();
    let devices =
        match action {
            Action::Wait { .. } => 0,
            Action::Start => {
                let rollout = rollouts::get(tx, id)?;
                let added = add_targets(tx, &rollout, row.seq, now, None, &mut delta)?;
                write_counts(tx, id, &delta, &now_text)?;
                delta = CountsDelta::default();
                let counts = progress_row(tx, id)?.counts;
                tx.prepare_cached(
                    "UPDATE rollouts
                    SET count_targeted = ?2, engine_started_at = ?3, targets_refreshed_at = ?3,
                        rate_anchor_at = ?3, rate_anchor_assigned = count_assigned,
                        baseline_succeeded = count_succeeded,
                        baseline_failed = count_failed + count_rolled_back
                  WHERE id = ?1",
                )?
                // Before the start `count_targeted` held an estimate made when
                // the rollout was written; from now on it is exact.
                .execute(params![
                    id,
                    (counts.pending + counts.in_progress + counts.finished()) as i64,
                    now_text
                ])?;
                let reason = format!("started: {added} devices targeted");
                set_status(tx, &row, id, Status::Running, &reason, now)?;
                added
            }
            Action::Resume => {
                tx.prepare_cached(
                    "UPDATE rollouts
                    SET rate_anchor_at = ?2, rate_anchor_assigned = count_assigned,
                        baseline_succeeded = count_succeeded,
                        baseline_failed = count_failed + count_rolled_back
                  WHERE id = ?1",
                )?
                .execute(params![id, now_text])?;
                set_status(
                    tx,
                    &row,
                    id,
                    Status::Running,
                    "resumed; the failure threshold counts results from now on",
                    now,
                )?
            }
            Action::SetStatus { to, reason } => set_status(tx, &row, id, *to, reason, now)?,
            Action::FailureAction { action, reason } => {
                set_status(tx, &row, id, eng::status_for(*action), reason, now)?
            }
            Action::CleanUp => clean_up(tx, &row, id, row.status, now)?,
            Action::RefreshTargets => {
                let rollout = rollouts::get(tx, id)?;
                let added =
                    add_targets(tx, &rollout, row.seq, now, Some(TARGETED_LATE), &mut delta)?;
                tx.prepare_cached("UPDATE rollouts SET targets_refreshed_at = ?2 WHERE id = ?1")?
                    .execute(params![id, now_text])?;
                if added > 0 {
                    tracing::info!(
                        rollout = id,
                        added,
                        "continuous rollout: new devices targeted"
                    );
                }
                added
            }
            Action::ExpireTimeouts {
                mode,
                max_retries,
                deadline,
            } => expire(tx, &row, *mode, *max_retries, *deadline, now, &mut delta)?,
            Action::CompletePhase { phase } => {
                tx.prepare_cached("UPDATE rollouts SET phase_completed_at = ?2 WHERE id = ?1")?
                    .execute(params![id, now_text])?;
                audit(
                    tx,
                    id,
                    row.version,
                    &now_text,
                    "phase",
                    &(phase + 1).to_string(),
                    &(phase + 1).to_string(),
                    "every device of the phase finished; soaking",
                )?;
                0
            }
            Action::AdvancePhase { to } => {
                tx.prepare_cached(
                    "UPDATE rollouts SET current_phase = ?2, phase_completed_at = NULL,
                        updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id, *to as i64, now_text])?;
                audit(
                    tx,
                    id,
                    row.version,
                    &now_text,
                    "phase",
                    &(row.progress.current_phase + 1).to_string(),
                    &(to + 1).to_string(),
                    "soak elapsed; next phase",
                )?;
                0
            }
            Action::SetRateAnchor(anchor) => {
                tx.prepare_cached(
                "UPDATE rollouts SET rate_anchor_at = ?2, rate_anchor_assigned = ?3 WHERE id = ?1",
            )?
            .execute(params![id, time::to_text(anchor.at), anchor.assigned as i64])?;
                0
            }
            Action::Assign {
                count,
                phase,
                deadline,
            } => assign(tx, &row, *count, *phase, *deadline, now, &mut delta)?,
        };
    write_counts(tx, id, &delta, &now_text)?;
    Ok(Applied::Done { devices })
}

/// Assigns up to `count` pending devices. Devices that were deleted are
/// cancelled instead; devices busy with another rollout (in progress, or
/// being rolled back) wait for a later tick.
///
/// The queue is read in two parts, each in device id order: first the
/// waiting devices (passed over earlier, or targeted after the start;
/// they carry a reason and have a partial index), then the rows above the
/// rollout's `assign_cursor`, a range of the primary key. The cursor
/// moves past every row the scan reads; a busy device it passes is given
/// the waiting reason. No queue index entry is deleted, and the start
/// inserts none.
///
/// When no other rollout holds assignments (its counters say so), the
/// devices above the cursor become a *wave*: one `rollout_waves` row
/// (the id range, phase, assignment time and deadline) and no write to
/// the devices' rows, which stand for in-progress rows by their position
/// below the cursor ([`in_wave!`]). A wave device's row is written when
/// it is first fetched, reports, times out or the rollout ends
/// ([`WAVE_SET`]); its previous firmware is read then.
///
/// The waiting devices, and every device while another rollout holds
/// assignments, are read once with their previous firmware and written
/// set-based: one statement per distinct previous firmware (a fleet
/// mostly runs one release, so one or two per batch) and one for the
/// deleted devices, rather than one statement per device.
fn assign(
    tx: &Connection,
    row: &ProgressRow,
    count: u64,
    phase: usize,
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
    delta: &mut CountsDelta,
) -> Result<u64, StoreError> {
    let cursor = &row.assign_cursor;
    // Whether any other rollout could be updating a device: its counters
    // say it has devices in progress or rolled back (a rollback may still
    // be in flight). Usually none, and the per-device probe is skipped.
    let others_busy: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM rollouts
                             WHERE seq <> ?1 AND (count_in_progress > 0 OR count_rolled_back > 0))",
        )?
        .query_row([row.seq], |r| r.get(0))?;
    let mut queue = Queue {
        tx,
        seq: row.seq,
        others_busy,
        firmware_id: &row.firmware_id,
        want: count as usize,
        batch: Vec::new(),
    };
    queue.scan(Part::Waiting, "")?;
    let waiting = queue.batch.len();
    let (passed, end) = queue.scan(Part::AboveCursor, cursor)?;
    let mut batch = queue.batch;
    // Without another rollout in the way, the devices above the cursor
    // form a wave: no row of theirs is written.
    let wave = if others_busy {
        Vec::new()
    } else {
        batch.split_off(waiting)
    };
    let now = time::to_millis(now);
    if !passed.is_empty() {
        let ids = serde_json::to_string(&passed).map_err(StoreError::backend)?;
        tx.prepare_cached(&format!(
            "UPDATE rollout_devices SET reason = ?3, updated_at = ?4
              WHERE rollout = ?1 AND state = 'pending' AND device_id IN (SELECT value FROM {})",
            db::json_text_elements("?2")
        ))?
        .execute(params![row.seq, ids, WAITING_BUSY, now])?;
    }
    if end != *cursor {
        tx.prepare_cached("UPDATE rollouts SET assign_cursor = ?2 WHERE seq = ?1")?
            .execute(params![row.seq, end])?;
    }

    let mut by_previous: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
    let mut deleted = Vec::new();
    for c in &batch {
        if c.exists {
            by_previous
                .entry(c.previous.as_deref())
                .or_default()
                .push(&c.device_id);
        } else {
            deleted.push(c.device_id.as_str());
        }
    }
    deleted.extend(
        wave.iter()
            .filter(|c| !c.exists)
            .map(|c| c.device_id.as_str()),
    );
    let deadline = time::to_millis(deadline);
    let mut assigned = 0;
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE rollout_devices
            SET state = 'in_progress', attempt = 1, phase = ?3, assigned_at = ?4,
                deadline = ?5, delivered_at = NULL, reason = NULL, updated_at = ?4,
                previous_firmware_id = ?6
          WHERE rollout = ?1 AND state = 'pending'
            AND device_id IN (SELECT value FROM {})",
        db::json_text_elements("?2")
    ))?;
    for (previous, ids) in by_previous {
        let ids = serde_json::to_string(&ids).map_err(StoreError::backend)?;
        assigned +=
            stmt.execute(params![row.seq, ids, phase as i64, now, deadline, previous])? as u64;
    }
    let members = wave.iter().filter(|c| c.exists).count() as u64;
    if members > 0 {
        tx.prepare_cached(
            "INSERT INTO rollout_waves
                    (rollout, last_device, after_device, phase, assigned_at, deadline)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![row.seq, end, cursor, phase as i64, now, deadline])?;
        assigned += members;
    }
    delta.moved(DeviceState::Pending, DeviceState::InProgress, assigned);
    let mut cancelled = 0;
    if !deleted.is_empty() {
        let ids = serde_json::to_string(&deleted).map_err(StoreError::backend)?;
        cancelled = tx
            .prepare_cached(&format!(
                "UPDATE rollout_devices
                    SET state = 'cancelled', reason = 'device deleted', updated_at = ?3
                  WHERE rollout = ?1 AND state = 'pending'
                    AND device_id IN (SELECT value FROM {})",
                db::json_text_elements("?2")
            ))?
            .execute(params![row.seq, ids, now])? as u64;
        delta.moved(DeviceState::Pending, DeviceState::Cancelled, cancelled);
    }
    Ok(assigned + cancelled)
}

/// A pending device the assignment may take (see [`Queue`]).
struct Candidate {
    device_id: String,
    /// The device still exists (else its assignment is cancelled).
    exists: bool,
    /// What a rollback would reassign.
    previous: Option<String>,
}

/// One assignment batch being gathered from the rollout's queue.
struct Queue<'a> {
    tx: &'a Connection,
    seq: i64,
    firmware_id: &'a str,
    /// Another rollout may hold assignments: probe every device.
    others_busy: bool,
    want: usize,
    batch: Vec<Candidate>,
}

/// The two parts of a rollout's assignment queue.
#[derive(Clone, Copy)]
enum Part {
    /// Pending devices that wait with a reason (the waiting index).
    Waiting,
    /// Pending devices above the cursor (a range of the primary key).
    AboveCursor,
}

impl Queue<'_> {
    /// Reads the rows of `part` after `after` in device id order until the
    /// batch is full or the part is exhausted. Returns the busy devices
    /// passed over and the last device id read (`after` if none).
    fn scan(&mut self, part: Part, after: &str) -> Result<(Vec<String>, String), StoreError> {
        let (index, condition) = match part {
            Part::Waiting => (
                db::indexed_by("rollout_devices_waiting"),
                "rd.reason IS NOT NULL",
            ),
            Part::AboveCursor => (String::new(), "rd.reason IS NULL"),
        };
        // Each device: whether it still exists, whether another rollout is
        // updating it, and its previous firmware: the release of this
        // product the device reports running, else the one it last
        // updated to in another rollout.
        let tx = self.tx;
        let wave = matches!(part, Part::AboveCursor) && !self.others_busy;
        let sql = if wave {
            // A wave: whether each device still exists, nothing more.
            "SELECT rd.device_id, EXISTS (SELECT 1 FROM devices d WHERE d.id = rd.device_id)
               FROM rollout_devices rd
              WHERE rd.rollout = ?1 AND rd.state = 'pending' AND rd.reason IS NULL
                AND rd.device_id > ?2
              ORDER BY rd.device_id LIMIT ?3"
                .to_owned()
        } else {
            format!(
                concat!(
                    "SELECT rd.device_id, d.id IS NOT NULL,
                        CASE WHEN ?5 THEN d.id IS NOT NULL AND EXISTS (
                            SELECT 1 FROM rollout_devices o
                             WHERE o.device_id = rd.device_id AND o.rollout <> rd.rollout
                               AND ",
                    holds_assignment!("o"),
                    ") ELSE FALSE END,
                        ",
                    previous_firmware!("?1", "?4", "rd.device_id"),
                    "
                   FROM rollout_devices rd {} LEFT JOIN devices d ON d.id = rd.device_id
                  WHERE rd.rollout = ?1 AND rd.state = 'pending' AND {}
                    AND rd.device_id > ?2
                  ORDER BY rd.device_id LIMIT ?3"
                ),
                index, condition
            )
        };
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut passed = Vec::new();
        let mut last = after.to_owned();
        while self.batch.len() < self.want {
            let limit = (self.want - self.batch.len()) as i64;
            let mut rows = if wave {
                stmt.query(params![self.seq, last, limit])?
            } else {
                stmt.query(params![
                    self.seq,
                    last,
                    limit,
                    self.firmware_id,
                    self.others_busy
                ])?
            };
            let mut read = 0;
            while let Some(r) = rows.next()? {
                read += 1;
                let device_id: String = r.get(0)?;
                last.clone_from(&device_id);
                if !wave && r.get(2)? {
                    passed.push(device_id);
                } else {
                    self.batch.push(Candidate {
                        device_id,
                        exists: r.get(1)?,
                        previous: if wave { None } else { r.get(3)? },
                    });
                }
            }
            if read < limit {
                break;
            }
        }
        Ok((passed, last))
    }
}

/// Times out in-progress devices past their deadline (one batch).
fn expire(
    tx: &Connection,
    row: &ProgressRow,
    mode: TimeoutMode,
    max_retries: u32,
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
    delta: &mut CountsDelta,
) -> Result<u64, StoreError> {
    let seq = row.seq;
    let now_ms = time::to_millis(now);
    // Waves past their deadline: their devices are written as the
    // in-progress rows they stand for (found by deadline below), then the
    // wave goes. About a batch's worth of devices per call.
    let waves: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT after_device, last_device FROM rollout_waves
              WHERE rollout = ?1 AND deadline <= ?2 ORDER BY deadline, last_device LIMIT ?3",
        )?
        .query_map(params![seq, now_ms, EXPIRE_WAVES], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<db::Result<_>>()?;
    let mut removed = 0;
    let mut written = 0;
    for (after, last) in waves {
        if written >= EXPIRE_BATCH as usize {
            break;
        }
        written += tx
            .prepare_cached(&format!(
                "UPDATE rollout_devices SET state = 'in_progress', reason = NULL, updated_at = ?3,
                        {WAVE_SET}
                  WHERE {WAVE_ROW} AND device_id > ?4 AND device_id <= ?5"
            ))?
            .execute(params![seq, row.firmware_id, now_ms, after, last])?;
        tx.prepare_cached("DELETE FROM rollout_waves WHERE rollout = ?1 AND last_device = ?2")?
            .execute(params![seq, last])?;
        removed += 1;
    }
    let only_final = mode == TimeoutMode::FinalOnly;
    let expired: Vec<(String, u32)> = tx
        .prepare_cached(
            "SELECT device_id, attempt FROM rollout_devices
              WHERE rollout = ?1 AND state = 'in_progress' AND deadline <= ?2
                AND (NOT ?3 OR attempt > ?4)
              ORDER BY deadline LIMIT ?5",
        )?
        .query_map(
            params![seq, now_ms, only_final, max_retries, EXPIRE_BATCH],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<db::Result<_>>()?;
    let mut retry = tx.prepare_cached(
        "UPDATE rollout_devices
            SET attempt = ?3, assigned_at = ?4, deadline = ?5, delivered_at = NULL,
                reason = ?6, updated_at = ?4
          WHERE rollout = ?1 AND device_id = ?2 AND state = 'in_progress'",
    )?;
    let mut fail = tx.prepare_cached(
        "UPDATE rollout_devices SET state = 'failed', reason = ?3, updated_at = ?4
          WHERE rollout = ?1 AND device_id = ?2 AND state = 'in_progress'",
    )?;
    let deadline = time::to_millis(deadline);
    let mut changed = 0;
    for (device_id, attempt) in expired {
        match eng::on_timeout(attempt, max_retries, mode) {
            TimeoutOutcome::Retry { attempt: next } => {
                let reason = format!("attempt {attempt} timed out; retrying");
                changed +=
                    retry.execute(params![seq, device_id, next, now_ms, deadline, reason])? as u64;
            }
            TimeoutOutcome::Fail { reason } => {
                let n = fail.execute(params![seq, device_id, reason, now_ms])? as u64;
                delta.moved(DeviceState::InProgress, DeviceState::Failed, n);
                changed += n;
            }
            TimeoutOutcome::Keep => {}
        }
    }
    // Deleting a wave whose devices all reported is progress too: the
    // engine's tick goes on to its next step.
    Ok(changed.max(u64::from(removed > 0)))
}

// ------------------------------------------------------------------ devices

/// Applies a batch of reports in one transaction, with an outcome per
/// item (an unknown rollout or device, or a report the device's state
/// refuses, fails that item alone; anything else fails the batch).
///
/// Within the transaction a rollout's engine columns and its devices'
/// rows cannot change under us. Each rollout is read once. Reports of a
/// device made once in the batch are first written as the domain decides
/// them for a device in progress (the common case: an update's first and
/// only result), guarded by that state and without reading the rows (see
/// [`write_expected`]). The remaining reports are decided against their
/// rows, read in one statement, as the batch leaves them. Transitions are
/// written set-based, one statement per group of identical changes
/// (typically: every success reported in the same millisecond), with the
/// counter moves summed into one update per rollout.
fn record_batch(
    tx: &Transaction<'_>,
    batch: &[ResultRecord],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut rollouts: HashMap<&str, Batched> = HashMap::new();
    let mut out = Vec::with_capacity(batch.len());
    for r in batch {
        let b = match rollouts.entry(r.rollout_id.as_str()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match progress_row(tx, &r.rollout_id) {
                Ok(row) => {
                    let mine: Vec<&ResultRecord> = batch
                        .iter()
                        .filter(|o| o.rollout_id == r.rollout_id)
                        .collect();
                    let mut delta = CountsDelta::default();
                    let done = write_expected(tx, &row, &mine, &mut delta)?;
                    let rest: Vec<&str> = mine
                        .iter()
                        .map(|o| o.device_id.as_str())
                        .filter(|id| !done.contains(*id))
                        .collect();
                    let records = device_records(tx, &row, &rest, r.at)?;
                    e.insert(Batched {
                        row,
                        done,
                        records,
                        writes: BTreeMap::new(),
                        written: HashSet::new(),
                        delta,
                        last: r.at,
                    })
                }
                Err(e @ StoreError::NotFound { .. }) => {
                    out.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        if b.done.contains(&r.device_id) {
            b.last = b.last.max(r.at);
            out.push(Ok(()));
            continue;
        }
        match b.apply(tx, r) {
            Ok(()) => out.push(Ok(())),
            // Refused before anything was written: this item alone fails.
            Err(e @ (StoreError::NotFound { .. } | StoreError::Conflict { .. })) => {
                out.push(Err(e))
            }
            Err(e) => return Err(e),
        }
    }
    for (id, b) in &mut rollouts {
        b.flush(tx)?;
        write_counts(tx, id, &b.delta, &time::to_text(b.last))?;
    }
    Ok(out)
}

/// Writes the reports of `reports` (one rollout's share of a batch) whose
/// device reports once in the batch, as the domain decides them for a
/// device in progress with no rollback (whatever its previous firmware),
/// one statement per group of identical transitions, guarded by that
/// state. Returns the devices written; the others (a device reporting
/// twice, an outcome that depends on the row, a row in another state) are
/// left for the read-and-decide path.
fn write_expected(
    tx: &Connection,
    row: &ProgressRow,
    reports: &[&ResultRecord],
    delta: &mut CountsDelta,
) -> Result<HashSet<String>, StoreError> {
    let mut times: HashMap<&str, usize> = HashMap::with_capacity(reports.len());
    for r in reports {
        *times.entry(r.device_id.as_str()).or_default() += 1;
    }
    let mut groups: BTreeMap<Transition, (DeviceState, Vec<&str>)> = BTreeMap::new();
    for r in reports {
        if times[r.device_id.as_str()] > 1 {
            continue;
        }
        let outcome = outcome_of(&r.outcome);
        let as_if = |has_previous| {
            let record = DeviceRecord {
                state: DeviceState::InProgress,
                rollback: None,
                has_previous,
            };
            eng::apply_result(&record, &outcome, row.status).ok()
        };
        let effect = as_if(false);
        if effect != as_if(true) {
            continue;
        }
        if let Some(ResultEffect::Transition {
            state,
            rollback: None,
            reason,
        }) = effect
        {
            let transition = Transition {
                from: DeviceState::InProgress.as_str(),
                to: state.as_str(),
                rollback: None,
                reason,
                at: time::to_millis(r.at),
                deadline: 0,
            };
            groups
                .entry(transition)
                .or_insert_with(|| (state, Vec::new()))
                .1
                .push(&r.device_id);
        }
    }
    let mut done = HashSet::new();
    if groups.is_empty() {
        return Ok(done);
    }
    let waves = Waves::covering(tx, row, groups.values().flat_map(|(_, ids)| ids))?;
    // One statement per transition, wave and chunk of devices: a row in
    // progress takes the transition; a wave device's row (pending, no
    // reason, at or below the cursor `?9`; none when `?9` is NULL) takes
    // it with its wave's values (`?6`–`?8`) and its previous firmware,
    // read now. Each row is found once, whichever it is.
    let mut stmt = tx.prepare_cached(&RESULT_WRITE)?;
    for (t, (state, ids)) in groups {
        let mut n = 0;
        for (wave, ids) in waves.split(ids) {
            let (phase, assigned_at, deadline, cursor) = match wave {
                Some(w) => (
                    Some(w.phase),
                    Some(w.assigned_at),
                    Some(w.deadline),
                    Some(waves.cursor.as_str()),
                ),
                None => (None, None, None, None),
            };
            for chunk in ids.chunks(RESULT_CHUNK) {
                let values = with_ids(
                    vec![
                        &row.seq,
                        &row.firmware_id,
                        &t.to,
                        &t.reason,
                        &t.at,
                        &phase,
                        &assigned_at,
                        &deadline,
                        &cursor,
                    ],
                    chunk,
                );
                let written = stmt.execute(&values[..])?;
                n += written;
                if written == chunk.len() {
                    done.extend(chunk.iter().map(|id| (*id).to_owned()));
                } else {
                    done.extend(already_there(tx, row.seq, t.to, chunk)?);
                }
            }
        }
        delta.moved(DeviceState::InProgress, state, n as u64);
    }
    Ok(done)
}

/// Device ids per statement of [`write_expected`]: bound as a list of
/// parameters (padded with NULL), not a JSON array. With a subquery in
/// its condition, or a `RETURNING` clause, SQLite runs a multi-row
/// `UPDATE` in two passes, first collecting the key of every row it will
/// write; as a plain list it writes each row as it finds it.
const RESULT_CHUNK: usize = 250;

/// [`write_expected`]'s statement (see there for its parameters; the
/// device ids are `?10` on).
static RESULT_WRITE: LazyLock<String> = LazyLock::new(|| {
    format!(
        concat!(
            "UPDATE rollout_devices
                SET state = ?3, reason = ?4, updated_at = ?5, rollback_state = NULL,
                    attempt = CASE WHEN state = 'pending' THEN 1 ELSE attempt END,
                    delivered_at = CASE WHEN state = 'pending' THEN NULL ELSE delivered_at END,
                    phase = CASE WHEN state = 'pending' THEN ?6 ELSE phase END,
                    assigned_at = CASE WHEN state = 'pending' THEN ?7 ELSE assigned_at END,
                    deadline = CASE WHEN state = 'pending' THEN ?8 ELSE deadline END,
                    previous_firmware_id = CASE WHEN state = 'pending' THEN ",
            previous_firmware!("?1", "?2", "rollout_devices.device_id"),
            " ELSE previous_firmware_id END
              WHERE rollout = ?1 AND device_id IN ({})
                AND ((state = 'in_progress' AND rollback_state IS NULL)
                     OR ",
            wave_device!("rollout_devices", "?9"),
            ")"
        ),
        placeholders(10, RESULT_CHUNK)
    )
});

/// `?from, ?from+1, …`: `count` numbered parameters.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameters of a statement that names up to [`RESULT_CHUNK`]
/// devices after its `fixed` ones: the ids, then NULL for the rest of
/// the list (NULL matches no row).
fn with_ids<'a>(mut fixed: Vec<&'a dyn db::ToSql>, ids: &'a [&str]) -> Vec<&'a dyn db::ToSql> {
    const ABSENT: Option<&str> = None;
    let len = fixed.len() + RESULT_CHUNK;
    fixed.extend(ids.iter().map(|id| id as &dyn db::ToSql));
    fixed.resize(len, &ABSENT);
    fixed
}

/// Of `ids` (at most [`RESULT_CHUNK`]), the devices whose row in the
/// rollout keyed `seq` is in the state `to` with no rollback: after a
/// [`write_expected`] statement that did not write every row of its
/// chunk, the ones it wrote, and any that were already there. For the
/// latter the domain decides a repeated report as unchanged (nothing to
/// write, accepted), so they count as done too.
fn already_there(
    tx: &Connection,
    seq: i64,
    to: &str,
    ids: &[&str],
) -> Result<Vec<String>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT device_id FROM rollout_devices
              WHERE rollout = ?1 AND device_id IN ({}) AND state = ?2
                AND rollback_state IS NULL",
            placeholders(3, RESULT_CHUNK)
        )
    });
    let values = with_ids(vec![&seq, &to], ids);
    let rows = tx
        .prepare_cached(&SQL)?
        .query_map(&values[..], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    Ok(rows)
}

/// A rollout's assignment cursor and the waves that cover a set of device
/// ids (see [`in_wave!`]), read once for a batch of results.
struct Waves {
    cursor: String,
    /// By `last_device`, ascending.
    waves: Vec<Wave>,
}

/// One `rollout_waves` row.
struct Wave {
    last_device: String,
    phase: i64,
    assigned_at: i64,
    deadline: i64,
}

impl Waves {
    /// The cursor of the rollout `row` and the waves from the one
    /// of the smallest of `ids` to the one of the largest.
    fn covering<'a>(
        tx: &Connection,
        row: &ProgressRow,
        ids: impl Iterator<Item = &'a &'a str> + Clone,
    ) -> Result<Waves, StoreError> {
        let cursor = row.assign_cursor.clone();
        let (Some(first), Some(last)) = (ids.clone().min(), ids.max()) else {
            return Ok(Waves {
                cursor,
                waves: Vec::new(),
            });
        };
        let mut waves = Vec::new();
        if **first <= *cursor {
            let mut stmt = tx.prepare_cached(
                "SELECT last_device, phase, assigned_at, deadline FROM rollout_waves
                  WHERE rollout = ?1 AND last_device >= ?2 ORDER BY last_device",
            )?;
            let mut rows = stmt.query(params![row.seq, *first])?;
            while let Some(r) = rows.next()? {
                let wave = Wave {
                    last_device: r.get(0)?,
                    phase: r.get(1)?,
                    assigned_at: r.get(2)?,
                    deadline: r.get(3)?,
                };
                let past = *wave.last_device >= **last;
                waves.push(wave);
                if past {
                    break;
                }
            }
        }
        Ok(Waves { cursor, waves })
    }

    /// `ids` by the wave each would belong to (`None`: at none, above the
    /// cursor or past every wave), in a stable order. Compares bytes, as
    /// the databases do for device ids: canonical UUIDs (fleetd makes
    /// them) sort alike under any collation.
    fn split<'a>(&self, ids: Vec<&'a str>) -> Vec<(Option<&Wave>, Vec<&'a str>)> {
        let mut out: BTreeMap<Option<usize>, Vec<&'a str>> = BTreeMap::new();
        for id in ids {
            let wave = (id <= self.cursor.as_str())
                .then(|| self.waves.partition_point(|w| w.last_device.as_str() < id))
                .filter(|i| *i < self.waves.len());
            out.entry(wave).or_default().push(id);
        }
        out.into_iter()
            .map(|(i, ids)| (i.map(|i| &self.waves[i]), ids))
            .collect()
    }
}

fn outcome_of(outcome: &UpdateOutcome) -> Outcome {
    match outcome {
        UpdateOutcome::Succeeded => Outcome::Succeeded,
        UpdateOutcome::Failed { reason } => Outcome::Failed {
            reason: reason.clone(),
        },
        UpdateOutcome::RolledBack => Outcome::RolledBack,
    }
}

/// A rollout's share of a batch of results.
struct Batched {
    row: ProgressRow,
    /// Devices whose report [`write_expected`] wrote.
    done: HashSet<String>,
    /// Rows of the batch's devices, as the batch has left them so far.
    records: HashMap<String, DeviceRecord>,
    /// Transitions not written yet, grouped by everything but the device.
    writes: BTreeMap<Transition, Vec<String>>,
    /// Devices with a transition in `writes`.
    written: HashSet<String>,
    delta: CountsDelta,
    last: DateTime<Utc>,
}

/// One device transition's values (see [`Batched::flush`]).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Transition {
    from: &'static str,
    to: &'static str,
    rollback: Option<&'static str>,
    reason: Option<String>,
    at: i64,
    deadline: i64,
}

impl Batched {
    /// Decides one report; queues its transition or writes its rollback
    /// progress.
    fn apply(&mut self, tx: &Transaction<'_>, r: &ResultRecord) -> Result<(), StoreError> {
        let device_id = r.device_id.as_str();
        let Some(record) = self.records.get(device_id).cloned() else {
            return Err(not_found(ObjectKind::Device, device_id));
        };
        let effect =
            eng::apply_result(&record, &outcome_of(&r.outcome), self.row.status).map_err(|e| {
                conflict(format!(
                    "device {device_id} in rollout {}: {e}",
                    r.rollout_id
                ))
            })?;
        // A second report of a device in the batch is written after the
        // first.
        if !matches!(effect, ResultEffect::Unchanged) && self.written.contains(device_id) {
            self.flush(tx)?;
        }
        self.last = self.last.max(r.at);
        let at = time::to_millis(r.at);
        let mut after = record.clone();
        match effect {
            ResultEffect::Unchanged => return Ok(()),
            ResultEffect::Transition {
                state,
                rollback,
                reason,
            } => {
                let deadline = time::to_millis(r.at + Duration::seconds(timeout_secs(&self.row)));
                self.writes
                    .entry(Transition {
                        from: record.state.as_str(),
                        to: state.as_str(),
                        rollback: rollback.map(RollbackState::as_str),
                        reason,
                        at,
                        deadline,
                    })
                    .or_default()
                    .push(device_id.to_owned());
                self.written.insert(device_id.to_owned());
                self.delta.moved(record.state, state, 1);
                // The statement sets both (`rollback_state` to NULL when none).
                after.state = state;
                after.rollback = rollback;
            }
            ResultEffect::Rollback { rollback, reason } => {
                tx.prepare_cached(
                    "UPDATE rollout_devices
                        SET rollback_state = ?3, reason = COALESCE(?4, reason), updated_at = ?5
                      WHERE rollout = ?1 AND device_id = ?2",
                )?
                .execute(params![
                    self.row.seq,
                    device_id,
                    rollback.as_str(),
                    reason,
                    at
                ])?;
                after.rollback = Some(rollback);
            }
        }
        self.records.insert(device_id.to_owned(), after);
        Ok(())
    }

    /// Writes the queued transitions: one statement per group, guarded by
    /// the state each device leaves.
    fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut stmt = tx.prepare_cached(&format!(
            "UPDATE rollout_devices
                SET state = ?3, rollback_state = ?4, reason = ?5, updated_at = ?6,
                    assigned_at = CASE WHEN ?4 IS NULL THEN assigned_at ELSE ?6 END,
                    deadline = CASE WHEN ?4 IS NULL THEN deadline ELSE ?7 END
              WHERE rollout = ?1 AND state = ?8 AND device_id IN (SELECT value FROM {})",
            db::json_text_elements("?2")
        ))?;
        for (t, ids) in std::mem::take(&mut self.writes) {
            let json = serde_json::to_string(&ids).map_err(StoreError::backend)?;
            let n = stmt.execute(params![
                self.row.seq,
                json,
                t.to,
                t.rollback,
                t.reason,
                t.at,
                t.deadline,
                t.from
            ])?;
            // The rows were read in this transaction: every one moves.
            if n != ids.len() {
                return Err(StoreError::backend(anyhow::anyhow!(
                    "{} of {} device rows of rollout {} moved from {} to {}",
                    n,
                    ids.len(),
                    self.row.seq,
                    t.from,
                    t.to
                )));
            }
        }
        self.written.clear();
        Ok(())
    }
}

/// The rows of `device_ids` in the rollout keyed `seq`, as far as results
/// are concerned (one statement; devices without a row are left out).
fn device_records(
    tx: &Connection,
    row: &ProgressRow,
    device_ids: &[&str],
    at: DateTime<Utc>,
) -> Result<HashMap<String, DeviceRecord>, StoreError> {
    let seq = row.seq;
    let ids = serde_json::to_string(device_ids).map_err(StoreError::backend)?;
    // Wave devices are written as the in-progress rows they stand for,
    // then read like any other.
    tx.prepare_cached(&format!(
        "UPDATE rollout_devices SET state = 'in_progress', reason = NULL, updated_at = ?4,
                {WAVE_SET}
          WHERE {WAVE_ROW} AND device_id IN (SELECT value FROM {})",
        db::json_text_elements("?3")
    ))?
    .execute(params![seq, row.firmware_id, ids, time::to_millis(at)])?;
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT device_id, state, rollback_state, previous_firmware_id IS NOT NULL
           FROM rollout_devices
          WHERE rollout = ?1 AND device_id IN (SELECT value FROM {})",
        db::json_text_elements("?2")
    ))?;
    let mut rows = stmt.query(params![seq, ids])?;
    let mut out = HashMap::with_capacity(device_ids.len());
    while let Some(r) = rows.next()? {
        let record = DeviceRecord {
            state: parse_state(&r.get::<_, String>(1)?)?,
            rollback: parse_rollback(r.get(2)?)?,
            has_previous: r.get(3)?,
        };
        out.insert(r.get(0)?, record);
    }
    Ok(out)
}

/// Whether [`current_assignment`] could return anything for the device:
/// one indexed probe, so check-ins skip the lookup when nothing is in
/// flight (the common case).
pub(super) fn assignment_pending(conn: &Connection, device_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM rollout_devices rd WHERE {ASSIGNMENT_ROWS})"
        ))?
        .query_row([device_id], |r| r.get(0))?)
}

fn current_assignment(
    conn: &mut Connection,
    device_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Assignment>, StoreError> {
    struct Candidate {
        rollout_id: String,
        seq: i64,
        rollback: Option<RollbackState>,
        attempt: u32,
        assigned_at: Option<DateTime<Utc>>,
        deadline: Option<DateTime<Utc>>,
        delivered: bool,
        firmware_id: Option<String>,
        /// The rollout's firmware.
        target: String,
        running: bool,
        /// A wave device (see [`assign`]): its row is written on delivery.
        in_wave: bool,
    }
    let candidates: Vec<Candidate> = conn
        .prepare_cached(&format!(
            concat!(
                "SELECT r.id, rd.rollback_state, rd.attempt, ",
                wave_or_row!("assigned_at"),
                " AS assigned, ",
                wave_or_row!("deadline"),
                ", rd.delivered_at IS NOT NULL, rd.previous_firmware_id, r.firmware_id, r.status,
                        rd.rollout, rd.state = 'pending'
                   FROM rollout_devices rd JOIN rollouts r ON r.seq = rd.rollout
                  WHERE {}
                  ORDER BY assigned, r.id"
            ),
            ASSIGNMENT_ROWS
        ))?
        .query_map([device_id], |r| {
            let rollback = parse_rollback(r.get(1)?)?;
            let previous: Option<String> = r.get(6)?;
            let target: String = r.get(7)?;
            let status: String = r.get(8)?;
            Ok(Candidate {
                rollout_id: r.get(0)?,
                seq: r.get(9)?,
                in_wave: r.get(10)?,
                firmware_id: if rollback.is_some() {
                    previous
                } else {
                    Some(target.clone())
                },
                target,
                rollback,
                attempt: r.get(2)?,
                assigned_at: opt_millis(r.get(3)?)?,
                deadline: opt_millis(r.get(4)?)?,
                delivered: r.get(5)?,
                running: status == Status::Running.as_str(),
            })
        })?
        .collect::<db::Result<_>>()?;

    for c in candidates {
        let first_delivery = match c.rollback {
            Some(rb) => rb == RollbackState::Pending,
            None => !c.delivered,
        };
        // Not fetched yet: only while the rollout runs (a rollback is
        // handed out whatever the status, it is the rollout's last act).
        if c.rollback.is_none() && first_delivery && !c.running {
            continue;
        }
        let Some(firmware_id) = c.firmware_id else {
            continue;
        };
        let firmware = conn
            .prepare_cached(
                "SELECT release_version, url, sha256, size_bytes, signature FROM firmware
                  WHERE id = ?1",
            )?
            .query_row([&firmware_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((firmware_version, url, sha256, size_bytes, signature)) = firmware else {
            tracing::warn!(device_id, firmware_id, "assigned firmware no longer exists");
            continue;
        };
        if first_delivery {
            let now_ms = time::to_millis(now);
            immediate(conn, |tx| {
                if c.rollback.is_some() {
                    tx.prepare_cached(
                        "UPDATE rollout_devices SET rollback_state = 'delivered', updated_at = ?3
                          WHERE rollout = ?1 AND device_id = ?2 AND rollback_state = 'pending'",
                    )?
                    .execute(params![c.seq, device_id, now_ms])?;
                } else {
                    if c.in_wave {
                        tx.prepare_cached(&format!(
                            "UPDATE rollout_devices
                                SET state = 'in_progress', reason = NULL, updated_at = ?4,
                                    {WAVE_SET}
                              WHERE {WAVE_ROW} AND device_id = ?3"
                        ))?
                        .execute(params![c.seq, c.target, device_id, now_ms])?;
                    }
                    tx.prepare_cached(
                        "UPDATE rollout_devices SET delivered_at = ?3, updated_at = ?3
                          WHERE rollout = ?1 AND device_id = ?2 AND state = 'in_progress'
                            AND delivered_at IS NULL",
                    )?
                    .execute(params![c.seq, device_id, now_ms])?;
                }
                Ok(())
            })?;
        }
        return Ok(Some(Assignment {
            rollout_id: c.rollout_id,
            firmware_id,
            firmware_version,
            url,
            sha256,
            size_bytes,
            signature,
            attempt: c.attempt.max(1),
            assigned_at: c.assigned_at.unwrap_or(now),
            deadline: c.deadline.unwrap_or(now),
        }));
    }
    Ok(None)
}

/// A device row and its rollout's id (`rd` and `r` in conditions), a wave
/// device as the in-progress row it stands for.
const DEVICE_SELECT: &str = concat!(
    "SELECT r.id, rd.device_id, ",
    effective_state!(),
    ", CASE WHEN ",
    rd_in_wave!(),
    " THEN 1 ELSE rd.attempt END, ",
    wave_or_row!("phase"),
    ", ",
    wave_or_row!("assigned_at"),
    ", ",
    wave_or_row!("deadline"),
    ", rd.delivered_at, rd.previous_firmware_id, rd.rollback_state, rd.reason, ",
    wave_or_row!("assigned_at", "updated_at"),
    " FROM rollout_devices rd JOIN rollouts r ON r.seq = rd.rollout"
);

fn device_from_row(r: &Row<'_>) -> db::Result<RolloutDevice> {
    Ok(RolloutDevice {
        rollout_id: r.get(0)?,
        device_id: r.get(1)?,
        state: parse_state(&r.get::<_, String>(2)?)?,
        attempt: r.get(3)?,
        phase: r.get(4)?,
        assigned_at: opt_millis(r.get(5)?)?,
        deadline: opt_millis(r.get(6)?)?,
        delivered_at: opt_millis(r.get(7)?)?,
        previous_firmware_id: r.get(8)?,
        rollback: parse_rollback(r.get(9)?)?,
        reason: r.get(10)?,
        updated_at: time::from_millis(r.get(11)?)?,
    })
}
