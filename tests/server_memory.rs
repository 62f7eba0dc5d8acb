//! Memory under hostile bodies, on the real binary with the chart's flags: 200 TLS connections
//! each streaming most of an 8 MiB body and holding it, then a burst of 200 whole 8 MiB bodies.
//! The body budget (`--body-budget-bytes`, here 16 MiB: what the chart's 128 MiB memory limit
//! gives) bounds the bytes in memory, so the process stays under the chart's memory request
//! (64 MiB); real reviews on new connections are answered meanwhile (the budget's reserve), and
//! every refused body gets a clear answer. Each test prints its figures
//! (`cargo test --test server_memory -- --nocapture`); see RELIABILITY.md.
//!
//! Before the budget, 60 connections holding most of an 8 MiB body each drove the process to
//! ~500 MiB.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The load tests share two cores with everything else: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONNECTIONS: usize = 200;
const BODY: usize = 8 << 20;
/// The chart's memory request (64 MiB) less the resident pages of the release binary the chart
/// runs (12.4 MiB at the peak of these tests): the heap (anonymous memory) must stay under this.
/// The debug build these tests run has ~30 MiB of its own pages, so the bound is on the heap and
/// the total is reported; RELIABILITY.md has both builds (`SPW_TEST_BIN` runs the release one).
const MAX_HEAP_KIB: u64 = 52 << 10;
/// The budget the chart's memory limit (128 MiB) gives: an eighth.
const BUDGET: &str = "16777216";
/// Generous: the figure measured is far below (RELIABILITY.md); a loaded 2-core machine must not
/// make this flaky. What it guards against is a review waiting for the budget (1 s) or for a
/// held body's read timeout.
const REAL_REVIEW_WITHIN: Duration = Duration::from_millis(900);

async fn start(dir: &std::path::Path, read_timeout: &str) -> Serve {
    Serve::localhost(dir)
        .args(["--shutdown-delay", "0", "--body-budget-bytes", BUDGET])
        .args(["--body-read-timeout", read_timeout])
        // As the image runs it (Dockerfile): mimalloc returns freed body buffers at once.
        .env("MIMALLOC_PURGE_DELAY", "0")
        .ready()
        .await
}

fn enough_files() -> bool {
    let ok = open_files_limit().unwrap_or(1024) >= 2 * CONNECTIONS as u64 + 200;
    if !ok {
        eprintln!("open files limit too low for {CONNECTIONS} connections, skipped");
    }
    ok
}

/// A real review (denied: RWX on a block class) on a new connection: its latency, connection and
/// TLS handshake included.
async fn real_review(serve: &Serve, cfg: Arc<rustls::ClientConfig>) -> Duration {
    let t = Instant::now();
    let mut c = H1::connect(serve.https, cfg)
        .await
        .expect("a new connection");
    let (s, body) = c
        .post("/validate?timeout=10s", PVC_RWX_BLOCK)
        .await
        .expect("answered");
    let took = t.elapsed();
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json(&body);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert_eq!(v["response"]["status"]["code"], 422, "{v}");
    took
}

/// The status line of what the server wrote on a connection, if anything.
fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// Resident memory of the process: the largest total seen, with its anonymous (heap) and file
/// (the binary's pages: ~30 MiB for the debug build, ~10 MiB for release) parts and when.
struct Peak {
    idle: Rss,
    top: Rss,
    at: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

impl Rss {
    fn of(serve: &Serve) -> Rss {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", serve.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Rss {
            total: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MiB ({:.1} anon + {:.1} file)",
            self.total as f64 / 1024.0,
            self.anon as f64 / 1024.0,
            self.file as f64 / 1024.0
        )
    }
}

impl Peak {
    fn new(serve: &Serve) -> Peak {
        let idle = Rss::of(serve);
        Peak {
            idle,
            top: idle,
            at: Duration::ZERO,
        }
    }

