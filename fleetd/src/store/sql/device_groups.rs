//! Device group queries. Every function takes the connection (or the open
//! write transaction) it runs on; [`super::Backend`] supplies it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::db::{self, params, Connection, OptionalExtension, Row};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use serde_json::{Map, Value};

use super::audit::{self, Change};
use super::fleet::{json_col, list_names, record, still_referenced};
use super::{membership, time};
use super::{write, Backend};
use crate::domain::group::{self, ParentLookup};
use crate::domain::rollout;
use crate::domain::FieldError;
use crate::store::{
    Actor, AuditAction, AuditEvent, DeviceGroup, DeviceGroupSpec, GroupStore, ObjectKind,
    StoreError, MAX_PAGE_SIZE,
};

// ------------------------------------------------------------------ trait glue

#[async_trait]
impl GroupStore for Backend {
    async fn create_device_group(
        &self,
        actor: &Actor,
        spec: DeviceGroupSpec,
    ) -> Result<DeviceGroup, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| create(tx, &actor, now, &spec)))
            .await
    }

    async fn get_device_group(&self, id: &str) -> Result<DeviceGroup, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| get(conn, &id)).await
    }

    async fn list_device_groups(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceGroup>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| list(conn, after.as_deref(), limit))
            .await
    }

    async fn update_device_group(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: DeviceGroupSpec,
    ) -> Result<DeviceGroup, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                update(tx, &actor, now, &id, expected_version, &spec)
            })
        })
        .await
    }

    async fn delete_device_group(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn audit_events(
        &self,
        kind: ObjectKind,
        id: &str,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| Ok(audit::for_object(conn, kind, &id)?))
            .await
    }
}

// ------------------------------------------------------------------ queries

const KIND: ObjectKind = ObjectKind::DeviceGroup;

/// A group's desired device configuration.
type Config = Map<String, Value>;

const SELECT: &str =
    "SELECT id, name, description, parent_id, tags, created_at, updated_at, version, query,
            config, stale_after_secs
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
        .collect::<db::Result<Vec<_>>>()?;
    // One device scan for the whole page rather than one per group.
    let queries: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|g| (g.id.clone(), g.query.clone()))
        .collect();
    let counts = membership::device_counts(conn, &queries)?;
    rows.into_iter()
        .map(|mut g| {
            g.device_count = counts.get(&g.id).copied().unwrap_or(0);
            with_hierarchy(conn, g)
        })
        .collect()
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
             (id, name, description, parent_id, tags, created_at, updated_at, version, query,
              config, stale_after_secs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        spec.name,
        spec.description,
        spec.parent_id,
        tags_json(&spec.tags)?,
        now,
        spec.query,
        config_json(&spec.config)?,
        stale_after(spec)?
    ])
    .map_err(|e| name_conflict_or(e, spec))?;
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
                updated_at = ?5, version = ?6, query = ?9, config = ?10,
                stale_after_secs = ?11
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
        current.version,
        spec.query,
        config_json(&spec.config)?,
        stale_after(spec)?
    ])
    .map_err(|e| name_conflict_or(e, spec))?;
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
    check_not_in_use(conn, &current)?;
    let now = time::to_text(now);
    release_members(conn, actor, &now, id)?;
    // Finished rollouts may still name the group; their rollout_targets
    // rows go with it (ON DELETE CASCADE) and their target_group_ids keep
    // the id as history.
    conn.prepare_cached("DELETE FROM device_groups WHERE id = ?1")?
        .execute([id])
        .map_err(|e| still_referenced(e, KIND, &current.path, id))?;
    audit::record(
        conn,
        actor,
        &now,
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
    row.map(|g| complete(conn, g)).transpose()
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
    error: RefCell<Option<db::Error>>,
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

/// [`name_taken`] once the transaction can no longer be queried.
fn name_taken_unresolved(parent_id: Option<&str>, name: &str) -> StoreError {
    let place = match parent_id {
        Some(_) => "under the same parent",
        None => "at the top level",
    };
    StoreError::Conflict {
        field: Some("name"),
        message: format!("name {name:?} is already used by another device group {place}"),
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
fn name_conflict_or(err: db::Error, spec: &DeviceGroupSpec) -> StoreError {
    if db::is_unique_violation(&err) {
        // The transaction is aborted; the message cannot look the parent up.
        name_taken_unresolved(spec.parent_id.as_deref(), &spec.name)
    } else {
        StoreError::backend(err)
    }
}

/// `(name, config)` from `id` up to its root, `id` first.
fn chain(conn: &Connection, id: &str) -> Result<Vec<(String, Config)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE chain (id, parent_id, name, config, depth) AS (
             SELECT id, parent_id, name, config, 0 FROM device_groups WHERE id = ?1
             UNION ALL
             SELECT g.id, g.parent_id, g.name, g.config, c.depth + 1
               FROM device_groups g JOIN chain c ON g.id = c.parent_id
              WHERE c.depth < ?2
         )
         SELECT name, config FROM chain ORDER BY depth",
    )?;
    let rows = stmt.query_map(params![id, MAX_DEPTH], |r| {
        Ok((r.get(0)?, json_col::<Map<String, Value>>(r, 1)?))
    })?;
    Ok(rows.collect::<db::Result<Vec<_>>>()?)
}

/// Fills in what is computed from other rows: the path and effective
/// config from the chain of ancestors, and the device count.
fn complete(conn: &Connection, mut g: DeviceGroup) -> Result<DeviceGroup, StoreError> {
    g.device_count = membership::device_count(conn, &g.id, g.query.as_deref())?;
    g.compliance = super::compliance::summary(conn, &g.id)?;
    with_hierarchy(conn, g)
}

fn with_hierarchy(conn: &Connection, mut g: DeviceGroup) -> Result<DeviceGroup, StoreError> {
    let mut chain = chain(conn, &g.id)?;
    chain.reverse();
    let names: Vec<&str> = chain.iter().map(|(n, _)| n.as_str()).collect();
    g.path = group::path(&names);
    g.effective_config = group::effective_config(chain.iter().map(|(_, c)| c));
    Ok(g)
}

/// A group cannot go while policies are attached to it or an unfinished
/// rollout targets it: either would silently change what devices are
/// allowed to do or receive.
fn check_not_in_use(conn: &Connection, g: &DeviceGroup) -> Result<(), StoreError> {
    let attachments: Vec<String> = conn
        .prepare_cached(
            "SELECT a.id FROM policy_attachments a WHERE a.group_id = ?1 ORDER BY a.id LIMIT 5",
        )?
        .query_map([&g.id], |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    if !attachments.is_empty() {
        let total: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM policy_attachments WHERE group_id = ?1")?
            .query_row([&g.id], |r| r.get(0))?;
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "device group {:?} ({}) still has {total} polic{} attached (attachment{} {}); \
                 delete the attachments first",
                g.path,
                g.id,
                if total == 1 { "y" } else { "ies" },
                if total == 1 { "" } else { "s" },
                list_names(&attachments, total)
            ),
        });
    }
    let enrollments = enrollments_into(conn, &g.id)?;
    if !enrollments.is_empty() {
        let total = enrollments.len() as i64;
        let shown: Vec<String> = enrollments.into_iter().take(5).collect();
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "device group {:?} ({}) is the target of {total} enrollment{} ({}); delete or \
                 retarget {} first",
                g.path,
                g.id,
                if total == 1 { "" } else { "s" },
                list_names(&shown, total),
                if total == 1 { "it" } else { "them" }
            ),
        });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT r.name, r.status FROM rollout_targets t JOIN rollouts r ON r.id = t.rollout_id
          WHERE t.group_id = ?1 ORDER BY r.id",
    )?;
    let active: Vec<String> = stmt
        .query_map([&g.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<db::Result<Vec<_>>>()?
        .into_iter()
        .filter(|(_, status)| !rollout::is_terminal_status(status))
        .map(|(name, status)| format!("{name} ({status})"))
        .collect();
    if !active.is_empty() {
        let total = active.len() as i64;
        let shown: Vec<String> = active.into_iter().take(5).collect();
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "device group {:?} ({}) is targeted by {total} unfinished rollout{}: {}; cancel or \
                 delete {} first",
                g.path,
                g.id,
                if total == 1 { "" } else { "s" },
                list_names(&shown, total),
                if total == 1 { "it" } else { "them" }
            ),
        });
    }
    Ok(())
}

