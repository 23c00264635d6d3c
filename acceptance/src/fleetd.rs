//! A real fleetd for one test: its own temp data dir and port, killed when
//! dropped.

use std::path::PathBuf;
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
    http: reqwest::blocking::Client,
}

impl Fleetd {
    pub fn start() -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("fleetd-acc-").tempdir()?;
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
            .collect();
        let log = std::fs::File::create(data_dir.path().join("fleetd.log"))?;
        let mut child = Command::new(bin_dir().join("fleetd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("FLEETD_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start fleetd")?;
        let addr_file: PathBuf = data_dir.path().join("admin.addr");
        if let Err(e) = wait_for("fleetd to listen", Duration::from_secs(30), || {
            addr_file.exists()
        }) {
            kill(&mut child);
            let log =
                std::fs::read_to_string(data_dir.path().join("fleetd.log")).unwrap_or_default();
            bail!("{e}\nfleetd log:\n{log}");
        }
        let addr = std::fs::read_to_string(&addr_file)?.trim().to_string();
        Ok(Fleetd {
            endpoint: format!("http://{addr}"),
            token,
            data_dir,
            child,
            http: reqwest::blocking::Client::new(),
        })
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

impl Drop for Fleetd {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
