//! Where a pod may run, as the scheduler's volume binding sees it: the pod's own placement
//! (`nodeSelector`, required node affinity, `nodeName`), the node affinity of the PVs its claims
//! are bound to, and the `allowedTopologies` of the classes its unbound claims will be provisioned
//! from; which existing nodes satisfy each of them, and which sets of them no node satisfies
//! together. Model layer: it knows no rule.
//!
//! Facts used:
//! - A pod fits a node when its `nodeSelector` and its required node affinity both match it
//!   (`GetRequiredNodeAffinity(pod).Match(node)`, `k8s.io/component-helpers/scheduling/corev1/
//!   nodeaffinity`); `nodeName` binds it to that node.
//! - A bound PV's `spec.nodeAffinity.required` must match the node (`FindPodVolumes` ->
//!   `checkBoundClaims` -> `volume.CheckNodeAffinity`, `pkg/scheduler/framework/plugins/
//!   volumebinding/binder.go`); else `ErrReasonNodeConflict`, "node(s) didn't match
//!   PersistentVolume's node affinity".
//! - An unbound claim of a WaitForFirstConsumer class is provisioned only on a node its class's
//!   `allowedTopologies` match (`checkVolumeProvisions`: `v1helper.MatchTopologySelectorTerms`);
//!   else `ErrReasonBindConflict`, "node(s) didn't find available persistent volumes to bind".
//!   No terms match every node; a term without expressions matches none.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, TopologySelectorTerm,
};

use super::limits::summarise;
use super::node_selector::{self, Node};

/// The scheduler's reason for a node that fails a bound PV's node affinity
/// (`ErrReasonNodeConflict`, `pkg/scheduler/framework/plugins/volumebinding/binder.go`).
pub const NODE_CONFLICT: &str = "node(s) didn't match PersistentVolume's node affinity";

/// The scheduler's reason for a node on which an unbound claim can be neither bound nor
/// provisioned, e.g. outside its class's `allowedTopologies` (`ErrReasonBindConflict`, same file).
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";

/// The well-known zone label (`topology.kubernetes.io/zone`) and its deprecated beta form.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const BETA_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";

/// Whether a label key names a zone: the well-known keys, or a driver's own key ending in
/// `/zone` (`topology.ebs.csi.aws.com/zone`, `topology.gke.io/zone`,
/// `topology.disk.csi.azure.com/zone`), which those drivers write into the PVs they provision.
pub fn is_zone_key(key: &str) -> bool {
    key == ZONE_LABEL || key == BETA_ZONE_LABEL || key.ends_with("/zone")
}

/// Provisioners whose volumes live in one zone (a block device attached over the zone's
/// network), from each driver's documentation of its topology keys: AWS EBS
/// (`topology.ebs.csi.aws.com/zone`), GCE PD (`topology.gke.io/zone`), Azure Disk
/// (`topology.disk.csi.azure.com/zone`), OpenStack Cinder (`topology.cinder.csi.openstack.org/
/// zone`), vSphere CNS (zonal when the cluster is configured with zones), OCI Block Volume
/// (`topology.kubernetes.io/zone`), and their in-tree names. An inference: a rule that uses it
/// warns and says so.
pub const ZONAL_PROVISIONERS: &[&str] = &[
    "ebs.csi.aws.com",
    "kubernetes.io/aws-ebs",
    "pd.csi.storage.gke.io",
    "kubernetes.io/gce-pd",
    "disk.csi.azure.com",
    "kubernetes.io/azure-disk",
    "cinder.csi.openstack.org",
    "kubernetes.io/cinder",
    "csi.vsphere.vmware.com",
    "kubernetes.io/vsphere-volume",
    "blockvolume.csi.oraclecloud.com",
    "oracle.com/oci",
];

