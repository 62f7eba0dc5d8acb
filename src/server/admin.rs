//! The admin listener (plain HTTP, outside request tracing): `GET /healthz` (the process runs),
//! `GET /readyz` (the [`Readiness`] conditions) and `GET /metrics` (Prometheus text format).
//! It serves until the process ends, so probes see readiness turn false during shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

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

/// The admin listener, bound.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<AdminServer> {
        Ok(AdminServer {
            listener: TcpListener::bind(addr).await?,
        })
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
        tokio::spawn(async move {
            if let Err(e) = axum::serve(self.listener, app).await {
                tracing::error!(error = %e, "admin listener failed");
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
