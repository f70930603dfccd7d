//! Compose files as `docker stack deploy` reads them (docker/cli's `cli/compose/loader`,
//! compose file format 3.x), into a typed [`Config`] that [`super::convert`] turns into
//! the Engine API's specs.
//!
//! Each file goes through the steps of docker's loader, in its order:
//! 1. YAML into a tree with string keys (anchors and `<<` merge keys applied); the top
//!    level must be a mapping; `version` must be `3` or `3.x` (absent: the latest).
//! 2. Forbidden keys (`extends`, `volumes_from`, `mem_limit`, ...) refuse the file.
//! 3. `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
//!    `${VAR?message}` and `$$` in every string value, from the environment of the
//!    command only (like docker, a `.env` file next to the compose file is not read); a
//!    variable that is not set is the empty string. A value that interpolation made a
//!    string is cast back where docker casts it (`deploy.replicas: ${N}`).
//! 4. Every key is checked against the format's schema: an unknown key or a value of the
//!    wrong type fails naming the service and the key (`services.web Additional property
//!    foo is not allowed`, `services.web.deploy.replicas must be an integer`).
//! 5. Paths: `env_file` files are read and folded into `environment` (a variable given
//!    without a value takes the command's environment), bind sources, secret and config
//!    files are made absolute against the directory of the first file.
//!
//! Several files merge as docker merges them: a service of a later file overrides the
//! scalars it sets, its lists add to the earlier ones (ports, secrets and configs keyed
//! by their source, volumes by their target), `command` and `entrypoint` replace;
//! top-level networks, volumes, secrets and configs are replaced entry by entry.
//!
//! YAML is read as YAML 1.2 (docker reads 1.1): where a boolean is expected, the 1.1
//! words `yes`/`no`/`on`/`off`/`y`/`n` are taken too, and a file mode written `0440` is
//! octal as it is for docker.
//!
//! The keys docker ignores are reported on stderr as docker reports them ("Ignoring
//! unsupported options: ..."), with `depends_on` among them: docker drops it without a
//! word, berth says so. Two keys docker drops silently are honoured instead: `tmpfs`
//! (tmpfs mounts) and `group_add` (the tasks' supplementary groups).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::{Map, Value};

/// The keys of a service docker's loader reads and `docker stack deploy` ignores, with
/// `depends_on` (ignored as well, without a word from docker).
pub const UNSUPPORTED: &[&str] = &[
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "depends_on",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
];

/// Keys removed from the format: ignored with a note.
pub const DEPRECATED: &[(&str, &str)] = &[
    ("container_name", "Setting the container name is not supported."),
    (
        "expose",
        "Exposing ports is unnecessary - services on the same network can access each other's containers on any port.",
    ),
];

/// Keys that refuse the file.
pub const FORBIDDEN: &[(&str, &str)] = &[
    ("cpu_quota", "Set resource limits using deploy.resources"),
    ("cpu_shares", "Set resource limits using deploy.resources"),
    ("cpuset", "Set resource limits using deploy.resources"),
    ("extends", "Support for `extends` is not implemented yet."),
    ("mem_limit", "Set resource limits using deploy.resources"),
    ("memswap_limit", "Set resource limits using deploy.resources"),
    (
        "volume_driver",
        "Instead of setting the volume driver on the service, define a volume using the top-level `volumes` option and specify the driver there.",
    ),
    (
        "volumes_from",
        "To share a volume between services, define it using the top-level `volumes` option and reference it from each service that shares it using the service-level `volumes` option.",
    ),
];

const SERVICE_KEYS: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "cgroupns_mode",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "devices",
    "dns",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "external_links",
    "extra_hosts",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "links",
    "logging",
    "mac_address",
    "network_mode",
    "networks",
    "oom_score_adj",
    "pid",
    "ports",
    "privileged",
    "read_only",
    "restart",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "volumes",
    "working_dir",
];

/// The newest format version docker knows; a file without `version` is read as it.
const DEFAULT_VERSION: &str = "3.14";

// ------------------------------------------------------------------------ the model

