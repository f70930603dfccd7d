//! A loaded compose [`Config`] into the Engine API's objects of a stack, as docker/cli's
//! `cli/compose/convert` builds them: network create bodies, secret and config specs,
//! and one `ServiceSpec` per service.
//!
//! Names and labels: the stack `NAME` scopes every object (`NAME_web`, `NAME_default`,
//! `NAME_data`, `NAME_secret`) unless the file names it (`name:`, `external:`), and every
//! object gets the label `com.docker.stack.namespace=NAME`; a service's spec also gets
//! `com.docker.stack.image` (the image as written, to tell a changed image on a
//! redeploy).
//!
//! Everything here is computed before the daemon is asked for anything, so a file that
//! cannot be converted (an undefined network or volume, a bad CPU count, a secret file
//! that cannot be read) creates nothing. Docker converts the services after it created
//! the networks and secrets; the result is the same for a file that converts. Only the
//! IDs of the secrets and configs a service uses are left to fill in, once they exist
//! ([`ServicePlan::secrets`], [`ServicePlan::configs`]).
//!
//! The spec is deterministic (environment, mounts, networks, ports and references in a
//! fixed order), so a redeploy of an unchanged service sends the spec it already has
//! and the daemon starts no new tasks for it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::compose::{Config, FileObject, FileRef, Service, ServiceVolume};

/// The label of every object of a stack.
pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";
/// The label of a service's spec recording its image as the file wrote it.
pub const LABEL_IMAGE: &str = "com.docker.stack.image";

/// Scopes names to a stack.
#[derive(Debug, Clone)]
pub struct Namespace(pub String);

impl Namespace {
    /// `NAME_name`.
    pub fn scope(&self, name: &str) -> String {
        format!("{}_{name}", self.0)
    }

    /// `NAME_web` back to `web`.
    pub fn descope<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(&format!("{}_", self.0)).unwrap_or(name)
    }

    fn labels(&self, labels: &BTreeMap<String, String>) -> Map<String, Value> {
        let mut m: Map<String, Value> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        m.insert(LABEL_NAMESPACE.into(), json!(self.0));
        m
    }
}

/// Everything a deploy creates or updates.
#[derive(Debug, Default)]
pub struct Plan {
    /// Networks of the stack to create when missing: name and create body, by name.
    pub networks: Vec<(String, Value)>,
    /// External networks the services use: they must exist, with the swarm scope.
    pub external_networks: Vec<String>,
    /// Secret specs (`Name`, `Labels`, `Data`, ...), by name.
    pub secrets: Vec<Value>,
    /// Config specs, by name.
    pub configs: Vec<Value>,
    /// By service name.
    pub services: Vec<ServicePlan>,
}

/// One service: its spec, and the secrets and configs it references (by name, their
/// IDs looked up once they exist).
#[derive(Debug)]
pub struct ServicePlan {
    /// The service's name in the file (`web`).
    pub short_name: String,
    /// Its name on the engine (`NAME_web`).
    pub name: String,
    pub spec: Map<String, Value>,
    /// `SecretReference`s without `SecretID`, by `SecretName`.
    pub secrets: Vec<Value>,
    /// `ConfigReference`s without `ConfigID`, by `ConfigName`.
    pub configs: Vec<Value>,
}

/// Converts the whole configuration.
pub fn plan(ns: &Namespace, cfg: &Config) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    // The networks the services use; "default" for a service that names none.
    let mut used: BTreeSet<String> = BTreeSet::new();
    for s in &cfg.services {
        if s.networks.is_empty() {
            used.insert("default".into());
        }
        used.extend(s.networks.keys().cloned());
    }
    for internal in &used {
        let nw = cfg.networks.get(internal).cloned().unwrap_or_default();
        if nw.external {
            plan.external_networks
                .push(nw.name.clone().unwrap_or_else(|| internal.clone()));
            continue;
        }
        let mut body = Map::new();
        let name = nw.name.clone().unwrap_or_else(|| ns.scope(internal));
        body.insert("Name".into(), json!(name));
        body.insert(
            "Driver".into(),
            json!(nw.driver.clone().unwrap_or_else(|| "overlay".into())),
        );
        if !nw.driver_opts.is_empty() {
            body.insert("Options".into(), json!(nw.driver_opts));
        }
        if nw.internal {
            body.insert("Internal".into(), json!(true));
        }
        if nw.attachable {
            body.insert("Attachable".into(), json!(true));
        }
        if nw.ipam_driver.is_some() || !nw.ipam_subnets.is_empty() {
            let mut ipam = Map::new();
            ipam.insert(
                "Driver".into(),
                json!(nw.ipam_driver.clone().unwrap_or_default()),
            );
            let configs: Vec<Value> = nw
                .ipam_subnets
                .iter()
                .map(|s| json!({ "Subnet": s }))
                .collect();
            ipam.insert("Config".into(), json!(configs));
            body.insert("IPAM".into(), Value::Object(ipam));
        }
        body.insert("Labels".into(), Value::Object(ns.labels(&nw.labels)));
        plan.networks.push((name, Value::Object(body)));
    }
    plan.networks.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, obj) in &cfg.secrets {
        if let Some(spec) = file_object_spec(ns, "secret", name, obj)? {
            plan.secrets.push(spec);
        }
    }
    for (name, obj) in &cfg.configs {
        if let Some(spec) = file_object_spec(ns, "config", name, obj)? {
            plan.configs.push(spec);
        }
    }
    for s in &cfg.services {
        let sp =
            service_plan(ns, s, cfg).map_err(|e| anyhow::anyhow!("service {}: {e:#}", s.name))?;
        plan.services.push(sp);
    }
    Ok(plan)
}

