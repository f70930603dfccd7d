//! Safe unpacking of one image layer into its own snapshot directory.
//!
//! This is the attack surface for hostile images. Each layer is an uncompressed tar stream
//! (the caller decompresses and digests it) that is unpacked into its OWN empty directory,
//! exactly like Docker's overlay2 driver applies each diff into its own diff dir; snapshots
//! are stacked later as overlayfs lowerdirs. Nothing from earlier layers is present, and
//! nothing in the destination is ever followed.
//!
//! # How it stays inside the root
//! - `dest` is opened once; every filesystem operation afterwards is relative to a directory
//!   fd (`openat2` with `RESOLVE_BENEATH | NO_SYMLINKS | NO_MAGICLINKS | NO_XDEV`, or a
//!   component-by-component `openat(O_NOFOLLOW | O_DIRECTORY)` walk where `openat2` is not
//!   available), then `mkdirat`, `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`, `symlinkat`,
//!   `linkat` without `AT_SYMLINK_FOLLOW`, `mknodat`, `fchown`/`fchownat(AT_SYMLINK_NOFOLLOW)`,
//!   `fchmod`, `futimens`/`utimensat(AT_SYMLINK_NOFOLLOW)` and `fsetxattr`. No host path is
//!   ever built by joining strings.
//! - Entry paths are raw bytes, cleaned lexically: leading `/` and `.` components dropped,
//!   `..` resolved; a path that would climb above the root is refused.
//! - A parent component that is a symlink (made earlier in this layer) is refused, never
//!   followed. An existing final component is removed first (a directory recursively, without
//!   following anything), except that a directory entry over a directory merges.
//!
//! # Decisions where the rules leave room
//! - Unknown entry types (`V` volume labels, `D` dumpdirs, `M`, `N`, vendor types) are refused
//!   with an error, like Docker does: fail closed. PAX global headers (`g`) are skipped with a
//!   warning (Docker ignores them too). A GNU long name/link or PAX header that reaches us
//!   unapplied (because its own header is pre-POSIX) is refused as malformed.
//! - GNU sparse entries (`S`) are supported through the `tar` crate; holes are written as
//!   holes. Their expanded size counts against `max_tar_bytes` like any file content, so a
//!   sparse "1 TiB of holes" entry is refused as a bomb. PAX sparse formats (`GNU.sparse.*`
//!   records) are refused with a clear error rather than extracted as garbage.
//! - A character device 0:0 in the tar is created: it is the overlayfs whiteout itself (the
//!   same object a `.wh.` entry produces) and is not a usable device. Other device nodes are
//!   skipped and counted.
//! - A hard link to its own path is a no-op. A hard link that would replace a directory
//!   containing its own target is refused.
//! - Paths (and hard link targets) longer than 4096 bytes after cleaning are refused: Docker
//!   cannot extract them either (it joins paths and hits `PATH_MAX`), and the bound keeps
//!   directory depth, and with it every walk, bounded.
//! - Extension headers (GNU long names, PAX records, sparse maps) of one entry may not exceed
//!   16 MiB together: the `tar` crate holds them in memory, so a "long name" of 60 GiB must
//!   not be read into RAM before `max_tar_bytes` trips.
//! - Xattrs are applied to regular files and directories only (the kernel refuses `user.*`
//!   on other types). `EPERM`/`EOPNOTSUPP` from `fsetxattr` is counted and warned about, as
//!   Docker does. `LIBARCHIVE.xattr.*` records, `security.*` other than `security.capability`
//!   and `system.*` (ACLs) are skipped and counted.
//! - A `./` directory entry applies its owner, mode, xattrs and mtime to the layer root (as
//!   Docker does); a non-directory entry whose path cleans to the root is refused.
//! - `tar_bytes` counts every byte read from the stream, including what follows the
//!   end-of-archive marker (the stream is always read to its end). Entries after the first
//!   zero block are ignored, like GNU tar and the `tar` crate do.
//! - Uids/gids that do not fit a Linux id (> 2^32-2) are refused.
//! - A `.wh.NAME` whiteout replaces an entry NAME made earlier in the same layer (later entry
//!   wins, as for any other entry).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;

/// A numeric header field that is empty (only NULs and spaces) reads as 0, as Go's
/// archive/tar (Docker) and GNU tar read it; the `tar` crate refuses it.
pub(crate) fn lenient(parsed: io::Result<u64>, field: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

/// Longest cleaned path (or hard link target) accepted, in bytes.
pub(crate) const MAX_PATH_BYTES: usize = 4096;
/// Most bytes the `tar` crate may read (and buffer) for the headers of one entry.
const MAX_HEADER_BYTES: u64 = 16 << 20;
/// Copy buffer for file content.
const COPY_BUF_BYTES: usize = 256 << 10;
/// Free space is checked at least every this many bytes written.
const SPACE_CHECK_EVERY: u64 = 64 << 20;
/// Free space is checked before every file at least this large.
const LARGE_FILE_BYTES: u64 = 1 << 20;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const XATTR_PAX_PREFIX: &[u8] = b"SCHILY.xattr.";
const CAPABILITY_XATTR: &[u8] = b"security.capability";

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

/// How a layer is unpacked.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Keep setuid/setgid bits and `security.capability` xattrs (default false: stripped, counted in stats).
    pub preserve_privileged_bits: bool,
    /// Maximum bytes read from the tar stream (uncompressed) before refusing the layer as a bomb. Default 64 GiB.
    /// The expanded size of sparse files counts against it too.
    pub max_tar_bytes: u64,
    /// Maximum number of entries. Default 5_000_000.
    pub max_entries: u64,
    /// Refuse to continue when free space on the destination filesystem falls below this many bytes
    /// (checked at the start, at least every 64 MiB written and before each file of 1 MiB or more,
    /// which must fit on top of the reserve). Default 512 MiB; 0 disables.
    pub min_free_bytes: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            preserve_privileged_bits: false,
            max_tar_bytes: 64 << 30,
            max_entries: 5_000_000,
            min_free_bytes: 512 << 20,
        }
    }
}

/// What unpacking a layer did.
#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Entries in the tar stream (after GNU/PAX extension headers were merged into their entry).
    pub entries: u64,
    /// Bytes of regular-file content written (the layer's "size"; sparse files count their full size).
    pub content_bytes: u64,
    /// Bytes consumed from the stream, including padding, the end-of-archive marker and anything after it.
    pub tar_bytes: u64,
    /// Files whose setuid/setgid/security.capability was removed.
    pub stripped_privileged: u64,
    /// Char/block device entries not created.
    pub skipped_devices: u64,
}