/// A loaded (and merged) compose configuration.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Config {
    /// Sorted by name.
    pub services: Vec<Service>,
    pub networks: BTreeMap<String, NetworkConfig>,
    pub volumes: BTreeMap<String, VolumeConfig>,
    pub secrets: BTreeMap<String, FileObject>,
    pub configs: BTreeMap<String, FileObject>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY` → value; `None`: given without a value and not set in the environment.
    pub environment: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<ServiceVolume>,
    /// Network name → its settings (`None`: listed without any).
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    pub healthcheck: Option<Healthcheck>,
    pub deploy: Deploy,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub stop_signal: Option<String>,
    pub isolation: Option<String>,
    /// Nanoseconds.
    pub stop_grace_period: Option<i64>,
    pub tty: bool,
    pub stdin_open: bool,
    pub read_only: bool,
    pub init: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub group_add: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `host:ip` entries.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub logging: Option<Logging>,
    pub tmpfs: Vec<String>,
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    pub oom_score_adj: Option<i64>,
    /// The legacy `restart` (used when `deploy.restart_policy` is absent, as docker).
    pub restart: Option<String>,
    pub credential_spec: Option<CredentialSpec>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    pub mode: String,
    pub target: u32,
    pub published: u32,
    pub protocol: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServiceVolume {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub consistency: String,
    pub bind: Option<BindOptions>,
    pub volume: Option<VolumeOptions>,
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct BindOptions {
    pub propagation: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct VolumeOptions {
    pub nocopy: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TmpfsOptions {
    pub size: i64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub driver_opts: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<u64>,
    pub disable: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Deploy {
    pub mode: Option<String>,
    pub replicas: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
    pub resources: Resources,
    pub restart_policy: Option<RestartPolicy>,
    pub placement: Placement,
    pub endpoint_mode: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpdateConfig {
    pub parallelism: Option<u64>,
    pub delay: Option<i64>,
    pub failure_action: Option<String>,
    pub monitor: Option<i64>,
    pub max_failure_ratio: Option<f64>,
    pub order: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resources {
    pub limits: Option<Limits>,
    pub reservations: Option<Reservations>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Limits {
    pub cpus: Option<String>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reservations {
    pub cpus: Option<String>,
    pub memory: Option<i64>,
    /// `(kind, value)` of each discrete generic resource.
    pub generic_resources: Vec<(String, i64)>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<i64>,
    pub max_attempts: Option<u64>,
    pub window: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Placement {
    pub constraints: Vec<String>,
    /// The `spread` of each preference.
    pub preferences: Vec<String>,
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Logging {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct CredentialSpec {
    pub config: Option<String>,
    pub file: Option<String>,
    pub registry: Option<String>,
}

/// A service's use of a secret or config.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct NetworkConfig {
    /// The name it has on the engine when not the stack's (`name:`, or an external
    /// network's).
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub ipam_driver: Option<String>,
    pub ipam_subnets: Vec<String>,
    pub external: bool,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct VolumeConfig {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileObject {
    pub name: Option<String>,
    /// Absolute.
    pub file: Option<PathBuf>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub template_driver: Option<String>,
}

/// A loaded configuration and what the command says about the keys it ignores.
#[derive(Debug, Default)]
pub struct Loaded {
    pub config: Config,
    /// Ignored keys found in the services, sorted.
    pub unsupported: Vec<String>,
    /// Deprecated keys found, with docker's note, sorted.
    pub deprecated: Vec<(String, String)>,
}

impl Loaded {
    /// What docker prints on stderr about the keys it ignores.
    pub fn warnings(&self) -> String {
        let mut out = String::new();
        if !self.unsupported.is_empty() {
            out.push_str(&format!(
                "Ignoring unsupported options: {}\n\n",
                self.unsupported.join(", ")
            ));
        }
        if !self.deprecated.is_empty() {
            let notes: Vec<String> = self
                .deprecated
                .iter()
                .map(|(k, d)| format!("{k}: {d}"))
                .collect();
            out.push_str(&format!(
                "Ignoring deprecated options:\n\n{}\n\n",
                notes.join("\n\n")
            ));
        }
        out
    }
}

// ---------------------------------------------------------------------- loading

/// Where the variables of `${VAR}` and of `environment: [VAR]` come from.
pub type Env = HashMap<String, String>;

/// Loads the files (name for messages, contents), paths relative to `working_dir` (the
/// directory of the first file), variables from `env`.
pub fn load(files: &[(String, Vec<u8>)], working_dir: &Path, env: &Env) -> anyhow::Result<Loaded> {
    if files.is_empty() {
        bail!("Please specify a Compose file (with --compose-file)");
    }
    let mut loaded = Loaded::default();
    let mut unsupported = std::collections::BTreeSet::new();
    let mut deprecated = BTreeMap::new();
    let mut version: Option<String> = None;
    let mut merged: Option<Config> = None;
    for (name, bytes) in files {
        let dict = parse_yaml(bytes)?;
        let v = file_version(&dict)?;
        match &version {
            None => version = Some(v),
            Some(first) if *first != v => {
                bail!("version mismatched between two composefiles : {first} and {v}")
            }
            Some(_) => {}
        }
        check_forbidden(&dict)?;
        for svc in services_of(&dict) {
            for key in UNSUPPORTED {
                if svc.contains_key(*key) {
                    unsupported.insert((*key).to_string());
                }
            }
            for (key, note) in DEPRECATED {
                if svc.contains_key(*key) {
                    deprecated.insert((*key).to_string(), (*note).to_string());
                }
            }
        }
        let dict = interpolate(&Value::Object(dict), "", env)?;
        let cfg = parse_config(&dict, working_dir, env)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .map_err(|e| {
                if files.len() > 1 {
                    anyhow::anyhow!("{name}: {e}")
                } else {
                    e
                }
            })?;
        merged = Some(match merged {
            None => cfg,
            Some(base) => merge(base, cfg),
        });
    }
    loaded.config = merged.unwrap_or_default();
    loaded.unsupported = unsupported.into_iter().collect();
    loaded.deprecated = deprecated.into_iter().collect();
    Ok(loaded)
}

/// The YAML of one file as a tree with string keys.
pub fn parse_yaml(bytes: &[u8]) -> anyhow::Result<Map<String, Value>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("yaml: invalid UTF-8 in the file: {e}"))?;
    let mut y: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => bail!("{}", yaml_error(&e)),
    };
    y.apply_merge()
        .map_err(|e| anyhow::anyhow!("{}", yaml_error(&e)))?;
    match yaml_to_json(&y, "")? {
        Value::Object(m) => Ok(m),
        _ => bail!("Top-level object must be a mapping"),
    }
}

/// A YAML error as docker's yaml package words it: `yaml: line 3: message`.
fn yaml_error(e: &serde_norway::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(l) => {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            let msg = text.strip_suffix(&suffix).unwrap_or(&text);
            format!("yaml: line {}: {msg}", l.line())
        }
        None => format!("yaml: {text}"),
    }
}

fn yaml_to_json(v: &serde_norway::Value, path: &str) -> anyhow::Result<Value> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => bail!("{}: unsupported number {n}", shown(path)),
                }
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| yaml_to_json(x, &format!("{path}[{i}]")))
                .collect::<anyhow::Result<_>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let Y::String(key) = k else {
                    let shown_key = match k {
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        Y::Null => "<nil>".into(),
                        _ => format!("{k:?}"),
                    };
                    if path.is_empty() {
                        bail!("non-string key at top level: {shown_key}");
                    }
                    bail!("non-string key in {path}: {shown_key}");
                };
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(key.clone(), yaml_to_json(x, &sub)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(&t.value, path)?,
    })
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

/// The file's format version, normalized (`3` and none are the latest 3.x).
fn file_version(dict: &Map<String, Value>) -> anyhow::Result<String> {
    let v = match dict.get("version") {
        None | Some(Value::Null) => return Ok(DEFAULT_VERSION.into()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => bail!("version must be a string"),
    };
    let v = match v.as_str() {
        "" | "3" => DEFAULT_VERSION.to_string(),
        _ => v,
    };
    let known = v
        .strip_prefix("3.")
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m <= 14 && !v.ends_with('.'));
    if !known {
        bail!("unsupported Compose file version: {v}");
    }
    Ok(v)
}

fn services_of(dict: &Map<String, Value>) -> Vec<&Map<String, Value>> {
    dict.get("services")
        .and_then(Value::as_object)
        .map(|s| s.values().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn check_forbidden(dict: &Map<String, Value>) -> anyhow::Result<()> {
    let mut found = BTreeMap::new();
    for svc in services_of(dict) {
        for (key, note) in FORBIDDEN {
            if svc.contains_key(*key) {
                found.insert(*key, *note);
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let notes: Vec<String> = found.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    bail!(
        "Compose file contains unsupported options:\n\n{}\n",
        notes.join("\n\n")
    )
}

// ------------------------------------------------------------------ interpolation

/// What a value that interpolation turned into a string is cast back to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cast {
    Int,
    Float,
    Bool,
}

/// docker's `interpolateTypeCastMapping` (`*` any key, `[]` any list item).
const CASTS: &[(&str, Cast)] = &[
    ("services.*.configs.[].mode", Cast::Int),
    ("services.*.secrets.[].mode", Cast::Int),
    ("services.*.healthcheck.retries", Cast::Int),
    ("services.*.healthcheck.disable", Cast::Bool),
    ("services.*.deploy.replicas", Cast::Int),
    ("services.*.deploy.update_config.parallelism", Cast::Int),
    (
        "services.*.deploy.update_config.max_failure_ratio",
        Cast::Float,
    ),
    ("services.*.deploy.rollback_config.parallelism", Cast::Int),
    (
        "services.*.deploy.rollback_config.max_failure_ratio",
        Cast::Float,
    ),
    ("services.*.deploy.restart_policy.max_attempts", Cast::Int),
    (
        "services.*.deploy.placement.max_replicas_per_node",
        Cast::Int,
    ),
    ("services.*.ports.[].target", Cast::Int),
    ("services.*.ports.[].published", Cast::Int),
    ("services.*.ulimits.*", Cast::Int),
    ("services.*.ulimits.*.hard", Cast::Int),
    ("services.*.ulimits.*.soft", Cast::Int),
    ("services.*.privileged", Cast::Bool),
    ("services.*.read_only", Cast::Bool),
    ("services.*.stdin_open", Cast::Bool),
    ("services.*.tty", Cast::Bool),
    ("services.*.init", Cast::Bool),
    ("services.*.volumes.[].read_only", Cast::Bool),
    ("services.*.volumes.[].volume.nocopy", Cast::Bool),
    ("networks.*.external", Cast::Bool),
    ("networks.*.internal", Cast::Bool),
    ("networks.*.attachable", Cast::Bool),
    ("volumes.*.external", Cast::Bool),
    ("secrets.*.external", Cast::Bool),
    ("configs.*.external", Cast::Bool),
];

fn cast_for(path: &str) -> Option<Cast> {
    let parts: Vec<&str> = path.split('.').collect();
    CASTS.iter().find_map(|(pattern, cast)| {
        let pp: Vec<&str> = pattern.split('.').collect();
        (pp.len() == parts.len() && pp.iter().zip(&parts).all(|(p, x)| *p == "*" || p == x))
            .then_some(*cast)
    })
}

/// A YAML 1.1 boolean word (docker's `toBoolean`).
fn yaml_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Interpolates every string value of `v` (keys are left as they are).
fn interpolate(v: &Value, path: &str, env: &Env) -> anyhow::Result<Value> {
    Ok(match v {
        Value::String(s) => {
            let out = substitute(s, env).map_err(|template| {
                anyhow::anyhow!(
                    "invalid interpolation format for {path}: {template:?}; you may need to escape any $ with another $"
                )
            })?;
            if out == *s {
                return Ok(v.clone());
            }
            match cast_for(path) {
                None => Value::String(out),
                Some(cast) => {
                    let failed = |e: String| {
                        anyhow::anyhow!(
                            "error while interpolating {path}: failed to cast to expected type: {e}"
                        )
                    };
                    match cast {
                        Cast::Int => Value::from(out.parse::<i64>().map_err(|_| {
                            failed(format!("strconv.Atoi: parsing {out:?}: invalid syntax"))
                        })?),
                        Cast::Float => {
                            let f = out.parse::<f64>().map_err(|_| {
                                failed(format!(
                                    "strconv.ParseFloat: parsing {out:?}: invalid syntax"
                                ))
                            })?;
                            serde_json::Number::from_f64(f)
                                .map(Value::Number)
                                .ok_or_else(|| failed(format!("invalid number {out:?}")))?
                        }
                        Cast::Bool => Value::Bool(
                            yaml_bool(&out)
                                .ok_or_else(|| failed(format!("invalid boolean: {out}")))?,
                        ),
                    }
                }
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| interpolate(x, &format!("{path}.[]"), env))
                .collect::<anyhow::Result<_>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(k.clone(), interpolate(x, &sub, env)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// docker's `template.Substitute`. On a malformed template or a required variable that
/// is missing, the text docker puts in its error.
pub fn substitute(s: &str, env: &Env) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err(format!("Invalid template: {s:?}"));
            };
            let inner = &r[..end];
            if !valid_substitution(inner) {
                return Err(format!("Invalid template: {s:?}"));
            }
            out.push_str(&apply(inner, env)?);
            rest = &r[end + 1..];
            continue;
        }
        // `$NAME`: the longest run of name characters; with none, invalid.
        let name_len = name_prefix_len(after);
        if name_len == 0 {
            return Err(format!("Invalid template: {s:?}"));
        }
        let name = &after[..name_len];
        out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
        rest = &after[name_len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name at the start of `s` (`[_a-z][_a-z0-9]*`, any case).
fn name_prefix_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

/// Whether the text between braces is a name, optionally followed by `:-`, `-`, `:?`
/// or `?` and anything.
fn valid_substitution(inner: &str) -> bool {
    let n = name_prefix_len(inner);
    if n == 0 {
        return false;
    }
    let op = &inner[n..];
    op.is_empty()
        || op.starts_with(":-")
        || op.starts_with(":?")
        || op.starts_with('-')
        || op.starts_with('?')
}

fn apply(inner: &str, env: &Env) -> Result<String, String> {
    let n = name_prefix_len(inner);
    let (name, op) = inner.split_at(n);
    let value = env.get(name);
    if let Some(default) = op.strip_prefix(":-") {
        return Ok(match value {
            Some(v) if !v.is_empty() => v.clone(),
            _ => default.to_string(),
        });
    }
    if let Some(message) = op.strip_prefix(":?") {
        return match value {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(format!(
                "required variable {name} is missing a value: {message}"
            )),
        };
    }
    if let Some(default) = op.strip_prefix('-') {
        return Ok(value.cloned().unwrap_or_else(|| default.to_string()));
    }
    if let Some(message) = op.strip_prefix('?') {
        return value
            .cloned()
            .ok_or_else(|| format!("required variable {name} is missing a value: {message}"));
    }
    Ok(value.cloned().unwrap_or_default())
}

// ------------------------------------------------------------- reading the tree

/// A mapping of the tree and its dotted path, for messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_error(path: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!("{} must be {what}", shown(path))
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str) -> anyhow::Result<Obj<'a>> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_string(),
            }),
            _ => Err(type_error(path, "a mapping")),
        }
    }

    /// A mapping, or an empty one for null.
    fn new_or_null(v: &'a Value, path: &str) -> anyhow::Result<Option<Obj<'a>>> {
        if v.is_null() {
            return Ok(None);
        }
        Obj::new(v, path).map(Some)
    }

    /// Refuses a key not in `known` (extension keys `x-…` allowed when `extensions`).
    fn check(&self, known: &[&str], extensions: bool) -> anyhow::Result<()> {
        for k in self.map.keys() {
            if known.contains(&k.as_str()) || (extensions && k.starts_with("x-")) {
                continue;
            }
            bail!(
                "{} Additional property {k} is not allowed",
                shown(&self.path)
            );
        }
        Ok(())
    }

    fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn str(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(type_error(&self.at(key), "a string")),
        }
    }

    fn bool(&self, key: &str) -> anyhow::Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => yaml_bool(s)
                .map(Some)
                .ok_or_else(|| type_error(&self.at(key), "a boolean")),
            Some(_) => Err(type_error(&self.at(key), "a boolean")),
        }
    }

    fn flag(&self, key: &str) -> anyhow::Result<bool> {
        Ok(self.bool(key)?.unwrap_or(false))
    }

    fn int(&self, key: &str) -> anyhow::Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_int(v)
                .map(Some)
                .ok_or_else(|| type_error(&self.at(key), "an integer")),
        }
    }

    fn uint(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self.int(key)? {
            None => Ok(None),
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            Some(_) => Err(type_error(&self.at(key), "a non-negative integer")),
        }
    }

    fn number(&self, key: &str) -> anyhow::Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(type_error(&self.at(key), "a number")),
        }
    }

    fn duration(&self, key: &str) -> anyhow::Result<Option<i64>> {
        let Some(s) = self.str(key)? else {
            return Ok(None);
        };
        super::super::opts::go_duration(&s).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} Does not match format 'duration' ({s:?}: {e})",
                self.at(key)
            )
        })
    }

    fn obj(&self, key: &str) -> anyhow::Result<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::new(v, &self.at(key)).map(Some),
        }
    }

    fn list(&self, key: &str) -> anyhow::Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(type_error(&self.at(key), "a list")),
        }
    }

    /// A list of strings.
    fn strings(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let Some(items) = self.list(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(type_error(&format!("{}.{i}", self.at(key)), "a string")),
            })
            .collect()
    }

    /// A string or a list of strings.
    fn string_or_list(&self, key: &str) -> anyhow::Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(_)) => self.strings(key),
            Some(_) => Err(type_error(&self.at(key), "a string or a list of strings")),
        }
    }

    /// A command: a string split as a shell splits words, or a list.
    fn command(&self, key: &str) -> anyhow::Result<Option<Vec<String>>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => super::super::service::shell_words(s)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", self.at(key))),
            Some(Value::Array(_)) => self.strings(key).map(Some),
            Some(_) => Err(type_error(&self.at(key), "a string or a list of strings")),
        }
    }

    /// docker's `list_or_dict`: `{K: V}` (a string, a number or null) or `["K=V", "K"]`.
    /// A key without a value is `None`.
    fn list_or_dict(&self, key: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let path = self.at(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => return Err(type_error(&join(&path, k), "a string, number or null")),
                    };
                    Ok((k.clone(), v))
                })
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| match x {
                    Value::String(s) => Ok(match s.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (s.clone(), None),
                    }),
                    _ => Err(type_error(&format!("{path}.{i}"), "a string")),
                })
                .collect(),
            Some(_) => Err(type_error(&path, "a mapping or a list")),
        }
    }

    /// A `list_or_dict` as a map of strings (a key without a value maps to "").
    fn mapping(&self, key: &str) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .list_or_dict(key)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    /// `driver_opts`: a mapping of strings or numbers.
    fn options(&self, key: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let Some(o) = self.obj(key)? else {
            return Ok(BTreeMap::new());
        };
        o.map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                _ => Err(type_error(&join(&o.path, k), "a string or number")),
            })
            .collect()
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

/// A memory size (`512M`, or a number of bytes).
fn size(o: &Obj<'_>, key: &str) -> anyhow::Result<Option<i64>> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => super::super::opts::ram_in_bytes(s)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", o.at(key))),
        Some(v) => as_int(v)
            .map(Some)
            .ok_or_else(|| type_error(&o.at(key), "a string")),
    }
}

/// A file mode: a number, or a string of octal digits (`0440`, which YAML 1.1 reads as
/// octal).
fn file_mode(o: &Obj<'_>, key: &str) -> anyhow::Result<Option<u32>> {
    let bad = || type_error(&o.at(key), "a number");
    match o.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.starts_with('0') => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            u32::from_str_radix(digits, 8).map(Some).map_err(|_| bad())
        }
        Some(v) => as_int(v)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(bad),
    }
}

// ------------------------------------------------------------ the typed config

fn parse_config(dict: &Value, working_dir: &Path, env: &Env) -> anyhow::Result<Config> {
    let top = Obj::new(dict, "")?;
    top.check(
        &[
            "version", "services", "networks", "volumes", "secrets", "configs",
        ],
        true,
    )?;
    let mut cfg = Config::default();
    if let Some(services) = top.obj("services")? {
        for (name, def) in services.map {
            check_name("services", name)?;
            cfg.services
                .push(parse_service(name, def, working_dir, env)?);
        }
        cfg.services.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if let Some(networks) = top.obj("networks")? {
        for (name, def) in networks.map {
            cfg.networks.insert(name.clone(), parse_network(name, def)?);
        }
    }
    if let Some(volumes) = top.obj("volumes")? {
        for (name, def) in volumes.map {
            check_name("volumes", name)?;
            cfg.volumes.insert(name.clone(), parse_volume(name, def)?);
        }
    }
    for (section, kind) in [("secrets", "secret"), ("configs", "config")] {
        if let Some(objects) = top.obj(section)? {
            for (name, def) in objects.map {
                check_name(section, name)?;
                let obj = parse_file_object(section, kind, name, def, working_dir)?;
                if section == "secrets" {
                    cfg.secrets.insert(name.clone(), obj);
                } else {
                    cfg.configs.insert(name.clone(), obj);
                }
            }
        }
    }
    Ok(cfg)
}

/// The names the schema allows for services, volumes, secrets and configs.
fn check_name(section: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("{section} Additional property {name} is not allowed");
    }
    Ok(())
}

fn parse_service(
    name: &str,
    def: &Value,
    working_dir: &Path,
    env: &Env,
) -> anyhow::Result<Service> {
    let path = format!("services.{name}");
    let o = Obj::new(def, &path)?;
    o.check(SERVICE_KEYS, true)?;
    let mut s = Service {
        name: name.to_string(),
        image: o.str("image")?,
        command: o.command("command")?,
        entrypoint: o.command("entrypoint")?,
        labels: o.mapping("labels")?,
        hostname: o.str("hostname")?,
        user: o.str("user")?,
        working_dir: o.str("working_dir")?,
        stop_signal: o.str("stop_signal")?,
        isolation: o.str("isolation")?,
        stop_grace_period: o.duration("stop_grace_period")?,
        tty: o.flag("tty")?,
        stdin_open: o.flag("stdin_open")?,
        read_only: o.flag("read_only")?,
        init: o.bool("init")?,
        cap_add: o.strings("cap_add")?,
        cap_drop: o.strings("cap_drop")?,
        sysctls: o.mapping("sysctls")?,
        dns: o.string_or_list("dns")?,
        dns_search: o.string_or_list("dns_search")?,
        tmpfs: o.string_or_list("tmpfs")?,
        oom_score_adj: o.int("oom_score_adj")?,
        restart: o.str("restart")?,
        ..Service::default()
    };
    // Unchecked keys docker ignores: only their shape is checked by the schema.
    for key in [
        "container_name",
        "cgroupns_mode",
        "cgroup_parent",
        "domainname",
        "ipc",
        "mac_address",
        "network_mode",
    ] {
        o.str(key)?;
    }
    for key in [
        "depends_on",
        "devices",
        "external_links",
        "links",
        "security_opt",
    ] {
        o.strings(key)?;
    }
    o.bool("privileged")?;
    if let Some(groups) = o.list("group_add")? {
        for (i, g) in groups.iter().enumerate() {
            s.group_add.push(match g {
                Value::String(x) => x.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(type_error(
                        &format!("{path}.group_add.{i}"),
                        "a string or number",
                    ))
                }
            });
        }
    }
    // environment: env_file first, then environment; a variable without a value takes
    // the command's environment (docker's `resolveEnvironment`).
    let mut environment = BTreeMap::new();
    let update = |environment: &mut BTreeMap<String, Option<String>>,
                  vars: Vec<(String, Option<String>)>| {
        for (k, v) in vars {
            let from_env = env.get(&k);
            let value = match (&v, from_env) {
                (None, Some(e)) => Some(e.clone()),
                (Some(x), Some(e)) if x.is_empty() => Some(e.clone()),
                _ => v,
            };
            environment.insert(k, value);
        }
    };
    for file in o.string_or_list("env_file")? {
        let abs = abs_path(working_dir, &file);
        let lines = read_env_file(&abs, env)?;
        let vars = lines
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (l, None),
            })
            .collect();
        update(&mut environment, vars);
    }
    update(&mut environment, o.list_or_dict("environment")?);
    s.environment = environment;
    // extra_hosts: a list of `host:ip`, or a mapping host → ip.
    s.extra_hosts = match o.get("extra_hosts") {
        Some(Value::Object(_)) => {
            let mut l: Vec<String> = o
                .list_or_dict("extra_hosts")?
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}:{v}")))
                .collect();
            l.sort();
            l
        }
        _ => o
            .list_or_dict("extra_hosts")?
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect(),
    };
    if let Some(ports) = o.list("ports")? {
        for (i, p) in ports.iter().enumerate() {
            s.ports.extend(parse_port(p, &format!("{path}.ports.{i}"))?);
        }
    }
    if let Some(volumes) = o.list("volumes")? {
        for (i, v) in volumes.iter().enumerate() {
            let mut vol = parse_service_volume(v, &format!("{path}.volumes.{i}"))?;
            if vol.kind == "bind" {
                if vol.source.is_empty() {
                    bail!("invalid mount config for type \"bind\": field Source must not be empty");
                }
                let expanded = match vol.source.strip_prefix('~') {
                    Some(rest) => match env.get("HOME") {
                        Some(home) => format!("{home}{rest}"),
                        None => vol.source.clone(),
                    },
                    None => vol.source.clone(),
                };
                vol.source = abs_path(working_dir, &expanded)
                    .to_string_lossy()
                    .into_owned();
            }
            s.volumes.push(vol);
        }
    }
    match o.get("networks") {
        None => {}
        Some(Value::Array(_)) => {
            for n in o.strings("networks")? {
                s.networks.insert(n, None);
            }
        }
        Some(Value::Object(m)) => {
            for (n, cfg) in m {
                let npath = format!("{path}.networks.{n}");
                let settings = match Obj::new_or_null(cfg, &npath)? {
                    None => None,
                    Some(no) => {
                        no.check(
                            &["aliases", "driver_opts", "ipv4_address", "ipv6_address"],
                            false,
                        )?;
                        for key in ["ipv4_address", "ipv6_address"] {
                            if no.str(key)?.is_some_and(|a| !a.is_empty()) {
                                bail!("{npath}.{key}: a task's static address is not supported by `stack deploy` (docker ignores it too)");
                            }
                        }
                        Some(ServiceNetwork {
                            aliases: no.strings("aliases")?,
                            driver_opts: no.options("driver_opts")?,
                        })
                    }
                };
                s.networks.insert(n.clone(), settings);
            }
        }
        Some(_) => {
            return Err(type_error(
                &format!("{path}.networks"),
                "a list or a mapping",
            ))
        }
    }
    if let Some(h) = o.obj("healthcheck")? {
        h.check(
            &[
                "disable",
                "interval",
                "retries",
                "test",
                "timeout",
                "start_period",
                "start_interval",
            ],
            false,
        )?;
        let test = match h.get("test") {
            None => None,
            Some(Value::String(t)) => Some(vec!["CMD-SHELL".to_string(), t.clone()]),
            Some(Value::Array(_)) => Some(h.strings("test")?),
            Some(_) => return Err(type_error(&h.at("test"), "a string or a list of strings")),
        };
        let retries = match h.get("retries") {
            None => None,
            Some(v) => Some(
                as_int(v)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| type_error(&h.at("retries"), "a number"))?,
            ),
        };
        s.healthcheck = Some(Healthcheck {
            test,
            interval: h.duration("interval")?,
            timeout: h.duration("timeout")?,
            start_period: h.duration("start_period")?,
            start_interval: h.duration("start_interval")?,
            retries,
            disable: h.flag("disable")?,
        });
    }
    if let Some(d) = o.get("deploy") {
        if let Some(d) = Obj::new_or_null(d, &format!("{path}.deploy"))? {
            s.deploy = parse_deploy(&d)?;
        }
    }
    if let Some(u) = o.obj("ulimits")? {
        for (k, v) in u.map {
            let upath = join(&u.path, k);
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_lowercase()) {
                bail!("{} Additional property {k} is not allowed", u.path);
            }
            let limit = match v {
                Value::Object(_) => {
                    let lo = Obj::new(v, &upath)?;
                    lo.check(&["hard", "soft"], false)?;
                    let (Some(soft), Some(hard)) = (lo.int("soft")?, lo.int("hard")?) else {
                        bail!("{upath}: soft and hard are required");
                    };
                    Ulimit { soft, hard }
                }
                _ => {
                    let n =
                        as_int(v).ok_or_else(|| type_error(&upath, "an integer or a mapping"))?;
                    Ulimit { soft: n, hard: n }
                }
            };
            s.ulimits.insert(k.clone(), limit);
        }
    }
    if let Some(l) = o.obj("logging")? {
        l.check(&["driver", "options"], false)?;
        let mut options = BTreeMap::new();
        if let Some(opts) = l.obj("options")? {
            for (k, v) in opts.map {
                let v = match v {
                    Value::String(x) => x.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Null => String::new(),
                    _ => return Err(type_error(&join(&opts.path, k), "a string, number or null")),
                };
                options.insert(k.clone(), v);
            }
        }
        s.logging = Some(Logging {
            driver: l.str("driver")?,
            options,
        });
    }
    if let Some(c) = o.obj("credential_spec")? {
        c.check(&["config", "file", "registry"], false)?;
        s.credential_spec = Some(CredentialSpec {
            config: c.str("config")?,
            file: c.str("file")?,
            registry: c.str("registry")?,
        });
    }
    for (key, kind) in [("secrets", "secret"), ("configs", "config")] {
        let Some(items) = o.list(key)? else { continue };
        let mut refs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}.{key}.{i}");
            let r = match item {
                Value::String(src) => FileRef {
                    source: src.clone(),
                    ..FileRef::default()
                },
                Value::Object(_) => {
                    let ro = Obj::new(item, &ipath)?;
                    ro.check(&["source", "target", "uid", "gid", "mode"], false)?;
                    FileRef {
                        source: ro.str("source")?.unwrap_or_default(),
                        target: ro.str("target")?,
                        uid: ro.str("uid")?,
                        gid: ro.str("gid")?,
                        mode: file_mode(&ro, "mode")?,
                    }
                }
                _ => {
                    return Err(type_error(
                        &ipath,
                        &format!("a string or a mapping (a {kind})"),
                    ))
                }
            };
            refs.push(r);
        }
        if key == "secrets" {
            s.secrets = refs;
        } else {
            s.configs = refs;
        }
    }
    // The keys docker drops with a note: only their shape is checked.
    if let Some(e) = o.list("expose")? {
        for (i, x) in e.iter().enumerate() {
            if !(x.is_string() || x.is_number()) {
                return Err(type_error(
                    &format!("{path}.expose.{i}"),
                    "a string or number",
                ));
            }
        }
    }
    match o.get("build") {
        None | Some(Value::String(_)) | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(type_error(
                &format!("{path}.build"),
                "a string or a mapping",
            ))
        }
    }
    match o.get("shm_size") {
        None | Some(Value::String(_)) | Some(Value::Number(_)) => {}
        Some(_) => {
            return Err(type_error(
                &format!("{path}.shm_size"),
                "a string or number",
            ))
        }
    }
    match o.get("pid") {
        None | Some(Value::String(_)) | Some(Value::Null) => {}
        Some(_) => return Err(type_error(&format!("{path}.pid"), "a string")),
    }
    Ok(s)
}

/// An `env_file`, as docker's `opts.ParseEnvFile` reads it: `KEY=VALUE` lines, and a
/// `KEY` alone takes its value from the environment (dropped when it has none).
fn read_env_file(path: &Path, env: &Env) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("open {}: {}", path.display(), super::super::os_message(&e))
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, _)) => {
                if k.is_empty() {
                    bail!(
                        "{}:{}: no variable name on line '{line}'",
                        path.display(),
                        i + 1
                    );
                }
                if k.contains(char::is_whitespace) {
                    bail!(
                        "{}:{}: variable '{k}' contains whitespaces",
                        path.display(),
                        i + 1
                    );
                }
                out.push(line.to_string());
            }
            None => {
                let k = line.trim_end();
                if let Some(v) = env.get(k) {
                    out.push(format!("{k}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// An absolute path as docker's `absPath` makes it: an absolute one as it is, a
/// relative one joined to `working_dir` and cleaned (Go's `filepath.Join`).
fn abs_path(working_dir: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let path = Path::new(p);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let mut out = PathBuf::new();
    for c in working_dir.join(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !out.has_root() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A port: a short syntax (`8080:80`, `80`, `8080:80/udp`, `8000-8001:80-81`, a number)
/// or the long one (`target`, `published`, `protocol`, `mode`).
fn parse_port(v: &Value, path: &str) -> anyhow::Result<Vec<Port>> {
    let short = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let o = Obj::new(v, path)?;
            o.check(&["mode", "target", "published", "protocol"], false)?;
            let port = |key: &str| -> anyhow::Result<u32> {
                match o.int(key)? {
                    None => Ok(0),
                    Some(n) if (0..=65535).contains(&n) => Ok(n as u32),
                    Some(n) => bail!("{}: invalid port {n}", o.at(key)),
                }
            };
            return Ok(vec![Port {
                mode: o.str("mode")?.unwrap_or_default(),
                target: port("target")?,
                published: port("published")?,
                protocol: o.str("protocol")?.unwrap_or_default(),
            }]);
        }
        _ => return Err(type_error(path, "a number, a string or a mapping")),
    };
    let pairs = super::super::opts::publish(&short)
        .map_err(|e| anyhow::anyhow!("{path}: invalid port {short:?}: {e:#}"))?;
    let mut out = Vec::new();
    for (exposed, binding) in pairs {
        let ip = binding
            .get("HostIp")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !ip.is_empty() {
            bail!("{path}: {short:?}: a host address is not supported: a service's published port listens on every address of the host (docker ignores the address with a warning)");
        }
        let (target, protocol) = exposed.split_once('/').unwrap_or((&exposed, "tcp"));
        let target: u32 = target
            .parse()
            .map_err(|_| anyhow::anyhow!("{path}: invalid port {short:?}"))?;
        let published = match binding.get("HostPort").and_then(Value::as_str) {
            None | Some("") => 0,
            Some(h) => h.parse::<u32>().map_err(|_| {
                anyhow::anyhow!("{path}: invalid published port {h:?} in {short:?}")
            })?,
        };
        out.push(Port {
            mode: "ingress".into(),
            target,
            published,
            protocol: protocol.to_ascii_lowercase(),
        });
    }
    Ok(out)
}

/// A service's volume: the short syntax (`name:/path[:ro]`, `./dir:/path`, `/path`) or
/// the long one.
fn parse_service_volume(v: &Value, path: &str) -> anyhow::Result<ServiceVolume> {
    match v {
        Value::String(spec) => parse_volume_spec(spec).map_err(|e| anyhow::anyhow!("{path}: {e}")),
        Value::Object(_) => {
            let o = Obj::new(v, path)?;
            o.check(
                &[
                    "type",
                    "source",
                    "target",
                    "read_only",
                    "consistency",
                    "bind",
                    "volume",
                    "tmpfs",
                ],
                false,
            )?;
            let Some(kind) = o.str("type")? else {
                bail!("{path} type is required");
            };
            let bind = match o.obj("bind")? {
                None => None,
                Some(b) => {
                    b.check(&["propagation"], false)?;
                    Some(BindOptions {
                        propagation: b.str("propagation")?.unwrap_or_default(),
                    })
                }
            };
            let volume = match o.obj("volume")? {
                None => None,
                Some(b) => {
                    b.check(&["nocopy"], false)?;
                    Some(VolumeOptions {
                        nocopy: b.flag("nocopy")?,
                    })
                }
            };
            let tmpfs = match o.obj("tmpfs")? {
                None => None,
                Some(b) => {
                    b.check(&["size"], false)?;
                    let size = match b.int("size")? {
                        Some(n) if n < 0 => {
                            bail!("{} must be greater than or equal to 0", b.at("size"))
                        }
                        n => n.unwrap_or(0),
                    };
                    Some(TmpfsOptions { size })
                }
            };
            Ok(ServiceVolume {
                kind,
                source: o.str("source")?.unwrap_or_default(),
                target: o.str("target")?.unwrap_or_default(),
                read_only: o.flag("read_only")?,
                consistency: o.str("consistency")?.unwrap_or_default(),
                bind,
                volume,
                tmpfs,
            })
        }
        _ => Err(type_error(path, "a string or a mapping")),
    }
}

/// docker's `ParseVolume` (the short syntax), for Linux paths.
pub fn parse_volume_spec(spec: &str) -> anyhow::Result<ServiceVolume> {
    let mut vol = ServiceVolume {
        kind: "volume".into(),
        ..ServiceVolume::default()
    };
    if spec.is_empty() {
        bail!("invalid empty volume spec");
    }
    if spec.chars().count() <= 2 {
        vol.target = spec.to_string();
        return Ok(vol);
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("invalid spec: {spec}: empty section between colons");
    }
    match parts.as_slice() {
        [target] => vol.target = (*target).to_string(),
        [source, target] => {
            vol.source = (*source).to_string();
            vol.target = (*target).to_string();
        }
        [source, target, options] => {
            vol.source = (*source).to_string();
            vol.target = (*target).to_string();
            for option in options.split(',') {
                match option {
                    "ro" => vol.read_only = true,
                    "rw" => vol.read_only = false,
                    "nocopy" => vol.volume = Some(VolumeOptions { nocopy: true }),
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                        vol.bind = Some(BindOptions {
                            propagation: option.to_string(),
                        })
                    }
                    // Unknown options are ignored, as docker ignores them.
                    _ => {}
                }
            }
        }
        _ => bail!("invalid spec: {spec}: too many colons"),
    }
    if !vol.source.is_empty() && matches!(vol.source.chars().next(), Some('.' | '/' | '~')) {
        vol.kind = "bind".into();
    }
    Ok(vol)
}

fn parse_deploy(d: &Obj<'_>) -> anyhow::Result<Deploy> {
    d.check(
        &[
            "mode",
            "endpoint_mode",
            "replicas",
            "labels",
            "rollback_config",
            "update_config",
            "resources",
            "restart_policy",
            "placement",
        ],
        false,
    )?;
    let rollout = |key: &str| -> anyhow::Result<Option<UpdateConfig>> {
        let Some(u) = d.obj(key)? else {
            return Ok(None);
        };
        u.check(
            &[
                "parallelism",
                "delay",
                "failure_action",
                "monitor",
                "max_failure_ratio",
                "order",
            ],
            false,
        )?;
        let order = u.str("order")?;
        if let Some(o) = &order {
            if !matches!(o.as_str(), "start-first" | "stop-first") {
                bail!(
                    "{} must be one of the following: \"start-first\", \"stop-first\"",
                    u.at("order")
                );
            }
        }
        Ok(Some(UpdateConfig {
            parallelism: u.uint("parallelism")?,
            delay: u.duration("delay")?,
            failure_action: u.str("failure_action")?,
            monitor: u.duration("monitor")?,
            max_failure_ratio: u.number("max_failure_ratio")?,
            order,
        }))
    };
    let mut deploy = Deploy {
        mode: d.str("mode")?,
        endpoint_mode: d.str("endpoint_mode")?,
        replicas: d.uint("replicas")?,
        labels: d.mapping("labels")?,
        update_config: rollout("update_config")?,
        rollback_config: rollout("rollback_config")?,
        ..Deploy::default()
    };
    if let Some(r) = d.obj("resources")? {
        r.check(&["limits", "reservations"], false)?;
        if let Some(l) = r.obj("limits")? {
            l.check(&["cpus", "memory", "pids"], false)?;
            deploy.resources.limits = Some(Limits {
                cpus: l.str("cpus")?,
                memory: size(&l, "memory")?,
                pids: l.int("pids")?,
            });
        }
        if let Some(l) = r.obj("reservations")? {
            l.check(&["cpus", "memory", "generic_resources"], false)?;
            let mut generic = Vec::new();
            if let Some(items) = l.list("generic_resources")? {
                for (i, g) in items.iter().enumerate() {
                    let go = Obj::new(g, &format!("{}.{i}", l.at("generic_resources")))?;
                    go.check(&["discrete_resource_spec"], false)?;
                    if let Some(spec) = go.obj("discrete_resource_spec")? {
                        spec.check(&["kind", "value"], false)?;
                        generic.push((
                            spec.str("kind")?.unwrap_or_default(),
                            spec.int("value")?.unwrap_or(0),
                        ));
                    }
                }
            }
            deploy.resources.reservations = Some(Reservations {
                cpus: l.str("cpus")?,
                memory: size(&l, "memory")?,
                generic_resources: generic,
            });
        }
    }
    if let Some(r) = d.obj("restart_policy")? {
        r.check(&["condition", "delay", "max_attempts", "window"], false)?;
        deploy.restart_policy = Some(RestartPolicy {
            condition: r.str("condition")?,
            delay: r.duration("delay")?,
            max_attempts: r.uint("max_attempts")?,
            window: r.duration("window")?,
        });
    }
    if let Some(p) = d.obj("placement")? {
        p.check(
            &["constraints", "preferences", "max_replicas_per_node"],
            false,
        )?;
        let mut preferences = Vec::new();
        if let Some(items) = p.list("preferences")? {
            for (i, x) in items.iter().enumerate() {
                let po = Obj::new(x, &format!("{}.{i}", p.at("preferences")))?;
                po.check(&["spread"], false)?;
                preferences.push(po.str("spread")?.unwrap_or_default());
            }
        }
        deploy.placement = Placement {
            constraints: p.strings("constraints")?,
            preferences,
            max_replicas_per_node: p.uint("max_replicas_per_node")?,
        };
    }
    Ok(deploy)
}

/// `external: true`, or the deprecated `external: {name: N}`: (external, its name).
fn external(o: &Obj<'_>) -> anyhow::Result<(bool, Option<String>)> {
    match o.get("external") {
        None => Ok((false, None)),
        Some(v @ Value::Object(_)) => {
            let e = Obj::new(v, &o.at("external"))?;
            e.check(&["name"], false)?;
            Ok((true, e.str("name")?))
        }
        Some(_) => Ok((o.flag("external")?, None)),
    }
}

fn parse_network(name: &str, def: &Value) -> anyhow::Result<NetworkConfig> {
    let path = format!("networks.{name}");
    let Some(o) = Obj::new_or_null(def, &path)? else {
        return Ok(NetworkConfig::default());
    };
    o.check(
        &[
            "name",
            "driver",
            "driver_opts",
            "ipam",
            "external",
            "internal",
            "attachable",
            "labels",
        ],
        true,
    )?;
    let mut n = NetworkConfig {
        name: o.str("name")?,
        driver: o.str("driver")?,
        driver_opts: o.options("driver_opts")?,
        internal: o.flag("internal")?,
        attachable: o.flag("attachable")?,
        labels: o.mapping("labels")?,
        ..NetworkConfig::default()
    };
    if let Some(ipam) = o.obj("ipam")? {
        ipam.check(&["driver", "config"], false)?;
        n.ipam_driver = ipam.str("driver")?;
        if let Some(items) = ipam.list("config")? {
            for (i, c) in items.iter().enumerate() {
                let co = Obj::new(c, &format!("{}.{i}", ipam.at("config")))?;
                co.check(&["subnet"], false)?;
                if let Some(s) = co.str("subnet")? {
                    n.ipam_subnets.push(s);
                }
            }
        }
    }
    let (ext, ext_name) = external(&o)?;
    n.external = ext;
    if ext {
        match ext_name {
            Some(en) => {
                if n.name.is_some() {
                    bail!("network {name}: network.external.name and network.name conflict; only use network.name");
                }
                n.name = Some(en);
            }
            None => {
                if n.name.is_none() {
                    n.name = Some(name.to_string());
                }
            }
        }
    }
    Ok(n)
}

fn parse_volume(name: &str, def: &Value) -> anyhow::Result<VolumeConfig> {
    let path = format!("volumes.{name}");
    let Some(o) = Obj::new_or_null(def, &path)? else {
        return Ok(VolumeConfig::default());
    };
    o.check(
        &[
            "name",
            "driver",
            "driver_opts",
            "external",
            "labels",
            "x-cluster-spec",
        ],
        true,
    )?;
    let mut v = VolumeConfig {
        name: o.str("name")?,
        driver: o.str("driver")?,
        driver_opts: o.options("driver_opts")?,
        labels: o.mapping("labels")?,
        ..VolumeConfig::default()
    };
    let (ext, ext_name) = external(&o)?;
    v.external = ext;
    if ext {
        let conflict = |key: &str| {
            anyhow::anyhow!(
                "conflicting parameters \"external\" and {key:?} specified for volume {name:?}"
            )
        };
        if v.driver.is_some() {
            return Err(conflict("driver"));
        }
        if !v.driver_opts.is_empty() {
            return Err(conflict("driver_opts"));
        }
        if !v.labels.is_empty() {
            return Err(conflict("labels"));
        }
        match ext_name {
            Some(en) => {
                if v.name.is_some() {
                    bail!("volume {name}: volume.external.name and volume.name conflict; only use volume.name");
                }
                v.name = Some(en);
            }
            None => {
                if v.name.is_none() {
                    v.name = Some(name.to_string());
                }
            }
        }
    }
    Ok(v)
}

fn parse_file_object(
    section: &str,
    kind: &str,
    name: &str,
    def: &Value,
    working_dir: &Path,
) -> anyhow::Result<FileObject> {
    let path = format!("{section}.{name}");
    let o = Obj::new(def, &path)?;
    let mut known = vec!["name", "file", "external", "labels", "template_driver"];
    if section == "secrets" {
        known.extend(["driver", "driver_opts"]);
    }
    o.check(&known, true)?;
    let mut f = FileObject {
        name: o.str("name")?,
        labels: o.mapping("labels")?,
        template_driver: o.str("template_driver")?,
        driver: o.str("driver")?,
        driver_opts: o.options("driver_opts")?,
        ..FileObject::default()
    };
    let file = o.str("file")?;
    let (ext, ext_name) = external(&o)?;
    f.external = ext;
    if ext {
        match ext_name {
            Some(en) => {
                if f.name.is_some() {
                    bail!("{kind} {name}: {kind}.external.name and {kind}.name conflict; only use {kind}.name");
                }
                f.name = Some(en);
            }
            None => {
                if f.name.is_none() {
                    f.name = Some(name.to_string());
                }
            }
        }
    } else if f.driver.is_some() {
        if file.is_some() {
            bail!("{kind} {name}: {kind}.driver and {kind}.file conflict; only use {kind}.driver");
        }
    } else {
        f.file = Some(abs_path(working_dir, &file.unwrap_or_default()));
    }
    Ok(f)
}

// ---------------------------------------------------------------------- merging

fn merge(mut base: Config, over: Config) -> Config {
    let mut services: BTreeMap<String, Service> = base
        .services
        .drain(..)
        .map(|s| (s.name.clone(), s))
        .collect();
    for s in over.services {
        match services.remove(&s.name) {
            Some(b) => {
                let name = s.name.clone();
                services.insert(name, merge_service(b, s));
            }
            None => {
                services.insert(s.name.clone(), s);
            }
        }
    }
    base.services = services.into_values().collect();
    base.networks.extend(over.networks);
    base.volumes.extend(over.volumes);
    base.secrets.extend(over.secrets);
    base.configs.extend(over.configs);
    base
}

fn over_opt<T>(dst: &mut Option<T>, src: Option<T>) {
    if src.is_some() {
        *dst = src;
    }
}

fn merge_service(mut b: Service, o: Service) -> Service {
    over_opt(&mut b.image, o.image);
    if o.command.as_ref().is_some_and(|c| !c.is_empty()) {
        b.command = o.command;
    }
    if o.entrypoint.as_ref().is_some_and(|c| !c.is_empty()) {
        b.entrypoint = o.entrypoint;
    }
    for (k, v) in o.environment {
        if v.is_some() || !b.environment.contains_key(&k) {
            b.environment.insert(k, v);
        }
    }
    b.labels.extend(o.labels);
    // Ports: the union, by the whole port.
    for p in o.ports {
        if !b.ports.contains(&p) {
            b.ports.push(p);
        }
    }
    b.ports.sort_by_key(|p| p.published);
    // Volumes by target.
    for v in o.volumes {
        b.volumes.retain(|x| x.target != v.target);
        b.volumes.push(v);
    }
    b.volumes.sort_by(|x, y| x.target.cmp(&y.target));
    for (k, v) in o.networks {
        match (b.networks.get_mut(&k), v) {
            (Some(Some(dst)), Some(src)) => {
                dst.aliases = src.aliases;
                dst.driver_opts.extend(src.driver_opts);
            }
            (Some(dst @ None), Some(src)) => *dst = Some(src),
            (Some(_), None) => {}
            (None, v) => {
                b.networks.insert(k, v);
            }
        }
    }
    if let Some(h) = o.healthcheck {
        match &mut b.healthcheck {
            None => b.healthcheck = Some(h),
            Some(dst) => {
                over_opt(&mut dst.test, h.test);
                over_opt(&mut dst.interval, h.interval);
                over_opt(&mut dst.timeout, h.timeout);
                over_opt(&mut dst.start_period, h.start_period);
                over_opt(&mut dst.start_interval, h.start_interval);
                over_opt(&mut dst.retries, h.retries);
                dst.disable |= h.disable;
            }
        }
    }
    merge_deploy(&mut b.deploy, o.deploy);
    over_opt(&mut b.hostname, o.hostname);
    over_opt(&mut b.user, o.user);
    over_opt(&mut b.working_dir, o.working_dir);
    over_opt(&mut b.stop_signal, o.stop_signal);
    over_opt(&mut b.isolation, o.isolation);
    over_opt(&mut b.stop_grace_period, o.stop_grace_period);
    b.tty |= o.tty;
    b.stdin_open |= o.stdin_open;
    b.read_only |= o.read_only;
    over_opt(&mut b.init, o.init);
    b.cap_add.extend(o.cap_add);
    b.cap_drop.extend(o.cap_drop);
    b.group_add.extend(o.group_add);
    b.sysctls.extend(o.sysctls);
    b.ulimits.extend(o.ulimits);
    b.extra_hosts.extend(o.extra_hosts);
    b.dns.extend(o.dns);
    b.dns_search.extend(o.dns_search);
    b.tmpfs.extend(o.tmpfs);
    if let Some(l) = o.logging {
        match &mut b.logging {
            Some(dst) if dst.driver.is_none() || l.driver.is_none() || dst.driver == l.driver => {
                if dst.driver.is_none() {
                    dst.driver = l.driver;
                }
                dst.options.extend(l.options);
            }
            _ => b.logging = Some(l),
        }
    }
    for (dst, src) in [(&mut b.secrets, o.secrets), (&mut b.configs, o.configs)] {
        for r in src {
            dst.retain(|x| x.source != r.source);
            dst.push(r);
        }
        dst.sort_by(|x, y| x.source.cmp(&y.source));
    }
    over_opt(&mut b.oom_score_adj, o.oom_score_adj);
    over_opt(&mut b.restart, o.restart);
    over_opt(&mut b.credential_spec, o.credential_spec);
    b
}

fn merge_rollout(dst: &mut Option<UpdateConfig>, src: Option<UpdateConfig>) {
    let Some(s) = src else { return };
    match dst {
        None => *dst = Some(s),
        Some(d) => {
            over_opt(&mut d.parallelism, s.parallelism);
            over_opt(&mut d.delay, s.delay);
            over_opt(&mut d.failure_action, s.failure_action);
            over_opt(&mut d.monitor, s.monitor);
            over_opt(&mut d.max_failure_ratio, s.max_failure_ratio);
            over_opt(&mut d.order, s.order);
        }
    }
}

fn merge_deploy(b: &mut Deploy, o: Deploy) {
    over_opt(&mut b.mode, o.mode);
    over_opt(&mut b.replicas, o.replicas);
    b.labels.extend(o.labels);
    merge_rollout(&mut b.update_config, o.update_config);
    merge_rollout(&mut b.rollback_config, o.rollback_config);
    if let Some(l) = o.resources.limits {
        match &mut b.resources.limits {
            None => b.resources.limits = Some(l),
            Some(d) => {
                over_opt(&mut d.cpus, l.cpus);
                over_opt(&mut d.memory, l.memory);
                over_opt(&mut d.pids, l.pids);
            }
        }
    }
    if let Some(r) = o.resources.reservations {
        match &mut b.resources.reservations {
            None => b.resources.reservations = Some(r),
            Some(d) => {
                over_opt(&mut d.cpus, r.cpus);
                over_opt(&mut d.memory, r.memory);
                d.generic_resources.extend(r.generic_resources);
            }
        }
    }
    if let Some(r) = o.restart_policy {
        match &mut b.restart_policy {
            None => b.restart_policy = Some(r),
            Some(d) => {
                over_opt(&mut d.condition, r.condition);
                over_opt(&mut d.delay, r.delay);
                over_opt(&mut d.max_attempts, r.max_attempts);
                over_opt(&mut d.window, r.window);
            }
        }
    }
    b.placement.constraints.extend(o.placement.constraints);
    b.placement.preferences.extend(o.placement.preferences);
    over_opt(
        &mut b.placement.max_replicas_per_node,
        o.placement.max_replicas_per_node,
    );
    over_opt(&mut b.endpoint_mode, o.endpoint_mode);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_str(yaml: &str, e: &Env) -> anyhow::Result<Loaded> {
        load(
            &[("stack.yml".into(), yaml.as_bytes().to_vec())],
            Path::new("/srv/app"),
            e,
        )
    }

    fn err(yaml: &str) -> String {
        format!("{:#}", load_str(yaml, &Env::new()).unwrap_err())
    }

    #[test]
    fn a_full_service_is_read() {
        let yaml = r#"
version: "3.8"
x-common: &common
  stop_grace_period: 1m30s
services:
  web:
    <<: *common
    image: fixture/app:1
    command: sleep "10 00"
    entrypoint: ["/bin/sh", "-c"]
    environment:
      A: "1"
      B: 2
      FROM_ENV:
    labels: ["c=d"]
    ports: ["8080:80", "53/udp", 9000, {target: 90, published: 9090, protocol: udp, mode: host}]
    volumes:
      - data:/data:ro
      - ./conf:/etc/conf
      - /abs:/abs:rw
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 1000}
    networks:
      front:
        aliases: [www]
      back:
    healthcheck:
      test: wget -q localhost
      interval: 10s
      retries: 3
    deploy:
      mode: replicated
      replicas: 2
      labels: {tier: front}
      resources:
        limits: {cpus: "0.5", memory: 512M, pids: 100}
        reservations: {memory: 64m}
      restart_policy: {condition: on-failure, delay: 200ms, max_attempts: 3, window: 1m}
      update_config: {parallelism: 2, order: start-first, monitor: 1s, failure_action: rollback, max_failure_ratio: 0.5}
      endpoint_mode: dnsrr
    tty: yes
    init: true
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    extra_hosts: ["db:10.0.0.2"]
    dns: 9.9.9.9
    tmpfs: /run
    secrets: [token, {source: cert, target: server.pem, mode: 0440}]
networks:
  front:
  back:
    driver: overlay
    attachable: true
    ipam: {config: [{subnet: 10.9.0.0/24}]}
volumes:
  data:
    labels: {keep: "yes"}
secrets:
  token: {file: ./token.txt}
  cert: {external: true}
"#;
        let l = load_str(yaml, &env(&[("FROM_ENV", "x")])).unwrap();
        assert!(l.unsupported.is_empty() && l.deprecated.is_empty());
        let c = l.config;
        let s = &c.services[0];
        assert_eq!(s.name, "web");
        assert_eq!(s.stop_grace_period, Some(90_000_000_000));
        assert_eq!(
            s.command.as_deref(),
            Some(&["sleep".to_string(), "10 00".into()][..])
        );
        assert_eq!(
            s.environment,
            BTreeMap::from([
                ("A".into(), Some("1".into())),
                ("B".into(), Some("2".into())),
                ("FROM_ENV".into(), Some("x".into())),
            ])
        );
        assert_eq!(s.labels, BTreeMap::from([("c".into(), "d".into())]));
        let ports: Vec<(u32, u32, &str, &str)> = s
            .ports
            .iter()
            .map(|p| (p.published, p.target, p.protocol.as_str(), p.mode.as_str()))
            .collect();
        assert_eq!(
            ports,
            [
                (8080, 80, "tcp", "ingress"),
                (0, 53, "udp", "ingress"),
                (0, 9000, "tcp", "ingress"),
                (9090, 90, "udp", "host"),
            ]
        );
        assert_eq!(s.volumes[0].kind, "volume");
        assert_eq!(s.volumes[0].source, "data");
        assert!(s.volumes[0].read_only);
        assert_eq!(s.volumes[1].kind, "bind");
        assert_eq!(s.volumes[1].source, "/srv/app/conf");
        assert_eq!(s.volumes[2].source, "/abs");
        assert!(!s.volumes[2].read_only);
        assert_eq!(s.volumes[3].tmpfs, Some(TmpfsOptions { size: 1000 }));
        assert_eq!(s.networks["front"].as_ref().unwrap().aliases, ["www"]);
        assert_eq!(s.networks["back"], None);
        let h = s.healthcheck.as_ref().unwrap();
        assert_eq!(
            h.test.as_deref(),
            Some(&["CMD-SHELL".to_string(), "wget -q localhost".into()][..])
        );
        assert_eq!(h.interval, Some(10_000_000_000));
        assert_eq!(h.retries, Some(3));
        assert_eq!(s.deploy.replicas, Some(2));
        assert_eq!(
            s.deploy.resources.limits.as_ref().unwrap().memory,
            Some(512 << 20)
        );
        assert_eq!(
            s.deploy.resources.reservations.as_ref().unwrap().memory,
            Some(64 << 20)
        );
        let u = s.deploy.update_config.as_ref().unwrap();
        assert_eq!(u.monitor, Some(1_000_000_000));
        assert_eq!(u.max_failure_ratio, Some(0.5));
        assert_eq!(
            s.deploy.restart_policy.as_ref().unwrap().window,
            Some(60_000_000_000)
        );
        assert!(s.tty);
        assert_eq!(
            s.ulimits["nproc"],
            Ulimit {
                soft: 512,
                hard: 512
            }
        );
        assert_eq!(
            s.ulimits["nofile"],
            Ulimit {
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(s.dns, ["9.9.9.9"]);
        assert_eq!(s.tmpfs, ["/run"]);
        assert_eq!(s.secrets[1].mode, Some(0o440));
        assert_eq!(s.secrets[1].target.as_deref(), Some("server.pem"));
        assert!(c.networks["back"].attachable);
        assert_eq!(c.networks["back"].ipam_subnets, ["10.9.0.0/24"]);
        assert_eq!(c.volumes["data"].labels["keep"], "yes");
        assert_eq!(
            c.secrets["token"].file.as_deref(),
            Some(Path::new("/srv/app/token.txt"))
        );
        assert!(c.secrets["cert"].external);
        assert_eq!(c.secrets["cert"].name.as_deref(), Some("cert"));
    }

    #[test]
    fn variables_are_interpolated_from_the_environment() {
        let e = env(&[("TAG", "2"), ("EMPTY", ""), ("N", "3")]);
        let l = load_str(
            r#"
services:
  web:
    image: "app:${TAG}"
    environment:
      - "A=${MISSING:-fallback}"
      - "B=${EMPTY-unused}"
      - "C=$$HOME and $TAG"
      - "D=${EMPTY:-soft}"
    deploy:
      replicas: ${N}
"#,
            &e,
        )
        .unwrap();
        let s = &l.config.services[0];
        assert_eq!(s.image.as_deref(), Some("app:2"));
        assert_eq!(s.environment["A"].as_deref(), Some("fallback"));
        assert_eq!(s.environment["B"].as_deref(), Some(""));
        assert_eq!(s.environment["C"].as_deref(), Some("$HOME and 2"));
        assert_eq!(s.environment["D"].as_deref(), Some("soft"));
        assert_eq!(s.deploy.replicas, Some(3));

        assert_eq!(
            substitute("${X:?must be set}", &Env::new()).unwrap_err(),
            "required variable X is missing a value: must be set"
        );
        assert_eq!(substitute("a ${NOPE} b", &Env::new()).unwrap(), "a  b");
        assert!(substitute("${}", &Env::new()).is_err());
        assert!(substitute("$", &Env::new()).is_err());
        let m = format!(
            "{:#}",
            load_str(
                "services:\n  web:\n    image: \"${X:?set X}\"\n",
                &Env::new()
            )
            .unwrap_err()
        );
        assert!(
            m.contains("invalid interpolation format for services.web.image"),
            "{m}"
        );
        assert!(
            m.contains("required variable X is missing a value: set X"),
            "{m}"
        );
        let m = format!(
            "{:#}",
            load_str(
                "services:\n  web:\n    image: x\n    deploy:\n      replicas: ${N}\n",
                &env(&[("N", "two")])
            )
            .unwrap_err()
        );
        assert!(m.contains("error while interpolating services.web.deploy.replicas: failed to cast to expected type"), "{m}");
    }

    #[test]
    fn a_dot_env_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "TAG=fromfile\n").unwrap();
        let l = load(
            &[(
                "s.yml".into(),
                b"services:\n  web:\n    image: app:${TAG:-none}\n".to_vec(),
            )],
            dir.path(),
            &Env::new(),
        )
        .unwrap();
        assert_eq!(l.config.services[0].image.as_deref(), Some("app:none"));
    }

    #[test]
    fn env_files_and_environment_combine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.env"), "# c\nA=1\nB=2\nFROM_ENV\nUNSET\n").unwrap();
        let l = load(
            &[(
                "s.yml".into(),
                b"services:\n  web:\n    image: x\n    env_file: a.env\n    environment: {B: \"3\", C: null}\n".to_vec(),
            )],
            dir.path(),
            &env(&[("FROM_ENV", "e")]),
        )
        .unwrap();
        let e = &l.config.services[0].environment;
        assert_eq!(e["A"].as_deref(), Some("1"));
        assert_eq!(e["B"].as_deref(), Some("3"));
        assert_eq!(e["FROM_ENV"].as_deref(), Some("e"));
        assert_eq!(e["C"], None);
        assert!(!e.contains_key("UNSET"));
        let m = format!(
            "{:#}",
            load(
                &[(
                    "s.yml".into(),
                    b"services:\n  web:\n    image: x\n    env_file: nope.env\n".to_vec()
                )],
                dir.path(),
                &Env::new(),
            )
            .unwrap_err()
        );
        assert!(m.contains("nope.env: no such file or directory"), "{m}");
    }

    #[test]
    fn refusals_name_the_service_and_the_key() {
        assert_eq!(
            err("services:\n  web:\n    image: x\n    imagee: y\n"),
            "services.web Additional property imagee is not allowed"
        );
        assert_eq!(
            err("services:\n  web:\n    image: x\n    deploy:\n      replicas: two\n"),
            "services.web.deploy.replicas must be an integer"
        );
        assert_eq!(
            err("services:\n  web:\n    image: x\n    deploy:\n      resources:\n        limits:\n          cpu: 1\n"),
            "services.web.deploy.resources.limits Additional property cpu is not allowed"
        );
        assert_eq!(
            err("services:\n  web:\n    image: [x]\n"),
            "services.web.image must be a string"
        );
        assert_eq!(
            err("services:\n  web:\n    image: x\n    tty: maybe\n"),
            "services.web.tty must be a boolean"
        );
        assert_eq!(
            err("services:\n  web: x\n"),
            "services.web must be a mapping"
        );
        assert_eq!(
            err("service:\n  web: {}\n"),
            "(root) Additional property service is not allowed"
        );
        assert!(
            err("services:\n  web:\n    image: x\n    stop_grace_period: 10\n")
                .contains("must be a string")
        );
        assert!(
            err("services:\n  web:\n    image: x\n    stop_grace_period: 10x\n")
                .starts_with("services.web.stop_grace_period Does not match format 'duration'")
        );
        assert!(err(
            "services:\n  web:\n    image: x\n    volumes:\n      - {source: a, target: /a}\n"
        )
        .contains("services.web.volumes.0 type is required"));
        assert!(
            err("services:\n  web:\n    image: x\n    ports: [\"127.0.0.1:80:80\"]\n")
                .contains("a host address is not supported")
        );
        let m = err("services:\n  web:\n    image: x\n    extends: base\n");
        assert_eq!(m, "Compose file contains unsupported options:\n\nextends: Support for `extends` is not implemented yet.\n");
        assert_eq!(
            err("version: \"2\"\nservices: {}\n"),
            "unsupported Compose file version: 2"
        );
        assert_eq!(
            err("version: 3.8\nservices: {}\n"),
            "version must be a string"
        );
        assert_eq!(err("- a\n- b\n"), "Top-level object must be a mapping");
        assert_eq!(err(""), "Top-level object must be a mapping");
        let m = err("services:\n  web:\n    image: x\n   bad: indent\n");
        assert!(m.starts_with("yaml: line "), "{m}");
        assert_eq!(
            err("services:\n  web:\n    80: x\n"),
            "non-string key in services.web: 80"
        );
        assert!(
            err("volumes:\n  v:\n    external: true\n    driver: local\n").contains(
                "conflicting parameters \"external\" and \"driver\" specified for volume \"v\""
            )
        );
    }

    #[test]
    fn ignored_keys_are_reported_as_docker_reports_them() {
        let l = load_str(
            "services:\n  web:\n    image: x\n    build: .\n    links: [db]\n    depends_on: [db]\n    container_name: w\n    restart: always\n  db:\n    image: y\n    network_mode: host\n    expose: [\"80\"]\n",
            &Env::new(),
        )
        .unwrap();
        assert_eq!(
            l.unsupported,
            ["build", "depends_on", "links", "network_mode", "restart"]
        );
        assert_eq!(
            l.warnings(),
            "Ignoring unsupported options: build, depends_on, links, network_mode, restart\n\n\
             Ignoring deprecated options:\n\n\
             container_name: Setting the container name is not supported.\n\n\
             expose: Exposing ports is unnecessary - services on the same network can access each other's containers on any port.\n\n"
        );
        assert_eq!(l.config.services[1].restart.as_deref(), Some("always"));
    }

    #[test]
    fn short_volume_syntax() {
        let v = parse_volume_spec("/data").unwrap();
        assert_eq!(
            (v.kind.as_str(), v.source.as_str(), v.target.as_str()),
            ("volume", "", "/data")
        );
        let v = parse_volume_spec("~/x:/y:ro,rshared").unwrap();
        assert_eq!(v.kind, "bind");
        assert!(v.read_only);
        assert_eq!(v.bind.unwrap().propagation, "rshared");
        let v = parse_volume_spec("vol:/y:nocopy").unwrap();
        assert_eq!(v.volume, Some(VolumeOptions { nocopy: true }));
        assert!(parse_volume_spec("a::b").is_err());
        assert!(parse_volume_spec("a:b:c:d").is_err());
    }

    #[test]
    fn files_merge_as_docker_merges_them() {
        let base = b"services:\n  web:\n    image: app:1\n    command: [a]\n    environment: {A: \"1\", B: \"1\"}\n    ports: [\"8080:80\"]\n    volumes: [\"d:/d\"]\n    deploy: {replicas: 1, labels: {x: \"1\"}}\n  db:\n    image: db:1\nvolumes:\n  d: {}\n".to_vec();
        let over = b"services:\n  web:\n    image: app:2\n    environment: {B: \"2\"}\n    ports: [\"8081:81\"]\n    volumes: [\"e:/d\"]\n    deploy: {replicas: 3}\nvolumes:\n  e: {}\n".to_vec();
        let l = load(
            &[("a.yml".into(), base), ("b.yml".into(), over)],
            Path::new("/w"),
            &Env::new(),
        )
        .unwrap();
        let c = l.config;
        assert_eq!(c.services.len(), 2);
        let web = &c.services[1];
        assert_eq!(web.image.as_deref(), Some("app:2"));
        assert_eq!(web.command.as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(web.environment["A"].as_deref(), Some("1"));
        assert_eq!(web.environment["B"].as_deref(), Some("2"));
        assert_eq!(web.ports.len(), 2);
        assert_eq!(web.volumes.len(), 1);
        assert_eq!(web.volumes[0].source, "e");
        assert_eq!(web.deploy.replicas, Some(3));
        assert_eq!(web.deploy.labels["x"], "1");
        assert_eq!(c.volumes.len(), 2);
        let m = format!(
            "{:#}",
            load(
                &[
                    ("a.yml".into(), b"version: \"3.8\"\nservices: {}\n".to_vec()),
                    ("b.yml".into(), b"version: \"3.9\"\nservices: {}\n".to_vec()),
                ],
                Path::new("/w"),
                &Env::new(),
            )
            .unwrap_err()
        );
        assert_eq!(
            m,
            "version mismatched between two composefiles : 3.8 and 3.9"
        );
    }
}
