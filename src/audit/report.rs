//! The audit's findings and their three renderings: a table for people (`text`), a versioned
//! document for machines (`json`, `storage-policy.io/v1alpha1` `AuditReport`) and
//! `wgpolicyk8s.io/v1alpha2` PolicyReport / ClusterPolicyReport documents (`policy-report`) for
//! Policy Reporter and similar tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use json_patch::PatchOperation;
use serde_json::{Map, Value, json};

use super::{InputError, Source};

/// apiVersion of the json report.
pub const REPORT_API_VERSION: &str = "storage-policy.io/v1alpha1";
/// kind of the json report.
pub const REPORT_KIND: &str = "AuditReport";
/// The `policy` of every PolicyReport result.
pub const POLICY_NAME: &str = "storage-policy";
/// The `source` of every PolicyReport result, and the reports' `managed-by` label.
pub const REPORT_SOURCE: &str = "storage-policy-webhook";
/// The name of the generated PolicyReports and ClusterPolicyReport.
pub const POLICY_REPORT_NAME: &str = "storage-policy-webhook-audit";

/// What the webhook (or the API server) would do, from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// Where a finding comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
pub struct Finding {
    /// The policy rule (`defaultStorageClass`, `localVolumeNodeAffinity`, `accessModes`); empty
    /// when nothing was found.
    pub rule: String,
    pub stage: Option<Stage>,
    pub outcome: Outcome,
    /// For a denial, `status.message` exactly as the webhook (or the API server) returns it.
    pub message: String,
    pub storage_class: Option<String>,
    /// The JSON Patch of the mutating response, on the finding that made it.
    pub patch: Vec<PatchOperation>,
    /// The warnings of the admission response this finding comes from.
    pub warnings: Vec<String>,
}

/// Everything found about one object.
#[derive(Clone, Debug)]
pub struct ObjectReport {
    pub source: Source,
    pub object: ObjectRef,
    pub findings: Vec<Finding>,
}

impl ObjectReport {
    /// Adds the `allowed` finding to an object nothing was found about.
    pub fn finish(&mut self) {
        if self.findings.is_empty() {
            self.findings.push(Finding {
                rule: String::new(),
                stage: None,
                outcome: Outcome::Allowed,
                message: "no change".to_owned(),
                storage_class: None,
                patch: Vec::new(),
                warnings: Vec::new(),
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

    fn has(&self, o: Outcome) -> bool {
        self.findings.iter().any(|f| f.outcome == o)
    }

    /// The distinct warnings a client would see, in order, plus inventory warnings.
    pub fn warnings(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.findings {
            for w in &f.warnings {
                if !out.contains(&w.as_str()) {
                    out.push(w);
                }
            }
        }
        out
    }

    fn warning_count(&self) -> usize {
        self.warnings().len()
            + self
                .findings
                .iter()
                .filter(|f| f.stage == Some(Stage::Inventory) && f.outcome == Outcome::Warned)
                .count()
    }
}

/// The counts of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Objects reported on.
    pub objects: usize,
    /// Objects whose CREATE would be refused.
    pub denied: usize,
    /// Objects the webhook would patch (and not refuse).
    pub mutated: usize,
    /// Objects a rule in audit mode would have patched or refused.
    pub audited: usize,
    /// Objects with a warning finding.
    pub warned: usize,
    /// Objects nothing was found about.
    pub allowed: usize,
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
            let denied = o.has(Outcome::Denied);
            s.denied += usize::from(denied);
            s.mutated += usize::from(!denied && o.has(Outcome::Mutated));
            s.audited += usize::from(o.has(Outcome::Audited));
            s.warned += usize::from(o.has(Outcome::Warned));
            s.allowed += usize::from(o.outcome() == Outcome::Allowed);
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

fn opt<T: serde::Serialize>(v: &Option<T>) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn source_json(s: &Source) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("file".into(), opt(&s.file));
    m.insert("document".into(), opt(&s.document));
    m.insert("item".into(), opt(&s.item));
    m.insert("line".into(), opt(&s.line));
    m
}

/// Header facts of a report.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The policy file, or `(embedded default)`.
    pub policy: String,
    pub dry_run: bool,
    /// `files` or `cluster`.
    pub origin: super::Origin,
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "objects": s.objects,
        "denied": s.denied,
        "mutated": s.mutated,
        "audited": s.audited,
        "warned": s.warned,
        "allowed": s.allowed,
        "warnings": s.warnings,
        "errors": s.errors,
        "ignored": s.ignored,
    })
}

