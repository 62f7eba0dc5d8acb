//! Rule `volumeSize`: claims that fit their class's sizes.
//!
//! Drivers have minimum (and maximum) volume sizes ([`crate::policy::model::sizes`]). Below the minimum some
//! provision the minimum silently (an OCI block volume is at least 50Gi: a 1Gi claim gets a 50Gi
//! volume while ResourceQuota counts 1Gi), others fail and leave the claim Pending (EBS io1/io2
//! below 4Gi). With `action: auto` (the default) this rule **raises** the claim's
//! `spec.resources.requests.storage` to the minimum on `/mutate` where the driver would round up
//! anyway (so the claim and quotas match what will exist), and **denies** on `/validate` where
//! the driver would fail; a class's own `minSize` raises. Above a maximum is always a denial.
//! `raise`, `deny` and `warn` force one behaviour.
//!
//! StatefulSet `volumeClaimTemplates` and generic ephemeral volumes are judged on `/validate`:
//! denied where a claim would be, warned where their claims will be raised when created
//! (templates are immutable after create, so they are not patched). The class of a claim
//! without one is the default the webhook gives it ([`storage::claim_class`]), so the raise
//! composes with `defaultStorageClass`, which runs first.

use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::json;

use crate::policy::engine::config::{ConfigError, Section};
use crate::policy::engine::decision::{Decision, Violation};
use crate::policy::engine::meta::{CREATE, CREATE_UPDATE};
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::field::{FieldError, Path, go_quote};
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::quantity::Quantity;
use crate::policy::model::sizes::{Below, Max, Min, Origin, SizeRowConfig, SizeTable};
use crate::policy::model::storage;

pub const META: Meta = Meta {
    key: "volumeSize",
    annotation: "volume-size",
    summary: "claims below their class's minimum size are raised to it (or refused where the driver fails); above a maximum refused",
    denies: "below a minimum where the driver fails (built-in table read from driver source, or the class's own minSize) and above a maximum",
    warns: "claim templates and ephemeral volumes whose claims will be raised; on UPDATE, what the old object already had (never denied); action: warn",
    default_mode: Mode::Enforce,
    acts: &[
        Acts {
            endpoint: Endpoint::Mutate,
            judges: &[Judges::Claims.on(CREATE)],
        },
        Acts {
            endpoint: Endpoint::Validate,
            judges: &[
                Judges::Claims.on(CREATE_UPDATE),
                Judges::ClaimTemplates.on(CREATE_UPDATE),
                Judges::PodSpecs(PodFilter::EphemeralVolumes).on(CREATE_UPDATE),
            ],
        },
    ],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::new(&META, compile);

/// What to do with a claim below its class's minimum (`rules.volumeSize.action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeAction {
    /// Raise where the driver would provision the minimum anyway (and for a class's own
    /// `minSize`), deny where it would fail.
    #[default]
    Auto,
    Raise,
    Deny,
    Warn,
}

/// `rules.volumeSize` in the policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    #[serde(default)]
    action: SizeAction,
    /// Rows added to the built-in size table (they win over it).
    #[serde(default)]
    sizes: Vec<SizeRowConfig>,
}

#[derive(Debug)]
struct VolumeSize {
    action: SizeAction,
    table: SizeTable,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    let table = SizeTable::new(&c.sizes).map_err(|e| section.invalid(&e.key, None, e.message))?;
    Ok(Box::new(VolumeSize {
        action: c.action,
        table,
    }))
}

impl Rule for VolumeSize {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        match cx.endpoint {
            Endpoint::Mutate => self.mutate(cx, req, mode, d),
            Endpoint::Validate => self.validate(cx, req, mode, d),
        }
    }
}

/// What happens to a claim below a minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Raise,
    Deny,
    Warn,
}

/// A claim's size problem.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Problem {
    Below(Min, Behaviour),
    Above(Max),
}

/// One judged claim (or claim template) with a size problem.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    /// `spec`, `spec.volumeClaimTemplates[0].spec`, ...
    spec_path: Path,
    /// The template's path (`None` for a PVC itself).
    template: Option<Path>,
    class: String,
    request: String,
    problem: Problem,
}

