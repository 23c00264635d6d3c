//! Running N virtual devices.
//!
//! Each device is one Tokio task (no OS thread per device) with its own
//! key and certificate (signed by the [`Factory`]), its own TLS client and
//! one kept-alive connection. It enrolls, then checks in every interval
//! (with deterministic jitter), takes any new assignment, "installs" it
//! (waits `install_time`, downloads nothing) and reports `succeeded` or
//! `failed` — failing with probability `fail_rate`, only on
//! `fail_version` when one is given, drawn from a generator seeded by
//! `seed` and the device index, so a run is reproducible.
//!
//! Everything a device is told and does goes into the [`Ledger`].

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_api::device_api::{
    CheckinRequest, CheckinResponse, DeviceErrorKind, EnrollRequest, EnrollResponse, ResultAck,
    ResultReport, UpdateOutcome,
};
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::client::{Answer, CallError, DeviceClient, Endpoint};
use crate::factory::Factory;
use crate::ledger::{Event, Ledger};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub endpoint: Endpoint,
    pub devices: usize,
    /// Certificate common names are `{name_prefix}-{index:06}`.
    pub name_prefix: String,
    /// Hardware models, assigned round-robin.
    pub hardware: Vec<String>,
    /// Attributes every device reports at enrollment.
    pub attributes: BTreeMap<String, String>,
    /// The firmware version devices start with.
    pub initial_firmware: String,
    /// Probability that an installation fails.
    pub fail_rate: f64,
    /// Only installations of this version fail (at `fail_rate`).
    pub fail_version: Option<String>,
    /// Share of devices that report a wrong applied-config digest (a
    /// device whose config was tampered with): they show `config_drift`.
    pub config_drift_rate: f64,
    /// Share of devices that report success for an update but keep
    /// reporting their old firmware version: `firmware_drift` once the
    /// rollout completed.
    pub stuck_firmware_rate: f64,
    /// Share of devices that stop checking in after `silent_after` (they
    /// turn `stale`). The three shares are disjoint slices of the fleet,
    /// chosen by the seed.
    pub silent_rate: f64,
    pub silent_after: Duration,
    pub seed: u64,
    pub checkin_interval: Duration,
    /// How long an installation takes.
    pub install_time: Duration,
    /// Keep the connection open between check-ins (else reconnect, with
    /// TLS session resumption, for each check-in).
    pub keep_alive: bool,
    /// Most handshakes/enrollments in flight at once.
    pub connect_concurrency: usize,
    pub cert_validity_days: i64,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once every device enrolled (or was refused) and nothing was
    /// assigned, reported or enrolled for this long.
    pub until_idle: Option<Duration>,
}

impl SimConfig {
    /// Defaults for everything but where fleetd is.
    pub fn new(endpoint: Endpoint, devices: usize) -> SimConfig {
        SimConfig {
            endpoint,
            devices,
            name_prefix: "sim".into(),
            hardware: vec!["sim-1".into()],
            attributes: BTreeMap::new(),
            initial_firmware: "1.0.0".into(),
            fail_rate: 0.0,
            fail_version: None,
            config_drift_rate: 0.0,
            stuck_firmware_rate: 0.0,
            silent_rate: 0.0,
            silent_after: Duration::ZERO,
            seed: 1,
            checkin_interval: Duration::from_secs(1),
            install_time: Duration::from_millis(50),
            keep_alive: true,
            connect_concurrency: 64,
            cert_validity_days: 30,
            duration: None,
            until_idle: None,
        }
    }
}

/// Live counters, for progress displays.
#[derive(Debug, Default)]
pub struct Stats {
    pub provisioned: AtomicU64,
    /// Devices whose certificate could not be issued.
    pub provision_failed: AtomicU64,
    pub enrolled: AtomicU64,
    pub enroll_refused: AtomicU64,
    pub refused: AtomicU64,
    pub checkins: AtomicU64,
    pub assignments: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub rolled_back: AtomicU64,
    pub report_rejected: AtomicU64,
    pub denied: AtomicU64,
    pub transport_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub connects: AtomicU64,
    pub resumed: AtomicU64,
    /// Devices past enrollment (enrolled, refused or given up).
    pub settled: AtomicU64,
    /// Milliseconds since the start when the last device settled.
    settled_at_ms: AtomicU64,
    /// Check-ins counted when the last device settled.
    checkins_at_settle: AtomicU64,
    /// Devices whose task ended.
    pub finished: AtomicU64,
    /// Check-in latency histogram (see [`LATENCY_BUCKETS_MS`]).
    latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// Milliseconds since the run started, of the last enrollment,
    /// assignment or report.
    last_activity_ms: AtomicU64,
}

