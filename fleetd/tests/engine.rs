//! The rollout engine on a real SQLite file: `tick_once` driven by a fake
//! clock, devices answering through `current_assignment` and
//! `record_result`, counters checked against a full recount after every
//! step.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use fleetd::config::Config;
use fleetd::domain::rollout::RolloutState;
use fleetd::domain::rollout_engine::{Counts, DeviceState, Options, RollbackState};
use fleetd::engine::{tick_once, tick_with, TickReport};
use fleetd::store::engine::{ResultRecord, UpdateOutcome};
use fleetd::store::postgres::PgStore;
use fleetd::store::prelude::*;
use fleetd::store::sqlite::SqliteStore;
use fleetd::store::{
    Actor, AuditAction, DeviceGroupSpec, DeviceSpec, FailureThresholdRecord, FirmwareSpec,
    MaintenanceWindowRecord, ObjectKind, PhaseRecord, RateRecord, Rollout, RolloutSpec,
    SqliteLocation, StoreError,
};
use serde_json::json;

use common::{send, TestServer};

// ------------------------------------------------------------------ fixtures

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A Monday.
fn t0() -> DateTime<Utc> {
    t("2030-06-03T10:00:00Z")
}

/// The store under test: a SQLite file in `dir`, or with
/// `FLEETD_TEST_BACKEND=postgres` a fresh PostgreSQL database (the same one
/// again for the same `dir`, so reopening sees the same state).
async fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    if common::pg::backend_is_postgres() {
        let url = common::pg::database_for(dir.path()).await;
        return Arc::new(PgStore::open(&url).await.unwrap());
    }
    let location = SqliteLocation::File(dir.path().join("fleetd.db"));
    Arc::new(SqliteStore::open(location).await.unwrap())
}

/// The PostgreSQL store's engine lease (`FLEETD_ENGINE_LEASE`, else its
/// 15 s default).
fn lease_ttl() -> std::time::Duration {
    std::env::var("FLEETD_ENGINE_LEASE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(std::time::Duration::from_secs_f64)
        .unwrap_or(std::time::Duration::from_secs(15))
}

fn actor() -> Actor {
    Actor::admin()
}

async fn group(store: &dyn Store, name: &str, parent: Option<&str>, query: Option<&str>) -> String {
    store
        .create_device_group(
            &actor(),
            DeviceGroupSpec {
                name: name.into(),
                parent_id: parent.map(str::to_owned),
                query: query.map(str::to_owned),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

async fn device(
    store: &dyn Store,
    name: &str,
    hardware: &str,
    groups: &[&str],
    attrs: &[(&str, &str)],
) -> String {
    store
        .create_device(
            &actor(),
            DeviceSpec {
                name: name.into(),
                hardware: hardware.into(),
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                group_ids: groups.iter().map(|g| g.to_string()).collect(),
            },
        )
        .await
        .unwrap()
        .id
}

async fn firmware(store: &dyn Store, version: &str) -> String {
    store
        .create_firmware(
            &actor(),
            FirmwareSpec {
                product: "meter".into(),
                version: version.into(),
                hardware: vec!["m1".into()],
                url: format!("https://fw.example.com/meter-{version}.bin"),
                sha256: "ab".repeat(32),
                size_bytes: 1024,
                signature: None,
                signature_verified: false,
            },
        )
        .await
        .unwrap()
        .id
}

/// A group of `n` compatible devices and two firmware releases.
struct Fleet {
    store: Arc<dyn Store>,
    group: String,
    v1: String,
    v2: String,
    devices: Vec<String>,
}

async fn fleet(dir: &tempfile::TempDir, n: usize) -> Fleet {
    let store = open(dir).await;
    let g = group(store.as_ref(), "fleet", None, None).await;
    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        devices.push(device(store.as_ref(), &format!("d{i:05}"), "m1", &[&g], &[]).await);
    }
    let v1 = firmware(store.as_ref(), "1.0.0").await;
    let v2 = firmware(store.as_ref(), "2.0.0").await;
    Fleet {
        store,
        group: g,
        v1,
        v2,
        devices,
    }
}

fn spec(firmware_id: &str, groups: &[&str], phases: &[(f64, &str)]) -> RolloutSpec {
    RolloutSpec {
        name: "r".into(),
        firmware_id: Some(firmware_id.into()),
        target_group_ids: groups.iter().map(|g| g.to_string()).collect(),
        phases: phases
            .iter()
            .map(|(percent, soak)| PhaseRecord {
                percent: *percent,
                soak: soak.to_string(),
            })
            .collect(),
        rate: None,
        failure_threshold: FailureThresholdRecord {
            percent: 100.0,
            min_devices: 1,
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

fn threshold(mut s: RolloutSpec, percent: f64, min_devices: u32, action: &str) -> RolloutSpec {
    s.failure_threshold = FailureThresholdRecord {
        percent,
        min_devices,
        action: action.into(),
    };
    s
}

/// The spec that rewrites `r` as it is, with another desired state.
fn respec(r: &Rollout, state: RolloutState) -> RolloutSpec {
    RolloutSpec {
        name: r.name.clone(),
        firmware_id: Some(r.firmware_id.clone()),
        target_group_ids: r.target_group_ids.clone(),
        phases: r.phases.clone(),
        rate: r.rate.clone(),
        failure_threshold: r.failure_threshold.clone(),
        device_timeout: r.device_timeout.clone(),
        max_retries: r.max_retries,
        start_at: r.start_at.clone(),
        maintenance_window: r.maintenance_window.clone(),
        continuous: r.continuous,
        state: Some(state),
    }
}

async fn create(store: &dyn Store, spec: RolloutSpec) -> String {
    store.create_rollout(&actor(), spec).await.unwrap().id
}

async fn set_state(store: &dyn Store, id: &str, state: RolloutState) -> Rollout {
    let r = store.get_rollout(id).await.unwrap();
    store
        .update_rollout(&actor(), id, r.version, respec(&r, state))
        .await
        .unwrap()
}

/// One engine pass; no rollout may fail. Every rollout's counters must
/// equal a recount.
async fn tick(store: &dyn Store, now: DateTime<Utc>) -> TickReport {
    let report = tick_once(store, now).await.unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    for r in store.list_rollouts(None, 1000).await.unwrap() {
        check(store, &r.id).await;
    }
    report
}

/// Stored counters equal a recount, and add up.
async fn check(store: &dyn Store, id: &str) -> Counts {
    let (stored, scanned) = store.recount_rollout(id).await.unwrap();
    if scanned == Counts::default() && stored.assigned == 0 && stored.pending == 0 {
        // Not started: `targeted` is the estimate made when it was written.
        return stored;
    }
    assert_eq!(stored, scanned, "stored counters vs recount of {id}");
    assert!(stored.is_consistent(), "{stored:?}");
    stored
}

/// `(status, [targeted, pending, in_progress, succeeded, failed,
/// rolled_back], current_phase)` as the admin API shows them.
async fn seen(store: &dyn Store, id: &str) -> (String, [i64; 6], i64) {
    let r = store.get_rollout(id).await.unwrap();
    let c = r.counts;
    (
        r.status,
        [
            c.targeted,
            c.pending,
            c.in_progress,
            c.succeeded,
            c.failed,
            c.rolled_back,
        ],
        r.current_phase,
    )
}

fn st(status: &str, counts: [i64; 6], phase: i64) -> (String, [i64; 6], i64) {
    (status.to_owned(), counts, phase)
}

/// Device ids of a rollout in `state`.
async fn in_state(store: &dyn Store, id: &str, state: DeviceState) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_rollout_devices(id, Some(state), after.as_deref(), 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.device_id.clone());
        out.extend(page.into_iter().map(|d| d.device_id));
    }
    out
}

/// Each device fetches its assignment (which must be from rollout `id`)
/// and reports `outcome(i)`.
async fn answer(
    store: &dyn Store,
    id: &str,
    devices: &[String],
    now: DateTime<Utc>,
    outcome: impl Fn(usize) -> UpdateOutcome,
) {
    for (i, d) in devices.iter().enumerate() {
        let a = store
            .current_assignment(d, now)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{d} has an assignment"));
        assert_eq!(a.rollout_id, id);
        store.record_result(d, id, outcome(i), now).await.unwrap();
    }
}

fn ok(_: usize) -> UpdateOutcome {
    UpdateOutcome::Succeeded
}

fn failed(reason: &str) -> UpdateOutcome {
    UpdateOutcome::Failed {
        reason: reason.into(),
    }
}

async fn statuses(store: &dyn Store, id: &str) -> Vec<(String, String)> {
    store
        .engine_events(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "status")
        .map(|e| (e.from, e.to))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ------------------------------------------------------------------ targets

#[tokio::test]
async fn targets_are_members_of_groups_and_subgroups_with_compatible_hardware() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = store.as_ref();
    let root = group(s, "root", None, None).await;
    let sub = group(s, "sub", Some(&root), None).await;
    let dynamic = group(s, "eu", Some(&sub), Some("attr.region == \"eu\"")).await;
    let other = group(s, "other", None, None).await;
    let a = device(s, "a", "m1", &[&root], &[]).await;
    let b = device(s, "b", "m1", &[&sub], &[]).await;
    let c = device(s, "c", "m1", &[], &[("region", "eu")]).await;
    let both = device(s, "both", "m1", &[&root, &sub], &[("region", "eu")]).await;
    device(s, "old-hw", "m9", &[&root], &[]).await;
    device(s, "old-hw-eu", "m9", &[], &[("region", "eu")]).await;
    device(s, "elsewhere", "m1", &[&other], &[]).await;
    let fw = firmware(s, "1.0.0").await;
    let id = create(s, spec(&fw, &[&root], &[(100.0, "0s")])).await;
    let _ = dynamic;

    tick(s, t0()).await;
    let mut targeted = in_state(s, &id, DeviceState::InProgress).await;
    targeted.sort();
    let mut expected = vec![a, b, c, both];
    expected.sort();
    assert_eq!(targeted, expected, "each once, compatible hardware only");
    assert_eq!(seen(s, &id).await, st("running", [4, 0, 4, 0, 0, 0], 0));
}

// ------------------------------------------------------------------ phases

#[tokio::test]
async fn phases_advance_only_after_their_soak() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 100).await;
    let s = f.store.as_ref();
    let id = create(
        s,
        spec(
            &f.v2,
            &[&f.group],
            &[(10.0, "10m"), (50.0, "30m"), (100.0, "1h")],
        ),
    )
    .await;
    assert_eq!(seen(s, &id).await.0, "pending");

    let mut now = t0();
    tick(s, now).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 90, 10, 0, 0, 0], 0));
    // Ticking again changes nothing: the phase's budget is spent.
    tick(s, now + Duration::seconds(1)).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 90, 10, 0, 0, 0], 0));

    let wave = in_state(s, &id, DeviceState::InProgress).await;
    answer(s, &id, &wave[..4], now, ok).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 90, 6, 4, 0, 0], 0));
    tick(s, now).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 90, 6, 4, 0, 0], 0));
    answer(s, &id, &wave[4..], now, ok).await;

    // Phase 1 done at `now`: soak 10 minutes.
    tick(s, now).await;
    tick(s, now + Duration::minutes(10) - Duration::seconds(1)).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 90, 0, 10, 0, 0], 0));
    now += Duration::minutes(10);
    tick(s, now).await;
    assert_eq!(
        seen(s, &id).await,
        st("running", [100, 50, 40, 10, 0, 0], 1)
    );

    let wave = in_state(s, &id, DeviceState::InProgress).await;
    answer(s, &id, &wave, now, ok).await;
    now += Duration::minutes(5);
    tick(s, now).await; // soak starts here
    tick(s, now + Duration::minutes(29)).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 50, 0, 50, 0, 0], 1));
    now += Duration::minutes(30);
    tick(s, now).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 0, 50, 50, 0, 0], 2));

    let wave = in_state(s, &id, DeviceState::InProgress).await;
    answer(s, &id, &wave, now, ok).await;
    tick(s, now).await;
    assert_eq!(
        seen(s, &id).await,
        st("completed", [100, 0, 0, 100, 0, 0], 2),
        "the last phase's soak does not hold completion back"
    );
    assert!(s.engine_rollout_ids().await.unwrap().is_empty());

    // Every device was assigned exactly once, in its phase.
    let rows = s.list_rollout_devices(&id, None, None, 1000).await.unwrap();
    assert!(rows.iter().all(|d| d.attempt == 1));
    let per_phase = rows.iter().fold([0; 3], |mut acc, d| {
        acc[d.phase.unwrap() as usize] += 1;
        acc
    });
    assert_eq!(per_phase, [10, 40, 50]);

    // Status and phase changes are in the audit log, by the engine.
    assert_eq!(
        statuses(s, &id).await,
        pairs(&[("pending", "running"), ("running", "completed")])
    );
    let phases: Vec<_> = s
        .engine_events(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "phase" && e.from != e.to)
        .map(|e| (e.from, e.to))
        .collect();
    assert_eq!(phases, pairs(&[("1", "2"), ("2", "3")]));
    let audit = s.audit_events(ObjectKind::Rollout, &id).await.unwrap();
    let engine_rows: Vec<_> = audit.iter().filter(|e| e.actor == "engine").collect();
    assert!(engine_rows.len() >= 6, "{audit:?}");
    assert!(engine_rows
        .iter()
        .all(|e| e.action == AuditAction::Update && e.before_version == Some(1)));
    assert_eq!(
        s.get_rollout(&id).await.unwrap().version,
        1,
        "the engine never bumps the operator's version"
    );
}

