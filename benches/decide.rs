//! Micro-benchmarks of the request path without the network: decode + decide + encode of
//! realistic AdmissionReviews (2-4 KiB, with managedFields), the decide step alone, and the same
//! decision with 10 and 10,000 classes and namespaces in the catalog (cache size must not matter).
//!
//! `cargo bench --bench decide`; figures and method in BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::core::admission::AdmissionReview;
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::{
    self, LiveClass, LiveState, NamespaceInfo, Object, Operation, Policy, Request, Subject,
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
            kind_annotation: None,
            is_default: false,
            allow_rwx_block_mode: false,
            created: None,
            volume_binding_mode: None,
            parameters: Default::default(),
        })
        .collect();
    let namespaces: HashMap<String, NamespaceInfo> = (0..n)
        .map(|i| {
            (
                format!("ns-{i:05}"),
                NamespaceInfo {
                    default_class: Some(format!("class-{:05}", i % n.max(1))),
                    mode: None,
                },
            )
        })
        .collect();
    LiveState {
        classes,
        namespaces,
        nodes: None,
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

criterion_group!(benches, end_to_end, decide_only);
criterion_main!(benches);
