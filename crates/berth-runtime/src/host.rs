//! What the host can do, probed once when the daemon starts and passed down to everything
//! that depends on it: the cgroup layout and which limits the kernel can enforce (so a
//! create that asks for one the host lacks is answered as Docker answers it, see
//! [`crate::resources::fit_to_host`]), the kernel features berth relies on, and the facts
//! seccomp profiles are evaluated against ([`HostInfo`]).
//!
//! The cgroup probe reads the files of berth's own parent cgroup (`<root>/berth`, or
//! `<controller mount>/berth` on v1): an interface file is there exactly when the kernel
//! can enforce the knob, whatever the reason it could not (a controller not compiled in,
//! disabled on the command line, not delegated, a disk scheduler without weights, swap
//! accounting off). On v2 the probe enables the root's controllers for berth's subtree
//! first, as libcgroups does when it creates the first container.
//!
//! Every reader takes its root and the texts of `/proc` as arguments, so the probe runs
//! on fixture trees in tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::seccomp::HostInfo;

/// The mount point of the cgroup filesystem(s).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup under which berth puts its containers (`/berth/<id>`).
pub const BERTH_CGROUP: &str = "berth";
/// statfs(2) `f_type` of cgroup2.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The v1 controllers berth looks for (those of `/proc/cgroups` that matter to
/// containers).
pub const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// The v1 controllers whose hierarchies libcgroups (0.7) creates a container's cgroup
/// in; the others (`rdma`, `misc`, named hierarchies) are berth's to place it in
/// (`placement.rs`).
pub const LIBCGROUPS_V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
];

/// Which cgroup hierarchy the host uses for containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CgroupVersion {
    /// Legacy or hybrid: one hierarchy per controller.
    V1,
    /// Unified.
    V2,
}

/// How the host mounts cgroups (systemd's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// v1 hierarchies only.
    Legacy,
    /// v1 hierarchies, and a cgroup2 tree (holding no controllers) beside them.
    Hybrid,
    /// cgroup2 only.
    Unified,
    /// No cgroup filesystem at `/sys/fs/cgroup`: limits cannot be enforced.
    None,
}

/// One controller, as the host offers it to berth.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Controller {
    /// The kernel has it and it is mounted (v1) or listed in the root's
    /// `cgroup.controllers` (v2).
    pub present: bool,
    /// berth can create cgroups in its hierarchy (not a read-only mount).
    pub writable: bool,
    /// berth's cgroups get it: enabled in the `cgroup.subtree_control` above them (v2);
    /// on v1, present and writable.
    pub delegated: bool,
}

/// The limits the kernel can enforce for berth's containers, by Docker's names
/// (`pkg/sysinfo`): what `docker info` shows and what a create is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CgroupCaps {
    pub memory_limit: bool,
    /// Swap accounting: a memory + swap limit can be set.
    pub swap_limit: bool,
    pub memory_reservation: bool,
    pub memory_swappiness: bool,
    pub oom_kill_disable: bool,
    pub kernel_memory: bool,
    pub kernel_memory_tcp: bool,
    /// OOM kills are counted per cgroup (`memory.events` on v2, `memory.oom_control` v1).
    pub oom_events: bool,
    pub cpu_shares: bool,
    /// CFS bandwidth: `--cpus`, `--cpu-period`, `--cpu-quota`.
    pub cpu_cfs: bool,
    pub cpu_realtime: bool,
    pub cpuset: bool,
    pub pids_limit: bool,
    pub blkio_weight: bool,
    /// The weight goes to v2's `io.weight` (1..10000, converted from blkio's 10..1000)
    /// because there is no BFQ `io.bfq.weight` to take it as is.
    pub io_weight_converted: bool,
    pub blkio_weight_device: bool,
    pub blkio_read_bps: bool,
    pub blkio_write_bps: bool,
    pub blkio_read_iops: bool,
    pub blkio_write_iops: bool,
    /// `docker pause`: `freezer.state` (v1) or `cgroup.freeze` (v2).
    pub freezer: bool,
    pub hugetlb: bool,
    /// The CPUs and memory nodes a container may be pinned to (`cpuset.cpus.effective`),
    /// empty when unknown.
    pub cpus: String,
    pub mems: String,
}

impl CgroupCaps {
    /// A host that enforces every limit berth sets (for fixtures and tests); no CPU
    /// list, so cpusets are left to the kernel to check.
    pub fn all() -> CgroupCaps {
        CgroupCaps {
            memory_limit: true,
            swap_limit: true,
            memory_reservation: true,
            memory_swappiness: true,
            oom_kill_disable: true,
            kernel_memory: true,
            kernel_memory_tcp: true,
            oom_events: true,
            cpu_shares: true,
            cpu_cfs: true,
            cpu_realtime: true,
            cpuset: true,
            pids_limit: true,
            blkio_weight: true,
            io_weight_converted: false,
            blkio_weight_device: true,
            blkio_read_bps: true,
            blkio_write_bps: true,
            blkio_read_iops: true,
            blkio_write_iops: true,
            freezer: true,
            hugetlb: true,
            cpus: String::new(),
            mems: String::new(),
        }
    }
}

