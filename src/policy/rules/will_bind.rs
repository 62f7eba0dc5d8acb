//! Rule `willBind`: a claim on a static class that no PersistentVolume can bind is said to stay
//! Pending when it is applied, not minutes later in `kubectl describe`.
//!
//! A static class (`kubernetes.io/no-provisioner`, or `storageClassName: ""`) binds only to PVs
//! made by hand. For a PVC (CREATE) and a StatefulSet's future claims
//! (`<template>-<name>-<ordinal>`, CREATE and UPDATE), the PV controller's own matching
//! ([`volumes::misfit`]) is applied to the PVs known; a StatefulSet's claims are counted against
//! the PVs without using one PV twice, and existing claims count as served. Warnings only, never
//! a denial: the PV may be created a minute later. Dynamic and unknown classes are never judged,
//! and without a source of PVs and claims (no cluster) the rule says nothing.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::policy::engine::config::VolumeBindingMode;
use crate::policy::engine::decision::{Decision, judged_against};
use crate::policy::engine::meta::{CREATE, CREATE_UPDATE};
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::catalog::{Catalog, ClassesKnown, NO_PROVISIONER};
use crate::policy::model::field::go_quote;
use crate::policy::model::limits::{MAX_ORDINALS, MAX_TEMPLATES};
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::node_selector;
use crate::policy::model::quantity;
use crate::policy::model::storage;
use crate::policy::model::volumes::{self, Misfit, Modes, PvInfo, Source, VolumeIndex, Wants};

pub const META: Meta = Meta {
    key: "willBind",
    annotation: "will-bind",
    summary: "warns when no PersistentVolume can bind a claim (or a StatefulSet's claims) on a static class",
    denies: "never denies",
    warns: "no known PV can bind a claim of a static class (kubernetes.io/no-provisioner, \"\", or a name with no StorageClass but PVs); WaitForFirstConsumer PVs pinned to no existing node are not counted",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[
            // A claim's class and size are immutable: only its creation can ask for a PV.
            Judges::Claims.on(CREATE),
            Judges::ClaimTemplates.on(CREATE_UPDATE),
        ],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<WillBind>(&META);

#[derive(Debug, Default)]
struct WillBind;

impl Rule for WillBind {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        let Some(index) = cx.catalog.volumes() else {
            return;
        };
        let namespace = req.namespace.unwrap_or_default();
        let found = match req.object {
            Some(Object::Pvc(pvc)) => claim_waits(cx, index, namespace, pvc).into_iter().collect(),
            Some(Object::StatefulSet(sts)) => statefulset_waits(cx, index, namespace, sts),
            _ => Vec::new(),
        };
        for (class, text) in found {
            d.warning(ID, class, judged_against(index.source, text));
        }
    }
}

/// Whether a claim without a class cannot be judged: `audit` on files that show no
/// StorageClass knows nothing of the cluster's default class, which the DefaultStorageClass
/// plugin would set (most clusters have one), so "no class" there is not static binding.
fn default_unknowable(catalog: &Catalog, index: &VolumeIndex) -> bool {
    index.source == Source::Files && catalog.classes_known() != ClassesKnown::Files
}

/// Whether claims of this class bind only to PVs made by hand: `""`, a known class of
/// `kubernetes.io/no-provisioner`, or a class name that has no StorageClass but known PVs (the
/// PV controller treats a missing class as Immediate and binds PVs of that class name:
/// `IsDelayBindingMode`, `FindMatchingVolume` in `pv_controller.go`; the docs'
/// `storageClassName: manual`). Other unknown classes are not judged, nor is a missing class
/// when the catalog may not hold every class.
fn is_static(catalog: &Catalog, index: &VolumeIndex, class: &str) -> bool {
    match catalog.class(class) {
        _ if class.is_empty() => true,
        Some(c) => c.provisioner == NO_PROVISIONER,
        None => {
            catalog.classes_known() != ClassesKnown::Partly && index.class_volumes(class).total > 0
        }
    }
}

/// Where the scheduler may place the volumes of a class, when that limits which volumes count:
/// with WaitForFirstConsumer it picks a node first and takes only PVs whose `spec.nodeAffinity`
/// matches it (`findMatchingVolumes` in
/// `pkg/scheduler/framework/plugins/volumebinding/binder.go` calls `FindMatchingVolume` with
/// the node), so a PV whose affinity matches no existing node is never chosen. `None` when every volume
/// counts: another binding mode, or nodes not known (an autoscaler may add a node: then a
/// volume is not known to be lost).
struct Placement<'a> {
    catalog: &'a Catalog,
    nodes: &'a [node_selector::Node],
    /// The policy's node label, whose values over the nodes the catalog holds as a set.
    label: &'a str,
}

impl<'a> Placement<'a> {
    fn of(catalog: &'a Catalog, label: &'a str, class: &str) -> Option<Placement<'a>> {
        let wffc = catalog.class(class).is_some_and(|c| {
            c.volume_binding_mode == Some(VolumeBindingMode::WaitForFirstConsumer)
        });
        let nodes = catalog.nodes().filter(|_| wffc)?;
        // Every free volume of the class has a node (no affinity, or a pin to an existing
        // node's label value): none needs checking.
        if !catalog.may_strand(class) {
            return None;
        }
        Some(Placement {
            catalog,
            nodes,
            label,
        })
    }

    /// Whether the scheduler could ever choose this PV: its affinity selects an existing node
    /// (a hostname pin is one look-up, not a walk of the nodes).
    fn allows(&self, pv: &PvInfo) -> bool {
        pv.affinity.as_deref().is_none_or(|a| {
            node_selector::selects_any_indexed(a, self.nodes, self.label, |v| {
                self.catalog.node_exists(v) == Some(true)
            })
        })
    }
}

