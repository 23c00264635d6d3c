//! `fleet_certificate_authority` through real Terraform, the real provider
//! and a real fleetd: generated and imported CAs, the write-only key,
//! drift, force_destroy and plan-time errors.

use acceptance::Acc;
use anyhow::{Context, Result};
use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

const PROVIDER: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}
"#;

fn generated(name: &str, description: &str, extra: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "root" {{
  name          = "{name}"
  description   = "{description}"
  common_name   = "Fleet Root CA"
  organization  = "Fleetform"
  validity_days = 3650
  {extra}
}}
resource "fleet_certificate_authority" "edge" {{
  name          = "edge"
  key_algorithm = "ED25519"
}}
"#
    )
}

/// A CA certificate and its PKCS#8 key, made outside fleetd (as a platform
/// team importing its existing root would have them).
fn external_ca(cn: &str) -> Result<(String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn imported(extra: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "imp" {{
  name               = "imported-root"
  certificate_pem    = file("${{path.module}}/ca.pem")
  private_key_pem_wo = file("${{path.module}}/ca.key")
  {extra}
}}
"#
    )
}

fn raw_state(acc: &Acc) -> Result<String> {
    std::fs::read_to_string(acc.wd.path().join("terraform.tfstate"))
        .context("read terraform.tfstate")
}

#[test]
fn generated_lifecycle_update_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = generated("root", "first", "");
    let s = acc.wd.apply(&hcl)?;
    let addr = "fleet_certificate_authority.root";
    let id = s.str(addr, "id")?;
    assert_eq!(s.attr(addr, "imported")?, json!(false));
    assert_eq!(
        s.attr(addr, "key_algorithm")?,
        json!("ECDSA_P256"),
        "default planned and kept"
    );
    assert_eq!(s.attr(addr, "validity_days")?, json!(3650));
    assert_eq!(s.attr(addr, "version")?, json!(1));
    // Omitted common_name defaults to the name; omitted organization is null.
    assert_eq!(
        s.attr("fleet_certificate_authority.edge", "common_name")?,
        json!("edge")
    );
    assert_eq!(
        s.attr("fleet_certificate_authority.edge", "organization")?,
        json!(null)
    );
    assert_eq!(
        s.attr("fleet_certificate_authority.edge", "key_algorithm")?,
        json!("ED25519")
    );

    // fleetd holds exactly that CA, and the certificate says so too.
    let ca = acc
        .fleetd
        .get(&format!("/v1/certificate-authorities/{id}"))?
        .expect("CA in fleetd");
    assert_eq!(ca["description"], "first");
    assert_eq!(ca["fingerprint"], s.attr(addr, "fingerprint")?);
    assert_eq!(ca["certificate_pem"], s.attr(addr, "certificate_pem")?);
    let pem = s.str(addr, "certificate_pem")?;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())?;
    let (_, cert) = X509Certificate::from_der(&block.contents)?;
    assert!(cert.is_ca());
    assert_eq!(cert.subject().to_string(), "CN=Fleet Root CA, O=Fleetform");
    assert!(
        !raw_state(&acc)?.contains("PRIVATE KEY"),
        "a generated CA's key never leaves fleetd"
    );

    // Name and description change in place: same id and certificate.
    let hcl2 = generated("fleet-root", "second", "");
    let s2 = acc.wd.apply(&hcl2)?;
    assert_eq!(s2.str(addr, "id")?, id);
    assert_eq!(s2.attr(addr, "version")?, json!(2));
    assert_eq!(s2.attr(addr, "fingerprint")?, s.attr(addr, "fingerprint")?);
    let ca = acc
        .fleetd
        .get(&format!("/v1/certificate-authorities/{id}"))?
        .unwrap();
    assert_eq!(
        (ca["name"].as_str(), ca["description"].as_str()),
        (Some("fleet-root"), Some("second"))
    );

    acc.import_verify(&hcl2, addr, &id, &[])?;
    acc.import_block_noop(&hcl2, addr, &id)?;

    // Anything that is part of the certificate replaces the CA.
    acc.wd
        .write_config(&hcl2.replace("validity_days = 3650", "validity_days = 365"))?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(
        !empty && text.contains("must be replaced") && text.contains("forces replacement"),
        "{text}"
    );
    acc.wd.write_config(&hcl2)?;

    acc.wd.destroy()?;
    assert!(
        acc.fleetd.list("/v1/certificate-authorities")?.is_empty(),
        "fleetd still has CAs"
    );
    Ok(())
}