/// The host's cgroups.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CgroupHost {
    pub root: PathBuf,
    pub mode: CgroupMode,
    /// v1: where each controller's hierarchy is mounted (from mountinfo); a controller
    /// not listed is looked for at `root/<controller>`.
    pub v1_mounts: BTreeMap<String, PathBuf>,
    /// v1: the mount points of the hierarchies without a managed controller (named ones,
    /// the hybrid cgroup2 tree) in which containers get their own cgroup as well
    /// ([`unmanaged_hierarchies`]).
    pub unmanaged: Vec<PathBuf>,
    pub controllers: BTreeMap<String, Controller>,
    pub caps: CgroupCaps,
}

impl CgroupHost {
    /// The hierarchy containers use: v2 only when the host is unified (in hybrid mode
    /// the v2 tree holds no controllers, so libcgroups uses v1, and so does berth).
    pub fn version(&self) -> CgroupVersion {
        match self.mode {
            CgroupMode::Unified => CgroupVersion::V2,
            _ => CgroupVersion::V1,
        }
    }

    /// `"1"` or `"2"`, as `docker info` says it.
    pub fn version_str(&self) -> &'static str {
        match self.version() {
            CgroupVersion::V1 => "1",
            CgroupVersion::V2 => "2",
        }
    }

    /// A host without cgroups (or a fixture): nothing can be limited.
    pub fn none(root: &Path) -> CgroupHost {
        CgroupHost {
            root: root.to_path_buf(),
            mode: CgroupMode::None,
            v1_mounts: BTreeMap::new(),
            unmanaged: Vec::new(),
            controllers: BTreeMap::new(),
            caps: CgroupCaps::default(),
        }
    }

    /// A unified host that enforces every limit (for fixtures and tests).
    pub fn every_limit() -> CgroupHost {
        CgroupHost {
            mode: CgroupMode::Unified,
            caps: CgroupCaps::all(),
            ..CgroupHost::none(Path::new(CGROUP_ROOT))
        }
    }

    /// The directory of berth's parent cgroup for `controller` (v1), or the one (v2).
    pub fn berth_dir(&self, controller: &str) -> PathBuf {
        match self.version() {
            CgroupVersion::V1 => self
                .v1_mounts
                .get(controller)
                .cloned()
                .unwrap_or_else(|| self.root.join(controller))
                .join(BERTH_CGROUP),
            CgroupVersion::V2 => self.root.join(BERTH_CGROUP),
        }
    }

    /// Probes the cgroup filesystem at `root` (the host's is [`CGROUP_ROOT`]), given the
    /// texts of `/proc/self/mountinfo` and `/proc/cgroups`. Creates berth's parent cgroup
    /// (and on v2 enables the root's controllers for it) so its interface files can be
    /// read; a failure to do so leaves the controllers it concerns undelegated.
    pub fn probe(root: &Path, mountinfo: &str, proc_cgroups: &str) -> CgroupHost {
        let mounts = cgroup_mounts(mountinfo);
        let root_is = |fstype: &str| mounts.iter().any(|m| m.point == root && m.fstype == fstype);
        let is_v2 = root_is("cgroup2") || is_cgroup2(root);
        let mut host = CgroupHost::none(root);
        if is_v2 {
            host.mode = CgroupMode::Unified;
            host.probe_v2();
        } else {
            let v1 = v1_mounts_of(&mounts);
            if v1.is_empty() && !root.join("memory").is_dir() && !root.join("pids").is_dir() {
                return host;
            }
            host.mode = if mounts.iter().any(|m| m.fstype == "cgroup2") {
                CgroupMode::Hybrid
            } else {
                CgroupMode::Legacy
            };
            let (points, read_only) = v1
                .into_iter()
                .map(|(k, (p, ro))| ((k.clone(), p), (k, ro)))
                .unzip();
            host.v1_mounts = points;
            host.unmanaged = unmanaged_hierarchies(root, mountinfo);
            host.probe_v1(&enabled_v1(proc_cgroups), &read_only);
        }
        host
    }

    /// The host's.
    pub fn detect() -> CgroupHost {
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let pc = fs::read_to_string("/proc/cgroups").unwrap_or_default();
        CgroupHost::probe(Path::new(CGROUP_ROOT), &mi, &pc)
    }

    fn probe_v2(&mut self) {
        let available: Vec<String> = fs::read_to_string(self.root.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let writable = dir_writable(&self.root);
        let berth = self.root.join(BERTH_CGROUP);
        let subtree = self.root.join("cgroup.subtree_control");
        let enabled = || -> Vec<String> {
            fs::read_to_string(&subtree)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        if writable {
            let _ = fs::create_dir(&berth);
            // One controller per write: one the kernel refuses (a threaded subtree, an
            // rt process in the root) leaves the others enabled.
            let already = enabled();
            for c in available.iter().filter(|c| !already.contains(c)) {
                let _ = fs::write(&subtree, format!("+{c}"));
            }
        }
        let enabled = enabled();
        for c in &available {
            self.controllers.insert(
                c.clone(),
                Controller {
                    present: true,
                    writable,
                    delegated: writable && enabled.contains(c),
                },
            );
        }
        let has = |file: &str| berth.join(file).exists();
        let on = |c: &str| self.controllers.get(c).is_some_and(|c| c.delegated);
        let mem = on("memory");
        let cpu = on("cpu");
        let io = on("io");
        self.caps = CgroupCaps {
            memory_limit: mem && has("memory.max"),
            swap_limit: mem && has("memory.swap.max"),
            memory_reservation: mem && has("memory.low"),
            memory_swappiness: false,
            oom_kill_disable: false,
            kernel_memory: false,
            kernel_memory_tcp: false,
            oom_events: mem && has("memory.events"),
            cpu_shares: cpu && has("cpu.weight"),
            cpu_cfs: cpu && has("cpu.max"),
            cpu_realtime: false,
            cpuset: on("cpuset") && has("cpuset.cpus"),
            pids_limit: on("pids") && has("pids.max"),
            blkio_weight: io && (has("io.weight") || has("io.bfq.weight")),
            io_weight_converted: io && has("io.weight") && !has("io.bfq.weight"),
            // libcgroups writes per-device weights to io.bfq.weight only.
            blkio_weight_device: io && has("io.bfq.weight"),
            blkio_read_bps: io && has("io.max"),
            blkio_write_bps: io && has("io.max"),
            blkio_read_iops: io && has("io.max"),
            blkio_write_iops: io && has("io.max"),
            freezer: has("cgroup.freeze"),
            hugetlb: on("hugetlb"),
            cpus: read_trim(&berth.join("cpuset.cpus.effective"))
                .or_else(|| read_trim(&self.root.join("cpuset.cpus.effective")))
                .unwrap_or_default(),
            mems: read_trim(&berth.join("cpuset.mems.effective"))
                .or_else(|| read_trim(&self.root.join("cpuset.mems.effective")))
                .unwrap_or_default(),
        };
    }

    fn probe_v1(&mut self, enabled: &BTreeMap<String, bool>, read_only: &BTreeMap<String, bool>) {
        for c in V1_CONTROLLERS {
            let mounted = self.v1_mounts.contains_key(*c);
            let present = mounted && enabled.get(*c).copied().unwrap_or(true);
            let mount = self.v1_mounts.get(*c).cloned().unwrap_or_default();
            let writable =
                present && !read_only.get(*c).copied().unwrap_or(false) && dir_writable(&mount);
            if writable {
                let _ = fs::create_dir(mount.join(BERTH_CGROUP));
            }
            if present {
                self.controllers.insert(
                    c.to_string(),
                    Controller {
                        present,
                        writable,
                        delegated: writable,
                    },
                );
            }
        }
        let on = |c: &str| self.controllers.get(c).is_some_and(|c| c.delegated);
        // Files of berth's parent; a controller berth cannot write is not berth's.
        let has = |c: &str, file: &str| on(c) && self.berth_dir(c).join(file).exists();
        let cpuset = self.berth_dir("cpuset");
        let root_cpuset = self.v1_mounts.get("cpuset").cloned().unwrap_or_default();
        self.caps = CgroupCaps {
            memory_limit: has("memory", "memory.limit_in_bytes"),
            swap_limit: has("memory", "memory.memsw.limit_in_bytes"),
            memory_reservation: has("memory", "memory.soft_limit_in_bytes"),
            memory_swappiness: has("memory", "memory.swappiness"),
            oom_kill_disable: has("memory", "memory.oom_control"),
            kernel_memory: has("memory", "memory.kmem.limit_in_bytes"),
            kernel_memory_tcp: has("memory", "memory.kmem.tcp.limit_in_bytes"),
            oom_events: has("memory", "memory.oom_control"),
            cpu_shares: has("cpu", "cpu.shares"),
            cpu_cfs: has("cpu", "cpu.cfs_quota_us") && has("cpu", "cpu.cfs_period_us"),
            cpu_realtime: has("cpu", "cpu.rt_runtime_us") && has("cpu", "cpu.rt_period_us"),
            cpuset: has("cpuset", "cpuset.cpus"),
            pids_limit: has("pids", "pids.max"),
            blkio_weight: has("blkio", "blkio.weight") || has("blkio", "blkio.bfq.weight"),
            io_weight_converted: false,
            blkio_weight_device: has("blkio", "blkio.weight_device")
                || has("blkio", "blkio.bfq.weight_device"),
            blkio_read_bps: has("blkio", "blkio.throttle.read_bps_device"),
            blkio_write_bps: has("blkio", "blkio.throttle.write_bps_device"),
            blkio_read_iops: has("blkio", "blkio.throttle.read_iops_device"),
            blkio_write_iops: has("blkio", "blkio.throttle.write_iops_device"),
            freezer: has("freezer", "freezer.state"),
            hugetlb: on("hugetlb"),
            cpus: read_trim(&cpuset.join("cpuset.effective_cpus"))
                .or_else(|| read_trim(&root_cpuset.join("cpuset.effective_cpus")))
                .or_else(|| read_trim(&root_cpuset.join("cpuset.cpus")))
                .unwrap_or_default(),
            mems: read_trim(&cpuset.join("cpuset.effective_mems"))
                .or_else(|| read_trim(&root_cpuset.join("cpuset.effective_mems")))
                .or_else(|| read_trim(&root_cpuset.join("cpuset.mems")))
                .unwrap_or_default(),
        };
    }

    /// What the host lacks, in `docker info`'s words (Docker's `fillPlatformInfo`), and
    /// berth's own for what Docker does not report (pids, the freezer).
    pub fn warnings(&self) -> Vec<String> {
        let c = &self.caps;
        let v2 = self.version() == CgroupVersion::V2;
        let mut w = Vec::new();
        if self.mode == CgroupMode::None {
            w.push(format!(
                "WARNING: no cgroup filesystem at {}: no resource limit can be enforced",
                self.root.display()
            ));
            return w;
        }
        let mut warn = |missing: bool, what: &str| {
            if missing {
                w.push(format!("WARNING: {what}"));
            }
        };
        warn(!c.memory_limit, "No memory limit support");
        warn(!c.swap_limit, "No swap limit support");
        warn(
            !v2 && !c.kernel_memory_tcp,
            "No kernel memory TCP limit support",
        );
        warn(!v2 && !c.oom_kill_disable, "No oom kill disable support");
        warn(!c.cpu_cfs, "No cpu cfs quota support");
        warn(!c.cpu_cfs, "No cpu cfs period support");
        warn(!c.cpu_shares, "No cpu shares support");
        warn(!c.cpuset, "No cpuset support");
        if v2 {
            warn(!c.blkio_weight, "No io.weight support");
            warn(!c.blkio_read_bps, "No io.max (rbps) support");
            warn(!c.blkio_write_bps, "No io.max (wbps) support");
            warn(!c.blkio_read_iops, "No io.max (riops) support");
            warn(!c.blkio_write_iops, "No io.max (wiops) support");
        } else {
            warn(!c.blkio_weight, "No blkio weight support");
            warn(
                !c.blkio_read_bps,
                "No blkio throttle.read_bps_device support",
            );
            warn(
                !c.blkio_write_bps,
                "No blkio throttle.write_bps_device support",
            );
            warn(
                !c.blkio_read_iops,
                "No blkio throttle.read_iops_device support",
            );
            warn(
                !c.blkio_write_iops,
                "No blkio throttle.write_iops_device support",
            );
        }
        warn(
            !c.pids_limit,
            "No pids limit support: berth's default pids limit is not applied",
        );
        warn(!c.freezer, "No freezer support: pause is refused");
        w
    }
}

/// Whether the filesystem at `path` is cgroup2.
fn is_cgroup2(path: &Path) -> bool {
    #[allow(clippy::unnecessary_cast)] // f_type is i64 or u32 depending on the target
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

fn dir_writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A cgroup or cgroup2 mount, from mountinfo.
struct CgroupMount {
    point: PathBuf,
    fstype: String,
    read_only: bool,
    /// Mounts the hierarchy's root (mountinfo's root field is `/`), not a sub-cgroup.
    whole_tree: bool,
    /// Super options: the v1 controllers of the hierarchy (`rw,cpu,cpuacct`).
    options: String,
}

/// The cgroup mounts of a mountinfo text, such as
/// `34 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct`.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let options = r.nth(1).unwrap_or_default().to_string();
        let mut l = left.split_whitespace();
        let (Some(tree_root), Some(point), Some(mount_opts)) = (l.nth(3), l.next(), l.next())
        else {
            continue;
        };
        out.push(CgroupMount {
            point: PathBuf::from(unescape_mountinfo(point)),
            fstype: fstype.to_string(),
            read_only: mount_opts.split(',').any(|o| o == "ro"),
            whole_tree: tree_root == "/",
            options,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash in octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Each v1 controller's mount point and whether it is read-only (the first mount of a
/// controller wins; co-mounted `cpu,cpuacct` gives both the same).
fn v1_mounts_of(mounts: &[CgroupMount]) -> BTreeMap<String, (PathBuf, bool)> {
    let mut out = BTreeMap::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        for opt in m.options.split(',') {
            if V1_CONTROLLERS.contains(&opt) {
                out.entry(opt.to_string())
                    .or_insert_with(|| (m.point.clone(), m.read_only));
            }
        }
    }
    out
}

/// The hierarchies that hold no controller libcgroups manages, whose cgroup a container
/// would otherwise inherit from its supervisor (the host's root cgroup, for a daemon
/// started at boot): named v1 hierarchies (`name=systemd`) and, when `root` is not itself
/// cgroup2 (hybrid mode), the cgroup2 tree. berth places each container in its own cgroup
/// of these too ([`crate::placement`]), as runc does. One mount point per hierarchy: the
/// first mount of its whole tree (mountinfo's root `/`), not a bind of a sub-cgroup.
pub fn unmanaged_hierarchies(root: &Path, mountinfo: &str) -> Vec<PathBuf> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    let mounts = cgroup_mounts(mountinfo);
    if mounts
        .iter()
        .any(|m| m.point == root && m.fstype == "cgroup2")
    {
        return out;
    }
    for m in mounts.iter().filter(|m| m.whole_tree) {
        // A v1 hierarchy libcgroups makes no cgroup in: a named one (`name=systemd`) or
        // one of controllers it does not know (`rdma`, `misc`).
        let unmanaged_v1 = m.fstype == "cgroup"
            && !m
                .options
                .split(',')
                .any(|o| LIBCGROUPS_V1_CONTROLLERS.contains(&o));
        if !(unmanaged_v1 || m.fstype == "cgroup2") {
            continue;
        }
        let key = (m.fstype.clone(), m.options.clone());
        if !seen.contains(&key) {
            seen.push(key);
            out.push(m.point.clone());
        }
    }
    out
}

/// The v1 mount point of each controller in a mountinfo text.
pub fn v1_mounts(mountinfo: &str) -> BTreeMap<String, PathBuf> {
    v1_mounts_of(&cgroup_mounts(mountinfo))
        .into_iter()
        .map(|(k, (p, _))| (k, p))
        .collect()
}

/// `/proc/cgroups`: `#subsys_name hierarchy num_cgroups enabled` lines.
fn enabled_v1(proc_cgroups: &str) -> BTreeMap<String, bool> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), *f.get(3)? == "1"))
        })
        .collect()
}