/// A secret's or config's spec; `None` for an external one.
fn file_object_spec(
    ns: &Namespace,
    kind: &str,
    name: &str,
    obj: &FileObject,
) -> anyhow::Result<Option<Value>> {
    if obj.external {
        return Ok(None);
    }
    let full = obj.name.clone().unwrap_or_else(|| ns.scope(name));
    let mut spec = Map::new();
    spec.insert("Name".into(), json!(full));
    spec.insert("Labels".into(), Value::Object(ns.labels(&obj.labels)));
    match &obj.driver {
        Some(driver) => {
            spec.insert("Data".into(), json!(""));
            spec.insert(
                "Driver".into(),
                json!({ "Name": driver, "Options": obj.driver_opts }),
            );
        }
        None => {
            let Some(file) = &obj.file else {
                bail!("{kind} {name}: no file");
            };
            let data = std::fs::read(file).map_err(|e| {
                anyhow::anyhow!(
                    "{kind} {name}: open {}: {}",
                    file.display(),
                    super::super::os_message(&e)
                )
            })?;
            spec.insert(
                "Data".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(data)),
            );
        }
    }
    if let Some(t) = &obj.template_driver {
        spec.insert("Templating".into(), json!({ "Name": t }));
    }
    Ok(Some(Value::Object(spec)))
}

/// Inserts `v` at `key` unless it is empty (Go's `omitempty`).
fn put(m: &mut Map<String, Value>, key: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    };
    if !empty {
        m.insert(key.into(), v);
    }
}