/// Upper bounds (ms) of the check-in latency buckets.
pub const LATENCY_BUCKETS_MS: [u64; 14] =
    [1, 2, 3, 5, 7, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

impl Stats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b as f64)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The bucket bound (ms) under which `q` (0..1) of check-ins fell.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.latency.iter().map(Self::get).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub devices: u64,
    pub provision_failed: u64,
    pub enrolled: u64,
    pub enroll_refused: u64,
    pub refused: u64,
    pub checkins: u64,
    pub assignments: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub rolled_back: u64,
    pub report_rejected: u64,
    pub denied: u64,
    pub transport_errors: u64,
    pub server_errors: u64,
    pub connects: u64,
    /// Connections that resumed a TLS session (no full handshake).
    pub resumed: u64,
    pub elapsed_secs: f64,
    /// When every device had enrolled (or been refused), seconds from
    /// the start.
    pub all_settled_secs: Option<f64>,
    pub checkins_per_sec: f64,
    /// Check-ins per second once every device had enrolled.
    pub steady_checkins_per_sec: Option<f64>,
    pub checkin_p50_ms: Option<u64>,
    pub checkin_p99_ms: Option<u64>,
}

impl Summary {
    fn from_stats(s: &Stats, devices: usize, elapsed: Duration) -> Summary {
        let g = Stats::get;
        let secs = elapsed.as_secs_f64();
        Summary {
            devices: devices as u64,
            provision_failed: g(&s.provision_failed),
            enrolled: g(&s.enrolled),
            enroll_refused: g(&s.enroll_refused),
            refused: g(&s.refused),
            checkins: g(&s.checkins),
            assignments: g(&s.assignments),
            succeeded: g(&s.succeeded),
            failed: g(&s.failed),
            rolled_back: g(&s.rolled_back),
            report_rejected: g(&s.report_rejected),
            denied: g(&s.denied),
            transport_errors: g(&s.transport_errors),
            server_errors: g(&s.server_errors),
            connects: g(&s.connects),
            resumed: g(&s.resumed),
            elapsed_secs: secs,
            all_settled_secs: (g(&s.settled) >= devices as u64)
                .then(|| g(&s.settled_at_ms) as f64 / 1000.0),
            checkins_per_sec: if secs > 0.0 {
                g(&s.checkins) as f64 / secs
            } else {
                0.0
            },
            steady_checkins_per_sec: (g(&s.settled) >= devices as u64)
                .then(|| {
                    let t = secs - g(&s.settled_at_ms) as f64 / 1000.0;
                    let n = g(&s.checkins).saturating_sub(g(&s.checkins_at_settle));
                    (t > 1.0).then(|| n as f64 / t)
                })
                .flatten(),
            checkin_p50_ms: s.latency_quantile_ms(0.5),
            checkin_p99_ms: s.latency_quantile_ms(0.99),
        }
    }
}

/// What [`Simulation::run`] returns.
#[derive(Debug)]
pub struct Report {
    pub summary: Summary,
    pub ledger: Arc<Ledger>,
}

/// Stops a running simulation from outside.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// A simulation, ready to run.
pub struct Simulation {
    cfg: Arc<SimConfig>,
    factory: Arc<Factory>,
    ledger: Arc<Ledger>,
    stats: Arc<Stats>,
    stop: Arc<watch::Sender<bool>>,
}

impl Simulation {
    pub fn new(cfg: SimConfig, factory: Arc<Factory>) -> Simulation {
        Simulation {
            cfg: Arc::new(cfg),
            factory,
            ledger: Arc::new(Ledger::default()),
            stats: Arc::new(Stats::default()),
            stop: Arc::new(watch::channel(false).0),
        }
    }

