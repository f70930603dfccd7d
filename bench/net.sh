#!/usr/bin/env bash
# Network benchmark: TCP throughput and connection rate through a published port against
# the same server on the host network, side by side in one run, with the same server and
# client programs everywhere (iperf3 for throughput, bench/netbench for connections/s).
#
# Cases (servers in containers of fixture/app:1, the host's binaries bind-mounted
# read-only; the clients always run on the host):
#   hostproc  plain host processes, no container      -> 127.0.0.1        (reference only)
#   hostnet   container with --network host            -> 127.0.0.1        (the baseline)
#   bridge    container on the default bridge          -> its container IP (veth + bridge)
#   pub-lo    same container, -p 127.0.0.1:HP:P        -> 127.0.0.1:HP     (DNAT + route_localnet)
#   pub-addr  same container, -p HP:P (all addresses)  -> host's own address:HP (DNAT)
# and, with the client in a network namespace of its own behind a veth pair (a machine next
# to the host, as a service's clients are in production; 198.19.0.2 -> the host's 198.19.0.1):
#   remote-host   container with --network host        -> 198.19.0.1       (their baseline)
#   remote-pub    the bridged container, -p HP:P        -> 198.19.0.1:HP    (DNAT, forward)
# The "remote" pair measures what clients of a published service see: both cases cross the
# client's veth; the published one adds DNAT, forwarding, the bridge and the container's veth.
# Metrics: iperf3 single stream and STREAMS streams (Gbit/s, received), and connections/s
# (connect, 1-byte request, 1-byte reply, close; CONN_THREADS client threads).
# The cases run in turn, in a rotating order, for ROUNDS rounds; the table shows medians
# and each case's ratio to hostnet (the median of the per-round ratios: the load of a
# shared machine drifts between rounds); remote-pub's ratio is to remote-host. Target
# (issue 5): published-port throughput >= 90% of the host network's, printed for both
# pairs (pub-lo/hostnet: a client on the host itself; remote-pub/remote-host: a client
# elsewhere).
#
# Published ports need berth's API to accept -p; a berth that refuses them ("not supported
# yet") still gets the other cases measured and the published ones reported as skipped.
#
# It runs its own daemon (state under BENCH_DIR, default bridge BRIDGE) in the host's network
# namespace, or in one of its own when another berth daemon is there (NETNS below). Every packet goes to 127.0.0.1, to the host's own address or to the
# container's address on the bench's bridge, or from the bench's client namespace to
# 198.19.0.1 (RFC 2544's benchmark range, on the veth pair the bench created). On exit it removes the containers, stops the
# daemon, unmounts, deletes the bridge and berth's nftables table it created, and restores
# net.ipv4.ip_forward.
#
# Environment:
#   ROUNDS=3  TPUT_SECONDS=5  STREAMS=4  CONN_SECONDS=3  CONN_THREADS=4
#   CASES="hostproc hostnet bridge pub-lo pub-addr remote-host remote-pub"
#                              subset to run (hostnet is required; remote-pub needs remote-host)
#   BENCH_DIR=bench/out        work dir (state root, results)
#   BERTH_BIN=target/release/berth   (built with cargo --release if missing)
#   NETBENCH_BIN=target/release/berth-netbench   (idem)
#   BRIDGE=berthbench0         the bench daemon's default bridge
#   NETNS=auto                 host, own (a fresh network namespace) or auto (see below)
#   LINK_MTU=                  the daemon's link_mtu (unset: its default, 65520; 0: the
#                              links at mtu, 1500, Docker's layout)
# Exit status: 0 (whether the target is met is printed), 1 on an error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
ROUNDS=${ROUNDS:-3}
TPUT_SECONDS=${TPUT_SECONDS:-5}
STREAMS=${STREAMS:-4}
CONN_SECONDS=${CONN_SECONDS:-3}
CONN_THREADS=${CONN_THREADS:-4}
CASES=${CASES:-hostproc hostnet bridge pub-lo pub-addr remote-host remote-pub}
BRIDGE=${BRIDGE:-berthbench0}
IMAGE=fixture/app:1
ARCHIVE=$REPO_DIR/tests/fixtures/app-docker-save.tar
# Ports inside the servers' network namespace: iperf3 and netbench.
P_TPUT=5201
P_CONN=7000
# Host-side ports: host-network servers, published on 127.0.0.1, published on all addresses.
HN_TPUT=15201 HN_CONN=17000
HP_TPUT=16201 HP_CONN=18000
LO_TPUT=25201 LO_CONN=27000
ALL_TPUT=35201 ALL_CONN=37000
# remote-host's servers (on the client link's host address).
RH_TPUT=45201 RH_CONN=47000
# The client namespace of the remote cases and its link: host end, client end.
CLIENT_NS=berth-netbench-client
CLIENT_HOST_IF=nbcl0 CLIENT_IF=nbcl1
CLIENT_HOST_ADDR=198.19.0.1 CLIENT_ADDR=198.19.0.2
LIBDIR=/usr/lib/x86_64-linux-gnu
LDSO=$LIBDIR/ld-linux-x86-64.so.2