fn service_plan(ns: &Namespace, s: &Service, cfg: &Config) -> anyhow::Result<ServicePlan> {
    let name = ns.scope(&s.name);
    let Some(image) = s.image.clone().filter(|i| !i.is_empty()) else {
        bail!("image is required (berth does not build images: build it, then load or pull it on this host)");
    };

    let mut cs = Map::new();
    cs.insert("Image".into(), json!(image));
    let mut labels: BTreeMap<String, String> = s.labels.clone();
    labels.insert(LABEL_NAMESPACE.into(), ns.0.clone());
    cs.insert("Labels".into(), json!(labels));
    if let Some(c) = &s.entrypoint {
        put(&mut cs, "Command", json!(c));
    }
    if let Some(a) = &s.command {
        put(&mut cs, "Args", json!(a));
    }
    put(
        &mut cs,
        "Hostname",
        json!(s.hostname.clone().unwrap_or_default()),
    );
    let env: Vec<String> = s
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    put(&mut cs, "Env", json!(env));
    put(
        &mut cs,
        "Dir",
        json!(s.working_dir.clone().unwrap_or_default()),
    );
    put(&mut cs, "User", json!(s.user.clone().unwrap_or_default()));
    put(&mut cs, "Groups", json!(s.group_add));
    if let Some(i) = s.init {
        cs.insert("Init".into(), json!(i));
    }
    put(
        &mut cs,
        "StopSignal",
        json!(s.stop_signal.clone().unwrap_or_default()),
    );
    put(&mut cs, "TTY", json!(s.tty));
    put(&mut cs, "OpenStdin", json!(s.stdin_open));
    put(&mut cs, "ReadOnly", json!(s.read_only));
    let mut mounts = Vec::new();
    for v in &s.volumes {
        mounts.push(mount(ns, v, cfg)?);
    }
    for t in &s.tmpfs {
        mounts.push(tmpfs_mount(t)?);
    }
    put(&mut cs, "Mounts", json!(mounts));
    if let Some(n) = s.stop_grace_period {
        cs.insert("StopGracePeriod".into(), json!(n));
    }
    if let Some(h) = healthcheck(s)? {
        cs.insert("Healthcheck".into(), h);
    }
    let mut hosts = Vec::new();
    for h in &s.extra_hosts {
        let Some((host, ip)) = h.split_once('=').or_else(|| h.split_once(':')) else {
            bail!("extra_hosts: {h:?}: expected host:ip");
        };
        hosts.push(format!("{ip} {host}"));
    }
    put(&mut cs, "Hosts", json!(hosts));
    if !s.dns.is_empty() || !s.dns_search.is_empty() {
        for ip in &s.dns {
            if ip.parse::<std::net::IpAddr>().is_err() {
                bail!("dns: {ip:?} is not an IP address");
            }
        }
        let mut dns = Map::new();
        put(&mut dns, "Nameservers", json!(s.dns));
        put(&mut dns, "Search", json!(s.dns_search));
        cs.insert("DNSConfig".into(), Value::Object(dns));
    }
    if let Some(c) = &s.credential_spec {
        let set: Vec<&str> = [
            ("\"Config\"", &c.config),
            ("\"File\"", &c.file),
            ("\"Registry\"", &c.registry),
        ]
        .iter()
        .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_empty()))
        .map(|(k, _)| *k)
        .collect();
        match set.as_slice() {
            [] => {}
            [_] if c.config.is_some() => {
                bail!("credential_spec.config is not supported by berth (credential specs are for Windows containers)")
            }
            [_] => {
                cs.insert(
                    "Privileges".into(),
                    json!({ "CredentialSpec": {
                        "File": c.file.clone().unwrap_or_default(),
                        "Registry": c.registry.clone().unwrap_or_default(),
                    }}),
                );
            }
            [a, b] => bail!("invalid credential spec: cannot specify both {a} and {b}"),
            [a, b, c] => bail!("invalid credential spec: cannot specify both {a}, {b}, and {c}"),
            _ => {}
        }
    }
    put(
        &mut cs,
        "Isolation",
        json!(s.isolation.clone().unwrap_or_default()),
    );
    put(&mut cs, "Sysctls", json!(s.sysctls));
    let (cap_add, cap_drop) = effective_caps(&s.cap_add, &s.cap_drop);
    put(&mut cs, "CapabilityAdd", json!(cap_add));
    put(&mut cs, "CapabilityDrop", json!(cap_drop));
    let ulimits: Vec<Value> = s
        .ulimits
        .iter()
        .map(|(n, u)| json!({ "Name": n, "Soft": u.soft, "Hard": u.hard }))
        .collect();
    put(&mut cs, "Ulimits", json!(ulimits));
    if let Some(n) = s.oom_score_adj {
        put(&mut cs, "OomScoreAdj", json!(n));
    }

    let mut task = Map::new();
    task.insert("ContainerSpec".into(), Value::Object(cs));
    let resources = resources(s)?;
    put(&mut task, "Resources", resources);
    if let Some(rp) = restart_policy(s)? {
        task.insert("RestartPolicy".into(), rp);
    }
    let mut placement = Map::new();
    put(
        &mut placement,
        "Constraints",
        json!(s.deploy.placement.constraints),
    );
    let prefs: Vec<Value> = s
        .deploy
        .placement
        .preferences
        .iter()
        .map(|p| json!({ "Spread": { "SpreadDescriptor": p } }))
        .collect();
    put(&mut placement, "Preferences", json!(prefs));
    if let Some(n) = s.deploy.placement.max_replicas_per_node {
        put(&mut placement, "MaxReplicas", json!(n));
    }
    put(&mut task, "Placement", Value::Object(placement));
    task.insert("Networks".into(), json!(networks(ns, s, cfg)?));
    if let Some(l) = &s.logging {
        let mut d = Map::new();
        d.insert("Name".into(), json!(l.driver.clone().unwrap_or_default()));
        put(&mut d, "Options", json!(l.options));
        task.insert("LogDriver".into(), Value::Object(d));
    }
    task.insert("ForceUpdate".into(), json!(0));

    let mut spec = Map::new();
    spec.insert("Name".into(), json!(name));
    let mut svc_labels = ns.labels(&s.deploy.labels);
    svc_labels.insert(LABEL_IMAGE.into(), json!(image));
    spec.insert("Labels".into(), Value::Object(svc_labels));
    spec.insert("TaskTemplate".into(), Value::Object(task));
    spec.insert("Mode".into(), mode(s)?);
    if let Some(u) = &s.deploy.update_config {
        spec.insert("UpdateConfig".into(), rollout(u));
    }
    if let Some(u) = &s.deploy.rollback_config {
        spec.insert("RollbackConfig".into(), rollout(u));
    }
    let mut endpoint = Map::new();
    put(
        &mut endpoint,
        "Mode",
        json!(s
            .deploy
            .endpoint_mode
            .clone()
            .unwrap_or_default()
            .to_lowercase()),
    );
    let mut ports = s.ports.clone();
    ports.sort_by(|a, b| {
        (a.published, a.target, &a.protocol, &a.mode).cmp(&(
            b.published,
            b.target,
            &b.protocol,
            &b.mode,
        ))
    });
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut m = Map::new();
            put(&mut m, "Protocol", json!(p.protocol));
            m.insert("TargetPort".into(), json!(p.target));
            put(&mut m, "PublishedPort", json!(p.published));
            put(&mut m, "PublishMode", json!(p.mode));
            Value::Object(m)
        })
        .collect();
    put(&mut endpoint, "Ports", json!(ports));
    spec.insert("EndpointSpec".into(), Value::Object(endpoint));

    Ok(ServicePlan {
        short_name: s.name.clone(),
        name,
        spec,
        secrets: references(ns, "secret", &s.secrets, &cfg.secrets)?,
        configs: references(ns, "config", &s.configs, &cfg.configs)?,
    })
}

