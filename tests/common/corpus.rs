//! The hostile-input corpus: `tests/hostile/<case>.<expect>.json` (`expect` is `400`, `allow` or
//! `deny`) plus three large inputs built here. Used by `tests/hostile.rs` (the decision path) and
//! `tests/server_hostile.rs` (over TLS to the running binary).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// (case, body, expect) for every input, files first (sorted), then the built ones.
pub fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let (case, expect) = stem.rsplit_once('.').expect("<name>.<expect>.json");
        out.push((
            case.to_owned(),
            std::fs::read(&f).unwrap(),
            expect.to_owned(),
        ));
    }
    let base = |object: Value| {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "h-big", "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            "namespace": "default", "operation": "CREATE", "userInfo": {"username": "mallory"}, "object": object}}))
        .unwrap()
    };
    let claim = |spec: Value, meta: Value| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec});
    out.push((
        "multi-megabyte-annotation".into(),
        base(claim(
            json!({"accessModes": ["ReadWriteOnce"]}),
            json!({"name": "d", "annotations": {"big": "x".repeat(3 << 20)}}),
        )),
        "allow".into(),
    ));
    out.push((
        "huge-access-mode-list".into(),
        base(claim(
            json!({"storageClassName": "oci-bv", "accessModes": vec!["ReadWriteMany"; 100_000]}),
            json!({"name": "d"}),
        )),
        "deny".into(),
    ));
    let mut deep = br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "object": "#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(b"}}");
    out.push(("deeply-nested-json".into(), deep, "400".into()));
    out
}

#[allow(dead_code)] // tests/hostile.rs only
/// An AdmissionReview of `object` (kind `kind` of group `group`) as kube-apiserver sends it.
pub fn review_of(group: &str, kind: &str, namespace: Option<&str>, object: Value) -> Vec<u8> {
    let mut request = json!({
        "uid": "h-work", "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
        "operation": "CREATE", "userInfo": {"username": "mallory"}, "object": object});
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": request}),
    )
    .unwrap()
}

#[allow(dead_code)] // tests/hostile.rs only
/// Hostile objects whose cost grows with their size (issue 28): node lists, templates x
/// replicas, thousands of volumes and unknown class names, and the wrong answers found with
/// them. (case, body); each is at most 8 MiB, the webhook's body limit. Judged against
/// [`big_cluster`] by `tests/hostile.rs`.
pub fn expensive() -> Vec<(String, Vec<u8>)> {
    let nodes = |n: usize| (0..n).map(|i| format!("node-{i:06}")).collect::<Vec<_>>();
    let pv = |meta: Value, extra: Value| {
        let mut spec = json!({"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local-storage", "local": {"path": "/data/x"}});
        json_patch::merge(&mut spec, &extra);
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec})
    };
    let template = |name: String, class: String| {
        json!({"metadata": {"name": name}, "spec": {"storageClassName": class,
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}})
    };
    let sts = |replicas: i64, templates: Vec<Value>, node_name: Option<&str>| {
        let mut pod = json!({"containers": [{"name": "c", "image": "x"}]});
        if let Some(n) = node_name {
            pod["nodeName"] = json!(n);
        }
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "serviceName": "web", "selector": {},
                "template": {"spec": pod}, "volumeClaimTemplates": templates}})
    };
    let ephemeral = |i: usize, class: &str, modes: Value| {
        json!({"name": format!("v{i}"), "ephemeral": {"volumeClaimTemplate": {"spec": {
            "storageClassName": class, "accessModes": modes,
            "resources": {"requests": {"storage": "1Gi"}}}}}})
    };
    let pod = |volumes: Vec<Value>, node_name: Option<&str>| {
        let mut spec = json!({"containers": [{"name": "c", "image": "x"}], "volumes": volumes});
        if let Some(n) = node_name {
            spec["nodeName"] = json!(n);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    };
    let pvc = |class: &str, size: &str, modes: Value| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"},
            "spec": {"storageClassName": class, "accessModes": modes,
                "resources": {"requests": {"storage": size}}}})
    };
    vec![
        (
            "pv-annotation-200k-node-names".into(),
            review_of(
                "",
                "PersistentVolume",
                None,
                pv(
                    json!({"name": "pv", "annotations": {"storage-policy.io/node": nodes(200_000).join(",")}}),
                    json!({}),
                ),
            ),
        ),
        (
            "pv-affinity-200k-node-values".into(),
            review_of(
                "",
                "PersistentVolume",
                None,
                pv(
                    json!({"name": "pv"}),
                    json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes(200_000)}]}]}}}),
                ),
            ),
        ),
        (
            "statefulset-2000-templates-of-unknown-long-class-names".into(),
            review_of(
                "apps",
                "StatefulSet",
                Some("default"),
                sts(
                    3,
                    (0..2000)
                        .map(|i| template(format!("t{i}"), format!("{i:04}{}", "c".repeat(196))))
                        .collect(),
                    None,
                ),
            ),
        ),
        (
            "statefulset-max-replicas-2000-static-templates-with-node-name".into(),
            review_of(
                "apps",
                "StatefulSet",
                Some("default"),
                sts(
                    i64::from(i32::MAX),
                    (0..2000)
                        .map(|i| template(format!("t{i}"), "local-storage".into()))
                        .collect(),
                    Some("node-000001"),
                ),
            ),
        ),
        (
            "pod-10000-ephemeral-read-write-many-volumes".into(),
            review_of(
                "",
                "Pod",
                Some("default"),
                pod(
                    (0..10_000)
                        .map(|i| ephemeral(i, "oci-bv", json!(["ReadWriteMany"])))
                        .collect(),
                    None,
                ),
            ),
        ),
        (
            "pod-10000-ephemeral-volumes-of-unknown-classes-with-node-name".into(),
            review_of(
                "",
                "Pod",
                Some("default"),
                pod(
                    (0..10_000)
                        .map(|i| {
                            ephemeral(
                                i,
                                &format!("class-{:05}x", i % 5000),
                                json!(["ReadWriteOnce"]),
                            )
                        })
                        .collect(),
                    Some("node-000001"),
                ),
            ),
        ),
        (
            "pvc-class-name-of-230-characters".into(),
            review_of(
                "",
                "PersistentVolumeClaim",
                Some("default"),
                pvc(&"z".repeat(230), "1Gi", json!(["ReadWriteOnce"])),
            ),
        ),
        (
            "pvc-negative-size".into(),
            review_of(
                "",
                "PersistentVolumeClaim",
                Some("default"),
                pvc("oci-bv", "-1Gi", json!(["ReadWriteOnce"])),
            ),
        ),
        (
            "pvc-zero-size".into(),
            review_of(
                "",
                "PersistentVolumeClaim",
                Some("default"),
                pvc("oci-bv", "0", json!(["ReadWriteOnce"])),
            ),
        ),
        (
            "pvc-read-write-many-beside-read-write-once-pod-in-a-rewrite-namespace".into(),
            review_of(
                "",
                "PersistentVolumeClaim",
                Some("single-node"),
                pvc(
                    "local-storage",
                    "1Gi",
                    json!(["ReadWriteMany", "ReadWriteOncePod"]),
                ),
            ),
        ),
        (
            "pvc-100000-distinct-junk-access-modes".into(),
            review_of(
                "",
                "PersistentVolumeClaim",
                Some("default"),
                pvc(
                    "local-storage",
                    "1Gi",
                    json!(
                        (0..100_000)
                            .map(|i| format!("ReadWriteMany{i}"))
                            .chain(["ReadWriteMany".to_owned()])
                            .collect::<Vec<_>>()
                    ),
                ),
            ),
        ),
    ]
}

