//! Rule `missingProvisioner`: a claim (or a StatefulSet's claim templates, or a generic
//! ephemeral volume) of a dynamic class whose CSI driver the cluster does not have, and a
//! StorageClass created for such a driver, get a warning quoting the event the user would
//! otherwise wait for.
//!
//! The PV controller leaves every class that names no in-tree plugin to an external provisioner
//! (`findProvisionablePlugin`, `provisionClaimOperationExternal` in
//! `pkg/controller/volume/persistentvolume/pv_controller.go`): it records the
//! `ExternalProvisioning` event and waits, forever if nobody provisions. In-tree names migrate to
//! their CSI driver ([`csi::MIGRATED`]), which the event then names. A running CSI driver
//! registers on the nodes (CSINode `spec.drivers`) and usually has a CSIDriver object; when
//! neither names the class's driver, nobody is there to provision. Warnings only, in every mode:
//! the driver may be installed a minute later (and a controller-only driver registers on no
//! node, though it ships a CSIDriver object as a rule).
//!
//! Only CSI drivers can be judged: a provisioner that is no CSI driver registers nowhere. The
//! rule judges migrated in-tree names, names that say they are CSI drivers
//! ([`csi::looks_like_csi`]) and the policy's `csiDrivers`; never the common non-CSI
//! provisioners ([`csi::NOT_CSI`]), the policy's `notCsi`, or anything else. It says nothing
//! without the cluster's CSIDrivers and CSINodes (no cluster, not yet listed), for classes it
//! does not know (`unknownClass` speaks of those), and for claims already bound or pre-bound
//! with `spec.volumeName`. Per claim site: two set look-ups.

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::kinds::Operation;
use crate::policy::engine::config::{ConfigError, Section};
use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::{CREATE, CREATE_UPDATE};
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::catalog::Catalog;
use crate::policy::model::csi::{self, Judged};
use crate::policy::model::field::{Path, go_quote};
use crate::policy::model::limits::MAX_VOLUMES;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::storage::{self, Settings};

pub const META: Meta = Meta {
    key: "missingProvisioner",
    annotation: "missing-provisioner",
    summary: "warns when a claim, claim template or new StorageClass needs a CSI driver that no node registers and no CSIDriver names",
    denies: "never denies",
    warns: "a dynamic class whose CSI driver (the migrated one for in-tree names) no node registers (CSINode) and no CSIDriver names; only CSI drivers are judged (non-CSI provisioners register nowhere)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[
            Judges::Claims.on(CREATE),
            Judges::ClaimTemplates.on(CREATE_UPDATE),
            Judges::PodSpecs(PodFilter::EphemeralVolumes).on(CREATE_UPDATE),
            Judges::Classes.on(CREATE),
        ],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::new(&META, compile);

/// `rules.missingProvisioner` in the policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    /// Provisioners that are CSI drivers though their names do not say so: judged.
    #[serde(default)]
    csi_drivers: Vec<String>,
    /// Provisioners that register nowhere (no CSI driver): never judged.
    #[serde(default)]
    not_csi: Vec<String>,
}

#[derive(Debug, Default)]
struct MissingProvisioner {
    judged: Judged,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    let mut judged = Judged::default();
    for (key, list, set) in [
        ("csiDrivers", &c.csi_drivers, &mut judged.csi),
        ("notCsi", &c.not_csi, &mut judged.not_csi),
    ] {
        for (i, name) in list.iter().enumerate() {
            let at = format!("{key}[{i}]");
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(section.invalid(
                    &at,
                    None,
                    format!("{name:?} is not a provisioner name"),
                ));
            }
            if name == crate::policy::model::catalog::NO_PROVISIONER {
                return Err(section.invalid(
                    &at,
                    None,
                    format!("{name} provisions nothing: it is never judged"),
                ));
            }
            if !set.insert(name.clone()) {
                return Err(section.invalid(&at, None, format!("{name:?} is listed twice")));
            }
        }
    }
    if let Some((i, name)) = c
        .not_csi
        .iter()
        .enumerate()
        .find(|(_, n)| judged.csi.contains(*n))
    {
        return Err(section.invalid(
            &format!("notCsi[{i}]"),
            None,
            format!("{name:?} is also in csiDrivers"),
        ));
    }
    if let Some((i, name)) = c
        .csi_drivers
        .iter()
        .enumerate()
        .find(|(_, n)| n.contains('/'))
    {
        return Err(section.invalid(
            &format!("csiDrivers[{i}]"),
            None,
            format!("{name:?} is no CSI driver name (they hold no '/')"),
        ));
    }
    Ok(Box::new(MissingProvisioner { judged }))
}

