//! Verifying client certificates against the fleet's CAs.
//!
//! The set of trusted CAs lives in the store and changes while fleetd
//! runs (Terraform creates and deletes `fleet_certificate_authority`,
//! revokes `fleet_certificate`), so the TLS configuration is built from a
//! [`TrustSnapshot`] and cached as a [`TrustEpoch`]. Each new connection
//! reads its ClientHello first, then asks the store for the cheap
//! [`trust stamp`](crate::store::DeviceApiStore::trust_stamp); only when
//! it changed (or the epoch is older than the refresh interval, for CAs
//! whose validity starts or ends) is the snapshot reloaded and the
//! `ServerConfig` rebuilt. A new CA, a revocation or a suspension is
//! therefore in force from the very next handshake, on every replica.
//!
//! At the handshake a client certificate must chain to one of those CAs
//! and be valid now (rustls-webpki path validation, `clientAuth` usage),
//! and must not be listed as refused (revoked or suspended). Connections
//! already open are not torn down by a revocation; instead every
//! *request* re-checks the certificate's status in the store (see
//! `auth.rs`), so it takes effect on the next request there too.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ProducesTickets, StoresServerSessions, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::metrics::DeviceMetrics;
use super::tls::ServerIdentity;
use crate::domain::pki;
use crate::store::Store;

/// A CA of the current epoch.
#[derive(Debug, Clone)]
pub struct CaEntry {
    pub id: String,
    pub name: String,
    pub der: Vec<u8>,
    subject_raw: Vec<u8>,
}

/// Who is on the other end of a connection: the verified client
/// certificate and the CA it chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub ca_id: String,
    pub ca_name: String,
    /// Lower-case hex, as recorded in the store.
    pub serial: String,
    pub fingerprint: String,
    pub common_name: Option<String>,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// One loaded trust state: the CAs, the refused serials and the TLS
/// configuration built from them.
pub struct TrustEpoch {
    loaded_at: Instant,
    cas: Arc<[CaEntry]>,
    /// The store's trust stamp this epoch was loaded at.
    stamp: String,
    /// The CA fingerprints and refused serials, to skip rebuilding the
    /// TLS configuration when nothing changed.
    key: String,
    pub tls: Arc<ServerConfig>,
}

impl std::fmt::Debug for TrustEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustEpoch")
            .field("cas", &self.cas.len())
            .finish_non_exhaustive()
    }
}

impl TrustEpoch {
    /// Identifies the CA of a client certificate that passed the
    /// handshake (or was resumed from a session that did) and checks it is
    /// valid at `now` and its CA is still trusted.
    ///
    /// The signature is not verified again: rustls-webpki did that at the
    /// full handshake, and a resumed session's certificate comes from a
    /// ticket only this fleetd could have issued. Only when several
    /// trusted CAs share the issuer's name does the signature pick the CA.
    pub fn identify(&self, cert_der: &[u8], now: DateTime<Utc>) -> Result<ClientIdentity, String> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| format!("malformed client certificate: {e}"))?;
        let issuer = cert.issuer().as_raw();
        let candidates: Vec<&CaEntry> = self
            .cas
            .iter()
            .filter(|c| c.subject_raw == issuer)
            .collect();
        let ca = match candidates.as_slice() {
            [] => return Err("the certificate's issuer is not a trusted fleet CA".into()),
            [only] => *only,
            several => several
                .iter()
                .find(|c| pki::verify_chain(cert_der, &c.der, now).is_ok())
                .copied()
                .ok_or("the certificate does not verify with any trusted fleet CA")?,
        };
        let not_before = DateTime::from_timestamp(cert.validity().not_before.timestamp(), 0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if now < not_before {
            return Err(format!("the certificate is not valid before {not_before}"));
        }
        if now > not_after {
            return Err(format!("the certificate expired at {not_after}"));
        }
        let serial = serial_hex(&cert);
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(ClientIdentity {
            ca_id: ca.id.clone(),
            ca_name: ca.name.clone(),
            serial,
            fingerprint: pki::fingerprint(cert_der),
            common_name,
            certificate_pem: pem_encode(cert_der),
            not_before,
            not_after,
        })
    }
}