/// Whether the PV may be chosen (see [`Placement`]).
fn schedulable(placement: Option<&Placement<'_>>, pv: &PvInfo) -> bool {
    placement.is_none_or(|p| p.allows(pv))
}

/// Why none of the volumes that fit is usable, when some fit but match no node.
fn stranded_phrase(count: usize, class: &str) -> String {
    format!(
        "{count} Available PersistentVolume{} {} that fit{} spec.nodeAffinity matching no existing node",
        if count == 1 { "" } else { "s" },
        class_phrase(class),
        if count == 1 { "s has" } else { " have" }
    )
}

fn class_phrase(class: &str) -> String {
    if class.is_empty() {
        "without a class".to_owned()
    } else {
        format!("of class {class}")
    }
}

/// Why no volume fits, from the closest any free volume came
/// ([`volumes::PvMap::closest_misfit`]).
pub(crate) fn why_none(closest: Misfit, w: &Wants<'_>, size_text: &str) -> String {
    let what = match closest {
        Misfit::NotFree | Misfit::TooSmall => format!("has {size_text}"),
        Misfit::Selector => "matches spec.selector".to_owned(),
        Misfit::VolumeMode => {
            format!(
                "has volumeMode {}",
                if w.block { "Block" } else { "Filesystem" }
            )
        }
        Misfit::AccessModes => "serves the requested access modes".to_owned(),
    };
    format!(
        "no Available PersistentVolume {} {what}",
        class_phrase(w.class)
    )
}

/// What a claim spec asks of a volume, and its size as written; `None` when the size is
/// unreadable (not judged).
fn wants_of<'a>(
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    class: &'a str,
    spec: &'a k8s_openapi::api::core::v1::PersistentVolumeClaimSpec,
) -> Option<(Wants<'a>, String)> {
    let size_text = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let size = if size_text.is_empty() {
        0
    } else {
        quantity::bytes(&size_text)?
    };
    Some((
        Wants {
            namespace,
            name,
            uid,
            class,
            modes: Modes::of(spec.access_modes.as_deref().unwrap_or(&[])),
            block: spec.volume_mode.as_deref() == Some("Block"),
            size,
            selector: spec.selector.as_ref(),
        },
        size_text,
    ))
}

/// Whether a pre-bound volume takes the claim: `FindMatchingVolume`
/// (component-helpers `storage/volume/pv_helpers.go`) checks size, volume mode and deletion
/// before the claimRef, and the PV controller only offers it volumes from the access-mode index
/// that serve the claim's modes (`persistentVolumeOrderedIndex.findByClaim`,
/// `pkg/controller/volume/persistentvolume/index.go`): a volume reserved for the claim without
/// its modes is never bound (the end-to-end oracle found this).
fn prebound_fits(pv: &PvInfo, w: &Wants<'_>) -> bool {
    w.is_bound_by(pv)
        && !pv.deleting
        && pv.block == w.block
        && pv.modes.serve(w.modes)
        && pv.capacity.unwrap_or(0) >= w.size
}

/// The warning for a claim no PV can bind, with its class.
fn claim_waits(
    cx: &Context<'_>,
    index: &VolumeIndex,
    namespace: &str,
    pvc: &PersistentVolumeClaim,
) -> Option<(Option<String>, String)> {
    let catalog = cx.catalog;
    let spec = pvc.spec.as_ref()?;
    // A requested volume is the `volumeName` rule's business; a claim already bound (as
    // `audit` sees live or exported claims) is past binding.
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    {
        return None;
    }
    // At /validate the DefaultStorageClass plugin has run: no class now means no class. On
    // files that show no StorageClass, the cluster's default class would be set: not judged.
    let class = match volumes::claim_class(pvc) {
        Some(c) => c,
        None if default_unknowable(catalog, index) => return None,
        None => String::new(),
    };
    if !is_static(catalog, index, &class) {
        return None;
    }
    let name = pvc.metadata.name.as_deref().unwrap_or_default();
    // Known and bound (`audit` reviews existing claims without their status).
    if index.claim(namespace, name).is_some_and(|c| c.is_bound()) {
        return None;
    }
    let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    let (w, size_text) = wants_of(namespace, name, uid, &class, spec)?;
    let placement = Placement::of(catalog, &cx.settings.node_label, &class);
    // Indexed look-ups (bounded by the claim, not the cluster): the volumes reserved for this
    // claim, then the free ones that fit, smallest first, until one the scheduler can place.
    if index
        .pvs
        .claimed(namespace, name)
        .any(|(_, pv)| prebound_fits(pv, &w))
        || index
            .pvs
            .fitting(&w)
            .any(|(_, pv)| schedulable(placement.as_ref(), pv))
    {
        return None;
    }
    let stranded = index.pvs.fitting(&w).count();
    let why = if stranded > 0 {
        stranded_phrase(stranded, &class)
    } else {
        why_none(index.pvs.closest_misfit(&w, |_| false), &w, &size_text)
    };
    Some((
        Some(class.clone()).filter(|c| !c.is_empty()),
        format!("claim {} will stay Pending: {why}", go_quote(name)),
    ))
}

