//! One object through the webhook, as kube-apiserver would send it on CREATE: a synthetic
//! AdmissionReview to `/mutate` via [`admission::review`], the returned JSON Patch applied, the
//! API server's own validation of the patched object, then `/validate`. Findings come from the
//! responses (patch, `status.message`, warnings), never from a second implementation of a rule.

use json_patch::PatchOperation;
use serde_json::{Value, json};

use super::report::{AuditFinding, ObjectRef, ObjectReport, Outcome, Stage};
use super::{AUDIT_USERNAME, Document, checks};
use crate::admission::{self, Answer, Endpoint, ReviewError};
use crate::kinds::{self, Kind};
use crate::policy::{Action, Catalog, Policy};

/// The kind of an `apiVersion` and `kind`, if the webhook handles it (the kinds table).
pub fn audited_kind(api_version: &str, kind: &str) -> Option<&'static Kind> {
    kinds::by_api_version(api_version, kind)
}

/// Why an object could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("not an object the webhook reviews")]
    NotAudited,
    #[error("malformed {kind}: {cause}")]
    Malformed {
        kind: &'static str,
        cause: serde_json::Error,
    },
    #[error(transparent)]
    Review(#[from] ReviewError),
}

/// The AdmissionReview kube-apiserver would send for a CREATE of `object`.
pub fn create_review(kind: &Kind, object: &Value, namespace: Option<&str>, uid: &str) -> Value {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let gvk = json!({"group": kind.group, "version": kind.version, "kind": kind.kind});
    let gvr = json!({"group": kind.group, "version": kind.version, "resource": kind.plural});
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": name,
        "operation": "CREATE",
        "userInfo": {"username": AUDIT_USERNAME},
        "object": object,
        "oldObject": null,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    });
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    })
}

