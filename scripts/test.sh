#!/usr/bin/env bash
# Runs berth's whole test suite: formatting, lints, unit tests, and black-box tests that
# start real daemons and drive them with the berth CLI, the docker CLI and skopeo.
# Needs root (tests unpack layers as root, create whiteout device nodes, chown files).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo test --workspace --locked -- --test-threads="${BERTH_TEST_THREADS:-4}"
