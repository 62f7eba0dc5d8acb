//! One resource's cache: watcher events in, the reduced objects out. A full list (`Init`,
//! `InitApply`..., `InitDone`) is buffered and replaces the cache only once complete, so a
//! re-list never exposes a partial or empty state; objects are reduced to what the rules read
//! (never kept whole), and an event that changes nothing the rules read is reported as such so
//! the catalog is not rebuilt for it (most Node updates are status changes).
//!
//! The PV and claim caches are the large ones (issue 14: 50,000 PVs and 100,000 claims in well
//! under 64 MiB): their map is the very one published to the catalog, a persistent map (issue
//! 24) of which a write after a publish copies one path, not the whole; the PV map keeps the
//! binding rules' indexes (by claimRef, free volumes by class and capacity) in step with each
//! event. Their repeated strings go through one [`Interner`] per cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::status::WatchedResource;
use crate::policy::interner::Interner;
use crate::policy::pods::{PodInfo, PodMap};
use crate::policy::volumes::{ClaimInfo, ClaimMap, PvInfo, PvMap, claim_key};
use crate::policy::{ClassesKnown, LiveClass, LiveState, NamespaceInfo};

/// A watched resource: how an object is reduced into the cache and how the cache goes into
/// [`LiveState`].
pub(crate) trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The whole cache: the reduced objects by key (name, or `namespace/name`).
    type Map: Default + PartialEq + Send + Sync;
    const RESOURCE: WatchedResource;

    /// Stores what the rules read of the object (removes it when nothing is worth keeping),
    /// sharing repeated strings through `strings`; whether the map changed.
    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool;

    /// Removes the object; whether it was there.
    fn remove(&self, map: &mut Self::Map) -> bool;

    fn len(map: &Self::Map) -> usize;

    /// Writes the whole cache into the live state.
    fn publish(map: &Self::Map, live: &mut LiveState);

    /// The cache as StorageClasses, for the checks only they need.
    fn as_classes(_map: &Self::Map) -> Option<&BTreeMap<String, LiveClass>> {
        None
    }
}

/// [`Watched::store`] for the small caches (classes, namespaces, nodes), copied on publish.
fn store_named<V: PartialEq>(map: &mut BTreeMap<String, V>, key: String, value: Option<V>) -> bool {
    match value {
        Some(v) if map.get(&key) != Some(&v) => {
            map.insert(key, v);
            true
        }
        Some(_) => false,
        None => map.remove(&key).is_some(),
    }
}

impl Watched for StorageClass {
    type Map = BTreeMap<String, LiveClass>;
    const RESOURCE: WatchedResource = WatchedResource::StorageClasses;

    fn store(&self, map: &mut Self::Map, _: &mut Interner) -> bool {
        store_named(
            map,
            self.name_any(),
            Some(LiveClass::from_storage_class(self)),
        )
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        map.remove(&self.name_any()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.classes = map.values().cloned().collect();
        // Published only once a full list completed (and from then on by the watch): every
        // class of the cluster is known, so a name found nowhere names no class.
        live.classes_known = ClassesKnown::Cluster;
    }

    fn as_classes(map: &Self::Map) -> Option<&BTreeMap<String, LiveClass>> {
        Some(map)
    }
}

impl Watched for Namespace {
    type Map = BTreeMap<String, NamespaceInfo>;
    const RESOURCE: WatchedResource = WatchedResource::Namespaces;

    fn store(&self, map: &mut Self::Map, _: &mut Interner) -> bool {
        let info = Some(NamespaceInfo::from_namespace(self)).filter(|i| !i.is_empty());
        store_named(map, self.name_any(), info)
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        map.remove(&self.name_any()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.namespaces = map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>();
    }
}

impl Watched for Node {
    type Map = BTreeMap<String, BTreeMap<String, String>>;
    const RESOURCE: WatchedResource = WatchedResource::Nodes;

