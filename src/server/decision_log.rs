//! Aggregation of repeated decisions in the log, as Kubernetes aggregates repeated Events.
//!
//! Every denial and mutation reaches the log, but a storm of identical ones (a rollout fighting
//! the policy, a controller retrying) must not cost a formatted line each: the first decision with
//! a given endpoint, action, kind, namespace and message is logged in full (its review span with
//! the uid and name), the identical ones within [`DecisionLog::window`] after it are only counted,
//! and when the window has passed one line says how many there were:
//!
//! ```text
//! {"level":"INFO","fields":{"message":"denied","repeated":41213,"window_ms":1000,"reason":"PersistentVolumeClaim \"data\" is invalid: ..."},"span":{"endpoint":"validate","kind":"PersistentVolumeClaim","namespace":"team","action":"denied","name":"repeated"}}
//! ```
//!
//! The summary is written by [`DecisionLog::tick`] (the server runs it every window and once more
//! at shutdown), or by the next identical decision after the window. Memory is bounded: at most
//! [`MAX_KEYS`] distinct decisions are tracked at once; past that, decisions are logged in full.
//!
//! No global lock on the request path: the keys are spread over [`SHARDS`] maps by hash, each
//! behind its own lock, and a request does O(1) work under it; ended windows are expired (a pass
//! over every key) only by the ticker, never by a request.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::Endpoint;

/// The aggregation window the server uses.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

/// Distinct decisions tracked at once.
pub const MAX_KEYS: usize = 4096;

/// Maps the keys are spread over, each with its own lock (`MAX_KEYS / SHARDS` keys each).
pub const SHARDS: usize = 16;

/// What makes two decisions identical for the log.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Key<'a> {
    pub endpoint: Endpoint,
    /// `denied` or `mutated`.
    pub action: &'static str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub dry_run: bool,
    /// The denial's `status.message`, or the mutations' reasons.
    pub message: &'a str,
}

#[derive(Debug)]
struct Tracked {
    endpoint: Endpoint,
    action: &'static str,
    kind: Box<str>,
    namespace: Box<str>,
    dry_run: bool,
    message: Box<str>,
    first: Instant,
    repeats: u64,
}

impl Tracked {
    fn is(&self, k: &Key<'_>) -> bool {
        self.endpoint == k.endpoint
            && self.action == k.action
            && *self.kind == *k.kind
            && *self.namespace == *k.namespace
            && self.dry_run == k.dry_run
            && *self.message == *k.message
    }
}

/// One summary line: `repeats` identical decisions after the one logged in full.
#[derive(Debug, PartialEq, Eq)]
pub struct Repeated {
    pub endpoint: Endpoint,
    pub action: &'static str,
    pub kind: String,
    pub namespace: String,
    pub dry_run: bool,
    pub message: String,
    pub repeats: u64,
}

impl From<&Tracked> for Repeated {
    fn from(t: &Tracked) -> Repeated {
        Repeated {
            endpoint: t.endpoint,
            action: t.action,
            kind: t.kind.to_string(),
            namespace: t.namespace.to_string(),
            dry_run: t.dry_run,
            message: t.message.to_string(),
            repeats: t.repeats,
        }
    }
}

impl Repeated {
    /// Writes the summary line.
    pub fn log(&self, window: Duration) {
        let span = tracing::info_span!(
            "repeated",
            endpoint = self.endpoint.as_str(),
            kind = self.kind.as_str(),
            namespace = self.namespace.as_str(),
            action = self.action,
        );
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        span.in_scope(|| {
            // The action is the message, as on the full line.
            tracing::info!(repeated = self.repeats, window_ms, dry_run = self.dry_run, reason = %self.message, "{}", self.action);
        });
    }
}

/// What the caller does with one decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it in full (the first of its kind in the window, or not tracked).
    Log,
    /// Counted: an identical decision was logged less than a window ago.
    Counted,
}

/// The decisions seen in the current windows.
#[derive(Debug)]
pub struct DecisionLog {
    window: Duration,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<u64, Tracked>>]>,
}

