//! Device groups through the `Store` trait, on both backends: a SQLite
//! file and a fresh PostgreSQL database.

mod store_common;

use fleetd::store::postgres::PgStore;
use store_common::TestDb;

use std::collections::BTreeMap;

use fleetd::domain::rollout_engine::{Action, DeviceState};
use fleetd::store::engine::Applied;
use fleetd::store::{Actor, AuditAction, DeviceGroupSpec, ObjectKind, StoreError};

fn spec(name: &str, parent: Option<&str>) -> DeviceGroupSpec {
    DeviceGroupSpec {
        name: name.to_owned(),
        description: String::new(),
        parent_id: parent.map(str::to_owned),
        tags: BTreeMap::new(),
        ..Default::default()
    }
}

async fn versions_start_at_one_and_increment(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();

    let mut s = spec("prod", None);
    s.tags.insert("env".into(), "prod".into());
    let g = store.create_device_group(&actor, s.clone()).await.unwrap();
    assert_eq!(
        (g.version, g.path.as_str(), g.tags.clone()),
        (1, "prod", s.tags.clone())
    );
    assert_eq!(g.created_at, g.updated_at);
    assert_eq!(store.get_device_group(&g.id).await.unwrap(), g);

    s.description = "Production".into();
    let g2 = store
        .update_device_group(&actor, &g.id, 1, s.clone())
        .await
        .unwrap();
    assert_eq!(g2.version, 2);
    assert_eq!(g2.description, "Production");
    assert_eq!(g2.created_at, g.created_at);
    let g3 = store
        .update_device_group(&actor, &g.id, 2, s.clone())
        .await
        .unwrap();
    assert_eq!(g3.version, 3);

    match store.update_device_group(&actor, &g.id, 2, s).await {
        Err(StoreError::VersionConflict {
            expected: 2,
            current: 3,
            kind: ObjectKind::DeviceGroup,
            id,
        }) => {
            assert_eq!(id, g.id)
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    match store.delete_device_group(&actor, &g.id, Some(1)).await {
        Err(StoreError::VersionConflict {
            expected: 1,
            current: 3,
            ..
        }) => {}
        other => panic!("expected a version conflict, got {other:?}"),
    }
    store
        .delete_device_group(&actor, &g.id, Some(3))
        .await
        .unwrap();
    assert!(matches!(
        store.get_device_group(&g.id).await,
        Err(StoreError::NotFound {
            kind: ObjectKind::DeviceGroup,
            ..
        })
    ));
    assert!(matches!(
        store.delete_device_group(&actor, &g.id, None).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn every_write_is_audited(db: TestDb) {
    let store = db.open().await;
    let alice = Actor("alice".into());

    let g = store
        .create_device_group(&alice, spec("a", None))
        .await
        .unwrap();
    store
        .update_device_group(&Actor::admin(), &g.id, 1, spec("b", None))
        .await
        .unwrap();
    // A refused write leaves no trace.
    assert!(store
        .update_device_group(&alice, &g.id, 1, spec("c", None))
        .await
        .is_err());
    store
        .delete_device_group(&alice, &g.id, Some(2))
        .await
        .unwrap();

    let events = store
        .audit_events(ObjectKind::DeviceGroup, &g.id)
        .await
        .unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action,
                e.before_version,
                e.after_version,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", AuditAction::Create, None, Some(1)),
            ("admin", AuditAction::Update, Some(1), Some(2)),
            ("alice", AuditAction::Delete, Some(2), None),
        ]
    );
    assert!(events
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
    assert!(events
        .iter()
        .all(|e| e.object_id == g.id && e.object_kind == ObjectKind::DeviceGroup));
}

async fn hierarchy_rules(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();

    let a = store
        .create_device_group(&actor, spec("a", None))
        .await
        .unwrap();
    let b = store
        .create_device_group(&actor, spec("b", Some(&a.id)))
        .await
        .unwrap();
    let c = store
        .create_device_group(&actor, spec("c", Some(&b.id)))
        .await
        .unwrap();
    assert_eq!(c.path, "a/b/c");

    // Missing parent.
    match store
        .create_device_group(&actor, spec("x", Some("missing")))
        .await
    {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.field, "parent_id");
            assert!(e.message.contains("\"missing\""), "{e}")
        }
        other => panic!("expected an invalid parent, got {other:?}"),
    }
    // Cycles, direct and indirect.
    for parent in [&a.id, &c.id] {
        match store
            .update_device_group(&actor, &a.id, 1, spec("a", Some(parent)))
            .await
        {
            Err(StoreError::Invalid(e)) if e.field == "parent_id" => {
                assert!(
                    e.message.contains("cycle") || e.message.contains("own parent"),
                    "{e}"
                )
            }
            other => panic!("expected a cycle error, got {other:?}"),
        }
    }
    // Sibling names: taken at the same level, free elsewhere.
    assert!(matches!(
        store
            .create_device_group(&actor, spec("b", Some(&a.id)))
            .await,
        Err(StoreError::Conflict {
            field: Some("name"),
            ..
        })
    ));
    assert!(matches!(
        store.create_device_group(&actor, spec("a", None)).await,
        Err(StoreError::Conflict {
            field: Some("name"),
            ..
        })
    ));
    store
        .create_device_group(&actor, spec("b", None))
        .await
        .unwrap();
    // Renaming a group to its own name is not a clash with itself.
    store
        .update_device_group(&actor, &b.id, 1, spec("b", Some(&a.id)))
        .await
        .unwrap();

    // Children block deletion; leaves go first.
    assert!(matches!(
        store.delete_device_group(&actor, &b.id, None).await,
        Err(StoreError::Conflict { field: None, .. })
    ));
    store
        .delete_device_group(&actor, &c.id, None)
        .await
        .unwrap();
    store
        .delete_device_group(&actor, &b.id, None)
        .await
        .unwrap();
    store
        .delete_device_group(&actor, &a.id, None)
        .await
        .unwrap();
}

async fn lists_by_id_with_a_cursor(db: TestDb) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store
                .create_device_group(&Actor::admin(), spec(&format!("g{i}"), None))
                .await
                .unwrap()
                .id,
        );
    }
    let first = store.list_device_groups(None, 2).await.unwrap();
    let rest = store
        .list_device_groups(Some(&first[1].id), 10)
        .await
        .unwrap();
    let all: Vec<_> = first.iter().chain(&rest).map(|g| g.id.clone()).collect();
    assert_eq!(all, ids, "UUIDv7 ids list in creation order");
    assert!(store
        .list_device_groups(Some(&ids[4]), 10)
        .await
        .unwrap()
        .is_empty());
}

