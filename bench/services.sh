#!/usr/bin/env bash
# Services under load (issue 15, item 7), side by side in one run:
#   1. berth: a 3-replica swarm service (start-first, a health check, a published port)
#      updated UPDATES times one after the other (`docker service update --env-add`, each
#      waiting until converged) while a load client on loopback makes one request after
#      the other, each on a fresh TCP connection: requests made, failed, longest gap.
#   2. docker-compose 1.29 `up -d` after a change (a recreate) of a one-replica service
#      with a published port, COMPOSE_UPDATES times under the same load, against berth and
#      against Docker 20.10 (Docker's swarm services get no traffic on these machines,
#      so its rolling updates cannot be measured under load: compose recreate is the
#      anchor). One replica for both engines: compose 1.29 cannot scale a service with a
#      fixed host port beyond one container.
#   3. The time from `docker stack deploy` of a STACK_SERVICES-service stack (one replica
#      each, a health check) to every replica healthy, and the time one `docker service
#      update` of the 3-replica service takes from the command to UpdateStatus
#      `completed` (medians of ROUNDS; no load), on berth and on Docker 20.10 (whose
#      tasks run here: only its routing mesh does not, the kernel has no IPVS, which is
#      why its updates cannot be measured under load).
#   4. Where the time of a compose recreate goes on each engine: the engines' own events
#      (kill, die, network disconnect, stop, rename, create, network connect, start,
#      destroy, with the daemon's nanosecond times), the nftables ruleset changes in each
#      engine's namespace (`nft monitor`: berth's DNAT rule, Docker's iptables-nft rules),
#      when something listens on the port (Docker's docker-proxy), and the outages the
#      load client saw, per update and as medians.
#
# Each engine runs in a network namespace of its own (berth's daemon and Docker's dockerd,
# each with its own state, socket and default bridge); its load client runs in the same
# namespace and connects to 127.0.0.1 only. The server in every case is `busybox httpd`
# (Debian's busybox-static, in the fixture image) as the container's PID 1, serving
# /srv/app/hello.txt; it sets no SIGTERM handler, so a stop waits the 10 s grace period
# and ends with SIGKILL on both engines (the old container serves meanwhile).
#
# Environment:
#   UPDATES=20          service updates under load (phase 1)
#   COMPOSE_UPDATES=5   compose recreates under load, per engine (phase 2)
#   ROUNDS=5            stack deploys and unloaded service updates (phase 3)
#   STACK_SERVICES=10   services of the stack
#   ENGINES="berth docker"   which engines (berth is always started; docker: dockerd)
#   PHASES="service compose stack"   which phases run
#   INTERVAL=0.01       the load client's pause after each request (s)
#   REQ_TIMEOUT=2       connect and read timeout of one request (s)
#   HEALTH_INTERVAL=500ms   the services' health check interval
#   SETTLE=3            seconds of load after each compose recreate returns
#   LOG_LEVEL=debug     berth daemon's --log-level (its log: $BENCH_DIR/services/berth.log)
#   BENCH_DIR=bench/out
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing or older than
#                       the last commit)
# Needs root; installs docker.io (dockerd 20.10), docker-compose (1.29) and curl from
# Debian's packages when missing. Exit status: 0 (whether the service target, 0 failed
# requests, is met is printed), 1 on an error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
UPDATES=${UPDATES:-20}
COMPOSE_UPDATES=${COMPOSE_UPDATES:-5}
ROUNDS=${ROUNDS:-5}
STACK_SERVICES=${STACK_SERVICES:-10}
ENGINES=${ENGINES:-berth docker}
PHASES=${PHASES:-service compose stack}
INTERVAL=${INTERVAL:-0.01}
REQ_TIMEOUT=${REQ_TIMEOUT:-2}
HEALTH_INTERVAL=${HEALTH_INTERVAL:-500ms}
SETTLE=${SETTLE:-3}
LOG_LEVEL=${LOG_LEVEL:-debug}
IMAGE=fixture/app:1
ARCHIVE=$REPO_DIR/tests/fixtures/app-docker-save.tar
LOAD_PY=$SCRIPT_DIR/services_load.py
SVC_PORT=18080
COMPOSE_PORT=18081
# The server: busybox httpd as PID 1 (the image's entrypoint is `/bin/sh -c`).
SERVER_CMD="exec busybox httpd -f -p 80 -h /srv/app"
HEALTH_CMD="busybox wget -q -O /dev/null http://127.0.0.1/hello.txt || exit 1"
NS_BERTH=berth-bench-svc-b-$$
NS_DOCKER=berth-bench-svc-d-$$

