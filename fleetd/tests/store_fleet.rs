//! The fleet part of the SQLite store through the `Store` trait, on a real
//! file: audit rows, version history pruning, membership and references.

mod store_common;

use store_common::TestDb;

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetd::domain::policy::{Effect, Statement};
use fleetd::domain::query;
use fleetd::store::{
    Actor, AttachmentTarget, AuditAction, DeviceGroup, DeviceGroupSpec, DeviceSpec,
    FailureThresholdRecord, FirmwareSpec, ObjectKind, PhaseRecord, PolicyAttachmentSpec,
    PolicySpec, RolloutSpec, Store, StoreError,
};

fn group(name: &str, parent: Option<&str>, query: Option<&str>) -> DeviceGroupSpec {
    DeviceGroupSpec {
        name: name.into(),
        parent_id: parent.map(str::to_owned),
        query: query.map(str::to_owned),
        ..Default::default()
    }
}

/// An open store, the admin actor, and one empty static group "g".
async fn store_with_group(db: &TestDb) -> (Arc<dyn Store>, Actor, DeviceGroup) {
    let store = db.open().await;
    let actor = Actor::admin();
    let g = store
        .create_device_group(&actor, group("g", None, None))
        .await
        .unwrap();
    (store, actor, g)
}

fn device(name: &str, hardware: &str, groups: &[&str]) -> DeviceSpec {
    DeviceSpec {
        name: name.into(),
        hardware: hardware.into(),
        attributes: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        group_ids: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn policy(name: &str, resource: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        description: String::new(),
        statements: vec![Statement {
            effect: Effect::Allow,
            actions: vec!["config:read".into()],
            resources: vec![resource.into()],
        }],
    }
}

fn firmware(version: &str) -> FirmwareSpec {
    FirmwareSpec {
        product: "fw".into(),
        version: version.into(),
        hardware: vec!["m1".into()],
        url: "https://x.example/fw.bin".into(),
        sha256: "ab".repeat(32),
        size_bytes: 10,
        signature: None,
        signature_verified: false,
    }
}

fn rollout(firmware_id: &str, targets: &[&str]) -> RolloutSpec {
    RolloutSpec {
        name: "r".into(),
        firmware_id: Some(firmware_id.into()),
        target_group_ids: targets.iter().map(|g| g.to_string()).collect(),
        phases: vec![PhaseRecord {
            percent: 100.0,
            soak: "0s".into(),
        }],
        rate: None,
        failure_threshold: FailureThresholdRecord {
            percent: 5.0,
            min_devices: 10,
            action: "pause".into(),
        },
        device_timeout: "1h".into(),
        max_retries: 2,
        start_at: None,
        maintenance_window: None,
        continuous: false,
        state: None,
    }
}

async fn device_writes_are_audited_with_versions(db: TestDb) {
    let (store, actor, g) = store_with_group(&db).await;
    let d = store
        .create_device(&actor, device("d", "m1", &[&g.id, &g.id]))
        .await
        .unwrap();
    assert_eq!(d.group_ids, vec![g.id.clone()]);
    let d2 = store
        .update_device(&actor, &d.id, 1, device("d", "m2", &[]))
        .await
        .unwrap();
    assert_eq!((d2.version, d2.hardware.as_str()), (2, "m2"));
    assert!(matches!(
        store
            .update_device(&actor, &d.id, 1, device("d", "m3", &[]))
            .await,
        Err(StoreError::VersionConflict {
            expected: 1,
            current: 2,
            kind: ObjectKind::Device,
            ..
        })
    ));
    store.delete_device(&actor, &d.id, Some(2)).await.unwrap();
    let events = store.audit_events(ObjectKind::Device, &d.id).await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.action, e.before_version, e.after_version))
        .collect();
    assert_eq!(
        summary,
        [
            (AuditAction::Create, None, Some(1)),
            (AuditAction::Update, Some(1), Some(2)),
            (AuditAction::Delete, Some(2), None),
        ]
    );
}

