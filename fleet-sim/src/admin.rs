//! The few admin API calls the simulator makes: importing its factory CA,
//! creating an enrollment for it, reading a rollout's progress.

use std::time::Duration;

use anyhow::Context;
use fleet_api::{CertificateAuthority, Enrollment, Rollout};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::factory::Factory;

/// An admin API client.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    /// `endpoint` like `http://127.0.0.1:8470`.
    pub fn new(endpoint: &str, token: &str) -> anyhow::Result<Admin> {
        Ok(Admin {
            base: endpoint.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.bearer_auth(&self.token).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "fleetd answered {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
            .with_context(|| format!("POST {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
            .with_context(|| format!("GET {path}"))
    }

    /// Imports the factory CA under `name`; returns its id.
    pub async fn import_ca(&self, name: &str, factory: &Factory) -> anyhow::Result<String> {
        let ca: CertificateAuthority = self
            .post(
                "/v1/certificate-authorities",
                &json!({
                    "name": name,
                    "description": "fleet-sim factory CA",
                    "certificate_pem": factory.certificate_pem(),
                    "private_key_pem": factory.private_key_pem(),
                }),
            )
            .await?;
        Ok(ca.id)
    }

    /// An enabled enrollment of `ca_id` devices into `group_id`.
    pub async fn create_enrollment(
        &self,
        name: &str,
        ca_id: &str,
        group_id: &str,
        name_template: &str,
    ) -> anyhow::Result<Enrollment> {
        self.post(
            "/v1/enrollments",
            &json!({
                "name": name,
                "ca_id": ca_id,
                "group_id": group_id,
                "name_template": name_template,
                "enabled": true,
            }),
        )
        .await
    }

    pub async fn rollout(&self, id: &str) -> anyhow::Result<Rollout> {
        self.get(&format!("/v1/rollouts/{id}")).await
    }
}
