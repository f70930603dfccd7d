//! The metadata database (redb: embedded, ACID, crash-safe). Records are JSON values in
//! typed tables; the schema version lives in the `meta` table and is checked on open.
//!
//! Tables (schema version 1):
//! - `meta`: `"schema_version"` -> `"1"`; `"last_write"` -> a random token each write
//!   transaction sets, so a commit that reported an I/O error can be checked (did it land?)
//! - `images`: image ID (`sha256:…`, the config digest) -> [`ImageRecord`]
//! - `tags`: normalized reference (`docker.io/library/busybox:latest`) -> image ID
//! - `snapshots`: layer diff_id -> [`SnapshotRecord`]
//! - `docs`: `KIND/KEY` -> a JSON document of a domain crate that keeps its records here
//!   (berth-services: `service/ID`, `task/ID`); added without a schema change (a database
//!   without the table gets it on open; an older berth ignores it)

use std::path::Path;
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
const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");

/// One change of [`MetaDb::write_docs`].
#[derive(Debug, Clone, Copy)]
pub enum DocChange<'a> {
    Put {
        kind: &'a str,
        key: &'a str,
        doc: &'a [u8],
    },
    Delete {
        kind: &'a str,
        key: &'a str,
    },
}

fn doc_key(kind: &str, key: &str) -> Result<String> {
    if kind.is_empty() || kind.contains('/') || key.is_empty() {
        return Err(Error::Db(format!(
            "document key {kind:?}/{key:?}: the kind must be non-empty without '/', the key non-empty"
        )));
    }
    Ok(format!("{kind}/{key}"))
}

/// The `meta` key each write transaction sets to a token of its own.
const LAST_WRITE: &str = "last_write";

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
    /// How it arrived: `docker-archive`, `oci-archive`, `import`, `pull`, `commit`.
    pub source: String,
    /// The image this one was derived from on this host (`commit`, build): Docker's
    /// `Parent`. Absent for images that arrived whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
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
    open: Opener,
    db: RwLock<Option<Database>>,
}

/// How the database file is opened, first and again after an I/O error: [`MetaDb::open`]
/// opens its path; the tests open it through a storage backend that fails on demand.
pub(crate) type Opener =
    Box<dyn Fn() -> std::result::Result<Database, redb::DatabaseError> + Send + Sync>;

fn decode<T: for<'de> Deserialize<'de>>(what: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what} record {key}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupt(e.to_string()))
}

/// What a commit that failed, and could not be checked, says: it may have reached the
/// file. The error keeps its kind (a full disk stays a full disk).
const OUTCOME_UNKNOWN: &str =
    "the commit may have reached the file (it could not be opened again to tell)";

fn outcome_unknown(e: Error) -> Error {
    match e {
        Error::DbIo(io) => Error::DbIo(std::io::Error::new(
            io.kind(),
            format!("{io}; {OUTCOME_UNKNOWN}"),
        )),
        e => Error::DbPoisoned(format!("{e}; {OUTCOME_UNKNOWN}")),
    }
}

