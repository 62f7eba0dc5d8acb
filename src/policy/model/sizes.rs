//! Volume size limits, beside the provisioner table: the smallest (and largest) volume each
//! driver provisions, and what it does with a request below the minimum: **rounds it up**
//! silently (the claim and ResourceQuota then count less than exists) or **fails** (the claim
//! stays Pending with a `ProvisioningFailed` event).
//!
//! The built-in rows hold only the figures `spec/provisioners.md` sources ("Volume sizes");
//! other minimums are not known well enough to enforce by default, and operators declare them
//! per class (`storageClasses[].minSize`/`maxSize`, or the class annotations) or per provisioner
//! (`rules.volumeSize.sizes`, which win over the built-in rows). A class's own limits win over
//! both.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::catalog::ClassInfo;
use super::quantity::{Written, limit};

pub use super::catalog::{MAX_SIZE_ANNOTATION, MIN_SIZE_ANNOTATION};

/// What the driver does with a request below its minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Below {
    /// Provisions the minimum instead (OCI, Azure Disk, GCE PD, DigitalOcean, EBS rounding up
    /// to whole GiB).
    RoundsUp,
    /// Refuses: the claim stays Pending (EBS io1/io2 below 4 GiB).
    Fails,
}

/// One built-in row: provisioner, parameter alternatives that must match, minimum, what the
/// driver does below it, maximum (the driver fails above it).
type BuiltinRow = (
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
    Option<&'static str>,
    Below,
    Option<&'static str>,
);

/// `spec/provisioners.md`, "Volume sizes". EBS rounds every request up to whole GiB, so gp2/gp3
/// below 1Gi get 1Gi; io1/io2 below 4Gi fail in EC2 (aws-ebs-csi-driver#2162).
const BUILTIN: &[BuiltinRow] = &[
    (
        "blockvolume.csi.oraclecloud.com",
        &[],
        Some("50Gi"),
        Below::RoundsUp,
        None,
    ),
    (
        "ebs.csi.aws.com",
        &[("type", &["gp2", "gp3"])],
        Some("1Gi"),
        Below::RoundsUp,
        None,
    ),
    (
        "ebs.csi.aws.com",
        &[("type", &["io1", "io2"])],
        Some("4Gi"),
        Below::Fails,
        None,
    ),
    (
        "pd.csi.storage.gke.io",
        &[],
        Some("1Gi"),
        Below::RoundsUp,
        None,
    ),
    (
        "disk.csi.azure.com",
        &[],
        Some("1Gi"),
        Below::RoundsUp,
        None,
    ),
    (
        "dobs.csi.digitalocean.com",
        &[],
        Some("1Gi"),
        Below::RoundsUp,
        Some("16Ti"),
    ),
];

/// One row of the size table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeRow {
    pub provisioner: String,
    /// Class parameters that must match (keys and values compared ignoring ASCII case, as the
    /// drivers read them); each key lists its accepted values.
    pub parameters: Vec<(String, Vec<String>)>,
    pub min: Option<Written>,
    pub below: Below,
    pub max: Option<Written>,
}

impl SizeRow {
    fn matches(&self, class: &ClassInfo) -> bool {
        self.provisioner == class.provisioner
            && self.parameters.iter().all(|(key, values)| {
                class
                    .parameters
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .is_some_and(|(_, v)| values.iter().any(|x| x.eq_ignore_ascii_case(v)))
            })
    }

    /// `ebs.csi.aws.com type io2`: the provisioner and the class's values of the matched keys.
    fn describe(&self, class: &ClassInfo) -> String {
        let mut s = self.provisioner.clone();
        for (key, _) in &self.parameters {
            if let Some((k, v)) = class
                .parameters
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
            {
                s.push_str(&format!(" {k} {v}"));
            }
        }
        s
    }
}

/// A row of `rules.volumeSize.sizes` in the policy file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SizeRowConfig {
    pub provisioner: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub min_size: Option<String>,
    #[serde(default)]
    pub max_size: Option<String>,
    /// What the driver does below `minSize` (default: rounds it up).
    #[serde(default)]
    pub below_minimum: Option<Below>,
}