impl Rule for MissingProvisioner {
    fn configure(&self, settings: &mut Settings) {
        settings.provisioners = self.judged.clone();
    }

    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        if cx.catalog.csi().is_none() {
            return;
        }
        let Some(object) = req.object else { return };
        if let Object::StorageClass(sc) = object {
            if req.operation != Operation::Create {
                return;
            }
            let name = sc.metadata.name.as_deref().unwrap_or_default();
            if let Some(m) = csi::absent(cx.catalog.csi(), &self.judged, &sc.provisioner) {
                d.warning(
                    ID,
                    Some(name.to_owned()),
                    format!(
                        "provisioner: claims of StorageClass {} will stay Pending: {}",
                        shown(name),
                        m.why()
                    ),
                );
                d.warn(csi::external_provisioning_event(m.driver));
            }
            return;
        }
        if matches!(object, Object::Pvc(_)) && req.operation != Operation::Create {
            return;
        }
        for site in sites(cx.settings, cx.catalog, req.namespace, &object) {
            let Some(class) = cx.catalog.class(&site.class) else {
                continue;
            };
            let Some(m) = csi::absent(cx.catalog.csi(), &self.judged, &class.provisioner) else {
                continue;
            };
            let who = if site.template {
                "claims from this template stay"
            } else {
                "the claim stays"
            };
            d.warning(
                ID,
                Some(site.class.clone()),
                format!(
                    "{}: {who} Pending: StorageClass {} {}",
                    site.field,
                    shown(&site.class),
                    m.why()
                ),
            );
            d.warn(csi::external_provisioning_event(m.driver));
        }
    }
}

/// A name as messages show it: quoted, cut to 63 characters (names may have 253).
fn shown(name: &str) -> String {
    if name.chars().count() <= 63 {
        go_quote(name)
    } else {
        format!(
            "{}...",
            go_quote(&name.chars().take(63).collect::<String>())
        )
    }
}

/// A place that makes a claim, and the class the claim gets.
struct Site {
    class: String,
    field: Path,
    template: bool,
}

/// The claim sites of an object and the class each lands on (its own, or the default it would
/// get); sites with no class (`""`: static binding) and claims that are bound or pre-bound
/// (`spec.volumeName`: the PV controller binds, nothing provisions) are left out.
fn sites(
    settings: &Settings,
    catalog: &Catalog,
    namespace: Option<&str>,
    object: &Object<'_>,
) -> Vec<Site> {
    let mut out = Vec::new();
    let mut add = |meta: Option<&ObjectMeta>,
                   spec: Option<&PersistentVolumeClaimSpec>,
                   at: Path,
                   template: bool| {
        if spec
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty())
        {
            return;
        }
        // Where the class is, or goes (the default class is written there).
        if let Some(class) = storage::claim_class(settings, catalog, namespace, meta, spec) {
            out.push(Site {
                class,
                field: at.child("spec").child("storageClassName"),
                template,
            });
        }
    };
    match *object {
        Object::Pvc(pvc) => {
            // Bound as sent, or as the cluster's claims say (`audit` reviews existing claims
            // without their status).
            let name = pvc.metadata.name.as_deref().unwrap_or_default();
            let known_bound = catalog.volumes().is_some_and(|i| {
                i.claim(namespace.unwrap_or_default(), name)
                    .is_some_and(|c| c.is_bound())
            });
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") && !known_bound
            {
                add(
                    Some(&pvc.metadata),
                    pvc.spec.as_ref(),
                    Path::default(),
                    false,
                );
            }
        }
        Object::StatefulSet(sts) => {
            let spec = sts.spec.as_ref();
            let templates = spec.and_then(|s| s.volume_claim_templates.as_ref());
            for (i, pvc) in templates
                .into_iter()
                .flatten()
                .take(MAX_VOLUMES)
                .enumerate()
            {
                let at = Path::new("spec").child("volumeClaimTemplates").index(i);
                add(Some(&pvc.metadata), pvc.spec.as_ref(), at, true);
            }
            pod_spec(
                spec.and_then(|s| s.template.spec.as_ref()),
                "spec.template.spec",
                &mut add,
            );
        }
        Object::PodSpec { spec, path, .. } => pod_spec(spec, path, &mut add),
        Object::Pv(_) | Object::StorageClass(_) => {}
    }
    out
}

