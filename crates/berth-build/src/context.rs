//! COPY/ADD sources of a build step, read from the unpacked build context and written as
//! the tar stream the engine extracts into the step's container.
//!
//! The daemon unpacks the client's context into a private directory; the client's tar is
//! hostile, so the directory may hold symlinks pointing anywhere (the directory itself is
//! trusted not to change while a step reads it). Nothing here joins a path onto the
//! context and opens it: a source is followed one component at a time with
//! `statat`/`readlinkat` on directory fds opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so only the walk decides where a symlink leads, and it leads to
//! the context root at most (Docker's `FollowSymlinkInScope`: `/etc/passwd` or
//! `../../etc/passwd` as a link target is the context's own `etc/passwd`). Leaves are
//! opened with `O_NOFOLLOW` relative to their directory and checked again after opening.
//! No file outside the context is ever read.
//!
//! # Use
//! ```text
//! let state = probe_dest(rootfs, "/app/")?;          // what the destination is now
//! let req = CopyRequest { context, sources, dest: "/app/", dest_state: state, .. };
//! let key = copy_checksum(&req)?.checksum;           // the layer cache key
//! // on a miss:
//! copy_archive(&req, pipe_writer)?;                  // entries named "app/...", owners set
//! // berth-image cp::extract_archive(rootfs, "/", pipe_reader, opts) with
//! // `no_overwrite_dir_non_dir: false` (as Docker's COPY), `owner: None` (the archive
//! // carries the owners), `owners` for a user-namespaced build container.
//! ```
//!
//! # Rules (Docker's classic builder, `builder/dockerfile/copy.go`, unless said otherwise)
//! - Sources are relative to the context root; one leading `/` and then one `./` are
//!   dropped. A source that climbs above the root lexically (`../x`, `a/../../x`,
//!   `/../x`) is refused: "forbidden path outside the build context" (the classic
//!   builder's error; BuildKit would clean it to the root instead). Symlinks met on the
//!   way are followed inside the context, the last component included.
//! - A source containing `*`, `?` or `[` (not escaped by `\`) is a `filepath.Match`
//!   pattern matched against every path of the context (`*` does not cross `/`); each
//!   match is a source of its own, in walk order (names sorted, parents first). A pattern
//!   matching nothing adds nothing; when no source at all is found the error is "no
//!   source files were specified". A malformed pattern is refused (Docker ignores it).
//! - A missing source: "file not found in build context or excluded by .dockerignore:
//!   stat X: file does not exist".
//! - A directory source copies its contents, not the directory itself; any other source
//!   copies that one file, named after the source as written (not the symlink's target).
//! - More than one source (after wildcard expansion) needs a destination ending in `/`.
//! - The destination is a directory when it ends in `/` (or `/.`, or is `/`), or when it
//!   already is a directory in the container ([`DestState::is_dir`]); a file source then
//!   lands inside it under its base name. Otherwise a file source is written as the
//!   destination path itself; a directory source always fills the destination directory.
//! - Owner: every entry gets [`CopyRequest::owner`], `0:0` when none (Docker's COPY does
//!   not keep the context's owners).
//! - Mode: the context's permission bits (setuid/setgid/sticky included; the extractor
//!   applies the daemon's policy), or [`CopyRequest::chmod`] for every file, directory
//!   and fifo copied (not symlinks). The classic builder refuses `--chmod` ("requires
//!   BuildKit"); berth applies it as BuildKit does.
//! - Times: the context's mtimes are kept (seconds); they are not part of the checksum.
//! - Directories the copy creates for the destination (missing parents, and the
//!   destination directory) are `0755` and owned by the owner; a destination directory
//!   created for a directory source gets the chmod mode when one is given. Directories
//!   that exist ([`DestState::existing_components`]) get no entry at all, so their
//!   owner, mode and symlinks stay as they are (Docker's `MkdirAllAndChownNew`). The
//!   classic builder leaves new parents of a directory copy owned by root; berth owns
//!   them by the chown user, as it (and BuildKit) does for file copies.
//! - Entries found while walking a directory: symlinks are copied as symlinks (target
//!   unchanged), hard links within the copy stay hard links, fifos are copied, sockets
//!   are skipped (Docker skips them too), device nodes are refused (Docker copies them;
//!   berth's extractor refuses them anyway). Extended attributes are not copied.
//! - `.dockerignore` ([`CopyRequest::ignore`]): an excluded path is treated as absent, as
//!   it would be from a context the docker CLI filtered: an excluded source is "not
//!   found", excluded entries of a directory are left out, and an excluded directory is
//!   looked into only when an exception names something below it
//!   ([`Matcher::may_descend`]); it is then created (`0755`) only if something below it
//!   is copied.
//!
//! # Archive
//! Entry names are relative to the container's `/` (`app/main.py`), GNU long-name
//! records when longer than 100 bytes, no `..`, no leading `/`. Symlink targets are
//! written as found: the extractor refuses a relative one that climbs above `/` (Docker
//! refuses one that climbs above the destination directory).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::ignore::{self, Matcher};

/// Symlinks followed while resolving one source (Go's `maxSymlinkLimit`).
const MAX_SYMLINKS: usize = 255;
/// Starts every checksum, so a change of what it covers changes every key.
const CHECKSUM_DOMAIN: &[u8] = b"berth-build copy v1\0";

/// What a COPY step copies, from where, to where.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    /// The unpacked build context (the daemon's private copy).
    pub context: &'a Path,
    /// The sources as written in the Dockerfile (after variable expansion).
    pub sources: &'a [String],
    /// The destination, absolute in the container (a relative one already joined with
    /// WORKDIR); a trailing `/` is meaningful.
    pub dest: &'a str,
    /// What the destination is in the container before the copy ([`probe_dest`]).
    pub dest_state: DestState,
    /// Owner of every copied entry (`--chown`, resolved by the caller); `None` is `0:0`.
    pub owner: Option<(u32, u32)>,
    /// Permission bits of every copied file, directory and fifo (`--chmod`), at most
    /// `0o7777`.
    pub chmod: Option<u32>,
    /// The context's `.dockerignore`.
    pub ignore: Option<&'a Matcher>,
}

/// The destination path in the container before the copy, found by [`probe_dest`].
/// `Default` means that only `/` exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestState {
    /// How many leading components of the cleaned destination exist (symlinks followed
    /// in the container's root; a dangling symlink counts as existing, so that it is not
    /// replaced). The copy makes entries only for the missing ones.
    pub existing_components: usize,
    /// The whole destination exists and is a directory (or a symlink to one).
    pub is_dir: bool,
}

