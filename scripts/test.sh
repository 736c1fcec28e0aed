#!/usr/bin/env bash
# Runs every check and test of the project: the contracts (toolchain install, Forge tests,
# artifact freshness), then formatting, lints, rustdoc and every Rust test (unit, vector, property,
# engine, CLI, HTTP, crash, anchoring against a real anvil, and the web explorer in headless
# Chromium, whose dependencies scripts/browser-deps.sh installs first), then a short run of every
# fuzz target. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "contracts"
scripts/check-contracts.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo doc (rustdoc lints as errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps

step "browser test dependencies (chromium, playwright-core)"
scripts/browser-deps.sh

step "cargo test (all targets)"
cargo test --locked --all-targets

step "fuzz smoke run (scripts/fuzz.sh: every target, 10 s each)"
scripts/fuzz.sh 10
