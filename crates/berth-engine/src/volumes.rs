//! Local volumes (Docker's `local` driver without options) and the mounts of containers.
//!
//! On disk, per volume:
//!
//! ```text
//! STATE/volumes/<name>/
//!   volume.json   VolumeRecord (versioned): name, driver, labels, options, created, anonymous
//!   _data/        the volume's content, bind-mounted into containers
//! ```
//!
//! A volume is created in a temporary directory (`STATE/volumes/.tmp-<random>`) holding
//! `_data/` and a fsync'd `volume.json`, then renamed to its name: it exists whole or not
//! at all. Removal renames it to `.rm-<random>` first, then deletes that. Leftovers of a
//! crash (dot names) are never listed and are deleted by the next create or remove.
//!
//! Which containers use a volume is read from their records (`ContainerRecord::mounts`);
//! a volume in use by any container, running or not, is never removed or pruned. Creating
//! a container (which may create volumes and mounts them) and removing a volume hold one
//! lock, so a volume cannot disappear between a create's check and its record.
//!
//! Copy-up: when a container is created with an empty volume at a path that holds a
//! directory in the image, that directory's content is copied into the volume (Docker's
//! behaviour; `nocopy` disables it): owners, modes, times, symlinks, hard links, fifos and
//! `user.*`/`security.capability` xattrs (best effort). The source is opened inside the container's rootfs
//! (destination resolved with [`berth_runtime::mounts::resolve_in_rootfs`], then walked
//! with `O_NOFOLLOW`), and every file is created relative to directory fds with
//! `O_NOFOLLOW`/`O_EXCL`, so neither a symlink in the image nor a concurrent writer of a
//! shared volume can make the copy read or write outside the rootfs and the volume.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use berth_runtime::mounts::{clean_destination, resolve_in_rootfs};
use berth_runtime::MountSpec;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::containers::{io_err, random_id};
use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::Engine;

/// Version of `volume.json`.
pub const VOLUME_RECORD_VERSION: u32 = 1;
/// The label Docker puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
/// The only volume driver berth has.
pub const LOCAL_DRIVER: &str = "local";
const VOLUME_FILE: &str = "volume.json";
const DATA_DIR: &str = "_data";

/// Serializes container creates (which take volumes) with volume removals.
static VOLUMES_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn volumes_lock() -> MutexGuard<'static, ()> {
    VOLUMES_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What berth keeps about a volume (`volume.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    pub version: u32,
    pub name: String,
    /// Always `local`.
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options; always empty (the local driver's options are refused).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339, seconds, UTC.
    pub created: String,
    /// Created without a name (`-v /path`, an image's VOLUME, `volume create` without a name).
    #[serde(default)]
    pub anonymous: bool,
}

/// A volume and where its content lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub record: VolumeRecord,
    /// `STATE/volumes/<name>/_data`.
    pub mountpoint: PathBuf,
}

/// A volume with its disk usage (`system df`).
#[derive(Debug, Clone)]
pub struct VolumeUsage {
    pub volume: Volume,
    /// Bytes of the files in the volume (hard links counted once).
    pub size: u64,
    /// Containers that use it.
    pub ref_count: usize,
}

/// `docker volume create`.
#[derive(Debug, Clone, Default)]
pub struct VolumeCreate {
    /// A random 64-hex name (an anonymous volume) when `None` or empty.
    pub name: Option<String>,
    /// `local` when `None` or empty.
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub driver_opts: BTreeMap<String, String>,
}

/// What `volume prune` did.
#[derive(Debug, Clone, Default)]
pub struct VolumePruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// A mount asked for at container create: the engine's form of `-v`, `--mount`, `--tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A host path.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        /// Create a missing source as a directory (`-v` does; `--mount` only with
        /// `bind-create-mountpoint`). Otherwise a missing source is refused.
        create_source: bool,
        /// Docker's `Mode` of the mount point (the `-v` mode string; empty for `--mount`).
        mode: String,
    },
    /// A volume; `None` is a new anonymous volume.
    Volume {
        name: Option<String>,
        target: String,
        read_only: bool,
        /// Skip the copy-up of the image's content into a new empty volume.
        nocopy: bool,
        /// Labels of a volume this create makes (ignored for an existing one, as Docker).
        labels: BTreeMap<String, String>,
        /// Docker's `Mode`; `z` when none was given.
        mode: String,
    },
    Tmpfs {
        target: String,
        size_bytes: Option<u64>,
        mode: Option<u32>,
        exec: bool,
    },
}

/// The mounts of a create, and how the request spelled them (echoed by inspect).
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    pub requests: Vec<MountRequest>,
    /// `Config.Volumes` (`-v /path`): anonymous volumes, with the image's VOLUMEs.
    pub config_volumes: Vec<String>,
    /// `--volumes-from CONTAINER[:ro|:rw]`: every volume and bind of those containers.
    pub volumes_from: Vec<VolumesFrom>,
    pub echo: MountConfig,
}

/// One `--volumes-from` (HostConfig.VolumesFrom) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesFrom {
    /// The source container (name, ID or ID prefix).
    pub container: String,
    /// `:ro`: every inherited mount is read-only. Otherwise each keeps its mode (as
    /// Docker, `:rw` never makes a read-only mount writable).
    pub read_only: bool,
}

/// How the create request spelled its mounts (Docker's `HostConfig.Binds`, `Mounts`,
/// `Tmpfs` and `Config.Volumes`), kept for inspect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountConfig {
    #[serde(default)]
    pub binds: Option<Vec<String>>,
    #[serde(default)]
    pub mounts: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub tmpfs: Option<BTreeMap<String, String>>,
    /// Config.Volumes as the container has them (the request's and the image's).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// HostConfig.VolumesFrom as given.
    #[serde(default)]
    pub volumes_from: Option<Vec<String>>,
}

