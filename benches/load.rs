//! The load suite: the webhook beside a baseline server, measured side by side in one run.
//!
//! `cargo bench --bench load` (add `-- --quick` for a short smoke run, `-- --h2` to speak HTTP/2
//! instead of HTTP/1.1 in the sections after the headline, `-- --headline` for the headline table
//! alone, `-- --chart PATH` to copy the chart to PATH, e.g. `docs/bench/load.png`). Under six
//! minutes on two cores; writes `target/bench/load.json`, `target/bench/load.md` and the chart
//! `target/bench/load.png`, and prints Markdown tables for BENCHMARKS.md.
//!
//! - **Pinning**: on a machine with two cores or more, with `taskset` (util-linux), every server
//!   runs on core 0 (`taskset -c 0`) and the load generator on core 1 (wrk through `taskset -c 1`;
//!   the suite pins itself and all its threads with `taskset -a -p -c 1`). The first line of the
//!   output says whether pinning was applied; `SPW_LOAD_NO_PIN=1` turns it off.
//! - **Headline** (issue 16), first: nginx (`nginx-light`, started by the suite from a config in
//!   its temp dir, same certificate, a fixed allowed review: the reference), the baseline, the two
//!   scan references, then the webhook's allowed, denied and mutated PVC reviews, each server
//!   alone on core 0 and wrk (`-t1 -c16 --latency`, HTTP/1.1 keep-alive over TLS, a Lua script
//!   POSTing the body) on core 1: req/s, ratio to nginx, p50, p99 and the issue's targets, and a
//!   PNG chart (plotters). Each row's answer is checked once first (fixed / allowed without patch
//!   / denied / patched, three times on one keep-alive connection). Without nginx the ratios are
//!   to the baseline; without wrk the suite's own client measures the table; both say so.
//!   `SPW_LOAD_NGINX` names another nginx binary, `SPW_LOAD_FONT` a TrueType font for the chart
//!   (`none`: no text).
//!
//! - **Cluster size** (issue 24, `-- --volumes` for this table alone): a new claim on a static
//!   class (`local-storage`, nothing free: willBind warns) against the webhook with 0, 10,000
//!   and 50,000 PVs (and twice as many claims) cached, each server alone on core 0 and wrk on
//!   core 1 as in the headline, two rounds (the second in reverse order), means reported: req/s
//!   and the ratio to the empty cache (target: at least 0.8).
//!
//! - **Baseline**: the same rustls configuration (`server::tls::Tls`), the same HTTP stack
//!   (`server::HttpsServer`: hyper-util over tokio-rustls, axum routing, the same limits), answering
//!   a fixed allowed AdmissionReview after reading the body, without parsing or policy.
//! - **Scan-only**: the baseline, plus parsing the body as JSON without keeping anything: the
//!   floor for any webhook that reads the review with serde_json.
//! - **Scan + log**: scan-only, plus one JSON log line in a review span per request, as the
//!   webhook logs each denial and mutation: the floor for a webhook that also logs its decisions.
//! - **Webhook**: the real router (`server::routes::router`) over the same listener.
//!
//! Each server runs in a child process (this binary, re-executed with `SPW_LOAD_ROLE`), on the
//! servers' core when pinned, so the load generator never takes the server's core. The load
//! generator speaks HTTP/1.1 with keep-alive like kube-apiserver, over N connections, either closed
//! loop (throughput) or at a fixed arrival rate (open loop: latency is measured from each request's
//! scheduled time, so a slow answer cannot hide the queue behind it). Bodies are realistic
//! AdmissionReviews (2-4 KiB, with managedFields) from `tests/fixtures`. Loopback only; every loop
//! is bounded in time.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use storage_policy_webhook::policy::{ClassesKnown, LiveClass, LiveState, NamespaceInfo, Policy};
use storage_policy_webhook::server::certs::{self, CertRequest};
use storage_policy_webhook::server::metrics::{Metrics, new_registry};
use storage_policy_webhook::server::routes::{self, AppState, DEFAULT_MAX_BODY_BYTES};
use storage_policy_webhook::server::tls::{Tls, TlsFiles, TlsOptions};
use storage_policy_webhook::server::{HttpsServer, Limits};
use storage_policy_webhook::state::SharedState;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[path = "support/volumes.rs"]
mod volumes;

const ROLE: &str = "SPW_LOAD_ROLE";

/// The same allocator as the binary, so the servers measured here are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match std::env::var(ROLE).as_deref() {
        Ok(role) => serve_role(role),
        Err(_) => orchestrate(),
    }
}

// ---------------------------------------------------------------- the servers (child processes)

/// Runs one server until stdin closes; prints `PORT <n>` once listening.
fn serve_role(role: &str) {
    // Logging as the chart deploys it (JSON at info: denials and mutations are logged);
    // `SPW_LOAD_LOG_LEVEL` overrides the level for experiments. Buffered as in `serve`: the
    // guard flushes the lines when the server ends.
    let _log = storage_policy_webhook::cli::serve::init_tracing(
        storage_policy_webhook::cli::serve::LogFormat::Json,
        &std::env::var("SPW_LOAD_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = PathBuf::from(std::env::var("SPW_LOAD_CERTS").expect("cert dir"));
        let tls = Tls::load(&TlsOptions {
            files: TlsFiles {
                cert: dir.join(certs::CERT_FILE),
                key: dir.join(certs::KEY_FILE),
            },
            client_ca: None,
            reload_interval: Duration::from_secs(3600),
        })
        .expect("tls");
        let mut registry = new_registry();
        let metrics = Metrics::register(&mut registry);
        let router = match role {
            "baseline" => baseline_router(Reference::Fixed),
            "scan" => baseline_router(Reference::Scan),
            "scan-log" => baseline_router(Reference::ScanAndLog),
            "webhook" => {
                let n = |k: &str| {
                    std::env::var(k)
                        .ok()
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0)
                };
                let mut live = live_state(
                    n("SPW_LOAD_CLASSES"),
                    n("SPW_LOAD_NAMESPACES"),
                    n("SPW_LOAD_NODES"),
                );
                // PVs and claims cached (the cluster-size table); unset: none known.
                if std::env::var_os("SPW_LOAD_PVS").is_some() {
                    live = volumes::with_volumes(live, n("SPW_LOAD_PVS"));
                }
                webhook_router(live, metrics.clone())
            }
            other => panic!("unknown role {other}"),
        };
        let server = HttpsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls.config.clone(),
            router,
            Limits::default(),
            metrics,
        )
        .await
        .expect("bind");
        println!("PORT {}", server.local_addr().expect("addr").port());
        let stop = async {
            // The parent closes our stdin to stop us.
            let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
                .await;
        };
        server.run(stop, Duration::from_secs(2)).await;
    });
}

/// The production router with the fixtures' policy and `live` as the cluster cache.
fn webhook_router(live: LiveState, metrics: Arc<Metrics>) -> Router {
    let policy = Policy::load(Some(&fixtures().join("policy.yaml")), false).expect("policy");
    let state = Arc::new(SharedState::new(policy));
    state.update_live(move |l| *l = live);
    routes::router(AppState::new(state, metrics, DEFAULT_MAX_BODY_BYTES))
}

/// What a reference server does before its fixed answer.
#[derive(Clone, Copy, PartialEq)]
enum Reference {
    /// Nothing: the baseline.
    Fixed,
    /// Parses the body as JSON without keeping anything (`serde::de::IgnoredAny`): the least any
    /// serde_json-based webhook must do per request.
    Scan,
    /// Scan, then logs one denial line in a `review` span through the production subscriber,
    /// as the webhook does for each denial and mutation: the least a webhook that parses the
    /// review and logs its decisions at info must do.
    ScanAndLog,
}

