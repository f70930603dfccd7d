//! Services' durable state: one record per service (its spec, the revisions it went
//! through with the image digest each resolved to, the rollout's state) and one per task
//! (slot, revision, container, desired state), as documents in berth's metadata database.
//!
//! A service's `version` is Docker's `Version.Index`: every change of the record raises
//! it, and an update must name the version it read (`update out of sequence` otherwise),
//! as swarmkit's optimistic concurrency does. Revisions are berth's own: the numbered
//! specs tasks run from; a rollback makes an earlier revision current again, so its
//! tasks are the right ones and a tag that moved since is never looked up again.

use std::sync::{Arc, Mutex};

use berth_store::{DocChange, MetaDb};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::plan::{Millis, Reason, Rollout};

/// The schema version of the documents below.
pub const SCHEMA: u32 = 1;
const SERVICE: &str = "service";
const TASK: &str = "task";
/// Revisions kept per service (the current one and the one before it always are).
pub const REVISIONS_KEPT: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("service {0} not found")]
    NotFound(String),
    #[error("service name {0:?} is already in use")]
    NameInUse(String),
    #[error("service {id}: update out of sequence (version {given}, the service is at {current})")]
    OutOfSequence {
        id: String,
        given: u64,
        current: u64,
    },
    #[error("service {0} does not have a previous spec")]
    NoPrevious(String),
    #[error("service {id}: revision {revision} is not kept")]
    NoRevision { id: String, revision: u64 },
    #[error("{what} record {key}: schema {found}, this berth reads {SCHEMA}")]
    Schema {
        what: &'static str,
        key: String,
        found: u32,
    },
    #[error("{what} record {key}: {msg}")]
    Corrupt {
        what: &'static str,
        key: String,
        msg: String,
    },
    #[error(transparent)]
    Db(#[from] berth_store::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One numbered spec of a service, with the image digest it resolved to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revision<S> {
    pub number: u64,
    pub spec: S,
    /// `sha256:…` of the image the spec's reference resolved to when it was recorded.
    pub image_digest: String,
    pub created_at: Millis,
}

/// A service's record. `S` is the spec as the API gave it (Docker's `ServiceSpec`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord<S> {
    pub schema: u32,
    pub id: String,
    pub name: String,
    pub version: u64,
    /// The version of the last change of the spec (create, update, rollback): an update
    /// naming any version from this one on is in sequence. A change of the rollout's
    /// state alone raises `version` (Docker shows it changed) but does not make a
    /// client's read of the spec stale: Docker refuses such an update, berth takes it.
    #[serde(default)]
    pub spec_version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The revision tasks must run.
    pub revision: u64,
    /// The revision before the last update (a rollback's target).
    pub previous: Option<u64>,
    /// Kept revisions, oldest first.
    pub revisions: Vec<Revision<S>>,
    pub rollout: Rollout,
    pub rollout_started_at: Millis,
    pub rollout_completed_at: Option<Millis>,
}

impl<S> ServiceRecord<S> {
    pub fn current(&self) -> Option<&Revision<S>> {
        self.revision_of(self.revision)
    }

    pub fn revision_of(&self, n: u64) -> Option<&Revision<S>> {
        self.revisions.iter().find(|r| r.number == n)
    }

    fn next_number(&self) -> u64 {
        self.revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1
    }
}

/// A task's record (its container is labelled with the same ids).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub schema: u32,
    pub id: String,
    pub service_id: String,
    pub slot: u64,
    pub revision: u64,
    /// The container, once created.
    pub container_id: Option<String>,
    pub created_at: Millis,
    /// Set once the task's desired state is shutdown.
    pub shutdown: Option<Reason>,
    /// When the task was first seen ready (running, healthy where it has a check).
    pub ready_at: Option<Millis>,
    /// When the task ended without its container saying so: its container could not be
    /// created or started, or was removed or lost its shim.
    #[serde(default)]
    pub ended_at: Option<Millis>,
    /// Why the task failed before or outside its container's run (Docker's
    /// `Status.Err`).
    #[serde(default)]
    pub error: Option<String>,
}

/// The services' records, over the metadata database. Writes are serialized here (one
/// daemon holds the state root), so a read-check-write is atomic.
#[derive(Clone)]
pub struct ServiceStore {
    db: Arc<MetaDb>,
    write: Arc<Mutex<()>>,
}

