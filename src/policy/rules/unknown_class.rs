//! Rule `unknownClass`: a claim or claim template naming a StorageClass that does not exist gets a
//! warning naming the class and the closest existing names.
//!
//! Such a claim is accepted and stays Pending forever with a `ProvisioningFailed` event nobody
//! reads (`storageclass.storage.k8s.io "local-storag" not found`); a typo is the usual cause.
//! Never a denial: a class applied in the same `kubectl apply` may arrive a moment after the
//! claim. It only speaks when the catalog holds every class there is ([`ClassesKnown`]): in
//! cluster mode once StorageClasses are listed, and in `audit` on files that contain
//! StorageClasses. Without a cluster (`--no-cluster`, `review`) it stays silent. `""` asks for
//! static binding (no class) and is never warned, nor is a class name that known PVs carry:
//! the PV controller treats a class without a StorageClass object as Immediate and binds
//! such a claim to those PVs (`pv_controller.go` `syncUnboundClaim`, `FindMatchingVolume`).

use std::collections::{HashMap, HashSet};

use crate::kinds::Operation;
use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::{CREATE, CREATE_UPDATE};
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, PodFilter, Request, Rule, RuleId,
};
use crate::policy::engine::sites::{ClaimSite, claim_sites};
use crate::policy::model::catalog::{Catalog, ClassesKnown};
use crate::policy::model::field::{Path, go_quote};
use crate::policy::model::limits::MAX_NAMES_JUDGED;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::storage::BETA_CLASS_ANNOTATION;

pub const META: Meta = Meta {
    key: "unknownClass",
    annotation: "unknown-class",
    summary: "a claim or template naming a StorageClass that does not exist is warned about, with the closest names (never denied)",
    denies: "never denies",
    warns: "a class neither the cluster nor the policy has, only when every class is known and no known PV carries that class name",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[
            // A claim's class is immutable: only its creation can name a new one.
            Judges::Claims.on(CREATE),
            Judges::ClaimTemplates.on(CREATE_UPDATE),
            Judges::PodSpecs(PodFilter::EphemeralVolumes).on(CREATE_UPDATE),
        ],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<UnknownClass>(&META);

/// How many close names a warning lists.
const MAX_SUGGESTIONS: usize = 3;

#[derive(Debug, Default)]
struct UnknownClass;

impl Rule for UnknownClass {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        run(cx, req, mode, d);
    }
}

/// A class named by a claim or a claim template, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub class: String,
    pub field: Path,
    /// A template: the claims it makes (not the object itself) stay Pending.
    pub template: bool,
}

/// The class a claim site names itself (not a default): `spec.storageClassName`, else the beta
/// annotation, as the PV controller reads them. `""` names none.
fn named(site: &ClaimSite<'_>) -> Option<Named> {
    let (class, field) = if let Some(c) = site.spec.and_then(|s| s.storage_class_name.as_deref()) {
        (c, site.spec_path().child("storageClassName"))
    } else if let Some(c) = site
        .meta
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
    {
        (
            c.as_str(),
            site.at
                .child("metadata")
                .child("annotations")
                .key(BETA_CLASS_ANNOTATION),
        )
    } else {
        return None;
    };
    (!class.is_empty()).then(|| Named {
        class: class.to_owned(),
        field,
        template: site.is_template(),
    })
}

