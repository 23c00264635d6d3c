//! The device API: HTTPS with mutual TLS on its own listener.
//!
//! Devices authenticate with a client certificate issued by (or chained
//! to) a fleet CA; the listener verifies it at the handshake against the
//! CAs in the store ([`trust`]) and presents a server certificate from
//! the fleet's device server CA ([`tls`]), which devices pin
//! (`<data-dir>/device-server-ca.pem`).
//!
//! Routes (all JSON, see `fleet_api::device_api`):
//!
//! | route | action | |
//! |---|---|---|
//! | `POST /v1/device/enroll` | `device:enroll` | zero-touch enrollment ([`enroll`]) |
//! | `POST /v1/device/checkin` | `device:checkin` (+ `config:read`, `firmware:download` for the parts of the answer) | report state, get config and assignment ([`checkin`]) |
//! | `GET /v1/device/config` | `config:read` | effective config |
//! | `GET /v1/device/assignment` | `firmware:download` | current firmware assignment |
//! | `POST /v1/device/results` | `firmware:report` | outcome of an assignment ([`results`]) |
//! | `GET /v1/device/ping` | — | no-op: the TLS handshake's certificate check only, no store access, no policy (the device API's ceiling in `make bench`) |
//!
//! Every request re-checks the certificate in the store (revocation takes
//! effect on the next request, [`auth`]) and every action goes through the
//! policy evaluator ([`authz`]); decisions are counted in [`metrics`] and
//! exposed on the admin API's `/metrics`.

pub mod auth;
pub mod authz;
mod checkin;
mod enroll;
pub mod error;
pub mod group_commit;
pub mod metrics;
pub mod request_cache;
mod results;
pub mod tls;
pub mod trust;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fleet_api::device_api::{DeviceErrorKind, DEVICE_API_PREFIX};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use self::error::DeviceError;
use self::group_commit::GroupCommit;
use self::metrics::DeviceMetrics;
use self::request_cache::RequestCache;
use self::tls::ServerIdentity;
use self::trust::TrustState;
use self::view::ViewCache;
use crate::keystore::MasterKey;
use crate::store::engine::ResultRecord;
use crate::store::Store;

/// File in the data directory holding the device API's bound `host:port`.
pub const ADDR_FILE: &str = "device.addr";
/// File in the data directory holding the device server CA (PEM) that
/// devices pin.
pub const SERVER_CA_FILE: &str = "device-server-ca.pem";

/// Largest request body the device API reads.
const BODY_LIMIT: usize = 64 * 1024;
/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the device listener is set up.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// `host:port`; port 0 picks a free one.
    pub listen: String,
    /// Where `device.addr` and `device-server-ca.pem` are written.
    pub data_dir: PathBuf,
    /// Host names / IP addresses in the server certificate (the bound IP
    /// is added when it is a specific address).
    pub server_names: Vec<String>,
    /// How old the trusted CA set may get before a new connection reloads
    /// it even though the store's trust stamp did not change (only CAs
    /// starting or ending their validity need this; changes are picked up
    /// at the next handshake anyway).
    pub trust_refresh: Duration,
}

/// What every device handler can reach: one pointer, since the router
/// clones it for every request.
#[derive(Clone)]
pub struct DeviceState(Arc<DeviceShared>);

impl std::ops::Deref for DeviceState {
    type Target = DeviceShared;
    fn deref(&self) -> &DeviceShared {
        &self.0
    }
}

/// The parts of [`DeviceState`].
pub struct DeviceShared {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<DeviceMetrics>,
    pub view: Arc<ViewCache>,
    /// Credential reads kept between store writes ([`request_cache`]).
    pub requests: Arc<RequestCache>,
    /// Group-committed check-in reports ([`checkin::writer`]).
    pub checkins: GroupCommit<checkin::QueuedCheckin>,
    /// Group-committed update results ([`results::writer`]).
    pub results: GroupCommit<ResultRecord>,
}

