//! Rule `localVolumeNodes`: one node-local disk, one node. Warnings only, never a denial.
//!
//! A `local` (or `hostPath`) volume is a directory on one node's disk, but the scheduler accepts
//! every node its affinity matches (terms are ORed). A PV whose affinity names several nodes by
//! the node label lets a pod run on any of them, each with its own disk at that path: a
//! rescheduled pod sees other data. A `hostPath` PV without affinity may be used on any node at
//! all. The PV is valid, so it is admitted, with a warning that makes the hazard visible.
//!
//! The scheduler evaluates every operator (`matchExpressions` ANDed, terms ORed): `Exists` on
//! `kubernetes.io/hostname` matches every node. With the cluster's nodes known the affinity is
//! evaluated against them and the nodes it matches are counted; without them, the node names
//! listed by `In` are counted and a requirement on the node name that admits nodes it does not
//! name (`Exists`, `NotIn`, `DoesNotExist`, `Gt`, `Lt`) is warned about as such.
//!
//! Runs on `/validate`, which the API server calls with the object as the mutating webhooks left
//! it: nodes the `localVolumeNodeAffinity` rule injected from a path rule are judged too.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume};

use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::limits::MAX_NODE_VALUES;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::node_selector::{self, Node};

pub const META: Meta = Meta {
    key: "localVolumeNodes",
    annotation: "local-volume-nodes",
    summary: "warns when a local or hostPath PV may be used on several nodes, each with its own disk at that path",
    denies: "never denies",
    warns: "a local or hostPath PV usable on several nodes: several names by In, every operator against the known nodes, or Exists, NotIn, DoesNotExist, Gt, Lt on the node name; hostPath without nodeAffinity",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::Volumes.on(CREATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<LocalVolumeNodes>(&META);

#[derive(Debug, Default)]
struct LocalVolumeNodes;

impl Rule for LocalVolumeNodes {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        // Warnings only: `enforce` and `audit` say the same thing.
        if let Some(Object::Pv(pv)) = req.object
            && let Some(msg) = hazard(&cx.settings.node_label, cx.catalog.nodes(), pv)
        {
            let class = pv
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .filter(|c| !c.is_empty());
            d.warning(ID, class, msg);
        }
    }
}

/// The well-known node label, accepted beside the policy's own.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// How many node names a warning lists.
const SHOWN: usize = 4;

/// The nodes a term names: the values every `In` requirement on a node label (or on the field
/// `metadata.name`) allows. `None` when the term names no node that way (another label, another
/// operator): then nothing is known about how many nodes it admits.
fn term_nodes<'a>(label: &str, term: &'a NodeSelectorTerm) -> Option<Vec<&'a str>> {
    let exprs = term.match_expressions.iter().flatten();
    let by_label = exprs.filter(|r| r.key == label || r.key == HOSTNAME_LABEL);
    let by_field = term
        .match_fields
        .iter()
        .flatten()
        .filter(|r| r.key == "metadata.name");
    let mut nodes: Option<Vec<&str>> = None;
    for r in by_label.chain(by_field).filter(|r| r.operator == "In") {
        let values = r.values.iter().flatten().map(String::as_str);
        nodes = Some(match nodes {
            None => values.collect(),
            // A set of this requirement's values: linear, not a scan per name.
            Some(prev) => {
                let values: HashSet<&str> = values.collect();
                prev.into_iter().filter(|n| values.contains(n)).collect()
            }
        });
    }
    nodes
}

/// A requirement on the node name (the node label or the field `metadata.name`) that admits
/// nodes it does not name: `Exists`, `NotIn`, `DoesNotExist`, and `Gt`/`Lt`; `None` when the
/// term names its nodes by `In` (or does not name nodes at all).
fn open_requirement<'a>(
    label: &str,
    term: &'a NodeSelectorTerm,
) -> Option<&'a NodeSelectorRequirement> {
    let by_name = term
        .match_expressions
        .iter()
        .flatten()
        .filter(|r| r.key == label || r.key == HOSTNAME_LABEL)
        .chain(
            term.match_fields
                .iter()
                .flatten()
                .filter(|r| r.key == "metadata.name"),
        );
    let mut open = None;
    for r in by_name {
        match r.operator.as_str() {
            // Bounded by the names it lists, whatever else the term says.
            "In" => return None,
            "Exists" | "NotIn" | "DoesNotExist" | "Gt" | "Lt" => open = open.or(Some(r)),
            _ => {}
        }
    }
    open
}

