//! `fleet_certificate` through real Terraform, the real provider and a real
//! fleetd: issuing from a CSR (chain checked independently), status and
//! revocation (CRL checked), generated keys kept out of state, drift, early
//! renewal and plan-time errors.

use acceptance::Acc;
use anyhow::{anyhow, Context, Result};
use rcgen::PublicKeyData;
use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

const PROVIDER: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}
"#;

const ADDR: &str = "fleet_certificate.dev";

/// A key and CSR made on the "device": the key never leaves the test.
fn device_csr(cn: &str) -> Result<(String, rcgen::KeyPair)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key))
}

/// The CSR with one byte of its signed content changed: still well-formed,
/// but its signature no longer verifies.
fn tampered(csr_pem: &str, cn: &str) -> Result<String> {
    use base64::Engine;
    let (_, block) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())?;
    let mut der = block.contents.clone();
    let at = der
        .windows(cn.len())
        .position(|w| w == cn.as_bytes())
        .ok_or_else(|| anyhow!("CN not in CSR"))?;
    der[at] ^= 0x01;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    Ok(format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        body.join("\n")
    ))
}

fn config(cert_args: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "ca" {{
  name = "devices"
}}
resource "fleet_certificate" "dev" {{
  ca_id = fleet_certificate_authority.ca.id
  {cert_args}
}}
"#
    )
}

fn csr_config(extra: &str) -> String {
    config(&format!(
        "csr_pem       = file(\"${{path.module}}/dev.csr\")\n  common_name   = \"sensor-001\"\n  validity_days = 30\n  {extra}"
    ))
}

fn der_of(pem: &str) -> Result<Vec<u8>> {
    Ok(x509_parser::pem::parse_x509_pem(pem.as_bytes())?.1.contents)
}

fn hex(bytes: &[u8]) -> String {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[first..].iter().map(|b| format!("{b:02x}")).collect()
}

fn raw_state(acc: &Acc) -> Result<String> {
    std::fs::read_to_string(acc.wd.path().join("terraform.tfstate"))
        .context("read terraform.tfstate")
}

/// Serials (hex) listed in the CA's CRL, after checking the CRL's signature.
fn crl_serials(acc: &Acc, ca_id: &str, ca_pem: &str) -> Result<Vec<String>> {
    let text = reqwest::blocking::Client::new()
        .get(format!(
            "{}/v1/certificate-authorities/{ca_id}/crl",
            acc.fleetd.endpoint
        ))
        .bearer_auth(&acc.fleetd.token)
        .send()?
        .error_for_status()?
        .text()?;
    let der = der_of(&text)?;
    let (_, crl) = CertificateRevocationList::from_der(&der)?;
    let ca_der = der_of(ca_pem)?;
    let (_, ca) = X509Certificate::from_der(&ca_der)?;
    crl.verify_signature(ca.public_key())
        .map_err(|e| anyhow!("CRL signature: {e}"))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| hex(r.raw_serial()))
        .collect())
}

