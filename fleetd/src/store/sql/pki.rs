//! [`PkiStore`] on either backend: CAs in `certificate_authorities`, certificates
//! in `certificates` (with `crl_entries` feeding the CRL), enrollments in
//! `enrollments`. The queries live in one submodule per table.

#[path = "pki/cas.rs"]
mod cas;
#[path = "pki/certificates.rs"]
mod certificates;
#[path = "pki/enrollments.rs"]
mod enrollments;

use super::db::{self, Connection, OptionalExtension};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{write, Backend};
use crate::domain::pki::{CertificateStatus, RevocationReason, RevokedSerial};
use crate::domain::FieldError;
use crate::store::{
    Actor, CaRecord, CaSigner, CertificateFilter, CertificateRecord, EnrollmentFields,
    EnrollmentRecord, NewCa, NewCertificate, ObjectKind, PkiStore, StoreError, MAX_PAGE_SIZE,
};

#[async_trait]
impl PkiStore for Backend {
    async fn create_certificate_authority(
        &self,
        actor: &Actor,
        ca: NewCa,
    ) -> Result<CaRecord, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| cas::create(tx, &actor, now, &ca)))
            .await
    }

    async fn get_certificate_authority(&self, id: &str) -> Result<CaRecord, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| cas::get(conn, &id)).await
    }

    async fn get_ca_signer(&self, id: &str) -> Result<CaSigner, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| cas::signer(conn, &id)).await
    }

    async fn list_certificate_authorities(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CaRecord>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| cas::list(conn, after.as_deref(), limit))
            .await
    }

    async fn update_certificate_authority(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        name: String,
        description: String,
    ) -> Result<CaRecord, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                cas::update(tx, &actor, now, &id, expected_version, &name, &description)
            })
        })
        .await
    }

    async fn delete_certificate_authority(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                cas::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn ca_master_key_ids(&self) -> Result<Vec<String>, StoreError> {
        self.call(cas::master_key_ids).await
    }

    async fn create_certificate(
        &self,
        actor: &Actor,
        cert: NewCertificate,
    ) -> Result<CertificateRecord, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| write(conn, |tx, now| certificates::create(tx, &actor, now, &cert)))
            .await
    }

    async fn get_certificate(&self, id: &str) -> Result<CertificateRecord, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| certificates::get(conn, &id))
            .await
    }

    async fn list_certificates(
        &self,
        filter: CertificateFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| certificates::list(conn, &filter, after.as_deref(), limit))
            .await
    }

    async fn update_certificate_status(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        status: CertificateStatus,
        revocation_reason: Option<RevocationReason>,
    ) -> Result<CertificateRecord, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                certificates::update_status(
                    tx,
                    &actor,
                    now,
                    &id,
                    expected_version,
                    status,
                    revocation_reason,
                )
            })
        })
        .await
    }

    async fn delete_certificate(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                certificates::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn crl_entries(
        &self,
        ca_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<RevokedSerial>, StoreError> {
        let ca_id = ca_id.to_owned();
        self.call_read(move |conn| certificates::crl_entries(conn, &ca_id, now))
            .await
    }

    async fn create_enrollment(
        &self,
        actor: &Actor,
        fields: EnrollmentFields,
    ) -> Result<EnrollmentRecord, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| {
            write(conn, |tx, now| {
                enrollments::create(tx, &actor, now, &fields)
            })
        })
        .await
    }

    async fn get_enrollment(&self, id: &str) -> Result<EnrollmentRecord, StoreError> {
        let id = id.to_owned();
        self.call_read(move |conn| enrollments::get(conn, &id))
            .await
    }

    async fn list_enrollments(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EnrollmentRecord>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_PAGE_SIZE + 1);
        self.call_read(move |conn| enrollments::list(conn, after.as_deref(), limit))
            .await
    }

    async fn update_enrollment(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        fields: EnrollmentFields,
    ) -> Result<EnrollmentRecord, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                enrollments::update(tx, &actor, now, &id, expected_version, &fields)
            })
        })
        .await
    }

    async fn delete_enrollment(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                enrollments::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }
}

// ---------------------------------------------------------------- helpers

fn not_found(kind: ObjectKind, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

fn check_version(
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

/// Whether a row with this id exists in `table` (a fixed table name).
fn exists(conn: &Connection, table: &str, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The referenced CA must exist: a missing one is an error on `field`.
fn check_ca_ref(conn: &Connection, field: &str, ca_id: &str) -> Result<(), StoreError> {
    if exists(conn, "certificate_authorities", ca_id)? {
        return Ok(());
    }
    Err(FieldError::new(field, format!("certificate authority {ca_id:?} not found")).into())
}

fn is_unique_violation(err: &db::Error) -> bool {
    db::is_unique_violation(err)
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

fn from_json<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> db::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| db::Error::FromSqlConversionFailure(column, db::types::Type::Text, e.into()))
}

fn bad_value(column: usize, what: &str, value: &str) -> db::Error {
    db::Error::FromSqlConversionFailure(
        column,
        db::types::Type::Text,
        format!("unexpected {what} {value:?} in the database").into(),
    )
}
