//! Containers: create, start, kill, wait, logs, remove — over one shim per container.
//!
//! The engine never forks a container itself: `start` spawns `berth-shim` (a small
//! supervisor without an async runtime) which detaches from the daemon, runs the
//! container through `berth-driver` (youki's libcontainer), writes the json-file log and
//! records the exit status. Containers keep running when the engine is dropped or the
//! daemon is killed; a new engine on the same root finds them through their files.
//!
//! On disk, per container (formats in `berth_runtime::shim_protocol`):
//!
//! ```text
//! STATE/containers/<id>/
//!   container.json   ContainerRecord (versioned): image, layers, log options, created
//!   bundle/config.json  the OCI runtime spec, generated at create
//!   upper/ work/ empty/ rootfs/   the overlay (rootfs/ is the mount point)
//!   runtime/         libcontainer's state (while the container exists in the runtime)
//!   shim.json shim.state.json shim.sock shim.log exit.json <id>-json.log[.N]
//! ```
//!
//! Why JSON files and not a redb table: the shim writes the exit status while the daemon
//! may be down, and the daemon must read it after; one directory per container, written
//! atomically (temp file + rename), needs no shared database handle and removing a
//! container is removing its directory.
//!
//! The shim binary is `$BERTH_SHIM`, else `berth-shim` next to the running executable;
//! `berth-driver` is looked up next to the shim.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_runtime::shim_protocol::{
    ExitRecord, ShimConfig, ShimState, BUNDLE_DIR, EXIT_FILE, RUNTIME_BASE, RUNTIME_DIR,
    SHIM_CONFIG_FILE, SHIM_PROTOCOL_VERSION, SHIM_SOCKET, SHIM_STATE_FILE,
};
use berth_runtime::{OverlayRootfs, RootfsError, SpecError};
use berth_store::ExtraRoots;
use berth_types::{Digest, ErrorKind};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::error::{EngineError, Result};
use crate::lifecycle::RunSettings;
use crate::Engine;

/// The runtime's option types, for front ends that build [`CreateOptions`].
pub use berth_runtime::{ContainerOptions, MountSpec, NetworkMode};

/// Version of `container.json`.
pub const CONTAINER_RECORD_VERSION: u32 = 1;
pub(crate) const RECORD_FILE: &str = "container.json";

/// Parsed container records by the file each was read from, with that file's identity
/// (device, inode, size, change and modification times): a listing, or a lookup by name
/// or ID prefix, reads and parses a record again only when its file changed. The
/// engine's own writes and removals drop the entry ([`RecordCache::forget`]), so the
/// times' coarse granularity cannot hide a change it made; a change by another process
/// replaces the file (a new inode) or moves its times.
#[derive(Default)]
pub(crate) struct RecordCache(std::sync::Mutex<HashMap<PathBuf, (FileKey, ContainerRecord)>>);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileKey([i64; 7]);

impl FileKey {
    fn of(md: &fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey([
            md.dev() as i64,
            md.ino() as i64,
            md.size() as i64,
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec(),
        ])
    }
}

impl RecordCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (FileKey, ContainerRecord)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The container record at `path`; `None` (logged, unless there is no file: a
    /// create that crashed half-way) when it cannot be used.
    pub(crate) fn read(&self, path: &Path) -> Option<ContainerRecord> {
        let Ok(md) = fs::metadata(path) else {
            self.forget(path);
            return None;
        };
        let key = FileKey::of(&md);
        if let Some((k, r)) = self.lock().get(path) {
            if *k == key {
                return Some(r.clone());
            }
        }
        // Read after the identity was taken: a file replaced in between is read again
        // next time (its identity differs from the one kept).
        let rec = read_record(path);
        let mut cache = self.lock();
        match &rec {
            Some(r) => {
                cache.insert(path.to_path_buf(), (key, r.clone()));
            }
            None => {
                cache.remove(path);
            }
        }
        rec
    }

    /// Drops what is kept of the record at `path` (written or removed by the engine).
    pub(crate) fn forget(&self, path: &Path) {
        self.lock().remove(path);
    }

    /// Keeps only the records at `paths` (the others' containers are gone).
    fn retain(&self, paths: &HashSet<PathBuf>) {
        self.lock().retain(|p, _| paths.contains(p));
    }
}

/// The container record at `path`, read and parsed; `None` (logged, unless there is no
/// file) when it cannot be used.
fn read_record(path: &Path) -> Option<ContainerRecord> {
    match fs::read(path).map(|b| serde_json::from_slice::<ContainerRecord>(&b)) {
        Ok(Ok(r)) if r.version == CONTAINER_RECORD_VERSION => Some(r),
        Ok(Ok(r)) => {
            warn!(path = %path.display(), version = r.version, "container record of an unknown version skipped");
            None
        }
        Ok(Err(err)) => {
            warn!(path = %path.display(), error = %err, "unreadable container record skipped");
            None
        }
        Err(_) => None,
    }
}
/// A remapped container's kept user namespace (a bind mount of its nsfs file).
pub(crate) const USERNS_FILE: &str = "userns";
/// A remapped container's volumes, each an idmapped mount of the volume's directory
/// (`volmap/NAME`, made at every start, unmounted at remove): the container's ids are
/// the volume's ids on disk, as without remapping.
pub(crate) const VOLMAP_DIR: &str = "volmap";
/// A remapped container's binds asked with `:idmap`, each an idmapped mount of its
/// source (`bindmap/KEY`, KEY from the destination), made and removed as `volmap`.
pub(crate) const BINDMAP_DIR: &str = "bindmap";

/// Whether a mount point's mode asks for an idmapped bind (`-v /src:/dst:idmap`).
pub(crate) fn wants_idmap(m: &crate::volumes::MountPoint) -> bool {
    m.kind == "bind" && m.mode.split(',').any(|x| x == "idmap")
}

/// The name of an idmapped bind's mount under `bindmap/`.
fn bindmap_key(destination: &str) -> String {
    Digest::of(destination.as_bytes()).hex()[..16].to_string()
}

/// What berth keeps about a container (`container.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerRecord {
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    /// The image's layers (diff_ids), bottom first: the overlay's lower dirs, and GC roots.
    pub layers: Vec<Digest>,
    /// RFC 3339.
    pub created: String,
    pub log_max_size: u64,
    pub log_max_file: u32,
    /// Namespaces shared with the host (`--pid=host` and the like, as policy allowed).
    #[serde(default)]
    pub host_namespaces: berth_runtime::spec::HostNamespaces,
    /// User-namespace remapping (the daemon's `userns_remap` at create, unless
    /// `--userns=host`): the mapping of the container's kept user namespace
    /// (`containers/ID/userns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<berth_runtime::userns::IdMap>,
    /// `--userns` as asked when it was `auto[:size=N]` (inspect's `UsernsMode`); empty
    /// otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub userns_mode: String,
    /// The log driver: `json-file` (empty in older records) or `none` (nothing kept).
    #[serde(default)]
    pub log_driver: String,
    /// The log options as asked at create (`None` in records written before they were
    /// kept: inspect then shows the sizes in effect).
    #[serde(default)]
    pub log_opts: Option<BTreeMap<String, String>>,
    pub cgroup_path: String,
    /// The container's name (without Docker's leading `/`); empty for records written
    /// before names existed.
    #[serde(default)]
    pub name: String,
    /// Labels given at create.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The process's command line as the runtime spec has it (entrypoint + cmd).
    #[serde(default)]
    pub args: Vec<String>,
    /// `--network host` (else a private namespace with loopback only).
    #[serde(default)]
    pub network_host: bool,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub read_only: bool,
    /// The spec's masked and read-only /proc and /sys paths (inspect's MaskedPaths and
    /// ReadonlyPaths); empty for `--privileged` and `systempaths=unconfined`.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// `-t`: the process runs on a pty (the spec's `terminal`).
    #[serde(default)]
    pub tty: bool,
    /// `-i`: the container's stdin is a pipe fed by attached clients.
    #[serde(default)]
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client closes its input.
    #[serde(default)]
    pub stdin_once: bool,
    /// Docker's AttachStdin/AttachStdout/AttachStderr as the client created it (shown
    /// by inspect; the client attaches itself).
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
    /// The TTY's initial size `[height, width]` (HostConfig.ConsoleSize).
    #[serde(default)]
    pub console_size: Option<[u16; 2]>,
    /// How it runs (Docker's Config, restart policy, `--rm`, health check...).
    #[serde(default)]
    pub run: RunSettings,
    /// The cgroup limits as given at create and changed by `docker update`.
    #[serde(default)]
    pub resources: berth_runtime::Resources,
    /// The container's mounts (binds, volumes, tmpfs), as inspect shows them.
    #[serde(default)]
    pub mounts: Vec<crate::volumes::MountPoint>,
    /// How the create request spelled its mounts (echoed by inspect).
    #[serde(default)]
    pub mount_config: crate::volumes::MountConfig,
    /// Networks, published ports, DNS and hosts settings.
    #[serde(default)]
    pub net: crate::networks::NetConfig,
    /// The engine's /etc/hosts, /etc/resolv.conf and /etc/hostname binds (checked again
    /// at every start, like `mounts`).
    #[serde(default)]
    pub etc_mounts: Vec<crate::volumes::MountPoint>,
    /// `--device` as given (inspect's `HostConfig.Devices`); the nodes are in the spec.
    #[serde(default)]
    pub devices: Vec<berth_runtime::devices::DeviceMapping>,
    /// `--device-cgroup-rule` as given (inspect's `HostConfig.DeviceCgroupRules`).
    #[serde(default)]
    pub device_cgroup_rules: Vec<String>,
    /// A service task's files from secrets and configs, bound read-only from the tmpfs
    /// the engine fills at each start (see `swarm_objects`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_files: Vec<crate::swarm_objects::TaskFile>,
}

/// The words the docker CLI derives `docker run`'s exit status from, as Docker's daemon
/// says them: 127 when the command does not exist, 126 when it cannot be run, nothing
/// (the CLI's 125) for every other start failure. Only the runtime's own reports of the
/// command are matched: a cgroup or mount file the host lacks is not a missing command.
pub(crate) fn exec_failure_hint(msg: &str) -> &'static str {
    // libcontainer's executor: its PATH lookup and permission check before execve, and
    // execve's own errno (`error 'ENOENT: ...' executing ...`).
    if (msg.contains("executable '") && msg.contains("' not found in $PATH"))
        || msg.contains("error 'ENOENT")
    {
        ": executable file not found in $PATH"
    } else if msg.contains("' does not have correct permissions") || msg.contains("error 'EACCES") {
        ": permission denied"
    } else {
        ""
    }
}

/// A created container: its ID, and Docker's warnings for what the host discarded.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub warnings: Vec<String>,
}

