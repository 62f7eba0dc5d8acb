//! What the rules know about storage: StorageClasses (static from the policy file, live from the
//! cluster), their storage kind, the default class, per-namespace settings and the nodes.
//!
//! A [`Catalog`] is an immutable snapshot built off the request path; rules only read it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolumeSpec, TopologySelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::csi::CsiDrivers;
use super::modes::Mode;
use super::node_selector::Node;
use super::pods::PodMap;
use super::quantity::{Written, limit};
use super::snapshots::{ContentMap, SnapshotIndex, SnapshotMap};
use super::topology;
pub use super::vocab::StorageKind;
use super::vocab::{AccessMode, VolumeBindingMode};
use super::volumes::{ClaimMap, PvMap, Source, VolumeIndex};

/// The provisioner of classes whose volumes are made by hand: it says only that nothing
/// provisions dynamically. Such classes hold local PVs most often, but also static NFS, iSCSI
/// or CSI volumes; what a PV serves comes from its own volume source.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// StorageClass annotation giving a live class its minimum size (a quantity).
pub const MIN_SIZE_ANNOTATION: &str = "storage-policy.io/min-size";
/// StorageClass annotation giving a live class its maximum size (a quantity).
pub const MAX_SIZE_ANNOTATION: &str = "storage-policy.io/max-size";
/// Annotation on a StorageClass overriding the provisioner table.
pub const KIND_ANNOTATION: &str = "storage-policy.io/kind";
/// A StorageClass known without a cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticClass {
    pub name: Spanned<String>,
    pub provisioner: String,
    #[serde(default)]
    pub default: Option<Spanned<bool>>,
    #[serde(default)]
    pub kind: Option<StorageKind>,
    #[serde(default)]
    pub allow_read_write_many_block_mode: bool,
    #[serde(default)]
    pub volume_binding_mode: Option<VolumeBindingMode>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// The smallest volume the class provisions (a quantity): smaller claims are raised to it
    /// (`rules.volumeSize`).
    #[serde(default)]
    pub min_size: Option<Spanned<String>>,
    /// The largest volume the class provisions: larger claims are refused.
    #[serde(default)]
    pub max_size: Option<Spanned<String>>,
    /// Where the class may provision (`allowedTopologies`, as in a StorageClass).
    #[serde(default)]
    pub allowed_topologies: Vec<TopologySelectorTerm>,
}

/// Extra provisioner names per storage kind, on top of the built-in table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProvisionerLists {
    #[serde(default)]
    pub block: Vec<String>,
    #[serde(default)]
    pub local: Vec<String>,
    #[serde(default)]
    pub shared: Vec<String>,
}

/// Annotation on a StorageClass allowing ReadWriteMany with `volumeMode: Block` ("true").
pub const ALLOW_RWX_BLOCK_ANNOTATION: &str = "storage-policy.io/allow-rwx-block-mode";
/// Namespace annotation naming the namespace's default class.
pub const NAMESPACE_DEFAULT_ANNOTATION: &str = "storage-policy.io/default-storage-class";
/// Namespace annotation opting the namespace into the ReadWriteMany rewrite, naming the access
/// mode that replaces it (`ReadWriteOnce` or `ReadWriteOncePod`).
pub const NAMESPACE_REWRITE_ANNOTATION: &str = "storage-policy.io/rewrite-access-modes";
/// Namespace label overriding the mode of every rule in that namespace.
pub const NAMESPACE_MODE_LABEL: &str = "storage-policy.io/mode";
/// The StorageClass default annotations Kubernetes reads (value exactly `"true"`).
pub const IS_DEFAULT_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// The built-in provisioner table (`spec/provisioners.md`).
const BUILTIN: &[(&str, StorageKind)] = &[
    ("ebs.csi.aws.com", StorageKind::Block),
    ("kubernetes.io/aws-ebs", StorageKind::Block),
    ("pd.csi.storage.gke.io", StorageKind::Block),
    ("kubernetes.io/gce-pd", StorageKind::Block),
    ("disk.csi.azure.com", StorageKind::Block),
    ("kubernetes.io/azure-disk", StorageKind::Block),
    ("blockvolume.csi.oraclecloud.com", StorageKind::Block),
    ("oracle.com/oci", StorageKind::Block),
    ("oracle.com/oci-block", StorageKind::Block),
    ("cinder.csi.openstack.org", StorageKind::Block),
    ("kubernetes.io/cinder", StorageKind::Block),
    ("rbd.csi.ceph.com", StorageKind::Block),
    ("kubernetes.io/rbd", StorageKind::Block),
    ("dobs.csi.digitalocean.com", StorageKind::Block),
    ("csi.vsphere.vmware.com", StorageKind::Block),
    ("kubernetes.io/vsphere-volume", StorageKind::Block),
    ("kubernetes.io/no-provisioner", StorageKind::Local),
    ("rancher.io/local-path", StorageKind::Local),
    ("openebs.io/local", StorageKind::Local),
    ("local.csi.openebs.io", StorageKind::Local),
    ("zfs.csi.openebs.io", StorageKind::Local),
    ("topolvm.io", StorageKind::Local),
    ("topolvm.cybozu.com", StorageKind::Local),
    ("hostpath.csi.k8s.io", StorageKind::Local),
    ("k8s.io/minikube-hostpath", StorageKind::Local),
    ("efs.csi.aws.com", StorageKind::Shared),
    ("fsx.csi.aws.com", StorageKind::Shared),
    ("filestore.csi.storage.gke.io", StorageKind::Shared),
    ("file.csi.azure.com", StorageKind::Shared),
    ("kubernetes.io/azure-file", StorageKind::Shared),
    ("fss.csi.oraclecloud.com", StorageKind::Shared),
    ("oracle.com/oci-fss", StorageKind::Shared),
    ("lustre.csi.oraclecloud.com", StorageKind::Shared),
    ("nfs.csi.k8s.io", StorageKind::Shared),
    ("cephfs.csi.ceph.com", StorageKind::Shared),
    ("nfs.csi.ceph.com", StorageKind::Shared),
    ("manila.csi.openstack.org", StorageKind::Shared),
    ("smb.csi.k8s.io", StorageKind::Shared),
];

