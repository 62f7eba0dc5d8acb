//! Rule 1: a PersistentVolumeClaim created without a class gets the right default class.
//!
//! Candidates, in order: the namespace's default (Namespace annotation, else the policy's
//! `namespaces` entry), the policy's `byAccessMode` entry, the cluster default (as Kubernetes
//! picks it), the policy's `className`. The first candidate whose storage can serve the requested
//! access modes wins; if none can, the first candidate. A PVC that has a class (`""` included) or
//! the beta class annotation is never touched.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};
use serde_json::json;

use super::catalog::Catalog;
use super::config::AccessMode;
use super::field::go_quote;
use super::modes::{Mode, RuleId};
use super::{Decision, Policy, access_modes};

/// The legacy annotation that gives a PVC its class.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Where a chosen default came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Namespace,
    AccessMode(AccessMode),
    ClusterDefault,
    PolicyFallback,
}

impl Source {
    pub fn describe(self) -> String {
        match self {
            Source::Namespace => "namespace default".to_owned(),
            Source::AccessMode(m) => format!("default for {}", m.as_str()),
            Source::ClusterDefault => "cluster default".to_owned(),
            Source::PolicyFallback => "policy className".to_owned(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub class: String,
    pub source: Source,
}

/// A PVC "has a class" when `spec.storageClassName` is set (even to `""`) or the beta annotation
/// key is present (any value): exactly the DefaultStorageClass plugin's test.
pub fn has_class(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec
        .as_ref()
        .is_some_and(|s| s.storage_class_name.is_some())
        || pvc
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(BETA_CLASS_ANNOTATION))
}

/// The class the rule would give a claim without one in `namespace`.
pub fn choose(
    policy: &Policy,
    catalog: &Catalog,
    namespace: Option<&str>,
    spec: Option<&PersistentVolumeClaimSpec>,
) -> Option<Choice> {
    let rule = &policy.file.rules.default_storage_class;
    let modes: &[String] = spec.and_then(|s| s.access_modes.as_deref()).unwrap_or(&[]);
    let volume_mode = spec.and_then(|s| s.volume_mode.as_deref());

    let namespace_default = namespace.and_then(|ns| {
        catalog
            .namespace(ns)
            .and_then(|info| info.default_class.as_deref())
            .or_else(|| rule.namespaces.get(ns).map(String::as_str))
    });
    let mut first: Option<Choice> = None;
    let mut consider = |class: &str, source: Source| -> Option<Choice> {
        let choice = Choice {
            class: class.to_owned(),
            source,
        };
        if access_modes::serves(policy, catalog, class, modes, volume_mode) {
            return Some(choice);
        }
        if first.is_none() {
            first = Some(choice);
        }
        None
    };
    if let Some(c) = namespace_default.and_then(|c| consider(c, Source::Namespace)) {
        return Some(c);
    }
    for m in modes.iter().filter_map(|m| AccessMode::parse(m)) {
        if let Some(c) = rule
            .by_access_mode
            .get(&m)
            .and_then(|c| consider(c, Source::AccessMode(m)))
        {
            return Some(c);
        }
    }
    if let Some(c) = catalog
        .default_class()
        .and_then(|c| consider(c, Source::ClusterDefault))
    {
        return Some(c);
    }
    if !rule.class_name.is_empty()
        && let Some(c) = consider(&rule.class_name, Source::PolicyFallback)
    {
        return Some(c);
    }
    first
}

/// The patch that sets the class: it creates `spec` when the object has none.
pub fn patch_for(pvc: &PersistentVolumeClaim, class: &str) -> PatchOperation {
    if pvc.spec.is_some() {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec", "storageClassName"]),
            value: json!(class),
        })
    } else {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec"]),
            value: json!({ "storageClassName": class }),
        })
    }
}

