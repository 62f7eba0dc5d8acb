//! The budget of request-body bytes held in memory at once, across all connections, and the
//! body reader that streams a request body against it. Without it memory grew with connections
//! × body size (4,096 × 8 MiB): 60 connections holding most of an 8 MiB body each drove the
//! process to ~500 MiB.
//!
//! A body is copied chunk by chunk into a buffer of its own that grows eightfold (capped at the
//! declared `Content-Length`), and every growth first takes permits for the new bytes from the
//! budget: what the budget counts is the capacity the reader holds, and hyper is not polled
//! for more while permits are missing, so an unread body stays in the sender's socket
//! (backpressure) instead of the heap. The permits are held until the request's answer is built.
//!
//! The budget has two pools. The *reserve* (a quarter of the budget) serves only bodies of at
//! most [`SMALL_BODY_BYTES`], which is what real reviews are, so they are still answered while
//! large bodies hold the rest; a body that declares a larger `Content-Length` never touches it,
//! and a body without one that outgrows the limit must move to the *general* pool at once or is
//! refused, so large bodies cannot camp in the reserve. A body that does not fit waits at most
//! [`BUDGET_WAIT`] (and never past its read deadline), then gets [`BodyError::Budget`] (503).
//! The whole body must arrive within the body-read timeout ([`BodyError::Timeout`], 408), so a
//! connection that trickles or holds cannot pin its bytes for long.
//!
//! This module owns the accounting only: it decides nothing and answers nothing (the routes map
//! its errors to HTTP answers).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Bodies up to this size may use the reserve: real AdmissionReviews are a few KiB, a few hundred
/// KiB at the most.
pub const SMALL_BODY_BYTES: usize = 256 << 10;

/// The budget when neither the flag nor a container memory limit sets one: an eighth of the
/// chart's 128 MiB memory limit.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 16 << 20;

/// The default budget is this fraction (1/N) of the container's memory limit.
pub const MEMORY_LIMIT_FRACTION: u64 = 8;

/// The most a body waits for room in the budget before it is refused with 503.
pub const BUDGET_WAIT: Duration = Duration::from_millis(250);

/// Default time for a whole request body to arrive, from the end of its headers.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The first allocation of a body without a `Content-Length` (then doubled as it grows).
const FIRST_CAPACITY: usize = 16 << 10;

/// Growth factor of a body's buffer.
const GROWTH: usize = 8;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error(
        "the body budget of {budget} bytes leaves {general} bytes for large bodies, less than \
         --max-body-bytes {max_body}: raise --body-budget-bytes to at least {needed}"
    )]
    TooSmall {
        budget: usize,
        general: usize,
        max_body: usize,
        needed: usize,
    },
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than the limit of {limit} bytes (--max-body-bytes)")]
    TooLarge { limit: usize },
    #[error(
        "request body budget exhausted: {budget} bytes of request bodies are already in memory \
         (--body-budget-bytes); retry later"
    )]
    Budget { budget: usize },
    #[error("request body not received within {timeout:?} (--body-read-timeout)")]
    Timeout { timeout: Duration },
    #[error("failed to read the request body: {0}")]
    Read(String),
}

/// The budget of request-body bytes in memory, shared by every request.
#[derive(Debug)]
pub struct BodyBudget {
    general: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes; a quarter is reserved for bodies of at most
    /// [`SMALL_BODY_BYTES`]. The rest must hold a body of `max_body` bytes.
    pub fn new(total: usize, max_body: usize) -> Result<BodyBudget, BudgetError> {
        let reserve = total / 4;
        let general = total - reserve;
        if general < max_body {
            return Err(BudgetError::TooSmall {
                budget: total,
                general,
                max_body,
                needed: Self::minimum(max_body),
            });
        }
        Ok(BodyBudget {
            general: Arc::new(Semaphore::new(general.min(Semaphore::MAX_PERMITS))),
            reserve: Arc::new(Semaphore::new(reserve.min(Semaphore::MAX_PERMITS))),
            total,
        })
    }

    /// The smallest budget whose general pool holds a body of `max_body` bytes.
    pub fn minimum(max_body: usize) -> usize {
        let mut total = max_body.saturating_mul(4) / 3;
        while total - total / 4 < max_body && total < usize::MAX {
            total += 1;
        }
        total
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Takes `n` bytes of the general pool, as large bodies in flight would.
    #[cfg(test)]
    pub(crate) fn hold_general_for_tests(&self, n: usize) -> OwnedSemaphorePermit {
        self.general
            .clone()
            .try_acquire_many_owned(u32::try_from(n).unwrap())
            .unwrap()
    }

    /// Bytes of bodies in memory now (both pools).
    pub fn in_use(&self) -> usize {
        let reserve = self.total / 4;
        (self.total - reserve - self.general.available_permits())
            + (reserve - self.reserve.available_permits())
    }
}

/// The default budget: [`MEMORY_LIMIT_FRACTION`] of the container's memory limit when there is
/// one, else [`DEFAULT_BODY_BUDGET_BYTES`]; never below what a body of `max_body` bytes needs.
pub fn default_budget(memory_limit: Option<u64>, max_body: usize) -> usize {
    let derived = memory_limit
        .map(|l| usize::try_from(l / MEMORY_LIMIT_FRACTION).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_BODY_BUDGET_BYTES);
    derived.max(BodyBudget::minimum(max_body))
}

/// The memory limit of this process's cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), if one is set.
pub fn cgroup_memory_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    v2.or_else(v1).as_deref().and_then(parse_memory_limit)
}

/// Parses a cgroup memory limit file: a number of bytes, or `max` (none). cgroup v1 writes a
/// huge number (about 2^63) for no limit: anything from 2^60 on is taken as none.
pub fn parse_memory_limit(s: &str) -> Option<u64> {
    let n: u64 = s.trim().parse().ok()?;
    (n > 0 && n < 1 << 60).then_some(n)
}

