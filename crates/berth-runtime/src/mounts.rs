//! Mounts: Docker's default set, user mounts (bind, volume, tmpfs), the refusal of
//! sensitive host paths as bind sources, and resolving destinations inside the rootfs.
//!
//! **Destinations** are container paths. The spec keeps them as given (absolute, cleaned
//! lexically, `..` refused). libcontainer 0.7 does not resolve a destination that is a
//! symlink in the image (`/data -> /etc`, `/data -> ../../..`) inside the rootfs (the
//! mount fails, or misses its target), so the engine resolves user mount destinations
//! with [`resolve_in_rootfs`] at create, creates them inside the rootfs, and hands the
//! runtime symlink-free targets (`berth_engine::volumes::prepare_target`); it checks again
//! at every start that they still resolve there.
//!
//! **Sources** of bind and volume mounts are host paths. They are canonicalized (host
//! symlinks resolved) and refused when they hit a sensitive path, unless the caller sets
//! `allow_sensitive_binds`; see [`SensitivePaths`].

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};
use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;

/// Size of `/dev/shm` unless `shm_size` is given: Docker's 64 MiB.
pub const DEFAULT_SHM_BYTES: u64 = 64 << 20;
/// Size of a tmpfs mount without an explicit size: Docker's `--tmpfs` 64 MiB.
pub const DEFAULT_TMPFS_BYTES: u64 = 64 << 20;

/// A mount requested by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// `-v /host:/ctr[:ro]`, `--mount type=bind`.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A named or anonymous volume; `source` is its directory on the host, resolved by the
    /// caller (under berth's state root).
    Volume {
        name: String,
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// `--tmpfs /ctr[:size=...,mode=...]`, `--mount type=tmpfs`. Mounted `nosuid,nodev`,
    /// and `noexec` unless `exec` is set.
    Tmpfs {
        target: String,
        size_bytes: Option<u64>,
        mode: Option<u32>,
        exec: bool,
    },
}

impl MountSpec {
    pub fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. }
            | MountSpec::Volume { target, .. }
            | MountSpec::Tmpfs { target, .. } => target,
        }
    }
}

/// An error in a mount.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount destination {dest:?}: {rule}")]
    Destination { dest: String, rule: &'static str },
    #[error("mount destination {dest}: used by more than one mount")]
    Duplicate { dest: String },
    #[error("bind source {source_path}: cannot resolve on the host: {error}")]
    Source {
        source_path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("bind source {source_path} (resolves to {resolved}): refused, {rule}; the daemon's allow_bind_sources lists host paths an operator allows")]
    Sensitive {
        source_path: PathBuf,
        resolved: PathBuf,
        rule: String,
    },
    #[error("resolving {dest} inside rootfs {rootfs}: {error}")]
    Resolve {
        rootfs: PathBuf,
        dest: String,
        #[source]
        error: std::io::Error,
    },
}

/// Cleans a container path: must be absolute; `.` and repeated slashes dropped; `..`
/// refused (it would mean something different once symlinks are resolved).
pub fn clean_destination(dest: &str) -> Result<PathBuf, MountError> {
    let err = |rule| MountError::Destination {
        dest: dest.to_string(),
        rule,
    };
    if !dest.starts_with('/') {
        return Err(err("must be an absolute path"));
    }
    if dest.contains('\0') {
        return Err(err("contains a NUL byte"));
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(dest).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(err("must not contain '..'")),
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return Err(err("must be an absolute path")),
        }
    }
    Ok(out)
}

fn m(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("a mount with every field set builds")
}