/// The fixed answer of the reference servers (nginx's too): an allowed review, the size of the
/// webhook's allowed answer.
fn fixed_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": "00000000-0000-0000-0000-000000000000", "allowed": true, "status": {}}}))
    .unwrap()
}

/// A reference server that answers `fixed_answer()` after reading the body.
fn baseline_router(reference: Reference) -> Router {
    let answer = Bytes::from(fixed_answer());
    let handler = move |body: Bytes| {
        let answer = answer.clone();
        async move {
            if reference != Reference::Fixed {
                let parsed = serde_json::from_slice::<serde::de::IgnoredAny>(&body);
                std::hint::black_box(parsed.is_ok());
            }
            if reference == Reference::ScanAndLog {
                let name = "shared";
                tracing::info_span!(
                    "review",
                    endpoint = "validate",
                    uid = "7f0c6b1e-0000-4000-8000-000000000002",
                    kind = "PersistentVolumeClaim",
                    namespace = "apps",
                    object_name = name,
                    operation = "CREATE",
                )
                .in_scope(|| {
                    tracing::info!(
                        dry_run = false,
                        reason = %format!("PersistentVolumeClaim {name:?} is invalid: spec.accessModes: Unsupported value: \"ReadWriteMany\": supported values: \"ReadOnlyMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""),
                        "denied"
                    )
                });
            }
            std::hint::black_box(body.len());
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                answer,
            )
        }
    };
    Router::new()
        .route("/mutate", post(handler.clone()))
        .route("/validate", post(handler))
}

