//! Rule `sharedClaims`: a workload whose pods mount one ReadWriteOnce or ReadWriteOncePod claim
//! by name (`persistentVolumeClaim.claimName`) while more than one of them may run at once is
//! told what will happen and what fits instead. Warnings only, in every mode.
//!
//! - ReadWriteOncePod: the scheduler's VolumeRestrictions plugin refuses every pod on the claim
//!   but the one using it: `node(s) unavailable due to PersistentVolumeClaim with
//!   ReadWriteOncePod access mode already in-use by another pod` (`ErrReasonReadWriteOncePodConflict`,
//!   `pkg/scheduler/framework/plugins/volumerestrictions/volume_restrictions.go`, since 1.28;
//!   releases before said `node has pod using PersistentVolumeClaim with the same name and
//!   ReadWriteOncePod access mode`, the words spec section 5 still gives; the e2e suite reads
//!   the current ones off kube-scheduler v1.37).
//! - ReadWriteOnce is per node: pods on the same node share the volume; a pod on another node
//!   waits on the attach/detach controller's `Multi-Attach error for volume %q Volume is already
//!   used by pod(s) %s` (`reportMultiAttachError`,
//!   `pkg/controller/volume/attachdetach/reconciler/reconciler.go`), unless the PV also serves
//!   ReadWriteMany or ReadOnlyMany (`IsMultiAttachAllowed`, `pkg/volume/util/util.go`). A
//!   local or hostPath PV pins every pod to its node, and `nodeName` pins them to one node:
//!   those share it safely.
//!
//! How many pods run at once comes from the workload ([`Runs`]): replicas, a Deployment's surge,
//! a DaemonSet's nodes, a Job's parallelism, a CronJob's overlapping runs. A bare Pod is one pod.
//! The claim's access modes come from the claims known (the cluster's cache, or the claims among
//! the files `audit` reads); a claim not known is not guessed about.

use k8s_openapi::api::core::v1::PodSpec;

use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE_UPDATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::field::go_quote;
use crate::policy::model::limits::MAX_VOLUMES;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::volumes::{ClaimInfo, Modes, Source, VolumeIndex};
use crate::policy::model::workloads::{Runs, claims_by_name};

pub const META: Meta = Meta {
    key: "sharedClaims",
    annotation: "shared-claims",
    summary: "warns when several pods of one workload mount the same ReadWriteOnce or ReadWriteOncePod claim",
    denies: "never denies",
    warns: "a Deployment (replicas > 1, or one replica with a surging RollingUpdate), ReplicaSet or StatefulSet (replicas > 1, pod-level volumes), DaemonSet, Job (parallelism > 1) or CronJob (overlapping runs) mounting one known ReadWriteOnce (pods on another node: Multi-Attach error) or ReadWriteOncePod (every pod but one Pending) claim",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::PodSpecs(PodFilter::ClaimsByName).on(CREATE_UPDATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<SharedClaims>(&META);

/// The scheduler's words for a second pod on a ReadWriteOncePod claim.
pub const RWOP_CONFLICT: &str = "node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode already in-use by another pod";

/// Class names suggested at most.
const MAX_SUGGESTED: usize = 3;

#[derive(Debug, Default)]
struct SharedClaims;

impl Rule for SharedClaims {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        let Some(index) = cx.catalog.volumes() else {
            return;
        };
        let (spec, path, runs, sts) = match req.object {
            Some(Object::PodSpec { spec, path, runs }) => (spec, path, runs, None),
            Some(Object::StatefulSet(sts)) => (
                sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                "spec.template.spec",
                Runs::of_stateful_set(sts),
                Some(sts),
            ),
            _ => return,
        };
        let Some(spec) = spec.filter(|_| runs.is_shared()) else {
            return;
        };
        let namespace = req.namespace.unwrap_or_default();
        for (n, (i, claim_name)) in claims_by_name(spec, sts).enumerate() {
            if n == MAX_VOLUMES || !cx.spend(1) {
                cx.skip(format!("sharedClaims: claims past the first {n}"));
                break;
            }
            let Some(claim) = index.claim(namespace, claim_name) else {
                continue;
            };
            let Some(mode) = exclusive_mode(index, claim, spec) else {
                continue;
            };
            let at = format!("{path}.volumes[{i}]");
            let (what, fix) = warning(cx, &at, claim_name, claim, mode, runs, req.subject.kind);
            let note = format!(
                "claim {} ({}) mounted by {}",
                go_quote(claim_name),
                mode.name(),
                runs_short(runs)
            );
            let class = claim.class.as_deref().map(str::to_owned);
            d.warning_noted(ID, class, judged_against(index.source, what), note);
            d.warn(fix);
        }
    }
}

/// The access mode that keeps the claim to one pod, or one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exclusive {
    OncePod,
    Once,
}

