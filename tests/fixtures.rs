//! Whole-response fixtures: every `tests/fixtures/<endpoint>-<name>.review.json` is decided with
//! `tests/fixtures/policy.yaml` and must answer exactly `<endpoint>-<name>.response.json`.
//! Set `UPDATE_FIXTURES=1` to rewrite the expected files after an intended change (then review
//! the diff).

use std::path::Path;

use serde_json::Value;
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::Policy;

#[test]
fn fixtures_answer_exactly_as_pinned() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let policy = Policy::load(Some(&dir.join("policy.yaml")), false).expect("fixture policy");
    let catalog = policy.static_catalog();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".review.json") else {
            continue;
        };
        let endpoint = Endpoint::parse(stem.split('-').next().unwrap())
            .expect("fixture name starts with mutate- or validate-");
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
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
