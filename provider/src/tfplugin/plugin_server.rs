//! The go-plugin side of the provider process: launch checks, the stdout
//! handshake, AutoMTLS, the gRPC server with go-plugin's helper services,
//! and hclog-compatible logging on stderr.
//!
//! Launch contract (as Terraform's go-plugin client drives it):
//! * Terraform sets `TF_PLUGIN_MAGIC_COOKIE`, `PLUGIN_PROTOCOL_VERSIONS`,
//!   `PLUGIN_CLIENT_CERT` (unless `TF_DISABLE_PLUGIN_TLS`) and optionally
//!   `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`.
//! * The first stdout line is `1|6|tcp|127.0.0.1:PORT|grpc|CERT`; nothing
//!   else is ever written to stdout.
//! * Besides `tfplugin6.Provider` we serve `grpc.health.v1.Health`
//!   (`plugin` → SERVING), `plugin.GRPCController` (Shutdown ends
//!   [`serve`]), `plugin.GRPCStdio` and `plugin.GRPCBroker`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _};
use fleetform_proto::plugin::grpc_broker_server::{GrpcBroker, GrpcBrokerServer};
use fleetform_proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use fleetform_proto::plugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use fleetform_proto::plugin::{ConnInfo, Empty, StdioData};
use fleetform_proto::tfplugin6::provider_server::{Provider, ProviderServer};
use futures::{Stream, StreamExt as _};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status, Streaming};

use super::plugin_tls::{self, ServerIdentity};

/// Environment variable carrying go-plugin's magic cookie.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// The value Terraform sets for [`MAGIC_COOKIE_KEY`].
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's own protocol version (first handshake field).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol major version we speak.
pub const PROTOCOL_VERSION: u32 = 6;
/// Largest gRPC message accepted or sent by the Provider service (Go
/// providers allow 256 MiB).
pub const MAX_MESSAGE_SIZE: usize = 256 << 20;
/// The health-check service name go-plugin asks about.
pub const HEALTH_SERVICE: &str = "plugin";

/// Printed to stderr when the binary is run by hand.
pub const NOT_A_PLUGIN_MESSAGE: &str =
    "This binary is a plugin. These are not meant to be executed directly.\n\
Please execute the program that consumes these plugins, which will\n\
load any plugins automatically";

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After Shutdown, how long open connections get to finish before
/// [`PluginServer::run`] returns anyway. Terraform kills the process 2 s
/// after asking it to shut down.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// How [`serve`] runs.
#[derive(Debug, Clone)]
pub struct ServeOpts {
    /// The provider's source address, e.g. `registry.terraform.io/fleetform/fleet`;
    /// used as the key of `TF_REATTACH_PROVIDERS` in debug mode.
    pub provider_address: String,
    /// `-debug`: no cookie check, no TLS; print `TF_REATTACH_PROVIDERS` and
    /// serve until Ctrl-C.
    pub debug: bool,
}

/// A plugin server that has bound its port and told Terraform where it is:
/// what [`start`] returns, before any async runtime exists.
#[derive(Debug)]
pub struct Started {
    server: PluginServer,
    debug: bool,
}

/// Checks the launch, binds the listener and writes the handshake line (or,
/// in debug mode, the reattach instructions) to stdout. Synchronous on
/// purpose: Terraform waits for this line at every provider start, so it
/// goes out before the async runtime and the gRPC stack are built.
///
/// Returns an error (so `main` exits 1) when not launched by a plugin host,
/// when protocol 6 is not offered, or when the port cannot be bound.
pub fn start(opts: &ServeOpts) -> anyhow::Result<Started> {
    if opts.debug {
        let server = PluginServer::bind(ServerConfig {
            client_cert_pem: None,
            ports: PortRange::EPHEMERAL,
        })?;
        let reattach = reattach_providers_json(
            &opts.provider_address,
            std::process::id(),
            server.local_addr(),
        );
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n\
             \tTF_REATTACH_PROVIDERS='{reattach}'\n\n"
        )
        .and_then(|()| out.flush())
        .context("writing the reattach instructions")?;
        return Ok(Started {
            server,
            debug: true,
        });
    }

    if std::env::var(MAGIC_COOKIE_KEY).ok().as_deref() != Some(MAGIC_COOKIE_VALUE) {
        eprintln!("{NOT_A_PLUGIN_MESSAGE}");
        bail!("not started by Terraform: {MAGIC_COOKIE_KEY} is missing or wrong");
    }
    let version =
        negotiate_protocol_version(std::env::var("PLUGIN_PROTOCOL_VERSIONS").ok().as_deref())?;
    let ports = PortRange::from_env()?;
    let client_cert_pem = std::env::var("PLUGIN_CLIENT_CERT")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let plaintext = client_cert_pem.is_none();
    let server = PluginServer::bind(ServerConfig {
        client_cert_pem,
        ports,
    })?;
    let line = server.handshake_line(version);
    {
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .context("writing the handshake line to stdout")?;
    }
    if plaintext {
        tracing::info!("PLUGIN_CLIENT_CERT is not set: serving without TLS");
    }
    tracing::debug!(address = %server.local_addr(), "plugin address");
    Ok(Started {
        server,
        debug: false,
    })
}