#[tokio::test]
async fn a_rate_rollout_grows_every_minute() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 50).await;
    let s = f.store.as_ref();
    let mut sp = spec(&f.v2, &[&f.group], &[]);
    sp.rate = Some(RateRecord {
        per_minute: 5,
        growth_factor: 2.0,
    });
    let id = create(s, sp).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &id).await, st("running", [50, 45, 5, 0, 0, 0], 0));
    tick(s, t0() + Duration::seconds(59)).await;
    assert_eq!(seen(s, &id).await.1[2], 5);
    tick(s, t0() + Duration::minutes(1)).await;
    assert_eq!(seen(s, &id).await.1[2], 15);
    tick(s, t0() + Duration::minutes(2)).await;
    assert_eq!(seen(s, &id).await.1[2], 35);
    tick(s, t0() + Duration::minutes(3)).await;
    assert_eq!(seen(s, &id).await, st("running", [50, 0, 50, 0, 0, 0], 0));
}

// ------------------------------------------------------------------ failure threshold

#[tokio::test]
async fn the_threshold_pauses_and_a_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 100).await;
    let s = f.store.as_ref();
    let id = create(
        s,
        threshold(
            spec(&f.v2, &[&f.group], &[(20.0, "0s"), (100.0, "0s")]),
            10.0,
            10,
            "pause",
        ),
    )
    .await;
    tick(s, t0()).await;
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    assert_eq!(wave.len(), 20);
    for d in &wave {
        assert!(s.current_assignment(d, t0()).await.unwrap().is_some());
    }
    // 9 results with 3 failures: below min_devices, nothing happens.
    answer(s, &id, &wave[..9], t0(), |i| {
        if i < 3 {
            failed("flash write error")
        } else {
            UpdateOutcome::Succeeded
        }
    })
    .await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 80, 11, 6, 3, 0], 0));
    // The 10th result: 3 of 10 = 30% > 10%.
    answer(s, &id, &wave[9..10], t0(), ok).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &id).await, st("paused", [100, 80, 10, 7, 3, 0], 0));
    let events = s.engine_events(&id).await.unwrap();
    let pause = events.last().unwrap();
    assert_eq!(
        (pause.from.as_str(), pause.to.as_str()),
        ("running", "paused")
    );
    assert_eq!(
        pause.reason,
        "failure threshold exceeded: 3 of 10 devices failed (30% > 10%)"
    );

    // Paused: results still count, nothing new is assigned, however long.
    answer(s, &id, &wave[10..], t0(), ok).await;
    tick(s, t0() + Duration::days(1)).await;
    assert_eq!(seen(s, &id).await, st("paused", [100, 80, 0, 17, 3, 0], 0));
    let failed_device = s.get_rollout_device(&id, &wave[0]).await.unwrap();
    assert_eq!(failed_device.reason.as_deref(), Some("flash write error"));

    // The operator resumes: the failures so far are accepted.
    let r = set_state(s, &id, RolloutState::Running).await;
    assert_eq!(r.status, "pending");
    let later = t0() + Duration::days(1);
    tick(s, later).await;
    assert_eq!(seen(s, &id).await, st("running", [100, 0, 80, 17, 3, 0], 1));
    let rest = in_state(s, &id, DeviceState::InProgress).await;
    answer(s, &id, &rest, later, ok).await;
    tick(s, later).await;
    assert_eq!(
        seen(s, &id).await,
        st("completed", [100, 0, 0, 97, 3, 0], 1)
    );
    assert_eq!(
        statuses(s, &id).await,
        pairs(&[
            ("pending", "running"),
            ("running", "paused"),
            ("pending", "running"),
            ("running", "completed")
        ])
    );
}

