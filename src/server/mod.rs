//! The webhook server: the HTTPS listener (tokio-rustls acceptor loop feeding hyper-util
//! connections), the admin listener, certificate and policy reloads, and graceful shutdown.
//! It owns sockets, TLS and timing; it decides nothing (that is [`crate::admission`]) and reads no
//! cluster (that is the cluster module, started beside it with the same [`Shared`]).
//!
//! Shutdown ([`run`]): on the first signal readiness turns false at once; the listener keeps
//! accepting for `shutdown_delay` (the API server keeps using its keep-alive connections to a pod
//! for a while after it leaves the endpoints); then it stops accepting, in-flight requests finish
//! within `drain_timeout`, and [`run`] returns. A second signal ends it at once: `serve` drops
//! the server future and returns an error to `main` (see [`shutdown`]).

pub mod admin;
pub mod budget;
pub mod certs;
pub mod decide;
pub mod decision_log;
mod follow;
pub mod log_buffer;
pub mod metrics;
pub mod readiness;
pub mod reload;
pub mod routes;
pub mod shutdown;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use self::metrics::Metrics;
use self::readiness::Readiness;
use self::reload::PolicyReload;
use self::tls::{Tls, TlsError, TlsOptions};
use crate::state::SharedState;

/// Default limit of open webhook connections (TLS handshakes included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// A client that has not finished the TLS handshake by then is dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to send a request's headers; also how long an idle HTTP/1.1 keep-alive connection is
/// kept (hyper starts the clock when it waits for the next request).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Budget(#[from] budget::BudgetError),
    #[error("failed to bind {what} listener {addr}: {cause}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        cause: std::io::Error,
    },
}

/// Accepts the next connection. Errors such as running out of file descriptors are logged and
/// retried after a pause instead of spinning.
pub(crate) async fn accept(
    listener: &TcpListener,
    which: &'static str,
) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(listener = which, error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connection limits of the HTTPS listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// hyper's HTTP/1.1 read buffer grows up to this (default ~400 KiB), and keeps its capacity for
/// the connection's life: 200 connections streaming bodies held 80 MiB in these buffers alone.
/// It also bounds a request's headers (the API server sends well under 2 KiB).
const H1_MAX_BUF: usize = 16 << 10;

/// HTTP/2 receive windows: bytes a client may send ahead of what the routes have read.
const H2_STREAM_WINDOW: u32 = 64 << 10;
const H2_CONNECTION_WINDOW: u32 = 256 << 10;

/// After the listener closes, how long connections may still start their first request before
/// idle ones are closed (part of the drain timeout).
const DRAIN_LINGER: Duration = Duration::from_millis(500);

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished.
    Complete,
    /// The drain timeout passed with connections still open; they are dropped.
    TimedOut,
}

/// The HTTPS webhook listener, bound and ready to run.
pub struct HttpsServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Once this turns "shutting down", HTTP/1.1 answers carry `Connection: close`.
    closing: Option<Readiness>,
}

impl std::fmt::Debug for HttpsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsServer")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The connections open now, counted by [`OpenConnection`] guards; the drain waits on it
/// instead of polling the `open_connections` gauge (which is for scraping, not for control).
#[derive(Clone, Debug)]
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn new() -> InFlight {
        InFlight(Arc::new(watch::Sender::new(0)))
    }

    /// Completes once no connection is open.
    async fn idle(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|open| *open == 0).await;
    }
}

/// Counts a connection (gauge and [`InFlight`]) until its task ends, however it ends.
struct OpenConnection {
    metrics: Arc<Metrics>,
    in_flight: InFlight,
}

impl OpenConnection {
    fn new(metrics: Arc<Metrics>, in_flight: InFlight) -> OpenConnection {
        metrics.open_connections.inc();
        in_flight.0.send_modify(|open| *open += 1);
        OpenConnection { metrics, in_flight }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.open_connections.dec();
        self.in_flight.0.send_modify(|open| *open -= 1);
    }
}

