//! Bounded fuzzing of decode + decide + encode in the normal suite (proptest): realistic reviews
//! with random byte damage, and with random JSON values planted at random places. Whatever comes
//! in, the answer is an error or a well-formed review, never a panic. Any input proptest finds
//! is kept in `tests/fuzz_decode.proptest-regressions` and replayed first on every run.

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::Policy;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".review.json"))
        .collect();
    v.sort();
    v.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn policy() -> Policy {
    Policy::load(
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.yaml")),
        false,
    )
    .unwrap()
}

fn decide_both(policy: &Policy, body: &[u8]) {
    let catalog = policy.static_catalog();
    for ep in [Endpoint::Mutate, Endpoint::Validate] {
        if let Ok(out) = admission::review(ep, policy, &catalog, body) {
            let bytes = out.to_json().expect("an answer always encodes");
            let v: Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
            assert!(v["response"]["allowed"].is_boolean());
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("ReadWriteMany"),
            Just("Block"),
            Just("oci-bv"),
            Just(""),
            Just("/mnt/ssd")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in a document.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            pointers(
                c,
                format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                out,
            )
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, .. ProptestConfig::default() })]

    #[test]
    fn damaged_bytes_never_panic(which in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)) {
        let all = fixtures();
        let mut body = all[which.index(all.len())].clone();
        for (at, byte, op) in edits {
            if body.is_empty() { break; }
            let i = at.index(body.len());
            match op {
                0 => body[i] = byte,
                1 => { body.remove(i); }
                _ => body.truncate(i),
            }
        }
        decide_both(&policy(), &body);
    }

    #[test]
    fn planted_values_never_panic(which in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), value in arb_json()) {
        let all = fixtures();
        let mut doc: Value = serde_json::from_slice(&all[which.index(all.len())]).unwrap();
        let mut ptrs = Vec::new();
        pointers(&doc, String::new(), &mut ptrs);
        let ptr = &ptrs[at.index(ptrs.len())];
        if let Some(slot) = doc.pointer_mut(ptr) { *slot = value; }
        decide_both(&policy(), &serde_json::to_vec(&doc).unwrap());
    }
}