/// Whether the kernel offers a feature berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Support {
    /// Present (built in, loaded, or answered the probe syscall).
    Yes,
    /// A module of the running kernel, loaded when first used.
    Module,
    /// Absent: what depends on it falls back or is refused.
    No,
    /// The kernel publishes no module tables to tell (the feature is tried when used).
    Unknown,
}

impl Support {
    pub fn usable(self) -> bool {
        !matches!(self, Support::No)
    }
}

/// The kernel features berth relies on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelFeatures {
    /// The container rootfs; without it no container can be created.
    pub overlayfs: Support,
    /// `openat2(RESOLVE_IN_ROOT)` (5.6): layer unpack and `cp` fall back to a walk of
    /// `openat(O_NOFOLLOW)` without it.
    pub openat2: Support,
    /// `fsopen`/`fsmount` (5.2): overlay mounts fall back to mount(2)'s one-page options.
    pub new_mount_api: Support,
    /// `mount_setattr` (5.12, which brought idmapped mounts too): youki's libcontainer
    /// 0.7 sets every container mount's flags with it, so without it no container can
    /// start.
    pub mount_setattr: Support,
    /// Loading a `BPF_PROG_TYPE_CGROUP_DEVICE` program: on cgroup v2 the runtime confines
    /// every container's devices with one (libcgroups' `cgroupsv2_devices`), so without
    /// it no container can start there (unused on v1, whose devices controller is files).
    pub bpf_device_filter: Support,
    /// Why the probe failed (the errno's words), when it did.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bpf_device_filter_error: String,
    /// nf_tables: published ports and network isolation.
    pub nftables: Support,
    /// The `nft` program berth applies its rules with.
    pub nft_program: bool,
    pub veth: Support,
    pub bridge: Support,
}