impl Item {
    fn field(&self) -> Path {
        self.spec_path
            .child("resources")
            .child("requests")
            .key("storage")
    }

    /// `class "oci-bv" (blockvolume.csi.oraclecloud.com) provisions at least 50Gi`.
    fn reason(&self) -> String {
        let class = go_quote(&self.class);
        match &self.problem {
            Problem::Below(min, _) => match &min.origin {
                Origin::Class => format!("class {class} has minSize {}", min.size),
                Origin::Driver(d) => match min.below {
                    Below::RoundsUp => {
                        format!("class {class} ({d}) provisions at least {}", min.size)
                    }
                    Below::Fails => format!("class {class} ({d}) fails below {}", min.size),
                },
            },
            Problem::Above(max) => match &max.origin {
                Origin::Class => format!("class {class} has maxSize {}", max.size),
                Origin::Driver(d) => format!("class {class} ({d}) fails above {}", max.size),
            },
        }
    }

    /// The field error of a denial: `must be at least 4Gi for class "x": <source>`.
    fn error(&self) -> FieldError {
        let class = go_quote(&self.class);
        let detail = match &self.problem {
            Problem::Below(min, _) => {
                let source = match (&min.origin, min.below) {
                    (Origin::Class, _) => "the class's minSize".to_owned(),
                    (Origin::Driver(d), Below::Fails) => format!("{d} fails below it"),
                    (Origin::Driver(d), Below::RoundsUp) => format!("{d} provisions at least that"),
                };
                format!("must be at least {} for class {class}: {source}", min.size)
            }
            Problem::Above(max) => {
                let source = match &max.origin {
                    Origin::Class => "the class's maxSize".to_owned(),
                    Origin::Driver(d) => format!("{d} fails above it"),
                };
                format!("must be at most {} for class {class}: {source}", max.size)
            }
        };
        FieldError::invalid(self.field(), &self.request, &detail)
    }

    /// The warning beside a denial: why, and what would work.
    fn why(&self) -> String {
        match &self.problem {
            Problem::Below(min, _) => {
                let pending = if min.below == Below::Fails {
                    " (the claim would stay Pending)"
                } else {
                    ""
                };
                format!("{}{pending}; request at least {}", self.reason(), min.size)
            }
            Problem::Above(max) => format!(
                "{}; request at most {} or use another class",
                self.reason(),
                max.size
            ),
        }
    }

    /// What the rule answers for it on `/validate`.
    fn outcome(&self) -> Outcome {
        match &self.problem {
            Problem::Above(_) | Problem::Below(_, Behaviour::Deny) => Outcome::Violation,
            Problem::Below(min, Behaviour::Warn) => Outcome::Warning(format!(
                "{} {} is below {}: {}",
                self.field(),
                go_quote(&self.request),
                min.size,
                self.reason()
            )),
            Problem::Below(min, Behaviour::Raise) => match &self.template {
                // A claim itself was raised (or reported) on /mutate.
                None => Outcome::Nothing,
                Some(t) => Outcome::Warning(format!(
                    "claims of {t} will be raised from {} to {}: {}",
                    go_quote(&self.request),
                    go_quote(&min.size.text),
                    self.reason()
                )),
            },
        }
    }
}

enum Outcome {
    Violation,
    Warning(String),
    Nothing,
}

/// What `/validate` answers for the items: a violation per refused size, a warning-only one per
/// size that is only said.
fn violations(items: &[Item]) -> Vec<Violation> {
    items
        .iter()
        .filter_map(|item| {
            let class = Some(item.class.clone());
            match item.outcome() {
                Outcome::Violation => Some(Violation::new(item.error(), item.why(), class)),
                Outcome::Warning(why) => Some(Violation {
                    error: item.error(),
                    why,
                    class,
                    warn_only: true,
                }),
                Outcome::Nothing => None,
            }
        })
        .collect()
}

impl VolumeSize {
    fn behaviour(&self, min: &Min) -> Behaviour {
        match self.action {
            SizeAction::Auto => match (&min.origin, min.below) {
                (Origin::Class, _) | (_, Below::RoundsUp) => Behaviour::Raise,
                (_, Below::Fails) => Behaviour::Deny,
            },
            SizeAction::Raise => Behaviour::Raise,
            SizeAction::Deny => Behaviour::Deny,
            SizeAction::Warn => Behaviour::Warn,
        }
    }

