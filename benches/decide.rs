//! Micro-benchmarks of the request path without the network: decode + decide + encode of
//! realistic AdmissionReviews (2-4 KiB, with managedFields), the decide step alone, and the same
//! decision with 10 and 10,000 classes and namespaces in the catalog (cache size must not matter),
//! and the decision on a StatefulSet of 1, 100 and 10,000 replicas on a static class with 50,000
//! PVs and 100,000 claims cached (issue 24: the binding rules look up indexes, never scan).
//!
//! `cargo bench --bench decide`; figures and method in BENCHMARKS.md.

#[path = "support/volumes.rs"]
mod volumes;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::core::admission::AdmissionReview;
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::{
    self, ClassesKnown, LiveClass, LiveState, NamespaceInfo, Object, Operation, Policy, Request,
    Subject,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

fn policy() -> Policy {
    Policy::load(
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.yaml")),
        false,
    )
    .expect("policy")
}

/// A live state with `n` classes and `n` namespaces that say something.
fn live(n: usize) -> LiveState {
    let classes = (0..n)
        .map(|i| LiveClass {
            name: format!("class-{i:05}"),
            provisioner: ["ebs.csi.aws.com", "nfs.csi.k8s.io", "rancher.io/local-path"][i % 3]
                .to_owned(),
            ..Default::default()
        })
        .collect();
    let namespaces: HashMap<String, NamespaceInfo> = (0..n)
        .map(|i| {
            (
                format!("ns-{i:05}"),
                NamespaceInfo {
                    default_class: Some(format!("class-{:05}", i % n.max(1))),
                    mode: None,
                    rewrite_access_modes: None,
                },
            )
        })
        .collect();
    LiveState {
        classes_known: ClassesKnown::Cluster,
        classes,
        namespaces,
        nodes: None,
        ..Default::default()
    }
}

fn end_to_end(c: &mut Criterion) {
    let p = policy();
    let cat = p.static_catalog();
    let mut g = c.benchmark_group("decode_decide_encode");
    for (name, endpoint) in [
        ("mutate-pvc-default-class", Endpoint::Mutate),
        ("mutate-pvc-empty-class", Endpoint::Mutate),
        ("mutate-pv-local-path-rule", Endpoint::Mutate),
        ("validate-pvc-rwx-block", Endpoint::Validate),
        ("validate-pvc-rwx-raw-block-allowed", Endpoint::Validate),
        ("validate-statefulset-rwx-local", Endpoint::Validate),
    ] {
        let body = fixture(&format!("{name}.review.json"));
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = admission::review(endpoint, &p, &cat, black_box(&body)).expect("decided");
                black_box(out.to_json().expect("encoded"))
            })
        });
    }
    g.finish();
}

fn decide_only(c: &mut Criterion) {
    let p = policy();
    let body = fixture("validate-pvc-rwx-raw-block-allowed.review.json");
    let review: AdmissionReview<PersistentVolumeClaim> =
        serde_json::from_slice(&body).expect("review");
    let req = review.request.expect("request");
    let pvc = req.object.as_ref().expect("object");
    let mut g = c.benchmark_group("decide_only");
    for n in [10usize, 10_000] {
        let cat = p.catalog(&live(n));
        let request = Request {
            operation: Operation::Create,
            namespace: Some("ns-00007"),
            username: "kubernetes-admin",
            subject: Subject {
                group: "",
                kind: "PersistentVolumeClaim",
                name: "vm-disk",
            },
            object: Some(Object::Pvc(pvc)),
            old_object: None,
        };
        g.bench_function(format!("validate_pvc_{n}_classes_and_namespaces"), |b| {
            b.iter(|| black_box(policy::validate(&p, &cat, black_box(&request))))
        });
        g.bench_function(format!("mutate_pvc_{n}_classes_and_namespaces"), |b| {
            b.iter(|| black_box(policy::mutate(&p, &cat, black_box(&request))))
        });
    }
    g.finish();
}

/// `policy::validate` on a new StatefulSet of class `local-storage` (static) with 50,000 PVs and
/// 100,000 claims cached: claims of 5Gi, which the 25,000 free volumes serve, and of 200Gi, for
/// which nothing is free (willBind warns and names the waiting claims).
///
/// The group `decide_statefulset_50000_pinned_pvs` is the same with every PV pinned to one of
/// 1,000 nodes, all known: `local-storage` is WaitForFirstConsumer, so the free volumes are
/// taken in the PV controller's order and each one's node looked up (a cluster's usual case).
fn decide_statefulset(c: &mut Criterion) {
    let p = policy();
    let plain = volumes::with_volumes(LiveState::default(), 50_000);
    let pinned = volumes::with_pinned_volumes(LiveState::default(), 50_000, 1_000);
    for (group, live) in [
        ("decide_statefulset_50000_pvs", plain),
        ("decide_statefulset_50000_pinned_pvs", pinned),
    ] {
        decide_statefulset_in(c, &p, group, &p.catalog(&live));
    }
}

