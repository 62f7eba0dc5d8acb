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

fn lines_of(sink: &Sink) -> Vec<serde_json::Value> {
    String::from_utf8(sink.0.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn subscriber_into(sink: &Sink) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let writer = sink.clone();
    log_subscriber(LogFormat::Json, "info", false, move || writer.clone())
}

const KEY: Key<'static> = Key {
    endpoint: Endpoint::Validate,
    action: "denied",
    kind: "PersistentVolumeClaim",
    namespace: "team",
    dry_run: false,
    message: "no",
};

/// Without a tick, the next identical decision after the window writes the old window's count;
/// at shutdown, `drain` writes every pending count, and nothing for a decision never repeated.
#[test]
fn counts_are_written_by_the_next_window_and_by_drain() {
    let sink = Sink::default();
    let w = Duration::from_secs(1);
    let log = DecisionLog::new(w);
    let t0 = Instant::now();
    let once = Key {
        namespace: "once",
        ..KEY
    };
    tracing::subscriber::with_default(subscriber_into(&sink), || {
        for _ in 0..3 {
            log.record(&KEY, t0);
        }
        log.record(&once, t0);
        // A new window: the old one's 2 repeats are written now; the one never repeated has
        // nothing to write.
        log.record(&once, t0 + w);
        log.record(&KEY, t0 + w);
        log.record(&KEY, t0 + w);
        log.record(&KEY, t0 + w);
        log.record(&KEY, t0 + w);
    });
    let lines = lines_of(&sink);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["repeated"], 2);
    tracing::subscriber::with_default(subscriber_into(&sink), || log.drain());
    let lines = lines_of(&sink);
    assert_eq!(
        lines.len(),
        2,
        "only the repeated decision is summarized: {lines:?}"
    );
    assert_eq!(lines[1]["fields"]["repeated"], 3);
    assert_eq!(lines[1]["span"]["namespace"], "team");
    // Drained: nothing is left to write.
    tracing::subscriber::with_default(subscriber_into(&sink), || log.drain());
    assert_eq!(lines_of(&sink).len(), 2);
}

/// The server's ticker writes a window's count once the window has passed; a zero window has
/// no ticker (every decision is logged in full).
#[test]
fn the_ticker_writes_counts_after_the_window() {
    let sink = Sink::default();
    let _default = tracing::subscriber::set_default(subscriber_into(&sink));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(
            Arc::new(DecisionLog::new(Duration::ZERO))
                .spawn_ticker()
                .is_none()
        );
        let log = Arc::new(DecisionLog::new(Duration::from_millis(50)));
        let ticker = log.spawn_ticker().expect("a ticker");
        let now = Instant::now();
        log.record(&KEY, now);
        log.record(&KEY, now);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines_of(&sink).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the ticker never wrote the count"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ticker.abort();
    });
    let lines = lines_of(&sink);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["repeated"], 1);
    assert_eq!(lines[0]["fields"]["window_ms"], 50);
}