log() { printf '[net-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " ${CASES//,/ } " == *" $1 "* ]]; }

[[ $(id -u) -eq 0 ]] || die "run as root (containers, bridges, nftables)"
for c in $CASES; do
    case $c in hostproc | hostnet | bridge | pub-lo | pub-addr | remote-host | remote-pub) ;;
    *) die "unknown case $c in CASES" ;;
    esac
done
want hostnet || die "CASES must include hostnet (the baseline of the ratios)"
if want remote-pub && ! want remote-host; then
    die "CASES: remote-pub needs remote-host (its baseline)"
fi
for t in iperf3 python3 ip nft; do
    command -v "$t" >/dev/null || {
        log "installing $t"
        pkg=$t
        [[ $t == ip ]] && pkg=iproute2
        apt-get install -y -qq "$pkg" >/dev/null
    }
done
[[ -x $LDSO ]] || die "$LDSO missing (the bench bind-mounts the host's $LIBDIR into containers)"
[[ -f $ARCHIVE ]] || die "$ARCHIVE missing"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$BENCH_DIR/net
SOCK=$WORK/berth.sock
# Present while the bench owns $BRIDGE and table ip berth in its namespace.
OWNED=$BENCH_DIR/net-owned-${BERTH_NETBENCH_NS:-host}

unmount_work() {
    local m
    for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
# What an earlier run that died left behind (only if that run owned it).
drop_owned_net() {
    ip link del "$BRIDGE" 2>/dev/null || true
    ip netns del "$CLIENT_NS" 2>/dev/null || true
    nft delete table ip berth 2>/dev/null || true
    rm -f "$OWNED"
}

# NETNS=auto (default): the host's network namespace, unless another berth daemon already
# owns berth's nftables table there; then (and with NETNS=own) a namespace of the bench's
# own, with loopback and an interface (a veth pair with both ends there) carrying 198.18.0.1/24 (RFC 2544's benchmark
# range) as "the host's address". The kernel datapath is the same; only the daemon's
# table and bridge no longer meet the other daemon's.
NETNS=${NETNS:-auto}
case $NETNS in host | own | auto) ;; *) die "NETNS=$NETNS: host, own or auto" ;; esac
if [[ -z ${BERTH_NETBENCH_NS:-} ]]; then
    if [[ $NETNS == own ]] || { [[ $NETNS == auto ]] && [[ ! -e $BENCH_DIR/net-owned-host ]] &&
        nft list table ip berth >/dev/null 2>&1; }; then
        ns=berth-netbench
        [[ $NETNS == auto ]] && log "another berth daemon owns table ip berth in this namespace: running in network namespace $ns"
        ip netns del "$ns" 2>/dev/null || true
        ip netns add "$ns"
        trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
        ip -n "$ns" link set lo up
        ip -n "$ns" link add bench0 type veth peer name bench1
        ip -n "$ns" addr add 198.18.0.1/24 dev bench0
        ip -n "$ns" link set bench1 up
        ip -n "$ns" link set bench0 up
        rc=0
        nsenter --net="/run/netns/$ns" -- env BERTH_NETBENCH_NS="$ns" bash "$0" "$@" || rc=$?
        exit "$rc"
    fi
