#!/usr/bin/env bash
# Runs berth's expectations against a real Docker Engine 20.10 (Debian's docker.io), to
# prove they are Docker's and not berth's (docs/TESTING.md, "Against Docker").
#
#   scripts/against-docker.sh                 every tests/sdk/*.py against Docker
#   scripts/against-docker.sh SCRIPT...       those tests/sdk scripts only (names, no .py)
#   scripts/against-docker.sh -- CMD ARGS...  CMD with DOCKER_HOST and
#                                             BERTH_TEST_AGAINST_DOCKER pointing at the
#                                             private Docker (e.g. cargo test -p
#                                             berth-tests --test volumes_docker_cli)
#
# The host is left as it was: docker.io is installed with its init scripts and units kept
# from starting (policy-rc.d exits 101 during the install; units disabled if systemd runs),
# and the private dockerd runs inside a network namespace of its own (its bridge, iptables
# rules and published ports live there), with its own containerd, data root, exec root,
# pid files and sockets under a temporary directory. A trap stops both daemons and removes
# the namespace and the directory, whatever happens. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

mode=sdk
scripts=()
cmd=()
while [ $# -gt 0 ]; do
    case "$1" in
    --) shift; mode=cmd; cmd=("$@"); break ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) scripts+=("$1"); shift ;;
    esac
done
if [ "$mode" = cmd ] && [ "${#cmd[@]}" -eq 0 ]; then
    echo "error: nothing to run after --" >&2
    exit 2
fi

log() { echo "against-docker: $*" >&2; }

host_net_state() {
    # What the install and the run must not change in the host's network namespace.
    ip -o link show | awk -F': ' '{print $2}' | sort
    (iptables-save 2>/dev/null || true) | grep -v '^#' | sort
    (nft list ruleset 2>/dev/null || true)
}

