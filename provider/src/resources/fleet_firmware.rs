//! `fleet_firmware`: an immutable firmware release. fleetd has no update
//! for releases, so every argument forces a new one; the whole release is
//! checked at plan time with fleetd's own rules (semantic version, SHA-256,
//! URL, hardware models, and the signature when a key is given).

use async_trait::async_trait;
use fleet_api::{Firmware as ApiFirmware, FirmwareCreate};
use fleet_domain::firmware::{self as rules, FirmwareRelease};
use fleet_domain::FieldError;
use serde::{Deserialize, Serialize};

use super::{api_diag, retarget};
use crate::client::Client;
use crate::tfplugin::{
    AttrPath, Attribute, Block, Diagnostic, Diagnostics, PlanChange, Resource, Schema, Value,
};

pub struct Firmware;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    product: String,
    version: String,
    hardware: Vec<String>,
    url: String,
    sha256: String,
    size_bytes: i64,
    signature: Option<String>,
    signing_public_key: Option<String>,
    signature_verified: Option<bool>,
}

#[async_trait]
impl Resource<Client> for Firmware {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_firmware"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("An immutable firmware release that `fleet_firmware_rollout` can deliver. Releases never change in fleetd: changing any argument publishes a new release and deletes the old one (a release still used by a rollout cannot be deleted).")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The release's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("product")
                        .required()
                        .requires_replace()
                        .description("Product line, e.g. `meter-fw`: 1–64 letters, digits, `.`, `_`, `-`, starting with a letter or digit."),
                )
                .attr(
                    Attribute::string("version")
                        .required()
                        .requires_replace()
                        .description("Semantic version, e.g. `1.4.2` or `2.0.0-rc.1`; unique per product."),
                )
                .attr(
                    Attribute::string_set("hardware")
                        .required()
                        .requires_replace()
                        .description("Compatible hardware models (`fleet_device.hardware`), 1 to 100."),
                )
                .attr(
                    Attribute::string("url")
                        .required()
                        .requires_replace()
                        .description("Where devices download the image: an `https://` (or `http://`) URL."),
                )
                .attr(
                    Attribute::string("sha256")
                        .required()
                        .requires_replace()
                        .description("SHA-256 of the image, 64 hexadecimal digits (e.g. `filesha256(\"fw.bin\")`). Devices verify it after download."),
                )
                .attr(
                    Attribute::number("size_bytes")
                        .required()
                        .requires_replace()
                        .description("Size of the image in bytes, greater than 0."),
                )
                .attr(
                    Attribute::string("signature")
                        .optional()
                        .requires_replace()
                        .description("Base64 Ed25519 signature over the 32 raw bytes of the image's SHA-256 digest."),
                )
                .attr(
                    Attribute::string("signing_public_key")
                        .optional()
                        .write_only()
                        .description("Ed25519 public key (PEM, `-----BEGIN PUBLIC KEY-----`) to verify `signature` against when the release is created; a signature that does not verify is refused at plan time. Write-only (Terraform 1.11 or later): fleetd does not store it and neither does the state, so changing it later has no effect on an existing release."),
                )
                .attr(
                    Attribute::bool("signature_verified")
                        .computed()
                        .use_state_for_unknown()
                        .description("Whether `signature` was verified against `signing_public_key` when the release was created."),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        validate_release(config, diags);
    }

    async fn modify_plan(
        &self,
        _client: Option<&Client>,
        plan: &mut PlanChange<'_>,
        _diags: &mut Diagnostics,
    ) {
        // fleetd keeps the digest in lower case; a configuration that only
        // changes its case describes the same release, so it is not
        // replaced (the new spelling is just recorded).
        if plan.is_create() {
            return;
        }
        if let (Some(new), Some(old)) = (
            plan.planned_attr("sha256").as_str(),
            plan.prior_attr("sha256").as_str(),
        ) {
            if new != old && new.eq_ignore_ascii_case(old) {
                let p = AttrPath::root("sha256");
                plan.requires_replace.retain(|x| x != &p);
            }
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = FirmwareCreate {
            product: plan.product.clone(),
            version: plan.version.clone(),
            hardware: plan.hardware.clone(),
            url: plan.url.clone(),
            sha256: plan.sha256.clone(),
            size_bytes: plan.size_bytes,
            signature: plan.signature.clone(),
            signing_public_key: config.signing_public_key.clone(),
        };
        let f: ApiFirmware = client
            .post("/v1/firmware", &body)
            .await
            .map_err(|e| errors("Could not create firmware release", e))?;
        Ok(from_api(f, Some(&plan.sha256)))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let f: Option<ApiFirmware> = client
            .get_opt(&format!("/v1/firmware/{id}"))
            .await
            .map_err(|e| errors("Could not read firmware release", e))?;
        Ok(f.map(|f| from_api(f, Some(&state.sha256))))
    }

    /// Only planned when `sha256` changes case: the release is unchanged in
    /// fleetd, the state records the new spelling.
    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.unwrap_or_default();
        let f: Option<ApiFirmware> = client
            .get_opt(&format!("/v1/firmware/{id}"))
            .await
            .map_err(|e| errors("Could not read firmware release", e))?;
        match f {
            Some(f) => Ok(from_api(f, Some(&plan.sha256))),
            None => Err(Diagnostic::error(
                "Firmware release not found",
                format!("fleetd has no firmware release {id:?} any more; run terraform apply again to publish it"),
            )
            .into()),
        }
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        client
            .delete(&format!("/v1/firmware/{id}"))
            .await
            .map_err(|e| errors("Could not delete firmware release", e))
    }

    async fn import(&self, client: &Client, id: &str) -> Result<Option<Model>, Diagnostics> {
        let f: Option<ApiFirmware> = client
            .get_opt(&format!("/v1/firmware/{id}"))
            .await
            .map_err(|e| errors("Could not read firmware release", e))?;
        Ok(f.map(|f| from_api(f, None)))
    }
}