/// The json report: `{"apiVersion": "storage-policy.io/v1alpha1", "kind": "AuditReport", ...}`.
/// Every key is always present (`null` when it does not apply).
pub fn to_json(report: &Report, meta: &Meta) -> Value {
    let findings: Vec<Value> = report
        .objects
        .iter()
        .flat_map(|o| {
            o.findings.iter().map(move |f| {
                let mut m = source_json(&o.source);
                m.insert("apiVersion".into(), json!(o.object.api_version));
                m.insert("kind".into(), json!(o.object.kind));
                m.insert("namespace".into(), opt(&o.object.namespace));
                m.insert("name".into(), json!(o.object.name));
                m.insert(
                    "rule".into(),
                    if f.rule.is_empty() {
                        Value::Null
                    } else {
                        json!(f.rule)
                    },
                );
                m.insert("stage".into(), opt(&f.stage.map(Stage::as_str)));
                m.insert("outcome".into(), json!(f.outcome.as_str()));
                m.insert("message".into(), json!(f.message));
                m.insert("storageClass".into(), opt(&f.storage_class));
                m.insert(
                    "patch".into(),
                    serde_json::to_value(&f.patch).unwrap_or_else(|_| json!([])),
                );
                let changes: Map<String, Value> = changes(&f.patch).into_iter().collect();
                m.insert("changes".into(), Value::Object(changes));
                m.insert("warnings".into(), json!(f.warnings));
                Value::Object(m)
            })
        })
        .collect();
    let errors: Vec<Value> = report
        .errors
        .iter()
        .map(|e| {
            let mut m = source_json(&e.source);
            m.insert("message".into(), json!(e.message));
            Value::Object(m)
        })
        .collect();
    let (origin, namespace) = match &meta.origin {
        super::Origin::Files => ("files", None),
        super::Origin::Cluster { namespace } => ("cluster", namespace.clone()),
    };
    json!({
        "apiVersion": REPORT_API_VERSION,
        "kind": REPORT_KIND,
        "policy": meta.policy,
        "dryRun": meta.dry_run,
        "origin": origin,
        "namespace": namespace,
        "summary": summary_json(&report.summary()),
        "findings": findings,
        "errors": errors,
    })
}

