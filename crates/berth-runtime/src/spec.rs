//! The OCI runtime spec (`config.json`) of a container: image config + user options +
//! security defaults.
//!
//! [`generate`] is the one entry point. Every default is the production-safe choice and
//! each is loosened only by an explicit option (see `docs/SECURITY-DEFAULTS.md`):
//!
//! | default | loosened by |
//! | --- | --- |
//! | Podman's 11 capabilities (no NET_RAW, MKNOD, AUDIT_WRITE, SYS_ADMIN) | `cap_add`, `privileged` |
//! | `noNewPrivileges: true` | `security_opt: ["no-new-privileges=false"]` |
//! | moby's seccomp profile, clone3 → ENOSYS | `seccomp=unconfined`, `seccomp=FILE`, `privileged` |
//! | Docker's masked and read-only /proc and /sys paths | `systempaths=unconfined`, `privileged` |
//! | /sys and the cgroup tree read-only | `privileged` |
//! | device cgroup: deny all but null, zero, full, (u)random, tty, ptmx, pts | `privileged` |
//! | pids limit 2048 | `resources.pids_limit` |
//! | sensitive host paths refused as bind sources | the daemon's `allow_bind_sources` |
//! | private pid, ipc, uts, mount, network, cgroup namespaces | `network: Host` |
//!
//! No user namespace is created by default (as Docker and rootful Podman): container
//! root is host uid 0, contained by the capabilities, seccomp, no-new-privileges and the
//! masked paths above. User-namespace remapping is a later, explicit option.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_image::model::RunConfig;
use berth_types::ErrorKind;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::caps::{self, CapError, CapSet};
pub use crate::devices::DeviceMapping;
use crate::devices::{self, DeviceError};
use crate::host::{CgroupHost, CgroupMode, CgroupVersion};
pub use crate::mounts::MountSpec;
use crate::mounts::{self, MountError, SensitivePaths};
use crate::resources::{self as res, ResourceError};
pub use crate::resources::{Resources, ThrottleDevice};
use crate::seccomp::{self, DockerProfile, HostInfo, SeccompError};
use crate::user::{self, UserError};

/// `PATH` when neither the image nor the options set one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `RLIMIT_NOFILE` soft and hard limit unless `ulimits` name `nofile` (Docker's, via its
/// systemd unit), lowered to what the host lets the runtime grant
/// ([`HostInfo::max_nofile`]) so a daemon without `CAP_SYS_RESOURCE` still starts containers.
pub const DEFAULT_NOFILE: u64 = 1_048_576;
/// Where an init binary (`init`) is mounted, and what it runs (Docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";
/// umask of the container process (containerd's and Docker's).
pub const DEFAULT_UMASK: u32 = 0o022;

/// Paths of /proc and /sys hidden from the container (Docker's list).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// On cgroup v1, the container's `/sys/fs/cgroup` (a tmpfs holding read-only binds of
/// its own cgroups); added to the spec's read-only paths unless `--privileged`.
pub const CGROUP_V1_TMPFS: &str = "/sys/fs/cgroup";

/// Paths of /proc mounted read-only (Docker's list).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Sysctls set by default in a private network namespace (Docker's since 20.10): ping
/// without CAP_NET_RAW, and binding ports below 1024 without CAP_NET_BIND_SERVICE. Both are
/// per network namespace; options override them.
pub const DEFAULT_NET_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

/// Network namespace of the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// A private network namespace: a new one with only loopback, or the one the engine
    /// prepared at [`ContainerOptions::netns_path`] (bridge networks).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// A resource limit (`--ulimit nofile=1024:2048`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name: `nofile`, `nproc`, `core`, `memlock`, `stack`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Namespaces a container shares with the host (`--pid=host`, `--ipc=host`,
/// `--uts=host`, `--cgroupns=host`): refused unless the daemon's policy allows them
/// (the engine checks; the spec honours what it is given).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostNamespaces {
    #[serde(default)]
    pub pid: bool,
    #[serde(default)]
    pub ipc: bool,
    #[serde(default)]
    pub uts: bool,
    #[serde(default)]
    pub cgroup: bool,
    /// `--userns=host`: no user namespace although the daemon remaps (not a policy
    /// matter: it is the default without remapping; left out of [`Self::names`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
}

impl HostNamespaces {
    pub fn any(&self) -> bool {
        self.pid || self.ipc || self.uts || self.cgroup
    }

    /// Docker's option names of the namespaces shared (`pid`, `ipc`, `uts`, `cgroupns`).
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.pid, "pid"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
            (self.cgroup, "cgroupns"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }
}

