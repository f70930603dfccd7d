#!/usr/bin/env bash
# Installs what berth's demo and tests need, idempotently (Debian 12, as root).
set -euo pipefail
need=()
# libseccomp-dev and pkg-config: libcontainer (berth-driver) links libseccomp.
# make, libelf-dev and zlib1g-dev: libbpf-sys builds its vendored libbpf (libcgroups'
# cgroup v2 device filter, a BPF program) with make and links libelf and zlib.
# tini: its static build is the init `--init` runs (Docker ships the same as docker-init).
# procps: `docker top` runs ps on the host, as Docker does.
# nftables: berth's NAT and filter rules are applied with nft; iproute2: the tests look at
# interfaces with ip and ss; gcc and libc6-dev: the tests build a static UDP echo server.
for pkg in skopeo busybox-static zstd curl ca-certificates python3 python3-pip tar libseccomp-dev pkg-config make libelf-dev zlib1g-dev tini procps nftables iproute2 gcc libc6-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The VM test lane (scripts/vm-lane.sh): qemu to boot a Debian kernel, cpio for its
# initramfs; without the recommends (no GUI, firmware or extra block tools).
vm_need=()
for pkg in qemu-system-x86 cpio; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || vm_need+=("$pkg")
done
if [ "${#vm_need[@]}" -gt 0 ]; then
    echo "installing: ${vm_need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${vm_need[@]}" >/dev/null
fi
# podman (Debian's 4.3): a peer the registry tests pull with (registry.rs), and the
# peer of bench/userns.sh; docker-compose (Debian's 1.29): the compose tests
# (compose_cli.rs); docker-registry (Distribution 2.8): the registry the pull/push and
# outdated-base tests run against (pull_push.rs; each starts its own on a free loopback
# port); all without the recommends (no docker.io).
peers=()
for pkg in podman docker-compose docker-registry; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || peers+=("$pkg")
done
if [ "${#peers[@]}" -gt 0 ]; then
    echo "installing: ${peers[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${peers[@]}" >/dev/null
fi
# The Docker SDK for Python, from PyPI (Debian's python marks itself externally managed).
if ! python3 -c "import docker" 2>/dev/null; then
    echo "installing the Docker SDK for Python (pip)" >&2
    python3 -m pip install -q docker 2>/dev/null || python3 -m pip install -q --break-system-packages docker
fi
if ! command -v cargo >/dev/null; then
    echo "error: cargo is not installed; berth needs a Rust toolchain (rustup, $(grep channel rust-toolchain.toml))" >&2
    exit 1
fi
if ! command -v docker >/dev/null; then
    echo "note: the docker CLI is not installed; the docker CLI interop tests will be skipped" >&2
fi
