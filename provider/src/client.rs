//! fleetd admin API client: JSON over HTTP with a bearer token, timeouts,
//! and retries with backoff on connection errors, 429 and 5xx.
//!
//! Errors keep fleetd's `{error, field, message}` body so resources can
//! point Terraform at the attribute that fleetd named.

use std::time::Duration;

use fleet_api::{ApiError, ErrorKind};
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Api(ApiError),
    #[error("cannot reach fleetd at {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("fleetd answered {status} with a body the provider could not read: {body}")]
    Protocol { status: u16, body: String },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api(e) if e.error == ErrorKind::NotFound)
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: String,
    max_attempts: u32,
}

impl Client {
    pub fn new(endpoint: &str, token: &str, timeout: Duration) -> Result<Self, String> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "endpoint {endpoint:?} must start with http:// or https://"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .user_agent(concat!(
                "terraform-provider-fleet/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            http,
            endpoint,
            token: token.to_string(),
            max_attempts: 5,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>)
            .await
            .and_then(decode)
    }

    /// GET that maps 404 to `None`: how Read notices objects deleted
    /// outside Terraform.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body))
            .await
            .and_then(decode)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(body))
            .await
            .and_then(decode)
    }

    /// DELETE; an object already gone counts as deleted.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        match self.call(Method::DELETE, path, None::<&()>).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, bytes::Bytes), ClientError> {
        let url = format!("{}{}", self.endpoint, path);
        let idempotent = method != Method::POST;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let retry_after = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
                        endpoint: self.endpoint.clone(),
                        message: e.to_string(),
                    })?;
                    if status.is_success() {
                        return Ok((status.as_u16(), bytes));
                    }
                    if !(retryable && (idempotent || status == StatusCode::TOO_MANY_REQUESTS))
                        || attempt >= self.max_attempts
                    {
                        return Err(api_error(status.as_u16(), &bytes));
                    }
                    tracing::debug!(%status, attempt, %url, "retrying");
                    None
                }
                Err(e) => {
                    // A refused connection never reached fleetd, so even a
                    // POST is safe to repeat.
                    let safe = idempotent || e.is_connect();
                    if !safe || attempt >= self.max_attempts {
                        return Err(ClientError::Transport {
                            endpoint: self.endpoint.clone(),
                            message: error_chain(&e),
                        });
                    }
                    tracing::debug!(error = %e, attempt, %url, "retrying");
                    None::<Duration>
                }
            };
            let backoff = retry_after.unwrap_or(Duration::from_millis(100 * (1 << attempt.min(6))));
            tokio::time::sleep(backoff).await;
        }
    }
}

fn decode<T: DeserializeOwned>((status, bytes): (u16, bytes::Bytes)) -> Result<T, ClientError> {
    let bytes = if bytes.is_empty() {
        bytes::Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|_| ClientError::Protocol {
        status,
        body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
    })
}

fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(bytes) {
        Ok(e) => ClientError::Api(e),
        Err(_) => ClientError::Protocol {
            status,
            body: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
