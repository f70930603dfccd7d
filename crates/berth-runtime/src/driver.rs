//! The container driver: create, start, kill, delete and state of a container from an OCI
//! bundle, through youki's `libcontainer` (namespaces, cgroups v1/v2 through `libcgroups`
//! without systemd, seccomp, capabilities, pivot_root).
//!
//! libcontainer forks (an intermediate process, then the container's init as a sibling of
//! it, that is a child of the caller). Call this module only from a plain single-threaded
//! OS process — berth's shim — never from the daemon's tokio threads. The container's init
//! is a child of the calling process, which is therefore the one that reaps it.
//!
//! Lifecycle (as `runc`): [`Driver::create`] → `created` (init waits) → [`Driver::start`]
//! → `running` → the process exits → `stopped` → [`Driver::delete`] (cgroups and
//! libcontainer's state removed). [`Driver::kill`] signals init (or every process of the
//! cgroup with `all`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator, Spec};

/// The directory under a bundle where a berth before 2026-12-07 wrote the spec as
/// libcontainer reads it (a container created then still has it in its runtime state:
/// its exec reads the spec there, see `driver_exec`).
pub const LIBCONTAINER_BUNDLE: &str = "libcontainer";

/// The spec libcontainer is given, in memory: `bundle/config.json`, and when its seccomp
/// filter has a masked comparison, with the filter in libcontainer's reading
/// ([`crate::seccomp::for_libcontainer`]). Nothing is written: libcontainer takes it
/// with `with_spec` (a patch of `third_party/libcontainer`), which saved a directory, a
/// file and a second parse of the spec at every create. Also raises this process's hard
/// limits to the spec's ([`raise_hard_rlimits`]), before the runtime forks the
/// container's processes from it.
pub fn libcontainer_spec(bundle: &Path) -> Result<LibcontainerSpec, String> {
    let path = bundle.join("config.json");
    // Read whole, then parsed: serde_json parses a slice several times faster than the
    // reader `Spec::load` gives it (a 20 kB spec with Docker's seccomp profile).
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut spec: Spec =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    raise_hard_rlimits(&spec);
    let Some(mut linux) = spec.linux().clone() else {
        return Ok(LibcontainerSpec {
            spec,
            cgroups_path: None,
            seccomp: None,
        });
    };
    let cgroups_path = linux.cgroups_path().clone();
    let Some(seccomp) = linux.seccomp().as_ref() else {
        return Ok(LibcontainerSpec {
            spec,
            cgroups_path,
            seccomp: None,
        });
    };
    let masked = seccomp.syscalls().iter().flatten().any(|r| {
        r.args()
            .iter()
            .flatten()
            .any(|a| a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq)
    });
    let seccomp = if masked {
        let s = crate::seccomp::for_libcontainer(seccomp);
        linux.set_seccomp(Some(s.clone()));
        spec.set_linux(Some(linux));
        s
    } else {
        seccomp.clone()
    };
    Ok(LibcontainerSpec {
        spec,
        cgroups_path,
        seccomp: Some(seccomp),
    })
}

