#!/usr/bin/env bash
# `docker logs --tail 5` of a big log, and what it costs the daemon's memory: a berth
# daemon on a scratch root (in a network namespace of its own), one container that wrote
# a ~50 MB json-file log, then
#   - the latency of `docker logs --tail 5` (RUNS runs, median),
#   - the latency of `docker logs` of the whole log to /dev/null (3 runs, median),
#   - the daemon's RSS (VmRSS) and peak (VmHWM, reset before each phase through
#     /proc/PID/clear_refs) after start, after the log was written, over the tail runs and
#     over the full reads.
# With PEERS=docker (the default) and a `dockerd` on the machine (Debian's docker.io), the
# same container and the same `--tail 5` against Docker Engine in the same run, started as
# docs/PEERS.md says (its own data root, own network namespace, no bridge); without
# dockerd, berth's figures only.
#
# Environment:
#   RUNS=15              --tail 5 runs per daemon (after one warm-up)
#   LOG_MB=50            size of the log to write (MB)
#   LOG_OPTS="--log-opt max-size=100m"   the container's log options (one file by default;
#                        e.g. "--log-opt max-size=20m --log-opt max-file=3" to tail across
#                        rotated files)
#   BENCH_DIR=bench/out
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
#   PEERS=docker         "" for berth only
# Exit status: 0, or 1 on an error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
RUNS=${RUNS:-15}
LOG_MB=${LOG_MB:-50}
LOG_OPTS=${LOG_OPTS:---log-opt max-size=100m}
PEERS=${PEERS-docker}
IMAGE=fixture/app:1
ARCHIVE=$REPO_DIR/tests/fixtures/app-docker-save.tar
NETNS=berth-bench-logs-$$

log() { printf '[logs-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
command -v docker >/dev/null || die "the docker CLI is needed (the client)"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/logs
rm -rf "$WORK"
mkdir -p "$WORK"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]]; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
fi

DAEMON=""
DOCKERD=""
cleanup() {
    if [[ -n $DAEMON ]]; then
        DOCKER_HOST=unix://$WORK/berth.sock docker rm -f logger >/dev/null 2>&1 || true
        kill "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    if [[ -n $DOCKERD ]]; then
        DOCKER_HOST=unix://$WORK/docker.sock docker rm -f logger >/dev/null 2>&1 || true
        kill "$DOCKERD" 2>/dev/null || true
        wait "$DOCKERD" 2>/dev/null || true
        # dockerd leaves its containerd running: the one whose socket is in our exec root.
        for p in $(pgrep -x containerd || true); do
            if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$WORK/docker-exec"; then
                kill "$p" 2>/dev/null || true
            fi
        done
    fi
    for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NETNS"

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# Forget the peak: VmHWM starts again from the current RSS.
reset_peak() { echo 5 >"/proc/$1/clear_refs"; }
mem() { printf '%s rss=%s kB peak=%s kB' "$2" "$(kb "$1" VmRSS)" "$(kb "$1" VmHWM)"; }

wait_sock() {
    for _ in $(seq 300); do [[ -S $1 ]] && return 0; sleep 0.1; done
    return 1
}

# One daemon: $1 a name, $2 its pid, $3 its socket. Prints a result line per figure.
measure() {
    local name=$1 pid=$2 sock=$3
    export DOCKER_HOST=unix://$sock
    docker load -i "$ARCHIVE" >/dev/null
    local idle; idle=$(mem "$pid" idle)
    reset_peak "$pid"
    # ~LOG_MB MB of json-file records: 100-byte lines (about 160 bytes a record).
    local lines=$((LOG_MB * 1000 * 1000 / 160))
    docker run -d --name logger --no-healthcheck $LOG_OPTS "$IMAGE" \
        "busybox seq -w 1 $lines | busybox sed 's/$/ a line of about one hundred bytes of output, as a busy service would print it/'" >/dev/null
    [[ $(docker wait logger) == 0 ]] || die "$name: the logging container failed"
    local written; written=$(mem "$pid" written)
    local got; got=$(docker logs --tail 5 logger | wc -l)
    [[ $got -eq 5 ]] || die "$name: --tail 5 gave $got lines"
    reset_peak "$pid"
    local t=()
    for _ in $(seq "$RUNS"); do
        local a; a=$(now_ns)
        docker logs --tail 5 logger >/dev/null
        t+=($(( ($(now_ns) - a) / 1000 )))
    done
    local tail_med; tail_med=$(printf '%s\n' "${t[@]}" | median)
    local tailed; tailed=$(mem "$pid" after-tail)
    reset_peak "$pid"
    local f=()
    for _ in 1 2 3; do
        local a; a=$(now_ns)
        docker logs logger >/dev/null 2>&1
        f+=($(( ($(now_ns) - a) / 1000 )))
    done
    local full_med; full_med=$(printf '%s\n' "${f[@]}" | median)
    local full; full=$(mem "$pid" after-full)
    local size; size=$(docker inspect -f '{{.LogPath}}' logger | xargs -I{} sh -c 'cat {}* | wc -c')
    docker rm -f logger >/dev/null
    unset DOCKER_HOST
    printf '%-7s log %s bytes, %s lines\n' "$name" "$size" "$lines"
    printf '%-7s docker logs --tail 5: median %.1f ms (%s runs); docker logs (all): median %.0f ms (3 runs)\n' \
        "$name" "$(echo "$tail_med / 1000" | bc -l)" "$RUNS" "$(echo "$full_med / 1000" | bc -l)"
    printf '%-7s memory: %s | %s | %s | %s\n' "$name" "$idle" "$written" "$tailed" "$full"
}

command -v bc >/dev/null || { log "installing bc"; apt-get install -y -qq bc >/dev/null; }

log "berth: $BERTH_BIN"
nsenter --net="/run/netns/$NETNS" "$BERTH_BIN" daemon --root "$WORK/root" \
    --host "unix://$WORK/berth.sock" --log-level warn >"$WORK/berth.log" 2>&1 &
DAEMON=$!
wait_sock "$WORK/berth.sock" || die "berth did not start: $(cat "$WORK/berth.log")"
measure berth "$DAEMON" "$WORK/berth.sock" | tee "$WORK/results.txt"

if [[ " $PEERS " == *" docker "* ]]; then
    if command -v dockerd >/dev/null; then
        log "docker: $(dockerd --version)"
        nsenter --net="/run/netns/$NETNS" dockerd --data-root "$WORK/docker-data" \
            --exec-root "$WORK/docker-exec" --host "unix://$WORK/docker.sock" \
            --pidfile "$WORK/docker.pid" --bridge=none --iptables=false --ip-forward=false \
            >"$WORK/dockerd.log" 2>&1 &
        DOCKERD=$!
        wait_sock "$WORK/docker.sock" || die "dockerd did not start: $(tail "$WORK/dockerd.log")"
        # --bridge=none: the container gets --network none's loopback, as berth's would
        # with no bridge; the log path is the same either way.
        LOG_OPTS="$LOG_OPTS --network none" measure docker "$DOCKERD" "$WORK/docker.sock" | tee -a "$WORK/results.txt"
    else
        log "no dockerd on this machine (Debian's docker.io): berth's figures only"
    fi
fi
log "results in $WORK/results.txt"
