#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of decode + decide + encode (`review`) and of the
# policy-file parser (`policy`), each for FUZZ_SECONDS (default 60), seeded with the fixtures and
# the hostile corpus. A crash fails the run; libFuzzer leaves the input in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ (tests/fuzz_regressions.rs then
# replays it in every `cargo test`). Installs cargo-fuzz from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version
# The machine has the stable toolchain only; cargo fuzz's instrumentation flags are unstable ones.
export RUSTC_BOOTSTRAP=1
# Safe Rust (forbid(unsafe_code)): the fuzzer looks for panics, aborts, hangs and runaway memory,
# which need no sanitizer; without one the build is faster and the fuzzer runs several times faster.
opts=(--sanitizer none --release --debug-assertions --codegen-units 16)
cargo fuzz build "${opts[@]}"

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/review" "$corpus/policy"
cp tests/fixtures/*.review.json tests/fixtures/server/*.review.json tests/hostile/*.json \
  fuzz/seeds/review/*.json "$corpus/review/"
cp tests/fixtures/policy.yaml "$corpus/policy/fixtures.yaml"
cp tests/fixtures/server/policy.yaml "$corpus/policy/server.yaml"
cp tests/conformance/accessModes/policy.yaml "$corpus/policy/conformance.yaml"
cp src/policy/default-policy.yaml examples/policy.yaml "$corpus/policy/"

# -max_len: reviews up to 64 KiB (the seeds are a few KiB); -timeout: one input over 10 s is a hang;
# -rss_limit_mb: runaway memory is a failure too.
run() {
  local target=$1 max_len=$2 log="$corpus/$1.log" status=0 dict=()
  # The target's dictionary (fuzz/dictionaries/<target>.dict), when there is one.
  if [ -f "fuzz/dictionaries/$target.dict" ]; then dict=(-dict="fuzz/dictionaries/$target.dict"); fi
  echo "fuzzing $target for ${seconds}s"
  cargo fuzz run "${opts[@]}" "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 80 "$log"
    echo "fuzzing $target failed (exit $status): the input is in fuzz/artifacts/$target/" >&2
    return "$status"
  fi
}
run review 65536
run policy 16384
echo "fuzzing: no crash"
