//! berth's on-disk state under one root directory:
//!
//! ```text
//! ROOT/
//!   berth.lock            flock held by the one daemon using this root
//!   layout.json           {"layout_version": 1}
//!   meta.redb             metadata database (images, tags, snapshots), schema-versioned
//!   content/blobs/sha256/ blobs by digest, visible only once verified and durable
//!   content/ingest/       blobs being written (removed on start)
//!   snapshots/<hex>/      one unpacked layer per diff_id, shared by every image using it
//!   snapshots/.staging/   layers being unpacked (removed on start)
//!   trash/                objects collected by GC, deleted in the background
//! ```
//!
//! Write protocol for anything new: write into `ingest`/`.staging`, verify the digest,
//! make it durable (`syncfs` once for a whole batch, or `fsync` per file), take a lease on
//! it, rename it into place, `fsync` the parent directory, then commit the metadata that
//! references it. A crash at any step leaves either a temp file (removed on start) or an
//! unreferenced object (removed by the next GC).

pub mod content;
pub mod error;
pub mod gc;
pub mod lease;
pub mod meta;
pub mod snapshot;
mod sys;

use std::fs;
use std::path::{Path, PathBuf};

pub use content::{BlobWriter, ContentStore, PendingBlob};
pub use error::{Error, Result};
pub use gc::{ExtraRoots, GcReport};
pub use lease::{Lease, Leases};
pub use meta::{
    BlobRef, DocChange, ImageRecord, LayerRecord, MetaDb, SnapshotRecord, SCHEMA_VERSION,
};
pub use snapshot::{PendingSnapshot, Snapshots};

/// The version of the directory layout; bumped when files move.
pub const LAYOUT_VERSION: u32 = 1;

/// The whole on-disk state: content store, snapshots, metadata and leases.
pub struct Store {
    root: PathBuf,
    _lock: fs::File,
    pub content: ContentStore,
    pub snapshots: Snapshots,
    /// Shared with the services' store (`berth-services`), which keeps its documents here.
    pub meta: std::sync::Arc<MetaDb>,
    pub leases: Leases,
}

/// Stops the background writeback started by [`Store::background_writeback`] on drop.
pub struct Writeback {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writeback {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Layout {
    layout_version: u32,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, takes its exclusive lock, checks the
    /// layout and schema versions and removes what a crash left half-written.
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, "create state root", e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(root, "resolve state root", e))?;
        let lock = sys::lock_exclusive(&root.join("berth.lock"))?;
        let layout_path = root.join("layout.json");
        match fs::read(&layout_path) {
            Ok(bytes) => {
                let layout: Layout = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", layout_path.display())))?;
                if layout.layout_version != LAYOUT_VERSION {
                    return Err(Error::Version {
                        what: "directory layout",
                        found: layout.layout_version,
                        supported: LAYOUT_VERSION,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = serde_json::to_vec(&Layout {
                    layout_version: LAYOUT_VERSION,
                })
                .map_err(|e| Error::Corrupt(e.to_string()))?;
                sys::write_durable(&layout_path, &bytes)?;
            }
            Err(e) => return Err(Error::io(&layout_path, "read layout version", e)),
        }
        let trash = root.join("trash");
        fs::create_dir_all(&trash).map_err(|e| Error::io(&trash, "create", e))?;
        let content = ContentStore::open(&root.join("content"), &trash)?;
        let snapshots = Snapshots::open(&root.join("snapshots"), &trash)?;
        let meta = std::sync::Arc::new(MetaDb::open(&root.join("meta.redb"))?);
        let store = Store {
            root,
            _lock: lock,
            content,
            snapshots,
            meta,
            leases: Leases::default(),
        };
        store.empty_trash();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes everything written so far on the store's filesystem durable (one `syncfs`).
    pub fn sync_all(&self) -> Result<()> {
        sys::syncfs(&self.root)
    }

    /// Starts a background writeback of the store's filesystem that runs until the
    /// returned guard is dropped: long writes (a load) then overlap with the disk writing
    /// them back, and the final [`sync_all`](Self::sync_all) has little left to wait for.
    /// It only starts writeback early; durability still comes from `sync_all`.
    pub fn background_writeback(&self) -> Writeback {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let root = self.root.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("berth-writeback".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    let (guard, _) = cvar
                        .wait_timeout(stopped, std::time::Duration::from_millis(250))
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    if let Err(e) = sys::syncfs(&root) {
                        tracing::debug!(error = %e, "background writeback failed");
                    }
                    stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                }
            })
            .ok();
        Writeback { stop, thread }
    }

    /// Deletes what GC moved to the trash. Safe to call at any time.
    pub fn empty_trash(&self) {
        let trash = self.root.join("trash");
        if let Ok(entries) = fs::read_dir(&trash) {
            for entry in entries.flatten() {
                let p = entry.path();
                let res = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                if let Err(e) = res {
                    tracing::warn!(path = %p.display(), error = %e, "could not empty trash entry");
                }
            }
        }
    }
}
