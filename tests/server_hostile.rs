//! The hostile corpus (`tests/common/corpus.rs`) over real TLS to the running binary, case by
//! case on both endpoints: `400` cases get a 4xx with a message, `allow`/`deny` cases a 200 with a
//! well-formed review of that decision. Then what only a server sees: bodies over the limit,
//! Content-Types other than JSON, invalid UTF-8, wrong methods, HTTP garbage inside TLS and plain
//! HTTP on the TLS port. After every case a valid review is answered on a fresh connection, and
//! the process never dies.
//!
//! Content-Type: kube-apiserver always sends `application/json`; the webhook decodes the body
//! whatever the header says (a review that parses is a review). Refusing other types with 415
//! would add a way to fail closed for no safety gain, so any Content-Type (or none) is accepted.

mod common;

use std::time::Duration;

use common::binary::*;
use common::corpus::corpus;
use common::*;
use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The policy the corpus expectations are written for.
const CORPUS_POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policy.yaml");
/// Small, so the over-the-limit case is cheap; the large corpus inputs (3.1 MiB) fit.
const LIMIT: usize = 4 << 20;

struct Target {
    serve: Serve,
    cfg: std::sync::Arc<rustls::ClientConfig>,
}

impl Target {
    /// A valid review on a fresh connection is answered, and the process runs.
    async fn still_serving(&mut self, after: &str) {
        let mut c = H1::connect(self.serve.https, self.cfg.clone())
            .await
            .unwrap_or_else(|e| panic!("after {after}: no new connection: {e}"));
        let (s, body) = c
            .post("/validate?timeout=10s", PVC_RWX_NFS)
            .await
            .unwrap_or_else(|e| panic!("after {after}: {e}"));
        assert_eq!(s, StatusCode::OK, "after {after}");
        assert_eq!(json(&body)["response"]["allowed"], true, "after {after}");
        assert!(self.serve.alive(), "after {after}: the process died");
    }

    /// One request on a fresh connection.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, hyper::body::Bytes), BoxError> {
        let mut c = H1::connect(self.serve.https, self.cfg.clone()).await?;
        c.send_with(method, path, headers, body).await
    }
}

