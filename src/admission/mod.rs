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

use crate::kinds;
use crate::policy::{
    self, Catalog, Decision, Invalid, Object, Operation, Policy, Request, Subject,
};

pub use crate::policy::Endpoint;

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
    #[error("failed to encode the patch: {0}")]
    Patch(kube::core::admission::SerializePatchError),
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
pub struct Answer {
    pub info: RequestInfo,
    pub decision: Decision,
    pub response: AdmissionReview<DynamicObject>,
}

impl Answer {
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
) -> Result<Answer, ReviewError> {
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
    match kinds::lookup(&gvk.group, &gvk.version, &gvk.kind).and_then(codec) {
        Some(c) => (c.review)(endpoint, policy, catalog, body),
        // Kinds this webhook has no rule for are allowed untouched.
        None => decide_as::<DynamicObject>(endpoint, policy, catalog, body, |_| None),
    }
}

/// A kind of the table as the rules see it: the typed object's view.
trait Reviewed: Resource + DeserializeOwned {
    /// The entry of the kinds table this type decodes.
    const KIND: &'static str;
    fn view(&self) -> Object<'_>;
}

/// The pod spec path of a workload kind, from the table.
fn pod_spec_path(kind: &str) -> &'static str {
    kinds::KINDS
        .iter()
        .find(|k| k.kind == kind)
        .and_then(kinds::Kind::pod_spec)
        .unwrap_or("spec")
}

impl Reviewed for PersistentVolumeClaim {
    const KIND: &'static str = "PersistentVolumeClaim";
    fn view(&self) -> Object<'_> {
        Object::Pvc(self)
    }
}

impl Reviewed for PersistentVolume {
    const KIND: &'static str = "PersistentVolume";
    fn view(&self) -> Object<'_> {
        Object::Pv(self)
    }
}

impl Reviewed for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn view(&self) -> Object<'_> {
        Object::StatefulSet(self)
    }
}

/// Workloads whose rules read only the pod spec.
macro_rules! pod_spec_kind {
    ($ty:ty, $kind:literal, |$o:ident| $spec:expr) => {
        impl Reviewed for $ty {
            const KIND: &'static str = $kind;
            fn view(&self) -> Object<'_> {
                let $o = self;
                Object::PodSpec {
                    spec: $spec,
                    path: pod_spec_path($kind),
                }
            }
        }
    };
}

pod_spec_kind!(Pod, "Pod", |o| o.spec.as_ref());
pod_spec_kind!(Deployment, "Deployment", |o| o
    .spec
    .as_ref()
    .and_then(|s| s.template.spec.as_ref()));
pod_spec_kind!(DaemonSet, "DaemonSet", |o| o
    .spec
    .as_ref()
    .and_then(|s| s.template.spec.as_ref()));
pod_spec_kind!(ReplicaSet, "ReplicaSet", |o| o
    .spec
    .as_ref()
    .and_then(|s| s.template.as_ref())
    .and_then(|t| t.spec.as_ref()));
pod_spec_kind!(Job, "Job", |o| o
    .spec
    .as_ref()
    .and_then(|s| s.template.spec.as_ref()));
pod_spec_kind!(CronJob, "CronJob", |o| o
    .spec
    .as_ref()
    .and_then(|s| s.job_template.spec.as_ref())
    .and_then(|j| j.template.spec.as_ref()));

type ReviewFn = fn(Endpoint, &Policy, &Catalog, &[u8]) -> Result<Answer, ReviewError>;
type CheckFn = fn(&serde_json::Value) -> Result<(), serde_json::Error>;

/// How to decode one kind of the table.
#[derive(Clone, Copy)]
struct Codec {
    review: ReviewFn,
    check: CheckFn,
}

fn codec_of<K: Reviewed>() -> Codec {
    Codec {
        review: |endpoint, policy, catalog, body| {
            decide_as::<K>(endpoint, policy, catalog, body, |o| Some(o.view()))
        },
        check: |v| K::deserialize(v).map(drop),
    }
}

/// The typed decoding of a kind of the table (every kind has one: a test checks).
fn codec(kind: &kinds::Kind) -> Option<Codec> {
    let all = [
        (
            PersistentVolumeClaim::KIND,
            codec_of::<PersistentVolumeClaim>(),
        ),
        (PersistentVolume::KIND, codec_of::<PersistentVolume>()),
        (StatefulSet::KIND, codec_of::<StatefulSet>()),
        (Pod::KIND, codec_of::<Pod>()),
        (Deployment::KIND, codec_of::<Deployment>()),
        (DaemonSet::KIND, codec_of::<DaemonSet>()),
        (ReplicaSet::KIND, codec_of::<ReplicaSet>()),
        (Job::KIND, codec_of::<Job>()),
        (CronJob::KIND, codec_of::<CronJob>()),
    ];
    all.into_iter()
        .find(|(k, _)| *k == kind.kind)
        .map(|(_, c)| c)
}

/// Decodes an object of a kind of the table as the webhook will, for a clear error on a
/// malformed manifest (`audit`).
pub fn check_object(
    kind: &kinds::Kind,
    object: &serde_json::Value,
) -> Result<(), serde_json::Error> {
    match codec(kind) {
        Some(c) => (c.check)(object),
        None => Ok(()),
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
    operation(op).as_str()
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
) -> Result<Answer, ReviewError>
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
    Ok(Answer {
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
            .map_err(ReviewError::Patch)?;
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
