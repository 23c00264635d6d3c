//! The embedded store: one SQLite file in the data directory.
//!
//! One writing connection behind a mutex serialises every write and every
//! read-check-write sequence (they run in its transactions), which SQLite
//! allows only one of at a time anyway and which makes them trivially
//! race-free. Plain reads — the read every device request starts with
//! (`device_request`) and the admin API's gets and lists — run on a
//! small pool of read-only connections instead ([`SqliteStore::call_read`]),
//! each in one read transaction (one snapshot): with WAL they proceed
//! while the writer commits, so check-ins and Terraform's refreshes do not
//! queue behind group-committed check-ins or a rollout's batches, and a
//! long read (a dynamic group's count over a large fleet) holds one reader,
//! not the writer. WAL also keeps readers in *other* processes (the
//! `sqlite3` shell, backups) from blocking us.

#[path = "../sql/audit.rs"]
mod audit;
#[path = "../sql/compliance.rs"]
mod compliance;
mod db;
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

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::{SqliteLocation, StoreError};

/// The store type the modules shared with PostgreSQL (`../sql/`) implement
/// the store traits for.
type Backend = SqliteStore;

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections for [`SqliteStore::call_read`]; none for an
    /// in-memory database (a second connection would be another database).
    readers: Arc<[Arc<Mutex<Connection>>]>,
    /// Which reader [`SqliteStore::reader`] waits for when none is idle.
    next_reader: Arc<AtomicUsize>,
    /// Moves after every call on the writer that changed a row, except
    /// [`SqliteStore::call_reported`]: see
    /// [`crate::store::DeviceApiStore::request_generation`].
    generation: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens or creates the database and migrates it to the latest schema.
    pub async fn open(location: SqliteLocation) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&location))
            .await
            .context("store open task panicked")?
    }

    /// [`SqliteStore::open`] for callers outside a Tokio runtime.
    pub fn open_blocking(location: &SqliteLocation) -> anyhow::Result<Self> {
        let mut conn = match location {
            SqliteLocation::File(path) => open_file(path)?,
            SqliteLocation::Memory => Connection::open_in_memory()?,
        };
        configure(&conn)?;
        // The writer's page cache (SQLite's default is 2 MiB): every batch
        // of a large rollout's transitions touches its rows and their
        // pending and deadline indexes (see BENCHMARKS.md). Pages are allocated
        // only as they are used.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let version = migrations::migrate(&mut conn).context("migrating the database schema")?;
        tracing::debug!(schema_version = version, "sqlite store ready");
        let readers = match location {
            SqliteLocation::File(path) => (0..READERS)
                .map(|_| {
                    let reader = open_file(path)?;
                    configure(&reader)?;
                    reader.pragma_update(None, "query_only", "ON")?;
                    reader.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                    Ok(Arc::new(Mutex::new(reader)))
                })
                .collect::<anyhow::Result<_>>()?,
            SqliteLocation::Memory => Vec::new(),
        };
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A reader connection: the first idle one in order, so that the first
    /// reader takes the steady traffic with a warm page cache and the
    /// others only what arrives while it is busy; when none is idle, each
    /// in turn (its caller then waits for it). `None` without readers.
    fn reader(&self) -> Option<&Arc<Mutex<Connection>>> {
        if self.readers.is_empty() {
            return None;
        }
        let idle = self.readers.iter().find(|r| r.try_lock().is_ok());
        Some(idle.unwrap_or_else(|| {
            let next = self.next_reader.fetch_add(1, Ordering::Relaxed);
            &self.readers[next % self.readers.len()]
        }))
    }

    /// The rollouts the engine has work for (not finished, or finished
    /// with devices in flight), in id order: all of them, this process being
    /// the database's only user.
    async fn engine_share(&self) -> Result<Vec<String>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM rollouts
                  WHERE engine_cleaned_at IS NULL OR count_in_progress > 0
                  ORDER BY id",
            )?;
            let ids = stmt.query_map([], |r| r.get(0))?;
            Ok(ids.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Runs `f` with the connection on Tokio's blocking pool. When `f`
    /// changed a row (committed or not), the write generation moves
    /// before the caller gets the answer.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let generation = Arc::clone(&self.generation);
        on_blocking_pool(&self.conn, move |conn| {
            let before = conn.total_changes();
            let out = f(conn);
            if conn.total_changes() != before {
                generation.fetch_add(1, Ordering::SeqCst);
            }
            out
        })
        .await
    }

    /// [`SqliteStore::call`] for writes of device-reported state only
    /// (check-ins), which leave the write generation where it is.
    async fn call_reported<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        on_blocking_pool(&self.conn, f).await
    }

    /// This process is the database's only writer, so a counter it keeps
    /// itself sees every write.
    fn write_generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::SeqCst))
    }

    /// Runs the read-only `f` in one read transaction (one snapshot, one
    /// lock) on a reader connection, or through [`SqliteStore::call`]
    /// when there is none.
    async fn call_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(reader) = self.reader() else {
            return self.call(f).await;
        };
        on_blocking_pool(reader, |conn| {
            // A panic inside an earlier `f` may have left its read
            // transaction open.
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK")?;
            }
            conn.execute_batch("BEGIN DEFERRED")?;
            let out = f(conn);
            conn.execute_batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            out
        })
        .await
    }
}

/// Runs `f` with `conn` locked, on Tokio's blocking pool.
async fn on_blocking_pool<T, F>(conn: &Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        // A panic while holding the lock cannot leave a half-applied
        // write behind (an unfinished transaction rolls back when
        // dropped), so a poisoned lock is safe to keep using.
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(StoreError::backend)?
}

fn open_file(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating database directory {}", dir.display()))?;
    }
    Connection::open(path).with_context(|| format!("opening SQLite database {}", path.display()))
}

/// Page cache of the writing connection, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Read-only connections: one can serve device requests while another
/// runs a long admin read.
const READERS: usize = 2;
/// Page cache of each reader, in KiB (allocated only as it is used).
const READER_CACHE_KIB: i64 = 16 * 1024;

/// Connection settings, applied on every open.
fn configure(conn: &Connection) -> anyhow::Result<()> {
    // Another process holding the write lock briefly should delay us, not
    // fail the request.
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    // In-memory databases report "memory"; anything else means WAL failed.
    if mode != "wal" && mode != "memory" {
        anyhow::bail!("could not enable WAL mode on the SQLite database (journal_mode={mode})");
    }
    // With WAL, NORMAL is durable against application crashes and only
    // loses the last commits on power loss; FULL halves write throughput.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Runs `f` in an immediate (write-locking) transaction and commits it.
/// Checks made inside `f` therefore hold when the write lands.
fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>, DateTime<Utc>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx, Utc::now())?;
    tx.commit()?;
    Ok(out)
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::backend(err)
    }
}