/// Whether a class on `provisioner` with these parameters makes single-zone volumes: a zonal
/// provisioner, except regional disks (GCE PD `replication-type: regional-pd`, replicated in two
/// zones) and zone-redundant Azure disks (`skuName` `*_ZRS`).
pub fn zonal(provisioner: &str, parameters: &BTreeMap<String, String>) -> bool {
    let param = |k: &str| {
        parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    ZONAL_PROVISIONERS.contains(&provisioner)
        && !param("replication-type").is_some_and(|v| v.eq_ignore_ascii_case("regional-pd"))
        && !param("skuName").is_some_and(|v| v.to_ascii_uppercase().ends_with("_ZRS"))
}

/// A class's `allowedTopologies` as the node selector they amount to (each expression an `In`,
/// expressions ANDed, terms ORed, a term without expressions selecting nothing, as
/// `MatchTopologySelectorTerms` reads them); `None` when there are no terms (every node).
pub fn allowed_topologies(terms: &[TopologySelectorTerm]) -> Option<NodeSelector> {
    if terms.is_empty() {
        return None;
    }
    Some(NodeSelector {
        node_selector_terms: terms
            .iter()
            .map(|t| NodeSelectorTerm {
                match_expressions: Some(
                    t.match_label_expressions
                        .iter()
                        .flatten()
                        .map(|e| NodeSelectorRequirement {
                            key: e.key.clone(),
                            operator: "In".to_owned(),
                            values: Some(e.values.clone()),
                        })
                        .collect(),
                ),
                match_fields: None,
            })
            .collect(),
    })
}

/// Where a pod spec lets its pod run: its `nodeSelector`, its required node affinity, its
/// `nodeName`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Placement<'a> {
    pub node_selector: Option<&'a BTreeMap<String, String>>,
    pub affinity: Option<&'a NodeSelector>,
    pub node_name: Option<&'a str>,
}

impl<'a> Placement<'a> {
    pub fn of(spec: &'a PodSpec) -> Placement<'a> {
        Placement {
            node_selector: spec.node_selector.as_ref().filter(|s| !s.is_empty()),
            affinity: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            node_name: spec.node_name.as_deref().filter(|n| !n.is_empty()),
        }
    }

    /// Whether the pod says anything about its node.
    pub fn is_open(&self) -> bool {
        self.node_selector.is_none() && self.affinity.is_none() && self.node_name.is_none()
    }

    /// Whether the pod may run on this node.
    pub fn admits(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_name.is_none_or(|n| n == name)
            && self
                .node_selector
                .is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
            && self
                .affinity
                .is_none_or(|a| node_selector::selects(a, name, labels))
    }

    /// The one zone the pod is pinned to by its `nodeSelector` or by every term of its required
    /// node affinity (an `In` of that single zone on a zone key), if any.
    pub fn pinned_zone(&self) -> Option<&'a str> {
        if let Some(z) = self
            .node_selector
            .into_iter()
            .flatten()
            .find(|(k, _)| is_zone_key(k))
            .map(|(_, v)| v.as_str())
        {
            return Some(z);
        }
        let terms = &self.affinity?.node_selector_terms;
        let mut zone: Option<&str> = None;
        for t in terms {
            let z =
                t.match_expressions
                    .iter()
                    .flatten()
                    .find_map(|r| match r.values.as_deref() {
                        Some([v]) if r.operator == "In" && is_zone_key(&r.key) => Some(v.as_str()),
                        _ => None,
                    })?;
            if zone.is_some_and(|prev| prev != z) {
                return None;
            }
            zone = Some(z);
        }
        zone
    }

    /// The pod's constraint in words: `nodeSelector k=v, nodeAffinity k In [a]`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.node_name {
            parts.push(format!("nodeName {n}"));
        }
        if let Some(s) = self.node_selector {
            let pairs: Vec<String> = s.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("nodeSelector {}", summarise(&pairs, 2, ", ")));
        }
        if let Some(a) = self.affinity {
            parts.push(format!("nodeAffinity {}", describe_selector(a)));
        }
        parts.join(", ")
    }
}