    fn sample(&mut self, serve: &Serve, since: Instant) {
        let now = Rss::of(serve);
        if now.total > self.top.total {
            self.top = now;
            self.at = since.elapsed();
        }
    }
}

impl std::fmt::Display for Peak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS idle {}, peak {} at {:.1} s",
            self.idle,
            self.top,
            self.at.as_secs_f64()
        )
    }
}

#[derive(Default)]
struct Tally {
    connected: AtomicUsize,
    bytes_written: AtomicUsize,
    answers: std::sync::Mutex<Vec<Option<u16>>>,
}

/// One connection that sends headers for an 8 MiB body, then all but 64 KiB of it, then holds;
/// it records what the server answers (if anything) when the server closes.
async fn hostile(
    serve_addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    chunk: Arc<Vec<u8>>,
    tally: Arc<Tally>,
    hold: Duration,
) {
    let Ok(stream) = tls_connect(serve_addr, cfg).await else {
        return;
    };
    tally.connected.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let head = format!(
        "POST /validate?timeout=30s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let writer = async {
        wr.write_all(head.as_bytes()).await?;
        let mut sent = 0;
        while sent + chunk.len() <= BODY - (64 << 10) {
            wr.write_all(&chunk).await?;
            sent += chunk.len();
            tally
                .bytes_written
                .fetch_add(chunk.len(), Ordering::Relaxed);
        }
        wr.flush().await?;
        std::future::pending::<std::io::Result<()>>().await
    };
    let mut answer = Vec::new();
    // The writer holds (never ends by itself) or fails once the server closes; reading ends
    // when the server has answered and closed.
    let _ = tokio::time::timeout(hold, async {
        let reader = rd.read_to_end(&mut answer);
        tokio::pin!(reader);
        tokio::select! {
            _ = &mut reader => {}
            _ = writer => { let _ = reader.await; }
        }
    })
    .await;
    tally.answers.lock().unwrap().push(status_of(&answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_8_mib_bodies_on_200_connections_stay_within_the_budget_and_real_reviews_are_answered()
{
    let _serial = SERIAL.lock().await;
    if !enough_files() {
        return;
    }
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    // A held body is cut after 5 s here (10 s by default), so the test sees it happen.
    let mut serve = start(dir.path(), "5").await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();

    let chunk = Arc::new(vec![b' '; 64 << 10]);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let hold = Duration::from_secs(15);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            tokio::spawn(hostile(
                serve.https,
                cfg.clone(),
                chunk.clone(),
                tally.clone(),
                hold,
            ))
        })
        .collect();

    // RSS throughout; once every connection is open and its body held, real reviews on new
    // connections for 2 s. The hostile clients hold until the server answers (or 15 s).
    let mut peak = Peak::new(&serve);
    let mut latencies = Vec::new();
    let mut reviews_from = None;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak.sample(&serve, started);
        if reviews_from.is_none() && tally.connected.load(Ordering::Relaxed) == CONNECTIONS {
            reviews_from = Some(Instant::now());
        }
        if reviews_from.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            latencies.push(real_review(&serve, cfg.clone()).await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = tally.connected.load(Ordering::Relaxed);
    let written = tally.bytes_written.load(Ordering::Relaxed);
    // Past the read timeout: every held body has been cut.
    for t in tasks {
        t.await.unwrap();
    }
    peak.sample(&serve, started);
    let after = real_review(&serve, cfg.clone()).await;
    let answers = tally.answers.lock().unwrap().clone();
    let count = |s: Option<u16>| answers.iter().filter(|a| **a == s).count();
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    latencies.sort();
    eprintln!(
        "{connected} connections holding 8 MiB bodies ({} MiB written by the clients, most \
         refused by backpressure): {peak}; {} real reviews \
         on new connections meanwhile: median {:?}, slowest {slowest:?}; the held bodies \
         answered 503 (budget) {}, 408 (read timeout) {}, nothing {}; after: {after:?}",
        written >> 20,
        latencies.len(),
        latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default(),
        count(Some(503)),
        count(Some(408)),
        count(None),
    );
    assert_eq!(connected, CONNECTIONS);
    assert!(peak.top.anon < MAX_HEAP_KIB, "{peak}");
    assert!(latencies.len() >= 5, "{latencies:?}");
    assert!(slowest < REAL_REVIEW_WITHIN, "{latencies:?}");
    assert_eq!(
        count(Some(503)) + count(Some(408)),
        CONNECTIONS,
        "every held body is refused with 503 or 408: {answers:?}"
    );
    assert!(
        count(Some(408)) >= 1,
        "a body held in the budget is cut by the read timeout"
    );
    assert!(serve.alive());
    let log = serve.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("--body-budget-bytes"),
        "the refusals are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_whole_8_mib_reviews_stays_within_the_budget() {
    let _serial = SERIAL.lock().await;
    if !enough_files() {
        return;
    }
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = start(dir.path(), "10").await;
    let cfg = ClientOpts::apiserver(serve.ca()).config();

    // A real review padded to just under the 8 MiB limit: decided (denied) when it fits.
    let mut review: serde_json::Value = serde_json::from_str(PVC_RWX_BLOCK).unwrap();
    let base = review.to_string().len();
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({ "padding": "x".repeat(BODY - base - 1024) });
    let big = hyper::body::Bytes::from(review.to_string());
    assert!(big.len() < BODY);

    let started = Instant::now();
    let connected = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (addr, cfg, big) = (serve.https, cfg.clone(), big.clone());
            let connected = connected.clone();
            tokio::spawn(async move {
                let mut c = H1::connect(addr, cfg).await.ok()?;
                connected.fetch_add(1, Ordering::Relaxed);
                let r = tokio::time::timeout(
                    Duration::from_secs(30),
                    c.send("POST", "/validate?timeout=30s", big),
                )
                .await
                .ok()?;
                Some(r.map_err(|e| e.to_string()))
            })
        })
        .collect();
    let mut peak = Peak::new(&serve);
    let mut latencies = Vec::new();
    let mut last_review = Instant::now();
    while tasks.iter().any(|t| !t.is_finished()) && started.elapsed() < Duration::from_secs(40) {
        peak.sample(&serve, started);
        if connected.load(Ordering::Relaxed) == CONNECTIONS
            && last_review.elapsed() > Duration::from_millis(200)
        {
            latencies.push(real_review(&serve, cfg.clone()).await);
            last_review = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let (mut decided, mut refused, mut closed, mut other) = (0, 0, 0, Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Some(Ok((StatusCode::OK, body))) => {
                let v = json(&body);
                assert_eq!(v["response"]["allowed"], false);
                assert_eq!(v["response"]["status"]["code"], 422);
                decided += 1;
            }
            Some(Ok((StatusCode::SERVICE_UNAVAILABLE, body))) => {
                let msg = String::from_utf8_lossy(&body);
                assert!(msg.contains("--body-budget-bytes"), "{msg}");
                refused += 1;
            }
            // The server answered 503 and closed before the client finished writing.
            Some(Err(_)) => closed += 1,
            r => other.push(format!("{r:?}")),
        }
    }
    peak.sample(&serve, started);
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    latencies.sort();
    eprintln!(
        "burst of {CONNECTIONS} whole 8 MiB reviews: done in {took:?}; {decided} decided \
         (denied), {refused} refused with 503 (budget), {closed} closed while sending; {peak}; {} real reviews meanwhile: median {:?}, slowest \
         {slowest:?}",
        latencies.len(),
        latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default(),
    );
    assert!(other.is_empty(), "{other:?}");
    assert!(decided >= 1, "large reviews are still decided");
    assert!(refused >= 1, "a burst beyond the budget is refused");
    assert!(peak.top.anon < MAX_HEAP_KIB, "{peak}");
    assert!(!latencies.is_empty());
    assert!(slowest < REAL_REVIEW_WITHIN, "{latencies:?}");
    assert!(serve.alive());
    assert!(!serve.log().contains("panicked"));
}
