//! A swarm `ServiceSpec` (the body of `POST /services/create` and `/services/{id}/update`)
//! into the container create each of the service's tasks runs.
//!
//! berth runs services on one host: a task is a plain berth container, created through
//! the same decoding as `POST /containers/create` ([`task_options`] builds Docker's
//! create body with [`task_create_body`] and hands it to `containers.rs`). The mapping
//! follows Docker's executor (`daemon/cluster/executor/container/container.go`):
//!
//! | ServiceSpec | container create |
//! | --- | --- |
//! | `ContainerSpec.Image` | `Image` (required) |
//! | `Command` / `Args` | with a Command: `Entrypoint` = Command, `Cmd` = Args (`[]` if none, so the image's CMD is not appended); else `Cmd` = Args |
//! | `Env`, `Dir`, `User`, `Hostname`, `Labels`, `TTY`, `OpenStdin`, `StopSignal`, `Healthcheck` | `Env`, `WorkingDir`, `User`, `Hostname`, `Labels`, `Tty`, `OpenStdin`, `StopSignal`, `Healthcheck` |
//! | `StopGracePeriod` (ns) | `StopTimeout` (s, rounded up) |
//! | `Init`, `ReadOnly`, `Groups`, `CapabilityAdd`/`Drop`, `Sysctls`, `Ulimits`, `Mounts`, `OomScoreAdj` | HostConfig `Init`, `ReadonlyRootfs`, `GroupAdd`, `CapAdd`/`CapDrop`, `Sysctls`, `Ulimits`, `Mounts`, `OomScoreAdj` |
//! | `Hosts` (`IP NAME [ALIAS...]`) | HostConfig `ExtraHosts` (`NAME:IP` for each name) |
//! | `DNSConfig` | HostConfig `Dns`, `DnsSearch`, `DnsOptions` |
//! | `Privileges` | HostConfig `SecurityOpt` (as Docker: `seccomp=unconfined`, `apparmor=unconfined`, `label=disable`, `no-new-privileges=true`) |
//! | `Resources.Limits` | HostConfig `NanoCpus`, `Memory`, `PidsLimit` |
//! | `Resources.Reservations.MemoryBytes` | HostConfig `MemoryReservation` |
//! | `LogDriver` | HostConfig `LogConfig` |
//! | `TaskTemplate.Networks` (else the deprecated top-level `Networks`) | `NetworkingConfig.EndpointsConfig` (Aliases, DriverOpts); the first is `NetworkMode` |
//!
//! Differences from Docker, each deliberate:
//! - A service with no networks joins berth's default `bridge` network (Docker attaches
//!   it to nothing, or to `ingress` when it publishes ports).
//! - `Hosts` gives every name of an entry (Docker keeps only the canonical one) and a
//!   malformed entry is refused (Docker skips it).
//! - `StopGracePeriod` is rounded up to whole seconds (Docker truncates): a task is never
//!   given less time than asked.
//! - `Resources.Reservations.MemoryBytes` becomes the container's soft memory limit
//!   (Docker uses reservations for scheduling only).
//! - Placement is decided here, against this one node, instead of leaving a task pending
//!   for ever: see [`check_placement`] and [`check_reservations`].
//! - Service names follow swarmkit's rule, which allows `_` (`docker stack deploy`
//!   names services `STACK_SERVICE`).
//!
//! Whatever berth cannot honour is refused with a 400 naming the field, never dropped:
//! secrets, configs, plugin and network-attachment runtimes, Windows isolation and
//! credential specs, custom seccomp profiles, SELinux labels, generic resources,
//! `MaxReplicas`, constraints on node IDs and labels, and Go templates (`{{.Task.Slot}}`,
//! which Docker expands per task). A key berth does not know inside the task template
//! is refused by name too, unless its value is empty (null, false, 0, "", [], {}), which
//! asks for nothing. Fields of the service itself (Name, Labels, Mode, UpdateConfig,
//! RollbackConfig, EndpointSpec, RestartPolicy, ForceUpdate) are not the container's and
//! are left to the caller.

use std::collections::BTreeMap;

use berth_engine::swarm_objects::{ObjectKind, TaskFile};
use berth_image::model::HealthConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::containers::{create_options, CreateBody};
use crate::error::ApiError;

fn not_supported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported yet by berth"))
}