async fn target(dir: &std::path::Path) -> Target {
    install_provider();
    let serve = Serve::builder(dir)
        .tls()
        .policy(CORPUS_POLICY)
        .args(["--max-body-bytes", &LIMIT.to_string()])
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    Target {
        cfg: ClientOpts::apiserver(serve.ca()).config(),
        serve,
    }
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_review_gets_a_clear_answer_over_tls_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = target(dir.path()).await;
    let corpus = corpus();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (case, body, expect) in &corpus {
        for endpoint in ["mutate", "validate"] {
            sent += 1;
            let path = format!("/{endpoint}?timeout=10s");
            let problem = match t.send("POST", &path, JSON, body.clone()).await {
                Err(e) => Some(format!("no answer: {e}")),
                Ok((s, msg)) if expect == "400" => (!s.is_client_error()
                    || msg.iter().all(u8::is_ascii_whitespace))
                .then(|| format!("want a 4xx with a message, got {s} {msg:?}")),
                Ok((s, answer)) => {
                    let want_allowed = expect == "allow" || endpoint == "mutate";
                    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                    let sent_uid = serde_json::from_slice::<Value>(body)
                        .ok()
                        .map(|r| r["request"]["uid"].clone());
                    let well_formed = s == StatusCode::OK
                        && v["apiVersion"] == "admission.k8s.io/v1"
                        && v["kind"] == "AdmissionReview"
                        && Some(&v["response"]["uid"]) == sent_uid.as_ref()
                        && v["response"]["allowed"] == want_allowed
                        && (want_allowed
                            || v["response"]["status"]["message"]
                                .as_str()
                                .is_some_and(|m| !m.is_empty()));
                    (!well_formed).then(|| {
                        format!(
                            "want 200 allowed={want_allowed}, got {s} {}",
                            String::from_utf8_lossy(&answer[..answer.len().min(300)])
                        )
                    })
                }
            };
            if let Some(p) = problem {
                failures.push(format!("{case} ({endpoint}): {p}"));
            }
            t.still_serving(case).await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "hostile corpus over TLS: {} inputs, {sent} requests, each followed by a valid review",
        corpus.len()
    );
    assert!(t.serve.alive());
    assert!(!t.serve.log().contains("panicked"), "{}", t.serve.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_only_a_server_sees_limits_types_methods_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = target(dir.path()).await;

    // Over the limit, declared: 413 before the body is read (or the close wins the race).
    let big = vec![b' '; LIMIT + 1];
    match t.send("POST", "/validate", JSON, big.clone()).await {
        Ok((s, msg)) => {
            assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(String::from_utf8_lossy(&msg).contains(&LIMIT.to_string()));
        }
        Err(e) => eprintln!("over the limit: early close ({e})"),
    }
    t.still_serving("a body over the limit").await;

    // Over the limit, chunked (no Content-Length): found while reading.
    {
        use futures::StreamExt as _;
        let stream = tls_connect(t.serve.https, t.cfg.clone()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let chunks = futures::stream::iter((0..5).map(|_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(hyper::body::Bytes::from(
                vec![b' '; 1 << 20],
            )))
        }));
        let req = hyper::Request::post("/mutate")
            .header("host", "localhost")
            .body(http_body_util::StreamBody::new(chunks.boxed()))
            .unwrap();
        match sender.send_request(req).await {
            Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
            Err(e) => eprintln!("chunked over the limit: early close ({e})"),
        }
    }
    t.still_serving("a chunked body over the limit").await;

    // Any Content-Type, or none: the body decides (see the module doc).
    for headers in [
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/x-www-form-urlencoded")][..],
        &[][..],
    ] {
        let (s, body) = t
            .send("POST", "/validate", headers, PVC_RWX_BLOCK.into())
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK, "{headers:?}");
        assert_eq!(json(&body)["response"]["allowed"], false, "{headers:?}");
    }
    t.still_serving("other content types").await;

    // Invalid UTF-8 where a string is expected, and raw binary.
    let mut bad = PVC_RWX_NFS
        .replace("\"alice\"", "\"al\u{1}ice\"")
        .into_bytes();
    let at = bad.iter().position(|&b| b == 1).unwrap();
    bad[at] = 0xff;
    for body in [bad, vec![0xff, 0xfe, 0x00, 0x80], vec![0u8; 1024]] {
        let (s, msg) = t.send("POST", "/validate", JSON, body).await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{msg:?}");
        assert!(!msg.is_empty());
    }
    t.still_serving("invalid UTF-8").await;

    // Methods and paths.
    for (method, path, want) in [
        ("GET", "/mutate", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/validate", StatusCode::METHOD_NOT_ALLOWED),
        ("DELETE", "/mutate", StatusCode::METHOD_NOT_ALLOWED),
        ("PUT", "/validate", StatusCode::METHOD_NOT_ALLOWED),
        ("POST", "/", StatusCode::NOT_FOUND),
        ("POST", "/metrics", StatusCode::NOT_FOUND),
        ("GET", "/../../etc/passwd", StatusCode::NOT_FOUND),
    ] {
        let (s, msg) = t.send(method, path, JSON, Vec::new()).await.unwrap();
        assert_eq!(s, want, "{method} {path}");
        assert!(!msg.is_empty(), "{method} {path}: a message");
    }
    t.still_serving("wrong methods").await;

    // Not HTTP inside TLS: hyper answers 400 or closes.
    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"POST /validate HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &[0u8; 512],
    ] {
        let mut s = tls_connect(t.serve.https, t.cfg.clone()).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            out.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{garbage:?}: {text}"
        );
    }
    t.still_serving("garbage inside TLS").await;

    // Plain HTTP and random bytes on the TLS port: the handshake fails, nothing else.
    for plain in [
        &b"POST /validate HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 3, 1, 0xff, 0xff, 1, 2],
    ] {
        let mut s = tokio::net::TcpStream::connect(t.serve.https).await.unwrap();
        s.write_all(plain).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1 200"));
    }
    t.still_serving("plain HTTP on the TLS port").await;
    assert!(!t.serve.log().contains("panicked"), "{}", t.serve.log());
}
