//! Certificate authority and device certificate operations.
//!
//! fleetd runs a small private PKI per fleet: a CA (generated inside fleetd
//! so its key never leaves it, or imported) signs device certificates, and
//! the device API authenticates devices by verifying their client
//! certificate against that CA.
//!
//! Conventions:
//! - Keys are ECDSA P-256 by default (small, fast, supported by every TLS
//!   stack on constrained devices) or Ed25519. Imported keys may be any
//!   algorithm `rcgen`/`ring` can sign with (ECDSA P-256/P-384, Ed25519,
//!   RSA), in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
//! - Device certificates are issued from a CSR whenever possible, so the
//!   device key never exists outside the device; only the CSR's public key
//!   is used — its subject and requested extensions are ignored, because
//!   what a device may claim is decided by the fleet, not by the device.
//! - Device certificates carry `CN` = device id or the requested common
//!   name, `CA:FALSE`, `digitalSignature` and the `clientAuth` EKU.
//! - Serial numbers are 16 random bytes supplied by the caller (see
//!   [`Serial::random`]), normalised to a positive 16-byte integer.
//! - `not_before` is backdated by [`CLOCK_SKEW_ALLOWANCE_SECS`] so that a
//!   replica whose clock is slightly behind does not reject a brand-new
//!   certificate; `not_after` is exactly `now + validity_days`.
//! - Fingerprints are lower-case hex SHA-256 of the DER encoding; serials
//!   are lower-case hex without separators.
//!
//! Time and serial randomness are inputs. Key *generation* is the one
//! exception: it uses the operating system's CSPRNG through `ring`, which
//! offers no way to inject a generator.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SerialNumber, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::{indexed, FieldError};

/// `not_before` is set this many seconds before "now".
pub const CLOCK_SKEW_ALLOWANCE_SECS: i64 = 300;
/// Longest validity accepted for any certificate (100 years).
pub const MAX_VALIDITY_DAYS: i64 = 36_500;
/// X.520 upper bound for a common name.
pub const MAX_COMMON_NAME_LEN: usize = 64;

/// Key algorithm of a generated key (`key_algorithm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    Ed25519,
}

impl KeyAlgorithm {
    /// Accepted spellings, as in the API and the provider schema.
    pub const NAMES: [&'static str; 2] = ["ECDSA_P256", "ED25519"];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA_P256",
            KeyAlgorithm::Ed25519 => "ED25519",
        }
    }

    /// Parses `value`, naming `field` in the error.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        value.parse().map_err(|_: ()| {
            FieldError::new(
                field,
                format!(
                    "unknown key algorithm {value:?} (use {})",
                    Self::NAMES.join(" or ")
                ),
            )
        })
    }

    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl FromStr for KeyAlgorithm {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "ECDSA_P256" => Ok(KeyAlgorithm::EcdsaP256),
            "ED25519" => Ok(KeyAlgorithm::Ed25519),
            _ => Err(()),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a PKI operation failed: bad input (naming the field) or a failure
/// inside the crypto library, which is a bug or an unsupported edge case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("certificate operation failed: {0}")]
    Internal(String),
}

impl PkiError {
    /// The offending field, for input errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            PkiError::Invalid(e) => Some(&e.field),
            PkiError::Internal(_) => None,
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Internal(e.to_string())
    }
}

fn invalid(field: &str, message: impl Into<String>) -> PkiError {
    PkiError::Invalid(FieldError::new(field, message))
}

/// A certificate serial number: 16 bytes, normalised so that the DER
/// integer is positive and exactly 16 bytes long (top bit clear, next bit
/// set), which keeps 126 bits of randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Serial([u8; 16]);

impl Serial {
    pub fn from_bytes(mut bytes: [u8; 16]) -> Serial {
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Serial(bytes)
    }

    /// A fresh serial from `rng`; pass a CSPRNG such as `rand::rng()`.
    pub fn random(rng: &mut impl rand::RngCore) -> Serial {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Serial::from_bytes(bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// What fleetd records about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER encoding, lower-case hex.
    pub fingerprint: String,
    /// Serial number, lower-case hex, no separators or sign byte.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Subject DN, e.g. `CN=meter-001`.
    pub subject: String,
    pub common_name: Option<String>,
    /// Subject organization (`O`), if any.
    pub organization: Option<String>,
    pub is_ca: bool,
}

/// A CA certificate with its private key. The key PEM is for fleetd's
/// store only: the API must never return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaMaterial {
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub info: CertInfo,
}

/// Parameters of a CA generated by fleetd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCa<'a> {
    pub common_name: &'a str,
    pub organization: Option<&'a str>,
    pub validity_days: i64,
    pub key_algorithm: KeyAlgorithm,
}

/// A loaded CA, able to sign. Build with [`CertificateAuthority::from_pem`].
pub struct CertificateAuthority {
    key: KeyPair,
    cert_der: Vec<u8>,
    info: CertInfo,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("CertificateAuthority")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The subject of a device certificate. The variant decides which request
/// field an error is reported on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    DeviceId(&'a str),
    CommonName(&'a str),
}

/// Where a device certificate's key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKey<'a> {
    /// A PEM CSR (`csr_pem`); the device keeps its key.
    Csr(&'a str),
    /// fleetd generates the key and returns it once.
    Generate(KeyAlgorithm),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate<'a> {
    pub subject: Subject<'a>,
    pub validity_days: i64,
    pub key: SubjectKey<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub certificate_pem: String,
    /// Only for [`SubjectKey::Generate`]; returned once, never stored.
    pub private_key_pem: Option<String>,
    pub info: CertInfo,
}

// ---------------------------------------------------------------- helpers

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| PkiError::Internal(format!("time out of range: {e}")))
}

fn from_asn1(t: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn check_validity_days(field: &str, days: i64) -> Result<i64, PkiError> {
    if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
        return Err(invalid(
            field,
            format!("must be between 1 and {MAX_VALIDITY_DAYS} days, got {days}"),
        ));
    }
    Ok(days)
}

