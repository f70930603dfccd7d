#!/usr/bin/env bash
# The VM test lane: runs berth's container, cgroup and network black-box tests (and the
# berth-engine unit tests) inside a qemu guest booted with a Debian kernel, with cgroups
# laid out as the lane asks (pure cgroup v2, or v1 hybrid as systemd mounts it). The guest
# sees the host's root filesystem copy-on-write (9p, read-only, under a tmpfs overlay), so
# the test binaries, berth, the docker CLI, skopeo, nft and ip run at their host paths.
# See docs/TESTING.md.
#
#   scripts/vm-lane.sh [--kernel bookworm|bullseye] [--cgroup v2|v1] [--tests NAME,NAME|all]
#                      [--keep]
#
# With no --kernel/--cgroup it runs every lane: bookworm v2, bookworm v1, bullseye v2.
# Assumes the workspace is built (scripts/test.sh runs cargo build first); lists the test
# executables with `cargo test --no-run`. Exits non-zero if any lane fails, or if qemu
# cannot run, the guest panics or times out (no status file from the guest).
#
# Environment: BERTH_VM_CACHE (kernels, initramfs, runs; default /var/cache/berth-vm),
# BERTH_VM_TIMEOUT (qemu wall clock per lane, seconds, default 2400),
# BERTH_VM_TEST_TIMEOUT (per test binary in the guest, default 900),
# BERTH_VM_TEST_THREADS (default 2), BERTH_VM_MEM (default 4G), BERTH_VM_SMP (default 2),
# BERTH_VM_EXECUTABLES (a file of "NAME PATH" lines to use instead of cargo's listing).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

CACHE=${BERTH_VM_CACHE:-/var/cache/berth-vm}
TIMEOUT=${BERTH_VM_TIMEOUT:-2400}
TEST_TIMEOUT=${BERTH_VM_TEST_TIMEOUT:-900}
THREADS=${BERTH_VM_TEST_THREADS:-2}
MEM=${BERTH_VM_MEM:-4G}
SMP=${BERTH_VM_SMP:-2}
# The default sets, chosen to keep all three lanes within ~20 minutes under TCG on 2 cores
# (docs/TESTING.md has the timings). `berth-engine` is that crate's unit tests. The v1
# lane leaves out the network and volume tests: nothing in them depends on the cgroup
# version, and the two v2 lanes run them on both kernels.
# userns_docker_cli runs with its state roots on an ext4 disk of the guest (its /tmp is a
# tmpfs, which Linux 6.1 cannot idmap; user-namespace remapping needs idmapped layers).
DEFAULT_TESTS=berth-engine,cgroups_docker_cli,devices_docker_cli,containers_docker_cli,isolation_docker_cli,faults_docker_cli,lifecycle_docker_cli,networks_docker_cli,exec_docker_cli,volumes_docker_cli,userns_docker_cli
DEFAULT_TESTS_V1=berth-engine,cgroups_docker_cli,devices_docker_cli,containers_docker_cli,isolation_docker_cli,faults_docker_cli,lifecycle_docker_cli,exec_docker_cli
# Debian 11's 5.10 lacks mount_setattr (5.12), which berth's runtime mounts with: that lane
# proves the refusal is clear (docs/TESTING.md), and the engine's unit tests.
DEFAULT_TESTS_OLD=containers_docker_cli
DEFAULT_ARGS_OLD=a_kernel_older_than_5_12_is_refused_by_name
# Every binary the lane knows to run in a guest (--tests all).
ALL_TESTS=$DEFAULT_TESTS,attach_docker_cli,net_traffic_docker_cli

kernels=()
cgroups=()
tests=
keep=
usage() { sed -n '/^#   scripts/,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --kernel) kernels+=("${2:?}"); shift 2 ;;
    --cgroup) cgroups+=("${2:?}"); shift 2 ;;
    --tests) tests=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "vm-lane: unknown argument $1" >&2; usage ;;
    esac
