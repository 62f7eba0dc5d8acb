//! Rule `accessModes`: access modes and volume modes only on storage that can serve them.
//!
//! Block storage (one node writes at a time) and node-local storage cannot serve ReadWriteMany;
//! shared file systems cannot serve raw block (`volumeMode: Block`). The drivers only say so
//! late, as `ProvisioningFailed` events on a Pending claim. This rule refuses the write at apply
//! time with the API server's own `Invalid` format (both errors aggregated when both apply), for PVCs, PVs, StatefulSet
//! `volumeClaimTemplates` and generic ephemeral volumes in pod specs. Unknown classes and
//! provisioners are not judged (fail open on knowledge, never guess). What a class serves and
//! which class a claim lands on is the shared [`storage`] model.

use serde::Deserialize;

use self::rewrite::{Rewrite, RewriteConfig};
use crate::policy::engine::config::{AccessMode, ConfigError, Section};
use crate::policy::engine::decision::{Decision, Violation};
use crate::policy::engine::sites::ClaimSite;
use crate::policy::model::catalog::{Catalog, KIND_ANNOTATION, StorageKind, kind_of_pv_source};
use crate::policy::model::field::{FieldError, Path, go_quote};
use crate::policy::model::modes::{Acting, Mode};

pub mod rewrite;
use crate::policy::engine::meta::{CREATE, CREATE_UPDATE};
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::storage::{self, Basis, Settings, Target};

pub const META: Meta = Meta {
    key: "accessModes",
    annotation: "access-modes",
    summary: "ReadWriteMany is refused on block and node-local storage, raw block on shared file systems, naming classes that serve them; opt-in rewrite to a single-node mode",
    denies: "ReadWriteMany on block or node-local storage, raw block on shared storage, when the kind is a fact: declared (policy kind, storage-policy.io/kind), the provisioner table, the PV's own source, or a kubernetes.io/no-provisioner class whose known PVs are all local or hostPath",
    warns: "a kubernetes.io/no-provisioner class without a declared kind and with no known PV (assumed node-local); on UPDATE, what the old object already had (never denied)",
    default_mode: Mode::Enforce,
    acts: &[
        // The opt-in ReadWriteMany rewrite ([`rewrite`]).
        Acts {
            endpoint: Endpoint::Mutate,
            judges: &[Judges::Claims.on(CREATE)],
        },
        Acts {
            endpoint: Endpoint::Validate,
            judges: &[
                Judges::Claims.on(CREATE_UPDATE),
                Judges::Volumes.on(CREATE_UPDATE),
                Judges::ClaimTemplates.on(CREATE_UPDATE),
                Judges::PodSpecs(PodFilter::EphemeralVolumes).on(CREATE_UPDATE),
            ],
        },
    ],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::new(&META, compile);

/// `rules.accessModes` in the policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    #[serde(default = "default_reject_on")]
    reject_read_write_many_on: Vec<StorageKind>,
    /// The opt-in ReadWriteMany rewrite ([`rewrite`]).
    #[serde(default)]
    rewrite: Option<RewriteConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            _mode: None,
            reject_read_write_many_on: default_reject_on(),
            rewrite: None,
        }
    }
}

fn default_reject_on() -> Vec<StorageKind> {
    vec![StorageKind::Block, StorageKind::Local]
}

#[derive(Debug)]
struct AccessModes {
    reject_rwx_on: Vec<StorageKind>,
    rewrite: Rewrite,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    let rewrite = Rewrite::compile(c.rewrite).map_err(|(k, why)| section.invalid(k, None, why))?;
    Ok(Box::new(AccessModes {
        reject_rwx_on: c.reject_read_write_many_on,
        rewrite,
    }))
}

impl Rule for AccessModes {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        match cx.endpoint {
            // The opt-in ReadWriteMany rewrite ([`rewrite`]).
            Endpoint::Mutate => rewrite::mutate(&self.rewrite, ID, cx, req, mode, d),
            Endpoint::Validate => run_with(cx, req, mode, d, &self.rewrite),
        }
    }

    fn configure(&self, settings: &mut Settings) {
        settings.reject_rwx_on = self.reject_rwx_on.clone();
    }
}

/// Known classes that serve ReadWriteMany with this volume mode, sorted: precomputed in the
/// catalog, so a denial costs the same with 10 or 10,000 classes.
fn rwx_alternatives<'c>(catalog: &'c Catalog, volume_mode: Option<&str>) -> &'c [String] {
    catalog.rwx_capable(volume_mode == Some("Block"))
}

