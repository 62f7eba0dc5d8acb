#!/usr/bin/env bash
# Licence allow-list and duplicate-version check of the dependency tree (deny.toml), offline.
# Installs cargo-deny from crates.io (`cargo install --locked`) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v cargo-deny >/dev/null; then
  cargo install cargo-deny --locked
fi
cargo deny --version
# `cargo deny` reads `cargo metadata` for every target platform; a Linux build downloads only the
# Linux crates, so fetch the rest first (the check itself then runs offline).
cargo fetch --locked
cargo deny --offline check licenses bans