/// Why a layer could not be unpacked. The caller removes the destination.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry breaks a rule. `entry` is the path as written in the tar (lossy UTF-8), `rule` says which rule,
    /// e.g. "path escapes the layer root", "parent directory x/y is a symlink",
    /// "hard link target ../x escapes the layer root", "hard link target a/b does not exist earlier in the layer",
    /// "whiteout name '..' is not a file name", "xattr trusted.overlay.opaque is not allowed".
    #[error("entry {entry}: {rule}")]
    Entry { entry: String, rule: String },
    #[error("layer exceeds {limit} bytes uncompressed (decompression bomb?)")]
    TooLarge { limit: u64 },
    #[error("layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    /// `reserve` is `min_free_bytes`, plus the size of the file about to be written when the check
    /// was made before a large file.
    #[error("not enough free space on {path}: {free} bytes free, {reserve} bytes must stay free (daemon setting min_free_bytes)")]
    NoSpace {
        path: String,
        free: u64,
        reserve: u64,
    },
    #[error("malformed tar stream: {0}")]
    Malformed(String),
    #[error("entry {entry}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl UnpackError {
    /// True for [`UnpackError::NoSpace`] and for I/O errors that are `ENOSPC` or `EDQUOT`.
    pub fn is_no_space(&self) -> bool {
        match self {
            UnpackError::NoSpace { .. } => true,
            UnpackError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EDQUOT)
                )
            }
            _ => false,
        }
    }
}

/// Unpacks the uncompressed layer tar `stream` into the existing empty directory `dest`.
/// Reads the stream to its end (through the end-of-archive marker and any trailing bytes) so the caller's digest covers all of it.
///
/// On error, `dest` is left in an unspecified state; the caller removes it.
pub fn unpack_layer<R: std::io::Read>(
    stream: R,
    dest: &std::path::Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Io {
        entry: dest.display().to_string(),
        op: "open layer root",
        source: e.into(),
    })?;
    let root_dev = rfs::fstat(&root)
        .map_err(|e| UnpackError::Io {
            entry: dest.display().to_string(),
            op: "stat layer root",
            source: e.into(),
        })?
        .st_dev;

    let budget = Budget::new(opts.max_tar_bytes);
    let mut u = Unpacker {
        root: root.as_fd(),
        root_dev,
        dest,
        opts,
        budget: &budget,
        stats: UnpackStats::default(),
        cache_key: Vec::new(),
        cache_fd: None,
        openat2_ok: true,
        dir_times: HashMap::new(),
        buf: vec![0; COPY_BUF_BYTES],
        unchecked_bytes: 0,
        skipped_xattrs: 0,
        skipped_globals: 0,
    };
    u.check_space(0)?;

    let mut archive = tar::Archive::new(CountingReader {
        inner: stream,
        budget: &budget,
    });
    {
        let mut entries = archive
            .entries()
            .map_err(|e| budget.map_read_err(e, None))?;
        loop {
            budget.begin_headers();
            let next = entries.next();
            budget.end_headers();
            let mut entry = match next {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(e)) => return Err(budget.map_read_err(e, None)),
            };
            u.stats.entries = u.stats.entries.saturating_add(1);
            if u.stats.entries > opts.max_entries {
                return Err(UnpackError::TooManyEntries {
                    limit: opts.max_entries,
                });
            }
            u.entry(&mut entry)?;
        }
    }

    // Read the rest of the stream (the second zero block, record padding, anything after it)
    // so the caller's digest covers every byte; it is never interpreted.
    let mut rest = archive.into_inner();
    loop {
        match rest.read(&mut u.buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(budget.map_read_err(e, None)),
        }
    }
    u.stats.tar_bytes = budget.count.get();
    u.finish()?;
    Ok(u.stats)
}

// ---------------------------------------------------------------------------------------------
// Stream accounting

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trip {
    None,
    TooLarge,
    Headers,
    Stream,
}

/// Byte accounting shared between the reader handed to `tar` and the unpacker.
struct Budget {
    count: Cell<u64>,
    limit: u64,
    /// Stream position where the `tar` crate started reading the headers of the next entry.
    header_mark: Cell<Option<u64>>,
    trip: Cell<Trip>,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Budget {
            count: Cell::new(0),
            limit,
            header_mark: Cell::new(None),
            trip: Cell::new(Trip::None),
        }
    }

    fn begin_headers(&self) {
        self.header_mark.set(Some(self.count.get()));
    }

    fn end_headers(&self) {
        self.header_mark.set(None);
    }

    fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.count.get())
    }

    fn set_trip(&self, trip: Trip) {
        if self.trip.get() == Trip::None {
            self.trip.set(trip);
        }
    }

    /// Turns an error that came out of the `tar` crate (or our reader beneath it) into ours.
    fn map_read_err(&self, e: io::Error, entry: Option<&[u8]>) -> UnpackError {
        match self.trip.get() {
            Trip::TooLarge => UnpackError::TooLarge { limit: self.limit },
            Trip::Headers => UnpackError::Malformed(format!(
                "extension headers of one entry exceed {MAX_HEADER_BYTES} bytes"
            )),
            Trip::Stream => UnpackError::Io {
                entry: entry.map_or_else(|| "(layer stream)".to_string(), lossy),
                op: "read layer stream",
                source: e,
            },
            Trip::None => UnpackError::Malformed(match entry {
                Some(p) => format!("entry {}: {e}", lossy(p)),
                None => e.to_string(),
            }),
        }
    }
}