/// What the storage is, for the warning: its class and provisioner, or its volume source.
fn describe(t: &Target<'_>) -> String {
    match (t.class, t.provisioner) {
        (Some(c), Some(p)) => format!("class {} ({p}) is {} storage", go_quote(c), t.kind.as_str()),
        _ => format!("the volume source is {} storage", t.kind.as_str()),
    }
}

/// The warning for what an assumed kind would refuse: what was assumed, and how to say
/// otherwise (never a denial: the class may hold NFS or CSI volumes).
fn assumed(t: &Target<'_>, value: &str, field: &Path) -> String {
    format!(
        "{field}: {value} not judged: class {} ({}) has no known PV, assumed {}; if its PVs \
         serve {value}, set its kind in the policy or annotation {KIND_ANNOTATION}",
        go_quote(t.class.unwrap_or_default()),
        t.provisioner.unwrap_or_default(),
        t.kind.as_str()
    )
}

/// `for X use a, b, c or 2 more`, or `no known class serves X`.
fn suggest(what: &str, all: &[String], max: usize) -> String {
    let names: Vec<&str> = all.iter().take(max).map(String::as_str).collect();
    if names.is_empty() {
        format!("no known class serves {what}")
    } else if all.len() > names.len() {
        format!(
            "for {what} use {} or {} more",
            names.join(", "),
            all.len() - names.len()
        )
    } else {
        format!("for {what} use {}", names.join(", "))
    }
}

/// What the storage cannot serve of a claim (spec at `path`): an access mode, then the volume
/// mode, in the order the API server validates them, so both aggregate as it would.
fn check(
    settings: &Settings,
    catalog: &Catalog,
    t: &Target<'_>,
    modes: &[String],
    volume_mode: Option<&str>,
    path: &Path,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(bad) = modes
        .iter()
        .filter_map(|m| AccessMode::parse(m))
        .find(|m| t.rejects(settings, *m, volume_mode))
    {
        let supported: Vec<&str> = AccessMode::ALL
            .into_iter()
            .filter(|m| !t.rejects(settings, *m, volume_mode))
            .map(AccessMode::as_str)
            .collect();
        let all = rwx_alternatives(catalog, volume_mode);
        let why = match t.basis {
            Basis::Assumed => assumed(t, bad.as_str(), &path.child("accessModes")),
            Basis::Volumes(n) => format!(
                "class {} ({}) holds only local or hostPath PVs ({n} known); {}",
                go_quote(t.class.unwrap_or_default()),
                t.provisioner.unwrap_or_default(),
                suggest(bad.as_str(), all, 3)
            ),
            Basis::Class | Basis::Source => {
                format!("{}; {}", describe(t), suggest(bad.as_str(), all, 3))
            }
        };
        out.push(Violation {
            error: FieldError::not_supported(path.child("accessModes"), bad.as_str(), &supported),
            why,
            class: t.class.map(str::to_owned),
            warn_only: !t.is_certain(),
        });
    }
    if !t.serves_volume_mode(volume_mode) {
        // Shared file systems hand out directories, never devices: the drivers refuse
        // `CreateVolume` with `block volume capability not supported`.
        out.push(Violation {
            error: FieldError::not_supported(path.child("volumeMode"), "Block", &["Filesystem"]),
            why: format!(
                "{}, which serves no raw block; {}",
                describe(t),
                suggest("volumeMode Block", catalog.raw_block_capable(), 3)
            ),
            class: t.class.map(str::to_owned),
            warn_only: !t.is_certain(),
        });
    }
    out
}

/// What the storage a claim site lands on cannot serve of it.
fn check_claim(cx: &Context<'_>, namespace: Option<&str>, site: &ClaimSite<'_>) -> Vec<Violation> {
    let Some(class) =
        storage::claim_class(cx.settings, cx.catalog, namespace, site.meta, site.spec)
    else {
        return Vec::new();
    };
    let Some(t) = Target::of_class(cx.catalog, &class) else {
        return Vec::new();
    };
    let Some(spec) = site.spec else {
        return Vec::new();
    };
    check(
        cx.settings,
        cx.catalog,
        &t,
        spec.access_modes.as_deref().unwrap_or(&[]),
        spec.volume_mode.as_deref(),
        &site.spec_path(),
    )
}

