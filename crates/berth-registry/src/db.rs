//! The registry's own metadata database, `ROOT/registry.redb` (redb: ACID, fsync on
//! commit), next to the content store it shares the blob code with.
//!
//! Tables (registry schema version 1):
//! - `meta`: `"schema_version"` -> `"1"`
//! - `repos`: repository name -> `()` (a repository exists once a blob or manifest was
//!   pushed into it)
//! - `blob_links`: (repository, digest) -> size; a blob is visible in a repository only
//!   through its link, although the content store keeps one copy for all
//! - `manifests`: (repository, digest) -> JSON [`ManifestRecord`]
//! - `tags`: (repository, tag) -> manifest digest

use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;

use berth_types::Digest;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const REGISTRY_SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const REPOS: TableDefinition<&str, ()> = TableDefinition::new("repos");
const BLOB_LINKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("blob_links");
const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");

/// A manifest stored in a repository; its bytes are the blob with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    /// Every blob and child manifest it references (GC roots).
    pub refs: Vec<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// `artifactType`, else the config's media type (for the referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct RegistryDb {
    db: Database,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Db(format!("{what}: {e}"))
}

type KeyRange<'a> = (Bound<(&'a str, &'a str)>, Bound<(&'a str, &'a str)>);

/// Keys of one repository in a table keyed (repository, X), after `after` when given.
fn repo_range<'a>(repo: &'a str, after: Option<&'a str>) -> KeyRange<'a> {
    let start = match after {
        Some(a) => Bound::Excluded((repo, a)),
        None => Bound::Included((repo, "")),
    };
    (start, Bound::Unbounded)
}

