//! The SQLite store through the `Store` trait, on a real file.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetd::store::sqlite::SqliteStore;
use fleetd::store::{
    Actor, AuditAction, DeviceGroupSpec, ObjectKind, SqliteLocation, Store, StoreError,
};

fn spec(name: &str, parent: Option<&str>) -> DeviceGroupSpec {
    DeviceGroupSpec {
        name: name.to_owned(),
        description: String::new(),
        parent_id: parent.map(str::to_owned),
        tags: BTreeMap::new(),
        ..Default::default()
    }
}

async fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let location = SqliteLocation::File(dir.path().join("fleetd.db"));
    Arc::new(SqliteStore::open(location).await.unwrap())
}

#[tokio::test]
async fn versions_start_at_one_and_increment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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

#[tokio::test]
async fn every_write_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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

#[tokio::test]
async fn hierarchy_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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

#[tokio::test]
async fn lists_by_id_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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

#[tokio::test]
async fn the_file_is_wal_migrated_and_persistent() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open(&dir).await;
        store
            .create_device_group(&Actor::admin(), spec("keep", None))
            .await
            .unwrap()
            .id
    };
    let store = open(&dir).await;
    assert_eq!(store.get_device_group(&id).await.unwrap().name, "keep");
    drop(store);

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
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn postgres_is_not_supported_yet() {
    let url = fleetd::store::DatabaseUrl::parse("postgres://fleet:pw@db/fleet").unwrap();
    let err = fleetd::store::open(&url).await.err().unwrap().to_string();
    assert!(err.contains("PostgreSQL is not yet supported"), "{err}");
    assert!(
        err.contains("postgres://fleet:***@db/fleet"),
        "password is redacted: {err}"
    );
}

#[tokio::test]
async fn moves_keep_the_whole_subtree_within_the_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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
