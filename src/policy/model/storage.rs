//! The storage model every rule shares: what a class can serve (access modes and volume modes),
//! and which class a claim lands on (its own, the beta annotation's, or the default this webhook would give it). Both the
//! default-class rule and the access-mode rule read it, so neither imports the other.
//!
//! Its [`Settings`] come from the rules' own configurations ([`super::Rule::configure`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::catalog::{Catalog, NO_PROVISIONER, StorageKind};
use super::vocab::AccessMode;

pub use super::vocab::BETA_CLASS_ANNOTATION;

/// The policy's settings of the storage model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Storage kinds that cannot serve ReadWriteMany (`rules.accessModes.rejectReadWriteManyOn`).
    pub reject_rwx_on: Vec<StorageKind>,
    /// How a claim without a class gets one (`rules.defaultStorageClass`).
    pub defaults: Defaults,
    /// The node label that names a node (`rules.localVolumeNodeAffinity.nodeLabel`).
    pub node_label: String,
    /// Which provisioners are CSI drivers (`rules.missingProvisioner`).
    pub provisioners: super::csi::Judged,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reject_rwx_on: vec![StorageKind::Block, StorageKind::Local],
            defaults: Defaults::default(),
            node_label: "kubernetes.io/hostname".to_owned(),
            provisioners: Default::default(),
        }
    }
}

/// The default-class candidates the policy names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Last-resort default when no class is marked default; empty means none.
    pub class_name: String,
    pub by_access_mode: BTreeMap<AccessMode, String>,
    pub namespaces: BTreeMap<String, String>,
}

impl Settings {
    pub fn reject_rwx_on(&self, kind: StorageKind) -> bool {
        self.reject_rwx_on.contains(&kind)
    }
}

/// How the kind of a [`Target`] is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The class says it: its declared kind (policy `kind`, `storage-policy.io/kind`) or its
    /// provisioner in the table.
    Class,
    /// The volume's own source (`local`, `nfs`, a CSI driver of the table...).
    Source,
    /// A `kubernetes.io/no-provisioner` class whose known PVs (this many, at least one) are all
    /// `local` or `hostPath`.
    Volumes(usize),
    /// A `kubernetes.io/no-provisioner` class of which no PV is known: node-local is the
    /// provisioner table's guess, not a fact. Never a denial.
    Assumed,
}

/// What storage a claim or volume lands on, as far as the rules can tell.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    pub class: Option<&'a str>,
    pub provisioner: Option<&'a str>,
    pub kind: StorageKind,
    pub allow_rwx_block: bool,
    pub basis: Basis,
}

