//! Smoke run of `benches/engine.rs` (the rollout engine, status read and
//! dynamic group benchmark) at a tiny size, so it cannot rot: the numbers
//! must be sane, not fast.

#[allow(dead_code)]
#[path = "../benches/engine.rs"]
mod engine_bench;

use engine_bench::{EngineBench, EngineReport};

/// Runs `bench` on a fresh data directory.
async fn run(bench: EngineBench) -> EngineReport {
    let dir = tempfile::tempdir().unwrap();
    bench.run(dir.path()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_bench_runs_a_rollout_to_completion() {
    let r = run(EngineBench {
        reads: 50,
        fleetd_bin: Some(env!("CARGO_BIN_EXE_fleetd").into()),
        ..EngineBench::new(2_000)
    })
    .await;
    assert_eq!(r.status, "completed", "{r:?}");
    assert_eq!(r.succeeded, 2_000);
    assert!(r.counters_exact, "{r:?}");
    assert_eq!(r.transitions, 4_000);
    assert!(r.transitions_per_sec > 0.0 && r.transitions_per_sec.is_finite());
    assert!(r.rollout_secs >= r.assign_secs + r.results_secs);
    assert!(r.status_read_p99_us >= r.status_read_p50_us && r.status_read_p50_us > 0.0);
    // Every fourth device is in the dynamic group.
    assert_eq!(r.group_query_members, 500);
    assert!(r.group_query_secs > 0.0);
    assert!(r.db_bytes > 0);
    // One release: no device has a previous firmware to return to.
    assert_eq!(r.previous_firmware_known, 0);
    // The real fleetd on the same data directory.
    let s = r.serve.expect("fleetd serve measured");
    assert!(
        s.rss_idle_kib > 0 && s.rss_peak_kib >= s.rss_after_kib,
        "{s:?}"
    );
    assert!(s.http_status_p99_us >= s.http_status_p50_us && s.http_status_p50_us > 0.0);
    assert_eq!(s.http_group_members, 500, "{s:?}");
}

/// With an earlier release that every device reports running, every
/// result records it as the firmware a rollback would reassign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_bench_finds_each_devices_previous_release() {
    let r = run(EngineBench {
        reads: 10,
        previous_release: true,
        ..EngineBench::new(1_000)
    })
    .await;
    assert_eq!(r.status, "completed", "{r:?}");
    assert!(r.counters_exact, "{r:?}");
    assert_eq!(r.previous_firmware_known, 1_000, "{r:?}");
}

/// Results in a shuffled device order (`--random-order`) complete the
/// rollout with the same exact counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_bench_takes_results_in_random_order() {
    let r = run(EngineBench {
        reads: 10,
        random_order: true,
        ..EngineBench::new(1_000)
    })
    .await;
    assert!(r.random_order);
    assert_eq!(r.status, "completed", "{r:?}");
    assert_eq!(r.succeeded, 1_000, "{r:?}");
    assert!(r.counters_exact, "{r:?}");
}