/// Options of `create` beyond the runtime spec's.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub runtime: ContainerOptions,
    /// json-file `max-size` in bytes; 10 MB when `None`; 0 disables rotation.
    pub log_max_size: Option<u64>,
    /// json-file `max-file`; 3 when `None`.
    pub log_max_file: Option<u32>,
    /// The log options as the client gave them (inspect shows them, as Docker does;
    /// the daemon's defaults apply all the same).
    pub log_opts: BTreeMap<String, String>,
    /// `json-file` (also when empty) or `none`.
    pub log_driver: String,
    /// The container's name; unique. A generated one (`berth_<12 hex>`) when `None`.
    pub name: Option<String>,
    /// Labels, kept in the record.
    pub labels: BTreeMap<String, String>,
    /// `-i`: give the container a stdin pipe that attached clients write to (else its
    /// stdin is `/dev/null`). The TTY is `runtime.tty`.
    pub open_stdin: bool,
    /// Close that stdin when the first attached client closes its input.
    pub stdin_once: bool,
    /// Docker's Attach* flags, recorded for inspect.
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// The TTY's initial size `[height, width]`.
    pub console_size: Option<[u16; 2]>,
    /// Restart policy, `--rm`, stop signal and timeout, the user's health check,
    /// `--health-on-failure`, `--init`. The engine fills in the rest (env, user, ...).
    pub settings: RunSettings,
    /// Binds, volumes and tmpfs mounts (resolved by the engine into `runtime.mounts`).
    pub mounts: crate::volumes::MountOptions,
    /// Networks, ports, DNS (resolved by the engine; `runtime.network` follows it).
    pub net: crate::networks::NetRequest,
    /// `--userns=auto[:size=N]` as asked: a user namespace with a range of its own,
    /// allocated from the subordinate ids of the user `containers` (Podman's).
    pub userns_auto: Option<String>,
    /// A service task's files from secrets and configs (see `swarm_objects`).
    pub task_files: Vec<crate::swarm_objects::TaskFile>,
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading `/` is allowed).
pub(crate) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The health check in force: the user's fields over the image's (Docker merges them
/// field by field); `NONE` as the test disables it.
fn merge_healthcheck(
    image: Option<&berth_image::model::HealthConfig>,
    user: Option<&berth_image::model::HealthConfig>,
) -> Option<berth_image::model::HealthConfig> {
    let mut h = image.cloned().unwrap_or_default();
    if let Some(u) = user {
        if u.test.as_ref().is_some_and(|t| !t.is_empty()) {
            h.test = u.test.clone();
        }
        for (dst, src) in [
            (&mut h.interval, u.interval),
            (&mut h.timeout, u.timeout),
            (&mut h.start_period, u.start_period),
            (&mut h.start_interval, u.start_interval),
            (&mut h.retries, u.retries),
        ] {
            if src.is_some_and(|v| v != 0) {
                *dst = src;
            }
        }
    }
    match h.test.as_deref() {
        None | Some([]) => None,
        Some([first, ..]) if first == "NONE" => None,
        Some(_) => Some(h),
    }
}

/// The state of a container as its files tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started (or started and its start failed).
    Created,
    /// A shim runs it.
    Running { pid: i32, started_at: String },
    /// It ran and exited; the shim recorded how.
    Exited(ExitRecord),
    /// A shim started it but is gone without recording an exit (killed, host crash).
    Dead,
}

/// A row of the container list.
#[derive(Debug, Clone)]
pub struct ContainerSummary {
    pub record: ContainerRecord,
    pub state: ContainerState,
    /// Restart count, a user's stop, health.
    pub status: crate::lifecycle::ContainerStatus,
    /// The restart policy is waiting to start it again.
    pub restarting: bool,
    /// Running, with its cgroup frozen (`docker pause`).
    pub paused: bool,
}

/// An I/O failure on `path`: a full disk (or quota) is Unavailable (503: the request
/// may succeed once space is freed), anything else Internal.
pub(crate) fn io_err(path: &Path, action: &str, e: std::io::Error) -> EngineError {
    let kind = if crate::space::is_no_space(&e) {
        berth_types::ErrorKind::Unavailable
    } else {
        berth_types::ErrorKind::Internal
    };
    EngineError::new(kind, format!("{}: {action}: {e}", path.display()))
}

fn spec_err(e: SpecError) -> EngineError {
    EngineError::new(e.kind(), e.to_string())
}

/// Removes a container's directory. An exec that began before the removal (a health
/// check) may still create a file in it while it is walked (ENOTEMPTY): the walk is
/// tried again, a few times, once that has settled.
/// Unmounts a remapped container's volume mounts (`volmap/NAME`) and removes their
/// directories; an error when one stays mounted (the caller must not delete the
/// container's directory then).
fn unmap_idmapped_mounts(dir: &Path) -> Result<()> {
    for sub in [VOLMAP_DIR, BINDMAP_DIR] {
        let base = dir.join(sub);
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            while berth_runtime::rootfs::is_mount_point(&p).map_err(rootfs_err)? {
                rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH)
                    .map_err(|e| io_err(&p, "unmount", e.into()))?;
            }
            let removed = if p.is_dir() {
                fs::remove_dir(&p)
            } else {
                fs::remove_file(&p)
            };
            removed.map_err(|e| io_err(&p, "remove", e))?;
        }
        fs::remove_dir(&base).map_err(|e| io_err(&base, "remove", e))?;
    }
    Ok(())
}

/// Where libcontainer keeps the state of the containers of the state root `root`:
/// `RUNTIME_BASE/<key>/`, the key the first 16 hex digits of the SHA-256 of the root's
/// path, so that daemons on other state roots (tests, a second engine) never see each
/// other's state, and each sweeps only its own.
pub(crate) fn runtime_base(root: &Path) -> PathBuf {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    Path::new(RUNTIME_BASE).join(&hex::encode(digest)[..16])
}

/// Where a removed container's directory goes to be deleted (`ROOT/removed-containers/`):
/// the same filesystem, so a rename takes it out of `containers/` at once.
pub(crate) const REMOVED_DIR: &str = "removed-containers";

impl Engine {
    /// Takes a removed container's directory (its record already gone, nothing mounted
    /// in it) out of `containers/` with one rename and deletes it on a thread of its
    /// own: the removal is complete for every reader (a `wait` for `removed`, `ps -a`,
    /// a new container with the same name) before its files are unlinked, which on this
    /// filesystem was most of a `run --rm`'s exit (each rmdir of the overlay's work dirs
    /// milliseconds, with `discard` a trim per freed block). What a crash leaves in
    /// `removed-containers/` is deleted when the engine opens next. If the rename fails,
    /// the directory is deleted here; and on a full disk (the space reserve given up)
    /// too, so that the space is back before the removal answers.
    fn discard_container_dir(&self, id: &str, dir: &Path) -> Result<()> {
        if !self.inner.reserve.is_held() {
            return remove_dir_settled(dir).map_err(|e| io_err(dir, "remove", e));
        }
        let removed = self.store().root().join(REMOVED_DIR);
        let to = removed.join(id);
        let moved = fs::create_dir_all(&removed).and_then(|()| fs::rename(dir, &to));
        if moved.is_err() {
            return remove_dir_settled(dir).map_err(|e| io_err(dir, "remove", e));
        }
        let spawned = std::thread::Builder::new()
            .name("remove-dir".into())
            .stack_size(128 * 1024)
            .spawn({
                let to = to.clone();
                let engine = self.clone();
                move || {
                    if let Err(e) = remove_dir_settled(&to) {
                        warn!(path = %to.display(), error = %e, "removed container's directory not deleted");
                    }
                    // The space it held is free: the reserve is taken again if it was
                    // used meanwhile.
                    engine.inner.reserve.ensure();
                }
            });
        if spawned.is_err() {
            remove_dir_settled(&to).map_err(|e| io_err(&to, "remove", e))?;
        }
        Ok(())
    }
}

/// How long anything waits for a container's shim to finish its cleanup after the exit
/// (a few milliseconds normally; libcontainer's own retries when processes linger).
pub(crate) const SHIM_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The removed containers whose runtime state is released in the background.
#[derive(Default)]
pub(crate) struct PendingReleases {
    count: std::sync::Mutex<usize>,
    done: std::sync::Condvar,
}

impl PendingReleases {
    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn begin(&self) {
        *self.lock() += 1;
    }

    fn end(&self) {
        let mut n = self.lock();
        *n = n.saturating_sub(1);
        self.done.notify_all();
    }

    fn wait(&self, timeout: std::time::Duration) -> bool {
        let n = self.lock();
        let (n, _) = self
            .done
            .wait_timeout_while(n, timeout, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n == 0
    }
}

fn remove_dir_settled(dir: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match fs::remove_dir_all(dir) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            r => return r,
        }
    }
}

/// A use of a container's rootfs (see [`Engine::hold_rootfs`]).
pub(crate) struct RootfsHold {
    engine: Engine,
    id: String,
}

impl Drop for RootfsHold {
    fn drop(&mut self) {
        {
            let mut holds = self
                .engine
                .inner
                .rootfs_holds
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = holds.get_mut(&self.id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    holds.remove(&self.id);
                }
            }
        }
        self.engine.unmount_rootfs_if_idle(&self.id);
    }
}

pub(crate) fn rootfs_err(e: RootfsError) -> EngineError {
    let kind = match e {
        RootfsError::Rule { .. } => ErrorKind::InvalidArgument,
        RootfsError::Io { .. } => ErrorKind::Internal,
    };
    EngineError::new(kind, e.to_string())
}

/// Replaces `dir/name` atomically (temp file + rename) without waiting for the disk:
/// for runtime state that a host crash makes moot anyway (the shim's config, the
/// container's status). Readers see the old or the new content, never a mix; after a
/// power loss the file may hold the previous version (ext4 and xfs flush the data of a
/// file renamed over another before the rename itself).
pub(crate) fn write_replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    replace_file(dir, name, bytes).map_err(|e| io_err(&dir.join(name), "write", e))
}

/// [`write_replace`]'s I/O: a temp file renamed over `dir/name` (removed on failure).
/// A file that already holds `bytes` is left as it is: reading it back costs less than
/// a new inode (the /etc files and the shim's config are written again at every start,
/// mostly unchanged).
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if fs::read(dir.join(name)).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    let r = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, dir.join(name))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Writes `dir/name` over its old content (created if missing), unless it holds `bytes`
/// already: for a file no other process reads while it is written (not atomic).
pub(crate) fn write_in_place(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    if fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| io_err(&path, "write", e))
}

/// Writes `dir/name` atomically and durably (temp file, fsync, rename, fsync of the
/// directory): for what must survive a power loss (the container record, its spec).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(dir)?.sync_all()
    })()
    .map_err(|e| io_err(&path, "write", e))
}

