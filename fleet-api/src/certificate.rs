//! Device certificates issued by a fleet CA.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A device certificate as fleetd returns it.
///
/// `private_key_pem` is present **only in the response to the create
/// request, and only when fleetd generated the key** (no `csr_pem`). fleetd
/// does not store it: it cannot be read again, and a lost key means issuing
/// a new certificate. Prefer `csr_pem`, so the key never leaves the device.
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    /// Server-assigned identifier (a UUID).
    #[schema(example = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f")]
    pub id: String,
    /// The issuing CA.
    pub ca_id: String,
    /// The device the certificate was issued to (its id is the subject
    /// common name), or `null` when issued by `common_name`.
    pub device_id: Option<String>,
    /// Subject common name: the device id, or the requested common name.
    #[schema(example = "meter-001")]
    pub common_name: String,
    /// The CSR the certificate was issued from, or `null` when fleetd
    /// generated the key.
    pub csr_pem: Option<String>,
    /// Algorithm of the fleetd-generated key (`ECDSA_P256` or `ED25519`),
    /// or `null` when issued from a CSR.
    pub key_algorithm: Option<String>,
    /// Validity requested at issue, in days.
    #[schema(example = 365)]
    pub validity_days: i64,
    /// `active`, `inactive` (temporarily refused by the device API, not
    /// listed in the CRL; can be re-activated) or `revoked` (terminal;
    /// listed in the CA's CRL).
    #[schema(example = "active")]
    pub status: String,
    /// Set when `status` is `revoked`: `unspecified`, `key_compromise`,
    /// `ca_compromise`, `affiliation_changed`, `superseded`,
    /// `cessation_of_operation`, `certificate_hold` or
    /// `privilege_withdrawn`; otherwise `null`.
    pub revocation_reason: Option<String>,
    /// When the certificate was revoked (RFC 3339, UTC), or `null`.
    pub revoked_at: Option<String>,
    /// Certificate serial number, lower-case hex.
    pub serial: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// SHA-256 of the certificate's DER encoding, lower-case hex.
    pub fingerprint: String,
    /// Start of validity (RFC 3339, UTC).
    pub not_before: String,
    /// End of validity (RFC 3339, UTC).
    pub not_after: String,
    /// Only in the create response, and only when fleetd generated the key:
    /// the certificate's private key (PKCS#8 PEM). Returned once, never
    /// stored; absent from every other response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Time of the last change (RFC 3339, UTC).
    pub updated_at: String,
    /// Optimistic-concurrency version: 1 on creation, +1 on every update.
    pub version: i64,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("id", &self.id)
            .field("ca_id", &self.ca_id)
            .field("device_id", &self.device_id)
            .field("common_name", &self.common_name)
            .field("key_algorithm", &self.key_algorithm)
            .field("status", &self.status)
            .field("revocation_reason", &self.revocation_reason)
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint)
            .field("not_after", &self.not_after)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/certificates`: issues a certificate.
///
/// Exactly one of `csr_pem` and `key_algorithm` picks where the key comes
/// from (neither means a fleetd-generated `ECDSA_P256` key), and exactly
/// one of `device_id` and `common_name` picks the subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateCreate {
    /// The issuing CA's id.
    pub ca_id: String,
    /// A PEM certificate signing request (recommended: the key stays on the
    /// device). Its signature is verified; only its public key is used.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// Have fleetd generate the key: `ECDSA_P256` or `ED25519`. The key is
    /// returned once in the create response.
    #[serde(default)]
    #[schema(pattern = "^(ECDSA_P256|ED25519)$")]
    pub key_algorithm: Option<String>,
    /// An existing device's id; becomes the subject common name.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Subject common name (1–64 characters) when not issuing to a device.
    #[serde(default)]
    pub common_name: Option<String>,
    /// 1–36500 days, default 365; may not outlive the CA.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 36500)]
    pub validity_days: Option<i64>,
    /// `active` (default) or `inactive`.
    #[serde(default)]
    #[schema(pattern = "^(active|inactive)$")]
    pub status: Option<String>,
}

/// Body of `PUT /v1/certificates/{id}`: only the status changes. `revoked`
/// is terminal: a revoked certificate can never become active again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpdate {
    /// `active`, `inactive` or `revoked`.
    #[schema(pattern = "^(active|inactive|revoked)$")]
    pub status: String,
    /// Only with `status = "revoked"`; defaults to `unspecified`.
    #[serde(default)]
    pub revocation_reason: Option<String>,
    /// The version this update is based on; a stale one gets 409.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(key: Option<&str>) -> Certificate {
        Certificate {
            id: "c".into(),
            ca_id: "ca".into(),
            device_id: None,
            common_name: "x".into(),
            csr_pem: None,
            key_algorithm: Some("ECDSA_P256".into()),
            validity_days: 365,
            status: "active".into(),
            revocation_reason: None,
            revoked_at: None,
            serial: "01".into(),
            certificate_pem: "pem".into(),
            fingerprint: "ff".into(),
            not_before: "t".into(),
            not_after: "t".into(),
            private_key_pem: key.map(str::to_owned),
            created_at: "t".into(),
            updated_at: "t".into(),
            version: 1,
        }
    }

    #[test]
    fn private_key_is_omitted_unless_present() {
        let v = serde_json::to_value(cert(None)).unwrap();
        assert!(v.get("private_key_pem").is_none());
        let v = serde_json::to_value(cert(Some("KEY"))).unwrap();
        assert_eq!(v["private_key_pem"], "KEY");
        let back: Certificate = serde_json::from_value(v).unwrap();
        assert_eq!(back.private_key_pem.as_deref(), Some("KEY"));
        let debug = format!("{back:?}");
        assert!(!debug.contains("KEY\""), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn update_requires_status_and_version() {
        let err = serde_json::from_str::<CertificateUpdate>(r#"{"version":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `status`"), "{err}");
        let err = serde_json::from_str::<CertificateUpdate>(
            r#"{"status":"revoked","validity_days":3,"version":1}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `validity_days`"),
            "{err}"
        );
    }
}
