//! `fleet_certificate_authority`: a CA that signs device certificates and
//! that device mTLS is verified against.
//!
//! Two ways to get one, decided by `certificate_pem` in the configuration:
//! - **generated** (no `certificate_pem`): fleetd creates the key and the
//!   self-signed certificate; the key never leaves fleetd.
//! - **imported** (`certificate_pem` + write-only `private_key_pem_wo`): the
//!   key travels to fleetd once, on create, and is never planned, stored in
//!   state or returned. Bumping `private_key_pem_wo_version` is how a user
//!   says "the key changed": it replaces the CA, because fleetd accepts a
//!   CA's key on creation only.
//!
//! Only `name` and `description` change in place; everything that is part
//! of the certificate replaces the CA.

use async_trait::async_trait;
use fleet_api::{
    Certificate as ApiCertificate, CertificateAuthority as ApiCa, CertificateAuthorityCreate,
    CertificateAuthorityUpdate, Page,
};
use fleet_domain::pki::{self, KeyAlgorithm};
use serde::{Deserialize, Serialize};

use super::api_diag;
use super::fleet_certificate::{domain_check, field_error, pem_text, pki_diag};
use crate::client::Client;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, PlanChange, Resource, Schema,
    Value,
};

/// Validity of a generated CA when `validity_days` is omitted (fleetd's
/// default, planned so the plan shows it).
pub const DEFAULT_VALIDITY_DAYS: i64 = 3650;

pub struct CertificateAuthority;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub common_name: Option<String>,
    pub organization: Option<String>,
    pub key_algorithm: Option<String>,
    pub validity_days: Option<i64>,
    pub certificate_pem: Option<String>,
    pub private_key_pem_wo: Option<String>,
    pub private_key_pem_wo_version: Option<i64>,
    pub force_destroy: Option<bool>,
    pub imported: Option<bool>,
    pub fingerprint: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub version: Option<i64>,
}

/// Attributes only a generated CA takes: fleetd reads them from the
/// certificate of an imported one.
const GENERATED_ONLY: [&str; 4] = [
    "common_name",
    "organization",
    "key_algorithm",
    "validity_days",
];