    fn store(&self, map: &mut Self::Map, _: &mut Interner) -> bool {
        // The policy's node label can change on reload, so keep every label (not the object).
        let labels = self.metadata.labels.clone().unwrap_or_default();
        store_named(map, self.name_any(), Some(labels))
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        map.remove(&self.name_any()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.nodes = Some(Arc::new(
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    }
}

/// CSIDriver objects: their names only (the provisioner check asks whether one names a driver).
impl Watched for CSIDriver {
    type Map = HashSet<Arc<str>>;
    const RESOURCE: WatchedResource = WatchedResource::CsiDrivers;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        let name = self.name_any();
        !map.contains(name.as_str()) && map.insert(strings.intern(&name))
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        map.remove(self.name_any().as_str())
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.csi_drivers = Some(Arc::new(map.clone()));
    }
}

/// CSINodes: per node, the names of the drivers registered there (`spec.drivers[].name`),
/// interned (every node repeats the same few); published as the set of drivers some node runs.
impl Watched for CSINode {
    type Map = BTreeMap<String, Vec<Arc<str>>>;
    const RESOURCE: WatchedResource = WatchedResource::CsiNodes;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        let mut drivers: Vec<Arc<str>> = self
            .spec
            .drivers
            .iter()
            .map(|d| strings.intern(&d.name))
            .collect();
        drivers.sort_unstable();
        drivers.dedup();
        // A node without drivers registers nothing: not kept.
        store_named(
            map,
            self.name_any(),
            Some(drivers).filter(|d| !d.is_empty()),
        )
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        map.remove(&self.name_any()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.csi_registered = Some(Arc::new(map.values().flatten().cloned().collect()));
    }
}

/// [`Watched::store`] for the claims cache, which is published as it is: an unchanged entry is
/// not written (so the map is not copied away from the snapshot that shares it), a changed one
/// copies the map's root if a snapshot still holds it (`Arc::make_mut` on a persistent map:
/// a few pointers) and then one path of the tree, never the whole map.
fn store_claim(map: &mut Arc<ClaimMap>, key: &str, value: ClaimInfo) -> bool {
    if map.get(key) == Some(&value) {
        return false;
    }
    Arc::make_mut(map).insert(Arc::from(key), value);
    true
}

impl Watched for PersistentVolume {
    type Map = Arc<PvMap>;
    const RESOURCE: WatchedResource = WatchedResource::PersistentVolumes;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        let info = PvInfo::from_pv(self, strings);
        let name = self.name_any();
        // The PV map keeps its indexes (by claimRef, free by class and capacity) in step.
        if map.get(&name).is_some_and(|pv| **pv == info) {
            return false;
        }
        Arc::make_mut(map).insert(&name, Arc::new(info))
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        let name = self.name_any();
        map.get(&name).is_some() && Arc::make_mut(map).remove(&name)
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    /// The cache is the published map: a publish copies a pointer, not volumes.
    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.pvs = Some(map.clone());
    }
}

impl Watched for PersistentVolumeClaim {
    type Map = Arc<ClaimMap>;
    const RESOURCE: WatchedResource = WatchedResource::PersistentVolumeClaims;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        let info = ClaimInfo::from_claim(self, strings);
        store_claim(map, &claim_key_of(self), info)
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        let key = claim_key_of(self);
        map.contains_key(key.as_str()) && Arc::make_mut(map).remove(key.as_str()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.claims = Some(map.clone());
    }
}

/// Pods, reduced to the claims they mount (a pod mounting none is not kept): the claim
/// protection rules read which pods hold a claim through the map's index by claim. Published as
/// it is, like the PV map.
impl Watched for Pod {
    type Map = Arc<PodMap>;
    const RESOURCE: WatchedResource = WatchedResource::Pods;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        match PodInfo::from_pod(self, strings) {
            Some(info) => {
                let unchanged = map
                    .get(&info.namespace, &info.name)
                    .is_some_and(|old| *old == info);
                !unchanged && Arc::make_mut(map).insert(info)
            }
            None => self.remove(map),
        }
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        let name = self.name_any();
        map.get(namespace, &name).is_some() && Arc::make_mut(map).remove(namespace, &name)
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.pods = Some(map.clone());
    }
}

fn claim_key_of(pvc: &PersistentVolumeClaim) -> String {
    claim_key(
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        &pvc.name_any(),
    )
}

/// What one event did to the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing the rules read changed (or a list is still being buffered).
    None,
    /// The cache changed; publish it.
    Updated,
    /// A full list completed and replaced the cache. `first`: the first one since start.
    Listed { first: bool, changed: bool },
}

pub(crate) struct Cache<K: Watched> {
    current: K::Map,
    /// The list in progress, replacing `current` on `InitDone`.
    listing: Option<K::Map>,
    synced: bool,
    /// Strings shared by the entries of `current` and `listing`.
    strings: Interner,
}

impl<K: Watched> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            current: K::Map::default(),
            listing: None,
            synced: false,
            strings: Interner::default(),
        }
    }
}

