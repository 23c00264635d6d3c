//! Simulated devices for end-to-end tests: fleet-sim's virtual devices,
//! run in the test process against a harness [`Fleetd`] over its real
//! mutual-TLS device API, on their own Tokio runtime so that the
//! (blocking) Terraform steps of a test can run meanwhile.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fleet_sim::sim::Stopper;
use fleet_sim::{Endpoint, Factory, Ledger, Report, SimConfig, Simulation, Stats};

use crate::{wait_for, Fleetd};

/// Where a fleetd's device API is and how devices trust it.
pub fn endpoint(fleetd: &Fleetd) -> Result<Endpoint> {
    let addr: SocketAddr = fleetd
        .device_addr()?
        .to_socket_addrs()?
        .next()
        .context("device address")?;
    Endpoint::new(addr, &fleetd.device_server_ca()?, Some("localhost"))
}

/// Simulator settings for a test: fast check-ins and installs.
pub fn config(fleetd: &Fleetd, devices: usize, prefix: &str) -> Result<SimConfig> {
    let mut cfg = SimConfig::new(endpoint(fleetd)?, devices);
    cfg.name_prefix = prefix.into();
    cfg.checkin_interval = Duration::from_millis(400);
    cfg.install_time = Duration::from_millis(10);
    Ok(cfg)
}

/// A simulation running in the background.
pub struct Devices {
    rt: tokio::runtime::Runtime,
    run: Option<tokio::task::JoinHandle<Report>>,
    pub stats: Arc<Stats>,
    pub ledger: Arc<Ledger>,
    stopper: Stopper,
    devices: usize,
}

impl Devices {
    /// Starts `cfg.devices` virtual devices whose certificates `factory`
    /// signs.
    pub fn start(cfg: SimConfig, factory: Factory) -> Result<Devices> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let devices = cfg.devices;
        let sim = Simulation::new(cfg, Arc::new(factory));
        let stats = sim.stats();
        let ledger = sim.ledger();
        let stopper = sim.stopper();
        let run = rt.spawn(sim.run());
        Ok(Devices {
            rt,
            run: Some(run),
            stats,
            ledger,
            stopper,
            devices,
        })
    }

    /// Waits until every device enrolled.
    pub fn wait_enrolled(&self, timeout: Duration) -> Result<()> {
        let want = self.devices as u64;
        let stats = &self.stats;
        wait_for("every simulated device to enroll", timeout, || {
            stats.enrolled.load(Ordering::Relaxed) >= want
        })
        .with_context(|| {
            format!(
                "enrolled {} of {want} (refused {}, enroll refused {}, transport errors {})",
                stats.enrolled.load(Ordering::Relaxed),
                stats.refused.load(Ordering::Relaxed),
                stats.enroll_refused.load(Ordering::Relaxed),
                stats.transport_errors.load(Ordering::Relaxed),
            )
        })
    }

    /// Stops every device and returns the summary and the ledger.
    pub fn stop(mut self) -> Result<Report> {
        self.stopper.stop();
        let run = self.run.take().context("already stopped")?;
        Ok(self.rt.block_on(run)?)
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}