/// Counts (and bounds) every byte pulled from the layer stream.
struct CountingReader<'b, R> {
    inner: R,
    budget: &'b Budget,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let budget = self.budget;
        if budget.trip.get() != Trip::None {
            return Err(io::Error::other("layer stream already failed"));
        }
        // Never ask for more than one byte past the limit: exceeding it is detected at once
        // and a bomb is never buffered.
        let allowed = budget.remaining().saturating_add(1);
        let want = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = loop {
            match self.inner.read(buf) {
                Ok(n) => break n.min(buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    budget.set_trip(Trip::Stream);
                    return Err(e);
                }
            }
        };
        let count = budget.count.get().saturating_add(n as u64);
        budget.count.set(count);
        if count > budget.limit {
            budget.set_trip(Trip::TooLarge);
            return Err(io::Error::other("layer exceeds the size limit"));
        }
        if let Some(mark) = budget.header_mark.get() {
            if count.saturating_sub(mark) > MAX_HEADER_BYTES {
                budget.set_trip(Trip::Headers);
                return Err(io::Error::other("extension headers too large"));
            }
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

/// A path cleaned lexically: components joined by `/`, no `.`, `..` or empty components,
/// relative to the layer root. Empty means the root itself.
pub(crate) struct CleanPath {
    pub(crate) joined: Vec<u8>,
    /// Start of the last component in `joined`.
    name_start: usize,
}

impl CleanPath {
    pub(crate) fn is_root(&self) -> bool {
        self.joined.is_empty()
    }

    pub(crate) fn parent(&self) -> &[u8] {
        self.joined
            .get(..self.name_start.saturating_sub(1))
            .unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &[u8] {
        self.joined.get(self.name_start..).unwrap_or_default()
    }

    /// True if `self` is `ancestor` or lies beneath it.
    fn is_within(&self, ancestor: &[u8]) -> bool {
        is_within(&self.joined, ancestor)
    }
}

fn is_within(path: &[u8], ancestor: &[u8]) -> bool {
    if ancestor.is_empty() {
        // Everything is within the root.
        return true;
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
        None => false,
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum CleanError {
    Nul,
    Escapes,
    TooLong,
}

pub(crate) fn clean_path(raw: &[u8]) -> Result<CleanPath, CleanError> {
    if raw.contains(&0) {
        return Err(CleanError::Nul);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(CleanError::Escapes);
                }
            }
            comp => parts.push(comp),
        }
    }
    let joined = parts.join(&b'/');
    if joined.len() > MAX_PATH_BYTES {
        return Err(CleanError::TooLong);
    }
    let name_start = joined
        .iter()
        .rposition(|b| *b == b'/')
        .map_or(0, |i| i.saturating_add(1));
    Ok(CleanPath { joined, name_start })
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Number of components, for ordering directories deepest first.
fn depth(path: &[u8]) -> usize {
    if path.is_empty() {
        0
    } else {
        path.iter()
            .filter(|b| **b == b'/')
            .count()
            .saturating_add(1)
    }
}

fn rule(entry: &[u8], rule: impl Into<String>) -> UnpackError {
    UnpackError::Entry {
        entry: lossy(entry),
        rule: rule.into(),
    }
}

fn io_err(entry: &[u8], op: &'static str, source: impl Into<io::Error>) -> UnpackError {
    UnpackError::Io {
        entry: lossy(entry),
        op,
        source: source.into(),
    }
}

/// Why a directory could not be reached inside the root.
enum WalkError {
    /// The component ending at this prefix is a symlink.
    Symlink(Vec<u8>),
    /// The component ending at this prefix is not a directory.
    NotDir(Vec<u8>),
    /// The component ending at this prefix does not exist.
    Missing(Vec<u8>),
    /// The component ending at this prefix is on another filesystem (a mount).
    OtherDev(Vec<u8>),
    Io(io::Error),
}

/// Flags for directory fds we walk through and operate in.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

/// Removes the directory `name` in `parent` and everything beneath it, never following a
/// symlink and never holding more than two directory fds (depth is attacker-controlled).
pub(crate) fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let top = rfs::openat(parent, name, dir_flags(), Mode::empty())?;
    // For each directory we descended into: its name and the (dev, ino) of its parent.
    let mut stack: Vec<(Vec<u8>, (u64, u64))> = Vec::new();
    let mut dir = rfs::Dir::new(top)?;
    loop {
        // Unlink everything that is not a directory; stop at the first subdirectory.
        let mut subdir: Option<Vec<u8>> = None;
        loop {
            let mut removed_any = false;
            dir.rewind();
            while let Some(ent) = dir.read() {
                let ent = ent?;
                let child = ent.file_name().to_bytes();
                if child == b"." || child == b".." {
                    continue;
                }
                let fd = dir.fd()?;
                let is_dir = match ent.file_type() {
                    FileType::Directory => true,
                    FileType::Unknown => {
                        let st = rfs::statat(fd, child, AtFlags::SYMLINK_NOFOLLOW)?;
                        FileType::from_raw_mode(st.st_mode) == FileType::Directory
                    }
                    _ => false,
                };
                if is_dir {
                    subdir = Some(child.to_vec());
                    break;
                }
                rfs::unlinkat(fd, child, AtFlags::empty())?;
                removed_any = true;
            }
            // Entries removed during a readdir pass may hide others: rescan until a pass
            // removes nothing.
            if subdir.is_some() || !removed_any {
                break;
            }
        }
        if let Some(child) = subdir {
            let fd = dir.fd()?;
            let st = rfs::fstat(fd)?;
            let next = rfs::openat(fd, child.as_slice(), dir_flags(), Mode::empty())?;
            stack.push((child, (st.st_dev, st.st_ino)));
            dir = rfs::Dir::new(next)?;
            continue;
        }
        // `dir` is empty now.
        let Some((child, parent_id)) = stack.pop() else {
            break;
        };
        let up = rfs::openat(dir.fd()?, c"..", dir_flags(), Mode::empty())?;
        let st = rfs::fstat(&up)?;
        if (st.st_dev, st.st_ino) != parent_id {
            return Err(io::Error::other(
                "directory moved while it was being removed",
            ));
        }
        rfs::unlinkat(&up, child.as_slice(), AtFlags::REMOVEDIR)?;
        dir = rfs::Dir::new(up)?;
    }
    drop(dir);
    rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Parses a PAX time (`[-]seconds[.fraction]`).
pub(crate) fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos: i64 = 0;
    let mut digits = 0;
    for d in frac.bytes().take(9) {
        nanos = nanos * 10 + i64::from(d - b'0');
        digits += 1;
    }
    for _ in digits..9 {
        nanos *= 10;
    }
    if !neg {
        return Some(Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        });
    }
    let secs = secs.checked_neg()?;
    if nanos == 0 {
        Some(Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        })
    } else {
        Some(Timespec {
            tv_sec: secs.checked_sub(1)?,
            tv_nsec: 1_000_000_000 - nanos,
        })
    }
}

pub(crate) fn describe_type(flag: u8) -> String {
    if flag.is_ascii_graphic() {
        format!("'{}'", flag as char)
    } else {
        format!("0x{flag:02x}")
    }
}

// ---------------------------------------------------------------------------------------------
// The unpacker

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File { sparse: bool },
    Dir,
    Symlink,
    HardLink,
    Fifo,
    Char,
    Block,
}