/// A claim template of a StatefulSet that is judged: a static class, a readable size, and the
/// ordinals left to it by the cap shared by every template.
struct Judged<'a> {
    name: &'a str,
    spec: &'a k8s_openapi::api::core::v1::PersistentVolumeClaimSpec,
    class: String,
    /// Ordinals judged, from the first: `min(replicas, what the earlier templates left)`.
    ordinals: usize,
}

/// The warnings for a StatefulSet's claims that no PV can bind: one per template whose class
/// is static and some of whose claims would wait.
///
/// The StatefulSet controller makes the claims `<template>-<name>-<ordinal>` in ordinal order
/// (`getPersistentVolumeClaimName`, `createPersistentVolumeClaims` in
/// `pkg/controller/statefulset/stateful_pod_control.go`); the PV controller binds each one to
/// the volume reserved for it (`claimRef`) or else to the smallest free volume that fits
/// (`FindMatchingVolume`). This is judged from the indexes, never from a walk of every PV: the
/// claims that exist and the volumes reserved for claims of the template are found by the
/// claims' common prefix, the free volumes that fit are counted up to the claims left (from the
/// buckets' sizes, or walked in the controller's order only while a WaitForFirstConsumer
/// class's volumes must be placed on existing nodes), and the waiting claims are named by
/// arithmetic over the ordinals taken. The work follows the object (its templates, the claims
/// and reserved volumes of its ordinals, the volumes it takes), not the cluster.
fn statefulset_waits(
    cx: &Context<'_>,
    index: &VolumeIndex,
    namespace: &str,
    sts: &StatefulSet,
) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let Some(spec) = sts.spec.as_ref() else {
        return out;
    };
    let sts_name = sts.metadata.name.as_deref().unwrap_or_default();
    let ordinals = volumes::statefulset_ordinals(sts);
    let replicas = ordinals.len();
    let judged = judged_templates(cx, index, namespace, spec, replicas);
    // PVs already promised to one claim of this StatefulSet: never counted twice.
    let mut used: HashSet<&str> = HashSet::new();
    for (t, tpl) in judged.iter().enumerate() {
        let Some((probe, size_text)) = wants_of(namespace, "", "", &tpl.class, tpl.spec) else {
            continue;
        };
        let probe = &probe;
        let first = ordinals.start;
        // `ordinals` <= `replicas`: within the range, no overflow.
        let end = first + tpl.ordinals as i32;
        let prefix = format!("{}-{sts_name}-", tpl.name);
        let ordinal_of =
            |claim: &str| ordinal(&claim[prefix.len()..]).filter(|i| (first..end).contains(i));
        // Ordinals whose claim exists: served whatever happens.
        let mut existing: HashSet<i32> = HashSet::new();
        for (claim, _) in index.claims_with_prefix(namespace, &prefix) {
            if !cx.spend(1) {
                return out;
            }
            existing.extend(ordinal_of(claim));
        }
        // Volumes pre-bound by name to a claim yet to exist (the last that fits, by PV name,
        // when several are).
        let mut prebound: BTreeMap<i32, &str> = BTreeMap::new();
        for (claim, n, pv) in index.pvs.claimed_with_prefix(namespace, &prefix) {
            if !cx.spend(1) {
                return out;
            }
            let Some(i) = ordinal_of(claim).filter(|i| !existing.contains(i)) else {
                continue;
            };
            let w = Wants {
                name: claim,
                ..probe.clone()
            };
            if pv.claim_ref.as_ref().is_some_and(|r| r.uid.is_empty()) && prebound_fits(pv, &w) {
                prebound.insert(i, n);
            }
        }
        // A volume promised to an earlier template (same claim name) is not there to take.
        prebound.retain(|_, n| used.insert(n));
        // The other ordinals take free volumes that fit, smallest first, in ordinal order.
        let takers = tpl.ordinals - existing.len() - prebound.len();
        let placement = Placement::of(cx.catalog, &cx.settings.node_label, &tpl.class);
        let Some((free, stranded)) = free_for(cx, index, probe, placement.as_ref(), &used, takers)
        else {
            return out;
        };
        if judged[t + 1..].iter().any(|later| later.ordinals > 0) {
            // A later template may draw from the same volumes: promise these ones.
            let mut promised = Vec::with_capacity(free);
            for (n, pv) in index.pvs.fitting(probe) {
                if promised.len() == free || !cx.spend(1) {
                    break;
                }
                if !used.contains(n) && schedulable(placement.as_ref(), pv) {
                    promised.push(n);
                }
            }
            used.extend(promised);
        }
        if free == takers {
            continue;
        }
        // The takers after the first `free` wait: name the first three, count the rest.
        let waiting = takers - free;
        let mut taken: Vec<i32> = existing.into_iter().chain(prebound.into_keys()).collect();
        taken.sort_unstable();
        let names: Vec<String> = (free..free + waiting.min(3))
            .map(|k| format!("{prefix}{}", nth_untaken(first, &taken, k)))
            .collect();
        let why = if stranded > 0 {
            stranded_phrase(stranded, &tpl.class)
        } else {
            why_none(
                index.pvs.closest_misfit(probe, |n| used.contains(n)),
                probe,
                &size_text,
            )
        };
        let names = if waiting > names.len() {
            format!("{} and {} more", names.join(", "), waiting - names.len())
        } else {
            names.join(", ")
        };
        let noun = if waiting == 1 { "claim" } else { "claims" };
        let served = tpl.ordinals - waiting;
        // Only what was judged is counted: past the cap nothing is claimed about the rest.
        let tally = if tpl.ordinals < replicas {
            format!(
                "{served} of the first {} of {replicas} replicas served; the rest not judged",
                tpl.ordinals
            )
        } else {
            format!("{served} of {replicas} served")
        };
        out.push((
            Some(tpl.class.clone()).filter(|c| !c.is_empty()),
            format!(
                "StatefulSet {}: {noun} {names} will stay Pending: {why} ({tally})",
                go_quote(sts_name),
            ),
        ));
    }
    out
}