impl HttpsServer {
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        router: Router,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Result<HttpsServer, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|cause| ServerError::Bind {
                what: "webhook",
                addr,
                cause,
            })?;
        Ok(HttpsServer {
            listener,
            acceptor: TlsAcceptor::from(tls),
            router,
            limits,
            metrics,
            closing: None,
        })
    }

    /// From the moment `readiness` is shutting down, every HTTP/1.1 answer carries
    /// `Connection: close`, so keep-alive clients move to a new connection (another replica)
    /// during the shutdown delay instead of sending on a connection the drain is about to close:
    /// a request written just as the server closes an idle connection is lost to the client.
    /// (HTTP/2 needs nothing: the drain's GOAWAY says which streams were not processed.)
    pub fn close_keep_alive_when_shutting_down(mut self, readiness: Readiness) -> HttpsServer {
        self.closing = Some(readiness);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `stop` completes, then waits up to `drain_timeout` for the open
    /// connections to finish their requests.
    pub async fn run(self, stop: impl Future<Output = ()>, drain_timeout: Duration) -> Drain {
        let HttpsServer {
            listener,
            acceptor,
            router,
            limits,
            metrics,
            closing,
        } = self;
        // The protocol is chosen by ALPN, so each connection starts in a known protocol (an idle
        // HTTP/1.1 connection is then bounded by the header read timeout from its first byte on).
        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(H1_MAX_BUF)
            .keep_alive(true);
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        // HTTP/2 flow control is the only backpressure on a stream's unread data: hyper's
        // default windows (1 MiB) would let each connection buffer a megabyte outside the body
        // budget. 64 KiB (the protocol's default) per stream, 256 KiB per connection.
        h2.http2()
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let (h1, h2) = (Arc::new(h1), Arc::new(h2));

        let graceful = GracefulShutdown::new();
        let in_flight = InFlight::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut stop => break,
                p = slots.clone().acquire_owned() => p.expect("the connection semaphore is never closed"),
            };
            let (tcp, peer) = tokio::select! {
                biased;
                () = &mut stop => break,
                c = accept(&listener, "webhook") => c,
            };
            let watcher = graceful.watcher();
            let (acceptor, router, metrics, h1, h2, closing, in_flight) = (
                acceptor.clone(),
                router.clone(),
                metrics.clone(),
                h1.clone(),
                h2.clone(),
                closing.clone(),
                in_flight.clone(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                let _open = OpenConnection::new(metrics.clone(), in_flight);
                let _ = tcp.set_nodelay(true);
                let stream = match tokio::time::timeout(
                    limits.handshake_timeout,
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let closing = closing.filter(|_| !is_h2);
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let answer = router.clone().oneshot(req);
                    let closing = closing.clone();
                    async move {
                        let mut resp = answer.await?;
                        if closing.as_ref().is_some_and(Readiness::is_shutting_down) {
                            resp.headers_mut().insert(
                                hyper::header::CONNECTION,
                                hyper::header::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let io = TokioIo::new(stream);
                let result = if is_h2 {
                    watcher
                        .watch(h2.serve_connection(io, service).into_owned())
                        .await
                } else {
                    watcher
                        .watch(h1.serve_connection(io, service).into_owned())
                        .await
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        // Connections accepted just before the listener closed may still be in their handshake
        // or about to send their first request: serve them, briefly, before the drain closes idle
        // connections (a request written to a connection closed as idle is lost to its client).
        // Busy keep-alive connections close themselves meanwhile (`Connection: close`).
        let started = tokio::time::Instant::now();
        let linger = drain_timeout.min(DRAIN_LINGER);
        let _ = tokio::time::timeout(linger, in_flight.idle()).await;
        let drain_timeout = drain_timeout.saturating_sub(started.elapsed());
        tracing::info!(
            connections = graceful.count(),
            timeout = ?drain_timeout,
            "stopped accepting connections; finishing in-flight requests"
        );
        match tokio::time::timeout(drain_timeout, graceful.shutdown()).await {
            Ok(()) => Drain::Complete,
            Err(_) => Drain::TimedOut,
        }
    }
}

/// Everything `serve` configures.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsOptions,
    pub max_body_bytes: usize,
    /// Request-body bytes in memory at once ([`budget`]).
    pub body_budget_bytes: usize,
    pub body_read_timeout: Duration,
    pub limits: Limits,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    /// Poll this policy file for changes; `None` with the embedded policy.
    pub policy_reload: Option<PolicyReload>,
}

/// What the server shares with the rest of the process (and the cluster task).
#[derive(Clone, Debug)]
pub struct Shared {
    pub state: Arc<SharedState>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
}

/// Runs the webhook until `shutdown` completes, then shuts down gracefully (see the module doc).
/// Certificates are loaded and checked before anything binds.
pub async fn run(
    config: Config,
    ctx: Shared,
    shutdown: impl Future<Output = ()>,
) -> Result<Drain, ServerError> {
    let bound = ctx.readiness.condition("listener bound");
    let tls = Tls::load(&config.tls)?;
    let body_budget = budget::BodyBudget::new(config.body_budget_bytes, config.max_body_bytes)?;
    let decisions = Arc::new(decision_log::DecisionLog::new(decision_log::DEFAULT_WINDOW));
    let router = routes::router(routes::AppState {
        state: ctx.state.clone(),
        metrics: ctx.metrics.clone(),
        max_body_bytes: config.max_body_bytes,
        budget: Arc::new(body_budget),
        body_read_timeout: config.body_read_timeout,
        decisions: decisions.clone(),
        pool: Arc::new(decide::DecidePool::default()),
    });
    let https = HttpsServer::bind(
        config.listen,
        tls.config.clone(),
        router,
        config.limits,
        ctx.metrics.clone(),
    )
    .await?
    .close_keep_alive_when_shutting_down(ctx.readiness.clone());
    let admin = admin::AdminServer::bind(config.admin_listen)
        .await
        .map_err(|cause| ServerError::Bind {
            what: "admin",
            addr: config.admin_listen,
            cause,
        })?;
    let https_addr = https.local_addr().unwrap_or(config.listen);
    let admin_addr = admin.local_addr().unwrap_or(config.admin_listen);
    let admin_task = admin.spawn(ctx.readiness.clone(), ctx.registry.clone());
    let decisions_task = decisions.spawn_ticker();
    let tls_task = tls.spawn_reloader(ctx.metrics.clone());
    let policy_task = config
        .policy_reload
        .clone()
        .map(|r| reload::spawn(r, ctx.state.clone(), ctx.metrics.clone()));
    bound.set(true);
    tracing::info!(
        listen = %https_addr,
        admin = %admin_addr,
        cert = %config.tls.files.cert.display(),
        client_ca = %config.tls.client_ca.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
        body_budget_bytes = config.body_budget_bytes,
        "serving POST /mutate and POST /validate over HTTPS; /healthz, /readyz and /metrics over HTTP"
    );

    let readiness = ctx.readiness.clone();
    let delay = config.shutdown_delay;
    let stop = async move {
        shutdown.await;
        readiness.shut_down();
        tracing::info!(delay = ?delay, "shutting down: not ready any more; still answering during the shutdown delay");
        tokio::time::sleep(delay).await;
    };
    let drain = https.run(stop, config.drain_timeout).await;
    match drain {
        Drain::Complete => tracing::info!("all connections finished; exiting"),
        Drain::TimedOut => tracing::warn!(
            timeout = ?config.drain_timeout,
            "drain timeout passed with requests still in flight; exiting anyway"
        ),
    }
    admin_task.abort();
    tls_task.abort();
    if let Some(t) = decisions_task {
        t.abort();
    }
    // The counts of repeated decisions not yet summarized.
    decisions.drain();
    if let Some(t) = policy_task {
        t.abort();
    }
    Ok(drain)
}