    pub fn ledger(&self) -> Arc<Ledger> {
        Arc::clone(&self.ledger)
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Runs every device until a stop condition holds, then waits for
    /// the devices to finish what they are doing.
    pub async fn run(self) -> Report {
        let started = Instant::now();
        let shared = Arc::new(Shared {
            cfg: Arc::clone(&self.cfg),
            factory: Arc::clone(&self.factory),
            ledger: Arc::clone(&self.ledger),
            stats: Arc::clone(&self.stats),
            connect: Semaphore::new(self.cfg.connect_concurrency.max(1)),
            reconnect: Semaphore::new(self.cfg.connect_concurrency.max(1)),
            cpu: Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            ),
            started,
        });
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.cfg.devices {
            let shared = Arc::clone(&shared);
            let stop = self.stop.subscribe();
            tasks.spawn(async move {
                run_device(index, &shared, stop).await;
                shared.stats.finished.fetch_add(1, Ordering::Relaxed);
            });
        }

        let cfg = Arc::clone(&self.cfg);
        let stats = Arc::clone(&self.stats);
        let mut stopped = self.stop.subscribe();
        let controller = async {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let elapsed = started.elapsed();
                if cfg.duration.is_some_and(|d| elapsed >= d) {
                    return;
                }
                let settled = Stats::get(&stats.settled) >= cfg.devices as u64;
                if let Some(idle) = cfg.until_idle {
                    let last = Duration::from_millis(Stats::get(&stats.last_activity_ms));
                    if settled && elapsed.saturating_sub(last) >= idle {
                        return;
                    }
                }
                if Stats::get(&stats.finished) >= cfg.devices as u64 {
                    return;
                }
            }
        };
        controller.await;
        let _ = self.stop.send(true);
        while tasks.join_next().await.is_some() {}
        Report {
            summary: Summary::from_stats(&self.stats, self.cfg.devices, started.elapsed()),
            ledger: self.ledger,
        }
    }
}

struct Shared {
    cfg: Arc<SimConfig>,
    factory: Arc<Factory>,
    ledger: Arc<Ledger>,
    stats: Arc<Stats>,
    /// Enrollments in flight.
    connect: Semaphore,
    /// Reconnecting check-ins in flight (without keep-alive).
    reconnect: Semaphore,
    cpu: Semaphore,
    started: Instant,
}

impl Shared {
    fn activity(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.stats.last_activity_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// The seed of device `index`'s generator number `stream`.
fn device_seed(seed: u64, index: usize, stream: u64) -> u64 {
    let mut z = seed
        ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64 finaliser: nearby seeds give unrelated streams.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether each installation of one device fails: the k-th installation
/// of device i fails or not whatever the timing of the run.
pub struct FailureDice(StdRng);

impl FailureDice {
    pub fn new(seed: u64, index: usize) -> FailureDice {
        FailureDice(StdRng::seed_from_u64(device_seed(seed, index, 1)))
    }

    /// Rolls for one installation of `version`; only `fail_version` (when
    /// given) can fail, with probability `rate`.
    pub fn roll(&mut self, rate: f64, fail_version: Option<&str>, version: &str) -> bool {
        let draw = self.0.random::<f64>();
        fail_version.is_none_or(|v| v == version) && draw < rate
    }
}

/// How a device misbehaves, for compliance scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Good,
    ConfigDrift,
    StuckFirmware,
    Silent,
}

impl Role {
    /// Device `index`'s role: disjoint slices of the fleet by the shares
    /// of `cfg`, drawn from the seed (the same devices on every run).
    pub fn of(cfg: &SimConfig, index: usize) -> Role {
        let r = StdRng::seed_from_u64(device_seed(cfg.seed, index, 2)).random::<f64>();
        let a = cfg.config_drift_rate;
        let b = a + cfg.stuck_firmware_rate;
        let c = b + cfg.silent_rate;
        if r < a {
            Role::ConfigDrift
        } else if r < b {
            Role::StuckFirmware
        } else if r < c {
            Role::Silent
        } else {
            Role::Good
        }
    }
}

/// The name of device `index`'s certificate.
pub fn common_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index:06}")
}