#[tokio::test]
async fn the_threshold_aborts_cancelling_what_was_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 20).await;
    let s = f.store.as_ref();
    let mut sp = threshold(
        spec(&f.v2, &[&f.group], &[(50.0, "0s"), (100.0, "0s")]),
        20.0,
        3,
        "abort",
    );
    sp.device_timeout = "10m".into();
    let id = create(s, sp).await;
    tick(s, t0()).await;
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    assert_eq!(wave.len(), 10);
    // 8 devices fetch their assignment, 4 of them fail.
    for d in &wave[..8] {
        assert!(s.current_assignment(d, t0()).await.unwrap().is_some());
    }
    for d in &wave[..4] {
        s.record_result(d, &id, failed("boot loop"), t0())
            .await
            .unwrap();
    }
    tick(s, t0()).await;
    // 10 pending and the 2 undelivered are cancelled; 4 are still flashing.
    assert_eq!(seen(s, &id).await, st("aborted", [20, 0, 4, 0, 4, 0], 0));
    assert_eq!(check(s, &id).await.cancelled, 12);
    assert!(s
        .current_assignment(&wave[9], t0())
        .await
        .unwrap()
        .is_none());
    // A device mid-install still gets its assignment and may report.
    assert!(s
        .current_assignment(&wave[4], t0())
        .await
        .unwrap()
        .is_some());
    s.record_result(&wave[4], &id, UpdateOutcome::Succeeded, t0())
        .await
        .unwrap();
    assert_eq!(s.engine_rollout_ids().await.unwrap(), vec![id.clone()]);
    // The others never answer: they time out without retries.
    tick(s, t0() + Duration::minutes(10)).await;
    assert_eq!(seen(s, &id).await, st("aborted", [20, 0, 0, 1, 7, 0], 0));
    assert!(s.engine_rollout_ids().await.unwrap().is_empty());
    assert_eq!(
        statuses(s, &id).await,
        pairs(&[("pending", "running"), ("running", "aborted")])
    );
}

/// The first three devices answered fail, the others succeed.
fn first_three_crash(i: usize) -> UpdateOutcome {
    if i < 3 {
        failed("crash on boot")
    } else {
        UpdateOutcome::Succeeded
    }
}

/// Every device of `f` on 1.0.0 through a first rollout, then a rollout
/// of 2.0.0 in two halves that rolls back at 10% failures (5 results at
/// least), its first half assigned an hour later: (its id, that time, the
/// first half).
async fn rollback_rollout(f: &Fleet) -> (String, DateTime<Utc>, Vec<String>) {
    let s = f.store.as_ref();
    let first = create(s, spec(&f.v1, &[&f.group], &[(100.0, "0s")])).await;
    tick(s, t0()).await;
    answer(s, &first, &f.devices, t0(), ok).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &first).await.0, "completed");
    let id = create(
        s,
        threshold(
            spec(&f.v2, &[&f.group], &[(50.0, "0s"), (100.0, "0s")]),
            10.0,
            5,
            "rollback",
        ),
    )
    .await;
    let now = t0() + Duration::hours(1);
    tick(s, now).await;
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    (id, now, wave)
}

/// [`rollback_rollout`] rolled back by the first three crashes of its
/// first half while the half's last device, which fetched its update, is
/// still in progress: (its id, the time, that device).
async fn rolled_back_while_one_updates(f: &Fleet) -> (String, DateTime<Utc>, String) {
    let s = f.store.as_ref();
    let (id, now, wave) = rollback_rollout(f).await;
    let late = wave[9].clone();
    assert!(s.current_assignment(&late, now).await.unwrap().is_some());
    answer(s, &id, &wave[..9], now, first_three_crash).await;
    tick(s, now).await;
    assert_eq!(
        seen(s, &id).await,
        st("rolled_back", [20, 0, 1, 0, 3, 6], 0)
    );
    (id, now, late)
}

/// Two reports of one device in one batch that both change its row: the
/// second is decided against and written after the first (a success that
/// arrives after the rollback, then the device's own revert).
#[tokio::test]
async fn two_changes_of_one_device_in_a_batch_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 20).await;
    let s = f.store.as_ref();
    let (id, now, late) = rolled_back_while_one_updates(&f).await;
    let item = |outcome| ResultRecord {
        device_id: late.clone(),
        rollout_id: id.clone(),
        outcome,
        at: now,
    };
    let outcomes = s
        .record_results(vec![
            item(UpdateOutcome::Succeeded),
            item(UpdateOutcome::RolledBack),
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let row = s.get_rollout_device(&id, &late).await.unwrap();
    assert_eq!(
        (row.state, row.rollback),
        (DeviceState::RolledBack, Some(RollbackState::Done))
    );
    assert_eq!(
        seen(s, &id).await,
        st("rolled_back", [20, 0, 0, 0, 3, 7], 0)
    );
    let (stored, scanned) = s.recount_rollout(&id).await.unwrap();
    assert_eq!(stored, scanned);
}

/// A success reported once in a batch by a device in progress is usually
/// written without reading the row, but after a rollback what it does
/// depends on the row (whether a previous firmware is known), so it is
/// decided on the row: the device is rolled back, not counted succeeded.
#[tokio::test]
async fn a_success_after_a_rollback_is_decided_on_the_device_row() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 20).await;
    let s = f.store.as_ref();
    let (id, now, late) = rolled_back_while_one_updates(&f).await;
    let outcomes = s
        .record_results(vec![ResultRecord {
            device_id: late.clone(),
            rollout_id: id.clone(),
            outcome: UpdateOutcome::Succeeded,
            at: now,
        }])
        .await
        .unwrap();
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    let row = s.get_rollout_device(&id, &late).await.unwrap();
    assert_eq!(
        (row.state, row.rollback, row.reason.as_deref()),
        (
            DeviceState::RolledBack,
            Some(RollbackState::Pending),
            Some("updated after the rollout was rolled back; previous firmware reassigned")
        )
    );
    assert_eq!(
        seen(s, &id).await,
        st("rolled_back", [20, 0, 0, 0, 3, 7], 0)
    );
    let (stored, scanned) = s.recount_rollout(&id).await.unwrap();
    assert_eq!(stored, scanned);
}

