//! The audit's report model: what was found about which object ([`Report`], [`ObjectReport`],
//! [`AuditFinding`]), its counts ([`Summary`]) and the typed vocabulary the machine formats share
//! ([`Outcome`], [`Stage`], and for the policy-report formats [`ResultStatus`] and [`Severity`]).
//!
//! Each output format is one renderer in its own file and reads this model only: [`text`] (a
//! table for people), [`json`](mod@json) (`storage-policy.io/v1alpha2` `AuditReport`),
//! [`policy_report`] (`wgpolicyk8s.io/v1alpha2` PolicyReport / ClusterPolicyReport) and
//! [`openreports`] (`openreports.io/v1alpha1` Report / ClusterReport), the last two built from the
//! shared result model in [`results`]. Nothing here decides anything: the findings come from the
//! webhook's own decision path ([`super::review`], [`super::checks`]).

use std::fmt::Write as _;

use json_patch::PatchOperation;
use serde::Serialize;
use serde_json::{Value, json};

use super::{InputError, Location};

pub mod json;
pub mod openreports;
pub mod policy_report;
pub mod results;
pub mod text;

pub use json::to_json;
pub use openreports::{to_openreports, to_openreports_yaml};
pub use policy_report::{to_policy_report_yaml, to_policy_reports};
pub use results::{ResultStatus, Severity, Timestamp};
pub use text::{Style, to_text};

/// apiVersion of the json report.
/// `v1alpha2`: the patch and the warnings moved from the findings to `objects`, once each.
pub const REPORT_API_VERSION: &str = "storage-policy.io/v1alpha2";
/// kind of the json report.
pub const REPORT_KIND: &str = "AuditReport";
/// The `policy` of every PolicyReport result, and of OpenReports results that name no rule.
pub const POLICY_NAME: &str = "storage-policy";
/// The `source` of every PolicyReport and OpenReports result, and the reports' `managed-by` label.
pub const REPORT_SOURCE: &str = "storage-policy-webhook";
/// The name of the generated PolicyReports, ClusterPolicyReport, Reports and ClusterReport.
pub const POLICY_REPORT_NAME: &str = "storage-policy-webhook-audit";

/// What the webhook (or the API server) would do, from least to most severe. Serializes as its
/// lower-case name (`denied`), the same text as [`Outcome::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing to report.
    Allowed,
    /// The webhook patches the object.
    Mutated,
    /// Allowed with a warning, or a problem found across objects.
    Warned,
    /// A rule in audit mode would have patched or denied.
    Audited,
    /// The request is refused.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Mutated => "mutated",
            Outcome::Warned => "warned",
            Outcome::Audited => "audited",
            Outcome::Denied => "denied",
        }
    }
}

/// Where a finding comes from. Serializes as its lower-case name (`validate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The mutating webhook's response.
    Mutate,
    /// The API server's own validation of the mutated object.
    Api,
    /// The validating webhook's response.
    Validate,
    /// A check across the inventory (nodes, claim status, annotated default class).
    Inventory,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mutate => "mutate",
            Stage::Api => "api",
            Stage::Validate => "validate",
            Stage::Inventory => "inventory",
        }
    }
}

/// The object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// `PersistentVolumeClaim default/data`, `PersistentVolume ssd-1`.
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// One thing found about one object.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditFinding {
    /// The policy rule (`defaultStorageClass`, `localVolumeNodeAffinity`, `accessModes`); empty
    /// when nothing was found.
    pub rule: String,
    pub stage: Option<Stage>,
    pub outcome: Outcome,
    /// For a denial, `status.message` exactly as the webhook (or the API server) returns it.
    pub message: String,
    pub storage_class: Option<String>,
}

/// Everything found about one object. What belongs to the object (the patch, the warnings a
/// client sees) is kept here once, not on each finding: several rules patch in one response,
/// and one response's warnings are the object's.
#[derive(Clone, Debug)]
pub struct ObjectReport {
    pub source: Location,
    pub object: ObjectRef,
    pub findings: Vec<AuditFinding>,
    /// The JSON Patch of the mutating response, as kube-apiserver would apply it.
    pub patch: Vec<PatchOperation>,
    /// The warnings of the admission responses (`/mutate`, then `/validate`), each once.
    pub warnings: Vec<String>,
}

