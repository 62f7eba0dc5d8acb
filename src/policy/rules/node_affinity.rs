//! Rule `localVolumeNodeAffinity`: a hand-made local PersistentVolume gets `spec.nodeAffinity`
//! on CREATE.
//!
//! The nodes come from the PV's `storage-policy.io/node` annotation (comma-separated), else from
//! the longest path rule whose prefix matches whole path components. The API rejects a `local`
//! PV without node affinity and the field is immutable after create, so CREATE is the only chance.

use std::collections::{BTreeMap, HashSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::PersistentVolume;
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use crate::policy::engine::config::{ConfigError, Section};
use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::catalog::Catalog;
use crate::policy::model::limits::{MAX_NODE_VALUES, summarise};
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::storage::Settings;

pub const META: Meta = Meta {
    key: "localVolumeNodeAffinity",
    annotation: "local-volume-node-affinity",
    summary: "a hand-made local or hostPath PV gets spec.nodeAffinity from an annotation or a path rule",
    denies: "never denies; patches a local or hostPath PV without nodeAffinity only with nodes its storage-policy.io/node annotation or a path rule names",
    warns: "no node known for the path (the API then refuses a local PV itself); named nodes that do not exist, when nodes are known",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Mutate,
        judges: &[Judges::Volumes.on(CREATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::new(&META, compile);

/// `rules.localVolumeNodeAffinity` in the policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    #[serde(default = "default_node_label")]
    node_label: String,
    #[serde(default)]
    paths: Vec<PathRuleConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            _mode: None,
            node_label: default_node_label(),
            paths: Vec::new(),
        }
    }
}

fn default_node_label() -> String {
    "kubernetes.io/hostname".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PathRuleConfig {
    prefix: Spanned<String>,
    nodes: Vec<String>,
}

/// A compiled path rule: volumes under `prefix` live on `nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    pub prefix: String,
    pub nodes: Vec<String>,
}

#[derive(Debug)]
pub struct NodeAffinity {
    pub node_label: String,
    pub paths: Vec<PathRule>,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    if c.node_label.trim().is_empty() || c.node_label.contains(char::is_whitespace) {
        return Err(section.invalid(
            "nodeLabel",
            None,
            format!("{:?} is not a label key", c.node_label),
        ));
    }
    let mut prefixes: BTreeMap<String, usize> = BTreeMap::new();
    let mut paths = Vec::with_capacity(c.paths.len());
    for (i, rule) in c.paths.into_iter().enumerate() {
        let key = format!("paths[{i}]");
        let line = Some(rule.prefix.referenced.line());
        let prefix = &rule.prefix.value;
        if !prefix.starts_with('/') {
            return Err(section.invalid(
                &format!("{key}.prefix"),
                line,
                format!("{prefix:?} is not an absolute path"),
            ));
        }
        if prefix.split('/').any(|c| c == "..") {
            return Err(section.invalid(&format!("{key}.prefix"), line, "must not contain '..'"));
        }
        if let Some(prev) = prefixes.insert(normalize_prefix(prefix), i) {
            return Err(section.invalid(
                &format!("{key}.prefix"),
                line,
                format!("duplicate prefix {prefix:?} (also paths[{prev}])"),
            ));
        }
        if rule.nodes.is_empty() {
            return Err(section.invalid(
                &format!("{key}.nodes"),
                line,
                "must name at least one node",
            ));
        }
        for (j, n) in rule.nodes.iter().enumerate() {
            if n.trim().is_empty() {
                return Err(section.invalid(
                    &format!("{key}.nodes[{j}]"),
                    line,
                    "must not be empty",
                ));
            }
        }
        paths.push(PathRule {
            prefix: rule.prefix.value,
            nodes: rule.nodes,
        });
    }
    Ok(Box::new(NodeAffinity {
        node_label: c.node_label,
        paths,
    }))
}

impl Rule for NodeAffinity {
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        if let Some(Object::Pv(pv)) = req.object {
            self.run(cx.catalog, pv, mode, d, |what| cx.skip(what));
        }
    }

    fn configure(&self, settings: &mut Settings) {
        settings.node_label = self.node_label.clone();
    }
}

