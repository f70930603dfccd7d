//! `docker cp`: a path of a container's root filesystem read out as a tar, and a tar
//! extracted into a directory of it.
//!
//! The root filesystem is a live directory the container (a hostile workload, possibly
//! running) can change at any moment, so nothing here builds a host path by joining
//! strings or lets the host's `/` be reached:
//!
//! - Container paths are resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   relative to the rootfs fd: a symlink resolves as the container sees it (`/escape ->
//!   /` or `-> ../../..` stays at the rootfs), never on the host. A path is cleaned
//!   lexically first (`..` stops at `/`), as Docker does with `filepath.Join("/", path)`.
//! - The last component of a path is not followed (Docker lstats it) unless the path ends
//!   in `/` or `/.`; a symlink is archived as a symlink.
//! - Reading a tree: every entry is opened relative to its directory (re-opened from the
//!   walk's root with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), with `O_NOFOLLOW`; a regular
//!   file is checked again after it is opened (a swap to a fifo or a symlink is caught).
//!   At most a few fds are open, whatever the depth.
//! - Extracting: each entry's parent is resolved in the root (so a symlink in the
//!   container, or one made by an earlier entry of the same archive, is followed the way
//!   the container would follow it, and stays inside); the entry itself is created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`, `symlinkat`, `linkat` without
//!   `AT_SYMLINK_FOLLOW`, `mknodat`, and its owner, mode and times are set through an fd
//!   (or `AT_SYMLINK_NOFOLLOW` for symlinks). What exists at the entry's name is removed
//!   first, never followed (a directory over a directory merges).
//!
//! # Rules (Docker's, unless said otherwise)
//! - Entry names are relative to the extraction directory; a leading `/` is dropped; a name
//!   that climbs above it (`../../etc/passwd`) is refused: "is outside of".
//! - A symlink whose relative target climbs above the extraction directory is refused, as
//!   Docker refuses it ("invalid symlink"); absolute targets are fine (they resolve in the
//!   container). A hard link's target must lie in the extraction directory.
//! - Device nodes are refused (berth; Docker creates them). FIFOs are created.
//! - Setuid/setgid bits of non-directories and `security.capability` are stripped unless
//!   the daemon keeps privileged bits (`preserve_setuid`, the same switch as for image
//!   layers); Docker keeps them. Only `user.*` xattrs are applied.
//! - Owner: the archive's uid/gid, or the one given ([`ExtractOptions::owner`]); for a
//!   user-namespaced container both are its ids, written as the host ids they map to
//!   ([`ExtractOptions::owners`]), and archives carry the ids it sees.
//! - `no_overwrite_dir_non_dir`: a directory is never replaced by a non-directory, nor the
//!   other way round.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use berth_types::ErrorKind;
use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::diff::OwnerShift;
use crate::unpack::{
    clean_path, describe_type, lenient, lossy, parse_pax_time, remove_tree, CleanError,
    MAX_PATH_BYTES,
};

const COPY_BUF_BYTES: usize = 256 << 10;
/// Free space is checked at least every this many bytes written.
const SPACE_CHECK_EVERY: u64 = 64 << 20;
/// Bytes after the end-of-archive marker read (and dropped) so the client's upload ends
/// cleanly.
const TRAILER_LIMIT: u64 = 1 << 20;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The path, or one of its parents, does not exist (or a parent is not a directory).
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// The request breaks a rule (the destination is not a directory, ...).
    #[error("{0}")]
    Invalid(String),
    /// An entry of the archive breaks a rule.
    #[error("entry {entry}: {rule}")]
    Entry { entry: String, rule: String },
    #[error("malformed tar stream: {0}")]
    Malformed(String),
    #[error("not enough free space in the container's filesystem: {free} bytes free, {reserve} bytes must stay free (daemon setting min_free_bytes)")]
    NoSpace { free: u64, reserve: u64 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl CpError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CpError::NotFound { .. } => ErrorKind::NotFound,
            CpError::Invalid(_) | CpError::Entry { .. } | CpError::Malformed(_) => {
                ErrorKind::InvalidArgument
            }
            CpError::NoSpace { .. } => ErrorKind::Unavailable,
            CpError::Io { source, .. }
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EDQUOT)
                ) =>
            {
                ErrorKind::Unavailable
            }
            CpError::Io { .. } => ErrorKind::Internal,
        }
    }
}

fn io_err(context: impl Into<String>, e: impl Into<io::Error>) -> CpError {
    CpError::Io {
        context: context.into(),
        source: e.into(),
    }
}

