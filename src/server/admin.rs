//! The admin listener (plain HTTP, outside request tracing): `GET /healthz` (the process runs),
//! `GET /readyz` (the [`Readiness`] conditions) and `GET /metrics` (Prometheus text format).
//! It serves until the process ends, so probes see readiness turn false during shutdown.
//! HTTP/1.1 only, with a header read timeout: a client that trickles its request line
//! (slowloris) is cut off instead of holding a task and a socket for ever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::metrics;
use super::readiness::Readiness;

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    registry: Arc<Registry>,
}

/// The admin routes.
pub fn router(readiness: Readiness, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /healthz, /readyz or /metrics\n",
            )
        })
        .with_state(AdminState {
            readiness,
            registry,
        })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let report = s.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, report.to_text()).into_response()
}

async fn metrics_text(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::encode(&s.registry),
    )
        .into_response()
}

/// How long an admin client may take to send a request's headers.
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin listener, bound.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    header_read_timeout: Duration,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<AdminServer> {
        Ok(AdminServer {
            listener: TcpListener::bind(addr).await?,
            header_read_timeout: ADMIN_HEADER_READ_TIMEOUT,
        })
    }

    /// Another header read timeout (tests).
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> AdminServer {
        self.header_read_timeout = timeout;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the task is dropped or aborted.
    pub fn spawn(
        self,
        readiness: Readiness,
        registry: Arc<Registry>,
    ) -> tokio::task::JoinHandle<()> {
        let app = router(readiness, registry);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true);
        let http = Arc::new(http);
        let listener = self.listener;
        tokio::spawn(async move {
            loop {
                let (tcp, _) = super::accept(&listener, "admin").await;
                let (app, http) = (app.clone(), http.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| app.clone().oneshot(req),
                    );
                    // Errors here are the client's (reset, timed out): nothing to report.
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_cut_off_and_others_are_served() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut reg = metrics::new_registry();
        metrics::Metrics::register(&mut reg);
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .with_header_read_timeout(Duration::from_millis(300));
        let addr = server.local_addr().unwrap();
        let task = server.spawn(Readiness::new(), Arc::new(reg));

        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Meanwhile a whole request is answered.
        let mut fast = tokio::net::TcpStream::connect(addr).await.unwrap();
        fast.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), fast.read_to_string(&mut answer))
            .await
            .expect("answered in time")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The trickling one is closed once the timeout passes (EOF, or a 408 then EOF).
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the slow client was not cut off");
        let rest = String::from_utf8_lossy(&rest);
        assert!(!rest.contains("200 OK"), "{rest}");
        task.abort();
    }

    #[tokio::test]
    async fn readyz_follows_conditions_and_shutdown() {
        let readiness = Readiness::new();
        let bound = readiness.condition("listener bound");
        let mut reg = metrics::new_registry();
        metrics::Metrics::register(&mut reg);
        let app = router(readiness.clone(), Arc::new(reg));
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        bound.set(true);
        let (s, body) = get(&app, "/readyz").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("[+] listener bound"), "{body}");
        readiness.shut_down();
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&app, "/healthz").await.0,
            StatusCode::OK,
            "alive while draining"
        );
        let (s, text) = get(&app, "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            text.contains("storage_policy_webhook_open_connections"),
            "{text}"
        );
        assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}
