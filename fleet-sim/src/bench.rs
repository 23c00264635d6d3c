//! `fleet-sim bench`: the device API's throughput, each figure next to the
//! ceiling of the same fleetd and TLS stack, `GET /v1/device/ping` (a
//! no-op route: certificate checked at the handshake, no store, no
//! policy).
//!
//! One run, N devices, in this order:
//! 1. *setup* (admin API): a group with a config and a baseline policy, a
//!    freshly generated factory CA imported, an enrollment into the group;
//!    N certificates issued locally (not timed);
//! 2. *enroll*: every device opens a new TLS connection (full handshake,
//!    new certificate) and enrolls, `--connect-concurrency` at once;
//!    around it, *fresh ping*: half the devices before and half after,
//!    each on a new client (no TLS session to resume) does one ping: the
//!    handshake's ceiling, to set against enrollment (same handshake +
//!    the enrollment's work);
//! 3. *keep-alive ping* and *keep-alive check-in*: all N devices in a
//!    closed loop (next call as soon as the answer arrives) on their
//!    kept-alive connections for `--phase-secs` each, in 3 alternating
//!    rounds; a check-in is the
//!    real `POST /v1/device/checkin` (policy, config, assignment lookup,
//!    the report persisted before the answer);
//! 4. *rollout*: a firmware release and a rollout at 100% in one phase
//!    (soak 0s) over the group; every device checks in in a closed loop
//!    until it is handed the assignment. Timed from the rollout's creation
//!    to the last device holding its assignment.
//!
//! The simulator runs on the same machine as fleetd, so its own TLS and
//! JSON work shares the CPU: both the figure and its ceiling carry it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_api::device_api::{CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse};
use hyper::Method;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::admin::Admin;
use crate::client::{Answer, DeviceClient, Endpoint};
use crate::factory::{DeviceCredentials, Factory};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub endpoint: Endpoint,
    pub devices: usize,
    /// Length of each keep-alive phase.
    pub phase: Duration,
    /// Most handshakes (enroll, fresh ping) in flight at once.
    pub connect_concurrency: usize,
    /// Names: `<prefix>-<index>`, objects `<prefix>-...`.
    pub prefix: String,
    /// fleetd's process id, when it runs on this machine as another
    /// process: its CPU time is then read from `/proc` around each phase.
    pub fleetd_pid: Option<u32>,
}

/// One throughput figure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rate {
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU time (user + system) per operation of fleetd (when its pid is
    /// known) and of this simulator, microseconds: where the machine's
    /// time goes, the two sharing its cores.
    pub fleetd_cpu_us: Option<f64>,
    pub sim_cpu_us: Option<f64>,
}

/// Rounds each keep-alive phase is split into.
const ROUNDS: u32 = 3;
/// Calls each client makes in a round before it is measured
/// ([`closed_loop`]).
const WARMUP_CALLS: u32 = 2;

impl Rate {
    /// Rates measured in turns, as one: total ops over total time,
    /// latency percentiles over all samples.
    fn merge(parts: &[(Rate, Vec<Duration>)]) -> Rate {
        let lat: Vec<Duration> = parts.iter().flat_map(|(_, l)| l.iter().copied()).collect();
        let errors = parts.iter().map(|(r, _)| r.errors).sum();
        let secs = parts.iter().map(|(r, _)| r.secs).sum();
        let mut rate = Rate::new(lat, errors, secs);
        // Per-op CPU over all parts: total CPU over total ops.
        let total = |f: fn(&Rate) -> Option<f64>| -> Option<f64> {
            parts
                .iter()
                .map(|(r, _)| f(r).map(|us| us * r.ops as f64))
                .sum::<Option<f64>>()
                .map(|sum| sum / rate.ops.max(1) as f64)
        };
        rate.fleetd_cpu_us = total(|r| r.fleetd_cpu_us);
        rate.sim_cpu_us = total(|r| r.sim_cpu_us);
        rate
    }

