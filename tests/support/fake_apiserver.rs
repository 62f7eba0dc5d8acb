//! The one in-process fake Kubernetes API server of the integration tests: `get`, `list` and
//! `watch` over plain HTTP for any collection registered with [`FakeApiServer::serve`] (every
//! kind the webhook handles is in [`ALL`]), so the real kube-rs client, kube-runtime watchers
//! (`tests/cluster.rs`) and `audit --cluster` (`tests/audit.rs`, through
//! [`FakeApiServer::start_blocking`]) run against it.
//!
//! What it models: a cluster-wide resourceVersion bumped by every change; lists carrying it, in
//! creation order (a test may show a report's order), in pages with `continue` tokens when
//! [`FakeApiServer::set_page_size`] says so (the page size wins over the client's `limit`, so
//! paging is exercised with a handful of objects); `?watch=true&resourceVersion=N` streaming
//! newline-delimited `WatchEvent`s (`ADDED`, `MODIFIED`, `DELETED`, `ERROR`) replayed from N then
//! live; namespaced collections also served under `/namespaces/{ns}/`; `timeoutSeconds`. Failure
//! injection: dropped or broken watches, history expiry (410 Gone, as etcd compaction causes),
//! error statuses for the next requests, a server that is down (connections closed at once), a
//! silent one (nothing sent, connections kept). Not modelled: selectors, writes over HTTP,
//! bookmarks.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A collection the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// The cluster-wide collection path, e.g. `/api/v1/persistentvolumeclaims`.
    pub path: &'static str,
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

pub const STORAGE_CLASSES: ResourceType = ResourceType {
    path: "/apis/storage.k8s.io/v1/storageclasses",
    api_version: "storage.k8s.io/v1",
    kind: "StorageClass",
    namespaced: false,
};
pub const NAMESPACES: ResourceType = ResourceType {
    path: "/api/v1/namespaces",
    api_version: "v1",
    kind: "Namespace",
    namespaced: false,
};
pub const NODES: ResourceType = ResourceType {
    path: "/api/v1/nodes",
    api_version: "v1",
    kind: "Node",
    namespaced: false,
};
pub const PERSISTENT_VOLUMES: ResourceType = ResourceType {
    path: "/api/v1/persistentvolumes",
    api_version: "v1",
    kind: "PersistentVolume",
    namespaced: false,
};
pub const PERSISTENT_VOLUME_CLAIMS: ResourceType = ResourceType {
    path: "/api/v1/persistentvolumeclaims",
    api_version: "v1",
    kind: "PersistentVolumeClaim",
    namespaced: true,
};
pub const STATEFUL_SETS: ResourceType = ResourceType {
    path: "/apis/apps/v1/statefulsets",
    api_version: "apps/v1",
    kind: "StatefulSet",
    namespaced: true,
};
pub const CSI_DRIVERS: ResourceType = ResourceType {
    path: "/apis/storage.k8s.io/v1/csidrivers",
    api_version: "storage.k8s.io/v1",
    kind: "CSIDriver",
    namespaced: false,
};
pub const CSI_NODES: ResourceType = ResourceType {
    path: "/apis/storage.k8s.io/v1/csinodes",
    api_version: "storage.k8s.io/v1",
    kind: "CSINode",
    namespaced: false,
};

pub const PODS: ResourceType = ResourceType {
    path: "/api/v1/pods",
    api_version: "v1",
    kind: "Pod",
    namespaced: true,
};
pub const DEPLOYMENTS: ResourceType = ResourceType {
    path: "/apis/apps/v1/deployments",
    api_version: "apps/v1",
    kind: "Deployment",
    namespaced: true,
};
pub const DAEMON_SETS: ResourceType = ResourceType {
    path: "/apis/apps/v1/daemonsets",
    api_version: "apps/v1",
    kind: "DaemonSet",
    namespaced: true,
};
pub const REPLICA_SETS: ResourceType = ResourceType {
    path: "/apis/apps/v1/replicasets",
    api_version: "apps/v1",
    kind: "ReplicaSet",
    namespaced: true,
};
pub const JOBS: ResourceType = ResourceType {
    path: "/apis/batch/v1/jobs",
    api_version: "batch/v1",
    kind: "Job",
    namespaced: true,
};
pub const CRON_JOBS: ResourceType = ResourceType {
    path: "/apis/batch/v1/cronjobs",
    api_version: "batch/v1",
    kind: "CronJob",
    namespaced: true,
};