#[tokio::test]
async fn the_threshold_rolls_back_to_the_previous_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 20).await;
    let s = f.store.as_ref();
    let (id, now, wave) = rollback_rollout(&f).await;
    let a = s.current_assignment(&wave[0], now).await.unwrap().unwrap();
    assert_eq!(
        (a.firmware_id.as_str(), a.firmware_version.as_str()),
        (f.v2.as_str(), "2.0.0")
    );
    answer(s, &id, &wave, now, first_three_crash).await;
    tick(s, now).await;
    assert_eq!(
        seen(s, &id).await,
        st("rolled_back", [20, 0, 0, 0, 3, 7], 0),
        "7 updated devices get 1.0.0 back; 10 pending are cancelled"
    );
    let rolled = in_state(s, &id, DeviceState::RolledBack).await;
    assert_eq!(rolled, wave[3..].to_vec());
    for d in &rolled {
        let row = s.get_rollout_device(&id, d).await.unwrap();
        assert_eq!(row.previous_firmware_id.as_deref(), Some(f.v1.as_str()));
        assert_eq!(row.rollback, Some(RollbackState::Pending));
        let back = s.current_assignment(d, now).await.unwrap().unwrap();
        assert_eq!(
            (
                back.rollout_id.as_str(),
                back.firmware_id.as_str(),
                back.firmware_version.as_str()
            ),
            (id.as_str(), f.v1.as_str(), "1.0.0")
        );
        assert_eq!(back.url, "https://fw.example.com/meter-1.0.0.bin");
        s.record_result(d, &id, UpdateOutcome::Succeeded, now)
            .await
            .unwrap();
        assert_eq!(
            s.get_rollout_device(&id, d).await.unwrap().rollback,
            Some(RollbackState::Done)
        );
        assert!(s.current_assignment(d, now).await.unwrap().is_none());
    }
    // Failed devices get nothing back (they never left 1.0.0).
    assert!(s.current_assignment(&wave[0], now).await.unwrap().is_none());
    assert_eq!(
        seen(s, &id).await,
        st("rolled_back", [20, 0, 0, 0, 3, 7], 0)
    );
    assert_eq!(
        statuses(s, &id).await,
        pairs(&[("pending", "running"), ("running", "rolled_back")])
    );
}

// ------------------------------------------------------------------ timeouts

#[tokio::test]
async fn silent_devices_are_retried_then_failed() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 3).await;
    let s = f.store.as_ref();
    let mut sp = spec(&f.v2, &[&f.group], &[(100.0, "0s")]);
    sp.device_timeout = "5m".into();
    sp.max_retries = 1;
    let id = create(s, sp).await;
    tick(s, t0()).await;
    let d = &f.devices[0];
    let a1 = s.current_assignment(d, t0()).await.unwrap().unwrap();
    assert_eq!(
        (a1.attempt, a1.assigned_at, a1.deadline),
        (1, t0(), t0() + Duration::minutes(5))
    );
    assert!(s
        .get_rollout_device(&id, d)
        .await
        .unwrap()
        .delivered_at
        .is_some());

    // Device 2 answers in time; the others stay silent.
    s.record_result(&f.devices[2], &id, UpdateOutcome::Succeeded, t0())
        .await
        .unwrap();
    tick(s, t0() + Duration::minutes(5) - Duration::seconds(1)).await;
    assert_eq!(s.get_rollout_device(&id, d).await.unwrap().attempt, 1);
    let retry_at = t0() + Duration::minutes(5);
    tick(s, retry_at).await;
    let row = s.get_rollout_device(&id, d).await.unwrap();
    assert_eq!(
        (
            row.state,
            row.attempt,
            row.delivered_at,
            row.reason.as_deref()
        ),
        (
            DeviceState::InProgress,
            2,
            None,
            Some("attempt 1 timed out; retrying")
        )
    );
    let a2 = s.current_assignment(d, retry_at).await.unwrap().unwrap();
    assert_eq!(
        (a2.attempt, a2.deadline),
        (2, retry_at + Duration::minutes(5))
    );
    assert_eq!(seen(s, &id).await, st("running", [3, 0, 2, 1, 0, 0], 0));

    tick(s, retry_at + Duration::minutes(5)).await;
    let row = s.get_rollout_device(&id, d).await.unwrap();
    assert_eq!(
        (row.state, row.reason.as_deref()),
        (DeviceState::Failed, Some("timed out after 2 attempts"))
    );
    assert_eq!(seen(s, &id).await, st("completed", [3, 0, 0, 1, 2, 0], 0));
    // A late report contradicts the recorded failure.
    let late = s
        .record_result(
            d,
            &id,
            UpdateOutcome::Succeeded,
            retry_at + Duration::hours(1),
        )
        .await;
    assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
}

/// Runs `SELECT COUNT(*) …` on the store's database itself (SQLite file
/// or PostgreSQL database of `dir`), to see what was written.
async fn raw_count(dir: &tempfile::TempDir, sql: &str) -> i64 {
    if common::pg::backend_is_postgres() {
        let url = common::pg::database_for(dir.path()).await;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    } else {
        let conn = rusqlite::Connection::open(dir.path().join("fleetd.db")).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// An assignment batch is a wave: one `rollout_waves` row, no write to
/// the devices' rows, which read as in progress with the wave's phase,
/// time and deadline. A device's row is written when it fetches, reports
/// (once, or twice in a batch) or times out, and then carries the same
/// values; the wave goes when its deadline has passed.
#[tokio::test]
async fn an_assignment_wave_writes_device_rows_only_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 6).await;
    let s = f.store.as_ref();
    let first = create(s, spec(&f.v1, &[&f.group], &[(100.0, "0s")])).await;
    tick(s, t0()).await;
    answer(s, &first, &f.devices, t0(), ok).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &first).await.0, "completed");
    assert_eq!(
        raw_count(&dir, "SELECT COUNT(*) FROM rollout_waves").await,
        0
    );

    let mut sp = spec(&f.v2, &[&f.group], &[(100.0, "0s")]);
    sp.device_timeout = "5m".into();
    sp.max_retries = 1;
    let id = create(s, sp).await;
    let at = t0() + Duration::hours(1);
    tick(s, at).await;
    assert_eq!(seen(s, &id).await, st("running", [6, 0, 6, 0, 0, 0], 0));
    let pending_rows = "SELECT COUNT(*) FROM rollout_devices
                         WHERE state = 'pending' AND attempt = 0 AND assigned_at IS NULL";
    assert_eq!(
        raw_count(&dir, pending_rows).await,
        6,
        "no device row written"
    );
    assert_eq!(
        raw_count(&dir, "SELECT COUNT(*) FROM rollout_waves").await,
        1
    );
    assert_eq!(in_state(s, &id, DeviceState::InProgress).await.len(), 6);
    let d = &f.devices;
    let row = s.get_rollout_device(&id, &d[0]).await.unwrap();
    let wave_values = |row: &fleetd::store::engine::RolloutDevice| {
        (row.attempt, row.phase, row.assigned_at, row.deadline)
    };
    let expected = (1, Some(0), Some(at), Some(at + Duration::minutes(5)));
    assert_eq!(row.state, DeviceState::InProgress);
    assert_eq!(wave_values(&row), expected);
    assert_eq!((row.delivered_at, row.updated_at), (None, at));

    // Device 0 fetches: its row is written, delivered.
    let fetched = at + Duration::minutes(1);
    let a = s.current_assignment(&d[0], fetched).await.unwrap().unwrap();
    assert_eq!(
        (a.attempt, a.assigned_at, a.deadline, a.firmware_id.as_str()),
        (1, at, at + Duration::minutes(5), f.v2.as_str())
    );
    let row = s.get_rollout_device(&id, &d[0]).await.unwrap();
    assert_eq!(wave_values(&row), expected);
    assert_eq!(row.delivered_at, Some(fetched));
    assert_eq!(row.previous_firmware_id.as_deref(), Some(f.v1.as_str()));
    assert_eq!(raw_count(&dir, pending_rows).await, 5);

    // Device 1 reports without fetching; device 2 twice in one batch.
    s.record_result(&d[1], &id, UpdateOutcome::Succeeded, fetched)
        .await
        .unwrap();
    let row = s.get_rollout_device(&id, &d[1]).await.unwrap();
    assert_eq!(row.state, DeviceState::Succeeded);
    assert_eq!(wave_values(&row), expected);
    assert_eq!(row.previous_firmware_id.as_deref(), Some(f.v1.as_str()));
    let item = || ResultRecord {
        device_id: d[2].clone(),
        rollout_id: id.clone(),
        outcome: failed("flash write error"),
        at: fetched,
    };
    let outcomes = s.record_results(vec![item(), item()]).await.unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let row = s.get_rollout_device(&id, &d[2]).await.unwrap();
    assert_eq!(
        (row.state, row.reason.as_deref()),
        (DeviceState::Failed, Some("flash write error"))
    );
    assert_eq!(wave_values(&row), expected);
    assert_eq!(raw_count(&dir, pending_rows).await, 3);
    tick(s, fetched).await;
    assert_eq!(seen(s, &id).await, st("running", [6, 0, 4, 1, 1, 0], 0));

    // The deadline passes: every silent device is retried, the wave goes.
    let retry_at = at + Duration::minutes(5);
    tick(s, retry_at).await;
    assert_eq!(
        raw_count(&dir, "SELECT COUNT(*) FROM rollout_waves").await,
        0
    );
    assert_eq!(raw_count(&dir, pending_rows).await, 0);
    for device in [&d[0], &d[3], &d[4], &d[5]] {
        let row = s.get_rollout_device(&id, device).await.unwrap();
        assert_eq!(
            (row.state, row.attempt, row.deadline, row.reason.as_deref()),
            (
                DeviceState::InProgress,
                2,
                Some(retry_at + Duration::minutes(5)),
                Some("attempt 1 timed out; retrying")
            ),
            "{device}"
        );
    }
    answer(
        s,
        &id,
        &[d[0].clone(), d[3].clone(), d[4].clone(), d[5].clone()],
        retry_at,
        ok,
    )
    .await;
    tick(s, retry_at).await;
    assert_eq!(seen(s, &id).await, st("completed", [6, 0, 0, 5, 1, 0], 0));
}

