//! The opt-in ReadWriteMany rewrite of the `accessModes` rule (`rules.accessModes.rewrite`, or
//! the Namespace annotation `storage-policy.io/rewrite-access-modes`).
//!
//! Charts that hard-code ReadWriteMany cannot run where no class serves it (a single-node k3s
//! with local-path): the claim is refused. In an opted-in namespace a claim (PVC CREATE,
//! `/mutate`) whose class cannot serve ReadWriteMany gets it replaced by the target mode
//! (`ReadWriteOnce` or `ReadWriteOncePod`, duplicates removed) and an annotation recording it;
//! StatefulSet templates and ephemeral volumes are admitted on `/validate` with a warning, as
//! their claims will be rewritten when created (templates are immutable, so never patched).
//! Classes that serve ReadWriteMany, unknown classes and `""` are never rewritten. Nowhere by
//! default.

use std::collections::{HashMap, HashSet};

use std::collections::BTreeSet;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::json;

use crate::policy::engine::config::AccessMode;
use crate::policy::engine::decision::{Decision, Violation};
use crate::policy::engine::meta::RuleId;
use crate::policy::engine::rule::{Context, Object, Request};
use crate::policy::model::catalog::Catalog;
use crate::policy::model::field::{Path, go_quote};
use crate::policy::model::modes::Acting;
use crate::policy::model::storage::{self, Target};

/// Annotation set on a rewritten claim: the access mode it asked for.
pub const REWRITTEN_FROM_ANNOTATION: &str = "storage-policy.io/access-modes-rewritten-from";

const RWX: &str = "ReadWriteMany";

/// `rules.accessModes.rewrite` in the policy file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The mode that replaces ReadWriteMany (default `ReadWriteOnce`).
    #[serde(default)]
    pub to: Option<AccessMode>,
}

/// The compiled rewrite settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    namespaces: BTreeSet<String>,
    to: Option<AccessMode>,
}

impl Rewrite {
    /// Checks the section: `Err((sub-key, why))`.
    pub fn compile(c: Option<RewriteConfig>) -> Result<Rewrite, (&'static str, String)> {
        let Some(c) = c else {
            return Ok(Rewrite::default());
        };
        if let Some(to) = c.to
            && !is_target(to)
        {
            return Err((
                "rewrite.to",
                format!(
                    "{} is not a single-node mode (ReadWriteOnce or ReadWriteOncePod)",
                    to.as_str()
                ),
            ));
        }
        if c.namespaces.iter().any(|n| n.trim().is_empty()) {
            return Err((
                "rewrite.namespaces",
                "namespace name must not be empty".into(),
            ));
        }
        Ok(Rewrite {
            namespaces: c.namespaces.into_iter().collect(),
            to: c.to,
        })
    }

    /// The mode that replaces ReadWriteMany in `namespace`, if it opted in: the Namespace
    /// annotation's, else the policy's (`ReadWriteOnce` unless `to` says otherwise).
    pub fn target(&self, catalog: &Catalog, namespace: Option<&str>) -> Option<AccessMode> {
        let ns = namespace?;
        catalog
            .namespace(ns)
            .and_then(|i| i.rewrite_access_modes)
            .or_else(|| {
                self.namespaces
                    .contains(ns)
                    .then(|| self.to.unwrap_or(AccessMode::ReadWriteOnce))
            })
    }
}

fn is_target(m: AccessMode) -> bool {
    matches!(m, AccessMode::ReadWriteOnce | AccessMode::ReadWriteOncePod)
}

