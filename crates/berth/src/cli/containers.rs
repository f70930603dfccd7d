//! The container verbs besides create/run/start/attach/exec: `ps`, `stop`, `restart`,
//! `kill`, `rm`, `wait`, `rename`, `pause`, `unpause`, `update`, `logs`, `top`,
//! `stats`, `container prune`, `events` and `cp`, printing what the docker CLI prints.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal as _;

use anyhow::{bail, Context as _};
use clap::Args;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::opts;
use super::run::{inspect_lite, resources, wait_status, Resources};
use super::stdio;
use crate::client::{empty, path_escape, read_all, Client, Lines, Query};
use crate::format::{self, tabwriter::TabWriter, units, Fields, ListFormat, Mode, Template};

/// Runs `f` for each container in turn; prints the name as given for each success and
/// reports the errors together at the end (exit status 1), as the docker CLI does.
pub async fn each<F, Fut>(names: &[String], f: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut errors = Vec::new();
    for n in names {
        match f(n.clone()).await {
            Ok(()) => super::out(&format!("{n}\n"))?,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

fn cpath(name: &str, rest: &str) -> String {
    format!("/containers/{}{rest}", path_escape(name))
}

// ---------------------------------------------------------------------------- ps

#[derive(Debug, Args)]
#[command(about = "List containers")]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long)]
    pub format: Option<String>,
}

/// A row of `GET /containers/json`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSummary {
    pub id: String,
    #[serde(deserialize_with = "super::list::null_vec")]
    pub names: Vec<String>,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    pub created: i64,
    pub ports: Option<Vec<PortSummary>>,
    pub size_rw: i64,
    pub size_root_fs: i64,
    pub labels: Option<BTreeMap<String, String>>,
    pub state: String,
    pub status: String,
    pub mounts: Option<Vec<MountPoint>>,
    pub network_settings: Option<NetworkSettings>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortSummary {
    #[serde(rename = "IP")]
    pub ip: String,
    pub private_port: u16,
    pub public_port: u16,
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    pub name: String,
    pub source: String,
    pub driver: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkSettings {
    pub networks: Option<BTreeMap<String, Value>>,
}

pub const CONTAINER_FIELDS: Fields = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Platform", "PLATFORM"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("Size", "SIZE"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];

const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// docker's `NewContainerFormat`.
fn ps_format(source: &str, quiet: bool, size: bool) -> String {
    match source {
        "" | "table" if quiet => "{{.ID}}".into(),
        "" | "table" if size => format!("{PS_TABLE}\t{{{{.Size}}}}"),
        "" | "table" => PS_TABLE.into(),
        "raw" if quiet => "container_id: {{.ID}}".into(),
        "raw" => {
            let mut f = "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n".to_string();
            if size {
                f.push_str("size: {{.Size}}\\n");
            }
            f
        }
        _ if quiet => "{{.ID}}".into(),
        other => other.into(),
    }
}

/// docker's `DisplayablePorts`: `0.0.0.0:8080->80/tcp, 9000-9001/tcp`.
pub fn displayable_ports(ports: &[PortSummary]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_by(|a, b| {
        (a.private_port, &a.ip, a.public_port, &a.kind).cmp(&(
            b.private_port,
            &b.ip,
            b.public_port,
            &b.kind,
        ))
    });
    let mut groups: BTreeMap<String, (u16, u16)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    let join = |ip: &str, port: String| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let form = |key: &str, first: u16, last: u16| -> String {
        let (ip, kind) = match key.rsplit_once('/') {
            Some((ip, k)) => (ip.to_string(), k.to_string()),
            None => (String::new(), key.to_string()),
        };
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{}->{g}", join(&ip, g.clone()));
        }
        format!("{g}/{kind}")
    };
    for p in &ports {
        let mut key = p.kind.clone();
        if !p.ip.is_empty() {
            if p.public_port != p.private_port {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join(&p.ip, p.public_port.to_string()),
                    p.private_port,
                    p.kind
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.kind);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key.clone(), (p.private_port, p.private_port));
                order.push(key);
            }
            Some(g) if p.private_port == g.1.wrapping_add(1) => g.1 = p.private_port,
            Some(g) => {
                result.push(form(&key, g.0, g.1));
                *g = (p.private_port, p.private_port);
            }
        }
    }
    for k in &order {
        if let Some((a, b)) = groups.get(k) {
            result.push(form(k, *a, *b));
        }
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// Go's `strconv.Quote` for the command column.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The image column: the familiar name, the digest dropped (docker's `Image()`).
fn image_column(c: &ContainerSummary, trunc: bool) -> String {
    if c.image.is_empty() {
        return "<no image>".into();
    }
    if !trunc {
        return c.image.clone();
    }
    let t = format::truncate_id(&c.image_id);
    if t == format::truncate_id(&c.image) {
        return t;
    }
    let name = match c.image.split_once('@') {
        Some((n, _)) => n,
        None => c.image.as_str(),
    };
    super::list::familiar(name)
}

/// The template data of one `ps` row (docker's `ContainerContext`).
pub fn ps_row(c: &ContainerSummary, trunc: bool, now: chrono::DateTime<chrono::Utc>) -> Value {
    let names = if trunc {
        c.names
            .iter()
            .map(|n| n.trim_start_matches('/'))
            .find(|n| !n.contains('/'))
            .unwrap_or("")
            .to_string()
    } else {
        c.names
            .iter()
            .map(|n| n.trim_start_matches('/'))
            .collect::<Vec<_>>()
            .join(",")
    };
    let command = if trunc {
        format::ellipsis(&c.command, 20)
    } else {
        c.command.clone()
    };
    let mut labels: Vec<String> = c
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let n = if m.name.is_empty() {
                &m.source
            } else {
                &m.name
            };
            if trunc {
                format::ellipsis(n, 15)
            } else {
                n.clone()
            }
        })
        .collect();
    let local = c
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.driver == "local")
        .count();
    let networks: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    let srw = units::human_size_with_precision(c.size_rw as f64, 3);
    let size = if c.size_root_fs > 0 {
        format!(
            "{srw} (virtual {})",
            units::human_size_with_precision(c.size_root_fs as f64, 3)
        )
    } else {
        srw
    };
    let id = if trunc {
        format::truncate_id(&c.id)
    } else {
        c.id.clone()
    };
    json!({
        "Command": go_quote(&command),
        "CreatedAt": units::go_time_string(c.created),
        "ID": id,
        "Image": image_column(c, trunc),
        "Labels": labels.join(","),
        "LocalVolumes": local.to_string(),
        "Mounts": mounts.join(","),
        "Names": names,
        "Networks": networks.join(","),
        "Platform": Value::Null,
        "Ports": displayable_ports(c.ports.as_deref().unwrap_or_default()),
        "RunningFor": units::since(c.created, now),
        "Size": size,
        "State": c.state,
        "Status": c.status,
    })
}

