//! Secrets and configs: named blobs a service's tasks get as files (Docker's swarm
//! `/secrets` and `/configs`), as documents in berth's metadata database.
//!
//! A record keeps its spec as the API gave it (name, labels) and its data apart. The data
//! never changes (Docker allows only the labels to be updated): a new value is a new
//! object, which a service update then names. `version` is Docker's `Version.Index`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use berth_store::{DocChange, MetaDb};
use serde::{Deserialize, Serialize};

use crate::plan::Millis;
use crate::store::SCHEMA;

/// Which of the two an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Secret,
    Config,
}

impl ObjectKind {
    /// `secret` or `config`, as Docker's messages say.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::Config => "config",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret or a config. Its `Debug` leaves the value out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub schema: u32,
    pub kind: ObjectKind,
    pub id: String,
    pub name: String,
    pub version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub labels: BTreeMap<String, String>,
    /// The value, base64 in the document.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for ObjectRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRecord")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("labels", &self.labels)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish_non_exhaustive()
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{kind} {key} not found")]
    NotFound { kind: ObjectKind, key: String },
    #[error("{kind} {name} already exists")]
    NameInUse { kind: ObjectKind, name: String },
    #[error("{kind} {id}: update out of sequence (version {given}, the {kind} is at {current})")]
    OutOfSequence {
        kind: ObjectKind,
        id: String,
        given: u64,
        current: u64,
    },
    #[error("{kind} record {key}: {msg}")]
    Corrupt {
        kind: ObjectKind,
        key: String,
        msg: String,
    },
    #[error(transparent)]
    Db(#[from] berth_store::Error),
}

pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// The secrets' and configs' records. Writes are serialized here, so a name check and
/// its write are one step.
#[derive(Clone)]
pub struct ObjectStore {
    db: Arc<MetaDb>,
    write: Arc<Mutex<()>>,
}

fn doc_kind(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secret => "secret",
        ObjectKind::Config => "config",
    }
}

impl ObjectStore {
    pub fn new(db: Arc<MetaDb>) -> ObjectStore {
        ObjectStore {
            db,
            write: Arc::new(Mutex::new(())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn decode(kind: ObjectKind, key: &str, bytes: &[u8]) -> Result<ObjectRecord> {
        let rec: ObjectRecord =
            serde_json::from_slice(bytes).map_err(|e| ObjectError::Corrupt {
                kind,
                key: key.to_string(),
                msg: e.to_string(),
            })?;
        if rec.schema != SCHEMA {
            return Err(ObjectError::Corrupt {
                kind,
                key: key.to_string(),
                msg: format!("schema {}, this berth reads {SCHEMA}", rec.schema),
            });
        }
        Ok(rec)
    }

    fn put(&self, rec: &ObjectRecord) -> Result<()> {
        let doc = serde_json::to_vec(rec).map_err(|e| ObjectError::Corrupt {
            kind: rec.kind,
            key: rec.id.clone(),
            msg: e.to_string(),
        })?;
        self.db.write_docs(&[DocChange::Put {
            kind: doc_kind(rec.kind),
            key: &rec.id,
            doc: &doc,
        }])?;
        Ok(())
    }

    /// Every object of `kind`.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectRecord>> {
        self.db
            .docs(doc_kind(kind))?
            .iter()
            .map(|(k, v)| Self::decode(kind, k, v))
            .collect()
    }

    /// The object whose ID, name or unique ID prefix is `key` (Docker's lookup order).
    pub fn find(&self, kind: ObjectKind, key: &str) -> Result<ObjectRecord> {
        let not_found = || ObjectError::NotFound {
            kind,
            key: key.to_string(),
        };
        if key.is_empty() {
            return Err(not_found());
        }
        if let Some(b) = self.db.doc(doc_kind(kind), key)? {
            return Self::decode(kind, key, &b);
        }
        let all = self.list(kind)?;
        if let Some(o) = all.iter().find(|o| o.name == key) {
            return Ok(o.clone());
        }
        let mut by_prefix = all.into_iter().filter(|o| o.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(o), None) => Ok(o),
            _ => Err(not_found()),
        }
    }

    /// Records a new object; its name must be free among its kind.
    pub fn create(
        &self,
        kind: ObjectKind,
        id: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        data: Vec<u8>,
        now: Millis,
    ) -> Result<ObjectRecord> {
        let _g = self.lock();
        if self.list(kind)?.iter().any(|o| o.name == name) {
            return Err(ObjectError::NameInUse {
                kind,
                name: name.to_string(),
            });
        }
        let rec = ObjectRecord {
            schema: SCHEMA,
            kind,
            id: id.to_string(),
            name: name.to_string(),
            version: 1,
            created_at: now,
            updated_at: now,
            labels,
            data,
        };
        self.put(&rec)?;
        Ok(rec)
    }

    /// New labels, if `version` is the one stored.
    pub fn update_labels(
        &self,
        kind: ObjectKind,
        id: &str,
        version: u64,
        labels: BTreeMap<String, String>,
        now: Millis,
    ) -> Result<ObjectRecord> {
        let _g = self.lock();
        let mut rec = self.find(kind, id)?;
        if version != rec.version {
            return Err(ObjectError::OutOfSequence {
                kind,
                id: rec.id,
                given: version,
                current: rec.version,
            });
        }
        rec.labels = labels;
        rec.version += 1;
        rec.updated_at = now;
        self.put(&rec)?;
        Ok(rec)
    }

    /// Removes the object, after `check` (which may refuse: it is still in use) under
    /// the write lock.
    pub fn remove<E: From<ObjectError>>(
        &self,
        kind: ObjectKind,
        key: &str,
        check: impl FnOnce(&ObjectRecord) -> std::result::Result<(), E>,
    ) -> std::result::Result<ObjectRecord, E> {
        let _g = self.lock();
        let rec = self.find(kind, key)?;
        check(&rec)?;
        self.db
            .write_docs(&[DocChange::Delete {
                kind: doc_kind(kind),
                key: &rec.id,
            }])
            .map_err(ObjectError::from)?;
        Ok(rec)
    }

    /// The data of the objects with these IDs, for a task's files.
    pub fn data(&self, kind: ObjectKind, id: &str) -> Result<Vec<u8>> {
        match self.db.doc(doc_kind(kind), id)? {
            Some(b) => Ok(Self::decode(kind, id, &b)?.data),
            None => Err(ObjectError::NotFound {
                kind,
                key: id.to_string(),
            }),
        }
    }
}

/// The base64 Docker's JSON carries data in.
pub fn decode_base64(s: &str) -> std::result::Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(s.as_bytes())
}

