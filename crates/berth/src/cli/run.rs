//! `create`, `run`, `start`, `attach` and `exec`: the create body built from docker's
//! flags as the docker CLI builds it (Config with a HostConfig), a missing image pulled
//! first, and the foreground sequence of `docker run`: create, attach (hijacked), wait
//! (`next-exit`, or `removed` with `--rm`) before start, start, then the container's
//! exit code as ours.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use clap::Args;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::opts;
use super::stdio;
use super::StatusError;
use crate::client::{empty, path_escape, read_all, ApiError, Client, Query};

/// The flags `create` and `run` share (docker's `containerOptions`).
#[derive(Debug, Args, Default)]
pub struct ContainerOpts {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long = "attach", value_name = "STREAM")]
    pub attach: Vec<String>,
    /// Automatically remove the container and its associated anonymous volumes when it
    /// exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long, allow_negative_numbers = true)]
    pub stop_timeout: Option<i64>,
    /// Restart policy to apply when a container exits (no, always, unless-stopped,
    /// on-failure[:max-retries])
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Command to run to check health
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "N")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries
    /// countdown (ms|s|m|h)
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long, value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// What berth does when the container turns unhealthy: none, kill, restart, stop
    /// (berth only; sent as the label berth.health-on-failure)
    #[arg(long, value_name = "ACTION")]
    pub health_on_failure: Option<String>,
    /// Connect a container to a network
    #[arg(long = "network", visible_alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(
        long = "network-alias",
        visible_alias = "net-alias",
        value_name = "ALIAS"
    )]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Set custom DNS servers
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt", value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// PID namespace to use (host: the daemon must allow it)
    #[arg(long, value_name = "MODE")]
    pub pid: Option<String>,
    /// IPC mode to use (private, shareable, host)
    #[arg(long, value_name = "MODE")]
    pub ipc: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long, value_name = "MODE")]
    pub uts: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long, value_name = "MODE")]
    pub cgroupns: Option<String>,
    /// User namespace to use (host, auto, auto:size=N)
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long, value_name = "BYTES")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "DECIMAL")]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps", value_name = "DEV:RATE")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps", value_name = "DEV:RATE")]
    pub device_write_bps: Vec<String>,
    /// Add a host device to the container
    #[arg(long = "device", value_name = "DEV")]
    pub device: Vec<String>,
    /// Ulimit options
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm
    #[arg(long, value_name = "BYTES")]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume", value_name = "[SRC:]DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs", value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// Logging driver for the container (berth: json-file)
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long = "expose", value_name = "PORT")]
    pub expose: Vec<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(about = "Create a new container", disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub image_and_command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    about = "Create and run a new container from an image",
    disable_help_flag = true
)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Proxy received signals to the process
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub image_and_command: Vec<String>,
}

/// The label through which berth's daemon takes `--health-on-failure`.
pub const HEALTH_ON_FAILURE_LABEL: &str = "berth.health-on-failure";

fn nanos(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    let n = opts::go_duration(s)
        .map_err(|e| anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}"))?;
    if n < 0 {
        bail!("--{flag} cannot be negative");
    }
    Ok(Some(n))
}

/// The healthcheck of the create body, as the docker CLI builds it.
fn healthcheck(o: &ContainerOpts) -> anyhow::Result<Option<Value>> {
    let interval = nanos("health-interval", &o.health_interval)?;
    let timeout = nanos("health-timeout", &o.health_timeout)?;
    let start_period = nanos("health-start-period", &o.health_start_period)?;
    let start_interval = nanos("health-start-interval", &o.health_start_interval)?;
    if o.health_retries.is_some_and(|r| r < 0) {
        bail!("--health-retries cannot be negative");
    }
    let any = o.health_cmd.is_some()
        || interval.is_some()
        || timeout.is_some()
        || start_period.is_some()
        || start_interval.is_some()
        || o.health_retries.is_some();
    if o.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(json!({ "Test": ["NONE"] })));
    }
    if !any {
        return Ok(None);
    }
    let mut h = Map::new();
    if let Some(cmd) = &o.health_cmd {
        h.insert("Test".into(), json!(["CMD-SHELL", cmd]));
    }
    h.insert("Interval".into(), json!(interval.unwrap_or(0)));
    h.insert("Timeout".into(), json!(timeout.unwrap_or(0)));
    h.insert("StartPeriod".into(), json!(start_period.unwrap_or(0)));
    h.insert("StartInterval".into(), json!(start_interval.unwrap_or(0)));
    h.insert("Retries".into(), json!(o.health_retries.unwrap_or(0)));
    Ok(Some(Value::Object(h)))
}

fn size(flag: &str, v: &Option<String>) -> anyhow::Result<i64> {
    match v {
        None => Ok(0),
        Some(s) => opts::ram_in_bytes(s)
            .map_err(|e| anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}")),
    }
}

/// The resource fields of HostConfig (shared with `update`).
pub struct Resources<'a> {
    pub memory: &'a Option<String>,
    pub memory_swap: &'a Option<String>,
    pub memory_reservation: &'a Option<String>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: &'a Option<String>,
    pub cpuset_mems: &'a Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
}

