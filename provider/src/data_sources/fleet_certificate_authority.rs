//! Data source `fleet_certificate_authority`: looks a CA up by `id` or by
//! `name`, e.g. to issue certificates from a CA another configuration owns.

use async_trait::async_trait;
use fleet_api::{CertificateAuthority as ApiCa, Page};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::resources::api_diag;
use crate::tfplugin::{
    AttrPath, Attribute, Block, DataSource, Diagnostic, Diagnostics, Schema, Value,
};

pub struct CertificateAuthority;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    common_name: Option<String>,
    organization: Option<String>,
    key_algorithm: Option<String>,
    validity_days: Option<i64>,
    imported: Option<bool>,
    certificate_pem: Option<String>,
    fingerprint: Option<String>,
    serial: Option<String>,
    not_before: Option<String>,
    not_after: Option<String>,
    version: Option<i64>,
}

#[async_trait]
impl DataSource<Client> for CertificateAuthority {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_certificate_authority"
    }

    fn schema(&self) -> Schema {
        let computed =
            |name: &str, text: &str| Attribute::string(name).computed().description(text);
        Schema::new(
            0,
            Block::new("Looks up a certificate authority in fleetd by `id` or by `name` (exactly one). Never returns the CA's private key.")
                .attr(
                    Attribute::string("id")
                        .optional_computed()
                        .description("The CA's id. Exactly one of `id` and `name`."),
                )
                .attr(
                    Attribute::string("name")
                        .optional_computed()
                        .description("The CA's name. Exactly one of `id` and `name`."),
                )
                .attr(computed("description", "Free text shown to operators."))
                .attr(computed("common_name", "Subject common name of the CA certificate."))
                .attr(computed("organization", "Subject organization, or null."))
                .attr(computed("key_algorithm", "`ECDSA_P256`, `ED25519` (generated CAs), `ECDSA_P384` or `RSA` (imported)."))
                .attr(Attribute::number("validity_days").computed().description("Validity period in days."))
                .attr(Attribute::bool("imported").computed().description("`true` for an imported CA, `false` for one fleetd generated."))
                .attr(computed("certificate_pem", "The CA certificate, PEM: what devices and servers trust."))
                .attr(computed("fingerprint", "SHA-256 of the certificate's DER encoding, lower-case hex."))
                .attr(computed("serial", "Serial number, lower-case hex."))
                .attr(computed("not_before", "Start of validity (RFC 3339, UTC)."))
                .attr(computed("not_after", "End of validity (RFC 3339, UTC)."))
                .attr(Attribute::number("version").computed().description("fleetd's object version.")),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let set = |n: &str| !config.attr(n).unwrap_or(&Value::Null).is_null();
        match (set("id"), set("name")) {
            (true, true) => diags.push(
                Diagnostic::error(
                    "name conflicts with id",
                    "Look the CA up by id or by name, not both.",
                )
                .at(AttrPath::root("name")),
            ),
            (false, false) => diags.push(
                Diagnostic::error(
                    "Missing id",
                    "Set id or name to choose the certificate authority.",
                )
                .at(AttrPath::root("id")),
            ),
            _ => {}
        }
    }

    async fn read(&self, client: &Client, config: Model) -> Result<Model, Diagnostics> {
        if let Some(id) = &config.id {
            let ca: Option<ApiCa> = client
                .get_opt(&format!("/v1/certificate-authorities/{id}"))
                .await
                .map_err(|e| api_diag("Could not read certificate authority", e))?;
            return ca.map(from_api).ok_or_else(|| {
                Diagnostic::error(
                    "Certificate authority not found",
                    format!("fleetd has no certificate authority with id {id:?}."),
                )
                .at(AttrPath::root("id"))
                .into()
            });
        }
        let name = config.name.clone().unwrap_or_default();
        let mut token: Option<String> = None;
        loop {
            let mut path = "/v1/certificate-authorities?limit=1000".to_string();
            if let Some(t) = &token {
                path.push_str(&format!("&page_token={t}"));
            }
            let page: Page<ApiCa> = client
                .get(&path)
                .await
                .map_err(|e| api_diag("Could not list certificate authorities", e))?;
            if let Some(ca) = page.items.into_iter().find(|c| c.name == name) {
                return Ok(from_api(ca));
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Err(Diagnostic::error(
            "Certificate authority not found",
            format!("fleetd has no certificate authority named {name:?}."),
        )
        .at(AttrPath::root("name"))
        .into())
    }
}

fn from_api(ca: ApiCa) -> Model {
    Model {
        id: Some(ca.id),
        name: Some(ca.name),
        description: Some(ca.description),
        common_name: Some(ca.common_name),
        organization: ca.organization,
        key_algorithm: Some(ca.key_algorithm),
        validity_days: Some(ca.validity_days),
        imported: Some(ca.imported),
        certificate_pem: Some(ca.certificate_pem),
        fingerprint: Some(ca.fingerprint),
        serial: Some(ca.serial),
        not_before: Some(ca.not_before),
        not_after: Some(ca.not_after),
        version: Some(ca.version),
    }
}
