//! The decision state shared by the server, the cluster watches and the policy reloader: the
//! current [`Policy`] and the [`Catalog`] built from it and from what the cluster says.
//!
//! Requests read one immutable [`Snapshot`] (lock-free); writers rebuild the catalog off the
//! request path and swap it in whole, so a request never sees half an update.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::policy::{Catalog, LiveState, Policy};

/// What one request decides with.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Arc<Policy>,
    pub catalog: Catalog,
}

/// The current snapshot and the inputs it is built from.
#[derive(Debug)]
pub struct SharedState {
    current: ArcSwap<Snapshot>,
    /// Writers serialize here; readers never take it.
    inputs: Mutex<Inputs>,
}

#[derive(Debug)]
struct Inputs {
    policy: Arc<Policy>,
    live: LiveState,
}

impl SharedState {
    pub fn new(policy: Policy) -> SharedState {
        let policy = Arc::new(policy);
        let live = LiveState::default();
        let catalog = policy.catalog(&live);
        SharedState {
            current: ArcSwap::from_pointee(Snapshot {
                policy: policy.clone(),
                catalog,
            }),
            inputs: Mutex::new(Inputs { policy, live }),
        }
    }

    /// The snapshot to decide one request with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the policy (a reload), keeping what the cluster said.
    pub fn set_policy(&self, policy: Policy) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        inputs.policy = Arc::new(policy);
        self.rebuild(&inputs);
    }

    /// Changes what the cluster said and rebuilds the catalog.
    pub fn update_live(&self, change: impl FnOnce(&mut LiveState)) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut inputs.live);
        self.rebuild(&inputs);
    }

    /// A copy of what the cluster said, for diagnostics.
    pub fn live(&self) -> LiveState {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .clone()
    }

    fn rebuild(&self, inputs: &Inputs) {
        let catalog = inputs.policy.catalog(&inputs.live);
        self.current.store(Arc::new(Snapshot {
            policy: inputs.policy.clone(),
            catalog,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LiveClass;

    #[test]
    fn live_classes_and_policy_reloads_keep_each_other() {
        let state = SharedState::new(Policy::parse("", None, false).unwrap());
        assert_eq!(state.snapshot().catalog.len(), 0);
        state.update_live(|l| {
            l.classes.push(LiveClass {
                name: "gp3".into(),
                provisioner: "ebs.csi.aws.com".into(),
                is_default: true,
                ..Default::default()
            })
        });
        let before = state.snapshot();
        assert_eq!(before.catalog.default_class(), Some("gp3"));
        state.set_policy(
            Policy::parse(
                "storageClasses:\n  - {name: nfs, provisioner: nfs.csi.k8s.io}\n",
                None,
                false,
            )
            .unwrap(),
        );
        let after = state.snapshot();
        assert_eq!(after.catalog.len(), 2, "live class kept across the reload");
        assert_eq!(
            before.catalog.len(),
            1,
            "an old snapshot is never changed under a reader"
        );
    }
}
