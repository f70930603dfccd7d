#!/usr/bin/env bash
# Attach benchmark (foreground docker run): the time from command to exit of a container that runs
# `true`, through berth (the docker CLI against a berth daemon) and through runc
# directly, on the same machine in the same run. See bench/README.md.
#
# Measured (hyperfine, each command end to end):
#   runc          runc run -b BUNDLE ID (foreground, the runtime alone: no daemon, no CLI)
#   berth-fg      docker run --rm IMAGE true        (attached before the start)
#   berth-detach  docker run -d IMAGE true; docker wait; docker rm   (nothing attached)
# The berth figures include the docker CLI (a Go binary started per command) and the API
# round trips, which runc does not pay. start_handshake.py then times POST /start alone,
# without and with a pending attach: what attaching before the start costs the start
# (the attached clients are handed to the shim with it; no handshake since 96ac8f4).
#
# Environment:
#   RUNS=30                  runs per command
#   BENCH_DIR=bench/out      work dir (state root, bundle, results)
#   BERTH_BIN=target/release/berth   (built with cargo if missing; berth-shim and
#                            berth-driver must be next to it, or BERTH_SHIM set)
#   BERTH_SHIM=              another berth-shim (berth-driver next to it), passed to
#                            the daemon
# Needs root, runc, hyperfine and the docker CLI.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
RUNS=${RUNS:-30}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
FIXTURE=$REPO_DIR/tests/fixtures/app-docker-save.tar
IMAGE=fixture/app:1

log() { printf '[attach-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
for t in runc hyperfine docker python3; do
    command -v "$t" >/dev/null || die "$t is not installed"
done
if [[ ! -x $BERTH_BIN ]]; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim)
fi

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$(mktemp -d "$BENCH_DIR/attach.XXXXXX")
DAEMON_PID=
cleanup() {
    [[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    runc delete -f bench-runc >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# runc's bundle: the fixture image's layers unpacked, runc's default spec running true.
log "preparing the runc bundle"
mkdir -p "$WORK/img" "$WORK/bundle/rootfs"
tar -xf "$FIXTURE" -C "$WORK/img"
python3 - "$WORK/img" "$WORK/bundle/rootfs" <<'EOF'
import json, subprocess, sys
img, rootfs = sys.argv[1], sys.argv[2]
for layer in json.load(open(f"{img}/manifest.json"))[0]["Layers"]:
    subprocess.run(["tar", "-xf", f"{img}/{layer}", "-C", rootfs], check=True)
EOF
(cd "$WORK/bundle" && runc spec)
python3 - "$WORK/bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"))
EOF

log "starting berth daemon"
SOCK=$WORK/berth.sock
"$BERTH_BIN" daemon --root "$WORK/root" --host "unix://$SOCK" --bridge none >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || die "daemon did not come up: $(cat "$WORK/daemon.log")"
export DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=$WORK/docker-config
docker load -i "$FIXTURE" >/dev/null

# --rm needs AutoRemove; without it, remove explicitly (same work, one more CLI call).
if docker run --rm "$IMAGE" true >/dev/null 2>&1; then
    FG="docker run --rm $IMAGE true"
else
    log "AutoRemove (--rm) is not supported by this build: foreground run + docker rm"
    FG="sh -c 'id=\$(docker create $IMAGE true) && docker start -a \$id >/dev/null && docker rm \$id >/dev/null'"
fi
DETACH="sh -c 'id=\$(docker run -d $IMAGE true) && docker wait \$id >/dev/null && docker rm \$id >/dev/null'"

hyperfine --runs "$RUNS" --warmup 3 --export-markdown "$BENCH_DIR/attach-results.md" \
    -n runc "runc run -b $WORK/bundle bench-runc" \
    -n berth-fg "$FG" \
    -n berth-detach "$DETACH"
log "results: $BENCH_DIR/attach-results.md"
log "start latency without and with a pending attach"
python3 "$SCRIPT_DIR/start_handshake.py" "$SOCK" 15