#[async_trait]
impl Resource<Client> for CertificateAuthority {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_certificate_authority"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("A certificate authority that signs device certificates and that device mTLS is verified against. Generated inside fleetd (the key never leaves it), or imported with `certificate_pem` and the write-only `private_key_pem_wo` (Terraform ≥ 1.11; the key is never stored in plan or state).")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The CA's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("name")
                        .required()
                        .description("Name, unique among CAs: letters, digits, `.`, `_`, `-`, starting with a letter or digit. Changes in place.")
                        .validate(domain_check(fleet_domain::group::validate_name)),
                )
                .attr(
                    Attribute::string("description")
                        .default("")
                        .description("Free text shown to operators. Changes in place.")
                        .validate(validators::length_between(0, 1024)),
                )
                .attr(
                    Attribute::string("common_name")
                        .optional_computed()
                        .requires_replace()
                        .use_state_for_unknown()
                        .description("Generated CAs: subject common name of the CA certificate (at most 64 characters; defaults to `name` at creation). Imported CAs: read from the certificate.")
                        .validate(validators::length_between(1, pki::MAX_COMMON_NAME_LEN)),
                )
                .attr(
                    Attribute::string("organization")
                        .optional_computed()
                        .requires_replace()
                        .use_state_for_unknown()
                        .description("Generated CAs: subject organization (at most 64 characters). Imported CAs: read from the certificate.")
                        .validate(validators::length_between(1, pki::MAX_COMMON_NAME_LEN)),
                )
                .attr(
                    Attribute::string("key_algorithm")
                        .optional_computed()
                        .requires_replace()
                        .use_state_for_unknown()
                        .description("Generated CAs: `ECDSA_P256` (default) or `ED25519`. Imported CAs: read from the key (may also be `ECDSA_P384` or `RSA`).")
                        .validate(validators::one_of(&KeyAlgorithm::NAMES)),
                )
                .attr(
                    Attribute::number("validity_days")
                        .optional_computed()
                        .requires_replace()
                        .use_state_for_unknown()
                        .description("Generated CAs: validity in days, 1–36500 (default 3650). Imported CAs: computed from the certificate.")
                        .validate(validators::int_between(1, pki::MAX_VALIDITY_DAYS)),
                )
                .attr(
                    Attribute::string("certificate_pem")
                        .optional_computed()
                        .requires_replace()
                        .use_state_for_unknown()
                        .description("Set to import a CA: its certificate, PEM (a CA certificate allowed to sign certificates, valid now; intermediates are fine). Requires `private_key_pem_wo`. For a generated CA, the certificate fleetd created.")
                        .validate(domain_check(|s| {
                            pki::inspect_certificate("certificate_pem", s)
                                .map(drop)
                                .map_err(|e| field_error("certificate_pem", e))
                        })),
                )
                .attr(
                    Attribute::string("private_key_pem_wo")
                        .optional()
                        .write_only()
                        .sensitive()
                        .description("Write-only (Terraform ≥ 1.11): the imported CA's unencrypted PKCS#8 private key, PEM. Sent to fleetd on creation only, stored there encrypted, never in Terraform's plan or state. Use an ephemeral value (e.g. from a secrets manager) so it does not appear anywhere else either."),
                )
                .attr(
                    Attribute::number("private_key_pem_wo_version")
                        .optional()
                        .description("Any number you change when `private_key_pem_wo` changes: Terraform cannot see write-only values, so changing this is what replaces the CA with one using the new key. Setting it where it was unset (e.g. after `terraform import`) does not replace the CA."),
                )
                .attr(
                    Attribute::bool("force_destroy")
                        .default(false)
                        .description("When `true`, destroying the CA first deletes every certificate it issued (fleetd lists the non-revoked ones in the CA's CRL), including certificates issued outside this configuration such as those of `fleet_device_credentials`. When `false` (default), fleetd refuses to delete a CA that still has active certificates."),
                )
                .attr(
                    Attribute::bool("imported")
                        .computed()
                        .use_state_for_unknown()
                        .description("`true` when the CA was imported, `false` when fleetd generated it."),
                )
                .attr(
                    Attribute::string("fingerprint")
                        .computed()
                        .use_state_for_unknown()
                        .description("SHA-256 of the CA certificate's DER encoding, lower-case hex."),
                )
                .attr(
                    Attribute::string("serial")
                        .computed()
                        .use_state_for_unknown()
                        .description("Serial number of the CA certificate, lower-case hex."),
                )
                .attr(
                    Attribute::string("not_before")
                        .computed()
                        .use_state_for_unknown()
                        .description("Start of the CA certificate's validity (RFC 3339, UTC)."),
                )
                .attr(
                    Attribute::string("not_after")
                        .computed()
                        .use_state_for_unknown()
                        .description("End of the CA certificate's validity (RFC 3339, UTC)."),
                )
                .attr(
                    Attribute::number("version")
                        .computed()
                        .description("fleetd's object version, used for optimistic concurrency."),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let attr = |n: &str| config.attr(n).unwrap_or(&Value::Null);
        // Unknown values (e.g. module variables during `terraform validate`)
        // are not conflicts: they are checked again once known.
        let set = |v: &Value| !v.is_null() && !v.is_unknown();
        let importing = set(attr("certificate_pem"));
        if importing {
            for name in GENERATED_ONLY {
                if set(attr(name)) {
                    diags.push(
                        Diagnostic::error(
                            format!("{name} conflicts with certificate_pem"),
                            format!("An imported CA's {name} is read from its certificate; remove {name}, or remove certificate_pem to have fleetd generate the CA."),
                        )
                        .at(AttrPath::root(name)),
                    );
                }
            }
            if attr("private_key_pem_wo").is_null() {
                diags.push(
                    Diagnostic::error(
                        "Missing private_key_pem_wo",
                        "An imported CA (certificate_pem) needs its private key to sign certificates: set private_key_pem_wo.",
                    )
                    .at(AttrPath::root("private_key_pem_wo")),
                );
            }
            // Both known: check what fleetd will check (a CA certificate,
            // valid now, with this key) before anything is written.
            if let (Some(cert), Some(key)) = (
                attr("certificate_pem").as_str(),
                attr("private_key_pem_wo").as_str(),
            ) {
                // (A malformed certificate is already reported by its validator.)
                if pki::inspect_certificate("certificate_pem", cert).is_err() {
                    return;
                }
                if let Err(e) = pki::import_ca(cert, key, chrono::Utc::now()) {
                    diags.extend(pki_diag(
                        "Invalid CA",
                        e,
                        &[("private_key_pem", "private_key_pem_wo")],
                    ));
                }
            }
        } else if set(attr("private_key_pem_wo")) && attr("certificate_pem").is_null() {
            diags.push(
                Diagnostic::error(
                    "Missing certificate_pem",
                    "private_key_pem_wo imports a CA together with its certificate: set certificate_pem too, or remove private_key_pem_wo to have fleetd generate the CA.",
                )
                .at(AttrPath::root("certificate_pem")),
            );
        }
    }

    async fn modify_plan(
        &self,
        _client: Option<&Client>,
        plan: &mut PlanChange<'_>,
        _diags: &mut Diagnostics,
    ) {
        let cfg = |n: &str| plan.config.attr(n).cloned().unwrap_or(Value::Null);
        if plan.is_create() {
            let importing = !cfg("certificate_pem").is_null();
            plan.set_planned("imported", Value::Bool(importing));
            if !importing {
                // What fleetd fills in for a generated CA, planned exactly.
                if cfg("key_algorithm").is_null() {
                    plan.set_planned("key_algorithm", KeyAlgorithm::default().as_str().into());
                }
                if cfg("validity_days").is_null() {
                    plan.set_planned("validity_days", DEFAULT_VALIDITY_DAYS.into());
                }
                if cfg("organization").is_null() {
                    plan.set_planned("organization", Value::Null);
                }
                if cfg("common_name").is_null() {
                    let name = plan.planned_attr("name").clone();
                    plan.set_planned("common_name", name);
                }
            }
            return;
        }
        // The same certificate, reformatted (e.g. after import, fleetd's
        // text ends with a newline the file does not have): not a new CA.
        if let (Some(p), Some(n)) = (
            plan.prior_attr("certificate_pem").as_str(),
            plan.planned_attr("certificate_pem").as_str(),
        ) {
            if p.trim() == n.trim() {
                plan.requires_replace
                    .retain(|a| a != &AttrPath::root("certificate_pem"));
            }
        }
        // The write-only key's version: a change from one value to another
        // means a new key, which fleetd only takes on creation.
        let (pv, nv) = (
            plan.prior_attr("private_key_pem_wo_version"),
            plan.planned_attr("private_key_pem_wo_version"),
        );
        if !pv.is_null() && !nv.is_null() && pv != nv {
            plan.require_replace("private_key_pem_wo_version");
        }
        // Only name and description reach fleetd; anything else changing in
        // place (force_destroy, the key version, PEM whitespace) keeps
        // fleetd's version.
        let same = |n: &str| plan.planned_attr(n) == plan.prior_attr(n);
        if same("name") && same("description") {
            let v = plan.prior_attr("version").clone();
            plan.set_planned("version", v);
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        config: Model,
    ) -> Result<Model, Diagnostics> {
        let importing = config.certificate_pem.is_some();
        let body = CertificateAuthorityCreate {
            name: plan.name.clone(),
            description: plan.description.clone().unwrap_or_default(),
            common_name: if importing {
                None
            } else {
                plan.common_name.clone()
            },
            organization: if importing {
                None
            } else {
                config.organization.clone()
            },
            key_algorithm: if importing {
                None
            } else {
                plan.key_algorithm.clone()
            },
            validity_days: if importing { None } else { plan.validity_days },
            certificate_pem: config.certificate_pem.clone(),
            private_key_pem: config.private_key_pem_wo.clone(),
        };
        let ca: ApiCa = client
            .post("/v1/certificate-authorities", &body)
            .await
            .map_err(|e| {
                let mut d = api_diag("Could not create certificate authority", e);
                rename_key_field(&mut d);
                d
            })?;
        Ok(from_api(ca, &plan))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id.clone() else {
            return Ok(None);
        };
        let ca: Option<ApiCa> = client
            .get_opt(&format!("/v1/certificate-authorities/{id}"))
            .await
            .map_err(|e| api_diag("Could not read certificate authority", e))?;
        Ok(ca.map(|ca| from_api(ca, &state)))
    }

    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.clone().unwrap_or_default();
        if plan.name == prior.name && plan.description == prior.description {
            // Nothing fleetd stores changed (force_destroy, the key version).
            return Ok(Model {
                force_destroy: plan.force_destroy,
                private_key_pem_wo_version: plan.private_key_pem_wo_version,
                certificate_pem: plan.certificate_pem.or(prior.certificate_pem),
                ..prior
            });
        }
        let body = CertificateAuthorityUpdate {
            name: plan.name.clone(),
            description: plan.description.clone().unwrap_or_default(),
            version: prior.version.unwrap_or_default(),
        };
        let ca: ApiCa = client
            .put(&format!("/v1/certificate-authorities/{id}"), &body)
            .await
            .map_err(|e| api_diag("Could not update certificate authority", e))?;
        Ok(from_api(ca, &plan))
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.clone().unwrap_or_default();
        if state.force_destroy == Some(true) {
            for cert in issued_by(client, &id).await? {
                client
                    .delete(&format!("/v1/certificates/{}", cert.id))
                    .await
                    .map_err(|e| api_diag("Could not delete a certificate of the certificate authority (force_destroy)", e))?;
            }
        }
        let version = state
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        client
            .delete(&format!("/v1/certificate-authorities/{id}{version}"))
            .await
            .map_err(|e| {
                let mut d = api_diag("Could not delete certificate authority", e);
                if let Some(first) = d.0.first_mut() {
                    if first.detail.contains("active certificate") {
                        first.detail.push_str(" Set force_destroy = true (and apply it) to have Terraform delete the CA's certificates first.");
                    }
                }
                d
            })
    }

    async fn import(&self, client: &Client, id: &str) -> Result<Option<Model>, Diagnostics> {
        self.read(
            client,
            Model {
                id: Some(id.to_string()),
                force_destroy: Some(false),
                ..Default::default()
            },
        )
        .await
    }
}