/// Where a limit comes from, for the messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The class's own `minSize`/`maxSize` (policy or annotation).
    Class,
    /// The size table: the provisioner (and parameters) it matched.
    Driver(String),
}

/// The minimum a class provisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Min {
    pub size: Written,
    pub below: Below,
    pub origin: Origin,
}

/// The maximum a class provisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Max {
    pub size: Written,
    pub origin: Origin,
}

/// A class's size limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub min: Option<Min>,
    pub max: Option<Max>,
}

/// The size table: the policy's rows, then the built-in ones (first match wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeTable(Vec<SizeRow>);

/// A policy row that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RowError {
    pub key: String,
    pub message: String,
}

impl SizeTable {
    /// The built-in table extended by the policy's rows (which come first).
    pub fn new(extra: &[SizeRowConfig]) -> Result<SizeTable, RowError> {
        let mut rows = Vec::with_capacity(extra.len() + BUILTIN.len());
        for (i, r) in extra.iter().enumerate() {
            let err = |key: &str, message: String| RowError {
                key: format!("sizes[{i}].{key}"),
                message,
            };
            if r.provisioner.trim().is_empty() {
                return Err(err("provisioner", "must not be empty".into()));
            }
            let min = r
                .min_size
                .as_deref()
                .map(|s| limit(s).map_err(|m| err("minSize", m)))
                .transpose()?;
            let max = r
                .max_size
                .as_deref()
                .map(|s| limit(s).map_err(|m| err("maxSize", m)))
                .transpose()?;
            if min.is_none() && max.is_none() {
                return Err(err("minSize", "a row needs minSize or maxSize".into()));
            }
            if let (Some(a), Some(b)) = (&min, &max)
                && a.value > b.value
            {
                return Err(err("maxSize", format!("{b} is below minSize {a}")));
            }
            rows.push(SizeRow {
                provisioner: r.provisioner.trim().to_owned(),
                parameters: r
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), vec![v.clone()]))
                    .collect(),
                min,
                below: r.below_minimum.unwrap_or(Below::RoundsUp),
                max,
            });
        }
        for (p, params, min, below, max) in BUILTIN {
            rows.push(SizeRow {
                provisioner: (*p).to_owned(),
                parameters: params
                    .iter()
                    .map(|(k, vs)| {
                        (
                            (*k).to_owned(),
                            vs.iter().map(|v| (*v).to_owned()).collect(),
                        )
                    })
                    .collect(),
                min: min.and_then(|m| Written::parse(m).ok()),
                below: *below,
                max: max.and_then(|m| Written::parse(m).ok()),
            });
        }
        Ok(SizeTable(rows))
    }

    /// The limits of a class: its own `minSize`/`maxSize` win over the table's row.
    pub fn limits(&self, class: &ClassInfo) -> Limits {
        let row = self.0.iter().find(|r| r.matches(class));
        let driver = || Origin::Driver(row.map(|r| r.describe(class)).unwrap_or_default());
        let min = match (&class.min_size, row) {
            (Some(size), _) => Some(Min {
                size: size.clone(),
                below: Below::RoundsUp,
                origin: Origin::Class,
            }),
            (None, Some(r)) => r.min.clone().map(|size| Min {
                size,
                below: r.below,
                origin: driver(),
            }),
            (None, None) => None,
        };
        let max = match (&class.max_size, row) {
            (Some(size), _) => Some(Max {
                size: size.clone(),
                origin: Origin::Class,
            }),
            (None, Some(r)) => r.max.clone().map(|size| Max {
                size,
                origin: driver(),
            }),
            (None, None) => None,
        };
        Limits { min, max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(provisioner: &str, params: &[(&str, &str)]) -> ClassInfo {
        ClassInfo {
            kind_declared: false,
            name: "c".into(),
            provisioner: provisioner.into(),
            kind: None,
            allow_rwx_block_mode: false,
            is_default: false,
            created: None,
            volume_binding_mode: None,
            parameters: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            live: false,
            min_size: None,
            max_size: None,
            allowed_topologies: None,
        }
    }

    fn min_of(t: &SizeTable, c: &ClassInfo) -> Option<(String, Below)> {
        t.limits(c).min.map(|m| (m.size.text, m.below))
    }

    #[test]
    fn builtin_rows_parse_and_hold_the_sourced_figures() {
        let t = SizeTable::new(&[]).unwrap();
        assert!(t.0.iter().all(|r| r.min.is_some()));
        let oci = class("blockvolume.csi.oraclecloud.com", &[]);
        assert_eq!(min_of(&t, &oci), Some(("50Gi".into(), Below::RoundsUp)));
        for ty in ["io1", "io2", "IO2"] {
            let c = class("ebs.csi.aws.com", &[("type", ty)]);
            assert_eq!(min_of(&t, &c), Some(("4Gi".into(), Below::Fails)), "{ty}");
        }
        for ty in ["gp2", "gp3"] {
            let c = class("ebs.csi.aws.com", &[("Type", ty)]);
            assert_eq!(
                min_of(&t, &c),
                Some(("1Gi".into(), Below::RoundsUp)),
                "{ty}"
            );
        }
        // Without a known type the minimum is not known well enough to enforce.
        assert_eq!(min_of(&t, &class("ebs.csi.aws.com", &[])), None);
        assert_eq!(
            min_of(&t, &class("ebs.csi.aws.com", &[("type", "st1")])),
            None
        );
        for p in ["pd.csi.storage.gke.io", "disk.csi.azure.com"] {
            assert_eq!(
                min_of(&t, &class(p, &[])),
                Some(("1Gi".into(), Below::RoundsUp))
            );
        }
        let d = t.limits(&class("dobs.csi.digitalocean.com", &[]));
        assert_eq!(d.max.unwrap().size.text, "16Ti");
        assert_eq!(min_of(&t, &class("nfs.csi.k8s.io", &[])), None);
        assert_eq!(
            t.limits(&class("ebs.csi.aws.com", &[("type", "io2")]))
                .min
                .unwrap()
                .origin,
            Origin::Driver("ebs.csi.aws.com type io2".into())
        );
    }

    #[test]
    fn policy_rows_win_and_class_limits_win_over_rows() {
        let rows = [SizeRowConfig {
            provisioner: "blockvolume.csi.oraclecloud.com".into(),
            parameters: BTreeMap::new(),
            min_size: Some("60Gi".into()),
            max_size: Some("32Ti".into()),
            below_minimum: Some(Below::Fails),
        }];
        let t = SizeTable::new(&rows).unwrap();
        let mut c = class("blockvolume.csi.oraclecloud.com", &[]);
        assert_eq!(min_of(&t, &c), Some(("60Gi".into(), Below::Fails)));
        c.min_size = Some(Written::parse("100G").unwrap());
        let l = t.limits(&c);
        let m = l.min.unwrap();
        assert_eq!(
            (m.size.text.as_str(), m.below, m.origin),
            ("100G", Below::RoundsUp, Origin::Class)
        );
        assert_eq!(l.max.unwrap().size.text, "32Ti");
    }

    #[test]
    fn refuses_unusable_rows() {
        let row = |min: Option<&str>, max: Option<&str>| SizeRowConfig {
            provisioner: "x".into(),
            parameters: BTreeMap::new(),
            min_size: min.map(Into::into),
            max_size: max.map(Into::into),
            below_minimum: None,
        };
        let e = |r| SizeTable::new(&[r]).unwrap_err().to_string();
        assert!(e(row(Some("1Gb"), None)).starts_with("sizes[0].minSize: \"1Gb\""));
        assert!(e(row(None, None)).contains("minSize or maxSize"));
        assert!(e(row(Some("2Gi"), Some("1Gi"))).contains("below minSize"));
        assert!(e(row(Some("0"), None)).contains("positive"));
        assert!(e(row(None, Some("1e100"))).contains("too large"));
    }
}
