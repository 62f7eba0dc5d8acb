//! PersistentVolumes and claims as the binding rules see them, and the PV controller's matching
//! (`spec/kubernetes.md` section 4: `FindMatchingVolume`, `checkVolumeSatisfyClaim`,
//! `IsVolumeBoundToClaim`).
//!
//! Objects are reduced at ingest to the few fields the rules read ([`PvInfo`], [`ClaimInfo`]), so
//! a cluster with 50,000 PVs and 100,000 claims costs megabytes, not the objects: repeated
//! strings (classes, namespaces, labels and label sets) are shared through an [`Interner`], and
//! each object is one map entry. The maps are persistent (imbl's B-trees): the cluster cache
//! publishes the very map it keeps, a snapshot is a pointer copy, and a write after a publish
//! copies one path of the tree, never the whole map. Whether PVs and claims are known at all is
//! the catalog's business (`None` without a cluster): a rule never guesses from an empty index.
//!
//! Besides PVs by name, [`PvMap`] keeps the indexes the binding rules look up (issue 24: a
//! review's work is bounded by the object under review, not the cluster): PVs by `claimRef`
//! (namespace, name), and free PVs by class, volume mode and access modes, ordered by capacity
//! then name (the PV controller's choice: the smallest that fits). They are updated with each
//! write, by the cache from watch events and by `audit` from objects, never rebuilt per request.

use std::cmp::Ordering;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};
use imbl::OrdMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    NodeSelector, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
};
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

    pub const READ_WRITE_ONCE: Modes = Modes(1);
    pub const READ_ONLY_MANY: Modes = Modes(2);
    pub const READ_WRITE_MANY: Modes = Modes(4);
    pub const READ_WRITE_ONCE_POD: Modes = Modes(8);

    /// Whether any mode of `other` is among these.
    pub fn any(self, other: Modes) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
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
    /// Shared with the by-claimRef index's key.
    pub name: Arc<str>,
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

impl PvInfo {
    /// Available, not reserved for a claim and not being deleted: what `FindMatchingVolume`
    /// may choose for a claim of its class.
    pub fn is_free(&self) -> bool {
        !self.deleting && self.phase == Phase::Available && self.claim_ref.is_none()
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
    /// `spec.accessModes`: the scheduler refuses a second pod on a ReadWriteOncePod claim.
    pub modes: Modes,
    /// `metadata.deletionTimestamp` is set: the claim is going away (the scheduler refuses new
    /// pods on it, `pkg/scheduler/framework/plugins/volumebinding`).
    pub deleting: bool,
    /// `spec.resources.requests[storage]` in bytes, rounded up (`Quantity.Value()`); 0 when
    /// absent or unreadable. What the external-provisioner compares a clone's request with
    /// (`getPVCSource` in kubernetes-csi/external-provisioner `pkg/controller/controller.go`).
    pub request: u64,
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
            modes: Modes::of(
                pvc.spec
                    .as_ref()
                    .and_then(|s| s.access_modes.as_deref())
                    .unwrap_or(&[]),
            ),
            deleting: pvc.metadata.deletion_timestamp.is_some(),
            request: claim_request(pvc.spec.as_ref()).unwrap_or(0),
        }
    }

    pub fn is_bound(&self) -> bool {
        self.phase == Phase::Bound
    }
}

/// `resources.requests[storage]` of a claim spec in bytes, rounded up as `Quantity.Value()`
/// does; `None` when absent or not a quantity.
pub fn claim_request(spec: Option<&PersistentVolumeClaimSpec>) -> Option<u64> {
    spec?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .and_then(|q| quantity::bytes(&q.0))
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

/// Claims by [`claim_key`] (a persistent map: copies share their nodes).
pub type ClaimMap = OrdMap<Arc<str>, ClaimInfo>;

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

/// Lets a borrowed form of a key look the key up in an imbl map (`$cmp` orders it as the key's
/// derived `Ord` does), so a look-up allocates nothing.
macro_rules! borrowed_key {
    ($borrowed:ident, $owned:ident, |$q:ident, $k:ident| $cmp:expr) => {
        impl Equivalent<$owned> for $borrowed<'_> {
            fn equivalent(&self, key: &$owned) -> bool {
                self.compare(key) == Ordering::Equal
            }
        }
        impl Comparable<$owned> for $borrowed<'_> {
            fn compare(&self, key: &$owned) -> Ordering {
                let ($q, $k) = (self, key);
                $cmp
            }
        }
    };
}