impl KernelFeatures {
    /// Probes the running kernel: syscalls answer for themselves; filesystems and
    /// network modules are looked up in `/proc/filesystems`, `/sys/module` and the
    /// kernel's module tables under `/lib/modules/<release>`. `nft_program`: whether the
    /// `nft` program is installed (the network crate knows where it looks).
    pub fn detect(nft_program: bool) -> KernelFeatures {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let modules = ModuleTables::read(&Path::new("/lib/modules").join(&release));
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        let overlayfs = if filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
        {
            Support::Yes
        } else {
            modules.support("overlay", Path::new("/sys/module"))
        };
        let sys = Path::new("/sys/module");
        let (bpf_device_filter, bpf_device_filter_error) = match probe_bpf_device_filter() {
            Ok(()) => (Support::Yes, String::new()),
            Err(e) => (Support::No, e.to_string()),
        };
        KernelFeatures {
            bpf_device_filter,
            bpf_device_filter_error,
            overlayfs,
            openat2: probe_openat2(),
            new_mount_api: probe_fsopen(),
            mount_setattr: probe_mount_setattr(),
            nftables: modules.support("nf_tables", sys),
            nft_program,
            veth: modules.support("veth", sys),
            bridge: modules.support("bridge", sys),
        }
    }

    /// `docker info` warnings for what is missing.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.overlayfs == Support::No {
            w.push("WARNING: the kernel has no overlayfs: containers cannot be created".into());
        }
        if self.mount_setattr == Support::No {
            w.push(
                "WARNING: the kernel has no mount_setattr (Linux 5.12): containers cannot be created (the runtime mounts with it)"
                    .into(),
            );
        }
        if self.nftables == Support::No || !self.nft_program {
            w.push(
                "WARNING: no nftables (kernel nf_tables and the nft program): bridge networks and published ports cannot be set up"
                    .into(),
            );
        }
        if self.veth == Support::No || self.bridge == Support::No {
            w.push(
                "WARNING: the kernel has no veth or bridge driver: bridge networks cannot be set up"
                    .into(),
            );
        }
        w
    }
}