// ------------------------------------------------------------------ windows and schedules

#[tokio::test]
async fn a_closed_maintenance_window_blocks_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 10).await;
    let s = f.store.as_ref();
    let mut sp = spec(&f.v2, &[&f.group], &[(30.0, "0s"), (100.0, "0s")]);
    // Tuesdays 02:00–04:00 UTC; t0 is Monday 10:00.
    sp.maintenance_window = Some(MaintenanceWindowRecord {
        days: vec!["tue".into()],
        start: "02:00".into(),
        duration: "2h".into(),
    });
    let id = create(s, sp).await;
    tick(s, t0()).await;
    assert_eq!(
        seen(s, &id).await,
        st("running", [10, 10, 0, 0, 0, 0], 0),
        "started (targets known) but nothing assigned"
    );
    tick(s, t("2030-06-04T01:59:59Z")).await;
    assert_eq!(seen(s, &id).await.1[2], 0);
    let open = t("2030-06-04T02:00:00Z");
    tick(s, open).await;
    assert_eq!(seen(s, &id).await, st("running", [10, 7, 3, 0, 0, 0], 0));
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    answer(s, &id, &wave, open, ok).await;
    // Phase 1 finished after the window closed: results count, the next
    // phase waits for next Tuesday.
    let closed = t("2030-06-04T04:00:00Z");
    tick(s, closed).await;
    tick(s, closed + Duration::days(6)).await;
    assert_eq!(seen(s, &id).await, st("running", [10, 7, 0, 3, 0, 0], 1));
    let next = t("2030-06-11T02:00:00Z");
    tick(s, next).await;
    assert_eq!(seen(s, &id).await, st("running", [10, 0, 7, 3, 0, 0], 1));
}

#[tokio::test]
async fn start_at_delays_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 4).await;
    let s = f.store.as_ref();
    let mut sp = spec(&f.v2, &[&f.group], &[(100.0, "0s")]);
    sp.start_at = Some("2030-06-03T12:00:00Z".into());
    let id = create(s, sp).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &id).await, st("pending", [4, 0, 0, 0, 0, 0], 0));
    assert!(s
        .list_rollout_devices(&id, None, None, 10)
        .await
        .unwrap()
        .is_empty());
    tick(s, t("2030-06-03T12:00:00Z")).await;
    assert_eq!(seen(s, &id).await, st("running", [4, 0, 4, 0, 0, 0], 0));
}

// ------------------------------------------------------------------ operator states

#[tokio::test]
async fn operator_pause_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 10).await;
    let s = f.store.as_ref();
    let id = create(s, spec(&f.v2, &[&f.group], &[(50.0, "0s"), (100.0, "0s")])).await;
    tick(s, t0()).await;
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    assert!(s
        .current_assignment(&wave[0], t0())
        .await
        .unwrap()
        .is_some());

    let r = set_state(s, &id, RolloutState::Paused).await;
    assert_eq!(r.status, "paused");
    tick(s, t0()).await;
    // Not yet fetched: held back while paused. Fetched: still handed out.
    assert!(s
        .current_assignment(&wave[1], t0())
        .await
        .unwrap()
        .is_none());
    assert!(s
        .current_assignment(&wave[0], t0())
        .await
        .unwrap()
        .is_some());
    answer(s, &id, &wave[..1], t0(), ok).await;
    tick(s, t0() + Duration::hours(2)).await;
    assert_eq!(seen(s, &id).await, st("paused", [10, 5, 4, 1, 0, 0], 0));

    let r = set_state(s, &id, RolloutState::Cancelled).await;
    assert_eq!(r.status, "cancelled");
    tick(s, t0() + Duration::hours(2)).await;
    assert_eq!(seen(s, &id).await, st("cancelled", [10, 0, 0, 1, 0, 0], 0));
    assert_eq!(check(s, &id).await.cancelled, 9);
    assert!(s
        .current_assignment(&wave[1], t0())
        .await
        .unwrap()
        .is_none());
    assert!(s.engine_rollout_ids().await.unwrap().is_empty());
    assert_eq!(
        statuses(s, &id).await,
        pairs(&[("pending", "running")]),
        "the operator's changes are audited as updates of the rollout"
    );
}

// ------------------------------------------------------------------ continuous

#[tokio::test]
async fn continuous_rollouts_pick_up_late_joiners() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 3).await;
    let s = f.store.as_ref();
    let late_group = group(s, "late", Some(&f.group), Some("attr.batch == \"2\"")).await;
    let mut sp = spec(&f.v2, &[&f.group], &[(100.0, "0s")]);
    sp.continuous = true;
    let id = create(s, sp).await;
    tick(s, t0()).await;
    answer(s, &id, &f.devices, t0(), ok).await;
    tick(s, t0() + Duration::seconds(1)).await;
    assert_eq!(
        seen(s, &id).await,
        st("running", [3, 0, 0, 3, 0, 0], 0),
        "a continuous rollout does not complete"
    );

    let static_joiner = device(s, "j1", "m1", &[&f.group], &[]).await;
    let query_joiner = device(s, "j2", "m1", &[], &[("batch", "2")]).await;
    device(s, "j3", "m9", &[&late_group], &[]).await; // incompatible
                                                      // Rescans happen every 30 s.
    tick(s, t0() + Duration::seconds(29)).await;
    assert_eq!(seen(s, &id).await.1[0], 3);
    let now = t0() + Duration::seconds(30);
    tick(s, now).await;
    assert_eq!(seen(s, &id).await, st("running", [5, 0, 2, 3, 0, 0], 0));
    let mut joiners = in_state(s, &id, DeviceState::InProgress).await;
    joiners.sort();
    let mut expected = vec![static_joiner, query_joiner];
    expected.sort();
    assert_eq!(joiners, expected);
    answer(s, &id, &joiners, now, ok).await;
    tick(s, now + Duration::minutes(1)).await;
    assert_eq!(seen(s, &id).await, st("running", [5, 0, 0, 5, 0, 0], 0));
}

