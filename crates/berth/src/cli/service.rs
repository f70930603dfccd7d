//! `swarm init|leave` and `service create|ls|ps|inspect|scale|update|rollback|rm`,
//! spelled and printed as the docker CLI spells and prints them. The daemon runs the
//! services (`/services`, `/tasks`); these verbs build Docker's `ServiceSpec`, edit it
//! read-modify-write with its version, and follow the tasks until they converge.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::list::familiar;
use super::opts;
use super::volume::{inspect_objects, natural_less};
use crate::client::{path_escape, read_all, ApiError, Client, Query};
use crate::format::{self, units, Fields, ListFormat};

// ------------------------------------------------------------------------- swarm

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SwarmVerb {
    /// Initialize a swarm
    Init(SwarmInitArgs),
    /// Leave the swarm
    Leave(SwarmLeaveArgs),
}

#[derive(Debug, Args)]
pub struct SwarmInitArgs {
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long, value_name = "string")]
    pub advertise_addr: Option<String>,
    /// Listen address (format: "<ip|interface>[:port]")
    #[arg(long, value_name = "node-addr", default_value = "0.0.0.0:2377")]
    pub listen_addr: String,
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long, value_parser = ["active", "pause", "drain"])]
    pub availability: Option<String>,
}

#[derive(Debug, Args)]
pub struct SwarmLeaveArgs {
    /// Force this node to leave the swarm, ignoring warnings
    #[arg(short, long)]
    pub force: bool,
}

pub async fn swarm(client: &Client, verb: SwarmVerb) -> anyhow::Result<()> {
    match verb {
        SwarmVerb::Init(a) => {
            let mut body = json!({
                "ListenAddr": a.listen_addr,
                "AdvertiseAddr": a.advertise_addr.unwrap_or_default(),
                "ForceNewCluster": false,
            });
            if let Some(av) = a.availability {
                body["Availability"] = json!(av);
            }
            let resp = client.post_body("/swarm/init", &body).await?;
            let node_id: String = serde_json::from_slice(&read_all(resp).await?)
                .map_err(|e| anyhow::anyhow!("the daemon's answer to swarm init: {e}"))?;
            super::out(&format!(
                "Swarm initialized: current node ({node_id}) is now a manager.\n"
            ))
        }
        SwarmVerb::Leave(a) => {
            let q = Query::new("/swarm/leave").flag("force", a.force);
            client
                .post(&q.build(), crate::client::empty(), None)
                .await?;
            super::out("Node left the swarm.\n")
        }
    }
}

// ----------------------------------------------------------------------- service

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ServiceVerb {
    /// Create a new service
    Create(CreateArgs),
    /// Display detailed information on one or more services
    Inspect(InspectArgs),
    /// List services
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// List the tasks of one or more services
    Ps(PsArgs),
    /// Remove one or more services
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Revert changes to a service's configuration
    Rollback(RollbackArgs),
    /// Scale one or multiple replicated services
    Scale(ScaleArgs),
    /// Update a service
    Update(UpdateArgs),
}

/// How `create`, `update`, `rollback` end: at once, or once the service converged.
#[derive(Debug, Args)]
pub struct WaitFlags {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
}

/// The flags `service create` and `service update` share, with the same names.
#[derive(Debug, Args, Default)]
pub struct SpecFlags {
    /// Number of tasks
    #[arg(long, value_name = "uint")]
    pub replicas: Option<u64>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "string")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long, value_name = "string")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image (split as a shell splits words)
    #[arg(long, value_name = "command")]
    pub entrypoint: Option<String>,
    /// Container hostname
    #[arg(long, value_name = "string")]
    pub hostname: Option<String>,
    /// Signal to stop the container
    #[arg(long, value_name = "string")]
    pub stop_signal: Option<String>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub stop_grace_period: Option<String>,
    /// Restart when condition is met ("none", "on-failure", "any")
    #[arg(long, value_name = "string", value_parser = ["none", "on-failure", "any"])]
    pub restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub restart_delay: Option<String>,
    /// Maximum number of restarts before giving up
    #[arg(long, value_name = "uint")]
    pub restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub restart_window: Option<String>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once)
    #[arg(long, value_name = "uint")]
    pub update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub update_delay: Option<String>,
    /// Action on update failure ("pause", "continue", "rollback")
    #[arg(long, value_name = "string", value_parser = ["pause", "continue", "rollback"])]
    pub update_failure_action: Option<String>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub update_monitor: Option<String>,
    /// Failure rate to tolerate during an update
    #[arg(long, value_name = "float")]
    pub update_max_failure_ratio: Option<f64>,
    /// Update order ("start-first", "stop-first")
    #[arg(long, value_name = "string", value_parser = ["start-first", "stop-first"])]
    pub update_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once)
    #[arg(long, value_name = "uint")]
    pub rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub rollback_delay: Option<String>,
    /// Action on rollback failure ("pause", "continue")
    #[arg(long, value_name = "string", value_parser = ["pause", "continue"])]
    pub rollback_failure_action: Option<String>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub rollback_monitor: Option<String>,
    /// Failure rate to tolerate during a rollback
    #[arg(long, value_name = "float")]
    pub rollback_max_failure_ratio: Option<f64>,
    /// Rollback order ("start-first", "stop-first")
    #[arg(long, value_name = "string", value_parser = ["start-first", "stop-first"])]
    pub rollback_order: Option<String>,
    /// Command to run to check health
    #[arg(long, value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "int")]
    pub health_retries: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before counting retries towards
    /// unstable (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Limit CPUs
    #[arg(long, value_name = "decimal")]
    pub limit_cpu: Option<String>,
    /// Limit Memory
    #[arg(long, value_name = "bytes")]
    pub limit_memory: Option<String>,
    /// Limit maximum number of processes (default 0 = unlimited)
    #[arg(long, value_name = "int")]
    pub limit_pids: Option<i64>,
    /// Reserve CPUs
    #[arg(long, value_name = "decimal")]
    pub reserve_cpu: Option<String>,
    /// Reserve Memory
    #[arg(long, value_name = "bytes")]
    pub reserve_memory: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Service name
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Service mode ("replicated", "global")
    #[arg(long, default_value = "replicated", value_parser = ["replicated", "global"])]
    pub mode: String,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Service labels
    #[arg(long = "label", value_name = "list")]
    pub labels: Vec<String>,
    /// Container labels
    #[arg(long = "container-label", value_name = "list")]
    pub container_labels: Vec<String>,
    /// Attach a filesystem mount to the service
    #[arg(long = "mount", value_name = "mount")]
    pub mounts: Vec<String>,
    /// Network attachments
    #[arg(long = "network", value_name = "network")]
    pub networks: Vec<String>,
    /// Publish a port as a node port
    #[arg(short = 'p', long = "publish", value_name = "port")]
    pub publish: Vec<String>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long, default_value = "vip", value_parser = ["vip", "dnsrr"])]
    pub endpoint_mode: String,
    /// Placement constraints
    #[arg(long = "constraint", value_name = "list")]
    pub constraints: Vec<String>,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    #[command(flatten)]
    pub spec: SpecFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
    /// The image, then the arguments of its command
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub image_and_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Service image tag
    #[arg(long, value_name = "string")]
    pub image: Option<String>,
    /// Service command args (split as a shell splits words)
    #[arg(long, value_name = "command", allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Add or update an environment variable
    #[arg(long = "env-add", value_name = "list")]
    pub env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long = "env-rm", value_name = "list")]
    pub env_rm: Vec<String>,
    /// Add or update a service label
    #[arg(long = "label-add", value_name = "list")]
    pub label_add: Vec<String>,
    /// Remove a label by its key
    #[arg(long = "label-rm", value_name = "list")]
    pub label_rm: Vec<String>,
    /// Add or update a container label
    #[arg(long = "container-label-add", value_name = "list")]
    pub container_label_add: Vec<String>,
    /// Remove a container label by its key
    #[arg(long = "container-label-rm", value_name = "list")]
    pub container_label_rm: Vec<String>,
    /// Add or update a mount on a service
    #[arg(long = "mount-add", value_name = "mount")]
    pub mount_add: Vec<String>,
    /// Remove a mount by its target path
    #[arg(long = "mount-rm", value_name = "list")]
    pub mount_rm: Vec<String>,
    /// Add a network
    #[arg(long = "network-add", value_name = "network")]
    pub network_add: Vec<String>,
    /// Remove a network
    #[arg(long = "network-rm", value_name = "list")]
    pub network_rm: Vec<String>,
    /// Add or update a published port
    #[arg(long = "publish-add", value_name = "port")]
    pub publish_add: Vec<String>,
    /// Remove a published port by its target port
    #[arg(long = "publish-rm", value_name = "port")]
    pub publish_rm: Vec<String>,
    /// Add or update a placement constraint
    #[arg(long = "constraint-add", value_name = "list")]
    pub constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long = "constraint-rm", value_name = "list")]
    pub constraint_rm: Vec<String>,
    /// Force update even if no changes require it
    #[arg(long)]
    pub force: bool,
    /// Rollback to previous specification
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub spec: SpecFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (id=, label=, mode=, name=)
    #[arg(short, long = "filter", value_name = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only display task IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (desired-state=, id=, label=, name=,
    /// node=)
    #[arg(short, long = "filter", value_name = "filter")]
    pub filters: Vec<String>,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not map IDs to Names
    #[arg(long)]
    pub no_resolve: bool,
    /// Pretty-print tasks using a Go template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go-template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pub pretty: bool,
    #[arg(required = true, value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub scales: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub wait: WaitFlags,
    /// Roll back to this kept revision instead of the previous one (berth's; `service
    /// inspect` lists them under Revisions)
    #[arg(long, value_name = "REVISION")]
    pub to: Option<u64>,
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(client: &Client, verb: ServiceVerb) -> anyhow::Result<()> {
    match verb {
        ServiceVerb::Create(a) => create(client, a).await,
        ServiceVerb::Inspect(a) => inspect(client, a).await,
        ServiceVerb::Ls(a) => ls(client, a).await,
        ServiceVerb::Ps(a) => ps(client, a).await,
        ServiceVerb::Rm(a) => rm(client, a).await,
        ServiceVerb::Rollback(a) => rollback(client, a).await,
        ServiceVerb::Scale(a) => scale(client, a).await,
        ServiceVerb::Update(a) => update(client, a).await,
    }
}

// ------------------------------------------------------------- building the spec

/// The object at `key` of `parent`, made (or replaced by) an empty one when it is not
/// an object.
fn obj<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = parent
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("an object was just put there")
}

/// The array at `key` of `parent`, made empty when it is not an array.
fn arr<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = parent
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("an array was just put there")
}

