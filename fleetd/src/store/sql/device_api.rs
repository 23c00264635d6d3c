//! [`DeviceApiStore`] on either backend: certificate lookups against
//! `certificates` / `crl_entries`, enrollment bindings in
//! `certificate_bindings`, the listener's CA in `device_server_ca`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::db::{self, params, Connection, OptionalExtension};
use super::fleet::{json_col, record};
use super::{devices, engine, policies, time, write, Backend};
use crate::domain::enrollment::{self, EnrollmentDecision, EnrollmentRequest, RejectReason};
use crate::domain::pki::CertificateStatus;
use crate::store::device_api::{
    CheckinReport, Credential, CredentialStatus, DeviceRequestData, EnrollmentClaim,
    EnrollmentOutcome, EnrollmentRefusal, FleetView, GroupNode, ServerCa, TrustSnapshot, TrustedCa,
};
use crate::store::{
    Actor, AuditAction, Device, DeviceApiStore, DeviceSpec, ObjectKind, StoreError,
};

#[async_trait]
impl DeviceApiStore for Backend {
    async fn trust_snapshot(&self, now: DateTime<Utc>) -> Result<TrustSnapshot, StoreError> {
        self.call(move |conn| trust_snapshot(conn, now)).await
    }

    async fn trust_stamp(&self) -> Result<String, StoreError> {
        self.call(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT (SELECT COUNT(*) || '.' || COALESCE(SUM(version), 0) || '.' ||
                                    COALESCE(MAX(updated_at), '')
                               FROM certificate_authorities)
                            || '/' ||
                            (SELECT COUNT(*) || '.' || COALESCE(MAX(revoked_at), '')
                               FROM crl_entries)
                            || '/' ||
                            (SELECT COUNT(*) || '.' || COALESCE(MAX(updated_at), '')
                               FROM certificates WHERE status <> 'active')",
                )?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    fn request_generation(&self) -> Option<u64> {
        self.write_generation()
    }

    async fn device_request(
        &self,
        ca_id: &str,
        serial: &str,
        known_stamp: Option<&str>,
    ) -> Result<DeviceRequestData, StoreError> {
        let (ca_id, serial) = (ca_id.to_owned(), serial.to_owned());
        let known = known_stamp.map(str::to_owned);
        self.call_read(move |conn| {
            let credential = credential(conn, &ca_id, &serial)?;
            let stamp = view_stamp(conn)?;
            let view = if known.as_deref() == Some(stamp.as_str()) {
                None
            } else {
                Some(fleet_view(conn, stamp)?)
            };
            let assignment_pending = match &credential.device {
                Some(device) => engine::assignment_pending(conn, &device.id)?,
                None => false,
            };
            Ok(DeviceRequestData {
                credential,
                view,
                assignment_pending,
            })
        })
        .await
    }

    async fn enroll(
        &self,
        claim: EnrollmentClaim,
        _now: DateTime<Utc>,
    ) -> Result<EnrollmentOutcome, StoreError> {
        self.call(move |conn| write(conn, |tx, now| enroll(tx, now, &claim)))
            .await
    }

    async fn record_checkin(
        &self,
        device_id: &str,
        report: CheckinReport,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let device_id = device_id.to_owned();
        let batch = vec![(device_id.clone(), report, at)];
        let found = self.record_checkins(batch).await?;
        if found.first() == Some(&true) {
            Ok(())
        } else {
            Err(StoreError::NotFound {
                kind: ObjectKind::Device,
                id: device_id,
            })
        }
    }

    async fn record_checkins(
        &self,
        batch: Vec<(String, CheckinReport, DateTime<Utc>)>,
    ) -> Result<Vec<bool>, StoreError> {
        self.call_reported(move |conn| {
            write(conn, |tx, _| super::compliance::record_checkins(tx, &batch))
        })
        .await
    }

    async fn device_server_ca(&self) -> Result<Option<ServerCa>, StoreError> {
        self.call(|conn| server_ca(conn)).await
    }

    async fn init_device_server_ca(
        &self,
        ca: ServerCa,
        master_key_id: &str,
    ) -> Result<ServerCa, StoreError> {
        let master_key_id = master_key_id.to_owned();
        self.call(move |conn| {
            write(conn, |tx, now| {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO device_server_ca
                         (id, certificate_pem, private_key, master_key_id, created_at)
                     VALUES (1, ?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    ca.certificate_pem,
                    ca.sealed_key,
                    master_key_id,
                    time::to_text(now)
                ])?;
                server_ca(tx)?.ok_or_else(|| {
                    StoreError::backend(anyhow::anyhow!("device server CA vanished"))
                })
            })
        })
        .await
    }
}