/// A device that joins a continuous rollout's groups after the assignment
/// has passed its id (its id is lower than every assigned one) is still
/// assigned: targets added after the start wait in the waiting index, not
/// above the assignment cursor.
#[tokio::test]
async fn a_late_joiner_below_the_assignment_cursor_is_assigned() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 3).await;
    let s = f.store.as_ref();
    let target = group(s, "target", None, None).await;
    let join = |id: String| {
        let target = target.clone();
        async move {
            let d = s.get_device(&id).await.unwrap();
            let mut group_ids = d.group_ids.clone();
            group_ids.push(target);
            s.update_device(
                &actor(),
                &id,
                d.version,
                DeviceSpec {
                    name: d.name,
                    hardware: d.hardware,
                    attributes: d.attributes,
                    group_ids,
                },
            )
            .await
            .unwrap();
        }
    };
    let mut ids = f.devices.clone();
    ids.sort();
    for id in &ids[1..] {
        join(id.clone()).await;
    }
    let mut sp = spec(&f.v2, &[&target], &[(100.0, "0s")]);
    sp.continuous = true;
    let id = create(s, sp).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &id).await, st("running", [2, 0, 2, 0, 0, 0], 0));
    join(ids[0].clone()).await;
    let now = t0() + Duration::seconds(30);
    tick(s, now).await;
    assert_eq!(seen(s, &id).await, st("running", [3, 0, 3, 0, 0, 0], 0));
    let row = s.get_rollout_device(&id, &ids[0]).await.unwrap();
    assert_eq!((row.state, row.reason), (DeviceState::InProgress, None));
}

// ------------------------------------------------------------------ results

#[tokio::test]
async fn results_are_idempotent_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 4).await;
    let s = f.store.as_ref();
    let id = create(s, spec(&f.v2, &[&f.group], &[(50.0, "0s"), (100.0, "0s")])).await;
    tick(s, t0()).await;
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    let pending = in_state(s, &id, DeviceState::Pending).await;
    let d = &wave[0];
    for _ in 0..3 {
        s.record_result(d, &id, UpdateOutcome::Succeeded, t0())
            .await
            .unwrap();
        assert_eq!(seen(s, &id).await, st("running", [4, 2, 1, 1, 0, 0], 0));
    }
    let e = &wave[1];
    for _ in 0..2 {
        s.record_result(e, &id, failed("disk full"), t0())
            .await
            .unwrap();
        s.record_result(e, &id, failed("another reason"), t0())
            .await
            .unwrap();
    }
    assert_eq!(seen(s, &id).await, st("running", [4, 2, 0, 1, 1, 0], 0));
    assert_eq!(
        s.get_rollout_device(&id, e)
            .await
            .unwrap()
            .reason
            .as_deref(),
        Some("disk full"),
        "the first report wins"
    );
    check(s, &id).await;

    let conflict = s.record_result(d, &id, failed("x"), t0()).await;
    assert!(
        matches!(&conflict, Err(StoreError::Conflict { message, .. })
            if message.contains("already reported succeeded")),
        "{conflict:?}"
    );
    let early = s
        .record_result(&pending[0], &id, UpdateOutcome::Succeeded, t0())
        .await;
    assert!(
        matches!(early, Err(StoreError::Conflict { .. })),
        "{early:?}"
    );
    assert!(matches!(
        s.record_result(d, "no-such-rollout", UpdateOutcome::Succeeded, t0())
            .await,
        Err(StoreError::NotFound {
            kind: ObjectKind::Rollout,
            ..
        })
    ));
    assert!(matches!(
        s.record_result("no-such-device", &id, UpdateOutcome::Succeeded, t0())
            .await,
        Err(StoreError::NotFound {
            kind: ObjectKind::Device,
            ..
        })
    ));
    assert!(s
        .current_assignment("no-such-device", t0())
        .await
        .unwrap()
        .is_none());
    assert_eq!(seen(s, &id).await, st("running", [4, 2, 0, 1, 1, 0], 0));

    // A device that reverted on its own counts as rolled back.
    tick(s, t0()).await;
    let rest = in_state(s, &id, DeviceState::InProgress).await;
    s.record_result(&rest[0], &id, UpdateOutcome::RolledBack, t0())
        .await
        .unwrap();
    s.record_result(&rest[0], &id, UpdateOutcome::RolledBack, t0())
        .await
        .unwrap();
    assert_eq!(seen(s, &id).await.1, [4, 0, 1, 1, 1, 1]);
}

#[tokio::test]
async fn a_batch_of_results_is_one_transaction_with_an_outcome_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 6).await;
    let s = f.store.as_ref();
    let id = create(s, spec(&f.v2, &[&f.group], &[(50.0, "0s"), (100.0, "0s")])).await;
    tick(s, t0()).await;
    let wave = in_state(s, &id, DeviceState::InProgress).await;
    let pending = in_state(s, &id, DeviceState::Pending).await;
    assert_eq!((wave.len(), pending.len()), (3, 3));
    s.record_result(&wave[2], &id, UpdateOutcome::Succeeded, t0())
        .await
        .unwrap();
    let item = |device: &str, rollout: &str, outcome: UpdateOutcome| ResultRecord {
        device_id: device.to_owned(),
        rollout_id: rollout.to_owned(),
        outcome,
        at: t0(),
    };
    let outcomes = s
        .record_results(vec![
            item(&wave[0], &id, UpdateOutcome::Succeeded),
            // The same report twice in one batch: the second changes nothing.
            item(&wave[0], &id, UpdateOutcome::Succeeded),
            item(&wave[1], &id, failed("disk full")),
            // Contradicts what wave[2] reported before the batch.
            item(&wave[2], &id, failed("late")),
            // Never assigned.
            item(&pending[0], &id, UpdateOutcome::Succeeded),
            item("no-such-device", &id, UpdateOutcome::Succeeded),
            item(&wave[1], "no-such-rollout", UpdateOutcome::Succeeded),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 7);
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok() && outcomes[2].is_ok());
    assert!(
        matches!(&outcomes[3], Err(StoreError::Conflict { message, .. })
            if message.contains("already reported succeeded")),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(outcomes[4], Err(StoreError::Conflict { .. })),
        "{:?}",
        outcomes[4]
    );
    assert!(matches!(
        outcomes[5],
        Err(StoreError::NotFound {
            kind: ObjectKind::Device,
            ..
        })
    ));
    assert!(matches!(
        outcomes[6],
        Err(StoreError::NotFound {
            kind: ObjectKind::Rollout,
            ..
        })
    ));
    // Exactly the accepted results moved the counters: targeted 6, pending
    // 3, in progress 0, succeeded 2, failed 1.
    assert_eq!(seen(s, &id).await, st("running", [6, 3, 0, 2, 1, 0], 0));
    check(s, &id).await;
    // The failure landed with its reason; the repeated success once.
    let one = s.get_rollout_device(&id, &wave[1]).await.unwrap();
    assert_eq!(
        (
            one.state,
            one.reason.as_deref(),
            one.rollback,
            one.updated_at
        ),
        (DeviceState::Failed, Some("disk full"), None, t0())
    );
    let twice = s.get_rollout_device(&id, &wave[0]).await.unwrap();
    assert_eq!(
        (twice.state, twice.reason, twice.updated_at),
        (DeviceState::Succeeded, None, t0())
    );
    // An empty batch is a no-op.
    assert!(s.record_results(Vec::new()).await.unwrap().is_empty());
}