/// Docker's resource fields from the flags; unset ones are left out (`update` sends
/// only what changes; `create` fills zeroes as Docker's Go structs do).
pub fn resources(r: &Resources<'_>, zeroes: bool) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>, zero: Value| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        } else if zeroes {
            m.insert(k.into(), zero);
        }
    };
    let mem = r
        .memory
        .as_ref()
        .map(|_| size("memory", r.memory))
        .transpose()?;
    put("Memory", mem.map(|v| json!(v)), json!(0));
    let swap = r
        .memory_swap
        .as_deref()
        .map(opts::mem_swap)
        .transpose()
        .map_err(|e| anyhow::anyhow!("invalid argument for \"--memory-swap\" flag: {e}"))?;
    put("MemorySwap", swap.map(|v| json!(v)), json!(0));
    let res = r
        .memory_reservation
        .as_ref()
        .map(|_| size("memory-reservation", r.memory_reservation))
        .transpose()?;
    put("MemoryReservation", res.map(|v| json!(v)), json!(0));
    if let Some(c) = r.cpus {
        if c < 0.0 || !c.is_finite() {
            bail!("invalid argument \"{c}\" for \"--cpus\" flag: range is not valid");
        }
        if r.cpu_period.is_some_and(|p| p > 0) || r.cpu_quota.is_some_and(|q| q > 0) {
            bail!("Conflicting options: Nano CPUs and CPU Period cannot both be set");
        }
    }
    put(
        "NanoCpus",
        r.cpus.map(|c| json!((c * 1e9).round() as i64)),
        json!(0),
    );
    put("CpuShares", r.cpu_shares.map(|v| json!(v)), json!(0));
    put("CpuPeriod", r.cpu_period.map(|v| json!(v)), json!(0));
    put("CpuQuota", r.cpu_quota.map(|v| json!(v)), json!(0));
    put(
        "CpusetCpus",
        r.cpuset_cpus.as_ref().map(|v| json!(v)),
        json!(""),
    );
    put(
        "CpusetMems",
        r.cpuset_mems.as_ref().map(|v| json!(v)),
        json!(""),
    );
    if let Some(w) = r.blkio_weight {
        if w != 0 && !(10..=1000).contains(&w) {
            bail!("invalid argument \"{w}\" for \"--blkio-weight\" flag: Range of blkio weight is from 10 to 1000");
        }
    }
    put("BlkioWeight", r.blkio_weight.map(|v| json!(v)), json!(0));
    // Docker: 0 is "not set" and goes out as null.
    match r.pids_limit {
        Some(p) if p != 0 => {
            m.insert("PidsLimit".into(), json!(p));
        }
        _ if zeroes => {
            m.insert("PidsLimit".into(), Value::Null);
        }
        _ => {}
    }
    Ok(m)
}

