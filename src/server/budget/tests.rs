//! The budget's accounting: what bodies take from each pool, waiting, refusing, timing out,
//! and releasing.

use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::time::Instant;

use super::*;

const MIB: usize = 1 << 20;

fn limits(max_body: usize, content_length: Option<usize>, timeout: Duration) -> ReadLimits {
    ReadLimits {
        max_body,
        content_length,
        deadline: Instant::now() + timeout,
        timeout,
    }
}

/// A body of `len` bytes sent in chunks of 64 KiB.
fn body(len: usize) -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..len)
        .step_by(64 << 10)
        .map(|at| Ok(Bytes::from(vec![b' '; (len - at).min(64 << 10)])))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

/// `len` bytes, then a body that never ends.
fn held_body(len: usize) -> Body {
    use futures::StreamExt as _;
    let first = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(vec![b' '; len]))]);
    Body::from_stream(first.chain(futures::stream::pending()))
}

#[tokio::test]
async fn a_body_is_read_whole_and_its_permits_return_when_dropped() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let read = read_body(
        body(3 * MIB + 5),
        &b,
        limits(8 * MIB, Some(3 * MIB + 5), Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(read.len(), 3 * MIB + 5);
    assert!(read.iter().all(|&c| c == b' '));
    // The declared length caps the buffer: exactly the body is held.
    assert_eq!(b.in_use(), 3 * MIB + 5);
    drop(read);
    assert_eq!(b.in_use(), 0);
}

#[tokio::test]
async fn a_body_without_a_length_holds_its_buffer_capacity() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let read = read_body(
        body(MIB + 1),
        &b,
        limits(8 * MIB, None, Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(read.len(), MIB + 1);
    let held = b.in_use();
    assert!(
        (MIB + 1..=8 * MIB).contains(&held),
        "eightfold growth holds at most eight times the body: {held}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_while_streaming() {
    let b = BodyBudget::new(16 * MIB, MIB).unwrap();
    let e = read_body(
        body(MIB + 1),
        &b,
        limits(MIB, None, Duration::from_secs(10)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, BodyError::TooLarge { limit } if limit == MIB),
        "{e}"
    );
    assert_eq!(b.in_use(), 0);
}

#[tokio::test]
async fn a_large_body_that_does_not_fit_is_refused_after_the_wait_and_holds_nothing() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    // 12 MiB of general pool.
    let t = Duration::from_secs(30);
    let hold = |n| {
        let b = &b;
        async move { read_body(held_body(n), b, limits(8 * MIB, Some(8 * MIB), t)).await }
    };
    tokio::select! {
        _ = hold(8 * MIB - 1) => panic!("a held body never ends"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    // The reader was dropped (its connection closed): its permits came back.
    assert_eq!(b.in_use(), 0);

    let general = b
        .general
        .clone()
        .try_acquire_many_owned(12 * MIB as u32)
        .unwrap();
    let started = std::time::Instant::now();
    let e = read_body(body(MIB), &b, limits(8 * MIB, Some(MIB), t))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(e, BodyError::Budget { budget } if budget == 16 * MIB),
        "{e}"
    );
    assert!(e.to_string().contains("--body-budget-bytes"), "{e}");
    assert!(
        waited >= BUDGET_WAIT && waited < BUDGET_WAIT * 5,
        "waited {waited:?}"
    );
    assert_eq!(b.in_use(), 12 * MIB, "the refused body holds nothing");
    drop(general);
}

#[tokio::test]
async fn a_large_body_waits_for_room_and_gets_it_when_freed() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let general = b
        .general
        .clone()
        .try_acquire_many_owned(12 * MIB as u32)
        .unwrap();
    let freer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(general);
    });
    let read = read_body(
        body(MIB),
        &b,
        limits(8 * MIB, Some(MIB), Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(read.len(), MIB);
    freer.await.unwrap();
}

#[tokio::test]
async fn small_bodies_are_read_from_the_reserve_while_large_ones_hold_the_rest() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let _general = b
        .general
        .clone()
        .try_acquire_many_owned(12 * MIB as u32)
        .unwrap();
    let t = Duration::from_secs(10);
    // A real review (4 KiB), with and without a declared length: at once.
    for cl in [Some(4096), None] {
        let started = std::time::Instant::now();
        let read = read_body(body(4096), &b, limits(8 * MIB, cl, t))
            .await
            .unwrap();
        assert_eq!(read.len(), 4096);
        assert!(started.elapsed() < BUDGET_WAIT, "{:?}", started.elapsed());
    }
    // The reserve is a quarter of the budget: 16 bodies of 256 KiB fit in it together.
    let mut held = Vec::new();
    for _ in 0..16 {
        let r = read_body(
            body(SMALL_BODY_BYTES),
            &b,
            limits(8 * MIB, Some(SMALL_BODY_BYTES), t),
        )
        .await
        .unwrap();
        held.push(r);
    }
    assert_eq!(b.in_use(), 16 * MIB);
    drop(held);
    assert_eq!(b.in_use(), 12 * MIB);
}

#[tokio::test]
async fn a_body_declaring_a_large_length_never_takes_the_reserve() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let _general = b
        .general
        .clone()
        .try_acquire_many_owned(12 * MIB as u32)
        .unwrap();
    let e = read_body(
        body(4096),
        &b,
        limits(8 * MIB, Some(SMALL_BODY_BYTES + 1), Duration::from_secs(10)),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BodyError::Budget { .. }), "{e}");
}