/// A batch larger than one statement of the store's result write: new
/// reports and repeats of earlier ones mixed in every statement, so that
/// some write fewer rows than they name.
#[tokio::test]
async fn a_large_batch_mixes_new_reports_with_repeats() {
    const N: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, N).await;
    let s = f.store.as_ref();
    let id = create(s, spec(&f.v2, &[&f.group], &[(100.0, "0s")])).await;
    tick(s, t0()).await;
    let mut wave = in_state(s, &id, DeviceState::InProgress).await;
    assert_eq!(wave.len(), N);
    // Not in id order, so that repeats and new reports share statements.
    wave.sort_by_key(|d| d.chars().rev().collect::<String>());
    let item = |device: &str, outcome: UpdateOutcome| ResultRecord {
        device_id: device.to_owned(),
        rollout_id: id.clone(),
        outcome,
        at: t0(),
    };
    let first: Vec<ResultRecord> = wave[..N / 2]
        .iter()
        .map(|d| item(d, UpdateOutcome::Succeeded))
        .collect();
    for outcome in s.record_results(first).await.unwrap() {
        outcome.unwrap();
    }
    // The first half again (every seventh contradicting itself), and the
    // second half for the first time (every fiftieth failing).
    let expect = |i: usize| match (i < N / 2, i.is_multiple_of(7), i.is_multiple_of(50)) {
        (true, true, _) => None,
        (true, false, _) | (false, _, false) => Some(DeviceState::Succeeded),
        (false, _, true) => Some(DeviceState::Failed),
    };
    let second: Vec<ResultRecord> = wave
        .iter()
        .enumerate()
        .map(|(i, d)| match expect(i) {
            None => item(d, failed("late")),
            Some(DeviceState::Failed) => item(d, failed("disk full")),
            Some(_) => item(d, UpdateOutcome::Succeeded),
        })
        .collect();
    let outcomes = s.record_results(second).await.unwrap();
    assert_eq!(outcomes.len(), N);
    for (i, outcome) in outcomes.iter().enumerate() {
        match expect(i) {
            None => assert!(
                matches!(outcome, Err(StoreError::Conflict { message, .. })
                    if message.contains("already reported succeeded")),
                "device {i}: {outcome:?}"
            ),
            Some(_) => assert!(outcome.is_ok(), "device {i}: {outcome:?}"),
        }
    }
    let failures = (N / 2..N).filter(|i| i.is_multiple_of(50)).count() as i64;
    assert_eq!(
        seen(s, &id).await.1,
        [N as i64, 0, 0, N as i64 - failures, failures, 0]
    );
    check(s, &id).await;
    for (i, d) in wave.iter().enumerate() {
        let row = s.get_rollout_device(&id, d).await.unwrap();
        let want = expect(i).unwrap_or(DeviceState::Succeeded);
        assert_eq!(row.state, want, "device {i}");
        assert_eq!(row.attempt, 1, "device {i}");
        assert!(
            row.assigned_at.is_some() && row.deadline.is_some(),
            "device {i}"
        );
        let reason = (want == DeviceState::Failed).then_some("disk full");
        assert_eq!(row.reason.as_deref(), reason, "device {i}");
    }
}

// ------------------------------------------------------------------ durability

#[tokio::test]
async fn a_restart_mid_rollout_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 200).await;
    let id;
    let half;
    {
        let s = f.store.as_ref();
        id = create(s, spec(&f.v2, &[&f.group], &[(10.0, "1m"), (100.0, "0s")])).await;
        tick(s, t0()).await;
        let wave = in_state(s, &id, DeviceState::InProgress).await;
        answer(s, &id, &wave, t0(), ok).await;
        tick(s, t0()).await; // phase complete, soaking
        tick(s, t0() + Duration::minutes(1)).await;
        half = in_state(s, &id, DeviceState::InProgress).await;
        assert_eq!(half.len(), 180);
        answer(s, &id, &half[..90], t0() + Duration::minutes(1), ok).await;
    }
    let before = seen(f.store.as_ref(), &id).await;
    assert_eq!(before, st("running", [200, 0, 90, 110, 0, 0], 1));
    drop(f.store);

    // A new process on the same file.
    let store = open(&dir).await;
    let s = store.as_ref();
    if common::pg::backend_is_postgres() {
        // On PostgreSQL the dead process's engine lease must expire before
        // another takes its rollouts over.
        tokio::time::sleep(lease_ttl() + std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(seen(s, &id).await, before);
    check(s, &id).await;
    let now = t0() + Duration::minutes(2);
    // Two engines ticking at once (say, a second replica): the guards keep
    // them from doing anything twice.
    let (a, b) = tokio::join!(tick_once(s, now), tick_once(s, now));
    assert_eq!((a.unwrap().errors, b.unwrap().errors), (0, 0));
    assert_eq!(seen(s, &id).await, before);
    answer(s, &id, &half[90..], now, ok).await;
    tick(s, now).await;
    assert_eq!(
        seen(s, &id).await,
        st("completed", [200, 0, 0, 200, 0, 0], 1)
    );
    let rows = s.list_rollout_devices(&id, None, None, 1000).await.unwrap();
    assert_eq!(rows.len(), 200);
    assert!(
        rows.iter().all(|r| r.attempt == 1),
        "no device assigned twice"
    );
}

// ------------------------------------------------------------------ scale

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_devices_complete_with_exact_counts() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let setup = Instant::now();
    let f = fleet(&dir, N).await;
    let setup = setup.elapsed();
    let s = f.store.as_ref();
    let id = create(
        s,
        threshold(
            spec(
                &f.v2,
                &[&f.group],
                &[(1.0, "0s"), (10.0, "0s"), (100.0, "0s")],
            ),
            5.0,
            50,
            "pause",
        ),
    )
    .await;

    let mut now = t0();
    let mut engine_time = std::time::Duration::ZERO;
    let mut device_time = std::time::Duration::ZERO;
    let mut ticks = 0;
    let mut results = 0;
    let mut read_time = std::time::Duration::ZERO;
    loop {
        let started = Instant::now();
        let report = tick_with(s, now, Options::default()).await.unwrap();
        engine_time += started.elapsed();
        ticks += 1;
        assert_eq!(report.errors, 0);
        let started = Instant::now();
        let (status, counts, _) = seen(s, &id).await;
        read_time = read_time.max(started.elapsed());
        if status == "completed" {
            assert_eq!(counts, [N as i64, 0, 0, N as i64 - 10, 10, 0]);
            break;
        }
        assert_eq!(status, "running");
        let wave = in_state(s, &id, DeviceState::InProgress).await;
        let started = Instant::now();
        // Ten failures in the whole rollout: 0.1%, under the threshold.
        let offset = results;
        answer(s, &id, &wave, now, |i| {
            if (offset + i) % 1000 == 999 {
                failed("sporadic")
            } else {
                UpdateOutcome::Succeeded
            }
        })
        .await;
        results += wave.len();
        device_time += started.elapsed();
        now += Duration::seconds(1);
        assert!(ticks < 50, "the rollout did not finish");
    }
    let (stored, scanned) = s.recount_rollout(&id).await.unwrap();
    assert_eq!(stored, scanned);
    assert_eq!(
        stored.assigned, N as u64,
        "each device assigned exactly once"
    );
    eprintln!(
        "10k devices: setup {setup:?}; engine {engine_time:?} over {ticks} ticks; \
         {results} deliveries+results {device_time:?}; slowest status read {read_time:?}"
    );
}

// ------------------------------------------------------------------ the server runs it

