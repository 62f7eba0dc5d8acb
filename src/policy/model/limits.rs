//! The bounds of one review, in one place: how much an answer may say (warnings, causes,
//! annotation text) and how much work the rules may spend judging one object ([`Budget`]).
//!
//! The engine applies the answer caps ([`crate::policy::engine::decision`]) and reports what the work bounds
//! left unjudged; the rules only count their work against the budget and stop when it says so.
//! Nothing here knows a rule. RELIABILITY.md ("Work budget") documents these numbers.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// The API server cuts each warning at 256 characters (`truncateItemRunes`) ...
pub const MAX_WARNING_CHARS: usize = 256;
/// ... and keeps at most 4,096 characters of warnings in all (`truncateAtTotalRunes`): past it,
/// it cuts every warning and drops the last ones. The webhook stays within it itself, so that
/// what it puts first is what the user sees.
pub const MAX_WARNINGS_TOTAL_CHARS: usize = 4096;
/// Warnings in one answer at most, the summary ("... and 37 more warnings") included.
pub const MAX_WARNINGS: usize = 16;
/// Field errors (`status.details.causes`) in one denial at most; the rest are summarised in the
/// message.
pub const MAX_CAUSES: usize = 64;
/// Characters of one audit annotation value at most (the API server keeps audit annotations in
/// the audit log and in memory for the request; a value of megabytes is useless there).
pub const MAX_ANNOTATION_CHARS: usize = 2048;
/// Characters of `status.message` at most (each error of it is a cause too).
pub const MAX_MESSAGE_CHARS: usize = 8192;

/// Claim templates of one object judged at most (`volumeClaimTemplates`, ephemeral volumes).
pub const MAX_TEMPLATES: usize = 32;
/// Pod volumes of one object judged at most; also the `volumeClaimTemplates` of one StatefulSet
/// read by the rules that judge each template alone (accessModes, volumeSize, unknownClass).
pub const MAX_VOLUMES: usize = 1024;
/// Node names of one PV read at most (its annotation, its node-affinity values).
pub const MAX_NODE_VALUES: usize = 10_000;
/// Distinct unknown class names given suggestions at most (each costs an edit distance against
/// the close-length classes); names past it are reported without suggestions.
pub const MAX_NAMES_JUDGED: usize = 16;
/// StatefulSet ordinals judged at most over all templates of one object.
pub const MAX_ORDINALS: usize = 10_000;
/// Units of work of one review at most: one unit is about one comparison of a claim with a PV,
/// one node name, one character pair of an edit distance. About 30 ms of one core in a release
/// build; the CPU target of a review is 100 ms.
pub const MAX_WORK_UNITS: u64 = 4_000_000;
/// The share of the API server's `?timeout=` the rules may use; the rest is left for encoding,
/// the network and the queue.
pub const DEADLINE_SHARE: f64 = 0.5;
/// The time the rules may spend on one review at most, whatever `?timeout=` says.
pub const MAX_DECIDE_TIME: Duration = Duration::from_secs(2);

/// How often (in units) the clock is read.
const CLOCK_EVERY: u64 = 4096;

/// The work budget of one review: fixed units of work and a deadline. Rules spend it with
/// [`Budget::spend`] in their loops over object data and stop at the first `false`; the engine
/// then runs no further rule and says in a warning what was not judged.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    left: Cell<u64>,
    since_clock: Cell<u64>,
    out: Cell<bool>,
    /// What was left unjudged, in words, in order.
    skipped: RefCell<Vec<String>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(None)
    }
}

impl Budget {
    /// [`MAX_WORK_UNITS`] and, when given, a deadline.
    pub fn new(deadline: Option<Instant>) -> Budget {
        Budget::with_units(MAX_WORK_UNITS, deadline)
    }

    /// The budget of a review the API server gave `timeout` for, started at `start`: the smaller
    /// of [`DEADLINE_SHARE`] of it and [`MAX_DECIDE_TIME`].
    pub fn for_timeout(start: Instant, timeout: Duration) -> Budget {
        let time = timeout.mul_f64(DEADLINE_SHARE).min(MAX_DECIDE_TIME);
        Budget::new(Some(start + time))
    }

    pub fn with_units(units: u64, deadline: Option<Instant>) -> Budget {
        Budget {
            deadline,
            left: Cell::new(units),
            since_clock: Cell::new(0),
            out: Cell::new(false),
            skipped: RefCell::new(Vec::new()),
        }
    }