async fn policy_versions_are_pruned_to_ten(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let p = store
        .create_policy(&actor, policy("p", "fleet:device/0"))
        .await
        .unwrap();
    for i in 1..=11 {
        let spec = policy("p", &format!("fleet:device/{i}"));
        let u = store.update_policy(&actor, &p.id, i, spec).await.unwrap();
        assert_eq!(u.policy_version, i + 1);
    }
    // Same statements: no new policy version.
    let same = store
        .update_policy(&actor, &p.id, 12, policy("p2", "fleet:device/11"))
        .await
        .unwrap();
    assert_eq!((same.version, same.policy_version), (13, 12));
    let versions = store.list_policy_versions(&p.id).await.unwrap();
    let numbers: Vec<i64> = versions.iter().map(|v| v.policy_version).collect();
    assert_eq!(numbers, (3..=12).rev().collect::<Vec<_>>());
    assert_eq!(versions[0].statements[0].resources, ["fleet:device/11"]);
}

async fn membership_counts_static_dynamic_and_subgroups(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let root = store
        .create_device_group(&actor, group("root", None, None))
        .await
        .unwrap();
    let dynamic = store
        .create_device_group(
            &actor,
            group("m1", Some(&root.id), Some("hardware == \"m1\"")),
        )
        .await
        .unwrap();
    store
        .create_device(&actor, device("a", "m1", &[]))
        .await
        .unwrap();
    store
        .create_device(&actor, device("b", "m2", &[&root.id]))
        .await
        .unwrap();
    store
        .create_device(&actor, device("c", "m2", &[]))
        .await
        .unwrap();

    assert_eq!(
        store.get_device_group(&root.id).await.unwrap().device_count,
        1
    );
    assert_eq!(
        store
            .get_device_group(&dynamic.id)
            .await
            .unwrap()
            .device_count,
        1
    );

    let f = store
        .create_firmware(&actor, firmware("1.0.0"))
        .await
        .unwrap();
    let r = store
        .create_rollout(&actor, rollout(&f.id, &[&root.id]))
        .await
        .unwrap();
    assert_eq!(
        r.counts.targeted, 2,
        "b statically, a through the dynamic subgroup"
    );
    assert_eq!(r.status, "pending");

    let q = query::parse("attr.region == \"eu\" and hardware == \"m2\"").unwrap();
    let page = store.list_devices(None, 1, Some(q.clone())).await.unwrap();
    assert_eq!(
        page.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let next = store
        .list_devices(Some(&page[0].id), 5, Some(q))
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["c"]
    );

    // Firmware in use cannot go; neither can a group an unfinished rollout targets.
    assert!(matches!(
        store.delete_firmware(&actor, &f.id).await,
        Err(StoreError::Conflict { field: None, .. })
    ));
    assert!(matches!(
        store.delete_device_group(&actor, &dynamic.id, None).await,
        Ok(())
    ));
    assert!(matches!(
        store.delete_device_group(&actor, &root.id, None).await,
        Err(StoreError::Conflict { .. })
    ));
}

