//! Device group queries. Every function takes the connection (or the open
//! write transaction) it runs on; [`super::SqliteStore`] supplies it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use super::audit::{self, Change};
use super::time;
use crate::domain::group::{self, ParentLookup};
use crate::domain::FieldError;
use crate::store::{Actor, AuditAction, DeviceGroup, DeviceGroupSpec, ObjectKind, StoreError};

const KIND: ObjectKind = ObjectKind::DeviceGroup;

const SELECT: &str =
    "SELECT id, name, description, parent_id, tags, created_at, updated_at, version
                        FROM device_groups";

/// Guard against walking forever should the table ever contain a cycle
/// (writes refuse them, but a hand-edited database might not).
const MAX_DEPTH: i64 = 10_000;

pub(super) fn get(conn: &Connection, id: &str) -> Result<DeviceGroup, StoreError> {
    find(conn, id)?.ok_or_else(|| not_found(id))
}

pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<DeviceGroup>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![after, i64::from(limit)], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|g| with_path(conn, g)).collect()
}

pub(super) fn create(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    spec: &DeviceGroupSpec,
) -> Result<DeviceGroup, StoreError> {
    if let Some(parent_id) = &spec.parent_id {
        check_parent(conn, parent_id, None)?;
    }
    check_name_free(conn, spec.parent_id.as_deref(), &spec.name, None)?;

    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO device_groups
             (id, name, description, parent_id, tags, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
    )?
    .execute(params![
        id,
        spec.name,
        spec.description,
        spec.parent_id,
        tags_json(&spec.tags)?,
        now
    ])
    .map_err(|e| name_conflict_or(e, conn, spec))?;
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
    spec: &DeviceGroupSpec,
) -> Result<DeviceGroup, StoreError> {
    let current = get(conn, id)?;
    check_version(&current, expected_version)?;
    if let Some(parent_id) = &spec.parent_id {
        check_parent(conn, parent_id, Some(&current))?;
    }
    check_name_free(conn, spec.parent_id.as_deref(), &spec.name, Some(id))?;

    let now = time::to_text(now);
    let next = current.version + 1;
    conn.prepare_cached(
        "UPDATE device_groups
            SET name = ?1, description = ?2, parent_id = ?3, tags = ?4,
                updated_at = ?5, version = ?6
          WHERE id = ?7 AND version = ?8",
    )?
    .execute(params![
        spec.name,
        spec.description,
        spec.parent_id,
        tags_json(&spec.tags)?,
        now,
        next,
        id,
        current.version
    ])
    .map_err(|e| name_conflict_or(e, conn, spec))?;
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
    if let Some(expected) = expected_version {
        check_version(&current, expected)?;
    }
    let children: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM device_groups WHERE parent_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    if children > 0 {
        let noun = if children == 1 {
            "child group"
        } else {
            "child groups"
        };
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "device group {:?} ({id}) still has {children} {noun}; delete or move them first",
                current.path
            ),
        });
    }
    conn.prepare_cached("DELETE FROM device_groups WHERE id = ?1")?
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

