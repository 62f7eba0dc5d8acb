//! The admission layer: an `admission.k8s.io/v1` AdmissionReview in, the rules' [`Decision`]
//! out, and the AdmissionReview answer built from it. It knows the wire format (kube-core and
//! k8s-openapi types) but neither HTTP nor TLS: the server and the `review` command both call
//! [`review`].

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation,
};
use kube::core::response::{StatusCause, StatusDetails, StatusSummary};
use kube::core::{DynamicObject, GroupVersionKind, Resource, Status};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::policy::{
    self, Catalog, Decision, Invalid, Object, Operation, Policy, Request, Subject,
};

/// The two webhook endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }

    pub fn parse(s: &str) -> Option<Endpoint> {
        match s {
            "mutate" => Some(Endpoint::Mutate),
            "validate" => Some(Endpoint::Validate),
            _ => None,
        }
    }
}

/// Why a body is not a review this webhook can answer (the server answers 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("malformed AdmissionReview: {0}")]
    Json(serde_json::Error),
    #[error(
        "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {api_version:?} kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("malformed {kind} in AdmissionReview request: {cause}")]
    Object {
        kind: String,
        cause: serde_json::Error,
    },
    #[error("failed to encode the response: {0}")]
    Encode(serde_json::Error),
}

/// Who and what a review was about, for logs and metrics (no object content).
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub uid: String,
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
}

/// The answer to one review.
#[derive(Debug)]
pub struct Outcome {
    pub info: RequestInfo,
    pub decision: Decision,
    pub response: AdmissionReview<DynamicObject>,
}

impl Outcome {
    /// The response as JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, ReviewError> {
        let patch = self
            .response
            .response
            .as_ref()
            .and_then(|r| r.patch.as_deref());
        match patch {
            None => serde_json::to_vec(&self.response).map_err(ReviewError::Encode),
            // kube-core serializes `patch: Vec<u8>` as an array of numbers (kube-rs/kube#1781);
            // the API server wants the base64 string Go uses for `[]byte`.
            Some(bytes) => {
                use base64::Engine as _;
                let mut v = serde_json::to_value(&self.response).map_err(ReviewError::Encode)?;
                v["response"]["patch"] = serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                );
                serde_json::to_vec(&v).map_err(ReviewError::Encode)
            }
        }
    }
}

/// Just enough of a review to choose the typed decoding: its type and the request's kind.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
struct EnvelopeRequest {
    #[serde(default)]
    kind: Option<GroupVersionKind>,
    #[serde(rename = "subResource", default)]
    sub_resource: Option<String>,
}

/// Decides one AdmissionReview body.
pub fn review(
    endpoint: Endpoint,
    policy: &Policy,
    catalog: &Catalog,
    body: &[u8],
) -> Result<Outcome, ReviewError> {
    let env: Envelope = serde_json::from_slice(body).map_err(ReviewError::Json)?;
    if env.api_version != kube::core::admission::META_API_VERSION_V1
        || env.kind != kube::core::admission::META_KIND
    {
        return Err(ReviewError::WrongType {
            api_version: env.api_version,
            kind: env.kind,
        });
    }
    let Some(er) = env.request else {
        return Err(ReviewError::NoRequest);
    };
    // Subresources (status, scale) carry no storage decision.
    if er.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return decide_as::<DynamicObject>(endpoint, policy, catalog, body, |_| None);
    }
    // A request without a kind gets the typed decoder's precise complaint.
    let Some(gvk) = er.kind.as_ref() else {
        return decide_as::<DynamicObject>(endpoint, policy, catalog, body, |_| None);
    };
    match (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()) {
        ("", "v1", "PersistentVolumeClaim") => {
            decide_as::<PersistentVolumeClaim>(endpoint, policy, catalog, body, |o| {
                Some(Object::Pvc(o))
            })
        }
        ("", "v1", "PersistentVolume") => {
            decide_as::<PersistentVolume>(endpoint, policy, catalog, body, |o| Some(Object::Pv(o)))
        }
        ("apps", "v1", "StatefulSet") => {
            decide_as::<StatefulSet>(endpoint, policy, catalog, body, |o| {
                Some(Object::StatefulSet(o))
            })
        }
        ("", "v1", "Pod") => decide_as::<Pod>(endpoint, policy, catalog, body, |o| {
            Some(Object::PodSpec {
                spec: o.spec.as_ref(),
                path: "spec",
            })
        }),
        ("apps", "v1", "Deployment") => {
            decide_as::<Deployment>(endpoint, policy, catalog, body, |o| {
                Some(Object::PodSpec {
                    spec: o.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                    path: "spec.template.spec",
                })
            })
        }
        ("apps", "v1", "DaemonSet") => {
            decide_as::<DaemonSet>(endpoint, policy, catalog, body, |o| {
                Some(Object::PodSpec {
                    spec: o.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                    path: "spec.template.spec",
                })
            })
        }
        ("apps", "v1", "ReplicaSet") => {
            decide_as::<ReplicaSet>(endpoint, policy, catalog, body, |o| {
                Some(Object::PodSpec {
                    spec: o
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .and_then(|t| t.spec.as_ref()),
                    path: "spec.template.spec",
                })
            })
        }
        ("batch", "v1", "Job") => decide_as::<Job>(endpoint, policy, catalog, body, |o| {
            Some(Object::PodSpec {
                spec: o.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                path: "spec.template.spec",
            })
        }),
        ("batch", "v1", "CronJob") => decide_as::<CronJob>(endpoint, policy, catalog, body, |o| {
            Some(Object::PodSpec {
                spec: o
                    .spec
                    .as_ref()
                    .and_then(|s| s.job_template.spec.as_ref())
                    .and_then(|j| j.template.spec.as_ref()),
                path: "spec.jobTemplate.spec.template.spec",
            })
        }),
        // Kinds this webhook has no rule for are allowed untouched.
        _ => decide_as::<DynamicObject>(endpoint, policy, catalog, body, |_| None),
    }
}