/// The references of a service to secrets or configs, without their IDs.
fn references(
    ns: &Namespace,
    kind: &str,
    refs: &[FileRef],
    objects: &BTreeMap<String, FileObject>,
) -> anyhow::Result<Vec<Value>> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut targets = BTreeSet::new();
    for r in refs {
        let Some(obj) = objects.get(&r.source) else {
            bail!("undefined {kind} {:?}", r.source);
        };
        let name = obj.name.clone().unwrap_or_else(|| ns.scope(&r.source));
        let target = r
            .target
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| r.source.clone());
        if !targets.insert(target.clone()) {
            bail!("duplicate {kind} target for {name} not allowed");
        }
        let file = json!({
            "Name": target,
            "UID": r.uid.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "0".into()),
            "GID": r.gid.clone().filter(|g| !g.is_empty()).unwrap_or_else(|| "0".into()),
            "Mode": r.mode.unwrap_or(0o444),
        });
        let name_key = if kind == "secret" {
            "SecretName"
        } else {
            "ConfigName"
        };
        out.push((name.clone(), json!({ "File": file, name_key: name })));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// Whether a network name is one the user made (not `bridge`, `host`, `none`,
/// `default` or `container:…`), which takes aliases.
pub fn is_user_defined(name: &str) -> bool {
    !matches!(name, "default" | "bridge" | "host" | "none") && !name.starts_with("container:")
}

fn networks(ns: &Namespace, s: &Service, cfg: &Config) -> anyhow::Result<Vec<Value>> {
    let mut list: Vec<(String, Option<&super::compose::ServiceNetwork>)> = Vec::new();
    if s.networks.is_empty() {
        list.push(("default".into(), None));
    } else {
        for (n, settings) in &s.networks {
            list.push((n.clone(), settings.as_ref()));
        }
    }
    let mut out: Vec<(String, Value)> = Vec::new();
    for (n, settings) in list {
        let nw = cfg.networks.get(&n);
        if nw.is_none() && n != "default" {
            bail!("undefined network {n:?}");
        }
        let target = nw
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| ns.scope(&n));
        let mut aliases: Vec<String> = settings.map(|x| x.aliases.clone()).unwrap_or_default();
        if is_user_defined(&target) {
            aliases.push(s.name.clone());
        }
        let mut m = Map::new();
        m.insert("Target".into(), json!(target));
        put(&mut m, "Aliases", json!(aliases));
        if let Some(x) = settings {
            put(&mut m, "DriverOpts", json!(x.driver_opts));
        }
        out.push((target, Value::Object(m)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

fn mount(ns: &Namespace, v: &ServiceVolume, cfg: &Config) -> anyhow::Result<Value> {
    let mut m = Map::new();
    m.insert("Type".into(), json!(v.kind));
    let incompatible =
        |what: &str| anyhow::anyhow!("{what} options are incompatible with type {}", v.kind);
    match v.kind.as_str() {
        "volume" => {
            if v.tmpfs.is_some() {
                return Err(incompatible("tmpfs"));
            }
            if v.bind.is_some() {
                return Err(incompatible("bind"));
            }
            if !v.source.is_empty() {
                let Some(stack_volume) = cfg.volumes.get(&v.source) else {
                    bail!("undefined volume {:?}", v.source);
                };
                let source = stack_volume
                    .name
                    .clone()
                    .unwrap_or_else(|| ns.scope(&v.source));
                m.insert("Source".into(), json!(source));
                let mut opts = Map::new();
                if let Some(o) = &v.volume {
                    put(&mut opts, "NoCopy", json!(o.nocopy));
                }
                if !stack_volume.external {
                    opts.insert(
                        "Labels".into(),
                        Value::Object(ns.labels(&stack_volume.labels)),
                    );
                    if stack_volume.driver.is_some() || !stack_volume.driver_opts.is_empty() {
                        let mut d = Map::new();
                        d.insert(
                            "Name".into(),
                            json!(stack_volume.driver.clone().unwrap_or_default()),
                        );
                        put(&mut d, "Options", json!(stack_volume.driver_opts));
                        opts.insert("DriverConfig".into(), Value::Object(d));
                    }
                }
                put(&mut m, "VolumeOptions", Value::Object(opts));
            } else if let Some(o) = &v.volume {
                let mut opts = Map::new();
                put(&mut opts, "NoCopy", json!(o.nocopy));
                put(&mut m, "VolumeOptions", Value::Object(opts));
            }
        }
        "bind" => {
            if v.source.is_empty() {
                bail!("invalid bind source, source cannot be empty");
            }
            if v.volume.is_some() {
                return Err(incompatible("volume"));
            }
            if v.tmpfs.is_some() {
                return Err(incompatible("tmpfs"));
            }
            m.insert("Source".into(), json!(v.source));
            if let Some(b) = &v.bind {
                let mut o = Map::new();
                put(&mut o, "Propagation", json!(b.propagation));
                m.insert("BindOptions".into(), Value::Object(o));
            }
        }
        "tmpfs" => {
            if !v.source.is_empty() {
                bail!("invalid tmpfs source, source must be empty");
            }
            if v.bind.is_some() {
                return Err(incompatible("bind"));
            }
            if v.volume.is_some() {
                return Err(incompatible("volume"));
            }
            if let Some(t) = &v.tmpfs {
                let mut o = Map::new();
                put(&mut o, "SizeBytes", json!(t.size));
                m.insert("TmpfsOptions".into(), Value::Object(o));
            }
        }
        "npipe" | "cluster" => bail!(
            "volumes: mounts of type {} are not supported by berth",
            v.kind
        ),
        _ => bail!("volume type must be volume, bind, tmpfs, npipe, or cluster"),
    }
    m.insert("Target".into(), json!(v.target));
    put(&mut m, "ReadOnly", json!(v.read_only));
    put(&mut m, "Consistency", json!(v.consistency));
    Ok(Value::Object(m))
}

/// A service-level `tmpfs` entry (`/run` or `/run:size=64m,mode=1777`) as a tmpfs mount.
fn tmpfs_mount(entry: &str) -> anyhow::Result<Value> {
    let (target, options) = entry.split_once(':').unwrap_or((entry, ""));
    if !target.starts_with('/') {
        bail!("tmpfs: {entry:?}: the path must be absolute");
    }
    let mut opts = Map::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                let n = super::super::opts::ram_in_bytes(v)
                    .map_err(|e| anyhow::anyhow!("tmpfs: {entry:?}: {e:#}"))?;
                opts.insert("SizeBytes".into(), json!(n));
            }
            Some(("mode", v)) => {
                let n = u32::from_str_radix(v, 8)
                    .map_err(|_| anyhow::anyhow!("tmpfs: {entry:?}: invalid mode {v:?}"))?;
                opts.insert("Mode".into(), json!(n));
            }
            _ => bail!("tmpfs: {entry:?}: unsupported option {o:?} (size= and mode= are)"),
        }
    }
    let mut m = Map::new();
    m.insert("Type".into(), json!("tmpfs"));
    m.insert("Target".into(), json!(target));
    put(&mut m, "TmpfsOptions", Value::Object(opts));
    Ok(Value::Object(m))
}

