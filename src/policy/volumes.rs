//! PersistentVolumes and claims as the binding rules see them, and the PV controller's matching
//! (`spec/kubernetes.md` section 4: `FindMatchingVolume`, `checkVolumeSatisfyClaim`,
//! `IsVolumeBoundToClaim`).
//!
//! Objects are reduced at ingest to the few fields the rules read ([`PvInfo`], [`ClaimInfo`]), so
//! a cluster with 50,000 PVs and 100,000 claims costs megabytes, not the objects: repeated
//! strings (classes, namespaces, labels and label sets) are shared through an [`Interner`], and
//! each object is one map entry whose key is its only name. The maps are shared behind `Arc`s:
//! the cluster cache publishes the very map it keeps, and rebuilding the catalog on a
//! StorageClass event copies a pointer, not entries. Whether PVs and claims are known at all is
//! the catalog's business (`None` without a cluster): a rule never guesses from an empty index.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::interner::{Interner, Labels};
use super::quantity;
use super::vocab::BETA_CLASS_ANNOTATION;

/// Access modes as a bitset (`ReadWriteOnce`, `ReadOnlyMany`, `ReadWriteMany`,
/// `ReadWriteOncePod`; an unknown mode gets a bit no volume has).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Modes(u8);

impl Modes {
    const NAMES: [&'static str; 4] = [
        "ReadWriteOnce",
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOncePod",
    ];
    const UNKNOWN: u8 = 0x80;

    pub fn of(modes: &[String]) -> Modes {
        Modes(modes.iter().fold(0, |acc, m| {
            acc | Self::NAMES
                .iter()
                .position(|n| n == m)
                .map_or(Self::UNKNOWN, |i| 1 << i)
        }))
    }

    /// `CheckAccessModes`: every mode of `claim` is among these.
    pub fn serve(self, claim: Modes) -> bool {
        claim.0 & !self.0 == 0
    }
}

/// A PV or claim phase, as far as the rules care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Pending,
    Available,
    Bound,
    /// Released, Failed, Lost or unknown.
    Other,
}

impl Phase {
    fn parse(s: Option<&str>) -> Phase {
        match s {
            None | Some("Pending") => Phase::Pending,
            Some("Available") => Phase::Available,
            Some("Bound") => Phase::Bound,
            Some(_) => Phase::Other,
        }
    }
}

/// `spec.claimRef` of a PV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRef {
    /// Interned: a few hundred namespaces hold the claims of thousands of volumes.
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
}

/// One PersistentVolume, reduced to what the binding rules read.
#[derive(Clone, Debug, PartialEq)]
pub struct PvInfo {
    /// The beta annotation's class, else `spec.storageClassName`, else `""` (interned).
    pub class: Arc<str>,
    /// `capacity[storage]` in bytes (rounded up); `None` when missing or unreadable.
    pub capacity: Option<u64>,
    pub modes: Modes,
    pub block: bool,
    /// Kept only when non-empty (a claim's selector reads them); the set is interned.
    pub labels: Option<Labels>,
    pub phase: Phase,
    pub claim_ref: Option<Box<ClaimRef>>,
    pub deleting: bool,
    /// `spec.local` or `spec.hostPath`: the data is on one node's disk, whatever the class.
    pub node_local: bool,
    /// `spec.nodeAffinity.required`, kept only when set (the scheduler checks it against the
    /// node it picks for a WaitForFirstConsumer claim).
    pub affinity: Option<Box<NodeSelector>>,
}

