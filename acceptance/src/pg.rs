//! Fresh PostgreSQL databases for fleetd under test.
//!
//! A [`PgDatabase`] is a new database `fleetd_acc_<time>_<random>` created
//! through a maintenance database (`FLEETFORM_ACC_POSTGRES_URL`, by
//! default `postgres://postgres@127.0.0.1:5432/test`) and dropped with the
//! value. `FLEETFORM_ACC_DATABASE=postgres` runs every [`crate::Fleetd`]
//! of the suite on one; `Fleetd::start_postgres` always does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};

const DEFAULT_MAINTENANCE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether `FLEETFORM_ACC_DATABASE=postgres` asks for the whole suite to
/// run on PostgreSQL.
pub fn suite_on_postgres() -> bool {
    std::env::var("FLEETFORM_ACC_DATABASE").is_ok_and(|v| v == "postgres")
}

pub fn maintenance_url() -> String {
    std::env::var("FLEETFORM_ACC_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_MAINTENANCE_URL.into())
}

/// A database that exists for the lifetime of this value.
pub struct PgDatabase {
    pub name: String,
    /// `postgres://…/<name>`, for `fleetd serve --database-url`.
    pub url: String,
    maintenance: String,
}

impl PgDatabase {
    /// Creates a fresh, empty database. Fails, saying where it looked, when
    /// PostgreSQL cannot be reached.
    pub fn create() -> Result<Self> {
        let maintenance = maintenance_url();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let name = format!("fleetd_acc_{now}_{}", uuid::Uuid::new_v4().simple());
        let create = name.clone();
        run(&maintenance, move |client| {
            let name = create;
            async move {
                sweep_stale(&client, now).await;
                client
                    .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .with_context(|| format!("creating database {name}"))
            }
        })
        .with_context(|| {
            format!(
                "PostgreSQL at {maintenance} is needed to run fleetd on PostgreSQL \
                 (FLEETFORM_ACC_POSTGRES_URL names another maintenance database)"
            )
        })?;
        Ok(PgDatabase {
            url: replace_database(&maintenance, &name),
            name,
            maintenance,
        })
    }

    /// Runs SQL on this database (for checks a test makes directly).
    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        let sql = sql.to_owned();
        run(&self.url, |client| async move {
            let row = client.query_one(&sql, &[]).await?;
            Ok(row.get::<_, i64>(0))
        })
    }
}

impl PgDatabase {
    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str) -> Result<u64> {
        let sql = sql.to_owned();
        run(&self.url, |client| async move {
            Ok(client.execute(&sql, &[]).await?)
        })
    }

    /// The text in the first column of the first row of `sql`.
    pub fn query_text(&self, sql: &str) -> Result<String> {
        let sql = sql.to_owned();
        run(&self.url, |client| async move {
            let row = client.query_one(&sql, &[]).await?;
            Ok(row.get::<_, String>(0))
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = run(&self.maintenance, |client| async move {
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            Ok(())
        });
    }
}

/// Runs `f` with a client connected to `url`, on a runtime of its own (in
/// a thread of its own, so callers may be inside another runtime).
fn run<T, F, Fut>(url: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (client, connection) = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_postgres::connect(&url, tokio_postgres::NoTls),
            )
            .await
            .map_err(|_| anyhow!("timed out connecting"))??;
            tokio::spawn(connection);
            f(client).await
        })
    })
    .join()
    .map_err(|_| anyhow!("PostgreSQL helper thread panicked"))?
}

/// Drops databases left by runs that were killed before their `Drop`:
/// those created over six hours ago.
async fn sweep_stale(client: &tokio_postgres::Client, now: u64) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'fleetd\\_acc\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .strip_prefix("fleetd_acc_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t + 6 * 3600 < now) {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// `postgres://u@h:p/test?x` with the database replaced by `name`.
fn replace_database(url: &str, name: &str) -> String {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
