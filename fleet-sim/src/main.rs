//! `fleet-sim`: run virtual devices against a fleetd.
//!
//! ```text
//! fleet-sim --fleetd-data-dir ./fleetd-data --group-id <group> --devices 2000 \
//!           --fail-rate 0.01 --checkin-interval 1s --until-idle 5s
//! fleet-sim factory-ca --out ./factory      # a CA for Terraform to import
//! fleet-sim bench --fleetd-data-dir ./fleetd-data --devices 10000 --json
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use fleet_sim::admin::Admin;
use fleet_sim::{Endpoint, Factory, SimConfig, Simulation, Stats};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The same allocator as fleetd's: ten thousand devices' requests allocate
/// and free small objects across threads, and with glibc's malloc that
/// work grew with the device count (BENCHMARKS.md, fifteenth session).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "fleet-sim",
    version,
    about = "Virtual devices for fleetd: enroll, check in, install firmware, report",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new factory CA (factory-ca.pem, factory-ca.key) to a
    /// directory, for importing into fleetd (e.g. with Terraform's
    /// fleet_certificate_authority) and running devices with --factory-dir.
    FactoryCa {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "fleet-sim factory CA")]
        common_name: String,
        #[arg(long, default_value_t = 3650)]
        validity_days: i64,
    },
    /// Device API throughput against its ceiling (`GET /v1/device/ping`):
    /// enrollments, keep-alive check-ins, fresh handshakes, a rollout's
    /// assignments (see `fleet_sim::bench`).
    Bench {
        /// fleetd's data directory (admin.addr, admin-token, device.addr,
        /// device-server-ca.pem).
        #[arg(long, env = "FLEETD_DATA_DIR")]
        fleetd_data_dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Seconds of each keep-alive phase (ping, check-in, check-in with
        /// the config sent back), split into 3 rounds; a round is measured
        /// once every device made two calls. Rounds of 5 s leave 10,000
        /// devices several measured calls each.
        #[arg(long, default_value_t = 15.0)]
        phase_secs: f64,
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// Prefix of certificate and object names (default: bench-<random>).
        #[arg(long)]
        prefix: Option<String>,
        /// fleetd's process id, if it runs on this machine: each phase
        /// then reports fleetd's CPU time per operation beside the
        /// simulator's own.
        #[arg(long)]
        fleetd_pid: Option<u32>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// fleetd's data directory: admin.addr, admin-token, device.addr and
    /// device-server-ca.pem are read from it unless given explicitly.
    #[arg(long, env = "FLEETD_DATA_DIR")]
    fleetd_data_dir: Option<PathBuf>,
    /// Admin API URL (for importing the factory CA, creating the
    /// enrollment, watching a rollout).
    #[arg(long, env = "FLEET_ENDPOINT")]
    admin_endpoint: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "FLEET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Device API address, host:port.
    #[arg(long)]
    device_endpoint: Option<String>,
    /// The device server CA to pin (PEM).
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// Name to verify in the server certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,

    /// Use this factory CA (factory-ca.pem/.key, already imported into
    /// fleetd with an enrollment) instead of generating and importing one.
    #[arg(long)]
    factory_dir: Option<PathBuf>,
    /// Name of the generated factory CA in fleetd (default
    /// `<prefix>-factory`).
    #[arg(long)]
    ca_name: Option<String>,
    /// Create an enrollment of the generated factory CA into this group.
    #[arg(long)]
    group_id: Option<String>,
    /// Name template of that enrollment.
    #[arg(long, default_value = "{cn}")]
    name_template: String,

    /// Number of virtual devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Hardware models, assigned round-robin.
    #[arg(long, value_delimiter = ',', default_value = "sim-1")]
    hardware: Vec<String>,
    /// An attribute every device reports, key=value (repeatable).
    #[arg(long = "attribute", value_parser = parse_kv)]
    attributes: Vec<(String, String)>,
    /// Firmware version the devices start with.
    #[arg(long, default_value = "1.0.0")]
    firmware: String,
    /// Probability that an installation fails.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Fail (at --fail-rate) only when installing this version.
    #[arg(long)]
    fail_version: Option<String>,
    /// Share of devices reporting a wrong applied-config digest
    /// (compliance: config drift).
    #[arg(long, default_value_t = 0.0)]
    config_drift_rate: f64,
    /// Share of devices that report updates as installed but keep their
    /// old firmware version (compliance: firmware drift).
    #[arg(long, default_value_t = 0.0)]
    stuck_firmware_rate: f64,
    /// Share of devices that stop checking in after --silent-after
    /// (compliance: stale).
    #[arg(long, default_value_t = 0.0)]
    silent_rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    silent_after: Duration,
    /// Seed for every random choice (failures, jitter).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Certificate common names are <prefix>-<index> (default: sim-<random>).
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkin_interval: Duration,
    /// Simulated installation time.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    install_time: Duration,
    /// Reconnect (with TLS resumption) for every check-in instead of
    /// keeping one connection per device.
    #[arg(long)]
    no_keep_alive: bool,
    /// Most handshakes/enrollments in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Stop after this long.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop once all devices enrolled and nothing happened for this long.
    #[arg(long, value_parser = parse_duration)]
    until_idle: Option<Duration>,
    /// Show this rollout's live counts (admin API) while running.
    #[arg(long)]
    watch_rollout: Option<String>,
    /// Stop once the watched rollout has finished (completed, aborted,
    /// rolled back, cancelled) or paused after it started.
    #[arg(long, requires = "watch_rollout")]
    until_rollout_done: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the ledger (JSON lines) to this file.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// No progress display.
    #[arg(long)]
    no_progress: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `500ms`, `2s`, `1.5s`, `3m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: bad number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEET_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::FactoryCa {
            out,
            common_name,
            validity_days,
        }) => factory_ca(&out, &common_name, validity_days),
        Some(Command::Bench {
            fleetd_data_dir,
            devices,
            phase_secs,
            connect_concurrency,
            prefix,
            fleetd_pid,
            json,
        }) => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| {
                rt.block_on(bench(
                    &fleetd_data_dir,
                    devices,
                    phase_secs,
                    connect_concurrency,
                    prefix,
                    fleetd_pid,
                    json,
                ))
            }),
        None => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(run(cli.run))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fleet-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn factory_ca(out: &Path, cn: &str, days: i64) -> anyhow::Result<ExitCode> {
    let f = Factory::generate(cn, days)?;
    f.save(out)?;
    println!("{}", out.join(fleet_sim::factory::CA_CERT_FILE).display());
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    data: &Path,
    devices: usize,
    phase_secs: f64,
    connect_concurrency: usize,
    prefix: Option<String>,
    fleetd_pid: Option<u32>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let admin = Admin::new(
        &format!("http://{}", read_trimmed(&data.join("admin.addr"))?),
        &read_trimmed(&data.join("admin-token"))?,
    )?;
    let device = read_trimmed(&data.join("device.addr"))?;
    let addr: SocketAddr = device
        .to_socket_addrs()
        .with_context(|| format!("resolving {device}"))?
        .next()
        .context("the device endpoint resolves to no address")?;
    let server_ca = std::fs::read_to_string(data.join("device-server-ca.pem"))?;
    let cfg = fleet_sim::bench::BenchConfig {
        endpoint: Endpoint::new(addr, &server_ca, Some("localhost"))?,
        devices,
        phase: Duration::try_from_secs_f64(phase_secs)?,
        connect_concurrency,
        prefix: prefix
            .unwrap_or_else(|| format!("bench-{:06x}", rand::random::<u32>() & 0xff_ffff)),
        fleetd_pid,
    };
    let report = fleet_sim::bench::run(&cfg, &admin).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn read_trimmed(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let data = a.fleetd_data_dir.as_deref();
    let admin_endpoint = match (&a.admin_endpoint, data) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(d)) => Some(format!("http://{}", read_trimmed(&d.join("admin.addr"))?)),
        _ => None,
    };
    let token = match (&a.token, data) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(d)) => Some(read_trimmed(&d.join("admin-token"))?),
        _ => None,
    };
    let device_endpoint = match (&a.device_endpoint, data) {
        (Some(e), _) => e.clone(),
        (None, Some(d)) => read_trimmed(&d.join("device.addr"))?,
        _ => bail!("--device-endpoint (or --fleetd-data-dir) is required"),
    };
    let server_ca = match (&a.server_ca, data) {
        (Some(p), _) => std::fs::read_to_string(p)?,
        (None, Some(d)) => std::fs::read_to_string(d.join("device-server-ca.pem"))?,
        _ => bail!("--server-ca (or --fleetd-data-dir) is required"),
    };
    let addr: SocketAddr = device_endpoint
        .to_socket_addrs()
        .with_context(|| format!("resolving {device_endpoint}"))?
        .next()
        .context("the device endpoint resolves to no address")?;
    let endpoint = Endpoint::new(addr, &server_ca, Some(&a.server_name))?;
    let admin = match (&admin_endpoint, &token) {
        (Some(e), Some(t)) => Some(Admin::new(e, t)?),
        _ => None,
    };
    let prefix = a
        .prefix
        .clone()
        .unwrap_or_else(|| format!("sim-{:06x}", rand::random::<u32>() & 0xff_ffff));

    let factory = match &a.factory_dir {
        Some(dir) => Factory::load(dir)?,
        None => {
            let admin = admin
                .as_ref()
                .context("a generated factory CA must be imported: give --admin-endpoint and --token (or --fleetd-data-dir), or --factory-dir")?;
            let f = Factory::generate(&format!("{prefix} factory CA"), 365)?;
            let name = a
                .ca_name
                .clone()
                .unwrap_or_else(|| format!("{prefix}-factory"));
            let ca_id = admin.import_ca(&name, &f).await?;
            eprintln!("imported factory CA {name} ({ca_id})");
            if let Some(group) = &a.group_id {
                let e = admin
                    .create_enrollment(
                        &format!("{prefix}-enrollment"),
                        &ca_id,
                        group,
                        &a.name_template,
                    )
                    .await?;
                eprintln!("created enrollment {} into group {group}", e.id);
            }
            f
        }
    };

    let mut cfg = SimConfig::new(endpoint, a.devices);
    cfg.name_prefix = prefix;
    cfg.hardware = a.hardware.clone();
    cfg.attributes = a.attributes.iter().cloned().collect::<BTreeMap<_, _>>();
    cfg.initial_firmware = a.firmware.clone();
    cfg.fail_rate = a.fail_rate;
    cfg.fail_version = a.fail_version.clone();
    cfg.config_drift_rate = a.config_drift_rate;
    cfg.stuck_firmware_rate = a.stuck_firmware_rate;
    cfg.silent_rate = a.silent_rate;
    cfg.silent_after = a.silent_after;
    cfg.seed = a.seed;
    cfg.checkin_interval = a.checkin_interval;
    cfg.install_time = a.install_time;
    cfg.keep_alive = !a.no_keep_alive;
    cfg.connect_concurrency = a.connect_concurrency;
    cfg.duration = a.duration;
    cfg.until_idle = a.until_idle;
    if cfg.duration.is_none() && cfg.until_idle.is_none() {
        eprintln!("running until interrupted (Ctrl-C); see --duration and --until-idle");
    }

    let sim = Simulation::new(cfg, Arc::new(factory));
    let stats = sim.stats();
    let stopper = sim.stopper();
    if a.until_rollout_done {
        if let (Some(admin), Some(id)) = (admin.clone(), a.watch_rollout.clone()) {
            tokio::spawn(stop_when_rollout_done(admin, id, stopper.clone()));
        } else {
            bail!("--until-rollout-done needs the admin API (--admin-endpoint and --token, or --fleetd-data-dir)");
        }
    }
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.stop();
        }
    });
    let progress = (!a.no_progress).then(|| {
        tokio::spawn(show_progress(
            Arc::clone(&stats),
            a.devices as u64,
            admin.clone().zip(a.watch_rollout.clone()),
        ))
    });
    let report = sim.run().await;
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }

    if let Some(path) = &a.ledger {
        std::fs::write(path, report.ledger.to_json_lines())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let s = &report.summary;
    if a.json {
        let mut v = serde_json::to_value(s)?;
        v["rollouts"] = serde_json::to_value(report.ledger.rollouts())?;
        if let (Some(admin), Some(id)) = (&admin, &a.watch_rollout) {
            if let Ok(r) = admin.rollout(id).await {
                v["rollout"] = serde_json::to_value(r)?;
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "devices {}  enrolled {}  refused {}  enroll-refused {}",
            s.devices, s.enrolled, s.refused, s.enroll_refused
        );
        println!(
            "check-ins {} ({:.0}/s, p50 ≤{}ms, p99 ≤{}ms)  connects {} (resumed {})",
            s.checkins,
            s.checkins_per_sec,
            s.checkin_p50_ms.map_or("-".into(), |v| v.to_string()),
            s.checkin_p99_ms.map_or("-".into(), |v| v.to_string()),
            s.connects,
            s.resumed
        );
        println!(
            "assignments {}  succeeded {}  failed {}  rolled back {}  report rejected {}  denied {}",
            s.assignments, s.succeeded, s.failed, s.rolled_back, s.report_rejected, s.denied
        );
        println!(
            "errors: transport {}  server {}  in {:.1}s",
            s.transport_errors, s.server_errors, s.elapsed_secs
        );
        if let (Some(admin), Some(id)) = (&admin, &a.watch_rollout) {
            if let Ok(r) = admin.rollout(id).await {
                let c = &r.counts;
                println!(
                    "rollout {} {}: targeted {} pending {} in progress {} succeeded {} failed {} rolled back {}",
                    r.name, r.status, c.targeted, c.pending, c.in_progress, c.succeeded, c.failed, c.rolled_back
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a rollout is done with, as far as devices are concerned.
fn rollout_done(status: &str, targeted: i64) -> bool {
    matches!(
        status,
        "completed" | "aborted" | "rolled_back" | "cancelled"
    ) || (status == "paused" && targeted > 0)
}

async fn stop_when_rollout_done(admin: Admin, id: String, stopper: fleet_sim::sim::Stopper) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match admin.rollout(&id).await {
            Ok(r) if rollout_done(&r.status, r.counts.targeted) => break,
            _ => {}
        }
    }
    // Let the last reports and rollback assignments land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stopper.stop();
}

async fn show_progress(stats: Arc<Stats>, devices: u64, rollout: Option<(Admin, String)>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:40.cyan/blue}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let devices_bar = multi.add(ProgressBar::new(devices).with_style(style.clone()));
    devices_bar.set_prefix("enrolled");
    let rollout_bar = rollout.as_ref().map(|_| {
        let b = multi.add(ProgressBar::new(0).with_style(style));
        b.set_prefix("rollout");
        b
    });
    let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    loop {
        devices_bar.set_position(g(&stats.enrolled));
        devices_bar.set_message(format!(
            "check-ins {}  assigned {}  ok {}  failed {}  refused {}",
            g(&stats.checkins),
            g(&stats.assignments),
            g(&stats.succeeded),
            g(&stats.failed),
            g(&stats.refused) + g(&stats.enroll_refused)
        ));
        if let (Some(bar), Some((admin, id))) = (&rollout_bar, &rollout) {
            if let Ok(r) = admin.rollout(id).await {
                let c = &r.counts;
                bar.set_length(c.targeted.max(0) as u64);
                bar.set_position((c.succeeded + c.failed + c.rolled_back).max(0) as u64);
                bar.set_message(format!(
                    "{}  phase {}  in progress {}  ok {}  failed {}  rolled back {}",
                    r.status, r.current_phase, c.in_progress, c.succeeded, c.failed, c.rolled_back
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn rollout_done_only_after_it_started() {
        assert!(rollout_done("completed", 10));
        assert!(rollout_done("rolled_back", 10));
        assert!(
            rollout_done("paused", 10),
            "paused by the failure threshold"
        );
        assert!(
            !rollout_done("paused", 0),
            "created paused, not started yet"
        );
        assert!(!rollout_done("running", 10));
        assert!(!rollout_done("pending", 0));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2x").is_err());
    }
}