/// Every kind the webhook handles, and the catalogue it reads.
pub const ALL: [ResourceType; 14] = [
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    STATEFUL_SETS,
    DEPLOYMENTS,
    DAEMON_SETS,
    REPLICA_SETS,
    JOBS,
    CRON_JOBS,
    STORAGE_CLASSES,
    NAMESPACES,
    NODES,
    CSI_DRIVERS,
    CSI_NODES,
];

impl ResourceType {
    /// The resource of a full object, by its `apiVersion` and `kind`.
    pub fn of(object: &Value) -> Option<ResourceType> {
        ALL.into_iter()
            .find(|r| object["apiVersion"] == r.api_version && object["kind"] == r.kind)
    }
}

/// The page size of [`FakeApiServer::start_blocking`].
pub const PAGE: usize = 2;

/// What a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
}

/// A running fake API server; stops when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// The server's own runtime, for tests without one ([`FakeApiServer::start_blocking`]).
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every change watches must look at.
    changed: watch::Sender<u64>,
    down: AtomicBool,
    /// Connections stay open but nothing is sent: open watches hold their events back and new
    /// requests get no answer (a hung or partitioned API server).
    silent: AtomicBool,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    collections: BTreeMap<&'static str, Collection>,
    log: Vec<LogEntry>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    /// Bumped to end every open watch cleanly / abruptly.
    drop_generation: u64,
    break_generation: u64,
    failures: Vec<Failure>,
    requests: Vec<(&'static str, Verb)>,
    /// Every request's path and query, in order.
    uris: Vec<String>,
    open_watches: BTreeMap<&'static str, usize>,
    /// Lists are cut in pages of this many items; whole when `None`.
    page_size: Option<usize>,
    /// Creation order of objects (kept by a replace).
    created: u64,
}

struct Collection {
    resource: ResourceType,
    /// (namespace or "", name) -> (creation order, object).
    objects: BTreeMap<(String, String), (u64, Value)>,
}

impl Collection {
    /// The objects in creation order, with their namespace ("" for cluster-scoped ones).
    fn in_order(&self) -> Vec<(&str, &Value)> {
        let mut v: Vec<_> = self
            .objects
            .iter()
            .map(|((ns, _), (seq, o))| (*seq, ns.as_str(), o))
            .collect();
        v.sort_by_key(|(seq, _, _)| *seq);
        v.into_iter().map(|(_, ns, o)| (ns, o)).collect()
    }
}

struct LogEntry {
    rv: u64,
    collection: &'static str,
    namespace: String,
    event: &'static str,
    object: Value,
}