/// Every class an object names, in field order (PVs are not judged: a PV's class is only a
/// label for binding, no provisioner ever reads it).
fn classes_named(sites: &[ClaimSite<'_>]) -> Vec<Named> {
    sites.iter().filter_map(named).collect()
}

/// Levenshtein distance over characters (two rows), or `None` when it exceeds `limit`: only a
/// band of `2 * limit + 1` cells per row is computed, and the search stops once a whole row is
/// past the limit, so one comparison costs O(limit x length), not O(length^2).
fn distance_within(a: &[char], b: &[char], limit: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    const FAR: usize = usize::MAX / 2;
    let mut prev: Vec<usize> = (0..=b.len())
        .map(|j| if j <= limit { j } else { FAR })
        .collect();
    let mut cur = vec![FAR; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        let lo = (i + 1).saturating_sub(limit);
        let hi = (i + 1 + limit).min(b.len());
        cur.fill(FAR);
        if lo == 0 {
            cur[0] = i + 1;
        }
        let mut best = cur[0];
        for j in lo.max(1)..=hi {
            let substitute = prev[j - 1] + usize::from(*ca != b[j - 1]);
            cur[j] = substitute.min(prev[j] + 1).min(cur[j - 1] + 1);
            best = best.min(cur[j]);
        }
        if best > limit {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Some(prev[b.len()]).filter(|d| *d <= limit)
}

/// The known names closest to `name` (at most [`MAX_SUGGESTIONS`], nearest first, then by name):
/// within a third of its length in edits (at least 2), case ignored. Computed only on the warning
/// path, never for a class that exists; `spend` is asked before each comparison (its cost in
/// character pairs) and stops the search when it says no.
pub fn closest<'c>(catalog: &'c Catalog, name: &str, spend: &dyn Fn(u64) -> bool) -> Vec<&'c str> {
    let wanted: Vec<char> = name.to_lowercase().chars().collect();
    let len = wanted.len();
    let limit = (len / 3).max(2);
    let mut near: Vec<(usize, &str)> = Vec::new();
    for n in catalog.names() {
        // The length difference is a lower bound of the distance: most names cost one compare.
        let chars = n.chars().count();
        if chars.abs_diff(len) > limit {
            continue;
        }
        if !spend(((2 * limit + 1) * len.max(1)) as u64) {
            break;
        }
        let candidate: Vec<char> = n.to_lowercase().chars().collect();
        if let Some(d) = distance_within(&wanted, &candidate, limit) {
            near.push((d, n.as_str()));
        }
    }
    near.sort_unstable();
    near.into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, n)| n)
        .collect()
}

/// A class name as messages show it: quoted, cut to [`SHOWN_NAME_CHARS`] characters.
fn shown_name(name: &str) -> String {
    if name.chars().count() <= SHOWN_NAME_CHARS {
        go_quote(name)
    } else {
        let cut: String = name.chars().take(SHOWN_NAME_CHARS).collect();
        format!("{}...", go_quote(&cut))
    }
}

/// Characters of a class name a message shows at most (names of up to 253 are valid).
const SHOWN_NAME_CHARS: usize = 63;

/// The warning for one class that does not exist. The name is cut to [`SHOWN_NAME_CHARS`], so
/// that "not found" stays within the API server's 256-character cut of a warning whatever the
/// name's length (field paths are at most about 110 characters); what would work comes last. `near` is `None`
/// when the name was not compared (past [`MAX_NAMES_JUDGED`] or the work budget).
fn message(catalog: &Catalog, n: &Named, near: Option<Vec<&str>>) -> String {
    let scope = match catalog.classes_known() {
        ClassesKnown::Files => " in the audited files or the policy",
        ClassesKnown::Cluster | ClassesKnown::Partly => "",
    };
    let who = if n.template {
        "claims from this template stay"
    } else {
        "the claim stays"
    };
    let hint = match near {
        Some(near) if !near.is_empty() => format!("; closest: {}", near.join(", ")),
        _ if catalog.is_empty() => "; no StorageClass exists".to_owned(),
        Some(_) => "; no StorageClass has a close name".to_owned(),
        None => String::new(),
    };
    // The PV controller treats a class with no StorageClass object as Immediate and binds
    // Available PVs of that class name (`IsDelayBindingMode` finds no class;
    // `FindMatchingVolume` compares names), so a PV of that class ends the wait as well.
    format!(
        "{}: StorageClass {} not found{scope}: {who} Pending until it or a PersistentVolume of that class \
         exists{hint}",
        n.field,
        shown_name(&n.class)
    )
}

/// Whether PVs of this class name are known: claims naming a class that has no StorageClass
/// bind to them (the docs' `storageClassName: manual`), so the name is no typo.
fn names_static_volumes(catalog: &Catalog, class: &str) -> bool {
    catalog
        .volumes()
        .is_some_and(|i| i.class_volumes(class).total > 0)
}