fi

if [[ -e $OWNED ]]; then
    log "cleaning up after an earlier run"
    unmount_work
    drop_owned_net
fi
if nft list table ip berth >/dev/null 2>&1; then
    die "the host's nftables already has berth's table (ip berth): another berth daemon runs in this network namespace; stop it first (the bench's daemon would rewrite that table)"
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "interface $BRIDGE exists and is not the bench's; set BRIDGE= to another name"
fi
unmount_work
rm -rf "$WORK"
mkdir -p "$WORK"

cd "$REPO_DIR"
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
NETBENCH_BIN=${NETBENCH_BIN:-$REPO_DIR/target/release/berth-netbench}
if [[ ! -x $BERTH_BIN || ! -x $(dirname "$BERTH_BIN")/berth-shim || ! -x $(dirname "$BERTH_BIN")/berth-proxy ]]; then
    log "building berth (release)"
    cargo build --release --locked -p berth -p berth-shim >&2
fi
if [[ ! -x $NETBENCH_BIN ]]; then
    log "building berth-netbench (release)"
    cargo build --release --locked -p berth-netbench >&2
fi
IPERF3_BIN=$(command -v iperf3)

IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
PIDS=()
DAEMON=
cleanup() {
    local rc=$?
    set +e
    if [[ -n $DAEMON ]]; then
        for c in $("$BERTH_BIN" -H "unix://$SOCK" ps -aq 2>/dev/null); do
            "$BERTH_BIN" -H "unix://$SOCK" rm -f "$c" >/dev/null 2>&1
        done
        kill "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
    fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    unmount_work
    [[ -e $OWNED ]] && drop_owned_net
    ip netns del "$CLIENT_NS" 2>/dev/null
    echo "$IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

: >"$OWNED"
DAEMON_CONFIG=()
if [[ -n ${LINK_MTU:-} ]]; then
    [[ $LINK_MTU =~ ^[0-9]+$ ]] || die "LINK_MTU=$LINK_MTU: a number"
    echo "link_mtu = $LINK_MTU" >"$WORK/config.toml"
    DAEMON_CONFIG=(--config "$WORK/config.toml")
fi
"$BERTH_BIN" daemon --root "$WORK/root" --host "unix://$SOCK" --bridge "$BRIDGE" \
    "${DAEMON_CONFIG[@]}" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
berth() { "$BERTH_BIN" -H "unix://$SOCK" "$@"; }
for _ in $(seq 100); do [[ -S $SOCK ]] && berth version >/dev/null 2>&1 && break; sleep 0.1; done
berth version >/dev/null 2>&1 || die "daemon did not start: $(cat "$WORK/daemon.log")"
berth load -i "$ARCHIVE" >/dev/null

# The servers: iperf3 in the background, netbench in the foreground, both run through the
# host's dynamic loader (the busybox image has no /lib64).
BINDS=(-v "$LIBDIR:$LIBDIR:ro" -v "$IPERF3_BIN:/bench/iperf3:ro" -v "$NETBENCH_BIN:/bench/netbench:ro")
servers() { # ADDR TPUT_PORT CONN_PORT
    echo "$LDSO /bench/iperf3 -s -B $1 -p $2 >/dev/null & exec $LDSO /bench/netbench serve $1:$3"
}
# Waits until both servers of a case answer (a netbench request, an iperf3 control
# connection accepted).
# The remote cases' clients run in the client namespace (client CASE COMMAND...).
client() {
    local c=$1
    shift
    case $c in
    remote-*) nsenter --net="/run/netns/$CLIENT_NS" -- "$@" ;;
    *) "$@" ;;
    esac
}
wait_ready() { # HOST TPUT_PORT CONN_PORT CASE
    for _ in $(seq 100); do
        if client "$4" "$NETBENCH_BIN" connrate "$1" "$3" 1 1 >/dev/null 2>&1 &&
            client "$4" bash -c '(exec 3<>"/dev/tcp/$1/$2")' _ "$1" "$2" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$4: servers at $1:$2/$3 do not answer"
}

