//! [`FleetStore`] on either backend: the trait glue, plus helpers shared by the
//! per-table modules (`devices`, `policies`, `firmware`, `rollouts`).

use super::db::{self, Connection};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::audit::{self, Change};
use super::{devices, firmware, policies, rollouts, time, write, Backend};
use crate::domain::query::Query;
use crate::store::{
    Actor, AuditAction, Device, DeviceSpec, Firmware, FirmwareSpec, FleetStore, ObjectKind, Policy,
    PolicyAttachment, PolicyAttachmentSpec, PolicySpec, PolicyVersion, Rollout, RolloutSpec,
    StoreError, MAX_PAGE_SIZE,
};

// ------------------------------------------------------------------ helpers

pub(super) fn not_found(kind: ObjectKind, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

pub(super) fn check_version(
    kind: ObjectKind,
    id: &str,
    current: i64,
    expected: Option<i64>,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != current => Err(StoreError::VersionConflict {
            kind,
            id: id.to_owned(),
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// Appends the audit row of a change (versions before and after), in the
/// caller's transaction.
pub(super) fn record(
    conn: &Connection,
    actor: &Actor,
    now: &str,
    action: AuditAction,
    kind: ObjectKind,
    id: &str,
    (before_version, after_version): (Option<i64>, Option<i64>),
) -> Result<(), StoreError> {
    audit::record(
        conn,
        actor,
        now,
        Change {
            action,
            kind,
            id,
            before_version,
            after_version,
        },
    )?;
    Ok(())
}

pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

/// Reads a JSON text column.
pub(super) fn json_col<T: DeserializeOwned>(r: &db::Row<'_>, idx: usize) -> db::Result<T> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| db::Error::FromSqlConversionFailure(idx, db::types::Type::Text, e.into()))
}

pub(super) fn time_col(r: &db::Row<'_>, idx: usize) -> db::Result<DateTime<Utc>> {
    time::parse(&r.get::<_, String>(idx)?)
}

pub(super) fn is_unique_violation(err: &db::Error) -> bool {
    db::is_unique_violation(err)
}

pub(super) fn is_foreign_key_violation(err: &db::Error) -> bool {
    db::is_foreign_key_violation(err)
}

/// A delete refused by a foreign key from a table this module does not
/// know (another area's rows point at the object) becomes a 409 instead
/// of a 500.
pub(super) fn still_referenced(
    err: db::Error,
    kind: ObjectKind,
    name: &str,
    id: &str,
) -> StoreError {
    if is_foreign_key_violation(&err) {
        StoreError::Conflict {
            field: None,
            message: format!(
                "{kind} {name:?} ({id}) is still referenced by other objects (for example \
                 certificates or enrollments); delete those first"
            ),
        }
    } else {
        StoreError::backend(err)
    }
}

/// `"a", "b" and 3 more` for messages listing referencing objects.
pub(super) fn list_names(names: &[String], total: i64) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let shown = quoted.len() as i64;
    let mut out = quoted.join(", ");
    if total > shown {
        out.push_str(&format!(" and {} more", total - shown));
    }
    out
}

/// Whether a group with this id exists.
pub(super) fn group_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM device_groups WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?)
}

// ------------------------------------------------------------------ the trait

#[async_trait]
impl FleetStore for Backend {
    async fn create_device(&self, actor: &Actor, spec: DeviceSpec) -> Result<Device, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| devices::create(tx, &actor, now, &spec)))
            .await
    }

    async fn get_device(&self, id: &str) -> Result<Device, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| devices::get(conn, &id)).await
    }

    async fn list_devices(
        &self,
        after: Option<&str>,
        limit: u32,
        filter: Option<Query>,
    ) -> Result<Vec<Device>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| devices::list(conn, after.as_deref(), limit, filter.as_ref()))
            .await
    }

    async fn update_device(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: DeviceSpec,
    ) -> Result<Device, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                devices::update(tx, &actor, now, &id, expected_version, &spec)
            })
        })
        .await
    }

    async fn delete_device(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                devices::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn create_policy(&self, actor: &Actor, spec: PolicySpec) -> Result<Policy, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| policies::create(tx, &actor, now, &spec)))
            .await
    }

    async fn get_policy(&self, id: &str) -> Result<Policy, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| policies::get(conn, &id)).await
    }

    async fn list_policies(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Policy>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| policies::list(conn, after.as_deref(), limit))
            .await
    }

    async fn update_policy(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: PolicySpec,
    ) -> Result<Policy, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                policies::update(tx, &actor, now, &id, expected_version, &spec)
            })
        })
        .await
    }

    async fn delete_policy(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                policies::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn list_policy_versions(&self, id: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| policies::versions(conn, &id))
            .await
    }

    async fn create_policy_attachment(
        &self,
        actor: &Actor,
        spec: PolicyAttachmentSpec,
    ) -> Result<PolicyAttachment, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| {
            write(conn, |tx, now| {
                policies::create_attachment(tx, &actor, now, &spec)
            })
        })
        .await
    }

    async fn get_policy_attachment(&self, id: &str) -> Result<PolicyAttachment, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| policies::get_attachment(conn, &id))
            .await
    }

    async fn list_policy_attachments(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PolicyAttachment>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| policies::list_attachments(conn, after.as_deref(), limit))
            .await
    }

    async fn delete_policy_attachment(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                policies::delete_attachment(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn create_firmware(
        &self,
        actor: &Actor,
        spec: FirmwareSpec,
    ) -> Result<Firmware, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| firmware::create(tx, &actor, now, &spec)))
            .await
    }

    async fn get_firmware(&self, id: &str) -> Result<Firmware, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| firmware::get(conn, &id)).await
    }

    async fn list_firmware(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Firmware>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| firmware::list(conn, after.as_deref(), limit))
            .await
    }

    async fn delete_firmware(&self, actor: &Actor, id: &str) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| write(conn, |tx, now| firmware::delete(tx, &actor, now, &id)))
            .await
    }

    async fn create_rollout(
        &self,
        actor: &Actor,
        spec: RolloutSpec,
    ) -> Result<Rollout, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| rollouts::create(tx, &actor, now, &spec)))
            .await
    }

    async fn get_rollout(&self, id: &str) -> Result<Rollout, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| rollouts::get(conn, &id)).await
    }

    async fn list_rollouts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Rollout>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| rollouts::list(conn, after.as_deref(), limit))
            .await
    }

    async fn update_rollout(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: RolloutSpec,
    ) -> Result<Rollout, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                rollouts::update(tx, &actor, now, &id, expected_version, &spec)
            })
        })
        .await
    }

    async fn delete_rollout(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                rollouts::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn object_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call_read(|conn| object_counts(conn)).await
    }
}

/// Kinds counted on `/metrics`, with their tables (all created by the
/// schema migration).
const COUNTED: &[(&str, &str)] = &[
    ("device_group", "device_groups"),
    ("device", "devices"),
    ("policy", "policies"),
    ("policy_attachment", "policy_attachments"),
    ("firmware", "firmware"),
    ("rollout", "rollouts"),
    ("certificate_authority", "certificate_authorities"),
    ("certificate", "certificates"),
    ("enrollment", "enrollments"),
];

fn object_counts(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out = Vec::new();
    for (kind, table) in COUNTED {
        // The table name comes from the constant above, never from input.
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })?;
        out.push(((*kind).to_owned(), n));
    }
    Ok(out)
}
