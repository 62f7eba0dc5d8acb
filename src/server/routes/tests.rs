//! Router tests through `tower::ServiceExt::oneshot`: AdmissionReview fixtures in
//! `tests/fixtures/server/`, the answer's decision and the HTTP errors.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::policy::Policy;
use crate::server::metrics::{self, Metrics};

const POLICY: &str = include_str!("../../../tests/fixtures/server/policy.yaml");
const PVC_NO_CLASS: &str = include_str!("../../../tests/fixtures/server/pvc-no-class.review.json");
const PVC_RWX_BLOCK: &str =
    include_str!("../../../tests/fixtures/server/pvc-rwx-block.review.json");
const PVC_RWX_NFS: &str = include_str!("../../../tests/fixtures/server/pvc-rwx-nfs.review.json");

struct Harness {
    app: Router,
    registry: prometheus_client::registry::Registry,
}

fn harness_with(dry_run: bool, max_body_bytes: usize) -> Harness {
    let policy = Policy::parse(POLICY, None, dry_run).unwrap();
    let mut registry = metrics::new_registry();
    let metrics = Metrics::register(&mut registry);
    let app = router(AppState::new(
        Arc::new(SharedState::new(policy)),
        metrics,
        max_body_bytes,
    ));
    Harness { app, registry }
}