/// ANSI styling, on only when writing to a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn outcome(self, o: Outcome, padded: &str) -> String {
        let code = match o {
            Outcome::Denied => "1;31",
            Outcome::Audited | Outcome::Warned => "33",
            Outcome::Mutated => "36",
            Outcome::Allowed => "32",
        };
        self.paint(code, padded)
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_owned()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// The table: one row per finding (object, rule, outcome, message), the changed fields and the
/// warnings under each object, files as group headings, and the summary line.
pub fn to_text(report: &Report, style: Style) -> String {
    let mut out = String::new();
    let object_w = report
        .objects
        .iter()
        .map(|o| o.object.label().chars().count())
        .max()
        .unwrap_or(0)
        .clamp("OBJECT".len(), 64);
    let rule_w = report
        .objects
        .iter()
        .flat_map(|o| o.findings.iter().map(|f| f.rule.len().max(1)))
        .max()
        .unwrap_or(0)
        .max("RULE".len());
    let outcome_w = "OUTCOME".len() + 1;
    if !report.objects.is_empty() {
        let header = format!(
            "{}  {}  {}  MESSAGE",
            pad("OBJECT", object_w),
            pad("RULE", rule_w),
            pad("OUTCOME", outcome_w - 1)
        );
        let _ = writeln!(out, "{}", style.paint("1", &header));
    }
    let mut last_file: Option<&str> = None;
    for o in &report.objects {
        if let Some(file) = o.source.file.as_deref()
            && last_file != Some(file)
        {
            let heading = if file == super::input::STDIN {
                "(stdin)"
            } else {
                file
            };
            let _ = writeln!(out, "{}", style.paint("2", &format!("{heading}:")));
            last_file = Some(file);
        }
        let label = o.object.label();
        for (i, f) in o.findings.iter().enumerate() {
            let object = if i == 0 { label.as_str() } else { "" };
            let rule = if f.rule.is_empty() {
                "-"
            } else {
                f.rule.as_str()
            };
            let _ = writeln!(
                out,
                "{}  {}  {}  {}",
                pad(object, object_w),
                pad(rule, rule_w),
                style.outcome(f.outcome, &pad(f.outcome.as_str(), outcome_w - 1)),
                f.message
            );
            for (path, value) in changes(&f.patch) {
                let _ = writeln!(
                    out,
                    "    {}",
                    style.paint("36", &format!("+ {path}: {value}"))
                );
            }
        }
        // A warned finding's message is its warning: not printed twice.
        for w in o
            .warnings()
            .into_iter()
            .filter(|w| !o.findings.iter().any(|f| f.message == *w))
        {
            let _ = writeln!(out, "    {}", style.paint("33", &format!("warning: {w}")));
        }
    }
    let s = report.summary();
    let n = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    let mut line = format!(
        "{}, {} denied, {} mutated, {}",
        n(s.objects, "object", "objects"),
        s.denied,
        s.mutated,
        n(s.warnings, "warning", "warnings")
    );
    if s.audited > 0 {
        let _ = write!(line, ", {} audited", s.audited);
    }
    if s.errors > 0 {
        let _ = write!(
            line,
            "; {} could not be read",
            n(s.errors, "input", "inputs")
        );
    }
    if s.ignored > 0 {
        let _ = write!(
            line,
            "; {} of other kinds ignored",
            n(s.ignored, "document", "documents")
        );
    }
    if !report.objects.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", style.paint("1", &line));
    out
}

/// `(result, severity)` of a finding in a PolicyReport.
fn result_of(f: &Finding) -> (&'static str, Option<&'static str>) {
    match (f.outcome, f.stage) {
        (Outcome::Denied, _) => ("fail", Some("high")),
        // An audit-mode rule that would have refused: the requirement is not met.
        (Outcome::Audited, Some(Stage::Validate | Stage::Api)) => ("fail", Some("medium")),
        (Outcome::Audited, _) => ("warn", Some("low")),
        (Outcome::Warned, _) => ("warn", Some("medium")),
        (Outcome::Mutated | Outcome::Allowed, _) => ("pass", None),
    }
}

#[derive(Default)]
struct Counts {
    pass: usize,
    fail: usize,
    warn: usize,
    error: usize,
}

impl Counts {
    fn add(&mut self, result: &str) {
        match result {
            "pass" => self.pass += 1,
            "fail" => self.fail += 1,
            "warn" => self.warn += 1,
            _ => self.error += 1,
        }
    }

    fn json(&self) -> Value {
        json!({"pass": self.pass, "fail": self.fail, "warn": self.warn, "error": self.error, "skip": 0})
    }
}