log() { printf '[services-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
want_phase() { [[ " $PHASES " == *" $1 "* ]]; }
want_engine() { [[ " $ENGINES " == *" $1 "* ]]; }
now() { date +%s.%N; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers, network namespaces)"
for p in $PHASES; do
    case $p in service | compose | stack) ;; *) die "unknown phase $p in PHASES" ;; esac
done
for e in $ENGINES; do
    case $e in berth | docker) ;; *) die "unknown engine $e in ENGINES" ;; esac
done
for n in UPDATES COMPOSE_UPDATES ROUNDS STACK_SERVICES SETTLE; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n=${!n}: a number"
done
for n in INTERVAL REQ_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]*\.?[0-9]+$ ]] || die "$n=${!n}: seconds"
done
command -v docker >/dev/null || die "the docker CLI is needed (the client)"
for t in dockerd docker-compose curl python3 nft stdbuf; do
    command -v "$t" >/dev/null && continue
    case $t in
    dockerd) pkg=docker.io ;;
    nft) pkg=nftables ;;
    stdbuf) pkg=coreutils ;;
    *) pkg=$t ;;
    esac
    log "installing $pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
done
[[ -f $ARCHIVE ]] || die "$ARCHIVE missing"

BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
# Built when missing, or older than the last commit (the default binary only).
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim ]] ||
    { [[ $BERTH_BIN == "$REPO_DIR/target/release/berth" ]] &&
        (($(stat -c %Y "$BERTH_BIN") < $(git -C "$REPO_DIR" log -1 --format=%ct 2>/dev/null || echo 0))); }; then
    log "building berth (release)"
    (cd "$REPO_DIR" && cargo build --release --locked -p berth -p berth-shim >&2)
fi

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/services

