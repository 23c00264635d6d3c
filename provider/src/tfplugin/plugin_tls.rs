//! go-plugin "AutoMTLS" for the plugin server.
//!
//! When Terraform launches a provider it generates a throwaway, self-signed
//! client certificate (ECDSA **P-521**, CN=localhost, CA:TRUE) and passes
//! its PEM in `PLUGIN_CLIENT_CERT`. The plugin answers with its own fresh
//! self-signed certificate, sent as unpadded base64 DER in the handshake
//! line. Each side then trusts exactly the other's certificate.
//!
//! Two things keep us off rustls' stock verifiers:
//! * both certificates are CA certificates used as end entities, which
//!   webpki rejects (`CaUsedAsEndEntity`); we pin the exact DER instead;
//! * *ring* (our only rustls provider) cannot verify P-521 signatures, so
//!   the client's CertificateVerify is checked with the `p521` crate.
//!   Other key types go through ring's algorithms as usual.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use p521::ecdsa::signature::Verifier as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerMisbehaved, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// `id-ecPublicKey` (RFC 5480).
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// `secp521r1` (RFC 5480).
const OID_SECP521R1: &str = "1.3.132.0.35";

/// go-plugin makes its certificates valid for 262980 hours (~30 years).
const CERT_VALIDITY: time::Duration = time::Duration::hours(262_980);
/// ... starting 30 seconds in the past, to tolerate small clock skew.
const CERT_BACKDATE: time::Duration = time::Duration::seconds(30);

/// The *ring* crypto provider, the only one this crate uses.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The plugin's own certificate and key for one process lifetime.
pub struct ServerIdentity {
    /// The certificate's DER; goes into the handshake line.
    pub cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A fresh self-signed ECDSA P-256 certificate shaped like go-plugin's:
    /// CN=localhost, SAN DNS:localhost, CA:TRUE, key usage
    /// digitalSignature/keyEncipherment/keyAgreement/keyCertSign, extended
    /// key usage serverAuth+clientAuth, valid from now-30s for ~30 years.
    pub fn generate() -> anyhow::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName as RcDn, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .context("generating the plugin server key")?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])
            .context("building the plugin server certificate")?;
        let mut dn = RcDn::new();
        dn.push(DnType::OrganizationName, "Fleetform");
        dn.push(DnType::CommonName, "localhost");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - CERT_BACKDATE;
        params.not_after = now + CERT_VALIDITY;
        let cert = params
            .self_signed(&key)
            .context("self-signing the plugin server certificate")?;
        Ok(Self {
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The certificate as the handshake line's last field: standard base64
    /// alphabet, no padding (Go's `base64.RawStdEncoding`).
    pub fn handshake_field(&self) -> String {
        encode_handshake_cert(&self.cert_der)
    }
}

/// Standard-alphabet base64 without padding, as go-plugin expects.
pub fn encode_handshake_cert(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(der)
}

/// Reads every certificate in `PLUGIN_CLIENT_CERT`'s PEM.
pub fn parse_client_cert_pem(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("PLUGIN_CLIENT_CERT is not valid PEM")?;
    if certs.is_empty() {
        bail!("PLUGIN_CLIENT_CERT holds no certificate");
    }
    Ok(certs)
}

/// A rustls server configuration that requires the client to present one of
/// `client_certs` (byte for byte) and prove it holds its key. ALPN `h2`.
pub fn server_config(
    identity: &ServerIdentity,
    client_certs: Vec<CertificateDer<'static>>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = ring_provider();
    let verifier = PinnedClientCertVerifier::new(client_certs, &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("choosing TLS versions")?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![identity.cert_der.clone()],
            PrivateKeyDer::Pkcs8(identity.key_der.clone_key()),
        )
        .context("installing the plugin server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The public key of a pinned certificate, ready to check handshake
/// signatures.
enum PinnedKey {
    /// ECDSA P-521, what go-plugin generates; verified with `p521`.
    P521(Box<p521::ecdsa::VerifyingKey>),
    /// Anything else; verified with ring through webpki.
    Ring,
}

impl std::fmt::Debug for PinnedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PinnedKey::P521(_) => "P521",
            PinnedKey::Ring => "Ring",
        })
    }
}

#[derive(Debug)]
struct Pinned {
    der: CertificateDer<'static>,
    key: PinnedKey,
}

