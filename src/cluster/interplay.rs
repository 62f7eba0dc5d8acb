//! The in-tree DefaultStorageClass admission plugin runs before every mutating webhook: when a
//! StorageClass is annotated default, claims reach the webhook with that class already set
//! (`spec/kubernetes.md` §1). The webhook tells the plugin's class from the user's by
//! `metadata.managedFields` (`policy::storage::class_owner`) and still applies the policy's
//! per-namespace and per-access-mode defaults.
//! This module detects that situation ([`default_interplay`], the one place it is computed) and
//! explains the fix ([`interplay_warning`]). Pure: `audit` reports the same finding in its own
//! words from [`default_interplay`].

use std::collections::BTreeSet;

use crate::policy::{Catalog, ClassInfo, Policy};

/// How many namespace names a warning lists before summarising the rest.
const LISTED_NAMESPACES: usize = 5;

/// StorageClasses annotated default in the cluster, in Kubernetes' order (newest first, then
/// name): the first is the one the DefaultStorageClass plugin sets.
///
/// Only live classes count: a static class's `default: true` exists in the policy file alone,
/// the plugin never sees it.
pub fn annotated_defaults(catalog: &Catalog) -> Vec<&ClassInfo> {
    catalog.defaults().into_iter().filter(|c| c.live).collect()
}

/// A class annotated default in the cluster, and the defaults of the policy (and of the
/// namespaces' `storage-policy.io/default-storage-class` annotations) that the plugin therefore
/// makes dead. Any of the three lists may be empty.
#[derive(Debug)]
pub struct DefaultInterplay<'a> {
    /// Never empty; the first is the class the plugin sets.
    pub annotated: Vec<&'a ClassInfo>,
    /// `rules.defaultStorageClass.byAccessMode`: (access mode, class), in the policy's order.
    pub by_access_mode: Vec<(&'a str, &'a str)>,
    /// `rules.defaultStorageClass.namespaces`: (namespace, class), in the policy's order.
    pub policy_namespaces: Vec<(&'a str, &'a str)>,
    /// Namespaces annotated with a default class: (namespace, class), by namespace name.
    pub annotated_namespaces: Vec<(&'a str, &'a str)>,
}

impl DefaultInterplay<'_> {
    /// The class the plugin sets on claims without one.
    pub fn picked(&self) -> &ClassInfo {
        self.annotated[0]
    }

    /// Whether some namespace or access-mode default is lost to the plugin.
    pub fn loses_defaults(&self) -> bool {
        !(self.by_access_mode.is_empty()
            && self.policy_namespaces.is_empty()
            && self.annotated_namespaces.is_empty())
    }
}

/// The interplay, or `None` when no live StorageClass is annotated default.
pub fn default_interplay<'a>(
    policy: &'a Policy,
    catalog: &'a Catalog,
) -> Option<DefaultInterplay<'a>> {
    let annotated = annotated_defaults(catalog);
    if annotated.is_empty() {
        return None;
    }
    let rule = &policy.settings.defaults;
    let mut annotated_namespaces: Vec<(&str, &str)> = catalog
        .namespaces()
        .filter_map(|(name, info)| Some((name, info.default_class.as_deref()?)))
        .collect();
    annotated_namespaces.sort_unstable();
    Some(DefaultInterplay {
        annotated,
        by_access_mode: rule
            .by_access_mode
            .iter()
            .map(|(m, c)| (m.as_str(), c.as_str()))
            .collect(),
        policy_namespaces: rule
            .namespaces
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect(),
        annotated_namespaces,
    })
}