#[test]
fn imported_ca_key_is_write_only() -> Result<()> {
    let acc = Acc::new()?;
    let (cert_pem, key_pem) = external_ca("Acme Devices CA")?;
    // Without the trailing newline fleetd adds: state must keep the text.
    std::fs::write(acc.wd.path().join("ca.pem"), cert_pem.trim_end())?;
    std::fs::write(acc.wd.path().join("ca.key"), &key_pem)?;
    let key_body = key_pem.lines().nth(1).unwrap().to_string();
    let addr = "fleet_certificate_authority.imp";

    let hcl = imported("private_key_pem_wo_version = 1");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str(addr, "id")?;
    assert_eq!(s.attr(addr, "imported")?, json!(true));
    assert_eq!(s.attr(addr, "common_name")?, json!("Acme Devices CA"));
    assert_eq!(
        s.attr(addr, "organization")?,
        json!("Acme"),
        "read from the certificate"
    );
    assert_eq!(s.attr(addr, "key_algorithm")?, json!("ECDSA_P256"));
    assert_eq!(s.attr(addr, "certificate_pem")?, json!(cert_pem.trim_end()));
    assert_eq!(s.attr(addr, "private_key_pem_wo")?, json!(null));
    let ca = acc
        .fleetd
        .get(&format!("/v1/certificate-authorities/{id}"))?
        .unwrap();
    assert_eq!(ca["imported"], true);
    assert_eq!(ca["fingerprint"], s.attr(addr, "fingerprint")?);

    // The key is nowhere in Terraform's files: not in state, not in a plan.
    for text in [raw_state(&acc)?, s.0.to_string()] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key_body),
            "key leaked into state"
        );
    }
    acc.wd.write_config(&imported(
        "private_key_pem_wo_version = 1\n  description = \"planned\"",
    ))?;
    let plan = acc.wd.plan_json()?.to_string();
    assert!(
        plan.contains("planned"),
        "the plan is the one with the change"
    );
    assert!(
        !plan.contains("PRIVATE KEY") && !plan.contains(&key_body),
        "key leaked into the plan"
    );

    // Reformatting the PEM is not a new CA: an in-place, state-only update.
    std::fs::write(acc.wd.path().join("ca.pem"), &cert_pem)?;
    acc.wd.write_config(&hcl)?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(
        !empty && text.contains("1 to change") && !text.contains("must be replaced"),
        "{text}"
    );
    let s = acc.wd.apply(&hcl)?;
    assert_eq!(s.str(addr, "id")?, id);
    assert_eq!(s.attr(addr, "certificate_pem")?, json!(cert_pem));

    // Bumping the key version is how a new key is brought in: a new CA.
    let hcl2 = imported("private_key_pem_wo_version = 2");
    acc.wd.write_config(&hcl2)?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty && text.contains("must be replaced"), "{text}");
    let s2 = acc.wd.apply(&hcl2)?;
    let id2 = s2.str(addr, "id")?;
    assert_ne!(id2, id);
    assert!(acc
        .fleetd
        .get(&format!("/v1/certificate-authorities/{id}"))?
        .is_none());

    // Import cannot read the key or its version back (the version is a
    // Terraform-side counter fleetd never sees), so it is ignored; the rest
    // must match, and the plan must be empty without a version.
    let no_version = imported("");
    acc.import_verify(&no_version, addr, &id2, &["private_key_pem_wo_version"])?;
    acc.import_block_noop(&no_version, addr, &id2)?;
    // Setting a version where none was (after import) records it in place.
    let hcl3 = imported("private_key_pem_wo_version = 3");
    acc.wd.write_config(&hcl3)?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(
        !empty && text.contains("1 to change") && !text.contains("must be replaced"),
        "{text}"
    );
    let s3 = acc.wd.apply(&hcl3)?;
    assert_eq!(s3.str(addr, "id")?, id2);
    assert_eq!(
        s3.attr(addr, "version")?,
        s2.attr(addr, "version")?,
        "fleetd untouched"
    );

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

