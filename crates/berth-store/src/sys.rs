//! Small filesystem helpers: locking, durable writes, syncfs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) fn lock_exclusive(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, "open lock file", e))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked(path.to_path_buf())),
        Err(e) => Err(Error::io(path, "lock", e.into())),
    }
}

/// fsyncs a directory so renames and creations inside it are durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    let d = File::open(path).map_err(|e| Error::io(path, "open directory", e))?;
    d.sync_all()
        .map_err(|e| Error::io(path, "fsync directory", e))
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
pub(crate) fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, "create", e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io(&tmp, "write", e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename into place", e))?;
    fsync_dir(dir)
}

pub(crate) fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, "open for syncfs", e))?;
    rustix::fs::syncfs(&f).map_err(|e| Error::io(path, "syncfs", e.into()))
}

pub(crate) fn random_name(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}{n:016x}")
}

/// Removes every entry of a directory (for temp dirs after a crash).
pub(crate) fn clear_dir(path: &Path) {
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            let p = entry.path();
            let res = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&p),
                _ => fs::remove_file(&p),
            };
            if let Err(e) = res {
                tracing::warn!(path = %p.display(), error = %e, "could not remove leftover temp entry");
            }
        }
    }
}
