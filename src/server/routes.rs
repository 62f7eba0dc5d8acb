//! The webhook's HTTP routes: `POST /mutate` and `POST /validate`. Reads the body within the
//! size limit, the body budget and the body-read timeout ([`super::budget`]) and the API server's
//! deadline (`?timeout=`), hands it to [`admission::review`] with the current snapshot, and
//! answers: 200 with the AdmissionReview, 400 with a plain message for bad input, 413 for a body
//! over the limit, 503 when the body budget is exhausted, 408 when the body-read timeout or the
//! deadline passes, 404/405 otherwise.
//!
//! Each event about a decided review is logged in a `review` span (endpoint, uid, kind, namespace,
//! object_name, operation); events before a review is decoded carry the endpoint. Objects are
//! never logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::budget::{self, BodyBudget, BodyError, ReadLimits};
use super::decide::DecidePool;
use super::decision_log::{self, DecisionLog, Key, Verdict};
use super::metrics::{Metrics, RequestOutcome};
use crate::admission::{self, Answer, Endpoint, ReviewError};
use crate::policy::{Action, Budget};
use crate::state::SharedState;

/// Default largest body: an AdmissionReview with object and oldObject can approach 7 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// The deadline when the caller gives none (the API server's largest `timeoutSeconds`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// What the routes need.
#[derive(Clone, Debug)]
pub struct AppState {
    pub state: Arc<SharedState>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Request-body bytes in memory at once, over all requests.
    pub budget: Arc<BodyBudget>,
    /// Time for a whole body to arrive.
    pub body_read_timeout: Duration,
    /// Repeated identical denials and mutations, logged once with a count.
    pub decisions: Arc<DecisionLog>,
    /// Where reviews are decided: blocking threads, bounded ([`DecidePool`]).
    pub pool: Arc<DecidePool>,
}

impl AppState {
    /// Routes with the default body budget (as without a container memory limit) and body-read
    /// timeout.
    pub fn new(state: Arc<SharedState>, metrics: Arc<Metrics>, max_body_bytes: usize) -> AppState {
        let total = budget::default_budget(None, max_body_bytes);
        AppState {
            state,
            metrics,
            max_body_bytes,
            budget: Arc::new(
                BodyBudget::new(total, max_body_bytes).expect("the default budget fits the body"),
            ),
            body_read_timeout: budget::DEFAULT_BODY_READ_TIMEOUT,
            decisions: Arc::new(DecisionLog::new(decision_log::DEFAULT_WINDOW)),
            pool: Arc::new(DecidePool::default()),
        }
    }
}

/// The webhook router.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .route("/validate", post(validate).fallback(method_not_allowed))
        .fallback(not_found)
        // One `Arc` for the whole state: each request clones the state, and one reference count
        // costs less than one per shared part.
        .with_state(Arc::new(app))
}

async fn mutate(State(app): State<Arc<AppState>>, req: Request) -> Response {
    handle(Endpoint::Mutate, app, req).await
}

async fn validate(State(app): State<Arc<AppState>>, req: Request) -> Response {
    handle(Endpoint::Validate, app, req).await
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found: the webhook answers POST /mutate and POST /validate",
    )
}

async fn method_not_allowed() -> Response {
    plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: use POST",
    )
}

