//! `fleet_policy_attachment` through real Terraform, the real provider and
//! a real fleetd.

use acceptance::Acc;
use anyhow::{Context, Result};
use serde_json::json;

const PROVIDER: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}
"#;

const BASE: &str = r#"
resource "fleet_device_group" "prod" {
  name = "prod"
}
resource "fleet_device_group" "staging" {
  name = "staging"
}
resource "fleet_policy" "p" {
  name = "baseline"
  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read"]
    resources = ["fleet:device/$${device.id}"]
  }
}
"#;

fn config(attachment: &str) -> String {
    format!("{PROVIDER}{BASE}\nresource \"fleet_policy_attachment\" \"a\" {{\n  policy_id = fleet_policy.p.id\n{attachment}\n}}\n")
}

fn line_of(hcl: &str, needle: &str) -> usize {
    hcl.lines()
        .position(|l| l.contains(needle))
        .expect("needle in hcl")
        + 1
}

#[test]
fn lifecycle_replace_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("  group_id = fleet_device_group.prod.id");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_policy_attachment.a", "id")?;
    let prod = s.str("fleet_device_group.prod", "id")?;
    let policy = s.str("fleet_policy.p", "id")?;
    assert_eq!(
        s.attr("fleet_policy_attachment.a", "certificate_id")?,
        json!(null)
    );

    let a = acc
        .fleetd
        .get(&format!("/v1/policy-attachments/{id}"))?
        .context("attachment in fleetd")?;
    assert_eq!(a["policy_id"], json!(policy));
    assert_eq!(a["group_id"], json!(prod));
    assert_eq!(a["certificate_id"], json!(null));

    // Attachments are immutable: a new target replaces the attachment.
    let hcl2 = config("  group_id = fleet_device_group.staging.id");
    acc.wd.write_config(&hcl2)?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty);
    assert!(
        text.contains("must be replaced") && text.contains("1 to add, 0 to change, 1 to destroy"),
        "{text}"
    );
    let s2 = acc.wd.apply(&hcl2)?;
    let id2 = s2.str("fleet_policy_attachment.a", "id")?;
    let staging = s2.str("fleet_device_group.staging", "id")?;
    assert_ne!(id2, id);
    assert!(acc
        .fleetd
        .get(&format!("/v1/policy-attachments/{id}"))?
        .is_none());
    let all = acc.fleetd.list("/v1/policy-attachments")?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["group_id"], json!(staging));

    acc.import_verify(&hcl2, "fleet_policy_attachment.a", &id2, &[])?;
    acc.import_block_noop(&hcl2, "fleet_policy_attachment.a", &id2)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policy-attachments")?.is_empty());
    assert!(acc.fleetd.list("/v1/policies")?.is_empty());
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    Ok(())
}

#[test]
fn attach_to_a_certificate() -> Result<()> {
    let acc = Acc::new()?;
    // A CA and a certificate made directly in fleetd.
    let (status, ca) = acc.fleetd.send(
        "POST",
        "/v1/certificate-authorities",
        Some(&json!({"name": "bench-ca"})),
    )?;
    assert_eq!(status, 201, "{ca}");
    let (status, cert) = acc.fleetd.send(
        "POST",
        "/v1/certificates",
        Some(&json!({"ca_id": ca["id"], "common_name": "bench-1"})),
    )?;
    assert_eq!(status, 201, "{cert}");
    let cert_id = cert["id"].as_str().context("certificate id")?.to_string();

    let hcl = config(&format!("  certificate_id = \"{cert_id}\""));
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_policy_attachment.a", "id")?;
    assert_eq!(
        s.attr("fleet_policy_attachment.a", "group_id")?,
        json!(null)
    );
    let a = acc
        .fleetd
        .get(&format!("/v1/policy-attachments/{id}"))?
        .unwrap();
    assert_eq!(a["certificate_id"], json!(cert_id));
    assert_eq!(a["group_id"], json!(null));

    acc.import_verify(&hcl, "fleet_policy_attachment.a", &id, &[])?;
    acc.import_block_noop(&hcl, "fleet_policy_attachment.a", &id)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policy-attachments")?.is_empty());
    assert!(acc.fleetd.list("/v1/policies")?.is_empty());
    Ok(())
}

#[test]
fn drift_deleted_attachment_is_recreated() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("  group_id = fleet_device_group.prod.id");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_policy_attachment.a", "id")?;

    let (status, _) = acc
        .fleetd
        .send("DELETE", &format!("/v1/policy-attachments/{id}"), None)?;
    assert_eq!(status, 204);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "deletion not detected");
    assert!(
        text.contains("1 to add, 0 to change, 0 to destroy"),
        "{text}"
    );
    let s = acc.wd.apply(&hcl)?;
    let id2 = s.str("fleet_policy_attachment.a", "id")?;
    assert_ne!(id2, id);
    assert!(acc
        .fleetd
        .get(&format!("/v1/policy-attachments/{id2}"))?
        .is_some());

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policy-attachments")?.is_empty());
    Ok(())
}

#[test]
fn invalid_targets_fail_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;

    // Both targets.
    let hcl = config("  group_id       = \"g-1\"\n  certificate_id = \"c-1\"");
    let text = acc.wd.plan_error(
        &hcl,
        &[
            "Conflicting attachment targets",
            "certificate_id conflicts with group_id",
            "with fleet_policy_attachment.a",
        ],
    )?;
    let line = line_of(&hcl, "certificate_id = ");
    assert!(text.contains(&format!("main.tf line {line}")), "{text}");

    // Neither.
    acc.wd.plan_error(
        &config(""),
        &["Missing attachment target", "Set exactly one of group_id"],
    )?;

    // Empty ids.
    acc.wd.plan_error(
        &format!("{PROVIDER}\nresource \"fleet_policy_attachment\" \"a\" {{\n  policy_id = \"\"\n  group_id  = \"g\"\n}}\n"),
        &["Invalid value for policy_id", "must not be empty"],
    )?;
    acc.wd.plan_error(
        &config("  certificate_id = \" \""),
        &["Invalid value for certificate_id", "must not be empty"],
    )?;

    // A policy that does not exist: fleetd refuses at apply, naming it.
    let text = acc.wd.plan_error_or_apply_error(&format!(
        "{PROVIDER}{BASE}\nresource \"fleet_policy_attachment\" \"a\" {{\n  policy_id = \"no-such-policy\"\n  group_id  = fleet_device_group.prod.id\n}}\n"
    ))?;
    assert!(
        text.contains("Could not attach policy") && text.contains("policy_id"),
        "{text}"
    );
    acc.wd.write_config(&format!("{PROVIDER}{BASE}"))?;
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policy-attachments")?.is_empty());
    assert!(acc.fleetd.list("/v1/policies")?.is_empty());
    Ok(())
}
