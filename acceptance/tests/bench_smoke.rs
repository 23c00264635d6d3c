//! Smoke run of `make bench` (`tools/bench.py --smoke`): the provider
//! handshake against the Go null provider, terraform plan/apply of a few
//! fleet resources against as many `null_resource`, and `fleet-sim bench`
//! (check-ins, enrollments, rollout assignments against the no-op device
//! route), all on the debug binaries at tiny sizes, so the benchmark
//! driver cannot rot. The figures must be sane, not fast. (The engine part
//! is smoked by `fleetd/tests/bench_smoke.rs`.)

use std::process::Command;

use acceptance::{bin_dir, terraform_path, workspace_root};
use serde_json::Value;

#[test]
fn bench_driver_produces_every_figure() {
    bin_dir(); // builds the debug binaries
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("bench.json");
    let result = Command::new("python3")
        .current_dir(workspace_root())
        .args(["tools/bench.py", "--smoke", "--json-out"])
        .arg(&json)
        .env("TF_ACC_TERRAFORM_PATH", terraform_path())
        .output()
        .expect("run python3 tools/bench.py");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "bench.py --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    let hs = &raw["handshake"];
    for k in ["ours", "null"] {
        let v = hs[k].as_f64().unwrap();
        assert!(v > 0.0 && v < 10.0, "handshake {k}: {v}");
    }
    let tf = &raw["terraform"][0];
    assert_eq!(tf["n"], 3);
    for phase in ["apply", "plan"] {
        // The bare anchor, the one padded to the fleet state's size, and
        // the one padded to the size of the attributes SPEC.md names.
        for provider in ["fleet", "null", "null-padded", "null-575"] {
            let runs = tf[phase][provider].as_array().unwrap();
            assert!(!runs.is_empty(), "{phase} {provider}");
            assert!(runs.iter().all(|t| t.as_f64().unwrap() > 0.0));
        }
    }
    let dev = &raw["device"][0];
    assert_eq!(dev["devices"], 20, "{dev}");
    assert_eq!(dev["enroll"]["ops"], 20, "{dev}");
    assert_eq!(dev["rollout_assigned"], 20, "{dev}");
    for rate in [
        "enroll",
        "fresh_ping",
        "keepalive_ping",
        "checkin",
        "checkin_resend",
    ] {
        assert!(
            dev[rate]["per_sec"].as_f64().unwrap() > 0.0,
            "{rate}: {dev}"
        );
        // fleetd runs as its own process: its CPU per operation is read
        // from /proc beside the simulator's.
        for who in ["fleetd_cpu_us", "sim_cpu_us"] {
            let us = dev[rate][who].as_f64();
            assert!(us.is_some_and(|us| us >= 0.0), "{rate} {who}: {dev}");
        }
    }
    // The same device benchmark on PostgreSQL and SQLite.
    for store in ["sqlite", "postgres"] {
        for run in raw["pg"][store].as_array().unwrap() {
            assert_eq!(run["devices"], 20, "{run}");
            assert!(run["checkin"]["per_sec"].as_f64().unwrap() > 0.0, "{run}");
        }
    }
    // The table names every row.
    for row in [
        "provider start → handshake line",
        "apply (create) 3 resources",
        "plan with refresh, 3 resources",
        "check-ins/s, 20 devices",
        "enrollments/s, 20 devices",
        "rollout assignments/min, 20 devices",
        "process floor: exec → one line",
        "apply (create) 3 resources, anchor with the same state size",
        "plan with refresh, 3: Terraform alone, null_resource at",
        "check-ins/s on PostgreSQL, 20 devices",
        "enrollments/s on PostgreSQL, 20 devices",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }
}
