//! Compliance end to end: the golden-path modules applied through real
//! Terraform, simulated devices that apply their config, others told to
//! report a wrong config digest or to keep an old firmware, and silent
//! ones; fleetd's per-group counts, read through the
//! `fleet_group_compliance` data source, match what the simulator made
//! each device do; the module's `check` block warns while the plan still
//! succeeds, and `staged-rollout` refuses to roll out into the drifting
//! group.

use std::time::Duration;

use acceptance::devices::{self, Devices};
use acceptance::{workspace_root, Fleetd, Workdir};
use anyhow::{ensure, Context, Result};
use fleet_sim::sim::Role;
use fleet_sim::{Factory, SimConfig};
use serde_json::Value as Json;

fn config(rollout: Option<f64>) -> String {
    let mut hcl = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}

module "foundation" {
  source                    = "./modules/fleet-foundation"
  name                      = "plant"
  environments              = ["prod"]
  import_ca_certificate_pem = file("${path.module}/factory-ca.pem")
  import_ca_private_key_pem = file("${path.module}/factory-ca.key")
}

module "meters" {
  source               = "./modules/device-fleet"
  name                 = "meter"
  environment          = "prod"
  environment_group_id = module.foundation.environment_group_ids["prod"]
  ca_id                = module.foundation.ca_id
  hardware             = ["m1"]
  common_name_pattern  = "meter-prod-*"
  config               = { report_interval = 30 }
  stale_after          = "3s"
  min_in_sync_ratio    = 0.99
}

data "fleet_group_compliance" "meters" {
  group_id = module.meters.group_id
}
"#
    .to_string();
    if let Some(min) = rollout {
        hcl.push_str(&format!(
            r#"
module "meter_fw_2" {{
  source           = "./modules/staged-rollout"
  name             = "meter-fw-2-0-0"
  target_group_ids = [module.meters.group_id]
  phases           = [{{ percent = 100 }}]
  firmware = {{
    product    = "meter-fw"
    version    = "2.0.0"
    hardware   = ["m1"]
    url        = "https://firmware.example.com/meter-fw-2.0.0.bin"
    sha256     = "2222222222222222222222222222222222222222222222222222222222222222"
    size_bytes = 1048576
  }}
  min_target_in_sync_ratio = {min}
}}
"#
        ));
    }
    hcl
}

fn compliance(fleetd: &Fleetd, group: &str) -> Result<Json> {
    fleetd
        .get(&format!("/v1/device-groups/{group}/compliance"))?
        .context("group compliance")
}

fn wait_compliance(
    fleetd: &Fleetd,
    group: &str,
    what: &str,
    done: impl Fn(&Json) -> bool,
) -> Result<Json> {
    acceptance::wait_until(
        &format!("compliance of {group} {what}"),
        Duration::from_secs(120),
        || compliance(fleetd, group),
        done,
    )
}

fn sim(fleetd: &Fleetd, n: usize, prefix: &str) -> Result<SimConfig> {
    let mut cfg = devices::config(fleetd, n, prefix)?;
    cfg.hardware = vec!["m1".into()];
    cfg.initial_firmware = "1.0.0".into();
    Ok(cfg)
}

fn start(cfg: SimConfig, factory: &Factory) -> Result<Devices> {
    Devices::start(
        cfg,
        Factory::from_pem(factory.certificate_pem(), factory.private_key_pem())?,
    )
}

