//! The cluster cache against an in-process fake API server, through the real kube-rs client and
//! kube-runtime watchers: sync, runtime changes, dropped and expired watches, an API server that
//! is down at start, the DefaultStorageClass interplay, and the binding rules (willBind,
//! volumeName, nodeNameWaitForFirstConsumer) judging against the cached PVs and claims.

mod common;
mod support;

use std::sync::{Arc, Once};
use std::time::Duration;

use common::binary::Serve;
use json_patch::PatchOperation;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use storage_policy_webhook::cluster::{self, ClusterMetrics, ClusterStatus, ConfigEnv, Selection};
use storage_policy_webhook::policy::{self, Action, Object, Operation, Policy, Request, Subject};
use storage_policy_webhook::state::SharedState;
use support::fake_apiserver::{
    CSI_DRIVERS, FakeApiServer, NAMESPACES, NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES,
    STORAGE_CLASSES, Verb,
};
use tokio::task::JoinHandle;

/// Generous: the first retry after an error waits about a second, the next ones longer.
const TIMEOUT: Duration = Duration::from_secs(30);

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

/// Polls `check` until it holds; panics naming `what` after [`TIMEOUT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn storage_class(name: &str, provisioner: &str, default: bool, created: &str) -> Value {
    let mut annotations = json!({});
    if default {
        annotations["storageclass.kubernetes.io/is-default-class"] = json!("true");
    }
    json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
           "provisioner": provisioner})
}

fn namespace(name: &str, default_class: Option<&str>, mode: Option<&str>) -> Value {
    let mut v = json!({"metadata": {"name": name, "annotations": {}, "labels": {"kubernetes.io/metadata.name": name}}});
    if let Some(c) = default_class {
        v["metadata"]["annotations"]["storage-policy.io/default-storage-class"] = json!(c);
    }
    if let Some(m) = mode {
        v["metadata"]["labels"]["storage-policy.io/mode"] = json!(m);
    }
    v
}

fn node(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

struct Harness {
    fake: FakeApiServer,
    state: Arc<SharedState>,
    status: Arc<ClusterStatus>,
    registry: Registry,
    task: JoinHandle<()>,
}

impl Harness {
    /// Runs the cluster cache against `fake` with `policy` (YAML).
    fn run(fake: FakeApiServer, policy: &str) -> Harness {
        let client = fake.client();
        Harness::run_with_client(fake, client, policy)
    }

    fn run_with_client(fake: FakeApiServer, client: kube::Client, policy: &str) -> Harness {
        init();
        let state = Arc::new(SharedState::new(
            Policy::parse(policy, None, false).unwrap(),
        ));
        let status = Arc::new(ClusterStatus::new());
        let mut registry = Registry::default();
        let metrics = ClusterMetrics::register(&mut registry);
        let task = tokio::spawn(cluster::run(client, state.clone(), status.clone(), metrics));
        Harness {
            fake,
            state,
            status,
            registry,
            task,
        }
    }

    async fn synced(&self) {
        tokio::time::timeout(TIMEOUT, self.status.wait_synced())
            .await
            .expect("cluster cache synced in time");
    }

    /// What the webhook would do to a PVC without a class created in `namespace` now.
    fn decide(&self, namespace: &str) -> (Option<String>, Vec<Action>) {
        let snapshot = self.state.snapshot();
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
        let req = Request {
            operation: Operation::Create,
            namespace: Some(namespace),
            username: "alice",
            subject: Subject {
                group: "",
                kind: "PersistentVolumeClaim",
                name: "data",
            },
            object: Some(Object::Pvc(&pvc)),
            old_object: None,
        };
        let d = policy::mutate(&snapshot.policy, &snapshot.catalog, &req);
        let class = d.patch.iter().find_map(|op| match op {
            PatchOperation::Add(add) => add
                .value
                .get("storageClassName")
                .or(Some(&add.value))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        });
        (class, d.findings.iter().map(|f| f.action).collect())
    }

    /// The `/validate` warnings for a PVC naming `class` created now, and whether the catalog
    /// held any class then (one snapshot: no race with the watches).
    fn validate_warnings(&self, class: &str) -> (Vec<String>, bool) {
        let snapshot = self.state.snapshot();
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
        let req = Request {
            operation: Operation::Create,
            namespace: Some("default"),
            username: "alice",
            subject: Subject {
                group: "",
                kind: "PersistentVolumeClaim",
                name: "data",
            },
            object: Some(Object::Pvc(&pvc)),
            old_object: None,
        };
        let d = policy::validate(&snapshot.policy, &snapshot.catalog, &req);
        assert!(d.allowed(), "never a denial");
        (d.warnings, !snapshot.catalog.is_empty())
    }

    fn defaulted(&self, namespace: &str) -> Option<String> {
        self.decide(namespace).0
    }

    /// The value of one series in the Prometheus text exposition (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cluster with two default classes (the newer wins), one namespace, two nodes.
/// The CSI drivers the classes of these tests name, installed (missingProvisioner is quiet).
fn csi_drivers_installed(fake: &FakeApiServer) {
    for name in ["ebs.csi.aws.com", "nfs.csi.k8s.io"] {
        fake.apply(
            CSI_DRIVERS,
            serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                               "metadata": {"name": name}}),
        );
    }
}

