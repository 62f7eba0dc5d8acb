//! The storage rules. Pure code: plain data in (the object, a [`Catalog`] snapshot, the
//! [`Policy`]), a [`Decision`] out. Nothing here knows about HTTP, TLS or the cluster API.
//!
//! One file per rule: [`default_class`], [`node_affinity`], [`access_modes`].

pub mod access_modes;
pub mod catalog;
pub mod config;
pub mod default_class;
pub mod field;
pub mod modes;
pub mod node_affinity;

use std::collections::{BTreeMap, HashSet};
use std::path::Path as FsPath;

use json_patch::PatchOperation;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PodSpec};

pub use catalog::{
    Catalog, ClassInfo, LiveClass, LiveState, NamespaceInfo, ProvisionerTable, StorageKind,
};
pub use config::{AccessMode, ConfigError, PolicyFile};
pub use field::{FieldError, Invalid, Path};
pub use modes::{Mode, RuleId};

/// A loaded, validated policy with its modes resolved.
#[derive(Debug)]
pub struct Policy {
    pub file: PolicyFile,
    pub table: ProvisionerTable,
    modes: [Mode; 3],
    dry_run: bool,
    exempt_namespaces: HashSet<String>,
    exempt_users: HashSet<String>,
}

impl Policy {
    /// Compiles a validated policy file. `dry_run` caps every rule at `audit`.
    pub fn new(file: PolicyFile, dry_run: bool) -> Policy {
        let global = file.mode.unwrap_or(Mode::Enforce);
        let rules = &file.rules;
        let modes = [
            rules.default_storage_class.mode.unwrap_or(global),
            rules.local_volume_node_affinity.mode.unwrap_or(global),
            rules.access_modes.mode.unwrap_or(global),
        ];
        Policy {
            table: ProvisionerTable::new(&file),
            exempt_namespaces: file.exemptions.namespaces.iter().cloned().collect(),
            exempt_users: file.exemptions.usernames.iter().cloned().collect(),
            modes,
            dry_run,
            file,
        }
    }

    /// Loads the policy file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&FsPath>, dry_run: bool) -> Result<Policy, ConfigError> {
        let file = match path {
            Some(p) => config::load(p)?,
            None => config::parse(config::EMBEDDED_POLICY, None)?,
        };
        Ok(Policy::new(file, dry_run))
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// A catalog holding only the policy's static classes (no cluster).
    pub fn static_catalog(&self) -> Catalog {
        Catalog::build(&self.file, &self.table, &LiveState::default())
    }

    /// A catalog of the static classes merged with what was read from a cluster.
    pub fn catalog(&self, live: &LiveState) -> Catalog {
        Catalog::build(&self.file, &self.table, live)
    }

    /// The mode a rule runs in for a request in `namespace`: the namespace's
    /// `storage-policy.io/mode` label, else the rule's mode, else the global mode; `--dry-run`
    /// then turns enforce into audit.
    pub fn mode_for(&self, rule: RuleId, catalog: &Catalog, namespace: Option<&str>) -> Mode {
        let idx = match rule {
            RuleId::DefaultStorageClass => 0,
            RuleId::LocalVolumeNodeAffinity => 1,
            RuleId::AccessModes => 2,
        };
        let mode = namespace
            .and_then(|ns| catalog.namespace(ns))
            .and_then(|info| info.mode)
            .unwrap_or(self.modes[idx]);
        if self.dry_run {
            mode.capped_at_audit()
        } else {
            mode
        }
    }

    /// Whether no rule acts on this request.
    pub fn is_exempt(&self, namespace: Option<&str>, username: &str) -> bool {
        namespace.is_some_and(|ns| self.exempt_namespaces.contains(ns))
            || self.exempt_users.contains(username)
    }

    pub fn reject_rwx_on(&self, kind: StorageKind) -> bool {
        self.file
            .rules
            .access_modes
            .reject_read_write_many_on
            .contains(&kind)
    }
}

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// The object under review, typed.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    Pvc(&'a PersistentVolumeClaim),
    Pv(&'a PersistentVolume),
    StatefulSet(&'a StatefulSet),
    /// A Pod or a workload with a pod template: its pod spec and the spec's field path
    /// (`spec`, `spec.template.spec`, `spec.jobTemplate.spec.template.spec`).
    PodSpec {
        spec: Option<&'a PodSpec>,
        path: &'static str,
    },
}

/// What the error messages call the object: `Kind.group "name"`.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

/// One admission request reduced to what the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub operation: Operation,
    pub namespace: Option<&'a str>,
    pub username: &'a str,
    pub subject: Subject<'a>,
    pub object: Option<Object<'a>>,
    pub old_object: Option<Object<'a>>,
}