impl Exclusive {
    fn name(self) -> &'static str {
        match self {
            Exclusive::OncePod => "ReadWriteOncePod",
            Exclusive::Once => "ReadWriteOnce",
        }
    }
}

/// Whether sharing the claim between pods fails, and by which mode. ReadWriteOncePod always
/// does (the scheduler checks the claim's modes). ReadWriteOnce does on another node, unless
/// the volume may attach to several nodes (the bound PV, or else the claim, also has
/// ReadWriteMany or ReadOnlyMany: `IsMultiAttachAllowed`) or every pod lands on one node
/// (`nodeName`, or a bound local or hostPath PV whose node affinity pins them).
fn exclusive_mode(index: &VolumeIndex, claim: &ClaimInfo, spec: &PodSpec) -> Option<Exclusive> {
    if claim.modes.any(Modes::READ_WRITE_ONCE_POD) {
        return Some(Exclusive::OncePod);
    }
    let shared = |m: Modes| m.any(Modes::READ_WRITE_MANY) || m.any(Modes::READ_ONLY_MANY);
    if !claim.modes.any(Modes::READ_WRITE_ONCE) || shared(claim.modes) {
        return None;
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return None;
    }
    if let Some(pv) = claim
        .volume_name
        .as_deref()
        .filter(|_| claim.is_bound())
        .and_then(|v| index.pv(v))
        && (pv.node_local || pv.modes.is_empty() || shared(pv.modes))
    {
        return None;
    }
    Some(Exclusive::Once)
}

/// How many pods of the workload mount the claim at once, in a few words.
fn runs_short(runs: Runs) -> String {
    match runs {
        Runs::One => "one pod".to_owned(),
        Runs::Surge { .. } => "the old and the new pod of a rollout".to_owned(),
        Runs::Replicas(n) => format!("{n} replicas"),
        Runs::EveryNode => "a DaemonSet's pod on every node".to_owned(),
        Runs::Parallel(n) => format!("{n} pods of a Job at once"),
        Runs::Overlapping(_) => {
            "CronJob runs that may overlap (concurrencyPolicy Allow, the default)".to_owned()
        }
    }
}

/// The warnings (each within the API server's 256 characters): the claim, its mode, the pods
/// that mount it and what Kubernetes then does, in its own words; then where, why, and the fix
/// that fits the workload.
fn warning(
    cx: &Context<'_>,
    at: &str,
    name: &str,
    claim: &ClaimInfo,
    mode: Exclusive,
    runs: Runs,
    kind: &str,
) -> (String, String) {
    let surge = matches!(runs, Runs::Surge { .. });
    let effect = match mode {
        Exclusive::OncePod if surge => format!("the new pod stays Pending: \"{RWOP_CONFLICT}\""),
        Exclusive::OncePod => format!("all pods but one stay Pending: \"{RWOP_CONFLICT}\""),
        Exclusive::Once => {
            let volume = match claim.volume_name.as_deref().filter(|_| claim.is_bound()) {
                Some(v) => go_quote(v),
                None => "<its PersistentVolume>".to_owned(),
            };
            format!(
                "a pod on another node waits with \"Multi-Attach error for volume {volume} Volume \
                 is already used by pod(s) ...\""
            )
        }
    };
    let what = format!(
        "claim {} is {}, mounted by {}: {effect}",
        go_quote(name),
        mode.name(),
        runs_short(runs)
    );
    let why = match (mode, runs) {
        (_, Runs::Surge { default: true }) => {
            "RollingUpdate (the default, maxSurge 25%) starts the new pod before the old one stops"
        }
        (_, Runs::Surge { default: false }) => {
            "RollingUpdate with maxSurge above 0 starts the new pod before the old one stops"
        }
        (Exclusive::Once, _) => "ReadWriteOnce is per node",
        (Exclusive::OncePod, _) => "ReadWriteOncePod is one pod",
    };
    let rwx = rwx_classes(cx);
    let fix = match runs {
        Runs::Surge { .. } => {
            "set spec.strategy to {type: Recreate} or spec.strategy.rollingUpdate.maxSurge to 0"
                .to_owned()
        }
        Runs::Replicas(_) if kind == "StatefulSet" => format!(
            "move the claim into spec.volumeClaimTemplates (one claim per pod) or use {rwx}"
        ),
        Runs::Replicas(_) => format!(
            "give each pod its own claim (a StatefulSet with volumeClaimTemplates) or use {rwx}"
        ),
        Runs::EveryNode => format!("use {rwx}"),
        Runs::Parallel(_) => format!("set parallelism to 1 or use {rwx}"),
        Runs::Overlapping(n) if n > 1 => {
            format!("set spec.concurrencyPolicy to Forbid and parallelism to 1, or use {rwx}")
        }
        Runs::Overlapping(_) => format!("set spec.concurrencyPolicy to Forbid or use {rwx}"),
        Runs::One => String::new(),
    };
    (what, format!("{at}: {why}; {fix}"))
}