pub(crate) fn run(
    policy: &Policy,
    catalog: &Catalog,
    namespace: Option<&str>,
    pvc: &PersistentVolumeClaim,
    mode: Mode,
    d: &mut Decision,
) {
    if mode == Mode::Off || has_class(pvc) {
        return;
    }
    let Some(choice) = choose(policy, catalog, namespace, pvc.spec.as_ref()) else {
        return;
    };
    let rule = RuleId::DefaultStorageClass;
    let what = format!(
        "spec.storageClassName {} ({})",
        go_quote(&choice.class),
        choice.source.describe()
    );
    d.mutation(
        rule,
        mode,
        &what,
        Some(choice.class.clone()),
        patch_for(pvc, &choice.class),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Action;
    use crate::policy::catalog::{LiveClass, LiveState, NamespaceInfo};
    use crate::policy::config;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::Value;

    const POLICY: &str = r#"
storageClasses:
  - {name: standard, provisioner: ebs.csi.aws.com, default: true}
  - {name: local-path, provisioner: rancher.io/local-path}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
rules:
  defaultStorageClass:
    byAccessMode: {ReadWriteMany: nfs}
    namespaces: {analytics: local-path}
"#;

    fn policy(text: &str) -> Policy {
        Policy::new(config::parse(text, None).unwrap(), false)
    }

    fn pvc(v: Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    fn claim(modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        pvc(
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"}, "spec": spec}),
        )
    }

    fn decide(
        p: &Policy,
        cat: &Catalog,
        ns: &str,
        c: &PersistentVolumeClaim,
        mode: Mode,
    ) -> Decision {
        let mut d = Decision::default();
        run(p, cat, Some(ns), c, mode, &mut d);
        d
    }

    fn patched(c: &PersistentVolumeClaim, d: &Decision) -> Value {
        let mut doc = serde_json::to_value(c).unwrap();
        json_patch::patch(&mut doc, &d.patch).unwrap();
        doc
    }

    #[test]
    fn sets_cluster_default_on_claim_without_class() {
        let p = policy(POLICY);
        let cat = p.static_catalog();
        let c = claim(&["ReadWriteOnce"], None);
        let d = decide(&p, &cat, "default", &c, Mode::Enforce);
        assert_eq!(patched(&c, &d)["spec"]["storageClassName"], "standard");
        assert_eq!(d.findings[0].action, Action::Mutated);
    }

    #[test]
    fn keeps_empty_class() {
        let p = policy(POLICY);
        let d = decide(
            &p,
            &p.static_catalog(),
            "default",
            &claim(&["ReadWriteOnce"], Some("")),
            Mode::Enforce,
        );
        assert!(d.patch.is_empty());
        assert!(d.findings.is_empty());
    }

    #[test]
    fn keeps_explicit_class() {
        let p = policy(POLICY);
        let d = decide(
            &p,
            &p.static_catalog(),
            "default",
            &claim(&["ReadWriteOnce"], Some("foo")),
            Mode::Enforce,
        );
        assert!(d.patch.is_empty());
    }

    #[test]
    fn leaves_claims_with_beta_annotation() {
        let p = policy(POLICY);
        for value in ["nfs", ""] {
            let c = pvc(
                json!({"metadata": {"name": "l", "annotations": {BETA_CLASS_ANNOTATION: value}},
                              "spec": {"accessModes": ["ReadWriteOnce"]}}),
            );
            assert!(
                decide(&p, &p.static_catalog(), "default", &c, Mode::Enforce)
                    .patch
                    .is_empty()
            );
        }
    }

    #[test]
    fn rwx_claim_gets_the_rwx_default() {
        let p = policy(POLICY);
        let c = claim(&["ReadWriteMany"], None);
        let d = decide(&p, &p.static_catalog(), "default", &c, Mode::Enforce);
        assert_eq!(patched(&c, &d)["spec"]["storageClassName"], "nfs");
    }

    #[test]
    fn namespace_default_wins_unless_it_cannot_serve_the_modes() {
        let p = policy(POLICY);
        let cat = p.static_catalog();
        let rwo = claim(&["ReadWriteOnce"], None);
        assert_eq!(
            patched(&rwo, &decide(&p, &cat, "analytics", &rwo, Mode::Enforce))["spec"]["storageClassName"],
            "local-path"
        );
        // local-path is node-local: an RWX claim skips it for the RWX default.
        let rwx = claim(&["ReadWriteMany"], None);
        assert_eq!(
            patched(&rwx, &decide(&p, &cat, "analytics", &rwx, Mode::Enforce))["spec"]["storageClassName"],
            "nfs"
        );
    }

    #[test]
    fn namespace_annotation_beats_policy_namespaces() {
        let p = policy(POLICY);
        let mut live = LiveState::default();
        live.namespaces.insert(
            "analytics".into(),
            NamespaceInfo {
                default_class: Some("nfs".into()),
                mode: None,
            },
        );
        let cat = p.catalog(&live);
        let c = claim(&["ReadWriteOnce"], None);
        assert_eq!(
            patched(&c, &decide(&p, &cat, "analytics", &c, Mode::Enforce))["spec"]["storageClassName"],
            "nfs"
        );
    }

    #[test]
    fn falls_back_to_first_candidate_when_none_serves() {
        let p = policy(
            "storageClasses:\n  - {name: ebs, provisioner: ebs.csi.aws.com, default: true}\n",
        );
        let c = claim(&["ReadWriteMany"], None);
        let d = decide(&p, &p.static_catalog(), "default", &c, Mode::Enforce);
        assert_eq!(patched(&c, &d)["spec"]["storageClassName"], "ebs");
    }

    #[test]
    fn policy_class_name_is_last_resort() {
        let p = policy("rules:\n  defaultStorageClass: {className: fallback}\n");
        let c = claim(&["ReadWriteOnce"], None);
        let d = decide(&p, &p.static_catalog(), "default", &c, Mode::Enforce);
        assert_eq!(patched(&c, &d)["spec"]["storageClassName"], "fallback");
    }

    #[test]
    fn no_candidate_no_patch() {
        let p = policy("");
        let d = decide(
            &p,
            &p.static_catalog(),
            "default",
            &claim(&["ReadWriteOnce"], None),
            Mode::Enforce,
        );
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn creates_spec_when_missing() {
        let p = policy(POLICY);
        let c = pvc(json!({"metadata": {"name": "bare"}}));
        let d = decide(&p, &p.static_catalog(), "default", &c, Mode::Enforce);
        assert_eq!(
            patched(&c, &d)["spec"],
            json!({"storageClassName": "standard"})
        );
    }

    #[test]
    fn audit_mode_reports_without_patching() {
        let p = policy(POLICY);
        let d = decide(
            &p,
            &p.static_catalog(),
            "default",
            &claim(&["ReadWriteOnce"], None),
            Mode::Audit,
        );
        assert!(d.patch.is_empty());
        assert!(d.warnings[0].contains("\"standard\""), "{:?}", d.warnings);
        assert!(d.audit_annotations.contains_key("default-storage-class"));
        assert_eq!(d.findings[0].action, Action::Audited);
    }

    #[test]
    fn off_mode_does_nothing() {
        let p = policy(POLICY);
        let d = decide(
            &p,
            &p.static_catalog(),
            "default",
            &claim(&["ReadWriteOnce"], None),
            Mode::Off,
        );
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn second_pass_is_a_no_op() {
        let p = policy(POLICY);
        let c = claim(&["ReadWriteOnce"], None);
        let d = decide(&p, &p.static_catalog(), "default", &c, Mode::Enforce);
        let again: PersistentVolumeClaim = serde_json::from_value(patched(&c, &d)).unwrap();
        assert!(
            decide(&p, &p.static_catalog(), "default", &again, Mode::Enforce)
                .patch
                .is_empty()
        );
    }

    /// The upstream DefaultStorageClass test table (admission/storage/storageclass/setdefault).
    #[test]
    fn upstream_default_storage_class_table() {
        let ts = |s: i64, n: i32| Some(Time(k8s_openapi::jiff::Timestamp::new(s, n).unwrap()));
        let class = |name: &str, default: bool, created| LiveClass {
            name: name.into(),
            provisioner: "example.com/unknown".into(),
            is_default: default,
            created,
            ..Default::default()
        };
        let nondefault = || {
            vec![
                class("nondefault1", false, ts(100, 0)),
                class("nondefault2", false, ts(100, 0)),
                class("nondefault3", false, ts(100, 0)),
            ]
        };
        let default1 = class("default1", true, ts(100, 0));
        let default2 = class("default2", true, ts(100, 0));
        let default1_later = class("default1", true, ts(100, 1));
        type Case<'a> = (&'a str, Vec<LiveClass>, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("no default, nil", vec![], None, None),
            (
                "one default, nil",
                vec![default1.clone()],
                None,
                Some("default1"),
            ),
            (
                "one default, empty",
                vec![default1.clone()],
                Some(""),
                Some(""),
            ),
            (
                "one default, foo",
                vec![default1.clone()],
                Some("foo"),
                Some("foo"),
            ),
            (
                "two defaults, empty",
                vec![default1.clone(), default2.clone()],
                Some(""),
                Some(""),
            ),
            (
                "two defaults, foo",
                vec![default1.clone(), default2.clone()],
                Some("foo"),
                Some("foo"),
            ),
            (
                "two defaults same time, nil",
                vec![default1.clone(), default2.clone()],
                None,
                Some("default1"),
            ),
            (
                "default1 1ns later, nil",
                vec![default1_later, default2.clone()],
                None,
                Some("default1"),
            ),
        ];
        let p = policy("");
        for (name, defaults, claim_class, want) in cases {
            let mut classes = nondefault();
            classes.extend(defaults);
            let cat = p.catalog(&LiveState {
                classes,
                ..Default::default()
            });
            let c = claim(&["ReadWriteOnce"], claim_class);
            let d = decide(&p, &cat, "default", &c, Mode::Enforce);
            let got = patched(&c, &d)["spec"]["storageClassName"].clone();
            let want = want.map(Value::from).unwrap_or(Value::Null);
            assert_eq!(got, want, "{name}");
        }
    }
}