/// `modules.builtin` and `modules.dep` of the running kernel.
struct ModuleTables {
    builtin: String,
    dep: String,
    found: bool,
}

impl ModuleTables {
    fn read(dir: &Path) -> ModuleTables {
        let builtin = fs::read_to_string(dir.join("modules.builtin"));
        let dep = fs::read_to_string(dir.join("modules.dep"));
        ModuleTables {
            found: builtin.is_ok() || dep.is_ok(),
            builtin: builtin.unwrap_or_default(),
            dep: dep.unwrap_or_default(),
        }
    }

    /// Whether module `name` is built in, loaded, or can be loaded.
    fn support(&self, name: &str, sys_module: &Path) -> Support {
        let file = |text: &str| {
            text.lines().any(|l| {
                let path = l.split(':').next().unwrap_or_default();
                let base = path.rsplit('/').next().unwrap_or_default();
                base.split('.').next() == Some(name)
            })
        };
        if sys_module.join(name).exists() || file(&self.builtin) {
            Support::Yes
        } else if file(&self.dep) {
            Support::Module
        } else if self.found {
            Support::No
        } else {
            Support::Unknown
        }
    }
}

fn syscall_support(r: rustix::io::Result<()>) -> Support {
    match r {
        Err(rustix::io::Errno::NOSYS) => Support::No,
        _ => Support::Yes,
    }
}

