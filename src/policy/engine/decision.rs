//! What the rules answer for one request: the patch, the denial, warnings, audit annotations
//! and the findings that logs, metrics and `audit` read.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use json_patch::PatchOperation;

use super::meta::RuleId;
use super::request::{Object, Request, Subject};
use crate::kinds::Operation;
use crate::policy::model::field::{FieldError, Invalid, aggregate};
use crate::policy::model::limits::{
    self, Budget, MAX_ANNOTATION_CHARS, MAX_WARNINGS, MAX_WARNINGS_TOTAL_CHARS,
};
use crate::policy::model::modes::Acting;
use crate::policy::model::volumes::Source;

/// What a rule did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Patched the object.
    Mutated,
    /// Denied the request.
    Denied,
    /// Would have patched or denied, but the rule is in audit mode.
    Audited,
    /// Allowed, with a warning (a problem the rule cannot fix, or a pre-existing violation).
    Warned,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mutated => "mutated",
            Action::Denied => "denied",
            Action::Audited => "audited",
            Action::Warned => "warned",
        }
    }
}

/// One thing a rule found, for logs, metrics and the `audit` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    pub action: Action,
    pub storage_class: Option<String>,
    pub message: String,
}

/// One thing a validating rule finds wrong with a field ([`Decision::judge`]): the field error as
/// the API server writes it, why and what would work (the warning beside a denial), the storage
/// class involved, and whether it is said as a warning only (it rests on an assumption, or does
/// not block: deny only on certainty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub error: FieldError,
    /// Why, and what would work: the warning beside the denial.
    pub why: String,
    /// The storage class involved, for the finding.
    pub class: Option<String>,
    /// Said as a warning (`why`), never denied.
    pub warn_only: bool,
}

impl Violation {
    /// A violation the rule is certain of: denied in `enforce` mode.
    pub fn new(error: FieldError, why: impl Into<String>, class: Option<String>) -> Violation {
        Violation {
            error,
            why: why.into(),
            class,
            warn_only: false,
        }
    }

    /// The UPDATE ratchet's one definition of "the same violation": the same field error (path,
    /// type, value and detail, as the API server writes it) on the same class.
    fn key(&self) -> (String, Option<String>) {
        (self.error.to_string(), self.class.clone())
    }
}

/// The answer of the rules for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub patch: Vec<PatchOperation>,
    pub denial: Option<Invalid>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
    pub findings: Vec<Finding>,
    /// What the work bounds of the review left unjudged ([`Budget`]), in words; empty when the
    /// whole object was judged.
    pub unjudged: Vec<String>,
    /// Hashes of the distinct warnings past the caps, counted in the summary.
    omitted_warnings: HashSet<u64>,
    /// Values not added to each audit annotation past its cap.
    omitted_annotations: BTreeMap<String, usize>,
}

/// The API server cuts warnings over 256 characters and drops those with control characters.
pub use limits::MAX_WARNING_CHARS;

/// A warning as the API server will pass it on: control characters replaced, at most
/// [`MAX_WARNING_CHARS`] characters (the end cut, so a message says the important part first).
fn clean_warning(text: &str) -> String {
    let mut w = String::with_capacity(text.len().min(4 * MAX_WARNING_CHARS));
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX_WARNING_CHARS) {
        w.push(if c.is_control() { ' ' } else { c });
    }
    if chars.next().is_some() {
        let keep: usize = w
            .char_indices()
            .nth(MAX_WARNING_CHARS - 3)
            .map_or(w.len(), |(i, _)| i);
        w.truncate(keep);
        w.push_str("...");
    }
    w
}