/// Node names a message lists before "and N more".
const SHOWN: usize = 8;

/// PV annotation naming the node(s) that hold the volume.
pub const NODE_ANNOTATION: &str = "storage-policy.io/node";

/// Where the nodes came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodesFrom {
    Annotation,
    PathRule(String),
}

/// `/mnt/ssd/` and `/mnt//ssd` are `/mnt/ssd`; the root stays `/`.
pub fn normalize_prefix(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Whether `prefix` covers `path` by whole components: `/mnt/ssd` covers `/mnt/ssd` and
/// `/mnt/ssd/a`, not `/mnt/ssd2`. Paths with `..` are never matched (the API rejects them).
pub fn covers(prefix: &str, path: &str) -> bool {
    if path.split('/').any(|c| c == "..") || !path.starts_with('/') {
        return false;
    }
    let prefix = normalize_prefix(prefix);
    let path = normalize_prefix(path);
    prefix == "/" || path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The nodes a PV lives on, if the policy or the PV says.
pub fn nodes_for(paths: &[PathRule], pv: &PersistentVolume) -> Option<(Vec<String>, NodesFrom)> {
    if let Some(value) = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ANNOTATION))
    {
        // A set, not a scan of the names so far: linear in the annotation. One name past
        // MAX_NODE_VALUES is kept, so that the rule sees the list is too long to judge.
        let mut seen: HashSet<&str> = HashSet::new();
        let mut nodes: Vec<String> = Vec::new();
        for n in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if nodes.len() > MAX_NODE_VALUES {
                break;
            }
            if seen.insert(n) {
                nodes.push(n.to_owned());
            }
        }
        if !nodes.is_empty() {
            return Some((nodes, NodesFrom::Annotation));
        }
    }
    let spec = pv.spec.as_ref()?;
    let path = spec
        .local
        .as_ref()
        .map(|l| l.path.as_str())
        .or_else(|| spec.host_path.as_ref().map(|h| h.path.as_str()))?;
    paths
        .iter()
        .filter(|r| covers(&r.prefix, path))
        .max_by_key(|r| normalize_prefix(&r.prefix).len())
        .map(|r| (r.nodes.clone(), NodesFrom::PathRule(r.prefix.clone())))
}

/// The `required` node selector for these nodes.
pub fn required_selector(label: &str, nodes: &[String]) -> Value {
    json!({
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": label, "operator": "In", "values": nodes}]}
        ]
    })
}