/// `a, b, c, d and 2 more`.
fn listed(nodes: &[&str]) -> String {
    let shown = nodes[..nodes.len().min(SHOWN)].join(", ");
    match nodes.len().saturating_sub(SHOWN) {
        0 => shown,
        n if nodes.len() > MAX_NODE_VALUES => format!("{shown} and more than {} more", n - 1),
        n => format!("{shown} and {n} more"),
    }
}

/// How many names: past MAX_NODE_VALUES the count stops.
fn counted(nodes: &[&str]) -> String {
    if nodes.len() > MAX_NODE_VALUES {
        format!("more than {MAX_NODE_VALUES}")
    } else {
        nodes.len().to_string()
    }
}

/// What is hazardous about where this volume's data lives, if anything. `nodes`: the cluster's
/// nodes when known; the affinity is then evaluated against them as the scheduler does (terms
/// ORed, requirements ANDed, every operator), else only the node names it lists by `In` count,
/// and a requirement on the node name that admits unnamed nodes (`Exists`, `NotIn`...) is
/// warned about as such.
pub fn hazard(label: &str, nodes: Option<&[Node]>, pv: &PersistentVolume) -> Option<String> {
    let spec = pv.spec.as_ref()?;
    let (what, path) = match (&spec.local, &spec.host_path) {
        (Some(l), _) => ("local", l.path.as_str()),
        (None, Some(h)) => ("hostPath", h.path.as_str()),
        (None, None) => return None,
    };
    let selector = spec
        .node_affinity
        .as_ref()
        .and_then(|na| na.required.as_ref())
        .filter(|r| !r.node_selector_terms.is_empty());
    let Some(selector) = selector else {
        // A local volume without affinity is refused by the API itself.
        return (what == "hostPath").then(|| {
            format!(
                "hostPath PV path {path} has no nodeAffinity: pods may use it on any node, each with its own \
                 directory there; pin it to one node"
            )
        });
    };
    let terms = selector.node_selector_terms.as_slice();
    let several = |names: &[&str]| {
        format!(
            "{what} PV path {path} is on {} nodes ({}), each with its own disk there: a rescheduled pod \
             sees other data; make one PV per node",
            counted(names),
            listed(names)
        )
    };
    if let Some(nodes) = nodes {
        let matched = node_selector::selected(selector, nodes);
        if matched.len() >= 2 {
            return Some(several(&matched));
        }
    }
    // Distinct names in order, through a set; counted up to one past MAX_NODE_VALUES.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut named: Vec<&str> = Vec::new();
    for n in terms.iter().filter_map(|t| term_nodes(label, t)).flatten() {
        if named.len() > MAX_NODE_VALUES {
            break;
        }
        if seen.insert(n) {
            named.push(n);
        }
    }
    if named.len() >= 2 {
        return Some(several(&named));
    }
    if nodes.is_some() {
        // Evaluated against every node: at most one matches today.
        return None;
    }
    let r = terms.iter().find_map(|t| open_requirement(label, t))?;
    let values = r.values.as_deref().unwrap_or_default();
    let requirement = if values.is_empty() {
        format!("{} {}", r.key, r.operator)
    } else {
        format!(
            "{} {} [{}]",
            r.key,
            r.operator,
            listed(&values.iter().map(String::as_str).collect::<Vec<_>>())
        )
    };
    Some(format!(
        "{what} PV path {path} has nodeAffinity {requirement}, which admits nodes it does not name, each with its \
         own disk there: a rescheduled pod sees other data; pin it to one node"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::decision::Action;
    use crate::policy::testing::{create, policy};
    use serde_json::{Value, json};

    fn pv(source: Value, affinity: Option<Value>) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                              "storageClassName": "local-storage"});
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        if let Some(a) = affinity {
            spec["nodeAffinity"] = a;
        }
        serde_json::from_value(json!({"metadata": {"name": "test-local-pv"}, "spec": spec}))
            .unwrap()
    }

    fn terms(terms: Value) -> Option<Value> {
        Some(json!({"required": {"nodeSelectorTerms": terms}}))
    }

    fn hostnames(values: &[&str]) -> Value {
        json!({"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": values}]})
    }

    fn decide_with(text: &str, v: &PersistentVolume, mode: Mode) -> Decision {
        let p = policy(text);
        create(Object::Pv(v)).check(
            &p,
            &p.static_catalog(),
            ID,
            Endpoint::Validate,
            mode.acting().unwrap(),
        )
    }

    fn decide(v: &PersistentVolume) -> Decision {
        decide_with("", v, Mode::Enforce)
    }

    fn ssd() -> Value {
        json!({"local": {"path": "/mnt/ssd"}})
    }

    #[test]
    fn warns_when_a_local_volume_names_several_nodes() {
        let v = pv(
            ssd(),
            terms(json!([hostnames(&["k8s-worker-01", "k8s-worker-02"])])),
        );
        let d = decide(&v);
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "local PV path /mnt/ssd is on 2 nodes (k8s-worker-01, k8s-worker-02), each with its own disk there: \
              a rescheduled pod sees other data; make one PV per node"
            ]
        );
        assert!(d.warnings[0].chars().count() <= 256);
        assert_eq!(d.audit_annotations["local-volume-nodes"], d.warnings[0]);
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(
            d.findings[0].storage_class.as_deref(),
            Some("local-storage")
        );
    }

    #[test]
    fn warns_when_several_terms_name_different_nodes() {
        let v = pv(
            ssd(),
            terms(json!([
                hostnames(&["pi-1"]),
                hostnames(&["pi-2"]),
                hostnames(&["pi-1"])
            ])),
        );
        assert!(decide(&v).warnings[0].contains("is on 2 nodes (pi-1, pi-2)"));
    }

    #[test]
    fn one_node_is_quiet() {
        for a in [
            terms(json!([hostnames(&["pi-1"])])),
            terms(json!([hostnames(&["pi-1"]), hostnames(&["pi-1"])])),
            // Two requirements in one term: the node must satisfy both.
            terms(json!([{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi-1", "pi-2"]},
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi-1"]}]}])),
            // Pinned by something other than a node name: not judged.
            terms(json!([{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]}])),
            // NotIn beside an In: bounded by the names listed.
            terms(json!([{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]},
                {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["b"]}]}])),
        ] {
            assert_eq!(decide(&pv(ssd(), a.clone())), Decision::default(), "{a:?}");
        }
    }

    #[test]
    fn reads_the_policys_node_label_and_node_names() {
        let policy = "rules:\n  localVolumeNodeAffinity:\n    nodeLabel: example.com/node\n";
        let v = pv(
            ssd(),
            terms(json!([{"matchExpressions": [
                {"key": "example.com/node", "operator": "In", "values": ["a", "b"]}]}])),
        );
        assert!(decide_with(policy, &v, Mode::Enforce).warnings[0].contains("(a, b)"));
        assert_eq!(
            decide(&v),
            Decision::default(),
            "not the node label by default"
        );
        let fields = pv(
            ssd(),
            terms(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}]),
            ),
        );
        assert!(decide(&fields).warnings[0].contains("(a, b)"));
    }

    #[test]
    fn lists_at_most_four_nodes() {
        let v = pv(
            ssd(),
            terms(json!([hostnames(&["n1", "n2", "n3", "n4", "n5", "n6"])])),
        );
        assert!(decide(&v).warnings[0].contains("is on 6 nodes (n1, n2, n3, n4 and 2 more)"));
    }

    #[test]
    fn warns_about_host_path_without_node_affinity() {
        let v = pv(
            json!({"hostPath": {"path": "/data/web-0", "type": "DirectoryOrCreate"}}),
            None,
        );
        assert_eq!(
            decide(&v).warnings,
            [
                "hostPath PV path /data/web-0 has no nodeAffinity: pods may use it on any node, each with its own \
              directory there; pin it to one node"
            ]
        );
        let empty = pv(
            json!({"hostPath": {"path": "/data/web-0"}}),
            Some(json!({})),
        );
        assert_eq!(decide(&empty).warnings.len(), 1);
        let pinned = pv(
            json!({"hostPath": {"path": "/data/web-0"}}),
            terms(json!([hostnames(&["pi-1"])])),
        );
        assert_eq!(decide(&pinned), Decision::default());
        let several = pv(
            json!({"hostPath": {"path": "/srv"}}),
            terms(json!([hostnames(&["a", "b"])])),
        );
        assert!(decide(&several).warnings[0].starts_with("hostPath PV path /srv is on 2 nodes"));
    }

    #[test]
    fn other_sources_and_local_without_affinity_are_quiet() {
        let nfs = pv(json!({"nfs": {"server": "nas", "path": "/x"}}), None);
        assert_eq!(decide(&nfs), Decision::default());
        // The API refuses this one with its own message.
        assert_eq!(decide(&pv(ssd(), None)), Decision::default());
    }

    #[test]
    fn audit_mode_says_the_same() {
        let v = pv(ssd(), terms(json!([hostnames(&["a", "b"])])));
        assert_eq!(decide_with("", &v, Mode::Audit), decide(&v));
    }

    fn with_nodes(v: &PersistentVolume, names: &[(&str, &str)]) -> Decision {
        let p = policy("");
        let nodes = names
            .iter()
            .map(|(n, zone)| {
                let labels: std::collections::BTreeMap<String, String> = [
                    ("kubernetes.io/hostname".to_owned(), (*n).to_owned()),
                    ("topology.kubernetes.io/zone".to_owned(), (*zone).to_owned()),
                ]
                .into();
                ((*n).to_owned(), labels)
            })
            .collect();
        let cat = p.catalog(&crate::policy::LiveState {
            nodes: Some(std::sync::Arc::new(nodes)),
            ..Default::default()
        });
        create(Object::Pv(v)).check(&p, &cat, ID, Endpoint::Validate, Acting::Enforce)
    }

    fn requirement(key: &str, op: &str, values: &[&str]) -> Option<Value> {
        terms(json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]))
    }

    #[test]
    fn warns_when_the_affinity_admits_unnamed_nodes_without_knowing_them() {
        for (op, values, shown) in [
            ("Exists", &[][..], "kubernetes.io/hostname Exists"),
            (
                "NotIn",
                &["a", "b"][..],
                "kubernetes.io/hostname NotIn [a, b]",
            ),
            (
                "DoesNotExist",
                &[][..],
                "kubernetes.io/hostname DoesNotExist",
            ),
        ] {
            let v = pv(ssd(), requirement("kubernetes.io/hostname", op, values));
            assert_eq!(
                decide(&v).warnings,
                [format!(
                    "local PV path /mnt/ssd has nodeAffinity {shown}, which admits nodes it does not name, each with \
                     its own disk there: a rescheduled pod sees other data; pin it to one node"
                )],
                "{op}"
            );
        }
    }

    #[test]
    fn counts_the_nodes_the_affinity_matches_when_nodes_are_known() {
        let nodes = [("n1", "a"), ("n2", "a"), ("n3", "b")];
        let exists = pv(ssd(), requirement("kubernetes.io/hostname", "Exists", &[]));
        assert!(
            with_nodes(&exists, &nodes).warnings[0].contains("is on 3 nodes (n1, n2, n3)"),
            "{:?}",
            with_nodes(&exists, &nodes).warnings
        );
        let zone = pv(
            ssd(),
            requirement("topology.kubernetes.io/zone", "In", &["a"]),
        );
        assert!(with_nodes(&zone, &nodes).warnings[0].contains("is on 2 nodes (n1, n2)"));
        let not_in = pv(
            ssd(),
            requirement("kubernetes.io/hostname", "NotIn", &["n1", "n2"]),
        );
        assert_eq!(with_nodes(&not_in, &nodes), Decision::default(), "only n3");
        let one = pv(ssd(), requirement("kubernetes.io/hostname", "In", &["n1"]));
        assert_eq!(with_nodes(&one, &nodes), Decision::default());
        // Two names listed, one of them not (yet) a node: the names still count.
        let listed = pv(ssd(), terms(json!([hostnames(&["n1", "n9"])])));
        assert!(with_nodes(&listed, &nodes).warnings[0].contains("is on 2 nodes (n1, n9)"));
    }
}
