//! Resources (`--memory`, `--cpus`, `--pids-limit`, blkio, ...) and the device cgroup.
//!
//! Docker's semantics: `--memory-swap` is memory + swap (-1 unlimited) and defaults to
//! twice `--memory`; `--cpus` becomes a CFS quota over a 100 ms period; a zero means "not
//! set". Unlike Docker, a pids limit is on by default (Podman's 2048), so a fork bomb
//! stops at the container; `pids_limit: Some(0)` or `Some(-1)` lifts it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::host::CgroupCaps;
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
};

/// Podman's default pids limit (`containers.conf` `pids_limit`).
pub const DEFAULT_PIDS_LIMIT: i64 = 2048;
/// CFS period used for `--cpus`, as Docker: 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Docker's smallest memory limit.
pub const MIN_MEMORY_BYTES: i64 = 6 << 20;

/// A per-device throttle (`--device-read-bps /dev/sda:1mb`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThrottleDevice {
    /// Host path of a block device; resolved to major:minor with stat(2).
    pub path: PathBuf,
    /// Bytes (or operations) per second.
    pub rate: u64,
}

/// cgroup limits of a container. `None` (or 0) means "not set". Serializable: the engine
/// keeps them in the container's record (what `docker inspect` shows and `docker update`
/// changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Resources {
    /// `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--memory-swap`, bytes of memory + swap; -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// `--memory-reservation`, bytes (soft limit).
    pub memory_reservation: Option<i64>,
    /// `--memory-swappiness`, 0 to 100 (`None` or -1: the host's); cgroup v1 only.
    pub memory_swappiness: Option<i64>,
    /// `--cpus` × 10⁹.
    pub nano_cpus: Option<i64>,
    /// `--cpu-shares` (relative weight, 2 to 262144).
    pub cpu_shares: Option<u64>,
    /// `--cpu-period`, µs (1000 to 1000000); not with `nano_cpus`.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`, µs per period (at least 1000; -1 unlimited); not with `nano_cpus`.
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`, like `0-3,6`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`: `None` = [`DEFAULT_PIDS_LIMIT`], ≤ 0 = unlimited.
    pub pids_limit: Option<i64>,
    /// `--blkio-weight`, 10 to 1000.
    pub blkio_weight: Option<u16>,
    pub device_read_bps: Vec<ThrottleDevice>,
    pub device_write_bps: Vec<ThrottleDevice>,
    pub device_read_iops: Vec<ThrottleDevice>,
    pub device_write_iops: Vec<ThrottleDevice>,
}

/// An error in resource options.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{flag} {value}: {rule}")]
    Invalid {
        flag: &'static str,
        value: String,
        rule: String,
    },
    #[error("{flag} {path}: {rule}")]
    Device {
        flag: &'static str,
        path: PathBuf,
        rule: String,
    },
}

fn invalid(flag: &'static str, value: impl ToString, rule: impl Into<String>) -> ResourceError {
    ResourceError::Invalid {
        flag,
        value: value.to_string(),
        rule: rule.into(),
    }
}

fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|v| *v != 0)
}

/// Checks a cpuset list (`0-3,6`).
fn check_cpuset(flag: &'static str, s: &str) -> Result<(), ResourceError> {
    let bad = || invalid(flag, s, "expected a list like 0-3,6");
    if s.is_empty() {
        return Err(bad());
    }
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
    }
    Ok(())
}

/// Resolves a host block device to its major:minor.
pub fn block_device_numbers(flag: &'static str, path: &Path) -> Result<(i64, i64), ResourceError> {
    let md = std::fs::metadata(path).map_err(|e| ResourceError::Device {
        flag,
        path: path.to_path_buf(),
        rule: format!("cannot stat: {e}"),
    })?;
    if !md.file_type().is_block_device() {
        return Err(ResourceError::Device {
            flag,
            path: path.to_path_buf(),
            rule: "not a block device".into(),
        });
    }
    let rdev = md.rdev();
    Ok((
        rustix::fs::major(rdev) as i64,
        rustix::fs::minor(rdev) as i64,
    ))
}

fn throttles(
    flag: &'static str,
    list: &[ThrottleDevice],
) -> Result<Vec<LinuxThrottleDevice>, ResourceError> {
    list.iter()
        .map(|d| {
            let (major, minor) = block_device_numbers(flag, &d.path)?;
            if d.rate == 0 {
                return Err(ResourceError::Device {
                    flag,
                    path: d.path.clone(),
                    rule: "rate must be greater than 0".into(),
                });
            }
            LinuxThrottleDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .rate(d.rate)
                .build()
                .map_err(|e| invalid(flag, d.path.display(), e.to_string()))
        })
        .collect()
}