impl Eq for MountConfig {}

/// A mount of a container, as Docker's `MountPoint` (inspect, `ps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// Host path (empty for tmpfs).
    #[serde(default)]
    pub source: String,
    pub destination: String,
    /// `local` for volumes.
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    /// `rprivate` for binds.
    #[serde(default)]
    pub propagation: String,
    /// A volume this container created without a name: `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
    /// The destination resolved inside the rootfs at create (symlinks followed within
    /// it): the runtime's mount target. Checked again at every start.
    #[serde(default)]
    pub resolved: String,
}

/// The mounts of a create, resolved.
#[derive(Debug, Default)]
pub(crate) struct PreparedMounts {
    pub specs: Vec<MountSpec>,
    pub points: Vec<MountPoint>,
    /// Volumes this create made (removed again if the create fails).
    pub created: Vec<String>,
}

/// Docker's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn invalid_name(name: &str) -> EngineError {
    if name.len() == 1 {
        // Docker's rule and words for a one-character name.
        return EngineError::invalid(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        ));
    }
    EngineError::invalid(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    ))
}

fn no_such_volume(name: &str) -> EngineError {
    EngineError::not_found(format!("get {name}: no such volume"))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Bytes of the regular files below `dir` (hard links once), not following symlinks or
/// crossing into other filesystems' mounts.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let Ok(md) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if md.is_dir() {
                walk(&e.path(), seen, total);
            } else if md.is_file() && (md.nlink() == 1 || seen.insert((md.dev(), md.ino()))) {
                *total += md.len();
            }
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    walk(dir, &mut seen, &mut total);
    total
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.store().root().join("volumes")
    }

    fn volume_from_dir(&self, dir: &Path) -> Result<Option<Volume>> {
        let p = dir.join(VOLUME_FILE);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&p, "read", e)),
        };
        let record: VolumeRecord = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::internal(format!("{}: {e}", p.display())))?;
        if record.version != VOLUME_RECORD_VERSION {
            return Err(EngineError::internal(format!(
                "{}: unknown version {}",
                p.display(),
                record.version
            )));
        }
        Ok(Some(Volume {
            record,
            mountpoint: dir.join(DATA_DIR),
        }))
    }

    /// A volume by exact name.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        if !valid_volume_name(name) {
            return Err(no_such_volume(name));
        }
        self.volume_from_dir(&self.volumes_dir().join(name))?
            .ok_or_else(|| no_such_volume(name))
    }

    /// Every volume, sorted by name (unreadable records are logged and skipped).
    fn all_volumes(&self) -> Result<Vec<Volume>> {
        let dir = self.volumes_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, "list", e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str().filter(|n| valid_volume_name(n)) else {
                continue; // .tmp-*/.rm-* leftovers
            };
            match self.volume_from_dir(&e.path()) {
                Ok(Some(v)) if v.record.name == name => out.push(v),
                Ok(Some(_)) => warn!(volume = name, "volume record names another volume; skipped"),
                Ok(None) => {}
                Err(err) => warn!(volume = name, error = %err, "unreadable volume skipped"),
            }
        }
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(out)
    }

    /// Volume name -> IDs of the containers whose records mount it.
    fn volume_users(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.container_records()? {
            for m in &r.mounts {
                if m.kind == "volume" {
                    users.entry(m.name.clone()).or_default().push(r.id.clone());
                }
            }
        }
        Ok(users)
    }

    /// Removes `.tmp-*` and `.rm-*` leftovers. Callers hold the volumes lock.
    fn sweep_volume_leftovers(&self) {
        let Ok(rd) = fs::read_dir(self.volumes_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(".tmp-") || n.starts_with(".rm-") {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    warn!(path = %e.path().display(), error = %err, "volume leftover not removed");
                }
            }
        }
    }

    /// `docker volume create`. Creating an existing name returns that volume unchanged.
    #[instrument(skip_all, fields(volume = opts.name.as_deref().unwrap_or("")))]
    pub fn create_volume(&self, opts: &VolumeCreate) -> Result<Volume> {
        let _guard = volumes_lock();
        self.create_volume_locked(opts)
    }

    fn create_volume_locked(&self, opts: &VolumeCreate) -> Result<Volume> {
        let (name, anonymous) = match opts.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => (n.to_string(), false),
            None => (random_id()?, true),
        };
        if !valid_volume_name(&name) {
            return Err(invalid_name(&name));
        }
        let driver = opts
            .driver
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or(LOCAL_DRIVER);
        if driver != LOCAL_DRIVER {
            return Err(EngineError::invalid(format!(
                "create {name}: volume driver \"{driver}\" is not supported yet by berth (only \"local\")"
            )));
        }
        if let Some(k) = opts.driver_opts.keys().next() {
            return Err(EngineError::invalid(format!(
                "create {name}: local volume driver option \"{k}\" is not supported yet by berth"
            )));
        }
        let root = self.volumes_dir();
        let final_dir = root.join(&name);
        if let Some(v) = self.volume_from_dir(&final_dir)? {
            return Ok(v);
        }
        fs::create_dir_all(&root).map_err(|e| io_err(&root, "create", e))?;
        self.sweep_volume_leftovers();
        let mut labels = opts.labels.clone();
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let record = VolumeRecord {
            version: VOLUME_RECORD_VERSION,
            name: name.clone(),
            driver: LOCAL_DRIVER.to_string(),
            labels,
            options: BTreeMap::new(),
            created: now_rfc3339(),
            anonymous,
        };
        let tmp = root.join(format!(".tmp-{}", random_id()?));
        let result = (|| -> std::io::Result<()> {
            fs::create_dir(&tmp)?;
            fs::create_dir(tmp.join(DATA_DIR))?;
            let bytes = serde_json::to_vec_pretty(&record)?;
            let mut f = fs::File::create(tmp.join(VOLUME_FILE))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &final_dir)?;
            fs::File::open(&root)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(&final_dir, "create volume", e));
        }
        info!(volume = %name, anonymous, "volume created");
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("driver".to_string(), "local".to_string());
        self.emit(crate::EventType::Volume, "create", name.clone(), attrs);
        Ok(Volume {
            record,
            mountpoint: final_dir.join(DATA_DIR),
        })
    }

    /// `docker volume ls`: filters `name` (substring), `driver`, `label` (`key` or
    /// `key=value`), `dangling` (used by no container).
    pub fn list_volumes(&self, filters: &Filters) -> Result<Vec<Volume>> {
        filters.check(&["name", "driver", "label", "dangling"])?;
        let dangling = filters.bool("dangling")?;
        let users = self.volume_users()?;
        Ok(self
            .all_volumes()?
            .into_iter()
            .filter(|v| {
                let names = filters.get("name");
                names.is_empty() || names.iter().any(|n| v.record.name.contains(n.as_str()))
            })
            .filter(|v| {
                let drivers = filters.get("driver");
                drivers.is_empty() || drivers.contains(&v.record.driver)
            })
            .filter(|v| filters.labels_match("label", &v.record.labels))
            .filter(|v| dangling.is_none_or(|d| d != users.contains_key(&v.record.name)))
            .collect())
    }

    /// `docker volume rm`: refused (409) while any container, running or not, uses the
    /// volume; `force` only makes a missing volume not an error (as Docker).
    #[instrument(skip_all, fields(volume = %name))]
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let _guard = volumes_lock();
        match self.volume(name) {
            Ok(_) => {}
            Err(e) if force && e.kind == berth_types::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(ids) = self.volume_users()?.get(name) {
            return Err(EngineError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(" ")
            )));
        }
        self.delete_volume_locked(name)?;
        info!(volume = %name, "volume removed");
        Ok(())
    }

    fn delete_volume_locked(&self, name: &str) -> Result<()> {
        let root = self.volumes_dir();
        let dir = root.join(name);
        let trash = root.join(format!(".rm-{}", random_id()?));
        fs::rename(&dir, &trash).map_err(|e| io_err(&dir, "remove", e))?;
        let _ = fs::File::open(&root).and_then(|d| d.sync_all());
        if let Err(e) = fs::remove_dir_all(&trash) {
            warn!(path = %trash.display(), error = %e, "removed volume's files not deleted; retried later");
        }
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("driver".to_string(), "local".to_string());
        self.emit(crate::EventType::Volume, "destroy", name, attrs);
        Ok(())
    }

    /// `docker volume prune` (API ≥ 1.42): unused anonymous volumes, or every unused
    /// volume with `all=true`; filters `label`, `label!`.
    #[instrument(skip_all)]
    pub fn prune_volumes(&self, filters: &Filters) -> Result<VolumePruneReport> {
        filters.check(&["label", "label!", "all"])?;
        let all = filters.bool("all")?.unwrap_or(false);
        let _guard = volumes_lock();
        let users = self.volume_users()?;
        let mut report = VolumePruneReport::default();
        for v in self.all_volumes()? {
            let r = &v.record;
            let anonymous = r.anonymous || r.labels.contains_key(ANONYMOUS_LABEL);
            if (!all && !anonymous) || users.contains_key(&r.name) {
                continue;
            }
            if !filters.labels_match("label", &r.labels) {
                continue;
            }
            if filters.get("label!").iter().any(|f| {
                Filters(BTreeMap::from([("l".to_string(), vec![f.clone()])]))
                    .labels_match("l", &r.labels)
            }) {
                continue;
            }
            let size = dir_size(&v.mountpoint);
            self.delete_volume_locked(&r.name)?;
            report.deleted.push(r.name.clone());
            report.space_reclaimed += size;
        }
        info!(
            volumes = report.deleted.len(),
            bytes_freed = report.space_reclaimed,
            "volumes pruned"
        );
        Ok(report)
    }

    /// Every volume with its size and the number of containers using it (`system df`).
    pub fn volume_usage(&self) -> Result<Vec<VolumeUsage>> {
        let users = self.volume_users()?;
        Ok(self
            .all_volumes()?
            .into_iter()
            .map(|v| VolumeUsage {
                size: dir_size(&v.mountpoint),
                ref_count: users.get(&v.record.name).map_or(0, Vec::len),
                volume: v,
            })
            .collect())
    }

    /// Removes the anonymous volumes a removed container created (`docker rm -v`); one
    /// another container still uses is kept, as Docker does.
    pub(crate) fn remove_anonymous_volumes(&self, mounts: &[MountPoint]) -> Result<()> {
        for m in mounts.iter().filter(|m| m.kind == "volume" && m.anonymous) {
            match self.remove_volume(&m.name, true) {
                Ok(()) => {}
                Err(e) if e.kind == berth_types::ErrorKind::Conflict => {
                    info!(volume = %m.name, "anonymous volume kept: another container uses it")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Resolves a create's mounts (callers hold [`volumes_lock`]): creates missing
    /// volumes (anonymous ones for `-v /path`, `Config.Volumes` and the image's VOLUMEs
    /// not covered by another mount) and bind sources `-v` may create, and copies the
    /// image's content into new empty volumes. `rootfs` is the container's mounted rootfs.
    pub(crate) fn prepare_mounts(
        &self,
        rootfs: &Path,
        opts: &MountOptions,
        inherited: &[MountPoint],
        image_volumes: &[String],
        bind_policy: &berth_runtime::mounts::SensitivePaths,
        owners: Option<berth_image::diff::OwnerShift>,
    ) -> Result<PreparedMounts> {
        let mut out = PreparedMounts::default();
        let result = self.prepare_mounts_into(
            RootfsView { rootfs, owners },
            opts,
            inherited,
            image_volumes,
            bind_policy,
            &mut out,
        );
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                self.discard_volumes_locked(&out.created);
                Err(e)
            }
        }
    }

    /// Removes volumes a failed create made (callers hold [`volumes_lock`]).
    pub(crate) fn discard_volumes_locked(&self, names: &[String]) {
        for n in names {
            if let Err(e) = self.delete_volume_locked(n) {
                warn!(volume = %n, error = %e, "volume of a failed create not removed");
            }
        }
    }

    fn prepare_mounts_into(
        &self,
        view: RootfsView<'_>,
        opts: &MountOptions,
        inherited: &[MountPoint],
        image_volumes: &[String],
        bind_policy: &berth_runtime::mounts::SensitivePaths,
        out: &mut PreparedMounts,
    ) -> Result<()> {
        let RootfsView { rootfs, owners } = view;
        let dest_err = |e: berth_runtime::mounts::MountError| EngineError::invalid(e.to_string());
        let root_owner = owners.map(|o| (o.uid, o.gid));
        let mut taken: HashSet<PathBuf> = HashSet::new();
        let mut volume_reqs: Vec<(String, String, bool, bool, String, bool)> = Vec::new();
        for req in &opts.requests {
            let target = match req {
                MountRequest::Bind { target, .. }
                | MountRequest::Volume { target, .. }
                | MountRequest::Tmpfs { target, .. } => target,
            };
            let dest = clean_destination(target).map_err(dest_err)?;
            if !taken.insert(dest.clone()) {
                return Err(EngineError::invalid(format!(
                    "Duplicate mount point: {}",
                    dest.display()
                )));
            }
            let dest_s = dest.display().to_string();
            match req {
                MountRequest::Bind {
                    source,
                    read_only,
                    create_source,
                    mode,
                    ..
                } => {
                    let source = clean_host_path(source)?;
                    if fs::symlink_metadata(&source).is_err() {
                        if !create_source {
                            return Err(EngineError::invalid(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                source.display()
                            )));
                        }
                        create_bind_source(&source, *read_only, bind_policy)?;
                    }
                    let is_dir = fs::metadata(&source).map(|m| m.is_dir()).unwrap_or(true);
                    let resolved = prepare_target(rootfs, &dest_s, !is_dir, root_owner)?;
                    out.points.push(MountPoint {
                        kind: "bind".into(),
                        name: String::new(),
                        source: source.display().to_string(),
                        destination: dest_s.clone(),
                        driver: String::new(),
                        mode: mode.clone(),
                        rw: !read_only,
                        propagation: "rprivate".into(),
                        anonymous: false,
                        resolved: resolved.clone(),
                    });
                    out.specs.push(MountSpec::Bind {
                        source,
                        target: resolved,
                        read_only: *read_only,
                    });
                }
                MountRequest::Volume {
                    name,
                    read_only,
                    nocopy,
                    labels,
                    mode,
                    ..
                } => {
                    let (name, anonymous) = match name {
                        Some(n) => (n.clone(), false),
                        None => (String::new(), true),
                    };
                    let create = VolumeCreate {
                        name: Some(name).filter(|n| !n.is_empty()),
                        labels: labels.clone(),
                        ..VolumeCreate::default()
                    };
                    let existed = create
                        .name
                        .as_deref()
                        .is_some_and(|n| self.volume(n).is_ok());
                    let v = self.create_volume_locked(&create)?;
                    if !existed {
                        out.created.push(v.record.name.clone());
                    }
                    volume_reqs.push((
                        v.record.name.clone(),
                        dest_s,
                        *read_only,
                        *nocopy,
                        mode.clone(),
                        anonymous,
                    ));
                }
                MountRequest::Tmpfs {
                    size_bytes,
                    mode,
                    exec,
                    ..
                } => {
                    let resolved = prepare_target(rootfs, &dest_s, false, root_owner)?;
                    out.points.push(MountPoint {
                        kind: "tmpfs".into(),
                        name: String::new(),
                        source: String::new(),
                        destination: dest_s.clone(),
                        driver: String::new(),
                        mode: String::new(),
                        rw: true,
                        propagation: String::new(),
                        anonymous: false,
                        resolved: resolved.clone(),
                    });
                    out.specs.push(MountSpec::Tmpfs {
                        target: resolved,
                        size_bytes: *size_bytes,
                        mode: *mode,
                        exec: *exec,
                    });
                }
            }
        }
        // `--volumes-from`: the other containers' volumes and binds where the request
        // mounts nothing (as Docker: an explicit mount at the same destination wins),
        // before the anonymous volumes of Config.Volumes and the image. No copy-up: the
        // volume already has its content.
        for m in inherited {
            let dest = clean_destination(&m.destination).map_err(dest_err)?;
            if !taken.insert(dest.clone()) {
                continue;
            }
            let dest_s = dest.display().to_string();
            match m.kind.as_str() {
                "volume" => {
                    let v = self.volume(&m.name)?;
                    let resolved = prepare_target(rootfs, &dest_s, false, root_owner)?;
                    out.points.push(MountPoint {
                        source: v.mountpoint.display().to_string(),
                        destination: dest_s,
                        resolved: resolved.clone(),
                        ..m.clone()
                    });
                    out.specs.push(MountSpec::Volume {
                        name: m.name.clone(),
                        source: v.mountpoint.clone(),
                        target: resolved,
                        read_only: !m.rw,
                    });
                }
                "bind" => {
                    let source = PathBuf::from(&m.source);
                    let is_dir = fs::metadata(&source).map(|m| m.is_dir()).unwrap_or(true);
                    let resolved = prepare_target(rootfs, &dest_s, !is_dir, root_owner)?;
                    out.points.push(MountPoint {
                        destination: dest_s,
                        resolved: resolved.clone(),
                        ..m.clone()
                    });
                    out.specs.push(MountSpec::Bind {
                        source,
                        target: resolved,
                        read_only: !m.rw,
                    });
                }
                _ => {}
            }
        }
        // Config.Volumes and the image's VOLUMEs: anonymous volumes where nothing else mounts.
        for p in opts.config_volumes.iter().chain(image_volumes) {
            let dest = clean_destination(p).map_err(dest_err)?;
            if !taken.insert(dest.clone()) {
                continue;
            }
            let v = self.create_volume_locked(&VolumeCreate::default())?;
            out.created.push(v.record.name.clone());
            volume_reqs.push((
                v.record.name.clone(),
                dest.display().to_string(),
                false,
                false,
                String::new(),
                true,
            ));
        }
        for (name, dest, read_only, nocopy, mode, anonymous) in volume_reqs {
            let v = self.volume(&name)?;
            let resolved = prepare_target(rootfs, &dest, false, root_owner)?;
            if !nocopy {
                copy_up(rootfs, &dest, &v.mountpoint, owners).map_err(|e| {
                    EngineError::internal(format!(
                        "volume {name}: copying the image's content of {dest}: {e}"
                    ))
                })?;
            }
            out.points.push(MountPoint {
                kind: "volume".into(),
                name: name.clone(),
                source: v.mountpoint.display().to_string(),
                destination: dest.clone(),
                driver: LOCAL_DRIVER.into(),
                mode,
                rw: !read_only,
                propagation: String::new(),
                anonymous,
                resolved: resolved.clone(),
            });
            out.specs.push(MountSpec::Volume {
                name,
                source: v.mountpoint.clone(),
                target: resolved,
                read_only,
            });
        }
        // Parents before children (as Docker sorts them), so /a/b lands on the /a mount.
        let depth = |t: &str| Path::new(t).components().count();
        out.specs.sort_by_key(|s| depth(s.target()));
        out.points.sort_by_key(|p| depth(&p.destination));
        Ok(())
    }
}

