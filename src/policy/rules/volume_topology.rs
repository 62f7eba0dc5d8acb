//! Rule `volumeTopology`: a pod (or a workload's pod template) whose volumes and own node
//! constraints leave it no node to run on. Warnings only, never a denial: a node an autoscaler
//! may add does not exist yet.
//!
//! What is judged, with the scheduler's own reasons (`model::topology`):
//! - claims bound (or pre-bound by `spec.volumeName`) to PVs with `spec.nodeAffinity` (local
//!   disks, zonal cloud disks): no existing node matches every such affinity together with the
//!   pod's `nodeSelector`, required node affinity and `nodeName` -> "node(s) didn't match
//!   PersistentVolume's node affinity" (two claims whose PVs sit in different zones included);
//! - unbound claims, generic ephemeral volumes and StatefulSet claim templates of a
//!   WaitForFirstConsumer class with `allowedTopologies`: the class's topology leaves no node
//!   the pod may run on -> "node(s) didn't find available persistent volumes to bind";
//! - the same on an Immediate class of a zonal provisioner (`topology::zonal`), for a pod pinned
//!   to one zone whose class's `allowedTopologies` do not pin the disk to that zone: the disk is
//!   provisioned before the pod is scheduled and may land in another zone. An inference (the
//!   provisioner's disks are taken to be zonal), said as such.
//!
//! Needs the nodes (the node cache, synced) for the first two, and the claims and PVs for named
//! claims: without them it says nothing of them. Work: at most [`MAX_VOLUMES`] volumes, one walk
//! of the nodes testing each against the pod and each distinct PV affinity or class topology
//! (nodes × constraints, charged to the budget), then pairs of at most [`MAX_PAIRED`] constraints
//! over node bitsets.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{NodeSelector, PodSpec};

use crate::kinds::Operation;
use crate::policy::engine::config::VolumeBindingMode;
use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE_UPDATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::catalog::{ClassInfo, NO_PROVISIONER};
use crate::policy::model::field::go_quote;
use crate::policy::model::limits::{MAX_TEMPLATES, MAX_VOLUMES, summarise};
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::storage;
use crate::policy::model::topology::{self, BIND_CONFLICT, Constraint, NODE_CONFLICT, Placement};
use crate::policy::model::volumes;

pub const META: Meta = Meta {
    key: "volumeTopology",
    annotation: "volume-topology",
    summary: "warns when a pod's volumes and its own node constraints leave no existing node to run on",
    denies: "never denies (nodes an autoscaler may add do not exist yet)",
    warns: "no existing node matches the node affinity of the PVs a pod's claims are bound to together with its nodeSelector, required node affinity and nodeName, or the allowedTopologies of a WaitForFirstConsumer class of its unbound claims; an Immediate class on a zonal provisioner for a pod pinned to one zone (assumed: single-zone disks)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[
            Judges::PodSpecs(PodFilter::MountsClaims).on(CREATE_UPDATE),
            Judges::ClaimTemplates.on(CREATE_UPDATE),
        ],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<VolumeTopology>(&META);

#[derive(Debug, Default)]
struct VolumeTopology;

impl Rule for VolumeTopology {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        // Warnings only: `enforce` and `audit` say the same thing.
        let Some(object) = req.object.as_ref() else {
            return;
        };
        let found = findings(cx, req.namespace, object);
        if found.is_empty() {
            return;
        }
        // UPDATE: what the old object already had is not said again (a scale of a workload
        // made before must stay quiet).
        let before: HashSet<String> = match (req.operation, req.old_object.as_ref()) {
            (Operation::Update, Some(old)) => findings(cx, req.namespace, old)
                .into_iter()
                .map(|(_, m)| m)
                .collect(),
            _ => HashSet::new(),
        };
        for (class, msg) in found {
            if !before.contains(&msg) {
                d.warning(ID, class, msg);
            }
        }
    }
}

/// Constraints compared pairwise at most (the pairs are over node bitsets).
const MAX_PAIRED: usize = 16;
/// Warnings said per object at most.
const MAX_SAID: usize = 3;

/// A claim of the pod that is not bound yet, and the class it will be provisioned from.
struct Unbound<'a> {
    /// `claim "data"`, `ephemeral volume "scratch"`, `claim template "www"`.
    what: String,
    class: &'a ClassInfo,
}