/// Metadata of one entry, validated.
struct Meta {
    /// `mode & 0o7777` from the header (setuid/setgid not yet stripped).
    mode: u32,
    uid: Uid,
    gid: Gid,
    times: (Timespec, Timespec),
    /// Allowed xattrs to apply (`user.*`, and `security.capability` when preserving).
    xattrs: Vec<(CString, Vec<u8>)>,
    /// A `security.capability` xattr was dropped.
    caps_dropped: bool,
    /// Xattrs skipped because of their namespace.
    skipped_xattrs: u64,
}

impl Meta {
    fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.times.0,
            last_modification: self.times.1,
        }
    }
}

struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    root_dev: u64,
    dest: &'a Path,
    opts: &'a UnpackOptions,
    budget: &'a Budget,
    stats: UnpackStats,
    /// The most recent parent directory (path and fd); `cache_fd` is taken while in use.
    cache_key: Vec<u8>,
    cache_fd: Option<OwnedFd>,
    openat2_ok: bool,
    /// Directory times, applied at the end (children change a directory's mtime).
    dir_times: HashMap<Vec<u8>, (Timespec, Timespec)>,
    buf: Vec<u8>,
    unchecked_bytes: u64,
    skipped_xattrs: u64,
    skipped_globals: u64,
}

impl<'a> Unpacker<'a> {
    fn entry<E: Read>(&mut self, entry: &mut tar::Entry<'_, E>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let typeflag = entry.header().as_old().linkflag[0];
        let trailing_slash = raw.last() == Some(&b'/');
        let kind = match typeflag {
            b'g' => {
                self.skipped_globals = self.skipped_globals.saturating_add(1);
                let size = entry.size();
                return self.drain(entry, &raw, size);
            }
            b'x' | b'L' | b'K' => {
                return Err(UnpackError::Malformed(format!(
                    "entry {}: extension header of type {} in a pre-POSIX header",
                    lossy(&raw),
                    describe_type(typeflag)
                )))
            }
            // Old-style regular files whose name ends in `/` are directories (GNU tar, Go).
            b'0' | b'\0' if trailing_slash => Kind::Dir,
            b'0' | b'\0' | b'7' => Kind::File { sparse: false },
            b'S' => Kind::File { sparse: true },
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => {
                return Err(rule(
                    &raw,
                    format!("unsupported entry type {}", describe_type(other)),
                ))
            }
        };
        let path = clean_path(&raw).map_err(|e| {
            rule(
                &raw,
                match e {
                    CleanError::Nul => "path contains a NUL byte".to_string(),
                    CleanError::Escapes => "path escapes the layer root".to_string(),
                    CleanError::TooLong => format!("path is longer than {MAX_PATH_BYTES} bytes"),
                },
            )
        })?;
        let link = entry.link_name_bytes().map(Cow::into_owned);
        let mut meta = self.meta(entry, &raw)?;
        let size = entry.size();

        let is_whiteout = !path.is_root() && path.name().starts_with(WHITEOUT_PREFIX);
        let consumed = if is_whiteout {
            self.whiteout(&raw, &path, &meta)?;
            0
        } else {
            match kind {
                Kind::File { sparse } => {
                    self.file(entry, &raw, &path, &mut meta, sparse)?;
                    size
                }
                Kind::Dir => {
                    self.dir(&raw, &path, &meta)?;
                    0
                }
                Kind::Symlink => {
                    self.symlink(&raw, &path, link.as_deref(), &meta)?;
                    0
                }
                Kind::HardLink => {
                    self.hardlink(&raw, &path, link.as_deref())?;
                    0
                }
                Kind::Fifo => {
                    self.fifo(&raw, &path, &mut meta)?;
                    0
                }
                Kind::Char | Kind::Block => {
                    let major = entry.header().device_major();
                    let minor = entry.header().device_minor();
                    let whiteout = kind == Kind::Char
                        && matches!(major, Ok(Some(0)))
                        && matches!(minor, Ok(Some(0)));
                    if whiteout {
                        if path.is_root() {
                            return Err(rule(&raw, "entry would replace the layer root"));
                        }
                        self.make_whiteout(&raw, path.parent(), path.name(), &meta)?;
                    } else {
                        self.stats.skipped_devices = self.stats.skipped_devices.saturating_add(1);
                    }
                    0
                }
            }
        };
        self.drain(entry, &raw, size.saturating_sub(consumed))
    }