fn live_state(classes: usize, namespaces: usize, nodes: usize) -> LiveState {
    let provisioners = [
        "ebs.csi.aws.com",
        "nfs.csi.k8s.io",
        "rancher.io/local-path",
        "example.com/other",
    ];
    LiveState {
        // As the cluster cache publishes it once StorageClasses are listed.
        classes_known: ClassesKnown::Cluster,
        classes: (0..classes)
            .map(|i| LiveClass {
                name: format!("class-{i:05}"),
                provisioner: provisioners[i % provisioners.len()].to_owned(),
                parameters: [("type".to_owned(), "gp3".to_owned())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
            .collect(),
        namespaces: (0..namespaces)
            .map(|i| {
                (
                    format!("ns-{i:05}"),
                    NamespaceInfo {
                        default_class: Some(format!("class-{:05}", i % classes.max(1))),
                        mode: None,
                        rewrite_access_modes: None,
                    },
                )
            })
            .collect(),
        nodes: Some(
            (0..nodes)
                .map(|i| {
                    let name = format!("node-{i:05}");
                    let labels = [
                        ("kubernetes.io/hostname".to_owned(), name.clone()),
                        (
                            "topology.kubernetes.io/zone".to_owned(),
                            format!("zone-{}", i % 3),
                        ),
                        (
                            "node.kubernetes.io/instance-type".to_owned(),
                            "m6i.large".to_owned(),
                        ),
                    ];
                    (name, labels.into_iter().collect())
                })
                .collect::<Vec<_>>()
                .into(),
        ),
        ..Default::default()
    }
}

// ------------------------------------------------------------------------------ core pinning

/// Whether the servers run on core 0 and the load generator on core 1: on a machine with two
/// cores or more, when `taskset` (util-linux) is there. Decided once, before the suite pins
/// itself (after that the suite sees one core).
fn pinning() -> bool {
    static PIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PIN.get_or_init(|| {
        std::env::var_os("SPW_LOAD_NO_PIN").is_none()
            && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
            && Command::new("taskset")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// `program` as a command, run on `core` alone when pinning is on (`taskset -c core program`:
/// taskset sets the affinity and execs, so the child's pid is the program's).
fn pinned_command(program: impl AsRef<std::ffi::OsStr>, core: usize) -> Command {
    if pinning() {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(core.to_string()).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Pins this process, every thread of it and the threads it starts later, to core 1: the load
/// generator's core. Returns whether it was done.
fn pin_self_to_load_core() -> bool {
    pinning()
        && Command::new("taskset")
            .args(["-a", "-p", "-c", "1"])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

struct ServerProc {
    child: Child,
    addr: SocketAddr,
    /// Stopped by a kill (nginx) rather than by closing its stdin (the suite's own servers).
    kill_to_stop: bool,
}

impl ServerProc {
    fn start(role: &str, certs: &Path, env: &[(&str, String)]) -> ServerProc {
        let mut cmd = pinned_command(std::env::current_exe().expect("exe"), 0);
        cmd.env(ROLE, role)
            .env("SPW_LOAD_CERTS", certs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The servers' logs: written (their cost is part of the figures), not kept.
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        ServerProc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            kill_to_stop: false,
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.kill_to_stop {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        }
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_of(pid: u32) -> u64 {
    field_kib(pid, "VmRSS:")
}

fn field_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------ the load generator

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Request bodies per endpoint: allowed and denied, PVC, PV and StatefulSet reviews.
fn bodies(endpoint: &str, namespace: Option<&str>) -> Vec<Bytes> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("{endpoint}-")) && name.ends_with(".review.json") {
            let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if let (Some(ns), Some(_)) = (namespace, v["request"].get("namespace")) {
                v["request"]["namespace"] = json!(ns);
            }
            out.push(Bytes::from(serde_json::to_vec(&v).unwrap()));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no {endpoint} fixtures");
    out
}

/// The client's HTTP version: HTTP/1.1 with keep-alive as kube-apiserver speaks it, or HTTP/2
/// (ALPN `h2`, one stream at a time per connection) with `--h2`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    H1,
    H2,
}

fn client_config(ca_pem: &str, protocol: Protocol) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("ca");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = match protocol {
        Protocol::H1 => vec![b"http/1.1".to_vec()],
        Protocol::H2 => vec![b"h2".to_vec()],
    };
    Arc::new(cfg)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Sender {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let stream = TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("tls");
    if stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()) {
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .expect("http2");
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http1");
        tokio::spawn(conn);
        Sender::H1(sender)
    }
}

/// Sends one review; returns whether the answer was a 200 with an AdmissionReview.
async fn send(sender: &mut Sender, path: &str, body: &Bytes) -> bool {
    matches!(exchange(sender, path, body).await, Some((200, b)) if b.starts_with(b"{"))
}

/// Sends one review; returns the answer's status and body, or `None` on a connection error.
async fn exchange(sender: &mut Sender, path: &str, body: &Bytes) -> Option<(u16, Bytes)> {
    let ready = match sender {
        Sender::H1(s) => s.ready().await,
        Sender::H2(s) => s.ready().await,
    };
    if ready.is_err() {
        return None;
    }
    let req = Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    let answer = match sender {
        Sender::H1(s) => {
            // HTTP/1.1 sends the path alone and the authority in Host.
            let (mut parts, body) = req.into_parts();
            parts.uri = path.parse().expect("path");
            parts
                .headers
                .insert("host", hyper::header::HeaderValue::from_static("localhost"));
            s.send_request(Request::from_parts(parts, body)).await
        }
        Sender::H2(s) => s.send_request(req).await,
    };
    let resp = answer.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// As fast as the answers come back.
    Closed,
    /// A fixed rate in requests per second, latency from the scheduled time.
    Rate(f64),
}

struct RunResult {
    completed: u64,
    failed: u64,
    seconds: f64,
    latency: Histogram<u64>,
    max_rss_kib: u64,
}

impl RunResult {
    fn rps(&self) -> f64 {
        self.completed as f64 / self.seconds
    }
    fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One load: what to send, over how many connections, how fast, for how long.
struct Load<'a> {
    path: &'static str,
    bodies: &'a [Bytes],
    connections: usize,
    arrival: Arrival,
    duration: Duration,
}

/// Drives `load.connections` keep-alive connections at `server` for `load.duration`.
fn drive(
    rt: &tokio::runtime::Runtime,
    server: &ServerProc,
    tls: &Arc<rustls::ClientConfig>,
    load: Load<'_>,
) -> RunResult {
    let Load {
        path,
        bodies,
        connections,
        arrival,
        duration,
    } = load;
    let bodies = Arc::new(bodies.to_vec());
    let pid = server.child.id();
    rt.block_on(async {
        let mut senders = Vec::new();
        for _ in 0..connections {
            senders.push(connect(server.addr, tls.clone()).await);
        }
        // Warm every connection (TLS session, server-side buffers) before measuring.
        for s in senders.iter_mut() {
            send(s, path, &bodies[0]).await;
        }
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let start = Instant::now() + Duration::from_millis(20);
        let end = start + duration;
        let sampler = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut max = 0;
                while !done.load(Ordering::Relaxed) {
                    max = max.max(rss_of(pid));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                max
            })
        };
        // Open loop: a pacing thread hands each connection its requests' scheduled times,
        // round robin. std::thread::sleep wakes within tens of microseconds, where tokio's
        // timer rounds up to the next millisecond and would add up to 1 ms to every latency.
        // A request waiting behind a slow one on its connection is timed from its schedule.
        let mut tickets = Vec::new();
        let mut pacer = None;
        if let Arrival::Rate(rate) = arrival {
            let mut txs = Vec::new();
            for _ in 0..senders.len() {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
                txs.push(tx);
                tickets.push(Some(rx));
            }
            pacer = Some(std::thread::spawn(move || {
                for i in 0u64.. {
                    let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                    if scheduled >= end {
                        break;
                    }
                    let now = Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    if txs[(i as usize) % txs.len()].send((i, scheduled)).is_err() {
                        break;
                    }
                }
            }));
        } else {
            tickets.resize_with(senders.len(), || None);
        }
        let mut tasks = Vec::new();
        for (mut sender, ticket) in senders.into_iter().zip(tickets) {
            let (bodies, next, failed) = (bodies.clone(), next.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
                tokio::time::sleep_until(start.into()).await;
                let mut ticket = ticket;
                loop {
                    let (i, scheduled) = match ticket.as_mut() {
                        Some(rx) => match rx.recv().await {
                            Some(t) => t,
                            None => break,
                        },
                        None => (next.fetch_add(1, Ordering::Relaxed), Instant::now()),
                    };
                    if Instant::now() >= end + Duration::from_secs(5)
                        || (ticket.is_none() && scheduled >= end)
                    {
                        break;
                    }
                    let body = &bodies[(i as usize) % bodies.len()];
                    let ok = send(&mut sender, path, body).await;
                    let _ = hist.record(scheduled.elapsed().as_nanos() as u64);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                hist
            }));
        }
        let mut latency = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
        for t in tasks {
            latency.add(t.await.expect("task")).expect("merge");
        }
        if let Some(p) = pacer {
            p.join().expect("pacer");
        }
        let seconds = start
            .elapsed()
            .as_secs_f64()
            .min(duration.as_secs_f64())
            .max(1e-9);
        done.store(true, Ordering::Relaxed);
        let max_rss_kib = sampler.await.unwrap_or(0);
        let failed = failed.load(Ordering::Relaxed);
        RunResult {
            completed: latency.len() - failed.min(latency.len()),
            failed,
            seconds,
            latency,
            max_rss_kib,
        }
    })
}

/// Per-review latency of the production router, in process, with 10 and with 10,000 classes and
/// namespaces: `per_size` reviews each, sorted nanoseconds, in interleaved batches.
fn catalog_in_process(per_size: usize) -> Vec<(usize, Vec<u64>)> {
    use tower::ServiceExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut b = bodies("mutate", Some("ns-00007"));
    b.extend(bodies("validate", Some("ns-00007")));
    let sizes = [10usize, 10_000];
    let routers: Vec<Router> = sizes
        .iter()
        .map(|&n| {
            let mut registry = new_registry();
            webhook_router(live_state(n, n, 0), Metrics::register(&mut registry))
        })
        .collect();
    let mut lat: Vec<Vec<u64>> = vec![Vec::with_capacity(per_size); sizes.len()];
    const BATCH: usize = 500;
    let mut sent = 0usize;
    rt.block_on(async {
        while sent < per_size {
            for (router, lat) in routers.iter().zip(lat.iter_mut()) {
                for i in sent..(sent + BATCH).min(per_size) {
                    let req = Request::post("/validate?timeout=10s")
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(b[i % b.len()].clone()))
                        .expect("request");
                    let t = Instant::now();
                    let resp = router.clone().oneshot(req).await.expect("answer");
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    lat.push(t.elapsed().as_nanos() as u64);
                    assert!(!body.is_empty());
                }
            }
            sent += BATCH;
        }
    });
    sizes
        .into_iter()
        .zip(lat)
        .map(|(n, mut l)| {
            l.sort_unstable();
            (n, l)
        })
        .collect()
}

// ------------------------------------------------------------------ nginx, the reference server

/// nginx answering `fixed_answer()` over TLS with the suite's certificate, one worker, pinned to
/// the servers' core; `Err` with the reason when nginx is not installed or does not start.
fn start_nginx(dir: &Path, certs_dir: &Path) -> Result<ServerProc, String> {
    let nginx = std::env::var_os("SPW_LOAD_NGINX")
        .map(PathBuf::from)
        .or_else(|| {
            let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            dirs.extend(["/usr/sbin".into(), "/usr/local/sbin".into()]);
            dirs.into_iter()
                .map(|d| d.join("nginx"))
                .find(|p| p.is_file())
        })
        .filter(|p| p.is_file())
        .ok_or("nginx is not installed (Debian: apt-get install nginx-light)")?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
    // Temp paths for every module the build has, so nginx writes nothing outside the temp dir.
    let version = Command::new(&nginx)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let mut temp_paths = format!("client_body_temp_path {}/body;\n", prefix.display());
    for module in ["proxy", "fastcgi", "uwsgi", "scgi"] {
        if !version.contains(&format!("--without-http_{module}_module")) {
            temp_paths.push_str(&format!(
                "    {module}_temp_path {}/{module};\n",
                prefix.display()
            ));
        }
    }
    let answer = String::from_utf8(fixed_answer()).expect("utf-8");
    assert!(!answer.contains('\'') && !answer.contains('\\'));
    let port = free_port();
    // One process (no master: the suite stops it with a kill), keep-alive without a request
    // limit, bodies up to 64 KiB kept in memory. `return` discards the body: nginx still reads
    // it off the connection before the next request (checked before each timed run).
    let conf = format!(
        r#"worker_processes 1;
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    default_type application/json;
    keepalive_timeout 65s;
    keepalive_requests 100000000;
    client_max_body_size 1m;
    client_body_buffer_size 64k;
    {temp_paths}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            return 200 '{answer}';
        }}
    }}
}}
"#,
        prefix = prefix.display(),
        cert = certs_dir.join(certs::CERT_FILE).display(),
        key = certs_dir.join(certs::KEY_FILE).display(),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let mut child = pinned_command(&nginx, 0)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", nginx.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            err.push_str(&std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default());
            return Err(format!("nginx exited ({status}): {}", err.trim()));
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(ServerProc {
                child,
                addr,
                kill_to_stop: true,
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("nginx did not listen within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ------------------------------------------------------------------------- wrk, the headline client

struct WrkResult {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Non-2xx answers plus socket errors.
    failed: u64,
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `wrk -t1 -c<connections> --latency` over TLS, HTTP/1.1 keep-alive, pinned to the load
/// generator's core, POSTing `body_file` with `Content-Type: application/json`.
fn run_wrk(
    dir: &Path,
    addr: SocketAddr,
    path: &str,
    body_file: &Path,
    connections: usize,
    duration: Duration,
) -> WrkResult {
    let script = body_file.with_extension("lua");
    std::fs::write(
        &script,
        format!(
            "local f = assert(io.open({:?}, \"rb\"))\nwrk.method = \"POST\"\nwrk.body = f:read(\"*a\")\nf:close()\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            body_file.display().to_string()
        ),
    )
    .expect("write lua");
    let out = pinned_command("wrk", 1)
        .current_dir(dir)
        .arg("-t1")
        .arg(format!("-c{connections}"))
        // wrk takes whole seconds (`2s`), not milliseconds.
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text).unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"))
}

/// Requests/sec, the 50% and 99% lines of the latency distribution (units us, ms or s), the
/// non-2xx answers and socket errors.
fn parse_wrk(text: &str) -> Option<WrkResult> {
    let duration_us = |v: &str| -> Option<f64> {
        let (num, scale) = if let Some(n) = v.strip_suffix("us") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1e3)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1e6)
        } else {
            (v, 1.0)
        };
        num.parse::<f64>().ok().map(|n| n * scale)
    };
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut failed = 0u64;
    let mut in_distribution = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if t.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && t.contains('%') {
            let mut parts = t.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("50%"), Some(v)) => p50 = duration_us(v),
                (Some("99%"), Some(v)) => p99 = duration_us(v),
                _ => {}
            }
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            failed += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            failed += v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        } else {
            in_distribution &= t.contains('%');
        }
    }
    Some(WrkResult {
        rps: rps?,
        p50_us: p50?,
        p99_us: p99?,
        failed,
    })
}

