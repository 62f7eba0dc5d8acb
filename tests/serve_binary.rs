//! The `serve` and `certs` commands as a user runs them: the real binary, real TLS, signals sent
//! with `kill`. Graceful shutdown with requests in flight, the second signal, policy hot reload,
//! the self-signed start, flag checks, and certificates for a cluster Service.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::binary::*;
use common::load;
use common::*;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A request whose body is sent in two parts: the first now, the second when asked.
async fn slow_request(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    body: &'static str,
) -> (
    futures::channel::mpsc::UnboundedSender<Bytes>,
    tokio::task::JoinHandle<Result<(StatusCode, Bytes), String>>,
) {
    let stream = tls_connect(addr, cfg).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    use futures::StreamExt as _;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
    let chan = http_body_util::StreamBody::new(
        rx.map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b))),
    );
    let req = hyper::Request::post("/validate?timeout=30s")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(chan)
        .unwrap();
    let (first, _) = body.split_at(body.len() / 2);
    tx.unbounded_send(Bytes::from_static(first.as_bytes()))
        .unwrap();
    let task = tokio::spawn(async move {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    });
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_keeps_answering_then_drains_in_flight_requests_and_exits_zero()
{
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "8", "--drain-timeout", "15"])
        .ready()
        .await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();
    let mut kept = H1::connect(serve.https, cfg.clone()).await.unwrap();
    assert_eq!(
        kept.post("/validate?timeout=10s", PVC_RWX_NFS)
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );

    // In flight across the whole shutdown: half its body now, the rest after accepting stops.
    let (rest, in_flight) = slow_request(serve.https, cfg.clone(), PVC_RWX_BLOCK).await;

    serve.signal("-TERM");
    // Well inside the 8 s delay, so "at once" is told apart from "when accepting stops".
    serve
        .assert_not_ready_within(Duration::from_secs(4), "readiness turns false at once")
        .await;
    assert_eq!(
        admin_get(serve.admin, "/healthz").await.map(|(s, _)| s),
        Some(200)
    );

    // The shutdown delay: keep-alive and new connections are still answered.
    let (s, body) = kept
        .post("/validate?timeout=10s", PVC_RWX_NFS)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let mut fresh = H1::connect(serve.https, cfg.clone())
        .await
        .expect("new connections accepted during the shutdown delay");
    assert_eq!(
        fresh
            .post("/mutate?timeout=10s", PVC_NO_CLASS)
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );

    // Then new connections are refused...
    let refused = eventually(Duration::from_secs(15), || {
        let cfg = cfg.clone();
        let addr = serve.https;
        async move { H1::connect(addr, cfg).await.is_err().then_some(()) }
    })
    .await;
    assert!(
        refused.is_some(),
        "stops accepting after the delay; log:\n{}",
        serve.log()
    );

    // ...while the request in flight is still answered.
    let (_, second) = PVC_RWX_BLOCK.split_at(PVC_RWX_BLOCK.len() / 2);
    rest.unbounded_send(Bytes::from_static(second.as_bytes()))
        .unwrap();
    drop(rest);
    let (s, body) = tokio::time::timeout(Duration::from_secs(15), in_flight)
        .await
        .expect("answered")
        .unwrap()
        .unwrap_or_else(|e| panic!("in-flight request failed: {e}; log:\n{}", serve.log()));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["response"]["allowed"], false);

    let status = serve.wait_exit(Duration::from_secs(15)).await;
    let log = serve.log();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    assert!(log.contains("all connections finished"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::builder(dir.path())
        .tls()
        .args(["--shutdown-delay", "60"])
        .ready()
        .await;
    serve.signal("-TERM");
    serve
        .assert_not_ready_within(Duration::from_secs(5), "first signal handled")
        .await;
    serve.signal("-INT");
    let status = serve.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "exits non-zero long before the 60 s delay; log:\n{}",
        serve.log()
    );
}