install_docker() {
    if dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q "ok installed"; then
        return
    fi
    log "installing Debian's docker.io (its services kept from starting)"
    local before
    before=$(host_net_state)
    local made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# against-docker.sh: no service starts during this install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    apt-get update -qq || rc=$?
    if [ "$rc" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null || rc=$?
    fi
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { log "apt-get failed ($rc)"; exit "$rc"; }
    if [ -d /run/systemd/system ]; then
        systemctl disable --now docker.service docker.socket containerd.service 2>/dev/null || true
    fi
    # Debian's sysvinit script, should anything run it later without policy-rc.d.
    if pgrep -x dockerd >/dev/null && [ -e /var/run/docker.pid ]; then
        log "a system dockerd runs (pid file /var/run/docker.pid): stopping it"
        kill "$(cat /var/run/docker.pid)" 2>/dev/null || true
    fi
    if [ "$(host_net_state)" != "$before" ]; then
        log "error: installing docker.io changed the host's network (links, iptables or nftables)"
        diff <(echo "$before") <(host_net_state) >&2 || true
        exit 1
    fi
}

install_docker
command -v dockerd >/dev/null || { log "error: dockerd not found after the install"; exit 1; }
python3 -c "import docker" 2>/dev/null || { log "error: the Docker SDK for Python is missing: run scripts/deps.sh"; exit 1; }

net_before=$(host_net_state)
work=$(mktemp -d /tmp/berth-against-docker.XXXXXX)
ns="berth-vsdocker-$$"
sock="$work/docker.sock"
ctrd_sock="$work/containerd.sock"
ctrd_pid=
dockerd_pid=

stop_pid() { # PID NAME SECONDS: SIGTERM, then SIGKILL after SECONDS
    local pid=$1 name=$2 secs=$3
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name ($pid) did not stop within ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        # Containers first, so no shim outlives the run.
        DOCKER_HOST="unix://$sock" timeout 60 docker ps -aq 2>/dev/null |
            xargs -r env DOCKER_HOST="unix://$sock" timeout 60 docker rm -f >/dev/null 2>&1
    fi
    stop_pid "$dockerd_pid" dockerd 30
    stop_pid "$ctrd_pid" containerd 20
    # containerd's shims of containers that were killed with it.
    for p in $(pgrep -f "containerd-shim.*-address $ctrd_sock" 2>/dev/null); do
        kill -KILL "$p" 2>/dev/null
    done
    # Anything still mounted under the work directory (overlays, netns files, shm).
    grep -o " $work[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    ip netns del "$ns" 2>/dev/null
    rm -rf "$work"
    if [ "$(host_net_state)" != "$net_before" ]; then
        log "error: the host's network changed during the run"
        diff <(echo "$net_before") <(host_net_state) >&2
        [ "$rc" = 0 ] && rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up

mkdir -p "$work/containerd-root" "$work/containerd-state" "$work/data" "$work/exec"
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/containerd-root"
state = "$work/containerd-state"
[grpc]
  address = "$ctrd_sock"
[ttrpc]
  address = "$ctrd_sock.ttrpc"
[debug]
  address = "$work/containerd-debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  disable_apparmor = true
EOF
nsenter --net="/run/netns/$ns" containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctrd_pid=$!
for _ in $(seq 300); do
    [ -S "$ctrd_sock" ] && break
    kill -0 "$ctrd_pid" 2>/dev/null || { cat "$work/containerd.log" >&2; log "containerd exited"; exit 1; }
    sleep 0.1
done

# Docker's own defaults otherwise (bridge, iptables, ip forwarding, userland proxy): all
# of it inside the namespace.
nsenter --net="/run/netns/$ns" dockerd --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
    --host "unix://$sock" --containerd "$ctrd_sock" --containerd-namespace berth-vsdocker \
    --containerd-plugins-namespace berth-vsdocker-plugins --storage-driver overlay2 \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$sock"
export DOCKER_CONFIG="$work/docker-config"
for _ in $(seq 600); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -30 "$work/dockerd.log" >&2; log "dockerd exited"; exit 1; }
    sleep 0.1
done
docker version --format 'against-docker: Docker Engine {{.Server.Version}} (API {{.Server.APIVersion}}) on {{.Client.Os}}' >&2

reset_docker() {
    # A fresh engine for each script, as berth's tests give each one a fresh daemon.
    docker ps -aq | xargs -r docker rm -f >/dev/null
    docker network prune -f >/dev/null
    docker volume ls -q | xargs -r docker volume rm -f >/dev/null
    # A committed image's parent cannot go before it ("image has dependent child
    # images"): rounds until none is left.
    for _ in 1 2 3 4 5 6 7 8; do
        ids=$(docker images -aq | sort -u)
        [ -n "$ids" ] || break
        echo "$ids" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    done
}

if [ "$mode" = cmd ]; then
    export BERTH_TEST_AGAINST_DOCKER="$DOCKER_HOST"
    export BERTH_TEST_DOCKER_NETNS="$ns"
    export BERTH_TEST_ENGINE=docker
    rc=0
    "${cmd[@]}" || rc=$?
    exit "$rc"
fi

if [ "${#scripts[@]}" -eq 0 ]; then
    for f in tests/sdk/*.py; do
        n=$(basename "$f" .py)
        # pty_docker.py drives the docker CLI on a terminal (attach_docker_cli.rs), it is no
        # SDK script; _engine.py is the scripts' shared helper.
        case "$n" in pty_docker | _*) continue ;; esac
        scripts+=("$n")
    done
fi

export BERTH_TEST_ENGINE=docker
failed=()
for n in "${scripts[@]}"; do
    reset_docker
    args=("unix://$sock" "$repo/tests/fixtures")
    # cp.py expects the fixture image loaded, as cp_docker_cli.rs does before it runs it.
    [ "$n" = cp ] && docker load -q -i tests/fixtures/app-docker-save.tar >/dev/null
    start=$(date +%s%N)
    out=$(timeout 600 python3 "tests/sdk/$n.py" "${args[@]}" 2>&1) || true
    ms=$((($(date +%s%N) - start) / 1000000))
    secs="$((ms / 1000)).$((ms % 1000 / 100))"
    if [ "$(echo "$out" | tail -1)" = ok ]; then
        printf 'against-docker: %-18s ok    (%s s)\n' "$n" "$secs" >&2
    else
        printf 'against-docker: %-18s FAIL  (%s s)\n%s\n' "$n" "$secs" "$out" >&2
        failed+=("$n")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    log "failed against Docker: ${failed[*]} (dockerd's log: tail below)"
    tail -20 "$work/dockerd.log" >&2
    exit 1
fi
log "every script passed against Docker"
