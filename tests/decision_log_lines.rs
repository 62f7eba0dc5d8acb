//! Log lines through the production JSON subscriber: the summary lines of repeated decisions
//! (`server::decision_log`) and the buffered writer (`server::log_buffer`). A test binary of its
//! own: `tracing` caches whether a call site is enabled process-wide, and unit tests running
//! beside these with other subscribers (or none) would race that cache.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage_policy_webhook::cli::serve::{LogFormat, log_subscriber};
use storage_policy_webhook::policy::Endpoint;
use storage_policy_webhook::server::decision_log::{DecisionLog, Key};
use storage_policy_webhook::server::log_buffer::LogBuffer;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The action is the message, the count, the window and the reason are fields, the key's
/// endpoint, kind, namespace and action are in the span.
#[test]
fn a_summary_is_one_json_line_with_the_count() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = log_subscriber(LogFormat::Json, "info", false, move || writer.clone());
    let window = Duration::from_secs(1);
    let log = DecisionLog::new(window);
    assert_eq!(log.window(), window);
    let t0 = Instant::now();
    let denied = Key {
        endpoint: Endpoint::Validate,
        action: "denied",
        kind: "PersistentVolumeClaim",
        namespace: "team",
        dry_run: false,
        message: "no",
    };
    let mutated = Key {
        endpoint: Endpoint::Mutate,
        action: "mutated",
        namespace: "apps",
        message: "set class",
        ..denied
    };
    tracing::subscriber::with_default(subscriber, || {
        for k in [denied, mutated] {
            for _ in 0..3 {
                log.record(&k, t0);
            }
        }
        log.tick(t0 + window);
    });
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|l| l["fields"]["message"].as_str().unwrap().to_owned());
    assert_eq!(lines.len(), 2, "{text}");
    let (denied, mutated) = (&lines[0], &lines[1]);
    assert_eq!(denied["fields"]["message"], "denied", "{text}");
    assert_eq!(denied["fields"]["repeated"], 2);
    assert_eq!(denied["fields"]["window_ms"], 1000);
    assert_eq!(denied["fields"]["reason"], "no");
    assert_eq!(denied["span"]["namespace"], "team");
    assert_eq!(denied["span"]["endpoint"], "validate");
    assert_eq!(denied["span"]["kind"], "PersistentVolumeClaim");
    assert_eq!(mutated["fields"]["message"], "mutated", "{text}");
    assert_eq!(mutated["fields"]["repeated"], 2);
    assert_eq!(mutated["fields"]["reason"], "set class");
    assert_eq!(mutated["span"]["action"], "mutated");
    assert_eq!(mutated["span"]["endpoint"], "mutate");
}

/// Lines written through the subscriber wait in the buffer, and dropping the guard writes them.
#[test]
fn tracing_lines_go_through_the_buffer() {
    let sink = Sink::default();
    let (buf, guard) = LogBuffer::new(sink.clone(), Duration::from_secs(3600), 1 << 20).unwrap();
    let subscriber = log_subscriber(LogFormat::Json, "info", false, buf);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(rule = "accessModes", "denied");
    });
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "nothing written before a flush"
    );
    drop(guard);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["fields"]["message"], "denied");
    assert_eq!(line["fields"]["rule"], "accessModes");
}
