//! The cluster cache: watches StorageClasses, Namespaces, Nodes, PersistentVolumes, claims,
//! pods (those that mount claims), CSIDrivers and CSINodes (and VolumeSnapshots while served) and feeds what the rules read
//! into [`SharedState`] (`update_live`), off the request path. Decisions only ever read the
//! resulting snapshots: no API call is made while deciding a request.
//!
//! Owns: finding the cluster ([`connect`]), the watches ([`run`]), readiness ([`ClusterStatus`]),
//! their metrics ([`ClusterMetrics`]) and the DefaultStorageClass interplay check
//! ([`interplay_warning`]). Must not touch HTTP serving or the policy rules themselves.
//!
//! Failure handling: a failed list or watch is retried with kube-runtime's default backoff
//! (0.8 s doubling to 30 s, with jitter); meanwhile the last complete state keeps being served. A
//! watch that cannot resume (410 Gone) re-lists, and the re-list replaces the cache only once
//! complete. Before the first full list the cache is empty and [`ClusterStatus`] says not synced.

mod cache;
mod connect;
mod interplay;
mod metrics;
pub mod register;
pub mod snapshots;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tracing::{debug, info, warn};

use crate::policy::LiveClass;
use crate::policy::catalog::KIND_ANNOTATION;
use crate::state::SharedState;
use cache::{Cache, Change, Watched};

pub use connect::{
    ConfigEnv, ConfigSource, ConnectError, SERVICE_ACCOUNT_TOKEN, Selection, connect,
    connect_required, connect_to, connect_with,
};
pub use interplay::{DefaultInterplay, annotated_defaults, default_interplay, interplay_warning};
pub use metrics::ClusterMetrics;
pub use status::{ClusterStatus, WatchedResource};

/// How often the interplay check also runs without a watch event (a policy reload can change it).
const INTERPLAY_RECHECK: Duration = Duration::from_secs(10);

/// Watches StorageClasses, Namespaces, Nodes, PersistentVolumes, claims, pods, CSIDrivers and CSINodes and keeps
/// `state`'s live part current; marks `status` synced after the first full list of all eight. Runs until dropped (it never returns
/// on its own: every error is retried). Spawn it, or select on it beside the server.
pub async fn run(
    client: Client,
    state: Arc<SharedState>,
    status: Arc<ClusterStatus>,
    metrics: ClusterMetrics,
) {
    metrics.set_synced(status.is_synced());
    let ctx = Context {
        state,
        status,
        metrics,
        kind_warnings: Mutex::new(HashMap::new()),
        interplay: Mutex::new(None),
    };
    tokio::join!(
        watch::<StorageClass>(Api::all(client.clone()), &ctx),
        watch::<Namespace>(Api::all(client.clone()), &ctx),
        watch::<Node>(Api::all(client.clone()), &ctx),
        watch::<PersistentVolume>(Api::all(client.clone()), &ctx),
        watch::<PersistentVolumeClaim>(Api::all(client.clone()), &ctx),
        watch::<Pod>(Api::all(client.clone()), &ctx),
        watch::<CSIDriver>(Api::all(client.clone()), &ctx),
        watch::<CSINode>(Api::all(client.clone()), &ctx),
        watch_snapshots(client, &ctx),
        recheck_interplay(&ctx),
    );
}

/// Watches VolumeSnapshots and VolumeSnapshotContents while the API serves them
/// ([`snapshots::discover`], again every [`snapshots::REDISCOVER`]); clears them from the live
/// state when the API goes away. Never part of readiness: a cluster without the CRD is normal.
async fn watch_snapshots(client: Client, ctx: &Context) {
    use snapshots::{Presence, VolumeSnapshot, VolumeSnapshotContent};
    let mut presence = Presence::Unknown;
    loop {
        let found = snapshots::discover(&client).await;
        if let Err(e) = &found {
            debug!(error = %e, "snapshot API discovery failed; trying again in {:?}", snapshots::REDISCOVER);
        }
        let now = match found {
            Ok(true) => Presence::Present,
            Ok(false) => Presence::Absent,
            Err(_) => Presence::Unknown,
        };
        presence = presence.update(now);
        if now != Presence::Present {
            tokio::time::sleep(snapshots::REDISCOVER).await;
            continue;
        }
        let watches = async {
            tokio::join!(
                watch::<VolumeSnapshot>(Api::all(client.clone()), ctx),
                watch::<VolumeSnapshotContent>(Api::all(client.clone()), ctx),
            );
        };
        // Only a discovery that answers "not served" stops the watches: a failed one (the API
        // server restarting) keeps them, and they retry on their own.
        let gone = async {
            loop {
                tokio::time::sleep(snapshots::REDISCOVER).await;
                if matches!(snapshots::discover(&client).await, Ok(false)) {
                    break;
                }
            }
        };
        tokio::select! {
            () = watches => {}
            () = gone => {}
        }
        ctx.state.update_live(snapshots::clear);
        presence = presence.update(Presence::Absent);
    }
}