impl PvInfo {
    /// Reduces a PV, sharing its repeated strings through `strings`.
    pub fn from_pv(pv: &PersistentVolume, strings: &mut Interner) -> PvInfo {
        let spec = pv.spec.as_ref();
        let class = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
            .or_else(|| spec.and_then(|s| s.storage_class_name.as_ref()))
            .map_or("", String::as_str);
        PvInfo {
            class: strings.intern(class),
            capacity: spec
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(|q| quantity::bytes(&q.0)),
            modes: Modes::of(spec.and_then(|s| s.access_modes.as_deref()).unwrap_or(&[])),
            block: spec.and_then(|s| s.volume_mode.as_deref()) == Some("Block"),
            labels: pv.metadata.labels.as_ref().and_then(|l| strings.labels(l)),
            phase: Phase::parse(pv.status.as_ref().and_then(|s| s.phase.as_deref())),
            claim_ref: spec.and_then(|s| s.claim_ref.as_ref()).map(|r| {
                Box::new(ClaimRef {
                    namespace: strings.intern(r.namespace.as_deref().unwrap_or_default()),
                    name: r.name.as_deref().unwrap_or_default().into(),
                    uid: r.uid.as_deref().unwrap_or_default().into(),
                })
            }),
            deleting: pv.metadata.deletion_timestamp.is_some(),
            node_local: spec.is_some_and(|s| s.local.is_some() || s.host_path.is_some()),
            affinity: spec
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.clone())
                .map(Box::new),
        }
    }

    /// Reduces a PV read from a manifest rather than from the API: a manifest has no `status`
    /// (the API server discards one sent on create), so the phase is the one the PV
    /// controller's first sync gives it (`syncVolume` in `pv_controller.go`): no `claimRef`, or
    /// one without a uid (pre-bound, waiting for that claim), is `Available`; a `claimRef` with
    /// a uid was bound to that very claim (an exported volume), `Bound`. A stated phase is kept.
    pub fn from_manifest(pv: &PersistentVolume, strings: &mut Interner) -> PvInfo {
        let mut info = PvInfo::from_pv(pv, strings);
        if pv
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none()
        {
            info.phase = match &info.claim_ref {
                Some(r) if !r.uid.is_empty() => Phase::Bound,
                _ => Phase::Available,
            };
        }
        info
    }
}

/// The phase of a PV as `audit` on files must read it: the stated phase, else (a manifest
/// without status) the one the PV controller gives it ([`PvInfo::from_manifest`]).
pub fn manifest_phase(pv: &PersistentVolume) -> &str {
    if let Some(p) = pv.status.as_ref().and_then(|s| s.phase.as_deref()) {
        return p;
    }
    let uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    if uid.is_some_and(|u| !u.is_empty()) {
        "Bound"
    } else {
        "Available"
    }
}

/// One claim, reduced to what the binding rules read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimInfo {
    pub phase: Phase,
    pub volume_name: Option<Box<str>>,
    /// The annotation `volume.kubernetes.io/selected-node`: the scheduler chose this node for
    /// a WaitForFirstConsumer claim, and the PV controller provisions or binds for it.
    pub selected_node: Option<Box<str>>,
    /// The class as the PV controller reads it (beta annotation, then `spec.storageClassName`);
    /// `None` when neither is set. Interned.
    pub class: Option<Arc<str>>,
}

impl ClaimInfo {
    /// Reduces a claim, sharing its class name through `strings`.
    pub fn from_claim(pvc: &PersistentVolumeClaim, strings: &mut Interner) -> ClaimInfo {
        ClaimInfo {
            phase: Phase::parse(pvc.status.as_ref().and_then(|s| s.phase.as_deref())),
            volume_name: pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .filter(|v| !v.is_empty())
                .map(Box::from),
            selected_node: pvc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE_ANNOTATION))
                .filter(|n| !n.is_empty())
                .map(|n| Box::from(n.as_str())),
            class: claim_class_ref(pvc).map(|c| strings.intern(c)),
        }
    }

    pub fn is_bound(&self) -> bool {
        self.phase == Phase::Bound
    }
}

/// Set on a claim by the scheduler (and only by it) once it picked a node for a
/// WaitForFirstConsumer claim; `syncUnboundClaim` (`pv_controller.go`) then provisions or binds
/// it for that node.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The ordinals a StatefulSet's controller gives its pods and claims: `start..start+replicas`,
/// with `start` from `spec.ordinals.start` (default 0; GA since 1.31) and `replicas` default 1
/// (`getStartOrdinal`, `getEndOrdinal` in `pkg/controller/statefulset/stateful_set_utils.go`).
/// All of them: callers bound what they walk (`limits::MAX_ORDINALS`, `take`), lazily.
pub fn statefulset_ordinals(sts: &StatefulSet) -> std::ops::Range<i32> {
    let spec = sts.spec.as_ref();
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    start..start.saturating_add(replicas)
}

