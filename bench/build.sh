#!/usr/bin/env bash
# Image builds (issue 16, item 7), side by side in one run, on the same Dockerfiles and
# contexts (bench/build/):
#   multi   10 instructions, two stages: RUN busybox steps making files, a COPY of 20
#           sources, then a second stage with COPY --from=build, ENV, LABEL, CMD;
#   files   one COPY of SMALL_DIRS x SMALL_PER_DIR small files (200 x 100 of 100 bytes:
#           20,000), from a context bench/build/make-context.py writes (same bytes every run).
# Three builds each, timed as the wall time of the client command:
#   cold      a fresh tag with --no-cache (every step runs);
#   nochange  the same context again, with the cache (every step a cache hit);
#   changed   one source file changed (src/module-00.txt, files/d000/f000.txt; new content
#             every time), with the cache: the steps from its COPY on run again.
# Engines (ENGINES):
#   berth          `berth build` (berth's CLI) against a berth daemon (release build);
#   berth-docker   `DOCKER_BUILDKIT=0 docker build` (the docker CLI) against the same daemon;
#   docker         `DOCKER_BUILDKIT=0 docker build` against Docker 20.10's dockerd (classic
#                  builder);
#   podman         `podman build --layers` (Podman 4.3);
#   buildah        `buildah build --layers` (Buildah 1.28).
# Each engine has its own network namespace (berth's daemon and dockerd run in theirs, the
# podman and buildah commands are run in theirs) and its own state: berth --root, dockerd
# --data-root, podman and buildah --root/--runroot under the work dir (the host's
# /var/lib/containers/storage is not used). berth and berth-docker share one daemon and
# so one cache: every changed build writes content no build has seen before.
# Per round, the engines go in turn (the order rotates each round), each doing cold,
# nochange, changed one after the other; the changed file is put back afterwards. Medians
# of ROUNDS. Issue 16's goals, for berth: cold and changed builds at most 0.5x the fastest
# peer's (docker, podman, buildah), a rebuild with nothing changed under 0.3 s.
# With VERIFY=1, each engine then builds the context with the changed file set to one
# content, runs the image (CMD: a sha256 of what was copied) and the output is compared with
# the same sha256 computed on the host.
#
# Environment:
#   ROUNDS=3                  rounds (medians over them)
#   ENGINES="berth berth-docker docker podman buildah"
#   CASES="multi files"       which Dockerfiles
#   SMALL_DIRS=200 SMALL_PER_DIR=100 SMALL_SIZE=100   the files context (dirs, files per
#                             dir, bytes per file)
#   BUILD_NETWORK=none        none: every engine's RUN steps without a network (berth's
#                             default; `--network none` for the peers); default: each
#                             engine's own default (Docker: its bridge; podman, buildah: theirs)
#   VERIFY=1                  check the built images' contents (above)
#   BUILD_TIMEOUT=900         seconds one build may take
#   LOG_LEVEL=info            berth daemon's --log-level (its log: results/berth.log)
#   BENCH_DIR=bench/out       results in $BENCH_DIR/build/results, state in
#                             $BENCH_DIR/build/state (removed on exit)
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing or older than
#                             the last commit)
# Needs root; installs docker.io (dockerd 20.10), podman and buildah from Debian's packages
# when missing. The docker CLI is the one on PATH. Exit status: 0 (whether the goals are met
# is printed), 1 on an error or a failed build.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
ROUNDS=${ROUNDS:-3}
ENGINES=${ENGINES:-berth berth-docker docker podman buildah}
CASES=${CASES:-multi files}
SMALL_DIRS=${SMALL_DIRS:-200}
SMALL_PER_DIR=${SMALL_PER_DIR:-100}
SMALL_SIZE=${SMALL_SIZE:-100}
BUILD_NETWORK=${BUILD_NETWORK:-none}
VERIFY=${VERIFY:-1}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900}
LOG_LEVEL=${LOG_LEVEL:-info}
ARCHIVE=$REPO_DIR/tests/fixtures/app-docker-save.tar
MAKE_CONTEXT=$SCRIPT_DIR/build/make-context.py
PEERS="docker podman buildah"
NS_PREFIX=berth-bench-build-$$
# The ulimits Podman needs on these machines (its defaults exceed the hard limits here:
# ../shared/PEERS.md), given to podman and buildah alike.
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

log() { printf '[build-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { [[ " $1 " == *" $2 "* ]]; }

[[ $(id -u) -eq 0 ]] || die "run as root (daemons, network namespaces, mounts)"
for e in $ENGINES; do
    case $e in berth | berth-docker | docker | podman | buildah) ;; *) die "unknown engine $e in ENGINES" ;; esac
