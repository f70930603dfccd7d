#!/usr/bin/env bash
# What a user namespace costs at container start: `berth run --rm IMAGE true` end to end
# (create, start, exit, removal) on one daemon started with `--userns-remap default`,
# side by side in one hyperfine run:
#   none-host     --userns=host  (no user namespace: berth's default without remapping)
#   none-remap    the daemon's remapping (the dockremap range)
#   none-auto     --userns=auto  (a range of its own, allocated at create)
# each with `--network none`, and the same three on the default bridge (`bridge-*`);
# and Podman 4.3 with `--userns host` and `--userns auto` (`--network none`).
# Prints each median and its ratio to the same tool and network without a user namespace.
#
# Environment:
#   RUNS=20 WARMUP=3
#   BENCH_DIR=bench/out
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
# Needs root; installs hyperfine and podman (Debian's) when missing; adds `containers:2147483647:2147483648` to /etc/subuid and
# /etc/subgid when the user containers has no range (Podman's setting, for --userns=auto).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}

log() { printf '[userns-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
for t in hyperfine podman; do
    command -v "$t" >/dev/null || {
        log "installing $t"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$t" >/dev/null
    }
done

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/userns
rm -rf "$WORK"
mkdir -p "$WORK"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]]; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
fi

for f in /etc/subuid /etc/subgid; do
    grep -q '^containers:' "$f" 2>/dev/null || {
        log "adding a range for the user containers to $f"
        echo 'containers:2147483647:2147483648' >>"$f"
    }
done

SOCK=$WORK/berth.sock
"$BERTH_BIN" daemon --root "$WORK/root" --host "unix://$SOCK" --bridge berth-bench1 \
    --userns-remap default >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
cleanup() {
    kill "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
    for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    ip link del berth-bench1 2>/dev/null || true
    nft delete table ip berth 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || die "daemon did not start: $(cat "$WORK/daemon.log")"
B="$BERTH_BIN -H unix://$SOCK"
$B load -i "$REPO_DIR/tests/fixtures/app-docker-save.tar" >/dev/null
IMAGE=fixture/app:1

args=()
for net in none bridge; do
    nflag=""
    [[ $net == none ]] && nflag="--network none"
    for mode in host remap auto; do
        uflag=""
        [[ $mode == host ]] && uflag="--userns host"
        [[ $mode == auto ]] && uflag="--userns auto"
        cmd="$B run --rm --no-healthcheck $nflag $uflag $IMAGE true"
        $cmd || die "sanity run failed: $cmd"
        args+=(-n "$net-$mode" "$cmd")
    done
done
# Podman (the peer with --userns=auto), --network none, on a root of its own: the
# flags this machine needs (docs: ../shared/PEERS.md).
if command -v podman >/dev/null; then
    P="podman --root $WORK/podman-root --runroot $WORK/podman-run --cgroup-manager=cgroupfs --runtime runc"
    $P load -q -i "$REPO_DIR/tests/fixtures/app-docker-save.tar" >/dev/null
    for mode in host auto; do
        cmd="$P run --rm --network none --userns $mode --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --no-healthcheck $IMAGE true"
        if $cmd >/dev/null 2>"$WORK/podman-$mode.err"; then
            args+=(-n "podman-none-$mode" "$cmd")
        else
            log "podman --userns $mode does not run here: $(tail -1 "$WORK/podman-$mode.err")"
        fi
    done
fi
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/results.json" "${args[@]}" >&2

python3 - "$WORK/results.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
print("%-18s %10s %8s" % ("run", "median ms", "ratio"))
for tool, net, modes in (("", "none", ("host", "remap", "auto")),
                         ("", "bridge", ("host", "remap", "auto")),
                         ("podman-", "none", ("host", "auto"))):
    if tool + net + "-host" not in r:
        continue
    base = r[tool + net + "-host"]["median"]
    for mode in modes:
        name = "%s%s-%s" % (tool, net, mode)
        if name in r:
            m = r[name]["median"]
            print("%-18s %10.1f %8.2f" % (name, m * 1000, m / base))
if "podman-none-auto" in r:
    print("berth auto / podman auto (none): %.2f" % (r["none-auto"]["median"] / r["podman-none-auto"]["median"]))
EOF
