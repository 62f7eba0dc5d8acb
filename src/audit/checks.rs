//! What the audit reports beyond the webhook's own answers: the API server's validation of local
//! volumes (the request fails there whatever the webhook says), and checks that need the whole
//! inventory (nodes, claim status, the annotated default class). Pure functions of the objects,
//! the policy and the catalog; every storage judgement is delegated to [`crate::policy`].

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde::Deserialize;
use serde_json::Value;

use super::report::{AuditFinding, ObjectRef, ObjectReport, Outcome, Stage};
use super::{AUDIT_USERNAME, ClassSource, Inventory};
use crate::cluster::default_interplay;
use crate::kinds::Kind;
use crate::policy::catalog::KIND_ANNOTATION;
use crate::policy::field::go_quote;
use crate::policy::node_selector::selects_any;
use crate::policy::pv_controller;
use crate::policy::rules::{
    access_modes, claim_ref, default_class, delete_in_use, missing_provisioner, node_affinity,
    reclaim_policy,
};
use crate::policy::storage;
use crate::policy::{
    AccessMode, Catalog, FieldError, Invalid, LiveState, Mode, Path, Policy, RuleId,
};

fn finding(
    rule: RuleId,
    stage: Stage,
    outcome: Outcome,
    message: String,
    class: Option<String>,
) -> AuditFinding {
    AuditFinding {
        rule: rule.as_str().to_owned(),
        stage: Some(stage),
        outcome,
        message,
        storage_class: class,
    }
}

/// The API server's own validation of a PersistentVolume's node affinity, run on the object as
/// the mutating webhooks left it (`ValidatePersistentVolumeSpec`): a `local` volume needs
/// `spec.nodeAffinity`, and a `nodeAffinity` needs `required` with at least one term. The
/// message is the API's (`PersistentVolume "x" is invalid: spec.nodeAffinity: Required value: ...`).
pub fn api_validation(kind: &Kind, patched: &Value) -> Option<AuditFinding> {
    if !kind.group.is_empty() || kind.kind != "PersistentVolume" {
        return None;
    }
    let pv = PersistentVolume::deserialize(patched).ok()?;
    let spec = pv.spec.as_ref()?;
    let path = Path::new("spec").child("nodeAffinity");
    let error = match &spec.node_affinity {
        None if spec.local.is_some() => {
            FieldError::required(path, "Local volume requires node affinity")
        }
        None => return None,
        Some(na) => match &na.required {
            None => FieldError::required(
                path.child("required"),
                "must specify required node constraints",
            ),
            Some(sel) if sel.node_selector_terms.is_empty() => FieldError::required(
                path.child("required").child("nodeSelectorTerms"),
                "must have at least one node selector term",
            ),
            Some(_) => return None,
        },
    };
    let invalid = Invalid {
        group: String::new(),
        kind: "PersistentVolume".to_owned(),
        name: pv.metadata.name.clone().unwrap_or_default(),
        errors: vec![error],
    };
    let class = spec.storage_class_name.clone().filter(|c| !c.is_empty());
    Some(finding(
        node_affinity::ID,
        Stage::Api,
        Outcome::Denied,
        invalid.message(),
        class,
    ))
}

/// Checks on one object that need more than the webhook sees on CREATE: its status, the nodes,
/// the cluster's annotated default class.
pub fn object_checks(
    policy: &Policy,
    catalog: &Catalog,
    live: &LiveState,
    object: &Value,
) -> Vec<AuditFinding> {
    let mut out = Vec::new();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (api_version, kind) {
        ("v1", "PersistentVolumeClaim") => {
            if let Ok(pvc) = PersistentVolumeClaim::deserialize(object) {
                out.extend(pending_on_wrong_kind(policy, catalog, &pvc));
                out.extend(terminating_in_use(policy, catalog, &pvc));
            }
        }
        ("v1", "PersistentVolume") => {
            if let Ok(pv) = PersistentVolume::deserialize(object) {
                out.extend(affinity_to_missing_nodes(policy, live, &pv));
                out.extend(stranded_volume(policy, catalog, &pv));
            }
        }
        _ => {}
    }
    out
}