impl Started {
    /// Serves `provider` until Terraform asks the plugin to shut down (or,
    /// in debug mode, until Ctrl-C). Must run inside a Tokio runtime.
    pub async fn serve<P: Provider>(self, provider: P) -> anyhow::Result<()> {
        if self.debug {
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("interrupted, shutting down");
            };
            return self.server.run(provider, ctrl_c).await;
        }
        // Like go-plugin: Ctrl-C in the terminal reaches the whole process
        // group; Terraform handles it (StopProvider, then Shutdown), so the
        // plugin must not die of SIGINT on its own.
        tokio::spawn(async {
            let mut count = 0u64;
            while tokio::signal::ctrl_c().await.is_ok() {
                count += 1;
                tracing::trace!(count, "plugin received interrupt signal, ignoring");
            }
        });
        self.server.run(provider, std::future::pending()).await
    }
}

/// The `TF_REATTACH_PROVIDERS` value for a debug-mode server.
pub fn reattach_providers_json(provider_address: &str, pid: u32, addr: SocketAddr) -> String {
    serde_json::json!({
        provider_address: {
            "Protocol": "grpc",
            "ProtocolVersion": PROTOCOL_VERSION,
            "Pid": pid,
            "Test": true,
            "Addr": { "Network": "tcp", "String": addr.to_string() },
        }
    })
    .to_string()
}

/// Picks the plugin protocol from `PLUGIN_PROTOCOL_VERSIONS` (e.g. `5,6`).
///
/// An absent or empty list means the host did not negotiate, and go-plugin
/// then uses the plugin's own version (6). Unparsable entries are skipped,
/// as go-plugin does. A list without 6 is an error.
pub fn negotiate_protocol_version(offered: Option<&str>) -> anyhow::Result<u32> {
    let Some(offered) = offered.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(PROTOCOL_VERSION);
    };
    let versions: Vec<u32> = offered
        .split(',')
        .filter_map(|v| match v.trim().parse() {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(version = v, "ignoring invalid plugin protocol version");
                None
            }
        })
        .collect();
    if versions.contains(&PROTOCOL_VERSION) {
        Ok(PROTOCOL_VERSION)
    } else {
        bail!(
            "this provider speaks Terraform plugin protocol {PROTOCOL_VERSION}, but the host \
             offers only {offered:?}; use Terraform 1.0 or later"
        )
    }
}

/// The ports the plugin may listen on (`PLUGIN_MIN_PORT`..=`PLUGIN_MAX_PORT`);
/// port 0 means "any free port".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    /// Any free port.
    pub const EPHEMERAL: PortRange = PortRange { min: 0, max: 0 };

    /// Reads `PLUGIN_MIN_PORT` / `PLUGIN_MAX_PORT`.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::parse(
            std::env::var("PLUGIN_MIN_PORT").ok().as_deref(),
            std::env::var("PLUGIN_MAX_PORT").ok().as_deref(),
        )
    }

    /// Both unset: any port. A missing minimum is 0 (as in go-plugin); a
    /// missing maximum is 65535.
    pub fn parse(min: Option<&str>, max: Option<&str>) -> anyhow::Result<Self> {
        fn port(name: &str, v: Option<&str>) -> anyhow::Result<Option<u16>> {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s
                    .parse()
                    .map(Some)
                    .with_context(|| format!("{name} is not a port number: {s:?}")),
            }
        }
        let min_v = port("PLUGIN_MIN_PORT", min)?;
        let max_v = port("PLUGIN_MAX_PORT", max)?;
        let range = match (min_v, max_v) {
            (None, None) => Self::EPHEMERAL,
            (min, max) => PortRange {
                min: min.unwrap_or(0),
                max: max.unwrap_or(u16::MAX),
            },
        };
        if range.min > range.max {
            bail!(
                "PLUGIN_MIN_PORT value of {} is greater than PLUGIN_MAX_PORT value of {}",
                range.min,
                range.max
            );
        }
        Ok(range)
    }
}

/// What [`PluginServer::bind`] needs; [`serve`] fills it from the
/// environment, tests fill it directly.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The PEM from `PLUGIN_CLIENT_CERT`; `None` serves plaintext.
    pub client_cert_pem: Option<String>,
    pub ports: PortRange,
}