/// The names of the claims a StatefulSet's controller makes from the template `template`, in
/// ordinal order: `<template>-<statefulset>-<ordinal>` (`getPersistentVolumeClaimName` in
/// `stateful_set_utils.go`). Every rule and `audit` name a StatefulSet's claims through this.
pub fn statefulset_claims<'a>(
    sts: &'a StatefulSet,
    template: &'a str,
) -> impl Iterator<Item = String> + 'a {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    statefulset_ordinals(sts).map(move |i| format!("{template}-{name}-{i}"))
}

/// `GetPersistentVolumeClaimClass`, with `None` for "no class at all" (the default class may
/// still be set) as opposed to `""`.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> Option<String> {
    claim_class_ref(pvc).map(str::to_owned)
}

fn claim_class_ref(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
        .or_else(|| {
            pvc.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_ref())
        })
        .map(String::as_str)
}

/// The key of a claim in the index: `namespace/name` (neither may contain a `/`), one string
/// per claim rather than a map per namespace, whose tables would be mostly empty.
pub fn claim_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// PersistentVolumes by name. Values are `Arc`s so that a copy of the map (the cluster cache
/// writing while a snapshot still reads) copies pointers, not volumes.
pub type PvMap = HashMap<Box<str>, Arc<PvInfo>>;

/// Claims by [`claim_key`].
pub type ClaimMap = HashMap<Box<str>, ClaimInfo>;

/// Where the index came from, said in findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cluster's watch caches.
    Cluster,
    /// The PersistentVolumes and claims among the files `audit` reads.
    Files,
}

/// What the PVs of one class are made of, as far as the index knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassVolumes {
    /// PVs of the class.
    pub total: usize,
    /// Of those, `local` or `hostPath` volumes.
    pub node_local: usize,
}

impl ClassVolumes {
    /// Every known PV of the class is on one node's disk, and there is at least one.
    pub fn all_node_local(self) -> bool {
        self.total > 0 && self.node_local == self.total
    }
}

/// PVs by name and claims by `namespace/name`.
#[derive(Clone, Debug)]
pub struct VolumeIndex {
    pub pvs: Arc<PvMap>,
    pub claims: Arc<ClaimMap>,
    pub source: Source,
    /// [`ClassVolumes`] by class, computed once per snapshot on first use (a request then reads
    /// one entry, never every PV).
    by_class: Arc<OnceLock<HashMap<Arc<str>, ClassVolumes>>>,
}

impl VolumeIndex {
    pub fn new(pvs: Arc<PvMap>, claims: Arc<ClaimMap>, source: Source) -> VolumeIndex {
        VolumeIndex {
            pvs,
            claims,
            source,
            by_class: Arc::default(),
        }
    }

    /// What the known PVs of `class` are made of (the beta annotation's class, else
    /// `spec.storageClassName`, as the PV controller reads it).
    pub fn class_volumes(&self, class: &str) -> ClassVolumes {
        let map = self.by_class.get_or_init(|| {
            let mut map: HashMap<Arc<str>, ClassVolumes> = HashMap::new();
            for pv in self.pvs.values() {
                let e = map.entry(pv.class.clone()).or_default();
                e.total += 1;
                e.node_local += usize::from(pv.node_local);
            }
            map
        });
        map.get(class).copied().unwrap_or_default()
    }

    pub fn pv(&self, name: &str) -> Option<&PvInfo> {
        self.pvs.get(name).map(Arc::as_ref)
    }

    pub fn claim(&self, namespace: &str, name: &str) -> Option<&ClaimInfo> {
        self.claims.get(claim_key(namespace, name).as_str())
    }