/// A claim `Terminating` because pods still use it (`deleteInUse`): the pods among the inventory
/// (the cluster's, with `--cluster`) that hold it, as the pvc-protection controller counts them.
fn terminating_in_use(
    policy: &Policy,
    catalog: &Catalog,
    pvc: &PersistentVolumeClaim,
) -> Option<AuditFinding> {
    let namespace = pvc.metadata.namespace.as_deref();
    if policy.mode_for(delete_in_use::ID, catalog, namespace) == Mode::Off {
        return None;
    }
    let message = crate::policy::pods::terminating_in_use(catalog.pods()?, pvc)?;
    Some(finding(
        delete_in_use::ID,
        Stage::Inventory,
        Outcome::Warned,
        message,
        None,
    ))
}

/// A claim Pending on a class whose storage cannot serve its access modes never binds: the
/// provisioner only says so in `ProvisioningFailed` events.
fn pending_on_wrong_kind(
    policy: &Policy,
    catalog: &Catalog,
    pvc: &PersistentVolumeClaim,
) -> Option<AuditFinding> {
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
        return None;
    }
    let spec = pvc.spec.as_ref()?;
    let class = spec
        .storage_class_name
        .as_deref()
        .filter(|c| !c.is_empty())?;
    let info = catalog.class(class)?;
    let target = storage::Target::of_class(catalog, class).filter(storage::Target::is_certain)?;
    let volume_mode = spec.volume_mode.as_deref();
    let bad = if target.serves_volume_mode(volume_mode) {
        spec.access_modes
            .iter()
            .flatten()
            .filter_map(|m| AccessMode::parse(m))
            .find(|m| target.rejects(&policy.settings, *m, volume_mode))?
            .as_str()
            .to_owned()
    } else {
        "volumeMode Block".to_owned()
    };
    Some(finding(
        access_modes::ID,
        Stage::Inventory,
        Outcome::Warned,
        format!(
            "claim is Pending on class {} ({}), {} storage that cannot serve {bad}: it will not bind; \
             recreate it with a class that can",
            go_quote(class),
            info.provisioner,
            target.kind.as_str()
        ),
        Some(class.to_owned()),
    ))
}

/// A local volume pinned to nodes that are gone: its pods stay Pending with
/// `node(s) had volume node affinity conflict`.
fn affinity_to_missing_nodes(
    policy: &Policy,
    live: &LiveState,
    pv: &PersistentVolume,
) -> Option<AuditFinding> {
    let nodes = live.nodes.as_ref()?;
    let spec = pv.spec.as_ref()?;
    if spec.local.is_none() && spec.host_path.is_none() {
        return None;
    }
    let sel = spec.node_affinity.as_ref()?.required.as_ref()?;
    let label = &policy.settings.node_label;
    let mut missing: Vec<&str> = Vec::new();
    for term in &sel.node_selector_terms {
        for r in term.match_expressions.iter().flatten() {
            if r.operator != "In" || (r.key != *label && r.key != "kubernetes.io/hostname") {
                continue;
            }
            for v in r.values.iter().flatten() {
                let exists = nodes
                    .iter()
                    .any(|(_, labels)| labels.get(&r.key) == Some(v));
                if !exists && !missing.contains(&v.as_str()) {
                    missing.push(v);
                }
            }
        }
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                for v in r.values.iter().flatten() {
                    if !nodes.iter().any(|(n, _)| n == v) && !missing.contains(&v.as_str()) {
                        missing.push(v);
                    }
                }
            }
        }
    }
    let class = spec.storage_class_name.clone().filter(|c| !c.is_empty());
    let message = if !selects_any(sel, nodes) {
        let why = if missing.is_empty() {
            String::new()
        } else {
            format!(" (no node {})", missing.join(", "))
        };
        format!(
            "spec.nodeAffinity selects no existing node{why}: pods using this volume stay Pending with \
             \"node(s) had volume node affinity conflict\""
        )
    } else if !missing.is_empty() {
        format!(
            "spec.nodeAffinity names nodes that do not exist: {}",
            missing.join(", ")
        )
    } else {
        return None;
    };
    Some(finding(
        node_affinity::ID,
        Stage::Inventory,
        Outcome::Warned,
        message,
        class,
    ))
}

