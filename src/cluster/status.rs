//! Whether the watch caches hold a complete picture of the cluster yet (the server's `/readyz`).

use std::fmt;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use tokio::sync::watch;

/// The kinds of object the cluster cache watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchedResource {
    StorageClasses,
    Namespaces,
    Nodes,
    PersistentVolumes,
    PersistentVolumeClaims,
    Pods,
    CsiDrivers,
    CsiNodes,
    /// Optional (a CRD): watched only while the API serves it, never part of readiness.
    VolumeSnapshots,
    VolumeSnapshotContents,
}

/// How many resources are watched.
const COUNT: usize = 10;
/// The first `REQUIRED` of them make the cache synced; the others are optional.
const REQUIRED: usize = 8;

impl WatchedResource {
    pub const ALL: [WatchedResource; COUNT] = [
        WatchedResource::StorageClasses,
        WatchedResource::Namespaces,
        WatchedResource::Nodes,
        WatchedResource::PersistentVolumes,
        WatchedResource::PersistentVolumeClaims,
        WatchedResource::Pods,
        WatchedResource::CsiDrivers,
        WatchedResource::CsiNodes,
        WatchedResource::VolumeSnapshots,
        WatchedResource::VolumeSnapshotContents,
    ];

    /// The API resource name (`storageclasses`, `namespaces`, `nodes`): the metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchedResource::StorageClasses => "storageclasses",
            WatchedResource::Namespaces => "namespaces",
            WatchedResource::Nodes => "nodes",
            WatchedResource::PersistentVolumes => "persistentvolumes",
            WatchedResource::PersistentVolumeClaims => "persistentvolumeclaims",
            WatchedResource::Pods => "pods",
            WatchedResource::CsiDrivers => "csidrivers",
            WatchedResource::CsiNodes => "csinodes",
            WatchedResource::VolumeSnapshots => "volumesnapshots",
            WatchedResource::VolumeSnapshotContents => "volumesnapshotcontents",
        }
    }

    fn index(self) -> usize {
        match self {
            WatchedResource::StorageClasses => 0,
            WatchedResource::Namespaces => 1,
            WatchedResource::Nodes => 2,
            WatchedResource::PersistentVolumes => 3,
            WatchedResource::PersistentVolumeClaims => 4,
            WatchedResource::Pods => 5,
            WatchedResource::CsiDrivers => 6,
            WatchedResource::CsiNodes => 7,
            WatchedResource::VolumeSnapshots => 8,
            WatchedResource::VolumeSnapshotContents => 9,
        }
    }

    /// Whether the cache waits for this resource before it is synced.
    pub fn is_required(self) -> bool {
        self.index() < REQUIRED
    }
}

impl fmt::Display for WatchedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for WatchedResource {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Sync state of the cluster cache, shared by the watches (writers) and the server (readers).
///
/// Synced means: the first full list of every watched resource (StorageClasses, Namespaces,
/// Nodes, PersistentVolumes, PersistentVolumeClaims, Pods, CSIDrivers and CSINodes) has completed. It
/// stays true afterwards: a dropped watch or a re-list keeps serving the last complete state.
#[derive(Debug)]
pub struct ClusterStatus {
    synced: watch::Sender<[bool; COUNT]>,
}

impl ClusterStatus {
    /// Not synced: a cluster is configured and its caches have yet to be filled.
    pub fn new() -> ClusterStatus {
        ClusterStatus {
            synced: watch::Sender::new([false; COUNT]),
        }
    }

    /// Synced from the start: there is no cluster to wait for (`--no-cluster`, or no
    /// configuration found), decisions run on the static policy alone.
    pub fn without_cluster() -> ClusterStatus {
        ClusterStatus {
            synced: watch::Sender::new([true; COUNT]),
        }
    }

    /// Whether every watched resource has been listed in full at least once.
    pub fn is_synced(&self) -> bool {
        self.synced.borrow()[..REQUIRED].iter().all(|s| *s)
    }

    /// Whether one resource has been listed in full at least once.
    pub fn is_resource_synced(&self, resource: WatchedResource) -> bool {
        self.synced.borrow()[resource.index()]
    }

    /// Resolves once [`ClusterStatus::is_synced`] is true.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|s| s[..REQUIRED].iter().all(|s| *s)).await;
    }

    pub(crate) fn mark_synced(&self, resource: WatchedResource) {
        self.synced
            .send_if_modified(|s| !std::mem::replace(&mut s[resource.index()], true));
    }
}

impl Default for ClusterStatus {
    fn default() -> Self {
        ClusterStatus::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synced_only_after_every_resource() {
        let status = std::sync::Arc::new(ClusterStatus::new());
        let waiter = tokio::spawn({
            let status = status.clone();
            async move { status.wait_synced().await }
        });
        status.mark_synced(WatchedResource::StorageClasses);
        status.mark_synced(WatchedResource::Nodes);
        assert!(!status.is_synced());
        assert!(status.is_resource_synced(WatchedResource::Nodes));
        assert!(!waiter.is_finished());
        status.mark_synced(WatchedResource::Namespaces);
        status.mark_synced(WatchedResource::PersistentVolumes);
        assert!(!status.is_synced(), "claims not listed yet");
        status.mark_synced(WatchedResource::PersistentVolumeClaims);
        assert!(!status.is_synced(), "pods not listed yet");
        status.mark_synced(WatchedResource::Pods);
        status.mark_synced(WatchedResource::CsiDrivers);
        assert!(!status.is_synced(), "CSINodes not listed yet");
        status.mark_synced(WatchedResource::CsiNodes);
        assert!(status.is_synced());
        assert!(status.is_synced(), "snapshots are optional");
        assert!(!status.is_resource_synced(WatchedResource::VolumeSnapshots));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("wait_synced resolves")
            .unwrap();
    }

    #[test]
    fn without_cluster_is_synced_from_the_start() {
        assert!(ClusterStatus::without_cluster().is_synced());
        assert!(!ClusterStatus::new().is_synced());
    }
}