pub(crate) fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| io_err(Path::new("/dev/urandom"), "read", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The shim binary and the driver next to it.
pub(crate) fn shim_binaries() -> Result<(PathBuf, PathBuf)> {
    let shim = match std::env::var_os("BERTH_SHIM") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| EngineError::internal(format!("locate berth-shim: {e}")))?
            .with_file_name("berth-shim"),
    };
    let driver = shim.with_file_name("berth-driver");
    for p in [&shim, &driver] {
        if !p.is_file() {
            return Err(EngineError::new(
                ErrorKind::Unavailable,
                format!(
                    "{} not found: berth-shim and berth-driver must be installed next to berth (or set BERTH_SHIM)",
                    p.display()
                ),
            ));
        }
    }
    Ok((shim, driver))
}

/// Connects to a shim's control socket through `/proc/self/fd/N/shim.sock`, so a long
/// state root never hits the 108-byte limit of unix socket paths.
pub(crate) fn connect_shim(dir: &Path) -> std::io::Result<UnixStream> {
    let d = fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    UnixStream::connect(format!("/proc/self/fd/{}/{SHIM_SOCKET}", d.as_raw_fd()))
}

/// One request to a shim; the reply line, or None when no shim listens.
pub(crate) fn shim_request(dir: &Path, req: &str) -> Result<Option<String>> {
    let mut s = match connect_shim(dir) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io_err(&dir.join(SHIM_SOCKET), "connect", e)),
    };
    let mut reply = String::new();
    match s.write_all(format!("{req}\n").as_bytes()) {
        // EOF without a reply: the shim exited meanwhile.
        Ok(()) => {
            let _ = s.read_to_string(&mut reply);
        }
        // The shim exited between accepting and reading (its container's process ended
        // just then): the same as EOF without a reply, not an error of the request.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(io_err(&dir.join(SHIM_SOCKET), "send", e)),
    }
    Ok(Some(reply))
}

impl Engine {
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.store().root().join("containers")
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// libcontainer's state root for a container: its directory under [`runtime_base`],
    /// or `runtime/` in the container's directory where a berth before it put the state
    /// (a container it started, running across the upgrade).
    pub(crate) fn runtime_root(&self, id: &str) -> PathBuf {
        let legacy = self.container_dir(id).join(RUNTIME_DIR);
        if fs::symlink_metadata(&legacy).is_ok() {
            return legacy;
        }
        self.inner.runtime_base.join(id)
    }