/// A bound, not yet serving, plugin server.
pub struct PluginServer {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: Option<(TlsAcceptor, CertificateDer<'static>)>,
}

impl std::fmt::Debug for PluginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServer")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PluginServer {
    /// Binds 127.0.0.1 on the first free port of `config.ports` and, with a
    /// client certificate, prepares AutoMTLS with a fresh server identity.
    pub fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let tls = match &config.client_cert_pem {
            None => None,
            Some(pem) => {
                let client_certs = plugin_tls::parse_client_cert_pem(pem)?;
                let identity = ServerIdentity::generate()?;
                let server_config = plugin_tls::server_config(&identity, client_certs)?;
                Some((TlsAcceptor::from(server_config), identity.cert_der))
            }
        };
        let listener = bind_listener(config.ports)?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            tls,
        })
    }

    /// The address the plugin listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The DER of the server certificate, when serving TLS.
    pub fn server_cert_der(&self) -> Option<&CertificateDer<'static>> {
        self.tls.as_ref().map(|(_, der)| der)
    }

    /// `CORE|PROTO|tcp|ADDR|grpc|CERT` (no trailing newline); CERT is the
    /// server certificate's DER in unpadded standard base64, or empty
    /// without TLS.
    pub fn handshake_line(&self, protocol_version: u32) -> String {
        let cert = self
            .server_cert_der()
            .map(|der| plugin_tls::encode_handshake_cert(der))
            .unwrap_or_default();
        format!(
            "{CORE_PROTOCOL_VERSION}|{protocol_version}|tcp|{}|grpc|{cert}",
            self.local_addr
        )
    }

    /// Serves until `plugin.GRPCController/Shutdown` is called or `stop`
    /// completes, then drains connections for a short grace period.
    pub async fn run<P, F>(self, provider: P, stop: F) -> anyhow::Result<()>
    where
        P: Provider,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shutdown = Shutdown {
            tx: Arc::new(shutdown_tx),
            rx: shutdown_rx,
        };

        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                stop.await;
                shutdown.trigger();
            })
        };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status(HEALTH_SERVICE, tonic_health::ServingStatus::Serving)
            .await;

        let provider_service = ProviderServer::new(provider)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);

        let (conn_tx, conn_rx) = mpsc::channel::<PluginIo>(16);
        let listener =
            TcpListener::from_std(self.listener).context("registering the plugin listener")?;
        let acceptor = tokio::spawn(accept_loop(listener, self.tls.map(|(a, _)| a), conn_tx));
        let incoming =
            tokio_stream::wrappers::ReceiverStream::new(conn_rx).map(Ok::<_, std::io::Error>);

        let signal = shutdown.wait();
        let server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(GrpcControllerServer::new(Controller {
                shutdown: shutdown.clone(),
            }))
            .add_service(GrpcStdioServer::new(Stdio {
                shutdown: shutdown.clone(),
            }))
            .add_service(GrpcBrokerServer::new(Broker {
                shutdown: shutdown.clone(),
            }))
            .add_service(provider_service)
            .serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(server);

        let result = tokio::select! {
            r = &mut server => r.map_err(anyhow::Error::from),
            () = shutdown.wait() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(_) => {
                        tracing::debug!("connections still open after shutdown grace period; exiting anyway");
                        Ok(())
                    }
                }
            }
        };
        acceptor.abort();
        stopper.abort();
        tracing::debug!("plugin server stopped");
        result.context("gRPC server failed")
    }
}

/// A non-blocking std listener (no runtime needed yet; [`PluginServer::run`]
/// hands it to Tokio).
fn bind_listener(ports: PortRange) -> anyhow::Result<std::net::TcpListener> {
    let mut last_err = None;
    for port in ports.min..=ports.max {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                l.set_nonblocking(true)
                    .context("making the plugin listener non-blocking")?;
                return Ok(l);
            }
            Err(e) => last_err = Some(e),
        }
    }
    let detail = last_err.map(|e| e.to_string()).unwrap_or_default();
    bail!(
        "couldn't bind plugin TCP listener on 127.0.0.1 ports {}-{}: {detail}",
        ports.min,
        ports.max
    )
}