fn check_common_name(field: &str, cn: &str) -> Result<(), PkiError> {
    if cn.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    let len = cn.chars().count();
    if len > MAX_COMMON_NAME_LEN {
        return Err(invalid(
            field,
            format!("must be at most {MAX_COMMON_NAME_LEN} characters long to fit a certificate common name, got {len}"),
        ));
    }
    if cn.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Decodes the first PEM block of `pem`, which must carry one of `labels`.
fn pem_block(field: &str, pem: &str, labels: &[&str]) -> Result<Vec<u8>, PkiError> {
    let want = labels[0];
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| {
        invalid(
            field,
            format!("not a PEM document: expected a \"-----BEGIN {want}-----\" block"),
        )
    })?;
    if !labels.contains(&block.label.as_str()) {
        return Err(invalid(
            field,
            format!("expected a {want} PEM block, got {}", block.label),
        ));
    }
    Ok(block.contents)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn parse_cert<'a>(field: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(invalid(
            field,
            "malformed certificate: trailing data after the certificate",
        )),
        Err(e) => Err(invalid(field, format!("malformed certificate: {e}"))),
    }
}

fn cert_info(der: &[u8], cert: &X509Certificate<'_>) -> CertInfo {
    let raw = cert.raw_serial();
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    CertInfo {
        fingerprint: fingerprint(der),
        serial: hex::encode(&raw[first..]),
        not_before: from_asn1(cert.validity().not_before),
        not_after: from_asn1(cert.validity().not_after),
        subject: cert.subject().to_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        organization: cert
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .map(str::to_string),
        is_ca: cert.is_ca(),
    }
}

/// SHA-256 of `der`, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Decodes a PEM certificate (`field` names it in errors) to DER.
pub fn certificate_der(field: &str, certificate_pem: &str) -> Result<Vec<u8>, PkiError> {
    let der = pem_block(field, certificate_pem, &["CERTIFICATE"])?;
    parse_cert(field, &der)?;
    Ok(der)
}

/// Fingerprint, serial, validity and subject of a PEM certificate.
pub fn inspect_certificate(field: &str, certificate_pem: &str) -> Result<CertInfo, PkiError> {
    let der = pem_block(field, certificate_pem, &["CERTIFICATE"])?;
    let cert = parse_cert(field, &der)?;
    Ok(cert_info(&der, &cert))
}

// ---------------------------------------------------------------- CAs

/// Generates a self-signed CA valid from `now` for `validity_days`.
///
/// The CA may only sign end-entity certificates (`pathlen:0`) and CRLs.
pub fn generate_ca(
    req: &NewCa<'_>,
    serial: Serial,
    now: DateTime<Utc>,
) -> Result<CaMaterial, PkiError> {
    check_common_name("common_name", req.common_name)?;
    if let Some(org) = req.organization {
        check_common_name("organization", org)?;
    }
    let days = check_validity_days("validity_days", req.validity_days)?;
    let key = KeyPair::generate_for(req.key_algorithm.rcgen())?;

    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.common_name);
    if let Some(org) = req.organization {
        dn.push(DnType::OrganizationName, org);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&serial.0));
    params.not_before = to_offset(now - Duration::seconds(CLOCK_SKEW_ALLOWANCE_SECS))?;
    params.not_after = to_offset(now + Duration::days(days))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key)?;
    let der = cert.der().to_vec();
    let parsed = parse_cert("certificate_pem", &der)?;
    Ok(CaMaterial {
        certificate_pem: cert.pem(),
        private_key_pem: key.serialize_pem(),
        info: cert_info(&der, &parsed),
    })
}

/// Imports an existing CA (`certificate_pem` + `private_key_pem`): the
/// certificate must be a CA allowed to sign certificates, valid at `now`,
/// and the key must be its key. Intermediate CAs are fine — the
/// certificate does not have to be self-signed.
pub fn import_ca(
    certificate_pem: &str,
    private_key_pem: &str,
    now: DateTime<Utc>,
) -> Result<CaMaterial, PkiError> {
    let ca = CertificateAuthority::from_pem(certificate_pem, private_key_pem)?;
    let info = ca.info.clone();
    if now < info.not_before {
        return Err(invalid(
            "certificate_pem",
            format!(
                "the CA certificate is not valid before {}",
                info.not_before.to_rfc3339()
            ),
        ));
    }
    if now >= info.not_after {
        return Err(invalid(
            "certificate_pem",
            format!(
                "the CA certificate expired at {}",
                info.not_after.to_rfc3339()
            ),
        ));
    }
    Ok(CaMaterial {
        certificate_pem: certificate_pem.trim().to_string() + "\n",
        private_key_pem: ca.key.serialize_pem(),
        info,
    })
}

