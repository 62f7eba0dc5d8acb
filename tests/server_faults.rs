//! Faults an operator meets, on the real binary under continuous keep-alive load: SIGTERM, a
//! rolling restart of two replicas behind one client, overload (idle and slowloris connections,
//! the connection limit, a burst beyond capacity) with memory bounded. Every request is counted:
//! answered (and checked), never written (safe to retry), or lost; lost must be zero. Each test
//! prints its figures (`cargo test --test server_faults -- --nocapture`); see RELIABILITY.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::binary::*;
use common::load::{self, Balancer, spawn_load, standard_mix};
use common::*;

/// The load tests share two cores with everything else: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start(dir: &std::path::Path, name: &str, extra: &[&str]) -> (Serve, String) {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let (ca, cert, key) = pki_files(&sub);
    let mut args = vec![
        "--config",
        POLICY_FILE,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    args.extend_from_slice(extra);
    (Serve::start(&sub, &args), ca)
}

async fn wait_not_ready(serve: &Serve, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    eventually(within, || async {
        (admin_get(serve.admin, "/readyz").await.map(|(s, _)| s) == Some(503)).then_some(())
    })
    .await
    .map(|()| t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_it_received_and_exits_zero() {
    let _serial = SERIAL.lock().await;
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, ca) = start(
        dir.path(),
        "a",
        &["--shutdown-delay", "1", "--drain-timeout", "5"],
    );
    serve.wait_ready().await;
    let cfg = ClientOpts::apiserver(&ca).config();
    let stop = Arc::new(AtomicBool::new(false));
    let balancer = load::single(cfg, serve.https, serve.admin);
    let (tally, tasks) = spawn_load(balancer, 8, standard_mix(), Duration::ZERO, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tally.get(&tally.answered);

    let signalled = Instant::now();
    serve.signal("-TERM");
    let not_ready = wait_not_ready(&serve, Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("readiness drops at once; log:\n{}", serve.log()));
    // Bound: shutdown delay 1 s + drain timeout 5 s, plus start-up slack.
    let status = serve.wait_exit(Duration::from_secs(10)).await;
    let exited = signalled.elapsed();
    // Keep the clients going a little: they must only see refused connections now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    load::finish(&stop, tasks).await;
    let log = serve.log();
    eprintln!(
        "sigterm under load: {}; answered before SIGTERM {before}; not ready after {not_ready:?}; exited after {exited:?}",
        tally.summary()
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    assert!(log.contains("all connections finished"), "{log}");
    tally.assert_clean();
    assert!(
        tally.get(&tally.answered) > before,
        "answered during the shutdown delay"
    );
    assert!(
        tally.get(&tally.refused_connections) > 0,
        "new connections refused once the delay is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_two_replicas_loses_nothing() {
    let _serial = SERIAL.lock().await;
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shutdown-delay", "1", "--drain-timeout", "5"];
    // Both replicas serve the same certificate, as pods of one Deployment do.
    let pki = localhost_pki();
    let (cert, key) = write_pair(dir.path(), &pki);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let replica = |name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let mut a = vec![
            "--config",
            POLICY_FILE,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ];
        a.extend_from_slice(&args);
        Serve::start(&sub, &a)
    };
    let mut a = replica("a");
    let mut b = replica("b");
    a.wait_ready().await;
    b.wait_ready().await;
    let balancer = Balancer::new(ClientOpts::apiserver(&pki.ca_pem).config(), true);
    balancer.set(0, a.https, a.admin);
    balancer.set(1, b.https, b.admin);
    let stop = Arc::new(AtomicBool::new(false));
    let probes = balancer.spawn_probes(stop.clone());
    let (tally, tasks) = spawn_load(
        balancer.clone(),
        8,
        standard_mix(),
        Duration::ZERO,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let t = Instant::now();
    for (i, name) in [(0, "a2"), (1, "b2")] {
        let old = if i == 0 { &mut a } else { &mut b };
        old.signal("-TERM");
        let status = old.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", old.log());
        // The new pod comes up at a new address and joins once ready.
        let new = replica(name);
        new.wait_ready().await;
        balancer.set(i, new.https, new.admin);
        *old = new;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = t.elapsed();
    load::finish(&stop, tasks).await;
    probes.await.unwrap();
    eprintln!(
        "rolling restart of 2 replicas in {took:?}: {}",
        tally.summary()
    );
    tally.assert_clean();
    assert!(tally.get(&tally.answered) > 100, "{}", tally.summary());
}