/// Sleeps `d` unless the simulation stops first; `false` when stopping.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// One virtual device's life.
async fn run_device(index: usize, sh: &Shared, mut stop: watch::Receiver<bool>) {
    let cfg = &sh.cfg;
    let mut rng = StdRng::seed_from_u64(device_seed(cfg.seed, index, 0));
    let hardware = cfg.hardware[index % cfg.hardware.len().max(1)].clone();
    let enrolled = enroll_phase(index, sh, &hardware, &mut stop).await;
    sh.stats.settled.fetch_add(1, Ordering::Relaxed);
    sh.stats
        .settled_at_ms
        .fetch_max(sh.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    if sh.stats.settled.load(Ordering::Relaxed) == sh.cfg.devices as u64 {
        let n = sh.stats.checkins.load(Ordering::Relaxed);
        sh.stats.checkins_at_settle.store(n, Ordering::Relaxed);
    }
    if let Some((mut client, device_id)) = enrolled {
        checkin_loop(
            index,
            sh,
            &hardware,
            &mut client,
            &device_id,
            &mut rng,
            &mut stop,
        )
        .await;
        sh.stats
            .connects
            .fetch_add(client.connects, Ordering::Relaxed);
        sh.stats
            .resumed
            .fetch_add(client.resumed, Ordering::Relaxed);
    }
}

/// Provisioning and enrollment, retried on transient failures; `None`
/// when refused or stopped.
async fn enroll_phase(
    index: usize,
    sh: &Shared,
    hardware: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<(DeviceClient, String)> {
    let cfg = &sh.cfg;

    // Provisioning: a fresh key and a factory-signed certificate.
    let creds = {
        let _cpu = sh.cpu.acquire().await.ok()?;
        let factory = Arc::clone(&sh.factory);
        let cn = common_name(&cfg.name_prefix, index);
        let days = cfg.cert_validity_days;
        match tokio::task::spawn_blocking(move || factory.issue(&cn, days)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(index, "provisioning failed: {e:#}");
                sh.stats.provision_failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(_) => return None,
        }
    };
    sh.stats.provisioned.fetch_add(1, Ordering::Relaxed);
    let mut client = match DeviceClient::new(cfg.endpoint.clone(), &creds, cfg.keep_alive) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(index, "TLS client setup failed: {e:#}");
            return None;
        }
    };

    // Enrollment, retried on transient failures.
    let mut backoff = Duration::from_millis(100);
    loop {
        let answer = {
            let _permit = sh.connect.acquire().await.ok()?;
            client
                .call::<_, EnrollResponse>(
                    Method::POST,
                    "/enroll",
                    Some(&EnrollRequest {
                        hardware: hardware.to_owned(),
                        attributes: cfg.attributes.clone(),
                    }),
                )
                .await
        };
        match answer {
            Ok(Answer::Ok(_, r)) => {
                sh.stats.enrolled.fetch_add(1, Ordering::Relaxed);
                sh.activity();
                sh.ledger.record(
                    index,
                    Some(&r.device_id),
                    Event::Enrolled {
                        name: r.name,
                        created: r.created,
                    },
                );
                return Some((client, r.device_id));
            }
            Ok(Answer::Err(status, e)) if status.is_client_error() => {
                let reason = e.reason.unwrap_or_else(|| format!("{:?}", e.error));
                if status == StatusCode::UNAUTHORIZED {
                    sh.stats.refused.fetch_add(1, Ordering::Relaxed);
                    sh.ledger.record(index, None, Event::Refused { reason });
                } else {
                    sh.stats.enroll_refused.fetch_add(1, Ordering::Relaxed);
                    sh.ledger.record(
                        index,
                        None,
                        Event::EnrollRefused {
                            status: status.as_u16(),
                            reason,
                        },
                    );
                }
                sh.activity();
                return None;
            }
            Ok(Answer::Err(..)) => {
                sh.stats.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(CallError::TlsRefused(reason)) => {
                sh.stats.refused.fetch_add(1, Ordering::Relaxed);
                sh.ledger.record(index, None, Event::Refused { reason });
                sh.activity();
                return None;
            }
            Err(e) => {
                tracing::debug!(index, "enroll: {e}");
                sh.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !pause(backoff, stop).await {
            return None;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Check-ins until the simulation stops or the certificate is refused.
async fn checkin_loop(
    index: usize,
    sh: &Shared,
    hardware: &str,
    client: &mut DeviceClient,
    device_id: &str,
    rng: &mut StdRng,
    stop: &mut watch::Receiver<bool>,
) {
    let cfg = &sh.cfg;
    let did = Some(device_id);

    let mut firmware = cfg.initial_firmware.clone();
    let mut digest: Option<String> = None;
    let role = Role::of(cfg, index);
    // A tampered device reports a digest of nothing fleetd ever sent.
    let wrong_digest = "0".repeat(64);
    let mut handled: HashSet<(String, String, u32)> = HashSet::new();
    // Failures come from their own generator, drawn once per assignment,
    // so who fails does not depend on timing (jitter draws).
    let mut installs = FailureDice::new(cfg.seed, index);
    let mut denied_seen: HashSet<String> = HashSet::new();
    let interval = cfg.checkin_interval;
    // First check-in somewhere within the first interval, then every
    // interval ±10%.
    let mut wait = interval.mul_f64(rng.random::<f64>());
    loop {
        if !pause(wait, stop).await {
            break;
        }
        if role == Role::Silent && sh.started.elapsed() >= cfg.silent_after {
            // Gone quiet: wait for the end of the run without a word.
            let _ = stop.wait_for(|s| *s).await;
            break;
        }
        wait = interval.mul_f64(0.9 + 0.2 * rng.random::<f64>());
        let reconnect = !cfg.keep_alive;
        let (answer, started) = {
            let _permit = if reconnect {
                sh.reconnect.acquire().await.ok()
            } else {
                None
            };
            // Latency as the device sees it once it is its turn to call.
            let started = Instant::now();
            let answer = client
                .call::<_, CheckinResponse>(
                    Method::POST,
                    "/checkin",
                    Some(&CheckinRequest {
                        firmware_version: Some(firmware.clone()),
                        hardware: Some(hardware.to_owned()),
                        health: Some("ok".into()),
                        config_digest: if role == Role::ConfigDrift {
                            Some(wrong_digest.clone())
                        } else {
                            digest.clone()
                        },
                    }),
                )
                .await;
            (answer, started)
        };
        let resp = match answer {
            Ok(Answer::Ok(_, r)) => {
                sh.stats.observe(started.elapsed());
                sh.stats.checkins.fetch_add(1, Ordering::Relaxed);
                r
            }
            Ok(Answer::Err(StatusCode::UNAUTHORIZED, e)) => {
                sh.stats.refused.fetch_add(1, Ordering::Relaxed);
                let reason = e.reason.unwrap_or(e.message);
                sh.ledger.record(index, did, Event::Refused { reason });
                sh.activity();
                break;
            }
            Ok(Answer::Err(StatusCode::FORBIDDEN, e)) => {
                if e.error == DeviceErrorKind::NotEnrolled {
                    sh.ledger.record(
                        index,
                        did,
                        Event::Refused {
                            reason: "not_enrolled".into(),
                        },
                    );
                    break;
                }
                let action = e.action.unwrap_or_default();
                sh.stats.denied.fetch_add(1, Ordering::Relaxed);
                if denied_seen.insert(action.clone()) {
                    sh.ledger.record(index, did, Event::Denied { action });
                }
                continue;
            }
            Ok(Answer::Err(..)) => {
                sh.stats.server_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(CallError::TlsRefused(reason)) => {
                sh.stats.refused.fetch_add(1, Ordering::Relaxed);
                sh.ledger.record(index, did, Event::Refused { reason });
                sh.activity();
                break;
            }
            Err(e) => {
                tracing::debug!(index, "checkin: {e}");
                sh.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                client.disconnect();
                continue;
            }
        };
        for action in resp.denied {
            sh.stats.denied.fetch_add(1, Ordering::Relaxed);
            if denied_seen.insert(action.clone()) {
                sh.ledger.record(index, did, Event::Denied { action });
            }
        }
        // "Apply" a new config: the device computes the canonical digest
        // of what it received itself, and reports it from now on.
        if let Some(config) = &resp.config {
            let mine = fleet_domain::compliance::config_digest(config);
            if resp.config_digest.as_deref() != Some(mine.as_str()) {
                tracing::warn!(index, "fleetd's config digest differs from the device's");
            }
            digest = Some(mine);
        }
        let Some(a) = resp.assignment else { continue };
        let key = (a.rollout_id.clone(), a.firmware_id.clone(), a.attempt);
        if !handled.insert(key) {
            continue;
        }
        sh.stats.assignments.fetch_add(1, Ordering::Relaxed);
        sh.activity();
        sh.ledger.record(
            index,
            did,
            Event::Assigned {
                rollout_id: a.rollout_id.clone(),
                firmware_id: a.firmware_id.clone(),
                version: a.version.clone(),
                attempt: a.attempt,
            },
        );

        // "Install": metadata only, no download.
        if !pause(cfg.install_time, stop).await {
            break;
        }
        let fails = installs.roll(cfg.fail_rate, cfg.fail_version.as_deref(), &a.version);
        let outcome = if fails {
            UpdateOutcome::Failed
        } else {
            UpdateOutcome::Succeeded
        };
        let report = ResultReport {
            rollout_id: a.rollout_id.clone(),
            outcome,
            reason: fails.then(|| format!("simulated failure installing {}", a.version)),
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match client
                .call::<_, ResultAck>(Method::POST, "/results", Some(&report))
                .await
            {
                Ok(Answer::Ok(..)) => {
                    match outcome {
                        UpdateOutcome::Succeeded => {
                            if role != Role::StuckFirmware {
                                firmware = a.version.clone();
                            }
                            sh.stats.succeeded.fetch_add(1, Ordering::Relaxed)
                        }
                        UpdateOutcome::Failed => sh.stats.failed.fetch_add(1, Ordering::Relaxed),
                        UpdateOutcome::RolledBack => {
                            sh.stats.rolled_back.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    sh.activity();
                    sh.ledger.record(
                        index,
                        did,
                        Event::Reported {
                            rollout_id: a.rollout_id.clone(),
                            firmware_id: a.firmware_id.clone(),
                            version: a.version.clone(),
                            attempt: a.attempt,
                            outcome,
                        },
                    );
                    break;
                }
                Ok(Answer::Err(status, e)) if status.is_client_error() => {
                    sh.stats.report_rejected.fetch_add(1, Ordering::Relaxed);
                    sh.activity();
                    sh.ledger.record(
                        index,
                        did,
                        Event::ReportRejected {
                            rollout_id: a.rollout_id.clone(),
                            status: status.as_u16(),
                            error: e.reason.unwrap_or(e.message),
                        },
                    );
                    break;
                }
                Ok(Answer::Err(..)) | Err(CallError::Transport(_) | CallError::BadResponse(_)) => {
                    sh.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                    if tries >= 5 || !pause(Duration::from_millis(200 * tries), stop).await {
                        break;
                    }
                }
                Err(CallError::TlsRefused(reason)) => {
                    sh.stats.refused.fetch_add(1, Ordering::Relaxed);
                    sh.ledger.record(index, did, Event::Refused { reason });
                    return;
                }
            }
        }
        // Check in again soon with the new version.
        wait = wait.min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reproducible_and_near_the_rate() {
        let run = |seed| -> Vec<usize> {
            (0..10_000)
                .filter(|i| FailureDice::new(seed, *i).roll(0.02, None, "2.0.0"))
                .collect()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!((150..=250).contains(&a.len()), "{}", a.len());
        // Only the given version fails.
        let mut d = FailureDice::new(7, a[0]);
        assert!(!d.roll(1.0, Some("3.0.0"), "2.0.0"));
        assert!(d.roll(1.0, Some("3.0.0"), "3.0.0"));
    }

    #[test]
    fn latency_quantiles() {
        let s = Stats::default();
        for ms in [1u64, 1, 1, 4, 40] {
            s.observe(Duration::from_millis(ms));
        }
        assert_eq!(s.latency_quantile_ms(0.5), Some(1));
        assert_eq!(s.latency_quantile_ms(0.99), Some(50));
    }
}
