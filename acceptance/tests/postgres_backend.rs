//! A representative configuration through real Terraform against a fleetd
//! whose state is in PostgreSQL (a fresh database for the test): group
//! tree, CA, certificate, policy and attachment, firmware, rollout. Plans
//! after apply are empty, import reads back what apply wrote, destroy
//! leaves the database empty (audit trail aside). Then two replicas on one
//! database: 20,000 simulated devices behind a load balancer, one replica
//! killed with `kill -9` mid-rollout; a policy change and a revocation
//! through one replica enforced by the other; concurrent Terraform applies
//! through both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acceptance::devices::Devices;
use acceptance::fleetd::Fleetd;
use acceptance::{Acc, Workdir};
use anyhow::{ensure, Context, Result};
use fleet_sim::factory::DeviceCredentials;
use fleet_sim::{Endpoint, Factory, SimConfig};
use serde_json::{json, Value as Json};

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
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM audit_log WHERE action = 'create'")?,
        8,
        "one audit row per object created"
    );
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

// ---------------------------------------------------------------- replicas

/// A product line, as the end-to-end rollout tests apply it, plus a
/// staged rollout when `with_rollout`.
fn line(with_rollout: bool) -> String {
    let mut hcl = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}

resource "fleet_device_group" "meters" {
  name = "meters"
}
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
    if with_rollout {
        hcl.push_str(
            r#"
resource "fleet_firmware_rollout" "v2" {
  name             = "meter-fw-2-0-0"
  firmware_id      = fleet_firmware.v2.id
  target_group_ids = [fleet_device_group.meters.id]
  device_timeout   = "5m"
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
}
"#,
        );
    }
    hcl
}

/// A TCP load balancer in front of the replicas' device listeners: each
/// new connection goes to the next backend in turn, skipping ones that
/// refuse (a killed replica). TLS passes through untouched.
struct Balancer {
    addr: std::net::SocketAddr,
    per_backend: Arc<Vec<AtomicU64>>,
    _rt: tokio::runtime::Runtime,
}