struct Failure {
    collection: &'static str,
    verb: Verb,
    code: u16,
    remaining: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

impl FakeApiServer {
    /// Starts serving on a free port of 127.0.0.1, with no collections.
    pub async fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Default::default()
            }),
            changed: watch::Sender::new(0),
            down: AtomicBool::new(false),
            silent: AtomicBool::new(false),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let listener = DownAware {
            inner: listener,
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("fake API server");
        });
        FakeApiServer {
            addr,
            shared,
            task,
            runtime: None,
        }
    }

    /// Starts serving every kind in [`ALL`], with `objects` (full objects: `apiVersion` and
    /// `kind` say where each goes) applied in order.
    pub async fn start_with(objects: Vec<Value>) -> FakeApiServer {
        let fake = FakeApiServer::start().await;
        for r in ALL {
            fake.serve(r);
        }
        for o in objects {
            let r = ResourceType::of(&o).unwrap_or_else(|| {
                panic!("no fake collection for {} {}", o["apiVersion"], o["kind"])
            });
            fake.apply(r, o);
        }
        fake
    }

    /// [`FakeApiServer::start_with`] on a runtime of its own, for tests that have none (a binary
    /// run against it); lists come in pages of [`PAGE`].
    pub fn start_blocking(objects: Vec<Value>) -> FakeApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut fake = runtime.block_on(FakeApiServer::start_with(objects));
        fake.set_page_size(Some(PAGE));
        fake.runtime = Some(runtime);
        fake
    }

    /// Cuts lists in pages of `size` items with `continue` tokens, whatever `limit` the client
    /// asks for; `None`: whole lists.
    pub fn set_page_size(&self, size: Option<usize>) {
        self.shared.lock().page_size = size;
    }

    /// Every request's path and query so far, in order.
    pub fn uris(&self) -> Vec<String> {
        self.shared.lock().uris.clone()
    }

    /// Writes a kubeconfig whose current context is this server into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        kubeconfig_for(&self.url(), dir)
    }

    /// Starts with what the cluster cache watches served (empty): StorageClasses, Namespaces,
    /// Nodes, PersistentVolumes, PersistentVolumeClaims, CSIDrivers and CSINodes.
    pub async fn start_core() -> FakeApiServer {
        let fake = FakeApiServer::start().await;
        for r in [
            STORAGE_CLASSES,
            NAMESPACES,
            NODES,
            PERSISTENT_VOLUMES,
            PERSISTENT_VOLUME_CLAIMS,
            PODS,
            CSI_DRIVERS,
            CSI_NODES,
        ] {
            fake.serve(r);
        }
        fake
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml_for(&self.url())
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("server url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Serves `resource` (an empty collection until objects are applied).
    pub fn serve(&self, resource: ResourceType) {
        self.shared
            .lock()
            .collections
            .entry(resource.path)
            .or_insert(Collection {
                resource,
                objects: BTreeMap::new(),
            });
    }

    /// Creates or replaces an object (by namespace and name); returns its resourceVersion. Sets
    /// `apiVersion`, `kind`, `metadata.resourceVersion`, and when absent `metadata.uid` and
    /// `metadata.creationTimestamp` (kept from the previous version on a replace).
    pub fn apply(&self, resource: ResourceType, mut object: Value) -> u64 {
        let rv = {
            let mut inner = self.shared.lock();
            inner.rv += 1;
            let rv = inner.rv;
            let coll = inner
                .collections
                .get_mut(resource.path)
                .unwrap_or_else(|| panic!("{} is not served", resource.path));
            let (namespace, name) = key_of(&object, resource);
            let previous = coll.objects.get(&(namespace.clone(), name.clone()));
            let seq = previous.map(|(seq, _)| *seq);
            let previous = previous.map(|(_, o)| o);
            object["apiVersion"] = json!(resource.api_version);
            object["kind"] = json!(resource.kind);
            let meta = object["metadata"]
                .as_object_mut()
                .expect("object has metadata");
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if !meta.contains_key("uid") {
                meta.insert("uid".into(), json!(format!("uid-{namespace}-{name}")));
            }
            if !meta.contains_key("creationTimestamp") {
                let created = previous
                    .and_then(|p| p["metadata"].get("creationTimestamp").cloned())
                    .unwrap_or_else(|| json!(k8s_openapi::jiff::Timestamp::now().to_string()));
                meta.insert("creationTimestamp".into(), created);
            }
            let event = if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let seq = seq.unwrap_or(inner.created + 1);
            let coll = inner.collections.get_mut(resource.path).expect("served");
            coll.objects
                .insert((namespace.clone(), name), (seq, object.clone()));
            inner.created = inner.created.max(seq);
            inner.log.push(LogEntry {
                rv,
                collection: resource.path,
                namespace,
                event,
                object,
            });
            rv
        };
        self.shared.notify();
        rv
    }

    /// Deletes an object; returns whether it existed.
    pub fn delete(&self, resource: ResourceType, namespace: Option<&str>, name: &str) -> bool {
        let existed = {
            let mut inner = self.shared.lock();
            let key = (namespace.unwrap_or_default().to_owned(), name.to_owned());
            let Some((_, mut object)) = inner
                .collections
                .get_mut(resource.path)
                .and_then(|c| c.objects.remove(&key))
            else {
                return false;
            };
            inner.rv += 1;
            let rv = inner.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            inner.log.push(LogEntry {
                rv,
                collection: resource.path,
                namespace: key.0,
                event: "DELETED",
                object,
            });
            true
        };
        self.shared.notify();
        existed
    }

    /// The current objects of a collection.
    pub fn objects(&self, resource: ResourceType) -> Vec<Value> {
        let inner = self.shared.lock();
        inner
            .collections
            .get(resource.path)
            .map(|c| c.in_order().into_iter().map(|(_, o)| o.clone()).collect())
            .unwrap_or_default()
    }

    /// Ends every open watch stream cleanly (as a server-side timeout or a restart does); clients
    /// resume from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.shared.lock().drop_generation += 1;
        self.shared.notify();
    }

    /// Aborts every open watch connection mid-stream (the client sees a broken body).
    pub fn break_watches(&self) {
        self.shared.lock().break_generation += 1;
        self.shared.notify();
    }

    /// Forgets the event history: open watches receive a 410 Gone `ERROR` event and end, and
    /// watches resuming from any earlier resourceVersion get the same; clients must re-list.
    pub fn expire_history(&self) {
        {
            let mut inner = self.shared.lock();
            inner.rv += 1;
            inner.compacted = inner.rv;
            inner.log.clear();
        }
        self.shared.notify();
    }

    /// The next `times` requests of `verb` on `resource` fail with HTTP `code` and a Status body.
    pub fn fail(&self, resource: ResourceType, verb: Verb, code: u16, times: usize) {
        self.shared.lock().failures.push(Failure {
            collection: resource.path,
            verb,
            code,
            remaining: times,
        });
    }

    /// While down, new connections are closed at once, requests on open connections get 500 and
    /// open watches end: the client sees an unreachable API server.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.drop_watches();
        }
    }

    /// While silent, connections are accepted and kept but nothing is answered or streamed:
    /// clients notice only through their own read timeouts. Events made meanwhile are sent
    /// once it speaks again.
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::SeqCst);
        self.shared.notify();
    }

    /// How many requests of `verb` on `resource` arrived (failed ones included).
    pub fn requests(&self, resource: ResourceType, verb: Verb) -> usize {
        let inner = self.shared.lock();
        inner
            .requests
            .iter()
            .filter(|(p, v)| *p == resource.path && *v == verb)
            .count()
    }

    /// How many watch streams on `resource` are open.
    pub fn open_watches(&self, resource: ResourceType) -> usize {
        self.shared
            .lock()
            .open_watches
            .get(resource.path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig (no credentials) whose current context, `fake`, is `server`.
pub fn kubeconfig_yaml_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         current-context: fake\n"
    )
}

