//! The policy file: its YAML model (the public contract documented in the README), loading and
//! validation. Every problem is an error that names the key and, where known, the line: never a
//! silent default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::catalog::StorageKind;
use super::modes::Mode;

/// The policy compiled into the binary, used when no `--config` is given.
pub const EMBEDDED_POLICY: &str = include_str!("default-policy.yaml");

/// Access modes a PersistentVolumeClaim may request (`core/v1.PersistentVolumeAccessMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
}

impl AccessMode {
    pub const ALL: [AccessMode; 4] = [
        AccessMode::ReadWriteOnce,
        AccessMode::ReadOnlyMany,
        AccessMode::ReadWriteMany,
        AccessMode::ReadWriteOncePod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadOnlyMany => "ReadOnlyMany",
            AccessMode::ReadWriteMany => "ReadWriteMany",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }

    pub fn parse(s: &str) -> Option<AccessMode> {
        AccessMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// `storage.k8s.io/v1.VolumeBindingMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum VolumeBindingMode {
    Immediate,
    WaitForFirstConsumer,
}

/// The whole policy file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    /// Default mode of every rule.
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub exemptions: Exemptions,
    #[serde(default)]
    pub storage_classes: Vec<StaticClass>,
    #[serde(default)]
    pub provisioners: ProvisionerLists,
    #[serde(default)]
    pub rules: Rules,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemptions {
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub usernames: Vec<String>,
}

/// A StorageClass known without a cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticClass {
    pub name: Spanned<String>,
    pub provisioner: String,
    #[serde(default)]
    pub default: Option<Spanned<bool>>,
    #[serde(default)]
    pub kind: Option<StorageKind>,
    #[serde(default)]
    pub allow_read_write_many_block_mode: bool,
    #[serde(default)]
    pub volume_binding_mode: Option<VolumeBindingMode>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// Extra provisioner names per storage kind, on top of the built-in table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProvisionerLists {
    #[serde(default)]
    pub block: Vec<String>,
    #[serde(default)]
    pub local: Vec<String>,
    #[serde(default)]
    pub shared: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rules {
    #[serde(default)]
    pub default_storage_class: DefaultClassRule,
    #[serde(default)]
    pub local_volume_node_affinity: NodeAffinityRule,
    #[serde(default)]
    pub access_modes: AccessModesRule,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DefaultClassRule {
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Last-resort default when no class is marked default; empty means none.
    #[serde(default)]
    pub class_name: String,
    #[serde(default)]
    pub by_access_mode: BTreeMap<AccessMode, String>,
    #[serde(default)]
    pub namespaces: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAffinityRule {
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default = "default_node_label")]
    pub node_label: String,
    #[serde(default)]
    pub paths: Vec<PathRule>,
}

impl Default for NodeAffinityRule {
    fn default() -> Self {
        NodeAffinityRule {
            mode: None,
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
pub struct PathRule {
    pub prefix: Spanned<String>,
    pub nodes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessModesRule {
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default = "default_reject_on")]
    pub reject_read_write_many_on: Vec<StorageKind>,
}

impl Default for AccessModesRule {
    fn default() -> Self {
        AccessModesRule {
            mode: None,
            reject_read_write_many_on: default_reject_on(),
        }
    }
}

fn default_reject_on() -> Vec<StorageKind> {
    vec![StorageKind::Block, StorageKind::Local]
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The io error is part of the message, not a `source` (thiserror treats a field named
    // `source` as one), so `{:#}` chains print it once.
    #[error("failed to read policy file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid policy {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("invalid policy {origin}: {key}{}: {message}", line_suffix(*.line))]
    Invalid {
        origin: String,
        key: String,
        line: Option<u64>,
        message: String,
    },
}

fn line_suffix(line: Option<u64>) -> String {
    match line {
        Some(l) if l > 0 => format!(" (line {l})"),
        _ => String::new(),
    }
}

/// Where a policy came from, for error messages.
fn origin_of(path: Option<&Path>) -> String {
    match path {
        Some(p) => format!("file {}", p.display()),
        None => "(embedded default)".to_owned(),
    }
}

/// Parses and validates a policy document. `path` only names the source in errors.
pub fn parse(text: &str, path: Option<&Path>) -> Result<PolicyFile, ConfigError> {
    let origin = origin_of(path);
    // An empty file (or one holding only comments) is the all-defaults policy.
    let file: PolicyFile = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        PolicyFile::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.clone(),
            message: syntax_message(&e),
        })?
    };
    validate(&file, &origin)?;
    Ok(file)
}

fn syntax_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // Keep it on one line: the snippet-free text may still span several.
    let text = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match e.location() {
        Some(loc) if loc.line() > 0 && !text.contains("line") => {
            format!("line {}: {text}", loc.line())
        }
        _ => text,
    }
}