#[test]
fn drift_and_silence_show_in_terraform_and_gate_rollouts() -> Result<()> {
    let fleetd = Fleetd::start_with(&["--engine-interval", "200ms"])?;
    let wd = Workdir::new(&fleetd)?;
    acceptance::copy_config_dir(
        &workspace_root().join("modules"),
        &wd.path().join("modules"),
    )?;
    let factory = Factory::generate("Plant factory CA", 365)?;
    factory.save(wd.path())?;
    // Every module the test will use, installed once.
    wd.write_config(&config(Some(0.5)))?;
    wd.ok(&["init", "-backend=false", "-input=false", "-no-color"])
        .context("terraform init")?;
    let s = wd.apply(&config(None))?;
    let group = s.str("module.meters.fleet_device_group.this", "id")?;

    // 60 meters: some report a tampered config, some keep their old
    // firmware whatever they are told; the seed decides which.
    let mut cfg = sim(&fleetd, 60, "meter-prod")?;
    cfg.seed = 9;
    cfg.config_drift_rate = 0.1;
    cfg.stuck_firmware_rate = 0.1;
    let roles: Vec<Role> = (0..60).map(|i| Role::of(&cfg, i)).collect();
    let drifting = roles.iter().filter(|r| **r == Role::ConfigDrift).count() as u64;
    let stuck = roles.iter().filter(|r| **r == Role::StuckFirmware).count() as u64;
    ensure!(
        drifting > 0 && stuck > 0,
        "seed 9 gives both roles: {roles:?}"
    );
    let meters = start(cfg, &factory)?;
    meters.wait_enrolled(Duration::from_secs(120))?;
    let c = wait_compliance(&fleetd, &group, "counted every meter", |c| {
        c["total"] == 60 && c["config_drift"] == drifting
    })?;
    assert_eq!(c["in_sync"], 60 - drifting, "{c}");

    // The check block warns; the plan still succeeds.
    let (empty, text) = wd.plan_is_empty(true)?;
    assert!(empty, "plan succeeds, no changes: {text}");
    assert!(text.contains("Check block assertion failed"), "{text}");
    assert!(
        text.contains(&format!(
            "Only {} of 60 devices in prod/meter are in sync",
            60 - drifting
        )),
        "{text}"
    );
    assert!(text.contains("differs from the desired"), "{text}");

    // staged-rollout refuses a group under its minimum.
    wd.write_config(&config(Some(0.99)))?;
    let out = wd.run(&["plan", "-input=false", "-no-color"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("Not rolling out into groups already out of sync: prod/meter"),
        "{text}"
    );
    assert!(fleetd.list("/v1/rollouts")?.is_empty());

    // With a lower bar it rolls out; the stuck meters then drift.
    let hcl = config(Some(0.5));
    let s = wd.apply(&hcl)?;
    let rollout = s.str("module.meter_fw_2.fleet_firmware_rollout.this", "id")?;
    acceptance::wait_until(
        "the rollout to complete",
        Duration::from_secs(120),
        || {
            fleetd
                .get(&format!("/v1/rollouts/{rollout}"))?
                .context("rollout")
        },
        |r| r["status"] == "completed",
    )?;

    // A few more meters join after the rollout and fall silent.
    let mut late = sim(&fleetd, 5, "meter-prod-late")?;
    late.silent_rate = 1.0;
    late.silent_after = Duration::from_millis(800);
    let late = start(late, &factory)?;
    late.wait_enrolled(Duration::from_secs(60))?;
    let c = wait_compliance(&fleetd, &group, "settled", |c| {
        c["stale"] == 5 && c["firmware_drift"] == stuck
    })?;
    assert_eq!(c["config_drift"], drifting, "{c}");
    assert_eq!(c["in_sync"], 60 - drifting - stuck, "{c}");
    assert_eq!(c["total"], 65, "{c}");

    // Terraform reads the same through the data source and the group's
    // computed summary, with reasons, and the plan stays empty.
    let s = wd.apply(&hcl)?;
    let ds = s.get("data.fleet_group_compliance.meters")?;
    for k in [
        "in_sync",
        "config_drift",
        "firmware_drift",
        "stale",
        "total",
    ] {
        assert_eq!(ds[k], c[k], "{k}: {ds}");
    }
    let ratio = ds["in_sync_ratio"].as_f64().context("ratio")?;
    assert!(
        (ratio - (60 - drifting - stuck) as f64 / 65.0).abs() < 1e-9,
        "{ds}"
    );
    let reasons: Vec<String> = ds["noncompliant"]
        .as_array()
        .context("noncompliant")?
        .iter()
        .map(|d| format!("{}: {}", d["state"], d["reason"]))
        .collect();
    assert!(!reasons.is_empty() && reasons.len() <= 10, "{reasons:?}");
    let group_summary = &s.get("module.meters.fleet_device_group.this")?["compliance"];
    assert_eq!(group_summary["stale"], 5, "{group_summary}");
    let (s2, page) = fleetd.send(
        "GET",
        &format!("/v1/device-groups/{group}/compliance/devices?state=firmware_drift"),
        None,
    )?;
    assert_eq!(s2, 200, "{page}");
    let items = page["items"].as_array().context("items")?;
    assert_eq!(items.len() as u64, stuck, "{page}");
    assert!(items
        .iter()
        .all(|d| d["reason"] == "runs firmware 1.0.0, its completed rollout installed 2.0.0"));

    meters.stop()?;
    late.stop()?;
    let ca = s.str("module.foundation.fleet_certificate_authority.this", "id")?;
    for c in fleetd.list(&format!("/v1/certificates?ca_id={ca}"))? {
        let id = c["id"].as_str().unwrap_or_default();
        let (status, body) = fleetd.send("DELETE", &format!("/v1/certificates/{id}"), None)?;
        ensure!(status == 204, "{status} {body}");
    }
    wd.destroy()?;
    assert!(fleetd.list("/v1/rollouts")?.is_empty());
    Ok(())
}
