//! Rollout engine, status read and dynamic group benchmark on the real
//! SQLite store, in-process (no HTTP).
//!
//! ```text
//! cargo bench -p fleetd --bench engine -- --devices 1000000 [--data-dir DIR] [--json]
//!     [--no-serve] [--previous-release] [--random-order]
//! ```
//!
//! Setup (not timed as part of the rollout):
//! - a store at `<data-dir>/fleetd.db` (a temp dir by default), created and
//!   migrated by `SqliteStore::open`;
//! - N devices, hardware `m1`, attribute `region` = `eu` for every fourth
//!   device else `us`, all static members of one group. They are
//!   bulk-inserted through a second SQLite connection in one transaction
//!   (the *fast path*: the same rows `FleetStore::create_device` writes,
//!   minus its per-device audit row), because a million API-level creates
//!   would take minutes and measure the wrong thing;
//! - one firmware release, and a dynamic group `attr.region == "eu"`;
//!   with `--previous-release`, an earlier release `1.0.0` of the same
//!   product that every device reports running, so that each device's
//!   previous firmware is found by a lookup of its row.
//!
//! Timed: one rollout at 100% in a single phase with soak `0s` over all N
//! devices, from creation to status `completed`:
//! 1. engine ticks (`fleetd::engine::tick_once`) until every device is
//!    assigned (pending → in_progress);
//! 2. every device's result injected with `EngineStore::record_results`
//!    (in_progress → succeeded) in batches of up to
//!    `fleetd::device::group_commit::MAX_BATCH` — the batches the device
//!    API's group-commit writer forms when devices report faster than one
//!    transaction commits — from `--concurrency` tasks. The devices report
//!    in device id order (registration order: ids are UUIDv7), each task
//!    taking every `concurrency`-th device; with `--random-order` in a
//!    shuffled order (seeded, the same every run), as devices in the field
//!    do, so that each batch touches rows all over the tables;
//! 3. engine ticks until the rollout is `completed`.
//!
//! Transitions = 2 per device (assigned, succeeded). Then: `get_rollout`
//! (the status read the admin API serves) p50/p99 over 2,000 reads, and
//! `get_device_group` of the dynamic group (its `device_count` evaluates
//! the query over every device) as the dynamic group query time.
//!
//! Then, unless `--no-serve`: the store is closed and the real `fleetd
//! serve` binary (the one cargo built with this bench) is started on the
//! same data directory, and measured from outside: its RSS (`VmRSS`,
//! `VmHWM` from `/proc/<pid>/status`) once listening and again after the
//! reads below; `GET /v1/rollouts/{id}` over HTTP (keep-alive, p50/p99
//! over 1,000 reads); `GET /v1/device-groups/{id}` of the dynamic group
//! (median of 3).
//!
//! With `--data-dir` the database stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleetd::device::group_commit::MAX_BATCH;
use fleetd::engine::tick_once;
use fleetd::store::engine::{ResultRecord, UpdateOutcome};
use fleetd::store::prelude::*;
use fleetd::store::sqlite::SqliteStore;
use fleetd::store::{
    Actor, DeviceGroupSpec, FailureThresholdRecord, FirmwareSpec, PhaseRecord, RolloutSpec,
    SqliteLocation,
};
use serde::Serialize;

/// What one run measured. Times in seconds unless named otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    pub devices: usize,
    /// Results came in a shuffled device order (`--random-order`).
    pub random_order: bool,
    /// Bulk insert of the devices (fast path).
    pub setup_secs: f64,
    /// Rollout creation (counts its targets).
    pub create_secs: f64,
    /// Engine ticks until every device is assigned.
    pub assign_secs: f64,
    /// `record_result` for every device.
    pub results_secs: f64,
    /// Engine ticks until `completed`.
    pub complete_secs: f64,
    /// create + assign + results + complete.
    pub rollout_secs: f64,
    pub transitions: u64,
    pub transitions_per_sec: f64,
    pub status: String,
    pub succeeded: i64,
    /// Stored counters equal a recount of the device rows.
    pub counters_exact: bool,
    pub status_read_p50_us: f64,
    pub status_read_p99_us: f64,
    /// `get_device_group` of the dynamic group (median of 3).
    pub group_query_secs: f64,
    pub group_query_members: i64,
    pub rollout_id: String,
    pub group_id: String,
    pub dynamic_group_id: String,
    pub db_bytes: u64,
    /// Device rows whose previous firmware (what a rollback reassigns)
    /// is known after the rollout.
    pub previous_firmware_known: u64,
    /// The `fleetd serve` figures, when measured.
    pub serve: Option<ServeReport>,
}