    /// Takes `units` of work; `false` once the budget is spent (units or time): stop judging.
    pub fn spend(&self, units: u64) -> bool {
        if self.out.get() {
            return false;
        }
        let left = self.left.get();
        if units > left {
            self.left.set(0);
            self.out.set(true);
            return false;
        }
        self.left.set(left - units);
        let since = self.since_clock.get() + units;
        if since >= CLOCK_EVERY {
            self.since_clock.set(0);
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.out.set(true);
                return false;
            }
        } else {
            self.since_clock.set(since);
        }
        true
    }

    /// Whether the budget is spent.
    pub fn exhausted(&self) -> bool {
        self.out.get()
    }

    /// Records something a cap or the budget left unjudged (said once in the answer's warning).
    /// Entries `rule: what` of rules stopped by the same cap are said once, the rules listed
    /// (`accessModes, volumeSize: claim templates past the first 1024`), so that what follows
    /// is not pushed past the warning's 256 characters.
    pub fn skip(&self, what: impl Into<String>) {
        let what = what.into();
        let mut s = self.skipped.borrow_mut();
        if s.contains(&what) {
            return;
        }
        if let Some((rule, cap)) = what.split_once(": ") {
            let same_cap = s
                .iter_mut()
                .find(|e| e.split_once(": ").is_some_and(|(_, c)| c == cap));
            if let Some(e) = same_cap {
                let (rules, _) = e.split_once(": ").expect("found by its separator");
                if !rules.split(", ").any(|r| r == rule) {
                    *e = format!("{rules}, {rule}: {cap}");
                }
                return;
            }
        }
        if s.len() < MAX_WARNINGS {
            s.push(what);
        }
    }

    /// What was left unjudged.
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.borrow().clone()
    }
}

/// `items` cut to their first `shown`, then "and N more": for lists in messages.
pub fn summarise<S: AsRef<str>>(items: &[S], shown: usize, sep: &str) -> String {
    let mut out = String::new();
    for (i, s) in items.iter().take(shown).enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s.as_ref());
    }
    if items.len() > shown {
        out.push_str(&format!(" and {} more", items.len() - shown));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_once_its_units_are_spent_and_stays_spent() {
        let b = Budget::with_units(10, None);
        assert!(b.spend(4));
        assert!(b.spend(6));
        assert!(!b.exhausted());
        assert!(!b.spend(1));
        assert!(b.exhausted());
        assert!(!b.spend(0), "a spent budget stays spent");
    }

    #[test]
    fn budget_past_its_deadline_refuses_at_the_next_clock_reading() {
        let b = Budget::new(Some(Instant::now()));
        assert!(!b.spend(CLOCK_EVERY));
        assert!(b.exhausted());
    }

    #[test]
    fn budget_for_a_timeout_takes_a_share_of_it_capped() {
        let start = Instant::now();
        let short = Budget::for_timeout(start, Duration::from_secs(1));
        assert_eq!(short.deadline, Some(start + Duration::from_millis(500)));
        let long = Budget::for_timeout(start, Duration::from_secs(30));
        assert_eq!(long.deadline, Some(start + MAX_DECIDE_TIME));
    }

    #[test]
    fn skipped_items_are_kept_once_in_order() {
        let b = Budget::default();
        b.skip("a");
        b.skip("b");
        b.skip("a");
        assert_eq!(b.skipped(), ["a", "b"]);
    }

    #[test]
    fn rules_stopped_by_the_same_cap_are_said_once() {
        let b = Budget::default();
        b.skip("accessModes: claim templates past the first 1024");
        b.skip("willBind: ordinals past 10");
        b.skip("volumeSize: claim templates past the first 1024");
        b.skip("accessModes: claim templates past the first 1024");
        b.skip("volumeSize: pod volumes past the first 1024");
        assert_eq!(
            b.skipped(),
            [
                "accessModes, volumeSize: claim templates past the first 1024",
                "willBind: ordinals past 10",
                "volumeSize: pod volumes past the first 1024",
            ]
        );
    }

    #[test]
    fn summarise_counts_what_it_leaves_out() {
        assert_eq!(summarise(&["a", "b", "c"], 2, ", "), "a, b and 1 more");
        assert_eq!(summarise(&["a", "b"], 2, ", "), "a, b");
    }
}