/// A duration flag in nanoseconds, refused as pflag refuses a bad value.
fn nanos(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    let n = opts::go_duration(s)
        .map_err(|e| anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}"))?;
    Ok(Some(n))
}

/// Like [`nanos`], for the flags docker takes as positive durations (health checks).
fn positive_nanos(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    let n = nanos(flag, v)?;
    if n.is_some_and(|n| n < 0) {
        bail!("invalid argument {v:?} for \"--{flag}\" flag: duration cannot be negative");
    }
    Ok(n)
}

/// docker's `NanoCPUs`: a decimal number of CPUs in billionths.
fn nano_cpus(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    let invalid = || {
        anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: failed to parse {s:?} as a rational number")
    };
    let f: f64 = s.trim().parse().map_err(|_| invalid())?;
    if !f.is_finite() || f < 0.0 {
        return Err(invalid());
    }
    Ok(Some((f * 1e9).round() as i64))
}

fn mem_bytes(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    opts::ram_in_bytes(s)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}"))
}

/// Splits a command line into words as the docker CLI does (`google/shlex`): blanks
/// separate words, single quotes keep everything, double quotes and a backslash escape
/// the next character, `#` at the start of a word comments out the rest of the line.
pub fn shell_words(s: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => {
                            bail!("invalid command {s:?}: EOF found when expecting closing quote")
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => {
                                bail!("invalid command {s:?}: EOF found after escape character")
                            }
                        },
                        Some(x) => cur.push(x),
                        None => {
                            bail!("invalid command {s:?}: EOF found when expecting closing quote")
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => bail!("invalid command {s:?}: EOF found after escape character"),
                }
            }
            '#' if !in_word => {
                for x in chars.by_ref() {
                    if x == '\n' {
                        break;
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The defaults of `UpdateConfig` and `RollbackConfig` as the docker CLI sends them
/// when one of their flags is given and the spec has none.
fn rollout_defaults() -> Value {
    json!({
        "Parallelism": 1,
        "FailureAction": "pause",
        "Monitor": 5_000_000_000i64,
        "MaxFailureRatio": 0,
        "Order": "stop-first",
    })
}

struct RolloutFlags<'a> {
    prefix: &'static str,
    parallelism: Option<u64>,
    delay: &'a Option<String>,
    failure_action: &'a Option<String>,
    monitor: &'a Option<String>,
    max_failure_ratio: Option<f64>,
    order: &'a Option<String>,
}

impl RolloutFlags<'_> {
    /// Sets the given fields of `UpdateConfig`/`RollbackConfig` (made from Docker's
    /// defaults when the spec has none).
    fn apply(&self, spec: &mut Map<String, Value>, key: &str) -> anyhow::Result<()> {
        let p = self.prefix;
        let delay = nanos(&format!("{p}-delay"), self.delay)?;
        let monitor = nanos(&format!("{p}-monitor"), self.monitor)?;
        if let Some(r) = self.max_failure_ratio {
            if !(0.0..=1.0).contains(&r) {
                bail!("invalid argument \"{r}\" for \"--{p}-max-failure-ratio\" flag: must be between 0 and 1");
            }
        }
        let any = self.parallelism.is_some()
            || delay.is_some()
            || self.failure_action.is_some()
            || monitor.is_some()
            || self.max_failure_ratio.is_some()
            || self.order.is_some();
        if !any {
            return Ok(());
        }
        if !spec.get(key).is_some_and(Value::is_object) {
            spec.insert(key.to_string(), rollout_defaults());
        }
        let c = obj(spec, key);
        if let Some(n) = self.parallelism {
            c.insert("Parallelism".into(), json!(n));
        }
        if let Some(n) = delay {
            c.insert("Delay".into(), json!(n));
        }
        if let Some(a) = self.failure_action {
            c.insert("FailureAction".into(), json!(a));
        }
        if let Some(n) = monitor {
            c.insert("Monitor".into(), json!(n));
        }
        if let Some(r) = self.max_failure_ratio {
            c.insert("MaxFailureRatio".into(), json!(r));
        }
        if let Some(o) = self.order {
            c.insert("Order".into(), json!(o));
        }
        Ok(())
    }
}

impl SpecFlags {
    /// Applies the flags that were given to `spec` (a `ServiceSpec`), as the docker CLI
    /// applies them on create and update: only what a flag names changes.
    fn apply(&self, spec: &mut Map<String, Value>) -> anyhow::Result<()> {
        if let Some(n) = self.replicas {
            let mode = obj(spec, "Mode");
            if mode.get("Global").is_some_and(|g| !g.is_null()) {
                bail!("replicas can only be used with replicated or replicated-job mode");
            }
            obj(mode, "Replicated").insert("Replicas".into(), json!(n));
        }
        RolloutFlags {
            prefix: "update",
            parallelism: self.update_parallelism,
            delay: &self.update_delay,
            failure_action: &self.update_failure_action,
            monitor: &self.update_monitor,
            max_failure_ratio: self.update_max_failure_ratio,
            order: &self.update_order,
        }
        .apply(spec, "UpdateConfig")?;
        RolloutFlags {
            prefix: "rollback",
            parallelism: self.rollback_parallelism,
            delay: &self.rollback_delay,
            failure_action: &self.rollback_failure_action,
            monitor: &self.rollback_monitor,
            max_failure_ratio: self.rollback_max_failure_ratio,
            order: &self.rollback_order,
        }
        .apply(spec, "RollbackConfig")?;

        let grace = nanos("stop-grace-period", &self.stop_grace_period)?;
        let restart_delay = nanos("restart-delay", &self.restart_delay)?;
        let restart_window = nanos("restart-window", &self.restart_window)?;
        let limit_cpu = nano_cpus("limit-cpu", &self.limit_cpu)?;
        let reserve_cpu = nano_cpus("reserve-cpu", &self.reserve_cpu)?;
        let limit_memory = mem_bytes("limit-memory", &self.limit_memory)?;
        let reserve_memory = mem_bytes("reserve-memory", &self.reserve_memory)?;
        let command = match &self.entrypoint {
            Some(e) => Some(shell_words(e)?),
            None => None,
        };

        let task = obj(spec, "TaskTemplate");
        {
            let cs = obj(task, "ContainerSpec");
            let strings = [
                ("Dir", &self.workdir),
                ("User", &self.user),
                ("Hostname", &self.hostname),
                ("StopSignal", &self.stop_signal),
            ];
            for (key, v) in strings {
                if let Some(v) = v {
                    cs.insert(key.into(), json!(v));
                }
            }
            if let Some(c) = command {
                cs.insert("Command".into(), json!(c));
            }
            if let Some(n) = grace {
                cs.insert("StopGracePeriod".into(), json!(n));
            }
            self.apply_healthcheck(cs)?;
        }
        if self.restart_condition.is_some()
            || restart_delay.is_some()
            || self.restart_max_attempts.is_some()
            || restart_window.is_some()
        {
            let rp = obj(task, "RestartPolicy");
            if let Some(c) = &self.restart_condition {
                rp.insert("Condition".into(), json!(c));
            }
            if let Some(n) = restart_delay {
                rp.insert("Delay".into(), json!(n));
            }
            if let Some(n) = self.restart_max_attempts {
                rp.insert("MaxAttempts".into(), json!(n));
            }
            if let Some(n) = restart_window {
                rp.insert("Window".into(), json!(n));
            }
        }
        if limit_cpu.is_some() || limit_memory.is_some() || self.limit_pids.is_some() {
            let limits = obj(obj(task, "Resources"), "Limits");
            if let Some(n) = limit_cpu {
                limits.insert("NanoCPUs".into(), json!(n));
            }
            if let Some(n) = limit_memory {
                limits.insert("MemoryBytes".into(), json!(n));
            }
            if let Some(n) = self.limit_pids {
                limits.insert("Pids".into(), json!(n));
            }
        }
        if reserve_cpu.is_some() || reserve_memory.is_some() {
            let res = obj(obj(task, "Resources"), "Reservations");
            if let Some(n) = reserve_cpu {
                res.insert("NanoCPUs".into(), json!(n));
            }
            if let Some(n) = reserve_memory {
                res.insert("MemoryBytes".into(), json!(n));
            }
        }
        Ok(())
    }

    /// docker's `updateHealthcheck` (create starts from no healthcheck).
    fn apply_healthcheck(&self, cs: &mut Map<String, Value>) -> anyhow::Result<()> {
        let interval = positive_nanos("health-interval", &self.health_interval)?;
        let timeout = positive_nanos("health-timeout", &self.health_timeout)?;
        let start_period = positive_nanos("health-start-period", &self.health_start_period)?;
        let start_interval = positive_nanos("health-start-interval", &self.health_start_interval)?;
        let settings = self.health_cmd.is_some()
            || interval.is_some()
            || timeout.is_some()
            || start_period.is_some()
            || start_interval.is_some()
            || self.health_retries.is_some();
        if self.no_healthcheck {
            if settings {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            cs.insert("Healthcheck".into(), json!({ "Test": ["NONE"] }));
            return Ok(());
        }
        if !settings {
            return Ok(());
        }
        let h = obj(cs, "Healthcheck");
        if h.get("Test")
            .and_then(Value::as_array)
            .and_then(|t| t.first())
            .and_then(Value::as_str)
            == Some("NONE")
        {
            h.remove("Test");
        }
        let durations = [
            ("Interval", interval),
            ("Timeout", timeout),
            ("StartPeriod", start_period),
            ("StartInterval", start_interval),
        ];
        for (key, v) in durations {
            if let Some(n) = v {
                h.insert(key.into(), json!(n));
            }
        }
        if let Some(r) = self.health_retries {
            h.insert("Retries".into(), json!(r));
        }
        match self.health_cmd.as_deref() {
            Some("") => {
                h.remove("Test");
            }
            Some(cmd) => {
                h.insert("Test".into(), json!(["CMD-SHELL", cmd]));
            }
            None => {}
        }
        Ok(())
    }
}

/// The key of an `Env` entry (`K=V` or `K`).
fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// A port's protocol, `tcp` when unset (Docker's default).
fn port_protocol(p: &Value) -> &str {
    match str_at(p, "/Protocol") {
        "" => "tcp",
        x => x,
    }
}

/// A port's publish mode, `ingress` when unset.
fn port_mode(p: &Value) -> &str {
    match str_at(p, "/PublishMode") {
        "" => "ingress",
        x => x,
    }
}

/// A `--publish` value as `PortConfig`s, as docker's `PortOpt` reads it: the long
/// syntax `published=8080,target=80,protocol=udp,mode=ingress`, or the short one
/// `[published:]target[/protocol]` (ranges `8000-8001:80-81`; `80` alone: a port the
/// daemon picks).
fn port_configs(s: &str, flag: &str) -> anyhow::Result<Vec<Value>> {
    let invalid = |e: String| anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}");
    let port = |target: u16, published: u16, protocol: &str, mode: &str| {
        let mut p = Map::new();
        p.insert("Protocol".into(), json!(protocol));
        p.insert("TargetPort".into(), json!(target));
        if published != 0 {
            p.insert("PublishedPort".into(), json!(published));
        }
        p.insert("PublishMode".into(), json!(mode));
        Value::Object(p)
    };
    if s.contains('=') {
        let (mut target, mut published) = (0u16, 0u16);
        let (mut protocol, mut mode) = ("tcp", "ingress");
        for field in s.split(',') {
            let Some((k, v)) = field.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(invalid(format!("invalid field: {field}")));
            };
            let number = |v: &str| {
                v.parse::<u16>()
                    .map_err(|e| invalid(format!("invalid {k} value {v:?}: {e}")))
            };
            match k.to_ascii_lowercase().as_str() {
                "protocol" => {
                    if !matches!(v, "tcp" | "udp" | "sctp") {
                        return Err(invalid(format!("invalid protocol value '{v}'")));
                    }
                    protocol = v;
                }
                "mode" => {
                    if !matches!(v, "ingress" | "host") {
                        return Err(invalid(format!(
                            "invalid publish mode value ({v}): must be either 'ingress' or 'host'"
                        )));
                    }
                    mode = v;
                }
                "target" => target = number(v)?,
                "published" => published = number(v)?,
                _ => return Err(invalid(format!("invalid field key: {k}"))),
            }
        }
        if target == 0 {
            return Err(invalid("missing mandatory field 'target'".into()));
        }
        return Ok(vec![port(target, published, protocol, mode)]);
    }
    let mut out = Vec::new();
    for (exposed, binding) in opts::publish(s).map_err(|e| invalid(format!("{e:#}")))? {
        if !str_at(&binding, "/HostIp").is_empty() {
            return Err(invalid("hostip is not supported".into()));
        }
        let (target, protocol) = exposed.split_once('/').unwrap_or((&exposed, "tcp"));
        let target: u16 = target
            .parse()
            .map_err(|_| invalid(format!("invalid target port {target}")))?;
        let published = match str_at(&binding, "/HostPort") {
            "" => 0,
            h => h
                .parse::<u16>()
                .map_err(|_| invalid(format!("invalid published port {h}")))?,
        };
        out.push(port(target, published, protocol, "ingress"));
    }
    Ok(out)
}

