//! Rule `defaultStorageClass`: a PersistentVolumeClaim created without a class gets the right
//! default class ([`storage::choose`]: the namespace's, the access mode's, the cluster default as
//! Kubernetes picks it, the policy's `className`). A PVC that has a class (`""` included) or the
//! beta class annotation is never touched.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde::Deserialize;
use serde_json::json;

use crate::policy::engine::config::{AccessMode, ConfigError, Section, check_dns_subdomain};
use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::catalog::Catalog;
use crate::policy::model::field::go_quote;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::storage::{self, ClassOwner, Defaults, Settings, has_class};

pub const META: Meta = Meta {
    key: "defaultStorageClass",
    annotation: "default-storage-class",
    summary: "a PVC created without a class gets the namespace, access-mode or cluster default",
    denies: "never denies; patches only a PVC with neither spec.storageClassName nor the beta annotation (the DefaultStorageClass plugin's own test)",
    warns: "nothing of its own",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Mutate,
        judges: &[Judges::Claims.on(CREATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::new(&META, compile);

/// `rules.defaultStorageClass` in the policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    /// Last-resort default when no class is marked default; empty means none.
    #[serde(default)]
    class_name: String,
    #[serde(default)]
    by_access_mode: BTreeMap<AccessMode, String>,
    #[serde(default)]
    namespaces: BTreeMap<String, String>,
}

#[derive(Debug)]
struct DefaultClass {
    defaults: Defaults,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    if !c.class_name.is_empty() {
        check_dns_subdomain(&c.class_name)
            .map_err(|why| section.invalid("className", None, why))?;
    }
    for (mode, class) in &c.by_access_mode {
        check_dns_subdomain(class).map_err(|why| {
            section.invalid(&format!("byAccessMode.{}", mode.as_str()), None, why)
        })?;
    }
    for (ns, class) in &c.namespaces {
        if ns.is_empty() {
            return Err(section.invalid("namespaces", None, "namespace name must not be empty"));
        }
        check_dns_subdomain(class)
            .map_err(|why| section.invalid(&format!("namespaces.{ns}"), None, why))?;
    }
    Ok(Box::new(DefaultClass {
        defaults: Defaults {
            class_name: c.class_name,
            by_access_mode: c.by_access_mode,
            namespaces: c.namespaces,
        },
    }))
}

impl Rule for DefaultClass {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        if let Some(Object::Pvc(pvc)) = req.object {
            run(cx.settings, cx.catalog, req.namespace, pvc, mode, d);
        }
    }

    fn configure(&self, settings: &mut Settings) {
        settings.defaults = self.defaults.clone();
    }
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
    settings: &Settings,
    catalog: &Catalog,
    namespace: Option<&str>,
    pvc: &PersistentVolumeClaim,
    mode: Acting,
    d: &mut Decision,
) {
    let spec = pvc.spec.as_ref();
    let owner = storage::class_owner(catalog, Some(&pvc.metadata), spec);
    if has_class(pvc) && owner == ClassOwner::Request {
        return;
    }
    let Some(choice) = storage::choose(settings, catalog, namespace, spec) else {
        return;
    };
    let rule = ID;
    let what = format!(
        "spec.storageClassName {} ({})",
        go_quote(&choice.class),
        choice.source.describe()
    );
    let plugins = spec.and_then(|s| s.storage_class_name.as_deref());
    match (owner, plugins) {
        (ClassOwner::Request, _) | (_, None) => d.mutation(
            rule,
            mode,
            &what,
            Some(choice.class.clone()),
            patch_for(pvc, &choice.class),
        ),
        // The plugin's default is the right one here too.
        (_, Some(set)) if set == choice.class => {}
        (ClassOwner::Unknown, Some(set)) => d.warn(format!(
            "spec.storageClassName {} may have been set by the DefaultStorageClass admission plugin, not by you: the request has no managedFields to tell by, so the {} {} is not applied",
            go_quote(set),
            choice.source.describe(),
            go_quote(&choice.class)
        )),
        (ClassOwner::DefaultPlugin, Some(set)) => {
            // The user wrote no class: the plugin filled in the cluster default before this
            // webhook ran. The namespace's or access mode's default replaces it.
            let what = format!(
                "{what} in place of {}, which the DefaultStorageClass admission plugin set (no class was written)",
                go_quote(set)
            );
            if mode == Acting::Enforce {
                d.warn(format!("set {what}"));
            }
            d.mutation(
                rule,
                mode,
                &what,
                Some(choice.class.clone()),
                PatchOperation::Replace(ReplaceOperation {
                    path: PointerBuf::from_tokens(["spec", "storageClassName"]),
                    value: json!(choice.class),
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Action;
    use crate::policy::Policy;
    use crate::policy::catalog::{LiveClass, LiveState, NamespaceInfo};
    use crate::policy::storage::BETA_CLASS_ANNOTATION;
    use crate::policy::testing::{create, policy, pvc};
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
        create(Object::Pvc(c)).namespace(Some(ns)).check(
            p,
            cat,
            ID,
            Endpoint::Mutate,
            mode.acting().unwrap(),
        )
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
                rewrite_access_modes: None,
            },
        );
        let cat = p.catalog(&live);
        let c = claim(&["ReadWriteOnce"], None);
        assert_eq!(
            patched(&c, &decide(&p, &cat, "analytics", &c, Mode::Enforce))["spec"]["storageClassName"],
            "nfs"
        );
    }

    /// A catalog whose `gp3` is annotated default in the cluster, as the DefaultStorageClass
    /// plugin sees it, beside the policy's classes.
    fn with_live_default(p: &Policy) -> Catalog {
        p.catalog(&LiveState {
            classes: vec![LiveClass {
                name: "gp3".into(),
                provisioner: "ebs.csi.aws.com".into(),
                is_default: true,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// A claim as it reaches /mutate: `gp3` in spec.storageClassName, and the managed fields
    /// the API server recorded from the request.
    fn claim_with_fields(modes: &[&str], managed: Option<Value>) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": "d"}, "spec": {"storageClassName": "gp3",
            "accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}}});
        if let Some(m) = managed {
            c["metadata"]["managedFields"] = m;
        }
        pvc(c)
    }

    const NOT_OWNED: &str = r#"[{"manager": "kubectl-client-side-apply", "operation": "Update",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:accessModes": {},
        "f:resources": {"f:requests": {".": {}, "f:storage": {}}}}}}]"#;

    #[test]
    fn replaces_the_plugins_class_when_no_field_manager_wrote_one() {
        let p = policy(POLICY);
        let cat = with_live_default(&p);
        let managed: Value = serde_json::from_str(NOT_OWNED).unwrap();
        for (ns, modes, want) in [
            ("analytics", &["ReadWriteOnce"][..], "local-path"),
            ("web", &["ReadWriteMany"][..], "nfs"),
        ] {
            let c = claim_with_fields(modes, Some(managed.clone()));
            let d = decide(&p, &cat, ns, &c, Mode::Enforce);
            assert_eq!(patched(&c, &d)["spec"]["storageClassName"], want, "{ns}");
            assert_eq!(d.patch.len(), 1);
            assert!(
                matches!(d.patch[0], PatchOperation::Replace(_)),
                "{:?}",
                d.patch
            );
            assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
            assert!(
                d.warnings[0].contains(r#"in place of "gp3", which the DefaultStorageClass"#),
                "{:?}",
                d.warnings
            );
            // A second pass (reinvocation) sees the replaced class, not the plugin's: no-op.
            let again: PersistentVolumeClaim = serde_json::from_value(patched(&c, &d)).unwrap();
            assert!(decide(&p, &cat, ns, &again, Mode::Enforce).patch.is_empty());
            // Audit mode: nothing patched, the same finding as a warning.
            let a = decide(&p, &cat, ns, &c, Mode::Audit);
            assert!(a.patch.is_empty());
            assert!(a.warnings[0].starts_with("[audit] would set spec.storageClassName"));
        }
        // No namespace or access-mode default applies: the plugin's class is the right one.
        let c = claim_with_fields(&["ReadWriteOnce"], Some(managed));
        let d = decide(&p, &cat, "web", &c, Mode::Enforce);
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn keeps_a_class_a_field_manager_owns_even_when_it_is_the_default() {
        let p = policy(POLICY);
        let cat = with_live_default(&p);
        let owned = json!([{"manager": "kubectl", "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:storageClassName": {}, "f:accessModes": {}}}}]);
        let c = claim_with_fields(&["ReadWriteOnce"], Some(owned));
        assert_eq!(
            decide(&p, &cat, "analytics", &c, Mode::Enforce),
            Decision::default()
        );
        // Another class than the plugin's is never the plugin's doing.
        let managed: Value = serde_json::from_str(NOT_OWNED).unwrap();
        let mut c = claim_with_fields(&["ReadWriteOnce"], Some(managed));
        c.spec.as_mut().unwrap().storage_class_name = Some("standard".into());
        assert_eq!(
            decide(&p, &cat, "analytics", &c, Mode::Enforce),
            Decision::default()
        );
    }

    #[test]
    fn without_managed_fields_it_cannot_tell_and_says_so() {
        let p = policy(POLICY);
        let cat = with_live_default(&p);
        let c = claim_with_fields(&["ReadWriteOnce"], None);
        let d = decide(&p, &cat, "analytics", &c, Mode::Enforce);
        assert!(d.patch.is_empty());
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("no managedFields to tell by"),
            "{:?}",
            d.warnings
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
