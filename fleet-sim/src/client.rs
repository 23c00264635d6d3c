//! One device's connection to fleetd's device API: its own TLS client
//! configuration (its certificate, the pinned server CA), one HTTP/1.1
//! connection kept alive between calls and re-established (with TLS
//! session resumption) when the server closes it.
//!
//! Built directly on rustls + hyper rather than a pooled HTTP client so
//! that a hundred thousand devices cost a hundred thousand small tasks and
//! connections, not a hundred thousand connection pools.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleet_api::device_api::{DeviceApiError, DEVICE_API_PREFIX};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::factory::DeviceCredentials;

/// Per-call timeout (connect + TLS + request + response).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the device API is and how to trust it.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The name the server certificate must carry (`localhost` or an IP).
    pub server_name: ServerName<'static>,
    /// The pinned device server CA.
    pub roots: Arc<RootCertStore>,
    pub provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// `addr` (`host:port`), trusting the CA in `server_ca_pem`; the
    /// server name defaults to the host part (`localhost` for 127.0.0.1
    /// is fine too: fleetd's certificate names both).
    pub fn new(
        addr: SocketAddr,
        server_ca_pem: &str,
        server_name: Option<&str>,
    ) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        anyhow::ensure!(!roots.is_empty(), "no certificate in the server CA PEM");
        let name = match server_name {
            Some(n) => ServerName::try_from(n.to_owned())?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        Ok(Endpoint {
            addr,
            server_name: name,
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }
}

/// Why a call failed before an HTTP status came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// fleetd refused the TLS handshake (unknown CA, expired, revoked...).
    #[error("TLS refused: {0}")]
    TlsRefused(String),
    /// Network trouble, timeouts, a connection closed mid-call.
    #[error("transport: {0}")]
    Transport(String),
    /// A 2xx response whose body is not what the API promises.
    #[error("bad response: {0}")]
    BadResponse(String),
}

/// An HTTP answer: the status and, for errors, fleetd's error body.
#[derive(Debug)]
pub enum Answer<T> {
    Ok(StatusCode, T),
    Err(StatusCode, DeviceApiError),
}

/// One device's client.
pub struct DeviceClient {
    endpoint: Endpoint,
    tls: Arc<ClientConfig>,
    keep_alive: bool,
    conn: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far (1 + reconnects).
    pub connects: u64,
    /// Of those, the ones that resumed a TLS session.
    pub resumed: u64,
}

impl DeviceClient {
    pub fn new(
        endpoint: Endpoint,
        creds: &DeviceCredentials,
        keep_alive: bool,
    ) -> anyhow::Result<DeviceClient> {
        let mut tls = ClientConfig::builder_with_provider(Arc::clone(&endpoint.provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(&endpoint.roots))
            .with_client_auth_cert(vec![creds.certificate.clone()], creds.key.clone_key())?;
        tls.resumption = Resumption::in_memory_sessions(2);
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(DeviceClient {
            endpoint,
            tls: Arc::new(tls),
            keep_alive,
            conn: None,
            connects: 0,
            resumed: 0,
        })
    }

    /// Drops the connection (the next call reconnects).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let tcp = TcpStream::connect(self.endpoint.addr)
            .await
            .map_err(|e| CallError::Transport(format!("connect {}: {e}", self.endpoint.addr)))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(self.endpoint.server_name.clone(), tcp)
            .await
            .map_err(classify_io)?;
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.resumed += 1;
        }
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.connects += 1;
        Ok(sender)
    }

    /// `GET`/`POST` `path` (below `/v1/device`) with an optional JSON body.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer<T>, CallError> {
        let body = match body {
            Some(b) => Bytes::from(
                serde_json::to_vec(b).map_err(|e| CallError::BadResponse(e.to_string()))?,
            ),
            None => Bytes::new(),
        };
        match tokio::time::timeout(CALL_TIMEOUT, self.call_raw(method, path, body)).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(CallError::Transport(format!("{path}: timed out")))
            }
        }
    }

    async fn call_raw<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer<T>, CallError> {
        // A kept-alive connection the server closed in the meantime fails
        // on first use; one retry on a fresh connection covers that.
        let mut fresh = false;
        loop {
            let mut sender = match self.conn.take() {
                Some(s) if !s.is_closed() => s,
                _ => {
                    fresh = true;
                    self.connect().await?
                }
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return Err(CallError::Transport("connection closed".into()));
                }
                continue;
            }
            let req = Request::builder()
                .method(method.clone())
                .uri(format!("{DEVICE_API_PREFIX}{path}"))
                .header(header::HOST, "fleetd")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| CallError::Transport(e.to_string()))?;
            let resp = match sender.send_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    let err = classify_hyper(&e);
                    if fresh || matches!(err, CallError::TlsRefused(_)) {
                        return Err(err);
                    }
                    continue;
                }
            };
            let status = resp.status();
            let close = resp
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| classify_hyper(&e))?
                .to_bytes();
            if self.keep_alive && !close {
                self.conn = Some(sender);
            }
            return if status.is_success() {
                serde_json::from_slice(&bytes)
                    .map(|t| Answer::Ok(status, t))
                    .map_err(|e| CallError::BadResponse(format!("{path}: {e}")))
            } else {
                let err = serde_json::from_slice::<DeviceApiError>(&bytes).unwrap_or_else(|_| {
                    DeviceApiError {
                        error: fleet_api::device_api::DeviceErrorKind::Unknown,
                        action: None,
                        message: String::from_utf8_lossy(&bytes).into_owned(),
                        reason: None,
                    }
                });
                Ok(Answer::Err(status, err))
            };
        }
    }
}

/// TLS alerts from the server mean it refused our certificate.
fn classify_io(e: std::io::Error) -> CallError {
    let text = e.to_string();
    if let Some(inner) = e.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::AlertReceived(_) => CallError::TlsRefused(tls.to_string()),
                _ => CallError::Transport(format!("TLS: {tls}")),
            };
        }
    }
    CallError::Transport(text)
}

fn classify_hyper(e: &hyper::Error) -> CallError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            if matches!(tls, rustls::Error::AlertReceived(_)) {
                return CallError::TlsRefused(tls.to_string());
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                if matches!(tls, rustls::Error::AlertReceived(_)) {
                    return CallError::TlsRefused(tls.to_string());
                }
            }
        }
        source = s.source();
    }
    CallError::Transport(e.to_string())
}
