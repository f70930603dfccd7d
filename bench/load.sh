#!/usr/bin/env bash
# Image-load benchmark: a durable `berth load` of a ~460 MB `docker save`
# archive, next to `podman load` of the same file and a tar-and-sync floor.
# See bench/README.md. Needs root (drop_caches, mounts, apt-get).
#
# Environment:
#   ROUNDS=3                 rounds; each round runs floor, berth, podman
#   BENCH_DIR=bench/out      work dir: archive, state dirs, results
#   ARCHIVE=$BENCH_DIR/load-bench.tar
#   BERTH_BIN=target/release/berth   (built with cargo if missing)
#   TOOLS="floor berth podman"       subset to run, e.g. TOOLS="floor podman"
#   MAKE_ARCHIVE_ARGS=""     extra args for make-archive.py (e.g. "--seed 1")
#   VERIFY=1                 check each tool really holds the image afterwards
#   READY_TIMEOUT=30         seconds to wait for the berth daemon's socket
#   SETTLE=2                 seconds of idle (between two syncs) before each drop_caches
# Exit status: 0 when all measured targets pass, 3 when one is missed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SCRIPT_DIR/out}
ROUNDS=${ROUNDS:-3}
TOOLS=${TOOLS:-floor berth podman}
VERIFY=${VERIFY:-1}
READY_TIMEOUT=${READY_TIMEOUT:-30}
SETTLE=${SETTLE:-2}
MAKE_ARCHIVE_ARGS=${MAKE_ARCHIVE_ARGS:-}
TAG=bench/load:1

