//! The policy-file parser (YAML, validated on load) on any text.
#![no_main]

#[path = "../../tests/common/fuzz.rs"]
#[allow(dead_code)] // each target uses one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::policy_file(data));