fn entry_rule(entry: &[u8], rule: impl Into<String>) -> CpError {
    CpError::Entry {
        entry: lossy(entry),
        rule: rule.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Container paths

/// A path inside the container as Docker reads it: absolute, cleaned lexically (`..` stops
/// at `/`), with a trailing `/` or `/.` remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrPath {
    /// Components joined by `/`, relative to the root; empty for the root.
    rel: Vec<u8>,
    /// Ends in `/` or `/.`: the last component is followed and must be a directory.
    asserts_dir: bool,
    /// Ends in `/.` (or is `.`): a directory's contents rather than the directory.
    current_dir: bool,
    /// Where `rel` starts in the container when the root is a mount's source rather than
    /// the rootfs (the mount's destination, relative); empty for the rootfs.
    prefix: Vec<u8>,
}

impl CtrPath {
    pub fn parse(path: &str) -> Result<CtrPath, CpError> {
        if path.contains('\0') {
            return Err(CpError::Invalid(format!(
                "path {path:?} contains a NUL byte"
            )));
        }
        let mut parts: Vec<&str> = Vec::new();
        for comp in path.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        let rel = parts.join("/").into_bytes();
        if rel.len() > MAX_PATH_BYTES {
            return Err(CpError::Invalid(format!(
                "path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        let current_dir = path == "." || path.ends_with("/.");
        Ok(CtrPath {
            rel,
            asserts_dir: current_dir || path.ends_with('/'),
            current_dir,
            prefix: Vec::new(),
        })
    }

    /// The same path relative to `mount` (a cleaned, relative container path) when it is
    /// `mount` or lies beneath it: for serving it from the mount's source directory.
    pub fn beneath(&self, mount: &[u8]) -> Option<CtrPath> {
        let rest: &[u8] = if mount.is_empty() {
            &self.rel
        } else if self.rel == mount {
            b""
        } else {
            self.rel.strip_prefix(mount)?.strip_prefix(b"/")?
        };
        Some(CtrPath {
            rel: rest.to_vec(),
            prefix: join(&self.prefix, mount),
            ..self.clone()
        })
    }

    /// The last component of the path in the container (also when it is a mount's root).
    fn top_name(&self) -> &[u8] {
        if !self.rel.is_empty() {
            return self.name();
        }
        match self.prefix.iter().rposition(|b| *b == b'/') {
            Some(i) => self.prefix.get(i.saturating_add(1)..).unwrap_or_default(),
            None => &self.prefix,
        }
    }

    /// The container's root directory (not a mount's root).
    pub fn is_root(&self) -> bool {
        self.rel.is_empty() && self.prefix.is_empty()
    }

    fn parent(&self) -> &[u8] {
        match self.rel.iter().rposition(|b| *b == b'/') {
            Some(i) => self.rel.get(..i).unwrap_or_default(),
            None => b"",
        }
    }

    fn name(&self) -> &[u8] {
        match self.rel.iter().rposition(|b| *b == b'/') {
            Some(i) => self.rel.get(i.saturating_add(1)..).unwrap_or_default(),
            None => &self.rel,
        }
    }

    /// The cleaned path, relative to the root (empty for the root), without the trailing
    /// `/` or `/.`.
    pub fn relative(&self) -> &[u8] {
        &self.rel
    }

    /// Docker's name of the path (`filepath.Base`): the last component, `.` for a path
    /// ending in `/.`, `/` for the root.
    pub fn base_name(&self) -> String {
        if self.current_dir {
            ".".to_string()
        } else if self.is_root() {
            "/".to_string()
        } else {
            lossy(self.top_name())
        }
    }

    /// The path as the container sees it, cleaned.
    pub fn display(&self) -> String {
        let full = join(&self.prefix, &self.rel);
        let mut s = format!("/{}", lossy(&full));
        if self.current_dir {
            if !full.is_empty() {
                s.push('/');
            }
            s.push('.');
        } else if self.asserts_dir && !full.is_empty() {
            s.push('/');
        }
        s
    }
}

/// Opens `rel` (cleaned, relative; empty for the root itself) inside `root` as the
/// container would resolve it.
fn in_root(root: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut tries = 0;
    loop {
        match rfs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // A rename elsewhere in the tree raced the lookup: try again.
            Err(Errno::AGAIN) if tries < 32 => tries += 1,
            r => return r,
        }
    }
}

/// Opens `rel` beneath `dir`, following no symlink at all (for the entries of a tree
/// being archived).
fn beneath(dir: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut tries = 0;
    loop {
        match rfs::openat2(
            dir,
            path,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 32 => tries += 1,
            r => return r,
        }
    }
}

fn resolve_err(path: &CtrPath, e: Errno) -> CpError {
    match e {
        Errno::NOENT | Errno::NOTDIR => CpError::NotFound {
            path: path.display(),
        },
        Errno::LOOP => CpError::Invalid(format!(
            "{}: too many levels of symbolic links",
            path.display()
        )),
        Errno::NOSYS => CpError::Io {
            context: "copying files of a container needs openat2 (Linux 5.6 or later)".into(),
            source: e.into(),
        },
        e => io_err(format!("resolve {}", path.display()), e),
    }
}

/// Where a path leads.
enum Target {
    /// The object itself, followed (the root, or a path ending in `/` or `/.`).
    Followed(OwnedFd),
    /// The last component in its parent directory, not followed.
    Child { parent: OwnedFd, name: Vec<u8> },
}

fn locate(root: BorrowedFd<'_>, path: &CtrPath) -> Result<Target, CpError> {
    if path.rel.is_empty() || path.asserts_dir {
        let fd = in_root(root, &path.rel, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| resolve_err(path, e))?;
        return Ok(Target::Followed(fd));
    }
    let parent = in_root(root, path.parent(), OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| resolve_err(path, e))?;
    Ok(Target::Child {
        parent,
        name: path.name().to_vec(),
    })
}

fn stat_target(t: &Target, path: &CtrPath) -> Result<Stat, CpError> {
    match t {
        Target::Followed(fd) => rfs::fstat(fd).map_err(|e| resolve_err(path, e)),
        Target::Child { parent, name } => {
            rfs::statat(parent, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| resolve_err(path, e))
        }
    }
}

/// What `stat` says about a path (lstat of its last component).
#[derive(Debug, Clone)]
pub struct PathInfo {
    /// Docker's name: the last component, `.` or `/`.
    pub name: String,
    pub size: u64,
    /// `st_mode` (type and permission bits).
    pub st_mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

impl PathInfo {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.st_mode)
    }
}

/// Lstat of `path` inside `root` (parents resolved in the root).
pub fn stat_path(root: BorrowedFd<'_>, path: &CtrPath) -> Result<PathInfo, CpError> {
    let t = locate(root, path)?;
    let st = stat_target(&t, path)?;
    Ok(info_of(path, &st))
}

fn info_of(path: &CtrPath, st: &Stat) -> PathInfo {
    PathInfo {
        name: path.base_name(),
        size: u64::try_from(st.st_size).unwrap_or(0),
        st_mode: st.st_mode,
        mtime_sec: st.st_mtime,
        mtime_nsec: i64::try_from(st.st_mtime_nsec).unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading: a path as a tar

/// Writes `path` of `root` as a tar to `out`, as Docker's archive endpoint does: the
/// archive's top entry is the path's base name (`hostname`, `dir/`, `dir/a`); for a path
/// ending in `/.` the entries are `./`, `./a`, ...; for the root they are `/bin/`, ....
/// A symlink as the last component is archived as the symlink. Streams; returns what
/// [`stat_path`] says about the path.
///
/// `owners`: a user-namespaced container's id range; entries carry the owners the
/// container sees (its root's files are uid 0, not the range's first host id).
pub fn write_archive<W: Write>(
    root: BorrowedFd<'_>,
    path: &CtrPath,
    out: W,
    owners: Option<OwnerShift>,
) -> Result<PathInfo, CpError> {
    let t = locate(root, path)?;
    let st = stat_target(&t, path)?;
    let info = info_of(path, &st);
    let mut a = Archiver {
        b: tar::Builder::new(out),
        links: HashMap::new(),
        owners,
    };
    let top: Vec<u8> = if path.current_dir {
        b".".to_vec()
    } else if path.is_root() {
        Vec::new()
    } else {
        path.top_name().to_vec()
    };
    match &t {
        Target::Followed(fd) => {
            let dir = rfs::openat(
                fd,
                c".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| resolve_err(path, e))?;
            a.tree(dir, &top, &st)?;
        }
        Target::Child { parent, name } => {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let dir = rfs::openat(
                    parent,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| resolve_err(path, e))?;
                let st = rfs::fstat(&dir).map_err(|e| resolve_err(path, e))?;
                a.tree(dir, &top, &st)?;
            } else {
                a.entry(parent.as_fd(), name, &top, &st)?;
            }
        }
    }
    a.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| io_err("write archive", e))?;
    Ok(info)
}

struct Archiver<W: Write> {
    b: tar::Builder<W>,
    /// First archive name of each multiply-linked file, by (dev, ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    owners: Option<OwnerShift>,
}

/// One directory level of the walk.
struct Level {
    /// Path relative to the walk's root ("" for the root).
    rel: Vec<u8>,
    names: Vec<Vec<u8>>,
    next: usize,
    /// The directory's fd while it is the deepest level.
    fd: Option<OwnedFd>,
}

fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut dir = rfs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = Vec::with_capacity(a.len().saturating_add(b.len()).saturating_add(1));
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

impl<W: Write> Archiver<W> {
    /// Archives the directory `dir` under the archive name `top` ("" for the root: its
    /// entries are named `/x`), depth first, names sorted (as Go's `filepath.Walk`).
    fn tree(&mut self, dir: OwnedFd, top: &[u8], st: &Stat) -> Result<(), CpError> {
        if !top.is_empty() {
            let mut h = self.header(st, tar::EntryType::Directory, 0);
            let mut name = top.to_vec();
            name.push(b'/');
            self.append(&mut h, &name, None, io::empty())?;
        }
        let names = list_dir(dir.as_fd()).map_err(|e| io_err(format!("list {}", lossy(top)), e))?;
        let mut stack = vec![Level {
            rel: Vec::new(),
            names,
            next: 0,
            fd: None,
        }];
        while let Some(level) = stack.last_mut() {
            let Some(name) = level.names.get(level.next).cloned() else {
                stack.pop();
                continue;
            };
            level.next = level.next.saturating_add(1);
            if level.fd.is_none() {
                level.fd = Some(if level.rel.is_empty() {
                    rfs::openat(
                        &dir,
                        c".",
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_err("reopen directory", e))?
                } else {
                    match beneath(dir.as_fd(), &level.rel, OFlags::PATH | OFlags::DIRECTORY) {
                        Ok(fd) => fd,
                        // Removed or replaced meanwhile: its remaining entries are gone.
                        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP)
                        | Err(Errno::XDEV) => {
                            stack.pop();
                            continue;
                        }
                        Err(e) => return Err(io_err(format!("open {}", lossy(&level.rel)), e)),
                    }
                });
            }
            let Some(pfd) = level.fd.as_ref() else {
                continue;
            };
            let rel = join(&level.rel, &name);
            let arc_name = if top.is_empty() {
                let mut v = b"/".to_vec();
                v.extend_from_slice(&rel);
                v
            } else {
                join(top, &rel)
            };
            if arc_name.len() > MAX_PATH_BYTES {
                return Err(CpError::Invalid(format!(
                    "{}: path is longer than {MAX_PATH_BYTES} bytes",
                    lossy(&arc_name)
                )));
            }
            let st = match rfs::statat(pfd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err(format!("stat {}", lossy(&arc_name)), e)),
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let child = match rfs::openat(
                    pfd,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                    Err(e) => return Err(io_err(format!("open {}", lossy(&arc_name)), e)),
                };
                let st = rfs::fstat(&child)
                    .map_err(|e| io_err(format!("stat {}", lossy(&arc_name)), e))?;
                let mut h = self.header(&st, tar::EntryType::Directory, 0);
                let mut dname = arc_name.clone();
                dname.push(b'/');
                self.append(&mut h, &dname, None, io::empty())?;
                let names = list_dir(child.as_fd())
                    .map_err(|e| io_err(format!("list {}", lossy(&arc_name)), e))?;
                level.fd = None;
                stack.push(Level {
                    rel,
                    names,
                    next: 0,
                    fd: Some(child),
                });
            } else {
                self.entry(pfd.as_fd(), &name, &arc_name, &st)?;
            }
        }
        Ok(())
    }

    fn header(&self, st: &Stat, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        let (mut uid, mut gid) = (st.st_uid, st.st_gid);
        if let Some(o) = &self.owners {
            let mut shifted = *st;
            o.apply(&mut shifted);
            (uid, gid) = (shifted.st_uid, shifted.st_gid);
        }
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(size);
        h
    }

    /// One non-directory entry `name` of directory `pfd`.
    fn entry(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        arc_name: &[u8],
        st: &Stat,
    ) -> Result<(), CpError> {
        let shown = || lossy(arc_name);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned() {
                        let mut h = self.header(st, tar::EntryType::Link, 0);
                        return self.append(&mut h, arc_name, Some(&first), io::empty());
                    }
                }
                let fd = match rfs::openat(
                    pfd,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(io_err(format!("open {}", shown()), e)),
                };
                let st = rfs::fstat(&fd).map_err(|e| io_err(format!("stat {}", shown()), e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    // Swapped for something else since the walk saw it.
                    return Ok(());
                }
                if st.st_nlink > 1 {
                    self.links.insert((st.st_dev, st.st_ino), arc_name.to_vec());
                }
                let size = u64::try_from(st.st_size).unwrap_or(0);
                let mut h = self.header(&st, tar::EntryType::Regular, size);
                // The file may shrink or grow while it is read: exactly `size` bytes go out.
                let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
                self.append(&mut h, arc_name, None, data)
            }
            FileType::Symlink => {
                let target = match rfs::readlinkat(pfd, name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(io_err(format!("readlink {}", shown()), e)),
                };
                let mut h = self.header(st, tar::EntryType::Symlink, 0);
                self.append(&mut h, arc_name, Some(target.as_bytes()), io::empty())
            }
            FileType::Fifo => {
                let mut h = self.header(st, tar::EntryType::Fifo, 0);
                self.append(&mut h, arc_name, None, io::empty())
            }
            t @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                let kind = if t == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = self.header(st, kind, 0);
                h.set_device_major(rfs::major(st.st_rdev))
                    .and_then(|()| h.set_device_minor(rfs::minor(st.st_rdev)))
                    .map_err(|e| io_err(format!("device {}", shown()), e))?;
                self.append(&mut h, arc_name, None, io::empty())
            }
            // Sockets (and anything else) cannot be archived; Docker skips them too.
            _ => Ok(()),
        }
    }

    /// Appends an entry with `name` (and `link`) written as given: GNU long name/link
    /// records when they do not fit the header.
    fn append(
        &mut self,
        h: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> Result<(), CpError> {
        let werr = |e| io_err("write archive", e);
        if name.len() > 100 {
            self.long(b'L', name).map_err(werr)?;
        }
        copy_field(&mut h.as_old_mut().name, name);
        if let Some(link) = link {
            if link.len() > 100 {
                self.long(b'K', link).map_err(werr)?;
            }
            copy_field(&mut h.as_old_mut().linkname, link);
        }
        h.set_cksum();
        self.b.append(h, data).map_err(werr)
    }

    fn long(&mut self, kind: u8, value: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        copy_field(&mut h.as_old_mut().name, b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(value.len() as u64 + 1);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        self.b.append(&h, value.chain(&[0u8][..]))
    }
}

/// Copies `value` into a NUL-padded header field, truncated to it.
fn copy_field(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    if let (Some(dst), Some(src)) = (field.get_mut(..n), value.get(..n)) {
        dst.copy_from_slice(src);
    }
}

// ---------------------------------------------------------------------------------------------
// Writing: a tar into a directory

/// How an archive is extracted.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory and the other way round.
    pub no_overwrite_dir_non_dir: bool,
    /// Owner of every entry (`copyUIDGID` with a container user); `None` keeps the
    /// archive's uid/gid.
    pub owner: Option<(u32, u32)>,
    /// Keep setuid/setgid bits and `security.capability` (else stripped and counted).
    pub preserve_privileged_bits: bool,
    /// Refuse to go on when free space falls below this many bytes (0 disables).
    pub min_free_bytes: u64,
    /// A user-namespaced container's id range: owners (the archive's or `owner`, both
    /// the container's ids) are written as the host ids they map to; one outside the
    /// range is refused.
    pub owners: Option<OwnerShift>,
    /// A regular file already at an entry's path whose content equals the entry's (files
    /// up to [`REUSE_MAX_BYTES`]) is kept, its owner, mode and times set from the entry,
    /// instead of being written again: extracting into a directory that holds an earlier
    /// version of the same tree creates only what changed.
    pub reuse_identical: bool,
    /// Record every path the archive names, and their parents, in
    /// [`ExtractStats::paths`] (to remove afterwards what the archive did not name).
    pub record_paths: bool,
}

