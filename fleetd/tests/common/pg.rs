//! Fresh PostgreSQL databases for tests.
//!
//! Each [`PgDatabase`] is a new database `fleetd_test_<random>` created
//! through a maintenance database (by default `test` on 127.0.0.1:5432,
//! or `FLEETD_TEST_POSTGRES_URL`) and dropped when the value is dropped,
//! so tests run in parallel without seeing each other's rows.
//!
//! Where PostgreSQL cannot be reached, a test fails with a message saying
//! so when `CI` is set; elsewhere [`PgDatabase::create`] returns `None`
//! and the caller skips, so a laptop without PostgreSQL can still run the
//! SQLite half of the suites.

#![allow(dead_code)]

use std::time::Duration;

/// Where the maintenance database is, unless `FLEETD_TEST_POSTGRES_URL`
/// says otherwise.
pub const DEFAULT_MAINTENANCE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn maintenance_url() -> String {
    std::env::var("FLEETD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_MAINTENANCE_URL.into())
}

/// A database that exists for the lifetime of this value.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
    maintenance: String,
}

impl PgDatabase {
    /// Creates a fresh database, or returns `None` (outside CI) when
    /// PostgreSQL is unreachable. In CI an unreachable server panics.
    pub async fn create() -> Option<PgDatabase> {
        let maintenance = maintenance_url();
        let client = match connect(&maintenance).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "PostgreSQL is not reachable at {maintenance} ({e}); the PostgreSQL store \
                     tests need it (set FLEETD_TEST_POSTGRES_URL to another maintenance database)"
                );
                if std::env::var_os("CI").is_some() {
                    panic!("{msg}");
                }
                eprintln!("skipping: {msg}");
                return None;
            }
        };
        sweep_stale(&client).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let name = format!(
            "fleetd_test_{now}_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let url = replace_database(&maintenance, &name);
        Some(PgDatabase {
            name,
            url,
            maintenance,
        })
    }

    /// Creates a fresh database; PostgreSQL must be reachable.
    pub async fn require() -> PgDatabase {
        match Self::create().await {
            Some(db) => db,
            None => panic!(
                "PostgreSQL is not reachable at {}; this test needs it",
                maintenance_url()
            ),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (maintenance, name) = (self.maintenance.clone(), self.name.clone());
        // Drop may run inside a runtime; use a thread with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(client) = connect(&maintenance).await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// Drops test databases left behind: those of test processes that have
/// exited (databases kept for a whole process, see [`database_for`], and
/// those of killed runs, which never run `Drop`), and any created over six
/// hours ago. Names are `fleetd_test_<unix time>_<pid>_<random>`.
async fn sweep_stale(client: &tokio_postgres::Client) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'fleetd\\_test\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let mut parts = name.trim_start_matches("fleetd_test_").split('_');
        let created = parts.next().and_then(|t| t.parse::<u64>().ok());
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let exited = pid.is_some_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if exited || created.is_some_and(|t| t + 6 * 3600 < now) {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// Whether `FLEETD_TEST_BACKEND=postgres` asks the API tests to run their
/// fleetd on PostgreSQL.
pub fn backend_is_postgres() -> bool {
    std::env::var("FLEETD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The database of a data directory: created on first use, the same one
/// when a test restarts fleetd on that directory. Kept for the life of
/// the test process.
pub async fn database_for(data_dir: &std::path::Path) -> String {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static DATABASES: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<PgDatabase>>>> =
        OnceLock::new();
    let map = DATABASES.get_or_init(Default::default);
    if let Some(db) = map.lock().unwrap().get(data_dir) {
        return db.url.clone();
    }
    let db = Arc::new(PgDatabase::require().await);
    let url = db.url.clone();
    map.lock().unwrap().insert(data_dir.to_owned(), db);
    url
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| "timed out connecting".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `postgres://u@h:p/test?x` with the database replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