HOST_ADDR=$(ip -4 -o addr show scope global | awk -v b="$BRIDGE" '$2 != b && $2 !~ /^(berth|bth|nbcl)/ {sub("/.*", "", $4); print $4; exit}')

declare -A TARGET_HOST TARGET_TPUT TARGET_CONN
SKIPPED=()
if want hostproc; then
    "$IPERF3_BIN" -s -B 127.0.0.1 -p "$HP_TPUT" >/dev/null 2>&1 &
    PIDS+=($!)
    "$NETBENCH_BIN" serve "127.0.0.1:$HP_CONN" 2>/dev/null &
    PIDS+=($!)
    TARGET_HOST[hostproc]=127.0.0.1 TARGET_TPUT[hostproc]=$HP_TPUT TARGET_CONN[hostproc]=$HP_CONN
    wait_ready 127.0.0.1 "$HP_TPUT" "$HP_CONN" hostproc
fi
berth run -d --name netbench-host --network host "${BINDS[@]}" "$IMAGE" \
    "$(servers 127.0.0.1 "$HN_TPUT" "$HN_CONN")" >/dev/null
TARGET_HOST[hostnet]=127.0.0.1 TARGET_TPUT[hostnet]=$HN_TPUT TARGET_CONN[hostnet]=$HN_CONN
wait_ready 127.0.0.1 "$HN_TPUT" "$HN_CONN" hostnet

if want remote-host; then
    ip netns del "$CLIENT_NS" 2>/dev/null || true
    ip netns add "$CLIENT_NS"
    ip -n "$CLIENT_NS" link set lo up
    ip link add "$CLIENT_HOST_IF" type veth peer name "$CLIENT_IF" netns "$CLIENT_NS"
    ip addr add "$CLIENT_HOST_ADDR/24" dev "$CLIENT_HOST_IF"
    ip link set "$CLIENT_HOST_IF" up
    ip -n "$CLIENT_NS" addr add "$CLIENT_ADDR/24" dev "$CLIENT_IF"
    ip -n "$CLIENT_NS" link set "$CLIENT_IF" up
    ip -n "$CLIENT_NS" route add default via "$CLIENT_HOST_ADDR"
    berth run -d --name netbench-host-remote --network host "${BINDS[@]}" "$IMAGE" \
        "$(servers "$CLIENT_HOST_ADDR" "$RH_TPUT" "$RH_CONN")" >/dev/null
    TARGET_HOST[remote-host]=$CLIENT_HOST_ADDR TARGET_TPUT[remote-host]=$RH_TPUT TARGET_CONN[remote-host]=$RH_CONN
    wait_ready "$CLIENT_HOST_ADDR" "$RH_TPUT" "$RH_CONN" remote-host
fi

