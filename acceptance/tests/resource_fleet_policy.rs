//! `fleet_policy` through real Terraform, the real provider and a real
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

/// `$${...}` is how HCL spells a literal `${...}`.
fn config(description: &str, telemetry_resource: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "fleet_policy" "meters" {{
  name        = "meters-baseline"
  description = "{description}"

  statement {{
    effect    = "allow"
    actions   = ["device:checkin", "config:read", "firmware:*"]
    resources = ["fleet:device/$${{device.id}}", "fleet:config/$${{device.group}}/*"]
  }}

  statement {{
    effect    = "allow"
    actions   = ["telemetry:publish"]
    resources = ["{telemetry_resource}"]
  }}

  statement {{
    effect    = "deny"
    actions   = ["*"]
    resources = ["fleet:group/quarantine/*"]
  }}
}}
"#
    )
}

fn line_of(hcl: &str, needle: &str) -> usize {
    hcl.lines()
        .position(|l| l.contains(needle))
        .expect("needle in hcl")
        + 1
}

/// The planned change of `fleet_policy.meters` for `hcl`.
fn planned_change(acc: &Acc, hcl: &str) -> Result<serde_json::Value> {
    acc.wd.write_config(hcl)?;
    let plan = acc.wd.plan_json()?;
    plan["resource_changes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["address"] == "fleet_policy.meters"))
        .map(|c| c["change"].clone())
        .context("no change for fleet_policy.meters")
}

#[test]
fn lifecycle_update_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("baseline", "fleet:telemetry/$${device.id}/*");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_policy.meters", "id")?;
    assert_eq!(s.attr("fleet_policy.meters", "policy_version")?, json!(1));
    let st = s.attr("fleet_policy.meters", "statement")?;
    assert_eq!(st[0]["resources"][0], "fleet:device/${device.id}");
    assert_eq!(st[2]["effect"], "deny");

    // fleetd holds exactly the statements, in order.
    let p = acc
        .fleetd
        .get(&format!("/v1/policies/{id}"))?
        .context("policy in fleetd")?;
    assert_eq!(p["description"], "baseline");
    assert_eq!(
        p["statements"],
        json!([
            {"effect": "allow", "actions": ["device:checkin", "config:read", "firmware:*"],
             "resources": ["fleet:device/${device.id}", "fleet:config/${device.group}/*"]},
            {"effect": "allow", "actions": ["telemetry:publish"],
             "resources": ["fleet:telemetry/${device.id}/*"]},
            {"effect": "deny", "actions": ["*"], "resources": ["fleet:group/quarantine/*"]},
        ])
    );

    // A new description is not a new policy version (and the plan knew it:
    // a planned 1 that came back 2 would fail the apply).
    let hcl2 = config("baseline, reviewed", "fleet:telemetry/$${device.id}/*");
    let change = planned_change(&acc, &hcl2)?;
    assert_eq!(change["after"]["policy_version"], json!(1), "{change}");
    assert_eq!(change["after_unknown"]["version"], json!(true), "{change}");
    let s2 = acc.wd.apply(&hcl2)?;
    assert_eq!(s2.str("fleet_policy.meters", "id")?, id);
    assert_eq!(s2.attr("fleet_policy.meters", "policy_version")?, json!(1));
    assert_eq!(s2.attr("fleet_policy.meters", "version")?, json!(2));

    // New statements are.
    let hcl3 = config("baseline, reviewed", "fleet:telemetry/$${device.name}/*");
    let change = planned_change(&acc, &hcl3)?;
    assert_eq!(
        change["after_unknown"]["policy_version"],
        json!(true),
        "{change}"
    );
    let s3 = acc.wd.apply(&hcl3)?;
    assert_eq!(s3.str("fleet_policy.meters", "id")?, id);
    assert_eq!(s3.attr("fleet_policy.meters", "policy_version")?, json!(2));
    let versions = acc
        .fleetd
        .get(&format!("/v1/policies/{id}/versions"))?
        .unwrap();
    let kept: Vec<i64> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["policy_version"].as_i64())
        .collect();
    assert_eq!(kept, vec![2, 1], "both versions kept, newest first");

    acc.import_verify(&hcl3, "fleet_policy.meters", &id, &[])?;
    acc.import_block_noop(&hcl3, "fleet_policy.meters", &id)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policies")?.is_empty(), "policies left");
    Ok(())
}