/// A node selector in words: `k In [a, b]` requirements joined by `,` within a term and ` or `
/// between terms (at most two terms and three values each shown).
pub fn describe_selector(sel: &NodeSelector) -> String {
    let term = |t: &NodeSelectorTerm| {
        let reqs: Vec<String> = t
            .match_expressions
            .iter()
            .flatten()
            .chain(t.match_fields.iter().flatten())
            .map(|r| match r.values.as_deref() {
                Some(v) if !v.is_empty() => {
                    format!("{} {} [{}]", r.key, r.operator, summarise(v, 3, ", "))
                }
                _ => format!("{} {}", r.key, r.operator),
            })
            .collect();
        reqs.join(", ")
    };
    let terms: Vec<String> = sel.node_selector_terms.iter().map(term).collect();
    summarise(&terms, 2, " or ")
}

/// One constraint on the node: the pod's own placement, or a node selector (a PV's affinity, a
/// class's `allowedTopologies`).
#[derive(Clone, Copy, Debug)]
pub enum Constraint<'a> {
    Pod(Placement<'a>),
    Selector(&'a NodeSelector),
}

impl Constraint<'_> {
    pub fn admits(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Constraint::Pod(p) => p.admits(name, labels),
            Constraint::Selector(s) => node_selector::selects(s, name, labels),
        }
    }

    /// Whether it names a zone key, so that the nodes it admits are best said as zones.
    fn on_zones(&self) -> bool {
        let sel_on_zones = |s: &NodeSelector| {
            s.node_selector_terms.iter().any(|t| {
                t.match_expressions
                    .iter()
                    .flatten()
                    .any(|r| is_zone_key(&r.key))
            })
        };
        match self {
            Constraint::Pod(p) => {
                p.node_selector
                    .is_some_and(|s| s.keys().any(|k| is_zone_key(k)))
                    || p.affinity.is_some_and(sel_on_zones)
            }
            Constraint::Selector(s) => sel_on_zones(s),
        }
    }
}

/// A set of nodes by their index in the node list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSet(Vec<u64>);