done
for c in $CASES; do
    case $c in multi | files) ;; *) die "unknown case $c in CASES" ;; esac
done
for n in ROUNDS SMALL_DIRS SMALL_PER_DIR SMALL_SIZE BUILD_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n=${!n}: a positive number"
done
((SMALL_DIRS <= 1000 && SMALL_PER_DIR <= 1000)) || die "SMALL_DIRS and SMALL_PER_DIR: at most 1000"
((SMALL_SIZE >= 16)) || die "SMALL_SIZE: at least 16 bytes"
case $BUILD_NETWORK in none | default) ;; *) die "BUILD_NETWORK=$BUILD_NETWORK: none or default" ;; esac
{ has "$ENGINES" berth || has "$ENGINES" berth-docker || has "$ENGINES" docker; } &&
    { command -v docker >/dev/null || die "the docker CLI is needed (the client)"; }
for t in python3 nsenter ip timeout; do command -v "$t" >/dev/null || die "$t is needed"; done
need=()
has "$ENGINES" docker && ! command -v dockerd >/dev/null && need+=(docker.io)
has "$ENGINES" podman && ! command -v podman >/dev/null && need+=(podman)
has "$ENGINES" buildah && ! command -v buildah >/dev/null && need+=(buildah)
# podman is also how buildah's images are run for VERIFY.
[[ $VERIFY == 1 ]] && has "$ENGINES" buildah && ! command -v podman >/dev/null && ! has "${need[*]-}" podman && need+=(podman)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[[ -f $ARCHIVE ]] || die "$ARCHIVE missing"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
if has "$ENGINES" berth || has "$ENGINES" berth-docker; then
    # Built when missing, or older than the last commit (the default binary only).
    if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]] ||
        { [[ $BERTH_BIN == "$REPO_DIR/target/release/berth" ]] &&
            (($(stat -c %Y "$BERTH_BIN") < $(git -C "$REPO_DIR" log -1 --format=%ct 2>/dev/null || echo 0))); }; then
        log "building berth (release)"
        (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
    fi
fi

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/build
STATE=$WORK/state
RES=$WORK/results

unmount_state() {
    local m
    awk -v w="$STATE" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
# The processes this bench started that outlived their daemon or client (shims, Docker's
# containerd, conmon, container processes), by pid: those whose command line names the
# state dir or whose root is under it.
kill_leftovers() {
    local p root
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p == "$$" || $p == "$BASHPID" ]] && continue
        root=$(readlink "/proc/$p/root" 2>/dev/null) || continue
        if [[ $root == "$STATE"/* ]] || tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$STATE/"; then
            kill -9 "$p" 2>/dev/null || true
        fi
    done
}
ns_path() { echo "/run/netns/$NS_PREFIX-$1"; }

BERTHD=""
DOCKERD=""
cleanup() {
    local rc=$? e
    set +e
    if [[ -n $BERTHD ]]; then
        kill "$BERTHD" 2>/dev/null
        wait "$BERTHD" 2>/dev/null
    fi
    if [[ -n $DOCKERD ]]; then
        # dockerd stops the containerd it started.
        kill "$DOCKERD" 2>/dev/null
        wait "$DOCKERD" 2>/dev/null
    fi
    kill_leftovers
    unmount_state
    for e in berth docker podman buildah; do
        [[ -e $(ns_path "$e") ]] && ip netns del "$NS_PREFIX-$e" 2>/dev/null
    done
    # Everything the engines stored: berth's root, Docker's data root, podman's and
    # buildah's storage (their images and layers), the contexts.
    rm -rf "$STATE" 2>/dev/null || { unmount_state; rm -rf "$STATE"; }
    [[ -n ${MADE_VARLIB-} ]] && rmdir /var/lib/containers 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A previous run's leftovers (its namespaces carried its pid in their names).
kill_leftovers
unmount_state
rm -rf "$STATE" "$RES"
mkdir -p "$STATE/tmp" "$RES/logs"
# A docker config of the bench's own (podman and buildah read it too, as their auth file).
export DOCKER_CONFIG=$STATE/docker-config
mkdir -p "$DOCKER_CONFIG"
echo '{}' >"$DOCKER_CONFIG/config.json"
export TMPDIR=$STATE/tmp
export DOCKER_BUILDKIT=0
# Sizes and RUN network, for the peers' flags.
NET_FLAGS=()
[[ $BUILD_NETWORK == none ]] && NET_FLAGS=(--network none)

netns_add() {
    ip netns add "$NS_PREFIX-$1"
    ip -n "$NS_PREFIX-$1" link set lo up
}
wait_docker() { # wait_docker SOCK WHAT
    local i
    for ((i = 0; i < 600; i++)); do
        docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$2 did not answer in 60 s (its log: $RES/$2.log)"
}

# podman and buildah: storage (--root, --runroot), libpod's tmp dir and runc's state dir
# under the state dir, no events file. runc, not crun (crun refuses this machine's hybrid
# cgroup layout: ../shared/PEERS.md).
P_GLOBAL=(--root "$STATE/podman-root" --runroot "$STATE/podman-run" --tmpdir "$STATE/podman-tmp"
    --storage-driver overlay --cgroup-manager cgroupfs --runtime runc
    --runtime-flag "root=$STATE/podman-runc" --events-backend none)
BU_GLOBAL=(--root "$STATE/buildah-root" --runroot "$STATE/buildah-run" --storage-driver overlay)
BU_RUNTIME=(--runtime runc --runtime-flag "root=$STATE/buildah-runc")
# VERIFY runs buildah's images with podman on buildah's storage.
PB_GLOBAL=(--root "$STATE/buildah-root" --runroot "$STATE/buildah-run" --tmpdir "$STATE/buildah-podman-tmp"
    --storage-driver overlay --cgroup-manager cgroupfs --runtime runc
    --runtime-flag "root=$STATE/buildah-runc" --events-backend none)
# Both also write the host's /var/lib/containers/cache/blob-info-cache-v1.boltdb (a digest
# cache that containers/image keeps outside --root, with no flag to move it): they run in
# a mount namespace of their own where /var/lib/containers is a directory of the state dir
# (their overlay mounts stay in that namespace, and end with it).
MADE_VARLIB=""
if has "$ENGINES" podman || has "$ENGINES" buildah; then
    if [[ ! -d /var/lib/containers ]]; then
        mkdir -p /var/lib/containers
        MADE_VARLIB=1
    fi
    mkdir -p "$STATE/podman-varlib" "$STATE/buildah-varlib"
fi
# own_mnt TOOL: the command prefix that runs TOOL's command in that mount namespace.
# shellcheck disable=SC2016 # $0 and $@ are the inner shell's
own_mnt() {
    OWN_MNT=(unshare --mount --propagation private -- sh -c 'mount --bind "$0" /var/lib/containers && exec "$@"' "$STATE/$1-varlib")
}

BSOCK=$STATE/berth.sock
DSOCK=$STATE/docker.sock
{
    echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
    echo "date: $(date -u '+%F %T') UTC; ROUNDS=$ROUNDS CASES=\"$CASES\" BUILD_NETWORK=$BUILD_NETWORK files=${SMALL_DIRS}x${SMALL_PER_DIR}x${SMALL_SIZE}B"
} >"$RES/meta.txt"

if has "$ENGINES" berth || has "$ENGINES" berth-docker; then
    netns_add berth
    log "berth: $BERTH_BIN"
    # nsenter execs the daemon: $! is the daemon's pid.
    nsenter --net="$(ns_path berth)" -- "$BERTH_BIN" daemon --root "$STATE/berth-root" \
        --host "unix://$BSOCK" --log-level "$LOG_LEVEL" >"$RES/berth.log" 2>&1 &
    BERTHD=$!
    wait_docker "$BSOCK" berth
    "$BERTH_BIN" -H "unix://$BSOCK" load -i "$ARCHIVE" >/dev/null
    echo "berth: $BERTH_BIN ($(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?') with the working tree of then, built $(date -r "$BERTH_BIN" '+%F %T'))" >>"$RES/meta.txt"
fi
if has "$ENGINES" docker; then
    netns_add docker
    log "docker: $(dockerd --version)"
    # Its own state, socket and namespace (../shared/PEERS.md).
    nsenter --net="$(ns_path docker)" -- dockerd --data-root "$STATE/docker-data" \
        --exec-root "$STATE/docker-exec" --host "unix://$DSOCK" \
        --pidfile "$STATE/docker.pid" >"$RES/dockerd.log" 2>&1 &
    DOCKERD=$!
    wait_docker "$DSOCK" dockerd
    docker -H "unix://$DSOCK" load -i "$ARCHIVE" >/dev/null
    echo "docker: $(dockerd --version)" >>"$RES/meta.txt"
fi
if has "$ENGINES" berth-docker || has "$ENGINES" docker; then
    echo "docker CLI: $(docker --version) (DOCKER_BUILDKIT=0)" >>"$RES/meta.txt"
fi
if has "$ENGINES" podman; then
    netns_add podman
    own_mnt podman
    nsenter --net="$(ns_path podman)" -- "${OWN_MNT[@]}" podman "${P_GLOBAL[@]}" load -q -i "$ARCHIVE" >/dev/null
    echo "podman: $(podman --version)" >>"$RES/meta.txt"
fi
if has "$ENGINES" buildah; then
    netns_add buildah
    own_mnt buildah
    nsenter --net="$(ns_path buildah)" -- "${OWN_MNT[@]}" buildah "${BU_GLOBAL[@]}" pull -q "docker-archive:$ARCHIVE" >/dev/null
    echo "buildah: $(buildah --version)" >>"$RES/meta.txt"
fi

# ---- the contexts --------------------------------------------------------------------
ctx() { echo "$STATE/ctx-$1"; }
changed_file() { if [[ $1 == multi ]]; then echo "$(ctx multi)/src/module-00.txt"; else echo "$(ctx files)/files/d000/f000.txt"; fi; }
for c in $CASES; do
    if [[ $c == multi ]]; then
        python3 "$MAKE_CONTEXT" multi "$(ctx multi)"
    else
        python3 "$MAKE_CONTEXT" files "$(ctx files)" --dirs "$SMALL_DIRS" --per-dir "$SMALL_PER_DIR" --size "$SMALL_SIZE"
    fi
    cp -p "$(changed_file "$c")" "$STATE/base-$c"
done
# set_changed CASE TEXT: the changed file gets TEXT, padded to its usual size.
set_changed() {
    local f size
    f=$(changed_file "$1")
    size=$(stat -c %s "$STATE/base-$1")
    printf '%-*s\n' $((size - 1)) "changed: $2" >"$f"
}
restore_changed() { cp -p "$STATE/base-$1" "$(changed_file "$1")"; }
# The steps that can come from the cache: the instructions other than FROM.
steps() { grep -cvE '^[[:space:]]*(#|$|FROM[[:space:]])' "$(ctx "$1")/Dockerfile"; }

# build_cmd ENGINE CASE TAG NOCACHE(0|1): the client command, in BUILD.
build_cmd() {
    local e=$1 c=$2 tag=$3 nc=() nsenter_=(nsenter --net="$(ns_path "${1/berth-docker/berth}")" --)
    [[ $4 == 1 ]] && nc=(--no-cache)
    case $e in
    berth) BUILD=("${nsenter_[@]}" "$BERTH_BIN" -H "unix://$BSOCK" build -t "$tag" "${nc[@]}" "$(ctx "$c")") ;;
    berth-docker) BUILD=("${nsenter_[@]}" docker -H "unix://$BSOCK" build -t "$tag" "${nc[@]}" "$(ctx "$c")") ;;
    docker) BUILD=("${nsenter_[@]}" docker -H "unix://$DSOCK" build -t "$tag" "${nc[@]}" "${NET_FLAGS[@]}" "$(ctx "$c")") ;;
    podman)
        own_mnt podman
        BUILD=("${nsenter_[@]}" "${OWN_MNT[@]}" podman "${P_GLOBAL[@]}" build --layers "${nc[@]}" --pull=never "${NET_FLAGS[@]}" "${ULIMITS[@]}" -t "$tag" "$(ctx "$c")")
        ;;
    buildah)
        own_mnt buildah
        BUILD=("${nsenter_[@]}" "${OWN_MNT[@]}" buildah "${BU_GLOBAL[@]}" build --layers "${nc[@]}" --pull=never "${BU_RUNTIME[@]}" "${NET_FLAGS[@]}" "${ULIMITS[@]}" -t "$tag" "$(ctx "$c")")
        ;;
    esac
}
# run_cmd ENGINE TAG: runs the image's CMD, in RUN.
run_cmd() {
    local e=$1 tag=$2 nsenter_=(nsenter --net="$(ns_path "${1/berth-docker/berth}")" --)
    case $e in
    berth) RUN=("${nsenter_[@]}" "$BERTH_BIN" -H "unix://$BSOCK" run --rm --network none "$tag") ;;
    berth-docker) RUN=("${nsenter_[@]}" docker -H "unix://$BSOCK" run --rm --network none "$tag") ;;
    docker) RUN=("${nsenter_[@]}" docker -H "unix://$DSOCK" run --rm --network none "$tag") ;;
    podman)
        own_mnt podman
        RUN=("${nsenter_[@]}" "${OWN_MNT[@]}" podman "${P_GLOBAL[@]}" run --rm --network none "${ULIMITS[@]}" "$tag")
        ;;
    buildah)
        own_mnt buildah
        RUN=("${nsenter_[@]}" "${OWN_MNT[@]}" podman "${PB_GLOBAL[@]}" run --rm --network none "${ULIMITS[@]}" "$tag")
        ;;
    esac
}

FAILED=0
TSV=$RES/build-results.tsv
printf 'case\tbuild\tengine\tround\tseconds\texit\tcached_steps\tsteps\tstarted_utc\n' >"$TSV"
# timed ENGINE CASE KIND ROUND: one timed build, a row in the TSV.
timed() {
    local e=$1 c=$2 k=$3 r=$4 tag nocache=0 out t0 t1 rc=0 cached secs
    if [[ $k == cold ]]; then
        tag=bench/$c-cold:r$r
        nocache=1
    else
        tag=bench/$c:latest
    fi
    build_cmd "$e" "$c" "$tag" "$nocache"
    out=$RES/logs/$c-$k-$e-r$r.log
    t0=$EPOCHREALTIME
    timeout "$BUILD_TIMEOUT" "${BUILD[@]}" >"$out" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    # Docker's classic builder and berth print " ---> Using cache", buildah "--> Using cache".
    cached=$(grep -c 'Using cache' "$out" || true)
    # The start as the daemons' logs write times, to find a build in them.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$k" "$e" "$r" "$secs" "$rc" "$cached" "$(steps "$c")" \
        "$(date -u -d "@$t0" '+%FT%T.%6NZ')" >>"$TSV"
    if ((rc != 0)); then
        FAILED=1
        log "FAILED: $c $k on $e (round $r, exit $rc, ${secs} s): $(tail -n 3 "$out" | tr '\n' ' ')"
    else
        log "$c $k $e round $r: ${secs} s (cache hits $cached/$(steps "$c"))"
    fi
}

read -ra engines <<<"$ENGINES"
n=${#engines[@]}
REV=0
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        e=${engines[$(((i + r - 1) % n))]}
        for c in $CASES; do
            restore_changed "$c"
            timed "$e" "$c" cold "$r"
            timed "$e" "$c" nochange "$r"
            REV=$((REV + 1))
            set_changed "$c" "round $r, $e, revision $REV"
            timed "$e" "$c" changed "$r"
            restore_changed "$c"
        done
    done
done

# ---- VERIFY: the images hold what the context holds ----------------------------------
# expected CASE: what the image's CMD prints, computed here.
expected() {
    local h
    if [[ $1 == multi ]]; then
        # shellcheck disable=SC2012
        h=$(cd "$(ctx multi)/src" && LC_ALL=C cat ./*.txt | sha256sum | cut -d' ' -f1)
        echo "$h  /app/all.txt"
    else
        h=$(cd "$(ctx files)/files" && find . -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
        echo "$h  -"
    fi
}
VERIFY_TXT=$RES/verify.txt
: >"$VERIFY_TXT"
if [[ $VERIFY == 1 ]]; then
    for c in $CASES; do
        set_changed "$c" "verify"
        want=$(expected "$c")
        for e in "${engines[@]}"; do
            build_cmd "$e" "$c" "bench/$c:verify" 0
            if ! timeout "$BUILD_TIMEOUT" "${BUILD[@]}" >"$RES/logs/$c-verify-$e.log" 2>&1; then
                FAILED=1
                echo "$c $e: the build failed (logs/$c-verify-$e.log)" | tee -a "$VERIFY_TXT" >&2
                continue
            fi
            run_cmd "$e" "bench/$c:verify"
            got=$(timeout 120 "${RUN[@]}" 2>"$RES/logs/$c-verify-run-$e.err" | tr -d '\r') || got="(run failed: $(tail -n 2 "$RES/logs/$c-verify-run-$e.err" | tr '\n' ' '))"
            if [[ $got == "$want" ]]; then
                echo "$c $e: OK ($want)" >>"$VERIFY_TXT"
            else
                FAILED=1
                echo "$c $e: WRONG: the image has '$got', the context '$want'" | tee -a "$VERIFY_TXT" >&2
            fi
        done
        restore_changed "$c"
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/meta.txt"

# ---- the tables ------------------------------------------------------------------------
python3 - "$TSV" "$RES/build-results.json" "$PEERS" "$RES/meta.txt" "$VERIFY_TXT" <<'EOF'
import json, statistics, sys
tsv, out_json, peers, meta, verify = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4], sys.argv[5]
rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
CASES = {"multi": "multi: 10 instructions, two stages, COPY --from",
         "files": "files: one COPY of many small files"}
KINDS = [("cold", "cold (--no-cache, new tag)"), ("nochange", "rebuild, nothing changed"),
         ("changed", "rebuild, one file changed")]
GOAL_RATIO, GOAL_NOCHANGE = 0.5, 0.3
engines = []
for r in rows:
    if r[2] not in engines:
        engines.append(r[2])
print(open(meta).read().rstrip())
result = {"rows": [dict(zip(("case", "build", "engine", "round", "seconds", "exit", "cached_steps", "steps", "started_utc"), r)) for r in rows],
          "medians": {}, "goals": []}
goal_lines = []
for case, title in CASES.items():
    crow = [r for r in rows if r[0] == case]
    if not crow:
        continue
    print("\n%s (seconds, median over %d round(s))" % (title, max(int(r[3]) for r in crow)))
    hdr = "%-27s %-13s %8s %13s %7s  %s" % ("build", "engine", "median", "min-max", "cached", "/ fastest peer")
    print(hdr)
    print("-" * (len(hdr) + 12))
    for kind, label in KINDS:
        med, lines = {}, []
        for e in engines:
            rr = [r for r in crow if r[1] == kind and r[2] == e]
            ok = [r for r in rr if r[5] == "0"]
            if not rr:
                continue
            if len(ok) < len(rr):
                lines.append((e, "%8s %13s %7s" % ("FAILED", "%d of %d" % (len(rr) - len(ok), len(rr)), "")))
                continue
            t = sorted(float(r[4]) for r in ok)
            m = statistics.median(t)
            med[e] = m
            mid = sorted(ok, key=lambda r: float(r[4]))[len(ok) // 2]
            lines.append((e, "%8.2f %13s %7s" % (m, "%.2f-%.2f" % (t[0], t[-1]), "%s/%s" % (mid[6], mid[7]))))
        pm = {e: med[e] for e in peers if e in med}
        fastest = min(pm, key=pm.get) if pm else None
        ratio = {e: (med[e] / pm[fastest]) if fastest and e in med else None for e in engines}
        for i, (e, cell) in enumerate(lines):
            rt = ""
            if ratio.get(e) is not None:
                rt = "%.2f" % ratio[e] + ("  (fastest peer)" if e == fastest else "")
            print("%-27s %-13s %s  %s" % (label if i == 0 else "", e, cell, rt))
        result["medians"].setdefault(case, {})[kind] = {"medians": med, "fastest_peer": fastest,
                                                        "ratio_to_fastest_peer": ratio}
        for b in ("berth", "berth-docker"):
            if b not in engines:
                continue
            if kind == "nochange":
                goal = "%s %s %s: under %.1f s" % (case, kind, b, GOAL_NOCHANGE)
                st = "NOT MEASURED" if b not in med else ("MET" if med[b] < GOAL_NOCHANGE else "MISSED")
                val = ("%.2f s" % med[b]) if b in med else ""
            else:
                goal = "%s %s %s: at most %.1fx the fastest peer" % (case, kind, b, GOAL_RATIO)
                st = "NOT MEASURED" if ratio[b] is None else ("MET" if ratio[b] <= GOAL_RATIO else "MISSED")
                val = ("%.2fx (%.2f s; %s %.2f s)" % (ratio[b], med[b], fastest, pm[fastest])) if ratio[b] is not None else ""
            goal_lines.append("  %-58s %-13s %s" % (goal, st, val))
            result["goals"].append({"case": case, "build": kind, "engine": b, "status": st, "value": val})
print("\nIssue 16's goals (berth = berth build, berth-docker = the docker CLI against berth):")
print("\n".join(goal_lines) or "  not measured: neither berth nor berth-docker is in ENGINES")
v = open(verify).read().rstrip()
if v:
    print("\nVerify (the images' CMD output against the context, after a changed build):")
    print("\n".join("  " + l for l in v.splitlines()))
result["verify"] = v.splitlines()
json.dump(result, open(out_json, "w"), indent=1)
EOF
log "results: $RES (build-results.tsv, build-results.json, logs/, berth.log)"
((FAILED == 0)) || die "a build or a check failed (above; the build logs are in $RES/logs)"
