//! The model: what Kubernetes does with storage, as the rules need to know it. Vocabulary and
//! modes, quantities, the API server's field errors, the classes, namespaces and nodes known
//! (the catalog), where a claim lands (storage), PVs and claims as the binding rules see them, which pods hold which claims,
//! the size table, node affinity against nodes, and the work bounds of one review.
//!
//! It knows no rule and nothing of the engine: `tests/architecture.rs` fails if a file here
//! imports [`super::engine`], [`super::rules`] or the registry.

pub mod catalog;
pub mod csi;
pub mod field;
pub mod interner;
pub mod limits;
pub mod modes;
pub mod node_selector;
pub mod pods;
pub mod pv_controller;
pub mod quantity;
pub mod sizes;
pub mod snapshots;
pub mod storage;
pub mod topology;
pub mod vocab;
pub mod volumes;
pub mod workloads;