fn decode<T: DeserializeOwned>(what: &'static str, key: &str, bytes: &[u8]) -> Result<T> {
    #[derive(Deserialize)]
    struct Head {
        schema: u32,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        key: key.to_string(),
        msg: e.to_string(),
    })?;
    if head.schema != SCHEMA {
        return Err(StoreError::Schema {
            what,
            key: key.to_string(),
            found: head.schema,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        key: key.to_string(),
        msg: e.to_string(),
    })
}

fn encode<T: Serialize>(what: &'static str, key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt {
        what,
        key: key.to_string(),
        msg: e.to_string(),
    })
}

impl ServiceStore {
    pub fn new(db: Arc<MetaDb>) -> ServiceStore {
        ServiceStore {
            db,
            write: Arc::new(Mutex::new(())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn service<S: DeserializeOwned>(&self, id: &str) -> Result<ServiceRecord<S>> {
        match self.db.doc(SERVICE, id)? {
            Some(b) => decode("service", id, &b),
            None => Err(StoreError::NotFound(id.to_string())),
        }
    }

    pub fn services<S: DeserializeOwned>(&self) -> Result<Vec<ServiceRecord<S>>> {
        self.db
            .docs(SERVICE)?
            .iter()
            .map(|(k, v)| decode("service", k, v))
            .collect()
    }

    /// The service whose ID, name or unique ID prefix is `key` (Docker's lookup order).
    pub fn find<S: DeserializeOwned>(&self, key: &str) -> Result<ServiceRecord<S>> {
        let all: Vec<ServiceRecord<S>> = self.services()?;
        let mut by_prefix = Vec::new();
        for s in all {
            if s.id == key || s.name == key {
                return Ok(s);
            }
            if !key.is_empty() && s.id.starts_with(key) {
                by_prefix.push(s);
            }
        }
        match by_prefix.len() {
            1 => Ok(by_prefix.remove(0)),
            _ => Err(StoreError::NotFound(key.to_string())),
        }
    }

    /// Records a new service at revision 1.
    pub fn create<S: Serialize + DeserializeOwned + Clone>(
        &self,
        id: &str,
        name: &str,
        spec: S,
        image_digest: &str,
        now: Millis,
    ) -> Result<ServiceRecord<S>> {
        let _g = self.lock();
        let existing: Vec<ServiceRecord<serde_json::Value>> = self.services()?;
        if existing.iter().any(|s| s.name == name) {
            return Err(StoreError::NameInUse(name.to_string()));
        }
        let rec = ServiceRecord {
            schema: SCHEMA,
            id: id.to_string(),
            name: name.to_string(),
            version: 1,
            spec_version: 1,
            created_at: now,
            updated_at: now,
            revision: 1,
            previous: None,
            revisions: vec![Revision {
                number: 1,
                spec,
                image_digest: image_digest.to_string(),
                created_at: now,
            }],
            rollout: Rollout::Completed,
            rollout_started_at: now,
            rollout_completed_at: None,
        };
        self.put(&rec)?;
        Ok(rec)
    }

    fn put<S: Serialize>(&self, rec: &ServiceRecord<S>) -> Result<()> {
        let doc = encode("service", &rec.id, rec)?;
        self.db.write_docs(&[DocChange::Put {
            kind: SERVICE,
            key: &rec.id,
            doc: &doc,
        }])?;
        Ok(())
    }

    /// Applies `change` to the service's record if `version` is the one stored, raises
    /// the version and stores it.
    fn change<S: Serialize + DeserializeOwned>(
        &self,
        id: &str,
        version: Option<u64>,
        now: Millis,
        spec_change: bool,
        change: impl FnOnce(&mut ServiceRecord<S>) -> Result<()>,
    ) -> Result<ServiceRecord<S>> {
        let _g = self.lock();
        let mut rec: ServiceRecord<S> = self.service(id)?;
        if let Some(v) = version {
            if v < rec.spec_version || v > rec.version {
                return Err(StoreError::OutOfSequence {
                    id: id.to_string(),
                    given: v,
                    current: rec.version,
                });
            }
        }
        change(&mut rec)?;
        rec.version += 1;
        if spec_change {
            rec.spec_version = rec.version;
        }
        rec.updated_at = now;
        self.put(&rec)?;
        Ok(rec)
    }

    /// A new revision from `spec` (`docker service update`): the rollout starts.
    pub fn update<S: Serialize + DeserializeOwned>(
        &self,
        id: &str,
        version: u64,
        spec: S,
        image_digest: &str,
        now: Millis,
    ) -> Result<ServiceRecord<S>> {
        self.change(id, Some(version), now, true, |rec| {
            let number = rec.next_number();
            rec.revisions.push(Revision {
                number,
                spec,
                image_digest: image_digest.to_string(),
                created_at: now,
            });
            rec.previous = Some(rec.revision);
            rec.revision = number;
            rec.rollout = Rollout::Updating;
            rec.rollout_started_at = now;
            rec.rollout_completed_at = None;
            prune(rec);
            Ok(())
        })
    }

    /// A change that leaves the tasks as they are (the replica count, the service's
    /// labels, the update and rollback settings: the task template is the same): the
    /// current revision's spec is replaced, no rollout starts. `version` is checked.
    pub fn respec<S: Serialize + DeserializeOwned>(
        &self,
        id: &str,
        version: u64,
        spec: S,
        now: Millis,
    ) -> Result<ServiceRecord<S>> {
        self.change(id, Some(version), now, true, |rec| {
            let current = rec.revision;
            match rec.revisions.iter_mut().find(|r| r.number == current) {
                Some(r) => {
                    r.spec = spec;
                    Ok(())
                }
                None => Err(StoreError::NoRevision {
                    id: id.to_string(),
                    revision: current,
                }),
            }
        })
    }

    /// Makes `to` (default: the previous revision) current again and starts a rollback
    /// (`docker service rollback`, `berth service rollback --to`, `failure_action:
    /// rollback`). `version` is checked when given.
    pub fn rollback<S: Serialize + DeserializeOwned>(
        &self,
        id: &str,
        version: Option<u64>,
        to: Option<u64>,
        now: Millis,
    ) -> Result<ServiceRecord<S>> {
        self.change(id, version, now, true, |rec| {
            let target = match to.or(rec.previous) {
                Some(t) => t,
                None => return Err(StoreError::NoPrevious(id.to_string())),
            };
            if rec.revision_of(target).is_none() {
                return Err(StoreError::NoRevision {
                    id: id.to_string(),
                    revision: target,
                });
            }
            rec.previous = Some(rec.revision);
            rec.revision = target;
            rec.rollout = Rollout::RollbackStarted;
            rec.rollout_started_at = now;
            rec.rollout_completed_at = None;
            Ok(())
        })
    }

    /// Records the rollout's new state (the reconcile loop's [`crate::Action::Rollout`]).
    pub fn set_rollout<S: Serialize + DeserializeOwned>(
        &self,
        id: &str,
        rollout: Rollout,
        now: Millis,
    ) -> Result<ServiceRecord<S>> {
        self.change(id, None, now, false, |rec| {
            if matches!(rollout, Rollout::Completed | Rollout::RollbackCompleted) {
                rec.rollout_completed_at = Some(now);
            }
            rec.rollout = rollout;
            Ok(())
        })
    }

    /// Removes the service's record and its tasks' records.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _g = self.lock();
        if self.db.doc(SERVICE, id)?.is_none() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let tasks = self.tasks(Some(id))?;
        let mut changes = vec![DocChange::Delete {
            kind: SERVICE,
            key: id,
        }];
        changes.extend(tasks.iter().map(|t| DocChange::Delete {
            kind: TASK,
            key: &t.id,
        }));
        self.db.write_docs(&changes)?;
        Ok(())
    }

    /// Every task, or a service's.
    pub fn tasks(&self, service: Option<&str>) -> Result<Vec<TaskRecord>> {
        let mut out = Vec::new();
        for (k, v) in self.db.docs(TASK)? {
            let t: TaskRecord = decode("task", &k, &v)?;
            if service.is_none_or(|s| s == t.service_id) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Writes a task's record, if its service still exists (checked under the write
    /// lock, so a task the loop creates while its service is removed is refused, not
    /// left behind with no service to remove it).
    pub fn put_task(&self, task: &TaskRecord) -> Result<()> {
        let _g = self.lock();
        if self.db.doc(SERVICE, &task.service_id)?.is_none() {
            return Err(StoreError::NotFound(task.service_id.clone()));
        }
        let doc = encode("task", &task.id, task)?;
        self.db.write_docs(&[DocChange::Put {
            kind: TASK,
            key: &task.id,
            doc: &doc,
        }])?;
        Ok(())
    }

    /// Removes the records of tasks whose service is gone (left by an older berth);
    /// returns how many.
    pub fn prune_orphan_tasks(&self) -> Result<usize> {
        let _g = self.lock();
        let services: Vec<ServiceRecord<serde_json::Value>> = self.services()?;
        let orphans: Vec<TaskRecord> = self
            .tasks(None)?
            .into_iter()
            .filter(|t| !services.iter().any(|s| s.id == t.service_id))
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let changes: Vec<DocChange<'_>> = orphans
            .iter()
            .map(|t| DocChange::Delete {
                kind: TASK,
                key: &t.id,
            })
            .collect();
        self.db.write_docs(&changes)?;
        Ok(orphans.len())
    }

    pub fn remove_task(&self, id: &str) -> Result<()> {
        self.db.write_docs(&[DocChange::Delete {
            kind: TASK,
            key: id,
        }])?;
        Ok(())
    }
}

/// Keeps the newest [`REVISIONS_KEPT`] revisions, always with the current and previous.
fn prune<S>(rec: &mut ServiceRecord<S>) {
    while rec.revisions.len() > REVISIONS_KEPT {
        let keep = [Some(rec.revision), rec.previous];
        match rec
            .revisions
            .iter()
            .position(|r| !keep.contains(&Some(r.number)))
        {
            Some(i) => {
                rec.revisions.remove(i);
            }
            None => break,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn store() -> (tempfile::TempDir, ServiceStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&dir.path().join("meta.redb")).unwrap();
        (dir, ServiceStore::new(Arc::new(db)))
    }

    #[test]
    fn updates_need_the_version_they_read_and_keep_revisions() {
        let (_d, s) = store();
        let rec = s
            .create("id1", "web", json!({"Image": "a:1"}), "sha256:a1", 10)
            .unwrap();
        assert_eq!((rec.version, rec.revision), (1, 1));
        let err = s
            .update::<Value>("id1", 7, json!({"Image": "a:2"}), "sha256:a2", 20)
            .unwrap_err();
        assert!(err.to_string().contains("update out of sequence"), "{err}");
        let rec = s
            .update::<Value>("id1", 1, json!({"Image": "a:2"}), "sha256:a2", 20)
            .unwrap();
        assert_eq!((rec.version, rec.revision, rec.previous), (2, 2, Some(1)));
        assert_eq!(rec.rollout, Rollout::Updating);
        let rec = s.rollback::<Value>("id1", None, None, 30).unwrap();
        assert_eq!((rec.revision, rec.previous), (1, Some(2)));
        assert_eq!(rec.current().unwrap().image_digest, "sha256:a1");
        assert_eq!(rec.rollout, Rollout::RollbackStarted);
        // Found by name, the stored record is the one returned.
        let again: ServiceRecord<Value> = s.find("web").unwrap();
        assert_eq!(again, rec);
    }

    #[test]
    fn names_are_unique_and_lookups_follow_docker() {
        let (_d, s) = store();
        s.create("abc123", "web", json!({}), "sha256:x", 1).unwrap();
        let e = s
            .create("def456", "web", json!({}), "sha256:x", 1)
            .unwrap_err();
        assert!(matches!(e, StoreError::NameInUse(_)), "{e}");
        s.create("abd999", "db", json!({}), "sha256:x", 1).unwrap();
        assert_eq!(s.find::<Value>("abc").unwrap().name, "web");
        assert!(s.find::<Value>("ab").is_err(), "an ambiguous prefix");
        assert!(matches!(
            s.rollback::<Value>("abc123", None, None, 2),
            Err(StoreError::NoPrevious(_))
        ));
    }

    #[test]
    fn old_revisions_are_pruned_but_the_previous_one_is_kept() {
        let (_d, s) = store();
        s.create("id", "web", json!(0), "sha256:0", 0).unwrap();
        for v in 1..=15u64 {
            s.update::<Value>("id", v, json!(v), "sha256:x", v).unwrap();
        }
        let rec: ServiceRecord<Value> = s.service("id").unwrap();
        assert_eq!(rec.revisions.len(), REVISIONS_KEPT);
        assert_eq!(rec.revision, 16);
        assert!(rec.revision_of(15).is_some());
        let e = s.rollback::<Value>("id", None, Some(2), 99).unwrap_err();
        assert!(e.to_string().contains("revision 2 is not kept"), "{e}");
    }

    #[test]
    fn a_rollout_state_change_does_not_make_a_read_of_the_spec_stale() {
        let (_d, s) = store();
        s.create("a", "web", json!({"r": 1}), "sha256:x", 1)
            .unwrap();
        let r = s.update("a", 1, json!({"r": 2}), "sha256:y", 2).unwrap();
        assert_eq!((r.version, r.spec_version), (2, 2));
        // The client read version 2; the loop then records the rollout complete.
        let r = s
            .set_rollout::<serde_json::Value>("a", Rollout::Completed, 3)
            .unwrap();
        assert_eq!((r.version, r.spec_version), (3, 2));
        let r = s.respec("a", 2, json!({"r": 3}), 4).unwrap();
        assert_eq!((r.version, r.spec_version), (4, 4));
        // A read from before that spec change is stale; one from the future is wrong.
        for v in [3, 5] {
            assert!(matches!(
                s.respec("a", v, json!({"r": 9}), 5),
                Err(StoreError::OutOfSequence { .. })
            ));
        }
        // An automatic rollback is a change of the spec too.
        let r = s.rollback::<serde_json::Value>("a", None, None, 6).unwrap();
        assert_eq!(r.spec_version, r.version);
    }

    #[test]
    fn respec_keeps_the_revision_and_checks_the_version() {
        let (_d, s) = store();
        s.create("a", "web", json!({"r": 1}), "sha256:x", 1)
            .unwrap();
        let r = s.respec("a", 1, json!({"r": 3}), 2).unwrap();
        assert_eq!((r.revision, r.version, r.revisions.len()), (1, 2, 1));
        assert_eq!(r.current().unwrap().spec, json!({"r": 3}));
        assert_eq!(r.rollout, Rollout::Completed);
        assert!(matches!(
            s.respec("a", 1, json!({"r": 4}), 3),
            Err(StoreError::OutOfSequence { .. })
        ));
    }

    #[test]
    fn removing_a_service_removes_its_tasks_only() {
        let (_d, s) = store();
        s.create("a", "web", json!({}), "sha256:x", 1).unwrap();
        s.create("b", "db", json!({}), "sha256:x", 1).unwrap();
        for (id, svc) in [("t1", "a"), ("t2", "a"), ("t3", "b")] {
            s.put_task(&TaskRecord {
                schema: SCHEMA,
                id: id.into(),
                service_id: svc.into(),
                slot: 1,
                revision: 1,
                container_id: None,
                created_at: 1,
                shutdown: None,
                ready_at: None,
                ended_at: None,
                error: None,
            })
            .unwrap();
        }
        s.remove("a").unwrap();
        let left: Vec<String> = s.tasks(None).unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(left, ["t3"]);
        assert!(matches!(s.remove("a"), Err(StoreError::NotFound(_))));
        // A task of the removed service written afterwards (the loop was creating it)
        // is refused; one left by an older berth is pruned.
        let late = TaskRecord {
            schema: SCHEMA,
            id: "t4".into(),
            service_id: "a".into(),
            slot: 1,
            revision: 1,
            container_id: None,
            created_at: 1,
            shutdown: None,
            ready_at: None,
            ended_at: None,
            error: None,
        };
        assert!(matches!(s.put_task(&late), Err(StoreError::NotFound(_))));
        let doc = serde_json::to_vec(&late).unwrap();
        s.db.write_docs(&[DocChange::Put {
            kind: TASK,
            key: "t4",
            doc: &doc,
        }])
        .unwrap();
        assert_eq!(s.prune_orphan_tasks().unwrap(), 1);
        let left: Vec<String> = s.tasks(None).unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(left, ["t3"]);
    }

    #[test]
    fn a_record_of_another_schema_is_refused_by_name() {
        let (_d, s) = store();
        s.db.write_docs(&[DocChange::Put {
            kind: SERVICE,
            key: "x",
            doc: br#"{"schema": 9}"#,
        }])
        .unwrap();
        let e = s.service::<Value>("x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service record x: schema 9, this berth reads 1"
        );
    }
}
