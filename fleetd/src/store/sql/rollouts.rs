//! Rollout definitions and their (engine-maintained) progress columns.

use super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::fleet::{check_version, group_exists, json_col, not_found, record, time_col, to_json};
use super::{membership, time};
use crate::domain::indexed;
use crate::domain::rollout::{status_after, RolloutState};
use crate::domain::FieldError;
use crate::store::{
    Actor, AuditAction, ObjectKind, Rollout, RolloutCounts, RolloutSpec, StoreError,
};

const KIND: ObjectKind = ObjectKind::Rollout;

const SELECT: &str = "SELECT id, name, firmware_id, target_group_ids, phases, rate,
                             failure_threshold, device_timeout, max_retries, start_at,
                             maintenance_window, continuous, state, status, current_phase,
                             count_targeted, count_pending, count_in_progress, count_succeeded,
                             count_failed, count_rolled_back, created_at, updated_at, version
                        FROM rollouts";

pub(super) fn get(conn: &Connection, id: &str) -> Result<Rollout, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Rollout>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, i64::from(limit)], from_row)?;
    Ok(rows.collect::<db::Result<_>>()?)
}

pub(super) fn create(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    spec: &RolloutSpec,
) -> Result<Rollout, StoreError> {
    let firmware_id = spec.firmware_id.clone().unwrap_or_default();
    let firmware_exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM firmware WHERE id = ?1)")?
        .query_row([&firmware_id], |r| r.get(0))?;
    if !firmware_exists {
        return Err(
            FieldError::new("firmware_id", format!("firmware {firmware_id:?} not found")).into(),
        );
    }
    check_targets(conn, &spec.target_group_ids)?;
    let state = spec.state.unwrap_or_default();
    let status = status_after("pending", state);
    let targeted = membership::targeted_count(conn, &spec.target_group_ids)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO rollouts
             (id, name, firmware_id, target_group_ids, phases, rate, failure_threshold,
              device_timeout, max_retries, start_at, maintenance_window, continuous, state,
              status, current_phase, count_targeted, created_at, updated_at, version, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, ?15, ?16, ?16, 1,
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM rollouts))",
    )?
    .execute(params![
        id,
        spec.name,
        firmware_id,
        to_json(&spec.target_group_ids)?,
        to_json(&spec.phases)?,
        spec.rate.as_ref().map(to_json).transpose()?,
        to_json(&spec.failure_threshold)?,
        spec.device_timeout,
        spec.max_retries,
        spec.start_at,
        spec.maintenance_window.as_ref().map(to_json).transpose()?,
        spec.continuous,
        state.as_str(),
        status,
        targeted,
        now
    ])?;
    set_targets(conn, &id, &spec.target_group_ids)?;
    record(
        conn,
        actor,
        &now,
        AuditAction::Create,
        KIND,
        &id,
        (None, Some(1)),
    )?;
    get(conn, &id)
}