/// The device API's routes.
pub fn router(state: DeviceState) -> Router {
    let metrics = Arc::clone(&state.metrics);
    Router::new()
        .nest(
            DEVICE_API_PREFIX,
            Router::new()
                .route("/enroll", post(enroll::enroll))
                .route("/checkin", post(checkin::checkin))
                .route("/config", get(checkin::config))
                .route("/assignment", get(checkin::assignment))
                .route("/results", post(results::report))
                .route("/ping", get(ping)),
        )
        .fallback(|| async {
            DeviceError::new(DeviceErrorKind::NotFound, "no such device API route")
        })
        .method_not_allowed_fallback(|| async {
            DeviceError::new(
                DeviceErrorKind::MethodNotAllowed,
                "this route does not accept this method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(metrics, track))
        .with_state(state)
}

/// `GET /v1/device/ping`: `{"pong": true}` for any caller whose
/// certificate passed the handshake and has not expired since. Touches
/// neither the store nor the policy evaluator: it measures the listener,
/// TLS and HTTP stack alone.
async fn ping(
    identity: Option<axum::Extension<Arc<trust::ClientIdentity>>>,
) -> Result<axum::Json<serde_json::Value>, DeviceError> {
    let Some(axum::Extension(identity)) = identity else {
        return Err(DeviceError::internal());
    };
    if chrono::Utc::now() > identity.not_after {
        return Err(DeviceError::certificate_refused(
            "expired",
            "the client certificate expired",
        ));
    }
    Ok(axum::Json(serde_json::json!({ "pong": true })))
}

/// Counts every response by method, route template and status.
async fn track(State(metrics): State<Arc<DeviceMetrics>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await.into_response();
    metrics.request(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
    );
    response
}

/// The device listener, bound but not yet serving.
pub struct DeviceServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    trust: Arc<TrustState>,
    router: Router,
    metrics: Arc<DeviceMetrics>,
    addr_file: PathBuf,
}

impl DeviceServer {
    /// Loads (or creates) the server CA, issues the server certificate,
    /// loads the trusted CAs, binds, and publishes `device.addr` and
    /// `device-server-ca.pem`.
    pub async fn bind(
        opts: DeviceOptions,
        store: Arc<dyn Store>,
        master_key: &MasterKey,
        metrics: Arc<DeviceMetrics>,
    ) -> anyhow::Result<DeviceServer> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = tls::load_or_create_server_ca(store.as_ref(), master_key)
            .await
            .context("loading the device API's server CA")?;

        let listener = TcpListener::bind(&opts.listen)
            .await
            .with_context(|| format!("binding the device API to {}", opts.listen))?;
        let local_addr = listener.local_addr()?;

        let names = tls::subject_names(&opts.server_names, local_addr.ip());
        let identity = Arc::new(ServerIdentity::new(ca, names, Arc::clone(&provider))?);
        let ca_file = opts.data_dir.join(SERVER_CA_FILE);
        crate::atomic_file::replace(&ca_file, identity.ca_pem().as_bytes(), 0o644)
            .with_context(|| format!("writing {}", ca_file.display()))?;

        let trust = TrustState::load(
            Arc::clone(&store),
            identity,
            provider,
            Arc::clone(&metrics),
            opts.trust_refresh,
        )
        .await
        .context("loading the fleet CAs for the device API")?;

        let requests = Arc::new(RequestCache::default());
        let router = router(DeviceState(Arc::new(DeviceShared {
            checkins: checkin::writer(Arc::clone(&store), Arc::clone(&requests)),
            requests,
            results: results::writer(Arc::clone(&store)),
            store,
            metrics: Arc::clone(&metrics),
            view: Arc::new(ViewCache::default()),
        })));

        let addr_file = opts.data_dir.join(ADDR_FILE);
        crate::atomic_file::replace(&addr_file, format!("{local_addr}\n").as_bytes(), 0o644)
            .with_context(|| format!("writing {}", addr_file.display()))?;
        tracing::info!(addr = %local_addr, server_ca = %ca_file.display(), "device API listening (mutual TLS)");
        Ok(DeviceServer {
            listener,
            local_addr,
            trust: Arc::new(trust),
            router,
            metrics,
            addr_file,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections until `stop` completes, then lets open
    /// connections finish their current request (up to `grace`).
    pub async fn serve(
        self,
        stop: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let DeviceServer {
            listener,
            local_addr,
            trust,
            router,
            metrics,
            addr_file,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        let builder = Arc::new(builder);
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!("device API accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            let _ = tcp.set_nodelay(true);
            let task = Connection {
                trust: Arc::clone(&trust),
                router: router.clone(),
                metrics: Arc::clone(&metrics),
                builder: Arc::clone(&builder),
                watcher: graceful.watcher(),
            };
            tokio::spawn(task.run(tcp, peer));
        }
        drop(listener);
        tracing::info!("device API: finishing open connections");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!("device API connections still open after the grace period");
            }
        }
        remove_addr_file(&addr_file, local_addr);
        Ok(())
    }
}

/// One accepted TCP connection.
struct Connection {
    trust: Arc<TrustState>,
    router: Router,
    metrics: Arc<DeviceMetrics>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn run(self, tcp: TcpStream, peer: SocketAddr) {
        let Connection {
            trust,
            router,
            metrics,
            builder,
            watcher,
        } = self;
        let handshake = async {
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
                    .await?;
            let epoch = trust.current().await;
            let stream = start.into_stream(Arc::clone(&epoch.tls)).await?;
            Ok::<_, std::io::Error>((stream, epoch))
        };
        let (stream, epoch) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                if let Some(word) = handshake_failure(&e) {
                    metrics.handshake(word);
                }
                tracing::debug!(%peer, "device TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                metrics.handshake("timeout");
                tracing::debug!(%peer, "device TLS handshake timed out");
                return;
            }
        };
        let identity = {
            let (_, conn) = stream.get_ref();
            let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
                metrics.handshake("no_certificate");
                return;
            };
            match epoch.identify(cert.as_ref(), chrono::Utc::now()) {
                Ok(id) => Arc::new(id),
                Err(e) => {
                    metrics.handshake("bad_certificate");
                    tracing::debug!(%peer, "device certificate not accepted: {e}");
                    return;
                }
            }
        };
        metrics.handshake("ok");
        metrics.connection_opened();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Arc::clone(&identity));
                let router = router.clone();
                async move {
                    use tower::ServiceExt;
                    router.oneshot(req.map(axum::body::Body::new)).await
                }
            });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, "device connection ended: {e}");
        }
        metrics.connection_closed();
    }
}

