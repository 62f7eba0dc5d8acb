//! The registry of rules: one line per rule. Modes, config keys, audit annotations, metric
//! labels, the webhook registrations the chart must make and the docs' rule table all derive
//! from it (and tests check the chart, the values schema and docs/rules.md against it).

use serde::{Deserialize, Serialize};

use super::config::{ConfigError, PolicyFile, Section};
use super::modes::Mode;
use super::rule::{Acts, Endpoint, Entry, Judges, Meta, PodFilter, Rule};
use super::rules::{
    access_modes, claim_ref, data_sources, default_class, delete_in_use, local_volume_nodes,
    missing_provisioner, node_affinity, node_name_wffc, reclaim_policy, unknown_class, volume_name,
    volume_size, volume_topology, will_bind,
};
use super::rules::{missing_claims, shared_claims};
use super::storage::Settings;
use crate::kinds::{self, Kind, Operation};

/// Every rule, in the order they run (a mutation that others build on comes first).
pub const REGISTRY: &[Entry] = &[
    default_class::ENTRY,
    node_affinity::ENTRY,
    access_modes::ENTRY,
    // After defaultStorageClass: a claim without a class is sized for the default it gets.
    volume_size::ENTRY,
    reclaim_policy::ENTRY,
    claim_ref::ENTRY,
    local_volume_nodes::ENTRY,
    unknown_class::ENTRY,
    node_name_wffc::ENTRY,
    will_bind::ENTRY,
    volume_name::ENTRY,
    shared_claims::ENTRY,
    missing_claims::ENTRY,
    data_sources::ENTRY,
    delete_in_use::ENTRY,
    volume_topology::ENTRY,
    missing_provisioner::ENTRY,
];

/// A compiled rule and the mode it runs in (before namespace labels and `--dry-run`).
#[derive(Debug)]
pub struct Compiled {
    pub meta: &'static Meta,
    pub rule: Box<dyn Rule>,
    pub mode: Mode,
}

/// The `mode` of a rule's section (the rule's own config type declares the key too).
#[derive(Deserialize)]
struct ModeOnly {
    #[serde(default)]
    mode: Option<Mode>,
}

/// Compiles every rule's section: a section for no rule is an error naming its key, and each
/// rule validates its own typed config.
pub fn compile(file: &PolicyFile) -> Result<(Vec<Compiled>, Settings), ConfigError> {
    for (key, value) in &file.rules {
        if !REGISTRY.iter().any(|e| e.meta.key == key) {
            let known: Vec<&str> = REGISTRY.iter().map(|e| e.meta.key).collect();
            return Err(ConfigError::Invalid {
                origin: file.origin.clone(),
                key: format!("rules.{key}"),
                line: Some(value.referenced.line()),
                message: format!("unknown rule (known rules: {})", known.join(", ")),
            });
        }
    }
    let mut settings = Settings::default();
    let mut rules = Vec::with_capacity(REGISTRY.len());
    for entry in REGISTRY {
        let section = Section {
            file,
            key: entry.meta.key,
        };
        let own = section.config::<ModeOnly>()?.and_then(|m| m.mode);
        let rule = (entry.compile)(section)?;
        rule.configure(&mut settings);
        rules.push(Compiled {
            meta: entry.meta,
            rule,
            mode: own.or(file.mode).unwrap_or(entry.meta.default_mode),
        });
    }
    Ok((rules, settings))
}

/// The metadata of the rule with this key.
pub fn meta(key: &str) -> Option<&'static Meta> {
    REGISTRY.iter().map(|e| e.meta).find(|m| m.key == key)
}

/// One `rules[]` entry of a webhook registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRule {
    pub api_groups: Vec<&'static str>,
    pub api_versions: Vec<&'static str>,
    pub operations: Vec<&'static str>,
    pub resources: Vec<&'static str>,
    pub scope: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
}

/// A webhook registration the chart must make: which kinds and operations reach which endpoint,
/// filtered by which `matchConditions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub name: String,
    pub endpoint: Endpoint,
    pub path: String,
    pub rules: Vec<RegistrationRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_conditions: Vec<MatchCondition>,
}