/// Raises this process's hard resource limits to the spec's where they are lower, so the
/// container's processes, which inherit them and set the spec's values from inside its
/// user namespace when it is remapped (where raising a hard limit is refused: EPERM,
/// whatever the capabilities there), only lower them. A daemon started with a hard
/// `RLIMIT_NOFILE` below the containers' 1048576 (a service manager's default) could not
/// start a remapped container otherwise. Best effort: a limit this process cannot raise
/// is left for the runtime to report.
pub fn raise_hard_rlimits(spec: &Spec) {
    use oci_spec::runtime::PosixRlimitType as T;
    use rustix::process::{getrlimit, setrlimit, Resource as R, Rlimit};
    let Some(limits) = spec.process().as_ref().and_then(|p| p.rlimits().as_ref()) else {
        return;
    };
    for l in limits {
        let res = match l.typ() {
            T::RlimitCpu => R::Cpu,
            T::RlimitFsize => R::Fsize,
            T::RlimitData => R::Data,
            T::RlimitStack => R::Stack,
            T::RlimitCore => R::Core,
            T::RlimitRss => R::Rss,
            T::RlimitNproc => R::Nproc,
            T::RlimitNofile => R::Nofile,
            T::RlimitMemlock => R::Memlock,
            T::RlimitAs => R::As,
            T::RlimitLocks => R::Locks,
            T::RlimitSigpending => R::Sigpending,
            T::RlimitMsgqueue => R::Msgqueue,
            T::RlimitNice => R::Nice,
            T::RlimitRtprio => R::Rtprio,
            T::RlimitRttime => R::Rttime,
        };
        let cur = getrlimit(res);
        if cur.maximum.is_some_and(|h| h < l.hard()) {
            let _ = setrlimit(
                res,
                Rlimit {
                    current: cur.current,
                    maximum: Some(l.hard()),
                },
            );
        }
    }
}

/// What [`libcontainer_spec`] prepared.
pub struct LibcontainerSpec {
    /// The spec to give libcontainer.
    pub spec: Spec,
    /// The spec's `linux.cgroupsPath`.
    pub cgroups_path: Option<PathBuf>,
    /// The seccomp filter as libcontainer reads it from that spec.
    pub seccomp: Option<LinuxSeccomp>,
}

/// Where compiled seccomp filters are kept, one file per filter: `<sha256>.bpf`, the
/// digest of the filter's rules, the architecture and libseccomp's version and the API
/// level it found on the running kernel, so a file is only ever used for what it was
/// compiled from (a new libseccomp or kernel gives new names; old files are never read). Written by root, mode 0600 in a 0700
/// directory, temp file and rename.
pub const SECCOMP_CACHE_DIR: &str = "/run/berth/seccomp";

/// Hands libcontainer the compiled BPF program of `seccomp`, from [`SECCOMP_CACHE_DIR`],
/// compiling it there first if it is not (once per filter, not once per start: libseccomp
/// takes milliseconds of CPU for Docker's profile). The container's init, a fork of this
/// process, then loads the program as is. Best effort: on any error nothing is handed
/// over and the init compiles the filter itself, as without a cache.
pub fn precompile_seccomp(seccomp: &LinuxSeccomp, cache: &Path) -> Result<(), String> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let rules = serde_json::to_vec(seccomp).map_err(|e| format!("seccomp filter: {e}"))?;
    let mut material = format!(
        "berth seccomp bpf 1\n{}\n{}\n",
        libcontainer::seccomp::compiler_id(),
        std::env::consts::ARCH
    )
    .into_bytes();
    material.extend_from_slice(&rules);
    let key = berth_types::Digest::of(&material).hex();
    let path = cache.join(format!("{key}.bpf"));
    let valid = |b: &Vec<u8>| !b.is_empty() && b.len().is_multiple_of(8) && b.len() <= 8 * 4096;
    let bpf = match std::fs::read(&path) {
        Ok(b) if valid(&b) => b,
        _ => {
            let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(cache)
                .map_err(|e| io(cache, e))?;
            let tmp = cache.join(format!(".{key}.{}.tmp", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io(&tmp, e))?;
            let compiled = libcontainer::seccomp::compile_bpf(seccomp, &f)
                .map_err(|e| format!("compile the seccomp filter: {e}"))
                .and_then(|()| {
                    let mut b = Vec::new();
                    f.rewind()
                        .and_then(|_| f.read_to_end(&mut b))
                        .map_err(|e| io(&tmp, e))?;
                    Ok(b)
                });
            let b = match compiled {
                Ok(b) if valid(&b) => b,
                other => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(other
                        .err()
                        .unwrap_or_else(|| "the compiled seccomp filter is empty".into()));
                }
            };
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            b
        }
    };
    libcontainer::seccomp::set_precompiled(seccomp.clone(), bpf);
    Ok(())
}

