//! Certificate authorities, device certificates and enrollments: the
//! [`PkiStore`] part of the store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::pki_model::{
    CaRecord, CaSigner, CertificateFilter, CertificateRecord, EnrollmentFields, EnrollmentRecord,
    NewCa, NewCertificate,
};
use super::{Actor, StoreError};
use crate::domain::pki::{CertificateStatus, RevocationReason, RevokedSerial};

/// Persistence for CAs (with their private keys, sealed with the master
/// key and never returned by a read other than [`PkiStore::get_ca_signer`]),
/// certificates, CRL entries and enrollment rules. Same conventions as
/// [`super::GroupStore`]: one transaction per write with its audit row,
/// expected versions on update and delete, keyset pagination by id.
///
/// References (`ca_id`, `device_id`, `group_id`) are checked inside the
/// write transaction and reported as [`StoreError::Invalid`] naming the
/// field; objects still in use refuse deletion with
/// [`StoreError::Conflict`].
#[async_trait]
pub trait PkiStore: Send + Sync + 'static {
    // ---------------------------------------------------------- CAs

    /// Creates a CA with version 1; the name must be free.
    async fn create_certificate_authority(
        &self,
        actor: &Actor,
        ca: NewCa,
    ) -> Result<CaRecord, StoreError>;

    async fn get_certificate_authority(&self, id: &str) -> Result<CaRecord, StoreError>;

    /// The CA with its sealed private key, for signing.
    async fn get_ca_signer(&self, id: &str) -> Result<CaSigner, StoreError>;

    async fn list_certificate_authorities(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CaRecord>, StoreError>;

    /// Renames or re-describes a CA; nothing else about a CA can change.
    async fn update_certificate_authority(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        name: String,
        description: String,
    ) -> Result<CaRecord, StoreError>;

    /// Deletes a CA that has no active certificates, no enrollments and
    /// no certificate with a policy attachment. Its inactive and revoked
    /// certificates and its CRL go with it (each deletion audited).
    async fn delete_certificate_authority(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The distinct ids of the master keys that sealed the stored CA keys
    /// (see [`crate::keystore::sealed_key_id`]); used at startup to refuse
    /// a master key that cannot open them.
    async fn ca_master_key_ids(&self) -> Result<Vec<String>, StoreError>;

    // ---------------------------------------------------------- certificates

    /// Records an issued certificate with version 1. The CA must exist
    /// (else an error on `ca_id`), and so must the device (`device_id`).
    async fn create_certificate(
        &self,
        actor: &Actor,
        cert: NewCertificate,
    ) -> Result<CertificateRecord, StoreError>;

    async fn get_certificate(&self, id: &str) -> Result<CertificateRecord, StoreError>;

    async fn list_certificates(
        &self,
        filter: CertificateFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Changes a certificate's status following
    /// [`crate::domain::pki::check_status_transition`] (a refused change is
    /// a [`StoreError::Conflict`] on `status` or `revocation_reason`).
    /// Revoking adds the serial to the CA's CRL in the same transaction.
    /// Setting the status it already has is a no-op that keeps the version.
    async fn update_certificate_status(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        status: CertificateStatus,
        revocation_reason: Option<RevocationReason>,
    ) -> Result<CertificateRecord, StoreError>;

    /// Deletes a certificate without policy attachments. A certificate
    /// that was not revoked is added to its CA's CRL (reason
    /// `cessation_of_operation`): forgetting a certificate must not make
    /// it trustworthy again anywhere the CRL is checked.
    async fn delete_certificate(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The CA's CRL entries for certificates not yet expired at `now`,
    /// ordered by revocation time.
    async fn crl_entries(
        &self,
        ca_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<RevokedSerial>, StoreError>;

    // ---------------------------------------------------------- enrollments

    /// Creates an enrollment; the name must be free and the CA and group
    /// must exist.
    async fn create_enrollment(
        &self,
        actor: &Actor,
        fields: EnrollmentFields,
    ) -> Result<EnrollmentRecord, StoreError>;

    async fn get_enrollment(&self, id: &str) -> Result<EnrollmentRecord, StoreError>;

    async fn list_enrollments(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EnrollmentRecord>, StoreError>;

    /// Full replacement of the mutable fields; `enrolled_count` is kept.
    async fn update_enrollment(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        fields: EnrollmentFields,
    ) -> Result<EnrollmentRecord, StoreError>;

    async fn delete_enrollment(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;
}