/// Starts `serve` without certificates and with its own TMPDIR, stops it with `signals`, and
/// returns the exit code and whether the self-signed directory it made is still there.
async fn self_signed_temp_dir_after(
    signals: &[&str],
    shutdown_delay: &str,
) -> (Option<i32>, bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut serve = Serve::builder(dir.path())
        .args(["--shutdown-delay", shutdown_delay, "--drain-timeout", "1"])
        .env("TMPDIR", &tmp)
        .ready()
        .await;
    let made: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "one self-signed directory: {made:?}");
    assert!(made[0].join("tls.key").is_file(), "{made:?}");
    for (i, sig) in signals.iter().enumerate() {
        if i > 0 {
            serve
                .assert_not_ready_within(Duration::from_secs(5), "first signal handled")
                .await;
        }
        serve.signal(sig);
    }
    let status = serve.wait_exit(Duration::from_secs(10)).await;
    (status.and_then(|s| s.code()), made[0].exists(), serve.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_still_removes_the_self_signed_directory() {
    let (code, left, log) = self_signed_temp_dir_after(&["-TERM", "-INT"], "60").await;
    assert_eq!(
        code,
        Some(1),
        "exits non-zero before the 60 s delay; log:\n{log}"
    );
    assert!(!left, "the self-signed directory is removed; log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_removes_the_self_signed_directory() {
    let (code, left, log) = self_signed_temp_dir_after(&["-TERM"], "0").await;
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(!left, "the self-signed directory is removed; log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_up_error_still_removes_the_self_signed_directory() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // The self-signed files are written first; the missing client CA stops the start after.
    let missing = dir.path().join("missing-ca.crt");
    let mut serve = Serve::builder(dir.path())
        .arg("--client-ca")
        .arg(&missing)
        .env("TMPDIR", &tmp)
        .start();
    let status = serve.wait_exit(Duration::from_secs(20)).await;
    let log = serve.log();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "log:\n{log}");
    assert!(log.contains("failed to read client CA file"), "{log}");
    assert!(
        log.contains("ca.crt"),
        "the self-signed files were made; log:\n{log}"
    );
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_are_applied_and_an_invalid_policy_keeps_the_last_good_one() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut serve = Serve::builder(dir.path())
        .tls()
        .policy(&policy)
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();
    let default_class = || {
        let cfg = cfg.clone();
        let addr = serve.https;
        async move {
            let mut c = H1::connect(addr, cfg).await.unwrap();
            let (s, body) = c.post("/mutate?timeout=10s", PVC_NO_CLASS).await.unwrap();
            assert_eq!(s, StatusCode::OK);
            patched_class(&json(&body))
        }
    };
    assert_eq!(default_class().await.as_deref(), Some("standard"));

    // Keep-alive load through every change: each answer defaults to one of the two classes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = load::Probe {
        path: "/mutate?timeout=10s",
        body: PVC_NO_CLASS,
        check: |s, b| match (s, patched_class(&json(b)).as_deref()) {
            (StatusCode::OK, Some("standard" | "nfs")) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    };
    let (tally, tasks) = load::spawn_load(
        load::single(cfg.clone(), serve.https, serve.admin),
        2,
        vec![probe],
        Duration::from_millis(5),
        stop.clone(),
    );

    // nfs becomes the default class.
    let changed = POLICY.replace("    default: true\n", "").replace(
        "  - name: nfs\n    provisioner: nfs.csi.k8s.io\n",
        "  - name: nfs\n    provisioner: nfs.csi.k8s.io\n    default: true\n",
    );
    assert_ne!(changed, POLICY);
    std::fs::write(&policy, &changed).unwrap();
    let applied = eventually(Duration::from_secs(20), || async {
        (default_class().await.as_deref() == Some("nfs")).then_some(())
    })
    .await;
    assert!(
        applied.is_some(),
        "valid change applied; log:\n{}",
        serve.log()
    );

    // An invalid policy is refused; the last good one keeps serving.
    std::fs::write(&policy, "mode: sometimes\n").unwrap();
    let refused = eventually(Duration::from_secs(20), || async {
        let (_, text) = admin_get(serve.admin, "/metrics").await?;
        text.contains("storage_policy_webhook_policy_reload_failures_total 1")
            .then_some(text)
    })
    .await;
    let text = refused.unwrap_or_else(|| panic!("invalid change refused; log:\n{}", serve.log()));
    assert!(
        text.contains("storage_policy_webhook_policy_reloads_total 1"),
        "{text}"
    );
    assert_eq!(default_class().await.as_deref(), Some("nfs"));
    assert!(
        serve.wait_log("previous policy keeps serving").await,
        "{}",
        serve.log()
    );
    assert_eq!(
        admin_get(serve.admin, "/readyz").await.map(|(s, _)| s),
        Some(200)
    );
    load::finish(&stop, tasks).await;
    eprintln!(
        "policy reload under load (a valid change, then an invalid one): {}",
        tally.summary()
    );
    tally.assert_clean();
    assert_eq!(tally.get(&tally.not_written), 0, "{}", tally.summary());

    serve.signal("-TERM");
    assert_eq!(
        serve.exit_code_within(Duration::from_secs(20)).await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_certificates_serve_makes_a_self_signed_one_for_localhost() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ss = dir.path().join("self-signed");
    let mut serve = Serve::builder(dir.path())
        .arg("--self-signed-dir")
        .arg(&ss)
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    let ca = std::fs::read_to_string(ss.join("ca.crt")).unwrap();
    assert!(
        serve
            .wait_log(&ss.join("ca.crt").display().to_string())
            .await,
        "the log says where the CA is"
    );
    let mut c = H1::connect(serve.https, ClientOpts::apiserver(&ca).config())
        .await
        .unwrap();
    let (s, body) = c.post("/mutate?timeout=10s", PVC_NO_CLASS).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["response"]["allowed"], true);
    serve.signal("-TERM");
    assert_eq!(
        serve.exit_code_within(Duration::from_secs(20)).await,
        Some(0)
    );
}

/// Runs the binary as a plain command, not through [`Serve::builder`]: these tests check how it
/// refuses its arguments (before any port or `--no-cluster` matters) or what it prints.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_cert_without_tls_key_is_refused_before_starting() {
    let (code, _, err) = run(&["serve", "--tls-cert", "/nonexistent/tls.crt"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-key"), "{err}");
    let (code, _, err) = run(&["serve", "--tls-key", "/nonexistent/tls.key"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-cert"), "{err}");
}

#[test]
fn a_body_budget_too_small_for_the_largest_body_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = Serve::builder(dir.path())
        .args([
            "--max-body-bytes",
            "8388608",
            "--body-budget-bytes",
            "8388608",
        ])
        .output();
    assert_ne!(code, Some(0));
    assert!(
        err.contains("--body-budget-bytes to at least 11184810"),
        "names the flag and the minimum: {err}"
    );
    assert!(
        !err.contains("serving POST"),
        "refused before starting: {err}"
    );
}

#[test]
fn unusable_certificates_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = localhost_pki();
    let b = localhost_pki();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&key, &b.key_pem).unwrap();
    let with_cert =
        |cert: &std::path::Path| Serve::builder(dir.path()).tls_files(cert, &key).output();

    let missing = dir.path().join("missing.crt");
    let (code, _, err) = with_cert(&missing);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("failed to read certificate file") && err.contains("missing.crt"),
        "{err}"
    );

    let (code, _, err) = with_cert(&cert);
    assert_ne!(code, Some(0));
    assert!(err.contains("does not match the certificate"), "{err}");
}

#[test]
fn cluster_flags_are_refused_with_no_cluster() {
    let (code, _, err) = run(&["serve", "--no-cluster", "--context", "prod"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--context does not apply with --no-cluster"),
        "{err}"
    );
}

#[test]
fn serve_help_names_every_environment_variable() {
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, Some(0));
    for var in [
        "SPW_CONFIG",
        "SPW_LISTEN",
        "SPW_TLS_CERT",
        "SPW_TLS_KEY",
        "SPW_CLIENT_CA",
        "SPW_ADMIN_LISTEN",
        "SPW_NO_CLUSTER",
        "SPW_KUBECONFIG",
        "SPW_CONTEXT",
        "SPW_AUDIT_ONLY",
        "SPW_LOG_FORMAT",
        "SPW_LOG_LEVEL",
        "SPW_MAX_BODY_BYTES",
        "SPW_SHUTDOWN_DELAY",
        "SPW_DRAIN_TIMEOUT",
        "SPW_MAX_CONNECTIONS",
        "SPW_BODY_BUDGET_BYTES",
        "SPW_BODY_READ_TIMEOUT",
    ] {
        assert!(out.contains(var), "{var} missing from --help:\n{out}");
    }
}

#[test]
fn certs_writes_a_pair_for_the_service_names_and_prints_the_ca_bundle() {
    use base64::Engine as _;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let (code, out, err) = run(&[
        "certs",
        "--service",
        "spw",
        "--namespace",
        "storage",
        "--out",
        out_dir.to_str().unwrap(),
        "--days",
        "30",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let ca = std::fs::read(out_dir.join("ca.crt")).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(out.trim())
        .expect("stdout is the base64 caBundle");
    assert_eq!(bundle, ca);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let cert_pem = std::fs::read(out_dir.join("tls.crt")).unwrap();
    let key_pem = std::fs::read(out_dir.join("tls.key")).unwrap();
    storage_policy_webhook::server::tls::parse_pair(
        &out_dir.join("tls.crt"),
        &cert_pem,
        &out_dir.join("tls.key"),
        &key_pem,
    )
    .expect("key matches certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let leaf = CertificateDer::from_pem_slice(&cert_pem).unwrap();
    for name in [
        "spw",
        "spw.storage",
        "spw.storage.svc",
        "spw.storage.svc.cluster.local",
    ] {
        let server_name = ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let other = ServerName::try_from("other.storage.svc").unwrap();
    assert!(
        verifier
            .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
            .is_err()
    );

    let (code, _, err) = run(&[
        "certs",
        "--service",
        "Bad_Name",
        "--namespace",
        "x",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a DNS label"), "{err}");
}

#[test]
fn a_missing_certificate_stops_the_start_naming_the_file_and_the_cause_once() {
    let (code, _, err) = run(&[
        "serve",
        "--no-cluster",
        "--tls-cert",
        "/nonexistent/tls.crt",
        "--tls-key",
        "/nonexistent/tls.key",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("storage-policy-webhook: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.contains("failed to read certificate file /nonexistent/tls.crt"),
        "{line}"
    );
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
}

/// Boolean variables as operators write them in manifests: 1/0, yes/no, on/off, true/false
/// (`review` reads `SPW_REVIEW_AUDIT_ONLY`; `SPW_AUDIT_ONLY` is `serve`'s alone).
#[test]
fn boolean_environment_variables_accept_the_usual_spellings() {
    use std::io::Write as _;
    let review = |value: &str| -> (Option<i32>, String) {
        // `review`, not `serve`: a plain command fed on stdin, not through `Serve::builder`.
        let mut child = Command::new(BIN)
            .args([
                "review",
                "--endpoint",
                "validate",
                "--config",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policy.yaml"),
            ])
            .env("SPW_REVIEW_AUDIT_ONLY", value)
            .env("SPW_AUDIT_ONLY", "false")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(include_bytes!(
                "fixtures/validate-pvc-rwx-block.review.json"
            ))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let allowed = |value: &str| {
        let (code, out) = review(value);
        assert_eq!(code, Some(0), "SPW_REVIEW_AUDIT_ONLY={value}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["response"]["allowed"].as_bool().unwrap()
    };
    for yes in ["1", "yes", "on", "true", "True"] {
        assert!(
            allowed(yes),
            "SPW_REVIEW_AUDIT_ONLY={yes} turns the denial into a warning"
        );
    }
    for no in ["0", "no", "off", "false"] {
        assert!(!allowed(no), "SPW_REVIEW_AUDIT_ONLY={no} keeps the denial");
    }
    let (code, out) = review("maybe");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--audit-only"), "{out}");
}

/// A storm of identical denials is logged once in full and then as one line with a count, and
/// the lines still buffered at SIGTERM are written before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_storm_is_one_line_with_a_count_and_shutdown_flushes_the_log() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ss = dir.path().join("self-signed");
    let mut serve = Serve::builder(dir.path())
        .policy(POLICY_FILE)
        .arg("--self-signed-dir")
        .arg(&ss)
        .args(["--shutdown-delay", "0", "--log-format", "json"])
        .ready()
        .await;
    let ca = std::fs::read_to_string(ss.join("ca.crt")).unwrap();
    let mut c = H1::connect(serve.https, ClientOpts::apiserver(&ca).config())
        .await
        .unwrap();
    const STORM: u64 = 300;
    for _ in 0..STORM {
        let (s, body) = c
            .post("/validate?timeout=10s", PVC_RWX_BLOCK)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("\"allowed\":false"));
    }
    // SIGTERM at once: whatever is still buffered or counted must reach the log.
    serve.signal("-TERM");
    assert_eq!(
        serve.exit_code_within(Duration::from_secs(20)).await,
        Some(0)
    );
    let lines: Vec<serde_json::Value> = serve
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["fields"]["message"] == "denied")
        .collect();
    let full = lines
        .iter()
        .filter(|l| l["fields"]["repeated"].is_null())
        .count() as u64;
    let repeated: u64 = lines
        .iter()
        .filter_map(|l| l["fields"]["repeated"].as_u64())
        .sum();
    assert!(full >= 1, "the first denial is logged in full: {lines:?}");
    assert_eq!(
        full + repeated,
        STORM,
        "every denial is accounted for: {lines:?}"
    );
    assert!(
        lines.len() < 10,
        "a storm of {STORM} identical denials takes a few lines, not {}",
        lines.len()
    );
    let first = lines
        .iter()
        .find(|l| l["fields"]["repeated"].is_null())
        .unwrap();
    assert!(first["span"]["uid"].is_string(), "{first}");
    assert!(
        first["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("is invalid"),
        "{first}"
    );
}
