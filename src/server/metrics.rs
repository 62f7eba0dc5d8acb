//! Prometheus metrics of the server (prometheus-client): requests, decisions, latency, TLS and
//! policy reloads, connections. Labels are low-cardinality only (endpoint, outcome, rule, action,
//! kind); never object or namespace names.
//!
//! One [`Registry`] per process, made by [`new_registry`] in `serve`. Other modules (the cluster
//! watches) register their own metrics into it through `&mut Registry` before the registry is
//! frozen behind an `Arc` and handed to the admin server.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::admission::{Answer, Endpoint};
use crate::policy::Finding;

/// The prefix of every metric name.
pub const PREFIX: &str = "storage_policy_webhook";

/// Request latency buckets in seconds: fine below a millisecond, where answers normally fall.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// The process-wide registry; every metric name gets the `storage_policy_webhook_` prefix.
/// Modules add theirs with `registry.sub_registry_with_prefix("cluster")` or `register`.
pub fn new_registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// How a request ended, from the point of view of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// Answered with `allowed: true` (patched or not).
    Allowed,
    /// Answered with `allowed: false`.
    Denied,
    /// Not answered: the server failed (encoding), the deadline or the body-read timeout passed,
    /// or the body budget was exhausted.
    Error,
    /// Refused as bad input: malformed JSON, no request, body too large.
    BadRequest,
}

impl RequestOutcome {
    pub const ALL: [RequestOutcome; 4] = [
        RequestOutcome::Allowed,
        RequestOutcome::Denied,
        RequestOutcome::Error,
        RequestOutcome::BadRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Allowed => "allowed",
            RequestOutcome::Denied => "denied",
            RequestOutcome::Error => "error",
            RequestOutcome::BadRequest => "bad_request",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    rule: &'static str,
    action: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The server's metrics; cheap to share (`Arc`), each field is itself shared.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    /// The request counters and latency histograms of each endpoint and outcome, resolved once:
    /// the request path indexes an array instead of hashing labels under the family's lock.
    /// (Each is a handle on the series the family exports.)
    requests_by: [[Counter; 4]; 2],
    duration_by: [Histogram; 2],
    /// Reviews answered with part of the object not judged (work budget or caps), by endpoint.
    unjudged_by: [Counter; 2],
    /// Decisions that panicked (answered 500), by endpoint.
    panics_by: [Counter; 2],
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
    pub tls_handshake_failures: Counter,
    /// notAfter of the certificate being served, Unix seconds (0 until known).
    pub tls_certificate_expiry: Gauge,
    pub policy_reloads: Counter,
    pub policy_reload_failures: Counter,
    pub open_connections: Gauge,
    /// 1 while `/readyz` answers 200 (kept by [`super::readiness::Readiness::export`]).
    pub ready: Gauge,
}

impl Metrics {
    /// Creates the server's metrics and registers them.
    pub fn register(registry: &mut Registry) -> Arc<Metrics> {
        let requests: Family<RequestLabels, Counter> = Family::default();
        let duration: Family<EndpointLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let requests_by = Endpoint::ALL.map(|endpoint| {
            RequestOutcome::ALL.map(|outcome| {
                requests
                    .get_or_create(&RequestLabels {
                        endpoint: endpoint.as_str(),
                        outcome: outcome.as_str(),
                    })
                    .clone()
            })
        });
        let duration_by = Endpoint::ALL.map(|endpoint| {
            duration
                .get_or_create(&EndpointLabels {
                    endpoint: endpoint.as_str(),
                })
                .clone()
        });
        let unjudged: Family<EndpointLabels, Counter> = Family::default();
        let panics: Family<EndpointLabels, Counter> = Family::default();
        let by_endpoint = |f: &Family<EndpointLabels, Counter>| {
            Endpoint::ALL.map(|endpoint| {
                f.get_or_create(&EndpointLabels {
                    endpoint: endpoint.as_str(),
                })
                .clone()
            })
        };
        let (unjudged_by, panics_by) = (by_endpoint(&unjudged), by_endpoint(&panics));
        registry.register(
            "reviews_unjudged",
            "Reviews answered before all of the object was judged (the work budget or a cap of one review was reached; the answer's first warning says what), by endpoint",
            unjudged,
        );
        registry.register(
            "decision_panics",
            "Reviews whose decision panicked (answered 500), by endpoint",
            panics,
        );
        let m = Metrics {
            unjudged_by,
            panics_by,
            requests,
            decisions: Family::default(),
            duration,
            requests_by,
            duration_by,
            tls_reloads: Counter::default(),
            tls_reload_failures: Counter::default(),
            tls_handshake_failures: Counter::default(),
            tls_certificate_expiry: Gauge::default(),
            policy_reloads: Counter::default(),
            policy_reload_failures: Counter::default(),
            open_connections: Gauge::default(),
            ready: Gauge::default(),
        };
        registry.register(
            "requests",
            "AdmissionReview requests by endpoint and outcome (allowed, denied, error, bad_request)",
            m.requests.clone(),
        );
        registry.register(
            "decisions",
            "What the rules did, by rule, action (mutated, denied, audited, warned; rule none, action allowed when no rule acted) and object kind",
            m.decisions.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from request headers to answer, by endpoint",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "tls_reloads",
            "Rotated serving certificates and client CA bundles put into service",
            m.tls_reloads.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "Changed certificate or client CA files that could not be used (unreadable, not PEM, key mismatch)",
            m.tls_reload_failures.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        registry.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "When the serving certificate in use expires (its notAfter), in Unix time",
            Unit::Seconds,
            m.tls_certificate_expiry.clone(),
        );
        registry.register(
            "policy_reloads",
            "Changed policy files put into service",
            m.policy_reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Changed policy files refused (the previous policy keeps serving)",
            m.policy_reload_failures.clone(),
        );
        registry.register(
            "open_connections",
            "Webhook connections open now (TLS handshake included)",
            m.open_connections.clone(),
        );
        registry.register(
            "ready",
            "1 while this replica is ready to serve (what /readyz says), 0 otherwise",
            m.ready.clone(),
        );
        Arc::new(m)
    }