/// The claim templates judged, in order: at most [`MAX_TEMPLATES`], those of a static class
/// with a readable size, each with its share of the [`MAX_ORDINALS`] ordinals judged over all
/// templates (what the caps leave out is said through the budget).
fn judged_templates<'a>(
    cx: &Context<'_>,
    index: &VolumeIndex,
    namespace: &'a str,
    spec: &'a k8s_openapi::api::apps::v1::StatefulSetSpec,
    replicas: usize,
) -> Vec<Judged<'a>> {
    let mut out = Vec::new();
    let mut ordinals_left = MAX_ORDINALS;
    for (t, tpl) in spec.volume_claim_templates.iter().flatten().enumerate() {
        if t == MAX_TEMPLATES {
            cx.skip(format!(
                "willBind: volumeClaimTemplates past the first {MAX_TEMPLATES}"
            ));
            break;
        }
        let Some(tspec) = tpl.spec.as_ref() else {
            continue;
        };
        // Claims made from a template get the default class when the template names none.
        let class = match volumes::claim_class(tpl) {
            Some(c) => c,
            None => match storage::choose(cx.settings, cx.catalog, Some(namespace), Some(tspec)) {
                Some(c) => c.class,
                None if default_unknowable(cx.catalog, index) => continue,
                None => String::new(),
            },
        };
        if !is_static(cx.catalog, index, &class) {
            continue;
        }
        if wants_of(namespace, "", "", &class, tspec).is_none() {
            continue;
        }
        let judged = replicas.min(ordinals_left);
        ordinals_left -= judged;
        if judged < replicas {
            cx.skip(format!(
                "willBind: StatefulSet ordinals past the first {MAX_ORDINALS} of all templates"
            ));
            if judged == 0 {
                continue;
            }
        }
        out.push(Judged {
            name: tpl.metadata.name.as_deref().unwrap_or_default(),
            spec: tspec,
            class,
            ordinals: judged,
        });
    }
    out
}

/// How many of `takers` claims the free volumes that fit `probe` serve (none promised already,
/// in `used`), and, walking them, how many fit but are pinned to no existing node (counted
/// when some claims wait). `None` once the budget is spent.
fn free_for(
    cx: &Context<'_>,
    index: &VolumeIndex,
    probe: &Wants<'_>,
    placement: Option<&Placement<'_>>,
    used: &HashSet<&str>,
    takers: usize,
) -> Option<(usize, usize)> {
    if takers == 0 {
        return Some((0, 0));
    }
    let Some(placement) = placement else {
        // Every volume that fits counts: counted from the buckets' sizes up to the claims left
        // plus those an earlier template took from the same volumes (bounded by that limit).
        let mut taken_before = 0;
        for n in used {
            if !cx.spend(1) {
                return None;
            }
            taken_before += usize::from(
                index
                    .pvs
                    .get(n)
                    .is_some_and(|pv| volumes::misfit(pv, probe).is_none()),
            );
        }
        let limit = takers + taken_before;
        if !cx.spend(limit as u64) {
            return None;
        }
        let free = index.pvs.count_fitting(probe, limit) - taken_before.min(limit);
        return Some((free.min(takers), 0));
    };
    // Placed on existing nodes: walked in the controller's order until the claims are served
    // (all of them walked, and the stranded ones counted, only when some claims wait).
    let (mut free, mut stranded) = (0, 0);
    for (n, pv) in index.pvs.fitting(probe) {
        if free == takers {
            break;
        }
        if !cx.spend(1) {
            return None;
        }
        if !placement.allows(pv) {
            stranded += 1;
        } else if !used.contains(n) {
            free += 1;
        }
    }
    Some((free, stranded))
}

/// The `k`-th (from 0) ordinal from `first` that is not in `taken` (sorted, none below
/// `first`): the claim the `k`-th free volume would go to, without walking the ordinals.
fn nth_untaken(first: i32, taken: &[i32], k: usize) -> i32 {
    let mut at = first + k as i32;
    for &t in taken {
        if t > at {
            break;
        }
        at += 1;
    }
    at
}

