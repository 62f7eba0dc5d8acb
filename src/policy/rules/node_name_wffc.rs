//! Rule `nodeNameWaitForFirstConsumer`: a pod spec with `spec.nodeName` that mounts a claim
//! which only the scheduler can bind is refused, as the API refuses a bad field.
//!
//! With `volumeBindingMode: WaitForFirstConsumer` a claim is bound once the scheduler has picked
//! a node (it sets `volume.kubernetes.io/selected-node`); `nodeName` bypasses the scheduler, so
//! the claim and the pod wait forever. The storage docs say: do not use `nodeName` with such a
//! class, use a node selector on `kubernetes.io/hostname`. Judged: claims the pod mounts that
//! are known and not bound (needs the cluster's claims), a StatefulSet's claim templates whose
//! claims are not all bound (idem), and generic ephemeral volumes (their claim cannot be bound
//! yet by definition; their class is in the template, so this works without a cluster).
//!
//! A claim that already carries `volume.kubernetes.io/selected-node` is past the scheduler:
//! `syncUnboundClaim` (`pv_controller.go`) provisions or binds it for that node. `nodeName` on
//! that very node is fine (nothing is said); on another node the claim still does not wait, so
//! it is a warning (its volume may be pinned out of the pod's reach), never a denial.

use crate::policy::engine::config::VolumeBindingMode;
use crate::policy::engine::decision::{Decision, Violation};
use crate::policy::engine::meta::CREATE_UPDATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::catalog::Catalog;
use crate::policy::model::field::{FieldError, Path, go_quote};
use crate::policy::model::limits::{MAX_ORDINALS, MAX_TEMPLATES, MAX_VOLUMES};
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::storage;
use crate::policy::model::volumes;

pub const META: Meta = Meta {
    key: "nodeNameWaitForFirstConsumer",
    annotation: "node-name-wait-for-first-consumer",
    summary: "spec.nodeName is refused on pods whose claims wait for the scheduler (WaitForFirstConsumer)",
    denies: "nodeName with an ephemeral volume, or a known claim that is unbound, not pre-bound and not yet scheduled (no selected-node), on a WaitForFirstConsumer class",
    warns: "a claim the scheduler placed on another node (selected-node) than nodeName; on UPDATE, what the old object already had (never denied)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::PodSpecs(PodFilter::NodeNameWithClaims).on(CREATE_UPDATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<NodeNameWffc>(&META);

#[derive(Debug, Default)]
struct NodeNameWffc;

impl Rule for NodeNameWffc {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        run(cx, req, mode, d);
    }
}

fn waits_for_consumer(catalog: &Catalog, class: &str) -> bool {
    catalog
        .class(class)
        .is_some_and(|c| c.volume_binding_mode == Some(VolumeBindingMode::WaitForFirstConsumer))
}

fn violation(path: &str, node: &str, what: String, class: &str) -> Violation {
    let detail = format!(
        "{what} has class {} with volumeBindingMode WaitForFirstConsumer, which only the scheduler \
         binds; nodeName bypasses the scheduler and the claim stays Pending",
        go_quote(class)
    );
    Violation {
        error: FieldError::forbidden(Path::new(path).child("nodeName"), &detail),
        class: Some(class.to_owned()),
        why: format!(
            "use {path}.nodeSelector {{\"kubernetes.io/hostname\": {}}} instead of {path}.nodeName: \
             the scheduler then binds the claim on that node",
            go_quote(node)
        ),
        warn_only: false,
    }
}

