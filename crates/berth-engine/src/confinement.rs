//! What confines a container, as it really is: `inspect`'s `Confinement` (berth's own
//! field; Docker has none) and `berth security CONTAINER`.
//!
//! Two sources, shown side by side so a difference is visible: the runtime spec the
//! container was created with (`bundle/config.json`: capabilities, seccomp profile and
//! its digest, no-new-privileges, mounts and their modes, masked paths, namespaces,
//! cgroup path, user), and, while it runs, what the kernel says of its init process
//! (`/proc/PID/status`: effective and bounding capabilities, NoNewPrivs, seccomp mode;
//! `/proc/PID/ns/*` compared with the daemon's own; `/proc/PID/cgroup`; `/proc/PID/uid_map`).

use std::path::Path;

use berth_runtime::caps::ALL_CAPABILITIES;
use berth_runtime::oci_spec::runtime::Spec;
use berth_runtime::shim_protocol::BUNDLE_DIR;
use berth_types::Digest;
use serde_json::{json, Value};

use crate::containers::{ContainerRecord, ContainerState};
use crate::error::{EngineError, Result};
use crate::Engine;

/// Capability names of a `/proc/PID/status` mask (`CapEff: 00000000a80425fb`).
fn cap_names(hex: &str) -> Vec<&'static str> {
    let mask = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
    ALL_CAPABILITIES
        .iter()
        .filter(|(_, bit, _)| mask & (1u64 << bit) != 0)
        .map(|(name, _, _)| *name)
        .collect()
}

/// The fields of `/proc/PID/status` that say how a process is confined.
fn live_status(pid: i32) -> Option<Value> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
    };
    let seccomp = match field("Seccomp") {
        Some("0") => "disabled",
        Some("1") => "strict",
        Some("2") => "filter",
        _ => "unknown",
    };
    let ids = |k: &str| -> Vec<u64> {
        field(k)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    Some(json!({
        "Pid": pid,
        "Uid": ids("Uid").first(),
        "Gid": ids("Gid").first(),
        "Groups": ids("Groups"),
        "CapEff": cap_names(field("CapEff").unwrap_or("0")),
        "CapBnd": cap_names(field("CapBnd").unwrap_or("0")),
        "CapAmb": cap_names(field("CapAmb").unwrap_or("0")),
        "NoNewPrivs": field("NoNewPrivs") == Some("1"),
        "Seccomp": seccomp,
        "SeccompFilters": field("Seccomp_filters").and_then(|v| v.parse::<u64>().ok()),
        "UidMap": std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
            .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        "Cgroup": std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default(),
    }))
}

/// Each namespace of `pid`: whether it is the host's (the one the daemon itself runs
/// in: PID 1's may be unreadable, in a sandbox) or its own.
fn live_namespaces(pid: i32) -> Vec<Value> {
    const KINDS: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];
    let ino = |p: String| std::fs::read_link(p).ok().map(|l| l.display().to_string());
    KINDS
        .iter()
        .filter_map(|k| {
            let own = ino(format!("/proc/{pid}/ns/{k}"))?;
            let host = ino(format!("/proc/self/ns/{k}"));
            Some(json!({
                "Type": k,
                "Namespace": own,
                "Host": host.as_deref() == Some(own.as_str()),
            }))
        })
        .collect()
}