    /// Counts one request that ended without a review answer.
    pub fn request_failed(&self, endpoint: Endpoint, outcome: RequestOutcome, elapsed: Duration) {
        self.count(endpoint, outcome);
        self.observe(endpoint, elapsed);
    }

    fn count(&self, endpoint: Endpoint, outcome: RequestOutcome) {
        self.requests_by[endpoint as usize][outcome as usize].inc();
    }

    /// Counts one review answered before all of it was judged.
    pub fn unjudged(&self, endpoint: Endpoint) {
        self.unjudged_by[endpoint as usize].inc();
    }

    /// Counts one decision that panicked.
    pub fn decision_panicked(&self, endpoint: Endpoint) {
        self.panics_by[endpoint as usize].inc();
    }

    /// Counts one answered review and what each rule did.
    pub fn reviewed(&self, endpoint: Endpoint, outcome: &Answer, elapsed: Duration) {
        let result = if outcome.decision.allowed() {
            RequestOutcome::Allowed
        } else {
            RequestOutcome::Denied
        };
        self.count(endpoint, result);
        let kind = crate::kinds::label(&outcome.info.kind);
        if outcome.decision.findings.is_empty() {
            self.decisions
                .get_or_create(&DecisionLabels {
                    rule: "none",
                    action: "allowed",
                    kind,
                })
                .inc();
        }
        // One look-up per rule and action, not per finding (an object may have thousands).
        let mut counts: Vec<(&'static str, &'static str, u64)> = Vec::new();
        for Finding { rule, action, .. } in &outcome.decision.findings {
            let (rule, action) = (rule.as_str(), action.as_str());
            match counts
                .iter_mut()
                .find(|(r, a, _)| *r == rule && *a == action)
            {
                Some(c) => c.2 += 1,
                None => counts.push((rule, action, 1)),
            }
        }
        for (rule, action, n) in counts {
            self.decisions
                .get_or_create(&DecisionLabels { rule, action, kind })
                .inc_by(n);
        }
        self.observe(endpoint, elapsed);
    }

    fn observe(&self, endpoint: Endpoint, elapsed: Duration) {
        self.duration_by[endpoint as usize].observe(elapsed.as_secs_f64());
    }
}

/// The registry in the Prometheus/OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_units() {
        let mut reg = new_registry();
        let m = Metrics::register(&mut reg);
        m.request_failed(
            Endpoint::Validate,
            RequestOutcome::BadRequest,
            Duration::from_micros(80),
        );
        m.tls_reloads.inc();
        let text = encode(&reg);
        assert!(
            text.contains(r#"storage_policy_webhook_requests_total{endpoint="validate",outcome="bad_request"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"storage_policy_webhook_request_duration_seconds_bucket{le="0.0001",endpoint="validate"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("storage_policy_webhook_tls_reloads_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// The resolved handles count the series their labels name: each endpoint and outcome once,
    /// in a distinct amount, lands on its own line (and every series is exported from the start).
    #[test]
    fn resolved_handles_count_their_own_series() {
        let mut reg = new_registry();
        let m = Metrics::register(&mut reg);
        let before = encode(&reg);
        let mut n = 0;
        for endpoint in Endpoint::ALL {
            for outcome in RequestOutcome::ALL {
                let line = format!(
                    r#"storage_policy_webhook_requests_total{{endpoint="{}",outcome="{}"}} 0"#,
                    endpoint.as_str(),
                    outcome.as_str()
                );
                assert!(before.contains(&line), "{line} missing:\n{before}");
                n += 1;
                for _ in 0..n {
                    m.request_failed(endpoint, outcome, Duration::from_millis(3));
                }
            }
        }
        let text = encode(&reg);
        let mut n = 0;
        for endpoint in Endpoint::ALL {
            for outcome in RequestOutcome::ALL {
                n += 1;
                let line = format!(
                    r#"storage_policy_webhook_requests_total{{endpoint="{}",outcome="{}"}} {n}"#,
                    endpoint.as_str(),
                    outcome.as_str()
                );
                assert!(text.contains(&line), "{line} missing:\n{text}");
            }
            let count = if endpoint == Endpoint::Mutate { 10 } else { 26 };
            let line = format!(
                r#"storage_policy_webhook_request_duration_seconds_count{{endpoint="{}"}} {count}"#,
                endpoint.as_str()
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn unknown_kinds_are_bounded() {
        assert_eq!(
            crate::kinds::label("PersistentVolumeClaim"),
            "PersistentVolumeClaim"
        );
        assert_eq!(crate::kinds::label("SomeCustomThing"), "other");
    }
}