pub(super) fn update(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: &str,
    expected_version: i64,
    spec: &RolloutSpec,
) -> Result<Rollout, StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, Some(expected_version))?;
    if let Some(firmware_id) = spec.firmware_id.as_deref() {
        if firmware_id != current.firmware_id {
            return Err(StoreError::Conflict {
                field: Some("firmware_id"),
                message: format!(
                    "firmware_id: a rollout's firmware cannot change (it is {:?}); create a new \
                     rollout for firmware {firmware_id:?}",
                    current.firmware_id
                ),
            });
        }
    }
    check_targets(conn, &spec.target_group_ids)?;
    let state = match spec.state {
        None => current.state,
        Some(to) => current
            .state
            .transition(to)
            .map_err(|e| StoreError::Conflict {
                field: Some("state"),
                message: e.to_string(),
            })?,
    };
    let status = status_after(&current.status, state);
    // Once the engine has started the rollout, `count_targeted` counts its
    // materialised targets (maintained with the other counters); before,
    // it is an estimate from the target groups.
    let started: bool = conn
        .prepare_cached("SELECT engine_started_at IS NOT NULL FROM rollouts WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let targeted = if spec.target_group_ids != current.target_group_ids && !started {
        membership::targeted_count(conn, &spec.target_group_ids)?
    } else {
        current.counts.targeted
    };
    let now = time::to_text(now);
    let next = current.version + 1;
    conn.prepare_cached(
        "UPDATE rollouts
            SET name = ?1, target_group_ids = ?2, phases = ?3, rate = ?4, failure_threshold = ?5,
                device_timeout = ?6, max_retries = ?7, start_at = ?8, maintenance_window = ?9,
                continuous = ?10, state = ?11, status = ?12, count_targeted = ?13,
                updated_at = ?14, version = ?15
          WHERE id = ?16 AND version = ?17",
    )?
    .execute(params![
        spec.name,
        to_json(&spec.target_group_ids)?,
        to_json(&spec.phases)?,
        spec.rate.as_ref().map(to_json).transpose()?,
        to_json(&spec.failure_threshold)?,
        spec.device_timeout,
        spec.max_retries,
        spec.start_at,
        spec.maintenance_window.as_ref().map(to_json).transpose()?,
        spec.continuous,
        state.as_str(),
        status,
        targeted,
        now,
        next,
        id,
        current.version
    ])?;
    conn.prepare_cached("DELETE FROM rollout_targets WHERE rollout_id = ?1")?
        .execute([id])?;
    set_targets(conn, id, &spec.target_group_ids)?;
    record(
        conn,
        actor,
        &now,
        AuditAction::Update,
        KIND,
        id,
        (Some(current.version), Some(next)),
    )?;
    get(conn, id)
}

pub(super) fn delete(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: &str,
    expected_version: Option<i64>,
) -> Result<(), StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, expected_version)?;
    conn.prepare_cached("DELETE FROM rollouts WHERE id = ?1")?
        .execute([id])?;
    record(
        conn,
        actor,
        &time::to_text(now),
        AuditAction::Delete,
        KIND,
        id,
        (Some(current.version), None),
    )
}

fn check_targets(conn: &Connection, ids: &[String]) -> Result<(), StoreError> {
    for (i, gid) in ids.iter().enumerate() {
        if !group_exists(conn, gid)? {
            return Err(FieldError::new(
                indexed("target_group_ids", i),
                format!("device group {gid:?} not found"),
            )
            .into());
        }
    }
    Ok(())
}

fn set_targets(conn: &Connection, rollout_id: &str, ids: &[String]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO rollout_targets (rollout_id, group_id) VALUES (?1, ?2)",
    )?;
    for gid in ids {
        stmt.execute(params![rollout_id, gid])?;
    }
    Ok(())
}

fn optional_json<T: serde::de::DeserializeOwned>(r: &Row<'_>, idx: usize) -> db::Result<Option<T>> {
    match r.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(_) => json_col(r, idx).map(Some),
    }
}

fn from_row(r: &Row<'_>) -> db::Result<Rollout> {
    let state: String = r.get(12)?;
    let state = RolloutState::parse("state", &state)
        .map_err(|e| db::Error::FromSqlConversionFailure(12, db::types::Type::Text, e.into()))?;
    Ok(Rollout {
        id: r.get(0)?,
        name: r.get(1)?,
        firmware_id: r.get(2)?,
        target_group_ids: json_col(r, 3)?,
        phases: json_col(r, 4)?,
        rate: optional_json(r, 5)?,
        failure_threshold: json_col(r, 6)?,
        device_timeout: r.get(7)?,
        max_retries: r.get(8)?,
        start_at: r.get(9)?,
        maintenance_window: optional_json(r, 10)?,
        continuous: r.get(11)?,
        state,
        status: r.get(13)?,
        current_phase: r.get(14)?,
        counts: RolloutCounts {
            targeted: r.get(15)?,
            pending: r.get(16)?,
            in_progress: r.get(17)?,
            succeeded: r.get(18)?,
            failed: r.get(19)?,
            rolled_back: r.get(20)?,
        },
        created_at: time_col(r, 21)?,
        updated_at: time_col(r, 22)?,
        version: r.get(23)?,
    })
}