    /// Reads what is left of an entry's data, which must be exactly `expect` bytes.
    fn drain<E: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, E>,
        raw: &[u8],
        expect: u64,
    ) -> Result<(), UnpackError> {
        let mut total: u64 = 0;
        loop {
            match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => total = total.saturating_add(n as u64),
                Err(e) => return Err(self.budget.map_read_err(e, Some(raw))),
            }
        }
        if total != expect {
            return Err(UnpackError::Malformed(format!(
                "entry {}: stream ends inside the entry's data ({total} of {expect} bytes)",
                lossy(raw)
            )));
        }
        Ok(())
    }

    /// Reads and validates owner, mode, times and xattrs of an entry.
    fn meta<E: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, E>,
        raw: &[u8],
    ) -> Result<Meta, UnpackError> {
        let header = entry.header();
        let malformed = |e: io::Error| UnpackError::Malformed(format!("entry {}: {e}", lossy(raw)));
        let old = header.as_old();
        let mode = lenient(header.mode().map(u64::from), &old.mode).map_err(malformed)? & 0o7777;
        let mode = u32::try_from(mode).unwrap_or(0);
        let uid = id(
            lenient(header.uid(), &old.uid).map_err(malformed)?,
            "uid",
            raw,
        )?;
        let gid = id(
            lenient(header.gid(), &old.gid).map_err(malformed)?,
            "gid",
            raw,
        )?;
        let mtime = Timespec {
            tv_sec: i64::try_from(lenient(header.mtime(), &old.mtime).map_err(malformed)?)
                .unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut meta = Meta {
            mode,
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            times: (mtime, mtime),
            xattrs: Vec::new(),
            caps_dropped: false,
            skipped_xattrs: 0,
        };
        let mut atime = None;
        let pax = entry.pax_extensions().map_err(|e| {
            UnpackError::Malformed(format!("entry {}: PAX header: {e}", lossy(raw)))
        })?;
        if let Some(pax) = pax {
            for ext in pax {
                let ext = ext.map_err(|e| {
                    UnpackError::Malformed(format!("entry {}: PAX record: {e}", lossy(raw)))
                })?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(value) {
                        meta.times.1 = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(value);
                } else if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                    self.xattr(raw, name, value, &mut meta)?;
                } else if key.starts_with(b"GNU.sparse.") {
                    return Err(rule(
                        raw,
                        "PAX sparse files (GNU.sparse.* records) are not supported",
                    ));
                } else if key.starts_with(b"LIBARCHIVE.xattr.") {
                    meta.skipped_xattrs = meta.skipped_xattrs.saturating_add(1);
                }
            }
        }
        meta.times.0 = atime.unwrap_or(meta.times.1);
        Ok(meta)
    }

    fn xattr(
        &self,
        raw: &[u8],
        name: &[u8],
        value: &[u8],
        meta: &mut Meta,
    ) -> Result<(), UnpackError> {
        if name.starts_with(b"trusted.") {
            return Err(rule(raw, format!("xattr {} is not allowed", lossy(name))));
        }
        let allowed = if name == CAPABILITY_XATTR {
            if !self.opts.preserve_privileged_bits {
                meta.caps_dropped = true;
                return Ok(());
            }
            true
        } else {
            name.starts_with(b"user.") && name.len() > b"user.".len()
        };
        if !allowed {
            meta.skipped_xattrs = meta.skipped_xattrs.saturating_add(1);
            return Ok(());
        }
        let cname = CString::new(name)
            .map_err(|_| rule(raw, format!("xattr {} contains a NUL byte", lossy(name))))?;
        meta.xattrs.push((cname, value.to_vec()));
        Ok(())
    }

    /// Strips setuid/setgid (non-directories) unless preserving; records the strip.
    fn strip_mode(&self, meta: &mut Meta) -> bool {
        let mut stripped = meta.caps_dropped;
        if !self.opts.preserve_privileged_bits && meta.mode & (S_ISUID | S_ISGID) != 0 {
            meta.mode &= !(S_ISUID | S_ISGID);
            stripped = true;
        }
        stripped
    }

    fn count_stripped(&mut self, stripped: bool) {
        if stripped {
            self.stats.stripped_privileged = self.stats.stripped_privileged.saturating_add(1);
        }
    }

    // -- parent directories -------------------------------------------------------------------

    /// Opens directory `path` (relative, cleaned, non-empty) beneath the root, creating missing
    /// components (mode 0755) when `create`.
    fn open_dir(&mut self, path: &[u8], create: bool) -> Result<OwnedFd, WalkError> {
        if self.openat2_ok {
            match rfs::openat2(self.root, path, dir_flags(), Mode::empty(), resolve_flags()) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOSYS) => self.openat2_ok = false,
                // Missing, symlink, not a directory, ...: the walk creates or diagnoses.
                Err(_) => {}
            }
        }
        let mut cur: Option<OwnedFd> = None;
        let mut end = 0usize;
        for (i, comp) in path.split(|b| *b == b'/').enumerate() {
            end = if i == 0 {
                comp.len()
            } else {
                end.saturating_add(1).saturating_add(comp.len())
            };
            let prefix = || path.get(..end).unwrap_or(path).to_vec();
            if comp.is_empty() || comp == b"." || comp == b".." {
                // Cannot happen for cleaned paths; refuse rather than interpret.
                return Err(WalkError::Missing(prefix()));
            }
            let at = cur.as_ref().map_or(self.root, |f| f.as_fd());
            let fd = match rfs::openat(at, comp, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(at, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(WalkError::Io(e.into())),
                    }
                    match rfs::openat(at, comp, dir_flags(), Mode::empty()) {
                        Ok(fd) => {
                            // mkdir is subject to the umask.
                            rfs::fchmod(&fd, Mode::from_raw_mode(0o755))
                                .map_err(|e| WalkError::Io(e.into()))?;
                            fd
                        }
                        Err(e) => return Err(diagnose(at, comp, prefix(), e)),
                    }
                }
                Err(e) => return Err(diagnose(at, comp, prefix(), e)),
            };
            let st = rfs::fstat(&fd).map_err(|e| WalkError::Io(e.into()))?;
            if st.st_dev != self.root_dev {
                return Err(WalkError::OtherDev(prefix()));
            }
            cur = Some(fd);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => Err(WalkError::Missing(Vec::new())),
        }
    }

    /// The parent directory fd for an entry; `None` means the root. Taken out of the cache
    /// while in use; give it back with [`Self::put_parent`].
    fn take_parent(&mut self, parent: &[u8], raw: &[u8]) -> Result<Option<OwnedFd>, UnpackError> {
        if parent.is_empty() {
            return Ok(None);
        }
        if self.cache_key == parent {
            if let Some(fd) = self.cache_fd.take() {
                return Ok(Some(fd));
            }
        }
        match self.open_dir(parent, true) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) => Err(walk_error(raw, e)),
        }
    }

    fn put_parent(&mut self, parent: &[u8], fd: Option<OwnedFd>) {
        if let Some(fd) = fd {
            if self.cache_key != parent {
                self.cache_key.clear();
                self.cache_key.extend_from_slice(parent);
            }
            self.cache_fd = Some(fd);
        }
    }

    /// Removes what exists at `name` in `pfd` (whose full path is `full`). A directory is kept
    /// when `keep_dir` (returns true), else removed recursively.
    fn clear(
        &mut self,
        pfd: BorrowedFd<'_>,
        full: &[u8],
        name: &[u8],
        keep_dir: bool,
        raw: &[u8],
    ) -> Result<bool, UnpackError> {
        let st = match rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io_err(raw, "inspect existing entry", e)),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if keep_dir {
                return Ok(true);
            }
            remove_tree(pfd, name).map_err(|e| io_err(raw, "remove existing directory", e))?;
            if is_within(&self.cache_key, full) {
                self.cache_fd = None;
            }
            self.dir_times.remove(full);
        } else {
            rfs::unlinkat(pfd, name, AtFlags::empty())
                .map_err(|e| io_err(raw, "remove existing entry", e))?;
        }
        Ok(false)
    }

    fn check_space(&mut self, upcoming: u64) -> Result<(), UnpackError> {
        self.unchecked_bytes = 0;
        if self.opts.min_free_bytes == 0 {
            return Ok(());
        }
        let st = rfs::fstatvfs(self.root).map_err(|e| UnpackError::Io {
            entry: self.dest.display().to_string(),
            op: "statvfs",
            source: e.into(),
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let reserve = self.opts.min_free_bytes.saturating_add(upcoming);
        if free < reserve {
            return Err(UnpackError::NoSpace {
                path: self.dest.display().to_string(),
                free,
                reserve,
            });
        }
        Ok(())
    }

    fn set_xattrs(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), UnpackError> {
        self.skipped_xattrs = self.skipped_xattrs.saturating_add(meta.skipped_xattrs);
        for (name, value) in &meta.xattrs {
            match rfs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::OPNOTSUPP) | Err(Errno::PERM) => {
                    self.skipped_xattrs = self.skipped_xattrs.saturating_add(1);
                }
                Err(e) => return Err(io_err(raw, "set xattr", e)),
            }
        }
        Ok(())
    }

    /// Owner, mode and xattrs through an fd, in the order that keeps them: chown clears
    /// setuid bits and file capabilities, so it goes first.
    fn apply_fd_meta(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), UnpackError> {
        rfs::fchown(fd, Some(meta.uid), Some(meta.gid)).map_err(|e| io_err(raw, "chown", e))?;
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| io_err(raw, "chmod", e))?;
        self.set_xattrs(fd, meta, raw)
    }

    // -- entry kinds --------------------------------------------------------------------------

    fn file<E: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, E>,
        raw: &[u8],
        path: &CleanPath,
        meta: &mut Meta,
        sparse: bool,
    ) -> Result<(), UnpackError> {
        if path.is_root() {
            return Err(rule(raw, "entry would replace the layer root"));
        }
        let size = entry.size();
        let stored = if sparse {
            entry.header().entry_size().unwrap_or(size)
        } else {
            size
        };
        let limit = self.opts.max_tar_bytes;
        if stored > self.budget.remaining() || size > limit.saturating_sub(self.stats.content_bytes)
        {
            return Err(UnpackError::TooLarge { limit });
        }
        if size >= LARGE_FILE_BYTES || self.unchecked_bytes >= SPACE_CHECK_EVERY {
            self.check_space(size)?;
        }
        let stripped = self.strip_mode(meta);

        let pfd_owned = self.take_parent(path.parent(), raw)?;
        let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
        let name = path.name();
        let create = |pfd: BorrowedFd<'_>| {
            rfs::openat(
                pfd,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let fd = match create(pfd) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.clear(pfd, &path.joined, name, false, raw)?;
                create(pfd).map_err(|e| io_err(raw, "create file", e))?
            }
            Err(e) => return Err(io_err(raw, "create file", e)),
        };
        let mut file = File::from(fd);

        let mut buf = std::mem::take(&mut self.buf);
        let copied = self.copy(entry, &mut file, &mut buf, raw, sparse);
        self.buf = buf;
        let total = copied?;
        if total != size {
            return Err(UnpackError::Malformed(format!(
                "entry {}: stream ends inside the file's data ({total} of {size} bytes)",
                lossy(raw)
            )));
        }
        if sparse {
            file.set_len(size)
                .map_err(|e| io_err(raw, "set sparse file size", e))?;
        }
        self.apply_fd_meta(file.as_fd(), meta, raw)?;
        rfs::futimens(&file, &meta.timestamps()).map_err(|e| io_err(raw, "set times", e))?;
        drop(file);
        self.count_stripped(stripped);
        self.stats.content_bytes = self.stats.content_bytes.saturating_add(size);
        self.put_parent(path.parent(), pfd_owned);
        Ok(())
    }

    fn copy<E: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, E>,
        file: &mut File,
        buf: &mut [u8],
        raw: &[u8],
        sparse: bool,
    ) -> Result<u64, UnpackError> {
        let mut total: u64 = 0;
        loop {
            let n = match entry.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(self.budget.map_read_err(e, Some(raw))),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            if sparse && chunk.iter().all(|b| *b == 0) {
                let skip = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                file.seek(SeekFrom::Current(skip))
                    .map_err(|e| io_err(raw, "seek over sparse hole", e))?;
            } else {
                file.write_all(chunk)
                    .map_err(|e| io_err(raw, "write file", e))?;
                self.unchecked_bytes = self.unchecked_bytes.saturating_add(chunk.len() as u64);
            }
            total = total.saturating_add(chunk.len() as u64);
            if self.unchecked_bytes >= SPACE_CHECK_EVERY {
                self.check_space(0)?;
            }
        }
        Ok(total)
    }

    fn dir(&mut self, raw: &[u8], path: &CleanPath, meta: &Meta) -> Result<(), UnpackError> {
        // Directories keep setgid (harmless, common); only caps are dropped.
        self.count_stripped(meta.caps_dropped);
        if path.is_root() {
            self.apply_fd_meta(self.root, meta, raw)?;
            self.dir_times.insert(Vec::new(), meta.times);
            return Ok(());
        }
        let pfd_owned = self.take_parent(path.parent(), raw)?;
        let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
        let name = path.name();
        let mkdir = |pfd: BorrowedFd<'_>| rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o700));
        match mkdir(pfd) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                if !self.clear(pfd, &path.joined, name, true, raw)? {
                    mkdir(pfd).map_err(|e| io_err(raw, "create directory", e))?;
                }
            }
            Err(e) => return Err(io_err(raw, "create directory", e)),
        }
        let dfd = rfs::openat(pfd, name, dir_flags(), Mode::empty())
            .map_err(|e| io_err(raw, "open directory", e))?;
        self.apply_fd_meta(dfd.as_fd(), meta, raw)?;
        drop(dfd);
        self.dir_times.insert(path.joined.clone(), meta.times);
        self.put_parent(path.parent(), pfd_owned);
        Ok(())
    }

    fn symlink(
        &mut self,
        raw: &[u8],
        path: &CleanPath,
        target: Option<&[u8]>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if path.is_root() {
            return Err(rule(raw, "entry would replace the layer root"));
        }
        let target = match target {
            Some(t) if !t.is_empty() => t,
            _ => return Err(rule(raw, "symlink has an empty target")),
        };
        if target.contains(&0) {
            return Err(rule(raw, "symlink target contains a NUL byte"));
        }
        // Xattrs cannot be set on symlinks (the kernel refuses user.*); count them as skipped.
        self.skipped_xattrs = self
            .skipped_xattrs
            .saturating_add(meta.skipped_xattrs)
            .saturating_add(meta.xattrs.len() as u64);

        let pfd_owned = self.take_parent(path.parent(), raw)?;
        let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
        let name = path.name();
        match rfs::symlinkat(target, pfd, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(pfd, &path.joined, name, false, raw)?;
                rfs::symlinkat(target, pfd, name).map_err(|e| io_err(raw, "create symlink", e))?;
            }
            Err(e) => return Err(io_err(raw, "create symlink", e)),
        }
        rfs::chownat(
            pfd,
            name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(raw, "chown", e))?;
        rfs::utimensat(pfd, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(raw, "set times", e))?;
        self.put_parent(path.parent(), pfd_owned);
        Ok(())
    }

    fn hardlink(
        &mut self,
        raw: &[u8],
        path: &CleanPath,
        target_raw: Option<&[u8]>,
    ) -> Result<(), UnpackError> {
        if path.is_root() {
            return Err(rule(raw, "entry would replace the layer root"));
        }
        let target_raw = match target_raw {
            Some(t) if !t.is_empty() => t,
            _ => return Err(rule(raw, "hard link has an empty target")),
        };
        let shown = lossy(target_raw);
        let target = clean_path(target_raw).map_err(|e| {
            rule(
                raw,
                match e {
                    CleanError::Nul => format!("hard link target {shown} contains a NUL byte"),
                    CleanError::Escapes => {
                        format!("hard link target {shown} escapes the layer root")
                    }
                    CleanError::TooLong => {
                        format!("hard link target {shown} is longer than {MAX_PATH_BYTES} bytes")
                    }
                },
            )
        })?;
        if target.is_root() {
            return Err(rule(
                raw,
                format!("hard link target {shown} is a directory"),
            ));
        }
        let pfd_owned = self.take_parent(path.parent(), raw)?;
        let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
        let tpfd_owned = if target.parent() == path.parent() || target.parent().is_empty() {
            None
        } else {
            match self.open_dir(target.parent(), false) {
                Ok(fd) => Some(fd),
                Err(WalkError::Symlink(p)) => {
                    return Err(rule(
                        raw,
                        format!(
                            "hard link target {shown}: parent directory {} is a symlink",
                            lossy(&p)
                        ),
                    ))
                }
                Err(WalkError::NotDir(p)) => {
                    return Err(rule(
                        raw,
                        format!(
                            "hard link target {shown}: parent directory {} is not a directory",
                            lossy(&p)
                        ),
                    ))
                }
                Err(WalkError::Missing(_)) => {
                    return Err(rule(
                        raw,
                        format!("hard link target {shown} does not exist earlier in the layer"),
                    ))
                }
                Err(WalkError::OtherDev(p)) => {
                    return Err(rule(
                        raw,
                        format!(
                        "hard link target {shown}: parent directory {} is on another filesystem",
                        lossy(&p)
                    ),
                    ))
                }
                Err(WalkError::Io(e)) => {
                    return Err(io_err(raw, "open hard link target parent", e))
                }
            }
        };
        let tpfd = if target.parent() == path.parent() {
            pfd
        } else {
            tpfd_owned.as_ref().map_or(self.root, |f| f.as_fd())
        };
        let tname = target.name();
        match rfs::statat(tpfd, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(rule(
                    raw,
                    format!("hard link target {shown} is a directory"),
                ));
            }
            Ok(_) => {}
            Err(Errno::NOENT) => {
                return Err(rule(
                    raw,
                    format!("hard link target {shown} does not exist earlier in the layer"),
                ))
            }
            Err(e) => return Err(io_err(raw, "inspect hard link target", e)),
        }
        if target.is_within(&path.joined) && path.joined != target.joined {
            // The link would replace (remove) a directory that holds its own target.
            return Err(rule(
                raw,
                format!("hard link target {shown} is inside the directory the link replaces"),
            ));
        }
        if path.joined != target.joined {
            let name = path.name();
            // No AT_SYMLINK_FOLLOW: a symlink target links the symlink itself.
            match rfs::linkat(tpfd, tname, pfd, name, AtFlags::empty()) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    self.clear(pfd, &path.joined, name, false, raw)?;
                    rfs::linkat(tpfd, tname, pfd, name, AtFlags::empty())
                        .map_err(|e| io_err(raw, "create hard link", e))?;
                }
                Err(e) => return Err(io_err(raw, "create hard link", e)),
            }
        }
        drop(tpfd_owned);
        self.put_parent(path.parent(), pfd_owned);
        Ok(())
    }

    fn fifo(&mut self, raw: &[u8], path: &CleanPath, meta: &mut Meta) -> Result<(), UnpackError> {
        if path.is_root() {
            return Err(rule(raw, "entry would replace the layer root"));
        }
        let stripped = self.strip_mode(meta);
        let pfd_owned = self.take_parent(path.parent(), raw)?;
        let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
        let name = path.name();
        let mkfifo = |pfd: BorrowedFd<'_>| {
            rfs::mknodat(pfd, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        };
        match mkfifo(pfd) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(pfd, &path.joined, name, false, raw)?;
                mkfifo(pfd).map_err(|e| io_err(raw, "create fifo", e))?;
            }
            Err(e) => return Err(io_err(raw, "create fifo", e)),
        }
        // Opening a fifo for reading with O_NONBLOCK does not wait for a writer; the fd lets
        // owner, mode and times be set without a path.
        let fd = rfs::openat(
            pfd,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(raw, "open fifo", e))?;
        rfs::fchown(&fd, Some(meta.uid), Some(meta.gid)).map_err(|e| io_err(raw, "chown", e))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(|e| io_err(raw, "chmod", e))?;
        rfs::futimens(&fd, &meta.timestamps()).map_err(|e| io_err(raw, "set times", e))?;
        self.skipped_xattrs = self
            .skipped_xattrs
            .saturating_add(meta.skipped_xattrs)
            .saturating_add(meta.xattrs.len() as u64);
        drop(fd);
        self.count_stripped(stripped);
        self.put_parent(path.parent(), pfd_owned);
        Ok(())
    }

    /// A `.wh.` entry: an overlayfs whiteout (char device 0:0) or the opaque marker.
    fn whiteout(&mut self, raw: &[u8], path: &CleanPath, meta: &Meta) -> Result<(), UnpackError> {
        let name = path.name();
        if name == WHITEOUT_OPAQUE {
            let pfd_owned = self.take_parent(path.parent(), raw)?;
            let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
            rfs::fsetxattr(pfd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| io_err(raw, "set opaque xattr", e))?;
            self.put_parent(path.parent(), pfd_owned);
            return Ok(());
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            return Err(rule(
                raw,
                format!("whiteout name '{}' is not allowed", lossy(name)),
            ));
        }
        let target = name.get(WHITEOUT_PREFIX.len()..).unwrap_or_default();
        if target.is_empty() || target == b"." || target == b".." {
            return Err(rule(
                raw,
                format!("whiteout name '{}' is not a file name", lossy(target)),
            ));
        }
        self.make_whiteout(raw, path.parent(), target, meta)
    }

    fn make_whiteout(
        &mut self,
        raw: &[u8],
        parent: &[u8],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let pfd_owned = self.take_parent(parent, raw)?;
        let pfd = pfd_owned.as_ref().map_or(self.root, |f| f.as_fd());
        let mknod = |pfd: BorrowedFd<'_>| {
            rfs::mknodat(
                pfd,
                name,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
        };
        match mknod(pfd) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let mut full =
                    Vec::with_capacity(parent.len().saturating_add(name.len()).saturating_add(1));
                if !parent.is_empty() {
                    full.extend_from_slice(parent);
                    full.push(b'/');
                }
                full.extend_from_slice(name);
                self.clear(pfd, &full, name, false, raw)?;
                mknod(pfd).map_err(|e| io_err(raw, "create whiteout", e))?;
            }
            Err(e) => return Err(io_err(raw, "create whiteout", e)),
        }
        rfs::chownat(
            pfd,
            name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(raw, "chown", e))?;
        self.put_parent(parent, pfd_owned);
        Ok(())
    }

    /// Applies directory times, deepest first, and reports what was skipped.
    fn finish(&mut self) -> Result<(), UnpackError> {
        self.cache_fd = None;
        let mut dirs: Vec<(Vec<u8>, (Timespec, Timespec))> = self.dir_times.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(depth(p)));
        for (path, (atime, mtime)) in dirs {
            let times = Timestamps {
                last_access: atime,
                last_modification: mtime,
            };
            if path.is_empty() {
                rfs::futimens(self.root, &times).map_err(|e| io_err(b".", "set times", e))?;
                continue;
            }
            match self.open_dir(&path, false) {
                Ok(fd) => {
                    rfs::futimens(&fd, &times).map_err(|e| io_err(&path, "set times", e))?;
                }
                // Replaced by a later entry: nothing to do.
                Err(WalkError::Missing(_))
                | Err(WalkError::NotDir(_))
                | Err(WalkError::Symlink(_))
                | Err(WalkError::OtherDev(_)) => {}
                Err(WalkError::Io(e)) => return Err(io_err(&path, "open directory", e)),
            }
        }
        let dest = self.dest.display().to_string();
        if self.stats.skipped_devices > 0 {
            tracing::warn!(
                dest = %dest,
                skipped_devices = self.stats.skipped_devices,
                "layer contains device nodes; they were not created"
            );
        }
        if self.skipped_xattrs > 0 {
            tracing::warn!(
                dest = %dest,
                skipped_xattrs = self.skipped_xattrs,
                "layer xattrs were skipped (namespace not applied, or not supported by the filesystem)"
            );
        }
        if self.skipped_globals > 0 {
            tracing::warn!(
                dest = %dest,
                skipped_global_headers = self.skipped_globals,
                "layer PAX global headers were ignored"
            );
        }
        Ok(())
    }
}

