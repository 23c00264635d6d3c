//! `fleet_device` through real Terraform, the real provider and a real
//! fleetd.

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

fn config(name: &str, attributes: &str, group_ids: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_device_group" "bench" {{
  name = "bench"
}}
resource "fleet_device_group" "eu" {{
  name = "eu"
}}
resource "fleet_device" "meter" {{
  name       = "{name}"
  hardware   = "m1"
  attributes = {attributes}
  group_ids  = {group_ids}
}}
resource "fleet_device" "bare" {{
  name     = "meter-0002"
  hardware = "m2"
}}
"#
    )
}

/// 1-based line of the first line of `hcl` containing `needle`.
fn line_of(hcl: &str, needle: &str) -> usize {
    hcl.lines()
        .position(|l| l.contains(needle))
        .expect("needle in hcl")
        + 1
}

#[test]
fn lifecycle_update_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config(
        "meter-0001",
        r#"{ region = "eu", "serial.no" = "A-1" }"#,
        "[fleet_device_group.bench.id]",
    );
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device.meter", "id")?;
    let bench = s.str("fleet_device_group.bench", "id")?;
    let eu = s.str("fleet_device_group.eu", "id")?;
    assert_eq!(s.attr("fleet_device.meter", "group_ids")?, json!([bench]));
    assert_eq!(s.attr("fleet_device.meter", "version")?, json!(1));
    // Nothing reported yet; defaults are planned for omitted arguments.
    assert_eq!(
        s.attr("fleet_device.meter", "firmware_version")?,
        json!(null)
    );
    assert_eq!(s.attr("fleet_device.meter", "last_seen")?, json!(null));
    assert_eq!(s.attr("fleet_device.bare", "attributes")?, json!({}));
    assert_eq!(s.attr("fleet_device.bare", "group_ids")?, json!([]));

    // fleetd holds exactly what Terraform says.
    let d = acc
        .fleetd
        .get(&format!("/v1/devices/{id}"))?
        .context("device in fleetd")?;
    assert_eq!(d["name"], "meter-0001");
    assert_eq!(d["hardware"], "m1");
    assert_eq!(d["attributes"], json!({"region": "eu", "serial.no": "A-1"}));
    assert_eq!(d["group_ids"], json!([bench]));
    let g = acc
        .fleetd
        .get(&format!("/v1/device-groups/{bench}"))?
        .unwrap();
    assert_eq!(g["device_count"], 1);

    // In place: rename, new attributes, a second group (set order is free).
    let hcl2 = config(
        "meter-0001-eu",
        r#"{ region = "eu-west" }"#,
        "[fleet_device_group.eu.id, fleet_device_group.bench.id]",
    );
    let s2 = acc.wd.apply(&hcl2)?;
    assert_eq!(s2.str("fleet_device.meter", "id")?, id, "updated in place");
    assert_eq!(s2.attr("fleet_device.meter", "version")?, json!(2));
    let mut want_groups = vec![bench.clone(), eu.clone()];
    want_groups.sort();
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    assert_eq!(d["name"], "meter-0001-eu");
    assert_eq!(d["attributes"], json!({"region": "eu-west"}));
    assert_eq!(d["group_ids"], json!(want_groups));
    assert_eq!(d["version"], 2);

    acc.import_verify(&hcl2, "fleet_device.meter", &id, &[])?;
    let bare = s2.str("fleet_device.bare", "id")?;
    acc.import_verify(&hcl2, "fleet_device.bare", &bare, &[])?;
    acc.import_block_noop(&hcl2, "fleet_device.meter", &id)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/devices")?.is_empty(), "devices left");
    assert!(
        acc.fleetd.list("/v1/device-groups")?.is_empty(),
        "groups left"
    );
    Ok(())
}

#[test]
fn drift_is_planned_back() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config(
        "meter-0001",
        r#"{ region = "eu" }"#,
        "[fleet_device_group.bench.id]",
    );
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device.meter", "id")?;

    // Changed behind Terraform's back: attributes and membership.
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    let (status, body) = acc.fleetd.send(
        "PUT",
        &format!("/v1/devices/{id}"),
        Some(&json!({
            "name": "meter-0001", "hardware": "m1",
            "attributes": {"region": "edited-by-hand"}, "group_ids": [],
            "version": d["version"],
        })),
    )?;
    assert_eq!(status, 200, "{body}");
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "drift not detected");
    assert!(
        text.contains("edited-by-hand") && text.contains("1 to change"),
        "{text}"
    );
    acc.wd.apply(&hcl)?;
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    assert_eq!(d["attributes"], json!({"region": "eu"}));
    assert_eq!(d["group_ids"].as_array().map(Vec::len), Some(1));

    // Deleted behind Terraform's back: the plan creates it again.
    let (status, _) = acc
        .fleetd
        .send("DELETE", &format!("/v1/devices/{id}"), None)?;
    assert_eq!(status, 204);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty);
    assert!(text.contains("1 to add"), "{text}");
    let s = acc.wd.apply(&hcl)?;
    assert_ne!(s.str("fleet_device.meter", "id")?, id);

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}

