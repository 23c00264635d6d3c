//! The factory: a CA whose key the simulator holds, signing device
//! certificates locally, the way a production line provisions devices
//! before they ever reach fleetd.
//!
//! The CA is imported into fleetd (`fleet_certificate_authority` with
//! `certificate_pem` + `private_key_pem`) and a `fleet_enrollment` on it
//! lets the devices register themselves on first contact.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use fleet_domain::pki::{self, CertificateAuthority, KeyAlgorithm, NewCa, Serial, Subject};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File names [`Factory::save`] and [`Factory::load`] use.
pub const CA_CERT_FILE: &str = "factory-ca.pem";
pub const CA_KEY_FILE: &str = "factory-ca.key";

/// A factory CA, able to sign device certificates.
pub struct Factory {
    ca: CertificateAuthority,
    certificate_pem: String,
    private_key_pem: String,
}

impl std::fmt::Debug for Factory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factory")
            .field("ca", &self.ca.info().subject)
            .finish_non_exhaustive()
    }
}

/// A device's key and certificate, ready for TLS.
#[derive(Debug)]
pub struct DeviceCredentials {
    pub common_name: String,
    pub certificate_pem: String,
    pub certificate: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for DeviceCredentials {
    fn clone(&self) -> Self {
        DeviceCredentials {
            common_name: self.common_name.clone(),
            certificate_pem: self.certificate_pem.clone(),
            certificate: self.certificate.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl DeviceCredentials {
    /// Credentials issued elsewhere (e.g. by fleetd from the device's
    /// CSR): the certificate and the device's PKCS#8 key, PEM.
    pub fn from_pem(
        common_name: &str,
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> anyhow::Result<DeviceCredentials> {
        Ok(DeviceCredentials {
            common_name: common_name.to_owned(),
            certificate: CertificateDer::from_pem_slice(certificate_pem.as_bytes())
                .context("device certificate PEM")?,
            key: PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes())
                .context("device key PEM")?,
            certificate_pem: certificate_pem.to_owned(),
        })
    }
}

impl Factory {
    /// A new P-256 CA valid for `validity_days` from now.
    pub fn generate(common_name: &str, validity_days: i64) -> anyhow::Result<Factory> {
        let material = pki::generate_ca(
            &NewCa {
                common_name,
                organization: Some("Fleetform simulated factory"),
                validity_days,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            Serial::random(&mut rand::rng()),
            Utc::now(),
        )
        .map_err(|e| anyhow::anyhow!("generating the factory CA: {e}"))?;
        Self::from_pem(&material.certificate_pem, &material.private_key_pem)
    }

    /// A CA from its certificate and PKCS#8 key.
    pub fn from_pem(certificate_pem: &str, private_key_pem: &str) -> anyhow::Result<Factory> {
        let ca = CertificateAuthority::from_pem(certificate_pem, private_key_pem)
            .map_err(|e| anyhow::anyhow!("loading the factory CA: {e}"))?;
        Ok(Factory {
            ca,
            certificate_pem: certificate_pem.to_owned(),
            private_key_pem: private_key_pem.to_owned(),
        })
    }

    /// Reads `factory-ca.pem` and `factory-ca.key` from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Factory> {
        let cert = std::fs::read_to_string(dir.join(CA_CERT_FILE))
            .with_context(|| format!("reading {}", dir.join(CA_CERT_FILE).display()))?;
        let key = std::fs::read_to_string(dir.join(CA_KEY_FILE))
            .with_context(|| format!("reading {}", dir.join(CA_KEY_FILE).display()))?;
        Self::from_pem(&cert, &key)
    }

    /// Writes `factory-ca.pem` and `factory-ca.key` (mode 0600) to `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(CA_CERT_FILE), &self.certificate_pem)?;
        let key_path = dir.join(CA_KEY_FILE);
        std::fs::write(&key_path, &self.private_key_pem)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA key, for importing the CA into fleetd.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// Signs a certificate for a fresh P-256 device key, valid from now
    /// for `validity_days`.
    pub fn issue(
        &self,
        common_name: &str,
        validity_days: i64,
    ) -> anyhow::Result<DeviceCredentials> {
        self.issue_at(common_name, validity_days, Utc::now())
    }

    /// [`Factory::issue`] as of `at` (for expired or not-yet-valid
    /// certificates in tests).
    pub fn issue_at(
        &self,
        common_name: &str,
        validity_days: i64,
        at: DateTime<Utc>,
    ) -> anyhow::Result<DeviceCredentials> {
        // Never outlive the CA: clamp to its remaining lifetime.
        let left = (self.ca.info().not_after - at).num_days();
        let validity_days = validity_days.min(left).max(1);
        let issued = pki::issue_certificate(
            &self.ca,
            &pki::NewCertificate {
                subject: Subject::CommonName(common_name),
                validity_days,
                key: pki::SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            Serial::random(&mut rand::rng()),
            at,
        )
        .map_err(|e| anyhow::anyhow!("issuing a certificate for {common_name}: {e}"))?;
        let key_pem = issued
            .private_key_pem
            .context("the factory generated no device key")?;
        Ok(DeviceCredentials {
            common_name: common_name.to_owned(),
            certificate: CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes())
                .context("device certificate PEM")?,
            key: PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("device key PEM")?,
            certificate_pem: issued.certificate_pem,
        })
    }
}

/// A factory shared by many device tasks.
pub type SharedFactory = Arc<Factory>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_verifiable_device_certificates_and_round_trips_files() {
        let f = Factory::generate("Test Factory", 30).unwrap();
        let creds = f.issue("dev-1", 7).unwrap();
        let ca_der = pki::certificate_der("ca", f.certificate_pem()).unwrap();
        let info = pki::verify_chain(creds.certificate.as_ref(), &ca_der, Utc::now()).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("dev-1"));

        let dir = tempfile::tempdir().unwrap();
        f.save(dir.path()).unwrap();
        let g = Factory::load(dir.path()).unwrap();
        assert_eq!(g.certificate_pem(), f.certificate_pem());
    }
}