impl CertificateAuthority {
    /// Loads a CA for signing, checking that the certificate is a CA that
    /// may sign certificates and that the key matches it. Validity in time
    /// is checked per operation, against that operation's `now`.
    pub fn from_pem(certificate_pem: &str, private_key_pem: &str) -> Result<Self, PkiError> {
        let der = pem_block("certificate_pem", certificate_pem, &["CERTIFICATE"])?;
        let cert = parse_cert("certificate_pem", &der)?;
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            Ok(_) => {
                return Err(invalid(
                    "certificate_pem",
                    "not a CA certificate: basicConstraints CA:TRUE is missing",
                ))
            }
            Err(e) => {
                return Err(invalid(
                    "certificate_pem",
                    format!("malformed basicConstraints: {e}"),
                ))
            }
        }
        if let Ok(Some(ku)) = cert.key_usage() {
            if !ku.value.key_cert_sign() {
                return Err(invalid(
                    "certificate_pem",
                    "the CA certificate's key usage does not allow signing certificates (keyCertSign)",
                ));
            }
        }
        if private_key_pem.contains("ENCRYPTED PRIVATE KEY") {
            return Err(invalid(
                "private_key_pem",
                "encrypted private keys are not supported: provide an unencrypted PKCS#8 key",
            ));
        }
        pem_block(
            "private_key_pem",
            private_key_pem,
            &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"],
        )?;
        let key = KeyPair::from_pem(private_key_pem).map_err(|_| {
            invalid(
                "private_key_pem",
                "unsupported or malformed private key: expected an unencrypted PKCS#8 key (\"-----BEGIN PRIVATE KEY-----\"); convert with `openssl pkcs8 -topk8 -nocrypt`",
            )
        })?;
        if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(invalid(
                "private_key_pem",
                "the private key does not match the certificate's public key",
            ));
        }
        let info = cert_info(&der, &cert);
        Ok(CertificateAuthority {
            key,
            cert_der: der,
            info,
        })
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn certificate_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA key's algorithm as the API reports it: `ECDSA_P256`,
    /// `ED25519` (the two fleetd generates), or for imported keys
    /// `ECDSA_P384` or `RSA`.
    pub fn key_algorithm(&self) -> &'static str {
        let alg = self.key.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256.as_str()
        } else if alg == &rcgen::PKCS_ED25519 {
            KeyAlgorithm::Ed25519.as_str()
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            "ECDSA_P384"
        } else {
            "RSA"
        }
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_der(
            &self.cert_der.as_slice().into(),
            &self.key,
        )?)
    }

    fn check_valid_at(&self, now: DateTime<Utc>) -> Result<(), PkiError> {
        if now < self.info.not_before || now >= self.info.not_after {
            return Err(invalid(
                "ca_id",
                format!(
                    "the CA certificate is not valid at {} (valid from {} until {})",
                    now.to_rfc3339(),
                    self.info.not_before.to_rfc3339(),
                    self.info.not_after.to_rfc3339()
                ),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- device certificates

/// Reads the public key out of a CSR after checking the CSR's signature
/// (proof that the requester holds the private key).
fn csr_public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, PkiError> {
    let der = pem_block(
        "csr_pem",
        csr_pem,
        &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
    )?;
    let (_, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        invalid(
            "csr_pem",
            format!("malformed certificate signing request: {e}"),
        )
    })?;
    csr.verify_signature().map_err(|_| {
        invalid(
            "csr_pem",
            "the CSR's signature does not verify: it was altered or not signed by the key it contains",
        )
    })?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw).map_err(|_| {
        invalid(
            "csr_pem",
            "unsupported key type in the CSR (supported: ECDSA P-256/P-384, Ed25519, RSA)",
        )
    })
}

/// Issues a device certificate signed by `ca`.
pub fn issue_certificate(
    ca: &CertificateAuthority,
    req: &NewCertificate<'_>,
    serial: Serial,
    now: DateTime<Utc>,
) -> Result<IssuedCertificate, PkiError> {
    let (cn_field, cn) = match req.subject {
        Subject::DeviceId(id) => ("device_id", id),
        Subject::CommonName(cn) => ("common_name", cn),
    };
    check_common_name(cn_field, cn)?;
    let days = check_validity_days("validity_days", req.validity_days)?;
    ca.check_valid_at(now)?;
    let not_after = now + Duration::days(days);
    if not_after > ca.info.not_after {
        let left = (ca.info.not_after - now).num_days();
        return Err(invalid(
            "validity_days",
            format!(
                "a {days}-day certificate would outlive its CA, which expires at {} ({left} days from now)",
                ca.info.not_after.to_rfc3339()
            ),
        ));
    }

    let (public_key, generated) = match req.key {
        SubjectKey::Csr(pem) => (csr_public_key(pem)?, None),
        SubjectKey::Generate(alg) => {
            let key = KeyPair::generate_for(alg.rcgen())?;
            let spki = SubjectPublicKeyInfo::from_der(&key.subject_public_key_info())?;
            (spki, Some(key))
        }
    };

    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&serial.0));
    params.not_before = to_offset(now - Duration::seconds(CLOCK_SKEW_ALLOWANCE_SECS))?;
    params.not_after = to_offset(not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&public_key, &ca.issuer()?)?;
    let der = cert.der().to_vec();

    // rcgen re-encodes the CA's subject as the issuer name; make sure a
    // verifier will accept the result before handing it out.
    let info = verify_chain(&der, &ca.cert_der, now)
        .map_err(|e| PkiError::Internal(format!("issued certificate does not verify: {e}")))?;
    Ok(IssuedCertificate {
        certificate_pem: cert.pem(),
        private_key_pem: generated.map(|k| k.serialize_pem()),
        info,
    })
}

/// Why a certificate does not chain to a CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error("malformed CA certificate: {0}")]
    MalformedCa(String),
    #[error("the issuing certificate is not a CA")]
    NotACa,
    #[error("the certificate was issued by {issuer:?}, not by this CA ({ca:?})")]
    IssuerMismatch { issuer: String, ca: String },
    #[error("the certificate's signature does not verify with the CA's key")]
    BadSignature,
    #[error("the certificate is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
    #[error("the certificate expired at {0}")]
    Expired(DateTime<Utc>),
    #[error(
        "the CA certificate is not valid at this time (valid from {not_before} until {not_after})"
    )]
    CaNotValid {
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    },
}

/// Checks that `cert_der` was signed by `ca_cert_der`'s key, names it as
/// issuer, and that both are valid at `now`. Returns the certificate's info.
///
/// This is the domain-level check (enrollment, import, diagnostics); the
/// TLS layer performs its own path validation for live connections.
pub fn verify_chain(
    cert_der: &[u8],
    ca_cert_der: &[u8],
    now: DateTime<Utc>,
) -> Result<CertInfo, ChainError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| ChainError::MalformedCertificate(e.to_string()))?;
    let (_, ca) = X509Certificate::from_der(ca_cert_der)
        .map_err(|e| ChainError::MalformedCa(e.to_string()))?;
    if !ca.is_ca() {
        return Err(ChainError::NotACa);
    }
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(ChainError::IssuerMismatch {
            issuer: cert.issuer().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| ChainError::BadSignature)?;
    let ca_from = from_asn1(ca.validity().not_before);
    let ca_until = from_asn1(ca.validity().not_after);
    if now < ca_from || now > ca_until {
        return Err(ChainError::CaNotValid {
            not_before: ca_from,
            not_after: ca_until,
        });
    }
    let info = cert_info(cert_der, &cert);
    if now < info.not_before {
        return Err(ChainError::NotYetValid(info.not_before));
    }
    if now > info.not_after {
        return Err(ChainError::Expired(info.not_after));
    }
    Ok(info)
}

/// Whether a certificate expiring at `not_after` is due for replacement at
/// `now` given `early_renewal_days` (`terraform plan` then shows a
/// replacement). With 0 days, only an expired certificate is due.
pub fn early_renewal_due(
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
    early_renewal_days: u32,
) -> bool {
    now >= not_after - Duration::days(i64::from(early_renewal_days))
}

// ---------------------------------------------------------------- certificate status

/// Lifecycle of a device certificate (`status`).
///
/// `inactive` is a reversible suspension: the device API refuses the
/// certificate, but it is not published in the CRL. `revoked` is terminal
/// and published in the CA's CRL with its [`RevocationReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CertificateStatus {
    #[default]
    Active,
    Inactive,
    Revoked,
}

impl CertificateStatus {
    pub const NAMES: [&'static str; 3] = ["active", "inactive", "revoked"];

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "active",
            CertificateStatus::Inactive => "inactive",
            CertificateStatus::Revoked => "revoked",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        match value {
            "active" => Ok(CertificateStatus::Active),
            "inactive" => Ok(CertificateStatus::Inactive),
            "revoked" => Ok(CertificateStatus::Revoked),
            _ => Err(FieldError::new(
                field,
                format!(
                    "unknown certificate status {value:?} (use one of {})",
                    Self::NAMES.join(", ")
                ),
            )),
        }
    }
}