/// One distinct node constraint coming from the pod's volumes: a PV affinity (several PVs may
/// share it) or a WaitForFirstConsumer class's `allowedTopologies`.
struct Group<'a> {
    selector: &'a NodeSelector,
    /// `PV "a" of claim "data"`, or `class "x" of claim "data"`.
    names: Vec<String>,
    /// A PV's affinity (the scheduler's node conflict), else a class's topology.
    pv: bool,
    class: Option<String>,
}

impl Group<'_> {
    /// `PV "a" of claim "data" (zone In [zone-a]: zone zone-a)`: who, the constraint, and
    /// the nodes (or zones) it allows.
    fn describe(&self, allows: &str) -> String {
        format!(
            "{} ({}: {allows})",
            summarise(&self.names, 2, ", "),
            topology::describe_selector(self.selector)
        )
    }
}

/// Adds a constraint to its group: PVs (or classes) with the very same selector are one.
fn add_group<'a>(
    groups: &mut Vec<Group<'a>>,
    selector: &'a NodeSelector,
    name: String,
    pv: bool,
    class: Option<String>,
) {
    match groups
        .iter_mut()
        .find(|g| g.pv == pv && g.selector == selector)
    {
        Some(g) => {
            if !g.names.contains(&name) {
                g.names.push(name);
            }
        }
        None => groups.push(Group {
            selector,
            names: vec![name],
            pv,
            class,
        }),
    }
}

/// The pod spec of the object under review.
fn pod_spec<'a>(object: &Object<'a>) -> Option<&'a PodSpec> {
    match *object {
        Object::PodSpec { spec, .. } => spec,
        Object::StatefulSet(sts) => sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        _ => None,
    }
}

/// What the rule finds in one object: (class, warning) pairs.
fn findings(
    cx: &Context<'_>,
    namespace: Option<&str>,
    object: &Object<'_>,
) -> Vec<(Option<String>, String)> {
    let Some(spec) = pod_spec(object) else {
        return Vec::new();
    };
    let ns = namespace.unwrap_or_default();
    let placement = Placement::of(spec);
    let index = cx.catalog.volumes();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut unbound: Vec<Unbound<'_>> = Vec::new();
    for (n, v) in spec.volumes.iter().flatten().enumerate() {
        if n == MAX_VOLUMES || !cx.spend(1) {
            cx.skip(format!("volumeTopology: volumes past the first {n}"));
            break;
        }
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            let class = storage::claim_class(
                cx.settings,
                cx.catalog,
                namespace,
                tpl.metadata.as_ref(),
                Some(&tpl.spec),
            );
            if let Some(class) = class.as_deref().and_then(|c| cx.catalog.class(c)) {
                unbound.push(Unbound {
                    what: format!("ephemeral volume {}", go_quote(&v.name)),
                    class,
                });
            }
            continue;
        }
        let Some(src) = v.persistent_volume_claim.as_ref() else {
            continue;
        };
        // Only claims known: an unknown claim is never guessed about.
        let Some(claim) = index.and_then(|i| i.claim(ns, &src.claim_name)) else {
            continue;
        };
        // Bound, or pre-bound: by its `spec.volumeName`, or by a PV whose `claimRef` names it
        // (the PV controller binds the two to each other; `audit` on files sees manifests so).
        let bound = match (claim.volume_name.as_deref(), index) {
            (Some(pv_name), Some(i)) => i.pv(pv_name).map(|pv| (pv_name, pv)),
            (None, Some(i)) => i.pvs.claimed(ns, &src.claim_name).next(),
            _ => None,
        };
        if let Some((pv_name, pv)) = bound {
            let Some(sel) = pv.affinity.as_deref() else {
                continue;
            };
            // The grouping compares with every distinct affinity so far.
            cx.spend(groups.len() as u64);
            let name = format!(
                "PV {} of claim {}",
                go_quote(pv_name),
                go_quote(&src.claim_name)
            );
            add_group(&mut groups, sel, name, true, None);
        } else if claim.volume_name.is_none()
            && claim.selected_node.is_none()
            && let Some(class) = claim.class.as_deref().and_then(|c| cx.catalog.class(c))
        {
            // Unbound and not yet placed by the scheduler (`selected-node`: it is past it).
            unbound.push(Unbound {
                what: format!("claim {}", go_quote(&src.claim_name)),
                class,
            });
        }
    }
    if let Object::StatefulSet(sts) = object {
        let name = sts.metadata.name.as_deref().unwrap_or_default();
        for (t, tpl) in sts
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if t == MAX_TEMPLATES {
                cx.skip(format!(
                    "volumeTopology: volumeClaimTemplates past the first {MAX_TEMPLATES}"
                ));
                break;
            }
            let tpl_name = tpl.metadata.name.as_deref().unwrap_or_default();
            // Judged as claims to be made: the first ordinal's claim does not exist yet. Claims
            // that exist are each their own pod's and are not judged here.
            let first = volumes::statefulset_claims(sts, tpl_name).next();
            if first.is_some_and(|c| index.is_some_and(|i| i.claim(ns, &c).is_some())) {
                continue;
            }
            let class = volumes::claim_class(tpl).or_else(|| {
                storage::choose(cx.settings, cx.catalog, namespace, tpl.spec.as_ref())
                    .map(|c| c.class)
            });
            if let Some(class) = class.as_deref().and_then(|c| cx.catalog.class(c)) {
                unbound.push(Unbound {
                    what: format!(
                        "claim template {} of StatefulSet {}",
                        go_quote(tpl_name),
                        go_quote(name)
                    ),
                    class,
                });
            }
        }
    }
    for u in &unbound {
        if u.class.volume_binding_mode == Some(VolumeBindingMode::WaitForFirstConsumer)
            && u.class.provisioner != NO_PROVISIONER
            && let Some(sel) = u.class.allowed_topologies.as_ref()
        {
            let name = format!("class {} of {}", go_quote(&u.class.name), u.what);
            add_group(&mut groups, sel, name, false, Some(u.class.name.clone()));
        }
    }
    let mut out = no_node(cx, &placement, &groups);
    out.extend(immediate_elsewhere(&placement, &unbound));
    out
}