/// A live volume the PV controller has given up on: `Failed` because its reclaim policy had no
/// deleter or recycler, or `Available` for good because its `claimRef` names no namespace. The
/// rule files judge (the same functions the webhook runs); this only reads the phase.
fn stranded_volume(
    policy: &Policy,
    catalog: &Catalog,
    pv: &PersistentVolume,
) -> Option<AuditFinding> {
    let phase = pv.status.as_ref()?.phase.as_deref()?;
    let on = |rule: RuleId| {
        !policy.is_exempt(None, AUDIT_USERNAME) && policy.mode_for(rule, catalog, None) != Mode::Off
    };
    let (rule, message) = match phase {
        "Failed" if on(reclaim_policy::ID) => {
            let u = pv_controller::unhonoured(pv)?;
            let message = format!(
                "volume is Failed: its {} reclaim policy cannot be carried out ({}); the data is still \
                 there: clean it up and delete the PV, or set Retain and remove spec.claimRef to reuse it",
                u.policy,
                go_quote(&u.reason)
            );
            (reclaim_policy::ID, message)
        }
        "Available" if on(claim_ref::ID) => {
            let name = pv_controller::missing_namespace(pv)?;
            let message = format!(
                "volume is Available for good: spec.claimRef {} names no namespace, so no claim ever binds \
                 it; set spec.claimRef.namespace",
                go_quote(name)
            );
            (claim_ref::ID, message)
        }
        _ => return None,
    };
    let class = pv.spec.as_ref()?.storage_class_name.clone();
    Some(finding(
        rule,
        Stage::Inventory,
        Outcome::Warned,
        message,
        class.filter(|c| !c.is_empty()),
    ))
}

