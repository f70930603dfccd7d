//! A container's changes: read from its overlay's upper directory against the image's
//! layers, listed (`docker diff`) or made into a new layer (`docker commit`, and the
//! Dockerfile builder's steps).
//!
//! Each entry of the upper directory is a change: a whiteout (char device 0:0) is a
//! deletion; an entry the image's layers have is a modification; any other an addition.
//! A directory the container only passed through (copied up because something below it
//! changed) counts as modified only when something counted lies below it, it is opaque,
//! or its own mode or owner changed, as Docker reports it. Paths the caller names as its
//! own (`skip`: the engine's mount points of `/etc/hosts`, `/proc`, …, which Docker keeps
//! in an init layer below the container's) are not the container's changes and are left
//! out: a file there is never listed, a directory there only when something below it is.
//!
//! # The layer ([`ingest_upper_diff`])
//! The changes become a tar as Docker's overlay2 driver writes one: names relative
//! (`etc/passwd`, directories with a trailing `/`), parents before children, names
//! sorted; an overlay whiteout becomes an empty regular file `.wh.NAME` (mode 0600), an
//! opaque directory (`trusted.overlay.opaque=y`) gets a `.wh..wh..opq` entry right after
//! its own; multiply-linked files become one file and hard links to its first name;
//! `user.*` and `security.capability` xattrs travel as PAX `SCHILY.xattr.*` records
//! (Docker keeps only the latter; berth keeps both, as its layers do); modes including
//! setuid/setgid/sticky, owners and mtimes (whole seconds, as Docker) are kept; sockets
//! are left out, as Docker leaves them out. The tar is streamed through the store's one
//! layer ingest ([`ingest_layer`]): hashed (the diff_id), written as the layer blob and
//! unpacked into a staged snapshot, nothing published: the caller publishes it with the
//! image ([`crate::derive::derive_image`]).
//!
//! # Reading a live tree safely
//! The upper directory belongs to a container that may run (a commit without pause) and
//! rename anything at any moment. Nothing is opened by joining host paths: every entry
//! is opened beneath the upper directory's fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`
//! and `O_NOFOLLOW`, a regular file is checked again after it is opened, and exactly the
//! size seen goes into the tar. A directory swapped for a symlink is skipped, never
//! followed onto the host. Lower layers (berth's snapshots) are looked up the same way.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_store::Store;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use crate::layer::{ingest_layer, Compression, IngestOptions, IngestedLayer, LayerError};

/// The diff_id of a layer without a single entry (a tar of two zero blocks): Docker adds
/// no layer for it (the history entry is an `empty_layer`).
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const METACOPY_XATTR: &CStr = c"trusted.overlay.metacopy";
const REDIRECT_XATTR: &CStr = c"trusted.overlay.redirect";

/// Docker's change kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One change (`{"Path": "/etc/x", "Kind": 1}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// The id range a user-namespaced container's root maps to on the host: its upper
/// directory holds host ids (`uid + n` for the container's `n`), which the layer and
/// the comparison with the image's layers (container ids) see shifted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerShift {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl OwnerShift {
    /// The container's view of a host-owned stat: unmapped ids become the overflow id
    /// 65534, as the kernel shows them inside the namespace.
    pub fn apply(&self, st: &mut Stat) {
        let back = |id: u32, base: u32| {
            id.checked_sub(base)
                .filter(|i| *i < self.size)
                .unwrap_or(OVERFLOW_ID)
        };
        st.st_uid = back(st.st_uid, self.uid);
        st.st_gid = back(st.st_gid, self.gid);
    }

    /// The host's (uid, gid) of the container's; None when either is outside the range.
    pub fn to_host(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        let up = |id: u32, base: u32| (id < self.size).then(|| base + id);
        Some((up(uid, self.uid)?, up(gid, self.gid)?))
    }
}

/// The kernel's default overflowuid/overflowgid.
const OVERFLOW_ID: u32 = 65534;

/// An entry of the upper directory that is a change.
#[derive(Debug, Clone)]
struct Entry {
    /// Relative to the upper directory, no leading or trailing `/`.
    rel: Vec<u8>,
    kind: ChangeKind,
    st: Stat,
    /// A directory marked opaque by overlayfs (the lower layers' content is hidden).
    opaque: bool,
}

