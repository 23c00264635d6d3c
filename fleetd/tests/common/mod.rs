//! A real fleetd, in-process, on a random port, spoken to over HTTP.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::Path;

pub mod pg;

use fleetd::config::Config;
use fleetd::server::Server;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts fleetd on 127.0.0.1:0 with its state in `data_dir`.
    pub async fn start(data_dir: &Path) -> TestServer {
        let mut config = Config::new(data_dir);
        config.listen = "127.0.0.1:0".to_owned();
        // API tests assert what the API stores; the background engine would
        // race them (a rollout over empty groups completes at once). Engine
        // tests drive it explicitly or set their own interval and wake.
        config.engine_interval = std::time::Duration::from_secs(3600);
        config.engine_wake_on_change = false;
        Self::start_with(config).await
    }

    /// Starts fleetd with `config`. With `FLEETD_TEST_BACKEND=postgres` and
    /// no database URL configured, its state goes to a fresh PostgreSQL
    /// database (the same one again for the same data directory).
    pub async fn start_with(mut config: Config) -> TestServer {
        if config.database_url.is_none() && pg::backend_is_postgres() {
            let url = pg::database_for(&config.data_dir).await;
            config.database_url = Some(fleetd::store::DatabaseUrl::parse(&url).unwrap());
        }
        let server = Server::bind(config).await.expect("fleetd starts");
        let addr = server.local_addr();
        let token = server.admin_token().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            base: format!("http://{addr}"),
            token,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown; panics if the server failed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task
            .take()
            .unwrap()
            .await
            .unwrap()
            .expect("fleetd stops cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
    }

    pub fn put(&self, path: &str, body: &Value) -> RequestBuilder {
        self.http
            .put(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(&self.token)
    }

    /// Creates a group and returns its JSON, asserting 201.
    pub async fn create_group(&self, body: Value) -> Value {
        let (status, json) = send(self.post("/v1/device-groups", &body)).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends and returns the status and the body parsed as JSON (`Null` when
/// the body is empty).
pub async fn send(req: RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request reaches fleetd");
    split(resp).await
}

pub async fn split(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    };
    (status, json)
}

/// Asserts the standard error shape and returns the message.
#[track_caller]
pub fn assert_error(body: &Value, kind: &str, field: Option<&str>) -> String {
    assert_eq!(body["error"], kind, "{body}");
    match field {
        Some(f) => assert_eq!(body["field"], f, "{body}"),
        None => assert!(body["field"].is_null(), "{body}"),
    }
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"));
    assert!(!message.is_empty());
    message.to_owned()
}
