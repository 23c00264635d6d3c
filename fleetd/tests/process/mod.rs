//! The real `fleetd` binary as a child process, for the reliability and
//! security suite: its logs go to a file the tests can read afterwards.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Process {
    pub base: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts `fleetd serve` on 127.0.0.1:0 with a fresh data directory, a
    /// random admin token (given through `FLEETD_TOKEN`, as an operator
    /// would) and the log filter `log_filter`.
    pub fn start(log_filter: &str) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("fleetd.log");
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetd"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--device-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("FLEETD_DATABASE_URL")
            .env_remove("FLEETD_LISTEN")
            .env_remove("FLEETD_DATA_DIR")
            .env_remove("RUST_LOG")
            .env("FLEETD_TOKEN", &token)
            .env("FLEETD_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start fleetd");
        let addr_file = data_dir.join("admin.addr");
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&addr_file) {
                if s.ends_with('\n') || !s.trim().is_empty() {
                    break s.trim().to_owned();
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "fleetd exited early with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "fleetd did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Process {
            base: format!("http://{addr}"),
            token,
            data_dir,
            log_path,
            child,
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Everything fleetd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Fails if fleetd has exited (crashed) since it started.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("fleetd exited with {status}:\n{}", self.log());
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the whole log.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "fleetd exit status {status}");
                break;
            }
            assert!(Instant::now() < deadline, "fleetd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