#[test]
fn csr_lifecycle_chain_status_revoke_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let (csr, key) = device_csr("whatever-the-device-claims")?;
    std::fs::write(acc.wd.path().join("dev.csr"), &csr)?;
    let hcl = csr_config("");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str(ADDR, "id")?;
    let ca_id = s.str("fleet_certificate_authority.ca", "id")?;
    let ca_pem = s.str("fleet_certificate_authority.ca", "certificate_pem")?;
    assert_eq!(s.attr(ADDR, "status")?, json!("active"));
    assert_eq!(s.attr(ADDR, "revocation_reason")?, json!(null));
    assert_eq!(s.attr(ADDR, "ready_for_renewal")?, json!(false));
    assert_eq!(s.attr(ADDR, "key_algorithm")?, json!(null));
    assert_eq!(s.attr(ADDR, "csr_pem")?, json!(csr));

    // The certificate chains to the CA, names the subject Terraform asked
    // for (not what the CSR claims) and certifies the device's own key.
    let cert_der = der_of(&s.str(ADDR, "certificate_pem")?)?;
    let ca_der = der_of(&ca_pem)?;
    let (_, cert) = X509Certificate::from_der(&cert_der)?;
    let (_, ca) = X509Certificate::from_der(&ca_der)?;
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|e| anyhow!("chain: {e}"))?;
    assert_eq!(cert.subject().to_string(), "CN=sensor-001");
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    assert_eq!(hex(cert.raw_serial()), s.str(ADDR, "serial")?);
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(
        days, 30,
        "30 days (plus fleetd's few minutes of clock-skew backdating)"
    );
    let c = acc
        .fleetd
        .get(&format!("/v1/certificates/{id}"))?
        .expect("certificate in fleetd");
    assert_eq!(c["fingerprint"], s.attr(ADDR, "fingerprint")?);
    assert_eq!(c["ca_id"], json!(ca_id));

    // Deactivate, then revoke, in place.
    let s2 = acc.wd.apply(&csr_config("status = \"inactive\""))?;
    assert_eq!(s2.str(ADDR, "id")?, id);
    assert_eq!(s2.attr(ADDR, "version")?, json!(2));
    assert_eq!(
        acc.fleetd.get(&format!("/v1/certificates/{id}"))?.unwrap()["status"],
        "inactive"
    );
    assert!(
        crl_serials(&acc, &ca_id, &ca_pem)?.is_empty(),
        "inactive is not in the CRL"
    );

    let revoked = csr_config("status = \"revoked\"\n  revocation_reason = \"key_compromise\"");
    let s3 = acc.wd.apply(&revoked)?;
    assert_eq!(s3.str(ADDR, "id")?, id);
    assert_eq!(s3.attr(ADDR, "serial")?, s.attr(ADDR, "serial")?);
    assert!(s3.attr(ADDR, "revoked_at")?.is_string());
    let c = acc.fleetd.get(&format!("/v1/certificates/{id}"))?.unwrap();
    assert_eq!(
        (c["status"].as_str(), c["revocation_reason"].as_str()),
        (Some("revoked"), Some("key_compromise"))
    );
    assert_eq!(
        crl_serials(&acc, &ca_id, &ca_pem)?,
        vec![s.str(ADDR, "serial")?]
    );

    acc.import_verify(&revoked, ADDR, &id, &[])?;
    acc.import_block_noop(&revoked, ADDR, &id)?;

    // Revocation is permanent: asking for "active" again plans a new
    // certificate, with a warning.
    acc.wd.write_config(&csr_config(""))?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "{text}");
    for needle in [
        "must be replaced",
        "Revoked certificate will be replaced",
        "forces replacement",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    acc.wd.write_config(&revoked)?;

    acc.wd.destroy()?;
    assert!(
        acc.fleetd.list("/v1/certificates")?.is_empty(),
        "fleetd still has certificates"
    );
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

#[test]
fn generated_key_never_enters_state() -> Result<()> {
    let acc = Acc::new()?;
    let (status, device) = acc.fleetd.send(
        "POST",
        "/v1/devices",
        Some(&json!({"name": "bench-7", "hardware": "meter-v2"})),
    )?;
    assert_eq!(status, 201, "{device}");
    let device_id = device["id"].as_str().unwrap().to_string();
    let hcl = config(&format!(
        "device_id = \"{device_id}\"\n  key_algorithm = \"ED25519\""
    ));
    acc.wd.write_config(&hcl)?;
    let (_, plan_text) = acc.wd.plan_is_empty(true)?;
    assert!(
        plan_text.contains("The generated private key will be discarded"),
        "{plan_text}"
    );
    let s = acc.wd.apply(&hcl)?;
    let id = s.str(ADDR, "id")?;
    assert_eq!(
        s.attr(ADDR, "common_name")?,
        json!(device_id),
        "named after the device"
    );
    assert_eq!(s.attr(ADDR, "device_id")?, json!(device_id));
    assert_eq!(s.attr(ADDR, "key_algorithm")?, json!("ED25519"));
    assert!(
        !raw_state(&acc)?.contains("PRIVATE KEY"),
        "a device key entered the state"
    );
    let der = der_of(&s.str(ADDR, "certificate_pem")?)?;
    let (_, cert) = X509Certificate::from_der(&der)?;
    assert_eq!(cert.subject().to_string(), format!("CN={device_id}"));

    acc.import_verify(&hcl, ADDR, &id, &[])?;
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    assert_eq!(
        acc.fleetd
            .send("DELETE", &format!("/v1/devices/{device_id}"), None)?
            .0,
        204
    );
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

#[test]
fn drift_revoked_or_deleted_outside_terraform() -> Result<()> {
    let acc = Acc::new()?;
    let (csr, _key) = device_csr("d")?;
    std::fs::write(acc.wd.path().join("dev.csr"), &csr)?;
    let hcl = csr_config("");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str(ADDR, "id")?;

    // Revoked by the security team: the refreshed plan shows it and, since
    // revocation is permanent, a replacement.
    let (status, body) = acc.fleetd.send(
        "PUT",
        &format!("/v1/certificates/{id}"),
        Some(&json!({"status": "revoked", "revocation_reason": "superseded", "version": 1})),
    )?;
    assert_eq!(status, 200, "{body}");
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "{text}");
    for needle in [
        "\"revoked\" -> \"active\"",
        "must be replaced",
        "superseded",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    let s2 = acc.wd.apply(&hcl)?;
    let id2 = s2.str(ADDR, "id")?;
    assert_ne!(id2, id);
    assert_eq!(s2.attr(ADDR, "status")?, json!("active"));

    // Deleted outside Terraform: the plan issues it again.
    assert_eq!(
        acc.fleetd
            .send("DELETE", &format!("/v1/certificates/{id2}"), None)?
            .0,
        204
    );
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty && text.contains("1 to add"), "{text}");
    let s3 = acc.wd.apply(&hcl)?;
    assert_ne!(s3.str(ADDR, "id")?, id2);

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

#[test]
fn early_renewal_plans_a_replacement() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = |early: u32| {
        config(&format!(
            "common_name = \"renew-me\"\n  key_algorithm = \"ECDSA_P256\"\n  validity_days = 3\n  early_renewal_days = {early}"
        ))
    };
    let s = acc.wd.apply(&hcl(0))?;
    let (id, serial) = (s.str(ADDR, "id")?, s.str(ADDR, "serial")?);
    assert_eq!(s.attr(ADDR, "ready_for_renewal")?, json!(false));

    // 5 days before a 3-day certificate's end is now: due, so replaced.
    acc.wd.write_config(&hcl(5))?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "{text}");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "must be replaced",
        "ready_for_renewal = false -> (known after apply) # forces replacement",
        "early_renewal_days = 0 -> 5",
        "due for renewal as soon as it is issued",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    acc.wd.ok(&["apply", "-auto-approve", "-no-color"])?;
    let s2 = acc.wd.state()?;
    assert_ne!(s2.str(ADDR, "id")?, id);
    assert_ne!(s2.str(ADDR, "serial")?, serial);
    assert!(
        acc.fleetd.get(&format!("/v1/certificates/{id}"))?.is_none(),
        "the old one is gone"
    );

    // Refreshing records that the new certificate is due as well.
    acc.wd
        .ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
    assert_eq!(
        acc.wd.state()?.attr(ADDR, "ready_for_renewal")?,
        json!(true)
    );

    // Back to no early renewal: an in-place, Terraform-only change.
    let id2 = s2.str(ADDR, "id")?;
    let s3 = acc.wd.apply(&hcl(0))?;
    assert_eq!(s3.str(ADDR, "id")?, id2);
    assert_eq!(s3.attr(ADDR, "ready_for_renewal")?, json!(false));
    assert_eq!(s3.attr(ADDR, "version")?, json!(1), "fleetd untouched");

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    Ok(())
}

