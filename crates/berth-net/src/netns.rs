//! Network namespaces kept alive by a bind mount, as `ip netns add` does.
//!
//! A container's network namespace must exist before its process starts (so that berth
//! can plug veth pairs into it and libcontainer can join it) and must outlive nothing
//! but berth's own record of it. The kernel keeps a namespace alive while something
//! references it; a bind mount of its nsfs file onto a plain file (`<root>/netns/<id>`)
//! is such a reference, survives the daemon, and is visible to any tool (`nsenter
//! --net=<path>`, `ip -n` after a symlink in /run/netns).
//!
//! Namespace switches are per thread. Nothing here ever moves the caller's thread: every
//! operation that needs to be inside a namespace runs on a short-lived dedicated std
//! thread that enters (or creates) the namespace, does its work and exits. Sockets it
//! opens stay bound to that namespace after the thread is gone, which is how callers get
//! a netlink or TCP socket "inside" a container.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::mount::UnmountFlags;
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::{Error, Result};

/// `NSFS_MAGIC` from linux/magic.h: the filesystem type of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` from linux/nsfs.h: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

fn object(path: &Path) -> String {
    format!("network namespace {}", path.display())
}

/// Creates a new network namespace, with `lo` up, and keeps it alive by bind-mounting it
/// on `path` (the parent directory and an empty file are created as needed).
///
/// If `path` already is a network namespace the error has kind Conflict: the caller
/// decides whether to [`remove`] it first. On failure nothing is left behind (no mount,
/// no file that this call created).
pub fn create(path: &Path) -> Result<()> {
    let obj = object(path);
    if is_netns(path) {
        return Err(Error::conflict(obj, "exists already"));
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(&obj, &format!("create {}", parent.display()), e))?;
    }
    let created_file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
    {
        Ok(_) => true,
        // A plain file left by an earlier failure or crash: reuse it as the mount point.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(Error::io(&obj, "create mount point", e)),
    };
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            // SAFETY: only CLONE_NEWNET is unshared, which changes this thread's network
            // namespace and nothing else (not its file descriptor table); the thread is
            // dedicated to this call and exits right after.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
                .map_err(|e| Error::io(&obj, "unshare network namespace", e.into()))?;
            crate::link::set_up("lo").map_err(|e| Error::internal(&obj, e.to_string()))?;
            rustix::mount::mount_bind("/proc/thread-self/ns/net", path)
                .map_err(|e| Error::io(&obj, "bind mount", e.into()))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if result.is_err() && created_file {
        let _ = fs::remove_file(path);
    }
    result
}

/// Brings `lo` up in the network namespace at `path` (one made elsewhere, e.g. inside a
/// container's user namespace).
pub fn loopback_up(path: &Path) -> Result<()> {
    run_in(path, || crate::link::set_up("lo"))?
}

/// Unmounts (lazily) and deletes a namespace file. Ok if `path` does not exist; a plain
/// file left by an interrupted [`create`] is deleted as well.
pub fn remove(path: &Path) -> Result<()> {
    let obj = object(path);
    // A path can carry stacked mounts (two creates racing); peel them all.
    for _ in 0..16 {
        if !is_netns(path) {
            break;
        }
        match rustix::mount::unmount(path, UnmountFlags::DETACH) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => break,
            Err(e) => return Err(Error::io(&obj, "unmount", e.into())),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&obj, "delete", e)),
    }
}

/// Whether `path` is a mounted network namespace: its filesystem is nsfs and the kernel
/// says the namespace is a network one (a mount of another namespace type is not).
pub fn is_netns(path: &Path) -> bool {
    // statfs first: it does not open the file, so a FIFO or device at `path` is harmless.
    // f_type's integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    match rustix::fs::statfs(path) {
        Ok(st) if st.f_type as i64 == NSFS_MAGIC => {}
        _ => return false,
    }
    let Ok(file) = open_ns(path) else {
        return false;
    };
    ns_type(&file) == Some(libc::CLONE_NEWNET)
}

fn open_ns(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
}

fn ns_type(file: &File) -> Option<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns an integer; the fd is a
    // valid open file borrowed for the duration of the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    (r >= 0).then_some(r)
}

/// Opens the network namespace at `path`, checking that it is one: the returned file can
/// be passed to the kernel (setns, IFLA_NET_NS_FD).
pub(crate) fn open(path: &Path) -> Result<File> {
    let obj = object(path);
    if !is_netns(path) {
        return Err(Error::new(
            berth_types::ErrorKind::NotFound,
            obj,
            "not a mounted network namespace",
        ));
    }
    open_ns(path).map_err(|e| Error::io(obj, "open", e))
}