/// Characters kept free for the summary warning.
const SUMMARY_ROOM: usize = 96;

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// Adds a warning the API server will pass on: control characters replaced, at most
    /// [`MAX_WARNING_CHARS`] characters, no duplicates. Past [`MAX_WARNINGS`] warnings (one kept
    /// for the summary) or [`MAX_WARNINGS_TOTAL_CHARS`] characters in all, it is only counted:
    /// [`Decision::finish`] says "... and N more warnings".
    pub fn warn(&mut self, text: impl AsRef<str>) {
        let w = clean_warning(text.as_ref());
        // At most MAX_WARNINGS are kept: a linear look-up over them stays linear in all.
        if self.warnings.contains(&w) {
            return;
        }
        if self.omitted_warnings.is_empty()
            && self.warnings.len() + 1 < MAX_WARNINGS
            && self.warning_chars() + w.chars().count() <= MAX_WARNINGS_TOTAL_CHARS - SUMMARY_ROOM
        {
            self.warnings.push(w);
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            self.omitted_warnings.insert(h.finish());
        }
    }

    fn warning_chars(&self) -> usize {
        self.warnings.iter().map(|w| w.chars().count()).sum()
    }

    /// Warnings counted but not kept (past the caps).
    pub fn omitted_warnings(&self) -> usize {
        self.omitted_warnings.len()
    }

    /// Ends the decision of one review: what `budget` left unjudged becomes the first warning
    /// (it must survive every cut), the warnings past the caps one summary, and each audit
    /// annotation past its cap says how many values it left out.
    pub fn finish(&mut self, budget: &Budget) {
        self.unjudged = budget.skipped();
        if !self.unjudged.is_empty() {
            let w = clean_warning(&format!(
                "not judged (bounds of one review): {}",
                self.unjudged.join("; ")
            ));
            self.warnings.insert(0, w);
        }
        let mut more = self.omitted_warnings.len();
        while self.warnings.len() > 1
            && (self.warnings.len() + usize::from(more > 0) > MAX_WARNINGS
                || self.warning_chars() > MAX_WARNINGS_TOTAL_CHARS - SUMMARY_ROOM)
        {
            self.warnings.pop();
            more += 1;
        }
        if more > 0 {
            self.warnings.push(format!(
                "... and {more} more warning{} (see the audit annotations and the webhook's findings)",
                if more == 1 { "" } else { "s" }
            ));
        }
        for (key, n) in std::mem::take(&mut self.omitted_annotations) {
            if let Some(v) = self.audit_annotations.get_mut(&key) {
                v.push_str(&format!("; ... and {n} more"));
            }
        }
    }

    /// Refuses the request. A second rule refusing the same object adds its field errors to the
    /// first denial, as the API aggregates every field error of an object into one `Invalid`.
    pub fn deny(&mut self, invalid: Invalid) {
        match &mut self.denial {
            Some(existing) => existing.errors.extend(invalid.errors),
            None => self.denial = Some(invalid),
        }
    }

    /// What a validating rule refuses in the object under review (`subject`), one item per field
    /// error. In `enforce` mode the request is denied with the API server's own `Invalid` (422),
    /// aggregated with other rules' errors ([`Decision::deny`]), each item's `why` is a warning,
    /// and the audit annotation says `denied: <errors>`. In `audit` mode nothing is denied: each
    /// error becomes an `[audit] would deny: ...` warning followed by its `why`, and the
    /// annotation gives the message the denial would have had. A finding records each item.
    pub(crate) fn refuse(
        &mut self,
        rule: RuleId,
        mode: Acting,
        subject: &Subject<'_>,
        items: Vec<Violation>,
    ) {
        let action = match mode {
            Acting::Enforce => Action::Denied,
            Acting::Audit => Action::Audited,
        };
        if items.is_empty() {
            return;
        }
        for item in &items {
            if mode == Acting::Audit {
                self.warn(format!("[audit] would deny: {}", item.error));
            }
            self.warn(&item.why);
            self.findings.push(Finding {
                rule,
                action,
                storage_class: item.class.clone(),
                message: item.error.to_string(),
            });
        }
        let invalid = Invalid {
            group: subject.group.to_owned(),
            kind: subject.kind.to_owned(),
            name: subject.name.to_owned(),
            errors: items.into_iter().map(|i| i.error).collect(),
        };
        if mode == Acting::Enforce {
            self.annotate(rule, format!("denied: {}", aggregate(&invalid.errors)));
            self.deny(invalid);
        } else {
            self.annotate(rule, format!("would deny: {}", invalid.message()));
        }
    }

    /// What a mutating rule found: in `enforce` mode the patch is applied; in `audit` mode it is
    /// reported as a warning instead. Either way an audit annotation and a finding record it.
    pub(crate) fn mutation(
        &mut self,
        rule: RuleId,
        mode: Acting,
        what: &str,
        storage_class: Option<String>,
        op: PatchOperation,
    ) {
        self.mutation_ops(rule, mode, what, storage_class, vec![op]);
    }

    /// [`Decision::mutation`] with several operations (applied in order, as one change).
    pub(crate) fn mutation_ops(
        &mut self,
        rule: RuleId,
        mode: Acting,
        what: &str,
        storage_class: Option<String>,
        ops: Vec<PatchOperation>,
    ) {
        let (action, message) = match mode {
            Acting::Enforce => {
                self.patch.extend(ops);
                (Action::Mutated, format!("set {what}"))
            }
            Acting::Audit => {
                let msg = format!("would set {what}");
                self.warn(format!("[audit] {msg}"));
                (Action::Audited, msg)
            }
        };
        self.annotate(rule, message.clone());
        self.findings.push(Finding {
            rule,
            action,
            storage_class,
            message,
        });
    }

    /// What a validating rule found in the object under review (`now`), judged by the engine:
    /// - the UPDATE ratchet: on UPDATE, `old` is asked for the old object's violations, and what
    ///   the old object already had ([`Violation::key`]) never blocks (a finalizer removal or a
    ///   scale of an object made before the policy must not get stuck): a certain one is said
    ///   once as a `pre-existing: <error>` warning, a warning-only one not again;
    /// - a warning-only violation is a [`Decision::warning`] of its `why`;
    /// - the rest is refused together ([`Decision::refuse`]).
    pub(crate) fn judge(
        &mut self,
        rule: RuleId,
        mode: Acting,
        req: &Request<'_>,
        now: Vec<Violation>,
        old: impl FnOnce(&Object<'_>) -> Vec<Violation>,
    ) {
        if now.is_empty() {
            return;
        }
        // A set of the old violations: one look-up per new one, not a scan.
        let before: HashSet<(String, Option<String>)> = match (req.operation, &req.old_object) {
            (Operation::Update, Some(o)) => old(o).iter().map(Violation::key).collect(),
            _ => HashSet::new(),
        };
        let mut refused = Vec::new();
        for v in now {
            let existed = !before.is_empty() && before.contains(&v.key());
            match (v.warn_only, existed) {
                (true, true) => {}
                (true, false) => self.warning(rule, v.class, v.why),
                (false, true) => {
                    self.warning(rule, v.class, format!("pre-existing: {}", v.error));
                }
                (false, false) => refused.push(v),
            }
        }
        self.refuse(rule, mode, &req.subject, refused);
    }

    /// A warning of `rule`, the same in every mode: the user reads it, the rule's audit
    /// annotation and a `warned` finding (logs, metrics, `audit`) record it.
    pub(crate) fn warning(&mut self, rule: RuleId, class: Option<String>, text: impl Into<String>) {
        let text = text.into();
        self.warning_noted(rule, class, text.clone(), text);
    }

    /// [`Decision::warning`] with a shorter audit annotation `note` than the warning.
    pub(crate) fn warning_noted(
        &mut self,
        rule: RuleId,
        class: Option<String>,
        text: String,
        note: impl Into<String>,
    ) {
        self.warn(&text);
        self.annotate(rule, note);
        self.findings.push(Finding {
            rule,
            action: Action::Warned,
            storage_class: class,
            message: text,
        });
    }

    /// Sets the audit annotation of a rule (the API server prefixes it with the webhook name).
    /// Each value is at most [`MAX_ANNOTATION_CHARS`] long in all; values past it are counted
    /// and summarised by [`Decision::finish`].
    pub fn annotate(&mut self, rule: RuleId, value: impl Into<String>) {
        let mut value = value.into();
        let key = rule.annotation_key();
        match self.audit_annotations.get_mut(key) {
            Some(v) if v.len() + 2 + value.len() <= MAX_ANNOTATION_CHARS => {
                v.push_str("; ");
                v.push_str(&value);
            }
            Some(_) => *self.omitted_annotations.entry(key.to_owned()).or_insert(0) += 1,
            None => {
                if value.len() > MAX_ANNOTATION_CHARS {
                    let mut end = MAX_ANNOTATION_CHARS - 3;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    value.truncate(end);
                    value.push_str("...");
                }
                self.audit_annotations.insert(key.to_owned(), value);
            }
        }
    }
}

