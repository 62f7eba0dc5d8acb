//! willBind on indexes (issue 24) decides as the scan of every PV it replaced: the former
//! algorithm is kept here as the oracle (every PV matched with `volumes::misfit`, fitting ones
//! sorted by capacity then name, each ordinal's claim name built and looked up) and compared
//! with the rule's warnings over generated PVs (some pinned to nodes that exist, some to nodes
//! that do not), claims, nodes known or not, and StatefulSets with one or two claim templates
//! and a start ordinal, and over single claims.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use proptest::prelude::*;
use serde_json::{Value, json};
use storage_policy_webhook::policy::node_selector::{self, Node};
use storage_policy_webhook::policy::volumes::{
    self, Misfit, Modes, PvInfo, Source, VolumeIndex, Wants,
};
use storage_policy_webhook::policy::{
    self, LiveState, Object, Operation, Policy, Request, Subject,
};

const POLICY: &str = r#"
storageClasses:
  - {name: local-storage, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: WaitForFirstConsumer}
  - {name: gp3, provisioner: ebs.csi.aws.com}
"#;
const NS: &str = "default";
const CLASSES: [&str; 3] = ["local-storage", "", "gp3"];
const SIZES: [&str; 4] = ["1Gi", "5Gi", "10Gi", "20Gi"];
const MODES: [&[&str]; 3] = [
    &["ReadWriteOnce"],
    &["ReadWriteOnce", "ReadWriteMany"],
    &["ReadOnlyMany"],
];

/// A PV's `spec.nodeAffinity.required`: none, pinned by hostname to a node that exists or to
/// one that does not (the look-up), or pinned by a term the look-up leaves to the walk.
const AFFINITIES: [Option<&str>; 5] = [
    None,
    Some("node-a"),
    Some("node-gone"),
    Some("walk-a"),
    Some("walk-gone"),
];

fn affinity(a: &str) -> Value {
    let host = "kubernetes.io/hostname";
    let term = match a.strip_prefix("walk-") {
        None => json!({"matchExpressions": [{"key": host, "operator": "In", "values": [a]}]}),
        Some(n) => json!({"matchExpressions": [{"key": host, "operator": "In",
            "values": [format!("node-{n}")]}, {"key": "zone", "operator": "Exists"}]}),
    };
    json!({"required": {"nodeSelectorTerms": [term]}})
}

fn pv() -> impl Strategy<Value = Value> {
    (
        (0..3usize, proptest::option::of(0..4usize), 0..3usize, any::<bool>()),
        (0..3usize, 0..3usize, any::<bool>(), 0..AFFINITIES.len()),
        proptest::option::of((0..2usize, 0..3usize, 0..9usize, any::<bool>())),
    )
        .prop_map(|((class, size, modes, block), (labels, phase, deleting, pin), claim)| {
            let mut spec = json!({"storageClassName": CLASSES[class], "accessModes": MODES[modes],
                "local": {"path": "/mnt/x"}});
            if let Some(s) = size {
                spec["capacity"] = json!({"storage": SIZES[s]});
            }
            if block {
                spec["volumeMode"] = json!("Block");
            }
            if let Some(a) = AFFINITIES[pin] {
                spec["nodeAffinity"] = affinity(a);
            }
            if let Some((ns, tpl, i, uid)) = claim {
                let mut r = json!({"namespace": ([NS, "other"][ns]),
                    "name": format!("{}-web-{i}", ["www", "db", "data"][tpl])});
                if uid {
                    r["uid"] = json!("u1");
                }
                spec["claimRef"] = r;
            }
            let mut meta = json!({});
            if let Some(d) = [None, Some("ssd"), Some("hdd")][labels] {
                meta["labels"] = json!({"disk": d});
            }
            if deleting {
                meta["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            json!({"metadata": meta, "spec": spec,
                "status": {"phase": (["Available", "Bound", "Released"][phase])}})
        })
}

fn template() -> impl Strategy<Value = Value> {
    (
        0..2usize,
        0..4usize,
        0..3usize,
        any::<bool>(),
        proptest::option::of(0..2usize),
    )
        .prop_map(|(class, size, modes, block, sel)| {
            let mut spec = json!({"storageClassName": CLASSES[class], "accessModes": MODES[modes],
                "resources": {"requests": {"storage": SIZES[size]}}});
            if block {
                spec["volumeMode"] = json!("Block");
            }
            if let Some(s) = sel {
                spec["selector"] = [
                    json!({"matchLabels": {"disk": "ssd"}}),
                    json!({"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}),
                ][s]
                    .clone();
            }
            spec
        })
}

fn cluster() -> impl Strategy<Value = (Vec<PersistentVolume>, Vec<PersistentVolumeClaim>)> {
    (
        proptest::collection::vec(pv(), 0..14),
        proptest::collection::btree_set((0..2usize, 0..9usize), 0..6),
    )
        .prop_map(|(pvs, claims)| {
            let pvs = pvs
                .into_iter()
                .enumerate()
                .map(|(i, mut v)| {
                    v["metadata"]["name"] = json!(format!("pv-{i:02}"));
                    serde_json::from_value(v).unwrap()
                })
                .collect();
            let claims = claims
                .into_iter()
                .map(|(t, i)| {
                    serde_json::from_value(json!({"metadata": {"name":
                        format!("{}-web-{i}", ["www", "db"][t]), "namespace": NS},
                        "spec": {"storageClassName": "local-storage"}}))
                    .unwrap()
                })
                .collect();
            (pvs, claims)
        })
}

fn index(pvs: &[PersistentVolume], claims: &[PersistentVolumeClaim]) -> VolumeIndex {
    VolumeIndex::from_objects(pvs, claims.iter().map(|c| (NS, c)), Source::Cluster)
}

/// The rule's warnings (the other rules' are left out).
/// The nodes of the cluster: `node-a` (with a zone) and `node-b`.
fn nodes() -> Vec<Node> {
    ["node-a", "node-b"]
        .into_iter()
        .map(|n| {
            let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_owned(), n.to_owned())]);
            if n == "node-a" {
                labels.insert("zone".to_owned(), "z1".to_owned());
            }
            (n.to_owned(), labels)
        })
        .collect()
}

