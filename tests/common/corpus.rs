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