/// The container's view of a cgroup v1 host (legacy or hybrid) at `/sys/fs/cgroup`, in
/// place of a `cgroup` mount: a tmpfs, and for each controller hierarchy of the host a
/// bind of the container's own cgroup (`<mount>/<cgroups_path>`; hierarchies the runtime
/// puts no container in, rdma and misc, are left out), read-only unless
/// `rw`, at the hierarchy's name; a co-mounted one (`cpu,cpuacct`) appears under each
/// controller's name too, as the symlinks systemd makes on the host.
///
/// youki's libcontainer 0.7 mounts v1 hierarchies in a cgroup namespace with the new
/// mount API, which takes `cpu,cpuacct` as one option and fails: every container start
/// on a host that co-mounts controllers (Debian and Ubuntu with systemd in hybrid mode)
/// would fail. The container's own cgroup directories exist when its mounts are made
/// (the runtime creates them first).
pub fn cgroup_v1_mounts(
    hierarchies: &std::collections::BTreeMap<String, PathBuf>,
    cgroups_path: &Path,
    rw: bool,
) -> Vec<Mount> {
    let mut out = vec![m(
        "/sys/fs/cgroup",
        "tmpfs",
        "tmpfs",
        &["nosuid", "noexec", "nodev", "mode=755", "size=64k"],
    )];
    // The controllers the runtime (libcgroups 0.7) puts a container in; another
    // hierarchy (rdma, misc) has no cgroup of the container to show.
    const RUNTIME_CONTROLLERS: &[&str] = &[
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "hugetlb",
        "memory",
        "pids",
        "perf_event",
        "blkio",
        "net_prio",
        "net_cls",
        "freezer",
    ];
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let mut seen: Vec<&PathBuf> = Vec::new();
    for (controller, mount) in hierarchies {
        if seen.contains(&mount) || !RUNTIME_CONTROLLERS.contains(&controller.as_str()) {
            continue;
        }
        seen.push(mount);
        let Some(name) = mount.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut names = vec![name];
        if name.contains(',') {
            names.extend(name.split(','));
        }
        for n in names {
            out.push(
                MountBuilder::default()
                    .destination(Path::new("/sys/fs/cgroup").join(n))
                    .typ("bind")
                    .source(mount.join(rel))
                    .options(
                        [
                            "rbind",
                            "nosuid",
                            "noexec",
                            "nodev",
                            if rw { "rw" } else { "ro" },
                        ]
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>(),
                    )
                    .build()
                    .expect("a mount with every field set builds"),
            );
        }
    }
    out
}

/// Docker's default mounts. `privileged` mounts /sys and the cgroup tree read-write.
pub fn default_mounts(privileged: bool, shm_bytes: u64) -> Vec<Mount> {
    let sys_rw = if privileged { "rw" } else { "ro" };
    vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_rw],
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_rw],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "mode=1777",
                &format!("size={shm_bytes}"),
            ],
        ),
    ]
}

/// What a bind mount may not expose of the host, unless the operator allows the path.
///
/// The rules are about what the path *is*, checked on the source with every host
/// symlink resolved, for files and directories alike:
/// - **the host's root**: `/`;
/// - **kernel interfaces and devices**: `/proc`, `/sys`, `/dev` and everything below;
///   a device node anywhere (devices are given with `--device`);
/// - **the host's identity and credentials**: `/etc`, `/root`, `/boot` and everything
///   below (`/etc/shadow` as well as `/etc`), except public files a container may read:
///   [`PUBLIC_READ_ONLY`], mounted read-only;
/// - **host system directories** (`/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64`):
///   read-only only (written, they change what the host runs as root);
/// - **where services keep their sockets and data**: `/run`, `/var/run`, `/var`,
///   `/var/lib` themselves;
/// - **container engines' control**: berth's own API socket and state root
///   ([`SensitivePaths::engine_paths`]); the sockets and state directories of other
///   engines that exist on this host ([`FOREIGN_ENGINE_PATHS`]) — each exactly, below
///   it, or any directory above it (which would expose it too). Volumes below berth's
///   state root are fine (`volumes/NAME/_data`).
///
/// The operator's one override is an allow-list of host paths
/// ([`SensitivePaths::allowed`], the daemon's `allow_bind_sources`): a source at or
/// below an allowed path is not checked.
#[derive(Debug, Clone, Default)]
pub struct SensitivePaths {
    /// Sockets and roots that belong to this engine: its API socket, its state root.
    pub engine_paths: Vec<PathBuf>,
    /// Host paths the operator allows as bind sources whatever the rules say.
    pub allowed: Vec<PathBuf>,
}

/// Files below `/etc` that hold nothing secret and that containers commonly read (time
/// zone, CA certificates): allowed as read-only bind sources.
pub const PUBLIC_READ_ONLY: [&str; 6] = [
    "/etc/timezone",
    "/etc/localtime",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/pki/ca-trust/extracted",
    "/etc/pki/tls/certs",
];
const HOST_ROOT_SUBTREES: [&str; 6] = ["/proc", "/sys", "/dev", "/etc", "/root", "/boot"];
const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];
const SERVICE_DIRS: [&str; 4] = ["/run", "/var/run", "/var", "/var/lib"];
/// Other container engines' API sockets and state: refused where they exist.
pub const FOREIGN_ENGINE_PATHS: [&str; 14] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/run/crio/crio.sock",
    "/run/buildkit/buildkitd.sock",
    "/run/docker",
    "/run/containerd",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/var/lib/kubelet",
    "/var/lib/berth",
];

