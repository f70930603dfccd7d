//! A container's cgroup in the hierarchies libcgroups does not manage.
//!
//! On a cgroup v1 host libcgroups creates the container's cgroup (`/berth/<id>`) in each
//! controller's hierarchy, but not in the named ones (`name=systemd`) nor, in hybrid mode,
//! in the cgroup2 tree: there the container would stay where its supervisor is, usually
//! the host's root cgroup, and a container that gets at that hierarchy (a privileged one
//! mounting it) would sit at the host's root, next to `release_agent`. runc places a
//! container in every hierarchy; so does berth: the driver moves itself into the
//! container's cgroup of each of these hierarchies ([`join`]) before libcontainer forks
//! the container's init (or an exec'd process), which inherits it; the cgroup namespace
//! libcontainer then makes is rooted there. [`remove`] takes them away once the container
//! has exited (the driver's delete, and the engine's release of what a crash left).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::host::{unmanaged_hierarchies, CGROUP_ROOT};

/// The host's unmanaged hierarchies, from this process's mountinfo.
pub fn hierarchies() -> Vec<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    unmanaged_hierarchies(Path::new(CGROUP_ROOT), &mi)
}

/// Every hierarchy a container has a cgroup in: on v1 each controller's mount point and
/// the unmanaged ones, on v2 the one tree. For cleaning up after a process that may have
/// made the container's cgroups again ([`remove`]).
pub fn all_hierarchies() -> Vec<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = Path::new(CGROUP_ROOT);
    let mut out: Vec<PathBuf> = crate::host::v1_mounts(&mi).into_values().collect();
    if out.is_empty() {
        out.push(root.to_path_buf());
    }
    out.extend(unmanaged_hierarchies(root, &mi));
    out.sort();
    out.dedup();
    out
}

/// The container's directory in the hierarchy mounted at `mount`.
fn dir_in(mount: &Path, cgroups_path: &Path) -> PathBuf {
    mount.join(cgroups_path.strip_prefix("/").unwrap_or(cgroups_path))
}

/// Moves the calling process into `cgroups_path` (`/berth/<id>`) of each hierarchy in
/// `mounts`, creating it. Returns what could not be done, one message per hierarchy (a
/// read-only or foreign hierarchy): the caller reports it; the container then stays in
/// its supervisor's cgroup there, as before.
pub fn join(mounts: &[PathBuf], cgroups_path: &Path) -> Vec<String> {
    let pid = std::process::id().to_string();
    let mut failed = Vec::new();
    for m in mounts {
        let dir = dir_in(m, cgroups_path);
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&procs, &pid)) {
            failed.push(format!("{}: {e}", procs.display()));
        }
    }
    failed
}

/// Moves the calling process into `cgroups_path` of each hierarchy in `mounts` where the
/// container has it; never creates one (for a process joining a running container: a
/// container that is gone must not get its cgroups back). Returns what failed.
pub fn join_existing(mounts: &[PathBuf], cgroups_path: &Path) -> Vec<String> {
    let pid = std::process::id().to_string();
    let mut failed = Vec::new();
    for m in mounts {
        let procs = dir_in(m, cgroups_path).join("cgroup.procs");
        match std::fs::OpenOptions::new().write(true).open(&procs) {
            Ok(mut f) => {
                use std::io::Write;
                if let Err(e) = f.write_all(pid.as_bytes()) {
                    failed.push(format!("{}: {e}", procs.display()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: {e}", procs.display())),
        }
    }
    failed
}

/// Removes `cgroups_path` from each hierarchy in `mounts` once it holds no process,
/// waiting up to `timeout` per hierarchy for the last ones to leave (they are reaped
/// after the container's init). True when none is left.
pub fn remove(mounts: &[PathBuf], cgroups_path: &Path, timeout: Duration) -> bool {
    let mut clean = true;
    for m in mounts {
        let dir = dir_in(m, cgroups_path);
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_dir_is_below_the_mount() {
        assert_eq!(
            dir_in(Path::new("/sys/fs/cgroup/systemd"), Path::new("/berth/abc")),
            Path::new("/sys/fs/cgroup/systemd/berth/abc")
        );
    }

    #[test]
    fn join_reports_what_it_cannot_do_and_remove_takes_plain_dirs() {
        // A plain directory tree stands in for a hierarchy: join creates the cgroup and
        // writes cgroup.procs (a regular file here), remove cannot rmdir a non-empty
        // directory (a real cgroup's files do not count) and says so.
        let t = tempfile::tempdir().unwrap();
        let mounts = vec![t.path().join("named")];
        assert!(join(&mounts, Path::new("/berth/x")).is_empty());
        let procs = t.path().join("named/berth/x/cgroup.procs");
        assert_eq!(
            std::fs::read_to_string(&procs).unwrap(),
            std::process::id().to_string()
        );
        assert!(!remove(&mounts, Path::new("/berth/x"), Duration::ZERO));
        std::fs::remove_file(&procs).unwrap();
        assert!(remove(&mounts, Path::new("/berth/x"), Duration::ZERO));
        assert!(
            remove(&mounts, Path::new("/berth/x"), Duration::ZERO),
            "gone is fine"
        );
        let missing = vec![PathBuf::from("/proc/nonexistent-hierarchy")];
        assert_eq!(join(&missing, Path::new("/berth/x")).len(), 1);
    }
}