// ---------------------------------------------------------------------------------
// The spec as Docker's API types spell it (`api/types/swarm`), decoded with Go's rules
// (`decode.rs`: null is absence, keys match case-insensitively).

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceSpecBody {
    task_template: Option<TaskSpecBody>,
    /// Deprecated in Docker for `TaskTemplate.Networks`, which wins when both are set.
    networks: Option<Vec<NetworkAttachmentBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TaskSpecBody {
    container_spec: Option<ContainerSpecBody>,
    plugin_spec: Option<Value>,
    network_attachment_spec: Option<Value>,
    resources: Option<ResourceRequirementsBody>,
    placement: Option<PlacementBody>,
    networks: Option<Vec<NetworkAttachmentBody>>,
    log_driver: Option<DriverBody>,
    runtime: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerSpecBody {
    image: String,
    labels: Option<BTreeMap<String, String>>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    hostname: String,
    env: Option<Vec<String>>,
    dir: String,
    user: String,
    groups: Option<Vec<String>>,
    privileges: Option<PrivilegesBody>,
    init: Option<bool>,
    stop_signal: String,
    #[serde(rename = "TTY")]
    tty: bool,
    open_stdin: bool,
    read_only: bool,
    mounts: Option<Vec<Value>>,
    /// Nanoseconds (Go's `time.Duration`).
    stop_grace_period: Option<i64>,
    healthcheck: Option<HealthConfig>,
    hosts: Option<Vec<String>>,
    #[serde(rename = "DNSConfig")]
    dns_config: Option<DnsConfigBody>,
    secrets: Option<Vec<Value>>,
    configs: Option<Vec<Value>>,
    isolation: String,
    sysctls: Option<BTreeMap<String, String>>,
    capability_add: Option<Vec<String>>,
    capability_drop: Option<Vec<String>>,
    ulimits: Option<Vec<UlimitBody>>,
    oom_score_adj: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PrivilegesBody {
    credential_spec: Option<CredentialSpecBody>,
    #[serde(rename = "SELinuxContext")]
    selinux_context: Option<SeLinuxContextBody>,
    seccomp: Option<SeccompBody>,
    app_armor: Option<AppArmorBody>,
    no_new_privileges: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CredentialSpecBody {
    config: String,
    file: String,
    registry: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SeLinuxContextBody {
    disable: bool,
    user: String,
    role: String,
    #[serde(rename = "Type")]
    kind: String,
    level: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SeccompBody {
    mode: String,
    /// Go's `[]byte`: base64 in JSON.
    profile: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AppArmorBody {
    mode: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DnsConfigBody {
    nameservers: Option<Vec<String>>,
    search: Option<Vec<String>>,
    options: Option<Vec<String>>,
}

/// Docker's `container.Ulimit`, the same in a ContainerSpec and a HostConfig.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ResourceRequirementsBody {
    limits: Option<LimitBody>,
    reservations: Option<ReservationBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LimitBody {
    #[serde(rename = "NanoCPUs")]
    nano_cpus: i64,
    memory_bytes: i64,
    pids: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ReservationBody {
    #[serde(rename = "NanoCPUs")]
    nano_cpus: i64,
    memory_bytes: i64,
    generic_resources: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PlacementBody {
    constraints: Option<Vec<String>>,
    // `Preferences` (spread over node groups) are accepted and not decoded: on one node
    // every task is in the same group (swarmkit never leaves a task pending for them).
    max_replicas: u64,
    platforms: Option<Vec<PlatformBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PlatformBody {
    architecture: String,
    #[serde(rename = "OS")]
    os: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkAttachmentBody {
    target: String,
    aliases: Option<Vec<String>>,
    driver_opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DriverBody {
    name: String,
    options: Option<BTreeMap<String, String>>,
}

// ---------------------------------------------------------------------------------
// Keys berth knows, per object (Docker's field names; matched case-insensitively). A
// key outside these lists is refused unless its value is empty.

const TASK_KEYS: &[&str] = &[
    "ContainerSpec",
    "PluginSpec",
    "NetworkAttachmentSpec",
    "Resources",
    "RestartPolicy",
    "Placement",
    "Networks",
    "LogDriver",
    "ForceUpdate",
    "Runtime",
];
const CONTAINER_KEYS: &[&str] = &[
    "Image",
    "Labels",
    "Command",
    "Args",
    "Hostname",
    "Env",
    "Dir",
    "User",
    "Groups",
    "Privileges",
    "Init",
    "StopSignal",
    "TTY",
    "OpenStdin",
    "ReadOnly",
    "Mounts",
    "StopGracePeriod",
    "Healthcheck",
    "Hosts",
    "DNSConfig",
    "Secrets",
    "Configs",
    "Isolation",
    "Sysctls",
    "CapabilityAdd",
    "CapabilityDrop",
    "Ulimits",
    "OomScoreAdj",
];
const PRIVILEGES_KEYS: &[&str] = &[
    "CredentialSpec",
    "SELinuxContext",
    "Seccomp",
    "AppArmor",
    "NoNewPrivileges",
];
const RESOURCES_KEYS: &[&str] = &["Limits", "Reservations"];
const NETWORK_KEYS: &[&str] = &["Target", "Aliases", "DriverOpts"];

/// The objects whose keys are checked: their path from the spec's top, their keys.
const CHECKED: &[(&[&str], &[&str])] = &[
    (&["TaskTemplate"], TASK_KEYS),
    (&["TaskTemplate", "ContainerSpec"], CONTAINER_KEYS),
    (
        &["TaskTemplate", "ContainerSpec", "Privileges"],
        PRIVILEGES_KEYS,
    ),
    (
        &[
            "TaskTemplate",
            "ContainerSpec",
            "Privileges",
            "CredentialSpec",
        ],
        &["Config", "File", "Registry"],
    ),
    (
        &[
            "TaskTemplate",
            "ContainerSpec",
            "Privileges",
            "SELinuxContext",
        ],
        &["Disable", "User", "Role", "Type", "Level"],
    ),
    (
        &["TaskTemplate", "ContainerSpec", "Privileges", "Seccomp"],
        &["Mode", "Profile"],
    ),
    (
        &["TaskTemplate", "ContainerSpec", "Privileges", "AppArmor"],
        &["Mode"],
    ),
    (
        &["TaskTemplate", "ContainerSpec", "DNSConfig"],
        &["Nameservers", "Search", "Options"],
    ),
    (&["TaskTemplate", "Resources"], RESOURCES_KEYS),
    (
        &["TaskTemplate", "Resources", "Limits"],
        &["NanoCPUs", "MemoryBytes", "Pids"],
    ),
    (
        &["TaskTemplate", "Resources", "Reservations"],
        &["NanoCPUs", "MemoryBytes", "GenericResources"],
    ),
    (
        &["TaskTemplate", "Placement"],
        &["Constraints", "Preferences", "MaxReplicas", "Platforms"],
    ),
    (&["TaskTemplate", "LogDriver"], &["Name", "Options"]),
];

/// A member of a JSON object as Go finds it: the exact key, else the first one equal
/// to it case-insensitively.
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Whether a value asks for nothing (Go's zero value, or an object of them).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// Refuses a key of `obj` (at `path`) that is not in `known` and asks for something.
fn check_keys(obj: &Value, path: &str, known: &[&str]) -> Result<(), ApiError> {
    let Some(map) = obj.as_object() else {
        return Ok(());
    };
    for (k, v) in map {
        if !known.iter().any(|f| f.eq_ignore_ascii_case(k)) && !is_zero(v) {
            return Err(not_supported(&format!("unknown field {path}.{k}")));
        }
    }
    Ok(())
}

/// Refuses the unknown keys of the task template (see [`CHECKED`]) and of the network
/// attachments.
fn refuse_unknown_keys(spec: &Value) -> Result<(), ApiError> {
    for (path, known) in CHECKED {
        let mut v = Some(spec);
        for p in *path {
            v = v.and_then(|v| member(v, p));
        }
        if let Some(v) = v {
            check_keys(v, &path.join("."), known)?;
        }
    }
    let task_networks = member(spec, "TaskTemplate").and_then(|t| member(t, "Networks"));
    for (path, list) in [
        ("TaskTemplate.Networks", task_networks),
        ("Networks", member(spec, "Networks")),
    ] {
        for (i, n) in list
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_keys(n, &format!("{path}[{i}]"), NETWORK_KEYS)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Templates

/// Refuses a Go template in a field Docker expands per task (`{{.Task.Slot}}`): berth
/// would pass it to the container as is.
fn refuse_template(s: &str, field: &str) -> Result<(), ApiError> {
    if s.contains("{{") {
        return Err(not_supported(&format!(
            "templates ({s:?} in {field}, which Docker expands per task)"
        )));
    }
    Ok(())
}

/// The strings of a value (a mount: Source, Target, volume labels and driver options).
fn refuse_templates_in(v: &Value, field: &str) -> Result<(), ApiError> {
    match v {
        Value::String(s) => refuse_template(s, field),
        Value::Array(a) => a.iter().try_for_each(|x| refuse_templates_in(x, field)),
        Value::Object(o) => o.values().try_for_each(|x| refuse_templates_in(x, field)),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------
// Checks against this one node

/// This node's architecture under the names a spec may use for it: Go's (`amd64`,
/// which image platforms use) and the kernel's (`x86_64`, which `docker node inspect`
/// shows).
fn node_arches() -> [String; 2] {
    [
        berth_image::model::host_platform().architecture,
        std::env::consts::ARCH.to_string(),
    ]
}

/// Go's and swarmkit's spelling of an architecture, for comparison.
fn normal_arch(a: &str) -> String {
    match a.to_ascii_lowercase().as_str() {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// Placement against this node, the only one: decided now rather than leaving tasks
/// pending for ever as a swarm with no suitable node does.
///
/// - Constraints (`KEY==VALUE`, `KEY!=VALUE`, values compared case-insensitively as
///   swarmkit does) on `node.role` (this node is the manager), `node.hostname`,
///   `node.platform.os` and `node.platform.arch` are evaluated; one that does not hold
///   is refused ("no suitable node"). Constraints on `node.id`, `node.labels.*` and
///   `engine.labels.*` are refused as not supported yet.
/// - Preferences are accepted: spreading over one node changes nothing.
/// - Platforms (the docker CLI fills them from the image's manifest) must include this
///   node's (an empty OS or architecture matches any).
/// - `MaxReplicas` (tasks per node) is refused unless 0: it is a limit on the service's
///   replicas, which berth does not apply yet.
fn check_placement(p: &PlacementBody) -> Result<(), ApiError> {
    for c in p.constraints.iter().flatten() {
        check_constraint(c)?;
    }
    if p.max_replicas != 0 {
        return Err(not_supported(
            "TaskTemplate.Placement.MaxReplicas (--replicas-max-per-node)",
        ));
    }
    let platforms = p.platforms.as_deref().unwrap_or_default();
    if !platforms.is_empty() {
        let node = berth_image::model::host_platform();
        let node_arch = normal_arch(&node.architecture);
        let fits = platforms.iter().any(|pl| {
            (pl.architecture.is_empty() || normal_arch(&pl.architecture) == node_arch)
                && (pl.os.is_empty() || pl.os.eq_ignore_ascii_case(&node.os))
        });
        if !fits {
            let listed: Vec<String> = platforms
                .iter()
                .map(|pl| format!("{}/{}", pl.os, pl.architecture))
                .collect();
            return Err(ApiError::bad_request(format!(
                "no suitable node: TaskTemplate.Placement.Platforms ({}) do not include this node's {}/{}",
                listed.join(", "),
                node.os,
                node.architecture
            )));
        }
    }
    Ok(())
}

/// One placement constraint (see [`check_placement`]).
fn check_constraint(c: &str) -> Result<(), ApiError> {
    let (key, equal, value) = match c.split_once("==") {
        Some((k, v)) => (k, true, v),
        None => match c.split_once("!=") {
            Some((k, v)) => (k, false, v),
            None => {
                return Err(ApiError::bad_request(format!(
                    "invalid placement constraint {c:?}: expected KEY==VALUE or KEY!=VALUE"
                )))
            }
        },
    };
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() || value.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid placement constraint {c:?}: expected KEY==VALUE or KEY!=VALUE"
        )));
    }
    let node: Vec<String> = match key.to_ascii_lowercase().as_str() {
        "node.role" => vec!["manager".into()],
        "node.hostname" => vec![rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()],
        "node.platform.os" => vec!["linux".into()],
        "node.platform.arch" => node_arches().to_vec(),
        _ => {
            return Err(not_supported(&format!(
                "placement constraint {c:?} (berth evaluates node.role, node.hostname, node.platform.os and node.platform.arch)"
            )))
        }
    };
    let matches = node.iter().any(|n| n.eq_ignore_ascii_case(value));
    if matches != equal {
        return Err(ApiError::bad_request(format!(
            "no suitable node: placement constraint {c:?} does not hold on this node, berth's only one"
        )));
    }
    Ok(())
}

/// Reservations, which a swarm uses to choose a node:
///
/// - A CPU reservation is accepted when this node has that many CPUs, as a one-node
///   swarm would place the task; a larger one is refused ("no suitable node") rather
///   than left pending. It guarantees nothing at run time, in Docker as in berth, and
///   berth does not sum the reservations of several tasks.
/// - A memory reservation becomes the container's soft limit (`MemoryReservation`).
/// - Generic resources (GPUs and the like, which a node advertises) are refused: this
///   node advertises none.
fn check_reservations(r: &ReservationBody) -> Result<(), ApiError> {
    if r.generic_resources.as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(not_supported(
            "generic resources (TaskTemplate.Resources.Reservations.GenericResources)",
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    if r.nano_cpus > cpus.saturating_mul(1_000_000_000) {
        return Err(ApiError::bad_request(format!(
            "no suitable node: TaskTemplate.Resources.Reservations.NanoCPUs reserves {:.2} CPUs and this node has {cpus}",
            r.nano_cpus as f64 / 1e9
        )));
    }
    Ok(())
}

/// swarmkit's floor for a CPU or memory value (limit or reservation), in its words.
fn check_resource_values(nano_cpus: i64, memory_bytes: i64, what: &str) -> Result<(), ApiError> {
    if nano_cpus != 0 && nano_cpus < 1_000_000 {
        return Err(ApiError::bad_request(format!(
            "TaskTemplate.Resources.{what}: invalid cpu value {}: Must be at least 0.001",
            nano_cpus as f64 / 1e9
        )));
    }
    if memory_bytes != 0 && memory_bytes < 4 << 20 {
        return Err(ApiError::bad_request(format!(
            "TaskTemplate.Resources.{what}: invalid memory value {memory_bytes}: Must be at least 4MiB"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Translation

/// `Privileges` into HostConfig.SecurityOpt, as Docker's executor does
/// (`applyPrivileges`); what berth cannot apply is refused.
fn security_opts(p: PrivilegesBody) -> Result<Vec<String>, ApiError> {
    const AT: &str = "TaskTemplate.ContainerSpec.Privileges";
    let mut opts = Vec::new();
    if let Some(cs) = p.credential_spec {
        if !(cs.config.is_empty() && cs.file.is_empty() && cs.registry.is_empty()) {
            return Err(not_supported(&format!(
                "credential specs ({AT}.CredentialSpec, for Windows containers)"
            )));
        }
    }
    if let Some(se) = p.selinux_context {
        if se.disable {
            opts.push("label=disable".to_string());
        }
        if !(se.user.is_empty() && se.role.is_empty() && se.kind.is_empty() && se.level.is_empty())
        {
            return Err(not_supported(&format!(
                "SELinux labels ({AT}.SELinuxContext; berth applies none)"
            )));
        }
    }
    if let Some(sc) = p.seccomp {
        match sc.mode.as_str() {
            "" | "default" => {}
            "unconfined" => opts.push("seccomp=unconfined".to_string()),
            "custom" => {
                return Err(not_supported(&format!(
                    "a custom seccomp profile ({AT}.Seccomp)"
                )))
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid {AT}.Seccomp.Mode {other:?}: expected default, unconfined or custom"
                )))
            }
        }
        if !sc.profile.is_empty() && sc.mode != "custom" {
            return Err(ApiError::bad_request(format!(
                "invalid {AT}.Seccomp: a Profile goes with Mode \"custom\""
            )));
        }
    }
    if let Some(aa) = p.app_armor {
        match aa.mode.as_str() {
            "" | "default" => {}
            "disabled" => opts.push("apparmor=unconfined".to_string()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid {AT}.AppArmor.Mode {other:?}: expected default or disabled"
                )))
            }
        }
    }
    if p.no_new_privileges {
        opts.push("no-new-privileges=true".to_string());
    }
    Ok(opts)
}

/// `Hosts` (`IP_ADDRESS CANONICAL_HOSTNAME [ALIASES...]`, hosts(5)) into ExtraHosts
/// (`NAME:IP`), one per name.
fn extra_hosts(hosts: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for entry in hosts {
        let mut fields = entry.split_whitespace();
        let (Some(ip), Some(first)) = (fields.next(), fields.next()) else {
            return Err(ApiError::bad_request(format!(
                "invalid TaskTemplate.ContainerSpec.Hosts entry {entry:?}: expected \"IP_ADDRESS HOSTNAME [ALIASES...]\""
            )));
        };
        for name in std::iter::once(first).chain(fields) {
            out.push(format!("{name}:{ip}"));
        }
    }
    Ok(out)
}

/// `StopGracePeriod` (ns) as a stop timeout in whole seconds, rounded up.
fn stop_timeout(ns: i64) -> Result<i64, ApiError> {
    let ns = u64::try_from(ns).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid TaskTemplate.ContainerSpec.StopGracePeriod {ns}: must not be negative"
        ))
    })?;
    // At most i64::MAX / 1e9 + 1, which fits.
    Ok(ns.div_ceil(1_000_000_000) as i64)
}

fn insert_list(map: &mut Map<String, Value>, key: &str, list: Option<Vec<String>>) {
    if let Some(l) = list.filter(|l| !l.is_empty()) {
        map.insert(key.into(), json!(l));
    }
}

fn insert_str(map: &mut Map<String, Value>, key: &str, s: String) {
    if !s.is_empty() {
        map.insert(key.into(), Value::String(s));
    }
}

fn insert_map(map: &mut Map<String, Value>, key: &str, m: Option<BTreeMap<String, String>>) {
    if let Some(m) = m.filter(|m| !m.is_empty()) {
        map.insert(key.into(), json!(m));
    }
}

/// What a service's tasks run: the container create body (Docker's `/containers/create`
/// JSON) built from the spec's TaskTemplate; its `Image` is the image reference as the
/// spec names it. Errors are 400s naming the field (see the module docs).
pub(crate) fn task_create_body(spec: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    refuse_unknown_keys(spec)?;
    let s: ServiceSpecBody = crate::decode::value_as(spec.clone(), "service spec")?;
    let task = s.task_template.unwrap_or_default();
    match task.runtime.as_str() {
        "" | "container" => {}
        "plugin" => {
            return Err(not_supported(
                "plugin services (TaskTemplate.Runtime \"plugin\")",
            ))
        }
        "attachment" => {
            return Err(not_supported(
                "network attachment tasks (TaskTemplate.Runtime \"attachment\")",
            ))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid TaskTemplate.Runtime {other:?}: unsupported runtime"
            )))
        }
    }
    if task.plugin_spec.as_ref().is_some_and(|v| !is_zero(v)) {
        return Err(not_supported("plugin services (TaskTemplate.PluginSpec)"));
    }
    if task
        .network_attachment_spec
        .as_ref()
        .is_some_and(|v| !is_zero(v))
    {
        return Err(not_supported(
            "network attachment tasks (TaskTemplate.NetworkAttachmentSpec)",
        ));
    }
    let c = task.container_spec.unwrap_or_default();
    if c.image.is_empty() {
        // swarmkit's words.
        return Err(ApiError::bad_request(
            "ContainerSpec: image reference must be provided",
        ));
    }
    task_files_of(c.secrets.as_deref(), ObjectKind::Secret)?;
    task_files_of(c.configs.as_deref(), ObjectKind::Config)?;
    // Docker's `Isolation.IsDefault` (case-insensitive).
    if !(c.isolation.is_empty() || c.isolation.eq_ignore_ascii_case("default")) {
        return Err(ApiError::bad_request(format!(
            "invalid TaskTemplate.ContainerSpec.Isolation {:?}: linux containers only support \"default\"",
            c.isolation
        )));
    }
    if let Some(p) = &task.placement {
        check_placement(p)?;
    }

    let mut body = Map::new();
    body.insert("Image".into(), Value::String(c.image));
    // Docker's executor: a Command replaces the image's ENTRYPOINT and CMD (Args, if
    // any, follow it); Args alone replace the image's CMD.
    match c.command.filter(|v| !v.is_empty()) {
        Some(command) => {
            body.insert("Entrypoint".into(), json!(command));
            body.insert("Cmd".into(), json!(c.args.unwrap_or_default()));
        }
        None => insert_list(&mut body, "Cmd", c.args),
    }
    if let Some(env) = &c.env {
        for e in env {
            if let Some((_, v)) = e.split_once('=') {
                refuse_template(v, "TaskTemplate.ContainerSpec.Env")?;
            }
        }
    }
    insert_list(&mut body, "Env", c.env);
    insert_str(&mut body, "WorkingDir", c.dir);
    insert_str(&mut body, "User", c.user);
    refuse_template(&c.hostname, "TaskTemplate.ContainerSpec.Hostname")?;
    insert_str(&mut body, "Hostname", c.hostname);
    insert_map(&mut body, "Labels", c.labels);
    if c.tty {
        body.insert("Tty".into(), Value::Bool(true));
    }
    if c.open_stdin {
        body.insert("OpenStdin".into(), Value::Bool(true));
    }
    insert_str(&mut body, "StopSignal", c.stop_signal);
    if let Some(ns) = c.stop_grace_period {
        body.insert("StopTimeout".into(), json!(stop_timeout(ns)?));
    }
    if let Some(h) = c.healthcheck {
        let h =
            serde_json::to_value(h).map_err(|e| ApiError::internal(format!("healthcheck: {e}")))?;
        body.insert("Healthcheck".into(), h);
    }

    let mut hc = Map::new();
    if let Some(init) = c.init {
        hc.insert("Init".into(), Value::Bool(init));
    }
    if c.read_only {
        hc.insert("ReadonlyRootfs".into(), Value::Bool(true));
    }
    insert_list(
        &mut hc,
        "ExtraHosts",
        Some(extra_hosts(c.hosts.unwrap_or_default())?),
    );
    let dns = c.dns_config.unwrap_or_default();
    insert_list(&mut hc, "Dns", dns.nameservers);
    insert_list(&mut hc, "DnsSearch", dns.search);
    insert_list(&mut hc, "DnsOptions", dns.options);
    insert_list(&mut hc, "GroupAdd", c.groups);
    insert_list(&mut hc, "CapAdd", c.capability_add);
    insert_list(&mut hc, "CapDrop", c.capability_drop);
    insert_map(&mut hc, "Sysctls", c.sysctls);
    if let Some(u) = c.ulimits.filter(|u| !u.is_empty()) {
        hc.insert("Ulimits".into(), json!(u));
    }
    if let Some(m) = c.mounts.filter(|m| !m.is_empty()) {
        for mount in &m {
            refuse_templates_in(mount, "TaskTemplate.ContainerSpec.Mounts")?;
        }
        hc.insert("Mounts".into(), Value::Array(m));
    }
    if let Some(p) = c.privileges {
        insert_list(&mut hc, "SecurityOpt", Some(security_opts(p)?));
    }
    if c.oom_score_adj != 0 {
        // The container create decides (berth refuses it today).
        hc.insert("OomScoreAdj".into(), json!(c.oom_score_adj));
    }

    let resources = task.resources.unwrap_or_default();
    if let Some(l) = resources.limits {
        check_resource_values(l.nano_cpus, l.memory_bytes, "Limits")?;
        if l.pids < 0 {
            return Err(ApiError::bad_request(format!(
                "invalid TaskTemplate.Resources.Limits.Pids {}: must be 0 (no limit) or more",
                l.pids
            )));
        }
        if l.nano_cpus > 0 {
            hc.insert("NanoCpus".into(), json!(l.nano_cpus));
        }
        if l.memory_bytes > 0 {
            hc.insert("Memory".into(), json!(l.memory_bytes));
        }
        if l.pids > 0 {
            hc.insert("PidsLimit".into(), json!(l.pids));
        }
    }
    if let Some(r) = resources.reservations {
        check_resource_values(r.nano_cpus, r.memory_bytes, "Reservations")?;
        check_reservations(&r)?;
        if r.memory_bytes > 0 {
            hc.insert("MemoryReservation".into(), json!(r.memory_bytes));
        }
    }

    if let Some(d) = task.log_driver {
        let mut lc = Map::new();
        lc.insert("Type".into(), Value::String(d.name));
        lc.insert("Config".into(), json!(d.options.unwrap_or_default()));
        hc.insert("LogConfig".into(), Value::Object(lc));
    }

    // Docker: the task's networks, else the deprecated service-level ones.
    let networks = match task.networks.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => s.networks.unwrap_or_default(),
    };
    let mut endpoints = Map::new();
    for n in networks {
        if n.target.is_empty() {
            return Err(ApiError::bad_request(
                "invalid network attachment: Target (a network name or ID) must be provided",
            ));
        }
        if endpoints.contains_key(&n.target) {
            return Err(ApiError::bad_request(format!(
                "invalid network attachments: network {} is attached twice",
                n.target
            )));
        }
        let mut ep = Map::new();
        if let Some(a) = &n.aliases {
            for alias in a {
                refuse_template(alias, "a network attachment's Aliases")?;
            }
        }
        insert_list(&mut ep, "Aliases", n.aliases);
        if let Some(o) = &n.driver_opts {
            for v in o.values() {
                refuse_template(v, "a network attachment's DriverOpts")?;
            }
        }
        insert_map(&mut ep, "DriverOpts", n.driver_opts);
        if endpoints.is_empty() {
            hc.insert("NetworkMode".into(), Value::String(n.target.clone()));
        }
        endpoints.insert(n.target, Value::Object(ep));
    }
    if endpoints.is_empty() {
        hc.insert("NetworkMode".into(), Value::String("bridge".into()));
    } else {
        body.insert(
            "NetworkingConfig".into(),
            json!({ "EndpointsConfig": endpoints }),
        );
    }
    body.insert("HostConfig".into(), Value::Object(hc));
    Ok(Value::Object(body))
}

/// The same, decoded into the engine's create options by the container create's own
/// decoding (`containers.rs`), with no name: the caller sets the task's name and adds
/// its labels. Returns the image reference as the spec names it, and the options.
pub(crate) fn task_options(
    spec: &serde_json::Value,
) -> Result<(String /*image*/, berth_engine::CreateOptions), ApiError> {
    let body = task_create_body(spec)?;
    let image = body
        .get("Image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let create: CreateBody = crate::decode::value_as(body, "task create body")?;
    let mut opts = create_options(create, None)?;
    let c = spec.pointer("/TaskTemplate/ContainerSpec");
    let list = |key: &str| c.and_then(|c| c.get(key)).and_then(Value::as_array);
    opts.task_files = task_files_of(list("Secrets").map(Vec::as_slice), ObjectKind::Secret)?;
    opts.task_files.extend(task_files_of(
        list("Configs").map(Vec::as_slice),
        ObjectKind::Config,
    )?);
    Ok((image, opts))
}

/// `ContainerSpec.Secrets` / `.Configs` (`{File: {Name, UID, GID, Mode}, SecretID,
/// SecretName}`) as the files a task gets; swarmkit's checks of their form (the engine
/// checks that the objects exist).
fn task_files_of(refs: Option<&[Value]>, kind: ObjectKind) -> Result<Vec<TaskFile>, ApiError> {
    let (what, id_key, name_key) = match kind {
        ObjectKind::Secret => ("secret", "SecretID", "SecretName"),
        ObjectKind::Config => ("config", "ConfigID", "ConfigName"),
    };
    let mut out = Vec::new();
    for r in refs.unwrap_or_default() {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let (id, name) = (s(id_key), s(name_key));
        if id.is_empty() || name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "malformed {what} reference {r}: {id_key} and {name_key} must be given"
            )));
        }
        if r.get("Runtime").is_some_and(|v| !is_zero(v)) {
            return Err(not_supported(&format!(
                "{what} {name}: a Runtime reference (a credential spec, Windows only)"
            )));
        }
        let Some(file) = r.get("File").filter(|f| f.is_object()) else {
            return Err(ApiError::bad_request(format!(
                "malformed {what} reference {name}: its File target must be given"
            )));
        };
        let target = file.get("Name").and_then(Value::as_str).unwrap_or_default();
        if target.is_empty() {
            return Err(ApiError::bad_request(format!(
                "malformed {what} reference {name}: File.Name must be given"
            )));
        }
        if target.split('/').any(|c| c == "..") {
            return Err(ApiError::bad_request(format!(
                "invalid {what} reference {name}: target {target:?} must not contain \"..\""
            )));
        }
        let id_of = |k: &str| -> Result<u32, ApiError> {
            match file.get(k) {
                None | Some(Value::Null) => Ok(0),
                Some(Value::String(v)) if v.is_empty() => Ok(0),
                Some(Value::String(v)) => v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid {what} reference {name}: File.{k} {v:?} is not a numeric ID"
                    ))
                }),
                Some(v) => Err(ApiError::bad_request(format!(
                    "invalid {what} reference {name}: File.{k} {v} is not a string"
                ))),
            }
        };
        let mode = match file.get("Mode") {
            None | Some(Value::Null) => 0o444,
            Some(v) => v.as_u64().filter(|m| *m <= 0o7777).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid {what} reference {name}: File.Mode {v} is not a file mode"
                ))
            })? as u32,
        };
        out.push(TaskFile {
            kind,
            id: id.to_string(),
            name: name.to_string(),
            target: TaskFile::target_of(kind, target),
            uid: id_of("UID")?,
            gid: id_of("GID")?,
            mode,
        });
    }
    Ok(out)
}