done
lanes=()
if [ ${#kernels[@]} -eq 0 ] && [ ${#cgroups[@]} -eq 0 ]; then
    lanes=(bookworm:v2 bookworm:v1 bullseye:v2)
else
    [ ${#kernels[@]} -gt 0 ] || kernels=(bookworm)
    [ ${#cgroups[@]} -gt 0 ] || cgroups=(v2)
    for k in "${kernels[@]}"; do for c in "${cgroups[@]}"; do lanes+=("$k:$c"); done; done
fi
for l in "${lanes[@]}"; do
    case "$l" in bookworm:v[12]|bullseye:v[12]) ;; *) echo "vm-lane: unknown lane $l" >&2; exit 2 ;; esac
done

die() { echo "vm-lane: FAIL: $*" >&2; exit 1; }
log() { echo "vm-lane: $*" >&2; }

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed (scripts/deps.sh installs qemu-system-x86)"
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static \
    || /bin/busybox --help >/dev/null 2>&1 || die "/bin/busybox (busybox-static) is needed"
command -v cpio >/dev/null || die "cpio is not installed (scripts/deps.sh installs it)"
[ "$(id -u)" = 0 ] || die "the VM lane needs root (9p passthrough of the host root)"
mkdir -p "$CACHE"

# --- kernels ---------------------------------------------------------------------------

# A bullseye apt configuration of our own (sources, lists, cache), so the host's apt state
# is untouched; signatures are checked against Debian's archive keyring.
bullseye_apt() {
    local d=$CACHE/apt-bullseye
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" >"$d/sources.list"
    APT_OPTS=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache")
    if [ ! -e "$d/updated" ]; then
        log "apt-get update (bullseye, private lists in $d)"
        apt-get "${APT_OPTS[@]}" update -qq || die "apt-get update for bullseye failed"
        touch "$d/updated"
    fi
}

# Sets KVER, KDIR (the extracted package) for kernel $1.
fetch_kernel() {
    local which=$1 pkg deb
    APT_OPTS=()
    [ "$which" = bullseye ] && bullseye_apt
    # The package the metapackage depends on (as apt resolves it now; the last one
    # resolved if apt cannot say).
    pkg=$(apt-cache "${APT_OPTS[@]}" depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
    if [ -n "$pkg" ]; then
        echo "$pkg" >"$CACHE/kernel-$which.pkg"
    elif [ -e "$CACHE/kernel-$which.pkg" ]; then
        pkg=$(cat "$CACHE/kernel-$which.pkg")
    else
        die "cannot resolve the kernel package linux-image-amd64 depends on ($which)"
    fi
    KVER=${pkg#linux-image-}
    KDIR=$CACHE/kernels/$KVER
    if [ ! -e "$KDIR/.done" ]; then
        mkdir -p "$CACHE/debs"
        deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
        if [ -z "$deb" ]; then
            log "downloading $pkg ($which)"
            (cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" download "$pkg" 2>&1 | grep -v "_apt" >&2) || true
            deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
            [ -n "$deb" ] || die "apt-get download $pkg failed"
        fi
        rm -rf "$KDIR"
        mkdir -p "$KDIR"
        dpkg-deb -x "$deb" "$KDIR"
        [ -d "$KDIR/lib/modules/$KVER" ] || die "$deb has no lib/modules/$KVER"
        /bin/busybox depmod -b "$KDIR" "$KVER" || die "depmod $KVER"
        touch "$KDIR/.done"
    fi
    KMODS=$KDIR/lib/modules/$KVER
    VMLINUZ=$KDIR/boot/vmlinuz-$KVER
    [ -f "$VMLINUZ" ] || die "no $VMLINUZ"
}

# modules.dep path of module $1 (by name; - and _ are the same), and its dependencies.
mod_closure() {
    local want=$1
    awk -v want="$want" '
        function name(p) { sub(/.*\//, "", p); sub(/\.ko(\.[a-z]+)?$/, "", p); gsub(/-/, "_", p); return p }
        { sub(/:$/, "", $1); deps[name($1)] = $0; path[name($1)] = $1 }
        END {
            w = want; gsub(/-/, "_", w)
            if (!(w in path)) { print "MISSING " want; exit 1 }
            todo[w] = 1; n = 1
            while (n > 0) {
                n = 0
                for (m in todo) {
                    if (todo[m] != 1) continue
                    todo[m] = 2; print path[m]
                    k = split(deps[m], f, /[ \t]+/)
                    for (i = 2; i <= k; i++) { d = name(f[i]); if (!(d in todo)) { todo[d] = 1; n++ } }
                }
            }
        }' "$KMODS/modules.dep"
}

# Sets INITRD for the kernel in KDIR: static busybox, our init, and the boot modules with
# their dependencies (from modules.dep), at their kernel/ paths with the kernel's
# modules.dep. Rebuilt when the init script changes.
build_initrd() {
    local sum tree m p
    sum=$(cat tests/vm/init /bin/busybox | sha256sum | cut -c1-16)
    INITRD=$CACHE/initrd-$KVER-$sum.gz
    [ -e "$INITRD" ] && return
    tree=$(mktemp -d "$CACHE/initrd-tree.XXXXXX")
    mkdir -p "$tree"/{bin,proc,sys,dev,newroot,lib/modules/$KVER}
    cp /bin/busybox "$tree/bin/busybox"
    cp tests/vm/init "$tree/init"
    chmod 0755 "$tree/init"
    local boot="virtio_pci 9pnet_virtio 9p overlay"
    echo "$boot" >"$tree/modules.boot"
    for m in $boot; do
        mod_closure "$m" >"$tree/closure" || die "module $m not in $KMODS/modules.dep: $(cat "$tree/closure")"
        while read -r p; do
            mkdir -p "$tree/lib/modules/$KVER/$(dirname "$p")"
            cp "$KMODS/$p" "$tree/lib/modules/$KVER/$p"
        done <"$tree/closure"
    done
    rm "$tree/closure"
    cp "$KMODS/modules.dep" "$tree/lib/modules/$KVER/"
    (cd "$tree" && find . | cpio -o -H newc --quiet) | gzip -1 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$tree"
}

# --- test executables ------------------------------------------------------------------

# NAME EXECUTABLE lines for the requested tests, from cargo's own listing.
list_tests() {
    local json
    if [ -n "${BERTH_VM_EXECUTABLES:-}" ]; then
        cp "$BERTH_VM_EXECUTABLES" "$1.all"
    else
    # --workspace: the same feature resolution as `cargo build --workspace --all-targets`,
    # so nothing is rebuilt.
    json=$(cargo test --workspace --no-run --locked --message-format=json 2>"$1.cargo-stderr") \
        || { cat "$1.cargo-stderr" >&2; die "cargo test --no-run failed (is the workspace building?)"; }
    echo "$json" | jq -r '
        select(.reason == "compiler-artifact" and .executable != null and .profile.test)
        | if (.target.kind | index("lib")) and (.package_id | test("berth-engine"))
          then "berth-engine \(.executable)"
          elif (.target.kind | index("test")) then "\(.target.name) \(.executable)"
          else empty end' >"$1.all"
    fi
}

# The NAME EXECUTABLE lines of the comma-separated list $2, from the listing $1.
select_tests() {
    local t line
    for t in ${2//,/ }; do
        line=$(awk -v t="$t" '$1 == t' "$1.all" | head -1)
        [ -n "$line" ] || die "no test executable named $t (have: $(cut -d' ' -f1 "$1.all" | sort -u | tr '\n' ' '))"
        echo "$line"
    done
}

# --- one lane --------------------------------------------------------------------------

run_lane() {
    local kernel=$1 cg=$2 lane="$1-cgroup$2" run out disk append qpid rc start end status
    fetch_kernel "$kernel"
    build_initrd
    run=$CACHE/runs/$lane-$(date +%Y%m%d-%H%M%S)
    out=$run/out
    mkdir -p "$out" "$run/bin"
    # A snapshot of the binaries (hard links, a copy across filesystems), so a rebuild
    # during the run does not swap them under the guest.
    snap() { ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
    # berth finds berth-shim, berth-driver and berth-proxy next to itself.
    for b in berth berth-shim berth-driver berth-proxy; do
        [ -x "$REPO/target/debug/$b" ] || die "no target/debug/$b: build the workspace first"
        snap "$REPO/target/debug/$b" "$run/bin/$b"
    done
    local want=$tests test_args=
    if [ -z "$want" ]; then
        want=$DEFAULT_TESTS
        [ "$cg" = v1 ] && want=$DEFAULT_TESTS_V1
        if [ "$kernel" = bullseye ]; then
            want=$DEFAULT_TESTS_OLD
            test_args=$DEFAULT_ARGS_OLD
        fi
    fi
    [ "$want" = all ] && want=$ALL_TESTS
    select_tests "$RUN_TESTS" "$want" >"$run/tests.list"
    while read -r name exe; do
        snap "$exe" "$run/bin/$(basename "$exe")"
        echo "$name $run/bin/$(basename "$exe")"
    done <"$run/tests.list" >"$out/tests"
    cat >"$out/config.sh" <<CFG
VM_LANE='$lane (kernel $KVER)'
VM_CGROUP=$cg
VM_MODULES='$KMODS'
VM_REPO='$REPO'
VM_BERTH_BIN='$run/bin/berth'
VM_TEST_THREADS=$THREADS
VM_TEST_TIMEOUT=$TEST_TIMEOUT
VM_TEST_ARGS='$test_args'
CFG
    disk=$run/disk.img
    # Sparse: the guest makes an ext4 of it for the tests that need a disk filesystem.
    truncate -s 4G "$disk"
    # A guest CPU stuck in its kernel (a soft lockup: seen once under TCG, both vCPUs
    # spinning for minutes) panics the guest, so the lane fails at once, not at its timeout.
    append="console=ttyS0 quiet panic=-1 softlockup_panic=1 berth_vm_script=$REPO/tests/vm/guest.sh"
    [ "$cg" = v2 ] && append="$append cgroup_no_v1=all"
    log "lane $lane: kernel $KVER, run dir $run, tests: $(cut -d' ' -f1 "$run/tests.list" | tr '\n' ' ')"
    start=$(date +%s)
    : >"$out/guest.log"
    set +e
    timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m "$MEM" -smp "$SMP" \
        -nodefaults -display none -no-reboot -serial "file:$run/console.log" \
        -kernel "$VMLINUZ" -initrd "$INITRD" -append "$append" \
        -fsdev "local,id=hr,path=/,security_model=passthrough,readonly=on,multidevs=remap" \
        -device virtio-9p-pci,fsdev=hr,mount_tag=hostroot \
        -fsdev "local,id=out,path=$out,security_model=none" \
        -device virtio-9p-pci,fsdev=out,mount_tag=out \
        -drive "file=$disk,if=virtio,format=raw" \
        >"$run/qemu.log" 2>&1 &
    qpid=$!
    QEMU_PID=$qpid
    tail -n +1 -F --pid=$qpid "$out/guest.log" 2>/dev/null | sed -u "s/^/[$lane] /"
    wait $qpid
    rc=$?
    QEMU_PID=
    set -e
    end=$(date +%s)
    rm -f "$disk"
    LANE_TIME[$lane]=$((end - start))
    if [ ! -s "$out/status" ]; then
        echo "vm-lane: FAIL: lane $lane: the guest wrote no status (qemu exit $rc after $((end - start)) s$([ $rc = 124 ] && echo ", timed out after $TIMEOUT s"))" >&2
        echo "--- qemu output ($run/qemu.log):" >&2; tail -n 30 "$run/qemu.log" >&2
        echo "--- guest console ($run/console.log):" >&2; tail -n 60 "$run/console.log" >&2
        LANE_STATUS[$lane]="FAIL (no status from the guest)"
        if grep -q 'soft lockup' "$run/console.log"; then
            LANE_STATUS[$lane]="FAIL (guest soft lockup)"
            LANE_LOCKUP=1
        fi
        return 1
    fi
    status=$(cat "$out/status")
    if [ "$status" = 0 ]; then
        LANE_STATUS[$lane]=ok
    else
        LANE_STATUS[$lane]="FAIL (guest status $status)"
    fi
    [ -n "$keep" ] || rm -rf "$run/bin"
    LANE_LOG[$lane]=$out/guest.log
    log "lane $lane: ${LANE_STATUS[$lane]} in $((end - start)) s; log: $out/guest.log"
    [ "$status" = 0 ]
}

# Old runs: the newest 12 are kept.
if [ -d "$CACHE/runs" ]; then
    ls -1dt "$CACHE/runs"/*/ 2>/dev/null | tail -n +13 | xargs -r rm -rf
fi
declare -A LANE_TIME LANE_STATUS LANE_LOG
RUN_TESTS=$(mktemp /tmp/berth-vm-tests.XXXXXX)
QEMU_PID=
# An interrupted run takes its guest down with it.
trap 'rm -f "$RUN_TESTS" "$RUN_TESTS".*; [ -z "$QEMU_PID" ] || kill "$QEMU_PID" 2>/dev/null' EXIT
trap 'exit 130' INT TERM
list_tests "$RUN_TESTS"
overall=0
retried=
for l in "${lanes[@]}"; do
    LANE_LOCKUP=
    if ! run_lane "${l%%:*}" "${l##*:}"; then
        # A guest kernel lockup is the emulator's, not a test's verdict: the lane runs
        # again, once per run; a second lockup, or any test failure, fails the run.
        if [ -n "$LANE_LOCKUP" ] && [ -z "$retried" ]; then
            retried=1
            log "lane ${l%%:*}-cgroup${l##*:}: the guest locked up (console above); running the lane again, once"
            run_lane "${l%%:*}" "${l##*:}" || overall=1
            lane="${l%%:*}-cgroup${l##*:}"
            LANE_STATUS[$lane]="${LANE_STATUS[$lane]:-not run} (2nd run: the 1st locked up)"
        else
            overall=1
        fi
    fi
done
echo "vm-lane: summary" >&2
for l in "${lanes[@]}"; do
    lane="${l%%:*}-cgroup${l##*:}"
    printf 'vm-lane:   %-20s %-32s %s s\n' "$lane" "${LANE_STATUS[$lane]:-not run}" "${LANE_TIME[$lane]:-?}" >&2
    if [ -n "${LANE_LOG[$lane]:-}" ]; then
        awk '/^=== berth-vm test: / { bin = $4 } / \.\.\. FAILED$/ { print "vm-lane:     FAILED " bin " " $2 }
             /^=== berth-vm test: .*: exit [0-9]+ in/ && $6 != 0 { print "vm-lane:     " $4 " exit " $6 " (" $8 " s)" }
             /^berth-vm: FAIL/ { print "vm-lane:     " $0 }' "${LANE_LOG[$lane]}" >&2
    fi
done
exit $overall