/// A requested status change, validated on its own: `revocation_reason`
/// goes with `revoked` only. `(Revoked, None)` means "no reason given":
/// `unspecified` for a certificate being revoked now, and whatever reason
/// it already has for one that is already revoked.
pub fn status_change(
    status: &str,
    revocation_reason: Option<&str>,
) -> Result<(CertificateStatus, Option<RevocationReason>), FieldError> {
    let status = CertificateStatus::parse("status", status)?;
    match (status, revocation_reason) {
        (CertificateStatus::Revoked, Some(r)) => Ok((
            status,
            Some(RevocationReason::parse("revocation_reason", r)?),
        )),
        (_, None) => Ok((status, None)),
        (_, Some(_)) => Err(FieldError::new(
            "revocation_reason",
            format!(
                "only allowed with status \"revoked\", not with status {:?}",
                status.as_str()
            ),
        )),
    }
}

/// Whether a stored certificate in `from` may move to `to`. Revocation is
/// terminal: a revoked certificate stays revoked, with the reason it was
/// revoked for (asking for the same reason, or none, is accepted as a
/// no-op).
pub fn check_status_transition(
    from: (CertificateStatus, Option<RevocationReason>),
    to: (CertificateStatus, Option<RevocationReason>),
) -> Result<(), FieldError> {
    match (from, to) {
        (
            (CertificateStatus::Revoked, _),
            (CertificateStatus::Active | CertificateStatus::Inactive, _),
        ) => Err(FieldError::new(
            "status",
            format!(
                "the certificate is revoked and cannot become {:?} again: revocation is \
                     permanent; issue a new certificate instead",
                to.0.as_str()
            ),
        )),
        ((CertificateStatus::Revoked, Some(old)), (CertificateStatus::Revoked, Some(new)))
            if old != new =>
        {
            Err(FieldError::new(
                "revocation_reason",
                format!(
                    "the certificate was already revoked with reason {:?}; a revoked \
                     certificate's reason cannot change",
                    old.as_str()
                ),
            ))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- CRLs

/// Why a certificate was revoked (`revocation_reason`), RFC 5280 §5.3.1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    const ALL: [(RevocationReason, &'static str); 8] = [
        (RevocationReason::Unspecified, "unspecified"),
        (RevocationReason::KeyCompromise, "key_compromise"),
        (RevocationReason::CaCompromise, "ca_compromise"),
        (RevocationReason::AffiliationChanged, "affiliation_changed"),
        (RevocationReason::Superseded, "superseded"),
        (
            RevocationReason::CessationOfOperation,
            "cessation_of_operation",
        ),
        (RevocationReason::CertificateHold, "certificate_hold"),
        (RevocationReason::PrivilegeWithdrawn, "privilege_withdrawn"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("unspecified", |(_, s)| s)
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == value)
            .map(|(r, _)| *r)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, s)| *s).collect();
                FieldError::new(
                    field,
                    format!(
                        "unknown revocation reason {value:?} (use one of {})",
                        names.join(", ")
                    ),
                )
            })
    }

    fn rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => R::Unspecified,
            RevocationReason::KeyCompromise => R::KeyCompromise,
            RevocationReason::CaCompromise => R::CaCompromise,
            RevocationReason::AffiliationChanged => R::AffiliationChanged,
            RevocationReason::Superseded => R::Superseded,
            RevocationReason::CessationOfOperation => R::CessationOfOperation,
            RevocationReason::CertificateHold => R::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        }
    }
}

/// One CRL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Serial as hex (as in [`CertInfo::serial`]; `:` separators allowed).
    pub serial: String,
    pub revoked_at: DateTime<Utc>,
    pub reason: RevocationReason,
}

/// Builds a signed CRL (PEM) for `ca` listing `revoked`. `crl_number` must
/// grow with every CRL the CA publishes.
pub fn build_crl(
    ca: &CertificateAuthority,
    revoked: &[RevokedSerial],
    crl_number: u64,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
) -> Result<String, PkiError> {
    if next_update <= this_update {
        return Err(invalid("next_update", "must be after this_update"));
    }
    let mut entries = Vec::with_capacity(revoked.len());
    for (i, r) in revoked.iter().enumerate() {
        let field = format!("{}.serial", indexed("revoked", i));
        let cleaned: String = r.serial.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&cleaned)
            .ok()
            .filter(|b| !b.is_empty() && b.len() <= 20)
            .ok_or_else(|| {
                invalid(
                    &field,
                    format!("invalid serial {:?}: expected 1-20 bytes of hex", r.serial),
                )
            })?;
        entries.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: to_offset(r.revoked_at)?,
            reason_code: Some(r.reason.rcgen()),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: to_offset(this_update)?,
        next_update: to_offset(next_update)?,
        crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: entries,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca.issuer()?).map_err(|e| match e {
        rcgen::Error::IssuerNotCrlSigner => invalid(
            "ca_id",
            "the CA certificate's key usage does not allow signing CRLs (cRLSign)",
        ),
        other => other.into(),
    })?;
    Ok(crl.pem()?)
}

// ---------------------------------------------------------------- fuzzing