/// The constraints of the volumes that no existing node satisfies together with the pod's own.
/// Silent when the nodes are not known, or when the pod's own constraint admits no node (that
/// is not the volumes' doing).
fn no_node(
    cx: &Context<'_>,
    placement: &Placement<'_>,
    groups: &[Group<'_>],
) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let Some(nodes) = cx.catalog.nodes() else {
        return out;
    };
    if groups.is_empty() {
        return out;
    }
    let mut constraints = vec![Constraint::Pod(*placement)];
    constraints.extend(groups.iter().map(|g| Constraint::Selector(g.selector)));
    if !cx.spend((nodes.len() as u64).saturating_mul(constraints.len() as u64)) {
        cx.skip("volumeTopology: the nodes against the volumes' node affinity");
        return out;
    }
    let sets = topology::admitted(nodes, &constraints);
    let pod = &sets[0];
    if pod.is_empty() {
        return out;
    }
    let mut all = pod.clone();
    for s in &sets[1..] {
        all.intersect(s);
    }
    if !all.is_empty() {
        return out;
    }
    let allows = |i: usize| topology::describe_nodes(nodes, &sets[i], &constraints[i]);
    let reason = |gs: &[&Group<'_>]| {
        if gs.iter().any(|g| g.pv) {
            NODE_CONFLICT
        } else {
            BIND_CONFLICT
        }
    };
    let class_of = |gs: &[&Group<'_>]| gs.iter().find_map(|g| g.class.clone());
    let pod_words = format!("the pod ({}: {})", placement.describe(), allows(0));
    // One constraint that no node satisfies at all.
    let mut said: Vec<usize> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if sets[i + 1].is_empty() {
            out.push((
                class_of(&[g]),
                format!(
                    "{}: {}: the pod stays Pending",
                    reason(&[g]),
                    g.describe(&allows(i + 1))
                ),
            ));
            said.push(i);
        }
    }
    // One constraint the pod's own excludes.
    for (i, g) in groups.iter().enumerate() {
        if !said.contains(&i) && !placement.is_open() && pod.disjoint(&sets[i + 1]) {
            out.push((
                class_of(&[g]),
                format!(
                    "{}: {} and {pod_words} share no node",
                    reason(&[g]),
                    g.describe(&allows(i + 1)),
                ),
            ));
            said.push(i);
        }
    }
    // Two constraints of the volumes with no node in common (PVs in different zones).
    let paired = groups.len().min(MAX_PAIRED);
    if groups.len() > MAX_PAIRED {
        cx.skip(format!(
            "volumeTopology: node affinities past the first {MAX_PAIRED} compared in pairs"
        ));
    }
    cx.spend((paired * paired) as u64);
    for i in 0..paired {
        for j in i + 1..paired {
            if said.contains(&i) || said.contains(&j) || !sets[i + 1].disjoint(&sets[j + 1]) {
                continue;
            }
            let (a, b) = (&groups[i], &groups[j]);
            out.push((
                class_of(&[a, b]),
                format!(
                    "{}: {} and {} share no node",
                    reason(&[a, b]),
                    a.describe(&allows(i + 1)),
                    b.describe(&allows(j + 1)),
                ),
            ));
            said.extend([i, j]);
        }
    }
    if out.is_empty() {
        // Only all of them together leave no node.
        let all: Vec<&Group<'_>> = groups.iter().collect();
        let names: Vec<String> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| g.describe(&allows(i + 1)))
            .collect();
        let with_pod = if placement.is_open() {
            String::new()
        } else {
            format!(" and {pod_words}")
        };
        out.push((
            class_of(&all),
            format!(
                "{}: {}{with_pod} share no node",
                reason(&all),
                summarise(&names, 3, "; ")
            ),
        ));
    }
    out.truncate(MAX_SAID);
    out
}