impl<K: Watched> Cache<K> {
    pub(crate) fn current(&self) -> &K::Map {
        &self.current
    }

    pub(crate) fn len(&self) -> usize {
        K::len(&self.current)
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced
    }

    pub(crate) fn apply(&mut self, event: Event<K>) -> Change {
        match event {
            Event::Init => {
                self.listing = Some(K::Map::default());
                Change::None
            }
            Event::InitApply(obj) => {
                obj.store(self.listing.get_or_insert_default(), &mut self.strings);
                Change::None
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = listed != self.current;
                // Unchanged: keep the map already published, so the cache and the snapshot
                // go on sharing one.
                if changed {
                    self.current = listed;
                } else {
                    drop(listed);
                }
                self.strings.sweep();
                let first = !std::mem::replace(&mut self.synced, true);
                Change::Listed { first, changed }
            }
            Event::Apply(obj) => {
                let changed = obj.store(&mut self.current, &mut self.strings);
                self.strings.sweep_if_grown();
                if changed {
                    Change::Updated
                } else {
                    Change::None
                }
            }
            Event::Delete(obj) => {
                if obj.remove(&mut self.current) {
                    Change::Updated
                } else {
                    Change::None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::volumes::Phase;
    use serde_json::{Value, json};

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": zone}},
            "status": {"phase": "Running"}}))
        .unwrap()
    }

