//! User namespaces: `berth daemon --userns-remap default|USER[:GROUP]` (Docker's option).
//!
//! With remapping, a container's root is an unprivileged uid on the host: container ids
//! `0..size` are host ids `start..start+size` of the remap user's first range in
//! `/etc/subuid` and `/etc/subgid`. `default` uses the user `dockremap` (created, and given
//! 65536 ids, when missing, as Docker's daemon does).
//!
//! Each container gets a persistent user namespace of its own, created before its rootfs
//! is mounted and kept by a bind mount of its nsfs file (`containers/ID/userns`, as
//! network namespaces are kept): the rootfs's layers are idmapped mounts made with that
//! namespace ([`idmap_mount`]), the container's network namespace is created inside it
//! (so the container's root owns it: sysfs, sysctls), and the runtime joins it by path.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_types::ErrorKind;
use serde::{Deserialize, Serialize};

/// The user `default` names (Docker's).
pub const DEFAULT_REMAP_USER: &str = "dockremap";
/// How many ids `default` gives the remap user (Docker's).
pub const DEFAULT_RANGE_SIZE: u32 = 65536;
/// Where `default` starts looking for a free range (Docker's).
pub const DEFAULT_RANGE_START: u32 = 100_000;

/// One container's id mapping: container ids `0..size` are host uids `uid..uid+size` and
/// host gids `gid..gid+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl IdMap {
    /// The host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.uid + id)
    }
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.gid + id)
    }
    /// The container uid of host uid `id`, if mapped.
    pub fn container_uid(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.uid).filter(|i| *i < self.size)
    }
    pub fn container_gid(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.gid).filter(|i| *i < self.size)
    }
    /// `uid_map` and `gid_map` contents.
    pub fn uid_map(&self) -> String {
        format!("0 {} {}\n", self.uid, self.size)
    }
    pub fn gid_map(&self) -> String {
        format!("0 {} {}\n", self.gid, self.size)
    }
}

/// An error setting up remapping.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("userns-remap {spec:?}: {rule}")]
    Spec { spec: String, rule: String },
    #[error("--userns=auto: {rule}")]
    Auto { rule: String },
    #[error("user namespace {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl UsernsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            UsernsError::Spec { .. } | UsernsError::Auto { .. } => ErrorKind::InvalidArgument,
            UsernsError::Io { .. } => ErrorKind::Internal,
        }
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> UsernsError + 'a {
    move |source| UsernsError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The first range of `name` (or of its numeric id `id`) in a subuid/subgid file's
/// `content` (`NAME:START:COUNT` lines): `(start, count)`.
pub fn parse_subid(content: &str, name: &str, id: Option<u32>) -> Option<(u32, u32)> {
    subid_ranges(content, name, id).next()
}

/// Every range of `name` (or of its numeric id `id`) in a subuid/subgid file's `content`,
/// in the file's order; empty and overflowing ranges are skipped.
pub fn subid_ranges<'a>(
    content: &'a str,
    name: &'a str,
    id: Option<u32>,
) -> impl Iterator<Item = (u32, u32)> + 'a {
    content.lines().filter_map(move |l| {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        let mut f = l.split(':');
        let who = f.next()?;
        let start: u32 = f.next()?.trim().parse().ok()?;
        let count: u32 = f.next()?.trim().parse().ok()?;
        let matches = who == name || id.is_some_and(|i| who == i.to_string());
        (matches && count > 0 && start.checked_add(count).is_some()).then_some((start, count))
    })
}

/// The first start at or above [`DEFAULT_RANGE_START`] where `size` ids overlap no range
/// of `content`.
pub fn free_range(content: &str, size: u32) -> Option<u32> {
    let mut ranges: Vec<(u64, u64)> = content
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let _ = f.next()?;
            let s: u64 = f.next()?.trim().parse().ok()?;
            let c: u64 = f.next()?.trim().parse().ok()?;
            Some((s, s + c))
        })
        .collect();
    ranges.sort_unstable();
    let mut start = u64::from(DEFAULT_RANGE_START);
    for (s, e) in ranges {
        if start + u64::from(size) <= s {
            break;
        }
        start = start.max(e);
    }
    u32::try_from(start + u64::from(size))
        .ok()
        .and_then(|_| u32::try_from(start).ok())
}

