//! storage-policy-webhook: a Kubernetes admission webhook that enforces storage policy.
//!
//! - [`kinds`]: the one table of kinds the webhook handles.
//! - [`policy`]: the rules, a registry of pure checks of (object, catalog, policy) to a decision,
//!   in three layers (model, engine, rules).
//! - [`admission`]: AdmissionReview in, decision out, AdmissionReview back.
//! - [`server`]: TLS, routing, reloads, health, metrics and graceful shutdown.
//! - [`cluster`]: watch caches of StorageClasses, Namespaces, Nodes, PVs and claims feeding
//!   [`state`].
//! - [`audit`]: what the webhook would do to manifests or to a cluster, through [`admission`].
//! - [`cli`]: the command line (`serve`, `review`, `audit`, `certs`).
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod kinds;
pub mod policy;
pub mod server;
pub mod state;