impl DecisionLog {
    /// A log aggregating identical decisions within `window`; a zero window logs every one.
    pub fn new(window: Duration) -> DecisionLog {
        DecisionLog {
            window,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Tracked>> {
        // The high bits: the map itself uses the low ones.
        self.shards[(hash >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Every shard in turn (the ticker and `drain`; never a request).
    fn each_shard(&self, mut f: impl FnMut(&mut HashMap<u64, Tracked>)) {
        for s in self.shards.iter() {
            f(&mut s.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Decisions tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes one decision at `now`: whether to log it in full. A tracked decision whose window
    /// has passed is summarized (logged here) and starts a new window.
    pub fn record(&self, key: &Key<'_>, now: Instant) -> Verdict {
        if self.window.is_zero() {
            return Verdict::Log;
        }
        let hash = self.hasher.hash_one(key);
        let mut summary = None;
        let verdict = {
            // A full shard makes no room here (the ticker expires ended windows): an untracked
            // decision is logged in full.
            let mut tracked = self.shard(hash);
            let len = tracked.len();
            match tracked.entry(hash) {
                Entry::Occupied(mut e) => {
                    let t = e.get_mut();
                    if !t.is(key) {
                        // Another decision with the same hash: logged in full, never merged.
                        Verdict::Log
                    } else if now.saturating_duration_since(t.first) < self.window {
                        t.repeats += 1;
                        Verdict::Counted
                    } else {
                        if t.repeats > 0 {
                            summary = Some(Repeated::from(&*t));
                        }
                        t.repeats = 0;
                        t.first = now;
                        Verdict::Log
                    }
                }
                Entry::Vacant(e) => {
                    if len < MAX_KEYS / SHARDS {
                        e.insert(Tracked {
                            endpoint: key.endpoint,
                            action: key.action,
                            kind: key.kind.into(),
                            namespace: key.namespace.into(),
                            dry_run: key.dry_run,
                            message: key.message.into(),
                            first: now,
                            repeats: 0,
                        });
                    }
                    Verdict::Log
                }
            }
        };
        if let Some(r) = summary {
            r.log(self.window);
        }
        verdict
    }

    /// Ends the windows that have passed at `now`: returns their summaries (those with repeats)
    /// and forgets them.
    pub fn expired(&self, now: Instant) -> Vec<Repeated> {
        let mut out = Vec::new();
        self.each_shard(|tracked| out.extend(expire(tracked, now, self.window)));
        out
    }

    /// Logs the summaries of the windows that have passed.
    pub fn tick(&self, now: Instant) {
        for r in self.expired(now) {
            r.log(self.window);
        }
    }

    /// Logs every pending summary, ended or not (at shutdown).
    pub fn drain(&self) {
        let mut all: Vec<Tracked> = Vec::new();
        self.each_shard(|tracked| all.extend(tracked.drain().map(|(_, t)| t)));
        for t in all.iter().filter(|t| t.repeats > 0) {
            Repeated::from(t).log(self.window);
        }
    }

    /// Runs [`tick`](Self::tick) every window until the task is aborted, on the current runtime.
    pub fn spawn_ticker(self: &std::sync::Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.window.is_zero() {
            return None;
        }
        let log = self.clone();
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(log.window);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                log.tick(Instant::now());
            }
        }))
    }
}

fn expire(tracked: &mut HashMap<u64, Tracked>, now: Instant, window: Duration) -> Vec<Repeated> {
    let mut out = Vec::new();
    tracked.retain(|_, t| {
        let live = now.saturating_duration_since(t.first) < window;
        if !live && t.repeats > 0 {
            out.push(Repeated::from(&*t));
        }
        live
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(namespace: &'a str, message: &'a str) -> Key<'a> {
        Key {
            endpoint: Endpoint::Validate,
            action: "denied",
            kind: "PersistentVolumeClaim",
            namespace,
            dry_run: false,
            message,
        }
    }

    const W: Duration = Duration::from_secs(1);

    #[test]
    fn identical_decisions_in_a_window_are_counted_then_summarized() {
        let log = DecisionLog::new(W);
        let t0 = Instant::now();
        assert_eq!(log.record(&key("team", "m"), t0), Verdict::Log);
        for i in 1..=5 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(log.record(&key("team", "m"), at), Verdict::Counted);
        }
        // Not yet over: nothing to summarize.
        assert!(log.expired(t0 + Duration::from_millis(999)).is_empty());
        // Another decision meanwhile leaves this one's count to its own summary.
        assert_eq!(log.record(&key("other", "m"), t0 + W), Verdict::Log);
        let s = log.expired(t0 + W);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].repeats, 5);
        assert_eq!(s[0].message, "m");
        assert_eq!(s[0].namespace, "team");
        // Forgotten: the next one is logged in full again.
        assert!(log.expired(t0 + 3 * W).is_empty());
        assert_eq!(log.record(&key("team", "m"), t0 + 3 * W), Verdict::Log);
    }

    #[test]
    fn any_difference_is_another_decision() {
        let log = DecisionLog::new(W);
        let t0 = Instant::now();
        let base = key("team", "m");
        let others = [
            key("other", "m"),
            key("team", "n"),
            Key {
                endpoint: Endpoint::Mutate,
                ..base
            },
            Key {
                action: "mutated",
                ..base
            },
            Key {
                kind: "StatefulSet",
                ..base
            },
            Key {
                dry_run: true,
                ..base
            },
        ];
        assert_eq!(log.record(&base, t0), Verdict::Log);
        for k in &others {
            assert_eq!(log.record(k, t0), Verdict::Log, "{k:?}");
        }
        for k in others.iter().chain([&base]) {
            assert_eq!(log.record(k, t0), Verdict::Counted, "{k:?}");
        }
        let mut s = log.expired(t0 + W);
        assert_eq!(s.len(), 7);
        s.retain(|r| r.repeats == 1);
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn a_decision_after_its_window_starts_a_new_one() {
        let log = DecisionLog::new(W);
        let t0 = Instant::now();
        assert_eq!(log.record(&key("a", "m"), t0), Verdict::Log);
        assert_eq!(log.record(&key("a", "m"), t0), Verdict::Counted);
        // No tick ran: the next identical decision after the window is logged in full (and the
        // old window's count is summarized then).
        assert_eq!(log.record(&key("a", "m"), t0 + W), Verdict::Log);
        assert_eq!(
            log.record(&key("a", "m"), t0 + W + Duration::from_millis(1)),
            Verdict::Counted
        );
        let s = log.expired(t0 + 2 * W);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].repeats, 1, "only the new window's repeat is left");
    }

    /// Two decisions whose hashes collide are told apart by every field (a collision cannot be
    /// made with a random hasher, so `Tracked::is` is checked directly).
    #[test]
    fn a_tracked_decision_is_only_the_same_key() {
        let base = key("team", "m");
        let tracked = Tracked {
            endpoint: base.endpoint,
            action: base.action,
            kind: base.kind.into(),
            namespace: base.namespace.into(),
            dry_run: base.dry_run,
            message: base.message.into(),
            first: Instant::now(),
            repeats: 0,
        };
        assert!(tracked.is(&base));
        let others = [
            Key {
                endpoint: Endpoint::Mutate,
                ..base
            },
            Key {
                action: "mutated",
                ..base
            },
            Key {
                kind: "StatefulSet",
                ..base
            },
            key("other", "m"),
            Key {
                dry_run: true,
                ..base
            },
            key("team", "n"),
        ];
        for k in &others {
            assert!(!tracked.is(k), "{k:?}");
        }
    }

    #[test]
    fn a_zero_window_logs_everything() {
        let log = DecisionLog::new(Duration::ZERO);
        assert_eq!(log.window(), Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(log.record(&key("a", "m"), t0), Verdict::Log);
        }
        assert!(log.expired(t0 + W).is_empty());
    }

    #[test]
    fn tracking_is_bounded() {
        let log = DecisionLog::new(W);
        let t0 = Instant::now();
        let names: Vec<String> = (0..4 * MAX_KEYS).map(|i| format!("ns-{i}")).collect();
        let mut tracked = Vec::new();
        let mut untracked = Vec::new();
        for n in &names {
            assert_eq!(log.record(&key(n, "m"), t0), Verdict::Log);
            // Counted again only when tracked.
            match log.record(&key(n, "m"), t0) {
                Verdict::Counted => tracked.push(n),
                Verdict::Log => untracked.push(n),
            }
        }
        assert_eq!(log.len(), MAX_KEYS);
        assert_eq!(tracked.len(), MAX_KEYS);
        // Untracked ones stay logged in full; tracked ones are counted.
        assert_eq!(log.record(&key(untracked[0], "m"), t0), Verdict::Log);
        assert_eq!(log.record(&key(tracked[0], "m"), t0), Verdict::Counted);
        // A request never expires anything: the ticker does, and then room is made.
        assert_eq!(log.record(&key(untracked[1], "m"), t0 + W), Verdict::Log);
        assert_eq!(log.len(), MAX_KEYS);
        assert_eq!(log.expired(t0 + W).len(), MAX_KEYS);
        assert_eq!(log.record(&key("late", "m"), t0 + W), Verdict::Log);
        assert_eq!(log.record(&key("late", "m"), t0 + W), Verdict::Counted);
        assert_eq!(log.len(), 1);
    }
}