/// Provisioner name -> storage kind: the built-in table plus the policy's extra names (which win).
#[derive(Clone, Debug)]
pub struct ProvisionerTable(HashMap<String, StorageKind>);

impl ProvisionerTable {
    pub fn new(lists: &ProvisionerLists) -> Self {
        let mut map: HashMap<String, StorageKind> =
            BUILTIN.iter().map(|(p, k)| ((*p).to_owned(), *k)).collect();
        for (kind, list) in [
            (StorageKind::Block, &lists.block),
            (StorageKind::Local, &lists.local),
            (StorageKind::Shared, &lists.shared),
        ] {
            for p in list {
                map.insert(p.trim().to_owned(), kind);
            }
        }
        ProvisionerTable(map)
    }

    pub fn kind_of(&self, provisioner: &str) -> Option<StorageKind> {
        self.0.get(provisioner).copied()
    }
}

/// Storage kind of a PersistentVolume from its volume source (for PVs without a known class).
pub fn kind_of_pv_source(
    spec: &PersistentVolumeSpec,
    table: &ProvisionerTable,
) -> Option<StorageKind> {
    if spec.local.is_some() || spec.host_path.is_some() {
        return Some(StorageKind::Local);
    }
    if spec.aws_elastic_block_store.is_some()
        || spec.gce_persistent_disk.is_some()
        || spec.azure_disk.is_some()
        || spec.cinder.is_some()
        || spec.rbd.is_some()
        || spec.iscsi.is_some()
        || spec.fc.is_some()
    {
        return Some(StorageKind::Block);
    }
    if spec.nfs.is_some()
        || spec.cephfs.is_some()
        || spec.glusterfs.is_some()
        || spec.azure_file.is_some()
    {
        return Some(StorageKind::Shared);
    }
    spec.csi.as_ref().and_then(|csi| table.kind_of(&csi.driver))
}

/// One StorageClass as the rules see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassInfo {
    pub name: String,
    pub provisioner: String,
    /// Resolved kind: override (policy `kind` or the class's annotation), else the provisioner table.
    pub kind: Option<StorageKind>,
    /// The kind was declared (policy `kind` or the `storage-policy.io/kind` annotation), not
    /// read from the provisioner table.
    pub kind_declared: bool,
    pub allow_rwx_block_mode: bool,
    /// Marked default (policy `default: true`, or the `is-default-class` annotation equal to "true").
    pub is_default: bool,
    /// Live classes carry their creation time; static ones have none and lose every tie.
    pub created: Option<Time>,
    pub volume_binding_mode: Option<VolumeBindingMode>,
    pub parameters: std::collections::BTreeMap<String, String>,
    /// Read from the cluster (as opposed to the policy file).
    pub live: bool,
    /// The class's own size limits (policy `minSize`/`maxSize`, or the class's annotations).
    pub min_size: Option<Written>,
    pub max_size: Option<Written>,
    /// `allowedTopologies` as the node selector they amount to; `None`: anywhere.
    pub allowed_topologies: Option<NodeSelector>,
}

