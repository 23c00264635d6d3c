//! The device listener's own TLS identity.
//!
//! Devices pin one CA certificate, the fleet's *device server CA*, created
//! on first start and kept in the store (key sealed with the master key),
//! so every replica of one database presents certificates from the same
//! CA. Each fleetd process issues itself a fresh server certificate from
//! that CA at start (and again when it nears expiry), naming the host
//! names and addresses devices connect to.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::keystore::MasterKey;
use crate::store::device_api::{ServerCa, SERVER_CA_KEY_CONTEXT};
use crate::store::Store;

/// Validity of the device server CA (20 years).
const SERVER_CA_DAYS: i64 = 20 * 365;
/// Validity of a server certificate.
const SERVER_CERT_DAYS: i64 = 90;
/// A server certificate with less than this left is re-issued.
const RENEW_BEFORE_DAYS: i64 = 30;

/// The device server CA, loaded for signing.
pub struct ServerCaKey {
    pub certificate_pem: String,
    pub certificate_der: Vec<u8>,
    key: KeyPair,
}

impl std::fmt::Debug for ServerCaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCaKey").finish_non_exhaustive()
    }
}

/// Loads the fleet's device server CA, creating it on first start.
pub async fn load_or_create_server_ca(
    store: &dyn Store,
    master_key: &MasterKey,
) -> anyhow::Result<ServerCaKey> {
    let stored = match store.device_server_ca().await? {
        Some(ca) => ca,
        None => {
            let (pem, key) = generate_server_ca(Utc::now())?;
            let sealed = master_key.seal(key.serialize_pem().as_bytes(), SERVER_CA_KEY_CONTEXT)?;
            store
                .init_device_server_ca(
                    ServerCa {
                        certificate_pem: pem,
                        sealed_key: sealed,
                    },
                    master_key.id(),
                )
                .await?
        }
    };
    let key_pem = master_key
        .open(&stored.sealed_key, SERVER_CA_KEY_CONTEXT)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the device server CA's key with master key {}: {e}; start fleetd \
                 with the master key this database was created with",
                master_key.id()
            )
        })?;
    let key_pem = String::from_utf8(key_pem).context("device server CA key is not PEM")?;
    let key = KeyPair::from_pem(&key_pem).context("parsing the device server CA key")?;
    let der = crate::domain::pki::certificate_der("device server CA", &stored.certificate_pem)
        .map_err(|e| anyhow::anyhow!("stored device server CA: {e}"))?;
    Ok(ServerCaKey {
        certificate_pem: stored.certificate_pem,
        certificate_der: der,
        key,
    })
}

fn generate_server_ca(now: DateTime<Utc>) -> anyhow::Result<(String, KeyPair)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fleetd device API server CA");
    dn.push(DnType::OrganizationName, "Fleetform");
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    params.not_before = to_offset(now - Duration::minutes(5))?;
    params.not_after = to_offset(now + Duration::days(SERVER_CA_DAYS))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn to_offset(t: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    Ok(time::OffsetDateTime::from_unix_timestamp(t.timestamp())?)
}

/// The names a server certificate carries: `names` (host names or IP
/// addresses) plus the bound IP when it is a specific address.
pub fn subject_names(names: &[String], bound: IpAddr) -> Vec<String> {
    let mut out: Vec<String> = names.to_vec();
    if !bound.is_unspecified() && !out.contains(&bound.to_string()) {
        out.push(bound.to_string());
    }
    out
}

/// Serves the current server certificate and re-issues it when it nears
/// expiry.
pub struct ServerIdentity {
    ca: ServerCaKey,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, DateTime<Utc>)>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    pub fn new(
        ca: ServerCaKey,
        names: Vec<String>,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let issued = issue(&ca, &names, &provider, Utc::now())?;
        Ok(ServerIdentity {
            ca,
            names,
            provider,
            current: RwLock::new(issued),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.certificate_pem
    }

    /// Re-issues the server certificate if it expires within
    /// [`RENEW_BEFORE_DAYS`].
    pub fn renew_if_due(&self, now: DateTime<Utc>) {
        let due = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            current.1 - now < Duration::days(RENEW_BEFORE_DAYS)
        };
        if !due {
            return;
        }
        match issue(&self.ca, &self.names, &self.provider, now) {
            Ok(issued) => {
                tracing::info!("re-issued the device API server certificate");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = issued;
            }
            Err(e) => tracing::error!("cannot re-issue the device API server certificate: {e:#}"),
        }
    }
}

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()).0,
        ))
    }
}

fn issue(
    ca: &ServerCaKey,
    names: &[String],
    provider: &CryptoProvider,
    now: DateTime<Utc>,
) -> anyhow::Result<(Arc<CertifiedKey>, DateTime<Utc>)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fleetd device API");
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| {
            Ok(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    n.clone()
                        .try_into()
                        .with_context(|| format!("invalid device API server name {n:?}"))?,
                ),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let not_after = now + Duration::days(SERVER_CERT_DAYS);
    params.serial_number = Some(random_serial());
    params.not_before = to_offset(now - Duration::minutes(5))?;
    params.not_after = to_offset(not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(&ca.certificate_der.as_slice().into(), &ca.key)?;
    let cert = params.signed_by(&key, &issuer)?;
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .context("loading the server key")?;
    let chain = vec![
        cert.der().clone(),
        CertificateDer::from(ca.certificate_der.clone()),
    ];
    Ok((Arc::new(CertifiedKey::new(chain, signing_key)), not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_server_certificate_for_the_names() {
        let (pem, key) = generate_server_ca(Utc::now()).unwrap();
        let der = crate::domain::pki::certificate_der("ca", &pem).unwrap();
        let ca = ServerCaKey {
            certificate_pem: pem,
            certificate_der: der,
            key,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let names = subject_names(
            &["localhost".into(), "127.0.0.1".into()],
            "10.1.2.3".parse().unwrap(),
        );
        assert_eq!(names, ["localhost", "127.0.0.1", "10.1.2.3"]);
        let identity = ServerIdentity::new(ca, names, provider).unwrap();
        let (cert, not_after) = identity.current.read().unwrap().clone();
        assert_eq!(cert.cert.len(), 2);
        assert!(not_after > Utc::now() + Duration::days(60));
        identity.renew_if_due(Utc::now() + Duration::days(70));
        assert!(identity.current.read().unwrap().1 > not_after);
    }
}