/// The generic ephemeral volumes of a pod spec (the first [`MAX_VOLUMES`]).
fn pod_spec(
    spec: Option<&PodSpec>,
    path: &str,
    add: &mut impl FnMut(Option<&ObjectMeta>, Option<&PersistentVolumeClaimSpec>, Path, bool),
) {
    let volumes = spec.and_then(|s| s.volumes.as_ref());
    for (i, v) in volumes.into_iter().flatten().take(MAX_VOLUMES).enumerate() {
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            let at = Path::new(path)
                .child("volumes")
                .index(i)
                .child("ephemeral")
                .child("volumeClaimTemplate");
            add(tpl.metadata.as_ref(), Some(&tpl.spec), at, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::catalog::{LiveClass, LiveState};
    use crate::policy::decision::Action;
    use crate::policy::testing::{create, names};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use k8s_openapi::api::storage::v1::StorageClass;
    use serde_json::{Value, json};

    const EVENT: &str = "Waiting for a volume to be created either by the external provisioner \
        'ebs.csi.aws.com' or manually by the system administrator. If volume creation is \
        delayed, please verify that the provisioner is running and correctly registered.";

    fn class(name: &str, provisioner: &str, default: bool) -> LiveClass {
        LiveClass {
            name: name.to_owned(),
            provisioner: provisioner.to_owned(),
            is_default: default,
            ..Default::default()
        }
    }

    /// A cluster with these CSIDriver objects and node registrations (`None`: not listed).
    fn live(objects: Option<&[&str]>, registered: Option<&[&str]>) -> LiveState {
        LiveState {
            classes: vec![
                class("gp3", "ebs.csi.aws.com", false),
                class("gp2", "kubernetes.io/aws-ebs", true),
                class("efs", "efs.csi.aws.com", false),
                class("local-path", "rancher.io/local-path", false),
                class("manual", "kubernetes.io/no-provisioner", false),
                class("nas", "example.com/nas", false),
                class("longhorn", "driver.longhorn.io", false),
            ],
            csi_drivers: objects.map(names),
            csi_registered: registered.map(names),
            ..Default::default()
        }
    }

    fn pvc(extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn decide_with(policy: &str, live: &LiveState, op: Operation, obj: Object<'_>) -> Decision {
        let p = Policy::parse(policy, None, false).unwrap();
        let cat = p.catalog(live);
        // In namespace default whatever the object (the rule reads no subject).
        let req = create(obj).operation(op).namespace(Some("default"));
        let d = req.check(&p, &cat, ID, Endpoint::Validate, Acting::Enforce);
        assert!(d.allowed(), "never denies");
        assert!(
            d.findings
                .iter()
                .all(|f| f.rule == ID && f.action == Action::Warned)
        );
        assert_eq!(
            d.audit_annotations.contains_key("missing-provisioner"),
            !d.warnings.is_empty()
        );
        d
    }

    fn decide(live: &LiveState, obj: Object<'_>) -> Vec<String> {
        decide_with("", live, Operation::Create, obj).warnings
    }

    /// EKS without the EBS CSI add-on: one node runs only the EFS driver.
    fn eks() -> LiveState {
        live(Some(&[]), Some(&["efs.csi.aws.com"]))
    }

    #[test]
    fn warns_on_a_claim_whose_csi_driver_runs_nowhere() {
        let claim = pvc(json!({"spec": {"storageClassName": "gp3"}}));
        let w = decide(&eks(), Object::Pvc(&claim));
        assert_eq!(
            w,
            [
                "spec.storageClassName: the claim stays Pending: StorageClass \"gp3\" needs CSI \
                 driver \"ebs.csi.aws.com\", which no node registers (CSINode) and \
                 no CSIDriver names",
                EVENT
            ]
        );
        assert!(w.iter().all(|w| w.chars().count() <= 256));
    }

    #[test]
    fn an_in_tree_class_is_judged_by_its_migrated_driver() {
        let claim = pvc(json!({"spec": {"storageClassName": "gp2"}}));
        let w = decide(&eks(), Object::Pvc(&claim));
        assert!(
            w[0].contains(
                "needs CSI driver \"ebs.csi.aws.com\" (migrated from kubernetes.io/aws-ebs)"
            ),
            "{w:?}"
        );
        assert_eq!(w[1], EVENT, "the event names the CSI driver");
        // Without a class the claim gets the default, gp2.
        let claim = pvc(json!({}));
        let w = decide(&eks(), Object::Pvc(&claim));
        assert!(
            w[0].starts_with(
                "spec.storageClassName: the claim stays Pending: StorageClass \"gp2\""
            ),
            "{w:?}"
        );
    }

    #[test]
    fn a_node_registration_or_a_csidriver_object_is_enough() {
        let claim = pvc(json!({"spec": {"storageClassName": "gp2"}}));
        let on_a_node = live(Some(&[]), Some(&["ebs.csi.aws.com"]));
        assert!(decide(&on_a_node, Object::Pvc(&claim)).is_empty());
        let object_only = live(Some(&["ebs.csi.aws.com"]), Some(&[]));
        assert!(decide(&object_only, Object::Pvc(&claim)).is_empty());
        let efs = pvc(json!({"spec": {"storageClassName": "efs"}}));
        assert!(decide(&eks(), Object::Pvc(&efs)).is_empty());
    }

    #[test]
    fn silent_until_both_csi_lists_are_known() {
        let claim = pvc(json!({"spec": {"storageClassName": "gp3"}}));
        for l in [
            live(None, None),
            live(Some(&[]), None),
            live(None, Some(&[])),
        ] {
            assert!(decide(&l, Object::Pvc(&claim)).is_empty());
        }
        // No cluster at all: the policy's classes alone.
        let p = "storageClasses:\n  - {name: gp3, provisioner: ebs.csi.aws.com}\n";
        let d = decide_with(
            p,
            &LiveState::default(),
            Operation::Create,
            Object::Pvc(&claim),
        );
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn never_judges_what_registers_nowhere() {
        for c in ["local-path", "manual", "nas", "unknown-class"] {
            let claim = pvc(json!({"spec": {"storageClassName": c}}));
            assert!(decide(&eks(), Object::Pvc(&claim)).is_empty(), "{c}");
        }
        let static_claim = pvc(json!({"spec": {"storageClassName": ""}}));
        assert!(decide(&eks(), Object::Pvc(&static_claim)).is_empty());
    }

    #[test]
    fn skips_bound_and_pre_bound_claims_and_updates() {
        let bound = pvc(json!({"spec": {"storageClassName": "gp3"}, "status": {"phase": "Bound"}}));
        assert!(decide(&eks(), Object::Pvc(&bound)).is_empty());
        let pre = pvc(json!({"spec": {"storageClassName": "gp3", "volumeName": "pv-1"}}));
        assert!(decide(&eks(), Object::Pvc(&pre)).is_empty());
        let claim = pvc(json!({"spec": {"storageClassName": "gp3"}}));
        let d = decide_with("", &eks(), Operation::Update, Object::Pvc(&claim));
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn the_policy_names_more_csi_drivers_and_non_csi_provisioners() {
        let longhorn = pvc(json!({"spec": {"storageClassName": "longhorn"}}));
        let w = decide(&eks(), Object::Pvc(&longhorn));
        assert!(
            w[0].contains("\"driver.longhorn.io\""),
            "known CSI driver: {w:?}"
        );
        let nas = pvc(json!({"spec": {"storageClassName": "nas"}}));
        let policy = "rules:\n  missingProvisioner:\n    csiDrivers: [example.com]\n    notCsi: [ebs.csi.aws.com]\n";
        let live = LiveState {
            classes: vec![
                class("nas", "example.com", false),
                class("gp3", "ebs.csi.aws.com", false),
            ],
            ..eks()
        };
        let d = decide_with(policy, &live, Operation::Create, Object::Pvc(&nas));
        assert!(
            d.warnings[0].contains("needs CSI driver \"example.com\""),
            "{:?}",
            d.warnings
        );
        let gp3 = pvc(json!({"spec": {"storageClassName": "gp3"}}));
        let d = decide_with(policy, &live, Operation::Create, Object::Pvc(&gp3));
        assert!(d.warnings.is_empty(), "notCsi: never judged");
        // The same lists reach the shared settings, which `audit` judges classes by.
        let p = Policy::parse(policy, None, false).unwrap();
        let cat = p.catalog(&live);
        let absent = |provisioner| csi::absent(cat.csi(), &p.settings.provisioners, provisioner);
        assert_eq!(absent("example.com").map(|a| a.driver), Some("example.com"));
        assert!(absent("ebs.csi.aws.com").is_none(), "notCsi");
    }

    #[test]
    fn rejects_bad_lists_naming_the_key() {
        for (yaml, want) in [
            (
                "csiDrivers: [\"a b\"]",
                "rules.missingProvisioner.csiDrivers[0]",
            ),
            ("notCsi: [x.io, x.io]", "rules.missingProvisioner.notCsi[1]"),
            (
                "csiDrivers: [x.io]\n    notCsi: [x.io]",
                "rules.missingProvisioner.notCsi[0]",
            ),
            (
                "csiDrivers: [example.com/nas]",
                "rules.missingProvisioner.csiDrivers[0]",
            ),
            (
                "notCsi: [kubernetes.io/no-provisioner]",
                "rules.missingProvisioner.notCsi[0]",
            ),
            ("known: [x.io]", "known"),
        ] {
            let text = format!("rules:\n  missingProvisioner:\n    {yaml}\n");
            let e = Policy::parse(&text, None, false).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn warns_on_statefulset_templates_and_ephemeral_volumes() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "serviceName": "web",
                "template": {"spec": {"containers": [], "volumes": [{"name": "scratch",
                    "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "gp3",
                        "accessModes": ["ReadWriteOnce"]}}}}]}},
                "volumeClaimTemplates": [
                    {"metadata": {"name": "www"}, "spec": {"storageClassName": "gp2"}},
                    {"metadata": {"name": "logs"}, "spec": {"storageClassName": "efs"}}]}}))
        .unwrap();
        let w = decide(&eks(), Object::StatefulSet(&sts));
        assert_eq!(w.len(), 3, "two sites, one event (same driver): {w:?}");
        assert!(w[0].starts_with(
            "spec.volumeClaimTemplates[0].spec.storageClassName: claims from this template stay Pending"
        ));
        assert!(w[2].starts_with(
            "spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName: claims from this template"
        ));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [{"name": "scratch",
                "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "gp3"}}}}]}}))
        .unwrap();
        let w = decide(
            &eks(),
            Object::PodSpec {
                spec: pod.spec.as_ref(),
                path: "spec",
                runs: Default::default(),
            },
        );
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn warns_on_a_new_class_only() {
        let sc: StorageClass = serde_json::from_value(json!({"metadata": {"name": "io2"},
            "provisioner": "kubernetes.io/aws-ebs"}))
        .unwrap();
        let w = decide(&eks(), Object::StorageClass(&sc));
        assert_eq!(
            w,
            [
                "provisioner: claims of StorageClass \"io2\" will stay Pending: needs CSI driver \
                 \"ebs.csi.aws.com\" (migrated from kubernetes.io/aws-ebs), which no \
                 node registers (CSINode) and no CSIDriver names",
                EVENT
            ]
        );
        let d = decide_with("", &eks(), Operation::Update, Object::StorageClass(&sc));
        assert!(d.warnings.is_empty());
        let plain: StorageClass = serde_json::from_value(json!({"metadata": {"name": "lp"},
            "provisioner": "rancher.io/local-path"}))
        .unwrap();
        assert!(decide(&eks(), Object::StorageClass(&plain)).is_empty());
    }

    #[test]
    fn off_in_the_policy_says_nothing() {
        let p = Policy::parse("rules:\n  missingProvisioner: {mode: off}\n", None, false).unwrap();
        let cat = p.catalog(&eks());
        let claim = pvc(json!({"spec": {"storageClassName": "gp3"}}));
        let req = create(Object::Pvc(&claim));
        assert!(req.decide(&p, &cat, Endpoint::Validate).warnings.is_empty());
        let p = Policy::parse("", None, false).unwrap();
        let d = req.decide(&p, &p.catalog(&eks()), Endpoint::Validate);
        assert!(d.warnings.iter().any(|w| w == EVENT), "{:?}", d.warnings);
    }
}
