//! Following files without a restart: one poller for everything the server re-reads (the serving
//! certificate and key, the client CA bundle, the policy file). It owns the timing, the content
//! hashes and the "report a broken file once" bookkeeping; what the files mean, and what a change
//! does, belongs to each [`Followed`] implementation (`tls`, `reload`).
//!
//! Files are polled by content hash, not by modification time or inotify: reading through the
//! paths follows symlinks, so the `..data` swap of a Secret or ConfigMap volume is seen like any
//! other change, and a file rewritten with the same bytes is no change at all.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;

/// SHA-256 over several byte strings, each length-prefixed so that moving bytes from one file to
/// the other changes the hash.
pub(crate) fn content_hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// When a change that cannot be used is reported again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// Once per distinct error message: a certificate pair being written file by file goes
    /// through several contents with the same error, and is one event.
    EachError,
    /// Once per distinct content: every edit of the policy file that is refused is counted.
    EachContent,
}

/// What reading followed files gives: their content hash (`None` when unreadable) and what they
/// parse to.
pub(crate) type Reading<V, E> = (Option<[u8; 32]>, Result<V, E>);

/// What a poller does with the files it follows.
pub(crate) trait Followed: Send + Sync + 'static {
    /// What the files become once they parse.
    type Value: Send + 'static;
    /// Why they cannot be used.
    type Error: std::fmt::Display + Send + 'static;
    const REPORT: Report;
    /// Reads and parses the files. Runs on the blocking pool.
    fn read(&self) -> Reading<Self::Value, Self::Error>;
    /// Puts a changed, parsed value into service; logs and counts it.
    fn apply(&self, value: Self::Value, metrics: &Metrics);
    /// Logs and counts a change that cannot be used (once, see [`Followed::REPORT`]).
    fn refuse(&self, error: &Self::Error, metrics: &Metrics);
    /// Whether what the value is for still exists; the poller ends when it does not.
    fn alive(&self) -> bool {
        true
    }
}

/// The last refusal reported.
#[derive(PartialEq)]
enum Refusal {
    Error(String),
    Content(Option<[u8; 32]>),
}

/// Polls `followed` every `interval` on the blocking pool, starting from the content hashed
/// `last` (what is in service). Files whose content changed are put into service once they
/// parse; a change that cannot be used yet is reported once and looked at again on the next tick.
/// Ends when `followed` is no longer alive (or when the task is aborted).
pub(crate) async fn follow<F: Followed>(
    followed: F,
    mut last: [u8; 32],
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let followed = Arc::new(followed);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // So a file that stays broken is reported once, not every tick.
    let mut refused: Option<Refusal> = None;
    loop {
        ticker.tick().await;
        if !followed.alive() {
            return;
        }
        let f = followed.clone();
        let (hash, result) = match tokio::task::spawn_blocking(move || f.read()).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        if hash == Some(last) {
            refused = None;
            continue;
        }
        match result {
            Ok(value) => {
                followed.apply(value, &metrics);
                last = hash.expect("parsed files were read");
                refused = None;
            }
            Err(e) => {
                let this = match F::REPORT {
                    Report::EachError => Refusal::Error(e.to_string()),
                    Report::EachContent => Refusal::Content(hash),
                };
                if refused.as_ref() != Some(&this) {
                    followed.refuse(&e, &metrics);
                    refused = Some(this);
                }
            }
        }
    }
}
