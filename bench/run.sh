#!/usr/bin/env bash
# Container start-to-cleanup benchmark: `berth run --rm IMAGE /bin/true` end to end
# (CLI -> socket -> daemon -> shim -> libcontainer -> exit -> removal), side by side with
# `runc run` on a prepared bundle of the same rootfs (runc from Debian), in one run.
# runc runs two bundles: the spec `runc spec` writes (no seccomp profile, 3 capabilities,
# no resource limits), and the spec berth generates for the same container (moby's
# seccomp profile, Podman's capabilities, pids limit, masked paths) — the second is the
# same work berth asks of libcontainer, so it is the like-for-like comparison.
# berth runs with `--network none` (runc's spec has a network namespace with loopback
# only: like for like) and, as `berth-bridge`, on the default bridge network (a veth
# pair made before the start and removed after the exit).
# For reference it also times the docker CLI against the same berth daemon
# (`docker run --rm`, default bridge), which adds the docker CLI's own start-up.
#
# Environment:
#   RUNS=30              timed runs per tool (hyperfine), after WARMUP runs
#   WARMUP=3
#   BENCH_DIR=bench/out  work dir (state root, bundle, results)
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
#   TOOLS="runc berth docker"        subset to run
# Exit status: 0 when berth is no slower than runc (the issue's target), 3 otherwise.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
TOOLS=${TOOLS:-runc berth docker}
IMAGE=bench/true:1

log() { printf '[run-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " ${TOOLS//,/ } " == *" $1 "* ]]; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
for t in hyperfine runc busybox python3; do
    command -v "$t" >/dev/null || {
        log "installing $t"
        pkg=$t; [[ $t == busybox ]] && pkg=busybox-static
        apt-get install -y -qq "$pkg" >/dev/null
    }
done

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/run
rm -rf "$WORK"
mkdir -p "$WORK"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]]; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
fi

# The rootfs: busybox-static with a /bin/true, the same bytes for both.
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev" "$ROOTFS/tmp"
cp "$(command -v busybox)" "$ROOTFS/bin/busybox"
for a in sh true; do ln -s busybox "$ROOTFS/bin/$a"; done
tar -C "$ROOTFS" -czf "$WORK/rootfs.tar.gz" .

# runc (1): the bundle `runc spec` writes, running /bin/true without a terminal.
BUNDLE=$WORK/bundle
mkdir -p "$BUNDLE"
cp -a "$ROOTFS" "$BUNDLE/rootfs"
(cd "$BUNDLE" && runc spec)
python3 - "$BUNDLE/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
json.dump(c, open(p, "w"), indent=2)
EOF

# berth: a daemon on its own root, the same rootfs imported as an image. Its default
# bridge gets a name of its own so a berth daemon already running here is not disturbed.
SOCK=$WORK/berth.sock
"$BERTH_BIN" daemon --root "$WORK/root" --host "unix://$SOCK" --bridge berth-bench0 >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
cleanup() {
    kill "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
    for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    # The bench daemon's bridge and berth's nftables table (do not run this bench on a
    # host where a berth daemon serves: there is one berth table per network namespace).
    ip link del berth-bench0 2>/dev/null || true
    nft delete table ip berth 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || die "daemon did not start: $(cat "$WORK/daemon.log")"
"$BERTH_BIN" -H "unix://$SOCK" import "$WORK/rootfs.tar.gz" "$IMAGE" >/dev/null

# runc (2): berth's own spec for this container, pointed at the bundle's rootfs and a
# cgroup of its own.
SPEC_ID=$("$BERTH_BIN" -H "unix://$SOCK" create --network none "$IMAGE" /bin/true)
BERTH_BUNDLE=$WORK/bundle-berth-spec
mkdir -p "$BERTH_BUNDLE"
cp -a "$ROOTFS" "$BERTH_BUNDLE/rootfs"
python3 - "$WORK/root/containers/$SPEC_ID/bundle/config.json" "$BERTH_BUNDLE/config.json" <<'EOF'
import json, os, shutil, sys
c = json.load(open(sys.argv[1]))
c["root"] = {"path": "rootfs", "readonly": False}
# berth binds the container's /etc/hosts, resolv.conf and hostname from its directory:
# runc gets copies of the same files (the container is removed below).
cdir = os.path.dirname(os.path.dirname(sys.argv[1]))
for m in c.get("mounts", []):
    src = m.get("source", "")
    if src.startswith(cdir + "/"):
        dst = os.path.join(os.path.dirname(sys.argv[2]), "etc-" + os.path.basename(src))
        shutil.copy(src, dst)
        m["source"] = dst
c["linux"]["cgroupsPath"] = "/berth-bench/runc"
c["process"]["terminal"] = False
json.dump(c, open(sys.argv[2], "w"), indent=2)
EOF
"$BERTH_BIN" -H "unix://$SOCK" rm "$SPEC_ID" >/dev/null

# Sanity: each tool really runs the container.
runc run -b "$BUNDLE" bench-sanity
runc run -b "$BERTH_BUNDLE" bench-sanity2
"$BERTH_BIN" -H "unix://$SOCK" run --rm "$IMAGE" /bin/sh -c 'exit 0'

cmds=()
names=()
if want runc; then
    cmds+=("runc run -b $BUNDLE bench-runc")
    names+=("runc-default-spec")
    cmds+=("runc run -b $BERTH_BUNDLE bench-runc2")
    names+=("runc")
fi
if want berth; then
    # Like for like with runc: a private network namespace with loopback only.
    cmds+=("$BERTH_BIN -H unix://$SOCK run --rm --network none $IMAGE /bin/true")
    names+=("berth")
    # The default: a veth on the default bridge, set up before and removed after.
    cmds+=("$BERTH_BIN -H unix://$SOCK run --rm $IMAGE /bin/true")
    names+=("berth-bridge")
fi
if want docker && command -v docker >/dev/null; then
    cmds+=("docker -H unix://$SOCK run --rm $IMAGE /bin/true")
    names+=("docker-cli-on-berth")
fi
args=()
for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/results.json" "${args[@]}" >&2

# Nothing may be left behind by berth's --rm.
left=$("$BERTH_BIN" -H "unix://$SOCK" ps -aq | wc -l)
[[ $left -eq 0 ]] || die "$left containers left behind by run --rm"

python3 - "$WORK/results.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
def ms(name):
    x = r.get(name)
    return None if x is None else x["median"] * 1000
# "runc" runs berth's spec (like for like); "runc-default-spec" the one `runc spec` writes.
print("%-22s %10s %10s" % ("tool", "median ms", "mean ms"))
for name, x in r.items():
    print("%-22s %10.1f %10.1f" % (name, x["median"] * 1000, x["mean"] * 1000))
runc, berth, plain = ms("runc"), ms("berth"), ms("runc-default-spec")
if plain and berth:
    print("berth/runc with runc's default spec (median): %.2f" % (berth / plain))
if runc and berth:
    ratio = berth / runc
    print("berth/runc with berth's spec (median): %.2f  (target <= 1.00: %s)" % (ratio, "met" if ratio <= 1.0 else "MISSED"))
    sys.exit(0 if ratio <= 1.0 else 3)
EOF
