//! VolumeSnapshots and VolumeSnapshotContents (`snapshot.storage.k8s.io/v1`): a CRD that a
//! cluster may not have. Discovered through the API (`/apis/snapshot.storage.k8s.io/v1`) and
//! watched only while both resources are served; rediscovered every [`REDISCOVER`] (and after a
//! failed discovery), so the CRDs may come and go. While absent or not yet listed, the live
//! state holds no snapshots and the snapshot checks say nothing.
//!
//! The objects are decoded into the few fields the rules read (everything else is skipped by
//! serde) and reduced into the model's maps ([`crate::policy::snapshots`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::cache::Watched;
use super::status::WatchedResource;
use crate::policy::LiveState;
use crate::policy::interner::Interner;
use crate::policy::snapshots::{ContentMap, SNAPSHOT_GROUP, SnapshotInfo, SnapshotMap};
use crate::policy::volumes::claim_key;

/// How often the snapshot API is looked for again (present: whether it went away).
pub const REDISCOVER: Duration = Duration::from_secs(10);
const VERSION: &str = "v1";

/// A VolumeSnapshot: what the rules read of it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct VolumeSnapshot {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeSnapshotStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// A quantity, written as a string or an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<serde_json::Value>,
}

/// A VolumeSnapshotContent: its driver.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct VolumeSnapshotContent {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VolumeSnapshotContentSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct VolumeSnapshotContentSpec {
    #[serde(default)]
    pub driver: String,
}

