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
pub const NOT_A_PLUGIN_MESSAGE: &str = "This binary is a plugin. These are not meant to be executed directly.\n\
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

/// Serves `provider` as a go-plugin gRPC plugin until Terraform asks it to
/// shut down (or, in debug mode, until Ctrl-C).
///
/// Returns an error (so `main` exits 1) when not launched by a plugin host,
/// when protocol 6 is not offered, or when the server cannot start.
pub async fn serve<P: Provider>(provider: P, opts: ServeOpts) -> anyhow::Result<()> {
    if opts.debug {
        return serve_debug(provider, &opts).await;
    }

    if std::env::var(MAGIC_COOKIE_KEY).ok().as_deref() != Some(MAGIC_COOKIE_VALUE) {
        eprintln!("{NOT_A_PLUGIN_MESSAGE}");
        bail!("not started by Terraform: {MAGIC_COOKIE_KEY} is missing or wrong");
    }
    let version = negotiate_protocol_version(
        std::env::var("PLUGIN_PROTOCOL_VERSIONS").ok().as_deref(),
    )?;
    let ports = PortRange::from_env()?;
    let client_cert_pem = std::env::var("PLUGIN_CLIENT_CERT")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if client_cert_pem.is_none() {
        tracing::warn!("PLUGIN_CLIENT_CERT is not set: serving without TLS");
    }

    let server = PluginServer::bind(ServerConfig {
        client_cert_pem,
        ports,
    })
    .await?;
    let line = server.handshake_line(version);
    tracing::debug!(address = %server.local_addr(), "plugin address");
    {
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .context("writing the handshake line to stdout")?;
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

    server.run(provider, std::future::pending()).await
}

async fn serve_debug<P: Provider>(provider: P, opts: &ServeOpts) -> anyhow::Result<()> {
    let server = PluginServer::bind(ServerConfig {
        client_cert_pem: None,
        ports: PortRange::EPHEMERAL,
    })
    .await?;
    let reattach = reattach_providers_json(
        &opts.provider_address,
        std::process::id(),
        server.local_addr(),
    );
    {
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n\
             \tTF_REATTACH_PROVIDERS='{reattach}'\n\n"
        )
        .and_then(|()| out.flush())
        .context("writing the reattach instructions")?;
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("interrupted, shutting down");
    };
    server.run(provider, ctrl_c).await
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
    listener: TcpListener,
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
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let tls = match &config.client_cert_pem {
            None => None,
            Some(pem) => {
                let client_certs = plugin_tls::parse_client_cert_pem(pem)?;
                let identity = ServerIdentity::generate()?;
                let server_config = plugin_tls::server_config(&identity, client_certs)?;
                Some((TlsAcceptor::from(server_config), identity.cert_der))
            }
        };
        let listener = bind_listener(config.ports).await?;
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
        let acceptor = tokio::spawn(accept_loop(self.listener, self.tls.map(|(a, _)| a), conn_tx));
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

async fn bind_listener(ports: PortRange) -> anyhow::Result<TcpListener> {
    let mut last_err = None;
    for port in ports.min..=ports.max {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
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
                if out.send(PluginIo::new(Inner::Plain(tcp), info)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let out = out.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = out.send(PluginIo::new(Inner::Tls(Box::new(stream)), info)).await;
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
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(info)) => {
                        tracing::trace!(service_id = info.service_id, "ignoring broker message");
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::trace!(%status, "broker stream ended");
                        break;
                    }
                }
            }
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
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let level = log_level_from_env(
        std::env::var("TF_LOG_PROVIDER").ok().as_deref(),
        std::env::var("TF_LOG").ok().as_deref(),
    );
    // Transport crates are very chatty at DEBUG/TRACE; cap them at INFO.
    let deps = std::cmp::min(level, tracing_subscriber::filter::LevelFilter::INFO);
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_targets(
            ["h2", "hyper", "hyper_util", "tower", "tonic", "rustls", "tokio_rustls", "mio"]
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
    obj.insert("@timestamp".into(), hclog_timestamp(time::OffsetDateTime::now_utc()).into());
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