/// A StorageClass as read from the cluster, already reduced to what the rules need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveClass {
    pub name: String,
    pub provisioner: String,
    pub kind_annotation: Option<String>,
    pub is_default: bool,
    pub allow_rwx_block_mode: bool,
    pub created: Option<Time>,
    pub volume_binding_mode: Option<VolumeBindingMode>,
    pub parameters: std::collections::BTreeMap<String, String>,
    /// The `storage-policy.io/min-size` and `max-size` annotations, as written (a value that is
    /// not a positive quantity is ignored).
    pub min_size: Option<String>,
    pub max_size: Option<String>,
    /// `allowedTopologies` as the node selector they amount to ([`topology::allowed_topologies`]);
    /// `None`: anywhere.
    pub allowed_topologies: Option<NodeSelector>,
}

impl LiveClass {
    /// Reduces a cluster StorageClass to what the rules read. The `storage-policy.io/kind`
    /// annotation overrides the provisioner table (an unknown value is ignored: see
    /// [`LiveClass::kind_annotation_is_valid`]); `storage-policy.io/allow-rwx-block-mode: "true"`
    /// allows ReadWriteMany with `volumeMode: Block`.
    pub fn from_storage_class(sc: &k8s_openapi::api::storage::v1::StorageClass) -> LiveClass {
        let annotations = sc.metadata.annotations.as_ref();
        let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
        LiveClass {
            name: sc.metadata.name.clone().unwrap_or_default(),
            provisioner: sc.provisioner.clone(),
            kind_annotation: get(KIND_ANNOTATION).map(str::to_owned),
            is_default: annotations.is_some_and(annotations_mark_default),
            allow_rwx_block_mode: get(ALLOW_RWX_BLOCK_ANNOTATION) == Some("true"),
            created: sc.metadata.creation_timestamp.clone(),
            volume_binding_mode: match sc.volume_binding_mode.as_deref() {
                Some("Immediate") => Some(VolumeBindingMode::Immediate),
                Some("WaitForFirstConsumer") => Some(VolumeBindingMode::WaitForFirstConsumer),
                _ => None,
            },
            parameters: sc.parameters.clone().unwrap_or_default(),
            min_size: get(MIN_SIZE_ANNOTATION).map(|s| s.trim().to_owned()),
            max_size: get(MAX_SIZE_ANNOTATION).map(|s| s.trim().to_owned()),
            allowed_topologies: sc
                .allowed_topologies
                .as_deref()
                .and_then(topology::allowed_topologies),
        }
    }

    /// Whether the `storage-policy.io/kind` annotation, if present, names a known kind.
    pub fn kind_annotation_is_valid(&self) -> bool {
        self.kind_annotation
            .as_deref()
            .is_none_or(|k| StorageKind::parse(k).is_some())
    }
}

/// Per-namespace settings read from Namespace objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub default_class: Option<String>,
    pub mode: Option<Mode>,
    /// The `storage-policy.io/rewrite-access-modes` annotation: what replaces ReadWriteMany
    /// (only `ReadWriteOnce` or `ReadWriteOncePod`; other values are ignored).
    pub rewrite_access_modes: Option<AccessMode>,
}

impl NamespaceInfo {
    /// Reads the `storage-policy.io/default-storage-class` annotation and the
    /// `storage-policy.io/mode` label (an unknown mode value is ignored).
    pub fn from_namespace(ns: &k8s_openapi::api::core::v1::Namespace) -> NamespaceInfo {
        NamespaceInfo {
            default_class: ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NAMESPACE_DEFAULT_ANNOTATION))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            mode: ns
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(NAMESPACE_MODE_LABEL))
                .and_then(|m| Mode::parse(m)),
            rewrite_access_modes: ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NAMESPACE_REWRITE_ANNOTATION))
                .and_then(|m| AccessMode::parse(m.trim()))
                .filter(|m| matches!(m, AccessMode::ReadWriteOnce | AccessMode::ReadWriteOncePod)),
        }
    }

    /// Whether the namespace says anything (namespaces that say nothing need not be kept).
    pub fn is_empty(&self) -> bool {
        self.default_class.is_none() && self.mode.is_none() && self.rewrite_access_modes.is_none()
    }
}