/// A real `fleetd serve` on the benchmark's data directory.
#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    /// Until `admin.addr` appeared.
    pub start_secs: f64,
    pub rss_idle_kib: u64,
    pub rss_after_kib: u64,
    /// Peak RSS over the process's life.
    pub rss_peak_kib: u64,
    pub http_status_p50_us: f64,
    pub http_status_p99_us: f64,
    pub http_group_query_secs: f64,
    pub http_group_members: i64,
}

pub struct EngineBench {
    pub devices: usize,
    /// A `fleetd` binary to start on the result (see [`ServeReport`]).
    pub fleetd_bin: Option<PathBuf>,
    /// Concurrent `record_results` callers.
    pub concurrency: usize,
    /// Status reads for the percentiles.
    pub reads: usize,
    /// Every device reports running an earlier release of the product
    /// (`1.0.0`, registered too), so each result's previous firmware is
    /// found by a lookup of the device (see `previous_firmware!`).
    pub previous_release: bool,
    /// Results come in a shuffled device order instead of id order.
    pub random_order: bool,
}

impl EngineBench {
    pub fn new(devices: usize) -> EngineBench {
        EngineBench {
            devices,
            fleetd_bin: None,
            concurrency: 4,
            reads: 2_000,
            previous_release: false,
            random_order: false,
        }
    }

