//! One admission request reduced to what the rules read.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PodSpec};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::kinds::Operation;
use crate::policy::model::workloads::Runs;

/// The object under review, typed.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    Pvc(&'a PersistentVolumeClaim),
    Pv(&'a PersistentVolume),
    StatefulSet(&'a StatefulSet),
    StorageClass(&'a StorageClass),
    /// A Pod or a workload with a pod template: its pod spec and the spec's field path
    /// (`spec`, `spec.template.spec`, `spec.jobTemplate.spec.template.spec`).
    PodSpec {
        spec: Option<&'a PodSpec>,
        path: &'static str,
        /// How many pods of this spec run at once (a Pod: one).
        runs: Runs,
    },
}

/// What the error messages call the object: `Kind.group "name"`.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

/// One admission request reduced to what the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub operation: Operation,
    pub namespace: Option<&'a str>,
    pub username: &'a str,
    pub subject: Subject<'a>,
    pub object: Option<Object<'a>>,
    pub old_object: Option<Object<'a>>,
}