/// Everything read from a cluster. Empty without a cluster.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    pub classes: Vec<LiveClass>,
    pub namespaces: HashMap<String, NamespaceInfo>,
    /// Nodes as (name, labels); `None` until nodes are known (no cluster, or not synced).
    /// Shared: a catalog rebuilt on a PV event copies a pointer, not every node's labels.
    pub nodes: Option<Arc<Vec<Node>>>,
    /// Whether `classes` are all the classes there are: a name found nowhere names no class.
    pub classes_known: ClassesKnown,
    /// PersistentVolumes by name, reduced; `None` until listed (no cluster, or not synced).
    pub pvs: Option<Arc<PvMap>>,
    /// Claims by `namespace/name`, reduced; `None` until listed.
    pub claims: Option<Arc<ClaimMap>>,
    /// VolumeSnapshots by `namespace/name` and VolumeSnapshotContents by name, reduced; `None`
    /// while the snapshot CRD is absent or not yet listed.
    pub snapshots: Option<Arc<SnapshotMap>>,
    pub snapshot_contents: Option<Arc<ContentMap>>,
    /// Pods that mount claims, reduced, with their index by claim; `None` until listed.
    pub pods: Option<Arc<PodMap>>,
    /// Names of the CSIDriver objects; `None` until listed.
    pub csi_drivers: Option<Arc<HashSet<Arc<str>>>>,
    /// Driver names registered on some node (CSINode `spec.drivers`); `None` until listed.
    pub csi_registered: Option<Arc<HashSet<Arc<str>>>>,
}

/// How much of the StorageClasses that exist the catalog holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClassesKnown {
    /// Some or none (no cluster, not listed yet, `review`): a class not found may exist.
    #[default]
    Partly,
    /// Every class of the cluster: the cluster cache (or `audit --cluster`) has listed them.
    Cluster,
    /// Every class of the audited files: `audit` on files that contain StorageClasses.
    Files,
}

/// The immutable snapshot the rules read.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    classes: HashMap<String, ClassInfo>,
    /// Sorted class names, for stable suggestions.
    names: Vec<String>,
    default_class: Option<String>,
    namespaces: HashMap<String, NamespaceInfo>,
    /// Values of the policy's node label over all nodes, when nodes are known.
    node_values: Option<HashSet<String>>,
    /// The nodes with their labels, when known (node affinity is evaluated against them).
    nodes: Option<Arc<Vec<Node>>>,
    /// Sorted names of the classes known to serve ReadWriteMany: with `volumeMode: Filesystem`,
    /// and with `volumeMode: Block`. Suggested beside a denial.
    rwx_filesystem: Vec<String>,
    rwx_block: Vec<String>,
    /// Sorted names of the classes known to serve `volumeMode: Block` (any kind but shared).
    raw_block: Vec<String>,
    classes_known: ClassesKnown,
    /// PVs and claims, when known (shared, never copied on a rebuild).
    volumes: Option<VolumeIndex>,
    /// Pods that mount claims, when known (shared, never copied on a rebuild).
    pods: Option<Arc<PodMap>>,
    /// The policy's node label, whose values over the nodes `node_values` holds.
    node_label: String,
    /// Snapshots and their contents, when both are listed.
    snapshots: Option<SnapshotIndex>,
    /// The CSI drivers of the cluster, when both CSIDrivers and CSINodes are listed.
    csi: Option<CsiDrivers>,
    /// The classes some of whose free PVs may be pinned to no existing node
    /// ([`PvMap::stranding_classes`]): worked out once per catalog, on first use.
    stranding: OnceLock<HashSet<Arc<str>>>,
}

