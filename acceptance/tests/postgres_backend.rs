//! A representative configuration through real Terraform against a fleetd
//! whose state is in PostgreSQL (a fresh database for the test): group
//! tree, CA, certificate, policy and attachment, firmware, rollout. Plans
//! after apply are empty, import reads back what apply wrote, destroy
//! leaves the database empty (audit trail aside).

use acceptance::fleetd::Fleetd;
use acceptance::{Acc, Workdir};
use anyhow::Result;
use serde_json::json;

const CONFIG: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}

resource "fleet_device_group" "prod" {
  name = "prod"
  tags = { env = "prod" }
  config = jsonencode({ telemetry = { interval = 60 } })
}
resource "fleet_device_group" "meters" {
  name      = "meters"
  parent_id = fleet_device_group.prod.id
  query     = "hardware == \"m2\""
}

resource "fleet_certificate_authority" "ca" {
  name          = "devices"
  validity_days = 3650
}
resource "fleet_certificate" "bench" {
  ca_id         = fleet_certificate_authority.ca.id
  key_algorithm = "ED25519"
  common_name   = "bench-001"
  validity_days = 30
}

resource "fleet_policy" "baseline" {
  name = "baseline"
  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read"]
    resources = ["fleet:device/$${device.id}"]
  }
}
resource "fleet_policy_attachment" "meters" {
  policy_id = fleet_policy.baseline.id
  group_id  = fleet_device_group.meters.id
}

resource "fleet_firmware" "fw" {
  product    = "meter-fw"
  version    = "2.1.0"
  hardware   = ["m2"]
  url        = "https://downloads.test/meter-fw/2.1.0.bin"
  sha256     = "797dfb19a7a904de86207d04b1de5b0ade461749c713b0e41327841b84adf0b2"
  size_bytes = 41
}
resource "fleet_firmware_rollout" "r" {
  name             = "meter-2-1-0"
  firmware_id      = fleet_firmware.fw.id
  target_group_ids = [fleet_device_group.meters.id]
  state            = "paused"
  device_timeout   = "90m"
  phase {
    percent = 10
    soak    = "1h"
  }
  phase {
    percent = 100
  }
  failure_threshold {
    percent     = 2
    min_devices = 50
  }
}
"#;

#[test]
fn a_fleet_applies_imports_and_destroys_on_postgres() -> Result<()> {
    let fleetd = Fleetd::start_postgres(&[])?;
    let wd = Workdir::new(&fleetd)?;
    let acc = Acc { fleetd, wd };
    let db = acc
        .fleetd
        .database
        .as_ref()
        .expect("fleetd runs on PostgreSQL");

    // Apply (the harness requires empty plans, refreshing and not, after it).
    let s = acc.wd.apply(CONFIG)?;
    assert_eq!(s.str("fleet_device_group.meters", "path")?, "prod/meters");
    let rollout = s.str("fleet_firmware_rollout.r", "id")?;
    let r = acc
        .fleetd
        .get(&format!("/v1/rollouts/{rollout}"))?
        .expect("rollout in fleetd");
    assert_eq!(r["state"], "paused");

    // The state is in PostgreSQL, every write audited there.
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM device_groups")?, 2);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM certificates")?, 1);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM rollouts")?, 1);
    assert!(db.query_i64("SELECT COUNT(*) FROM audit_log")? >= 9);
    assert!(
        !acc.fleetd.data_dir.path().join("fleetd.db").exists(),
        "no SQLite file next to a PostgreSQL fleetd"
    );

    // An in-place update bumps the version stored in PostgreSQL.
    let updated = CONFIG.replace("soak    = \"1h\"", "soak    = \"2h\"");
    assert_ne!(updated, CONFIG);
    let s2 = acc.wd.apply(&updated)?;
    assert_eq!(s2.str("fleet_firmware_rollout.r", "id")?, rollout);
    assert_eq!(s2.attr("fleet_firmware_rollout.r", "version")?, json!(2));

    // Import reads back exactly what apply wrote.
    for (address, ignore) in [
        ("fleet_device_group.prod", &[][..]),
        ("fleet_device_group.meters", &[][..]),
        ("fleet_certificate_authority.ca", &[][..]),
        ("fleet_policy.baseline", &[][..]),
        ("fleet_policy_attachment.meters", &[][..]),
        ("fleet_firmware.fw", &[][..]),
        ("fleet_firmware_rollout.r", &[][..]),
    ] {
        let id = s2.str(address, "id")?;
        acc.import_verify(&updated, address, &id, ignore)?;
    }
    let group = s2.str("fleet_device_group.prod", "id")?;
    acc.import_block_noop(&updated, "fleet_device_group.prod", &group)?;

    acc.wd.destroy()?;
    for path in [
        "/v1/device-groups",
        "/v1/certificate-authorities",
        "/v1/certificates",
        "/v1/policies",
        "/v1/policy-attachments",
        "/v1/firmware",
        "/v1/rollouts",
    ] {
        assert!(acc.fleetd.list(path)?.is_empty(), "{path} is not empty");
    }
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM device_groups")?, 0);
    Ok(())
}