/// Checks, at start, that every user mount's destination still resolves where it did
/// at create: a container that replaced a directory of its rootfs with a symlink since
/// then must not redirect a mount.
pub(crate) fn check_mount_targets(rootfs: &Path, mounts: &[MountPoint]) -> Result<()> {
    for m in mounts.iter().filter(|m| !m.resolved.is_empty()) {
        let now = resolve_in_rootfs(rootfs, &m.destination)
            .map_err(|e| EngineError::invalid(e.to_string()))?;
        if now != rootfs.join(m.resolved.trim_start_matches('/')) {
            return Err(EngineError::invalid(format!(
                "mount destination {}: resolved to {} at create, now to {}: a path in the container's rootfs was replaced by a symlink; refusing to start",
                m.destination,
                m.resolved,
                now.strip_prefix(rootfs).unwrap_or(&now).display()
            )));
        }
    }
    Ok(())
}

/// Resolves a mount destination inside `rootfs` (symlinks followed within the rootfs,
/// as the kernel would from inside the container) and creates what is missing:
/// directories, and an empty file as the last component when `file` (a bind of a
/// file). Creation walks directory fds with `O_NOFOLLOW`. Returns the resolved
/// container path, which holds no symlinks: the runtime's mount target.
///
/// `owner`: a remapped container's root on the host, who owns what is created (as
/// Docker creates mount points with the remapped root's ids): else root inside would
/// see its mount points as the overflow id.
pub(crate) fn prepare_target(
    rootfs: &Path,
    dest: &str,
    file: bool,
    owner: Option<(u32, u32)>,
) -> Result<String> {
    let resolved =
        resolve_in_rootfs(rootfs, dest).map_err(|e| EngineError::invalid(e.to_string()))?;
    let rel = resolved.strip_prefix(rootfs).map_err(|_| {
        EngineError::internal(format!(
            "mount destination {dest}: resolved outside the rootfs"
        ))
    })?;
    let fail = |e: std::io::Error| {
        EngineError::internal(format!(
            "mount destination {dest} (resolved to /{}): {e}",
            rel.display()
        ))
    };
    let comps: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rfs::open(rootfs, dir_flags, Mode::empty()).map_err(|e| fail(e.into()))?;
    let chown = |dir: &OwnedFd, name: &OsStr| -> Result<()> {
        if let Some((uid, gid)) = owner {
            rfs::chownat(
                dir,
                name,
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fail(e.into()))?;
        }
        Ok(())
    };
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        if last && file {
            match rfs::openat(
                &fd,
                *c,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) => chown(&fd, c)?,
                Err(Errno::EXIST) => {}
                Err(e) => return Err(fail(e.into())),
            }
            break;
        }
        let next = match rfs::openat(&fd, *c, dir_flags, Mode::empty()) {
            Ok(f) => f,
            Err(Errno::NOENT) => {
                match rfs::mkdirat(&fd, *c, Mode::from_raw_mode(0o755)) {
                    Ok(()) => chown(&fd, c)?,
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(fail(e.into())),
                }
                rfs::openat(&fd, *c, dir_flags, Mode::empty()).map_err(|e| fail(e.into()))?
            }
            // Not a directory (a file where a directory is needed): the runtime's mount
            // fails with its own error; leave it.
            Err(Errno::NOTDIR) if last => break,
            Err(e) => return Err(fail(e.into())),
        };
        fd = next;
    }
    Ok(format!("/{}", rel.display()))
}

