//! `fleet_device_group` through real Terraform, the real provider and a real
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

fn config(description: &str, tags: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_device_group" "prod" {{
  name = "prod"
}}
resource "fleet_device_group" "meters" {{
  name        = "meters"
  description = "{description}"
  parent_id   = fleet_device_group.prod.id
  tags        = {tags}
}}
"#
    )
}

#[test]
fn lifecycle_update_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("smart meters", r#"{ line = "m2" }"#);
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device_group.meters", "id")?;
    let parent = s.str("fleet_device_group.prod", "id")?;
    assert_eq!(s.str("fleet_device_group.meters", "path")?, "prod/meters");
    assert_eq!(
        s.attr("fleet_device_group.meters", "parent_id")?,
        json!(parent)
    );
    assert_eq!(s.attr("fleet_device_group.prod", "description")?, json!(""));
    assert_eq!(s.attr("fleet_device_group.prod", "tags")?, json!({}));

    // fleetd holds exactly what Terraform says.
    let g = acc
        .fleetd
        .get(&format!("/v1/device-groups/{id}"))?
        .expect("group in fleetd");
    assert_eq!(g["description"], "smart meters");
    assert_eq!(g["tags"], json!({"line": "m2"}));
    assert_eq!(g["parent_id"], json!(parent));

    // In-place update keeps the id and bumps the version.
    let hcl2 = config("smart meters v2", r#"{ line = "m2", tier = "gold" }"#);
    let s2 = acc.wd.apply(&hcl2)?;
    assert_eq!(s2.str("fleet_device_group.meters", "id")?, id);
    assert_eq!(s2.attr("fleet_device_group.meters", "version")?, json!(2));
    let g = acc.fleetd.get(&format!("/v1/device-groups/{id}"))?.unwrap();
    assert_eq!(g["tags"], json!({"line": "m2", "tier": "gold"}));

    acc.import_verify(&hcl2, "fleet_device_group.prod", &parent, &[])?;
    acc.import_block_noop(&hcl2, "fleet_device_group.prod", &parent)?;

    acc.wd.destroy()?;
    assert!(
        acc.fleetd.list("/v1/device-groups")?.is_empty(),
        "fleetd still has groups"
    );
    Ok(())
}

#[test]
fn drift_is_planned_back() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("d", "{}");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device_group.meters", "id")?;

    // Changed behind Terraform's back: the plan updates it back.
    let g = acc.fleetd.get(&format!("/v1/device-groups/{id}"))?.unwrap();
    let (status, _) = acc.fleetd.send(
        "PUT",
        &format!("/v1/device-groups/{id}"),
        Some(&json!({"name": "meters", "description": "edited by hand", "parent_id": g["parent_id"], "tags": {}, "version": g["version"]})),
    )?;
    assert_eq!(status, 200);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "drift not detected");
    assert!(
        text.contains("edited by hand") && text.contains("1 to change"),
        "{text}"
    );
    acc.wd.apply(&hcl)?;

    // Deleted behind Terraform's back: the plan creates it again.
    let (status, _) = acc
        .fleetd
        .send("DELETE", &format!("/v1/device-groups/{id}"), None)?;
    assert_eq!(status, 204);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty);
    assert!(text.contains("1 to add"), "{text}");
    let s = acc.wd.apply(&hcl)?;
    assert_ne!(s.str("fleet_device_group.meters", "id")?, id);

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    Ok(())
}

#[test]
fn invalid_input_fails_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    acc.wd.plan_error(
        &format!(
            "{PROVIDER}\nresource \"fleet_device_group\" \"bad\" {{\n  name = \"has space\"\n}}\n"
        ),
        &[
            "Invalid value for name",
            "invalid character ' ' in \"has space\"",
            "with fleet_device_group.bad",
        ],
    )?;
    acc.wd.plan_error(
        &format!(
            "{PROVIDER}\nresource \"fleet_device_group\" \"bad\" {{\n  name = \"ok\"\n  tags = {{ \"\" = \"x\" }}\n}}\n"
        ),
        &["Invalid key in tags"],
    )?;
    // Nothing was written.
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    Ok(())
}

