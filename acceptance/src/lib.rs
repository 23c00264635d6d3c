//! Acceptance harness: the guarantees of terraform-plugin-testing, for a
//! Rust provider.
//!
//! Each test gets its own fleetd (temp data dir, free port) and its own
//! Terraform working directories, and drives the real Terraform CLI
//! against the freshly built provider binary:
//! - after every apply, `plan -refresh=false` and a refreshing `plan` must
//!   both be empty;
//! - import steps must reproduce the state (import-verify), and `import`
//!   blocks must plan a no-op import;
//! - at the end, `destroy` runs and fleetd must hold nothing.
//!
//! Terraform comes from `TF_ACC_TERRAFORM_PATH`, else `.tools/bin/terraform`
//! (installed by `make tools`). Binaries are built once per test process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

pub mod devices;
pub mod fleetd;
pub mod pg;
pub use fleetd::Fleetd;

/// The workspace root (parent of `acceptance/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the provider and fleetd once per test process (`cargo build` is a
/// no-op when `make test` already built them) and returns the bin dir.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Tests built with `cargo test --release` (large runs) drive release
        // binaries; otherwise debug ones.
        let release = !cfg!(debug_assertions);
        if std::env::var_os("FLEETFORM_SKIP_BUILD").is_none() {
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            // The same command as `make build`, so it is a no-op there.
            cargo
                .current_dir(workspace_root())
                .args(["build", "--workspace", "--bins"]);
            if release {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build");
            assert!(status.success(), "building the provider and fleetd failed");
        }
        target_dir().join(if release { "release" } else { "debug" })
    })
}

/// Where Terraform takes our provider from: `FLEETFORM_ACC_PROVIDER_DIR`
/// when set (`make test-shipped-provider` points it at the release build
/// `make install` ships), else [`bin_dir`].
pub fn provider_dir() -> PathBuf {
    match std::env::var_os("FLEETFORM_ACC_PROVIDER_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("terraform-provider-fleet").is_file(),
                "FLEETFORM_ACC_PROVIDER_DIR={} holds no terraform-provider-fleet",
                dir.display()
            );
            dir
        }
        None => bin_dir().to_path_buf(),
    }
}

/// Copies a directory of Terraform configuration (a module, an example)
/// without Terraform's local state: `.terraform/`, the lock file and
/// `*.tfstate*`.
pub fn copy_config_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".terraform"
            || name == ".terraform.lock.hcl"
            || name.to_string_lossy().contains(".tfstate")
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_config_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The Terraform CLI to drive.
pub fn terraform_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TF_ACC_TERRAFORM_PATH") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".tools/bin/terraform");
    assert!(
        p.exists(),
        "no Terraform: set TF_ACC_TERRAFORM_PATH or run `make tools` to install the pinned one at {}",
        p.display()
    );
    p
}

/// One Terraform working directory wired to our provider and a fleetd.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    cli_config: PathBuf,
    env: BTreeMap<String, String>,
}

