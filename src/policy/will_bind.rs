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

use super::catalog::Catalog;
use super::config::{ConfigError, Section};
use super::decision::{Action, Decision, Finding};
use super::field::go_quote;
use super::modes::Mode;
use super::quantity;
use super::rule::{Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId};
use super::storage;
use super::volumes::{self, Misfit, Modes, PvInfo, Source, VolumeIndex, Wants};
use crate::kinds::Operation;

pub const META: Meta = Meta {
    key: "willBind",
    annotation: "will-bind",
    summary: "warns when no PersistentVolume can bind a claim (or a StatefulSet's claims) on a static class",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        operations: &[Operation::Create, Operation::Update],
        judges: &[Judges::Claims, Judges::ClaimTemplates],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry {
    meta: &META,
    compile,
};

/// The provisioner of classes whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Ordinals judged per StatefulSet at most (a bound on the work of one request).
const MAX_ORDINALS: i32 = 10_000;

#[derive(Debug)]
struct WillBind;

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    section.mode_only()?;
    Ok(Box::new(WillBind))
}

impl Rule for WillBind {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Mode, d: &mut Decision) {
        let Some(index) = cx.catalog.volumes() else {
            return;
        };
        let namespace = req.namespace.unwrap_or_default();
        let found = match req.object {
            Some(Object::Pvc(pvc)) if req.operation == Operation::Create => {
                claim_waits(cx.catalog, index, namespace, pvc)
                    .into_iter()
                    .collect()
            }
            Some(Object::StatefulSet(sts)) => statefulset_waits(cx, index, namespace, sts),
            _ => Vec::new(),
        };
        for (class, text) in found {
            record(d, ID, mode, class, text, index.source);
        }
    }
}

/// Adds one warning and its finding; the source of PVs is named when it is not the cluster.
pub(crate) fn record(
    d: &mut Decision,
    rule: RuleId,
    mode: Mode,
    class: Option<String>,
    text: String,
    source: Source,
) {
    let text = match source {
        Source::Cluster => text,
        Source::Files => format!("{text} (judged against the PersistentVolumes in the files)"),
    };
    d.warn(&text);
    d.annotate(rule, text.clone());
    d.findings.push(Finding {
        rule,
        action: if mode == Mode::Audit {
            Action::Audited
        } else {
            Action::Warned
        },
        storage_class: class,
        message: text,
    });
}