macro_rules! snapshot_resource {
    ($ty:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(SNAPSHOT_GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

snapshot_resource!(
    VolumeSnapshot,
    "VolumeSnapshot",
    "volumesnapshots",
    k8s_openapi::NamespaceResourceScope
);
snapshot_resource!(
    VolumeSnapshotContent,
    "VolumeSnapshotContent",
    "volumesnapshotcontents",
    k8s_openapi::ClusterResourceScope
);

impl VolumeSnapshot {
    pub fn info(&self, strings: &mut Interner) -> SnapshotInfo {
        let s = self.status.as_ref();
        SnapshotInfo::new(
            s.and_then(|s| s.bound_volume_snapshot_content_name.as_deref()),
            s.and_then(|s| s.ready_to_use),
            s.and_then(|s| s.restore_size.as_ref()),
            strings,
        )
    }

    pub fn key(&self) -> String {
        claim_key(
            self.metadata.namespace.as_deref().unwrap_or_default(),
            &self.name_any(),
        )
    }
}

impl Watched for VolumeSnapshot {
    type Map = Arc<SnapshotMap>;
    const RESOURCE: WatchedResource = WatchedResource::VolumeSnapshots;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        let info = self.info(strings);
        let key = self.key();
        if map.get(key.as_str()) == Some(&info) {
            return false;
        }
        Arc::make_mut(map).insert(Arc::from(key), info);
        true
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        let key = self.key();
        map.contains_key(key.as_str()) && Arc::make_mut(map).remove(key.as_str()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.snapshots = Some(map.clone());
    }
}

impl Watched for VolumeSnapshotContent {
    type Map = Arc<ContentMap>;
    const RESOURCE: WatchedResource = WatchedResource::VolumeSnapshotContents;

    fn store(&self, map: &mut Self::Map, strings: &mut Interner) -> bool {
        let name = self.name_any();
        if map
            .get(name.as_str())
            .is_some_and(|d| **d == *self.spec.driver)
        {
            return false;
        }
        let driver = strings.intern(&self.spec.driver);
        Arc::make_mut(map).insert(Arc::from(name), driver);
        true
    }

    fn remove(&self, map: &mut Self::Map) -> bool {
        let name = self.name_any();
        map.contains_key(name.as_str()) && Arc::make_mut(map).remove(name.as_str()).is_some()
    }

    fn len(map: &Self::Map) -> usize {
        map.len()
    }

    fn publish(map: &Self::Map, live: &mut LiveState) {
        live.snapshot_contents = Some(map.clone());
    }
}

/// Forgets every snapshot and content (the API went away, or is being watched anew).
pub fn clear(live: &mut LiveState) {
    live.snapshots = None;
    live.snapshot_contents = None;
}

/// Whether the API serves both `volumesnapshots` and `volumesnapshotcontents` in
/// `snapshot.storage.k8s.io/v1`. A 404 (no such group) is `Ok(false)`; other failures are errors.
pub async fn discover(client: &Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&format!("{SNAPSHOT_GROUP}/{VERSION}"))
        .await
    {
        Ok(list) => {
            let has = |plural: &str| list.resources.iter().any(|r| r.name == plural);
            Ok(has("volumesnapshots") && has("volumesnapshotcontents"))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a discovery found, said once per change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Unknown,
    Absent,
    Present,
}

impl Presence {
    /// Logs a change of presence; returns the new one.
    pub fn update(self, now: Presence) -> Presence {
        if self != now {
            match now {
                Presence::Present => info!(
                    "the snapshot API ({SNAPSHOT_GROUP}/{VERSION}) is served: watching VolumeSnapshots and VolumeSnapshotContents"
                ),
                Presence::Absent => info!(
                    "the snapshot API ({SNAPSHOT_GROUP}/{VERSION}) is not served: restores from snapshots are not judged"
                ),
                Presence::Unknown => debug!("snapshot API discovery failed"),
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::{Cache, Change};
    use super::*;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn snap(name: &str, content: Option<&str>, ready: bool) -> VolumeSnapshot {
        let mut status = json!({"readyToUse": ready, "restoreSize": "10Gi"});
        if let Some(c) = content {
            status["boundVolumeSnapshotContentName"] = json!(c);
        }
        serde_json::from_value(json!({"apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}},
            "status": status}))
        .unwrap()
    }

    #[test]
    fn snapshots_are_reduced_and_keyed_by_namespace() {
        let mut c = Cache::<VolumeSnapshot>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(snap("s1", Some("snapcontent-1"), true)));
        c.apply(Event::InitApply(snap("s2", None, false)));
        c.apply(Event::InitDone);
        let m = c.current();
        assert_eq!(
            m["team-a/s1"],
            SnapshotInfo {
                content: Some(Arc::from("snapcontent-1")),
                ready: true,
                restore_size: Some(10 << 30),
            }
        );
        assert_eq!(m["team-a/s2"].content, None);
        assert_eq!(
            c.apply(Event::Apply(snap("s2", None, false))),
            Change::None,
            "nothing read changed"
        );
        assert_eq!(
            c.apply(Event::Apply(snap("s2", Some("c2"), true))),
            Change::Updated
        );
        let mut live = LiveState::default();
        VolumeSnapshot::publish(c.current(), &mut live);
        assert_eq!(live.snapshots.as_ref().unwrap().len(), 2);
        clear(&mut live);
        assert!(live.snapshots.is_none());
    }

    #[test]
    fn contents_keep_their_driver() {
        let content = |driver: &str| -> VolumeSnapshotContent {
            serde_json::from_value(json!({"metadata": {"name": "snapcontent-1"},
                "spec": {"driver": driver, "deletionPolicy": "Delete",
                    "volumeSnapshotRef": {"name": "s1", "namespace": "team-a"}}}))
            .unwrap()
        };
        let mut c = Cache::<VolumeSnapshotContent>::default();
        c.apply(Event::Init);
        c.apply(Event::InitApply(content("ebs.csi.aws.com")));
        c.apply(Event::InitDone);
        assert_eq!(&*c.current()["snapcontent-1"], "ebs.csi.aws.com");
        assert_eq!(
            c.apply(Event::Apply(content("ebs.csi.aws.com"))),
            Change::None
        );
        assert_eq!(
            c.apply(Event::Apply(content("pd.csi.storage.gke.io"))),
            Change::Updated
        );
        assert_eq!(c.apply(Event::Delete(content("x"))), Change::Updated);
        assert!(c.current().is_empty());
    }

    #[test]
    fn resources_name_the_snapshot_api() {
        use kube::Resource;
        assert_eq!(
            VolumeSnapshot::url_path(&(), Some("team-a")),
            "/apis/snapshot.storage.k8s.io/v1/namespaces/team-a/volumesnapshots"
        );
        assert_eq!(
            VolumeSnapshotContent::url_path(&(), None),
            "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents"
        );
    }
}
