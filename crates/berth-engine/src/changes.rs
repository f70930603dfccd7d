//! `docker diff`: what a container changed in its filesystem, read from its overlay's
//! upper directory against the image's layers.
//!
//! Each entry of the upper directory is a change: a whiteout (char device 0:0) is a
//! deletion (Kind 2); an entry the image's layers have is a modification (Kind 0); any
//! other an addition (Kind 1). A directory the container only passed through (copied up
//! because something below it changed) is reported as modified only when something
//! reported lies below it, as Docker reports it. What berth itself makes in the upper
//! directory for every container — the mount points of `/etc/hosts`, `/etc/hostname`,
//! `/etc/resolv.conf` and of the kernel file systems, which Docker keeps in an init layer
//! below the container's — is not the container's change and is left out.

use std::path::{Path, PathBuf};

use crate::containers::{io_err, ContainerRecord};
use crate::error::Result;
use crate::Engine;

pub use berth_image::diff::{Change, ChangeKind, OwnerShift};

/// Paths Docker keeps in the init layer (never shown by `docker diff`, never committed).
pub(crate) const INIT_LAYER: [&str; 11] = [
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/dev",
    "/proc",
    "/sys",
    "/dev/pts",
    "/dev/shm",
    "/dev/console",
    "/.dockerenv",
];

/// The changes of an upper directory over `lowers` (top layer first), sorted by path.
pub fn upper_changes(
    upper: &Path,
    lowers: &[PathBuf],
    owners: Option<OwnerShift>,
) -> std::io::Result<Vec<Change>> {
    berth_image::diff::upper_changes(upper, lowers, &INIT_LAYER, owners)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// A remapped container's id range: its upper directory holds host ids, which its diff
/// and its commits shift back to the container's.
pub(crate) fn owner_shift(rec: &ContainerRecord) -> Option<OwnerShift> {
    rec.userns.map(|m| OwnerShift {
        uid: m.uid,
        gid: m.gid,
        size: m.size,
    })
}

impl Engine {
    /// `GET /containers/{id}/changes` (see the module docs).
    pub fn container_changes(&self, name: &str) -> Result<Vec<Change>> {
        let rec = self.container(name)?;
        let overlay = self.overlay(&rec);
        let upper = overlay.container_dir.join("upper");
        upper_changes(&upper, &overlay.lower_dirs(), owner_shift(&rec))
            .map_err(|e| io_err(&upper, "read", e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    fn mk(p: &Path) {
        fs::create_dir_all(p).unwrap();
    }

    #[test]
    fn upper_entries_are_added_modified_or_deleted() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        mk(&lower.join("etc"));
        fs::write(lower.join("etc/passwd"), "root").unwrap();
        fs::write(lower.join("etc/gone"), "x").unwrap();
        mk(&lower.join("srv/app"));
        mk(&lower.join("untouched"));
        // The container: modifies /etc/passwd, deletes /etc/gone, adds /srv/app/new and
        // /tmp/x/y; berth made /etc/hosts and /proc.
        mk(&upper.join("etc"));
        fs::write(upper.join("etc/passwd"), "root2").unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        mk(&upper.join("srv/app"));
        fs::write(upper.join("srv/app/new"), "n").unwrap();
        mk(&upper.join("tmp/x"));
        fs::write(upper.join("tmp/x/y"), "y").unwrap();
        mk(&upper.join("proc"));
        let got: Vec<(String, ChangeKind)> = upper_changes(&upper, &[lower], None)
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        use ChangeKind::*;
        assert_eq!(
            got,
            vec![
                ("/etc".to_string(), Modified),
                ("/etc/gone".to_string(), Deleted),
                ("/etc/passwd".to_string(), Modified),
                ("/srv".to_string(), Modified),
                ("/srv/app".to_string(), Modified),
                ("/srv/app/new".to_string(), Added),
                ("/tmp".to_string(), Added),
                ("/tmp/x".to_string(), Added),
                ("/tmp/x/y".to_string(), Added),
            ]
        );
    }

    #[test]
    fn a_fresh_container_has_no_changes() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        mk(&lower.join("etc"));
        mk(&upper.join("etc"));
        for f in ["hosts", "hostname", "resolv.conf"] {
            fs::write(upper.join("etc").join(f), "").unwrap();
        }
        mk(&upper.join("dev"));
        assert!(upper_changes(&upper, &[lower], None).unwrap().is_empty());
    }
}