/// Whether claims of this class bind only to PVs made by hand: `""`, or a known class of
/// `kubernetes.io/no-provisioner`. Unknown classes are not judged.
fn is_static(catalog: &Catalog, class: &str) -> bool {
    class.is_empty()
        || catalog
            .class(class)
            .is_some_and(|c| c.provisioner == NO_PROVISIONER)
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

/// Whether a pre-bound volume takes the claim (`FindMatchingVolume` checks size, volume mode
/// and deletion before the claimRef).
fn prebound_fits(pv: &PvInfo, w: &Wants<'_>) -> bool {
    w.is_bound_by(pv) && !pv.deleting && pv.block == w.block && pv.capacity.unwrap_or(0) >= w.size
}

/// The warning for a claim no PV can bind, with its class.
fn claim_waits(
    catalog: &Catalog,
    index: &VolumeIndex,
    namespace: &str,
    pvc: &PersistentVolumeClaim,
) -> Option<(Option<String>, String)> {
    let spec = pvc.spec.as_ref()?;
    // A requested volume is the `volumeName` rule's business; a claim already bound (as
    // `audit` sees live or exported claims) is past binding.
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    {
        return None;
    }
    // At /validate the DefaultStorageClass plugin has run: no class now means no class.
    let class = volumes::claim_class(pvc).unwrap_or_default();
    if !is_static(catalog, &class) {
        return None;
    }
    let name = pvc.metadata.name.as_deref().unwrap_or_default();
    // Known and bound (`audit` reviews existing claims without their status).
    if index.claim(namespace, name).is_some_and(|c| c.is_bound()) {
        return None;
    }
    let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    let (w, size_text) = wants_of(namespace, name, uid, &class, spec)?;
    // Indexed look-ups: the volumes reserved for this claim, then the smallest free one that fits.
    if index
        .pvs
        .claimed(namespace, name)
        .any(|(_, pv)| prebound_fits(pv, &w))
        || index.pvs.fitting(&w).next().is_some()
    {
        return None;
    }
    let why = why_none(index.pvs.closest_misfit(&w, |_| false), &w, &size_text);
    Some((
        Some(class.clone()).filter(|c| !c.is_empty()),
        format!("claim {} will stay Pending: {why}", go_quote(name)),
    ))
}

/// The warnings for a StatefulSet's claims that no PV can bind: one per template whose class
/// is static and some of whose claims would wait.
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
    let replicas = spec.replicas.unwrap_or(1).clamp(0, MAX_ORDINALS);
    // PVs already promised to one claim of this StatefulSet: never counted twice.
    let mut used: HashSet<&str> = HashSet::new();
    for tpl in spec.volume_claim_templates.iter().flatten() {
        let Some(tspec) = tpl.spec.as_ref() else {
            continue;
        };
        let tpl_name = tpl.metadata.name.as_deref().unwrap_or_default();
        // Claims made from a template get the default class when the template names none.
        let class = volumes::claim_class(tpl).unwrap_or_else(|| {
            storage::choose(cx.settings, cx.catalog, Some(namespace), Some(tspec))
                .map(|c| c.class)
                .unwrap_or_default()
        });
        if !is_static(cx.catalog, &class) {
            continue;
        }
        let Some((probe, size_text)) = wants_of(namespace, "", "", &class, tspec) else {
            continue;
        };
        // Ordinals whose claim exists (served whatever happens), and volumes pre-bound by
        // name to a claim of this template that is yet to exist: both from the indexes, by
        // the claims' common prefix, so the work follows the claims there are, not `replicas`.
        let prefix = format!("{tpl_name}-{sts_name}-");
        let existing: HashSet<i32> = index
            .claims_with_prefix(namespace, &prefix)
            .filter_map(|(claim, _)| ordinal(&claim[prefix.len()..], replicas))
            .collect();
        let mut prebound: BTreeMap<i32, &str> = BTreeMap::new();
        for (claim, n, pv) in index.pvs.claimed_with_prefix(namespace, &prefix) {
            let Some(i) = ordinal(&claim[prefix.len()..], replicas) else {
                continue;
            };
            let w = Wants {
                name: claim,
                ..probe.clone()
            };
            if !existing.contains(&i)
                && pv.claim_ref.as_ref().is_some_and(|r| r.uid.is_empty())
                && prebound_fits(pv, &w)
                && !used.contains(n)
            {
                prebound.entry(i).or_insert(n);
            }
        }
        used.extend(prebound.values().copied());
        // The other ordinals take free volumes that fit, smallest first (the controller's
        // choice), in ordinal order, never one promised to an earlier template.
        let takers = replicas as usize - existing.len() - prebound.len();
        let taken_before = used
            .iter()
            .filter(|n| {
                index
                    .pvs
                    .get(n)
                    .is_some_and(|pv| volumes::misfit(pv, &probe).is_none())
            })
            .count();
        let free = index
            .pvs
            .count_fitting(&probe, takers + taken_before)
            .saturating_sub(taken_before)
            .min(takers);
        if static_after(cx, namespace, spec, tpl) {
            // A later template may draw from the same volumes: promise these ones.
            let mut promised = Vec::with_capacity(free);
            for (n, _) in index.pvs.fitting(&probe) {
                if promised.len() == free {
                    break;
                }
                if !used.contains(n) {
                    promised.push(n);
                }
            }
            used.extend(promised);
        }
        if free == takers {
            continue;
        }
        // The takers after the first `free` wait: name the first three, count the rest.
        let waiting_count = takers - free;
        let mut skipped = 0;
        let waiting: Vec<String> = (0..replicas)
            .filter(|i| !existing.contains(i) && !prebound.contains_key(i))
            .filter(|_| {
                skipped += 1;
                skipped > free
            })
            .take(3)
            .map(|i| format!("{prefix}{i}"))
            .collect();
        let why = why_none(
            index.pvs.closest_misfit(&probe, |n| used.contains(n)),
            &probe,
            &size_text,
        );
        let shown: Vec<&str> = waiting.iter().map(String::as_str).collect();
        let names = if waiting_count > shown.len() {
            format!(
                "{} and {} more",
                shown.join(", "),
                waiting_count - shown.len()
            )
        } else {
            shown.join(", ")
        };
        let noun = if waiting_count == 1 {
            "claim"
        } else {
            "claims"
        };
        out.push((
            Some(class.clone()).filter(|c| !c.is_empty()),
            format!(
                "StatefulSet {}: {noun} {names} will stay Pending: {why} ({} of {replicas} served)",
                go_quote(sts_name),
                replicas as usize - waiting_count
            ),
        ));
    }
    out
}

/// The ordinal a claim name's suffix spells as `format!("{i}")` would, below `replicas`.
fn ordinal(suffix: &str, replicas: i32) -> Option<i32> {
    let canonical = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
        && (suffix == "0" || !suffix.starts_with('0'));
    let i: i32 = suffix.parse().ok().filter(|_| canonical)?;
    (i < replicas).then_some(i)
}

/// Whether a template after `tpl` is judged too (a static class), so that volumes promised to
/// `tpl` must be set aside for it.
fn static_after(
    cx: &Context<'_>,
    namespace: &str,
    spec: &k8s_openapi::api::apps::v1::StatefulSetSpec,
    tpl: &PersistentVolumeClaim,
) -> bool {
    let templates = spec.volume_claim_templates.as_deref().unwrap_or_default();
    let after = templates
        .iter()
        .position(|t| std::ptr::eq(t, tpl))
        .map_or(&[][..], |i| &templates[i + 1..]);
    after.iter().any(|t| {
        let class = volumes::claim_class(t).unwrap_or_else(|| {
            storage::choose(cx.settings, cx.catalog, Some(namespace), t.spec.as_ref())
                .map(|c| c.class)
                .unwrap_or_default()
        });
        t.spec.is_some() && is_static(cx.catalog, &class)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::catalog::LiveState;
    use crate::policy::volumes::{ClaimMap, Source, VolumeIndex};
    use crate::policy::{Policy, Subject};
    use k8s_openapi::api::core::v1::PersistentVolume;
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
        let req = Request {
            operation: op,
            namespace: Some("default"),
            username: "alice",
            subject: Subject {
                group: "",
                kind: "PersistentVolumeClaim",
                name: "data",
            },
            object: Some(obj),
            old_object: None,
        };
        let mut d = Decision::default();
        WillBind.check(
            &p.context(Endpoint::Validate, cat),
            &req,
            Mode::Enforce,
            &mut d,
        );
        d
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
        // Only on CREATE.
        let cat = catalog(&p, &[], &[]);
        assert_eq!(
            decide(&cat, &p, Operation::Update, Object::Pvc(&c)),
            Decision::default()
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
}
