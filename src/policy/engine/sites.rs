//! The claim sites of an object under review, walked once for every rule: the PVC itself, each
//! StatefulSet `volumeClaimTemplates[i]` and each `volumes[i].ephemeral.volumeClaimTemplate` of
//! the pod spec at the path the kinds table ([`crate::kinds`]) gives, each with its field path.
//!
//! The lists are read up to [`MAX_VOLUMES`] entries; [`Context::claim_sites`] says once per rule
//! what the cap left unjudged.

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::meta::RuleId;
use super::request::Object;
use super::rule::Context;
use crate::kinds;
use crate::policy::model::field::Path;
use crate::policy::model::limits::MAX_VOLUMES;

/// What a claim site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// The PersistentVolumeClaim under review.
    Claim,
    /// A StatefulSet's `volumeClaimTemplates[i]`.
    ClaimTemplate,
    /// A generic ephemeral volume's `volumeClaimTemplate` in a pod spec.
    Ephemeral,
}

/// One claim (or claim template) of an object under review.
#[derive(Clone, Debug)]
pub struct ClaimSite<'a> {
    pub kind: SiteKind,
    /// The claim's metadata (a template's may be absent).
    pub meta: Option<&'a ObjectMeta>,
    pub spec: Option<&'a PersistentVolumeClaimSpec>,
    /// Where the claim sits: empty for the PVC itself, `spec.volumeClaimTemplates[0]`,
    /// `spec.template.spec.volumes[1].ephemeral.volumeClaimTemplate`.
    pub at: Path,
}

impl ClaimSite<'_> {
    /// A template: the claims it makes (not the object itself) are what Kubernetes acts on.
    pub fn is_template(&self) -> bool {
        self.kind != SiteKind::Claim
    }

    /// The field path of the claim's spec (`spec`, `spec.volumeClaimTemplates[0].spec`, ...).
    pub fn spec_path(&self) -> Path {
        self.at.child("spec")
    }
}

/// Which lists of an object were read only up to [`MAX_VOLUMES`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    pub templates: bool,
    pub volumes: bool,
}

/// Every claim site of `object`, in field order (claim templates before pod volumes), and
/// which lists were cut at [`MAX_VOLUMES`]. A PersistentVolume has none.
pub fn claim_sites<'a>(object: &Object<'a>) -> (Vec<ClaimSite<'a>>, Cut) {
    let mut out = Vec::new();
    let mut cut = Cut::default();
    match *object {
        Object::Pvc(pvc) => out.push(ClaimSite {
            kind: SiteKind::Claim,
            meta: Some(&pvc.metadata),
            spec: pvc.spec.as_ref(),
            at: Path::default(),
        }),
        Object::Pv(_) | Object::StorageClass(_) => {}
        Object::StatefulSet(sts) => {
            let kind = kinds::lookup("apps", "v1", "StatefulSet").expect("in the kinds table");
            let spec = sts.spec.as_ref();
            let templates = spec.and_then(|s| s.volume_claim_templates.as_ref());
            cut.templates = templates.is_some_and(|t| t.len() > MAX_VOLUMES);
            if let Some(root) = kind.claim_templates() {
                let root = Path::new(root);
                for (i, pvc) in templates
                    .into_iter()
                    .flatten()
                    .take(MAX_VOLUMES)
                    .enumerate()
                {
                    out.push(ClaimSite {
                        kind: SiteKind::ClaimTemplate,
                        meta: Some(&pvc.metadata),
                        spec: pvc.spec.as_ref(),
                        at: root.index(i),
                    });
                }
            }
            let pod = spec.and_then(|s| s.template.spec.as_ref());
            if let Some(path) = kind.pod_spec() {
                cut.volumes = ephemeral(pod, path, &mut out);
            }
        }
        Object::PodSpec { spec, path, .. } => cut.volumes = ephemeral(spec, path, &mut out),
    }
    (out, cut)
}

