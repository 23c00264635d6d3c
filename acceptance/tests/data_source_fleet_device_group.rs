//! Data source `fleet_device_group` through real Terraform, the real
//! provider and a real fleetd.

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

const GROUPS: &str = r#"
resource "fleet_device_group" "prod" {
  name   = "prod"
  config = jsonencode({ telemetry = { interval = 60 }, debug = false })
}
resource "fleet_device_group" "meters" {
  name        = "meters"
  description = "smart meters"
  parent_id   = fleet_device_group.prod.id
  tags        = { line = "m2" }
  query       = "hardware == \"m2\""
  config      = jsonencode({ telemetry = { interval = 15 } })
}
resource "fleet_device" "d" {
  name     = "meter-1"
  hardware = "m2"
}
"#;

const LOOKUPS: &str = r#"
data "fleet_device_group" "by_id" {
  id         = fleet_device_group.meters.id
  depends_on = [fleet_device.d]
}
data "fleet_device_group" "by_path" {
  path       = "prod/meters"
  depends_on = [fleet_device_group.meters, fleet_device.d]
}
data "fleet_device_group" "root" {
  path       = fleet_device_group.prod.path
}
"#;

#[test]
fn lookups_by_id_and_path_match_the_group() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = format!("{PROVIDER}{GROUPS}{LOOKUPS}");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device_group.meters", "id")?;
    let prod = s.str("fleet_device_group.prod", "id")?;
    let g = acc
        .fleetd
        .get(&format!("/v1/device-groups/{id}"))?
        .context("group in fleetd")?;

    for address in [
        "data.fleet_device_group.by_id",
        "data.fleet_device_group.by_path",
    ] {
        let d = s.get(address)?;
        let r = s.get("fleet_device_group.meters")?;
        for attr in [
            "id",
            "name",
            "description",
            "parent_id",
            "tags",
            "query",
            "path",
            "config",
            "effective_config",
        ] {
            assert_eq!(
                d[attr], r[attr],
                "{address}.{attr} differs from the resource"
            );
        }
        assert_eq!(d["id"], json!(id));
        assert_eq!(d["path"], "prod/meters");
        assert_eq!(d["parent_id"], json!(prod));
        assert_eq!(d["tags"], json!({"line": "m2"}));
        // Live values come from fleetd: the device matches the query.
        assert_eq!(d["device_count"], json!(1));
        assert_eq!(d["device_count"], g["device_count"]);
        assert_eq!(d["version"], g["version"]);
        let eff: serde_json::Value = serde_json::from_str(d["effective_config"].as_str().unwrap())?;
        assert_eq!(eff, json!({"telemetry": {"interval": 15}, "debug": false}));
    }
    let root = s.get("data.fleet_device_group.root")?;
    assert_eq!(root["id"], json!(prod));
    assert_eq!(root["parent_id"], json!(null));
    assert_eq!(root["query"], json!(null));

    // A rename outside Terraform shows in the data source on the next
    // refresh (and the group's own drift is planned back).
    let (status, body) = acc.fleetd.send(
        "PUT",
        &format!("/v1/device-groups/{id}"),
        Some(&json!({
            "name": "meters", "description": "edited", "parent_id": prod,
            "tags": {"line": "m2"}, "query": "hardware == \"m2\"",
            "config": {"telemetry": {"interval": 15}}, "version": g["version"],
        })),
    )?;
    assert_eq!(status, 200, "{body}");
    acc.wd
        .ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
    let s = acc.wd.state()?;
    assert_eq!(
        s.str("data.fleet_device_group.by_id", "description")?,
        "edited"
    );
    acc.wd.apply(&hcl)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}

#[test]
fn invalid_lookups_fail_at_plan() -> Result<()> {
    let acc = Acc::new()?;
    let data =
        |body: &str| format!("{PROVIDER}\ndata \"fleet_device_group\" \"g\" {{\n{body}\n}}\n");
    acc.wd.plan_error(
        &data("  id   = \"x\"\n  path = \"prod\""),
        &[
            "Conflicting group lookup",
            "path conflicts with id",
            "with data.fleet_device_group.g",
        ],
    )?;
    acc.wd.plan_error(
        &data(""),
        &["Missing group lookup", "exactly one of id or path"],
    )?;
    acc.wd.plan_error(
        &data("  path = \"prod/nowhere\""),
        &[
            "Device group not found",
            r#"no device group at path "prod/nowhere""#,
        ],
    )?;
    acc.wd.plan_error(
        &data("  id = \"0193-no-such-group\""),
        &["Device group not found", r#"with id "0193-no-such-group""#],
    )?;
    // The membership query of the resource is checked at plan time too,
    // with the position of the mistake.
    acc.wd.plan_error(
        &format!(
            "{PROVIDER}\nresource \"fleet_device_group\" \"g\" {{\n  name  = \"g\"\n  query = \"hardware == \\\"m1\\\" and\"\n}}\n"
        ),
        &["Invalid device query", "line 1, col 21:", "with fleet_device_group.g"],
    )?;
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    Ok(())
}
