//! Whole-response fixtures: every `tests/fixtures/<endpoint>-<name>.review.json` is decided with
//! `tests/fixtures/policy.yaml` and must answer exactly `<endpoint>-<name>.response.json`.
//! Set `UPDATE_FIXTURES=1` to rewrite the expected files after an intended change (then review
//! the diff).
//!
//! A fixture is decided without a cluster (the policy's classes only, as `serve --no-cluster`
//! and `review` decide), unless `<endpoint>-<name>.cluster.yaml` sits beside it: the cluster
//! state, YAML documents as `kubectl get -o yaml` prints them (StorageClass, Namespace, Node,
//! PersistentVolume, PersistentVolumeClaim; any other kind is an error). The review is then
//! decided as `serve` decides once its watch caches are synced: the documents are the whole
//! cluster (every class is known, an empty node, PV or claim list means there are none), reduced
//! by the same functions the caches use.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::volumes::{Source, VolumeIndex};
use storage_policy_webhook::policy::{ClassesKnown, LiveClass, LiveState, NamespaceInfo, Policy};

fn parse<T: serde::de::DeserializeOwned>(doc: Value, what: &str) -> T {
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The cluster state of a fixture (see the module docs), as the watch caches publish it.
fn cluster_state(path: &Path) -> LiveState {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut live = LiveState {
        classes_known: ClassesKnown::Cluster,
        ..LiveState::default()
    };
    let mut nodes = Vec::new();
    let mut pvs: Vec<PersistentVolume> = Vec::new();
    let mut claims: Vec<(String, PersistentVolumeClaim)> = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let what = format!(
            "{}: {} {}",
            path.display(),
            doc["kind"],
            doc["metadata"]["name"]
        );
        match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
            (Some("storage.k8s.io/v1"), Some("StorageClass")) => {
                let sc: StorageClass = parse(doc, &what);
                live.classes.push(LiveClass::from_storage_class(&sc));
            }
            (Some("v1"), Some("Namespace")) => {
                let ns: Namespace = parse(doc, &what);
                let info = NamespaceInfo::from_namespace(&ns);
                live.namespaces
                    .insert(ns.metadata.name.unwrap_or_default(), info);
            }
            (Some("v1"), Some("Node")) => {
                let node: Node = parse(doc, &what);
                nodes.push((
                    node.metadata.name.unwrap_or_default(),
                    node.metadata.labels.unwrap_or_default(),
                ));
            }
            (Some("v1"), Some("PersistentVolume")) => {
                pvs.push(parse(doc, &what));
            }
            (Some("v1"), Some("PersistentVolumeClaim")) => {
                let c: PersistentVolumeClaim = parse(doc, &what);
                let ns = c
                    .metadata
                    .namespace
                    .clone()
                    .expect("a claim of the cluster has a namespace");
                claims.push((ns, c));
            }
            _ => panic!("{what}: not a kind of the cluster state"),
        }
    }
    nodes.sort();
    live.nodes = Some(Arc::new(nodes));
    let index = VolumeIndex::from_objects(
        &pvs,
        claims.iter().map(|(ns, c)| (ns.as_str(), c)),
        Source::Cluster,
    );
    live.pvs = Some(index.pvs);
    live.claims = Some(index.claims);
    live
}

#[test]
fn fixtures_answer_exactly_as_pinned() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let policy = Policy::load(Some(&dir.join("policy.yaml")), false).expect("fixture policy");
    let no_cluster = policy.static_catalog();
    let mut checked = 0;
    let mut with_cluster = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".cluster.yaml") {
            assert!(
                dir.join(format!("{stem}.review.json")).exists(),
                "{name}: no {stem}.review.json beside it"
            );
        }
    }
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".review.json") else {
            continue;
        };
        let endpoint = Endpoint::parse(stem.split('-').next().unwrap())
            .expect("fixture name starts with mutate- or validate-");
        let state = dir.join(format!("{stem}.cluster.yaml"));
        let catalog = if state.exists() {
            with_cluster += 1;
            policy.catalog(&cluster_state(&state))
        } else {
            no_cluster.clone()
        };
        let body = std::fs::read(&path).unwrap();
        let got: Value = serde_json::from_slice(
            &admission::review(endpoint, &policy, &catalog, &body)
                .expect("decided")
                .to_json()
                .unwrap(),
        )
        .unwrap();
        let expected_path = dir.join(format!("{stem}.response.json"));
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
        }
        let want: Value =
            serde_json::from_slice(&std::fs::read(&expected_path).expect("expected response file"))
                .unwrap();
        if got != want {
            failures.push(format!("{stem}:\n got  {got}\n want {want}"));
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures found");
    assert!(
        with_cluster >= 4,
        "only {with_cluster} fixtures with a cluster state"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
