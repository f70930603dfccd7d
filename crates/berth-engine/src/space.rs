//! A reserve of disk space on the state filesystem, for the writes that free space.
//!
//! A container that fills the disk must still be stoppable and removable through berth,
//! and stopping one writes a little (its status: stopped by a user, so no restart policy
//! brings it back; the shim's exit status). The engine keeps `STATE/space.reserve`, a
//! file of [`RESERVE_BYTES`] allocated at open; a write on the stop and remove paths
//! that fails with ENOSPC deletes it and tries once more. It is allocated again once
//! space is back (after a removal, at the next open).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{info, warn};

/// What the reserve holds: room for many small writes (status files, exit records).
pub const RESERVE_BYTES: u64 = 4 << 20;
/// The reserve's file name in the state root.
pub const RESERVE_FILE: &str = "space.reserve";

pub(crate) struct SpaceReserve {
    path: PathBuf,
    lock: Mutex<()>,
}

impl SpaceReserve {
    pub(crate) fn new(root: &Path) -> SpaceReserve {
        SpaceReserve {
            path: root.join(RESERVE_FILE),
            lock: Mutex::new(()),
        }
    }

    /// Allocates the reserve if it is not there (best effort: on a full disk it waits
    /// for the next call).
    pub(crate) fn ensure(&self) {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fs::metadata(&self.path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return;
        }
        let tmp = self.path.with_extension("tmp");
        let made = (|| -> std::io::Result<()> {
            let f = fs::File::create(&tmp)?;
            // Blocks really allocated (a sparse file would reserve nothing).
            rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = made {
            let _ = fs::remove_file(&tmp);
            warn!(path = %self.path.display(), error = %e, "disk space reserve not allocated");
        }
    }

    /// The reserve is allocated (false after a full disk made berth free it, until
    /// [`SpaceReserve::ensure`] could take it again).
    pub(crate) fn is_held(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| m.len() == RESERVE_BYTES)
    }

    /// Frees the reserve; true if there was one to free.
    pub(crate) fn release(&self) -> bool {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match fs::remove_file(&self.path) {
            Ok(()) => {
                warn!(path = %self.path.display(), bytes = RESERVE_BYTES, "state filesystem full: disk space reserve released");
                true
            }
            Err(_) => false,
        }
    }

    /// Runs `f`; if it fails for want of space, frees the reserve and runs it once more.
    pub(crate) fn retry_on_full<T>(
        &self,
        mut f: impl FnMut() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match f() {
            Err(e) if is_no_space(&e) && self.release() => {
                info!("retrying a write with the released space reserve");
                f()
            }
            r => r,
        }
    }
}

pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_allocated_released_and_a_full_write_retried() {
        let d = tempfile::tempdir().unwrap();
        let r = SpaceReserve::new(d.path());
        r.ensure();
        let p = d.path().join(RESERVE_FILE);
        assert_eq!(fs::metadata(&p).unwrap().len(), RESERVE_BYTES);
        let mut calls = 0;
        let out = r.retry_on_full(|| {
            calls += 1;
            if calls == 1 {
                Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
            } else {
                Ok(7)
            }
        });
        assert_eq!(out.unwrap(), 7);
        assert!(!p.exists(), "released for the retry");
        // No reserve left: the error is the caller's.
        let e = r.retry_on_full(|| -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        });
        assert!(is_no_space(&e.unwrap_err()));
        r.ensure();
        assert!(p.exists());
    }
}