impl NodeSet {
    fn empty(n: usize) -> NodeSet {
        NodeSet(vec![0; n.div_ceil(64)])
    }

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Whether the two sets share no node.
    pub fn disjoint(&self, other: &NodeSet) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & b == 0)
    }

    pub fn intersect(&mut self, other: &NodeSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

/// The nodes each constraint admits: one walk of the nodes, each node tested against every
/// constraint (work: nodes × constraints).
pub fn admitted(nodes: &[Node], constraints: &[Constraint<'_>]) -> Vec<NodeSet> {
    let mut sets = vec![NodeSet::empty(nodes.len()); constraints.len()];
    for (i, (name, labels)) in nodes.iter().enumerate() {
        for (c, set) in constraints.iter().zip(sets.iter_mut()) {
            if c.admits(name, labels) {
                set.insert(i);
            }
        }
    }
    sets
}

/// Nodes a message lists before "and N more".
const SHOWN: usize = 3;

/// The nodes of a set in words, for the constraint that made it: `no node`, `zone(s) a, b` when
/// the constraint is on a zone key and the nodes carry the zone label, else `node(s) x, y and 4
/// more`.
pub fn describe_nodes(nodes: &[Node], set: &NodeSet, constraint: &Constraint<'_>) -> String {
    if set.is_empty() {
        return "no node".to_owned();
    }
    if constraint.on_zones() {
        let zones: Option<BTreeSet<&str>> = set
            .indexes()
            .map(|i| {
                let labels = &nodes[i].1;
                labels
                    .get(ZONE_LABEL)
                    .or_else(|| labels.get(BETA_ZONE_LABEL))
                    .map(String::as_str)
            })
            .collect();
        if let Some(zones) = zones {
            let zones: Vec<&str> = zones.into_iter().collect();
            return format!("zone {}", summarise(&zones, SHOWN, ", "));
        }
    }
    let names: Vec<&str> = set.indexes().map(|i| nodes[i].0.as_str()).collect();
    format!("node {}", summarise(&names, SHOWN, ", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes() -> Vec<Node> {
        let node = |name: &str, zone: &str| {
            let labels: BTreeMap<String, String> = [
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                (ZONE_LABEL.to_owned(), zone.to_owned()),
            ]
            .into();
            (name.to_owned(), labels)
        };
        vec![
            node("w1", "zone-a"),
            node("w2", "zone-b"),
            node("w3", "zone-b"),
        ]
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut m = json!({"containers": []});
        m.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(m).unwrap()
    }

    #[test]
    fn placement_admits_as_the_scheduler() {
        let n = nodes();
        let s = spec(json!({"nodeSelector": {ZONE_LABEL: "zone-b"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["w2"]}]}]}}}}));
        let p = Placement::of(&s);
        let sets = admitted(&n, &[Constraint::Pod(p)]);
        assert_eq!(sets[0].indexes().collect::<Vec<_>>(), [2]);
        let named = spec(json!({"nodeName": "w1"}));
        let sets = admitted(&n, &[Constraint::Pod(Placement::of(&named))]);
        assert_eq!(sets[0].indexes().collect::<Vec<_>>(), [0]);
        assert!(Placement::of(&spec(json!({}))).is_open());
    }

    #[test]
    fn pinned_zone_reads_selector_and_every_affinity_term() {
        let s = spec(json!({"nodeSelector": {ZONE_LABEL: "zone-b"}}));
        assert_eq!(Placement::of(&s).pinned_zone(), Some("zone-b"));
        let term = |z: &str| json!({"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [z]}]});
        let aff = |terms: serde_json::Value| {
            spec(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": terms}}}}),
            )
        };
        let one = aff(json!([term("zone-a"), term("zone-a")]));
        assert_eq!(Placement::of(&one).pinned_zone(), Some("zone-a"));
        let two = aff(json!([term("zone-a"), term("zone-b")]));
        assert_eq!(Placement::of(&two).pinned_zone(), None);
        let open = aff(
            json!([term("zone-a"), {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]),
        );
        assert_eq!(Placement::of(&open).pinned_zone(), None);
    }

    #[test]
    fn allowed_topologies_match_as_topology_selector_terms() {
        let n = nodes();
        let terms: Vec<TopologySelectorTerm> = serde_json::from_value(json!([
            {"matchLabelExpressions": [{"key": ZONE_LABEL, "values": ["zone-a"]}]}]))
        .unwrap();
        let sel = allowed_topologies(&terms).unwrap();
        let c = Constraint::Selector(&sel);
        let sets = admitted(&n, &[c]);
        assert_eq!(describe_nodes(&n, &sets[0], &c), "zone zone-a");
        assert!(allowed_topologies(&[]).is_none());
        let empty: Vec<TopologySelectorTerm> = serde_json::from_value(json!([{}])).unwrap();
        let sel = allowed_topologies(&empty).unwrap();
        assert!(admitted(&n, &[Constraint::Selector(&sel)])[0].is_empty());
    }

    #[test]
    fn zonal_provisioners_but_regional_disks() {
        let none = BTreeMap::new();
        assert!(zonal("ebs.csi.aws.com", &none));
        assert!(!zonal("efs.csi.aws.com", &none));
        let regional: BTreeMap<String, String> =
            [("replication-type".to_owned(), "regional-pd".to_owned())].into();
        assert!(!zonal("pd.csi.storage.gke.io", &regional));
        let zrs: BTreeMap<String, String> =
            [("skuname".to_owned(), "Premium_ZRS".to_owned())].into();
        assert!(!zonal("disk.csi.azure.com", &zrs));
        assert!(is_zone_key("topology.ebs.csi.aws.com/zone"));
        assert!(!is_zone_key("kubernetes.io/hostname"));
    }

    #[test]
    fn node_sets_intersect_across_words() {
        let many: Vec<Node> = (0..130)
            .map(|i| (format!("n{i}"), BTreeMap::new()))
            .collect();
        let mut a = NodeSet::empty(many.len());
        let mut b = NodeSet::empty(many.len());
        a.insert(129);
        b.insert(5);
        assert!(a.disjoint(&b));
        b.insert(129);
        assert!(!a.disjoint(&b));
        a.intersect(&b);
        assert_eq!(a.len(), 1);
        let c = Constraint::Pod(Placement::default());
        assert_eq!(describe_nodes(&many, &b, &c), "node n5, n129");
    }
}
