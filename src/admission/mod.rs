//! The admission layer: an `admission.k8s.io/v1` AdmissionReview in, the rules' [`Decision`]
//! out, and the AdmissionReview answer built from it. It knows the wire format (kube-core and
//! k8s-openapi types) but neither HTTP nor TLS: the server and the `review` command both call
//! [`review`].
//!
//! The request path reads the body once: one serde pass over the review decodes the request's
//! fields and its objects straight into k8s-openapi's types, with a lean `metadata` ([`Lean`]),
//! and [`Answer::to_json`] writes the answer directly (`../shared/STYLE.md`: parse once). Tests
//! check both against kube-core's typed decoding and `AdmissionResponse` (`tests.rs`,
//! `tests/properties.rs`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use json_patch::PatchOperation;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation as KubeOperation;
use kube::core::{GroupVersionKind, Resource};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::kinds;
use crate::policy::workloads::Runs;

mod capped;
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
    #[error("malformed AdmissionReview: request.{0} is missing")]
    Missing(&'static str),
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

/// The answer to one review: the rules' decision, encoded by [`Answer::to_json`].
#[derive(Debug)]
pub struct Answer {
    pub info: RequestInfo,
    pub endpoint: Endpoint,
    pub decision: Decision,
    /// `status.message` of the denial, made once (the answer and the log both carry it).
    pub denial_message: Option<String>,
}

impl Answer {
    /// The JSON Patch the answer carries: the decision's, on `/mutate` only (a validating webhook
    /// may not return one; the rules never make one there).
    pub fn patch(&self) -> &[PatchOperation] {
        match self.endpoint {
            Endpoint::Mutate => &self.decision.patch,
            Endpoint::Validate => &[],
        }
    }

    /// The response as JSON bytes, encoded directly (no intermediate `serde_json::Value`): an
    /// `admission.k8s.io/v1` AdmissionReview whose `response` is what kube-core's
    /// `AdmissionResponse` serializes, with `patch` as the base64 string Go uses for `[]byte`
    /// (kube-core writes an array of numbers, kube-rs/kube#1781).
    pub fn to_json(&self) -> Result<Vec<u8>, ReviewError> {
        let patch = self.patch();
        let encoded = if patch.is_empty() {
            None
        } else {
            let mut b64 =
                base64::write::EncoderStringWriter::new(&base64::engine::general_purpose::STANDARD);
            serde_json::to_writer(&mut b64, patch).map_err(ReviewError::Encode)?;
            Some(b64.into_inner())
        };
        let d = &self.decision;
        let out = ReviewOut {
            api_version: kube::core::admission::META_API_VERSION_V1,
            kind: kube::core::admission::META_KIND,
            response: ResponseOut {
                uid: &self.info.uid,
                allowed: d.allowed(),
                status: StatusOut {
                    denial: d.denial.as_ref().zip(self.denial_message.as_deref()),
                },
                patch_type: encoded.as_ref().map(|_| "JSONPatch"),
                patch: encoded,
                warnings: &d.warnings,
                audit_annotations: &d.audit_annotations,
            },
        };
        let mut buf = Vec::with_capacity(512);
        serde_json::to_writer(&mut buf, &out).map_err(ReviewError::Encode)?;
        Ok(buf)
    }
}

#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: StatusOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
}

/// The `metav1.Status` of the answer: `{}` when allowed; when denied, exactly what
/// `apierrors.NewInvalid` builds (`Failure`, 422, `Invalid`, one cause per field error), with
/// empty fields left out as Go's `omitempty` does.
struct StatusOut<'a> {
    denial: Option<(&'a Invalid, &'a str)>,
}

impl Serialize for StatusOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let Some((inv, message)) = self.denial else {
            return s.serialize_map(Some(0))?.end();
        };
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("status", "Failure")?;
        m.serialize_entry("code", &422)?;
        m.serialize_entry("message", message)?;
        m.serialize_entry("metadata", &Empty {})?;
        m.serialize_entry("reason", "Invalid")?;
        m.serialize_entry("details", &DetailsOut(inv))?;
        m.end()
    }
}

#[derive(Serialize)]
struct Empty {}

struct DetailsOut<'a>(&'a Invalid);

