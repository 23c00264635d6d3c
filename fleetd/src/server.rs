//! Assembling and running a fleetd process.
//!
//! [`Server::bind`] does everything that can fail at startup (data
//! directory, store and migrations, admin token, listener) and only then
//! publishes the bound address in `<data-dir>/admin.addr`, so a harness that
//! sees the file can connect immediately. [`Server::serve`] runs until the
//! shutdown future completes, lets in-flight requests finish (within
//! [`Config::shutdown_grace`]) and removes `admin.addr` again.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::admin_token::{self, TokenOrigin};
use crate::api::{self, AppState};
use crate::config::Config;
use crate::device::metrics::DeviceMetrics;
use crate::device::{DeviceOptions, DeviceServer};
use crate::keystore::{KeyOrigin, MasterKey};
use crate::store;

/// File in the data directory holding the admin API's bound `host:port`.
pub const ADDR_FILE: &str = "admin.addr";

/// A fleetd that has bound its listener but not started serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    admin_token: String,
    router: axum::Router,
    addr_file: PathBuf,
    config: Config,
    device: DeviceServer,
    /// For the rollout engine, started by [`Server::serve`].
    engine_store: Arc<dyn store::Store>,
    engine_wake: crate::engine::EngineWake,
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        create_data_dir(&config.data_dir)?;
        let database_url = config.database_url();
        let store = store::open(&database_url)
            .await
            .with_context(|| format!("opening the store at {database_url}"))?;
        tracing::info!(database = %database_url, "store opened");

        let (admin_token, origin) =
            admin_token::resolve(config.admin_token.clone(), &config.data_dir)?;
        match &origin {
            TokenOrigin::Configured => tracing::info!("admin token: from --token/FLEETD_TOKEN"),
            TokenOrigin::File(p) => {
                tracing::info!(path = %p.display(), "admin token: read from file")
            }
            TokenOrigin::Generated(p) => {
                tracing::info!(path = %p.display(), "admin token: generated a new one and saved it (mode 0600)")
            }
        }

        let master_key = open_master_key(&config, store.as_ref()).await?;

        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding the admin API to {}", config.listen))?;
        let local_addr = listener.local_addr()?;

        // The device API is bound (and device.addr written) before
        // admin.addr appears: a harness that sees admin.addr can use both.
        let device_metrics = Arc::new(DeviceMetrics::default());
        let device = DeviceServer::bind(
            DeviceOptions {
                listen: config.device_listen(),
                data_dir: config.data_dir.clone(),
                server_names: config.device_server_names.clone(),
                trust_refresh: config.device_trust_refresh,
            },
            Arc::clone(&store),
            &master_key,
            Arc::clone(&device_metrics),
        )
        .await?;

        let engine_store = Arc::clone(&store);
        let engine_wake = crate::engine::EngineWake::default();
        let router = api::router(AppState {
            store,
            admin_token: Arc::from(admin_token.as_str()),
            master_key: Arc::new(master_key),
            device_metrics,
            // Without wake-on-change the API gets a signal nobody listens to.
            engine_wake: if config.engine_wake_on_change {
                engine_wake.clone()
            } else {
                crate::engine::EngineWake::default()
            },
        });

        let addr_file = config.data_dir.join(ADDR_FILE);
        crate::atomic_file::replace(&addr_file, format!("{local_addr}\n").as_bytes(), 0o644)
            .with_context(|| format!("writing {}", addr_file.display()))?;
        tracing::info!(addr = %local_addr, addr_file = %addr_file.display(), "admin API listening");

        Ok(Server {
            listener,
            local_addr,
            admin_token,
            router,
            addr_file,
            config,
            device,
            engine_store,
            engine_wake,
        })
    }

    /// The device API's bound address (mutual TLS).
    pub fn device_addr(&self) -> SocketAddr {
        self.device.local_addr()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin bearer token this server requires.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            local_addr,
            router,
            addr_file,
            config,
            device,
            engine_store,
            engine_wake,
            ..
        } = self;

        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let (device_stop_tx, mut device_stop_rx) = tokio::sync::watch::channel(false);
        let (engine_stop_tx, mut engine_stop_rx) = tokio::sync::watch::channel(false);
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = device_stop_tx.send(true);
            let _ = engine_stop_tx.send(true);
            let _ = draining_tx.send(());
        };
        let engine_task = crate::engine::spawn(
            engine_store,
            crate::engine::EngineConfig {
                interval: config.engine_interval,
                ..Default::default()
            },
            engine_wake,
            async move {
                let _ = engine_stop_rx.wait_for(|stop| *stop).await;
            },
        );
        let device_task = tokio::spawn(device.serve(
            async move {
                let _ = device_stop_rx.wait_for(|stop| *stop).await;
            },
            config.shutdown_grace,
        ));
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(graceful)
            .into_future();
        let deadline = async move {
            match draining_rx.await {
                Ok(()) => tokio::time::sleep(config.shutdown_grace).await,
                // The server stopped on its own; nothing to time out.
                Err(_) => std::future::pending().await,
            }
        };

        let result = tokio::select! {
            r = serve => r.context("serving the admin API"),
            () = deadline => {
                tracing::warn!(grace = ?config.shutdown_grace, "requests still running after the grace period; stopping anyway");
                Ok(())
            }
        };
        remove_addr_file(&addr_file, local_addr);
        // The device listener got the same signal and the same grace.
        let device_abort = device_task.abort_handle();
        match tokio::time::timeout(config.shutdown_grace, device_task).await {
            Ok(Ok(Err(e))) => tracing::error!("device API: {e:#}"),
            Ok(Err(e)) if e.is_panic() => tracing::error!("device API task panicked"),
            Ok(_) => {}
            Err(_) => device_abort.abort(),
        }
        // The rollout engine finishes its current step (one transaction).
        let engine_abort = engine_task.abort_handle();
        match tokio::time::timeout(config.shutdown_grace, engine_task).await {
            Ok(Err(e)) if e.is_panic() => tracing::error!("rollout engine task panicked"),
            Ok(_) => {}
            Err(_) => engine_abort.abort(),
        }
        tracing::info!("fleetd stopped");
        result
    }
}