/// What one kind needs from an endpoint: its operations, and `None` (send every object) or the
/// pod filters of which one must hold.
fn needs(endpoint: Endpoint, kind: &Kind) -> Option<(Vec<Operation>, Option<Vec<PodFilter>>)> {
    let rules: Vec<&Acts> = REGISTRY
        .iter()
        .filter_map(|e| e.meta.at(endpoint))
        .filter(|a| a.judges_kind(kind))
        .collect();
    let mut ops: Vec<Operation> = kind
        .operations
        .iter()
        .copied()
        .filter(|op| rules.iter().any(|a| a.operations_on(kind).contains(op)))
        .collect();
    ops.sort();
    if ops.is_empty() {
        return None;
    }
    let judges = rules
        .iter()
        .flat_map(|m| m.judges.iter())
        .map(|j| j.part)
        .filter(|j| j.in_kind(kind));
    let mut filters = Vec::new();
    for j in judges {
        match j {
            Judges::PodSpecs(f) => filters.push(f),
            // Something other than a pod spec is judged: every object of the kind is sent.
            _ => return Some((ops, None)),
        }
    }
    filters.sort();
    filters.dedup();
    // A filter another one covers adds nothing to the condition.
    let all = filters.clone();
    filters.retain(|f| !all.iter().any(|g| g != f && g.covers(*f)));
    // A pod spec with claims by name or ephemeral volumes is sent anyway: `nodeName` with
    // either adds nothing.
    if filters.contains(&PodFilter::EphemeralVolumes) && filters.contains(&PodFilter::ClaimsByName)
    {
        filters.retain(|f| *f != PodFilter::NodeNameWithClaims);
    }
    Some((ops, Some(filters)))
}

/// The `matchConditions` of the mutating registration: every object but a PersistentVolume a
/// provisioner made (`pv.kubernetes.io/provisioned-by` naming an external provisioner) that no
/// mutating rule can change. `reclaimPolicy` leaves such volumes to their provisioner;
/// `localVolumeNodeAffinity` fills only a local or hostPath volume without required node
/// affinity, so those are still sent. A webhook outage then never stalls dynamic provisioning.
pub const NOT_PROVISIONED_CEL: &str = "request.resource.resource != 'persistentvolumes' || \
    !(has(object.metadata.annotations) && 'pv.kubernetes.io/provisioned-by' in object.metadata.annotations && \
    object.metadata.annotations['pv.kubernetes.io/provisioned-by'] != '' && \
    !object.metadata.annotations['pv.kubernetes.io/provisioned-by'].startsWith('kubernetes.io/')) || \
    ((has(object.spec.local) || has(object.spec.hostPath)) && \
    !(has(object.spec.nodeAffinity) && has(object.spec.nodeAffinity.required)))";

/// The `matchConditions` of the DELETE registration: only a claim not already being deleted, or a
/// PV not already being deleted whose status is `Bound` (the only PV the pv-protection controller
/// keeps: `isBeingUsed` in `pkg/controller/volume/pvprotection/pv_protection_controller.go`).
/// A DELETE carries no `object`: the conditions read `oldObject`. Every other DELETE of a claim
/// or PV is never sent.
pub const DELETE_CEL: &str = "!has(oldObject.metadata.deletionTimestamp) && \
    (request.resource.resource == 'persistentvolumeclaims' || \
    (has(oldObject.status) && has(oldObject.status.phase) && oldObject.status.phase == 'Bound'))";

/// The name of the registration that sends DELETEs (of claims and PVs): its own, so that its
/// `matchConditions` and its `failurePolicy: Ignore` (a webhook outage must never block a delete,
/// nor a namespace's deletion) touch nothing else.
pub const DELETE_WEBHOOK: &str = "deletes";

