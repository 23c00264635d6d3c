//! The PKI records a [`PkiStore`](super::PkiStore) reads and writes:
//! certificate authorities, device certificates, CRL entries and
//! enrollments.
//!
//! A CA's private key only ever crosses the store boundary sealed (see
//! [`crate::keystore`]): [`NewCa::sealed_key`] in, [`CaSigner::sealed_key`]
//! out. [`CaRecord`], the shape every read returns, has no key at all.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::pki::{CertificateStatus, RevocationReason};

/// A stored certificate authority, without its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub common_name: String,
    pub organization: Option<String>,
    pub key_algorithm: String,
    pub validity_days: i64,
    pub imported: bool,
    pub certificate_pem: String,
    pub fingerprint: String,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A CA to create. Everything but the name and description comes from
/// the certificate the domain generated or checked.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCa {
    pub name: String,
    pub description: String,
    pub common_name: String,
    pub organization: Option<String>,
    pub key_algorithm: String,
    pub validity_days: i64,
    pub imported: bool,
    pub certificate_pem: String,
    pub fingerprint: String,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// The private key sealed with the master key
    /// ([`crate::keystore::MasterKey::seal`]), context = `fingerprint`.
    pub sealed_key: Vec<u8>,
}

impl fmt::Debug for NewCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCa")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A CA with its sealed key, for signing. Only handlers that sign ask
/// for it.
#[derive(Clone, PartialEq, Eq)]
pub struct CaSigner {
    pub ca: CaRecord,
    pub sealed_key: Vec<u8>,
}

impl fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSigner")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// A stored device certificate. There is no private key: a key fleetd
/// generates is handed out once and never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub id: String,
    pub ca_id: String,
    pub device_id: Option<String>,
    pub common_name: String,
    pub csr_pem: Option<String>,
    pub key_algorithm: Option<String>,
    pub validity_days: i64,
    pub status: CertificateStatus,
    pub revocation_reason: Option<RevocationReason>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub serial: String,
    pub certificate_pem: String,
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// An issued certificate to record. `status` is `Active` or `Inactive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    pub ca_id: String,
    pub device_id: Option<String>,
    pub common_name: String,
    pub csr_pem: Option<String>,
    pub key_algorithm: Option<String>,
    pub validity_days: i64,
    pub status: CertificateStatus,
    pub serial: String,
    pub certificate_pem: String,
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// Which certificates a list returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFilter {
    pub ca_id: Option<String>,
    pub device_id: Option<String>,
}

/// A stored enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    pub id: String,
    pub name: String,
    pub ca_id: String,
    pub group_id: String,
    pub name_template: String,
    pub attributes: BTreeMap<String, String>,
    pub allowed_hardware: Vec<String>,
    pub max_devices: Option<u64>,
    pub enabled: bool,
    pub common_name_pattern: Option<String>,
    pub enrolled_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The caller-controlled fields of an enrollment, already validated by
/// [`crate::domain::enrollment::validate`], for create and full update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentFields {
    pub name: String,
    pub ca_id: String,
    pub group_id: String,
    pub name_template: String,
    pub attributes: BTreeMap<String, String>,
    pub allowed_hardware: Vec<String>,
    pub max_devices: Option<u64>,
    pub enabled: bool,
    pub common_name_pattern: Option<String>,
}
