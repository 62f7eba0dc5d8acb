//! The storage rules. Pure code: plain data in (the object, a [`Catalog`] snapshot, the
//! [`Policy`]), a [`Decision`] out. Nothing here knows about HTTP, TLS or the cluster API.
//!
//! Three layers, one direction (checked by `tests/architecture.rs`):
//! - [`model`]: what Kubernetes does (vocabulary, quantities, field errors, the catalog of
//!   classes, namespaces and nodes, where a claim lands, PVs and claims, sizes, node affinity,
//!   the PV controller, the work bounds). It knows no rule.
//! - [`engine`]: what a rule is ([`Rule`], [`Meta`]), the request, the [`Decision`], the policy
//!   file's sections. It names no rule.
//! - [`rules`]: one module per rule; a rule never imports another.
//!
//! [`registry`] is the only file that names every rule; this module compiles them into a
//! [`Policy`] and runs them.

pub mod engine;
pub mod model;
pub mod registry;
pub mod rules;
#[cfg(test)]
pub mod testing;

// The model and the engine keep their short paths (`policy::catalog`, `policy::decision`):
// what the rest of the crate reads of them. The rules are reached through `policy::rules`.
pub use engine::{config, decision, meta, request, rule};
pub use model::{
    catalog, csi, field, interner, limits, modes, node_selector, pods, pv_controller, quantity,
    sizes, snapshots, storage, vocab, volumes, workloads,
};

use std::collections::HashSet;
use std::path::Path as FsPath;

pub use crate::kinds::Operation;
pub use catalog::{
    Catalog, ClassInfo, ClassesKnown, LiveClass, LiveState, NamespaceInfo, ProvisionerTable,
    StorageKind,
};
pub use config::{AccessMode, ConfigError, PolicyFile};
pub use decision::{Action, Decision, Finding, MAX_WARNING_CHARS};
pub use field::{FieldError, Invalid, Path};
pub use limits::Budget;
pub use modes::{Acting, Mode};
pub use registry::Compiled;
pub use rule::{Acts, Context, Endpoint, Meta, Object, Request, Rule, RuleId, Subject};
pub use storage::Settings;

/// A loaded, validated policy: the file's top-level settings, the storage model's settings and
/// every rule of the registry compiled with its mode.
#[derive(Debug)]
pub struct Policy {
    pub file: PolicyFile,
    pub table: ProvisionerTable,
    pub settings: Settings,
    rules: Vec<Compiled>,
    dry_run: bool,
    exempt_namespaces: HashSet<String>,
    exempt_users: HashSet<String>,
}

impl Policy {
    /// Compiles a parsed policy file: every rule reads and validates its own section.
    /// `dry_run` caps every rule at `audit`.
    pub fn new(file: PolicyFile, dry_run: bool) -> Result<Policy, ConfigError> {
        let (rules, settings) = registry::compile(&file)?;
        Ok(Policy {
            table: ProvisionerTable::new(&file.provisioners),
            exempt_namespaces: file.exemptions.namespaces.iter().cloned().collect(),
            exempt_users: file.exemptions.usernames.iter().cloned().collect(),
            settings,
            rules,
            dry_run,
            file,
        })
    }

    /// Parses and compiles a policy document; `path` only names it in errors.
    pub fn parse(text: &str, path: Option<&FsPath>, dry_run: bool) -> Result<Policy, ConfigError> {
        Policy::new(config::parse(text, path)?, dry_run)
    }

    /// Loads the policy file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&FsPath>, dry_run: bool) -> Result<Policy, ConfigError> {
        let file = match path {
            Some(p) => config::load(p)?,
            None => config::parse(config::EMBEDDED_POLICY, None)?,
        };
        Policy::new(file, dry_run)
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// A catalog holding only the policy's static classes (no cluster).
    pub fn static_catalog(&self) -> Catalog {
        self.catalog(&LiveState::default())
    }

    /// A catalog of the static classes merged with what was read from a cluster.
    pub fn catalog(&self, live: &LiveState) -> Catalog {
        Catalog::build(
            &self.file.storage_classes,
            &self.table,
            &self.settings.reject_rwx_on,
            &self.settings.node_label,
            live,
        )
    }