fn server_ca(conn: &Connection) -> Result<Option<ServerCa>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT certificate_pem, private_key FROM device_server_ca WHERE id = 1")?
        .query_row([], |r| {
            Ok(ServerCa {
                certificate_pem: r.get(0)?,
                sealed_key: r.get(1)?,
            })
        })
        .optional()?)
}

// ------------------------------------------------------------------ trust

fn trust_snapshot(conn: &Connection, now: DateTime<Utc>) -> Result<TrustSnapshot, StoreError> {
    let now = time::to_text(now);
    let cas = conn
        .prepare_cached(
            "SELECT id, name, certificate_pem, fingerprint FROM certificate_authorities
              WHERE not_before <= ?1 AND not_after > ?1 ORDER BY id",
        )?
        .query_map([&now], |r| {
            Ok(TrustedCa {
                id: r.get(0)?,
                name: r.get(1)?,
                certificate_pem: r.get(2)?,
                fingerprint: r.get(3)?,
            })
        })?
        .collect::<db::Result<Vec<_>>>()?;
    let refused = conn
        .prepare_cached(
            "SELECT ca_id, serial FROM crl_entries WHERE not_after > ?1
             UNION
             SELECT ca_id, serial FROM certificates WHERE status <> 'active'",
        )?
        .query_map([&now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<db::Result<Vec<_>>>()?;
    Ok(TrustSnapshot { cas, refused })
}

/// The recorded certificate `(ca_id, serial)`: id, status, revocation
/// reason, bound device id, enrollment id.
struct CertRow {
    id: String,
    status: String,
    reason: Option<String>,
    device_id: Option<String>,
    enrollment_id: Option<String>,
}

fn cert_row(conn: &Connection, ca_id: &str, serial: &str) -> Result<Option<CertRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT c.id, c.status, c.revocation_reason, COALESCE(b.device_id, c.device_id),
                    b.enrollment_id
               FROM certificates c LEFT JOIN certificate_bindings b ON b.certificate_id = c.id
              WHERE c.ca_id = ?1 AND c.serial = ?2",
        )?
        .query_row(params![ca_id, serial], |r| {
            Ok(CertRow {
                id: r.get(0)?,
                status: r.get(1)?,
                reason: r.get(2)?,
                device_id: r.get(3)?,
                enrollment_id: r.get(4)?,
            })
        })
        .optional()?)
}

fn crl_reason(conn: &Connection, ca_id: &str, serial: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT reason FROM crl_entries WHERE ca_id = ?1 AND serial = ?2")?
        .query_row(params![ca_id, serial], |r| r.get(0))
        .optional()?)
}

fn status_of(row: Option<&CertRow>, crl: Option<String>) -> CredentialStatus {
    if let Some(reason) = crl {
        return CredentialStatus::Revoked { reason };
    }
    match row.map(|r| r.status.as_str()) {
        Some("revoked") => CredentialStatus::Revoked {
            reason: row
                .and_then(|r| r.reason.clone())
                .unwrap_or_else(|| "unspecified".to_owned()),
        },
        Some("inactive") => CredentialStatus::Inactive,
        _ => CredentialStatus::Active,
    }
}