/// Everything a `docker run` sets that affects the runtime spec.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// Namespaces shared with the host (policy checked by the engine).
    pub host_namespaces: HostNamespaces,
    /// Arguments after the image (`docker run IMAGE ARGS...`); replace the image's Cmd.
    pub args_override: Option<Vec<String>>,
    /// `--entrypoint`; a non-empty one also drops the image's Cmd, `Some(vec![])` clears
    /// the image's entrypoint.
    pub entrypoint_override: Option<Vec<String>>,
    /// `-e KEY=VALUE` (a bare `KEY` removes KEY).
    pub env: Vec<String>,
    /// `-w`, absolute.
    pub workdir: Option<String>,
    /// `-u user[:group]`; the image's User when `None`.
    pub user: Option<String>,
    /// `--group-add`: extra supplementary groups (names or gids).
    pub group_add: Vec<String>,
    /// Hostname inside the container (the engine's default is the short container id).
    pub hostname: String,
    /// `-t`.
    pub tty: bool,
    /// `--read-only`: the rootfs is mounted read-only.
    pub read_only: bool,
    /// `--privileged`: every capability and device, no seccomp, no masked paths, /sys rw.
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt`: `no-new-privileges[=true|false]`, `seccomp=unconfined`,
    /// `seccomp=/path/profile.json`, `systempaths=unconfined`, `apparmor=unconfined`,
    /// `label=disable` (the last two are no-ops: berth applies neither).
    pub security_opt: Vec<String>,
    /// HostConfig.MaskedPaths / ReadonlyPaths: `None` is Docker's defaults
    /// ([`MASKED_PATHS`], [`READONLY_PATHS`]); a list (the docker CLI sends `[]` for
    /// `--security-opt systempaths=unconfined`) replaces them. `--privileged` has none.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// User mounts, after the default ones; a user mount on a default destination
    /// (`/dev/shm`) replaces it.
    pub mounts: Vec<MountSpec>,
    /// What bind sources may expose of the host (see [`SensitivePaths`]): berth's own
    /// socket and state root are filled in by the engine, and the operator's allow-list.
    pub bind_policy: SensitivePaths,
    pub resources: Resources,
    pub network: NetworkMode,
    /// With a private network: join the namespace bind-mounted at this path (prepared by
    /// the engine before each start) instead of creating a new one.
    pub netns_path: Option<PathBuf>,
    /// `--init`: host path of an init binary (tini / docker-init), mounted read-only at
    /// [`INIT_PATH`] and run as PID 1 in front of the command.
    pub init: Option<PathBuf>,
    /// `--shm-size`, bytes; 64 MiB when `None`.
    pub shm_size: Option<u64>,
    /// `--sysctl`; only namespaced ones are accepted.
    pub sysctls: BTreeMap<String, String>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// cgroup path for the runtime (e.g. `/berth/<id>`); the runtime's default when `None`.
    pub cgroups_path: Option<PathBuf>,
    /// `--device`: host device nodes made in the container's /dev, each allowed in the
    /// device cgroup with its permissions (see [`crate::devices`]).
    pub devices: Vec<DeviceMapping>,
    /// `--device-cgroup-rule`: extra allow rules (`c 1:3 rwm`); ignored with `privileged`.
    pub device_cgroup_rules: Vec<String>,
    /// User-namespace remapping: the container's kept user namespace (joined by path)
    /// and its mapping (see [`crate::userns`]).
    pub userns: Option<(PathBuf, crate::userns::IdMap)>,
}

/// An error generating a spec. Messages name the object and the rule.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error("{what} entry {value:?}: {rule}")]
    SystemPath {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("working directory {value:?}: {rule}")]
    Workdir { value: String, rule: &'static str },
    #[error("environment variable {entry:?}: {rule}")]
    Env { entry: String, rule: &'static str },
    #[error("hostname {value:?}: {rule}")]
    Hostname { value: String, rule: &'static str },
    #[error("rootfs {path}: {rule}")]
    Rootfs { path: PathBuf, rule: &'static str },
    #[error("security option {opt:?}: {rule}")]
    SecurityOpt { opt: String, rule: &'static str },
    #[error("sysctl {key}: {rule}")]
    Sysctl { key: String, rule: String },
    #[error("ulimit {name}: {rule}")]
    Ulimit { name: String, rule: &'static str },
    #[error("init binary {path}: {source}")]
    Init {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Caps(#[from] CapError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("building the OCI spec ({what}): {message}")]
    Build { what: &'static str, message: String },
}

impl SpecError {
    /// The error class the API maps to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SpecError::Mount(MountError::Sensitive { .. }) => ErrorKind::Forbidden,
            SpecError::Mount(MountError::Source { .. }) => ErrorKind::NotFound,
            SpecError::User(UserError::Io { .. }) | SpecError::Build { .. } => ErrorKind::Internal,
            SpecError::Seccomp(SeccompError::Read { .. }) => ErrorKind::NotFound,
            _ => ErrorKind::InvalidArgument,
        }
    }
}

fn build_err(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> SpecError {
    move |e| SpecError::Build {
        what,
        message: e.to_string(),
    }
}

/// The container's command: Docker's combination of Entrypoint and Cmd.
///
/// - A non-empty `entrypoint_override` replaces the image's Entrypoint and drops the
///   image's Cmd: the command is the override + `args_override`.
/// - Otherwise non-empty `args_override` replaces the image's Cmd; an empty
///   `entrypoint_override` (`--entrypoint ""`) clears the image's Entrypoint.
pub fn process_args(image: &RunConfig, opts: &ContainerOptions) -> Result<Vec<String>, SpecError> {
    let user_args = opts.args_override.clone().unwrap_or_default();
    let (entrypoint, cmd) = match &opts.entrypoint_override {
        Some(ep) if !ep.is_empty() => (ep.clone(), user_args),
        ep => {
            let cmd = if user_args.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                user_args
            };
            let entrypoint = match ep {
                Some(empty) => empty.clone(),
                None => image.entrypoint.clone().unwrap_or_default(),
            };
            (entrypoint, cmd)
        }
    };
    let mut args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(SpecError::NoCommand);
    }
    if opts.init.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    Ok(args)
}

/// Replaces or appends `entry` (`KEY=VALUE`) by key; a bare `KEY` removes it.
fn merge_env_entry(env: &mut Vec<String>, entry: &str) -> Result<(), SpecError> {
    let err = |rule| SpecError::Env {
        entry: entry.to_string(),
        rule,
    };
    if entry.contains('\0') {
        return Err(err("contains a NUL byte"));
    }
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    if key.is_empty() {
        return Err(err("empty variable name"));
    }
    let pos = env
        .iter()
        .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
    match (pos, entry.contains('=')) {
        (Some(i), true) => env[i] = entry.to_string(),
        (None, true) => env.push(entry.to_string()),
        (Some(i), false) => {
            env.remove(i);
        }
        (None, false) => {}
    }
    Ok(())
}

/// The container's environment: `PATH` (default), `HOSTNAME`, `TERM=xterm` with a tty,
/// then the image's Env, then the options' env, each replacing earlier values by key.
pub fn process_env(image: &RunConfig, opts: &ContainerOptions) -> Result<Vec<String>, SpecError> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={}", opts.hostname),
    ];
    if opts.tty {
        env.push("TERM=xterm".to_string());
    }
    for e in image.env.iter().flatten() {
        // The image cannot remove a default with a bare KEY; only the user can.
        if e.contains('=') {
            merge_env_entry(&mut env, e)?;
        }
    }
    for e in &opts.env {
        merge_env_entry(&mut env, e)?;
    }
    Ok(env)
}

/// The working directory: options, then the image's WorkingDir, then `/`; absolute.
pub fn process_cwd(image: &RunConfig, opts: &ContainerOptions) -> Result<PathBuf, SpecError> {
    let raw = opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    mounts::clean_destination(&raw).map_err(|e| SpecError::Workdir {
        value: raw.clone(),
        rule: match e {
            MountError::Destination { rule, .. } => rule,
            _ => "invalid path",
        },
    })
}

/// Parsed `--security-opt` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    /// `systempaths=unconfined`: no masked or read-only paths.
    pub systempaths_unconfined: bool,
}

/// Which seccomp profile a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Default,
    Unconfined,
    File(PathBuf),
}

/// Parses `--security-opt` values (`key=value`, or Docker's legacy `key:value`).
pub fn parse_security_opts(list: &[String]) -> Result<SecurityOpts, SpecError> {
    let mut out = SecurityOpts {
        no_new_privileges: true,
        seccomp: SeccompChoice::Default,
        systempaths_unconfined: false,
    };
    for opt in list {
        let err = |rule| SpecError::SecurityOpt {
            opt: opt.clone(),
            rule,
        };
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
            ("no-new-privileges", Some(_)) => {
                return Err(err("expected no-new-privileges=true or =false"))
            }
            ("seccomp", Some("unconfined")) => out.seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some("builtin" | "default")) => out.seccomp = SeccompChoice::Default,
            ("seccomp", Some(path)) if path.starts_with('/') => {
                out.seccomp = SeccompChoice::File(PathBuf::from(path))
            }
            ("seccomp", _) => {
                return Err(err(
                    "expected seccomp=unconfined or seccomp=/absolute/path/profile.json",
                ))
            }
            ("systempaths", Some("unconfined")) => out.systempaths_unconfined = true,
            ("systempaths", _) => return Err(err("expected systempaths=unconfined")),
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            ("apparmor", _) => {
                return Err(err(
                    "berth applies no AppArmor profile; only apparmor=unconfined is accepted",
                ))
            }
            ("label", _) => {
                return Err(err(
                    "berth applies no SELinux labels; only label=disable is accepted",
                ))
            }
            _ => return Err(err("unknown security option")),
        }
    }
    Ok(out)
}

/// Checks a sysctl against Docker's rule: only namespaced ones (IPC and `fs.mqueue.*`,
/// `kernel.domainname`/`hostname` of the UTS namespace, `net.*` unless the network is
/// the host's).
fn check_sysctl(key: &str, network: NetworkMode) -> Result<(), SpecError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") || key == "kernel.domainname" {
        return Ok(());
    }
    if key.starts_with("net.") {
        if network == NetworkMode::Host {
            return Err(SpecError::Sysctl {
                key: key.into(),
                rule: "net.* sysctls would change the host's network namespace (network is host)"
                    .into(),
            });
        }
        return Ok(());
    }
    Err(SpecError::Sysctl {
        key: key.into(),
        rule: "not a namespaced sysctl; it would change the host kernel".into(),
    })
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType::*;
    Some(match name {
        "as" => RlimitAs,
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        _ => return None,
    })
}

fn rlimits(ulimits: &[Ulimit], max_nofile: u64) -> Result<Vec<PosixRlimit>, SpecError> {
    let mut out: Vec<(String, PosixRlimit)> = Vec::new();
    let mk = |typ, soft, hard| {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(build_err("rlimits"))
    };
    if !ulimits.iter().any(|u| u.name == "nofile") {
        out.push(("nofile".into(), {
            let n = DEFAULT_NOFILE.min(max_nofile);
            mk(PosixRlimitType::RlimitNofile, n, n)?
        }));
    }
    for u in ulimits {
        let err = |rule| SpecError::Ulimit {
            name: u.name.clone(),
            rule,
        };
        let typ = rlimit_type(&u.name)
            .ok_or_else(|| err("unknown limit (nofile, nproc, core, memlock, stack, ...)"))?;
        if u.soft > u.hard {
            return Err(err("soft limit is above the hard limit"));
        }
        if out.iter().any(|(n, _)| *n == u.name) {
            return Err(err("given more than once"));
        }
        out.push((u.name.clone(), mk(typ, u.soft, u.hard)?));
    }
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

fn check_hostname(h: &str) -> Result<(), SpecError> {
    let err = |rule| SpecError::Hostname {
        value: h.to_string(),
        rule,
    };
    if h.is_empty() {
        return Err(err("must not be empty"));
    }
    if h.len() > 64 {
        return Err(err("longer than 64 characters"));
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(err("only letters, digits, '-', '_' and '.' are allowed"));
    }
    Ok(())
}

fn namespaces(
    network: NetworkMode,
    netns_path: Option<&Path>,
    host: HostNamespaces,
    userns: Option<&Path>,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let mut types = Vec::new();
    if userns.is_some() {
        // First: the runtime joins it before it creates or joins the others, which are
        // then owned by it.
        types.push(LinuxNamespaceType::User);
    }
    if !host.pid {
        types.push(LinuxNamespaceType::Pid);
    }
    if !host.ipc {
        types.push(LinuxNamespaceType::Ipc);
    }
    if !host.uts {
        types.push(LinuxNamespaceType::Uts);
    }
    types.push(LinuxNamespaceType::Mount);
    if network == NetworkMode::None {
        types.push(LinuxNamespaceType::Network);
    }
    if !host.cgroup {
        types.push(LinuxNamespaceType::Cgroup);
    }
    types
        .into_iter()
        .map(|t| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let (LinuxNamespaceType::Network, Some(p)) = (t, netns_path) {
                b = b.path(p.to_path_buf());
            }
            if let (LinuxNamespaceType::User, Some(p)) = (t, userns) {
                b = b.path(p.to_path_buf());
            }
            b.build().map_err(build_err("namespaces"))
        })
        .collect()
}

/// Generates the spec for a container of an image whose config is `image`, with its root
/// filesystem at `rootfs` (absolute; /etc/passwd and /etc/group are read from it).
pub fn generate(
    image: &RunConfig,
    rootfs: &Path,
    opts: &ContainerOptions,
) -> Result<Spec, SpecError> {
    generate_for_host(
        image,
        rootfs,
        opts,
        &HostInfo::detect(),
        &CgroupHost::detect(),
    )
}

/// [`generate`] against a given host: its architecture and kernel for the seccomp
/// conditions, its cgroup limits for the resources (what it cannot enforce is left out,
/// see [`res::restrict_to_host`]).
pub fn generate_for_host(
    image: &RunConfig,
    rootfs: &Path,
    opts: &ContainerOptions,
    host: &HostInfo,
    cgroup: &CgroupHost,
) -> Result<Spec, SpecError> {
    if !rootfs.is_absolute() {
        return Err(SpecError::Rootfs {
            path: rootfs.to_path_buf(),
            rule: "must be an absolute path",
        });
    }
    if !rootfs.is_dir() {
        return Err(SpecError::Rootfs {
            path: rootfs.to_path_buf(),
            rule: "is not a directory",
        });
    }
    check_hostname(&opts.hostname)?;

    // Process.
    let args = process_args(image, opts)?;
    let env = process_env(image, opts)?;
    let cwd = process_cwd(image, opts)?;
    let user_spec = opts
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    let who = user::resolve(rootfs, &user_spec, &opts.group_add)?;
    let sec = parse_security_opts(&opts.security_opt)?;
    let capset: CapSet = caps::compute(opts.privileged, &opts.cap_add, &opts.cap_drop)?;
    let oci_caps = capset.to_oci();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(oci_caps.clone())
        .effective(oci_caps.clone())
        .permitted(oci_caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(build_err("capabilities"))?;
    let mut user_b = UserBuilder::default()
        .uid(who.uid)
        .gid(who.gid)
        .umask(DEFAULT_UMASK)
        .additional_gids(who.additional_gids.clone());
    if let Some(name) = &who.username {
        user_b = user_b.username(name.clone());
    }
    let mut process = ProcessBuilder::default()
        .terminal(opts.tty)
        .user(user_b.build().map_err(build_err("process.user"))?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(rlimits(&opts.ulimits, host.max_nofile)?)
        .build()
        .map_err(build_err("process"))?;
    // `noNewPrivileges` is written only when true: libcontainer 0.7 loads the seccomp
    // filter while it still holds CAP_SYS_ADMIN only when the field is absent, so an
    // explicit `false` made every `no-new-privileges=false` container fail to start.
    // (oci-spec's builder defaults it to true: set it either way.)
    process.set_no_new_privileges(sec.no_new_privileges.then_some(true));

    // Mounts: defaults, minus those a user mount replaces, then user mounts in order.
    let mut user_mounts: Vec<Mount> = Vec::new();
    if let Some(init) = &opts.init {
        let resolved = std::fs::canonicalize(init).map_err(|source| SpecError::Init {
            path: init.clone(),
            source,
        })?;
        user_mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(resolved)
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    "ro".to_string(),
                ])
                .build()
                .map_err(build_err("init mount"))?,
        );
    }
    for spec in &opts.mounts {
        let m = mounts::user_mount(spec, Some(&opts.bind_policy))?;
        if user_mounts
            .iter()
            .any(|u| u.destination() == m.destination())
        {
            return Err(MountError::Duplicate {
                dest: m.destination().display().to_string(),
            }
            .into());
        }
        user_mounts.push(m);
    }
    let mut defaults = mounts::default_mounts(
        opts.privileged,
        opts.shm_size.unwrap_or(mounts::DEFAULT_SHM_BYTES),
    );
    if opts.host_namespaces.ipc {
        // The host's IPC namespace: its /dev/shm too (as Docker's --ipc=host).
        if let Some(d) = defaults
            .iter_mut()
            .find(|d| d.destination() == Path::new("/dev/shm"))
        {
            *d = MountBuilder::default()
                .destination("/dev/shm")
                .typ("bind")
                .source("/dev/shm")
                .options(vec!["rbind".to_string(), "rprivate".to_string()])
                .build()
                .map_err(build_err("/dev/shm mount"))?;
        }
    }
    let mut cgroup_tmpfs = false;
    if let (CgroupVersion::V1, Some(path)) = (cgroup.version(), &opts.cgroups_path) {
        if cgroup.mode != CgroupMode::None {
            cgroup_tmpfs = !opts.privileged;
            let at = defaults
                .iter()
                .position(|d| d.destination() == Path::new("/sys/fs/cgroup"));
            if let Some(at) = at {
                defaults.splice(
                    at..=at,
                    mounts::cgroup_v1_mounts(&cgroup.v1_mounts, path, opts.privileged),
                );
            }
        }
    }
    let mut all_mounts: Vec<Mount> = defaults
        .into_iter()
        .filter(|d| {
            !user_mounts
                .iter()
                .any(|u| u.destination() == d.destination())
        })
        .collect();
    all_mounts.extend(user_mounts);

    // Seccomp.
    let seccomp = if opts.privileged {
        None
    } else {
        match &sec.seccomp {
            SeccompChoice::Unconfined => None,
            SeccompChoice::Default => Some(seccomp::convert(
                Path::new(seccomp::BUILTIN_PROFILE_NAME),
                &seccomp::default_profile(),
                &capset,
                host,
            )?),
            SeccompChoice::File(path) => Some(seccomp::convert(
                path,
                &DockerProfile::load(path)?,
                &capset,
                host,
            )?),
        }
    };

    // Sysctls.
    let mut sysctl: BTreeMap<String, String> = BTreeMap::new();
    if opts.network == NetworkMode::None {
        for (k, v) in DEFAULT_NET_SYSCTLS {
            sysctl.insert(k.into(), v.into());
        }
        if let Some((_, map)) = &opts.userns {
            // The kernel refuses a group range with ids the user namespace does not map.
            sysctl.insert(
                "net.ipv4.ping_group_range".into(),
                format!("0 {}", map.size.saturating_sub(1)),
            );
        }
    }
    for (k, v) in &opts.sysctls {
        check_sysctl(k, opts.network)?;
        sysctl.insert(k.clone(), v.clone());
    }

    // Resources and devices.
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rules = res::device_rules(opts.privileged, opts.tty);
    let devices = if opts.privileged {
        // Every host device is there and allowed; a mapping to another path adds its
        // node too (as Docker 23 does; its permissions and the rules change nothing).
        let (devs, _) = devices::apply(res::host_devices(Path::new("/dev")), &opts.devices, &[])?;
        devs
    } else if opts.userns.is_some() {
        // In a user namespace the runtime cannot mknod: it bind-mounts each node from
        // the host path the spec names, which for a mapped device is its path in the
        // container (`--device /dev/null:/dev/mynull` would look for a host
        // /dev/mynull). A mapped node is a bind mount of its host node instead (as
        // Podman does rootless); the device cgroup rules are the same.
        let applied = devices::apply_nodes(
            res::default_devices(),
            &opts.devices,
            &opts.device_cgroup_rules,
        )?;
        rules.extend(applied.allow);
        for n in applied.mapped {
            all_mounts.push(
                MountBuilder::default()
                    .destination(n.device.path().clone())
                    .typ("bind")
                    .source(n.host)
                    .options(vec![
                        "bind".to_string(),
                        "rprivate".to_string(),
                        "nosuid".to_string(),
                        "noexec".to_string(),
                    ])
                    .build()
                    .map_err(build_err("device mount"))?,
            );
        }
        applied.defaults
    } else {
        let (devs, allow) = devices::apply(
            res::default_devices(),
            &opts.devices,
            &opts.device_cgroup_rules,
        )?;
        rules.extend(allow);
        devs
    };
    let mut resources = res::to_oci(&opts.resources, rules, host_cpus)?;
    res::restrict_to_host(&mut resources, &cgroup.caps);

    let unconfined_paths = opts.privileged || sec.systempaths_unconfined;
    let system_paths = |given: &Option<Vec<String>>, defaults: &[&str], what: &'static str| {
        if unconfined_paths {
            return Ok(Vec::new());
        }
        match given {
            None => Ok(defaults.iter().map(|s| s.to_string()).collect()),
            Some(list) => list
                .iter()
                .map(|p| {
                    mounts::clean_destination(p)
                        .map(|c| c.to_string_lossy().into_owned())
                        .map_err(|_| SpecError::SystemPath {
                            what,
                            value: p.clone(),
                            rule: "must be an absolute path without NUL bytes",
                        })
                })
                .collect(),
        }
    };
    let masked = system_paths(&opts.masked_paths, &MASKED_PATHS, "MaskedPaths")?;
    let mut readonly = system_paths(&opts.readonly_paths, &READONLY_PATHS, "ReadonlyPaths")?;
    // v1: the tmpfs under the read-only cgroup binds is made read-only too, once they are
    // mounted (the runtime binds a read-only path onto itself recursively, then remounts
    // it read-only), as Docker's is: nothing can be created there. Not a system path the
    // user chose: kept whatever MaskedPaths/ReadonlyPaths say (inspect leaves it out).
    if cgroup_tmpfs && !readonly.iter().any(|p| p == CGROUP_V1_TMPFS) {
        readonly.push(CGROUP_V1_TMPFS.to_string());
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(
            opts.network,
            opts.netns_path.as_deref(),
            opts.host_namespaces,
            opts.userns.as_ref().map(|(p, _)| p.as_path()),
        )?)
        .resources(resources)
        .devices(devices)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .sysctl(
            sysctl
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    if let Some(s) = seccomp {
        linux = linux.seccomp(s);
    }
    if let Some(p) = &opts.cgroups_path {
        linux = linux.cgroups_path(p.clone());
    }

    let mut spec = SpecBuilder::default()
        .version(oci_spec::runtime::VERSION)
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(opts.read_only)
                .build()
                .map_err(build_err("root"))?,
        )
        .hostname(opts.hostname.clone())
        .process(process)
        .mounts(all_mounts)
        .linux(linux.build().map_err(build_err("linux"))?)
        .build()
        .map_err(build_err("spec"))?;
    if opts.host_namespaces.uts {
        // The host's UTS namespace: the runtime must not set its hostname.
        spec.set_hostname(None);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::fs;

    fn host() -> HostInfo {
        HostInfo {
            arch: "amd64".into(),
            kernel: (6, 1),
            max_nofile: 1 << 20,
        }
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        d
    }

    fn image() -> RunConfig {
        RunConfig {
            cmd: Some(vec!["/bin/sh".into()]),
            ..RunConfig::default()
        }
    }

    fn opts() -> ContainerOptions {
        ContainerOptions {
            hostname: "c0ffee".into(),
            ..ContainerOptions::default()
        }
    }

    fn gen(img: &RunConfig, o: &ContainerOptions) -> Result<Value, SpecError> {
        let r = rootfs();
        generate_for_host(img, r.path(), o, &host(), &CgroupHost::every_limit())
            .map(|s| serde_json::to_value(&s).unwrap())
    }

    fn sorted(v: &Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_spec_has_every_safe_default() {
        let j = gen(&image(), &opts()).unwrap();
        let p = &j["process"];
        assert_eq!(p["args"], json!(["/bin/sh"]));
        assert_eq!(p["cwd"], "/");
        assert_eq!(p["terminal"], false);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["user"]["uid"], 0);
        assert_eq!(p["user"]["gid"], 0);
        assert_eq!(p["user"]["umask"], 0o022);
        assert!(
            p.get("oomScoreAdj").is_none(),
            "oom_score_adj is left unchanged"
        );
        let expected_caps: Vec<String> = {
            let mut v: Vec<String> = caps::DEFAULT_CAPABILITIES
                .iter()
                .map(|c| format!("CAP_{c}"))
                .collect();
            v.sort();
            v
        };
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(sorted(&p["capabilities"][set]), expected_caps, "{set}");
        }
        assert_eq!(p["capabilities"]["inheritable"], json!([]));
        assert_eq!(p["capabilities"]["ambient"], json!([]));
        assert_eq!(
            p["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}])
        );
        assert_eq!(
            p["env"],
            json!([format!("PATH={DEFAULT_PATH}"), "HOSTNAME=c0ffee"])
        );

        assert_eq!(j["hostname"], "c0ffee");
        assert_eq!(j["root"]["readonly"], false);
        let l = &j["linux"];
        let ns: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network", "cgroup"]);
        assert_eq!(l["maskedPaths"], json!(MASKED_PATHS));
        assert_eq!(l["readonlyPaths"], json!(READONLY_PATHS));
        assert_eq!(l["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(l["seccomp"]["defaultErrnoRet"], 1);
        assert_eq!(
            l["seccomp"]["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(l["resources"]["pids"]["limit"], 2048);
        assert_eq!(
            l["resources"]["devices"][0],
            json!({"allow": false, "type": "a", "access": "rwm"})
        );
        assert_eq!(l["sysctl"]["net.ipv4.ping_group_range"], "0 2147483647");
        assert_eq!(l["sysctl"]["net.ipv4.ip_unprivileged_port_start"], "0");
        let devs: Vec<&str> = l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            devs,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        let mounts: Vec<&str> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounts,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ]
        );
        assert!(!j["mounts"][3]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("rw")));
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = RunConfig {
            entrypoint: Some(strs(&["/entry"])),
            cmd: Some(strs(&["--default"])),
            ..RunConfig::default()
        };
        let args = |o: ContainerOptions| process_args(&img, &o);
        assert_eq!(args(opts()).unwrap(), ["/entry", "--default"]);
        assert_eq!(
            args(ContainerOptions {
                args_override: Some(strs(&["x"])),
                ..opts()
            })
            .unwrap(),
            ["/entry", "x"]
        );
        assert_eq!(
            args(ContainerOptions {
                args_override: Some(vec![]),
                ..opts()
            })
            .unwrap(),
            ["/entry", "--default"]
        );
        // A new entrypoint drops the image's Cmd.
        assert_eq!(
            args(ContainerOptions {
                entrypoint_override: Some(strs(&["/bin/sh"])),
                ..opts()
            })
            .unwrap(),
            ["/bin/sh"]
        );
        assert_eq!(
            args(ContainerOptions {
                entrypoint_override: Some(strs(&["/bin/sh"])),
                args_override: Some(strs(&["-c", "true"])),
                ..opts()
            })
            .unwrap(),
            ["/bin/sh", "-c", "true"]
        );
        // --entrypoint "" clears the image's entrypoint and keeps its Cmd.
        assert_eq!(
            args(ContainerOptions {
                entrypoint_override: Some(vec![]),
                ..opts()
            })
            .unwrap(),
            ["--default"]
        );
        let e = process_args(&RunConfig::default(), &opts()).unwrap_err();
        assert!(e.to_string().starts_with("no command specified"), "{e}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = process_args(
            &img,
            &ContainerOptions {
                entrypoint_override: Some(vec![]),
                args_override: None,
                ..opts()
            },
        );
        assert!(e.is_ok());
        // --init runs the init binary in front.
        let init = ContainerOptions {
            init: Some("/bin/sh".into()),
            ..opts()
        };
        assert_eq!(
            args(init.clone()).unwrap(),
            [INIT_PATH, "--", "/entry", "--default"]
        );
        let j = gen(&img, &init).unwrap();
        let m = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == INIT_PATH)
            .unwrap();
        assert!(m["options"].as_array().unwrap().contains(&json!("ro")));
    }

    #[test]
    fn env_merges_by_key_with_defaults() {
        let img = RunConfig {
            env: Some(strs(&["PATH=/app/bin", "A=image", "B=image"])),
            cmd: Some(strs(&["x"])),
            ..RunConfig::default()
        };
        let o = ContainerOptions {
            env: strs(&["B=user", "C=user", "A"]),
            tty: true,
            ..opts()
        };
        assert_eq!(
            process_env(&img, &o).unwrap(),
            [
                "PATH=/app/bin",
                "HOSTNAME=c0ffee",
                "TERM=xterm",
                "B=user",
                "C=user"
            ]
        );
        let o = ContainerOptions {
            env: strs(&["TERM=dumb", "HOSTNAME=x"]),
            tty: true,
            ..opts()
        };
        assert_eq!(
            process_env(&RunConfig::default(), &o).unwrap(),
            [
                format!("PATH={DEFAULT_PATH}").as_str(),
                "HOSTNAME=x",
                "TERM=dumb"
            ]
        );
        let e = process_env(
            &img,
            &ContainerOptions {
                env: strs(&["=x"]),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("empty variable name"), "{e}");
    }

    #[test]
    fn workdir_comes_from_options_then_image_and_is_absolute() {
        let img = RunConfig {
            working_dir: Some("/srv/app".into()),
            cmd: Some(strs(&["x"])),
            ..RunConfig::default()
        };
        assert_eq!(
            process_cwd(&img, &opts()).unwrap(),
            PathBuf::from("/srv/app")
        );
        let o = ContainerOptions {
            workdir: Some("/tmp//w/".into()),
            ..opts()
        };
        assert_eq!(process_cwd(&img, &o).unwrap(), PathBuf::from("/tmp/w"));
        let o = ContainerOptions {
            workdir: Some("rel".into()),
            ..opts()
        };
        let e = process_cwd(&img, &o).unwrap_err().to_string();
        assert!(e.contains("\"rel\"") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn user_is_resolved_in_the_rootfs() {
        let j = gen(
            &image(),
            &ContainerOptions {
                user: Some("app".into()),
                ..opts()
            },
        )
        .unwrap();
        let u = &j["process"]["user"];
        assert_eq!(
            (u["uid"].as_u64(), u["gid"].as_u64()),
            (Some(1000), Some(1000))
        );
        assert_eq!(u["additionalGids"], json!([10]));
        assert_eq!(u["username"], "app");
        let img = RunConfig {
            user: Some("1000:10".into()),
            ..image()
        };
        let j = gen(&img, &opts()).unwrap();
        assert_eq!(j["process"]["user"]["gid"], 10);
        let e = gen(
            &image(),
            &ContainerOptions {
                user: Some("ghost".into()),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"ghost\"") && e.to_string().contains("etc/passwd"),
            "{e}"
        );
    }

    #[test]
    fn security_options_loosen_explicitly() {
        let j = gen(
            &image(),
            &ContainerOptions {
                security_opt: strs(&["no-new-privileges=false"]),
                ..opts()
            },
        )
        .unwrap();
        // Absent, not false: see the note in `generate` (libcontainer's reading).
        assert!(
            j["process"].get("noNewPrivileges").is_none(),
            "{}",
            j["process"]
        );
        let j = gen(
            &image(),
            &ContainerOptions {
                security_opt: strs(&["no-new-privileges:true"]),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(j["process"]["noNewPrivileges"], true);
        let j = gen(
            &image(),
            &ContainerOptions {
                security_opt: strs(&["seccomp=unconfined"]),
                ..opts()
            },
        )
        .unwrap();
        assert!(j["linux"].get("seccomp").is_none());
        let j = gen(
            &image(),
            &ContainerOptions {
                security_opt: strs(&["systempaths=unconfined"]),
                ..opts()
            },
        )
        .unwrap();
        assert!(j["linux"]
            .get("maskedPaths")
            .is_none_or(|v| v == &json!([])));
        for bad in [
            "seccomp=relative.json",
            "apparmor=docker-default",
            "no-new-privileges=maybe",
            "bogus=1",
        ] {
            let e = gen(
                &image(),
                &ContainerOptions {
                    security_opt: strs(&[bad]),
                    ..opts()
                },
            )
            .unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn seccomp_file_is_loaded_and_errors_name_it() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.json");
        fs::write(&good, r#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#).unwrap();
        let j = gen(
            &image(),
            &ContainerOptions {
                security_opt: vec![format!("seccomp={}", good.display())],
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_LOG");
        assert_eq!(
            j["linux"]["seccomp"]["syscalls"][0]["names"],
            json!(["chmod"])
        );
        let bad = d.path().join("bad.json");
        fs::write(
            &bad,
            r#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["chmod"], "action": 7}]}"#,
        )
        .unwrap();
        let e = gen(
            &image(),
            &ContainerOptions {
                security_opt: vec![format!("seccomp={}", bad.display())],
                ..opts()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("bad.json") && e.to_string().contains("syscalls[0].action"),
            "{e}"
        );
    }

    #[test]
    fn privileged_opens_everything() {
        let j = gen(
            &image(),
            &ContainerOptions {
                privileged: true,
                ..opts()
            },
        )
        .unwrap();
        let p = &j["process"];
        assert_eq!(
            p["capabilities"]["bounding"].as_array().unwrap().len(),
            crate::caps::CapSet::all_available().names().count()
        );
        assert!(j["linux"].get("seccomp").is_none());
        assert!(j["linux"]["maskedPaths"]
            .as_array()
            .is_none_or(|a| a.is_empty()));
        assert!(j["linux"]["readonlyPaths"]
            .as_array()
            .is_none_or(|a| a.is_empty()));
        assert_eq!(
            j["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
        assert!(j["mounts"][3]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("rw")));
        assert!(j["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/null"));
    }

    #[test]
    fn in_a_user_namespace_a_mapped_device_is_a_bind_of_the_hosts_node() {
        let j = gen(
            &image(),
            &ContainerOptions {
                devices: vec![DeviceMapping {
                    path_on_host: "/dev/zero".into(),
                    path_in_container: "/dev/myzero".into(),
                    cgroup_permissions: "r".into(),
                }],
                userns: Some((
                    "/run/berth-test-userns".into(),
                    crate::userns::IdMap {
                        uid: 100000,
                        gid: 100000,
                        size: 65536,
                    },
                )),
                ..opts()
            },
        )
        .unwrap();
        // Not a node the runtime would look for at the container's path on the host...
        assert!(!j["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/myzero"));
        // ...but a bind of the host's node, with the cgroup rule as without a namespace.
        let m = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/myzero")
            .cloned()
            .unwrap();
        assert_eq!(
            (m["source"].clone(), m["type"].clone()),
            (json!("/dev/zero"), json!("bind"))
        );
        assert!(!m["options"].as_array().unwrap().contains(&json!("nodev")));
        let rules = j["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules[rules.len() - 1],
            json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"})
        );
    }

    #[test]
    fn devices_and_cgroup_rules_reach_the_spec() {
        let devices = vec![DeviceMapping {
            path_on_host: "/dev/zero".into(),
            path_in_container: "/dev/myzero".into(),
            cgroup_permissions: "r".into(),
        }];
        let j = gen(
            &image(),
            &ContainerOptions {
                devices: devices.clone(),
                device_cgroup_rules: vec!["c 4000:* rw".into()],
                ..opts()
            },
        )
        .unwrap();
        let node = j["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == "/dev/myzero")
            .cloned()
            .unwrap();
        assert_eq!(
            (node["major"].clone(), node["minor"].clone()),
            (json!(1), json!(5))
        );
        let rules = j["linux"]["resources"]["devices"].as_array().unwrap();
        let n = rules.len();
        assert_eq!(
            rules[n - 2],
            json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"})
        );
        assert_eq!(
            rules[n - 1],
            json!({"allow": true, "type": "c", "major": 4000, "access": "rw"})
        );
        // A bad rule or a missing device fails the spec (the create) with Docker's words.
        let e = gen(
            &image(),
            &ContainerOptions {
                device_cgroup_rules: vec!["c 1:3".into()],
                ..opts()
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "invalid device cgroup rule format: 'c 1:3'");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        // Privileged: the renamed node is added to the host's; the rules stay "all".
        let j = gen(
            &image(),
            &ContainerOptions {
                privileged: true,
                devices,
                ..opts()
            },
        )
        .unwrap();
        assert!(j["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/myzero"));
        assert_eq!(
            j["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
    }

    #[test]
    fn capabilities_add_and_drop() {
        let j = gen(
            &image(),
            &ContainerOptions {
                cap_add: strs(&["net_admin"]),
                cap_drop: strs(&["CAP_CHOWN"]),
                ..opts()
            },
        )
        .unwrap();
        let eff = sorted(&j["process"]["capabilities"]["effective"]);
        assert!(
            eff.contains(&"CAP_NET_ADMIN".to_string()) && !eff.contains(&"CAP_CHOWN".to_string())
        );
        assert_eq!(eff, sorted(&j["process"]["capabilities"]["bounding"]));
        let e = gen(
            &image(),
            &ContainerOptions {
                cap_add: strs(&["CAP_WIZARD"]),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("CAP_WIZARD"), "{e}");
        // SYS_ADMIN also changes the seccomp rules (mount allowed, clone3 allowed).
        let j = gen(
            &image(),
            &ContainerOptions {
                cap_add: strs(&["SYS_ADMIN"]),
                ..opts()
            },
        )
        .unwrap();
        let rules = j["linux"]["seccomp"]["syscalls"].as_array().unwrap();
        assert!(rules
            .iter()
            .any(|r| r["names"].as_array().unwrap().contains(&json!("mount"))));
    }

    #[test]
    fn mounts_read_only_and_sensitive_binds() {
        let data = tempfile::tempdir().unwrap();
        let o = ContainerOptions {
            read_only: true,
            shm_size: Some(1 << 30),
            mounts: vec![
                MountSpec::Bind {
                    source: data.path().into(),
                    target: "/data".into(),
                    read_only: false,
                },
                MountSpec::Tmpfs {
                    target: "/run".into(),
                    size_bytes: None,
                    mode: None,
                    exec: false,
                },
            ],
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        assert_eq!(j["root"]["readonly"], true);
        let ms = j["mounts"].as_array().unwrap();
        assert_eq!(ms[ms.len() - 2]["destination"], "/data");
        assert_eq!(ms[ms.len() - 1]["destination"], "/run");
        assert!(ms.iter().any(|m| m["destination"] == "/dev/shm"
            && m["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=1073741824"))));
        // A user mount on /dev/shm replaces the default one.
        let o = ContainerOptions {
            mounts: vec![MountSpec::Tmpfs {
                target: "/dev/shm".into(),
                size_bytes: Some(1 << 20),
                mode: None,
                exec: false,
            }],
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        let shm: Vec<_> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["source"], "tmpfs");
        // Duplicate destinations.
        let dup = MountSpec::Tmpfs {
            target: "/x".into(),
            size_bytes: None,
            mode: None,
            exec: false,
        };
        let e = gen(
            &image(),
            &ContainerOptions {
                mounts: vec![dup.clone(), dup],
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("/x"), "{e}");
        // Sensitive sources: refused, Forbidden, allowed only explicitly.
        let etc = MountSpec::Bind {
            source: "/etc".into(),
            target: "/host-etc".into(),
            read_only: true,
        };
        let e = gen(
            &image(),
            &ContainerOptions {
                mounts: vec![etc.clone()],
                ..opts()
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert!(
            e.to_string().contains("/etc") && e.to_string().contains("credentials"),
            "{e}"
        );
        gen(
            &image(),
            &ContainerOptions {
                mounts: vec![etc],
                bind_policy: SensitivePaths {
                    allowed: vec!["/etc".into()],
                    ..Default::default()
                },
                ..opts()
            },
        )
        .unwrap();
        // berth's own state root, passed by the engine.
        let o = ContainerOptions {
            mounts: vec![MountSpec::Bind {
                source: data.path().into(),
                target: "/d".into(),
                read_only: true,
            }],
            bind_policy: SensitivePaths {
                engine_paths: vec![data.path().join("state")],
                ..Default::default()
            },
            ..opts()
        };
        let e = gen(&image(), &o).unwrap_err();
        assert!(
            e.to_string().contains("berth's own socket or state root"),
            "{e}"
        );
    }

    #[test]
    fn a_prepared_netns_is_joined_by_path() {
        let o = ContainerOptions {
            netns_path: Some(PathBuf::from("/var/lib/berth/netns/c0ffee")),
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        let net: Vec<&serde_json::Value> = j["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0]["path"], "/var/lib/berth/netns/c0ffee");
        assert!(j["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["type"] == "network" || n.get("path").is_none()));
    }

    #[test]
    fn host_network_shares_the_netns() {
        let o = ContainerOptions {
            network: NetworkMode::Host,
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        let ns: Vec<&str> = j["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "cgroup"]);
        assert!(j["linux"]["sysctl"]
            .as_object()
            .is_none_or(|m| m.is_empty()));
        let o = ContainerOptions {
            network: NetworkMode::Host,
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ..opts()
        };
        assert!(gen(&image(), &o)
            .unwrap_err()
            .to_string()
            .contains("net.ipv4.ip_forward"));
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        let o = ContainerOptions {
            sysctls: [
                ("kernel.shmmax".to_string(), "1024".to_string()),
                ("net.core.somaxconn".to_string(), "1024".to_string()),
            ]
            .into(),
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        assert_eq!(j["linux"]["sysctl"]["kernel.shmmax"], "1024");
        assert_eq!(j["linux"]["sysctl"]["net.core.somaxconn"], "1024");
        let o = ContainerOptions {
            sysctls: [("kernel.panic".to_string(), "1".to_string())].into(),
            ..opts()
        };
        let e = gen(&image(), &o).unwrap_err().to_string();
        assert!(
            e.contains("kernel.panic") && e.contains("namespaced"),
            "{e}"
        );
    }

    #[test]
    fn ulimits_replace_the_default_nofile() {
        let o = ContainerOptions {
            ulimits: vec![
                Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048,
                },
                Ulimit {
                    name: "nproc".into(),
                    soft: 10,
                    hard: 10,
                },
            ],
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        assert_eq!(
            j["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}, {"type": "RLIMIT_NPROC", "hard": 10, "soft": 10}])
        );
        let e = gen(
            &image(),
            &ContainerOptions {
                ulimits: vec![Ulimit {
                    name: "files".into(),
                    soft: 1,
                    hard: 1,
                }],
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("ulimit files"), "{e}");
        let e = gen(
            &image(),
            &ContainerOptions {
                ulimits: vec![Ulimit {
                    name: "core".into(),
                    soft: 2,
                    hard: 1,
                }],
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("soft limit"), "{e}");
        // A host that cannot grant 1048576 gets its own ceiling.
        let r = rootfs();
        let small = HostInfo {
            max_nofile: 20000,
            ..host()
        };
        let s = generate_for_host(
            &image(),
            r.path(),
            &opts(),
            &small,
            &CgroupHost::every_limit(),
        )
        .unwrap();
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["process"]["rlimits"][0]["soft"], 20000);
    }

    #[test]
    fn resources_and_cgroups_path_reach_the_spec() {
        let o = ContainerOptions {
            resources: Resources {
                memory: Some(256 << 20),
                nano_cpus: Some(500_000_000),
                pids_limit: Some(64),
                ..Resources::default()
            },
            cgroups_path: Some("/berth/abc".into()),
            ..opts()
        };
        let j = gen(&image(), &o).unwrap();
        let r = &j["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 256 << 20);
        assert_eq!(r["memory"]["swap"], 512 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["pids"]["limit"], 64);
        assert_eq!(j["linux"]["cgroupsPath"], "/berth/abc");
    }

    #[test]
    fn rootfs_and_hostname_are_checked() {
        let e = generate_for_host(
            &image(),
            Path::new("rel/rootfs"),
            &opts(),
            &host(),
            &CgroupHost::every_limit(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("rel/rootfs") && e.to_string().contains("absolute"),
            "{e}"
        );
        let e = gen(
            &image(),
            &ContainerOptions {
                hostname: String::new(),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("hostname"), "{e}");
        let e = gen(
            &image(),
            &ContainerOptions {
                hostname: "a b".into(),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"a b\""), "{e}");
    }
}