fn spec_view(spec: &Spec, rec: &ContainerRecord) -> Value {
    let process = spec.process().clone().unwrap_or_default();
    let caps = process.capabilities().clone().unwrap_or_default();
    let names =
        |set: &Option<std::collections::HashSet<berth_runtime::oci_spec::runtime::Capability>>| {
            let mut v: Vec<String> = set
                .iter()
                .flatten()
                .map(|c| c.to_string().trim_start_matches("CAP_").to_string())
                .collect();
            v.sort();
            v
        };
    let linux = spec.linux().clone().unwrap_or_default();
    let seccomp = linux.seccomp().as_ref().map(|s| {
        let bytes = serde_json::to_vec(s).unwrap_or_default();
        json!({
            "DefaultAction": serde_json::to_value(s.default_action()).unwrap_or(Value::Null),
            "Rules": s.syscalls().as_ref().map(Vec::len).unwrap_or(0),
            "Digest": Digest::of(&bytes).to_string(),
        })
    });
    let user = process.user();
    let mounts: Vec<Value> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| {
            let opts = m.options().clone().unwrap_or_default();
            json!({
                "Destination": m.destination(),
                "Type": m.typ(),
                "Source": m.source(),
                "Mode": if opts.iter().any(|o| o == "ro") { "ro" } else { "rw" },
                "Options": opts,
            })
        })
        .collect();
    let namespaces: Vec<Value> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| {
            json!({
                "Type": n.typ().to_string(),
                "Path": n.path(),
            })
        })
        .collect();
    json!({
        "Privileged": rec.privileged,
        "User": {
            "Uid": user.uid(),
            "Gid": user.gid(),
            "AdditionalGids": user.additional_gids(),
        },
        // A remapped container joins its kept user namespace by path: the spec has no
        // mappings then; the record's are what the namespace was made with.
        "UserNamespace": rec.userns.is_some()
            || linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()),
        "UidMappings": match rec.userns {
            Some(m) => json!([{"containerID": 0, "hostID": m.uid, "size": m.size}]),
            None => json!(linux.uid_mappings()),
        },
        "GidMappings": match rec.userns {
            Some(m) => json!([{"containerID": 0, "hostID": m.gid, "size": m.size}]),
            None => json!(linux.gid_mappings()),
        },
        "Capabilities": {
            "Effective": names(caps.effective()),
            "Bounding": names(caps.bounding()),
            "Permitted": names(caps.permitted()),
            "Inheritable": names(caps.inheritable()),
            "Ambient": names(caps.ambient()),
        },
        "NoNewPrivileges": process.no_new_privileges().unwrap_or(false),
        // Null: unconfined. Two containers with the same profile and capabilities have
        // the same digest (the filter berth generated, as the runtime loads it).
        "Seccomp": seccomp,
        "AppArmor": "",
        "SELinux": "",
        "RootfsReadOnly": spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
        "MaskedPaths": linux.masked_paths(),
        "ReadonlyPaths": linux.readonly_paths(),
        "Namespaces": namespaces,
        "CgroupsPath": linux.cgroups_path(),
        "Mounts": mounts,
    })
}

impl Engine {
    /// What confines the container (see the module docs): `Spec` from its runtime
    /// spec, `Live` from the kernel while it runs (null when it does not).
    pub fn container_confinement(&self, rec: &ContainerRecord) -> Result<Value> {
        let path = self
            .container_dir(&rec.id)
            .join(BUNDLE_DIR)
            .join("config.json");
        let bytes = std::fs::read(&path)
            .map_err(|e| crate::containers::io_err(Path::new(&path), "read the runtime spec", e))?;
        let spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::internal(format!("{}: {e}", path.display())))?;
        let live = match self.container_state(&rec.id)? {
            ContainerState::Running { pid, .. } => live_status(pid).map(|mut v| {
                v["Namespaces"] = json!(live_namespaces(pid));
                v
            }),
            _ => None,
        };
        Ok(json!({
            "Spec": spec_view(&spec, rec),
            "Live": live,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_masks_read_as_names() {
        // Docker's default set, as /proc shows it.
        let names = cap_names("00000000a80425fb");
        for c in ["CHOWN", "NET_BIND_SERVICE", "SETUID", "KILL", "AUDIT_WRITE"] {
            assert!(names.contains(&c), "{c}: {names:?}");
        }
        assert!(!names.contains(&"SYS_ADMIN"));
        assert!(cap_names("0").is_empty());
        assert!(cap_names("garbage").is_empty());
    }

    #[test]
    fn this_process_reads_as_confined_or_not() {
        let me = std::process::id() as i32;
        let v = live_status(me).expect("own status");
        assert!(v["CapEff"].is_array());
        assert!(v["Seccomp"].is_string());
        let ns = live_namespaces(me);
        assert!(ns.iter().any(|n| n["Type"] == "mnt"));
    }
}