async fn populated() -> FakeApiServer {
    let fake = FakeApiServer::start_core().await;
    csi_drivers_installed(&fake);
    fake.apply(
        STORAGE_CLASSES,
        storage_class("standard", "ebs.csi.aws.com", true, "2024-01-01T00:00:00Z"),
    );
    fake.apply(
        STORAGE_CLASSES,
        storage_class("fast", "ebs.csi.aws.com", true, "2024-06-01T00:00:00Z"),
    );
    fake.apply(
        STORAGE_CLASSES,
        storage_class("nfs", "nfs.csi.k8s.io", false, "2024-01-01T00:00:00Z"),
    );
    fake.apply(NAMESPACES, namespace("default", None, None));
    fake.apply(NODES, node("node-1"));
    fake.apply(NODES, node("node-2"));
    fake
}

#[tokio::test]
async fn default_class_comes_from_live_classes() {
    let h = Harness::run(populated().await, "");
    assert_eq!(
        h.state.snapshot().catalog.node_exists("node-1"),
        None,
        "nodes unknown before sync"
    );
    h.synced().await;
    let snapshot = h.state.snapshot();
    assert_eq!(
        snapshot.catalog.default_class(),
        Some("fast"),
        "newest default wins"
    );
    assert_eq!(snapshot.catalog.len(), 3);
    assert!(snapshot.catalog.class("nfs").unwrap().live);
    assert_eq!(snapshot.catalog.node_exists("node-1"), Some(true));
    assert_eq!(snapshot.catalog.node_exists("node-9"), Some(false));
    assert_eq!(h.defaulted("default").as_deref(), Some("fast"));
    assert_eq!(h.metric("cluster_synced"), 1.0);
    assert_eq!(
        h.metric("cluster_cached_objects{resource=\"storageclasses\"}"),
        3.0
    );
    assert_eq!(h.metric("cluster_cached_objects{resource=\"nodes\"}"), 2.0);
    assert_eq!(
        h.metric("cluster_cached_objects{resource=\"namespaces\"}"),
        0.0,
        "a namespace without settings is not kept"
    );
    assert_eq!(
        h.metric("cluster_watch_events_total{resource=\"storageclasses\",event=\"list\"}"),
        3.0
    );
}

#[tokio::test]
async fn new_default_class_takes_effect_at_runtime() {
    let fake = FakeApiServer::start_core().await;
    fake.apply(
        STORAGE_CLASSES,
        storage_class("nfs", "nfs.csi.k8s.io", false, "2024-01-01T00:00:00Z"),
    );
    let h = Harness::run(fake, "");
    h.synced().await;
    assert_eq!(
        h.defaulted("apps"),
        None,
        "no default class: the claim is left alone"
    );

    // A default appears; a newer default takes over; removing its annotation hands the default
    // back.
    for (class, default, created, what, expected) in [
        (
            "gp3",
            true,
            "2025-01-01T00:00:00Z",
            "gp3 becomes the default",
            "gp3",
        ),
        ("gp4", true, "2025-06-01T00:00:00Z", "gp4 takes over", "gp4"),
        ("gp4", false, "2025-06-01T00:00:00Z", "gp3 again", "gp3"),
    ] {
        h.fake.apply(
            STORAGE_CLASSES,
            storage_class(class, "ebs.csi.aws.com", default, created),
        );
        eventually(what, || h.defaulted("apps").as_deref() == Some(expected)).await;
    }
    h.fake.delete(STORAGE_CLASSES, None, "gp3");
    eventually("no default after the delete", || {
        h.defaulted("apps").is_none()
    })
    .await;
    assert!(
        h.metric("cluster_watch_events_total{resource=\"storageclasses\",event=\"apply\"}") >= 3.0
    );
    assert_eq!(
        h.metric("cluster_watch_events_total{resource=\"storageclasses\",event=\"delete\"}"),
        1.0
    );
}