impl Workdir {
    pub fn new(fleetd: &Fleetd) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("fleetform-acc-")
            .tempdir()?;
        let cli_config = dir.path().join(".terraformrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"fleetform/fleet\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                provider_dir().display()
            ),
        )?;
        let mut env = BTreeMap::new();
        env.insert("FLEET_ENDPOINT".into(), fleetd.endpoint.clone());
        env.insert("FLEET_TOKEN".into(), fleetd.token.clone());
        Ok(Workdir {
            dir,
            cli_config,
            env,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.insert(k.into(), v.into());
    }

    /// Replaces the configuration (`main.tf`) of this directory.
    pub fn write_config(&self, hcl: &str) -> Result<()> {
        std::fs::write(self.path().join("main.tf"), hcl)?;
        Ok(())
    }

    /// Runs `terraform ARGS` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(terraform_path());
        cmd.current_dir(self.path())
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env_remove("TF_LOG")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output()
            .with_context(|| format!("run terraform {args:?}"))
    }

    /// Runs `terraform ARGS` and fails with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "terraform {} failed ({}):\n{}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `plan -detailed-exitcode`: Ok(true) if the plan is empty.
    pub fn plan_is_empty(&self, refresh: bool) -> Result<(bool, String)> {
        let mut args = vec!["plan", "-detailed-exitcode", "-no-color"];
        if !refresh {
            args.push("-refresh=false");
        }
        let out = self.run(&args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => Ok((true, text)),
            Some(2) => Ok((self.only_check_reads(refresh)?, text)),
            _ => bail!("terraform plan failed:\n{text}"),
        }
    }

    /// Whether a plan's only "changes" are data sources nested in `check`
    /// blocks, which Terraform always plans to read again (without a
    /// refresh, at apply): they change nothing and are not a diff.
    fn only_check_reads(&self, refresh: bool) -> Result<bool> {
        let mut args = vec!["plan", "-out=tfplan.check", "-no-color"];
        if !refresh {
            args.push("-refresh=false");
        }
        self.ok(&args)?;
        let plan: Json = serde_json::from_str(&self.ok(&["show", "-json", "tfplan.check"])?)?;
        let _ = std::fs::remove_file(self.path().join("tfplan.check"));
        let changes = plan["resource_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let outputs_changed = plan["output_changes"].as_object().is_some_and(|o| {
            o.values()
                .any(|c| c["actions"] != serde_json::json!(["no-op"]))
        });
        Ok(!outputs_changed
            && changes.iter().all(|c| {
                let actions = &c["change"]["actions"];
                actions == &serde_json::json!(["no-op"])
                    || (c["mode"] == "data"
                        && actions == &serde_json::json!(["read"])
                        && c["action_reason"] == "read_because_check_nested")
            }))
    }

    /// Applies the configuration, then requires both the non-refreshing and
    /// the refreshing plan to be empty.
    pub fn apply(&self, hcl: &str) -> Result<State> {
        self.write_config(hcl)?;
        self.ok(&["apply", "-auto-approve", "-no-color"])?;
        self.assert_empty_plan()?;
        self.state()
    }

    pub fn assert_empty_plan(&self) -> Result<()> {
        for refresh in [false, true] {
            let (empty, text) = self.plan_is_empty(refresh)?;
            if !empty {
                bail!("plan after apply is not empty (refresh={refresh}):\n{text}");
            }
        }
        Ok(())
    }

    /// Runs a plan expected to fail, returning its (uncoloured) output; fails
    /// if it succeeds or if the output lacks every one of `needles`.
    pub fn plan_error(&self, hcl: &str, needles: &[&str]) -> Result<String> {
        self.write_config(hcl)?;
        let out = self.run(&["plan", "-no-color"])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            bail!("plan was expected to fail but succeeded:\n{text}");
        }
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for n in needles {
            if !flat.contains(n) {
                bail!("plan error lacks {n:?}:\n{text}");
            }
        }
        Ok(text)
    }

    /// Plans and, if the plan passes, applies `hcl`, expecting one of them to
    /// fail; returns the error output (whitespace-flattened).
    pub fn plan_error_or_apply_error(&self, hcl: &str) -> Result<String> {
        self.write_config(hcl)?;
        let out = self.run(&["apply", "-auto-approve", "-no-color"])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            bail!("expected plan or apply to fail, but apply succeeded:\n{text}");
        }
        Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The state as `terraform show -json` describes it.
    pub fn state(&self) -> Result<State> {
        let out = self.ok(&["show", "-json"])?;
        Ok(State(serde_json::from_str(&out)?))
    }

    /// Destroys everything and requires an empty state afterwards.
    pub fn destroy(&self) -> Result<()> {
        self.ok(&["destroy", "-auto-approve", "-no-color"])?;
        let s = self.state()?;
        if !s.resources().is_empty() {
            bail!("state not empty after destroy: {:?}", s.addresses());
        }
        Ok(())
    }

    /// Plans the current configuration and returns the JSON plan.
    pub fn plan_json(&self) -> Result<Json> {
        self.ok(&["plan", "-out=tfplan", "-no-color"])?;
        let out = self.ok(&["show", "-json", "tfplan"])?;
        Ok(serde_json::from_str(&out)?)
    }
}

/// `terraform show -json` output with helpers.
pub struct State(pub Json);