impl Catalog {
    /// Merges the policy's static classes with the live ones (live wins on a name clash).
    /// `rejected` are the kinds that cannot serve ReadWriteMany; `node_label` names a node.
    pub fn build(
        static_classes: &[StaticClass],
        table: &ProvisionerTable,
        rejected: &[StorageKind],
        node_label: &str,
        live: &LiveState,
    ) -> Catalog {
        let mut classes: HashMap<String, ClassInfo> =
            HashMap::with_capacity(static_classes.len() + live.classes.len());
        for c in static_classes {
            classes.insert(
                c.name.value.clone(),
                ClassInfo {
                    name: c.name.value.clone(),
                    provisioner: c.provisioner.clone(),
                    kind: c.kind.or_else(|| table.kind_of(&c.provisioner)),
                    kind_declared: c.kind.is_some(),
                    allow_rwx_block_mode: c.allow_read_write_many_block_mode,
                    is_default: c.default.as_ref().is_some_and(|d| d.value),
                    created: None,
                    volume_binding_mode: c.volume_binding_mode,
                    parameters: c.parameters.clone(),
                    live: false,
                    // Validated when the policy was loaded.
                    min_size: c.min_size.as_ref().and_then(|s| limit(&s.value).ok()),
                    max_size: c.max_size.as_ref().and_then(|s| limit(&s.value).ok()),
                    allowed_topologies: topology::allowed_topologies(&c.allowed_topologies),
                },
            );
        }
        for c in &live.classes {
            let declared = c.kind_annotation.as_deref().and_then(StorageKind::parse);
            let kind = declared.or_else(|| table.kind_of(&c.provisioner));
            classes.insert(
                c.name.clone(),
                ClassInfo {
                    name: c.name.clone(),
                    provisioner: c.provisioner.clone(),
                    kind,
                    kind_declared: declared.is_some(),
                    allow_rwx_block_mode: c.allow_rwx_block_mode,
                    is_default: c.is_default,
                    created: c.created.clone(),
                    volume_binding_mode: c.volume_binding_mode,
                    parameters: c.parameters.clone(),
                    live: true,
                    min_size: c.min_size.as_deref().and_then(|s| limit(s).ok()),
                    max_size: c.max_size.as_deref().and_then(|s| limit(s).ok()),
                    allowed_topologies: c.allowed_topologies.clone(),
                },
            );
        }
        let default_class = pick_default(classes.values()).map(|c| c.name.clone());
        let mut names: Vec<String> = classes.keys().cloned().collect();
        names.sort_unstable();
        let (mut rwx_filesystem, mut rwx_block, mut raw_block) =
            (Vec::new(), Vec::new(), Vec::new());
        for c in names.iter().filter_map(|n| classes.get(n)) {
            let Some(kind) = c.kind else { continue };
            if kind.serves_raw_block() {
                raw_block.push(c.name.clone());
            }
            if !rejected.contains(&kind) {
                rwx_filesystem.push(c.name.clone());
                rwx_block.push(c.name.clone());
            } else if c.allow_rwx_block_mode {
                rwx_block.push(c.name.clone());
            }
        }
        let node_values = live.nodes.as_ref().map(|nodes| {
            nodes
                .iter()
                .filter_map(|(_, labels)| labels.get(node_label).cloned())
                .collect()
        });
        Catalog {
            classes,
            names,
            default_class,
            namespaces: live.namespaces.clone(),
            node_values,
            nodes: live.nodes.clone(),
            rwx_filesystem,
            rwx_block,
            raw_block,
            classes_known: live.classes_known,
            volumes: match (&live.pvs, &live.claims) {
                (Some(pvs), Some(claims)) => Some(VolumeIndex::new(
                    pvs.clone(),
                    claims.clone(),
                    Source::Cluster,
                )),
                _ => None,
            },
            pods: live.pods.clone(),
            node_label: node_label.to_owned(),
            csi: match (&live.csi_drivers, &live.csi_registered) {
                (Some(objects), Some(registered)) => Some(CsiDrivers {
                    objects: objects.clone(),
                    registered: registered.clone(),
                }),
                _ => None,
            },
            stranding: OnceLock::new(),
            snapshots: match (&live.snapshots, &live.snapshot_contents) {
                (Some(snapshots), Some(contents)) => Some(SnapshotIndex {
                    snapshots: snapshots.clone(),
                    contents: contents.clone(),
                }),
                _ => None,
            },
        }
    }

    /// The CSI drivers of the cluster, `None` when not known (no cluster, CSIDrivers or
    /// CSINodes not listed yet): the provisioner check then says nothing.
    pub fn csi(&self) -> Option<&CsiDrivers> {
        self.csi.as_ref()
    }

    /// The same catalog judging against these CSI drivers (`audit` on files that carry CSIDriver
    /// or CSINode objects).
    pub fn with_csi(mut self, csi: CsiDrivers) -> Catalog {
        self.csi = Some(csi);
        self
    }

    /// Whether a free PV of `class` may be pinned to no existing node, so that the volumes of
    /// a WaitForFirstConsumer class must be checked one by one against the nodes; `false` when
    /// every free PV of the class is known to have a node (no affinity, or a pin to a value of
    /// the node label that a node has). `true` when PVs or nodes are not known.
    pub fn may_strand(&self, class: &str) -> bool {
        let (Some(index), Some(values)) = (&self.volumes, &self.node_values) else {
            return true;
        };
        self.stranding
            .get_or_init(|| {
                index
                    .pvs
                    .stranding_classes(&self.node_label, |v| values.contains(v))
            })
            .contains(class)
    }

    /// The PVs and claims known, `None` when there is no source of them (no cluster, not
    /// listed yet): the binding checks then say nothing.
    pub fn volumes(&self) -> Option<&VolumeIndex> {
        self.volumes.as_ref()
    }

    /// The VolumeSnapshots and contents known, `None` when the snapshot API is absent or not
    /// listed yet: the snapshot checks then say nothing.
    pub fn snapshots(&self) -> Option<&SnapshotIndex> {
        self.snapshots.as_ref()
    }

    /// The same catalog judging against these snapshots (`audit --cluster`, tests).
    pub fn with_snapshots(mut self, snapshots: SnapshotIndex) -> Catalog {
        self.snapshots = Some(snapshots);
        self
    }

    /// The pods that mount claims, `None` when there is no source of them (no cluster, not
    /// listed yet): the claim-protection checks then say nothing.
    pub fn pods(&self) -> Option<&PodMap> {
        self.pods.as_deref()
    }

