//! Swarm mode on one host: `docker swarm init` makes this daemon the one manager and the
//! one node of a swarm of its own (issue 15's ground for services; the services
//! themselves are not wired yet). The state is one durable file, `swarm.json` in the
//! state root: the cluster's and the node's IDs, the spec as Docker shows it (the
//! client's fields over Docker's defaults), its version index, the join tokens.
//!
//! berth joins no other swarm and admits no other node: `swarm join` is refused by name,
//! and the join tokens `swarm init` prints (Docker's format, random) are accepted by
//! nothing; nothing listens on the swarm port. `swarm leave` needs `--force`, as for
//! Docker's last manager, and removes the state.

use std::fs;
use std::path::PathBuf;

use berth_types::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::containers::write_atomic;
use crate::error::{EngineError, Result};
use crate::Engine;

/// The schema of `swarm.json`.
pub const SWARM_STATE_VERSION: u32 = 1;
const SWARM_FILE: &str = "swarm.json";

/// Docker's words for a daemon outside a swarm (clients match on them).
pub const NOT_IN_SWARM: &str = "This node is not part of a swarm";

/// The swarm this daemon manages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SwarmState {
    pub version: u32,
    /// The cluster's ID and the node's (25 lowercase base-36 characters, as swarmkit's).
    pub cluster_id: String,
    pub node_id: String,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    /// Docker's `Version.Index`: raised by every change; an update names the one it read.
    pub index: u64,
    /// Docker's `Spec` (Name, Labels, Orchestration, Raft, Dispatcher, CAConfig,
    /// TaskDefaults, EncryptionConfig).
    pub spec: Value,
    pub listen_addr: String,
    pub advertise_addr: String,
    pub data_path_port: u32,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub worker_token: String,
    pub manager_token: String,
    /// The node's availability (`active`, `pause`, `drain`) and labels.
    pub availability: String,
    #[serde(default)]
    pub node_labels: std::collections::BTreeMap<String, String>,
}

/// `POST /swarm/init`'s request (Docker's `InitRequest`).
#[derive(Debug, Clone, Default)]
pub struct SwarmInit {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub data_path_port: u32,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub spec: Value,
    pub availability: String,
}

/// Docker's default swarm spec (what `docker swarm init` without flags shows).
fn default_spec() -> Value {
    json!({
        "Name": "default",
        "Labels": {},
        "Orchestration": { "TaskHistoryRetentionLimit": 5 },
        "Raft": {
            "SnapshotInterval": 10000,
            "KeepOldSnapshots": 0,
            "LogEntriesForSlowFollowers": 500,
            "ElectionTick": 10,
            "HeartbeatTick": 1
        },
        "Dispatcher": { "HeartbeatPeriod": 5_000_000_000u64 },
        "CAConfig": { "NodeCertExpiry": 7_776_000_000_000_000u64 },
        "TaskDefaults": {},
        "EncryptionConfig": { "AutoLockManagers": false }
    })
}