/// The access modes with ReadWriteMany replaced by `to`, duplicates removed (first kept).
/// `None` without ReadWriteMany; `Err` when the result would pair ReadWriteOncePod with
/// another mode (the API refuses that).
pub fn rewritten(modes: &[String], to: AccessMode) -> Option<Result<Vec<String>, String>> {
    if !modes.iter().any(|m| m == RWX) {
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(modes.len().min(8));
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for m in modes {
        let m = if m == RWX { to.as_str() } else { m.as_str() };
        if seen.insert(m) {
            out.push(m.to_owned());
        }
    }
    // ReadWriteOncePod must stand alone, whichever mode ReadWriteMany becomes (the claim may
    // have asked for it beside ReadWriteMany).
    let rwop = AccessMode::ReadWriteOncePod.as_str();
    if out.len() > 1 && out.iter().any(|m| m == rwop) {
        let others: Vec<&str> = out
            .iter()
            .map(String::as_str)
            .filter(|m| *m != rwop)
            .take(4)
            .collect();
        return Some(Err(format!(
            "ReadWriteMany not rewritten to {}: ReadWriteOncePod must be the only access mode, \
             and the claim would then ask for {}",
            to.as_str(),
            others.join(", ")
        )));
    }
    Some(Ok(out))
}

/// The class a claim lands on, when it is known not to serve ReadWriteMany (what the rewrite
/// is for), with the reason.
fn refusing_class(
    cx: &Context<'_>,
    namespace: Option<&str>,
    meta: Option<&ObjectMeta>,
    spec: &PersistentVolumeClaimSpec,
) -> Option<(String, String)> {
    let class = storage::claim_class(cx.settings, cx.catalog, namespace, meta, Some(spec))?;
    // Never rewritten on an assumed kind: the class may well serve ReadWriteMany.
    let t = Target::of_class(cx.catalog, &class).filter(Target::is_certain)?;
    let rejects = t.rejects(
        cx.settings,
        AccessMode::ReadWriteMany,
        spec.volume_mode.as_deref(),
    );
    let why = format!(
        "class {} ({}) is {} storage",
        go_quote(&class),
        t.provisioner.unwrap_or_default(),
        t.kind.as_str()
    );
    rejects.then_some((class, why))
}

/// `/mutate`, PVC CREATE: rewrites ReadWriteMany in an opted-in namespace.
pub fn mutate(
    rw: &Rewrite,
    rule: RuleId,
    cx: &Context<'_>,
    req: &Request<'_>,
    mode: Acting,
    d: &mut Decision,
) {
    let Some(Object::Pvc(pvc)) = req.object else {
        return;
    };
    let Some(to) = rw.target(cx.catalog, req.namespace) else {
        return;
    };
    let Some(spec) = pvc.spec.as_ref() else {
        return;
    };
    let modes = spec.access_modes.as_deref().unwrap_or(&[]);
    let Some(result) = rewritten(modes, to) else {
        return;
    };
    let Some((class, why)) = refusing_class(cx, req.namespace, Some(&pvc.metadata), spec) else {
        return;
    };
    let new = match result {
        Ok(new) => new,
        Err(conflict) => {
            d.warn(&conflict);
            return;
        }
    };
    // `spec.accessModes` holds ReadWriteMany, so it exists: replace applies.
    let mut ops = vec![PatchOperation::Replace(ReplaceOperation {
        path: PointerBuf::from_tokens(["spec", "accessModes"]),
        value: json!(new),
    })];
    ops.push(match pvc.metadata.annotations.as_ref() {
        Some(_) => PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", REWRITTEN_FROM_ANNOTATION]),
            value: json!(RWX),
        }),
        None => PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: json!({ REWRITTEN_FROM_ANNOTATION: RWX }),
        }),
    });
    let what = format!(
        "spec.accessModes {} (was ReadWriteMany: {why})",
        serde_json::to_string(&new).unwrap_or_default()
    );
    d.mutation_ops(rule, mode, &what, Some(class), ops);
    if mode == Acting::Enforce {
        d.warn(format!(
            "spec.accessModes: ReadWriteMany rewritten to {}: {why}",
            to.as_str()
        ));
    }
}

