//! The policy file: its YAML model (the public contract documented in docs/policy.md), loading and
//! validation. Every problem is an error that names the key and, where known, the line: never a
//! silent default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::Spanned;

pub use crate::policy::model::catalog::{ProvisionerLists, StaticClass};
use crate::policy::model::modes::Mode;
pub use crate::policy::model::vocab::{AccessMode, StorageKind, VolumeBindingMode};

/// The policy compiled into the binary, used when no `--config` is given.
pub const EMBEDDED_POLICY: &str = include_str!("../default-policy.yaml");

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
    /// The rules' sections, each read by its rule ([`Section::config`]); here only their
    /// names are checked against the registry.
    #[serde(default)]
    pub rules: BTreeMap<String, Spanned<IgnoredAny>>,
    /// The document, for the rules' own typed sections.
    #[serde(skip)]
    pub text: String,
    /// Where it came from, for error messages.
    #[serde(skip)]
    pub origin: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemptions {
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub usernames: Vec<String>,
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
    let mut file = file;
    validate(&file, &origin)?;
    file.text = text.to_owned();
    file.origin = origin;
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
        let mut sizes = [None, None];
        for (j, (sub, size)) in [("minSize", &class.min_size), ("maxSize", &class.max_size)]
            .into_iter()
            .enumerate()
        {
            if let Some(size) = size {
                let line = Some(size.referenced.line());
                let w = crate::policy::model::quantity::limit(&size.value)
                    .map_err(|why| invalid(format!("{key}.{sub}"), line, why))?;
                sizes[j] = Some((w, line));
            }
        }
        if let [Some((min, _)), Some((max, line))] = &sizes
            && min.value > max.value
        {
            return Err(invalid(
                format!("{key}.maxSize"),
                *line,
                format!("{max} is below minSize {min}"),
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
    Ok(())
}

/// One rule's section of a policy file, `rules.<key>`, read by the rule itself into its own
/// typed configuration (with the line of every problem, as the rest of the file).
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    pub file: &'a PolicyFile,
    pub key: &'static str,
}

impl Section<'_> {
    /// The section decoded as `C`; `None` when the file does not have it (or it is `null`).
    pub fn config<C: DeserializeOwned>(&self) -> Result<Option<C>, ConfigError> {
        if !self.file.rules.contains_key(self.key) {
            return Ok(None);
        }
        let path = ["rules", self.key];
        serde_saphyr::with_deserializer_from_str(&self.file.text, |de| {
            serde::de::DeserializeSeed::deserialize(pick::Pick::<C>::new(&path), de)
        })
        .map_err(|e| ConfigError::Syntax {
            origin: self.file.origin.clone(),
            message: syntax_message(&e),
        })
    }

    /// An error about `rules.<key>.<sub>` (`sub` empty: the section itself).
    pub fn invalid(&self, sub: &str, line: Option<u64>, message: impl Into<String>) -> ConfigError {
        let key = if sub.is_empty() {
            format!("rules.{}", self.key)
        } else {
            format!("rules.{}.{sub}", self.key)
        };
        ConfigError::Invalid {
            origin: self.file.origin.clone(),
            key,
            line,
            message: message.into(),
        }
    }
}

/// The section of a rule whose only setting is its mode: any other key is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeSection {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
}

impl Section<'_> {
    /// Checks a section that may only say `mode` (the registry reads the mode itself).
    pub fn mode_only(&self) -> Result<(), ConfigError> {
        self.config::<ModeSection>().map(drop)
    }
}

/// Decodes the value at a path of map keys, skipping everything else (serde seeds, so the one
/// YAML parser reports lines as for the whole file).
mod pick {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize;
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    pub struct Pick<'p, C> {
        path: &'p [&'p str],
        _c: PhantomData<C>,
    }

    impl<'p, C> Pick<'p, C> {
        pub fn new(path: &'p [&'p str]) -> Self {
            Pick {
                path,
                _c: PhantomData,
            }
        }
    }

    impl<'de, C: Deserialize<'de>> DeserializeSeed<'de> for Pick<'_, C> {
        type Value = Option<C>;

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<C>, D::Error> {
            match self.path.split_first() {
                None => Option::<C>::deserialize(d),
                Some((first, rest)) => d.deserialize_any(Walk::<C> {
                    key: first,
                    rest,
                    _c: PhantomData,
                }),
            }
        }
    }

    struct Walk<'p, C> {
        key: &'p str,
        rest: &'p [&'p str],
        _c: PhantomData<C>,
    }

    impl<'de, C: Deserialize<'de>> Visitor<'de> for Walk<'_, C> {
        type Value = Option<C>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a map with key {:?}", self.key)
        }

        fn visit_unit<E>(self) -> Result<Option<C>, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Option<C>, E> {
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<C>, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<String>()? {
                if k == self.key {
                    found = map.next_value_seed(Pick::<C>::new(self.rest))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
}

/// A StorageClass name is a DNS subdomain (RFC 1123): at most 253 characters of lower-case
/// alphanumerics, '-' and '.', starting and ending with an alphanumeric.
pub(crate) fn check_dns_subdomain(name: &str) -> Result<(), String> {
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

    /// The whole policy, rules' sections included (each rule validates its own).
    fn err(text: &str) -> String {
        crate::policy::Policy::parse(text, Some(Path::new("/etc/policy.yaml")), false)
            .expect_err("policy should be refused")
            .to_string()
    }

    fn settings(text: &str) -> crate::policy::Settings {
        crate::policy::Policy::parse(text, None, false)
            .expect("policy loads")
            .settings
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
        let s = settings("# nothing here\n");
        assert_eq!(s.node_label, "kubernetes.io/hostname");
        assert_eq!(
            s.reject_rwx_on,
            vec![StorageKind::Block, StorageKind::Local]
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
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
"#;
        let f = parse(text, None).unwrap();
        assert_eq!(f.storage_classes[0].kind, Some(StorageKind::Block));
        let p = crate::policy::Policy::parse(text, None, false).unwrap();
        assert_eq!(
            p.settings.defaults.by_access_mode[&AccessMode::ReadWriteMany],
            "nfs"
        );
        let rule = format!("{:?}", p.rule(crate::policy::rules::node_affinity::ID));
        assert!(rule.contains("k8s-worker-02"), "{rule}");
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
    fn mode_only_sections_refuse_other_keys() {
        let e = err("rules:\n  claimRefNamespace: {mode: audit, extra: 1}\n");
        assert!(e.contains("extra"), "{e}");
        assert!(
            crate::policy::Policy::parse("rules:\n  willBind: {mode: \"off\"}\n", None, false)
                .is_ok()
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
