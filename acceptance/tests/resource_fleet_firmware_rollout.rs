//! `fleet_firmware_rollout` and the `fleet_firmware_rollout` data source
//! through real Terraform, the real provider and a real fleetd.

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

/// A firmware release created straight through the admin API, so these
/// tests depend only on the rollout resource.
fn firmware(acc: &Acc, version: &str) -> Result<String> {
    let (status, body) = acc.fleetd.send(
        "POST",
        "/v1/firmware",
        Some(&json!({
            "product": "meter",
            "version": version,
            "hardware": ["meter-v2"],
            "url": format!("https://fw.example.com/meter-{version}.bin"),
            "sha256": "a".repeat(64),
            "size_bytes": 1048576
        })),
    )?;
    anyhow::ensure!(status == 201, "create firmware: {status} {body}");
    body["id"].as_str().map(String::from).context("firmware id")
}

fn config(fw: &str, state: &str, soak: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_device_group" "canary" {{
  name = "canary"
}}
resource "fleet_device_group" "fleet" {{
  name = "fleet"
}}
resource "fleet_firmware_rollout" "r" {{
  name             = "meter-2-1-0"
  firmware_id      = "{fw}"
  target_group_ids = [fleet_device_group.canary.id, fleet_device_group.fleet.id]
  state            = "{state}"
  device_timeout   = "90m"

  phase {{
    percent = 1
    soak    = "{soak}"
  }}
  phase {{
    percent = 10
    soak    = "1h"
  }}
  phase {{
    percent = 100
  }}

  failure_threshold {{
    percent     = 2
    min_devices = 50
  }}

  maintenance_window {{
    days     = ["sat", "sun"]
    start    = "02:00"
    duration = "4h"
  }}
}}

data "fleet_firmware_rollout" "r" {{
  id = fleet_firmware_rollout.r.id
}}
"#
    )
}

#[test]
fn lifecycle_pause_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let fw = firmware(&acc, "2.1.0")?;
    // "60m" is kept as written even though fleetd may spell it "1h".
    let hcl = config(&fw, "running", "60m");
    let s = acc.wd.apply(&hcl)?;
    let r = s.get("fleet_firmware_rollout.r")?.clone();
    let id = r["id"].as_str().context("id")?.to_string();
    assert_eq!(r["phase"][0]["soak"], "60m");
    assert_eq!(r["phase"][2]["soak"], "0s", "default soak planned and kept");
    assert_eq!(r["failure_threshold"]["action"], "pause", "default action");
    assert_eq!(r["counts"]["failed"], 0);
    let api = acc
        .fleetd
        .get(&format!("/v1/rollouts/{id}"))?
        .context("rollout in fleetd")?;
    assert_eq!(
        api["failure_threshold"],
        json!({"percent": 2.0, "min_devices": 50, "action": "pause"})
    );
    assert_eq!(api["phases"].as_array().map(Vec::len), Some(3));
    let ds = s.get("data.fleet_firmware_rollout.r")?;
    assert_eq!(ds["failure_ratio"], 0);

    // Pausing is an in-place update.
    let paused = config(&fw, "paused", "60m");
    let s2 = acc.wd.apply(&paused)?;
    assert_eq!(s2.str("fleet_firmware_rollout.r", "id")?, id);
    let api = acc.fleetd.get(&format!("/v1/rollouts/{id}"))?.unwrap();
    assert_eq!(api["state"], "paused");

    acc.import_verify(&paused, "fleet_firmware_rollout.r", &id, &[])?;
    acc.import_block_noop(&paused, "fleet_firmware_rollout.r", &id)?;

    // Another firmware means another rollout: replacement.
    let fw2 = firmware(&acc, "2.1.1")?;
    acc.wd.write_config(&config(&fw2, "paused", "60m"))?;
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty && text.contains("must be replaced"), "{text}");

    acc.wd.write_config(&paused)?;
    acc.wd.destroy()?;
    assert!(
        acc.fleetd.list("/v1/rollouts")?.is_empty(),
        "rollouts left in fleetd"
    );
    Ok(())
}

#[test]
fn invalid_rollouts_fail_at_plan() -> Result<()> {
    let acc = Acc::new()?;
    let fw = firmware(&acc, "1.0.0")?;
    let good = config(&fw, "running", "30m");
    // Phases must increase and end at 100.
    acc.wd.plan_error(
        &good.replace("percent = 10\n", "percent = 0.5\n"),
        &[
            "Invalid rollout",
            "phase[1].percent",
            "must be greater than the previous",
        ],
    )?;
    acc.wd.plan_error(
        &good.replace("percent = 100\n", "percent = 90\n"),
        &["phase[2].percent"],
    )?;
    acc.wd.plan_error(
        &good.replace("soak    = \"30m\"", "soak    = \"half an hour\""),
        &["phase[0].soak"],
    )?;
    acc.wd.plan_error(
        &good.replace(
            "state            = \"running\"",
            "state            = \"stopped\"",
        ),
        &["state", "must be one of"],
    )?;
    acc.wd.plan_error(
        &good.replace("\"sat\", \"sun\"", "\"caturday\""),
        &["maintenance_window.days"],
    )?;
    acc.wd.plan_error(
        &good.replace("percent     = 2\n", "percent     = 200\n"),
        &["failure_threshold.percent"],
    )?;
    assert!(acc.fleetd.list("/v1/rollouts")?.is_empty());
    Ok(())
}

#[test]
fn drift_deleted_rollout_is_recreated() -> Result<()> {
    let acc = Acc::new()?;
    let fw = firmware(&acc, "3.0.0")?;
    let hcl = config(&fw, "running", "30m");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware_rollout.r", "id")?;
    let (status, body) = acc
        .fleetd
        .send("DELETE", &format!("/v1/rollouts/{id}"), None)?;
    assert_eq!(status, 204, "{body}");
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty && text.contains("1 to add"), "{text}");
    acc.wd.apply(&hcl)?;
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/rollouts")?.is_empty());
    Ok(())
}