#[test]
fn invalid_input_fails_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    let (csr, _key) = device_csr("device-aaaa")?;
    std::fs::write(
        acc.wd.path().join("bad.csr"),
        tampered(&csr, "device-aaaa")?,
    )?;
    std::fs::write(acc.wd.path().join("dev.csr"), &csr)?;
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            config("csr_pem = \"not a csr\"\n  common_name = \"x\""),
            vec!["Invalid value for csr_pem", "not a PEM document"],
        ),
        (
            config("csr_pem = file(\"${path.module}/bad.csr\")\n  common_name = \"x\""),
            vec!["Invalid value for csr_pem", "signature does not verify"],
        ),
        (
            config("key_algorithm = \"ECDSA_P256\"\n  device_id = \"d\"\n  common_name = \"x\""),
            vec!["common_name conflicts with device_id"],
        ),
        (config("common_name = \"x\""), vec!["Missing csr_pem"]),
        (
            config("csr_pem = file(\"${path.module}/dev.csr\")\n  key_algorithm = \"ED25519\"\n  common_name = \"x\""),
            vec!["key_algorithm conflicts with csr_pem"],
        ),
        (
            config("key_algorithm = \"RSA\"\n  common_name = \"x\""),
            vec!["Invalid value for key_algorithm", "must be one of ECDSA_P256, ED25519"],
        ),
        (
            config("key_algorithm = \"ED25519\"\n  common_name = \"x\"\n  revocation_reason = \"superseded\""),
            vec!["revocation_reason without revocation"],
        ),
        (
            config("key_algorithm = \"ED25519\"\n  common_name = \"x\"\n  status = \"gone\""),
            vec!["Invalid value for status", "must be one of active, inactive, revoked"],
        ),
        (
            config("key_algorithm = \"ED25519\"\n  common_name = \"x\"\n  validity_days = 0"),
            vec!["Invalid value for validity_days"],
        ),
    ];
    for (hcl, needles) in &cases {
        acc.wd.plan_error(hcl, needles)?;
    }
    assert!(
        acc.fleetd.list("/v1/certificate-authorities")?.is_empty(),
        "nothing was written"
    );

    // A validity that outlives the CA is fleetd's call: at apply, at the
    // attribute fleetd names.
    let text = acc.wd.plan_error_or_apply_error(&format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "ca" {{
  name          = "short"
  validity_days = 10
}}
resource "fleet_certificate" "dev" {{
  ca_id         = fleet_certificate_authority.ca.id
  key_algorithm = "ED25519"
  common_name   = "x"
  validity_days = 20
}}
"#
    ))?;
    assert!(
        text.contains("would outlive its CA") && text.contains("validity_days"),
        "{text}"
    );
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}