/// Builds the create body (Config with HostConfig) from the flags, the image and the
/// command, as the docker CLI does. `detach`: `run -d` (nothing attached).
pub fn create_body(
    o: &ContainerOpts,
    image: &str,
    cmd: &[String],
    detach: bool,
) -> anyhow::Result<Value> {
    if let Some(p) = &o.platform {
        bail!("--platform {p:?} is not supported yet by berth");
    }
    if let Some(d) = &o.log_driver {
        if d != "json-file" {
            bail!("log driver {d:?} is not supported yet by berth (json-file is)");
        }
    }
    // Streams to attach (-a), as docker decides them.
    let mut attach_stdin = false;
    let (mut attach_stdout, mut attach_stderr) = (false, false);
    if !o.attach.is_empty() {
        if detach {
            bail!("Conflicting options: -a and -d");
        }
        for a in &o.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdin" => attach_stdin = true,
                "stdout" => attach_stdout = true,
                "stderr" => attach_stderr = true,
                _ => bail!("invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"),
            }
        }
    } else if !detach {
        attach_stdout = true;
        attach_stderr = true;
        attach_stdin = o.interactive;
    }

    let mut env = Vec::new();
    for f in &o.env_file {
        env.extend(opts::read_kv_file(f, true)?);
    }
    for e in &o.env {
        env.push(opts::env_entry(e)?);
    }
    let mut label_entries = Vec::new();
    for f in &o.label_file {
        label_entries.extend(opts::read_kv_file(f, false)?);
    }
    label_entries.extend(o.label.iter().cloned());
    let mut labels = opts::labels(&label_entries);
    if let Some(h) = &o.health_on_failure {
        if !matches!(h.as_str(), "none" | "kill" | "restart" | "stop") {
            bail!("invalid argument {h:?} for \"--health-on-failure\" flag: valid actions are none, kill, restart and stop");
        }
        labels.insert(HEALTH_ON_FAILURE_LABEL.to_string(), h.clone());
    }

    let restart = opts::restart_policy(&o.restart)?;
    if o.rm && restart["Name"] != "no" {
        bail!("Conflicting options: --restart and --rm");
    }
    let endpoints = endpoints_config(o)?;
    let mut extra_hosts = Vec::new();
    for h in &o.add_host {
        extra_hosts.push(opts::add_host(h)?);
    }

    let mut volumes = Map::new();
    let mut binds = Vec::new();
    for v in &o.volume {
        match opts::volume(v)? {
            (Some(anon), _) => {
                volumes.insert(anon, json!({}));
            }
            (_, Some(b)) => binds.push(b),
            _ => {}
        }
    }
    let mounts: Vec<Value> = o
        .mount
        .iter()
        .map(|m| {
            opts::mount(m)
                .map_err(|e| anyhow::anyhow!("invalid argument {m:?} for \"--mount\" flag: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let tmpfs: BTreeMap<String, String> = o.tmpfs.iter().map(|t| opts::tmpfs(t)).collect();

    let mut exposed = Map::new();
    let mut bindings: Map<String, Value> = Map::new();
    for p in &o.publish {
        for (port, b) in opts::publish(p).map_err(|e| {
            anyhow::anyhow!("invalid argument {p:?} for \"-p, --publish\" flag: {e}")
        })? {
            exposed.insert(port.clone(), json!({}));
            match bindings.get_mut(&port) {
                Some(Value::Array(a)) => a.push(b),
                _ => {
                    bindings.insert(port, json!([b]));
                }
            }
        }
    }
    for e in &o.expose {
        for port in opts::expose(e)? {
            exposed.insert(port, json!({}));
        }
    }

    let mut log_config = Map::new();
    for l in &o.log_opt {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid key value pair format in log options: {l}"))?;
        log_config.insert(k.to_string(), json!(v));
    }
    let ulimits: Vec<Value> = o
        .ulimit
        .iter()
        .map(|u| opts::ulimit(u))
        .collect::<anyhow::Result<_>>()?;
    let read_bps: Vec<Value> = o
        .device_read_bps
        .iter()
        .map(|d| opts::throttle_bps(d))
        .collect::<anyhow::Result<_>>()?;
    let write_bps: Vec<Value> = o
        .device_write_bps
        .iter()
        .map(|d| opts::throttle_bps(d))
        .collect::<anyhow::Result<_>>()?;
    let devices: Vec<Value> = o
        .device
        .iter()
        .map(|d| opts::device(d))
        .collect::<anyhow::Result<_>>()?;
    let mut sysctls = Map::new();
    for s in &o.sysctl {
        let (k, v) = opts::sysctl(s)?;
        sysctls.insert(k, json!(v));
    }
    let shm = size("shm-size", &o.shm_size)?;

    let res = resources(
        &Resources {
            memory: &o.memory,
            memory_swap: &o.memory_swap,
            memory_reservation: &o.memory_reservation,
            cpus: o.cpus,
            cpu_shares: o.cpu_shares,
            cpu_period: o.cpu_period,
            cpu_quota: o.cpu_quota,
            cpuset_cpus: &o.cpuset_cpus,
            cpuset_mems: &o.cpuset_mems,
            pids_limit: o.pids_limit,
            blkio_weight: o.blkio_weight,
        },
        true,
    )?;

    let mut host = Map::new();
    host.insert(
        "Binds".into(),
        if binds.is_empty() {
            Value::Null
        } else {
            json!(binds)
        },
    );
    host.insert(
        "LogConfig".into(),
        json!({ "Type": o.log_driver.clone().unwrap_or_default(), "Config": log_config }),
    );
    host.insert(
        "NetworkMode".into(),
        json!(o.network.clone().unwrap_or_else(|| "default".into())),
    );
    host.insert("PortBindings".into(), Value::Object(bindings));
    host.insert("Dns".into(), json!(o.dns));
    host.insert("DnsOptions".into(), json!(o.dns_option));
    host.insert("DnsSearch".into(), json!(o.dns_search));
    host.insert(
        "ExtraHosts".into(),
        if extra_hosts.is_empty() {
            Value::Null
        } else {
            json!(extra_hosts)
        },
    );
    host.insert("RestartPolicy".into(), restart);
    host.insert("AutoRemove".into(), json!(o.rm));
    host.insert(
        "VolumesFrom".into(),
        if o.volumes_from.is_empty() {
            Value::Null
        } else {
            json!(o.volumes_from)
        },
    );
    if o.tty {
        if let Some((h, w)) = stdio::terminal_size() {
            host.insert("ConsoleSize".into(), json!([h, w]));
        }
    }
    let list = |v: &[String]| if v.is_empty() { Value::Null } else { json!(v) };
    host.insert("CapAdd".into(), list(&o.cap_add));
    host.insert("CapDrop".into(), list(&o.cap_drop));
    host.insert("Privileged".into(), json!(o.privileged));
    for (key, mode) in [
        ("PidMode", &o.pid),
        ("IpcMode", &o.ipc),
        ("UTSMode", &o.uts),
        ("CgroupnsMode", &o.cgroupns),
        ("UsernsMode", &o.userns),
    ] {
        if let Some(m) = mode {
            host.insert(key.into(), json!(m));
        }
    }
    host.insert("PublishAllPorts".into(), json!(o.publish_all));
    host.insert("ReadonlyRootfs".into(), json!(o.read_only));
    host.insert("SecurityOpt".into(), list(&o.security_opt));
    if !tmpfs.is_empty() {
        host.insert("Tmpfs".into(), json!(tmpfs));
    }
    host.insert("ShmSize".into(), json!(shm));
    if !sysctls.is_empty() {
        host.insert("Sysctls".into(), Value::Object(sysctls));
    }
    for (k, v) in res {
        host.insert(k, v);
    }
    host.insert("BlkioDeviceReadBps".into(), json!(read_bps));
    host.insert("BlkioDeviceWriteBps".into(), json!(write_bps));
    host.insert("Devices".into(), json!(devices));
    host.insert("Ulimits".into(), json!(ulimits));
    if !mounts.is_empty() {
        host.insert("Mounts".into(), json!(mounts));
    }
    if o.init {
        host.insert("Init".into(), json!(true));
    }

    let mut c = Map::new();
    c.insert(
        "Hostname".into(),
        json!(o.hostname.clone().unwrap_or_default()),
    );
    c.insert(
        "Domainname".into(),
        json!(o.domainname.clone().unwrap_or_default()),
    );
    c.insert("User".into(), json!(o.user.clone().unwrap_or_default()));
    c.insert("AttachStdin".into(), json!(attach_stdin));
    c.insert("AttachStdout".into(), json!(attach_stdout));
    c.insert("AttachStderr".into(), json!(attach_stderr));
    if !exposed.is_empty() {
        c.insert("ExposedPorts".into(), Value::Object(exposed));
    }
    c.insert("Tty".into(), json!(o.tty));
    c.insert("OpenStdin".into(), json!(o.interactive));
    c.insert("StdinOnce".into(), json!(o.interactive && attach_stdin));
    c.insert("Env".into(), json!(env));
    c.insert(
        "Cmd".into(),
        if cmd.is_empty() {
            Value::Null
        } else {
            json!(cmd)
        },
    );
    if let Some(h) = healthcheck(o)? {
        c.insert("Healthcheck".into(), h);
    }
    c.insert("Image".into(), json!(image));
    c.insert(
        "Volumes".into(),
        if volumes.is_empty() {
            Value::Null
        } else {
            Value::Object(volumes)
        },
    );
    c.insert(
        "WorkingDir".into(),
        json!(o.workdir.clone().unwrap_or_default()),
    );
    c.insert(
        "Entrypoint".into(),
        match &o.entrypoint {
            None => Value::Null,
            Some(e) => json!([e]),
        },
    );
    c.insert("OnBuild".into(), Value::Null);
    c.insert("Labels".into(), json!(labels));
    if let Some(s) = &o.stop_signal {
        c.insert("StopSignal".into(), json!(s));
    }
    if let Some(t) = o.stop_timeout {
        c.insert("StopTimeout".into(), json!(t));
    }
    c.insert("HostConfig".into(), Value::Object(host));
    c.insert(
        "NetworkingConfig".into(),
        json!({ "EndpointsConfig": endpoints }),
    );
    Ok(Value::Object(c))
}

/// `NetworkingConfig.EndpointsConfig` from `--network`, `--network-alias` and `--ip`, as
/// the docker CLI builds it: the aliases and the address go to the one network named.
fn endpoints_config(o: &ContainerOpts) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    let net = o.network.as_deref().unwrap_or("default");
    let user_net =
        !matches!(net, "default" | "bridge" | "host" | "none") && !net.starts_with("container:");
    if !o.network_alias.is_empty() && !user_net {
        bail!("network-scoped aliases are only supported for user-defined networks");
    }
    if let Some(ip) = &o.ip {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            bail!("invalid argument {ip:?} for \"--ip\" flag: not an IPv4 address");
        }
    }
    if o.network.is_some() || !o.network_alias.is_empty() || o.ip.is_some() {
        let mut ep = Map::new();
        if let Some(ip) = &o.ip {
            ep.insert("IPAMConfig".into(), json!({ "IPv4Address": ip }));
        }
        if !o.network_alias.is_empty() {
            ep.insert("Aliases".into(), json!(o.network_alias));
        }
        out.insert(net.to_string(), Value::Object(ep));
    }
    Ok(out)
}

/// `name:tag` as docker prints it in "Unable to find image" (`:latest` added).
fn tagged(image: &str) -> String {
    let after_slash = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || after_slash.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Created {
    id: String,
    #[serde(default, deserialize_with = "super::list::null_vec")]
    warnings: Vec<String>,
}

async fn pull_quietly(client: &Client, image: &str, quiet: bool) -> anyhow::Result<()> {
    let args = super::distribution::PullArgs {
        platform: None,
        quiet,
        image: image.to_string(),
    };
    super::distribution::pull_to_stderr(client, args).await
}

/// Creates the container: pulls the image first when it is missing (as docker does,
/// saying so on stderr) or when `--pull always`. Returns the ID.
pub async fn create_container(
    client: &Client,
    o: &ContainerOpts,
    image: &str,
    cmd: &[String],
    detach: bool,
) -> anyhow::Result<String> {
    let body = create_body(o, image, cmd, detach)?;
    match o.pull.as_str() {
        "missing" | "never" => {}
        "always" => pull_quietly(client, image, o.quiet).await?,
        other => bail!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        ),
    }
    let q = Query::new("/containers/create")
        .opt("name", o.name.as_deref())
        .build();
    let resp = match client.post_body(&q, &body).await {
        Ok(r) => r,
        Err(e) => {
            let missing = e.downcast_ref::<ApiError>().is_some_and(|a| {
                a.status == StatusCode::NOT_FOUND && a.message.starts_with("No such image")
            });
            if !missing || o.pull != "missing" {
                return Err(e);
            }
            eprintln!("Unable to find image '{}' locally", tagged(image));
            pull_quietly(client, image, o.quiet).await?;
            client.post_body(&q, &body).await?
        }
    };
    let created: Created = serde_json::from_slice(&read_all(resp).await?)
        .context("the daemon's answer to POST /containers/create is not the expected JSON")?;
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(created.id)
}

fn split_image(v: &[String]) -> anyhow::Result<(&str, &[String])> {
    match v.split_first() {
        Some((i, rest)) => Ok((i.as_str(), rest)),
        None => bail!("\"create\" requires at least 1 argument"),
    }
}

pub async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let (image, cmd) = split_image(&args.image_and_command)?;
    // docker create fails with status 1 (run's 125 is run's own).
    let id = create_container(client, &args.opts, image, cmd, false).await?;
    super::out(&format!("{id}\n"))
}