/// Data as Docker's JSON carries it.
pub fn encode_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&dir.path().join("meta.redb")).unwrap();
        (dir, ObjectStore::new(Arc::new(db)))
    }

    #[test]
    fn names_are_unique_per_kind_and_lookups_take_id_name_or_prefix() {
        let (_d, s) = store();
        let a = s
            .create(
                ObjectKind::Secret,
                "abc123",
                "db",
                BTreeMap::new(),
                b"pw".to_vec(),
                1,
            )
            .unwrap();
        let err = s
            .create(
                ObjectKind::Secret,
                "def456",
                "db",
                BTreeMap::new(),
                b"x".to_vec(),
                2,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "secret db already exists");
        // A config of the same name is another object.
        s.create(
            ObjectKind::Config,
            "def456",
            "db",
            BTreeMap::new(),
            b"x".to_vec(),
            2,
        )
        .unwrap();
        for key in ["abc123", "db", "abc"] {
            assert_eq!(s.find(ObjectKind::Secret, key).unwrap(), a);
        }
        assert!(matches!(
            s.find(ObjectKind::Secret, "def"),
            Err(ObjectError::NotFound { .. })
        ));
        assert_eq!(s.data(ObjectKind::Secret, "abc123").unwrap(), b"pw");
        assert_eq!(s.list(ObjectKind::Config).unwrap().len(), 1);
    }

    #[test]
    fn labels_change_with_the_version_read_and_removal_can_be_refused() {
        let (_d, s) = store();
        s.create(
            ObjectKind::Config,
            "c1",
            "conf",
            BTreeMap::new(),
            b"a=1".to_vec(),
            1,
        )
        .unwrap();
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let err = s
            .update_labels(ObjectKind::Config, "c1", 5, labels.clone(), 2)
            .unwrap_err();
        assert!(err.to_string().contains("update out of sequence"), "{err}");
        let rec = s
            .update_labels(ObjectKind::Config, "conf", 1, labels.clone(), 2)
            .unwrap();
        assert_eq!(
            (rec.version, rec.labels, rec.data),
            (2, labels, b"a=1".to_vec())
        );
        let refused: std::result::Result<_, ObjectError> =
            s.remove(ObjectKind::Config, "conf", |o| {
                Err(ObjectError::NameInUse {
                    kind: o.kind,
                    name: o.name.clone(),
                })
            });
        assert!(refused.is_err());
        assert_eq!(s.list(ObjectKind::Config).unwrap().len(), 1);
        s.remove::<ObjectError>(ObjectKind::Config, "c1", |_| Ok(()))
            .unwrap();
        assert!(s.list(ObjectKind::Config).unwrap().is_empty());
    }
}
