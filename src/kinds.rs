//! The one table of kinds the webhook handles: group, version, kind, plural, scope, where the
//! pod spec and the claim templates sit, and on which operations their storage fields can change.
//!
//! The admission decoder, the metric labels, `audit` on files, `audit --cluster` and the chart's
//! webhook registrations (through `storage-policy-webhook rules --output json`, checked by the
//! chart tests) all follow this table. Pure data: it knows no rule, no HTTP and no cluster.

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// As kube-apiserver spells it (`CREATE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What part of storage an object of a kind carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A PersistentVolumeClaim.
    Claim,
    /// A PersistentVolume.
    Volume,
    /// A StorageClass.
    Class,
    /// A Pod or a workload: its pod spec (field path) and, for StatefulSets, its claim templates.
    Workload {
        pod_spec: &'static str,
        claim_templates: Option<&'static str>,
    },
}

/// One kind of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name (as in RBAC and webhook rules).
    pub plural: &'static str,
    pub namespaced: bool,
    pub part: Part,
    /// The operations on which the object's storage fields can change: a Pod's volumes are
    /// immutable, so only its CREATE is worth a call.
    pub operations: &'static [Operation],
    /// Name prefix of the webhook registration that filters this kind with `matchConditions`
    /// (the conditions differ by pod spec path, and apply to every rule of a registration).
    pub filtered_webhook: &'static str,
}

const CREATE_UPDATE: &[Operation] = &[Operation::Create, Operation::Update];
const POD_TEMPLATE: &str = "spec.template.spec";

/// Every kind the webhook handles.
pub const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        part: Part::Claim,
        operations: CREATE_UPDATE,
        filtered_webhook: "claims",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        namespaced: false,
        part: Part::Volume,
        operations: CREATE_UPDATE,
        filtered_webhook: "volumes",
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        part: Part::Workload {
            pod_spec: POD_TEMPLATE,
            claim_templates: Some("spec.volumeClaimTemplates"),
        },
        operations: CREATE_UPDATE,
        filtered_webhook: "workloads",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        part: Part::Workload {
            pod_spec: "spec",
            claim_templates: None,
        },
        operations: &[Operation::Create],
        filtered_webhook: "pods",
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        part: Part::Workload {
            pod_spec: POD_TEMPLATE,
            claim_templates: None,
        },
        operations: CREATE_UPDATE,
        filtered_webhook: "workloads",
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
        part: Part::Workload {
            pod_spec: POD_TEMPLATE,
            claim_templates: None,
        },
        operations: CREATE_UPDATE,
        filtered_webhook: "workloads",
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        part: Part::Workload {
            pod_spec: POD_TEMPLATE,
            claim_templates: None,
        },
        operations: CREATE_UPDATE,
        filtered_webhook: "workloads",
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        part: Part::Workload {
            pod_spec: POD_TEMPLATE,
            claim_templates: None,
        },
        operations: CREATE_UPDATE,
        filtered_webhook: "workloads",
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
        part: Part::Workload {
            pod_spec: "spec.jobTemplate.spec.template.spec",
            claim_templates: None,
        },
        operations: CREATE_UPDATE,
        filtered_webhook: "cronjobs",
    },
    Kind {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        plural: "storageclasses",
        namespaced: false,
        part: Part::Class,
        // Its provisioner and parameters are immutable: only a new class is worth a call.
        operations: &[Operation::Create],
        filtered_webhook: "classes",
    },
];

impl Kind {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The pod spec's field path, for workloads.
    pub fn pod_spec(&self) -> Option<&'static str> {
        match self.part {
            Part::Workload { pod_spec, .. } => Some(pod_spec),
            _ => None,
        }
    }

    /// The claim templates' field path (StatefulSets).
    pub fn claim_templates(&self) -> Option<&'static str> {
        match self.part {
            Part::Workload {
                claim_templates, ..
            } => claim_templates,
            _ => None,
        }
    }
}

/// The kind of a group, version and kind, if the webhook handles it.
pub fn lookup(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.group == group && k.version == version)
}

/// The kind of an `apiVersion` (`v1`, `apps/v1`) and `kind`.
pub fn by_api_version(api_version: &str, kind: &str) -> Option<&'static Kind> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    lookup(group, version, kind)
}

/// The table's spelling of a kind name (a bounded metric label), or `other`.
pub fn label(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| k.kind == kind)
        .map(|k| k.kind)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kinds_by_api_version() {
        assert_eq!(by_api_version("v1", "Pod").map(|k| k.plural), Some("pods"));
        assert_eq!(
            by_api_version("batch/v1", "CronJob").and_then(Kind::pod_spec),
            Some("spec.jobTemplate.spec.template.spec")
        );
        assert!(by_api_version("apps/v1beta1", "StatefulSet").is_none());
        assert!(by_api_version("v1", "ConfigMap").is_none());
        assert!(lookup("apps", "v1", "Pod").is_none());
    }

    #[test]
    fn table_is_consistent() {
        for (i, k) in KINDS.iter().enumerate() {
            assert!(
                KINDS[..i]
                    .iter()
                    .all(|o| (o.group, o.kind) != (k.group, k.kind)),
                "{} listed twice",
                k.kind
            );
            let lower = k.kind.to_lowercase();
            let plural = if lower.ends_with('s') {
                format!("{lower}es")
            } else {
                format!("{lower}s")
            };
            assert_eq!(k.plural, plural, "{}", k.kind);
            assert!(k.operations.contains(&Operation::Create), "{}", k.kind);
            assert_eq!(
                k.namespaced,
                !["PersistentVolume", "StorageClass"].contains(&k.kind)
            );
        }
        assert_eq!(label("Deployment"), "Deployment");
        assert_eq!(label("ConfigMap"), "other");
        assert_eq!(
            KINDS[2].claim_templates(),
            Some("spec.volumeClaimTemplates")
        );
        assert_eq!(KINDS[3].claim_templates(), None);
        assert_eq!(KINDS[0].pod_spec(), None);
    }
}