    /// Runs everything against `<dir>/fleetd.db` (which must not exist).
    pub async fn run(&self, dir: &Path) -> anyhow::Result<EngineReport> {
        let db = dir.join("fleetd.db");
        anyhow::ensure!(!db.exists(), "{} already exists", db.display());
        let sqlite = SqliteStore::open(SqliteLocation::File(db.clone())).await?;
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let actor = Actor::admin();

        let group = store
            .create_device_group(
                &actor,
                DeviceGroupSpec {
                    name: "bench-fleet".into(),
                    ..Default::default()
                },
            )
            .await?
            .id;
        let dynamic = store
            .create_device_group(
                &actor,
                DeviceGroupSpec {
                    name: "bench-eu".into(),
                    query: Some("attr.region == \"eu\"".into()),
                    ..Default::default()
                },
            )
            .await?
            .id;
        let release = |version: &str| FirmwareSpec {
            product: "meter".into(),
            version: version.into(),
            hardware: vec!["m1".into()],
            url: format!("https://fw.example.com/meter-{version}.bin"),
            sha256: "ab".repeat(32),
            size_bytes: 1024,
            signature: None,
            signature_verified: false,
        };
        let running = if self.previous_release {
            store.create_firmware(&actor, release("1.0.0")).await?;
            Some("1.0.0")
        } else {
            None
        };
        let firmware = store.create_firmware(&actor, release("2.0.0")).await?.id;

        let t = Instant::now();
        let mut ids = {
            let db = db.clone();
            let group = group.clone();
            let n = self.devices;
            tokio::task::spawn_blocking(move || bulk_insert_devices(&db, &group, n, running))
                .await??
        };
        let setup_secs = t.elapsed().as_secs_f64();

        // ---------------------------------------------------------- rollout
        let t0 = Instant::now();
        let rollout = store
            .create_rollout(
                &actor,
                RolloutSpec {
                    name: "bench".into(),
                    firmware_id: Some(firmware),
                    target_group_ids: vec![group.clone()],
                    phases: vec![PhaseRecord {
                        percent: 100.0,
                        soak: "0s".into(),
                    }],
                    rate: None,
                    failure_threshold: FailureThresholdRecord {
                        percent: 100.0,
                        min_devices: 1,
                        action: "pause".into(),
                    },
                    device_timeout: "1h".into(),
                    max_retries: 2,
                    start_at: None,
                    maintenance_window: None,
                    continuous: false,
                    state: None,
                },
            )
            .await?;
        let create_secs = t0.elapsed().as_secs_f64();
        let id = rollout.id.clone();

        let t = Instant::now();
        let mut ticks = 0;
        loop {
            tick_once(store.as_ref(), Utc::now()).await?;
            ticks += 1;
            let r = store.get_rollout(&id).await?;
            if r.counts.pending == 0 && r.counts.in_progress >= self.devices as i64 {
                break;
            }
            anyhow::ensure!(
                ticks < 10_000,
                "not all assigned after {ticks} ticks: {:?} ({})",
                r.counts,
                r.status
            );
        }
        let assign_secs = t.elapsed().as_secs_f64();

        if self.random_order {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            ids.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0x5eed));
        }
        let t = Instant::now();
        let ids = Arc::new(ids);
        let mut tasks = tokio::task::JoinSet::new();
        let workers = self.concurrency.max(1);
        for w in 0..workers {
            let (store, ids, id) = (Arc::clone(&store), Arc::clone(&ids), id.clone());
            tasks.spawn(async move {
                let at = Utc::now();
                let mine: Vec<&String> = ids.iter().skip(w).step_by(workers).collect();
                for chunk in mine.chunks(MAX_BATCH) {
                    let batch = chunk
                        .iter()
                        .map(|d| ResultRecord {
                            device_id: (*d).clone(),
                            rollout_id: id.clone(),
                            outcome: UpdateOutcome::Succeeded,
                            at,
                        })
                        .collect();
                    for outcome in store.record_results(batch).await? {
                        outcome?;
                    }
                }
                Ok::<_, fleetd::store::StoreError>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        let results_secs = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut ticks = 0;
        let done = loop {
            tick_once(store.as_ref(), Utc::now()).await?;
            ticks += 1;
            let r = store.get_rollout(&id).await?;
            if r.status == "completed" || ticks >= 100 {
                break r;
            }
        };
        let complete_secs = t.elapsed().as_secs_f64();
        let rollout_secs = t0.elapsed().as_secs_f64();
        let transitions = 2 * self.devices as u64;
        let (stored, scanned) = store.recount_rollout(&id).await?;

        // ---------------------------------------------------- status reads
        let mut lat = Vec::with_capacity(self.reads);
        for _ in 0..self.reads {
            let t = Instant::now();
            let r = store.get_rollout(&id).await?;
            lat.push(t.elapsed());
            std::hint::black_box(r);
        }
        let (p50, p99) = percentiles(&mut lat);

        // ------------------------------------------------ dynamic group
        let mut q = Vec::new();
        let mut members = 0;
        for _ in 0..3 {
            let t = Instant::now();
            members = store.get_device_group(&dynamic).await?.device_count;
            q.push(t.elapsed());
        }
        q.sort();
        drop(store);
        let previous_firmware_known = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || {
                rusqlite::Connection::open(&db)?.query_row(
                    "SELECT COUNT(*) FROM rollout_devices WHERE previous_firmware_id IS NOT NULL",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await?? as u64
        };
        let serve = match &self.fleetd_bin {
            Some(bin) => Some(serve(bin, dir, &id, &dynamic, self.reads.min(1_000)).await?),
            None => None,
        };

        Ok(EngineReport {
            devices: self.devices,
            random_order: self.random_order,
            setup_secs,
            create_secs,
            assign_secs,
            results_secs,
            complete_secs,
            rollout_secs,
            transitions,
            transitions_per_sec: transitions as f64 / rollout_secs,
            status: done.status,
            succeeded: done.counts.succeeded,
            counters_exact: stored == scanned,
            status_read_p50_us: p50.as_secs_f64() * 1e6,
            status_read_p99_us: p99.as_secs_f64() * 1e6,
            group_query_secs: q[1].as_secs_f64(),
            group_query_members: members,
            rollout_id: id,
            group_id: group,
            dynamic_group_id: dynamic,
            db_bytes: std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
                + std::fs::metadata(dir.join("fleetd.db-wal"))
                    .map(|m| m.len())
                    .unwrap_or(0),
            previous_firmware_known,
            serve,
        })
    }
}

/// `VmRSS` and `VmHWM` of a process, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Starts `fleetd serve` on `dir` and measures it (see [`ServeReport`]).
async fn serve(
    bin: &Path,
    dir: &Path,
    rollout: &str,
    group: &str,
    reads: usize,
) -> anyhow::Result<ServeReport> {
    let addr_file = dir.join("admin.addr");
    let _ = std::fs::remove_file(&addr_file);
    let t = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    while !addr_file.exists() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "fleetd did not start"
        );
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("fleetd exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start_secs = t.elapsed().as_secs_f64();
    let base = format!("http://{}", std::fs::read_to_string(&addr_file)?.trim());
    let token = std::fs::read_to_string(dir.join("admin-token"))?
        .trim()
        .to_owned();
    // Let the first engine tick pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rss_idle_kib, _) = rss_kib(pid)?;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(&token).send();
    let mut lat = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        let r = get(format!("/v1/rollouts/{rollout}")).await?;
        anyhow::ensure!(r.status().is_success(), "GET rollout: {}", r.status());
        r.bytes().await?;
        lat.push(t.elapsed());
    }
    let (p50, p99) = percentiles(&mut lat);
    let mut q = Vec::new();
    let mut members = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = get(format!("/v1/device-groups/{group}")).await?;
        anyhow::ensure!(r.status().is_success(), "GET group: {}", r.status());
        let v: serde_json::Value = r.json().await?;
        q.push(t.elapsed());
        members = v["device_count"].as_i64().unwrap_or(-1);
    }
    q.sort();
    let (rss_after_kib, rss_peak_kib) = rss_kib(pid)?;
    child.kill().await?;
    Ok(ServeReport {
        start_secs,
        rss_idle_kib,
        rss_after_kib,
        rss_peak_kib,
        http_status_p50_us: p50.as_secs_f64() * 1e6,
        http_status_p99_us: p99.as_secs_f64() * 1e6,
        http_group_query_secs: q[1].as_secs_f64(),
        http_group_members: members,
    })
}