/// Starts a wait for the container's exit before it is started; the daemon answers the
/// headers at once and the body (`{"StatusCode": N}`) at the exit.
async fn wait_before_start(
    client: &Client,
    id: &str,
    condition: &str,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<i64>>> {
    let q = Query::new(format!("/containers/{id}/wait"))
        .arg("condition", condition)
        .build();
    let resp = client.post(&q, empty(), None).await?;
    Ok(tokio::spawn(async move {
        let bytes = read_all(resp).await?;
        wait_status(&bytes)
    }))
}

/// The exit code of a wait answer; its `Error` becomes ours.
pub fn wait_status(bytes: &[u8]) -> anyhow::Result<i64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct WaitErr {
        message: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Wait {
        status_code: i64,
        #[serde(default)]
        error: Option<WaitErr>,
    }
    let w: Wait = serde_json::from_slice(bytes)
        .context("the daemon's answer to the wait is not the expected JSON")?;
    if let Some(e) = w.error.filter(|e| !e.message.is_empty()) {
        bail!("{}", e.message);
    }
    Ok(w.status_code)
}

/// Attaches to a container: `POST /containers/{id}/attach?stream=1&…` hijacked.
async fn attach_streams(
    client: &Client,
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    detach_keys: Option<&str>,
) -> anyhow::Result<crate::client::Hijacked> {
    let q = Query::new(format!("/containers/{id}/attach"))
        .flag("stream", true)
        .flag("stdin", stdin)
        .flag("stdout", stdout)
        .flag("stderr", stderr)
        .opt("detachKeys", detach_keys)
        .build();
    client.hijack(&q, None).await
}

/// docker's `toStatusError`: 127 when the command is not found, 126 when it cannot be
/// run, 125 for any other failure to start.
fn start_failure_status(e: &anyhow::Error) -> i32 {
    let m = format!("{e:#}");
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        125
    }
}