fn decide_statefulset_in(
    c: &mut Criterion,
    p: &Policy,
    group: &str,
    cat: &storage_policy_webhook::policy::Catalog,
) {
    let namespace = volumes::namespace(7);
    let mut g = c.benchmark_group(group);
    for replicas in [1, 100, 10_000] {
        for (size, outcome) in [("5Gi", "served"), ("200Gi", "waiting")] {
            let sts: StatefulSet = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"replicas": replicas, "serviceName": "web",
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                        "storageClassName": "local-storage", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": size}}}}]}}))
            .expect("statefulset");
            let request = Request {
                operation: Operation::Create,
                namespace: Some(&namespace),
                username: "kubernetes-admin",
                subject: Subject {
                    group: "apps",
                    kind: "StatefulSet",
                    name: "web",
                },
                object: Some(Object::StatefulSet(&sts)),
                old_object: None,
            };
            let d = policy::validate(p, cat, &request);
            assert_eq!(
                d.warnings.iter().any(|w| w.contains("will stay Pending")),
                outcome == "waiting",
                "{replicas} x {size}: {:?}",
                d.warnings
            );
            g.bench_function(format!("{replicas}_replicas_{outcome}"), |b| {
                b.iter(|| black_box(policy::validate(p, cat, black_box(&request))))
            });
        }
    }
    g.finish();
}

/// `policy::validate` on a new claim of class `local-storage` asking for 200Gi (nothing free:
/// willBind warns) with 0, 10,000 and 50,000 PVs (and twice as many claims) cached: the rule's
/// look-ups in-process, away from the network (the load suite's cluster-size table measures the
/// same claim over it).
fn decide_static_claim(c: &mut Criterion) {
    let p = policy();
    let namespace = volumes::namespace(7);
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "new-data", "namespace": namespace},
        "spec": {"storageClassName": "local-storage", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "200Gi"}}}}))
    .expect("claim");
    let request = Request {
        operation: Operation::Create,
        namespace: Some(&namespace),
        username: "kubernetes-admin",
        subject: Subject {
            group: "",
            kind: "PersistentVolumeClaim",
            name: "new-data",
        },
        object: Some(Object::Pvc(&pvc)),
        old_object: None,
    };
    let mut g = c.benchmark_group("decide_static_claim");
    for n in [0, 10_000, 50_000] {
        let cat = p.catalog(&volumes::with_volumes(LiveState::default(), n));
        let d = policy::validate(&p, &cat, &request);
        assert!(
            d.warnings.iter().any(|w| w.contains("will stay Pending")),
            "{:?}",
            d.warnings
        );
        g.bench_function(format!("{n}_pvs"), |b| {
            b.iter(|| black_box(policy::validate(&p, &cat, black_box(&request))))
        });
    }
    g.finish();
}

/// `policy::validate` on the DELETE of a claim (deleteInUse) held by 1 and by 100 scheduled
/// pods, with 0 and 100,000 pods cached (each mounting its own claim, 200 namespaces), and the
/// whole review (decode + decide + encode) with 100,000: the rule reads the pod cache's index by
/// claim, so the time follows the pods holding the claim, never the pods cached.
fn decide_delete_claim(c: &mut Criterion) {
    use std::sync::Arc;
    use storage_policy_webhook::policy::interner::Interner;
    use storage_policy_webhook::policy::pods::{PodInfo, PodMap};
    let p = policy();
    let namespace = volumes::namespace(7);
    let pod = |ns: &str, name: &str, claim: &str| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": format!("node-{}", name.len() % 100),
                "containers": [{"name": "c", "image": "nginx"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": "Running"}}))
        .expect("pod")
    };
    let pods = |n: usize, holders: usize| -> Arc<PodMap> {
        let mut strings = Interner::default();
        let mut map = PodMap::default();
        for i in 0..n {
            let ns = volumes::namespace(i % 200);
            let claim = format!("data-{i:06}");
            map.insert(
                PodInfo::from_pod(&pod(&ns, &format!("web-{i:06}"), &claim), &mut strings).unwrap(),
            );
        }
        for i in 0..holders {
            map.insert(
                PodInfo::from_pod(
                    &pod(&namespace, &format!("shared-{i:03}"), "shared"),
                    &mut strings,
                )
                .unwrap(),
            );
        }
        Arc::new(map)
    };
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "shared", "namespace": namespace, "uid": "u-1",
            "finalizers": ["kubernetes.io/pvc-protection"]},
        "spec": {"storageClassName": "nfs", "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "5Gi"}}},
        "status": {"phase": "Bound"}}))
    .expect("claim");
    let request = Request {
        operation: Operation::Delete,
        namespace: Some(&namespace),
        username: "kubernetes-admin",
        subject: Subject {
            group: "",
            kind: "PersistentVolumeClaim",
            name: "shared",
        },
        object: None,
        old_object: Some(Object::Pvc(&pvc)),
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            "name": "shared", "namespace": namespace, "operation": "DELETE",
            "userInfo": {"username": "kubernetes-admin"}, "object": null, "oldObject": pvc,
            "dryRun": false}}))
    .expect("review");
    let mut g = c.benchmark_group("decide_delete_claim");
    for (n, holders) in [(0, 1), (100_000, 1), (0, 100), (100_000, 100)] {
        let cat = p.static_catalog().with_pods(pods(n, holders));
        let d = policy::validate(&p, &cat, &request);
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains(&format!("is still used by {holders} pod(s)"))),
            "{:?}",
            d.warnings
        );
        g.bench_function(format!("{n}_pods_cached_{holders}_holding"), |b| {
            b.iter(|| black_box(policy::validate(&p, &cat, black_box(&request))))
        });
        if n == 100_000 && holders == 1 {
            g.bench_function("review_100000_pods_cached_1_holding", |b| {
                b.iter(|| {
                    black_box(
                        admission::review(Endpoint::Validate, &p, &cat, black_box(&body))
                            .expect("answer")
                            .to_json()
                            .expect("json"),
                    )
                })
            });
        }
    }
    g.finish();
}

