//! A load client shaped like kube-apiserver's webhook client: HTTP/1.1 keep-alive connections,
//! one request at a time on each, a new connection when one closes. Every request ends in one of
//! three tallies: answered (and checked), never written (the connection was refused or closed
//! before the request went out: safe to retry, the server never saw it), or lost (written and not
//! answered: what a webhook must never do).
//!
//! [`Balancer`] spreads new connections over replicas the way the endpoints controller does:
//! a replica whose `/readyz` answers 503 gets no new connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use super::binary::admin_get;
use super::{BoxError, PVC_NO_CLASS, PVC_RWX_BLOCK, PVC_RWX_NFS, patched_class, tls_connect};

/// Checks one answer: `Err` says what is wrong with it.
pub type Check = fn(StatusCode, &[u8]) -> Result<(), String>;

/// One kind of request the load sends.
#[derive(Clone, Copy)]
pub struct Probe {
    pub path: &'static str,
    pub body: &'static str,
    pub check: Check,
}

fn review(status: StatusCode, body: &[u8]) -> Result<serde_json::Value, String> {
    if status != StatusCode::OK {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(body)));
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if v["apiVersion"] != "admission.k8s.io/v1" || v["kind"] != "AdmissionReview" {
        return Err(format!("not an AdmissionReview: {v}"));
    }
    Ok(v)
}

/// The three server fixtures with their decisions under `tests/fixtures/server/policy.yaml`:
/// a claim without a class gets `standard`, RWX on a block class is denied, RWX on NFS allowed.
pub fn standard_mix() -> Vec<Probe> {
    vec![
        Probe {
            path: "/mutate?timeout=10s",
            body: PVC_NO_CLASS,
            check: |s, b| {
                let v = review(s, b)?;
                (v["response"]["allowed"] == true
                    && patched_class(&v).as_deref() == Some("standard"))
                .then_some(())
                .ok_or_else(|| format!("want a patch to standard: {v}"))
            },
        },
        Probe {
            path: "/validate?timeout=10s",
            body: PVC_RWX_BLOCK,
            check: |s, b| {
                let v = review(s, b)?;
                (v["response"]["allowed"] == false && v["response"]["status"]["code"] == 422)
                    .then_some(())
                    .ok_or_else(|| format!("want a 422 denial: {v}"))
            },
        },
        Probe {
            path: "/validate?timeout=10s",
            body: PVC_RWX_NFS,
            check: |s, b| {
                let v = review(s, b)?;
                (v["response"]["allowed"] == true)
                    .then_some(())
                    .ok_or_else(|| format!("want allowed: {v}"))
            },
        },
    ]
}

/// How one request ended.
pub enum Sent {
    Answered(StatusCode, Bytes),
    /// Never written: the server did not see it; safe to send again.
    NotWritten(String),
    /// Written (at least in part) and not answered.
    Lost(String),
}

/// One keep-alive connection.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> Result<Conn, BoxError> {
        let stream = tls_connect(addr, cfg).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    pub async fn send(&mut self, path: &str, body: &'static str) -> Sent {
        if let Err(e) = self.sender.ready().await {
            return Sent::NotWritten(format!("connection closed: {e}"));
        }
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        // `try_send_request` hands the request back when it never went out.
        match tokio::time::timeout(Duration::from_secs(15), self.sender.try_send_request(req)).await
        {
            Err(_) => Sent::Lost("no answer within 15 s".into()),
            Ok(Err(mut e)) => {
                if e.take_message().is_some() {
                    Sent::NotWritten(e.into_error().to_string())
                } else {
                    Sent::Lost(e.into_error().to_string())
                }
            }
            Ok(Ok(resp)) => {
                let status = resp.status();
                match resp.into_body().collect().await {
                    Ok(b) => Sent::Answered(status, b.to_bytes()),
                    Err(e) => Sent::Lost(format!("answer cut short: {e}")),
                }
            }
        }
    }
}

/// Counts of one load run.
#[derive(Default)]
pub struct Tally {
    pub answered: AtomicUsize,
    pub wrong: AtomicUsize,
    pub not_written: AtomicUsize,
    pub refused_connections: AtomicUsize,
    pub lost: AtomicUsize,
    pub connections: AtomicUsize,
    pub problems: Mutex<Vec<String>>,
    pub latencies_us: Mutex<Vec<u64>>,
}

impl Tally {
    pub fn get(&self, c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }

    fn problem(&self, p: String) {
        let mut v = self.problems.lock().unwrap();
        if v.len() < 20 {
            v.push(p);
        }
    }

    /// (p50, p99, max) latency of the answered requests.
    pub fn latency(&self) -> (Duration, Duration, Duration) {
        let mut v = self.latencies_us.lock().unwrap().clone();
        if v.is_empty() {
            return Default::default();
        }
        v.sort_unstable();
        let at = |q: f64| Duration::from_micros(v[((v.len() - 1) as f64 * q) as usize]);
        (at(0.5), at(0.99), at(1.0))
    }