unmount_work() {
    local m
    awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
# The processes this bench started that outlived their daemon (shims, Docker's
# containerd, container processes), by pid: those whose command line names the work dir
# or whose root is under it.
kill_leftovers() {
    local p root
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p == "$$" || $p == "$BASHPID" ]] && continue
        root=$(readlink "/proc/$p/root" 2>/dev/null) || continue
        if [[ $root == "$WORK"/* ]] || tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$WORK/"; then
            kill -9 "$p" 2>/dev/null || true
        fi
    done
}

BERTHD=""
DOCKERD=""
BG=()
cleanup() {
    local rc=$?
    set +e
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    if [[ -n $BERTHD ]]; then
        export DOCKER_HOST=unix://$WORK/berth.sock
        docker swarm leave --force >/dev/null 2>&1
        # shellcheck disable=SC2046
        docker rm -f $(docker ps -aq 2>/dev/null) >/dev/null 2>&1
        kill "$BERTHD" 2>/dev/null
        wait "$BERTHD" 2>/dev/null
    fi
    if [[ -n $DOCKERD ]]; then
        export DOCKER_HOST=unix://$WORK/docker.sock
        # shellcheck disable=SC2046
        docker swarm leave --force >/dev/null 2>&1
        # shellcheck disable=SC2046
        docker rm -f $(docker ps -aq 2>/dev/null) >/dev/null 2>&1
        kill "$DOCKERD" 2>/dev/null
        wait "$DOCKERD" 2>/dev/null
    fi
    kill_leftovers
    unmount_work
    ip netns del "$NS_BERTH" 2>/dev/null
    ip netns del "$NS_DOCKER" 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A previous run's leftovers (its namespaces went with it, or are named by another pid).
kill_leftovers
unmount_work
rm -rf "$WORK"
mkdir -p "$WORK"
export DOCKER_CONFIG=$WORK/docker-config
# compose 1.29 reads ContainerConfig from image inspect, which API 1.45 dropped (berth
# speaks 1.47; Docker 25+ fails the same way): both engines at Docker 20.10's 1.41.
export COMPOSE_API_VERSION=1.41

ns_path() { if [[ $1 == docker ]]; then echo "/run/netns/$NS_DOCKER"; else echo "/run/netns/$NS_BERTH"; fi; }
# in_ns ENGINE CMD...: runs CMD in the engine's network namespace (in the foreground:
# what runs in the background is started with nsenter itself, so that $! is its pid).
in_ns() {
    local ns
    ns=$(ns_path "$1")
    shift
    nsenter --net="$ns" -- "$@"
}
use() { export DOCKER_HOST=unix://$WORK/$1.sock; }
# secs A B: B - A, seconds with 3 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
answers() { in_ns "$1" curl -sf -m 2 -o /dev/null "http://127.0.0.1:$2/hello.txt"; }
# wait_for SECONDS WHAT CMD...: polls CMD every 0.1 s.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    die "$what: not reached in ${secs}s"
}
# none_left CMD...: CMD prints nothing.
none_left() { [[ -z $("$@") ]]; }
# tasks_gone ENGINE WHAT LABEL: waits (40 s: a stop's 10 s grace and more) until no
# container carries LABEL. berth can leave a removed service's tasks running (a race of
# its reconcile loop with the removal, see bench/README.md): they are counted in
# $RES/orphans.txt, reported, and removed with `docker rm -f` so that the run goes on.
tasks_gone() {
    local i ids
    for ((i = 0; i < 400; i++)); do
        none_left docker ps -aq --filter "label=$3" && return 0
        sleep 0.1
    done
    mapfile -t ids < <(docker ps -aq --filter "label=$3")
    log "$1 left ${#ids[@]} task container(s) of $2 40 s after its removal: removing them"
    echo "$1, $2: ${#ids[@]} task container(s) left after the removal" >>"$RES/orphans.txt"
    docker rm -f "${ids[@]}" >/dev/null
}
wait_daemon() {
    wait_for 60 "$1 answers" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}
# load_start ENGINE PORT OUT: the load client in the engine's namespace (pid in LOAD_PID).
load_start() {
    nsenter --net="$(ns_path "$1")" -- python3 "$LOAD_PY" --port "$2" --interval "$INTERVAL" \
        --timeout "$REQ_TIMEOUT" --watch-listen --failures --out "$3" &
    LOAD_PID=$!
    BG+=("$LOAD_PID")
}
load_stop() {
    kill -TERM "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" || die "the load client failed (its error is above)"
}
# nft_start ENGINE OUT: every ruleset change in the engine's namespace (`nft monitor`,
# line-buffered), each line with the wall time it was read at. Ends on SIGTERM.
NFTMON_PY='import signal, subprocess, sys, time
p = subprocess.Popen(["stdbuf", "-oL", "nft", "monitor"], stdout=subprocess.PIPE, text=True)
signal.signal(signal.SIGTERM, lambda *_: p.terminate())
with open(sys.argv[1], "w") as out:
    for line in p.stdout:
        out.write("%.6f %s" % (time.time(), line))
p.wait()'
nft_start() {
    nsenter --net="$(ns_path "$1")" -- python3 -c "$NFTMON_PY" "$2" &
    NFT_PID=$!
    BG+=("$NFT_PID")
}
nft_stop() {
    kill -TERM "$NFT_PID" 2>/dev/null || true
    wait "$NFT_PID" 2>/dev/null || true
}

ip netns add "$NS_BERTH"
ip -n "$NS_BERTH" link set lo up
log "berth: $BERTH_BIN (log level $LOG_LEVEL)"
# nsenter execs the daemon: $! is the daemon's pid (a backgrounded function's would be a
# subshell's).
nsenter --net="$(ns_path berth)" -- "$BERTH_BIN" daemon --root "$WORK/berth-root" \
    --host "unix://$WORK/berth.sock" --log-level "$LOG_LEVEL" >"$WORK/berth.log" 2>&1 &
BERTHD=$!
use berth
wait_daemon berth
docker load -i "$ARCHIVE" >/dev/null

if want_engine docker; then
    ip netns add "$NS_DOCKER"
    ip -n "$NS_DOCKER" link set lo up
    log "docker: $(dockerd --version)"
    # Its own state, socket and namespace, with its bridge, iptables and docker-proxy
    # (docs: ../shared/PEERS.md).
    nsenter --net="$(ns_path docker)" -- dockerd --data-root "$WORK/docker-data" \
        --exec-root "$WORK/docker-exec" --host "unix://$WORK/docker.sock" \
        --pidfile "$WORK/docker.pid" >"$WORK/dockerd.log" 2>&1 &
    DOCKERD=$!
    use docker
    wait_daemon dockerd
    docker load -i "$ARCHIVE" >/dev/null
fi

RES=$WORK/results
mkdir -p "$RES"
: >"$RES/orphans.txt"
{
    echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
    echo "berth: $BERTH_BIN ($(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?'), built $(date -r "$BERTH_BIN" '+%F %T'))"
    [[ -n $DOCKERD ]] && echo "docker: $(dockerd --version)"
    echo "docker-compose: $(docker-compose version --short 2>/dev/null) (COMPOSE_API_VERSION=$COMPOSE_API_VERSION); docker CLI $(docker --version | awk '{print $3}' | tr -d ,)"
    echo "load: one request at a time, a fresh connection each, ${INTERVAL}s pause, ${REQ_TIMEOUT}s timeout"
} >"$RES/meta.txt"

# ---- 1 and 3: swarm services (berth; Docker's timings without load) ------------------
svc_state() { docker service inspect web --format '{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}' 2>/dev/null; }
# wait_completed BEFORE T0 WHAT: until UpdateStatus is completed with another StartedAt
# than BEFORE's (polled every 50 ms, 180 s at most from T0).
wait_completed() {
    local s
    while s=$(svc_state) && [[ $s == "$1" || $s != completed* ]]; do
        [[ ${s%% *} == rollback* || ${s%% *} == paused ]] && die "$3: update status $s"
        (($(secs "$2" "$(now)" | cut -d. -f1) < 180)) || die "$3: not completed in 180 s ($s)"
        sleep 0.05
    done
}
replicas_are() { [[ $(docker service ls --filter name=web --format '{{.Replicas}}') == "$1" ]]; }
stack=$WORK/stack.yml
{
    echo 'version: "3.8"'
    echo 'services:'
    for s in $(seq "$STACK_SERVICES"); do
        cat <<EOF
  s$s:
    image: $IMAGE
    command: ["$SERVER_CMD"]
    healthcheck:
      test: ["CMD-SHELL", "$HEALTH_CMD"]
      interval: $HEALTH_INTERVAL
      timeout: 2s
      retries: 3
    deploy:
      replicas: 1
EOF
    done
} >"$stack"
stack_healthy() {
    [[ $(docker ps -q --filter label=com.docker.stack.namespace=bst --filter health=healthy | wc -l) -eq $STACK_SERVICES ]]
}
for engine in $ENGINES; do
    want_phase service || want_phase stack || break
    [[ $engine == docker && -z $DOCKERD ]] && continue
    use "$engine"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    if want_phase service; then
        log "service ($engine): 3 replicas, start-first, a health check, published on $SVC_PORT"
        docker service create --detach --name web --replicas 3 --update-order start-first \
            --health-cmd "$HEALTH_CMD" --health-interval "$HEALTH_INTERVAL" --health-timeout 2s \
            --health-retries 3 -p "$SVC_PORT:80" "$IMAGE" "$SERVER_CMD" >/dev/null 2>&1
        wait_for 120 "$engine: 3/3 replicas of web" replicas_are 3/3
        # Docker 20.10's routing mesh needs IPVS, which this kernel lacks: its tasks run,
        # but its published port answers nothing. Only berth's updates run under load.
        if [[ $engine == berth ]]; then
            wait_for 30 "web answers on $SVC_PORT" answers berth "$SVC_PORT"
            log "service (berth): $UPDATES updates under load"
            mkdir -p "$WORK/service"
            : >"$RES/service-updates.tsv"
            load_start berth "$SVC_PORT" "$WORK/service/load.json"
            sleep 1
            for i in $(seq "$UPDATES"); do
                before=$(svc_state)
                t0=$(now)
                docker service update --env-add "N=$i" web >>"$WORK/service/cli.log" 2>&1 ||
                    die "service update $i failed: $(tail -3 "$WORK/service/cli.log")"
                t1=$(now)
                wait_completed "$before" "$t0" "update $i"
                t2=$(now)
                printf '%s\t%s\t%s\t%s\n' "$i" "$t0" "$t1" "$t2" >>"$RES/service-updates.tsv"
                log "service update $i: CLI $(secs "$t0" "$t1") s, completed after $(secs "$t0" "$t2") s"
            done
            sleep 1
            load_stop
            cp "$WORK/service/load.json" "$RES/service-load.json"
        elif answers docker "$SVC_PORT"; then
            log "docker's published service port answers here; its updates under load are still berth only"
        fi
        # The time of one update, end to end, without load: the command (detached) to
        # UpdateStatus completed.
        : >"$RES/service-update-time-$engine.tsv"
        for r in $(seq "$ROUNDS"); do
            before=$(svc_state)
            t0=$(now)
            docker service update --detach --env-add "R=$r" web >/dev/null 2>&1
            wait_completed "$before" "$t0" "$engine: update (no load) $r"
            t1=$(now)
            printf '%s\t%s\n' "$r" "$(secs "$t0" "$t1")" >>"$RES/service-update-time-$engine.tsv"
            log "service update ($engine, no load) $r: $(secs "$t0" "$t1") s"
        done
        docker service rm web >/dev/null
        tasks_gone "$engine" "service web" com.docker.swarm.service.name=web
    fi
    if want_phase stack; then
        : >"$RES/stack-$engine.tsv"
        for r in $(seq "$ROUNDS"); do
            t0=$(now)
            docker stack deploy -c "$stack" bst >>"$WORK/stack-cli.log" 2>&1 ||
                die "$engine: stack deploy: $(tail -3 "$WORK/stack-cli.log")"
            t1=$(now)
            while ! stack_healthy; do
                (($(secs "$t0" "$(now)" | cut -d. -f1) < 180)) || die "$engine: stack round $r: not healthy in 180 s"
                sleep 0.05
            done
            t2=$(now)
            printf '%s\t%s\t%s\n' "$r" "$(secs "$t0" "$t1")" "$(secs "$t0" "$t2")" >>"$RES/stack-$engine.tsv"
            log "stack deploy ($engine) $r: command $(secs "$t0" "$t1") s, all $STACK_SERVICES healthy after $(secs "$t0" "$t2") s"
            docker stack rm bst >/dev/null
            tasks_gone "$engine" "stack bst (round $r)" com.docker.stack.namespace=bst
            wait_for 60 "$engine: the stack's network removed" none_left docker network ls -q --filter name=bst_default
        done
    fi
    docker swarm leave --force >/dev/null
done

# ---- 2. compose recreate under load, berth and Docker ----------------------------------
if want_phase compose; then
    for engine in $ENGINES; do
        [[ $engine == docker && -z $DOCKERD ]] && continue
        use "$engine"
        dir=$WORK/compose-$engine
        mkdir -p "$dir"
        compose_file() {
            cat >"$dir/docker-compose.yml" <<EOF
version: "2.4"
services:
  web:
    image: $IMAGE
    command: ["$SERVER_CMD"]
    environment:
      - N=$1
    ports:
      - "$COMPOSE_PORT:80"
    healthcheck:
      disable: true
EOF
        }
        compose_file 0
        (cd "$dir" && docker-compose -p svcbench up -d) >>"$dir/compose.log" 2>&1 ||
            die "$engine: compose up: $(tail -3 "$dir/compose.log")"
        wait_for 30 "$engine: compose web answers" answers "$engine" "$COMPOSE_PORT"
        log "compose ($engine): $COMPOSE_UPDATES recreates under load"
        : >"$RES/compose-$engine-updates.tsv"
        nft_start "$engine" "$dir/nft.txt"
        load_start "$engine" "$COMPOSE_PORT" "$dir/load.json"
        sleep 1
        start=$(now)
        for i in $(seq "$COMPOSE_UPDATES"); do
            compose_file "$i"
            t0=$(now)
            (cd "$dir" && docker-compose -p svcbench up -d) >>"$dir/compose.log" 2>&1 ||
                die "$engine: compose up ($i): $(tail -3 "$dir/compose.log")"
            t1=$(now)
            printf '%s\t%s\t%s\n' "$i" "$t0" "$t1" >>"$RES/compose-$engine-updates.tsv"
            log "compose ($engine) $i: $(secs "$t0" "$t1") s"
            sleep "$SETTLE"
        done
        load_stop
        nft_stop
        end=$(now)
        docker events --since "$start" --until "$end" --format '{{json .}}' >"$RES/compose-$engine-events.jsonl"
        cp "$dir/load.json" "$RES/compose-$engine-load.json"
        cp "$dir/nft.txt" "$RES/compose-$engine-nft.txt"
        (cd "$dir" && docker-compose -p svcbench down -t 1) >>"$dir/compose.log" 2>&1 || true
    done
fi
[[ -n $BERTHD ]] && cp "$WORK/berth.log" "$RES/berth.log"

cat "$RES/meta.txt"
python3 - "$RES" "$UPDATES" "$COMPOSE_UPDATES" "$STACK_SERVICES" "$HEALTH_INTERVAL" "$COMPOSE_PORT" "$ENGINES" <<'EOF'
import json, os, re, statistics, sys
from datetime import datetime

res, updates, compose_updates, stack_n, health, port, engines = sys.argv[1:8]
engines = engines.split()

def load(p):
    p = os.path.join(res, p)
    return json.load(open(p)) if os.path.exists(p) else None

def rows(p):
    p = os.path.join(res, p)
    if not os.path.exists(p):
        return []
    return [l.split("\t") for l in open(p).read().splitlines() if l]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def f(x, fmt="%.0f"):
    return "-" if x is None else fmt % x

def windows(u):
    """Each update's window: from its command to the next update's command (the last:
    to the end of the load)."""
    t = [float(r[1]) for r in u]
    return [(a, b) for a, b in zip(t, t[1:] + [float("inf")])]

def no_answer(l, w):
    """Per window, the ms from the first request that failed or stalled (an answer over
    200 ms) to the answer that ended it: how long clients got nothing. 0: none."""
    out = []
    for a, b in w:
        spans = [(o["start"], o["end"] or o["start"]) for o in l["outages"] if a <= o["start"] < b]
        spans += [(sl[0], sl[0] + sl[1] / 1000) for sl in l.get("slow", []) if a <= sl[0] < b]
        out.append(round((max(e for _, e in spans) - min(st for st, _ in spans)) * 1000) if spans else 0)
    return out

summary = {}
print()
print("== requests during updates (one request at a time, a fresh connection each) ==")
print("%-46s %7s %9s %7s %8s %12s %16s %9s" % (
    "case", "updates", "requests", "failed", "failed%", "longest gap", "no answer/update", "update s"))
cases = []
svc = load("service-load.json")
if svc:
    u = rows("service-updates.tsv")
    cases.append(("berth service update (3 replicas, start-first)", "service", svc, u,
                  med(float(r[3]) - float(r[1]) for r in u)))
for e in ("berth", "docker"):
    l = load("compose-%s-load.json" % e)
    if l:
        u = rows("compose-%s-updates.tsv" % e)
        cases.append(("%s compose up -d recreate (1 replica)" % e, "compose-" + e, l, u,
                      med(float(r[2]) - float(r[1]) for r in u)))
for name, key, l, u, upd in cases:
    na = no_answer(l, windows(u))
    summary[key] = {"updates": len(u), "requests": l["requests"], "failed": l["failed"],
                    "kinds": l["kinds"], "longest_gap_ms": l["longest_gap_ms"],
                    "no_answer_ms": na, "no_answer_ms_median": med(na),
                    "slow_answers": len(l.get("slow", [])), "update_s_median": upd}
    print("%-46s %7d %9d %7d %7.2f%% %9.0f ms %13s ms %9s" % (
        name, len(u), l["requests"], l["failed"], 100.0 * l["failed"] / max(l["requests"], 1),
        l["longest_gap_ms"], f(med(na)), f(upd, "%.2f")))
print("(longest gap: between two answered requests; no answer: first failed or stalled (> 200 ms) request -> the answer after it, median over the updates; update s: the command, median)")
for name, key, l, u, upd in cases:
    na = summary[key]["no_answer_ms"]
    if l["failed"] or any(na):
        print("  %s: failures %s; slow answers %d; no answer per update (ms) %s" % (
            key, ", ".join("%s %d" % kv for kv in sorted(l["kinds"].items())) or "none",
            summary[key]["slow_answers"], na))
if "compose-berth" in summary and "compose-docker" in summary:
    b, d = summary["compose-berth"], summary["compose-docker"]
    r = lambda x, y: "-" if not y or x is None else "%.2f" % (x / y)
    print("ratio berth/docker, compose recreate: failed %s, longest gap %s, no answer per update %s, compose up -d %s" % (
        r(b["failed"], d["failed"]), r(b["longest_gap_ms"], d["longest_gap_ms"]),
        r(b["no_answer_ms_median"], d["no_answer_ms_median"]), r(b["update_s_median"], d["update_s_median"])))
if "service" in summary:
    s = summary["service"]
    print("target: 0 failed requests over %d rolling updates: %s (%d failed of %d)" % (
        s["updates"], "MET" if s["failed"] == 0 else "MISSED", s["failed"], s["requests"]))

print()
print("== swarm timings without load, medians (Docker 20.10 too: its tasks run here, its routing mesh does not) ==")
print("%-72s %10s %10s %7s" % ("", "berth", "docker", "ratio"))
def timing(key, label, col):
    vals = {}
    for e in ("berth", "docker"):
        r = rows("%s-%s.tsv" % (key, e))
        if r:
            vals[e] = [float(x[col]) for x in r]
    if not vals:
        return
    summary[key] = {e: {"rounds": len(v), "s_median": med(v), "min": min(v), "max": max(v)} for e, v in vals.items()}
    b, d = med(vals.get("berth", [])), med(vals.get("docker", []))
    print("%-72s %9s %9s %7s" % (label, f(b, "%.2f") + " s" if b is not None else "-", f(d, "%.2f") + " s" if d is not None else "-",
                                 "%.2f" % (b / d) if b is not None and d else "-"))
    for e, v in vals.items():
        print("    %s: %s" % (e, " ".join("%.2f" % x for x in v)))
timing("stack", "stack deploy, %s services (1 replica, health every %s) -> all healthy" % (stack_n, health), 2)
timing("service-update-time", "one service update (3 replicas, start-first) -> UpdateStatus completed", 1)
u = rows("service-updates.tsv")
if u:
    cli = [float(r[2]) - float(r[1]) for r in u]
    print("the %d updates under load: CLI (waits for convergence) median %.2f s, command -> completed median %.2f s" % (
        len(u), med(cli), med(float(r[3]) - float(r[1]) for r in u)))

orph = open(os.path.join(res, "orphans.txt")).read().splitlines() if os.path.exists(os.path.join(res, "orphans.txt")) else []
for o in orph:
    print("left running after a removal (40 s), then removed by the bench: %s" % o)
summary["orphans"] = orph

# ---- where a compose recreate's time goes ----
def events(e):
    p = os.path.join(res, "compose-%s-events.jsonl" % e)
    out = []
    if os.path.exists(p):
        for line in open(p):
            line = line.strip()
            if line:
                ev = json.loads(line)
                a = ev.get("Actor", {}).get("Attributes", {})
                out.append((ev["timeNano"] / 1e9, ev.get("Type"), ev.get("Action"), a.get("name", ""), a.get("signal")))
    return sorted(out)

def nft_rule_adds(e):
    p = os.path.join(res, "compose-%s-nft.txt" % e)
    out = []
    if os.path.exists(p):
        for line in open(p):
            ts, _, rest = line.partition(" ")
            if "dport %s" % port in rest and "dnat" in rest and rest.startswith("add rule"):
                out.append(float(ts))
    return out

steps = [
    ("compose up -d -> kill (stop signal)", "t0", "term"),
    ("stop signal -> SIGKILL (the grace)", "term", "kill9"),
    ("SIGKILL -> die", "kill9", "die"),
    ("die -> network disconnect", "die", "disc"),
    ("die -> stop returns (stop event)", "die", "stop"),
    ("stop -> create (rename, create)", "stop", "create"),
    ("create -> start", "create", "start"),
    ("die -> start (nothing serves)", "die", "start"),
    ("start -> port rule added (nft)", "start", "rule"),
    ("start -> port listens (docker-proxy)", "start", "listen"),
    ("die -> first failed/stalled request", "die", "ofirst"),
    ("start -> the answer that ends it", "start", "oend"),
    ("no answer (failed/stalled -> answer)", "ofirst", "oend"),
    ("compose up -d, whole command", "t0", "t1"),
]
timelines = {}
for e in ("berth", "docker"):
    u = rows("compose-%s-updates.tsv" % e)
    if not u:
        continue
    evs, adds = events(e), nft_rule_adds(e)
    l = load("compose-%s-load.json" % e) or {"outages": [], "listen": []}
    tl = []
    for i, (n, t0, t1) in enumerate(u):
        t0, t1 = float(t0), float(t1)
        until = float(u[i + 1][1]) if i + 1 < len(u) else float("inf")
        w = [ev for ev in evs if t0 <= ev[0] < until]
        def first(pred, after=t0):
            return next((ev[0] for ev in w if ev[0] >= after and pred(ev)), None)
        p = {"t0": t0, "t1": t1}
        p["term"] = first(lambda ev: ev[2] == "kill" and ev[4] not in ("9", "SIGKILL"))
        p["kill9"] = first(lambda ev: ev[2] == "kill" and ev[4] in ("9", "SIGKILL"))
        p["die"] = first(lambda ev: ev[2] == "die")
        p["disc"] = first(lambda ev: ev[1] == "network" and ev[2] == "disconnect", p["die"] or t0)
        p["stop"] = first(lambda ev: ev[2] == "stop")
        p["create"] = first(lambda ev: ev[1] == "container" and ev[2] == "create")
        p["start"] = first(lambda ev: ev[1] == "container" and ev[2] == "start")
        p["rule"] = next((a for a in adds if p["create"] and a >= p["create"] and a < until), None)
        p["listen"] = next((c[0] for c in l.get("listen", []) if c[1] and p["create"] and c[0] >= p["create"] and c[0] < until), None)
        outs = [(o["start"], o["end"]) for o in l["outages"] if t0 <= o["start"] < until]
        outs += [(sl[0], sl[0] + sl[1] / 1000) for sl in l.get("slow", []) if t0 <= sl[0] < until]
        outs.sort()
        p["ofirst"] = outs[0][0] if outs else None
        p["oend"] = max((e for _, e in outs if e is not None), default=None)
        p["failed"] = sum(o["failed"] for o in l["outages"] if t0 <= o["start"] < until)
        seq = []
        for fl in l.get("failures", []):
            if t0 <= fl[0] < until:
                if seq and seq[-1][0] == fl[1]:
                    seq[-1][1] += 1
                    seq[-1][2] = max(seq[-1][2], fl[2])
                else:
                    seq.append([fl[1], 1, fl[2]])
        p["seq"] = seq
        p["slow"] = [(round((sl[0] - (p["die"] or t0)) * 1000), sl[1]) for sl in l.get("slow", []) if t0 <= sl[0] < until]
        tl.append(p)
    timelines[e] = tl

def span(p, a, b):
    return None if p.get(a) is None or p.get(b) is None else (p[b] - p[a]) * 1000

if timelines:
    print()
    print("== where a compose recreate's time goes (medians over the updates, ms; from each engine's events, nft monitor, the load client) ==")
    es = [e for e in ("berth", "docker") if e in timelines]
    print("%-42s" % "step" + "".join("%12s" % e for e in es) + ("%8s" % "ratio" if len(es) == 2 else ""))
    summary["timeline_ms"] = {}
    for label, a, b in steps:
        vals = [med(span(p, a, b) for p in timelines[e]) for e in es]
        summary["timeline_ms"][label] = dict(zip(es, vals))
        ratio = ""
        if len(es) == 2 and vals[0] is not None and vals[1] is not None and vals[0] > 0 and vals[1] > 0:
            ratio = "%8.2f" % (vals[0] / vals[1])
        print("%-42s" % label + "".join("%12s" % f(v) for v in vals) + ratio)
    print("failed requests per update: " + ", ".join(
        "%s %s" % (e, [p["failed"] for p in timelines[e]]) for e in es))
    for e in es:
        print("%s, per update (ms from compose up -d): " % e)
        for n, p in enumerate(timelines[e], 1):
            print("  %d: " % n + ", ".join("%s %s" % (k, f(span(p, "t0", k))) for k in
                  ("term", "kill9", "die", "disc", "stop", "create", "start", "rule", "listen", "ofirst", "oend", "t1")))
            print("     failures in order: %s; slow answers (sent at ms from die, took ms): %s" % (
                ", ".join("%s x%d (longest %.0f ms)" % (k, c, m) for k, c, m in p["seq"]) or "none",
                p["slow"] or "none"))

# berth's own log: how long the API calls of the recreates took (the daemon's duration_ms).
logp = os.path.join(res, "berth.log")
if os.path.exists(logp) and "berth" in timelines:
    u = rows("compose-berth-updates.tsv")
    lo, hi = float(u[0][1]), float(u[-1][2])
    calls = {}
    pat = re.compile(r"^(\S+)Z .*request method=(\S+) path=/v[\d.]+/containers/(\S*) status=\d+ duration_ms=(\d+)")
    for line in open(logp):
        m = pat.match(line)
        if not m:
            continue
        t = datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
        if lo <= t <= hi + 1:
            parts = m.group(3).split("?")[0].split("/")
            verb = parts[1] if len(parts) > 1 else parts[0]
            if re.fullmatch(r"[0-9a-f]{12,64}", verb):
                verb = "(remove)"
            calls.setdefault("%s %s" % (m.group(2), verb), []).append(int(m.group(4)))
    if calls:
        print("berth daemon log, container API calls during the recreates (median duration_ms, count): " +
              ", ".join("%s %s (%d)" % (k, f(med(v)), len(v)) for k, v in sorted(calls.items()) if k.split()[0] != "GET"))

json.dump(summary, open(os.path.join(res, "services-results.json"), "w"), indent=1, default=str)
EOF
log "results and raw data: $RES (the berth daemon's log: $RES/berth.log)"
