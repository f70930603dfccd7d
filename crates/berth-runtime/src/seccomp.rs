//! Seccomp: the default profile and Docker-format profiles (`--security-opt seccomp=FILE`).
//!
//! Profiles use Docker's JSON format (the one of moby's `profiles/seccomp/default.json`):
//! `defaultAction`, `defaultErrnoRet`, `architectures` or `archMap`, `syscalls` with
//! `names` (or the old `name`), `action`, `errnoRet`, `args`, and `includes`/`excludes`
//! conditions on capabilities, architectures and kernel versions. A profile is turned into
//! an OCI `LinuxSeccomp` for one container by [`convert`], which evaluates those
//! conditions against the container's capability set and the host (architecture,
//! kernel), exactly as Docker does when it creates a container.
//!
//! The built-in default ([`default_profile`]) is moby's default profile, written here as a
//! Rust table: everything not listed fails with EPERM; namespace-creating, mount, module,
//! clock, reboot, ptrace-like, bpf and perf calls are allowed only when the container holds
//! the matching capability; `clone` may not create namespaces without `CAP_SYS_ADMIN`; and
//! `clone3` (whose flags live in memory a filter cannot inspect) fails with ENOSYS so libc
//! falls back to `clone`, instead of EPERM which glibc ≥ 2.34 treats as fatal.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscallBuilder,
};
use serde::Deserialize;

use crate::caps::CapSet;

/// `errnoRet` of the default profile's `clone3` rule: ENOSYS (38 on every architecture
/// Docker's profile targets, as in moby's profile).
pub const CLONE3_ERRNO: u32 = 38;
/// `defaultErrnoRet` of the default profile: EPERM.
pub const DEFAULT_ERRNO: u32 = 1;

/// What a profile's conditions are evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Architecture by Go's name, as profiles write it: `amd64`, `arm64`, `s390x`, ...
    pub arch: String,
    /// Kernel version (major, minor).
    pub kernel: (u32, u32),
    /// The highest `RLIMIT_NOFILE` the runtime (a child of this process) can grant:
    /// `fs.nr_open` with `CAP_SYS_RESOURCE`, else this process's hard limit.
    pub max_nofile: u64,
}

impl HostInfo {
    /// The machine berth runs on.
    pub fn detect() -> HostInfo {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "loongarch64" => "loong64",
            "mips64" => "mips64",
            other => other,
        }
        .to_string();
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy().into_owned();
        HostInfo {
            arch,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
            max_nofile: detect_max_nofile(),
        }
    }

    fn native_arch(&self) -> Option<Arch> {
        Some(match self.arch.as_str() {
            "386" => Arch::ScmpArchX86,
            "amd64" => Arch::ScmpArchX86_64,
            "arm" => Arch::ScmpArchArm,
            "arm64" => Arch::ScmpArchAarch64,
            "mips" => Arch::ScmpArchMips,
            "mips64" => Arch::ScmpArchMips64,
            "mipsle" => Arch::ScmpArchMipsel,
            "mips64le" => Arch::ScmpArchMipsel64,
            "ppc64" => Arch::ScmpArchPpc64,
            "ppc64le" => Arch::ScmpArchPpc64le,
            "riscv64" => Arch::ScmpArchRiscv64,
            "s390" => Arch::ScmpArchS390,
            "s390x" => Arch::ScmpArchS390x,
            "loong64" => Arch::ScmpArchLoongarch64,
            _ => return None,
        })
    }
}

fn detect_max_nofile() -> u64 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    if cap_eff & (1 << CAP_SYS_RESOURCE) != 0 {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(hard)
    } else {
        hard
    }
}

/// Parses the leading `major.minor` of a kernel release or a `minKernel` value.
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// An error reading or converting a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: field {field}: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("seccomp profile {path}: field {field}: {rule}")]
    Invalid {
        path: PathBuf,
        field: String,
        rule: String,
    },
}

/// A seccomp profile in Docker's JSON format.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerProfile {
    pub default_action: LinuxSeccompAction,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Option<Vec<Arch>>,
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    pub syscalls: Option<Vec<DockerSyscall>>,
    #[serde(default)]
    pub listener_path: Option<PathBuf>,
    #[serde(default)]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub flags: Option<Vec<LinuxSeccompFilterFlag>>,
}