impl NodeAffinity {
    pub(crate) fn run(
        &self,
        catalog: &Catalog,
        pv: &PersistentVolume,
        mode: Acting,
        d: &mut Decision,
        skip: impl FnOnce(String),
    ) {
        let Some(spec) = pv.spec.as_ref() else { return };
        let is_local = spec.local.is_some();
        if !is_local && spec.host_path.is_none() {
            return;
        }
        // Already pinned: leave it (the API validates what is there).
        if spec
            .node_affinity
            .as_ref()
            .is_some_and(|na| na.required.is_some())
        {
            return;
        }
        let rule = ID;
        let label = &self.node_label;
        let class = spec.storage_class_name.clone().filter(|c| !c.is_empty());
        let found = nodes_for(&self.paths, pv);
        if found
            .as_ref()
            .is_some_and(|(n, _)| n.len() > MAX_NODE_VALUES)
        {
            // Pinning to the first names only would be a wrong answer: leave the PV as it is.
            skip(format!(
                "PV annotation {NODE_ANNOTATION} names more than {MAX_NODE_VALUES} nodes: no \
                 spec.nodeAffinity set"
            ));
            return;
        }
        let Some((nodes, source)) = found else {
            // hostPath volumes work without affinity; a local volume is refused by the API.
            if is_local {
                let msg = format!(
                    "no node known for local path {:?}: set annotation {NODE_ANNOTATION}=<node> \
                 or a localVolumeNodeAffinity path rule",
                    spec.local
                        .as_ref()
                        .map(|l| l.path.as_str())
                        .unwrap_or_default()
                );
                d.warning(rule, class, msg);
            }
            return;
        };
        let selector = required_selector(label, &nodes);
        let what = format!(
            "spec.nodeAffinity {label} In [{}] (from {})",
            summarise(&nodes, SHOWN, ", "),
            match &source {
                NodesFrom::Annotation => format!("annotation {NODE_ANNOTATION}"),
                NodesFrom::PathRule(p) => format!("path rule {p}"),
            }
        );
        // Fill `required` when `nodeAffinity` exists without it; else add the whole field.
        let op = if spec.node_affinity.is_some() {
            AddOperation {
                path: PointerBuf::from_tokens(["spec", "nodeAffinity", "required"]),
                value: selector,
            }
        } else {
            AddOperation {
                path: PointerBuf::from_tokens(["spec", "nodeAffinity"]),
                value: json!({ "required": selector }),
            }
        };
        d.mutation(rule, mode, &what, class.clone(), PatchOperation::Add(op));
        let missing: Vec<&str> = nodes
            .iter()
            .map(String::as_str)
            .filter(|n| catalog.node_exists(n) == Some(false))
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "no node has {label} in [{}]: the volume cannot be used until one does",
                summarise(&missing, SHOWN, ", ")
            );
            d.warning(rule, class, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::catalog::LiveState;
    use crate::policy::testing::{create, pv};

    const POLICY: &str = r#"
rules:
  localVolumeNodeAffinity:
    paths:
      - {prefix: /mnt/ssd, nodes: [k8s-worker-01, k8s-worker-02]}
      - {prefix: /mnt/ssd/fast/, nodes: [k8s-worker-09]}
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, None, false).unwrap()
    }

    fn local_pv(path: &str) -> PersistentVolume {
        pv(
            json!({"metadata": {"name": "p"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "storageClassName": "local-storage", "local": {"path": path}}}),
        )
    }

    fn decide(p: &Policy, cat: &Catalog, v: &PersistentVolume, mode: Mode) -> Decision {
        create(Object::Pv(v)).check(p, cat, ID, Endpoint::Mutate, mode.acting().unwrap())
    }

    fn patched(v: &PersistentVolume, d: &Decision) -> Value {
        let mut doc = serde_json::to_value(v).unwrap();
        json_patch::patch(&mut doc, &d.patch).unwrap();
        doc
    }

    #[test]
    fn matches_whole_path_components() {
        assert!(covers("/mnt/ssd", "/mnt/ssd"));
        assert!(covers("/mnt/ssd", "/mnt/ssd/a"));
        assert!(covers("/mnt/ssd/", "/mnt/ssd/a/b"));
        assert!(!covers("/mnt/ssd", "/mnt/ssd2"));
        assert!(!covers("/mnt/ssd", "/mnt"));
        assert!(covers("/", "/anything"));
        assert!(!covers("/mnt", "/mnt/../etc"));
    }

    #[test]
    fn injects_node_affinity_from_path_rule() {
        let p = policy();
        let v = local_pv("/mnt/ssd");
        let d = decide(&p, &p.static_catalog(), &v, Mode::Enforce);
        let doc = patched(&v, &d);
        assert_eq!(
            doc["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
            json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["k8s-worker-01", "k8s-worker-02"]})
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let p = policy();
        let v = local_pv("/mnt/ssd/fast/vol1");
        let doc = patched(&v, &decide(&p, &p.static_catalog(), &v, Mode::Enforce));
        assert_eq!(
            doc["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"],
            json!(["k8s-worker-09"])
        );
    }

    #[test]
    fn annotation_beats_path_rule() {
        let p = policy();
        let v = pv(
            json!({"metadata": {"name": "p", "annotations": {NODE_ANNOTATION: " k8s-worker-03 , k8s-worker-04,,k8s-worker-03"}},
                          "spec": {"local": {"path": "/mnt/ssd"}}}),
        );
        let doc = patched(&v, &decide(&p, &p.static_catalog(), &v, Mode::Enforce));
        assert_eq!(
            doc["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"],
            json!(["k8s-worker-03", "k8s-worker-04"])
        );
    }

    #[test]
    fn leaves_pinned_volumes_alone() {
        let p = policy();
        let v = pv(
            json!({"metadata": {"name": "p"}, "spec": {"local": {"path": "/mnt/ssd"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi-1"]}]}]}}}}),
        );
        assert_eq!(
            decide(&p, &p.static_catalog(), &v, Mode::Enforce),
            Decision::default()
        );
    }

    #[test]
    fn fills_required_when_node_affinity_is_empty() {
        let p = policy();
        let v = pv(
            json!({"metadata": {"name": "p"}, "spec": {"local": {"path": "/mnt/ssd"}, "nodeAffinity": {}}}),
        );
        let doc = patched(&v, &decide(&p, &p.static_catalog(), &v, Mode::Enforce));
        assert!(doc["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"].is_array());
    }

    #[test]
    fn warns_when_no_node_is_known() {
        let p = policy();
        let d = decide(
            &p,
            &p.static_catalog(),
            &local_pv("/srv/disk7"),
            Mode::Enforce,
        );
        assert!(d.patch.is_empty());
        assert!(d.warnings[0].contains(NODE_ANNOTATION), "{:?}", d.warnings);
        assert!(d.warnings[0].len() <= crate::policy::MAX_WARNING_CHARS);
    }

    #[test]
    fn ignores_network_volumes() {
        let p = policy();
        let v = pv(
            json!({"metadata": {"name": "p"}, "spec": {"nfs": {"server": "x", "path": "/mnt/ssd"}}}),
        );
        assert_eq!(
            decide(&p, &p.static_catalog(), &v, Mode::Enforce),
            Decision::default()
        );
    }

    #[test]
    fn host_path_with_known_node_is_pinned_and_unknown_is_quiet() {
        let p = policy();
        let known =
            pv(json!({"metadata": {"name": "p"}, "spec": {"hostPath": {"path": "/mnt/ssd/x"}}}));
        assert_eq!(
            decide(&p, &p.static_catalog(), &known, Mode::Enforce)
                .patch
                .len(),
            1
        );
        let unknown =
            pv(json!({"metadata": {"name": "p"}, "spec": {"hostPath": {"path": "/srv"}}}));
        assert_eq!(
            decide(&p, &p.static_catalog(), &unknown, Mode::Enforce),
            Decision::default()
        );
    }

    #[test]
    fn audit_mode_reports_the_nodes_without_patching() {
        let p = policy();
        let d = decide(&p, &p.static_catalog(), &local_pv("/mnt/ssd"), Mode::Audit);
        assert!(d.patch.is_empty());
        assert!(d.warnings[0].contains("k8s-worker-01"));
        assert!(
            d.audit_annotations
                .contains_key("local-volume-node-affinity")
        );
    }

    #[test]
    fn warns_about_nodes_that_do_not_exist() {
        let p = policy();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(
            "kubernetes.io/hostname".to_owned(),
            "k8s-worker-01".to_owned(),
        );
        let cat = p.catalog(&LiveState {
            nodes: Some(vec![("k8s-worker-01".into(), labels)].into()),
            ..Default::default()
        });
        let d = decide(&p, &cat, &local_pv("/mnt/ssd"), Mode::Enforce);
        assert_eq!(d.patch.len(), 1, "the patch is kept");
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("k8s-worker-02") && !w.contains("k8s-worker-01")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn second_pass_is_a_no_op() {
        let p = policy();
        let v = local_pv("/mnt/ssd");
        let d = decide(&p, &p.static_catalog(), &v, Mode::Enforce);
        let again: PersistentVolume = serde_json::from_value(patched(&v, &d)).unwrap();
        assert_eq!(
            decide(&p, &p.static_catalog(), &again, Mode::Enforce),
            Decision::default()
        );
    }
}
