//! The hostile-input corpus (`tests/hostile/<name>.<expect>.json`, plus three large inputs built
//! in `tests/common/corpus.rs`) through the decision path: `400` must be refused with an error (the server answers 400),
//! `allow`/`deny` must be answered with a well-formed review. Nothing may panic. The server-level
//! run of the same corpus (status codes, still serving afterwards) is in `tests/server_hostile.rs`.

#[path = "common/corpus.rs"]
mod corpus;

use std::path::Path;

use corpus::corpus;
use serde_json::Value;
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::Policy;

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