/// An error of the driver; the message names the container and the verb.
#[derive(Debug, thiserror::Error)]
#[error("container {id}: {verb}: {source}")]
pub struct DriverError {
    pub id: String,
    pub verb: &'static str,
    /// Boxed: libcontainer's error is large and errors are rare.
    #[source]
    pub source: Box<LibcontainerError>,
}

/// The stdio the container's init gets. Closed in the caller once passed.
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What [`Driver::state`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverState {
    /// `creating`, `created`, `running`, `stopped` or `paused`.
    pub status: String,
    /// PID of the container's init (in the caller's PID namespace).
    pub pid: Option<i32>,
}

/// libcontainer over one state directory (`root`): each container keeps its runtime
/// state in `root/<id>/`.
#[derive(Debug, Clone)]
pub struct Driver {
    root: PathBuf,
}

impl Driver {
    pub fn new(root: &Path) -> Driver {
        Driver {
            root: root.to_path_buf(),
        }
    }

    fn err<'a>(
        id: &'a str,
        verb: &'static str,
    ) -> impl FnOnce(LibcontainerError) -> DriverError + 'a {
        move |source| DriverError {
            id: id.to_string(),
            verb,
            source: Box::new(source),
        }
    }

    fn load(&self, id: &str, verb: &'static str) -> Result<Container, DriverError> {
        Container::load(self.root.join(id)).map_err(Self::err(id, verb))
    }

    /// Creates the container from `bundle/config.json` (its `root.path` the mounted
    /// rootfs). Returns the PID of the container's init, which waits for [`start`](Self::start).
    /// With `console_socket` (the spec must have `terminal: true`) the init opens a pty,
    /// uses its slave as stdio and sends the master over that unix socket (SCM_RIGHTS);
    /// `stdio` is then not used by the container.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, DriverError> {
        std::fs::create_dir_all(&self.root).map_err(|e| DriverError {
            id: id.to_string(),
            verb: "create runtime state directory",
            source: Box::new(LibcontainerError::OtherIO(e)),
        })?;
        let mut b = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .validate_id()
            .map_err(Self::err(id, "create"))?
            .with_root_path(&self.root)
            .map_err(Self::err(id, "create"))?
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr);
        if let Some(stdin) = stdio.stdin {
            b = b.with_stdin(stdin);
        }
        if let Some(sock) = console_socket {
            b = b.with_console_socket(Some(sock));
        }
        let prepared = libcontainer_spec(bundle).map_err(|e| DriverError {
            id: id.to_string(),
            verb: "create",
            source: Box::new(LibcontainerError::Other(e.to_string())),
        })?;
        // The container's init inherits this process's cgroups in the hierarchies
        // libcgroups leaves alone.
        if let Some(path) = &prepared.cgroups_path {
            for e in crate::placement::join(&crate::placement::hierarchies(), path) {
                eprintln!("container {id}: not placed in its own cgroup there: {e}");
            }
        }
        if let Some(seccomp) = &prepared.seccomp {
            // Best effort (see there): without it the init compiles the filter.
            let _ = precompile_seccomp(seccomp, Path::new(SECCOMP_CACHE_DIR));
        }
        let container = b
            .as_init(bundle)
            .with_spec(prepared.spec)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(Self::err(id, "create"))?;
        container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| DriverError {
                id: id.to_string(),
                verb: "create",
                source: Box::new(LibcontainerError::Other("no init pid after create".into())),
            })
    }

    /// Starts the user process of a created container.
    pub fn start(&self, id: &str) -> Result<(), DriverError> {
        self.load(id, "start")?
            .start()
            .map_err(Self::err(id, "start"))
    }

    /// Sends `signal` to the container's init, or to every process in its cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), DriverError> {
        let sig = Signal::try_from(signal).map_err(|e| DriverError {
            id: id.to_string(),
            verb: "kill",
            source: Box::new(LibcontainerError::Other(format!("signal {signal}: {e}"))),
        })?;
        self.load(id, "kill")?
            .kill(sig, all)
            .map_err(Self::err(id, "kill"))
    }

    /// Removes the container's cgroups and runtime state (`force` kills it first).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), DriverError> {
        let mut c = self.load(id, "delete")?;
        let cgroups_path = c.spec().ok().map(|s| s.cgroup_path);
        c.delete(force).map_err(Self::err(id, "delete"))?;
        // The hierarchies libcontainer does not know of (its init's last children may
        // still be leaving; what stays is removed by the engine with the container).
        if let Some(path) = cgroups_path {
            crate::placement::remove(
                &crate::placement::hierarchies(),
                &path,
                std::time::Duration::from_millis(500),
            );
        }
        Ok(())
    }

    /// The container's status and init PID.
    pub fn state(&self, id: &str) -> Result<DriverState, DriverError> {
        let mut c = self.load(id, "state")?;
        c.refresh_status().map_err(Self::err(id, "state"))?;
        let status = match c.status() {
            ContainerStatus::Creating => "creating",
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "stopped",
            ContainerStatus::Paused => "paused",
        };
        Ok(DriverState {
            status: status.to_string(),
            pid: c.pid().map(|p| p.as_raw()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn filter(allowed: &[&str]) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .expect("rule")])
            .build()
            .expect("filter")
    }

    fn cached(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("cache dir")
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read"),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// One program per distinct filter, compiled on first use and read back after: the
    /// same rules give the same file, other rules another; no temp file is left.
    #[test]
    fn each_distinct_seccomp_filter_is_compiled_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("seccomp");
        precompile_seccomp(&filter(&["read"]), &cache).expect("compile");
        let first = cached(&cache);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].0.ends_with(".bpf") && first[0].0.len() == 64 + 4);
        assert!(!first[0].1.is_empty() && first[0].1.len().is_multiple_of(8));
        precompile_seccomp(&filter(&["read"]), &cache).expect("cached");
        assert_eq!(cached(&cache), first);
        precompile_seccomp(&filter(&["read", "write"]), &cache).expect("compile");
        let both = cached(&cache);
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both.iter().all(|(n, _)| !n.starts_with('.')));
        // A damaged file is compiled again, not loaded.
        std::fs::write(cache.join(&first[0].0), b"bad").expect("write");
        precompile_seccomp(&filter(&["read"]), &cache).expect("recompiled");
        assert_eq!(
            std::fs::read(cache.join(&first[0].0)).expect("read"),
            first[0].1
        );
    }

    /// The spec libcontainer gets has the masked comparison in libcontainer's reading
    /// (value and valueTwo swapped), the bundle's config.json is left a true OCI spec,
    /// and nothing is written into the bundle.
    #[test]
    fn libcontainers_spec_is_made_in_memory_with_its_reading_of_masked_comparisons() {
        use oci_spec::runtime::{LinuxBuilder, LinuxSeccompArgBuilder, SpecBuilder};
        let dir = tempfile::tempdir().expect("tempdir");
        let masked = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(0x7e02_0000u64)
                    .value_two(0u64)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .build()
                    .expect("arg")])
                .build()
                .expect("rule")])
            .build()
            .expect("filter");
        let spec = SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .cgroups_path(PathBuf::from("/berth/x"))
                    .seccomp(masked.clone())
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec");
        let config = dir.path().join("config.json");
        std::fs::write(&config, serde_json::to_vec(&spec).expect("json")).expect("write");
        let before = std::fs::read(&config).expect("read");

        let got = libcontainer_spec(dir.path()).expect("prepared");
        let want = crate::seccomp::for_libcontainer(&masked);
        assert_ne!(want, masked, "the reading differs");
        assert_eq!(got.seccomp.as_ref(), Some(&want));
        assert_eq!(
            got.spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            Some(want)
        );
        assert_eq!(got.cgroups_path, Some(PathBuf::from("/berth/x")));
        assert_eq!(std::fs::read(&config).expect("read"), before);
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