fn detach_keys(flag: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match flag {
        None | Some("") => Ok(stdio::DEFAULT_DETACH_KEYS.to_vec()),
        Some(k) => stdio::parse_detach_keys(k),
    }
}

fn exit_with(code: i64) -> anyhow::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(StatusError::silent(code as i32).into())
    }
}

pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<()> {
    let (image, cmd) = split_image(&args.image_and_command)?;
    let o = &args.opts;
    let attach_stdin = !args.detach
        && (o.interactive
            && (o.attach.is_empty() || o.attach.iter().any(|a| a.eq_ignore_ascii_case("stdin"))));
    if o.tty && attach_stdin && !stdio::stdin_is_terminal() {
        return Err(StatusError::with_message(
            1,
            anyhow::anyhow!("the input device is not a TTY"),
        ));
    }
    let id = create_container(client, o, image, cmd, args.detach)
        .await
        .map_err(|e| StatusError::with_message(125, e))?;
    if args.detach {
        client
            .post(&format!("/containers/{id}/start"), empty(), None)
            .await
            .map_err(|e| StatusError::with_message(125, e))?;
        return super::out(&format!("{id}\n"));
    }
    let (attach_stdout, attach_stderr) = if o.attach.is_empty() {
        (true, true)
    } else {
        (
            o.attach.iter().any(|a| a.eq_ignore_ascii_case("stdout")),
            o.attach.iter().any(|a| a.eq_ignore_ascii_case("stderr")),
        )
    };
    // The attach and the wait are both in place before the start (so no output and no
    // exit is missed); neither needs the other, so both requests are in flight at once.
    let attach = async {
        if attach_stdin || attach_stdout || attach_stderr {
            attach_streams(
                client,
                &id,
                attach_stdin,
                attach_stdout,
                attach_stderr,
                args.detach_keys.as_deref(),
            )
            .await
            .map(Some)
        } else {
            Ok(None)
        }
    };
    let condition = if o.rm { "removed" } else { "next-exit" };
    let wait = async {
        wait_before_start(client, &id, condition)
            .await
            .map_err(|e| StatusError::with_message(125, e))
    };
    let (session, status) = tokio::join!(attach, wait);
    let session = session?;
    let status = status?;
    let raw = if o.tty && attach_stdin {
        stdio::RawTerminal::enable()?
    } else {
        None
    };
    let keys = detach_keys(args.detach_keys.as_deref())?;
    let output = session.map(|s| tokio::spawn(stdio::session(s, o.tty, attach_stdin, keys)));
    if let Err(e) = client
        .post(&format!("/containers/{id}/start"), empty(), None)
        .await
    {
        drop(raw);
        if let Some(t) = output {
            t.abort();
        }
        status.abort();
        // docker: with --rm a container that failed to start is removed.
        if o.rm {
            let _ = client
                .request(
                    hyper::Method::DELETE,
                    &format!("/containers/{id}?force=1"),
                    empty(),
                    None,
                )
                .await;
        }
        return Err(StatusError::with_message(start_failure_status(&e), e));
    }
    let resize = o
        .tty
        .then(|| stdio::monitor_size(client, format!("/containers/{id}")));
    let signals = (args.sig_proxy && !o.tty).then(|| stdio::proxy_signals(client, id.clone()));
    if let Some(t) = output {
        match t.await {
            Ok(Ok(stdio::Ended::Output)) => {}
            Ok(Ok(stdio::Ended::Detached)) => {
                // The container keeps running; so does its --rm and restart policy.
                drop(raw);
                status.abort();
                return Ok(());
            }
            Ok(Err(e)) => {
                drop(raw);
                return Err(e);
            }
            Err(e) => return Err(anyhow::anyhow!("the output task failed: {e}")),
        }
    }
    drop(raw);
    let code = status
        .await
        .map_err(|e| anyhow::anyhow!("the wait task failed: {e}"))??;
    if let Some(t) = resize {
        t.abort();
    }
    if let Some(t) = signals {
        t.abort();
    }
    exit_with(code)
}

