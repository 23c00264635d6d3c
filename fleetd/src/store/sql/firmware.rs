//! Immutable firmware releases.

use super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::fleet::{
    is_unique_violation, json_col, list_names, not_found, record, still_referenced, time_col,
    to_json,
};
use super::time;
use crate::store::{Actor, AuditAction, Firmware, FirmwareSpec, ObjectKind, StoreError};

const KIND: ObjectKind = ObjectKind::Firmware;

const SELECT: &str = "SELECT id, product, release_version, hardware, url, sha256, size_bytes,
                             signature, signature_verified, created_at
                        FROM firmware";

pub(super) fn get(conn: &Connection, id: &str) -> Result<Firmware, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Firmware>, StoreError> {
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
    spec: &FirmwareSpec,
) -> Result<Firmware, StoreError> {
    let taken: Option<String> = conn
        .prepare_cached("SELECT id FROM firmware WHERE product = ?1 AND release_version = ?2")?
        .query_row(params![spec.product, spec.version], |r| r.get(0))
        .optional()?;
    if let Some(other) = taken {
        return Err(duplicate(spec, Some(&other)));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO firmware (id, product, release_version, hardware, url, sha256, size_bytes,
                               signature, signature_verified, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        spec.product,
        spec.version,
        to_json(&spec.hardware)?,
        spec.url,
        spec.sha256,
        spec.size_bytes,
        spec.signature,
        spec.signature_verified,
        now
    ])
    .map_err(|e| {
        if is_unique_violation(&e) {
            duplicate(spec, None)
        } else {
            StoreError::backend(e)
        }
    })?;
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

pub(super) fn delete(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: &str,
) -> Result<(), StoreError> {
    let current = get(conn, id)?;
    let users: Vec<String> = conn
        .prepare_cached("SELECT name FROM rollouts WHERE firmware_id = ?1 ORDER BY id LIMIT 5")?
        .query_map([id], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    if !users.is_empty() {
        let total: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM rollouts WHERE firmware_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "firmware {} {} ({id}) is used by {total} rollout{} ({}); delete the rollouts first",
                current.product,
                current.version,
                if total == 1 { "" } else { "s" },
                list_names(&users, total)
            ),
        });
    }
    let label = format!("{} {}", current.product, current.version);
    conn.prepare_cached("DELETE FROM firmware WHERE id = ?1")?
        .execute([id])
        .map_err(|e| still_referenced(e, KIND, &label, id))?;
    record(
        conn,
        actor,
        &time::to_text(now),
        AuditAction::Delete,
        KIND,
        id,
        (Some(1), None),
    )
}

fn duplicate(spec: &FirmwareSpec, other: Option<&str>) -> StoreError {
    let other = other.map(|o| format!(" ({o})")).unwrap_or_default();
    StoreError::Conflict {
        field: Some("version"),
        message: format!(
            "firmware {} version {} already exists{other}; releases are immutable, publish a new \
             version instead",
            spec.product, spec.version
        ),
    }
}

fn from_row(r: &Row<'_>) -> db::Result<Firmware> {
    Ok(Firmware {
        id: r.get(0)?,
        product: r.get(1)?,
        version: r.get(2)?,
        hardware: json_col(r, 3)?,
        url: r.get(4)?,
        sha256: r.get(5)?,
        size_bytes: r.get(6)?,
        signature: r.get(7)?,
        signature_verified: r.get(8)?,
        created_at: time_col(r, 9)?,
    })
}
