//! The golden-path modules: `terraform fmt`, `terraform validate` and each
//! module's own `terraform test` suite, against a real fleetd through the
//! real provider; plus the README ↔ variables/outputs sync check.

use std::path::PathBuf;

use acceptance::{workspace_root, Acc, Workdir};
use anyhow::{bail, Context, Result};

const MODULES: &[&str] = &["fleet-foundation", "device-fleet", "staged-rollout"];

/// Runs `terraform validate` and `terraform test` on a copy of the module.
fn module_test(module: &str) -> Result<()> {
    let acc = Acc::new()?;
    let src: PathBuf = workspace_root().join("modules").join(module);
    let wd = Workdir::new(&acc.fleetd)?;
    acceptance::copy_config_dir(&src, wd.path())?;
    wd.ok(&["init", "-backend=false", "-input=false", "-no-color"])
        .context("terraform init")?;
    wd.ok(&["validate", "-no-color"])
        .context("terraform validate")?;
    let out = wd.run(&["test", "-no-color"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("Success!") || !text.contains(" 0 failed") {
        bail!(
            "terraform test of modules/{module} failed:\n{text}\nfleetd log:\n{}",
            acc.fleetd.log()
        );
    }
    Ok(())
}

#[test]
fn fleet_foundation() -> Result<()> {
    module_test("fleet-foundation")
}

#[test]
fn device_fleet() -> Result<()> {
    module_test("device-fleet")
}

#[test]
fn staged_rollout() -> Result<()> {
    module_test("staged-rollout")
}

#[test]
fn hcl_is_formatted() -> Result<()> {
    let acc = Acc::new()?;
    let wd = Workdir::new(&acc.fleetd)?;
    let root = workspace_root();
    let out = wd.run(&[
        "fmt",
        "-check",
        "-recursive",
        "-diff",
        root.join("modules").to_str().unwrap(),
        root.join("examples").to_str().unwrap(),
    ])?;
    if !out.status.success() {
        bail!(
            "terraform fmt -check found unformatted files:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

fn blocks(tf: &str, kind: &str) -> Vec<String> {
    tf.lines()
        .filter_map(|l| l.strip_prefix(&format!("{kind} \"")))
        .filter_map(|rest| rest.split('"').next().map(String::from))
        .collect()
}

/// Names listed in the README table under `heading` (first column, in backticks).
fn table(readme: &str, heading: &str) -> Vec<String> {
    let mut in_section = false;
    let mut out = Vec::new();
    for line in readme.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == format!("## {heading}");
            continue;
        }
        if in_section && line.starts_with("| `") {
            if let Some(name) = line.split('`').nth(1) {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn readme_tables_match_variables_and_outputs() -> Result<()> {
    let mut problems = Vec::new();
    for m in MODULES {
        let dir = workspace_root().join("modules").join(m);
        let readme = std::fs::read_to_string(dir.join("README.md"))
            .with_context(|| format!("{m}/README.md"))?;
        let vars = blocks(
            &std::fs::read_to_string(dir.join("variables.tf"))?,
            "variable",
        );
        let outs = blocks(&std::fs::read_to_string(dir.join("outputs.tf"))?, "output");
        for (kind, code, doc) in [
            ("input", vars, table(&readme, "Inputs")),
            ("output", outs, table(&readme, "Outputs")),
        ] {
            for n in &code {
                if !doc.contains(n) {
                    problems.push(format!("{m}: {kind} `{n}` is missing from README.md"));
                }
            }
            for n in &doc {
                if !code.contains(n) {
                    problems.push(format!(
                        "{m}: README.md documents {kind} `{n}` that does not exist"
                    ));
                }
            }
        }
        for tf in ["main.tf", "variables.tf", "outputs.tf", "versions.tf"] {
            if std::fs::read_to_string(dir.join(tf))?.contains("provider \"fleet\"") {
                problems.push(format!("{m}/{tf}: modules must not configure providers"));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
