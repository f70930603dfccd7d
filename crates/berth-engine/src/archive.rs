//! `docker cp`: the container archive endpoints (stat, get, put) over the container's
//! rootfs mount (`STATE/containers/<id>/rootfs`, mounted from create until remove, for
//! running and stopped containers alike).
//!
//! Path resolution and the tar work are in [`berth_image::cp`]: every path is resolved
//! inside the rootfs (`openat2(RESOLVE_IN_ROOT)`), so a symlink in the container
//! (`/escape -> /`, `-> ../../..`) resolves as the container sees it and never reaches the
//! host; entries of an uploaded archive cannot leave the rootfs either.
//!
//! Ownership of extracted files (Docker's actual behaviour, which its documentation
//! describes differently): the archive's uid/gid; with `copyUIDGID` (`docker cp -a`), the
//! container's user (`--user` or the image's `User`, resolved in the container's
//! `/etc/passwd` and `/etc/group`) when it has one, else the archive's. Setuid/setgid
//! bits and file capabilities are stripped unless the daemon keeps them
//! (`preserve_setuid`, as for image layers); Docker keeps them.
//!
//! User namespaces: a remapped container's files are the range's host ids on the host;
//! archives carry the ids the container sees, and extracted entries (the archive's or
//! `copyUIDGID`'s owners, the container's ids) are written as the host ids they map to
//! (an owner outside the range is refused, as Docker's `idtools` refuses it). Binds are
//! treated alike (not remapped: a host-owned file shows as the overflow id, as inside
//! the container); volumes are idmapped mounts in the container, so their ids on disk
//! are the container's and pass unshifted.
//!
//! Mounts: the host-side rootfs mount does not show the container's own mounts, so a
//! path under the destination of a directory bind mount or volume (`-v /host:/ctr`,
//! `-v name:/ctr`; the container record's mounts, matched on the destination as given and
//! as resolved at create) is served from the mount's source instead, resolved
//! inside that source (`RESOLVE_IN_ROOT` with the source as the root: a symlink in a
//! volume cannot leave it). A read-only mount refuses writes ("mounted volume is marked
//! read-only"); a writable mount accepts them even with `--read-only`, as Docker. Known
//! limits: the mount is matched on the cleaned path before symlinks are resolved (any
//! other container symlink *into* a mount destination reads the rootfs beneath it); an
//! archive of a directory that *contains* a mount point shows the rootfs beneath it; tmpfs
//! mounts and file bind mounts are not visible (the rootfs beneath them is).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use berth_image::cp::{self, CpError, CtrPath, ExtractOptions, PathInfo};
use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::changes::owner_shift;
use crate::containers::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::Engine;

/// Go's `os.FileMode` bits (what Docker's `PathStat.mode` carries).
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// Docker's `PathStat` (`X-Docker-Container-Path-Stat`, base64 of this JSON).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode`: permission bits, and type bits (dir 1<<31, symlink 1<<27, ...).
    pub mode: u32,
    /// RFC 3339 with nanoseconds, UTC.
    pub mtime: String,
    /// For a symlink: the path it resolves to inside the container (as far as it
    /// exists), absolute; else empty.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` of a `st_mode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => go_mode::DIR,
        FileType::Symlink => go_mode::SYMLINK,
        FileType::BlockDevice => go_mode::DEVICE,
        FileType::CharacterDevice => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        FileType::Fifo => go_mode::NAMED_PIPE,
        FileType::Socket => go_mode::SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= go_mode::SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= go_mode::SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= go_mode::STICKY;
    }
    m
}

/// A bind mount of the container, from its runtime spec.
#[derive(Debug, Clone)]
struct BindMount {
    /// Cleaned, relative container path.
    dest: Vec<u8>,
    source: PathBuf,
    read_only: bool,
    /// A volume or a bind asked with `:idmap`: for a remapped container it is idmapped,
    /// so its ids on disk are the container's (no shift).
    volume: bool,
}