/// The schema before `rollout_devices` was compacted (SQLite 1–9,
/// PostgreSQL 1–4), as those migrations wrote it.
const SQLITE_BEFORE_COMPACT: [&str; 9] = [
    include_str!("../src/store/sqlite/migrations/0001_device_groups.sql"),
    include_str!("../src/store/sqlite/migrations/0002_fleet.sql"),
    include_str!("../src/store/sqlite/migrations/0003_pki.sql"),
    include_str!("../src/store/sqlite/migrations/0004_engine.sql"),
    include_str!("../src/store/sqlite/migrations/0005_device_api.sql"),
    include_str!("../src/store/sqlite/migrations/0006_enrollment_cn_pattern.sql"),
    include_str!("../src/store/sqlite/migrations/0007_compliance.sql"),
    include_str!("../src/store/sqlite/migrations/0008_view_generation.sql"),
    include_str!("../src/store/sqlite/migrations/0009_rollout_device_index.sql"),
];
const POSTGRES_BEFORE_COMPACT: [&str; 4] = [
    include_str!("../src/store/postgres/migrations/0001_schema.sql"),
    include_str!("../src/store/postgres/migrations/0002_enrollment_cn_pattern_and_compliance.sql"),
    include_str!("../src/store/postgres/migrations/0003_view_generation.sql"),
    include_str!("../src/store/postgres/migrations/0004_rollout_device_index.sql"),
];

