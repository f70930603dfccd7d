#!/usr/bin/env bash
# Supervisor memory: N idle containers (`sleep`) started through the berth daemon, then
# the proportional set size (Pss, /proc/PID/smaps_rollup) of each container's
# supervisor (`berth-shim`), summed and per container. Pss splits shared pages among the
# processes that map them, so the sum is what the shims really cost the host.
# For reference, the same figure for podman's conmon when podman is installed
# (PEERS=podman), measured in the same run.
#
# Environment:
#   N=50                 containers
#   BENCH_DIR=bench/out
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
#   PEERS="podman"       also measure these (podman: conmon per container); "" for none
# Exit status: 0 when berth's shim is at most 300 kB Pss per container (issue 3), 3 if not.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
N=${N:-50}
PEERS=${PEERS-podman}
TARGET_KB=300

log() { printf '[shim-pss] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/shim-pss
rm -rf "$WORK"
mkdir -p "$WORK/rootfs/bin"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]]; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
fi
cp "$(command -v busybox)" "$WORK/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -czf "$WORK/rootfs.tar.gz" .

SOCK=$WORK/berth.sock
# No networking: the supervisors are measured, and the host's network is left alone.
"$BERTH_BIN" daemon --root "$WORK/root" --host "unix://$SOCK" --bridge none >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
B() { "$BERTH_BIN" -H "unix://$SOCK" "$@"; }
cleanup() {
    B ps -aq 2>/dev/null | xargs -r "$BERTH_BIN" -H "unix://$SOCK" rm -f >/dev/null 2>&1 || true
    kill "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
    if [[ " $PEERS " == *" podman "* ]] && command -v podman >/dev/null; then
        podman --root "$WORK/podman" --runroot "$WORK/podman-run" rm -af -t 0 >/dev/null 2>&1 || true
    fi
    for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || die "daemon did not start: $(cat "$WORK/daemon.log")"
B import "$WORK/rootfs.tar.gz" bench/sleep:1 >/dev/null

log "starting $N containers"
for i in $(seq "$N"); do B run -d --name "s$i" bench/sleep:1 sleep 100000 >/dev/null; done
sleep 2 # let them settle (page faults of start-up done)

# Pss of every process whose command is $1 and whose argv mentions $2.
pss_sum() {
    local comm=$1 pattern=$2 total=0 count=0
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == "$comm" ]] || continue
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$pattern" || continue
        kb=$(awk '/^Pss:/ {print $2}' "$p/smaps_rollup" 2>/dev/null || echo 0)
        total=$((total + kb)); count=$((count + 1))
    done
    echo "$count $total"
}

read -r count total < <(pss_sum berth-shim "$WORK/root")
[[ $count -eq $N ]] || die "found $count berth-shim processes, expected $N"
per=$((total / count))
printf '%-28s %6s %12s %14s\n' "supervisor" "count" "Pss total kB" "Pss/container"
printf '%-28s %6d %12d %11d kB\n' "berth-shim" "$count" "$total" "$per"

if [[ " $PEERS " == *" podman "* ]] && command -v podman >/dev/null; then
    P() { podman --root "$WORK/podman" --runroot "$WORK/podman-run" "$@"; }
    P import "$WORK/rootfs.tar.gz" localhost/bench/sleep:1 >/dev/null 2>&1
    for i in $(seq "$N"); do P run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/bench/sleep:1 sleep 100000 >/dev/null; done
    sleep 2
    read -r pc pt < <(pss_sum conmon "$WORK/podman-run")
    if [[ $pc -gt 0 ]]; then
        printf '%-28s %6d %12d %11d kB\n' "podman conmon" "$pc" "$pt" "$((pt / pc))"
        awk -v a="$per" -v b="$((pt / pc))" 'BEGIN { printf "berth-shim/conmon: %.2f\n", a / b }'
    fi
fi

if [[ $per -le $TARGET_KB ]]; then
    echo "target <= ${TARGET_KB} kB per container: met"
else
    echo "target <= ${TARGET_KB} kB per container: MISSED"
    exit 3
fi
