#!/usr/bin/env bash
# Daemon memory over many short containers: a berth daemon on a scratch root (in a
# network namespace of its own, default bridge network), then N `docker run --rm
# --no-healthcheck fixture/app:1 true` one after the other; the daemon's RSS (VmRSS) and
# peak (VmHWM), its thread count and open fds are printed every STEP runs. A daemon whose
# memory is flat prints about the same RSS from the first hundreds of runs on (the first
# ones warm the allocator's arenas and the lazily made state).
# Then BATCH containers are created and started detached (`sleep`), measured, removed,
# and measured again: what a container costs while it runs and what is left after `rm`.
#
# Environment:
#   N=1000               `run --rm` runs
#   STEP=100             print every STEP runs
#   BATCH=200            containers of the batch phase (0: skip it)
#   BATCH_ROUNDS=2       batch phases, one after the other (the second shows whether the
#                        first's memory is reused or added to)
#   SETTLE=15            seconds idle after the batch's removal before the last figure
#   BENCH_DIR=bench/out
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
# Exit status: 0, or 1 on an error (a failed run, a container left behind).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
N=${N:-1000}
STEP=${STEP:-100}
BATCH=${BATCH:-200}
SETTLE=${SETTLE:-15}
BATCH_ROUNDS=${BATCH_ROUNDS:-2}
IMAGE=fixture/app:1
ARCHIVE=$REPO_DIR/tests/fixtures/app-docker-save.tar
NETNS=berth-bench-soak-$$

log() { printf '[soak] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
command -v docker >/dev/null || die "the docker CLI is needed (the client)"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/soak
rm -rf "$WORK"
mkdir -p "$WORK"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]]; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
fi

DAEMON=""
cleanup() {
    if [[ -n $DAEMON ]]; then
        # shellcheck disable=SC2046
        docker rm -f $(docker ps -aq 2>/dev/null) >/dev/null 2>&1 || true
        kill "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NETNS"
export DOCKER_HOST=unix://$WORK/berth.sock

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$DAEMON/status"; }
report() {
    printf '%-14s rss=%6s kB  peak=%6s kB  threads=%3s  fds=%3s\n' "$1" "$(kb VmRSS)" "$(kb VmHWM)" \
        "$(kb Threads)" "$(ls "/proc/$DAEMON/fd" | wc -l)" | tee -a "$WORK/results.txt"
}

log "berth: $BERTH_BIN"
nsenter --net="/run/netns/$NETNS" "$BERTH_BIN" daemon --root "$WORK/root" \
    --host "$DOCKER_HOST" --log-level warn >"$WORK/berth.log" 2>&1 &
DAEMON=$!
for _ in $(seq 300); do [[ -S $WORK/berth.sock ]] && break; sleep 0.1; done
[[ -S $WORK/berth.sock ]] || die "berth did not start: $(cat "$WORK/berth.log")"
docker load -i "$ARCHIVE" >/dev/null
report "loaded"

start=$(date +%s)
for i in $(seq "$N"); do
    docker run --rm --no-healthcheck "$IMAGE" true >/dev/null || die "run $i failed"
    if (( i % STEP == 0 )); then report "run --rm $i"; fi
done
log "$N runs in $(( $(date +%s) - start )) s"
left=$(docker ps -aq | wc -l)
[[ $left -eq 0 ]] || die "$left containers left behind by run --rm"

for round in $(seq "$BATCH_ROUNDS"); do
    (( BATCH > 0 )) || break
    for i in $(seq "$BATCH"); do
        docker run -d --no-healthcheck --name "soak-$i" "$IMAGE" "sleep 600" >/dev/null || die "batch $i failed"
    done
    report "$BATCH running"
    # shellcheck disable=SC2046
    docker rm -f $(docker ps -aq) >/dev/null
    report "$BATCH removed"
    # The API's blocking threads (one per concurrent request) end after 10 s idle.
    sleep "$SETTLE"
    report "${SETTLE}s later"
done
log "results in $WORK/results.txt"