/// Why a layer could not be made from an upper directory.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("reading the container's changes: {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Layer(LayerError),
}

impl DiffError {
    pub fn is_no_space(&self) -> bool {
        match self {
            DiffError::Layer(e) => e.is_no_space(),
            DiffError::Read { source, .. } => berth_store::error::is_no_space(source),
            DiffError::Unsupported(_) => false,
        }
    }
}

fn read_err(what: impl Into<String>, e: impl Into<io::Error>) -> DiffError {
    DiffError::Read {
        what: what.into(),
        source: e.into(),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Opens `rel` beneath `dir`, following no symlink at all.
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

fn open_dir(path: &Path) -> Result<OwnedFd, DiffError> {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read_err(format!("open {}", path.display()), e))
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = Vec::with_capacity(a.len() + b.len() + 1);
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

fn has_xattr(fd: BorrowedFd<'_>, name: &CStr) -> bool {
    rfs::fgetxattr(fd, name, &mut [0u8; 8][..]).is_ok()
}

fn xattr_is(fd: BorrowedFd<'_>, name: &CStr, want: &[u8]) -> bool {
    let mut buf = [0u8; 8];
    matches!(rfs::fgetxattr(fd, name, &mut buf[..]), Ok(n) if buf.get(..n) == Some(want))
}

/// The lower layers (top first), as overlayfs looks an entry up in them.
struct Lowers(Vec<OwnedFd>);

impl Lowers {
    fn open(lowers: &[PathBuf]) -> Result<Lowers, DiffError> {
        lowers
            .iter()
            .map(|p| open_dir(p))
            .collect::<Result<Vec<_>, _>>()
            .map(Lowers)
    }

    /// What the image has at `rel`: the topmost layer with an entry there decides (a
    /// whiteout, or a non-directory on the way, means nothing).
    fn stat(&self, rel: &[u8]) -> Option<Stat> {
        for l in &self.0 {
            match beneath(l.as_fd(), rel, OFlags::PATH) {
                Ok(fd) => {
                    let st = rfs::fstat(&fd).ok()?;
                    return (!is_whiteout(&st)).then_some(st);
                }
                Err(Errno::NOENT) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

struct Walk<'a> {
    upper: BorrowedFd<'a>,
    owners: Option<OwnerShift>,
    lowers: Lowers,
    skip: &'a [&'a str],
    /// Pre-order; `None` for a directory left out once its children were seen.
    out: Vec<Option<Entry>>,
}

impl Walk<'_> {
    fn skipped(&self, rel: &[u8]) -> bool {
        self.skip
            .iter()
            .any(|s| s.strip_prefix('/').unwrap_or(s).as_bytes() == rel)
    }

    /// Walks the directory `rel` of the upper dir; returns (whether a change was counted
    /// below it, whether it is opaque). `hidden`: an opaque directory above hides the
    /// lower layers here.
    fn dir(&mut self, rel: &[u8], hidden: bool) -> Result<(bool, bool), DiffError> {
        let fd = match beneath(self.upper, rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            // Removed or swapped for a non-directory meanwhile.
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) | Err(Errno::XDEV) => {
                return Ok((false, false))
            }
            Err(e) => return Err(read_err(format!("open /{}", lossy(rel)), e)),
        };
        let opaque = !rel.is_empty() && xattr_is(fd.as_fd(), OPAQUE_XATTR, b"y");
        if has_xattr(fd.as_fd(), REDIRECT_XATTR) {
            return Err(DiffError::Unsupported(format!(
                "/{}: a directory renamed by overlayfs's redirect_dir is not supported",
                lossy(rel)
            )));
        }
        let hidden = hidden || opaque;
        let mut names = Vec::new();
        {
            let mut d = rfs::Dir::read_from(&fd)
                .map_err(|e| read_err(format!("list /{}", lossy(rel)), e))?;
            while let Some(ent) = d.read() {
                let ent = ent.map_err(|e| read_err(format!("list /{}", lossy(rel)), e))?;
                let n = ent.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
        }
        names.sort();
        let mut children = Vec::with_capacity(names.len());
        for n in names {
            match rfs::statat(&fd, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => children.push((n, st)),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(read_err(format!("stat /{}", lossy(&join(rel, &n))), e)),
            }
        }
        drop(fd);
        let mut any = false;
        for (name, st) in children {
            let child = join(rel, &name);
            let skip = self.skipped(&child);
            if is_whiteout(&st) {
                self.out.push(Some(Entry {
                    rel: child,
                    kind: ChangeKind::Deleted,
                    st,
                    opaque: false,
                }));
                any = true;
                continue;
            }
            let lower = if hidden {
                None
            } else {
                self.lowers.stat(&child)
            };
            if is_dir(&st) {
                let at = self.out.len();
                self.out.push(None);
                let (below, opaque) = self.dir(&child, hidden)?;
                // Owners as the container sees them (the image's layers have its ids).
                let mut seen = st;
                if let Some(o) = &self.owners {
                    o.apply(&mut seen);
                }
                let kind = match &lower {
                    None if !skip => Some(ChangeKind::Added),
                    _ if below || opaque => Some(ChangeKind::Modified),
                    Some(l)
                        if is_dir(l)
                            && (l.st_mode & 0o7777 != st.st_mode & 0o7777
                                || l.st_uid != seen.st_uid
                                || l.st_gid != seen.st_gid) =>
                    {
                        Some(ChangeKind::Modified)
                    }
                    Some(l) if !is_dir(l) => Some(ChangeKind::Modified),
                    _ => None,
                };
                if let Some(kind) = kind {
                    if let Some(slot) = self.out.get_mut(at) {
                        *slot = Some(Entry {
                            rel: child,
                            kind,
                            st,
                            opaque,
                        });
                    }
                    any = true;
                }
                continue;
            }
            if skip {
                continue;
            }
            self.out.push(Some(Entry {
                rel: child,
                kind: if lower.is_some() {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                },
                st,
                opaque: false,
            }));
            any = true;
        }
        Ok((any, opaque))
    }
}

/// The changes of `upper` over `lowers` (top layer first), parents before children.
fn walk(
    upper: &Path,
    lowers: &[PathBuf],
    skip: &[&str],
    owners: Option<OwnerShift>,
) -> Result<(OwnedFd, Vec<Entry>), DiffError> {
    let fd = open_dir(upper)?;
    let mut w = Walk {
        upper: fd.as_fd(),
        owners,
        lowers: Lowers::open(lowers)?,
        skip,
        out: Vec::new(),
    };
    w.dir(b"", false)?;
    let out = w.out.into_iter().flatten().collect();
    Ok((fd, out))
}

/// `docker diff`: the changes of the upper directory `upper` over `lowers` (top layer
/// first), sorted by path as Docker sorts them (`/a-b` before `/a/b`). A missing upper
/// directory has none. `owners`: the container's id range when it runs in a user
/// namespace.
pub fn upper_changes(
    upper: &Path,
    lowers: &[PathBuf],
    skip: &[&str],
    owners: Option<OwnerShift>,
) -> Result<Vec<Change>, DiffError> {
    if !upper.is_dir() {
        return Ok(Vec::new());
    }
    let (_, entries) = walk(upper, lowers, skip, owners)?;
    let mut out: Vec<Change> = entries
        .into_iter()
        .map(|e| Change {
            path: format!("/{}", lossy(&e.rel)),
            kind: e.kind,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Makes the changes of `upper` over `lowers` (top layer first) into a layer: the tar
/// described in the module docs, ingested as an uncompressed layer blob and a staged
/// snapshot, not yet published. `skip` as for [`upper_changes`]. The entries are listed
/// and read before this returns: nothing of the tree is read after it.
pub fn ingest_upper_diff(
    store: &Store,
    upper: &Path,
    lowers: &[PathBuf],
    skip: &[&str],
    owners: Option<OwnerShift>,
    opts: &IngestOptions,
) -> Result<IngestedLayer, DiffError> {
    ingest_upper_diff_clamped(store, upper, lowers, skip, owners, opts, None)
}

/// [`ingest_upper_diff`], every mtime after `clamp_mtime` (seconds since the epoch)
/// written as `clamp_mtime`: a reproducible build's layer (`SOURCE_DATE_EPOCH`) does not
/// depend on when its files were made.
pub fn ingest_upper_diff_clamped(
    store: &Store,
    upper: &Path,
    lowers: &[PathBuf],
    skip: &[&str],
    owners: Option<OwnerShift>,
    opts: &IngestOptions,
    clamp_mtime: Option<u64>,
) -> Result<IngestedLayer, DiffError> {
    let (upper_fd, entries) = if upper.is_dir() {
        let (fd, entries) = walk(upper, lowers, skip, owners)?;
        (Some(fd), entries)
    } else {
        (None, Vec::new())
    };
    let (mut reader, writer) = io::pipe().map_err(|e| read_err("create a pipe", e))?;
    let producer = std::thread::Builder::new()
        .name("berth-diff-tar".into())
        .spawn(move || {
            write_tar(
                upper_fd.as_ref().map(|f| f.as_fd()),
                &entries,
                owners,
                clamp_mtime,
                writer,
            )
        })
        .map_err(|e| read_err("start the diff writer", e))?;
    let ingested = ingest_layer(store, &[], &mut reader, Compression::None, true, opts);
    drop(reader);
    let produced = producer
        .join()
        .unwrap_or_else(|_| Err(DiffError::Unsupported("the diff writer panicked".into())));
    // The writer's own failure explains a failed ingest better than its echo (a
    // truncated tar).
    produced?;
    ingested.map_err(DiffError::Layer)
}

/// Writes the tar of `entries` (read beneath `upper`) into `out`.
fn write_tar<W: Write>(
    upper: Option<BorrowedFd<'_>>,
    entries: &[Entry],
    owners: Option<OwnerShift>,
    clamp_mtime: Option<u64>,
    out: W,
) -> Result<(), DiffError> {
    let mut t = TarOut {
        b: tar::Builder::new(io::BufWriter::with_capacity(256 << 10, out)),
        links: HashMap::new(),
        owners,
        clamp_mtime,
    };
    if let Some(upper) = upper {
        for e in entries {
            t.entry(upper, e)?;
        }
    }
    t.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| read_err("write the layer", e))?;
    Ok(())
}

struct TarOut<W: Write> {
    b: tar::Builder<W>,
    /// First name written of each multiply-linked file, by (dev, ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    /// A remapped container's range: headers carry the ids the container sees.
    owners: Option<OwnerShift>,
    /// Later mtimes are written as this one (seconds).
    clamp_mtime: Option<u64>,
}

/// The xattrs a layer keeps: `user.*` and `security.capability`.
fn xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut list = vec![0u8; 4096];
    let n = loop {
        match rfs::flistxattr(fd, &mut list[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) if list.len() < (1 << 20) => {
                let len = list.len() * 4;
                list.resize(len, 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in list.get(..n).unwrap_or(&[]).split(|b| *b == 0) {
        if name.is_empty() || !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 256];
        loop {
            match rfs::fgetxattr(fd, cname.as_c_str(), &mut value[..]) {
                Ok(len) => {
                    value.truncate(len);
                    out.push((name.to_vec(), value));
                    break;
                }
                Err(Errno::RANGE) if value.len() < (1 << 20) => {
                    let len = value.len() * 4;
                    value.resize(len, 0);
                }
                Err(Errno::NODATA) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

impl<W: Write> TarOut<W> {
    fn header(&self, st: &Stat, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        let mut seen = *st;
        if let Some(o) = &self.owners {
            o.apply(&mut seen);
        }
        h.set_uid(u64::from(seen.st_uid));
        h.set_gid(u64::from(seen.st_gid));
        let mtime = u64::try_from(st.st_mtime).unwrap_or(0);
        h.set_mtime(self.clamp_mtime.map_or(mtime, |c| mtime.min(c)));
        h.set_size(size);
        h
    }

    fn entry(&mut self, upper: BorrowedFd<'_>, e: &Entry) -> Result<(), DiffError> {
        let shown = || format!("/{}", lossy(&e.rel));
        if e.kind == ChangeKind::Deleted {
            let (parent, name) = match e.rel.iter().rposition(|b| *b == b'/') {
                Some(i) => (&e.rel[..i], &e.rel[i + 1..]),
                None => (&[][..], &e.rel[..]),
            };
            let mut wh = b".wh.".to_vec();
            wh.extend_from_slice(name);
            let mut h = self.header(&e.st, tar::EntryType::Regular, 0);
            h.set_mode(0o600);
            return self.append(&mut h, &join(parent, &wh), None, &[], io::empty());
        }
        match FileType::from_raw_mode(e.st.st_mode) {
            FileType::Directory => {
                let fd = match beneath(upper, &e.rel, OFlags::RDONLY | OFlags::DIRECTORY) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(()),
                    Err(err) => return Err(read_err(format!("open {}", shown()), err)),
                };
                let st =
                    rfs::fstat(&fd).map_err(|err| read_err(format!("stat {}", shown()), err))?;
                let xattrs = xattrs(fd.as_fd())
                    .map_err(|err| read_err(format!("xattrs of {}", shown()), err))?;
                let mut h = self.header(&st, tar::EntryType::Directory, 0);
                let mut name = e.rel.clone();
                name.push(b'/');
                self.append(&mut h, &name, None, &xattrs, io::empty())?;
                if e.opaque {
                    let mut h = self.header(&st, tar::EntryType::Regular, 0);
                    h.set_mode(st.st_mode & 0o777);
                    self.append(
                        &mut h,
                        &join(&e.rel, b".wh..wh..opq"),
                        None,
                        &[],
                        io::empty(),
                    )?;
                }
                Ok(())
            }
            FileType::RegularFile => {
                if e.st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(e.st.st_dev, e.st.st_ino)).cloned() {
                        let mut h = self.header(&e.st, tar::EntryType::Link, 0);
                        return self.append(&mut h, &e.rel, Some(&first), &[], io::empty());
                    }
                }
                let fd = match beneath(upper, &e.rel, OFlags::RDONLY | OFlags::NONBLOCK) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(()),
                    Err(err) => return Err(read_err(format!("open {}", shown()), err)),
                };
                let st =
                    rfs::fstat(&fd).map_err(|err| read_err(format!("stat {}", shown()), err))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    // Swapped for something else since the walk saw it.
                    return Ok(());
                }
                if has_xattr(fd.as_fd(), METACOPY_XATTR) {
                    return Err(DiffError::Unsupported(format!(
                        "{}: a metadata-only copy-up (overlayfs metacopy) is not supported",
                        shown()
                    )));
                }
                let xattrs = xattrs(fd.as_fd())
                    .map_err(|err| read_err(format!("xattrs of {}", shown()), err))?;
                if st.st_nlink > 1 {
                    self.links.insert((st.st_dev, st.st_ino), e.rel.clone());
                }
                let size = u64::try_from(st.st_size).unwrap_or(0);
                let mut h = self.header(&st, tar::EntryType::Regular, size);
                // The file may change while it is read: exactly `size` bytes go out.
                let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
                self.append(&mut h, &e.rel, None, &xattrs, data)
            }
            FileType::Symlink => {
                let (parent, name) = match e.rel.iter().rposition(|b| *b == b'/') {
                    Some(i) => (&e.rel[..i], &e.rel[i + 1..]),
                    None => (&[][..], &e.rel[..]),
                };
                let pfd = match beneath(upper, parent, OFlags::PATH | OFlags::DIRECTORY) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(()),
                    Err(err) => return Err(read_err(format!("open {}", shown()), err)),
                };
                let target = match rfs::readlinkat(&pfd, name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT) | Err(Errno::INVAL) => return Ok(()),
                    Err(err) => return Err(read_err(format!("readlink {}", shown()), err)),
                };
                let mut h = self.header(&e.st, tar::EntryType::Symlink, 0);
                self.append(&mut h, &e.rel, Some(target.as_bytes()), &[], io::empty())
            }
            FileType::Fifo => {
                let mut h = self.header(&e.st, tar::EntryType::Fifo, 0);
                self.append(&mut h, &e.rel, None, &[], io::empty())
            }
            t @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                let kind = if t == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = self.header(&e.st, kind, 0);
                h.set_device_major(rfs::major(e.st.st_rdev))
                    .and_then(|()| h.set_device_minor(rfs::minor(e.st.st_rdev)))
                    .map_err(|err| read_err(format!("device {}", shown()), err))?;
                self.append(&mut h, &e.rel, None, &[], io::empty())
            }
            // Sockets cannot be archived; Docker leaves them out too.
            _ => Ok(()),
        }
    }

    /// Appends an entry with `name` (and `link`) as given: a PAX header for its xattrs,
    /// GNU long name/link records when they do not fit the header.
    fn append(
        &mut self,
        h: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: impl Read,
    ) -> Result<(), DiffError> {
        let werr = |e| read_err("write the layer", e);
        if !xattrs.is_empty() {
            self.pax(name, xattrs).map_err(werr)?;
        }
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

    /// A PAX extended header with one `SCHILY.xattr.NAME` record per xattr.
    fn pax(&mut self, name: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        let mut data = Vec::new();
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            // "LEN KEY=VALUE\n", LEN counting its own digits.
            let base = key.len() + v.len() + 3;
            let mut len = base + 1;
            loop {
                let next = base + len.to_string().len();
                if next == len {
                    break;
                }
                len = next;
            }
            data.extend_from_slice(len.to_string().as_bytes());
            data.push(b' ');
            data.extend_from_slice(&key);
            data.push(b'=');
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        let base = name
            .rsplit(|b| *b == b'/')
            .find(|s| !s.is_empty())
            .unwrap_or(b"x");
        let mut pname = b"PaxHeaders.0/".to_vec();
        pname.extend_from_slice(base);
        copy_field(&mut h.as_old_mut().name, &pname);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_cksum();
        self.b.append(&h, data.as_slice())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn mknod_whiteout(p: &Path) {
        rfs::mknodat(rfs::CWD, p, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    }

    /// An upper directory with every kind of change becomes a layer whose snapshot has
    /// them all: xattrs, hard links, symlinks, modes, empty dirs, whiteouts, opaque dirs.
    #[test]
    fn an_upper_directory_round_trips_through_a_layer() {
        // On the project's disk (tmpfs may lack user xattrs).
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        fs::create_dir_all(lower.join("gone")).unwrap();
        fs::create_dir_all(lower.join("op")).unwrap();
        fs::write(lower.join("op/old"), "old").unwrap();
        fs::write(lower.join("file"), "x").unwrap();
        fs::create_dir_all(upper.join("op")).unwrap();
        fs::write(upper.join("op/new"), "new").unwrap();
        let op = rfs::open(
            upper.join("op"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        if rfs::fsetxattr(&op, OPAQUE_XATTR, b"y", rfs::XattrFlags::empty()).is_err() {
            eprintln!("no trusted xattrs here (not root?); skipping");
            return;
        }
        mknod_whiteout(&upper.join("gone"));
        mknod_whiteout(&upper.join("file"));
        fs::write(upper.join("a"), "content").unwrap();
        fs::hard_link(upper.join("a"), upper.join("b")).unwrap();
        std::os::unix::fs::symlink("/a", upper.join("s")).unwrap();
        fs::set_permissions(
            upper.join("a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        fs::create_dir(upper.join("empty")).unwrap();
        let a = rfs::open(upper.join("a"), OFlags::RDONLY, Mode::empty()).unwrap();
        let have_user_xattrs =
            rfs::fsetxattr(&a, c"user.note", b"kept", rfs::XattrFlags::empty()).is_ok();
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut opts = IngestOptions {
            unpack: Default::default(),
            max_compression_ratio: 0,
        };
        opts.unpack.preserve_privileged_bits = true;
        opts.unpack.min_free_bytes = 0;
        let layer = ingest_upper_diff(
            &store,
            &upper,
            std::slice::from_ref(&lower),
            &[],
            None,
            &opts,
        )
        .unwrap();
        let snap = layer.snapshot.path();
        let meta = |p: &str| fs::symlink_metadata(snap.join(p)).unwrap();
        assert_eq!(fs::read_to_string(snap.join("a")).unwrap(), "content");
        assert_eq!(meta("a").mode() & 0o7777, 0o4755);
        assert_eq!(meta("a").ino(), meta("b").ino());
        assert_eq!(fs::read_link(snap.join("s")).unwrap(), Path::new("/a"));
        assert!(meta("empty").is_dir());
        for w in ["gone", "file"] {
            assert!(is_whiteout(&rfs::lstat(snap.join(w)).unwrap()), "{w}");
        }
        let op = rfs::open(
            snap.join("op"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert!(xattr_is(op.as_fd(), OPAQUE_XATTR, b"y"));
        assert_eq!(fs::read_to_string(snap.join("op/new")).unwrap(), "new");
        if have_user_xattrs {
            let f = rfs::open(snap.join("a"), OFlags::RDONLY, Mode::empty()).unwrap();
            let mut buf = [0u8; 16];
            let n = rfs::fgetxattr(&f, c"user.note", &mut buf[..]).unwrap();
            assert_eq!(&buf[..n], b"kept");
        }
        // The diff lists the same changes.
        let changes = upper_changes(&upper, &[lower], &[], None).unwrap();
        let got: Vec<(&str, ChangeKind)> =
            changes.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert!(got.contains(&("/op", ChangeKind::Modified)), "{got:?}");
        assert!(got.contains(&("/gone", ChangeKind::Deleted)), "{got:?}");
        assert!(got.contains(&("/a", ChangeKind::Added)), "{got:?}");
    }

    /// A remapped container's upper directory holds host ids: the layer carries the
    /// container's (host 100000+n is n), an id outside the range the overflow id, and a
    /// directory the container only passed through is not a change for its owner.
    #[test]
    fn a_remapped_containers_owners_are_shifted_back() {
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        for p in ["etc", "opt"] {
            fs::create_dir_all(lower.join(p)).unwrap();
            std::os::unix::fs::chown(lower.join(p), Some(0), Some(0)).unwrap();
            fs::create_dir_all(upper.join(p)).unwrap();
        }
        fs::write(upper.join("etc/root-file"), "r").unwrap();
        fs::write(upper.join("user-file"), "u").unwrap();
        fs::write(upper.join("stranger"), "s").unwrap();
        let chown = |p: &str, u: u32, g: u32| {
            std::os::unix::fs::chown(upper.join(p), Some(u), Some(g)).unwrap()
        };
        chown("etc", 100_000, 100_000);
        chown("opt", 100_000, 100_000);
        chown("etc/root-file", 100_000, 100_000);
        chown("user-file", 101_000, 100_050);
        chown("stranger", 7, 7);
        let shift = OwnerShift {
            uid: 100_000,
            gid: 100_000,
            size: 65536,
        };
        let changes =
            upper_changes(&upper, std::slice::from_ref(&lower), &[], Some(shift)).unwrap();
        let got: Vec<(&str, ChangeKind)> =
            changes.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert!(
            got.contains(&("/etc/root-file", ChangeKind::Added)),
            "{got:?}"
        );
        assert!(!got.iter().any(|(p, _)| *p == "/opt"), "{got:?}");
        // Unshifted, /opt's owner (100000 against 0) would count as a change.
        let plain = upper_changes(&upper, std::slice::from_ref(&lower), &[], None).unwrap();
        assert!(plain.iter().any(|c| c.path == "/opt"), "{plain:?}");

        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut opts = IngestOptions {
            unpack: Default::default(),
            max_compression_ratio: 0,
        };
        opts.unpack.min_free_bytes = 0;
        let layer = ingest_upper_diff(&store, &upper, &[lower], &[], Some(shift), &opts).unwrap();
        let snap = layer.snapshot.path();
        let owner = |p: &str| {
            let m = fs::symlink_metadata(snap.join(p)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("etc/root-file"), (0, 0));
        assert_eq!(owner("user-file"), (1000, 50));
        assert_eq!(owner("stranger"), (65534, 65534));
    }

    #[test]
    fn an_untouched_upper_directory_is_an_empty_layer() {
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(upper.join("proc")).unwrap();
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let opts = IngestOptions {
            unpack: crate::unpack::UnpackOptions {
                min_free_bytes: 0,
                ..Default::default()
            },
            max_compression_ratio: 0,
        };
        let layer = ingest_upper_diff(
            &store,
            &upper,
            &[lower],
            &["/etc/hosts", "/proc"],
            None,
            &opts,
        )
        .unwrap();
        assert_eq!(layer.diff_id.to_string(), EMPTY_LAYER_DIFF_ID);
    }
}