log() { printf '[load-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " ${TOOLS//,/ } " == *" $1 "* ]]; }

[[ $(id -u) -eq 0 ]] || die "run as root (drop_caches, overlay mounts, apt-get)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
ARCHIVE=${ARCHIVE:-$BENCH_DIR/load-bench.tar}
STATE=$BENCH_DIR/state          # fresh state dirs, same filesystem as the archive
RESULTS_TSV=$BENCH_DIR/load-results.tsv
RESULTS_JSON=$BENCH_DIR/load-results.json
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
RUN_TMP=$(mktemp -d /tmp/berth-load-bench.XXXXXX)   # daemon socket + logs
DAEMON_PID=""

# ---------------------------------------------------------------- cleanup ---

unmount_under() {
	# Unmount everything mounted at or below $1, deepest first.
	local dir=$1 mp
	[[ -e $dir ]] || return 0
	findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' |
		sort -r | while IFS= read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp" || log "warning: cannot unmount $mp"
	done
}

remove_state() {
	unmount_under "$1"
	rm -rf -- "$1"
}

stop_daemon() {
	[[ -n $DAEMON_PID ]] || return 0
	if kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		local i
		for ((i = 0; i < 100; i++)); do
			kill -0 "$DAEMON_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$DAEMON_PID" 2>/dev/null; then
			log "warning: berth daemon $DAEMON_PID ignored SIGTERM for 10 s; killing it"
			kill -KILL "$DAEMON_PID" 2>/dev/null || true
		fi
	fi
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_daemon
	remove_state "$STATE"
	rm -rf -- "$RUN_TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ preparation ---

ensure_packages() {
	local missing=() pkg
	want podman && ! command -v podman >/dev/null && missing+=(podman)
	for pkg in busybox-static curl python3; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y "${missing[@]}" >&2 ||
		{ apt-get update >&2 && apt-get install -y "${missing[@]}" >&2; }
}

ensure_archive() {
	if [[ -f $ARCHIVE ]]; then
		log "reusing $ARCHIVE ($(stat -c %s "$ARCHIVE") bytes)"
		return 0
	fi
	log "generating $ARCHIVE"
	# shellcheck disable=SC2086  # MAKE_ARCHIVE_ARGS is a word list on purpose
	python3 "$SCRIPT_DIR/make-archive.py" --out "$ARCHIVE" $MAKE_ARCHIVE_ARGS >&2
}

ensure_berth() {
	if [[ ! -x $BERTH_BIN ]]; then
		log "building berth (cargo build --release -p berth)"
		(cd "$REPO_DIR" && cargo build --release -p berth) >&2
	fi
	[[ -x $BERTH_BIN ]] || die "no berth binary at $BERTH_BIN"
}

drop_caches() {
	# Let writeback and ext4's discards from the previous step's cleanup settle.
	sync
	sleep "$SETTLE"
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

now() { printf '%s\n' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --------------------------------------------------------------- measures ---

# Each measure_* runs in this shell (not a subshell, so the EXIT trap knows the
# daemon's PID) and sets its results in globals; all output goes to stderr.

measure_floor() {
	local dir=$STATE/floor i=0 layer t0 t1 t2
	remove_state "$dir"
	mkdir -p "$dir"
	drop_caches
	t0=$(now)
	for layer in "${LAYERS[@]}"; do
		i=$((i + 1))
		mkdir "$dir/$i"
		tar -xOf "$ARCHIVE" --occurrence=1 "$layer" | tar -x -C "$dir/$i"
	done
	t1=$(now)
	sync
	t2=$(now)
	remove_state "$dir"
	floor=$(elapsed "$t0" "$t2")
	floor_sync=$(elapsed "$t1" "$t2")
}

berth_cli() { "$BERTH_BIN" --host "unix://$SOCK" "$@"; }

berth_ready() {
	{ berth_cli version >/dev/null 2>&1 ||
		curl -sf --max-time 2 --unix-socket "$SOCK" http://x/_ping >/dev/null 2>&1; } &&
		kill -0 "$DAEMON_PID" 2>/dev/null
}

measure_berth() {
	local root=$STATE/berth-root t0 t1 t2 i id
	SOCK=$RUN_TMP/berth.sock
	local dlog=$RUN_TMP/berth-daemon.log
	remove_state "$root"
	rm -f "$SOCK"
	mkdir -p "$root"
	"$BERTH_BIN" daemon --root "$root" --host "unix://$SOCK" --bridge none >"$dlog" 2>&1 &
	DAEMON_PID=$!
	for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
		berth_ready && break
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ! berth_ready; then
		tail -n 20 "$dlog" >&2 || true
		kill -0 "$DAEMON_PID" 2>/dev/null ||
			die "berth daemon exited without serving $SOCK (log above); TOOLS=\"floor podman\" skips berth"
		die "berth daemon not answering on $SOCK after ${READY_TIMEOUT}s (log above)"
	fi
	drop_caches
	t0=$(now)
	berth_cli load -i "$ARCHIVE" >&2
	t1=$(now)
	# Not counted: a sync right after shows how much was left unsynced.
	sync
	t2=$(now)
	if [[ $VERIFY == 1 ]]; then
		id=$(curl -sf --unix-socket "$SOCK" "http://x/images/$TAG/json" |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["Id"])') ||
			die "berth does not show $TAG after load"
		[[ $id == "$IMAGE_ID" ]] || die "berth loaded $id, expected $IMAGE_ID"
	fi
	stop_daemon
	remove_state "$root"
	berth=$(elapsed "$t0" "$t1")
	berth_sync=$(elapsed "$t1" "$t2")
}

measure_podman() {
	local dir=$STATE/podman t0 t1 t2 id
	remove_state "$dir"
	mkdir -p "$dir/root" "$dir/run" "$dir/tmp"
	local pm=(podman --root "$dir/root" --runroot "$dir/run" --storage-driver overlay)
	drop_caches
	t0=$(now)
	TMPDIR=$dir/tmp "${pm[@]}" load -q -i "$ARCHIVE" >&2
	t1=$(now)
	sync # podman does not sync; counted, so both tools are durable
	t2=$(now)
	if [[ $VERIFY == 1 ]]; then
		id=$("${pm[@]}" image inspect --format '{{.Id}}' "$TAG") ||
			die "podman does not show $TAG after load"
		[[ sha256:$id == "$IMAGE_ID" ]] || die "podman loaded $id, expected $IMAGE_ID"
	fi
	remove_state "$dir"
	podman=$(elapsed "$t0" "$t2")
	podman_load=$(elapsed "$t0" "$t1")
	podman_sync=$(elapsed "$t1" "$t2")
}

# ------------------------------------------------------------------- main ---

ensure_packages
ensure_archive
want berth && ensure_berth

MANIFEST=$(tar -xOf "$ARCHIVE" manifest.json)
mapfile -t LAYERS < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])[0]["Layers"]))' "$MANIFEST")
IMAGE_ID=sha256:$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0]["Config"].removesuffix(".json"))' "$MANIFEST")
ARCHIVE_BYTES=$(stat -c %s "$ARCHIVE")
log "archive $ARCHIVE: $ARCHIVE_BYTES bytes, ${#LAYERS[@]} layers, image $IMAGE_ID"
log "state dirs under $STATE ($(findmnt -n -o FSTYPE -T "$BENCH_DIR") on $(findmnt -n -o SOURCE -T "$BENCH_DIR")); tools: $TOOLS; rounds: $ROUNDS"