#[tokio::test]
async fn namespace_annotation_and_label_take_effect() {
    let fake = populated().await;
    fake.apply(NAMESPACES, namespace("analytics", Some("nfs"), None));
    let h = Harness::run(
        fake,
        "rules:\n  defaultStorageClass:\n    namespaces: {team-b: standard}\n",
    );
    h.synced().await;
    assert_eq!(
        h.defaulted("analytics").as_deref(),
        Some("nfs"),
        "namespace annotation"
    );
    assert_eq!(
        h.defaulted("team-b").as_deref(),
        Some("standard"),
        "policy namespaces entry"
    );
    assert_eq!(
        h.defaulted("default").as_deref(),
        Some("fast"),
        "cluster default"
    );

    // The annotation ranks above the policy file's entry for the same namespace.
    h.fake
        .apply(NAMESPACES, namespace("team-b", Some("nfs"), None));
    eventually("team-b annotation wins", || {
        h.defaulted("team-b").as_deref() == Some("nfs")
    })
    .await;

    // The mode label turns the rule to audit for that namespace only.
    h.fake.apply(
        NAMESPACES,
        namespace("analytics", Some("nfs"), Some("audit")),
    );
    eventually("analytics audited", || {
        h.decide("analytics") == (None, vec![Action::Audited])
    })
    .await;
    assert_eq!(h.defaulted("team-b").as_deref(), Some("nfs"));
    h.fake
        .apply(NAMESPACES, namespace("analytics", None, Some("off")));
    eventually("analytics off", || h.decide("analytics") == (None, vec![])).await;

    // Dropping both brings back the cluster default.
    h.fake.apply(NAMESPACES, namespace("analytics", None, None));
    eventually("analytics back to the cluster default", || {
        h.defaulted("analytics").as_deref() == Some("fast")
    })
    .await;
    h.fake.delete(NAMESPACES, None, "team-b");
    eventually("team-b back to the policy entry", || {
        h.defaulted("team-b").as_deref() == Some("standard")
    })
    .await;
    assert_eq!(
        h.metric("cluster_cached_objects{resource=\"namespaces\"}"),
        0.0
    );
}

#[tokio::test]
async fn dropped_watch_keeps_state_and_resumes() {
    let h = Harness::run(populated().await, "");
    h.synced().await;
    eventually("watches open", || h.fake.open_watches(STORAGE_CLASSES) == 1).await;

    // Watches end cleanly and cannot be re-opened for a while: the last state keeps serving.
    h.fake.fail(STORAGE_CLASSES, Verb::Watch, 500, 2);
    h.fake.drop_watches();
    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("newest", "ebs.csi.aws.com", true, "2025-01-01T00:00:00Z"),
    );
    eventually("two failed re-watches", || {
        h.fake.requests(STORAGE_CLASSES, Verb::Watch) >= 3
    })
    .await;
    assert_eq!(
        h.defaulted("default").as_deref(),
        Some("fast"),
        "last known state kept while disconnected"
    );
    assert!(
        h.status.is_synced(),
        "a dropped watch does not make the cache unready"
    );

    // Resumed from the last resourceVersion: the change made meanwhile arrives, without a re-list.
    eventually("change made while disconnected arrives", || {
        h.defaulted("default").as_deref() == Some("newest")
    })
    .await;
    assert_eq!(
        h.fake.requests(STORAGE_CLASSES, Verb::List),
        1,
        "resumed, not re-listed"
    );
    assert_eq!(
        h.metric("cluster_watch_errors_total{resource=\"storageclasses\"}"),
        2.0
    );

    // A connection broken mid-stream is resumed the same way.
    h.fake.break_watches();
    h.fake.delete(NODES, None, "node-2");
    eventually("node deletion arrives after a broken watch", || {
        h.state.snapshot().catalog.node_exists("node-2") == Some(false)
    })
    .await;
    assert_eq!(
        h.fake.requests(NODES, Verb::List),
        1,
        "resumed, not re-listed"
    );
    assert_eq!(h.state.snapshot().catalog.node_exists("node-1"), Some(true));
}

#[tokio::test]
async fn gone_watch_relists_and_replaces_state_once_complete() {
    let h = Harness::run(populated().await, "");
    h.synced().await;
    eventually("watches open", || h.fake.open_watches(STORAGE_CLASSES) == 1).await;

    // History expires (410 Gone) and the first two re-lists fail.
    h.fake.fail(STORAGE_CLASSES, Verb::List, 500, 2);
    h.fake.expire_history();
    h.fake.delete(STORAGE_CLASSES, None, "fast");
    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("gp3", "ebs.csi.aws.com", true, "2025-01-01T00:00:00Z"),
    );
    eventually("a failed re-list", || {
        h.fake.requests(STORAGE_CLASSES, Verb::List) >= 2
    })
    .await;
    let snapshot = h.state.snapshot();
    assert_eq!(
        snapshot.catalog.default_class(),
        Some("fast"),
        "never an empty or partial cache"
    );
    assert_eq!(snapshot.catalog.len(), 3);

    eventually("re-list replaces the cache", || {
        let s = h.state.snapshot();
        s.catalog.default_class() == Some("gp3") && s.catalog.class("fast").is_none()
    })
    .await;
    assert_eq!(
        h.fake.requests(STORAGE_CLASSES, Verb::List),
        4,
        "initial, 2 failed, 1 good"
    );
    assert_eq!(
        h.metric("cluster_watch_relists_total{resource=\"storageclasses\"}"),
        3.0
    );
    assert!(
        h.metric("cluster_watch_errors_total{resource=\"storageclasses\"}") >= 3.0,
        "410 and 2 lists"
    );
    assert!(h.status.is_synced());

    // And it keeps watching after the re-list.
    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("gp4", "ebs.csi.aws.com", true, "2025-06-01T00:00:00Z"),
    );
    eventually("watching again", || {
        h.defaulted("x").as_deref() == Some("gp4")
    })
    .await;
}

