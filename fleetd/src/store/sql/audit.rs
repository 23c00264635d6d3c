//! Writing and reading the audit log.

use super::db::{self, params, Connection};

use crate::store::{Actor, AuditAction, AuditEvent, ObjectKind};

/// One change about to be committed.
pub(super) struct Change<'a> {
    pub action: AuditAction,
    pub kind: ObjectKind,
    pub id: &'a str,
    pub before_version: Option<i64>,
    pub after_version: Option<i64>,
}

/// Appends an audit row. Call it with the transaction that makes the
/// change so both commit or neither does.
pub(super) fn record(
    conn: &Connection,
    actor: &Actor,
    at: &str,
    change: Change<'_>,
) -> db::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log
             (at, actor, action, object_kind, object_id, before_version, after_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        at,
        actor.0,
        change.action.as_str(),
        change.kind.as_str(),
        change.id,
        change.before_version,
        change.after_version,
    ])?;
    Ok(())
}

pub(super) fn for_object(
    conn: &Connection,
    kind: ObjectKind,
    id: &str,
) -> db::Result<Vec<AuditEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, action, object_kind, object_id, before_version, after_version
           FROM audit_log WHERE object_kind = ?1 AND object_id = ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![kind.as_str(), id], |r| {
        let action: String = r.get(3)?;
        let object_kind: String = r.get(4)?;
        Ok(AuditEvent {
            seq: r.get(0)?,
            at: super::time::parse(&r.get::<_, String>(1)?)?,
            actor: r.get(2)?,
            action: AuditAction::parse(&action).ok_or_else(|| bad_text(3, &action))?,
            object_kind: ObjectKind::parse(&object_kind)
                .ok_or_else(|| bad_text(4, &object_kind))?,
            object_id: r.get(5)?,
            before_version: r.get(6)?,
            after_version: r.get(7)?,
        })
    })?;
    rows.collect()
}

fn bad_text(column: usize, value: &str) -> db::Error {
    db::Error::FromSqlConversionFailure(
        column,
        db::types::Type::Text,
        format!("unexpected value {value:?} in audit_log").into(),
    )
}
