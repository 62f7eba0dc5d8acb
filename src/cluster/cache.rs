//! One resource's cache: watcher events in, the reduced objects out. A full list (`Init`,
//! `InitApply`..., `InitDone`) is buffered and replaces the cache only once complete, so a
//! re-list never exposes a partial or empty state; objects are reduced to what the rules read
//! (never kept whole), and an event that changes nothing the rules read is reported as such so
//! the catalog is not rebuilt for it (most Node updates are status changes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::status::WatchedResource;
use crate::policy::volumes::{ClaimInfo, PvInfo, claim_key};
use crate::policy::{ClassesKnown, LiveClass, LiveState, NamespaceInfo};

/// A watched resource: how to reduce an object and where the reduced set goes in [`LiveState`].
pub(crate) trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Value: Clone + PartialEq + Send + Sync;
    const RESOURCE: WatchedResource;

    /// What the rules read of the object; `None` when nothing worth keeping.
    fn reduce(&self) -> Option<Self::Value>;

    /// The object's key in the cache: its name (namespaced kinds: `namespace/name`).
    fn key(&self) -> String {
        self.name_any()
    }

    /// Writes the whole cache into the live state.
    fn publish(cache: &BTreeMap<String, Self::Value>, live: &mut LiveState);

    /// The cache as StorageClasses, for the checks only they need.
    fn as_classes(_cache: &BTreeMap<String, Self::Value>) -> Option<&BTreeMap<String, LiveClass>> {
        None
    }
}

impl Watched for StorageClass {
    type Value = LiveClass;
    const RESOURCE: WatchedResource = WatchedResource::StorageClasses;

    fn reduce(&self) -> Option<LiveClass> {
        Some(LiveClass::from_storage_class(self))
    }

    fn publish(cache: &BTreeMap<String, LiveClass>, live: &mut LiveState) {
        live.classes = cache.values().cloned().collect();
        // Published only once a full list completed (and from then on by the watch): every
        // class of the cluster is known, so a name found nowhere names no class.
        live.classes_known = ClassesKnown::Cluster;
    }

    fn as_classes(cache: &BTreeMap<String, LiveClass>) -> Option<&BTreeMap<String, LiveClass>> {
        Some(cache)
    }
}

impl Watched for Namespace {
    type Value = NamespaceInfo;
    const RESOURCE: WatchedResource = WatchedResource::Namespaces;

    fn reduce(&self) -> Option<NamespaceInfo> {
        Some(NamespaceInfo::from_namespace(self)).filter(|i| !i.is_empty())
    }

    fn publish(cache: &BTreeMap<String, NamespaceInfo>, live: &mut LiveState) {
        live.namespaces = cache
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>();
    }
}

impl Watched for Node {
    type Value = BTreeMap<String, String>;
    const RESOURCE: WatchedResource = WatchedResource::Nodes;

    fn reduce(&self) -> Option<BTreeMap<String, String>> {
        // The policy's node label can change on reload, so keep every label (not the object).
        Some(self.metadata.labels.clone().unwrap_or_default())
    }

    fn publish(cache: &BTreeMap<String, BTreeMap<String, String>>, live: &mut LiveState) {
        live.nodes = Some(cache.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    }
}

impl Watched for PersistentVolume {
    type Value = Arc<PvInfo>;
    const RESOURCE: WatchedResource = WatchedResource::PersistentVolumes;

    fn reduce(&self) -> Option<Arc<PvInfo>> {
        Some(Arc::new(PvInfo::from_pv(self)))
    }

    /// Entries are shared with the cache (`Arc`): a publish copies pointers, not volumes.
    fn publish(cache: &BTreeMap<String, Arc<PvInfo>>, live: &mut LiveState) {
        live.pvs = Some(Arc::new(
            cache.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    }
}

impl Watched for PersistentVolumeClaim {
    type Value = Arc<ClaimInfo>;
    const RESOURCE: WatchedResource = WatchedResource::PersistentVolumeClaims;

    fn reduce(&self) -> Option<Arc<ClaimInfo>> {
        Some(Arc::new(ClaimInfo::from_claim(self)))
    }

    fn key(&self) -> String {
        claim_key(
            self.metadata.namespace.as_deref().unwrap_or_default(),
            &self.name_any(),
        )
    }

    fn publish(cache: &BTreeMap<String, Arc<ClaimInfo>>, live: &mut LiveState) {
        live.claims = Some(Arc::new(
            cache.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    }
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
    current: BTreeMap<String, K::Value>,
    /// The list in progress, replacing `current` on `InitDone`.
    listing: Option<BTreeMap<String, K::Value>>,
    synced: bool,
}

impl<K: Watched> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            current: BTreeMap::new(),
            listing: None,
            synced: false,
        }
    }
}

impl<K: Watched> Cache<K> {
    pub(crate) fn current(&self) -> &BTreeMap<String, K::Value> {
        &self.current
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced
    }

    pub(crate) fn apply(&mut self, event: Event<K>) -> Change {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                Change::None
            }
            Event::InitApply(obj) => {
                if let Some(v) = obj.reduce() {
                    self.listing.get_or_insert_default().insert(obj.key(), v);
                }
                Change::None
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = listed != self.current;
                self.current = listed;
                let first = !std::mem::replace(&mut self.synced, true);
                Change::Listed { first, changed }
            }
            Event::Apply(obj) => {
                let name = obj.key();
                let changed = match obj.reduce() {
                    Some(v) if self.current.get(&name) != Some(&v) => {
                        self.current.insert(name, v);
                        true
                    }
                    Some(_) => false,
                    None => self.current.remove(&name).is_some(),
                };
                if changed {
                    Change::Updated
                } else {
                    Change::None
                }
            }
            Event::Delete(obj) => {
                if self.current.remove(&obj.key()).is_some() {
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
    use serde_json::json;

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
        assert_eq!(c.current().keys().collect::<Vec<_>>(), ["a/data", "b/data"]);
        assert!(c.current()["b/data"].is_bound());
        assert_eq!(c.current()["a/data"].volume_name.as_deref(), Some("pv-1"));
        assert_eq!(c.apply(Event::Apply(claim("a", "Pending"))), Change::None);
        assert_eq!(c.apply(Event::Apply(claim("a", "Bound"))), Change::Updated);
        let mut live = LiveState::default();
        PersistentVolumeClaim::publish(c.current(), &mut live);
        assert_eq!(live.claims.as_ref().unwrap().len(), 2);
        assert!(live.pvs.is_none(), "PVs stay unknown until listed");
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
        let published = &live.pvs.as_ref().unwrap()["pv-1"];
        assert_eq!(published.capacity, Some(5 << 30));
        assert!(Arc::ptr_eq(published, &c.current()["pv-1"]));
        assert_eq!(c.apply(Event::Apply(pv)), Change::None, "same fields");
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
}