/// What a copy selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySummary {
    /// `sha256:<hex>` over every entry's name (relative to `/`), type, mode, owner, file
    /// content, symlink or hard-link target, in archive order; not over times, so that
    /// it keys the layer cache across checkouts.
    pub checksum: String,
    /// Entries in the archive (directories included).
    pub entries: u64,
    /// File content bytes.
    pub bytes: u64,
}

/// Why a copy cannot be done. Messages follow Docker's where it has one; the caller
/// prefixes the instruction (`COPY failed: ...`).
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("no source files were specified")]
    NoSources,
    #[error("file not found in build context or excluded by .dockerignore: stat {path}: file does not exist")]
    NotFound { path: String },
    #[error("forbidden path outside the build context: {path}")]
    OutsideContext { path: String },
    #[error("stat {path}: not a directory")]
    NotADirectory { path: String },
    #[error("stat {path}: too many levels of symbolic links (more than {MAX_SYMLINKS})")]
    SymlinkLoop { path: String },
    #[error("source {pattern:?}: syntax error in pattern")]
    BadPattern { pattern: String },
    #[error("copying {count} source files to {dest:?}: the destination must be a directory and end with a /")]
    DestNotDir { dest: String, count: usize },
    #[error("destination {dest:?} is not an absolute path")]
    RelativeDest { dest: String },
    #[error("chmod {mode:o}: not a valid mode (at most 7777)")]
    BadChmod { mode: u32 },
    #[error("{path}: {what} cannot be copied into an image")]
    SpecialFile { path: String, what: &'static str },
    #[error("{path}: changed while being copied ({what})")]
    Changed { path: String, what: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>, e: impl Into<io::Error>) -> ContextError {
    ContextError::Io {
        context: context.into(),
        source: e.into(),
    }
}

/// Writes the tar stream of a COPY step to `out` (entries named relative to the
/// container's `/`, the destination's missing parents included) and returns its summary.
pub fn copy_archive<W: Write>(req: &CopyRequest<'_>, out: W) -> Result<CopySummary, ContextError> {
    run(req, Some(tar::Builder::new(out)))
}

/// The summary [`copy_archive`] would return, without writing the archive (it reads the
/// same files): the layer cache lookup.
pub fn copy_checksum(req: &CopyRequest<'_>) -> Result<CopySummary, ContextError> {
    run::<io::Sink>(req, None)
}

/// Looks at the destination `dest` (absolute) in the container root `root`, resolving it
/// in the root (`RESOLVE_IN_ROOT`): how many of its components exist, and whether it is a
/// directory.
pub fn probe_dest(root: BorrowedFd<'_>, dest: &str) -> Result<DestState, ContextError> {
    if !dest.starts_with('/') {
        return Err(ContextError::RelativeDest { dest: dest.into() });
    }
    let cleaned = ignore::clean(dest);
    let rel = cleaned.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(DestState {
            existing_components: 0,
            is_dir: true,
        });
    }
    let comps: Vec<&str> = rel.split('/').collect();
    let mut state = DestState::default();
    let ctx = |e| io_err(format!("resolve {dest} in the container"), e);
    for k in 1..=comps.len() {
        let prefix = comps[..k].join("/");
        match in_root(root, prefix.as_bytes(), OFlags::PATH) {
            Ok(fd) => {
                state.existing_components = k;
                if k == comps.len() {
                    let st = rfs::fstat(&fd).map_err(ctx)?;
                    state.is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                }
            }
            Err(Errno::NOENT) => {
                // Missing, or a symlink leading nowhere: the latter counts as existing
                // (the extraction reports it rather than replacing it).
                let parent = comps[..k - 1].join("/");
                let pfd = in_root(root, parent.as_bytes(), OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(ctx)?;
                if rfs::statat(&pfd, comps[k - 1], AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    state.existing_components = k;
                }
                break;
            }
            // A component is a file: what follows cannot exist.
            Err(Errno::NOTDIR) => break,
            Err(e) => return Err(ctx(e)),
        }
    }
    Ok(state)
}

fn run<W: Write>(
    req: &CopyRequest<'_>,
    tar: Option<tar::Builder<W>>,
) -> Result<CopySummary, ContextError> {
    if let Some(mode) = req.chmod {
        if mode > 0o7777 {
            return Err(ContextError::BadChmod { mode });
        }
    }
    if !req.dest.starts_with('/') {
        return Err(ContextError::RelativeDest {
            dest: req.dest.into(),
        });
    }
    let ctx = rfs::open(
        req.context,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(format!("open build context {}", req.context.display()), e))?;
    let sources = select(ctx.as_fd(), req)?;

    let cleaned = ignore::clean(req.dest);
    let dest = cleaned.trim_start_matches('/');
    let dir_syntax = req.dest.ends_with('/') || req.dest.ends_with("/.") || dest.is_empty();
    if sources.len() > 1 && !dir_syntax {
        return Err(ContextError::DestNotDir {
            dest: req.dest.into(),
            count: sources.len(),
        });
    }
    let comps: Vec<&[u8]> = if dest.is_empty() {
        Vec::new()
    } else {
        dest.split('/').map(str::as_bytes).collect()
    };
    let existing = req.dest_state.existing_components;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = Out {
        tar,
        sum: Sha256::new(),
        entries: 0,
        bytes: 0,
        made: HashSet::new(),
        links: HashMap::new(),
        uid: req.owner.map_or(0, |o| o.0),
        gid: req.owner.map_or(0, |o| o.1),
        chmod: req.chmod,
        now,
    };
    out.sum.update(CHECKSUM_DOMAIN);
    for src in &sources {
        if src.is_dir {
            out.dest_dirs(&comps, comps.len(), existing, req.chmod.unwrap_or(0o755))?;
            out.tree(ctx.as_fd(), src, dest.as_bytes(), req.ignore)?;
        } else if dir_syntax || req.dest_state.is_dir {
            out.dest_dirs(&comps, comps.len(), existing, 0o755)?;
            let name = join(dest.as_bytes(), &src.base);
            out.single(ctx.as_fd(), src, &name)?;
        } else {
            out.dest_dirs(&comps, comps.len().saturating_sub(1), existing, 0o755)?;
            out.single(ctx.as_fd(), src, dest.as_bytes())?;
        }
    }
    out.finish()
}

// ---------------------------------------------------------------------------------------------
// Selecting the sources

/// One source, found.
struct Source {
    /// Its path in the context with every symlink resolved ("" for the root).
    real: Vec<u8>,
    /// The name a non-directory gets in a destination directory: the last component of
    /// the source as written (or as matched by a wildcard).
    base: Vec<u8>,
    is_dir: bool,
}

fn select(ctx: BorrowedFd<'_>, req: &CopyRequest<'_>) -> Result<Vec<Source>, ContextError> {
    let mut found = Vec::new();
    for orig in req.sources {
        let p = orig.strip_prefix('/').unwrap_or(orig);
        let p = p.strip_prefix("./").unwrap_or(p);
        if contains_wildcards(p) {
            select_wildcard(ctx, p, req.ignore, &mut found)?;
        } else {
            found.push(select_path(ctx, p, req.ignore)?);
        }
    }
    if found.is_empty() {
        return Err(ContextError::NoSources);
    }
    Ok(found)
}

/// Docker's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
fn contains_wildcards(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

fn select_path(
    ctx: BorrowedFd<'_>,
    p: &str,
    ignore: Option<&Matcher>,
) -> Result<Source, ContextError> {
    // Docker joins the source onto the context root and refuses what the join cleans to
    // outside of it.
    let cleaned = ignore::clean(p.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(ContextError::OutsideContext { path: p.into() });
    }
    let rel = if cleaned == "." { "" } else { cleaned.as_str() };
    let (real, is_dir) = resolve(ctx, rel.as_bytes(), ignore, p)?;
    let base = rel.rsplit('/').next().unwrap_or("").as_bytes().to_vec();
    Ok(Source { real, base, is_dir })
}

fn select_wildcard(
    ctx: BorrowedFd<'_>,
    pattern: &str,
    ignore: Option<&Matcher>,
    found: &mut Vec<Source>,
) -> Result<(), ContextError> {
    let toks = ignore::parse_glob(pattern).map_err(|_| ContextError::BadPattern {
        pattern: pattern.into(),
    })?;
    // No match is deeper than the pattern's separators allow (a `*` or `?` never matches
    // `/`; a class may match one).
    let max_depth = pattern
        .chars()
        .filter(|c| *c == '/' || *c == '[')
        .count()
        .saturating_add(1);
    walk(ctx, b"", ignore, max_depth, &mut |v| {
        let rel = lossy(v.rel);
        if ignore::run(&toks, &rel) {
            // The match is then resolved like a source of its own (a symlink is followed).
            let (real, is_dir) = resolve(ctx, v.rel, ignore, &rel)?;
            found.push(Source {
                real,
                base: v.name.to_vec(),
                is_dir,
            });
        }
        Ok(true)
    })
}

/// Follows `rel` (cleaned, relative) in the context, symlinks included, never above the
/// context root (Docker's `FollowSymlinkInScope`): an absolute target starts again at the
/// root, `..` stops there. Returns the resolved path (no symlink in it) and whether it is
/// a directory. Every path met is checked against the `.dockerignore`.
fn resolve(
    ctx: BorrowedFd<'_>,
    rel: &[u8],
    ignore: Option<&Matcher>,
    shown: &str,
) -> Result<(Vec<u8>, bool), ContextError> {
    let mut todo: VecDeque<Vec<u8>> = rel.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    let mut real: Vec<Vec<u8>> = Vec::new();
    let mut is_dir = true;
    let mut links = 0usize;
    let not_found = || ContextError::NotFound { path: shown.into() };
    while let Some(comp) = todo.pop_front() {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." {
            // What is left is a parent of what is dropped: a directory.
            real.pop();
            is_dir = true;
            continue;
        }
        let parent = open_beneath(ctx, &real.join(&b'/'), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| match e {
                Errno::NOENT => not_found(),
                Errno::NOTDIR => ContextError::NotADirectory { path: shown.into() },
                e => io_err(format!("resolve {shown} in the build context"), e),
            })?;
        let st = match rfs::statat(&parent, comp.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(not_found()),
            Err(e) => return Err(io_err(format!("stat {shown}"), e)),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        real.push(comp);
        let path = real.join(&b'/');
        if !presence(ignore, &path, ft == FileType::Directory).0 {
            return Err(not_found());
        }
        if ft == FileType::Symlink {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ContextError::SymlinkLoop { path: shown.into() });
            }
            let name = real.pop().unwrap_or_default();
            let target = rfs::readlinkat(&parent, name.as_slice(), Vec::new())
                .map_err(|e| io_err(format!("readlink {}", lossy(&path)), e))?
                .into_bytes();
            if target.starts_with(b"/") {
                real.clear();
            }
            for c in target.split(|b| *b == b'/').rev() {
                todo.push_front(c.to_vec());
            }
            // Where the target stops (`.`, `/`) is a directory already walked through.
            is_dir = true;
        } else {
            is_dir = ft == FileType::Directory;
        }
    }
    Ok((real.join(&b'/'), is_dir))
}