    /// With the CPU used between `before` and now charged to its ops.
    fn with_cpu(self, before: CpuMark, pid: Option<u32>) -> Rate {
        self.with_cpu_between(before, CpuMark::now(pid))
    }

    /// With the CPU used between the two marks charged to its ops.
    fn with_cpu_between(mut self, before: CpuMark, after: CpuMark) -> Rate {
        let per_op =
            |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1e6 / self.ops.max(1) as f64);
        self.fleetd_cpu_us = per_op(before.fleetd, after.fleetd);
        self.sim_cpu_us = per_op(before.sim, after.sim);
        self
    }

    fn new(mut lat: Vec<Duration>, errors: u64, secs: f64) -> Rate {
        lat.sort();
        let at = |q: f64| {
            if lat.is_empty() {
                0.0
            } else {
                let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
                lat[i].as_secs_f64() * 1e3
            }
        };
        Rate {
            ops: lat.len() as u64,
            errors,
            secs,
            per_sec: lat.len() as f64 / secs.max(1e-9),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            fleetd_cpu_us: None,
            sim_cpu_us: None,
        }
    }
}

/// CPU seconds used so far by fleetd (if its pid is known and readable)
/// and by this process.
#[derive(Debug, Clone, Copy)]
struct CpuMark {
    fleetd: Option<f64>,
    sim: Option<f64>,
}

impl CpuMark {
    fn now(fleetd_pid: Option<u32>) -> CpuMark {
        CpuMark {
            fleetd: fleetd_pid.and_then(|pid| cpu_secs(&format!("/proc/{pid}/stat"))),
            sim: cpu_secs("/proc/self/stat"),
        }
    }
}

/// utime + stime of `/proc/<pid>/stat`, in seconds. Linux reports them in
/// USER_HZ ticks, 100 per second on every architecture it exports them on.
fn cpu_secs(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub devices: usize,
    /// Local certificate issuance (not a fleetd figure).
    pub provision_secs: f64,
    pub enroll: Rate,
    pub keepalive_ping: Rate,
    /// Check-ins of devices that report the digest of the config they
    /// applied (as the simulator's devices do): the config is sent once.
    pub checkin: Rate,
    /// Check-ins of devices that never report a digest: fleetd sends the
    /// whole config back every time.
    pub checkin_resend: Rate,
    pub fresh_ping: Rate,
    /// checkin / keep-alive ping.
    pub checkin_ratio: f64,
    /// checkin_resend / keep-alive ping.
    pub checkin_resend_ratio: f64,
    /// enroll / fresh ping.
    pub enroll_ratio: f64,
    /// Mean server+client time per operation at the concurrency used
    /// (1 / rate), milliseconds: what a handshake adds to a no-op call,
    /// and what enrollment's work (certificate parsing and checks, policy,
    /// the device, binding and audit rows written) adds to a handshake.
    pub handshake_cost_ms: f64,
    pub enroll_work_ms: f64,
    /// One core, in this process, with the libraries fleetd uses: parsing
    /// a device certificate (PEM → X.509, as enrollment and the handshake's
    /// identification do) and verifying its signature against the CA.
    pub cert_parse_us: f64,
    pub cert_verify_us: f64,
    /// Devices handed the rollout's assignment.
    pub rollout_assigned: u64,
    pub rollout_secs: f64,
    pub rollout_assignments_per_min: f64,
    /// From the rollout's creation to the first device holding its
    /// assignment (the engine's first tick: up to `--engine-interval`).
    pub rollout_first_secs: f64,
    pub rollout_checkins: u64,
}

