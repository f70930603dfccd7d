//! Swarm secrets and configs (Docker's `/secrets` and `/configs`) and the files a
//! service's tasks get from them.
//!
//! The objects live in the metadata database (`berth_services::ObjectStore`), inside the
//! state root (0700): berth's secrets are as safe at rest as the state root is, the same
//! as Docker's unencrypted raft log without autolock. A task never finds one on a disk:
//! at each start the engine mounts a tmpfs of its own in the container's directory
//! (`files/`, 0700, never swapped out of berth's reach), writes each file there with the
//! owner and mode the reference asks for (shifted into a remapped container's range), and
//! the spec binds each file read-only at its target (`/run/secrets/NAME` for a secret,
//! `/NAME` for a config, unless the reference names an absolute path). The tmpfs goes
//! when the container stops or is removed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_services::objects::ObjectError;
pub use berth_services::objects::{decode_base64, encode_base64};
use berth_services::ObjectStore;
pub use berth_services::{ObjectKind, ObjectRecord};
use berth_types::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::containers::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::Engine;

/// The largest secret or config (Docker's limit).
pub const MAX_DATA: usize = 500 * 1024;
/// The longest name (Docker's limit).
const MAX_NAME: usize = 64;
/// The tmpfs of a container's task files, in its directory.
pub(crate) const FILES_DIR: &str = "files";
/// Where a secret goes when its reference names a relative target.
const SECRETS_PATH: &str = "/run/secrets";

/// A file a task gets from a secret or a config (`ContainerSpec.Secrets` / `.Configs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskFile {
    pub kind: ObjectKind,
    /// The object's ID and name as the reference gives them (both must match).
    pub id: String,
    pub name: String,
    /// The file's path in the container, absolute.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl TaskFile {
    /// The target of a reference's `File.Name`: absolute as given, else under
    /// `/run/secrets` (a secret) or `/` (a config), as Docker places them.
    pub fn target_of(kind: ObjectKind, name: &str) -> String {
        if name.starts_with('/') {
            return name.to_string();
        }
        match kind {
            ObjectKind::Secret => format!("{SECRETS_PATH}/{name}"),
            ObjectKind::Config => format!("/{name}"),
        }
    }
}

fn object_err(e: ObjectError) -> EngineError {
    match e {
        ObjectError::NotFound { kind, key } => {
            EngineError::not_found(format!("{kind} {key} not found"))
        }
        ObjectError::NameInUse { kind, name } => EngineError::conflict(format!(
            "rpc error: code = AlreadyExists desc = {kind} {name} already exists"
        )),
        e @ ObjectError::OutOfSequence { .. } => EngineError::invalid(format!(
            "rpc error: code = Unknown desc = update out of sequence ({e})"
        )),
        e => EngineError::internal(e.to_string()),
    }
}

impl From<ObjectError> for EngineError {
    fn from(e: ObjectError) -> EngineError {
        object_err(e)
    }
}

/// Docker's rule on secret and config names.
fn check_name(kind: ObjectKind, name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(format!(
            "rpc error: code = InvalidArgument desc = {kind} name {name:?} is invalid: only {MAX_NAME} [a-zA-Z0-9-_.] characters are allowed, and the start and end character must be [a-zA-Z0-9]"
        )))
    }
}

