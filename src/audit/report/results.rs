//! The result model the two policy-report formats share: `wgpolicyk8s.io/v1alpha2` PolicyReports
//! ([`super::policy_report`]) and `openreports.io/v1alpha1` Reports ([`super::openreports`]) carry
//! the same `results` entries and `summary` counts. This file maps findings to results (status,
//! severity, properties, the object as a resource), groups them by namespace and counts them; the
//! renderers only wrap the groups in their documents.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{AuditFinding, ObjectReport, Outcome, POLICY_NAME, REPORT_SOURCE, Report, Stage};
use crate::audit::InputError;

/// The `category` of every result.
pub const CATEGORY: &str = "Storage";

/// A result's `result`: whether the object meets the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// The requirement is met (allowed, or patched into shape).
    Pass,
    /// The requirement is not met: the CREATE would be refused, or would be in enforce mode.
    Fail,
    /// A warning, or an audit-mode patch.
    Warn,
    /// The input could not be read or decoded.
    Error,
    /// Not evaluated (the audit writes none).
    Skip,
}

/// A result's `severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl AuditFinding {
    /// `(result, severity)` of this finding in a policy report.
    pub fn result(&self) -> (ResultStatus, Option<Severity>) {
        match (self.outcome, self.stage) {
            (Outcome::Denied, _) => (ResultStatus::Fail, Some(Severity::High)),
            // An audit-mode rule that would have refused: the requirement is not met.
            (Outcome::Audited, Some(Stage::Validate | Stage::Api)) => {
                (ResultStatus::Fail, Some(Severity::Medium))
            }
            (Outcome::Audited, _) => (ResultStatus::Warn, Some(Severity::Low)),
            (Outcome::Warned, _) => (ResultStatus::Warn, Some(Severity::Medium)),
            (Outcome::Mutated | Outcome::Allowed, _) => (ResultStatus::Pass, None),
        }
    }
}

/// When the results were found (`metav1.Timestamp`). Fields in key order, as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Timestamp {
    pub nanos: i32,
    pub seconds: i64,
}

impl Timestamp {
    /// Whole seconds since the epoch.
    pub fn seconds(seconds: i64) -> Timestamp {
        Timestamp { nanos: 0, seconds }
    }
}

/// The object a result is about (a `corev1.ObjectReference` subset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One `results` entry. Fields in key order, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReportResult {
    pub category: &'static str,
    pub message: String,
    pub policy: String,
    /// Strings only: both schemas say `additionalProperties: {type: string}`.
    pub properties: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRef>,
    pub result: ResultStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub scored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    pub source: &'static str,
    pub timestamp: Timestamp,
}

/// A report's `summary`: results by status. Fields in key order, as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResultCounts {
    pub error: usize,
    pub fail: usize,
    pub pass: usize,
    pub skip: usize,
    pub warn: usize,
}

impl ResultCounts {
    pub fn add(&mut self, result: ResultStatus) {
        match result {
            ResultStatus::Pass => self.pass += 1,
            ResultStatus::Fail => self.fail += 1,
            ResultStatus::Warn => self.warn += 1,
            ResultStatus::Error => self.error += 1,
            ResultStatus::Skip => self.skip += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.pass + self.fail + self.warn + self.error + self.skip
    }
}

/// The results of one report document and their counts.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    pub results: Vec<ReportResult>,
    pub summary: ResultCounts,
}

impl Bucket {
    fn push(&mut self, r: ReportResult) {
        self.summary.add(r.result);
        self.results.push(r);
    }
}

/// How a result names what it checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `policy: storage-policy`, `rule: <rule>` (PolicyReports, as written since v1alpha2).
    PolicyAndRule,
    /// `policy: <rule>` (`storage-policy` when no rule acted), no `rule` (OpenReports).
    RuleAsPolicy,
}

/// Results grouped as the reports hold them: one group per namespace for namespaced objects,
/// one for cluster-scoped objects and for inputs that could not be read (`result: error`).
#[derive(Clone, Debug, Default)]
pub struct Grouped {
    pub namespaced: BTreeMap<String, Bucket>,
    pub cluster: Bucket,
}

fn object_properties(o: &ObjectReport, f: &AuditFinding) -> BTreeMap<&'static str, String> {
    let mut properties = BTreeMap::new();
    properties.insert("outcome", f.outcome.as_str().to_owned());
    if let Some(stage) = f.stage {
        properties.insert("stage", stage.as_str().to_owned());
    }
    if let Some(file) = &o.source.file {
        properties.insert("file", file.clone());
    }
    if let Some(d) = o.source.document {
        properties.insert("document", d.to_string());
    }
    if let Some(c) = &f.storage_class {
        properties.insert("storageClass", c.clone());
    }
    // The object's patch once, on its first mutated finding.
    if !o.patch.is_empty()
        && o.findings
            .iter()
            .find(|x| x.outcome == Outcome::Mutated)
            .is_some_and(|first| std::ptr::eq(first, f))
    {
        properties.insert("patch", serde_json::to_string(&o.patch).unwrap_or_default());
    }
    properties
}