/// A warning judged against the PVs of `source`, which is named when it is not the cluster.
pub(crate) fn judged_against(source: Source, text: String) -> String {
    match source {
        Source::Cluster => text,
        Source::Files => format!("{text} (judged against the PersistentVolumes in the files)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::field::Path;
    use crate::policy::rules::{claim_ref, node_name_wffc};

    fn subject() -> Subject<'static> {
        Subject {
            group: "",
            kind: "PersistentVolume",
            name: "pv-web-0",
        }
    }

    fn refused(field: &str, why: &str) -> Violation {
        Violation::new(
            FieldError::required(Path::new(field), "set it"),
            why,
            Some("local".to_owned()),
        )
    }

    #[test]
    fn refuse_in_enforce_denies_warns_why_and_annotates() {
        let mut d = Decision::default();
        d.refuse(
            claim_ref::ID,
            Acting::Enforce,
            &subject(),
            vec![refused("spec.a", "why a"), refused("spec.b", "why b")],
        );
        let denial = d.denial.as_ref().expect("denied");
        assert_eq!(
            denial.message(),
            r#"PersistentVolume "pv-web-0" is invalid: [spec.a: Required value: set it, spec.b: Required value: set it]"#
        );
        assert_eq!(d.warnings, ["why a", "why b"]);
        assert_eq!(
            d.audit_annotations[claim_ref::ID.annotation_key()],
            "denied: [spec.a: Required value: set it, spec.b: Required value: set it]"
        );
        assert_eq!(d.findings.len(), 2);
        assert!(d.findings.iter().all(|f| f.action == Action::Denied
            && f.storage_class.as_deref() == Some("local")
            && f.rule == claim_ref::ID));
        assert_eq!(d.findings[1].message, "spec.b: Required value: set it");
    }

    #[test]
    fn refuse_in_audit_allows_and_says_what_it_would_deny() {
        let mut d = Decision::default();
        d.refuse(
            claim_ref::ID,
            Acting::Audit,
            &subject(),
            vec![refused("spec.a", "why a")],
        );
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "[audit] would deny: spec.a: Required value: set it",
                "why a"
            ]
        );
        assert_eq!(
            d.audit_annotations[claim_ref::ID.annotation_key()],
            r#"would deny: PersistentVolume "pv-web-0" is invalid: spec.a: Required value: set it"#
        );
        assert_eq!(d.findings[0].action, Action::Audited);
    }

    #[test]
    fn refuse_with_nothing_does_nothing() {
        for (mode, items) in [(Acting::Enforce, vec![]), (Acting::Audit, vec![])] {
            let mut d = Decision::default();
            d.refuse(claim_ref::ID, mode, &subject(), items);
            assert_eq!(d, Decision::default(), "{mode:?}");
        }
    }

    fn update<'a>(object: Object<'a>, old: Object<'a>) -> Request<'a> {
        crate::policy::testing::update(object, old)
            .namespace(None)
            .subject("", "PersistentVolume", "pv-web-0")
            .request
    }

    /// The UPDATE ratchet: what the old object had is one `pre-existing` warning (annotated and
    /// recorded as `warned`), a warning-only one is not said again, the new one is refused.
    #[test]
    fn judge_ratchets_what_the_old_object_had() {
        let pv = k8s_openapi::api::core::v1::PersistentVolume::default();
        let req = update(Object::Pv(&pv), Object::Pv(&pv));
        let assumed = Violation {
            warn_only: true,
            ..refused("spec.c", "assumed")
        };
        let mut d = Decision::default();
        d.judge(
            claim_ref::ID,
            Acting::Enforce,
            &req,
            vec![
                refused("spec.a", "a"),
                refused("spec.b", "b"),
                assumed.clone(),
            ],
            |_| vec![refused("spec.a", "a"), assumed.clone()],
        );
        let denial = d.denial.as_ref().expect("the new violation is denied");
        assert_eq!(denial.errors.len(), 1);
        assert_eq!(denial.errors[0].field.to_string(), "spec.b");
        assert_eq!(
            d.warnings,
            ["pre-existing: spec.a: Required value: set it", "b"]
        );
        let actions: Vec<Action> = d.findings.iter().map(|f| f.action).collect();
        assert_eq!(actions, [Action::Warned, Action::Denied]);
        assert!(
            d.audit_annotations[claim_ref::ID.annotation_key()].starts_with("pre-existing: spec.a")
        );
        // On CREATE nothing is pre-existing and the old object is not asked for.
        let mut d = Decision::default();
        let create = Request {
            operation: Operation::Create,
            old_object: None,
            ..req
        };
        d.judge(
            claim_ref::ID,
            Acting::Enforce,
            &create,
            vec![assumed.clone()],
            |_| unreachable!("no old object on CREATE"),
        );
        assert_eq!(d.warnings, ["assumed"]);
        assert_eq!(d.findings[0].action, Action::Warned);
    }

    /// A warning reads the same in every mode: said, annotated, recorded as `warned`.
    #[test]
    fn warnings_are_recorded_alike_in_every_mode() {
        let mut d = Decision::default();
        d.warning(claim_ref::ID, Some("local".into()), "careful");
        assert_eq!(d.warnings, ["careful"]);
        assert_eq!(
            d.audit_annotations[claim_ref::ID.annotation_key()],
            "careful"
        );
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(d.findings[0].storage_class.as_deref(), Some("local"));
    }

    /// Two rules refusing one object give one `Invalid` with both errors, in rule order, as the
    /// API aggregates field errors; neither replaces the other.
    #[test]
    fn refusals_of_two_rules_aggregate() {
        let mut d = Decision::default();
        d.refuse(
            claim_ref::ID,
            Acting::Enforce,
            &subject(),
            vec![refused("spec.a", "a")],
        );
        d.refuse(
            node_name_wffc::ID,
            Acting::Enforce,
            &subject(),
            vec![refused("spec.b", "b")],
        );
        let fields: Vec<String> = d
            .denial
            .unwrap()
            .errors
            .iter()
            .map(|e| e.field.to_string())
            .collect();
        assert_eq!(fields, ["spec.a", "spec.b"]);
        assert_eq!(d.audit_annotations.len(), 2);
    }

    /// Thousands of distinct warnings give at most MAX_WARNINGS, within the API server's total,
    /// the last one counting the rest; duplicates are counted once.
    #[test]
    fn warnings_are_capped_and_summarised() {
        let mut d = Decision::default();
        for i in 0..10_000 {
            d.warn(format!("warning {i}"));
            d.warn(format!("warning {i}"));
        }
        d.finish(&Budget::default());
        assert!(d.warnings.len() <= MAX_WARNINGS);
        let total: usize = d.warnings.iter().map(|w| w.chars().count()).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_CHARS);
        let kept = d.warnings.len() - 1;
        assert_eq!(
            d.warnings.last().unwrap(),
            &format!(
                "... and {} more warnings (see the audit annotations and the webhook's findings)",
                10_000 - kept
            )
        );
        assert_eq!(d.warnings[0], "warning 0");
    }

    /// Long warnings fill the 4,096 characters sooner; each is cut at 256 with its start kept.
    #[test]
    fn long_warnings_stay_within_the_total() {
        let mut d = Decision::default();
        for i in 0..100 {
            d.warn(format!("{i:03} {}", "x".repeat(1000)));
        }
        d.finish(&Budget::default());
        let total: usize = d.warnings.iter().map(|w| w.chars().count()).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_CHARS, "{total}");
        assert!(d.warnings[0].starts_with("000 x") && d.warnings[0].ends_with("..."));
        assert_eq!(d.warnings[0].chars().count(), MAX_WARNING_CHARS);
        assert!(d.warnings.last().unwrap().starts_with("... and "));
    }

    /// What the budget left unjudged is the first warning, even when the others are full.
    #[test]
    fn the_unjudged_warning_comes_first_and_survives_the_caps() {
        let mut d = Decision::default();
        for i in 0..100 {
            d.warn(format!("w{i}"));
        }
        let b = Budget::default();
        b.skip("rule willBind stopped partway");
        d.finish(&b);
        assert_eq!(
            d.warnings[0],
            "not judged (bounds of one review): rule willBind stopped partway"
        );
        assert_eq!(d.unjudged, ["rule willBind stopped partway"]);
        assert!(d.warnings.len() <= MAX_WARNINGS);
    }

    /// An annotation takes values up to MAX_ANNOTATION_CHARS, then counts the rest.
    #[test]
    fn annotations_are_capped_and_count_what_they_leave_out() {
        let mut d = Decision::default();
        for i in 0..10_000 {
            d.annotate(claim_ref::ID, format!("value {i}"));
        }
        d.finish(&Budget::default());
        let v = &d.audit_annotations[claim_ref::ID.annotation_key()];
        assert!(v.len() <= MAX_ANNOTATION_CHARS + 32, "{}", v.len());
        assert!(v.starts_with("value 0; value 1"));
        let shown = v.matches("value ").count();
        assert!(
            v.ends_with(&format!("; ... and {} more", 10_000 - shown)),
            "{v}"
        );
        let mut one = Decision::default();
        one.annotate(claim_ref::ID, "y".repeat(10 * MAX_ANNOTATION_CHARS));
        assert_eq!(
            one.audit_annotations[claim_ref::ID.annotation_key()].len(),
            MAX_ANNOTATION_CHARS
        );
    }
}