    fn ns(name: &str, mode: Option<&str>) -> Namespace {
        let labels = mode
            .map(|m| json!({"storage-policy.io/mode": m}))
            .unwrap_or(json!({}));
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    #[test]
    fn a_relist_replaces_the_cache_only_when_complete() {
        let mut c = Cache::<Node>::default();
        assert_eq!(c.apply(Event::Init), Change::None);
        c.apply(Event::InitApply(node("a", "1")));
        c.apply(Event::InitApply(node("b", "1")));
        assert!(
            c.current().is_empty() && !c.is_synced(),
            "nothing published mid-list"
        );
        assert_eq!(
            c.apply(Event::InitDone),
            Change::Listed {
                first: true,
                changed: true
            }
        );
        assert_eq!(c.current().len(), 2);

        c.apply(Event::Init);
        c.apply(Event::InitApply(node("b", "1")));
        assert_eq!(c.current().len(), 2, "old state kept while re-listing");
        assert_eq!(
            c.apply(Event::InitDone),
            Change::Listed {
                first: false,
                changed: true
            }
        );
        assert_eq!(
            c.current().keys().collect::<Vec<_>>(),
            ["b"],
            "a vanished during the gap"
        );

        c.apply(Event::Init);
        c.apply(Event::InitApply(node("b", "1")));
        assert_eq!(
            c.apply(Event::InitDone),
            Change::Listed {
                first: false,
                changed: false
            }
        );
    }

    #[test]
    fn updates_that_change_nothing_read_are_not_changes() {
        let mut c = Cache::<Node>::default();
        c.apply(Event::Init);
        c.apply(Event::InitDone);
        assert_eq!(c.apply(Event::Apply(node("a", "1"))), Change::Updated);
        assert_eq!(
            c.apply(Event::Apply(node("a", "1"))),
            Change::None,
            "status-only update"
        );
        assert_eq!(c.apply(Event::Apply(node("a", "2"))), Change::Updated);
        assert_eq!(c.apply(Event::Delete(node("a", "2"))), Change::Updated);
        assert_eq!(c.apply(Event::Delete(node("a", "2"))), Change::None);
    }

    #[test]
    fn claims_are_keyed_by_namespace_and_reduced() {
        let claim = |ns: &str, phase: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"name": "data", "namespace": ns},
                "spec": {"storageClassName": "local", "volumeName": "pv-1"},
                "status": {"phase": phase}}))
            .unwrap()
        };
        let mut c = Cache::<PersistentVolumeClaim>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(claim("a", "Pending")));
        c.apply(Event::InitApply(claim("b", "Bound")));
        c.apply(Event::InitDone);
        let mut keys: Vec<_> = c.current().keys().map(|k| &**k).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a/data", "b/data"]);
        assert!(c.current()["b/data"].is_bound());
        assert_eq!(c.current()["a/data"].volume_name.as_deref(), Some("pv-1"));
        assert!(
            Arc::ptr_eq(
                c.current()["a/data"].class.as_ref().unwrap(),
                c.current()["b/data"].class.as_ref().unwrap()
            ),
            "one copy of the class name"
        );
        assert_eq!(c.apply(Event::Apply(claim("a", "Pending"))), Change::None);
        assert_eq!(c.apply(Event::Apply(claim("a", "Bound"))), Change::Updated);
        let mut live = LiveState::default();
        PersistentVolumeClaim::publish(c.current(), &mut live);
        assert_eq!(live.claims.as_ref().unwrap().len(), 2);
        assert!(live.pvs.is_none(), "PVs stay unknown until listed");
        assert_eq!(c.apply(Event::Delete(claim("a", "Bound"))), Change::Updated);
        assert_eq!(c.apply(Event::Delete(claim("a", "Bound"))), Change::None);
        assert_eq!(c.len(), 1);
        assert_eq!(
            live.claims.as_ref().unwrap().len(),
            2,
            "the published snapshot is not written to"
        );
    }

    #[test]
    fn volumes_are_reduced_and_published_without_copying_entries() {
        let pv: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv-1"},
            "spec": {"capacity": {"storage": "5Gi"}, "storageClassName": "local"},
            "status": {"phase": "Available"}}))
        .unwrap();
        let mut c = Cache::<PersistentVolume>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(pv.clone()));
        c.apply(Event::InitDone);
        let mut live = LiveState::default();
        PersistentVolume::publish(c.current(), &mut live);
        let published = live.pvs.clone().unwrap();
        assert_eq!(published["pv-1"].capacity, Some(5 << 30));
        assert!(
            Arc::ptr_eq(&published, c.current()),
            "the cache is the published map"
        );
        assert_eq!(
            c.apply(Event::Apply(pv.clone())),
            Change::None,
            "same fields"
        );
        assert!(Arc::ptr_eq(&published, c.current()), "nothing copied");

        // A re-list that finds the same volumes keeps the published map.
        c.apply(Event::Init);
        c.apply(Event::InitApply(pv.clone()));
        assert_eq!(
            c.apply(Event::InitDone),
            Change::Listed {
                first: false,
                changed: false
            }
        );
        assert!(Arc::ptr_eq(&published, c.current()));

        // A change is written to a copy; the snapshot keeps what it had.
        let mut bound = pv;
        bound.status.as_mut().unwrap().phase = Some("Bound".into());
        assert_eq!(c.apply(Event::Apply(bound)), Change::Updated);
        assert!(!Arc::ptr_eq(&published, c.current()));
        assert_eq!(published["pv-1"].phase, Phase::Available);
        assert_eq!(c.current()["pv-1"].phase, Phase::Bound);
    }

    #[test]
    fn volumes_share_their_class_and_label_set() {
        let pv = |name: &str, rack: &str| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": name,
                "labels": {"disk": "nvme", "rack": rack}},
                "spec": {"storageClassName": "local", "claimRef": {"namespace": "team-a", "name": name}}}))
            .unwrap()
        };
        let mut c = Cache::<PersistentVolume>::default();
        c.apply(Event::Init);
        for (name, rack) in [("pv-1", "r1"), ("pv-2", "r1"), ("pv-3", "r2")] {
            c.apply(Event::InitApply(pv(name, rack)));
        }
        c.apply(Event::InitDone);
        let m = c.current();
        let labels = |n: &str| m[n].labels.clone().unwrap();
        assert!(labels("pv-1").ptr_eq(&labels("pv-2")));
        assert!(!labels("pv-1").ptr_eq(&labels("pv-3")));
        assert_eq!(labels("pv-3").get("rack"), Some("r2"));
        assert!(Arc::ptr_eq(&m["pv-1"].class, &m["pv-3"].class));
        let ns = |n: &str| m[n].claim_ref.as_ref().unwrap().namespace.clone();
        assert!(Arc::ptr_eq(&ns("pv-1"), &ns("pv-3")));
    }

    #[test]
    fn volume_events_keep_the_binding_indexes_in_step() {
        use crate::policy::volumes::{Modes, Wants};
        let pv = |phase: &str, claim: Option<&str>| -> PersistentVolume {
            let mut v = json!({"metadata": {"name": "pv-1"},
                "spec": {"capacity": {"storage": "5Gi"}, "storageClassName": "local",
                    "accessModes": ["ReadWriteOnce"]},
                "status": {"phase": phase}});
            if let Some(c) = claim {
                v["spec"]["claimRef"] = json!({"namespace": "team-a", "name": c});
            }
            serde_json::from_value(v).unwrap()
        };
        let w = Wants {
            namespace: "team-a",
            name: "data",
            uid: "",
            class: "local",
            modes: Modes::of(&["ReadWriteOnce".to_owned()]),
            block: false,
            size: 1 << 30,
            selector: None,
        };
        let mut c = Cache::<PersistentVolume>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(pv("Available", None)));
        c.apply(Event::InitDone);
        let published = c.current().clone();
        assert_eq!(c.current().fitting(&w).count(), 1);
        // Bound by the controller: no longer free, found by its claimRef.
        c.apply(Event::Apply(pv("Bound", Some("data"))));
        assert_eq!(c.current().fitting(&w).count(), 0);
        assert_eq!(c.current().claimed("team-a", "data").count(), 1);
        assert_eq!(
            published.fitting(&w).count(),
            1,
            "the snapshot keeps its state"
        );
        assert_eq!(published.claimed("team-a", "data").count(), 0);
        // Released, then deleted: gone from every index.
        c.apply(Event::Apply(pv("Released", Some("data"))));
        assert_eq!(c.current().claimed("team-a", "data").count(), 1);
        c.apply(Event::Delete(pv("Released", Some("data"))));
        assert_eq!(c.current().claimed("team-a", "data").count(), 0);
        assert_eq!(c.current().fitting(&w).count(), 0);
        assert!(c.current().is_empty());
    }

    #[test]
    fn csi_nodes_keep_driver_names_and_publish_the_drivers_some_node_runs() {
        let csi_node = |name: &str, drivers: &[&str]| -> CSINode {
            let drivers: Vec<Value> = drivers
                .iter()
                .map(|d| json!({"name": d, "nodeID": name, "topologyKeys": ["zone"]}))
                .collect();
            serde_json::from_value(
                json!({"metadata": {"name": name}, "spec": {"drivers": drivers}}),
            )
            .unwrap()
        };
        let mut c = Cache::<CSINode>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(csi_node(
            "a",
            &["ebs.csi.aws.com", "efs.csi.aws.com"],
        )));
        c.apply(Event::InitApply(csi_node("b", &["ebs.csi.aws.com"])));
        c.apply(Event::InitApply(csi_node("c", &[])));
        c.apply(Event::InitDone);
        assert_eq!(c.len(), 2, "a node without drivers is not kept");
        assert!(
            Arc::ptr_eq(&c.current()["a"][0], &c.current()["b"][0]),
            "interned"
        );
        let mut live = LiveState::default();
        CSINode::publish(c.current(), &mut live);
        let mut got: Vec<&str> = live
            .csi_registered
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| &**d)
            .collect();
        got.sort_unstable();
        assert_eq!(got, ["ebs.csi.aws.com", "efs.csi.aws.com"]);
        assert_eq!(
            c.apply(Event::Apply(csi_node("b", &["ebs.csi.aws.com"]))),
            Change::None,
            "same drivers (an allocatable change)"
        );
        assert_eq!(c.apply(Event::Delete(csi_node("a", &[]))), Change::Updated);
        CSINode::publish(c.current(), &mut live);
        assert!(
            !live
                .csi_registered
                .as_ref()
                .unwrap()
                .contains("efs.csi.aws.com")
        );

        let driver = |name: &str| -> CSIDriver {
            serde_json::from_value(
                json!({"metadata": {"name": name}, "spec": {"attachRequired": true}}),
            )
            .unwrap()
        };
        let mut d = Cache::<CSIDriver>::default();
        d.apply(Event::Init);
        d.apply(Event::InitDone);
        assert_eq!(
            d.apply(Event::Apply(driver("ebs.csi.aws.com"))),
            Change::Updated
        );
        assert_eq!(
            d.apply(Event::Apply(driver("ebs.csi.aws.com"))),
            Change::None
        );
        CSIDriver::publish(d.current(), &mut live);
        assert!(
            live.csi_drivers
                .as_ref()
                .unwrap()
                .contains("ebs.csi.aws.com")
        );
        assert_eq!(
            d.apply(Event::Delete(driver("ebs.csi.aws.com"))),
            Change::Updated
        );
    }

    #[test]
    fn namespaces_that_say_nothing_are_not_kept() {
        let mut c = Cache::<Namespace>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(ns("plain", None)));
        c.apply(Event::InitApply(ns("audited", Some("audit"))));
        c.apply(Event::InitDone);
        assert_eq!(c.current().keys().collect::<Vec<_>>(), ["audited"]);
        assert_eq!(c.apply(Event::Apply(ns("plain", None))), Change::None);
        assert_eq!(
            c.apply(Event::Apply(ns("audited", None))),
            Change::Updated,
            "label removed"
        );
        assert!(c.current().is_empty());
    }

    #[test]
    fn pods_are_kept_only_with_claims_and_indexed_by_claim() {
        let pod = |name: &str, node: Option<&str>, claim: Option<&str>| -> Pod {
            let volumes = match claim {
                Some(c) => json!([{"name": "d", "persistentVolumeClaim": {"claimName": c}}]),
                None => json!([{"name": "tmp", "emptyDir": {}}]),
            };
            let mut p = json!({"metadata": {"name": name, "namespace": "team-a"},
                "spec": {"containers": [{"name": "c", "image": "x"}], "volumes": volumes},
                "status": {"phase": "Pending"}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            serde_json::from_value(p).unwrap()
        };
        let mut c = Cache::<Pod>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(pod("a", None, Some("data"))));
        c.apply(Event::InitApply(pod("b", Some("n1"), None)));
        c.apply(Event::InitDone);
        assert_eq!(c.len(), 1, "a pod mounting no claim is not kept");
        let mut live = LiveState::default();
        Pod::publish(c.current(), &mut live);
        let published = live.pods.clone().unwrap();
        assert!(
            Arc::ptr_eq(&published, c.current()),
            "the cache is the published map"
        );
        // Scheduled: a change; the same again: none.
        assert_eq!(
            c.apply(Event::Apply(pod("a", Some("n1"), Some("data")))),
            Change::Updated
        );
        assert_eq!(
            c.apply(Event::Apply(pod("a", Some("n1"), Some("data")))),
            Change::None
        );
        assert!(
            c.current()
                .naming("team-a", "data")
                .all(|p| p.holds("data", None))
        );
        assert!(
            published
                .naming("team-a", "data")
                .all(|p| !p.holds("data", None)),
            "the snapshot keeps its state"
        );
        // Its volume gone (a pod cannot change volumes, but a re-created one can): removed.
        assert_eq!(
            c.apply(Event::Apply(pod("a", Some("n1"), None))),
            Change::Updated
        );
        assert!(c.current().is_empty());
        assert_eq!(
            c.apply(Event::Delete(pod("a", Some("n1"), None))),
            Change::None
        );
    }
}