    pub fn summary(&self) -> String {
        let (p50, p99, max) = self.latency();
        format!(
            "answered {} (wrong {}), lost {}, not written {}, connections {} (refused {}), latency p50 {p50:?} p99 {p99:?} max {max:?}",
            self.get(&self.answered),
            self.get(&self.wrong),
            self.get(&self.lost),
            self.get(&self.not_written),
            self.get(&self.connections),
            self.get(&self.refused_connections),
        )
    }

    /// Lost or wrong answers, with the first problems seen.
    pub fn assert_clean(&self) {
        assert_eq!(
            (self.get(&self.lost), self.get(&self.wrong)),
            (0, 0),
            "{}; problems: {:#?}",
            self.summary(),
            self.problems.lock().unwrap()
        );
    }
}

/// One webhook replica: where it listens and whether its last readiness probe passed.
pub struct Replica {
    pub https: SocketAddr,
    pub admin: SocketAddr,
    ready: AtomicBool,
}

/// Spreads new connections over ready replicas; with `gate` false, connects to any replica
/// whatever its readiness (one replica that must itself refuse connections).
pub struct Balancer {
    replicas: Mutex<Vec<Arc<Replica>>>,
    next: AtomicUsize,
    gate: bool,
    cfg: Arc<ClientConfig>,
}

impl Balancer {
    pub fn new(cfg: Arc<ClientConfig>, gate: bool) -> Arc<Balancer> {
        Arc::new(Balancer {
            replicas: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            gate,
            cfg,
        })
    }

    /// Sets replica `i` (a new pod takes the place of an old one), not ready until probed.
    pub fn set(&self, i: usize, https: SocketAddr, admin: SocketAddr) {
        let r = Arc::new(Replica {
            https,
            admin,
            ready: AtomicBool::new(false),
        });
        let mut v = self.replicas.lock().unwrap();
        if i < v.len() {
            v[i] = r;
        } else {
            v.push(r);
        }
    }

    /// Probes every replica's `/readyz` every 50 ms until `stop`.
    pub fn spawn_probes(
        self: &Arc<Balancer>,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let b = self.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let replicas = b.replicas.lock().unwrap().clone();
                for r in replicas {
                    let ok = admin_get(r.admin, "/readyz").await.map(|(s, _)| s) == Some(200);
                    r.ready.store(ok, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    fn pick(&self) -> Option<Arc<Replica>> {
        let v = self.replicas.lock().unwrap();
        let n = v.len();
        (0..n)
            .map(|k| v[(self.next.fetch_add(1, Ordering::SeqCst) + k) % n].clone())
            .find(|r| !self.gate || r.ready.load(Ordering::SeqCst))
    }

    async fn connect(&self, tally: &Tally) -> Option<Conn> {
        let r = self.pick()?;
        match Conn::connect(r.https, self.cfg.clone()).await {
            Ok(c) => {
                tally.connections.fetch_add(1, Ordering::SeqCst);
                Some(c)
            }
            Err(_) => {
                tally.refused_connections.fetch_add(1, Ordering::SeqCst);
                None
            }
        }
    }
}

/// Runs `workers` keep-alive clients sending `mix` in turn until `stop`; a request that was never
/// written is sent again on a new connection, a lost one is counted and not retried.
pub fn spawn_load(
    balancer: Arc<Balancer>,
    workers: usize,
    mix: Vec<Probe>,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let tasks = (0..workers)
        .map(|w| {
            let (balancer, mix, stop, tally) =
                (balancer.clone(), mix.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut conn: Option<Conn> = None;
                let mut i = w;
                while !stop.load(Ordering::SeqCst) {
                    let Some(c) = conn.as_mut() else {
                        conn = balancer.connect(&tally).await;
                        if conn.is_none() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    };
                    let probe = mix[i % mix.len()];
                    let start = Instant::now();
                    match c.send(probe.path, probe.body).await {
                        Sent::Answered(s, body) => {
                            tally
                                .latencies_us
                                .lock()
                                .unwrap()
                                .push(start.elapsed().as_micros() as u64);
                            match (probe.check)(s, &body) {
                                Ok(()) => tally.answered.fetch_add(1, Ordering::SeqCst),
                                Err(e) => {
                                    tally.problem(format!("wrong answer: {e}"));
                                    tally.wrong.fetch_add(1, Ordering::SeqCst)
                                }
                            };
                            i += 1;
                        }
                        Sent::NotWritten(_) => {
                            tally.not_written.fetch_add(1, Ordering::SeqCst);
                            conn = None;
                        }
                        Sent::Lost(e) => {
                            tally.problem(format!("lost: {e}"));
                            tally.lost.fetch_add(1, Ordering::SeqCst);
                            conn = None;
                            i += 1;
                        }
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            })
        })
        .collect();
    (tally, tasks)
}

/// Stops the load and waits for its workers (bounded).
pub async fn finish(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("load worker stopped in time")
            .unwrap();
    }
}

/// A single replica with no readiness gating: connections go to it until it refuses them.
pub fn single(cfg: Arc<ClientConfig>, https: SocketAddr, admin: SocketAddr) -> Arc<Balancer> {
    let b = Balancer::new(cfg, false);
    b.set(0, https, admin);
    b
}