    /// Builds an index from objects (`audit` on files).
    pub fn from_objects<'a>(
        pvs: impl IntoIterator<Item = &'a PersistentVolume>,
        claims: impl IntoIterator<Item = (&'a str, &'a PersistentVolumeClaim)>,
        source: Source,
    ) -> VolumeIndex {
        let mut strings = Interner::default();
        // Manifests carry no status: read them as the PV controller will see them.
        let reduce = match source {
            Source::Files => PvInfo::from_manifest,
            Source::Cluster => PvInfo::from_pv,
        };
        VolumeIndex::new(
            Arc::new(
                pvs.into_iter()
                    .map(|pv| {
                        (
                            pv.metadata.name.as_deref().unwrap_or_default().into(),
                            Arc::new(reduce(pv, &mut strings)),
                        )
                    })
                    .collect(),
            ),
            Arc::new(
                claims
                    .into_iter()
                    .map(|(ns, c)| {
                        (
                            claim_key(ns, c.metadata.name.as_deref().unwrap_or_default()).into(),
                            ClaimInfo::from_claim(c, &mut strings),
                        )
                    })
                    .collect(),
            ),
            source,
        )
    }
}

/// What a claim asks of a volume.
#[derive(Clone, Debug)]
pub struct Wants<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// `GetPersistentVolumeClaimClass` (`""` when unset).
    pub class: &'a str,
    pub modes: Modes,
    pub block: bool,
    /// `requests[storage]` in bytes (0 when absent).
    pub size: u64,
    pub selector: Option<&'a LabelSelector>,
}

impl Wants<'_> {
    /// `IsVolumeBoundToClaim`: the PV's claimRef names this claim (uid too, when set).
    pub fn is_bound_by(&self, pv: &PvInfo) -> bool {
        pv.claim_ref.as_ref().is_some_and(|r| {
            *r.name == *self.name
                && *r.namespace == *self.namespace
                && (r.uid.is_empty() || *r.uid == *self.uid)
        })
    }
}

/// Why a PV named by `spec.volumeName` cannot bind: `checkVolumeSatisfyClaim`'s reasons, in
/// its order (the volume name is quoted as Go's `%q`).
pub fn satisfy(pv_name: &str, pv: &PvInfo, w: &Wants<'_>) -> Result<(), String> {
    if pv.deleting {
        return Err(format!(
            "the volume is marked for deletion {}",
            super::field::go_quote(pv_name)
        ));
    }
    if pv.capacity.unwrap_or(0) < w.size {
        return Err("requested PV is too small".to_owned());
    }
    if *pv.class != *w.class {
        return Err("storageClassName does not match".to_owned());
    }
    if pv.block != w.block {
        return Err("incompatible volumeMode".to_owned());
    }
    if !pv.modes.serve(w.modes) {
        return Err("incompatible accessMode".to_owned());
    }
    Ok(())
}

/// The first filter of `FindMatchingVolume` a free volume fails, or `None` when it fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    /// Not of this class, not Available, being deleted or reserved for another claim.
    NotFree,
    Selector,
    VolumeMode,
    AccessModes,
    TooSmall,
}

/// Whether a volume not pre-bound to the claim could be bound to it (`FindMatchingVolume` plus
/// the access-mode index the controller selects candidates from).
pub fn misfit(pv: &PvInfo, w: &Wants<'_>) -> Option<Misfit> {
    if pv.deleting
        || pv.phase != Phase::Available
        || pv.claim_ref.is_some()
        || *pv.class != *w.class
    {
        return Some(Misfit::NotFree);
    }
    if let Some(sel) = w.selector
        && !selector_matches(sel, pv.labels.as_ref())
    {
        return Some(Misfit::Selector);
    }
    if pv.block != w.block {
        return Some(Misfit::VolumeMode);
    }
    if !pv.modes.serve(w.modes) {
        return Some(Misfit::AccessModes);
    }
    if pv.capacity.unwrap_or(0) < w.size {
        return Some(Misfit::TooSmall);
    }
    None
}

