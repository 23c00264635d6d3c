//! End to end: Terraform applies a whole product line (factory CA,
//! enrollment, group, policy, firmware, rollout) through the real provider
//! into a real fleetd; simulated devices enroll over the mutual-TLS device
//! API and take the rollout; fleetd's counts, read back through Terraform,
//! must match the simulator's own ledger exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use acceptance::devices::{self, Devices};
use acceptance::{Fleetd, Workdir};
use anyhow::{ensure, Context, Result};
use fleet_api::device_api::UpdateOutcome;
use fleet_sim::factory::DeviceCredentials;
use fleet_sim::{Event, Factory, SimConfig};
use serde_json::{json, Value as Json};

/// The engine ticks often so that tests need not wait for it.
const FLEETD_ARGS: &[&str] = &["--engine-interval", "200ms"];

struct Line {
    fleetd: Fleetd,
    wd: Workdir,
    factory: Factory,
}

impl Line {
    fn new() -> Result<Line> {
        let fleetd = Fleetd::start_with(FLEETD_ARGS)?;
        let wd = Workdir::new(&fleetd)?;
        let factory = Factory::generate("meters factory", 365)?;
        factory.save(wd.path())?;
        Ok(Line {
            fleetd,
            wd,
            factory,
        })
    }

    /// Simulated meters signed by the factory Terraform imported.
    fn devices(&self, n: usize, fail_rate: f64, seed: u64) -> Result<Devices> {
        self.start_devices(self.device_config(n, fail_rate, seed)?)
    }

    /// The simulator settings [`Line::devices`] uses.
    fn device_config(&self, n: usize, fail_rate: f64, seed: u64) -> Result<SimConfig> {
        let mut cfg = devices::config(&self.fleetd, n, "meter")?;
        cfg.hardware = vec!["m1".into()];
        cfg.fail_rate = fail_rate;
        cfg.fail_version = Some("2.0.0".into());
        cfg.seed = seed;
        Ok(cfg)
    }

    fn start_devices(&self, cfg: SimConfig) -> Result<Devices> {
        let factory = Factory::from_pem(
            self.factory.certificate_pem(),
            self.factory.private_key_pem(),
        )?;
        Devices::start(cfg, factory)
    }

    fn rollout(&self, id: &str) -> Result<Json> {
        self.fleetd
            .get(&format!("/v1/rollouts/{id}"))?
            .context("rollout in fleetd")
    }

    /// Polls fleetd until the rollout's status is one of `want`.
    fn wait_status(&self, id: &str, want: &[&str], timeout: Duration) -> Result<Json> {
        acceptance::wait_until(
            &format!("rollout {id} to reach {want:?}"),
            timeout,
            || self.rollout(id),
            |r| want.contains(&r["status"].as_str().unwrap_or_default()),
        )
    }
}

/// The product line. `rollout` is the body of the
/// `fleet_firmware_rollout` resource, or `None` before devices exist (a
/// rollout's targets are the devices present when it starts).
fn config(rollout: Option<&str>) -> String {
    let mut hcl = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}

resource "fleet_device_group" "meters" {
  name   = "meters"
  config = jsonencode({ report_interval = 30 })
}

# The factory's CA, imported (its key is write-only: never in state).
resource "fleet_certificate_authority" "factory" {
  name                       = "meters-factory"
  certificate_pem            = file("${path.module}/factory-ca.pem")
  private_key_pem_wo         = file("${path.module}/factory-ca.key")
  private_key_pem_wo_version = 1
  force_destroy              = true
}

resource "fleet_enrollment" "meters" {
  name     = "meters-line"
  ca_id    = fleet_certificate_authority.factory.id
  group_id = fleet_device_group.meters.id
}

resource "fleet_policy" "meter" {
  name = "meter-device"
  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read", "firmware:download", "firmware:report"]
    resources = ["fleet:device/$${device.id}"]
  }
}

resource "fleet_policy_attachment" "meters" {
  policy_id = fleet_policy.meter.id
  group_id  = fleet_device_group.meters.id
}

resource "fleet_firmware" "v1" {
  product    = "meter-fw"
  version    = "1.0.0"
  hardware   = ["m1"]
  url        = "https://firmware.example.com/meter-1.0.0.bin"
  sha256     = "1111111111111111111111111111111111111111111111111111111111111111"
  size_bytes = 1048576
}

