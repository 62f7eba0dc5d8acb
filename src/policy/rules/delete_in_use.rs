//! Rule `deleteInUse`: deleting a claim that pods still use, or a PersistentVolume still bound,
//! does not delete it: it stays `Terminating` (`spec/kubernetes.md` section 5, "Claims that are
//! missing or going away"). Warned on the DELETE itself, with the pods that hold the claim and
//! what to do; never denied (the user may mean it: the claim goes once the pods do).
//!
//! Facts used (Kubernetes v1.37):
//! - A claim and a PV get the finalizers `kubernetes.io/pvc-protection` and
//!   `kubernetes.io/pv-protection` at creation (admission plugin `StorageObjectInUseProtection`,
//!   `plugin/pkg/admission/storage/storageobjectinuseprotection/admission.go`); a delete then
//!   only sets the deletion timestamp, and the object goes when the finalizer is removed.
//! - The pvc-protection controller removes its finalizer once no pod uses the claim
//!   (`processPVC`, `isBeingUsed`, `podUsesPVCForDeletion` in
//!   `pkg/controller/volume/pvcprotection/pvc_protection_controller.go`): which pods count is
//!   [`PodInfo::holds`].
//! - The pv-protection controller removes its finalizer once the PV is not `Bound`
//!   (`isBeingUsed` in `pkg/controller/volume/pvprotection/pv_protection_controller.go`:
//!   `pv.Status.Phase == v1.VolumeBound`): judged from the PV under deletion alone.
//!
//! The claim case reads the pod cache through its index by claim: the work is the pods that
//! name the claim, never the pods of the cluster. Silent without a cluster or before the pods
//! are listed.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::kinds::Operation;
use crate::policy::engine::decision::Decision;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::field::go_quote;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::pods::{
    PV_PROTECTION, PVC_PROTECTION, PodMap, controller_uid, describe_pods, protected_now, what_to_do,
};

pub const META: Meta = Meta {
    key: "deleteInUse",
    annotation: "delete-in-use",
    summary: "deleting a claim that scheduled pods still use, or a PV still Bound, is warned: it stays Terminating until they stop",
    denies: "never denies",
    warns: "DELETE of a PVC that scheduled pods still mount (kubernetes.io/pvc-protection; pod cache, cluster mode), DELETE of a PV whose status is Bound (kubernetes.io/pv-protection)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[
            Judges::Claims.on(&[Operation::Delete]),
            Judges::Volumes.on(&[Operation::Delete]),
        ],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<DeleteInUse>(&META);

#[derive(Debug, Default)]
struct DeleteInUse;

impl Rule for DeleteInUse {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        if req.operation != Operation::Delete {
            return;
        }
        let text = match req.old_object {
            Some(Object::Pvc(pvc)) => {
                let namespace = req
                    .namespace
                    .or(pvc.metadata.namespace.as_deref())
                    .unwrap_or_default();
                cx.catalog
                    .pods()
                    .and_then(|pods| claim_in_use(cx, pods, namespace, pvc))
            }
            Some(Object::Pv(pv)) => volume_bound(pv),
            _ => None,
        };
        if let Some(text) = text {
            d.warning(ID, None, text);
        }
    }
}

fn claim_in_use(
    cx: &Context<'_>,
    pods: &PodMap,
    namespace: &str,
    pvc: &PersistentVolumeClaim,
) -> Option<String> {
    if !protected_now(&pvc.metadata, PVC_PROTECTION) {
        return None;
    }
    let name = pvc.metadata.name.as_deref().unwrap_or_default();
    let held = pods.holding(namespace, name, controller_uid(&pvc.metadata), || {
        cx.spend(1) || {
            cx.skip(format!("pods of claim {namespace}/{name} past the budget"));
            false
        }
    });
    if held.is_empty() {
        return None;
    }
    Some(format!(
        "PersistentVolumeClaim {} is still used by {} pod(s): {}; it will stay Terminating \
         (finalizer {PVC_PROTECTION}) until none uses it: {}",
        go_quote(name),
        held.len(),
        describe_pods(&held),
        what_to_do(&held),
    ))
}