fn find(conn: &Connection, id: &str) -> Result<Option<DeviceGroup>, StoreError> {
    let row = conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?;
    row.map(|g| with_path(conn, g)).transpose()
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

fn check_version(current: &DeviceGroup, expected: i64) -> Result<(), StoreError> {
    if current.version == expected {
        return Ok(());
    }
    Err(StoreError::VersionConflict {
        kind: KIND,
        id: current.id.clone(),
        expected,
        current: current.version,
    })
}

/// The domain's hierarchy rules ([`group::check_parent`]: the parent
/// exists, no cycle, depth limit) applied to the stored tree, plus the
/// depth of the subtree when `moving` a group that has children.
fn check_parent(
    conn: &Connection,
    parent_id: &str,
    moving: Option<&DeviceGroup>,
) -> Result<(), StoreError> {
    let tree = StoredTree::new(conn);
    let verdict = group::check_parent(moving.map(|g| g.id.as_str()), parent_id, &tree);
    tree.outcome(verdict)?;
    let Some(moving) = moving else {
        return Ok(());
    };
    let height = subtree_height(conn, &moving.id)?;
    if height > 1 {
        let parent_depth = tree.outcome(group::ancestry(parent_id, &tree))?.len();
        let deepest = parent_depth + height;
        if deepest > group::MAX_HIERARCHY_DEPTH {
            return Err(FieldError::new(
                "parent_id",
                format!(
                    "moving {:?} under {parent_id:?} would put its deepest subgroup at depth \
                     {deepest}; groups nest at most {} levels deep",
                    moving.path,
                    group::MAX_HIERARCHY_DEPTH
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// The stored parent relation, in the shape the domain's hierarchy rules
/// read it. [`ParentLookup`] cannot fail, so a database error is kept
/// aside and takes precedence over the rule's verdict in [`Self::outcome`]
/// (to the rule, a failed lookup looks like a missing group).
struct StoredTree<'c> {
    conn: &'c Connection,
    error: RefCell<Option<rusqlite::Error>>,
}

impl<'c> StoredTree<'c> {
    fn new(conn: &'c Connection) -> Self {
        StoredTree {
            conn,
            error: RefCell::new(None),
        }
    }

    fn outcome<T>(&self, verdict: Result<T, FieldError>) -> Result<T, StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e.into());
        }
        Ok(verdict?)
    }
}

impl ParentLookup for StoredTree<'_> {
    fn parent_of(&self, group_id: &str) -> Option<Option<String>> {
        let found = self
            .conn
            .prepare_cached("SELECT parent_id FROM device_groups WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([group_id], |r| r.get(0)).optional());
        match found {
            Ok(parent) => parent,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
}

/// Levels in the subtree rooted at `id`, counting `id` itself as 1.
fn subtree_height(conn: &Connection, id: &str) -> Result<usize, StoreError> {
    let height: i64 = conn
        .prepare_cached(
            "WITH RECURSIVE sub (id, depth) AS (
                 SELECT ?1, 1
                 UNION ALL
                 SELECT g.id, s.depth + 1
                   FROM device_groups g JOIN sub s ON g.parent_id = s.id
                  WHERE s.depth < ?2
             )
             SELECT MAX(depth) FROM sub",
        )?
        .query_row(params![id, MAX_DEPTH], |r| r.get(0))?;
    Ok(usize::try_from(height).unwrap_or(usize::MAX))
}

fn check_name_free(
    conn: &Connection,
    parent_id: Option<&str>,
    name: &str,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM device_groups
              WHERE COALESCE(parent_id, '') = COALESCE(?1, '') AND name = ?2
                AND (?3 IS NULL OR id <> ?3)",
        )?
        .query_row(params![parent_id, name, except_id], |r| r.get(0))
        .optional()?;
    match taken {
        None => Ok(()),
        Some(other) => Err(name_taken(conn, parent_id, name, Some(&other))),
    }
}

fn name_taken(
    conn: &Connection,
    parent_id: Option<&str>,
    name: &str,
    other: Option<&str>,
) -> StoreError {
    let place = match parent_id.map(|p| find(conn, p)) {
        Some(Ok(Some(parent))) => format!("under {:?}", parent.path),
        Some(_) => "under the same parent".to_owned(),
        None => "at the top level".to_owned(),
    };
    let other = other.map(|o| format!(" ({o})")).unwrap_or_default();
    StoreError::Conflict {
        field: Some("name"),
        message: format!("name {name:?} is already used by another device group{other} {place}"),
    }
}

/// The unique index is the last line of defence against duplicate sibling
/// names; turn its violation into the same error the explicit check gives.
fn name_conflict_or(err: rusqlite::Error, conn: &Connection, spec: &DeviceGroupSpec) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, Some(msg))
            if e.code == ErrorCode::ConstraintViolation && msg.contains("UNIQUE") =>
        {
            name_taken(conn, spec.parent_id.as_deref(), &spec.name, None)
        }
        _ => StoreError::backend(err),
    }
}

/// `(id, name)` from `id` up to its root, `id` first.
fn chain(conn: &Connection, id: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE chain (id, parent_id, name, depth) AS (
             SELECT id, parent_id, name, 0 FROM device_groups WHERE id = ?1
             UNION ALL
             SELECT g.id, g.parent_id, g.name, c.depth + 1
               FROM device_groups g JOIN chain c ON g.id = c.parent_id
              WHERE c.depth < ?2
         )
         SELECT id, name FROM chain ORDER BY depth",
    )?;
    let rows = stmt.query_map(params![id, MAX_DEPTH], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn with_path(conn: &Connection, mut g: DeviceGroup) -> Result<DeviceGroup, StoreError> {
    let names: Vec<String> = chain(conn, &g.id)?
        .into_iter()
        .rev()
        .map(|(_, n)| n)
        .collect();
    g.path = group::path(&names);
    Ok(g)
}

/// Maps a row of [`SELECT`]; `path` is filled in by [`with_path`].
fn from_row(r: &Row<'_>) -> rusqlite::Result<DeviceGroup> {
    let tags: String = r.get(4)?;
    Ok(DeviceGroup {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        parent_id: r.get(3)?,
        tags: serde_json::from_str(&tags).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
        })?,
        path: String::new(),
        created_at: time::parse(&r.get::<_, String>(5)?)?,
        updated_at: time::parse(&r.get::<_, String>(6)?)?,
        version: r.get(7)?,
    })
}

fn tags_json(tags: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(tags).map_err(StoreError::backend)
}