/// The longest service name (a DNS label).
const MAX_SERVICE_NAME: usize = 63;

/// swarmkit's rule for a service name (`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`, at most 63
/// characters): letters, digits, `-` and `_`, beginning and ending with a letter or a
/// digit. The `_` matters: `docker stack deploy` names services `STACK_SERVICE`. An
/// empty name is refused: Docker gives a nameless service a random name, which the
/// caller does before this check.
pub(crate) fn check_service_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid name: a service name must be provided",
        ));
    }
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let bytes = name.as_bytes();
    let valid = bytes.iter().all(|&c| alnum(c) || c == b'-' || c == b'_')
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last().copied().is_some_and(alnum);
    if !valid {
        return Err(ApiError::bad_request(format!(
            "Invalid name: {name:?}: a service name must be valid as a DNS name component: letters, digits, '-' and '_', beginning and ending with a letter or a digit"
        )));
    }
    if name.len() > MAX_SERVICE_NAME {
        return Err(ApiError::bad_request(format!(
            "Invalid name: {name:?}: a service name must be {MAX_SERVICE_NAME} characters or fewer"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::StatusCode;
    use berth_engine::MountRequest;

    use super::*;

    /// The body the docker CLI 28 sends for
    /// `docker service create --name web --replicas 2 busybox sleep 1000`.
    const CLI_BODY: &str = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox:latest","Args":["sleep","1000"],"Init":false,"StopGracePeriod":10000000000,"DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","Delay":5000000000,"MaxAttempts":0},"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":2}},"UpdateConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},"RollbackConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},"EndpointSpec":{"Mode":"vip"}}"#;

    fn cli_spec() -> Value {
        serde_json::from_str(CLI_BODY).unwrap()
    }

    /// A spec whose ContainerSpec is `container` and whose TaskTemplate has `task`.
    fn spec(container: Value, task: Value) -> Value {
        let mut t = task.as_object().cloned().unwrap_or_default();
        t.insert("ContainerSpec".into(), container);
        json!({ "Name": "s", "TaskTemplate": t })
    }

    fn body(container: Value) -> Value {
        task_create_body(&spec(container, json!({}))).unwrap()
    }

    fn refused(s: &Value) -> String {
        let e = task_create_body(s).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
        e.message
    }

    #[test]
    fn the_docker_cli_body_is_accepted() {
        let b = task_create_body(&cli_spec()).unwrap();
        assert_eq!(
            b,
            json!({
                "Image": "busybox:latest",
                "Cmd": ["sleep", "1000"],
                "StopTimeout": 10,
                "HostConfig": { "Init": false, "NetworkMode": "bridge" },
            })
        );
        let (image, o) = task_options(&cli_spec()).unwrap();
        assert_eq!(image, "busybox:latest");
        assert_eq!(o.name, None);
        assert_eq!(
            o.runtime.args_override,
            Some(vec!["sleep".to_string(), "1000".to_string()])
        );
        assert_eq!(o.runtime.entrypoint_override, None);
        assert_eq!(o.settings.stop_timeout, Some(10));
        assert!(!o.settings.init);
        assert_eq!(o.net.mode, "bridge");
    }

    #[test]
    fn the_docker_cli_healthcheck_maps() {
        let mut s = cli_spec();
        s["TaskTemplate"]["ContainerSpec"]["Healthcheck"] =
            json!({"Test":["CMD-SHELL","true"],"Interval":1000000000});
        let b = task_create_body(&s).unwrap();
        assert_eq!(
            b["Healthcheck"],
            json!({"Test":["CMD-SHELL","true"],"Interval":1000000000})
        );
        let (_, o) = task_options(&s).unwrap();
        let h = o.settings.healthcheck.unwrap();
        assert_eq!(
            h.test,
            Some(vec!["CMD-SHELL".to_string(), "true".to_string()])
        );
        assert_eq!(h.interval, Some(1_000_000_000));
    }

    #[test]
    fn command_replaces_the_entrypoint_and_args_are_its_arguments() {
        // Command alone: the image's CMD must not be appended.
        let b = body(json!({"Image":"a","Command":["/bin/app"]}));
        assert_eq!(b["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(b["Cmd"], json!([]));
        let (_, o) = task_options(&spec(
            json!({"Image":"a","Command":["/bin/app"]}),
            json!({}),
        ))
        .unwrap();
        assert_eq!(o.runtime.entrypoint_override, Some(vec!["/bin/app".into()]));
        // An empty override: with an entrypoint given, the engine runs it alone.
        assert!(o.runtime.args_override.unwrap_or_default().is_empty());

        let b = body(json!({"Image":"a","Command":["sh","-c"],"Args":["echo hi"]}));
        assert_eq!(b["Entrypoint"], json!(["sh", "-c"]));
        assert_eq!(b["Cmd"], json!(["echo hi"]));

        // Args alone: the image's ENTRYPOINT stays, Args replace its CMD.
        let b = body(json!({"Image":"a","Args":["x"]}));
        assert!(b.get("Entrypoint").is_none());
        assert_eq!(b["Cmd"], json!(["x"]));

        // Neither (or empty lists, which Docker treats as unset): the image's.
        let b = body(json!({"Image":"a","Command":[],"Args":null}));
        assert!(b.get("Entrypoint").is_none() && b.get("Cmd").is_none());
    }

    #[test]
    fn stop_grace_period_rounds_up_to_seconds() {
        let timeout =
            |ns: i64| body(json!({"Image":"a","StopGracePeriod":ns}))["StopTimeout"].clone();
        assert_eq!(timeout(0), json!(0));
        assert_eq!(timeout(1), json!(1));
        assert_eq!(timeout(1_000_000_000), json!(1));
        assert_eq!(timeout(1_500_000_000), json!(2));
        assert_eq!(timeout(10_000_000_001), json!(11));
        assert!(body(json!({"Image":"a"})).get("StopTimeout").is_none());
        let m = refused(&spec(json!({"Image":"a","StopGracePeriod":-1}), json!({})));
        assert!(m.contains("StopGracePeriod"), "{m}");
    }

    #[test]
    fn hosts_become_extra_hosts_for_every_name() {
        let b = body(json!({"Image":"a","Hosts":[
            "10.0.0.1 db db.local",
            "::1\tip6-localhost",
        ]}));
        assert_eq!(
            b["HostConfig"]["ExtraHosts"],
            json!(["db:10.0.0.1", "db.local:10.0.0.1", "ip6-localhost:::1"])
        );
        let (_, o) = task_options(&spec(
            json!({"Image":"a","Hosts":["10.0.0.1 db"]}),
            json!({}),
        ))
        .unwrap();
        assert_eq!(o.net.extra_hosts, ["db:10.0.0.1"]);
        // The docker CLI's `host:ip` is converted by the CLI; a raw one is refused.
        let m = refused(&spec(
            json!({"Image":"a","Hosts":["db:10.0.0.1"]}),
            json!({}),
        ));
        assert!(m.contains("Hosts") && m.contains("db:10.0.0.1"), "{m}");
    }

    #[test]
    fn container_fields_map() {
        let b = body(json!({
            "Image": "a", "Env": ["A=1"], "Dir": "/w", "User": "1:2", "Hostname": "h",
            "Labels": {"l": "v"}, "TTY": true, "OpenStdin": true, "StopSignal": "SIGINT",
            "Init": true, "ReadOnly": true, "Groups": ["audio"],
            "DNSConfig": {"Nameservers": ["9.9.9.9"], "Search": ["a.test"], "Options": ["ndots:2"]},
            "CapabilityAdd": ["NET_ADMIN"], "CapabilityDrop": ["CHOWN"],
            "Sysctls": {"net.ipv4.ip_forward": "1"},
            "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
            "Privileges": {"CredentialSpec": null, "SELinuxContext": null,
                           "Seccomp": {"Mode": "unconfined"}, "AppArmor": {"Mode": "disabled"},
                           "NoNewPrivileges": true},
        }));
        assert_eq!(
            b,
            json!({
                "Image": "a", "Env": ["A=1"], "WorkingDir": "/w", "User": "1:2",
                "Hostname": "h", "Labels": {"l": "v"}, "Tty": true, "OpenStdin": true,
                "StopSignal": "SIGINT",
                "HostConfig": {
                    "Init": true, "ReadonlyRootfs": true, "Dns": ["9.9.9.9"],
                    "DnsSearch": ["a.test"], "DnsOptions": ["ndots:2"], "GroupAdd": ["audio"],
                    "CapAdd": ["NET_ADMIN"], "CapDrop": ["CHOWN"],
                    "Sysctls": {"net.ipv4.ip_forward": "1"},
                    "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                    "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "no-new-privileges=true"],
                    "NetworkMode": "bridge",
                },
            })
        );
        // Keys match case-insensitively, as Docker's decoder does.
        let b = body(json!({"image":"a","tty":true,"dnsconfig":{"nameservers":["1.1.1.1"]}}));
        assert_eq!(b["Image"], "a");
        assert_eq!(b["Tty"], true);
        assert_eq!(b["HostConfig"]["Dns"], json!(["1.1.1.1"]));
    }

    #[test]
    fn resources_map_and_reservations_are_checked_against_this_node() {
        let s = spec(
            json!({"Image":"a"}),
            json!({"Resources":{
                "Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864,"Pids":100},
                "Reservations":{"NanoCPUs":0,"MemoryBytes":33554432,"GenericResources":null},
            }}),
        );
        let hc = task_create_body(&s).unwrap()["HostConfig"].clone();
        assert_eq!(hc["NanoCpus"], 500_000_000);
        assert_eq!(hc["Memory"], 67_108_864);
        assert_eq!(hc["PidsLimit"], 100);
        assert_eq!(hc["MemoryReservation"], 33_554_432);
        let (_, o) = task_options(&s).unwrap();
        let r = &o.runtime.resources;
        assert_eq!(r.nano_cpus, Some(500_000_000));
        assert_eq!(r.memory, Some(67_108_864));
        assert_eq!(r.pids_limit, Some(100));
        assert_eq!(r.memory_reservation, Some(33_554_432));

        // One CPU: every host has it, as a one-node swarm would place the task.
        let reserve = |r: Value| {
            spec(
                json!({"Image":"a"}),
                json!({"Resources":{"Reservations": r}}),
            )
        };
        task_create_body(&reserve(json!({"NanoCPUs": 1_000_000_000}))).unwrap();
        let m = refused(&reserve(json!({"NanoCPUs": 1_000_000_i64 * 1_000_000_000})));
        assert!(
            m.contains("Reservations.NanoCPUs") && m.contains("no suitable node"),
            "{m}"
        );
        let m = refused(&reserve(
            json!({"GenericResources":[{"DiscreteResourceSpec":{"Kind":"gpu","Value":1}}]}),
        ));
        assert!(m.contains("GenericResources"), "{m}");
        // swarmkit's floors.
        let m = refused(&spec(
            json!({"Image":"a"}),
            json!({"Resources":{"Limits":{"MemoryBytes":1024}}}),
        ));
        assert!(m.contains("Must be at least 4MiB"), "{m}");
        let m = refused(&spec(
            json!({"Image":"a"}),
            json!({"Resources":{"Limits":{"Pids":-1}}}),
        ));
        assert!(m.contains("Limits.Pids"), "{m}");
    }

    #[test]
    fn networks_become_endpoints_and_the_first_is_the_mode() {
        let s = spec(
            json!({"Image":"a"}),
            json!({"Networks":[
                {"Target":"front","Aliases":["web"]},
                {"Target":"back","DriverOpts":{"com.example.opt":"1"}},
            ]}),
        );
        let b = task_create_body(&s).unwrap();
        assert_eq!(b["HostConfig"]["NetworkMode"], "front");
        assert_eq!(
            b["NetworkingConfig"],
            json!({"EndpointsConfig": {
                "front": {"Aliases": ["web"]},
                "back": {"DriverOpts": {"com.example.opt": "1"}},
            }})
        );
        let (_, o) = task_options(&s).unwrap();
        assert_eq!(o.net.mode, "front");
        assert_eq!(o.net.endpoints["front"].aliases, ["web"]);
        assert!(o.net.endpoints.contains_key("back"));

        // The deprecated service-level list, used when the task has none.
        let mut s = spec(json!({"Image":"a"}), json!({"Networks": []}));
        s["Networks"] = json!([{"Target":"legacy"}]);
        let b = task_create_body(&s).unwrap();
        assert_eq!(b["HostConfig"]["NetworkMode"], "legacy");
        // No networks at all: berth's default bridge.
        assert_eq!(
            body(json!({"Image":"a"}))["HostConfig"]["NetworkMode"],
            "bridge"
        );
        assert!(body(json!({"Image":"a"})).get("NetworkingConfig").is_none());

        let m = refused(&spec(
            json!({"Image":"a"}),
            json!({"Networks":[{"Aliases":["x"]}]}),
        ));
        assert!(m.contains("Target"), "{m}");
    }

    #[test]
    fn mounts_pass_to_the_container_create() {
        let s = spec(
            json!({"Image":"a","Mounts":[
                {"Type":"volume","Source":"data","Target":"/data","VolumeOptions":{"NoCopy":true}},
                {"Type":"bind","Source":"/srv","Target":"/srv","ReadOnly":true},
                {"Type":"tmpfs","Target":"/tmp","TmpfsOptions":{"SizeBytes":1048576}},
            ]}),
            json!({}),
        );
        let b = task_create_body(&s).unwrap();
        assert_eq!(b["HostConfig"]["Mounts"].as_array().map(Vec::len), Some(3));
        let (_, o) = task_options(&s).unwrap();
        let r = &o.mounts.requests;
        assert_eq!(r.len(), 3);
        assert!(
            matches!(&r[0], MountRequest::Volume { name: Some(n), nocopy: true, .. } if n == "data")
        );
        assert!(matches!(
            &r[1],
            MountRequest::Bind {
                read_only: true,
                ..
            }
        ));
        assert!(matches!(
            &r[2],
            MountRequest::Tmpfs {
                size_bytes: Some(1_048_576),
                ..
            }
        ));
        // What the container create refuses, a service refuses too.
        let e = task_options(&spec(
            json!({"Image":"a","Mounts":[{"Type":"npipe","Target":"/x"}]}),
            json!({}),
        ))
        .unwrap_err();
        assert!(e.message.contains("npipe"), "{}", e.message);
    }

    #[test]
    fn empty_and_null_values_are_accepted() {
        let b = body(json!({
            "Image": "a", "Mounts": null, "Privileges": null, "Secrets": [], "Configs": null,
            "Isolation": "default", "Hosts": [], "Labels": {}, "Env": null, "Init": null,
            "DNSConfig": null, "Ulimits": [], "OomScoreAdj": 0, "Healthcheck": null,
        }));
        assert_eq!(
            b,
            json!({"Image":"a","HostConfig":{"NetworkMode":"bridge"}})
        );
        // An unknown key with an empty value asks for nothing.
        body(json!({"Image":"a","SomethingNew":null,"Other":{"X":false}}));
        let s = spec(
            json!({"Image":"a"}),
            json!({"PluginSpec":null,"NetworkAttachmentSpec":null,"Placement":{"Constraints":[],"Preferences":[],"Platforms":null,"MaxReplicas":0},"LogDriver":null}),
        );
        task_create_body(&s).unwrap();
    }

    #[test]
    fn secret_and_config_references_become_task_files() {
        let s = spec(
            json!({"Image":"a","Secrets":[
                {"SecretID":"s1","SecretName":"db","File":{"Name":"db","UID":"0","GID":"0","Mode":292}},
                {"SecretID":"s1","SecretName":"db","File":{"Name":"/etc/pw","UID":"1000","GID":"","Mode":256}}
            ],"Configs":[{"ConfigID":"c1","ConfigName":"conf","File":{"Name":"app.conf"}}]}),
            json!({}),
        );
        let (_, opts) = task_options(&s).unwrap();
        let got: Vec<(&str, &str, u32, u32, u32)> = opts
            .task_files
            .iter()
            .map(|f| (f.name.as_str(), f.target.as_str(), f.uid, f.gid, f.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("db", "/run/secrets/db", 0, 0, 0o444),
                ("db", "/etc/pw", 1000, 0, 0o400),
                ("conf", "/app.conf", 0, 0, 0o444),
            ]
        );
    }

    #[test]
    fn what_berth_cannot_honour_is_refused_by_name() {
        let c = |container: Value| refused(&spec(container, json!({})));
        let t = |task: Value| refused(&spec(json!({"Image":"a"}), task));

        // Malformed references, and what berth lacks in them.
        let m = c(json!({"Image":"a","Secrets":[{"SecretName":"s","File":{"Name":"s"}}]}));
        assert!(m.contains("malformed secret reference"), "{m}");
        let m = c(json!({"Image":"a","Configs":[{"ConfigID":"c1","ConfigName":"c"}]}));
        assert!(m.contains("its File target must be given"), "{m}");
        let m = c(
            json!({"Image":"a","Configs":[{"ConfigID":"c1","ConfigName":"c","Runtime":{"X":1}}]}),
        );
        assert!(m.contains("a Runtime reference"), "{m}");
        let m = c(
            json!({"Image":"a","Secrets":[{"SecretID":"s1","SecretName":"s","File":{"Name":"../x"}}]}),
        );
        assert!(m.contains("must not contain"), "{m}");
        let m = c(
            json!({"Image":"a","Secrets":[{"SecretID":"s1","SecretName":"s","File":{"Name":"s","UID":"root"}}]}),
        );
        assert!(m.contains("File.UID \"root\" is not a numeric ID"), "{m}");
        let m = c(json!({"Image":"a","Frobnicate":true}));
        assert!(m.contains("TaskTemplate.ContainerSpec.Frobnicate"), "{m}");
        let m = t(json!({"Frobnicate":{"X":1}}));
        assert!(m.contains("TaskTemplate.Frobnicate"), "{m}");
        let m = t(json!({"Resources":{"SwapBytes":1}}));
        assert!(m.contains("TaskTemplate.Resources.SwapBytes"), "{m}");
        assert_eq!(
            c(json!({"Image":""})),
            "ContainerSpec: image reference must be provided"
        );
        assert_eq!(
            refused(&json!({"Name":"s","TaskTemplate":{}})),
            "ContainerSpec: image reference must be provided"
        );
        assert!(c(json!({"Image":"a","Isolation":"hyperv"})).contains("Isolation"));
        body(json!({"Image":"a","Isolation":"Default"}));
        // Passed to the container create, which decides (and refuses it today).
        let e = task_options(&spec(json!({"Image":"a","OomScoreAdj":100}), json!({}))).unwrap_err();
        assert!(e.message.contains("oom-score-adj"), "{}", e.message);
        let m = c(json!({"Image":"a","Privileges":{"CredentialSpec":{"File":"x.json"}}}));
        assert!(m.contains("CredentialSpec"), "{m}");
        let m = c(json!({"Image":"a","Privileges":{"SELinuxContext":{"Type":"svirt_t"}}}));
        assert!(m.contains("SELinuxContext"), "{m}");
        let m = c(json!({"Image":"a","Privileges":{"Seccomp":{"Mode":"custom","Profile":"e30="}}}));
        assert!(m.contains("Seccomp"), "{m}");
        let m = c(json!({"Image":"a","Hostname":"{{.Node.Hostname}}-{{.Task.Slot}}"}));
        assert!(m.contains("templates") && m.contains("Hostname"), "{m}");
        let m = c(json!({"Image":"a","Env":["SLOT={{.Task.Slot}}"]}));
        assert!(m.contains("Env"), "{m}");
        let m = c(
            json!({"Image":"a","Mounts":[{"Type":"volume","Source":"d-{{.Task.Slot}}","Target":"/d"}]}),
        );
        assert!(m.contains("Mounts"), "{m}");

        assert!(t(json!({"Runtime":"plugin"})).contains("plugin"));
        assert!(t(json!({"Runtime":"attachment"})).contains("attachment"));
        assert!(t(json!({"Runtime":"vm"})).contains("unsupported runtime"));
        assert!(t(json!({"PluginSpec":{"Name":"p"}})).contains("PluginSpec"));
        assert!(t(json!({"NetworkAttachmentSpec":{"ContainerID":"x"}}))
            .contains("NetworkAttachmentSpec"));
        assert!(t(json!({"Placement":{"MaxReplicas":2}})).contains("MaxReplicas"));

        // Wrong types name the field.
        let m = c(json!({"Image":"a","Env":"A=1"}));
        assert!(m.contains("TaskTemplate.ContainerSpec.Env"), "{m}");
    }

    #[test]
    fn placement_is_decided_against_this_node() {
        let place = |p: Value| spec(json!({"Image":"a"}), json!({"Placement": p}));
        let ok = |p: Value| task_create_body(&place(p)).unwrap();
        ok(json!({"Constraints":["node.role==manager", "node.role != worker"]}));
        ok(json!({"Constraints":["node.platform.os==linux"]}));
        ok(json!({"Constraints":[format!("node.platform.arch=={}", std::env::consts::ARCH)]}));
        ok(json!({"Constraints":[format!(
            "node.platform.arch=={}",
            berth_image::model::host_platform().architecture
        )]}));
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        ok(json!({"Constraints":[format!("node.hostname=={host}")]}));
        ok(json!({"Preferences":[{"Spread":{"SpreadDescriptor":"node.labels.zone"}}]}));
        ok(json!({"Platforms":[
            {"Architecture":"amd64","OS":"linux"},
            {"Architecture":"arm64","OS":"linux"},
            {"Architecture":berth_image::model::host_platform().architecture,"OS":"linux"},
        ]}));

        let m = refused(&place(json!({"Constraints":["node.role==worker"]})));
        assert!(
            m.contains("no suitable node") && m.contains("node.role==worker"),
            "{m}"
        );
        let m = refused(&place(json!({"Constraints":["node.labels.zone==east"]})));
        assert!(
            m.contains("node.labels.zone==east") && m.contains("not supported"),
            "{m}"
        );
        let m = refused(&place(json!({"Constraints":["node.role"]})));
        assert!(m.contains("invalid placement constraint"), "{m}");
        let m = refused(&place(
            json!({"Platforms":[{"Architecture":"amd64","OS":"windows"}]}),
        ));
        assert!(m.contains("Platforms"), "{m}");
    }

    #[test]
    fn service_names_follow_swarmkit() {
        for ok in ["web", "a", "stack_web", "my-app-2", "A1", &"x".repeat(63)] {
            check_service_name(ok).unwrap();
        }
        for bad in ["", "-web", "web-", "_web", "web_", "a b", "web.1", "wéb"] {
            let e = check_service_name(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with("Invalid name"), "{}", e.message);
        }
        let e = check_service_name(&"x".repeat(64)).unwrap_err();
        assert!(e.message.contains("63 characters"), "{}", e.message);
    }
}
