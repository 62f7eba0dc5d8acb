//! Rule `missingClaims`: a Pod or pod template that mounts a claim by name
//! (`persistentVolumeClaim.claimName`) that does not exist, or is being deleted, is told its
//! pods will stay Pending, in the scheduler's words: `persistentvolumeclaim "x" not found` or
//! `persistentvolumeclaim "x" is being deleted` (the VolumeBinding plugin's PreFilter, which
//! looks the pod's claims up and refuses a missing or deleted one as unschedulable:
//! `podHasPVCs` / `GetPodVolumeClaims`, `pkg/scheduler/framework/plugins/volumebinding`).
//!
//! Warnings only, in every mode: a chart may create the claim a moment after the workload (and
//! the scheduler retries when it appears). Judged once the claims are known (the cluster's
//! claim cache synced, or the claims among the files `audit` reads, when they hold any);
//! silent otherwise. Generic
//! ephemeral volumes make their own claim and are not judged; a StatefulSet's volume replaced by
//! a claim template of the same name neither.

use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE_UPDATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::field::go_quote;
use crate::policy::model::limits::MAX_VOLUMES;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::volumes::Source;
use crate::policy::model::workloads::claims_by_name;

pub const META: Meta = Meta {
    key: "missingClaims",
    annotation: "missing-claims",
    summary: "warns when a pod or pod template mounts a claim that does not exist or is being deleted",
    denies: "never denies",
    warns: "a claim mounted by name that the known claims do not have (persistentvolumeclaim \"x\" not found) or that is being deleted (persistentvolumeclaim \"x\" is being deleted): its pods stay Pending; it may be created next",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::PodSpecs(PodFilter::ClaimsByName).on(CREATE_UPDATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<MissingClaims>(&META);

#[derive(Debug, Default)]
struct MissingClaims;

impl Rule for MissingClaims {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        let Some(index) = cx.catalog.volumes() else {
            return;
        };
        // Files that hold claims are taken to hold all of them (as with StorageClasses); files
        // without any say nothing of the claims that exist.
        if index.source == Source::Files && index.claims.is_empty() {
            return;
        }
        let (spec, path, sts) = match req.object {
            Some(Object::PodSpec { spec, path, .. }) => (spec, path, None),
            Some(Object::StatefulSet(sts)) => (
                sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                "spec.template.spec",
                Some(sts),
            ),
            _ => return,
        };
        let Some(spec) = spec else { return };
        let namespace = req.namespace.unwrap_or_default();
        let pods = if req.subject.kind == "Pod" {
            "the pod stays"
        } else {
            "its pods stay"
        };
        // On a node already (`nodeName`: set by hand, or a pod `audit --cluster` reads after the
        // scheduler bound it), the scheduler is not asked: a missing claim keeps the kubelet
        // from mounting it, and a claim being deleted stays while the pod uses it
        // (`kubernetes.io/pvc-protection`), which is not this rule's to say.
        let on_node = spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
        for (n, (i, name)) in claims_by_name(spec, sts).enumerate() {
            if n == MAX_VOLUMES || !cx.spend(1) {
                cx.skip(format!("missingClaims: claims past the first {n}"));
                break;
            }
            let (scheduler, hint, note) = match index.claim(namespace, name) {
                None => (
                    format!("persistentvolumeclaim {} not found", go_quote(name)),
                    format!(
                        "create claim {} in namespace {}; if a chart applies it right after this \
                         object, the scheduler places the pod then",
                        go_quote(name),
                        go_quote(namespace)
                    ),
                    "not found",
                ),
                Some(c) if c.deleting && !on_node => (
                    format!("persistentvolumeclaim {} is being deleted", go_quote(name)),
                    format!(
                        "claim {} goes once no pod uses it (kubernetes.io/pvc-protection): mount \
                         another claim, or recreate it once it is gone",
                        go_quote(name)
                    ),
                    "being deleted",
                ),
                Some(_) => continue,
            };
            // The kubelet fetches the claim from the API server (`failed to fetch PVC from API
            // server`, `pkg/kubelet/volumemanager/desired_state_of_world_populator.go`): the
            // client's NotFound names the plural resource.
            let text = if on_node {
                format!(
                    "{path}.volumes[{i}].persistentVolumeClaim.claimName: {pods} in \
                     ContainerCreating: \"failed to fetch PVC from API server: \
                     persistentvolumeclaims {} not found\" (kubelet)",
                    go_quote(name)
                )
            } else {
                format!(
                    "{path}.volumes[{i}].persistentVolumeClaim.claimName: {pods} Pending: \
                     \"{scheduler}\" (scheduler)"
                )
            };
            let note = format!("claim {} {note}", go_quote(name));
            d.warning_noted(ID, None, judged_against(index.source, text), note);
            d.warn(hint);
        }
    }
}

/// Names the claims the warning was judged against when they are not the cluster's.
fn judged_against(source: Source, text: String) -> String {
    match source {
        Source::Cluster => text,
        Source::Files => format!("{text} (judged against the claims in the files)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::catalog::{Catalog, LiveState};
    use crate::policy::decision::Action;
    use crate::policy::testing::{self, messages_of};
    use crate::policy::volumes::VolumeIndex;
    use crate::policy::workloads::Runs;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use serde_json::{Value, json};

    fn policy() -> Policy {
        Policy::parse("{}", None, false).unwrap()
    }

    fn claim(name: &str, extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn catalog(claims: &[PersistentVolumeClaim], source: Source) -> Catalog {
        let index = VolumeIndex::from_objects([], claims.iter().map(|c| ("default", c)), source);
        policy().catalog(&LiveState {
            pvs: Some(index.pvs.clone()),
            claims: Some(index.claims.clone()),
            ..Default::default()
        })
    }

    fn pod(volumes: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [], "volumes": volumes}}))
        .unwrap()
    }

    fn decide(cat: &Catalog, kind: &str, obj: Object<'_>) -> Decision {
        testing::create(obj).subject("", kind, "p").check(
            &policy(),
            cat,
            ID,
            Endpoint::Validate,
            Acting::Enforce,
        )
    }

    fn of_pod(cat: &Catalog, p: &Pod) -> Decision {
        let obj = Object::PodSpec {
            spec: p.spec.as_ref(),
            path: "spec",
            runs: Runs::One,
        };
        decide(cat, "Pod", obj)
    }

    /// At most [`MAX_VOLUMES`] claims of one pod spec are judged, even with no request budget
    /// to stop the walk.
    #[test]
    fn judges_the_first_max_volumes_claims() {
        let cat = catalog(&[], Source::Cluster);
        let volumes: Vec<Value> = (0..MAX_VOLUMES + 2)
            .map(|i| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": format!("c{i}")}}))
            .collect();
        let d = of_pod(&cat, &pod(Value::from(volumes)));
        assert_eq!(messages_of(&d.findings, ID).len(), MAX_VOLUMES);
    }

    #[test]
    fn warns_on_a_claim_that_does_not_exist() {
        let cat = catalog(&[claim("there", json!({}))], Source::Cluster);
        let p = pod(json!([
            {"name": "a", "persistentVolumeClaim": {"claimName": "there"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "gone"}}]));
        let d = of_pod(&cat, &p);
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "spec.volumes[1].persistentVolumeClaim.claimName: the pod stays Pending: \
                 \"persistentvolumeclaim \"gone\" not found\" (scheduler)",
                "create claim \"gone\" in namespace \"default\"; if a chart applies it right \
                 after this object, the scheduler places the pod then"
            ]
        );
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(
            d.audit_annotations["missing-claims"],
            "claim \"gone\" not found"
        );
    }

    #[test]
    fn warns_on_a_claim_being_deleted() {
        let deleting = claim(
            "old",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": ["kubernetes.io/pvc-protection"]}}),
        );
        let cat = catalog(&[deleting], Source::Cluster);
        let p = pod(json!([{"name": "a", "persistentVolumeClaim": {"claimName": "old"}}]));
        let d = of_pod(&cat, &p);
        assert!(
            d.warnings[0].contains("\"persistentvolumeclaim \"old\" is being deleted\""),
            "{:?}",
            d.warnings
        );
        assert!(d.warnings[1].contains("kubernetes.io/pvc-protection"));
    }

    #[test]
    fn a_pod_on_a_node_already_is_told_about_the_kubelet_not_the_scheduler() {
        let deleting = claim(
            "old",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        let cat = catalog(&[deleting], Source::Cluster);
        let mut p = pod(json!([
            {"name": "a", "persistentVolumeClaim": {"claimName": "old"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "gone"}}]));
        p.spec.as_mut().unwrap().node_name = Some("n1".to_owned());
        let d = of_pod(&cat, &p);
        assert_eq!(
            d.warnings[0],
            "spec.volumes[1].persistentVolumeClaim.claimName: the pod stays in ContainerCreating: \
             \"failed to fetch PVC from API server: persistentvolumeclaims \"gone\" not found\" \
             (kubelet)"
        );
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    }

    #[test]
    fn quiet_without_known_claims_and_on_ephemeral_volumes() {
        let p = pod(json!([{"name": "a", "persistentVolumeClaim": {"claimName": "x"}}]));
        assert!(of_pod(&policy().static_catalog(), &p).warnings.is_empty());
        let eph = pod(
            json!([{"name": "a", "ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]),
        );
        assert!(
            of_pod(&catalog(&[], Source::Cluster), &eph)
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn templates_say_their_pods_and_statefulsets_skip_claim_templates() {
        let cat = catalog(&[], Source::Cluster);
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"},
            "spec": {"selector": {}, "serviceName": "db",
            "template": {"spec": {"containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "backup", "persistentVolumeClaim": {"claimName": "backup"}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .unwrap();
        let d = decide(&cat, "StatefulSet", Object::StatefulSet(&sts));
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(d.warnings[0].starts_with(
            "spec.template.spec.volumes[1].persistentVolumeClaim.claimName: its pods stay Pending"
        ));
    }

    #[test]
    fn audit_on_files_says_what_it_judged_against() {
        let other = claim("other", json!({}));
        let p = pod(json!([{"name": "a", "persistentVolumeClaim": {"claimName": "x"}}]));
        let index = VolumeIndex::from_objects([], [("default", &other)], Source::Files);
        let cat = policy().static_catalog().with_volumes(index);
        let d = of_pod(&cat, &p);
        assert!(d.warnings[0].ends_with("(judged against the claims in the files)"));
        // Files without any claim say nothing of the claims that exist.
        let none = VolumeIndex::from_objects([], [], Source::Files);
        let cat = policy().static_catalog().with_volumes(none);
        assert!(of_pod(&cat, &p).warnings.is_empty());
    }
}