/// Accepts exactly the pinned certificates as client end entities.
///
/// go-plugin passes a single self-signed CA certificate; webpki would refuse
/// it as an end entity, and only the exact certificate may connect anyway,
/// so this compares DER and then checks the handshake signature.
pub struct PinnedClientCertVerifier {
    pinned: Vec<Pinned>,
    hints: Vec<DistinguishedName>,
    ring_algs: WebPkiSupportedAlgorithms,
    schemes: Vec<SignatureScheme>,
}

impl std::fmt::Debug for PinnedClientCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedClientCertVerifier")
            .field("pinned", &self.pinned.len())
            .field("schemes", &self.schemes)
            .finish()
    }
}

impl PinnedClientCertVerifier {
    /// Pins `certs`; handshake signatures from non-P-521 keys are checked
    /// with `provider`'s algorithms.
    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        provider: &CryptoProvider,
    ) -> anyhow::Result<Self> {
        if certs.is_empty() {
            bail!("no client certificate to pin");
        }
        let ring_algs = provider.signature_verification_algorithms;
        let mut pinned = Vec::with_capacity(certs.len());
        let mut hints = Vec::with_capacity(certs.len());
        let mut schemes = Vec::new();
        for der in certs {
            let (rest, cert) = X509Certificate::from_der(&der)
                .map_err(|e| anyhow!("client certificate does not parse: {e}"))?;
            if !rest.is_empty() {
                bail!("client certificate has trailing bytes");
            }
            // Go clients only offer a certificate whose issuer is among the
            // server's certificate_authorities; self-signed, issuer == subject.
            hints.push(DistinguishedName::from(cert.issuer().as_raw().to_vec()));
            let spki = cert.public_key();
            let is_p521 = spki.algorithm.algorithm.to_id_string() == OID_EC_PUBLIC_KEY
                && spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .is_some_and(|oid| oid.to_id_string() == OID_SECP521R1);
            let key = if is_p521 {
                let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data)
                    .map_err(|_| anyhow!("client certificate has an invalid P-521 key"))?;
                // In TLS 1.3 a P-521 key signs only with this scheme; offering
                // only it also steers TLS 1.2 clients to SHA-512.
                schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
                PinnedKey::P521(Box::new(vk))
            } else {
                schemes.extend(ring_algs.supported_schemes());
                PinnedKey::Ring
            };
            drop(cert);
            pinned.push(Pinned { der, key });
        }
        let mut seen = Vec::new();
        schemes.retain(|s| {
            let new = !seen.contains(s);
            seen.push(*s);
            new
        });
        Ok(Self {
            pinned,
            hints,
            ring_algs,
            schemes,
        })
    }

    fn find(&self, cert: &CertificateDer<'_>) -> Option<&Pinned> {
        self.pinned.iter().find(|p| p.der.as_ref() == cert.as_ref())
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let pinned = self.find(cert).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))?;
        match &pinned.key {
            PinnedKey::P521(vk) => {
                if dss.scheme != SignatureScheme::ECDSA_NISTP521_SHA512 {
                    return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
                }
                let sig = p521::ecdsa::Signature::from_der(dss.signature()).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadSignature)
                })?;
                vk.verify(message, &sig).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadSignature)
                })?;
                Ok(HandshakeSignatureValid::assertion())
            }
            PinnedKey::Ring if tls13 => {
                rustls::crypto::verify_tls13_signature(message, cert, dss, &self.ring_algs)
            }
            PinnedKey::Ring => {
                rustls::crypto::verify_tls12_signature(message, cert, dss, &self.ring_algs)
            }
        }
    }
}

