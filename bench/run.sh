#!/usr/bin/env bash
# Container start-to-cleanup benchmark: `berth run --rm IMAGE /bin/true` end to end
# (CLI -> socket -> daemon -> shim -> libcontainer -> exit -> removal), side by side with
# `runc run` on a prepared bundle of the same rootfs (runc from Debian), Docker 20.10 and
# Podman 4.3, in one run.
# runc runs two bundles: the spec `runc spec` writes (no seccomp profile, 3 capabilities,
# no resource limits), and the spec berth generates for the same container (moby's
# seccomp profile, Podman's capabilities, pids limit, masked paths) — the second is the
# same work berth asks of libcontainer.
# berth runs with `--network none` (runc's spec has a network namespace with loopback
# only: like for like) and, as `berth-bridge`, on the default bridge network (a veth
# pair made before the start, removed after the exit).
# It also times the docker CLI against the same berth daemon (`docker-cli-on-berth`,
# `--network none`: the same run as `berth`, so the difference is the client's).
# Peers (PEERS): Docker 20.10's dockerd in a network namespace of its own (its default
# bridge and iptables there, the host's untouched) with the docker CLI, `--network none`
# and its default bridge; Podman 4.3 (`--network none`, cgroupfs, runc, its own --root).
# Then PARALLEL `run --rm` (CONCURRENCY at a time, xargs -P) with each network: berth's
# CLI against berth and the docker CLI against dockerd, the wall time of each batch. After
# berth's batches every container, veth on the bench bridge and network namespace must be
# gone once the daemon settles (the script fails otherwise).
#
# Environment:
#   RUNS=30              timed runs per tool (interleaved rounds, below), after WARMUP runs
#   WARMUP=3
#   BENCH_DIR=bench/out  work dir (state root, bundle, results)
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
#   TOOLS="runc berth docker"        subset to run (docker: the docker CLI against berth)
#   PEERS="dockerd podman"           peers to run (Debian's docker.io and podman)
#   PARALLEL=100 CONCURRENCY=20      the parallel batches (PARALLEL=0: none)
#   STOPPED=0            then this many exited containers in each engine, and the timed
#                        runs again (STOPPED=200: a start must not slow with them)
# Exit status: 0 when `berth run --rm --network none` is no slower than `runc run` on
# runc's default bundle (issue 17's target), 3 otherwise; 1 on an error or a leak.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
TOOLS=${TOOLS:-runc berth docker}
PEERS=${PEERS:-dockerd podman}
PARALLEL=${PARALLEL:-100}
CONCURRENCY=${CONCURRENCY:-20}
STOPPED=${STOPPED:-0}
IMAGE=bench/true:1