/// Reads and validates a policy file.
pub fn load(path: &Path) -> Result<PolicyFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(&text, Some(path))
}

fn validate(file: &PolicyFile, origin: &str) -> Result<(), ConfigError> {
    let invalid = |key: String, line: Option<u64>, message: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        line,
        message,
    };
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first_default: Option<usize> = None;
    for (i, class) in file.storage_classes.iter().enumerate() {
        let key = format!("storageClasses[{i}]");
        let line = Some(class.name.referenced.line());
        if let Err(why) = check_dns_subdomain(&class.name.value) {
            return Err(invalid(format!("{key}.name"), line, why));
        }
        if class.provisioner.trim().is_empty() {
            return Err(invalid(
                format!("{key}.provisioner"),
                line,
                "must not be empty".into(),
            ));
        }
        if let Some(prev) = names.insert(&class.name.value, i) {
            return Err(invalid(
                format!("{key}.name"),
                line,
                format!(
                    "duplicate class name {:?} (also storageClasses[{prev}])",
                    class.name.value
                ),
            ));
        }
        if let Some(default) = class.default.as_ref().filter(|d| d.value) {
            if let Some(prev) = first_default {
                return Err(invalid(
                    format!("{key}.default"),
                    Some(default.referenced.line()),
                    format!(
                        "at most one static default class: {:?} and {:?} are both default",
                        file.storage_classes[prev].name.value, class.name.value
                    ),
                ));
            }
            first_default = Some(i);
        }
    }
    for (kind, list) in [
        ("block", &file.provisioners.block),
        ("local", &file.provisioners.local),
        ("shared", &file.provisioners.shared),
    ] {
        for (i, p) in list.iter().enumerate() {
            if p.trim().is_empty() {
                return Err(invalid(
                    format!("provisioners.{kind}[{i}]"),
                    None,
                    "must not be empty".into(),
                ));
            }
        }
    }
    for (i, ns) in file.exemptions.namespaces.iter().enumerate() {
        if ns.is_empty() {
            return Err(invalid(
                format!("exemptions.namespaces[{i}]"),
                None,
                "must not be empty".into(),
            ));
        }
    }
    let dsc = &file.rules.default_storage_class;
    if !dsc.class_name.is_empty() {
        check_dns_subdomain(&dsc.class_name)
            .map_err(|why| invalid("rules.defaultStorageClass.className".into(), None, why))?;
    }
    for (mode, class) in &dsc.by_access_mode {
        check_dns_subdomain(class).map_err(|why| {
            invalid(
                format!("rules.defaultStorageClass.byAccessMode.{}", mode.as_str()),
                None,
                why,
            )
        })?;
    }
    for (ns, class) in &dsc.namespaces {
        if ns.is_empty() {
            return Err(invalid(
                "rules.defaultStorageClass.namespaces".into(),
                None,
                "namespace name must not be empty".into(),
            ));
        }
        check_dns_subdomain(class).map_err(|why| {
            invalid(
                format!("rules.defaultStorageClass.namespaces.{ns}"),
                None,
                why,
            )
        })?;
    }
    let nar = &file.rules.local_volume_node_affinity;
    if nar.node_label.trim().is_empty() || nar.node_label.contains(char::is_whitespace) {
        return Err(invalid(
            "rules.localVolumeNodeAffinity.nodeLabel".into(),
            None,
            format!("{:?} is not a label key", nar.node_label),
        ));
    }
    let mut prefixes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, rule) in nar.paths.iter().enumerate() {
        let key = format!("rules.localVolumeNodeAffinity.paths[{i}]");
        let line = Some(rule.prefix.referenced.line());
        let prefix = &rule.prefix.value;
        if !prefix.starts_with('/') {
            return Err(invalid(
                format!("{key}.prefix"),
                line,
                format!("{prefix:?} is not an absolute path"),
            ));
        }
        if prefix.split('/').any(|c| c == "..") {
            return Err(invalid(
                format!("{key}.prefix"),
                line,
                "must not contain '..'".into(),
            ));
        }
        if let Some(prev) = prefixes.insert(super::node_affinity::normalize_prefix(prefix), i) {
            return Err(invalid(
                format!("{key}.prefix"),
                line,
                format!("duplicate prefix {prefix:?} (also paths[{prev}])"),
            ));
        }
        if rule.nodes.is_empty() {
            return Err(invalid(
                format!("{key}.nodes"),
                line,
                "must name at least one node".into(),
            ));
        }
        for (j, n) in rule.nodes.iter().enumerate() {
            if n.trim().is_empty() {
                return Err(invalid(
                    format!("{key}.nodes[{j}]"),
                    line,
                    "must not be empty".into(),
                ));
            }
        }
    }
    Ok(())
}