/// The IDs of `kind` a service spec's task template refers to.
pub(crate) fn referenced_ids(spec: &Value, kind: ObjectKind) -> Vec<String> {
    let (list, id_key) = match kind {
        ObjectKind::Secret => ("Secrets", "SecretID"),
        ObjectKind::Config => ("Configs", "ConfigID"),
    };
    spec.pointer(&format!("/TaskTemplate/ContainerSpec/{list}"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get(id_key).and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Engine {
    fn object_store(&self) -> ObjectStore {
        ObjectStore::new(self.store().meta.clone())
    }

    /// `POST /secrets/create`, `POST /configs/create`.
    pub fn create_object(
        &self,
        kind: ObjectKind,
        name: &str,
        labels: BTreeMap<String, String>,
        data: Vec<u8>,
    ) -> Result<ObjectRecord> {
        self.swarm_required()?;
        check_name(kind, name)?;
        if data.is_empty() || data.len() > MAX_DATA {
            return Err(EngineError::invalid(format!(
                "rpc error: code = InvalidArgument desc = {kind} {name}: data must be larger than 0 and less than 500KB (it is {} bytes)",
                data.len()
            )));
        }
        let id = crate::swarm::base36(25)?;
        let rec = self
            .object_store()
            .create(kind, &id, name, labels, data, now_ms())?;
        info!(object.kind = %kind, object.id = %id, object.name = name, "created");
        self.emit_object(&rec, "create");
        Ok(rec)
    }

    /// Every secret or config.
    pub fn objects(&self, kind: ObjectKind) -> Result<Vec<ObjectRecord>> {
        self.swarm_required()?;
        Ok(self.object_store().list(kind)?)
    }

    /// The secret or config whose ID, name or unique ID prefix is `key`.
    pub fn object(&self, kind: ObjectKind, key: &str) -> Result<ObjectRecord> {
        self.swarm_required()?;
        Ok(self.object_store().find(kind, key)?)
    }

    /// `POST /secrets/{id}/update`: only the labels change (Docker's rule); `data`, when
    /// the client sends it, must be the value the object has.
    pub fn update_object(
        &self,
        kind: ObjectKind,
        key: &str,
        version: u64,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        data: Option<Vec<u8>>,
    ) -> Result<ObjectRecord> {
        self.swarm_required()?;
        let store = self.object_store();
        let cur = store.find(kind, key)?;
        let renamed = name.is_some_and(|n| !n.is_empty() && n != cur.name);
        let new_data = data.is_some_and(|d| !d.is_empty() && d != cur.data);
        if renamed || new_data {
            return Err(EngineError::invalid(format!(
                "rpc error: code = InvalidArgument desc = only updates to Labels are allowed ({kind} {}: create a new {kind} for a new value or name)",
                cur.name
            )));
        }
        let rec = store.update_labels(kind, &cur.id, version, labels, now_ms())?;
        self.emit_object(&rec, "update");
        Ok(rec)
    }

    /// `DELETE /secrets/{id}`: refused while a service's spec refers to it.
    pub fn remove_object(&self, kind: ObjectKind, key: &str) -> Result<()> {
        self.swarm_required()?;
        let services: Vec<crate::services::Service> = self
            .service_store()
            .services()
            .map_err(|e| EngineError::internal(e.to_string()))?;
        let rec = self.object_store().remove(kind, key, |o| {
            let users: Vec<&str> = services
                .iter()
                .filter(|s| {
                    s.current()
                        .is_some_and(|r| referenced_ids(&r.spec, kind).contains(&o.id))
                })
                .map(|s| s.name.as_str())
                .collect();
            if users.is_empty() {
                return Ok(());
            }
            Err(EngineError::invalid(format!(
                "rpc error: code = InvalidArgument desc = {kind} '{}' is in use by the following service{}: {}",
                o.name,
                if users.len() > 1 { "s" } else { "" },
                users.join(", ")
            )))
        })?;
        info!(object.kind = %kind, object.id = %rec.id, object.name = %rec.name, "removed");
        self.emit_object(&rec, "remove");
        Ok(())
    }

    /// `swarm leave --force`: the secrets and configs go with the swarm.
    pub(crate) fn remove_all_objects(&self) -> Result<()> {
        let store = self.object_store();
        for kind in [ObjectKind::Secret, ObjectKind::Config] {
            for o in store.list(kind)? {
                store.remove::<ObjectError>(kind, &o.id, |_| Ok(()))?;
                self.emit_object(&o, "remove");
            }
        }
        Ok(())
    }

    fn emit_object(&self, o: &ObjectRecord, action: &str) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), o.name.clone());
        let ty = match o.kind {
            ObjectKind::Secret => crate::events::EventType::Secret,
            ObjectKind::Config => crate::events::EventType::Config,
        };
        self.emit(ty, action, o.id.clone(), attrs);
    }

    /// A task's references must name objects that exist, by ID and name (swarmkit's
    /// check at service create and update), and no two may share a target.
    pub(crate) fn check_task_files(&self, files: &[TaskFile]) -> Result<()> {
        let store = self.object_store();
        let mut targets: BTreeMap<&str, &TaskFile> = BTreeMap::new();
        for f in files {
            let found = store.find(f.kind, &f.id).ok().filter(|o| o.id == f.id);
            if found.is_none_or(|o| o.name != f.name) {
                return Err(EngineError::invalid(format!(
                    "rpc error: code = InvalidArgument desc = {} not found: {} (ID {:?})",
                    f.kind, f.name, f.id
                )));
            }
            if let Some(other) = targets.insert(&f.target, f) {
                return Err(EngineError::invalid(format!(
                    "rpc error: code = InvalidArgument desc = {} references '{}' and '{}' have a conflicting target: '{}'",
                    f.kind, other.name, f.name, f.target
                )));
            }
        }
        Ok(())
    }

    /// Mounts the container's tmpfs and writes its task files there (each start: the
    /// tmpfs is gone after a stop or a host reboot).
    pub(crate) fn write_task_files(&self, rec: &ContainerRecord) -> Result<()> {
        if rec.task_files.is_empty() {
            return Ok(());
        }
        let dir = self.container_dir(&rec.id).join(FILES_DIR);
        unmount_task_files(&self.container_dir(&rec.id))?;
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create", e))?;
        let total: usize = rec.task_files.len() * MAX_DATA;
        let opts = std::ffi::CString::new(format!("mode=0700,size={}", total.max(4096)))
            .map_err(|e| EngineError::internal(e.to_string()))?;
        rustix::mount::mount(
            "berth-files",
            &dir,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            Some(opts.as_c_str()),
        )
        .map_err(|e| io_err(&dir, "mount tmpfs", e.into()))?;
        let store = self.object_store();
        let (uid0, gid0) = rec.userns.map_or((0, 0), |m| (m.uid, m.gid));
        let result = (|| -> Result<()> {
            for (i, f) in rec.task_files.iter().enumerate() {
                let data = store.data(f.kind, &f.id).map_err(|e| match e {
                    ObjectError::NotFound { .. } => EngineError::new(
                        ErrorKind::NotFound,
                        format!(
                            "container {}: {} {} ({}) was removed: the task cannot get {}",
                            rec.id, f.kind, f.name, f.id, f.target
                        ),
                    ),
                    e => object_err(e),
                })?;
                let path = dir.join(i.to_string());
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| io_err(&path, "create", e))?;
                file.write_all(&data)
                    .map_err(|e| io_err(&path, "write", e))?;
                std::os::unix::fs::fchown(&file, Some(uid0 + f.uid), Some(gid0 + f.gid))
                    .map_err(|e| io_err(&path, "chown", e))?;
                file.set_permissions(fs::Permissions::from_mode(f.mode & 0o7777))
                    .map_err(|e| io_err(&path, "chmod", e))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = unmount_task_files(&self.container_dir(&rec.id));
        }
        result
    }
}

/// The source of a container's `i`th task file (see [`Engine::write_task_files`]).
pub(crate) fn task_file_source(container_dir: &Path, i: usize) -> PathBuf {
    container_dir.join(FILES_DIR).join(i.to_string())
}

/// Unmounts a container's task-file tmpfs, if it is mounted.
pub(crate) fn unmount_task_files(container_dir: &Path) -> Result<()> {
    let dir = container_dir.join(FILES_DIR);
    if !dir.exists() {
        return Ok(());
    }
    while berth_runtime::rootfs::is_mount_point(&dir)
        .map_err(|e| EngineError::internal(e.to_string()))?
    {
        if let Err(e) = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH) {
            warn!(path = %dir.display(), error = %e, "unmounting task files failed");
            return Err(io_err(&dir, "unmount", e.into()));
        }
    }
    Ok(())
}