/// The client's spec over `base`, key by key (an object merged one level down, as the
/// docker CLI sends only what its flags set); `Name` stays `default`.
fn merge_spec(base: Value, given: &Value) -> Result<Value> {
    let mut out = match base {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    match given {
        Value::Null => {}
        Value::Object(g) => {
            for (k, v) in g {
                if v.is_null() {
                    continue;
                }
                match (out.get_mut(k), v) {
                    (Some(Value::Object(cur)), Value::Object(new)) if k != "Labels" => {
                        for (k2, v2) in new {
                            if !v2.is_null() {
                                cur.insert(k2.clone(), v2.clone());
                            }
                        }
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => {
            return Err(EngineError::invalid(
                "swarm spec: expected a JSON object".to_string(),
            ))
        }
    }
    if out
        .get("EncryptionConfig")
        .and_then(|e| e.get("AutoLockManagers"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(EngineError::invalid(
            "swarm autolock (--autolock) is not supported by berth: its state is not encrypted at rest".to_string(),
        ));
    }
    if out
        .get("CAConfig")
        .and_then(|c| c.get("ExternalCAs"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(EngineError::invalid(
            "external CAs (--external-ca) are not supported by berth: no node joins, so no certificate is issued".to_string(),
        ));
    }
    out.insert("Name".into(), json!("default"));
    Ok(Value::Object(out))
}

/// `n` random lowercase base-36 characters.
pub(crate) fn base36(n: usize) -> Result<String> {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut raw = vec![0u8; n];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| EngineError::internal(format!("/dev/urandom: {e}")))?;
    // 252 = 7 × 36: values at or above it are drawn again so every digit is as likely.
    let mut out = String::with_capacity(n);
    let mut more = [0u8; 1];
    for mut b in raw {
        while b >= 252 {
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut more))
                .map_err(|e| EngineError::internal(format!("/dev/urandom: {e}")))?;
            b = more[0];
        }
        out.push(DIGITS[usize::from(b % 36)] as char);
    }
    Ok(out)
}

/// A join token in Docker's format (`SWMTKN-1-` + 50 + `-` + 25 base-36 characters).
fn join_token() -> Result<String> {
    Ok(format!("SWMTKN-1-{}-{}", base36(50)?, base36(25)?))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Engine {
    fn swarm_path(&self) -> PathBuf {
        self.store().root().join(SWARM_FILE)
    }

    /// The swarm this daemon manages, if `swarm init` ran (and no `leave` since).
    pub fn swarm(&self) -> Result<Option<SwarmState>> {
        let path = self.swarm_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EngineError::internal(format!(
                    "{}: read: {e}",
                    path.display()
                )))
            }
        };
        let st: SwarmState = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::internal(format!("{}: not a swarm state: {e}", path.display()))
        })?;
        if st.version > SWARM_STATE_VERSION {
            return Err(EngineError::internal(format!(
                "{}: schema {} of a newer berth (this one reads {SWARM_STATE_VERSION})",
                path.display(),
                st.version
            )));
        }
        Ok(Some(st))
    }

    /// The swarm, or Docker's 503 for a node outside one.
    pub fn swarm_required(&self) -> Result<SwarmState> {
        self.swarm()?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::Unavailable,
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
            )
        })
    }

    fn write_swarm(&self, st: &SwarmState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(st)
            .map_err(|e| EngineError::internal(format!("swarm state: {e}")))?;
        write_atomic(self.store().root(), SWARM_FILE, &bytes)
    }

    /// `docker swarm init`: this daemon becomes the one manager of a swarm of its own.
    pub fn swarm_init(&self, req: &SwarmInit) -> Result<SwarmState> {
        let _lock = self.record_lock();
        if self.swarm()?.is_some() {
            return Err(EngineError::new(
                ErrorKind::Unavailable,
                "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.",
            ));
        }
        let availability = match req.availability.as_str() {
            "" => "active".to_string(),
            a @ ("active" | "pause" | "drain") => a.to_string(),
            other => {
                return Err(EngineError::invalid(format!(
                    "invalid availability {other:?}: active, pause or drain"
                )))
            }
        };
        let spec = merge_spec(default_spec(), &req.spec)?;
        let listen_addr = if req.listen_addr.is_empty() {
            "0.0.0.0:2377".to_string()
        } else {
            req.listen_addr.clone()
        };
        // No other node ever connects: the address is only shown (node inspect, the
        // join command the CLI prints). The one asked for, else the listen address's
        // host unless it is a wildcard, else loopback.
        let advertise_addr = if !req.advertise_addr.is_empty() {
            req.advertise_addr.clone()
        } else {
            match listen_addr.rsplit_once(':') {
                Some((h, _)) if !h.is_empty() && h != "0.0.0.0" && h != "[::]" => h.to_string(),
                _ => "127.0.0.1".to_string(),
            }
        };
        let t = now();
        let st = SwarmState {
            version: SWARM_STATE_VERSION,
            cluster_id: base36(25)?,
            node_id: base36(25)?,
            created_at: t.clone(),
            updated_at: t,
            index: 10,
            spec,
            listen_addr,
            advertise_addr,
            data_path_port: if req.data_path_port == 0 {
                4789
            } else {
                req.data_path_port
            },
            default_addr_pool: if req.default_addr_pool.is_empty() {
                vec!["10.0.0.0/8".to_string()]
            } else {
                req.default_addr_pool.clone()
            },
            subnet_size: if req.subnet_size == 0 {
                24
            } else {
                req.subnet_size
            },
            worker_token: join_token()?,
            manager_token: join_token()?,
            availability,
            node_labels: Default::default(),
        };
        self.write_swarm(&st)?;
        tracing::info!(node.id = %st.node_id, "swarm initialized: this daemon is its one manager");
        Ok(st)
    }

    /// `docker swarm leave`: only with `force` (this is the last manager: its state goes,
    /// as Docker warns).
    pub fn swarm_leave(&self, force: bool) -> Result<()> {
        let _lock = self.record_lock();
        if self.swarm()?.is_none() {
            return Err(EngineError::new(ErrorKind::Unavailable, NOT_IN_SWARM));
        }
        if !force {
            return Err(EngineError::new(
                ErrorKind::Unavailable,
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ",
            ));
        }
        // The services go with the swarm (Docker's last manager erases them); the
        // reconcile loop stops and removes their tasks.
        self.remove_all_services()?;
        let path = self.swarm_path();
        fs::remove_file(&path)
            .map_err(|e| EngineError::internal(format!("{}: remove: {e}", path.display())))?;
        if let Ok(dir) = fs::File::open(self.store().root()) {
            let _ = dir.sync_all();
        }
        tracing::info!("left the swarm");
        Ok(())
    }

    /// `POST /swarm/update?version=N`: the spec (merged over the current one), token
    /// rotation. `version` must be the index the client read.
    pub fn swarm_update(
        &self,
        version: u64,
        spec: &Value,
        rotate_worker: bool,
        rotate_manager: bool,
    ) -> Result<SwarmState> {
        let _lock = self.record_lock();
        let mut st = self.swarm_required()?;
        if version != st.index {
            return Err(EngineError::conflict(format!(
                "update out of sequence (version {version}, the swarm is at {})",
                st.index
            )));
        }
        st.spec = merge_spec(st.spec.clone(), spec)?;
        if rotate_worker {
            st.worker_token = join_token()?;
        }
        if rotate_manager {
            st.manager_token = join_token()?;
        }
        st.index += 1;
        st.updated_at = now();
        self.write_swarm(&st)?;
        Ok(st)
    }

    /// `POST /nodes/{id}/update?version=N`: the node's availability and labels (its
    /// role stays manager: it is the only node).
    pub fn swarm_node_update(&self, version: u64, spec: &Value) -> Result<SwarmState> {
        let _lock = self.record_lock();
        let mut st = self.swarm_required()?;
        if version != st.index {
            return Err(EngineError::conflict(format!(
                "update out of sequence (version {version}, the node is at {})",
                st.index
            )));
        }
        if let Some(role) = spec.get("Role").and_then(Value::as_str) {
            if role != "manager" {
                return Err(EngineError::invalid(format!(
                    "node role {role:?}: the only node of a berth swarm is its manager"
                )));
            }
        }
        if let Some(a) = spec.get("Availability").and_then(Value::as_str) {
            if !matches!(a, "active" | "pause" | "drain") {
                return Err(EngineError::invalid(format!(
                    "invalid availability {a:?}: active, pause or drain"
                )));
            }
            st.availability = a.to_string();
        }
        if let Some(labels) = spec.get("Labels").filter(|l| !l.is_null()) {
            st.node_labels = serde_json::from_value(labels.clone())
                .map_err(|e| EngineError::invalid(format!("node labels: expected strings: {e}")))?;
        }
        st.index += 1;
        st.updated_at = now();
        self.write_swarm(&st)?;
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_ids_have_dockers_shape() {
        let t = join_token().expect("token");
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 4, "{t}");
        assert_eq!((parts[0], parts[1]), ("SWMTKN", "1"));
        assert_eq!((parts[2].len(), parts[3].len()), (50, 25));
        assert!(t[9..]
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_ne!(base36(25).expect("id"), base36(25).expect("id"));
    }

    #[test]
    fn a_spec_merges_over_dockers_defaults_and_refuses_what_berth_cannot_do() {
        let s = merge_spec(
            default_spec(),
            &json!({"Orchestration": {"TaskHistoryRetentionLimit": 2}, "Labels": {"a": "b"}, "Name": "x"}),
        )
        .expect("spec");
        assert_eq!(s["Orchestration"]["TaskHistoryRetentionLimit"], 2);
        assert_eq!(s["Raft"]["ElectionTick"], 10);
        assert_eq!(s["Labels"], json!({"a": "b"}));
        assert_eq!(s["Name"], "default");
        let e = merge_spec(
            default_spec(),
            &json!({"EncryptionConfig": {"AutoLockManagers": true}}),
        )
        .expect_err("autolock");
        assert!(e.message.contains("autolock"), "{}", e.message);
        assert!(merge_spec(default_spec(), &json!([1])).is_err());
    }
}
