//! Builders for the rules' unit tests (`#[cfg(test)]` only): policies, objects, requests and
//! cluster states, so that a rule's test module says only what its case is about.
//!
//! ```ignore
//! let p = policy("rules: {accessModes: {mode: audit}}");
//! let c = pvc(json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "nfs"}}));
//! let d = create(Object::Pvc(&c)).check(&p, &p.static_catalog(), ID, Endpoint::Validate, Acting::Enforce);
//! ```

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde::de::DeserializeOwned;
use serde_json::Value;

use std::collections::HashSet;
use std::sync::Arc;

use super::catalog::{Catalog, LiveState};
use super::engine::decision::Finding;
use super::model::interner::Interner;
use super::model::pods::{PodInfo, PodMap};
use super::volumes::{Source, VolumeIndex};
use super::{Acting, Decision, Endpoint, Object, Operation, Policy, Request, RuleId, Subject};

/// A policy from its YAML (the embedded default's rules for whatever it does not say).
pub fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, None, false).expect("test policy parses")
}

/// Any Kubernetes object from its JSON.
pub fn object<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object decodes")
}

pub fn pvc(v: Value) -> PersistentVolumeClaim {
    object(v)
}

pub fn pv(v: Value) -> PersistentVolume {
    object(v)
}

pub fn storage_class(v: Value) -> StorageClass {
    object(v)
}

pub fn pod(v: Value) -> Pod {
    object(v)
}

pub fn statefulset(v: Value) -> StatefulSet {
    object(v)
}

/// The cluster state a catalog is built from: PVs and claims (claims in `namespace`) as the
/// cluster cache would hold them.
pub fn cluster(
    policy: &Policy,
    pvs: &[PersistentVolume],
    claims: &[PersistentVolumeClaim],
    namespace: &str,
    live: LiveState,
) -> Catalog {
    let index =
        VolumeIndex::from_objects(pvs, claims.iter().map(|c| (namespace, c)), Source::Cluster);
    policy.catalog(&LiveState {
        pvs: Some(index.pvs.clone()),
        claims: Some(index.claims.clone()),
        ..live
    })
}

/// The pod cache as the cluster cache holds it: the pods among `pods` that mount claims.
pub fn pod_cache(pods: &[Pod]) -> Arc<PodMap> {
    let mut strings = Interner::default();
    let mut map = PodMap::default();
    for p in pods {
        if let Some(info) = PodInfo::from_pod(p, &mut strings) {
            map.insert(info);
        }
    }
    Arc::new(map)
}

/// A set of names as the cluster cache holds CSIDrivers and CSINode registrations.
pub fn names(names: &[&str]) -> Arc<HashSet<Arc<str>>> {
    Arc::new(names.iter().map(|n| Arc::from(*n)).collect())
}

/// The messages of `rule`'s findings, in order (what other rules said is left out).
pub fn messages_of(findings: &[Finding], rule: RuleId) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| f.message.clone())
        .collect()
}

/// A request under construction: [`create`] or [`update`], then what differs.
#[derive(Clone, Copy, Debug)]
pub struct Req<'a> {
    pub request: Request<'a>,
}

/// What the messages call `object`: its kind, group and name (a pod spec: a Pod named `pod`).
pub fn subject<'a>(object: &Object<'a>) -> Subject<'a> {
    let (group, kind, name) = match *object {
        Object::Pvc(c) => ("", "PersistentVolumeClaim", c.metadata.name.as_deref()),
        Object::Pv(v) => ("", "PersistentVolume", v.metadata.name.as_deref()),
        Object::StatefulSet(s) => ("apps", "StatefulSet", s.metadata.name.as_deref()),
        Object::PodSpec { .. } => ("", "Pod", Some("pod")),
        Object::StorageClass(c) => ("storage.k8s.io", "StorageClass", c.metadata.name.as_deref()),
    };
    Subject {
        group,
        kind,
        name: name.unwrap_or_default(),
    }
}

/// A CREATE of `object` by `alice`, in namespace `default` unless it is a PersistentVolume.
pub fn create(object: Object<'_>) -> Req<'_> {
    let namespace =
        (!matches!(object, Object::Pv(_) | Object::StorageClass(_))).then_some("default");
    Req {
        request: Request {
            operation: Operation::Create,
            namespace,
            username: "alice",
            subject: subject(&object),
            object: Some(object),
            old_object: None,
        },
    }
}

/// An UPDATE from `old` to `object`.
pub fn update<'a>(object: Object<'a>, old: Object<'a>) -> Req<'a> {
    let mut r = create(object);
    r.request.operation = Operation::Update;
    r.request.old_object = Some(old);
    r
}

/// A DELETE of `old` (admission sends only `oldObject`).
pub fn delete(old: Object<'_>) -> Req<'_> {
    let mut r = create(old);
    r.request.operation = Operation::Delete;
    r.request.object = None;
    r.request.old_object = Some(old);
    r
}

impl<'a> Req<'a> {
    pub fn operation(mut self, op: Operation) -> Self {
        self.request.operation = op;
        self
    }

    pub fn namespace(mut self, ns: Option<&'a str>) -> Self {
        self.request.namespace = ns;
        self
    }

    pub fn old(mut self, old: Option<Object<'a>>) -> Self {
        self.request.old_object = old;
        self
    }

    pub fn subject(mut self, group: &'a str, kind: &'a str, name: &'a str) -> Self {
        self.request.subject = Subject { group, kind, name };
        self
    }

    /// Only `rule`'s check, at `endpoint`, in `mode` (its Meta's operations and parts are not
    /// consulted: [`Req::decide`] does that).
    pub fn check(
        &self,
        policy: &Policy,
        catalog: &Catalog,
        rule: RuleId,
        endpoint: Endpoint,
        mode: Acting,
    ) -> Decision {
        let mut d = Decision::default();
        self.check_in(policy, catalog, rule, endpoint, mode, &mut d);
        d
    }

    /// [`Req::check`] adding to `d` (what other rules already decided).
    pub fn check_in(
        &self,
        policy: &Policy,
        catalog: &Catalog,
        rule: RuleId,
        endpoint: Endpoint,
        mode: Acting,
        d: &mut Decision,
    ) {
        let cx = policy.context(endpoint, catalog);
        policy.rule(rule).check(&cx, &self.request, mode, d);
    }

    /// Every rule of the policy at `endpoint`, as the webhook decides.
    pub fn decide(&self, policy: &Policy, catalog: &Catalog, endpoint: Endpoint) -> Decision {
        policy.decide(endpoint, catalog, &self.request)
    }
}