fn id(value: u64, what: &str, raw: &[u8]) -> Result<u32, UnpackError> {
    match u32::try_from(value) {
        Ok(v) if v != u32::MAX => Ok(v),
        _ => Err(rule(raw, format!("{what} {value} is out of range"))),
    }
}

fn diagnose(at: BorrowedFd<'_>, comp: &[u8], prefix: Vec<u8>, err: Errno) -> WalkError {
    match rfs::statat(at, comp, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => WalkError::Symlink(prefix),
            FileType::Directory => WalkError::Io(err.into()),
            _ => WalkError::NotDir(prefix),
        },
        Err(Errno::NOENT) => WalkError::Missing(prefix),
        Err(e) => WalkError::Io(e.into()),
    }
}

fn walk_error(raw: &[u8], e: WalkError) -> UnpackError {
    match e {
        WalkError::Symlink(p) => rule(raw, format!("parent directory {} is a symlink", lossy(&p))),
        WalkError::NotDir(p) => rule(
            raw,
            format!("parent directory {} is not a directory", lossy(&p)),
        ),
        WalkError::Missing(p) => rule(
            raw,
            format!("parent directory {} does not exist", lossy(&p)),
        ),
        WalkError::OtherDev(p) => rule(
            raw,
            format!("parent directory {} is on another filesystem", lossy(&p)),
        ),
        WalkError::Io(e) => io_err(raw, "open parent directory", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        let c = |p: &[u8]| {
            clean_path(p).map(|c| (c.joined.clone(), c.parent().to_vec(), c.name().to_vec()))
        };
        assert_eq!(
            c(b"a/b/c").ok(),
            Some((b"a/b/c".to_vec(), b"a/b".to_vec(), b"c".to_vec()))
        );
        assert_eq!(
            c(b"/etc/passwd").ok(),
            Some((b"etc/passwd".to_vec(), b"etc".to_vec(), b"passwd".to_vec()))
        );
        assert_eq!(
            c(b"./x").ok(),
            Some((b"x".to_vec(), b"".to_vec(), b"x".to_vec()))
        );
        assert_eq!(
            c(b"./").ok(),
            Some((b"".to_vec(), b"".to_vec(), b"".to_vec()))
        );
        assert_eq!(
            c(b"a/../b/").ok(),
            Some((b"b".to_vec(), b"".to_vec(), b"b".to_vec()))
        );
        assert!(matches!(c(b"../x"), Err(CleanError::Escapes)));
        assert!(matches!(c(b"a/../../x"), Err(CleanError::Escapes)));
        assert!(matches!(c(b"/.."), Err(CleanError::Escapes)));
        assert!(matches!(c(b"a\0b"), Err(CleanError::Nul)));
        assert!(matches!(c(&[b'a'; 5000]), Err(CleanError::TooLong)));
    }

    #[test]
    fn within() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(is_within(b"a", b""));
    }

    #[test]
    fn pax_times() {
        let t = |s: &[u8]| parse_pax_time(s).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(
            t(b"1700000000.123456789"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(t(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(t(b"12"), Some((12, 0)));
        assert_eq!(t(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t(b"1.1234567899999"), Some((1, 123_456_789)));
        assert_eq!(t(b""), None);
        assert_eq!(t(b"."), None);
        assert_eq!(t(b"1e5"), None);
        assert_eq!(t(b"99999999999999999999999"), None);
        assert_eq!(t(b"-9223372036854775808.5"), None);
    }
}