#[tokio::test]
async fn silent_api_server_keeps_the_last_state_and_resyncs_when_it_speaks() {
    let fake = populated().await;
    // A short read timeout stands in for the client's default (295 s): a watch that sends
    // nothing for that long is given up and retried.
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.read_timeout = Some(Duration::from_millis(500));
    let client = kube::Client::try_from(config).unwrap();
    let h = Harness::run_with_client(fake, client, "");
    h.synced().await;
    eventually("watches open", || h.fake.open_watches(STORAGE_CLASSES) == 1).await;

    // Silent: watches stay open but stream nothing; lists and re-watches get no answer.
    h.fake.set_silent(true);
    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("newest", "ebs.csi.aws.com", true, "2025-01-01T00:00:00Z"),
    );
    let silent = tokio::time::Instant::now();
    eventually("the silent watch times out and is retried", || {
        h.metric("cluster_watch_errors_total{resource=\"storageclasses\"}") >= 2.0
    })
    .await;
    // Several read timeouts later: still the last known state, still ready.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.defaulted("default").as_deref(),
        Some("fast"),
        "last known state kept while the API server says nothing"
    );
    assert!(
        h.status.is_synced(),
        "silence does not make the cache unready"
    );
    let errors = h.metric("cluster_watch_errors_total{resource=\"storageclasses\"}");

    // It speaks again: the change made meanwhile arrives.
    h.fake.set_silent(false);
    eventually("resynced after the silence", || {
        h.defaulted("default").as_deref() == Some("newest")
    })
    .await;
    eprintln!(
        "silent API server for {:?}: {errors} watch errors (read timeouts) on storageclasses, last state kept, resynced after",
        silent.elapsed()
    );
    assert_eq!(h.state.snapshot().catalog.node_exists("node-1"), Some(true));
}

#[tokio::test]
async fn api_server_down_at_start_then_synced_once_up() {
    let fake = populated().await;
    fake.set_down(true);
    let h = Harness::run(fake, "");
    for resource in ["storageclasses", "namespaces", "nodes"] {
        let series = format!("cluster_watch_errors_total{{resource=\"{resource}\"}}");
        eventually("a failed attempt per resource", || h.metric(&series) >= 1.0).await;
    }
    assert!(
        !h.status.is_synced(),
        "not ready while the API server is unreachable"
    );
    assert_eq!(h.metric("cluster_synced"), 0.0);
    assert_eq!(h.state.snapshot().catalog.len(), 0, "static policy only");
    assert_eq!(h.state.snapshot().catalog.node_exists("node-1"), None);

    h.fake.set_down(false);
    h.synced().await;
    assert_eq!(h.state.snapshot().catalog.default_class(), Some("fast"));
    assert_eq!(h.metric("cluster_synced"), 1.0);
}

#[tokio::test]
async fn not_synced_until_every_resource_is_listed() {
    let fake = populated().await;
    fake.fail(NODES, Verb::List, 500, 1);
    let h = Harness::run(fake, "");
    eventually("classes listed", || {
        h.metric("cluster_cached_objects{resource=\"storageclasses\"}") == 3.0
    })
    .await;
    eventually("node list failed", || {
        h.metric("cluster_watch_errors_total{resource=\"nodes\"}") == 1.0
    })
    .await;
    assert!(!h.status.is_synced(), "nodes not listed yet");
    assert_eq!(
        h.state.snapshot().catalog.default_class(),
        Some("fast"),
        "classes already apply"
    );
    h.synced().await;
    assert_eq!(h.state.snapshot().catalog.node_exists("node-2"), Some(true));
}