resource "fleet_firmware" "v2" {
  product    = "meter-fw"
  version    = "2.0.0"
  hardware   = ["m1"]
  url        = "https://firmware.example.com/meter-2.0.0.bin"
  sha256     = "2222222222222222222222222222222222222222222222222222222222222222"
  size_bytes = 1048576
}
"#
    .to_string();
    if let Some(body) = rollout {
        hcl.push_str(&format!(
            r#"
resource "fleet_firmware_rollout" "v2" {{
  name             = "meter-fw-2-0-0"
  firmware_id      = fleet_firmware.v2.id
  target_group_ids = [fleet_device_group.meters.id]
  device_timeout   = "5m"
{body}
}}

data "fleet_firmware_rollout" "v2" {{
  id = fleet_firmware_rollout.v2.id
}}
"#
        ));
    }
    hcl
}

const STAGED: &str = r#"
  phase {
    percent = 10
  }
  phase {
    percent = 50
  }
  phase {
    percent = 100
  }
  failure_threshold {
    percent     = 5
    min_devices = 100
  }
"#;

fn counts(v: &Json) -> BTreeMap<String, i64> {
    v["counts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(-1)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every device got the rollout's firmware at most once, and fleetd's
/// counts are the ledger's.
fn assert_matches_ledger(report: &fleet_sim::Report, rollout: &Json) -> Result<()> {
    let id = rollout["id"].as_str().context("id")?;
    let tally = report
        .ledger
        .rollouts()
        .remove(id)
        .context("the rollout is in the ledger")?;
    let c = counts(rollout);
    ensure!(
        tally.assignments == tally.assigned_devices,
        "a device got the same assignment twice: {tally:?}"
    );
    ensure!(
        c["succeeded"] as u64 == tally.succeeded,
        "fleetd {c:?} vs ledger {tally:?}"
    );
    ensure!(
        c["failed"] as u64 == tally.failed,
        "fleetd {c:?} vs ledger {tally:?}"
    );
    ensure!(report.summary.report_rejected == 0, "{:?}", report.summary);
    Ok(())
}

#[test]
fn two_thousand_devices_one_percent_failures_complete() -> Result<()> {
    let line = Line::new()?;
    line.wd.apply(&config(None))?;
    let devices = line.devices(2000, 0.01, 42)?;
    devices.wait_enrolled(Duration::from_secs(240))?;

    let hcl = config(Some(STAGED));
    let s = line.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware_rollout.v2", "id")?;
    let done = line.wait_status(&id, &["completed"], Duration::from_secs(300))?;
    let report = devices.stop()?;

    let c = counts(&done);
    assert_eq!(c["targeted"], 2000, "{done}");
    assert_eq!(c["pending"] + c["in_progress"], 0, "{done}");
    assert_eq!(c["succeeded"] + c["failed"], 2000, "{done}");
    assert!((5..=50).contains(&c["failed"]), "about 1% fail: {done}");
    assert_matches_ledger(&report, &done)?;
    let tally = &report.ledger.rollouts()[&id];
    assert_eq!(tally.assigned_devices, 2000);

    // Terraform sees the outcome on refresh, and the plan stays empty.
    let s = line.wd.apply(&hcl)?;
    let r = s.get("fleet_firmware_rollout.v2")?;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["counts"], done["counts"], "{r}");
    let ds = s.get("data.fleet_firmware_rollout.v2")?;
    assert_eq!(ds["status"], "completed");
    let ratio = ds["failure_ratio"].as_f64().context("failure_ratio")?;
    let want = c["failed"] as f64 / 2000.0;
    assert!((ratio - want).abs() < 1e-9, "{ratio} vs {want}");

    line.wd.destroy()?;
    assert!(line.fleetd.list("/v1/rollouts")?.is_empty());
    assert!(line.fleetd.list("/v1/firmware")?.is_empty());
    assert!(line.fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

#[test]
fn twenty_percent_failures_pause_at_the_threshold() -> Result<()> {
    let line = Line::new()?;
    line.wd.apply(&config(None))?;
    let devices = line.devices(400, 0.2, 7)?;
    devices.wait_enrolled(Duration::from_secs(120))?;

    let body = r#"
  phase {
    percent = 25
  }
  phase {
    percent = 100
  }
  failure_threshold {
    percent     = 10
    min_devices = 40
  }
"#;
    let hcl = config(Some(body));
    let s = line.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware_rollout.v2", "id")?;
    let paused = line.wait_status(&id, &["paused", "completed"], Duration::from_secs(120))?;
    assert_eq!(paused["status"], "paused", "{paused}");
    // Paused in the first phase: the rest of the fleet was never touched.
    assert_eq!(paused["current_phase"], 0, "{paused}");
    // Let in-flight installs land; nothing new may be assigned meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let settled = line.rollout(&id)?;
    let c = counts(&settled);
    assert_eq!(c["targeted"], 400);
    assert!(
        c["pending"] >= 300,
        "a paused rollout assigns no more devices: {settled}"
    );
    let results = c["succeeded"] + c["failed"];
    assert!(results >= 40, "the threshold needs 40 results: {settled}");
    assert!(
        c["failed"] * 10 > results,
        "paused because more than 10% failed: {settled}"
    );
    let report = devices.stop()?;
    assert_matches_ledger(&report, &settled)?;
    let tally = &report.ledger.rollouts()[&id];
    // Every delivered assignment was reported; devices assigned in the
    // phase but not yet delivered when it paused never got the firmware.
    assert_eq!(
        tally.assigned_devices as i64, results,
        "{tally:?} vs {settled}"
    );

    // Terraform shows the pause; the desired state is still `running`.
    let s = line.wd.apply(&hcl)?;
    assert_eq!(s.str("fleet_firmware_rollout.v2", "status")?, "paused");
    let ds = s.get("data.fleet_firmware_rollout.v2")?;
    assert!(
        ds["failure_ratio"].as_f64().unwrap_or_default() > 0.1,
        "{ds}"
    );
    line.wd.destroy()?;
    Ok(())
}

#[test]
fn the_rollback_action_reassigns_the_previous_firmware() -> Result<()> {
    let line = Line::new()?;
    line.wd.apply(&config(None))?;
    let devices = line.devices(200, 0.3, 3)?;
    devices.wait_enrolled(Duration::from_secs(120))?;

    let body = r#"
  phase {
    percent = 50
  }
  phase {
    percent = 100
  }
  failure_threshold {
    percent     = 10
    min_devices = 20
    action      = "rollback"
  }
"#;
    let hcl = config(Some(body));
    let s = line.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware_rollout.v2", "id")?;
    let v1 = s.str("fleet_firmware.v1", "id")?;
    line.wait_status(&id, &["rolled_back"], Duration::from_secs(120))?;
    // Wait for the devices to take their rollback assignments.
    let done = acceptance::wait_until(
        "the rollback to settle",
        Duration::from_secs(60),
        || line.rollout(&id),
        |r| {
            let c = counts(r);
            let back = devices
                .ledger
                .entries()
                .iter()
                .filter(|e| {
                    matches!(&e.event, Event::Reported { firmware_id, .. } if *firmware_id == v1)
                })
                .count() as i64;
            c["in_progress"] == 0 && c["rolled_back"] > 0 && back == c["rolled_back"]
        },
    )?;
    let report = devices.stop()?;

    // Exactly the devices that installed 2.0.0 got 1.0.0 assigned back.
    let entries = report.ledger.entries();
    let updated: BTreeSet<usize> = entries
        .iter()
        .filter(|e| {
            matches!(&e.event, Event::Reported { rollout_id, version, outcome: UpdateOutcome::Succeeded, .. }
                if *rollout_id == id && version == "2.0.0")
        })
        .map(|e| e.device)
        .collect();
    let reverted: BTreeSet<usize> = entries
        .iter()
        .filter(|e| {
            matches!(&e.event, Event::Assigned { rollout_id, firmware_id, version, .. }
                if *rollout_id == id && *firmware_id == v1 && version == "1.0.0")
        })
        .map(|e| e.device)
        .collect();
    assert!(
        !updated.is_empty(),
        "some devices updated before the rollback"
    );
    assert_eq!(updated, reverted, "rollback assignments");
    let c = counts(&done);
    assert_eq!(c["rolled_back"] as usize, reverted.len(), "{done}");
    // Only the first phase (half the fleet) was ever assigned; the rest
    // was cancelled when the rollout ended.
    assert!(
        c["failed"] + c["rolled_back"] <= 100,
        "the second phase never started: {done}"
    );

    let s = line.wd.apply(&hcl)?;
    assert_eq!(s.str("fleet_firmware_rollout.v2", "status")?, "rolled_back");
    line.wd.destroy()?;
    Ok(())
}

#[test]
fn kill_9_mid_rollout_then_restart_completes_with_exact_counts() -> Result<()> {
    let mut line = Line::new()?;
    line.wd.apply(&config(None))?;
    let devices = line.devices(600, 0.01, 5)?;
    devices.wait_enrolled(Duration::from_secs(180))?;

    let hcl = config(Some(STAGED));
    let s = line.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware_rollout.v2", "id")?;
    // Mid-rollout: the canary phase reported, the rest not yet done.
    acceptance::wait_until(
        "the canary phase's reports",
        Duration::from_secs(120),
        || {
            // `pending` until the engine's first tick has started it.
            let r = line.rollout(&id)?;
            ensure!(
                r["status"] == "running" || r["status"] == "pending",
                "not mid-rollout: {r}"
            );
            Ok(r)
        },
        |r| {
            let c = counts(r);
            c["succeeded"] + c["failed"] >= 60
        },
    )?;
    line.fleetd.kill9_and_restart()?;
    let before = line.rollout(&id)?;
    ensure!(before["status"] == "running", "{before}");

    let done = line.wait_status(&id, &["completed"], Duration::from_secs(300))?;
    let report = devices.stop()?;
    let c = counts(&done);
    assert_eq!(c["targeted"], 600, "{done}");
    assert_eq!(c["succeeded"] + c["failed"], 600, "{done}");
    assert_matches_ledger(&report, &done)?;
    assert_eq!(report.ledger.rollouts()[&id].assigned_devices, 600);
    // The restarted fleetd holds none of the old connections, so every
    // device (each checks in until stopped) had to connect again. Transport
    // errors are not a proof: a request cut by the kill is retried on a
    // fresh connection, and the restart can beat every device's next call.
    assert!(
        report.summary.connects >= 2 * 600,
        "every device reconnected after the crash: {:?}",
        report.summary
    );

    let s = line.wd.apply(&hcl)?;
    assert_eq!(s.str("fleet_firmware_rollout.v2", "status")?, "completed");
    line.wd.destroy()?;
    Ok(())
}

/// Crash safety: fleetd is killed with `kill -9` at five random points of a
/// rollout (drawn as fractions of the targets' reports, from right after the
/// start to nearly done) and restarted on the same data each time; the
/// rollout completes and fleetd's counts equal the simulator's ledger
/// exactly, with no device assigned twice. 1,000 devices in `make test`;
/// `FLEETFORM_CRASH_DEVICES=100000` for the full-size run, and
/// `FLEETFORM_CRASH_SEED` replays a run's kill points (printed).
#[test]
fn kill_9_at_five_random_points_of_a_rollout_keeps_exact_counts() -> Result<()> {
    use rand::{Rng, SeedableRng};
    let n: usize = env_or("FLEETFORM_CRASH_DEVICES", 1_000);
    let seed: u64 = env_or("FLEETFORM_CRASH_SEED", rand::rng().random());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut points: Vec<f64> = (0..5).map(|_| rng.random_range(0.0..0.95)).collect();
    points.sort_by(f64::total_cmp);
    eprintln!("crash safety: {n} devices, seed {seed}, kill points {points:.3?}");

    let mut line = Line::new()?;
    line.wd.apply(&config(None))?;
    let mut cfg = line.device_config(n, 0.01, seed)?;
    if n > 5_000 {
        // A connection per request (TLS sessions resumed) keeps the sockets
        // of 100,000 devices within the process's limits; each checks in
        // about every n/5 ms (≈ 5,000 check-ins/s offered).
        cfg.keep_alive = false;
        cfg.checkin_interval = Duration::from_millis((n as u64 / 5).min(20_000));
    }
    let devices = line.start_devices(cfg)?;
    let slack = Duration::from_secs(240 + n as u64 / 50);
    devices.wait_enrolled(slack)?;

    let hcl = config(Some(STAGED));
    let s = line.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware_rollout.v2", "id")?;
    for (i, point) in points.iter().enumerate() {
        let reported = (point * n as f64) as i64;
        acceptance::wait_until(
            &format!("{reported} reports before kill {}", i + 1),
            slack,
            || line.rollout(&id),
            |r| {
                let c = counts(r);
                c.get("succeeded").unwrap_or(&0) + c.get("failed").unwrap_or(&0) >= reported
            },
        )?;
        line.fleetd.kill9_and_restart()?;
        let r = line.rollout(&id)?;
        ensure!(
            ["running", "pending", "completed"].contains(&r["status"].as_str().unwrap_or("")),
            "after kill {}: {r}",
            i + 1
        );
    }

    let done = line.wait_status(&id, &["completed"], slack)?;
    let report = devices.stop()?;
    let c = counts(&done);
    assert_eq!(c["targeted"], n as i64, "{done}");
    assert_eq!(c["pending"] + c["in_progress"], 0, "{done}");
    assert_eq!(c["succeeded"] + c["failed"], n as i64, "{done}");
    assert_matches_ledger(&report, &done)?;
    assert_eq!(report.ledger.rollouts()[&id].assigned_devices, n as u64);
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A device whose certificate fleetd issued from its CSR through
/// Terraform: its policy lacks `firmware:download` (403 naming the
/// action), and revoking the certificate in Terraform locks it out.
#[test]
fn policy_denials_and_revocation_through_terraform() -> Result<()> {
    let fleetd = Fleetd::start_with(FLEETD_ARGS)?;
    let wd = Workdir::new(&fleetd)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "valve-001");
    std::fs::write(
        wd.path().join("device.csr"),
        params.serialize_request(&key)?.pem()?,
    )?;
    let config = |status: &str| {
        format!(
            r#"
terraform {{
  required_providers {{
    fleet = {{ source = "fleetform/fleet" }}
  }}
}}
provider "fleet" {{}}

resource "fleet_device_group" "valves" {{
  name = "valves"
}}
resource "fleet_certificate_authority" "devices" {{
  name          = "valves-ca"
  force_destroy = true
}}
resource "fleet_certificate" "valve" {{
  ca_id       = fleet_certificate_authority.devices.id
  csr_pem     = file("${{path.module}}/device.csr")
  common_name = "valve-001"
  status      = "{status}"
}}
resource "fleet_enrollment" "valves" {{
  name     = "valves"
  ca_id    = fleet_certificate_authority.devices.id
  group_id = fleet_device_group.valves.id
}}
resource "fleet_policy" "checkin_only" {{
  name = "valves-checkin-only"
  statement {{
    effect    = "allow"
    actions   = ["device:checkin", "config:read"]
    resources = ["fleet:device/$${{device.id}}"]
  }}
}}
resource "fleet_policy_attachment" "valves" {{
  policy_id = fleet_policy.checkin_only.id
  group_id  = fleet_device_group.valves.id
}}
"#
        )
    };
    let s = wd.apply(&config("active"))?;
    let cert_pem = s.str("fleet_certificate.valve", "certificate_pem")?;
    let creds = DeviceCredentials::from_pem("valve-001", &cert_pem, &key.serialize_pem())?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = devices::endpoint(&fleetd)?;
    let call = |path: &'static str, method: &'static str, body: Option<Json>| {
        let endpoint = endpoint.clone();
        let creds = creds.clone();
        rt.block_on(async move {
            use fleet_sim::client::{Answer, DeviceClient};
            // A fresh connection each time: a full handshake.
            let mut client = DeviceClient::new(endpoint, &creds, false)?;
            let m = hyper::Method::from_bytes(method.as_bytes())?;
            let answer = client.call::<Json, Json>(m, path, body.as_ref()).await;
            anyhow::Ok(match answer {
                Ok(Answer::Ok(status, v)) => Ok((status.as_u16(), v)),
                Ok(Answer::Err(status, e)) => Ok((status.as_u16(), serde_json::to_value(e)?)),
                Err(e) => Err(e.to_string()),
            })
        })
    };

    let (status, body) =
        call("/enroll", "POST", Some(json!({"hardware": "v1"})))?.map_err(anyhow::Error::msg)?;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = call(
        "/checkin",
        "POST",
        Some(json!({"firmware_version": "1.0.0", "health": "ok"})),
    )?
    .map_err(anyhow::Error::msg)?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["config_digest"].is_string(),
        "config:read allowed: {body}"
    );
    assert_eq!(
        body["denied"],
        json!(["firmware:download"]),
        "the assignment is withheld: {body}"
    );
    let (status, body) = call("/assignment", "GET", None)?.map_err(anyhow::Error::msg)?;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.to_string().contains("firmware:download"),
        "the refusal names the action: {body}"
    );

    // Revoked in Terraform: refused at the next handshake.
    wd.apply(&config("revoked"))?;
    let refused = call("/checkin", "POST", Some(json!({"health": "ok"})))?;
    match refused {
        Err(e) => assert!(e.contains("TLS"), "{e}"),
        Ok((status, body)) => assert_eq!(status, 401, "{body}"),
    }
    wd.destroy()?;
    assert!(fleetd.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}