/// A release that passes every rule; each check swaps in one configured
/// value so every invalid argument is reported, at its own attribute.
fn placeholder() -> FirmwareRelease {
    FirmwareRelease {
        product: "p".into(),
        version: "1.0.0".into(),
        hardware: vec!["h".into()],
        url: "https://example.com/firmware.bin".into(),
        sha256: "0".repeat(64),
        size_bytes: 1,
        signature: None,
    }
}

fn validate_release(config: &Value, diags: &mut Diagnostics) {
    let attr = |name: &str| config.attr(name).unwrap_or(&Value::Null);
    let text = |name: &str| attr(name).as_str().map(str::to_string);
    let mut report = |e: FieldError| {
        // `hardware` is a set: its elements have no index in Terraform.
        let path = if e.field.starts_with("hardware") {
            AttrPath::root("hardware")
        } else {
            AttrPath::parse(&e.field)
        };
        diags.push(Diagnostic::error(format!("Invalid value for {path}"), e.message).at(path));
    };
    let check = |r: FirmwareRelease| rules::validate_release(&r, None).err();

    if let Some(product) = text("product") {
        if let Some(e) = check(FirmwareRelease {
            product,
            ..placeholder()
        }) {
            report(e);
        }
    }
    if let Some(version) = text("version") {
        if let Some(e) = check(FirmwareRelease {
            version,
            ..placeholder()
        }) {
            report(e);
        }
    }
    if let Value::Set(items) = attr("hardware") {
        let hardware: Vec<String> = items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if hardware.len() == items.len() || !hardware.is_empty() {
            if let Some(e) = check(FirmwareRelease {
                hardware,
                ..placeholder()
            }) {
                report(e);
            }
        }
    }
    if let Some(url) = text("url") {
        if let Some(e) = check(FirmwareRelease {
            url,
            ..placeholder()
        }) {
            report(e);
        }
    }
    let sha256 = text("sha256");
    let mut sha_ok = false;
    if let Some(sha256) = &sha256 {
        match check(FirmwareRelease {
            sha256: sha256.clone(),
            ..placeholder()
        }) {
            Some(e) => report(e),
            None => sha_ok = true,
        }
    }
    if let Some(n) = attr("size_bytes").as_number() {
        match n.as_i64() {
            Some(size_bytes) => {
                if let Some(e) = check(FirmwareRelease {
                    size_bytes,
                    ..placeholder()
                }) {
                    report(e);
                }
            }
            None => report(FieldError::new(
                "size_bytes",
                format!("must be a whole number of bytes, got {n}"),
            )),
        }
    }
    let signature = text("signature");
    let mut sig_ok = false;
    if let Some(signature) = &signature {
        match check(FirmwareRelease {
            signature: Some(signature.clone()),
            ..placeholder()
        }) {
            Some(e) => report(e),
            None => sig_ok = true,
        }
    }
    let key = attr("signing_public_key");
    if let Some(pem) = key.as_str() {
        match rules::parse_public_key("signing_public_key", pem) {
            Err(e) => report(e),
            Ok(key) => {
                if attr("signature").is_null() {
                    report(FieldError::new(
                        "signature",
                        "is required when signing_public_key is given (the key only serves to verify it)",
                    ));
                } else if sig_ok && sha_ok {
                    // Everything the signature covers is known: verify now
                    // rather than fail at apply.
                    let r = FirmwareRelease {
                        sha256: sha256.unwrap_or_default(),
                        signature,
                        ..placeholder()
                    };
                    if let Err(e) = rules::validate_release(&r, Some(&key)) {
                        report(e);
                    }
                }
            }
        }
    }
}