/// A passwd or group file's entry: `(name, id)` of the line whose name or id is `who`.
fn lookup_id(content: &str, who: &str) -> Option<(String, u32)> {
    content.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id: u32 = f.get(2)?.parse().ok()?;
        (f[0] == who || id.to_string() == who).then(|| (f[0].to_string(), id))
    })
}

/// Resolves `--userns-remap` (`default`, `USER`, `USER:GROUP`, names or ids) against the
/// host's `/etc` files. `default` creates the user `dockremap` (`useradd --system`) and
/// its 65536-id ranges when missing.
pub fn resolve(spec: &str) -> Result<IdMap, UsernsError> {
    resolve_in(Path::new("/etc"), spec)
}

/// [`resolve`] against the files of `etc` (tests).
pub fn resolve_in(etc: &Path, spec: &str) -> Result<IdMap, UsernsError> {
    let err = |rule: String| UsernsError::Spec {
        spec: spec.to_string(),
        rule,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(err("expected default, USER or USER:GROUP".into()));
    }
    let passwd_path = etc.join("passwd");
    let read = |p: &Path| fs::read_to_string(p).map_err(io_err(p, "read"));
    let default = user == "default";
    let user = if default { DEFAULT_REMAP_USER } else { user };
    let group = group.unwrap_or(user);
    if default && lookup_id(&read(&passwd_path)?, user).is_none() {
        let out = std::process::Command::new("useradd")
            .args(["--system", "--shell", "/bin/false", "--no-create-home"])
            .arg(user)
            .output()
            .map_err(|e| err(format!("creating the user {user} (useradd): {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "creating the user {user} (useradd): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let (uname, uid) = lookup_id(&read(&passwd_path)?, user)
        .ok_or_else(|| err(format!("no user {user} in {}", passwd_path.display())))?;
    let group_path = etc.join("group");
    let (gname, gid) = match lookup_id(&read(&group_path)?, group) {
        Some(g) => (g.0, Some(g.1)),
        None if group == user => (uname.clone(), None),
        None => return Err(err(format!("no group {group} in {}", group_path.display()))),
    };
    let mut ranges = [(0u32, 0u32); 2];
    for (i, (file, name, id)) in [("subuid", &uname, Some(uid)), ("subgid", &gname, gid)]
        .into_iter()
        .enumerate()
    {
        let path = etc.join(file);
        let content = match fs::read_to_string(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&path, "read")(e)),
        };
        ranges[i] = match parse_subid(&content, name, id) {
            Some(r) => r,
            None if default => {
                let start = free_range(&content, DEFAULT_RANGE_SIZE).ok_or_else(|| {
                    err(format!(
                        "no free range of {DEFAULT_RANGE_SIZE} ids in {}",
                        path.display()
                    ))
                })?;
                let mut f = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o644)
                    .open(&path)
                    .map_err(io_err(&path, "open"))?;
                let sep = if content.is_empty() || content.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                io::Write::write_all(
                    &mut f,
                    format!("{sep}{name}:{start}:{DEFAULT_RANGE_SIZE}\n").as_bytes(),
                )
                .map_err(io_err(&path, "append"))?;
                (start, DEFAULT_RANGE_SIZE)
            }
            None => {
                return Err(err(format!(
                    "no range for {name} in {} (add a line {name}:START:COUNT)",
                    path.display()
                )))
            }
        };
    }
    let [(uid_start, ucount), (gid_start, gcount)] = ranges;
    if uid_start == 0 || gid_start == 0 {
        return Err(err(
            "a range starting at id 0 would map the container's root to the host's".into(),
        ));
    }
    Ok(IdMap {
        uid: uid_start,
        gid: gid_start,
        size: ucount.min(gcount),
    })
}

/// The user whose subordinate ids `--userns=auto` containers get their ranges from
/// (Podman's: one `/etc/subuid` line serves both engines).
pub const AUTO_USER: &str = "containers";
/// How many ids an `--userns=auto` container gets unless it asks `auto:size=N`: as many as
/// `--userns-remap` gives, so an image's files owned by any 16-bit id stay mapped.
pub const AUTO_DEFAULT_SIZE: u32 = 65536;

/// Parses a `--userns` mode that asks for a range of its own: `auto` or
/// `auto:size=N` (Podman's syntax; its other keys are refused by name). `Ok(None)` for
/// any other mode; the size asked for otherwise.
pub fn parse_auto(mode: &str) -> Result<Option<u32>, String> {
    let opts = match mode.split_once(':') {
        None if mode == "auto" => "",
        Some(("auto", o)) => o,
        _ => return Ok(None),
    };
    let mut size = AUTO_DEFAULT_SIZE;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", n)) => {
                size = n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=AUTO_DEFAULT_SIZE * 16).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "--userns={mode}: size must be a number of ids from 1 to {}, not {n:?}",
                            AUTO_DEFAULT_SIZE * 16
                        )
                    })?;
            }
            _ => {
                let key = opt.split('=').next().unwrap_or(opt);
                return Err(format!(
                    "--userns={mode}: option {key:?} is not supported (berth takes auto and auto:size=N)"
                ));
            }
        }
    }
    Ok(Some(size))
}

