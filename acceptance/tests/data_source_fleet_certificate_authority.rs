//! Data source `fleet_certificate_authority` through real Terraform, the
//! real provider and a real fleetd.

use acceptance::Acc;
use anyhow::Result;
use serde_json::json;

const PROVIDER: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}
"#;

#[test]
fn looks_up_by_id_and_by_name() -> Result<()> {
    let acc = Acc::new()?;
    // A CA another team owns, created outside this configuration.
    let (status, other) = acc.fleetd.send(
        "POST",
        "/v1/certificate-authorities",
        Some(&json!({"name": "platform-root", "description": "owned elsewhere", "organization": "Platform"})),
    )?;
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().unwrap().to_string();

    let hcl = format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "mine" {{
  name        = "mine"
  description = "managed here"
}}
data "fleet_certificate_authority" "by_id" {{
  id = fleet_certificate_authority.mine.id
}}
data "fleet_certificate_authority" "by_name" {{
  name = "platform-root"
}}
# Using the looked-up CA: an enrollment trusting the other team's root.
resource "fleet_device_group" "g" {{
  name = "g"
}}
resource "fleet_enrollment" "e" {{
  name     = "e"
  ca_id    = data.fleet_certificate_authority.by_name.id
  group_id = fleet_device_group.g.id
}}
"#
    );
    let s = acc.wd.apply(&hcl)?;
    let mine = s.get("fleet_certificate_authority.mine")?.clone();
    let by_id = s.get("data.fleet_certificate_authority.by_id")?.clone();
    for k in [
        "id",
        "name",
        "description",
        "certificate_pem",
        "fingerprint",
        "serial",
        "not_after",
        "key_algorithm",
        "version",
    ] {
        assert_eq!(by_id[k], mine[k], "{k}");
    }
    let by_name = s.get("data.fleet_certificate_authority.by_name")?.clone();
    assert_eq!(by_name["id"], json!(other_id));
    assert_eq!(by_name["description"], "owned elsewhere");
    assert_eq!(by_name["organization"], "Platform");
    assert_eq!(by_name["certificate_pem"], other["certificate_pem"]);
    assert_eq!(by_name["imported"], json!(false));
    assert_eq!(s.str("fleet_enrollment.e", "ca_id")?, other_id);

    acc.wd.destroy()?;
    assert_eq!(
        acc.fleetd
            .send(
                "DELETE",
                &format!("/v1/certificate-authorities/{other_id}"),
                None
            )?
            .0,
        204
    );
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    assert!(acc.fleetd.list("/v1/enrollments")?.is_empty());
    Ok(())
}

#[test]
fn errors_name_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    acc.wd.plan_error(
        &format!(
            "{PROVIDER}\ndata \"fleet_certificate_authority\" \"x\" {{\n  name = \"nope\"\n}}\n"
        ),
        &[
            "Certificate authority not found",
            "no certificate authority named \"nope\"",
        ],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\ndata \"fleet_certificate_authority\" \"x\" {{\n  id = \"01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f\"\n}}\n"),
        &["Certificate authority not found", "no certificate authority with id"],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\ndata \"fleet_certificate_authority\" \"x\" {{\n  id   = \"a\"\n  name = \"b\"\n}}\n"),
        &["name conflicts with id"],
    )?;
    acc.wd.plan_error(
        &format!("{PROVIDER}\ndata \"fleet_certificate_authority\" \"x\" {{\n}}\n"),
        &["Missing id", "Set id or name"],
    )?;
    Ok(())
}