async fn deleting_a_group_releases_members_and_is_refused_while_attached(db: TestDb) {
    let (store, actor, g) = store_with_group(&db).await;
    let d = store
        .create_device(&actor, device("d", "m1", &[&g.id]))
        .await
        .unwrap();
    let p = store.create_policy(&actor, policy("p", "*")).await.unwrap();
    let a = store
        .create_policy_attachment(
            &actor,
            PolicyAttachmentSpec {
                policy_id: p.id.clone(),
                target: AttachmentTarget::Group(g.id.clone()),
            },
        )
        .await
        .unwrap();
    match store.delete_device_group(&actor, &g.id, None).await {
        Err(StoreError::Conflict { message, .. }) => {
            assert!(message.contains("still has 1 policy attached"), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.delete_policy(&actor, &p.id, None).await,
        Err(StoreError::Conflict { .. })
    ));
    store
        .delete_policy_attachment(&actor, &a.id, Some(1))
        .await
        .unwrap();
    store
        .delete_device_group(&actor, &g.id, Some(1))
        .await
        .unwrap();

    let d = store.get_device(&d.id).await.unwrap();
    assert!(d.group_ids.is_empty());
    assert_eq!(d.version, 2);
    let events = store.audit_events(ObjectKind::Device, &d.id).await.unwrap();
    assert_eq!(
        (
            events[1].action,
            events[1].before_version,
            events[1].after_version
        ),
        (AuditAction::Update, Some(1), Some(2))
    );
}

async fn state_survives_reopening_and_is_counted(db: TestDb) {
    let actor = Actor::admin();
    let (d, f, r) = {
        let store = db.open().await;
        let g = store
            .create_device_group(&actor, group("g", None, None))
            .await
            .unwrap();
        let d = store
            .create_device(&actor, device("d", "m1", &[&g.id]))
            .await
            .unwrap();
        let f = store
            .create_firmware(&actor, firmware("1.0.0"))
            .await
            .unwrap();
        let r = store
            .create_rollout(&actor, rollout(&f.id, &[&g.id]))
            .await
            .unwrap();
        (d, f, r)
    };
    let store = db.open().await;
    assert_eq!(store.get_device(&d.id).await.unwrap(), d);
    assert_eq!(store.get_firmware(&f.id).await.unwrap(), f);
    assert_eq!(store.get_rollout(&r.id).await.unwrap(), r);
    let counts: BTreeMap<String, i64> = store.object_counts().await.unwrap().into_iter().collect();
    assert_eq!(counts["device"], 1);
    assert_eq!(counts["device_group"], 1);
    assert_eq!(counts["firmware"], 1);
    assert_eq!(counts["rollout"], 1);
    assert_eq!(counts["policy"], 0);
}

/// A batch of check-ins (the device API's group commit) is applied as if
/// one after another: a report without firmware or health keeps the
/// previous value, the last check-in time wins, unknown devices are
/// reported as not found, and the device's version does not change.
async fn checkin_batches_apply_in_order(db: TestDb) {
    use chrono::{Duration, TimeZone, Utc};
    use fleetd::store::device_api::CheckinReport;
    let store = db.open().await;
    let actor = Actor::admin();
    let a = store
        .create_device(&actor, device("a", "m1", &[]))
        .await
        .unwrap();
    let b = store
        .create_device(&actor, device("b", "m1", &[]))
        .await
        .unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let report = |fw: Option<&str>, health: Option<&str>| CheckinReport {
        firmware_version: fw.map(str::to_owned),
        health: health.map(str::to_owned),
        config_digest: None,
        compliance: None,
    };
    let found = store
        .record_checkins(vec![
            (a.id.clone(), report(Some("1.0.0"), Some("ok")), t0),
            (b.id.clone(), report(None, Some("degraded")), t0),
            ("no-such-device".into(), report(Some("9.9.9"), None), t0),
            (
                a.id.clone(),
                report(Some("1.1.0"), None),
                t0 + Duration::seconds(1),
            ),
            (a.id.clone(), report(None, None), t0 + Duration::seconds(2)),
        ])
        .await
        .unwrap();
    assert_eq!(found, [true, true, false, true, true]);
    let a2 = store.get_device(&a.id).await.unwrap();
    assert_eq!(a2.firmware_version.as_deref(), Some("1.1.0"));
    assert_eq!(a2.health.as_deref(), Some("ok"));
    assert_eq!(a2.last_seen, Some(t0 + Duration::seconds(2)));
    assert_eq!(a2.version, a.version, "check-ins are not admin writes");
    let b2 = store.get_device(&b.id).await.unwrap();
    assert_eq!(b2.firmware_version, None);
    assert_eq!(b2.health.as_deref(), Some("degraded"));
    assert_eq!(b2.last_seen, Some(t0));
    match store
        .record_checkin("no-such-device", report(None, None), t0)
        .await
    {
        Err(StoreError::NotFound {
            kind: ObjectKind::Device,
            ..
        }) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}

/// Compliance in a batch of check-ins: a device that checks in many times
/// in one batch moves each time (drift, then in sync) and is counted once,
/// in its last state; the device's row keeps that state for the next batch.
async fn a_batch_moves_compliance_as_if_one_after_another(db: TestDb) {
    use chrono::{Duration, TimeZone, Utc};
    use fleetd::store::device_api::{CheckinReport, ComplianceInput};
    let (store, actor, g) = store_with_group(&db).await;
    let a = store
        .create_device(&actor, device("a", "m1", &[&g.id]))
        .await
        .unwrap();
    let b = store
        .create_device(&actor, device("b", "m1", &[&g.id]))
        .await
        .unwrap();
    let report = |applied: &str| CheckinReport {
        firmware_version: Some("1.0.0".into()),
        health: None,
        config_digest: Some(applied.to_owned()),
        compliance: Some(ComplianceInput {
            desired_digest: "want".into(),
            groups: vec![g.id.clone()],
            stale_after_secs: vec![],
        }),
    };
    let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    // Longer than the store's read chunk (64): `a`'s last check-in is
    // read after the first 64 were written.
    let mut batch = vec![
        (a.id.clone(), report("old"), t0),
        (b.id.clone(), report("old"), t0),
    ];
    batch.extend((0..70).map(|_| (a.id.clone(), report("old"), t0)));
    batch.push((a.id.clone(), report("want"), t0 + Duration::seconds(1)));
    let found = store.record_checkins(batch).await.unwrap();
    assert_eq!(found, [true; 73]);
    let s = store.group_compliance(&g.id).await.unwrap();
    assert_eq!((s.in_sync, s.config_drift), (1, 1), "{s:?}");

    // The next batch starts from what the last one left.
    store
        .record_checkins(vec![(
            b.id.clone(),
            report("want"),
            t0 + Duration::seconds(2),
        )])
        .await
        .unwrap();
    let s = store.group_compliance(&g.id).await.unwrap();
    assert_eq!((s.in_sync, s.config_drift), (2, 0), "{s:?}");
    let a2 = store.get_device(&a.id).await.unwrap();
    assert_eq!(a2.last_seen, Some(t0 + Duration::seconds(1)));
}

/// The generation device requests are cached under moves with every
/// write that changes a row, before the writer gets its answer, and not
/// with check-ins or reads. PostgreSQL has none (other processes may
/// write), so nothing is cached there.
async fn the_request_generation_moves_with_writes_but_not_check_ins(db: TestDb) {
    use chrono::Utc;
    use fleetd::store::device_api::CheckinReport;
    let store = db.open().await;
    if db.is_postgres() {
        assert_eq!(store.request_generation(), None);
        return;
    }
    let actor = Actor::admin();
    let generation = || store.request_generation().expect("SQLite knows its writes");
    let g0 = generation();
    let d = store
        .create_device(&actor, device("a", "m1", &[]))
        .await
        .unwrap();
    let g1 = generation();
    assert_ne!(g1, g0, "creating a device");

    let report = CheckinReport {
        firmware_version: Some("1.0.0".to_owned()),
        health: Some("ok".to_owned()),
        config_digest: None,
        compliance: None,
    };
    let found = store
        .record_checkins(vec![(d.id.clone(), report, Utc::now())])
        .await
        .unwrap();
    assert_eq!(found, [true]);
    let _ = store.get_device(&d.id).await.unwrap();
    let _ = store.device_request("no-ca", "00", None).await.unwrap();
    assert_eq!(generation(), g1, "a check-in and reads");

    let mut spec = device("a", "m2", &[]);
    spec.attributes.insert("site".to_owned(), "b".to_owned());
    let d = store
        .update_device(&actor, &d.id, d.version, spec)
        .await
        .unwrap();
    let g2 = generation();
    assert_ne!(g2, g1, "updating a device");
    // A refused write changes nothing.
    assert!(store
        .update_device(&actor, &d.id, d.version + 5, device("a", "m3", &[]))
        .await
        .is_err());
    assert_eq!(generation(), g2, "a refused write");
    store.delete_device(&actor, &d.id, None).await.unwrap();
    assert_ne!(generation(), g2, "deleting a device");
}

/// The stamp device requests compare with their cached fleet view moves
/// with every change to groups, policies and attachments, in the writing
/// transaction, and with nothing else (check-ins, devices).
async fn the_view_stamp_moves_with_groups_policies_and_attachments_only(db: TestDb) {
    use chrono::Utc;
    use fleetd::store::device_api::CheckinReport;
    let store = db.open().await;
    let actor = Actor::admin();
    let stamp = || async {
        let data = store.device_request("no-ca", "00", None).await.unwrap();
        data.view.expect("a view when none is known").stamp
    };
    let mut seen = vec![stamp().await];
    let mut moved = |s: String, what: &str| {
        assert!(
            !seen.contains(&s),
            "{what}: stamp {s} seen before ({seen:?})"
        );
        seen.push(s);
    };

    let g = store
        .create_device_group(&actor, group("g", None, None))
        .await
        .unwrap();
    moved(stamp().await, "group created");
    let mut spec = group("g", None, None);
    spec.config.insert("interval".into(), 30.into());
    let g = store
        .update_device_group(&actor, &g.id, g.version, spec)
        .await
        .unwrap();
    moved(stamp().await, "group config changed");
    let p = store
        .create_policy(&actor, policy("p", "fleet:device/${device.id}"))
        .await
        .unwrap();
    moved(stamp().await, "policy created");
    store
        .update_policy(&actor, &p.id, p.version, policy("p", "fleet:device/*"))
        .await
        .unwrap();
    moved(stamp().await, "policy changed");
    let a = store
        .create_policy_attachment(
            &actor,
            PolicyAttachmentSpec {
                policy_id: p.id.clone(),
                target: AttachmentTarget::Group(g.id.clone()),
            },
        )
        .await
        .unwrap();
    moved(stamp().await, "policy attached");

    // Devices and their check-ins leave the view alone.
    let before = stamp().await;
    let d = store
        .create_device(&actor, device("d", "m1", &[&g.id]))
        .await
        .unwrap();
    store
        .record_checkin(
            &d.id,
            CheckinReport {
                firmware_version: Some("1.0.0".into()),
                health: Some("ok".into()),
                config_digest: None,
                compliance: None,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        stamp().await,
        before,
        "devices and check-ins are not view changes"
    );
    // Knowing the current stamp, the view is not sent again.
    let data = store
        .device_request("no-ca", "00", Some(&before))
        .await
        .unwrap();
    assert!(data.view.is_none());

    // A refused write leaves it too (the trigger's change rolls back).
    assert!(store
        .delete_device_group(&actor, &g.id, None)
        .await
        .is_err());
    assert_eq!(stamp().await, before, "a refused delete is no change");

    store
        .delete_policy_attachment(&actor, &a.id, None)
        .await
        .unwrap();
    let detached = stamp().await;
    moved(detached.clone(), "policy detached");
    store.delete_device(&actor, &d.id, None).await.unwrap();
    assert_eq!(
        stamp().await,
        detached,
        "a device deleted is no view change"
    );
    store
        .delete_device_group(&actor, &g.id, None)
        .await
        .unwrap();
    moved(stamp().await, "group deleted");
}

/// Reads run on other connections than writes (SQLite: a pool of
/// read-only connections). Each read must see every write committed
/// before it started, on whichever connection it lands, while other
/// tasks keep the readers busy.
async fn reads_see_every_write_committed_before_them(db: TestDb) {
    let (store, actor, g) = store_with_group(&db).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.list_devices(None, 100, None).await.unwrap();
                reads += 1;
            }
            reads
        })
    };
    let mut writers = Vec::new();
    for w in 0..4 {
        let (store, actor, g) = (store.clone(), actor.clone(), g.id.clone());
        writers.push(tokio::spawn(async move {
            let name = format!("d{w}");
            let mut d = store
                .create_device(&actor, device(&name, "m0", &[&g]))
                .await
                .unwrap();
            assert_eq!(store.get_device(&d.id).await.unwrap().version, 1);
            for i in 1..=40 {
                let hw = format!("m{i}");
                d = store
                    .update_device(&actor, &d.id, d.version, device(&name, &hw, &[&g]))
                    .await
                    .unwrap();
                let read = store.get_device(&d.id).await.unwrap();
                assert_eq!(
                    (read.version, read.hardware.as_str()),
                    (d.version, hw.as_str()),
                    "device {name}: a read right after update {i} saw an older row"
                );
                let audit = store.audit_events(ObjectKind::Device, &d.id).await.unwrap();
                assert_eq!(
                    audit.len(),
                    i + 1,
                    "device {name}: audit rows after update {i}"
                );
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(busy.await.unwrap() > 0);
    let group = store.get_device_group(&g.id).await.unwrap();
    assert_eq!(group.device_count, 4);
    let listed = store.list_devices(None, 100, None).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed
        .iter()
        .all(|d| d.version == 41 && d.hardware == "m40"));
}

store_tests!(
    reads_see_every_write_committed_before_them,
    the_view_stamp_moves_with_groups_policies_and_attachments_only,
    checkin_batches_apply_in_order,
    a_batch_moves_compliance_as_if_one_after_another,
    the_request_generation_moves_with_writes_but_not_check_ins,
    device_writes_are_audited_with_versions,
    policy_versions_are_pruned_to_ten,
    membership_counts_static_dynamic_and_subgroups,
    deleting_a_group_releases_members_and_is_refused_while_attached,
    state_survives_reopening_and_is_counted,
);