/// Rows as the old schema held them: two rollouts (ids `r-b` before `r-a`
/// in creation), device rows with RFC 3339 text times.
const ROWS_BEFORE_COMPACT: &str = "
INSERT INTO firmware (id, product, release_version, hardware, url, sha256, size_bytes, created_at)
VALUES ('fw', 'p', '2.0', '[\"m1\"]', 'https://example.com/fw', 'ab', 1, '2026-12-01T00:00:00.000Z');
INSERT INTO rollouts (id, name, firmware_id, target_group_ids, failure_threshold, device_timeout,
                      max_retries, continuous, state, status, count_targeted, count_pending,
                      count_in_progress, count_succeeded, count_assigned, created_at, updated_at,
                      version)
VALUES ('r-b', 'b', 'fw', '[]', '{\"percent\": 10, \"min_devices\": 1, \"action\": \"pause\"}',
        '1h', 0, 0, 'running', 'running', 3, 1, 1, 1, 2,
        '2026-12-01T00:00:00.000Z', '2026-12-01T00:00:00.000Z', 1),
       ('r-a', 'a', 'fw', '[]', '{\"percent\": 10, \"min_devices\": 1, \"action\": \"pause\"}',
        '1h', 0, 0, 'running', 'running', 1, 1, 0, 0, 0,
        '2026-12-01T00:00:00.000Z', '2026-12-01T00:00:00.000Z', 1);
INSERT INTO rollout_devices (rollout_id, device_id, state, attempt, phase, assigned_at, deadline,
                             delivered_at, previous_firmware_id, rollback_state, reason, updated_at)
VALUES ('r-b', 'd1', 'succeeded', 1, 0, '2026-12-04T20:00:00.123Z', '2026-12-04T21:00:00.123Z',
        '2026-12-04T20:00:01.500Z', 'fw-old', NULL, NULL, '2026-12-04T20:05:00.000Z'),
       ('r-b', 'd2', 'in_progress', 2, 0, '2026-12-04T20:00:00.123Z', '2026-12-04T21:00:00.123Z',
        NULL, NULL, NULL, 'attempt 1 timed out; retrying', '2026-12-04T20:30:00.999Z'),
       ('r-b', 'd3', 'pending', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        '2026-12-04T19:00:00.000Z'),
       ('r-a', 'd1', 'pending', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        '2026-12-04T19:00:00.000Z');
";

