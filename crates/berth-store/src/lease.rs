//! Leases protect objects an in-flight operation (load, import, pull) has written or will
//! use, from the moment before they become visible until the metadata that references
//! them is committed. GC holds the lease lock for its whole mark-and-move phase, and an
//! object is added to a lease (which takes the same lock) before it is published, so GC
//! either sees the lease or runs entirely before the object exists.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_types::Digest;

#[derive(Default)]
struct LeaseSet {
    next_id: u64,
    leases: HashMap<u64, Held>,
}

#[derive(Default)]
struct Held {
    blobs: HashSet<Digest>,
    snapshots: HashSet<Digest>,
}

/// All leases of one store.
#[derive(Clone, Default)]
pub struct Leases {
    inner: Arc<Mutex<LeaseSet>>,
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, LeaseSet> {
        // A panic while holding the lock leaves plain sets behind; they stay consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a lease; everything added to it is protected until it is dropped.
    pub fn acquire(&self) -> Lease {
        let mut set = self.lock();
        set.next_id += 1;
        let id = set.next_id;
        set.leases.insert(id, Held::default());
        Lease {
            leases: self.clone(),
            id,
        }
    }

    /// Number of live leases.
    pub fn count(&self) -> usize {
        self.lock().leases.len()
    }

    /// Locks the lease set for GC and returns the union of what is leased.
    pub(crate) fn hold_for_gc(&self) -> GcHold<'_> {
        let guard = self.lock();
        let mut blobs = HashSet::new();
        let mut snapshots = HashSet::new();
        for h in guard.leases.values() {
            blobs.extend(h.blobs.iter().copied());
            snapshots.extend(h.snapshots.iter().copied());
        }
        GcHold {
            _guard: guard,
            blobs,
            snapshots,
        }
    }
}

pub(crate) struct GcHold<'a> {
    _guard: MutexGuard<'a, LeaseSet>,
    pub blobs: HashSet<Digest>,
    pub snapshots: HashSet<Digest>,
}

/// One in-flight operation's lease; released on drop.
pub struct Lease {
    leases: Leases,
    id: u64,
}

impl Lease {
    pub fn add_blob(&self, digest: Digest) {
        if let Some(h) = self.leases.lock().leases.get_mut(&self.id) {
            h.blobs.insert(digest);
        }
    }

    /// Protects the snapshot of the layer with this diff_id.
    pub fn add_snapshot(&self, diff_id: Digest) {
        if let Some(h) = self.leases.lock().leases.get_mut(&self.id) {
            h.snapshots.insert(diff_id);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leases.lock().leases.remove(&self.id);
    }
}