fn rule_warnings(
    p: &Policy,
    i: &VolumeIndex,
    nodes: Option<Vec<Node>>,
    object: Object<'_>,
    subject: Subject<'_>,
) -> Vec<String> {
    let cat = p.catalog(&LiveState {
        pvs: Some(i.pvs.clone()),
        claims: Some(i.claims.clone()),
        nodes: nodes.map(Arc::new),
        ..Default::default()
    });
    let req = Request {
        operation: Operation::Create,
        namespace: Some(NS),
        username: "alice",
        subject,
        object: Some(object),
        old_object: None,
    };
    policy::validate(p, &cat, &req)
        .warnings
        .into_iter()
        .filter(|w| w.contains("will stay Pending"))
        .collect()
}

// ---- the former algorithm: a scan of every PV ----

fn wants<'a>(name: &'a str, class: &'a str, spec: &'a Value) -> (Wants<'a>, String) {
    let size_text = spec["resources"]["requests"]["storage"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let modes: Vec<String> = spec["accessModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    let size = storage_policy_webhook::policy::quantity::bytes(&size_text).unwrap();
    (
        Wants {
            namespace: NS,
            name,
            uid: "",
            class,
            modes: Modes::of(&modes),
            block: spec["volumeMode"] == json!("Block"),
            size,
            selector: None,
        },
        size_text,
    )
}

fn prebound_fits(pv: &PvInfo, w: &Wants<'_>) -> bool {
    // The PV controller offers pre-bound volumes from its access-mode index too (found by the
    // end-to-end oracle): the scan checks the modes as the rule does.
    w.is_bound_by(pv)
        && !pv.deleting
        && pv.block == w.block
        && pv.modes.serve(w.modes)
        && pv.capacity.unwrap_or(0) >= w.size
}

fn why_none<'a>(pool: impl Iterator<Item = &'a PvInfo>, w: &Wants<'_>, size_text: &str) -> String {
    let closest = pool
        .filter_map(|pv| volumes::misfit(pv, w))
        .max()
        .unwrap_or(Misfit::NotFree);
    let what = match closest {
        Misfit::NotFree | Misfit::TooSmall => format!("has {size_text}"),
        Misfit::Selector => "matches spec.selector".to_owned(),
        Misfit::VolumeMode => format!(
            "has volumeMode {}",
            if w.block { "Block" } else { "Filesystem" }
        ),
        Misfit::AccessModes => "serves the requested access modes".to_owned(),
    };
    let class = if w.class.is_empty() {
        "without a class".to_owned()
    } else {
        format!("of class {}", w.class)
    };
    format!("no Available PersistentVolume {class} {what}")
}

/// Whether the scheduler could choose the PV for a claim of `class`: every node walked.
fn schedulable(class: &str, nodes: Option<&[Node]>, pv: &PvInfo) -> bool {
    match (class, nodes, pv.affinity.as_deref()) {
        ("local-storage", Some(nodes), Some(a)) => node_selector::selects_any(a, nodes),
        _ => true,
    }
}

fn stranded_phrase(count: usize, class: &str) -> String {
    let class = if class.is_empty() {
        "without a class".to_owned()
    } else {
        format!("of class {class}")
    };
    if count == 1 {
        format!(
            "1 Available PersistentVolume {class} that fits has spec.nodeAffinity matching no existing node"
        )
    } else {
        format!(
            "{count} Available PersistentVolumes {class} that fit have spec.nodeAffinity matching no existing node"
        )
    }
}

fn scan_statefulset(
    i: &VolumeIndex,
    nodes: Option<&[Node]>,
    sts: &StatefulSet,
    (start, replicas): (i32, i32),
    templates: &[Value],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    let pvs: Vec<(&str, &PvInfo)> = i.pvs.iter().collect();
    for (t, spec) in templates.iter().enumerate() {
        let tpl_name = ["www", "db"][t];
        let class = spec["storageClassName"].as_str().unwrap();
        let (mut probe, size_text) = wants("", class, spec);
        let sel = sts
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[t]
            .spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref();
        probe.selector = sel;
        let mut stranded = 0;
        let mut fitting: Vec<(&str, u64)> = pvs
            .iter()
            .filter(|&&(n, pv)| !used.contains(n) && volumes::misfit(pv, &probe).is_none())
            .filter(|&&(_, pv)| {
                let ok = schedulable(class, nodes, pv);
                stranded += usize::from(!ok);
                ok
            })
            .map(|&(n, pv)| (n, pv.capacity.unwrap_or(0)))
            .collect();
        fitting.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        let mut prebound: HashMap<&str, &str> = HashMap::new();
        for &(n, pv) in &pvs {
            if let Some(r) = pv.claim_ref.as_ref()
                && *r.namespace == *NS
                && r.uid.is_empty()
            {
                let w = Wants {
                    name: &r.name,
                    ..probe.clone()
                };
                if prebound_fits(pv, &w) {
                    prebound.insert(&r.name, n);
                }
            }
        }
        let mut next = fitting.into_iter();
        let mut waiting = Vec::new();
        for o in start..start + replicas {
            let claim = format!("{tpl_name}-web-{o}");
            if i.claim(NS, &claim).is_some() {
                continue;
            }
            if let Some(pv) = prebound.get(claim.as_str())
                && used.insert(pv)
            {
                continue;
            }
            match next.by_ref().find(|(n, _)| !used.contains(n)) {
                Some((n, _)) => {
                    used.insert(n);
                }
                None => waiting.push(claim),
            }
        }
        if waiting.is_empty() {
            continue;
        }
        let why = if stranded > 0 {
            stranded_phrase(stranded, class)
        } else {
            why_none(
                pvs.iter()
                    .filter(|(n, _)| !used.contains(n))
                    .map(|(_, pv)| *pv),
                &probe,
                &size_text,
            )
        };
        let shown: Vec<&str> = waiting.iter().take(3).map(String::as_str).collect();
        let names = if waiting.len() > shown.len() {
            format!(
                "{} and {} more",
                shown.join(", "),
                waiting.len() - shown.len()
            )
        } else {
            shown.join(", ")
        };
        let noun = if waiting.len() == 1 {
            "claim"
        } else {
            "claims"
        };
        out.push(format!(
            "StatefulSet \"web\": {noun} {names} will stay Pending: {why} ({} of {replicas} served)",
            replicas as usize - waiting.len()
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn statefulsets_are_judged_as_the_scan_judged_them(
        (pvs, claims) in cluster(),
        templates in proptest::collection::vec(template(), 1..3),
        replicas in 0..8i32,
        start in 0..3i32,
        nodes_known in any::<bool>(),
    ) {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let i = index(&pvs, &claims);
        let nodes = nodes_known.then(nodes);
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {}, "serviceName": "web", "template": {},
                "ordinals": {"start": start},
                "volumeClaimTemplates": templates.iter().enumerate().map(|(t, spec)| json!({
                    "metadata": {"name": (["www", "db"][t])}, "spec": spec})).collect::<Vec<_>>()}}))
        .unwrap();
        let subject = Subject { group: "apps", kind: "StatefulSet", name: "web" };
        let got = rule_warnings(&p, &i, nodes.clone(), Object::StatefulSet(&sts), subject);
        let want = scan_statefulset(&i, nodes.as_deref(), &sts, (start, replicas), &templates);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn claims_are_judged_as_the_scan_judged_them(
        (pvs, claims) in cluster(),
        spec in template(),
        name in 0..9usize,
        nodes_known in any::<bool>(),
    ) {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let i = index(&pvs, &claims);
        let nodes = nodes_known.then(nodes);
        let name = format!("www-web-{name}");
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata":
            {"name": name, "namespace": NS}, "spec": spec})).unwrap();
        let subject = Subject { group: "", kind: "PersistentVolumeClaim", name: &name };
        let got = rule_warnings(&p, &i, nodes.clone(), Object::Pvc(&pvc), subject);
        let class = spec["storageClassName"].as_str().unwrap();
        let (mut w, size_text) = wants(&name, class, &spec);
        w.selector = pvc.spec.as_ref().unwrap().selector.as_ref();
        let bound = i.claim(NS, &name).is_some_and(|c| c.is_bound());
        let fits = |pv: &PvInfo| volumes::misfit(pv, &w).is_none();
        let served = i.pvs.values().any(|pv| {
            prebound_fits(pv, &w) || (fits(pv) && schedulable(class, nodes.as_deref(), pv))
        });
        let stranded = i.pvs.values().filter(|pv| fits(pv)).count();
        let want: Vec<String> = if bound || served {
            Vec::new()
        } else if stranded > 0 {
            vec![format!("claim {name:?} will stay Pending: {}", stranded_phrase(stranded, class))]
        } else {
            vec![format!("claim {name:?} will stay Pending: {}", why_none(i.pvs.values(), &w, &size_text))]
        };
        prop_assert_eq!(got, want);
    }
}