fn canonical_or_clean(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl SensitivePaths {
    /// Checks the source of a bind/volume mount mounted `read_only` or not; returns the
    /// canonical host path.
    pub fn check(&self, source: &Path, read_only: bool) -> Result<PathBuf, MountError> {
        let resolved = std::fs::canonicalize(source).map_err(|error| MountError::Source {
            source_path: source.to_path_buf(),
            error,
        })?;
        let kind = std::fs::symlink_metadata(&resolved)
            .ok()
            .map(|m| m.file_type());
        self.check_resolved(source, &resolved, read_only, kind)?;
        Ok(resolved)
    }

    /// The rules on a path with host symlinks resolved (`kind`: its file type, `None`
    /// for a path that does not exist yet, a bind source `-v` will create).
    pub fn check_resolved(
        &self,
        source: &Path,
        resolved: &Path,
        read_only: bool,
        kind: Option<std::fs::FileType>,
    ) -> Result<(), MountError> {
        use std::os::unix::fs::FileTypeExt;
        if self
            .allowed
            .iter()
            .any(|a| resolved.starts_with(canonical_or_clean(a)) || resolved.starts_with(a))
        {
            return Ok(());
        }
        let refuse = |rule: String| MountError::Sensitive {
            source_path: source.to_path_buf(),
            resolved: resolved.to_path_buf(),
            rule,
        };
        if resolved == Path::new("/") {
            return Err(refuse("/ is the host's root".into()));
        }
        if kind.is_some_and(|k| k.is_char_device() || k.is_block_device()) {
            return Err(refuse(
                "it is a device node (give devices with --device)".into(),
            ));
        }
        let under = |list: &[&str]| {
            list.iter()
                .copied()
                .find(|p| resolved.starts_with(p))
                .map(str::to_string)
        };
        if let Some(tree) = under(&HOST_ROOT_SUBTREES) {
            let public = PUBLIC_READ_ONLY.iter().any(|p| {
                resolved.starts_with(p) || resolved.starts_with(canonical_or_clean(Path::new(p)))
            });
            if !public {
                let what = match tree.as_str() {
                    "/proc" | "/sys" => "kernel interfaces",
                    "/dev" => "device nodes",
                    _ => "the host's identity and credentials",
                };
                return Err(refuse(format!("{tree} and everything below it are {what}")));
            }
            if !read_only {
                return Err(refuse(format!(
                    "{} is public host configuration, mounted read-only only (add :ro)",
                    resolved.display()
                )));
            }
        }
        if let Some(dir) = under(&SYSTEM_DIRS) {
            if !read_only {
                return Err(refuse(format!(
                    "{dir} holds the host's programs, mounted read-only only (add :ro)"
                )));
            }
        }
        for d in SERVICE_DIRS {
            if resolved == canonical_or_clean(Path::new(d)) || resolved == Path::new(d) {
                return Err(refuse(format!(
                    "{d} holds the sockets and data of the host's services"
                )));
            }
        }
        let protected = self
            .engine_paths
            .iter()
            .map(|p| (p.clone(), "berth's own socket or state root"))
            .chain(
                FOREIGN_ENGINE_PATHS
                    .iter()
                    .map(PathBuf::from)
                    // Another engine's path is named only where it exists on this host.
                    .filter(|p| std::fs::symlink_metadata(p).is_ok())
                    .map(|p| (p, "a container engine's socket or state")),
            );
        for (p, what) in protected {
            // Both spellings: as given, and with host symlinks resolved (/var/run -> /run).
            for q in [p.clone(), canonical_or_clean(&p)] {
                if resolved == q {
                    return Err(refuse(format!("{} is {what}", q.display())));
                }
                if q.starts_with(resolved) {
                    return Err(refuse(format!("it contains {} ({what})", q.display())));
                }
                // Below: another engine's state is refused whole; berth's own root only
                // outside its volumes (`volumes/NAME/_data` is what `-v NAME:` binds).
                let own = what == "berth's own socket or state root";
                if resolved.starts_with(&q) && !(own && resolved.starts_with(q.join("volumes"))) {
                    return Err(refuse(format!("it is inside {} ({what})", q.display())));
                }
            }
        }
        Ok(())
    }
}

/// Resolves a container path inside `rootfs` as the kernel would from inside the
/// container: symlinks are followed within the rootfs (an absolute target restarts at the
/// rootfs, `..` stops at it), never on the host. Components that do not exist yet are
/// appended as they are. Returns the host path of the target (`rootfs` + resolved path).
pub fn resolve_in_rootfs(rootfs: &Path, dest: &str) -> Result<PathBuf, MountError> {
    let clean = clean_destination(dest)?;
    let io = |e: Errno| MountError::Resolve {
        rootfs: rootfs.to_path_buf(),
        dest: dest.to_string(),
        error: std::io::Error::from(e),
    };
    let root = rfs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    // Components still to walk, last first.
    let mut todo: Vec<OsString> = clean
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    // The resolved path so far, with an fd for each directory level (None past a missing one).
    let mut stack: Vec<(OsString, Option<OwnedFd>)> = Vec::new();
    let mut links = 0u32;
    while let Some(comp) = todo.pop() {
        if comp == "." {
            continue;
        }
        if comp == ".." {
            stack.pop();
            continue;
        }
        let parent = match stack.last() {
            None => Some(&root),
            Some((_, fd)) => fd.as_ref(),
        };
        let Some(parent) = parent else {
            stack.push((comp, None));
            continue;
        };
        let fd = match rfs::openat(
            parent,
            &comp,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                stack.push((comp, None));
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        let st = rfs::fstat(&fd).map_err(io)?;
        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink {
            links += 1;
            if links > 40 {
                return Err(io(Errno::LOOP));
            }
            let target = rfs::readlinkat(&fd, "", Vec::new()).map_err(io)?;
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            if target.is_absolute() {
                stack.clear();
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_os_string()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
            continue;
        }
        stack.push((comp, Some(fd)));
    }
    let mut out = rootfs.to_path_buf();
    for (c, _) in &stack {
        out.push(c);
    }
    Ok(out)
}

/// The OCI mount of a user mount, after checks. `sensitive` is `None` when sensitive binds
/// are allowed.
pub fn user_mount(
    spec: &MountSpec,
    sensitive: Option<&SensitivePaths>,
) -> Result<Mount, MountError> {
    let dest = clean_destination(spec.target())?;
    if dest == Path::new("/") {
        return Err(MountError::Destination {
            dest: spec.target().to_string(),
            rule: "cannot mount over the container's root",
        });
    }
    match spec {
        MountSpec::Bind {
            source, read_only, ..
        }
        | MountSpec::Volume {
            source, read_only, ..
        } => {
            let resolved = match sensitive {
                Some(s) => s.check(source, *read_only)?,
                None => std::fs::canonicalize(source).map_err(|error| MountError::Source {
                    source_path: source.clone(),
                    error,
                })?,
            };
            let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
            opts.push(if *read_only { "ro" } else { "rw" }.to_string());
            Ok(MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(resolved)
                .options(opts)
                .build()
                .expect("a mount with every field set builds"))
        }
        MountSpec::Tmpfs {
            size_bytes,
            mode,
            exec,
            ..
        } => {
            let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
            if !exec {
                opts.push("noexec".into());
            }
            opts.push(format!(
                "size={}",
                size_bytes.unwrap_or(DEFAULT_TMPFS_BYTES)
            ));
            if let Some(mode) = mode {
                opts.push(format!("mode={mode:o}"));
            }
            Ok(MountBuilder::default()
                .destination(dest)
                .typ("tmpfs")
                .source("tmpfs")
                .options(opts)
                .build()
                .expect("a mount with every field set builds"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn destinations_are_cleaned_and_checked() {
        assert_eq!(
            clean_destination("/data//x/./y/").unwrap(),
            PathBuf::from("/data/x/y")
        );
        assert!(clean_destination("data")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(clean_destination("/a/../etc")
            .unwrap_err()
            .to_string()
            .contains(".."));
    }

    #[test]
    fn a_v1_host_s_hierarchies_are_bound_read_only_with_comounts_under_each_name() {
        let h: std::collections::BTreeMap<String, PathBuf> = [
            ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
            ("memory", "/sys/fs/cgroup/memory"),
            ("rdma", "/sys/fs/cgroup/rdma"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
        .collect();
        let ms = cgroup_v1_mounts(&h, Path::new("/berth/abc"), false);
        let view: Vec<(String, String)> = ms
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.source().as_ref().unwrap().display().to_string(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("/sys/fs/cgroup", "tmpfs"),
                (
                    "/sys/fs/cgroup/cpu,cpuacct",
                    "/sys/fs/cgroup/cpu,cpuacct/berth/abc"
                ),
                ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct/berth/abc"),
                (
                    "/sys/fs/cgroup/cpuacct",
                    "/sys/fs/cgroup/cpu,cpuacct/berth/abc"
                ),
                ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/berth/abc"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(ms[1..]
            .iter()
            .all(|m| m.options().as_ref().unwrap().contains(&"ro".to_string())));
        let rw = cgroup_v1_mounts(&h, Path::new("/berth/abc"), true);
        assert!(rw[1]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rw".to_string()));
    }

    #[test]
    fn default_mounts_match_docker() {
        let ms = default_mounts(false, DEFAULT_SHM_BYTES);
        let dests: Vec<_> = ms
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
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
        let sys = &ms[3];
        assert_eq!(sys.typ().as_deref(), Some("sysfs"));
        assert_eq!(
            sys.options().clone().unwrap(),
            ["nosuid", "noexec", "nodev", "ro"]
        );
        assert!(ms[4].options().clone().unwrap().contains(&"ro".to_string()));
        assert!(ms[6]
            .options()
            .clone()
            .unwrap()
            .contains(&"size=67108864".to_string()));
        let priv_ms = default_mounts(true, DEFAULT_SHM_BYTES);
        assert!(priv_ms[3]
            .options()
            .clone()
            .unwrap()
            .contains(&"rw".to_string()));
    }

    #[test]
    fn sensitive_sources_are_refused_with_the_rule() {
        let sp = SensitivePaths::default();
        for (p, rule) in [
            ("/", "host's root"),
            ("/etc", "identity and credentials"),
            ("/etc/shadow", "identity and credentials"),
            ("/etc/passwd", "identity and credentials"),
            ("/root", "identity and credentials"),
            ("/boot", "identity and credentials"),
            ("/proc", "kernel interfaces"),
            ("/proc/1/environ", "kernel interfaces"),
            ("/sys/kernel", "kernel interfaces"),
            ("/dev", "device nodes"),
            ("/dev/null", "device node"),
            ("/run", "services"),
            ("/var/run", "services"),
            ("/var/lib", "services"),
            ("/var", "services"),
        ] {
            if !Path::new(p).exists() {
                continue;
            }
            for ro in [false, true] {
                let e = sp.check(Path::new(p), ro).unwrap_err().to_string();
                assert!(e.contains(p) && e.contains("refused"), "{p}: {e}");
                assert!(e.contains(rule), "{p}: {e}");
                assert!(e.contains("allow_bind_sources"), "names the override: {e}");
            }
        }
        // Public configuration below /etc: read-only only.
        for p in ["/etc/ssl/certs", "/etc/timezone"] {
            if !Path::new(p).exists() {
                continue;
            }
            sp.check(Path::new(p), true).unwrap();
            let e = sp.check(Path::new(p), false).unwrap_err().to_string();
            assert!(e.contains("read-only"), "{e}");
        }
        // The host's programs: read-only only.
        sp.check(Path::new("/usr/bin"), true).unwrap();
        assert!(sp.check(Path::new("/usr/bin"), false).is_err());
        // A device node outside /dev is refused for what it is.
        let d = tempfile::tempdir().unwrap();
        let node = d.path().join("null");
        let dev = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            dev,
        )
        .unwrap();
        let e = sp.check(&node, true).unwrap_err().to_string();
        assert!(e.contains("device node"), "{e}");
        // The operator's allow-list is the one override.
        let allowed = SensitivePaths {
            allowed: vec![PathBuf::from("/etc/ssl"), node.clone()],
            ..Default::default()
        };
        allowed.check(Path::new("/etc/ssl"), false).unwrap();
        allowed.check(&node, false).unwrap();
        assert!(allowed.check(Path::new("/etc"), true).is_err());
    }

    #[test]
    fn engine_paths_their_parents_and_symlinks_to_them_are_refused() {
        let host = tempfile::tempdir().unwrap();
        let state = host.path().join("state/berth");
        std::fs::create_dir_all(state.join("volumes/v1/_data")).unwrap();
        std::fs::create_dir_all(state.join("containers/c1/rootfs")).unwrap();
        let sock = host.path().join("sock/berth.sock");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        std::fs::write(&sock, "").unwrap();
        let sp = SensitivePaths {
            engine_paths: vec![state.clone(), sock.clone()],
            allowed: Vec::new(),
        };
        let e = sp.check(&state, true).unwrap_err().to_string();
        assert!(e.contains("berth's own socket or state root"), "{e}");
        let e = sp
            .check(&host.path().join("state"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it contains"), "{e}");
        assert!(sp.check(&sock, true).is_err());
        assert!(sp.check(&host.path().join("sock"), true).is_err());
        // Another container's rootfs below the state root is refused; volumes are fine.
        let e = sp
            .check(&state.join("containers/c1/rootfs"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside"), "{e}");
        // A host symlink to the state root is resolved before the check.
        let link = host.path().join("innocent");
        symlink(&state, &link).unwrap();
        let e = sp.check(&link, true).unwrap_err().to_string();
        assert!(e.contains("innocent") && e.contains("resolves to"), "{e}");
        assert_eq!(
            sp.check(&state.join("volumes/v1/_data"), false).unwrap(),
            state.join("volumes/v1/_data")
        );
        // A missing source is an error naming it.
        let e = sp
            .check(&host.path().join("nope"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn user_mounts_convert() {
        let d = tempfile::tempdir().unwrap();
        let b = user_mount(
            &MountSpec::Bind {
                source: d.path().to_path_buf(),
                target: "/data/".into(),
                read_only: true,
            },
            Some(&SensitivePaths::default()),
        )
        .unwrap();
        assert_eq!(b.destination(), Path::new("/data"));
        assert_eq!(b.options().clone().unwrap(), ["rbind", "rprivate", "ro"]);
        let t = user_mount(
            &MountSpec::Tmpfs {
                target: "/tmp".into(),
                size_bytes: Some(1 << 20),
                mode: Some(0o1777),
                exec: false,
            },
            None,
        )
        .unwrap();
        assert_eq!(
            t.options().clone().unwrap(),
            ["nosuid", "nodev", "noexec", "size=1048576", "mode=1777"]
        );
        let e = user_mount(
            &MountSpec::Bind {
                source: "/etc".into(),
                target: "/x".into(),
                read_only: true,
            },
            Some(&SensitivePaths::default()),
        )
        .unwrap_err();
        assert!(matches!(e, MountError::Sensitive { .. }));
        // Allowed explicitly.
        user_mount(
            &MountSpec::Bind {
                source: "/etc".into(),
                target: "/x".into(),
                read_only: true,
            },
            None,
        )
        .unwrap();
        let e = user_mount(
            &MountSpec::Tmpfs {
                target: "/".into(),
                size_bytes: None,
                mode: None,
                exec: false,
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
    }

    #[test]
    fn resolve_in_rootfs_keeps_symlinks_inside() {
        let r = tempfile::tempdir().unwrap();
        let root = r.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("srv/app")).unwrap();
        symlink("/etc", root.join("data")).unwrap();
        symlink("../../..", root.join("srv/app/up")).unwrap();
        symlink("../../../../../../etc/shadow", root.join("srv/shadow")).unwrap();
        symlink("app/up/etc", root.join("srv/rel")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(resolve_in_rootfs(root, "/data").unwrap(), root.join("etc"));
        assert_eq!(
            resolve_in_rootfs(root, "/data/conf.d/x").unwrap(),
            root.join("etc/conf.d/x")
        );
        assert_eq!(
            resolve_in_rootfs(root, "/srv/app/up").unwrap(),
            root.to_path_buf()
        );
        assert_eq!(
            resolve_in_rootfs(root, "/srv/app/up/etc").unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_rootfs(root, "/srv/shadow").unwrap(),
            root.join("etc/shadow")
        );
        assert_eq!(
            resolve_in_rootfs(root, "/srv/rel").unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_rootfs(root, "/new/dir").unwrap(),
            root.join("new/dir")
        );
        assert!(resolve_in_rootfs(root, "/loop1").is_err());
        assert!(resolve_in_rootfs(root, "relative").is_err());
    }
}