/// A claim the scheduler already placed on another node (`volume.kubernetes.io/selected-node`)
/// than `nodeName`: it is provisioned or bound for that node (`syncUnboundClaim`), so it does
/// not wait, but a volume pinned to that node is out of reach of a pod on this one. A warning:
/// whether the volume is pinned depends on the storage (node-local or zonal), not known here.
fn selected_elsewhere(
    path: &str,
    node: &str,
    claim: &str,
    selected: &str,
    class: &str,
) -> Violation {
    let detail = format!(
        "claim {} was scheduled for node {} (volume.kubernetes.io/selected-node), not {}",
        go_quote(claim),
        go_quote(selected),
        go_quote(node)
    );
    Violation {
        error: FieldError::forbidden(Path::new(path).child("nodeName"), &detail),
        class: Some(class.to_owned()),
        why: format!(
            "{path}.nodeName: {detail}: its volume is made or bound for {}; a volume pinned there is out of \
             reach of this pod",
            go_quote(selected)
        ),
        warn_only: true,
    }
}

/// What `nodeName` does to a known, unbound claim of a WaitForFirstConsumer class: nothing when
/// the scheduler already selected that very node (the claim is past the scheduler:
/// `syncUnboundClaim` in `pv_controller.go` provisions or binds it for the selected node),
/// a warning when it selected another, else the claim waits forever.
fn judge_claim(
    path: &str,
    node: &str,
    name: &str,
    claim: Option<&volumes::ClaimInfo>,
    class: &str,
) -> Option<Violation> {
    match claim.and_then(|c| c.selected_node.as_deref()) {
        Some(selected) if selected == node => None,
        Some(selected) => Some(selected_elsewhere(path, node, name, selected, class)),
        None => Some(violation(
            path,
            node,
            format!("claim {} is not bound and", go_quote(name)),
            class,
        )),
    }
}

/// Whether a claim is pre-bound, which the PV controller binds at once even with
/// WaitForFirstConsumer: its `spec.volumeName` is set, or a PV's `claimRef` names it.
fn binds_without_scheduler<'a>(
    cx: &Context<'a>,
    namespace: &str,
    name: &str,
    claim: Option<&volumes::ClaimInfo>,
) -> bool {
    claim.is_some_and(|c| c.volume_name.is_some())
        || cx
            .catalog
            .volumes()
            .is_some_and(|i| i.pvs.claimed(namespace, name).next().is_some())
}

