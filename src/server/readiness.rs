//! Readiness: named conditions that must all hold before `/readyz` answers 200, and the shutdown
//! switch that turns it false for good.
//!
//! Each part of the process that gates readiness takes a [`Condition`] once, by name
//! (`serve` registers "policy loaded" and "listener bound"; the cluster module adds
//! "cluster synced"), and sets it when it can serve. The verdict is also exported as the
//! `storage_policy_webhook_ready` gauge ([`Readiness::export`]), so alerts can count ready
//! replicas from the webhook's own metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::gauge::Gauge;

/// Shared readiness state; clones see the same conditions.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    conditions: Mutex<Vec<(String, bool)>>,
    shutting_down: AtomicBool,
    /// Follows the verdict: 1 ready, 0 not.
    gauge: OnceLock<Gauge>,
}

impl Inner {
    fn ready(&self, conditions: &[(String, bool)]) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && conditions.iter().all(|(_, met)| *met)
    }

    /// Sets the exported gauge from the conditions (held locked by the caller).
    fn publish(&self, conditions: &[(String, bool)]) {
        if let Some(g) = self.gauge.get() {
            g.set(i64::from(self.ready(conditions)));
        }
    }

    fn publish_now(&self) {
        let c = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
        self.publish(&c);
    }
}

/// One named condition, initially not met. Cheap to clone and send to a task.
#[derive(Clone, Debug)]
pub struct Condition {
    inner: Arc<Inner>,
    index: usize,
}

/// A readiness answer: each condition and whether the process is shutting down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub ready: bool,
    pub conditions: Vec<(String, bool)>,
    pub shutting_down: bool,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Registers a condition readiness waits for; it starts unmet.
    pub fn condition(&self, name: impl Into<String>) -> Condition {
        let mut c = self
            .inner
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.push((name.into(), false));
        self.inner.publish(&c);
        Condition {
            inner: self.inner.clone(),
            index: c.len() - 1,
        }
    }

    /// Turns readiness false for the rest of the process's life (first shutdown signal).
    pub fn shut_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.publish_now();
    }

    /// Keeps `gauge` at 1 while ready and 0 otherwise, from now on. Only the first call counts.
    pub fn export(&self, gauge: Gauge) {
        let _ = self.inner.gauge.set(gauge);
        self.inner.publish_now();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Ready: not shutting down, and every registered condition met.
    pub fn is_ready(&self) -> bool {
        self.report().ready
    }

    pub fn report(&self) -> Status {
        let conditions = self
            .inner
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let shutting_down = self.is_shutting_down();
        Status {
            ready: self.inner.ready(&conditions),
            conditions,
            shutting_down,
        }
    }
}

impl Condition {
    /// Marks the condition met (`true`) or not (`false`); may flip back and forth.
    pub fn set(&self, met: bool) {
        let mut c = self
            .inner
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c[self.index].1 = met;
        self.inner.publish(&c);
    }

    pub fn name(&self) -> String {
        self.inner
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner())[self.index]
            .0
            .clone()
    }
}

impl Status {
    /// The `/readyz` body: one line per condition, then the verdict.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (name, met) in &self.conditions {
            s.push_str(if *met { "[+] " } else { "[-] " });
            s.push_str(name);
            s.push('\n');
        }
        if self.shutting_down {
            s.push_str("[-] shutting down\n");
        }
        s.push_str(if self.ready { "ready\n" } else { "not ready\n" });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds() {
        let r = Readiness::new();
        assert!(r.is_ready(), "no conditions: nothing to wait for");
        let policy = r.condition("policy loaded");
        let cluster = r.condition("cluster synced");
        assert!(!r.is_ready());
        policy.set(true);
        assert!(!r.is_ready());
        cluster.set(true);
        assert!(r.is_ready());
        assert_eq!(cluster.name(), "cluster synced");
        cluster.set(false);
        assert!(!r.is_ready());
        assert_eq!(
            r.report().to_text(),
            "[+] policy loaded\n[-] cluster synced\nnot ready\n"
        );
    }

    #[test]
    fn the_exported_gauge_follows_the_verdict() {
        let r = Readiness::new();
        let policy = r.condition("policy loaded");
        let gauge = Gauge::default();
        r.export(gauge.clone());
        assert_eq!(gauge.get(), 0);
        policy.set(true);
        assert_eq!(gauge.get(), 1);
        let cluster = r.condition("cluster synced");
        assert_eq!(gauge.get(), 0, "a new condition starts unmet");
        cluster.set(true);
        assert_eq!(gauge.get(), 1);
        r.shut_down();
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn shutdown_is_final() {
        let r = Readiness::new();
        r.condition("listener bound").set(true);
        assert!(r.is_ready());
        r.shut_down();
        assert!(!r.is_ready());
        assert!(r.report().to_text().contains("shutting down"));
    }
}
