#!/usr/bin/env bash
# Licence allow-list and duplicate-version check of the dependency tree (deny.toml), offline.
# Installs cargo-deny from crates.io (`cargo install --locked`) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v cargo-deny >/dev/null; then
  cargo install cargo-deny --locked
fi
cargo deny --version
cargo deny --offline check licenses bans