/// Entry point for a fuzz target: arbitrary bytes as a CSR and as a
/// certificate, both as given (PEM text) and wrapped as the DER inside a PEM
/// block. Every failure must be an input error naming the field; a CSR that
/// verifies must yield a certificate from a real CA, which chains to it.
/// Never panics unless one of those invariants is broken.
pub fn fuzz_pem(data: &[u8]) {
    use std::sync::OnceLock;
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    let now = DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
    let ca = CA.get_or_init(|| {
        let m = generate_ca(
            &NewCa {
                common_name: "fuzz-ca",
                organization: None,
                validity_days: 3650,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            Serial::from_bytes([7; 16]),
            now,
        )
        .expect("CA generates");
        CertificateAuthority::from_pem(&m.certificate_pem, &m.private_key_pem).expect("CA loads")
    });
    let text = String::from_utf8_lossy(data);
    let csr_wrapped = pem_encode("CERTIFICATE REQUEST", data);
    for csr in [text.as_ref(), csr_wrapped.as_str()] {
        match csr_public_key(csr) {
            Err(e) => assert_eq!(e.field(), Some("csr_pem"), "{e}"),
            Ok(_) => {
                let req = NewCertificate {
                    subject: Subject::DeviceId("dev-1"),
                    validity_days: 30,
                    key: SubjectKey::Csr(csr),
                };
                let issued = issue_certificate(ca, &req, Serial::from_bytes([9; 16]), now)
                    .unwrap_or_else(|e| panic!("a verified CSR was refused: {e}"));
                let info = inspect_certificate("certificate_pem", &issued.certificate_pem)
                    .expect("an issued certificate parses");
                assert_eq!(info.common_name.as_deref(), Some("dev-1"));
            }
        }
    }
    let cert_wrapped = pem_encode("CERTIFICATE", data);
    for cert in [text.as_ref(), cert_wrapped.as_str()] {
        match inspect_certificate("certificate_pem", cert) {
            Err(e) => assert_eq!(e.field(), Some("certificate_pem"), "{e}"),
            Ok(info) => assert_eq!(info.fingerprint.len(), 64),
        }
        if let Err(e) = certificate_der("certificate_pem", cert) {
            assert_eq!(e.field(), Some("certificate_pem"), "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::revocation_list::CertificateRevocationList;

    fn now() -> DateTime<Utc> {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn serial(n: u8) -> Serial {
        Serial::from_bytes([n; 16])
    }

    fn new_ca(alg: KeyAlgorithm) -> CaMaterial {
        generate_ca(
            &NewCa {
                common_name: "Fleet Root CA",
                organization: Some("Fleetform"),
                validity_days: 3650,
                key_algorithm: alg,
            },
            serial(1),
            now(),
        )
        .unwrap()
    }

    fn load(ca: &CaMaterial) -> CertificateAuthority {
        CertificateAuthority::from_pem(&ca.certificate_pem, &ca.private_key_pem).unwrap()
    }

    fn csr(alg: &'static rcgen::SignatureAlgorithm, cn: &str) -> (String, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    fn der_of(pem: &str) -> Vec<u8> {
        certificate_der("certificate_pem", pem).unwrap()
    }

    fn field_of(e: PkiError) -> (String, String) {
        match e {
            PkiError::Invalid(f) => (f.field, f.message),
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn generates_ecdsa_and_ed25519_cas() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let ca = new_ca(alg);
            assert!(ca
                .certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(ca
                .private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----"));
            let der = der_of(&ca.certificate_pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert!(cert.is_ca());
            let bc = cert.basic_constraints().unwrap().unwrap().value;
            assert_eq!(bc.path_len_constraint, Some(0));
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.key_cert_sign() && ku.crl_sign());
            cert.verify_signature(None).expect("self-signed");
            assert_eq!(ca.info.common_name.as_deref(), Some("Fleet Root CA"));
            assert_eq!(ca.info.subject, "CN=Fleet Root CA, O=Fleetform");
            assert!(ca.info.is_ca);
            assert_eq!(ca.info.fingerprint, fingerprint(&der));
            assert_eq!(ca.info.fingerprint.len(), 64);
            assert_eq!(ca.info.serial, serial(1).to_hex());
            assert_eq!(ca.info.serial.len(), 32);
            assert_eq!(ca.info.not_after, now() + Duration::days(3650));
            assert_eq!(
                ca.info.not_before,
                now() - Duration::seconds(CLOCK_SKEW_ALLOWANCE_SECS)
            );
            let expected_alg = match alg {
                KeyAlgorithm::EcdsaP256 => x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY,
                KeyAlgorithm::Ed25519 => x509_parser::oid_registry::OID_SIG_ED25519,
            };
            assert_eq!(cert.public_key().algorithm.algorithm, expected_alg);
        }
    }

    #[test]
    fn ca_input_validation() {
        let base = NewCa {
            common_name: "CA",
            organization: None,
            validity_days: 10,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        };
        let e = |req: NewCa<'_>| field_of(generate_ca(&req, serial(1), now()).unwrap_err());
        assert_eq!(
            e(NewCa {
                common_name: "",
                ..base.clone()
            }),
            ("common_name".into(), "must not be empty".into())
        );
        assert_eq!(
            e(NewCa {
                common_name: &"x".repeat(65),
                ..base.clone()
            })
            .0,
            "common_name"
        );
        assert_eq!(
            e(NewCa {
                organization: Some("\u{7}"),
                ..base.clone()
            })
            .1,
            "must not contain control characters"
        );
        assert_eq!(
            e(NewCa {
                validity_days: 0,
                ..base.clone()
            }),
            (
                "validity_days".into(),
                "must be between 1 and 36500 days, got 0".into()
            )
        );
        assert_eq!(
            e(NewCa {
                validity_days: 36_501,
                ..base
            })
            .0,
            "validity_days"
        );
    }

    #[test]
    fn key_algorithm_names() {
        assert_eq!(
            KeyAlgorithm::parse("key_algorithm", "ED25519"),
            Ok(KeyAlgorithm::Ed25519)
        );
        assert_eq!(
            KeyAlgorithm::parse("key_algorithm", "ECDSA_P256"),
            Ok(KeyAlgorithm::EcdsaP256)
        );
        assert_eq!(
            KeyAlgorithm::parse("key_algorithm", "RSA")
                .unwrap_err()
                .to_string(),
            "key_algorithm: unknown key algorithm \"RSA\" (use ECDSA_P256 or ED25519)"
        );
        assert_eq!(KeyAlgorithm::default().to_string(), "ECDSA_P256");
    }

    #[test]
    fn serials_are_positive_16_byte_integers() {
        let s = Serial::from_bytes([0xff; 16]);
        assert_eq!(&s.to_hex()[..2], "7f");
        let s = Serial::from_bytes([0; 16]);
        assert_eq!(&s.to_hex()[..2], "40");
        let mut rng = rand::rng();
        let a = Serial::random(&mut rng);
        let b = Serial::random(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 32);
    }

    #[test]
    fn issues_from_a_real_csr_and_chains_to_the_ca() {
        for ca_alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let ca_mat = new_ca(ca_alg);
            let ca = load(&ca_mat);
            for dev_alg in [
                &rcgen::PKCS_ECDSA_P256_SHA256,
                &rcgen::PKCS_ED25519,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            ] {
                let (csr_pem, device_key) = csr(dev_alg, "ignored-by-fleetd");
                let issued = issue_certificate(
                    &ca,
                    &NewCertificate {
                        subject: Subject::DeviceId("dev-42"),
                        validity_days: 365,
                        key: SubjectKey::Csr(&csr_pem),
                    },
                    serial(7),
                    now(),
                )
                .unwrap();
                assert!(
                    issued.private_key_pem.is_none(),
                    "the key stays on the device"
                );
                let der = der_of(&issued.certificate_pem);
                let ca_der = der_of(&ca_mat.certificate_pem);
                let (_, cert) = X509Certificate::from_der(&der).unwrap();
                let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();

                cert.verify_signature(Some(ca_cert.public_key()))
                    .expect("signed by the CA");
                assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
                assert_eq!(
                    cert.subject().to_string(),
                    "CN=dev-42",
                    "CN comes from the request, not the CSR"
                );
                assert_eq!(
                    cert.public_key().subject_public_key.data.as_ref(),
                    device_key.der_bytes(),
                    "the CSR's public key is certified"
                );
                assert!(!cert.is_ca());
                let bc = cert
                    .basic_constraints()
                    .unwrap()
                    .expect("explicit CA:FALSE")
                    .value;
                assert!(!bc.ca);
                let eku = cert.extended_key_usage().unwrap().unwrap().value;
                assert!(eku.client_auth && !eku.server_auth);
                assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
                assert_eq!(issued.info.serial, serial(7).to_hex());
                assert_eq!(cert.raw_serial(), &serial(7).0);
                assert_eq!(issued.info.not_after, now() + Duration::days(365));
                assert_eq!(issued.info.fingerprint, fingerprint(&der));
                assert_eq!(issued.info.common_name.as_deref(), Some("dev-42"));

                let info = verify_chain(&der, &ca_der, now() + Duration::days(1)).unwrap();
                assert_eq!(info, issued.info);
            }
        }
    }

    #[test]
    fn generates_device_keys_when_asked() {
        let ca_mat = new_ca(KeyAlgorithm::EcdsaP256);
        let ca = load(&ca_mat);
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let issued = issue_certificate(
                &ca,
                &NewCertificate {
                    subject: Subject::CommonName("bench-rig-1"),
                    validity_days: 30,
                    key: SubjectKey::Generate(alg),
                },
                serial(9),
                now(),
            )
            .unwrap();
            let key_pem = issued.private_key_pem.expect("generated key returned once");
            let key = KeyPair::from_pem(&key_pem).unwrap();
            let der = der_of(&issued.certificate_pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(
                cert.public_key().subject_public_key.data.as_ref(),
                key.der_bytes()
            );
            verify_chain(&der, &der_of(&ca_mat.certificate_pem), now()).unwrap();
        }
    }

    #[test]
    fn bad_csrs_are_refused_on_csr_pem() {
        let ca = load(&new_ca(KeyAlgorithm::EcdsaP256));
        let issue = |csr_pem: &str| {
            field_of(
                issue_certificate(
                    &ca,
                    &NewCertificate {
                        subject: Subject::DeviceId("d"),
                        validity_days: 1,
                        key: SubjectKey::Csr(csr_pem),
                    },
                    serial(2),
                    now(),
                )
                .unwrap_err(),
            )
        };
        let (field, msg) = issue("not pem at all");
        assert_eq!(field, "csr_pem");
        assert_eq!(
            msg,
            "not a PEM document: expected a \"-----BEGIN CERTIFICATE REQUEST-----\" block"
        );

        let ca_pem = new_ca(KeyAlgorithm::EcdsaP256).certificate_pem;
        assert_eq!(
            issue(&ca_pem),
            (
                "csr_pem".into(),
                "expected a CERTIFICATE REQUEST PEM block, got CERTIFICATE".into()
            )
        );

        let garbage = pem_encode("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00");
        let (field, msg) = issue(&garbage);
        assert_eq!(field, "csr_pem");
        assert!(
            msg.starts_with("malformed certificate signing request"),
            "{msg}"
        );

        // Flip a bit in the signature: the CSR no longer proves possession.
        let (good, _) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "x");
        let mut der = pem_block("csr_pem", &good, &["CERTIFICATE REQUEST"]).unwrap();
        let last = der.len() - 3;
        der[last] ^= 0x01;
        let (field, msg) = issue(&pem_encode("CERTIFICATE REQUEST", &der));
        assert_eq!(field, "csr_pem");
        assert!(msg.contains("signature does not verify"), "{msg}");
    }

    #[test]
    fn issuance_rules() {
        let ca = load(&new_ca(KeyAlgorithm::EcdsaP256));
        let (csr_pem, _) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "x");
        let try_issue = |subject, days, at| {
            issue_certificate(
                &ca,
                &NewCertificate {
                    subject,
                    validity_days: days,
                    key: SubjectKey::Csr(&csr_pem),
                },
                serial(3),
                at,
            )
        };
        assert_eq!(
            field_of(try_issue(Subject::DeviceId(""), 1, now()).unwrap_err()).0,
            "device_id"
        );
        assert_eq!(
            field_of(try_issue(Subject::CommonName(" "), 1, now()).unwrap_err()).0,
            "common_name"
        );
        assert_eq!(
            field_of(try_issue(Subject::DeviceId("d"), -5, now()).unwrap_err()).0,
            "validity_days"
        );
        let (field, msg) = field_of(try_issue(Subject::DeviceId("d"), 3651, now()).unwrap_err());
        assert_eq!(field, "validity_days");
        assert!(
            msg.starts_with("a 3651-day certificate would outlive its CA"),
            "{msg}"
        );
        assert!(try_issue(Subject::DeviceId("d"), 3650, now()).is_ok());
        let (field, msg) = field_of(
            try_issue(Subject::DeviceId("d"), 1, now() + Duration::days(4000)).unwrap_err(),
        );
        assert_eq!(field, "ca_id");
        assert!(
            msg.starts_with("the CA certificate is not valid at"),
            "{msg}"
        );
        assert_eq!(
            field_of(try_issue(Subject::DeviceId("d"), 1, now() - Duration::days(1)).unwrap_err())
                .0,
            "ca_id"
        );
    }

    #[test]
    fn import_accepts_a_matching_pair() {
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        let imported = import_ca(&ca.certificate_pem, &ca.private_key_pem, now()).unwrap();
        assert_eq!(imported.info, ca.info);
        // and the imported CA can sign
        let loaded = load(&imported);
        let (csr_pem, _) = csr(&rcgen::PKCS_ED25519, "x");
        issue_certificate(
            &loaded,
            &NewCertificate {
                subject: Subject::DeviceId("d"),
                validity_days: 1,
                key: SubjectKey::Csr(&csr_pem),
            },
            serial(4),
            now(),
        )
        .unwrap();
    }

    #[test]
    fn import_refuses_mismatched_key() {
        let a = new_ca(KeyAlgorithm::EcdsaP256);
        let b = new_ca(KeyAlgorithm::EcdsaP256);
        assert_eq!(
            field_of(import_ca(&a.certificate_pem, &b.private_key_pem, now()).unwrap_err()),
            (
                "private_key_pem".into(),
                "the private key does not match the certificate's public key".into()
            )
        );
        let ed = new_ca(KeyAlgorithm::Ed25519);
        assert_eq!(
            field_of(import_ca(&a.certificate_pem, &ed.private_key_pem, now()).unwrap_err()).0,
            "private_key_pem"
        );
    }

    #[test]
    fn import_refuses_bad_input() {
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        let (field, msg) = field_of(import_ca("garbage", &ca.private_key_pem, now()).unwrap_err());
        assert_eq!(field, "certificate_pem");
        assert_eq!(
            msg,
            "not a PEM document: expected a \"-----BEGIN CERTIFICATE-----\" block"
        );

        let (field, msg) =
            field_of(import_ca(&ca.private_key_pem, &ca.private_key_pem, now()).unwrap_err());
        assert_eq!(
            (field.as_str(), msg.as_str()),
            (
                "certificate_pem",
                "expected a CERTIFICATE PEM block, got PRIVATE KEY"
            )
        );

        let junk = pem_encode("CERTIFICATE", b"junk");
        let (field, msg) = field_of(import_ca(&junk, &ca.private_key_pem, now()).unwrap_err());
        assert_eq!(field, "certificate_pem");
        assert!(msg.starts_with("malformed certificate"), "{msg}");

        let (field, msg) = field_of(import_ca(&ca.certificate_pem, "nope", now()).unwrap_err());
        assert_eq!(field, "private_key_pem");
        assert!(msg.starts_with("not a PEM document"));

        let bad_key = pem_encode("PRIVATE KEY", b"\x30\x00");
        let (field, msg) = field_of(import_ca(&ca.certificate_pem, &bad_key, now()).unwrap_err());
        assert_eq!(field, "private_key_pem");
        assert!(msg.contains("PKCS#8"), "{msg}");

        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMA==\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(
            field_of(import_ca(&ca.certificate_pem, enc, now()).unwrap_err())
                .1
                .contains("encrypted")
        );
    }

    #[test]
    fn import_refuses_non_ca_and_expired() {
        let ca_mat = new_ca(KeyAlgorithm::EcdsaP256);
        let ca = load(&ca_mat);
        let issued = issue_certificate(
            &ca,
            &NewCertificate {
                subject: Subject::DeviceId("d"),
                validity_days: 10,
                key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            serial(5),
            now(),
        )
        .unwrap();
        assert_eq!(
            field_of(
                import_ca(
                    &issued.certificate_pem,
                    issued.private_key_pem.as_ref().unwrap(),
                    now()
                )
                .unwrap_err()
            ),
            (
                "certificate_pem".into(),
                "not a CA certificate: basicConstraints CA:TRUE is missing".into()
            )
        );
        let (field, msg) = field_of(
            import_ca(
                &ca_mat.certificate_pem,
                &ca_mat.private_key_pem,
                now() + Duration::days(3651),
            )
            .unwrap_err(),
        );
        assert_eq!(field, "certificate_pem");
        assert!(msg.starts_with("the CA certificate expired at"), "{msg}");
        let (_, msg) = field_of(
            import_ca(
                &ca_mat.certificate_pem,
                &ca_mat.private_key_pem,
                now() - Duration::days(1),
            )
            .unwrap_err(),
        );
        assert!(
            msg.starts_with("the CA certificate is not valid before"),
            "{msg}"
        );
    }

    #[test]
    fn verify_chain_failures() {
        let ca1 = new_ca(KeyAlgorithm::EcdsaP256);
        let ca2 = new_ca(KeyAlgorithm::EcdsaP256); // same subject, different key
        let other = generate_ca(
            &NewCa {
                common_name: "Other CA",
                organization: None,
                validity_days: 3650,
                key_algorithm: KeyAlgorithm::Ed25519,
            },
            serial(6),
            now(),
        )
        .unwrap();
        let issued = issue_certificate(
            &load(&ca1),
            &NewCertificate {
                subject: Subject::DeviceId("d"),
                validity_days: 30,
                key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            serial(8),
            now(),
        )
        .unwrap();
        let leaf = der_of(&issued.certificate_pem);
        assert_eq!(
            verify_chain(&leaf, &der_of(&ca2.certificate_pem), now()),
            Err(ChainError::BadSignature)
        );
        assert!(matches!(
            verify_chain(&leaf, &der_of(&other.certificate_pem), now()),
            Err(ChainError::IssuerMismatch { .. })
        ));
        assert_eq!(verify_chain(&leaf, &leaf, now()), Err(ChainError::NotACa));
        assert!(matches!(
            verify_chain(b"junk", &leaf, now()),
            Err(ChainError::MalformedCertificate(_))
        ));
        assert!(matches!(
            verify_chain(&leaf, b"junk", now()),
            Err(ChainError::MalformedCa(_))
        ));
        assert_eq!(
            verify_chain(
                &leaf,
                &der_of(&ca1.certificate_pem),
                now() + Duration::days(31)
            ),
            Err(ChainError::Expired(now() + Duration::days(30)))
        );
        assert_eq!(
            verify_chain(
                &leaf,
                &der_of(&ca1.certificate_pem),
                now() - Duration::seconds(CLOCK_SKEW_ALLOWANCE_SECS + 1)
            ),
            Err(ChainError::CaNotValid {
                not_before: now() - Duration::seconds(CLOCK_SKEW_ALLOWANCE_SECS),
                not_after: now() + Duration::days(3650)
            })
        );
        assert!(
            verify_chain(
                &leaf,
                &der_of(&ca1.certificate_pem),
                now() - Duration::seconds(60)
            )
            .is_ok(),
            "backdated"
        );
    }

    #[test]
    fn early_renewal() {
        let not_after: DateTime<Utc> = "2025-12-31T00:00:00Z".parse().unwrap();
        assert!(!early_renewal_due(
            not_after,
            "2025-12-01T00:00:00Z".parse().unwrap(),
            7
        ));
        assert!(early_renewal_due(
            not_after,
            "2025-12-24T00:00:00Z".parse().unwrap(),
            7
        ));
        assert!(early_renewal_due(
            not_after,
            "2025-12-25T00:00:00Z".parse().unwrap(),
            7
        ));
        assert!(!early_renewal_due(
            not_after,
            "2025-12-30T23:59:59Z".parse().unwrap(),
            0
        ));
        assert!(early_renewal_due(not_after, not_after, 0));
    }

    #[test]
    fn crl_lists_revoked_serials_and_verifies() {
        let ca_mat = new_ca(KeyAlgorithm::EcdsaP256);
        let ca = load(&ca_mat);
        let revoked = vec![
            RevokedSerial {
                serial: serial(7).to_hex(),
                revoked_at: now(),
                reason: RevocationReason::KeyCompromise,
            },
            RevokedSerial {
                serial: "01:02:03".into(),
                revoked_at: now(),
                reason: RevocationReason::CessationOfOperation,
            },
        ];
        let pem = build_crl(&ca, &revoked, 42, now(), now() + Duration::days(7)).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(block.label, "X509 CRL");
        let (_, crl) = CertificateRevocationList::from_der(&block.contents).unwrap();
        let ca_der = der_of(&ca_mat.certificate_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        crl.verify_signature(ca_cert.public_key())
            .expect("signed by the CA");
        assert_eq!(crl.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("42".into()));
        let entries: Vec<(String, u8)> = crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    hex::encode(r.raw_serial()),
                    r.reason_code().map(|(_, c)| c.0).unwrap_or(255),
                )
            })
            .collect();
        assert_eq!(entries, vec![(serial(7).to_hex(), 1), ("010203".into(), 5)]);
    }

    #[test]
    fn crl_input_errors() {
        let ca = load(&new_ca(KeyAlgorithm::Ed25519));
        let bad = vec![
            RevokedSerial {
                serial: "aa".into(),
                revoked_at: now(),
                reason: RevocationReason::Superseded,
            },
            RevokedSerial {
                serial: "zz".into(),
                revoked_at: now(),
                reason: RevocationReason::Superseded,
            },
        ];
        assert_eq!(
            field_of(build_crl(&ca, &bad, 1, now(), now() + Duration::days(1)).unwrap_err()),
            (
                "revoked[1].serial".into(),
                "invalid serial \"zz\": expected 1-20 bytes of hex".into()
            )
        );
        assert_eq!(
            field_of(build_crl(&ca, &[], 1, now(), now()).unwrap_err()).0,
            "next_update"
        );
        assert!(
            build_crl(&ca, &[], 1, now(), now() + Duration::hours(1)).is_ok(),
            "empty CRLs are fine"
        );
    }

    #[test]
    fn revocation_reasons() {
        assert_eq!(
            RevocationReason::parse("revocation_reason", "key_compromise"),
            Ok(RevocationReason::KeyCompromise)
        );
        assert_eq!(RevocationReason::Superseded.as_str(), "superseded");
        let e = RevocationReason::parse("revocation_reason", "lost").unwrap_err();
        assert_eq!(e.field, "revocation_reason");
        assert!(e.message.starts_with(
            "unknown revocation reason \"lost\" (use one of unspecified, key_compromise"
        ));
    }

    #[test]
    fn reports_key_algorithm_and_organization() {
        let ca = new_ca(KeyAlgorithm::EcdsaP256);
        assert_eq!(load(&ca).key_algorithm(), "ECDSA_P256");
        let ed = new_ca(KeyAlgorithm::Ed25519);
        assert_eq!(load(&ed).key_algorithm(), "ED25519");
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "p384");
        let cert = params.self_signed(&p384).unwrap();
        let loaded = CertificateAuthority::from_pem(&cert.pem(), &p384.serialize_pem()).unwrap();
        assert_eq!(loaded.key_algorithm(), "ECDSA_P384");
        assert_eq!(loaded.info().organization, None);
        assert_eq!(
            inspect_certificate("certificate_pem", &ca.certificate_pem)
                .unwrap()
                .organization
                .as_deref(),
            ca.info.organization.as_deref()
        );
    }

    #[test]
    fn certificate_status_changes() {
        use CertificateStatus::*;
        assert_eq!(status_change("active", None), Ok((Active, None)));
        assert_eq!(status_change("revoked", None), Ok((Revoked, None)));
        assert_eq!(
            status_change("revoked", Some("key_compromise")),
            Ok((Revoked, Some(RevocationReason::KeyCompromise)))
        );
        let e = status_change("gone", None).unwrap_err();
        assert_eq!(e.field, "status");
        assert_eq!(
            e.message,
            "unknown certificate status \"gone\" (use one of active, inactive, revoked)"
        );
        let e = status_change("inactive", Some("superseded")).unwrap_err();
        assert_eq!(e.field, "revocation_reason");
        assert_eq!(
            e.message,
            "only allowed with status \"revoked\", not with status \"inactive\""
        );
        assert_eq!(
            status_change("revoked", Some("lost")).unwrap_err().field,
            "revocation_reason"
        );

        let kc = Some(RevocationReason::KeyCompromise);
        assert!(check_status_transition((Active, None), (Inactive, None)).is_ok());
        assert!(check_status_transition((Inactive, None), (Active, None)).is_ok());
        assert!(check_status_transition((Active, None), (Revoked, kc)).is_ok());
        assert!(check_status_transition((Revoked, kc), (Revoked, kc)).is_ok());
        assert!(check_status_transition((Revoked, kc), (Revoked, None)).is_ok());
        let e = check_status_transition((Revoked, kc), (Active, None)).unwrap_err();
        assert_eq!(e.field, "status");
        assert!(
            e.message
                .starts_with("the certificate is revoked and cannot become \"active\""),
            "{}",
            e.message
        );
        let e =
            check_status_transition((Revoked, kc), (Revoked, Some(RevocationReason::Superseded)))
                .unwrap_err();
        assert_eq!(e.field, "revocation_reason");
    }

    #[test]
    fn inspect_and_debug_never_leak_keys() {
        let ca_mat = new_ca(KeyAlgorithm::EcdsaP256);
        let info = inspect_certificate("certificate_pem", &ca_mat.certificate_pem).unwrap();
        assert_eq!(info, ca_mat.info);
        let ca = load(&ca_mat);
        assert_eq!(
            ca.certificate_pem(),
            ca_mat.certificate_pem.replace("\r\n", "\n")
        );
        assert_eq!(
            ca.certificate_der(),
            der_of(&ca_mat.certificate_pem).as_slice()
        );
        let dbg = format!("{ca:?}");
        assert!(!dbg.contains("PRIVATE") && dbg.contains("CertificateAuthority"));
        assert_eq!(
            PkiError::Invalid(FieldError::new("csr_pem", "x")).field(),
            Some("csr_pem")
        );
        assert_eq!(PkiError::Internal("x".into()).field(), None);
    }
}