// ------------------------------------------------------------------------------ the headline table

/// One row of the headline table: one server answering one body on one core.
struct Row {
    label: &'static str,
    /// Short name for the chart and the JSON report.
    key: &'static str,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    failed: u64,
    /// The issue's target as a share of the reference's throughput.
    target_ratio: Option<f64>,
}

/// What a row's answer must be, checked once before its timed run.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// The reference servers' fixed allowed answer.
    Fixed,
    Allowed,
    /// Allowed with a warning, without a patch.
    Warned,
    Denied,
    Mutated,
}

fn check_answer(expect: Expect, status: u16, body: &[u8], what: &str) {
    assert_eq!(status, 200, "{what}: status {status}");
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let r = &v["response"];
    let ok = match expect {
        Expect::Fixed => r["allowed"] == json!(true),
        Expect::Allowed => r["allowed"] == json!(true) && r.get("patch").is_none(),
        Expect::Warned => {
            r["allowed"] == json!(true)
                && r.get("patch").is_none()
                && r["warnings"].as_array().is_some_and(|w| !w.is_empty())
        }
        Expect::Denied => r["allowed"] == json!(false),
        Expect::Mutated => r["allowed"] == json!(true) && r["patch"].is_string(),
    };
    assert!(
        ok,
        "{what}: unexpected answer {}",
        String::from_utf8_lossy(body)
    );
}

/// One PVC review fixture, compacted as kube-apiserver sends it.
fn fixture_body(name: &str) -> Bytes {
    let v: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
    .expect("fixture json");
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// The issue's table: each server on core 0, wrk (or the suite's client) on core 1, 16
/// connections, one body per row.
fn headline(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    duration: Duration,
) -> (Vec<Row>, Option<String>, bool) {
    const DENIED: &str = "validate-pvc-rwx-block.review.json";
    const ALLOWED: &str = "validate-pvc-rwx-raw-block-allowed.review.json";
    const MUTATED: &str = "mutate-pvc-default-class.review.json";
    let use_wrk = wrk_available();
    if !use_wrk {
        println!(
            "headline: wrk not found (Debian: apt-get install wrk): the suite's own client measures the table"
        );
    }
    let mut nginx_note = None;
    let mut rows = Vec::new();
    type Spec = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        &'static str,
        Expect,
        Option<f64>,
    );
    let specs: [Spec; 7] = [
        (
            "nginx answering a fixed review (same certificate)",
            "nginx",
            None,
            DENIED,
            "/validate?timeout=10s",
            Expect::Fixed,
            None,
        ),
        (
            "the suite's baseline (rustls + hyper + axum, fixed answer)",
            "baseline",
            Some("baseline"),
            DENIED,
            "/validate?timeout=10s",
            Expect::Fixed,
            None,
        ),
        (
            "scan-only reference (parses the body)",
            "scan-only",
            Some("scan"),
            DENIED,
            "/validate?timeout=10s",
            Expect::Fixed,
            None,
        ),
        (
            "scan + one JSON log line",
            "scan + log",
            Some("scan-log"),
            DENIED,
            "/validate?timeout=10s",
            Expect::Fixed,
            None,
        ),
        (
            "webhook, allowed PVC review on /validate (no log line)",
            "webhook allowed",
            Some("webhook"),
            ALLOWED,
            "/validate?timeout=10s",
            Expect::Allowed,
            Some(0.7),
        ),
        (
            "webhook, denied PVC review on /validate (logged)",
            "webhook denied",
            Some("webhook"),
            DENIED,
            "/validate?timeout=10s",
            Expect::Denied,
            Some(0.5),
        ),
        (
            "webhook, mutated PVC review on /mutate (default class set, logged)",
            "webhook mutated",
            Some("webhook"),
            MUTATED,
            "/mutate?timeout=10s",
            Expect::Mutated,
            Some(0.5),
        ),
    ];
    for (label, key, role, fixture, path, expect, target_ratio) in specs {
        let server = match role {
            Some(role) => ServerProc::start(role, dir, &[]),
            None => match start_nginx(dir, dir) {
                Ok(s) => s,
                Err(e) => {
                    println!("headline: nginx skipped: {e}");
                    nginx_note = Some(e);
                    continue;
                }
            },
        };
        let body = fixture_body(fixture);
        let body_file = dir.join(format!("{key}.json").replace([' ', '+'], "-"));
        std::fs::write(&body_file, &body).expect("write body");
        // The answer is the expected one, three times on one keep-alive connection (nginx must
        // read each body off the connection before the next request).
        rt.block_on(async {
            let mut sender = connect(server.addr, tls.clone()).await;
            for i in 0..3 {
                let (status, answer) = exchange(&mut sender, path, &body)
                    .await
                    .unwrap_or_else(|| panic!("{key}: request {i} on one connection failed"));
                check_answer(expect, status, &answer, key);
            }
        });
        let (rps, p50_us, p99_us, failed) = if use_wrk {
            // A short warm-up, then the timed run.
            run_wrk(
                dir,
                server.addr,
                path,
                &body_file,
                connections,
                Duration::from_secs(1),
            );
            let r = run_wrk(dir, server.addr, path, &body_file, connections, duration);
            (r.rps, r.p50_us, r.p99_us, r.failed)
        } else {
            let bodies = [body.clone()];
            let r = drive(
                rt,
                &server,
                tls,
                Load {
                    path,
                    bodies: &bodies,
                    connections,
                    arrival: Arrival::Closed,
                    duration,
                },
            );
            (r.rps(), r.quantile_us(0.5), r.quantile_us(0.99), r.failed)
        };
        drop(server);
        println!(
            "headline {key:16}: {rps:>8.0} req/s, p50 {p50_us:.0} µs, p99 {p99_us:.0} µs, {failed} failed ({} B body)",
            body.len()
        );
        rows.push(Row {
            label,
            key,
            rps,
            p50_us,
            p99_us,
            failed,
            target_ratio,
        });
    }
    (rows, nginx_note, use_wrk)
}

