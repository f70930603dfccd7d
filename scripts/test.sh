#!/usr/bin/env bash
# Runs berth's whole test suite: formatting, lints, unit tests, and black-box tests that
# start real daemons and drive them with the berth CLI, the docker CLI and skopeo; then
# the VM lane (scripts/vm-lane.sh, docs/TESTING.md): the container, cgroup and network
# tests again inside qemu on Debian's kernels, with pure cgroup v2 and systemd's v1 layout.
# Between the two, scripts/against-docker.sh runs the Docker SDK scripts against a real
# Docker Engine 20.10 in a network namespace of its own, proving their expectations.
# Needs root (tests unpack layers as root, create whiteout device nodes, chown files).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo test --workspace --locked -- --test-threads="${BERTH_TEST_THREADS:-4}"
# The SDK scripts' expectations against a real Docker Engine 20.10 (docs/TESTING.md,
# "Against Docker"): about 1 minute, plus about 1 minute to install docker.io on a fresh host.
if [ "${BERTH_SKIP_AGAINST_DOCKER:-}" = 1 ]; then
    echo "################################################################" >&2
    echo "# Against Docker SKIPPED (BERTH_SKIP_AGAINST_DOCKER=1)" >&2
    echo "################################################################" >&2
else
    scripts/against-docker.sh
fi
if [ "${BERTH_SKIP_VM_LANE:-}" = 1 ]; then
    echo "################################################################" >&2
    echo "# VM lane SKIPPED (BERTH_SKIP_VM_LANE=1): cgroup v2 and v1 untested" >&2
    echo "################################################################" >&2
else
    scripts/vm-lane.sh
fi