    /// Every container record (unreadable ones are logged and skipped).
    pub(crate) fn container_records(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.containers_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, "list", e)),
        };
        let paths: HashSet<PathBuf> = rd.flatten().map(|e| e.path().join(RECORD_FILE)).collect();
        let cache = &self.inner.record_cache;
        let out = paths.iter().filter_map(|p| cache.read(p)).collect();
        cache.retain(&paths);
        Ok(out)
    }

    /// The container's current json-file log.
    pub fn container_log_path(&self, rec: &ContainerRecord) -> PathBuf {
        self.container_dir(&rec.id)
            .join(format!("{}-json.log", rec.id))
    }

    /// Serialises changes to container records and status files.
    pub(crate) fn record_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rewrites a container's record (call under [`Engine::record_lock`]).
    pub(crate) fn write_record(&self, rec: &ContainerRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(rec)
            .map_err(|e| EngineError::internal(format!("container {}: record: {e}", rec.id)))?;
        let dir = self.container_dir(&rec.id);
        let written = write_atomic(&dir, RECORD_FILE, &bytes);
        self.inner.record_cache.forget(&dir.join(RECORD_FILE));
        written
    }

    /// Changes a container's record under the record lock.
    pub(crate) fn update_record(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        let _l = self.record_lock();
        let mut rec = self.container(id)?;
        f(&mut rec);
        self.write_record(&rec)?;
        Ok(rec)
    }

    /// Finds a container by full ID, name (with or without its leading `/`) or unique
    /// ID prefix, in that order (as Docker).
    pub fn container(&self, name: &str) -> Result<ContainerRecord> {
        let not_found = || EngineError::not_found(format!("No such container: {name}"));
        if name.is_empty() {
            return Err(not_found());
        }
        // A full ID (what clients use once they have created a container) is one file;
        // anything else is looked up among all records.
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(r) = self
                .inner
                .record_cache
                .read(&self.container_dir(name).join(RECORD_FILE))
            {
                if r.id == name {
                    return Ok(r);
                }
            }
        }
        let records = self.container_records()?;
        if let Some(r) = records.iter().find(|r| r.id == name) {
            return Ok(r.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        if let Some(r) = records
            .iter()
            .find(|r| !r.name.is_empty() && r.name == bare)
        {
            return Ok(r.clone());
        }
        // A legacy link's name, `/parent/alias`, names its target (as Docker's names).
        if let Some((parent, alias)) = bare.rsplit_once('/') {
            let parent = parent.trim_start_matches('/');
            let target = records
                .iter()
                .find(|r| r.name == parent)
                .and_then(|p| p.net.links.iter().find(|l| l.alias == alias))
                .and_then(|l| records.iter().find(|r| r.id == l.container));
            return target.cloned().ok_or_else(not_found);
        }
        if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut matches: Vec<ContainerRecord> = records
            .into_iter()
            .filter(|r| r.id.starts_with(name))
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => matches.pop().ok_or_else(not_found),
            n => Err(EngineError::invalid(format!(
                "container ID prefix {name} is ambiguous: it matches {n} containers"
            ))),
        }
    }

    /// The state of a container from its files (and its shim, when one runs).
    pub fn container_state(&self, id: &str) -> Result<ContainerState> {
        let dir = self.container_dir(id);
        if let Ok(bytes) = fs::read(dir.join(EXIT_FILE)) {
            let rec: ExitRecord = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::internal(format!("container {id}: {EXIT_FILE}: {e}")))?;
            return Ok(ContainerState::Exited(rec));
        }
        let Ok(bytes) = fs::read(dir.join(SHIM_STATE_FILE)) else {
            return Ok(ContainerState::Created);
        };
        let st: ShimState = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::internal(format!("container {id}: {SHIM_STATE_FILE}: {e}"))
        })?;
        match shim_request(&dir, "state")? {
            Some(_) => Ok(ContainerState::Running {
                pid: st.pid,
                started_at: st.started_at,
            }),
            // The shim may have just finished: it writes exit.json before closing the socket.
            None if dir.join(EXIT_FILE).exists() => self.container_state(id),
            None => Ok(ContainerState::Dead),
        }
    }

    fn summary_of(&self, record: ContainerRecord) -> Result<ContainerSummary> {
        let state = self.container_state(&record.id)?;
        Ok(ContainerSummary {
            status: self.container_status(&record.id),
            restarting: self.is_restarting(&record.id),
            paused: matches!(state, ContainerState::Running { .. })
                && self.container_paused(&record),
            record,
            state,
        })
    }

    /// One container with its state (for inspect).
    pub fn container_summary(&self, name: &str) -> Result<ContainerSummary> {
        let record = self.container(name)?;
        self.summary_of(record)
    }

    /// Every container with its state.
    pub fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let mut out = Vec::new();
        for record in self.container_records()? {
            out.push(self.summary_of(record)?);
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    /// Finds the shims of running containers again (on open): logs what runs, what
    /// exited while the daemon was away, and what died without a record.
    /// Removes container directories without a record: creates that a crash
    /// interrupted, or `--rm` containers whose record never reached the disk. Runs when
    /// the engine opens, before anything can create a container.
    pub(crate) fn sweep_incomplete_containers(&self) {
        let dir = self.containers_dir();
        // libcontainer's state of containers that are gone (removed while a crash or a
        // reboot intervened; after a reboot /run is empty anyway).
        if let Ok(rd) = fs::read_dir(&self.inner.runtime_base) {
            for e in rd.flatten() {
                if dir.join(e.file_name()).join(RECORD_FILE).exists() {
                    continue;
                }
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    warn!(path = %e.path().display(), error = %err, "runtime state of a removed container not deleted");
                }
            }
        }
        // Directories of removed containers a stop interrupted the deletion of.
        let removed = self.store().root().join(REMOVED_DIR);
        if let Err(e) = remove_dir_settled(&removed) {
            warn!(path = %removed.display(), error = %e, "removed containers' directories not deleted");
        }
        let Ok(rd) = fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let path = e.path();
            if !path.is_dir() || path.join(RECORD_FILE).exists() {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            // Never a directory whose shim answers (defensive: a record is written
            // before any shim starts).
            if connect_shim(&path).is_ok() {
                warn!(path = %path.display(), "container directory without a record has a live shim; left alone");
                continue;
            }
            let _ = crate::swarm_objects::unmount_task_files(&path);
            let _ = berth_runtime::rootfs::unmount(&path);
            match fs::remove_dir_all(&path) {
                Ok(()) => info!(container.id = %name, "incomplete container directory removed"),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "incomplete container directory not removed")
                }
            }
        }
    }

    /// Finds the containers (and brings up the networks, taking back the running
    /// containers' endpoints).
    pub(crate) fn rediscover_containers(&self) {
        let all = match self.list_containers() {
            Ok(all) => all,
            Err(e) => {
                warn!(error = %e, "cannot list containers");
                Vec::new()
            }
        };
        let (mut running, mut exited, mut dead) = (0, 0, 0);
        let live: std::collections::BTreeSet<String> = all
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running { .. }))
            .map(|c| c.record.id.clone())
            .collect();
        self.open_networks(&live);
        for c in &all {
            match &c.state {
                ContainerState::Running { .. } => running += 1,
                ContainerState::Exited(_) => exited += 1,
                ContainerState::Dead => {
                    // Its shim died while the daemon was away: killed and recorded as
                    // the monitor does (the restart policy then applies at resume).
                    dead += 1;
                    self.reap_orphan(&c.record);
                }
                ContainerState::Created => {}
            }
            // What a crash or a lost race left of a container that does not run (never
            // a cgroup of another state root's containers: only this root's records).
            if !matches!(
                c.state,
                ContainerState::Running { .. } | ContainerState::Dead
            ) {
                self.release_cgroup(&c.record);
                // Mounted by a daemon that was killed before the container's end.
                self.unmount_rootfs_if_idle(&c.record.id);
            }
        }
        if !all.is_empty() {
            info!(
                containers = all.len(),
                running, exited, dead, "containers found"
            );
        }
    }

    /// Containers using an image (IDs).
    pub(crate) fn containers_of_image(&self, image: &Digest) -> Result<Vec<String>> {
        Ok(self
            .container_records()?
            .into_iter()
            .filter(|r| r.image_id == *image)
            .map(|r| r.id)
            .collect())
    }

    /// GC roots of every container: its image's layer snapshots.
    pub(crate) fn container_roots(&self) -> Result<ExtraRoots> {
        let mut roots = ExtraRoots::default();
        let mut snaps: HashSet<Digest> = HashSet::new();
        for r in self.container_records()? {
            snaps.extend(r.layers.iter().copied());
        }
        roots.snapshots = snaps;
        Ok(roots)
    }

    pub(crate) fn overlay(&self, rec: &ContainerRecord) -> OverlayRootfs {
        let mut o = OverlayRootfs::new(
            rec.layers
                .iter()
                .map(|d| self.store().snapshots.path(d))
                .collect(),
            &self.container_dir(&rec.id),
        );
        // A --rm container's writable layer is thrown away: never sync it.
        o.volatile = rec.run.auto_remove;
        o.idmap = rec.userns.map(|m| (self.userns_path(&rec.id), m));
        o
    }

    /// An `--userns=auto` container's own range: the pool's lowest `size` ids that no
    /// container's mapping (and not the daemon's `userns_remap`) overlaps. Called with
    /// the record lock held, so two creates never get the same range; a removed
    /// container's range is free again. The state root must take idmapped mounts, as
    /// with `userns_remap` (checked once, with the first range given out).
    fn allocate_auto_userns(
        &self,
        mode: &str,
        size: u32,
        pool: &berth_runtime::userns::AutoPool,
    ) -> Result<berth_runtime::userns::IdMap> {
        let mut used: Vec<berth_runtime::userns::IdMap> = self
            .container_records()?
            .iter()
            .filter_map(|r| r.userns)
            .collect();
        used.extend(self.remap());
        let map = pool.allocate(size, &used).ok_or_else(|| {
            EngineError::invalid(format!(
                "--userns={mode}: no free range of {size} ids is left in the subordinate ids of the user {} ({} containers hold ranges); remove containers or add a range to /etc/subuid and /etc/subgid",
                berth_runtime::userns::AUTO_USER,
                used.len()
            ))
        })?;
        if self.inner.idmap_checked.get().is_none() {
            berth_runtime::userns::probe_idmap(self.store().root(), &map).map_err(|e| {
                EngineError::invalid(format!(
                    "--userns={mode}: the state root {} cannot be idmapped on this kernel: {e}; berth shares image layers with user namespaces only through idmapped mounts (Linux 5.19 for overlayfs over them; tmpfs from 6.3)",
                    self.store().root().display()
                ))
            })?;
            let _ = self.inner.idmap_checked.set(());
        }
        Ok(map)
    }

    /// Where a remapped container's user namespace is kept.
    pub(crate) fn userns_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(USERNS_FILE)
    }

    /// Makes a remapped container's user namespace unless it is kept already (it is
    /// gone after a reboot).
    pub(crate) fn ensure_userns(&self, rec: &ContainerRecord) -> Result<()> {
        let Some(map) = rec.userns else {
            return Ok(());
        };
        let path = self.userns_path(&rec.id);
        if berth_runtime::userns::is_userns(&path) {
            return Ok(());
        }
        berth_runtime::userns::create(&path, &map)
            .map_err(|e| EngineError::new(e.kind(), format!("container {}: {e}", rec.id)))
    }

    /// What bind sources may expose (see `berth_runtime::mounts::SensitivePaths`):
    /// berth's state root and API socket are refused, the operator's
    /// `allow_bind_sources` allowed.
    pub(crate) fn bind_policy(&self) -> berth_runtime::mounts::SensitivePaths {
        let mut engine_paths = vec![self.store().root().to_path_buf()];
        if let Some(sock) = self.config().host.strip_prefix("unix://") {
            engine_paths.push(PathBuf::from(sock));
        }
        berth_runtime::mounts::SensitivePaths {
            engine_paths,
            allowed: self.config().allow_bind_sources.clone(),
        }
    }

    /// Mounts the container's rootfs (if it is not) and keeps it mounted while the
    /// returned hold lives. A container's rootfs is mounted from its create (its start
    /// follows) until it stops: when it exits, and when the last hold goes while it does
    /// not run (a failed start, a `docker cp` into a stopped container), the rootfs is
    /// unmounted, as Docker does at stop (see [`Engine::unmount_rootfs_if_idle`]).
    pub(crate) fn hold_rootfs(&self, rec: &ContainerRecord) -> Result<(PathBuf, RootfsHold)> {
        *self
            .inner
            .rootfs_holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(rec.id.clone())
            .or_default() += 1;
        let hold = RootfsHold {
            engine: self.clone(),
            id: rec.id.clone(),
        };
        self.ensure_userns(rec)?;
        let target = self.overlay(rec).mount().map_err(rootfs_err)?;
        Ok((target, hold))
    }

    /// Unmounts the rootfs of a container that has run and stopped, unless a hold is
    /// taken (checked under the holds' lock, so no start can mount it meanwhile). A
    /// created container keeps its rootfs mounted until it has run: a `--rm` container's
    /// overlay is `volatile` and cannot be mounted twice. A file a process still holds
    /// open in it keeps the detached mount alive until closed.
    pub(crate) fn unmount_rootfs_if_idle(&self, id: &str) {
        let holds = self
            .inner
            .rootfs_holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if holds.get(id).is_some_and(|n| *n > 0) {
            return;
        }
        if !matches!(
            self.container_state(id),
            Ok(ContainerState::Exited(_) | ContainerState::Dead)
        ) {
            return;
        }
        let dir = self.container_dir(id);
        if let Err(e) = berth_runtime::rootfs::unmount(&dir) {
            warn!(container.id = %id, error = %e, "rootfs not unmounted");
        }
    }

    /// `docker create`: fits the limits to the host, mounts the rootfs, generates the
    /// runtime spec, records the container. Returns its ID and the warnings for the
    /// options the host cannot honour (discarded, as Docker does).
    #[instrument(skip_all, fields(image = %image))]
    pub fn create_container(&self, image: &str, opts: &CreateOptions) -> Result<Created> {
        let host = self.host();
        let lacking = if host.features.overlayfs == berth_runtime::host::Support::No {
            Some("this host's kernel has no overlayfs: berth cannot mount a container's root filesystem".to_string())
        } else if host.features.mount_setattr == berth_runtime::host::Support::No {
            Some(format!(
                "this host's kernel ({}) has no mount_setattr (Linux 5.12): the runtime (youki's libcontainer 0.7) mounts every container filesystem with it",
                host.kernel_release
            ))
        } else if host.cgroup.mode == berth_runtime::host::CgroupMode::None {
            Some(format!(
                "this host has no cgroup filesystem at {}: berth cannot run containers without one",
                host.cgroup.root.display()
            ))
        } else {
            host.no_device_filter()
        };
        if let Some(rule) = lacking {
            return Err(EngineError::new(berth_types::ErrorKind::Unavailable, rule));
        }
        // Devices and device cgroup rules, checked against the host's nodes now (Docker
        // does it at start), so a missing device creates nothing.
        berth_runtime::devices::apply(
            Vec::new(),
            &opts.runtime.devices,
            &opts.runtime.device_cgroup_rules,
        )
        .map_err(|e| EngineError::invalid(e.to_string()))?;
        for ns in opts.runtime.host_namespaces.names() {
            if !self.config().allow_host_namespaces.iter().any(|a| a == ns) {
                return Err(EngineError::new(
                    berth_types::ErrorKind::Forbidden,
                    format!(
                        "--{ns}=host: sharing the host's {ns} namespace is refused by this daemon's policy; an operator allows it with allow_host_namespaces = [\"{ns}\"] in the daemon's config file"
                    ),
                ));
            }
        }
        let settings = &opts.settings;
        settings.restart_policy.validate()?;
        if settings.auto_remove && !settings.restart_policy.is_none() {
            return Err(EngineError::invalid(
                "conflicting options: cannot specify both --restart and --rm",
            ));
        }
        if let Some(s) = &settings.stop_signal {
            if crate::lifecycle::parse_signal(s).is_none() {
                return Err(EngineError::invalid(format!("invalid stop signal: {s}")));
            }
        }
        let auto = match &opts.userns_auto {
            Some(mode) => {
                let size = berth_runtime::userns::parse_auto(mode)
                    .map_err(EngineError::invalid)?
                    .ok_or_else(|| {
                        EngineError::invalid(format!("--userns={mode}: not an auto mode"))
                    })?;
                if opts.runtime.host_namespaces.user {
                    return Err(EngineError::invalid(format!(
                        "conflicting options: --userns=host and --userns={mode}"
                    )));
                }
                let pool = berth_runtime::userns::AutoPool::read()
                    .map_err(|e| EngineError::new(e.kind(), e.to_string()))?;
                Some((mode.clone(), size, pool))
            }
            None => None,
        };
        let remap = self
            .remap()
            .filter(|_| !opts.runtime.host_namespaces.user && auto.is_none());
        if remap.is_some() || auto.is_some() {
            // Docker's rules and words (daemon/daemon_unix.go); ipc, uts and cgroupns
            // are refused too (the runtime joins the user namespace before any other).
            let hn = &opts.runtime.host_namespaces;
            let refused = if opts.runtime.privileged {
                Some("privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode".to_string())
            } else if opts.runtime.network == NetworkMode::Host || opts.net.mode == "host" {
                Some(
                    "cannot share the host's network namespace when user namespaces are enabled"
                        .to_string(),
                )
            } else if hn.pid {
                Some(
                    "cannot share the host PID namespace when user namespaces are enabled"
                        .to_string(),
                )
            } else {
                [(hn.ipc, "ipc"), (hn.uts, "uts"), (hn.cgroup, "cgroupns")]
                    .into_iter()
                    .find(|(on, _)| *on)
                    .map(|(_, n)| format!(
                        "--{n}=host with user namespaces enabled is not supported yet: add --userns=host"
                    ))
            };
            if let Some(msg) = refused {
                return Err(EngineError::invalid(msg));
            }
        }
        let mut runtime_opts = opts.runtime.clone();
        let (resources, warnings) = berth_runtime::resources::fit_to_host(
            &opts.runtime.resources,
            &self.host().cgroup.caps,
        )
        .map_err(|e| EngineError::invalid(e.to_string()))?;
        runtime_opts.resources = resources;
        let mut net_req = opts.net.clone();
        if net_req.mode.is_empty() && opts.runtime.network == NetworkMode::Host {
            net_req.mode = "host".into();
        }
        let net = self.resolve_net_request(&net_req)?;
        let is_task = opts.labels.contains_key(crate::services::LABEL_TASK_ID);
        for att in &net.networks {
            self.check_manually_attachable(&att.network_id, is_task)?;
        }
        runtime_opts.network = if net.mode == "host" {
            NetworkMode::Host
        } else {
            NetworkMode::None
        };
        if settings.init {
            runtime_opts.init = Some(self.config().init_binary()?);
        }
        let lease = self.store().leases.acquire();
        let (img, _) = self.resolve(image)?;
        let layers: Vec<Digest> = img.layers.iter().map(|l| l.diff_id).collect();
        for d in &layers {
            lease.add_snapshot(*d);
        }
        let run_config = self.run_config(&img.id.to_string())?;
        // -P publishes the image's exposed ports too.
        let mut net = net;
        for p in run_config.exposed_ports.iter().flat_map(|m| m.keys()) {
            if crate::networks::parse_port_key(p).is_ok() && !net.exposed_ports.contains(p) {
                net.exposed_ports.push(p.clone());
            }
        }
        let id = random_id()?;
        let _records = self.record_lock();
        let inherited = self.volumes_from_mounts(&opts.mounts.volumes_from)?;
        let name = match &opts.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !valid_name(n) {
                    return Err(EngineError::invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some(other) = self.container_records()?.iter().find(|r| r.name == n) {
                    return Err(EngineError::conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        other.id
                    )));
                }
                n.to_string()
            }
            None => format!("berth_{}", &id[..12]),
        };
        let userns = match &auto {
            Some((mode, size, pool)) => Some(self.allocate_auto_userns(mode, *size, pool)?),
            None => remap,
        };
        let dir = self.container_dir(&id);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create", e))?;
        let cleanup = |dir: &Path| {
            let _ = berth_runtime::rootfs::unmount(dir);
            let _ = berth_runtime::userns::remove(&dir.join(USERNS_FILE));
            let _ = fs::remove_dir_all(dir);
        };
        let rec = ContainerRecord {
            version: CONTAINER_RECORD_VERSION,
            id: id.clone(),
            image: image.to_string(),
            image_id: img.id,
            layers,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            log_opts: Some(opts.log_opts.clone()),
            host_namespaces: opts.runtime.host_namespaces,
            userns,
            userns_mode: auto.map(|(mode, _, _)| mode).unwrap_or_default(),
            log_driver: if opts.log_driver == "none" {
                "none".to_string()
            } else {
                "json-file".to_string()
            },
            log_max_size: opts.log_max_size.unwrap_or(self.config().log_defaults().0),
            log_max_file: opts
                .log_max_file
                .unwrap_or(self.config().log_defaults().1)
                .max(1),
            cgroup_path: format!("/berth/{id}"),
            name,
            labels: opts.labels.clone(),
            args: Vec::new(),
            network_host: net.mode == "host",
            privileged: opts.runtime.privileged,
            read_only: opts.runtime.read_only,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            tty: opts.runtime.tty,
            open_stdin: opts.open_stdin,
            stdin_once: opts.stdin_once,
            attach_stdin: opts.attach_stdin,
            attach_stdout: opts.attach_stdout,
            attach_stderr: opts.attach_stderr,
            console_size: opts.console_size,
            // Filled below from the spec; --rm already decides how the overlay mounts.
            run: RunSettings {
                auto_remove: settings.auto_remove,
                ..RunSettings::default()
            },
            resources: runtime_opts.resources.clone(),
            mounts: Vec::new(),
            mount_config: opts.mounts.echo.clone(),
            net,
            etc_mounts: Vec::new(),
            devices: opts.runtime.devices.clone(),
            device_cgroup_rules: opts.runtime.device_cgroup_rules.clone(),
            task_files: opts.task_files.clone(),
        };
        // Held until the record is written: volumes this create uses cannot be removed
        // meanwhile (see volumes.rs).
        let _volumes_guard = crate::volumes::volumes_lock();
        let mut created_volumes: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            // Stays mounted: a created container's start follows (see `hold_rootfs`).
            self.ensure_userns(&rec)?;
            let rootfs = self.overlay(&rec).mount().map_err(rootfs_err)?;
            let image_volumes: Vec<String> = run_config
                .volumes
                .as_ref()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default();
            let prepared = self.prepare_mounts(
                &rootfs,
                &opts.mounts,
                &inherited,
                &image_volumes,
                &self.bind_policy(),
                crate::changes::owner_shift(&rec),
            )?;
            created_volumes = prepared.created.clone();
            let mut rec = rec.clone();
            rec.mounts = prepared.points;
            let mut config_volumes = opts.mounts.config_volumes.clone();
            for v in image_volumes {
                if !config_volumes.contains(&v) {
                    config_volumes.push(v);
                }
            }
            rec.mount_config.volumes = config_volumes;
            let mut ropts = runtime_opts.clone();
            ropts.mounts.extend(prepared.specs);
            if rec.net.bridged() {
                ropts.netns_path = Some(self.netns_path(&id));
            }
            ropts.bind_policy = self.bind_policy();
            let idmapped_binds: Vec<&crate::volumes::MountPoint> =
                rec.mounts.iter().filter(|m| wants_idmap(m)).collect();
            if rec.userns.is_none() {
                if let Some(m) = idmapped_binds.first() {
                    return Err(EngineError::invalid(format!(
                        "bind {}:{}: idmap needs user namespace remapping (berth daemon --userns-remap)",
                        m.source, m.destination
                    )));
                }
            }
            if let Some(map) = rec.userns {
                ropts.userns = Some((self.userns_path(&id), map));
                // Volumes through their idmapped mounts (see VOLMAP_DIR).
                let volmap = dir.join(VOLMAP_DIR);
                let bindmap = dir.join(BINDMAP_DIR);
                for m in ropts.mounts.iter_mut() {
                    match m {
                        MountSpec::Volume { name, source, .. } => {
                            let at = volmap.join(name.as_str());
                            fs::create_dir_all(&at).map_err(|e| io_err(&at, "create", e))?;
                            *source = at;
                        }
                        MountSpec::Bind {
                            source,
                            target,
                            read_only,
                        } => {
                            let Some(p) = idmapped_binds.iter().find(|p| p.resolved == *target)
                            else {
                                continue;
                            };
                            // The rules on bind sources hold for the real source (the
                            // spec names the idmapped mount, below berth's state root).
                            ropts
                                .bind_policy
                                .check(source, *read_only)
                                .map_err(|e| EngineError::invalid(e.to_string()))?;
                            fs::create_dir_all(&bindmap)
                                .map_err(|e| io_err(&bindmap, "create", e))?;
                            let at = bindmap.join(bindmap_key(&p.destination));
                            let made = if source.is_dir() {
                                fs::create_dir_all(&at)
                            } else {
                                fs::write(&at, b"")
                            };
                            made.map_err(|e| io_err(&at, "create", e))?;
                            *source = at;
                        }
                        MountSpec::Tmpfs { .. } => {}
                    }
                }
                ropts.bind_policy.allowed.push(volmap);
                ropts.bind_policy.allowed.push(bindmap);
            }
            // /etc/hosts, resolv.conf, hostname: files of the container's directory
            // (written at each start), unless the user mounts something there; berth's
            // own, so allowed below its state root.
            for (file, dest) in crate::networks::ETC_FILES {
                if ropts.mounts.iter().any(|m| m.target() == dest) {
                    continue;
                }
                let source = dir.join(file);
                write_replace(&dir, file, b"")?;
                let resolved = crate::volumes::prepare_target(
                    &rootfs,
                    dest,
                    true,
                    rec.userns.map(|m| (m.uid, m.gid)),
                )?;
                ropts.bind_policy.allowed.push(source.clone());
                ropts.mounts.push(MountSpec::Bind {
                    source: source.clone(),
                    target: resolved.clone(),
                    read_only: false,
                });
                rec.etc_mounts.push(crate::volumes::MountPoint {
                    kind: "bind".into(),
                    name: String::new(),
                    source: source.to_string_lossy().to_string(),
                    destination: dest.to_string(),
                    driver: String::new(),
                    mode: String::new(),
                    rw: true,
                    propagation: "rprivate".into(),
                    anonymous: false,
                    resolved,
                });
            }
            // A task's secrets and configs: files of its tmpfs (filled at each start),
            // read-only at their targets.
            for (i, f) in rec.task_files.iter().enumerate() {
                // An empty placeholder until the first start mounts the tmpfs over it.
                let source = crate::swarm_objects::task_file_source(&dir, i);
                if let Some(parent) = source.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_err(parent, "create", e))?;
                }
                fs::write(&source, b"").map_err(|e| io_err(&source, "create", e))?;
                let resolved = crate::volumes::prepare_target(
                    &rootfs,
                    &f.target,
                    true,
                    rec.userns.map(|m| (m.uid, m.gid)),
                )?;
                ropts.bind_policy.allowed.push(source.clone());
                ropts.mounts.push(MountSpec::Bind {
                    source,
                    target: resolved,
                    read_only: true,
                });
            }
            if ropts.host_namespaces.uts {
                // The host's UTS namespace: its hostname (the runtime sets none).
                ropts.hostname = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned();
            } else if ropts.hostname.is_empty() {
                ropts.hostname = id[..12].to_string();
            }
            if ropts.cgroups_path.is_none() {
                ropts.cgroups_path = Some(PathBuf::from(&rec.cgroup_path));
            }
            let spec = berth_runtime::spec::generate_for_host(
                &run_config,
                &rootfs,
                &ropts,
                &host.seccomp,
                &host.cgroup,
            )
            .map_err(spec_err)?;
            let bundle = dir.join(BUNDLE_DIR);
            fs::create_dir_all(&bundle).map_err(|e| io_err(&bundle, "create", e))?;
            let cfg = serde_json::to_vec_pretty(&spec)
                .map_err(|e| EngineError::internal(format!("container {id}: spec: {e}")))?;
            // A --rm container is thrown away after a crash (the startup sweep removes a
            // directory whose record did not reach the disk): no need to wait for it.
            let write = if settings.auto_remove {
                write_replace
            } else {
                write_atomic
            };
            write(&bundle, "config.json", &cfg)?;
            let process = spec.process().as_ref();
            rec.args = process.and_then(|p| p.args().clone()).unwrap_or_default();
            if let Some(linux) = spec.linux() {
                rec.masked_paths = linux.masked_paths().clone().unwrap_or_default();
                rec.readonly_paths = linux
                    .readonly_paths()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p != berth_runtime::spec::CGROUP_V1_TMPFS)
                    .collect();
            }
            let mut run = settings.clone();
            run.env = process
                .and_then(|p| p.env().clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|e| !e.starts_with("HOSTNAME="))
                .collect();
            // A bare `NAME` unsets the variable in the process (as Docker) and stays in
            // Config.Env as given.
            for e in ropts.env.iter().filter(|e| !e.contains('=')) {
                if !run.env.contains(e) {
                    run.env.push(e.clone());
                }
            }
            run.working_dir = ropts
                .workdir
                .clone()
                .or_else(|| run_config.working_dir.clone())
                .unwrap_or_default();
            run.user = ropts
                .user
                .clone()
                .or_else(|| run_config.user.clone())
                .unwrap_or_default();
            // Docker's Config shows the effective entrypoint and command.
            let (entrypoint, cmd) = match &ropts.entrypoint_override {
                Some(ep) if !ep.is_empty() => {
                    (ep.clone(), ropts.args_override.clone().unwrap_or_default())
                }
                ep => (
                    ep.clone()
                        .unwrap_or_else(|| run_config.entrypoint.clone().unwrap_or_default()),
                    ropts
                        .args_override
                        .clone()
                        .unwrap_or_else(|| run_config.cmd.clone().unwrap_or_default()),
                ),
            };
            run.entrypoint = Some(entrypoint).filter(|e| !e.is_empty());
            run.cmd = Some(cmd).filter(|c| !c.is_empty());
            run.hostname = ropts.hostname.clone();
            if run.stop_signal.is_none() {
                run.stop_signal = run_config.stop_signal.clone().filter(|s| !s.is_empty());
            }
            run.healthcheck = merge_healthcheck(
                run_config.healthcheck.as_ref(),
                settings.healthcheck.as_ref(),
            );
            rec.run = run;
            let bytes = serde_json::to_vec_pretty(&rec)
                .map_err(|e| EngineError::internal(format!("container {id}: record: {e}")))?;
            // Last: the record makes the container exist.
            write(&dir, RECORD_FILE, &bytes)
        })();
        if let Err(e) = result {
            cleanup(&dir);
            self.discard_volumes_locked(&created_volumes);
            return Err(e);
        }
        drop(_volumes_guard);
        drop(lease);
        drop(_records);
        info!(container.id = %id, image.id = %rec.image_id, "container created");
        for w in &warnings {
            warn!(container.id = %id, "{w}");
        }
        self.emit_container(&rec, "create", &[]);
        Ok(Created { id, warnings })
    }

    /// A remapped container's volumes as idmapped mounts under `volmap/NAME` (each made
    /// unless mounted already, e.g. after a reboot): host id N on disk is the
    /// container's N, so a volume's files are the same ids with and without remapping,
    /// and the copy of the image's content into it is root's inside.
    fn map_idmapped_mounts(&self, rec: &ContainerRecord) -> Result<()> {
        if rec.userns.is_none() {
            return Ok(());
        }
        let dir = self.container_dir(&rec.id);
        let mut ns = None;
        for m in &rec.mounts {
            let at = if m.kind == "volume" {
                dir.join(VOLMAP_DIR).join(&m.name)
            } else if wants_idmap(m) {
                dir.join(BINDMAP_DIR).join(bindmap_key(&m.destination))
            } else {
                continue;
            };
            if fs::symlink_metadata(&at).is_err() {
                // Created before volumes were mapped: its spec binds the volume itself.
                continue;
            }
            if berth_runtime::rootfs::is_mount_point(&at).map_err(rootfs_err)? {
                continue;
            }
            let ns = match &mut ns {
                Some(f) => f,
                None => ns.insert(
                    berth_runtime::userns::open(&self.userns_path(&rec.id)).map_err(|e| {
                        EngineError::new(e.kind(), format!("container {}: {e}", rec.id))
                    })?,
                ),
            };
            berth_runtime::userns::idmap_mount(Path::new(&m.source), &at, ns).map_err(|e| {
                EngineError::new(
                    ErrorKind::Internal,
                    format!(
                        "container {}: {} {}: idmapped mount of {} (open_tree, mount_setattr MOUNT_ATTR_IDMAP, move_mount; the filesystem must support idmapped mounts): {e}",
                        rec.id,
                        m.kind,
                        if m.name.is_empty() { &m.destination } else { &m.name },
                        m.source
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// The mounts `--volumes-from` gives a new container: every volume and bind of each
    /// source container (tmpfs mounts are its own), with its mode, read-only with `:ro`;
    /// a later source's mount at the same destination replaces an earlier one's (as
    /// Docker). A missing source is Docker's 404 `No such container`.
    fn volumes_from_mounts(
        &self,
        from: &[crate::volumes::VolumesFrom],
    ) -> Result<Vec<crate::volumes::MountPoint>> {
        let mut out: Vec<crate::volumes::MountPoint> = Vec::new();
        for f in from {
            // A missing source is a bad request in Docker (400 "No such container: X"),
            // not a missing object of the request's own path.
            let src = self.container(&f.container).map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    EngineError::invalid(e.message)
                } else {
                    e
                }
            })?;
            for m in src
                .mounts
                .iter()
                .filter(|m| matches!(m.kind.as_str(), "volume" | "bind"))
            {
                out.retain(|o| o.destination != m.destination);
                out.push(crate::volumes::MountPoint {
                    rw: m.rw && !f.read_only,
                    // Docker does not carry the source's Mode over.
                    mode: String::new(),
                    ..m.clone()
                });
            }
        }
        Ok(out)
    }

    /// `docker start`: spawns the container's shim and returns once the container runs.
    /// Attachers waiting for this start are connected before the process runs (see
    /// `attach.rs`).
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn start_container(&self, name: &str) -> Result<()> {
        let r = self.start_inner(name, true);
        if r.is_err() {
            // As Docker: a `--rm` container whose start failed is removed (the docker
            // CLI waits for that removal before it reports the error).
            if let Ok(rec) = self.container(name) {
                if rec.run.auto_remove {
                    if let Err(e) = self.remove_container_and_volumes(&rec.id, true, true) {
                        warn!(container.id = %rec.id, error = %e, "--rm: removing the container failed");
                    }
                }
            }
        }
        r
    }

    /// Starts a container; `manual` for a user's start (clears a user's stop and the
    /// restart count), not for the restart policy's.
    pub(crate) fn start_inner(&self, name: &str, manual: bool) -> Result<()> {
        let rec = self.container(name)?;
        let (_start, pending) = self.inner.attachments.begin_start(&rec.id);
        match self.container_state(&rec.id)? {
            ContainerState::Running { .. } => {
                return Err(EngineError::conflict(format!(
                    "container {} is already running",
                    rec.id
                )))
            }
            // The last run's shim may still be removing its cgroups and runtime state (it
            // does after reporting the exit); a shim that died without recording, or a
            // start that failed half-way, can leave libcontainer state behind.
            ContainerState::Dead | ContainerState::Created | ContainerState::Exited(_) => {
                self.wait_for_shim(&rec.id);
                self.cleanup_runtime(&rec)?
            }
        }
        let dir = self.container_dir(&rec.id);
        // Held until the container runs (then it keeps the rootfs mounted) or the
        // start failed (then it is unmounted again).
        let (rootfs, _rootfs_hold) = self.hold_rootfs(&rec)?;
        crate::volumes::check_mount_targets(&rootfs, &rec.mounts)?;
        crate::volumes::check_mount_targets(&rootfs, &rec.etc_mounts)?;
        self.map_idmapped_mounts(&rec)?;
        self.write_task_files(&rec)?;
        let (shim, driver) = shim_binaries()?;
        // Legacy links: their targets must run (Docker's check, before anything is made).
        let link_env = self.legacy_link_env(&rec)?;
        // What a previous run left (an exit while the daemon was away), then this run's.
        self.network_teardown(&rec.id);
        self.network_setup(&rec)?;
        if let Err(e) = self.apply_link_env(&rec, &link_env) {
            self.network_teardown(&rec.id);
            return Err(e);
        }
        for f in [EXIT_FILE, SHIM_STATE_FILE] {
            let _ = fs::remove_file(dir.join(f));
        }
        // Sent to the shim over its stdin once it runs (`port_proxy.rs`): the userland
        // proxy's sockets, then one end of a socket pair per pending attacher (its
        // client gets the other end once the container runs; `attach.rs`).
        let (proxy, mut handed): (Vec<_>, Vec<_>) =
            self.take_proxy_sockets(&rec.id).into_iter().unzip();
        let mut attach_specs = Vec::with_capacity(pending.len());
        let mut attached = Vec::with_capacity(pending.len());
        let handoff = (|| {
            for (opts, tx) in pending {
                let (ours, theirs) = UnixStream::pair()?;
                attach_specs.push(opts.streams());
                handed.push(theirs.into());
                attached.push((ours, tx));
            }
            crate::port_proxy::Handoff::new(handed)
        })();
        let handoff = match handoff {
            Ok(h) => h,
            Err(e) => {
                self.network_teardown(&rec.id);
                return Err(EngineError::internal(format!(
                    "container {}: sockets for the shim (userland proxy, attached clients): {e}",
                    rec.id
                )));
            }
        };
        let cfg = ShimConfig {
            version: SHIM_PROTOCOL_VERSION,
            id: rec.id.clone(),
            log_max_size: rec.log_max_size,
            log_max_file: rec.log_max_file,
            log_none: rec.log_driver == "none",
            cgroup_path: Some(PathBuf::from(&rec.cgroup_path)),
            driver,
            tty: rec.tty,
            open_stdin: rec.open_stdin,
            stdin_once: rec.stdin_once,
            console_size: rec.console_size,
            proxy,
            runtime_root: Some(self.runtime_root(&rec.id)),
            attach: attach_specs,
        };
        let bytes = serde_json::to_vec_pretty(&cfg).map_err(|e| {
            EngineError::internal(format!("container {}: shim config: {e}", rec.id))
        })?;
        write_replace(&dir, SHIM_CONFIG_FILE, &bytes)?;
        // The shim answers on its stdout once the container runs, then detaches.
        let (handoff, stdin) = match handoff {
            Some((h, theirs)) => (Some(h), Stdio::from(theirs)),
            None => (None, Stdio::null()),
        };
        let mut child = Command::new(&shim)
            .arg(&dir)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io_err(&shim, "spawn", e))?;
        if let Some(Err(e)) = handoff.map(crate::port_proxy::Handoff::send) {
            // The shim then reports the start as failed.
            warn!(container.id = %rec.id, error = %e, "userland proxy: sockets not sent to the shim");
        }
        let mut reply = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut reply);
        }
        let _ = child.wait();
        let reply = reply.trim();
        if let Some(pid) = reply.strip_prefix("ok ") {
            info!(container.id = %rec.id, pid = %pid, "container started");
            // The clients attached before the start (a client that left meanwhile drops
            // its end: the shim sees it close).
            for (stream, tx) in attached {
                drop(tx.send(stream));
            }
            self.update_status(&rec.id, |s| {
                if manual {
                    s.manually_stopped = false;
                    s.restart_count = 0;
                }
                s.health = None;
            })?;
            self.monitor(&rec.id);
            // Only a container with a health check needs its run's start time.
            if rec.run.healthcheck.is_some() {
                if let Ok(ContainerState::Running { started_at, .. }) =
                    self.container_state(&rec.id)
                {
                    self.start_health_checks(&rec.id, &started_at);
                }
            }
            // Containers linking to this one see its new address (Docker's parent update).
            self.refresh_link_hosts(Some(&rec.id), None);
            self.emit_container(&rec, "start", &[]);
            return Ok(());
        }
        let msg = reply.strip_prefix("error ").unwrap_or(reply);
        self.network_teardown(&rec.id);
        // The runtime may have made the cgroup before the start failed.
        self.release_cgroup(&rec);
        let hint = exec_failure_hint(msg);
        Err(EngineError::internal(format!(
            "container {}: start failed: {}{hint}",
            rec.id,
            if msg.is_empty() {
                "the shim exited without a reply (see shim.log)"
            } else {
                msg
            }
        )))
    }

    /// Puts the environment of the container's legacy links into its runtime spec (for
    /// its process and its execs), replacing the previous start's: after the fixed
    /// variables, never over a variable the container's own Config.Env sets (Docker's
    /// `CreateDaemonEnvironment`). The spec's annotation names what was added.
    fn apply_link_env(&self, rec: &ContainerRecord, link_env: &[String]) -> Result<()> {
        const ANNOTATION: &str = "berth.link-env";
        let bundle = self.container_dir(&rec.id).join(BUNDLE_DIR);
        let path = bundle.join("config.json");
        let bytes = fs::read(&path).map_err(|e| io_err(&path, "read", e))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::internal(format!("{}: {e}", path.display())))?;
        let previous: Vec<String> = spec
            .pointer(&format!("/annotations/{ANNOTATION}"))
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        if previous.is_empty() && link_env.is_empty() {
            return Ok(());
        }
        let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
        let mut env: Vec<String> = spec
            .pointer("/process/env")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        env.retain(|e| !previous.contains(&key(e)));
        let own: HashSet<String> = env.iter().map(|e| key(e)).collect();
        let added: Vec<String> = link_env
            .iter()
            .filter(|e| !own.contains(&key(e)))
            .cloned()
            .collect();
        let at = env
            .iter()
            .position(|e| e.starts_with("HOSTNAME="))
            .map_or(0, |i| i + 1);
        let at = env
            .iter()
            .position(|e| e.starts_with("TERM="))
            .map_or(at, |i| at.max(i + 1));
        let keys: Vec<String> = added.iter().map(|e| key(e)).collect();
        env.splice(at..at, added);
        if let Some(p) = spec.get_mut("process").and_then(|p| p.as_object_mut()) {
            p.insert("env".into(), serde_json::json!(env));
        }
        if let Some(obj) = spec.as_object_mut() {
            let ann = obj
                .entry("annotations")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(a) = ann.as_object_mut() {
                if keys.is_empty() {
                    a.remove(ANNOTATION);
                } else {
                    a.insert(
                        ANNOTATION.into(),
                        serde_json::Value::String(serde_json::json!(keys).to_string()),
                    );
                }
            }
        }
        let out = serde_json::to_vec_pretty(&spec)
            .map_err(|e| EngineError::internal(format!("container {}: spec: {e}", rec.id)))?;
        write_replace(&bundle, "config.json", &out)
    }

    /// Docker's names of a container: `/name`, and `/parent/alias` for every legacy link
    /// to it (as `docker ps` lists them).
    pub fn container_link_names(
        &self,
        records: &[ContainerRecord],
    ) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in records {
            for l in &p.net.links {
                if records.iter().any(|r| r.id == l.container) {
                    out.entry(l.container.clone())
                        .or_default()
                        .push(format!("/{}/{}", p.name, l.alias));
                }
            }
        }
        out
    }

    /// Inspect's HostConfig.Links of a container: `/target:/self/alias` for each legacy
    /// link whose target still exists.
    pub fn container_links(&self, rec: &ContainerRecord) -> Vec<String> {
        let records = self.container_records().unwrap_or_default();
        rec.net
            .links
            .iter()
            .filter_map(|l| {
                let t = records.iter().find(|r| r.id == l.container)?;
                Some(format!("/{}:/{}/{}", t.name, rec.name, l.alias))
            })
            .collect()
    }

    /// `docker rm --link /self/alias` (`DELETE /containers/self/alias?link=1`): removes
    /// the link, not a container; a running linking container's /etc/hosts loses it.
    #[instrument(skip_all, fields(link = %name))]
    pub fn remove_link(&self, name: &str) -> Result<()> {
        let target = self.container(name)?;
        let full = format!("/{}", name.trim_start_matches('/'));
        let (parent, alias) = full.rsplit_once('/').unwrap_or(("", &full));
        if parent.is_empty() {
            return Err(EngineError::conflict(
                "Conflict, cannot remove the default link name of the container",
            ));
        }
        let parent_rec = self.container(parent).map_err(|_| {
            EngineError::not_found(format!("Cannot get parent {parent} for link name {full}"))
        })?;
        let updated = self.update_record(&parent_rec.id, |r| {
            r.net
                .links
                .retain(|l| !(l.alias == alias && l.container == target.id))
        })?;
        self.refresh_link_hosts(None, Some(&updated.id));
        info!(container.id = %updated.id, link = %full, "link removed");
        Ok(())
    }

    /// Sends a signal to the container's init (`docker kill`).
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn kill_container(&self, name: &str, signal: i32) -> Result<()> {
        let rec = self.container(name)?;
        let stop_signal = rec
            .run
            .stop_signal
            .as_deref()
            .and_then(crate::lifecycle::parse_signal)
            .unwrap_or(libc::SIGTERM);
        let running = matches!(
            self.container_state(&rec.id)?,
            ContainerState::Running { .. }
        );
        if running && (signal == libc::SIGKILL || signal == stop_signal) {
            // As Docker: killing with SIGKILL or the stop signal is a user's stop, which
            // the restart policy respects.
            self.mark_stopped_by_user(&rec.id)?;
        }
        self.signal_container(&rec.id, signal)?;
        if running && signal == libc::SIGKILL {
            // Docker's kill with SIGKILL returns once the container has exited: an
            // inspect right after says exited, an rm right after works.
            self.wait_container(&rec.id)?;
            self.wait_monitor_done(&rec.id);
        }
        Ok(())
    }

    /// Sends a signal to the container's init; not a user's stop (berth's own kills).
    pub(crate) fn signal_container(&self, name: &str, signal: i32) -> Result<()> {
        let rec = self.container(name)?;
        let dir = self.container_dir(&rec.id);
        // A paused container gets the signal, then is thawed so it can act on it (as
        // Docker does for a container without a StopSignal): kill and rm -f work.
        let paused = self.container_paused(&rec);
        // Its `die` waits for the `kill` event below.
        let in_flight = self.signal_in_flight(&rec.id);
        let sent = shim_request(&dir, &format!("kill {signal}"));
        if paused {
            self.thaw_if_paused(&rec)?;
        }
        match sent? {
            Some(r) if r.trim() == "ok" || r.is_empty() => {
                self.emit_container(&rec, "kill", &[("signal", signal.to_string())]);
                drop(in_flight);
                Ok(())
            }
            Some(r) => Err(EngineError::internal(format!(
                "container {}: kill: {}",
                rec.id,
                r.trim().trim_start_matches("error ")
            ))),
            None => Err(EngineError::conflict(format!(
                "container {} is not running",
                rec.id
            ))),
        }
    }

    /// Blocks until the container exits; returns its exit code (`docker wait`).
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn wait_container(&self, name: &str) -> Result<i32> {
        let rec = self.container(name)?;
        let dir = self.container_dir(&rec.id);
        loop {
            match self.container_state(&rec.id)? {
                ContainerState::Exited(x) => return Ok(x.exit_code),
                ContainerState::Created => {
                    return Err(EngineError::conflict(format!(
                        "container {} is not running",
                        rec.id
                    )))
                }
                ContainerState::Dead => {
                    return Err(EngineError::internal(format!(
                        "container {}: its shim is gone without an exit status",
                        rec.id
                    )))
                }
                ContainerState::Running { .. } => {
                    // Blocks until the shim answers or closes at exit.
                    if shim_request(&dir, "wait")?.is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            }
        }
    }

    /// Removes libcontainer's leftover state of a container whose shim died.
    /// Waits (at most [`SHIM_RELEASE_WAIT`]) until the container's last shim is gone:
    /// after reporting the exit it still removes the cgroups and runtime state.
    pub(crate) fn wait_for_shim(&self, id: &str) {
        let dir = self.container_dir(id);
        if !berth_runtime::shim_protocol::wait_for_shim_exit(&dir, SHIM_RELEASE_WAIT) {
            warn!(container.id = %id, "the container's last shim is still running; going on without it");
        }
    }

    /// Removes a stopped container's cgroups and libcontainer's state directory, whatever
    /// its shim left of them.
    fn release_runtime(&self, rec: &ContainerRecord) {
        self.release_cgroup(rec);
        let runtime = self.inner.runtime_base.join(&rec.id);
        if let Err(e) = fs::remove_dir_all(&runtime) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %runtime.display(), error = %e, "runtime state not deleted");
            }
        }
    }

    /// [`Engine::release_runtime`] once the shim holding `dir_fd`'s lock is gone, in the
    /// background; the daemon's shutdown waits for it ([`Engine::settle_releases`]).
    fn release_runtime_after_shim(&self, rec: ContainerRecord, dir_fd: std::os::fd::OwnedFd) {
        self.inner.releases.begin();
        // Kept for this thread in case no thread can be spawned (a dup: the same lock).
        let fallback = (rec.clone(), dir_fd.try_clone());
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("release".into())
            .stack_size(128 * 1024)
            .spawn(move || engine.release_when_shim_gone(&rec, &dir_fd));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot release a removed container's runtime state in the background");
            match fallback {
                (rec, Ok(fd)) => self.release_when_shim_gone(&rec, &fd),
                (rec, Err(_)) => {
                    self.release_runtime(&rec);
                    self.inner.releases.end();
                }
            }
        }
    }

    fn release_when_shim_gone(&self, rec: &ContainerRecord, dir_fd: &std::os::fd::OwnedFd) {
        berth_runtime::shim_protocol::wait_unlocked(dir_fd, SHIM_RELEASE_WAIT);
        self.release_runtime(rec);
        self.inner.releases.end();
    }

    /// Waits (at most `timeout`) for the runtime state of removed containers that their
    /// shims were still releasing. True when none is left.
    pub(crate) fn settle_releases(&self, timeout: std::time::Duration) -> bool {
        self.inner.releases.wait(timeout)
    }

    pub(crate) fn cleanup_runtime(&self, rec: &ContainerRecord) -> Result<()> {
        let runtime = self.runtime_root(&rec.id);
        if runtime.join(&rec.id).exists() {
            let (_, driver) = shim_binaries()?;
            let out = Command::new(driver)
                .arg("delete")
                .arg(&runtime)
                .arg(&rec.id)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| io_err(&runtime, "run berth-driver delete", e))?;
            if !out.status.success() {
                // The container does not run (callers know): what the runtime could not
                // delete is a state directory left half-made or half-removed (a health
                // check's exec racing the container's end leaves one without its
                // state.json), and would make the next create fail with "container
                // already exists". It goes.
                let state = runtime.join(&rec.id);
                warn!(container.id = %rec.id, error = %String::from_utf8_lossy(&out.stderr).trim(), "runtime cleanup failed; removing the runtime's state directory");
                if let Err(e) = fs::remove_dir_all(&state) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(io_err(&state, "remove the runtime state", e));
                    }
                }
            }
        }
        Ok(())
    }

    /// `docker rm [-v]`: [`Engine::remove_container`], then with `volumes` the anonymous
    /// volumes the container created (not named ones; not ones another container uses).
    pub fn remove_container_and_volumes(
        &self,
        name: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let rec = self.container(name)?;
        self.remove_container(&rec.id, force)?;
        if volumes {
            self.remove_anonymous_volumes(&rec.mounts)?;
        }
        Ok(())
    }

    /// Without force, only a container its restart policy has let go of is removed.
    /// From the exit on, a container is always either monitored (running, or its exit
    /// being handled) or restarting (the monitor hands it over in one step), so the two
    /// sets read under one lock say whether the state is the last one: a container read
    /// as running that exits the next instant is not removed.
    fn refuse_unless_released(&self, id: &str) -> Result<()> {
        let handled_by = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (monitored, restarting) = {
                let l = self.tracking();
                (l.monitored.contains(id), l.restarting.contains(id))
            };
            if restarting {
                // Docker's words (daemon/delete.go).
                return Err(EngineError::conflict(format!(
                        "You cannot remove a restarting container {id}. Stop the container before attempting removal or force remove"
                    )));
            }
            if !monitored {
                break;
            }
            if let ContainerState::Running { .. } = self.container_state(id)? {
                return Err(running_conflict(id));
            }
            if std::time::Instant::now() > handled_by {
                return Err(EngineError::conflict(format!(
                    "cannot remove container {id}: its exit is still being handled: try again"
                )));
            }
            // An exit the monitor is still handling: its restart policy decides first.
            self.wait_monitor_done(id);
        }
        Ok(())
    }

    /// `--rm` after the container exited on its own (its monitor): removed with its
    /// anonymous volumes; its network teardown may still be under way (the `removed`
    /// wait of `docker run --rm` does not wait for the kernel to delete its veths).
    pub(crate) fn auto_remove_container(&self, id: &str) -> Result<()> {
        let rec = self.container(id)?;
        self.remove_container_as(&rec.id, false, true)?;
        self.remove_anonymous_volumes(&rec.mounts)
    }

    /// `docker rm`: refuses a running container unless `force` (then kills it first),
    /// unmounts the rootfs and deletes the container's directory.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn remove_container(&self, name: &str, force: bool) -> Result<()> {
        self.remove_container_as(name, force, false)
    }

    fn remove_container_as(&self, name: &str, force: bool, auto: bool) -> Result<()> {
        let rec = self.container(name)?;
        let dir = self.container_dir(&rec.id);
        if !force {
            self.refuse_unless_released(&rec.id)?;
        } else {
            // The restart policy leaves it alone from here; a restart under way settles
            // first, so the state below is the last one.
            self.mark_stopped_by_user(&rec.id)?;
            self.settle_restart(&rec.id);
        }
        match self.container_state(&rec.id)? {
            ContainerState::Running { .. } if !force => return Err(running_conflict(&rec.id)),
            ContainerState::Running { .. } => {
                match self.kill_container(&rec.id, libc::SIGKILL) {
                    // It exited between the check and the kill: nothing to kill.
                    Err(e) if e.kind == ErrorKind::Conflict => {}
                    r => r?,
                }
                self.wait_container(&rec.id)?;
                self.wait_monitor_done(&rec.id);
            }
            ContainerState::Dead => self.cleanup_runtime(&rec)?,
            ContainerState::Created | ContainerState::Exited(_) => {}
        }
        self.inner.attachments.cancel(&rec.id);
        if !auto {
            self.wait_deferred_teardown(&rec.id);
        }
        self.network_teardown(&rec.id);
        // The container's cgroups and libcontainer's state: its shim removes them after it
        // reported the exit, holding the directory's lock meanwhile. A `--rm` removal,
        // which follows the exit at once and which the client waits for, leaves them to
        // it (and checks once it is gone, in the background); any other waits for it.
        let releasing = berth_runtime::shim_protocol::open_container_dir(&dir)
            .ok()
            .filter(|fd| matches!(berth_runtime::shim_protocol::try_lock(fd), Ok(false)));
        let deferred = match releasing {
            Some(fd) if auto => Some(fd),
            Some(fd) => {
                berth_runtime::shim_protocol::wait_unlocked(&fd, SHIM_RELEASE_WAIT);
                None
            }
            None => None,
        };
        if deferred.is_none() {
            self.release_runtime(&rec);
        }
        // Before anything below deletes the directory: through a mount it would delete
        // the volume's data.
        unmap_idmapped_mounts(&dir)?;
        crate::swarm_objects::unmount_task_files(&dir)?;
        berth_runtime::rootfs::unmount(&dir).map_err(rootfs_err)?;
        berth_runtime::userns::remove(&self.userns_path(&rec.id))
            .map_err(|e| EngineError::new(e.kind(), e.to_string()))?;
        // Remove the record first: a crash after it leaves a directory without a record,
        // which lists as nothing and is removed on the next remove of that directory.
        let _ = fs::remove_file(dir.join(RECORD_FILE));
        self.inner.record_cache.forget(&dir.join(RECORD_FILE));
        self.discard_container_dir(&rec.id, &dir)?;
        if let Some(fd) = deferred {
            self.release_runtime_after_shim(rec.clone(), fd);
        }
        self.forget_execs(&rec.id);
        self.forget_lifecycle(&rec.id);
        // The space it held is free: the reserve is taken again if it was used.
        self.inner.reserve.ensure();
        info!(container.id = %rec.id, "container removed");
        self.emit_container(&rec, "destroy", &[]);
        Ok(())
    }
}