/// A database holding rollout device rows in the old layout (text rollout
/// ids and times) opens with every row, state and time intact, and the
/// engine's reads work on them.
async fn rollout_device_rows_survive_the_compact_migration(db: TestDb) {
    match &db {
        TestDb::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.path().join("fleetd.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,
                     name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT;",
            )
            .unwrap();
            for (i, sql) in SQLITE_BEFORE_COMPACT.iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_version VALUES (?1, 'old', '2026-12-01T00:00:00Z')",
                    [i as i64 + 1],
                )
                .unwrap();
            }
            conn.execute_batch(ROWS_BEFORE_COMPACT).unwrap();
        }
        TestDb::Postgres(pg) => {
            let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(
                    "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY,
                         name TEXT NOT NULL, applied_at TEXT NOT NULL)",
                )
                .await
                .unwrap();
            for (i, sql) in POSTGRES_BEFORE_COMPACT.iter().enumerate() {
                client.batch_execute(sql).await.unwrap();
                client
                    .execute(
                        "INSERT INTO schema_migrations VALUES ($1, 'old', '2026-12-01T00:00:00Z')",
                        &[&(i as i64 + 1)],
                    )
                    .await
                    .unwrap();
            }
            client.batch_execute(ROWS_BEFORE_COMPACT).await.unwrap();
        }
    }
    let store = db.open().await;
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();

    let d1 = store.get_rollout_device("r-b", "d1").await.unwrap();
    assert_eq!(d1.rollout_id, "r-b");
    assert_eq!(d1.state, DeviceState::Succeeded);
    assert_eq!((d1.attempt, d1.phase), (1, Some(0)));
    assert_eq!(d1.assigned_at, Some(at("2026-12-04T20:00:00.123Z")));
    assert_eq!(d1.deadline, Some(at("2026-12-04T21:00:00.123Z")));
    assert_eq!(d1.delivered_at, Some(at("2026-12-04T20:00:01.500Z")));
    assert_eq!(d1.updated_at, at("2026-12-04T20:05:00.000Z"));
    assert_eq!(d1.previous_firmware_id.as_deref(), Some("fw-old"));

    let d2 = store.get_rollout_device("r-b", "d2").await.unwrap();
    assert_eq!((d2.state, d2.attempt), (DeviceState::InProgress, 2));
    assert_eq!(d2.delivered_at, None);
    assert_eq!(d2.updated_at, at("2026-12-04T20:30:00.999Z"));
    assert_eq!(d2.reason.as_deref(), Some("attempt 1 timed out; retrying"));

    let ids = |rows: Vec<fleetd::store::engine::RolloutDevice>| -> Vec<String> {
        rows.into_iter().map(|d| d.device_id).collect()
    };
    let all = store
        .list_rollout_devices("r-b", None, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all), ["d1", "d2", "d3"]);
    let pending = store
        .list_rollout_devices("r-b", Some(DeviceState::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(pending), ["d3"]);
    let other = store.get_rollout_device("r-a", "d1").await.unwrap();
    assert_eq!(
        (other.rollout_id.as_str(), other.state),
        ("r-a", DeviceState::Pending)
    );
    for id in ["r-a", "r-b"] {
        let (stored, scanned) = store.recount_rollout(id).await.unwrap();
        assert_eq!(stored, scanned, "{id}");
    }
    // The pending row is in the engine's assignment queue (above the
    // cursor the migration to the queue cursor starts empty): assigning
    // reaches it, and cancels it, as its device does not exist here.
    let now = chrono::Utc::now();
    let current = store.engine_rollout("r-b", now).await.unwrap();
    let assign = Action::Assign {
        count: 10,
        phase: 0,
        deadline: now + chrono::Duration::hours(1),
    };
    assert_eq!(
        store
            .apply_engine_action("r-b", current.guard(), assign, now)
            .await
            .unwrap(),
        Applied::Done { devices: 1 }
    );
    let d3 = store.get_rollout_device("r-b", "d3").await.unwrap();
    assert_eq!(
        (d3.state, d3.reason.as_deref()),
        (DeviceState::Cancelled, Some("device deleted"))
    );
    let (stored, scanned) = store.recount_rollout("r-b").await.unwrap();
    assert_eq!(stored, scanned);
    assert_eq!(stored.pending, 0);
    // Deleting a rollout still takes its device rows with it.
    store
        .delete_rollout(&Actor::admin(), "r-a", None)
        .await
        .unwrap();
    assert!(matches!(
        store.get_rollout_device("r-a", "d1").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.get_rollout_device("r-b", "d3").await.unwrap().state,
        DeviceState::Cancelled
    );
}

async fn the_database_is_migrated_and_persistent(db: TestDb) {
    let id = {
        let store = db.open().await;
        store
            .create_device_group(&Actor::admin(), spec("keep", None))
            .await
            .unwrap()
            .id
    };
    let store = db.open().await;
    assert_eq!(store.get_device_group(&id).await.unwrap().name, "keep");
    drop(store);

    match &db {
        TestDb::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.path().join("fleetd.db")).unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let versions: Vec<i64> = conn
                .prepare("SELECT version FROM schema_version ORDER BY version")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
            // 0013's comparisons accept exactly the states the lists did
            // (no rollout row: its foreign key is not what is tested).
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
            for (state, rollback, ok) in [
                ("cancelled", Some("done"), true),
                ("rolled_back", Some("failed"), true),
                ("pending", None, true),
                ("done", None, false),
                ("Pending", None, false),
                ("failed", Some("cancelled"), false),
            ] {
                let insert = conn.execute(
                    "INSERT INTO rollout_devices (rollout, device_id, state, rollback_state, updated_at)
                     VALUES (999, 'check', ?1, ?2, 0)",
                    rusqlite::params![state, rollback],
                );
                match insert {
                    Ok(_) => assert!(ok, "{state}/{rollback:?} accepted"),
                    Err(e) => {
                        assert!(!ok, "{state}/{rollback:?} refused: {e}");
                        assert!(e.to_string().contains("CHECK constraint failed"), "{e}");
                    }
                }
                conn.execute("DELETE FROM rollout_devices WHERE rollout = 999", [])
                    .unwrap();
            }
        }
        TestDb::Postgres(pg) => {
            let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let versions: Vec<i64> = client
                .query(
                    "SELECT version FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
        }
    }
}