/// Runs `f` inside the network namespace at `path`, on a scoped thread that joins the
/// namespace first; the caller's thread never changes namespace. Sockets `f` opens stay
/// in that namespace. A panic in `f` is propagated.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let ns = open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                .map_err(|e| Error::io(object(path), "enter (setns)", e.into()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs `f` on a new thread inside a FRESH anonymous network namespace (with `lo` up),
/// which disappears when `f` returns and nothing else references it. For tests: they
/// must never change the host's network namespace.
#[doc(hidden)]
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: only CLONE_NEWNET is unshared (no file descriptor table change), on
            // a thread dedicated to `f`.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
                .map_err(|e| Error::io("fresh network namespace", "unshare", e.into()))?;
            crate::link::set_up("lo")?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Removes the namespace even if the test fails half-way.
    struct Guard(PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = remove(&self.0);
        }
    }

    fn netns_inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).expect("stat").ino()
    }

    #[test]
    fn create_run_in_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("netns/c1");
        let _g = Guard(path.clone());
        assert!(!is_netns(&path));
        create(&path).expect("create");
        assert!(is_netns(&path));

        // A second create is refused and keeps the namespace.
        let inode = netns_inode(&path);
        let err = create(&path).expect_err("second create");
        assert_eq!(err.kind, berth_types::ErrorKind::Conflict);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(netns_inode(&path), inode);

        // Inside: another namespace than the caller's, with only lo, and lo up.
        let (inside, links) = run_in(&path, || {
            let ino = fs::metadata("/proc/thread-self/ns/net").map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            });
            let out = std::process::Command::new("ip")
                .args(["-o", "link", "show"])
                .output()
                .expect("ip link");
            (
                ino.expect("stat ns"),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
        .expect("run_in");
        assert_eq!(inside, inode, "run_in entered the namespace at the path");
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(str::trim)
            .collect();
        assert_eq!(names, ["lo"], "{links}");
        assert!(links.contains("UP"), "lo is up: {links}");
        // TCP on loopback works inside.
        run_in(&path, || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let a = l.local_addr().expect("addr");
            std::net::TcpStream::connect(a).expect("connect on lo");
        })
        .expect("run_in");
        // The caller's thread did not move.
        use std::os::unix::fs::MetadataExt;
        let after = fs::metadata("/proc/thread-self/ns/net")
            .expect("stat")
            .ino();
        assert_ne!(after, inode);

        remove(&path).expect("remove");
        assert!(!is_netns(&path));
        assert!(!path.exists(), "file deleted");
        remove(&path).expect("remove is idempotent");
        assert_eq!(
            run_in(&path, || ()).expect_err("run_in gone").kind,
            berth_types::ErrorKind::NotFound
        );

        // Created again after removal.
        create(&path).expect("create again");
        assert!(is_netns(&path));
        remove(&path).expect("remove");
    }

    #[test]
    fn is_netns_rejects_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").expect("write");
        assert!(!is_netns(&plain));
        assert!(!is_netns(dir.path()));
        assert!(!is_netns(&dir.path().join("missing")));
        // A namespace file of another type (uts) is not a network namespace.
        assert!(!is_netns(Path::new("/proc/self/ns/uts")));
        assert!(is_netns(Path::new("/proc/self/ns/net")));

        // A leftover plain file (crash between file creation and mount) is reused by
        // create and deleted by remove.
        create(&plain).expect("create over a plain file");
        let _g = Guard(plain.clone());
        assert!(is_netns(&plain));
        remove(&plain).expect("remove");
        assert!(!plain.exists());
    }

    #[test]
    fn failed_create_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The mount point cannot be created: its parent is a file.
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").expect("write");
        let err = create(&blocker.join("ns")).expect_err("parent is a file");
        assert!(err.to_string().contains("network namespace"), "{err}");
        assert_eq!(fs::read(&blocker).expect("read"), b"x");

        // The mount fails (a directory is not a valid target for a file bind mount):
        // nothing is mounted and the directory is unchanged.
        let d = dir.path().join("dir");
        fs::create_dir(&d).expect("mkdir");
        let err = create(&d).expect_err("directory target");
        assert!(err.to_string().contains("bind mount"), "{err}");
        assert!(!is_netns(&d));
        assert!(d.is_dir());
        let entries: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
    }

    #[test]
    fn fresh_netns_is_fresh_and_lo_is_up() {
        use std::os::unix::fs::MetadataExt;
        let host = fs::metadata("/proc/thread-self/ns/net")
            .expect("stat")
            .ino();
        let (a, b) = (
            in_fresh_netns(|| {
                fs::metadata("/proc/thread-self/ns/net")
                    .expect("stat")
                    .ino()
            })
            .expect("fresh"),
            in_fresh_netns(|| {
                fs::metadata("/proc/thread-self/ns/net")
                    .expect("stat")
                    .ino()
            })
            .expect("fresh"),
        );
        assert_ne!(a, host);
        assert_ne!(b, host);
        assert_ne!(a, b);
        in_fresh_netns(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        })
        .expect("fresh");
    }
}