/// Whether `path` (relative to the context root) is in the context as the docker CLI
/// would have sent it, and whether it is only there because an exception may bring back
/// something below it (an excluded directory that is looked into).
fn presence(ignore: Option<&Matcher>, path: &[u8], is_dir: bool) -> (bool, bool) {
    let Some(m) = ignore else {
        return (true, false);
    };
    let s = String::from_utf8_lossy(path);
    if !m.excluded(&s) {
        (true, false)
    } else if is_dir && m.may_descend(&s) {
        (true, true)
    } else {
        (false, false)
    }
}

// ---------------------------------------------------------------------------------------------
// Walking a directory of the context

/// One entry met by [`walk`].
struct Visit<'a> {
    /// Its directory.
    dir: BorrowedFd<'a>,
    name: &'a [u8],
    /// Its path relative to the walk's root.
    rel: &'a [u8],
    /// Its path relative to the context root.
    full: &'a [u8],
    /// 1 for the entries of the walk's root.
    depth: usize,
    /// `lstat` of it.
    st: &'a Stat,
    /// An excluded directory looked into for exceptions.
    synthetic: bool,
}

/// One directory level of a walk.
struct Level {
    rel: Vec<u8>,
    names: Vec<Vec<u8>>,
    next: usize,
    /// The directory's fd while it is the deepest level.
    fd: Option<OwnedFd>,
}

