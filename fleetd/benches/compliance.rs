//! Compliance summary read at several fleet sizes, on the real SQLite
//! store, in-process.
//!
//! ```text
//! cargo bench -p fleetd --bench compliance -- --devices 10000,1000000 [--json]
//! ```
//!
//! For each size N (setup, not timed as the read): a fresh store; a parent
//! group and a child group with a desired config; N devices, static
//! members of the child, bulk-inserted through a second connection (the
//! rows `create_device` writes, without audit rows); then one check-in per
//! device through `DeviceApiStore::record_checkins` in batches of 2,000
//! (the check-in writer's batch size), every tenth device reporting a
//! wrong config digest — the path that maintains the per-group counters.
//!
//! Timed: `ComplianceStore::group_compliance` of the *parent* (its
//! subgroups rolled up), 2,000 reads, p50/p99; and the counters checked
//! against N (in sync = 9/10 of N).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleetd::domain::compliance::config_digest;
use fleetd::store::device_api::{CheckinReport, ComplianceInput};
use fleetd::store::prelude::*;
use fleetd::store::sqlite::SqliteStore;
use fleetd::store::{Actor, DeviceGroupSpec, SqliteLocation};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Row {
    devices: usize,
    checkins_per_sec: f64,
    read_p50_us: f64,
    read_p99_us: f64,
}

fn bulk_insert(db: &Path, group: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let tx = conn.transaction()?;
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut ids = Vec::with_capacity(n);
    {
        let mut dev = tx.prepare(
            "INSERT INTO devices (id, name, hardware, attributes, created_at, updated_at, version)
             VALUES (?1, ?2, 'm1', '{}', ?3, ?3, 1)",
        )?;
        let mut member =
            tx.prepare("INSERT INTO device_group_members (device_id, group_id) VALUES (?1, ?2)")?;
        for i in 0..n {
            let id = uuid::Uuid::now_v7().to_string();
            dev.execute(rusqlite::params![id, format!("c-{i:08}"), now])?;
            member.execute(rusqlite::params![id, group])?;
            ids.push(id);
        }
    }
    tx.commit()?;
    Ok(ids)
}

async fn run(n: usize) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("fleetd.db");
    let store = SqliteStore::open(SqliteLocation::File(db.clone())).await?;
    let actor = Actor("bench".into());
    let parent = store
        .create_device_group(
            &actor,
            DeviceGroupSpec {
                name: "plant".into(),
                ..Default::default()
            },
        )
        .await?;
    let config = serde_json::json!({"interval": 30});
    let child = store
        .create_device_group(
            &actor,
            DeviceGroupSpec {
                name: "meters".into(),
                parent_id: Some(parent.id.clone()),
                config: config.as_object().cloned().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await?;
    let ids = bulk_insert(&db, &child.id, n)?;
    let desired = config_digest(config.as_object().unwrap());
    let mut groups = vec![parent.id.clone(), child.id.clone()];
    groups.sort();

    let started = Instant::now();
    for chunk in ids.chunks(2_000) {
        let now = Utc::now();
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let digest = if i % 10 == 0 {
                    "00".repeat(32)
                } else {
                    desired.clone()
                };
                (
                    id.clone(),
                    CheckinReport {
                        firmware_version: Some("1.0.0".into()),
                        health: Some("ok".into()),
                        config_digest: Some(digest),
                        compliance: Some(ComplianceInput {
                            desired_digest: desired.clone(),
                            groups: groups.clone(),
                            stale_after_secs: vec![],
                        }),
                    },
                    now,
                )
            })
            .collect();
        store.record_checkins(batch).await?;
    }
    let checkin_secs = started.elapsed().as_secs_f64();

    let mut lat = Vec::with_capacity(2_000);
    let mut last = None;
    for _ in 0..2_000 {
        let t = Instant::now();
        last = Some(store.group_compliance(&parent.id).await?);
        lat.push(t.elapsed());
    }
    let s = last.unwrap();
    let drifting: usize = ids.chunks(2_000).map(|c| c.len().div_ceil(10)).sum();
    anyhow::ensure!(s.total() == n as u64, "counted {} of {n}", s.total());
    anyhow::ensure!(
        s.config_drift as usize == drifting && s.in_sync as usize == n - drifting,
        "config drift {} (expected {drifting})",
        s.config_drift
    );
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    Ok(Row {
        devices: n,
        checkins_per_sec: n as f64 / checkin_secs,
        read_p50_us: q(0.5),
        read_p99_us: q(0.99),
    })
}

fn main() -> anyhow::Result<()> {
    let mut sizes = vec![10_000usize, 100_000];
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--devices" => {
                sizes = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--json" => json = true,
            // `cargo bench` passes --bench.
            _ => {}
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    for n in sizes {
        rows.push(rt.block_on(run(n))?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("| devices | check-ins/s (store, batches of 2,000) | summary read p50 | p99 |");
        println!("|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {:.0} | {:.1} µs | {:.1} µs |",
                r.devices, r.checkins_per_sec, r.read_p50_us, r.read_p99_us
            );
        }
    }
    Ok(())
}