#[test]
fn invalid_input_fails_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    let (cert_pem, _) = external_ca("Acme")?;
    let (_, other_key) = external_ca("Other")?;
    std::fs::write(acc.wd.path().join("ca.pem"), &cert_pem)?;
    std::fs::write(acc.wd.path().join("ca.key"), &other_key)?;

    acc.wd.plan_error(
        &imported(""),
        &[
            "does not match the certificate's public key",
            "private_key_pem_wo",
        ],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\nresource \"fleet_certificate_authority\" \"x\" {{\n  name = \"x\"\n  certificate_pem = file(\"${{path.module}}/ca.pem\")\n}}\n"),
        &["Missing private_key_pem_wo"],
    )?;
    acc.wd.plan_error(
        &imported("common_name = \"Nope\""),
        &["common_name conflicts with certificate_pem"],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\nresource \"fleet_certificate_authority\" \"x\" {{\n  name = \"x\"\n  certificate_pem = \"not a pem\"\n  private_key_pem_wo = \"k\"\n}}\n"),
        &["Invalid value for certificate_pem", "not a PEM document"],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\nresource \"fleet_certificate_authority\" \"x\" {{\n  name = \"x\"\n  key_algorithm = \"RSA\"\n}}\n"),
        &["Invalid value for key_algorithm", "must be one of ECDSA_P256, ED25519"],
    )?;
    acc.wd.plan_error(
        &format!(
            "{PROVIDER}\nresource \"fleet_certificate_authority\" \"x\" {{\n  name = \"-x\"\n}}\n"
        ),
        &[
            "Invalid value for name",
            "must start with a letter or digit",
        ],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\nresource \"fleet_certificate_authority\" \"x\" {{\n  name = \"x\"\n  validity_days = 0\n}}\n"),
        &["Invalid value for validity_days"],
    )?;
    assert!(
        acc.fleetd.list("/v1/certificate-authorities")?.is_empty(),
        "nothing was written"
    );
    Ok(())
}

#[test]
fn drift_and_force_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = generated("root", "d", "");
    let s = acc.wd.apply(&hcl)?;
    let addr = "fleet_certificate_authority.root";
    let id = s.str(addr, "id")?;

    // Renamed behind Terraform's back: the plan renames it back.
    let (status, _) = acc.fleetd.send(
        "PUT",
        &format!("/v1/certificate-authorities/{id}"),
        Some(&json!({"name": "root", "description": "edited by hand", "version": 1})),
    )?;
    assert_eq!(status, 200);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(
        !empty && text.contains("edited by hand") && text.contains("1 to change"),
        "{text}"
    );
    acc.wd.apply(&hcl)?;

    // Deleted behind Terraform's back: the plan creates it again.
    let (status, _) =
        acc.fleetd
            .send("DELETE", &format!("/v1/certificate-authorities/{id}"), None)?;
    assert_eq!(status, 204);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty && text.contains("1 to add"), "{text}");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str(addr, "id")?;

    // A certificate issued outside this configuration blocks deleting the
    // CA, with advice; force_destroy (applied in place) deletes it first.
    let (status, cert) = acc.fleetd.send(
        "POST",
        "/v1/certificates",
        Some(&json!({"ca_id": id, "common_name": "stray", "key_algorithm": "ECDSA_P256"})),
    )?;
    assert_eq!(status, 201, "{cert}");
    let out = acc.wd.run(&["destroy", "-auto-approve", "-no-color"])?;
    let text = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!out.status.success(), "destroy should fail");
    assert!(
        text.contains("active certificate") && text.contains("force_destroy"),
        "{text}"
    );

    let hcl_force = generated("root", "d", "force_destroy = true");
    let s = acc.wd.apply(&hcl_force)?;
    assert_eq!(s.str(addr, "id")?, id);
    assert_eq!(
        s.attr(addr, "version")?,
        json!(1),
        "force_destroy is Terraform-side only"
    );
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    Ok(())
}