#[tokio::test]
async fn fleetd_serve_runs_the_engine_in_the_background() {
    let (server, _dir) = serve_with_engine_interval(std::time::Duration::from_millis(50)).await;
    let (r, _) = served_rollout(&server, "running").await;
    wait_assigned(&server, &r, 3, std::time::Duration::from_secs(20)).await;
    server.stop().await;
}

#[tokio::test]
async fn creating_or_starting_a_rollout_wakes_the_engine_at_once() {
    // The periodic tick is ten minutes away: only the wake can assign.
    let (server, _dir) = serve_with_engine_interval(std::time::Duration::from_secs(600)).await;
    let (r, _) = served_rollout(&server, "running").await;
    wait_assigned(&server, &r, 3, std::time::Duration::from_secs(5)).await;

    // Created paused, then started by an update.
    let (paused, spec) = served_rollout(&server, "paused").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let path = format!("/v1/rollouts/{}", paused["id"].as_str().unwrap());
    let (_, now) = send(server.get(&path)).await;
    assert_eq!(now["counts"]["in_progress"], 0, "{now}");
    let mut body = spec;
    body["state"] = json!("running");
    body["version"] = now["version"].clone();
    let (status, updated) = send(server.put(&path, &body)).await;
    assert_eq!(status, 200, "{updated}");
    wait_assigned(&server, &paused, 3, std::time::Duration::from_secs(5)).await;
    server.stop().await;
}

async fn serve_with_engine_interval(
    interval: std::time::Duration,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.listen = "127.0.0.1:0".to_owned();
    config.device_listen = Some("127.0.0.1:0".to_owned());
    config.engine_interval = interval;
    (TestServer::start_with(config).await, dir)
}

/// A group of three devices, a firmware and a rollout over them in
/// `state`; returns the rollout and the body it was created with.
async fn served_rollout(
    server: &TestServer,
    state: &str,
) -> (serde_json::Value, serde_json::Value) {
    let name = format!("fleet-{}", uuid::Uuid::new_v4().simple());
    let g = server.create_group(json!({ "name": name })).await;
    for i in 0..3 {
        let (status, body) = send(server.post(
            "/v1/devices",
            &json!({"name": format!("{name}-d{i}"), "hardware": "m1", "group_ids": [g["id"]]}),
        ))
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, fw) = send(server.post(
        "/v1/firmware",
        &json!({"product": name, "version": "1.0.0", "hardware": ["m1"],
                "url": "https://fw.example.com/m.bin", "sha256": "ab".repeat(32), "size_bytes": 10}),
    ))
    .await;
    assert_eq!(status, 201, "{fw}");
    let spec = json!({"name": name, "firmware_id": fw["id"], "target_group_ids": [g["id"]],
                      "phases": [{"percent": 100}], "state": state});
    let (status, r) = send(server.post("/v1/rollouts", &spec)).await;
    assert_eq!(status, 201, "{r}");
    (r, spec)
}

async fn wait_assigned(
    server: &TestServer,
    rollout: &serde_json::Value,
    n: i64,
    within: std::time::Duration,
) {
    let path = format!("/v1/rollouts/{}", rollout["id"].as_str().unwrap());
    let deadline = Instant::now() + within;
    loop {
        let (_, r) = send(server.get(&path)).await;
        if r["status"] == "running" && r["counts"]["in_progress"] == n {
            assert_eq!(r["counts"]["pending"], 0);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not assigned within {within:?}: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------ edge cases

#[tokio::test]
async fn busy_devices_wait_and_deleted_devices_are_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 4).await;
    let s = f.store.as_ref();
    let first = create(s, spec(&f.v1, &[&f.group], &[(100.0, "0s")])).await;
    tick(s, t0()).await;
    assert_eq!(seen(s, &first).await.1[2], 4);
    // A second rollout over the same devices: they are busy with the
    // first, so it starts but assigns nothing (and does not spin).
    let second = create(s, spec(&f.v2, &[&f.group], &[(100.0, "0s")])).await;
    let report = tick(s, t0()).await;
    assert!(report.steps < 10, "{report:?}");
    assert_eq!(seen(s, &second).await, st("running", [4, 4, 0, 0, 0, 0], 0));
    // The assignment has passed them: each waits, saying why.
    let waiting = s
        .list_rollout_devices(&second, Some(DeviceState::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 4);
    for d in &waiting {
        assert_eq!(
            d.reason.as_deref(),
            Some("waiting: another rollout is updating this device"),
            "{d:?}"
        );
    }
    // Device 0 finishes the first rollout; device 3 is deleted.
    answer(s, &first, &f.devices[..1], t0(), ok).await;
    s.delete_device(&actor(), &f.devices[3], None)
        .await
        .unwrap();
    tick(s, t0()).await;
    assert_eq!(
        in_state(s, &second, DeviceState::InProgress).await,
        f.devices[..1].to_vec()
    );
    assert_eq!(seen(s, &second).await, st("running", [4, 2, 1, 0, 0, 0], 0));
    let taken = s.get_rollout_device(&second, &f.devices[0]).await.unwrap();
    assert_eq!(
        taken.previous_firmware_id.as_deref(),
        Some(f.v1.as_str()),
        "what the first rollout installed"
    );
    let gone = s.get_rollout_device(&second, &f.devices[3]).await.unwrap();
    assert_eq!(
        (gone.state, gone.reason.as_deref()),
        (DeviceState::Cancelled, Some("device deleted"))
    );
    // One assignment at a time per device: the oldest first.
    let a = s
        .current_assignment(&f.devices[1], t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.rollout_id, first);
}

/// A device deleted before the wave that would take it is cancelled, not
/// counted in progress until it times out.
#[tokio::test]
async fn a_device_deleted_before_its_wave_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&dir, 4).await;
    let s = f.store.as_ref();
    let id = create(s, spec(&f.v2, &[&f.group], &[(50.0, "0s"), (100.0, "0s")])).await;
    tick(s, t0()).await;
    let first = in_state(s, &id, DeviceState::InProgress).await;
    assert_eq!(first, f.devices[..2].to_vec());
    s.delete_device(&actor(), &f.devices[3], None)
        .await
        .unwrap();
    answer(s, &id, &first, t0(), ok).await;
    tick(s, t0()).await;
    assert_eq!(
        in_state(s, &id, DeviceState::InProgress).await,
        f.devices[2..3].to_vec()
    );
    let gone = s.get_rollout_device(&id, &f.devices[3]).await.unwrap();
    assert_eq!(
        (gone.state, gone.reason.as_deref()),
        (DeviceState::Cancelled, Some("device deleted"))
    );
    let c = seen(s, &id).await.1;
    assert_eq!((c[1], c[2], c[3]), (0, 1, 2));
}

#[tokio::test]
async fn an_empty_target_set_completes_at_once_unless_continuous() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = store.as_ref();
    let g = group(s, "empty", None, None).await;
    let fw = firmware(s, "1.0.0").await;
    let snapshot = create(s, spec(&fw, &[&g], &[(100.0, "0s")])).await;
    let mut sp = spec(&fw, &[&g], &[(10.0, "0s"), (100.0, "0s")]);
    sp.continuous = true;
    let continuous = create(s, sp).await;
    tick(s, t0()).await;
    assert_eq!(
        seen(s, &snapshot).await,
        st("completed", [0, 0, 0, 0, 0, 0], 0)
    );
    assert_eq!(
        seen(s, &continuous).await,
        st("running", [0, 0, 0, 0, 0, 0], 0)
    );
    assert_eq!(
        s.engine_rollout_ids().await.unwrap(),
        vec![continuous.clone()]
    );
    // The first device to join is assigned (10% of 1 rounds up to 1).
    let d = device(s, "first", "m1", &[&g], &[]).await;
    tick(s, t0() + Duration::minutes(1)).await;
    assert_eq!(in_state(s, &continuous, DeviceState::InProgress).await, [d]);
}