/// A bind source: absolute, cleaned lexically (`..` resolved as Docker's `path.Clean`).
fn clean_host_path(p: &Path) -> Result<PathBuf> {
    if !p.is_absolute() {
        return Err(EngineError::invalid(format!(
            "bind source {}: must be an absolute path",
            p.display()
        )));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `-v /missing:/p` creates `/missing` as a directory (Docker's behaviour), unless the
/// bind rules refuse the path it would be (checked on the nearest existing ancestor
/// with host symlinks resolved, plus the rest: `-v /etc/new:/x` is refused before
/// anything is made).
fn create_bind_source(
    source: &Path,
    read_only: bool,
    policy: &berth_runtime::mounts::SensitivePaths,
) -> Result<()> {
    let existing = source
        .ancestors()
        .find(|a| fs::symlink_metadata(a).is_ok())
        .unwrap_or(Path::new("/"));
    let rest = source.strip_prefix(existing).unwrap_or(Path::new(""));
    let real = fs::canonicalize(existing)
        .unwrap_or_else(|_| existing.to_path_buf())
        .join(rest);
    policy
        .check_resolved(source, &real, read_only, None)
        .map_err(|e| EngineError::new(berth_types::ErrorKind::Forbidden, e.to_string()))?;
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(source)
        .map_err(|e| io_err(source, "create bind source", e))
}

// ---------------------------------------------------------------------------------
// Copy-up

/// Opens `dest` of the container inside `rootfs` as a directory, symlinks resolved
/// within the rootfs; `None` when it does not exist or is not a directory.
fn open_in_rootfs(rootfs: &Path, dest: &str) -> std::io::Result<Option<OwnedFd>> {
    let resolved = resolve_in_rootfs(rootfs, dest).map_err(std::io::Error::other)?;
    let rel = resolved
        .strip_prefix(rootfs)
        .map_err(|_| std::io::Error::other("resolved path is outside the rootfs"))?
        .to_path_buf();
    let mut fd = rfs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for c in rel.components() {
        let std::path::Component::Normal(n) = c else {
            return Err(std::io::Error::other("unexpected path component"));
        };
        match rfs::openat(
            &fd,
            n,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(next) => fd = next,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(fd))
}

/// Copies the image's content at `dest` into the volume at `data` when the volume is
/// empty and `dest` is a directory in the image (Docker's copy-up), including the
/// directory's own owner and mode. `owners`: a remapped container's range (its rootfs
/// shows host ids; the volume gets the container's).
fn copy_up(
    rootfs: &Path,
    dest: &str,
    data: &Path,
    owners: Option<berth_image::diff::OwnerShift>,
) -> std::io::Result<()> {
    let Some(src) = open_in_rootfs(rootfs, dest)? else {
        return Ok(());
    };
    let dst = rfs::open(
        data,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if !read_dir_names(&dst)?.is_empty() {
        return Ok(());
    }
    copy_dir_contents(
        &src,
        &dst,
        0,
        &mut CopyState {
            links: Default::default(),
            owners,
        },
    )?;
    let mut st = rfs::fstat(&src)?;
    if let Some(o) = &owners {
        o.apply(&mut st);
    }
    apply_meta(&src, &dst, &st)?;
    Ok(())
}

fn read_dir_names(fd: &OwnedFd) -> std::io::Result<Vec<CString>> {
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(fd)? {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Owner, mode, `user.*`/`security.capability` xattrs and times of `src` onto `dst`
/// (owner first: chown clears setuid bits, the mode restores them).
fn apply_meta(src: &OwnedFd, dst: &OwnedFd, st: &rfs::Stat) -> std::io::Result<()> {
    rfs::fchown(
        dst,
        Some(rfs::Uid::from_raw(st.st_uid)),
        Some(rfs::Gid::from_raw(st.st_gid)),
    )?;
    rfs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    copy_xattrs(src, dst);
    let _ = rfs::futimens(dst, &times(st));
    Ok(())
}

fn times(st: &rfs::Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Best effort: xattrs a filesystem does not support are skipped.
fn copy_xattrs(src: &OwnedFd, dst: &OwnedFd) {
    let mut names = vec![0u8; 64 << 10];
    let Ok(n) = rfs::flistxattr(src, &mut names[..]) else {
        return;
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 << 10];
        if let Ok(len) = rfs::fgetxattr(src, cname.as_c_str(), &mut value[..]) {
            let _ = rfs::fsetxattr(
                dst,
                cname.as_c_str(),
                &value[..len],
                rfs::XattrFlags::empty(),
            );
        }
    }
}

/// Deepest directory nesting copied (a bound on recursion).
const MAX_DEPTH: usize = 512;

/// A container's mounted rootfs and, when it is remapped, its id range (the rootfs shows
/// the range's host ids).
#[derive(Clone, Copy)]
struct RootfsView<'a> {
    rootfs: &'a Path,
    owners: Option<berth_image::diff::OwnerShift>,
}

/// What a copy-up carries through its walk.
#[derive(Default)]
struct CopyState {
    /// Hard links of the source kept as hard links in the copy: the first copy of an
    /// inode with more than one link stays open, later names link to it (`linkat` with
    /// `AT_EMPTY_PATH`, no path walked). Bounded; past the bound, or where linking
    /// fails, further names are copied.
    links: std::collections::HashMap<(u64, u64), OwnedFd>,
    /// A remapped container's range: its rootfs (idmapped layers) shows the range's host
    /// ids; the volume, idmapped in the container, gets the container's.
    owners: Option<berth_image::diff::OwnerShift>,
}

const MAX_TRACKED_LINKS: usize = 1024;

fn copy_dir_contents(
    src: &OwnedFd,
    dst: &OwnedFd,
    depth: usize,
    links: &mut CopyState,
) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(std::io::Error::other(format!(
            "directories nested deeper than {MAX_DEPTH}"
        )));
    }
    for name in read_dir_names(src)? {
        copy_entry(src, dst, &name, depth, links)?;
    }
    Ok(())
}

fn copy_entry(
    src: &OwnedFd,
    dst: &OwnedFd,
    name: &CStr,
    depth: usize,
    links: &mut CopyState,
) -> std::io::Result<()> {
    let mut st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if let Some(o) = &links.owners {
        o.apply(&mut st);
    }
    let named = |e: Errno| {
        std::io::Error::new(
            std::io::Error::from(e).kind(),
            format!(
                "{}: {}",
                OsStr::from_bytes(name.to_bytes()).to_string_lossy(),
                std::io::Error::from(e)
            ),
        )
    };
    let cloexec = OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(named)?;
            let s = rfs::openat(
                src,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | cloexec,
                Mode::empty(),
            )
            .map_err(named)?;
            let d = rfs::openat(
                dst,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | cloexec,
                Mode::empty(),
            )
            .map_err(named)?;
            copy_dir_contents(&s, &d, depth + 1, links)?;
            apply_meta(&s, &d, &st)?;
        }
        FileType::RegularFile => {
            let key = (st.st_dev as u64, st.st_ino as u64);
            if st.st_nlink > 1 {
                if let Some(first) = links.links.get(&key) {
                    if rfs::linkat(first, c"", dst, name, AtFlags::EMPTY_PATH).is_ok() {
                        return Ok(());
                    }
                }
            }
            let s =
                rfs::openat(src, name, OFlags::RDONLY | cloexec, Mode::empty()).map_err(named)?;
            let d = rfs::openat(
                dst,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | cloexec,
                Mode::from_raw_mode(0o600),
            )
            .map_err(named)?;
            let mut sf = fs::File::from(s.try_clone()?);
            let mut df = fs::File::from(d.try_clone()?);
            std::io::copy(&mut sf, &mut df)?;
            apply_meta(&s, &d, &st)?;
            if st.st_nlink > 1 && links.links.len() < MAX_TRACKED_LINKS {
                links.links.entry(key).or_insert(d);
            }
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(src, name, Vec::new()).map_err(named)?;
            rfs::symlinkat(target.as_c_str(), dst, name).map_err(named)?;
            let _ = rfs::chownat(
                dst,
                name,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            let _ = rfs::utimensat(dst, name, &times(&st), AtFlags::SYMLINK_NOFOLLOW);
        }
        FileType::Fifo => {
            rfs::mknodat(
                dst,
                name,
                FileType::Fifo,
                Mode::from_raw_mode(st.st_mode & 0o777),
                0,
            )
            .map_err(named)?;
            let _ = rfs::chownat(
                dst,
                name,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
        }
        // Device nodes (layers never create them), sockets: not copied.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn engine(dir: &Path) -> Engine {
        Engine::open(crate::DaemonConfig {
            // Containers of these tests need no network: leave the host's alone.
            bridge: "none".into(),
            root: dir.join("root"),
            ..crate::DaemonConfig::default()
        })
        .unwrap()
    }

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut f = Filters::default();
        for (k, v) in pairs {
            f.insert(k, v);
        }
        f
    }

    #[test]
    fn volume_store_create_list_remove_prune() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(t.path());
        let named = |n: &str, labels: &[(&str, &str)]| VolumeCreate {
            name: Some(n.into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..VolumeCreate::default()
        };
        let a = e.create_volume(&named("data", &[("team", "db")])).unwrap();
        assert!(a.mountpoint.is_dir() && !a.record.anonymous);
        let rec: VolumeRecord = serde_json::from_slice(
            &fs::read(e.volumes_dir().join("data").join(VOLUME_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(rec.version, VOLUME_RECORD_VERSION);
        // Idempotent: the existing volume, labels unchanged.
        let again = e.create_volume(&named("data", &[])).unwrap();
        assert_eq!(again.record, a.record);
        let anon = e.create_volume(&VolumeCreate::default()).unwrap();
        assert!(anon.record.anonymous && anon.record.labels.contains_key(ANONYMOUS_LABEL));
        e.create_volume(&named("other", &[("team", "web")]))
            .unwrap();
        // A crash leftover is never listed, and is swept by the next create.
        fs::create_dir_all(e.volumes_dir().join(".tmp-dead/_data")).unwrap();
        let names = |f: &Filters| -> Vec<String> {
            e.list_volumes(f)
                .unwrap()
                .into_iter()
                .map(|v| v.record.name)
                .collect()
        };
        assert_eq!(names(&Filters::default()).len(), 3);
        assert_eq!(names(&filters(&[("label", "team=db")])), ["data"]);
        assert_eq!(names(&filters(&[("name", "th")])), ["other"]);
        assert_eq!(names(&filters(&[("driver", "nfs")])), Vec::<String>::new());
        assert_eq!(names(&filters(&[("dangling", "true")])).len(), 3);
        assert!(e.list_volumes(&filters(&[("until", "1h")])).is_err());
        e.create_volume(&named("swept", &[])).unwrap();
        assert!(!e.volumes_dir().join(".tmp-dead").exists());

        for bad in [
            VolumeCreate {
                driver: Some("nfs".into()),
                ..named("x1", &[])
            },
            VolumeCreate {
                driver_opts: [("type".to_string(), "tmpfs".to_string())].into(),
                ..named("x2", &[])
            },
            named("../x", &[]),
        ] {
            let err = e.create_volume(&bad).unwrap_err();
            assert_eq!(err.kind, berth_types::ErrorKind::InvalidArgument, "{err}");
        }
        assert!(e.volume("x1").is_err() && e.volume("x2").is_err());

        // Prune: anonymous only; all=true with label! keeps what it excludes.
        let r = e.prune_volumes(&Filters::default()).unwrap();
        assert_eq!(r.deleted, vec![anon.record.name]);
        fs::write(e.volume("swept").unwrap().mountpoint.join("f"), "12345").unwrap();
        let r = e
            .prune_volumes(&filters(&[("all", "true"), ("label!", "team")]))
            .unwrap();
        assert_eq!(
            (r.deleted, r.space_reclaimed),
            (vec!["swept".to_string()], 5)
        );
        e.remove_volume("data", false).unwrap();
        assert_eq!(
            e.remove_volume("data", false).unwrap_err().kind,
            berth_types::ErrorKind::NotFound
        );
        e.remove_volume("data", true).unwrap();
        assert_eq!(names(&Filters::default()), ["other"]);
    }

    #[test]
    fn volume_names_follow_docker() {
        for ok in ["ab", "my-vol", "a.b_c-1", "0x"] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["a", "", "../x", "-a", ".a", "a/b", "a b", "é1"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn copy_up_copies_content_and_keeps_symlinks_inside() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        let host = t.path().join("host");
        fs::create_dir_all(rootfs.join("srv/app/sub")).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), "host").unwrap();
        fs::write(rootfs.join("srv/app/hello.txt"), "hi").unwrap();
        fs::set_permissions(
            rootfs.join("srv/app/hello.txt"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        fs::write(rootfs.join("srv/app/sub/x"), "x").unwrap();
        fs::hard_link(rootfs.join("srv/app/sub/x"), rootfs.join("srv/app/x-link")).unwrap();
        std::os::unix::fs::lchown(rootfs.join("srv/app/sub/x"), Some(1234), Some(5678)).unwrap();
        symlink("hello.txt", rootfs.join("srv/app/link")).unwrap();
        fs::set_permissions(rootfs.join("srv/app"), fs::Permissions::from_mode(0o750)).unwrap();
        // An escaping symlink: resolved inside the rootfs, never on the host.
        let up = "../".repeat(t.path().components().count() + 2);
        symlink(format!("{up}{}", host.display()), rootfs.join("evil")).unwrap();

        let data = t.path().join("data");
        fs::create_dir(&data).unwrap();
        copy_up(&rootfs, "/srv/app", &data, None).unwrap();
        assert_eq!(fs::read_to_string(data.join("hello.txt")).unwrap(), "hi");
        assert_eq!(fs::read_to_string(data.join("sub/x")).unwrap(), "x");
        let md = fs::metadata(data.join("sub/x")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "owner kept");
        assert_eq!(
            md.ino(),
            fs::metadata(data.join("x-link")).unwrap().ino(),
            "hard link kept"
        );
        assert_eq!(
            fs::read_link(data.join("link")).unwrap(),
            PathBuf::from("hello.txt")
        );
        assert_eq!(
            fs::metadata(data.join("hello.txt")).unwrap().mode() & 0o7777,
            0o640
        );
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);

        // Not empty any more: nothing is copied again.
        fs::remove_file(data.join("hello.txt")).unwrap();
        copy_up(&rootfs, "/srv/app", &data, None).unwrap();
        assert!(!data.join("hello.txt").exists());

        let data2 = t.path().join("data2");
        fs::create_dir(&data2).unwrap();
        copy_up(&rootfs, "/evil", &data2, None).unwrap();
        assert!(!data2.join("secret").exists(), "host content copied");
        // A missing path or a file: nothing to copy.
        copy_up(&rootfs, "/nope", &data2, None).unwrap();
        copy_up(&rootfs, "/srv/app/hello.txt", &data2, None).unwrap();
        assert_eq!(fs::read_dir(&data2).unwrap().count(), 0);
    }

    #[test]
    fn targets_resolve_inside_the_rootfs_and_are_created_there() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        let host = t.path().join("host");
        fs::create_dir_all(rootfs.join("real")).unwrap();
        fs::create_dir_all(&host).unwrap();
        symlink(&host, rootfs.join("abs")).unwrap();
        symlink("../../../../../../../..", rootfs.join("up")).unwrap();
        symlink("/real", rootfs.join("inroot")).unwrap();
        let host_rel = host.strip_prefix("/").unwrap().display().to_string();
        assert_eq!(
            prepare_target(&rootfs, "/abs/x", false, None).unwrap(),
            format!("/{host_rel}/x")
        );
        assert!(rootfs.join(&host_rel).join("x").is_dir());
        assert_eq!(
            fs::read_dir(&host).unwrap().count(),
            0,
            "created on the host"
        );
        assert_eq!(
            prepare_target(&rootfs, "/up/etc/f", true, None).unwrap(),
            "/etc/f"
        );
        assert!(rootfs.join("etc/f").is_file());
        assert_eq!(
            prepare_target(&rootfs, "/inroot", false, None).unwrap(),
            "/real"
        );
        let points = [MountPoint {
            kind: "volume".into(),
            name: "v".into(),
            source: String::new(),
            destination: "/inroot".into(),
            driver: "local".into(),
            mode: String::new(),
            rw: true,
            propagation: String::new(),
            anonymous: false,
            resolved: "/real".into(),
        }];
        check_mount_targets(&rootfs, &points).unwrap();
        fs::remove_file(rootfs.join("inroot")).unwrap();
        symlink("/etc", rootfs.join("inroot")).unwrap();
        let e = check_mount_targets(&rootfs, &points).unwrap_err();
        assert!(e.message.contains("replaced by a symlink"), "{e}");
    }

    #[test]
    fn host_paths_are_cleaned() {
        assert_eq!(
            clean_host_path(Path::new("/a/../b/./c")).unwrap(),
            PathBuf::from("/b/c")
        );
        assert!(clean_host_path(Path::new("rel")).is_err());
    }
}