/// A PV in the by-claimRef index: the claim it names, then its own name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ClaimedKey {
    namespace: Arc<str>,
    claim: Arc<str>,
    pv: Arc<str>,
}

#[derive(Clone, Copy)]
struct ClaimedAt<'a> {
    namespace: &'a str,
    claim: &'a str,
    pv: &'a str,
}

borrowed_key!(ClaimedAt, ClaimedKey, |q, k| (q.namespace, q.claim, q.pv)
    .cmp(&(&*k.namespace, &*k.claim, &*k.pv)));

/// The group of free PVs a claim's volume mode and access modes select from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BucketKey {
    class: Arc<str>,
    block: bool,
    modes: u8,
}

#[derive(Clone, Copy)]
struct BucketAt<'a> {
    class: &'a str,
    block: bool,
    modes: u8,
}

borrowed_key!(BucketAt, BucketKey, |q, k| (q.class, q.block, q.modes)
    .cmp(&(&*k.class, k.block, k.modes)));

/// A free PV in the by-capacity index: its bucket, then capacity and name (the order the PV
/// controller chooses in, ties broken by name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FreeKey {
    class: Arc<str>,
    block: bool,
    modes: u8,
    capacity: u64,
    name: Arc<str>,
}

#[derive(Clone, Copy)]
struct FreeAt<'a> {
    class: &'a str,
    block: bool,
    modes: u8,
    capacity: u64,
    name: &'a str,
}

borrowed_key!(FreeAt, FreeKey, |q, k| (
    q.class, q.block, q.modes, q.capacity, q.name
)
    .cmp(&(&*k.class, k.block, k.modes, k.capacity, &*k.name)));

/// Free PVs of a class pinned by their affinity to the nodes with one label value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PinKey {
    class: Arc<str>,
    label: Box<str>,
    value: Box<str>,
}

/// What a PV's `spec.nodeAffinity.required` says, as far as placing it on a node goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity<'a> {
    /// None: any node.
    Any,
    /// One term with one `In` requirement of one value: the nodes with that value of that
    /// label (a local PV, as local-static-provisioner and the docs write it).
    Pin { label: &'a str, value: &'a str },
    /// Anything else: only a walk of the nodes tells.
    Other,
}

impl PvInfo {
    pub fn placement(&self) -> Affinity<'_> {
        let Some(a) = self.affinity.as_deref() else {
            return Affinity::Any;
        };
        match a.node_selector_terms.as_slice() {
            [t] if t.match_fields.as_deref().unwrap_or_default().is_empty() => {
                match t.match_expressions.as_deref().unwrap_or_default() {
                    [r] if r.operator == "In" => match r.values.as_deref().unwrap_or_default() {
                        [v] => Affinity::Pin {
                            label: &r.key,
                            value: v,
                        },
                        _ => Affinity::Other,
                    },
                    _ => Affinity::Other,
                }
            }
            _ => Affinity::Other,
        }
    }
}

/// A claim's `namespace/name` key, compared without building it.
struct ClaimAt<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl Equivalent<Arc<str>> for ClaimAt<'_> {
    fn equivalent(&self, key: &Arc<str>) -> bool {
        self.compare(key) == Ordering::Equal
    }
}

impl Comparable<Arc<str>> for ClaimAt<'_> {
    fn compare(&self, key: &Arc<str>) -> Ordering {
        let joined = self
            .namespace
            .bytes()
            .chain([b'/'])
            .chain(self.name.bytes());
        joined.cmp(key.bytes())
    }
}

/// PersistentVolumes by name, with the indexes the binding rules look up (see the module
/// docs). Every map is persistent: a clone is a few pointer copies, and a write to a clone
/// copies one path per map. Values are `Arc`s shared by the name map and the indexes.
#[derive(Clone, Debug, Default)]
pub struct PvMap {
    by_name: OrdMap<Arc<str>, Arc<PvInfo>>,
    by_claim: OrdMap<ClaimedKey, Arc<PvInfo>>,
    free: OrdMap<FreeKey, Arc<PvInfo>>,
    /// How many free PVs each bucket holds (buckets with none are absent).
    buckets: OrdMap<BucketKey, usize>,
    /// What the PVs of each class are made of, kept with every write.
    classes: OrdMap<Arc<str>, ClassVolumes>,
    /// How many free PVs of a class are pinned to each label value ([`Affinity::Pin`]): one
    /// entry per node holding free volumes, not per volume.
    pins: OrdMap<PinKey, usize>,
    /// How many free PVs of each class have another affinity ([`Affinity::Other`]).
    other_affinity: OrdMap<Arc<str>, usize>,
}

