//! What the registry knows of a rule without running it: its id and config key, audit
//! annotation, default mode, and where it acts (endpoints, operations, the parts of objects it
//! judges). Modes, config keys, audit annotations, metric labels, the chart's webhook
//! registrations and the docs table derive from it.

use std::fmt;

use super::request::{Object, Request};
use crate::kinds::{Kind, Operation, Part};
use crate::policy::model::modes::Mode;

/// The two webhook endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::Mutate, Endpoint::Validate];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }

    pub fn parse(s: &str) -> Option<Endpoint> {
        match s {
            "mutate" => Some(Endpoint::Mutate),
            "validate" => Some(Endpoint::Validate),
            _ => None,
        }
    }
}

/// When a pod spec is worth sending to a rule: the chart turns these into `matchConditions`, so
/// the API server calls the webhook only for pods and workloads a rule can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodFilter {
    /// The pod spec declares generic ephemeral volumes.
    EphemeralVolumes,
    /// The pod spec sets `nodeName` and mounts claims or generic ephemeral volumes.
    NodeNameWithClaims,
    /// The pod spec mounts a claim by name (`persistentVolumeClaim.claimName`).
    ClaimsByName,
    /// The pod spec mounts claims or generic ephemeral volumes.
    MountsClaims,
}

impl PodFilter {
    /// Whether every pod spec this filter lets through is let through by `self` too: a
    /// registration then needs only `self`.
    pub fn covers(self, other: PodFilter) -> bool {
        self == other || self == PodFilter::MountsClaims
    }

    /// The CEL condition on the pod spec at `path` (`spec`, `spec.template.spec`, ...). Every
    /// optional parent below `spec` is tested with `has()`, so the expression never errors.
    pub fn cel(self, path: &str) -> String {
        let full = format!("object.{path}");
        let mut guards = Vec::new();
        let mut at = String::from("object.spec");
        for seg in path.split('.').skip(1) {
            at = format!("{at}.{seg}");
            guards.push(format!("has({at})"));
        }
        match self {
            PodFilter::EphemeralVolumes => {
                guards.push(format!("has({full}.volumes)"));
                guards.push(format!("{full}.volumes.exists(v, has(v.ephemeral))"));
            }
            PodFilter::NodeNameWithClaims => {
                guards.push(format!("has({full}.nodeName)"));
                guards.push(format!("has({full}.volumes)"));
                guards.push(format!(
                    "{full}.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))"
                ));
            }
            PodFilter::ClaimsByName => {
                guards.push(format!("has({full}.volumes)"));
                guards.push(format!(
                    "{full}.volumes.exists(v, has(v.persistentVolumeClaim))"
                ));
            }
            PodFilter::MountsClaims => {
                guards.push(format!("has({full}.volumes)"));
                guards.push(format!(
                    "{full}.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))"
                ));
            }
        }
        guards.join(" && ")
    }
}

/// A part of an object a rule judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judges {
    /// PersistentVolumeClaims.
    Claims,
    /// PersistentVolumes.
    Volumes,
    /// StatefulSet `volumeClaimTemplates`.
    ClaimTemplates,
    /// Pod specs of Pods and workloads, when the filter holds.
    PodSpecs(PodFilter),
    /// StorageClasses.
    Classes,
}

impl Judges {
    /// Whether objects of `kind` carry this part.
    pub fn in_kind(self, kind: &Kind) -> bool {
        match (self, kind.part) {
            (Judges::Claims, Part::Claim)
            | (Judges::Volumes, Part::Volume)
            | (Judges::Classes, Part::Class) => true,
            (Judges::ClaimTemplates, Part::Workload { .. }) => kind.claim_templates().is_some(),
            (Judges::PodSpecs(_), Part::Workload { .. }) => true,
            _ => false,
        }
    }

    /// Whether an object under review carries this part.
    fn in_object(self, object: &Object<'_>) -> bool {
        matches!(
            (self, object),
            (Judges::Claims, Object::Pvc(_))
                | (Judges::Volumes, Object::Pv(_))
                | (Judges::ClaimTemplates, Object::StatefulSet(_))
                | (Judges::Classes, Object::StorageClass(_))
                | (
                    Judges::PodSpecs(_),
                    Object::StatefulSet(_) | Object::PodSpec { .. }
                )
        )
    }
}

/// Everything about a rule but its check.
#[derive(Debug)]
pub struct Meta {
    /// Its id: the key under `rules:` in the policy file, and the `rule` metric label.
    pub key: &'static str,
    /// The audit-annotation key (no `/`, at most 63 characters, as the API server requires).
    pub annotation: &'static str,
    /// One line for the docs table.
    pub summary: &'static str,
    /// What it denies (or patches) on: facts Kubernetes itself acts on (`docs/certainty.md`).
    pub denies: &'static str,
    /// What it only warns about: what it infers, and says it assumed.
    pub warns: &'static str,
    /// The mode when neither the rule's `mode` nor the policy's `mode` is set.
    pub default_mode: Mode,
    /// Where it acts: at most one entry per endpoint (a rule may patch on `/mutate` and deny on
    /// `/validate`).
    pub acts: &'static [Acts],
}

/// CREATE only.
pub const CREATE: &[Operation] = &[Operation::Create];
/// CREATE and UPDATE.
pub const CREATE_UPDATE: &[Operation] = &[Operation::Create, Operation::Update];

/// A part a rule judges and the operations on which it judges it.
#[derive(Debug)]
pub struct On {
    pub part: Judges,
    pub operations: &'static [Operation],
}

impl Judges {
    /// This part, judged on `operations`.
    pub const fn on(self, operations: &'static [Operation]) -> On {
        On {
            part: self,
            operations,
        }
    }
}