// ------------------------------------------------------------------------ the cluster-size table

/// Cached PVs per row of the cluster-size table (claims: twice as many).
const VOLUME_SIZES: [usize; 3] = [0, 10_000, 50_000];

/// A new claim on the static class `local-storage` asking for 200Gi: with the suite's volumes
/// (100Gi each, see `support/volumes.rs`) nothing is free, so willBind warns.
fn static_claim_body() -> Bytes {
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("validate-pvc-rwx-raw-block-allowed.review.json"))
            .expect("fixture"),
    )
    .expect("fixture json");
    let namespace = volumes::namespace(7);
    let r = &mut v["request"];
    r["name"] = json!("new-data");
    r["namespace"] = json!(namespace);
    r["object"]["metadata"]["name"] = json!("new-data");
    r["object"]["metadata"]["namespace"] = json!(namespace);
    r["object"]["spec"] = json!({"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "200Gi"}}, "storageClassName": "local-storage"});
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// One row per cache size: (PVs, req/s, p50 µs, p99 µs, failed).
fn volumes_table(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    duration: Duration,
) -> Vec<(usize, f64, f64, f64, u64)> {
    let use_wrk = wrk_available();
    let body = static_claim_body();
    let body_file = dir.join("static-claim.json");
    std::fs::write(&body_file, &body).expect("write body");
    let path = "/validate?timeout=10s";
    // Two rounds, the second in reverse order (0, 10k, 50k, 50k, 10k, 0), the mean reported:
    // a drift in the machine's load (a build elsewhere) then weighs on every size alike.
    let mut sums = [(0.0, 0.0, 0.0, 0u64); VOLUME_SIZES.len()];
    let order: Vec<usize> = (0..VOLUME_SIZES.len())
        .chain((0..VOLUME_SIZES.len()).rev())
        .collect();
    for k in order {
        let n = VOLUME_SIZES[k];
        let server = ServerProc::start("webhook", dir, &[("SPW_LOAD_PVS", n.to_string())]);
        rt.block_on(async {
            let mut sender = connect(server.addr, tls.clone()).await;
            let (status, answer) = exchange(&mut sender, path, &body)
                .await
                .expect("static claim review");
            check_answer(Expect::Warned, status, &answer, "static claim");
        });
        let (rps, p50, p99, failed) = if use_wrk {
            run_wrk(
                dir,
                server.addr,
                path,
                &body_file,
                connections,
                Duration::from_secs(1),
            );
            let r = run_wrk(dir, server.addr, path, &body_file, connections, duration);
            (r.rps, r.p50_us, r.p99_us, r.failed)
        } else {
            let bodies = [body.clone()];
            let r = drive(
                rt,
                &server,
                tls,
                Load {
                    path,
                    bodies: &bodies,
                    connections,
                    arrival: Arrival::Closed,
                    duration,
                },
            );
            (r.rps(), r.quantile_us(0.5), r.quantile_us(0.99), r.failed)
        };
        drop(server);
        println!(
            "volumes {n:>6} PVs, {:>6} claims: {rps:>8.0} req/s, p50 {p50:.0} µs, p99 {p99:.0} µs, {failed} failed",
            2 * n
        );
        let s = &mut sums[k];
        *s = (
            s.0 + rps / 2.0,
            s.1 + p50 / 2.0,
            s.2 + p99 / 2.0,
            s.3 + failed,
        );
    }
    VOLUME_SIZES
        .iter()
        .zip(sums)
        .map(|(&n, (rps, p50, p99, failed))| (n, rps, p50, p99, failed))
        .collect()
}

fn volumes_markdown(rows: &[(usize, f64, f64, f64, u64)]) -> String {
    let empty = rows.first().map_or(f64::NAN, |r| r.1);
    let mut md = "| PVs cached | claims cached | req/s | vs empty cache | p50 | p99 | failed |
|---|---|---|---|---|---|---|
"
    .to_owned();
    for &(n, rps, p50, p99, failed) in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {} | {failed} |
",
            thousands(n as f64),
            thousands(2.0 * n as f64),
            thousands(rps),
            rps / empty,
            micros(p50),
            micros(p99),
        ));
    }
    md
}

/// 129107.3 -> "129,107".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// The Markdown table: req/s, ratio to the reference (nginx, or the baseline without it), p50,
/// p99 and the issue's targets.
fn headline_markdown(rows: &[Row], reference: &str) -> String {
    let reference_rps = rows.first().map_or(f64::NAN, |r| r.rps);
    let mut md = format!(
        "| server on one core | req/s | vs {reference} | p50 | p99 | failed | target |\n|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let ratio = r.rps / reference_rps;
        let target = match r.target_ratio {
            Some(t) => format!(
                "≥ {t} of {reference}: **{}**; p99 ≤ 1 ms: **{}**",
                if ratio >= t { "met" } else { "not met" },
                if r.p99_us <= 1000.0 { "met" } else { "not met" }
            ),
            None => String::new(),
        };
        md.push_str(&format!(
            "| {} | {} | {:.2} | {} | {} | {} | {target} |\n",
            r.label,
            thousands(r.rps),
            ratio,
            micros(r.p50_us),
            micros(r.p99_us),
            r.failed
        ));
    }
    md
}

// ------------------------------------------------------------------------------------ the chart

/// A sans-serif TrueType font from the system, for the chart's text (`SPW_LOAD_FONT` names one,
/// or `none` for a chart without text).
fn chart_font() -> Option<&'static [u8]> {
    let candidates: Vec<PathBuf> = match std::env::var_os("SPW_LOAD_FONT") {
        Some(p) => vec![PathBuf::from(p)],
        None => [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect(),
    };
    candidates
        .into_iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|bytes| &*Box::leak(bytes.into_boxed_slice()))
}

/// A bar between two corners, `margin` pixels short of its segment's edges.
fn bar<C>(
    corners: [C; 2],
    style: plotters::style::ShapeStyle,
    margin: u32,
) -> plotters::element::Rectangle<C> {
    let mut r = plotters::element::Rectangle::new(corners, style);
    r.set_margin(margin, margin, 0, 0);
    r
}