/// "a ReadWriteMany class" and the ones the catalog knows to serve it.
fn rwx_classes(cx: &Context<'_>) -> String {
    let names = cx.catalog.rwx_capable(false);
    if names.is_empty() {
        return "a ReadWriteMany class (none is known here)".to_owned();
    }
    let shown: Vec<&str> = names
        .iter()
        .take(MAX_SUGGESTED)
        .map(String::as_str)
        .collect();
    let more = names.len().saturating_sub(MAX_SUGGESTED);
    format!(
        "a ReadWriteMany class such as {}{}",
        shown.join(", "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    )
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
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use serde_json::{Value, json};

    const POLICY: &str = r#"
storageClasses:
  - {name: gp3, provisioner: ebs.csi.aws.com}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, None, false).unwrap()
    }

    fn claim(name: &str, modes: &[&str], extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {
            "storageClassName": "gp3", "accessModes": modes,
            "resources": {"requests": {"storage": "1Gi"}}}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn pv(name: &str, modes: &[&str], source: Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name}, "spec": {"storageClassName": "gp3",
            "capacity": {"storage": "1Gi"}, "accessModes": modes}, "status": {"phase": "Bound"}});
        json_patch::merge(&mut v, &json!({"spec": source}));
        serde_json::from_value(v).unwrap()
    }

    fn catalog(pvs: &[PersistentVolume], claims: &[PersistentVolumeClaim]) -> Catalog {
        testing::cluster(&policy(), pvs, claims, "default", LiveState::default())
    }

    fn deployment(spec: Value) -> Deployment {
        let mut v = json!({"metadata": {"name": "web"}, "spec": {"selector": {},
            "template": {"spec": {"containers": [], "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}});
        json_patch::merge(&mut v, &json!({"spec": spec}));
        serde_json::from_value(v).unwrap()
    }

    fn decide(cat: &Catalog, kind: &str, obj: Object<'_>) -> Decision {
        testing::create(obj).subject("apps", kind, "web").check(
            &policy(),
            cat,
            ID,
            Endpoint::Validate,
            Acting::Enforce,
        )
    }

    fn of_deployment(cat: &Catalog, d: &Deployment) -> Decision {
        let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let obj = Object::PodSpec {
            spec,
            path: "spec.template.spec",
            runs: Runs::of_deployment(d),
        };
        decide(cat, "Deployment", obj)
    }

    /// At most [`MAX_VOLUMES`] claims of one pod spec are judged, even with no request budget
    /// to stop the walk.
    #[test]
    fn judges_the_first_max_volumes_claims() {
        let n = MAX_VOLUMES + 2;
        let claims: Vec<_> = (0..n)
            .map(|i| claim(&format!("c{i}"), &["ReadWriteOnce"], json!({})))
            .collect();
        let volumes: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": format!("c{i}")}}))
            .collect();
        let web = deployment(json!({"replicas": 2, "template": {"spec": {"volumes": volumes}}}));
        let d = of_deployment(&catalog(&[], &claims), &web);
        assert_eq!(messages_of(&d.findings, ID).len(), MAX_VOLUMES);
    }

    #[test]
    fn warns_on_replicas_sharing_a_read_write_once_claim() {
        let cat = catalog(&[], &[claim("data", &["ReadWriteOnce"], json!({}))]);
        let d = of_deployment(&cat, &deployment(json!({"replicas": 3})));
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                "claim \"data\" is ReadWriteOnce, mounted by 3 replicas: a pod on another node \
                 waits with \"Multi-Attach error for volume <its PersistentVolume> Volume is \
                 already used by pod(s) ...\"",
                "spec.template.spec.volumes[1]: ReadWriteOnce is per node; give each pod its own \
                 claim (a StatefulSet with volumeClaimTemplates) or use a ReadWriteMany class \
                 such as nfs"
            ]
        );
        assert_eq!(d.findings[0].action, Action::Warned);
        assert_eq!(
            d.audit_annotations["shared-claims"],
            "claim \"data\" (ReadWriteOnce) mounted by 3 replicas"
        );
    }

    #[test]
    fn names_the_bound_volume_in_the_multi_attach_message() {
        let bound = claim(
            "data",
            &["ReadWriteOnce"],
            json!({"spec": {"volumeName": "pvc-1"}, "status": {"phase": "Bound"}}),
        );
        let vol = pv(
            "pvc-1",
            &["ReadWriteOnce"],
            json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "v"}}),
        );
        let cat = catalog(&[vol], &[bound]);
        let d = of_deployment(&cat, &deployment(json!({"replicas": 2})));
        assert!(
            d.warnings[0].contains(
                "\"Multi-Attach error for volume \"pvc-1\" Volume is already used by pod(s) ...\""
            ),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn warns_on_a_single_replica_whose_rollout_surges() {
        let cat = catalog(&[], &[claim("data", &["ReadWriteOnce"], json!({}))]);
        let d = of_deployment(&cat, &deployment(json!({})));
        assert!(
            d.warnings[0].starts_with(
                "claim \"data\" is ReadWriteOnce, mounted by the old and the new pod of a \
                 rollout: a pod on another node waits"
            ),
            "{:?}",
            d.warnings
        );
        assert_eq!(
            d.warnings[1],
            "spec.template.spec.volumes[1]: RollingUpdate (the default, maxSurge 25%) starts the \
             new pod before the old one stops; set spec.strategy to {type: Recreate} or \
             spec.strategy.rollingUpdate.maxSurge to 0"
        );
        let surge = of_deployment(
            &cat,
            &deployment(
                json!({"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}),
            ),
        );
        assert!(surge.warnings[1].contains("maxSurge above 0"));
        for safe in [
            json!({"strategy": {"type": "Recreate"}}),
            json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}),
            json!({"replicas": 0}),
        ] {
            let d = of_deployment(&cat, &deployment(safe.clone()));
            assert!(d.warnings.is_empty(), "{safe}: {:?}", d.warnings);
        }
    }

    #[test]
    fn read_write_once_pod_is_refused_by_the_scheduler_on_any_node() {
        let cat = catalog(&[], &[claim("data", &["ReadWriteOncePod"], json!({}))]);
        let d = of_deployment(&cat, &deployment(json!({"replicas": 2})));
        assert_eq!(
            d.warnings[0],
            "claim \"data\" is ReadWriteOncePod, mounted by 2 replicas: all pods but one stay \
             Pending: \"node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod \
             access mode already in-use by another pod\""
        );
        assert!(d.warnings[1].contains("ReadWriteOncePod is one pod; give each pod its own claim"));
        let surge = of_deployment(&cat, &deployment(json!({"replicas": 1})));
        assert!(surge.warnings[0].contains("the new pod stays Pending: \"node(s) unavailable"));
        // nodeName puts every pod on one node: ReadWriteOncePod still refuses the second.
        let pinned = of_deployment(
            &cat,
            &deployment(json!({"replicas": 2, "template": {"spec": {"nodeName": "n1"}}})),
        );
        assert_eq!(pinned.warnings.len(), 2);
    }

    #[test]
    fn quiet_where_pods_may_share_the_volume() {
        // Shared access modes, unknown claims, a missing cache, one node.
        let cat = catalog(
            &[],
            &[
                claim("data", &["ReadWriteMany"], json!({})),
                claim("mixed", &["ReadWriteOnce", "ReadOnlyMany"], json!({})),
            ],
        );
        assert!(
            of_deployment(&cat, &deployment(json!({"replicas": 3})))
                .warnings
                .is_empty()
        );
        let mixed = deployment(json!({"replicas": 3, "template": {"spec": {"volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "mixed"}}]}}}));
        assert!(of_deployment(&cat, &mixed).warnings.is_empty());
        let unknown = catalog(&[], &[]);
        assert!(
            of_deployment(&unknown, &deployment(json!({"replicas": 3})))
                .warnings
                .is_empty()
        );
        let no_cluster = policy().static_catalog();
        assert!(
            of_deployment(&no_cluster, &deployment(json!({"replicas": 3})))
                .warnings
                .is_empty()
        );
        let rwo = catalog(&[], &[claim("data", &["ReadWriteOnce"], json!({}))]);
        let pinned = deployment(json!({"replicas": 3, "template": {"spec": {"nodeName": "n1"}}}));
        assert!(of_deployment(&rwo, &pinned).warnings.is_empty());
    }

    #[test]
    fn quiet_when_the_bound_volume_pins_one_node_or_attaches_to_many() {
        let bound = |pv: &str| {
            claim(
                "data",
                &["ReadWriteOnce"],
                json!({"spec": {"volumeName": pv}, "status": {"phase": "Bound"}}),
            )
        };
        let local = pv(
            "local-1",
            &["ReadWriteOnce"],
            json!({"local": {"path": "/mnt/a"}}),
        );
        let cat = catalog(&[local], &[bound("local-1")]);
        assert!(
            of_deployment(&cat, &deployment(json!({"replicas": 2})))
                .warnings
                .is_empty()
        );
        let many = pv(
            "nfs-1",
            &["ReadWriteOnce", "ReadWriteMany"],
            json!({"nfs": {"server": "nas", "path": "/x"}}),
        );
        let cat = catalog(&[many], &[bound("nfs-1")]);
        assert!(
            of_deployment(&cat, &deployment(json!({"replicas": 2})))
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn judges_daemon_sets_jobs_and_cron_jobs_by_how_they_run() {
        let cat = catalog(&[], &[claim("data", &["ReadWriteOnce"], json!({}))]);
        let spec: PodSpec = serde_json::from_value(json!({"containers": [], "volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}))
        .unwrap();
        let cases = [
            (
                Runs::EveryNode,
                "DaemonSet",
                "pod on every node",
                "; use a ReadWriteMany class",
            ),
            (
                Runs::Parallel(4),
                "Job",
                "4 pods of a Job",
                "set parallelism to 1 or",
            ),
            (
                Runs::Overlapping(1),
                "CronJob",
                "may overlap",
                "concurrencyPolicy to Forbid or",
            ),
            (
                Runs::Overlapping(2),
                "CronJob",
                "may overlap",
                "Forbid and parallelism to 1",
            ),
        ];
        for (runs, kind, how, fix) in cases {
            let obj = Object::PodSpec {
                spec: Some(&spec),
                path: "spec.template.spec",
                runs,
            };
            let d = decide(&cat, kind, obj);
            assert!(d.warnings[0].contains(how), "{kind}: {:?}", d.warnings);
            assert!(d.warnings[1].contains(fix), "{kind}: {:?}", d.warnings);
        }
        let pod = Object::PodSpec {
            spec: Some(&spec),
            path: "spec",
            runs: Runs::One,
        };
        assert!(decide(&cat, "Pod", pod).warnings.is_empty());
    }

    #[test]
    fn a_stateful_set_is_judged_on_pod_level_claims_only() {
        let cat = catalog(
            &[],
            &[
                claim("shared", &["ReadWriteOnce"], json!({})),
                claim("www", &["ReadWriteOnce"], json!({})),
            ],
        );
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {}, "serviceName": "web",
            "template": {"spec": {"containers": [], "volumes": [
                {"name": "www", "persistentVolumeClaim": {"claimName": "www"}},
                {"name": "s", "persistentVolumeClaim": {"claimName": "shared"}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .unwrap();
        let d = decide(&cat, "StatefulSet", Object::StatefulSet(&sts));
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(d.warnings[0].starts_with("claim \"shared\""));
        assert!(d.warnings[1].starts_with(
            "spec.template.spec.volumes[1]: ReadWriteOnce is per node; move the claim into \
             spec.volumeClaimTemplates"
        ));
    }

    #[test]
    fn audit_on_files_says_what_it_judged_against() {
        let c = claim("data", &["ReadWriteOnce"], json!({}));
        let index = VolumeIndex::from_objects([], [("default", &c)], Source::Files);
        let cat = policy().static_catalog().with_volumes(index);
        let d = of_deployment(&cat, &deployment(json!({"replicas": 2})));
        assert!(d.warnings[0].ends_with("(judged against the claims in the files)"));
    }
}