/// What a rule acts on at one endpoint: each part with its own operations (a PVC on CREATE
/// only, a StatefulSet on CREATE and UPDATE).
#[derive(Debug)]
pub struct Acts {
    pub endpoint: Endpoint,
    pub judges: &'static [On],
}

impl Acts {
    /// Whether it acts on objects of `kind` at all.
    pub fn judges_kind(&self, kind: &Kind) -> bool {
        self.judges.iter().any(|j| j.part.in_kind(kind))
    }

    /// The operations on which it acts on objects of `kind`, in order (none: not at all).
    pub fn operations_on(&self, kind: &Kind) -> Vec<Operation> {
        let mut ops: Vec<Operation> = self
            .judges
            .iter()
            .filter(|j| j.part.in_kind(kind))
            .flat_map(|j| j.operations.iter().copied())
            .collect();
        ops.sort();
        ops.dedup();
        ops
    }

    /// Whether it acts on this request (operation and object). A DELETE carries no object: the
    /// object being deleted is its `oldObject`.
    pub fn applies(&self, req: &Request<'_>) -> bool {
        let judged = match req.operation {
            Operation::Delete => req.old_object.as_ref(),
            _ => req.object.as_ref(),
        };
        judged.is_some_and(|o| {
            self.judges
                .iter()
                .any(|j| j.operations.contains(&req.operation) && j.part.in_object(o))
        })
    }
}

impl Meta {
    /// What the rule acts on at `endpoint`, if anything.
    pub fn at(&self, endpoint: Endpoint) -> Option<&'static Acts>
    where
        Self: 'static,
    {
        self.acts.iter().find(|a| a.endpoint == endpoint)
    }

    /// Whether the rule acts on objects of `kind` at any endpoint.
    pub fn judges_kind(&self, kind: &Kind) -> bool {
        self.acts.iter().any(|a| a.judges_kind(kind))
    }
}

/// A rule's identity: its [`Meta`], compared by key.
#[derive(Clone, Copy)]
pub struct RuleId(pub &'static Meta);

impl RuleId {
    /// The rule's name as in the policy file and in metric labels.
    pub fn as_str(self) -> &'static str {
        self.0.key
    }

    pub fn annotation_key(self) -> &'static str {
        self.0.annotation
    }

    pub fn meta(self) -> &'static Meta {
        self.0
    }
}

impl PartialEq for RuleId {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for RuleId {}

impl std::hash::Hash for RuleId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl fmt::Debug for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;

    #[test]
    fn pod_filters_guard_every_optional_parent() {
        assert_eq!(
            PodFilter::EphemeralVolumes.cel("spec"),
            "has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.ephemeral))"
        );
        assert_eq!(
            PodFilter::EphemeralVolumes.cel("spec.jobTemplate.spec.template.spec"),
            "has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && \
             has(object.spec.jobTemplate.spec.template) && \
             has(object.spec.jobTemplate.spec.template.spec) && \
             has(object.spec.jobTemplate.spec.template.spec.volumes) && \
             object.spec.jobTemplate.spec.template.spec.volumes.exists(v, has(v.ephemeral))"
        );
    }

    #[test]
    fn node_name_filter_wants_claims_or_ephemeral_volumes() {
        assert_eq!(
            PodFilter::NodeNameWithClaims.cel("spec.template.spec"),
            "has(object.spec.template) && has(object.spec.template.spec) && \
             has(object.spec.template.spec.nodeName) && has(object.spec.template.spec.volumes) && \
             object.spec.template.spec.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))"
        );
    }

    #[test]
    fn parts_match_kinds() {
        let sts = kinds::lookup("apps", "v1", "StatefulSet").unwrap();
        let pod = kinds::lookup("", "v1", "Pod").unwrap();
        let pvc = kinds::lookup("", "v1", "PersistentVolumeClaim").unwrap();
        let pv = kinds::lookup("", "v1", "PersistentVolume").unwrap();
        assert!(Judges::ClaimTemplates.in_kind(sts));
        assert!(!Judges::ClaimTemplates.in_kind(pod));
        assert!(Judges::PodSpecs(PodFilter::EphemeralVolumes).in_kind(pod));
        assert!(!Judges::PodSpecs(PodFilter::EphemeralVolumes).in_kind(pvc));
        assert!(Judges::Claims.in_kind(pvc) && !Judges::Claims.in_kind(pv));
        assert!(Judges::Volumes.in_kind(pv) && !Judges::Volumes.in_kind(sts));
    }

    /// A part judged on CREATE only is not judged on UPDATE, while another part of the same
    /// rule is: each part has its operations.
    #[test]
    fn each_part_has_its_operations() {
        const JUDGES: &[On] = &[
            Judges::Claims.on(CREATE),
            Judges::ClaimTemplates.on(CREATE_UPDATE),
        ];
        let acts = Acts {
            endpoint: Endpoint::Validate,
            judges: JUDGES,
        };
        let sts = kinds::lookup("apps", "v1", "StatefulSet").unwrap();
        let pvc = kinds::lookup("", "v1", "PersistentVolumeClaim").unwrap();
        let pod = kinds::lookup("", "v1", "Pod").unwrap();
        assert_eq!(acts.operations_on(pvc), [Operation::Create]);
        assert_eq!(
            acts.operations_on(sts),
            [Operation::Create, Operation::Update]
        );
        assert!(acts.operations_on(pod).is_empty());
        let claim = k8s_openapi::api::core::v1::PersistentVolumeClaim::default();
        let req = |operation| {
            crate::policy::testing::create(Object::Pvc(&claim))
                .operation(operation)
                .request
        };
        assert!(acts.applies(&req(Operation::Create)));
        assert!(!acts.applies(&req(Operation::Update)));
    }
}