/// The trusted CAs, refreshed from the store.
pub struct TrustState {
    store: Arc<dyn Store>,
    identity: Arc<ServerIdentity>,
    provider: Arc<CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
    metrics: Arc<DeviceMetrics>,
    refresh_every: Duration,
    current: RwLock<Arc<TrustEpoch>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl TrustState {
    /// Loads the first epoch.
    pub async fn load(
        store: Arc<dyn Store>,
        identity: Arc<ServerIdentity>,
        provider: Arc<CryptoProvider>,
        metrics: Arc<DeviceMetrics>,
        refresh_every: Duration,
    ) -> anyhow::Result<TrustState> {
        // TLS 1.3 resumption uses stateless tickets (no memory per device;
        // the key is shared by every epoch); the cache is for TLS 1.2.
        let sessions: Arc<dyn StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(10_000);
        let ticketer = rustls::crypto::ring::Ticketer::new()?;
        let tls = TlsShared {
            identity: &identity,
            provider: &provider,
            sessions: &sessions,
            ticketer: &ticketer,
            metrics: &metrics,
        };
        let epoch = build_epoch(store.as_ref(), &tls, None).await?;
        Ok(TrustState {
            store,
            identity,
            provider,
            sessions,
            ticketer,
            metrics,
            refresh_every,
            current: RwLock::new(Arc::new(epoch)),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    fn get(&self) -> Arc<TrustEpoch> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current epoch, reloaded first if the store's trust stamp
    /// changed or it is older than the refresh interval. One caller
    /// reloads; the others wait for it.
    pub async fn current(&self) -> Arc<TrustEpoch> {
        let epoch = self.get();
        let stamp = match self.store.trust_stamp().await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("cannot read the device API's trust stamp: {e}");
                None
            }
        };
        let fresh = |e: &TrustEpoch| {
            e.loaded_at.elapsed() < self.refresh_every
                && stamp.as_deref().is_none_or(|s| s == e.stamp)
        };
        if fresh(&epoch) {
            return epoch;
        }
        let _guard = self.refreshing.lock().await;
        let epoch = self.get();
        if fresh(&epoch) {
            return epoch;
        }
        self.identity.renew_if_due(Utc::now());
        let tls = TlsShared {
            identity: &self.identity,
            provider: &self.provider,
            sessions: &self.sessions,
            ticketer: &self.ticketer,
            metrics: &self.metrics,
        };
        let fresh = match build_epoch(self.store.as_ref(), &tls, Some(&epoch)).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot reload the device API's trusted CAs: {e:#}");
                // Keep serving with what we have; try again next interval.
                TrustEpoch {
                    loaded_at: Instant::now(),
                    cas: Arc::clone(&epoch.cas),
                    stamp: epoch.stamp.clone(),
                    key: epoch.key.clone(),
                    tls: Arc::clone(&epoch.tls),
                }
            }
        };
        let fresh = Arc::new(fresh);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&fresh);
        fresh
    }
}

/// What every epoch's TLS configuration shares.
struct TlsShared<'a> {
    identity: &'a Arc<ServerIdentity>,
    provider: &'a Arc<CryptoProvider>,
    sessions: &'a Arc<dyn StoresServerSessions>,
    ticketer: &'a Arc<dyn ProducesTickets>,
    metrics: &'a Arc<DeviceMetrics>,
}