impl<'a> Target<'a> {
    /// The target of a known class of a known kind.
    ///
    /// A `kubernetes.io/no-provisioner` class without a declared kind says only that nothing
    /// provisions dynamically: its claims bind to PVs made by hand, of any source. Its kind then
    /// comes from the PVs of the class when they are known: all `local`/`hostPath` (and at least
    /// one) is node-local ([`Basis::Volumes`]); any other source among them (NFS, CephFS, a CSI
    /// driver...) and the class is not judged (`None`); PVs known but none of the class, and the
    /// table's node-local is kept as [`Basis::Assumed`]. Without any source of PVs (`serve
    /// --no-cluster`, `review`) the policy's classes are judged by the provisioner table as
    /// declared there ([`Basis::Class`]): that is the public conformance contract ("RWX on a
    /// local class is rejected"), and nothing better is known.
    pub fn of_class(catalog: &'a Catalog, class: &str) -> Option<Target<'a>> {
        let info = catalog.class(class)?;
        let mut basis = Basis::Class;
        if info.provisioner == NO_PROVISIONER && !info.kind_declared {
            let known = catalog.volumes().map(|i| i.class_volumes(class));
            basis = match known {
                Some(v) if v.all_node_local() => Basis::Volumes(v.total),
                Some(v) if v.total > 0 => return None,
                Some(_) => Basis::Assumed,
                None => Basis::Class,
            };
        }
        Some(Target {
            class: Some(&info.name),
            provisioner: Some(&info.provisioner),
            kind: info.kind?,
            allow_rwx_block: info.allow_rwx_block_mode,
            basis,
        })
    }

    /// Whether the kind rests on facts (a declared kind, the table, the volume source, the PVs
    /// of a static class), as opposed to an assumption: only then may a rule deny.
    pub fn is_certain(&self) -> bool {
        self.basis != Basis::Assumed
    }

    /// Whether this storage refuses `mode` with this volume mode.
    pub fn rejects(
        &self,
        settings: &Settings,
        mode: AccessMode,
        volume_mode: Option<&str>,
    ) -> bool {
        mode == AccessMode::ReadWriteMany
            && settings.reject_rwx_on(self.kind)
            && !(self.allow_rwx_block && volume_mode == Some("Block"))
    }

    /// Whether this storage serves this volume mode (unset means `Filesystem`, which all do).
    pub fn serves_volume_mode(&self, volume_mode: Option<&str>) -> bool {
        volume_mode != Some("Block") || self.kind.serves_raw_block()
    }
}

/// Whether a class can serve these access modes with this volume mode (unknown classes and
/// kinds, and kinds only assumed: yes).
pub fn serves(
    settings: &Settings,
    catalog: &Catalog,
    class: &str,
    modes: &[String],
    volume_mode: Option<&str>,
) -> bool {
    let Some(t) = Target::of_class(catalog, class).filter(Target::is_certain) else {
        return true;
    };
    t.serves_volume_mode(volume_mode)
        && !modes
            .iter()
            .filter_map(|m| AccessMode::parse(m))
            .any(|m| t.rejects(settings, m, volume_mode))
}

/// Where a chosen default came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceSource {
    Namespace,
    AccessMode(AccessMode),
    ClusterDefault,
    PolicyFallback,
}

impl ChoiceSource {
    pub fn describe(self) -> String {
        match self {
            ChoiceSource::Namespace => "namespace default".to_owned(),
            ChoiceSource::AccessMode(m) => format!("default for {}", m.as_str()),
            ChoiceSource::ClusterDefault => "cluster default".to_owned(),
            ChoiceSource::PolicyFallback => "policy className".to_owned(),
        }
    }
}

/// The default class a claim without one would get, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub class: String,
    pub source: ChoiceSource,
}

/// A PVC "has a class" when `spec.storageClassName` is set (even to `""`) or the beta annotation
/// key is present (any value): exactly the DefaultStorageClass plugin's test.
/// Who set a claim's `spec.storageClassName`, as far as `metadata.managedFields` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassOwner {
    /// No class, or the beta annotation, or a class some field manager owns, or one that is
    /// not the plugin's: the request's own.
    Request,
    /// The class the DefaultStorageClass plugin picks, owned by no field manager: the plugin
    /// set it, the user wrote no class.
    DefaultPlugin,
    /// The plugin's class, and the request carried no managedFields to tell by.
    Unknown,
}

/// Whether the DefaultStorageClass admission plugin, not the request, set the claim's class.
///
/// The API server records the request's fields in `metadata.managedFields` before mutating
/// admission runs (`createHandler` in `k8s.io/apiserver/pkg/endpoints/handlers/create.go`:
/// `FieldManager.UpdateNoErrors` comes before `mutatingAdmission.Admit`), and the in-tree
/// plugin runs before every webhook (`plugin/pkg/admission/storage/storageclass/setdefault`).
/// So a `spec.storageClassName` that equals the plugin's class and that no managed-fields entry
/// owns (`f:spec` / `f:storageClassName` in `fieldsV1`) was written by the plugin. Shown on
/// kube-apiserver v1.37.2 for `kubectl apply`, `apply --server-side`, `create` and the
/// StatefulSet controller (tests/e2e).
pub fn class_owner(
    catalog: &Catalog,
    meta: Option<&ObjectMeta>,
    spec: Option<&PersistentVolumeClaimSpec>,
) -> ClassOwner {
    let Some(class) = spec.and_then(|s| s.storage_class_name.as_deref()) else {
        return ClassOwner::Request;
    };
    let beta = meta
        .and_then(|m| m.annotations.as_ref())
        .is_some_and(|a| a.contains_key(BETA_CLASS_ANNOTATION));
    if beta || catalog.plugin_default() != Some(class) {
        return ClassOwner::Request;
    }
    let Some(entries) = meta
        .and_then(|m| m.managed_fields.as_deref())
        .filter(|e| !e.is_empty())
    else {
        return ClassOwner::Unknown;
    };
    let owned = entries.iter().any(|e| {
        e.fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .and_then(|s| s.get("f:storageClassName"))
            .is_some()
    });
    if owned {
        ClassOwner::Request
    } else {
        ClassOwner::DefaultPlugin
    }
}

