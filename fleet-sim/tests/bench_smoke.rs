//! Smoke run of `fleet-sim bench` (device API throughput against the
//! `GET /v1/device/ping` ceiling, enrollments, a rollout's assignments) at
//! a tiny size against an in-process fleetd, so it cannot rot: the numbers
//! must be sane, not fast.

mod common;

use std::time::Duration;

use common::Fleetd;
use fleet_sim::bench::{run, BenchConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_bench_measures_every_figure() {
    let fleetd = Fleetd::start().await;
    let cfg = BenchConfig {
        endpoint: fleetd.endpoint(),
        devices: 20,
        phase: Duration::from_millis(1500),
        connect_concurrency: 8,
        prefix: "smoke".into(),
        // fleetd runs in this process here, so "its" CPU time (read
        // through /proc/<pid>) is the whole process's, like the simulator's.
        fleetd_pid: Some(std::process::id()),
    };
    let r = run(&cfg, &fleetd.admin).await.unwrap();
    assert_eq!(r.enroll.ops, 20, "{r:?}");
    assert_eq!(r.enroll.errors, 0, "{r:?}");
    assert_eq!(r.fresh_ping.ops, 20, "{r:?}");
    for rate in [
        &r.enroll,
        &r.keepalive_ping,
        &r.checkin,
        &r.checkin_resend,
        &r.fresh_ping,
    ] {
        assert!(rate.ops > 0 && rate.per_sec > 0.0, "{r:?}");
        assert!(rate.p99_ms >= rate.p50_ms, "{r:?}");
        let fleetd = rate.fleetd_cpu_us.expect("fleetd CPU read through /proc");
        let sim = rate.sim_cpu_us.expect("own CPU read through /proc");
        assert!(fleetd.is_finite() && fleetd >= 0.0, "{r:?}");
        assert!(sim.is_finite() && sim >= 0.0, "{r:?}");
    }
    assert_eq!(r.keepalive_ping.errors, 0, "{r:?}");
    assert_eq!(r.checkin.errors, 0, "{r:?}");
    assert_eq!(r.checkin_resend.errors, 0, "{r:?}");
    assert!(r.checkin_ratio > 0.0 && r.enroll_ratio > 0.0, "{r:?}");
    assert!(r.checkin_resend_ratio > 0.0, "{r:?}");
    assert!(r.cert_parse_us > 0.0 && r.cert_verify_us > 0.0, "{r:?}");
    assert!(r.rollout_first_secs > 0.0 && r.rollout_first_secs <= r.rollout_secs);
    // Every device was handed the rollout's assignment.
    assert_eq!(r.rollout_assigned, 20, "{r:?}");
    assert!(
        r.rollout_secs > 0.0 && r.rollout_assignments_per_min > 0.0,
        "{r:?}"
    );
    assert!(r.rollout_checkins >= 20);
    // The check-ins that report a digest reported the one of the config
    // they were sent: every device is in sync (a device that never
    // reported one would count as config drift).
    let groups = fleetd.get("/v1/device-groups?limit=100").await;
    let group = groups["items"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "smoke-fleet"))
        .unwrap_or_else(|| panic!("{groups}"));
    let summary = fleetd
        .get(&format!(
            "/v1/device-groups/{}/compliance",
            group["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(summary["in_sync"], 20, "{summary}");
    assert_eq!(summary["config_drift"], 0, "{summary}");
    // The persisted check-ins are visible on the admin API.
    let devices = fleetd.get("/v1/devices?limit=100").await;
    let items = devices["items"]
        .as_array()
        .or(devices["devices"].as_array());
    if let Some(items) = items {
        assert_eq!(items.len(), 20);
        assert!(
            items.iter().all(|d| d["last_seen"].is_string()),
            "{devices}"
        );
    }
    fleetd.stop().await;
}