/// Every access-mode and volume-mode violation in an object.
pub fn violations(
    cx: &Context<'_>,
    namespace: Option<&str>,
    object: &Object<'_>,
) -> Vec<Violation> {
    let Object::Pv(pv) = *object else {
        return cx
            .claim_sites(ID, object)
            .iter()
            .flat_map(|site| check_claim(cx, namespace, site))
            .collect();
    };
    let Some(spec) = pv.spec.as_ref() else {
        return Vec::new();
    };
    // The volume's own source wins over its class: an NFS PV serves ReadWriteMany whatever its
    // class is called. Without a known source, a class judges only on facts (a static class's
    // kind is the PVs', which this one would join).
    let by_source = kind_of_pv_source(spec, cx.table).map(|kind| Target {
        class: None,
        provisioner: None,
        kind,
        allow_rwx_block: false,
        basis: Basis::Source,
    });
    let target = by_source.or_else(|| {
        spec.storage_class_name
            .as_deref()
            .filter(|c| !c.is_empty())
            .and_then(|c| Target::of_class(cx.catalog, c))
            .filter(|t| t.basis == Basis::Class)
    });
    let Some(t) = target else {
        return Vec::new();
    };
    check(
        cx.settings,
        cx.catalog,
        &t,
        spec.access_modes.as_deref().unwrap_or(&[]),
        spec.volume_mode.as_deref(),
        &Path::new("spec"),
    )
}

#[cfg(test)]
pub(crate) fn run(cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
    run_with(cx, req, mode, d, &Rewrite::default());
}

