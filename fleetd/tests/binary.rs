//! The `fleetd` binary itself: flags, admin.addr, the token file, signals.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn fleetd(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetd"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("FLEETD_TOKEN")
        .env_remove("FLEETD_DATABASE_URL")
        .env_remove("FLEETD_LISTEN")
        .env_remove("FLEETD_DATA_DIR")
        .env("FLEETD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for fleetd to publish its address.
fn wait_for_addr(child: &mut Child, data_dir: &Path) -> String {
    let file = data_dir.join("admin.addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(&file) {
            return s.trim().to_owned();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("fleetd exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "fleetd did not write {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "fleetd ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serves_on_a_random_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = fleetd(&data, &[]).spawn().unwrap();
    let addr = wait_for_addr(&mut child, &data);

    let http = reqwest::Client::new();
    let resp = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    let token_path = data.join("admin-token");
    let token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the data directory holds secrets");
    }
    let resp = http
        .get(format!("http://{addr}/v1/device-groups"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"items": [], "next_page_token": null})
    );

    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("admin API listening"), "{stderr}");
    assert!(stderr.contains("received SIGTERM"), "{stderr}");
    assert!(
        stderr.contains(&token_path.display().to_string()),
        "token location is logged: {stderr}"
    );
    assert!(!stderr.contains(&token), "the token itself is never logged");
    assert!(!data.join("admin.addr").exists());
}

#[test]
fn an_unreachable_postgres_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = fleetd(
        dir.path(),
        &[
            "--database-url",
            "postgres://fleet:hunter2@127.0.0.1:1/fleet",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connecting to PostgreSQL at postgres://fleet:***@127.0.0.1:1/fleet"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "no colour codes when stderr is not a terminal: {stderr}"
    );
}

#[test]
fn unknown_database_schemes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = fleetd(dir.path(), &["--database-url", "mysql://db/fleet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unsupported database URL scheme \"mysql\""),
        "{stderr}"
    );
}