/// The `ServiceSpec` of `service create`.
fn create_spec(args: &CreateArgs) -> anyhow::Result<Map<String, Value>> {
    let Some((image, cmd_args)) = args.image_and_args.split_first() else {
        bail!("\"berth service create\" requires at least 1 argument");
    };
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(opts::read_kv_file(f, true)?);
    }
    for e in &args.env {
        env.push(opts::env_entry(e)?);
    }
    let mut cs = Map::new();
    cs.insert("Image".into(), json!(image));
    if !cmd_args.is_empty() {
        cs.insert("Args".into(), json!(cmd_args));
    }
    if !args.container_labels.is_empty() {
        cs.insert("Labels".into(), json!(opts::labels(&args.container_labels)));
    }
    if !env.is_empty() {
        cs.insert("Env".into(), json!(env));
    }
    if args.init {
        cs.insert("Init".into(), json!(true));
    }
    if args.tty {
        cs.insert("TTY".into(), json!(true));
    }
    if args.read_only {
        cs.insert("ReadOnly".into(), json!(true));
    }
    if !args.mounts.is_empty() {
        let mounts = args
            .mounts
            .iter()
            .map(|m| {
                opts::mount(m).map_err(|e| {
                    anyhow::anyhow!("invalid argument {m:?} for \"--mount\" flag: {e}")
                })
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        cs.insert("Mounts".into(), json!(mounts));
    }
    let mut task = Map::new();
    task.insert("ContainerSpec".into(), Value::Object(cs));
    if !args.networks.is_empty() {
        let nets: Vec<Value> = args
            .networks
            .iter()
            .map(|n| json!({ "Target": n }))
            .collect();
        task.insert("Networks".into(), json!(nets));
    }
    if !args.constraints.is_empty() {
        task.insert(
            "Placement".into(),
            json!({ "Constraints": args.constraints }),
        );
    }
    task.insert("ForceUpdate".into(), json!(0));
    let mut spec = Map::new();
    if let Some(n) = &args.name {
        spec.insert("Name".into(), json!(n));
    }
    spec.insert("Labels".into(), json!(opts::labels(&args.labels)));
    spec.insert("TaskTemplate".into(), Value::Object(task));
    let mode = if args.mode == "global" {
        if args.spec.replicas.is_some() {
            bail!("replicas can only be used with replicated or replicated-job mode");
        }
        json!({ "Global": {} })
    } else {
        json!({ "Replicated": {} })
    };
    spec.insert("Mode".into(), mode);
    let mut endpoint = Map::new();
    endpoint.insert("Mode".into(), json!(args.endpoint_mode));
    let mut ports = Vec::new();
    for p in &args.publish {
        ports.extend(port_configs(p, "publish")?);
    }
    if !ports.is_empty() {
        endpoint.insert("Ports".into(), json!(ports));
    }
    spec.insert("EndpointSpec".into(), Value::Object(endpoint));
    args.spec.apply(&mut spec)?;
    if args.mode != "global" && args.spec.replicas.is_none() {
        obj(obj(&mut spec, "Mode"), "Replicated").insert("Replicas".into(), json!(1));
    }
    Ok(spec)
}

/// Applies `service update`'s flags to the service's current spec.
fn update_spec(args: &UpdateArgs, spec: &mut Map<String, Value>) -> anyhow::Result<()> {
    if !args.publish_add.is_empty() || !args.publish_rm.is_empty() {
        let mut remove = Vec::new();
        for p in &args.publish_rm {
            remove.extend(port_configs(p, "publish-rm")?);
        }
        let mut add = Vec::new();
        for p in &args.publish_add {
            add.extend(port_configs(p, "publish-add")?);
        }
        let ports = arr(obj(spec, "EndpointSpec"), "Ports");
        ports.retain(|p| {
            !remove.iter().any(|r| {
                r.get("TargetPort") == p.get("TargetPort")
                    && str_at(r, "/Protocol") == port_protocol(p)
                    && str_at(r, "/PublishMode") == port_mode(p)
            })
        });
        for p in add {
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        ports.sort_by_key(|p| {
            (
                port_protocol(p).to_string(),
                p.get("TargetPort").and_then(Value::as_u64).unwrap_or(0),
                p.get("PublishedPort").and_then(Value::as_u64).unwrap_or(0),
            )
        });
    }
    // Service labels.
    if !args.label_rm.is_empty() || !args.label_add.is_empty() {
        let labels = obj(spec, "Labels");
        for k in &args.label_rm {
            labels.remove(k);
        }
        for (k, v) in opts::labels(&args.label_add) {
            labels.insert(k, json!(v));
        }
    }
    let args_words = match &args.args {
        Some(a) => Some(shell_words(a)?),
        None => None,
    };
    let mut mounts_add = Vec::new();
    for m in &args.mount_add {
        mounts_add.push(opts::mount(m).map_err(|e| {
            anyhow::anyhow!("invalid argument {m:?} for \"--mount-add\" flag: {e}")
        })?);
    }
    {
        let task = obj(spec, "TaskTemplate");
        let cs = obj(task, "ContainerSpec");
        if let Some(i) = &args.image {
            cs.insert("Image".into(), json!(i));
        }
        if let Some(w) = args_words {
            cs.insert("Args".into(), json!(w));
        }
        // Env: removals first, then additions replace entries of the same key.
        if !args.env_rm.is_empty() || !args.env_add.is_empty() {
            let mut env: Vec<String> = cs
                .get("Env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let remove: HashSet<&str> = args.env_rm.iter().map(|e| env_key(e)).collect();
            env.retain(|e| !remove.contains(env_key(e)));
            for add in &args.env_add {
                let add = opts::env_entry(add)?;
                match env.iter_mut().find(|e| env_key(e) == env_key(&add)) {
                    Some(e) => *e = add,
                    None => env.push(add),
                }
            }
            cs.insert("Env".into(), json!(env));
        }
        if !args.container_label_rm.is_empty() || !args.container_label_add.is_empty() {
            let labels = obj(cs, "Labels");
            for k in &args.container_label_rm {
                labels.remove(k);
            }
            for (k, v) in opts::labels(&args.container_label_add) {
                labels.insert(k, json!(v));
            }
        }
        if !args.mount_rm.is_empty() || !mounts_add.is_empty() {
            let mounts = arr(cs, "Mounts");
            mounts.retain(|m| {
                let target = m.get("Target").and_then(Value::as_str).unwrap_or_default();
                !args.mount_rm.iter().any(|t| t == target)
            });
            for m in mounts_add {
                let target = m.get("Target").cloned();
                mounts.retain(|old| old.get("Target") != target.as_ref());
                mounts.push(m);
            }
        }
        if !args.network_rm.is_empty() || !args.network_add.is_empty() {
            let nets = arr(task, "Networks");
            nets.retain(|n| {
                let target = n.get("Target").and_then(Value::as_str).unwrap_or_default();
                !args.network_rm.iter().any(|r| r == target)
            });
            for n in &args.network_add {
                if nets
                    .iter()
                    .any(|x| x.get("Target").and_then(Value::as_str) == Some(n.as_str()))
                {
                    bail!("service is already attached to network {n}");
                }
                nets.push(json!({ "Target": n }));
            }
        }
        if !args.constraint_rm.is_empty() || !args.constraint_add.is_empty() {
            let cons = arr(obj(task, "Placement"), "Constraints");
            cons.retain(|c| {
                let c = c.as_str().unwrap_or_default();
                !args.constraint_rm.iter().any(|r| r == c)
            });
            for c in &args.constraint_add {
                if !cons.iter().any(|x| x.as_str() == Some(c.as_str())) {
                    cons.push(json!(c));
                }
            }
        }
        if args.force {
            let n = task.get("ForceUpdate").and_then(Value::as_u64).unwrap_or(0);
            task.insert("ForceUpdate".into(), json!(n + 1));
        }
    }
    args.spec.apply(spec)
}

// ------------------------------------------------------------------ the verbs

async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let spec = create_spec(&args)?;
    let resp = client
        .post_body("/services/create", &Value::Object(spec))
        .await?;
    let v: Value = serde_json::from_slice(&read_all(resp).await?)
        .map_err(|e| anyhow::anyhow!("the daemon's answer to service create: {e}"))?;
    print_warnings(&v);
    let id = v
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    super::out(&format!("{id}\n"))?;
    if args.wait.detach {
        return Ok(());
    }
    wait_on_service(client, &id, Await::Converge, args.wait.quiet).await
}

pub(crate) fn print_warnings(v: &Value) {
    for w in v
        .get("Warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("{w}");
    }
}

/// `GET /services/{name}`: the service document.
async fn get_service(client: &Client, name: &str) -> anyhow::Result<Value> {
    client
        .get_json(&format!("/services/{}", path_escape(name)))
        .await
}

pub(crate) fn version_of(service: &Value) -> u64 {
    service
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

pub(crate) fn id_of(service: &Value) -> &str {
    service
        .get("ID")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `POST /services/{id}/update?version=N[&rollback=previous]`.
/// Docker's update (`rollback`: `previous`, or berth's revision number).
pub(crate) async fn post_update(
    client: &Client,
    service: &Value,
    spec: &Value,
    rollback: Option<&str>,
) -> anyhow::Result<()> {
    let q = Query::new(format!("/services/{}/update", path_escape(id_of(service))))
        .arg("version", version_of(service).to_string())
        .opt("rollback", rollback);
    let resp = client.post_body(&q.build(), spec).await?;
    let bytes = read_all(resp).await?;
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        print_warnings(&v);
    }
    Ok(())
}

async fn update(client: &Client, args: UpdateArgs) -> anyhow::Result<()> {
    let service = get_service(client, &args.service).await?;
    let current = service.get("Spec").cloned().unwrap_or_else(|| json!({}));
    let Value::Object(mut spec) = current.clone() else {
        bail!("service {}: the daemon's answer has no Spec", args.service);
    };
    if args.rollback {
        let others = args.image.is_some()
            || args.args.is_some()
            || !args.env_add.is_empty()
            || !args.env_rm.is_empty()
            || !args.label_add.is_empty()
            || !args.label_rm.is_empty()
            || !args.container_label_add.is_empty()
            || !args.container_label_rm.is_empty()
            || !args.mount_add.is_empty()
            || !args.mount_rm.is_empty()
            || !args.network_add.is_empty()
            || !args.network_rm.is_empty()
            || !args.constraint_add.is_empty()
            || !args.constraint_rm.is_empty()
            || !args.publish_add.is_empty()
            || !args.publish_rm.is_empty()
            || args.force;
        let mut probe = spec.clone();
        args.spec.apply(&mut probe)?;
        if others || probe != spec {
            bail!("other flags may not be combined with --rollback");
        }
        post_update(client, &service, &current, Some("previous")).await?;
        super::out(&format!("{}\n", args.service))?;
        if args.wait.detach {
            return Ok(());
        }
        return wait_on_service(client, id_of(&service), Await::Rollback, args.wait.quiet).await;
    }
    update_spec(&args, &mut spec)?;
    let new_tasks = spec.get("TaskTemplate") != current.get("TaskTemplate");
    post_update(client, &service, &Value::Object(spec), None).await?;
    super::out(&format!("{}\n", args.service))?;
    if args.wait.detach {
        return Ok(());
    }
    let what = if new_tasks {
        Await::Update
    } else {
        Await::Converge
    };
    wait_on_service(client, id_of(&service), what, args.wait.quiet).await
}

async fn rollback(client: &Client, args: RollbackArgs) -> anyhow::Result<()> {
    let service = get_service(client, &args.service).await?;
    let spec = service.get("Spec").cloned().unwrap_or_else(|| json!({}));
    let to = args.to.map(|n| n.to_string());
    post_update(
        client,
        &service,
        &spec,
        Some(to.as_deref().unwrap_or("previous")),
    )
    .await?;
    super::out(&format!("{}\n", args.service))?;
    if args.wait.detach {
        return Ok(());
    }
    wait_on_service(client, id_of(&service), Await::Rollback, args.wait.quiet).await
}

async fn scale(client: &Client, args: ScaleArgs) -> anyhow::Result<()> {
    let mut scales = Vec::new();
    for a in &args.scales {
        let Some((name, n)) = a.split_once('=') else {
            bail!("invalid scale specifier '{a}': expected SERVICE=REPLICAS");
        };
        scales.push((name.to_string(), n.to_string()));
    }
    let mut errors = Vec::new();
    let mut scaled = Vec::new();
    for (name, n) in scales {
        let replicas: u64 = match n.parse() {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{name}: invalid replicas value {n}: {e}"));
                continue;
            }
        };
        match scale_one(client, &name, replicas).await {
            Ok(id) => {
                super::out(&format!("{name} scaled to {replicas}\n"))?;
                scaled.push((name, id));
            }
            Err(e) => errors.push(format!("{name}: {e:#}")),
        }
    }
    if !args.detach {
        for (name, id) in &scaled {
            if let Err(e) = wait_on_service(client, id, Await::Converge, false).await {
                errors.push(format!("{name}: {e:#}"));
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

/// Sets the replicas of one service; its ID.
async fn scale_one(client: &Client, name: &str, replicas: u64) -> anyhow::Result<String> {
    let service = get_service(client, name).await?;
    let mut spec = service.get("Spec").cloned().unwrap_or_else(|| json!({}));
    match spec.pointer_mut("/Mode/Replicated") {
        Some(Value::Object(r)) => {
            r.insert("Replicas".into(), json!(replicas));
        }
        _ => bail!("scale can only be used with replicated or replicated-job mode"),
    }
    post_update(client, &service, &spec, None).await?;
    Ok(id_of(&service).to_string())
}

async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in &args.services {
        let path = format!("/services/{}", path_escape(name));
        match client
            .request(hyper::Method::DELETE, &path, crate::client::empty(), None)
            .await
        {
            Ok(_) => super::out(&format!("{name}\n"))?,
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<()> {
    if !args.pretty {
        return inspect_objects(client, "services", &args.services, args.format.as_deref()).await;
    }
    if args.format.is_some() {
        bail!("--format is incompatible with human friendly format");
    }
    let mut errors = Vec::new();
    let mut text = String::new();
    for (i, name) in args.services.iter().enumerate() {
        match get_service(client, name).await {
            Ok(s) => {
                if i > 0 && !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&pretty(&s));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    super::out(&text)?;
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

// ------------------------------------------------------------------------ ls

pub const SERVICE_FIELDS: Fields = &[
    ("ID", "ID"),
    ("Image", "IMAGE"),
    ("Mode", "MODE"),
    ("Name", "NAME"),
    ("Ports", "PORTS"),
    ("Replicas", "REPLICAS"),
];

const SERVICE_TABLE: &str =
    "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}";

/// docker's `NewListFormat` of services.
fn service_format(format: &str, quiet: bool) -> String {
    match format {
        "" | "table" if quiet => "{{.ID}}".into(),
        "" | "table" => SERVICE_TABLE.into(),
        "raw" if quiet => "id: {{.ID}}".into(),
        "raw" => "id: {{.ID}}\\nname: {{.Name}}\\nmode: {{.Mode}}\\nreplicas: {{.Replicas}}\\nimage: {{.Image}}\\nports: {{.Ports}}\\n".into(),
        f => f.into(),
    }
}

/// An image as docker's service and task tables show it: a tagged reference without
/// its digest, in its familiar form.
pub fn display_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let tagged = name[slash..].contains(':');
    if tagged {
        familiar(name)
    } else if digest.is_some() {
        image.to_string()
    } else {
        familiar(name)
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_global(spec: &Value) -> bool {
    spec.pointer("/Mode/Global").is_some_and(|g| !g.is_null())
}

/// The ingress ports of a service (`*:8080->80/tcp`, consecutive ones as a range
/// `*:8080-8081->80-81/tcp`), as docker's `service ls` shows them.
fn service_ports(s: &Value) -> String {
    let mut ports: Vec<(String, u64, u64)> = s
        .pointer("/Endpoint/Ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| port_mode(p) == "ingress")
        .map(|p| {
            (
                port_protocol(p).to_string(),
                p.get("PublishedPort").and_then(Value::as_u64).unwrap_or(0),
                p.get("TargetPort").and_then(Value::as_u64).unwrap_or(0),
            )
        })
        .collect();
    ports.sort();
    let range = |a: u64, b: u64| {
        if b > a {
            format!("{a}-{b}")
        } else {
            a.to_string()
        }
    };
    let mut out: Vec<String> = Vec::new();
    // (protocol, published start/end, target start/end) of the range being built.
    let mut cur: Option<(String, u64, u64, u64, u64)> = None;
    for (proto, published, target) in ports {
        if let Some((cp, ps, pe, ts, te)) = &mut cur {
            let is_range = *te != *ts;
            let overlaps = target <= *te;
            let extends = *cp == proto
                && (published == *pe || published == *pe + 1)
                && (target == *te || target == *te + 1)
                && !(is_range && overlaps);
            if extends {
                *pe = published;
                *te = target;
                continue;
            }
            if *ps > 0 {
                out.push(format!("*:{}->{}/{cp}", range(*ps, *pe), range(*ts, *te)));
            }
        }
        cur = Some((proto, published, published, target, target));
    }
    if let Some((cp, ps, pe, ts, te)) = cur {
        if ps > 0 {
            out.push(format!("*:{}->{}/{cp}", range(ps, pe), range(ts, te)));
        }
    }
    out.join(", ")
}

/// The template data of one service (docker's `serviceContext`).
fn service_row(s: &Value) -> Value {
    let spec = s.get("Spec").unwrap_or(&Value::Null);
    let count = |key: &str| {
        s.pointer(&format!("/ServiceStatus/{key}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    format::row(&[
        ("ID", format::truncate_id(id_of(s))),
        (
            "Image",
            display_image(str_at(spec, "/TaskTemplate/ContainerSpec/Image")),
        ),
        (
            "Mode",
            if is_global(spec) {
                "global"
            } else {
                "replicated"
            }
            .into(),
        ),
        ("Name", str_at(spec, "/Name").into()),
        ("Ports", service_ports(s)),
        (
            "Replicas",
            format!("{}/{}", count("RunningTasks"), count("DesiredTasks")),
        ),
    ])
}

async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let q = Query::new("/services")
        .arg("status", "true")
        .opt("filters", format::filters_json(&args.filters)?.as_deref());
    let list: Vec<Value> = client.get_json(&q.build()).await?;
    print_services(list, args.format.as_deref().unwrap_or(""), args.quiet)
}

/// Prints services as `service ls` does (also `stack services`): sorted by name, in
/// docker's table or the given `--format`.
pub(crate) fn print_services(
    mut list: Vec<Value>,
    format: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let format = service_format(format, quiet);
    let fmt = ListFormat::parse(&format, SERVICE_TABLE, SERVICE_FIELDS)?;
    list.sort_by(|x, y| {
        let (a, b) = (str_at(x, "/Spec/Name"), str_at(y, "/Spec/Name"));
        if natural_less(a, b) {
            std::cmp::Ordering::Less
        } else if natural_less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let rows: Vec<Value> = list.iter().map(service_row).collect();
    super::out(&fmt.render(&rows, SERVICE_FIELDS)?)
}

// ------------------------------------------------------------------------ ps

pub const TASK_FIELDS: Fields = &[
    ("CurrentState", "CURRENT STATE"),
    ("DesiredState", "DESIRED STATE"),
    ("Error", "ERROR"),
    ("ID", "ID"),
    ("Image", "IMAGE"),
    ("Name", "NAME"),
    ("Node", "NODE"),
    ("Ports", "PORTS"),
];

const TASK_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}";

/// docker's `command.PrettyPrint` of a state: `running` is `Running`.
fn pretty_state(s: &str) -> String {
    let mut c = s.chars();
    match (c.next(), s.chars().count()) {
        (None, _) => String::new(),
        (Some(_), 1) => s.to_lowercase(),
        (Some(first), _) => first
            .to_uppercase()
            .chain(c.as_str().to_lowercase().chars())
            .collect(),
    }
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `Running 5 seconds ago`, as docker's task table words the current state.
fn current_state(task: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let state = pretty_state(str_at(task, "/Status/State"));
    let since = parse_time(str_at(task, "/Status/Timestamp"))
        .map(|t| now - t)
        .unwrap_or_else(chrono::Duration::zero);
    format!(
        "{state} {} ago",
        units::human_duration(since).to_lowercase()
    )
}

/// A task's name: `SERVICE.SLOT`, or `SERVICE.NODEID` for a global service's task.
fn task_name(task: &Value, service_name: &str) -> String {
    match task.get("Slot").and_then(Value::as_u64) {
        Some(slot) if slot != 0 => format!("{service_name}.{slot}"),
        _ => format!("{service_name}.{}", str_at(task, "/NodeID")),
    }
}

/// The rows of `service ps`: sorted by name, the newest task of a slot first, older
/// ones indented with ` \_ ` in a table (docker's `task.Print`).
fn task_rows(
    tasks: &[Value],
    service_names: &HashMap<String, String>,
    node_names: &HashMap<String, String>,
    trunc: bool,
    table: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Value> {
    let mut named: Vec<(String, &Value)> = tasks
        .iter()
        .map(|t| {
            let sid = str_at(t, "/ServiceID");
            let service = service_names
                .get(sid)
                .map_or(sid, String::as_str)
                .to_string();
            (task_name(t, &service), t)
        })
        .collect();
    named.sort_by(|(na, a), (nb, b)| {
        na.cmp(nb).then_with(|| {
            let (ca, cb) = (str_at(a, "/CreatedAt"), str_at(b, "/CreatedAt"));
            match (parse_time(ca), parse_time(cb)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => cb.cmp(ca),
            }
        })
    });
    let mut rows = Vec::new();
    let mut prev = String::new();
    for (name, t) in named {
        let shown = if table && name == prev {
            format!(" \\_ {name}")
        } else {
            name.clone()
        };
        prev = name;
        let id = str_at(t, "/ID");
        let image = str_at(t, "/Spec/ContainerSpec/Image");
        let node_id = str_at(t, "/NodeID");
        let err = str_at(t, "/Status/Err");
        let err = if trunc {
            format::ellipsis(err, 30)
        } else {
            err.to_string()
        };
        rows.push(format::row(&[
            ("CurrentState", current_state(t, now)),
            ("DesiredState", pretty_state(str_at(t, "/DesiredState"))),
            (
                "Error",
                if err.is_empty() {
                    err
                } else {
                    format!("\"{err}\"")
                },
            ),
            (
                "ID",
                if trunc {
                    format::truncate_id(id)
                } else {
                    id.to_string()
                },
            ),
            (
                "Image",
                if trunc {
                    display_image(image)
                } else {
                    image.to_string()
                },
            ),
            ("Name", shown),
            (
                "Node",
                node_names
                    .get(node_id)
                    .cloned()
                    .unwrap_or_else(|| node_id.to_string()),
            ),
            ("Ports", String::new()),
        ]));
    }
    rows
}

pub(crate) fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == hyper::StatusCode::NOT_FOUND)
}

/// Node IDs to hostnames (`GET /nodes`).
async fn node_names(client: &Client) -> anyhow::Result<HashMap<String, String>> {
    let nodes: Vec<Value> = client.get_json("/nodes").await?;
    Ok(nodes
        .iter()
        .map(|n| {
            let id = id_of(n).to_string();
            let host = str_at(n, "/Description/Hostname");
            let shown = if host.is_empty() {
                id.clone()
            } else {
                host.to_string()
            };
            (id, shown)
        })
        .collect())
}

async fn ps(client: &Client, args: PsArgs) -> anyhow::Result<()> {
    let mut not_found = Vec::new();
    let mut service_names: HashMap<String, String> = HashMap::new();
    for name in &args.services {
        match get_service(client, name).await {
            Ok(s) => {
                service_names.insert(id_of(&s).to_string(), str_at(&s, "/Spec/Name").into());
            }
            Err(e) if is_not_found(&e) => not_found.push(format!("no such service: {name}")),
            Err(e) => return Err(e),
        }
    }
    if service_names.is_empty() {
        bail!("{}", not_found.join("\n"));
    }
    let mut filters: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(f) = format::filters_json(&args.filters)? {
        filters = serde_json::from_str(&f)?;
    }
    let services = filters.entry("service".into()).or_default();
    for id in service_names.keys() {
        services.insert(id.clone(), Value::Bool(true));
    }
    let q = Query::new("/tasks").opt("filters", format::add_filters(filters)?.as_deref());
    let tasks: Vec<Value> = client.get_json(&q.build()).await?;
    let listing = TaskListing {
        no_resolve: args.no_resolve,
        no_trunc: args.no_trunc,
        quiet: args.quiet,
        format: args.format.as_deref().unwrap_or(""),
    };
    print_tasks(client, &tasks, service_names, &listing).await?;
    if !not_found.is_empty() {
        bail!("{}", not_found.join("\n"));
    }
    Ok(())
}

/// How `service ps` and `stack ps` print tasks.
pub(crate) struct TaskListing<'a> {
    /// Do not map service and node IDs to names.
    pub no_resolve: bool,
    pub no_trunc: bool,
    pub quiet: bool,
    /// `--format` (empty: docker's table).
    pub format: &'a str,
}

/// Prints tasks as `service ps` does: `service_names` maps the IDs of their services
/// to names.
pub(crate) async fn print_tasks(
    client: &Client,
    tasks: &[Value],
    service_names: HashMap<String, String>,
    listing: &TaskListing<'_>,
) -> anyhow::Result<()> {
    let nodes = if listing.no_resolve {
        HashMap::new()
    } else {
        node_names(client).await?
    };
    let names = if listing.no_resolve {
        HashMap::new()
    } else {
        service_names
    };
    let format = match listing.format {
        "" | "table" if listing.quiet => "{{.ID}}",
        "" | "table" => TASK_TABLE,
        f => f,
    };
    let fmt = ListFormat::parse(format, TASK_TABLE, TASK_FIELDS)?;
    // As docker: -q shows whole IDs.
    let trunc = !(listing.no_trunc || listing.quiet);
    let rows = task_rows(
        tasks,
        &names,
        &nodes,
        trunc,
        format.starts_with("table"),
        chrono::Utc::now(),
    );
    super::out(&fmt.render(&rows, TASK_FIELDS)?)
}

// ---------------------------------------------------------- waiting on a service

/// What a verb waits for after its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Await {
    /// The tasks of the current spec run (create, scale, an update of the service only).
    Converge,
    /// A rolling update completes (`UpdateStatus.State` `completed`).
    Update,
    /// A rollback completes (`rollback_completed`).
    Rollback,
}

/// How long tasks may keep failing before a wait gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
/// docker's default monitor period, when the spec's UpdateConfig has none.
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// When a wait gives up: the first task failure is a minute old and tasks still fail
/// (one failed within the last minute), or nothing has been starting for a minute.
#[derive(Debug, Default)]
struct Failures {
    first: Option<Instant>,
    last: Option<Instant>,
    stalled_since: Option<Instant>,
}

impl Failures {
    fn failed(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Whether no task is on its way to run while fewer than wanted run.
    fn stalled(&mut self, stalled: bool, now: Instant) {
        if stalled {
            self.stalled_since.get_or_insert(now);
        } else {
            self.stalled_since = None;
        }
    }

    fn give_up(&self, now: Instant) -> bool {
        let old = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) >= GIVE_UP_AFTER);
        old(self.first) && (!old(self.last) || old(self.stalled_since))
    }
}

/// Docker's order of task states (`numberedStates`).
fn state_rank(s: &str) -> u8 {
    match s {
        "new" => 1,
        "allocated" => 2,
        "pending" => 3,
        "assigned" => 4,
        "accepted" => 5,
        "preparing" => 6,
        "ready" => 7,
        "starting" => 8,
        "running" => 9,
        "complete" => 10,
        "shutdown" => 11,
        "failed" => 12,
        "rejected" => 13,
        "remove" => 14,
        "orphaned" => 15,
        _ => 0,
    }
}

fn terminal(s: &str) -> bool {
    state_rank(s) > state_rank("running")
}

/// One task per slot (per node for a global service), as docker's progress picks it:
/// the lowest desired state, then the lowest observed state.
fn tasks_by_slot(tasks: &[Value], global: bool) -> BTreeMap<String, &Value> {
    let mut out: BTreeMap<String, &Value> = BTreeMap::new();
    for t in tasks {
        let (desired, state) = (
            state_rank(str_at(t, "/DesiredState")),
            state_rank(str_at(t, "/Status/State")),
        );
        if desired == 0 || state == 0 {
            continue;
        }
        let key = if global {
            str_at(t, "/NodeID").to_string()
        } else {
            format!("{:020}", t.get("Slot").and_then(Value::as_u64).unwrap_or(0))
        };
        if let Some(old) = out.get(&key) {
            let (od, os) = (
                state_rank(str_at(old, "/DesiredState")),
                state_rank(str_at(old, "/Status/State")),
            );
            if od < desired || (od == desired && os <= state) {
                continue;
            }
        }
        out.insert(key, t);
    }
    out
}

/// The first line of a task error, at most 80 characters.
fn short_error(e: &str) -> String {
    format::ellipsis(e.lines().next().unwrap_or_default(), 80)
}

/// Follows a service until it converged (docker's `ServiceProgress`): a progress line
/// per change, then the monitor period during which the tasks must stay up. Fails when
/// the update pauses or rolls back, or when tasks keep failing for a minute.
pub(crate) async fn wait_on_service(
    client: &Client,
    id: &str,
    what: Await,
    quiet: bool,
) -> anyhow::Result<()> {
    let say = |line: String| -> anyhow::Result<()> {
        if quiet {
            Ok(())
        } else {
            super::out(&format!("{line}\n"))
        }
    };
    let mut printed: HashMap<String, String> = HashMap::new();
    let mut last_overall = String::new();
    let mut last_verify = String::new();
    let mut rollback = what == Await::Rollback;
    let mut converged_at: Option<Instant> = None;
    let mut failures = Failures::default();
    let mut seen_failures: HashSet<String> = HashSet::new();
    let mut last_error = String::new();
    let mut active_nodes: Option<usize> = None;
    let mut slot_map: HashMap<String, usize> = HashMap::new();
    // Task failures count from now on (a second of slack for the clocks' rounding).
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let service_filter = json!({ "service": { id: true } }).to_string();
    loop {
        let service = get_service(client, id).await?;
        let spec = service.get("Spec").unwrap_or(&Value::Null);
        let name = str_at(spec, "/Name").to_string();

        // Failures of the service's tasks, whatever their spec: an update's failed
        // tasks are no longer up to date once it rolled back.
        let q = Query::new("/tasks").arg("filters", service_filter.clone());
        let all: Vec<Value> = client.get_json(&q.build()).await?;
        let mut failed: Vec<&Value> = all
            .iter()
            .filter(|t| matches!(str_at(t, "/Status/State"), "failed" | "rejected"))
            .filter(|t| parse_time(str_at(t, "/Status/Timestamp")).is_some_and(|ts| ts >= since))
            .filter(|t| !seen_failures.contains(id_of(t)))
            .collect();
        failed.sort_by_key(|t| parse_time(str_at(t, "/Status/Timestamp")));
        for t in failed {
            seen_failures.insert(id_of(t).to_string());
            let err = str_at(t, "/Status/Err");
            let reason = if err.is_empty() {
                str_at(t, "/Status/Message")
            } else {
                err
            };
            last_error = format!("task {}: {}", task_name(t, &name), short_error(reason));
            failures.failed(Instant::now());
        }

        let state = service
            .pointer("/UpdateStatus/State")
            .and_then(Value::as_str);
        let message = str_at(&service, "/UpdateStatus/Message");
        let with_task_error = |m: &str| {
            if last_error.is_empty() {
                m.to_string()
            } else {
                format!("{m} (last task error: {last_error})")
            }
        };
        // A paused rollout converges no more, whatever the verb waits for.
        match (what, state) {
            (_, Some("paused")) => {
                bail!("service update paused: {}", with_task_error(message))
            }
            (_, Some("rollback_paused")) => {
                bail!("service rollback paused: {}", with_task_error(message))
            }
            (Await::Update, Some("rollback_started")) if !rollback => {
                say(format!("rollback: {message}"))?;
                rollback = true;
            }
            (Await::Update, Some("rollback_completed")) => {
                bail!(
                    "service rolled back: the update failed and the previous spec runs again: {}",
                    with_task_error(message)
                )
            }
            _ => {}
        }
        let settled = match what {
            Await::Converge => true,
            Await::Update => matches!(state, None | Some("completed")),
            Await::Rollback => state == Some("rollback_completed"),
        };
        let global = is_global(spec);
        let desired = if global {
            match active_nodes {
                Some(n) => n,
                None => {
                    let nodes: Vec<Value> = client.get_json("/nodes").await?;
                    let n = nodes
                        .iter()
                        .filter(|n| str_at(n, "/Spec/Availability") == "active")
                        .count();
                    active_nodes = Some(n);
                    n
                }
            }
        } else {
            spec.pointer("/Mode/Replicated/Replicas")
                .and_then(Value::as_u64)
                .unwrap_or(1) as usize
        };
        let monitor = spec
            .pointer("/UpdateConfig/Monitor")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .map_or(DEFAULT_MONITOR, Duration::from_nanos);

        let filters = json!({ "service": { id: true }, "_up-to-date": { "true": true } });
        let q = Query::new("/tasks").arg("filters", filters.to_string());
        let tasks: Vec<Value> = client.get_json(&q.build()).await?;

        let by_slot = tasks_by_slot(&tasks, global);
        let mut running = 0;
        for (key, t) in &by_slot {
            let st = str_at(t, "/Status/State");
            let desired_state = str_at(t, "/DesiredState");
            if !terminal(desired_state) && st == "running" {
                running += 1;
            }
            // Display numbers in the order slots appear, as docker's.
            let next = slot_map.len() + 1;
            let shown = *slot_map.entry(key.clone()).or_insert(next);
            if converged_at.is_some() || desired > 20 || shown > desired {
                continue;
            }
            let err = str_at(t, "/Status/Err");
            let text = if !err.is_empty() {
                short_error(err)
            } else if !terminal(desired_state) && !terminal(st) {
                st.to_string()
            } else {
                continue;
            };
            let label = if global {
                format::truncate_id(str_at(t, "/NodeID"))
            } else {
                format!("{shown}/{desired}")
            };
            if printed.get(&label) != Some(&text) {
                say(format!("{label}: {text}"))?;
                printed.insert(label, text);
            }
        }
        let overall = if rollback {
            format!("overall progress: rolling back update: {running} out of {desired} tasks")
        } else {
            format!("overall progress: {running} out of {desired} tasks")
        };
        if overall != last_overall {
            say(overall.clone())?;
            last_overall = overall;
        }

        if running == desired && settled {
            let since = *converged_at.get_or_insert_with(Instant::now);
            let elapsed = since.elapsed();
            if elapsed >= monitor {
                say("verify: Service converged".into())?;
                return Ok(());
            }
            let left = (monitor - elapsed).as_secs() + 1;
            let verify =
                format!("verify: Waiting {left} seconds to verify that tasks are stable...");
            if verify != last_verify {
                say(verify.clone())?;
                last_verify = verify;
            }
        } else {
            if converged_at.take().is_some() {
                say("verify: Detected task failure".into())?;
                last_verify.clear();
            }
            let live = by_slot.values().any(|t| {
                !terminal(str_at(t, "/DesiredState")) && !terminal(str_at(t, "/Status/State"))
            });
            failures.stalled(running < desired && !live, Instant::now());
            if failures.give_up(Instant::now()) {
                bail!(
                    "service {name}: its tasks keep failing, gave up waiting after {} s: {last_error} (the service stays: see `berth service ps {name}`)",
                    GIVE_UP_AFTER.as_secs()
                );
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

// -------------------------------------------------------------- inspect --pretty

/// Go's `time.Duration.String`: `5s`, `1m30s`, `200ms`, `1.5µs`, `0s`.
pub fn go_duration_string(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    /// `v / 10^prec` with the trailing zeros of the fraction dropped.
    fn frac(v: u64, prec: u32) -> String {
        let p = 10u64.pow(prec);
        let (whole, rest) = (v / p, v % p);
        if rest == 0 {
            return whole.to_string();
        }
        let digits = format!("{rest:0width$}", width = prec as usize);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let secs_ns = u % 60_000_000_000;
    let mins = u / 60_000_000_000;
    let (h, m) = (mins / 60, mins % 60);
    let s = frac(secs_ns, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

fn rollout_pretty(out: &mut String, title: &str, order_label: &str, c: &Value) {
    let n = |k: &str| c.get(k).and_then(Value::as_i64).unwrap_or(0);
    out.push_str(&format!("{title}:\n Parallelism:\t{}\n", n("Parallelism")));
    if n("Delay") != 0 {
        out.push_str(&format!(" Delay:\t\t{}\n", go_duration_string(n("Delay"))));
    }
    out.push_str(&format!(" On failure:\t{}\n", str_at(c, "/FailureAction")));
    if n("Monitor") != 0 {
        out.push_str(&format!(
            " Monitoring Period: {}\n",
            go_duration_string(n("Monitor"))
        ));
    }
    out.push_str(&format!(
        " Max failure ratio: {}\n",
        c.get("MaxFailureRatio")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    ));
    out.push_str(&format!(" {order_label}{}\n", str_at(c, "/Order")));
}

/// `service inspect --pretty`: the main fields of docker's human friendly format.
fn pretty(s: &Value) -> String {
    let spec = s.get("Spec").unwrap_or(&Value::Null);
    let cs = spec
        .pointer("/TaskTemplate/ContainerSpec")
        .unwrap_or(&Value::Null);
    let mut out = String::new();
    out.push_str(&format!("\nID:\t\t{}\n", id_of(s)));
    out.push_str(&format!("Name:\t\t{}\n", str_at(spec, "/Name")));
    if let Some(labels) = spec
        .get("Labels")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
    {
        out.push_str("Labels:\n");
        let sorted: BTreeMap<&String, &Value> = labels.iter().collect();
        for (k, v) in sorted {
            match v.as_str().unwrap_or_default() {
                "" => out.push_str(&format!(" {k}\n")),
                v => out.push_str(&format!(" {k}={v}\n")),
            }
        }
    }
    if is_global(spec) {
        out.push_str("Service Mode:\tGlobal\n");
    } else {
        out.push_str("Service Mode:\tReplicated\n");
        if let Some(r) = spec
            .pointer("/Mode/Replicated/Replicas")
            .and_then(Value::as_u64)
        {
            out.push_str(&format!(" Replicas:\t{r}\n"));
        }
    }
    if let Some(us) = s.get("UpdateStatus").filter(|u| u.is_object()) {
        out.push_str(&format!(
            "UpdateStatus:\n State:\t\t{}\n",
            str_at(us, "/State")
        ));
        let started = str_at(us, "/StartedAt");
        if let Some(t) = parse_time(started) {
            out.push_str(&format!(
                " Started:\t{}\n",
                units::since(t.timestamp(), chrono::Utc::now())
            ));
        }
        if let Some(t) = parse_time(str_at(us, "/CompletedAt")) {
            out.push_str(&format!(
                " Completed:\t{}\n",
                units::since(t.timestamp(), chrono::Utc::now())
            ));
        }
        out.push_str(&format!(" Message:\t{}\n", str_at(us, "/Message")));
    }
    out.push_str("Placement:\n");
    if let Some(c) = spec
        .pointer("/TaskTemplate/Placement/Constraints")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        let list: Vec<&str> = c.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!(" Constraints:\t[{}]\n", list.join(" ")));
    }
    if let Some(c) = spec.get("UpdateConfig").filter(|c| c.is_object()) {
        rollout_pretty(&mut out, "UpdateConfig", "Update order:      ", c);
    }
    if let Some(c) = spec.get("RollbackConfig").filter(|c| c.is_object()) {
        rollout_pretty(&mut out, "RollbackConfig", "Rollback order:    ", c);
    }
    out.push_str(&format!(
        "ContainerSpec:\n Image:\t\t{}\n",
        str_at(cs, "/Image")
    ));
    let words = |key: &str| -> Vec<String> {
        cs.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let args = words("Args");
    if !args.is_empty() {
        out.push_str(&format!(" Args:\t\t{} \n", args.join(" ")));
    }
    let env = words("Env");
    if !env.is_empty() {
        out.push_str(&format!(" Env:\t\t{} \n", env.join(" ")));
    }
    if !str_at(cs, "/Dir").is_empty() {
        out.push_str(&format!(" Dir:\t\t{}\n", str_at(cs, "/Dir")));
    }
    if let Some(i) = cs.get("Init").and_then(Value::as_bool) {
        out.push_str(&format!(" Init:\t\t{i}\n"));
    }
    if !str_at(cs, "/User").is_empty() {
        out.push_str(&format!(" User: {}\n", str_at(cs, "/User")));
    }
    let res = spec
        .pointer("/TaskTemplate/Resources")
        .unwrap_or(&Value::Null);
    let cpu = |p: &str| res.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let section = |title: &str, base: &str| -> String {
        let (nano, mem) = (
            cpu(&format!("{base}/NanoCPUs")),
            cpu(&format!("{base}/MemoryBytes")),
        );
        if nano == 0 && mem == 0 {
            return String::new();
        }
        let mut s = format!(" {title}:\n");
        if nano > 0 {
            s.push_str(&format!("  CPU:\t\t{}\n", nano as f64 / 1e9));
        }
        if mem > 0 {
            s.push_str(&format!("  Memory:\t{}\n", units::bytes_size(mem as f64)));
        }
        s
    };
    let reservations = section("Reservations", "/Reservations");
    let limits = section("Limits", "/Limits");
    if !reservations.is_empty() || !limits.is_empty() {
        out.push_str("Resources:\n");
        out.push_str(&reservations);
        out.push_str(&limits);
    }
    if let Some(nets) = spec
        .pointer("/TaskTemplate/Networks")
        .and_then(Value::as_array)
        .filter(|n| !n.is_empty())
    {
        out.push_str("Networks:");
        for n in nets {
            out.push_str(&format!(" {}", str_at(n, "/Target")));
        }
        out.push_str(" \n");
    }
    let mode = str_at(s, "/Endpoint/Spec/Mode");
    out.push_str(&format!(
        "Endpoint Mode:\t{}\n",
        if mode.is_empty() { "vip" } else { mode }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> super::super::Verb {
        let mut full = vec!["berth"];
        full.extend_from_slice(args);
        super::super::Cli::try_parse_from(full)
            .unwrap()
            .command
            .unwrap()
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        let mut full = vec!["service", "create"];
        full.extend_from_slice(args);
        match parse(&full) {
            super::super::Verb::Service(ServiceVerb::Create(a)) => a,
            other => panic!("not service create: {other:?}"),
        }
    }

    fn update_args(args: &[&str]) -> UpdateArgs {
        let mut full = vec!["service", "update"];
        full.extend_from_slice(args);
        match parse(&full) {
            super::super::Verb::Service(ServiceVerb::Update(a)) => a,
            other => panic!("not service update: {other:?}"),
        }
    }

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(shell_words("'sleep 999'").unwrap(), ["sleep 999"]);
        assert_eq!(
            shell_words(r#"sh -c "echo \"hi\" there"  x\ y"#).unwrap(),
            ["sh", "-c", "echo \"hi\" there", "x y"]
        );
        assert_eq!(shell_words("a # comment").unwrap(), ["a"]);
        assert_eq!(shell_words("a#b").unwrap(), ["a#b"]);
        assert_eq!(shell_words("''").unwrap(), [""]);
        assert!(shell_words("").unwrap().is_empty());
        assert!(shell_words("'open").is_err());
        assert!(shell_words("x\\").is_err());
    }

    #[test]
    fn create_builds_docker_s_service_spec() {
        let a = create_args(&[
            "--name",
            "web",
            "--replicas",
            "2",
            "-e",
            "A=1",
            "--label",
            "tier=front",
            "--container-label",
            "c=1",
            "-w",
            "/srv",
            "--user",
            "nobody",
            "--entrypoint",
            "sh -c",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "200ms",
            "--restart-max-attempts",
            "3",
            "--restart-window",
            "1m30s",
            "--stop-grace-period",
            "2s",
            "--update-parallelism",
            "2",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "3s",
            "--rollback-order",
            "start-first",
            "--health-cmd",
            "true",
            "--health-interval",
            "5s",
            "--health-retries",
            "2",
            "--limit-cpu",
            "0.5",
            "--limit-memory",
            "64m",
            "--reserve-memory",
            "32m",
            "--network",
            "front",
            "--mount",
            "type=volume,source=data,target=/data",
            "-d",
            "fixture/app:1",
            "sleep 1000",
            "--not-a-flag",
        ]);
        assert!(a.wait.detach);
        let spec = Value::Object(create_spec(&a).unwrap());
        assert_eq!(
            spec,
            json!({
                "Name": "web",
                "Labels": {"tier": "front"},
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": "fixture/app:1",
                        "Args": ["sleep 1000", "--not-a-flag"],
                        "Labels": {"c": "1"},
                        "Env": ["A=1"],
                        "Mounts": [{"Source": "data", "Target": "/data", "Type": "volume"}],
                        "Dir": "/srv",
                        "User": "nobody",
                        "Command": ["sh", "-c"],
                        "StopGracePeriod": 2_000_000_000i64,
                        "Healthcheck": {
                            "Interval": 5_000_000_000i64,
                            "Retries": 2,
                            "Test": ["CMD-SHELL", "true"],
                        },
                    },
                    "Networks": [{"Target": "front"}],
                    "ForceUpdate": 0,
                    "RestartPolicy": {
                        "Condition": "on-failure",
                        "Delay": 200_000_000,
                        "MaxAttempts": 3,
                        "Window": 90_000_000_000i64,
                    },
                    "Resources": {
                        "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 67_108_864},
                        "Reservations": {"MemoryBytes": 33_554_432},
                    },
                },
                "Mode": {"Replicated": {"Replicas": 2}},
                "EndpointSpec": {"Mode": "vip"},
                "UpdateConfig": {
                    "Parallelism": 2,
                    "FailureAction": "rollback",
                    "Monitor": 3_000_000_000i64,
                    "MaxFailureRatio": 0,
                    "Order": "stop-first",
                },
                "RollbackConfig": {
                    "Parallelism": 1,
                    "FailureAction": "pause",
                    "Monitor": 5_000_000_000i64,
                    "MaxFailureRatio": 0,
                    "Order": "start-first",
                },
            })
        );
    }

    #[test]
    fn create_defaults_and_refusals() {
        let spec = Value::Object(create_spec(&create_args(&["fixture/app:1"])).unwrap());
        assert_eq!(spec["Mode"], json!({"Replicated": {"Replicas": 1}}));
        assert_eq!(spec["Labels"], json!({}));
        assert!(spec.pointer("/TaskTemplate/ContainerSpec/Args").is_none());
        assert!(spec.get("UpdateConfig").is_none());
        let g = create_spec(&create_args(&["--mode", "global", "x"])).unwrap();
        assert_eq!(Value::Object(g)["Mode"], json!({"Global": {}}));
        let e =
            create_spec(&create_args(&["--mode", "global", "--replicas", "2", "x"])).unwrap_err();
        assert!(e.to_string().contains("replicas can only be used"), "{e}");
        let e = create_spec(&create_args(&["--restart-delay", "5", "x"])).unwrap_err();
        assert!(e.to_string().contains("--restart-delay"), "{e}");
        let e = create_spec(&create_args(&[
            "--no-healthcheck",
            "--health-cmd",
            "x",
            "x",
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("conflicts"), "{e}");
        let s = create_spec(&create_args(&["--no-healthcheck", "x"])).unwrap();
        assert_eq!(
            Value::Object(s)["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
            json!({"Test": ["NONE"]})
        );
        let parsed = super::super::Cli::try_parse_from([
            "berth",
            "service",
            "create",
            "--update-order",
            "sideways",
            "x",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn update_edits_the_current_spec() {
        let current = json!({
            "Name": "web",
            "Labels": {"tier": "front", "old": "x"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "fixture/app:1", "Args": ["sleep 1000"],
                                  "Env": ["A=1", "B=2"],
                                  "Mounts": [{"Type": "volume", "Source": "d", "Target": "/d"}]},
                "ForceUpdate": 1,
                "Networks": [{"Target": "front"}],
            },
            "Mode": {"Replicated": {"Replicas": 2}},
            "UpdateConfig": {"Parallelism": 1, "Monitor": 5_000_000_000i64},
        });
        let a = update_args(&[
            "--args",
            "'sleep 999'",
            "--image",
            "fixture/app:2",
            "--env-add",
            "B=3",
            "--env-add",
            "C=4",
            "--env-rm",
            "A",
            "--label-add",
            "new=1",
            "--label-rm",
            "old",
            "--mount-rm",
            "/d",
            "--network-add",
            "back",
            "--network-rm",
            "front",
            "--replicas",
            "3",
            "--force",
            "--update-monitor",
            "3s",
            "--update-failure-action",
            "rollback",
            "web",
        ]);
        let Value::Object(mut spec) = current.clone() else {
            panic!()
        };
        update_spec(&a, &mut spec).unwrap();
        let spec = Value::Object(spec);
        assert_eq!(
            spec,
            json!({
                "Name": "web",
                "Labels": {"tier": "front", "new": "1"},
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "fixture/app:2", "Args": ["sleep 999"],
                                      "Env": ["B=3", "C=4"], "Mounts": []},
                    "ForceUpdate": 2,
                    "Networks": [{"Target": "back"}],
                },
                "Mode": {"Replicated": {"Replicas": 3}},
                "UpdateConfig": {"Parallelism": 1, "Monitor": 3_000_000_000i64,
                                 "FailureAction": "rollback"},
            })
        );
        // Only the replicas: the task template stays as it was.
        let a = update_args(&["--replicas", "1", "web"]);
        let Value::Object(mut spec) = current.clone() else {
            panic!()
        };
        update_spec(&a, &mut spec).unwrap();
        assert_eq!(spec.get("TaskTemplate"), current.get("TaskTemplate"));
        let a = update_args(&["--network-add", "front", "web"]);
        let Value::Object(mut spec) = current.clone() else {
            panic!()
        };
        assert!(update_spec(&a, &mut spec).is_err());
    }

    #[test]
    fn published_ports_as_docker_reads_and_shows_them() {
        assert_eq!(
            port_configs("8080:80", "publish").unwrap(),
            [
                json!({"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"})
            ]
        );
        assert_eq!(
            port_configs("53/udp", "publish").unwrap(),
            [json!({"Protocol": "udp", "TargetPort": 53, "PublishMode": "ingress"})]
        );
        assert_eq!(port_configs("8000-8001:80-81", "publish").unwrap().len(), 2);
        assert_eq!(
            port_configs("published=9000,target=90,protocol=udp,mode=host", "publish").unwrap(),
            [
                json!({"Protocol": "udp", "TargetPort": 90, "PublishedPort": 9000, "PublishMode": "host"})
            ]
        );
        for bad in [
            "127.0.0.1:8080:80",
            "published=1",
            "target=80,x=1",
            "target=80,mode=x",
        ] {
            assert!(port_configs(bad, "publish").is_err(), "{bad}");
        }
        let spec = create_spec(&create_args(&["-p", "8080:80", "x"])).unwrap();
        assert_eq!(
            Value::Object(spec)["EndpointSpec"],
            json!({"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]})
        );
        let shown = |ports: Value| service_ports(&json!({"Endpoint": {"Ports": ports}}));
        assert_eq!(
            shown(json!([
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 8081, "PublishMode": "ingress"},
                {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 22, "PublishedPort": 2222, "PublishMode": "host"},
                {"Protocol": "tcp", "TargetPort": 90, "PublishedPort": 9000, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 9001, "PublishMode": "ingress"},
            ])),
            "*:8080-8081->80-81/tcp, *:9000->90/tcp, *:9001->80/tcp, *:53->53/udp"
        );
        assert_eq!(shown(Value::Null), "");
        // publish-add / publish-rm.
        let a = update_args(&["--publish-rm", "80", "--publish-add", "9090:90", "web"]);
        let Value::Object(mut spec) = json!({"EndpointSpec": {"Mode": "vip", "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}})
        else {
            panic!()
        };
        update_spec(&a, &mut spec).unwrap();
        assert_eq!(
            Value::Object(spec)["EndpointSpec"]["Ports"],
            json!([{"Protocol": "tcp", "TargetPort": 90, "PublishedPort": 9090, "PublishMode": "ingress"}])
        );
    }

    #[test]
    fn images_as_docker_shows_them() {
        assert_eq!(display_image("fixture/app:1"), "fixture/app:1");
        assert_eq!(display_image("fixture/app:1@sha256:abcd"), "fixture/app:1");
        assert_eq!(
            display_image("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(display_image("busybox@sha256:abcd"), "busybox@sha256:abcd");
        assert_eq!(
            display_image("localhost:5000/x@sha256:ab"),
            "localhost:5000/x@sha256:ab"
        );
        assert_eq!(display_image("localhost:5000/x"), "localhost:5000/x");
    }

    #[test]
    fn service_rows() {
        let s = json!({
            "ID": "abcdefghijklmnopqrstuvwxy",
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 2}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "fixture/app:1@sha256:00"}}},
            "ServiceStatus": {"RunningTasks": 1, "DesiredTasks": 2},
        });
        let fmt =
            ListFormat::parse(&service_format("", false), SERVICE_TABLE, SERVICE_FIELDS).unwrap();
        assert_eq!(
            fmt.render(&[service_row(&s)], SERVICE_FIELDS).unwrap(),
            "ID             NAME      MODE         REPLICAS   IMAGE           PORTS\n\
             abcdefghijkl   web       replicated   1/2        fixture/app:1   \n"
        );
        assert_eq!(service_format("", true), "{{.ID}}");
        let g = json!({"ID": "x", "Spec": {"Name": "g", "Mode": {"Global": {}}}});
        assert_eq!(service_row(&g)["Mode"], "global");
        assert_eq!(service_row(&g)["Replicas"], "0/0");
    }

    #[test]
    fn task_rows_as_docker_prints_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let task = |id: &str, slot: u64, created: &str, state: &str, desired: &str, err: &str| {
            json!({
                "ID": id, "ServiceID": "svc1", "Slot": slot, "NodeID": "node1",
                "CreatedAt": created, "DesiredState": desired,
                "Spec": {"ContainerSpec": {"Image": "fixture/app:1@sha256:00"}},
                "Status": {"State": state, "Timestamp": "2024-01-01T00:00:55Z", "Err": err},
            })
        };
        let tasks = vec![
            task(
                "old00000000000000000000000",
                1,
                "2024-01-01T00:00:01Z",
                "failed",
                "shutdown",
                "task: non-zero exit (1): a long explanation",
            ),
            task(
                "two00000000000000000000000",
                2,
                "2024-01-01T00:00:02Z",
                "running",
                "running",
                "",
            ),
            task(
                "new00000000000000000000000",
                1,
                "2024-01-01T00:00:03Z",
                "running",
                "running",
                "",
            ),
        ];
        let services = HashMap::from([("svc1".to_string(), "web".to_string())]);
        let nodes = HashMap::from([("node1".to_string(), "host-a".to_string())]);
        let rows = task_rows(&tasks, &services, &nodes, true, true, now);
        let fmt = ListFormat::parse(TASK_TABLE, TASK_TABLE, TASK_FIELDS).unwrap();
        assert_eq!(
            fmt.render(&rows, TASK_FIELDS).unwrap(),
            "ID             NAME        IMAGE           NODE      DESIRED STATE   CURRENT STATE           ERROR                              PORTS\n\
             new000000000   web.1       fixture/app:1   host-a    Running         Running 5 seconds ago                                      \n\
             old000000000    \\_ web.1   fixture/app:1   host-a    Shutdown        Failed 5 seconds ago    \"task: non-zero exit (1): a lo…\"   \n\
             two000000000   web.2       fixture/app:1   host-a    Running         Running 5 seconds ago                                      \n"
        );
        let plain = task_rows(&tasks, &HashMap::new(), &HashMap::new(), false, false, now);
        assert_eq!(plain[1]["Name"], "svc1.1");
        assert_eq!(plain[1]["Node"], "node1");
        assert_eq!(plain[0]["Image"], "fixture/app:1@sha256:00");
    }

    #[test]
    fn waits_give_up_on_tasks_that_keep_failing() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Failing again and again: a minute after the first failure.
        let mut f = Failures::default();
        assert!(!f.give_up(at(100)));
        for s in (0..=60).step_by(5) {
            f.failed(at(s));
        }
        assert!(!f.give_up(at(59)));
        assert!(f.give_up(at(60)));
        // One failure, then progress: no.
        let mut f = Failures::default();
        f.failed(at(0));
        f.stalled(false, at(1));
        assert!(!f.give_up(at(90)));
        // One failure and nothing restarts it (restart condition none): a minute later.
        let mut f = Failures::default();
        f.failed(at(0));
        f.stalled(true, at(1));
        assert!(!f.give_up(at(60)));
        assert!(f.give_up(at(61)));
    }

    #[test]
    fn slot_choice_prefers_the_task_meant_to_run() {
        let t = |id: &str, slot: u64, desired: &str, state: &str| json!({"ID": id, "Slot": slot, "DesiredState": desired, "Status": {"State": state}});
        let tasks = vec![
            t("a", 1, "shutdown", "running"),
            t("b", 1, "running", "starting"),
            t("c", 2, "running", "running"),
            t("d", 2, "running", "failed"),
        ];
        let by = tasks_by_slot(&tasks, false);
        let ids: Vec<&str> = by.values().map(|t| id_of(t)).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn states_and_durations_worded_like_docker() {
        assert_eq!(pretty_state("running"), "Running");
        assert_eq!(pretty_state("SHUTDOWN"), "Shutdown");
        assert_eq!(pretty_state(""), "");
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(5_000_000_000), "5s");
        assert_eq!(go_duration_string(90_000_000_000), "1m30s");
        assert_eq!(go_duration_string(200_000_000), "200ms");
        assert_eq!(go_duration_string(1_500), "1.5µs");
        assert_eq!(go_duration_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration_string(1_500_000_000), "1.5s");
    }

    #[test]
    fn pretty_shows_the_main_fields() {
        let s = json!({
            "ID": "abc",
            "Spec": {"Name": "web", "Labels": {"tier": "front"},
                     "Mode": {"Replicated": {"Replicas": 2}},
                     "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause",
                                      "Monitor": 5_000_000_000i64, "MaxFailureRatio": 0,
                                      "Order": "stop-first"},
                     "TaskTemplate": {"ContainerSpec": {"Image": "fixture/app:1",
                                                        "Args": ["sleep 1000"]},
                                      "Resources": {"Limits": {"MemoryBytes": 67_108_864}}}},
            "Endpoint": {"Spec": {"Mode": "vip"}},
        });
        let p = pretty(&s);
        assert!(p.contains("Name:\t\tweb\n"), "{p}");
        assert!(p.contains("Labels:\n tier=front\n"), "{p}");
        assert!(p.contains(" Replicas:\t2\n"), "{p}");
        assert!(p.contains(" Monitoring Period: 5s\n"), "{p}");
        assert!(p.contains(" Args:\t\tsleep 1000 \n"), "{p}");
        assert!(p.contains("  Memory:\t64MiB\n"), "{p}");
        assert!(p.ends_with("Endpoint Mode:\tvip\n"), "{p}");
    }

    #[test]
    fn verbs_parse() {
        assert!(matches!(
            parse(&["swarm", "init", "--advertise-addr", "127.0.0.1"]),
            super::super::Verb::Swarm(SwarmVerb::Init(ref a)) if a.advertise_addr.as_deref() == Some("127.0.0.1") && a.listen_addr == "0.0.0.0:2377"
        ));
        assert!(matches!(
            parse(&["swarm", "leave", "-f"]),
            super::super::Verb::Swarm(SwarmVerb::Leave(ref a)) if a.force
        ));
        assert!(matches!(
            parse(&["service", "scale", "-d", "a=1", "b=2"]),
            super::super::Verb::Service(ServiceVerb::Scale(ref a)) if a.detach && a.scales.len() == 2
        ));
        assert!(matches!(
            parse(&["service", "ps", "--no-trunc", "-q", "--filter", "desired-state=running", "web"]),
            super::super::Verb::Service(ServiceVerb::Ps(ref a)) if a.no_trunc && a.quiet && a.filters.len() == 1
        ));
        assert!(matches!(
            parse(&["service", "list", "-q"]),
            super::super::Verb::Service(ServiceVerb::Ls(ref a)) if a.quiet
        ));
        assert!(matches!(
            parse(&["service", "remove", "a", "b"]),
            super::super::Verb::Service(ServiceVerb::Rm(ref a)) if a.services.len() == 2
        ));
        assert!(matches!(
            parse(&["service", "rollback", "-d", "web"]),
            super::super::Verb::Service(ServiceVerb::Rollback(ref a)) if a.wait.detach
        ));
        assert!(matches!(
            parse(&["service", "inspect", "--pretty", "web"]),
            super::super::Verb::Service(ServiceVerb::Inspect(ref a)) if a.pretty
        ));
        let u = update_args(&["--args", "-x y", "-d", "web"]);
        assert_eq!(u.args.as_deref(), Some("-x y"));
        assert!(u.wait.detach);
    }
}
