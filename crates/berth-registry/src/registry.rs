//! The registry's state and rules, independent of HTTP: repositories, blob links, upload
//! sessions, manifests, tags, referrers and garbage collection, over one
//! [`berth_store::Store`] (one copy of a blob whatever the number of repositories that
//! link it) and the registry database ([`RegistryDb`]).
//!
//! Every method here is blocking (disk I/O and redb commits); the HTTP layer runs them on
//! tokio's blocking pool.
//!
//! Publishing protocol, as in the daemon's store: bytes go to `content/ingest/`, the digest
//! is verified, the file is fsync'd, a lease is taken on the digest, the file is renamed
//! into `content/blobs/sha256/`, the directory is fsync'd, the link or manifest record is
//! committed, and only then is the lease released. GC computes its roots (links and
//! manifests) under the lease lock, so it sees the lease or the committed record.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_store::{BlobWriter, ExtraRoots, GcReport, Store};
use berth_types::{media, Digest};
use serde_json::Value;

use crate::auth::Pattern;
use crate::db::{ManifestRecord, RegistryDb};
use crate::error::{Error, Result};
use crate::names::{validate_name, ManifestRef};

/// The largest manifest accepted (Distribution's limit).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Upload sessions untouched this long are dropped when new ones start.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Settings of a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Allow `DELETE` of blobs and manifests (off by default: 405 UNSUPPORTED).
    pub delete_enabled: bool,
    /// Repositories whose tags, once set, never move or go away.
    pub immutable_tags: Vec<Pattern>,
}

/// A blob being uploaded into a repository.
pub struct Upload {
    pub repo: String,
    pub writer: BlobWriter,
}

impl Upload {
    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.writer.len()
    }
}

enum Slot {
    /// Waiting for the next chunk.
    Idle(Box<Upload>, Instant),
    /// A request is writing to it right now.
    Busy(String),
}

pub struct Registry {
    store: Store,
    db: RegistryDb,
    uploads: Mutex<HashMap<String, Slot>>,
    config: RegistryConfig,
}

/// A stored manifest as served.
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What a manifest PUT stored.
#[derive(Debug)]
pub struct PutManifest {
    pub digest: Digest,
    /// The digest the tag pointed at before, when the push moved a tag.
    pub previous: Option<Digest>,
    pub subject: Option<Digest>,
}

fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Registry {
    /// Opens (creating) the registry state under `root`: a berth store (its lock keeps a
    /// second process off the root) plus `registry.redb`.
    pub fn open(root: &Path, config: RegistryConfig) -> Result<Registry> {
        let store = Store::open(root)?;
        let db = RegistryDb::open(&store.root().join("registry.redb"))?;
        Ok(Registry {
            store,
            db,
            uploads: Mutex::new(HashMap::new()),
            config,
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The immutable-tags pattern `repo` falls under, if any.
    pub fn immutable_rule(&self, repo: &str) -> Option<&str> {
        self.config
            .immutable_tags
            .iter()
            .find(|p| p.matches(repo))
            .map(|p| p.as_str())
    }

    fn require_delete(&self, what: &str) -> Result<()> {
        if self.config.delete_enabled {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "deleting {what} is disabled on this registry (start it with --enable-delete)"
            )))
        }
    }

    // ---- blobs ----

    /// Path and size of a blob linked into `repo`.
    pub fn blob(&self, repo: &str, digest: &Digest) -> Result<(PathBuf, u64)> {
        validate_name(repo)?;
        match self.db.blob_link(repo, digest)? {
            Some(_) => {
                let size = self.store.content.size(digest)?;
                Ok((self.store.content.path(digest), size))
            }
            None => Err(Error::BlobUnknown {
                repo: repo.into(),
                digest: *digest,
            }),
        }
    }

    pub fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        validate_name(repo)?;
        self.require_delete("blobs")?;
        if self.db.unlink_blob(repo, digest)? {
            Ok(())
        } else {
            Err(Error::BlobUnknown {
                repo: repo.into(),
                digest: *digest,
            })
        }
    }

    /// Links a blob of `from` into `repo` (cross-repository mount); `false` when `from`
    /// does not have it.
    pub fn mount(&self, repo: &str, from: &str, digest: &Digest) -> Result<bool> {
        validate_name(repo)?;
        validate_name(from)?;
        if self.db.blob_link(from, digest)?.is_none() {
            return Ok(false);
        }
        let lease = self.store.leases.acquire();
        lease.add_blob(*digest);
        // The blob may have been collected after the link was removed and before the lease.
        let Ok(size) = self.store.content.size(digest) else {
            return Ok(false);
        };
        self.db.link_blob(repo, digest, size)?;
        drop(lease);
        Ok(true)
    }

    // ---- uploads ----

    /// A new upload not registered as a session (monolithic POST).
    pub fn new_upload(&self, repo: &str) -> Result<Upload> {
        validate_name(repo)?;
        Ok(Upload {
            repo: repo.into(),
            writer: self.store.content.writer()?,
        })
    }

    /// Starts an upload session; returns its id.
    pub fn begin_upload(&self, repo: &str) -> Result<String> {
        let up = self.new_upload(repo)?;
        let uuid = random_uuid();
        let mut uploads = self.uploads();
        let now = Instant::now();
        uploads.retain(
            |_, s| !matches!(s, Slot::Idle(_, t) if now.duration_since(*t) > UPLOAD_IDLE_TIMEOUT),
        );
        uploads.insert(uuid.clone(), Slot::Idle(Box::new(up), now));
        Ok(uuid)
    }

    /// Takes a session out for a request to write to; give it back with
    /// [`return_upload`](Self::return_upload).
    pub fn take_upload(&self, repo: &str, uuid: &str) -> Result<Upload> {
        validate_name(repo)?;
        let mut uploads = self.uploads();
        let unknown = || Error::BlobUploadUnknown {
            repo: repo.into(),
            uuid: uuid.into(),
        };
        match uploads.get(uuid) {
            Some(Slot::Idle(up, _)) if up.repo == repo => {}
            Some(Slot::Busy(r)) if r == repo => {
                return Err(Error::BlobUploadInvalid {
                    repo: repo.into(),
                    uuid: uuid.into(),
                    reason: "another request is writing to this upload; send chunks one at a time"
                        .into(),
                })
            }
            _ => return Err(unknown()),
        }
        match uploads.insert(uuid.to_string(), Slot::Busy(repo.into())) {
            Some(Slot::Idle(up, _)) => Ok(*up),
            _ => Err(unknown()),
        }
    }

    pub fn return_upload(&self, uuid: &str, up: Upload) {
        self.uploads()
            .insert(uuid.to_string(), Slot::Idle(Box::new(up), Instant::now()));
    }

    /// Forgets a session taken out (its temp file is removed when the upload drops).
    pub fn end_upload(&self, uuid: &str) {
        self.uploads().remove(uuid);
    }

    /// Bytes received so far by a session.
    pub fn upload_offset(&self, repo: &str, uuid: &str) -> Result<u64> {
        validate_name(repo)?;
        match self.uploads().get(uuid) {
            Some(Slot::Idle(up, _)) if up.repo == repo => Ok(up.offset()),
            _ => Err(Error::BlobUploadUnknown {
                repo: repo.into(),
                uuid: uuid.into(),
            }),
        }
    }

    pub fn cancel_upload(&self, repo: &str, uuid: &str) -> Result<()> {
        let up = self.take_upload(repo, uuid)?;
        self.end_upload(uuid);
        drop(up);
        Ok(())
    }

    /// Verifies an upload against `expected`, makes it durable, publishes it and links it
    /// into its repository.
    pub fn complete_upload(&self, up: Upload, expected: &Digest) -> Result<Digest> {
        let Upload { repo, mut writer } = up;
        writer
            .flush()
            .map_err(|e| berth_store::Error::io(Path::new("content/ingest"), "write upload", e))?;
        let pending = writer.finish(Some(expected))?;
        pending.sync()?;
        let size = pending.size();
        let lease = self.store.leases.acquire();
        let digest = pending.publish(&lease)?;
        self.store.content.sync_dir()?;
        self.db.link_blob(&repo, &digest, size)?;
        drop(lease);
        tracing::info!(repo = %repo, digest = %digest, size_bytes = size, "blob pushed");
        Ok(digest)
    }

    // ---- manifests ----

    fn resolve(&self, repo: &str, reference: &ManifestRef) -> Result<Digest> {
        let unknown = || Error::ManifestUnknown {
            repo: repo.into(),
            reference: reference.to_string(),
        };
        match reference {
            ManifestRef::Digest(d) => Ok(*d),
            ManifestRef::Tag(t) => self.db.tag(repo, t)?.ok_or_else(unknown),
        }
    }

    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        validate_name(repo)?;
        let r = ManifestRef::parse(reference)?;
        let digest = self.resolve(repo, &r)?;
        let rec = self
            .db
            .manifest(repo, &digest)?
            .ok_or_else(|| Error::ManifestUnknown {
                repo: repo.into(),
                reference: reference.into(),
            })?;
        let bytes = self
            .store
            .content
            .read_blob(&digest, MAX_MANIFEST_BYTES as u64)?;
        Ok(Manifest {
            digest,
            media_type: rec.media_type,
            bytes,
        })
    }

    /// Validates and stores a manifest; with a tag reference, points the tag at it.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<PutManifest> {
        validate_name(repo)?;
        let r = ManifestRef::parse(reference)?;
        let digest = Digest::of(bytes);
        if let ManifestRef::Digest(d) = &r {
            if *d != digest {
                return Err(Error::DigestInvalid {
                    reason: format!(
                        "manifest pushed as {d} in repository {repo} has digest {digest}"
                    ),
                });
            }
        }
        let invalid = |reason: String| Error::ManifestInvalid {
            repo: repo.into(),
            reference: reference.into(),
            reason,
        };
        let rec = parse_manifest(content_type, bytes).map_err(invalid)?;
        // Leased before they are checked: a link deleted meanwhile cannot let GC take a
        // blob this manifest is about to reference.
        let lease = self.store.leases.acquire();
        for d in &rec.refs {
            lease.add_blob(*d);
        }
        // Every referenced blob or child manifest must be in this repository.
        let json: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if media::is_index(&rec.media_type) {
            for d in &rec.refs {
                if self.db.manifest(repo, d)?.is_none() {
                    return Err(Error::ManifestBlobUnknown {
                        repo: repo.into(),
                        reference: reference.into(),
                        what: "manifest",
                        digest: *d,
                    });
                }
            }
        } else {
            for (what, desc) in blob_descriptors(&json) {
                if is_foreign(desc) {
                    continue;
                }
                let d = descriptor_digest(desc).map_err(invalid)?;
                if self.db.blob_link(repo, &d)?.is_none() || !self.store.content.exists(&d) {
                    return Err(Error::ManifestBlobUnknown {
                        repo: repo.into(),
                        reference: reference.into(),
                        what,
                        digest: d,
                    });
                }
            }
        }
        let stored = self.store.content.put_durable(bytes, &lease)?;
        self.store.content.sync_dir()?;
        debug_assert_eq!(stored, digest);
        let tag = match &r {
            ManifestRef::Tag(t) => Some(t.as_str()),
            ManifestRef::Digest(_) => None,
        };
        let subject = rec.subject;
        let rule = tag.and(self.immutable_rule(repo));
        let previous = self.db.put_manifest(repo, &digest, &rec, tag, rule)?;
        drop(lease);
        tracing::info!(repo = %repo, reference = %reference, digest = %digest, "manifest pushed");
        Ok(PutManifest {
            digest,
            previous: previous.filter(|p| *p != digest),
            subject,
        })
    }

    /// Deletes a manifest by digest (and its tags), or just a tag.
    pub fn delete_manifest(&self, repo: &str, reference: &str) -> Result<()> {
        validate_name(repo)?;
        self.require_delete("manifests")?;
        let r = ManifestRef::parse(reference)?;
        let rule = self.immutable_rule(repo);
        let found = match &r {
            ManifestRef::Digest(d) => self.db.delete_manifest(repo, d, rule)?,
            ManifestRef::Tag(t) => {
                if let Some(rule) = rule {
                    if self.db.tag(repo, t)?.is_some() {
                        return Err(Error::Denied(format!(
                            "tag {t} of repository {repo} is immutable (rule: {rule}); it cannot be deleted"
                        )));
                    }
                }
                self.db.delete_tag(repo, t)?
            }
        };
        if found {
            tracing::info!(repo = %repo, reference = %reference, "manifest deleted");
            Ok(())
        } else {
            Err(Error::ManifestUnknown {
                repo: repo.into(),
                reference: reference.into(),
            })
        }
    }

    // ---- listing ----

    pub fn tags(&self, repo: &str, n: usize, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        validate_name(repo)?;
        if !self.db.repo_exists(repo)? {
            return Err(Error::NameUnknown(repo.into()));
        }
        self.db.tags(repo, n, last)
    }

    pub fn catalog(&self, n: usize, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        self.db.repos(n, last)
    }

    /// The OCI index of manifests in `repo` whose `subject` is `digest`, optionally only
    /// those of one artifact type.
    pub fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Value> {
        validate_name(repo)?;
        let mut manifests = Vec::new();
        for (d, rec) in self.db.manifests(repo)? {
            if rec.subject != Some(*digest) {
                continue;
            }
            if artifact_type.is_some() && rec.artifact_type.as_deref() != artifact_type {
                continue;
            }
            let mut desc = serde_json::Map::new();
            desc.insert("mediaType".into(), rec.media_type.into());
            desc.insert("digest".into(), d.to_string().into());
            desc.insert("size".into(), rec.size.into());
            if let Some(a) = rec.artifact_type {
                desc.insert("artifactType".into(), a.into());
            }
            if let Some(a) = rec.annotations {
                desc.insert("annotations".into(), Value::Object(a));
            }
            manifests.push(Value::Object(desc));
        }
        Ok(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        }))
    }

    // ---- garbage collection ----

    /// Online GC: removes every blob that no repository links and no manifest references.
    /// Uploads in progress are in `content/ingest/` and never collected; blobs being
    /// published are held by a lease until their link or manifest is committed.
    pub fn gc(&self) -> Result<GcReport> {
        let db = &self.db;
        let report = self.store.gc_with_roots(|| {
            let blobs = db
                .referenced_blobs()
                .map_err(|e| berth_store::Error::Db(e.to_string()))?;
            Ok(ExtraRoots {
                blobs,
                snapshots: Default::default(),
            })
        })?;
        tracing::info!(
            blobs_removed = report.blobs_removed.len(),
            bytes_freed = report.bytes_freed,
            "registry garbage collection done"
        );
        Ok(report)
    }
}