    /// The same catalog knowing these pods (tests, benchmarks).
    pub fn with_pods(mut self, pods: Arc<PodMap>) -> Catalog {
        self.pods = Some(pods);
        self
    }

    /// The same catalog judging against these PVs and claims (`audit` on files).
    pub fn with_volumes(mut self, volumes: VolumeIndex) -> Catalog {
        self.volumes = Some(volumes);
        self.stranding = OnceLock::new();
        self
    }

    pub fn class(&self, name: &str) -> Option<&ClassInfo> {
        self.classes.get(name)
    }

    /// All classes, sorted by name.
    pub fn classes(&self) -> impl Iterator<Item = &ClassInfo> {
        self.names.iter().filter_map(|n| self.classes.get(n))
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Sorted names of the classes known to serve ReadWriteMany (`block`: with `volumeMode: Block`).
    pub fn rwx_capable(&self, block: bool) -> &[String] {
        if block {
            &self.rwx_block
        } else {
            &self.rwx_filesystem
        }
    }

    /// Sorted names of the classes known to serve `volumeMode: Block`. Suggested beside a denial.
    pub fn raw_block_capable(&self) -> &[String] {
        &self.raw_block
    }

    /// Whether the catalog holds every class there is (see [`ClassesKnown`]).
    pub fn classes_known(&self) -> ClassesKnown {
        self.classes_known
    }

    /// All class names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The default class, chosen as Kubernetes chooses it.
    pub fn default_class(&self) -> Option<&str> {
        self.default_class.as_deref()
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name)
    }

    /// The namespaces that carry settings, in no particular order.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &NamespaceInfo)> {
        self.namespaces.iter().map(|(n, i)| (n.as_str(), i))
    }

    /// Whether a node with this value of the policy's node label exists; `None` when nodes are
    /// not known.
    pub fn node_exists(&self, value: &str) -> Option<bool> {
        self.node_values.as_ref().map(|v| v.contains(value))
    }

    /// The nodes (name and labels), `None` when nodes are not known.
    pub fn nodes(&self) -> Option<&[Node]> {
        self.nodes.as_deref().map(Vec::as_slice)
    }

    /// Classes marked default, newest first: more than one means Kubernetes picks the first.
    /// The class the DefaultStorageClass admission plugin sets on claims without one: the
    /// first live class annotated default in Kubernetes' order (a static class's `default:
    /// true` exists in the policy file alone; the plugin never sees it).
    pub fn plugin_default(&self) -> Option<&str> {
        self.defaults()
            .into_iter()
            .find(|c| c.live)
            .map(|c| c.name.as_str())
    }

    pub fn defaults(&self) -> Vec<&ClassInfo> {
        let mut v: Vec<&ClassInfo> = self.classes.values().filter(|c| c.is_default).collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
        v
    }
}

/// Kubernetes' choice among classes marked default: newest `creationTimestamp`, then the smallest
/// name (`GetDefaultClass` in the DefaultStorageClass admission plugin).
pub fn pick_default<'a>(classes: impl Iterator<Item = &'a ClassInfo>) -> Option<&'a ClassInfo> {
    classes
        .filter(|c| c.is_default)
        .min_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)))
}