struct Context {
    state: Arc<SharedState>,
    status: Arc<ClusterStatus>,
    metrics: ClusterMetrics,
    /// Class name -> the invalid `storage-policy.io/kind` value already warned about.
    kind_warnings: Mutex<HashMap<String, String>>,
    /// The interplay warning last logged.
    interplay: Mutex<Option<String>>,
}

async fn watch<K: Watched>(api: Api<K>, ctx: &Context) {
    let resource = K::RESOURCE;
    let mut cache = Cache::<K>::default();
    let mut lists = 0u64;
    // Between a failed resume and the end of the re-list that follows (which may take retries).
    let mut relisting = false;
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    // Changes not yet published: events already waiting are applied first, then the cache is
    // published once (a burst of PV or claim events rebuilds the catalog once, not per event).
    let mut dirty = false;
    loop {
        let next = match dirty.then(|| events.next().now_or_never()).flatten() {
            Some(item) => item,
            None => {
                if std::mem::take(&mut dirty) {
                    ctx.publish(&cache);
                }
                events.next().await
            }
        };
        let Some(item) = next else { break };
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                ctx.metrics.error(resource);
                let hint = if is_forbidden(&e) {
                    format!(" (the service account needs get, list and watch on {resource})")
                } else {
                    String::new()
                };
                if matches!(&e, watcher::Error::WatchError(s) if s.code == 410) {
                    // Routine: the API server no longer holds our resourceVersion.
                    info!(%resource, "watch expired (410 Gone); re-listing {resource}, serving the last known state meanwhile");
                } else if cache.is_synced() {
                    warn!(%resource, error = %e, "watch failed{hint}; keeping the last known state, retrying with backoff");
                } else {
                    warn!(%resource, error = %e, "cannot list {resource} yet{hint}; not ready, retrying with backoff");
                }
                continue;
            }
        };
        match &event {
            Event::Init => {
                lists += 1;
                if lists > 1 {
                    ctx.metrics.relist(resource);
                    if !std::mem::replace(&mut relisting, true) {
                        info!(%resource, "re-listing {resource} (the watch could not resume); serving the last known state meanwhile");
                    }
                }
            }
            Event::InitApply(_) => ctx.metrics.event(resource, "list"),
            Event::Apply(_) => ctx.metrics.event(resource, "apply"),
            Event::Delete(_) => ctx.metrics.event(resource, "delete"),
            Event::InitDone => relisting = false,
        }
        match cache.apply(event) {
            Change::None => {}
            Change::Updated => dirty = true,
            Change::Listed { first, changed } => {
                if first || changed || dirty {
                    dirty = false;
                    ctx.publish(&cache);
                }
                if first {
                    info!(%resource, count = cache.len(), "{resource} listed");
                    ctx.status.mark_synced(resource);
                    if resource.is_required() && ctx.status.is_synced() {
                        ctx.metrics.set_synced(true);
                        info!(
                            "cluster cache synced: StorageClasses, Namespaces, Nodes, PersistentVolumes, claims, pods, CSIDrivers and CSINodes listed"
                        );
                    }
                    ctx.check_interplay();
                } else {
                    debug!(%resource, count = cache.len(), changed, "{resource} re-listed");
                }
            }
        }
    }
}

fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.is_forbidden(),
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

async fn recheck_interplay(ctx: &Context) {
    let mut tick = tokio::time::interval(INTERPLAY_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ctx.check_interplay();
    }
}

impl Context {
    /// Publishes one resource's whole cache and rebuilds the catalog once.
    fn publish<K: Watched>(&self, cache: &Cache<K>) {
        let current = cache.current();
        self.state.update_live(|live| K::publish(current, live));
        self.metrics.set_objects(K::RESOURCE, cache.len());
        debug!(resource = %K::RESOURCE, count = cache.len(), "catalog rebuilt");
        match K::RESOURCE {
            WatchedResource::StorageClasses => {
                if let Some(classes) = K::as_classes(current) {
                    self.warn_invalid_kinds(classes);
                }
                self.check_interplay();
            }
            WatchedResource::Namespaces => self.check_interplay(),
            WatchedResource::Nodes
            | WatchedResource::PersistentVolumes
            | WatchedResource::PersistentVolumeClaims
            | WatchedResource::Pods
            | WatchedResource::CsiDrivers
            | WatchedResource::CsiNodes
            | WatchedResource::VolumeSnapshots
            | WatchedResource::VolumeSnapshotContents => {}
        }
    }