/// Docker's refusal to remove a running container without force (daemon/delete.go).
fn running_conflict(id: &str) -> EngineError {
    EngineError::conflict(format!(
        "cannot remove container {id}: container is running: stop the container before removing or force remove"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the engine writes it, for the cache's tests.
    fn record_json(id: &str, name: &str) -> serde_json::Value {
        serde_json::json!({
            "version": CONTAINER_RECORD_VERSION, "id": id, "image": "x:1",
            "image_id": format!("sha256:{}", "a".repeat(64)), "layers": [],
            "created": "2026-12-07T00:00:00Z", "log_max_size": 0, "log_max_file": 1,
            "cgroup_path": format!("/berth/{id}"), "name": name,
        })
    }

    /// A record is parsed once and served from the cache while its file stays the same;
    /// a file replaced by another (the engine's atomic write, or anyone's) is read
    /// again, a removed or unreadable one is no record, and `forget` drops what is kept.
    #[test]
    fn the_record_cache_follows_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(RECORD_FILE);
        let id = "b".repeat(64);
        let write = |name: &str| {
            let tmp = dir.path().join("tmp");
            fs::write(
                &tmp,
                serde_json::to_vec(&record_json(&id, name)).expect("json"),
            )
            .expect("write");
            fs::rename(&tmp, &path).expect("rename");
        };
        let cache = RecordCache::default();
        assert!(cache.read(&path).is_none(), "no file, no record");
        write("one");
        assert_eq!(cache.read(&path).expect("record").name, "one");
        // Kept with the identity of its file.
        let key = FileKey::of(&fs::metadata(&path).expect("stat"));
        assert!(cache.lock().get(&path).is_some_and(|(k, _)| *k == key));
        // Replaced (same size: "two" and "one"), while the first file is still open so
        // the new one cannot take its inode: read again.
        let held = fs::File::open(&path).expect("open");
        write("two");
        assert_eq!(cache.read(&path).expect("record").name, "two");
        drop(held);
        // Unreadable: no record, and nothing kept.
        fs::write(&path, b"{not json").expect("write");
        assert!(cache.read(&path).is_none());
        assert!(cache.lock().get(&path).is_none());
        write("three");
        assert_eq!(cache.read(&path).expect("record").name, "three");
        cache.forget(&path);
        assert!(cache.lock().get(&path).is_none());
        fs::remove_file(&path).expect("rm");
        assert!(cache.read(&path).is_none(), "a removed record is gone");
    }

    #[test]
    fn each_state_root_has_its_own_runtime_state_directory() {
        let a = runtime_base(Path::new("/var/lib/berth"));
        let b = runtime_base(Path::new("/srv/berth"));
        assert_ne!(a, b);
        assert_eq!(a, runtime_base(Path::new("/var/lib/berth")));
        for p in [&a, &b] {
            assert_eq!(p.parent(), Some(Path::new(RUNTIME_BASE)));
            let key = p.file_name().expect("a key").to_string_lossy();
            assert!(
                key.len() == 16 && key.bytes().all(|c| c.is_ascii_hexdigit()),
                "{key}"
            );
        }
    }

    /// A shim that accepts and exits before reading (its container just ended): the
    /// request gets no reply, whichever of the close and the write comes first; never a
    /// "send: Broken pipe" error (which made `rm -f` fail).
    #[test]
    fn a_shim_exiting_under_a_request_is_no_reply_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join(SHIM_SOCKET)).expect("bind");
        let rounds = 300;
        let server = std::thread::spawn(move || {
            for _ in 0..rounds {
                drop(listener.accept().expect("accept"));
            }
        });
        for _ in 0..rounds {
            let reply = shim_request(dir.path(), &format!("kill {}", libc::SIGKILL));
            assert_eq!(reply.expect("no error").as_deref(), Some(""));
        }
        server.join().expect("server");
    }

    /// The exit status the docker CLI derives (127/126) only for the runtime's own
    /// reports of the command; a host file the runtime could not open is neither.
    #[test]
    fn only_a_missing_or_unrunnable_command_gets_docker_s_exec_words() {
        let create = "create: failed to create container: exec process failed with error error in executing process : ";
        assert_eq!(
            exec_failure_hint(&format!("{create}executable '/nope' not found in $PATH")),
            ": executable file not found in $PATH"
        );
        assert_eq!(
            exec_failure_hint(&format!(
                "{create}executable '/tmp' at path '\"/tmp\"' does not have correct permissions"
            )),
            ": permission denied"
        );
        assert_eq!(
            exec_failure_hint("error 'EACCES: Permission denied' executing '\"/x\"'"),
            ": permission denied"
        );
        for other in [
            "intermediate process error cgroup error: io error: failed to open /sys/fs/cgroup/blkio/berth/x/blkio.bfq.weight: No such file or directory (os error 2)",
            "failed to mount /proc: Permission denied (os error 13)",
            "the shim exited without a reply (see shim.log)",
        ] {
            assert_eq!(exec_failure_hint(other), "", "{other}");
        }
    }
}