/// The largest file [`ExtractOptions::reuse_identical`] compares (held in memory once).
pub const REUSE_MAX_BYTES: u64 = 1 << 20;

/// What an extraction did.
#[derive(Debug, Clone, Default)]
pub struct ExtractStats {
    pub entries: u64,
    pub content_bytes: u64,
    /// Files whose setuid/setgid bits or file capabilities were removed.
    pub stripped_privileged: u64,
    /// Xattrs not applied (namespace other than `user.*`, or refused by the filesystem).
    pub skipped_xattrs: u64,
    /// Files kept as they were ([`ExtractOptions::reuse_identical`]).
    pub reused: u64,
    /// With [`ExtractOptions::record_paths`]: every path the archive named and their
    /// parents, relative to the root (the extraction directory's own included).
    pub paths: std::collections::HashSet<Vec<u8>>,
}

/// Opens the extraction directory `dest` (every component followed, in the root):
/// NotFound when it does not exist, Invalid when it is not a directory.
pub fn open_extract_dir(root: BorrowedFd<'_>, dest: &CtrPath) -> Result<OwnedFd, CpError> {
    match in_root(root, &dest.rel, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOTDIR) => {
            // The last component exists but is not a directory, or a parent is not one.
            match in_root(root, &dest.rel, OFlags::PATH) {
                Ok(_) => Err(CpError::Invalid(
                    "extraction point is not a directory".into(),
                )),
                Err(e) => Err(resolve_err(dest, e)),
            }
        }
        Err(e) => Err(resolve_err(dest, e)),
    }
}

