//! Decode + decide + encode of any bytes sent to /mutate and /validate.
#![no_main]

#[path = "../../tests/common/fuzz.rs"]
#[allow(dead_code)] // each target uses one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::review(data));