/// Permits held by one body: what it took from each pool.
struct Held {
    general: Option<OwnedSemaphorePermit>,
    reserve: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn count(p: &Option<OwnedSemaphorePermit>) -> usize {
        p.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn add(slot: &mut Option<OwnedSemaphorePermit>, p: OwnedSemaphorePermit) {
        match slot {
            Some(held) => held.merge(p),
            None => *slot = Some(p),
        }
    }
}

/// A body read within the budget: the bytes and the permits they hold (released on drop).
pub struct BudgetedBody {
    bytes: Vec<u8>,
    _held: Held,
}

impl std::fmt::Debug for BudgetedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetedBody")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for BudgetedBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// How one body is read.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Largest body.
    pub max_body: usize,
    /// The declared `Content-Length`, if any (already checked against `max_body`).
    pub content_length: Option<usize>,
    /// The whole body must have arrived by then.
    pub deadline: Instant,
    /// Reported in the timeout error.
    pub timeout: Duration,
}

/// Reads `body` into memory within `budget` and `limits` (see the module doc).
pub async fn read_body(
    body: Body,
    budget: &BodyBudget,
    limits: ReadLimits,
) -> Result<BudgetedBody, BodyError> {
    match tokio::time::timeout_at(limits.deadline, read(body, budget, limits)).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::Timeout {
            timeout: limits.timeout,
        }),
    }
}

async fn read(
    mut body: Body,
    budget: &BodyBudget,
    limits: ReadLimits,
) -> Result<BudgetedBody, BodyError> {
    let mut held = Held {
        general: None,
        reserve: None,
    };
    let mut bytes: Vec<u8> = Vec::new();
    // The capacity of `bytes`, which the budget counts.
    let mut accounted = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let needed = bytes.len() + chunk.len();
        if needed > limits.max_body {
            return Err(BodyError::TooLarge {
                limit: limits.max_body,
            });
        }
        if needed > accounted {
            let next = capacity_after(accounted, needed, limits);
            // A body may use the reserve while it is small, unless it declared a larger length.
            let may_reserve = next <= SMALL_BODY_BYTES
                && limits.content_length.is_none_or(|n| n <= SMALL_BODY_BYTES);
            grow(budget, &mut held, may_reserve, accounted, next, &limits).await?;
            accounted = next;
            bytes.reserve_exact(next - bytes.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(BudgetedBody { bytes, _held: held })
}

/// The capacity of a body's buffer once it holds `needed` bytes, from `capacity`: what the budget
/// counts. It grows eightfold, up to the declared length: few reallocations, since each leaves a
/// freed block that the allocator returns to the system only a little later (with twofold growth
/// the heap peaked ~20 MiB higher under 200 connections streaming 8 MiB bodies). The budget counts
/// the whole capacity, so a partly received body is counted high, never low.
fn capacity_after(capacity: usize, needed: usize, limits: ReadLimits) -> usize {
    needed
        .max(capacity.saturating_mul(GROWTH))
        .max(FIRST_CAPACITY)
        .min(limits.content_length.unwrap_or(limits.max_body).max(needed))
}

/// Takes permits for a body counted at `old` bytes to be counted at `new`.
async fn grow(
    budget: &BodyBudget,
    held: &mut Held,
    may_reserve: bool,
    old: usize,
    new: usize,
    limits: &ReadLimits,
) -> Result<(), BodyError> {
    let refused = || BodyError::Budget {
        budget: budget.total,
    };
    let delta = new - old;
    let until = (Instant::now() + BUDGET_WAIT).min(limits.deadline);
    if may_reserve {
        // Either pool will do: the general one first, so the reserve stays free for when it
        // is needed.
        if let Ok(p) = budget.general.clone().try_acquire_many_owned(step(delta)?) {
            Held::add(&mut held.general, p);
            return Ok(());
        }
        if let Ok(p) = budget.reserve.clone().try_acquire_many_owned(step(delta)?) {
            Held::add(&mut held.reserve, p);
            return Ok(());
        }
        let general = budget.general.clone().acquire_many_owned(step(delta)?);
        let reserve = budget.reserve.clone().acquire_many_owned(step(delta)?);
        let got = tokio::time::timeout_at(until, async {
            tokio::select! {
                p = general => p.map(|p| Held::add(&mut held.general, p)),
                p = reserve => p.map(|p| Held::add(&mut held.reserve, p)),
            }
        })
        .await;
        return match got {
            Ok(Ok(())) => Ok(()),
            _ => Err(refused()),
        };
    }
    // A large body: all of it in the general pool. One that held reserve permits moves them
    // now or never, so that large bodies do not wait while holding the reserve.
    let from_reserve = Held::count(&held.reserve);
    if from_reserve > 0 {
        let p = budget
            .general
            .clone()
            .try_acquire_many_owned(step(delta + from_reserve)?)
            .map_err(|_| refused())?;
        Held::add(&mut held.general, p);
        held.reserve = None;
        return Ok(());
    }
    let got = tokio::time::timeout_at(
        until,
        budget.general.clone().acquire_many_owned(step(delta)?),
    )
    .await;
    match got {
        Ok(Ok(p)) => {
            Held::add(&mut held.general, p);
            Ok(())
        }
        _ => Err(refused()),
    }
}

/// Permits of one acquire (tokio counts them in a `u32`: growth steps stay far below).
fn step(n: usize) -> Result<u32, BodyError> {
    u32::try_from(n).map_err(|_| BodyError::Read(format!("a growth of {n} bytes at once")))
}

#[cfg(test)]
mod tests;
