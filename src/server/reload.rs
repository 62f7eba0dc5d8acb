//! Policy hot reload: the `--config` file is followed by [`super::follow`] (by content hash,
//! through ConfigMap volume symlink swaps) and a valid change is put into service with
//! [`SharedState::set_policy`]. An invalid change is logged and counted once per content; the
//! last good policy keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::follow::{Followed, Reading, Report, content_hash, follow};
use super::metrics::Metrics;
use crate::policy::{ConfigError, Policy, config};
use crate::state::SharedState;

/// How often the policy file is checked for changes.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// A policy read from a file, with the hash of the bytes it was parsed from.
#[derive(Debug)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub hash: [u8; 32],
}

/// Reads, parses and validates a policy file once.
pub fn load_policy_file(path: &Path, dry_run: bool) -> Result<LoadedPolicy, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let hash = content_hash(&[&bytes]);
    let policy = parse_policy(path, bytes, dry_run)?;
    Ok(LoadedPolicy { policy, hash })
}

fn parse_policy(path: &Path, bytes: Vec<u8>, dry_run: bool) -> Result<Policy, ConfigError> {
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    let file = config::parse(&text, Some(path))?;
    Policy::new(file, dry_run)
}

/// What the reloader watches.
#[derive(Clone, Debug)]
pub struct PolicyReload {
    pub path: PathBuf,
    pub dry_run: bool,
    pub interval: Duration,
    /// Hash of the content the serving policy came from.
    pub initial_hash: [u8; 32],
}

/// Starts following the policy file; the task runs until it is aborted.
pub fn spawn(
    reload: PolicyReload,
    state: Arc<SharedState>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let file = PolicyFile {
        path: reload.path,
        dry_run: reload.dry_run,
        state,
    };
    tokio::spawn(follow(file, reload.initial_hash, reload.interval, metrics))
}

/// The policy file, as [`follow`] sees it.
struct PolicyFile {
    path: PathBuf,
    dry_run: bool,
    state: Arc<SharedState>,
}

impl Followed for PolicyFile {
    type Value = Policy;
    type Error = ConfigError;
    const REPORT: Report = Report::EachContent;

    fn read(&self) -> Reading<Policy, ConfigError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => (
                Some(content_hash(&[&bytes])),
                parse_policy(&self.path, bytes, self.dry_run),
            ),
            Err(error) => (
                None,
                Err(ConfigError::Read {
                    path: self.path.clone(),
                    error,
                }),
            ),
        }
    }

    fn apply(&self, policy: Policy, metrics: &Metrics) {
        self.state.set_policy(policy);
        metrics.policy_reloads.inc();
        tracing::info!(path = %self.path.display(), "policy reloaded");
    }

    fn refuse(&self, error: &ConfigError, metrics: &Metrics) {
        metrics.policy_reload_failures.inc();
        tracing::error!(error = %error, "policy file changed but is invalid; the previous policy keeps serving");
    }
}