/// `(p50, p99)` of `lat` (sorted in place).
pub fn percentiles(lat: &mut [Duration]) -> (Duration, Duration) {
    lat.sort();
    if lat.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let at = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    (at(0.50), at(0.99))
}

/// The fast path: `n` devices (the rows `create_device` writes, without
/// audit rows), static members of `group`, in one transaction on a second
/// connection. Returns their ids.
/// `firmware_version`: what every device reports running (none if
/// `None`).
pub fn bulk_insert_devices(
    db: &Path,
    group: &str,
    n: usize,
    firmware_version: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let tx = conn.transaction()?;
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut ids = Vec::with_capacity(n);
    {
        let mut dev = tx.prepare(
            "INSERT INTO devices (id, name, hardware, attributes, firmware_version, created_at,
                                  updated_at, version)
             VALUES (?1, ?2, 'm1', ?3, ?5, ?4, ?4, 1)",
        )?;
        let mut member =
            tx.prepare("INSERT INTO device_group_members (device_id, group_id) VALUES (?1, ?2)")?;
        for i in 0..n {
            let id = uuid::Uuid::now_v7().to_string();
            let region = if i % 4 == 0 { "eu" } else { "us" };
            let attrs = serde_json::to_string(&BTreeMap::from([("region", region)]))?;
            dev.execute(rusqlite::params![
                id,
                format!("bench-{i:07}"),
                attrs,
                now,
                firmware_version
            ])?;
            member.execute(rusqlite::params![id, group])?;
            ids.push(id);
        }
    }
    tx.commit()?;
    Ok(ids)
}

#[allow(dead_code)] // Also compiled into tests/bench_smoke.rs, which has its own main.
fn main() -> anyhow::Result<()> {
    let mut devices = 10_000usize;
    let mut data_dir: Option<PathBuf> = None;
    let mut json = false;
    let mut concurrency = 4;
    let mut no_serve = false;
    let mut previous_release = false;
    let mut random_order = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--devices" => devices = args.next().unwrap_or_default().parse()?,
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--concurrency" => concurrency = args.next().unwrap_or_default().parse()?,
            "--json" => json = true,
            "--no-serve" => no_serve = true,
            "--previous-release" => previous_release = true,
            "--random-order" => random_order = true,
            "--bench" => {} // cargo bench passes it
            other => anyhow::bail!(
                "unknown argument {other:?} (--devices N, --data-dir DIR, --concurrency N, --json, --no-serve, --previous-release, --random-order)"
            ),
        }
    }
    let tmp = tempfile::tempdir()?;
    let dir = match &data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_owned(),
    };
    let mut bench = EngineBench::new(devices);
    bench.concurrency = concurrency;
    bench.previous_release = previous_release;
    bench.random_order = random_order;
    if !no_serve {
        bench.fleetd_bin = Some(env!("CARGO_BIN_EXE_fleetd").into());
    }
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(bench.run(&dir))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report:#?}");
    }
    Ok(())
}
