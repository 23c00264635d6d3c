//! Ephemeral resource `fleet_device_credentials` (Terraform ≥ 1.10): a
//! fleetd-generated private key and the certificate issued for it, for
//! bootstrapping a device. The result lives only while Terraform runs: it
//! can feed write-only arguments, provider configuration or ephemeral
//! outputs, and never reaches the plan or the state.
//!
//! Every open issues a new certificate (Terraform opens ephemeral resources
//! in each plan and apply whose configuration is known), because fleetd
//! hands a generated key out exactly once. Earlier certificates stay valid
//! until they expire or are revoked.

use async_trait::async_trait;
use fleet_api::{Certificate as ApiCertificate, CertificateCreate};
use fleet_domain::pki::{self, KeyAlgorithm};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::resources::api_diag;
use crate::resources::fleet_certificate::DEFAULT_VALIDITY_DAYS;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, EphemeralResource, Schema,
    Value,
};

pub struct DeviceCredentials;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    ca_id: String,
    device_id: Option<String>,
    common_name: Option<String>,
    validity_days: Option<i64>,
    key_algorithm: Option<String>,
    private_key_pem: Option<String>,
    certificate_pem: Option<String>,
    certificate_id: Option<String>,
    serial: Option<String>,
    fingerprint: Option<String>,
    not_after: Option<String>,
}

#[async_trait]
impl EphemeralResource<Client> for DeviceCredentials {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_device_credentials"
    }

    fn schema(&self) -> Schema {
        let computed =
            |name: &str, text: &str| Attribute::string(name).computed().description(text);
        Schema::new(
            0,
            Block::new("A fleetd-generated private key and a certificate issued for it, to bootstrap a device. Ephemeral (Terraform ≥ 1.10): the key is handed to other configuration (write-only arguments, provider configuration, ephemeral outputs) and never stored in plan or state. Each time Terraform opens it (every plan and apply whose configuration is known) fleetd issues a new certificate; earlier ones stay valid until they expire or are revoked.")
                .attr(
                    Attribute::string("ca_id")
                        .required()
                        .description("The issuing `fleet_certificate_authority`'s `id`."),
                )
                .attr(
                    Attribute::string("device_id")
                        .optional()
                        .description("An existing device's `id`; becomes the subject common name. Exactly one of `device_id` and `common_name`."),
                )
                .attr(
                    Attribute::string("common_name")
                        .optional_computed()
                        .description("Subject common name (1–64 characters) when not issuing to a device; with `device_id`, the device id. Exactly one of `device_id` and `common_name`.")
                        .validate(validators::length_between(1, pki::MAX_COMMON_NAME_LEN)),
                )
                .attr(
                    Attribute::number("validity_days")
                        .optional_computed()
                        .description("Validity in days, 1–36500 (default 365); may not outlive the CA. Bootstrap credentials are best short-lived.")
                        .validate(validators::int_between(1, pki::MAX_VALIDITY_DAYS)),
                )
                .attr(
                    Attribute::string("key_algorithm")
                        .optional_computed()
                        .description("`ECDSA_P256` (default) or `ED25519`.")
                        .validate(validators::one_of(&KeyAlgorithm::NAMES)),
                )
                .attr(
                    Attribute::string("private_key_pem")
                        .computed()
                        .sensitive()
                        .description("The generated private key, PKCS#8 PEM. fleetd does not keep it."),
                )
                .attr(computed("certificate_pem", "The issued certificate, PEM."))
                .attr(computed("certificate_id", "The certificate's id in fleetd (to revoke it, or attach policies to it)."))
                .attr(computed("serial", "Serial number, lower-case hex."))
                .attr(computed("fingerprint", "SHA-256 of the certificate's DER encoding, lower-case hex."))
                .attr(computed("not_after", "End of validity (RFC 3339, UTC).")),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let set = |n: &str| !config.attr(n).unwrap_or(&Value::Null).is_null();
        match (set("device_id"), set("common_name")) {
            (true, true) => diags.push(
                Diagnostic::error(
                    "common_name conflicts with device_id",
                    "A device's certificate is named after the device: set device_id or common_name, not both.",
                )
                .at(AttrPath::root("common_name")),
            ),
            (false, false) => diags.push(
                Diagnostic::error("Missing device_id", "Set device_id (the certificate is named after that device) or common_name.")
                    .at(AttrPath::root("device_id")),
            ),
            _ => {}
        }
    }

    async fn open(&self, client: &Client, config: Model) -> Result<Model, Diagnostics> {
        let key_algorithm = config
            .key_algorithm
            .clone()
            .unwrap_or_else(|| KeyAlgorithm::default().as_str().to_string());
        let validity_days = config.validity_days.unwrap_or(DEFAULT_VALIDITY_DAYS);
        let body = CertificateCreate {
            ca_id: config.ca_id.clone(),
            csr_pem: None,
            key_algorithm: Some(key_algorithm.clone()),
            device_id: config.device_id.clone(),
            common_name: if config.device_id.is_some() {
                None
            } else {
                config.common_name.clone()
            },
            validity_days: Some(validity_days),
            status: None,
        };
        let cert: ApiCertificate = client
            .post("/v1/certificates", &body)
            .await
            .map_err(|e| api_diag("Could not issue device credentials", e))?;
        let Some(key) = cert.private_key_pem else {
            return Err(Diagnostic::error(
                "fleetd returned no private key",
                format!("fleetd issued certificate {} but its response carries no private key; revoke it and check the fleetd version.", cert.id),
            )
            .into());
        };
        Ok(Model {
            ca_id: config.ca_id,
            device_id: config.device_id,
            common_name: Some(cert.common_name),
            validity_days: Some(validity_days),
            key_algorithm: Some(key_algorithm),
            private_key_pem: Some(key),
            certificate_pem: Some(cert.certificate_pem),
            certificate_id: Some(cert.id),
            serial: Some(cert.serial),
            fingerprint: Some(cert.fingerprint),
            not_after: Some(cert.not_after),
        })
    }
}