pub(crate) fn run(cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
    let catalog = cx.catalog;
    if catalog.classes_known() == ClassesKnown::Partly {
        return;
    }
    let Some(object) = req.object.as_ref() else {
        return;
    };
    let mut found = classes_named(&cx.claim_sites(ID, object));
    found.retain(|n| catalog.class(&n.class).is_none() && !names_static_volumes(catalog, &n.class));
    // On UPDATE, a class the old object already named was warned about when it was applied.
    if req.operation == Operation::Update
        && let Some(old) = req.old_object.as_ref()
    {
        let before: HashSet<String> = classes_named(&claim_sites(old).0)
            .into_iter()
            .map(|n| n.class)
            .collect();
        found.retain(|n| !before.contains(&n.class));
    }
    // Each distinct name is compared with the classes once, the first MAX_NAMES_JUDGED only.
    let mut judged: HashMap<&str, Option<Vec<&str>>> = HashMap::new();
    let spend = |units| cx.spend(units);
    for n in &found {
        let next = judged.len();
        let near = judged
            .entry(n.class.as_str())
            .or_insert_with(|| {
                if next < MAX_NAMES_JUDGED && cx.spend(1) {
                    Some(closest(catalog, &n.class, &spend))
                } else {
                    cx.skip(format!(
                        "unknownClass: no close names sought past the first {MAX_NAMES_JUDGED} unknown classes"
                    ));
                    None
                }
            })
            .clone();
        let msg = message(catalog, n, near);
        let note = format!("not found: {}", shown_name(&n.class));
        d.warning_noted(ID, Some(n.class.clone()), msg, note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::catalog::{LiveClass, LiveState};
    use crate::policy::decision::Action;
    use crate::policy::engine::request::Object;
    use crate::policy::model::limits::MAX_VOLUMES;
    use crate::policy::testing::{self, messages_of, update};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use serde_json::json;

    const POLICY: &str = r#"
storageClasses:
  - {name: standard, provisioner: ebs.csi.aws.com, default: true}
  - {name: policy-only, provisioner: nfs.csi.k8s.io}
"#;

    fn live(names: &[&str]) -> LiveState {
        LiveState {
            classes: names
                .iter()
                .map(|n| LiveClass {
                    name: (*n).to_owned(),
                    provisioner: "rancher.io/local-path".to_owned(),
                    ..Default::default()
                })
                .collect(),
            classes_known: ClassesKnown::Cluster,
            ..Default::default()
        }
    }

    fn cluster() -> (Policy, Catalog) {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let cat = p.catalog(&live(&["local-storage", "local-path", "nfs-client"]));
        (p, cat)
    }

    fn pvc(class: Option<&str>) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"]});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": spec})).unwrap()
    }

    fn decide(
        cat: &Catalog,
        op: Operation,
        obj: Object<'_>,
        old: Option<Object<'_>>,
        mode: Mode,
    ) -> Decision {
        // The rule reads only the catalog.
        let p = testing::policy("");
        testing::create(obj).operation(op).old(old).check(
            &p,
            cat,
            ID,
            Endpoint::Validate,
            mode.acting().unwrap(),
        )
    }

    fn create(cat: &Catalog, c: &PersistentVolumeClaim) -> Decision {
        decide(cat, Operation::Create, Object::Pvc(c), None, Mode::Enforce)
    }

    #[test]
    fn warns_about_a_typo_with_the_closest_names() {
        let (_, cat) = cluster();
        let d = create(&cat, &pvc(Some("local-storag")));
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                r#"spec.storageClassName: StorageClass "local-storag" not found: the claim stays Pending until it or a PersistentVolume of that class exists; closest: local-storage"#
            ]
        );
        assert_eq!(
            d.audit_annotations["unknown-class"],
            r#"not found: "local-storag""#
        );
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(d.findings[0].storage_class.as_deref(), Some("local-storag"));
    }

    #[test]
    fn knows_classes_of_the_cluster_and_of_the_policy() {
        let (_, cat) = cluster();
        for class in ["local-storage", "policy-only", "standard"] {
            assert_eq!(
                create(&cat, &pvc(Some(class))),
                Decision::default(),
                "{class}"
            );
        }
    }

    #[test]
    fn never_warns_about_static_binding_or_no_class() {
        let (_, cat) = cluster();
        assert_eq!(create(&cat, &pvc(Some(""))), Decision::default());
        assert_eq!(create(&cat, &pvc(None)), Decision::default());
    }

    #[test]
    fn stays_silent_when_not_every_class_is_known() {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let mut partial = live(&["local-storage"]);
        partial.classes_known = ClassesKnown::Partly;
        for cat in [p.static_catalog(), p.catalog(&partial)] {
            assert_eq!(
                create(&cat, &pvc(Some("local-storag"))),
                Decision::default()
            );
        }
    }

    #[test]
    fn says_when_it_knows_the_classes_from_files() {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let mut files = live(&["fast"]);
        files.classes_known = ClassesKnown::Files;
        let d = create(&p.catalog(&files), &pvc(Some("fats")));
        assert_eq!(
            d.warnings,
            [
                r#"spec.storageClassName: StorageClass "fats" not found in the audited files or the policy: the claim stays Pending until it or a PersistentVolume of that class exists; closest: fast"#
            ]
        );
    }

    #[test]
    fn far_names_are_not_suggested() {
        let (_, cat) = cluster();
        let d = create(&cat, &pvc(Some("premium-rwo")));
        assert!(
            d.warnings[0].ends_with("; no StorageClass has a close name"),
            "{:?}",
            d.warnings
        );
        let empty = Policy::parse("", None, false).unwrap().catalog(&live(&[]));
        let d = create(&empty, &pvc(Some("gp3")));
        assert!(
            d.warnings[0].ends_with("; no StorageClass exists"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn suggestions_are_at_most_three_nearest_first_case_ignored() {
        let p = Policy::parse("", None, false).unwrap();
        let cat = p.catalog(&live(&["fast-a", "fast-b", "fast-c", "Fast", "fastest"]));
        let any = |_| true;
        assert_eq!(closest(&cat, "fast", &any), ["Fast", "fast-a", "fast-b"]);
        assert_eq!(
            closest(&cat, "FAST-C", &any),
            ["fast-c", "fast-a", "fast-b"]
        );
        assert!(closest(&cat, "slow", &any).is_empty());
        // A spent budget stops the search.
        assert!(closest(&cat, "fast", &|_| false).is_empty());
    }

    fn distance(a: &str, b: &str, limit: usize) -> Option<usize> {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        distance_within(&a, &b, limit)
    }

    #[test]
    fn distance_counts_edits_within_the_limit() {
        assert_eq!(distance("", "", 2), Some(0));
        assert_eq!(distance("abc", "", 3), Some(3));
        assert_eq!(distance("", "abc", 3), Some(3));
        assert_eq!(distance("kitten", "sitting", 3), Some(3));
        assert_eq!(distance("local-storag", "local-storage", 2), Some(1));
        assert_eq!(distance("flaw", "lawn", 2), Some(2));
        assert_eq!(distance("gp3", "gp2", 2), Some(1));
        assert_eq!(distance("ab", "ba", 2), Some(2));
        // Past the limit: none, by the length difference or by the band.
        assert_eq!(distance("kitten", "sitting", 2), None);
        assert_eq!(distance("abc", "", 2), None);
        assert_eq!(distance("abcdef", "uvwxyz", 3), None);
    }

    /// The band gives the full distance whenever it is within the limit (checked against the
    /// whole matrix on every pair of short strings over a small alphabet).
    #[test]
    fn banded_distance_equals_the_full_one_within_the_limit() {
        fn full(a: &[char], b: &[char]) -> usize {
            let mut prev: Vec<usize> = (0..=b.len()).collect();
            for (i, ca) in a.iter().enumerate() {
                let mut cur = vec![i + 1; b.len() + 1];
                for (j, cb) in b.iter().enumerate() {
                    cur[j + 1] = (prev[j] + usize::from(ca != cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1);
                }
                prev = cur;
            }
            prev[b.len()]
        }
        let words: Vec<Vec<char>> = (0..3u32.pow(4))
            .flat_map(|n| {
                (0..=4).map(move |len| {
                    (0..len)
                        .map(|k| ['a', 'b', 'c'][(n / 3u32.pow(k)) as usize % 3])
                        .collect()
                })
            })
            .collect();
        for a in &words {
            for b in &words {
                let d = full(a, b);
                for limit in 0..=4 {
                    let want = (d <= limit).then_some(d);
                    assert_eq!(distance_within(a, b, limit), want, "{a:?} {b:?} {limit}");
                }
            }
        }
    }

    #[test]
    fn beta_annotation_names_the_class_when_the_spec_does_not() {
        let (_, cat) = cluster();
        let c: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "annotations": {BETA_CLASS_ANNOTATION: "nfs-clinet"}},
            "spec": {"accessModes": ["ReadWriteOnce"]}}))
        .unwrap();
        let d = create(&cat, &c);
        assert!(
            d.warnings[0].starts_with(
                r#"metadata.annotations[volume.beta.kubernetes.io/storage-class]: StorageClass "nfs-clinet" not found"#
            ),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn templates_are_warned_with_their_paths() {
        let (_, cat) = cluster();
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "selector": {}, "serviceName": "x",
            "template": {"spec": {"containers": [], "volumes": [
                {"name": "s", "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "scratch"}}}}]}},
            "volumeClaimTemplates": [
                {"metadata": {"name": "ok"}, "spec": {"storageClassName": "local-path"}},
                {"metadata": {"name": "bad"}, "spec": {"storageClassName": "local-pth"}}
            ]}}))
        .unwrap();
        let d = decide(
            &cat,
            Operation::Create,
            Object::StatefulSet(&sts),
            None,
            Mode::Audit,
        );
        assert_eq!(
            d.warnings,
            [
                r#"spec.volumeClaimTemplates[1].spec.storageClassName: StorageClass "local-pth" not found: claims from this template stay Pending until it or a PersistentVolume of that class exists; closest: local-path"#,
                r#"spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName: StorageClass "scratch" not found: claims from this template stay Pending until it or a PersistentVolume of that class exists; no StorageClass has a close name"#,
            ]
        );
        assert!(d.warnings.iter().all(|w| w.chars().count() <= 256));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "volumes": [{"name": "s", "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "nfs-clint"}}}}]}}))
        .unwrap();
        let d = decide(
            &cat,
            Operation::Create,
            Object::PodSpec {
                spec: pod.spec.as_ref(),
                path: "spec",
                runs: Default::default(),
            },
            None,
            Mode::Enforce,
        );
        assert!(
            d.warnings[0].starts_with(
                r#"spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName: StorageClass "nfs-clint""#
            ),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn update_warns_only_about_newly_named_classes() {
        let (_, cat) = cluster();
        let pod = |classes: &[&str]| -> Pod {
            let volumes: Vec<_> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"name": format!("v{i}"), "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": c}}}}))
                .collect();
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": volumes}}),
            )
            .unwrap()
        };
        let (old, new) = (pod(&["typo-a"]), pod(&["typo-a", "typo-b"]));
        fn obj(p: &Pod) -> Object<'_> {
            Object::PodSpec {
                spec: p.spec.as_ref(),
                path: "spec",
                runs: Default::default(),
            }
        }
        let d = decide(
            &cat,
            Operation::Update,
            obj(&new),
            Some(obj(&old)),
            Mode::Enforce,
        );
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(d.warnings[0].contains(r#""typo-b""#));
        // A claim's class cannot change on UPDATE: never warned again (the engine does not call
        // the rule on a claim's UPDATE: its Meta says so).
        let c = pvc(Some("local-storag"));
        let before = pvc(None);
        let req = update(Object::Pvc(&c), Object::Pvc(&before)).request;
        assert!(!META.at(Endpoint::Validate).unwrap().applies(&req));
    }

    #[test]
    fn the_registry_runs_it_on_validate() {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let cat = p.catalog(&live(&["local-storage"]));
        let c = pvc(Some("local-storag"));
        let req = testing::create(Object::Pvc(&c))
            .subject("", "PersistentVolumeClaim", "data")
            .request;
        let d = crate::policy::validate(&p, &cat, &req);
        assert!(d.allowed());
        assert_eq!(d.findings.len(), 1, "{d:?}");
        assert_eq!(d.findings[0].rule, ID);
        assert!(d.warnings[0].ends_with("closest: local-storage"), "{d:?}");
    }

    #[test]
    fn config_takes_only_a_mode() {
        assert!(Policy::parse("rules:\n  unknownClass: {mode: audit}\n", None, false).is_ok());
        let e = Policy::parse("rules:\n  unknownClass: {suggest: 5}\n", None, false).unwrap_err();
        assert!(e.to_string().contains("suggest"), "{e}");
    }

    #[test]
    fn a_class_name_that_known_volumes_carry_is_not_warned() {
        let p = Policy::parse(POLICY, None, false).unwrap();
        let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "nfs-1"}, "spec": {"storageClassName": "manual",
            "nfs": {"server": "s", "path": "/"}, "accessModes": ["ReadWriteMany"]}}))
        .unwrap();
        let index = crate::policy::volumes::VolumeIndex::from_objects(
            [&pv],
            [],
            crate::policy::volumes::Source::Cluster,
        );
        let mut state = live(&["local-storage"]);
        state.pvs = Some(index.pvs.clone());
        state.claims = Some(index.claims.clone());
        let cat = p.catalog(&state);
        assert_eq!(create(&cat, &pvc(Some("manual"))), Decision::default());
        // No PV of that name: warned, saying a PV of that class would do too.
        let d = create(&cat, &pvc(Some("manua1")));
        assert_eq!(
            d.warnings,
            [concat!(
                r#"spec.storageClassName: StorageClass "manua1" not found: the claim stays Pending until it or "#,
                "a PersistentVolume of that class exists; no StorageClass has a close name"
            )]
        );
    }

    /// A class name of 200 characters is cut in the warning, so that "not found" stays within
    /// the API server's 256-character cut.
    #[test]
    fn a_long_class_name_keeps_not_found_within_the_warning_cut() {
        let (_, cat) = cluster();
        let name = "x".repeat(200);
        let c = pvc(Some(&name));
        let d = decide(
            &cat,
            Operation::Create,
            Object::Pvc(&c),
            None,
            Mode::Enforce,
        );
        let w = &d.warnings[0];
        let at = w.find("not found").expect("not found is said");
        assert!(w[..at].chars().count() < 200, "{w}");
        assert!(w.chars().count() <= crate::policy::MAX_WARNING_CHARS);
    }

    /// Thousands of claim templates naming unknown classes: each distinct name is compared with
    /// the classes once, the first MAX_NAMES_JUDGED only, and the rest are said to be unjudged.
    #[test]
    fn repeated_and_many_unknown_names_are_compared_once_and_bounded() {
        let (p, cat) = cluster();
        let templates: Vec<serde_json::Value> = (0..2000)
            .map(|i| {
                json!({"metadata": {"name": format!("t{i}")},
                    "spec": {"storageClassName": format!("nfs-clientt{}", i % 40)}})
            })
            .collect();
        let s: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {}, "serviceName": "web", "template": {},
                "volumeClaimTemplates": templates}}))
        .unwrap();
        let req = testing::create(Object::StatefulSet(&s))
            .subject("apps", "StatefulSet", "web")
            .request;
        let budget = crate::policy::Budget::default();
        let d = p.decide_within(Endpoint::Validate, &cat, &req, &budget);
        assert!(d.warnings.len() <= crate::policy::limits::MAX_WARNINGS);
        assert!(
            d.unjudged.iter().any(|u| u.contains("unknownClass")),
            "{:?}",
            d.unjudged
        );
        assert!(d.warnings.iter().any(|w| w.contains("closest: nfs-client")));
        assert_eq!(messages_of(&d.findings, ID).len(), MAX_VOLUMES);
    }

    /// A pod's volumes are read up to MAX_VOLUMES, as accessModes and volumeSize read them: the
    /// rest are said to be unjudged, and no finding is made for them.
    #[test]
    fn pod_volumes_past_the_cap_are_said_unjudged() {
        let (p, cat) = cluster();
        let volumes: Vec<serde_json::Value> = (0..MAX_VOLUMES + 3)
            .map(|i| {
                json!({"name": format!("v{i}"), "ephemeral": {"volumeClaimTemplate":
                {"spec": {"storageClassName": format!("nope-{}", i % 3)}}}})
            })
            .collect();
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": volumes}}),
        )
        .unwrap();
        let req = testing::create(Object::PodSpec {
            spec: pod.spec.as_ref(),
            path: "spec",
            runs: Default::default(),
        })
        .subject("", "Pod", "p")
        .request;
        let budget = crate::policy::Budget::default();
        let d = p.decide_within(Endpoint::Validate, &cat, &req, &budget);
        assert_eq!(messages_of(&d.findings, ID).len(), MAX_VOLUMES);
        assert!(
            d.unjudged.iter().any(|u| u.contains("unknownClass")
                && u.ends_with(&format!(": pod volumes past the first {MAX_VOLUMES}"))),
            "{:?}",
            d.unjudged
        );
        // At the cap exactly, nothing is said to be unjudged.
        let (named, cut) = pod_spec_named(&pod, MAX_VOLUMES);
        assert_eq!((named, cut.volumes), (MAX_VOLUMES, false));
        let (named, cut) = pod_spec_named(&pod, MAX_VOLUMES + 1);
        assert_eq!((named, cut.volumes), (MAX_VOLUMES, true));
    }

    fn pod_spec_named(pod: &Pod, volumes: usize) -> (usize, crate::policy::engine::sites::Cut) {
        let mut spec = pod.spec.clone().unwrap();
        spec.volumes.as_mut().unwrap().truncate(volumes);
        let (sites, cut) = claim_sites(&Object::PodSpec {
            spec: Some(&spec),
            path: "spec",
            runs: Default::default(),
        });
        (classes_named(&sites).len(), cut)
    }
}