/// Every certificate issued by CA `ca_id`, all pages.
async fn issued_by(client: &Client, ca_id: &str) -> Result<Vec<ApiCertificate>, Diagnostics> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/certificates?ca_id={ca_id}&limit=1000");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let page: Page<ApiCertificate> = client
            .get(&path)
            .await
            .map_err(|e| api_diag("Could not list the certificate authority's certificates", e))?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// fleetd calls the key `private_key_pem`; in Terraform it is the
/// write-only `private_key_pem_wo`.
fn rename_key_field(d: &mut Diagnostics) {
    for diag in &mut d.0 {
        if diag.path == Some(AttrPath::root("private_key_pem")) {
            diag.path = Some(AttrPath::root("private_key_pem_wo"));
        }
    }
}

/// `known` carries what Terraform already holds: the certificate text as the
/// user wrote it (fleetd trims it) and the attributes fleetd does not store.
fn from_api(ca: ApiCa, known: &Model) -> Model {
    Model {
        id: Some(ca.id),
        name: ca.name,
        description: Some(ca.description),
        common_name: Some(ca.common_name),
        organization: ca.organization,
        key_algorithm: Some(ca.key_algorithm),
        validity_days: Some(ca.validity_days),
        certificate_pem: Some(pem_text(
            &ca.certificate_pem,
            known.certificate_pem.as_deref(),
        )),
        private_key_pem_wo: None,
        private_key_pem_wo_version: known.private_key_pem_wo_version,
        force_destroy: Some(known.force_destroy.unwrap_or(false)),
        imported: Some(ca.imported),
        fingerprint: Some(ca.fingerprint),
        serial: Some(ca.serial),
        not_before: Some(ca.not_before),
        not_after: Some(ca.not_after),
        version: Some(ca.version),
    }
}
