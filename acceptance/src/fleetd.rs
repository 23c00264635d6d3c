//! A real fleetd for one test: its own temp data dir and port, killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::Rng;
use serde_json::Value as Json;

use crate::{bin_dir, kill, wait_for};

pub struct Fleetd {
    pub endpoint: String,
    pub token: String,
    pub data_dir: tempfile::TempDir,
    child: Child,
    extra_args: Vec<String>,
    http: reqwest::blocking::Client,
    /// The PostgreSQL database holding fleetd's state, when not SQLite;
    /// dropped (after fleetd is killed) with the value.
    pub database: Option<crate::pg::PgDatabase>,
}

impl Fleetd {
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts fleetd with extra `serve` arguments (e.g.
    /// `--engine-interval 200ms`).
    ///
    /// With `FLEETFORM_ACC_DATABASE=postgres` its state goes to a fresh
    /// PostgreSQL database instead of the embedded SQLite file (unless the
    /// arguments name a database already).
    pub fn start_with(extra_args: &[&str]) -> Result<Self> {
        let database = if crate::pg::suite_on_postgres() && !extra_args.contains(&"--database-url")
        {
            Some(crate::pg::PgDatabase::create()?)
        } else {
            None
        };
        Self::launch(extra_args, database)
    }

    /// Starts fleetd on a fresh PostgreSQL database (see [`crate::pg`]).
    pub fn start_postgres(extra_args: &[&str]) -> Result<Self> {
        Self::launch(extra_args, Some(crate::pg::PgDatabase::create()?))
    }

    fn launch(extra_args: &[&str], database: Option<crate::pg::PgDatabase>) -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("fleetd-acc-").tempdir()?;
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
            .collect();
        let mut extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        if let Some(db) = &database {
            extra_args.extend(["--database-url".to_string(), db.url.clone()]);
        }
        let mut listen = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        listen.extend(extra_args.iter().cloned());
        let child = spawn(data_dir.path(), &token, &listen)?;
        let addr = std::fs::read_to_string(data_dir.path().join("admin.addr"))?
            .trim()
            .to_string();
        Ok(Fleetd {
            endpoint: format!("http://{addr}"),
            token,
            data_dir,
            child,
            extra_args,
            http: reqwest::blocking::Client::new(),
            database,
        })
    }

    /// The device API address (`host:port`).
    pub fn device_addr(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.data_dir.path().join("device.addr"))?
                .trim()
                .to_string(),
        )
    }

    /// The CA that signs the device API's server certificate (PEM).
    pub fn device_server_ca(&self) -> Result<String> {
        Ok(std::fs::read_to_string(
            self.data_dir.path().join("device-server-ca.pem"),
        )?)
    }

    /// `kill -9` fleetd, then start it again on the same data directory
    /// and the same admin and device addresses, as an operator's
    /// supervisor would after a crash.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        let admin = self.endpoint.trim_start_matches("http://").to_string();
        let device = self.device_addr()?;
        kill(&mut self.child);
        let dir = self.data_dir.path();
        std::fs::remove_file(dir.join("admin.addr"))?;
        let log = std::fs::read_to_string(dir.join("fleetd.log")).unwrap_or_default();
        std::fs::write(dir.join("fleetd.log.1"), log)?;
        let mut args = vec![
            "--listen".to_string(),
            admin,
            "--device-listen".to_string(),
            device,
        ];
        args.extend(self.extra_args.iter().cloned());
        // The ports were just freed; a few retries cover a slow release.
        let mut last = None;
        for _ in 0..20 {
            match spawn(dir, &self.token, &args) {
                Ok(child) => {
                    self.child = child;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(last.unwrap())
    }

    /// GET a path of the admin API; `None` on 404.
    pub fn get(&self, path: &str) -> Result<Option<Json>> {
        let r = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .bearer_auth(&self.token)
            .send()?;
        if r.status() == 404 {
            return Ok(None);
        }
        if !r.status().is_success() {
            bail!("GET {path}: {} {}", r.status(), r.text()?);
        }
        Ok(Some(r.json()?))
    }

    /// Sends a JSON request to the admin API, returning status and body.
    pub fn send(&self, method: &str, path: &str, body: Option<&Json>) -> Result<(u16, Json)> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.endpoint))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send()?;
        let status = r.status().as_u16();
        let text = r.text()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Json::Null)))
    }

    /// The items of a paginated collection (all pages).
    pub fn list(&self, path: &str) -> Result<Vec<Json>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &token {
                Some(t) => format!("{path}{sep}limit=500&page_token={t}"),
                None => format!("{path}{sep}limit=500"),
            };
            let page = self.get(&url)?.context("collection not found")?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(items),
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("fleetd.log")).unwrap_or_default()
    }
}

/// Starts `fleetd serve` on `data_dir` and waits until it listens.
fn spawn(data_dir: &Path, token: &str, args: &[String]) -> Result<Child> {
    let log = std::fs::File::create(data_dir.join("fleetd.log"))?;
    let mut child = Command::new(bin_dir().join("fleetd"))
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("FLEETD_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start fleetd")?;
    let addr_file: PathBuf = data_dir.join("admin.addr");
    let started = wait_for("fleetd to listen", Duration::from_secs(30), || {
        addr_file.exists() || matches!(child.try_wait(), Ok(Some(_)))
    });
    if started.is_err() || !addr_file.exists() {
        kill(&mut child);
        let log = std::fs::read_to_string(data_dir.join("fleetd.log")).unwrap_or_default();
        bail!("fleetd did not start\nfleetd log:\n{log}");
    }
    Ok(child)
}

impl Drop for Fleetd {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
