//! The hostile-input corpus (`tests/hostile/<name>.<expect>.json`, plus three large inputs built
//! here) through the decision path: `400` must be refused with an error (the server answers 400),
//! `allow`/`deny` must be answered with a well-formed review. Nothing may panic. The server-level
//! run of the same corpus (status codes, still serving afterwards) is in `tests/server_hostile.rs`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::Policy;

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

#[test]
fn hostile_corpus_gets_clear_answers() {
    let policy = Policy::load(
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.yaml")),
        false,
    )
    .unwrap();
    let catalog = policy.static_catalog();
    let corpus = corpus();
    assert!(
        corpus.len() >= 30,
        "the corpus holds {} inputs",
        corpus.len()
    );
    let mut failures = Vec::new();
    for (name, body, expect) in &corpus {
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let result = admission::review(endpoint, &policy, &catalog, body);
            let problem = match (expect.as_str(), result) {
                ("400", Err(e)) => {
                    let msg = e.to_string();
                    (msg.is_empty() || msg.len() > 2000).then(|| format!("unclear error {msg:?}"))
                }
                ("400", Ok(_)) => Some("answered, expected a refusal".to_owned()),
                (_, Err(e)) => Some(format!("refused: {e}")),
                (want, Ok(out)) => {
                    let v: Value = serde_json::from_slice(&out.to_json().unwrap()).unwrap();
                    let allowed = v["response"]["allowed"].as_bool();
                    let want_allowed = want == "allow" || endpoint == Endpoint::Mutate;
                    (v["apiVersion"] != "admission.k8s.io/v1" || allowed != Some(want_allowed))
                        .then(|| format!("answered allowed={allowed:?}, want {want_allowed}"))
                }
            };
            if let Some(p) = problem {
                failures.push(format!("{name} ({}): {p}", endpoint.as_str()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn denial_of_a_hostile_name_is_quoted_like_go() {
    let policy = Policy::load(
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.yaml")),
        false,
    )
    .unwrap();
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/hostile/control-characters-in-name.deny.json"),
    )
    .unwrap();
    let out =
        admission::review(Endpoint::Validate, &policy, &policy.static_catalog(), &body).unwrap();
    let v: Value = serde_json::from_slice(&out.to_json().unwrap()).unwrap();
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(r#"PersistentVolumeClaim "da\"ta\n\a" is invalid"#),
        "{msg}"
    );
    for w in v["response"]["warnings"].as_array().unwrap() {
        assert!(!w.as_str().unwrap().chars().any(char::is_control));
    }
}
