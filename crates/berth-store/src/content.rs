//! The content store: immutable blobs addressed by their sha256 digest.
//!
//! Lifecycle of a blob: [`ContentStore::writer`] opens a temp file in `ingest/`; bytes are
//! hashed as they are written; [`BlobWriter::finish`] checks the digest against the
//! expected one and returns a [`PendingBlob`]; once the caller made it durable (per blob
//! with [`PendingBlob::sync`] or for a batch with `Store::sync_all`) and took a lease on
//! it, [`PendingBlob::publish`] renames it into `blobs/sha256/<hex>`. Two writers of the
//! same blob are safe: the content is identical, so the second rename simply replaces
//! the first file with the same bytes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_types::{Digest, Sha256Writer};

use crate::error::{Error, Result};
use crate::sys;

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    trash: PathBuf,
}

impl ContentStore {
    pub(crate) fn open(dir: &Path, trash: &Path) -> Result<ContentStore> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).map_err(|e| Error::io(d, "create", e))?;
        }
        sys::clear_dir(&ingest);
        Ok(ContentStore {
            blobs,
            ingest,
            trash: trash.to_path_buf(),
        })
    }

    /// Path of a committed blob (it may not exist).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size in bytes of a committed blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound(*digest)),
            Err(e) => Err(Error::io(&self.path(digest), "stat blob", e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound(*digest)),
            Err(e) => Err(Error::io(&self.path(digest), "open blob", e)),
        }
    }

    /// Reads a whole blob into memory, refusing blobs larger than `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > limit {
            return Err(Error::Corrupt(format!(
                "blob {digest} is {size} bytes, more than the {limit} bytes allowed for this kind of blob"
            )));
        }
        fs::read(self.path(digest)).map_err(|e| Error::io(&self.path(digest), "read blob", e))
    }

    /// Every committed blob digest (names that are not digests are ignored).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = fs::read_dir(&self.blobs).map_err(|e| Error::io(&self.blobs, "list", e))?;
        Ok(rd
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| Digest::from_hex(n).ok())
            })
            .collect())
    }

    /// Starts writing a new blob.
    pub fn writer(&self) -> Result<BlobWriter> {
        let path = self.ingest.join(sys::random_name("blob-"));
        let file = File::create(&path).map_err(|e| Error::io(&path, "create ingest file", e))?;
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256Writer::new(),
            path: Some(path),
            blobs: self.blobs.clone(),
        })
    }

    /// Writes a small blob in one call and publishes it durably (fsync per blob).
    pub fn put_durable(&self, data: &[u8], lease: &crate::Lease) -> Result<Digest> {
        let mut w = self.writer()?;
        w.write_all(data)
            .map_err(|e| Error::io(&self.ingest, "write blob", e))?;
        let pending = w.finish(None)?;
        pending.sync()?;
        let digest = pending.digest();
        pending.publish(lease)?;
        Ok(digest)
    }

    /// Moves a blob to the trash (GC). The caller holds the lease lock.
    pub(crate) fn trash_blob(&self, digest: &Digest) -> Result<u64> {
        let from = self.path(digest);
        let size = fs::symlink_metadata(&from).map(|m| m.len()).unwrap_or(0);
        let to = self.trash.join(format!("blob-{}", digest.hex()));
        fs::rename(&from, &to).map_err(|e| Error::io(&from, "move blob to trash", e))?;
        Ok(size)
    }

    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.blobs
    }
}

/// A blob being written; dropping it without [`finish`](Self::finish) removes the temp file.
pub struct BlobWriter {
    file: io::BufWriter<File>,
    hasher: Sha256Writer,
    path: Option<PathBuf>,
    blobs: PathBuf,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Digest of what was written so far.
    pub fn digest_so_far(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Flushes and verifies the content. With `expected`, a different digest is an error
    /// and the temp file is removed.
    pub fn finish(mut self, expected: Option<&Digest>) -> Result<PendingBlob> {
        let path = self
            .path
            .take()
            .ok_or_else(|| Error::Corrupt("blob writer reused".into()))?;
        self.file
            .flush()
            .map_err(|e| Error::io(&path, "write blob", e))?;
        let size = self.hasher.len();
        let digest = std::mem::take(&mut self.hasher).finish();
        let pending = PendingBlob {
            path: Some(path),
            digest,
            size,
            blobs: self.blobs.clone(),
        };
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(Error::DigestMismatch {
                    expected: *exp,
                    actual: digest,
                    size,
                });
            }
        }
        Ok(pending)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A verified blob in `ingest/`, not yet visible. Dropping it removes the temp file.
pub struct PendingBlob {
    path: Option<PathBuf>,
    digest: Digest,
    size: u64,
    blobs: PathBuf,
}

impl PendingBlob {
    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The temp file (for reading back before publishing).
    pub fn temp_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// fsyncs the temp file (when not syncing the whole filesystem for a batch).
    pub fn sync(&self) -> Result<()> {
        if let Some(p) = &self.path {
            let f = File::open(p).map_err(|e| Error::io(p, "open ingest file", e))?;
            f.sync_all().map_err(|e| Error::io(p, "fsync blob", e))?;
        }
        Ok(())
    }

    /// Makes the blob visible under its digest. The caller must already have made the
    /// content durable. The blob is added to `lease` before it becomes visible, so GC
    /// cannot collect it before the metadata referencing it is committed. The directory
    /// entry is made durable by [`ContentStore::sync_dir`] or a later `syncfs`.
    pub fn publish(mut self, lease: &crate::Lease) -> Result<Digest> {
        lease.add_blob(self.digest);
        let from = self
            .path
            .take()
            .ok_or_else(|| Error::Corrupt("blob published twice".into()))?;
        let to = self.blobs.join(self.digest.hex());
        fs::rename(&from, &to).map_err(|e| Error::io(&to, "publish blob", e))?;
        Ok(self.digest)
    }
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl ContentStore {
    /// fsyncs the blobs directory so published names survive a crash.
    pub fn sync_dir(&self) -> Result<()> {
        sys::fsync_dir(&self.blobs)
    }
}
