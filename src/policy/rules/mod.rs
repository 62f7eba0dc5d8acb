//! The rules, one module each. A rule builds on the [`super::engine`] and the [`super::model`]
//! and never imports another rule (`tests/architecture.rs`): what two rules share moves down a
//! layer. The registry (`super::registry`) is the only file that names every rule.

pub mod access_modes;
pub mod claim_ref;
pub mod data_sources;
pub mod default_class;
pub mod delete_in_use;
pub mod local_volume_nodes;
pub mod missing_claims;
pub mod missing_provisioner;
pub mod node_affinity;
pub mod node_name_wffc;
pub mod reclaim_policy;
pub mod shared_claims;
pub mod unknown_class;
pub mod volume_name;
pub mod volume_size;
pub mod volume_topology;
pub mod will_bind;