impl RegistryDb {
    pub fn open(path: &Path) -> Result<RegistryDb> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value().to_string());
            match found {
                None => {
                    meta.insert(
                        "schema_version",
                        REGISTRY_SCHEMA_VERSION.to_string().as_str(),
                    )?;
                }
                Some(v) if v == REGISTRY_SCHEMA_VERSION.to_string() => {}
                Some(v) => {
                    return Err(Error::Db(format!(
                        "{}: registry schema version {v} is not supported (this berth supports {REGISTRY_SCHEMA_VERSION}); refusing to open it",
                        path.display()
                    )))
                }
            }
            txn.open_table(REPOS)?;
            txn.open_table(BLOB_LINKS)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(TAGS)?;
        }
        txn.commit()?;
        Ok(RegistryDb { db })
    }

    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(REPOS)?.get(repo)?.is_some())
    }

    /// Size of a blob linked into `repo`, or `None` when it is not linked there.
    pub fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let d = digest.to_string();
        Ok(txn
            .open_table(BLOB_LINKS)?
            .get((repo, d.as_str()))?
            .map(|v| v.value()))
    }

    /// Links a blob into a repository (creating the repository).
    pub fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(REPOS)?.insert(repo, ())?;
            let d = digest.to_string();
            txn.open_table(BLOB_LINKS)?
                .insert((repo, d.as_str()), size)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes a blob link; `false` when there was none.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let removed = {
            let d = digest.to_string();
            let mut t = txn.open_table(BLOB_LINKS)?;
            let removed = t.remove((repo, d.as_str()))?.is_some();
            removed
        };
        txn.commit()?;
        Ok(removed)
    }

    pub fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let txn = self.db.begin_read()?;
        let d = digest.to_string();
        let t = txn.open_table(MANIFESTS)?;
        let Some(v) = t.get((repo, d.as_str()))? else {
            return Ok(None);
        };
        let rec = serde_json::from_slice(v.value())
            .map_err(|e| corrupt(&format!("manifest record {repo}@{d}"), e))?;
        Ok(Some(rec))
    }

    /// Stores a manifest record and, with `tag`, points the tag at it, in one transaction.
    /// With `immutable` (the rule's pattern), a tag already pointing elsewhere is refused.
    /// Returns the digest the tag pointed at before.
    pub fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        rec: &ManifestRecord,
        tag: Option<&str>,
        immutable: Option<&str>,
    ) -> Result<Option<Digest>> {
        let bytes = serde_json::to_vec(rec).map_err(|e| corrupt("encode manifest record", e))?;
        let d = digest.to_string();
        let txn = self.db.begin_write()?;
        let mut previous = None;
        {
            if let Some(tag) = tag {
                let mut tags = txn.open_table(TAGS)?;
                let old = tags.get((repo, tag))?.map(|v| v.value().to_string());
                if let Some(old) = old {
                    if let (Some(rule), true) = (immutable, old != d) {
                        return Err(Error::Denied(format!(
                            "tag {tag} of repository {repo} is immutable (rule: {rule}): it points at {old}, not {d}"
                        )));
                    }
                    previous = Some(
                        old.parse()
                            .map_err(|e| corrupt(&format!("tag {repo}:{tag}"), e))?,
                    );
                }
                tags.insert((repo, tag), d.as_str())?;
            }
            txn.open_table(REPOS)?.insert(repo, ())?;
            txn.open_table(MANIFESTS)?
                .insert((repo, d.as_str()), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(previous)
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(TAGS)?;
        let Some(v) = t.get((repo, tag))? else {
            return Ok(None);
        };
        let d = v
            .value()
            .parse()
            .map_err(|e| corrupt(&format!("tag {repo}:{tag}"), e))?;
        Ok(Some(d))
    }

    /// Removes a tag; `false` when there was none.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut t = txn.open_table(TAGS)?;
            let removed = t.remove((repo, tag))?.is_some();
            removed
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Removes a manifest and every tag pointing at it; `false` when it was not there.
    /// With `immutable` (the rule's pattern), a manifest that a tag points at is refused.
    pub fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        immutable: Option<&str>,
    ) -> Result<bool> {
        let d = digest.to_string();
        let txn = self.db.begin_write()?;
        let removed = {
            let mut m = txn.open_table(MANIFESTS)?;
            let removed = m.remove((repo, d.as_str()))?.is_some();
            let mut tags = txn.open_table(TAGS)?;
            let mut doomed = Vec::new();
            for entry in tags.range(repo_range(repo, None))? {
                let (k, v) = entry?;
                let (r, t) = k.value();
                if r != repo {
                    break;
                }
                if v.value() == d {
                    doomed.push(t.to_string());
                }
            }
            if let (Some(rule), Some(t)) = (immutable, doomed.first()) {
                return Err(Error::Denied(format!(
                    "manifest {d} of repository {repo} is tagged {t}, and tags there are immutable (rule: {rule}); it cannot be deleted"
                )));
            }
            for t in &doomed {
                tags.remove((repo, t.as_str()))?;
            }
            removed
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Up to `n` tags of `repo` in lexical order after `last`; the flag says whether more
    /// follow.
    pub fn tags(&self, repo: &str, n: usize, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(TAGS)?;
        let mut out = Vec::new();
        for entry in t.range(repo_range(repo, last))? {
            let (k, _) = entry?;
            let (r, tag) = k.value();
            if r != repo {
                break;
            }
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(tag.to_string());
        }
        Ok((out, false))
    }

    /// Up to `n` repository names after `last`; the flag says whether more follow.
    pub fn repos(&self, n: usize, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(REPOS)?;
        let start = match last {
            Some(l) => Bound::Excluded(l),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in t.range::<&str>((start, Bound::Unbounded))? {
            let (k, _) = entry?;
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(k.value().to_string());
        }
        Ok((out, false))
    }

    /// Every manifest of `repo` with its digest.
    pub fn manifests(&self, repo: &str) -> Result<Vec<(Digest, ManifestRecord)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MANIFESTS)?;
        let mut out = Vec::new();
        for entry in t.range(repo_range(repo, None))? {
            let (k, v) = entry?;
            let (r, d) = k.value();
            if r != repo {
                break;
            }
            let digest = d
                .parse()
                .map_err(|e| corrupt(&format!("manifest key {repo}@{d}"), e))?;
            let rec = serde_json::from_slice(v.value())
                .map_err(|e| corrupt(&format!("manifest record {repo}@{d}"), e))?;
            out.push((digest, rec));
        }
        Ok(out)
    }

    /// Every blob any repository links or any manifest references, and the manifests
    /// themselves: the registry's GC roots.
    pub fn referenced_blobs(&self) -> Result<HashSet<Digest>> {
        let txn = self.db.begin_read()?;
        let mut out = HashSet::new();
        for entry in txn.open_table(BLOB_LINKS)?.iter()? {
            let (k, _) = entry?;
            let (r, d) = k.value();
            out.insert(
                d.parse()
                    .map_err(|e| corrupt(&format!("blob link {r}@{d}"), e))?,
            );
        }
        for entry in txn.open_table(MANIFESTS)?.iter()? {
            let (k, v) = entry?;
            let (r, d) = k.value();
            out.insert(
                d.parse()
                    .map_err(|e| corrupt(&format!("manifest key {r}@{d}"), e))?,
            );
            let rec: ManifestRecord = serde_json::from_slice(v.value())
                .map_err(|e| corrupt(&format!("manifest record {r}@{d}"), e))?;
            out.extend(rec.refs);
        }
        Ok(out)
    }
}