const MANIFEST_TYPES: [&str; 4] = [
    media::DOCKER_MANIFEST,
    media::DOCKER_MANIFEST_LIST,
    media::OCI_MANIFEST,
    media::OCI_INDEX,
];

/// The config and layers of an image manifest, with what each is.
fn blob_descriptors(json: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = Vec::new();
    if let Some(c) = json.get("config") {
        out.push(("config", c));
    }
    if let Some(Value::Array(ls)) = json.get("layers") {
        out.extend(ls.iter().map(|l| ("layer", l)));
    }
    out
}

/// Foreign (non-distributable) layers live elsewhere; the registry need not have them.
fn is_foreign(desc: &Value) -> bool {
    desc.get("mediaType")
        .and_then(Value::as_str)
        .is_some_and(|m| m.contains("foreign") || m.contains("nondistributable"))
}

fn descriptor_digest(desc: &Value) -> Result<Digest, String> {
    let d = desc
        .get("digest")
        .and_then(Value::as_str)
        .ok_or("a descriptor has no \"digest\" string")?;
    d.parse::<Digest>().map_err(|e| e.to_string())
}

/// Checks a manifest's JSON and media type and extracts what the registry records.
/// `Err` is the reason it is invalid.
pub fn parse_manifest(content_type: Option<&str>, bytes: &[u8]) -> Result<ManifestRecord, String> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = json.as_object().ok_or("a manifest must be a JSON object")?;
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err("schemaVersion must be 2".into());
    }
    let declared = obj.get("mediaType").and_then(Value::as_str);
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| MANIFEST_TYPES.contains(c));
    let media_type = match (header, declared) {
        (Some(h), Some(d)) if h != d => {
            return Err(format!(
                "Content-Type {h} differs from the manifest's mediaType {d}"
            ))
        }
        (Some(h), _) => h.to_string(),
        (None, Some(d)) if MANIFEST_TYPES.contains(&d) => d.to_string(),
        (None, Some(d)) => return Err(format!("unsupported manifest mediaType {d}")),
        // OCI allows mediaType to be absent; the shape says which one it is.
        (None, None) if obj.contains_key("manifests") => media::OCI_INDEX.to_string(),
        (None, None) if obj.contains_key("config") => media::OCI_MANIFEST.to_string(),
        (None, None) => {
            return Err(format!(
                "unknown manifest type: Content-Type {:?} is none of {}",
                content_type.unwrap_or(""),
                MANIFEST_TYPES.join(", ")
            ))
        }
    };
    let mut refs = Vec::new();
    let mut artifact_type = obj
        .get("artifactType")
        .and_then(Value::as_str)
        .map(String::from);
    if media::is_index(&media_type) {
        let ms = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or("an index needs a \"manifests\" array")?;
        for m in ms {
            refs.push(descriptor_digest(m).map_err(|e| format!("manifests[]: {e}"))?);
        }
    } else {
        let config = obj
            .get("config")
            .ok_or("an image manifest needs a \"config\" descriptor")?;
        refs.push(descriptor_digest(config).map_err(|e| format!("config: {e}"))?);
        if artifact_type.is_none() {
            artifact_type = config
                .get("mediaType")
                .and_then(Value::as_str)
                .map(String::from);
        }
        let layers = match obj.get("layers") {
            Some(Value::Array(ls)) => ls.as_slice(),
            Some(_) => return Err("\"layers\" must be an array".into()),
            None if media_type == media::OCI_MANIFEST => &[],
            None => return Err("an image manifest needs a \"layers\" array".into()),
        };
        for l in layers {
            if !is_foreign(l) {
                refs.push(descriptor_digest(l).map_err(|e| format!("layers[]: {e}"))?);
            }
        }
    }
    let subject = match obj.get("subject") {
        Some(s) => Some(descriptor_digest(s).map_err(|e| format!("subject: {e}"))?),
        None => None,
    };
    let annotations = obj.get("annotations").and_then(Value::as_object).cloned();
    Ok(ManifestRecord {
        media_type,
        size: bytes.len() as u64,
        refs,
        subject,
        artifact_type,
        annotations,
    })
}