fn io_err(path: &Path, action: &str, e: std::io::Error) -> EngineError {
    EngineError::internal(format!("{}: {action}: {e}", path.display()))
}

use crate::services::now_ms;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_docker_s_rule() {
        for ok in ["db", "db.password", "a-b_c.1", "x"] {
            check_name(ObjectKind::Secret, ok).unwrap();
        }
        for bad in ["", "-db", "db-", "a/b", "a b", &"x".repeat(65)] {
            let e = check_name(ObjectKind::Config, bad).unwrap_err();
            assert!(e.message.contains("config name"), "{bad}: {e}");
        }
    }

    #[test]
    fn targets_are_placed_as_docker_places_them() {
        assert_eq!(
            TaskFile::target_of(ObjectKind::Secret, "db"),
            "/run/secrets/db"
        );
        assert_eq!(
            TaskFile::target_of(ObjectKind::Config, "app.conf"),
            "/app.conf"
        );
        assert_eq!(
            TaskFile::target_of(ObjectKind::Secret, "/etc/pw"),
            "/etc/pw"
        );
    }

    #[test]
    fn references_are_read_from_the_task_template() {
        let spec = json!({"TaskTemplate": {"ContainerSpec": {
            "Secrets": [{"SecretID": "s1", "SecretName": "a"}],
            "Configs": [{"ConfigID": "c1"}, {"ConfigID": "c2"}]
        }}});
        assert_eq!(referenced_ids(&spec, ObjectKind::Secret), ["s1"]);
        assert_eq!(referenced_ids(&spec, ObjectKind::Config), ["c1", "c2"]);
        assert!(referenced_ids(&json!({}), ObjectKind::Config).is_empty());
    }
}