fn class_report(c: &ClassSource) -> ObjectReport {
    ObjectReport {
        source: c.source.clone(),
        object: ObjectRef {
            api_version: "storage.k8s.io/v1".to_owned(),
            kind: "StorageClass".to_owned(),
            namespace: None,
            name: c.class.name.clone(),
        },
        findings: Vec::new(),
        patch: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Checks on the StorageClasses of the inventory:
/// several annotated defaults, an unknown `storage-policy.io/kind` value.
pub fn class_checks(
    policy: &Policy,
    catalog: &Catalog,
    inventory: &Inventory,
) -> Vec<ObjectReport> {
    // Which annotated default Kubernetes uses is computed in one place
    // (`cluster::default_interplay`).
    let interplay = default_interplay(policy, catalog);
    let picked = interplay.as_ref().map(|i| i.picked().name.clone());
    let mut out = Vec::new();
    for c in &inventory.classes {
        let mut report = class_report(c);
        if c.class.is_default
            && let Some(p) = &picked
            && *p != c.class.name
        {
            report.findings.push(finding(
                default_class::ID,
                Stage::Inventory,
                Outcome::Warned,
                format!(
                    "several classes are annotated default: Kubernetes uses {} (the newest), never this one",
                    go_quote(p)
                ),
                Some(c.class.name.clone()),
            ));
        }
        if !c.class.kind_annotation_is_valid() {
            let value = c.class.kind_annotation.as_deref().unwrap_or_default();
            let resolved = catalog
                .class(&c.class.name)
                .and_then(|i| i.kind)
                .map(|k| format!("{} storage by its provisioner", k.as_str()))
                .unwrap_or_else(|| "unknown storage (no access-mode rule applies)".to_owned());
            report.findings.push(finding(
                access_modes::ID,
                Stage::Inventory,
                Outcome::Warned,
                format!(
                    "annotation {KIND_ANNOTATION}: {} is not block, local or shared: ignored, the class is {resolved}",
                    go_quote(value)
                ),
                Some(c.class.name.clone()),
            ));
        }
        if let Some(f) = missing_provisioner_finding(policy, catalog, inventory, c) {
            report.findings.push(f);
        }
        if !report.findings.is_empty() {
            out.push(report);
        }
    }
    out
}

/// Claims listed in a report of a class whose provisioner is missing, at most.
const WAITING_SHOWN: usize = 5;

/// A class whose CSI driver the cluster (or the audited files' CSIDrivers and CSINodes) does
/// not have, with the claims of that class among the objects that are not bound: they wait
/// for it. Says nothing when CSI drivers are not known or the rule is off.
fn missing_provisioner_finding(
    policy: &Policy,
    catalog: &Catalog,
    inventory: &Inventory,
    c: &ClassSource,
) -> Option<AuditFinding> {
    if policy.mode_for(missing_provisioner::ID, catalog, None) == Mode::Off {
        return None;
    }
    let absent = crate::policy::csi::absent(
        catalog.csi(),
        &policy.settings.provisioners,
        &c.class.provisioner,
    )?;
    let mut waiting: Vec<String> = inventory
        .objects
        .iter()
        .filter(|d| d.value.get("kind").and_then(Value::as_str) == Some("PersistentVolumeClaim"))
        .filter_map(|d| serde_json::from_value::<PersistentVolumeClaim>(d.value.clone()).ok())
        .filter(|pvc| {
            crate::policy::volumes::claim_class(pvc).as_deref() == Some(c.class.name.as_str())
                && pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound")
                && pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .is_none_or(str::is_empty)
        })
        .map(|pvc| {
            format!(
                "{}/{}",
                pvc.metadata.namespace.as_deref().unwrap_or("default"),
                pvc.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    waiting.sort();
    let count = waiting.len();
    let claims = match count {
        0 => "no claim waits on it yet".to_owned(),
        n => {
            let more = if n > WAITING_SHOWN {
                format!(" and {} more", n - WAITING_SHOWN)
            } else {
                String::new()
            };
            waiting.truncate(WAITING_SHOWN);
            format!(
                "{n} claim{} Pending on it: {}{more}",
                if n == 1 { "" } else { "s" },
                waiting.join(", ")
            )
        }
    };
    Some(finding(
        missing_provisioner::ID,
        Stage::Inventory,
        Outcome::Warned,
        format!(
            "provisioner {}: the class {}; {claims} (event ExternalProvisioning: {})",
            go_quote(absent.provisioner),
            absent.why(),
            crate::policy::csi::external_provisioning_event(absent.driver)
        ),
        Some(c.class.name.clone()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::review::audited_kind;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, None, false).unwrap()
    }

    fn nodes(names: &[&str]) -> LiveState {
        LiveState {
            nodes: Some(
                names
                    .iter()
                    .map(|n| {
                        let mut l = BTreeMap::new();
                        l.insert("kubernetes.io/hostname".to_owned(), (*n).to_owned());
                        ((*n).to_owned(), l)
                    })
                    .collect::<Vec<_>>()
                    .into(),
            ),
            ..Default::default()
        }
    }

    fn local_pv(values: &[&str]) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ssd"},
               "spec": {"local": {"path": "/mnt/ssd"}, "accessModes": ["ReadWriteOnce"],
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": values}]}]}}}})
    }

    #[test]
    fn api_refuses_local_volume_without_node_affinity() {
        let kind = audited_kind("v1", "PersistentVolume").unwrap();
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ssd"},
                        "spec": {"local": {"path": "/mnt/ssd"}}});
        let f = api_validation(kind, &pv).expect("refused");
        assert_eq!(
            f.message,
            r#"PersistentVolume "ssd" is invalid: spec.nodeAffinity: Required value: Local volume requires node affinity"#
        );
        assert_eq!(f.outcome, Outcome::Denied);
        let empty = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ssd"},
                           "spec": {"local": {"path": "/mnt/ssd"}, "nodeAffinity": {}}});
        assert!(api_validation(kind, &empty).unwrap().message.ends_with(
            "spec.nodeAffinity.required: Required value: must specify required node constraints"
        ));
        assert!(api_validation(kind, &local_pv(&["a"])).is_none());
        let host_path = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "h"},
                               "spec": {"hostPath": {"path": "/srv"}}});
        assert!(
            api_validation(kind, &host_path).is_none(),
            "hostPath needs no affinity"
        );
    }

    #[test]
    fn reports_local_volumes_pinned_to_missing_nodes() {
        let p = policy("");
        let cat = p.static_catalog();
        let live = nodes(&["k8s-worker-01"]);
        let gone = object_checks(&p, &cat, &live, &local_pv(&["k8s-worker-03"]));
        assert_eq!(gone.len(), 1);
        assert!(
            gone[0]
                .message
                .contains("selects no existing node (no node k8s-worker-03)"),
            "{}",
            gone[0].message
        );
        let partly = object_checks(
            &p,
            &cat,
            &live,
            &local_pv(&["k8s-worker-01", "k8s-worker-02"]),
        );
        assert!(
            partly[0].message.ends_with("do not exist: k8s-worker-02"),
            "{}",
            partly[0].message
        );
        assert!(object_checks(&p, &cat, &live, &local_pv(&["k8s-worker-01"])).is_empty());
        assert!(
            object_checks(&p, &cat, &LiveState::default(), &local_pv(&["x"])).is_empty(),
            "nodes unknown"
        );
    }

    #[test]
    fn reports_live_volumes_stranded_by_reclaim_policy_or_claim_ref() {
        let p = policy("");
        let cat = p.static_catalog();
        let pv = |phase: &str, policy: &str, claim_ref: Value| {
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-web-0"},
                   "spec": {"hostPath": {"path": "/data/web-0"}, "persistentVolumeReclaimPolicy": policy,
                            "claimRef": claim_ref},
                   "status": {"phase": phase}})
        };
        let live = LiveState::default();
        let failed = object_checks(
            &p,
            &cat,
            &live,
            &pv(
                "Failed",
                "Delete",
                json!({"name": "www-web-0", "namespace": "web"}),
            ),
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].rule, "reclaimPolicy");
        assert!(
            failed[0].message.starts_with(
                "volume is Failed: its Delete reclaim policy cannot be carried out (\"host_path deleter only supports \
                 /tmp/.+ but received provided /data/web-0\")"
            ),
            "{}",
            failed[0].message
        );
        let stuck = object_checks(
            &p,
            &cat,
            &live,
            &pv("Available", "Retain", json!({"name": "www-web-0"})),
        );
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].rule, "claimRefNamespace");
        assert!(
            stuck[0]
                .message
                .contains(r#"spec.claimRef "www-web-0" names no namespace"#)
        );
        for quiet in [
            pv("Failed", "Retain", json!({"name": "www-web-0"})),
            pv("Bound", "Delete", json!({"name": "www-web-0"})),
            pv(
                "Available",
                "Retain",
                json!({"name": "www-web-0", "namespace": "web"}),
            ),
        ] {
            assert!(object_checks(&p, &cat, &live, &quiet).is_empty(), "{quiet}");
        }
        for quiet_policy in [
            "rules:\n  reclaimPolicy: {mode: off}\n  claimRefNamespace: {mode: off}\n",
            "exemptions: {usernames: [storage-policy-webhook-audit]}\n",
        ] {
            let p = policy(quiet_policy);
            let cat = p.static_catalog();
            for stranded in [
                pv("Failed", "Delete", json!({"name": "x"})),
                pv("Available", "Retain", json!({"name": "x"})),
            ] {
                assert!(
                    object_checks(&p, &cat, &live, &stranded).is_empty(),
                    "{quiet_policy}: {stranded}"
                );
            }
        }
    }

    #[test]
    fn reports_claims_pending_on_a_class_that_cannot_serve_them() {
        let p = policy(
            "storageClasses:\n  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com}\n",
        );
        let cat = p.static_catalog();
        let pvc = |phase: &str, mode: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d", "namespace": "a"},
                   "spec": {"storageClassName": "oci-bv", "accessModes": [mode]}, "status": {"phase": phase}})
        };
        let f = object_checks(
            &p,
            &cat,
            &LiveState::default(),
            &pvc("Pending", "ReadWriteMany"),
        );
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains("cannot serve ReadWriteMany"),
            "{}",
            f[0].message
        );
        assert!(
            object_checks(
                &p,
                &cat,
                &LiveState::default(),
                &pvc("Bound", "ReadWriteMany")
            )
            .is_empty()
        );
        assert!(
            object_checks(
                &p,
                &cat,
                &LiveState::default(),
                &pvc("Pending", "ReadWriteOnce")
            )
            .is_empty()
        );
    }

    #[test]
    fn an_annotated_default_beside_policy_defaults_is_no_finding_any_more() {
        // The webhook replaces the plugin's class on claims created without one
        // (managedFields, `storage::class_owner`), so the audit's answer for the claim as
        // written is what the cluster does: nothing to add about the plugin.
        let p = policy(
            "storageClasses:\n  - {name: nfs, provisioner: nfs.csi.k8s.io}\nrules:\n  defaultStorageClass:\n    byAccessMode: {ReadWriteMany: nfs}\n",
        );
        let mut inv = Inventory::default();
        inv.add(crate::audit::Document {
            source: crate::audit::Location::file("sc.yaml"),
            value: json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "ebs.csi.aws.com",
                          "metadata": {"name": "gp3", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
        });
        let cat = p.catalog(&inv.live);
        let reports = class_checks(&p, &cat, &inv);
        assert!(
            reports.iter().all(|r| r.findings.is_empty()),
            "{:?}",
            reports.iter().map(|r| &r.findings).collect::<Vec<_>>()
        );
        let rwx = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"},
                         "spec": {"accessModes": ["ReadWriteMany"]}});
        assert!(object_checks(&p, &cat, &inv.live, &rwx).is_empty());
    }
}