fn harness() -> Harness {
    harness_with(false, DEFAULT_MAX_BODY_BYTES)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let r = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

async fn review(app: &Router, path: &str, body: &str) -> Value {
    let (status, headers, body) = send(app, post(path, body.to_owned())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(&body).unwrap()
}

fn patch_of(answer: &Value) -> Value {
    let b64 = answer["response"]["patch"]
        .as_str()
        .expect("patch is a base64 string");
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn mutate_sets_the_default_class_on_a_pvc_without_one() {
    let h = harness();
    let a = review(&h.app, "/mutate?timeout=10s", PVC_NO_CLASS).await;
    assert_eq!(a["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(a["kind"], "AdmissionReview");
    assert_eq!(a["response"]["uid"], "7f0c6b1e-0000-4000-8000-000000000001");
    assert_eq!(a["response"]["allowed"], true);
    assert_eq!(a["response"]["patchType"], "JSONPatch");
    assert_eq!(
        patch_of(&a),
        serde_json::json!([{"op": "add", "path": "/spec/storageClassName", "value": "standard"}])
    );
}

#[tokio::test]
async fn validate_never_returns_a_patch() {
    let h = harness();
    let a = review(&h.app, "/validate?timeout=10s", PVC_NO_CLASS).await;
    assert_eq!(a["response"]["allowed"], true);
    assert!(a["response"].get("patch").is_none() && a["response"].get("patchType").is_none());
}

#[tokio::test]
async fn validate_denies_rwx_on_a_block_class_like_the_api_does() {
    let h = harness();
    let a = review(&h.app, "/validate?timeout=10s", PVC_RWX_BLOCK).await;
    let r = &a["response"];
    assert_eq!(r["uid"], "7f0c6b1e-0000-4000-8000-000000000002");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 422);
    assert_eq!(r["status"]["reason"], "Invalid");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(r#"PersistentVolumeClaim "shared" is invalid: spec.accessModes: Unsupported value: "ReadWriteMany""#),
        "{msg}"
    );
    let text = metrics::encode(&h.registry);
    assert!(
        text.contains(
            r#"storage_policy_webhook_requests_total{endpoint="validate",outcome="denied"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"storage_policy_webhook_decisions_total{rule="accessModes",action="denied",kind="PersistentVolumeClaim"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn validate_allows_rwx_on_a_shared_class() {
    let h = harness();
    let a = review(&h.app, "/validate", PVC_RWX_NFS).await;
    assert_eq!(a["response"]["allowed"], true);
    let text = metrics::encode(&h.registry);
    assert!(
        text.contains(r#"storage_policy_webhook_decisions_total{rule="none",action="allowed",kind="PersistentVolumeClaim"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn dry_run_allows_with_a_warning_instead_of_denying() {
    let h = harness_with(true, DEFAULT_MAX_BODY_BYTES);
    let a = review(&h.app, "/validate", PVC_RWX_BLOCK).await;
    assert_eq!(a["response"]["allowed"], true);
    assert!(
        !a["response"]["warnings"].as_array().unwrap().is_empty(),
        "{a}"
    );
}

#[tokio::test]
async fn malformed_json_is_400_with_a_message() {
    let h = harness();
    let (status, headers, body) = send(
        &h.app,
        post(
            "/validate?timeout=10s",
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "Adm"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.starts_with("malformed AdmissionReview: EOF while parsing"),
        "{body}"
    );
    let text = metrics::encode(&h.registry);
    assert!(
        text.contains(
            r#"storage_policy_webhook_requests_total{endpoint="validate",outcome="bad_request"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn review_without_request_is_400() {
    let h = harness();
    let (status, _, body) = send(
        &h.app,
        post(
            "/mutate",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(&body[..], b"AdmissionReview has no request\n");
}

#[tokio::test]
async fn other_review_versions_are_400() {
    let h = harness();
    let v1beta1 = PVC_NO_CLASS.replacen("admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1);
    let (status, _, body) = send(&h.app, post("/mutate", v1beta1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("admission.k8s.io/v1beta1"));
}

#[tokio::test]
async fn unknown_path_is_404() {
    let h = harness();
    let (status, _, body) = send(&h.app, post("/admit", PVC_NO_CLASS)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("POST /mutate"));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let h = harness();
    for path in ["/mutate", "/validate"] {
        let (status, headers, _) =
            send(&h.app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(headers[header::ALLOW], "POST", "{path}");
    }
}

#[tokio::test]
async fn declared_body_over_the_limit_is_413_without_reading_it() {
    let h = harness_with(false, 1024);
    // The body never ends: only the declared length can have answered.
    let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let req = Request::post("/validate")
        .header(header::CONTENT_LENGTH, "4096")
        .body(body)
        .unwrap();
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(20), send(&h.app, req))
        .await
        .expect("answered before reading the body");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers[header::CONNECTION], "close");
    assert!(String::from_utf8_lossy(&body).contains("limit of 1024 bytes"));
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413() {
    let h = harness_with(false, 1024);
    let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 600])));
    let req = Request::post("/mutate")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, _, _) = send(&h.app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn body_at_the_limit_is_read() {
    let len = PVC_RWX_NFS.len();
    let h = harness_with(false, len);
    let a = review(&h.app, "/validate", PVC_RWX_NFS).await;
    assert_eq!(a["response"]["allowed"], true);
}

#[tokio::test]
async fn the_api_servers_timeout_bounds_a_stalled_request() {
    let h = harness();
    let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let req = Request::post("/validate?timeout=1s").body(body).unwrap();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), send(&h.app, req))
        .await
        .expect("the deadline ended the request");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(String::from_utf8_lossy(&body).contains("deadline of 1s"));
}

/// A router whose body budget is already full for large bodies, with a 1 s body-read timeout.
fn harness_with_full_budget() -> (Router, tokio::sync::OwnedSemaphorePermit) {
    let policy = Policy::parse(POLICY, None, false).unwrap();
    let mut registry = metrics::new_registry();
    let metrics = Metrics::register(&mut registry);
    let mut app = AppState::new(Arc::new(SharedState::new(policy)), metrics, 1 << 20);
    app.budget = Arc::new(BodyBudget::new(4 << 20, 1 << 20).unwrap());
    app.body_read_timeout = Duration::from_secs(1);
    let held = app.budget.hold_general_for_tests(3 << 20);
    (router(app), held)
}

#[tokio::test]
async fn an_exhausted_body_budget_is_503_with_a_clear_message_and_small_reviews_still_pass() {
    let (app, _held) = harness_with_full_budget();
    let padded = format!("{PVC_RWX_BLOCK}{}", " ".repeat(300 << 10));
    let (status, headers, body) = send(&app, post("/validate", padded)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(headers[header::CONNECTION], "close");
    let msg = String::from_utf8_lossy(&body);
    assert!(
        msg.starts_with("request body budget exhausted") && msg.contains("--body-budget-bytes"),
        "{msg}"
    );
    // A real review is read from the reserve.
    let a = review(&app, "/validate", PVC_RWX_BLOCK).await;
    assert_eq!(a["response"]["allowed"], false);
}

#[tokio::test]
async fn a_body_that_trickles_past_the_read_timeout_is_408() {
    let (app, _held) = harness_with_full_budget();
    use futures::StreamExt as _;
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{"))]);
    let body = Body::from_stream(first.chain(futures::stream::pending()));
    // The API server's deadline is longer: the body-read timeout cuts it.
    let req = Request::post("/validate?timeout=20s").body(body).unwrap();
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(20), send(&app, req))
        .await
        .expect("the body-read timeout ended the request");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(headers[header::CONNECTION], "close");
    assert!(
        String::from_utf8_lossy(&body).contains("--body-read-timeout"),
        "{body:?}"
    );
}

#[test]
fn go_durations_parse_like_time_parse_duration() {
    assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    for bad in ["", "10", "s", "10x", "-1s", "1.2.3s"] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn deadline_comes_from_the_timeout_parameter() {
    assert_eq!(deadline(Some("timeout=10s")), Duration::from_secs(10));
    assert_eq!(deadline(Some("x=1&timeout=3s")), Duration::from_secs(3));
    assert_eq!(deadline(Some("timeout=soon")), DEFAULT_DEADLINE);
    assert_eq!(deadline(None), DEFAULT_DEADLINE);
}

#[tokio::test]
async fn large_reviews_are_decided_too() {
    // Over the inline size: decided on the blocking pool, same answer.
    let mut review: Value = serde_json::from_str(PVC_RWX_BLOCK).unwrap();
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({ "padding": "x".repeat(super::super::decide::LARGE_BODY_BYTES) });
    let h = harness();
    let a = self::review(&h.app, "/validate?timeout=10s", &review.to_string()).await;
    assert_eq!(a["response"]["allowed"], false);
    assert_eq!(a["response"]["status"]["code"], 422);
}

/// Captures what the production log subscriber writes.
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    /// Logs in the production JSON format into this buffer until the guard drops.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        tracing::subscriber::set_default(crate::cli::serve::log_subscriber(
            crate::cli::serve::LogFormat::Json,
            "info",
            false,
            move || sink.clone(),
        ))
    }

    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[tokio::test]
async fn a_denial_is_logged_in_a_review_span_carrying_every_field() {
    let logs = LogBuf::default();
    let _guard = logs.install();
    let a = review(&harness().app, "/validate", PVC_RWX_BLOCK).await;
    assert_eq!(a["response"]["allowed"], false);
    let lines = logs.lines();
    let denied: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{lines:?}");
    let d = denied[0];
    assert_eq!(d["level"], "INFO");
    assert_eq!(
        d["span"],
        serde_json::json!({"name": "review", "endpoint": "validate",
            "uid": "7f0c6b1e-0000-4000-8000-000000000002", "kind": "PersistentVolumeClaim",
            "namespace": "apps", "object_name": "shared", "operation": "CREATE"})
    );
    assert!(
        d["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("spec.accessModes"),
        "{d}"
    );
}

#[tokio::test]
async fn a_mutation_is_logged_with_its_reason_and_a_plain_allow_is_not() {
    let logs = LogBuf::default();
    let _guard = logs.install();
    let app = harness().app;
    review(&app, "/mutate", PVC_NO_CLASS).await;
    review(&app, "/validate", PVC_RWX_NFS).await;
    let lines = logs.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["message"], "mutated");
    assert_eq!(
        lines[0]["span"]["uid"],
        "7f0c6b1e-0000-4000-8000-000000000001"
    );
    assert_eq!(lines[0]["span"]["endpoint"], "mutate");
    assert!(lines[0]["fields"]["reason"].as_str().unwrap() != "");
}

#[tokio::test]
async fn bad_input_is_logged_with_its_endpoint() {
    let logs = LogBuf::default();
    let _guard = logs.install();
    let (status, _, _) = send(&harness().app, post("/validate", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let lines = logs.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["fields"]["endpoint"], "validate");
    assert_eq!(lines[0]["fields"]["message"], "bad AdmissionReview refused");
}