/// Runs the whole benchmark against a fleetd reachable at `admin` and
/// `cfg.endpoint`.
pub async fn run(cfg: &BenchConfig, admin: &Admin) -> anyhow::Result<BenchReport> {
    let n = cfg.devices;
    let p = &cfg.prefix;
    // ------------------------------------------------------------ setup
    let group: Value = admin
        .post(
            "/v1/device-groups",
            &json!({"name": format!("{p}-fleet"), "config": {"interval": 30}}),
        )
        .await?;
    let group_id = group["id"].as_str().context("group id")?.to_owned();
    let policy: Value = admin
        .post(
            "/v1/policies",
            &json!({"name": format!("{p}-baseline"), "statements": [
                {"effect": "allow",
                 "actions": ["device:checkin", "config:read", "firmware:download", "firmware:report"],
                 "resources": ["fleet:device/${device.id}"]}]}),
        )
        .await?;
    let _: Value = admin
        .post(
            "/v1/policy-attachments",
            &json!({"policy_id": policy["id"], "group_id": group_id}),
        )
        .await?;
    let factory = Arc::new(Factory::generate(&format!("{p} factory"), 365)?);
    let ca_id = admin.import_ca(&format!("{p}-factory"), &factory).await?;
    admin
        .create_enrollment(&format!("{p}-line"), &ca_id, &group_id, "{cn}")
        .await?;

    let t = Instant::now();
    let creds = provision(&factory, p, n).await?;
    let provision_secs = t.elapsed().as_secs_f64();
    let (cert_parse_us, cert_verify_us) = certificate_costs(&factory, &creds)?;

    // ------------------------------------------- fresh ping, then enroll
    let sem = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    // The handshake ceiling is measured on either side of the enrollment
    // (half the devices each time), so that both see the same load.
    let half = n / 2;
    let pid = cfg.fleetd_pid;
    let fresh_before = fresh_ping(&cfg.endpoint, &creds[..half], &sem, pid).await?;
    let t = Instant::now();
    let cpu = CpuMark::now(pid);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in creds.iter().enumerate() {
        let (endpoint, c, sem) = (cfg.endpoint.clone(), c.clone(), Arc::clone(&sem));
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let mut client = DeviceClient::new(endpoint, &c, true).ok()?;
            let started = Instant::now();
            let body = EnrollRequest {
                hardware: "sim-1".into(),
                attributes: Default::default(),
            };
            match client
                .call::<_, EnrollResponse>(Method::POST, "/enroll", Some(&body))
                .await
            {
                Ok(Answer::Ok(..)) => Some((i, client, started.elapsed())),
                _ => None,
            }
        });
    }
    let mut clients: Vec<Option<DeviceClient>> = (0..n).map(|_| None).collect();
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        if let Some((i, client, d)) = r? {
            clients[i] = Some(client);
            lat.push(d);
        }
    }
    let enroll = Rate::new(lat, 0, t.elapsed().as_secs_f64()).with_cpu(cpu, pid);
    let enroll_errors = n as u64 - enroll.ops;
    let enroll = Rate {
        errors: enroll_errors,
        ..enroll
    };
    anyhow::ensure!(enroll.ops > 0, "no device enrolled");
    let mut clients: Vec<DeviceClient> = clients.into_iter().flatten().collect();
    let fresh_after = fresh_ping(&cfg.endpoint, &creds[half..], &sem, pid).await?;
    let fresh_ping = Rate::merge(&[fresh_before, fresh_after]);

    // ------------------------------------------------- keep-alive phases
    // Ping and both kinds of check-in alternate in rounds, so that a
    // change in the machine's load hits all three.
    let (mut pings, mut checkins, mut resends) = (Vec::new(), Vec::new(), Vec::new());
    let round = cfg.phase / ROUNDS;
    for _ in 0..ROUNDS {
        pings.push(closed_loop(&mut clients, round, Op::Ping, pid).await);
        checkins.push(closed_loop(&mut clients, round, Op::Checkin, pid).await);
        resends.push(closed_loop(&mut clients, round, Op::CheckinResend, pid).await);
    }
    let keepalive_ping = Rate::merge(&pings);
    let checkin = Rate::merge(&checkins);
    let checkin_resend = Rate::merge(&resends);

    // ---------------------------------------------------------- rollout
    let fw: Value = admin
        .post(
            "/v1/firmware",
            &json!({"product": format!("{p}-fw"), "version": "2.0.0", "hardware": ["sim-1"],
                    "url": "https://fw.example/bench-2.0.0.bin",
                    "sha256": "ab".repeat(32), "size_bytes": 1_048_576}),
        )
        .await?;
    let t = Instant::now();
    let _: Value = admin
        .post(
            "/v1/rollouts",
            &json!({"name": format!("{p}-rollout"), "firmware_id": fw["id"],
                    "target_group_ids": [group_id],
                    "phases": [{"percent": 100, "soak": "0s"}],
                    "failure_threshold": {"percent": 100, "min_devices": 1, "action": "pause"},
                    "device_timeout": "1h"}),
        )
        .await?;
    let assigned = Arc::new(AtomicU64::new(0));
    let checkins = Arc::new(AtomicU64::new(0));
    let give_up = Arc::new(AtomicBool::new(false));
    let last_ms = Arc::new(AtomicU64::new(0));
    let first_ms = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let (assigned, checkins, give_up, last_ms, first_ms) = (
            Arc::clone(&assigned),
            Arc::clone(&checkins),
            Arc::clone(&give_up),
            Arc::clone(&last_ms),
            Arc::clone(&first_ms),
        );
        tasks.spawn(async move {
            while !give_up.load(Ordering::Relaxed) {
                let r = client
                    .call::<_, CheckinResponse>(Method::POST, "/checkin", Some(&checkin_body()))
                    .await;
                checkins.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(Answer::Ok(_, resp)) if resp.assignment.is_some() => {
                        assigned.fetch_add(1, Ordering::Relaxed);
                        let ms = t.elapsed().as_millis() as u64;
                        last_ms.fetch_max(ms, Ordering::Relaxed);
                        first_ms.fetch_min(ms, Ordering::Relaxed);
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        client.disconnect();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    let watchdog = {
        let give_up = Arc::clone(&give_up);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            give_up.store(true, Ordering::Relaxed);
        })
    };
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    watchdog.abort();
    let rollout_assigned = assigned.load(Ordering::Relaxed);
    let rollout_secs = last_ms.load(Ordering::Relaxed) as f64 / 1e3;
    let first = first_ms.load(Ordering::Relaxed);
    let rollout_first_secs = if first == u64::MAX {
        0.0
    } else {
        first as f64 / 1e3
    };

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let cost = |r: &Rate| {
        if r.per_sec > 0.0 {
            1e3 / r.per_sec
        } else {
            0.0
        }
    };
    Ok(BenchReport {
        devices: n,
        provision_secs,
        checkin_ratio: ratio(checkin.per_sec, keepalive_ping.per_sec),
        checkin_resend_ratio: ratio(checkin_resend.per_sec, keepalive_ping.per_sec),
        enroll_ratio: ratio(enroll.per_sec, fresh_ping.per_sec),
        handshake_cost_ms: cost(&fresh_ping) - cost(&keepalive_ping),
        enroll_work_ms: cost(&enroll) - cost(&fresh_ping),
        cert_parse_us,
        cert_verify_us,
        enroll,
        keepalive_ping,
        checkin,
        checkin_resend,
        fresh_ping,
        rollout_assigned,
        rollout_secs,
        rollout_assignments_per_min: ratio(rollout_assigned as f64 * 60.0, rollout_secs),
        rollout_first_secs,
        rollout_checkins: checkins.load(Ordering::Relaxed),
    })
}

fn checkin_body() -> CheckinRequest {
    CheckinRequest {
        firmware_version: Some("1.0.0".into()),
        hardware: Some("sim-1".into()),
        health: Some("ok".into()),
        config_digest: None,
    }
}

/// Mean microseconds to parse one device certificate (PEM) and to verify
/// one against the factory CA, over (up to 2,000 of) `creds`.
fn certificate_costs(factory: &Factory, creds: &[DeviceCredentials]) -> anyhow::Result<(f64, f64)> {
    use fleet_domain::pki;
    let sample = &creds[..creds.len().min(2_000)];
    if sample.is_empty() {
        return Ok((0.0, 0.0));
    }
    let t = Instant::now();
    for c in sample {
        std::hint::black_box(pki::inspect_certificate("certificate", &c.certificate_pem)?);
    }
    let parse = t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;
    let ca = pki::certificate_der("ca", factory.certificate_pem())?;
    let now = chrono::Utc::now();
    let t = Instant::now();
    for c in sample {
        std::hint::black_box(
            pki::verify_chain(c.certificate.as_ref(), &ca, now)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    let verify = t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;
    Ok((parse, verify))
}

/// N certificates from the factory, on every core.
async fn provision(
    factory: &Arc<Factory>,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<DeviceCredentials>> {
    let workers = std::thread::available_parallelism().map_or(2, |p| p.get());
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (factory, prefix) = (Arc::clone(factory), prefix.to_owned());
        tasks.spawn_blocking(move || {
            (w..n)
                .step_by(workers)
                .map(|i| Ok((i, factory.issue(&crate::sim::common_name(&prefix, i), 30)?)))
                .collect::<anyhow::Result<Vec<_>>>()
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, c)| c).collect())
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Ping,
    /// A check-in reporting the digest of the config the device applied,
    /// learnt from its first check-in of the round.
    Checkin,
    /// A check-in without a digest (fleetd sends the config back).
    CheckinResend,
}

/// Every client calls `op` back to back for `phase`; the clients come
/// back for the next phase. Calls are measured once every client has
/// made two (or from half the phase on): the switch from another
/// operation (memory the allocator gave back, caches) slowed whichever
/// operation came first after it by 5-10%, which made the order of the
/// operations in a round matter.
///
/// The rate is the calls that *complete* inside the measured window over
/// its length, and the CPU is read at its two ends. Counting the calls
/// that start inside it, until the last of them finished, left out the
/// calls in flight at its start and so read low by latency / (window +
/// latency): most for the slowest operation (BENCHMARKS.md, fifteenth
/// session).
async fn closed_loop(
    clients: &mut Vec<DeviceClient>,
    phase: Duration,
    op: Op,
    fleetd_pid: Option<u32>,
) -> (Rate, Vec<Duration>) {
    let begin = Instant::now();
    let deadline = begin + phase;
    let n = clients.len();
    // Clients that made their warm-up calls; then when measuring started.
    let warm = Arc::new(AtomicU64::new(0));
    let measured_from = Arc::new(OnceLock::<Instant>::new());
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients.drain(..) {
        let (warm, measured_from) = (Arc::clone(&warm), Arc::clone(&measured_from));
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut calls = 0u32;
            let mut applied: Option<String> = None;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match op {
                    Op::Ping => matches!(
                        client.call::<(), Value>(Method::GET, "/ping", None).await,
                        Ok(Answer::Ok(..))
                    ),
                    Op::Checkin | Op::CheckinResend => {
                        let body = CheckinRequest {
                            config_digest: applied.clone(),
                            ..checkin_body()
                        };
                        match client
                            .call::<_, CheckinResponse>(Method::POST, "/checkin", Some(&body))
                            .await
                        {
                            Ok(Answer::Ok(_, resp)) => {
                                if let (Op::Checkin, Some(config)) = (op, &resp.config) {
                                    applied = Some(fleet_domain::compliance::config_digest(config));
                                }
                                true
                            }
                            _ => false,
                        }
                    }
                };
                calls += 1;
                if calls == WARMUP_CALLS {
                    warm.fetch_add(1, Ordering::Relaxed);
                }
                if ok {
                    let done = Instant::now();
                    if in_window(done, measured_from.get(), deadline) {
                        lat.push(done - t);
                    }
                } else {
                    errors += 1;
                    client.disconnect();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (client, lat, errors)
        });
    }
    while warm.load(Ordering::Relaxed) < n as u64 && begin.elapsed() < phase / 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let start = *measured_from.get_or_init(Instant::now);
    let cpu = CpuMark::now(fleetd_pid);
    tokio::time::sleep_until(deadline.into()).await;
    let cpu_end = CpuMark::now(fleetd_pid);
    let mut lat = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((client, l, e)) = r {
            clients.push(client);
            lat.extend(l);
            errors += e;
        }
    }
    let secs = deadline.saturating_duration_since(start).as_secs_f64();
    (
        Rate::new(lat.clone(), errors, secs).with_cpu_between(cpu, cpu_end),
        lat,
    )
}

/// Whether a call that completed at `done` counts: inside the measured
/// window, from `from` (unset while the clients warm up) to `deadline`.
/// When it started does not matter: in a steady state as many calls are
/// in flight at the window's start as at its end.
fn in_window(done: Instant, from: Option<&Instant>, deadline: Instant) -> bool {
    from.is_some_and(|from| done >= *from) && done <= deadline
}

/// One ping per device, each on a new client (no TLS session to resume:
/// a full handshake).
async fn fresh_ping(
    endpoint: &Endpoint,
    creds: &[DeviceCredentials],
    sem: &Arc<Semaphore>,
    fleetd_pid: Option<u32>,
) -> anyhow::Result<(Rate, Vec<Duration>)> {
    let t = Instant::now();
    let cpu = CpuMark::now(fleetd_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for c in creds {
        let (endpoint, c, sem) = (endpoint.clone(), c.clone(), Arc::clone(sem));
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let mut client = DeviceClient::new(endpoint, &c, false).ok()?;
            let started = Instant::now();
            match client.call::<(), Value>(Method::GET, "/ping", None).await {
                Ok(Answer::Ok(..)) => Some(started.elapsed()),
                _ => None,
            }
        });
    }
    let mut lat = Vec::with_capacity(creds.len());
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Some(d) => lat.push(d),
            None => errors += 1,
        }
    }
    Ok((
        Rate::new(lat.clone(), errors, t.elapsed().as_secs_f64()).with_cpu(cpu, fleetd_pid),
        lat,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_counts_where_it_completes() {
        let from = Instant::now();
        let deadline = from + Duration::from_secs(1);
        let ms = Duration::from_millis;
        // In flight when the window opened, completed inside it: counted.
        assert!(in_window(from + ms(10), Some(&from), deadline));
        assert!(in_window(deadline, Some(&from), deadline));
        // Completed after the deadline, or before the window: not.
        assert!(!in_window(deadline + ms(1), Some(&from), deadline));
        assert!(!in_window(from - ms(1), Some(&from), deadline));
        // Still warming up.
        assert!(!in_window(from + ms(10), None, deadline));
    }

    #[test]
    fn cpu_secs_reads_utime_and_stime_after_the_command_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        // A command name holding ") " must not shift the fields.
        std::fs::write(
            &path,
            "4242 (a b) c) S 1 2 3 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 1 0 100 1000 50",
        )
        .unwrap();
        assert_eq!(cpu_secs(path.to_str().unwrap()), Some(3.0));
        std::fs::write(&path, "4242 (x) S 1 2").unwrap();
        assert_eq!(cpu_secs(path.to_str().unwrap()), None);
        assert_eq!(cpu_secs("/nonexistent/stat"), None);
        assert!(cpu_secs("/proc/self/stat").is_some());
    }

    #[test]
    fn merged_rates_charge_cpu_per_operation_over_all_parts() {
        let part = |ops: usize, fleetd: Option<f64>, sim: f64| {
            let lat = vec![Duration::from_millis(1); ops];
            let mut r = Rate::new(lat.clone(), 0, 1.0);
            r.fleetd_cpu_us = fleetd;
            r.sim_cpu_us = Some(sim);
            (r, lat)
        };
        // 100 ops at 10 µs and 300 at 30 µs: 25 µs per op.
        let merged = Rate::merge(&[part(100, Some(10.0), 1.0), part(300, Some(30.0), 5.0)]);
        assert_eq!(merged.ops, 400);
        assert!((merged.fleetd_cpu_us.unwrap() - 25.0).abs() < 1e-9);
        assert!((merged.sim_cpu_us.unwrap() - 4.0).abs() < 1e-9);
        // Unknown in one part: unknown overall.
        let merged = Rate::merge(&[part(100, None, 1.0), part(300, Some(30.0), 5.0)]);
        assert_eq!(merged.fleetd_cpu_us, None);
    }
}
