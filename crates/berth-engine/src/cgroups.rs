//! A running container's cgroup, read and written directly (the daemon does not link
//! libcontainer): statistics, the processes in it, the freezer, and live resource updates.
//!
//! Containers run with the cgroups path `/berth/<id>` (`ContainerRecord::cgroup_path`).
//! Where that lands depends on the host, as the daemon probed it at start
//! ([`berth_runtime::host`], from the filesystem type of `/sys/fs/cgroup`, as libcgroups
//! does):
//! - `cgroup2` (unified, v2): one directory, `/sys/fs/cgroup/berth/<id>`;
//! - `tmpfs` (legacy or hybrid v1, controllers mounted at `/sys/fs/cgroup/<controller>`):
//!   one directory per controller, `/sys/fs/cgroup/memory/berth/<id>`, `.../cpu/...`,
//!   `.../cpuacct/...`, `.../pids/...`, `.../freezer/...`, `.../blkio/...`,
//!   `.../cpuset/...`. (In hybrid mode the v2 tree at `/sys/fs/cgroup/unified` holds no
//!   controllers, so libcgroups uses v1, and so do we.)
//!
//! Every path is rooted at a [`CgroupFs`] root, so the parsers run on fixture trees in
//! tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime::oci_spec::runtime::LinuxResources;

use crate::error::{EngineError, Result};

pub use berth_runtime::host::{CgroupHost, CgroupVersion, CGROUP_ROOT};

/// How long a freeze or thaw may take to settle.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the processes of a container that no longer runs may take to leave its
/// cgroup before [`Cgroup::remove`] gives up on it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// The cgroup filesystem of the host (or a fixture tree).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    version: CgroupVersion,
    /// v1: where each controller's hierarchy is mounted (from mountinfo); a controller
    /// not listed is looked for at `root/<controller>`.
    v1_mounts: BTreeMap<String, PathBuf>,
    /// v1: the hierarchies without a managed controller where a container also has its
    /// own cgroup (`berth_runtime::placement`).
    unmanaged: Vec<PathBuf>,
}

impl CgroupFs {
    /// The host's, as the daemon probed it at start.
    pub fn of_host(host: &CgroupHost) -> CgroupFs {
        CgroupFs {
            root: host.root.clone(),
            version: host.version(),
            v1_mounts: host.v1_mounts.clone(),
            unmanaged: host.unmanaged.clone(),
        }
    }

    /// A tree at `root` of the given version.
    pub fn at(root: &Path, version: CgroupVersion) -> CgroupFs {
        CgroupFs {
            root: root.to_path_buf(),
            version,
            v1_mounts: BTreeMap::new(),
            unmanaged: Vec::new(),
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup of a container, from its cgroups path (`/berth/<id>`).
    pub fn cgroup(&self, cgroup_path: &str) -> Cgroup {
        Cgroup {
            root: self.root.clone(),
            version: self.version,
            v1_mounts: self.v1_mounts.clone(),
            unmanaged: self.unmanaged.clone(),
            rel: PathBuf::from(cgroup_path.trim_start_matches('/')),
        }
    }
}

/// CPU time of a cgroup, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub total_ns: u64,
    /// Per CPU (v1 only; empty on v2, as in Docker).
    pub percpu_ns: Vec<u64>,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS periods, those throttled, and the time throttled.
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory of a cgroup, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage: u64,
    /// The high-water mark (v1 only, as in Docker).
    pub max_usage: Option<u64>,
    /// `None` when unlimited.
    pub limit: Option<u64>,
    /// The limit hits (v1 only).
    pub failcnt: Option<u64>,
    /// `memory.stat`, verbatim (keys differ between v1 and v2, as in Docker's JSON).
    pub stats: BTreeMap<String, u64>,
}

/// One `io_service_bytes_recursive` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// v1: `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`; v2: `read`, `write`.
    pub op: String,
    pub value: u64,
}

/// A sample of a cgroup's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids_current: u64,
    /// `None` when unlimited.
    pub pids_limit: Option<u64>,
    pub io_service_bytes: Vec<BlkioEntry>,
}

/// One container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    root: PathBuf,
    version: CgroupVersion,
    v1_mounts: BTreeMap<String, PathBuf>,
    unmanaged: Vec<PathBuf>,
    /// The cgroups path without its leading `/`.
    rel: PathBuf,
}

fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    s.trim().parse().map_err(|_| {
        EngineError::internal(format!(
            "{}: expected a number, found {:?}",
            path.display(),
            s.trim()
        ))
    })
}

/// `max` (unlimited) or a number.
fn parse_max(path: &Path, s: &str) -> Result<Option<u64>> {
    match s.trim() {
        "max" => Ok(None),
        v => parse_u64(path, v).map(Some),
    }
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `cpuacct.stat`, `cgroup.events`);
/// lines that do not parse are skipped.
fn flat_keyed(s: &str) -> BTreeMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `blkio.throttle.io_service_bytes_recursive` (v1): `MAJ:MIN Op VALUE` lines and a
/// final `Total VALUE`.
fn parse_blkio_v1(s: &str) -> Vec<BlkioEntry> {
    s.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?);
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// `io.stat` (v2): `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` lines; as
/// Docker, the bytes become `read` and `write` entries.
fn parse_io_stat_v2(s: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for l in s.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let op = match k {
                "rbytes" => "read",
                "wbytes" => "write",
                _ => continue,
            };
            if let Ok(value) = v.parse() {
                out.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    out
}

/// Docker's conversion of `--cpu-shares` (2..262144) to cgroup v2 `cpu.weight` (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

pub use berth_runtime::resources::blkio_weight_to_io_weight;

impl Cgroup {
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The directory of `controller` (v1), or the one directory (v2).
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => match self.v1_mounts.get(controller) {
                Some(m) => m.join(&self.rel),
                None => self.root.join(controller).join(&self.rel),
            },
            CgroupVersion::V2 => self.root.join(&self.rel),
        }
    }

    fn path(&self, controller: &str, file: &str) -> PathBuf {
        self.dir(controller).join(file)
    }

    fn read(&self, controller: &str, file: &str) -> Result<String> {
        let p = self.path(controller, file);
        fs::read_to_string(&p).map_err(|e| {
            // ENODEV: the cgroup is being removed (its last process exited).
            let kind = if e.kind() == IoKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) {
                berth_types::ErrorKind::NotFound
            } else {
                berth_types::ErrorKind::Internal
            };
            EngineError::new(kind, format!("{}: read: {e}", p.display()))
        })
    }

    /// Reads a file that may be absent (a controller the kernel lacks).
    fn read_opt(&self, controller: &str, file: &str) -> Result<Option<String>> {
        match self.read(controller, file) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind == berth_types::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<()> {
        let p = self.path(controller, file);
        fs::write(&p, value).map_err(|e| {
            // EINVAL and EBUSY: the kernel refuses the value (a CPU the host lacks, a
            // limit below the current usage); the caller's mistake, not ours.
            let kind = match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EBUSY) => berth_types::ErrorKind::InvalidArgument,
                // The cgroup is gone or going: its container no longer runs.
                Some(libc::ENOENT) | Some(libc::ENODEV) => berth_types::ErrorKind::NotFound,
                _ => berth_types::ErrorKind::Internal,
            };
            EngineError::new(
                kind,
                format!("{}: the kernel refused {value:?}: {e}", p.display()),
            )
        })
    }

    /// Every directory of the cgroup: one per distinct v1 hierarchy (the unmanaged ones
    /// included), or the one (v2).
    fn dirs(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V1 => {
                let mut out: Vec<PathBuf> = Vec::new();
                let mounts = self.v1_mounts.values().cloned();
                let named = berth_runtime::host::V1_CONTROLLERS
                    .iter()
                    .filter(|c| !self.v1_mounts.contains_key(**c))
                    .map(|c| self.root.join(c));
                let unmanaged = self.unmanaged.iter().cloned();
                for m in mounts.chain(named).chain(unmanaged) {
                    let d = m.join(&self.rel);
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
                out
            }
            CgroupVersion::V2 => vec![self.root.join(&self.rel)],
        }
    }

    /// Removes the cgroup's directories that hold no process (rmdir refuses one that
    /// does, so a running container's cgroup is never touched); true when none is left.
    /// For what the runtime left behind (a failed start, a release that raced with the
    /// last process's exit).
    pub fn remove(&self) -> bool {
        // A killed container's processes (the init's children, killed by the kernel when
        // the init dies) may take a while to leave on a loaded or slow host.
        let mut clean = true;
        for d in self.dirs() {
            // Per hierarchy: v1's pids controller lets go of a process only once it is
            // reaped, after the others.
            let deadline = Instant::now() + RELEASE_TIMEOUT;
            let mut pause = Duration::from_millis(2);
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == IoKind::NotFound => break,
                    // Its last processes are being reaped.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                    Err(_) => {
                        clean = false;
                        break;
                    }
                }
            }
        }
        clean
    }

    /// Whether the cgroup exists (the container runs, or ran and was not cleaned up).
    pub fn exists(&self) -> bool {
        match self.version {
            CgroupVersion::V1 => self.dir("pids").is_dir() || self.dir("memory").is_dir(),
            CgroupVersion::V2 => self.dir("").is_dir(),
        }
    }

    /// Every process in the cgroup and its descendants (`cgroup.procs`), sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let top = match self.version {
            CgroupVersion::V1 if self.dir("pids").is_dir() => self.dir("pids"),
            CgroupVersion::V1 => self.dir("memory"),
            CgroupVersion::V2 => self.dir(""),
        };
        let mut out = Vec::new();
        let mut dirs = vec![top];
        while let Some(d) = dirs.pop() {
            let procs = d.join("cgroup.procs");
            let text = match fs::read_to_string(&procs) {
                Ok(t) => t,
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => {
                    return Err(EngineError::internal(format!(
                        "{}: read: {e}",
                        procs.display()
                    )))
                }
            };
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            if let Ok(rd) = fs::read_dir(&d) {
                dirs.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// A sample of the cgroup's statistics. `clock_ticks` is `sysconf(_SC_CLK_TCK)`
    /// (v1's `cpuacct.stat` counts in those).
    pub fn stats(&self, clock_ticks: u64) -> Result<CgroupStats> {
        match self.version {
            CgroupVersion::V1 => self.stats_v1(clock_ticks.max(1)),
            CgroupVersion::V2 => self.stats_v2(),
        }
    }

    fn stats_v1(&self, clock_ticks: u64) -> Result<CgroupStats> {
        let mut s = CgroupStats::default();
        if let Some(t) = self.read_opt("cpuacct", "cpuacct.usage")? {
            s.cpu.total_ns = parse_u64(&self.path("cpuacct", "cpuacct.usage"), &t)?;
        }
        if let Some(t) = self.read_opt("cpuacct", "cpuacct.usage_percpu")? {
            s.cpu.percpu_ns = t
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
        }
        if let Some(t) = self.read_opt("cpuacct", "cpuacct.stat")? {
            let m = flat_keyed(&t);
            let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / clock_ticks;
            s.cpu.user_ns = ns(m.get("user").copied().unwrap_or(0));
            s.cpu.system_ns = ns(m.get("system").copied().unwrap_or(0));
        }
        if let Some(t) = self.read_opt("cpu", "cpu.stat")? {
            let m = flat_keyed(&t);
            s.cpu.periods = m.get("nr_periods").copied().unwrap_or(0);
            s.cpu.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
            s.cpu.throttled_ns = m.get("throttled_time").copied().unwrap_or(0);
        }
        let num = |file: &str| -> Result<Option<u64>> {
            match self.read_opt("memory", file)? {
                Some(t) => parse_u64(&self.path("memory", file), &t).map(Some),
                None => Ok(None),
            }
        };
        s.memory.usage = num("memory.usage_in_bytes")?.unwrap_or(0);
        s.memory.max_usage = num("memory.max_usage_in_bytes")?;
        s.memory.failcnt = num("memory.failcnt")?;
        // "Unlimited" is the largest page-aligned i64; callers cap it at the host's memory.
        s.memory.limit = num("memory.limit_in_bytes")?.filter(|l| *l < (i64::MAX as u64) / 2);
        if let Some(t) = self.read_opt("memory", "memory.stat")? {
            s.memory.stats = flat_keyed(&t);
        }
        self.pids_stats(&mut s)?;
        if let Some(t) = self.read_opt("blkio", "blkio.throttle.io_service_bytes_recursive")? {
            s.io_service_bytes = parse_blkio_v1(&t);
        }
        Ok(s)
    }

    fn stats_v2(&self) -> Result<CgroupStats> {
        let mut s = CgroupStats::default();
        if let Some(t) = self.read_opt("", "cpu.stat")? {
            let m = flat_keyed(&t);
            let us = |k: &str| m.get(k).copied().unwrap_or(0).saturating_mul(1000);
            s.cpu.total_ns = us("usage_usec");
            s.cpu.user_ns = us("user_usec");
            s.cpu.system_ns = us("system_usec");
            s.cpu.periods = m.get("nr_periods").copied().unwrap_or(0);
            s.cpu.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
            s.cpu.throttled_ns = us("throttled_usec");
        }
        if let Some(t) = self.read_opt("", "memory.current")? {
            s.memory.usage = parse_u64(&self.path("", "memory.current"), &t)?;
        }
        if let Some(t) = self.read_opt("", "memory.max")? {
            s.memory.limit = parse_max(&self.path("", "memory.max"), &t)?;
        }
        if let Some(t) = self.read_opt("", "memory.stat")? {
            s.memory.stats = flat_keyed(&t);
        }
        self.pids_stats(&mut s)?;
        if let Some(t) = self.read_opt("", "io.stat")? {
            s.io_service_bytes = parse_io_stat_v2(&t);
        }
        Ok(s)
    }

    fn pids_stats(&self, s: &mut CgroupStats) -> Result<()> {
        if let Some(t) = self.read_opt("pids", "pids.current")? {
            s.pids_current = parse_u64(&self.path("pids", "pids.current"), &t)?;
        }
        if let Some(t) = self.read_opt("pids", "pids.max")? {
            s.pids_limit = parse_max(&self.path("pids", "pids.max"), &t)?;
        }
        Ok(())
    }

    /// Kills every process of the cgroup and waits up to `timeout` for it to be empty:
    /// `cgroup.kill` where the kernel has it (v2, 5.14), else the processes are frozen
    /// (no fork, no exit, so no PID is reused between the read and the kill), killed with
    /// SIGKILL and thawed, again until none is left. For a container nobody supervises.
    pub fn kill_all(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EngineError::internal(format!(
                    "cgroup {}: processes {pids:?} still there after SIGKILL",
                    self.rel.display()
                )));
            }
            let kill_file = self.dir("").join("cgroup.kill");
            if self.version == CgroupVersion::V2 && kill_file.exists() {
                let _ = fs::write(&kill_file, "1");
            } else {
                let frozen = self.freeze().is_ok();
                for pid in self.pids()? {
                    // SAFETY: kill(2) has no memory-safety preconditions; the PID is a
                    // member of the (frozen) cgroup, so it names that process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if frozen {
                    let _ = self.thaw();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the freezer holds the cgroup (frozen, or freezing).
    pub fn frozen(&self) -> Result<bool> {
        match self.version {
            CgroupVersion::V1 => Ok(self
                .read_opt("freezer", "freezer.state")?
                .is_some_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"))),
            CgroupVersion::V2 => Ok(self
                .read_opt("", "cgroup.freeze")?
                .is_some_and(|s| s.trim() == "1")),
        }
    }

    /// Freezes every process of the cgroup and waits until the kernel reports it frozen
    /// (thawing again if it does not settle).
    pub fn freeze(&self) -> Result<()> {
        let r = self.set_frozen(true);
        if r.is_err() {
            let _ = self.set_frozen(false);
        }
        r
    }

    /// Thaws the cgroup and waits until it is.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        match self.settle_frozen(frozen) {
            // The cgroup went away under us (its last process exited, as a thawed
            // container that was killed while paused does at once): nothing is frozen.
            Err(e) if e.kind == berth_types::ErrorKind::NotFound && !frozen => Ok(()),
            r => r,
        }
    }

    fn settle_frozen(&self, frozen: bool) -> Result<()> {
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        match self.version {
            CgroupVersion::V1 => {
                let want = if frozen { "FROZEN" } else { "THAWED" };
                loop {
                    // As runc: write again while FREEZING (new tasks may have joined).
                    self.write("freezer", "freezer.state", want)?;
                    let state = self.read("freezer", "freezer.state")?;
                    if state.trim() == want {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(EngineError::internal(format!(
                            "{}: still {} after {}s",
                            self.path("freezer", "freezer.state").display(),
                            state.trim(),
                            FREEZE_TIMEOUT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            CgroupVersion::V2 => {
                self.write("", "cgroup.freeze", if frozen { "1" } else { "0" })?;
                loop {
                    let events = flat_keyed(&self.read("", "cgroup.events")?);
                    if events.get("frozen").copied().unwrap_or(0) == u64::from(frozen) {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(EngineError::internal(format!(
                            "{}: frozen is not {} after {}s",
                            self.path("", "cgroup.events").display(),
                            u8::from(frozen),
                            FREEZE_TIMEOUT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Writes the limits of `r` that `docker update` can change (memory, CPU, cpuset,
    /// pids, blkio weight) into the live cgroup. Devices and throttles are left alone.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        match self.version {
            CgroupVersion::V1 => self.apply_v1(r),
            CgroupVersion::V2 => self.apply_v2(r),
        }
    }

    fn apply_v1(&self, r: &LinuxResources) -> Result<()> {
        if let Some(m) = r.memory() {
            let limit = m.limit();
            let swap = m.swap();
            let has_memsw = self.path("memory", "memory.memsw.limit_in_bytes").exists();
            if let (Some(swap), true) = (swap, has_memsw) {
                // memsw must stay ≥ the limit at every step: raise memsw first when it
                // grows, lower the limit first when memsw shrinks.
                let cur_memsw = self
                    .read("memory", "memory.memsw.limit_in_bytes")
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(u64::MAX);
                let swap_first = swap == -1 || swap as u64 >= cur_memsw;
                if swap_first {
                    self.write("memory", "memory.memsw.limit_in_bytes", &swap.to_string())?;
                }
                if let Some(l) = limit {
                    self.write("memory", "memory.limit_in_bytes", &l.to_string())?;
                }
                if !swap_first {
                    self.write("memory", "memory.memsw.limit_in_bytes", &swap.to_string())?;
                }
            } else if let Some(l) = limit {
                self.write("memory", "memory.limit_in_bytes", &l.to_string())?;
            }
            if let Some(res) = m.reservation() {
                self.write("memory", "memory.soft_limit_in_bytes", &res.to_string())?;
            }
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                self.write("cpu", "cpu.shares", &s.to_string())?;
            }
            if let Some(p) = c.period() {
                self.write("cpu", "cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = c.quota() {
                self.write("cpu", "cpu.cfs_quota_us", &q.to_string())?;
            }
            if let Some(cpus) = c.cpus() {
                self.write("cpuset", "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems() {
                self.write("cpuset", "cpuset.mems", mems)?;
            }
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() <= 0 {
                "max".to_string()
            } else {
                p.limit().to_string()
            };
            self.write("pids", "pids.max", &v)?;
        }
        if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
            let file = if self.path("blkio", "blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            self.write("blkio", file, &w.to_string())?;
        }
        Ok(())
    }

    fn apply_v2(&self, r: &LinuxResources) -> Result<()> {
        if let Some(m) = r.memory() {
            let limit = m.limit();
            if let Some(l) = limit {
                let v = if l < 0 { "max".into() } else { l.to_string() };
                self.write("", "memory.max", &v)?;
            }
            if let (Some(swap), true) = (m.swap(), self.path("", "memory.swap.max").exists()) {
                // v2 limits swap alone; Docker's value is memory + swap.
                let v = match (swap, limit) {
                    (-1, _) => "max".to_string(),
                    (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                    (s, _) => s.to_string(),
                };
                self.write("", "memory.swap.max", &v)?;
            }
            if let Some(res) = m.reservation() {
                self.write("", "memory.low", &res.to_string())?;
            }
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                self.write("", "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let cur = self.read("", "cpu.max").unwrap_or_default();
                let mut f = cur.split_whitespace();
                let (cur_q, cur_p) = (f.next().unwrap_or("max"), f.next().unwrap_or("100000"));
                let q = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".into(),
                    None => cur_q.to_string(),
                };
                let p = c.period().map_or(cur_p.to_string(), |p| p.to_string());
                self.write("", "cpu.max", &format!("{q} {p}"))?;
            }
            if let Some(cpus) = c.cpus() {
                self.write("", "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems() {
                self.write("", "cpuset.mems", mems)?;
            }
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() <= 0 {
                "max".to_string()
            } else {
                p.limit().to_string()
            };
            self.write("", "pids.max", &v)?;
        }
        if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
            if self.path("", "io.bfq.weight").exists() {
                self.write("", "io.bfq.weight", &w.to_string())?;
            } else {
                self.write(
                    "",
                    "io.weight",
                    &blkio_weight_to_io_weight(u64::from(w)).to_string(),
                )?;
            }
        }
        // Files the spec names directly (berth's own conversion of a weight for
        // io.weight, see `resources::restrict_to_host`).
        for (file, value) in r.unified().iter().flatten() {
            if !file.contains('/') {
                self.write("", file, value)?;
            }
        }
        Ok(())
    }
}

/// The host's CPU time as Docker computes `system_cpu_usage`: the sum of the first seven
/// fields of the `cpu` line of `/proc/stat` (user nice system idle iowait irq softirq), in
/// nanoseconds.
pub fn system_cpu_usage_ns(proc_stat: &str, clock_ticks: u64) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .map(|v| v.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(ticks.saturating_mul(1_000_000_000) / clock_ticks.max(1))
}

/// `sysconf(_SC_CLK_TCK)`, 100 when unknown.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes an integer name and reads no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// The number of online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`, as Docker).
pub fn online_cpus() -> u32 {
    // SAFETY: as above.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u32
    } else {
        1
    }
}

/// The host's memory in bytes (`MemTotal` of `/proc/meminfo`).
pub fn machine_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup-v2")
    }

    /// A writable copy of the v2 fixture tree.
    fn v2_copy() -> (tempfile::TempDir, Cgroup) {
        let tmp = tempfile::tempdir().unwrap();
        let src = fixture().join("berth/abc");
        let dst = tmp.path().join("berth/abc");
        fs::create_dir_all(dst.join("sub")).unwrap();
        for e in fs::read_dir(&src).unwrap().flatten() {
            if e.file_type().unwrap().is_file() {
                fs::copy(e.path(), dst.join(e.file_name())).unwrap();
            }
        }
        fs::write(dst.join("sub/cgroup.procs"), "77\n").unwrap();
        let cg = CgroupFs::at(tmp.path(), CgroupVersion::V2).cgroup("/berth/abc");
        (tmp, cg)
    }

    #[test]
    fn v2_stats_parse_the_fixture() {
        let cg = CgroupFs::at(&fixture(), CgroupVersion::V2).cgroup("/berth/abc");
        assert!(cg.exists());
        let s = cg.stats(100).unwrap();
        assert_eq!(s.cpu.total_ns, 1_234_567_000);
        assert_eq!(s.cpu.user_ns, 1_000_000_000);
        assert_eq!(s.cpu.system_ns, 234_567_000);
        assert_eq!(
            (s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_ns),
            (50, 7, 3_000_000)
        );
        assert!(s.cpu.percpu_ns.is_empty());
        assert_eq!(s.memory.usage, 4_448_256);
        assert_eq!(s.memory.limit, Some(67_108_864));
        assert_eq!(s.memory.max_usage, None);
        assert_eq!(s.memory.stats.get("inactive_file"), Some(&16384));
        assert_eq!(s.memory.stats.get("anon"), Some(&1_064_960));
        assert_eq!((s.pids_current, s.pids_limit), (3, Some(100)));
        assert_eq!(
            s.io_service_bytes,
            vec![
                BlkioEntry {
                    major: 254,
                    minor: 0,
                    op: "read".into(),
                    value: 4096
                },
                BlkioEntry {
                    major: 254,
                    minor: 0,
                    op: "write".into(),
                    value: 8192
                },
            ]
        );
        assert!(!cg.frozen().unwrap());
    }

    #[test]
    fn v2_unlimited_reads_as_none_and_procs_recurse() {
        let (_tmp, cg) = v2_copy();
        fs::write(cg.dir("").join("memory.max"), "max\n").unwrap();
        fs::write(cg.dir("").join("pids.max"), "max\n").unwrap();
        let s = cg.stats(100).unwrap();
        assert_eq!((s.memory.limit, s.pids_limit), (None, None));
        assert_eq!(cg.pids().unwrap(), vec![12, 34, 77]);
    }

    #[test]
    fn v2_apply_writes_docker_conversions() {
        let (_tmp, cg) = v2_copy();
        let r = berth_runtime::resources::to_oci(
            &berth_runtime::Resources {
                memory: Some(128 << 20),
                memory_swap: Some(192 << 20),
                memory_reservation: Some(64 << 20),
                cpu_shares: Some(1024),
                nano_cpus: Some(500_000_000),
                cpuset_cpus: Some("0".into()),
                pids_limit: Some(50),
                blkio_weight: Some(500),
                ..Default::default()
            },
            vec![],
            2,
        )
        .unwrap();
        cg.apply(&r).unwrap();
        let rd = |f: &str| fs::read_to_string(cg.dir("").join(f)).unwrap();
        assert_eq!(rd("memory.max"), (128u64 << 20).to_string());
        assert_eq!(rd("memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(rd("memory.low"), (64u64 << 20).to_string());
        assert_eq!(rd("cpu.weight"), "39");
        assert_eq!(rd("cpu.max"), "50000 100000");
        assert_eq!(rd("cpuset.cpus"), "0");
        assert_eq!(rd("pids.max"), "50");
        assert_eq!(rd("io.weight"), "4950");
        // Where the host has io.weight and no BFQ, the spec carries the converted weight
        // as a unified key; an update writes it just the same.
        fs::write(cg.dir("").join("io.weight"), "").unwrap();
        let mut caps = berth_runtime::host::CgroupCaps::all();
        caps.io_weight_converted = true;
        let mut r = r;
        berth_runtime::resources::restrict_to_host(&mut r, &caps);
        assert!(r.block_io().as_ref().unwrap().weight().is_none());
        cg.apply(&r).unwrap();
        assert_eq!(rd("io.weight"), "4950");
    }

    #[test]
    fn v2_freeze_checks_cgroup_events() {
        let (_tmp, cg) = v2_copy();
        // The fixture's cgroup.events says frozen 0: a thaw settles at once.
        cg.thaw().unwrap();
        assert_eq!(
            fs::read_to_string(cg.dir("").join("cgroup.freeze")).unwrap(),
            "0"
        );
        // A kernel would flip cgroup.events; a plain file does not, so the freeze times
        // out only after FREEZE_TIMEOUT — simulate the kernel instead.
        fs::write(cg.dir("").join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze().unwrap();
        assert!(cg.frozen().unwrap());
    }

    #[test]
    fn v1_parsers() {
        let e = parse_blkio_v1("254:0 Read 4096\n254:0 Write 0\n254:0 Total 4096\nTotal 4096\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].op, "Read");
        assert_eq!(e[0].value, 4096);
        let stat = "cpu  100 5 50 1000 10 1 2 7 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(system_cpu_usage_ns(stat, 100), Some(11_680_000_000));
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    }

    #[test]
    fn v1_stats_read_each_controller() {
        let tmp = tempfile::tempdir().unwrap();
        let w = |ctrl: &str, file: &str, v: &str| {
            let d = tmp.path().join(ctrl).join("berth/x");
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(file), v).unwrap();
        };
        w("cpuacct", "cpuacct.usage", "2000\n");
        w("cpuacct", "cpuacct.usage_percpu", "1500 500 \n");
        w("cpuacct", "cpuacct.stat", "user 3\nsystem 1\n");
        w(
            "cpu",
            "cpu.stat",
            "nr_periods 4\nnr_throttled 2\nthrottled_time 99\n",
        );
        w("memory", "memory.usage_in_bytes", "1000\n");
        w("memory", "memory.max_usage_in_bytes", "2000\n");
        w("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        w("memory", "memory.stat", "cache 5\ntotal_inactive_file 7\n");
        w("pids", "pids.current", "2\n");
        w("pids", "pids.max", "max\n");
        w("pids", "cgroup.procs", "5\n6\n");
        w("freezer", "freezer.state", "THAWED\n");
        let cg = CgroupFs::at(tmp.path(), CgroupVersion::V1).cgroup("/berth/x");
        let s = cg.stats(100).unwrap();
        assert_eq!(s.cpu.total_ns, 2000);
        assert_eq!(s.cpu.percpu_ns, vec![1500, 500]);
        assert_eq!((s.cpu.user_ns, s.cpu.system_ns), (30_000_000, 10_000_000));
        assert_eq!((s.cpu.throttled_periods, s.cpu.throttled_ns), (2, 99));
        assert_eq!(s.memory.max_usage, Some(2000));
        assert_eq!(s.memory.limit, None, "v1's unlimited");
        assert_eq!(s.memory.stats.get("total_inactive_file"), Some(&7));
        assert_eq!((s.pids_current, s.pids_limit), (2, None));
        assert_eq!(cg.pids().unwrap(), vec![5, 6]);
        assert!(!cg.frozen().unwrap());
        cg.freeze().unwrap(); // a plain file reads back what was written
        assert!(cg.frozen().unwrap());
        cg.thaw().unwrap();
        assert!(!cg.frozen().unwrap());
    }
}