fn violations<'a>(
    cx: &Context<'a>,
    namespace: Option<&str>,
    object: &Object<'_>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let (spec, path) = match *object {
        Object::PodSpec { spec, path, .. } => (spec, path),
        Object::StatefulSet(sts) => (
            sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            "spec.template.spec",
        ),
        _ => return out,
    };
    let Some(spec) = spec else { return out };
    let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) else {
        return out;
    };
    let ns = namespace.unwrap_or_default();
    for (n, v) in spec.volumes.iter().flatten().enumerate() {
        if n == MAX_VOLUMES || !cx.spend(1) {
            cx.skip(format!(
                "nodeNameWaitForFirstConsumer: volumes past the first {}",
                n
            ));
            break;
        }
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            let class = storage::claim_class(
                cx.settings,
                cx.catalog,
                namespace,
                tpl.metadata.as_ref(),
                Some(&tpl.spec),
            );
            if let Some(class) = class.filter(|c| waits_for_consumer(cx.catalog, c)) {
                let what = format!("ephemeral volume {}", go_quote(&v.name));
                out.push(violation(path, node, what, &class));
            }
        } else if let Some(src) = v.persistent_volume_claim.as_ref() {
            // Only claims known and not bound: an unknown claim is never guessed about.
            let Some(claim) = cx
                .catalog
                .volumes()
                .and_then(|i| i.claim(ns, &src.claim_name))
            else {
                continue;
            };
            if claim.is_bound() || binds_without_scheduler(cx, ns, &src.claim_name, Some(claim)) {
                continue;
            }
            if let Some(class) = claim
                .class
                .as_deref()
                .filter(|c| waits_for_consumer(cx.catalog, c))
            {
                out.extend(judge_claim(path, node, &src.claim_name, Some(claim), class));
            }
        }
    }
    if let (Object::StatefulSet(sts), Some(index)) = (object, cx.catalog.volumes()) {
        let s = sts.spec.as_ref();
        // Ordinals looked up over all templates at most.
        let mut ordinals_left = MAX_ORDINALS;
        for (t, tpl) in s
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if t == MAX_TEMPLATES {
                cx.skip(format!(
                    "nodeNameWaitForFirstConsumer: volumeClaimTemplates past the first {MAX_TEMPLATES}"
                ));
                break;
            }
            let tpl_name = tpl.metadata.name.as_deref().unwrap_or_default();
            let class = volumes::claim_class(tpl).or_else(|| {
                storage::choose(cx.settings, cx.catalog, namespace, tpl.spec.as_ref())
                    .map(|c| c.class)
            });
            let Some(class) = class.filter(|c| waits_for_consumer(cx.catalog, c)) else {
                continue;
            };
            // In ordinal order, the claims neither bound nor past the scheduler on this node:
            // the first that would wait is refused (and ends the walk: a new StatefulSet's
            // first claim does, so the work stays small), the first headed elsewhere before it
            // is warned about. At most MAX_ORDINALS are looked up over all templates.
            let mut warned = false;
            let mut looked: usize = 0;
            for name in volumes::statefulset_claims(sts, tpl_name) {
                if looked == ordinals_left {
                    cx.skip(format!(
                        "nodeNameWaitForFirstConsumer: StatefulSet ordinals past the first {MAX_ORDINALS} of all templates"
                    ));
                    break;
                }
                looked += 1;
                let claim = index.claim(ns, &name);
                if claim.is_some_and(|c| c.is_bound())
                    || binds_without_scheduler(cx, ns, &name, claim)
                {
                    continue;
                }
                let Some(v) = judge_claim(path, node, &name, claim, &class) else {
                    continue;
                };
                if !v.warn_only {
                    out.push(v);
                    break;
                }
                if !warned {
                    warned = true;
                    out.push(v);
                }
            }
            ordinals_left -= looked;
            if !cx.spend(looked as u64) {
                break;
            }
        }
    }
    out
}