/// Walks the directory `base` of the context (no symlink in it), depth first, names
/// sorted (Go's `filepath.Walk`), entries absent by the `.dockerignore` left out, down to
/// `max_depth`. `f` sees each entry before its children and says whether to go into a
/// directory. Symlinks are not followed; a directory is opened `O_NOFOLLOW` from its
/// parent and reopened beneath the walk's root with `RESOLVE_NO_SYMLINKS`, so at most
/// a few fds are open whatever the depth.
fn walk(
    ctx: BorrowedFd<'_>,
    base: &[u8],
    ignore: Option<&Matcher>,
    max_depth: usize,
    f: &mut dyn FnMut(&Visit<'_>) -> Result<bool, ContextError>,
) -> Result<(), ContextError> {
    let shown = |rel: &[u8]| {
        if rel.is_empty() {
            ".".to_string()
        } else {
            lossy(rel)
        }
    };
    let root = open_beneath(ctx, base, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| io_err(format!("open {}", shown(base)), e))?;
    let names = list_dir(root.as_fd()).map_err(|e| io_err(format!("list {}", shown(base)), e))?;
    let mut stack = vec![Level {
        rel: Vec::new(),
        names,
        next: 0,
        fd: None,
    }];
    loop {
        let depth = stack.len();
        let Some(level) = stack.last_mut() else {
            break;
        };
        let Some(name) = level.names.get(level.next).cloned() else {
            stack.pop();
            continue;
        };
        level.next += 1;
        if level.fd.is_none() && !level.rel.is_empty() {
            let fd = open_beneath(root.as_fd(), &level.rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| io_err(format!("open {}", shown(&join(base, &level.rel))), e))?;
            level.fd = Some(fd);
        }
        let dir = match &level.fd {
            Some(fd) => fd.as_fd(),
            None => root.as_fd(),
        };
        let rel = join(&level.rel, &name);
        let full = join(base, &rel);
        let st = rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(format!("stat {}", lossy(&full)), e))?;
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        let (present, synthetic) = presence(ignore, &full, is_dir);
        if !present {
            continue;
        }
        let descend = f(&Visit {
            dir,
            name: &name,
            rel: &rel,
            full: &full,
            depth,
            st: &st,
            synthetic,
        })?;
        if is_dir && descend && depth < max_depth {
            let child = rfs::openat(
                dir,
                name.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(format!("open {}", lossy(&full)), e))?;
            let names =
                list_dir(child.as_fd()).map_err(|e| io_err(format!("list {}", lossy(&full)), e))?;
            level.fd = None;
            stack.push(Level {
                rel,
                names,
                next: 0,
                fd: Some(child),
            });
        }
    }
    Ok(())
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

/// Opens `rel` beneath `dir` following no symlink at all.
fn open_beneath(dir: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    open2(
        dir,
        rel,
        flags,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Opens `rel` in the root `root`, symlinks resolved as if `root` were `/`.
fn in_root(root: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    open2(
        root,
        rel,
        flags,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

fn open2(
    dir: BorrowedFd<'_>,
    rel: &[u8],
    flags: OFlags,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut tries = 0;
    loop {
        match rfs::openat2(dir, path, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            // A rename elsewhere raced the lookup: try again.
            Err(Errno::AGAIN) if tries < 32 => tries += 1,
            r => return r,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the entries

/// The archive being written (or only summed) and its summary.
struct Out<W: Write> {
    tar: Option<tar::Builder<W>>,
    sum: Sha256,
    entries: u64,
    bytes: u64,
    /// Destination directories already made by this copy.
    made: HashSet<Vec<u8>>,
    /// First entry name of each multiply-linked file, by (dev, ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
    /// Time of the directories the copy makes.
    now: u64,
}

enum Body<'a> {
    Dir,
    Fifo,
    Symlink(&'a [u8]),
    HardLink(&'a [u8]),
    File(File, u64),
}

impl<W: Write> Out<W> {
    /// Entries for the components `comps[..upto]` of the destination that do not exist,
    /// `0755` (`last_mode` for the last one).
    fn dest_dirs(
        &mut self,
        comps: &[&[u8]],
        upto: usize,
        existing: usize,
        last_mode: u32,
    ) -> Result<(), ContextError> {
        for k in existing.saturating_add(1)..=upto {
            let name = comps[..k].join(&b'/');
            if !self.made.insert(name.clone()) {
                continue;
            }
            let mode = if k == upto { last_mode } else { 0o755 };
            self.put(&name, mode, self.now, Body::Dir)?;
        }
        Ok(())
    }

    /// The contents of the directory source `src`, under `dest`.
    fn tree(
        &mut self,
        ctx: BorrowedFd<'_>,
        src: &Source,
        dest: &[u8],
        ignore: Option<&Matcher>,
    ) -> Result<(), ContextError> {
        // Excluded directories looked into, made only once something below them is.
        let mut pending: Vec<(usize, Vec<u8>, u64)> = Vec::new();
        walk(ctx, &src.real, ignore, usize::MAX, &mut |v| {
            pending.retain(|(depth, _, _)| *depth < v.depth);
            let entry = join(dest, v.rel);
            if v.synthetic {
                pending.push((v.depth, entry, mtime(v.st)));
                return Ok(true);
            }
            for (_, name, time) in std::mem::take(&mut pending) {
                self.put(&name, self.chmod.unwrap_or(0o755), time, Body::Dir)?;
            }
            self.node(v.dir, v.name, v.st, &entry, v.full)?;
            Ok(true)
        })
    }

    /// The non-directory source `src`, as `entry`.
    fn single(
        &mut self,
        ctx: BorrowedFd<'_>,
        src: &Source,
        entry: &[u8],
    ) -> Result<(), ContextError> {
        let (parent, name) = match src.real.iter().rposition(|b| *b == b'/') {
            Some(i) => (&src.real[..i], &src.real[i + 1..]),
            None => (&b""[..], &src.real[..]),
        };
        let pfd = open_beneath(ctx, parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| io_err(format!("open {}", lossy(parent)), e))?;
        let st = rfs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(format!("stat {}", lossy(&src.real)), e))?;
        self.node(pfd.as_fd(), name, &st, entry, &src.real)
    }

    /// The entry `name` of `dir` (seen as `st`), as `entry`; `shown` names it in errors.
    fn node(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        entry: &[u8],
        shown: &[u8],
    ) -> Result<(), ContextError> {
        let mode = self.chmod.unwrap_or(st.st_mode & 0o7777);
        let time = mtime(st);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => self.put(entry, mode, time, Body::Dir),
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned() {
                        return self.put(entry, mode, time, Body::HardLink(&first));
                    }
                }
                let fd = rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(format!("open {}", lossy(shown)), e))?;
                let fst =
                    rfs::fstat(&fd).map_err(|e| io_err(format!("stat {}", lossy(shown)), e))?;
                if FileType::from_raw_mode(fst.st_mode) != FileType::RegularFile
                    || (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino)
                {
                    return Err(ContextError::Changed {
                        path: lossy(shown),
                        what: "replaced by another file",
                    });
                }
                let size = u64::try_from(fst.st_size).unwrap_or(0);
                self.put(entry, mode, time, Body::File(File::from(fd), size))
                    .map_err(|e| match e {
                        ContextError::Io { source, .. }
                            if source.kind() == io::ErrorKind::UnexpectedEof =>
                        {
                            ContextError::Changed {
                                path: lossy(shown),
                                what: "shorter than when it was listed",
                            }
                        }
                        e => e,
                    })?;
                if st.st_nlink > 1 {
                    self.links.insert((st.st_dev, st.st_ino), entry.to_vec());
                }
                Ok(())
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| io_err(format!("readlink {}", lossy(shown)), e))?;
                self.put(entry, 0o777, time, Body::Symlink(target.as_bytes()))
            }
            FileType::Fifo => self.put(entry, mode, time, Body::Fifo),
            // Docker skips sockets too.
            FileType::Socket => Ok(()),
            FileType::CharacterDevice | FileType::BlockDevice => Err(ContextError::SpecialFile {
                path: lossy(shown),
                what: "device nodes",
            }),
            FileType::Unknown => Err(ContextError::SpecialFile {
                path: lossy(shown),
                what: "files of unknown type",
            }),
        }
    }

    /// One entry: into the checksum, then into the archive.
    fn put(
        &mut self,
        name: &[u8],
        mode: u32,
        time: u64,
        body: Body<'_>,
    ) -> Result<(), ContextError> {
        let (kind, tag) = match &body {
            Body::Dir => (tar::EntryType::Directory, b'd'),
            Body::Fifo => (tar::EntryType::Fifo, b'p'),
            Body::Symlink(_) => (tar::EntryType::Symlink, b'l'),
            Body::HardLink(_) => (tar::EntryType::Link, b'h'),
            Body::File(..) => (tar::EntryType::Regular, b'f'),
        };
        self.sum.update([tag]);
        self.sum.update((name.len() as u64).to_le_bytes());
        self.sum.update(name);
        self.sum.update(mode.to_le_bytes());
        self.sum.update(self.uid.to_le_bytes());
        self.sum.update(self.gid.to_le_bytes());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(self.uid));
        h.set_gid(u64::from(self.gid));
        h.set_mtime(time);
        h.set_size(0);
        let werr = |e| io_err(format!("archive {}", lossy(name)), e);
        match body {
            Body::Dir | Body::Fifo => {
                if let Some(b) = &mut self.tar {
                    let mut dname = name.to_vec();
                    if kind == tar::EntryType::Directory {
                        dname.push(b'/');
                    }
                    append(b, &mut h, &dname, None, io::empty()).map_err(werr)?;
                }
            }
            Body::Symlink(target) | Body::HardLink(target) => {
                self.sum.update((target.len() as u64).to_le_bytes());
                self.sum.update(target);
                if let Some(b) = &mut self.tar {
                    append(b, &mut h, name, Some(target), io::empty()).map_err(werr)?;
                }
            }
            Body::File(file, size) => {
                h.set_size(size);
                let mut content = Content {
                    file,
                    left: size,
                    hash: Sha256::new(),
                };
                match &mut self.tar {
                    Some(b) => append(b, &mut h, name, None, &mut content),
                    None => io::copy(&mut content, &mut io::sink()).map(drop),
                }
                .map_err(werr)?;
                self.sum.update(size.to_le_bytes());
                self.sum.update(content.hash.finalize());
                self.bytes = self.bytes.saturating_add(size);
            }
        }
        self.entries = self.entries.saturating_add(1);
        Ok(())
    }

    fn finish(self) -> Result<CopySummary, ContextError> {
        if let Some(b) = self.tar {
            b.into_inner()
                .and_then(|mut w| w.flush())
                .map_err(|e| io_err("write archive", e))?;
        }
        Ok(CopySummary {
            checksum: format!("sha256:{}", hex::encode(self.sum.finalize())),
            entries: self.entries,
            bytes: self.bytes,
        })
    }
}

/// A file's content: exactly `left` bytes (fewer is an `UnexpectedEof` error), hashed as
/// they are read.
struct Content {
    file: File,
    left: u64,
    hash: Sha256,
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.file.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file is shorter than when it was listed",
            ));
        }
        self.hash.update(&buf[..n]);
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Appends an entry with `name` (and `link`) written as given: GNU long name/link records
/// when they do not fit the header.
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    if name.len() > 100 {
        long(b, b'L', name)?;
    }
    copy_field(&mut h.as_old_mut().name, name);
    if let Some(link) = link {
        if link.len() > 100 {
            long(b, b'K', link)?;
        }
        copy_field(&mut h.as_old_mut().linkname, link);
    }
    h.set_cksum();
    b.append(h, data)
}