fn volume_bound(pv: &PersistentVolume) -> Option<String> {
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if !bound || !protected_now(&pv.metadata, PV_PROTECTION) {
        return None;
    }
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    let claim = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        });
    let (to, first) = match &claim {
        Some(c) => (format!(" to claim {c}"), format!("delete claim {c} first")),
        None => (String::new(), "delete its claim first".to_owned()),
    };
    Some(format!(
        "PersistentVolume {} is Bound{to}: it will stay Terminating (finalizer {PV_PROTECTION}) \
         until it is no longer Bound: {first}",
        go_quote(name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{self, pod_cache, update};
    use crate::policy::{Catalog, Policy};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn policy(mode: &str) -> Policy {
        Policy::parse(&format!("mode: {mode}\n"), None, false).unwrap()
    }

    fn claim(name: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": name, "namespace": "team-a",
            "finalizers": [PVC_PROTECTION]},
            "spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Bound"}});
        if let (Some(m), Some(e)) = (c["metadata"].as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(c).unwrap()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, volumes: serde_json::Value) -> Pod {
        let mut p = json!({"metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "x"}], "volumes": volumes},
            "status": {"phase": phase}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(p).unwrap()
    }

    fn mounts(claim: &str) -> serde_json::Value {
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}])
    }

    fn catalog(pods: &[Pod]) -> Catalog {
        policy("enforce")
            .static_catalog()
            .with_pods(pod_cache(pods))
    }

    /// Every rule of `policy` on the DELETE of `old` (a claim of team-a, or a PV).
    fn delete(policy: &Policy, catalog: &Catalog, old: Object<'_>) -> Decision {
        let namespace = matches!(old, Object::Pvc(_)).then_some("team-a");
        testing::delete(old)
            .namespace(namespace)
            .decide(policy, catalog, Endpoint::Validate)
    }

    fn delete_claim(catalog: &Catalog, pvc: &PersistentVolumeClaim) -> Decision {
        delete(&policy("enforce"), catalog, Object::Pvc(pvc))
    }

    #[test]
    fn warns_with_the_pods_that_hold_a_deleted_claim() {
        let cat = catalog(&[
            pod("web-1", Some("n2"), "Pending", mounts("data")),
            pod("web-0", Some("n1"), "Running", mounts("data")),
            pod("other", Some("n1"), "Running", mounts("data-2")),
        ]);
        let d = delete_claim(&cat, &claim("data", json!({})));
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "PersistentVolumeClaim \"data\" is still used by 2 pod(s): web-0 (node n1), web-1 (node n2); \
                 it will stay Terminating (finalizer kubernetes.io/pvc-protection) until none uses it: \
                 delete or scale down their workload first"
            ]
        );
        assert!(d.audit_annotations.contains_key("delete-in-use"));
    }

    #[test]
    fn never_denies_in_any_mode() {
        let cat = catalog(&[pod("web-0", Some("n1"), "Running", mounts("data"))]);
        let pvc = claim("data", json!({}));
        for mode in ["enforce", "audit"] {
            let d = delete(&policy(mode), &cat, Object::Pvc(&pvc));
            assert!(d.allowed() && d.warnings.len() == 1, "{mode}: {d:?}");
        }
        let off = Policy::parse("rules:\n  deleteInUse: {mode: off}\n", None, false).unwrap();
        assert!(delete(&off, &cat, Object::Pvc(&pvc)).warnings.is_empty());
    }

    #[test]
    fn names_the_first_pods_and_counts_the_rest() {
        let pods: Vec<Pod> = (0..5)
            .map(|i| pod(&format!("w-{i}"), Some("n1"), "Running", mounts("data")))
            .collect();
        let d = delete_claim(&catalog(&pods), &claim("data", json!({})));
        assert!(
            d.warnings[0]
                .contains("5 pod(s): w-0 (node n1), w-1 (node n1), w-2 (node n1), 2 more;"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn completed_pods_still_hold_the_claim() {
        let cat = catalog(&[pod("job-x", Some("n1"), "Succeeded", mounts("data"))]);
        let d = delete_claim(&cat, &claim("data", json!({})));
        assert!(
            d.warnings[0].contains("job-x (completed, node n1)")
                && d.warnings[0].ends_with("delete those completed pods"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn silent_when_no_scheduled_pod_holds_the_claim() {
        let cat = catalog(&[
            pod("pending", None, "Pending", mounts("data")),
            pod("elsewhere", Some("n1"), "Running", mounts("logs")),
        ]);
        assert!(
            delete_claim(&cat, &claim("data", json!({})))
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn silent_without_pods_known() {
        let cat = policy("enforce").static_catalog();
        assert!(
            delete_claim(&cat, &claim("data", json!({})))
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn silent_when_already_deleting_or_unprotected() {
        let cat = catalog(&[pod("web-0", Some("n1"), "Running", mounts("data"))]);
        let again = claim("data", json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}));
        assert!(delete_claim(&cat, &again).warnings.is_empty());
        let bare = claim("data", json!({"finalizers": []}));
        assert!(
            delete_claim(&cat, &bare).warnings.is_empty(),
            "without the finalizer the claim goes at once"
        );
    }

    #[test]
    fn an_ephemeral_claim_is_held_only_by_the_pod_that_owns_it() {
        let volumes = json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]);
        let cat = catalog(&[pod("web-0", Some("n1"), "Running", volumes)]);
        let owned = |uid: &str| {
            claim(
                "web-0-scratch",
                json!({"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-0",
                    "uid": uid, "controller": true}]}),
            )
        };
        assert_eq!(delete_claim(&cat, &owned("uid-web-0")).warnings.len(), 1);
        assert!(
            delete_claim(&cat, &owned("uid-someone-else"))
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn create_and_update_are_not_judged() {
        let cat = catalog(&[pod("web-0", Some("n1"), "Running", mounts("data"))]);
        let pvc = claim("data", json!({}));
        for op in [Operation::Create, Operation::Update] {
            let d = update(Object::Pvc(&pvc), Object::Pvc(&pvc))
                .operation(op)
                .namespace(Some("team-a"))
                .decide(&policy("enforce"), &cat, Endpoint::Validate);
            assert!(
                !d.findings.iter().any(|f| f.rule == ID),
                "{op:?}: {:?}",
                d.findings
            );
        }
    }

    fn volume(phase: &str, finalizer: bool) -> PersistentVolume {
        let finalizers = if finalizer {
            json!([PV_PROTECTION])
        } else {
            json!([])
        };
        serde_json::from_value(
            json!({"metadata": {"name": "pv-1", "finalizers": finalizers},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                "claimRef": {"namespace": "team-a", "name": "data"}},
            "status": {"phase": phase}}),
        )
        .unwrap()
    }

    #[test]
    fn warns_on_a_bound_volume_without_any_cache() {
        let p = policy("enforce");
        let cat = p.static_catalog();
        let pv = volume("Bound", true);
        let d = delete(&p, &cat, Object::Pv(&pv));
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "PersistentVolume \"pv-1\" is Bound to claim team-a/data: it will stay Terminating \
                 (finalizer kubernetes.io/pv-protection) until it is no longer Bound: delete claim team-a/data first"
            ]
        );
        for (phase, fin) in [("Released", true), ("Available", true), ("Bound", false)] {
            let pv = volume(phase, fin);
            assert!(
                delete(&p, &cat, Object::Pv(&pv)).warnings.is_empty(),
                "{phase} {fin}"
            );
        }
    }
}