if want bridge || want pub-lo || want pub-addr || want remote-pub; then
    publish=()
    want pub-lo && publish+=(-p "127.0.0.1:$LO_TPUT:$P_TPUT" -p "127.0.0.1:$LO_CONN:$P_CONN")
    if want pub-addr || want remote-pub; then
        publish+=(-p "$ALL_TPUT:$P_TPUT" -p "$ALL_CONN:$P_CONN")
        if want pub-addr && [[ -z $HOST_ADDR ]]; then
            SKIPPED+=("pub-addr: the host has no global IPv4 address")
        fi
    fi
    run_bridged() { berth run -d --name netbench-bridge "$@" "${BINDS[@]}" "$IMAGE" "$(servers 0.0.0.0 "$P_TPUT" "$P_CONN")"; }
    if ! out=$(run_bridged "${publish[@]}" 2>&1); then
        [[ ${#publish[@]} -gt 0 && $out == *"not supported"* ]] || die "bridged container: $out"
        SKIPPED+=("pub-lo, pub-addr: this berth refuses published ports: $out")
        berth rm -f netbench-bridge >/dev/null 2>&1 || true
        run_bridged >/dev/null
        publish=()
    fi
    CIP=$(berth inspect netbench-bridge | python3 -c '
import json, sys
c = json.load(sys.stdin)[0]
ns = c["NetworkSettings"]
ips = [ns.get("IPAddress")] + [n.get("IPAddress") for n in (ns.get("Networks") or {}).values()]
print(next((ip for ip in ips if ip), ""))')
    # A berth whose inspect shows no networks yet: the address eth0 has inside.
    if [[ -z $CIP ]]; then
        CIP=$(berth exec netbench-bridge sh -c 'ip -4 -o addr show eth0' | awk '{for (i = 1; i < NF; i++) if ($i == "inet") {sub("/.*", "", $(i + 1)); print $(i + 1); exit}}')
    fi
    [[ $CIP =~ ^[0-9.]+$ ]] || die "no IPv4 address for the bridged container: $CIP"
    log "bridged container at $CIP; host address ${HOST_ADDR:-none}"
    if want bridge; then
        TARGET_HOST[bridge]=$CIP TARGET_TPUT[bridge]=$P_TPUT TARGET_CONN[bridge]=$P_CONN
        wait_ready "$CIP" "$P_TPUT" "$P_CONN" bridge
    fi
    if [[ " ${publish[*]} " == *" 127.0.0.1:$LO_TPUT:"* ]]; then
        TARGET_HOST[pub-lo]=127.0.0.1 TARGET_TPUT[pub-lo]=$LO_TPUT TARGET_CONN[pub-lo]=$LO_CONN
        wait_ready 127.0.0.1 "$LO_TPUT" "$LO_CONN" pub-lo
    fi
    if [[ " ${publish[*]} " == *" $ALL_TPUT:"* ]]; then
        if want pub-addr && [[ -n $HOST_ADDR ]]; then
            TARGET_HOST[pub-addr]=$HOST_ADDR TARGET_TPUT[pub-addr]=$ALL_TPUT TARGET_CONN[pub-addr]=$ALL_CONN
            wait_ready "$HOST_ADDR" "$ALL_TPUT" "$ALL_CONN" pub-addr
        fi
        if want remote-pub; then
            TARGET_HOST[remote-pub]=$CLIENT_HOST_ADDR TARGET_TPUT[remote-pub]=$ALL_TPUT TARGET_CONN[remote-pub]=$ALL_CONN
            wait_ready "$CLIENT_HOST_ADDR" "$ALL_TPUT" "$ALL_CONN" remote-pub
        fi
    fi
fi
# Nothing but the kernel may listen on a published port (no proxy): no berth process
# holds a socket on the published host ports.
for p in $LO_TPUT $LO_CONN $ALL_TPUT $ALL_CONN; do
    if ss -Htlnp "sport = :$p" 2>/dev/null | grep -q .; then
        die "something listens on published port $p: $(ss -Htlnp "sport = :$p")"
    fi
done

RESULTS=$WORK/net-results.tsv
: >"$RESULTS"
iperf() { # CASE HOST PORT STREAMS -> Gbit/s received
    local json c=$1
    shift
    json=$(client "$c" "$IPERF3_BIN" -c "$1" -p "$2" -P "$3" -t "$TPUT_SECONDS" -O 1 -J) ||
        die "iperf3 -c $1 -p $2: $(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("error","?"))' 2>/dev/null)"
    printf '%s' "$json" | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}
ORDER=()
for c in hostproc hostnet bridge pub-lo pub-addr remote-host remote-pub; do
    want "$c" && [[ -n ${TARGET_HOST[$c]:-} ]] && ORDER+=("$c")
done
# Each round starts one case later than the previous one (no case always runs first).
for round in $(seq "$ROUNDS"); do
    for i in "${!ORDER[@]}"; do
        c=${ORDER[$(((i + round - 1) % ${#ORDER[@]}))]}
        h=${TARGET_HOST[$c]} pt=${TARGET_TPUT[$c]} pc=${TARGET_CONN[$c]}
        t1=$(iperf "$c" "$h" "$pt" 1)
        tn=$(iperf "$c" "$h" "$pt" "$STREAMS")
        cr=$(client "$c" "$NETBENCH_BIN" connrate "$h" "$pc" "$CONN_SECONDS" "$CONN_THREADS")
        conn=${cr%% *}
        log "round $round $c ($h): ${t1} Gbit/s, ${tn} Gbit/s x$STREAMS, $cr"
        printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$c" "$t1" "$tn" "$conn" >>"$RESULTS"
    done
done

{
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), kernel $(uname -r), iperf3 $("$IPERF3_BIN" --version | awk 'NR==1 {print $2}')"
    echo "rounds: $ROUNDS, throughput ${TPUT_SECONDS}s per test, connections ${CONN_SECONDS}s with $CONN_THREADS client threads"
    echo "links: MTU $(cat "/sys/class/net/$BRIDGE/mtu") (bridge $BRIDGE, LINK_MTU=${LINK_MTU:-default})"
} >"$WORK/net-meta.txt"
cat "$WORK/net-meta.txt"
for s in "${SKIPPED[@]}"; do echo "skipped: $s"; done
python3 - "$RESULTS" "$STREAMS" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
streams = sys.argv[2]
keys = ("t1", "tn", "conn")
by_round = defaultdict(dict)  # round -> case -> {metric: value}
order = []
for rnd, case, *v in rows:
    if case not in order:
        order.append(case)
    by_round[rnd][case] = dict(zip(keys, map(float, v)))
# Each case's baseline: the same server on the host network, reached the same way.
base = {c: ("remote-host" if c == "remote-pub" else "hostnet") for c in order}
med = {c: {k: statistics.median(r[c][k] for r in by_round.values() if c in r) for k in keys} for c in order}
# Paired ratios: each round's case against that round's baseline, then the median. The
# machine's load drifts between rounds; within a round the cases run back to back.
pair = {c: {k: statistics.median(r[c][k] / r[base[c]][k] for r in by_round.values() if c in r and base[c] in r)
            for k in keys} for c in order}
what = {"hostproc": "host process -> 127.0.0.1", "hostnet": "--network host -> 127.0.0.1",
        "bridge": "bridge -> container IP", "pub-lo": "-p 127.0.0.1:H:C -> 127.0.0.1",
        "pub-addr": "-p H:C -> host address",
        "remote-host": "--network host <- client ns", "remote-pub": "-p H:C <- client ns"}
print()
print("medians over %d rounds; ratio = median of the per-round ratios case / baseline" % len(by_round))
print("%-11s %-29s %9s %6s %9s %6s %10s %6s  %s" % ("case", "path", "1 stream", "ratio", "%s strm" % streams, "ratio", "conn/s", "ratio", "baseline"))
for c in order:
    m, q = med[c], pair[c]
    print("%-11s %-29s %9.2f %6.2f %9.2f %6.2f %10.0f %6.2f  %s" % (
        c, what[c], m["t1"], q["t1"], m["tn"], q["tn"], m["conn"], q["conn"], base[c]))
print("(throughput in Gbit/s received, iperf3)")
for case, who in (("pub-lo", "a client on the host, 127.0.0.1"), ("remote-pub", "a client in another namespace")):
    if case in pair:
        r1, rn = pair[case]["t1"], pair[case]["tn"]
        ok = r1 >= 0.9 and rn >= 0.9
        print("target: published port throughput >= 90%% of host network, %s: %s (1 stream %.0f%%, %s streams %.0f%%)"
              % (who, "MET" if ok else "MISSED", r1 * 100, streams, rn * 100))
if "pub-lo" not in pair and "remote-pub" not in pair:
    print("target: published port throughput >= 90% of host network: NOT MEASURED (published ports not available)")
EOF
log "raw rows: $RESULTS"