impl ClientCertVerifier for PinnedClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The host handed us this exact certificate moments ago; identity is
        // the DER itself, and the handshake signature proves key possession.
        // Intermediates carry no meaning for a pinned self-signed cert.
        if self.find(end_entity).is_some() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_identity_looks_like_go_plugins() {
        use x509_parser::extensions::GeneralName;

        let id = ServerIdentity::generate().unwrap();
        let (_, cert) = X509Certificate::from_der(&id.cert_der).unwrap();
        assert_eq!(cert.subject(), cert.issuer(), "self-signed");
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "localhost");
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && ku.key_cert_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert!(san
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("localhost"))));
        let now = time::OffsetDateTime::now_utc();
        let nb = cert.validity().not_before.to_datetime();
        let na = cert.validity().not_after.to_datetime();
        assert!(nb <= now - time::Duration::seconds(25) && nb >= now - time::Duration::seconds(40));
        assert!(na >= now + time::Duration::days(365 * 29));

        // Two identities never share a key or certificate.
        let other = ServerIdentity::generate().unwrap();
        assert_ne!(id.cert_der, other.cert_der);
    }

    #[test]
    fn handshake_field_is_unpadded_standard_base64() {
        // 1 and 2 leftover bytes would need padding; '+' and '/' must appear
        // in standard (not URL-safe) form.
        assert_eq!(encode_handshake_cert(&[0xfb]), "+w");
        assert_eq!(encode_handshake_cert(&[0xff, 0xff]), "//8");
        assert_eq!(encode_handshake_cert(b"abc"), "YWJj");
    }

    #[test]
    fn client_pem_parsing() {
        assert!(parse_client_cert_pem("").is_err());
        assert!(parse_client_cert_pem("not a pem").is_err());
        let id = ServerIdentity::generate().unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(&id.cert_der)
        );
        let certs = parse_client_cert_pem(&pem).unwrap();
        assert_eq!(certs, vec![id.cert_der.clone()]);
    }

    #[test]
    fn p521_pin_offers_only_p521_scheme() {
        let der = rustls_pemfile::certs(&mut test_support::P521_CLIENT_CERT_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let v = PinnedClientCertVerifier::new(vec![der.clone()], &ring_provider()).unwrap();
        assert_eq!(
            v.supported_verify_schemes(),
            vec![SignatureScheme::ECDSA_NISTP521_SHA512]
        );
        assert!(v.client_auth_mandatory());
        // The hint must be the raw issuer Name, as Go compares RawIssuer.
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(v.root_hint_subjects()[0].as_ref(), cert.issuer().as_raw());
        assert!(v.verify_client_cert(&der, &[], UnixTime::now()).is_ok());
        let other = ServerIdentity::generate().unwrap().cert_der;
        assert!(v.verify_client_cert(&other, &[], UnixTime::now()).is_err());
    }
}

/// Fixtures shared by this crate's TLS tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use p521::ecdsa::signature::Signer as _;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::sign::{CertifiedKey, Signer, SigningKey};
    use rustls::{DigitallySignedStruct, SignatureAlgorithm, SignatureScheme};

    /// A certificate shaped exactly like the one Terraform (go-plugin)
    /// generates: ECDSA P-521 / SHA-512, O=HashiCorp, CN=localhost,
    /// SAN DNS:localhost, CA:TRUE, KU digitalSignature+keyEncipherment+
    /// keyAgreement+keyCertSign, EKU clientAuth+serverAuth. Test-only key.
    pub const P521_CLIENT_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICdTCCAdegAwIBAgIUXIxmNQUtihn2jvPAUg5+w6fiMQkwCgYIKoZIzj0EAwQw
