//! Rule `claimRefNamespace`: a PersistentVolume pre-bound with `spec.claimRef` must name the
//! claim's namespace.
//!
//! API validation accepts a `claimRef` with a name and no namespace, but the PV controller binds
//! only a claim whose name *and* namespace match (`IsVolumeBoundToClaim`), and a claim's namespace
//! is never empty: the volume stays `Available` forever and no event says why
//! (kubernetes/kubernetes#99266, #71843). This rule refuses it the way the API refuses a missing
//! field (`spec.claimRef.namespace: Required value`). It only reads the PV; which claims exist is
//! none of its business.

use crate::policy::engine::decision::{Decision, Violation};
use crate::policy::engine::meta::CREATE_UPDATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::field::{FieldError, Path, go_quote};
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::pv_controller::missing_namespace;

pub const META: Meta = Meta {
    key: "claimRefNamespace",
    annotation: "claim-ref-namespace",
    summary: "a PV whose spec.claimRef names no namespace is refused: it would stay Available and never bind",
    denies: "spec.claimRef without a namespace (IsVolumeBoundToClaim compares it: no claim can ever match)",
    warns: "on UPDATE, a claimRef the old object already had (never denied)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::Volumes.on(CREATE_UPDATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<ClaimRefNamespace>(&META);

#[derive(Debug, Default)]
struct ClaimRefNamespace;

impl Rule for ClaimRefNamespace {
    fn check(&self, _cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        run(req, mode, d);
    }
}

/// The detail of the field error: what happens, and what to do.
pub const DETAIL: &str = "the PV controller binds a claim only by name and namespace, so this volume \
                          stays Available and never binds: set the namespace of the claim";

fn violation(object: Option<&Object<'_>>) -> Option<(FieldError, String)> {
    let Some(Object::Pv(pv)) = object else {
        return None;
    };
    let name = missing_namespace(pv)?;
    let error = FieldError::required(
        Path::new("spec").child("claimRef").child("namespace"),
        DETAIL,
    );
    let why = format!(
        "claimRef {} names no namespace: no claim can ever match it; add spec.claimRef.namespace",
        go_quote(name)
    );
    Some((error, why))
}

fn violations(object: &Object<'_>) -> Vec<Violation> {
    violation(Some(object))
        .map(|(error, why)| Violation::new(error, why, None))
        .into_iter()
        .collect()
}

fn run(req: &Request<'_>, mode: Acting, d: &mut Decision) {
    let Some(object) = req.object.as_ref() else {
        return;
    };
    // A volume that already had the namespace-less claimRef can still be labelled, finalized
    // or fixed by another field (the engine's UPDATE ratchet).
    d.judge(ID, mode, req, violations(object), violations);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Operation;
    use crate::policy::decision::Action;
    use crate::policy::field::Invalid;
    use crate::policy::testing::{create, policy};
    use k8s_openapi::api::core::v1::PersistentVolume;
    use serde_json::{Value, json};

    fn pv(claim_ref: Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pv-web-0"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data/web-0"}, "claimRef": claim_ref}}))
        .unwrap()
    }

    fn decide(op: Operation, new: &PersistentVolume, old: Option<&PersistentVolume>) -> Decision {
        decide_in(Mode::Enforce, op, new, old)
    }

    fn decide_in(
        mode: Mode,
        op: Operation,
        new: &PersistentVolume,
        old: Option<&PersistentVolume>,
    ) -> Decision {
        let p = policy("");
        create(Object::Pv(new))
            .operation(op)
            .old(old.map(Object::Pv))
            .check(
                &p,
                &p.static_catalog(),
                ID,
                Endpoint::Validate,
                mode.acting().unwrap(),
            )
    }

    #[test]
    fn rejects_claim_ref_without_namespace_as_a_required_field() {
        let d = decide(Operation::Create, &pv(json!({"name": "www-web-0"})), None);
        let inv = d.denial.expect("denied");
        assert_eq!(
            inv.message(),
            format!(
                r#"PersistentVolume "pv-web-0" is invalid: spec.claimRef.namespace: Required value: {DETAIL}"#
            )
        );
        assert_eq!(
            inv.errors[0].error_type.cause_reason(),
            "FieldValueRequired"
        );
        assert_eq!(inv.errors[0].field.as_str(), "spec.claimRef.namespace");
        assert_eq!(
            d.warnings,
            [
                r#"claimRef "www-web-0" names no namespace: no claim can ever match it; add spec.claimRef.namespace"#
            ]
        );
        assert!(d.warnings[0].chars().count() <= 120);
        assert!(d.audit_annotations["claim-ref-namespace"].starts_with("denied: spec.claimRef"));
        assert_eq!(d.findings[0].action, Action::Denied);
    }

    #[test]
    fn rejects_an_empty_namespace_too() {
        let d = decide(
            Operation::Create,
            &pv(json!({"name": "www-web-0", "namespace": ""})),
            None,
        );
        assert!(!d.allowed());
    }

    #[test]
    fn allows_claim_ref_with_namespace_and_volumes_without_claim_ref() {
        let d = decide(
            Operation::Create,
            &pv(json!({"name": "www-web-0", "namespace": "default"})),
            None,
        );
        assert_eq!(d, Decision::default());
        let free: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"local": {"path": "/x"}}}),
        )
        .unwrap();
        assert_eq!(decide(Operation::Create, &free, None), Decision::default());
        let bare: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(decide(Operation::Create, &bare, None), Decision::default());
    }

    #[test]
    fn audit_mode_allows_and_names_claim_ref() {
        let d = decide_in(
            Mode::Audit,
            Operation::Create,
            &pv(json!({"name": "www-web-0"})),
            None,
        );
        assert!(d.allowed());
        assert!(
            d.warnings[0].starts_with(
                "[audit] would deny: spec.claimRef.namespace: Required value: the PV controller"
            ),
            "{:?}",
            d.warnings
        );
        assert!(d.warnings.iter().all(|w| w.contains("claimRef")));
        assert!(d.audit_annotations["claim-ref-namespace"].starts_with(
            r#"would deny: PersistentVolume "pv-web-0" is invalid: spec.claimRef.namespace"#
        ));
        assert_eq!(d.findings[0].action, Action::Audited);
    }

    #[test]
    fn update_keeping_the_violation_is_a_pre_existing_warning() {
        let old = pv(json!({"name": "www-web-0"}));
        let new = pv(json!({"name": "www-web-0"}));
        let d = decide(Operation::Update, &new, Some(&old));
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [format!(
                "pre-existing: spec.claimRef.namespace: Required value: {DETAIL}"
            )]
        );
        assert_eq!(d.findings[0].action, Action::Warned);
    }

    #[test]
    fn update_introducing_the_violation_is_refused_and_fixing_it_is_fine() {
        let old = pv(json!({"name": "www-web-0", "namespace": "default"}));
        let bad = pv(json!({"name": "www-web-0"}));
        assert!(!decide(Operation::Update, &bad, Some(&old)).allowed());
        assert_eq!(
            decide(Operation::Update, &old, Some(&bad)),
            Decision::default()
        );
    }

    #[test]
    fn adds_its_error_to_another_rules_denial() {
        let mut d = Decision::default();
        d.deny(Invalid {
            group: String::new(),
            kind: "PersistentVolume".into(),
            name: "pv-web-0".into(),
            errors: vec![FieldError::required(Path::new("spec.x"), "")],
        });
        let p = policy("");
        let v = pv(json!({"name": "www-web-0"}));
        create(Object::Pv(&v)).check_in(
            &p,
            &p.static_catalog(),
            ID,
            Endpoint::Validate,
            Acting::Enforce,
            &mut d,
        );
        let msg = d.denial.unwrap().message();
        assert!(
            msg.starts_with(r#"PersistentVolume "pv-web-0" is invalid: [spec.x: Required value, spec.claimRef.namespace: Required value"#),
            "{msg}"
        );
    }
}