log() { printf '[run-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " ${TOOLS//,/ } " == *" $1 "* ]]; }
peer() { [[ " ${PEERS//,/ } " == *" $1 "* ]]; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers)"
for t in runc busybox python3; do
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
DOCKERD=""
DOCKER_NS=berth-bench-run-$$
DOCKER_EXEC=/tmp/berth-bench-run-$$
cleanup() {
    kill "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
    if [[ -n $DOCKERD ]]; then
        kill "$DOCKERD" 2>/dev/null || true
        wait "$DOCKERD" 2>/dev/null || true
        # dockerd leaves its containerd running: the one whose socket is in our exec root.
        for p in $(pgrep -x containerd || true); do
            if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$DOCKER_EXEC"; then
                kill "$p" 2>/dev/null || true
            fi
        done
    fi
    ip netns del "$DOCKER_NS" 2>/dev/null || true
    for m in $(awk -v w="$DOCKER_EXEC" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    rm -rf "$DOCKER_EXEC"
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
# berth binds the container's own cgroup directories on v1 (`/sys/fs/cgroup/X/<cgroupsPath>`):
# point them at runc's cgroup for this bundle, which runc makes before it mounts them.
old_cg = c["linux"].get("cgroupsPath", "")
c["linux"]["cgroupsPath"] = "/berth-bench/runc"
for m in c.get("mounts", []):
    src = m.get("source", "")
    if old_cg and src.startswith("/sys/fs/cgroup/") and src.endswith(old_cg):
        m["source"] = src[: -len(old_cg)] + "/berth-bench/runc"
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
    cmds+=("docker -H unix://$SOCK run --rm --network none $IMAGE /bin/true")
    names+=("docker-cli-on-berth")
fi

# Docker 20.10 in a network namespace of its own (its bridge and iptables rules there).
DSOCK=$WORK/docker.sock
if peer dockerd && command -v dockerd >/dev/null && command -v docker >/dev/null; then
    ip netns add "$DOCKER_NS"
    ip -n "$DOCKER_NS" link set lo up
    mkdir -p "$DOCKER_EXEC"
    nsenter --net="/run/netns/$DOCKER_NS" -- dockerd --data-root "$WORK/docker-data" \
        --exec-root "$DOCKER_EXEC" --host "unix://$DSOCK" --pidfile "$WORK/docker.pid" \
        >"$WORK/dockerd.log" 2>&1 &
    DOCKERD=$!
    for _ in $(seq 300); do docker -H "unix://$DSOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
    docker -H "unix://$DSOCK" version >/dev/null 2>&1 || die "dockerd did not start: $(tail "$WORK/dockerd.log")"
    log "docker: $(dockerd --version)"
    docker -H "unix://$DSOCK" import "$WORK/rootfs.tar.gz" "$IMAGE" >/dev/null
    docker -H "unix://$DSOCK" run --rm "$IMAGE" /bin/true
    cmds+=("docker -H unix://$DSOCK run --rm --network none $IMAGE /bin/true")
    names+=("docker")
    cmds+=("docker -H unix://$DSOCK run --rm $IMAGE /bin/true")
    names+=("docker-bridge")
elif peer dockerd; then
    log "no dockerd (Debian's docker.io) or docker CLI here: no Docker figures"
fi
# Podman 4.3 with its own storage; cgroupfs and runc (crun refuses this hybrid cgroup
# layout), limits within this machine's hard limits (../shared/PEERS.md).
if peer podman && command -v podman >/dev/null; then
    PODMAN="podman --root $WORK/podman-root --runroot $WORK/podman-run --cgroup-manager=cgroupfs --runtime runc --events-backend=none"
    $PODMAN import "$WORK/rootfs.tar.gz" "$IMAGE" >/dev/null
    PODMAN_RUN="$PODMAN run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/$IMAGE /bin/true"
    $PODMAN_RUN
    log "podman: $(podman --version)"
    cmds+=("$PODMAN_RUN")
    names+=("podman")
elif peer podman; then
    log "no podman here: no Podman figures"
fi
# Interleaved, not one tool after the other: this machine's speed drifts by 10-20 %
# within a minute (a VM with neighbours), which made hyperfine's sequential blocks
# give ratios anywhere between 0.86 and 1.17 for the same two binaries. Each round runs
# every tool twice in a row (the order rotating from round to round) and times the
# second run: a tool's run is preceded by its own (what one leaves to the background
# is paid by the next of its kind, as in a sequence of runs), and every tool sees the
# same minute of the machine.
timed_rounds() { # TSV (name<TAB>command per line) OUT.json
python3 - "$1" "$WARMUP" "$RUNS" "$2" <<'EOF'
import json, shlex, statistics, subprocess, sys, time
path, warmup, runs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tools = [l.rstrip("\n").split("\t", 1) for l in open(path) if l.strip()]
tools = [(n, shlex.split(c)) for n, c in tools]
def once(name, argv):
    t = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit("%s: exit %d: %s" % (name, r.returncode, r.stderr.decode()[-400:]))
    return time.perf_counter() - t
for n, a in tools:
    for _ in range(warmup):
        once(n, a)
times = {n: [] for n, _ in tools}
for i in range(runs):
    k = i % len(tools)
    for n, a in tools[k:] + tools[:k]:
        once(n, a)
        times[n].append(once(n, a))
results = []
for n, v in times.items():
    results.append({"command": n, "times": v, "median": statistics.median(v),
                    "mean": statistics.mean(v), "min": min(v), "max": max(v),
                    "stddev": statistics.stdev(v) if len(v) > 1 else 0.0})
    print("%-22s median %7.1f ms  mean %7.1f +- %5.1f  range %7.1f .. %7.1f  (%d runs)"
          % (n, statistics.median(v) * 1000, statistics.mean(v) * 1000,
             results[-1]["stddev"] * 1000, min(v) * 1000, max(v) * 1000, len(v)),
          file=sys.stderr)
json.dump({"results": results}, open(out, "w"), indent=1)
EOF
}
: >"$WORK/cmds.tsv"
for i in "${!cmds[@]}"; do printf '%s\t%s\n' "${names[$i]}" "${cmds[$i]}" >>"$WORK/cmds.tsv"; done
timed_rounds "$WORK/cmds.tsv" "$WORK/results.json"

# Nothing may be left behind by berth's --rm.
left=$("$BERTH_BIN" -H "unix://$SOCK" ps -aq | wc -l)
[[ $left -eq 0 ]] || die "$left containers left behind by run --rm"

# The parallel batches: PARALLEL runs, CONCURRENCY at a time; the wall time of each.
batch() { # NAME COMMAND...
    local name=$1
    shift
    local t0 t1
    t0=$(date +%s%N)
    if ! seq "$PARALLEL" | xargs -P "$CONCURRENCY" -I{} "$@" >"$WORK/batch-$name.out" 2>&1; then
        die "batch $name: a run failed: $(sort "$WORK/batch-$name.out" | uniq -c | head -5)"
    fi
    t1=$(date +%s%N)
    echo "$name $(((t1 - t0) / 1000000))" >>"$WORK/parallel.txt"
}
# What berth has left once it settles (10 s at most): containers, veths on its bridge,
# network namespaces. Prints their number when some are left.
settled_leaks() {
    local n=0
    for _ in $(seq 100); do
        n=$(($("$BERTH_BIN" -H "unix://$SOCK" ps -aq | wc -l) +
            $(ip -o link show master berth-bench0 2>/dev/null | wc -l) +
            $(find "$WORK/root/netns" -mindepth 1 2>/dev/null | wc -l)))
        [[ $n -eq 0 ]] && return 0
        sleep 0.1
    done
    echo "$n"
    return 1
}
: >"$WORK/parallel.txt"
if [[ $PARALLEL -gt 0 ]]; then
    log "parallel: $PARALLEL run --rm, $CONCURRENCY at a time"
    if want berth; then
        batch berth "$BERTH_BIN" -H "unix://$SOCK" run --rm --network none "$IMAGE" /bin/true
        batch berth-bridge "$BERTH_BIN" -H "unix://$SOCK" run --rm "$IMAGE" /bin/true
        leaks=$(settled_leaks) || die "after the parallel batches berth left $leaks containers, veths on berth-bench0 or namespaces"
    fi
    if [[ -n $DOCKERD ]]; then
        batch docker docker -H "unix://$DSOCK" run --rm --network none "$IMAGE" /bin/true
        batch docker-bridge docker -H "unix://$DSOCK" run --rm "$IMAGE" /bin/true
    fi
fi

# A host keeps containers that ran: STOPPED exited containers in each engine, then the
# same `run --rm --network none` again. A start must not cost more with each container
# the host keeps (berth once read every container's record on each lookup: 200 exited
# containers made a run --rm 2.5 times slower).
: >"$WORK/stopped.tsv"
if [[ $STOPPED -gt 0 ]]; then
    log "$STOPPED exited containers on the host"
    # Several runs at once (the machine has 2 cores): the containers only have to exist.
    seq "$STOPPED" | xargs -P 4 -I{} "$BERTH_BIN" -H "unix://$SOCK" run --network none "$IMAGE" /bin/true >/dev/null
    printf 'berth-%s-exited\t%s\n' "$STOPPED" "$BERTH_BIN -H unix://$SOCK run --rm --network none $IMAGE /bin/true" >>"$WORK/stopped.tsv"
    if [[ -n $DOCKERD ]]; then
        seq "$STOPPED" | xargs -P 4 -I{} docker -H "unix://$DSOCK" run --network none "$IMAGE" /bin/true >/dev/null
        printf 'docker-%s-exited\t%s\n' "$STOPPED" "docker -H unix://$DSOCK run --rm --network none $IMAGE /bin/true" >>"$WORK/stopped.tsv"
    fi
    timed_rounds "$WORK/stopped.tsv" "$WORK/results-stopped.json"
    "$BERTH_BIN" -H "unix://$SOCK" ps -aq | xargs -r "$BERTH_BIN" -H "unix://$SOCK" rm >/dev/null
    [[ -z $DOCKERD ]] || docker -H "unix://$DSOCK" ps -aq | xargs -r docker -H "unix://$DSOCK" rm >/dev/null
fi

python3 - "$WORK/results.json" "$WORK/parallel.txt" "$PARALLEL" "$CONCURRENCY" "$WORK/results-stopped.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
par = dict(l.split() for l in open(sys.argv[2]) if l.strip())
def ms(name):
    x = r.get(name)
    return None if x is None else x["median"] * 1000
# "runc" runs berth's spec (like for like); "runc-default-spec" the one `runc spec` writes.
print("%-22s %10s %10s" % ("tool", "median ms", "mean ms"))
for name, x in r.items():
    print("%-22s %10.1f %10.1f" % (name, x["median"] * 1000, x["mean"] * 1000))
runc, berth, plain = ms("runc"), ms("berth"), ms("runc-default-spec")
bridge, dcli = ms("berth-bridge"), ms("docker-cli-on-berth")
docker, dbridge, podman = ms("docker"), ms("docker-bridge"), ms("podman")
if runc and berth:
    print("berth/runc with berth's spec (median): %.2f" % (berth / runc))
if bridge and berth:
    print("berth-bridge - berth (median): %+.1f ms  (target <= 5 ms: %s)"
          % (bridge - berth, "met" if bridge - berth <= 5 else "MISSED"))
if dcli and berth:
    print("docker CLI on berth / berth CLI (median): %.2f  (target <= 1.20: %s)"
          % (dcli / berth, "met" if dcli / berth <= 1.2 else "MISSED"))
if docker and berth:
    print("docker/berth --network none (median): %.2f" % (docker / berth))
if dbridge and bridge:
    print("docker/berth default bridge (median): %.2f" % (dbridge / bridge))
if podman and berth:
    print("podman/berth --network none (median): %.2f" % (podman / berth))
if par:
    print("%d x run --rm, %s at a time (wall ms):" % (int(sys.argv[3]), sys.argv[4]))
    for net, b, d in (("--network none", "berth", "docker"),
                      ("default bridge", "berth-bridge", "docker-bridge")):
        line = "  %-15s berth %6s" % (net, par.get(b, "-"))
        if d in par:
            line += "   docker %6s" % par[d]
            if b in par:
                line += "   docker/berth %.2f" % (int(par[d]) / int(par[b]))
        print(line)
stopped = {}
try:
    stopped = {x["command"]: x["median"] * 1000
               for x in json.load(open(sys.argv[5]))["results"]}
except (OSError, ValueError):
    pass
for name, v in stopped.items():
    base = berth if name.startswith("berth") else docker
    tool, n = name.split("-")[:2]
    line = "%s run --rm with %s exited containers on the host: %.1f ms" % (tool, n, v)
    if base:
        line += "  (%.2f x its figure without them)" % (v / base)
    print(line)
status = 0
if plain and berth:
    ratio = berth / plain
    print("berth/runc with runc's default spec (median): %.2f  (target <= 1.00: %s)"
          % (ratio, "met" if ratio <= 1.0 else "MISSED"))
    status = 0 if ratio <= 1.0 else 3
sys.exit(status)
EOF