fn operation(op: &KubeOperation) -> Operation {
    match op {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => Operation::Connect,
    }
}

fn operation_str(op: &KubeOperation) -> &'static str {
    match op {
        KubeOperation::Create => "CREATE",
        KubeOperation::Update => "UPDATE",
        KubeOperation::Delete => "DELETE",
        KubeOperation::Connect => "CONNECT",
    }
}

/// The name error messages use: the object's, else the request's, else its `generateName`.
fn subject_name<'a>(meta: Option<&'a ObjectMeta>, request_name: &'a str) -> &'a str {
    meta.and_then(|m| m.name.as_deref())
        .filter(|n| !n.is_empty())
        .or_else(|| (!request_name.is_empty()).then_some(request_name))
        .or_else(|| meta.and_then(|m| m.generate_name.as_deref()))
        .unwrap_or_default()
}

fn decide_as<K>(
    endpoint: Endpoint,
    policy: &Policy,
    catalog: &Catalog,
    body: &[u8],
    view: impl for<'a> Fn(&'a K) -> Option<Object<'a>>,
) -> Result<Outcome, ReviewError>
where
    K: Resource + DeserializeOwned,
{
    let review: AdmissionReview<K> =
        serde_json::from_slice(body).map_err(|cause| ReviewError::Object {
            kind: std::any::type_name::<K>()
                .rsplit("::")
                .next()
                .unwrap_or("object")
                .to_owned(),
            cause,
        })?;
    let req: AdmissionRequest<K> = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let meta = req
        .object
        .as_ref()
        .or(req.old_object.as_ref())
        .map(Resource::meta);
    let name = subject_name(meta, &req.name);
    let info = RequestInfo {
        uid: req.uid.clone(),
        group: req.kind.group.clone(),
        kind: req.kind.kind.clone(),
        namespace: req.namespace.clone().unwrap_or_default(),
        name: name.to_owned(),
        operation: operation_str(&req.operation),
        dry_run: req.dry_run,
    };
    let request = Request {
        operation: operation(&req.operation),
        namespace: req.namespace.as_deref().filter(|n| !n.is_empty()),
        username: req.user_info.username.as_deref().unwrap_or_default(),
        subject: Subject {
            group: &req.kind.group,
            kind: &req.kind.kind,
            name,
        },
        object: req.object.as_ref().and_then(&view),
        old_object: req.old_object.as_ref().and_then(&view),
    };
    let decision = match endpoint {
        Endpoint::Mutate => policy::mutate(policy, catalog, &request),
        Endpoint::Validate => policy::validate(policy, catalog, &request),
    };
    let response = respond(&req, endpoint, &decision)?;
    Ok(Outcome {
        info,
        decision,
        response,
    })
}

/// The `metav1.Status` of a denial, exactly as `apierrors.NewInvalid` builds it.
pub fn invalid_status(inv: &Invalid) -> Status {
    Status {
        status: Some(StatusSummary::Failure),
        code: 422,
        message: inv.message(),
        metadata: Some(ListMeta::default()),
        reason: "Invalid".to_owned(),
        details: Some(StatusDetails {
            name: inv.name.clone(),
            group: inv.group.clone(),
            kind: inv.kind.clone(),
            uid: String::new(),
            causes: inv
                .errors
                .iter()
                .map(|e| StatusCause {
                    reason: e.error_type.cause_reason().to_owned(),
                    message: e.body(),
                    field: e.field.to_string(),
                })
                .collect(),
            retry_after_seconds: 0,
        }),
    }
}

fn respond<K: Resource>(
    req: &AdmissionRequest<K>,
    endpoint: Endpoint,
    decision: &Decision,
) -> Result<AdmissionReview<DynamicObject>, ReviewError> {
    let mut resp = AdmissionResponse::from(req);
    if let Some(inv) = &decision.denial {
        resp.allowed = false;
        resp.result = invalid_status(inv);
    }
    // A validating webhook may not return a patch; the rules never make one there.
    if endpoint == Endpoint::Mutate && !decision.patch.is_empty() {
        resp = resp
            .with_patch(json_patch::Patch(decision.patch.clone()))
            .map_err(|e| {
                ReviewError::Encode(serde_json::Error::io(std::io::Error::other(e.to_string())))
            })?;
    }
    if !decision.warnings.is_empty() {
        resp.warnings = Some(decision.warnings.clone());
    }
    resp.audit_annotations = decision
        .audit_annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(resp.into_review())
}

#[cfg(test)]
mod tests;