/// Two maps are equal when they hold the same volumes (the indexes follow from them).
impl PartialEq for PvMap {
    fn eq(&self, other: &Self) -> bool {
        self.by_name == other.by_name
    }
}

impl std::ops::Index<&str> for PvMap {
    type Output = Arc<PvInfo>;

    fn index(&self, name: &str) -> &Arc<PvInfo> {
        self.by_name
            .get(name)
            .expect("no PersistentVolume of that name")
    }
}

impl PvMap {
    pub fn get(&self, name: &str) -> Option<&Arc<PvInfo>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Volumes by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PvInfo)> {
        self.by_name.iter().map(|(n, pv)| (&**n, &**pv))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|n| &**n)
    }

    pub fn values(&self) -> impl Iterator<Item = &PvInfo> {
        self.by_name.values().map(|pv| &**pv)
    }

    /// Stores a volume and indexes it; whether anything changed (an equal volume is not
    /// written, so a map shared with a snapshot is not copied for it).
    pub fn insert(&mut self, name: &str, pv: Arc<PvInfo>) -> bool {
        let key = match self.by_name.get_key_value(name) {
            Some((_, old)) if **old == *pv => return false,
            Some((key, _)) => key.clone(),
            None => Arc::from(name),
        };
        if let Some(old) = self.by_name.insert(key.clone(), pv.clone()) {
            self.unindex(&key, &old);
        }
        self.index(key, pv);
        true
    }

    /// Removes a volume and its index entries; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some((key, old)) = self.by_name.remove_with_key(name) else {
            return false;
        };
        self.unindex(&key, &old);
        true
    }

    /// What the PVs of `class` are made of: one look-up.
    pub fn class_volumes(&self, class: &str) -> ClassVolumes {
        self.classes.get(class).copied().unwrap_or_default()
    }

    fn index(&mut self, name: Arc<str>, pv: Arc<PvInfo>) {
        let c = self.classes.entry(pv.class.clone()).or_default();
        c.total += 1;
        c.node_local += usize::from(pv.node_local);
        if let Some(r) = pv.claim_ref.as_deref() {
            let key = ClaimedKey {
                namespace: r.namespace.clone(),
                claim: r.name.clone(),
                pv: name.clone(),
            };
            self.by_claim.insert(key, pv.clone());
        }
        if pv.is_free() {
            let bucket = BucketKey {
                class: pv.class.clone(),
                block: pv.block,
                modes: pv.modes.0,
            };
            *self.buckets.entry(bucket).or_default() += 1;
            match pv.placement() {
                Affinity::Any => {}
                Affinity::Pin { label, value } => {
                    *self
                        .pins
                        .entry(pin_key(&pv.class, label, value))
                        .or_default() += 1;
                }
                Affinity::Other => {
                    *self.other_affinity.entry(pv.class.clone()).or_default() += 1;
                }
            }
            let key = FreeKey {
                class: pv.class.clone(),
                block: pv.block,
                modes: pv.modes.0,
                capacity: pv.capacity.unwrap_or(0),
                name,
            };
            self.free.insert(key, pv);
        }
    }

    fn unindex(&mut self, name: &str, pv: &PvInfo) {
        if let Some(c) = self.classes.get_mut(&*pv.class) {
            c.total -= 1;
            c.node_local -= usize::from(pv.node_local);
            if c.total == 0 {
                self.classes.remove(&*pv.class);
            }
        }
        if let Some(r) = pv.claim_ref.as_deref() {
            self.by_claim.remove(&ClaimedAt {
                namespace: &r.namespace,
                claim: &r.name,
                pv: name,
            });
        }
        if pv.is_free() {
            let bucket = BucketAt {
                class: &pv.class,
                block: pv.block,
                modes: pv.modes.0,
            };
            if let Some(n) = self.buckets.get_mut(&bucket) {
                *n -= 1;
                if *n == 0 {
                    self.buckets.remove(&bucket);
                }
            }
            match pv.placement() {
                Affinity::Any => {}
                Affinity::Pin { label, value } => {
                    decrement(&mut self.pins, &pin_key(&pv.class, label, value));
                }
                Affinity::Other => decrement(&mut self.other_affinity, &pv.class),
            }
            self.free.remove(&FreeAt {
                class: &pv.class,
                block: pv.block,
                modes: pv.modes.0,
                capacity: pv.capacity.unwrap_or(0),
                name,
            });
        }
    }

    /// The classes some of whose free PVs may be pinned to no existing node: an affinity
    /// other than a pin, or a pin on another label than `label` (the policy's node label) or
    /// to a value `exists` says no node has. A walk of the pins (one per node that holds free
    /// volumes), never of the volumes; the catalog keeps the answer ([`super::catalog`]).
    pub fn stranding_classes(
        &self,
        label: &str,
        exists: impl Fn(&str) -> bool,
    ) -> std::collections::HashSet<Arc<str>> {
        let pinned = self
            .pins
            .keys()
            .filter(|k| *k.label != *label || !exists(&k.value))
            .map(|k| k.class.clone());
        pinned.chain(self.other_affinity.keys().cloned()).collect()
    }

    /// PVs whose `claimRef` names `namespace/name` (any uid), by PV name.
    pub fn claimed<'a>(
        &'a self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = (&'a str, &'a PvInfo)> {
        self.claimed_with_prefix(namespace, name)
            .filter(move |&(claim, _, _)| claim == name)
            .map(|(_, pv_name, pv)| (pv_name, pv))
    }

    /// PVs whose `claimRef` is in `namespace` and names a claim starting with `prefix`, as
    /// (claim name, PV name, PV), in that order.
    pub fn claimed_with_prefix<'a>(
        &'a self,
        namespace: &str,
        prefix: &str,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a PvInfo)> {
        let from = ClaimedAt {
            namespace,
            claim: prefix,
            pv: "",
        };
        self.by_claim
            .range(from..)
            .take_while(move |(k, _)| *k.namespace == *namespace && k.claim.starts_with(prefix))
            .map(|(k, pv)| (&*k.claim, &*k.pv, &**pv))
    }

    /// The buckets of free PVs of a class: (block, modes, how many).
    fn buckets_of(&self, class: &str) -> impl Iterator<Item = (bool, Modes, usize)> {
        let from = BucketAt {
            class,
            block: false,
            modes: 0,
        };
        self.buckets
            .range(from..)
            .take_while(move |(k, _)| *k.class == *class)
            .map(|(k, n)| (k.block, Modes(k.modes), *n))
    }

    /// One bucket's free PVs from `min` bytes up to (not including) `below`, smallest first.
    fn bucket_range<'a>(
        &'a self,
        class: &str,
        block: bool,
        modes: Modes,
        min: u64,
        below: Option<u64>,
    ) -> impl Iterator<Item = (&'a str, u64, &'a PvInfo)> {
        let from = FreeAt {
            class,
            block,
            modes: modes.0,
            capacity: min,
            name: "",
        };
        self.free
            .range(from..)
            .take_while(move |(k, _)| {
                *k.class == *class
                    && k.block == block
                    && k.modes == modes.0
                    && below.is_none_or(|b| k.capacity < b)
            })
            .map(|(k, pv)| (&*k.name, k.capacity, &**pv))
    }

    /// The buckets whose volumes could serve `w` but for size and selector.
    fn serving_buckets(&self, w: &Wants<'_>) -> impl Iterator<Item = (Modes, usize)> {
        self.buckets_of(w.class)
            .filter(|&(block, modes, _)| block == w.block && modes.serve(w.modes))
            .map(|(_, modes, n)| (modes, n))
    }

    /// The free volumes [`misfit`] finds fitting for `w`, smallest first (capacity, then name):
    /// the order in which the PV controller would hand them out.
    pub fn fitting<'a>(&'a self, w: &Wants<'_>) -> impl Iterator<Item = (&'a str, &'a PvInfo)> {
        let mut runs: Vec<_> = self
            .serving_buckets(w)
            .map(|(modes, _)| {
                self.bucket_range(w.class, w.block, modes, w.size, None)
                    .peekable()
            })
            .collect();
        std::iter::from_fn(move || {
            // A merge of the buckets' runs (one or two in practice).
            let i = (0..runs.len())
                .filter_map(|i| runs[i].peek().map(|&(n, c, _)| ((c, n), i)))
                .min()?
                .1;
            runs[i].next()
        })
        .filter(|(_, _, pv)| selects(w, pv))
        .map(|(n, _, pv)| (n, pv))
    }

    /// How many free volumes fit `w`, counted up to `limit`: without a selector from the
    /// buckets' sizes, walking the shorter side of the size boundary (so bounded by `limit`,
    /// not by the volumes of the class); with one, by walking the fitting ones.
    pub fn count_fitting(&self, w: &Wants<'_>, limit: usize) -> usize {
        if w.selector.is_some() {
            return self.fitting(w).take(limit).count();
        }
        let mut total = 0;
        for (modes, n) in self.serving_buckets(w) {
            let remaining = limit.saturating_sub(total);
            if remaining == 0 {
                break;
            }
            // The bucket holds `n`: those under the size, then those that fit. Walk both
            // sides in step and stop at the first that ends (or once `remaining` fit).
            let mut small = self.bucket_range(w.class, w.block, modes, 0, Some(w.size));
            let mut fit = self.bucket_range(w.class, w.block, modes, w.size, None);
            let (mut s, mut f) = (0, 0);
            total += loop {
                if f == remaining {
                    break remaining;
                }
                if fit.next().is_none() {
                    break f;
                }
                f += 1;
                if small.next().is_none() {
                    break (n - s).min(remaining);
                }
                s += 1;
            };
        }
        total.min(limit)
    }

    /// The furthest any free volume of the class not `skip`ped gets through [`misfit`]'s
    /// filters for `w`, ignoring the ones that fit (`why_none` says it): the maximum of
    /// `misfit` over those volumes, `NotFree` when there are none.
    pub fn closest_misfit(&self, w: &Wants<'_>, skip: impl Fn(&str) -> bool) -> Misfit {
        let mut best = Misfit::NotFree;
        for (block, modes, _) in self.buckets_of(w.class) {
            // What a volume of this bucket that passes the selector fails on.
            let level = if block != w.block {
                Misfit::VolumeMode
            } else if !modes.serve(w.modes) {
                Misfit::AccessModes
            } else {
                Misfit::TooSmall
            };
            if level <= best {
                continue;
            }
            // Without a selector the volumes of a serving bucket from the size up all fit:
            // only those below it are looked at.
            let below = (level == Misfit::TooSmall && w.selector.is_none()).then_some(w.size);
            for (name, capacity, pv) in self.bucket_range(w.class, block, modes, 0, below) {
                if skip(name) {
                    continue;
                }
                if !selects(w, pv) {
                    best = best.max(Misfit::Selector);
                } else if level != Misfit::TooSmall || capacity < w.size {
                    best = level;
                    break;
                }
            }
            if best == Misfit::TooSmall {
                break;
            }
        }
        best
    }
}