/// What a device reports when it checks in (firmware, health, last seen)
/// is computed: a refresh that picks it up must not plan anything, and a
/// later update must still work. fleetd has no device API yet, so the
/// check-in is written the way fleetd's store would write it.
#[test]
fn reported_fields_refresh_without_a_diff() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("meter-0001", "{}", "[]");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device.meter", "id")?;
    if let Some(pg) = &acc.fleetd.database {
        // fleetd runs on PostgreSQL (FLEETFORM_ACC_DATABASE=postgres).
        let changed = pg.execute(&format!(
            "UPDATE devices SET firmware_version = '1.4.2', health = 'ok',
                    last_seen = '2025-01-31T12:00:00.000Z' WHERE id = '{id}'"
        ))?;
        assert_eq!(changed, 1, "check-in simulation");
    } else {
        let db = acc.fleetd.data_dir.path().join("fleetd.db");
        let script =
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1],timeout=10)\nc.execute(\"UPDATE devices SET firmware_version='1.4.2', health='ok', last_seen='2025-01-31T12:00:00.000Z' WHERE id=?\",(sys.argv[2],))\nc.commit()\nprint(c.total_changes)\n";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&db)
            .arg(&id)
            .output()
            .context("run python3 to simulate a check-in")?;
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1",
            "check-in simulation failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    assert_eq!(d["firmware_version"], "1.4.2");

    acc.wd.assert_empty_plan()?;
    acc.wd
        .ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
    let s = acc.wd.state()?;
    assert_eq!(s.str("fleet_device.meter", "firmware_version")?, "1.4.2");
    assert_eq!(s.str("fleet_device.meter", "health")?, "ok");
    assert_eq!(
        s.str("fleet_device.meter", "last_seen")?,
        "2025-01-31T12:00:00.000Z"
    );

    // An unrelated update still applies cleanly.
    let s = acc
        .wd
        .apply(&config("meter-0001", r#"{ region = "eu" }"#, "[]"))?;
    assert_eq!(s.str("fleet_device.meter", "firmware_version")?, "1.4.2");
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}

#[test]
fn invalid_input_fails_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    let device =
        |body: &str| format!("{PROVIDER}\nresource \"fleet_device\" \"bad\" {{\n{body}\n}}\n");

    let hcl = device("  name     = \"has space\"\n  hardware = \"m1\"");
    let text = acc.wd.plan_error(
        &hcl,
        &[
            "Invalid value for name",
            "invalid character ' '",
            "with fleet_device.bad",
        ],
    )?;
    let line = line_of(&hcl, "has space");
    assert!(text.contains(&format!("main.tf line {line}")), "{text}");

    acc.wd.plan_error(
        &device("  name     = \"ok\"\n  hardware = \"-m1\""),
        &[
            "Invalid value for hardware",
            "must start with a letter or digit",
        ],
    )?;

    let hcl = device("  name       = \"ok\"\n  hardware   = \"m1\"\n  attributes = { \"\" = \"x\", fine = \"y\" }");
    acc.wd.plan_error(
        &hcl,
        &[
            "Invalid value for attributes[\"\"]",
            "attribute keys must not be empty",
        ],
    )?;

    let long = "v".repeat(257);
    acc.wd.plan_error(
        &device(&format!(
            "  name       = \"ok\"\n  hardware   = \"m1\"\n  attributes = {{ serial = \"{long}\" }}"
        )),
        &[
            "Invalid value for attributes[\"serial\"]",
            "at most 256 characters",
        ],
    )?;

    acc.wd.plan_error(
        &device("  name      = \"ok\"\n  hardware  = \"m1\"\n  group_ids = [\"\"]"),
        &["Invalid value for group_ids", "must not be empty"],
    )?;

    // A group that does not exist: only fleetd knows, at apply, and says
    // which argument is wrong.
    let text = acc.wd.plan_error_or_apply_error(&device(
        "  name      = \"ok\"\n  hardware  = \"m1\"\n  group_ids = [\"no-such-group\"]",
    ))?;
    assert!(
        text.contains("Could not create device") && text.contains("group_ids"),
        "{text}"
    );

    // Nothing was written.
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}

/// Replacing a group the device belongs to removes the membership in
/// fleetd (and bumps the device's version) before Terraform updates the
/// device to the new group: that is not a conflicting change.
#[test]
fn replacing_a_member_group_updates_the_device() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("meter-0001", "{}", "[fleet_device_group.bench.id]");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device.meter", "id")?;
    let old_group = s.str("fleet_device_group.bench", "id")?;
    acc.wd.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-replace=fleet_device_group.bench",
    ])?;
    acc.wd.assert_empty_plan()?;
    let s = acc.wd.state()?;
    let new_group = s.str("fleet_device_group.bench", "id")?;
    assert_ne!(new_group, old_group);
    assert_eq!(s.str("fleet_device.meter", "id")?, id);
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    assert_eq!(d["group_ids"], json!([new_group]));
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}

/// A change made in fleetd between plan and apply is not overwritten: the
/// apply fails with a clear conflict and the other change survives.
#[test]
fn stale_write_is_a_clear_conflict() -> Result<()> {
    let acc = Acc::new()?;
    let s = acc
        .wd
        .apply(&config("meter-0001", r#"{ region = "eu" }"#, "[]"))?;
    let id = s.str("fleet_device.meter", "id")?;
    acc.wd
        .write_config(&config("meter-0001", r#"{ region = "us" }"#, "[]"))?;
    acc.wd.ok(&["plan", "-out=tfplan", "-no-color"])?;
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    let (status, _) = acc.fleetd.send(
        "PUT",
        &format!("/v1/devices/{id}"),
        Some(&json!({
            "name": "meter-0001", "hardware": "m1",
            "attributes": {"region": "eu", "rack": "b3"}, "group_ids": [],
            "version": d["version"],
        })),
    )?;
    assert_eq!(status, 200);
    let out = acc.wd.run(&["apply", "-no-color", "tfplan"])?;
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("Could not update device: changed outside Terraform"),
        "{text}"
    );
    let d = acc.fleetd.get(&format!("/v1/devices/{id}"))?.unwrap();
    assert_eq!(d["attributes"], json!({"region": "eu", "rack": "b3"}));
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/devices")?.is_empty());
    Ok(())
}