fn probe_openat2() -> Support {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    syscall_support(
        rustix::fs::openat2(
            rustix::fs::CWD,
            "/",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .map(drop),
    )
}

fn probe_fsopen() -> Support {
    syscall_support(
        rustix::mount::fsopen("tmpfs", rustix::mount::FsOpenFlags::FSOPEN_CLOEXEC).map(drop),
    )
}

fn probe_mount_setattr() -> Support {
    // An invalid descriptor: EBADF where the syscall exists, ENOSYS where it does not.
    // SAFETY: mount_setattr with a null attr pointer and size 0 reads no memory of ours;
    // the descriptor -1 makes the kernel fail before it looks at anything else.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1i32,
            c"".as_ptr(),
            0u32,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        Support::No
    } else {
        Support::Yes
    }
}

/// Loads (and closes) the smallest device program, "allow everything", as libcgroups
/// loads a container's: `bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE)`. Fails with
/// EPERM without the privilege (a user namespace, a seccomp filter), EINVAL on a kernel
/// without `CONFIG_CGROUP_BPF`, ENOSYS without bpf(2).
fn probe_bpf_device_filter() -> std::io::Result<()> {
    /// The head of `union bpf_attr` for `BPF_PROG_LOAD` (the kernel zero-fills the rest).
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    // `r0 = 1` (BPF_ALU64 | BPF_MOV | BPF_K, imm 1), then `exit` (BPF_JMP | BPF_EXIT).
    let insns: [u64; 2] = [0xb7 | (1 << 32), 0x95];
    let license = c"Apache";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: `attr` is a valid BPF_PROG_LOAD head of the size passed; the kernel reads
    // the two instructions and the NUL-terminated license it points to, which outlive
    // the call, and writes nothing of ours. The returned descriptor is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is the program's descriptor, just returned to us and owned by no one.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Everything berth knows of its host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Host {
    /// The kernel release (`uname -r`).
    pub kernel_release: String,
    /// For seccomp profiles' conditions (architecture, kernel version, nofile limit).
    #[serde(skip)]
    pub seccomp: HostInfo,
    pub cgroup: CgroupHost,
    pub features: KernelFeatures,
}

impl Host {
    /// Probes the machine berth runs on (`nft_program`: see [`KernelFeatures::detect`]).
    pub fn detect(nft_program: bool) -> Host {
        Host {
            kernel_release: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            seccomp: HostInfo::detect(),
            cgroup: CgroupHost::detect(),
            features: KernelFeatures::detect(nft_program),
        }
    }

