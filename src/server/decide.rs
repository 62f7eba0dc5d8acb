//! Where reviews are decided: off the async workers, on tokio's blocking threads, at most a
//! fixed number at once ([`DecidePool`]). Decoding megabytes and judging thousands of claims take
//! milliseconds of CPU; on the async workers they would stall every connection of that worker,
//! `/healthz` included. Two lanes: bodies over [`LARGE_BODY_BYTES`] queue among themselves for
//! [`LARGE_PERMITS`] threads, smaller ones for [`SMALL_PERMITS`], so a burst of hostile 8 MiB
//! reviews never holds up a small one. Each decision is bounded by its work budget
//! ([`crate::policy::limits`]); waiting for a thread counts against the request's deadline.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Bodies over this size decide in the large lane.
pub const LARGE_BODY_BYTES: usize = 256 << 10;
/// Decisions of large bodies at once.
pub const LARGE_PERMITS: usize = 2;
/// Decisions of small bodies at once.
pub const SMALL_PERMITS: usize = 8;

/// The decision ran and panicked: answered 500 and counted.
#[derive(Debug, thiserror::Error)]
#[error("internal error: the decision of this review failed ({0}); see the webhook's log")]
pub struct Panicked(String);

/// The bounded pool of decisions.
#[derive(Debug)]
pub struct DecidePool {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl Default for DecidePool {
    fn default() -> Self {
        DecidePool::new(SMALL_PERMITS, LARGE_PERMITS)
    }
}

impl DecidePool {
    pub fn new(small: usize, large: usize) -> DecidePool {
        DecidePool {
            small: Arc::new(Semaphore::new(small.max(1))),
            large: Arc::new(Semaphore::new(large.max(1))),
        }
    }

    /// Runs `f` on a blocking thread once a permit of its lane is free. The permit is held by
    /// the thread until `f` returns, even if the caller stops waiting (its deadline passed):
    /// the pool never runs more than its permits, and `f` ends by its own work budget.
    pub async fn run<T, F>(&self, body_len: usize, f: F) -> Result<T, Panicked>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let lane = if body_len > LARGE_BODY_BYTES {
            &self.large
        } else {
            &self.small
        };
        let permit = lane
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Panicked(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| {
            let what = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned())
            } else {
                e.to_string()
            };
            Panicked(what)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_is_an_error_and_the_permit_returns() {
        let pool = DecidePool::new(1, 1);
        let e = pool
            .run(10, || -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        assert_eq!(pool.run(10, || 7).await.unwrap(), 7);
    }

    /// The lanes are bounded and separate: large decisions held on their threads never hold up
    /// a small one (it would wait for ever; the 10 s bound only ends a failing test).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_are_bounded_and_separate() {
        let pool = Arc::new(DecidePool::new(1, 1));
        let release = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut large = Vec::new();
        for _ in 0..3 {
            let (pool, release) = (pool.clone(), release.clone());
            let (running, most) = (running.clone(), most.clone());
            large.push(tokio::spawn(async move {
                pool.run(LARGE_BODY_BYTES + 1, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        while running.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let small = tokio::time::timeout(Duration::from_secs(10), pool.run(100, || 1)).await;
        assert_eq!(small.expect("the small lane is free").unwrap(), 1);
        release.store(true, Ordering::SeqCst);
        for t in large {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "one large decision at a time"
        );
    }
}
