//! `fleet_enrollment` through real Terraform, the real provider and a real
//! fleetd.

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

const ADDR: &str = "fleet_enrollment.meters";

fn config(enrollment_args: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_certificate_authority" "ca" {{
  name = "factory"
}}
resource "fleet_device_group" "staging" {{
  name = "staging"
}}
resource "fleet_device_group" "prod" {{
  name = "prod"
}}
resource "fleet_enrollment" "meters" {{
  name  = "meters-eu"
  ca_id = fleet_certificate_authority.ca.id
  {enrollment_args}
}}
"#
    )
}

fn full() -> String {
    config(
        r#"group_id         = fleet_device_group.staging.id
  name_template    = "meter-{serial}"
  attributes       = { region = "eu-west", line = "m2" }
  allowed_hardware = ["meter-v2", "meter-v1"]
  max_devices      = 10
  common_name_pattern = "meter-eu-*""#,
    )
}

fn changed() -> String {
    config(
        r#"group_id         = fleet_device_group.prod.id
  name_template    = "{attr.region}-{cn}"
  allowed_hardware = ["meter-v2"]
  enabled          = false
  common_name_pattern = "meter-??-*""#,
    )
}

#[test]
fn lifecycle_update_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let s = acc.wd.apply(&full())?;
    let id = s.str(ADDR, "id")?;
    let staging = s.str("fleet_device_group.staging", "id")?;
    assert_eq!(s.attr(ADDR, "enabled")?, json!(true), "default");
    assert_eq!(s.attr(ADDR, "enrolled_count")?, json!(0));
    assert_eq!(s.attr(ADDR, "version")?, json!(1));

    let e = acc
        .fleetd
        .get(&format!("/v1/enrollments/{id}"))?
        .expect("enrollment in fleetd");
    assert_eq!(e["group_id"], json!(staging));
    assert_eq!(e["ca_id"], s.attr("fleet_certificate_authority.ca", "id")?);
    assert_eq!(e["name_template"], "meter-{serial}");
    assert_eq!(e["attributes"], json!({"region": "eu-west", "line": "m2"}));
    assert_eq!(
        e["allowed_hardware"],
        json!(["meter-v2", "meter-v1"]),
        "order kept"
    );
    assert_eq!(e["max_devices"], 10);
    assert_eq!(e["common_name_pattern"], "meter-eu-*");

    // Everything changes in place; removed optional arguments go back to
    // their defaults in fleetd too.
    let s2 = acc.wd.apply(&changed())?;
    assert_eq!(s2.str(ADDR, "id")?, id);
    assert_eq!(s2.attr(ADDR, "version")?, json!(2));
    assert_eq!(s2.attr(ADDR, "attributes")?, json!({}));
    assert_eq!(s2.attr(ADDR, "max_devices")?, json!(null));
    let e = acc.fleetd.get(&format!("/v1/enrollments/{id}"))?.unwrap();
    assert_eq!(e["group_id"], s2.attr("fleet_device_group.prod", "id")?);
    assert_eq!(e["enabled"], false);
    assert_eq!(e["max_devices"], json!(null));
    assert_eq!(e["attributes"], json!({}));
    assert_eq!(e["common_name_pattern"], "meter-??-*");

    acc.import_verify(&changed(), ADDR, &id, &[])?;
    acc.import_block_noop(&changed(), ADDR, &id)?;

    acc.wd.destroy()?;
    assert!(
        acc.fleetd.list("/v1/enrollments")?.is_empty(),
        "fleetd still has enrollments"
    );
    assert!(acc.fleetd.list("/v1/certificate-authorities")?.is_empty());
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    Ok(())
}

#[test]
fn drift_is_planned_back() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = full();
    let s = acc.wd.apply(&hcl)?;
    let id = s.str(ADDR, "id")?;

    // Disabled by hand: the plan enables it again.
    let mut e = acc.fleetd.get(&format!("/v1/enrollments/{id}"))?.unwrap();
    let obj = e.as_object_mut().unwrap();
    obj.insert("enabled".into(), json!(false));
    for k in ["id", "enrolled_count", "created_at", "updated_at"] {
        obj.remove(k);
    }
    let (status, body) = acc
        .fleetd
        .send("PUT", &format!("/v1/enrollments/{id}"), Some(&e))?;
    assert_eq!(status, 200, "{body}");
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(
        !empty && text.contains("enabled") && text.contains("1 to change"),
        "{text}"
    );
    let s = acc.wd.apply(&hcl)?;
    assert_eq!(s.attr(ADDR, "enabled")?, json!(true));

    // Deleted by hand: the plan creates it again.
    assert_eq!(
        acc.fleetd
            .send("DELETE", &format!("/v1/enrollments/{id}"), None)?
            .0,
        204
    );
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty && text.contains("1 to add"), "{text}");
    let s = acc.wd.apply(&hcl)?;
    assert_ne!(s.str(ADDR, "id")?, id);

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/enrollments")?.is_empty());
    Ok(())
}

#[test]
fn invalid_input_fails_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    let group = "group_id = fleet_device_group.staging.id";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            config(&format!("{group}\n  name_template = \"meter-{{sn}}\"")),
            vec![
                "Invalid value for name_template",
                "unknown placeholder \"{sn}\"",
                "at position 7",
            ],
        ),
        (
            config(&format!("{group}\n  name_template = \"meter-{{cn\"")),
            vec![
                "Invalid value for name_template",
                "unclosed '{'",
                "at position 7",
            ],
        ),
        (
            config(&format!("{group}\n  allowed_hardware = [\"m1\", \"m1\"]")),
            vec![
                "Invalid value for allowed_hardware[1]",
                "duplicate hardware model",
            ],
        ),
        (
            config(&format!("{group}\n  max_devices = 0")),
            vec!["Invalid value for max_devices"],
        ),
        (
            config(&format!("{group}\n  attributes = {{ \" \" = \"x\" }}")),
            vec!["Invalid value for attributes", "keys must not be empty"],
        ),
    ];
    for (hcl, needles) in &cases {
        acc.wd.plan_error(hcl, needles)?;
    }
    acc.wd.plan_error(
        &config(&format!("{group}\n  name = \"has space\"")).replacen(
            "name  = \"meters-eu\"\n",
            "",
            1,
        ),
        &["Invalid value for name", "invalid character ' '"],
    )?;
    assert!(
        acc.fleetd.list("/v1/certificate-authorities")?.is_empty(),
        "nothing was written"
    );
    Ok(())
}