/// Whether a StorageClass's annotations mark it default (value exactly `"true"`).
pub fn annotations_mark_default(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    IS_DEFAULT_ANNOTATIONS
        .iter()
        .any(|k| annotations.get(*k).map(String::as_str) == Some("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config;

    fn ts(secs: i64, nanos: i32) -> Option<Time> {
        Some(Time(
            k8s_openapi::jiff::Timestamp::new(secs, nanos).expect("valid timestamp"),
        ))
    }

    fn live(name: &str, default: bool, created: Option<Time>) -> LiveClass {
        LiveClass {
            name: name.into(),
            provisioner: "ebs.csi.aws.com".into(),
            is_default: default,
            created,
            ..Default::default()
        }
    }

    fn catalog(classes: Vec<LiveClass>) -> Catalog {
        let file = config::parse("", None).unwrap();
        let table = ProvisionerTable::new(&file.provisioners);
        Catalog::build(
            &file.storage_classes,
            &table,
            &[StorageKind::Block, StorageKind::Local],
            "kubernetes.io/hostname",
            &LiveState {
                classes,
                ..Default::default()
            },
        )
    }

    fn nondefaults() -> Vec<LiveClass> {
        vec![
            live("nondefault1", false, ts(1000, 0)),
            live("nondefault2", false, ts(1000, 0)),
            live("nondefault3", false, ts(1000, 0)),
        ]
    }

    #[test]
    fn no_default_class_picks_nothing() {
        assert_eq!(catalog(nondefaults()).default_class(), None);
    }

    #[test]
    fn single_default_is_picked() {
        let mut c = nondefaults();
        c.push(live("default1", true, ts(1000, 0)));
        assert_eq!(catalog(c).default_class(), Some("default1"));
    }

    #[test]
    fn same_creation_time_picks_smallest_name() {
        let mut c = nondefaults();
        c.push(live("default2", true, ts(1000, 0)));
        c.push(live("default1", true, ts(1000, 0)));
        assert_eq!(catalog(c).default_class(), Some("default1"));
    }

    #[test]
    fn newest_default_wins_at_full_precision() {
        let mut c = nondefaults();
        c.push(live("default1", true, ts(1000, 1)));
        c.push(live("default2", true, ts(1000, 0)));
        assert_eq!(catalog(c).default_class(), Some("default1"));
        let mut c = nondefaults();
        c.push(live("default1", true, ts(1000, 0)));
        c.push(live("default2", true, ts(1001, 0)));
        assert_eq!(catalog(c).default_class(), Some("default2"));
    }

    #[test]
    fn only_exact_true_marks_default() {
        for (value, want) in [
            ("true", true),
            ("True", false),
            ("false", false),
            ("", false),
        ] {
            for key in IS_DEFAULT_ANNOTATIONS {
                let mut a = std::collections::BTreeMap::new();
                a.insert(key.to_owned(), value.to_owned());
                assert_eq!(annotations_mark_default(&a), want, "{key}={value:?}");
            }
        }
    }

    #[test]
    fn live_class_wins_over_static_of_same_name() {
        let file = config::parse(
            "storageClasses:\n  - {name: fast, provisioner: nfs.csi.k8s.io, default: true}\n",
            None,
        )
        .unwrap();
        let table = ProvisionerTable::new(&file.provisioners);
        let cat = Catalog::build(
            &file.storage_classes,
            &table,
            &[StorageKind::Block, StorageKind::Local],
            "kubernetes.io/hostname",
            &LiveState {
                classes: vec![live("fast", false, ts(5, 0))],
                ..Default::default()
            },
        );
        let c = cat.class("fast").unwrap();
        assert!(c.live);
        assert_eq!(c.kind, Some(StorageKind::Block));
        assert_eq!(cat.default_class(), None);
    }

    #[test]
    fn live_default_beats_static_default() {
        let file = config::parse(
            "storageClasses:\n  - {name: fallback, provisioner: nfs.csi.k8s.io, default: true}\n",
            None,
        )
        .unwrap();
        let table = ProvisionerTable::new(&file.provisioners);
        let cat = Catalog::build(
            &file.storage_classes,
            &table,
            &[StorageKind::Block, StorageKind::Local],
            "kubernetes.io/hostname",
            &LiveState {
                classes: vec![live("gp3", true, ts(5, 0))],
                ..Default::default()
            },
        );
        assert_eq!(cat.default_class(), Some("gp3"));
    }

    #[test]
    fn kind_annotation_overrides_the_table() {
        let mut c = live("lp-shared", false, None);
        c.provisioner = "rancher.io/local-path".into();
        c.kind_annotation = Some("shared".into());
        let cat = catalog(vec![c]);
        assert_eq!(
            cat.class("lp-shared").unwrap().kind,
            Some(StorageKind::Shared)
        );
    }

    #[test]
    fn reads_storage_class_and_namespace_objects() {
        let sc: k8s_openapi::api::storage::v1::StorageClass =
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lp", "creationTimestamp": "2024-01-02T03:04:05Z", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true",
                "storage-policy.io/kind": "shared",
                "storage-policy.io/allow-rwx-block-mode": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
            "parameters": {"nodePath": "/data"}}))
            .unwrap();
        let c = LiveClass::from_storage_class(&sc);
        assert_eq!(c.name, "lp");
        assert!(c.is_default && c.allow_rwx_block_mode && c.kind_annotation_is_valid());
        assert_eq!(
            c.volume_binding_mode,
            Some(VolumeBindingMode::WaitForFirstConsumer)
        );
        assert_eq!(c.parameters["nodePath"], "/data");
        assert!(c.created.is_some());
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "annotations": {"storage-policy.io/default-storage-class": "nfs"},
                         "labels": {"storage-policy.io/mode": "audit"}}})).unwrap();
        assert_eq!(
            NamespaceInfo::from_namespace(&ns),
            NamespaceInfo {
                default_class: Some("nfs".into()),
                mode: Some(Mode::Audit),
                rewrite_access_modes: None,
            }
        );
        let bad: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b", "labels": {"storage-policy.io/mode": "banana"}}}))
            .unwrap();
        assert!(NamespaceInfo::from_namespace(&bad).is_empty());
    }

    #[test]
    fn reads_size_annotations_and_the_rewrite_opt_in() {
        let sc: k8s_openapi::api::storage::v1::StorageClass =
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": "fast", "annotations": {
                "storage-policy.io/min-size": " 20Gi ", "storage-policy.io/max-size": "lots"}},
            "provisioner": "example.com/fast"}))
            .unwrap();
        let c = LiveClass::from_storage_class(&sc);
        assert_eq!(c.min_size.as_deref(), Some("20Gi"));
        let cat = catalog(vec![c]);
        let info = cat.class("fast").unwrap();
        assert_eq!(
            info.min_size.as_ref().map(|w| w.text.as_str()),
            Some("20Gi")
        );
        assert_eq!(info.max_size, None, "not a quantity: ignored");
        for (value, want) in [
            ("ReadWriteOnce", Some(AccessMode::ReadWriteOnce)),
            (" ReadWriteOncePod ", Some(AccessMode::ReadWriteOncePod)),
            ("ReadWriteMany", None),
            ("yes", None),
        ] {
            let ns: k8s_openapi::api::core::v1::Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": "a",
                    "annotations": {"storage-policy.io/rewrite-access-modes": value}}}))
                .unwrap();
            let info = NamespaceInfo::from_namespace(&ns);
            assert_eq!(info.rewrite_access_modes, want, "{value}");
            assert_eq!(info.is_empty(), want.is_none());
        }
    }

    #[test]
    fn extra_provisioners_extend_the_table() {
        let file = config::parse("provisioners:\n  block: [my.oci.renamed]\n", None).unwrap();
        let table = ProvisionerTable::new(&file.provisioners);
        assert_eq!(table.kind_of("my.oci.renamed"), Some(StorageKind::Block));
        assert_eq!(table.kind_of("nfs.csi.k8s.io"), Some(StorageKind::Shared));
        assert_eq!(table.kind_of("example.com/unknown"), None);
    }

    /// A class may strand a volume when one of its free PVs is pinned to a node that does not
    /// exist, or has an affinity only a walk of the nodes can judge; not when each free PV has
    /// a node (or none is free); always when nodes are not known.
    #[test]
    fn a_class_may_strand_a_volume_when_a_free_one_has_no_node() {
        use crate::policy::volumes::VolumeIndex;
        use k8s_openapi::api::core::v1::PersistentVolume;
        let pv = |name: &str, class: &str, terms: serde_json::Value, phase: &str| {
            let mut spec = serde_json::json!({"storageClassName": class});
            if !terms.is_null() {
                spec["nodeAffinity"] =
                    serde_json::json!({"required": {"nodeSelectorTerms": terms}});
            }
            serde_json::from_value::<PersistentVolume>(serde_json::json!({
                "metadata": {"name": name}, "spec": spec, "status": {"phase": phase}}))
            .unwrap()
        };
        let on = |key: &str, host: &str| serde_json::json!([{"matchExpressions": [{"key": key, "operator": "In", "values": [host]}]}]);
        let host = "kubernetes.io/hostname";
        let pvs = [
            pv("a1", "placed", on(host, "node-1"), "Available"),
            pv("a2", "placed", serde_json::Value::Null, "Available"),
            pv("b1", "gone", on(host, "node-1"), "Available"),
            pv("b2", "gone", on(host, "node-9"), "Available"),
            pv("c1", "other-label", on("zone", "node-1"), "Available"),
            pv(
                "d1",
                "walked",
                serde_json::json!([{"matchExpressions": [
                {"key": host, "operator": "In", "values": ["node-1", "node-2"]}]}]),
                "Available",
            ),
            pv("e1", "bound", on(host, "node-9"), "Bound"),
        ];
        let index = VolumeIndex::from_objects(&pvs, [], Source::Cluster);
        let build = |nodes: Option<Vec<Node>>| {
            let file = config::parse("", None).unwrap();
            Catalog::build(
                &file.storage_classes,
                &ProvisionerTable::new(&file.provisioners),
                &[],
                host,
                &LiveState {
                    pvs: Some(index.pvs.clone()),
                    claims: Some(index.claims.clone()),
                    nodes: nodes.map(Arc::new),
                    ..Default::default()
                },
            )
        };
        let node1 = (
            "node-1".to_owned(),
            [(host.to_owned(), "node-1".to_owned())].into(),
        );
        let cat = build(Some(vec![node1]));
        for (class, strands) in [
            ("placed", false),
            ("gone", true),
            ("other-label", true),
            ("walked", true),
            ("bound", false),
            ("none", false),
        ] {
            assert_eq!(cat.may_strand(class), strands, "{class}");
        }
        assert!(build(None).may_strand("placed"), "nodes not known");
    }
}
