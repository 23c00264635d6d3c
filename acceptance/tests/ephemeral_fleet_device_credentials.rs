//! Ephemeral resource `fleet_device_credentials` through real Terraform,
//! the real provider and a real fleetd: the key reaches configuration and
//! never the state or a saved plan.

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

/// Device credentials consumed the way a bootstrap module would: the key
/// and certificate are checked by preconditions (which may read ephemeral
/// values) of a resource that stores nothing of them.
fn config(args: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "ca" {{
  name          = "bootstrap"
  force_destroy = true
}}
ephemeral "fleet_device_credentials" "boot" {{
  ca_id = fleet_certificate_authority.ca.id
  {args}
}}
resource "terraform_data" "provisioned" {{
  input = fleet_certificate_authority.ca.id
  lifecycle {{
    precondition {{
      condition     = startswith(ephemeral.fleet_device_credentials.boot.private_key_pem, "-----BEGIN PRIVATE KEY-----")
      error_message = "no private key"
    }}
    precondition {{
      condition     = startswith(ephemeral.fleet_device_credentials.boot.certificate_pem, "-----BEGIN CERTIFICATE-----")
      error_message = "no certificate"
    }}
  }}
}}
"#
    )
}

fn raw_state(acc: &Acc) -> Result<String> {
    std::fs::read_to_string(acc.wd.path().join("terraform.tfstate"))
        .context("read terraform.tfstate")
}

#[test]
fn key_reaches_configuration_but_never_state_or_plan() -> Result<()> {
    let acc = Acc::new()?;
    let hcl =
        config("common_name = \"bootstrap-1\"\n  validity_days = 1\n  key_algorithm = \"ED25519\"");
    let s = acc.wd.apply(&hcl)?;
    let ca_id = s.str("fleet_certificate_authority.ca", "id")?;

    // fleetd issued certificates with generated keys for this subject (one
    // per open: the apply and the two plans after it).
    let certs = acc
        .fleetd
        .list(&format!("/v1/certificates?ca_id={ca_id}"))?;
    assert!(!certs.is_empty(), "the ephemeral resource was never opened");
    for c in &certs {
        assert_eq!(c["common_name"], "bootstrap-1");
        assert_eq!(c["key_algorithm"], "ED25519");
        assert_eq!(c["validity_days"], 1);
        assert_eq!(c["status"], "active");
    }

    // Neither the state nor a saved plan holds a key or the ephemeral
    // resource.
    let state = raw_state(&acc)?;
    assert!(!state.contains("PRIVATE KEY"), "a key entered the state");
    let stored: serde_json::Value = serde_json::from_str(&state)?;
    let types: Vec<_> = stored["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["type"].clone())
        .collect();
    assert_eq!(
        types,
        vec![
            json!("fleet_certificate_authority"),
            json!("terraform_data")
        ],
        "only managed resources are stored"
    );
    acc.wd.write_config(&hcl.replace(
        "name          = \"bootstrap\"",
        "name          = \"bootstrap-renamed\"",
    ))?;
    let plan = acc.wd.plan_json()?;
    let text = plan.to_string();
    assert!(
        text.contains("bootstrap-renamed"),
        "the saved plan is a real change"
    );
    assert!(
        !text.contains("PRIVATE KEY"),
        "a key entered the saved plan"
    );
    let changes: Vec<_> = plan["resource_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["change"]["actions"] != json!(["no-op"]))
        .collect();
    assert_eq!(changes.len(), 1, "only the rename: {changes:?}");
    assert_eq!(changes[0]["address"], "fleet_certificate_authority.ca");
    acc.wd
        .ok(&["apply", "-auto-approve", "-no-color", "tfplan"])?;
    assert!(!raw_state(&acc)?.contains("PRIVATE KEY"));

    // destroy with force_destroy removes the issued certificates with the CA.
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

#[test]
fn issues_for_a_device() -> Result<()> {
    let acc = Acc::new()?;
    let (status, device) = acc.fleetd.send(
        "POST",
        "/v1/devices",
        Some(&json!({"name": "bench-1", "hardware": "meter-v2"})),
    )?;
    assert_eq!(status, 201, "{device}");
    let device_id = device["id"].as_str().unwrap().to_string();
    acc.wd
        .apply(&config(&format!("device_id = \"{device_id}\"")))?;
    let certs = acc
        .fleetd
        .list(&format!("/v1/certificates?device_id={device_id}"))?;
    assert!(!certs.is_empty());
    for c in &certs {
        assert_eq!(c["common_name"], json!(device_id));
        assert_eq!(c["key_algorithm"], "ECDSA_P256", "default");
        assert_eq!(c["validity_days"], 365, "default");
    }
    acc.wd.destroy()?;
    assert_eq!(
        acc.fleetd
            .send("DELETE", &format!("/v1/devices/{device_id}"), None)?
            .0,
        204
    );
    assert!(acc.fleetd.list("/v1/certificates")?.is_empty());
    Ok(())
}

#[test]
fn invalid_input_fails_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    acc.wd.plan_error(
        &config("device_id = \"d\"\n  common_name = \"x\""),
        &["common_name conflicts with device_id"],
    )?;
    acc.wd.plan_error(&config(""), &["Missing device_id"])?;
    acc.wd.plan_error(
        &config("common_name = \"x\"\n  key_algorithm = \"RSA\""),
        &[
            "Invalid value for key_algorithm",
            "must be one of ECDSA_P256, ED25519",
        ],
    )?;
    acc.wd.plan_error(
        &config("common_name = \"x\"\n  validity_days = 0"),
        &["Invalid value for validity_days"],
    )?;
    assert!(
        acc.fleetd.list("/v1/certificate-authorities")?.is_empty(),
        "nothing was written"
    );
    Ok(())
}
