//! Policies, their kept versions and their attachments.

use super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::fleet::{
    check_version, group_exists, is_unique_violation, json_col, list_names, not_found, record,
    time_col, to_json,
};
use super::time;
use crate::domain::policy::{prune_versions, DEFAULT_KEEP_VERSIONS};
use crate::domain::FieldError;
use crate::store::{
    Actor, AttachmentTarget, AuditAction, ObjectKind, Policy, PolicyAttachment,
    PolicyAttachmentSpec, PolicySpec, PolicyVersion, StoreError,
};

const KIND: ObjectKind = ObjectKind::Policy;
const ATTACHMENT: ObjectKind = ObjectKind::PolicyAttachment;

const SELECT: &str = "SELECT id, name, description, statements, policy_version, created_at,
                             updated_at, version
                        FROM policies";

pub(super) fn get(conn: &Connection, id: &str) -> Result<Policy, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Policy>, StoreError> {
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
    spec: &PolicySpec,
) -> Result<Policy, StoreError> {
    check_name_free(conn, &spec.name, None)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    let statements = to_json(&spec.statements)?;
    conn.prepare_cached(
        "INSERT INTO policies
             (id, name, description, statements, policy_version, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, 1)",
    )?
    .execute(params![id, spec.name, spec.description, statements, now])
    .map_err(|e| name_conflict_or(e, &spec.name))?;
    add_version(conn, &id, 1, &statements, &now)?;
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
    spec: &PolicySpec,
) -> Result<Policy, StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, Some(expected_version))?;
    check_name_free(conn, &spec.name, Some(id))?;
    let now = time::to_text(now);
    let next = current.version + 1;
    let changed = current.statements != spec.statements;
    let policy_version = current.policy_version + i64::from(changed);
    let statements = to_json(&spec.statements)?;
    conn.prepare_cached(
        "UPDATE policies SET name = ?1, description = ?2, statements = ?3, policy_version = ?4,
                             updated_at = ?5, version = ?6
          WHERE id = ?7 AND version = ?8",
    )?
    .execute(params![
        spec.name,
        spec.description,
        statements,
        policy_version,
        now,
        next,
        id,
        current.version
    ])
    .map_err(|e| name_conflict_or(e, &spec.name))?;
    if changed {
        add_version(conn, id, policy_version, &statements, &now)?;
    }
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
    let attached: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM policy_attachments WHERE policy_id = ?1 ORDER BY id LIMIT 5",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    if !attached.is_empty() {
        let total: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM policy_attachments WHERE policy_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "policy {:?} ({id}) is still attached ({total} attachment{}: {}); delete its \
                 attachments first",
                current.name,
                if total == 1 { "" } else { "s" },
                list_names(&attached, total)
            ),
        });
    }
    conn.prepare_cached("DELETE FROM policies WHERE id = ?1")?
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

/// Kept versions, newest first.
pub(super) fn versions(conn: &Connection, id: &str) -> Result<Vec<PolicyVersion>, StoreError> {
    get(conn, id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT policy_id, policy_version, statements, created_at FROM policy_versions
          WHERE policy_id = ?1 ORDER BY policy_version DESC",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(PolicyVersion {
            policy_id: r.get(0)?,
            policy_version: r.get(1)?,
            statements: json_col(r, 2)?,
            created_at: time_col(r, 3)?,
        })
    })?;
    Ok(rows.collect::<db::Result<_>>()?)
}

/// Records a new version and prunes the oldest beyond the kept number.
fn add_version(
    conn: &Connection,
    id: &str,
    policy_version: i64,
    statements: &str,
    now: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO policy_versions (policy_id, policy_version, statements, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, policy_version, statements, now])?;
    let kept: Vec<i64> = conn
        .prepare_cached("SELECT policy_version FROM policy_versions WHERE policy_id = ?1")?
        .query_map([id], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    let kept: Vec<u64> = kept
        .into_iter()
        .filter_map(|v| u64::try_from(v).ok())
        .collect();
    let mut delete = conn.prepare_cached(
        "DELETE FROM policy_versions WHERE policy_id = ?1 AND policy_version = ?2",
    )?;
    for v in prune_versions(&kept, DEFAULT_KEEP_VERSIONS) {
        delete.execute(params![id, v as i64])?;
    }
    Ok(())
}

fn check_name_free(conn: &Connection, name: &str, except: Option<&str>) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .prepare_cached("SELECT id FROM policies WHERE name = ?1 AND (?2 IS NULL OR id <> ?2)")?
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
        message: format!("name {name:?} is already used by another policy{other}"),
    }
}