/// `/validate`: in an opted-in namespace, the ReadWriteMany violations of claim templates whose
/// claims will be rewritten become warnings (the claims are rewritten when created).
pub fn admit_templates(
    rw: &Rewrite,
    rule: RuleId,
    cx: &Context<'_>,
    req: &Request<'_>,
    found: &mut Vec<Violation>,
    d: &mut Decision,
) {
    let Some(to) = rw.target(cx.catalog, req.namespace) else {
        return;
    };
    let Some(object) = req.object.as_ref() else {
        return;
    };
    let sites = cx.claim_sites(rule, object);
    let rwx = go_quote(RWX);
    // The templates whose claims will be rewritten, by the field of their denial; then one pass
    // over the violations (a retain per template was quadratic in templates x violations).
    let mut admitted: HashMap<String, (Path, String, String)> = HashMap::new();
    for site in sites.iter().filter(|s| s.is_template()) {
        let Some(spec) = site.spec else {
            continue;
        };
        let modes = spec.access_modes.as_deref().unwrap_or(&[]);
        if !matches!(rewritten(modes, to), Some(Ok(_))) {
            continue;
        }
        let Some((class, why)) = refusing_class(cx, req.namespace, site.meta, spec) else {
            continue;
        };
        let field = site.spec_path().child("accessModes").to_string();
        admitted.insert(field, (site.at.clone(), class, why));
    }
    if admitted.is_empty() {
        return;
    }
    let mut matched: Vec<&str> = Vec::new();
    found.retain(|v| {
        if v.error.value.as_deref() != Some(&rwx) {
            return true;
        }
        match admitted.get_key_value(v.error.field.to_string().as_str()) {
            Some((field, _)) => {
                matched.push(field.as_str());
                false
            }
            None => true,
        }
    });
    let mut said: HashSet<&str> = HashSet::new();
    for field in matched {
        if !said.insert(field) {
            continue;
        }
        let (path, class, why) = &admitted[field];
        let msg = format!(
            "claims of {path} will be created with {} instead of ReadWriteMany: {why}",
            to.as_str()
        );
        d.warning(rule, Some(class.clone()), msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn replaces_rwx_and_collapses_duplicates() {
        let rwo = AccessMode::ReadWriteOnce;
        assert_eq!(
            rewritten(&modes(&["ReadWriteMany"]), rwo),
            Some(Ok(modes(&["ReadWriteOnce"])))
        );
        assert_eq!(
            rewritten(&modes(&["ReadWriteMany", "ReadWriteOnce"]), rwo),
            Some(Ok(modes(&["ReadWriteOnce"])))
        );
        assert_eq!(
            rewritten(&modes(&["ReadWriteOnce", "ReadWriteMany"]), rwo),
            Some(Ok(modes(&["ReadWriteOnce"])))
        );
        assert_eq!(
            rewritten(&modes(&["ReadOnlyMany", "ReadWriteMany"]), rwo),
            Some(Ok(modes(&["ReadOnlyMany", "ReadWriteOnce"])))
        );
        assert_eq!(rewritten(&modes(&["ReadWriteOnce"]), rwo), None);
        assert_eq!(rewritten(&[], rwo), None);
    }

    #[test]
    fn read_write_once_pod_must_stay_alone() {
        let rwop = AccessMode::ReadWriteOncePod;
        assert_eq!(
            rewritten(&modes(&["ReadWriteMany"]), rwop),
            Some(Ok(modes(&["ReadWriteOncePod"])))
        );
        let e = rewritten(&modes(&["ReadWriteMany", "ReadOnlyMany"]), rwop)
            .unwrap()
            .unwrap_err();
        assert!(e.contains("ReadOnlyMany"), "{e}");
    }

    /// `[ReadWriteMany, ReadWriteOncePod]` rewritten to ReadWriteOnce would ask for
    /// `[ReadWriteOnce, ReadWriteOncePod]`, which the API refuses: not rewritten.
    #[test]
    fn read_write_once_pod_beside_read_write_many_is_never_paired_by_the_rewrite() {
        let e = rewritten(
            &modes(&["ReadWriteMany", "ReadWriteOncePod"]),
            AccessMode::ReadWriteOnce,
        )
        .unwrap()
        .unwrap_err();
        assert!(e.contains("ReadWriteOncePod must be the only"), "{e}");
        assert!(e.contains("ReadWriteOnce"), "{e}");
    }

    #[test]
    fn refuses_multi_node_targets_and_empty_namespaces() {
        let c = |to, ns: &[&str]| RewriteConfig {
            namespaces: ns.iter().map(|s| (*s).to_owned()).collect(),
            to,
        };
        assert!(Rewrite::compile(Some(c(Some(AccessMode::ReadWriteMany), &["a"]))).is_err());
        assert!(Rewrite::compile(Some(c(Some(AccessMode::ReadOnlyMany), &["a"]))).is_err());
        assert!(Rewrite::compile(Some(c(None, &[""]))).is_err());
        let r = Rewrite::compile(Some(c(None, &["a"]))).unwrap();
        let cat = Catalog::default();
        assert_eq!(r.target(&cat, Some("a")), Some(AccessMode::ReadWriteOnce));
        assert_eq!(r.target(&cat, Some("b")), None);
        assert_eq!(r.target(&cat, None), None);
        assert_eq!(Rewrite::default().target(&cat, Some("a")), None);
    }

    mod through_the_rule {
        use super::*;
        use crate::policy::catalog::{LiveState, NamespaceInfo};
        use crate::policy::rule::Endpoint;
        use crate::policy::testing::create;
        use crate::policy::{Action, Policy};
        use k8s_openapi::api::core::v1::PersistentVolumeClaim;
        use serde_json::Value;

        const POLICY: &str = r#"
storageClasses:
  - {name: local-path, provisioner: rancher.io/local-path, default: true}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
  - {name: rbd, provisioner: rbd.csi.ceph.com, allowReadWriteManyBlockMode: true}
rules:
  accessModes:
    rewrite: {namespaces: [apps]}
"#;

        fn claim(v: Value) -> PersistentVolumeClaim {
            serde_json::from_value(v).unwrap()
        }

        fn rwx(class: &str) -> PersistentVolumeClaim {
            claim(
                json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteMany"],
                "storageClassName": class, "resources": {"requests": {"storage": "1Gi"}}}}),
            )
        }

        fn decide(
            p: &Policy,
            live: &LiveState,
            ns: &str,
            ep: Endpoint,
            c: &PersistentVolumeClaim,
        ) -> Decision {
            let req = create(Object::Pvc(c))
                .namespace(Some(ns))
                .subject("", "PersistentVolumeClaim", "data")
                .request;
            p.decide(ep, &p.catalog(live), &req)
        }

        fn apply(c: &PersistentVolumeClaim, d: &Decision) -> PersistentVolumeClaim {
            let mut doc = serde_json::to_value(c).unwrap();
            json_patch::patch(&mut doc, &d.patch).unwrap();
            serde_json::from_value(doc).unwrap()
        }

        #[test]
        fn rewrites_in_opted_in_namespaces_only() {
            let p = Policy::parse(POLICY, None, false).unwrap();
            let live = LiveState::default();
            let c = rwx("local-path");
            let d = decide(&p, &live, "apps", Endpoint::Mutate, &c);
            let after = apply(&c, &d);
            assert_eq!(
                after.spec.as_ref().unwrap().access_modes.as_deref(),
                Some(&["ReadWriteOnce".to_owned()][..])
            );
            assert_eq!(
                after.metadata.annotations.as_ref().unwrap()[REWRITTEN_FROM_ANNOTATION],
                "ReadWriteMany"
            );
            assert_eq!(
                d.warnings,
                [
                    r#"spec.accessModes: ReadWriteMany rewritten to ReadWriteOnce: class "local-path" (rancher.io/local-path) is local storage"#
                ]
            );
            assert_eq!(d.findings[0].action, Action::Mutated);
            assert!(decide(&p, &live, "apps", Endpoint::Validate, &after).allowed());
            assert!(
                decide(&p, &live, "apps", Endpoint::Mutate, &after)
                    .patch
                    .is_empty()
            );
            // Not opted in: nothing changes, the denial stays.
            assert_eq!(
                decide(&p, &live, "other", Endpoint::Mutate, &c),
                Decision::default()
            );
            assert!(!decide(&p, &live, "other", Endpoint::Validate, &c).allowed());
            // Classes that serve RWX (nfs; rbd in Block mode) are never rewritten.
            assert!(
                decide(&p, &live, "apps", Endpoint::Mutate, &rwx("nfs"))
                    .patch
                    .is_empty()
            );
            let mut block = rwx("rbd");
            block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
            assert!(
                decide(&p, &live, "apps", Endpoint::Mutate, &block)
                    .patch
                    .is_empty()
            );
            assert!(
                !decide(&p, &live, "apps", Endpoint::Mutate, &rwx("rbd"))
                    .patch
                    .is_empty()
            );
        }

        #[test]
        fn the_namespace_annotation_opts_in_and_names_the_target() {
            let p = Policy::parse(POLICY, None, false).unwrap();
            let mut live = LiveState::default();
            live.namespaces.insert(
                "k3s".into(),
                NamespaceInfo {
                    rewrite_access_modes: Some(AccessMode::ReadWriteOncePod),
                    ..Default::default()
                },
            );
            let c = rwx("local-path");
            let after = apply(&c, &decide(&p, &live, "k3s", Endpoint::Mutate, &c));
            assert_eq!(
                after.spec.as_ref().unwrap().access_modes.as_deref(),
                Some(&["ReadWriteOncePod".to_owned()][..])
            );
            // ReadWriteOncePod never pairs with another mode: left alone with a warning.
            let mut two = rwx("local-path");
            two.spec.as_mut().unwrap().access_modes =
                Some(vec!["ReadWriteMany".into(), "ReadOnlyMany".into()]);
            let d = decide(&p, &live, "k3s", Endpoint::Mutate, &two);
            assert!(
                d.patch.is_empty() && d.warnings[0].contains("ReadOnlyMany"),
                "{:?}",
                d.warnings
            );
        }

        #[test]
        fn audit_mode_reports_the_rewrite() {
            let p = Policy::parse(&format!("{POLICY}    mode: audit\n"), None, false).unwrap();
            let d = decide(
                &p,
                &LiveState::default(),
                "apps",
                Endpoint::Mutate,
                &rwx("local-path"),
            );
            assert!(d.patch.is_empty());
            assert!(
                d.warnings[0]
                    .starts_with(r#"[audit] would set spec.accessModes ["ReadWriteOnce"]"#),
                "{:?}",
                d.warnings
            );
            assert_eq!(d.findings[0].action, Action::Audited);
        }

        #[test]
        fn adds_to_existing_annotations() {
            let p = Policy::parse(POLICY, None, false).unwrap();
            let c = claim(
                json!({"metadata": {"name": "data", "annotations": {"a/b": "c"}}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "local-path"}}),
            );
            let after = apply(
                &c,
                &decide(&p, &LiveState::default(), "apps", Endpoint::Mutate, &c),
            );
            let a = after.metadata.annotations.unwrap();
            assert_eq!(
                (a["a/b"].as_str(), a[REWRITTEN_FROM_ANNOTATION].as_str()),
                ("c", "ReadWriteMany")
            );
        }
    }
}
