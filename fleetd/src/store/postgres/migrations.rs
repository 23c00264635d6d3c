//! Schema migrations of the PostgreSQL store, embedded in the binary.
//!
//! Each migration is a numbered SQL file applied once, in order, inside
//! one transaction together with the `schema_migrations` row that records
//! it. The transaction first takes a transaction-scoped advisory lock, so
//! replicas starting together apply each migration exactly once: the
//! others wait for the lock, then find the migration recorded. Migrations
//! are append-only: never edit one that has shipped, add the next number.

use anyhow::{bail, Context};

use super::db::{Connection, Value};

/// Advisory lock held while migrating (distinct from the write lock).
const MIGRATION_LOCK_KEY: i64 = 0x666c_6565_7464_0002;

pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "enrollment_cn_pattern_and_compliance",
        sql: include_str!("migrations/0002_enrollment_cn_pattern_and_compliance.sql"),
    },
    Migration {
        version: 3,
        name: "view_generation",
        sql: include_str!("migrations/0003_view_generation.sql"),
    },
    Migration {
        version: 4,
        name: "rollout_device_index",
        sql: include_str!("migrations/0004_rollout_device_index.sql"),
    },
    Migration {
        version: 5,
        name: "compact_rollout_devices",
        sql: include_str!("migrations/0005_compact_rollout_devices.sql"),
    },
    Migration {
        version: 6,
        name: "assignment_cursor",
        sql: include_str!("migrations/0006_assignment_cursor.sql"),
    },
    Migration {
        version: 7,
        name: "assignment_waves",
        sql: include_str!("migrations/0007_assignment_waves.sql"),
    },
];

/// The schema version this build writes.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database up to [`latest_version`]. Refuses a database that
/// a newer fleetd has already migrated further.
pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<i64> {
    conn.execute_batch("BEGIN")?;
    let out = migrate_locked(conn);
    match &out {
        Ok(_) => conn.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    out
}

fn migrate_locked(conn: &Connection) -> anyhow::Result<i64> {
    conn.query_row(
        "SELECT pg_advisory_xact_lock(?1)",
        [MIGRATION_LOCK_KEY],
        |_| Ok(()),
    )
    .context("taking the migration lock")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT NOT NULL PRIMARY KEY,
             name       TEXT   NOT NULL,
             applied_at TEXT   NOT NULL
         )",
    )
    .context("creating the schema_migrations table")?;
    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        bail!(
            "database schema is at version {current}, newer than the {latest} this fleetd \
             understands; upgrade fleetd"
        );
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        conn.execute_batch(m.sql)
            .with_context(|| format!("applying migration {} ({})", m.version, m.name))?;
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            [
                Value::Integer(m.version),
                Value::Text(m.name.to_owned()),
                Value::Text(super::time::now_text()),
            ],
        )?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    current_version(conn)
}

fn current_version(conn: &Connection) -> anyhow::Result<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
        }
    }
}
