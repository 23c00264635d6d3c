//! The store suites run once per backend: each test body is a function of
//! a [`TestDb`], instantiated for SQLite and for PostgreSQL by
//! [`store_tests!`].

#![allow(dead_code)]

use std::sync::Arc;

use fleetd::store::postgres::PgStore;
use fleetd::store::sqlite::SqliteStore;
use fleetd::store::{SqliteLocation, Store};

#[path = "../common/pg.rs"]
pub mod pg;

/// One empty database of one backend; [`TestDb::open`] may be called again
/// to reopen it (state must survive).
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(pg::PgDatabase),
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None` outside CI when PostgreSQL is unreachable (the test skips).
    pub async fn postgres() -> Option<TestDb> {
        pg::PgDatabase::create().await.map(TestDb::Postgres)
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            TestDb::Sqlite(dir) => {
                let location = SqliteLocation::File(dir.path().join("fleetd.db"));
                Arc::new(SqliteStore::open(location).await.unwrap())
            }
            TestDb::Postgres(db) => Arc::new(PgStore::open(&db.url).await.unwrap()),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }
}

/// `store_tests!(a, b)` runs `async fn a(db: TestDb)` and `b` once on
/// SQLite (`sqlite::a`) and once on PostgreSQL (`postgres::a`).
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store_common::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::store_common::TestDb::postgres().await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}
