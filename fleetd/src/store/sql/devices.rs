//! Device rows and their static group memberships.

use super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::fleet::{
    check_version, group_exists, is_unique_violation, json_col, not_found, record,
    still_referenced, time_col, to_json,
};
use super::time;
use crate::domain::indexed;
use crate::domain::query::Query;
use crate::domain::FieldError;
use crate::store::{Actor, AuditAction, Device, DeviceSpec, ObjectKind, StoreError};

const KIND: ObjectKind = ObjectKind::Device;

/// The device columns [`from_row`] reads, with the device's static groups
/// as a JSON array.
fn select() -> String {
    format!(
        "SELECT id, name, hardware, attributes, firmware_version, last_seen, health,
                created_at, updated_at, version,
                (SELECT {} FROM device_group_members WHERE device_id = devices.id)
           FROM devices",
        db::json_array_agg("group_id ORDER BY group_id")
    )
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Device, StoreError> {
    conn.prepare_cached(&format!("{} WHERE id = ?1", select()))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

/// A page of devices; with `filter`, scans in id order until `limit`
/// matches are found.
pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
    filter: Option<&Query>,
) -> Result<Vec<Device>, StoreError> {
    let Some(query) = filter else {
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
            select()
        ))?;
        let rows = stmt.query_map(params![after, i64::from(limit)], from_row)?;
        return Ok(rows.collect::<db::Result<_>>()?);
    };
    let mut stmt = conn.prepare_cached(&format!(
        "{} WHERE ?1 IS NULL OR id > ?1 ORDER BY id",
        select()
    ))?;
    let mut rows = stmt.query(params![after])?;
    let mut out = Vec::new();
    while out.len() < limit as usize {
        let Some(r) = rows.next()? else { break };
        let device = from_row(r)?;
        if query.matches(&device.facts()) {
            out.push(device);
        }
    }
    Ok(out)
}

pub(super) fn create(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    spec: &DeviceSpec,
) -> Result<Device, StoreError> {
    check_name_free(conn, &spec.name, None)?;
    check_groups(conn, &spec.group_ids)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO devices (id, name, hardware, attributes, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)",
    )?
    .execute(params![
        id,
        spec.name,
        spec.hardware,
        to_json(&spec.attributes)?,
        now
    ])
    .map_err(|e| name_conflict_or(e, &spec.name))?;
    set_groups(conn, &id, &spec.group_ids)?;
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
    spec: &DeviceSpec,
) -> Result<Device, StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, Some(expected_version))?;
    check_name_free(conn, &spec.name, Some(id))?;
    check_groups(conn, &spec.group_ids)?;
    let now = time::to_text(now);
    let next = current.version + 1;
    conn.prepare_cached(
        "UPDATE devices SET name = ?1, hardware = ?2, attributes = ?3, updated_at = ?4,
                            version = ?5
          WHERE id = ?6 AND version = ?7",
    )?
    .execute(params![
        spec.name,
        spec.hardware,
        to_json(&spec.attributes)?,
        now,
        next,
        id,
        current.version
    ])
    .map_err(|e| name_conflict_or(e, &spec.name))?;
    conn.prepare_cached("DELETE FROM device_group_members WHERE device_id = ?1")?
        .execute([id])?;
    set_groups(conn, id, &spec.group_ids)?;
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
    super::compliance::forget(conn, id)?;
    conn.prepare_cached("DELETE FROM devices WHERE id = ?1")?
        .execute([id])
        .map_err(|e| still_referenced(e, KIND, &current.name, id))?;
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

fn check_groups(conn: &Connection, group_ids: &[String]) -> Result<(), StoreError> {
    for (i, gid) in group_ids.iter().enumerate() {
        if !group_exists(conn, gid)? {
            return Err(FieldError::new(
                indexed("group_ids", i),
                format!("device group {gid:?} not found"),
            )
            .into());
        }
    }
    Ok(())
}

fn set_groups(conn: &Connection, device_id: &str, group_ids: &[String]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO device_group_members (device_id, group_id) VALUES (?1, ?2)",
    )?;
    for gid in group_ids {
        stmt.execute(params![device_id, gid])?;
    }
    Ok(())
}

fn check_name_free(conn: &Connection, name: &str, except: Option<&str>) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .prepare_cached("SELECT id FROM devices WHERE name = ?1 AND (?2 IS NULL OR id <> ?2)")?
        .query_row(params![name, except], |r| r.get(0))
        .optional()?;
    match taken {
        None => Ok(()),
        Some(other) => Err(name_taken(name, Some(&other))),
    }
}

fn name_taken(name: &str, other: Option<&str>) -> StoreError {
    let other = other.map(|o| format!(" ({o})")).unwrap_or_default();
    StoreError::Conflict {
        field: Some("name"),
        message: format!("name {name:?} is already used by another device{other}"),
    }
}

fn name_conflict_or(err: db::Error, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        name_taken(name, None)
    } else {
        StoreError::backend(err)
    }
}

fn from_row(r: &Row<'_>) -> db::Result<Device> {
    let last_seen: Option<String> = r.get(5)?;
    Ok(Device {
        id: r.get(0)?,
        name: r.get(1)?,
        hardware: r.get(2)?,
        attributes: json_col(r, 3)?,
        firmware_version: r.get(4)?,
        last_seen: last_seen.as_deref().map(time::parse).transpose()?,
        health: r.get(6)?,
        created_at: time_col(r, 7)?,
        updated_at: time_col(r, 8)?,
        version: r.get(9)?,
        group_ids: json_col(r, 10)?,
    })
}