/// [`Server::bind`] then [`Server::serve`].
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::bind(config).await?.serve(shutdown).await
}

/// Loads (or on a fresh install creates) the master key and checks that it
/// is the one that sealed the CA keys already stored: with the wrong key,
/// fleetd refuses to start instead of failing on the first signature.
async fn open_master_key(config: &Config, store: &dyn store::Store) -> anyhow::Result<MasterKey> {
    let path = config.master_key_file();
    let in_use = store
        .ca_master_key_ids()
        .await
        .context("reading which master key sealed the stored CA keys")?;
    // Creating a key is only right on a fresh install with the default
    // path: a configured file that is missing is a deployment mistake, and
    // a new key could not open the CA keys already stored.
    let create = config.master_key_file.is_none() && in_use.is_empty();
    let (key, origin) = MasterKey::load_or_create(&path, create).map_err(|e| {
        if in_use.is_empty() {
            e
        } else {
            e.context(format!(
                "the database holds CA private keys encrypted with master key {}; \
                 fleetd needs that master key file (--master-key-file, FLEETD_MASTER_KEY_FILE)",
                in_use.join(", ")
            ))
        }
    })?;
    if let Some(other) = in_use.iter().find(|id| *id != key.id()) {
        anyhow::bail!(
            "the master key in {} (id {}) is not the one that encrypted the CA private keys \
             in the database (id {other}); start fleetd with the original master key file \
             (--master-key-file, FLEETD_MASTER_KEY_FILE)",
            path.display(),
            key.id()
        );
    }
    match origin {
        KeyOrigin::Loaded(p) => {
            tracing::info!(path = %p.display(), id = key.id(), "master key: loaded")
        }
        KeyOrigin::Created(p) => tracing::info!(
            path = %p.display(),
            id = key.id(),
            "master key: generated a new one and saved it (mode 0600); back it up apart from the database"
        ),
    }
    Ok(key)
}

fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // The directory holds the admin token and the database.
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// Removes `admin.addr` unless another fleetd has since replaced it.
fn remove_addr_file(path: &Path, ours: SocketAddr) {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim() == ours.to_string() => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), "could not remove address file: {e}");
            }
        }
        _ => {}
    }
}