#[test]
fn drift_is_planned_back() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = config("baseline", "fleet:telemetry/$${device.id}/*");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_policy.meters", "id")?;

    // Someone widens the policy by hand: the plan narrows it again.
    let mut p = acc.fleetd.get(&format!("/v1/policies/{id}"))?.unwrap();
    p["statements"][2]["effect"] = json!("allow");
    let (status, body) = acc.fleetd.send(
        "PUT",
        &format!("/v1/policies/{id}"),
        Some(&json!({
            "name": p["name"], "description": p["description"],
            "statements": p["statements"], "version": p["version"],
        })),
    )?;
    assert_eq!(status, 200, "{body}");
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "drift not detected");
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(r#"~ effect = "allow" -> "deny""#) && flat.contains("1 to change"),
        "{text}"
    );
    let s = acc.wd.apply(&hcl)?;
    assert_eq!(s.attr("fleet_policy.meters", "policy_version")?, json!(3));
    let p = acc.fleetd.get(&format!("/v1/policies/{id}"))?.unwrap();
    assert_eq!(p["statements"][2]["effect"], "deny");

    // Deleted behind Terraform's back: the plan creates it again.
    let (status, _) = acc
        .fleetd
        .send("DELETE", &format!("/v1/policies/{id}"), None)?;
    assert_eq!(status, 204);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty);
    assert!(text.contains("1 to add"), "{text}");
    let s = acc.wd.apply(&hcl)?;
    assert_ne!(s.str("fleet_policy.meters", "id")?, id);

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policies")?.is_empty());
    Ok(())
}

#[test]
fn invalid_statements_fail_at_plan_naming_the_element() -> Result<()> {
    let acc = Acc::new()?;

    // A typo in an action, in the second statement's first action.
    let hcl = config("x", "fleet:telemetry/*").replace(
        r#"actions   = ["telemetry:publish"]"#,
        r#"actions   = ["telemetry:pubilsh"]"#,
    );
    let text = acc.wd.plan_error(
        &hcl,
        &[
            "Invalid policy statement at statement[1].actions[0]",
            r#"unknown action "telemetry:pubilsh" (did you mean "telemetry:publish"?)"#,
            "with fleet_policy.meters",
        ],
    )?;
    let line = line_of(&hcl, "telemetry:pubilsh");
    assert!(text.contains(&format!("main.tf line {line}")), "{text}");

    // A malformed resource pattern, second resource of the first statement,
    // reported together with an unknown variable in another statement.
    let hcl = config("x", "fleet:telemetry/$${device.serial}").replace(
        "fleet:config/$${device.group}/*",
        "config/$${device.group}/*",
    );
    acc.wd.plan_error(
        &hcl,
        &[
            "Invalid policy statement at statement[0].resources[1]",
            "malformed resource pattern",
            "Invalid policy statement at statement[1].resources[0]",
            r#"unknown variable "${device.serial}""#,
        ],
    )?;

    // An effect that is neither allow nor deny.
    acc.wd.plan_error(
        &config("x", "*").replace(r#"effect    = "deny""#, r#"effect    = "block""#),
        &[
            "Invalid value for statement[2].effect",
            "must be one of allow, deny",
        ],
    )?;

    // An empty action list.
    acc.wd.plan_error(
        &config("x", "*").replace(r#"actions   = ["*"]"#, "actions   = []"),
        &[
            "Invalid policy statement at statement[2].actions",
            "must list at least one action",
        ],
    )?;

    // No statement at all (Terraform itself enforces the block count).
    acc.wd.plan_error(
        &format!("{PROVIDER}\nresource \"fleet_policy\" \"empty\" {{\n  name = \"empty\"\n}}\n"),
        &["statement"],
    )?;

    // A bad name.
    acc.wd.plan_error(
        &config("x", "*").replace("meters-baseline", "meters/baseline"),
        &["Invalid value for name", "invalid character '/'"],
    )?;

    assert!(acc.fleetd.list("/v1/policies")?.is_empty());
    Ok(())
}

/// A statement value that is unknown at plan time is not an error: it is
/// checked once known (here by fleetd at apply).
#[test]
fn unknown_values_are_validated_later() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = format!(
        r#"{PROVIDER}
resource "fleet_device_group" "g" {{
  name = "sensors"
}}
resource "fleet_policy" "p" {{
  name = "per-group"
  statement {{
    effect    = "allow"
    actions   = ["config:read"]
    resources = ["fleet:group/${{fleet_device_group.g.id}}/*"]
  }}
}}
"#
    );
    let s = acc.wd.apply(&hcl)?;
    let gid = s.str("fleet_device_group.g", "id")?;
    let st = s.attr("fleet_policy.p", "statement")?;
    assert_eq!(st[0]["resources"][0], json!(format!("fleet:group/{gid}/*")));
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/policies")?.is_empty());
    Ok(())
}
