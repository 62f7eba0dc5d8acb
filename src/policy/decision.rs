//! What the rules answer for one request: the patch, the denial, warnings, audit annotations
//! and the findings that logs, metrics and `audit` read.

use std::collections::BTreeMap;

use json_patch::PatchOperation;

use super::field::Invalid;
use super::meta::RuleId;
use super::modes::Mode;

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
