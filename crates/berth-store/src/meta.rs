//! The metadata database (redb: embedded, ACID, crash-safe). Records are JSON values in
//! typed tables; the schema version lives in the `meta` table and is checked on open.
//!
//! Tables (schema version 1):
//! - `meta`: `"schema_version"` -> `"1"`
//! - `images`: image ID (`sha256:…`, the config digest) -> [`ImageRecord`]
//! - `tags`: normalized reference (`docker.io/library/busybox:latest`) -> image ID
//! - `snapshots`: layer diff_id -> [`SnapshotRecord`]

use std::path::Path;

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

pub struct MetaDb {
    db: Database,
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what} record {key}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupt(e.to_string()))
}

impl MetaDb {
    pub fn open(path: &Path) -> Result<MetaDb> {
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
        Ok(MetaDb { db })
    }

    /// Stores an image and points `tags` at it, in one transaction.
    /// Returns the image IDs the tags pointed at before (which may now be dangling).
    pub fn put_image(&self, rec: &ImageRecord, tags: &[Reference]) -> Result<Vec<Digest>> {
        let txn = self.db.begin_write()?;
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
    }

    pub fn put_snapshot(&self, rec: &SnapshotRecord) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(SNAPSHOTS)?;
            t.insert(rec.diff_id.to_string().as_str(), encode(rec)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn snapshot(&self, diff_id: &Digest) -> Result<Option<SnapshotRecord>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let key = diff_id.to_string();
        match t.get(key.as_str())? {
            Some(v) => Ok(Some(decode("snapshot", &key, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode("snapshot", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn delete_snapshot(&self, diff_id: &Digest) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(SNAPSHOTS)?;
            t.remove(diff_id.to_string().as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(IMAGES)?;
        let key = id.to_string();
        match t.get(key.as_str())? {
            Some(v) => Ok(Some(decode("image", &key, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode("image", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Every tag with the image it points at.
    pub fn tags(&self) -> Result<Vec<(Reference, Digest)>> {
        let txn = self.db.begin_read()?;
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
    }

    pub fn resolve_tag(&self, r: &Reference) -> Result<Option<Digest>> {
        let txn = self.db.begin_read()?;
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
    }

    /// Points `tag` at `id`; returns the image it pointed at before, if another.
    pub fn set_tag(&self, tag: &Reference, id: &Digest) -> Result<Option<Digest>> {
        let txn = self.db.begin_write()?;
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
    }

    /// Removes a tag; returns the image it pointed at.
    pub fn remove_tag(&self, tag: &Reference) -> Result<Option<Digest>> {
        let txn = self.db.begin_write()?;
        let prev;
        {
            let mut t = txn.open_table(TAGS)?;
            prev = t
                .remove(tag.to_string().as_str())?
                .and_then(|v| v.value().parse().ok());
        }
        txn.commit()?;
        Ok(prev)
    }

    /// Removes an image and every tag pointing at it; returns the removed tags.
    pub fn delete_image(&self, id: &Digest) -> Result<Vec<Reference>> {
        let txn = self.db.begin_write()?;
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
    }
}
