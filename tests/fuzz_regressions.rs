//! Replays, in every `cargo test`, each input that coverage-guided fuzzing (`fuzz/`, run by
//! `tests/reliability/fuzz.sh` in CI) ever crashed on: `fuzz/regressions/review/` through decode +
//! decide + encode, `fuzz/regressions/policy/` through the policy-file parser, with the fuzz
//! targets' own checks (`tests/common/fuzz.rs`). The seed corpus (fixtures and hostile inputs)
//! is replayed too, so the checks are known to pass on real input and to be exercised.

mod common;

use std::path::{Path, PathBuf};

use common::fuzz;
use storage_policy_webhook::policy::config;

fn files(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && keep(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    v.sort();
    v
}

fn replay(paths: &[PathBuf], check: fn(&[u8])) {
    for p in paths {
        let data = std::fs::read(p).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            std::panic::resume_unwind(Box::new(format!("{}: {e:?}", p.display())));
        }
    }
}

#[test]
fn review_inputs_that_crashed_a_fuzzer_never_do_again() {
    let found = files("fuzz/regressions/review", |n| !n.starts_with('.'));
    replay(&found, fuzz::review);
    eprintln!("{} review regressions replayed", found.len());
}

#[test]
fn policy_inputs_that_crashed_a_fuzzer_never_do_again() {
    let found = files("fuzz/regressions/policy", |n| !n.starts_with('.'));
    replay(&found, fuzz::policy_file);
    eprintln!("{} policy regressions replayed", found.len());
}

#[test]
fn the_seed_corpus_passes_the_fuzz_checks() {
    let mut reviews = files("tests/fixtures", |n| n.ends_with(".review.json"));
    reviews.extend(files("tests/hostile", |n| n.ends_with(".json")));
    reviews.extend(files("fuzz/seeds/review", |n| n.ends_with(".json")));
    assert!(reviews.len() > 40, "{}", reviews.len());
    replay(&reviews, fuzz::review);
    let policies = [
        "tests/fixtures/policy.yaml",
        "tests/fixtures/server/policy.yaml",
        "src/policy/default-policy.yaml",
        "examples/policy.yaml",
    ];
    for p in policies {
        let text = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap();
        let parsed = config::parse(std::str::from_utf8(&text).unwrap(), None);
        assert!(parsed.is_ok(), "{p}: {parsed:?}");
        fuzz::policy_file(&text);
    }
}