/// What a rule did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Patched the object.
    Mutated,
    /// Denied the request.
    Denied,
    /// Would have patched or denied, but the rule is in audit mode.
    Audited,
    /// Allowed, with a warning (a problem the rule cannot fix, or a pre-existing violation).
    Warned,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mutated => "mutated",
            Action::Denied => "denied",
            Action::Audited => "audited",
            Action::Warned => "warned",
        }
    }
}

/// One thing a rule found, for logs, metrics and the `audit` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    pub action: Action,
    pub storage_class: Option<String>,
    pub message: String,
}

/// The answer of the rules for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub patch: Vec<PatchOperation>,
    pub denial: Option<Invalid>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
    pub findings: Vec<Finding>,
}

/// The API server cuts warnings over 256 characters and drops those with control characters.
pub const MAX_WARNING_CHARS: usize = 256;

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// Adds a warning the API server will pass on: control characters replaced, at most
    /// [`MAX_WARNING_CHARS`] characters, no duplicates.
    pub fn warn(&mut self, text: impl AsRef<str>) {
        let mut w: String = text
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if w.chars().count() > MAX_WARNING_CHARS {
            w = w.chars().take(MAX_WARNING_CHARS - 3).collect::<String>() + "...";
        }
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// What a mutating rule found: in `enforce` mode the patch is applied; in `audit` mode it is
    /// reported as a warning instead. Either way an audit annotation and a finding record it.
    pub(crate) fn mutation(
        &mut self,
        rule: RuleId,
        mode: Mode,
        what: &str,
        storage_class: Option<String>,
        op: PatchOperation,
    ) {
        let (action, message) = match mode {
            Mode::Off => return,
            Mode::Enforce => {
                self.patch.push(op);
                (Action::Mutated, format!("set {what}"))
            }
            Mode::Audit => {
                let msg = format!("would set {what}");
                self.warn(format!("[audit] {msg}"));
                (Action::Audited, msg)
            }
        };
        self.annotate(rule, message.clone());
        self.findings.push(Finding {
            rule,
            action,
            storage_class,
            message,
        });
    }

    /// Sets the audit annotation of a rule (the API server prefixes it with the webhook name).
    pub fn annotate(&mut self, rule: RuleId, value: impl Into<String>) {
        let value = value.into();
        self.audit_annotations
            .entry(rule.annotation_key().to_owned())
            .and_modify(|v| {
                v.push_str("; ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
}

/// The mutating rules: default StorageClass (PVC CREATE) and local PV node affinity (PV CREATE).
pub fn mutate(policy: &Policy, catalog: &Catalog, req: &Request<'_>) -> Decision {
    let mut d = Decision::default();
    if req.operation != Operation::Create || policy.is_exempt(req.namespace, req.username) {
        return d;
    }
    match req.object {
        Some(Object::Pvc(pvc)) => {
            let mode = policy.mode_for(RuleId::DefaultStorageClass, catalog, req.namespace);
            default_class::run(policy, catalog, req.namespace, pvc, mode, &mut d);
        }
        Some(Object::Pv(pv)) => {
            let mode = policy.mode_for(RuleId::LocalVolumeNodeAffinity, catalog, None);
            node_affinity::run(policy, catalog, pv, mode, &mut d);
        }
        _ => {}
    }
    d
}

/// The validating rule: access modes the storage can serve (CREATE and UPDATE; never DELETE).
pub fn validate(policy: &Policy, catalog: &Catalog, req: &Request<'_>) -> Decision {
    let mut d = Decision::default();
    if !matches!(req.operation, Operation::Create | Operation::Update)
        || policy.is_exempt(req.namespace, req.username)
    {
        return d;
    }
    let namespace = match req.object {
        Some(Object::Pv(_)) => None,
        _ => req.namespace,
    };
    let mode = policy.mode_for(RuleId::AccessModes, catalog, namespace);
    access_modes::run(policy, catalog, req, mode, &mut d);
    d
}