    /// `docker info`'s `Warnings`: what the host lacks.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.cgroup.warnings();
        w.extend(self.features.warnings());
        if let Some(why) = self.no_device_filter() {
            w.push(format!("WARNING: {why}: containers cannot be created"));
        }
        w
    }

    /// On cgroup v2, why the runtime cannot confine a container's devices (it loads a
    /// BPF device program for each), if it cannot.
    pub fn no_device_filter(&self) -> Option<String> {
        (self.cgroup.version() == CgroupVersion::V2
            && self.cgroup.mode != CgroupMode::None
            && self.features.bpf_device_filter == Support::No)
            .then(|| {
                format!(
                    "this host cannot load a BPF device program (bpf: {}), with which the runtime confines a container's devices on cgroup v2",
                    self.features.bpf_device_filter_error
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "30 25 0:26 / /R/unified rw,nosuid - cgroup2 cgroup2 rw\n\
        34 25 0:29 / /R/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct\n\
        35 25 0:30 / /R/memory rw - cgroup cgroup rw,memory\n\
        36 25 0:31 / /R/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
        37 25 0:32 / /R/blkio rw - cgroup cgroup rw,blkio\n\
        38 25 0:33 / /R/pids ro - cgroup cgroup rw,pids\n\
        39 25 0:34 / /R/freezer rw - cgroup cgroup rw,freezer\n";

    fn touch(dir: &Path, files: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for f in files {
            fs::write(dir.join(f), "").unwrap();
        }
    }

    /// A v1 tree at `tmp` laid out as HYBRID says (with /R replaced by `tmp`), whose
    /// blkio hierarchy has throttles but no weight (mq-deadline) and whose pids
    /// hierarchy is mounted read-only.
    fn v1_tree(tmp: &Path) -> String {
        let r = tmp.display().to_string();
        touch(
            &tmp.join("cpu,cpuacct/berth"),
            &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
        );
        touch(
            &tmp.join("memory/berth"),
            &[
                "memory.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.oom_control",
                "memory.swappiness",
            ],
        );
        touch(
            &tmp.join("blkio/berth"),
            &[
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
            ],
        );
        touch(&tmp.join("pids/berth"), &["pids.max"]);
        touch(&tmp.join("freezer"), &[]);
        HYBRID.replace("/R", &r)
    }

    #[test]
    fn v1_caps_follow_the_files_of_berths_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let mi = v1_tree(tmp.path());
        let pc = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t1\t1\nhugetlb\t0\t1\t0\n";
        let h = CgroupHost::probe(tmp.path(), &mi, pc);
        assert_eq!(h.mode, CgroupMode::Hybrid);
        assert_eq!(h.version(), CgroupVersion::V1);
        assert_eq!(h.v1_mounts["cpuacct"], tmp.path().join("cpu,cpuacct"));
        let c = &h.caps;
        assert!(c.memory_limit && c.memory_reservation && c.oom_kill_disable);
        assert!(!c.swap_limit, "no memsw file: no swap accounting");
        assert!(c.cpu_shares && c.cpu_cfs && !c.cpu_realtime);
        assert!(!c.blkio_weight, "mq-deadline: no weight file");
        assert!(c.blkio_read_bps && c.blkio_write_iops);
        assert!(!c.pids_limit, "a read-only pids hierarchy is not berth's");
        assert!(!h.controllers["pids"].writable && h.controllers["pids"].present);
        assert!(!c.cpuset, "cpuset not mounted");
        // The probe created berth's parent in the freezer hierarchy; on a real one the
        // kernel would put freezer.state in it.
        assert!(tmp.path().join("freezer/berth").is_dir());
        assert!(!c.freezer);
        let w = h.warnings();
        assert!(
            w.contains(&"WARNING: No swap limit support".to_string()),
            "{w:?}"
        );
        assert!(
            w.contains(&"WARNING: No blkio weight support".to_string()),
            "{w:?}"
        );
        assert!(
            w.contains(&"WARNING: No cpuset support".to_string()),
            "{w:?}"
        );
        assert!(!w.iter().any(|w| w.contains("memory limit")), "{w:?}");
    }

    #[test]
    fn v2_caps_follow_the_enabled_controllers_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(
            root.join("cgroup.subtree_control"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.join("cpuset.cpus.effective"), "0-3\n").unwrap();
        touch(
            &root.join("berth"),
            &[
                "memory.max",
                "memory.low",
                "memory.events",
                "cpu.weight",
                "cpu.max",
                "pids.max",
                "io.max",
                "io.weight",
                "cgroup.freeze",
            ],
        );
        let mi = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let h = CgroupHost::probe(root, &mi, "");
        assert_eq!(h.mode, CgroupMode::Unified);
        assert_eq!(h.version_str(), "2");
        assert!(h.controllers["cpuset"].present);
        let c = &h.caps;
        assert!(c.memory_limit && c.memory_reservation && c.oom_events);
        assert!(!c.swap_limit, "no memory.swap.max: swap accounting off");
        assert!(c.cpu_shares && c.cpu_cfs && c.pids_limit && c.freezer);
        assert!(c.blkio_weight && !c.blkio_weight_device && c.blkio_read_bps);
        assert!(c.io_weight_converted, "io.weight without io.bfq.weight");
        assert!(!c.oom_kill_disable && !c.kernel_memory && !c.memory_swappiness);
        assert_eq!(c.cpus, "0-3");
        let w = h.warnings();
        assert!(
            w.contains(&"WARNING: No swap limit support".to_string()),
            "{w:?}"
        );
        assert!(
            !w.iter()
                .any(|w| w.contains("io.max") || w.contains("io.weight")),
            "{w:?}"
        );
        assert!(
            !w.iter().any(|w| w.contains("oom kill")),
            "not a v2 warning: {w:?}"
        );
    }

    #[test]
    fn no_cgroup_filesystem_is_mode_none() {
        let tmp = tempfile::tempdir().unwrap();
        let h = CgroupHost::probe(tmp.path(), "", "");
        assert_eq!(h.mode, CgroupMode::None);
        assert_eq!(h.caps, CgroupCaps::default());
        assert_eq!(h.warnings().len(), 1);
    }

    #[test]
    fn v1_mount_points_come_from_mountinfo() {
        let mi = "37 25 0:32 / /mnt/my\\040pids rw - cgroup cgroup rw,pids\n";
        let m = v1_mounts(&format!("{HYBRID}{mi}"));
        assert_eq!(m["cpu"], Path::new("/R/cpu,cpuacct"));
        assert_eq!(m["cpuacct"], Path::new("/R/cpu,cpuacct"));
        assert_eq!(m["memory"], Path::new("/R/memory"));
        assert_eq!(m["pids"], Path::new("/R/pids"), "the first mount wins");
        assert!(!m.contains_key("systemd"));
        let m = v1_mounts(mi);
        assert_eq!(m["pids"], Path::new("/mnt/my pids"));
    }

    #[test]
    fn unmanaged_hierarchies_are_named_or_unknown_to_libcgroups_and_the_hybrid_cgroup2_tree() {
        let r = Path::new("/R");
        // A second mount of systemd's hierarchy, and a bind of a sub-cgroup: not new trees.
        let extra = "40 25 0:31 / /elsewhere rw - cgroup cgroup rw,xattr,name=systemd\n\
                     41 25 0:26 /system.slice /sub rw - cgroup2 cgroup2 rw\n\
                     42 25 0:35 / /R/named rw - cgroup cgroup rw,name=berth-test\n\
                     43 25 0:36 / /R/misc rw - cgroup cgroup rw,misc\n\
                     44 25 0:37 / /R/rdma rw - cgroup cgroup rw,rdma\n";
        let u = unmanaged_hierarchies(r, &format!("{HYBRID}{extra}"));
        assert_eq!(
            u,
            vec![
                PathBuf::from("/R/unified"),
                PathBuf::from("/R/systemd"),
                PathBuf::from("/R/named"),
                PathBuf::from("/R/misc"),
                PathBuf::from("/R/rdma")
            ]
        );
        // Unified: the cgroup2 tree is the managed one; nothing else.
        let unified = "30 25 0:26 / /R rw - cgroup2 cgroup2 rw\n";
        assert!(unmanaged_hierarchies(r, unified).is_empty());
        // Legacy without named hierarchies.
        let legacy = "35 25 0:30 / /R/memory rw - cgroup cgroup rw,memory\n";
        assert!(unmanaged_hierarchies(r, legacy).is_empty());
    }

    #[test]
    fn module_tables_tell_builtin_from_loadable() {
        let t = ModuleTables {
            builtin: "kernel/drivers/net/veth.ko\n".into(),
            dep: "kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko\nkernel/fs/overlayfs/overlay.ko.xz:\n"
                .into(),
            found: true,
        };
        let none = Path::new("/nonexistent");
        assert_eq!(t.support("veth", none), Support::Yes);
        assert_eq!(t.support("bridge", none), Support::Module);
        assert_eq!(t.support("overlay", none), Support::Module);
        assert_eq!(
            t.support("stp", none),
            Support::No,
            "only a dependency's target"
        );
        let empty = ModuleTables {
            builtin: String::new(),
            dep: String::new(),
            found: false,
        };
        assert_eq!(empty.support("veth", none), Support::Unknown);
    }

    #[test]
    fn the_running_kernel_answers_the_syscall_probes() {
        let f = KernelFeatures::detect(true);
        // Every kernel berth can run containers on has these (5.12+); the probe must not
        // call a present syscall missing.
        assert_eq!(f.openat2, Support::Yes);
        assert_eq!(f.new_mount_api, Support::Yes);
        assert_ne!(
            f.mount_setattr,
            Support::Unknown,
            "a syscall answers for itself"
        );
        assert!(f.overlayfs.usable());
        // Root on a kernel with cgroup BPF (every one berth supports) loads it.
        if !rustix::process::geteuid().is_root() {
            return;
        }
        assert_eq!(
            f.bpf_device_filter,
            Support::Yes,
            "{}",
            f.bpf_device_filter_error
        );
    }
}