/// The object as the API server hands it to admission on CREATE: the request's namespace filled
/// in, server-set fields (an exported or live object has them) dropped.
pub fn as_created(kind: &Kind, object: &Value) -> (Value, Option<String>) {
    let mut obj = object.clone();
    let namespace = kind.namespaced.then(|| {
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_owned()
    });
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    for k in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
        "generation",
        "selfLink",
    ] {
        meta.remove(k);
    }
    // The API server records the fields a request writes in managedFields before admission; the
    // webhook reads them to tell a class the user wrote from the DefaultStorageClass plugin's.
    // The object given to `audit` is what is written: its class is the user's.
    if kind.kind == "PersistentVolumeClaim"
        && object
            .pointer("/spec/storageClassName")
            .is_some_and(Value::is_string)
    {
        meta.insert(
            "managedFields".to_owned(),
            json!([{
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:storageClassName": {}}},
            }]),
        );
    }
    match &namespace {
        Some(ns) => {
            meta.insert("namespace".to_owned(), json!(ns));
        }
        None => {
            meta.remove("namespace");
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    (obj, namespace)
}

/// The JSON Patch of a mutating response, decoded from the answer's bytes as kube-apiserver
/// decodes it (base64 `response.patch`, then a JSON Patch).
fn response_patch(outcome: &Answer) -> Result<Vec<PatchOperation>, serde_json::Error> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Out {
        response: Response,
    }
    #[derive(serde::Deserialize)]
    struct Response {
        patch: Option<String>,
    }
    if outcome.patch().is_empty() {
        return Ok(Vec::new());
    }
    let bytes = outcome
        .to_json()
        .map_err(|e| serde::de::Error::custom(e.to_string()))?;
    let out: Out = serde_json::from_slice(&bytes)?;
    let Some(b64) = out.response.patch else {
        return Ok(Vec::new());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(serde::de::Error::custom)?;
    serde_json::from_slice::<json_patch::Patch>(&raw).map(|p| p.0)
}

fn response_warnings(outcome: &Answer) -> Vec<String> {
    outcome.decision.warnings.clone()
}

/// `status.message` of a denying response.
fn denial_message(outcome: &Answer) -> Option<String> {
    outcome.denial_message.clone()
}

fn outcome_of(action: Action) -> Outcome {
    match action {
        Action::Mutated => Outcome::Mutated,
        Action::Denied => Outcome::Denied,
        Action::Audited => Outcome::Audited,
        Action::Warned => Outcome::Warned,
    }
}

/// The findings of one review: the rules' findings, the denial merged into one finding carrying
/// `status.message` exactly as the webhook returns it. The patch and the warnings belong to the
/// object ([`ObjectReport`]), not to a finding.
fn findings_of(stage: Stage, outcome: &Answer) -> Vec<AuditFinding> {
    let denial = denial_message(outcome);
    let mut out: Vec<AuditFinding> = Vec::new();
    for f in &outcome.decision.findings {
        let result = outcome_of(f.action);
        // One denial per rule: its message is the whole `status.message`.
        if result == Outcome::Denied
            && let Some(existing) = out
                .iter_mut()
                .find(|x| x.outcome == Outcome::Denied && x.rule == f.rule.as_str())
        {
            if existing.storage_class.is_none() {
                existing.storage_class = f.storage_class.clone();
            }
            continue;
        }
        out.push(AuditFinding {
            rule: f.rule.as_str().to_owned(),
            stage: Some(stage),
            outcome: result,
            message: match (&denial, result) {
                (Some(d), Outcome::Denied) => d.clone(),
                _ => f.message.clone(),
            },
            storage_class: f.storage_class.clone(),
        });
    }
    // A denial without a rule finding (none today) is still reported as the webhook returns it.
    if let Some(d) = denial
        && !out.iter().any(|f| f.outcome == Outcome::Denied)
    {
        out.push(AuditFinding {
            rule: String::new(),
            stage: Some(stage),
            outcome: Outcome::Denied,
            message: d,
            storage_class: None,
        });
    }
    out
}

/// Reviews one object as a CREATE: `/mutate`, patch, the API server's validation, `/validate`.
/// `seq` numbers the synthetic request's uid.
pub fn audit_object(
    policy: &Policy,
    catalog: &Catalog,
    doc: &Document,
    seq: usize,
) -> Result<ObjectReport, AuditError> {
    let api_version = doc
        .value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind_name = doc
        .value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = audited_kind(api_version, kind_name).ok_or(AuditError::NotAudited)?;
    admission::check_object(kind, &doc.value).map_err(|cause| AuditError::Malformed {
        kind: kind.kind,
        cause,
    })?;
    let (object, namespace) = as_created(kind, &doc.value);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        })
        .unwrap_or_default()
        .to_owned();
    let mut report = ObjectReport {
        source: doc.source.clone(),
        object: ObjectRef {
            api_version: kind.api_version(),
            kind: kind.kind.to_owned(),
            namespace: namespace.clone(),
            name,
        },
        findings: Vec::new(),
        patch: Vec::new(),
        warnings: Vec::new(),
    };
    let uid = format!("00000000-0000-4000-8000-{seq:012x}");

    let body = serde_json::to_vec(&create_review(kind, &object, namespace.as_deref(), &uid))
        .map_err(ReviewError::Encode)?;
    let mutated = admission::review(Endpoint::Mutate, policy, catalog, &body)?;
    let patch = response_patch(&mutated).map_err(ReviewError::Json)?;
    report.findings.extend(findings_of(Stage::Mutate, &mutated));
    report.add_warnings(response_warnings(&mutated));
    if denial_message(&mutated).is_some() {
        return Ok(report);
    }
    let mut patched = object;
    if let Err(e) = json_patch::patch(&mut patched, &patch) {
        // kube-apiserver fails the request (HTTP 500) when a webhook's patch does not apply.
        report.findings.push(AuditFinding {
            rule: String::new(),
            stage: Some(Stage::Mutate),
            outcome: Outcome::Denied,
            message: format!(
                "Internal error occurred: the webhook's JSON patch does not apply: {e}"
            ),
            storage_class: None,
        });
        report.patch = patch;
        return Ok(report);
    }

    report.patch = patch;

    // The API server validates the object between mutating and validating admission: a request
    // it refuses never reaches `/validate`.
    if let Some(finding) = checks::api_validation(kind, &patched) {
        report.findings.push(finding);
        return Ok(report);
    }

    let body = serde_json::to_vec(&create_review(kind, &patched, namespace.as_deref(), &uid))
        .map_err(ReviewError::Encode)?;
    let validated = admission::review(Endpoint::Validate, policy, catalog, &body)?;
    report
        .findings
        .extend(findings_of(Stage::Validate, &validated));
    report.add_warnings(response_warnings(&validated));
    Ok(report)
}