/// `metav1.LabelSelectorAsSelector(...).Matches(labels)`; an empty selector matches everything,
/// an unknown operator nothing (the API refuses it anyway).
pub fn selector_matches(sel: &LabelSelector, labels: Option<&Labels>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v.as_str()));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let listed = |v: &str| values.iter().any(|x| x == v);
        match e.operator.as_str() {
            "In" => get(&e.key).is_some_and(listed),
            "NotIn" => get(&e.key).is_none_or(|v| !listed(v)),
            "Exists" => get(&e.key).is_some(),
            "DoesNotExist" => get(&e.key).is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(v: serde_json::Value) -> PvInfo {
        PvInfo::from_pv(
            &serde_json::from_value(v).unwrap(),
            &mut Interner::default(),
        )
    }

    fn wants<'a>(class: &'a str, size: u64) -> Wants<'a> {
        Wants {
            namespace: "default",
            name: "data",
            uid: "u1",
            class,
            modes: Modes::of(&["ReadWriteOnce".to_owned()]),
            block: false,
            size,
            selector: None,
        }
    }

    fn free(class: &str, cap: &str) -> PvInfo {
        pv(
            json!({"metadata": {"name": "p"}, "spec": {"storageClassName": class,
            "capacity": {"storage": cap}, "accessModes": ["ReadWriteOnce", "ReadWriteMany"]},
            "status": {"phase": "Available"}}),
        )
    }

    #[test]
    fn reduces_a_pv_to_what_binding_reads() {
        let p = pv(json!({"metadata": {"name": "p", "labels": {"disk": "ssd"},
                "annotations": {BETA_CLASS_ANNOTATION: "old"}, "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"storageClassName": "new", "capacity": {"storage": "5Gi"}, "volumeMode": "Block",
                "accessModes": ["ReadOnlyMany"], "claimRef": {"name": "c", "namespace": "n", "uid": "x"}},
            "status": {"phase": "Bound"}}));
        assert_eq!(&*p.class, "old", "the beta annotation wins");
        assert_eq!(p.capacity, Some(5 << 30));
        assert!(p.block && p.deleting);
        assert_eq!(p.phase, Phase::Bound);
        assert_eq!(&*p.claim_ref.as_ref().unwrap().uid, "x");
        assert_eq!(&*p.claim_ref.as_ref().unwrap().namespace, "n");
        assert_eq!(p.labels.as_ref().unwrap().get("disk"), Some("ssd"));
        assert_eq!(p.labels.as_ref().unwrap().len(), 1);
        assert!(
            pv(json!({"metadata": {"name": "p", "labels": {}}}))
                .labels
                .is_none()
        );
    }

    #[test]
    fn reduces_a_claim_to_what_binding_reads() {
        let mut strings = Interner::default();
        let mut claim = |v: serde_json::Value| {
            ClaimInfo::from_claim(&serde_json::from_value(v).unwrap(), &mut strings)
        };
        let c = claim(
            json!({"metadata": {"name": "c", "annotations": {BETA_CLASS_ANNOTATION: "old"}},
            "spec": {"storageClassName": "new", "volumeName": "pv-1"}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(c.class.as_deref(), Some("old"), "the beta annotation wins");
        assert_eq!(c.volume_name.as_deref(), Some("pv-1"));
        assert!(c.is_bound());
        let c = claim(json!({"metadata": {"name": "c"}, "spec": {"volumeName": ""}}));
        assert_eq!(
            (c.class, c.volume_name, c.phase),
            (None, None, Phase::Pending)
        );
        let c = claim(json!({"metadata": {"name": "c"}, "spec": {"storageClassName": ""}}));
        assert_eq!(c.class.as_deref(), Some(""), "\"\" is not unset");
        let a = claim(json!({"metadata": {"name": "a"}, "spec": {"storageClassName": "new"}}));
        let b = claim(json!({"metadata": {"name": "b"}, "spec": {"storageClassName": "new"}}));
        assert!(Arc::ptr_eq(
            a.class.as_ref().unwrap(),
            b.class.as_ref().unwrap()
        ));
    }

    #[test]
    fn indexes_claims_by_namespace_and_name() {
        let c: PersistentVolumeClaim =
            serde_json::from_value(json!({"metadata": {"name": "data"}})).unwrap();
        let pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv-1"}})).unwrap();
        let i = VolumeIndex::from_objects([&pv], [("team-a", &c)], Source::Files);
        assert!(i.claim("team-a", "data").is_some());
        assert!(i.claim("team-b", "data").is_none());
        assert!(i.pv("pv-1").is_some() && i.pv("pv-2").is_none());
    }

    #[test]
    fn access_modes_must_be_a_superset() {
        let rwo_rwx = Modes::of(&["ReadWriteOnce".into(), "ReadWriteMany".into()]);
        assert!(rwo_rwx.serve(Modes::of(&["ReadWriteOnce".into()])));
        assert!(rwo_rwx.serve(Modes::default()));
        assert!(!rwo_rwx.serve(Modes::of(&["ReadOnlyMany".into()])));
        assert!(!rwo_rwx.serve(Modes::of(&["Bogus".into()])));
    }

    #[test]
    fn a_free_volume_of_the_class_and_size_fits() {
        assert_eq!(
            misfit(&free("local", "5Gi"), &wants("local", 5 << 30)),
            None
        );
        assert_eq!(
            misfit(&free("local", "4Gi"), &wants("local", 5 << 30)),
            Some(Misfit::TooSmall)
        );
        assert_eq!(
            misfit(&free("other", "5Gi"), &wants("local", 1)),
            Some(Misfit::NotFree)
        );
        let mut w = wants("local", 1);
        w.block = true;
        assert_eq!(misfit(&free("local", "5Gi"), &w), Some(Misfit::VolumeMode));
        w.block = false;
        w.modes = Modes::of(&["ReadWriteOncePod".into()]);
        assert_eq!(misfit(&free("local", "5Gi"), &w), Some(Misfit::AccessModes));
    }

    #[test]
    fn reserved_released_and_deleted_volumes_are_not_free() {
        let mut p = free("local", "5Gi");
        p.claim_ref = Some(Box::new(ClaimRef {
            namespace: "default".into(),
            name: "other".into(),
            uid: "".into(),
        }));
        assert_eq!(misfit(&p, &wants("local", 1)), Some(Misfit::NotFree));
        assert!(!wants("local", 1).is_bound_by(&p));
        p.claim_ref.as_mut().unwrap().name = "data".into();
        assert!(wants("local", 1).is_bound_by(&p));
        p.claim_ref.as_mut().unwrap().uid = "u2".into();
        assert!(
            !wants("local", 1).is_bound_by(&p),
            "another claim of that name"
        );
        let mut p = free("local", "5Gi");
        p.phase = Phase::Other;
        assert_eq!(misfit(&p, &wants("local", 1)), Some(Misfit::NotFree));
        let mut p = free("local", "5Gi");
        p.deleting = true;
        assert_eq!(misfit(&p, &wants("local", 1)), Some(Misfit::NotFree));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"disk": "ssd"},
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                                 {"key": "old", "operator": "DoesNotExist"}]}))
        .unwrap();
        let l = |v: serde_json::Value| -> Labels {
            Interner::default()
                .labels(&serde_json::from_value(v).unwrap())
                .unwrap()
        };
        assert!(selector_matches(
            &sel,
            Some(&l(json!({"disk": "ssd", "zone": "a"})))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&l(json!({"disk": "ssd", "zone": "c"})))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&l(json!({"disk": "ssd", "zone": "a", "old": ""})))
        ));
        assert!(!selector_matches(&sel, None));
        assert!(selector_matches(&LabelSelector::default(), None));
        let notin: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]},
                                        {"key": "disk", "operator": "Exists"}]}),
        )
        .unwrap();
        assert!(selector_matches(&notin, Some(&l(json!({"disk": "x"})))));
        assert!(!selector_matches(
            &notin,
            Some(&l(json!({"disk": "x", "zone": "a"})))
        ));
    }

    #[test]
    fn checks_a_requested_volume_in_the_controllers_order() {
        let w = wants("local", 5 << 30);
        assert_eq!(satisfy("p", &free("local", "5Gi"), &w), Ok(()));
        assert_eq!(
            satisfy("p", &free("other", "1Gi"), &w).unwrap_err(),
            "requested PV is too small"
        );
        assert_eq!(
            satisfy("p", &free("other", "5Gi"), &w).unwrap_err(),
            "storageClassName does not match"
        );
        let mut p = free("local", "5Gi");
        p.block = true;
        assert_eq!(satisfy("p", &p, &w).unwrap_err(), "incompatible volumeMode");
        p.block = false;
        p.modes = Modes::of(&["ReadOnlyMany".into()]);
        assert_eq!(satisfy("p", &p, &w).unwrap_err(), "incompatible accessMode");
        p.deleting = true;
        assert_eq!(
            satisfy("pv-1", &p, &w).unwrap_err(),
            r#"the volume is marked for deletion "pv-1""#
        );
    }

    #[test]
    fn statefulset_claims_run_from_the_start_ordinal() {
        let sts = |spec: serde_json::Value| -> StatefulSet {
            serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec})).unwrap()
        };
        let names = |s: &StatefulSet| statefulset_claims(s, "www").collect::<Vec<_>>();
        assert_eq!(
            names(&sts(json!({"replicas": 2}))),
            ["www-web-0", "www-web-1"]
        );
        assert_eq!(
            names(&sts(json!({"replicas": 3, "ordinals": {"start": 5}}))),
            ["www-web-5", "www-web-6", "www-web-7"]
        );
        assert_eq!(
            names(&sts(json!({}))),
            ["www-web-0"],
            "replicas default to 1"
        );
        assert!(names(&sts(json!({"replicas": 0, "ordinals": {"start": 2}}))).is_empty());
        // Lazy: a million replicas cost nothing until walked.
        assert_eq!(
            statefulset_ordinals(&sts(json!({"replicas": 1_000_000}))).len(),
            1_000_000
        );
    }

    #[test]
    fn a_manifest_without_status_is_read_as_the_controller_will_make_it() {
        let read = |v: serde_json::Value| {
            let pv: PersistentVolume = serde_json::from_value(v).unwrap();
            let i = VolumeIndex::from_objects([&pv], [], Source::Files);
            let cluster = VolumeIndex::from_objects([&pv], [], Source::Cluster);
            (
                i.pv("p").unwrap().phase,
                manifest_phase(&pv).to_owned(),
                cluster.pv("p").unwrap().phase,
            )
        };
        assert_eq!(
            read(json!({"metadata": {"name": "p"}, "spec": {}})),
            (Phase::Available, "Available".to_owned(), Phase::Pending)
        );
        assert_eq!(
            read(
                json!({"metadata": {"name": "p"}, "spec": {"claimRef": {"namespace": "a", "name": "c"}}})
            ),
            (Phase::Available, "Available".to_owned(), Phase::Pending),
            "pre-bound, waiting for its claim"
        );
        assert_eq!(
            read(
                json!({"metadata": {"name": "p"}, "spec": {"claimRef": {"namespace": "a", "name": "c", "uid": "u"}}})
            ),
            (Phase::Bound, "Bound".to_owned(), Phase::Pending)
        );
        assert_eq!(
            read(json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Released"}})),
            (Phase::Other, "Released".to_owned(), Phase::Other),
            "a stated phase is kept"
        );
    }

    #[test]
    fn class_volumes_count_node_local_sources() {
        let pv = |name: &str, class: &str, source: serde_json::Value| -> PersistentVolume {
            let mut spec = json!({"storageClassName": class});
            json_patch::merge(&mut spec, &source);
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
        };
        let pvs = [
            pv("a", "manual", json!({"local": {"path": "/mnt/a"}})),
            pv("b", "manual", json!({"hostPath": {"path": "/data"}})),
            pv("c", "shared", json!({"nfs": {"server": "s", "path": "/"}})),
            pv("d", "shared", json!({"local": {"path": "/mnt/d"}})),
        ];
        let i = VolumeIndex::from_objects(&pvs, [], Source::Cluster);
        assert_eq!(
            i.class_volumes("manual"),
            ClassVolumes {
                total: 2,
                node_local: 2
            }
        );
        assert!(i.class_volumes("manual").all_node_local());
        assert!(!i.class_volumes("shared").all_node_local());
        assert!(
            !i.class_volumes("none").all_node_local(),
            "no PV: not known"
        );
    }
}
