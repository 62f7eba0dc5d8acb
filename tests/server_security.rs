//! Security properties of the running binary: only AEAD cipher suites, the admin port changes
//! nothing, and logs at info never carry objects. (TLS below 1.2 and client certificates are in
//! `tests/server_tls.rs`.)

mod common;

use std::time::Duration;

use common::binary::*;
use common::*;
use hyper::StatusCode;
use storage_policy_webhook::server::tls::{Tls, TlsFiles, TlsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_aead_cipher_suites_are_offered() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), &localhost_pki());
    let tls = Tls::load(&TlsOptions {
        files: TlsFiles { cert, key },
        client_ca: None,
        reload_interval: Duration::from_secs(60),
    })
    .unwrap();
    let suites = &tls.config.crypto_provider().cipher_suites;
    assert!(!suites.is_empty());
    for s in suites {
        let name = format!("{:?}", s.suite());
        assert!(
            name.ends_with("_GCM_SHA256")
                || name.ends_with("_GCM_SHA384")
                || name.ends_with("_CHACHA20_POLY1305_SHA256"),
            "not an AEAD suite: {name}"
        );
    }

    // And on the wire: an openssl client offering only CBC suites gets no session.
    let mut serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, serve.ca()).unwrap();
    let s_client = |cipher: &'static str| {
        let addr = serve.https.to_string();
        let ca_file = ca_file.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr,
                    "-servername",
                    "localhost",
                    "-tls1_2",
                ])
                .arg("-CAfile")
                .arg(&ca_file)
                .args(["-cipher", cipher])
                .stdin(std::process::Stdio::null())
                .output()
        })
    };
    let Ok(control) = s_client("ECDHE+AESGCM:ECDHE+CHACHA20").await.unwrap() else {
        eprintln!("openssl not found: CBC refusal checked on the configuration only");
        return;
    };
    let text = String::from_utf8_lossy(&control.stdout);
    assert!(!text.contains("Cipher is (NONE)"), "control: {text}");
    let cbc = s_client(
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:\
         ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:AES128-SHA:AES256-SHA:AES128-SHA256",
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&cbc.stdout);
    assert!(
        text.contains("Cipher is (NONE)"),
        "a CBC suite was negotiated: {text}"
    );
    assert!(serve.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_serves_nothing_that_changes_state() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    let mut tried = 0;
    for path in ["/healthz", "/readyz", "/metrics"] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let (s, _) = admin_request(serve.admin, method, path).await.unwrap();
            assert_eq!(s, 405, "{method} {path}");
            tried += 1;
        }
    }
    for path in [
        "/",
        "/shutdown",
        "/quitquitquit",
        "/debug/pprof",
        "/config",
        "/reload",
        "/log-level",
    ] {
        for method in ["GET", "POST", "PUT"] {
            let (s, _) = admin_request(serve.admin, method, path).await.unwrap();
            assert_eq!(s, 404, "{method} {path}");
            tried += 1;
        }
    }
    eprintln!("admin port: {tried} state-changing or unknown requests, none served");
    assert_eq!(
        admin_get(serve.admin, "/readyz").await.map(|(s, _)| s),
        Some(200)
    );
    assert_eq!(
        admin_get(serve.admin, "/healthz").await.map(|(s, _)| s),
        Some(200)
    );
}

const SECRET: &str = "s3cr3t-0b1ect-c0ntent-7Fq9";

/// A review whose object carries the secret in an annotation and in its spec.
fn with_secret(fixture: &str) -> String {
    let mut v = json(fixture.as_bytes());
    let object = &mut v["request"]["object"];
    object["metadata"]["annotations"] = serde_json::json!({"example.com/token": SECRET});
    object["spec"]["selector"] = serde_json::json!({"matchLabels": {"token": SECRET}});
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_info_never_contain_objects() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::localhost(dir.path())
        .args([
            "--shutdown-delay",
            "0",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ])
        .ready()
        .await;
    let mut c = H1::connect(serve.https, ClientOpts::apiserver(serve.ca()).config())
        .await
        .unwrap();
    // Mutated, denied and allowed reviews (all logged at info or debug) and bad input (warn).
    let cases = [
        ("/mutate", with_secret(PVC_NO_CLASS), StatusCode::OK),
        ("/validate", with_secret(PVC_RWX_BLOCK), StatusCode::OK),
        ("/validate", with_secret(PVC_RWX_NFS), StatusCode::OK),
        (
            "/validate",
            with_secret(PVC_RWX_BLOCK)[..400].to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/validate",
            with_secret(PVC_RWX_NFS).replace("\"ReadWriteMany\"", "{\"x\": 1}"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, want) in &cases {
        let (s, answer) = c.post(path, body).await.unwrap();
        assert_eq!(s, *want, "{path}: {}", String::from_utf8_lossy(&answer));
    }
    // The log is written on a short interval after the answers.
    for line in ["\"denied\"", "\"mutated\"", "bad AdmissionReview refused"] {
        assert!(
            serve.wait_log(line).await,
            "{line} never logged: {}",
            serve.log()
        );
    }
    let log = serve.log();
    assert!(
        log.contains("\"denied\"") && log.contains("\"mutated\""),
        "{log}"
    );
    assert!(log.contains("bad AdmissionReview refused"), "{log}");
    assert!(!log.contains(SECRET), "an object reached the log:\n{log}");
    for line in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    eprintln!(
        "logs: {} reviews carrying a secret in an annotation and in spec; {} log lines, none with the secret",
        cases.len(),
        log.lines().count()
    );
}
