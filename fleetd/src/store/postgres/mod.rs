//! The replicated store: fleetd's state in a PostgreSQL database that
//! several fleetd processes (replicas) share.
//!
//! The queries, checks and error mapping are those of the SQLite store:
//! the modules under `../sql/` (`device_groups`, `devices`, `policies`,
//! the PKI, …) are one source compiled for both backends, reaching the
//! database through `db`, a thin synchronous layer over a `deadpool` pool
//! of `tokio-postgres` connections shaped like rusqlite. Behaviour is therefore identical by
//! construction: same errors, same ordering, same audit rows. Columns keep
//! the SQLite store's representation (RFC 3339 text timestamps with
//! milliseconds, JSON text, 64-bit integers) so values round-trip byte for
//! byte and sort the same.
//!
//! Concurrency: every write runs in one transaction that first takes a
//! transaction-scoped advisory lock (`db::WRITE_LOCK_KEY`). Writes are
//! therefore serialised across all replicas, exactly as SQLite's single
//! writer serialises them, and every read-check-write sequence stays
//! race-free; reads run concurrently on the pool. Check-ins reach the
//! store in batches (the device API's check-in writer), so a busy fleet
//! costs one write transaction per batch, not per device.
//!
//! The rollout engine's work is divided between replicas by leases (see
//! `leases`).

#[path = "../sql/audit.rs"]
mod audit;
#[path = "../sql/compliance.rs"]
mod compliance;
pub(crate) mod db;
#[path = "../sql/device_api.rs"]
mod device_api;
#[path = "../sql/device_groups.rs"]
mod device_groups;
#[path = "../sql/devices.rs"]
mod devices;
#[path = "../sql/engine.rs"]
mod engine;
#[path = "../sql/firmware.rs"]
mod firmware;
#[path = "../sql/fleet.rs"]
mod fleet;
mod leases;
#[path = "../sql/membership.rs"]
mod membership;
mod migrations;
#[path = "../sql/pki.rs"]
mod pki;
#[path = "../sql/policies.rs"]
mod policies;
#[path = "../sql/rollouts.rs"]
mod rollouts;
#[path = "../sql/time.rs"]
mod time;

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use db::{Connection, Transaction, TransactionBehavior};

use super::StoreError;

/// Connections each fleetd process keeps open at most.
const POOL_SIZE: usize = 16;

/// The store type the modules shared with SQLite (`../sql/`) implement the
/// store traits for.
type Backend = PgStore;

/// PostgreSQL-backed [`Store`](super::Store).
#[derive(Clone)]
pub struct PgStore {
    pool: deadpool::managed::Pool<db::PgManager>,
    /// Who this process is in `rollout_leases`.
    holder: String,
    lease_ttl: Duration,
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL) and migrates
    /// it to the latest schema. Replicas starting together serialise their
    /// migrations on an advisory lock.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("parsing the PostgreSQL URL {}", redact(url)))?;
        let pool = deadpool::managed::Pool::builder(db::PgManager::new(config))
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .context("creating the PostgreSQL connection pool")?;
        let store = PgStore {
            pool,
            holder: format!("fleetd-{}", uuid::Uuid::now_v7()),
            lease_ttl: leases::lease_ttl_from_env(),
        };
        let version = store
            .call(|conn| migrations::migrate(conn).map_err(StoreError::Backend))
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
        tracing::info!(
            schema_version = version,
            engine_lease_holder = %store.holder,
            "postgres store ready"
        );
        Ok(store)
    }

    /// The name this process holds engine leases under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The rollouts the engine has work for that this replica holds a
    /// lease on (see `leases`), renewing and claiming leases as it goes.
    async fn engine_share(&self) -> Result<Vec<String>, StoreError> {
        let (holder, ttl) = (self.holder.clone(), self.lease_ttl);
        self.call(move |conn| write(conn, |tx, now| leases::claim(tx, &holder, ttl, now)))
            .await
    }

    /// Runs `f` with a pooled connection on Tokio's blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let client = self.pool.get().await.map_err(|e| {
            StoreError::backend(anyhow::anyhow!("getting a PostgreSQL connection: {e}"))
        })?;
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::new(client);
            f(&mut conn)
        })
        .await
        .map_err(StoreError::backend)?
    }

    /// Read-only work: the same as [`PgStore::call`] (every pooled
    /// connection already reads concurrently with the writer).
    async fn call_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(f).await
    }

    /// Check-in writes: the same as [`PgStore::call`] here.
    async fn call_reported<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(f).await
    }

    /// Other fleetd processes may write to the same database, which no
    /// counter in this one would see: device requests are never cached.
    fn write_generation(&self) -> Option<u64> {
        None
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    super::url::redact_password(url)
}

/// Runs `f` in a write transaction (holding the store's write lock) and
/// commits it. Checks made inside `f` therefore hold when the write lands.
fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>, DateTime<Utc>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx, Utc::now())?;
    tx.commit()?;
    Ok(out)
}

impl From<db::Error> for StoreError {
    fn from(err: db::Error) -> Self {
        StoreError::backend(err)
    }
}