/// Recognizes a compressed archive (gzip, zstd are decompressed; bzip2 and xz refused).
pub fn decompressed<'a, R: Read + 'a>(input: R) -> Result<Box<dyn Read + 'a>, CpError> {
    let mut r = BufReader::with_capacity(64 << 10, input);
    let head = r.fill_buf().map_err(|e| io_err("read archive", e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(r)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(r).map_err(|e| io_err("zstd", e))?,
        ));
    }
    if head.starts_with(b"BZh") {
        return Err(CpError::Invalid(
            "bzip2-compressed archives are not supported yet by berth (send a plain, gzip or zstd tar)".into(),
        ));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(CpError::Invalid(
            "xz-compressed archives are not supported yet by berth (send a plain, gzip or zstd tar)".into(),
        ));
    }
    Ok(Box::new(r))
}

/// Extracts the (uncompressed) tar `input` into the directory `dest` of `root`. The
/// caller has checked `dest` with [`open_extract_dir`]. Reads the stream to its end.
/// On error, entries extracted before stay (as with Docker).
pub fn extract_archive<R: Read>(
    root: BorrowedFd<'_>,
    dest: &CtrPath,
    input: R,
    opts: &ExtractOptions,
) -> Result<ExtractStats, CpError> {
    // The destination must still be a directory.
    drop(open_extract_dir(root, dest)?);
    let mut x = Extractor {
        root,
        dest,
        opts,
        stats: ExtractStats::default(),
        cache: None,
        dir_times: Vec::new(),
        buf: vec![0; COPY_BUF_BYTES],
        unchecked: 0,
    };
    x.check_space()?;
    let mut archive = tar::Archive::new(input);
    {
        let entries = archive
            .entries()
            .map_err(|e| CpError::Malformed(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| CpError::Malformed(e.to_string()))?;
            x.stats.entries = x.stats.entries.saturating_add(1);
            x.entry(&mut entry)?;
        }
    }
    // Whatever follows the end-of-archive marker (the second zero block, padding).
    let mut rest = archive.into_inner().take(TRAILER_LIMIT);
    let _ = io::copy(&mut rest, &mut io::sink());
    x.finish()?;
    Ok(x.stats)
}

