//! A real fleetd in-process (temp dir, free ports) and helpers to drive
//! its admin API.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use fleet_sim::admin::Admin;
use fleet_sim::{Endpoint, Factory, SimConfig};
use fleetd::config::Config;
use fleetd::server::Server;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub struct Fleetd {
    pub admin: Admin,
    pub admin_url: String,
    pub token: String,
    pub device_addr: SocketAddr,
    pub server_ca_pem: String,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Fleetd {
    pub async fn start() -> Fleetd {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.listen = "127.0.0.1:0".into();
        config.shutdown_grace = Duration::from_secs(2);
        config.engine_interval = Duration::from_millis(200);
        let server = Server::bind(config).await.expect("fleetd starts");
        let admin_url = format!("http://{}", server.local_addr());
        let token = server.admin_token().to_owned();
        let device_addr = server.device_addr();
        let server_ca_pem =
            std::fs::read_to_string(dir.path().join("device-server-ca.pem")).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Fleetd {
            admin: Admin::new(&admin_url, &token).unwrap(),
            admin_url,
            token,
            device_addr,
            server_ca_pem,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.device_addr, &self.server_ca_pem, Some("localhost")).unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.admin.post(path, &body).await.unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .put(format!("{}{path}", self.admin_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "PUT {path}: {status} {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        self.admin.get(path).await.unwrap()
    }

    /// A group with a baseline policy (every device action on the device
    /// itself), a factory CA imported into fleetd and an enrollment of
    /// it into the group. Returns (group id, factory, CA id, enrollment id).
    pub async fn product_line(&self, name: &str) -> (String, Factory, String, String) {
        let group = self
            .post(
                "/v1/device-groups",
                json!({"name": name, "config": {"interval": 30}}),
            )
            .await;
        let group_id = group["id"].as_str().unwrap().to_owned();
        let policy = self
            .post(
                "/v1/policies",
                json!({"name": format!("{name}-baseline"), "statements": [
                    {"effect": "allow",
                     "actions": ["device:checkin", "config:read", "firmware:download", "firmware:report"],
                     "resources": ["fleet:device/${device.id}"]}]}),
            )
            .await;
        self.post(
            "/v1/policy-attachments",
            json!({"policy_id": policy["id"], "group_id": group_id}),
        )
        .await;
        let factory = Factory::generate(&format!("{name} factory"), 365).unwrap();
        let ca_id = self
            .admin
            .import_ca(&format!("{name}-factory"), &factory)
            .await
            .unwrap();
        let e = self
            .admin
            .create_enrollment(&format!("{name}-line"), &ca_id, &group_id, "{cn}")
            .await
            .unwrap();
        (group_id, factory, ca_id, e.id)
    }

    pub fn sim_config(&self, devices: usize, prefix: &str) -> SimConfig {
        let mut cfg = SimConfig::new(self.endpoint(), devices);
        cfg.name_prefix = prefix.into();
        cfg.checkin_interval = Duration::from_millis(300);
        cfg.install_time = Duration::from_millis(10);
        cfg
    }
}

impl Drop for Fleetd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
