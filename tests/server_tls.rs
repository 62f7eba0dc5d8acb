//! The HTTPS webhook over real TLS on 127.0.0.1: rcgen certificates in a temp dir, a free port,
//! a real client (HTTP/1.1 keep-alive like kube-apiserver, and HTTP/2). Decisions, bad input,
//! limits, certificate rotation (plain rewrites and Secret-volume symlink swaps), client
//! certificates and protocol versions.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use prometheus_client::registry::Registry;
use storage_policy_webhook::policy::Policy;
use storage_policy_webhook::server::certs::Generated;
use storage_policy_webhook::server::metrics::{self, Metrics};
use storage_policy_webhook::server::routes::{self, AppState};
use storage_policy_webhook::server::tls::{Tls, TlsFiles, TlsOptions};
use storage_policy_webhook::server::{Drain, HttpsServer, Limits};
use storage_policy_webhook::state::SharedState;

/// How often the test servers look for rotated certificates.
const POLL: Duration = Duration::from_millis(200);

struct TestServer {
    addr: SocketAddr,
    registry: Registry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Drain>,
}

impl TestServer {
    async fn start(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        max_body_bytes: usize,
    ) -> TestServer {
        install_provider();
        let mut registry = metrics::new_registry();
        let metrics = Metrics::register(&mut registry);
        let tls = Tls::load(&TlsOptions {
            files: TlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            client_ca: client_ca.map(Path::to_owned),
            reload_interval: POLL,
        })
        .expect("certificate loads");
        tls.spawn_reloader(metrics.clone());
        let policy = Policy::parse(POLICY, None, false).unwrap();
        let router = routes::router(AppState::new(
            Arc::new(SharedState::new(policy)),
            metrics.clone(),
            max_body_bytes,
        ));
        let server = HttpsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls.config.clone(),
            router,
            Limits::default(),
            metrics,
        )
        .await
        .expect("bind");
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.run(
            async {
                let _ = rx.await;
            },
            Duration::from_secs(10),
        ));
        TestServer {
            addr,
            registry,
            stop: Some(tx),
            task,
        }
    }

    /// On a fresh localhost certificate written into `dir`, with no client CA; the certificate
    /// is returned for its CA.
    async fn localhost(dir: &Path, max_body_bytes: usize) -> (TestServer, Generated) {
        let pki = localhost_pki();
        let (cert, key) = write_pair(dir, &pki);
        let server = TestServer::start(&cert, &key, None, max_body_bytes).await;
        (server, pki)
    }

    fn metrics(&self) -> String {
        metrics::encode(&self.registry)
    }

    async fn stop(mut self) -> Drain {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("drained in time")
            .unwrap()
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_over_one_keep_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pki) = TestServer::localhost(dir.path(), routes::DEFAULT_MAX_BODY_BYTES).await;
    let mut conn = H1::connect(server.addr, ClientOpts::apiserver(&pki.ca_pem).config())
        .await
        .unwrap();

    let (s, body) = conn
        .post("/mutate?timeout=10s", PVC_NO_CLASS)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let a = json(&body);
    assert_eq!(a["response"]["uid"], "7f0c6b1e-0000-4000-8000-000000000001");
    assert_eq!(a["response"]["allowed"], true);
    assert_eq!(patched_class(&a).as_deref(), Some("standard"));

    let (s, body) = conn
        .post("/validate?timeout=10s", PVC_RWX_BLOCK)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let a = json(&body);
    assert_eq!(a["response"]["allowed"], false);
    assert_eq!(a["response"]["status"]["code"], 422);

    let (s, body) = conn
        .post("/validate?timeout=10s", PVC_RWX_NFS)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["response"]["allowed"], true);

    let text = server.metrics();
    assert_eq!(
        metric(
            &text,
            r#"storage_policy_webhook_requests_total{endpoint="validate",outcome="allowed"}"#
        ),
        1
    );
    assert_eq!(server.stop().await, Drain::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_offered_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pki) = TestServer::localhost(dir.path(), routes::DEFAULT_MAX_BODY_BYTES).await;
    let (alpn, s, body) = h2_post(
        server.addr,
        &pki.ca_pem,
        "/mutate?timeout=10s",
        PVC_NO_CLASS,
    )
    .await
    .unwrap();
    assert_eq!(alpn, b"h2");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(patched_class(&json(&body)).as_deref(), Some("standard"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_http_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pki) = TestServer::localhost(dir.path(), routes::DEFAULT_MAX_BODY_BYTES).await;
    let mut conn = H1::connect(server.addr, ClientOpts::apiserver(&pki.ca_pem).config())
        .await
        .unwrap();

    let (s, body) = conn
        .post(
            "/validate?timeout=10s",
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "Adm"#,
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).starts_with("malformed AdmissionReview"));

    let (s, body) = conn
        .post(
            "/mutate?timeout=10s",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(&body[..], b"AdmissionReview has no request\n");

    let (s, _) = conn.post("/nope", "{}").await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = conn.send("GET", "/mutate", "").await.unwrap();
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = conn.send("PUT", "/validate", "{}").await.unwrap();
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // Still the same connection, still answering.
    let (s, body) = conn
        .post("/validate?timeout=10s", PVC_RWX_NFS)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["response"]["allowed"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_gets_413_or_an_early_close() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pki) = TestServer::localhost(dir.path(), 64 * 1024).await;
    let cfg = ClientOpts::apiserver(&pki.ca_pem).config();
    let mut conn = H1::connect(server.addr, cfg.clone()).await.unwrap();
    let huge = vec![b'a'; 4 << 20];
    match conn.send("POST", "/validate?timeout=10s", huge).await {
        Ok((s, body)) => {
            assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(String::from_utf8_lossy(&body).contains("65536"));
        }
        // The server answers 413 and closes without reading the body; the client may see the
        // close before the answer.
        Err(e) => eprintln!("early close: {e}"),
    }
    let text = server.metrics();
    assert_eq!(
        metric(
            &text,
            r#"storage_policy_webhook_requests_total{endpoint="validate",outcome="bad_request"}"#
        ),
        1
    );
    let mut conn = H1::connect(server.addr, cfg).await.unwrap();
    let (s, _) = conn
        .post("/validate?timeout=10s", PVC_RWX_NFS)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    server.stop().await;
}

