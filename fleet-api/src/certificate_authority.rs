//! Certificate authorities: the roots (or intermediates) that sign device
//! certificates and that device mTLS is verified against.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A certificate authority as fleetd returns it.
///
/// The CA's private key is never part of any response: a generated key
/// never leaves fleetd, and an imported one is accepted on creation only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateAuthority {
    /// Server-assigned identifier (a UUID).
    #[schema(example = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f")]
    pub id: String,
    /// Name, unique among CAs.
    #[schema(example = "fleet-root")]
    pub name: String,
    /// Free text; empty when not set.
    pub description: String,
    /// Subject common name of the CA certificate (for an imported CA, read
    /// from its certificate; empty if it has none).
    #[schema(example = "Fleet Root CA")]
    pub common_name: String,
    /// Subject organization, or `null` when the certificate has none.
    pub organization: Option<String>,
    /// Algorithm of the CA's key: `ECDSA_P256` or `ED25519` for generated
    /// CAs; an imported CA may also report `ECDSA_P384` or `RSA`.
    #[schema(example = "ECDSA_P256")]
    pub key_algorithm: String,
    /// Validity period in whole days (for an imported CA, computed from its
    /// certificate's `not_before`/`not_after`).
    #[schema(example = 3650)]
    pub validity_days: i64,
    /// `true` when the CA was imported (`certificate_pem` +
    /// `private_key_pem` on creation), `false` when fleetd generated it.
    pub imported: bool,
    /// The CA certificate, PEM.
    pub certificate_pem: String,
    /// SHA-256 of the certificate's DER encoding, lower-case hex.
    #[schema(example = "3f1c…")]
    pub fingerprint: String,
    /// Certificate serial number, lower-case hex.
    pub serial: String,
    /// Start of validity (RFC 3339, UTC).
    pub not_before: String,
    /// End of validity (RFC 3339, UTC).
    pub not_after: String,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Time of the last change (RFC 3339, UTC).
    pub updated_at: String,
    /// Optimistic-concurrency version: 1 on creation, +1 on every update.
    pub version: i64,
}

/// Body of `POST /v1/certificate-authorities`.
///
/// Either **generated** (leave `certificate_pem`/`private_key_pem` out;
/// `common_name`, `organization`, `key_algorithm`, `validity_days` are
/// optional) or **imported** (`certificate_pem` and `private_key_pem`
/// together; then `common_name`, `organization`, `key_algorithm` and
/// `validity_days` must be left out, they come from the certificate).
///
/// `Debug` never prints `private_key_pem`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthorityCreate {
    /// 1–128 characters: letters, digits, `-`, `_`, `.`; starting with a
    /// letter or digit. Unique among CAs.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// At most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    /// Generated CAs only: subject common name, at most 64 characters.
    /// Defaults to `name`.
    #[serde(default)]
    pub common_name: Option<String>,
    /// Generated CAs only: subject organization, at most 64 characters.
    #[serde(default)]
    pub organization: Option<String>,
    /// Generated CAs only: `ECDSA_P256` (default) or `ED25519`.
    #[serde(default)]
    #[schema(pattern = "^(ECDSA_P256|ED25519)$")]
    pub key_algorithm: Option<String>,
    /// Generated CAs only: 1–36500 days, default 3650.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 36500)]
    pub validity_days: Option<i64>,
    /// Imported CAs only: the CA certificate, PEM. Must be a CA allowed to
    /// sign certificates (basicConstraints CA:TRUE, keyCertSign) and valid
    /// now.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// Imported CAs only: the CA's unencrypted PKCS#8 private key, PEM.
    /// Write-only: stored encrypted, never returned.
    #[serde(default)]
    pub private_key_pem: Option<String>,
}

impl std::fmt::Debug for CertificateAuthorityCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthorityCreate")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("common_name", &self.common_name)
            .field("organization", &self.organization)
            .field("key_algorithm", &self.key_algorithm)
            .field("validity_days", &self.validity_days)
            .field("certificate_pem", &self.certificate_pem)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Body of `PUT /v1/certificate-authorities/{id}`: only the name and the
/// description can change; everything else requires a new CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthorityUpdate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    /// The version this update is based on; a stale one gets 409.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults_and_rejects_unknown_fields() {
        let c: CertificateAuthorityCreate = serde_json::from_str(r#"{"name":"root"}"#).unwrap();
        assert_eq!(c.name, "root");
        assert_eq!(c.private_key_pem, None);
        let err = serde_json::from_str::<CertificateAuthorityCreate>(
            r#"{"name":"root","key_size":4096}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `key_size`"),
            "{err}"
        );
    }

    #[test]
    fn debug_redacts_the_private_key() {
        let c = CertificateAuthorityCreate {
            name: "root".into(),
            private_key_pem: Some("-----BEGIN PRIVATE KEY-----\nSECRET".into()),
            ..Default::default()
        };
        let debug = format!("{c:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains("SECRET"), "{debug}");
    }

    #[test]
    fn update_accepts_only_name_and_description() {
        let err = serde_json::from_str::<CertificateAuthorityUpdate>(
            r#"{"name":"a","validity_days":3,"version":1}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `validity_days`"),
            "{err}"
        );
    }
}