fn healthcheck(s: &Service) -> anyhow::Result<Option<Value>> {
    let Some(h) = &s.healthcheck else {
        return Ok(None);
    };
    if h.disable {
        if h.test.as_ref().is_some_and(|t| !t.is_empty()) {
            bail!("test and disable can't be set at the same time");
        }
        return Ok(Some(json!({ "Test": ["NONE"] })));
    }
    let mut m = Map::new();
    put(&mut m, "Test", json!(h.test.clone().unwrap_or_default()));
    put(&mut m, "Interval", json!(h.interval.unwrap_or(0)));
    put(&mut m, "Timeout", json!(h.timeout.unwrap_or(0)));
    put(&mut m, "StartPeriod", json!(h.start_period.unwrap_or(0)));
    put(
        &mut m,
        "StartInterval",
        json!(h.start_interval.unwrap_or(0)),
    );
    put(&mut m, "Retries", json!(h.retries.unwrap_or(0)));
    Ok(Some(Value::Object(m)))
}

/// docker's `opts.ParseCPUs`: a decimal number of CPUs in billionths.
pub fn parse_cpus(s: &str) -> anyhow::Result<i64> {
    let invalid = || anyhow::anyhow!("failed to parse {s:?} as a rational number");
    let t = s.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(invalid());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 9 {
        bail!("value is too precise");
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| invalid())?
    };
    w.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(f))
        .ok_or_else(invalid)
}