fn plain(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Parses a Go duration as the API server writes it (`10s`; also `1m30s`, `500ms`, `1.5s`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The deadline of one request: `?timeout=` when present and valid, else the default.
fn deadline(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.strip_prefix("timeout="))
        .find_map(parse_go_duration)
        .unwrap_or(DEFAULT_DEADLINE)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// An answer after which the rest of the body is not read: the connection cannot be reused.
fn closing(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    let mut r = plain(status, msg);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn too_large(limit: usize) -> Response {
    closing(StatusCode::PAYLOAD_TOO_LARGE, BodyError::TooLarge { limit })
}

/// Over HTTP/2, a stream answered before its request body ended is reset by the server
/// (`RST_STREAM`, CANCEL: curl says "error 92, stream not closed cleanly") although the client
/// has the whole 413. Reading and discarding the rest of a body that declared a modest excess
/// (at most twice the limit) within [`H2_DRAIN_TIME`] lets the stream end cleanly; nothing is
/// kept. Larger or slower bodies are reset as before (the client has its 413 either way).
/// HTTP/1.1 closes the connection instead (`Connection: close`).
async fn drain_h2(
    version: axum::http::Version,
    body: axum::body::Body,
    declared: u64,
    limit: usize,
) {
    use http_body_util::BodyExt as _;
    if version != axum::http::Version::HTTP_2 || declared > 2 * limit as u64 {
        return;
    }
    let mut body = body;
    let mut left = declared;
    let _ = tokio::time::timeout(H2_DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            left = match left.checked_sub(n) {
                Some(l) => l,
                None => return,
            };
        }
    })
    .await;
}

/// Time to discard the rest of an HTTP/2 body over the limit ([`drain_h2`]).
const H2_DRAIN_TIME: Duration = Duration::from_secs(1);

async fn handle(endpoint: Endpoint, app: Arc<AppState>, req: Request) -> Response {
    let start = Instant::now();
    let endpoint_name = endpoint.as_str();
    let limit = deadline(req.uri().query());
    let (parts, body) = req.into_parts();
    if let Some(declared) =
        content_length(&parts.headers).filter(|n| *n > app.max_body_bytes as u64)
    {
        tracing::warn!(
            endpoint = endpoint_name,
            limit = app.max_body_bytes,
            "request body over the limit refused"
        );
        app.metrics
            .request_failed(endpoint, RequestOutcome::BadRequest, start.elapsed());
        drain_h2(parts.version, body, declared, app.max_body_bytes).await;
        return too_large(app.max_body_bytes);
    }
    let answer = tokio::time::timeout(limit, async {
        let read = ReadLimits {
            max_body: app.max_body_bytes,
            content_length: content_length(&parts.headers).and_then(|n| usize::try_from(n).ok()),
            deadline: tokio::time::Instant::from_std(start) + app.body_read_timeout,
            timeout: app.body_read_timeout,
        };
        let bytes = match budget::read_body(body, &app.budget, read).await {
            Ok(b) => b,
            Err(e) => {
                let status = match e {
                    BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::Budget { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    BodyError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
                    BodyError::Read(_) => StatusCode::BAD_REQUEST,
                };
                tracing::warn!(endpoint = endpoint_name, error = %e, "request body refused");
                let outcome = match e {
                    BodyError::Budget { .. } | BodyError::Timeout { .. } => RequestOutcome::Error,
                    BodyError::TooLarge { .. } | BodyError::Read(_) => RequestOutcome::BadRequest,
                };
                app.metrics.request_failed(endpoint, outcome, start.elapsed());
                let mut r = closing(status, e);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                return r;
            }
        };
        let snapshot = app.state.snapshot();
        // Off the async workers, in a bounded pool; the rules stop at the work budget, whose
        // deadline is a share of the API server's (counted from the request's start, so time
        // queued for a thread is spent too).
        let decided = app
            .pool
            .run(bytes.len(), move || {
                let budget = Budget::for_timeout(start, limit);
                admission::review_within(
                    endpoint,
                    &snapshot.policy,
                    &snapshot.catalog,
                    &bytes,
                    &budget,
                )
            })
            .await;
        let decided = match decided {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(endpoint = endpoint_name, error = %e, "the decision of a review panicked");
                app.metrics.decision_panicked(endpoint);
                app.metrics
                    .request_failed(endpoint, RequestOutcome::Error, start.elapsed());
                return plain(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
        };
        match decided {
            Ok(outcome) => answer(endpoint, &app, &outcome, start),
            Err(e @ ReviewError::Encode(_)) => {
                tracing::error!(endpoint = endpoint_name, error = %e, "failed to encode the answer");
                app.metrics
                    .request_failed(endpoint, RequestOutcome::Error, start.elapsed());
                plain(StatusCode::INTERNAL_SERVER_ERROR, e)
            }
            Err(e) => {
                tracing::warn!(endpoint = endpoint_name, error = %e, "bad AdmissionReview refused");
                app.metrics.request_failed(
                    endpoint,
                    RequestOutcome::BadRequest,
                    start.elapsed(),
                );
                plain(StatusCode::BAD_REQUEST, e)
            }
        }
    })
    .await;
    answer.unwrap_or_else(|_| {
        tracing::warn!(endpoint = endpoint_name, deadline = ?limit, "request not completed within its deadline");
        app.metrics
            .request_failed(endpoint, RequestOutcome::Error, start.elapsed());
        let mut r = plain(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not completed within its deadline of {limit:?} (?timeout=)"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    })
}

/// The span of one review, built once with every field.
///
/// It is made after decoding, only when an event will be logged in it: with the JSON format,
/// each `Span::record` re-parses and re-writes the span's stored fields, which cost a tenth of
/// the server's CPU under load when the fields were recorded one by one after decoding.
fn review_span(endpoint: Endpoint, info: &admission::RequestInfo) -> tracing::Span {
    tracing::info_span!(
        "review",
        endpoint = endpoint.as_str(),
        uid = info.uid.as_str(),
        kind = info.kind.as_str(),
        namespace = info.namespace.as_str(),
        // Not `name`: the JSON log format already uses that key for the span's own name.
        object_name = info.name.as_str(),
        operation = info.operation,
    )
}

/// Logs and counts one decided review, and encodes the answer.
fn answer(endpoint: Endpoint, app: &AppState, outcome: &Answer, start: Instant) -> Response {
    let info = &outcome.info;
    let json = match outcome.to_json() {
        Ok(j) => j,
        Err(e) => {
            review_span(endpoint, info).in_scope(|| {
                tracing::error!(error = %e, "failed to encode the answer");
            });
            app.metrics
                .request_failed(endpoint, RequestOutcome::Error, start.elapsed());
            return plain(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
    };
    let d = &outcome.decision;
    let logged = if let Some(reason) = outcome.denial_message.as_deref() {
        Some(("denied", std::borrow::Cow::Borrowed(reason)))
    } else if endpoint == Endpoint::Mutate && !d.patch.is_empty() {
        let reasons: Vec<&str> = d
            .findings
            .iter()
            .filter(|f| f.action == Action::Mutated)
            .map(|f| f.message.as_str())
            .collect();
        Some(("mutated", std::borrow::Cow::Owned(reasons.join("; "))))
    } else {
        None
    };
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    if let Some((action, reason)) = logged
        .as_ref()
        .filter(|_| tracing::enabled!(tracing::Level::INFO))
    {
        // A storm of identical decisions is logged once in full, then as one line with a count
        // (`decision_log`).
        let key = Key {
            endpoint,
            action,
            kind: &info.kind,
            namespace: &info.namespace,
            dry_run: info.dry_run,
            message: reason,
        };
        if app.decisions.record(&key, Instant::now()) == Verdict::Log {
            review_span(endpoint, info).in_scope(|| {
                // `denied` or `mutated` is the message.
                tracing::info!(dry_run = info.dry_run, reason = %reason, "{action}");
            });
        }
    } else if logged.is_none() && debug {
        // Formatted only when debug logging is on: most requests end here.
        let findings: Vec<String> = d
            .findings
            .iter()
            .map(|f| format!("{}: {}: {}", f.rule.as_str(), f.action.as_str(), f.message))
            .collect();
        review_span(endpoint, info).in_scope(|| {
            tracing::debug!(warnings = d.warnings.len(), findings = ?findings, "allowed");
        });
    }
    if !d.unjudged.is_empty() {
        app.metrics.unjudged(endpoint);
        review_span(endpoint, info).in_scope(|| {
            tracing::warn!(unjudged = ?d.unjudged, "review answered before all of it was judged (work bounds)");
        });
    }
    app.metrics.reviewed(endpoint, outcome, start.elapsed());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