/// Builds the OCI resources, with `devices` as the device cgroup rules.
pub fn to_oci(
    r: &Resources,
    devices: Vec<LinuxDeviceCgroup>,
    host_cpus: usize,
) -> Result<LinuxResources, ResourceError> {
    // Memory.
    let memory = set(r.memory);
    if let Some(m) = memory {
        if m < MIN_MEMORY_BYTES {
            return Err(invalid(
                "--memory",
                m,
                "the minimum memory limit is 6MB (6291456 bytes)",
            ));
        }
    }
    let swap = match (memory, set(r.memory_swap)) {
        (None, Some(s)) => {
            return Err(invalid(
                "--memory-swap",
                s,
                "needs --memory as well (it is memory + swap)",
            ));
        }
        (Some(m), Some(s)) if s != -1 && s < m => {
            return Err(invalid(
                "--memory-swap",
                s,
                format!("must be at least --memory ({m}), it is memory + swap"),
            ));
        }
        (Some(_), Some(s)) if s < -1 => {
            return Err(invalid(
                "--memory-swap",
                s,
                "must be -1 (unlimited) or bytes",
            ))
        }
        (Some(m), None) => Some(m.saturating_mul(2)),
        (_, s) => s,
    };
    let reservation = set(r.memory_reservation);
    if let Some(res) = reservation {
        if res < MIN_MEMORY_BYTES {
            return Err(invalid(
                "--memory-reservation",
                res,
                "the minimum is 6MB (6291456 bytes)",
            ));
        }
        if memory.is_some_and(|m| res > m) {
            return Err(invalid(
                "--memory-reservation",
                res,
                "must be lower than --memory",
            ));
        }
    }
    let swappiness = r.memory_swappiness.filter(|s| *s != -1);
    if let Some(sw) = swappiness {
        if !(0..=100).contains(&sw) {
            // Docker's words.
            return Err(invalid(
                "--memory-swappiness",
                sw,
                format!("Invalid value: {sw}, valid memory swappiness range is 0-100"),
            ));
        }
    }
    let mut mem = LinuxMemoryBuilder::default();
    if let Some(sw) = swappiness {
        mem = mem.swappiness(sw as u64);
    }
    if let Some(m) = memory {
        mem = mem.limit(m);
    }
    if let Some(s) = swap {
        mem = mem.swap(s);
    }
    if let Some(res) = reservation {
        mem = mem.reservation(res);
    }

    // CPU.
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if let Some(n) = set(r.nano_cpus) {
        let quota = (n as i128 * CPU_PERIOD_US as i128 / 1_000_000_000) as i64;
        if n < 0 || quota < 1000 {
            return Err(invalid("--cpus", n as f64 / 1e9, "the minimum is 0.01"));
        }
        if n as i128 > host_cpus as i128 * 1_000_000_000 {
            return Err(invalid(
                "--cpus",
                n as f64 / 1e9,
                format!("this host has only {host_cpus} CPUs"),
            ));
        }
        cpu = cpu.quota(quota).period(CPU_PERIOD_US);
        any_cpu = true;
    }
    let period = r.cpu_period.filter(|p| *p != 0);
    let cfs_quota = set(r.cpu_quota);
    if set(r.nano_cpus).is_some() && period.is_some() {
        return Err(invalid(
            "--cpu-period",
            period.unwrap_or_default(),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if set(r.nano_cpus).is_some() && cfs_quota.is_some() {
        return Err(invalid(
            "--cpu-quota",
            cfs_quota.unwrap_or_default(),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    if let Some(p) = period {
        if !(1000..=1_000_000).contains(&p) {
            return Err(invalid(
                "--cpu-period",
                p,
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1 second (i.e. 1000000)",
            ));
        }
        cpu = cpu.period(p);
        any_cpu = true;
    }
    if let Some(q) = cfs_quota {
        if q != -1 && q < 1000 {
            return Err(invalid(
                "--cpu-quota",
                q,
                "CPU cfs quota can not be less than 1ms (i.e. 1000)",
            ));
        }
        cpu = cpu.quota(q);
        any_cpu = true;
    }
    if let Some(s) = r.cpu_shares.filter(|s| *s != 0) {
        if !(2..=262_144).contains(&s) {
            return Err(invalid("--cpu-shares", s, "must be between 2 and 262144"));
        }
        cpu = cpu.shares(s);
        any_cpu = true;
    }
    if let Some(c) = &r.cpuset_cpus {
        check_cpuset("--cpuset-cpus", c)?;
        cpu = cpu.cpus(c.clone());
        any_cpu = true;
    }
    if let Some(c) = &r.cpuset_mems {
        check_cpuset("--cpuset-mems", c)?;
        cpu = cpu.mems(c.clone());
        any_cpu = true;
    }

    // Pids.
    let pids = match r.pids_limit {
        None => DEFAULT_PIDS_LIMIT,
        Some(n) if n <= 0 => -1,
        Some(n) => n,
    };

    // Block I/O.
    let mut blkio = LinuxBlockIoBuilder::default();
    let mut any_blkio = false;
    if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(invalid("--blkio-weight", w, "must be between 10 and 1000"));
        }
        blkio = blkio.weight(w);
        any_blkio = true;
    }
    for (flag, list, which) in [
        ("--device-read-bps", &r.device_read_bps, 0),
        ("--device-write-bps", &r.device_write_bps, 1),
        ("--device-read-iops", &r.device_read_iops, 2),
        ("--device-write-iops", &r.device_write_iops, 3),
    ] {
        if list.is_empty() {
            continue;
        }
        let t = throttles(flag, list)?;
        any_blkio = true;
        blkio = match which {
            0 => blkio.throttle_read_bps_device(t),
            1 => blkio.throttle_write_bps_device(t),
            2 => blkio.throttle_read_iops_device(t),
            _ => blkio.throttle_write_iops_device(t),
        };
    }

    let build_err =
        |what: &'static str| move |e: oci_spec::OciSpecError| invalid(what, "", e.to_string());
    let mut b = LinuxResourcesBuilder::default().devices(devices).pids(
        LinuxPidsBuilder::default()
            .limit(pids)
            .build()
            .map_err(build_err("--pids-limit"))?,
    );
    if memory.is_some() || reservation.is_some() || swappiness.is_some() {
        b = b.memory(mem.build().map_err(build_err("--memory"))?);
    }
    if any_cpu {
        b = b.cpu(cpu.build().map_err(build_err("--cpus"))?);
    }
    if any_blkio {
        b = b.block_io(blkio.build().map_err(build_err("--blkio-weight"))?);
    }
    b.build().map_err(build_err("resources"))
}

/// Docker's answer to a limit the host cannot enforce (`verifyPlatformContainerResources`):
/// the option is discarded with Docker's warning, word for word, or refused where Docker
/// refuses it. Returns the resources that take effect and the warnings for the create (or
/// update) response. Checks against the host's CPUs and memory nodes too.
pub fn fit_to_host(
    r: &Resources,
    caps: &CgroupCaps,
) -> Result<(Resources, Vec<String>), ResourceError> {
    let mut r = r.clone();
    let mut warnings = Vec::new();
    let mut discard = |set: bool, supported: bool, warning: &str| -> bool {
        let drop = set && !supported;
        if drop {
            warnings.push(warning.to_string());
        }
        drop
    };
    if discard(
        set(r.memory).is_some(),
        caps.memory_limit,
        "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.",
    ) {
        r.memory = None;
        r.memory_swap = None;
    }
    if discard(
        set(r.memory).is_some() && set(r.memory_swap).is_some(),
        caps.swap_limit,
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.",
    ) {
        // Docker's -1 (what inspect shows); the runtime writes no swap limit for it on
        // such a host (`restrict_to_host`).
        r.memory_swap = Some(-1);
    }
    if discard(
        r.memory_swappiness.is_some_and(|s| s != -1),
        caps.memory_swappiness,
        "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.",
    ) {
        r.memory_swappiness = None;
    }
    if discard(
        set(r.memory_reservation).is_some(),
        caps.memory_reservation,
        "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.",
    ) {
        r.memory_reservation = None;
    }
    if discard(
        r.pids_limit.is_some_and(|p| p > 0),
        caps.pids_limit,
        "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded.",
    ) {
        r.pids_limit = None;
    }
    if discard(
        r.cpu_shares.is_some_and(|s| s != 0),
        caps.cpu_shares,
        "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.",
    ) {
        r.cpu_shares = None;
    }
    if discard(
        r.cpu_period.is_some_and(|p| p != 0),
        caps.cpu_cfs,
        "Your kernel does not support CPU CFS scheduler. CPU period discarded.",
    ) {
        r.cpu_period = None;
    }
    if discard(
        set(r.cpu_quota).is_some_and(|q| q > 0),
        caps.cpu_cfs,
        "Your kernel does not support CPU CFS scheduler. CPU quota discarded.",
    ) {
        r.cpu_quota = None;
    }
    if let Some(n) = set(r.nano_cpus).filter(|_| !caps.cpu_cfs) {
        return Err(invalid(
            "--cpus",
            n as f64 / 1e9,
            "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted",
        ));
    }
    if discard(
        r.cpuset_cpus.is_some() || r.cpuset_mems.is_some(),
        caps.cpuset,
        "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.",
    ) {
        r.cpuset_cpus = None;
        r.cpuset_mems = None;
    }
    for (flag, req, avail, what) in [
        ("--cpuset-cpus", &r.cpuset_cpus, &caps.cpus, "CPUs"),
        ("--cpuset-mems", &r.cpuset_mems, &caps.mems, "memory nodes"),
    ] {
        let (Some(req), false) = (req, avail.is_empty()) else {
            continue;
        };
        check_cpuset(flag, req)?;
        if !cpuset_within(req, avail) {
            return Err(invalid(
                flag,
                req,
                format!("Requested {what} are not available - requested {req}, available: {avail}"),
            ));
        }
    }
    if discard(
        r.blkio_weight.is_some_and(|w| w != 0),
        caps.blkio_weight,
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
    ) {
        r.blkio_weight = None;
    }
    for (list, supported, warning) in [
        (
            &mut r.device_read_bps,
            caps.blkio_read_bps,
            "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded.",
        ),
        (
            &mut r.device_write_bps,
            caps.blkio_write_bps,
            "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded.",
        ),
        (
            &mut r.device_read_iops,
            caps.blkio_read_iops,
            "Your kernel does not support IOPS Block I/O read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded.",
        ),
        (
            &mut r.device_write_iops,
            caps.blkio_write_iops,
            "Your kernel does not support IOPS Block I/O write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded.",
        ),
    ] {
        if discard(!list.is_empty(), supported, warning) {
            list.clear();
        }
    }
    Ok((r, warnings))
}

/// Whether every CPU (or node) of the list `req` is in the list `avail` (both `0-3,6`).
fn cpuset_within(req: &str, avail: &str) -> bool {
    let ranges = |s: &str| -> Vec<(u32, u32)> {
        s.split(',')
            .filter_map(|p| {
                let (a, b) = p.trim().split_once('-').unwrap_or((p.trim(), p.trim()));
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect()
    };
    let avail = ranges(avail);
    ranges(req)
        .iter()
        .all(|&(a, b)| (a..=b).all(|c| avail.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))))
}

/// runc's conversion of `--blkio-weight` (10..1000) to cgroup v2 `io.weight` (1..10000).
pub fn blkio_weight_to_io_weight(w: u64) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (w.saturating_sub(10) * 9999) / 990
}

/// Removes from runtime resources what the host cannot enforce, so the runtime never
/// writes a cgroup file that is not there: the defaults berth adds itself (memory + swap
/// at twice the memory, the pids limit) and anything [`fit_to_host`] would have
/// discarded.
pub fn restrict_to_host(r: &mut LinuxResources, caps: &CgroupCaps) {
    if let Some(mut m) = *r.memory() {
        if !caps.memory_limit {
            m.set_limit(None);
        }
        if !caps.swap_limit || m.limit().is_none() {
            m.set_swap(None);
        }
        if !caps.memory_reservation {
            m.set_reservation(None);
        }
        if !caps.memory_swappiness {
            m.set_swappiness(None);
        }
        let empty = m.limit().is_none()
            && m.swap().is_none()
            && m.reservation().is_none()
            && m.swappiness().is_none();
        r.set_memory((!empty).then_some(m));
    }
    if let Some(mut c) = r.cpu().clone() {
        if !caps.cpu_shares {
            c.set_shares(None);
        }
        if !caps.cpu_cfs {
            c.set_quota(None);
            c.set_period(None);
        }
        if !caps.cpuset {
            c.set_cpus(None);
            c.set_mems(None);
        }
        r.set_cpu(Some(c));
    }
    if !caps.pids_limit {
        r.set_pids(None);
    }
    if let Some(mut b) = r.block_io().clone() {
        if !caps.blkio_weight {
            b.set_weight(None);
        }
        // libcgroups 0.7 converts a weight for io.weight in u16 arithmetic, which
        // overflows (a panic in the runtime) for any weight above 16: berth converts it
        // and hands the runtime the file's value as a unified key instead.
        if let Some(w) = b.weight().filter(|_| caps.io_weight_converted) {
            b.set_weight(None);
            let mut unified = r.unified().clone().unwrap_or_default();
            unified.insert(
                "io.weight".to_string(),
                blkio_weight_to_io_weight(u64::from(w)).to_string(),
            );
            r.set_unified(Some(unified));
        }
        if !caps.blkio_read_bps {
            b.set_throttle_read_bps_device(None);
        }
        if !caps.blkio_write_bps {
            b.set_throttle_write_bps_device(None);
        }
        if !caps.blkio_read_iops {
            b.set_throttle_read_iops_device(None);
        }
        if !caps.blkio_write_iops {
            b.set_throttle_write_iops_device(None);
        }
        r.set_block_io(Some(b));
    }
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build()
        .expect("a device rule with every field set builds")
}

/// The device cgroup: deny everything, then allow Docker's (runc's) default devices:
/// mknod of any node (useless without CAP_MKNOD, as in Docker), null, zero, full, random,
/// urandom, tty, ptmx, the pty slaves, and /dev/console with a terminal.
/// `/dev/net/tun` is **not** allowed (runc dropped it from the default list).
/// Privileged: every device.
pub fn device_rules(privileged: bool, tty: bool) -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    if privileged {
        return vec![rule(true, A, None, None, "rwm")];
    }
    let mut v = vec![
        rule(false, A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"), // /dev/null
        rule(true, C, Some(1), Some(5), "rwm"), // /dev/zero
        rule(true, C, Some(1), Some(7), "rwm"), // /dev/full
        rule(true, C, Some(1), Some(8), "rwm"), // /dev/random
        rule(true, C, Some(1), Some(9), "rwm"), // /dev/urandom
        rule(true, C, Some(5), Some(0), "rwm"), // /dev/tty
        rule(true, C, Some(5), Some(2), "rwm"), // /dev/ptmx
        rule(true, C, Some(136), None, "rwm"),  // /dev/pts/*
    ];
    if tty {
        v.push(rule(true, C, Some(5), Some(1), "rwm")); // /dev/console
    }
    v
}

fn node(path: &str, major: i64, minor: i64) -> LinuxDevice {
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(LinuxDeviceType::C)
        .major(major)
        .minor(minor)
        .file_mode(0o666u32)
        .uid(0u32)
        .gid(0u32)
        .build()
        .expect("a device with every field set builds")
}

/// Device nodes created in the container's /dev.
pub fn default_devices() -> Vec<LinuxDevice> {
    vec![
        node("/dev/null", 1, 3),
        node("/dev/zero", 1, 5),
        node("/dev/full", 1, 7),
        node("/dev/random", 1, 8),
        node("/dev/urandom", 1, 9),
        node("/dev/tty", 5, 0),
    ]
}

/// Every device node of the host's /dev, for `--privileged` (as Docker does). Skips what
/// the runtime provides itself (pts, shm, mqueue, fd, console) and never follows symlinks.
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    let mut dirs = vec![dev.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                let name = entry.file_name();
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == dev.join("console") {
                continue;
            }
            let rdev = md.rdev();
            let Ok(d) = LinuxDeviceBuilder::default()
                .path(Path::new("/dev").join(path.strip_prefix(dev).unwrap_or(&path)))
                .typ(typ)
                .major(rustix::fs::major(rdev) as i64)
                .minor(rustix::fs::minor(rdev) as i64)
                .file_mode(md.mode() & 0o7777)
                .uid(md.uid())
                .gid(md.gid())
                .build()
            else {
                continue;
            };
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Resources {
        Resources::default()
    }

    /// A host with every limit but the ones named.
    fn caps_without(missing: &[&str]) -> CgroupCaps {
        let mut c = CgroupCaps::all();
        for m in missing {
            match *m {
                "memory" => c.memory_limit = false,
                "swap" => c.swap_limit = false,
                "reservation" => c.memory_reservation = false,
                "pids" => c.pids_limit = false,
                "shares" => c.cpu_shares = false,
                "cfs" => c.cpu_cfs = false,
                "cpuset" => c.cpuset = false,
                "weight" => c.blkio_weight = false,
                "throttle" => {
                    c.blkio_read_bps = false;
                    c.blkio_write_bps = false;
                    c.blkio_read_iops = false;
                    c.blkio_write_iops = false;
                }
                other => panic!("{other}"),
            }
        }
        c
    }

    fn everything() -> Resources {
        let t = |rate| {
            vec![ThrottleDevice {
                path: "/dev/null".into(),
                rate,
            }]
        };
        Resources {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            memory_reservation: Some(32 << 20),
            cpu_shares: Some(512),
            cpu_period: Some(50_000),
            cpu_quota: Some(25_000),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(100),
            blkio_weight: Some(300),
            device_read_bps: t(1),
            device_write_bps: t(2),
            device_read_iops: t(3),
            device_write_iops: t(4),
            ..Default::default()
        }
    }

    #[test]
    fn a_host_with_every_limit_keeps_every_option() {
        let (r, w) = fit_to_host(&everything(), &CgroupCaps::all()).unwrap();
        assert_eq!(r, everything());
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn what_the_host_lacks_is_discarded_with_docker_s_warning() {
        let caps = caps_without(&[
            "swap",
            "reservation",
            "pids",
            "shares",
            "cfs",
            "cpuset",
            "weight",
            "throttle",
        ]);
        let (r, w) = fit_to_host(&everything(), &caps).unwrap();
        assert_eq!(r.memory, Some(64 << 20), "the memory limit stays");
        assert_eq!(
            r.memory_swap,
            Some(-1),
            "Docker's -1: memory limited without swap"
        );
        assert_eq!(
            (r.memory_reservation, r.pids_limit, r.cpu_shares),
            (None, None, None)
        );
        assert_eq!(
            (r.cpu_period, r.cpu_quota, &r.cpuset_cpus),
            (None, None, &None)
        );
        assert_eq!(r.blkio_weight, None);
        assert!(r.device_read_bps.is_empty() && r.device_write_iops.is_empty());
        for expected in [
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.",
            "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.",
            "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded.",
            "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.",
            "Your kernel does not support CPU CFS scheduler. CPU period discarded.",
            "Your kernel does not support CPU CFS scheduler. CPU quota discarded.",
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.",
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
            "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded.",
            "Your kernel does not support IOPS Block I/O write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded.",
        ] {
            assert!(w.iter().any(|x| x == expected), "{expected}: {w:?}");
        }
        assert_eq!(w.len(), 12);
        // What is left builds, and no runtime file the host lacks is named.
        let mut o = to_oci(&r, vec![], 2).unwrap();
        restrict_to_host(&mut o, &caps);
        let m = o.memory().as_ref().unwrap();
        assert_eq!(
            (m.limit(), m.swap(), m.reservation()),
            (Some(64 << 20), None, None)
        );
        assert!(
            o.pids().is_none(),
            "no default pids limit without the controller"
        );
        assert!(o
            .block_io()
            .as_ref()
            .is_none_or(|b| b.weight().is_none() && b.throttle_read_bps_device().is_none()));
    }

    #[test]
    fn a_v2_io_weight_is_converted_by_berth_not_the_runtime() {
        let r = Resources {
            blkio_weight: Some(300),
            ..Default::default()
        };
        let mut caps = CgroupCaps::all();
        caps.io_weight_converted = true;
        let mut o = to_oci(&r, vec![], 2).unwrap();
        restrict_to_host(&mut o, &caps);
        assert!(o.block_io().as_ref().unwrap().weight().is_none());
        assert_eq!(o.unified().as_ref().unwrap()["io.weight"], "2930");
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        // BFQ (and v1) take the weight as is.
        let mut o = to_oci(&r, vec![], 2).unwrap();
        restrict_to_host(&mut o, &CgroupCaps::all());
        assert_eq!(o.block_io().as_ref().unwrap().weight(), Some(300));
        assert!(o.unified().is_none());
    }

    #[test]
    fn no_memory_controller_drops_memory_and_swap() {
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            ..Default::default()
        };
        let (r, w) = fit_to_host(&r, &caps_without(&["memory"])).unwrap();
        assert_eq!((r.memory, r.memory_swap), (None, None));
        assert_eq!(w, ["Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded."]);
        // The default swap (twice the memory) never reaches a host without accounting.
        let r = Resources {
            memory: Some(64 << 20),
            ..Default::default()
        };
        let (r, w) = fit_to_host(&r, &caps_without(&["swap"])).unwrap();
        assert!(w.is_empty());
        let mut o = to_oci(&r, vec![], 2).unwrap();
        assert_eq!(o.memory().as_ref().unwrap().swap(), Some(128 << 20));
        restrict_to_host(&mut o, &caps_without(&["swap"]));
        assert_eq!(o.memory().as_ref().unwrap().swap(), None);
    }

    #[test]
    fn refusals_name_the_option_and_the_rule() {
        let r = Resources {
            nano_cpus: Some(500_000_000),
            ..Default::default()
        };
        let e = fit_to_host(&r, &caps_without(&["cfs"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--cpus 0.5: NanoCPUs can not be set"), "{e}");
        let mut caps = CgroupCaps::all();
        caps.cpus = "0-1".into();
        caps.mems = "0".into();
        let cpus = |c: &str| Resources {
            cpuset_cpus: Some(c.into()),
            ..Default::default()
        };
        assert!(fit_to_host(&cpus("1"), &caps).is_ok());
        assert!(fit_to_host(&cpus("0-1"), &caps).is_ok());
        let e = fit_to_host(&cpus("0,2-3"), &caps).unwrap_err().to_string();
        assert!(
            e.ends_with("Requested CPUs are not available - requested 0,2-3, available: 0-1"),
            "{e}"
        );
        let mems = Resources {
            cpuset_mems: Some("1".into()),
            ..Default::default()
        };
        let e = fit_to_host(&mems, &caps).unwrap_err().to_string();
        assert!(
            e.contains("Requested memory nodes are not available"),
            "{e}"
        );
    }

    #[test]
    fn defaults_set_only_the_pids_limit() {
        let o = to_oci(&r(), vec![], 2).unwrap();
        assert_eq!(o.pids().unwrap().limit(), 2048);
        assert!(o.memory().is_none() && o.cpu().is_none() && o.block_io().is_none());
        let o = to_oci(
            &Resources {
                pids_limit: Some(0),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap();
        assert_eq!(o.pids().unwrap().limit(), -1);
        let o = to_oci(
            &Resources {
                pids_limit: Some(100),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap();
        assert_eq!(o.pids().unwrap().limit(), 100);
    }

    #[test]
    fn memory_and_swap_follow_docker() {
        let o = to_oci(
            &Resources {
                memory: Some(64 << 20),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap();
        let m = o.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), Some(128 << 20)));
        let o = to_oci(
            &Resources {
                memory: Some(64 << 20),
                memory_swap: Some(-1),
                memory_reservation: Some(32 << 20),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap();
        let m = o.memory().unwrap();
        assert_eq!((m.swap(), m.reservation()), (Some(-1), Some(32 << 20)));
        let e = to_oci(
            &Resources {
                memory: Some(1 << 20),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--memory") && e.contains("6MB"), "{e}");
        let e = to_oci(
            &Resources {
                memory_swap: Some(1 << 30),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs --memory"), "{e}");
        let e = to_oci(
            &Resources {
                memory: Some(64 << 20),
                memory_swap: Some(32 << 20),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at least --memory"), "{e}");
    }

    #[test]
    fn cpus_become_quota_over_100ms() {
        let o = to_oci(
            &Resources {
                nano_cpus: Some(1_500_000_000),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0-1".into()),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap();
        let c = o.cpu().clone().unwrap();
        assert_eq!(
            (c.quota(), c.period(), c.shares()),
            (Some(150_000), Some(100_000), Some(512))
        );
        assert_eq!(c.cpus().as_deref(), Some("0-1"));
        assert!(to_oci(
            &Resources {
                nano_cpus: Some(3_000_000_000),
                ..r()
            },
            vec![],
            2
        )
        .unwrap_err()
        .to_string()
        .contains("only 2 CPUs"));
        assert!(to_oci(
            &Resources {
                nano_cpus: Some(1_000_000),
                ..r()
            },
            vec![],
            2
        )
        .is_err());
        assert!(to_oci(
            &Resources {
                cpuset_cpus: Some("3-1".into()),
                ..r()
            },
            vec![],
            2
        )
        .unwrap_err()
        .to_string()
        .contains("--cpuset-cpus"));
        assert!(to_oci(
            &Resources {
                cpu_shares: Some(1),
                ..r()
            },
            vec![],
            2
        )
        .is_err());
    }

    #[test]
    fn cpu_period_and_quota_follow_docker() {
        let o = to_oci(
            &Resources {
                cpu_period: Some(50_000),
                cpu_quota: Some(25_000),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap();
        let c = o.cpu().clone().unwrap();
        assert_eq!((c.quota(), c.period()), (Some(25_000), Some(50_000)));
        let e = to_oci(
            &Resources {
                nano_cpus: Some(500_000_000),
                cpu_period: Some(50_000),
                ..r()
            },
            vec![],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Conflicting options"), "{e}");
        for (period, quota) in [(Some(999), None), (Some(2_000_000), None), (None, Some(10))] {
            assert!(to_oci(
                &Resources {
                    cpu_period: period,
                    cpu_quota: quota,
                    ..r()
                },
                vec![],
                2
            )
            .is_err());
        }
        assert_eq!(
            to_oci(
                &Resources {
                    cpu_quota: Some(-1),
                    ..r()
                },
                vec![],
                2
            )
            .unwrap()
            .cpu()
            .clone()
            .unwrap()
            .quota(),
            Some(-1)
        );
    }

    #[test]
    fn resources_round_trip_through_json() {
        let res = Resources {
            memory: Some(64 << 20),
            cpu_period: Some(50_000),
            device_read_bps: vec![ThrottleDevice {
                path: "/dev/vda".into(),
                rate: 1,
            }],
            ..r()
        };
        let j = serde_json::to_string(&res).unwrap();
        assert_eq!(serde_json::from_str::<Resources>(&j).unwrap(), res);
        // Records written before a field existed still read.
        assert_eq!(serde_json::from_str::<Resources>("{}").unwrap(), r());
    }

    #[test]
    fn blkio_devices_resolve_to_major_minor() {
        let dev = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()));
        if let Some(dev) = dev {
            let (maj, min) = block_device_numbers("--device-read-bps", &dev).unwrap();
            let o = to_oci(
                &Resources {
                    blkio_weight: Some(300),
                    device_read_bps: vec![ThrottleDevice {
                        path: dev.clone(),
                        rate: 1 << 20,
                    }],
                    device_write_iops: vec![ThrottleDevice {
                        path: dev.clone(),
                        rate: 100,
                    }],
                    ..r()
                },
                vec![],
                2,
            )
            .unwrap();
            let b = o.block_io().clone().unwrap();
            assert_eq!(b.weight(), Some(300));
            let t = &b.throttle_read_bps_device().clone().unwrap()[0];
            assert_eq!((t.major(), t.minor(), t.rate()), (maj, min, 1 << 20));
            assert_eq!(
                b.throttle_write_iops_device().clone().unwrap()[0].rate(),
                100
            );
        }
        let e = to_oci(
            &Resources {
                device_write_bps: vec![ThrottleDevice {
                    path: "/dev/null".into(),
                    rate: 1,
                }],
                ..r()
            },
            vec![],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--device-write-bps /dev/null: not a block device"),
            "{e}"
        );
        let e = to_oci(
            &Resources {
                device_read_bps: vec![ThrottleDevice {
                    path: "/dev/nope".into(),
                    rate: 1,
                }],
                ..r()
            },
            vec![],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/dev/nope") && e.contains("cannot stat"), "{e}");
        assert!(to_oci(
            &Resources {
                blkio_weight: Some(5),
                ..r()
            },
            vec![],
            2
        )
        .is_err());
    }

    #[test]
    fn device_rules_deny_all_then_allow_the_defaults() {
        let v = device_rules(false, false);
        assert!(
            !v[0].allow()
                && v[0].typ() == Some(LinuxDeviceType::A)
                && v[0].access().as_deref() == Some("rwm")
        );
        let allowed: Vec<(Option<i64>, Option<i64>)> =
            v.iter().skip(3).map(|r| (r.major(), r.minor())).collect();
        assert_eq!(
            allowed,
            [
                (Some(1), Some(3)),
                (Some(1), Some(5)),
                (Some(1), Some(7)),
                (Some(1), Some(8)),
                (Some(1), Some(9)),
                (Some(5), Some(0)),
                (Some(5), Some(2)),
                (Some(136), None)
            ]
        );
        assert!(
            !v.iter()
                .any(|r| r.major() == Some(10) && r.minor() == Some(200)),
            "no /dev/net/tun"
        );
        assert!(device_rules(false, true)
            .iter()
            .any(|r| r.major() == Some(5) && r.minor() == Some(1)));
        let p = device_rules(true, false);
        assert_eq!(p.len(), 1);
        assert!(p[0].allow());
    }

    #[test]
    fn host_devices_are_listed_for_privileged() {
        let devs = host_devices(Path::new("/dev"));
        assert!(devs
            .iter()
            .any(|d| d.path() == Path::new("/dev/null") && d.major() == 1 && d.minor() == 3));
        assert!(!devs.iter().any(|d| d.path().starts_with("/dev/pts")));
    }
}