/// Where the time of decode + decide + encode goes, for the profile-guided work in BENCHMARKS.md.
fn parts(c: &mut Criterion) {
    let p = policy();
    let cat = p.static_catalog();
    let body = fixture("mutate-pvc-default-class.review.json");
    let mut stripped: serde_json::Value = serde_json::from_slice(&body).unwrap();
    stripped["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let stripped = serde_json::to_vec(&stripped).unwrap();
    let mut g = c.benchmark_group("parts");
    g.bench_function("scan_only", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap())
        })
    });
    g.bench_function("typed_pvc_review", |b| {
        b.iter(|| {
            black_box(
                serde_json::from_slice::<AdmissionReview<PersistentVolumeClaim>>(black_box(&body))
                    .unwrap(),
            )
        })
    });
    g.bench_function("typed_pvc_review_without_managed_fields", |b| {
        b.iter(|| {
            black_box(
                serde_json::from_slice::<AdmissionReview<PersistentVolumeClaim>>(black_box(
                    &stripped,
                ))
                .unwrap(),
            )
        })
    });
    let out = admission::review(Endpoint::Mutate, &p, &cat, &body).unwrap();
    g.bench_function("encode_patched_answer", |b| {
        b.iter(|| black_box(out.to_json().unwrap()))
    });
    g.finish();
}

/// The whole webhook router (`tower::ServiceExt::oneshot`: routing, body limit, deadline, span,
/// metrics, decode, decide, encode) beside a router that answers a fixed review, without TLS or
/// sockets: what the webhook adds per request above the HTTP stack; once more with the
/// production JSON log subscriber, since the body is a denial that is logged at info.
fn router(c: &mut Criterion) {
    use axum::body::{Body, Bytes};
    use storage_policy_webhook::server::metrics::{Metrics, new_registry};
    use storage_policy_webhook::server::routes::{self, AppState, DEFAULT_MAX_BODY_BYTES};
    use storage_policy_webhook::state::SharedState;
    use tower::ServiceExt;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut registry = new_registry();
    let metrics = Metrics::register(&mut registry);
    let hook = routes::router(AppState::new(
        std::sync::Arc::new(SharedState::new(policy())),
        metrics,
        DEFAULT_MAX_BODY_BYTES,
    ));
    let fixed = Bytes::from_static(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"status":{}}}"#);
    let baseline = axum::Router::new().route(
        "/validate",
        axum::routing::post(move |body: Bytes| {
            let fixed = fixed.clone();
            async move {
                black_box(body.len());
                fixed
            }
        }),
    );
    let body = Bytes::from(fixture("validate-pvc-rwx-block.review.json"));
    let mut g = c.benchmark_group("router");
    for (name, app, logs) in [
        ("baseline", baseline, false),
        ("webhook", hook.clone(), false),
        // The same denial with the production log subscriber (JSON at info) writing to a sink:
        // what logging the denial costs.
        ("webhook_json_logs", hook, true),
    ] {
        let _logging = logs.then(|| {
            tracing::subscriber::set_default(storage_policy_webhook::cli::serve::log_subscriber(
                storage_policy_webhook::cli::serve::LogFormat::Json,
                "info",
                false,
                std::io::sink,
            ))
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = axum::http::Request::post("/validate?timeout=10s")
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                rt.block_on(async {
                    let resp = app.clone().oneshot(req).await.unwrap();
                    black_box(
                        axum::body::to_bytes(resp.into_body(), usize::MAX)
                            .await
                            .unwrap(),
                    )
                })
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    end_to_end,
    decide_only,
    decide_statefulset,
    decide_static_claim,
    decide_delete_claim,
    parts,
    router
);
criterion_main!(benches);