/// Removes beneath `root` every entry whose path (relative to `root`) is not in `keep`
/// (what an extraction with [`ExtractOptions::record_paths`] recorded), never following
/// a symlink; returns how many entries were removed (a directory counts once).
pub fn remove_unlisted(
    root: BorrowedFd<'_>,
    keep: &std::collections::HashSet<Vec<u8>>,
) -> io::Result<u64> {
    let mut removed = 0u64;
    let mut todo: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = todo.pop() {
        let fd =
            in_root(root, &rel, OFlags::RDONLY | OFlags::DIRECTORY).map_err(io::Error::from)?;
        let mut dir = rfs::Dir::read_from(&fd)?;
        let mut names: Vec<(Vec<u8>, FileType)> = Vec::new();
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let name = ent.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push((name.to_vec(), ent.file_type()));
        }
        for (name, ty) in names {
            let child = join(&rel, &name);
            let ty = match ty {
                FileType::Unknown => FileType::from_raw_mode(
                    rfs::statat(&fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                ),
                t => t,
            };
            if keep.contains(&child) {
                if ty == FileType::Directory {
                    todo.push(child);
                }
                continue;
            }
            if ty == FileType::Directory {
                remove_tree(fd.as_fd(), &name)?;
            } else {
                rfs::unlinkat(&fd, name.as_slice(), AtFlags::empty())?;
            }
            removed = removed.saturating_add(1);
        }
    }
    Ok(removed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Fifo,
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(CString, Vec<u8>)>,
    privileged_dropped: bool,
    skipped_xattrs: u64,
}

struct Extractor<'a> {
    root: BorrowedFd<'a>,
    dest: &'a CtrPath,
    opts: &'a ExtractOptions,
    stats: ExtractStats,
    /// The last parent directory opened: its path (relative to the root) and fd.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Directories whose times are set at the end (their entries change them).
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    buf: Vec<u8>,
    unchecked: u64,
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), CpError> {
        let raw = entry.path_bytes().into_owned();
        let typeflag = entry.header().as_old().linkflag[0];
        let trailing_slash = raw.last() == Some(&b'/');
        let kind = match typeflag {
            // PAX global headers: ignored, as Docker does.
            b'g' => return Ok(()),
            b'0' | b'\0' if trailing_slash => Kind::Dir,
            b'0' | b'\0' | b'7' | b'S' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'3' | b'4' => {
                return Err(entry_rule(
                    &raw,
                    "device nodes cannot be copied into a container",
                ))
            }
            other => {
                return Err(entry_rule(
                    &raw,
                    format!("unsupported entry type {}", describe_type(other)),
                ))
            }
        };
        let path = clean_path(&raw).map_err(|e| {
            entry_rule(
                &raw,
                match e {
                    CleanError::Nul => "path contains a NUL byte".to_string(),
                    CleanError::Escapes => format!(
                        "path is outside of the extraction directory {}",
                        self.dest.display()
                    ),
                    CleanError::TooLong => format!("path is longer than {MAX_PATH_BYTES} bytes"),
                },
            )
        })?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let mut meta = self.meta(entry, &raw)?;
        // Directories keep setgid (harmless, common), as for image layers.
        if kind != Kind::Dir
            && !self.opts.preserve_privileged_bits
            && meta.mode & (S_ISUID | S_ISGID) != 0
        {
            meta.mode &= !(S_ISUID | S_ISGID);
            meta.privileged_dropped = true;
        }
        if let Some((uid, gid)) = self.opts.owner {
            meta.uid = uid;
            meta.gid = gid;
        }
        if let Some(o) = &self.opts.owners {
            (meta.uid, meta.gid) = o.to_host(meta.uid, meta.gid).ok_or_else(|| {
                entry_rule(
                    &raw,
                    format!(
                        "owner {}:{} cannot be mapped to a host id: the container's user namespace maps ids 0 to {}",
                        meta.uid,
                        meta.gid,
                        o.size.saturating_sub(1)
                    ),
                )
            })?;
        }
        if path.is_root() {
            // `./` names the extraction directory itself: left as it is (Docker skips it).
            if kind == Kind::Dir {
                return Ok(());
            }
            return Err(entry_rule(
                &raw,
                "entry would replace the extraction directory",
            ));
        }
        // Full path of the entry and of its parent, relative to the container's root.
        let parent_rel = join(&self.dest.rel, path.parent());
        let full = join(&self.dest.rel, &path.joined);
        let name = path.name().to_vec();
        if self.opts.reuse_identical {
            self.replace_stale_parents(&parent_rel, &raw)?;
        }
        let pfd = self.parent(&parent_rel, &raw)?;
        if self.opts.record_paths {
            self.record(&full);
        }

        // What is there already.
        if let Some(existing) = match rfs::statat(&pfd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
        {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => {
                return Err(io_err(
                    format!("entry {}: inspect existing entry", lossy(&raw)),
                    e,
                ))
            }
        } {
            let is_dir = existing == FileType::Directory;
            let shown = format!("/{}", lossy(&join(&self.dest.prefix, &full)));
            if self.opts.no_overwrite_dir_non_dir && is_dir && kind != Kind::Dir {
                return Err(entry_rule(
                    &raw,
                    format!("cannot overwrite directory {shown:?} with non-directory"),
                ));
            }
            if self.opts.no_overwrite_dir_non_dir && !is_dir && kind == Kind::Dir {
                return Err(entry_rule(
                    &raw,
                    format!("cannot overwrite non-directory {shown:?} with directory"),
                ));
            }
            let same_link = kind == Kind::HardLink
                && link
                    .as_deref()
                    .and_then(|l| clean_path(l).ok())
                    .is_some_and(|t| t.joined == path.joined);
            if same_link {
                return Ok(());
            }
            if self.opts.reuse_identical
                && kind == Kind::File
                && existing == FileType::RegularFile
                && entry.size() <= REUSE_MAX_BYTES
                && entry.header().entry_type() != tar::EntryType::GNUSparse
            {
                let content = self.read_small(entry, &raw)?;
                if self.keep_if_same(&content, &raw, pfd.as_fd(), &name, &meta)? {
                    self.cache = Some((parent_rel, pfd));
                    return Ok(());
                }
                rfs::unlinkat(&pfd, name.as_slice(), AtFlags::empty()).map_err(|e| {
                    io_err(format!("entry {}: remove existing entry", lossy(&raw)), e)
                })?;
                let size = content.len() as u64;
                self.write_file(
                    &mut content.as_slice(),
                    size,
                    false,
                    &raw,
                    pfd.as_fd(),
                    &name,
                    &meta,
                )?;
                self.cache = Some((parent_rel, pfd));
                return Ok(());
            }
            if !(is_dir && kind == Kind::Dir) {
                if is_dir {
                    remove_tree(pfd.as_fd(), &name).map_err(|e| {
                        io_err(
                            format!("entry {}: remove existing directory", lossy(&raw)),
                            e,
                        )
                    })?;
                } else {
                    rfs::unlinkat(&pfd, name.as_slice(), AtFlags::empty()).map_err(|e| {
                        io_err(format!("entry {}: remove existing entry", lossy(&raw)), e)
                    })?;
                }
            }
        }
        match kind {
            Kind::File => self.file(entry, &raw, pfd.as_fd(), &name, &mut meta)?,
            Kind::Dir => self.dir(&raw, pfd.as_fd(), &name, &full, &meta)?,
            Kind::Symlink => {
                self.symlink(
                    &raw,
                    &path.joined,
                    path.parent(),
                    pfd.as_fd(),
                    &name,
                    link.as_deref(),
                    &meta,
                )?;
            }
            Kind::HardLink => {
                self.hardlink(&raw, pfd.as_fd(), &name, link.as_deref())?;
            }
            Kind::Fifo => self.fifo(&raw, pfd.as_fd(), &name, &mut meta)?,
        }
        // The parent's fd stays valid for the next entry with the same parent: no entry
        // changes how its own parent resolves.
        self.cache = Some((parent_rel, pfd));
        Ok(())
    }

    /// The directory `rel` (relative to the root), resolved in the root; missing
    /// components are created (0755, root), as Docker's `MkdirAll`.
    fn parent(&mut self, rel: &[u8], raw: &[u8]) -> Result<OwnedFd, CpError> {
        if let Some((key, fd)) = self.cache.take() {
            if key == rel {
                return Ok(fd);
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        match in_root(self.root, rel, flags) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(Errno::NOTDIR) => {
                return Err(entry_rule(raw, "a parent directory is not a directory"))
            }
            Err(e) => {
                return Err(io_err(
                    format!("entry {}: open parent directory", lossy(raw)),
                    e,
                ))
            }
        }
        // Walk down, creating what is missing.
        let mut cur = in_root(self.root, b"", flags)
            .map_err(|e| io_err(format!("entry {}: open root", lossy(raw)), e))?;
        let mut prefix: Vec<u8> = Vec::new();
        for comp in rel.split(|b| *b == b'/') {
            prefix = join(&prefix, comp);
            cur = match in_root(self.root, &prefix, flags) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        Err(Errno::EXIST) => {
                            return Err(entry_rule(
                                raw,
                                format!(
                                    "parent directory /{} is a symlink to a missing directory",
                                    lossy(&prefix)
                                ),
                            ))
                        }
                        Err(e) => {
                            return Err(io_err(
                                format!(
                                    "entry {}: create directory /{}",
                                    lossy(raw),
                                    lossy(&prefix)
                                ),
                                e,
                            ))
                        }
                    }
                    let fd = rfs::openat(
                        &cur,
                        comp,
                        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| {
                        io_err(
                            format!("entry {}: open directory /{}", lossy(raw), lossy(&prefix)),
                            e,
                        )
                    })?;
                    // mkdir is subject to the umask.
                    rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| {
                        io_err(
                            format!("entry {}: chmod /{}", lossy(raw), lossy(&prefix)),
                            e,
                        )
                    })?;
                    fd
                }
                Err(Errno::NOTDIR) => {
                    return Err(entry_rule(
                        raw,
                        format!("parent directory /{} is not a directory", lossy(&prefix)),
                    ))
                }
                Err(e) => {
                    return Err(io_err(
                        format!("entry {}: open directory /{}", lossy(raw), lossy(&prefix)),
                        e,
                    ))
                }
            };
        }
        Ok(cur)
    }

    fn meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<Meta, CpError> {
        let header = entry.header();
        let malformed = |e: io::Error| CpError::Malformed(format!("entry {}: {e}", lossy(raw)));
        let old = header.as_old();
        let mode = lenient(header.mode().map(u64::from), &old.mode).map_err(malformed)? & 0o7777;
        let id = |v: u64, what: &str| match u32::try_from(v) {
            Ok(v) if v != u32::MAX => Ok(v),
            _ => Err(entry_rule(raw, format!("{what} {v} is out of range"))),
        };
        let uid = id(lenient(header.uid(), &old.uid).map_err(malformed)?, "uid")?;
        let gid = id(lenient(header.gid(), &old.gid).map_err(malformed)?, "gid")?;
        let mtime = Timespec {
            tv_sec: i64::try_from(lenient(header.mtime(), &old.mtime).map_err(malformed)?)
                .unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut meta = Meta {
            mode: u32::try_from(mode).unwrap_or(0),
            uid,
            gid,
            times: Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
            xattrs: Vec::new(),
            privileged_dropped: false,
            skipped_xattrs: 0,
        };
        let mut atime = None;
        let pax = entry
            .pax_extensions()
            .map_err(|e| CpError::Malformed(format!("entry {}: PAX header: {e}", lossy(raw))))?;
        if let Some(pax) = pax {
            for ext in pax {
                let ext = ext.map_err(|e| {
                    CpError::Malformed(format!("entry {}: PAX record: {e}", lossy(raw)))
                })?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(value) {
                        meta.times.last_modification = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(value);
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    let keep = if name == b"security.capability" {
                        if self.opts.preserve_privileged_bits {
                            true
                        } else {
                            meta.privileged_dropped = true;
                            false
                        }
                    } else {
                        name.starts_with(b"user.") && name.len() > 5
                    };
                    match CString::new(name) {
                        Ok(n) if keep => meta.xattrs.push((n, value.to_vec())),
                        _ => meta.skipped_xattrs = meta.skipped_xattrs.saturating_add(1),
                    }
                }
            }
        }
        meta.times.last_access = atime.unwrap_or(meta.times.last_modification);
        Ok(meta)
    }

    /// Owner, mode, xattrs and times through an fd (chown first: it clears setuid bits).
    fn apply(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        raw: &[u8],
        times: bool,
    ) -> Result<(), CpError> {
        let ctx = |op: &str| format!("entry {}: {op}", lossy(raw));
        rfs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io_err(ctx("chown"), e))?;
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| io_err(ctx("chmod"), e))?;
        self.stats.skipped_xattrs = self
            .stats
            .skipped_xattrs
            .saturating_add(meta.skipped_xattrs);
        for (name, value) in &meta.xattrs {
            match rfs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::OPNOTSUPP) | Err(Errno::PERM) => {
                    self.stats.skipped_xattrs = self.stats.skipped_xattrs.saturating_add(1)
                }
                Err(e) => return Err(io_err(ctx("set xattr"), e)),
            }
        }
        if times {
            rfs::futimens(fd, &meta.times).map_err(|e| io_err(ctx("set times"), e))?;
        }
        if meta.privileged_dropped {
            self.stats.stripped_privileged = self.stats.stripped_privileged.saturating_add(1);
        }
        Ok(())
    }

    /// Extracting over an earlier tree: a parent of an entry that this archive has not
    /// named (yet) and that is not a directory (a symlink left by the earlier tree) is
    /// removed, so the entry lands where a fresh extraction would put it.
    fn replace_stale_parents(&mut self, parent_rel: &[u8], raw: &[u8]) -> Result<(), CpError> {
        let mut end = 0;
        while end < parent_rel.len() {
            end = parent_rel[end..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(parent_rel.len(), |i| end + i);
            let prefix = &parent_rel[..end];
            end += 1;
            if prefix.len() <= self.dest.rel.len() || self.stats.paths.contains(prefix) {
                continue;
            }
            let (dir, name) = match prefix.iter().rposition(|b| *b == b'/') {
                Some(i) => (&prefix[..i], &prefix[i + 1..]),
                None => (&prefix[..0], prefix),
            };
            let Ok(dfd) = in_root(self.root, dir, OFlags::RDONLY | OFlags::DIRECTORY) else {
                return Ok(()); // missing: parent() makes the rest
            };
            match rfs::statat(&dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                    self.cache = None;
                    rfs::unlinkat(&dfd, name, AtFlags::empty()).map_err(|e| {
                        io_err(
                            format!(
                                "entry {}: remove stale parent /{}",
                                lossy(raw),
                                lossy(prefix)
                            ),
                            e,
                        )
                    })?;
                    return Ok(());
                }
                Ok(_) => {}
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Adds `full` and its parents to the recorded paths.
    fn record(&mut self, full: &[u8]) {
        let mut p = full;
        while self.stats.paths.insert(p.to_vec()) {
            match p.iter().rposition(|b| *b == b'/') {
                Some(i) => p = p.get(..i).unwrap_or_default(),
                None if !p.is_empty() => p = b"",
                None => break,
            }
        }
    }

    /// The whole content of a file entry of at most [`REUSE_MAX_BYTES`].
    fn read_small<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<Vec<u8>, CpError> {
        let size = entry.size();
        let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .take(size)
            .read_to_end(&mut content)
            .map_err(|e| CpError::Malformed(format!("entry {}: {e}", lossy(raw))))?;
        if (content.len() as u64) < size {
            return Err(CpError::Malformed(format!(
                "entry {}: stream ends inside the file's data ({} of {size} bytes)",
                lossy(raw),
                content.len()
            )));
        }
        Ok(content)
    }

    /// Keeps the regular file `name` in `pfd` when it holds exactly `content`: its
    /// owner, mode and times are set from `meta` (when they differ) and true returned.
    fn keep_if_same(
        &mut self,
        content: &[u8],
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
    ) -> Result<bool, CpError> {
        let fd = match rfs::openat(
            pfd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Not a file we may read as it is: replaced.
            Err(_) => return Ok(false),
        };
        let st = rfs::fstat(&fd).map_err(|e| io_err(format!("entry {}: stat", lossy(raw)), e))?;
        // A file hard-linked elsewhere (an earlier tree's link) is written anew: the
        // archive may want the other name's content or mode to differ.
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_nlink != 1
            || u64::try_from(st.st_size).ok() != Some(content.len() as u64)
        {
            return Ok(false);
        }
        let mut file = File::from(fd);
        let mut have = Vec::with_capacity(content.len());
        if (&mut file)
            .take(content.len() as u64 + 1)
            .read_to_end(&mut have)
            .is_err()
            || have != content
        {
            return Ok(false);
        }
        let same_meta = st.st_uid == meta.uid
            && st.st_gid == meta.gid
            && st.st_mode & 0o7777 == meta.mode
            && st.st_mtime == meta.times.last_modification.tv_sec
            && i64::try_from(st.st_mtime_nsec).ok() == Some(meta.times.last_modification.tv_nsec)
            && meta.xattrs.is_empty();
        if !same_meta {
            self.apply(file.as_fd(), meta, raw, true)?;
        }
        self.stats.reused = self.stats.reused.saturating_add(1);
        Ok(true)
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &mut Meta,
    ) -> Result<(), CpError> {
        let size = entry.size();
        let sparse = entry.header().entry_type() == tar::EntryType::GNUSparse;
        self.write_file(entry, size, sparse, raw, pfd, name, meta)
    }

    /// Creates the file `name` in `pfd` with `content` (`size` bytes are expected, fewer
    /// only for a sparse entry) and `meta`.
    #[allow(clippy::too_many_arguments)]
    fn write_file<R: Read>(
        &mut self,
        entry: &mut R,
        size: u64,
        sparse: bool,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), CpError> {
        let fd = rfs::openat(
            pfd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(format!("entry {}: create file", lossy(raw)), e))?;
        let mut file = File::from(fd);
        let mut total: u64 = 0;
        let mut buf = std::mem::take(&mut self.buf);
        let copied = (|| -> Result<(), CpError> {
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) => return Err(CpError::Malformed(format!("entry {}: {e}", lossy(raw)))),
                };
                let chunk = buf.get(..n).unwrap_or_default();
                file.write_all(chunk)
                    .map_err(|e| io_err(format!("entry {}: write file", lossy(raw)), e))?;
                total = total.saturating_add(n as u64);
                self.unchecked = self.unchecked.saturating_add(n as u64);
                if self.unchecked >= SPACE_CHECK_EVERY {
                    self.check_space()?;
                }
            }
        })();
        self.buf = buf;
        copied?;
        if total < size && !sparse {
            return Err(CpError::Malformed(format!(
                "entry {}: stream ends inside the file's data ({total} of {size} bytes)",
                lossy(raw)
            )));
        }
        self.apply(file.as_fd(), meta, raw, true)?;
        self.stats.content_bytes = self.stats.content_bytes.saturating_add(total);
        Ok(())
    }

    fn dir(
        &mut self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        full: &[u8],
        meta: &Meta,
    ) -> Result<(), CpError> {
        match rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err(format!("entry {}: create directory", lossy(raw)), e)),
        }
        let fd = rfs::openat(
            pfd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("entry {}: open directory", lossy(raw)), e))?;
        self.apply(fd.as_fd(), meta, raw, false)?;
        self.dir_times.push((full.to_vec(), meta.times.clone()));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn symlink(
        &mut self,
        raw: &[u8],
        joined: &[u8],
        parent: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        target: Option<&[u8]>,
        meta: &Meta,
    ) -> Result<(), CpError> {
        let target = match target {
            Some(t) if !t.is_empty() => t,
            _ => return Err(entry_rule(raw, "symlink has an empty target")),
        };
        if target.contains(&0) {
            return Err(entry_rule(raw, "symlink target contains a NUL byte"));
        }
        // Docker: a relative target may not climb above the extraction directory.
        if target.first() != Some(&b'/') && clean_path(&join(parent, target)).is_err() {
            return Err(entry_rule(
                raw,
                format!(
                    "invalid symlink {:?} -> {:?}: the target is outside of the extraction directory {}",
                    lossy(joined),
                    lossy(target),
                    self.dest.display()
                ),
            ));
        }
        let ctx = |op: &str| format!("entry {}: {op}", lossy(raw));
        rfs::symlinkat(target, pfd, name).map_err(|e| io_err(ctx("create symlink"), e))?;
        rfs::chownat(
            pfd,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(ctx("chown"), e))?;
        rfs::utimensat(pfd, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(ctx("set times"), e))?;
        self.stats.skipped_xattrs = self
            .stats
            .skipped_xattrs
            .saturating_add(meta.skipped_xattrs)
            .saturating_add(meta.xattrs.len() as u64);
        Ok(())
    }

    fn hardlink(
        &mut self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        target: Option<&[u8]>,
    ) -> Result<(), CpError> {
        let target_raw = match target {
            Some(t) if !t.is_empty() => t,
            _ => return Err(entry_rule(raw, "hard link has an empty target")),
        };
        let shown = lossy(target_raw);
        let target = match clean_path(target_raw) {
            Ok(t) if !t.is_root() => t,
            Ok(_) => return Err(entry_rule(raw, format!("hard link target {shown} is a directory"))),
            Err(_) => {
                return Err(entry_rule(
                    raw,
                    format!(
                        "invalid hard link to {shown:?}: the target is outside of the extraction directory {}",
                        self.dest.display()
                    ),
                ))
            }
        };
        let tparent = join(&self.dest.rel, target.parent());
        let tpfd = match in_root(self.root, &tparent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                return Err(entry_rule(
                    raw,
                    format!("hard link target {shown} does not exist"),
                ))
            }
            Err(e) => {
                return Err(io_err(
                    format!("entry {}: open hard link target", lossy(raw)),
                    e,
                ))
            }
        };
        // No AT_SYMLINK_FOLLOW: a symlink target links the symlink itself.
        match rfs::linkat(&tpfd, target.name(), pfd, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(entry_rule(
                raw,
                format!("hard link target {shown} does not exist"),
            )),
            Err(Errno::PERM) => Err(entry_rule(
                raw,
                format!("hard link target {shown} is a directory"),
            )),
            Err(Errno::XDEV) => Err(entry_rule(
                raw,
                format!("hard link target {shown} is on another filesystem"),
            )),
            Err(e) => Err(io_err(format!("entry {}: create hard link", lossy(raw)), e)),
        }
    }

    fn fifo(
        &mut self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &mut Meta,
    ) -> Result<(), CpError> {
        rfs::mknodat(pfd, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .map_err(|e| io_err(format!("entry {}: create fifo", lossy(raw)), e))?;
        // O_NONBLOCK: opening a fifo for reading does not wait for a writer.
        let fd = rfs::openat(
            pfd,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("entry {}: open fifo", lossy(raw)), e))?;
        meta.xattrs.clear();
        self.apply(fd.as_fd(), meta, raw, true)
    }

    fn check_space(&mut self) -> Result<(), CpError> {
        self.unchecked = 0;
        if self.opts.min_free_bytes == 0 {
            return Ok(());
        }
        let st = rfs::fstatvfs(self.root).map_err(|e| io_err("statvfs", e))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.opts.min_free_bytes {
            return Err(CpError::NoSpace {
                free,
                reserve: self.opts.min_free_bytes,
            });
        }
        Ok(())
    }

    /// Directory times, deepest first (a later entry changed them).
    fn finish(&mut self) -> Result<(), CpError> {
        self.cache = None;
        let mut dirs = std::mem::take(&mut self.dir_times);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.iter().filter(|b| **b == b'/').count()));
        for (path, times) in dirs {
            // Replaced by a later entry (or by the container meanwhile): nothing to do.
            let Ok(fd) = in_root(
                self.root,
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            ) else {
                continue;
            };
            rfs::futimens(&fd, &times)
                .map_err(|e| io_err(format!("/{}: set times", lossy(&path)), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_cleaned_like_docker() {
        let p = |s: &str| CtrPath::parse(s).expect("valid path");
        assert_eq!(p("/etc/hostname").relative(), b"etc/hostname");
        assert_eq!(p("etc/hostname").relative(), b"etc/hostname");
        assert_eq!(p("/a/../../b").relative(), b"b");
        assert_eq!(p("/..").relative(), b"");
        assert_eq!(p("/dir/.").base_name(), ".");
        assert!(p("/dir/.").current_dir && p("/dir/.").asserts_dir);
        assert!(p("/dir/").asserts_dir && !p("/dir/").current_dir);
        assert_eq!(p("/dir/").base_name(), "dir");
        assert_eq!(p("/").base_name(), "/");
        assert_eq!(p("/").display(), "/");
        assert_eq!(p("/x//y/").display(), "/x/y/");
        assert_eq!(p("/x/.").display(), "/x/.");
        assert!(CtrPath::parse("/a\0b").is_err());
    }

    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        copy_field(&mut h.as_old_mut().name, name.as_bytes());
        copy_field(&mut h.as_old_mut().linkname, link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o4755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    /// A scratch "container root" with `dest/`, `escape -> /` and `up -> ../../..`.
    fn scratch() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("dest")).expect("mkdir");
        std::os::unix::fs::symlink("/", root.join("escape")).expect("symlink");
        std::os::unix::fs::symlink("../../..", root.join("up")).expect("symlink");
        let fd = File::open(&root).expect("open");
        (tmp, root, fd)
    }

    fn extract(
        fd: &File,
        dest: &str,
        tar: Vec<u8>,
        opts: &ExtractOptions,
    ) -> Result<ExtractStats, CpError> {
        extract_archive(
            fd.as_fd(),
            &CtrPath::parse(dest).expect("path"),
            &tar[..],
            opts,
        )
    }

    #[test]
    fn extracting_again_keeps_identical_files_and_removes_what_the_archive_dropped() {
        use std::os::unix::fs::MetadataExt;
        let (_tmp, root, fd) = scratch();
        let opts = ExtractOptions {
            reuse_identical: true,
            record_paths: true,
            ..Default::default()
        };
        let tar = |files: &[(&str, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "d/", tar::EntryType::Directory, "", b"");
            for (name, data) in files {
                raw(&mut b, name, tar::EntryType::Regular, "", data);
            }
            b.into_inner().expect("tar")
        };
        let first = tar(&[
            ("d/same", b"one"),
            ("d/changes", b"old"),
            ("d/goes", b"x"),
            ("top", b"t"),
        ]);
        extract(&fd, "/dest", first, &opts).expect("first");
        let ino = |p: &str| std::fs::metadata(root.join(p)).expect(p).ino();
        // Files held open tell a kept file (still linked) from one written anew (whose
        // old inode is unlinked; an inode number alone may be reused).
        let held = |p: &str| File::open(root.join(p)).expect(p);
        let (same_fd, changes_fd) = (held("dest/d/same"), held("dest/d/changes"));
        // A file hard-linked elsewhere is written anew even when its content is the same.
        std::fs::hard_link(root.join("dest/top"), root.join("top.link")).expect("link");
        let same = ino("dest/d/same");
        // A file the next archive names under a new directory (its parent is implied).
        let second = tar(&[
            ("d/same", b"one"),
            ("d/changes", b"new"),
            ("e/f/new", b"n"),
            ("top", b"t"),
        ]);
        let stats = extract(&fd, "/dest", second, &opts).expect("second");
        assert_eq!(
            stats.reused, 1,
            "d/same is kept; top, linked elsewhere, is not"
        );
        assert_eq!(
            std::fs::metadata(root.join("top.link"))
                .expect("link")
                .nlink(),
            1
        );
        assert_eq!(
            ino("dest/d/same"),
            same,
            "an identical file is not written again"
        );
        let links = |f: &File| f.metadata().expect("fstat").nlink();
        assert_eq!(links(&same_fd), 1, "d/same kept");
        assert_eq!(links(&changes_fd), 0, "a changed file is written anew");
        assert_eq!(
            std::fs::read(root.join("dest/d/changes")).expect("read"),
            b"new"
        );
        // Metadata comes from the archive all the same (raw() sets 0o4755, stripped).
        let m = std::fs::metadata(root.join("dest/d/same")).expect("same");
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o755, 1_600_000_000));
        // What the second archive did not name goes; the root's own entries stay.
        let dest = rustix::fs::open(
            root.join("dest"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("dest");
        let keep: std::collections::HashSet<Vec<u8>> = stats
            .paths
            .iter()
            .filter_map(|p| {
                p.strip_prefix(b"dest/".as_slice())
                    .map(<[u8]>::to_vec)
                    .or_else(|| (p == b"dest").then(Vec::new))
            })
            .collect();
        assert_eq!(remove_unlisted(dest.as_fd(), &keep).expect("prune"), 1);
        assert!(!root.join("dest/d/goes").exists());
        assert!(root.join("dest/e/f/new").is_file() && root.join("dest/top").is_file());
        assert!(root.join("escape").exists(), "outside the pruned directory");

        // A symlink the earlier tree left where the next archive implies a directory
        // (an entry without its parent's): the entry lands in a directory, as it would
        // in a fresh extraction.
        std::os::unix::fs::symlink("d", root.join("dest/s")).expect("symlink");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "s/inner", tar::EntryType::Regular, "", b"i");
        let stats = extract(&fd, "/dest", b.into_inner().expect("tar"), &opts).expect("third");
        assert!(root.join("dest/s").symlink_metadata().expect("s").is_dir());
        assert!(root.join("dest/s/inner").is_file());
        assert!(
            !root.join("dest/d/inner").exists(),
            "the old target is not written through"
        );
        assert!(stats.paths.contains(b"dest/s/inner".as_slice()));
    }

    #[test]
    fn extraction_stays_inside_the_root() {
        use std::os::unix::fs::MetadataExt;
        let (_tmp, root, fd) = scratch();
        let marker = format!("berth-cp-unit-{}", std::process::id());
        let opts = ExtractOptions::default();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "a/", tar::EntryType::Directory, "", b"");
        raw(&mut b, "a/f", tar::EntryType::Regular, "", b"data");
        raw(&mut b, "h", tar::EntryType::Link, "a/f", b"");
        raw(&mut b, "l", tar::EntryType::Symlink, "/", b"");
        raw(
            &mut b,
            &format!("l/{marker}"),
            tar::EntryType::Regular,
            "",
            b"m",
        );
        raw(
            &mut b,
            &format!("/{marker}.abs"),
            tar::EntryType::Regular,
            "",
            b"m",
        );
        let stats = extract(&fd, "/dest", b.into_inner().expect("tar"), &opts).expect("extract");
        assert_eq!(stats.entries, 6);
        assert_eq!(stats.stripped_privileged, 3, "setuid stripped by default");
        let f = std::fs::metadata(root.join("dest/a/f")).expect("f");
        assert_eq!(f.mode() & 0o7777, 0o755);
        assert_eq!(f.mtime(), 1_600_000_000);
        assert_eq!(
            std::fs::metadata(root.join("dest/h")).expect("h").ino(),
            f.ino()
        );
        // Through the symlink to `/`: the root's `/`, not the host's.
        assert!(root.join(&marker).is_file());
        assert!(!std::path::Path::new("/").join(&marker).exists());
        assert!(root.join(format!("dest/{marker}.abs")).is_file());
        // Into a directory named through the root's own symlinks.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "via-up", tar::EntryType::Regular, "", b"u");
        extract(&fd, "/up/dest", b.into_inner().expect("tar"), &opts).expect("extract");
        assert!(root.join("dest/via-up").is_file());

        let refused = |name: &str, kind, link: &str, rule: &str, opts: &ExtractOptions| {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, name, kind, link, b"");
            let e = extract(&fd, "/dest", b.into_inner().expect("tar"), opts)
                .expect_err(name)
                .to_string();
            assert!(e.contains(rule), "{name}: {e}");
        };
        refused(
            "../../x",
            tar::EntryType::Regular,
            "",
            "is outside of the extraction directory /dest",
            &opts,
        );
        refused(
            "s",
            tar::EntryType::Symlink,
            "../../etc",
            "invalid symlink",
            &opts,
        );
        refused(
            "hl",
            tar::EntryType::Link,
            "../escape",
            "outside of the extraction directory",
            &opts,
        );
        refused("dev", tar::EntryType::Char, "", "device nodes", &opts);
        let strict = ExtractOptions {
            no_overwrite_dir_non_dir: true,
            ..ExtractOptions::default()
        };
        refused(
            "a",
            tar::EntryType::Regular,
            "",
            "cannot overwrite directory",
            &strict,
        );
        refused(
            "h/",
            tar::EntryType::Directory,
            "",
            "cannot overwrite non-directory",
            &strict,
        );
        assert!(!root.join("x").exists() && !root.join("dev").exists());
        // The destination must be a directory.
        let e = extract(&fd, "/dest/h", Vec::new(), &opts).expect_err("file");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = extract(&fd, "/nope", Vec::new(), &opts).expect_err("missing");
        assert!(matches!(e, CpError::NotFound { .. }), "{e}");
    }

    #[test]
    fn archives_are_named_like_docker() {
        let (_tmp, root, fd) = scratch();
        std::fs::create_dir_all(root.join("d/sub")).expect("mkdir");
        std::fs::write(root.join("d/x"), "x").expect("write");
        std::fs::write(root.join("d/sub/y"), "y").expect("write");
        std::os::unix::fs::symlink("d", root.join("s")).expect("symlink");
        let names = |path: &str| {
            let mut out = Vec::new();
            write_archive(
                fd.as_fd(),
                &CtrPath::parse(path).expect("path"),
                &mut out,
                None,
            )
            .expect("archive");
            let mut a = tar::Archive::new(&out[..]);
            a.entries()
                .expect("entries")
                .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("/d"), ["d/", "d/sub/", "d/sub/y", "d/x"]);
        assert_eq!(names("/d/."), ["./", "./sub/", "./sub/y", "./x"]);
        assert_eq!(names("/s"), ["s"]);
        assert_eq!(names("/s/"), ["s/", "s/sub/", "s/sub/y", "s/x"]);
        assert_eq!(names("/escape/d/x"), ["x"]);
        assert_eq!(names("/up/up/d/sub/y"), ["y"]);
        let info = stat_path(fd.as_fd(), &CtrPath::parse("/s").expect("path")).expect("stat");
        assert_eq!(info.file_type(), FileType::Symlink);
        assert_eq!(info.name, "s");
        assert!(matches!(
            stat_path(
                fd.as_fd(),
                &CtrPath::parse("/escape/etc/passwd").expect("path")
            ),
            Err(CpError::NotFound { .. })
        ));
    }
}