fn run_with(cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision, rw: &Rewrite) {
    let Some(object) = req.object.as_ref() else {
        return;
    };
    let mut found = violations(cx, req.namespace, object);
    // Templates whose claims the opt-in rewrite will fix are admitted with a warning.
    rewrite::admit_templates(rw, ID, cx, req, &mut found, d);
    // Deny only on certainty: what rests on an assumed kind is a warning; what the old object
    // already had never blocks (the engine's UPDATE ratchet).
    d.judge(ID, mode, req, found, |old| {
        violations(cx, req.namespace, old)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Operation;
    use crate::policy::Policy;
    use crate::policy::decision::Action;
    use crate::policy::model::limits::MAX_VOLUMES;
    use crate::policy::storage::BETA_CLASS_ANNOTATION;
    use crate::policy::testing::create;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
    use serde_json::{Value, json};

    const POLICY: &str = r#"
storageClasses:
  - {name: standard, provisioner: ebs.csi.aws.com, default: true}
  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com}
  - {name: local-storage, provisioner: kubernetes.io/no-provisioner, kind: local}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
  - {name: rbd-block, provisioner: rbd.csi.ceph.com, allowReadWriteManyBlockMode: true}
  - {name: mystery, provisioner: example.com/unknown}
  - {name: lp-shared, provisioner: rancher.io/local-path, kind: shared}
rules:
  defaultStorageClass:
    byAccessMode: {ReadWriteMany: nfs}
"#;
    const SUPPORTED: &str =
        r#"supported values: "ReadOnlyMany", "ReadWriteOnce", "ReadWriteOncePod""#;

    fn policy() -> Policy {
        Policy::parse(POLICY, None, false).unwrap()
    }

    fn pvc(
        class: Option<&str>,
        modes: &[&str],
        volume_mode: Option<&str>,
    ) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        if let Some(m) = volume_mode {
            spec["volumeMode"] = json!(m);
        }
        serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": spec})).unwrap()
    }

    fn decide_obj(
        p: &Policy,
        op: Operation,
        kind: (&str, &str),
        obj: Object<'_>,
        old: Option<Object<'_>>,
        mode: Mode,
    ) -> Decision {
        let cat = p.static_catalog();
        let req = create(obj)
            .operation(op)
            .old(old)
            .subject(kind.0, kind.1, "data")
            .request;
        let mut d = Decision::default();
        run(
            &p.context(Endpoint::Validate, &cat),
            &req,
            mode.acting().unwrap(),
            &mut d,
        );
        d
    }

    fn decide(p: &Policy, c: &PersistentVolumeClaim, mode: Mode) -> Decision {
        decide_obj(
            p,
            Operation::Create,
            ("", "PersistentVolumeClaim"),
            Object::Pvc(c),
            None,
            mode,
        )
    }

    #[test]
    fn rejects_rwx_on_block_class() {
        let p = policy();
        let d = decide(
            &p,
            &pvc(Some("oci-bv"), &["ReadWriteMany"], None),
            Mode::Enforce,
        );
        let inv = d.denial.expect("denied");
        assert_eq!(
            inv.message(),
            format!(
                r#"PersistentVolumeClaim "data" is invalid: spec.accessModes: Unsupported value: "ReadWriteMany": {SUPPORTED}"#
            )
        );
        assert_eq!(
            inv.errors[0].error_type.cause_reason(),
            "FieldValueNotSupported"
        );
        let w = &d.warnings[0];
        assert!(
            w.contains("oci-bv")
                && w.contains("blockvolume.csi.oraclecloud.com")
                && w.contains("nfs"),
            "{w}"
        );
        assert!(w.chars().count() <= 120, "{} chars: {w}", w.chars().count());
    }

    #[test]
    fn rejects_rwx_on_local_class() {
        let p = policy();
        assert!(
            decide(
                &p,
                &pvc(Some("local-storage"), &["ReadWriteMany"], None),
                Mode::Enforce
            )
            .denial
            .is_some()
        );
    }

    #[test]
    fn allows_rwo_on_block_and_rwx_on_shared() {
        let p = policy();
        assert_eq!(
            decide(
                &p,
                &pvc(Some("oci-bv"), &["ReadWriteOnce"], None),
                Mode::Enforce
            ),
            Decision::default()
        );
        assert_eq!(
            decide(
                &p,
                &pvc(Some("nfs"), &["ReadWriteMany"], None),
                Mode::Enforce
            ),
            Decision::default()
        );
    }

    #[test]
    fn allows_rwx_block_mode_only_where_the_class_says() {
        let p = policy();
        assert!(
            decide(
                &p,
                &pvc(Some("rbd-block"), &["ReadWriteMany"], Some("Block")),
                Mode::Enforce
            )
            .allowed()
        );
        assert!(
            !decide(
                &p,
                &pvc(Some("rbd-block"), &["ReadWriteMany"], None),
                Mode::Enforce
            )
            .allowed()
        );
        assert!(
            !decide(
                &p,
                &pvc(Some("rbd-block"), &["ReadWriteMany"], Some("Filesystem")),
                Mode::Enforce
            )
            .allowed()
        );
        assert!(
            !decide(
                &p,
                &pvc(Some("oci-bv"), &["ReadWriteMany"], Some("Block")),
                Mode::Enforce
            )
            .allowed()
        );
    }

    #[test]
    fn does_not_judge_unknown_or_empty_classes() {
        let p = policy();
        for class in ["mystery", "not-in-catalog", ""] {
            assert!(
                decide(
                    &p,
                    &pvc(Some(class), &["ReadWriteMany"], None),
                    Mode::Enforce
                )
                .allowed(),
                "{class}"
            );
        }
    }

    #[test]
    fn class_annotation_can_declare_local_path_shared() {
        let p = policy();
        assert!(
            decide(
                &p,
                &pvc(Some("lp-shared"), &["ReadWriteMany"], None),
                Mode::Enforce
            )
            .allowed()
        );
    }

    #[test]
    fn nil_class_is_judged_by_the_default_it_would_get() {
        let p = policy();
        // RWX without class -> byAccessMode nfs: fine.
        assert!(decide(&p, &pvc(None, &["ReadWriteMany"], None), Mode::Enforce).allowed());
        let p2 = Policy::parse(
            "storageClasses:\n  - {name: gp3, provisioner: ebs.csi.aws.com, default: true}\n",
            None,
            false,
        )
        .unwrap();
        assert!(!decide(&p2, &pvc(None, &["ReadWriteMany"], None), Mode::Enforce).allowed());
    }

    #[test]
    fn beta_annotation_gives_the_class() {
        let p = policy();
        let c: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "annotations": {BETA_CLASS_ANNOTATION: "oci-bv"}},
            "spec": {"accessModes": ["ReadWriteMany"]}}))
        .unwrap();
        assert!(!decide(&p, &c, Mode::Enforce).allowed());
    }

    #[test]
    fn audit_mode_allows_and_reports() {
        let p = policy();
        let d = decide(
            &p,
            &pvc(Some("oci-bv"), &["ReadWriteMany"], None),
            Mode::Audit,
        );
        assert!(d.allowed());
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains(r#"spec.accessModes: Unsupported value: "ReadWriteMany""#))
        );
        assert!(d.warnings.iter().any(|w| w.contains("nfs")));
        assert!(d.audit_annotations["access-modes"].contains("would deny"));
        assert!(d.warnings.iter().all(|w| w.chars().count() <= 256));
    }

    #[test]
    fn rejects_rwx_on_local_pv_by_source() {
        let p = policy();
        let pv: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteMany"], "local": {"path": "/mnt/ssd"}}}))
        .unwrap();
        let d = decide_obj(
            &p,
            Operation::Create,
            ("", "PersistentVolume"),
            Object::Pv(&pv),
            None,
            Mode::Enforce,
        );
        assert!(d.denial.unwrap().message().starts_with(r#"PersistentVolume "data" is invalid: spec.accessModes: Unsupported value: "ReadWriteMany""#));
        let nfs: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteMany"], "nfs": {"server": "s", "path": "/x"}}}))
        .unwrap();
        assert!(
            decide_obj(
                &p,
                Operation::Create,
                ("", "PersistentVolume"),
                Object::Pv(&nfs),
                None,
                Mode::Enforce
            )
            .allowed()
        );
    }

    #[test]
    fn statefulset_templates_are_checked_with_indexed_paths() {
        let p = policy();
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "selector": {}, "serviceName": "x", "template": {},
            "volumeClaimTemplates": [
                {"metadata": {"name": "ok"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-storage"}},
                {"metadata": {"name": "bad"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "local-storage"}},
                {"metadata": {"name": "bad2"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv"}}
            ]}})).unwrap();
        let d = decide_obj(
            &p,
            Operation::Create,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&sts),
            None,
            Mode::Enforce,
        );
        let inv = d.denial.unwrap();
        let msg = inv.message();
        assert!(msg.starts_with(r#"StatefulSet.apps "data" is invalid: [spec.volumeClaimTemplates[1].spec.accessModes: Unsupported value: "ReadWriteMany""#), "{msg}");
        assert!(
            msg.contains("spec.volumeClaimTemplates[2].spec.accessModes"),
            "{msg}"
        );
        assert_eq!(d.warnings.len(), 2);
    }

    #[test]
    fn pod_ephemeral_volumes_are_checked() {
        let p = policy();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {"containers": [],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}},
                        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv"}}}}]}})).unwrap();
        let d = decide_obj(
            &p,
            Operation::Create,
            ("", "Pod"),
            Object::PodSpec {
                spec: pod.spec.as_ref(),
                path: "spec",
                runs: Default::default(),
            },
            None,
            Mode::Enforce,
        );
        assert_eq!(
            d.denial.unwrap().errors[0].field.as_str(),
            "spec.volumes[1].ephemeral.volumeClaimTemplate.spec.accessModes"
        );
    }

    #[test]
    fn update_does_not_block_pre_existing_violations() {
        let p = policy();
        let old = pvc(Some("oci-bv"), &["ReadWriteMany"], None);
        let new = pvc(Some("oci-bv"), &["ReadWriteMany"], None);
        let d = decide_obj(
            &p,
            Operation::Update,
            ("", "PersistentVolumeClaim"),
            Object::Pvc(&new),
            Some(Object::Pvc(&old)),
            Mode::Enforce,
        );
        assert!(d.allowed());
        assert!(d.warnings[0].starts_with("pre-existing"));
        // A class newly set on update (the PV controller's retroactive default) is judged.
        let old = pvc(None, &["ReadWriteMany"], None);
        let p2 = Policy::parse(
            "storageClasses:\n  - {name: gp3, provisioner: ebs.csi.aws.com}\n",
            None,
            false,
        )
        .unwrap();
        let new = pvc(Some("gp3"), &["ReadWriteMany"], None);
        let d = decide_obj(
            &p2,
            Operation::Update,
            ("", "PersistentVolumeClaim"),
            Object::Pvc(&new),
            Some(Object::Pvc(&old)),
            Mode::Enforce,
        );
        assert!(!d.allowed());
    }

    #[test]
    fn reject_set_is_configurable() {
        let p = Policy::parse(
            &format!("{POLICY}  accessModes:\n    rejectReadWriteManyOn: [local]\n"),
            None,
            false,
        )
        .unwrap();
        assert!(
            decide(
                &p,
                &pvc(Some("oci-bv"), &["ReadWriteMany"], None),
                Mode::Enforce
            )
            .allowed()
        );
        assert!(
            !decide(
                &p,
                &pvc(Some("local-storage"), &["ReadWriteMany"], None),
                Mode::Enforce
            )
            .allowed()
        );
    }

    const RAW_BLOCK: &str =
        r#"spec.volumeMode: Unsupported value: "Block": supported values: "Filesystem""#;

    #[test]
    fn rejects_raw_block_on_shared_class() {
        let p = policy();
        let d = decide(
            &p,
            &pvc(Some("nfs"), &["ReadWriteOnce"], Some("Block")),
            Mode::Enforce,
        );
        let inv = d.denial.expect("denied");
        assert_eq!(
            inv.message(),
            format!(r#"PersistentVolumeClaim "data" is invalid: {RAW_BLOCK}"#)
        );
        assert_eq!(inv.errors.len(), 1);
        assert_eq!(inv.errors[0].field.as_str(), "spec.volumeMode");
        assert_eq!(
            inv.errors[0].error_type.cause_reason(),
            "FieldValueNotSupported"
        );
        // Classes of every kind but shared serve raw block, sorted; unknown kinds are not named.
        assert_eq!(
            d.warnings,
            [
                r#"class "nfs" (nfs.csi.k8s.io) is shared storage, which serves no raw block; for volumeMode Block use local-storage, oci-bv, rbd-block or 1 more"#
            ]
        );
        assert_eq!(d.findings[0].action, Action::Denied);
        assert_eq!(d.findings[0].message, RAW_BLOCK);
        assert_eq!(
            d.audit_annotations["access-modes"],
            format!("denied: {RAW_BLOCK}")
        );
    }

    #[test]
    fn allows_raw_block_where_storage_serves_it_and_filesystem_everywhere() {
        let p = policy();
        for class in [
            "oci-bv",
            "local-storage",
            "standard",
            "mystery",
            "not-in-catalog",
            "",
        ] {
            let d = decide(
                &p,
                &pvc(Some(class), &["ReadWriteOnce"], Some("Block")),
                Mode::Enforce,
            );
            assert_eq!(d, Decision::default(), "{class}");
        }
        for vm in [None, Some("Filesystem")] {
            assert!(decide(&p, &pvc(Some("nfs"), &["ReadWriteOnce"], vm), Mode::Enforce).allowed());
        }
    }

    #[test]
    fn a_class_declared_shared_refuses_raw_block() {
        let p = policy();
        let d = decide(
            &p,
            &pvc(Some("lp-shared"), &["ReadWriteOnce"], Some("Block")),
            Mode::Enforce,
        );
        assert_eq!(
            d.denial.unwrap().errors[0].field.as_str(),
            "spec.volumeMode"
        );
        assert!(
            d.warnings[0].contains("rancher.io/local-path"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn raw_block_and_rwx_errors_aggregate_access_modes_first() {
        let p = Policy::parse(
            &format!("{POLICY}  accessModes:\n    rejectReadWriteManyOn: [block, local, shared]\n"),
            None,
            false,
        )
        .unwrap();
        let d = decide(
            &p,
            &pvc(Some("nfs"), &["ReadWriteMany"], Some("Block")),
            Mode::Enforce,
        );
        let inv = d.denial.expect("denied");
        assert_eq!(
            inv.message(),
            format!(
                r#"PersistentVolumeClaim "data" is invalid: [spec.accessModes: Unsupported value: "ReadWriteMany": {SUPPORTED}, {RAW_BLOCK}]"#
            )
        );
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        // With raw block, RWX is served where the class allows RWX block mode.
        assert!(
            d.warnings[0].ends_with("is shared storage; for ReadWriteMany use rbd-block"),
            "{:?}",
            d.warnings
        );
        assert!(
            d.warnings[1].contains("serves no raw block"),
            "{:?}",
            d.warnings
        );
        let d = decide(
            &p,
            &pvc(Some("nfs"), &["ReadWriteMany"], Some("Block")),
            Mode::Audit,
        );
        assert!(d.allowed());
        assert_eq!(d.warnings.len(), 4, "{:?}", d.warnings);
        assert!(d.warnings[2].starts_with(&format!("[audit] would deny: {RAW_BLOCK}")));
    }

    #[test]
    fn raw_block_in_templates_uses_the_template_path() {
        let p = policy();
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "selector": {}, "serviceName": "x",
            "template": {"spec": {"containers": [], "volumes": [
                {"name": "s", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "nfs", "volumeMode": "Block"}}}}]}},
            "volumeClaimTemplates": [
                {"metadata": {"name": "raw"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "nfs", "volumeMode": "Block"}}
            ]}})).unwrap();
        let d = decide_obj(
            &p,
            Operation::Create,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&sts),
            None,
            Mode::Enforce,
        );
        let fields: Vec<String> = d
            .denial
            .unwrap()
            .errors
            .iter()
            .map(|e| e.field.as_str().to_owned())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.volumeClaimTemplates[0].spec.volumeMode",
                "spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.spec.volumeMode"
            ]
        );
    }

    #[test]
    fn raw_block_pv_is_judged_by_its_source() {
        let p = policy();
        let pv = |source: Value| -> PersistentVolume {
            let mut spec = json!({"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"});
            spec.as_object_mut()
                .unwrap()
                .extend(source.as_object().unwrap().clone());
            serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": spec})).unwrap()
        };
        let judge = |v: &PersistentVolume| {
            decide_obj(
                &p,
                Operation::Create,
                ("", "PersistentVolume"),
                Object::Pv(v),
                None,
                Mode::Enforce,
            )
        };
        let d = judge(&pv(json!({"nfs": {"server": "s", "path": "/x"}})));
        assert_eq!(
            d.denial.unwrap().message(),
            format!(r#"PersistentVolume "data" is invalid: {RAW_BLOCK}"#)
        );
        assert!(
            d.warnings[0].starts_with("the volume source is shared storage"),
            "{:?}",
            d.warnings
        );
        assert!(judge(&pv(json!({"local": {"path": "/dev/sdb"}}))).allowed());
        assert!(
            judge(&pv(
                json!({"csi": {"driver": "example.com/unknown", "volumeHandle": "h"}})
            ))
            .allowed()
        );
        assert!(
            !judge(&pv(
                json!({"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "h"}})
            ))
            .allowed()
        );
    }

    #[test]
    fn raw_block_ratchets_on_update() {
        let p = policy();
        let old = pvc(Some("nfs"), &["ReadWriteOnce"], Some("Block"));
        let new = pvc(Some("nfs"), &["ReadWriteOnce"], Some("Block"));
        let d = decide_obj(
            &p,
            Operation::Update,
            ("", "PersistentVolumeClaim"),
            Object::Pvc(&new),
            Some(Object::Pvc(&old)),
            Mode::Enforce,
        );
        assert!(d.allowed());
        assert_eq!(d.warnings, [format!("pre-existing: {RAW_BLOCK}")]);
    }

    #[test]
    fn a_default_that_cannot_serve_raw_block_is_passed_over() {
        // No class: the namespace default (nfs) cannot serve raw block, the cluster default can.
        let p = Policy::parse(
            &format!("{POLICY}    namespaces: {{default: nfs}}\n"),
            None,
            false,
        )
        .unwrap();
        let c = pvc(None, &["ReadWriteOnce"], Some("Block"));
        let cat = p.static_catalog();
        let spec = c.spec.as_ref();
        let fs = pvc(None, &["ReadWriteOnce"], None);
        let choice = storage::choose(&p.settings, &cat, Some("default"), fs.spec.as_ref()).unwrap();
        assert_eq!(choice.class, "nfs");
        let choice = storage::choose(&p.settings, &cat, Some("default"), spec).unwrap();
        assert_eq!(choice.class, "standard");
    }

    #[test]
    fn suggests_block_classes_for_raw_block_claims() {
        let p = policy();
        let d = decide(
            &p,
            &pvc(Some("oci-bv"), &["ReadWriteMany"], Some("Block")),
            Mode::Enforce,
        );
        assert!(d.warnings[0].contains("rbd-block"), "{:?}", d.warnings);
        let _unused: Value = Value::Null;
    }

    /// A `kubernetes.io/no-provisioner` class without a declared kind.
    const STATIC: &str = r#"
storageClasses:
  - {name: manual, provisioner: kubernetes.io/no-provisioner}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
"#;

    fn static_pv(name: &str, source: Value, modes: &[&str]) -> PersistentVolume {
        let mut spec = json!({"storageClassName": "manual", "accessModes": modes,
            "capacity": {"storage": "10Gi"}});
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    }

    fn local_source() -> Value {
        json!({"local": {"path": "/mnt/disk"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}})
    }

    fn nfs_source() -> Value {
        json!({"nfs": {"server": "10.0.0.5", "path": "/export"}})
    }

    /// The static policy's catalog, with these PVs known (`None`: no PV source at all).
    fn static_decide(pvs: Option<&[PersistentVolume]>, obj: Object<'_>, kind: &str) -> Decision {
        let p = Policy::parse(STATIC, None, false).unwrap();
        let mut cat = p.static_catalog();
        if let Some(pvs) = pvs {
            cat = cat.with_volumes(crate::policy::volumes::VolumeIndex::from_objects(
                pvs,
                [],
                crate::policy::volumes::Source::Cluster,
            ));
        }
        let req = create(obj).subject("", kind, "data").request;
        let mut d = Decision::default();
        run(
            &p.context(Endpoint::Validate, &cat),
            &req,
            Acting::Enforce,
            &mut d,
        );
        d
    }

    #[test]
    fn rwx_on_a_static_class_without_known_pvs_is_warned_not_denied() {
        let c = pvc(Some("manual"), &["ReadWriteMany"], None);
        // Without any source of PVs (no cluster, `review`), the provisioner table judges as it
        // always did: the public conformance contract ("RWX on a local class is rejected").
        assert!(
            static_decide(None, Object::Pvc(&c), "PersistentVolumeClaim")
                .denial
                .is_some()
        );
        // PVs known, none of the class: node-local is an assumption, a warning.
        {
            let pvs = Some(&[][..]);
            let d = static_decide(pvs, Object::Pvc(&c), "PersistentVolumeClaim");
            assert!(d.allowed(), "{:?}", d.denial);
            assert_eq!(
                d.warnings,
                [concat!(
                    r#"spec.accessModes: ReadWriteMany not judged: class "manual" (kubernetes.io/no-provisioner) "#,
                    "has no known PV, assumed local; if its PVs serve ReadWriteMany, set its kind in the policy \
                     or annotation storage-policy.io/kind"
                )]
            );
            assert!(d.warnings[0].chars().count() <= 256);
            assert_eq!(d.findings[0].action, Action::Warned);
        }
    }

    #[test]
    fn rwx_on_a_static_class_of_only_local_pvs_is_denied() {
        let pvs = [
            static_pv("a", local_source(), &["ReadWriteOnce"]),
            static_pv(
                "b",
                json!({"hostPath": {"path": "/data"}}),
                &["ReadWriteOnce"],
            ),
        ];
        let c = pvc(Some("manual"), &["ReadWriteMany"], None);
        let d = static_decide(Some(&pvs), Object::Pvc(&c), "PersistentVolumeClaim");
        assert!(d.denial.is_some());
        assert_eq!(
            d.warnings,
            [
                r#"class "manual" (kubernetes.io/no-provisioner) holds only local or hostPath PVs (2 known); for ReadWriteMany use nfs"#
            ]
        );
    }

    #[test]
    fn rwx_on_a_static_class_holding_an_nfs_pv_is_allowed() {
        let pvs = [
            static_pv("a", local_source(), &["ReadWriteOnce"]),
            static_pv("share", nfs_source(), &["ReadWriteMany"]),
        ];
        let c = pvc(Some("manual"), &["ReadWriteMany"], None);
        let d = static_decide(Some(&pvs), Object::Pvc(&c), "PersistentVolumeClaim");
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn an_nfs_pv_with_rwx_is_never_refused_whatever_its_class() {
        let share = static_pv("share", nfs_source(), &["ReadWriteMany"]);
        let locals = [static_pv("a", local_source(), &["ReadWriteOnce"])];
        for pvs in [None, Some(&locals[..])] {
            let d = static_decide(pvs, Object::Pv(&share), "PersistentVolume");
            assert_eq!(d, Decision::default());
        }
        // Even in a class declared (or known) to be block storage.
        let p = policy();
        let mut in_block = share.clone();
        in_block.spec.as_mut().unwrap().storage_class_name = Some("oci-bv".into());
        let d = decide_obj(
            &p,
            Operation::Create,
            ("", "PersistentVolume"),
            Object::Pv(&in_block),
            None,
            Mode::Enforce,
        );
        assert_eq!(d, Decision::default());
        // A local PV with RWX is refused by its source, in a static class too.
        let local = static_pv("a", local_source(), &["ReadWriteMany"]);
        assert!(
            static_decide(None, Object::Pv(&local), "PersistentVolume")
                .denial
                .is_some()
        );
    }

    #[test]
    fn a_declared_kind_on_a_static_class_is_judged_without_pvs() {
        let p = policy();
        assert!(
            decide(
                &p,
                &pvc(Some("local-storage"), &["ReadWriteMany"], None),
                Mode::Enforce
            )
            .denial
            .is_some(),
            "local-storage declares kind: local"
        );
    }

    /// A StatefulSet's claim templates are read up to MAX_VOLUMES; the rest are said unjudged.
    #[test]
    fn claim_templates_past_the_cap_are_said_unjudged() {
        let p = policy();
        let cat = p.static_catalog();
        let sts = |n: usize| -> StatefulSet {
            let templates: Vec<_> = (0..n)
                .map(|i| {
                    json!({"metadata": {"name": format!("t{i}")},
                    "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv"}})
                })
                .collect();
            serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
                "selector": {}, "serviceName": "x", "template": {},
                "volumeClaimTemplates": templates}}))
            .unwrap()
        };
        for (n, judged, cut) in [
            (MAX_VOLUMES, MAX_VOLUMES, false),
            (MAX_VOLUMES + 1, MAX_VOLUMES, true),
        ] {
            let s = sts(n);
            let budget = crate::policy::Budget::default();
            let mut cx = p.context(Endpoint::Validate, &cat);
            cx.budget = Some(&budget);
            let v = violations(&cx, Some("default"), &Object::StatefulSet(&s));
            assert_eq!(v.len(), judged);
            assert_eq!(
                budget.skipped()
                    == [format!(
                        "accessModes: claim templates past the first {MAX_VOLUMES}"
                    )],
                cut
            );
        }
    }
}