/// `wgpolicyk8s.io/v1alpha2` reports: one PolicyReport per namespace for namespaced objects, one
/// ClusterPolicyReport for cluster-scoped objects and for inputs that could not be read
/// (`result: error`). `now` is the results' timestamp (seconds since the epoch).
pub fn to_policy_reports(report: &Report, now: i64) -> Vec<Value> {
    let mut namespaced: BTreeMap<String, (Vec<Value>, Counts)> = BTreeMap::new();
    let mut cluster: (Vec<Value>, Counts) = (Vec::new(), Counts::default());
    for o in &report.objects {
        let mut resource = json!({"apiVersion": o.object.api_version, "kind": o.object.kind, "name": o.object.name});
        if let Some(ns) = &o.object.namespace {
            resource["namespace"] = json!(ns);
        }
        for f in &o.findings {
            let (result, severity) = result_of(f);
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
            if !f.patch.is_empty() {
                properties.insert("patch", serde_json::to_string(&f.patch).unwrap_or_default());
            }
            let mut r = json!({
                "source": REPORT_SOURCE,
                "policy": POLICY_NAME,
                "category": "Storage",
                "result": result,
                "scored": true,
                "timestamp": {"seconds": now, "nanos": 0},
                "message": f.message,
                "resources": [resource.clone()],
                "properties": properties,
            });
            if !f.rule.is_empty() {
                r["rule"] = json!(f.rule);
            }
            if let Some(s) = severity {
                r["severity"] = json!(s);
            }
            let bucket = match &o.object.namespace {
                Some(ns) => namespaced.entry(ns.clone()).or_default(),
                None => &mut cluster,
            };
            bucket.1.add(result);
            bucket.0.push(r);
        }
    }
    for e in &report.errors {
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
        cluster.1.add("error");
        cluster.0.push(json!({
            "source": REPORT_SOURCE,
            "policy": POLICY_NAME,
            "category": "Storage",
            "result": "error",
            "scored": true,
            "timestamp": {"seconds": now, "nanos": 0},
            "message": e.to_string(),
            "properties": properties,
        }));
    }
    let labels = json!({"app.kubernetes.io/managed-by": REPORT_SOURCE});
    let mut docs = Vec::new();
    for (ns, (results, counts)) in &namespaced {
        docs.push(json!({
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReport",
            "metadata": {"name": POLICY_REPORT_NAME, "namespace": ns, "labels": labels},
            "summary": counts.json(),
            "results": results,
        }));
    }
    if !cluster.0.is_empty() || docs.is_empty() {
        docs.push(json!({
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "ClusterPolicyReport",
            "metadata": {"name": POLICY_REPORT_NAME, "labels": labels},
            "summary": cluster.1.json(),
            "results": cluster.0,
        }));
    }
    docs
}

/// The reports as multi-document YAML.
pub fn to_policy_report_yaml(
    report: &Report,
    now: i64,
) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(&to_policy_reports(report, now))
}

#[cfg(test)]
mod tests {
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

    fn object(findings: Vec<Finding>) -> ObjectReport {
        ObjectReport {
            source: Source::file("f.yaml"),
            object: ObjectRef {
                api_version: "v1".into(),
                kind: "PersistentVolumeClaim".into(),
                namespace: Some("a".into()),
                name: "d".into(),
            },
            findings,
        }
    }

    fn f(outcome: Outcome, stage: Stage) -> Finding {
        Finding {
            rule: "accessModes".into(),
            stage: Some(stage),
            outcome,
            message: "m".into(),
            storage_class: None,
            patch: Vec::new(),
            warnings: vec!["w".into()],
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
            source: Source::file("x"),
            message: "bad".into(),
        });
        assert_eq!(r.exit_code(), 2);
        let s = r.summary();
        assert_eq!(
            (s.objects, s.denied, s.mutated, s.warnings, s.errors),
            (2, 1, 1, 2, 1)
        );
    }

    #[test]
    fn policy_report_maps_outcomes_and_counts() {
        let r = Report {
            objects: vec![object(vec![
                f(Outcome::Denied, Stage::Validate),
                f(Outcome::Audited, Stage::Mutate),
            ])],
            errors: vec![InputError {
                source: Source::file("x.yaml"),
                message: "bad".into(),
            }],
            ignored: 0,
        };
        let docs = to_policy_reports(&r, 7);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "PolicyReport");
        assert_eq!(docs[0]["metadata"]["namespace"], "a");
        assert_eq!(
            docs[0]["summary"],
            json!({"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0})
        );
        assert_eq!(docs[0]["results"][0]["severity"], "high");
        assert_eq!(docs[1]["kind"], "ClusterPolicyReport");
        assert_eq!(docs[1]["results"][0]["result"], "error");
    }
}