/// Explains why the policy's namespace or access-mode defaults cannot work, or `None` when they
/// can: no live StorageClass is annotated default, or the policy (and the namespaces'
/// `storage-policy.io/default-storage-class` annotations) define no such defaults.
pub fn interplay_warning(policy: &Policy, catalog: &Catalog) -> Option<String> {
    let interplay = default_interplay(policy, catalog)?;
    if !interplay.loses_defaults() {
        return None;
    }
    let defaults: Vec<&str> = interplay
        .annotated
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let picked = defaults[0];
    let namespaces: BTreeSet<&str> = interplay
        .policy_namespaces
        .iter()
        .chain(&interplay.annotated_namespaces)
        .map(|(name, _)| *name)
        .collect();
    let modes: Vec<&str> = interplay.by_access_mode.iter().map(|(m, _)| *m).collect();

    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let who = if defaults.len() == 1 {
        format!("StorageClass {picked:?} is annotated default")
    } else {
        format!(
            "StorageClasses {} are annotated default (Kubernetes picks {picked:?})",
            quoted(&defaults)
        )
    };
    let mut lost = Vec::new();
    if !namespaces.is_empty() {
        let listed: Vec<&str> = namespaces.iter().copied().take(LISTED_NAMESPACES).collect();
        let more = namespaces.len() - listed.len();
        let mut s = format!("namespaces {}", listed.join(", "));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        lost.push(s);
    }
    if !modes.is_empty() {
        lost.push(format!("access modes {}", modes.join(", ")));
    }
    Some(format!(
        "{who}, so the DefaultStorageClass admission plugin sets it on every PersistentVolumeClaim \
         created without a class before this webhook is called; the webhook tells those claims \
         apart by metadata.managedFields (no field manager owns a class the plugin set) and \
         replaces the class with the policy's default for {}. What still cannot work: a claim \
         whose create request carries no managedFields keeps {picked:?} (with a warning)",
        lost.join(" and "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{LiveClass, LiveState, NamespaceInfo};

    fn class(name: &str, default: bool, secs: i64) -> LiveClass {
        LiveClass {
            name: name.into(),
            provisioner: "ebs.csi.aws.com".into(),
            is_default: default,
            created: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::new(secs, 0).unwrap(),
            )),
            ..Default::default()
        }
    }

    fn warning(policy_yaml: &str, live: LiveState) -> Option<String> {
        let policy = Policy::parse(policy_yaml, None, false).unwrap();
        let catalog = policy.catalog(&live);
        interplay_warning(&policy, &catalog)
    }

    const NS_DEFAULTS: &str = "rules:\n  defaultStorageClass:\n    namespaces: {team-a: nfs}\n";

    #[test]
    fn the_interplay_names_the_picked_class_and_every_lost_default() {
        let mut namespaces = std::collections::HashMap::new();
        for (ns, class) in [
            ("zeta", Some("fast")),
            ("alpha", Some("slow")),
            ("plain", None),
        ] {
            namespaces.insert(
                ns.to_owned(),
                NamespaceInfo {
                    default_class: class.map(Into::into),
                    mode: None,
                    rewrite_access_modes: None,
                },
            );
        }
        let live = LiveState {
            classes: vec![class("old", true, 1), class("new", true, 2)],
            namespaces,
            ..Default::default()
        };
        let policy = Policy::parse(
            "rules:\n  defaultStorageClass:\n    namespaces: {team-a: nfs}\n    byAccessMode: {ReadWriteMany: nfs}\n",
            None,
            false,
        )
        .unwrap();
        let catalog = policy.catalog(&live);
        let i = default_interplay(&policy, &catalog).expect("annotated defaults");
        assert_eq!(i.picked().name, "new");
        assert_eq!(
            i.annotated
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert_eq!(i.by_access_mode, [("ReadWriteMany", "nfs")]);
        assert_eq!(i.policy_namespaces, [("team-a", "nfs")]);
        assert_eq!(
            i.annotated_namespaces,
            [("alpha", "slow"), ("zeta", "fast")]
        );
        assert!(i.loses_defaults());

        let none = Policy::parse("{}", None, false).unwrap();
        let catalog = none.catalog(&LiveState::default());
        assert!(
            default_interplay(&none, &catalog).is_none(),
            "no live default"
        );
    }

    #[test]
    fn warns_when_a_live_default_meets_namespace_defaults() {
        let live = LiveState {
            classes: vec![class("gp3", true, 10), class("nfs", false, 10)],
            ..Default::default()
        };
        let w = warning(NS_DEFAULTS, live).expect("warning");
        assert!(
            w.starts_with("StorageClass \"gp3\" is annotated default"),
            "{w}"
        );
        assert!(
            w.contains("replaces the class with the policy's default for namespaces team-a."),
            "{w}"
        );
        assert!(w.contains("metadata.managedFields"), "{w}");
        assert!(w.ends_with("keeps \"gp3\" (with a warning)"), "{w}");
    }

    #[test]
    fn names_every_default_and_the_one_kubernetes_picks() {
        let live = LiveState {
            classes: vec![class("old", true, 1), class("new", true, 2)],
            ..Default::default()
        };
        let w = warning(
            "rules:\n  defaultStorageClass:\n    className: old\n    byAccessMode: {ReadWriteMany: nfs}\n",
            live,
        )
        .expect("warning");
        assert!(
            w.contains(
                "StorageClasses \"new\", \"old\" are annotated default (Kubernetes picks \"new\")"
            ),
            "{w}"
        );
        assert!(w.contains("default for access modes ReadWriteMany."), "{w}");
        assert!(w.contains("keeps \"new\""), "{w}");
    }

    #[test]
    fn namespace_annotations_count_as_namespace_defaults() {
        let mut namespaces = std::collections::HashMap::new();
        namespaces.insert(
            "ml".to_owned(),
            NamespaceInfo {
                default_class: Some("fast".into()),
                mode: None,
                rewrite_access_modes: None,
            },
        );
        let live = LiveState {
            classes: vec![class("gp3", true, 1)],
            namespaces,
            nodes: None,
            ..Default::default()
        };
        let w = warning("", live).expect("warning");
        assert!(w.contains("default for namespaces ml."), "{w}");
    }

    #[test]
    fn silent_without_a_live_default_or_without_policy_defaults() {
        let no_default = LiveState {
            classes: vec![class("gp3", false, 1)],
            ..Default::default()
        };
        assert_eq!(warning(NS_DEFAULTS, no_default), None);
        let default_only = LiveState {
            classes: vec![class("gp3", true, 1)],
            ..Default::default()
        };
        assert_eq!(
            warning(
                "rules:\n  defaultStorageClass:\n    className: gp3\n",
                default_only
            ),
            None
        );
        // A static `default: true` is invisible to the plugin.
        assert_eq!(
            warning(
                "storageClasses:\n  - {name: gp3, provisioner: ebs.csi.aws.com, default: true}\n\
                 rules:\n  defaultStorageClass:\n    namespaces: {team-a: gp3}\n",
                LiveState::default()
            ),
            None
        );
    }

    #[test]
    fn long_namespace_lists_are_summarised() {
        let namespaces: String = (0..8).map(|i| format!("ns{i}: nfs, ")).collect();
        let policy = format!(
            "rules:\n  defaultStorageClass:\n    namespaces: {{{}}}\n",
            namespaces.trim_end_matches(", ")
        );
        let live = LiveState {
            classes: vec![class("gp3", true, 1)],
            ..Default::default()
        };
        let w = warning(&policy, live).expect("warning");
        assert!(
            w.contains("namespaces ns0, ns1, ns2, ns3, ns4 and 3 more"),
            "{w}"
        );
    }
}