#[tokio::test]
async fn a_body_without_a_length_outgrowing_the_reserve_moves_at_once_or_is_refused() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let general = b
        .general
        .clone()
        .try_acquire_many_owned(12 * MIB as u32)
        .unwrap();
    let t = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let e = read_body(body(SMALL_BODY_BYTES + 1), &b, limits(8 * MIB, None, t))
        .await
        .unwrap_err();
    assert!(matches!(e, BodyError::Budget { .. }), "{e}");
    assert!(
        started.elapsed() < BUDGET_WAIT,
        "refused without waiting while holding the reserve: {:?}",
        started.elapsed()
    );
    assert_eq!(b.in_use(), 12 * MIB);
    // Its first bytes in the reserve (the general pool is full), then room in the general pool
    // by the time it outgrows the reserve: it moves there, nothing stays in the reserve.
    use futures::StreamExt as _;
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1024]))]);
    let rest = futures::stream::once(async move {
        drop(general);
        Ok(Bytes::from(vec![b' '; SMALL_BODY_BYTES]))
    });
    let read = read_body(
        Body::from_stream(first.chain(rest)),
        &b,
        limits(8 * MIB, None, t),
    )
    .await
    .unwrap();
    assert_eq!(read.len(), SMALL_BODY_BYTES + 1024);
    assert_eq!(
        b.reserve.available_permits(),
        4 * MIB,
        "the reserve is free"
    );
    assert!(b.in_use() > SMALL_BODY_BYTES, "{}", b.in_use());
}

#[tokio::test]
async fn a_held_body_times_out_and_releases_its_bytes() {
    let b = BodyBudget::new(16 * MIB, 8 * MIB).unwrap();
    let t = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let e = read_body(held_body(2 * MIB), &b, limits(8 * MIB, Some(8 * MIB), t))
        .await
        .unwrap_err();
    assert!(matches!(e, BodyError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("--body-read-timeout"), "{e}");
    assert!(started.elapsed() >= t);
    assert_eq!(b.in_use(), 0);
}

#[test]
fn a_budget_too_small_for_the_largest_body_is_refused_with_the_minimum() {
    let e = BodyBudget::new(8 * MIB, 8 * MIB).unwrap_err();
    let BudgetError::TooSmall { needed, .. } = e.clone();
    assert!(e.to_string().contains("--body-budget-bytes"), "{e}");
    assert!(BodyBudget::new(needed, 8 * MIB).is_ok());
    assert!(BodyBudget::new(needed - 1, 8 * MIB).is_err());
}

#[test]
fn the_default_budget_is_an_eighth_of_the_memory_limit() {
    assert_eq!(default_budget(Some(128 << 20), 8 * MIB), 16 * MIB);
    assert_eq!(default_budget(Some(1 << 30), 8 * MIB), 128 * MIB);
    assert_eq!(default_budget(None, 8 * MIB), DEFAULT_BODY_BUDGET_BYTES);
    // Never below what the largest body needs.
    assert_eq!(
        default_budget(Some(32 << 20), 8 * MIB),
        BodyBudget::minimum(8 * MIB)
    );
}

#[test]
fn cgroup_limits_parse() {
    assert_eq!(parse_memory_limit("134217728\n"), Some(128 << 20));
    assert_eq!(parse_memory_limit("max\n"), None);
    assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
    assert_eq!(parse_memory_limit("0"), None);
    assert_eq!(parse_memory_limit(""), None);
}