impl Serialize for DetailsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let inv = self.0;
        let mut m = s.serialize_map(None)?;
        for (key, value) in [
            ("name", &inv.name),
            ("group", &inv.group),
            ("kind", &inv.kind),
        ] {
            if !value.is_empty() {
                m.serialize_entry(key, value)?;
            }
        }
        if !inv.errors.is_empty() {
            // At most MAX_CAUSES: the message counts the rest.
            let causes: Vec<CauseOut> = inv
                .errors
                .iter()
                .take(policy::limits::MAX_CAUSES)
                .map(|e| CauseOut {
                    reason: e.error_type.cause_reason(),
                    message: e.body(),
                    field: e.field.to_string(),
                })
                .collect();
            m.serialize_entry("causes", &causes)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct CauseOut {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

/// A kind of the table as the rules see it: the typed object's view.
trait Reviewed: Resource {
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
    fn view(&self) -> Object<'_> {
        Object::Pvc(self)
    }
}

impl Reviewed for PersistentVolume {
    fn view(&self) -> Object<'_> {
        Object::Pv(self)
    }
}

impl Reviewed for StatefulSet {
    fn view(&self) -> Object<'_> {
        Object::StatefulSet(self)
    }
}

/// Workloads whose rules read the pod spec and how many pods of it run at once.
macro_rules! pod_spec_kind {
    ($ty:ty, $kind:literal, |$o:ident| $spec:expr, $runs:expr) => {
        impl Reviewed for $ty {
            fn view(&self) -> Object<'_> {
                let $o = self;
                Object::PodSpec {
                    spec: $spec,
                    path: pod_spec_path($kind),
                    runs: $runs,
                }
            }
        }
    };
}

pod_spec_kind!(Pod, "Pod", |o| o.spec.as_ref(), Runs::One);
pod_spec_kind!(
    Deployment,
    "Deployment",
    |o| o.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
    Runs::of_deployment(o)
);
pod_spec_kind!(
    DaemonSet,
    "DaemonSet",
    |o| o.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
    Runs::of_daemon_set(o)
);
pod_spec_kind!(
    ReplicaSet,
    "ReplicaSet",
    |o| o
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref()),
    Runs::of_replica_set(o)
);
pod_spec_kind!(
    Job,
    "Job",
    |o| o.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
    Runs::of_job(o.spec.as_ref())
);
pod_spec_kind!(
    CronJob,
    "CronJob",
    |o| o
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .and_then(|j| j.template.spec.as_ref()),
    Runs::of_cron_job(o)
);

/// The typed decodings of the kinds of the table (every kind has one: a test checks).
macro_rules! typed_kinds {
    ($($variant:ident($ty:ty) = $kind:literal),* $(,)?) => {
        /// An object of the review, decoded as the typed model of its kind; kinds without rules
        /// (and subresources) are skipped unread.
        #[derive(Debug)]
        enum Typed {
            $($variant(Box<$ty>),)*
            /// Decoded whole: a StorageClass has no `spec`, and is small.
            StorageClass(Box<StorageClass>),
            Other,
        }

        /// The kinds [`Typed`] decodes.
        #[cfg(test)]
        const TYPED_KINDS: &[&str] = &[$($kind,)* "StorageClass"];

        impl Typed {
            /// Decodes an object of `kind` (a name from the kinds table); `None` skips it.
            fn decode<'de, D: Deserializer<'de>>(
                kind: Option<&str>,
                d: D,
            ) -> Result<Typed, D::Error> {
                match kind {
                    $(Some($kind) => MapOnly::<Lean<$ty>>::deserialize(d)
                        .and_then(|m| m.0.assemble())
                        .map(|o| Typed::$variant(Box::new(o))),)*
                    Some("StorageClass") => MapOnly::<StorageClass>::deserialize(d)
                        .map(|m| Typed::StorageClass(Box::new(m.0))),
                    _ => IgnoredAny::deserialize(d).map(|_| Typed::Other),
                }
            }

            fn view(&self) -> Option<Object<'_>> {
                match self {
                    $(Typed::$variant(o) => Some(o.view()),)*
                    Typed::StorageClass(o) => Some(Object::StorageClass(o)),
                    Typed::Other => None,
                }
            }

            fn meta(&self) -> Option<&ObjectMeta> {
                match self {
                    $(Typed::$variant(o) => Some(o.meta()),)*
                    Typed::StorageClass(o) => Some(o.meta()),
                    Typed::Other => None,
                }
            }
        }
    };
}

