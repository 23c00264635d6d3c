//! fleetd's OpenAPI document, checked by well-kept outside tools against
//! the real binary:
//! - `openapi-spec-validator` validates `/openapi.json`;
//! - every documented operation is routed (none falls through to the
//!   "no route" fallback);
//! - `schemathesis` generates ≥ 1,000 requests from the document (examples,
//!   coverage, fuzzing and stateful phases, valid and invalid data) and
//!   checks that none gets a 5xx and that every response is documented:
//!   status code, content type and body schema.
//!
//! The tools live in `.tools/pyvenv`, installed (pinned) by
//! `tools/install-python-tools.sh`, which `make tools` runs; this test runs
//! it too, so `cargo test` alone works. `FLEETFORM_FUZZ_EXAMPLES` (cases per
//! operation and phase, default 50) and `FLEETFORM_FUZZ_SEED` tune the run.

mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use process::Process;
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The venv's bin directory, installing the pinned tools if needed.
fn python_tools() -> PathBuf {
    let root = workspace_root();
    let status = Command::new("bash")
        .arg(root.join("tools/install-python-tools.sh"))
        .stdin(Stdio::null())
        .status()
        .expect("run tools/install-python-tools.sh");
    assert!(status.success(), "installing the Python tools failed");
    root.join(".tools/pyvenv/bin")
}

fn fetch_document(fleetd: &Process) -> Value {
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/openapi.json", fleetd.base))
        .bearer_auth(&fleetd.token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

#[test]
fn openapi_document_validates_and_the_api_conforms_to_it() {
    let tools = python_tools();
    let mut fleetd = Process::start("info");
    let doc = fetch_document(&fleetd);
    let spec_path = fleetd.dir().join("openapi.json");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    // 1. The document is valid OpenAPI (3.1, as utoipa declares).
    assert_eq!(doc["openapi"], "3.1.0");
    let (ok, out) = run(Command::new(tools.join("openapi-spec-validator")).arg(&spec_path));
    assert!(ok, "openapi-spec-validator rejects /openapi.json:\n{out}");
    assert!(out.contains("OK"), "{out}");

    // 2. Every documented operation is routed.
    let http = reqwest::blocking::Client::new();
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            if item.get(*method).is_none() {
                continue;
            }
            operations += 1;
            let url = format!("{}{}", fleetd.base, path.replace("{id}", "no-such-id"));
            let resp = http
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(&fleetd.token)
                .send()
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().unwrap_or(Value::Null);
            let message = body["message"].as_str().unwrap_or("");
            assert!(
                !message.starts_with("no route for") && status != 405,
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
    assert!(operations >= 45, "only {operations} operations documented");

    // 3. schemathesis: generated requests, checked against the document.
    let examples = env_or("FLEETFORM_FUZZ_EXAMPLES", 50);
    let seed = env_or("FLEETFORM_FUZZ_SEED", 20261123);
    let (ok, out) = run(Command::new(tools.join("schemathesis"))
        .current_dir(fleetd.dir()) // hypothesis keeps its database in the cwd
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .args(["run", &format!("{}/openapi.json", fleetd.base)])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", fleetd.token),
        ])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "20"])
        .args(["--suppress-health-check", "all"])
        .args(["--output-truncate", "false"]));
    fleetd.assert_running();
    assert!(ok, "schemathesis found failures:\n{out}");
    let generated = generated_cases(&out)
        .unwrap_or_else(|| panic!("no \"N generated\" line in schemathesis' output:\n{out}"));
    eprintln!("schemathesis: {generated} cases generated, all passed");
    assert!(
        generated >= 1000,
        "only {generated} cases generated (want ≥ 1000):\n{out}"
    );

    let log = fleetd.stop();
    assert!(!log.contains("panicked"), "fleetd panicked:\n{log}");
}

/// `N` from schemathesis' summary line "N generated, N passed".
fn generated_cases(out: &str) -> Option<u64> {
    out.lines().find_map(|line| {
        let (n, rest) = line.trim().split_once(' ')?;
        rest.starts_with("generated").then(|| n.parse().ok())?
    })
}