fn name_conflict_or(err: db::Error, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        name_taken(name, None)
    } else {
        StoreError::backend(err)
    }
}

fn from_row(r: &Row<'_>) -> db::Result<Policy> {
    Ok(Policy {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        statements: json_col(r, 3)?,
        policy_version: r.get(4)?,
        created_at: time_col(r, 5)?,
        updated_at: time_col(r, 6)?,
        version: r.get(7)?,
    })
}

// ------------------------------------------------------------------ attachments

const SELECT_ATTACHMENT: &str =
    "SELECT id, policy_id, group_id, certificate_id, created_at, version FROM policy_attachments";

pub(super) fn get_attachment(conn: &Connection, id: &str) -> Result<PolicyAttachment, StoreError> {
    conn.prepare_cached(&format!("{SELECT_ATTACHMENT} WHERE id = ?1"))?
        .query_row([id], attachment_from_row)
        .optional()?
        .ok_or_else(|| not_found(ATTACHMENT, id))
}

pub(super) fn list_attachments(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<PolicyAttachment>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_ATTACHMENT} WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, i64::from(limit)], attachment_from_row)?;
    Ok(rows.collect::<db::Result<_>>()?)
}

pub(super) fn create_attachment(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    spec: &PolicyAttachmentSpec,
) -> Result<PolicyAttachment, StoreError> {
    let policy = match get(conn, &spec.policy_id) {
        Ok(p) => p,
        Err(StoreError::NotFound { .. }) => {
            return Err(FieldError::new(
                "policy_id",
                format!("policy {:?} not found", spec.policy_id),
            )
            .into())
        }
        Err(e) => return Err(e),
    };
    let (group_id, certificate_id, field, what) = match &spec.target {
        AttachmentTarget::Group(g) => {
            if !group_exists(conn, g)? {
                return Err(
                    FieldError::new("group_id", format!("device group {g:?} not found")).into(),
                );
            }
            (
                Some(g.as_str()),
                None,
                "group_id",
                format!("device group {g:?}"),
            )
        }
        AttachmentTarget::Certificate(c) => {
            if !certificate_exists(conn, c)? {
                return Err(FieldError::new(
                    "certificate_id",
                    format!("certificate {c:?} not found"),
                )
                .into());
            }
            (
                None,
                Some(c.as_str()),
                "certificate_id",
                format!("certificate {c:?}"),
            )
        }
    };
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM policy_attachments
              WHERE policy_id = ?1 AND group_id IS NOT DISTINCT FROM ?2
                AND certificate_id IS NOT DISTINCT FROM ?3",
        )?
        .query_row(params![spec.policy_id, group_id, certificate_id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(existing) = existing {
        return Err(StoreError::Conflict {
            field: Some(field),
            message: format!(
                "policy {:?} is already attached to {what} (attachment {existing})",
                policy.name
            ),
        });
    }
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO policy_attachments
             (id, policy_id, group_id, certificate_id, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)",
    )?
    .execute(params![id, spec.policy_id, group_id, certificate_id, now])?;
    record(
        conn,
        actor,
        &now,
        AuditAction::Create,
        ATTACHMENT,
        &id,
        (None, Some(1)),
    )?;
    get_attachment(conn, &id)
}

pub(super) fn delete_attachment(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: &str,
    expected_version: Option<i64>,
) -> Result<(), StoreError> {
    let current = get_attachment(conn, id)?;
    check_version(ATTACHMENT, id, current.version, expected_version)?;
    conn.prepare_cached("DELETE FROM policy_attachments WHERE id = ?1")?
        .execute([id])?;
    record(
        conn,
        actor,
        &time::to_text(now),
        AuditAction::Delete,
        ATTACHMENT,
        id,
        (Some(current.version), None),
    )
}

fn certificate_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM certificates WHERE id = ?1)")?
        .query_row([id], |r| r.get::<_, bool>(0))?)
}

fn attachment_from_row(r: &Row<'_>) -> db::Result<PolicyAttachment> {
    let group_id: Option<String> = r.get(2)?;
    let certificate_id: Option<String> = r.get(3)?;
    let target = match (group_id, certificate_id) {
        (Some(g), _) => AttachmentTarget::Group(g),
        (None, Some(c)) => AttachmentTarget::Certificate(c),
        (None, None) => {
            return Err(db::Error::FromSqlConversionFailure(
                2,
                db::types::Type::Null,
                "policy attachment without a target".into(),
            ))
        }
    };
    Ok(PolicyAttachment {
        id: r.get(0)?,
        policy_id: r.get(1)?,
        target,
        created_at: time_col(r, 4)?,
        version: r.get(5)?,
    })
}