/// One `archMap` entry: a native architecture and the ones it also runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchMap {
    pub architecture: Arch,
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule of a Docker-format profile.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerSyscall {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    pub action: LinuxSeccompAction,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<DockerArg>>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub includes: Option<Filter>,
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerArg {
    pub index: usize,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: LinuxSeccompOperator,
}

/// `includes` / `excludes` of a rule.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

impl DockerProfile {
    /// Parses a profile; errors name the file and the JSON path of the bad field.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<DockerProfile, SeccompError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            SeccompError::Parse {
                path: path.to_path_buf(),
                field: if field == "." {
                    "(top level)".to_string()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Reads and parses a profile file.
    pub fn load(path: &Path) -> Result<DockerProfile, SeccompError> {
        let bytes = std::fs::read(path).map_err(|source| SeccompError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        DockerProfile::parse(path, &bytes)
    }
}

/// The seccomp config as libcontainer 0.7 must be given it. The OCI spec's
/// `SCMP_CMP_MASKED_EQ` argument is runc's and crun's reading, libseccomp's order: `value`
/// is the mask, `valueTwo` the value the masked argument must equal (Docker's profile:
/// `clone` is allowed when `flags & CLONE_NAMESPACE_FLAGS == 0`). libcontainer 0.7 takes
/// them the other way round (`valueTwo` as the mask), which turns that rule into "any
/// flags": a container could make user and network namespaces through `clone`. Swapping
/// the two here, at the boundary to libcontainer, keeps `config.json` a true OCI spec.
pub fn for_libcontainer(seccomp: &LinuxSeccomp) -> LinuxSeccomp {
    let mut out = seccomp.clone();
    let Some(rules) = seccomp.syscalls() else {
        return out;
    };
    let rules = rules
        .iter()
        .map(|rule| {
            let mut rule = rule.clone();
            if let Some(args) = rule.args().clone() {
                let swapped = args
                    .iter()
                    .map(|a| {
                        if a.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
                            return Ok(*a);
                        }
                        LinuxSeccompArgBuilder::default()
                            .index(a.index())
                            .op(a.op())
                            .value(a.value_two().unwrap_or(0))
                            .value_two(a.value())
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    // Every field is set: the builder cannot fail.
                    .unwrap_or(args);
                rule.set_args(Some(swapped));
            }
            rule
        })
        .collect();
    out.set_syscalls(Some(rules));
    out
}

/// Turns a profile into the OCI seccomp config of a container holding `caps` on `host`.
/// `path` names the profile in errors.
pub fn convert(
    path: &Path,
    profile: &DockerProfile,
    caps: &CapSet,
    host: &HostInfo,
) -> Result<LinuxSeccomp, SeccompError> {
    let invalid = |field: String, rule: &str| SeccompError::Invalid {
        path: path.to_path_buf(),
        field,
        rule: rule.to_string(),
    };
    let mut arches: Vec<Arch> = Vec::new();
    match (&profile.architectures, &profile.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            return Err(invalid(
                "architectures".into(),
                "both architectures and archMap are set; use one of them",
            ))
        }
        (Some(a), _) if !a.is_empty() => arches.clone_from(a),
        (_, Some(m)) => {
            if let Some(native) = host.native_arch() {
                for entry in m.iter().filter(|e| e.architecture == native) {
                    arches.push(entry.architecture);
                    arches.extend(entry.sub_architectures.iter().flatten().copied());
                }
            }
        }
        _ => {}
    }

    let mut rules = Vec::new();
    for (i, call) in profile.syscalls.iter().flatten().enumerate() {
        let field = |f: &str| format!("syscalls[{i}].{f}");
        if !applies(call, caps, host, |f, r| invalid(field(f), r))? {
            continue;
        }
        let names = match (&call.name, &call.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(invalid(
                    field("name"),
                    "both name and names are set; use one of them",
                ))
            }
            (Some(n), _) => vec![n.clone()],
            (None, Some(n)) if !n.is_empty() => n.clone(),
            _ => {
                return Err(invalid(
                    field("names"),
                    "a rule needs at least one syscall name",
                ))
            }
        };
        let mut b = LinuxSyscallBuilder::default()
            .names(names)
            .action(call.action);
        if let Some(e) = call.errno_ret {
            if !matches!(
                call.action,
                LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
            ) {
                return Err(invalid(
                    field("errnoRet"),
                    "errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE",
                ));
            }
            b = b.errno_ret(e);
        }
        if let Some(args) = &call.args {
            let mut out = Vec::with_capacity(args.len());
            for (j, a) in args.iter().enumerate() {
                if a.index > 5 {
                    return Err(invalid(
                        format!("syscalls[{i}].args[{j}].index"),
                        "a syscall has 6 arguments (index 0 to 5)",
                    ));
                }
                let mut ab = LinuxSeccompArgBuilder::default()
                    .index(a.index)
                    .value(a.value)
                    .op(a.op);
                if a.value_two != 0 {
                    ab = ab.value_two(a.value_two);
                }
                out.push(
                    ab.build()
                        .map_err(|e| invalid(format!("syscalls[{i}].args[{j}]"), &e.to_string()))?,
                );
            }
            b = b.args(out);
        }
        rules.push(
            b.build()
                .map_err(|e| invalid(field("names"), &e.to_string()))?,
        );
    }

    let mut b = LinuxSeccompBuilder::default()
        .default_action(profile.default_action)
        .architectures(arches)
        .syscalls(rules);
    if let Some(e) = profile.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if let Some(f) = &profile.flags {
        b = b.flags(f.clone());
    }
    if let Some(p) = &profile.listener_path {
        b = b.listener_path(p.clone());
    }
    if let Some(m) = &profile.listener_metadata {
        b = b.listener_metadata(m.clone());
    }
    b.build()
        .map_err(|e| invalid("(top level)".into(), &e.to_string()))
}

/// Docker's evaluation of `includes` / `excludes`: excludes skip the rule when any
/// listed arch matches, any listed cap is held, or the kernel is at least minKernel;
/// includes require the arch to be listed, every cap to be held, and the kernel to be at
/// least minKernel.
fn applies(
    call: &DockerSyscall,
    caps: &CapSet,
    host: &HostInfo,
    invalid: impl Fn(&str, &str) -> SeccompError,
) -> Result<bool, SeccompError> {
    let held = |c: &String| {
        let up = c.to_ascii_uppercase();
        caps.contains(up.strip_prefix("CAP_").unwrap_or(&up))
    };
    let min_kernel = |f: &Filter, which: &str| -> Result<Option<(u32, u32)>, SeccompError> {
        f.min_kernel
            .as_deref()
            .map(|k| {
                parse_kernel(k).ok_or_else(|| {
                    invalid(
                        &format!("{which}.minKernel"),
                        "expected a kernel version like \"4.8\"",
                    )
                })
            })
            .transpose()
    };
    if let Some(ex) = &call.excludes {
        if ex.arches.iter().flatten().any(|a| *a == host.arch) {
            return Ok(false);
        }
        if ex.caps.iter().flatten().any(held) {
            return Ok(false);
        }
        if let Some(k) = min_kernel(ex, "excludes")? {
            if host.kernel >= k {
                return Ok(false);
            }
        }
    }
    if let Some(inc) = &call.includes {
        if let Some(arches) = &inc.arches {
            if !arches.is_empty() && !arches.contains(&host.arch) {
                return Ok(false);
            }
        }
        if !inc.caps.iter().flatten().all(held) {
            return Ok(false);
        }
        if let Some(k) = min_kernel(inc, "includes")? {
            if host.kernel < k {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn rule(names: &[&str]) -> DockerSyscall {
    DockerSyscall {
        names: Some(names.iter().map(|s| s.to_string()).collect()),
        action: LinuxSeccompAction::ScmpActAllow,
        ..DockerSyscall::default()
    }
}

fn strs(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

fn with_caps(mut r: DockerSyscall, caps: &[&str]) -> DockerSyscall {
    r.includes.get_or_insert_with(Filter::default).caps = strs(caps);
    r
}

fn with_arches(mut r: DockerSyscall, arches: &[&str]) -> DockerSyscall {
    r.includes.get_or_insert_with(Filter::default).arches = strs(arches);
    r
}

fn with_arg(
    mut r: DockerSyscall,
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
) -> DockerSyscall {
    r.args = Some(vec![DockerArg {
        index,
        value,
        value_two: 0,
        op,
    }]);
    r
}

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`: `clone` is allowed only when none of these is set.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `AF_VSOCK`: sockets of this family are refused (host/guest channel).
const AF_VSOCK: u64 = 40;

/// The syscalls every container may make, whatever its capabilities.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls allowed only with `CAP_SYS_ADMIN`.
const SYS_ADMIN_ONLY: &[&str] = &[
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
];

/// moby's default seccomp profile (`profiles/seccomp/default.json`), as data.
pub fn default_profile() -> DockerProfile {
    use LinuxSeccompOperator::{ScmpCmpEq, ScmpCmpMaskedEq, ScmpCmpNe};
    let mut syscalls = vec![
        rule(ALLOWED),
        {
            // moby also allows process_vm_readv/writev here (kernel >= 4.8); berth keeps
            // them to CAP_SYS_PTRACE (below): reading and writing another process's memory
            // is not something a default container needs (docs/SECURITY-DEFAULTS.md).
            let mut r = rule(&["ptrace"]);
            r.includes = Some(Filter {
                min_kernel: Some("4.8".into()),
                ..Filter::default()
            });
            r
        },
        with_arg(rule(&["socket"]), 0, AF_VSOCK, ScmpCmpNe),
    ];
    // personality(2): only the plain Linux personalities (PER_LINUX, PER_LINUX32,
    // UNAME26, UNAME26|PER_LINUX32) and the 0xffffffff query.
    for p in [0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(with_arg(rule(&["personality"]), 0, p, ScmpCmpEq));
    }
    syscalls.extend([
        with_arches(rule(&["sync_file_range2", "swapcontext"]), &["ppc64le"]),
        with_arches(
            rule(&[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ]),
            &["arm", "arm64"],
        ),
        with_arches(rule(&["arch_prctl"]), &["amd64", "x32"]),
        with_arches(rule(&["modify_ldt"]), &["amd64", "x32", "x86"]),
        with_arches(
            rule(&[
                "s390_pci_mmio_read",
                "s390_pci_mmio_write",
                "s390_runtime_instr",
            ]),
            &["s390", "s390x"],
        ),
        with_arches(rule(&["riscv_flush_icache"]), &["riscv64"]),
        // moby allows name_to_handle_at to all; berth pairs it with open_by_handle_at:
        // a file handle is of use only with CAP_DAC_READ_SEARCH, and it leaks the host's
        // mount and inode identities to a default container.
        with_caps(
            rule(&["name_to_handle_at", "open_by_handle_at"]),
            &["CAP_DAC_READ_SEARCH"],
        ),
        with_caps(rule(SYS_ADMIN_ONLY), &["CAP_SYS_ADMIN"]),
        {
            let mut r = with_arg(rule(&["clone"]), 0, CLONE_NAMESPACE_FLAGS, ScmpCmpMaskedEq);
            r.excludes = Some(Filter {
                caps: strs(&["CAP_SYS_ADMIN"]),
                arches: strs(&["s390", "s390x"]),
                min_kernel: None,
            });
            r
        },
        {
            let mut r = with_arg(rule(&["clone"]), 1, CLONE_NAMESPACE_FLAGS, ScmpCmpMaskedEq);
            r.comment = Some("s390 parameter ordering for clone is different".into());
            r.includes = Some(Filter {
                arches: strs(&["s390", "s390x"]),
                ..Filter::default()
            });
            r.excludes = Some(Filter {
                caps: strs(&["CAP_SYS_ADMIN"]),
                ..Filter::default()
            });
            r
        },
        DockerSyscall {
            names: strs(&["clone3"]),
            action: LinuxSeccompAction::ScmpActErrno,
            errno_ret: Some(CLONE3_ERRNO),
            excludes: Some(Filter {
                caps: strs(&["CAP_SYS_ADMIN"]),
                ..Filter::default()
            }),
            ..DockerSyscall::default()
        },
        with_caps(rule(&["reboot"]), &["CAP_SYS_BOOT"]),
        with_caps(rule(&["chroot"]), &["CAP_SYS_CHROOT"]),
        with_caps(
            rule(&["delete_module", "init_module", "finit_module"]),
            &["CAP_SYS_MODULE"],
        ),
        with_caps(rule(&["acct"]), &["CAP_SYS_PACCT"]),
        with_caps(
            rule(&[
                "kcmp",
                "pidfd_getfd",
                "process_madvise",
                "process_vm_readv",
                "process_vm_writev",
                "ptrace",
            ]),
            &["CAP_SYS_PTRACE"],
        ),
        with_caps(rule(&["iopl", "ioperm"]), &["CAP_SYS_RAWIO"]),
        with_caps(
            rule(&["settimeofday", "stime", "clock_settime", "clock_settime64"]),
            &["CAP_SYS_TIME"],
        ),
        with_caps(rule(&["vhangup"]), &["CAP_SYS_TTY_CONFIG"]),
        with_caps(
            rule(&[
                "get_mempolicy",
                "mbind",
                "set_mempolicy",
                "set_mempolicy_home_node",
            ]),
            &["CAP_SYS_NICE"],
        ),
        with_caps(rule(&["syslog"]), &["CAP_SYSLOG"]),
        with_caps(rule(&["bpf"]), &["CAP_BPF"]),
        with_caps(rule(&["perf_event_open"]), &["CAP_PERFMON"]),
    ]);
    let arch_map = |a: Arch, subs: &[Arch]| ArchMap {
        architecture: a,
        sub_architectures: if subs.is_empty() {
            None
        } else {
            Some(subs.to_vec())
        },
    };
    DockerProfile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(DEFAULT_ERRNO),
        architectures: None,
        arch_map: Some(vec![
            arch_map(
                Arch::ScmpArchX86_64,
                &[Arch::ScmpArchX86, Arch::ScmpArchX32],
            ),
            arch_map(Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
            arch_map(
                Arch::ScmpArchMips64,
                &[Arch::ScmpArchMips, Arch::ScmpArchMips64n32],
            ),
            arch_map(
                Arch::ScmpArchMips64n32,
                &[Arch::ScmpArchMips, Arch::ScmpArchMips64],
            ),
            arch_map(
                Arch::ScmpArchMipsel64,
                &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64n32],
            ),
            arch_map(
                Arch::ScmpArchMipsel64n32,
                &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64],
            ),
            arch_map(Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
            arch_map(Arch::ScmpArchRiscv64, &[]),
        ]),
        syscalls: Some(syscalls),
        listener_path: None,
        listener_metadata: None,
        flags: None,
    }
}

/// The name errors use for the built-in profile.
pub const BUILTIN_PROFILE_NAME: &str = "<builtin default>";

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSyscall;

    fn amd64() -> HostInfo {
        HostInfo {
            arch: "amd64".into(),
            kernel: (6, 1),
            max_nofile: 1 << 20,
        }
    }

    fn default_for(caps: &CapSet, host: &HostInfo) -> LinuxSeccomp {
        convert(
            Path::new(BUILTIN_PROFILE_NAME),
            &default_profile(),
            caps,
            host,
        )
        .unwrap()
    }

    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_denies_with_eperm_and_maps_x86_arches() {
        let s = default_for(&CapSet::default_set(), &amd64());
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        let arm = HostInfo {
            arch: "arm64".into(),
            kernel: (6, 1),
            max_nofile: 1 << 20,
        };
        let s = default_for(&CapSet::default_set(), &arm);
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert!(rules_for(&s, "arch_prctl").is_empty());
        assert_eq!(rules_for(&s, "cacheflush").len(), 1);
    }

    #[test]
    fn clone3_gets_enosys_without_sys_admin() {
        let s = default_for(&CapSet::default_set(), &amd64());
        let r = rules_for(&s, "clone3");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(r[0].errno_ret(), Some(38));
        let json = serde_json::to_value(&s).unwrap();
        let clone3 = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"] == serde_json::json!(["clone3"]))
            .unwrap();
        assert_eq!(clone3["errnoRet"], 38);
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn masked_eq_is_handed_to_libcontainer_with_the_mask_in_value_two() {
        let s = default_for(&CapSet::default_set(), &amd64());
        let lc = for_libcontainer(&s);
        let args = rules_for(&lc, "clone")[0].args().clone().unwrap();
        assert_eq!(args[0].value(), 0);
        assert_eq!(args[0].value_two(), Some(CLONE_NAMESPACE_FLAGS));
        // Other comparisons are left as they are (socket's family != AF_VSOCK).
        let sock = rules_for(&lc, "socket")[0].args().clone().unwrap();
        assert_eq!(sock[0].value(), AF_VSOCK);
        assert_eq!(sock[0].op(), LinuxSeccompOperator::ScmpCmpNe);
    }

    #[test]
    fn clone_is_filtered_on_namespace_flags_without_sys_admin() {
        let s = default_for(&CapSet::default_set(), &amd64());
        let r = rules_for(&s, "clone");
        assert_eq!(r.len(), 1);
        let args = r[0].args().clone().unwrap();
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].value(), CLONE_NAMESPACE_FLAGS);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        for gated in [
            "mount",
            "unshare",
            "setns",
            "umount2",
            "bpf",
            "reboot",
            "ptrace_x",
            "kexec_load",
            "init_module",
            "open_by_handle_at",
            "name_to_handle_at",
            "process_vm_readv",
            "process_vm_writev",
        ] {
            assert!(
                rules_for(&s, gated).is_empty(),
                "{gated} must not be allowed by default"
            );
        }
        // ptrace is allowed on kernels >= 4.8 (it cannot escape seccomp there).
        assert_eq!(rules_for(&s, "ptrace").len(), 1);
        let old = HostInfo {
            arch: "amd64".into(),
            kernel: (4, 4),
            max_nofile: 1 << 20,
        };
        assert!(rules_for(&default_for(&CapSet::default_set(), &old), "ptrace").is_empty());
    }

    #[test]
    fn sys_admin_unlocks_mount_and_plain_clone3() {
        let caps = crate::caps::compute(false, &["SYS_ADMIN".into()], &[]).unwrap();
        let s = default_for(&caps, &amd64());
        let clone3 = rules_for(&s, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActAllow);
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_none());
        assert_eq!(rules_for(&s, "mount").len(), 1);
    }

    #[test]
    fn socket_refuses_vsock_and_personality_is_limited() {
        let s = default_for(&CapSet::default_set(), &amd64());
        let sock = rules_for(&s, "socket");
        assert_eq!(sock[0].args().clone().unwrap()[0].value(), 40);
        assert_eq!(
            sock[0].args().clone().unwrap()[0].op(),
            LinuxSeccompOperator::ScmpCmpNe
        );
        assert_eq!(rules_for(&s, "personality").len(), 5);
    }

    #[test]
    fn docker_file_is_converted() {
        let json = br#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "chmod", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 1, "value": 448, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_BOOT"]}},
                {"names": ["uname"], "action": "SCMP_ACT_LOG", "comment": "x", "excludes": {"arches": ["arm64"]}}
            ]
        }"#;
        let p = DockerProfile::parse(Path::new("/p.json"), json).unwrap();
        let s = convert(Path::new("/p.json"), &p, &CapSet::default_set(), &amd64()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64]
        );
        let names: Vec<_> = s
            .syscalls()
            .iter()
            .flatten()
            .map(|r| r.names()[0].clone())
            .collect();
        assert_eq!(names, vec!["chmod", "mkdir", "uname"]);
        assert_eq!(rules_for(&s, "chmod")[0].errno_ret(), Some(13));
        let a = rules_for(&s, "mkdir")[0].args().clone().unwrap();
        assert_eq!((a[0].index(), a[0].value()), (1, 448));
    }

    #[test]
    fn parse_errors_name_the_file_and_field() {
        let bad = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_NOPE"}]}"#;
        let e = DockerProfile::parse(Path::new("/etc/p.json"), bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/p.json") && e.contains("syscalls[0].action"),
            "{e}"
        );
        let bad = br#"{"defaultAction": "SCMP_ACT_ALLOW", "sycalls": []}"#;
        let e = DockerProfile::parse(Path::new("/etc/p.json"), bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sycalls"), "{e}");
        let bad = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#;
        let p = DockerProfile::parse(Path::new("/etc/p.json"), bad).unwrap();
        let e = convert(
            Path::new("/etc/p.json"),
            &p,
            &CapSet::default_set(),
            &amd64(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/p.json") && e.contains("syscalls[0].args[0].index"),
            "{e}"
        );
        let bad = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#;
        let p = DockerProfile::parse(Path::new("/etc/p.json"), bad).unwrap();
        let e = convert(
            Path::new("/etc/p.json"),
            &p,
            &CapSet::default_set(),
            &amd64(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("syscalls[0].name"), "{e}");
        let e = DockerProfile::load(Path::new("/nonexistent/p.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/p.json"), "{e}");
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("x"), None);
        assert!(HostInfo::detect().kernel >= (3, 0));
    }
}