fn check_version(v: &str) -> Result<()> {
    let n: u32 = v
        .parse()
        .map_err(|_| Error::Corrupt(format!("schema_version {v:?} is not a number")))?;
    if n != SCHEMA_VERSION {
        return Err(Error::Version {
            what: "metadata schema",
            found: n,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

impl MetaDb {
    pub fn open(path: &Path) -> Result<MetaDb> {
        let path = path.to_path_buf();
        Self::with_opener(Box::new(move || Database::create(&path)))
    }

    /// A database opened (and opened again after an I/O error) by `open`.
    pub(crate) fn with_opener(open: Opener) -> Result<MetaDb> {
        let db = Self::open_db(&open)?;
        Ok(MetaDb {
            open,
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
        *g = Some(Self::open_db(&self.open)?);
        Ok(())
    }

    fn open_db(open: &Opener) -> Result<Database> {
        let db = open()?;
        // A database already set up is only read: a reopen after an I/O error (a full
        // disk) needs no transaction of its own.
        if Self::check_schema(&db)? {
            return Ok(db);
        }
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value().to_string());
            match found {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_string().as_str())?;
                }
                Some(v) => check_version(&v)?,
            }
            txn.open_table(IMAGES)?;
            txn.open_table(TAGS)?;
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(DOCS)?;
        }
        txn.commit()?;
        Ok(db)
    }

    /// Whether every table is there with a schema version this berth supports (an error
    /// if another one).
    fn check_schema(db: &Database) -> Result<bool> {
        let txn = db.begin_read()?;
        let version = match txn.open_table(META) {
            Ok(meta) => meta.get("schema_version")?.map(|v| v.value().to_string()),
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let Some(v) = version else {
            return Ok(false);
        };
        check_version(&v)?;
        for table in [IMAGES, SNAPSHOTS, DOCS] {
            match txn.open_table(table) {
                Ok(_) => {}
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        match txn.open_table(TAGS) {
            Ok(_) => Ok(true),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `f` in one write transaction and commits it: all of it or nothing.
    ///
    /// A commit that meets an I/O error may still have reached the file: redb writes
    /// the new header before the final `fsync`, and a failed `fsync` (or a torn header
    /// write that still checks out) leaves the new state in place, which every later
    /// read (and a restart) sees. So each transaction also sets `meta.last_write` to a
    /// token of its own; after an I/O error (the handle is open again by then) the
    /// token says whether the commit landed, and the call reports what the file holds:
    /// `Ok` if it did, the error if not. When the file cannot be opened again to tell
    /// (the disk still refuses every write), the error stands.
    fn write<T>(&self, f: impl Fn(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        let token = format!("{:032x}", rand::random::<u128>());
        let done = std::cell::RefCell::new(None);
        let r = self.run(|db| {
            let txn = db.begin_write()?;
            let v = f(&txn)?;
            txn.open_table(META)?.insert(LAST_WRITE, token.as_str())?;
            *done.borrow_mut() = None;
            let committed = txn.commit();
            *done.borrow_mut() = Some(v);
            committed?;
            Ok(())
        });
        let v = done.into_inner();
        match (r, v) {
            (Ok(()), Some(v)) => Ok(v),
            (Err(e @ (Error::DbIo(_) | Error::DbPoisoned(_))), Some(v)) => {
                match self.last_write() {
                    Ok(Some(t)) if t == token => {
                        tracing::warn!(
                            "metadata database: a commit reported {e} but reached the file; \
                             it stands"
                        );
                        Ok(v)
                    }
                    Ok(_) => Err(e),
                    Err(_) => Err(outcome_unknown(e)),
                }
            }
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::Db("a write transaction left no result".into())),
        }
    }

    /// The token of the last committed write transaction.
    fn last_write(&self) -> Result<Option<String>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let t = meta.get(LAST_WRITE)?.map(|v| v.value().to_string());
            Ok(t)
        })
    }

    /// Stores an image and points `tags` at it, in one transaction.
    /// Returns the image IDs the tags pointed at before (which may now be dangling).
    pub fn put_image(&self, rec: &ImageRecord, tags: &[Reference]) -> Result<Vec<Digest>> {
        self.write(|txn| {
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
            Ok(previous)
        })
    }

    /// A document of `kind` (see the module's table list).
    pub fn doc(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let k = doc_key(kind, key)?;
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(DOCS)?;
            Ok(t.get(k.as_str())?.map(|v| v.value().to_vec()))
        })
    }

    /// Every document of `kind`, by key.
    pub fn docs(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>> {
        doc_key(kind, "-")?;
        // Keys of a kind are `KIND/…`: from `KIND/` up to `KIND0` ('0' follows '/').
        let (from, to) = (format!("{kind}/"), format!("{kind}0"));
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(DOCS)?;
            let mut out = Vec::new();
            for row in t.range(from.as_str()..to.as_str())? {
                let (k, v) = row?;
                let key = k.value().get(from.len()..).unwrap_or_default().to_string();
                out.push((key, v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Puts and deletes documents in one transaction: all of them or none.
    pub fn write_docs(&self, changes: &[DocChange<'_>]) -> Result<()> {
        let keys = changes
            .iter()
            .map(|c| match *c {
                DocChange::Put { kind, key, .. } | DocChange::Delete { kind, key } => {
                    doc_key(kind, key)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(|txn| {
            {
                let mut t = txn.open_table(DOCS)?;
                for (c, k) in changes.iter().zip(&keys) {
                    match c {
                        DocChange::Put { doc, .. } => {
                            t.insert(k.as_str(), *doc)?;
                        }
                        DocChange::Delete { .. } => {
                            t.remove(k.as_str())?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    pub fn put_snapshot(&self, rec: &SnapshotRecord) -> Result<()> {
        self.write(|txn| {
            {
                let mut t = txn.open_table(SNAPSHOTS)?;
                t.insert(rec.diff_id.to_string().as_str(), encode(rec)?.as_slice())?;
            }
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
        self.write(|txn| {
            {
                let mut t = txn.open_table(SNAPSHOTS)?;
                t.remove(diff_id.to_string().as_str())?;
            }
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
        self.write(|txn| {
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
            Ok(prev)
        })
    }

    /// Removes a tag; returns the image it pointed at.
    pub fn remove_tag(&self, tag: &Reference) -> Result<Option<Digest>> {
        self.write(|txn| {
            let prev;
            {
                let mut t = txn.open_table(TAGS)?;
                prev = t
                    .remove(tag.to_string().as_str())?
                    .and_then(|v| v.value().parse().ok());
            }
            Ok(prev)
        })
    }

    /// Removes an image and every tag pointing at it; returns the removed tags.
    pub fn delete_image(&self, id: &Digest) -> Result<Vec<Reference>> {
        self.write(|txn| {
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
            parent: None,
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

    // ---- Fault injection at every storage write ----

    use redb::backends::FileBackend;
    use redb::StorageBackend;
    use std::sync::{Arc, Mutex};

    /// How an armed fault fails.
    #[derive(Debug, Clone, Copy)]
    enum Mode {
        /// The Nth storage write fails with this errno; the ones after it succeed.
        Once(i32),
        /// The Nth storage write and every one after it fail with ENOSPC until disarmed
        /// (a disk that stays full).
        Full,
        /// The Nth storage write fails with EIO after writing the first half of its data
        /// (a torn write); a failing `set_len` or `sync_data` just fails.
        Torn,
    }

    #[derive(Debug, Default)]
    struct FaultState {
        /// Storage writes left before the one that fails, and how; `None`: disarmed.
        armed: Option<(u64, Mode)>,
        /// Whether a call failed since the last `arm`.
        fired: bool,
    }

    /// A fault shared by the test and every backend its opener makes.
    #[derive(Debug, Default, Clone)]
    struct Fault(Arc<Mutex<FaultState>>);

    impl Fault {
        /// Fails the `n`th (from 0) `write`/`set_len`/`sync_data` call from now.
        fn arm(&self, n: u64, mode: Mode) {
            *self.0.lock().unwrap() = FaultState {
                armed: Some((n, mode)),
                fired: false,
            };
        }

        /// Disarms; returns whether the fault fired.
        fn disarm(&self) -> bool {
            let mut g = self.0.lock().unwrap();
            g.armed = None;
            g.fired
        }

        /// Called at each storage write: `Some(mode)` when this one fails.
        fn hit(&self) -> Option<Mode> {
            let mut g = self.0.lock().unwrap();
            let (left, mode) = g.armed.as_mut()?;
            if *left > 0 {
                *left -= 1;
                return None;
            }
            let mode = *mode;
            g.fired = true;
            if !matches!(mode, Mode::Full) {
                g.armed = None;
            }
            Some(mode)
        }
    }

    fn os_error(mode: Mode) -> std::io::Error {
        std::io::Error::from_raw_os_error(match mode {
            Mode::Once(errno) => errno,
            Mode::Full => libc::ENOSPC,
            Mode::Torn => libc::EIO,
        })
    }

    /// redb's file backend, failing the storage writes `fault` says.
    #[derive(Debug)]
    struct FaultyBackend {
        inner: FileBackend,
        fault: Fault,
    }

    impl StorageBackend for FaultyBackend {
        fn len(&self) -> std::result::Result<u64, std::io::Error> {
            self.inner.len()
        }

        fn read(&self, offset: u64, len: usize) -> std::result::Result<Vec<u8>, std::io::Error> {
            self.inner.read(offset, len)
        }

        fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
            match self.fault.hit() {
                Some(mode) => Err(os_error(mode)),
                None => self.inner.set_len(len),
            }
        }

        fn sync_data(&self, eventual: bool) -> std::result::Result<(), std::io::Error> {
            match self.fault.hit() {
                Some(mode) => Err(os_error(mode)),
                None => self.inner.sync_data(eventual),
            }
        }

        fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
            match self.fault.hit() {
                Some(mode @ Mode::Torn) => {
                    self.inner.write(offset, &data[..data.len() / 2])?;
                    Err(os_error(mode))
                }
                Some(mode) => Err(os_error(mode)),
                None => self.inner.write(offset, data),
            }
        }
    }

    /// A `MetaDb` on `path` whose every (re)open goes through a `FaultyBackend`.
    fn faulty_db(path: &Path, fault: &Fault) -> MetaDb {
        let (path, fault) = (path.to_path_buf(), fault.clone());
        MetaDb::with_opener(Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let backend = FaultyBackend {
                inner: FileBackend::new(file)?,
                fault: fault.clone(),
            };
            redb::Builder::new().create_with_backend(backend)
        }))
        .unwrap()
    }

    /// Everything a caller can see.
    #[derive(Clone, PartialEq)]
    struct State {
        images: Vec<ImageRecord>,
        tags: Vec<(Reference, Digest)>,
        snapshots: Vec<SnapshotRecord>,
        docs: Vec<(String, Vec<u8>)>,
    }

    /// Short: image IDs (with repo digests and record size), tags, snapshots.
    impl std::fmt::Debug for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let short = |d: &Digest| d.to_string()[7..15].to_string();
            let images: Vec<String> = self
                .images
                .iter()
                .map(|i| {
                    let len = encode(i).map_or(0, |v| v.len());
                    format!("{} {:?} {len}B", short(&i.id), i.repo_digests.len())
                })
                .collect();
            let tags: Vec<String> = self
                .tags
                .iter()
                .map(|(t, d)| format!("{t}={}", short(d)))
                .collect();
            let snaps: Vec<String> = self
                .snapshots
                .iter()
                .map(|s| format!("{}/{}", short(&s.diff_id), s.entries))
                .collect();
            let docs: Vec<String> = self
                .docs
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect();
            write!(
                f,
                "images {images:?} tags {tags:?} snapshots {snaps:?} docs {docs:?}"
            )
        }
    }

    fn state(db: &MetaDb) -> State {
        State {
            images: db.images().unwrap(),
            tags: db.tags().unwrap(),
            snapshots: db.snapshots().unwrap(),
            docs: [db.docs("service").unwrap(), db.docs("task").unwrap()].concat(),
        }
    }

    fn tag(s: &str) -> Reference {
        Reference::parse(&format!("docker.io/library/{s}")).unwrap()
    }

    fn snap(n: u32) -> SnapshotRecord {
        SnapshotRecord {
            diff_id: Digest::of(format!("layer{n}").as_bytes()),
            size: u64::from(n) * 1000,
            tar_size: u64::from(n) * 1024,
            entries: u64::from(n),
        }
    }

    /// Images 1 (tags a:1, a:latest), 2 (b:1) and 3 (no tag, a repo digest); snapshots
    /// 1, 2 and 3.
    fn seed(db: &MetaDb) {
        db.put_image(&record(1, 3000), &[tag("a:1"), tag("a:latest")])
            .unwrap();
        db.put_image(&record(2, 3000), &[tag("b:1")]).unwrap();
        let mut three = record(3, 3000);
        three.repo_digests = vec![format!("docker.io/library/c@{}", Digest::of(b"m3"))];
        db.put_image(&three, &[]).unwrap();
        for n in 1..=3 {
            db.put_snapshot(&snap(n)).unwrap();
        }
    }

    type Op = fn(&MetaDb) -> Result<String>;

    /// Every write of `MetaDb`, on the seeded database; each returns what it returned,
    /// printed.
    fn operations() -> Vec<(&'static str, Op)> {
        vec![
            ("put_image new, one new tag, one moved", |db| {
                let r = db.put_image(&record(4, 3000), &[tag("d:1"), tag("a:latest")])?;
                Ok(format!("{r:?}"))
            }),
            ("put_image again, new repo digest and tag", |db| {
                let mut rec = record(3, 3000);
                rec.repo_digests = vec![format!("docker.io/library/c@{}", Digest::of(b"m3b"))];
                let r = db.put_image(&rec, &[tag("c:1")])?;
                Ok(format!("{r:?}"))
            }),
            ("put_image large (the file grows)", |db| {
                let r = db.put_image(&record(5, 200 * 1024), &[tag("e:1")])?;
                Ok(format!("{r:?}"))
            }),
            ("put_snapshot new", |db| {
                db.put_snapshot(&snap(4))?;
                Ok(String::new())
            }),
            ("put_snapshot replace", |db| {
                let mut s = snap(2);
                s.entries = 99;
                db.put_snapshot(&s)?;
                Ok(String::new())
            }),
            ("delete_snapshot", |db| {
                db.delete_snapshot(&snap(2).diff_id)?;
                Ok(String::new())
            }),
            ("set_tag moved", |db| {
                let r = db.set_tag(&tag("b:1"), &record(1, 0).id)?;
                Ok(format!("{r:?}"))
            }),
            ("set_tag new", |db| {
                let r = db.set_tag(&tag("c:latest"), &record(3, 0).id)?;
                Ok(format!("{r:?}"))
            }),
            ("set_tag to a missing image (refused)", |db| {
                let r = db.set_tag(&tag("z:1"), &record(9, 0).id)?;
                Ok(format!("{r:?}"))
            }),
            ("remove_tag", |db| {
                let r = db.remove_tag(&tag("a:1"))?;
                Ok(format!("{r:?}"))
            }),
            ("delete_image with two tags", |db| {
                let r = db.delete_image(&record(1, 0).id)?;
                Ok(format!("{r:?}"))
            }),
            (
                "write_docs: a service's new version, a task added, one removed",
                |db| {
                    db.write_docs(&[
                        DocChange::Put {
                            kind: "service",
                            key: "s1",
                            doc: b"{\"v\":2}",
                        },
                        DocChange::Put {
                            kind: "task",
                            key: "t2",
                            doc: b"{}",
                        },
                        DocChange::Delete {
                            kind: "task",
                            key: "t1",
                        },
                    ])?;
                    Ok(String::new())
                },
            ),
            ("delete_image untagged", |db| {
                let r = db.delete_image(&record(3, 0).id)?;
                Ok(format!("{r:?}"))
            }),
        ]
    }

    /// A temporary directory, on tmpfs when there is one (the test makes thousands of
    /// commits; their `fsync`s are still called, and counted, but cost nothing there).
    fn scratch() -> tempfile::TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(d) = tempfile::tempdir_in(shm) {
                return d;
            }
        }
        tempfile::tempdir().unwrap()
    }

    /// What went wrong in one case, if anything.
    fn check(
        case: &str,
        got: &Result<String>,
        expect: &State,
        db: MetaDb,
        path: &Path,
    ) -> Option<String> {
        let docs = db
            .docs("service")
            .and_then(|s| db.docs("task").map(|t| [s, t].concat()));
        let seen = match (db.images(), db.tags(), db.snapshots(), docs) {
            (Ok(images), Ok(tags), Ok(snapshots), Ok(docs)) => State {
                images,
                tags,
                snapshots,
                docs,
            },
            (a, b, c, d) => {
                let e = [a.err(), b.err(), c.err(), d.err()];
                return Some(format!("{case}: {got:?}: a read after fails: {e:?}"));
            }
        };
        if seen != *expect {
            return Some(format!(
                "{case}: {got:?}: state\n    is   {seen:?}\n    want {expect:?}"
            ));
        }
        // The handle works on: a write.
        let probe = snap(77);
        if let Err(e) = db.put_snapshot(&probe) {
            return Some(format!("{case}: {got:?}: a write after fails: {e}"));
        }
        let mut expect = expect.clone();
        expect.snapshots.push(probe);
        expect.snapshots.sort_by_key(|s| s.diff_id.to_string());
        drop(db);
        // A fresh open from scratch shows the same.
        let db = match MetaDb::open(path) {
            Ok(db) => db,
            Err(e) => return Some(format!("{case}: {got:?}: reopen fails: {e}")),
        };
        let seen = state(&db);
        (seen != expect).then(|| {
            format!("{case}: {got:?}: state after reopen\n    is   {seen:?}\n    want {expect:?}")
        })
    }

    /// For every write of `MetaDb`, every storage write it makes (`write`, `set_len`,
    /// `sync_data` of redb's backend) fails in turn, in each of the modes: the operation
    /// either fails and leaves everything as it was, or succeeds and leaves what it
    /// should; the handle goes on working (a read and a write) without a reopen by hand;
    /// and a fresh open of the file shows the same, nothing of a failed write and all of
    /// an acknowledged one.
    #[test]
    fn documents_are_listed_by_kind_only() {
        let dir = scratch();
        let db = MetaDb::open(&dir.path().join("m.redb")).unwrap();
        db.write_docs(&[
            DocChange::Put {
                kind: "task",
                key: "b",
                doc: b"2",
            },
            DocChange::Put {
                kind: "task",
                key: "a",
                doc: b"1",
            },
            DocChange::Put {
                kind: "tasks",
                key: "x",
                doc: b"3",
            },
            DocChange::Put {
                kind: "service",
                key: "task",
                doc: b"4",
            },
        ])
        .unwrap();
        let keys: Vec<String> = db
            .docs("task")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(db.doc("tasks", "x").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(db.doc("task", "x").unwrap(), None);
        assert!(db
            .write_docs(&[DocChange::Delete {
                kind: "a/b",
                key: "c"
            }])
            .is_err());
        db.write_docs(&[DocChange::Delete {
            kind: "task",
            key: "a",
        }])
        .unwrap();
        assert_eq!(db.docs("task").unwrap().len(), 1);
    }

    #[test]
    fn every_storage_write_failing_leaves_no_half_applied_operation() {
        let modes = [
            Mode::Once(libc::ENOSPC),
            Mode::Once(libc::EIO),
            Mode::Full,
            Mode::Torn,
        ];
        let (mut cases, mut failed_ops) = (0, 0);
        let (mut wrong, mut unknown) = (Vec::new(), 0);
        for (name, op) in operations() {
            // What the operation does without a fault.
            let dir = scratch();
            let template = dir.path().join("seeded.redb");
            let db = MetaDb::open(&template).unwrap();
            seed(&db);
            let before = state(&db);
            drop(db);
            let reference = dir.path().join("reference.redb");
            std::fs::copy(&template, &reference).unwrap();
            let db = MetaDb::open(&reference).unwrap();
            let want = op(&db).map_err(|e| e.to_string());
            let after = state(&db);
            drop(db);
            let mut points = 0;
            for mode in modes {
                // Fault points where the outcome was unknown and the commit had landed.
                let mut landed_unknown = Vec::new();
                let mut last = 0;
                for n in 0.. {
                    assert!(n < 10_000, "{name}: the fault never stops firing");
                    let path = dir.path().join(format!("case-{mode:?}-{n}.redb"));
                    std::fs::copy(&template, &path).unwrap();
                    let fault = Fault::default();
                    let db = faulty_db(&path, &fault);
                    assert_eq!(state(&db), before, "{name}: seed");
                    fault.arm(n, mode);
                    let got = op(&db);
                    let fired = fault.disarm();
                    cases += 1;
                    let case = format!("{name}, {mode:?} at storage write {n}");
                    let expect = match &got {
                        Ok(r) if Ok(r) != want.as_ref() => {
                            wrong.push(format!("{case}: returned {r:?}, want {want:?}"));
                            continue;
                        }
                        Ok(_) => &after,
                        // The disk refused even the reopen that would tell whether
                        // the commit landed; the error says so, and either is right.
                        Err(e) if fired && e.to_string().contains(OUTCOME_UNKNOWN) => {
                            unknown += 1;
                            if state(&db) == after {
                                landed_unknown.push(n);
                                &after
                            } else {
                                &before
                            }
                        }
                        Err(_) if fired => {
                            failed_ops += 1;
                            &before
                        }
                        Err(e) => {
                            if Err(e.to_string()) != want {
                                wrong.push(format!("{case}: returned {e}, want {want:?}"));
                            }
                            &before
                        }
                    };
                    wrong.extend(check(&case, &got, expect, db, &path));
                    if !fired {
                        break;
                    }
                    last = n;
                    points += 1;
                }
                // Only the last storage call, the commit's fsync, comes after the new
                // header is written: an unknown outcome before it must not have landed.
                if landed_unknown.iter().any(|&n| n != last) {
                    wrong.push(format!(
                        "{name}, {mode:?}: an unknown outcome landed at storage writes \
                         {landed_unknown:?}, the last is {last}"
                    ));
                }
            }
            eprintln!("{name}: {points} fault points over {} modes", modes.len());
        }
        eprintln!(
            "{cases} cases, {failed_ops} operations failed by the fault, {unknown} with an \
             outcome unknown"
        );
        assert!(
            wrong.is_empty(),
            "{} wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}
