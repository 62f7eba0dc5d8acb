//! The fake API server itself, through the kube-rs client: the parts the cluster tests do not
//! exercise (namespaced collections, get, 404, every kind, pages), so other integration tests can
//! rely on them.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use serde_json::json;
use support::fake_apiserver::{
    ALL, FakeApiServer, NODES, PERSISTENT_VOLUME_CLAIMS, STATEFUL_SETS, Verb,
};

fn pvc(namespace: &str, name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": namespace},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[tokio::test]
async fn serves_namespaced_collections_all_and_per_namespace() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeApiServer::start().await;
    fake.serve(PERSISTENT_VOLUME_CLAIMS);
    fake.serve(STATEFUL_SETS);
    fake.apply(PERSISTENT_VOLUME_CLAIMS, pvc("a", "data"));
    fake.apply(PERSISTENT_VOLUME_CLAIMS, pvc("b", "data"));
    fake.apply(PERSISTENT_VOLUME_CLAIMS, pvc("b", "logs"));
    fake.apply(
        STATEFUL_SETS,
        json!({"metadata": {"name": "web", "namespace": "a"},
               "spec": {"selector": {}, "serviceName": "web", "template": {}}}),
    );
    let client = fake.client();

    let all: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let names: Vec<(String, String)> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.namespace.unwrap(), p.metadata.name.unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("a".into(), "data".into()),
            ("b".into(), "data".into()),
            ("b".into(), "logs".into())
        ]
    );

    let in_b: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "b");
    assert_eq!(
        in_b.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    assert_eq!(
        in_b.get("logs")
            .await
            .unwrap()
            .metadata
            .namespace
            .as_deref(),
        Some("b")
    );
    let missing = in_b.get("nope").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(s) if s.code == 404),
        "404 for a missing object"
    );

    let sts: Api<StatefulSet> = Api::all(client.clone());
    assert_eq!(
        sts.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert_eq!(fake.requests(PERSISTENT_VOLUME_CLAIMS, Verb::List), 2);
    assert_eq!(fake.requests(PERSISTENT_VOLUME_CLAIMS, Verb::Get), 2);

    // A namespaced watch sees only its namespace.
    let rv = in_b
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = in_b
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    fake.apply(PERSISTENT_VOLUME_CLAIMS, pvc("a", "other"));
    fake.apply(PERSISTENT_VOLUME_CLAIMS, pvc("b", "new"));
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("new")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unserved_collections_are_404_and_failures_are_injected() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeApiServer::start().await;
    let nodes: Api<Node> = Api::all(fake.client());
    let err = nodes.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    fake.serve(NODES);
    fake.fail(NODES, Verb::List, 500, 1);
    let err = nodes.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 500));
    assert!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn serves_every_kind_in_pages_in_creation_order() {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut objects = Vec::new();
    for r in ALL {
        for name in ["c", "a", "b"] {
            let mut metadata = json!({"name": name});
            if r.namespaced {
                metadata["namespace"] = json!("n");
            }
            objects
                .push(json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": metadata}));
        }
    }
    let fake = FakeApiServer::start_with(objects).await;
    fake.set_page_size(Some(2));
    let client = fake.client();
    for r in ALL {
        let (group, version) = r.api_version.split_once('/').unwrap_or(("", r.api_version));
        let plural = r.path.rsplit('/').next().unwrap();
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, r.kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let mut names = Vec::new();
        let mut pages = 0;
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = api.list(&lp).await.unwrap();
            pages += 1;
            names.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
                _ => break,
            }
        }
        assert_eq!(names, ["c", "a", "b"], "{}", r.kind);
        assert_eq!(pages, 2, "{}: pages of 2 whatever the limit", r.kind);
    }
    let uris = fake.uris();
    assert!(
        uris.iter()
            .any(|u| u.starts_with("/apis/batch/v1/cronjobs?") && u.contains("continue=")),
        "{uris:?}"
    );
}