#[tokio::test]
async fn unknown_class_is_warned_once_classes_are_listed_and_not_before() {
    let fake = populated().await;
    // Three failed lists: the backoff keeps the classes unlisted for a couple of seconds.
    fake.fail(STORAGE_CLASSES, Verb::List, 500, 3);
    let h = Harness::run(fake, "");
    eventually("a failed class list", || {
        h.metric("cluster_watch_errors_total{resource=\"storageclasses\"}") >= 1.0
    })
    .await;
    let (warnings, knows_classes) = h.validate_warnings("nfss");
    assert!(!knows_classes, "classes not listed yet");
    assert!(warnings.is_empty(), "silent before the list: {warnings:?}");

    h.synced().await;
    let (warnings, _) = h.validate_warnings("nfss");
    assert_eq!(
        warnings,
        [
            r#"spec.storageClassName: StorageClass "nfss" not found: the claim stays Pending until it or a PersistentVolume of that class exists; closest: nfs"#
        ]
    );
    let w = h.validate_warnings("nfs").0;
    assert!(w.is_empty(), "{w:?}");
    // `""` is static binding: never an unknown class (willBind may say no PV serves it).
    let (static_binding, _) = h.validate_warnings("");
    assert!(
        static_binding.iter().all(|w| !w.contains("not found")),
        "static binding: {static_binding:?}"
    );

    // The class arrives a moment later (same `kubectl apply`): known as soon as its event is.
    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("nfss", "nfs.csi.k8s.io", false, "2024-07-01T00:00:00Z"),
    );
    eventually("the new class known", || {
        h.validate_warnings("nfss").0.is_empty()
    })
    .await;
}

#[tokio::test]
async fn interplay_warning_follows_the_live_default() {
    let fake = FakeApiServer::start_core().await;
    fake.apply(
        STORAGE_CLASSES,
        storage_class("nfs", "nfs.csi.k8s.io", false, "2024-01-01T00:00:00Z"),
    );
    let h = Harness::run(
        fake,
        "rules:\n  defaultStorageClass:\n    byAccessMode: {ReadWriteMany: nfs}\n",
    );
    h.synced().await;
    let warning = || {
        let s = h.state.snapshot();
        cluster::interplay_warning(&s.policy, &s.catalog)
    };
    assert_eq!(warning(), None);
    assert_eq!(h.metric("cluster_default_class_interplay"), 0.0);

    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("gp3", "ebs.csi.aws.com", true, "2025-01-01T00:00:00Z"),
    );
    eventually("interplay gauge set", || {
        h.metric("cluster_default_class_interplay") == 1.0
    })
    .await;
    let w = warning().expect("warning");
    assert!(
        w.contains("StorageClass \"gp3\" is annotated default"),
        "{w}"
    );
    assert!(w.contains("access modes ReadWriteMany"), "{w}");

    h.fake.apply(
        STORAGE_CLASSES,
        storage_class("gp3", "ebs.csi.aws.com", false, "2025-01-01T00:00:00Z"),
    );
    eventually("interplay gauge cleared", || {
        h.metric("cluster_default_class_interplay") == 0.0
    })
    .await;
    assert_eq!(warning(), None);
}

#[tokio::test]
async fn connects_through_a_kubeconfig() {
    init();
    let fake = populated().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, fake.kubeconfig_yaml()).unwrap();
    let env = ConfigEnv {
        kubeconfig: Some(path.into_os_string()),
        ..ConfigEnv::default()
    };
    let client = cluster::connect_with(&env)
        .await
        .unwrap()
        .expect("a client");
    let h = Harness::run_with_client(fake, client, "");
    h.synced().await;
    assert_eq!(h.state.snapshot().catalog.default_class(), Some("fast"));
}

#[tokio::test]
async fn connects_through_the_kubeconfig_flag_with_the_chosen_context() {
    init();
    let fake = populated().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    // The current context points nowhere; the context "fake" is the fake API server.
    let kubeconfig = fake
        .kubeconfig_yaml()
        .replace("current-context: fake", "current-context: elsewhere")
        .replace(
            "contexts:\n",
            "contexts:\n- name: elsewhere\n  context:\n    cluster: nowhere\n    user: fake\n",
        );
    std::fs::write(&path, kubeconfig).unwrap();
    let env = ConfigEnv {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        ..ConfigEnv::default()
    };
    let selection = |context: &str| Selection {
        kubeconfig: Some(path.clone()),
        context: Some(context.to_owned()),
    };
    let err = cluster::connect_to(&env, &selection("nope"))
        .await
        .err()
        .expect("an unknown context is an error")
        .to_string();
    assert!(err.contains("failed to load kubeconfig"), "{err}");
    let client = cluster::connect_to(&env, &selection("fake"))
        .await
        .unwrap()
        .expect("a client");
    let h = Harness::run_with_client(fake, client, "");
    h.synced().await;
    assert_eq!(h.state.snapshot().catalog.default_class(), Some("fast"));
}

// --- The binding rules against cached PersistentVolumes and claims (issue 14) ---