/// The ordinal a claim name's suffix spells as the controller writes it (`strconv.Itoa`: no
/// sign, no leading zero), so `www-web-01` or `www-web-1a` is no claim of the StatefulSet.
fn ordinal(suffix: &str) -> Option<i32> {
    let canonical = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
        && (suffix == "0" || !suffix.starts_with('0'));
    suffix.parse().ok().filter(|_| canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Operation;
    use crate::policy::catalog::LiveState;
    use crate::policy::testing::{self, create, update};
    use crate::policy::volumes::{ClaimMap, Source, VolumeIndex};
    use crate::policy::{Action, Policy};
    use k8s_openapi::api::core::v1::PersistentVolume;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::{Value, json};
    use std::sync::Arc;

    const POLICY: &str = r#"
storageClasses:
  - {name: local-storage, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: WaitForFirstConsumer}
  - {name: gp3, provisioner: ebs.csi.aws.com}
"#;

    fn pv(name: &str, class: &str, size: &str, extra: Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name}, "spec": {"storageClassName": class,
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/mnt/x"}}, "status": {"phase": "Available"}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn pvc(name: &str, class: Option<&str>, size: &str) -> PersistentVolumeClaim {
        let mut spec =
            json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn sts(replicas: i32, class: &str) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "replicas": replicas, "selector": {}, "serviceName": "web", "template": {},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}}}}]}}))
        .unwrap()
    }

    fn catalog(p: &Policy, pvs: &[PersistentVolume], claims: &[PersistentVolumeClaim]) -> Catalog {
        let index =
            VolumeIndex::from_objects(pvs, claims.iter().map(|c| ("default", c)), Source::Cluster);
        p.catalog(&LiveState {
            pvs: Some(index.pvs.clone()),
            claims: Some(index.claims.clone()),
            ..Default::default()
        })
    }

    fn decide(cat: &Catalog, p: &Policy, op: Operation, obj: Object<'_>) -> Decision {
        create(obj)
            .operation(op)
            .check(p, cat, ID, Endpoint::Validate, Acting::Enforce)
    }

    fn policy() -> Policy {
        Policy::parse(POLICY, None, false).unwrap()
    }

    #[test]
    fn warns_when_no_volume_of_the_class_has_the_size() {
        let p = policy();
        let cat = catalog(&p, &[pv("small", "local-storage", "1Gi", json!({}))], &[]);
        let c = pvc("data", Some("local-storage"), "5Gi");
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert_eq!(
            d.warnings,
            [
                r#"claim "data" will stay Pending: no Available PersistentVolume of class local-storage has 5Gi"#
            ]
        );
        assert!(d.allowed());
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(
            d.findings[0].storage_class.as_deref(),
            Some("local-storage")
        );
        assert!(d.audit_annotations["will-bind"].contains("will stay Pending"));
    }

    #[test]
    fn a_claim_a_free_volume_serves_is_fine() {
        let p = policy();
        let cat = catalog(&p, &[pv("big", "local-storage", "10Gi", json!({}))], &[]);
        let c = pvc("data", Some("local-storage"), "5Gi");
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::Pvc(&c)),
            Decision::default()
        );
        // Only on CREATE: the engine does not call it on a claim's UPDATE (its Meta says so).
        let validate = META.at(Endpoint::Validate).unwrap();
        for (op, called) in [(Operation::Create, true), (Operation::Update, false)] {
            let req = update(Object::Pvc(&c), Object::Pvc(&c))
                .operation(op)
                .request;
            assert_eq!(validate.applies(&req), called, "{op:?}");
        }
    }

    #[test]
    fn a_volume_reserved_for_the_claim_without_its_access_modes_does_not_serve_it() {
        let p = policy();
        let reserved = pv(
            "mine",
            "local-storage",
            "10Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data"},
                "accessModes": ["ReadOnlyMany"]}}),
        );
        let cat = catalog(&p, &[reserved], &[]);
        let c = pvc("data", Some("local-storage"), "5Gi");
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0].contains("will stay Pending"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn a_volume_reserved_for_the_claim_serves_it_and_not_others() {
        let p = policy();
        let reserved = pv(
            "mine",
            "local-storage",
            "10Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}),
        );
        let cat = catalog(&p, &[reserved], &[]);
        let c = pvc("data", Some("local-storage"), "5Gi");
        assert!(
            decide(&cat, &p, Operation::Create, Object::Pvc(&c))
                .warnings
                .is_empty()
        );
        let other = pvc("other", Some("local-storage"), "5Gi");
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::Pvc(&other))
                .warnings
                .len(),
            1
        );
    }

    #[test]
    fn says_which_requirement_no_volume_meets() {
        let p = policy();
        let cat = catalog(&p, &[pv("big", "local-storage", "10Gi", json!({}))], &[]);
        let mut c = pvc("data", Some("local-storage"), "5Gi");
        c.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert!(
            d.warnings[0].ends_with("of class local-storage has volumeMode Block"),
            "{:?}",
            d.warnings
        );
        let mut c = pvc("data", Some("local-storage"), "5Gi");
        c.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert!(
            d.warnings[0].ends_with("serves the requested access modes"),
            "{:?}",
            d.warnings
        );
        let mut c = pvc("data", Some("local-storage"), "5Gi");
        c.spec.as_mut().unwrap().selector =
            Some(serde_json::from_value(json!({"matchLabels": {"disk": "ssd"}})).unwrap());
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert!(
            d.warnings[0].ends_with("matches spec.selector"),
            "{:?}",
            d.warnings
        );
        let c = pvc("data", Some(""), "5Gi");
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert_eq!(
            d.warnings,
            [
                r#"claim "data" will stay Pending: no Available PersistentVolume without a class has 5Gi"#
            ]
        );
    }

    #[test]
    fn dynamic_unknown_and_requested_volumes_are_not_judged() {
        let p = policy();
        let cat = catalog(&p, &[], &[]);
        for class in ["gp3", "mystery"] {
            let c = pvc("data", Some(class), "5Gi");
            assert_eq!(
                decide(&cat, &p, Operation::Create, Object::Pvc(&c)),
                Decision::default()
            );
        }
        let mut c = pvc("data", Some("local-storage"), "5Gi");
        c.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::Pvc(&c)),
            Decision::default()
        );
        let mut c = pvc("data", Some("local-storage"), "5Gi");
        c.status = Some(serde_json::from_value(json!({"phase": "Bound"})).unwrap());
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::Pvc(&c)),
            Decision::default()
        );
    }

    #[test]
    fn says_nothing_without_a_source_of_volumes() {
        let p = policy();
        let c = pvc("data", Some("local-storage"), "5Gi");
        assert_eq!(
            decide(&p.static_catalog(), &p, Operation::Create, Object::Pvc(&c)),
            Decision::default()
        );
    }

    #[test]
    fn names_the_statefulset_claims_that_would_wait() {
        let p = policy();
        let pvs = [
            pv("a", "local-storage", "5Gi", json!({})),
            pv("b", "local-storage", "8Gi", json!({})),
        ];
        let cat = catalog(&p, &pvs, &[]);
        let s = sts(3, "local-storage");
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert_eq!(
            d.warnings,
            [
                r#"StatefulSet "web": claim www-web-2 will stay Pending: no Available PersistentVolume of class local-storage has 5Gi (2 of 3 served)"#
            ]
        );
        let s = sts(6, "local-storage");
        let d = decide(&cat, &p, Operation::Update, Object::StatefulSet(&s));
        assert!(
            d.warnings[0]
                .contains("claims www-web-2, www-web-3, www-web-4 and 1 more will stay Pending"),
            "{:?}",
            d.warnings
        );
        assert!(d.warnings[0].ends_with("(2 of 6 served)"));
    }

    #[test]
    fn existing_and_reserved_claims_count_as_served() {
        let p = policy();
        let pvs = [
            pv("a", "local-storage", "5Gi", json!({})),
            pv(
                "r",
                "local-storage",
                "5Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "www-web-2"}}}),
            ),
        ];
        let existing = [pvc("www-web-0", Some("local-storage"), "5Gi")];
        let cat = catalog(&p, &pvs, &existing);
        let s = sts(3, "local-storage");
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::StatefulSet(&s)),
            Decision::default(),
            "web-0 exists, web-1 takes a, web-2 takes its reserved r"
        );
        // One volume is never counted for two claims.
        let cat = catalog(&p, &pvs[..1], &[]);
        let s = sts(2, "local-storage");
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert!(
            d.warnings[0].contains("claim www-web-1 will stay"),
            "{:?}",
            d.warnings
        );
        // Dynamic classes never.
        let s = sts(5, "gp3");
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::StatefulSet(&s)),
            Decision::default()
        );
    }

    #[test]
    fn says_when_it_judged_against_files() {
        let p = policy();
        let index = VolumeIndex {
            pvs: Arc::default(),
            claims: Arc::new(ClaimMap::new()),
            source: Source::Files,
        };
        let cat = p.static_catalog().with_volumes(index);
        let c = pvc("data", Some("local-storage"), "5Gi");
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert!(
            d.warnings[0].ends_with("has 5Gi (judged against the PersistentVolumes in the files)"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn on_files_without_storage_classes_a_claim_without_class_is_not_judged() {
        let p = policy();
        let files = |known| {
            let index = VolumeIndex::new(Arc::default(), Arc::new(ClaimMap::new()), Source::Files);
            p.catalog(&LiveState {
                classes_known: known,
                ..Default::default()
            })
            .with_volumes(index)
        };
        let no_class = pvc("data", None, "5Gi");
        let mut template = sts(2, "x");
        template
            .spec
            .as_mut()
            .unwrap()
            .volume_claim_templates
            .as_mut()
            .unwrap()[0]
            .spec
            .as_mut()
            .unwrap()
            .storage_class_name = None;
        // No StorageClass among the files: the cluster's default class would apply.
        let cat = files(ClassesKnown::Partly);
        for obj in [Object::Pvc(&no_class), Object::StatefulSet(&template)] {
            assert!(
                decide(&cat, &p, Operation::Create, obj).warnings.is_empty(),
                "{obj:?}"
            );
        }
        // `""` is static binding wherever it is written.
        let empty = pvc("data", Some(""), "5Gi");
        assert_eq!(
            decide(&cat, &p, Operation::Create, Object::Pvc(&empty))
                .warnings
                .len(),
            1
        );
        // The files show every class and none is default: no class is no class.
        let cat = files(ClassesKnown::Files);
        for obj in [Object::Pvc(&no_class), Object::StatefulSet(&template)] {
            assert_eq!(
                decide(&cat, &p, Operation::Create, obj).warnings.len(),
                1,
                "{obj:?}"
            );
        }
    }

    #[test]
    fn statefulset_claims_count_from_the_start_ordinal() {
        let p = policy();
        let mut s = sts(2, "local-storage");
        s.spec.as_mut().unwrap().ordinals =
            Some(serde_json::from_value(json!({"start": 3})).unwrap());
        // www-web-3 exists; one PV for www-web-4.
        let cat = catalog(
            &p,
            &[pv("a", "local-storage", "5Gi", json!({}))],
            &[pvc("www-web-3", Some("local-storage"), "5Gi")],
        );
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert_eq!(d, Decision::default(), "{:?}", d.warnings);
        // No PV: the waiting claim is www-web-4 (not www-web-0 or www-web-1).
        let cat = catalog(&p, &[], &[pvc("www-web-3", Some("local-storage"), "5Gi")]);
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert_eq!(
            d.warnings,
            [
                r#"StatefulSet "web": claim www-web-4 will stay Pending: no Available PersistentVolume of class local-storage has 5Gi (1 of 2 served)"#
            ]
        );
    }

    fn node(name: &str) -> (String, std::collections::BTreeMap<String, String>) {
        (
            name.to_owned(),
            [("kubernetes.io/hostname".to_owned(), name.to_owned())].into(),
        )
    }

    fn pinned_to(host: &str) -> Value {
        json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}}})
    }

    #[test]
    fn a_wffc_volume_pinned_to_no_existing_node_is_not_free() {
        let p = policy();
        let pvs = [pv("gone", "local-storage", "10Gi", pinned_to("node-9"))];
        let index = VolumeIndex::from_objects(&pvs, [], Source::Cluster);
        let with_nodes = |nodes: Option<Vec<_>>| {
            p.catalog(&LiveState {
                pvs: Some(index.pvs.clone()),
                claims: Some(index.claims.clone()),
                nodes: nodes.map(Arc::new),
                ..Default::default()
            })
        };
        let c = pvc("data", Some("local-storage"), "5Gi");
        let cat = with_nodes(Some(vec![node("node-1")]));
        let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
        assert_eq!(
            d.warnings,
            [concat!(
                r#"claim "data" will stay Pending: 1 Available PersistentVolume of class local-storage that fits "#,
                "has spec.nodeAffinity matching no existing node"
            )]
        );
        let s = sts(1, "local-storage");
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert!(
            d.warnings[0].contains("claim www-web-0 will stay Pending: 1 Available"),
            "{:?}",
            d.warnings
        );
        // The node exists, or nodes are not known: the volume counts.
        for cat in [with_nodes(Some(vec![node("node-9")])), with_nodes(None)] {
            let d = decide(&cat, &p, Operation::Create, Object::Pvc(&c));
            assert_eq!(d, Decision::default());
        }
    }

    #[test]
    fn a_class_without_a_storage_class_binds_the_volumes_of_that_name() {
        let p = policy();
        let pvs = [pv("m", "manual", "1Gi", json!({}))];
        let index = VolumeIndex::from_objects(&pvs, [], Source::Cluster);
        let cat = |known: ClassesKnown| {
            p.catalog(&LiveState {
                pvs: Some(index.pvs.clone()),
                claims: Some(index.claims.clone()),
                classes_known: known,
                ..Default::default()
            })
        };
        let big = pvc("data", Some("manual"), "5Gi");
        let d = decide(
            &cat(ClassesKnown::Cluster),
            &p,
            Operation::Create,
            Object::Pvc(&big),
        );
        assert_eq!(
            d.warnings,
            [
                r#"claim "data" will stay Pending: no Available PersistentVolume of class manual has 5Gi"#
            ]
        );
        let fits = pvc("data", Some("manual"), "1Gi");
        let d = decide(
            &cat(ClassesKnown::Cluster),
            &p,
            Operation::Create,
            Object::Pvc(&fits),
        );
        assert_eq!(d, Decision::default());
        // Classes not all known: the class may exist and provision.
        let d = decide(
            &cat(ClassesKnown::Partly),
            &p,
            Operation::Create,
            Object::Pvc(&big),
        );
        assert_eq!(d, Decision::default());
    }

    /// Past the ordinals judged, the warning counts only what was judged and says the rest
    /// was not (it said "0 of 10000 served" for 2,147,483,647 replicas).
    #[test]
    fn a_huge_statefulset_is_counted_truthfully() {
        let p = policy();
        let cat = catalog(&p, &[], &[]);
        let s = sts(i32::MAX, "local-storage");
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0].ends_with(
                "(0 of the first 10000 of 2147483647 replicas served; the rest not judged)"
            ),
            "{}",
            d.warnings[0]
        );
    }

    /// The cap on ordinals holds over all templates: the second template of a StatefulSet
    /// whose first used every ordinal is not judged (and the budget says so).
    #[test]
    fn the_ordinal_cap_is_shared_by_every_template() {
        let p = policy();
        let cat = catalog(&p, &[], &[]);
        let mut s = sts(10_000, "local-storage");
        let tpls = s
            .spec
            .as_mut()
            .unwrap()
            .volume_claim_templates
            .as_mut()
            .unwrap();
        let mut second = tpls[0].clone();
        second.metadata.name = Some("logs".into());
        tpls.push(second);
        let req = testing::create(Object::StatefulSet(&s))
            .subject("apps", "StatefulSet", "web")
            .request;
        let budget = crate::policy::Budget::default();
        let d = p.decide_within(Endpoint::Validate, &cat, &req, &budget);
        let pending: Vec<&String> = d
            .warnings
            .iter()
            .filter(|w| w.contains("will stay Pending"))
            .collect();
        assert_eq!(pending.len(), 1, "{:?}", d.warnings);
        assert!(pending[0].contains("www-web-0"), "{pending:?}");
        assert!(
            d.unjudged.iter().any(|u| u.contains("ordinals")),
            "{:?}",
            d.unjudged
        );
        assert!(d.warnings[0].starts_with("not judged"), "{:?}", d.warnings);
    }

    /// The work of a StatefulSet's judgement follows the object, not the cluster: with 3,000
    /// free volumes that fit (and 3,000 too small) a StatefulSet of 3 replicas is judged within
    /// 100 units of work, served or waiting, nodes known or not (the walk of every PV spent
    /// twice the PVs).
    #[test]
    fn a_statefulset_is_judged_without_walking_the_volumes() {
        let p = policy();
        let pvs: Vec<PersistentVolume> = (0..6_000)
            .map(|i| {
                let size = if i % 2 == 0 { "10Gi" } else { "1Gi" };
                pv(
                    &format!("pv-{i:05}"),
                    "local-storage",
                    size,
                    pinned_to("node-1"),
                )
            })
            .collect();
        let index = VolumeIndex::from_objects(&pvs, [], Source::Cluster);
        for nodes in [None, Some(vec![node("node-1")])] {
            let cat = p.catalog(&LiveState {
                pvs: Some(index.pvs.clone()),
                claims: Some(index.claims.clone()),
                nodes: nodes.map(Arc::new),
                ..Default::default()
            });
            for (size, waits) in [("5Gi", false), ("20Gi", true)] {
                let mut s = sts(3, "local-storage");
                s.spec
                    .as_mut()
                    .unwrap()
                    .volume_claim_templates
                    .as_mut()
                    .unwrap()[0]
                    .spec
                    .as_mut()
                    .unwrap()
                    .resources
                    .as_mut()
                    .unwrap()
                    .requests = Some([("storage".to_owned(), Quantity(size.to_owned()))].into());
                let req = testing::create(Object::StatefulSet(&s))
                    .subject("apps", "StatefulSet", "web")
                    .request;
                let budget = crate::policy::Budget::with_units(100, None);
                let d = p.decide_within(Endpoint::Validate, &cat, &req, &budget);
                assert!(!budget.exhausted(), "{size}: {:?}", d.warnings);
                let pending: Vec<&String> = d
                    .warnings
                    .iter()
                    .filter(|w| w.contains("will stay Pending"))
                    .collect();
                assert_eq!(
                    pending.len(),
                    usize::from(waits),
                    "{size}: {:?}",
                    d.warnings
                );
            }
        }
    }

    /// Claims that exist, volumes reserved for some ordinals and a start ordinal: the waiting
    /// claims are the ones after the free volumes run out, skipping the ordinals served.
    #[test]
    fn waiting_claims_are_named_past_the_ordinals_served() {
        let p = policy();
        let reserved = |name: &str, claim: &str| {
            pv(
                name,
                "local-storage",
                "5Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": claim}}}),
            )
        };
        let pvs = [
            pv("free", "local-storage", "5Gi", json!({})),
            reserved("r3", "www-web-3"),
            reserved("r6", "www-web-6"),
            // Reserved for an ordinal past the StatefulSet's, and for a name it never makes.
            reserved("r9", "www-web-9"),
            reserved("r01", "www-web-02"),
        ];
        let existing = [
            pvc("www-web-4", Some("local-storage"), "5Gi"),
            pvc("www-web-04", Some("local-storage"), "5Gi"),
        ];
        let cat = catalog(&p, &pvs, &existing);
        let mut s = sts(7, "local-storage");
        s.spec.as_mut().unwrap().ordinals =
            Some(serde_json::from_value(json!({"start": 2})).unwrap());
        // 2..9: 3 and 6 reserved, 4 exists, 2 takes the free one; 5, 7, 8 wait.
        let d = decide(&cat, &p, Operation::Create, Object::StatefulSet(&s));
        assert_eq!(
            d.warnings,
            [concat!(
                r#"StatefulSet "web": claims www-web-5, www-web-7, www-web-8 will stay Pending: "#,
                "no Available PersistentVolume of class local-storage has 5Gi (4 of 7 served)"
            )]
        );
    }

    #[test]
    fn an_ordinal_is_read_as_the_controller_writes_it() {
        assert_eq!(ordinal("0"), Some(0));
        assert_eq!(ordinal("12"), Some(12));
        for not in ["", "01", "+1", "-1", "1a", "99999999999"] {
            assert_eq!(ordinal(not), None, "{not:?}");
        }
        assert_eq!(nth_untaken(2, &[], 0), 2);
        assert_eq!(nth_untaken(2, &[2, 3, 5], 0), 4);
        assert_eq!(nth_untaken(2, &[2, 3, 5], 1), 6);
        assert_eq!(nth_untaken(2, &[3, 4], 1), 5);
    }
}