    /// Warns once per class (and value) about an unknown `storage-policy.io/kind`.
    fn warn_invalid_kinds(&self, classes: &BTreeMap<String, LiveClass>) {
        let mut warned = self.kind_warnings.lock().unwrap_or_else(|e| e.into_inner());
        warned.retain(|name, value| {
            classes
                .get(name)
                .is_some_and(|c| c.kind_annotation.as_deref() == Some(value.as_str()))
        });
        for c in classes.values().filter(|c| !c.kind_annotation_is_valid()) {
            let value = c.kind_annotation.clone().unwrap_or_default();
            if warned.get(&c.name) != Some(&value) {
                warn!(
                    storage_class = %c.name,
                    "StorageClass {} has {KIND_ANNOTATION}: {value:?}, which is not block, local or shared; \
                     ignoring it and using the provisioner table",
                    c.name
                );
                warned.insert(c.name.clone(), value);
            }
        }
    }

    /// Logs the DefaultStorageClass interplay when it appears, changes or goes away; sets the
    /// gauge. Waits for StorageClasses and Namespaces to be listed, so a half-known cluster does
    /// not log a warning that the next event withdraws.
    fn check_interplay(&self) {
        if !self
            .status
            .is_resource_synced(WatchedResource::StorageClasses)
            || !self.status.is_resource_synced(WatchedResource::Namespaces)
        {
            return;
        }
        let snapshot = self.state.snapshot();
        let warning = interplay_warning(&snapshot.policy, &snapshot.catalog);
        self.metrics.set_interplay(warning.is_some());
        let mut last = self.interplay.lock().unwrap_or_else(|e| e.into_inner());
        if *last == warning {
            return;
        }
        match &warning {
            // Handled (managedFields): said once at info, not a fault.
            Some(w) => info!("{w}"),
            None => info!(
                "the DefaultStorageClass interplay is resolved: no StorageClass annotated default defeats the policy's defaults"
            ),
        }
        *last = warning;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::policy::Policy;

    /// Log lines captured from a closure.
    fn logs(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    fn context(policy: &str) -> Context {
        Context {
            state: Arc::new(SharedState::new(
                Policy::parse(policy, None, false).unwrap(),
            )),
            status: Arc::new(ClusterStatus::new()),
            metrics: ClusterMetrics::default(),
            kind_warnings: Mutex::new(HashMap::new()),
            interplay: Mutex::new(None),
        }
    }

    fn class(name: &str, kind: Option<&str>, default: bool) -> LiveClass {
        LiveClass {
            name: name.into(),
            provisioner: "ebs.csi.aws.com".into(),
            kind_annotation: kind.map(str::to_owned),
            is_default: default,
            allow_rwx_block_mode: false,
            created: None,
            volume_binding_mode: None,
            parameters: Default::default(),
            ..Default::default()
        }
    }

    fn classes(list: Vec<LiveClass>) -> BTreeMap<String, LiveClass> {
        list.into_iter().map(|c| (c.name.clone(), c)).collect()
    }

    #[test]
    fn warns_once_per_class_about_an_invalid_kind() {
        let ctx = context("");
        let bad = classes(vec![
            class("a", Some("blok"), false),
            class("b", Some("shared"), false),
        ]);
        let out = logs(|| {
            ctx.warn_invalid_kinds(&bad);
            ctx.warn_invalid_kinds(&bad);
        });
        assert_eq!(out.matches("storage-policy.io/kind").count(), 1, "{out}");
        assert!(
            out.contains("StorageClass a has storage-policy.io/kind: \"blok\""),
            "{out}"
        );
        // A different bad value, or the same one after a fix, warns again.
        let out = logs(|| {
            ctx.warn_invalid_kinds(&classes(vec![class("a", Some("nfs"), false)]));
            ctx.warn_invalid_kinds(&classes(vec![class("a", Some("block"), false)]));
            ctx.warn_invalid_kinds(&classes(vec![class("a", Some("nfs"), false)]));
        });
        assert_eq!(out.matches("storage-policy.io/kind").count(), 2, "{out}");
    }

    #[test]
    fn interplay_is_logged_on_change_only_and_after_sync() {
        let ctx = context("rules:\n  defaultStorageClass:\n    namespaces: {team-a: nfs}\n");
        let default = classes(vec![class("gp3", None, true)]);
        ctx.state
            .update_live(|l| StorageClass::publish(&default, l));
        assert!(
            logs(|| ctx.check_interplay()).is_empty(),
            "not logged before the lists"
        );
        ctx.status.mark_synced(WatchedResource::StorageClasses);
        ctx.status.mark_synced(WatchedResource::Namespaces);
        let out = logs(|| {
            ctx.check_interplay();
            ctx.check_interplay();
        });
        assert_eq!(
            out.matches("DefaultStorageClass admission plugin").count(),
            1,
            "{out}"
        );
        let plain = classes(vec![class("gp3", None, false)]);
        ctx.state.update_live(|l| StorageClass::publish(&plain, l));
        let out = logs(|| ctx.check_interplay());
        assert!(out.contains("interplay is resolved"), "{out}");
    }
}