fn pin_key(class: &Arc<str>, label: &str, value: &str) -> PinKey {
    PinKey {
        class: class.clone(),
        label: label.into(),
        value: value.into(),
    }
}

/// Takes one from a count, removing it at zero.
fn decrement<K: Ord + Clone>(counts: &mut OrdMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// Whether the claim's selector (if any) matches the volume.
fn selects(w: &Wants<'_>, pv: &PvInfo) -> bool {
    w.selector
        .is_none_or(|s| selector_matches(s, pv.labels.as_ref()))
}

/// PVs by name and claims by `namespace/name`.
#[derive(Clone, Debug)]
pub struct VolumeIndex {
    pub pvs: Arc<PvMap>,
    pub claims: Arc<ClaimMap>,
    pub source: Source,
}

impl VolumeIndex {
    pub fn new(pvs: Arc<PvMap>, claims: Arc<ClaimMap>, source: Source) -> VolumeIndex {
        VolumeIndex {
            pvs,
            claims,
            source,
        }
    }

    /// What the known PVs of `class` are made of (the beta annotation's class, else
    /// `spec.storageClassName`, as the PV controller reads it).
    pub fn class_volumes(&self, class: &str) -> ClassVolumes {
        self.pvs.class_volumes(class)
    }

    pub fn pv(&self, name: &str) -> Option<&PvInfo> {
        self.pvs.get(name).map(Arc::as_ref)
    }

    pub fn claim(&self, namespace: &str, name: &str) -> Option<&ClaimInfo> {
        self.claims.get(&ClaimAt { namespace, name })
    }

    /// Claims of `namespace` whose name starts with `prefix`, as (name, claim), by name.
    pub fn claims_with_prefix<'a>(
        &'a self,
        namespace: &str,
        prefix: &str,
    ) -> impl Iterator<Item = (&'a str, &'a ClaimInfo)> {
        let from = ClaimAt {
            namespace,
            name: prefix,
        };
        self.claims.range(from..).map_while(move |(k, c)| {
            let name = k.strip_prefix(namespace)?.strip_prefix('/')?;
            name.starts_with(prefix).then_some((name, c))
        })
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
        let mut pv_map = PvMap::default();
        for pv in pvs {
            let info = reduce(pv, &mut strings);
            pv_map.insert(
                pv.metadata.name.as_deref().unwrap_or_default(),
                Arc::new(info),
            );
        }
        VolumeIndex {
            pvs: Arc::new(pv_map),
            claims: Arc::new(
                claims
                    .into_iter()
                    .map(|(ns, c)| {
                        (
                            Arc::from(claim_key(
                                ns,
                                c.metadata.name.as_deref().unwrap_or_default(),
                            )),
                            ClaimInfo::from_claim(c, &mut strings),
                        )
                    })
                    .collect(),
            ),
            source,
        }
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

    #[test]
    fn a_claim_stays_small() {
        // Three pointers, the request (clones) and a few bytes (phase, modes, deleting) in their
        // padding: 100,000 claims cached cost at most 6.4 MB of entries.
        assert!(std::mem::size_of::<ClaimInfo>() <= 64);
    }
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
        // Kept with every write: removing the NFS volume leaves "shared" all node-local.
        let mut map = (*i.pvs).clone();
        map.remove("c");
        assert!(map.class_volumes("shared").all_node_local());
        map.remove("d");
        assert_eq!(map.class_volumes("shared"), ClassVolumes::default());
    }

    // ---- the indexes against a scan of every volume (issue 24) ----

    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const CLASSES: [&str; 3] = ["local", "other", ""];
    const NAMESPACES: [&str; 2] = ["team-a", "team-b"];
    const CLAIMS: [&str; 6] = [
        "data",
        "www-web-0",
        "www-web-1",
        "www-web-10",
        "www-webx-1",
        "www-web-01",
    ];

    fn gen_pv() -> impl Strategy<Value = PvInfo> {
        (
            (
                0..3usize,
                proptest::option::of(0..4u64),
                0..16u8,
                any::<bool>(),
            ),
            (0..3usize, 0..4usize, any::<bool>(), 0..AFFINITIES),
            proptest::option::of((0..2usize, 0..6usize, any::<bool>())),
        )
            .prop_map(
                |((class, cap, modes, block), (labels, phase, deleting, pin), claim)| {
                    let labels = [None, Some("ssd"), Some("hdd")][labels].and_then(|d| {
                        Interner::default()
                            .labels(&BTreeMap::from([("disk".to_owned(), d.to_owned())]))
                    });
                    PvInfo {
                        class: CLASSES[class].into(),
                        capacity: cap.map(|c| c << 30),
                        modes: Modes(modes),
                        block,
                        labels,
                        node_local: block,
                        affinity: affinity(pin).map(|a| {
                            Box::new(
                                serde_json::from_value(json!({"nodeSelectorTerms": a})).unwrap(),
                            )
                        }),
                        phase: [Phase::Pending, Phase::Available, Phase::Bound, Phase::Other]
                            [phase],
                        claim_ref: claim.map(|(ns, name, uid)| {
                            Box::new(ClaimRef {
                                namespace: NAMESPACES[ns].into(),
                                name: CLAIMS[name].into(),
                                uid: if uid { "u1" } else { "" }.into(),
                            })
                        }),
                        deleting,
                    }
                },
            )
    }

    /// Node affinities (`nodeSelectorTerms`): pins to a hostname that exists (`a`) or not
    /// (`gone`), a pin on another label, and shapes that are no pin.
    fn affinity(i: usize) -> Option<serde_json::Value> {
        let host = "kubernetes.io/hostname";
        let req = |key: &str, op: &str, values: &[&str]| json!({"key": key, "operator": op, "values": values});
        Some(match i {
            0 => return None,
            1 => json!([{"matchExpressions": [req(host, "In", &["a"])]}]),
            2 => json!([{"matchExpressions": [req(host, "In", &["gone"])]}]),
            3 => json!([{"matchExpressions": [req("zone", "In", &["a"])]}]),
            4 => json!([{"matchExpressions": [req(host, "In", &["a", "b"])]}]),
            5 => json!([{"matchExpressions": [req(host, "NotIn", &["a"])]}]),
            _ => json!([{"matchExpressions": [req(host, "In", &["a"])]},
                        {"matchExpressions": [req(host, "In", &["b"])]}]),
        })
    }
    const AFFINITIES: usize = 7;

    /// Inserts (`Some`) and removals (`None`) of volumes `pv-0`..`pv-11`.
    fn gen_ops() -> impl Strategy<Value = Vec<(usize, Option<PvInfo>)>> {
        proptest::collection::vec(
            (0..12usize, proptest::option::weighted(0.8, gen_pv())),
            0..60,
        )
    }

    fn gen_wants() -> impl Strategy<Value = (usize, u8, bool, u64, Option<usize>)> {
        (
            0..3usize,
            0..16u8,
            any::<bool>(),
            0..5u64,
            proptest::option::of(0..3usize),
        )
    }

    fn selector(i: usize) -> LabelSelector {
        let v = [
            json!({"matchLabels": {"disk": "ssd"}}),
            json!({"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}),
            json!({}),
        ];
        serde_json::from_value(v[i].clone()).unwrap()
    }

    /// Applies `ops` to a map and to a plain `BTreeMap`, the oracle.
    fn apply(ops: &[(usize, Option<PvInfo>)]) -> (PvMap, BTreeMap<String, PvInfo>) {
        let (mut map, mut oracle) = (PvMap::default(), BTreeMap::new());
        for (i, op) in ops {
            let name = format!("pv-{i}");
            match op {
                Some(pv) => {
                    let changed = oracle.get(&name) != Some(pv);
                    assert_eq!(map.insert(&name, Arc::new(pv.clone())), changed);
                    oracle.insert(name, pv.clone());
                }
                None => assert_eq!(map.remove(&name), oracle.remove(&name).is_some()),
            }
        }
        (map, oracle)
    }

    proptest! {
        #[test]
        fn indexes_stay_what_a_rebuild_would_make(ops in gen_ops(), cut in 0..60usize) {
            // A snapshot taken midway keeps its own state while the map goes on.
            let (snapshot, before) = apply(&ops[..cut.min(ops.len())]);
            let mut map = snapshot.clone();
            for (i, op) in &ops[cut.min(ops.len())..] {
                let name = format!("pv-{i}");
                match op {
                    Some(pv) => { map.insert(&name, Arc::new(pv.clone())); }
                    None => { map.remove(&name); }
                }
            }
            let (rebuilt, oracle) = apply(&ops);
            let mut fresh = PvMap::default();
            for (n, pv) in &oracle {
                fresh.insert(n, Arc::new(pv.clone()));
            }
            for m in [&map, &rebuilt] {
                prop_assert_eq!(m.by_claim.clone(), fresh.by_claim.clone());
                prop_assert_eq!(m.free.clone(), fresh.free.clone());
                prop_assert_eq!(m.buckets.clone(), fresh.buckets.clone());
                prop_assert_eq!(m.pins.clone(), fresh.pins.clone());
                prop_assert_eq!(m.other_affinity.clone(), fresh.other_affinity.clone());
                prop_assert!(m == &fresh);
            }
            prop_assert_eq!(snapshot.len(), before.len());
            prop_assert!(snapshot.iter().all(|(n, pv)| before.get(n) == Some(pv)));
        }

        #[test]
        fn look_ups_answer_as_a_scan_of_every_volume(
            ops in gen_ops(),
            (class, modes, block, size, sel) in gen_wants(),
            (ns, claim, uid) in (0..2usize, 0..6usize, any::<bool>()),
            skip in proptest::collection::btree_set(0..12usize, 0..4),
            limit in 0..8usize,
        ) {
            let (map, oracle) = apply(&ops);
            let sel = sel.map(selector);
            let w = Wants {
                namespace: NAMESPACES[ns],
                name: CLAIMS[claim],
                uid: if uid { "u1" } else { "" },
                class: CLASSES[class],
                modes: Modes(modes),
                block,
                size: size << 30,
                selector: sel.as_ref(),
            };
            let mut fits: Vec<(u64, &str)> = oracle
                .iter()
                .filter(|(_, pv)| misfit(pv, &w).is_none())
                .map(|(n, pv)| (pv.capacity.unwrap_or(0), n.as_str()))
                .collect();
            fits.sort_unstable();
            let found: Vec<(u64, &str)> =
                map.fitting(&w).map(|(n, pv)| (pv.capacity.unwrap_or(0), n)).collect();
            prop_assert_eq!(&found, &fits);
            prop_assert_eq!(map.count_fitting(&w, limit), fits.len().min(limit));

            // The classes that may strand a volume: a free one of the class whose affinity
            // is not a pin to the hostname "a" (the one node), by a scan.
            let pinned_to_a = |pv: &PvInfo| {
                pv.affinity.as_deref().is_none_or(|a| {
                    serde_json::to_value(a).unwrap()
                        == json!({"nodeSelectorTerms": affinity(1).unwrap()})
                })
            };
            let stranding: std::collections::BTreeSet<&str> = oracle
                .values()
                .filter(|pv| pv.is_free() && !pinned_to_a(pv))
                .map(|pv| &*pv.class)
                .collect();
            let found = map.stranding_classes("kubernetes.io/hostname", |v| v == "a");
            prop_assert_eq!(found.iter().map(|c| &**c).collect::<std::collections::BTreeSet<_>>(), stranding);

            let skipped = |n: &str| skip.iter().any(|i| n == format!("pv-{i}"));
            let closest = oracle
                .iter()
                .filter(|(n, _)| !skipped(n))
                .filter_map(|(_, pv)| misfit(pv, &w))
                .max()
                .unwrap_or(Misfit::NotFree);
            prop_assert_eq!(map.closest_misfit(&w, skipped), closest);

            let named: Vec<&str> = oracle
                .iter()
                .filter(|(_, pv)| pv.claim_ref.as_ref().is_some_and(|r| {
                    *r.namespace == *w.namespace && *r.name == *w.name
                }))
                .map(|(n, _)| n.as_str())
                .collect();
            prop_assert_eq!(map.claimed(w.namespace, w.name).map(|(n, _)| n).collect::<Vec<_>>(), named);
            let mut prefixed: Vec<(&str, &str)> = oracle
                .iter()
                .filter_map(|(n, pv)| pv.claim_ref.as_ref().map(|r| (r, n)))
                .filter(|(r, _)| *r.namespace == *w.namespace && r.name.starts_with("www-web-"))
                .map(|(r, n)| (&*r.name, n.as_str()))
                .collect();
            prefixed.sort_unstable();
            prop_assert_eq!(
                map.claimed_with_prefix(w.namespace, "www-web-").map(|(c, n, _)| (c, n)).collect::<Vec<_>>(),
                prefixed
            );
        }
    }

    #[test]
    fn claims_are_found_by_name_and_by_prefix() {
        let c: PersistentVolumeClaim =
            serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        let claims: Vec<(&str, PersistentVolumeClaim)> = [
            ("team-a", "www-web-0"),
            ("team-a", "www-web-1"),
            ("team-a", "www-web1"),
            ("team-a", "www-webx"),
            ("team-a-b", "www-web-2"),
            ("team", "www-web-3"),
            ("team-b", "www-web-4"),
        ]
        .into_iter()
        .map(|(ns, n)| {
            let mut c = c.clone();
            c.metadata.name = Some(n.to_owned());
            (ns, c)
        })
        .collect();
        let i = VolumeIndex::from_objects([], claims.iter().map(|(ns, c)| (*ns, c)), Source::Files);
        let found: Vec<&str> = i
            .claims_with_prefix("team-a", "www-web-")
            .map(|(n, _)| n)
            .collect();
        assert_eq!(found, ["www-web-0", "www-web-1"]);
        assert!(i.claim("team-a", "www-web1").is_some());
        assert!(i.claim("team", "www-web-3").is_some() && i.claim("team", "www-web-2").is_none());
        assert_eq!(i.claims_with_prefix("team", "").count(), 1);
    }
}
