//! The `json` format: one versioned document (`storage-policy.io/v1alpha2` `AuditReport`) with the
//! header facts, the summary, one entry per object (its patch and warnings, once), one per
//! finding and one per unreadable input. Every key is
//! always present (`null` when it does not apply), and keys are sorted, so the document is stable.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{ObjectReport, REPORT_API_VERSION, REPORT_KIND, Report, ReportMeta, changes};
use crate::audit::{Location, Origin};

fn value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn source_json(s: &Location) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("file".into(), value(&s.file));
    m.insert("document".into(), value(&s.document));
    m.insert("item".into(), value(&s.item));
    m.insert("line".into(), value(&s.line));
    m
}

fn object_json(o: &ObjectReport) -> Map<String, Value> {
    let mut m = source_json(&o.source);
    m.insert("apiVersion".into(), json!(o.object.api_version));
    m.insert("kind".into(), json!(o.object.kind));
    m.insert("namespace".into(), value(&o.object.namespace));
    m.insert("name".into(), json!(o.object.name));
    m
}

/// The json report: `{"apiVersion": "storage-policy.io/v1alpha2", "kind": "AuditReport", ...}`.
/// Every key is always present (`null` when it does not apply). `objects` has one entry per
/// object with what belongs to it once (its outcome in the summary, the patch, the warnings a
/// client sees); `findings` one per rule finding, naming its object by the same keys.
pub fn to_json(report: &Report, meta: &ReportMeta) -> Value {
    let objects: Vec<Value> = report
        .objects
        .iter()
        .map(|o| {
            let mut m = object_json(o);
            m.insert("outcome".into(), value(&o.counted_as()));
            m.insert(
                "patch".into(),
                serde_json::to_value(&o.patch).unwrap_or_else(|_| json!([])),
            );
            let changes: Map<String, Value> = changes(&o.patch).into_iter().collect();
            m.insert("changes".into(), Value::Object(changes));
            m.insert("warnings".into(), json!(o.warnings));
            Value::Object(m)
        })
        .collect();
    let findings: Vec<Value> = report
        .objects
        .iter()
        .flat_map(|o| {
            o.findings.iter().map(move |f| {
                let mut m = object_json(o);
                let rule = (!f.rule.is_empty()).then_some(f.rule.as_str());
                m.insert("rule".into(), value(&rule));
                m.insert("stage".into(), value(&f.stage));
                m.insert("outcome".into(), value(&f.outcome));
                m.insert("message".into(), json!(f.message));
                m.insert("storageClass".into(), value(&f.storage_class));
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
        Origin::Files => ("files", None),
        Origin::Cluster { namespace } => ("cluster", namespace.clone()),
    };
    json!({
        "apiVersion": REPORT_API_VERSION,
        "kind": REPORT_KIND,
        "policy": meta.policy,
        "auditOnly": meta.dry_run,
        "origin": origin,
        "namespace": namespace,
        "summary": value(&report.summary()),
        "objects": objects,
        "findings": findings,
        "errors": errors,
    })
}