/// Sends reviews until stopped: `KEPT` keep-alive connections opened before the rotation, each
/// looping, and one worker opening a fresh connection per request. Counts answers and failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

const KEPT: usize = 4;

impl Traffic {
    fn start(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let count =
            |o: &AtomicUsize,
             f: &std::sync::Mutex<Vec<String>>,
             r: Result<(StatusCode, hyper::body::Bytes), BoxError>| match r {
                Ok((StatusCode::OK, _)) => {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                Ok((st, _)) => f.lock().unwrap().push(format!("HTTP {st}")),
                Err(e) => f.lock().unwrap().push(e.to_string()),
            };
        let mut tasks = Vec::new();
        for _ in 0..KEPT {
            let (s, o, f, cfg) = (stop.clone(), ok.clone(), failures.clone(), cfg.clone());
            tasks.push(tokio::spawn(async move {
                let mut kept = H1::connect(addr, cfg).await.unwrap();
                while !s.load(Ordering::SeqCst) {
                    count(
                        &o,
                        &f,
                        kept.post("/validate?timeout=10s", PVC_RWX_NFS).await,
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        let (s, o, f) = (stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let fresh = async {
                    let mut c = H1::connect(addr, cfg.clone()).await?;
                    c.post("/validate?timeout=10s", PVC_RWX_NFS).await
                };
                count(&o, &f, fresh.await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
        Traffic {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failures)
    }
}

async fn presented_by(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> String {
    H1::connect(addr, cfg).await.expect("handshake").fingerprint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_are_served_to_new_connections_and_a_half_written_pair_never_is() {
    let dir = tempfile::tempdir().unwrap();
    let old = localhost_pki();
    // A longer validity than the old pair, so the expiry metric tells them apart.
    let new = storage_policy_webhook::server::certs::generate(
        &storage_policy_webhook::server::certs::CertRequest::for_localhost(None, 30),
    )
    .unwrap();
    let (cert, key) = write_pair(dir.path(), &old);
    let server = TestServer::start(&cert, &key, None, routes::DEFAULT_MAX_BODY_BYTES).await;
    let expiry = |m: &str| {
        metric(
            m,
            "storage_policy_webhook_tls_certificate_expiry_timestamp_seconds",
        ) as i64
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400;
    assert!(
        (expiry(&server.metrics()) - (now + day)).abs() < 60,
        "expiry of the 1-day certificate: {}",
        server.metrics()
    );
    // The client trusts both CAs, as kube-apiserver does while a caBundle is being rotated.
    let cfg = ClientOpts {
        cas: vec![&old.ca_pem, &new.ca_pem],
        ..ClientOpts::apiserver(&old.ca_pem)
    }
    .config();
    assert_eq!(
        presented_by(server.addr, cfg.clone()).await,
        fingerprint_of(&old.cert_pem)
    );
    let traffic = Traffic::start(server.addr, cfg.clone());

    // Half a rotation: the new certificate with the old key. Never served.
    std::fs::write(&cert, &new.cert_pem).unwrap();
    let refused = eventually(Duration::from_secs(15), || async {
        (metric(
            &server.metrics(),
            "storage_policy_webhook_tls_reload_failures_total",
        ) >= 1)
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the mismatched pair was looked at and refused"
    );
    for _ in 0..3 {
        assert_eq!(
            presented_by(server.addr, cfg.clone()).await,
            fingerprint_of(&old.cert_pem)
        );
        tokio::time::sleep(POLL).await;
    }

    // The key arrives: the new pair is served within seconds.
    std::fs::write(&key, &new.key_pem).unwrap();
    let written = std::time::Instant::now();
    let want = fingerprint_of(&new.cert_pem);
    let swapped = eventually(Duration::from_secs(15), || {
        let cfg = cfg.clone();
        let want = want.clone();
        async move { (presented_by(server.addr, cfg).await == want).then_some(()) }
    })
    .await;
    assert!(swapped.is_some(), "the new certificate is presented");
    let to_new = written.elapsed();
    // Load keeps running over the new certificate for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failures) = traffic.finish().await;
    eprintln!(
        "rotation under load ({KEPT} keep-alive connections + fresh ones): {} requests, {} failed; \
         new certificate served {to_new:?} after the key was written (poll {POLL:?})",
        ok + failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "requests failed during the rotation: {failures:?}"
    );
    assert!(ok > 0);
    assert_eq!(
        metric(
            &server.metrics(),
            "storage_policy_webhook_tls_reloads_total"
        ),
        1
    );
    // The half-written pair did not move the expiry; the new certificate did.
    assert!(
        (expiry(&server.metrics()) - (now + 30 * day)).abs() < 60,
        "expiry of the 30-day certificate: {}",
        server.metrics()
    );
    server.stop().await;
}

/// Lays out a directory the way the kubelet writes a Secret volume: the files are symlinks
/// through `..data`, which points at a timestamped directory and is swapped atomically.
fn secret_volume_write(
    dir: &Path,
    version: &str,
    g: &storage_policy_webhook::server::certs::Generated,
) {
    use std::os::unix::fs::symlink;
    let ts = dir.join(format!("..{version}"));
    std::fs::create_dir(&ts).unwrap();
    std::fs::write(ts.join("tls.crt"), &g.cert_pem).unwrap();
    std::fs::write(ts.join("tls.key"), &g.key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_symlink_swap_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let old = localhost_pki();
    let new = localhost_pki();
    secret_volume_write(dir.path(), "2026_01_01_00_00_00.1", &old);
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let server = TestServer::start(&cert, &key, None, routes::DEFAULT_MAX_BODY_BYTES).await;
    let cfg = ClientOpts {
        cas: vec![&old.ca_pem, &new.ca_pem],
        ..ClientOpts::apiserver(&old.ca_pem)
    }
    .config();
    assert_eq!(
        presented_by(server.addr, cfg.clone()).await,
        fingerprint_of(&old.cert_pem)
    );
    let traffic = Traffic::start(server.addr, cfg.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    secret_volume_write(dir.path(), "2026_02_01_00_00_00.2", &new);
    let want = fingerprint_of(&new.cert_pem);
    let swapped = eventually(Duration::from_secs(15), || {
        let cfg = cfg.clone();
        let want = want.clone();
        async move { (presented_by(server.addr, cfg).await == want).then_some(()) }
    })
    .await;
    assert!(swapped.is_some(), "the swapped certificate is presented");
    let (ok, failures) = traffic.finish().await;
    assert!(
        failures.is_empty(),
        "requests failed during the swap: {failures:?}"
    );
    assert!(ok > 0);
    server.stop().await;
}

/// Whether a review sent over a new connection with `cfg` is answered. With TLS 1.3 the client
/// may finish its side of the handshake before the server's alert arrives; a refusal then
/// surfaces on the first request. Either way nothing is answered.
async fn answered(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> bool {
    match H1::connect(addr, cfg).await {
        Ok(mut c) => c.post("/validate?timeout=10s", PVC_RWX_NFS).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let pki = localhost_pki();
    let (cert, key) = write_pair(dir.path(), &pki);
    let (client_ca, chain, client_key) = client_pki();
    let (_, other_chain, other_key) = client_pki();
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &client_ca).unwrap();
    let server =
        TestServer::start(&cert, &key, Some(&ca_path), routes::DEFAULT_MAX_BODY_BYTES).await;

    assert!(
        !answered(server.addr, ClientOpts::apiserver(&pki.ca_pem).config()).await,
        "no client certificate: refused"
    );
    let stranger = ClientOpts {
        client_cert: Some((other_chain, other_key)),
        ..ClientOpts::apiserver(&pki.ca_pem)
    };
    assert!(
        !answered(server.addr, stranger.config()).await,
        "a certificate from another CA: refused"
    );
    let trusted = ClientOpts {
        client_cert: Some((chain, client_key)),
        ..ClientOpts::apiserver(&pki.ca_pem)
    };
    assert!(
        answered(server.addr, trusted.config()).await,
        "a certificate from the CA: answered"
    );
    assert!(
        metric(
            &server.metrics(),
            "storage_policy_webhook_tls_handshake_failures_total"
        ) >= 1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_ca_is_enforced_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = localhost_pki();
    let (cert, key) = write_pair(dir.path(), &pki);
    let (old_ca, old_chain, old_key) = client_pki();
    let (new_ca, new_chain, new_key) = client_pki();
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &old_ca).unwrap();
    let server =
        TestServer::start(&cert, &key, Some(&ca_path), routes::DEFAULT_MAX_BODY_BYTES).await;
    let old_client = ClientOpts {
        client_cert: Some((old_chain, old_key)),
        ..ClientOpts::apiserver(&pki.ca_pem)
    }
    .config();
    let new_client = ClientOpts {
        client_cert: Some((new_chain, new_key)),
        ..ClientOpts::apiserver(&pki.ca_pem)
    }
    .config();
    assert!(answered(server.addr, old_client.clone()).await);
    assert!(!answered(server.addr, new_client.clone()).await);

    // A broken bundle is refused and the old one stays in force.
    std::fs::write(&ca_path, "not a certificate\n").unwrap();
    let refused = eventually(Duration::from_secs(15), || async {
        (metric(
            &server.metrics(),
            "storage_policy_webhook_tls_reload_failures_total",
        ) >= 1)
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the broken bundle was looked at and refused"
    );
    assert!(answered(server.addr, old_client.clone()).await);

    // The new bundle: new handshakes are checked against it.
    std::fs::write(&ca_path, &new_ca).unwrap();
    let rotated = eventually(Duration::from_secs(15), || {
        let cfg = new_client.clone();
        async move { answered(server.addr, cfg).await.then_some(()) }
    })
    .await;
    assert!(
        rotated.is_some(),
        "a certificate from the new CA is accepted"
    );
    assert!(
        !answered(server.addr, old_client.clone()).await,
        "a certificate from the removed CA is refused"
    );
    assert_eq!(
        metric(
            &server.metrics(),
            "storage_policy_webhook_tls_reloads_total"
        ),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_spoken_and_1_1_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pki) = TestServer::localhost(dir.path(), routes::DEFAULT_MAX_BODY_BYTES).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = ClientOpts {
            versions: vec![version],
            ..ClientOpts::apiserver(&pki.ca_pem)
        }
        .config();
        let mut c = H1::connect(server.addr, cfg).await.unwrap();
        let (s, _) = c.post("/validate", PVC_RWX_NFS).await.unwrap();
        assert_eq!(s, StatusCode::OK, "{version:?}");
    }

    // rustls cannot speak TLS 1.1; openssl can, when present.
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let s_client = |flag: &str| {
        let addr = server.addr.to_string();
        let flag = flag.to_owned();
        let ca = ca.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("openssl")
                    .args([
                        "s_client",
                        "-connect",
                        &addr,
                        "-servername",
                        "localhost",
                        "-CAfile",
                    ])
                    .arg(&ca)
                    .args([&flag, "-cipher", "DEFAULT:@SECLEVEL=0"])
                    .stdin(std::process::Stdio::null())
                    .output()
            })
            .await
            .unwrap()
        }
    };
    let Ok(control) = s_client("-tls1_2").await else {
        eprintln!("openssl not found: TLS 1.1 refusal not checked with a TLS 1.1 client");
        server.stop().await;
        return;
    };
    let text = String::from_utf8_lossy(&control.stdout);
    assert!(
        text.contains("TLSv1.2") && !text.contains("Cipher is (NONE)"),
        "openssl negotiates TLS 1.2 with the server: {text}"
    );
    let old = s_client("-tls1_1").await.unwrap();
    let text = String::from_utf8_lossy(&old.stdout);
    // s_client prints the version it tried; "Cipher is (NONE)" says no session was made.
    assert!(
        text.contains("Cipher is (NONE)") && text.contains("no peer certificate available"),
        "TLS 1.1 was negotiated: {text}"
    );
    server.stop().await;
}

/// Over HTTP/2, a body over the limit by a little gets its 413 and a stream that ends cleanly
/// (the rest of the body is read and discarded): curl exits 0. It used to reset the stream
/// (RST_STREAM CANCEL) after the 413, and curl exited with error 92. Needs curl with HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_body_over_the_limit_gets_its_413_on_a_cleanly_ended_stream() {
    let curl_h2 = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"));
    if !curl_h2 {
        eprintln!("no curl with HTTP/2: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = localhost_pki();
    let (cert, key) = write_pair(dir.path(), &pki);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, vec![b' '; 96 << 10]).unwrap();
    let server = TestServer::start(&cert, &key, None, 64 << 10).await;
    let url = format!("https://localhost:{}/validate", server.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--http2", "--max-time", "10", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &resolve,
                "-H",
                "content-type: application/json",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
    assert!(
        out.status.success(),
        "curl: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}