fn local_pv(name: &str, size: &str, claim_ref: Option<(&str, &str)>) -> Value {
    let mut v = json!({"metadata": {"name": name}, "spec": {"storageClassName": "local-storage",
        "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/x"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}},
        "status": {"phase": "Available"}});
    if let Some((ns, n)) = claim_ref {
        v["spec"]["claimRef"] = json!({"namespace": ns, "name": n});
    }
    v
}

fn claim(name: &str, class: &str, phase: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "5Gi"}}},
        "status": {"phase": phase}})
}

/// A cluster with a static WaitForFirstConsumer class, a dynamic one, and no PVs yet.
async fn static_cluster() -> FakeApiServer {
    let fake = FakeApiServer::start_core().await;
    csi_drivers_installed(&fake);
    let mut local = storage_class(
        "local-storage",
        "kubernetes.io/no-provisioner",
        false,
        "2024-01-01T00:00:00Z",
    );
    local["volumeBindingMode"] = json!("WaitForFirstConsumer");
    fake.apply(STORAGE_CLASSES, local);
    fake.apply(
        STORAGE_CLASSES,
        storage_class("gp3", "ebs.csi.aws.com", false, "2024-01-01T00:00:00Z"),
    );
    fake.apply(NAMESPACES, namespace("default", None, None));
    fake.apply(NODES, node("node-1"));
    fake
}

impl Harness {
    /// What `/validate` answers for `object` (a PVC, StatefulSet or Pod) created in `default`.
    fn validate(&self, object: Value) -> policy::Decision {
        let snapshot = self.state.snapshot();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let (pvc, sts, pod): (
            Option<PersistentVolumeClaim>,
            Option<StatefulSet>,
            Option<Pod>,
        ) = match object["kind"].as_str() {
            Some("StatefulSet") => (None, serde_json::from_value(object).ok(), None),
            Some("Pod") => (None, None, serde_json::from_value(object).ok()),
            _ => (serde_json::from_value(object).ok(), None, None),
        };
        let (group, kind, obj) = match (&pvc, &sts, &pod) {
            (Some(c), _, _) => ("", "PersistentVolumeClaim", Object::Pvc(c)),
            (_, Some(s), _) => ("apps", "StatefulSet", Object::StatefulSet(s)),
            (_, _, Some(p)) => (
                "",
                "Pod",
                Object::PodSpec {
                    spec: p.spec.as_ref(),
                    path: "spec",
                    runs: Default::default(),
                },
            ),
            _ => panic!("undecodable object"),
        };
        let req = Request {
            operation: Operation::Create,
            namespace: Some("default"),
            username: "alice",
            subject: Subject {
                group,
                kind,
                name: &name,
            },
            object: Some(obj),
            old_object: None,
        };
        policy::validate(&snapshot.policy, &snapshot.catalog, &req)
    }
}

fn pvc_object(name: &str, class: &str, size: &str) -> Value {
    json!({"kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": size}}}})
}

fn statefulset(replicas: i32) -> Value {
    json!({"kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"storageClassName": "local-storage",
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}]}})
}

fn pinned_pod(claim: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": "pinned", "namespace": "default"}, "spec": {
        "nodeName": "node-1", "containers": [{"name": "app", "image": "busybox"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}})
}

#[tokio::test]
async fn not_ready_until_volumes_and_claims_are_listed_and_they_are_counted() {
    let fake = static_cluster().await;
    fake.apply(PERSISTENT_VOLUMES, local_pv("pv-a", "10Gi", None));
    fake.apply(
        PERSISTENT_VOLUME_CLAIMS,
        claim("old", "local-storage", "Bound"),
    );
    fake.fail(PERSISTENT_VOLUME_CLAIMS, Verb::List, 500, 1);
    let h = Harness::run(fake, "");
    eventually("PVs listed", || {
        h.metric("cluster_cached_objects{resource=\"persistentvolumes\"}") == 1.0
    })
    .await;
    eventually("claim list failed", || {
        h.metric("cluster_watch_errors_total{resource=\"persistentvolumeclaims\"}") == 1.0
    })
    .await;
    assert!(!h.status.is_synced(), "claims not listed yet");
    assert!(
        h.state.snapshot().catalog.volumes().is_none(),
        "PVs without claims are not judged"
    );
    h.synced().await;
    assert_eq!(
        h.metric("cluster_cached_objects{resource=\"persistentvolumeclaims\"}"),
        1.0
    );
    let snapshot = h.state.snapshot();
    let index = snapshot.catalog.volumes().expect("known once listed");
    assert!(index.claim("default", "old").unwrap().is_bound());
    assert_eq!(index.pv("pv-a").unwrap().capacity, Some(10 << 30));
}