/// A StorageClass name is a DNS subdomain (RFC 1123): at most 253 characters of lower-case
/// alphanumerics, '-' and '.', starting and ending with an alphanumeric.
fn check_dns_subdomain(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid StorageClass name (RFC 1123 subdomain)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Some(Path::new("/etc/policy.yaml")))
            .expect_err("policy should be refused")
            .to_string()
    }

    #[test]
    fn embedded_policy_loads() {
        let f = parse(EMBEDDED_POLICY, None).expect("embedded policy");
        assert_eq!(f.mode, Some(Mode::Enforce));
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let f = parse("# nothing here\n", None).unwrap();
        assert!(f.storage_classes.is_empty());
        assert_eq!(
            f.rules.local_volume_node_affinity.node_label,
            "kubernetes.io/hostname"
        );
        assert_eq!(
            f.rules.access_modes.reject_read_write_many_on,
            vec![StorageKind::Block, StorageKind::Local]
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let f = parse(
            r#"
mode: enforce
exemptions: {namespaces: [kube-system], usernames: []}
storageClasses:
  - name: oci-bv
    provisioner: blockvolume.csi.oraclecloud.com
    default: true
    kind: block
    allowReadWriteManyBlockMode: false
provisioners: {block: [], local: [], shared: []}
rules:
  defaultStorageClass:
    mode: enforce
    className: ""
    byAccessMode: {ReadWriteMany: nfs}
    namespaces: {analytics: local-path}
  localVolumeNodeAffinity:
    mode: enforce
    nodeLabel: kubernetes.io/hostname
    paths:
      - prefix: /mnt/ssd
        nodes: [k8s-worker-01, k8s-worker-02]
  accessModes:
    mode: enforce
    rejectReadWriteManyOn: [block, local]
"#,
            None,
        )
        .unwrap();
        assert_eq!(f.storage_classes[0].kind, Some(StorageKind::Block));
        assert_eq!(
            f.rules.default_storage_class.by_access_mode[&AccessMode::ReadWriteMany],
            "nfs"
        );
        assert_eq!(f.rules.local_volume_node_affinity.paths[0].nodes.len(), 2);
    }

    #[test]
    fn refuses_unknown_keys_naming_them() {
        let e = err("rules:\n  accesModes: {}\n");
        assert!(e.contains("accesModes"), "{e}");
        assert!(e.contains("/etc/policy.yaml"), "{e}");
    }

    #[test]
    fn refuses_unknown_modes_kinds_and_access_modes() {
        assert!(err("mode: enforcing\n").contains("enforcing"));
        assert!(
            err("rules:\n  accessModes:\n    rejectReadWriteManyOn: [disk]\n").contains("disk")
        );
        assert!(
            err("rules:\n  defaultStorageClass:\n    byAccessMode: {ReadWriteAll: nfs}\n")
                .contains("ReadWriteAll")
        );
    }

    #[test]
    fn refuses_wrong_types() {
        let e = err("exemptions:\n  namespaces: kube-system\n");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn refuses_duplicate_class_names_with_line() {
        let e =
            err("storageClasses:\n  - {name: a, provisioner: x}\n  - {name: a, provisioner: y}\n");
        assert!(e.contains("storageClasses[1].name (line 3)"), "{e}");
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn refuses_two_static_defaults() {
        let e = err(
            "storageClasses:\n  - {name: a, provisioner: x, default: true}\n  - {name: b, provisioner: y, default: true}\n",
        );
        assert!(e.contains("storageClasses[1].default"), "{e}");
        assert!(e.contains("at most one"), "{e}");
    }

    #[test]
    fn refuses_relative_path_prefixes() {
        let e = err(
            "rules:\n  localVolumeNodeAffinity:\n    paths:\n      - prefix: mnt/ssd\n        nodes: [a]\n",
        );
        assert!(e.contains("paths[0].prefix (line 4)"), "{e}");
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn refuses_duplicate_yaml_keys() {
        let e = err("mode: audit\nmode: enforce\n");
        assert!(e.to_lowercase().contains("duplicate"), "{e}");
    }

    #[test]
    fn refuses_path_rule_without_nodes() {
        let e = err(
            "rules:\n  localVolumeNodeAffinity:\n    paths:\n      - {prefix: /mnt, nodes: []}\n",
        );
        assert!(e.contains("nodes"), "{e}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load(Path::new("/nonexistent/policy.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("failed to read policy file /nonexistent/policy.yaml"),
            "{e}"
        );
    }
}
