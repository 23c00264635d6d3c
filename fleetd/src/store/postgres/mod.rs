//! The replicated store: fleetd's state in a PostgreSQL database that
//! several fleetd processes (replicas) share.
//!
//! The queries, checks and error mapping are those of the SQLite store,
//! module for module (`device_groups`, `devices`, `engine`, …), run
//! through `db`, a thin synchronous layer over a `deadpool` pool of
//! `tokio-postgres` connections. Behaviour is therefore identical by
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

mod audit;
mod compliance;
pub(crate) mod db;
mod device_api;
mod device_groups;
mod devices;
mod engine;
mod firmware;
mod fleet;
mod leases;
mod membership;
mod migrations;
mod pki;
mod policies;
mod rollouts;
mod time;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use db::{Connection, Transaction, TransactionBehavior};

use super::{Actor, AuditEvent, DeviceGroup, DeviceGroupSpec, GroupStore, ObjectKind, StoreError};

/// Connections each fleetd process keeps open at most.
const POOL_SIZE: usize = 16;

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

#[async_trait]
impl GroupStore for PgStore {
    async fn create_device_group(
        &self,
        actor: &Actor,
        spec: DeviceGroupSpec,
    ) -> Result<DeviceGroup, StoreError> {
        let actor = actor.clone();
        self.call(move |conn| {
            write(conn, |tx, now| {
                device_groups::create(tx, &actor, now, &spec)
            })
        })
        .await
    }

    async fn get_device_group(&self, id: &str) -> Result<DeviceGroup, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| device_groups::get(conn, &id)).await
    }

    async fn list_device_groups(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceGroup>, StoreError> {
        let after = after.map(str::to_owned);
        let limit = limit.min(super::MAX_PAGE_SIZE + 1);
        self.call(move |conn| device_groups::list(conn, after.as_deref(), limit))
            .await
    }

    async fn update_device_group(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: DeviceGroupSpec,
    ) -> Result<DeviceGroup, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                device_groups::update(tx, &actor, now, &id, expected_version, &spec)
            })
        })
        .await
    }

    async fn delete_device_group(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.call(move |conn| {
            write(conn, |tx, now| {
                device_groups::delete(tx, &actor, now, &id, expected_version)
            })
        })
        .await
    }

    async fn audit_events(
        &self,
        kind: ObjectKind,
        id: &str,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| Ok(audit::for_object(conn, kind, &id)?))
            .await
    }
}