// ------------------------------------------------------------------------- start

#[derive(Debug, Args)]
#[command(about = "Start one or more stopped containers")]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Part of `GET /containers/{id}/json`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct InspectLite {
    pub id: String,
    pub config: ConfigLite,
    pub state: StateLite,
    pub host_config: HostConfigLite,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigLite {
    pub tty: bool,
    pub open_stdin: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct StateLite {
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub exit_code: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfigLite {
    pub auto_remove: bool,
}

pub async fn inspect_lite(client: &Client, name: &str) -> anyhow::Result<InspectLite> {
    client
        .get_json(&format!("/containers/{}/json", path_escape(name)))
        .await
}

pub async fn start(client: &Client, args: StartArgs) -> anyhow::Result<()> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let c = inspect_lite(client, &args.containers[0]).await?;
        let stdin = args.interactive && c.config.open_stdin;
        if c.config.tty && stdin && !stdio::stdin_is_terminal() {
            bail!("the input device is not a TTY");
        }
        let session = attach_streams(
            client,
            &c.id,
            stdin,
            true,
            true,
            args.detach_keys.as_deref(),
        )
        .await?;
        let condition = if c.host_config.auto_remove {
            "removed"
        } else {
            "next-exit"
        };
        let status = wait_before_start(client, &c.id, condition).await?;
        let raw = if c.config.tty && stdin {
            stdio::RawTerminal::enable()?
        } else {
            None
        };
        let keys = detach_keys(args.detach_keys.as_deref())?;
        let output = tokio::spawn(stdio::session(session, c.config.tty, stdin, keys));
        if let Err(e) = client
            .post(&format!("/containers/{}/start", c.id), empty(), None)
            .await
        {
            output.abort();
            status.abort();
            return Err(e);
        }
        let resize = c
            .config
            .tty
            .then(|| stdio::monitor_size(client, format!("/containers/{}", c.id)));
        let signals = (!c.config.tty).then(|| stdio::proxy_signals(client, c.id.clone()));
        let r = output
            .await
            .map_err(|e| anyhow::anyhow!("the output task failed: {e}"))?;
        drop(raw);
        if r? == stdio::Ended::Detached {
            status.abort();
            if let Some(t) = resize {
                t.abort();
            }
            if let Some(t) = signals {
                t.abort();
            }
            return Ok(());
        }
        let code = status
            .await
            .map_err(|e| anyhow::anyhow!("the wait task failed: {e}"))??;
        if let Some(t) = resize {
            t.abort();
        }
        if let Some(t) = signals {
            t.abort();
        }
        return exit_with(code);
    }
    super::containers::each(&args.containers, |name| async move {
        client
            .post(
                &format!("/containers/{}/start", path_escape(&name)),
                empty(),
                None,
            )
            .await
            .map(|_| ())
    })
    .await
}

// ------------------------------------------------------------------------ attach

