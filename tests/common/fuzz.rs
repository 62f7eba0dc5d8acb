//! What the fuzz targets (`fuzz/fuzz_targets/`) check for each input, shared with
//! `tests/fuzz_regressions.rs`, which replays every input a fuzzer ever crashed on
//! (`fuzz/regressions/<target>/`) in the normal suite. Depends on nothing but the library and
//! serde_json, so the fuzz crate can include it as it is.

use std::sync::OnceLock;

use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::{Policy, limits};

/// The policy the hostile corpus and the fixtures are written for (the fuzz seeds).
const POLICY: &str = include_str!("../fixtures/policy.yaml");

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::parse(POLICY, None, false).expect("fixture policy"))
}

/// Decode + decide + encode, on both endpoints: an error or a well-formed answer, never a panic.
pub fn review(body: &[u8]) {
    let policy = policy();
    let catalog = policy.static_catalog();
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let Ok(outcome) = admission::review(endpoint, policy, &catalog, body) else {
            continue;
        };
        let json = outcome.to_json().expect("a decided review always encodes");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("the answer is JSON");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{v}");
        assert_eq!(v["kind"], "AdmissionReview", "{v}");
        let allowed = v["response"]["allowed"]
            .as_bool()
            .expect("allowed is a boolean");
        if endpoint == Endpoint::Validate {
            assert!(
                v["response"].get("patch").is_none(),
                "validate never patches: {v}"
            );
        }
        if !allowed {
            let msg = v["response"]["status"]["message"].as_str().unwrap_or("");
            assert!(!msg.is_empty(), "a denial says why: {v}");
        }
        // The answer is bounded whatever the object (policy::limits).
        let warnings: Vec<&str> = v["response"]["warnings"]
            .as_array()
            .map(|w| w.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        assert!(warnings.len() <= limits::MAX_WARNINGS, "{warnings:?}");
        let chars: usize = warnings.iter().map(|w| w.chars().count()).sum();
        assert!(chars <= limits::MAX_WARNINGS_TOTAL_CHARS, "{warnings:?}");
        let causes = v["response"]["status"]["details"]["causes"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(causes <= limits::MAX_CAUSES, "{causes} causes");
    }
}

/// The policy-file parser: an error (with a message) or a policy that compiles, never a panic.
pub fn policy_file(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // The whole load: the file's model, then every rule's own section.
    match Policy::parse(text, None, false) {
        Ok(policy) => {
            let _ = policy.static_catalog();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