/// Replicas starting together on an empty database: every one opens it,
/// the schema is migrated exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_starting_together_migrate_once() {
    let Some(TestDb::Postgres(pg)) = TestDb::postgres().await else {
        return;
    };
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = pg.url.clone();
            tokio::spawn(async move { PgStore::open(&url).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await
            .unwrap()
            .expect("every replica opens the database");
    }
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let n: i64 = client
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 7);
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_with_the_password_redacted() {
    let url = fleetd::store::DatabaseUrl::parse("postgres://fleet:pw@127.0.0.1:1/fleet").unwrap();
    let err = format!("{:#}", fleetd::store::open(&url).await.err().unwrap());
    assert!(
        err.contains("postgres://fleet:***@127.0.0.1:1/fleet"),
        "{err}"
    );
    assert!(!err.contains(":pw@"), "password is redacted: {err}");
}

async fn moves_keep_the_whole_subtree_within_the_depth_limit(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let max = fleetd::domain::group::MAX_HIERARCHY_DEPTH;

    // A chain max - 1 deep: one more level fits, two do not.
    let mut deep = store
        .create_device_group(&actor, spec("l1", None))
        .await
        .unwrap();
    for depth in 2..max {
        deep = store
            .create_device_group(&actor, spec(&format!("l{depth}"), Some(&deep.id)))
            .await
            .unwrap();
    }
    let top = store
        .create_device_group(&actor, spec("top", None))
        .await
        .unwrap();
    let leaf = store
        .create_device_group(&actor, spec("leaf", Some(&top.id)))
        .await
        .unwrap();

    // `top` has a child, so moving it under `deep` would nest `leaf` at max + 1.
    match store
        .update_device_group(&actor, &top.id, 1, spec("top", Some(&deep.id)))
        .await
    {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.field, "parent_id");
            assert!(e.message.contains(&format!("depth {}", max + 1)), "{e}");
        }
        other => panic!("expected a depth error, got {other:?}"),
    }
    // The leaf alone fits.
    let moved = store
        .update_device_group(&actor, &leaf.id, 1, spec("leaf", Some(&deep.id)))
        .await
        .unwrap();
    assert_eq!(moved.path.split('/').count(), max);
}

/// Two replicas (two stores on one database) update one group with the
/// same expected version at once: exactly one write wins, every other gets
/// a version conflict naming both versions, and the audit trail holds
/// exactly the winning update.
async fn concurrent_writers_through_two_stores_lose_no_update(db: TestDb) {
    let (a, b) = (db.open().await, db.open().await);
    let actor = Actor::admin();
    let g = a
        .create_device_group(&actor, spec("shared", None))
        .await
        .unwrap();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (id, actor) = (g.id.clone(), actor.clone());
            tokio::spawn(async move {
                let mut s = spec("shared", None);
                s.description = format!("writer {i}");
                store.update_device_group(&actor, &id, 1, s).await
            })
        })
        .collect();
    let mut won = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            Ok(g) => won.push(g),
            Err(StoreError::VersionConflict {
                expected: 1,
                current: 2,
                ..
            }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer wins");
    let stored = b.get_device_group(&g.id).await.unwrap();
    assert_eq!(
        (stored.version, &stored.description),
        (2, &won[0].description)
    );
    let updates = a
        .audit_events(ObjectKind::DeviceGroup, &g.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == AuditAction::Update)
        .count();
    assert_eq!(updates, 1);
}

store_tests!(
    concurrent_writers_through_two_stores_lose_no_update,
    versions_start_at_one_and_increment,
    every_write_is_audited,
    hierarchy_rules,
    lists_by_id_with_a_cursor,
    the_database_is_migrated_and_persistent,
    rollout_device_rows_survive_the_compact_migration,
    moves_keep_the_whole_subtree_within_the_depth_limit,
);