impl ObjectReport {
    /// Adds the `allowed` finding to an object nothing was found about.
    pub fn finish(&mut self) {
        if self.findings.is_empty() {
            self.findings.push(AuditFinding {
                rule: String::new(),
                stage: None,
                outcome: Outcome::Allowed,
                message: "no change".to_owned(),
                storage_class: None,
            });
        }
    }

    /// The most severe outcome.
    pub fn outcome(&self) -> Outcome {
        self.findings
            .iter()
            .map(|f| f.outcome)
            .max()
            .unwrap_or(Outcome::Allowed)
    }

    pub(crate) fn has(&self, o: Outcome) -> bool {
        self.findings.iter().any(|f| f.outcome == o)
    }

    /// Adds the warnings of one admission response, skipping those already kept.
    pub fn add_warnings(&mut self, warnings: impl IntoIterator<Item = String>) {
        for w in warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
    }

    /// The object's outcome in the summary, each object counted once: denied, else mutated,
    /// else audited, else warned, else allowed.
    pub fn counted_as(&self) -> Outcome {
        [
            Outcome::Denied,
            Outcome::Mutated,
            Outcome::Audited,
            Outcome::Warned,
        ]
        .into_iter()
        .find(|o| self.has(*o))
        .unwrap_or(Outcome::Allowed)
    }

    /// Findings of rules (or of the API server), not the `allowed` placeholder.
    fn rule_findings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.outcome != Outcome::Allowed)
            .count()
    }

    fn warning_count(&self) -> usize {
        self.warnings.len()
            + self
                .findings
                .iter()
                .filter(|f| f.stage == Some(Stage::Inventory) && f.outcome == Outcome::Warned)
                .count()
    }
}

/// The counts of a report (the json format's `summary`). `denied`, `mutated`, `audited`,
/// `warned` and `allowed` count objects, each once ([`ObjectReport::counted_as`]), and add up to
/// `objects`; `findings` counts rule findings (rows), `warnings` the warnings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects reported on.
    pub objects: usize,
    /// Objects whose CREATE would be refused.
    pub denied: usize,
    /// Objects the webhook would patch (and not refuse).
    pub mutated: usize,
    /// Objects a rule in audit mode would have patched or refused (and nothing refused or
    /// patched).
    pub audited: usize,
    /// Objects with warnings only.
    pub warned: usize,
    /// Objects nothing was found about.
    pub allowed: usize,
    /// Findings of rules (and of the API server's own validation) over all objects: the rows
    /// of the text format, the `findings` of the json format.
    pub findings: usize,
    /// Warnings a client would see, plus inventory warnings.
    pub warnings: usize,
    /// Inputs or documents that could not be read, parsed or decoded.
    pub errors: usize,
    /// Documents of kinds the webhook has no rules for.
    pub ignored: usize,
}

/// The result of an audit.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub objects: Vec<ObjectReport>,
    pub errors: Vec<InputError>,
    pub ignored: usize,
}

impl Report {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            objects: self.objects.len(),
            errors: self.errors.len(),
            ignored: self.ignored,
            ..Summary::default()
        };
        for o in &self.objects {
            match o.counted_as() {
                Outcome::Denied => s.denied += 1,
                Outcome::Mutated => s.mutated += 1,
                Outcome::Audited => s.audited += 1,
                Outcome::Warned => s.warned += 1,
                Outcome::Allowed => s.allowed += 1,
            }
            s.findings += o.rule_findings();
            s.warnings += o.warning_count();
        }
        s
    }

    /// 2 when an input could not be read or parsed, else 1 when a CREATE would be refused,
    /// else 0. Mutations and warnings never fail.
    pub fn exit_code(&self) -> i32 {
        let s = self.summary();
        if s.errors > 0 {
            2
        } else if s.denied > 0 {
            1
        } else {
            0
        }
    }
}

/// Whether a warning only repeats a finding's message: the warning a warned finding is, or the
/// `[audit] would set ...` / `[audit] would deny: ...` warning of an audited one (as the API server
/// passes it on: cut at 256 characters with `...`).
pub fn echoes(warning: &str, message: &str) -> bool {
    let same = |candidate: &str| {
        candidate == warning
            || warning.strip_suffix("...").is_some_and(|cut| {
                warning.chars().count() == crate::policy::MAX_WARNING_CHARS
                    && candidate.starts_with(cut)
            })
    };
    same(message)
        || same(&format!("[audit] {message}"))
        || same(&format!("[audit] would deny: {message}"))
}

