//! Publishing what a load, import or pull staged: the one place the store's write
//! protocol is followed for whole images.
//!
//! Order: one `syncfs` makes every staged blob and snapshot durable; each is added to
//! the lease and renamed into place; the directories are fsync'd; then the snapshot
//! records and one metadata transaction per image are committed. A crash before the
//! renames leaves temp files (removed on start); after them, unreferenced objects (removed
//! by the next GC).

use std::collections::HashSet;

use berth_store::{ImageRecord, Lease, PendingBlob, PendingSnapshot, SnapshotRecord, Store};
use berth_types::{Digest, Reference};
use tracing::debug;

use crate::archive::LoadedImage;
use crate::error::Result;
use crate::unpack::UnpackStats;

/// A layer unpacked into staging, to be published under its diff_id.
pub(crate) struct StagedSnapshot {
    pub diff_id: Digest,
    pub tar_size: u64,
    pub snapshot: PendingSnapshot,
    pub stats: UnpackStats,
}

impl StagedSnapshot {
    fn record(&self) -> SnapshotRecord {
        SnapshotRecord {
            diff_id: self.diff_id,
            size: self.stats.content_bytes,
            tar_size: self.tar_size,
            entries: self.stats.entries,
        }
    }

    /// Publishes this snapshot on its own (a pulled layer, so an interrupted pull
    /// keeps it): the caller has made it durable.
    pub(crate) fn publish(self, store: &Store, lease: &Lease) -> Result<()> {
        let rec = self.record();
        self.snapshot.publish(&self.diff_id, lease)?;
        store.snapshots.sync_dir()?;
        store.meta.put_snapshot(&rec)?;
        Ok(())
    }
}

/// Makes `blobs` and `snapshots` durable, publishes them under `lease` and records
/// `images` with their tags. Duplicate blobs are published once.
pub(crate) fn commit_images(
    store: &Store,
    lease: &Lease,
    blobs: Vec<PendingBlob>,
    snapshots: Vec<StagedSnapshot>,
    images: Vec<(ImageRecord, Vec<Reference>)>,
) -> Result<Vec<LoadedImage>> {
    let sync_started = std::time::Instant::now();
    store.sync_all()?;
    debug!(
        duration_ms = sync_started.elapsed().as_millis() as u64,
        "staged objects synced"
    );
    let mut snapshot_records = Vec::new();
    for s in snapshots {
        snapshot_records.push(s.record());
        s.snapshot.publish(&s.diff_id, lease)?;
    }
    let mut published: HashSet<Digest> = HashSet::new();
    for b in blobs {
        if published.insert(b.digest()) {
            b.publish(lease)?;
        }
    }
    store.content.sync_dir()?;
    store.snapshots.sync_dir()?;
    for s in &snapshot_records {
        store.meta.put_snapshot(s)?;
    }
    let mut out = Vec::new();
    for (rec, tags) in images {
        store.meta.put_image(&rec, &tags)?;
        out.push(LoadedImage { id: rec.id, tags });
    }
    Ok(out)
}
