#!/bin/busybox sh
# berth VM lane: runs as PID 1 in the guest, after the initramfs switch_rooted into the
# host's root filesystem (9p, read-only, under a tmpfs overlay). Sets up the system a
# container engine expects (proc, sys, dev, tmpfs, kernel module auto-loading, cgroups in
# the layout the lane asks for), runs the test binaries listed by the host, checks that
# nothing berth created is left in the cgroup tree, writes the status to the shared output
# directory and powers off.
BB=/bin/busybox
OUT=/run/berth-vm/out
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs /dev
# The host root came with the host's /run and /tmp: fresh tmpfs, also because the
# daemon's overlay state must not be on overlayfs (an overlay upper on overlayfs is refused).
# A checkout under one of them (a CI clone in /tmp) is carried over: this script is
# REPO/tests/vm/guest.sh.
repo=$($BB dirname "$($BB dirname "$($BB dirname "$($BB realpath "$0")")")")
case "$repo" in
/tmp/*|/run/*|/var/tmp/*)
    $BB mkdir -p /.berth-repo && $BB mount --bind "$repo" /.berth-repo ;;
*) repo= ;;
esac
for d in /tmp /run /var/tmp; do $BB mount -t tmpfs -o mode=1777 tmpfs "$d"; done
if [ -n "$repo" ]; then
    $BB mkdir -p "$repo" && $BB mount --move /.berth-repo "$repo"
fi
$BB chmod 0755 /run
$BB mkdir -p /dev/pts /dev/shm /dev/mqueue $OUT
$BB mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
$BB rm -f /dev/ptmx && $BB ln -s pts/ptmx /dev/ptmx
$BB mount -t tmpfs -o mode=1777 shm /dev/shm
$BB mount -t mqueue mqueue /dev/mqueue 2>/dev/null
$BB mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out $OUT || {
    echo "berth-vm guest: FATAL: cannot mount the output share" >/dev/console
    $BB poweroff -f
}
. $OUT/config.sh
LOG=$OUT/guest.log
exec >>$LOG 2>&1 </dev/null

status=0
finish() {
    echo "$1" >$OUT/status
    $BB sync
    $BB poweroff -f
}
fatal() {
    echo "berth-vm guest: FATAL: $*"
    finish 3
}

kver=$($BB uname -r)
# Kernel modules: the extracted package's tree (in the cache, visible through the 9p
# root) at /lib/modules/$(uname -r), and the kernel's auto-loading (request_module) through
# busybox modprobe, as there is no kmod on the host.
$BB mkdir -p /lib/modules/$kver || fatal "mkdir /lib/modules/$kver"
$BB mount --bind "$VM_MODULES" /lib/modules/$kver || fatal "bind $VM_MODULES"
$BB printf '#!/bin/busybox sh\nexec /bin/busybox modprobe "$@"\n' >/run/berth-vm/modprobe
$BB chmod 0755 /run/berth-vm/modprobe
echo /run/berth-vm/modprobe >/proc/sys/kernel/modprobe
for m in virtio_blk overlay veth bridge br_netfilter nf_tables tun; do
    $BB modprobe "$m" || echo "berth-vm guest: warning: modprobe $m failed"
done

$BB hostname berth-vm
$BB ip link set lo up 2>/dev/null || ip link set lo up
$BB mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

cg=/sys/fs/cgroup
case "$VM_CGROUP" in
v2)
    $BB mount -t cgroup2 -o nsdelegate cgroup2 $cg || fatal "mount cgroup2"
    for c in $(cat $cg/cgroup.controllers); do
        echo "+$c" >$cg/cgroup.subtree_control || echo "berth-vm guest: warning: cannot enable $c"
    done
    ;;
v1)
    # The layout systemd sets up in legacy/hybrid mode: a tmpfs, one hierarchy per
    # controller (cpu,cpuacct and net_cls,net_prio co-mounted, with symlinks), the
    # name=systemd hierarchy and the unified (v2, no controllers) tree.
    $BB mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs $cg || fatal "mount tmpfs $cg"
    enabled() { $BB awk -v c="$1" '$1 == c && $4 == 1 { f = 1 } END { exit !f }' /proc/cgroups; }
    for h in cpuset cpu,cpuacct blkio memory devices freezer net_cls,net_prio perf_event hugetlb pids rdma misc; do
        opts=
        for c in $(echo $h | $BB tr , ' '); do
            enabled "$c" && opts="$opts${opts:+,}$c"
        done
        [ -n "$opts" ] || continue
        $BB mkdir -p "$cg/$opts"
        $BB mount -t cgroup -o "nosuid,nodev,noexec,$opts" cgroup "$cg/$opts" \
            || fatal "mount cgroup $opts"
        case "$opts" in *,*)
            for c in $(echo $opts | $BB tr , ' '); do $BB ln -s "$opts" "$cg/$c"; done ;;
        esac
    done
    $BB mkdir -p $cg/unified $cg/systemd
    $BB mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 $cg/unified || fatal "mount unified"
    $BB mount -t cgroup -o nosuid,nodev,noexec,none,name=systemd,xattr cgroup $cg/systemd \
        || $BB mount -t cgroup -o nosuid,nodev,noexec,none,name=systemd cgroup $cg/systemd \
        || fatal "mount name=systemd"
    $BB mount -o remount,ro $cg
    ;;
*) fatal "VM_CGROUP=$VM_CGROUP" ;;
esac

# A virtio disk, so per-device io limits have a real block device.
$BB mdev -s 2>/dev/null
# mdev without a config leaves every node 0660; udev (every real host) makes these
# 0666, and a remapped container's root (not the host's root) opens them through the
# bind mounts the runtime makes of them.
$BB chmod 0666 /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty 2>/dev/null
echo "=== berth-vm guest: $VM_LANE"
echo "uname -r: $kver"
echo "kernel cmdline: $(cat /proc/cmdline)"
echo "cpus: $($BB nproc)  memory: $($BB awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
echo "--- cgroup mounts"
$BB mount | $BB grep cgroup
if [ "$VM_CGROUP" = v2 ]; then
    echo "cgroup.controllers: $(cat $cg/cgroup.controllers)"
    echo "cgroup.subtree_control: $(cat $cg/cgroup.subtree_control)"
else
    echo "--- /proc/cgroups"
    cat /proc/cgroups
    echo "unified cgroup.controllers: $(cat $cg/unified/cgroup.controllers)"
fi
if [ -b /dev/vda ]; then
    echo "/dev/vda: $(cat /sys/block/vda/size) sectors, $(cat /sys/block/vda/dev), scheduler: $(cat /sys/block/vda/queue/scheduler)"
    # An ext4 on it (the host's mkfs, through the shared root) for the tests whose state
    # root must be a disk filesystem (idmapped mounts: userns_docker_cli).
    if /usr/sbin/mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 /dev/vda >/dev/null 2>&1 \
        && $BB mkdir -p /scratch && $BB mount -t ext4 /dev/vda /scratch; then
        $BB chmod 1777 /scratch
        echo "/scratch: ext4 on /dev/vda"
    else
        echo "berth-vm guest: warning: no ext4 on /dev/vda (userns_docker_cli needs one)"
    fi
else
    echo "berth-vm guest: warning: no /dev/vda"
fi
echo "---"

export HOME=/root USER=root LOGNAME=root TERM=dumb
export PATH="/root/.cargo/bin:/root/.pyenv/shims:/root/.pyenv/bin:$PATH"
export BERTH_BIN="$VM_BERTH_BIN"
export RUST_BACKTRACE=1
cd "$VM_REPO/tests" || fatal "cd $VM_REPO/tests"

failed=
while read -r name exe; do
    [ -n "$name" ] || continue
    echo "=== berth-vm test: $name ($exe)"
    t0=$($BB date +%s)
    # Each test daemon's log is kept (tests/src/lib.rs), to explain what a lane finds left.
    export BERTH_TEST_LOGS=$OUT/daemon-logs/$name
    # State roots on the ext4 scratch disk where idmapped mounts need a disk filesystem.
    case $name in
    userns_docker_cli) [ -d /scratch ] && export TMPDIR=/scratch ;;
    *) unset TMPDIR ;;
    esac
    $BB timeout "$VM_TEST_TIMEOUT" "$exe" --test-threads="$VM_TEST_THREADS" $VM_TEST_ARGS
    rc=$?
    t1=$($BB date +%s)
    echo "=== berth-vm test: $name: exit $rc in $((t1 - t0)) s"
    # Which binary left a cgroup (the check below fails the lane; this says where).
    for d in $cg/berth $cg/pids/berth; do
        [ -d "$d" ] && $BB find "$d" -mindepth 1 -maxdepth 1 -type d | $BB sed "s|^|=== berth-vm: after $name, left: |"
    done
    echo "$name $rc $((t1 - t0))" >>$OUT/timings
    if [ $rc -ne 0 ]; then
        status=1
        failed="$failed $name"
    fi
done <$OUT/tests

# Nothing berth created may be left in the cgroup tree.
echo "=== berth-vm: cgroups left behind"
left=
shown=
if [ "$VM_CGROUP" = v2 ]; then
    dirs=$cg/berth
else
    dirs=
    for d in $cg/*; do
        [ -L "$d" ] || dirs="$dirs $d/berth"
    done
fi
for d in $dirs; do
    [ -d "$d" ] || continue
    l=$($BB find "$d" -mindepth 1 -type d)
    if [ -n "$l" ]; then
        echo "$l"
        for x in $l; do
            echo "  $x: cgroup.procs: $(cat $x/cgroup.procs 2>/dev/null | $BB tr '\n' ' ')"
            # The daemon that made it, and what it logged about it.
            id=${x##*/}
            case " $shown " in *" $id "*) continue ;; esac
            shown="$shown $id"
            for f in $($BB grep -l -r "$id" $OUT/daemon-logs 2>/dev/null); do
                echo "  --- $id in ${f#$OUT/}:"
                $BB grep "$id" "$f" | $BB tail -n 40 | $BB sed 's/^/    /'
            done
        done
        left=1
    fi
done
if [ -n "$left" ]; then
    echo "berth-vm: FAIL: cgroups left behind (above)"
    status=1
    failed="$failed cgroup-leftovers"
else
    echo "none"
fi
echo "=== berth-vm guest: done, status $status${failed:+, failed:$failed}"
finish $status
