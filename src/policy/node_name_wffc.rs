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

use super::catalog::Catalog;
use super::config::{ConfigError, Section, VolumeBindingMode};
use super::decision::{Action, Decision, Finding, Refused};
use super::field::{FieldError, Path, go_quote};
use super::modes::Mode;
use super::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use super::storage;
use super::volumes;
use crate::kinds::Operation;

pub const META: Meta = Meta {
    key: "nodeNameWaitForFirstConsumer",
    annotation: "node-name-wait-for-first-consumer",
    summary: "spec.nodeName is refused on pods whose claims wait for the scheduler (WaitForFirstConsumer)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        operations: &[Operation::Create, Operation::Update],
        judges: &[Judges::PodSpecs(PodFilter::NodeNameWithClaims)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry {
    meta: &META,
    compile,
};

/// Ordinals of a StatefulSet looked up at most.
const MAX_ORDINALS: i32 = 10_000;

#[derive(Debug)]
struct NodeNameWffc;

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    section.mode_only()?;
    Ok(Box::new(NodeNameWffc))
}

impl Rule for NodeNameWffc {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Mode, d: &mut Decision) {
        run(cx, req, mode, d);
    }
}

/// One claim `nodeName` would leave waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Violation {
    error: FieldError,
    class: String,
    /// What to use instead.
    why: String,
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
        class: class.to_owned(),
        why: format!(
            "use {path}.nodeSelector {{\"kubernetes.io/hostname\": {}}} instead of {path}.nodeName: \
             the scheduler then binds the claim on that node",
            go_quote(node)
        ),
    }
}

/// Whether a claim is pre-bound, which the PV controller binds at once even with
/// WaitForFirstConsumer: its `spec.volumeName` is set, or a PV's `claimRef` names it.
fn binds_without_scheduler(
    cx: &Context<'_>,
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

fn violations(cx: &Context<'_>, namespace: Option<&str>, object: &Object<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let (spec, path) = match *object {
        Object::PodSpec { spec, path } => (spec, path),
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
    for v in spec.volumes.iter().flatten() {
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
                let what = format!("claim {} is not bound and", go_quote(&src.claim_name));
                out.push(violation(path, node, what, class));
            }
        }
    }
    if let (Object::StatefulSet(sts), Some(index)) = (object, cx.catalog.volumes()) {
        let sts_name = sts.metadata.name.as_deref().unwrap_or_default();
        let s = sts.spec.as_ref();
        let replicas = s
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .clamp(0, MAX_ORDINALS);
        for tpl in s
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
        {
            let tpl_name = tpl.metadata.name.as_deref().unwrap_or_default();
            let class = volumes::claim_class(tpl).or_else(|| {
                storage::choose(cx.settings, cx.catalog, namespace, tpl.spec.as_ref())
                    .map(|c| c.class)
            });
            let Some(class) = class.filter(|c| waits_for_consumer(cx.catalog, c)) else {
                continue;
            };
            let unbound = (0..replicas).find(|i| {
                let name = format!("{tpl_name}-{sts_name}-{i}");
                let claim = index.claim(ns, &name);
                !claim.is_some_and(|c| c.is_bound())
                    && !binds_without_scheduler(cx, ns, &name, claim)
            });
            if let Some(i) = unbound {
                let what = format!(
                    "claim {} is not bound and",
                    go_quote(&format!("{tpl_name}-{sts_name}-{i}"))
                );
                out.push(violation(path, node, what, &class));
            }
        }
    }
    out
}

fn run(cx: &Context<'_>, req: &Request<'_>, mode: Mode, d: &mut Decision) {
    let Some(object) = req.object.as_ref() else {
        return;
    };
    let mut found = violations(cx, req.namespace, object);
    if found.is_empty() {
        return;
    }
    // Ratchet on UPDATE: a workload that already had it is reported, never blocked (scaling
    // or deleting it must stay possible).
    if req.operation == Operation::Update
        && let Some(old) = req.old_object.as_ref()
    {
        let before = violations(cx, req.namespace, old);
        found.retain(|v| {
            let existed = before.contains(v);
            if existed {
                let msg = format!("pre-existing: {}", v.error);
                d.warn(&msg);
                d.findings.push(Finding {
                    rule: ID,
                    action: Action::Warned,
                    storage_class: Some(v.class.clone()),
                    message: msg,
                });
            }
            !existed
        });
        if found.is_empty() {
            return;
        }
    }
    // Aggregated with other rules' errors on the object (it used to replace them).
    let items = found
        .into_iter()
        .map(|v| Refused {
            error: v.error,
            why: v.why,
            class: Some(v.class),
        })
        .collect();
    d.refuse(ID, mode, &req.subject, items);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::catalog::LiveState;
    use crate::policy::volumes::{Source, VolumeIndex};
    use crate::policy::{Policy, Subject};
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
        let req = Request {
            operation: if old.is_some() {
                Operation::Update
            } else {
                Operation::Create
            },
            namespace: Some("default"),
            username: "alice",
            subject: Subject {
                group: kind.0,
                kind: kind.1,
                name: "pinned",
            },
            object: Some(obj),
            old_object: old,
        };
        let mut d = Decision::default();
        run(&p.context(Endpoint::Validate, cat), &req, mode, &mut d);
        d
    }

    fn pod_obj(p: &Pod) -> Object<'_> {
        Object::PodSpec {
            spec: p.spec.as_ref(),
            path: "spec",
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
}
