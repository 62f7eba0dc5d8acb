//! Rule `volumeName`: a claim that pre-binds to a PersistentVolume with `spec.volumeName` is
//! told at CREATE when that PV does not exist, or when the PV controller would refuse it.
//!
//! The controller binds such a claim only to that PV. A missing PV leaves the claim Pending
//! with no event at all; an unsuitable one gives a `VolumeMismatch` event whose reason this rule
//! quotes (`checkVolumeSatisfyClaim`, [`volumes::satisfy`]); a PV reserved for another claim gives
//! `FailedBinding`. Warnings only: the PV may be created or fixed next. Without a source of PVs
//! (no cluster) the rule says nothing.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::kinds::Operation;
use crate::policy::engine::decision::{Decision, judged_against};
use crate::policy::engine::meta::CREATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::field::go_quote;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::quantity;
use crate::policy::model::volumes::{self, Modes, Phase, VolumeIndex, Wants};

pub const META: Meta = Meta {
    key: "volumeName",
    annotation: "volume-name",
    summary: "warns when a claim's spec.volumeName names a PersistentVolume that is missing or would not bind",
    denies: "never denies",
    warns: "spec.volumeName names a PV that is missing or that the PV controller would refuse",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::Claims.on(CREATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<VolumeName>(&META);

#[derive(Debug, Default)]
struct VolumeName;

impl Rule for VolumeName {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
        let (Some(index), Some(Object::Pvc(pvc))) = (cx.catalog.volumes(), req.object) else {
            return;
        };
        if req.operation != Operation::Create {
            return;
        }
        if let Some(why) = problem(index, req.namespace.unwrap_or_default(), pvc) {
            let name = pvc.metadata.name.as_deref().unwrap_or_default();
            let class = volumes::claim_class(pvc).filter(|c| !c.is_empty());
            let text = format!("claim {} will stay Pending: {why}", go_quote(name));
            d.warning(ID, class, judged_against(index.source, text));
        }
    }
}

/// What the PV controller would say about the requested volume, if it would not bind it.
pub fn problem(
    index: &VolumeIndex,
    namespace: &str,
    pvc: &PersistentVolumeClaim,
) -> Option<String> {
    let spec = pvc.spec.as_ref()?;
    let pv_name = spec.volume_name.as_deref().filter(|v| !v.is_empty())?;
    // A claim already bound (seen in files or exports, or known to the index: `audit` reviews
    // existing claims without their status) is past binding.
    let name = pvc.metadata.name.as_deref().unwrap_or_default();
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
        || index.claim(namespace, name).is_some_and(|c| c.is_bound())
    {
        return None;
    }
    let Some(pv) = index.pv(pv_name) else {
        return Some(format!(
            "spec.volumeName names PersistentVolume {}, which does not exist",
            go_quote(pv_name)
        ));
    };
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or(Some(0), |q| quantity::bytes(&q.0))?;
    let class = volumes::claim_class(pvc).unwrap_or_default();
    let w = Wants {
        namespace,
        name,
        uid: pvc.metadata.uid.as_deref().unwrap_or_default(),
        class: &class,
        modes: Modes::of(spec.access_modes.as_deref().unwrap_or(&[])),
        block: spec.volume_mode.as_deref() == Some("Block"),
        size,
        selector: None,
    };
    match &pv.claim_ref {
        None => volumes::satisfy(pv_name, pv, &w).err().map(|why| {
            format!(
                "Cannot bind to requested volume {}: {why}",
                go_quote(pv_name)
            )
        }),
        Some(_) if w.is_bound_by(pv) => None,
        Some(r) => Some(format!(
            "volume {} already bound to a different claim. (it is reserved for {}/{}{})",
            go_quote(pv_name),
            r.namespace,
            r.name,
            if pv.phase == Phase::Bound {
                ", Bound"
            } else {
                ""
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::catalog::{Catalog, LiveState};
    use crate::policy::decision::Action;
    use crate::policy::testing::{create, policy};
    use crate::policy::volumes::Source;
    use k8s_openapi::api::core::v1::PersistentVolume;
    use serde_json::{Value, json};

    fn pv(name: &str, extra: Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name}, "spec": {"storageClassName": "local-storage",
            "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/mnt/x"}}, "status": {"phase": "Available"}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn pvc(extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": "local-storage", "volumeName": "pv-1",
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn catalog(p: &Policy, pvs: &[PersistentVolume]) -> Catalog {
        let index = VolumeIndex::from_objects(pvs, [], Source::Cluster);
        p.catalog(&LiveState {
            pvs: Some(index.pvs.clone()),
            claims: Some(index.claims.clone()),
            ..Default::default()
        })
    }

    fn warnings(
        pvs: &[PersistentVolume],
        claim: &PersistentVolumeClaim,
        op: Operation,
    ) -> Vec<String> {
        let p = policy("");
        let cat = catalog(&p, pvs);
        let d = create(Object::Pvc(claim)).operation(op).check(
            &p,
            &cat,
            ID,
            Endpoint::Validate,
            Acting::Enforce,
        );
        assert!(d.allowed());
        assert!(
            d.findings
                .iter()
                .all(|f| f.rule == ID && f.action == Action::Warned)
        );
        if !d.warnings.is_empty() {
            assert!(
                d.audit_annotations.contains_key("volume-name"),
                "{:?}",
                d.audit_annotations
            );
        }
        d.warnings
    }

    #[test]
    fn names_a_missing_volume() {
        assert_eq!(
            warnings(&[], &pvc(json!({})), Operation::Create),
            [
                r#"claim "data" will stay Pending: spec.volumeName names PersistentVolume "pv-1", which does not exist"#
            ]
        );
    }

    #[test]
    fn a_volume_that_fits_is_fine() {
        assert!(warnings(&[pv("pv-1", json!({}))], &pvc(json!({})), Operation::Create).is_empty());
        // Pre-bound to this claim (by name, namespace and uid).
        let mine = pv(
            "pv-1",
            json!({"spec": {"storageClassName": "x",
            "claimRef": {"namespace": "default", "name": "data", "uid": "u1"}}}),
        );
        assert!(warnings(&[mine], &pvc(json!({})), Operation::Create).is_empty());
        // Not on UPDATE, not without volumeName.
        assert!(warnings(&[], &pvc(json!({})), Operation::Update).is_empty());
        assert!(
            warnings(
                &[],
                &pvc(json!({"spec": {"volumeName": null}})),
                Operation::Create
            )
            .is_empty()
        );
    }

    #[test]
    fn quotes_the_controllers_reason() {
        let cases = [
            (
                json!({"spec": {"capacity": {"storage": "1Gi"}}}),
                "requested PV is too small",
            ),
            (
                json!({"spec": {"storageClassName": "other"}}),
                "storageClassName does not match",
            ),
            (
                json!({"spec": {"volumeMode": "Block"}}),
                "incompatible volumeMode",
            ),
            (
                json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
                "incompatible accessMode",
            ),
            (
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
                r#"the volume is marked for deletion "pv-1""#,
            ),
        ];
        for (extra, reason) in cases {
            assert_eq!(
                warnings(&[pv("pv-1", extra)], &pvc(json!({})), Operation::Create),
                [format!(
                    r#"claim "data" will stay Pending: Cannot bind to requested volume "pv-1": {reason}"#
                )]
            );
        }
    }

    #[test]
    fn says_when_the_volume_is_reserved_for_another_claim() {
        let theirs = pv(
            "pv-1",
            json!({"spec": {"claimRef": {"namespace": "team-b", "name": "db"}},
            "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            warnings(&[theirs], &pvc(json!({})), Operation::Create),
            [
                r#"claim "data" will stay Pending: volume "pv-1" already bound to a different claim. (it is reserved for team-b/db, Bound)"#
            ]
        );
        let old_uid = pv(
            "pv-1",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "u0"}}}),
        );
        assert_eq!(
            warnings(&[old_uid], &pvc(json!({})), Operation::Create).len(),
            1
        );
    }
}