    /// What the rules read besides the request, at `endpoint`.
    pub fn context<'a>(&'a self, endpoint: Endpoint, catalog: &'a Catalog) -> Context<'a> {
        Context {
            endpoint,
            settings: &self.settings,
            table: &self.table,
            catalog,
            budget: None,
        }
    }

    /// The compiled rules with their modes, in registry order.
    pub fn rules(&self) -> &[Compiled] {
        &self.rules
    }

    /// The compiled rule with this id (every registered rule is compiled).
    pub fn rule(&self, id: RuleId) -> &dyn Rule {
        self.compiled(id).rule.as_ref()
    }

    fn compiled(&self, id: RuleId) -> &Compiled {
        self.rules
            .iter()
            .find(|c| c.meta.key == id.as_str())
            .unwrap_or_else(|| panic!("rule {} is not in the registry", id.as_str()))
    }

    /// The mode a rule runs in for a request in `namespace`: the namespace's
    /// `storage-policy.io/mode` label, else the rule's mode, else the global mode, else the
    /// rule's default; `--audit-only` then turns enforce into audit.
    pub fn mode_for(&self, rule: RuleId, catalog: &Catalog, namespace: Option<&str>) -> Mode {
        self.effective_mode(
            self.compiled(rule).mode,
            Self::namespace_mode(catalog, namespace),
        )
    }

    /// The namespace's `storage-policy.io/mode` label, if any.
    fn namespace_mode(catalog: &Catalog, namespace: Option<&str>) -> Option<Mode> {
        namespace
            .and_then(|ns| catalog.namespace(ns))
            .and_then(|info| info.mode)
    }

    /// [`Policy::mode_for`] from the rule's own mode and the namespace's.
    fn effective_mode(&self, rule_mode: Mode, namespace_mode: Option<Mode>) -> Mode {
        let mode = namespace_mode.unwrap_or(rule_mode);
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
        self.settings.reject_rwx_on(kind)
    }

    /// Runs every rule of `endpoint` that applies to the request, in registry order, within the
    /// default work budget ([`Budget::default`]: fixed units, no deadline).
    pub fn decide(&self, endpoint: Endpoint, catalog: &Catalog, req: &Request<'_>) -> Decision {
        self.decide_within(endpoint, catalog, req, &Budget::default())
    }

    /// [`Policy::decide`] within `budget`: once it is spent no further rule runs, and the
    /// answer's first warning says which rules were not judged or stopped partway
    /// ([`Decision::unjudged`]). What was judged before stands.
    pub fn decide_within(
        &self,
        endpoint: Endpoint,
        catalog: &Catalog,
        req: &Request<'_>,
        budget: &Budget,
    ) -> Decision {
        let mut d = Decision::default();
        if self.is_exempt(req.namespace, req.username) {
            return d;
        }
        let cx = Context {
            budget: Some(budget),
            ..self.context(endpoint, catalog)
        };
        // Looked up once per request, not once per rule.
        let namespace_mode = Self::namespace_mode(catalog, req.namespace);
        for c in &self.rules {
            let meta = c.meta;
            if !meta.at(endpoint).is_some_and(|a| a.applies(req)) {
                continue;
            }
            let Some(mode) = self.effective_mode(c.mode, namespace_mode).acting() else {
                continue;
            };
            if budget.exhausted() {
                budget.skip(format!("rule {} not run", meta.key));
                continue;
            }
            c.rule.check(&cx, req, mode, &mut d);
            if budget.exhausted() {
                budget.skip(format!("rule {} stopped partway", meta.key));
            }
        }
        d.finish(budget);
        d
    }
}

/// The mutating rules (`/mutate`).
pub fn mutate(policy: &Policy, catalog: &Catalog, req: &Request<'_>) -> Decision {
    policy.decide(Endpoint::Mutate, catalog, req)
}

/// The validating rules (`/validate`).
pub fn validate(policy: &Policy, catalog: &Catalog, req: &Request<'_>) -> Decision {
    policy.decide(Endpoint::Validate, catalog, req)
}