remove_state "$STATE"
mkdir -p "$STATE"
printf 'round\tfloor\tfloor_sync\tberth\tberth_after_sync\tpodman\tpodman_load\tpodman_sync\n' >"$RESULTS_TSV"

for ((r = 1; r <= ROUNDS; r++)); do
	floor=- floor_sync=- berth=- berth_sync=- podman=- podman_load=- podman_sync=-
	if want floor; then
		log "round $r: floor (tar -x of each layer + sync)"
		measure_floor
	fi
	if want berth; then
		log "round $r: berth load"
		measure_berth
	fi
	if want podman; then
		log "round $r: podman load + sync"
		measure_podman
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$floor" "$floor_sync" "$berth" "$berth_sync" \
		"$podman" "$podman_load" "$podman_sync" >>"$RESULTS_TSV"
	log "round $r: floor=${floor}s berth=${berth}s podman=${podman}s"
done

python3 - "$RESULTS_TSV" "$RESULTS_JSON" "$ARCHIVE" "$ARCHIVE_BYTES" "$IMAGE_ID" "$TOOLS" <<'PY'
import csv, json, statistics, sys, datetime, platform, subprocess
tsv, out, archive, nbytes, image_id, tools = sys.argv[1:]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))

def num(v):
    return None if v in ("-", "") else float(v)

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

rounds = []
for row in rows:
    d = {"round": int(row["round"])}
    d.update((k, num(v)) for k, v in row.items() if k != "round")
    d["berth_over_podman"] = ratio(d["berth"], d["podman"])
    d["berth_over_floor"] = ratio(d["berth"], d["floor"])
    rounds.append(d)

def med(key):
    vals = [r[key] for r in rounds if r[key] is not None]
    return statistics.median(vals) if vals else None

keys = ["floor", "floor_sync", "berth", "berth_after_sync", "podman", "podman_load",
        "podman_sync", "berth_over_podman", "berth_over_floor"]
median = {k: med(k) for k in keys}

def f(v, w=8, p=2):
    return f"{'-':>{w}}" if v is None else f"{v:{w}.{p}f}"

print()
print(f"load of {archive} ({int(nbytes) / 1e6:.0f} MB), image {image_id[:19]}")
print("seconds; floor = tar -x of each layer + sync; podman = load + sync; berth = load alone,")
print("durable by itself (its (sync) column is a sync run right after it, not counted)")
hdr = (f"{'round':>6} {'floor':>8} {'(sync)':>8} {'berth':>8} {'(sync)':>8} {'podman':>8} "
       f"{'(load)':>8} {'(sync)':>8} {'b/podman':>9} {'b/floor':>8}")
print(hdr)
print("-" * len(hdr))
for r in rounds + [dict(median, round="median")]:
    print(f"{r['round']:>6} {f(r['floor'])} {f(r['floor_sync'])} {f(r['berth'])} {f(r['berth_after_sync'])} "
          f"{f(r['podman'])} {f(r['podman_load'])} {f(r['podman_sync'])} "
          f"{f(r['berth_over_podman'], 9)} {f(r['berth_over_floor'])}")
print()

targets = []
for name, key, limit in (("berth/podman <= 0.5", "berth_over_podman", 0.5),
                         ("berth/floor <= 1.5", "berth_over_floor", 1.5)):
    v = median[key]
    status = "SKIP" if v is None else ("PASS" if v <= limit else "MISS")
    targets.append({"target": name, "median_ratio": v, "limit": limit, "status": status})
    print(f"target {name:<20} median {'-' if v is None else f'{v:.2f}':>6}  {status}")

kernel = platform.release()
summary = {
    "benchmark": "image-load",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "archive": archive, "archive_bytes": int(nbytes), "image_id": image_id,
    "tools": tools.replace(",", " ").split(), "kernel": kernel,
    "podman_version": subprocess.run(["podman", "--version"], capture_output=True,
                                     text=True).stdout.strip() or None,
    "unit": "seconds",
    "rounds": rounds, "median": median, "targets": targets,
    "ratios_are": "median over rounds of the per-round ratio",
}
with open(out, "w") as fh:
    json.dump(summary, fh, indent=2)
    fh.write("\n")
print(f"\nwrote {out}")
sys.exit(3 if any(t["status"] == "MISS" for t in targets) else 0)
PY