/// Names of the enrollments that register devices into `group_id`.
fn enrollments_into(conn: &Connection, group_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT name FROM enrollments WHERE group_id = ?1 ORDER BY name")?
        .query_map([group_id], |r| r.get(0))?
        .collect::<db::Result<Vec<String>>>()?)
}

/// Static members leave the group with it; their device version goes up
/// (with an audit row each) since their `group_ids` change.
fn release_members(
    conn: &Connection,
    actor: &Actor,
    now: &str,
    group_id: &str,
) -> Result<(), StoreError> {
    let members: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT d.id, d.version FROM devices d JOIN device_group_members m
                 ON m.device_id = d.id
              WHERE m.group_id = ?1",
        )?
        .query_map([group_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<db::Result<_>>()?;
    let mut bump = conn.prepare_cached(
        "UPDATE devices SET version = version + 1, updated_at = ?1 WHERE id = ?2",
    )?;
    for (device_id, version) in members {
        bump.execute(params![now, device_id])?;
        record(
            conn,
            actor,
            now,
            AuditAction::Update,
            ObjectKind::Device,
            &device_id,
            (Some(version), Some(version + 1)),
        )?;
    }
    conn.prepare_cached("DELETE FROM device_group_members WHERE group_id = ?1")?
        .execute([group_id])?;
    Ok(())
}

/// Maps a row of [`SELECT`]; computed fields are filled in by
/// [`complete`].
fn from_row(r: &Row<'_>) -> db::Result<DeviceGroup> {
    let tags: String = r.get(4)?;
    Ok(DeviceGroup {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        parent_id: r.get(3)?,
        tags: serde_json::from_str(&tags)
            .map_err(|e| db::Error::FromSqlConversionFailure(4, db::types::Type::Text, e.into()))?,
        path: String::new(),
        created_at: time::parse(&r.get::<_, String>(5)?)?,
        updated_at: time::parse(&r.get::<_, String>(6)?)?,
        version: r.get(7)?,
        query: r.get(8)?,
        config: json_col(r, 9)?,
        effective_config: Map::new(),
        device_count: 0,
        stale_after_secs: r.get::<_, Option<i64>>(10)?.map(|s| s.max(1) as u64),
        compliance: Default::default(),
    })
}

fn stale_after(spec: &DeviceGroupSpec) -> Result<Option<i64>, StoreError> {
    spec.stale_after_secs
        .map(|s| i64::try_from(s).map_err(StoreError::backend))
        .transpose()
}

fn config_json(config: &Map<String, Value>) -> Result<String, StoreError> {
    serde_json::to_string(config).map_err(StoreError::backend)
}

fn tags_json(tags: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(tags).map_err(StoreError::backend)
}