typed_kinds! {
    Pvc(PersistentVolumeClaim) = "PersistentVolumeClaim",
    Pv(PersistentVolume) = "PersistentVolume",
    StatefulSet(StatefulSet) = "StatefulSet",
    Pod(Pod) = "Pod",
    Deployment(Deployment) = "Deployment",
    DaemonSet(DaemonSet) = "DaemonSet",
    ReplicaSet(ReplicaSet) = "ReplicaSet",
    Job(Job) = "Job",
    CronJob(CronJob) = "CronJob",
}

/// A typed object of the table in its three parts, so that it can be decoded with a lean
/// `metadata` ([`Lean`]).
trait Parts: kube::core::Resource + Sized {
    type Spec: serde::de::DeserializeOwned;
    type Status: serde::de::DeserializeOwned;
    const API_VERSION: &'static str;
    const KIND: &'static str;
    fn assemble(
        metadata: ObjectMeta,
        spec: Option<Self::Spec>,
        status: Option<Self::Status>,
    ) -> Self;
}

macro_rules! parts {
    ($($ty:ty: $spec:ty, $status:ty;)*) => {$(
        impl Parts for $ty {
            type Spec = $spec;
            type Status = $status;
            const API_VERSION: &'static str = <$ty as k8s_openapi::Resource>::API_VERSION;
            const KIND: &'static str = <$ty as k8s_openapi::Resource>::KIND;
            fn assemble(
                metadata: ObjectMeta,
                spec: Option<$spec>,
                status: Option<$status>,
            ) -> Self {
                Self { metadata, spec, status }
            }
        }
    )*};
}

parts! {
    PersistentVolumeClaim: k8s_openapi::api::core::v1::PersistentVolumeClaimSpec,
        k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;
    PersistentVolume: k8s_openapi::api::core::v1::PersistentVolumeSpec,
        k8s_openapi::api::core::v1::PersistentVolumeStatus;
    StatefulSet: k8s_openapi::api::apps::v1::StatefulSetSpec,
        k8s_openapi::api::apps::v1::StatefulSetStatus;
    Pod: k8s_openapi::api::core::v1::PodSpec, k8s_openapi::api::core::v1::PodStatus;
    Deployment: k8s_openapi::api::apps::v1::DeploymentSpec,
        k8s_openapi::api::apps::v1::DeploymentStatus;
    DaemonSet: k8s_openapi::api::apps::v1::DaemonSetSpec,
        k8s_openapi::api::apps::v1::DaemonSetStatus;
    ReplicaSet: k8s_openapi::api::apps::v1::ReplicaSetSpec,
        k8s_openapi::api::apps::v1::ReplicaSetStatus;
    Job: k8s_openapi::api::batch::v1::JobSpec, k8s_openapi::api::batch::v1::JobStatus;
    CronJob: k8s_openapi::api::batch::v1::CronJobSpec, k8s_openapi::api::batch::v1::CronJobStatus;
}

/// An object decoded as k8s-openapi decodes it, except `metadata`: only the fields the rules
/// read are kept (name, generateName, namespace, uid, labels, annotations, and for DELETE
/// deletionTimestamp, finalizers and ownerReferences); the rest
/// (`managedFields` above all: a tree of maps per field manager, and the timestamps) is skipped
/// unread. `apiVersion` and `kind` are checked as k8s-openapi checks them. A differential
/// property test (`tests/properties.rs`) shows the decisions equal those made from the full
/// typed decoding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
struct Lean<'a, K: Parts> {
    #[serde(default, borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    metadata: Option<MapOnly<LeanMeta>>,
    /// Lists past where the rules read are skipped unread ([`capped`]).
    #[serde(default, deserialize_with = "capped::option")]
    spec: Option<K::Spec>,
    #[serde(default)]
    status: Option<K::Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    /// Only whether each entry owns `spec.storageClassName` ([`LeanManagedFields`]).
    #[serde(default)]
    managed_fields: Option<LeanManagedFields>,
    /// Read on DELETE (the `oldObject` of a claim or PV): already being deleted, protected by a
    /// finalizer, owned by a pod (a generic ephemeral volume's claim).
    #[serde(default)]
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
    #[serde(default)]
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
}

/// `metadata.managedFields` reduced to what the rules read: per entry, whether its `fieldsV1`
/// owns `f:spec` / `f:storageClassName` (`storage::class_owner`); everything else in the
/// entries is skipped unread. Assembled as entries that carry just that field, so the rules
/// decide on them as on the full typed entries.
struct LeanManagedFields(Vec<bool>);

