//! `certificate_authorities` queries.

use super::super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::super::audit::{self, Change};
use super::super::time;
use super::{check_version, is_unique_violation, not_found};
use crate::keystore;
use crate::store::{Actor, AuditAction, CaRecord, CaSigner, NewCa, ObjectKind, StoreError};

const KIND: ObjectKind = ObjectKind::CertificateAuthority;

/// Every column but the key; [`from_row`] maps it.
const SELECT: &str = "SELECT id, name, description, common_name, organization, key_algorithm,
        validity_days, imported, certificate_pem, fingerprint, serial, not_before, not_after,
        created_at, updated_at, version
   FROM certificate_authorities";

pub(super) fn get(conn: &Connection, id: &str) -> Result<CaRecord, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

pub(super) fn signer(conn: &Connection, id: &str) -> Result<CaSigner, StoreError> {
    let ca = get(conn, id)?;
    let sealed_key: Vec<u8> = conn
        .prepare_cached("SELECT private_key FROM certificate_authorities WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    Ok(CaSigner { ca, sealed_key })
}

pub(super) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<CaRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, i64::from(limit)], from_row)?;
    Ok(rows.collect::<db::Result<Vec<_>>>()?)
}

pub(super) fn master_key_ids(conn: &mut Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT master_key_id FROM certificate_authorities ORDER BY master_key_id",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<db::Result<Vec<_>>>()?)
}

pub(super) fn create(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    ca: &NewCa,
) -> Result<CaRecord, StoreError> {
    check_name_free(conn, &ca.name, None)?;
    let master_key_id = keystore::sealed_key_id(&ca.sealed_key).ok_or_else(|| {
        StoreError::backend(anyhow::anyhow!(
            "the CA key is not sealed in a known format"
        ))
    })?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO certificate_authorities
             (id, name, description, common_name, organization, key_algorithm, validity_days,
              imported, certificate_pem, fingerprint, serial, not_before, not_after,
              private_key, master_key_id, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, 1)",
    )?
    .execute(params![
        id,
        ca.name,
        ca.description,
        ca.common_name,
        ca.organization,
        ca.key_algorithm,
        ca.validity_days,
        ca.imported,
        ca.certificate_pem,
        ca.fingerprint,
        ca.serial,
        time::to_text(ca.not_before),
        time::to_text(ca.not_after),
        ca.sealed_key,
        master_key_id,
        now,
    ])
    .map_err(|e| name_conflict_or(e, &ca.name))?;
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
    name: &str,
    description: &str,
) -> Result<CaRecord, StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, Some(expected_version))?;
    check_name_free(conn, name, Some(id))?;
    let now = time::to_text(now);
    let next = current.version + 1;
    conn.prepare_cached(
        "UPDATE certificate_authorities
            SET name = ?1, description = ?2, updated_at = ?3, version = ?4
          WHERE id = ?5 AND version = ?6",
    )?
    .execute(params![name, description, now, next, id, current.version])
    .map_err(|e| name_conflict_or(e, name))?;
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
    let count = |sql: &str| -> Result<i64, StoreError> {
        Ok(conn.prepare_cached(sql)?.query_row([id], |r| r.get(0))?)
    };
    let in_use = |what: String, advice: &str| StoreError::Conflict {
        field: None,
        message: format!(
            "certificate authority {:?} ({id}) still has {what}; {advice}",
            current.name
        ),
    };
    let active = count("SELECT COUNT(*) FROM certificates WHERE ca_id = ?1 AND status = 'active'")?;
    if active > 0 {
        return Err(in_use(
            plural(active, "active certificate", "active certificates"),
            "revoke, deactivate or delete them first",
        ));
    }
    let enrollments = count("SELECT COUNT(*) FROM enrollments WHERE ca_id = ?1")?;
    if enrollments > 0 {
        return Err(in_use(
            plural(enrollments, "enrollment", "enrollments"),
            "delete them or point them at another CA first",
        ));
    }
    let attached = count(
        "SELECT COUNT(*) FROM policy_attachments
          WHERE certificate_id IN (SELECT id FROM certificates WHERE ca_id = ?1)",
    )?;
    if attached > 0 {
        return Err(in_use(
            plural(
                attached,
                "policy attachment on one of its certificates",
                "policy attachments on its certificates",
            ),
            "detach the policies first",
        ));
    }

    // The remaining (inactive or revoked) certificates go with their CA;
    // each leaves an audit row of its own.
    let at = time::to_text(now);
    let remaining: Vec<(String, i64)> = conn
        .prepare_cached("SELECT id, version FROM certificates WHERE ca_id = ?1 ORDER BY id")?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<db::Result<_>>()?;
    conn.prepare_cached("DELETE FROM certificates WHERE ca_id = ?1")?
        .execute([id])?;
    for (cert_id, version) in &remaining {
        audit::record(
            conn,
            actor,
            &at,
            Change {
                action: AuditAction::Delete,
                kind: ObjectKind::Certificate,
                id: cert_id,
                before_version: Some(*version),
                after_version: None,
            },
        )?;
    }
    // crl_entries cascade.
    conn.prepare_cached("DELETE FROM certificate_authorities WHERE id = ?1")?
        .execute([id])?;
    audit::record(
        conn,
        actor,
        &at,
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

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn check_name_free(
    conn: &Connection,
    name: &str,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM certificate_authorities WHERE name = ?1 AND (?2 IS NULL OR id <> ?2)",
        )?
        .query_row(params![name, except_id], |r| r.get(0))
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
        message: format!("name: {name:?} is already used by another certificate authority{other}"),
    }
}

fn name_conflict_or(err: db::Error, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        name_taken(name, None)
    } else {
        StoreError::backend(err)
    }
}

fn from_row(r: &Row<'_>) -> db::Result<CaRecord> {
    Ok(CaRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        common_name: r.get(3)?,
        organization: r.get(4)?,
        key_algorithm: r.get(5)?,
        validity_days: r.get(6)?,
        imported: r.get(7)?,
        certificate_pem: r.get(8)?,
        fingerprint: r.get(9)?,
        serial: r.get(10)?,
        not_before: time::parse(&r.get::<_, String>(11)?)?,
        not_after: time::parse(&r.get::<_, String>(12)?)?,
        created_at: time::parse(&r.get::<_, String>(13)?)?,
        updated_at: time::parse(&r.get::<_, String>(14)?)?,
        version: r.get(15)?,
    })
}