impl Balancer {
    fn start(backends: Vec<std::net::SocketAddr>) -> Result<Balancer> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let per_backend: Arc<Vec<AtomicU64>> =
            Arc::new(backends.iter().map(|_| AtomicU64::new(0)).collect());
        let counts = Arc::clone(&per_backend);
        rt.spawn(async move {
            let next = AtomicU64::new(0);
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let start = next.fetch_add(1, Ordering::Relaxed) as usize;
                let backends = backends.clone();
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    for i in 0..backends.len() {
                        let b = (start + i) % backends.len();
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(backends[b]).await
                        {
                            counts[b].fetch_add(1, Ordering::Relaxed);
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Balancer {
            addr,
            per_backend,
            _rt: rt,
        })
    }

    fn connections(&self) -> Vec<u64> {
        self.per_backend
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

fn device_addr(f: &Fleetd) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    f.device_addr()?
        .to_socket_addrs()?
        .next()
        .context("device address")
}

/// Two fleetd replicas on one PostgreSQL database behind a load balancer;
/// simulated devices enroll and take a rollout through both; the replica
/// holding the rollout's engine lease is killed with `kill -9` mid-rollout;
/// the other takes the lease over once it expires and completes the
/// rollout with exact counts, no device assigned twice (the simulator's
/// ledger), and a revocation made through one replica is enforced by the
/// other at once.
#[test]
fn two_replicas_complete_a_rollout_when_one_is_killed() -> Result<()> {
    // Leases expire fast so that the takeover happens within the test.
    std::env::set_var("FLEETD_ENGINE_LEASE", "2");
    let db = acceptance::pg::PgDatabase::create()?;
    let keys = tempfile::tempdir()?;
    let master_key = keys.path().join("master.key");
    std::fs::write(&master_key, format!("{}\n", "5a".repeat(32)))?;
    let master_key = master_key.to_str().context("utf-8 path")?.to_owned();
    let args = [
        "--engine-interval",
        "200ms",
        "--database-url",
        &db.url,
        "--master-key-file",
        &master_key,
    ];
    let mut replicas = [
        Some(Fleetd::start_with(&args)?),
        Some(Fleetd::start_with(&args)?),
    ];
    let a = replicas[0].as_ref().unwrap();
    let b = replicas[1].as_ref().unwrap();
    // One fleet: both replicas serve the device server CA in the database.
    assert_eq!(a.device_server_ca()?, b.device_server_ca()?);
    let balancer = Balancer::start(vec![device_addr(a)?, device_addr(b)?])?;

    // Terraform talks to replica A.
    let wd = Workdir::new(a)?;
    let factory = Factory::generate("meters factory", 365)?;
    factory.save(wd.path())?;
    wd.apply(&line(false))?;

    // 20,000 devices unless FLEETFORM_REPLICA_DEVICES says otherwise.
    let n: usize = std::env::var("FLEETFORM_REPLICA_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let endpoint = Endpoint::new(balancer.addr, &a.device_server_ca()?, Some("localhost"))?;
    let mut cfg = SimConfig::new(endpoint, n);
    // A connection per request (TLS sessions resumed): the balancer in this
    // process would otherwise hold three sockets per device.
    cfg.keep_alive = false;
    cfg.name_prefix = "meter".into();
    cfg.hardware = vec!["m1".into()];
    cfg.fail_rate = 0.01;
    cfg.fail_version = Some("2.0.0".into());
    cfg.seed = 11;
    // Each device checks in about every 4 s: ≈ 5,000 check-ins/s offered
    // across both replicas at 20,000 devices.
    cfg.checkin_interval = Duration::from_millis((n as u64 / 5).clamp(400, 4_000));
    cfg.install_time = Duration::from_millis(10);
    let devices = Devices::start(
        cfg,
        Factory::from_pem(factory.certificate_pem(), factory.private_key_pem())?,
    )?;
    devices.wait_enrolled(Duration::from_secs(900))?;
    let spread = balancer.connections();
    assert!(
        spread.iter().all(|&c| c > 0),
        "devices reach both replicas: {spread:?}"
    );

    let s = wd.apply(&line(true))?;
    let id = s.str("fleet_firmware_rollout.v2", "id")?;
    let rollout = |f: &Fleetd| -> Result<Json> {
        f.get(&format!("/v1/rollouts/{id}"))?
            .context("rollout in fleetd")
    };
    let count = |r: &Json, k: &str| r["counts"][k].as_i64().unwrap_or(-1);

    // Mid-rollout: the canary phase reported, the rest not yet done.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let r = rollout(b)?;
        if count(&r, "succeeded") + count(&r, "failed") >= 60 && r["status"] == "running" {
            break;
        }
        // `pending` until the first engine tick after the apply starts it.
        ensure!(
            (r["status"] == "running" || r["status"] == "pending") && Instant::now() < deadline,
            "not mid-rollout: {r}\nreplica A log:\n{}\nreplica B log:\n{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Kill the replica that drives the rollout (holds its lease).
    let holder = db.query_text(&format!(
        "SELECT holder FROM rollout_leases WHERE rollout_id = '{id}'"
    ))?;
    let victim = replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|r| r.log().contains(&holder)))
        .context("the lease holder is one of the replicas")?;
    drop(replicas[victim].take()); // SIGKILL
    let survivor = replicas[1 - victim].as_ref().unwrap();

    let deadline = Instant::now() + Duration::from_secs(900);
    let done = loop {
        let r = rollout(survivor)?;
        if r["status"] == "completed" {
            break r;
        }
        ensure!(Instant::now() < deadline, "rollout never completed: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let new_holder = db.query_text(&format!(
        "SELECT COALESCE((SELECT holder FROM rollout_leases WHERE rollout_id = '{id}'), 'none')"
    ))?;
    ensure!(
        new_holder != holder,
        "the dead replica still holds the lease"
    );

    let report = devices.stop()?;
    let tally = report
        .ledger
        .rollouts()
        .remove(&id)
        .context("the rollout is in the ledger")?;
    assert_eq!(count(&done, "targeted"), n as i64, "{done}");
    assert_eq!(
        count(&done, "succeeded") + count(&done, "failed"),
        n as i64,
        "{done}"
    );
    assert_eq!(tally.assigned_devices, n as u64, "{tally:?}");
    assert_eq!(
        tally.assignments, tally.assigned_devices,
        "a device got the same assignment twice: {tally:?}"
    );
    assert_eq!(
        count(&done, "succeeded") as u64,
        tally.succeeded,
        "{done} {tally:?}"
    );
    assert_eq!(
        count(&done, "failed") as u64,
        tally.failed,
        "{done} {tally:?}"
    );
    assert_eq!(report.summary.report_rejected, 0, "{:?}", report.summary);
    // The database agrees: every targeted device reached a final state once.
    assert_eq!(
        db.query_i64(&format!(
            "SELECT COUNT(*) FROM rollout_devices rd JOIN rollouts r ON r.seq = rd.rollout
              WHERE r.id = '{id}' AND rd.state IN ('succeeded', 'failed') AND rd.attempt >= 1"
        ))?,
        n as i64
    );
    Ok(())
}

/// Two replicas on one database: Terraform changes a policy and revokes a
/// certificate through replica A; a device talking only to replica B sees
/// both at its very next request (no cache to expire on B).
#[test]
fn policy_and_revocation_through_one_replica_apply_on_the_other_at_once() -> Result<()> {
    let db = acceptance::pg::PgDatabase::create()?;
    let keys = tempfile::tempdir()?;
    let master_key = keys.path().join("master.key");
    std::fs::write(&master_key, format!("{}\n", "a5".repeat(32)))?;
    let master_key = master_key.to_str().context("utf-8 path")?.to_owned();
    let args = ["--database-url", &db.url, "--master-key-file", &master_key];
    let a = Fleetd::start_with(&args)?;
    let b = Fleetd::start_with(&args)?;
    let wd = Workdir::new(&a)?;

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "valve-001");
    std::fs::write(
        wd.path().join("device.csr"),
        params.serialize_request(&key)?.pem()?,
    )?;
    let config = |status: &str, actions: &str| {
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
resource "fleet_policy" "valves" {{
  name = "valves"
  statement {{
    effect    = "allow"
    actions   = [{actions}]
    resources = ["fleet:device/$${{device.id}}"]
  }}
}}
resource "fleet_policy_attachment" "valves" {{
  policy_id = fleet_policy.valves.id
  group_id  = fleet_device_group.valves.id
}}
"#
        )
    };
    let checkin_only = r#""device:checkin", "config:read""#;
    let with_download = r#""device:checkin", "config:read", "firmware:download""#;
    let s = wd.apply(&config("active", checkin_only))?;
    let cert_pem = s.str("fleet_certificate.valve", "certificate_pem")?;
    let creds = DeviceCredentials::from_pem("valve-001", &cert_pem, &key.serialize_pem())?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The device only ever reaches replica B.
    let endpoint = Endpoint::new(device_addr(&b)?, &b.device_server_ca()?, Some("localhost"))?;
    let call = |path: &'static str, method: &'static str, body: Option<Json>| {
        let endpoint = endpoint.clone();
        let creds = creds.clone();
        rt.block_on(async move {
            use fleet_sim::client::{Answer, DeviceClient};
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
    let ok = |r: Result<std::result::Result<(u16, Json), String>>| -> Result<(u16, Json)> {
        r?.map_err(anyhow::Error::msg)
    };

    let (status, body) = ok(call("/enroll", "POST", Some(json!({"hardware": "v1"}))))?;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = ok(call("/assignment", "GET", None))?;
    assert_eq!(status, 403, "firmware:download not granted yet: {body}");

    // The policy grows through replica A: B allows at the next request.
    wd.apply(&config("active", with_download))?;
    let (status, body) = ok(call("/assignment", "GET", None))?;
    assert!(
        (200..300).contains(&status),
        "replica B applies the new policy at once: {status} {body}"
    );

    // Revoked through replica A: B refuses at the next handshake.
    wd.apply(&config("revoked", with_download))?;
    match call("/checkin", "POST", Some(json!({"health": "ok"})))? {
        Err(e) => assert!(e.contains("TLS"), "{e}"),
        Ok((status, body)) => assert_eq!(status, 401, "{body}"),
    }
    wd.destroy()?;
    assert!(b.list("/v1/certificate-authorities")?.is_empty());
    Ok(())
}

/// Two Terraform working directories manage one device group, each through
/// its own replica. Both plan against the same version: the first apply
/// wins, the second is refused with a conflict that says what happened and
/// what to do, and nothing is lost — fleetd holds the first writer's value
/// and the second directory's next plan shows the difference to reconcile.
/// Then both apply at the same moment, several times: every apply either
/// lands (the version moves by one per landed apply) or fails with that
/// conflict; never do two land on the same version.
#[test]
fn concurrent_applies_through_two_replicas_conflict_instead_of_losing_an_update() -> Result<()> {
    let db = acceptance::pg::PgDatabase::create()?;
    let keys = tempfile::tempdir()?;
    let master_key = keys.path().join("master.key");
    std::fs::write(&master_key, format!("{}\n", "c3".repeat(32)))?;
    let master_key = master_key.to_str().context("utf-8 path")?.to_owned();
    let args = ["--database-url", &db.url, "--master-key-file", &master_key];
    let a = Fleetd::start_with(&args)?;
    let b = Fleetd::start_with(&args)?;
    let config = |description: &str| {
        format!(
            r#"
terraform {{
  required_providers {{
    fleet = {{ source = "fleetform/fleet" }}
  }}
}}
provider "fleet" {{}}

resource "fleet_device_group" "shared" {{
  name        = "shared"
  description = "{description}"
}}
"#
        )
    };
    let group = |f: &Fleetd, id: &str| -> Result<Json> {
        f.get(&format!("/v1/device-groups/{id}"))?
            .context("group in fleetd")
    };

    let wa = Workdir::new(&a)?;
    let id = wa
        .apply(&config("initial"))?
        .str("fleet_device_group.shared", "id")?;
    let wb = Workdir::new(&b)?;
    wb.write_config(&config("initial"))?;
    wb.ok(&["import", "-no-color", "fleet_device_group.shared", &id])?;
    wb.assert_empty_plan()?;

    // Both plan against version 1.
    wa.write_config(&config("from A"))?;
    wb.write_config(&config("from B"))?;
    wa.ok(&["plan", "-no-color", "-out=change.tfplan"])?;
    wb.ok(&["plan", "-no-color", "-out=change.tfplan"])?;
    wa.ok(&["apply", "-no-color", "change.tfplan"])?;
    let out = wb.run(&["apply", "-no-color", "change.tfplan"])?;
    // Terraform wraps long lines: compare with single spaces.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    ensure!(!out.status.success(), "the stale apply succeeded");
    for needle in [
        "changed outside Terraform",
        "expected version 1, found 2",
        "nothing was changed",
        "terraform plan",
        "fleet_device_group.shared",
        &id,
    ] {
        ensure!(
            stderr.contains(needle),
            "conflict message lacks {needle:?}:\n{stderr}"
        );
    }
    // No lost update: both replicas serve the first writer's value.
    for f in [&a, &b] {
        let g = group(f, &id)?;
        assert_eq!(g["description"], "from A", "{g}");
        assert_eq!(g["version"], 2, "{g}");
    }
    // The second directory sees the difference and can reconcile.
    let (empty, plan) = wb.plan_is_empty(true)?;
    ensure!(
        !empty && plan.contains("\"from A\" -> \"from B\""),
        "{plan}"
    );

    // Applies started together, each refreshing first.
    let mut version = 2;
    for round in 0..4 {
        wa.write_config(&config(&format!("A{round}")))?;
        wb.write_config(&config(&format!("B{round}")))?;
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| wa.run(&["apply", "-auto-approve", "-no-color"]));
            let tb = s.spawn(|| wb.run(&["apply", "-auto-approve", "-no-color"]));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let mut landed = Vec::new();
        for (who, out) in [("A", ra?), ("B", rb?)] {
            if out.status.success() {
                landed.push(who);
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                ensure!(
                    stderr.contains("changed outside Terraform"),
                    "apply {who} failed for another reason:\n{stderr}"
                );
            }
        }
        ensure!(!landed.is_empty(), "round {round}: neither apply landed");
        let g = group(&b, &id)?;
        version += landed.len() as i64;
        assert_eq!(
            g["version"], version,
            "round {round}: {landed:?} landed, so the version moves by that many: {g}"
        );
        let last = g["description"].as_str().unwrap_or_default().to_owned();
        ensure!(
            landed.iter().any(|who| last == format!("{who}{round}")),
            "round {round}: fleetd holds {last:?}, written by none of {landed:?}"
        );
    }
    Ok(())
}
