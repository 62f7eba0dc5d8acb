//! The engine: what a rule is ([`rule::Rule`] and its [`meta::Meta`]), the request a rule reads,
//! the decision it answers and how the policy file is read into each rule's section.
//!
//! It builds on [`super::model`] and names no rule: `tests/architecture.rs` fails if a file here
//! imports [`super::rules`] or the registry.

pub mod config;
pub mod decision;
pub mod meta;
pub mod request;
pub mod rule;
pub mod sites;
