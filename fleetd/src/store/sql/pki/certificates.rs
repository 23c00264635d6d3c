//! `certificates` and `crl_entries` queries.

use super::super::db::{self, params, Connection, OptionalExtension, Row};
use chrono::{DateTime, Utc};

use super::super::audit::{self, Change};
use super::super::time;
use super::{bad_value, check_ca_ref, check_version, exists, not_found};
use crate::domain::pki::{self, CertificateStatus, RevocationReason, RevokedSerial};
use crate::domain::FieldError;
use crate::store::{
    Actor, AuditAction, CertificateFilter, CertificateRecord, NewCertificate, ObjectKind,
    StoreError,
};

const KIND: ObjectKind = ObjectKind::Certificate;

const SELECT: &str = "SELECT id, ca_id, device_id, common_name, csr_pem, key_algorithm,
        validity_days, status, revocation_reason, revoked_at, serial, certificate_pem,
        fingerprint, not_before, not_after, created_at, updated_at, version
   FROM certificates";

pub(super) fn get(conn: &Connection, id: &str) -> Result<CertificateRecord, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| not_found(KIND, id))
}

pub(super) fn list(
    conn: &Connection,
    filter: &CertificateFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE (?1 IS NULL OR id > ?1)
                    AND (?2 IS NULL OR ca_id = ?2)
                    AND (?3 IS NULL OR device_id = ?3)
              ORDER BY id LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![after, filter.ca_id, filter.device_id, i64::from(limit)],
        from_row,
    )?;
    Ok(rows.collect::<db::Result<Vec<_>>>()?)
}

pub(super) fn create(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    cert: &NewCertificate,
) -> Result<CertificateRecord, StoreError> {
    check_ca_ref(conn, "ca_id", &cert.ca_id)?;
    if let Some(device_id) = &cert.device_id {
        if !exists(conn, "devices", device_id)? {
            return Err(
                FieldError::new("device_id", format!("device {device_id:?} not found")).into(),
            );
        }
    }
    if cert.status == CertificateStatus::Revoked {
        return Err(FieldError::new("status", "a new certificate cannot be revoked").into());
    }
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::to_text(now);
    conn.prepare_cached(
        "INSERT INTO certificates
             (id, ca_id, device_id, common_name, csr_pem, key_algorithm, validity_days, status,
              serial, certificate_pem, fingerprint, not_before, not_after,
              created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, 1)",
    )?
    .execute(params![
        id,
        cert.ca_id,
        cert.device_id,
        cert.common_name,
        cert.csr_pem,
        cert.key_algorithm,
        cert.validity_days,
        cert.status.as_str(),
        cert.serial,
        cert.certificate_pem,
        cert.fingerprint,
        time::to_text(cert.not_before),
        time::to_text(cert.not_after),
        now,
    ])?;
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

pub(super) fn update_status(
    conn: &Connection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: &str,
    expected_version: i64,
    status: CertificateStatus,
    reason: Option<RevocationReason>,
) -> Result<CertificateRecord, StoreError> {
    let current = get(conn, id)?;
    check_version(KIND, id, current.version, Some(expected_version))?;
    pki::check_status_transition(
        (current.status, current.revocation_reason),
        (status, reason),
    )
    .map_err(|e| StoreError::Conflict {
        field: Some(if e.field == "status" {
            "status"
        } else {
            "revocation_reason"
        }),
        message: format!("{}: {}", e.field, e.message),
    })?;
    if current.status == status {
        // Nothing changes (a revoked certificate keeps its reason).
        return Ok(current);
    }

    let now = time::to_text(now);
    let next = current.version + 1;
    let (reason_text, revoked_at) = match status {
        CertificateStatus::Revoked => (
            Some(reason.unwrap_or_default().as_str()),
            Some(now.as_str()),
        ),
        _ => (None, None),
    };
    conn.prepare_cached(
        "UPDATE certificates
            SET status = ?1, revocation_reason = ?2, revoked_at = ?3, updated_at = ?4,
                version = ?5
          WHERE id = ?6 AND version = ?7",
    )?
    .execute(params![
        status.as_str(),
        reason_text,
        revoked_at,
        now,
        next,
        id,
        current.version
    ])?;
    if let Some(reason) = reason_text {
        add_crl_entry(conn, &current, reason, &now)?;
    }
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
    let attachments: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM policy_attachments WHERE certificate_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    if attachments > 0 {
        let noun = if attachments == 1 {
            "policy attachment"
        } else {
            "policy attachments"
        };
        return Err(StoreError::Conflict {
            field: None,
            message: format!(
                "certificate {id} still has {attachments} {noun}; detach the policies first"
            ),
        });
    }
    let now = time::to_text(now);
    if current.status != CertificateStatus::Revoked {
        add_crl_entry(
            conn,
            &current,
            RevocationReason::CessationOfOperation.as_str(),
            &now,
        )?;
    }
    conn.prepare_cached("DELETE FROM certificates WHERE id = ?1")?
        .execute([id])?;
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

pub(super) fn crl_entries(
    conn: &Connection,
    ca_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<RevokedSerial>, StoreError> {
    if !exists(conn, "certificate_authorities", ca_id)? {
        return Err(not_found(ObjectKind::CertificateAuthority, ca_id));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT serial, revoked_at, reason FROM crl_entries
          WHERE ca_id = ?1 AND not_after > ?2
          ORDER BY revoked_at, serial",
    )?;
    let rows = stmt.query_map(params![ca_id, time::to_text(now)], |r| {
        let reason: String = r.get(2)?;
        Ok(RevokedSerial {
            serial: r.get(0)?,
            revoked_at: time::parse(&r.get::<_, String>(1)?)?,
            reason: RevocationReason::parse("reason", &reason)
                .map_err(|_| bad_value(2, "revocation reason", &reason))?,
        })
    })?;
    Ok(rows.collect::<db::Result<Vec<_>>>()?)
}

fn add_crl_entry(
    conn: &Connection,
    cert: &CertificateRecord,
    reason: &str,
    at: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO crl_entries (ca_id, serial, revoked_at, reason, not_after)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        cert.ca_id,
        cert.serial,
        at,
        reason,
        time::to_text(cert.not_after)
    ])?;
    Ok(())
}

fn from_row(r: &Row<'_>) -> db::Result<CertificateRecord> {
    let status: String = r.get(7)?;
    let reason: Option<String> = r.get(8)?;
    let revoked_at: Option<String> = r.get(9)?;
    Ok(CertificateRecord {
        id: r.get(0)?,
        ca_id: r.get(1)?,
        device_id: r.get(2)?,
        common_name: r.get(3)?,
        csr_pem: r.get(4)?,
        key_algorithm: r.get(5)?,
        validity_days: r.get(6)?,
        status: CertificateStatus::parse("status", &status)
            .map_err(|_| bad_value(7, "certificate status", &status))?,
        revocation_reason: reason
            .map(|s| {
                RevocationReason::parse("revocation_reason", &s)
                    .map_err(|_| bad_value(8, "revocation reason", &s))
            })
            .transpose()?,
        revoked_at: revoked_at.map(|t| time::parse(&t)).transpose()?,
        serial: r.get(10)?,
        certificate_pem: r.get(11)?,
        fingerprint: r.get(12)?,
        not_before: time::parse(&r.get::<_, String>(13)?)?,
        not_after: time::parse(&r.get::<_, String>(14)?)?,
        created_at: time::parse(&r.get::<_, String>(15)?)?,
        updated_at: time::parse(&r.get::<_, String>(16)?)?,
        version: r.get(17)?,
    })
}