#[test]
fn config_merges_down_and_query_is_kept() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = format!(
        r#"{PROVIDER}
resource "fleet_device_group" "prod" {{
  name   = "prod"
  config = jsonencode({{ telemetry = {{ interval = 60, endpoint = "mqtt://a" }}, debug = false }})
}}
resource "fleet_device_group" "meters" {{
  name      = "meters"
  parent_id = fleet_device_group.prod.id
  query     = "hardware == \"meter-v2\" and attr.region in [\"eu-west\", \"eu-north\"]"
  config    = jsonencode({{ telemetry = {{ interval = 15 }}, debug = null }})
}}
"#
    );
    let s = acc.wd.apply(&hcl)?;
    let eff: serde_json::Value =
        serde_json::from_str(&s.str("fleet_device_group.meters", "effective_config")?)?;
    assert_eq!(
        eff,
        json!({"telemetry": {"interval": 15, "endpoint": "mqtt://a"}}),
        "child wins, null removes a key"
    );
    assert_eq!(
        s.attr("fleet_device_group.meters", "device_count")?,
        json!(0)
    );
    let id = s.str("fleet_device_group.meters", "id")?;
    acc.import_verify(&hcl, "fleet_device_group.meters", &id, &[])?;

    // A query with a syntax error is refused with its position.
    let bad = hcl.replace("hardware == \\\"meter-v2\\\"", "hardware == ");
    let text = acc.wd.plan_error_or_apply_error(&bad)?;
    assert!(text.contains("query"), "{text}");
    acc.wd.write_config(&hcl)?;
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/device-groups")?.is_empty());
    Ok(())
}

#[test]
fn stale_write_is_a_clear_conflict_and_nothing_is_lost() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("v1", "{}");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_device_group.meters", "id")?;
    // Someone else updates the group through the API...
    let g = acc.fleetd.get(&format!("/v1/device-groups/{id}"))?.unwrap();
    let (status, _) = acc.fleetd.send(
        "PUT",
        &format!("/v1/device-groups/{id}"),
        Some(&json!({"name": "meters", "description": "theirs", "parent_id": g["parent_id"], "tags": {}, "version": g["version"]})),
    )?;
    assert_eq!(status, 200);
    // ...and Terraform applies from its stale state without refreshing.
    acc.wd.write_config(&config("ours", "{}"))?;
    let out = acc
        .wd
        .run(&["apply", "-auto-approve", "-refresh=false", "-no-color"])?;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("changed outside Terraform"), "{text}");
    assert!(text.contains("refresh"), "{text}");
    // Their write survived; a refreshing apply then converges.
    let g = acc.fleetd.get(&format!("/v1/device-groups/{id}"))?.unwrap();
    assert_eq!(g["description"], "theirs");
    let s = acc.wd.apply(&config("ours", "{}"))?;
    assert_eq!(s.str("fleet_device_group.meters", "description")?, "ours");
    acc.wd.destroy()?;
    Ok(())
}

#[test]
fn import_block_generates_configuration() -> Result<()> {
    let acc = Acc::new()?;
    let (status, g) = acc.fleetd.send(
        "POST",
        "/v1/device-groups",
        Some(&json!({"name": "legacy", "description": "made by hand", "tags": {"owner": "ops"}})),
    )?;
    assert_eq!(status, 201, "{g}");
    let id = g["id"].as_str().unwrap();
    acc.wd.write_config(&format!(
        "{PROVIDER}\nimport {{\n  to = fleet_device_group.legacy\n  id = \"{id}\"\n}}\n"
    ))?;
    acc.wd
        .ok(&["plan", "-no-color", "-generate-config-out=generated.tf"])?;
    let generated = std::fs::read_to_string(acc.wd.path().join("generated.tf"))?;
    assert!(
        generated.contains("name") && generated.contains("\"legacy\""),
        "{generated}"
    );
    assert!(generated.contains("made by hand"), "{generated}");
    for computed in ["path", "effective_config", "device_count", "version"] {
        assert!(
            !generated
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{computed} "))),
            "computed {computed} must not be generated:\n{generated}"
        );
    }
    // The generated configuration imports with no change.
    acc.wd.ok(&["apply", "-auto-approve", "-no-color"])?;
    acc.wd.assert_empty_plan()?;
    Ok(())
}