impl<'de> Deserialize<'de> for LeanManagedFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default, rename = "fieldsV1")]
            fields_v1: Option<AnyShape<Fields>>,
        }
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default, rename = "f:spec")]
            spec: Option<AnyShape<SpecFields>>,
        }
        #[derive(Deserialize)]
        struct SpecFields {
            #[serde(default, rename = "f:storageClassName")]
            class: Option<serde::de::IgnoredAny>,
        }
        /// `fieldsV1` is free-form JSON to k8s-openapi: a value of another shape is not an
        /// error, it just owns nothing.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum AnyShape<T> {
            Map(T),
            #[allow(dead_code)]
            Other(serde::de::IgnoredAny),
        }
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(LeanManagedFields(
            entries
                .into_iter()
                .map(|e| match e.fields_v1 {
                    Some(AnyShape::Map(Fields {
                        spec: Some(AnyShape::Map(SpecFields { class })),
                    })) => class.is_some(),
                    _ => false,
                })
                .collect(),
        ))
    }
}

impl LeanManagedFields {
    fn entries(self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        self.0
            .into_iter()
            .map(|owns| ManagedFieldsEntry {
                fields_v1: owns
                    .then(|| FieldsV1(serde_json::json!({"f:spec": {"f:storageClassName": {}}}))),
                ..ManagedFieldsEntry::default()
            })
            .collect()
    }
}

/// A derived struct decoded from a JSON object only (derives also take an array of the fields
/// in order; k8s-openapi's types do not).
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MapOnly<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<K: Parts> Lean<'_, K> {
    fn assemble<E: serde::de::Error>(self) -> Result<K, E> {
        for (got, want) in [(&self.api_version, K::API_VERSION), (&self.kind, K::KIND)] {
            if let Some(got) = got.as_deref().filter(|g| *g != want) {
                return Err(E::invalid_value(serde::de::Unexpected::Str(got), &want));
            }
        }
        let metadata = self
            .metadata
            .map(|MapOnly(m)| ObjectMeta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                uid: m.uid,
                labels: m.labels,
                annotations: m.annotations,
                managed_fields: m.managed_fields.map(LeanManagedFields::entries),
                deletion_timestamp: m.deletion_timestamp,
                finalizers: m.finalizers,
                owner_references: m.owner_references,
                ..ObjectMeta::default()
            })
            .unwrap_or_default();
        Ok(K::assemble(metadata, self.spec, self.status))
    }
}

/// Decodes an object of a kind of the table as the webhook will, for a clear error on a
/// malformed manifest (`audit`).
pub fn check_object(
    kind: &kinds::Kind,
    object: &serde_json::Value,
) -> Result<(), serde_json::Error> {
    Typed::decode(Some(kind.kind), object).map(drop)
}

// ------------------------------------------------------------------ one-pass decoding of a review

/// A review's request as the webhook reads it. The request's fields and its objects are decoded
/// in one pass over the body: kube-apiserver writes `kind` before `object` (Go encodes struct
/// fields in order), so the object is decoded straight into its typed model; a body with
/// another order keeps the object as a JSON value and decodes it once the kind is known.
#[derive(Default)]
struct Head {
    uid: Option<String>,
    kind: Option<GroupVersionKind>,
    sub_resource: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    operation: Option<KubeOperation>,
    /// `userInfo` (when given), with its username.
    user_info: Option<Option<String>>,
    dry_run: Option<bool>,
    object: Option<Slot>,
    old_object: Option<Slot>,
    /// `object` / `oldObject` were given (perhaps `null`).
    seen_object: bool,
    seen_old_object: bool,
}

/// An object of the request: decoded, or (before its kind was known) kept for later.
enum Slot {
    Typed(Typed),
    Later(serde_json::Value),
}