fn long<W: Write>(b: &mut tar::Builder<W>, kind: u8, value: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    copy_field(&mut h.as_old_mut().name, b"././@LongLink");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    b.append(&h, value.chain(&[0u8][..]))
}

/// Copies `value` into a NUL-padded header field, truncated to it.
fn copy_field(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn mtime(st: &Stat) -> u64 {
    u64::try_from(st.st_mtime).unwrap_or(0)
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    let mut v = Vec::with_capacity(a.len() + b.len() + 1);
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// One entry of an archive, as a test looks at it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct E {
        name: String,
        kind: char,
        mode: u32,
        uid: u64,
        gid: u64,
        data: String,
        link: String,
    }

    fn entries(tar_bytes: &[u8]) -> Vec<E> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Regular => 'f',
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                tar::EntryType::Fifo => 'p',
                other => panic!("unexpected entry type {other:?}"),
            };
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap())
                .unwrap_or_default();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            out.push(E {
                name: name.trim_end_matches('/').to_string(),
                kind,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
                link,
            });
        }
        out
    }

    fn names(es: &[E]) -> Vec<&str> {
        es.iter().map(|e| e.name.as_str()).collect()
    }

    fn find<'a>(es: &'a [E], name: &str) -> &'a E {
        es.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no entry {name} in {:?}", names(es)))
    }

    struct Ctx {
        dir: tempfile::TempDir,
    }

    impl Ctx {
        fn new() -> Ctx {
            Ctx {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn path(&self) -> &Path {
            self.dir.path()
        }
        fn file(&self, rel: &str, content: &str) -> &Self {
            let p = self.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            self
        }
        fn dir(&self, rel: &str) -> &Self {
            fs::create_dir_all(self.path().join(rel)).unwrap();
            self
        }
        fn link(&self, rel: &str, target: &str) -> &Self {
            let p = self.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
            self
        }
        fn mode(&self, rel: &str, mode: u32) -> &Self {
            fs::set_permissions(self.path().join(rel), fs::Permissions::from_mode(mode)).unwrap();
            self
        }
    }

    struct Req<'a> {
        sources: Vec<String>,
        dest: &'a str,
        state: DestState,
        owner: Option<(u32, u32)>,
        chmod: Option<u32>,
        ignore: Option<Matcher>,
    }

    fn req<'a>(sources: &[&str], dest: &'a str) -> Req<'a> {
        Req {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest,
            state: DestState::default(),
            owner: None,
            chmod: None,
            ignore: None,
        }
    }

    impl Req<'_> {
        fn request<'b>(&'b self, ctx: &'b Ctx) -> CopyRequest<'b> {
            CopyRequest {
                context: ctx.path(),
                sources: &self.sources,
                dest: self.dest,
                dest_state: self.state,
                owner: self.owner,
                chmod: self.chmod,
                ignore: self.ignore.as_ref(),
            }
        }
        fn copy(&self, ctx: &Ctx) -> Result<(Vec<E>, CopySummary), ContextError> {
            let r = self.request(ctx);
            let mut buf = Vec::new();
            let summary = copy_archive(&r, &mut buf)?;
            // The cache key is the same without the archive.
            assert_eq!(copy_checksum(&r).unwrap(), summary);
            let es = entries(&buf);
            assert_eq!(es.len() as u64, summary.entries);
            Ok((es, summary))
        }
        fn entries(&self, ctx: &Ctx) -> Vec<E> {
            self.copy(ctx).unwrap().0
        }
        fn err(&self, ctx: &Ctx) -> ContextError {
            let e = copy_checksum(&self.request(ctx)).unwrap_err();
            let mut buf = Vec::new();
            assert_eq!(
                copy_archive(&self.request(ctx), &mut buf)
                    .unwrap_err()
                    .to_string(),
                e.to_string()
            );
            e
        }
    }

    #[test]
    fn file_to_file_creates_missing_parents() {
        let ctx = Ctx::new();
        ctx.file("a.txt", "hello");
        let es = req(&["a.txt"], "/srv/app/b.txt").entries(&ctx);
        assert_eq!(names(&es), ["srv", "srv/app", "srv/app/b.txt"]);
        let d = find(&es, "srv/app");
        assert_eq!((d.kind, d.mode, d.uid, d.gid), ('d', 0o755, 0, 0));
        let f = find(&es, "srv/app/b.txt");
        assert_eq!((f.kind, f.mode, f.data.as_str()), ('f', 0o644, "hello"));

        // Existing parents get no entry (their owner, mode, symlinks stay).
        let mut r = req(&["a.txt"], "/srv/app/b.txt");
        r.state.existing_components = 2;
        assert_eq!(names(&r.entries(&ctx)), ["srv/app/b.txt"]);
        // `./` and a leading `/` on the source are the context root.
        assert_eq!(
            names(&req(&["/./a.txt"], "/b.txt").entries(&ctx)),
            ["b.txt"]
        );
    }

    #[test]
    fn file_into_directory() {
        let ctx = Ctx::new();
        ctx.file("sub/a.txt", "x");
        let es = req(&["sub/a.txt"], "/app/").entries(&ctx);
        assert_eq!(names(&es), ["app", "app/a.txt"]);
        // `/.` is a directory too, and `/` itself.
        assert_eq!(
            names(&req(&["sub/a.txt"], "/app/.").entries(&ctx)),
            ["app", "app/a.txt"]
        );
        assert_eq!(names(&req(&["sub/a.txt"], "/").entries(&ctx)), ["a.txt"]);
        // An existing directory without the slash (Docker stats the destination).
        let mut r = req(&["sub/a.txt"], "/app");
        r.state = DestState {
            existing_components: 1,
            is_dir: true,
        };
        assert_eq!(names(&r.entries(&ctx)), ["app/a.txt"]);
    }

    #[test]
    fn directory_source_copies_its_contents() {
        let ctx = Ctx::new();
        ctx.file("src/main.py", "print()")
            .file("src/pkg/mod.py", "x = 1")
            .dir("src/empty")
            .link("src/cfg", "pkg/mod.py")
            .mode("src/pkg", 0o750);
        let es = req(&["src"], "/app").entries(&ctx);
        assert_eq!(
            names(&es),
            [
                "app",
                "app/cfg",
                "app/empty",
                "app/main.py",
                "app/pkg",
                "app/pkg/mod.py"
            ]
        );
        assert_eq!(find(&es, "app").mode, 0o755);
        assert_eq!(find(&es, "app/pkg").mode, 0o750);
        let l = find(&es, "app/cfg");
        assert_eq!((l.kind, l.link.as_str()), ('l', "pkg/mod.py"));
        // The context root itself, to an existing destination: no entry for it.
        let mut r = req(&["."], "/app");
        r.state = DestState {
            existing_components: 1,
            is_dir: true,
        };
        let es = r.entries(&ctx);
        assert_eq!(names(&es)[0], "app/src");
        // Into `/`.
        let es = req(&["src/"], "/").entries(&ctx);
        assert_eq!(names(&es)[0], "cfg");
    }

    #[test]
    fn wildcards() {
        let ctx = Ctx::new();
        ctx.file("a.py", "a")
            .file("b.py", "b")
            .file("c.txt", "c")
            .file("sub/d.py", "d")
            .file("sub/deeper/e.py", "e")
            .file("pkgs/one/setup.py", "1")
            .file("pkgs/two/setup.py", "2");
        let es = req(&["*.py"], "/app/").entries(&ctx);
        assert_eq!(names(&es), ["app", "app/a.py", "app/b.py"]);
        let es = req(&["sub/*.py", "c.tx?"], "/app/").entries(&ctx);
        assert_eq!(names(&es), ["app", "app/d.py", "app/c.txt"]);
        let es = req(&["pkgs/*/setup.py"], "/x/").entries(&ctx);
        // Both land on the same name: the later one wins at extraction.
        assert_eq!(names(&es), ["x", "x/setup.py", "x/setup.py"]);
        assert_eq!(es[2].data, "2");
        // A matched directory copies its contents.
        let es = req(&["su[a-z]"], "/app").entries(&ctx);
        assert_eq!(
            names(&es),
            ["app", "app/d.py", "app/deeper", "app/deeper/e.py"]
        );
        // One match and no trailing slash: a file named as the destination.
        let es = req(&["c.*"], "/etc/c.conf").entries(&ctx);
        assert_eq!(names(&es), ["etc", "etc/c.conf"]);
        // No match at all.
        let e = req(&["*.rs"], "/app/").err(&ctx);
        assert!(matches!(e, ContextError::NoSources), "{e}");
        assert_eq!(e.to_string(), "no source files were specified");
        // A pattern matching nothing next to a source that exists is fine.
        assert_eq!(
            names(&req(&["*.rs", "a.py"], "/app/").entries(&ctx)),
            ["app", "app/a.py"]
        );
        // An escaped wildcard is a plain name.
        assert!(matches!(
            req(&["a\\*.py"], "/app/").err(&ctx),
            ContextError::NotFound { .. }
        ));
        assert!(matches!(
            req(&["[a"], "/app/").err(&ctx),
            ContextError::BadPattern { .. }
        ));
    }

    #[test]
    fn several_sources_need_a_directory_destination() {
        let ctx = Ctx::new();
        ctx.file("a", "a").file("b", "b");
        let e = req(&["a", "b"], "/app").err(&ctx);
        assert!(
            matches!(e, ContextError::DestNotDir { count: 2, .. }),
            "{e}"
        );
        assert!(e
            .to_string()
            .ends_with("the destination must be a directory and end with a /"));
        // A wildcard with two matches counts as two.
        assert!(matches!(
            req(&["?"], "/app").err(&ctx),
            ContextError::DestNotDir { .. }
        ));
        assert_eq!(
            names(&req(&["a", "b"], "/app/").entries(&ctx)),
            ["app", "app/a", "app/b"]
        );
    }

    #[test]
    fn sources_never_leave_the_context() {
        let outer = tempfile::tempdir().unwrap();
        fs::write(outer.path().join("secret"), "host secret").unwrap();
        let ctx_path = outer.path().join("ctx");
        fs::create_dir(&ctx_path).unwrap();
        let ctx = Ctx {
            dir: tempfile::Builder::new().tempdir_in(&ctx_path).unwrap(),
        };
        let host_secret = outer.path().join("secret");
        let host_secret = host_secret.to_str().unwrap();
        ctx.link("abs", host_secret)
            .link("up", "../../secret")
            .link("dir/up", "../../../../../secret")
            .link("etcdir", "/etc")
            .link("loop", "loop");

        // Lexically outside: refused, as the classic builder does.
        for s in ["../secret", "a/../../secret", "/../secret"] {
            let e = req(&[s], "/x").err(&ctx);
            assert!(matches!(e, ContextError::OutsideContext { .. }), "{s}: {e}");
            assert_eq!(
                e.to_string(),
                format!(
                    "forbidden path outside the build context: {}",
                    s.trim_start_matches('/')
                )
            );
        }
        // Through symlinks: resolved as if the context were `/`, so nothing is there ...
        for s in ["abs", "up", "dir/up", "etcdir/passwd"] {
            let e = req(&[s], "/x").err(&ctx);
            assert!(matches!(e, ContextError::NotFound { .. }), "{s}: {e}");
        }
        // ... until the context has it.
        let inside = host_secret.trim_start_matches('/');
        ctx.file(inside, "context copy")
            .file("secret", "context root secret");
        ctx.file("etc/passwd", "context passwd");
        let es = req(&["abs"], "/x").entries(&ctx);
        assert_eq!(
            (es[0].name.as_str(), es[0].data.as_str()),
            ("x", "context copy")
        );
        for s in ["up", "dir/up"] {
            let es = req(&[s], "/x").entries(&ctx);
            assert_eq!(es[0].data, "context root secret", "{s}");
        }
        // The file is named after the source as written, not the target.
        let es = req(&["etcdir/passwd"], "/out/").entries(&ctx);
        assert_eq!(names(&es), ["out", "out/passwd"]);
        assert_eq!(es[1].data, "context passwd");
        // A symlinked directory source is followed; its contents are the context's.
        let es = req(&["etcdir"], "/e").entries(&ctx);
        assert_eq!(names(&es), ["e", "e/passwd"]);
        // Symlinks inside a copied directory stay symlinks, target unchanged.
        let es = req(&["dir"], "/d").entries(&ctx);
        assert_eq!(find(&es, "d/up").link, "../../../../../secret");
        let e = req(&["loop"], "/x").err(&ctx);
        assert!(matches!(e, ContextError::SymlinkLoop { .. }), "{e}");
    }

    #[test]
    fn not_found_and_not_a_directory() {
        let ctx = Ctx::new();
        ctx.file("file", "x");
        let e = req(&["missing.txt"], "/x").err(&ctx);
        assert_eq!(
            e.to_string(),
            "file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist"
        );
        assert!(matches!(
            req(&["file/x"], "/x").err(&ctx),
            ContextError::NotADirectory { .. }
        ));
        // `file/..` is the context root, lexically.
        assert_eq!(
            names(&req(&["file/.."], "/x").entries(&ctx)),
            ["x", "x/file"]
        );
        assert!(matches!(
            req(&["file"], "x").err(&ctx),
            ContextError::RelativeDest { .. }
        ));
        let mut r = req(&["file"], "/x");
        r.chmod = Some(0o17777);
        assert!(matches!(r.err(&ctx), ContextError::BadChmod { .. }));
    }

    #[test]
    fn dockerignore_exclusions() {
        let ctx = Ctx::new();
        ctx.file("app.py", "a")
            .file("debug.log", "l")
            .file("keep.log", "k")
            .file("secret.env", "s")
            .file("node_modules/left-pad/index.js", "n")
            .file("node_modules/keep-me/index.js", "k")
            .file("docs/a.md", "d")
            .link("to-secret", "secret.env");
        let ignore = Matcher::parse(
            "*.log\n!keep.log\nsecret.env\nnode_modules\n!node_modules/keep-me\ndocs\n",
        )
        .unwrap();
        let mut r = req(&["."], "/app/");
        r.ignore = Some(ignore.clone());
        let es = r.entries(&ctx);
        assert_eq!(
            names(&es),
            [
                "app",
                "app/app.py",
                "app/keep.log",
                "app/node_modules",
                "app/node_modules/keep-me",
                "app/node_modules/keep-me/index.js",
                "app/to-secret",
            ]
        );
        // The excluded directory the exception reopens is made 0755.
        assert_eq!(find(&es, "app/node_modules").mode, 0o755);
        // An excluded source, or one reached through a symlink, is not there.
        for s in ["secret.env", "to-secret", "docs/a.md", "docs", "*.env"] {
            let mut r = req(&[s], "/x/");
            r.ignore = Some(ignore.clone());
            let e = r.err(&ctx);
            assert!(
                matches!(e, ContextError::NotFound { .. } | ContextError::NoSources),
                "{s}: {e}"
            );
        }
        let mut r = req(&["node_modules"], "/nm");
        r.ignore = Some(ignore);
        assert_eq!(
            names(&r.entries(&ctx)),
            ["nm", "nm/keep-me", "nm/keep-me/index.js"]
        );
    }

    #[test]
    fn owner_and_chmod() {
        let ctx = Ctx::new();
        ctx.file("src/run.sh", "#!/bin/sh")
            .mode("src/run.sh", 0o755)
            .file("src/conf/app.ini", "x")
            .link("src/latest", "run.sh");
        let mut r = req(&["src"], "/opt/app");
        r.owner = Some((1000, 1001));
        let es = r.entries(&ctx);
        for e in &es {
            assert_eq!((e.uid, e.gid), (1000, 1001), "{}", e.name);
        }
        assert_eq!(find(&es, "opt").mode, 0o755);
        assert_eq!(find(&es, "opt/app/run.sh").mode, 0o755);
        assert_eq!(find(&es, "opt/app/conf/app.ini").mode, 0o644);

        r.chmod = Some(0o640);
        let es = r.entries(&ctx);
        // Created parents stay 0755; the created destination and everything copied
        // but symlinks get the mode.
        assert_eq!(find(&es, "opt").mode, 0o755);
        assert_eq!(find(&es, "opt/app").mode, 0o640);
        assert_eq!(find(&es, "opt/app/run.sh").mode, 0o640);
        assert_eq!(find(&es, "opt/app/conf").mode, 0o640);
        assert_eq!(find(&es, "opt/app/latest").mode, 0o777);
        // Without --chown: root, whatever owns the context.
        let es = req(&["src/run.sh"], "/bin/").entries(&ctx);
        assert!(es.iter().all(|e| e.uid == 0 && e.gid == 0));
    }

    #[test]
    fn checksum_follows_content_not_times() {
        let ctx = Ctx::new();
        ctx.file("src/a.txt", "one").file("src/b/c.txt", "two");
        let r = req(&["src"], "/app/");
        let (_, first) = r.copy(&ctx).unwrap();
        assert!(first.checksum.starts_with("sha256:"));
        assert_eq!(first.bytes, 6);

        // A new checkout: same content, other times.
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for p in ["src/a.txt", "src/b/c.txt"] {
            fs::File::options()
                .write(true)
                .open(ctx.path().join(p))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let (es, again) = r.copy(&ctx).unwrap();
        assert_eq!(again.checksum, first.checksum);
        assert_eq!(
            find(&es, "app/a.txt").data,
            "one",
            "times are kept in the archive"
        );

        // Content, mode, owner, name and destination all count.
        ctx.file("src/a.txt", "One");
        let (_, content) = r.copy(&ctx).unwrap();
        assert_ne!(content.checksum, first.checksum);
        ctx.mode("src/a.txt", 0o600);
        let (_, mode) = r.copy(&ctx).unwrap();
        assert_ne!(mode.checksum, content.checksum);
        let mut owned = req(&["src"], "/app/");
        owned.owner = Some((1, 1));
        assert_ne!(owned.copy(&ctx).unwrap().1.checksum, mode.checksum);
        assert_ne!(
            req(&["src"], "/app2/").copy(&ctx).unwrap().1.checksum,
            mode.checksum
        );
        fs::rename(ctx.path().join("src/a.txt"), ctx.path().join("src/z.txt")).unwrap();
        assert_ne!(r.copy(&ctx).unwrap().1.checksum, mode.checksum);
    }

    #[test]
    fn special_files_hard_links_and_long_names() {
        let ctx = Ctx::new();
        ctx.file("d/file", "data");
        fs::hard_link(ctx.path().join("d/file"), ctx.path().join("d/link")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            ctx.path().join("d/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(ctx.path().join("d/sock")).unwrap();
        let long = "n".repeat(150);
        ctx.file(&format!("d/{long}"), "long")
            .link(&format!("d/{long}.lnk"), &format!("t/{long}"));
        let es = req(&["d"], "/x").entries(&ctx);
        assert_eq!(
            names(&es),
            [
                "x".to_string(),
                "x/fifo".to_string(),
                "x/file".to_string(),
                "x/link".to_string(),
                format!("x/{long}"),
                format!("x/{long}.lnk"),
            ]
        );
        let fifo = find(&es, "x/fifo");
        assert_eq!((fifo.kind, fifo.mode), ('p', 0o600));
        let link = find(&es, "x/link");
        assert_eq!((link.kind, link.link.as_str()), ('h', "x/file"));
        assert_eq!(find(&es, &format!("x/{long}")).data, "long");
        assert_eq!(
            find(&es, &format!("x/{long}.lnk")).link,
            format!("t/{long}")
        );
    }

    #[test]
    fn probe_dest_resolves_in_the_container_root() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("usr/local")).unwrap();
        fs::write(root.path().join("usr/file"), "").unwrap();
        symlink("/usr", root.path().join("lnk")).unwrap();
        symlink("../../../../usr", root.path().join("up")).unwrap();
        symlink("/nowhere", root.path().join("dangling")).unwrap();
        let fd = rfs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let p = |d: &str| probe_dest(fd.as_fd(), d).unwrap();
        let st = |existing_components, is_dir| DestState {
            existing_components,
            is_dir,
        };
        assert_eq!(p("/"), st(0, true));
        assert_eq!(p("/usr"), st(1, true));
        assert_eq!(p("/usr/local/bin/x"), st(2, false));
        assert_eq!(p("/usr/file"), st(2, false));
        assert_eq!(p("/usr/file/x"), st(2, false));
        assert_eq!(p("/lnk/local/"), st(2, true));
        assert_eq!(p("/up/local"), st(2, true));
        assert_eq!(p("/dangling/x"), st(1, false));
        assert_eq!(p("/new/dir/"), st(0, false));
        assert!(probe_dest(fd.as_fd(), "rel").is_err());
    }
}