pub async fn ps(client: &Client, args: PsArgs) -> anyhow::Result<()> {
    let source = args.format.as_deref().unwrap_or("");
    let format = ps_format(source, args.quiet, args.size);
    let size = args.size || format.contains(".Size");
    let fmt = ListFormat::parse(&format, PS_TABLE, CONTAINER_FIELDS)?;
    let limit = if args.latest && args.last == -1 {
        1
    } else {
        args.last
    };
    let q = Query::new("/containers/json")
        .flag("all", args.all)
        .opt("limit", (limit > 0).then(|| limit.to_string()).as_deref())
        .flag("size", size)
        .opt("filters", format::filters_json(&args.filters)?.as_deref());
    let list: Vec<ContainerSummary> = client.get_json(&q.build()).await?;
    let now = chrono::Utc::now();
    let rows: Vec<Value> = list
        .iter()
        .map(|c| ps_row(c, !args.no_trunc, now))
        .collect();
    super::out(&fmt.render(&rows, CONTAINER_FIELDS)?)
}

// ------------------------------------------------------------------ lifecycle verbs

#[derive(Debug, Args)]
#[command(about = "Stop one or more running containers")]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long, visible_alias = "time", allow_negative_numbers = true)]
    pub timeout: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub async fn stop(client: &Client, args: StopArgs, restart: bool) -> anyhow::Result<()> {
    let verb = if restart { "/restart" } else { "/stop" };
    let (sig, t) = (args.signal.clone(), args.timeout);
    each(&args.containers, |name| {
        let q = Query::new(cpath(&name, verb))
            .opt("signal", sig.as_deref())
            .opt("t", t.map(|t| t.to_string()).as_deref())
            .build();
        async move { client.post(&q, empty(), None).await.map(|_| ()) }
    })
    .await
}

#[derive(Debug, Args)]
#[command(about = "Kill one or more running containers")]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub async fn kill(client: &Client, args: KillArgs) -> anyhow::Result<()> {
    let sig = args.signal.clone();
    each(&args.containers, |name| {
        let q = Query::new(cpath(&name, "/kill"))
            .opt("signal", sig.as_deref())
            .build();
        async move { client.post(&q, empty(), None).await.map(|_| ()) }
    })
    .await
}