/// Throughput per server (left) and p50/p99 per server (right) as a PNG.
fn draw_chart(rows: &[Row], reference: &str, subtitle: &str, out: &Path) -> Result<bool, String> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::prelude::*;

    let font = chart_font();
    let text = font.is_some_and(|bytes| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    });
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let n = rows.len() as u32;
    // Top row first.
    let at = |i: usize| SegmentValue::Exact(n - 1 - i as u32);
    let name = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) if *i < n => rows[(n - 1 - i) as usize].key.to_owned(),
        _ => String::new(),
    };
    let reference_rps = rows.first().map_or(0.0, |r| r.rps);
    const MIN_US: f64 = 10.0;
    // Value labels: left-aligned after the bar's end, centred on it.
    let value_style = TextStyle::from(("sans-serif", 14).into_font()).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ),
    );

    let root = BitMapBackend::new(out, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = if text {
        root.titled(
            &format!("storage-policy-webhook load suite: one core per server, 16 connections  ({subtitle})"),
            ("sans-serif", 22),
        )
        .map_err(|e| err(&e))?
    } else {
        root
    };
    let (left, right) = root.split_horizontally(720);
    let (label_area, caption_font) = if text { (150, 18) } else { (0, 0) };

    // Throughput.
    let max_rps = rows.iter().map(|r| r.rps).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&left);
    chart
        .margin(12)
        .x_label_area_size(if text { 40 } else { 0 })
        .y_label_area_size(label_area);
    if text {
        chart.caption(
            format!("throughput, req/s (ratio to {reference}); tick: the issue's target"),
            ("sans-serif", caption_font),
        );
    }
    let mut chart = chart
        .build_cartesian_2d(0.0..max_rps, (0u32..n - 1).into_segmented())
        .map_err(|e| err(&e))?;
    if text {
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&name)
            .x_labels(6)
            .x_label_formatter(&|v| thousands(*v))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    let colour = |r: &Row| match r.key {
        "nginx" => RGBColor(0, 150, 57),
        k if k.starts_with("webhook") => RGBColor(206, 66, 43),
        _ => RGBColor(70, 110, 190),
    };
    for (i, r) in rows.iter().enumerate() {
        chart
            .draw_series(std::iter::once(bar(
                [(0.0, at(i)), (r.rps, SegmentValue::Exact(n - i as u32))],
                colour(r).filled(),
                8,
            )))
            .map_err(|e| err(&e))?;
        if let Some(t) = r.target_ratio {
            // The target, as a black tick across the bar.
            let x = t * reference_rps;
            chart
                .draw_series(std::iter::once(bar(
                    [
                        (x, at(i)),
                        (x + max_rps / 400.0, SegmentValue::Exact(n - i as u32)),
                    ],
                    BLACK.filled(),
                    3,
                )))
                .map_err(|e| err(&e))?;
        }
        if text {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} ({:.2})", thousands(r.rps), r.rps / reference_rps),
                    (
                        r.rps.max(r.target_ratio.unwrap_or(0.0) * reference_rps) + max_rps / 100.0,
                        SegmentValue::CenterOf(n - 1 - i as u32),
                    ),
                    value_style.clone(),
                )))
                .map_err(|e| err(&e))?;
        }
    }

    // Latency: p99 (light) with p50 (dark) over it, and the 1 ms target.
    // Log scale: p50 and p99 differ by an order of magnitude or more.
    let max_us = rows.iter().map(|r| r.p99_us).fold(2000.0, f64::max) * 4.0;
    let mut chart = ChartBuilder::on(&right);
    chart
        .margin(12)
        .x_label_area_size(if text { 40 } else { 0 })
        .y_label_area_size(label_area);
    if text {
        chart.caption(
            "latency, µs, log scale: p50 (dark), p99 (light); line: 1 ms",
            ("sans-serif", caption_font),
        );
    }
    let mut chart = chart
        .build_cartesian_2d((MIN_US..max_us).log_scale(), (0u32..n - 1).into_segmented())
        .map_err(|e| err(&e))?;
    if text {
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&name)
            .x_labels(6)
            .x_label_formatter(&|v| thousands(*v))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (i, r) in rows.iter().enumerate() {
        let c = colour(r);
        let light = RGBColor(c.0 / 3 + 170, c.1 / 3 + 170, c.2 / 3 + 170);
        let top = SegmentValue::Exact(n - i as u32);
        chart
            .draw_series([
                bar(
                    [(MIN_US, at(i)), (r.p99_us, top.clone())],
                    light.filled(),
                    8,
                ),
                bar([(MIN_US, at(i)), (r.p50_us, top)], c.filled(), 16),
            ])
            .map_err(|e| err(&e))?;
        if text {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.0} / {:.0}", r.p50_us, r.p99_us),
                    (r.p99_us * 1.08, SegmentValue::CenterOf(n - 1 - i as u32)),
                    value_style.clone(),
                )))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (1000.0, SegmentValue::Exact(0)),
                (1000.0, SegmentValue::Last),
            ],
            BLACK.stroke_width(2),
        )))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(text)
}

// ------------------------------------------------------------------------------ the suite