/// A JSON Patch as the fields it changes: `spec.storageClassName: "standard"`. Objects are
/// flattened to their leaves; lists and scalars are printed as JSON.
pub fn changes(patch: &[PatchOperation]) -> Vec<(String, Value)> {
    fn field_path(ptr: &json_patch::jsonptr::Pointer) -> String {
        let mut s = String::new();
        for t in ptr.tokens() {
            let t = t.decoded();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                let _ = write!(s, "[{t}]");
            } else {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(&t);
            }
        }
        s
    }
    fn leaves(path: String, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    leaves(format!("{path}.{k}"), v, out);
                }
            }
            v => out.push((path, v.clone())),
        }
    }
    let mut out = Vec::new();
    for op in patch {
        match op {
            PatchOperation::Add(a) => leaves(field_path(&a.path), &a.value, &mut out),
            PatchOperation::Replace(r) => leaves(field_path(&r.path), &r.value, &mut out),
            PatchOperation::Remove(r) => out.push((field_path(&r.path), Value::Null)),
            PatchOperation::Move(m) => out.push((
                field_path(&m.path),
                json!(format!("(moved from {})", m.from)),
            )),
            PatchOperation::Copy(c) => out.push((
                field_path(&c.path),
                json!(format!("(copied from {})", c.from)),
            )),
            PatchOperation::Test(_) => {}
        }
    }
    out
}

/// Header facts of a report (the json format prints them).
#[derive(Clone, Debug)]
pub struct ReportMeta {
    /// The policy file, or `(embedded default)`.
    pub policy: String,
    pub dry_run: bool,
    /// `files` or `cluster`.
    pub origin: super::Origin,
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn object(findings: Vec<AuditFinding>) -> ObjectReport {
        ObjectReport {
            patch: Vec::new(),
            warnings: vec!["w".into()],
            source: Location::file("f.yaml"),
            object: ObjectRef {
                api_version: "v1".into(),
                kind: "PersistentVolumeClaim".into(),
                namespace: Some("a".into()),
                name: "d".into(),
            },
            findings,
        }
    }

    pub fn f(outcome: Outcome, stage: Stage) -> AuditFinding {
        AuditFinding {
            rule: "accessModes".into(),
            stage: Some(stage),
            outcome,
            message: "m".into(),
            storage_class: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{f, object};
    use super::*;
    use json_patch::AddOperation;
    use json_patch::jsonptr::PointerBuf;

    fn add(path: &[&str], value: Value) -> PatchOperation {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path.iter().copied()),
            value,
        })
    }

    #[test]
    fn shows_a_patch_as_changed_fields() {
        assert_eq!(
            changes(&[add(&["spec", "storageClassName"], json!("standard"))]),
            vec![("spec.storageClassName".to_owned(), json!("standard"))]
        );
        assert_eq!(
            changes(&[add(&["spec"], json!({"storageClassName": "x"}))]),
            vec![("spec.storageClassName".to_owned(), json!("x"))]
        );
        let c = changes(&[
            add(&["metadata", "annotations", "a/b"], json!("v")),
            add(&["spec", "x", "0"], json!(1)),
        ]);
        assert_eq!(c[0].0, "metadata.annotations.a/b");
        assert_eq!(c[1].0, "spec.x[0]");
    }

    #[test]
    fn outcomes_and_stages_serialize_as_their_names() {
        for o in [
            Outcome::Allowed,
            Outcome::Mutated,
            Outcome::Warned,
            Outcome::Audited,
            Outcome::Denied,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), json!(o.as_str()));
        }
        for s in [Stage::Mutate, Stage::Api, Stage::Validate, Stage::Inventory] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }

    #[test]
    fn exit_code_is_2_for_input_errors_then_1_for_denials() {
        let mut r = Report::default();
        assert_eq!(r.exit_code(), 0);
        r.objects
            .push(object(vec![f(Outcome::Mutated, Stage::Mutate)]));
        assert_eq!(r.exit_code(), 0, "mutations alone do not fail");
        r.objects
            .push(object(vec![f(Outcome::Denied, Stage::Validate)]));
        assert_eq!(r.exit_code(), 1);
        r.errors.push(InputError {
            source: Location::file("x"),
            message: "bad".into(),
        });
        assert_eq!(r.exit_code(), 2);
        let s = r.summary();
        assert_eq!(
            (s.objects, s.denied, s.mutated, s.warnings, s.errors),
            (2, 1, 1, 2, 1)
        );
    }
}