/// The webhook registrations of an endpoint, derived from the registry and the kinds table:
/// `<endpoint>.storage-policy.io` for kinds sent whole, `<group>.<endpoint>.storage-policy.io`
/// for kinds sent only when a pod filter holds (conditions apply to a whole registration).
pub fn registrations(endpoint: Endpoint) -> Vec<Registration> {
    let mut out: Vec<Registration> = Vec::new();
    for kind in kinds::KINDS {
        let Some((ops, filters)) = needs(endpoint, kind) else {
            continue;
        };
        let (name, conditions) = match (&filters, kind.pod_spec()) {
            (Some(filters), Some(path)) => {
                let exprs: Vec<String> = filters.iter().map(|f| f.cel(path)).collect();
                let expression = if exprs.len() == 1 {
                    exprs[0].clone()
                } else {
                    exprs
                        .iter()
                        .map(|e| format!("({e})"))
                        .collect::<Vec<_>>()
                        .join(" || ")
                };
                (
                    format!(
                        "{}.{}.storage-policy.io",
                        kind.filtered_webhook,
                        endpoint.as_str()
                    ),
                    vec![MatchCondition {
                        name: "storage-relevant".to_owned(),
                        expression,
                    }],
                )
            }
            _ => (
                format!("{}.storage-policy.io", endpoint.as_str()),
                Vec::new(),
            ),
        };
        let rule = RegistrationRule {
            api_groups: vec![kind.group],
            api_versions: vec![kind.version],
            operations: ops.iter().map(|o| o.as_str()).collect(),
            resources: vec![kind.plural],
            scope: if kind.namespaced {
                "Namespaced"
            } else {
                "Cluster"
            },
        };
        match out.iter_mut().find(|r| r.name == name) {
            Some(r) => r.rules.push(rule),
            None => out.push(Registration {
                name,
                endpoint,
                path: format!("/{}", endpoint.as_str()),
                rules: vec![rule],
                match_conditions: conditions,
            }),
        }
    }
    let deletes: Vec<RegistrationRule> = kinds::KINDS
        .iter()
        .filter(|kind| {
            REGISTRY
                .iter()
                .filter_map(|e| e.meta.at(endpoint))
                .any(|a| a.operations_on(kind).contains(&Operation::Delete))
        })
        .map(|kind| RegistrationRule {
            api_groups: vec![kind.group],
            api_versions: vec![kind.version],
            operations: vec![Operation::Delete.as_str()],
            resources: vec![kind.plural],
            scope: if kind.namespaced {
                "Namespaced"
            } else {
                "Cluster"
            },
        })
        .collect();
    if !deletes.is_empty() {
        out.push(Registration {
            name: format!("{DELETE_WEBHOOK}.{}.storage-policy.io", endpoint.as_str()),
            endpoint,
            path: format!("/{}", endpoint.as_str()),
            rules: deletes,
            match_conditions: vec![MatchCondition {
                name: "still-protected".to_owned(),
                expression: DELETE_CEL.to_owned(),
            }],
        });
    }
    if endpoint == Endpoint::Mutate {
        for r in &mut out {
            if r.match_conditions.is_empty()
                && r.rules
                    .iter()
                    .any(|x| x.resources.contains(&"persistentvolumes"))
            {
                r.match_conditions.push(MatchCondition {
                    name: "not-provisioned".to_owned(),
                    expression: NOT_PROVISIONED_CEL.to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_annotations_are_unique_and_valid() {
        for (i, e) in REGISTRY.iter().enumerate() {
            let m = e.meta;
            assert!(
                REGISTRY[..i]
                    .iter()
                    .all(|o| o.meta.key != m.key && o.meta.annotation != m.annotation),
                "{} registered twice",
                m.key
            );
            let a = m.annotation;
            assert!(a.len() <= 63 && !a.contains('/'), "{a}");
            assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            assert!(!m.acts.is_empty(), "{}", m.key);
            for (j, a) in m.acts.iter().enumerate() {
                assert!(
                    !a.judges.is_empty() && a.judges.iter().all(|j| !j.operations.is_empty()),
                    "{}",
                    m.key
                );
                assert!(
                    m.acts[..j].iter().all(|b| b.endpoint != a.endpoint),
                    "{}: one entry per endpoint",
                    m.key
                );
            }
            assert!(!m.summary.is_empty());
            assert_eq!(meta(m.key).map(|x| x.key), Some(m.key));
        }
        assert!(meta("nope").is_none());
    }

    #[test]
    fn mutating_registration_covers_claims_and_volumes_on_create() {
        let regs = registrations(Endpoint::Mutate);
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].name, "mutate.storage-policy.io");
        let res: Vec<(&str, &Vec<&str>)> = regs[0]
            .rules
            .iter()
            .map(|r| (r.resources[0], &r.operations))
            .collect();
        assert_eq!(
            res,
            vec![
                ("persistentvolumeclaims", &vec!["CREATE"]),
                ("persistentvolumes", &vec!["CREATE"])
            ]
        );
        assert_eq!(
            regs[0].match_conditions,
            vec![MatchCondition {
                name: "not-provisioned".to_owned(),
                expression: NOT_PROVISIONED_CEL.to_owned()
            }]
        );
    }

    /// What [`NOT_PROVISIONED_CEL`] says of a PV, in Rust: whether it is sent to /mutate.
    fn sent_to_mutate(pv: &serde_json::Value) -> bool {
        let by = pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"].as_str();
        let external = by.is_some_and(|p| !p.is_empty() && !p.starts_with("kubernetes.io/"));
        let spec = &pv["spec"];
        let node_local = spec.get("local").is_some() || spec.get("hostPath").is_some();
        let pinned = spec["nodeAffinity"].get("required").is_some();
        !external || (node_local && !pinned)
    }

    #[test]
    fn the_mutating_condition_skips_only_volumes_no_mutating_rule_changes() {
        use crate::policy::{Object, Policy};
        use serde_json::json;
        // Every mutating rule enforcing, a path rule matching every path.
        let policy = Policy::parse(
            "mode: enforce\nrules:\n  localVolumeNodeAffinity:\n    paths: [{prefix: /, nodes: [n1]}]\n",
            None,
            false,
        )
        .unwrap();
        let catalog = policy.static_catalog();
        let affinity = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}});
        let sources = [
            json!({"local": {"path": "/mnt/a"}}),
            json!({"hostPath": {"path": "/srv/a"}}),
            json!({"nfs": {"server": "nas", "path": "/x"}}),
            json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}),
        ];
        let mut skipped = 0;
        for by in [
            None,
            Some(""),
            Some("kubernetes.io/host-path"),
            Some("rancher.io/local-path"),
            Some("ebs.csi.aws.com"),
            Some("local-volume-provisioner-n1-abc"),
        ] {
            for source in &sources {
                for pinned in [false, true] {
                    for policy_name in ["Delete", "Recycle", "Retain"] {
                        let mut spec = json!({"capacity": {"storage": "1Gi"},
                            "accessModes": ["ReadWriteOnce"],
                            "persistentVolumeReclaimPolicy": policy_name});
                        spec.as_object_mut()
                            .unwrap()
                            .extend(source.as_object().unwrap().clone());
                        if pinned {
                            spec["nodeAffinity"] = affinity.clone();
                        }
                        let mut meta = json!({"name": "p"});
                        if let Some(by) = by {
                            meta["annotations"] = json!({"pv.kubernetes.io/provisioned-by": by});
                        }
                        let v = json!({"apiVersion": "v1", "kind": "PersistentVolume",
                                       "metadata": meta, "spec": spec});
                        if sent_to_mutate(&v) {
                            continue;
                        }
                        skipped += 1;
                        let pv: k8s_openapi::api::core::v1::PersistentVolume =
                            serde_json::from_value(v.clone()).unwrap();
                        let req = crate::policy::testing::create(Object::Pv(&pv)).request;
                        let d = policy.decide(Endpoint::Mutate, &catalog, &req);
                        assert!(
                            d.patch.is_empty(),
                            "{v} is not sent to /mutate but would be patched: {:?}",
                            d.patch
                        );
                    }
                }
            }
        }
        assert!(skipped > 0);
    }

    #[test]
    fn every_workload_kind_is_sent_to_validate() {
        let regs = registrations(Endpoint::Validate);
        let names: Vec<&str> = regs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "validate.storage-policy.io",
                "pods.validate.storage-policy.io",
                "workloads.validate.storage-policy.io",
                "cronjobs.validate.storage-policy.io",
                "deletes.validate.storage-policy.io"
            ]
        );
        let sent: Vec<&str> = regs
            .iter()
            .flat_map(|r| r.rules.iter().map(|x| x.resources[0]))
            .collect();
        for k in kinds::KINDS {
            assert!(sent.contains(&k.plural), "{} not sent", k.plural);
        }
        let pods = &regs[1];
        assert_eq!(pods.rules[0].operations, ["CREATE"]);
        assert!(
            regs[..4]
                .iter()
                .flat_map(|r| &r.rules)
                .all(|x| !x.operations.contains(&"DELETE")),
            "DELETE goes to its own registration only"
        );
        // volumeTopology judges every pod spec that mounts claims or ephemeral volumes, which
        // covers the other filters.
        assert_eq!(
            pods.match_conditions[0].expression,
            "has(object.spec.volumes) && \
             object.spec.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))"
        );
        // One registration, one pod spec path: its condition fits every kind in it.
        for r in &regs {
            let paths: Vec<Option<&str>> = r
                .rules
                .iter()
                .map(|x| {
                    kinds::KINDS
                        .iter()
                        .find(|k| k.plural == x.resources[0])
                        .and_then(|k| (!r.match_conditions.is_empty()).then(|| k.pod_spec()))
                        .flatten()
                })
                .collect();
            assert!(paths.windows(2).all(|w| w[0] == w[1]), "{}", r.name);
        }
    }

    /// What [`DELETE_CEL`] says of a DELETE, in Rust: whether it is sent.
    fn delete_sent(resource: &str, old: &serde_json::Value) -> bool {
        old["metadata"].get("deletionTimestamp").is_none()
            && (resource == "persistentvolumeclaims" || old["status"]["phase"] == "Bound")
    }

    #[test]
    fn only_deletes_the_rule_can_judge_are_sent() {
        use crate::policy::{Object, Policy};
        use serde_json::json;
        let regs = registrations(Endpoint::Validate);
        let del = regs.last().unwrap();
        assert_eq!(del.name, "deletes.validate.storage-policy.io");
        let sent: Vec<(&str, &Vec<&str>)> = del
            .rules
            .iter()
            .map(|r| (r.resources[0], &r.operations))
            .collect();
        assert_eq!(
            sent,
            [
                ("persistentvolumeclaims", &vec!["DELETE"]),
                ("persistentvolumes", &vec!["DELETE"])
            ]
        );
        assert_eq!(del.match_conditions[0].expression, DELETE_CEL);
        assert!(
            registrations(Endpoint::Mutate)
                .iter()
                .all(|r| r.rules.iter().all(|x| !x.operations.contains(&"DELETE")))
        );
        // A PV the condition leaves out never gets a warning.
        let policy = Policy::parse("mode: enforce\n", None, false).unwrap();
        let catalog = policy.static_catalog();
        for phase in ["Available", "Bound", "Released", "Failed", "Pending"] {
            for deleting in [false, true] {
                let mut v = json!({"metadata": {"name": "pv-1",
                    "finalizers": ["kubernetes.io/pv-protection"]},
                    "spec": {"claimRef": {"namespace": "a", "name": "c"}},
                    "status": {"phase": phase}});
                if deleting {
                    v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                }
                let pv: k8s_openapi::api::core::v1::PersistentVolume =
                    serde_json::from_value(v.clone()).unwrap();
                let req = crate::policy::testing::delete(Object::Pv(&pv));
                let d = req.decide(&policy, &catalog, Endpoint::Validate);
                assert!(d.allowed());
                if !delete_sent("persistentvolumes", &v) {
                    assert!(
                        d.warnings.is_empty(),
                        "{v} is not sent but warned: {:?}",
                        d.warnings
                    );
                }
            }
        }
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(!delete_sent("persistentvolumeclaims", &deleting));
    }
}