KDESMBAGA1UECgwJSGFzaGlDb3JwMRIwEAYDVQQDDAlsb2NhbGhvc3QwIBcNMjYx
MTIzMTgxMDQ0WhgPMjA1NjExMTUxODEwNDRaMCgxEjAQBgNVBAoMCUhhc2hpQ29y
cDESMBAGA1UEAwwJbG9jYWxob3N0MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQB
h9ABqHCVnJNgUVLIq4doU4IkHBog9t6QzNf9NtL7mu2iR0dZdNAkOyxBH/xgFYBk
76RpPoj8lD1DKjg0UBbgZTYAqkz4AjfKcwMZ/3+EHuSynx/tt9V1PTkQjIb9RYgo
m3DmLdkDq2rE1b2nFpudb119OgPhIb2frgVGOaaeqdk+XgijgZkwgZYwHQYDVR0O
BBYEFGPKbpLhLBROtOv3hhL4DJ/CH93/MB8GA1UdIwQYMBaAFGPKbpLhLBROtOv3
hhL4DJ/CH93/MBQGA1UdEQQNMAuCCWxvY2FsaG9zdDAPBgNVHRMBAf8EBTADAQH/
MA4GA1UdDwEB/wQEAwICrDAdBgNVHSUEFjAUBggrBgEFBQcDAgYIKwYBBQUHAwEw
CgYIKoZIzj0EAwQDgYsAMIGHAkFOpWewwUtG2u7pw6G6J4dpsxQbwQ34ZP/Wa4IT
oKigJCZaEPyDByPvga+8qmtqwivmhHh5cnQA0vTIs/imKssoKQJCAPqrcE7c5Mho
mu3PUYEV4d/Ncdd/do8FZyKwgr7oB2GADusgnzEoFrhs39ZG6UxkGlPmFfQ5mf1u
ep+N1euLr9Aq
-----END CERTIFICATE-----
";

    /// The private scalar of [`P521_CLIENT_CERT_PEM`] (66 bytes, hex).
    pub const P521_CLIENT_KEY_HEX: &str = "00cd62c0c548a49ac3f91f548b30a36b449ac2e7e53081dae1434f9e840ab9c6e9a434d2241d8216f20476805774ed26cc0eb6d2b3e6903318f06c61628c2bde151a";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A rustls signing key for P-521, which *ring* cannot do: plays the
    /// part of Terraform's Go TLS stack in tests.
    struct P521SigningKey(Arc<p521::ecdsa::SigningKey>);

    impl std::fmt::Debug for P521SigningKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("P521SigningKey")
        }
    }

    impl SigningKey for P521SigningKey {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            offered
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
                .then(|| Box::new(P521Signer(self.0.clone())) as Box<dyn Signer>)
        }

        fn algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::ECDSA
        }
    }

    struct P521Signer(Arc<p521::ecdsa::SigningKey>);

    impl std::fmt::Debug for P521Signer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("P521Signer")
        }
    }

    impl Signer for P521Signer {
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            let sig: p521::ecdsa::Signature = self
                .0
                .try_sign(message)
                .map_err(|e| rustls::Error::General(format!("p521 sign: {e}")))?;
            Ok(sig.to_der().as_bytes().to_vec())
        }

        fn scheme(&self) -> SignatureScheme {
            SignatureScheme::ECDSA_NISTP521_SHA512
        }
    }

    /// The Terraform-like P-521 client certificate and its key.
    pub fn p521_client() -> (CertificateDer<'static>, Arc<CertifiedKey>) {
        let der = rustls_pemfile::certs(&mut P521_CLIENT_CERT_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let sk = p521::ecdsa::SigningKey::from_slice(&hex(P521_CLIENT_KEY_HEX)).unwrap();
        let ck = CertifiedKey::new(vec![der.clone()], Arc::new(P521SigningKey(Arc::new(sk))));
        (der, Arc::new(ck))
    }

    /// A fresh random P-521 key (matching no certificate).
    pub fn random_p521_signing_key() -> Arc<dyn SigningKey> {
        let sk = p521::ecdsa::SigningKey::random(&mut p521::elliptic_curve::rand_core::OsRng);
        Arc::new(P521SigningKey(Arc::new(sk)))
    }

    /// A fresh self-signed P-256 certificate and key made with rcgen.
    pub fn p256_client() -> (CertificateDer<'static>, Arc<CertifiedKey>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let pk = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signer = super::ring_provider()
            .key_provider
            .load_private_key(pk)
            .unwrap();
        (der.clone(), Arc::new(CertifiedKey::new(vec![der], signer)))
    }

    /// What a go-plugin client does with the handshake certificate: trust
    /// exactly it, check it is valid now, names `localhost`, allows
    /// serverAuth and is correctly self-signed; then check handshake
    /// signatures with it.
    #[derive(Debug)]
    pub struct PinnedServerVerifier {
        pub expected: CertificateDer<'static>,
    }

    impl ServerCertVerifier for PinnedServerVerifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            _ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            use x509_parser::extensions::GeneralName;
            use x509_parser::prelude::{FromDer, X509Certificate};
            let bad = |m: &str| rustls::Error::General(format!("server cert: {m}"));
            if end_entity.as_ref() != self.expected.as_ref() {
                return Err(bad("not the handshake certificate"));
            }
            if server_name.to_str() != "localhost" {
                return Err(bad("unexpected server name"));
            }
            let (_, cert) = X509Certificate::from_der(end_entity).map_err(|_| bad("parse"))?;
            let now = now.as_secs() as i64;
            let v = cert.validity();
            if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
                return Err(bad("not valid now"));
            }
            let san = cert
                .subject_alternative_name()
                .map_err(|_| bad("san"))?
                .ok_or_else(|| bad("no SAN"))?;
            if !san
                .value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::DNSName("localhost")))
            {
                return Err(bad("SAN lacks localhost"));
            }
            let eku = cert
                .extended_key_usage()
                .map_err(|_| bad("eku"))?
                .ok_or_else(|| bad("no EKU"))?;
            if !eku.value.server_auth {
                return Err(bad("EKU lacks serverAuth"));
            }
            // Self-signature: ECDSA P-256 with SHA-256 over the TBS bytes.
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                &cert.public_key().subject_public_key.data,
            )
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .map_err(|_| bad("bad self-signature"))?;
            Ok(ServerCertVerified::assertion())
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
                &super::ring_provider().signature_verification_algorithms,
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
                &super::ring_provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            super::ring_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}
