//! `enrollments` queries.

use super::super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::super::audit::{self, Change};
use super::super::time;
use super::{
    check_ca_ref, check_version, exists, from_json, is_unique_violation, json_text, not_found,
};
use crate::domain::FieldError;
use crate::store::{
    Actor, AuditAction, EnrollmentFields, EnrollmentRecord, ObjectKind, StoreError,
};

const KIND: ObjectKind = ObjectKind::Enrollment;

const SELECT: &str = "SELECT id, name, ca_id, group_id, name_template, attributes,
        allowed_hardware, max_devices, enabled, enrolled_count, created_at, updated_at, version,
        common_name_pattern
   FROM enrollments";

pub(super) fn get(conn: &Connection, id: &str) -> Result<EnrollmentRecord, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<EnrollmentRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, i64::from(limit)], from_row)?;
    Ok(rows.collect::<db::Result<Vec<_>>>()?)
}

pub(super) fn create(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    fields: &EnrollmentFields,
) -> Result<EnrollmentRecord, StoreError> {
    check_refs(conn, fields, None)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO enrollments
             (id, name, ca_id, group_id, name_template, attributes, allowed_hardware,
              max_devices, enabled, enrolled_count, created_at, updated_at, version,
              common_name_pattern)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?10, 1, ?11)",
    )?
    .execute(params![
        id,
        fields.name,
        fields.ca_id,
        fields.group_id,
        fields.name_template,
        json_text(&fields.attributes)?,
        json_text(&fields.allowed_hardware)?,
        max_devices(fields)?,
        fields.enabled,
        now,
        fields.common_name_pattern,
    ])
    .map_err(|e| name_conflict_or(e, &fields.name))?;
    audit::record(
        conn,
        actor,
        &now,
        Change {
            action: AuditAction::Create,
            kind: KIND,
            id: &id,
            before_version: None,
            after_version: Some(1),
        },
    )?;
    get(conn, &id)
}

pub(super) fn update(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: &str,
    expected_version: i64,
    fields: &EnrollmentFields,
) -> Result<EnrollmentRecord, StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, Some(expected_version))?;
    check_refs(conn, fields, Some(id))?;
    let now = time::to_text(now);
    let next = current.version + 1;
    conn.prepare_cached(
        "UPDATE enrollments
            SET name = ?1, ca_id = ?2, group_id = ?3, name_template = ?4, attributes = ?5,
                allowed_hardware = ?6, max_devices = ?7, enabled = ?8, updated_at = ?9,
                version = ?10, common_name_pattern = ?13
          WHERE id = ?11 AND version = ?12",
    )?
    .execute(params![
        fields.name,
        fields.ca_id,
        fields.group_id,
        fields.name_template,
        json_text(&fields.attributes)?,
        json_text(&fields.allowed_hardware)?,
        max_devices(fields)?,
        fields.enabled,
        now,
        next,
        id,
        current.version,
        fields.common_name_pattern,
    ])
    .map_err(|e| name_conflict_or(e, &fields.name))?;
    audit::record(
        conn,
        actor,
        &now,
        Change {
            action: AuditAction::Update,
            kind: KIND,
            id,
            before_version: Some(current.version),
            after_version: Some(next),
        },
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
    conn.prepare_cached("DELETE FROM enrollments WHERE id = ?1")?
        .execute([id])?;
    audit::record(
        conn,
        actor,
        &time::to_text(now),
        Change {
            action: AuditAction::Delete,
            kind: KIND,
            id,
            before_version: Some(current.version),
            after_version: None,
        },
    )?;
    Ok(())
}

/// Name free, CA and group exist; in the order the request lists them.
fn check_refs(
    conn: &Connection,
    fields: &EnrollmentFields,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .prepare_cached("SELECT id FROM enrollments WHERE name = ?1 AND (?2 IS NULL OR id <> ?2)")?
        .query_row(params![fields.name, except_id], |r| r.get(0))
        .optional()?;
    if let Some(other) = taken {
        return Err(name_taken(&fields.name, Some(&other)));
    }
    check_ca_ref(conn, "ca_id", &fields.ca_id)?;
    if !exists(conn, "device_groups", &fields.group_id)? {
        return Err(FieldError::new(
            "group_id",
            format!("device group {:?} not found", fields.group_id),
        )
        .into());
    }
    Ok(())
}

fn max_devices(fields: &EnrollmentFields) -> Result<Option<i64>, StoreError> {
    fields
        .max_devices
        .map(|n| {
            i64::try_from(n).map_err(|_| {
                StoreError::Invalid(FieldError::new(
                    "max_devices",
                    format!("must be at most {}", i64::MAX),
                ))
            })
        })
        .transpose()
}

fn name_taken(name: &str, other: Option<&str>) -> StoreError {
    let other = other.map(|o| format!(" ({o})")).unwrap_or_default();
    StoreError::Conflict {
        field: Some("name"),
        message: format!("name: {name:?} is already used by another enrollment{other}"),
    }
}

fn name_conflict_or(err: db::Error, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        name_taken(name, None)
    } else {
        StoreError::backend(err)
    }
}

fn from_row(r: &Row<'_>) -> db::Result<EnrollmentRecord> {
    let max: Option<i64> = r.get(7)?;
    let count: i64 = r.get(9)?;
    Ok(EnrollmentRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        ca_id: r.get(2)?,
        group_id: r.get(3)?,
        name_template: r.get(4)?,
        attributes: from_json(5, &r.get::<_, String>(5)?)?,
        allowed_hardware: from_json(6, &r.get::<_, String>(6)?)?,
        max_devices: max.map(|n| n.max(0) as u64),
        enabled: r.get(8)?,
        common_name_pattern: r.get(13)?,
        enrolled_count: count.max(0) as u64,
        created_at: time::parse(&r.get::<_, String>(10)?)?,
        updated_at: time::parse(&r.get::<_, String>(11)?)?,
        version: r.get(12)?,
    })
}