/// Accepts TCP connections, sets TCP_NODELAY, and hands them (after a TLS
/// handshake run in its own task) to the gRPC server.
async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, out: mpsc::Sender<PluginIo>) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // e.g. EMFILE; back off instead of spinning.
                tracing::debug!(error = %e, "accepting a plugin connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
        let info = TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: Some(remote),
        };
        match &tls {
            None => {
                if out
                    .send(PluginIo::new(Inner::Plain(tcp), info))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let out = out.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = out
                                .send(PluginIo::new(Inner::Tls(Box::new(stream)), info))
                                .await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "plugin TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "plugin TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

/// A plugin connection, plain or TLS, as tonic's server wants it.
pub struct PluginIo {
    inner: Inner,
    info: TcpConnectInfo,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl PluginIo {
    fn new(inner: Inner, info: TcpConnectInfo) -> Self {
        Self { inner, info }
    }
}

impl Connected for PluginIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for PluginIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PluginIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A one-way "stop now" flag shared by the services and the server loop.
#[derive(Clone)]
struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Completes once [`Shutdown::trigger`] has been called.
    fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            // An error means every sender is gone: nothing can stop us
            // later, so treat it as stopped too.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    /// A stream that yields nothing and ends at shutdown (or when `also`
    /// completes first).
    fn empty_stream_until<T, F>(&self, also: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
    where
        T: Send + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stopped = self.wait();
        let end = async move {
            tokio::select! {
                () = stopped => {}
                () = also => {}
            }
        };
        Box::pin(futures::stream::once(end).filter_map(|()| async { None }))
    }
}

/// `plugin.GRPCController`: Shutdown stops the server; [`serve`] returns.
struct Controller {
    shutdown: Shutdown,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("plugin shutdown requested");
        self.shutdown.trigger();
        Ok(Response::new(Empty {}))
    }
}

/// `plugin.GRPCStdio`: we never write stdout/stderr through go-plugin's
/// mirror (logs go to real stderr), so the stream stays open and empty
/// until shutdown.
struct Stdio {
    shutdown: Shutdown,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<tonic::codegen::BoxStream<StdioData>>, Status> {
        Ok(Response::new(
            self.shutdown.empty_stream_until(std::future::pending()),
        ))
    }
}

/// `plugin.GRPCBroker`: we offer no brokered services; accept the stream,
/// drain what the host sends, answer nothing.
struct Broker {
    shutdown: Shutdown,
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<tonic::codegen::BoxStream<ConnInfo>>, Status> {
        let mut inbound = request.into_inner();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = self.shutdown.wait();
        tokio::spawn(async move {
            let drain = async {
                loop {
                    match inbound.message().await {
                        Ok(Some(info)) => {
                            tracing::trace!(
                                service_id = info.service_id,
                                "ignoring broker message"
                            );
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::trace!(%status, "broker stream ended");
                            break;
                        }
                    }
                }
            };
            // At shutdown stop reading too: dropping the request half lets
            // the HTTP/2 stream close, or graceful shutdown would wait on it.
            tokio::select! {
                () = drain => {}
                () = stopped => {}
            }
            drop(inbound);
            let _ = done_tx.send(());
        });
        let drained = async move {
            let _ = done_rx.await;
        };
        Ok(Response::new(self.shutdown.empty_stream_until(drained)))
    }
}

// ---------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------

/// Sets up logging to stderr in hclog's JSON line format, which go-plugin
/// parses and Terraform re-levels. The level comes from `TF_LOG_PROVIDER`,
/// else `TF_LOG` (TRACE/DEBUG/INFO/WARN/ERROR/OFF, any case; JSON or any
/// other value means TRACE); unset means WARN. Also installs a panic hook
/// that logs the panic message (no backtrace). Safe to call twice.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let level = log_level_from_env(
        std::env::var("TF_LOG_PROVIDER").ok().as_deref(),
        std::env::var("TF_LOG").ok().as_deref(),
    );
    // Transport crates are very chatty at DEBUG/TRACE; cap them at INFO.
    let deps = std::cmp::min(level, tracing_subscriber::filter::LevelFilter::INFO);
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_targets(
            [
                "h2",
                "hyper",
                "hyper_util",
                "tower",
                "tonic",
                "rustls",
                "tokio_rustls",
                "mio",
            ]
            .map(|t| (t, deps)),
        );
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(HclogJson);
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();

    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_string());
        let mut fields = serde_json::Map::new();
        if let Some(loc) = info.location() {
            fields.insert(
                "location".into(),
                format!("{}:{}:{}", loc.file(), loc.line(), loc.column()).into(),
            );
        }
        if let Some(name) = std::thread::current().name() {
            fields.insert("thread".into(), name.into());
        }
        let line = hclog_line("error", &format!("panic: {msg}"), "provider", fields);
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }));
}

/// The level for `TF_LOG_PROVIDER` (preferred) or `TF_LOG`.
pub fn log_level_from_env(
    tf_log_provider: Option<&str>,
    tf_log: Option<&str>,
) -> tracing_subscriber::filter::LevelFilter {
    use tracing_subscriber::filter::LevelFilter;
    let value = [tf_log_provider, tf_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty());
    match value.map(str::to_ascii_uppercase).as_deref() {
        None => LevelFilter::WARN,
        Some("OFF") => LevelFilter::OFF,
        Some("ERROR") => LevelFilter::ERROR,
        Some("WARN") => LevelFilter::WARN,
        Some("INFO") => LevelFilter::INFO,
        Some("DEBUG") => LevelFilter::DEBUG,
        // TRACE, JSON, and (as in Terraform) any other value.
        Some(_) => LevelFilter::TRACE,
    }
}

/// One hclog JSON line (without newline).
fn hclog_line(
    level: &str,
    message: &str,
    module: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("@level".into(), level.into());
    obj.insert("@message".into(), message.into());
    obj.insert("@module".into(), module.into());
    obj.insert(
        "@timestamp".into(),
        hclog_timestamp(time::OffsetDateTime::now_utc()).into(),
    );
    for (k, v) in fields {
        if !obj.contains_key(&k) {
            obj.insert(k, v);
        }
    }
    serde_json::Value::Object(obj).to_string()
}