impl State {
    pub fn resources(&self) -> Vec<&Json> {
        fn walk<'a>(module: &'a Json, out: &mut Vec<&'a Json>) {
            if let Some(rs) = module["resources"].as_array() {
                out.extend(rs.iter());
            }
            if let Some(children) = module["child_modules"].as_array() {
                for c in children {
                    walk(c, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0["values"]["root_module"], &mut out);
        out
    }
    pub fn addresses(&self) -> Vec<String> {
        self.resources()
            .iter()
            .filter_map(|r| r["address"].as_str().map(String::from))
            .collect()
    }
    /// The attribute values of the resource at `address`.
    pub fn get(&self, address: &str) -> Result<&Json> {
        self.resources()
            .into_iter()
            .find(|r| r["address"] == address)
            .map(|r| &r["values"])
            .ok_or_else(|| anyhow!("no {address} in state; have {:?}", self.addresses()))
    }
    pub fn attr(&self, address: &str, name: &str) -> Result<Json> {
        Ok(self.get(address)?[name].clone())
    }
    pub fn str(&self, address: &str, name: &str) -> Result<String> {
        self.attr(address, name)?
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("{address}.{name} is not a string"))
    }
}

/// A test: its own fleetd and main working directory.
pub struct Acc {
    pub fleetd: Fleetd,
    pub wd: Workdir,
}

impl Acc {
    pub fn new() -> Result<Self> {
        let fleetd = Fleetd::start()?;
        let wd = Workdir::new(&fleetd)?;
        Ok(Acc { fleetd, wd })
    }

    /// Import-verify: forgets `address` from the state, imports it back by
    /// `id` with `terraform import`, and requires every attribute to equal
    /// what the state held (except `ignore`) and the plan to be empty.
    pub fn import_verify(&self, hcl: &str, address: &str, id: &str, ignore: &[&str]) -> Result<()> {
        self.wd.write_config(hcl)?;
        let want = self.wd.state()?.get(address)?.clone();
        self.wd.ok(&["state", "rm", "-no-color", address])?;
        self.wd.ok(&["import", "-no-color", address, id])?;
        let got_state = self.wd.state()?;
        compare_attrs(address, &want, got_state.get(address)?, ignore)?;
        self.wd.assert_empty_plan().context("plan after import")?;
        Ok(())
    }

    /// Import block: forgets `address`, plans `hcl` plus an `import` block
    /// for it and requires a pure import (no create, update or delete), then
    /// applies it and requires the plan without the block to be empty.
    pub fn import_block_noop(&self, hcl: &str, address: &str, id: &str) -> Result<()> {
        self.wd.ok(&["state", "rm", "-no-color", address])?;
        self.wd.write_config(&format!(
            "{hcl}\n\nimport {{\n  to = {address}\n  id = \"{id}\"\n}}\n"
        ))?;
        let plan = self.wd.plan_json()?;
        let changes = plan["resource_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in &changes {
            let noop = c["change"]["actions"] == serde_json::json!(["no-op"]);
            if c["address"] == address {
                if !noop || c["change"]["importing"].is_null() {
                    bail!(
                        "import block for {address} did not plan a pure import: {}",
                        c["change"]
                    );
                }
            } else if !noop {
                bail!(
                    "import block plan also changes {}: {}",
                    c["address"],
                    c["change"]["actions"]
                );
            }
        }
        self.wd
            .ok(&["apply", "-auto-approve", "-no-color", "tfplan"])?;
        self.wd.write_config(hcl)?;
        self.wd
            .assert_empty_plan()
            .context("plan after import block")?;
        Ok(())
    }
}

fn compare_attrs(address: &str, want: &Json, got: &Json, ignore: &[&str]) -> Result<()> {
    let (Some(w), Some(g)) = (want.as_object(), got.as_object()) else {
        bail!("{address}: values are not objects");
    };
    let mut diffs = Vec::new();
    for (k, wv) in w {
        if ignore.contains(&k.as_str()) {
            continue;
        }
        let gv = g.get(k).unwrap_or(&Json::Null);
        if gv != wv {
            diffs.push(format!("{k}: state {wv} vs imported {gv}"));
        }
    }
    if !diffs.is_empty() {
        bail!(
            "import of {address} does not reproduce the state:\n  {}",
            diffs.join("\n  ")
        );
    }
    Ok(())
}

/// Waits until `f` returns true or the deadline passes.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// Polls `read` until `done` holds for the value it returns, and returns
/// that value. A failing `read` ends the wait with its error; on timeout
/// the error shows the last value read.
pub fn wait_until<T: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    mut read: impl FnMut() -> Result<T>,
    done: impl Fn(&T) -> bool,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = read()?;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {value}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