fn find_device(conn: &Connection, id: Option<&str>) -> Result<Option<Device>, StoreError> {
    let Some(id) = id else { return Ok(None) };
    match devices::get(conn, id) {
        Ok(device) => Ok(Some(device)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn credential(conn: &Connection, ca_id: &str, serial: &str) -> Result<Credential, StoreError> {
    let row = cert_row(conn, ca_id, serial)?;
    let status = status_of(row.as_ref(), crl_reason(conn, ca_id, serial)?);
    let Some(row) = row else {
        return Ok(Credential {
            status,
            certificate_id: None,
            device: None,
            policy_ids: Vec::new(),
        });
    };
    let device = find_device(conn, row.device_id.as_deref())?;
    let policy_ids = conn
        .prepare_cached(
            "SELECT policy_id FROM policy_attachments WHERE certificate_id = ?1 ORDER BY id",
        )?
        .query_map([&row.id], |r| r.get(0))?
        .collect::<db::Result<Vec<String>>>()?;
    Ok(Credential {
        status,
        certificate_id: Some(row.id),
        device,
        policy_ids,
    })
}

// ------------------------------------------------------------------ fleet view

/// Changes whenever a group, policy or policy attachment is created,
/// updated or deleted: the generation the database's triggers move in the
/// changing transaction (migration `view_generation`). One row, whatever
/// the number of groups and policies.
fn view_stamp(conn: &Connection) -> Result<String, StoreError> {
    let generation: i64 = conn
        .prepare_cached("SELECT generation FROM fleet_view_generation WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    Ok(generation.to_string())
}

fn fleet_view(conn: &Connection, stamp: String) -> Result<FleetView, StoreError> {
    let groups = conn
        .prepare_cached(
            "SELECT id, name, parent_id, query, config, stale_after_secs
               FROM device_groups ORDER BY id",
        )?
        .query_map([], |r| {
            Ok(GroupNode {
                id: r.get(0)?,
                name: r.get(1)?,
                parent_id: r.get(2)?,
                query: r.get(3)?,
                config: json_col(r, 4)?,
                stale_after_secs: r.get::<_, Option<i64>>(5)?.map(|s| s.max(1) as u64),
            })
        })?
        .collect::<db::Result<Vec<_>>>()?;
    let policies = policies::list(conn, None, u32::MAX)?;
    let group_policies = conn
        .prepare_cached(
            "SELECT group_id, policy_id FROM policy_attachments
              WHERE group_id IS NOT NULL ORDER BY id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<db::Result<Vec<_>>>()?;
    Ok(FleetView {
        stamp,
        groups,
        policies,
        group_policies,
    })
}

// ------------------------------------------------------------------ enrollment

struct Candidate {
    id: String,
    group_id: String,
    fields: enrollment::EnrollmentSpec,
    enrolled_count: u64,
}

fn refusal(reason: &'static str, message: impl Into<String>) -> EnrollmentOutcome {
    EnrollmentOutcome::Refused(EnrollmentRefusal {
        reason,
        message: message.into(),
    })
}

fn reject_word(r: &RejectReason) -> &'static str {
    match r {
        RejectReason::Disabled => "disabled",
        RejectReason::CommonNameMismatch { .. } => "common_name_mismatch",
        RejectReason::HardwareNotAllowed { .. } => "hardware_not_allowed",
        RejectReason::LimitReached { .. } => "limit_reached",
        RejectReason::MissingAttribute { .. } => "missing_attribute",
        RejectReason::InvalidName { .. } => "invalid_name",
    }
}

fn enroll(
    tx: &Connection,
    now: DateTime<Utc>,
    claim: &EnrollmentClaim,
) -> Result<EnrollmentOutcome, StoreError> {
    let row = cert_row(tx, &claim.ca_id, &claim.serial)?;
    match status_of(row.as_ref(), crl_reason(tx, &claim.ca_id, &claim.serial)?) {
        CredentialStatus::Active => {}
        CredentialStatus::Inactive => {
            return Ok(refusal(
                "inactive",
                "the certificate is suspended (status inactive)",
            ))
        }
        CredentialStatus::Revoked { reason } => {
            return Ok(refusal(
                "revoked",
                format!("the certificate is revoked ({reason})"),
            ))
        }
    }
    if let Some(row) = &row {
        if let Some(device) = find_device(tx, row.device_id.as_deref())? {
            return Ok(EnrollmentOutcome::Enrolled {
                device: Box::new(device),
                certificate_id: row.id.clone(),
                enrollment_id: row.enrollment_id.clone(),
                created: false,
            });
        }
    }

    let candidates = tx
        .prepare_cached(
            "SELECT id, group_id, name_template, attributes, allowed_hardware, max_devices,
                    enabled, enrolled_count, common_name_pattern
               FROM enrollments WHERE ca_id = ?1 ORDER BY id",
        )?
        .query_map([&claim.ca_id], |r| {
            let max: Option<i64> = r.get(5)?;
            let count: i64 = r.get(7)?;
            Ok(Candidate {
                id: r.get(0)?,
                group_id: r.get(1)?,
                fields: enrollment::EnrollmentSpec {
                    name_template: Some(r.get(2)?),
                    attributes: json_col(r, 3)?,
                    allowed_hardware: json_col(r, 4)?,
                    max_devices: max,
                    enabled: r.get(6)?,
                    common_name_pattern: r.get(8)?,
                },
                enrolled_count: count.max(0) as u64,
            })
        })?
        .collect::<db::Result<Vec<_>>>()?;
    if candidates.is_empty() {
        let ca_name: String = tx
            .prepare_cached("SELECT name FROM certificate_authorities WHERE id = ?1")?
            .query_row([&claim.ca_id], |r| r.get(0))
            .optional()?
            .unwrap_or_else(|| claim.ca_id.clone());
        return Ok(refusal(
            "no_enrollment",
            format!(
                "no enrollment admits certificates of CA {ca_name:?}; create a fleet_enrollment \
                 for it"
            ),
        ));
    }

    let request = EnrollmentRequest {
        common_name: claim.common_name.clone(),
        serial: claim.serial.clone(),
        hardware: claim.hardware.clone(),
        attributes: claim.attributes.clone(),
    };
    // The first refusal from an enabled enrollment says the most; a
    // "disabled" only if every enrollment is.
    let mut first: Option<(&'static str, String)> = None;
    let mut disabled: Option<String> = None;
    // The most specific enrollment first; among equals the oldest (the
    // sort is stable over the id order).
    let mut ordered = Vec::with_capacity(candidates.len());
    for c in &candidates {
        match enrollment::validate(&c.fields) {
            Ok(rules) => ordered.push((c, rules)),
            Err(e) => {
                tracing::warn!(enrollment_id = %c.id, error = %e, "skipping an enrollment with invalid stored rules");
            }
        }
    }
    ordered.sort_by_key(|(_, rules)| std::cmp::Reverse(rules.specificity()));
    for (c, rules) in ordered {
        let (name, attributes) = match rules.decide(&request, c.enrolled_count) {
            EnrollmentDecision::Accept { name, attributes } => (name, attributes),
            EnrollmentDecision::Reject(RejectReason::Disabled) => {
                disabled.get_or_insert_with(|| format!("enrollment {} is disabled", c.id));
                continue;
            }
            EnrollmentDecision::Reject(r) => {
                first.get_or_insert_with(|| (reject_word(&r), format!("enrollment {}: {r}", c.id)));
                continue;
            }
        };
        let taken: Option<String> = tx
            .prepare_cached("SELECT id FROM devices WHERE name = ?1")?
            .query_row([&name], |r| r.get(0))
            .optional()?;
        if let Some(other) = taken {
            first.get_or_insert_with(|| {
                (
                    "name_taken",
                    format!(
                        "enrollment {}: the device name {name:?} is already used by device \
                         {other}",
                        c.id
                    ),
                )
            });
            continue;
        }
        let bumped = tx
            .prepare_cached(
                "UPDATE enrollments SET enrolled_count = enrolled_count + 1
                  WHERE id = ?1 AND (max_devices IS NULL OR enrolled_count < max_devices)",
            )?
            .execute([&c.id])?;
        if bumped == 0 {
            first.get_or_insert_with(|| {
                (
                    "limit_reached",
                    format!("enrollment {}: the device limit is reached", c.id),
                )
            });
            continue;
        }
        return admit(tx, now, claim, c, row.as_ref(), name, attributes);
    }
    Ok(match (first, disabled) {
        (Some((reason, message)), _) => refusal(reason, message),
        (None, Some(message)) => refusal("disabled", message),
        (None, None) => refusal(
            "no_enrollment",
            "no usable enrollment admits this certificate",
        ),
    })
}

/// Creates the device, records and binds the certificate.
fn admit(
    tx: &Connection,
    now: DateTime<Utc>,
    claim: &EnrollmentClaim,
    c: &Candidate,
    existing: Option<&CertRow>,
    name: String,
    attributes: std::collections::BTreeMap<String, String>,
) -> Result<EnrollmentOutcome, StoreError> {
    let actor = Actor(format!("enrollment:{}", c.id));
    let device = devices::create(
        tx,
        &actor,
        now,
        &DeviceSpec {
            name,
            hardware: claim.hardware.clone(),
            attributes,
            group_ids: vec![c.group_id.clone()],
        },
    )?;
    let now_text = time::to_text(now);
    let certificate_id = match existing {
        Some(row) => row.id.clone(),
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let seconds = (claim.not_after - claim.not_before).num_seconds().max(1);
            let validity_days = (seconds + 86_399) / 86_400;
            tx.prepare_cached(
                "INSERT INTO certificates
                     (id, ca_id, device_id, common_name, csr_pem, key_algorithm, validity_days,
                      status, serial, certificate_pem, fingerprint, not_before, not_after,
                      created_at, updated_at, version)
                 VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, 1)",
            )?
            .execute(params![
                id,
                claim.ca_id,
                device.id,
                claim.common_name,
                validity_days,
                CertificateStatus::Active.as_str(),
                claim.serial,
                claim.certificate_pem,
                claim.fingerprint,
                time::to_text(claim.not_before),
                time::to_text(claim.not_after),
                now_text,
            ])?;
            record(
                tx,
                &actor,
                &now_text,
                AuditAction::Create,
                ObjectKind::Certificate,
                &id,
                (None, Some(1)),
            )?;
            id
        }
    };
    tx.prepare_cached(
        "INSERT INTO certificate_bindings (certificate_id, device_id, enrollment_id, enrolled_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (certificate_id) DO UPDATE
            SET device_id = excluded.device_id, enrollment_id = excluded.enrollment_id,
                enrolled_at = excluded.enrolled_at",
    )?
    .execute(params![certificate_id, device.id, c.id, now_text])?;
    Ok(EnrollmentOutcome::Enrolled {
        device: Box::new(device),
        certificate_id,
        enrollment_id: Some(c.id.clone()),
        created: true,
    })
}