/// The metrics word for a failed handshake, or `None` when the verifier
/// already counted it (with the certificate's specific problem).
fn handshake_failure(e: &std::io::Error) -> Option<&'static str> {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => None,
        Some(rustls::Error::NoCertificatesPresented) => Some("no_certificate"),
        _ => Some("failed"),
    }
}

/// The default device listener for an admin listener `listen`: same host,
/// port + 1 (so `127.0.0.1:8470` → `127.0.0.1:8471`), port 0 stays 0.
pub fn default_listen(admin_listen: &str) -> String {
    match admin_listen.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(0) => format!("{host}:0"),
            Ok(p) => format!("{host}:{}", p.saturating_add(1)),
            Err(_) => "127.0.0.1:8471".to_owned(),
        },
        None => "127.0.0.1:8471".to_owned(),
    }
}

/// Removes `device.addr` unless another fleetd has since replaced it.
fn remove_addr_file(path: &Path, ours: SocketAddr) {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim() == ours.to_string() => {
            let _ = std::fs::remove_file(path);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_listen_is_next_port() {
        assert_eq!(default_listen("127.0.0.1:8470"), "127.0.0.1:8471");
        assert_eq!(default_listen("127.0.0.1:0"), "127.0.0.1:0");
        assert_eq!(default_listen("[::1]:9000"), "[::1]:9001");
        assert_eq!(default_listen("0.0.0.0:65535"), "0.0.0.0:65535");
    }
}
