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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_it_received_and_exits_zero() {
    let _serial = SERIAL.lock().await;
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "1", "--drain-timeout", "5"])
        .ready()
        .await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();
    let stop = Arc::new(AtomicBool::new(false));
    let balancer = load::single(cfg, serve.https, serve.admin);
    let (tally, tasks) = spawn_load(balancer, 8, standard_mix(), Duration::ZERO, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tally.get(&tally.answered);

    let signalled = Instant::now();
    serve.signal("-TERM");
    let not_ready = serve
        .wait_not_ready(Duration::from_secs(1))
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
    let replica = |name: &str| {
        Serve::builder(&dir.path().join(name))
            .tls_files(&cert, &key)
            .policy(POLICY_FILE)
            .args(args)
            .start()
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

/// Keeps a header dribbling: a TLS connection that sent a request line and sends one more header
/// byte every 200 ms (never finishing within the test).
async fn dribble(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
) -> Result<(), BoxError> {
    use tokio::io::AsyncWriteExt;
    let mut s = tls_connect(addr, cfg).await?;
    s.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await?;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        s.write_all(b"a").await?;
        s.flush().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Sends `n` reviews, each on a new connection; returns the slowest answer.
async fn real_requests(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    n: usize,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for probe in standard_mix().into_iter().cycle().take(n) {
        let t = Instant::now();
        let mut c = load::Conn::connect(addr, cfg.clone()).await.unwrap();
        match c.send(probe.path, probe.body).await {
            load::Sent::Answered(s, body) => (probe.check)(s, &body).unwrap(),
            _ => panic!("a real request was not answered"),
        }
        slowest = slowest.max(t.elapsed());
    }
    slowest
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_do_not_starve_real_requests() {
    let _serial = SERIAL.lock().await;
    // Each connection costs a descriptor here and one in the server (which inherits the limit).
    let limit = open_files_limit().unwrap_or(1024);
    let (idle_n, stall_n, dribble_n) = if limit >= 3000 {
        (1000, 100, 100)
    } else if limit >= 600 {
        (((limit - 400) / 2) as usize, 50, 50)
    } else {
        eprintln!("open files limit {limit}: too low for the overload test, skipped");
        return;
    };
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();
    let baseline = real_requests(serve.https, cfg.clone(), 6).await;

    let mut idle = Vec::new();
    for _ in 0..idle_n {
        idle.push(tokio::net::TcpStream::connect(serve.https).await.unwrap());
    }
    // TLS handshakes started and stalled: a record header of a ClientHello, nothing more.
    let mut stalled = Vec::new();
    for _ in 0..stall_n {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(serve.https).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        stalled.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dribblers: Vec<_> = (0..dribble_n)
        .map(|_| tokio::spawn(dribble(serve.https, cfg.clone(), stop.clone())))
        .collect();
    let held = eventually(Duration::from_secs(10), || async {
        let (_, text) = admin_get(serve.admin, "/metrics").await?;
        let open = metric(&text, "storage_policy_webhook_open_connections");
        (open >= (idle_n + stall_n + dribble_n) as u64).then_some(open)
    })
    .await
    .expect("the server holds every hostile connection open");

    let under_attack = real_requests(serve.https, cfg.clone(), 30).await;
    // The dribblers are still connected: none was dropped for being slow within the 30 s bound.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut dribbled = 0;
    for d in dribblers {
        if d.await.unwrap().is_ok() {
            dribbled += 1;
        }
    }
    eprintln!(
        "overload: {idle_n} idle TCP + {stall_n} stalled handshakes + {dribble_n} dribbled headers \
         ({held} open on the server, {dribbled} dribblers alive to the end); 30 real requests on new \
         connections: slowest {under_attack:?} (before: {baseline:?})"
    );
    assert!(
        under_attack < Duration::from_secs(2),
        "real requests starved: {under_attack:?}"
    );
    drop((idle, stalled));
    let mut serve = serve;
    assert!(serve.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_without_affecting_open_ones() {
    let _serial = SERIAL.lock().await;
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "0", "--max-connections", "32"])
        .ready()
        .await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();
    let mut kept = H1::connect(serve.https, cfg.clone()).await.unwrap();
    // 31 more connections fill the limit.
    let mut idle = Vec::new();
    for _ in 0..31 {
        idle.push(tokio::net::TcpStream::connect(serve.https).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new client waits in the listen backlog (its handshake does not start)...
    let waiting = tokio::spawn({
        let cfg = cfg.clone();
        let addr = serve.https;
        async move {
            let t = Instant::now();
            let mut c = H1::connect(addr, cfg).await?;
            c.post("/validate?timeout=10s", PVC_RWX_NFS).await?;
            Ok::<_, BoxError>(t.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "the 33rd connection is not served");
    // ...while the connection already open is answered as usual.
    for _ in 0..10 {
        let (s, _) = kept
            .post("/validate?timeout=10s", PVC_RWX_NFS)
            .await
            .unwrap();
        assert_eq!(s, hyper::StatusCode::OK);
    }
    // A slot frees: the waiting client is served promptly.
    let freed = Instant::now();
    drop(idle.pop());
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .unwrap();
    eprintln!(
        "connection limit 32: the 33rd waited {waited:?} in the backlog, served {:?} after a slot freed; \
         10 requests on an open connection answered meanwhile",
        freed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_capacity_slows_answers_but_never_changes_them_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().await;
    const WORKERS: usize = 200;
    const MAX_RSS_KIB: u64 = 64 << 10;
    if open_files_limit().unwrap_or(1024) < 2 * WORKERS as u64 + 200 {
        eprintln!("open files limit too low for {WORKERS} connections, skipped");
        return;
    }
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::localhost(dir.path())
        .args(["--shutdown-delay", "0"])
        .ready()
        .await;
    let idle_rss = serve.rss_kib().unwrap();
    let balancer = load::single(
        ClientOpts::apiserver(serve.ca()).config(),
        serve.https,
        serve.admin,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = spawn_load(
        balancer,
        WORKERS,
        standard_mix(),
        Duration::ZERO,
        stop.clone(),
    );
    let mut peak = idle_rss;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        peak = peak.max(serve.rss_kib().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load::finish(&stop, tasks).await;
    peak = peak.max(serve.rss_kib().unwrap_or(0));
    eprintln!(
        "burst of {WORKERS} concurrent keep-alive connections for 4 s: {}; RSS idle {idle_rss} KiB, peak {peak} KiB",
        tally.summary()
    );
    tally.assert_clean();
    assert_eq!(tally.get(&tally.not_written), 0, "{}", tally.summary());
    assert!(tally.get(&tally.answered) >= WORKERS, "{}", tally.summary());
    assert!(peak < MAX_RSS_KIB, "RSS {peak} KiB");
    assert!(serve.alive());
}
