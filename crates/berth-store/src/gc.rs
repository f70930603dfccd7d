//! Mark-and-sweep garbage collection of blobs and snapshots.
//!
//! Roots: every stored image (its config, manifest, index, extra blobs, layer blobs and
//! layer snapshots), every object held by a live lease, and the extra roots the caller
//! passes (containers' layers, later). Unmarked objects are moved to `trash/` while the
//! lease lock is held (a rename: fast), and deleted after it is released.

use std::collections::HashSet;

use berth_types::Digest;

use crate::error::Result;
use crate::Store;

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: Vec<Digest>,
    pub snapshots_removed: Vec<Digest>,
    /// Bytes of blobs and snapshot content freed.
    pub bytes_freed: u64,
}

/// Extra roots from outside the image table.
#[derive(Debug, Default, Clone)]
pub struct ExtraRoots {
    pub blobs: HashSet<Digest>,
    pub snapshots: HashSet<Digest>,
}

impl Store {
    /// Removes every blob and snapshot that no image, lease or extra root references.
    pub fn gc(&self, extra: &ExtraRoots) -> Result<GcReport> {
        self.gc_with_roots(|| Ok(extra.clone()))
    }

    /// Like [`gc`](Self::gc), with the extra roots computed by `roots` while the lease
    /// lock is held. A user of the store whose own metadata references blobs (the
    /// registry's repositories) commits that metadata while holding a lease on what it
    /// references; computing the roots under the lock means GC sees either the lease or
    /// the committed metadata, never neither. `roots` must not take a lease (the lock is
    /// held while it runs).
    pub fn gc_with_roots(&self, roots: impl FnOnce() -> Result<ExtraRoots>) -> Result<GcReport> {
        let mut report = GcReport::default();
        {
            let hold = self.leases.hold_for_gc();
            let extra = roots()?;
            let mut blobs: HashSet<Digest> = extra.blobs;
            let mut snaps: HashSet<Digest> = extra.snapshots;
            blobs.extend(hold.blobs.iter().copied());
            snaps.extend(hold.snapshots.iter().copied());
            for img in self.meta.images()? {
                blobs.insert(img.config.digest);
                blobs.extend(img.manifest.iter().map(|b| b.digest));
                blobs.extend(img.index.iter().map(|b| b.digest));
                blobs.extend(img.extra_blobs.iter().map(|b| b.digest));
                for l in &img.layers {
                    blobs.insert(l.blob.digest);
                    snaps.insert(l.diff_id);
                }
            }
            for d in self.content.list()? {
                if !blobs.contains(&d) {
                    report.bytes_freed += self.content.trash_blob(&d)?;
                    report.blobs_removed.push(d);
                }
            }
            for d in self.snapshots.list()? {
                if !snaps.contains(&d) {
                    if let Some(rec) = self.meta.snapshot(&d)? {
                        report.bytes_freed += rec.size;
                    }
                    self.snapshots.trash_snapshot(&d)?;
                    self.meta.delete_snapshot(&d)?;
                    report.snapshots_removed.push(d);
                }
            }
            // Snapshot records whose directory is gone (crash between rename and record).
            for rec in self.meta.snapshots()? {
                if !snaps.contains(&rec.diff_id) && !self.snapshots.exists(&rec.diff_id) {
                    self.meta.delete_snapshot(&rec.diff_id)?;
                }
            }
        }
        if !report.blobs_removed.is_empty() || !report.snapshots_removed.is_empty() {
            crate::sys::fsync_dir(self.content.blobs_dir())?;
            self.snapshots.sync_dir()?;
        }
        self.empty_trash();
        Ok(report)
    }
}
