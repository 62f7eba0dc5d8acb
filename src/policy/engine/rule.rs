//! What a rule is: the [`Rule`] trait (a pure check over a [`Request`] with its own compiled
//! configuration), what it reads besides the request ([`Context`]), and how the registry builds
//! it from its section of the policy file ([`Entry`]).

use std::fmt;

use super::config::{ConfigError, Section};
use super::decision::Decision;
use crate::policy::model::catalog::{Catalog, ProvisionerTable};
use crate::policy::model::limits::Budget;
pub use crate::policy::model::modes::Acting;
use crate::policy::model::storage::Settings;

pub use super::meta::{Acts, Endpoint, Judges, Meta, PodFilter, RuleId};
pub use super::request::{Object, Request, Subject};

/// What a rule reads besides the request: the endpoint it is called for, the shared storage
/// model's settings, the provisioner table, the catalog snapshot and the review's work budget.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub endpoint: Endpoint,
    pub settings: &'a Settings,
    pub table: &'a ProvisionerTable,
    pub catalog: &'a Catalog,
    /// The work budget of the review (none: unbounded, as in a rule's unit tests).
    pub budget: Option<&'a Budget>,
}

impl Context<'_> {
    /// Takes `units` of work from the review's budget; `false`: stop judging (the engine says
    /// what was left unjudged).
    pub fn spend(&self, units: u64) -> bool {
        self.budget.is_none_or(|b| b.spend(units))
    }

    /// Records what a cap of [`crate::policy::model::limits`] left unjudged.
    pub fn skip(&self, what: impl Into<String>) {
        if let Some(b) = self.budget {
            b.skip(what);
        }
    }
}

/// One rule: a pure check over a request, with its own compiled configuration.
pub trait Rule: fmt::Debug + Send + Sync {
    /// Adds what the rule finds to `d`, acting as `mode` says (an `off` rule is not called).
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision);

    /// What this rule's configuration contributes to the shared storage model (which class a
    /// claim lands on, what a class serves), read by every rule.
    fn configure(&self, _settings: &mut Settings) {}
}

/// A rule of the registry: its metadata and how to compile its section of the policy file.
pub struct Entry {
    pub meta: &'static Meta,
    pub compile: fn(Section<'_>) -> Result<Box<dyn Rule>, ConfigError>,
}

impl Entry {
    /// A rule compiled from its section by `compile` (which validates the rule's own config).
    pub const fn new(
        meta: &'static Meta,
        compile: fn(Section<'_>) -> Result<Box<dyn Rule>, ConfigError>,
    ) -> Entry {
        Entry { meta, compile }
    }

    /// A rule whose section holds nothing but its `mode`: any other key is refused.
    pub const fn mode_only<R: Rule + Default + 'static>(meta: &'static Meta) -> Entry {
        Entry {
            meta,
            compile: mode_only::<R>,
        }
    }
}

/// The `compile` of a rule whose section holds nothing but its `mode`.
fn mode_only<R: Rule + Default + 'static>(
    section: Section<'_>,
) -> Result<Box<dyn Rule>, ConfigError> {
    section.mode_only()?;
    Ok(Box::<R>::default())
}