/// Where a container path is served from: the rootfs or a bind mount's source.
struct Located {
    root: OwnedFd,
    /// Host path of `root`.
    root_host: PathBuf,
    /// The path relative to `root`.
    path: CtrPath,
    mount: Option<BindMount>,
    /// Keeps the container's rootfs mounted while the path is used (its `/etc/passwd`
    /// resolves `copyUIDGID` owners even when the path is in a bind mount).
    _rootfs: crate::containers::RootfsHold,
}

fn rfc3339(sec: i64, nsec: i64) -> String {
    chrono::DateTime::from_timestamp(sec, u32::try_from(nsec).unwrap_or(0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl Engine {
    /// Mounts the container's overlay (a stopped container's is not mounted) and opens
    /// it; the hold keeps it mounted for the operation.
    fn container_root(
        &self,
        rec: &ContainerRecord,
    ) -> Result<(OwnedFd, crate::containers::RootfsHold)> {
        let (target, hold) = self.hold_rootfs(rec)?;
        // A `docker rm` that ran meanwhile must not be undone by this mount.
        if let Err(e) = self.container(&rec.id) {
            let dir = self.container_dir(&rec.id);
            let _ = berth_runtime::rootfs::unmount(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let fd = rfs::open(
            &target,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| crate::containers::io_err(&target, "open", e.into()))?;
        Ok((fd, hold))
    }

    /// The directory mounts of a container with a host source (binds and volumes): from
    /// its record, each under its destination and under the destination as resolved in
    /// the rootfs at create (where the runtime mounts it); then those of the runtime spec
    /// (`bundle/config.json`) not named yet, for records written before mounts were kept.
    fn bind_mounts(&self, rec: &ContainerRecord) -> Vec<BindMount> {
        let mut out: Vec<BindMount> = Vec::new();
        for m in &rec.mounts {
            if !matches!(m.kind.as_str(), "bind" | "volume")
                || m.source.is_empty()
                || !std::path::Path::new(&m.source).is_dir()
            {
                continue;
            }
            for dest in [&m.destination, &m.resolved] {
                let Ok(d) = CtrPath::parse(dest) else {
                    continue;
                };
                if d.relative().is_empty() || out.iter().any(|b| b.dest == d.relative()) {
                    continue;
                }
                out.push(BindMount {
                    dest: d.relative().to_vec(),
                    source: PathBuf::from(&m.source),
                    read_only: !m.rw,
                    volume: m.kind == "volume" || crate::containers::wants_idmap(m),
                });
            }
        }
        for b in self.spec_bind_mounts(rec) {
            if !out.iter().any(|o| o.dest == b.dest) {
                out.push(b);
            }
        }
        out
    }

    /// The directory bind mounts of the container's runtime spec (`bundle/config.json`).
    fn spec_bind_mounts(&self, rec: &ContainerRecord) -> Vec<BindMount> {
        let p = self
            .container_dir(&rec.id)
            .join(berth_runtime::shim_protocol::BUNDLE_DIR)
            .join("config.json");
        let Ok(bytes) = std::fs::read(&p) else {
            return Vec::new();
        };
        let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            warn!(container.id = %rec.id, "unreadable runtime spec: container mounts ignored");
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in spec
            .get("mounts")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
        {
            let opts: Vec<&str> = m
                .get("options")
                .and_then(|o| o.as_array())
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str())
                .collect();
            let is_bind = m.get("type").and_then(|t| t.as_str()) == Some("bind")
                || opts.iter().any(|o| *o == "bind" || *o == "rbind");
            let (Some(dest), Some(source)) = (
                m.get("destination").and_then(|d| d.as_str()),
                m.get("source").and_then(|s| s.as_str()),
            ) else {
                continue;
            };
            let Ok(dest) = CtrPath::parse(dest) else {
                continue;
            };
            // Directories only: a file mount (`--init`'s binary) is read from the rootfs's
            // placeholder beneath it.
            if !is_bind || dest.relative().is_empty() || !std::path::Path::new(source).is_dir() {
                continue;
            }
            out.push(BindMount {
                dest: dest.relative().to_vec(),
                source: PathBuf::from(source),
                read_only: opts.contains(&"ro"),
                volume: false,
            });
        }
        out
    }

    /// Finds where `p` lives: beneath the longest bind mount destination that contains
    /// it, else in the rootfs.
    fn locate(&self, rec: &ContainerRecord, p: &CtrPath) -> Result<Located> {
        let open_dir = |path: &std::path::Path| {
            rfs::open(
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| crate::containers::io_err(path, "open", e.into()))
        };
        let mount = self
            .bind_mounts(rec)
            .into_iter()
            .filter(|m| p.beneath(&m.dest).is_some())
            .max_by_key(|m| m.dest.len());
        let (rootfs, hold) = self.container_root(rec)?;
        let Some(m) = mount else {
            return Ok(Located {
                root: rootfs,
                root_host: self.overlay(rec).target(),
                path: p.clone(),
                mount: None,
                _rootfs: hold,
            });
        };
        let beneath = p
            .beneath(&m.dest)
            .ok_or_else(|| EngineError::internal("mount lookup"))?;
        Ok(Located {
            root: open_dir(&m.source)?,
            root_host: m.source.clone(),
            path: beneath,
            mount: Some(m),
            _rootfs: hold,
        })
    }

    fn cp_err(&self, e: CpError, name: &str, path: &str) -> EngineError {
        match e {
            CpError::NotFound { .. } => EngineError::not_found(format!(
                "Could not find the file {path} in container {name}"
            )),
            e => EngineError::new(e.kind(), format!("container {name}: {path}: {e}")),
        }
    }

    /// The shift of owners for a path of a remapped container: its rootfs and binds
    /// hold the range's host ids; its volumes are idmapped (the container's ids on disk).
    fn owners(rec: &ContainerRecord, loc: &Located) -> Option<berth_image::diff::OwnerShift> {
        if loc.mount.as_ref().is_some_and(|m| m.volume) {
            return None;
        }
        owner_shift(rec)
    }

    fn path_stat(&self, rec: &ContainerRecord, loc: &Located, info: &PathInfo) -> PathStat {
        let mut link_target = String::new();
        if info.file_type() == FileType::Symlink {
            // Resolved as the container resolves it (never on the host), as far as it
            // exists; inside a mount, within the mount's source.
            let rel = String::from_utf8_lossy(loc.path.relative()).into_owned();
            match berth_runtime::resolve_in_rootfs(&loc.root_host, &format!("/{rel}")) {
                Ok(host) => {
                    let inner = match host.strip_prefix(&loc.root_host) {
                        Ok(p) => p.to_string_lossy().into_owned(),
                        Err(_) => String::new(),
                    };
                    let mut full = match &loc.mount {
                        Some(m) => String::from_utf8_lossy(&m.dest).into_owned(),
                        None => String::new(),
                    };
                    if !inner.is_empty() {
                        if !full.is_empty() {
                            full.push('/');
                        }
                        full.push_str(&inner);
                    }
                    link_target = format!("/{full}");
                }
                Err(e) => {
                    warn!(container.id = %rec.id, error = %e, "cannot resolve symlink target")
                }
            }
        }
        PathStat {
            name: info.name.clone(),
            size: i64::try_from(info.size).unwrap_or(i64::MAX),
            mode: go_file_mode(info.st_mode),
            mtime: rfc3339(info.mtime_sec, info.mtime_nsec),
            link_target,
        }
    }

    /// `HEAD /containers/{id}/archive`: what `path` is inside the container (lstat of its
    /// last component; parents resolved in the container's root).
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn stat_path(&self, name: &str, path: &str) -> Result<PathStat> {
        let rec = self.container(name)?;
        let p = CtrPath::parse(path).map_err(|e| self.cp_err(e, name, path))?;
        let loc = self.locate(&rec, &p)?;
        let info =
            cp::stat_path(loc.root.as_fd(), &loc.path).map_err(|e| self.cp_err(e, name, path))?;
        Ok(self.path_stat(&rec, &loc, &info))
    }

    /// `GET /containers/{id}/archive`: writes `path` as a tar to `out` (streamed).
    /// `on_stat` is called with the path's stat before the first byte is written.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn get_archive(
        &self,
        name: &str,
        path: &str,
        on_stat: &mut dyn FnMut(&PathStat),
        out: &mut dyn Write,
    ) -> Result<()> {
        let rec = self.container(name)?;
        let p = CtrPath::parse(path).map_err(|e| self.cp_err(e, name, path))?;
        let loc = self.locate(&rec, &p)?;
        let info =
            cp::stat_path(loc.root.as_fd(), &loc.path).map_err(|e| self.cp_err(e, name, path))?;
        on_stat(&self.path_stat(&rec, &loc, &info));
        cp::write_archive(loc.root.as_fd(), &loc.path, out, Self::owners(&rec, &loc))
            .map_err(|e| self.cp_err(e, name, path))?;
        self.emit_container(&rec, "archive-path", &[]);
        Ok(())
    }

    /// `PUT /containers/{id}/archive`: extracts the tar `input` (plain, gzip or zstd) into
    /// the directory `path` of the container.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn put_archive(
        &self,
        name: &str,
        path: &str,
        input: &mut dyn Read,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let rec = self.container(name)?;
        let p = CtrPath::parse(path).map_err(|e| self.cp_err(e, name, path))?;
        let loc = self.locate(&rec, &p)?;
        drop(
            cp::open_extract_dir(loc.root.as_fd(), &loc.path)
                .map_err(|e| self.cp_err(e, name, path))?,
        );
        match &loc.mount {
            Some(m) if m.read_only => {
                return Err(EngineError::invalid("mounted volume is marked read-only"))
            }
            Some(_) => {}
            None if rec.read_only => {
                return Err(EngineError::invalid("container rootfs is marked read-only"))
            }
            None => {}
        }
        let owner = if copy_uid_gid && !rec.run.user.trim().is_empty() {
            let rootfs = self.overlay(&rec).target();
            let u = berth_runtime::user::resolve(&rootfs, &rec.run.user, &[])
                .map_err(|e| EngineError::invalid(format!("container {name}: copyUIDGID: {e}")))?;
            Some((u.uid, u.gid))
        } else {
            None
        };
        let opts = ExtractOptions {
            no_overwrite_dir_non_dir,
            owner,
            preserve_privileged_bits: self.config().preserve_setuid,
            min_free_bytes: self.min_free_bytes(),
            owners: Self::owners(&rec, &loc),
            ..Default::default()
        };
        let input = cp::decompressed(input).map_err(|e| self.cp_err(e, name, path))?;
        let stats = cp::extract_archive(loc.root.as_fd(), &loc.path, input, &opts)
            .map_err(|e| self.cp_err(e, name, path))?;
        if stats.stripped_privileged > 0 {
            warn!(
                container.id = %rec.id,
                path = %p.display(),
                stripped_privileged = stats.stripped_privileged,
                "setuid/setgid bits or file capabilities were removed from copied files (preserve_setuid = false)"
            );
        }
        info!(
            container.id = %rec.id,
            path = %p.display(),
            entries = stats.entries,
            size_bytes = stats.content_bytes,
            "archive extracted into container"
        );
        self.emit_container(&rec, "extract-to-dir", &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_read_like_go() {
        assert_eq!(go_file_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(go_file_mode(0o020620), (1 << 26) | (1 << 21) | 0o620);
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20Z");
    }
}