fn resources(s: &Service) -> anyhow::Result<Value> {
    let r = &s.deploy.resources;
    let mut m = Map::new();
    if let Some(l) = &r.limits {
        let mut limits = Map::new();
        if let Some(c) = &l.cpus {
            put(&mut limits, "NanoCPUs", json!(parse_cpus(c)?));
        }
        put(&mut limits, "MemoryBytes", json!(l.memory.unwrap_or(0)));
        put(&mut limits, "Pids", json!(l.pids.unwrap_or(0)));
        put(&mut m, "Limits", Value::Object(limits));
    }
    if let Some(l) = &r.reservations {
        let mut res = Map::new();
        if let Some(c) = &l.cpus {
            put(&mut res, "NanoCPUs", json!(parse_cpus(c)?));
        }
        put(&mut res, "MemoryBytes", json!(l.memory.unwrap_or(0)));
        let generic: Vec<Value> = l
            .generic_resources
            .iter()
            .map(|(k, v)| json!({ "DiscreteResourceSpec": { "Kind": k, "Value": v } }))
            .collect();
        put(&mut res, "GenericResources", json!(generic));
        put(&mut m, "Reservations", Value::Object(res));
    }
    Ok(Value::Object(m))
}

/// `deploy.restart_policy`, else the legacy `restart` (docker's fallback).
fn restart_policy(s: &Service) -> anyhow::Result<Option<Value>> {
    if let Some(r) = &s.deploy.restart_policy {
        let mut m = Map::new();
        put(
            &mut m,
            "Condition",
            json!(r.condition.clone().unwrap_or_default()),
        );
        if let Some(n) = r.delay {
            m.insert("Delay".into(), json!(n));
        }
        if let Some(n) = r.max_attempts {
            m.insert("MaxAttempts".into(), json!(n));
        }
        if let Some(n) = r.window {
            m.insert("Window".into(), json!(n));
        }
        return Ok(Some(Value::Object(m)));
    }
    let Some(restart) = s.restart.as_deref().filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let (policy, count) = match restart.split_once(':') {
        Some((p, n)) => {
            let n: i64 = n.parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid restart policy format: maximum retry count must be an integer"
                )
            })?;
            if n < 0 {
                bail!("invalid restart policy: maximum retry count cannot be negative");
            }
            (p, n)
        }
        None => (restart, 0),
    };
    let condition = match policy {
        "no" => return Ok(None),
        "always" | "unless-stopped" => "any",
        "on-failure" => "on-failure",
        other => bail!("invalid restart policy: unknown policy '{other}' (must be one of 'no', 'always', 'on-failure', or 'unless-stopped')"),
    };
    let mut m = Map::new();
    m.insert("Condition".into(), json!(condition));
    if count > 0 {
        m.insert("MaxAttempts".into(), json!(count));
    }
    Ok(Some(Value::Object(m)))
}

fn mode(s: &Service) -> anyhow::Result<Value> {
    let replicas = s.deploy.replicas;
    let replicated = |r: Option<u64>| match r {
        Some(n) => json!({ "Replicas": n }),
        None => json!({}),
    };
    Ok(match s.deploy.mode.as_deref().unwrap_or("") {
        "replicated" | "" => json!({ "Replicated": replicated(replicas) }),
        "global" => {
            if replicas.is_some() {
                bail!("replicas can only be used with replicated or replicated-job mode");
            }
            json!({ "Global": {} })
        }
        "replicated-job" => {
            let mut j = Map::new();
            if let Some(n) = replicas {
                j.insert("MaxConcurrent".into(), json!(n));
                j.insert("TotalCompletions".into(), json!(n));
            }
            json!({ "ReplicatedJob": j })
        }
        "global-job" => {
            if replicas.is_some() {
                bail!("replicas can only be used with replicated or replicated-job mode");
            }
            json!({ "GlobalJob": {} })
        }
        other => bail!("unknown mode: {other}"),
    })
}

fn rollout(u: &super::compose::UpdateConfig) -> Value {
    let mut m = Map::new();
    m.insert("Parallelism".into(), json!(u.parallelism.unwrap_or(1)));
    put(&mut m, "Delay", json!(u.delay.unwrap_or(0)));
    put(
        &mut m,
        "FailureAction",
        json!(u.failure_action.clone().unwrap_or_default()),
    );
    put(&mut m, "Monitor", json!(u.monitor.unwrap_or(0)));
    m.insert(
        "MaxFailureRatio".into(),
        json!(u.max_failure_ratio.unwrap_or(0.0)),
    );
    put(&mut m, "Order", json!(u.order.clone().unwrap_or_default()));
    Value::Object(m)
}

