//! Schema migrations, embedded in the binary.
//!
//! Each migration is a numbered SQL file applied once, in order, inside
//! its own transaction together with the `schema_version` row that records
//! it; a crash mid-migration leaves the database at the previous version.
//! Migrations are append-only: never edit one that has shipped, add the
//! next number instead.

use anyhow::{bail, Context};
use rusqlite::{Connection, TransactionBehavior};

pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "device_groups",
        sql: include_str!("migrations/0001_device_groups.sql"),
    },
    Migration {
        version: 2,
        name: "fleet",
        sql: include_str!("migrations/0002_fleet.sql"),
    },
    Migration {
        version: 3,
        name: "pki",
        sql: include_str!("migrations/0003_pki.sql"),
    },
    Migration {
        version: 4,
        name: "engine",
        sql: include_str!("migrations/0004_engine.sql"),
    },
    Migration {
        version: 5,
        name: "device_api",
        sql: include_str!("migrations/0005_device_api.sql"),
    },
    Migration {
        version: 6,
        name: "enrollment_cn_pattern",
        sql: include_str!("migrations/0006_enrollment_cn_pattern.sql"),
    },
    Migration {
        version: 7,
        name: "compliance",
        sql: include_str!("migrations/0007_compliance.sql"),
    },
    Migration {
        version: 8,
        name: "view_generation",
        sql: include_str!("migrations/0008_view_generation.sql"),
    },
    Migration {
        version: 9,
        name: "rollout_device_index",
        sql: include_str!("migrations/0009_rollout_device_index.sql"),
    },
    Migration {
        version: 10,
        name: "compact_rollout_devices",
        sql: include_str!("migrations/0010_compact_rollout_devices.sql"),
    },
    Migration {
        version: 11,
        name: "assignment_cursor",
        sql: include_str!("migrations/0011_assignment_cursor.sql"),
    },
    Migration {
        version: 12,
        name: "assignment_waves",
        sql: include_str!("migrations/0012_assignment_waves.sql"),
    },
    Migration {
        version: 13,
        name: "rollout_device_checks",
        sql: include_str!("migrations/0013_rollout_device_checks.sql"),
    },
];

/// The schema version this build writes.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database up to [`latest_version`]. Refuses a database that
/// a newer fleetd has already migrated further: running old code on a
/// newer schema could silently lose data.
pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<i64> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER NOT NULL PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at TEXT    NOT NULL
         ) STRICT;",
    )
    .context("creating schema_version table")?;

    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        bail!(
            "database schema is at version {current}, newer than the {latest} this fleetd \
             understands; upgrade fleetd"
        );
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-check under the write lock: another process may have applied it.
        if current_version(&tx)? >= m.version {
            continue;
        }
        tx.execute_batch(m.sql)
            .with_context(|| format!("applying migration {} ({})", m.version, m.name))?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, super::time::now_text()],
        )?;
        tx.commit()?;
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
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
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

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', 'x')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("version 999"), "{err}");
    }
}