/// The subordinate ids `--userns=auto` allocates from: every range of [`AUTO_USER`] in
/// `/etc/subuid` and `/etc/subgid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPool {
    pub uids: Vec<(u32, u32)>,
    pub gids: Vec<(u32, u32)>,
}

impl AutoPool {
    /// Reads the pool from the host's `/etc`.
    pub fn read() -> Result<AutoPool, UsernsError> {
        AutoPool::read_in(Path::new("/etc"))
    }

    /// [`AutoPool::read`] against the files of `etc` (tests). The user need not exist in
    /// `passwd` (its ranges are found by name; by its uid too when it does).
    pub fn read_in(etc: &Path) -> Result<AutoPool, UsernsError> {
        let read = |name: &str| -> Result<String, UsernsError> {
            let path = etc.join(name);
            match fs::read_to_string(&path) {
                Ok(c) => Ok(c),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(io_err(&path, "read")(e)),
            }
        };
        let uid = lookup_id(&read("passwd")?, AUTO_USER).map(|(_, id)| id);
        let gid = lookup_id(&read("group")?, AUTO_USER).map(|(_, id)| id);
        let mut pool = AutoPool {
            uids: Vec::new(),
            gids: Vec::new(),
        };
        for (file, id, out) in [
            ("subuid", uid, &mut pool.uids),
            ("subgid", gid, &mut pool.gids),
        ] {
            // Id 0 would map a container's root to the host's.
            *out = subid_ranges(&read(file)?, AUTO_USER, id)
                .filter(|(start, _)| *start > 0)
                .collect();
            if out.is_empty() {
                return Err(UsernsError::Auto {
                    rule: format!(
                        "no subordinate ids for the user {AUTO_USER} in {}: add a range for it to /etc/subuid and /etc/subgid, e.g. the line {AUTO_USER}:2147483647:2147483648 (Podman's setting)",
                        etc.join(file).display()
                    ),
                });
            }
        }
        Ok(pool)
    }

    /// The first `size` uids and `size` gids of the pool that no mapping of `used`
    /// overlaps: a container's own range.
    pub fn allocate(&self, size: u32, used: &[IdMap]) -> Option<IdMap> {
        let uids: Vec<(u64, u64)> = used.iter().map(|m| span(m.uid, m.size)).collect();
        let gids: Vec<(u64, u64)> = used.iter().map(|m| span(m.gid, m.size)).collect();
        Some(IdMap {
            uid: first_fit(&self.uids, &uids, size)?,
            gid: first_fit(&self.gids, &gids, size)?,
            size,
        })
    }
}

fn span(start: u32, size: u32) -> (u64, u64) {
    (u64::from(start), u64::from(start) + u64::from(size))
}

/// The lowest start, within one range of `pool`, of `size` ids that overlap no span of
/// `used` (`[start, end)`).
fn first_fit(pool: &[(u32, u32)], used: &[(u64, u64)], size: u32) -> Option<u32> {
    let mut pool = pool.to_vec();
    pool.sort_unstable();
    for (start, count) in pool {
        let (lo, hi) = span(start, count);
        let mut at = lo;
        // Each step moves past one overlapping span: at most `used.len()` steps.
        while let Some(&(_, end)) = used
            .iter()
            .find(|(s, e)| *s < at + u64::from(size) && at < *e)
        {
            at = end;
        }
        if at + u64::from(size) <= hi {
            return u32::try_from(at).ok();
        }
    }
    None
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// Waits for one byte from the child; `true` if it said `1`.
fn read_byte(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    matches!(rustix::io::read(fd, &mut b), Ok(1)) && b[0] == b'1'
}

/// Makes an empty file to bind a namespace on (kept if it exists).
fn mount_point(path: &Path) -> Result<(), UsernsError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent, "create directory"))?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path, "create mount point")(e)),
    }
}

