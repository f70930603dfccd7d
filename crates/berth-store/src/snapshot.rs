//! Snapshots: each layer unpacked once into `snapshots/<diff_id hex>/`, read-only from
//! then on and shared by every image (and, later, container) whose rootfs contains it;
//! containers stack them as overlayfs lower directories.
//!
//! Lifecycle: [`Snapshots::prepare`] creates an empty staging directory; the caller
//! unpacks into it; after the content is durable, [`PendingSnapshot::publish`] renames it
//! into place (if another operation published the same layer meanwhile, the staged copy
//! is discarded). Dropping a pending snapshot removes its staging directory.

use std::fs;
use std::path::{Path, PathBuf};

use berth_types::Digest;

use crate::error::{Error, Result};
use crate::sys;

pub struct Snapshots {
    dir: PathBuf,
    staging: PathBuf,
    trash: PathBuf,
}

impl Snapshots {
    pub(crate) fn open(dir: &Path, trash: &Path) -> Result<Snapshots> {
        let staging = dir.join(".staging");
        fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, "create", e))?;
        sys::clear_dir(&staging);
        Ok(Snapshots {
            dir: dir.to_path_buf(),
            staging,
            trash: trash.to_path_buf(),
        })
    }

    /// Directory of a committed snapshot (it may not exist).
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    pub fn exists(&self, diff_id: &Digest) -> bool {
        self.path(diff_id).is_dir()
    }

    /// Every committed snapshot.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, "list", e))?;
        Ok(rd
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| Digest::from_hex(n).ok())
            })
            .collect())
    }

    /// A fresh, empty staging directory to unpack a layer into.
    pub fn prepare(&self) -> Result<PendingSnapshot> {
        let path = self.staging.join(sys::random_name("layer-"));
        fs::create_dir(&path).map_err(|e| Error::io(&path, "create staging directory", e))?;
        Ok(PendingSnapshot {
            path: Some(path),
            dir: self.dir.clone(),
        })
    }

    pub(crate) fn trash_snapshot(&self, diff_id: &Digest) -> Result<()> {
        let from = self.path(diff_id);
        let to = self.trash.join(format!("snapshot-{}", diff_id.hex()));
        fs::rename(&from, &to).map_err(|e| Error::io(&from, "move snapshot to trash", e))
    }

    /// fsyncs the snapshots directory so published names survive a crash.
    pub fn sync_dir(&self) -> Result<()> {
        sys::fsync_dir(&self.dir)
    }
}

/// An unpacked layer in staging, not yet visible.
pub struct PendingSnapshot {
    path: Option<PathBuf>,
    dir: PathBuf,
}

impl PendingSnapshot {
    /// The staging directory to unpack into.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// Makes the snapshot visible as the layer `diff_id`; content must be durable already.
    /// Returns false when the layer was already present (the staged copy is discarded).
    pub fn publish(mut self, diff_id: &Digest, lease: &crate::Lease) -> Result<bool> {
        lease.add_snapshot(*diff_id);
        let from = self
            .path
            .take()
            .ok_or_else(|| Error::Corrupt("snapshot published twice".into()))?;
        let to = self.dir.join(diff_id.hex());
        match fs::rename(&from, &to) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                let _ = fs::remove_dir_all(&from);
                Ok(false)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&from);
                Err(Error::io(&to, "publish snapshot", e))
            }
        }
    }
}

impl Drop for PendingSnapshot {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            if let Err(e) = fs::remove_dir_all(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove staging snapshot");
                }
            }
        }
    }
}