fn orchestrate() {
    let quick = std::env::args().any(|a| a == "--quick");
    let protocol = if std::env::args().any(|a| a == "--h2") {
        Protocol::H2
    } else {
        Protocol::H1
    };
    let headline_only = std::env::args().any(|a| a == "--headline");
    let chart_copy = std::env::args()
        .skip_while(|a| a != "--chart")
        .nth(1)
        .map(PathBuf::from);
    let secs = |full: u64, q: u64| Duration::from_secs(if quick { q } else { full });
    let connections = 16;
    // Before pinning: once pinned, this process sees one core.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let pinned = pin_self_to_load_core();
    let pinning_note = if pinned {
        "servers pinned to core 0 (`taskset -c 0`), load generator to core 1".to_owned()
    } else if cores < 2 {
        format!("not applied ({cores} core): servers and load generator share the machine")
    } else {
        "not applied (taskset not found, or SPW_LOAD_NO_PIN set): servers and load generator share the machine".to_owned()
    };
    println!("pinning: {pinning_note}");
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = certs::generate(&CertRequest::for_localhost(None, 2)).expect("certs");
    generated.write_to(dir.path()).expect("write certs");
    let tls = client_config(&generated.ca_pem, protocol);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = serde_json::Map::new();
    let mut md = String::new();
    let machine = format!(
        "{cores} cores, {}",
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    println!("machine: {machine}; client protocol: {protocol:?}");
    report.insert("machine".into(), json!(machine));
    report.insert("protocol".into(), json!(format!("{protocol:?}")));
    report.insert("pinning".into(), json!(pinning_note));
    md.push_str(&format!("Pinning: {pinning_note}.\n\n"));

    if std::env::args().any(|a| a == "--volumes") {
        let rows = volumes_section(&rt, dir.path(), &generated.ca_pem, &mut md, secs(8, 2));
        report.insert("volumes".into(), rows);
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&out).expect("mkdir");
        write_outputs(&out, report, &md);
        return;
    }

    // 0. The headline: each server alone on core 0, wrk on core 1, one body per row, HTTP/1.1
    //    whatever `--h2` says (kube-apiserver's protocol, and nginx is set up for it).
    let (rows, nginx_note, used_wrk) = headline(
        &rt,
        dir.path(),
        &client_config(&generated.ca_pem, Protocol::H1),
        connections,
        secs(8, 2),
    );
    let reference = if nginx_note.is_some() {
        "baseline"
    } else {
        "nginx"
    };
    let client = if used_wrk {
        "wrk -t1 -c16 --latency"
    } else {
        "the suite's client (wrk not found), 16 connections"
    };
    md.push_str(&format!(
        "Headline ({client}, HTTP/1.1 keep-alive over TLS, {} s per row{}):\n\n{}\n",
        secs(8, 2).as_secs(),
        nginx_note
            .as_deref()
            .map(|n| format!("; nginx skipped: {n}; ratios to the baseline"))
            .unwrap_or_default(),
        headline_markdown(&rows, reference)
    ));
    report.insert(
        "headline".into(),
        json!({
            "client": client,
            "reference": reference,
            "nginx_skipped": nginx_note,
            "rows": rows.iter().map(|r| json!({"server": r.key, "label": r.label, "rps": r.rps,
                "ratio": r.rps / rows[0].rps, "p50_us": r.p50_us, "p99_us": r.p99_us,
                "failed": r.failed, "target_ratio": r.target_ratio})).collect::<Vec<_>>(),
        }),
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("mkdir");
    let png = out.join("load.png");
    let subtitle = format!(
        "{}; {}",
        if used_wrk { "wrk" } else { "suite client" },
        if pinned { "pinned" } else { "not pinned" }
    );
    match draw_chart(&rows, reference, &subtitle, &png) {
        Ok(text) => {
            println!(
                "chart: {}{}",
                png.display(),
                if text {
                    ""
                } else {
                    " (no font found: drawn without text)"
                }
            );
            if let Some(copy) = &chart_copy {
                if let Some(parent) = copy.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).expect("chart directory");
                }
                std::fs::copy(&png, copy)
                    .unwrap_or_else(|e| panic!("copy chart to {}: {e}", copy.display()));
                println!("chart: copied to {}", copy.display());
            }
        }
        Err(e) => println!("chart: not drawn: {e}"),
    }
    if headline_only {
        write_outputs(&out, report, &md);
        return;
    }
    let rows = volumes_section(&rt, dir.path(), &generated.ca_pem, &mut md, secs(8, 2));
    report.insert("volumes".into(), rows);

    // 1. Closed-loop throughput, alternating the four servers twice per endpoint.
    md.push_str(
        "| endpoint | baseline req/s | scan-only req/s | scan + log req/s | webhook req/s | webhook / baseline | scan-only / baseline | scan + log / baseline | failed |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut baseline_sat = 0.0f64;
    let mut webhook_sat = f64::MAX;
    for (endpoint, path) in [
        ("validate", "/validate?timeout=10s"),
        ("mutate", "/mutate?timeout=10s"),
    ] {
        let b = bodies(endpoint, None);
        let (mut base, mut scan, mut scan_log, mut hook, mut failed) = (0.0, 0.0, 0.0, 0.0, 0);
        for _round in 0..2 {
            for role in ["baseline", "scan", "scan-log", "webhook"] {
                let server = ServerProc::start(role, dir.path(), &[]);
                let r = drive(
                    &rt,
                    &server,
                    &tls,
                    Load {
                        path,
                        bodies: &b,
                        connections,
                        arrival: Arrival::Closed,
                        duration: secs(8, 2),
                    },
                );
                println!(
                    "closed loop {endpoint:8} {role:8}: {:>8.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} failed",
                    r.rps(),
                    r.quantile_us(0.5),
                    r.quantile_us(0.99),
                    r.failed
                );
                failed += r.failed;
                match role {
                    "baseline" => base += r.rps() / 2.0,
                    "scan" => scan += r.rps() / 2.0,
                    "scan-log" => scan_log += r.rps() / 2.0,
                    _ => hook += r.rps() / 2.0,
                }
            }
        }
        baseline_sat = baseline_sat.max(base);
        webhook_sat = webhook_sat.min(hook);
        let (ratio, scan_ratio, scan_log_ratio) = (hook / base, scan / base, scan_log / base);
        println!(
            "closed loop {endpoint}: webhook/baseline = {:.1}%, scan-only/baseline = {:.1}%, scan+log/baseline = {:.1}%",
            ratio * 100.0,
            scan_ratio * 100.0,
            scan_log_ratio * 100.0
        );
        md.push_str(&format!(
            "| /{endpoint} | {base:.0} | {scan:.0} | {scan_log:.0} | {hook:.0} | {:.1}% | {:.1}% | {:.1}% | {failed} |\n",
            ratio * 100.0,
            scan_ratio * 100.0,
            scan_log_ratio * 100.0
        ));
        report.insert(
            format!("closed_{endpoint}"),
            json!({"baseline_rps": base, "scan_only_rps": scan, "scan_log_rps": scan_log,
                "webhook_rps": hook, "ratio": ratio, "scan_only_ratio": scan_ratio,
                "scan_log_ratio": scan_log_ratio, "failed": failed}),
        );
    }

    // 2. Open loop (latency without coordinated omission): at half the baseline's saturation (the
    //    target's rate) and at half the webhook's own saturation.
    let b = bodies("validate", None);
    for (label, rate) in [
        ("half the baseline's saturation", baseline_sat / 2.0),
        ("half the webhook's saturation", webhook_sat / 2.0),
    ] {
        let rate = rate.max(100.0);
        md.push_str(&format!(
            "\nOpen loop at {rate:.0} req/s ({label}), {} connections, mixed /validate bodies:\n\n| server | p50 µs | p99 µs | p99.9 µs | max µs | failed |\n|---|---|---|---|---|---|\n",
            connections * 2
        ));
        for role in ["baseline", "webhook"] {
            let server = ServerProc::start(role, dir.path(), &[]);
            let r = drive(
                &rt,
                &server,
                &tls,
                Load {
                    path: "/validate?timeout=10s",
                    bodies: &b,
                    connections: connections * 2,
                    arrival: Arrival::Rate(rate),
                    duration: secs(10, 2),
                },
            );
            let max = r.latency.max() as f64 / 1000.0;
            println!(
                "open loop {rate:.0}/s {role:8}: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {max:.0} µs, {} failed",
                r.quantile_us(0.5),
                r.quantile_us(0.99),
                r.quantile_us(0.999),
                r.failed
            );
            md.push_str(&format!(
                "| {role} | {:.0} | {:.0} | {:.0} | {max:.0} | {} |\n",
                r.quantile_us(0.5),
                r.quantile_us(0.99),
                r.quantile_us(0.999),
                r.failed
            ));
            report.insert(format!("open_{role}_{:.0}", rate), json!({"rate": rate, "p50_us": r.quantile_us(0.5), "p99_us": r.quantile_us(0.99), "p999_us": r.quantile_us(0.999), "failed": r.failed}));
        }
    }

    // 3. Cache size does not matter: 10 vs 10,000 classes and namespaces, same fixed rate.
    // Well below the webhook's saturation, so queueing does not drown the per-request cost.
    let scale_rate = (webhook_sat / 4.0).max(100.0);
    md.push_str(&format!("\nCatalog size at {scale_rate:.0} req/s (claims in namespace ns-00007, which has a default class):\n\n| classes and namespaces | p50 µs | p99 µs |\n|---|---|---|\n"));
    // Two rounds, alternating the sizes, so drift of the shared machine hits both alike; each
    // size's figures are the mean of its two runs.
    let mut scale = [(0.0f64, 0.0f64); 2];
    for (i, n) in [10usize, 10_000, 10, 10_000].into_iter().enumerate() {
        let server = ServerProc::start(
            "webhook",
            dir.path(),
            &[
                ("SPW_LOAD_CLASSES", n.to_string()),
                ("SPW_LOAD_NAMESPACES", n.to_string()),
            ],
        );
        let mut b = bodies("mutate", Some("ns-00007"));
        b.extend(bodies("validate", Some("ns-00007")));
        let r = drive(
            &rt,
            &server,
            &tls,
            Load {
                path: "/validate?timeout=10s",
                bodies: &b,
                connections,
                arrival: Arrival::Rate(scale_rate),
                duration: secs(8, 2),
            },
        );
        println!(
            "catalog {n:>6}: p50 {:.0} µs, p99 {:.0} µs",
            r.quantile_us(0.5),
            r.quantile_us(0.99)
        );
        md.push_str(&format!(
            "| {n} | {:.0} | {:.0} |\n",
            r.quantile_us(0.5),
            r.quantile_us(0.99)
        ));
        scale[i % 2].0 += r.quantile_us(0.5) / 2.0;
        scale[i % 2].1 += r.quantile_us(0.99) / 2.0;
    }
    let (p50_ratio, p99_ratio) = (scale[1].0 / scale[0].0, scale[1].1 / scale[0].1);
    md.push_str(&format!(
        "\nMeans of the two runs: 10: p50 {:.0} µs, p99 {:.0} µs; 10,000: p50 {:.0} µs, p99 {:.0} µs. 10,000 / 10: p50 x{p50_ratio:.2}, p99 x{p99_ratio:.2}\n",
        scale[0].0, scale[0].1, scale[1].0, scale[1].1
    ));
    report.insert("catalog_scale".into(), json!({"p50_ratio": p50_ratio, "p99_ratio": p99_ratio, "small": scale[0], "large": scale[1]}));

    // 3b. The same comparison without the network: the production router called in-process,
    // batches of the two sizes interleaved so both see the same machine. Over loopback the
    // client and the kernel share the two cores with the server and p99 moves 20-40% between
    // identical runs; here the only difference between the two sides is the catalog.
    let in_process = catalog_in_process(if quick { 20_000 } else { 150_000 });
    md.push_str(&format!(
        "\nCatalog size in-process (production router, no network; {} reviews per size, interleaved batches of 500):\n\n| classes and namespaces | p50 µs | p99 µs | p99.9 µs |\n|---|---|---|---|\n",
        in_process[0].1.len()
    ));
    let q = |v: &[u64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0;
    for (n, lat) in &in_process {
        println!(
            "catalog in-process {n:>6}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
            q(lat, 0.5),
            q(lat, 0.99),
            q(lat, 0.999)
        );
        md.push_str(&format!(
            "| {n} | {:.1} | {:.1} | {:.1} |\n",
            q(lat, 0.5),
            q(lat, 0.99),
            q(lat, 0.999)
        ));
    }
    let (small, large) = (&in_process[0].1, &in_process[1].1);
    let (ip50, ip99) = (
        q(large, 0.5) / q(small, 0.5),
        q(large, 0.99) / q(small, 0.99),
    );
    md.push_str(&format!(
        "\n10,000 / 10 in-process: p50 x{ip50:.2}, p99 x{ip99:.2}\n"
    ));
    println!("catalog in-process 10,000 / 10: p50 x{ip50:.2}, p99 x{ip99:.2}");
    report.insert(
        "catalog_scale_in_process".into(),
        json!({"p50_ratio": ip50, "p99_ratio": ip99,
            "small": {"p50_us": q(small, 0.5), "p99_us": q(small, 0.99), "p999_us": q(small, 0.999)},
            "large": {"p50_us": q(large, 0.5), "p99_us": q(large, 0.99), "p999_us": q(large, 0.999)}}),
    );

    // 4. Memory under load with a large cache: 1,000 classes, 10,000 namespaces, 5,000 nodes.
    let server = ServerProc::start(
        "webhook",
        dir.path(),
        &[
            ("SPW_LOAD_CLASSES", "1000".into()),
            ("SPW_LOAD_NAMESPACES", "10000".into()),
            ("SPW_LOAD_NODES", "5000".into()),
        ],
    );
    let mut b = bodies("validate", None);
    b.extend(bodies("mutate", None));
    let r = drive(
        &rt,
        &server,
        &tls,
        Load {
            path: "/validate?timeout=10s",
            bodies: &b,
            connections,
            arrival: Arrival::Closed,
            duration: secs(6, 2),
        },
    );
    let hwm = field_kib(server.child.id(), "VmHWM:");
    drop(server);
    println!(
        "large cache under load: max RSS {} KiB (peak {} KiB), {:.0} req/s",
        r.max_rss_kib,
        hwm,
        r.rps()
    );
    md.push_str(&format!("\nLarge cache (1,000 classes, 10,000 namespaces, 5,000 nodes) under closed-loop load: RSS max {:.1} MiB, peak (VmHWM) {:.1} MiB\n", r.max_rss_kib as f64 / 1024.0, hwm as f64 / 1024.0));
    report.insert(
        "large_cache_rss_kib".into(),
        json!({"max_rss": r.max_rss_kib, "hwm": hwm}),
    );

    // 5. The real binary: start to ready, and idle memory with the embedded policy.
    let (mut starts, mut idle) = (Vec::new(), 0);
    for _ in 0..5 {
        let (t, rss) = start_to_ready(dir.path());
        starts.push(t);
        idle = idle.max(rss);
    }
    starts.sort();
    let median = starts[starts.len() / 2];
    println!(
        "binary: start to ready median {:.1} ms (of {:?}), idle RSS {} KiB",
        median.as_secs_f64() * 1e3,
        starts,
        idle
    );
    md.push_str(&format!("\nBinary `serve --no-cluster`: start to ready median {:.1} ms over 5 starts; idle RSS {:.1} MiB\n", median.as_secs_f64() * 1e3, idle as f64 / 1024.0));
    report.insert(
        "binary".into(),
        json!({"start_to_ready_ms": median.as_secs_f64() * 1e3, "idle_rss_kib": idle}),
    );

    write_outputs(&out, report, &md);
}

/// The cluster-size table (HTTP/1.1 as the headline), into `md`; its JSON report.
fn volumes_section(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    ca_pem: &str,
    md: &mut String,
    duration: Duration,
) -> Value {
    let rows = volumes_table(rt, dir, &client_config(ca_pem, Protocol::H1), 16, duration);
    let table = volumes_markdown(&rows);
    println!("{table}");
    md.push_str(&format!(
        "\nCluster size (a new claim on a static class, nothing free: willBind warns; {} s per run, two runs per row in the order 0, 10k, 50k, 50k, 10k, 0, means; one core each):\n\n{table}\n",
        duration.as_secs()
    ));
    json!(
        rows.iter()
            .map(
                |&(n, rps, p50, p99, failed)| json!({"pvs": n, "claims": 2 * n, "rps": rps,
                "ratio": rps / rows[0].1, "p50_us": p50, "p99_us": p99, "failed": failed})
            )
            .collect::<Vec<_>>()
    )
}

fn write_outputs(out: &Path, report: serde_json::Map<String, Value>, md: &str) {
    std::fs::write(
        out.join("load.json"),
        serde_json::to_vec_pretty(&Value::Object(report)).unwrap(),
    )
    .expect("write");
    std::fs::write(out.join("load.md"), md).expect("write");
    println!("\n{md}");
    let _ = std::io::stdout().flush();
}

/// Starts the real binary with the embedded policy and its own certificates; returns the time to
/// the first 200 on /readyz and the RSS once idle.
fn start_to_ready(certs_dir: &Path) -> (Duration, u64) {
    let admin = free_port();
    let begin = Instant::now();
    let mut child = pinned_command(env!("CARGO_BIN_EXE_storage-policy-webhook"), 0)
        .args([
            "serve",
            "--no-cluster",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
        ])
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--tls-cert")
        .arg(certs_dir.join(certs::CERT_FILE))
        .arg("--tls-key")
        .arg(certs_dir.join(certs::KEY_FILE))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn binary");
    let deadline = begin + Duration::from_secs(10);
    let ready = loop {
        if readyz(admin) {
            break begin.elapsed();
        }
        assert!(Instant::now() < deadline, "binary not ready within 10 s");
        std::thread::sleep(Duration::from_micros(500));
    };
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (ready, rss)
}

fn readyz(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