#[tokio::test]
async fn a_claim_no_volume_serves_is_warned_until_one_appears() {
    let fake = static_cluster().await;
    fake.apply(PERSISTENT_VOLUMES, local_pv("small", "1Gi", None));
    let h = Harness::run(fake, "");
    h.synced().await;
    let d = h.validate(pvc_object("data", "local-storage", "5Gi"));
    assert!(d.allowed());
    assert_eq!(
        d.warnings,
        [
            r#"claim "data" will stay Pending: no Available PersistentVolume of class local-storage has 5Gi"#
        ]
    );
    // A free PV that fits, made a minute later: the warning goes.
    h.fake
        .apply(PERSISTENT_VOLUMES, local_pv("big", "5Gi", None));
    eventually("the new PV is cached", || {
        h.validate(pvc_object("data", "local-storage", "5Gi"))
            .warnings
            .is_empty()
    })
    .await;
    // Dynamic classes are never warned about.
    assert!(
        h.validate(pvc_object("data", "gp3", "500Gi"))
            .warnings
            .is_empty()
    );
}

#[tokio::test]
async fn a_volume_reserved_for_a_claim_serves_it_and_no_other() {
    let fake = static_cluster().await;
    fake.apply(
        PERSISTENT_VOLUMES,
        local_pv("reserved", "10Gi", Some(("default", "mine"))),
    );
    let h = Harness::run(fake, "");
    h.synced().await;
    assert!(
        h.validate(pvc_object("mine", "local-storage", "5Gi"))
            .warnings
            .is_empty()
    );
    assert_eq!(
        h.validate(pvc_object("theirs", "local-storage", "5Gi"))
            .warnings
            .len(),
        1
    );
    // spec.volumeName naming it from another claim: the controller's FailedBinding reason.
    let mut other = pvc_object("theirs", "local-storage", "5Gi");
    other["spec"]["volumeName"] = json!("reserved");
    let d = h.validate(other);
    assert_eq!(
        d.warnings,
        [
            r#"claim "theirs" will stay Pending: volume "reserved" already bound to a different claim. (it is reserved for default/mine)"#
        ]
    );
    let mut missing = pvc_object("x", "local-storage", "5Gi");
    missing["spec"]["volumeName"] = json!("nope");
    assert!(
        h.validate(missing).warnings[0]
            .contains(r#"PersistentVolume "nope", which does not exist"#)
    );
    let mut small = pvc_object("mine", "local-storage", "50Gi");
    small["spec"]["volumeName"] = json!("reserved");
    assert!(
        h.validate(small).warnings.is_empty(),
        "pre-bound to this claim: binds"
    );
}

#[tokio::test]
async fn statefulset_claims_are_counted_against_the_volumes() {
    let fake = static_cluster().await;
    fake.apply(PERSISTENT_VOLUMES, local_pv("pv-0", "5Gi", None));
    fake.apply(PERSISTENT_VOLUMES, local_pv("pv-1", "5Gi", None));
    let h = Harness::run(fake, "");
    h.synced().await;
    let d = h.validate(statefulset(3));
    assert_eq!(
        d.warnings,
        [
            r#"StatefulSet "web": claim www-web-2 will stay Pending: no Available PersistentVolume of class local-storage has 5Gi (2 of 3 served)"#
        ]
    );
    // The third claim already exists (bound): every volume is there.
    h.fake.apply(
        PERSISTENT_VOLUME_CLAIMS,
        claim("www-web-2", "local-storage", "Bound"),
    );
    eventually("the claim is cached", || {
        h.validate(statefulset(3)).warnings.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_pinned_pod_is_refused_only_while_its_claim_waits_for_the_scheduler() {
    let fake = static_cluster().await;
    fake.apply(
        PERSISTENT_VOLUME_CLAIMS,
        claim("waiting", "local-storage", "Pending"),
    );
    fake.apply(
        PERSISTENT_VOLUME_CLAIMS,
        claim("bound", "local-storage", "Bound"),
    );
    fake.apply(PERSISTENT_VOLUME_CLAIMS, claim("dynamic", "gp3", "Pending"));
    let h = Harness::run(fake, "");
    h.synced().await;
    let d = h.validate(pinned_pod("waiting"));
    let denial = d.denial.expect("denied");
    assert_eq!(
        denial.message(),
        r#"Pod "pinned" is invalid: spec.nodeName: Forbidden: claim "waiting" is not bound and has class "local-storage" with volumeBindingMode WaitForFirstConsumer, which only the scheduler binds; nodeName bypasses the scheduler and the claim stays Pending"#
    );
    assert!(h.validate(pinned_pod("bound")).allowed());
    assert!(h.validate(pinned_pod("dynamic")).allowed());
    assert!(h.validate(pinned_pod("unknown")).allowed());
    // Bound a moment later: the same pod is admitted.
    h.fake.apply(
        PERSISTENT_VOLUME_CLAIMS,
        claim("waiting", "local-storage", "Bound"),
    );
    eventually("the bound claim is cached", || {
        h.validate(pinned_pod("waiting")).allowed()
    })
    .await;
}

// --- Memory of the PV and claim caches (run by hand; the figure is in BENCHMARKS.md) ---

/// Runs `serve` against `fake` until ready, lets it settle, and returns its RSS in KiB.
fn serve_rss(fake: &FakeApiServer, dir: &std::path::Path) -> u64 {
    let serve = Serve::builder(dir)
        .kubeconfig(&fake.kubeconfig(dir))
        .bin_var("SPW_BIN")
        .start();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(serve.wait_ready_within(Duration::from_secs(300)));
    // Let the list buffers go and the allocator settle, then take the larger of a few samples.
    std::thread::sleep(Duration::from_secs(3));
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(200));
            serve.rss_kib().expect("VmRSS")
        })
        .max()
        .unwrap()
}

/// The RSS of `serve` with the cluster `objects()` makes cached, against the same binary with an
/// empty cluster: printed, and under 64 MiB more.
fn cache_memory(what: &str, objects: impl FnOnce() -> Vec<Value>) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let idle = serve_rss(&FakeApiServer::start_blocking(Vec::new()), dir.path());
    eprintln!("idle RSS {idle} KiB");
    let fake = FakeApiServer::start_blocking(objects());
    // Pages of 500, as kube-runtime's watcher asks: the default tiny pages of the fake would
    // take tens of thousands of requests.
    fake.set_page_size(Some(500));
    let loaded = serve_rss(&fake, dir.path());
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "RSS idle (empty cluster): {:.1} MiB; with {what} cached: {:.1} MiB; difference {:.1} MiB",
        mib(idle),
        mib(loaded),
        mib(loaded.saturating_sub(idle))
    );
    assert!(
        loaded.saturating_sub(idle) < 64 * 1024,
        "target: under 64 MiB above idle"
    );
}