/// Whether a class's `allowedTopologies` keep its volumes in `zone`: every term requires a zone
/// key to be in values that are all `zone`.
fn pinned_to(class: &ClassInfo, zone: &str) -> bool {
    class.allowed_topologies.as_ref().is_some_and(|sel| {
        sel.node_selector_terms.iter().all(|t| {
            t.match_expressions.iter().flatten().any(|r| {
                topology::is_zone_key(&r.key)
                    && r.values
                        .as_deref()
                        .is_some_and(|v| !v.is_empty() && v.iter().all(|x| x == zone))
            })
        })
    })
}

/// Unbound claims of an Immediate class on a zonal provisioner, for a pod pinned to one zone:
/// the PV controller provisions them before the pod is scheduled, in any zone the class allows
/// (spec section 5), so the disk may land in another zone and the pod then never schedules.
fn immediate_elsewhere(
    placement: &Placement<'_>,
    unbound: &[Unbound<'_>],
) -> Vec<(Option<String>, String)> {
    let Some(zone) = placement.pinned_zone() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for u in unbound {
        let c = u.class;
        // Unset is Immediate (`SetDefaults_StorageClass`).
        let immediate = c.volume_binding_mode != Some(VolumeBindingMode::WaitForFirstConsumer);
        if !immediate || !topology::zonal(&c.provisioner, &c.parameters) || pinned_to(c, zone) {
            continue;
        }
        out.push((
            Some(c.name.clone()),
            format!(
                "{}: class {} is Immediate on {} (assumed zonal): the disk is made before scheduling, \
                 maybe outside the pod's zone {zone} ({NODE_CONFLICT}); use WaitForFirstConsumer",
                u.what,
                go_quote(&c.name),
                c.provisioner
            ),
        ));
        if out.len() == MAX_SAID {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::catalog::LiveState;
    use crate::policy::decision::Action;
    use crate::policy::model::catalog::{Catalog, LiveClass};
    use crate::policy::model::node_selector::Node;
    use crate::policy::testing::{cluster, create, update};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    const POLICY: &str = r#"
storageClasses:
  - {name: gp3, provisioner: ebs.csi.aws.com, volumeBindingMode: Immediate}
  - {name: gp3-b, provisioner: ebs.csi.aws.com, volumeBindingMode: Immediate,
     allowedTopologies: [{matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [zone-b]}]}]}
  - {name: regional, provisioner: pd.csi.storage.gke.io, parameters: {replication-type: regional-pd}}
  - {name: nfs, provisioner: nfs.csi.k8s.io, volumeBindingMode: Immediate}
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, None, false).unwrap()
    }

    fn nodes() -> Vec<Node> {
        let node = |name: &str, zone: &str| {
            let labels: BTreeMap<String, String> = [
                (HOST.to_owned(), name.to_owned()),
                (ZONE.to_owned(), zone.to_owned()),
            ]
            .into();
            (name.to_owned(), labels)
        };
        vec![
            node("k8s-worker-01", "zone-a"),
            node("k8s-worker-02", "zone-b"),
            node("pi-1", "home"),
            node("pi-2", "home"),
        ]
    }

    fn pv(name: &str, claim: &str, key: &str, value: &str) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "claimRef": {"namespace": "default", "name": claim},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": key, "operator": "In", "values": [value]}]}]}}},
            "status": {"phase": "Bound"}}))
        .unwrap()
    }

    fn claim(name: &str, volume: Option<&str>, class: &str) -> PersistentVolumeClaim {
        let mut spec = json!({"storageClassName": class});
        if let Some(v) = volume {
            spec["volumeName"] = json!(v);
        }
        let phase = if volume.is_some() { "Bound" } else { "Pending" };
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": spec, "status": {"phase": phase}}),
        )
        .unwrap()
    }

    fn wffc(name: &str, zones: &[&str]) -> LiveClass {
        let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
            "metadata": {"name": name}, "provisioner": "ebs.csi.aws.com",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [{"key": ZONE, "values": zones}]}]}))
        .unwrap();
        LiveClass::from_storage_class(&sc)
    }

    struct World {
        pvs: Vec<PersistentVolume>,
        claims: Vec<PersistentVolumeClaim>,
        nodes: Option<Vec<Node>>,
        classes: Vec<LiveClass>,
    }

    impl Default for World {
        fn default() -> Self {
            World {
                pvs: Vec::new(),
                claims: Vec::new(),
                nodes: Some(nodes()),
                classes: Vec::new(),
            }
        }
    }

    fn catalog(p: &Policy, w: &World) -> Catalog {
        let live = LiveState {
            nodes: w.nodes.clone().map(Arc::new),
            classes: w.classes.clone(),
            ..Default::default()
        };
        cluster(p, &w.pvs, &w.claims, "default", live)
    }

    fn pod(extra: Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "app"}, "spec": spec})).unwrap()
    }

    fn mounts(claims: &[&str]) -> Value {
        json!(
            claims
                .iter()
                .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
                .collect::<Vec<_>>()
        )
    }

    /// This rule alone, enforcing, on the CREATE of `obj` (an UPDATE from `old` when given).
    fn decide_obj(cat: &Catalog, obj: Object<'_>, old: Option<Object<'_>>) -> Decision {
        let req = match old {
            Some(old) => update(obj, old),
            None => create(obj),
        };
        req.check(&policy(), cat, ID, Endpoint::Validate, Acting::Enforce)
    }

    fn decide(cat: &Catalog, p: &Pod) -> Decision {
        decide_obj(
            cat,
            Object::PodSpec {
                spec: p.spec.as_ref(),
                path: "spec",
                runs: crate::policy::model::workloads::Runs::One,
            },
            None,
        )
    }

    /// The e2e case: a local PV on k8s-worker-01 (zone-a), a pod pinned to zone-b.
    fn local_world() -> World {
        World {
            pvs: vec![pv("local-a", "data", HOST, "k8s-worker-01")],
            claims: vec![claim("data", Some("local-a"), "local")],
            ..Default::default()
        }
    }

    #[test]
    fn warns_when_the_pv_and_the_pod_allow_no_common_node() {
        let p = policy();
        let cat = catalog(&p, &local_world());
        let app = pod(json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data"])}));
        let d = decide(&cat, &app);
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "node(s) didn't match PersistentVolume's node affinity: PV \"local-a\" of claim \"data\" \
                 (kubernetes.io/hostname In [k8s-worker-01]: node k8s-worker-01) and the pod (nodeSelector \
                 topology.kubernetes.io/zone=zone-b: zone zone-b) share no node"
            ]
        );
        assert!(d.warnings[0].chars().count() <= crate::policy::MAX_WARNING_CHARS);
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(d.audit_annotations["volume-topology"], d.warnings[0]);
    }

    #[test]
    fn quiet_when_a_node_allows_both() {
        let p = policy();
        let cat = catalog(&p, &local_world());
        for extra in [
            json!({"nodeSelector": {ZONE: "zone-a"}, "volumes": mounts(&["data"])}),
            json!({"volumes": mounts(&["data"])}),
            json!({"nodeName": "k8s-worker-01", "volumes": mounts(&["data"])}),
        ] {
            let d = decide(&cat, &pod(extra.clone()));
            assert!(d.warnings.is_empty(), "{extra}: {:?}", d.warnings);
        }
    }

    #[test]
    fn node_name_and_required_affinity_count_as_the_pods_constraint() {
        let p = policy();
        let cat = catalog(&p, &local_world());
        let named = pod(json!({"nodeName": "pi-1", "volumes": mounts(&["data"])}));
        assert!(decide(&cat, &named).warnings[0].contains("the pod (nodeName pi-1: node pi-1)"));
        let affinity = pod(
            json!({"volumes": mounts(&["data"]), "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": ZONE, "operator": "In", "values": ["home"]}]}]}}}}),
        );
        let d = decide(&cat, &affinity);
        assert!(
            d.warnings[0]
                .contains("(nodeAffinity topology.kubernetes.io/zone In [home]: zone home)"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn warns_when_two_claims_sit_in_different_zones() {
        let p = policy();
        let w = World {
            pvs: vec![
                pv("vol-a", "data", ZONE, "zone-a"),
                pv("vol-b", "logs", ZONE, "zone-b"),
            ],
            claims: vec![
                claim("data", Some("vol-a"), "gp3"),
                claim("logs", Some("vol-b"), "gp3"),
            ],
            ..Default::default()
        };
        let d = decide(
            &catalog(&p, &w),
            &pod(json!({"volumes": mounts(&["data", "logs"])})),
        );
        assert_eq!(
            d.warnings,
            [
                "node(s) didn't match PersistentVolume's node affinity: PV \"vol-a\" of claim \"data\" \
                 (topology.kubernetes.io/zone In [zone-a]: zone zone-a) and PV \"vol-b\" of claim \"logs\" \
                 (topology.kubernetes.io/zone In [zone-b]: zone zone-b) share no node"
            ]
        );
    }

    #[test]
    fn pvs_in_one_zone_are_one_constraint() {
        let p = policy();
        let w = World {
            pvs: vec![
                pv("vol-a", "data", ZONE, "zone-a"),
                pv("vol-a2", "logs", ZONE, "zone-a"),
            ],
            claims: vec![
                claim("data", Some("vol-a"), "gp3"),
                claim("logs", Some("vol-a2"), "gp3"),
            ],
            ..Default::default()
        };
        let app = pod(
            json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data", "logs", "data"])}),
        );
        let d = decide(&catalog(&p, &w), &app);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(d.warnings[0].contains(
            "PV \"vol-a\" of claim \"data\", PV \"vol-a2\" of claim \"logs\" (topology.kubernetes.io/zone In [zone-a]: zone zone-a)"
        ));
    }

    #[test]
    fn warns_when_a_pv_is_pinned_to_a_node_that_is_gone() {
        let p = policy();
        let w = World {
            pvs: vec![pv("old", "data", HOST, "k8s-worker-09")],
            claims: vec![claim("data", Some("old"), "local")],
            ..Default::default()
        };
        let d = decide(
            &catalog(&p, &w),
            &pod(json!({"volumes": mounts(&["data"])})),
        );
        assert_eq!(
            d.warnings,
            [
                "node(s) didn't match PersistentVolume's node affinity: PV \"old\" of claim \"data\" \
                 (kubernetes.io/hostname In [k8s-worker-09]: no node): the pod stays Pending"
            ]
        );
    }

    #[test]
    fn silent_without_nodes_claims_or_binding() {
        let p = policy();
        let app = pod(json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data"])}));
        // No cluster at all.
        assert!(decide(&p.static_catalog(), &app).warnings.is_empty());
        // Nodes not synced.
        let w = World {
            nodes: None,
            ..local_world()
        };
        assert!(decide(&catalog(&p, &w), &app).warnings.is_empty());
        // Claim unknown, or not bound (and no PV's claimRef names it), or its PV unknown.
        for claims in [
            vec![],
            vec![claim("data", None, "local")],
            vec![claim("data", Some("missing"), "local")],
        ] {
            let w = World {
                claims,
                pvs: vec![pv("local-a", "other", HOST, "k8s-worker-01")],
                ..local_world()
            };
            assert!(decide(&catalog(&p, &w), &app).warnings.is_empty());
        }
        // A PV whose claimRef names the unbound claim: pre-bound, judged.
        let w = World {
            claims: vec![claim("data", None, "local")],
            ..local_world()
        };
        assert_eq!(decide(&catalog(&p, &w), &app).warnings.len(), 1);
        // The pod's own selector matches no node: not the volumes' doing.
        let nowhere = pod(json!({"nodeSelector": {ZONE: "mars"}, "volumes": mounts(&["data"])}));
        assert!(
            decide(&catalog(&p, &local_world()), &nowhere)
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn warns_when_a_wffc_class_topology_excludes_the_pods_nodes() {
        let p = policy();
        let w = World {
            claims: vec![claim("data", None, "zonal-a")],
            classes: vec![wffc("zonal-a", &["zone-a"])],
            ..Default::default()
        };
        let cat = catalog(&p, &w);
        let app = pod(json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data"])}));
        let d = decide(&cat, &app);
        assert_eq!(
            d.warnings,
            [
                "node(s) didn't find available persistent volumes to bind: class \"zonal-a\" of claim \"data\" \
                 (topology.kubernetes.io/zone In [zone-a]: zone zone-a) and the pod (nodeSelector \
                 topology.kubernetes.io/zone=zone-b: zone zone-b) share no node"
            ]
        );
        assert_eq!(d.findings[0].storage_class.as_deref(), Some("zonal-a"));
        // In its zone: quiet. An ephemeral volume on the class: judged the same.
        let ok = pod(json!({"nodeSelector": {ZONE: "zone-a"}, "volumes": mounts(&["data"])}));
        assert!(decide(&cat, &ok).warnings.is_empty());
        let eph = pod(
            json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": [{"name": "scratch",
            "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "zonal-a",
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]}),
        );
        assert!(
            decide(&cat, &eph).warnings[0]
                .contains("class \"zonal-a\" of ephemeral volume \"scratch\"")
        );
    }

    #[test]
    fn a_wffc_claim_the_scheduler_placed_is_past_it() {
        let p = policy();
        let mut placed = claim("data", None, "zonal-a");
        placed.metadata.annotations = Some(
            [(
                volumes::SELECTED_NODE_ANNOTATION.to_owned(),
                "k8s-worker-01".to_owned(),
            )]
            .into(),
        );
        let w = World {
            claims: vec![placed],
            classes: vec![wffc("zonal-a", &["zone-a"])],
            ..Default::default()
        };
        let app = pod(json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data"])}));
        assert!(decide(&catalog(&p, &w), &app).warnings.is_empty());
    }

    fn sts(class: &str, selector: Value) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {
            "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                "containers": [{"name": "c", "image": "x"}], "nodeSelector": selector}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .unwrap()
    }

    #[test]
    fn statefulset_templates_are_judged_on_their_class() {
        let p = policy();
        let w = World {
            classes: vec![wffc("zonal-a", &["zone-a"])],
            ..Default::default()
        };
        let cat = catalog(&p, &w);
        let s = sts("zonal-a", json!({ZONE: "zone-b"}));
        let d = decide_obj(&cat, Object::StatefulSet(&s), None);
        assert!(
            d.warnings[0]
                .contains("class \"zonal-a\" of claim template \"data\" of StatefulSet \"db\""),
            "{:?}",
            d.warnings
        );
        // UPDATE of a StatefulSet that already had it: not said again.
        let d = decide_obj(&cat, Object::StatefulSet(&s), Some(Object::StatefulSet(&s)));
        assert!(d.warnings.is_empty());
        let immediate = sts("gp3", json!({ZONE: "zone-b"}));
        let d = decide_obj(&p.static_catalog(), Object::StatefulSet(&immediate), None);
        assert!(d.warnings[0].starts_with(
            "claim template \"data\" of StatefulSet \"db\": class \"gp3\" is Immediate"
        ));
    }

    #[test]
    fn warns_when_an_immediate_zonal_class_serves_a_pod_pinned_to_a_zone() {
        let p = policy();
        let cat = p.static_catalog();
        let eph = |class: &str, zone: &str| {
            pod(
                json!({"nodeSelector": {ZONE: zone}, "volumes": [{"name": "scratch",
                "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": class,
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]}),
            )
        };
        let d = decide(&cat, &eph("gp3", "zone-b"));
        assert_eq!(
            d.warnings,
            [
                "ephemeral volume \"scratch\": class \"gp3\" is Immediate on ebs.csi.aws.com (assumed zonal): \
                 the disk is made before scheduling, maybe outside the pod's zone zone-b (node(s) didn't match \
                 PersistentVolume's node affinity); use WaitForFirstConsumer"
            ]
        );
        assert!(d.warnings[0].chars().count() <= crate::policy::MAX_WARNING_CHARS);
        // The class keeps its disks in that zone; a regional disk; a shared filesystem; a pod
        // not pinned: quiet.
        assert!(decide(&cat, &eph("gp3-b", "zone-b")).warnings.is_empty());
        assert!(!decide(&cat, &eph("gp3-b", "zone-a")).warnings.is_empty());
        assert!(decide(&cat, &eph("regional", "zone-b")).warnings.is_empty());
        assert!(decide(&cat, &eph("nfs", "zone-b")).warnings.is_empty());
        let open = pod(json!({"volumes": [{"name": "scratch",
            "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "gp3",
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]}));
        assert!(decide(&cat, &open).warnings.is_empty());
    }

    /// 5,000 nodes: one walk, charged nodes × constraints (the pod and one PV affinity) plus the
    /// volume, and no more: the decision is the same as on four nodes.
    #[test]
    fn five_thousand_nodes_cost_one_walk() {
        let p = policy();
        let mut many: Vec<Node> = (0..5_000)
            .map(|i| {
                let name = format!("node-{i}");
                let zone = if i % 2 == 0 { "zone-a" } else { "zone-c" };
                let labels: BTreeMap<String, String> = [
                    (HOST.to_owned(), name.clone()),
                    (ZONE.to_owned(), zone.to_owned()),
                ]
                .into();
                (name, labels)
            })
            .collect();
        many.extend(nodes());
        let n = many.len() as u64;
        let w = World {
            nodes: Some(many),
            ..local_world()
        };
        let cat = catalog(&p, &w);
        let app = pod(json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data"])}));
        let run = |units: u64| {
            let budget = crate::policy::model::limits::Budget::with_units(units, None);
            let mut cx = p.context(Endpoint::Validate, &cat);
            cx.budget = Some(&budget);
            let obj = Object::PodSpec {
                spec: app.spec.as_ref(),
                path: "spec",
                runs: crate::policy::model::workloads::Runs::One,
            };
            findings(&cx, Some("default"), &obj)
        };
        let f = run(1 + 2 * n);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].1.contains("node k8s-worker-01) and the pod"), "{f:?}");
        assert!(run(2 * n).is_empty(), "one unit short: the walk is skipped");
    }

    #[test]
    fn the_walk_is_charged_to_the_budget() {
        let p = policy();
        let cat = catalog(&p, &local_world());
        let app = pod(json!({"nodeSelector": {ZONE: "zone-b"}, "volumes": mounts(&["data"])}));
        let budget = crate::policy::model::limits::Budget::with_units(5, None);
        let mut cx = p.context(Endpoint::Validate, &cat);
        cx.budget = Some(&budget);
        let req = create(Object::PodSpec {
            spec: app.spec.as_ref(),
            path: "spec",
            runs: crate::policy::model::workloads::Runs::One,
        })
        .request;
        let mut d = Decision::default();
        p.rule(ID).check(&cx, &req, Acting::Enforce, &mut d);
        assert!(
            d.warnings.is_empty(),
            "4 nodes × 2 constraints is past 5 units"
        );
        assert!(!budget.skipped().is_empty());
    }
}