/// Writes [`kubeconfig_yaml_for`] `server` to `dir/kubeconfig`.
pub fn kubeconfig_for(server: &str, dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig_yaml_for(server)).expect("write kubeconfig");
    path
}

fn key_of(object: &Value, resource: ResourceType) -> (String, String) {
    let meta = &object["metadata"];
    let name = meta["name"]
        .as_str()
        .expect("object has metadata.name")
        .to_owned();
    let namespace = if resource.namespaced {
        meta["namespace"]
            .as_str()
            .expect("namespaced object has metadata.namespace")
            .to_owned()
    } else {
        String::new()
    };
    (namespace, name)
}

/// Drops connections while the server is down.
struct DownAware {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for DownAware {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((io, _)) if self.shared.down.load(Ordering::SeqCst) => drop(io),
                Ok(conn) => return conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message.into(), "reason": reason, "code": code})
}

fn status_response(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(status(code.as_u16(), reason, message))).into_response()
}

/// Where a request path points: a collection, maybe one namespace of it, maybe one object.
struct Target {
    collection: &'static str,
    resource: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(inner: &Inner, path: &str) -> Option<Target> {
    let (prefix, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("/api/v1".to_owned(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let (group, version, rest) = (parts.next()?, parts.next()?, parts.next()?);
        (format!("/apis/{group}/{version}"), rest)
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let find = |plural: &str| {
        let p = format!("{prefix}/{plural}");
        inner
            .collections
            .get_key_value(p.as_str())
            .map(|(k, c)| (*k, c.resource))
    };
    // `/namespaces/{ns}/{plural}[/{name}]` for a namespaced collection.
    if let ["namespaces", ns, plural, name @ ..] = segs.as_slice()
        && name.len() <= 1
        && let Some((collection, resource)) = find(plural).filter(|(_, r)| r.namespaced)
    {
        return Some(Target {
            collection,
            resource,
            namespace: Some((*ns).to_owned()),
            name: name.first().map(|n| (*n).to_owned()),
        });
    }
    match segs.as_slice() {
        [plural] => find(plural).map(|(collection, resource)| Target {
            collection,
            resource,
            namespace: None,
            name: None,
        }),
        [plural, name] => {
            find(plural)
                .filter(|(_, r)| !r.namespaced)
                .map(|(collection, resource)| Target {
                    collection,
                    resource,
                    namespace: None,
                    name: Some((*name).to_owned()),
                })
        }
        _ => None,
    }
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        let mut r = status_response(500, "InternalError", "the fake API server is down");
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    while shared.silent.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if method != Method::GET {
        return status_response(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported by the fake"),
        );
    }
    let query = query_map(query.as_deref());
    let mut inner = shared.lock();
    inner.uris.push(uri.to_string());
    let Some(target) = route(&inner, uri.path()) else {
        return status_response(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
        );
    };
    let verb = match (&target.name, query.get("watch").map(String::as_str)) {
        (Some(_), _) => Verb::Get,
        (None, Some("true" | "1")) => Verb::Watch,
        (None, _) => Verb::List,
    };
    inner.requests.push((target.collection, verb));
    if let Some(f) = inner
        .failures
        .iter_mut()
        .find(|f| f.collection == target.collection && f.verb == verb && f.remaining > 0)
    {
        f.remaining -= 1;
        let code = f.code;
        return status_response(code, "InternalError", format!("injected failure {code}"));
    }
    let coll = &inner.collections[target.collection];
    let in_scope = |ns: &str| target.namespace.as_deref().is_none_or(|want| want == ns);
    match verb {
        Verb::Get => {
            let key = (
                target.namespace.clone().unwrap_or_default(),
                target.name.clone().unwrap_or_default(),
            );
            match coll.objects.get(&key) {
                Some((_, o)) => axum::Json(o.clone()).into_response(),
                None => status_response(
                    404,
                    "NotFound",
                    format!(
                        "{} {:?} not found",
                        target.resource.kind.to_lowercase(),
                        key.1
                    ),
                ),
            }
        }
        Verb::List => {
            // References first: only the page served is cloned (lists of 100,000 objects).
            let items: Vec<&Value> = coll
                .in_order()
                .into_iter()
                .filter(|(ns, _)| in_scope(ns))
                .map(|(_, o)| o)
                .collect();
            // The continue token is the offset of the next page.
            let offset: usize = query
                .get("continue")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let end = inner
                .page_size
                .map_or(items.len(), |n| (offset + n).min(items.len()));
            let mut metadata = json!({"resourceVersion": inner.rv.to_string()});
            if end < items.len() {
                metadata["continue"] = json!(end.to_string());
            }
            axum::Json(json!({
                "apiVersion": target.resource.api_version,
                "kind": format!("{}List", target.resource.kind),
                "metadata": metadata,
                "items": items.get(offset..end).unwrap_or_default().iter().map(|o| (*o).clone()).collect::<Vec<Value>>(),
            }))
            .into_response()
        }
        Verb::Watch => {
            let from = query
                .get("resourceVersion")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut pending = VecDeque::new();
            let mut ended = false;
            if from == 0 {
                // Like the real server: synthetic ADDED events for the current state first.
                for (ns, o) in coll.in_order() {
                    if in_scope(ns) {
                        pending.push_back(line("ADDED", o));
                    }
                }
            } else if from < inner.compacted {
                pending.push_back(gone(from, inner.compacted));
                ended = true;
            }
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1800);
            *inner.open_watches.entry(target.collection).or_default() += 1;
            let cursor = Cursor {
                rx: shared.changed.subscribe(),
                shared: shared.clone(),
                collection: target.collection,
                namespace: target.namespace,
                from: if from == 0 { inner.rv } else { from },
                drop_generation: inner.drop_generation,
                break_generation: inner.break_generation,
                compacted: inner.compacted,
                deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
                pending,
                ended,
            };
            drop(inner);
            let stream = futures::stream::unfold(cursor, Cursor::next);
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

fn line(event: &str, object: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&json!({"type": event, "object": object})).unwrap();
    s.push(b'\n');
    Bytes::from(s)
}

fn gone(from: u64, compacted: u64) -> Bytes {
    line(
        "ERROR",
        &status(
            410,
            "Expired",
            format!("too old resource version: {from} ({compacted})"),
        ),
    )
}

/// One open watch: replays the log after `from`, then follows it.
struct Cursor {
    rx: watch::Receiver<u64>,
    shared: Arc<Shared>,
    collection: &'static str,
    namespace: Option<String>,
    from: u64,
    drop_generation: u64,
    break_generation: u64,
    compacted: u64,
    deadline: tokio::time::Instant,
    pending: VecDeque<Bytes>,
    ended: bool,
}

impl Cursor {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Cursor)> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some((Ok(b), self));
            }
            if self.ended {
                return self.close(None);
            }
            // Mark the change counter seen before reading, so a change after the read wakes us.
            self.rx.borrow_and_update();
            if self.shared.silent.load(Ordering::SeqCst) {
                let _ = self.rx.changed().await;
                continue;
            }
            {
                let inner = self.shared.lock();
                if inner.break_generation != self.break_generation {
                    drop(inner);
                    return self.close(Some(std::io::Error::other("watch broken by the fake")));
                }
                if inner.drop_generation != self.drop_generation
                    || self.shared.down.load(Ordering::SeqCst)
                {
                    drop(inner);
                    return self.close(None);
                }
                if inner.compacted != self.compacted {
                    self.pending.push_back(gone(self.from, inner.compacted));
                    self.ended = true;
                    continue;
                }
                for e in inner.log.iter().filter(|e| {
                    e.rv > self.from
                        && e.collection == self.collection
                        && self.namespace.as_deref().is_none_or(|ns| ns == e.namespace)
                }) {
                    self.pending.push_back(line(e.event, &e.object));
                }
                self.from = self.from.max(inner.rv);
            }
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                _ = self.rx.changed() => {}
                _ = tokio::time::sleep_until(self.deadline) => return self.close(None),
            }
        }
    }

    /// Ends the stream; `Some(error)` aborts the connection instead of ending the body cleanly.
    fn close(
        mut self,
        error: Option<std::io::Error>,
    ) -> Option<(Result<Bytes, std::io::Error>, Cursor)> {
        let error = error?;
        self.ended = true;
        self.pending.clear();
        Some((Err(error), self))
    }
}

impl Drop for Cursor {
    /// Runs when the stream ends or the client goes away.
    fn drop(&mut self) {
        if let Some(n) = self.shared.lock().open_watches.get_mut(self.collection) {
            *n = n.saturating_sub(1);
        }
    }
}