async fn build_epoch(
    store: &dyn Store,
    shared: &TlsShared<'_>,
    previous: Option<&TrustEpoch>,
) -> anyhow::Result<TrustEpoch> {
    let TlsShared {
        identity,
        provider,
        sessions,
        ticketer,
        metrics,
    } = *shared;
    // Stamp first: a change racing with the snapshot shows up as a stamp
    // mismatch at the next handshake and is reloaded then.
    let stamp = store.trust_stamp().await?;
    let snapshot = store.trust_snapshot(Utc::now()).await?;
    let mut key = String::new();
    for ca in &snapshot.cas {
        key.push_str(&ca.id);
        key.push(':');
        key.push_str(&ca.fingerprint);
        key.push(';');
    }
    let mut refused: Vec<&(String, String)> = snapshot.refused.iter().collect();
    refused.sort();
    for (ca, serial) in &refused {
        key.push_str(ca);
        key.push('/');
        key.push_str(serial);
        key.push(';');
    }
    if let Some(prev) = previous.filter(|p| p.key == key) {
        return Ok(TrustEpoch {
            loaded_at: Instant::now(),
            cas: Arc::clone(&prev.cas),
            stamp,
            key,
            tls: Arc::clone(&prev.tls),
        });
    }

    let mut cas = Vec::with_capacity(snapshot.cas.len());
    let mut roots = RootCertStore::empty();
    for ca in &snapshot.cas {
        let der = match pki::certificate_der("certificate_pem", &ca.certificate_pem) {
            Ok(der) => der,
            Err(e) => {
                tracing::warn!(ca_id = %ca.id, "skipping a CA whose certificate does not parse: {e}");
                continue;
            }
        };
        let Some(subject_raw) = subject_raw(&der) else {
            continue;
        };
        if let Err(e) = roots.add(CertificateDer::from(der.clone())) {
            tracing::warn!(ca_id = %ca.id, "skipping a CA rustls does not accept as a trust anchor: {e}");
            continue;
        }
        cas.push(CaEntry {
            id: ca.id.clone(),
            name: ca.name.clone(),
            der,
            subject_raw,
        });
    }
    let cas: Arc<[CaEntry]> = cas.into();
    let inner = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .build()?,
        )
    };
    let refused: HashSet<(String, String)> = snapshot.refused.into_iter().collect();
    let verifier = Arc::new(FleetClientVerifier {
        inner,
        cas: Arc::clone(&cas),
        refused,
        provider: Arc::clone(provider),
        metrics: Arc::clone(metrics),
    });
    let mut tls = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(identity) as Arc<dyn rustls::server::ResolvesServerCert>);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls.session_storage = Arc::clone(sessions);
    tls.ticketer = Arc::clone(ticketer);
    tracing::debug!(cas = cas.len(), "device API trust reloaded");
    Ok(TrustEpoch {
        loaded_at: Instant::now(),
        cas,
        stamp,
        key,
        tls: Arc::new(tls),
    })
}

/// Client certificate verification for one epoch.
struct FleetClientVerifier {
    /// rustls-webpki over the epoch's CAs; `None` when there are none.
    inner: Option<Arc<dyn ClientCertVerifier>>,
    cas: Arc<[CaEntry]>,
    refused: HashSet<(String, String)>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<DeviceMetrics>,
}

impl std::fmt::Debug for FleetClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetClientVerifier")
            .field("cas", &self.cas.len())
            .field("refused", &self.refused.len())
            .finish_non_exhaustive()
    }
}

impl FleetClientVerifier {
    fn refuse(
        &self,
        word: &'static str,
        err: rustls::Error,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.metrics.handshake(word);
        Err(err)
    }
}

impl ClientCertVerifier for FleetClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a device has one certificate and always sends it.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return self.refuse(
                "unknown_ca",
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            );
        };
        if let Err(e) = inner.verify_client_cert(end_entity, intermediates, now) {
            let word = match &e {
                rustls::Error::InvalidCertificate(c) => match c {
                    CertificateError::UnknownIssuer => "unknown_ca",
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        "expired"
                    }
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                        "not_yet_valid"
                    }
                    CertificateError::Revoked => "revoked",
                    _ => "bad_certificate",
                },
                _ => "bad_certificate",
            };
            return self.refuse(word, e);
        }
        // Refused serials: revoked or suspended at the last reload.
        if !self.refused.is_empty() {
            if let Some((issuer, serial)) = issuer_and_serial(end_entity) {
                let listed = self.cas.iter().any(|ca| {
                    ca.subject_raw == issuer
                        && self.refused.contains(&(ca.id.clone(), serial.clone()))
                });
                if listed {
                    return self.refuse(
                        "revoked",
                        rustls::Error::InvalidCertificate(CertificateError::Revoked),
                    );
                }
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn subject_raw(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.subject().as_raw().to_vec())
}

/// The serial as the store records it: lower-case hex, leading zero
/// bytes stripped (as [`pki::inspect_certificate`] reports it).
fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let raw = cert.raw_serial();
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[first..])
}

/// The issuer DN (raw) and the serial.
fn issuer_and_serial(der: &[u8]) -> Option<(Vec<u8>, String)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some((cert.issuer().as_raw().to_vec(), serial_hex(&cert)))
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// How old a trust epoch may get even when the stamp did not change (CAs
/// becoming valid or expiring are only seen by a reload).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