/// docker's `opts.EffectiveCapAddCapDrop`: names upper-cased with `CAP_`, `ALL` alone
/// when present, a capability both added and dropped is added.
pub fn effective_caps(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    fn normalize(caps: &[String]) -> Vec<String> {
        let mut out: Vec<String> = caps
            .iter()
            .map(|c| c.trim().to_uppercase())
            .filter(|c| !c.is_empty())
            .map(|c| {
                if c == "ALL" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
    let mut add = normalize(add);
    let mut drop = normalize(drop);
    if add.iter().any(|c| c == "ALL") {
        add = vec!["ALL".into()];
    }
    if drop.iter().any(|c| c == "ALL") {
        drop = vec!["ALL".into()];
    }
    drop.retain(|c| !add.contains(c));
    (add, drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::stack::compose::{load, Env};
    use std::path::Path;

    fn plan_of(yaml: &str) -> anyhow::Result<Plan> {
        let l = load(
            &[("s.yml".into(), yaml.as_bytes().to_vec())],
            Path::new("/w"),
            &Env::new(),
        )?;
        plan(&Namespace("s".into()), &l.config)
    }

    #[test]
    fn a_service_becomes_docker_s_service_spec() {
        let p = plan_of(
            r#"
services:
  web:
    image: fixture/app:1
    command: ["sleep 1000"]
    environment: [B=2, A=1]
    labels: {c: "1"}
    ports: ["8080:80"]
    volumes: ["data:/data:ro", "/etc/hosts:/h"]
    healthcheck: {test: ["CMD", "true"], interval: 1s, retries: 2}
    stop_grace_period: 2s
    cap_add: [net_admin]
    deploy:
      replicas: 2
      labels: {tier: front}
      resources: {limits: {cpus: "1.5", memory: 64M}}
      restart_policy: {condition: on-failure, delay: 200ms}
      update_config: {order: start-first}
volumes:
  data: {}
"#,
        )
        .unwrap();
        assert_eq!(plan_names(&p.networks), ["s_default"]);
        assert_eq!(
            p.networks[0].1,
            json!({"Name": "s_default", "Driver": "overlay",
                   "Labels": {"com.docker.stack.namespace": "s"}})
        );
        let sp = &p.services[0];
        assert_eq!(sp.name, "s_web");
        assert_eq!(
            Value::Object(sp.spec.clone()),
            json!({
                "Name": "s_web",
                "Labels": {"tier": "front", "com.docker.stack.namespace": "s",
                           "com.docker.stack.image": "fixture/app:1"},
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": "fixture/app:1",
                        "Labels": {"c": "1", "com.docker.stack.namespace": "s"},
                        "Args": ["sleep 1000"],
                        "Env": ["A=1", "B=2"],
                        "Mounts": [
                            {"Type": "volume", "Source": "s_data",
                             "VolumeOptions": {"Labels": {"com.docker.stack.namespace": "s"}},
                             "Target": "/data", "ReadOnly": true},
                            {"Type": "bind", "Source": "/etc/hosts", "Target": "/h"},
                        ],
                        "StopGracePeriod": 2_000_000_000i64,
                        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 2},
                        "CapabilityAdd": ["CAP_NET_ADMIN"],
                    },
                    "Resources": {"Limits": {"NanoCPUs": 1_500_000_000i64, "MemoryBytes": 67_108_864}},
                    "RestartPolicy": {"Condition": "on-failure", "Delay": 200_000_000},
                    "Networks": [{"Target": "s_default", "Aliases": ["web"]}],
                    "ForceUpdate": 0,
                },
                "Mode": {"Replicated": {"Replicas": 2}},
                "UpdateConfig": {"Parallelism": 1, "MaxFailureRatio": 0.0, "Order": "start-first"},
                "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                            "PublishedPort": 8080, "PublishMode": "ingress"}]},
            })
        );
    }

    fn plan_names(n: &[(String, Value)]) -> Vec<&str> {
        n.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn networks_names_and_externals() {
        let p = plan_of(
            r#"
services:
  a:
    image: x
    networks:
      front: {aliases: [alpha]}
      ext:
  b:
    image: x
networks:
  front:
    driver_opts: {mtu: 1400}
    labels: [k=v]
    attachable: true
  ext:
    external: true
    name: shared
  unused: {}
"#,
        )
        .unwrap();
        assert_eq!(plan_names(&p.networks), ["s_default", "s_front"]);
        assert_eq!(
            p.networks[1].1,
            json!({"Name": "s_front", "Driver": "overlay", "Options": {"mtu": "1400"},
                   "Attachable": true,
                   "Labels": {"k": "v", "com.docker.stack.namespace": "s"}})
        );
        assert_eq!(p.external_networks, ["shared"]);
        assert_eq!(
            p.services[0].spec["TaskTemplate"]["Networks"],
            json!([{"Target": "s_front", "Aliases": ["alpha", "a"]},
                   {"Target": "shared", "Aliases": ["a"]}])
        );
        let e = plan_of("services:\n  a:\n    image: x\n    networks: [nope]\n").unwrap_err();
        assert_eq!(format!("{e:#}"), "service a: undefined network \"nope\"");
    }

    #[test]
    fn refusals_before_anything_is_created() {
        let m = |y: &str| format!("{:#}", plan_of(y).unwrap_err());
        assert!(m("services:\n  a:\n    command: x\n").contains("service a: image is required"));
        assert_eq!(
            m("services:\n  a:\n    image: x\n    volumes: [\"nope:/d\"]\n"),
            "service a: undefined volume \"nope\""
        );
        assert!(m(
            "services:\n  a:\n    image: x\n    deploy: {resources: {limits: {cpus: \"lots\"}}}\n"
        )
        .contains("failed to parse \"lots\" as a rational number"));
        assert_eq!(
            m("services:\n  a:\n    image: x\n    deploy: {mode: global, replicas: 2}\n"),
            "service a: replicas can only be used with replicated or replicated-job mode"
        );
        assert_eq!(
            m("services:\n  a:\n    image: x\n    deploy: {mode: sideways}\n"),
            "service a: unknown mode: sideways"
        );
        assert_eq!(
            m("services:\n  a:\n    image: x\n    healthcheck: {disable: true, test: [\"CMD\", \"x\"]}\n"),
            "service a: test and disable can't be set at the same time"
        );
        assert_eq!(
            m("services:\n  a:\n    image: x\n    secrets: [nope]\n"),
            "service a: undefined secret \"nope\""
        );
        assert!(
            m("services:\n  a:\n    image: x\nsecrets:\n  k: {file: ./missing}\n")
                .contains("secret k: open /w/missing: no such file or directory")
        );
    }

    #[test]
    fn secrets_configs_and_their_references() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hunter2").unwrap();
        let l = load(
            &[(
                "s.yml".into(),
                b"services:\n  a:\n    image: x\n    secrets: [token, {source: ext, target: t2, uid: \"1\", mode: 0400}]\n    configs: [conf]\nsecrets:\n  token: {file: ./token}\n  ext: {external: true}\nconfigs:\n  conf: {file: ./token, labels: {l: \"1\"}}\n".to_vec(),
            )],
            dir.path(),
            &Env::new(),
        )
        .unwrap();
        let p = plan(&Namespace("s".into()), &l.config).unwrap();
        assert_eq!(
            p.secrets,
            [
                json!({"Name": "s_token", "Labels": {"com.docker.stack.namespace": "s"},
                    "Data": "aHVudGVyMg=="})
            ]
        );
        assert_eq!(p.configs[0]["Name"], "s_conf");
        assert_eq!(p.configs[0]["Labels"]["l"], "1");
        assert_eq!(
            p.services[0].secrets,
            [
                json!({"File": {"Name": "t2", "UID": "1", "GID": "0", "Mode": 0o400}, "SecretName": "ext"}),
                json!({"File": {"Name": "token", "UID": "0", "GID": "0", "Mode": 0o444}, "SecretName": "s_token"}),
            ]
        );
        assert_eq!(p.services[0].configs[0]["ConfigName"], "s_conf");
    }

    #[test]
    fn the_legacy_restart_key_and_modes() {
        let p = plan_of("services:\n  a:\n    image: x\n    restart: on-failure:3\n  b:\n    image: x\n    restart: \"no\"\n  c:\n    image: x\n    deploy: {mode: global}\n").unwrap();
        assert_eq!(
            p.services[0].spec["TaskTemplate"]["RestartPolicy"],
            json!({"Condition": "on-failure", "MaxAttempts": 3})
        );
        assert!(p.services[1].spec["TaskTemplate"]
            .get("RestartPolicy")
            .is_none());
        assert_eq!(p.services[2].spec["Mode"], json!({"Global": {}}));
        assert_eq!(p.services[0].spec["Mode"], json!({"Replicated": {}}));
    }

    #[test]
    fn cpus_and_capabilities_as_docker_reads_them() {
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
        assert_eq!(parse_cpus(".25").unwrap(), 250_000_000);
        assert!(parse_cpus("0.0000000001").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("").is_err());
        let (add, drop) = effective_caps(
            &["net_admin".into(), "CAP_SYS_TIME".into()],
            &["NET_ADMIN".into(), "chown".into()],
        );
        assert_eq!(add, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
        assert_eq!(drop, ["CAP_CHOWN"]);
        let (add, drop) = effective_caps(&["all".into(), "x".into()], &[]);
        assert_eq!(add, ["ALL"]);
        assert!(drop.is_empty());
    }

    #[test]
    fn service_level_tmpfs_and_group_add() {
        let p = plan_of("services:\n  a:\n    image: x\n    tmpfs: [\"/run:size=1m,mode=1777\"]\n    group_add: [wheel, 100]\n").unwrap();
        let cs = &p.services[0].spec["TaskTemplate"]["ContainerSpec"];
        assert_eq!(
            cs["Mounts"],
            json!([{"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 1_048_576, "Mode": 0o1777}}])
        );
        assert_eq!(cs["Groups"], json!(["wheel", "100"]));
        assert!(plan_of("services:\n  a:\n    image: x\n    tmpfs: /run:exec\n").is_err());
    }

    #[test]
    fn names_scope_and_descope() {
        let ns = Namespace("app".into());
        assert_eq!(ns.scope("web"), "app_web");
        assert_eq!(ns.descope("app_web"), "web");
        assert_eq!(ns.descope("other_web"), "other_web");
    }
}