/// fleetd names `hardware` elements by index; Terraform cannot address set
/// elements that way, so point at the attribute.
fn errors(action: &str, e: crate::client::ClientError) -> Diagnostics {
    retarget(api_diag(action, e), &[], &["hardware"])
}

/// `known_sha256` is the spelling Terraform holds; kept when it names the
/// same digest as fleetd's lower-case one.
fn from_api(f: ApiFirmware, known_sha256: Option<&str>) -> Model {
    let sha256 = match known_sha256 {
        Some(k) if k.eq_ignore_ascii_case(&f.sha256) => k.to_string(),
        _ => f.sha256,
    };
    let mut hardware = f.hardware;
    hardware.sort();
    hardware.dedup();
    Model {
        id: Some(f.id),
        product: f.product,
        version: f.version,
        hardware,
        url: f.url,
        sha256,
        size_bytes: f.size_bytes,
        signature: f.signature,
        signing_public_key: None,
        signature_verified: Some(f.signature_verified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    fn errors(pairs: &[(&str, Value)]) -> Vec<(String, String)> {
        let cfg = Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        );
        let mut d = Diagnostics::new();
        validate_release(&cfg, &mut d);
        d.0.iter()
            .map(|d| (d.path.as_ref().unwrap().to_string(), d.detail.clone()))
            .collect()
    }

    #[test]
    fn each_bad_argument_is_reported_at_its_attribute() {
        let e = errors(&[
            ("product", s("meter-fw")),
            ("version", s("1.4")),
            ("hardware", Value::Set(vec![s("m1"), s("bad model")])),
            ("url", s("ftp://x")),
            ("sha256", s("abc")),
            ("size_bytes", Value::from(0)),
        ]);
        let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec!["version", "hardware", "url", "sha256", "size_bytes"]
        );
        assert!(e[0].1.contains("invalid semantic version"), "{e:?}");
    }

    #[test]
    fn unknowns_are_not_errors() {
        assert!(errors(&[
            ("version", Value::Unknown),
            ("hardware", Value::Unknown),
            ("sha256", Value::Unknown),
            ("signing_public_key", Value::Unknown),
        ])
        .is_empty());
    }

    #[test]
    fn key_without_signature_and_bad_key() {
        let e = errors(&[("signing_public_key", s("nope"))]);
        assert_eq!(e[0].0, "signing_public_key");
    }
}