    /// The size problem of one claim spec, if any.
    fn judge(
        &self,
        cx: &Context<'_>,
        namespace: Option<&str>,
        meta: Option<&ObjectMeta>,
        spec: Option<&PersistentVolumeClaimSpec>,
        spec_path: Path,
        template: Option<Path>,
    ) -> Option<Item> {
        // A claim pre-bound to an existing volume provisions nothing: no driver limit applies
        // (raising it could even make it too large for its volume).
        if spec?.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
            return None;
        }
        let request = spec?
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("storage")?
            .0
            .clone();
        // Not a quantity, zero or negative: the API refuses it anyway; raising it would turn
        // an invalid claim into a valid one of another size. Not judged.
        let (low, high) = Quantity::parse_bounds(&request).ok()?;
        if low.nanos() <= 0 {
            return None;
        }
        let class = storage::claim_class(cx.settings, cx.catalog, namespace, meta, spec)?;
        let info = cx.catalog.class(&class)?;
        let limits = self.table.limits(info);
        // Past 38 significant digits the value lies between `low` and `high`; each comparison
        // with a limit (at most 38 digits) is still exact.
        let problem = if let Some(max) = limits.max.filter(|m| high > m.size.value) {
            Problem::Above(max)
        } else if let Some(min) = limits.min.filter(|m| low < m.size.value) {
            let b = self.behaviour(&min);
            Problem::Below(min, b)
        } else {
            return None;
        };
        Some(Item {
            spec_path,
            template,
            class,
            request,
            problem,
        })
    }

    /// Every size problem of an object.
    fn items(&self, cx: &Context<'_>, namespace: Option<&str>, object: &Object<'_>) -> Vec<Item> {
        cx.claim_sites(ID, object)
            .into_iter()
            .filter_map(|site| {
                let template = site.is_template().then(|| site.at.clone());
                self.judge(
                    cx,
                    namespace,
                    site.meta,
                    site.spec,
                    site.spec_path(),
                    template,
                )
            })
            .collect()
    }

    /// `/mutate`, PVC CREATE: raises a claim below a minimum the rule raises to.
    fn mutate(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        let Some(Object::Pvc(pvc)) = req.object else {
            return;
        };
        let Some(item) = self.judge(
            cx,
            req.namespace,
            Some(&pvc.metadata),
            pvc.spec.as_ref(),
            Path::new("spec"),
            None,
        ) else {
            return;
        };
        let Problem::Below(min, Behaviour::Raise) = &item.problem else {
            return;
        };
        // The request exists (it was judged), so its parents do: a replace applies.
        let op = PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(["spec", "resources", "requests", "storage"]),
            value: json!(min.size.text),
        });
        let what = format!(
            "{} {} (was {}: {})",
            item.field(),
            go_quote(&min.size.text),
            go_quote(&item.request),
            item.reason()
        );
        d.mutation(ID, mode, &what, Some(item.class.clone()), op);
        if mode == Acting::Enforce {
            d.warn(format!(
                "{} raised from {} to {}: {}",
                item.field(),
                go_quote(&item.request),
                go_quote(&min.size.text),
                item.reason()
            ));
        }
    }

    /// `/validate`: denials (and warnings) for claims, claim templates and ephemeral volumes.
    fn validate(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        let Some(object) = req.object.as_ref() else {
            return;
        };
        let items = self.items(cx, req.namespace, object);
        if items.is_empty() {
            return;
        }
        // What the old object already had never blocks, nor warns again (the engine's UPDATE
        // ratchet).
        d.judge(ID, mode, req, violations(&items), |old| {
            violations(&self.items(cx, req.namespace, old))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Operation;
    use crate::policy::catalog::{LiveClass, LiveState};
    use crate::policy::decision::Action;
    use crate::policy::model::limits::MAX_VOLUMES;
    use crate::policy::testing::create;
    use crate::policy::{Catalog, Policy};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;

    const POLICY: &str = r#"
storageClasses:
  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com, default: true}
  - {name: ebs-io2, provisioner: ebs.csi.aws.com, parameters: {type: io2}}
  - {name: do-block, provisioner: dobs.csi.digitalocean.com}
  - {name: capped, provisioner: nfs.csi.k8s.io, minSize: 10Gi, maxSize: 100Gi}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
"#;

    fn policy(extra: &str) -> Policy {
        Policy::parse(&format!("{POLICY}{extra}"), None, false).unwrap()
    }

    fn pvc(class: Option<&str>, size: &str) -> PersistentVolumeClaim {
        let mut spec =
            json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": spec})).unwrap()
    }

    fn request<'a>(
        op: Operation,
        kind: (&'a str, &'a str),
        obj: Object<'a>,
        old: Option<Object<'a>>,
    ) -> Request<'a> {
        create(obj)
            .operation(op)
            .old(old)
            .subject(kind.0, kind.1, "data")
            .request
    }

    fn decide(
        p: &Policy,
        cat: &Catalog,
        endpoint: Endpoint,
        c: &PersistentVolumeClaim,
    ) -> Decision {
        let req = request(
            Operation::Create,
            ("", "PersistentVolumeClaim"),
            Object::Pvc(c),
            None,
        );
        p.decide(endpoint, cat, &req)
    }

    fn patched(c: &PersistentVolumeClaim, d: &Decision) -> PersistentVolumeClaim {
        let mut doc = serde_json::to_value(c).unwrap();
        json_patch::patch(&mut doc, &d.patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn storage(c: &PersistentVolumeClaim) -> String {
        c.spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0
            .clone()
    }

    #[test]
    fn raises_a_claim_to_the_minimum_the_driver_provisions() {
        let p = policy("");
        let cat = p.static_catalog();
        let c = pvc(Some("oci-bv"), "1Gi");
        let d = decide(&p, &cat, Endpoint::Mutate, &c);
        assert_eq!(storage(&patched(&c, &d)), "50Gi");
        assert_eq!(
            d.warnings,
            [
                r#"spec.resources.requests[storage] raised from "1Gi" to "50Gi": class "oci-bv" (blockvolume.csi.oraclecloud.com) provisions at least 50Gi"#
            ]
        );
        assert_eq!(d.findings[0].action, Action::Mutated);
        assert!(
            d.audit_annotations["volume-size"]
                .starts_with("set spec.resources.requests[storage] \"50Gi\"")
        );
        // Validation then has nothing to say.
        assert_eq!(
            decide(&p, &cat, Endpoint::Validate, &patched(&c, &d)),
            Decision::default()
        );
        assert!(
            decide(&p, &cat, Endpoint::Mutate, &patched(&c, &d))
                .patch
                .is_empty()
        );
    }

    #[test]
    fn compares_quantities_by_value() {
        let p = policy("");
        let cat = p.static_catalog();
        for (size, raised) in [
            ("50G", true),
            ("53687091199", true),
            ("50Gi", false),
            ("51200Mi", false),
            ("0.05Ti", false),
            ("1.5Ti", false),
        ] {
            let d = decide(&p, &cat, Endpoint::Mutate, &pvc(Some("oci-bv"), size));
            assert_eq!(!d.patch.is_empty(), raised, "{size}");
        }
    }

    #[test]
    fn denies_where_the_driver_fails() {
        let p = policy("");
        let cat = p.static_catalog();
        let c = pvc(Some("ebs-io2"), "1Gi");
        assert!(decide(&p, &cat, Endpoint::Mutate, &c).patch.is_empty());
        let d = decide(&p, &cat, Endpoint::Validate, &c);
        let inv = d.denial.expect("denied");
        assert_eq!(
            inv.message(),
            r#"PersistentVolumeClaim "data" is invalid: spec.resources.requests[storage]: Invalid value: "1Gi": must be at least 4Gi for class "ebs-io2": ebs.csi.aws.com type io2 fails below it"#
        );
        assert_eq!(inv.errors[0].error_type.cause_reason(), "FieldValueInvalid");
        assert_eq!(
            d.warnings,
            [
                r#"class "ebs-io2" (ebs.csi.aws.com type io2) fails below 4Gi (the claim would stay Pending); request at least 4Gi"#
            ]
        );
        assert!(decide(&p, &cat, Endpoint::Validate, &pvc(Some("ebs-io2"), "4Gi")).allowed());
    }

    #[test]
    fn class_limits_raise_and_deny() {
        let p = policy("");
        let cat = p.static_catalog();
        let c = pvc(Some("capped"), "1Gi");
        assert_eq!(
            storage(&patched(&c, &decide(&p, &cat, Endpoint::Mutate, &c))),
            "10Gi"
        );
        let big = pvc(Some("capped"), "101Gi");
        let d = decide(&p, &cat, Endpoint::Validate, &big);
        assert!(d.denial.unwrap().message().ends_with(
            r#"Invalid value: "101Gi": must be at most 100Gi for class "capped": the class's maxSize"#
        ));
        assert!(decide(&p, &cat, Endpoint::Validate, &pvc(Some("capped"), "100Gi")).allowed());
        let huge = pvc(Some("do-block"), "16.5Ti");
        assert!(!decide(&p, &cat, Endpoint::Validate, &huge).allowed());
        // A maximum is a denial whatever the action.
        let warn = policy("rules:\n  volumeSize: {action: warn}\n");
        assert!(!decide(&warn, &warn.static_catalog(), Endpoint::Validate, &huge).allowed());
    }

    #[test]
    fn actions_force_one_behaviour() {
        let io2 = pvc(Some("ebs-io2"), "1Gi");
        let oci = pvc(Some("oci-bv"), "1Gi");
        let raise = policy("rules:\n  volumeSize: {action: raise}\n");
        let cat = raise.static_catalog();
        assert_eq!(
            storage(&patched(
                &io2,
                &decide(&raise, &cat, Endpoint::Mutate, &io2)
            )),
            "4Gi"
        );
        let deny = policy("rules:\n  volumeSize: {action: deny}\n");
        assert!(decide(&deny, &cat, Endpoint::Mutate, &oci).patch.is_empty());
        assert!(!decide(&deny, &cat, Endpoint::Validate, &oci).allowed());
        let warn = policy("rules:\n  volumeSize: {action: warn}\n");
        assert!(decide(&warn, &cat, Endpoint::Mutate, &io2).patch.is_empty());
        let d = decide(&warn, &cat, Endpoint::Validate, &io2);
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                r#"spec.resources.requests[storage] "1Gi" is below 4Gi: class "ebs-io2" (ebs.csi.aws.com type io2) fails below 4Gi"#
            ]
        );
    }

    #[test]
    fn a_claim_without_class_is_sized_for_its_default_and_both_patches_compose() {
        let p = policy("");
        let cat = p.static_catalog();
        let c = pvc(None, "1Gi");
        let d = decide(&p, &cat, Endpoint::Mutate, &c);
        assert_eq!(d.patch.len(), 2, "{:?}", d.patch);
        let after = patched(&c, &d);
        assert_eq!(
            after.spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some("oci-bv")
        );
        assert_eq!(storage(&after), "50Gi");
        assert!(decide(&p, &cat, Endpoint::Mutate, &after).patch.is_empty());
        // The empty class is no class: never sized.
        assert_eq!(
            decide(&p, &cat, Endpoint::Mutate, &pvc(Some(""), "1Gi")),
            Decision::default()
        );
    }

    #[test]
    fn unknown_classes_bad_quantities_and_pre_bound_claims_are_not_judged() {
        let p = policy("");
        let cat = p.static_catalog();
        let mut bound = pvc(Some("oci-bv"), "1Gi");
        bound.spec.as_mut().unwrap().volume_name = Some("pv-20g".into());
        for c in [
            pvc(Some("nfs"), "1"),
            pvc(Some("nope"), "1"),
            pvc(Some("oci-bv"), "1 Gi"),
            bound,
        ] {
            assert_eq!(decide(&p, &cat, Endpoint::Mutate, &c), Decision::default());
            assert_eq!(
                decide(&p, &cat, Endpoint::Validate, &c),
                Decision::default()
            );
        }
    }

    #[test]
    fn live_class_annotations_give_limits() {
        let p = policy("");
        let cat = p.catalog(&LiveState {
            classes: vec![LiveClass {
                name: "fast".into(),
                provisioner: "example.com/fast".into(),
                min_size: Some("20Gi".into()),
                max_size: Some("banana".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let c = pvc(Some("fast"), "1Gi");
        assert_eq!(
            storage(&patched(&c, &decide(&p, &cat, Endpoint::Mutate, &c))),
            "20Gi"
        );
        assert!(decide(&p, &cat, Endpoint::Validate, &pvc(Some("fast"), "1Pi")).allowed());
    }

    fn sts(class: &str, size: &str) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {
            "selector": {}, "serviceName": "x", "template": {},
            "volumeClaimTemplates": [
                {"metadata": {"name": "ok"}, "spec": {"storageClassName": "nfs", "resources": {"requests": {"storage": "1Gi"}}}},
                {"metadata": {"name": "t"}, "spec": {"storageClassName": class, "resources": {"requests": {"storage": size}}}}
            ]}}))
        .unwrap()
    }

    #[test]
    fn templates_are_denied_at_their_path_or_warned() {
        let p = policy("");
        let cat = p.static_catalog();
        let s = sts("ebs-io2", "1Gi");
        let req = request(
            Operation::Create,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&s),
            None,
        );
        let d = p.decide(Endpoint::Validate, &cat, &req);
        assert_eq!(
            d.denial.unwrap().errors[0].to_string(),
            r#"spec.volumeClaimTemplates[1].spec.resources.requests[storage]: Invalid value: "1Gi": must be at least 4Gi for class "ebs-io2": ebs.csi.aws.com type io2 fails below it"#
        );
        let s = sts("oci-bv", "1Gi");
        let req = request(
            Operation::Create,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&s),
            None,
        );
        let d = p.decide(Endpoint::Validate, &cat, &req);
        assert!(d.allowed());
        assert_eq!(
            d.warnings,
            [
                r#"claims of spec.volumeClaimTemplates[1] will be raised from "1Gi" to "50Gi": class "oci-bv" (blockvolume.csi.oraclecloud.com) provisions at least 50Gi"#
            ]
        );
        // On UPDATE, what the old object had neither blocks nor warns again.
        let old = sts("ebs-io2", "1Gi");
        let new = sts("ebs-io2", "1Gi");
        let req = request(
            Operation::Update,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&new),
            Some(Object::StatefulSet(&old)),
        );
        let d = p.decide(Endpoint::Validate, &cat, &req);
        assert!(d.allowed());
        assert!(
            d.warnings[0].starts_with("pre-existing: spec.volumeClaimTemplates[1]"),
            "{:?}",
            d.warnings
        );
        let old = sts("oci-bv", "1Gi");
        let new = sts("oci-bv", "1Gi");
        let req = request(
            Operation::Update,
            ("apps", "StatefulSet"),
            Object::StatefulSet(&new),
            Some(Object::StatefulSet(&old)),
        );
        assert_eq!(
            p.decide(Endpoint::Validate, &cat, &req),
            Decision::default()
        );
    }

    #[test]
    fn audit_mode_reports_without_patching_or_denying() {
        let p = policy("rules:\n  volumeSize: {mode: audit}\n");
        let cat = p.static_catalog();
        let d = decide(&p, &cat, Endpoint::Mutate, &pvc(Some("oci-bv"), "1Gi"));
        assert!(d.patch.is_empty());
        assert!(
            d.warnings[0].starts_with(
                r#"[audit] would set spec.resources.requests[storage] "50Gi" (was "1Gi""#
            ),
            "{:?}",
            d.warnings
        );
        let d = decide(&p, &cat, Endpoint::Validate, &pvc(Some("ebs-io2"), "1Gi"));
        assert!(d.allowed());
        assert!(d.warnings[0].starts_with("[audit] would deny: spec.resources.requests[storage]"));
        assert!(
            d.audit_annotations["volume-size"]
                .starts_with("would deny: PersistentVolumeClaim \"data\" is invalid")
        );
        assert_eq!(d.findings[0].action, Action::Audited);
    }

    #[test]
    fn refuses_bad_sections_naming_the_key() {
        let err = |t: &str| Policy::parse(t, None, false).unwrap_err().to_string();
        assert!(err("rules:\n  volumeSize: {action: shrink}\n").contains("shrink"));
        assert!(
            err("rules:\n  volumeSize:\n    sizes:\n      - {provisioner: x, minSize: 1Gb}\n")
                .contains("rules.volumeSize.sizes[0].minSize")
        );
        let e =
            err("storageClasses:\n  - {name: a, provisioner: x, minSize: 10Gi, maxSize: 1Gi}\n");
        assert!(e.contains("storageClasses[0].maxSize (line 2)"), "{e}");
        assert!(
            err("storageClasses:\n  - {name: a, provisioner: x, minSize: lots}\n")
                .contains("storageClasses[0].minSize")
        );
    }

    /// The API server refuses a claim of `0` or `-1Gi`: raising it to the class minimum would
    /// turn an invalid claim into a valid one of another size.
    #[test]
    fn zero_and_negative_requests_are_left_for_the_api_server_to_refuse() {
        let p = policy("");
        let cat = p.static_catalog();
        for size in ["0", "-1Gi", "-0.5", "0Gi", "-1e3"] {
            let c = pvc(Some("oci-bv"), size);
            assert_eq!(
                decide(&p, &cat, Endpoint::Mutate, &c),
                Decision::default(),
                "{size}"
            );
            assert!(decide(&p, &cat, Endpoint::Validate, &c).allowed(), "{size}");
        }
    }

    /// A quantity of more than 38 significant digits is a valid quantity (Go's `inf.Dec`); a
    /// maxSize still applies to it, and one just inside stays allowed.
    #[test]
    fn max_size_applies_to_quantities_of_more_than_38_digits() {
        let p = policy("");
        let cat = p.static_catalog();
        let huge = format!("1{}", "1".repeat(45));
        let d = decide(&p, &cat, Endpoint::Validate, &pvc(Some("capped"), &huge));
        assert!(!d.allowed(), "{d:?}");
        // 10Gi and a fraction of a byte, 52 digits: above 10Gi once rounded up to nano-units
        // (as the API server does), below 100Gi.
        let inside = format!("10737418240.{}1", "0".repeat(40));
        let d = decide(&p, &cat, Endpoint::Validate, &pvc(Some("capped"), &inside));
        assert!(d.allowed(), "{d:?}");
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    /// A StatefulSet's claim templates are read up to MAX_VOLUMES; the rest are said unjudged.
    #[test]
    fn claim_templates_past_the_cap_are_said_unjudged() {
        let p = policy("");
        let cat = p.static_catalog();
        // `n` templates that fit, the one at `bad` below the io2 minimum.
        let sts = |n: usize, bad: usize| -> StatefulSet {
            let templates: Vec<_> = (0..n)
                .map(|i| {
                    let class = if i == bad { "ebs-io2" } else { "nfs" };
                    json!({"metadata": {"name": format!("t{i}")}, "spec": {"storageClassName": class,
                        "resources": {"requests": {"storage": "1Gi"}}}})
                })
                .collect();
            serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {
                "selector": {}, "serviceName": "x", "template": {},
                "volumeClaimTemplates": templates}}))
            .unwrap()
        };
        let said = format!(": claim templates past the first {MAX_VOLUMES}");
        for (n, bad, denied, cut) in [
            (MAX_VOLUMES, MAX_VOLUMES - 1, true, false),
            (MAX_VOLUMES + 1, MAX_VOLUMES - 1, true, true),
            (MAX_VOLUMES + 1, MAX_VOLUMES, false, true),
        ] {
            let s = sts(n, bad);
            let req = request(
                Operation::Create,
                ("apps", "StatefulSet"),
                Object::StatefulSet(&s),
                None,
            );
            let budget = crate::policy::Budget::default();
            let d = p.decide_within(Endpoint::Validate, &cat, &req, &budget);
            assert_eq!(d.denial.is_some(), denied, "{n} {bad}");
            let says = d
                .unjudged
                .iter()
                .any(|u| u.contains("volumeSize") && u.ends_with(&said));
            assert_eq!(says, cut, "{:?}", d.unjudged);
        }
    }
}