pub fn has_class(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec
        .as_ref()
        .is_some_and(|s| s.storage_class_name.is_some())
        || pvc
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(BETA_CLASS_ANNOTATION))
}

/// The class the webhook would give a claim without one in `namespace`.
///
/// Candidates, in order: the namespace's default (Namespace annotation, else the policy's
/// `namespaces` entry), the policy's `byAccessMode` entry, the cluster default (as Kubernetes
/// picks it), the policy's `className`. The first candidate whose storage can serve the requested
/// access modes and volume mode wins; if none can, the first candidate.
pub fn choose(
    settings: &Settings,
    catalog: &Catalog,
    namespace: Option<&str>,
    spec: Option<&PersistentVolumeClaimSpec>,
) -> Option<Choice> {
    let rule = &settings.defaults;
    let modes: &[String] = spec.and_then(|s| s.access_modes.as_deref()).unwrap_or(&[]);
    let volume_mode = spec.and_then(|s| s.volume_mode.as_deref());

    let namespace_default = namespace.and_then(|ns| {
        catalog
            .namespace(ns)
            .and_then(|info| info.default_class.as_deref())
            .or_else(|| rule.namespaces.get(ns).map(String::as_str))
    });
    let mut first: Option<Choice> = None;
    let mut consider = |class: &str, source: ChoiceSource| -> Option<Choice> {
        let choice = Choice {
            class: class.to_owned(),
            source,
        };
        if serves(settings, catalog, class, modes, volume_mode) {
            return Some(choice);
        }
        if first.is_none() {
            first = Some(choice);
        }
        None
    };
    if let Some(c) = namespace_default.and_then(|c| consider(c, ChoiceSource::Namespace)) {
        return Some(c);
    }
    for m in modes.iter().filter_map(|m| AccessMode::parse(m)) {
        if let Some(c) = rule
            .by_access_mode
            .get(&m)
            .and_then(|c| consider(c, ChoiceSource::AccessMode(m)))
        {
            return Some(c);
        }
    }
    if let Some(c) = catalog
        .default_class()
        .and_then(|c| consider(c, ChoiceSource::ClusterDefault))
    {
        return Some(c);
    }
    if !rule.class_name.is_empty()
        && let Some(c) = consider(&rule.class_name, ChoiceSource::PolicyFallback)
    {
        return Some(c);
    }
    first
}

/// The class a claim lands on: its own, the beta annotation's, or the default this webhook
/// would set. `None` for `""` (static binding, no class) and when no default exists.
pub fn claim_class(
    settings: &Settings,
    catalog: &Catalog,
    namespace: Option<&str>,
    meta: Option<&ObjectMeta>,
    spec: Option<&PersistentVolumeClaimSpec>,
) -> Option<String> {
    if let Some(c) = spec.and_then(|s| s.storage_class_name.as_deref())
        && class_owner(catalog, meta, spec) != ClassOwner::DefaultPlugin
    {
        return (!c.is_empty()).then(|| c.to_owned());
    }
    if let Some(c) = meta
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
    {
        return (!c.is_empty()).then(|| c.clone());
    }
    choose(settings, catalog, namespace, spec).map(|c| c.class)
}
