//! The metadata database (redb: embedded, ACID, crash-safe). Records are JSON values in
//! typed tables; the schema version lives in the `meta` table and is checked on open.
//!
//! Tables (schema version 1):
//! - `meta`: `"schema_version"` -> `"1"`
//! - `images`: image ID (`sha256:…`, the config digest) -> [`ImageRecord`]
//! - `tags`: normalized reference (`docker.io/library/busybox:latest`) -> image ID
//! - `snapshots`: layer diff_id -> [`SnapshotRecord`]

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use berth_types::{Digest, Reference};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");

/// A descriptor of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// One layer of an image: the stored blob (possibly compressed) and its diff_id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub blob: BlobRef,
    pub diff_id: Digest,
}

/// An image as berth knows it. The image ID is the digest of its config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    pub config: BlobRef,
    /// The image manifest, when the image came with one (OCI archive, registry).
    pub manifest: Option<BlobRef>,
    /// The index the manifest was chosen from, kept for save and push.
    pub index: Option<BlobRef>,
    pub layers: Vec<LayerRecord>,
    /// Other blobs kept with the image: manifests of other platforms of its index and
    /// their configs and layers, when the archive carried them (for save and push).
    #[serde(default)]
    pub extra_blobs: Vec<BlobRef>,
    /// `repo@sha256:…` references by manifest digest.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// When berth stored the image (RFC 3339).
    pub stored_at: String,
    /// How it arrived: `docker-archive`, `oci-archive`, `import`, `pull`.
    pub source: String,
}

/// An unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub diff_id: Digest,
    /// Bytes of file content in the snapshot.
    pub size: u64,
    /// Bytes of the uncompressed layer tar.
    pub tar_size: u64,
    pub entries: u64,
}

/// The database and how to open it again. redb refuses every call after one I/O error
/// ("Previous I/O error occurred. Please close and re-open the database."): one full disk
/// would make every later call fail, reads included, until the daemon restarts. So a
/// call that meets that state reopens the file (the last committed state: a failed
/// commit changed nothing) and runs again; the call that met the I/O error fails alone.
pub struct MetaDb {
    path: PathBuf,
    db: RwLock<Option<Database>>,
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what} record {key}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupt(e.to_string()))
}

impl MetaDb {
    pub fn open(path: &Path) -> Result<MetaDb> {
        let db = Self::open_db(path)?;
        Ok(MetaDb {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
        })
    }

    /// Runs `f` on the database; reopens it and runs `f` again when redb says an earlier
    /// I/O error poisoned it. After an I/O error of its own, the handle is reopened for
    /// the next call.
    fn run<T>(&self, f: impl Fn(&Database) -> Result<T>) -> Result<T> {
        let attempt = || -> Result<T> {
            let g = self
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match g.as_ref() {
                Some(db) => f(db),
                None => Err(Error::DbPoisoned(
                    "the database is closed after an I/O error".into(),
                )),
            }
        };
        match attempt() {
            Err(Error::DbPoisoned(_)) => {
                self.reopen()?;
                attempt()
            }
            Err(e @ Error::DbIo(_)) => {
                // This call failed (nothing of it was committed); the next one gets a
                // fresh handle, and an error if the file cannot be opened yet.
                let _ = self.reopen();
                Err(e)
            }
            r => r,
        }
    }

    fn reopen(&self) -> Result<()> {
        let mut g = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // redb allows one handle per file: the old one goes first.
        drop(g.take());
        *g = Some(Self::open_db(&self.path)?);
        Ok(())
    }