/// A forked child that entered (`join`) or created (`map`) a user namespace and, with
/// `new_net`, then created a network namespace in it; it waits until dropped.
struct NsChild {
    pid: libc::pid_t,
    release: Option<OwnedFd>,
}

impl Drop for NsChild {
    fn drop(&mut self) {
        self.release.take();
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// Forks a child that, with only async-signal-safe calls (the daemon is multithreaded),
/// joins `join` (a user namespace fd) or unshares a new user namespace, tells the parent,
/// waits for its word, optionally unshares a network namespace, tells again, and waits
/// until the parent closes the release pipe.
fn spawn_ns_child(
    join: Option<&File>,
    map: Option<&IdMap>,
    new_net: bool,
    what: &Path,
) -> Result<NsChild, UsernsError> {
    let e = |action| io_err(what, action);
    let (from_child_r, from_child_w) = pipe().map_err(e("pipe"))?;
    let (to_child_r, to_child_w) = pipe().map_err(e("pipe"))?;
    let join_fd = join.map_or(-1, |f| f.as_raw_fd());
    let (rd, wait) = (from_child_w.as_raw_fd(), to_child_r.as_raw_fd());
    let (parent_r, parent_w) = (from_child_r.as_raw_fd(), to_child_w.as_raw_fd());
    // SAFETY: the child calls only async-signal-safe functions (setns, unshare, read,
    // write, _exit) on fds opened before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(e("fork")(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: (child) raw syscalls on valid fds; _exit never returns.
        unsafe {
            // The parent's ends: the release pipe must reach EOF when the parent closes.
            libc::close(parent_r);
            libc::close(parent_w);
            let say = |ok: bool| {
                let b: [u8; 1] = [if ok { b'1' } else { b'0' }];
                libc::write(rd, b.as_ptr().cast(), 1);
            };
            let mut buf = [0u8; 1];
            let ok = if join_fd >= 0 {
                libc::setns(join_fd, libc::CLONE_NEWUSER) == 0
            } else {
                libc::unshare(libc::CLONE_NEWUSER) == 0
            };
            say(ok);
            if !ok || libc::read(wait, buf.as_mut_ptr().cast(), 1) != 1 {
                libc::_exit(1);
            }
            if new_net {
                say(libc::unshare(libc::CLONE_NEWNET) == 0);
            }
            // Until the parent closes its end: EOF.
            libc::read(wait, buf.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(from_child_w);
    drop(to_child_r);
    let mut child = NsChild {
        pid,
        release: Some(to_child_w),
    };
    if !read_byte(&from_child_r) {
        return Err(UsernsError::Io {
            path: what.to_path_buf(),
            action: if join.is_some() {
                "enter the user namespace (setns)"
            } else {
                "create a user namespace (unshare)"
            },
            source: io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    if let Some(map) = map {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        for (file, content) in [("uid_map", map.uid_map()), ("gid_map", map.gid_map())] {
            let p = proc.join(file);
            fs::write(&p, content).map_err(io_err(&p, "write"))?;
        }
    }
    if let Some(w) = &child.release {
        rustix::io::write(w, b"g").map_err(|er| e("signal the child")(er.into()))?;
    }
    if new_net && !read_byte(&from_child_r) {
        child.release.take();
        return Err(UsernsError::Io {
            path: what.to_path_buf(),
            action: "create a network namespace in the user namespace (unshare)",
            source: io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    Ok(child)
}

/// Creates a user namespace with `map` and keeps it by bind-mounting its nsfs file on
/// `path` (an empty file, created). Nothing is left behind on failure.
pub fn create(path: &Path, map: &IdMap) -> Result<(), UsernsError> {
    if is_userns(path) {
        return Ok(());
    }
    mount_point(path)?;
    let r = (|| {
        let child = spawn_ns_child(None, Some(map), false, path)?;
        let src = format!("/proc/{}/ns/user", child.pid);
        rustix::mount::mount_bind(src.as_str(), path)
            .map_err(|e| io_err(path, "bind mount")(e.into()))
    })();
    if r.is_err() {
        let _ = fs::remove_file(path);
    }
    r
}

/// Creates a network namespace owned by the user namespace at `userns` and keeps it by
/// a bind mount on `netns` (an empty file, created). The caller brings `lo` up (from the
/// host: root of the initial namespace has every capability in it).
pub fn create_netns_in(userns: &Path, netns: &Path) -> Result<(), UsernsError> {
    let ns = open(userns)?;
    mount_point(netns)?;
    let r = (|| {
        let child = spawn_ns_child(Some(&ns), None, true, netns)?;
        let src = format!("/proc/{}/ns/net", child.pid);
        rustix::mount::mount_bind(src.as_str(), netns)
            .map_err(|e| io_err(netns, "bind mount")(e.into()))
    })();
    if r.is_err() {
        let _ = fs::remove_file(netns);
    }
    r
}

/// Opens a kept user namespace.
pub fn open(path: &Path) -> Result<File, UsernsError> {
    if !is_userns(path) {
        return Err(UsernsError::Io {
            path: path.to_path_buf(),
            action: "open",
            source: io::Error::new(io::ErrorKind::NotFound, "not a mounted user namespace"),
        });
    }
    File::open(path).map_err(io_err(path, "open"))
}

/// `NS_GET_NSTYPE` from linux/nsfs.h.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Whether `path` is a mounted user namespace.
pub fn is_userns(path: &Path) -> bool {
    let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    else {
        return false;
    };
    // SAFETY: NS_GET_NSTYPE takes no argument; the fd is valid for the call.
    let t = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
    t == libc::CLONE_NEWUSER
}

/// Unmounts (lazily) and deletes a kept namespace file; Ok if absent.
pub fn remove(path: &Path) -> Result<(), UsernsError> {
    for _ in 0..16 {
        if rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH).is_err() {
            break;
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "delete")(e)),
    }
}

/// `struct mount_attr` of linux/mount.h.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached idmapped clone of `source` (files owned by id N on disk appear as the
/// user namespace's mapping of N).
fn idmapped_tree(source: &Path, userns: &File) -> io::Result<OwnedFd> {
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        source,
        rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
            | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes at `&attr` (a valid,
    // initialised struct) and the empty path string; the tree fd is valid.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Mounts an idmapped clone of `source` on `target` (a directory): files owned by host
/// id N appear owned by the user namespace's mapping of N (0 → the container's root).
pub fn idmap_mount(source: &Path, target: &Path, userns: &File) -> io::Result<()> {
    let tree = idmapped_tree(source, userns)?;
    rustix::mount::move_mount(
        &tree,
        "",
        rustix::fs::CWD,
        target,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Whether the filesystem of `dir` can be idmapped on this kernel: makes a throwaway
/// user namespace and an idmapped clone of `dir` that is never attached.
pub fn probe_idmap(dir: &Path, map: &IdMap) -> Result<(), UsernsError> {
    let child = spawn_ns_child(None, Some(map), false, dir)?;
    let p = PathBuf::from(format!("/proc/{}/ns/user", child.pid));
    let ns = File::open(&p).map_err(io_err(&p, "open"))?;
    drop(child);
    idmapped_tree(dir, &ns).map(drop).map_err(io_err(
        dir,
        "idmapped mount (mount_setattr MOUNT_ATTR_IDMAP)",
    ))
}

/// Chowns `path` (not following a symlink) to the container's root.
pub fn chown_to_root(path: &Path, map: &IdMap) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(map.uid), Some(map.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_modes_parse_with_podmans_size_and_refuse_other_keys() {
        assert_eq!(parse_auto("auto"), Ok(Some(AUTO_DEFAULT_SIZE)));
        assert_eq!(parse_auto("auto:size=1024"), Ok(Some(1024)));
        assert_eq!(parse_auto("host"), Ok(None));
        assert_eq!(parse_auto(""), Ok(None));
        assert_eq!(parse_auto("automatic"), Ok(None));
        let e = parse_auto("auto:size=0").expect_err("size 0");
        assert!(e.contains("size must be a number"), "{e}");
        let e = parse_auto("auto:size=lots").expect_err("size lots");
        assert!(e.contains("\"lots\""), "{e}");
        let e = parse_auto("auto:uidmapping=0:1000:1").expect_err("uidmapping");
        assert!(e.contains("\"uidmapping\" is not supported"), "{e}");
    }

    #[test]
    fn the_auto_pool_is_every_range_of_containers_and_its_absence_is_named() {
        let etc = tempfile::tempdir().expect("tempdir");
        std::fs::write(etc.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        let e = AutoPool::read_in(etc.path()).expect_err("no subuid");
        let msg = e.to_string();
        assert!(
            msg.contains("no subordinate ids for the user containers")
                && msg.contains("subuid")
                && msg.contains("containers:2147483647:2147483648"),
            "{msg}"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        std::fs::write(
            etc.path().join("subuid"),
            "dockremap:100000:65536\ncontainers:1000000:131072\ncontainers:0:10\ncontainers:5000000:65536\n",
        )
        .expect("subuid");
        let e = AutoPool::read_in(etc.path()).expect_err("no subgid");
        assert!(e.to_string().contains("subgid"), "{e}");
        std::fs::write(etc.path().join("subgid"), "containers:2000000:65536\n").expect("subgid");
        let pool = AutoPool::read_in(etc.path()).expect("pool");
        assert_eq!(pool.uids, vec![(1_000_000, 131_072), (5_000_000, 65536)]);
        assert_eq!(pool.gids, vec![(2_000_000, 65536)]);
    }

    #[test]
    fn auto_ranges_never_overlap_a_used_one_and_are_reused_when_freed() {
        let pool = AutoPool {
            uids: vec![(1_000_000, 200_000)],
            gids: vec![(3_000_000, 200_000)],
        };
        let a = pool.allocate(65536, &[]).expect("a");
        assert_eq!((a.uid, a.gid, a.size), (1_000_000, 3_000_000, 65536));
        let b = pool.allocate(65536, &[a]).expect("b");
        assert_eq!((b.uid, b.gid), (1_065_536, 3_065_536));
        // A smaller range fits in a gap; one that overlaps the pool's start is skipped.
        let remap = IdMap {
            uid: 999_000,
            gid: 2_999_000,
            size: 2000,
        };
        let c = pool.allocate(1024, &[remap, b]).expect("c");
        assert_eq!((c.uid, c.gid), (1_001_000, 3_001_000));
        // Full: the third 65536 fits (200000 >= 3 * 65536), a fourth does not.
        let d = pool.allocate(65536, &[a, b]).expect("d");
        assert_eq!(d.uid, 1_131_072);
        assert_eq!(pool.allocate(65536, &[a, b, d]), None);
        // Freed (its container removed): the lowest range is given again.
        assert_eq!(pool.allocate(65536, &[b, d]), Some(a));
    }

    #[test]
    fn subid_ranges_are_found_by_name_or_id() {
        let c = "# x\nalice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(parse_subid(c, "alice", None), Some((100000, 65536)));
        assert_eq!(parse_subid(c, "carol", Some(1001)), Some((200000, 1000)));
        assert_eq!(
            parse_subid(c, "bob", None),
            None,
            "an empty range is no range"
        );
        assert_eq!(parse_subid(c, "dave", None), None);
    }

    #[test]
    fn a_free_range_skips_the_ranges_in_use() {
        assert_eq!(free_range("", 65536), Some(100000));
        assert_eq!(free_range("a:100000:65536\n", 65536), Some(165536));
        assert_eq!(free_range("a:300000:10\n", 65536), Some(100000));
        assert_eq!(
            free_range("a:100000:65536\nb:165536:65536\n", 65536),
            Some(231072)
        );
    }

    #[test]
    fn a_user_with_ranges_resolves_and_bad_specs_are_named() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            d.path().join("group"),
            "root:x:0:\napp:x:1000:\nops:x:2000:\n",
        )
        .unwrap();
        fs::write(d.path().join("subuid"), "app:100000:65536\n").unwrap();
        fs::write(
            d.path().join("subgid"),
            "app:200000:65536\nops:300000:1000\n",
        )
        .unwrap();
        let m = resolve_in(d.path(), "app").unwrap();
        assert_eq!(
            m,
            IdMap {
                uid: 100000,
                gid: 200000,
                size: 65536
            }
        );
        let m = resolve_in(d.path(), "app:ops").unwrap();
        assert_eq!(
            m,
            IdMap {
                uid: 100000,
                gid: 300000,
                size: 1000
            }
        );
        assert_eq!(m.host_uid(0), Some(100000));
        assert_eq!(m.host_uid(1000), None);
        assert_eq!(m.container_gid(300999), Some(999));
        let e = resolve_in(d.path(), "nobody").unwrap_err().to_string();
        assert!(e.contains("no user nobody"), "{e}");
        let e = resolve_in(d.path(), "root").unwrap_err().to_string();
        assert!(e.contains("no range for root"), "{e}");
        let e = resolve_in(d.path(), "app:").unwrap_err().to_string();
        assert!(e.contains("USER:GROUP"), "{e}");
    }
}