/// RSS of `serve` with 50,000 PersistentVolumes and 100,000 claims cached, against the same
/// binary with an empty cluster. Run with
/// `SPW_BIN=target/release/storage-policy-webhook cargo test --release --test cluster -- --ignored --nocapture pv_and_claim_caches_memory`.
#[test]
#[ignore = "measurement, run by hand: the figure is in BENCHMARKS.md"]
fn pv_and_claim_caches_memory() {
    cache_memory("50,000 PVs and 100,000 claims", || {
        let mut objects = Vec::with_capacity(150_000);
        for i in 0..50_000u32 {
            let ns = format!("team-{:03}", i % 200);
            let mut pv = local_pv(&format!("pv-{i:06}"), "100Gi", None);
            pv["apiVersion"] = json!("v1");
            pv["kind"] = json!("PersistentVolume");
            pv["metadata"]["labels"] = json!({"disk": "nvme", "rack": format!("r{}", i % 40)});
            if i % 2 == 0 {
                pv["spec"]["claimRef"] = json!({"namespace": ns, "name": format!("data-{i:06}"),
                "uid": format!("00000000-0000-0000-0000-{i:012}")});
                pv["status"]["phase"] = json!("Bound");
            }
            objects.push(pv);
        }
        for i in 0..100_000u32 {
            let mut c = claim(&format!("data-{i:06}"), "local-storage", "Bound");
            c["apiVersion"] = json!("v1");
            c["kind"] = json!("PersistentVolumeClaim");
            c["metadata"]["namespace"] = json!(format!("team-{:03}", i % 200));
            c["spec"]["volumeName"] = json!(format!("pv-{:06}", i % 50_000));
            objects.push(c);
        }
        objects
    });
}

/// RSS of `serve` with 100,000 pods cached (each mounting one claim, on 100 nodes, in 200
/// namespaces, with the containers, probes and status a real pod carries), against the same
/// binary with an empty cluster: the pod cache keeps only namespace, name, claims, node and two
/// flags of each. Run with
/// `SPW_BIN=target/release/storage-policy-webhook cargo test --release --test cluster -- --ignored --nocapture pod_cache_memory`.
#[test]
#[ignore = "measurement, run by hand: the figure is in BENCHMARKS.md"]
fn pod_cache_memory() {
    cache_memory("100,000 pods", || {
        (0..100_000u32)
            .map(|i| {
                let ns = format!("team-{:03}", i % 200);
                let name = format!("web-{i:06}-7d9f8b6c5d-x{:04}", i % 9973);
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns,
                    "uid": format!("00000000-0000-0000-0000-{i:012}"),
                    "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d"}},
                "spec": {"nodeName": format!("node-{:03}", i % 100),
                    "containers": [{"name": "app", "image": "registry.example.com/web:1.2.3",
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                         {"name": "tmp", "mountPath": "/tmp"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{i:06}")}},
                                {"name": "tmp", "emptyDir": {}}]},
                "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "192.0.2.1"}})
            })
            .collect()
    });
}