/// go-plugin parses `@timestamp` with Go's `2006-01-02T15:04:05.000000Z07:00`
/// (exactly six fractional digits); any other shape turns the whole line
/// into an unparsed DEBUG message.
fn hclog_timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// `tracing` event formatter emitting hclog JSON lines.
struct HclogJson;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for HclogJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut visitor = JsonFields::default();
        event.record(&mut visitor);
        let level = match *meta.level() {
            tracing::Level::TRACE => "trace",
            tracing::Level::DEBUG => "debug",
            tracing::Level::INFO => "info",
            tracing::Level::WARN => "warn",
            tracing::Level::ERROR => "error",
        };
        let target = meta.target();
        let crate_name = target.split("::").next().unwrap_or(target);
        let module = if crate_name == env!("CARGO_CRATE_NAME") {
            "provider".to_string()
        } else {
            format!("provider.{crate_name}")
        };
        let line = hclog_line(level, &visitor.message, &module, visitor.fields);
        writeln!(writer, "{line}")
    }
}

#[derive(Default)]
struct JsonFields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl JsonFields {
    fn put(&mut self, field: &tracing::field::Field, value: serde_json::Value) {
        let name = field.name();
        if name == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            // `log` records bridged into tracing carry these; keep them out.
            if name.starts_with("log.") {
                return;
            }
            self.fields.insert(name.to_string(), value);
        }
    }
}

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field, s.into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.put(field, value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use base64::Engine as _;
    use fleetform_proto::plugin::grpc_broker_client::GrpcBrokerClient;
    use fleetform_proto::plugin::grpc_controller_client::GrpcControllerClient;
    use fleetform_proto::plugin::grpc_stdio_client::GrpcStdioClient;
    use hyper_util::rt::TokioIo;
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::ServerName;
    use rustls::sign::CertifiedKey;
    use tokio::task::JoinHandle;
    use tonic::codegen::http::Uri;
    use tonic::transport::{Channel, Endpoint};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::*;
    use crate::tfplugin::plugin_tls::test_support::{self, PinnedServerVerifier};

    /// A provider that implements nothing (every RPC answers Unimplemented).
    struct EmptyProvider;
    impl Provider for EmptyProvider {}

    fn pem_of(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    struct Running {
        line: String,
        addr: SocketAddr,
        task: JoinHandle<anyhow::Result<()>>,
    }

    async fn start(client_cert_pem: Option<String>) -> Running {
        let server = PluginServer::bind(ServerConfig {
            client_cert_pem,
            ports: PortRange::EPHEMERAL,
        })
        .unwrap();
        let line = server.handshake_line(PROTOCOL_VERSION);
        let addr = server.local_addr();
        let task = tokio::spawn(server.run(EmptyProvider, std::future::pending()));
        Running { line, addr, task }
    }

    /// The server certificate as a go-plugin client recovers it.
    fn cert_from_line(line: &str) -> CertificateDer<'static> {
        let field = line.split('|').nth(5).unwrap();
        CertificateDer::from(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(field)
                .unwrap(),
        )
    }

    /// Always offers one certificate; records the CA hints it was given.
    #[derive(Debug)]
    struct FixedClientCert {
        key: Arc<CertifiedKey>,
        hints: Mutex<Vec<Vec<u8>>>,
    }

    impl ResolvesClientCert for FixedClientCert {
        fn resolve(
            &self,
            root_hint_subjects: &[&[u8]],
            _sigschemes: &[rustls::SignatureScheme],
        ) -> Option<Arc<CertifiedKey>> {
            *self.hints.lock().unwrap() = root_hint_subjects.iter().map(|h| h.to_vec()).collect();
            Some(self.key.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    #[derive(Clone)]
    struct TlsConnector {
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    }

    impl tonic::codegen::Service<Uri> for TlsConnector {
        type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
        type Error = std::io::Error;
        type Future =
            Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _uri: Uri) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                let tcp = TcpStream::connect(this.addr).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = tokio_rustls::TlsConnector::from(this.config)
                    .connect(name, tcp)
                    .await?;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Ok(TokioIo::new(tls))
            })
        }
    }

    fn client_config(
        server_cert: CertificateDer<'static>,
        client: Option<Arc<FixedClientCert>>,
        tls12_only: bool,
    ) -> Arc<rustls::ClientConfig> {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ClientConfig::builder_with_provider(plugin_tls::ring_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier {
                expected: server_cert,
            }));
        let mut config = match client {
            Some(resolver) => builder.with_client_cert_resolver(resolver),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    async fn tls_channel(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Channel, String> {
        Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(TlsConnector { addr, config })
            .await
            .map_err(|e| format!("connect: {e:?}"))
    }

    async fn health(channel: Channel) -> Result<ServingStatus, String> {
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            HealthClient::new(channel).check(HealthCheckRequest {
                service: HEALTH_SERVICE.to_string(),
            }),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|s| format!("rpc: {s}"))?;
        Ok(resp.into_inner().status())
    }

    async fn tls_health(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<ServingStatus, String> {
        health(tls_channel(addr, config).await?).await
    }

    fn resolver(key: Arc<CertifiedKey>) -> Arc<FixedClientCert> {
        Arc::new(FixedClientCert {
            key,
            hints: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test]
    async fn mtls_with_terraform_like_p521_client_cert() {
        let (client_der, client_key) = test_support::p521_client();
        let srv = start(Some(pem_of(&client_der))).await;
        let server_cert = cert_from_line(&srv.line);

        // (a) the right certificate and key: SERVING, over TLS 1.3 and 1.2.
        let res = resolver(client_key.clone());
        let status = tls_health(
            srv.addr,
            client_config(server_cert.clone(), Some(res.clone()), false),
        )
        .await
        .unwrap();
        assert_eq!(status, ServingStatus::Serving);
        // The CA hint is the client cert's issuer, so Go offers its cert.
        let (_, parsed) = x509_parser::parse_x509_certificate(&client_der).unwrap();
        assert_eq!(
            *res.hints.lock().unwrap(),
            vec![parsed.issuer().as_raw().to_vec()]
        );

        let status = tls_health(
            srv.addr,
            client_config(
                server_cert.clone(),
                Some(resolver(client_key.clone())),
                true,
            ),
        )
        .await
        .unwrap();
        assert_eq!(status, ServingStatus::Serving);

        // (b) no client certificate: refused.
        let err = tls_health(srv.addr, client_config(server_cert.clone(), None, false)).await;
        assert!(err.is_err(), "no client cert must fail: {err:?}");
        eprintln!("no client cert: {err:?}");

        // (c) a different self-signed certificate: refused.
        let (_, other_key) = test_support::p256_client();
        let err = tls_health(
            srv.addr,
            client_config(server_cert.clone(), Some(resolver(other_key)), false),
        )
        .await;
        assert!(err.is_err(), "foreign cert must fail: {err:?}");
        eprintln!("foreign cert: {err:?}");
        // ... also when it can sign with the one scheme we offer (P-521), so
        // the DER comparison itself is what refuses it.
        let (other_der, _) = test_support::p256_client();
        let foreign = Arc::new(CertifiedKey::new(
            vec![other_der],
            test_support::random_p521_signing_key(),
        ));
        let err = tls_health(
            srv.addr,
            client_config(server_cert.clone(), Some(resolver(foreign)), false),
        )
        .await;
        assert!(err.is_err(), "foreign cert must fail: {err:?}");
        eprintln!("foreign cert, P-521 signature: {err:?}");

        // (d) the right certificate but another key: the CertificateVerify
        // signature check refuses it.
        let (_, p521_key) = test_support::p521_client();
        let impostor = Arc::new(CertifiedKey::new(
            vec![client_der.clone()],
            test_support::random_p521_signing_key(),
        ));
        drop(p521_key);
        let err = tls_health(
            srv.addr,
            client_config(server_cert.clone(), Some(resolver(impostor)), false),
        )
        .await;
        assert!(
            err.is_err(),
            "stolen cert without its key must fail: {err:?}"
        );
        eprintln!("right cert, wrong key: {err:?}");

        // A client expecting some other server certificate refuses ours.
        let wrong = plugin_tls::ServerIdentity::generate().unwrap().cert_der;
        let err = tls_health(
            srv.addr,
            client_config(wrong, Some(resolver(client_key.clone())), false),
        )
        .await;
        assert!(err.is_err());

        // The server is still healthy after all those failures.
        let status = tls_health(
            srv.addr,
            client_config(server_cert, Some(resolver(client_key)), false),
        )
        .await
        .unwrap();
        assert_eq!(status, ServingStatus::Serving);
        srv.task.abort();
    }

    #[tokio::test]
    async fn mtls_with_p256_client_cert_and_wrong_key() {
        let (client_der, client_key) = test_support::p256_client();
        let srv = start(Some(pem_of(&client_der))).await;
        let server_cert = cert_from_line(&srv.line);
        for tls12 in [false, true] {
            let status = tls_health(
                srv.addr,
                client_config(
                    server_cert.clone(),
                    Some(resolver(client_key.clone())),
                    tls12,
                ),
            )
            .await
            .unwrap();
            assert_eq!(status, ServingStatus::Serving);
        }
        let (_, other_key) = test_support::p256_client();
        let err = tls_health(
            srv.addr,
            client_config(
                server_cert.clone(),
                Some(resolver(other_key.clone())),
                false,
            ),
        )
        .await;
        assert!(err.is_err(), "foreign cert must fail: {err:?}");
        eprintln!("p256 foreign cert: {err:?}");
        let impostor = Arc::new(CertifiedKey::new(vec![client_der], other_key.key.clone()));
        let err = tls_health(
            srv.addr,
            client_config(server_cert, Some(resolver(impostor)), false),
        )
        .await;
        assert!(err.is_err(), "right cert, wrong key must fail: {err:?}");
        eprintln!("p256 right cert, wrong key: {err:?}");
        srv.task.abort();
    }

    #[tokio::test]
    async fn stalled_handshake_does_not_block_others() {
        let (client_der, client_key) = test_support::p521_client();
        let srv = start(Some(pem_of(&client_der))).await;
        let server_cert = cert_from_line(&srv.line);
        // Two connections that never speak TLS.
        let _idle1 = TcpStream::connect(srv.addr).await.unwrap();
        let mut junk = TcpStream::connect(srv.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let status = tls_health(
            srv.addr,
            client_config(server_cert, Some(resolver(client_key)), false),
        )
        .await
        .unwrap();
        assert_eq!(status, ServingStatus::Serving);
        srv.task.abort();
    }

    #[tokio::test]
    async fn handshake_line_format() {
        let (client_der, _) = test_support::p521_client();
        let server = PluginServer::bind(ServerConfig {
            client_cert_pem: Some(pem_of(&client_der)),
            ports: PortRange::EPHEMERAL,
        })
        .unwrap();
        let line = server.handshake_line(6);
        assert!(!line.contains('\n'));
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(fields[0], "1");
        assert_eq!(fields[1], "6");
        assert_eq!(fields[2], "tcp");
        assert_eq!(
            fields[3],
            format!("127.0.0.1:{}", server.local_addr().port())
        );
        assert_ne!(server.local_addr().port(), 0);
        assert_eq!(fields[4], "grpc");
        let cert = fields[5];
        assert!(!cert.contains('='), "must be unpadded");
        assert!(cert
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        let der = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(cert)
            .unwrap();
        assert_eq!(der, server.server_cert_der().unwrap().as_ref());
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            parsed
                .subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "localhost"
        );

        // Without TLS the certificate field is present but empty.
        let plain = PluginServer::bind(ServerConfig {
            client_cert_pem: None,
            ports: PortRange::EPHEMERAL,
        })
        .unwrap();
        let line = plain.handshake_line(6);
        assert_eq!(
            line,
            format!("1|6|tcp|127.0.0.1:{}|grpc|", plain.local_addr().port())
        );
        assert!(plain.server_cert_der().is_none());
    }

    #[test]
    fn protocol_version_negotiation() {
        assert!(negotiate_protocol_version(Some("5")).is_err());
        assert!(negotiate_protocol_version(Some("7")).is_err());
        assert!(negotiate_protocol_version(Some("4,5")).is_err());
        assert!(negotiate_protocol_version(Some("junk")).is_err());
        for ok in ["6", "5,6", "6,5", " 5 , 6 ", "x,6", "6,7"] {
            assert_eq!(negotiate_protocol_version(Some(ok)).unwrap(), 6, "{ok}");
        }
        // Not negotiated at all: our own version.
        assert_eq!(negotiate_protocol_version(None).unwrap(), 6);
        assert_eq!(negotiate_protocol_version(Some("")).unwrap(), 6);
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(PortRange::parse(None, None).unwrap(), PortRange::EPHEMERAL);
        assert_eq!(
            PortRange::parse(Some("10000"), Some("10010")).unwrap(),
            PortRange {
                min: 10000,
                max: 10010
            }
        );
        assert_eq!(
            PortRange::parse(Some("10000"), None).unwrap(),
            PortRange {
                min: 10000,
                max: 65535
            }
        );
        assert_eq!(
            PortRange::parse(None, Some("10010")).unwrap(),
            PortRange { min: 0, max: 10010 }
        );
        assert!(PortRange::parse(Some("10"), Some("9")).is_err());
        assert!(PortRange::parse(Some("port"), None).is_err());
        assert!(PortRange::parse(None, Some("70000")).is_err());
    }

    #[tokio::test]
    async fn binds_within_port_range() {
        // Find a free port, then ask for exactly it.
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = probe.local_addr().unwrap().port();
        let range = PortRange {
            min: port,
            max: port,
        };
        // Taken: binding fails rather than wandering off.
        assert!(bind_listener(range).is_err());
        drop(probe);
        let l = bind_listener(range).unwrap();
        assert_eq!(l.local_addr().unwrap().port(), port);
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(accept_loop(listener, None, tx));
        let client = TcpStream::connect(addr).await.unwrap();
        let io = rx.recv().await.unwrap();
        match &io.inner {
            Inner::Plain(s) => assert!(s.nodelay().unwrap()),
            Inner::Tls(_) => panic!("expected plaintext"),
        }
        assert_eq!(
            io.connect_info().remote_addr,
            Some(client.local_addr().unwrap())
        );
        task.abort();
    }

    #[tokio::test]
    async fn shutdown_rpc_stops_the_server() {
        let (client_der, client_key) = test_support::p521_client();
        let srv = start(Some(pem_of(&client_der))).await;
        let config = client_config(cert_from_line(&srv.line), Some(resolver(client_key)), false);
        let channel = tls_channel(srv.addr, config).await.unwrap();

        // Hold open what Terraform holds open: the stdio and broker streams.
        let mut stdio = GrpcStdioClient::new(channel.clone())
            .stream_stdio(())
            .await
            .unwrap()
            .into_inner();
        let (_broker_tx, broker_rx) = mpsc::channel::<ConnInfo>(1);
        let mut broker = GrpcBrokerClient::new(channel.clone())
            .start_stream(tokio_stream::wrappers::ReceiverStream::new(broker_rx))
            .await
            .unwrap()
            .into_inner();
        // Both stay open and silent while the server runs.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), stdio.message())
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), broker.message())
                .await
                .is_err()
        );
        assert_eq!(
            health(channel.clone()).await.unwrap(),
            ServingStatus::Serving
        );

        let started = std::time::Instant::now();
        GrpcControllerClient::new(channel.clone())
            .shutdown(Empty {})
            .await
            .expect("Shutdown answers before the server stops");
        let result = tokio::time::timeout(Duration::from_secs(5), srv.task)
            .await
            .expect("serve returns after Shutdown")
            .unwrap();
        result.unwrap();
        // Open streams were ended, not waited out.
        assert!(
            started.elapsed() < SHUTDOWN_GRACE,
            "took {:?}",
            started.elapsed()
        );
        // The streams ended (cleanly or by the connection closing).
        let end = tokio::time::timeout(Duration::from_secs(2), stdio.message()).await;
        assert!(matches!(end, Ok(Ok(None)) | Ok(Err(_))), "{end:?}");
        // Nothing listens any more.
        assert!(TcpStream::connect(srv.addr).await.is_err());
    }

    #[tokio::test]
    async fn external_stop_and_plaintext() {
        let server = PluginServer::bind(ServerConfig {
            client_cert_pem: None,
            ports: PortRange::EPHEMERAL,
        })
        .unwrap();
        let addr = server.local_addr();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(EmptyProvider, async move {
            let _ = stop_rx.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert_eq!(
            health(channel.clone()).await.unwrap(),
            ServingStatus::Serving
        );
        // The Provider service is mounted (and unimplemented here).
        let err = fleetform_proto::tfplugin6::provider_client::ProviderClient::new(channel)
            .get_provider_schema(
                fleetform_proto::tfplugin6::get_provider_schema::Request::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn reattach_json_shape() {
        let addr: SocketAddr = "127.0.0.1:43210".parse().unwrap();
        assert_eq!(
            reattach_providers_json("registry.terraform.io/fleetform/fleet", 4242, addr),
            r#"{"registry.terraform.io/fleetform/fleet":{"Protocol":"grpc","ProtocolVersion":6,"Pid":4242,"Test":true,"Addr":{"Network":"tcp","String":"127.0.0.1:43210"}}}"#
        );
    }

    #[test]
    fn log_levels() {
        use tracing_subscriber::filter::LevelFilter as L;
        assert_eq!(log_level_from_env(None, None), L::WARN);
        assert_eq!(log_level_from_env(None, Some("debug")), L::DEBUG);
        assert_eq!(log_level_from_env(Some("Info"), Some("TRACE")), L::INFO);
        assert_eq!(log_level_from_env(Some(""), Some("error")), L::ERROR);
        assert_eq!(log_level_from_env(None, Some("OFF")), L::OFF);
        assert_eq!(log_level_from_env(None, Some("json")), L::TRACE);
        assert_eq!(log_level_from_env(None, Some("1")), L::TRACE);
        assert_eq!(log_level_from_env(Some("warn"), None), L::WARN);
    }

    #[test]
    fn hclog_timestamp_matches_go_layout() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(hclog_timestamp(t), "2023-11-14T22:13:20.123456Z");
        let t = time::OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(hclog_timestamp(t), "1970-01-01T00:00:00.000000Z");
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn log_lines_are_hclog_json() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let cap = Capture::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(cap.clone())
                .with_ansi(false)
                .event_format(HclogJson),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, name = "x", ok = true, "hello {}", "world");
            tracing::warn!(target: "h2::proto", "from a dependency");
        });
        let out = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["@level"], "info");
        assert_eq!(first["@message"], "hello world");
        assert_eq!(first["@module"], "provider");
        assert_eq!(first["answer"], 42);
        assert_eq!(first["name"], "x");
        assert_eq!(first["ok"], true);
        let ts = first["@timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2006-01-02T15:04:05.000000Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.');
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["@level"], "warn");
        assert_eq!(second["@module"], "provider.h2");
    }
}