    fn open_db(path: &Path) -> Result<Database> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value().to_string());
            match found {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_string().as_str())?;
                }
                Some(v) => {
                    let n: u32 = v.parse().map_err(|_| {
                        Error::Corrupt(format!("schema_version {v:?} is not a number"))
                    })?;
                    if n != SCHEMA_VERSION {
                        return Err(Error::Version {
                            what: "metadata schema",
                            found: n,
                            supported: SCHEMA_VERSION,
                        });
                    }
                }
            }
            txn.open_table(IMAGES)?;
            txn.open_table(TAGS)?;
            txn.open_table(SNAPSHOTS)?;
        }
        txn.commit()?;
        Ok(db)
    }

    /// Stores an image and points `tags` at it, in one transaction.
    /// Returns the image IDs the tags pointed at before (which may now be dangling).
    pub fn put_image(&self, rec: &ImageRecord, tags: &[Reference]) -> Result<Vec<Digest>> {
        self.run(|db| {
            let txn = db.begin_write()?;
            let mut previous = Vec::new();
            {
                let mut images = txn.open_table(IMAGES)?;
                let id = rec.id.to_string();
                // Keep repo digests learned earlier (a re-load must not forget them).
                let mut rec = rec.clone();
                if let Some(old) = images.get(id.as_str())? {
                    let old: ImageRecord = decode("image", &id, old.value())?;
                    for d in old.repo_digests {
                        if !rec.repo_digests.contains(&d) {
                            rec.repo_digests.push(d);
                        }
                    }
                    if rec.manifest.is_none() {
                        rec.manifest = old.manifest;
                        rec.index = rec.index.or(old.index);
                    }
                }
                images.insert(id.as_str(), encode(&rec)?.as_slice())?;
                let mut tag_table = txn.open_table(TAGS)?;
                for t in tags {
                    let key = t.to_string();
                    if let Some(old) = tag_table.insert(key.as_str(), id.as_str())? {
                        if old.value() != id {
                            if let Ok(d) = old.value().parse() {
                                previous.push(d);
                            }
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(previous)
        })
    }

    pub fn put_snapshot(&self, rec: &SnapshotRecord) -> Result<()> {
        self.run(|db| {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(SNAPSHOTS)?;
                t.insert(rec.diff_id.to_string().as_str(), encode(rec)?.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    pub fn snapshot(&self, diff_id: &Digest) -> Result<Option<SnapshotRecord>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(SNAPSHOTS)?;
            let key = diff_id.to_string();
            match t.get(key.as_str())? {
                Some(v) => Ok(Some(decode("snapshot", &key, v.value())?)),
                None => Ok(None),
            }
        })
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(SNAPSHOTS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push(decode("snapshot", k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    pub fn delete_snapshot(&self, diff_id: &Digest) -> Result<()> {
        self.run(|db| {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(SNAPSHOTS)?;
                t.remove(diff_id.to_string().as_str())?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(IMAGES)?;
            let key = id.to_string();
            match t.get(key.as_str())? {
                Some(v) => Ok(Some(decode("image", &key, v.value())?)),
                None => Ok(None),
            }
        })
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(IMAGES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push(decode("image", k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Every tag with the image it points at.
    pub fn tags(&self) -> Result<Vec<(Reference, Digest)>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(TAGS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let r = Reference::parse(k.value())
                    .map_err(|e| Error::Corrupt(format!("tag {}: {e}", k.value())))?;
                let d = v
                    .value()
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("tag {}: {e}", k.value())))?;
                out.push((r, d));
            }
            Ok(out)
        })
    }

    pub fn resolve_tag(&self, r: &Reference) -> Result<Option<Digest>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(TAGS)?;
            let key = r.to_string();
            match t.get(key.as_str())? {
                Some(v) => Ok(Some(
                    v.value()
                        .parse()
                        .map_err(|e| Error::Corrupt(format!("tag {key}: {e}")))?,
                )),
                None => Ok(None),
            }
        })
    }

    /// Points `tag` at `id`; returns the image it pointed at before, if another.
    pub fn set_tag(&self, tag: &Reference, id: &Digest) -> Result<Option<Digest>> {
        self.run(|db| {
            let txn = db.begin_write()?;
            let prev;
            {
                let images = txn.open_table(IMAGES)?;
                if images.get(id.to_string().as_str())?.is_none() {
                    return Err(Error::Corrupt(format!(
                        "tag {tag}: image {id} is not stored"
                    )));
                }
                let mut t = txn.open_table(TAGS)?;
                prev = t
                    .insert(tag.to_string().as_str(), id.to_string().as_str())?
                    .and_then(|v| v.value().parse::<Digest>().ok())
                    .filter(|d| d != id);
            }
            txn.commit()?;
            Ok(prev)
        })
    }

    /// Removes a tag; returns the image it pointed at.
    pub fn remove_tag(&self, tag: &Reference) -> Result<Option<Digest>> {
        self.run(|db| {
            let txn = db.begin_write()?;
            let prev;
            {
                let mut t = txn.open_table(TAGS)?;
                prev = t
                    .remove(tag.to_string().as_str())?
                    .and_then(|v| v.value().parse().ok());
            }
            txn.commit()?;
            Ok(prev)
        })
    }

    /// Removes an image and every tag pointing at it; returns the removed tags.
    pub fn delete_image(&self, id: &Digest) -> Result<Vec<Reference>> {
        self.run(|db| {
            let txn = db.begin_write()?;
            let mut removed = Vec::new();
            {
                let mut t = txn.open_table(TAGS)?;
                let idk = id.to_string();
                let keys: Vec<String> = t
                    .iter()?
                    .filter_map(|row| row.ok())
                    .filter(|(_, v)| v.value() == idk)
                    .map(|(k, _)| k.value().to_string())
                    .collect();
                for k in keys {
                    t.remove(k.as_str())?;
                    if let Ok(r) = Reference::parse(&k) {
                        removed.push(r);
                    }
                }
                let mut images = txn.open_table(IMAGES)?;
                images.remove(idk.as_str())?;
            }
            txn.commit()?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(n: u32, pad: usize) -> ImageRecord {
        let d = |s: &str| Digest::of(format!("{s}{n}").as_bytes());
        ImageRecord {
            id: d("config"),
            config: BlobRef {
                digest: d("config"),
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                size: 1,
            },
            manifest: None,
            index: None,
            layers: Vec::new(),
            extra_blobs: Vec::new(),
            repo_digests: Vec::new(),
            stored_at: "2026-12-04T00:00:00Z".into(),
            // Padding, so a few records need pages the full filesystem cannot give.
            source: "x".repeat(pad),
        }
    }

    /// A tmpfs of `size` at a new temp directory (unmounted on drop); `None` when this
    /// process may not mount (not root).
    struct SmallFs(tempfile::TempDir);
    impl SmallFs {
        fn new(size: &str) -> Option<SmallFs> {
            let dir = tempfile::tempdir().unwrap();
            let st = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .ok()?;
            st.success().then_some(SmallFs(dir))
        }
    }
    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    /// One ENOSPC fails the write that met it and nothing else: reads go on while the
    /// disk is full, the failed write left nothing behind, and writes work again once
    /// there is space (redb alone refuses every call after an I/O error).
    #[test]
    fn a_full_disk_fails_one_write_and_reads_go_on() {
        let Some(fs) = SmallFs::new("2m") else {
            eprintln!("cannot mount a tmpfs (not root?); skipping");
            return;
        };
        let db = MetaDb::open(&fs.0.path().join("meta.redb")).unwrap();
        let kept = record(0, 100);
        db.put_image(&kept, &[]).unwrap();
        // Fill the filesystem.
        let filler = fs.0.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        drop(f);
        let mut failed = None;
        for n in 1..200 {
            if let Err(e) = db.put_image(&record(n, 64 * 1024), &[]) {
                failed = Some((n, e));
                break;
            }
        }
        let (n, e) = failed.expect("a write fails on a full filesystem");
        assert!(e.is_no_space(), "{e}");
        // Reads work, and see what was committed before, not the failed write.
        let images = db.images().unwrap();
        assert!(images.contains(&kept), "{images:?}");
        assert!(db.image(&record(n, 0).id).unwrap().is_none());
        assert!(db.image(&kept.id).unwrap().is_some());
        // Space again: writes work without reopening anything by hand.
        std::fs::remove_file(&filler).unwrap();
        db.put_image(&record(n, 100), &[]).unwrap();
        assert!(db.image(&record(n, 0).id).unwrap().is_some());
    }
}