struct Review {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Head>,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ReviewField {
    #[serde(rename = "apiVersion")]
    ApiVersion,
    #[serde(rename = "kind")]
    Kind,
    #[serde(rename = "request")]
    Request,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    SubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    #[serde(other)]
    Other,
}

/// `request.userInfo`, of which the rules read the username. An object only (a derived struct
/// would also take an array of its fields).
struct UserInfo {
    username: Option<String>,
}

impl<'de> Deserialize<'de> for UserInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UserInfo, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserInfo;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a UserInfo object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UserInfo, A::Error> {
                let mut username = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "username" {
                        once(&username, "username")?;
                        username = Some(map.next_value::<Option<String>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(UserInfo {
                    username: username.flatten(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Refuses a field given twice (as the typed decoding does): two `uid`s or two `object`s are
/// an attempt to make the webhook and the API server read different reviews.
fn once<T, E: serde::de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::duplicate_field(field)),
        None => Ok(()),
    }
}

/// The kind name the objects of a request decode as, once known: `None` skips them.
fn decoded_kind(head: &Head) -> Option<&'static str> {
    if head.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        // Subresources (status, scale) carry no storage decision.
        return None;
    }
    let gvk = head.kind.as_ref()?;
    kinds::lookup(&gvk.group, &gvk.version, &gvk.kind).map(|k| k.kind)
}

/// Decodes the whole review; `failed_in` names the kind whose object failed to decode.
struct ReviewSeed<'c> {
    failed_in: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for ReviewSeed<'_> {
    type Value = Review;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Review, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReviewSeed<'_> {
    type Value = Review;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionReview object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Review, A::Error> {
        let mut review = Review {
            api_version: None,
            kind: None,
            request: None,
        };
        while let Some(field) = map.next_key::<ReviewField>()? {
            match field {
                ReviewField::ApiVersion => {
                    once(&review.api_version, "apiVersion")?;
                    review.api_version = Some(map.next_value()?);
                }
                ReviewField::Kind => {
                    once(&review.kind, "kind")?;
                    review.kind = Some(map.next_value()?);
                }
                ReviewField::Request => {
                    once(&review.request, "request")?;
                    review.request = map.next_value_seed(Nullable(RequestSeed {
                        failed_in: self.failed_in,
                    }))?
                }
                ReviewField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(review)
    }
}

/// `null` or the seed's value.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

struct RequestSeed<'c> {
    failed_in: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Head;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Head, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Head;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        let mut head = Head::default();
        while let Some(field) = map.next_key::<RequestField>()? {
            match field {
                RequestField::Uid => {
                    once(&head.uid, "uid")?;
                    head.uid = Some(map.next_value()?);
                }
                RequestField::Kind => {
                    once(&head.kind, "kind")?;
                    head.kind = Some(map.next_value()?);
                }
                RequestField::SubResource => {
                    once(&head.sub_resource, "subResource")?;
                    head.sub_resource =
                        Some(map.next_value::<Option<String>>()?.unwrap_or_default());
                }
                RequestField::Name => {
                    once(&head.name, "name")?;
                    head.name = Some(map.next_value::<Option<String>>()?.unwrap_or_default());
                }
                RequestField::Namespace => {
                    once(&head.namespace, "namespace")?;
                    head.namespace = Some(map.next_value::<Option<String>>()?.unwrap_or_default());
                }
                RequestField::Operation => {
                    once(&head.operation, "operation")?;
                    head.operation = Some(map.next_value()?);
                }
                RequestField::UserInfo => {
                    once(&head.user_info, "userInfo")?;
                    head.user_info = Some(
                        map.next_value::<Option<UserInfo>>()?
                            .and_then(|u| u.username),
                    );
                }
                RequestField::DryRun => {
                    once(&head.dry_run, "dryRun")?;
                    head.dry_run = Some(map.next_value::<Option<bool>>()?.unwrap_or(false));
                }
                RequestField::Object if head.object.is_some() || head.seen_object => {
                    return Err(serde::de::Error::duplicate_field("object"));
                }
                RequestField::OldObject if head.old_object.is_some() || head.seen_old_object => {
                    return Err(serde::de::Error::duplicate_field("oldObject"));
                }
                RequestField::Object | RequestField::OldObject => {
                    let seed = ObjectSeed {
                        kind: head.kind.is_some().then(|| decoded_kind(&head)),
                        failed_in: self.failed_in,
                    };
                    let slot = map.next_value_seed(Nullable(seed))?;
                    match field {
                        RequestField::Object => (head.object, head.seen_object) = (slot, true),
                        _ => (head.old_object, head.seen_old_object) = (slot, true),
                    }
                }
                RequestField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

/// One object of the request: typed when the kind is known (`Some`), kept as a value if not.
struct ObjectSeed<'c> {
    kind: Option<Option<&'static str>>,
    failed_in: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Slot;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        match self.kind {
            Some(kind) => {
                self.failed_in.set(kind);
                let typed = Typed::decode(kind, d)?;
                self.failed_in.set(None);
                Ok(Slot::Typed(typed))
            }
            None => serde_json::Value::deserialize(d).map(Slot::Later),
        }
    }
}

/// The typed object of a slot, decoding a kept value now that the kind is known.
fn settle(slot: Option<Slot>, kind: Option<&'static str>) -> Result<Option<Typed>, ReviewError> {
    match slot {
        None => Ok(None),
        Some(Slot::Typed(t)) => Ok(Some(t)),
        Some(Slot::Later(serde_json::Value::Null)) => Ok(None),
        Some(Slot::Later(v)) => {
            Typed::decode(kind, v)
                .map(Some)
                .map_err(|cause| ReviewError::Object {
                    kind: kind.unwrap_or("object").to_owned(),
                    cause,
                })
        }
    }
}

/// Decodes an AdmissionReview body in one pass.
fn decode(body: &[u8]) -> Result<Review, ReviewError> {
    let failed_in = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let review = ReviewSeed {
        failed_in: &failed_in,
    }
    .deserialize(&mut de)
    .and_then(|r| de.end().map(|()| r))
    .map_err(|cause| match failed_in.get() {
        Some(kind) if !cause.is_eof() && !cause.is_syntax() => ReviewError::Object {
            kind: kind.to_owned(),
            cause,
        },
        _ => ReviewError::Json(cause),
    })?;
    Ok(review)
}

/// Decides one AdmissionReview body within the default work budget (no deadline).
pub fn review(
    endpoint: Endpoint,
    policy: &Policy,
    catalog: &Catalog,
    body: &[u8],
) -> Result<Answer, ReviewError> {
    review_within(endpoint, policy, catalog, body, &policy::Budget::default())
}

/// Decides one AdmissionReview body within `budget` ([`Policy::decide_within`]).
pub fn review_within(
    endpoint: Endpoint,
    policy: &Policy,
    catalog: &Catalog,
    body: &[u8],
    budget: &policy::Budget,
) -> Result<Answer, ReviewError> {
    let review = decode(body)?;
    let (api_version, kind) = (
        review.api_version.unwrap_or_default(),
        review.kind.unwrap_or_default(),
    );
    if api_version != kube::core::admission::META_API_VERSION_V1
        || kind != kube::core::admission::META_KIND
    {
        return Err(ReviewError::WrongType { api_version, kind });
    }
    let Some(mut head) = review.request else {
        return Err(ReviewError::NoRequest);
    };
    let uid = head.uid.take().ok_or(ReviewError::Missing("uid"))?;
    let op = head
        .operation
        .take()
        .ok_or(ReviewError::Missing("operation"))?;
    let decoded = decoded_kind(&head);
    let gvk = head.kind.take().ok_or(ReviewError::Missing("kind"))?;
    // A subresource named after the objects (not the API server's order) still skips them.
    let (object, old_object) = match decoded {
        Some(_) => (
            settle(head.object.take(), decoded)?,
            settle(head.old_object.take(), decoded)?,
        ),
        None => (None, None),
    };
    let meta = object
        .as_ref()
        .and_then(Typed::meta)
        .or_else(|| old_object.as_ref().and_then(Typed::meta));
    let request_name = head.name.as_deref().unwrap_or_default();
    let name = subject_name(meta, request_name);
    let namespace = head.namespace.as_deref().filter(|n| !n.is_empty());
    let request = Request {
        operation: operation(&op),
        namespace,
        username: head
            .user_info
            .as_ref()
            .and_then(|u| u.as_deref())
            .unwrap_or_default(),
        subject: Subject {
            group: &gvk.group,
            kind: &gvk.kind,
            name,
        },
        object: object.as_ref().and_then(Typed::view),
        old_object: old_object.as_ref().and_then(Typed::view),
    };
    let decision = policy.decide_within(endpoint, catalog, &request, budget);
    let info = RequestInfo {
        name: name.to_owned(),
        namespace: namespace.unwrap_or_default().to_owned(),
        operation: request.operation.as_str(),
        uid,
        group: gvk.group,
        kind: gvk.kind,
        dry_run: head.dry_run.unwrap_or(false),
    };
    let denial_message = decision.denial.as_ref().map(Invalid::message);
    Ok(Answer {
        info,
        endpoint,
        decision,
        denial_message,
    })
}

fn operation(op: &KubeOperation) -> Operation {
    match op {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => Operation::Connect,
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

#[cfg(test)]
mod tests;
