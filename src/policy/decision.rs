//! What the rules answer for one request: the patch, the denial, warnings, audit annotations
//! and the findings that logs, metrics and `audit` read.

use std::collections::BTreeMap;

use json_patch::PatchOperation;

use super::field::{FieldError, Invalid, aggregate};
use super::meta::RuleId;
use super::modes::Mode;
use super::request::Subject;

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

/// One field error a validating rule refuses ([`Decision::refuse`]).
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    pub error: FieldError,
    /// Why, and what to do instead: a warning beside the denial.
    pub why: String,
    /// The storage class involved, for the finding.
    pub class: Option<String>,
}

/// The answer of the rules for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub patch: Vec<PatchOperation>,
    pub denial: Option<Invalid>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
    pub findings: Vec<Finding>,
}

/// The API server cuts warnings over 256 characters and drops those with control characters.
pub const MAX_WARNING_CHARS: usize = 256;

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// Adds a warning the API server will pass on: control characters replaced, at most
    /// [`MAX_WARNING_CHARS`] characters, no duplicates.
    pub fn warn(&mut self, text: impl AsRef<str>) {
        let mut w: String = text
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if w.chars().count() > MAX_WARNING_CHARS {
            w = w.chars().take(MAX_WARNING_CHARS - 3).collect::<String>() + "...";
        }
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
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
        mode: Mode,
        subject: &Subject<'_>,
        items: Vec<Refused>,
    ) {
        let action = match mode {
            Mode::Off => return,
            Mode::Enforce => Action::Denied,
            Mode::Audit => Action::Audited,
        };
        if items.is_empty() {
            return;
        }
        for item in &items {
            if mode == Mode::Audit {
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
        if mode == Mode::Enforce {
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
        mode: Mode,
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
        mode: Mode,
        what: &str,
        storage_class: Option<String>,
        ops: Vec<PatchOperation>,
    ) {
        let (action, message) = match mode {
            Mode::Off => return,
            Mode::Enforce => {
                self.patch.extend(ops);
                (Action::Mutated, format!("set {what}"))
            }
            Mode::Audit => {
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

    /// Sets the audit annotation of a rule (the API server prefixes it with the webhook name).
    pub fn annotate(&mut self, rule: RuleId, value: impl Into<String>) {
        let value = value.into();
        self.audit_annotations
            .entry(rule.annotation_key().to_owned())
            .and_modify(|v| {
                v.push_str("; ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::field::Path;
    use crate::policy::{claim_ref, node_name_wffc};

    fn subject() -> Subject<'static> {
        Subject {
            group: "",
            kind: "PersistentVolume",
            name: "pv-web-0",
        }
    }

    fn refused(field: &str, why: &str) -> Refused {
        Refused {
            error: FieldError::required(Path::new(field), "set it"),
            why: why.to_owned(),
            class: Some("local".to_owned()),
        }
    }

    #[test]
    fn refuse_in_enforce_denies_warns_why_and_annotates() {
        let mut d = Decision::default();
        d.refuse(
            claim_ref::ID,
            Mode::Enforce,
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
            Mode::Audit,
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
    fn refuse_off_or_with_nothing_does_nothing() {
        for (mode, items) in [
            (Mode::Off, vec![refused("spec.a", "why")]),
            (Mode::Enforce, vec![]),
            (Mode::Audit, vec![]),
        ] {
            let mut d = Decision::default();
            d.refuse(claim_ref::ID, mode, &subject(), items);
            assert_eq!(d, Decision::default(), "{mode:?}");
        }
    }

    /// Two rules refusing one object give one `Invalid` with both errors, in rule order, as the
    /// API aggregates field errors; neither replaces the other.
    #[test]
    fn refusals_of_two_rules_aggregate() {
        let mut d = Decision::default();
        d.refuse(
            claim_ref::ID,
            Mode::Enforce,
            &subject(),
            vec![refused("spec.a", "a")],
        );
        d.refuse(
            node_name_wffc::ID,
            Mode::Enforce,
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
}