#[derive(Debug, Args)]
#[command(about = "Remove one or more containers")]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in &args.containers {
        let trimmed = name.trim_matches('/');
        if trimmed.is_empty() {
            errors.push("Container name cannot be empty".to_string());
            continue;
        }
        let q = Query::new(cpath(trimmed, ""))
            .flag("v", args.volumes)
            .flag("link", args.link)
            .flag("force", args.force)
            .build();
        match client.request(Method::DELETE, &q, empty(), None).await {
            Ok(_) => super::out(&format!("{name}\n"))?,
            Err(e) => {
                let not_found = e
                    .downcast_ref::<crate::client::ApiError>()
                    .is_some_and(|a| a.status == hyper::StatusCode::NOT_FOUND);
                if args.force && not_found {
                    // docker: with --force, a container that does not exist is reported
                    // but is not a failure.
                    eprintln!("{e}");
                } else {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Pause all processes within one or more containers")]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `pause` / `unpause`.
pub async fn pause(client: &Client, args: NamesArgs, verb: &str) -> anyhow::Result<()> {
    each(&args.containers, |name| {
        let p = cpath(&name, verb);
        async move { client.post(&p, empty(), None).await.map(|_| ()) }
    })
    .await
}

/// `wait`: prints each container's exit code.
pub async fn wait(client: &Client, args: NamesArgs) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in &args.containers {
        let r = async {
            let resp = client.post(&cpath(name, "/wait"), empty(), None).await?;
            wait_status(&read_all(resp).await?)
        }
        .await;
        match r {
            Ok(code) => super::out(&format!("{code}\n"))?,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Rename a container")]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

pub async fn rename(client: &Client, args: RenameArgs) -> anyhow::Result<()> {
    let old = args.container.trim();
    let new = args.new_name.trim();
    if old.is_empty() || new.is_empty() {
        bail!("Error: Neither old nor new names may be empty");
    }
    let q = Query::new(cpath(old, "/rename")).arg("name", new).build();
    client
        .post(&q, empty(), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nError: failed to rename container named {old}"))?;
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Update configuration of one or more containers")]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub async fn update(client: &Client, args: UpdateArgs) -> anyhow::Result<()> {
    let mut body = resources(
        &Resources {
            memory: &args.memory,
            memory_swap: &args.memory_swap,
            memory_reservation: &args.memory_reservation,
            cpus: args.cpus,
            cpu_shares: args.cpu_shares,
            cpu_period: args.cpu_period,
            cpu_quota: args.cpu_quota,
            cpuset_cpus: &args.cpuset_cpus,
            cpuset_mems: &args.cpuset_mems,
            pids_limit: args.pids_limit,
            blkio_weight: args.blkio_weight,
        },
        false,
    )?;
    if let Some(r) = &args.restart {
        body.insert("RestartPolicy".into(), opts::restart_policy(r)?);
    }
    if body.is_empty() {
        bail!("you must provide one or more flags when using this command");
    }
    let body = Value::Object(body);
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Updated {
        #[serde(deserialize_with = "super::list::null_vec")]
        warnings: Vec<String>,
    }
    each(&args.containers, |name| {
        let body = &body;
        async move {
            let resp = client.post_body(&cpath(&name, "/update"), body).await?;
            let u: Updated = serde_json::from_slice(&read_all(resp).await?).unwrap_or_default();
            for w in u.warnings {
                eprintln!("{w}");
            }
            Ok(())
        }
    })
    .await
}

// -------------------------------------------------------------------------- logs

#[derive(Debug, Args)]
#[command(about = "Fetch the logs of a container")]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m"
    /// for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g.
    /// "42m" for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let c = inspect_lite(client, &args.container).await?;
    let now = chrono::Utc::now();
    let since = args
        .since
        .as_deref()
        .map(|s| opts::timestamp(s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| opts::timestamp(s, now))
        .transpose()?;
    let q = Query::new(cpath(&args.container, "/logs"))
        .flag("stdout", true)
        .flag("stderr", true)
        .opt("since", since.as_deref())
        .opt("until", until.as_deref())
        .flag("timestamps", args.timestamps)
        .flag("details", args.details)
        .flag("follow", args.follow)
        .arg("tail", args.tail.clone())
        .build();
    let resp = client.get(&q).await?;
    stdio::copy_output(stdio::body_reader(resp.into_body()), c.config.tty).await
}

// --------------------------------------------------------------------------- top

#[derive(Debug, Args)]
#[command(about = "Display the running processes of a container")]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Options for ps
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ps OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

pub async fn top(client: &Client, args: TopArgs) -> anyhow::Result<()> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Top {
        titles: Vec<String>,
        processes: Option<Vec<Vec<String>>>,
    }
    let q = Query::new(cpath(&args.container, "/top"))
        .opt("ps_args", Some(args.ps_args.join(" ").as_str()))
        .build();
    let t: Top = client.get_json(&q).await?;
    let mut text = t.titles.join("\t");
    text.push('\n');
    for p in t.processes.unwrap_or_default() {
        text.push_str(&p.join("\t"));
        text.push('\n');
    }
    let tw = TabWriter {
        minwidth: 20,
        padding: 3,
    };
    super::out(&tw.format(&text))
}

// ------------------------------------------------------------------------- stats

#[derive(Debug, Args)]
#[command(about = "Display a live stream of container(s) resource usage statistics")]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long)]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub const STATS_FIELDS: Fields = &[
    ("BlockIO", "BLOCK I/O"),
    ("CPUPerc", "CPU %"),
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("MemPerc", "MEM %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("Name", "NAME"),
    ("NetIO", "NET I/O"),
    ("PIDs", "PIDS"),
];

const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or(0.0)
}

/// One row of `docker stats` from a stats sample, computed as the docker CLI does.
pub fn stats_row(container: &str, s: &Value, trunc: bool) -> Value {
    let cpu_delta = num(s, &["cpu_stats", "cpu_usage", "total_usage"])
        - num(s, &["precpu_stats", "cpu_usage", "total_usage"]);
    let sys_delta =
        num(s, &["cpu_stats", "system_cpu_usage"]) - num(s, &["precpu_stats", "system_cpu_usage"]);
    let mut online = num(s, &["cpu_stats", "online_cpus"]);
    if online == 0.0 {
        online = s["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0);
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let usage = num(s, &["memory_stats", "usage"]);
    let stats = &s["memory_stats"]["stats"];
    let inactive = stats
        .get("total_inactive_file")
        .or_else(|| stats.get("inactive_file"))
        .and_then(Value::as_f64);
    let mem = match inactive {
        Some(i) if i < usage => usage - i,
        _ => usage,
    };
    let limit = num(s, &["memory_stats", "limit"]);
    let mem_perc = if limit != 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(n) = s["networks"].as_object() {
        for v in n.values() {
            rx += num(v, &["rx_bytes"]);
            tx += num(v, &["tx_bytes"]);
        }
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let op = e["op"].as_str().unwrap_or("").to_ascii_lowercase();
        if op.starts_with('r') {
            rd += num(e, &["value"]);
        } else if op.starts_with('w') {
            wr += num(e, &["value"]);
        }
    }
    let id = s["id"].as_str().unwrap_or("");
    let name = s["name"].as_str().unwrap_or("").trim_start_matches('/');
    let h = |x: f64| units::human_size_with_precision(x, 3);
    format::row(&[
        ("BlockIO", format!("{} / {}", h(rd), h(wr))),
        ("CPUPerc", format!("{cpu:.2}%")),
        ("Container", container.to_string()),
        (
            "ID",
            if trunc {
                format::truncate_id(id)
            } else {
                id.to_string()
            },
        ),
        ("MemPerc", format!("{mem_perc:.2}%")),
        (
            "MemUsage",
            format!("{} / {}", units::bytes_size(mem), units::bytes_size(limit)),
        ),
        ("Name", name.to_string()),
        ("NetIO", format!("{} / {}", h(rx), h(tx))),
        (
            "PIDs",
            format!("{}", num(s, &["pids_stats", "current"]) as u64),
        ),
    ])
}

pub async fn stats(client: &Client, args: StatsArgs) -> anyhow::Result<()> {
    let format = match args.format.as_deref() {
        None | Some("") | Some("table") => STATS_TABLE,
        Some(f) => f,
    };
    let fmt = ListFormat::parse(format, STATS_TABLE, STATS_FIELDS)?;
    loop {
        let names: Vec<String> = if args.containers.is_empty() {
            let q = Query::new("/containers/json").flag("all", args.all).build();
            let list: Vec<ContainerSummary> = client.get_json(&q).await?;
            list.iter().map(|c| format::truncate_id(&c.id)).collect()
        } else {
            args.containers.clone()
        };
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for n in &names {
            let q = Query::new(cpath(n, "/stats")).arg("stream", "0").build();
            match client.get_json::<Value>(&q).await {
                Ok(s) => rows.push(stats_row(n, &s, !args.no_trunc)),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() && !args.containers.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        let text = fmt.render(&rows, STATS_FIELDS)?;
        if args.no_stream {
            return super::out(&text);
        }
        // A live view: clear the screen and redraw, as docker does on a terminal.
        super::out(&format!("\x1b[2J\x1b[H{text}"))?;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

// ------------------------------------------------------------------------- prune

#[derive(Debug, Args)]
#[command(about = "Remove all stopped containers")]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

pub async fn prune(client: &Client, args: PruneArgs) -> anyhow::Result<()> {
    if !args.force {
        let warning =
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?";
        let answer = tokio::task::spawn_blocking(move || super::manage::confirm(warning)).await??;
        if !answer {
            return Ok(());
        }
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Report {
        containers_deleted: Option<Vec<String>>,
        space_reclaimed: u64,
    }
    let q = Query::new("/containers/prune")
        .opt("filters", format::filters_json(&args.filters)?.as_deref())
        .build();
    let report: Report = client.post_json(&q).await?;
    let deleted = report.containers_deleted.unwrap_or_default();
    let mut space = 0;
    if !deleted.is_empty() {
        let mut out = "Deleted Containers:\n".to_string();
        for id in &deleted {
            out.push_str(id);
            out.push('\n');
        }
        super::out(&format!("{out}\n"))?;
        space = report.space_reclaimed;
    }
    super::out(&format!(
        "Total reclaimed space: {}\n",
        units::human_size(space as f64)
    ))
}

// ------------------------------------------------------------------------ events

#[derive(Debug, Args)]
#[command(about = "Get real time events from the server")]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output using a custom template: 'json' or a Go-template
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

/// An event in Go's field order and names of `events.Message` JSON (for `json`), and
/// with Go's field names (for templates: `{{.Actor.ID}}`, `{{.Status}}`).
fn event_values(e: &Value) -> (Value, Value) {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let attrs: BTreeMap<String, Value> = e["Actor"]["Attributes"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut wire = Map::new();
    for (k, v) in [
        ("status", s("status")),
        ("id", s("id")),
        ("from", s("from")),
    ] {
        if !v.is_empty() {
            wire.insert(k.into(), json!(v));
        }
    }
    wire.insert("Type".into(), json!(s("Type")));
    wire.insert("Action".into(), json!(s("Action")));
    wire.insert(
        "Actor".into(),
        json!({ "ID": e["Actor"]["ID"].as_str().unwrap_or(""), "Attributes": attrs }),
    );
    wire.insert("scope".into(), json!(s("scope")));
    wire.insert("time".into(), e["time"].clone());
    wire.insert("timeNano".into(), e["timeNano"].clone());
    let go = json!({
        "Status": s("status"),
        "ID": s("id"),
        "From": s("from"),
        "Type": s("Type"),
        "Action": s("Action"),
        "Actor": { "ID": e["Actor"]["ID"].as_str().unwrap_or(""), "Attributes": attrs },
        "Scope": s("scope"),
        "Time": e["time"].clone(),
        "TimeNano": e["timeNano"].clone(),
    });
    (Value::Object(wire), go)
}

/// Go's `RFC3339NanoFixed` in the local zone.
fn rfc3339_nano_fixed(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    let (t, _) = units::local_time(secs);
    let zone = if t.offset().local_minus_utc() == 0 {
        "Z".to_string()
    } else {
        t.format("%:z").to_string()
    };
    format!("{}.{sub:09}{zone}", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// docker's default event line.
pub fn event_line(e: &Value) -> String {
    let mut out = String::new();
    let nano = e["timeNano"].as_i64().unwrap_or(0);
    let secs = e["time"].as_i64().unwrap_or(0);
    if nano != 0 {
        out.push_str(&rfc3339_nano_fixed(nano));
        out.push(' ');
    } else if secs != 0 {
        out.push_str(&rfc3339_nano_fixed(secs * 1_000_000_000));
        out.push(' ');
    }
    out.push_str(&format!(
        "{} {} {}",
        e["Type"].as_str().unwrap_or(""),
        e["Action"].as_str().unwrap_or(""),
        e["Actor"]["ID"].as_str().unwrap_or("")
    ));
    if let Some(attrs) = e["Actor"]["Attributes"].as_object() {
        if !attrs.is_empty() {
            let mut kv: Vec<(&String, &Value)> = attrs.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            out.push_str(&format!(" ({})", parts.join(", ")));
        }
    }
    out.push('\n');
    out
}

pub async fn events(client: &Client, args: EventsArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let since = args
        .since
        .as_deref()
        .map(|s| opts::timestamp(s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| opts::timestamp(s, now))
        .transpose()?;
    let json_out = matches!(args.format.as_deref(), Some("json") | Some("{{json .}}"));
    let template = match args.format.as_deref() {
        None | Some("") => None,
        Some(_) if json_out => None,
        Some(f) => Some(Template::parse(f)?),
    };
    let q = Query::new("/events")
        .opt("since", since.as_deref())
        .opt("until", until.as_deref())
        .opt("filters", format::filters_json(&args.filters)?.as_deref())
        .build();
    let mut lines = Lines::new(client.get(&q).await?);
    while let Some(line) = lines.next_line().await? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let e: Value = serde_json::from_slice(&line).context("the daemon's event is not JSON")?;
        if let Some(msg) = e.get("message").and_then(Value::as_str) {
            if e.get("Type").is_none() {
                bail!("{msg}");
            }
        }
        let (wire, go) = event_values(&e);
        let text = if json_out {
            format!("{}\n", format::template::to_json(&wire))
        } else if let Some(t) = &template {
            format!("{}\n", t.render(&go, Mode::Lenient)?)
        } else {
            event_line(&e)
        };
        super::out(&text)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------- cp

#[derive(Debug, Args)]
#[command(
    about = "Copy files/folders between a container and the local filesystem",
    long_about = "Copy files/folders between a container and the local filesystem\n\n\
                  Use '-' as the source to read a tar archive from stdin and extract it to a \
                  directory destination in a container.\nUse '-' as the destination to stream \
                  a tar archive of a container source to stdout."
)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "SRC")]
    pub src: String,
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `CONTAINER:PATH` (a local path never splits: `./a:b`, `/a:b`).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

/// The stat of a path in a container (`X-Docker-Container-Path-Stat`).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct PathStat {
    mode: u32,
}

impl PathStat {
    fn is_dir(&self) -> bool {
        // Go's os.ModeDir.
        self.mode & (1 << 31) != 0
    }
}

async fn stat_in_container(
    client: &Client,
    container: &str,
    path: &str,
) -> anyhow::Result<Option<PathStat>> {
    let q = Query::new(cpath(container, "/archive"))
        .arg("path", path)
        .build();
    match client.request(Method::HEAD, &q, empty(), None).await {
        Ok(resp) => {
            let Some(h) = resp.headers().get("X-Docker-Container-Path-Stat") else {
                return Ok(Some(PathStat::default()));
            };
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(h.as_bytes())
                .context("the daemon's path stat is not base64")?;
            Ok(Some(serde_json::from_slice(&raw).unwrap_or_default()))
        }
        Err(e)
            if e.downcast_ref::<crate::client::ApiError>()
                .is_some_and(|a| a.status == hyper::StatusCode::NOT_FOUND) =>
        {
            // HEAD answers carry no body: a 404 is "no such path" (or container, which
            // the copy itself then reports).
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub async fn cp(client: &Client, args: CpArgs) -> anyhow::Result<()> {
    match (split_cp_arg(&args.src), split_cp_arg(&args.dest)) {
        ((Some(_), _), (Some(_), _)) => {
            bail!("copying between containers is not supported")
        }
        ((None, _), (None, _)) => {
            bail!("must specify at least one container source")
        }
        ((Some(c), path), (None, dest)) => {
            if args.follow_link {
                bail!("-L/--follow-link with a container source is not supported yet by berth");
            }
            let n = copy_from(client, c, path, dest).await?;
            if !args.quiet && dest != "-" && std::io::stderr().is_terminal() {
                eprintln!(
                    "Successfully copied {} to {dest}",
                    units::human_size(n as f64)
                );
            }
            Ok(())
        }
        ((None, src), (Some(c), path)) => {
            let n = copy_to(client, src, c, path, args.follow_link, args.archive).await?;
            if !args.quiet && src != "-" && std::io::stderr().is_terminal() {
                eprintln!(
                    "Successfully copied {} to {c}:{path}",
                    units::human_size(n as f64)
                );
            }
            Ok(())
        }
    }
}

async fn copy_from(
    client: &Client,
    container: &str,
    path: &str,
    dest: &str,
) -> anyhow::Result<u64> {
    let q = Query::new(cpath(container, "/archive"))
        .arg("path", path)
        .build();
    let resp = client.get(&q).await?;
    if dest == "-" {
        let mut r = stdio::body_reader(resp.into_body());
        let mut out = tokio::io::stdout();
        return tokio::io::copy(&mut r, &mut out)
            .await
            .map_err(super::stdout_error);
    }
    let bytes = read_all(resp).await?;
    let n = bytes.len() as u64;
    let dest = std::path::PathBuf::from(dest);
    tokio::task::spawn_blocking(move || extract_to(&bytes, &dest)).await??;
    Ok(n)
}

/// Extracts the archive of a container path to `dest`: into it when it is a directory,
/// else as `dest` itself (the archive's top entry renamed), as `docker cp` does.
fn extract_to(archive: &[u8], dest: &std::path::Path) -> anyhow::Result<()> {
    let (dir, rename_to) = if dest.is_dir() {
        (dest.to_path_buf(), None)
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            bail!(
                "invalid output path: directory {:?} does not exist",
                parent.display().to_string()
            );
        }
        let name = dest.file_name().ok_or_else(|| {
            anyhow::anyhow!("invalid output path {:?}", dest.display().to_string())
        })?;
        (parent.to_path_buf(), Some(name.to_os_string()))
    };
    let mut ar = tar::Archive::new(archive);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut root: Option<std::ffi::OsString> = None;
    for entry in ar.entries().context("reading the container's archive")? {
        let mut entry = entry.context("reading the container's archive")?;
        let path = entry
            .path()
            .context("an archive entry's path")?
            .into_owned();
        let mut comps = path.components();
        let first = match comps.next() {
            Some(std::path::Component::Normal(f)) => f.to_os_string(),
            _ => bail!(
                "the container's archive has an entry outside its root: {}",
                path.display()
            ),
        };
        if root.is_none() {
            root = Some(first.clone());
        }
        let target = match &rename_to {
            Some(new) if Some(&first) == root.as_ref() => {
                let rest = comps.as_path();
                if rest.as_os_str().is_empty() {
                    std::path::PathBuf::from(new)
                } else {
                    std::path::PathBuf::from(new).join(rest)
                }
            }
            _ => path.clone(),
        };
        // Parents come first in the archive; nothing is created outside `dir`.
        if !entry
            .unpack_in_raw(&dir, &target)
            .with_context(|| format!("extracting {}", target.display()))?
        {
            bail!(
                "the container's archive entry {} escapes the destination",
                path.display()
            );
        }
    }
    Ok(())
}

trait UnpackInRaw {
    fn unpack_in_raw(
        &mut self,
        dir: &std::path::Path,
        rel: &std::path::Path,
    ) -> std::io::Result<bool>;
}

impl<R: std::io::Read> UnpackInRaw for tar::Entry<'_, R> {
    fn unpack_in_raw(
        &mut self,
        dir: &std::path::Path,
        rel: &std::path::Path,
    ) -> std::io::Result<bool> {
        if rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) {
            return Ok(false);
        }
        // The parent, resolved, must stay inside `dir` (no escape through a symlink
        // an earlier entry made).
        let full = dir.join(rel);
        let parent = full.parent().unwrap_or(dir);
        let canon_dir = dir.canonicalize()?;
        let canon_parent = parent.canonicalize()?;
        if !canon_parent.starts_with(&canon_dir) {
            return Ok(false);
        }
        self.unpack(&full)?;
        Ok(true)
    }
}

async fn copy_to(
    client: &Client,
    src: &str,
    container: &str,
    path: &str,
    follow: bool,
    archive_mode: bool,
) -> anyhow::Result<u64> {
    // As the docker CLI: never replace a directory with a file or the reverse; owners
    // are kept only with -a.
    let put = |dir: &str| {
        Query::new(cpath(container, "/archive"))
            .arg("path", dir)
            .arg("noOverwriteDirNonDir", "true")
            .opt("copyUIDGID", archive_mode.then_some("true"))
            .build()
    };
    if src == "-" {
        // A tar stream from stdin, extracted into the directory `path`.
        let body = crate::client::stream_body(tokio::io::stdin(), |_| {});
        client
            .request(Method::PUT, &put(path), body, Some("application/x-tar"))
            .await?;
        return Ok(0);
    }
    let src_path = std::path::PathBuf::from(src);
    let meta = if follow {
        std::fs::metadata(&src_path)
    } else {
        std::fs::symlink_metadata(&src_path)
    }
    .map_err(|e| anyhow::anyhow!("stat {src}: {}", super::os_message(&e)))?;
    let stat = stat_in_container(client, container, path).await?;
    let src_name = src_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| ".".into());
    // Where the archive goes and what its top entry is called.
    let (dir, name) = match &stat {
        Some(s) if s.is_dir() => (path.to_string(), src_name),
        Some(_) if meta.is_dir() => {
            bail!("cannot copy directory")
        }
        _ => {
            let p = std::path::Path::new(path);
            if path.ends_with('/') && !meta.is_dir() {
                bail!("no such directory");
            }
            let parent = p
                .parent()
                .map(|x| x.to_string_lossy().into_owned())
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "/".into());
            let name = p
                .file_name()
                .map(|n| n.to_os_string())
                .ok_or_else(|| anyhow::anyhow!("invalid destination path {path:?}"))?;
            (parent, name)
        }
    };
    // `dir/.`: the directory's contents, not the directory.
    let contents_only = meta.is_dir() && (src.ends_with("/.") || src == ".");
    let (dir, name) = if contents_only && stat.as_ref().is_some_and(PathStat::is_dir) {
        (path.to_string(), std::ffi::OsString::from("."))
    } else {
        (dir, name)
    };
    let archive = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(follow);
        if meta.is_dir() {
            b.append_dir_all(&name, &src_path)
        } else {
            b.append_path_with_name(&src_path, &name)
        }
        .with_context(|| format!("archiving {}", src_path.display()))?;
        b.into_inner().context("finishing the archive")
    })
    .await??;
    let n = archive.len() as u64;
    client
        .request(
            Method::PUT,
            &put(&dir),
            crate::client::bytes_body(archive),
            Some("application/x-tar"),
        )
        .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_column_is_truncated_and_quoted() {
        let c = ContainerSummary {
            id: "0123456789abcdef0123".into(),
            names: vec!["/web".into()],
            image: "fixture/app:1".into(),
            image_id: "sha256:60531c6e24d2ccf5".into(),
            command: "/bin/sh -c 'echo hello world; sleep 100'".into(),
            created: 0,
            state: "running".into(),
            status: "Up 3 seconds".into(),
            ..Default::default()
        };
        let now = chrono::DateTime::from_timestamp(3, 0).unwrap();
        let r = ps_row(&c, true, now);
        assert_eq!(r["Command"], "\"/bin/sh -c 'echo he…\"");
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["RunningFor"], "3 seconds ago");
        assert_eq!(r["Image"], "fixture/app:1");
        let r = ps_row(&c, false, now);
        assert_eq!(r["Command"], "\"/bin/sh -c 'echo hello world; sleep 100'\"");
    }

    #[test]
    fn ports_as_docker_shows_them() {
        let p = |ip: &str, private, public, kind: &str| PortSummary {
            ip: ip.into(),
            private_port: private,
            public_port: public,
            kind: kind.into(),
        };
        assert_eq!(
            displayable_ports(&[
                p("0.0.0.0", 80, 8080, "tcp"),
                p("", 9000, 0, "tcp"),
                p("", 9001, 0, "tcp")
            ]),
            "9000-9001/tcp, 0.0.0.0:8080->80/tcp"
        );
        assert_eq!(displayable_ports(&[]), "");
    }

    #[test]
    fn event_lines() {
        let e: Value = serde_json::from_str(
            r#"{"status":"start","id":"abc","from":"img","Type":"container","Action":"start",
                "Actor":{"ID":"abc","Attributes":{"name":"web","image":"img"}},
                "scope":"local","time":1767225600,"timeNano":1767225600000000123}"#,
        )
        .unwrap();
        let line = event_line(&e);
        assert!(
            line.ends_with(" container start abc (image=img, name=web)\n"),
            "{line}"
        );
        let (wire, go) = event_values(&e);
        assert_eq!(
            format::template::to_json(&wire),
            r#"{"status":"start","id":"abc","from":"img","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"image":"img","name":"web"}},"scope":"local","time":1767225600,"timeNano":1767225600000000123}"#
        );
        assert_eq!(go["Actor"]["ID"], "abc");
    }

    #[test]
    fn stats_rows() {
        let s: Value = serde_json::from_str(
            r#"{"id":"0123456789abcdef","name":"/web",
                "cpu_stats":{"cpu_usage":{"total_usage":300},"system_cpu_usage":2000,"online_cpus":2},
                "precpu_stats":{"cpu_usage":{"total_usage":100},"system_cpu_usage":1000},
                "memory_stats":{"usage":2097152,"limit":8388608,"stats":{"inactive_file":1048576}},
                "networks":{"eth0":{"rx_bytes":1000,"tx_bytes":2000}},
                "blkio_stats":{"io_service_bytes_recursive":[{"op":"read","value":4096},{"op":"write","value":0}]},
                "pids_stats":{"current":3}}"#,
        )
        .unwrap();
        let r = stats_row("web", &s, true);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "1MiB / 8MiB");
        assert_eq!(r["MemPerc"], "12.50%");
        assert_eq!(r["NetIO"], "1kB / 2kB");
        assert_eq!(r["BlockIO"], "4.1kB / 0B");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["ID"], "0123456789ab");
    }

    #[test]
    fn cp_arguments() {
        assert_eq!(split_cp_arg("web:/etc/x"), (Some("web"), "/etc/x"));
        assert_eq!(split_cp_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn extracts_renamed_and_into_directories() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello.txt", &b"hi"[..]).unwrap();
        let archive = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract_to(&archive, dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("hello.txt")).unwrap(), b"hi");
        extract_to(&archive, &dir.path().join("renamed")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("renamed")).unwrap(), b"hi");
    }
}