fn error_result(e: &InputError, timestamp: Timestamp) -> ReportResult {
    let mut properties = BTreeMap::new();
    if let Some(file) = &e.source.file {
        properties.insert("file", file.clone());
    }
    if let Some(d) = e.source.document {
        properties.insert("document", d.to_string());
    }
    if let Some(l) = e.source.line {
        properties.insert("line", l.to_string());
    }
    ReportResult {
        category: CATEGORY,
        message: e.to_string(),
        policy: POLICY_NAME.to_owned(),
        properties,
        resources: Vec::new(),
        result: ResultStatus::Error,
        rule: None,
        scored: true,
        severity: None,
        source: REPORT_SOURCE,
        timestamp,
    }
}

/// One result per finding, and one `error` result per unreadable input, grouped by namespace.
pub fn group(report: &Report, timestamp: Timestamp, naming: Naming) -> Grouped {
    let mut g = Grouped::default();
    for o in &report.objects {
        let resource = ResourceRef {
            api_version: o.object.api_version.clone(),
            kind: o.object.kind.clone(),
            name: o.object.name.clone(),
            namespace: o.object.namespace.clone(),
        };
        for f in &o.findings {
            let (result, severity) = f.result();
            let rule = (!f.rule.is_empty()).then(|| f.rule.clone());
            let (policy, rule) = match naming {
                Naming::PolicyAndRule => (POLICY_NAME.to_owned(), rule),
                Naming::RuleAsPolicy => (rule.unwrap_or_else(|| POLICY_NAME.to_owned()), None),
            };
            let r = ReportResult {
                category: CATEGORY,
                message: f.message.clone(),
                policy,
                properties: object_properties(o, f),
                resources: vec![resource.clone()],
                result,
                rule,
                scored: true,
                severity,
                source: REPORT_SOURCE,
                timestamp,
            };
            match &o.object.namespace {
                Some(ns) => g.namespaced.entry(ns.clone()).or_default().push(r),
                None => g.cluster.push(r),
            }
        }
    }
    for e in &report.errors {
        g.cluster.push(error_result(e, timestamp));
    }
    g
}

/// The reports' `metadata.labels`.
pub fn labels() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("app.kubernetes.io/managed-by", REPORT_SOURCE)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::test_support::{f, object};

    #[test]
    fn maps_outcomes_to_results_and_severities() {
        let cases = [
            (
                Outcome::Denied,
                Stage::Validate,
                ResultStatus::Fail,
                Some(Severity::High),
            ),
            (
                Outcome::Audited,
                Stage::Validate,
                ResultStatus::Fail,
                Some(Severity::Medium),
            ),
            (
                Outcome::Audited,
                Stage::Api,
                ResultStatus::Fail,
                Some(Severity::Medium),
            ),
            (
                Outcome::Audited,
                Stage::Mutate,
                ResultStatus::Warn,
                Some(Severity::Low),
            ),
            (
                Outcome::Warned,
                Stage::Inventory,
                ResultStatus::Warn,
                Some(Severity::Medium),
            ),
            (Outcome::Mutated, Stage::Mutate, ResultStatus::Pass, None),
        ];
        for (outcome, stage, result, severity) in cases {
            assert_eq!(
                f(outcome, stage).result(),
                (result, severity),
                "{outcome:?} {stage:?}"
            );
        }
    }

    #[test]
    fn counts_add_up_to_the_results() {
        let r = Report {
            objects: vec![object(vec![
                f(Outcome::Denied, Stage::Validate),
                f(Outcome::Warned, Stage::Inventory),
                f(Outcome::Mutated, Stage::Mutate),
            ])],
            errors: vec![InputError {
                source: crate::audit::Location::file("x.yaml"),
                message: "bad".into(),
            }],
            ignored: 0,
        };
        let g = group(&r, Timestamp::seconds(1), Naming::RuleAsPolicy);
        let a = &g.namespaced["a"];
        assert_eq!((a.summary.fail, a.summary.warn, a.summary.pass), (1, 1, 1));
        assert_eq!(a.summary.total(), a.results.len());
        assert_eq!(g.cluster.summary.error, 1);
        assert_eq!(g.cluster.summary.total(), g.cluster.results.len());
        assert_eq!(a.results[0].policy, "accessModes");
        assert_eq!(a.results[0].rule, None);
    }
}