fn run(cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
    let Some(object) = req.object.as_ref() else {
        return;
    };
    // A claim headed for another node is a warning; a workload that already had it is reported,
    // never blocked: scaling or deleting it must stay possible (the engine's UPDATE ratchet).
    let found = violations(cx, req.namespace, object);
    d.judge(ID, mode, req, found, |old| {
        violations(cx, req.namespace, old)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Operation;
    use crate::policy::Policy;
    use crate::policy::catalog::LiveState;
    use crate::policy::decision::Action;
    use crate::policy::testing::create;
    use crate::policy::volumes::{Source, VolumeIndex};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use serde_json::{Value, json};

    const POLICY: &str = r#"
storageClasses:
  - {name: local-wffc, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: WaitForFirstConsumer}
  - {name: topo, provisioner: topolvm.io, volumeBindingMode: WaitForFirstConsumer, default: true}
  - {name: gp3, provisioner: ebs.csi.aws.com, volumeBindingMode: Immediate}
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, None, false).unwrap()
    }

    fn pod(node: Option<&str>, volumes: Value) -> Pod {
        let mut spec = json!({"containers": [], "volumes": volumes});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        serde_json::from_value(json!({"metadata": {"name": "pinned"}, "spec": spec})).unwrap()
    }

    fn ephemeral(class: Option<&str>) -> Value {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": spec}}}])
    }

    fn claim(name: &str, class: &str, phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"storageClassName": class}, "status": {"phase": phase}}))
        .unwrap()
    }

    fn with_claims(p: &Policy, claims: &[PersistentVolumeClaim]) -> Catalog {
        let index =
            VolumeIndex::from_objects([], claims.iter().map(|c| ("default", c)), Source::Cluster);
        p.catalog(&LiveState {
            pvs: Some(index.pvs.clone()),
            claims: Some(index.claims.clone()),
            ..Default::default()
        })
    }

    fn decide(
        cat: &Catalog,
        kind: (&str, &str),
        obj: Object<'_>,
        old: Option<Object<'_>>,
        mode: Mode,
    ) -> Decision {
        let p = policy();
        let op = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        let req = create(obj)
            .operation(op)
            .old(old)
            .subject(kind.0, kind.1, "pinned")
            .request;
        let mut d = Decision::default();
        run(
            &p.context(Endpoint::Validate, cat),
            &req,
            mode.acting().unwrap(),
            &mut d,
        );
        d
    }

    fn pod_obj(p: &Pod) -> Object<'_> {
        Object::PodSpec {
            spec: p.spec.as_ref(),
            path: "spec",
            runs: Default::default(),
        }
    }

    #[test]
    fn refuses_an_ephemeral_volume_on_a_wffc_class_without_a_cluster() {
        let p = policy();
        let cat = p.static_catalog();
        let pinned = pod(Some("node-1"), ephemeral(Some("local-wffc")));
        let d = decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce);
        let inv = d.denial.expect("denied");
        assert_eq!(
            inv.message(),
            r#"Pod "pinned" is invalid: spec.nodeName: Forbidden: ephemeral volume "scratch" has class "local-wffc" with volumeBindingMode WaitForFirstConsumer, which only the scheduler binds; nodeName bypasses the scheduler and the claim stays Pending"#
        );
        assert_eq!(
            inv.errors[0].error_type.cause_reason(),
            "FieldValueForbidden"
        );
        assert_eq!(
            d.warnings,
            [
                r#"use spec.nodeSelector {"kubernetes.io/hostname": "node-1"} instead of spec.nodeName: the scheduler then binds the claim on that node"#
            ]
        );
        assert!(
            d.audit_annotations["node-name-wait-for-first-consumer"]
                .starts_with("denied: spec.nodeName: Forbidden")
        );
        // The default class counts when the template names none.
        let pinned = pod(Some("node-1"), ephemeral(None));
        let d = decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce);
        assert!(d.denial.unwrap().message().contains(r#"class "topo""#));
    }

    /// At most [`MAX_VOLUMES`] volumes of one pod spec are read, even with no request budget
    /// to stop the walk: a volume past them is not judged.
    #[test]
    fn reads_the_first_max_volumes_volumes() {
        let cat = policy().static_catalog();
        let mut volumes: Vec<Value> = (0..MAX_VOLUMES)
            .map(|i| json!({"name": format!("v{i}"), "configMap": {"name": "c"}}))
            .collect();
        let judged = pod(Some("node-1"), ephemeral(Some("local-wffc")));
        assert!(
            decide(&cat, ("", "Pod"), pod_obj(&judged), None, Mode::Enforce)
                .denial
                .is_some()
        );
        volumes.extend(
            ephemeral(Some("local-wffc"))
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        let past = pod(Some("node-1"), Value::from(volumes));
        let d = decide(&cat, ("", "Pod"), pod_obj(&past), None, Mode::Enforce);
        assert!(d.denial.is_none(), "{:?}", d.denial);
    }

    #[test]
    fn immediate_classes_and_node_selectors_are_fine() {
        let p = policy();
        let cat = p.static_catalog();
        for (node, vols) in [
            (Some("node-1"), ephemeral(Some("gp3"))),
            (Some("node-1"), ephemeral(Some("unknown"))),
            (None, ephemeral(Some("local-wffc"))),
            (Some(""), ephemeral(Some("local-wffc"))),
        ] {
            let pinned = pod(node, vols);
            assert_eq!(
                decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce),
                Decision::default()
            );
        }
    }

    #[test]
    fn refuses_a_claim_that_is_not_bound_and_waits_for_a_consumer() {
        let p = policy();
        let cat = with_claims(
            &p,
            &[
                claim("pending", "local-wffc", "Pending"),
                claim("bound", "local-wffc", "Bound"),
                claim("immediate", "gp3", "Pending"),
            ],
        );
        let vol = |c: &str| json!([{"name": "data", "persistentVolumeClaim": {"claimName": c}}]);
        let pinned = pod(Some("node-1"), vol("pending"));
        let d = decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce);
        assert_eq!(
            d.denial.unwrap().errors[0].to_string(),
            r#"spec.nodeName: Forbidden: claim "pending" is not bound and has class "local-wffc" with volumeBindingMode WaitForFirstConsumer, which only the scheduler binds; nodeName bypasses the scheduler and the claim stays Pending"#
        );
        // Pre-bound claims bind at once, scheduler or not.
        let mut prebound = claim("named", "local-wffc", "Pending");
        prebound.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
        let cat = with_claims(
            &p,
            &[
                claim("pending", "local-wffc", "Pending"),
                claim("bound", "local-wffc", "Bound"),
                claim("immediate", "gp3", "Pending"),
                prebound,
            ],
        );
        for c in ["bound", "immediate", "unknown-claim", "named"] {
            let pinned = pod(Some("node-1"), vol(c));
            assert!(
                decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce).allowed(),
                "{c}"
            );
        }
        // Without a cluster, claims are not known: nothing is said.
        let pinned = pod(Some("node-1"), vol("pending"));
        assert!(
            decide(
                &p.static_catalog(),
                ("", "Pod"),
                pod_obj(&pinned),
                None,
                Mode::Enforce
            )
            .allowed()
        );
    }

    #[test]
    fn template_paths_and_audit_mode() {
        let p = policy();
        let cat = p.static_catalog();
        let pinned = pod(Some("node-1"), ephemeral(Some("local-wffc")));
        let obj = Object::PodSpec {
            spec: pinned.spec.as_ref(),
            path: "spec.jobTemplate.spec.template.spec",
            runs: Default::default(),
        };
        let d = decide(&cat, ("batch", "CronJob"), obj, None, Mode::Audit);
        assert!(d.allowed());
        assert!(d.warnings[0].starts_with(
            "[audit] would deny: spec.jobTemplate.spec.template.spec.nodeName: Forbidden: ephemeral volume"
        ), "{:?}", d.warnings);
        assert!(d.warnings[1].starts_with("use spec.jobTemplate.spec.template.spec.nodeSelector"));
        assert_eq!(d.findings[0].action, Action::Audited);
        assert!(
            d.audit_annotations["node-name-wait-for-first-consumer"]
                .starts_with(r#"would deny: CronJob.batch "pinned" is invalid: spec.jobTemplate"#)
        );
    }

    #[test]
    fn update_keeps_what_was_already_there() {
        let p = policy();
        let cat = p.static_catalog();
        let pinned = pod(Some("node-1"), ephemeral(Some("local-wffc")));
        let d = decide(
            &cat,
            ("apps", "Deployment"),
            pod_obj(&pinned),
            Some(pod_obj(&pinned)),
            Mode::Enforce,
        );
        assert!(d.allowed());
        assert!(d.warnings[0].starts_with("pre-existing: spec.nodeName: Forbidden"));
        let free = pod(None, ephemeral(Some("local-wffc")));
        assert!(
            !decide(
                &cat,
                ("apps", "Deployment"),
                pod_obj(&pinned),
                Some(pod_obj(&free)),
                Mode::Enforce
            )
            .allowed()
        );
    }

    #[test]
    fn statefulset_claims_not_all_bound_are_refused() {
        let p = policy();
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "replicas": 2, "selector": {}, "serviceName": "web",
            "template": {"spec": {"containers": [], "nodeName": "node-1"}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"storageClassName": "local-wffc"}}]}}))
        .unwrap();
        let cat = with_claims(&p, &[claim("www-web-0", "local-wffc", "Bound")]);
        let d = decide(
            &cat,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&sts),
            None,
            Mode::Enforce,
        );
        assert!(
            d.denial.unwrap().message().starts_with(
                r#"StatefulSet.apps "pinned" is invalid: spec.template.spec.nodeName: Forbidden: claim "www-web-1" is not bound"#
            )
        );
        let cat = with_claims(
            &p,
            &[
                claim("www-web-0", "local-wffc", "Bound"),
                claim("www-web-1", "local-wffc", "Bound"),
            ],
        );
        assert!(
            decide(
                &cat,
                ("apps", "StatefulSet"),
                Object::StatefulSet(&sts),
                None,
                Mode::Enforce
            )
            .allowed()
        );
        assert!(
            decide(
                &p.static_catalog(),
                ("apps", "StatefulSet"),
                Object::StatefulSet(&sts),
                None,
                Mode::Enforce
            )
            .allowed()
        );
        // A PV pre-bound to the missing claim by claimRef binds it at once.
        let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv-1"},
            "spec": {"claimRef": {"namespace": "default", "name": "www-web-1"}}}))
        .unwrap();
        let bound = [claim("www-web-0", "local-wffc", "Bound")];
        let index =
            VolumeIndex::from_objects([&pv], bound.iter().map(|c| ("default", c)), Source::Cluster);
        let cat = p.catalog(&LiveState {
            pvs: Some(index.pvs.clone()),
            claims: Some(index.claims.clone()),
            ..Default::default()
        });
        assert!(
            decide(
                &cat,
                ("apps", "StatefulSet"),
                Object::StatefulSet(&sts),
                None,
                Mode::Enforce
            )
            .allowed()
        );
    }

    fn selected(name: &str, node: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name,
                "annotations": {"volume.kubernetes.io/selected-node": node}},
            "spec": {"storageClassName": "local-wffc"}, "status": {"phase": "Pending"}}))
        .unwrap()
    }

    #[test]
    fn a_claim_already_scheduled_for_the_pinned_node_is_fine() {
        let p = policy();
        let cat = with_claims(&p, &[selected("data", "node-1")]);
        let pinned = pod(
            Some("node-1"),
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
        );
        assert_eq!(
            decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce),
            Decision::default()
        );
    }

    #[test]
    fn a_claim_scheduled_for_another_node_is_warned_not_denied() {
        let p = policy();
        let cat = with_claims(&p, &[selected("data", "node-2")]);
        let pinned = pod(
            Some("node-1"),
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
        );
        let d = decide(&cat, ("", "Pod"), pod_obj(&pinned), None, Mode::Enforce);
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [concat!(
                r#"spec.nodeName: claim "data" was scheduled for node "node-2" (volume.kubernetes.io/selected-node), "#,
                r#"not "node-1": its volume is made or bound for "node-2"; a volume pinned there is out of reach of this pod"#
            )]
        );
        assert_eq!(d.findings[0].action, Action::Warned);
    }

    #[test]
    fn statefulset_claims_count_from_the_start_ordinal() {
        let p = policy();
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "replicas": 2, "ordinals": {"start": 5}, "selector": {}, "serviceName": "web",
            "template": {"spec": {"nodeName": "node-1", "containers": []}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"storageClassName": "local-wffc"}}]}}))
        .unwrap();
        let obj = || Object::StatefulSet(&sts);
        // Claims 5 and 6 are bound: nothing waits (counting from 0 would look for www-web-0).
        let cat = with_claims(
            &p,
            &[
                claim("www-web-5", "local-wffc", "Bound"),
                claim("www-web-6", "local-wffc", "Bound"),
            ],
        );
        assert!(decide(&cat, ("apps", "StatefulSet"), obj(), None, Mode::Enforce).allowed());
        // Claim 6 missing: refused, naming it.
        let cat = with_claims(&p, &[claim("www-web-5", "local-wffc", "Bound")]);
        let d = decide(&cat, ("apps", "StatefulSet"), obj(), None, Mode::Enforce);
        assert!(
            d.denial
                .unwrap()
                .message()
                .contains(r#"claim "www-web-6" is not bound"#),
            "{:?}",
            d.warnings
        );
    }
}