/// The generic ephemeral volumes of the pod spec at `path`, the first [`MAX_VOLUMES`] volumes
/// only; whether volumes were left unread.
fn ephemeral<'a>(spec: Option<&'a PodSpec>, path: &str, out: &mut Vec<ClaimSite<'a>>) -> bool {
    let volumes = spec.and_then(|s| s.volumes.as_ref());
    for (i, v) in volumes.into_iter().flatten().take(MAX_VOLUMES).enumerate() {
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            out.push(ClaimSite {
                kind: SiteKind::Ephemeral,
                meta: tpl.metadata.as_ref(),
                spec: Some(&tpl.spec),
                at: Path::new(path)
                    .child("volumes")
                    .index(i)
                    .child("ephemeral")
                    .child("volumeClaimTemplate"),
            });
        }
    }
    volumes.is_some_and(|v| v.len() > MAX_VOLUMES)
}

impl Context<'_> {
    /// The claim sites of `object` ([`claim_sites`]), for `rule`: what the cap left unread is
    /// said once in the review's unjudged warning (`<rule>: claim templates past the first
    /// 1024`, `<rule>: pod volumes past the first 1024`).
    pub fn claim_sites<'a>(&self, rule: RuleId, object: &Object<'a>) -> Vec<ClaimSite<'a>> {
        let (sites, cut) = claim_sites(object);
        if cut.templates {
            self.skip(format!(
                "{}: claim templates past the first {MAX_VOLUMES}",
                rule.as_str()
            ));
        }
        if cut.volumes {
            self.skip(format!(
                "{}: pod volumes past the first {MAX_VOLUMES}",
                rule.as_str()
            ));
        }
        sites
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use serde_json::json;

    #[test]
    fn statefulset_sites_are_templates_then_ephemeral_volumes_with_their_paths() {
        let sts: StatefulSet = serde_json::from_value(json!({"spec": {
            "selector": {}, "serviceName": "s",
            "volumeClaimTemplates": [{"metadata": {"name": "a"}, "spec": {}}],
            "template": {"spec": {"containers": [], "volumes": [
                {"name": "x", "emptyDir": {}},
                {"name": "y", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}}}))
        .unwrap();
        let (sites, cut) = claim_sites(&Object::StatefulSet(&sts));
        let paths: Vec<(SiteKind, String)> = sites
            .iter()
            .map(|s| (s.kind, s.spec_path().to_string()))
            .collect();
        assert_eq!(
            paths,
            [
                (
                    SiteKind::ClaimTemplate,
                    "spec.volumeClaimTemplates[0].spec".to_owned()
                ),
                (
                    SiteKind::Ephemeral,
                    "spec.template.spec.volumes[1].ephemeral.volumeClaimTemplate.spec".to_owned()
                )
            ]
        );
        assert_eq!(cut, Cut::default());
        assert!(sites.iter().all(ClaimSite::is_template));
    }

    #[test]
    fn lists_past_the_cap_are_cut_and_said_once_per_rule() {
        let volumes: Vec<_> = (0..=MAX_VOLUMES)
            .map(|i| json!({"name": format!("v{i}"), "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}))
            .collect();
        let pod: PodSpec =
            serde_json::from_value(json!({"containers": [], "volumes": volumes})).unwrap();
        let object = Object::PodSpec {
            spec: Some(&pod),
            path: "spec",
            runs: Default::default(),
        };
        let (sites, cut) = claim_sites(&object);
        assert_eq!(sites.len(), MAX_VOLUMES);
        assert!(cut.volumes && !cut.templates);
        let budget = crate::policy::model::limits::Budget::default();
        let policy = crate::policy::Policy::parse("", None, false).unwrap();
        let catalog = policy.static_catalog();
        let cx = Context {
            budget: Some(&budget),
            ..policy.context(super::super::meta::Endpoint::Validate, &catalog)
        };
        let rule = crate::policy::rules::volume_size::ID;
        cx.claim_sites(rule, &object);
        cx.claim_sites(rule, &object);
        assert_eq!(
            budget.skipped(),
            [format!(
                "volumeSize: pod volumes past the first {MAX_VOLUMES}"
            )]
        );
    }
}
