//! VolumeSnapshots and VolumeSnapshotContents (`snapshot.storage.k8s.io/v1`, a CRD that a
//! cluster may not have) as the data-source checks see them, and a claim's data source as the
//! external-provisioner reads it.
//!
//! Objects are reduced at ingest: a snapshot to whether it is bound to a content, ready, and its
//! `restoreSize`; a content to its driver. Both maps are persistent (imbl), published as they
//! are kept, like the claims. Whether snapshots are known at all is the catalog's business
//! (`None` while the CRD is absent or not yet listed): a rule never guesses from an empty map.

use std::sync::Arc;

use imbl::OrdMap;
use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;

use super::interner::Interner;

/// The API group of VolumeSnapshots (`snapshotAPIGroup` in the external-provisioner).
pub const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";
pub const SNAPSHOT_KIND: &str = "VolumeSnapshot";
pub const CLAIM_KIND: &str = "PersistentVolumeClaim";

/// One VolumeSnapshot, reduced to what the data-source checks read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `status.boundVolumeSnapshotContentName`, when set.
    pub content: Option<Arc<str>>,
    /// `status.readyToUse` is `true`.
    pub ready: bool,
    /// `status.restoreSize` in bytes (rounded up), when set and readable.
    pub restore_size: Option<u64>,
}

impl SnapshotInfo {
    /// Reduces the status fields (`restoreSize` as written: a quantity string, or an integer).
    pub fn new(
        content: Option<&str>,
        ready: Option<bool>,
        restore_size: Option<&serde_json::Value>,
        strings: &mut Interner,
    ) -> SnapshotInfo {
        let restore_size = restore_size.and_then(|v| match v {
            serde_json::Value::String(s) => super::quantity::bytes(s),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        });
        SnapshotInfo {
            content: content.filter(|c| !c.is_empty()).map(|c| strings.intern(c)),
            ready: ready == Some(true),
            restore_size,
        }
    }
}

/// Snapshots by `namespace/name` ([`super::volumes::claim_key`]).
pub type SnapshotMap = OrdMap<Arc<str>, SnapshotInfo>;
/// Contents by name: their `spec.driver` (interned).
pub type ContentMap = OrdMap<Arc<str>, Arc<str>>;

/// The snapshots and contents of the cluster, both listed.
#[derive(Clone, Debug)]
pub struct SnapshotIndex {
    pub snapshots: Arc<SnapshotMap>,
    pub contents: Arc<ContentMap>,
}

impl SnapshotIndex {
    pub fn snapshot(&self, namespace: &str, name: &str) -> Option<&SnapshotInfo> {
        self.snapshots
            .get(super::volumes::claim_key(namespace, name).as_str())
    }

    /// The driver of a content, when the content is known.
    pub fn driver(&self, content: &str) -> Option<&str> {
        self.contents.get(content).map(|d| &**d)
    }
}

/// What a claim restores or clones from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSource<'a> {
    /// A VolumeSnapshot of the claim's namespace.
    Snapshot(&'a str),
    /// A claim of the claim's namespace.
    Claim(&'a str),
}

impl<'a> DataSource<'a> {
    /// The data source as the external-provisioner normalises it (`dataSource` in
    /// `pkg/controller/controller.go`): `spec.dataSource` first, else `spec.dataSourceRef`; a
    /// `dataSourceRef` into another namespace (CrossNamespaceVolumeDataSource, behind a
    /// ReferenceGrant) and any other kind (a volume populator's) are `None`: not judged. The
    /// field it was read from is returned too (`dataSource` or `dataSourceRef`).
    pub fn of(
        spec: &'a PersistentVolumeClaimSpec,
        namespace: &str,
    ) -> Option<(DataSource<'a>, &'static str)> {
        let (group, kind, name, field) = if let Some(s) = &spec.data_source {
            (s.api_group.as_deref(), &s.kind, &s.name, "dataSource")
        } else {
            let r = spec.data_source_ref.as_ref()?;
            if r.namespace.as_deref().is_some_and(|n| n != namespace) {
                return None;
            }
            (r.api_group.as_deref(), &r.kind, &r.name, "dataSourceRef")
        };
        if name.is_empty() {
            return None;
        }
        let group = group.unwrap_or_default();
        match (group, kind.as_str()) {
            (SNAPSHOT_GROUP, SNAPSHOT_KIND) => Some((DataSource::Snapshot(name), field)),
            ("", CLAIM_KIND) => Some((DataSource::Claim(name), field)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PersistentVolumeClaimSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_the_data_source_as_the_external_provisioner_does() {
        let snap = json!({"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "s1"});
        let claim = json!({"kind": "PersistentVolumeClaim", "name": "c1"});
        let s = spec(json!({"dataSource": snap, "dataSourceRef": claim}));
        assert_eq!(
            DataSource::of(&s, "a"),
            Some((DataSource::Snapshot("s1"), "dataSource"))
        );
        let s = spec(json!({"dataSourceRef": claim}));
        assert_eq!(
            DataSource::of(&s, "a"),
            Some((DataSource::Claim("c1"), "dataSourceRef"))
        );
        let mut other_ns = claim.clone();
        other_ns["namespace"] = json!("b");
        assert_eq!(
            DataSource::of(&spec(json!({"dataSourceRef": other_ns})), "a"),
            None
        );
        let mut same_ns = claim.clone();
        same_ns["namespace"] = json!("a");
        assert!(DataSource::of(&spec(json!({"dataSourceRef": same_ns})), "a").is_some());
        for other in [
            json!({"apiGroup": "populator.example.com", "kind": "VolumeSnapshot", "name": "x"}),
            json!({"kind": "VolumeSnapshot", "name": "x"}),
            json!({"apiGroup": "", "kind": "Pod", "name": "x"}),
            json!({"kind": "PersistentVolumeClaim", "name": ""}),
        ] {
            assert_eq!(
                DataSource::of(&spec(json!({"dataSource": other})), "a"),
                None
            );
        }
    }

    #[test]
    fn restore_size_is_a_quantity_or_an_integer() {
        let mut strings = Interner::default();
        let s = |v| SnapshotInfo::new(Some("c"), Some(true), Some(&v), &mut Interner::default());
        assert_eq!(s(json!("1Gi")).restore_size, Some(1 << 30));
        assert_eq!(s(json!(1024)).restore_size, Some(1024));
        assert_eq!(s(json!("lots")).restore_size, None);
        let n = SnapshotInfo::new(Some(""), None, None, &mut strings);
        assert_eq!(n, SnapshotInfo::default());
    }
}
