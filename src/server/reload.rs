//! Policy hot reload: polls the `--config` file by content hash and puts a valid change into
//! service with [`SharedState::set_policy`]. An invalid change is logged and counted; the last
//! good policy keeps serving. Works through ConfigMap volume symlink swaps (paths are followed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;
use super::tls::content_hash;
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
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    let file = config::parse(&text, Some(path))?;
    Ok(LoadedPolicy {
        policy: Policy::new(file, dry_run)?,
        hash,
    })
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

/// Starts polling the policy file; the task runs until the runtime stops.
pub fn spawn(
    reload: PolicyReload,
    state: Arc<SharedState>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(reload.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut serving = reload.initial_hash;
        // The content last refused (or `None` for a read error), so a broken file is reported once.
        let mut refused: Option<Option<[u8; 32]>> = None;
        loop {
            ticker.tick().await;
            let path = reload.path.clone();
            let dry_run = reload.dry_run;
            let Ok(result) = tokio::task::spawn_blocking(move || {
                let hash = std::fs::read(&path).ok().map(|b| content_hash(&[&b]));
                (hash, load_policy_file(&path, dry_run))
            })
            .await
            else {
                continue;
            };
            let (hash, loaded) = result;
            if hash == Some(serving) {
                refused = None;
                continue;
            }
            match loaded {
                // The file may change between the two reads; the hash that counts is the parsed one.
                Ok(LoadedPolicy { policy, hash }) if hash != serving => {
                    state.set_policy(policy);
                    serving = hash;
                    refused = None;
                    metrics.policy_reloads.inc();
                    tracing::info!(path = %reload.path.display(), "policy reloaded");
                }
                Ok(_) => {}
                Err(e) => {
                    if refused != Some(hash) {
                        metrics.policy_reload_failures.inc();
                        tracing::error!(error = %e, "policy file changed but is invalid; the previous policy keeps serving");
                        refused = Some(hash);
                    }
                }
            }
        }
    })
}