#[derive(Debug, Args)]
#[command(about = "Attach local standard input, output, and error streams to a running container")]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn attach(client: &Client, args: AttachArgs) -> anyhow::Result<()> {
    let c = inspect_lite(client, &args.container).await?;
    if !c.state.running {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if c.state.paused {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    if c.state.restarting {
        bail!("You cannot attach to a restarting container, wait until it is running");
    }
    let stdin = !args.no_stdin && c.config.open_stdin;
    if c.config.tty && stdin && !stdio::stdin_is_terminal() {
        bail!("the input device is not a TTY");
    }
    let session = attach_streams(
        client,
        &c.id,
        stdin,
        true,
        true,
        args.detach_keys.as_deref(),
    )
    .await?;
    let raw = if c.config.tty && stdin {
        stdio::RawTerminal::enable()?
    } else {
        None
    };
    let resize = c
        .config
        .tty
        .then(|| stdio::monitor_size(client, format!("/containers/{}", c.id)));
    let signals =
        (args.sig_proxy && !c.config.tty).then(|| stdio::proxy_signals(client, c.id.clone()));
    let keys = detach_keys(args.detach_keys.as_deref())?;
    let r = stdio::session(session, c.config.tty, stdin, keys).await;
    drop(raw);
    if let Some(t) = resize {
        t.abort();
    }
    if let Some(t) = signals {
        t.abort();
    }
    if r? == stdio::Ended::Detached {
        return Ok(());
    }
    // The stream ended: the container exited (or closed its streams and still runs).
    let after = inspect_lite(client, &c.id).await?;
    if after.state.running {
        return Ok(());
    }
    exit_with(after.state.exit_code)
}

// -------------------------------------------------------------------------- exec

#[derive(Debug, Args)]
#[command(about = "Execute a command in a running container")]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

pub async fn exec(client: &Client, args: ExecArgs) -> anyhow::Result<()> {
    if args.tty && args.interactive && !args.detach && !stdio::stdin_is_terminal() {
        bail!("the input device is not a TTY");
    }
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(opts::read_kv_file(f, true)?);
    }
    for e in &args.env {
        env.push(opts::env_entry(e)?);
    }
    let attach = !args.detach;
    let mut body = json!({
        "User": args.user.clone().unwrap_or_default(),
        "Privileged": args.privileged,
        "Tty": args.tty,
        "AttachStdin": attach && args.interactive,
        "AttachStderr": attach,
        "AttachStdout": attach,
        "DetachKeys": args.detach_keys.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": args.workdir.clone().unwrap_or_default(),
        "Cmd": args.command,
    });
    let console = if args.tty {
        stdio::terminal_size()
    } else {
        None
    };
    if let Some((h, w)) = console {
        body["ConsoleSize"] = json!([h, w]);
    }
    let path = format!("/containers/{}/exec", path_escape(&args.container));
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct IdResponse {
        id: String,
    }
    let created: IdResponse = serde_json::from_slice(
        &read_all(client.post_body(&path, &body).await?).await?,
    )
    .context("the daemon's answer to POST /containers/{id}/exec is not the expected JSON")?;
    let exec_id = created.id;
    let mut start = json!({ "Detach": args.detach, "Tty": args.tty });
    if let Some((h, w)) = console {
        start["ConsoleSize"] = json!([h, w]);
    }
    let start_path = format!("/exec/{exec_id}/start");
    if args.detach {
        client.post_body(&start_path, &start).await?;
        return Ok(());
    }
    let stdin = args.interactive;
    let session = client.hijack(&start_path, Some(&start)).await?;
    let raw = if args.tty && stdin {
        stdio::RawTerminal::enable()?
    } else {
        None
    };
    let resize = args
        .tty
        .then(|| stdio::monitor_size(client, format!("/exec/{exec_id}")));
    let keys = detach_keys(args.detach_keys.as_deref())?;
    let r = stdio::session(session, args.tty, stdin, keys).await;
    drop(raw);
    if let Some(t) = resize {
        t.abort();
    }
    if r? == stdio::Ended::Detached {
        return Ok(());
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ExecInspect {
        #[serde(default)]
        exit_code: Option<i64>,
        #[serde(default)]
        running: bool,
    }
    let info: ExecInspect = client.get_json(&format!("/exec/{exec_id}/json")).await?;
    if info.running {
        return Ok(());
    }
    exit_with(info.exit_code.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Verb};
    use clap::Parser as _;

    fn run_args(argv: &[&str]) -> RunArgs {
        let mut v = vec!["berth", "run"];
        v.extend_from_slice(argv);
        match Cli::try_parse_from(v).unwrap().command {
            Some(Verb::Run(a)) => a,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn flags_stop_at_the_image() {
        let a = run_args(&[
            "-d", "--name", "x", "-e", "A=1", "img", "sh", "-c", "exit 3",
        ]);
        assert!(a.detach);
        assert_eq!(a.image_and_command, ["img", "sh", "-c", "exit 3"]);
        let a = run_args(&["img", "-d", "--rm"]);
        assert!(!a.detach);
        assert_eq!(a.image_and_command, ["img", "-d", "--rm"]);
        let a = run_args(&["-h", "box", "--rm", "-it", "img"]);
        assert_eq!(a.opts.hostname.as_deref(), Some("box"));
        assert!(a.opts.rm && a.opts.interactive && a.opts.tty);
    }

    #[test]
    fn network_flags_as_docker_builds_them() {
        let a = run_args(&[
            "--network",
            "front",
            "--network-alias",
            "web",
            "--ip",
            "100.90.0.9",
            "--dns",
            "9.9.9.9",
            "--dns-search",
            "a.test",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db=10.0.0.1",
            "--domainname",
            "example.test",
            "-p",
            "127.0.0.1::80",
            "-p",
            "8000-8001:90-91/udp",
            "-P",
            "--expose",
            "443",
            "img",
        ]);
        let b = create_body(&a.opts, "img", &[], true).unwrap();
        let h = &b["HostConfig"];
        assert_eq!(h["NetworkMode"], "front");
        assert_eq!(h["Dns"], json!(["9.9.9.9"]));
        assert_eq!(h["DnsSearch"], json!(["a.test"]));
        assert_eq!(h["DnsOptions"], json!(["ndots:2"]));
        assert_eq!(h["ExtraHosts"], json!(["db=10.0.0.1"]));
        assert_eq!(h["PublishAllPorts"], true);
        assert_eq!(
            h["PortBindings"],
            json!({"80/tcp":[{"HostIp":"127.0.0.1","HostPort":""}],
                   "90/udp":[{"HostIp":"","HostPort":"8000"}],
                   "91/udp":[{"HostIp":"","HostPort":"8001"}]})
        );
        assert_eq!(
            b["ExposedPorts"],
            json!({"80/tcp":{},"90/udp":{},"91/udp":{},"443/tcp":{}})
        );
        assert_eq!(b["Domainname"], "example.test");
        assert_eq!(
            b["NetworkingConfig"],
            json!({"EndpointsConfig":{"front":{"Aliases":["web"],"IPAMConfig":{"IPv4Address":"100.90.0.9"}}}})
        );
        // No --network: no endpoint; aliases need a user-defined network; bad values.
        let b = create_body(&run_args(&["img"]).opts, "img", &[], true).unwrap();
        assert_eq!(b["NetworkingConfig"], json!({"EndpointsConfig":{}}));
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
        assert_eq!(b["HostConfig"]["ExtraHosts"], Value::Null);
        let a = run_args(&["--network-alias", "x", "img"]);
        assert!(create_body(&a.opts, "img", &[], true).is_err());
        let a = run_args(&["--network", "front", "--ip", "nope", "img"]);
        assert!(create_body(&a.opts, "img", &[], true).is_err());
        let a = run_args(&["--add-host", "db:nope", "img"]);
        assert!(create_body(&a.opts, "img", &[], true).is_err());
        let a = run_args(&["-p", "1:2:3:4", "img"]);
        assert!(create_body(&a.opts, "img", &[], true).is_err());
    }

    #[test]
    fn body_as_docker_builds_it() {
        let a = run_args(&[
            "--rm",
            "-e",
            "A=1",
            "-l",
            "team=ops",
            "--health-cmd",
            "true",
            "--health-interval",
            "2s",
            "--health-on-failure",
            "restart",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "100",
            "--network",
            "none",
            "--entrypoint",
            "",
            "--stop-timeout",
            "3",
            "-v",
            "/srv:/data:ro",
            "-v",
            "/anon",
            "-p",
            "8080:80",
            "img",
            "echo",
            "hi",
        ]);
        let b = create_body(&a.opts, "img", &a.image_and_command[1..], false).unwrap();
        assert_eq!(b["Image"], "img");
        assert_eq!(b["Cmd"], json!(["echo", "hi"]));
        assert_eq!(b["Entrypoint"], json!([""]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["Labels"]["team"], "ops");
        assert_eq!(b["Labels"][HEALTH_ON_FAILURE_LABEL], "restart");
        assert_eq!(
            b["Healthcheck"],
            json!({"Test":["CMD-SHELL","true"],"Interval":2_000_000_000i64,"Timeout":0,"StartPeriod":0,"StartInterval":0,"Retries":0})
        );
        assert_eq!(b["AttachStdout"], true);
        assert_eq!(b["AttachStdin"], false);
        assert_eq!(b["StopTimeout"], 3);
        assert_eq!(b["Volumes"], json!({"/anon":{}}));
        assert_eq!(b["ExposedPorts"], json!({"80/tcp":{}}));
        let h = &b["HostConfig"];
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(h["Memory"], 64 << 20);
        assert_eq!(h["NanoCpus"], 500_000_000);
        assert_eq!(h["PidsLimit"], 100);
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["Binds"], json!(["/srv:/data:ro"]));
        assert_eq!(
            h["RestartPolicy"],
            json!({"Name":"no","MaximumRetryCount":0})
        );
        assert_eq!(
            h["PortBindings"],
            json!({"80/tcp":[{"HostIp":"","HostPort":"8080"}]})
        );
    }

    #[test]
    fn refusals() {
        let a = run_args(&["--rm", "--restart", "always", "img"]);
        assert!(create_body(&a.opts, "img", &[], false).is_err());
        let a = run_args(&["--no-healthcheck", "--health-cmd", "x", "img"]);
        assert!(create_body(&a.opts, "img", &[], false).is_err());
        let a = run_args(&["--platform", "linux/arm64", "img"]);
        let e = create_body(&a.opts, "img", &[], false).unwrap_err();
        assert!(e.to_string().contains("not supported yet by berth"), "{e}");
        let a = run_args(&["--log-driver", "syslog", "img"]);
        assert!(create_body(&a.opts, "img", &[], false).is_err());
        let a = run_args(&["--health-on-failure", "explode", "img"]);
        assert!(create_body(&a.opts, "img", &[], false).is_err());
        let a = run_args(&["--no-healthcheck", "img"]);
        let b = create_body(&a.opts, "img", &[], true).unwrap();
        assert_eq!(b["Healthcheck"], json!({"Test":["NONE"]}));
        assert_eq!(b["AttachStdout"], false);
    }

    #[test]
    fn names_for_pull_messages() {
        assert_eq!(tagged("busybox"), "busybox:latest");
        let e = anyhow::anyhow!("exec: \"nope\": executable file not found in $PATH");
        assert_eq!(start_failure_status(&e), 127);
        assert_eq!(
            start_failure_status(&anyhow::anyhow!("open /x: permission denied")),
            126
        );
        assert_eq!(
            start_failure_status(&anyhow::anyhow!("cgroup refused")),
            125
        );
        assert_eq!(tagged("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(tagged("fixture/app:1"), "fixture/app:1");
        assert_eq!(wait_status(br#"{"StatusCode":3,"Error":null}"#).unwrap(), 3);
        assert!(wait_status(br#"{"StatusCode":-1,"Error":{"Message":"gone"}}"#).is_err());
    }
}