#[allow(dead_code)] // tests/hostile.rs only
/// The largest `make(n)` within the webhook's 8 MiB body limit (less a little for headers).
fn grown(make: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    const LIMIT: usize = (8 << 20) - 4096;
    let (mut lo, mut hi) = (1, 2);
    while make(hi).len() <= LIMIT {
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if make(mid).len() <= LIMIT {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    make(lo)
}

#[allow(dead_code)] // tests/hostile.rs only
/// The costly families of [`expensive`] grown to the body limit (8 MiB): node names of a PV,
/// node-affinity values, pod volumes of unknown classes, StatefulSet templates of long unknown
/// names with every replica, access modes. Timed by `expensive_hostile_objects_timing`.
pub fn at_body_limit() -> Vec<(String, Vec<u8>)> {
    let pv = |meta: Value, extra: Value| {
        let mut spec = json!({"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local-storage", "local": {"path": "/data/x"}});
        json_patch::merge(&mut spec, &extra);
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec})
    };
    let nodes = |n: usize| (0..n).map(|i| format!("node-{i:07}")).collect::<Vec<_>>();
    vec![
        (
            "8MiB: PV annotation of node names".into(),
            grown(|n| {
                let meta = json!({"name": "pv", "annotations": {"storage-policy.io/node": nodes(n).join(",")}});
                review_of("", "PersistentVolume", None, pv(meta, json!({})))
            }),
        ),
        (
            "8MiB: PV node-affinity values".into(),
            grown(|n| {
                let affinity = json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes(n)}]}]}}});
                review_of(
                    "",
                    "PersistentVolume",
                    None,
                    pv(json!({"name": "pv"}), affinity),
                )
            }),
        ),
        (
            "8MiB: pod ephemeral volumes of unknown classes, nodeName".into(),
            grown(|n| {
                let volumes: Vec<Value> = (0..n)
                    .map(|i| json!({"name": format!("v{i}"), "ephemeral": {"volumeClaimTemplate": {"spec": {
                        "storageClassName": format!("class-{:05}x", i % 5000), "accessModes": ["ReadWriteMany"],
                        "resources": {"requests": {"storage": "1Gi"}}}}}}))
                    .collect();
                review_of(
                    "",
                    "Pod",
                    Some("default"),
                    json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p"}, "spec": {"nodeName": "node-000001",
                        "containers": [{"name": "c", "image": "x"}], "volumes": volumes}}),
                )
            }),
        ),
        (
            "8MiB: StatefulSet of max replicas, templates of long unknown names, nodeName".into(),
            grown(|n| {
                let templates: Vec<Value> = (0..n)
                    .map(|i| json!({"metadata": {"name": format!("t{i}")}, "spec": {
                        "storageClassName": format!("{i:05}{}", "c".repeat(190)),
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}))
                    .collect();
                review_of(
                    "apps",
                    "StatefulSet",
                    Some("default"),
                    json!({"apiVersion": "apps/v1",
                    "kind": "StatefulSet", "metadata": {"name": "web"}, "spec": {"replicas": i32::MAX,
                        "serviceName": "web", "selector": {}, "template": {"spec": {"nodeName": "node-000001",
                            "containers": [{"name": "c", "image": "x"}]}}, "volumeClaimTemplates": templates}}),
                )
            }),
        ),
        (
            "8MiB: PVC of junk access modes".into(),
            grown(|n| {
                let modes: Vec<String> = (0..n).map(|i| format!("Mode{i}")).collect();
                review_of(
                    "",
                    "PersistentVolumeClaim",
                    Some("default"),
                    json!({"apiVersion": "v1",
                    "kind": "PersistentVolumeClaim", "metadata": {"name": "d"}, "spec": {
                        "storageClassName": "local-storage", "accessModes": modes,
                        "resources": {"requests": {"storage": "1Gi"}}}}),
                )
            }),
        ),
    ]
}
