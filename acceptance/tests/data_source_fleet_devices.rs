//! Data source `fleet_devices` through real Terraform, the real provider
//! and a real fleetd.

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

fn devices(extra: &str) -> String {
    format!(
        r#"
resource "fleet_device" "eu1" {{
  name       = "eu-1"
  hardware   = "m1"
  attributes = {{ region = "eu" }}
}}
resource "fleet_device" "eu2" {{
  name       = "eu-2"
  hardware   = "m2"
  attributes = {{ region = "eu" }}
}}
resource "fleet_device" "us1" {{
  name       = "us-1"
  hardware   = "m1"
  attributes = {{ region = "us" }}
}}
{extra}
data "fleet_devices" "eu" {{
  query      = "attr.region == \"eu\""
  depends_on = [fleet_device.eu1, fleet_device.eu2, fleet_device.us1{extra_dep}]
}}
data "fleet_devices" "m1" {{
  query      = "hardware == \"m1\" and attr.region in [\"eu\", \"us\"]"
  depends_on = [fleet_device.eu1, fleet_device.eu2, fleet_device.us1{extra_dep}]
}}
data "fleet_devices" "all" {{
  depends_on = [fleet_device.eu1, fleet_device.eu2, fleet_device.us1{extra_dep}]
}}
data "fleet_devices" "none" {{
  query      = "attr.region == \"apac\""
  depends_on = [fleet_device.eu1, fleet_device.eu2, fleet_device.us1{extra_dep}]
}}
output "eu_count" {{
  value = data.fleet_devices.eu.device_count
}}
"#,
        extra_dep = if extra.is_empty() {
            ""
        } else {
            ", fleet_device.eu3"
        }
    )
}

const EU3: &str = r#"
resource "fleet_device" "eu3" {
  name       = "eu-3"
  hardware   = "m1"
  attributes = { region = "eu" }
}
"#;

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn count_and_ids_match_the_devices() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = format!("{PROVIDER}{}", devices(""));
    let s = acc.wd.apply(&hcl)?;
    let id = |a: &str| s.str(&format!("fleet_device.{a}"), "id");
    let (eu1, eu2, us1) = (id("eu1")?, id("eu2")?, id("us1")?);

    let eu = s.get("data.fleet_devices.eu")?;
    assert_eq!(eu["device_count"], json!(2));
    assert_eq!(eu["ids"], json!(sorted(vec![eu1.clone(), eu2.clone()])));
    let m1 = s.get("data.fleet_devices.m1")?;
    assert_eq!(m1["device_count"], json!(2));
    assert_eq!(m1["ids"], json!(sorted(vec![eu1.clone(), us1.clone()])));
    let all = s.get("data.fleet_devices.all")?;
    assert_eq!(all["device_count"], json!(3));
    assert_eq!(all["ids"], json!(sorted(vec![eu1.clone(), eu2, us1])));
    let none = s.get("data.fleet_devices.none")?;
    assert_eq!(none["device_count"], json!(0));
    assert_eq!(none["ids"], json!([]));
    assert_eq!(s.0["values"]["outputs"]["eu_count"]["value"], json!(2));

    // Another matching device shows up in the next read.
    let hcl2 = format!("{PROVIDER}{}", devices(EU3));
    let s = acc.wd.apply(&hcl2)?;
    let eu3 = s.str("fleet_device.eu3", "id")?;
    let eu = s.get("data.fleet_devices.eu")?;
    assert_eq!(eu["device_count"], json!(3));
    assert!(eu["ids"].as_array().unwrap().contains(&json!(eu3)));
    assert_eq!(s.get("data.fleet_devices.m1")?["device_count"], json!(3));

    // A device changed outside Terraform changes the result on refresh.
    let d = acc.fleetd.get(&format!("/v1/devices/{eu1}"))?.unwrap();
    let (status, _) = acc.fleetd.send(
        "PUT",
        &format!("/v1/devices/{eu1}"),
        Some(&json!({"name": "eu-1", "hardware": "m1", "attributes": {"region": "apac"}, "group_ids": [], "version": d["version"]})),
    )?;
    assert_eq!(status, 200);
    acc.wd
        .ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
    let s = acc.wd.state()?;
    assert_eq!(s.get("data.fleet_devices.none")?["ids"], json!([eu1]));
    acc.wd.apply(&hcl2)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}

#[test]
fn invalid_queries_fail_at_plan_with_their_position() -> Result<()> {
    let acc = Acc::new()?;
    let data = |query: &str| {
        format!("{PROVIDER}\ndata \"fleet_devices\" \"q\" {{\n  query = {query}\n}}\n")
    };
    acc.wd.plan_error(
        &data(r#""attr.region == ""#),
        &[
            "Invalid device query",
            "line 1, col 16:",
            "with data.fleet_devices.q",
        ],
    )?;
    acc.wd.plan_error(
        &data("<<-EOT\n    hardware == \"m1\"\n    and attr.region = \"eu\"\n  EOT"),
        &["Invalid device query", "line 2, col 17:"],
    )?;
    acc.wd.plan_error(
        &data(r#""firmware < \"two\"""#),
        &["Invalid device query", "line 1, col 12:"],
    )?;
    acc.wd.plan_error(
        &data(r#""colour == \"red\"""#),
        &["Invalid device query", "line 1, col 1:"],
    )?;
    Ok(())
}
