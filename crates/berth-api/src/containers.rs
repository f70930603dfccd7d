//! `/containers/...`: create, start, wait, kill, remove, list, inspect, logs.
//!
//! Only what the engine runs today: no log follow; it is refused with a 400 saying "not
//! supported yet" rather than half-served. Attach and resize are in `attach.rs`.
//! Containers are found by full ID, name or unique ID prefix (the engine resolves them).

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::{
    ContainerOptions, ContainerRecord, ContainerState, ContainerSummary, CreateOptions,
    DeviceMapping, Engine, EngineError, EventType, HealthAction, HealthState, LogQuery, LogRecord,
    LogSink, NetAttachment, NetRequest, NetworkMode, PortBinding, RestartPolicy, RunSettings,
    WaitCondition,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::cgroups::{patch_inspect, ResourcesBody};
use crate::container_net;
use crate::error::ApiError;
use crate::hijack::{frame, MULTIPLEXED, RAW, STDERR, STDOUT};
use crate::images::blocking;
use crate::mounts::{config_volumes_json, mount_options, mounts_json};
use crate::params::Params;
use berth_engine::networks::DEFAULT_NETWORK;

/// Go's zero time, which Docker reports for times that never happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn not_supported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported yet by berth"))
}

// ---------------------------------------------------------------------------------
// Create

/// A string or a list of strings (Docker's `StrSlice`: Entrypoint and Cmd).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(s) => vec![s],
            StrSlice::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LogConfigBody {
    #[serde(rename = "Type")]
    kind: String,
    config: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfigBody {
    network_mode: Option<String>,
    readonly_rootfs: bool,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    security_opt: Option<Vec<String>>,
    /// `null`/absent: Docker's defaults; `[]` is what the docker CLI sends for
    /// `--security-opt systempaths=unconfined`.
    masked_paths: Option<Vec<String>>,
    readonly_paths: Option<Vec<String>>,
    privileged: bool,
    binds: Option<Vec<String>>,
    /// Docker's `Resources` (memory, CPU, pids, blkio, ulimits), embedded in HostConfig:
    /// decoded from the same object (see `host_config_body`; `cgroups.rs`).
    #[serde(skip)]
    resources: ResourcesBody,
    log_config: Option<LogConfigBody>,
    /// `{"80/tcp": [{"HostIp","HostPort"}]}` (`-p`).
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    publish_all_ports: bool,
    restart_policy: Option<RestartPolicyBody>,
    auto_remove: bool,
    init: Option<bool>,
    mounts: Option<Vec<serde_json::Value>>,
    tmpfs: Option<BTreeMap<String, String>>,
    volume_driver: String,
    shm_size: i64,
    sysctls: Option<BTreeMap<String, String>>,
    devices: Option<Vec<DeviceBody>>,
    volumes_from: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    links: Option<Vec<String>>,
    pid_mode: Option<String>,
    ipc_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    userns_mode: Option<String>,
    cgroupns_mode: Option<String>,
    group_add: Option<Vec<String>>,
    oom_score_adj: Option<i64>,
    runtime: Option<String>,
    /// `[height, width]` of the TTY (the docker CLI sends its terminal's size).
    console_size: Option<[u64; 2]>,
}

/// Docker's `DeviceMapping` (`--device /dev/x:/dev/y:rw`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceBody {
    #[serde(deserialize_with = "crate::networks::nullable")]
    path_on_host: String,
    #[serde(deserialize_with = "crate::networks::nullable")]
    path_in_container: String,
    #[serde(deserialize_with = "crate::networks::nullable")]
    cgroup_permissions: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PortBindingBody {
    #[serde(deserialize_with = "crate::networks::nullable")]
    host_ip: String,
    #[serde(deserialize_with = "crate::networks::nullable")]
    host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfigBody {
    endpoints_config: Option<BTreeMap<String, Option<crate::networks::EndpointBody>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: String,
    maximum_retry_count: i64,
}

impl RestartPolicyBody {
    fn policy(&self) -> RestartPolicy {
        RestartPolicy {
            name: self.name.clone(),
            maximum_retry_count: self.maximum_retry_count,
        }
    }
}

/// The label through which the docker CLI and compose (which have no flag for it) ask
/// for `--health-on-failure`.
pub(crate) const HEALTH_ON_FAILURE_LABEL: &str = "berth.health-on-failure";

/// Docker's `ContainerConfig` with a `HostConfig` member (the create body).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateBody {
    image: String,
    cmd: Option<StrSlice>,
    entrypoint: Option<StrSlice>,
    env: Option<Vec<String>>,
    working_dir: String,
    user: String,
    hostname: String,
    domainname: String,
    labels: Option<BTreeMap<String, String>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    healthcheck: Option<berth_image::model::HealthConfig>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// The deprecated container-wide `--mac-address` (API < 1.44; the Docker SDK for
    /// Python still sends it): the primary network's endpoint's.
    mac_address: String,
    #[serde(deserialize_with = "host_config_body")]
    host_config: Option<HostConfigBody>,
    networking_config: Option<NetworkingConfigBody>,
}

/// HostConfig and the `Resources` embedded in it, both from the one object, with the
/// API's decoding rules (`decode.rs`).
fn host_config_body<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<HostConfigBody>, D::Error> {
    use serde::de::Error;
    let v = crate::decode::object(d)?;
    if v.is_null() {
        return Ok(None);
    }
    let mut hc: HostConfigBody = crate::decode::from_value(v.clone()).map_err(D::Error::custom)?;
    hc.resources = crate::decode::from_value(v).map_err(D::Error::custom)?;
    Ok(Some(hc))
}

/// The network part of a create body (`CreateOptions.net`): NetworkMode, ports, DNS,
/// extra hosts, the domain name and the endpoints of NetworkingConfig. The engine
/// checks the values (ports, addresses, names); links are refused here.
fn net_request(
    hc: &mut HostConfigBody,
    exposed: Option<BTreeMap<String, serde_json::Value>>,
    domainname: String,
    mac_address: String,
    networking: Option<NetworkingConfigBody>,
) -> Result<NetRequest, ApiError> {
    let mut endpoints = BTreeMap::new();
    let mut endpoint_links = BTreeMap::new();
    for (name, ep) in networking
        .and_then(|n| n.endpoints_config)
        .unwrap_or_default()
    {
        let mut ep = ep.unwrap_or_default();
        let links = ep.take_links();
        if !links.is_empty() {
            endpoint_links.insert(name.clone(), links);
        }
        let settings = ep
            .settings()
            .map_err(|e| ApiError::new(e.status, format!("network {name}: {}", e.message)))?;
        // The docker CLI names the default network `default` (as NetworkMode does);
        // with nothing in it the entry says nothing more than the mode.
        if name == "default" {
            if settings == NetAttachment::default() {
                continue;
            }
            endpoints.insert(DEFAULT_NETWORK.to_string(), settings);
            continue;
        }
        endpoints.insert(name, settings);
    }
    let port_bindings = hc
        .port_bindings
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let list = v
                .unwrap_or_default()
                .into_iter()
                .map(|b| PortBinding {
                    host_ip: b.host_ip,
                    host_port: b.host_port,
                })
                .collect();
            (k, list)
        })
        .collect();
    Ok(NetRequest {
        mode: hc.network_mode.clone().unwrap_or_default(),
        endpoints,
        port_bindings,
        publish_all: hc.publish_all_ports,
        exposed_ports: exposed.unwrap_or_default().into_keys().collect(),
        dns: hc.dns.take().unwrap_or_default(),
        dns_search: hc.dns_search.take().unwrap_or_default(),
        dns_options: hc.dns_options.take().unwrap_or_default(),
        extra_hosts: hc.extra_hosts.take().unwrap_or_default(),
        domainname,
        mac_address,
        links: hc.links.take().unwrap_or_default(),
        endpoint_links,
    })
}

use berth_engine::config::parse_size;

pub(crate) fn create_options(
    body: CreateBody,
    name: Option<String>,
) -> Result<CreateOptions, ApiError> {
    let mut hc = body.host_config.unwrap_or_default();
    let net = net_request(
        &mut hc,
        body.exposed_ports,
        body.domainname,
        body.mac_address,
        body.networking_config,
    )?;
    if hc.shm_size < 0 {
        // Docker's words (daemon/container_linux.go).
        return Err(ApiError::bad_request("SHM size can not be less than 0"));
    }
    // Namespaces: the container's own (empty, `private`), or the host's (`host`, a
    // policy the engine checks). `--userns=host`: no user namespace although the daemon
    // remaps (`userns_remap`); `--userns=auto[:size=N]`: one with a range of its own (the
    // engine parses and allocates it).
    let mut host_ns = berth_engine::HostNamespaces::default();
    let userns_auto = match hc.userns_mode.as_deref() {
        Some(m) if m == "auto" || m.starts_with("auto:") => hc.userns_mode.take(),
        _ => None,
    };
    for (value, what, flag) in [
        (&hc.pid_mode, "--pid", Some(&mut host_ns.pid)),
        (&hc.ipc_mode, "--ipc", Some(&mut host_ns.ipc)),
        (&hc.uts_mode, "--uts", Some(&mut host_ns.uts)),
        (&hc.cgroupns_mode, "--cgroupns", Some(&mut host_ns.cgroup)),
        (&hc.userns_mode, "--userns", Some(&mut host_ns.user)),
    ] {
        let value = value.as_deref().unwrap_or("");
        match (value, flag) {
            ("" | "private", _) => {}
            // Docker's IPC modes that are the container's own namespace.
            ("shareable", _) if what == "--ipc" => {}
            ("host", Some(f)) => *f = true,
            _ => return Err(not_supported(&format!("{what}={value}"))),
        }
    }
    if hc.oom_score_adj.is_some_and(|o| o != 0) {
        return Err(not_supported("--oom-score-adj"));
    }
    if let Some(rt) = hc.runtime.as_deref().filter(|r| !r.is_empty()) {
        if rt != "runc" && rt != "berth" {
            return Err(not_supported(&format!("runtime {rt:?}")));
        }
    }
    // The engine resolves the mode (a network name, `bridge`, `host`, `none`) and sets
    // the runtime's network from it; `host` is said here too so both agree.
    let network = if net.mode == "host" {
        NetworkMode::Host
    } else {
        NetworkMode::None
    };
    let mut runtime = ContainerOptions {
        host_namespaces: host_ns,
        args_override: body.cmd.map(StrSlice::into_vec).filter(|v| !v.is_empty()),
        entrypoint_override: body.entrypoint.map(|e| {
            let v = e.into_vec();
            // `--entrypoint ""` arrives as `[""]`: clear the image's entrypoint.
            if v.iter().all(|s| s.is_empty()) {
                Vec::new()
            } else {
                v
            }
        }),
        env: body.env.unwrap_or_default(),
        workdir: Some(body.working_dir).filter(|w| !w.is_empty()),
        user: Some(body.user).filter(|u| !u.is_empty()),
        read_only: hc.readonly_rootfs,
        privileged: hc.privileged,
        cap_add: hc.cap_add.unwrap_or_default(),
        cap_drop: hc.cap_drop.unwrap_or_default(),
        security_opt: hc.security_opt.unwrap_or_default(),
        masked_paths: hc.masked_paths,
        readonly_paths: hc.readonly_paths,
        network,
        hostname: body.hostname.clone(),
        group_add: hc.group_add.clone().unwrap_or_default(),
        shm_size: (hc.shm_size > 0).then_some(hc.shm_size as u64),
        sysctls: hc.sysctls.clone().unwrap_or_default(),
        tty: body.tty,
        // Checked (permissions, paths, the host's nodes) and resolved by the engine.
        devices: hc
            .devices
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|d| DeviceMapping {
                path_on_host: d.path_on_host,
                path_in_container: d.path_in_container,
                cgroup_permissions: d.cgroup_permissions,
            })
            .collect(),
        device_cgroup_rules: hc.resources.device_cgroup_rules.take().unwrap_or_default(),
        ..ContainerOptions::default()
    };
    let mounts = mount_options(
        hc.binds,
        hc.mounts,
        hc.tmpfs,
        body.volumes,
        hc.volumes_from,
        &hc.volume_driver,
    )?;
    let (resources, ulimits) = hc.resources.into_create()?;
    runtime.resources = resources;
    runtime.ulimits = ulimits;
    let labels = body.labels.unwrap_or_default();
    let settings = RunSettings {
        restart_policy: hc
            .restart_policy
            .as_ref()
            .map(RestartPolicyBody::policy)
            .unwrap_or_default(),
        auto_remove: hc.auto_remove,
        stop_signal: body.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: body.stop_timeout,
        healthcheck: body.healthcheck,
        health_on_failure: HealthAction::parse(
            labels
                .get(HEALTH_ON_FAILURE_LABEL)
                .map(String::as_str)
                .unwrap_or(""),
        )
        .map_err(|e| {
            ApiError::bad_request(format!("label {HEALTH_ON_FAILURE_LABEL}: {}", e.message))
        })?,
        init: hc.init.unwrap_or(false),
        ..RunSettings::default()
    };
    let mut opts = CreateOptions {
        runtime,
        name,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        console_size: hc
            .console_size
            .filter(|[h, w]| *h > 0 && *w > 0)
            .map(|[h, w]| [h.min(u16::MAX.into()) as u16, w.min(u16::MAX.into()) as u16]),
        labels,
        settings,
        mounts,
        net,
        userns_auto,
        ..CreateOptions::default()
    };
    if let Some(lc) = hc.log_config {
        if lc.kind == "none" {
            // Output is not kept; `docker logs` then says so (501), attach still works.
            if let Some(k) = lc.config.keys().next() {
                return Err(ApiError::bad_request(format!(
                    "unknown log opt '{k}' for none log driver"
                )));
            }
            opts.log_driver = "none".into();
            return Ok(opts);
        }
        if !lc.kind.is_empty() && lc.kind != "json-file" {
            return Err(not_supported(&format!("log driver {:?}", lc.kind)));
        }
        for (k, v) in &lc.config {
            match k.as_str() {
                "max-size" => {
                    opts.log_max_size = Some(parse_size(v).ok_or_else(|| {
                        ApiError::bad_request(format!("invalid log option max-size {v:?}"))
                    })?)
                }
                "max-file" => {
                    opts.log_max_file = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid log option max-file {v:?}"))
                    })?)
                }
                _ => return Err(not_supported(&format!("log option {k:?}"))),
            }
        }
        opts.log_opts = lc.config.clone();
    }
    Ok(opts)
}

/// `POST /containers/create?name=`.
pub(crate) async fn create(
    State(engine): State<Engine>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Response {
    let body: CreateBody = match crate::decode::body(&body, "create body") {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if body.image.is_empty() {
        return ApiError::bad_request("no image specified").into_response();
    }
    let image = body.image.clone();
    // berth runs linux/amd64 images only (as it pulls them); another platform is refused,
    // not ignored.
    if let Some(p) = params.non_empty("platform") {
        if !matches!(p, "linux/amd64" | "linux/x86_64" | "amd64") {
            return not_supported(&format!("platform {p:?} (berth runs linux/amd64)"))
                .into_response();
        }
    }
    let opts = match create_options(body, params.non_empty("name").map(str::to_string)) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let result = blocking(move || {
        engine.create_container(&image, &opts).map_err(|e| {
            // A network not found stays as the engine says it.
            if e.kind == berth_types::ErrorKind::NotFound && e.message.starts_with("No such image")
            {
                EngineError::not_found(format!("No such image: {image}"))
            } else {
                e
            }
        })
    })
    .await;
    match result {
        Ok(created) => (
            StatusCode::CREATED,
            Json(json!({ "Id": created.id, "Warnings": created.warnings })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------
// Start, wait, kill, remove

/// `POST /containers/{id}/start`.
pub(crate) async fn start(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    // Docker answers 304 when the container already runs.
    let check = {
        let (engine, id) = (engine.clone(), id.clone());
        blocking(move || {
            let rec = engine.container(&id)?;
            engine.container_state(&rec.id)
        })
        .await
    };
    match check {
        Ok(ContainerState::Running { .. }) => return StatusCode::NOT_MODIFIED.into_response(),
        Ok(_) => {}
        Err(e) => return e.into_response(),
    }
    match blocking(move || engine.start_container(&id)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed`.
///
/// Follows the engine's events (subscribed before the state is read, so no exit is
/// missed): the container's `die` gives the exit code; with `removed`, its `destroy`
/// ends the wait. A client that goes away ends it too.
pub(crate) async fn wait(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let cond = match WaitCondition::parse(params.get("condition").unwrap_or("")) {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let sub = engine.subscribe_events();
    let now = {
        let engine = engine.clone();
        blocking(move || {
            let rec = engine.container(&id)?;
            let restarting = engine.is_restarting(&rec.id);
            let state = engine.container_state(&rec.id)?;
            Ok((rec.id, state, restarting))
        })
        .await
    };
    let (id, state, restarting) = match now {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if cond == WaitCondition::NotRunning && !restarting {
        match state {
            ContainerState::Exited(x) => return wait_reply(x.exit_code),
            // Docker's not-running condition is met at once by a created container.
            ContainerState::Created => return wait_reply(0),
            ContainerState::Dead => return wait_reply(255),
            ContainerState::Running { .. } => {}
        }
    }
    let last_code = match &state {
        ContainerState::Exited(x) => x.exit_code,
        _ => 0,
    };
    // The status line goes out now, the body at the exit: the docker CLI waits for the
    // headers before it starts the container (`run` without -d), as Docker sends them.
    let done = wait_events(engine, id, cond, last_code, sub);
    let body = futures::stream::once(async move {
        let v = match done.await {
            Ok(code) => json!({ "StatusCode": code, "Error": null }),
            Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.message } }),
        };
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Ok::<Bytes, std::io::Error>(Bytes::from(b))
    });
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Follows the events until `cond` is met; returns the exit code.
async fn wait_events(
    engine: Engine,
    id: String,
    cond: WaitCondition,
    mut last_code: i32,
    mut sub: berth_engine::Subscription,
) -> Result<i32, ApiError> {
    loop {
        match sub.live.recv().await {
            Ok(ev) if ev.actor == id && ev.typ == EventType::Container => {
                match ev.action.as_str() {
                    "die" => {
                        last_code = ev
                            .attributes
                            .get("exitCode")
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(255);
                        if cond != WaitCondition::Removed {
                            return Ok(last_code);
                        }
                    }
                    "destroy" => return Ok(last_code),
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Missed events: read the state instead.
                let engine = engine.clone();
                let id2 = id.clone();
                match blocking(move || engine.container_state(&id2)).await {
                    Ok(ContainerState::Exited(x)) if cond != WaitCondition::Removed => {
                        return Ok(x.exit_code)
                    }
                    Err(_) if cond == WaitCondition::Removed => return Ok(last_code),
                    Err(e) => return Err(e),
                    _ => {}
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Err(ApiError::internal("the engine's event bus closed"))
            }
        }
    }
}

fn wait_reply(code: i32) -> Response {
    Json(json!({ "StatusCode": code, "Error": null })).into_response()
}

use berth_engine::lifecycle::parse_signal;

/// `POST /containers/{id}/kill?signal=`.
pub(crate) async fn kill(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let signal = match params.non_empty("signal") {
        None => 9, // SIGKILL
        Some(s) => match parse_signal(s) {
            Some(n) => n,
            None => return ApiError::bad_request(format!("invalid signal: {s}")).into_response(),
        },
    };
    match blocking(move || engine.kill_container(&id, signal)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `t` (seconds; Docker ≥ 1.42 also `signal`) of stop and restart.
fn stop_params(params: &Params) -> Result<(Option<i64>, Option<i32>), ApiError> {
    let t = match params.non_empty("t") {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for t: {t:?}")))?,
        ),
    };
    let sig = match params.non_empty("signal") {
        None => None,
        Some(s) => Some(
            parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("invalid signal: {s}")))?,
        ),
    };
    Ok((t, sig))
}

/// `POST /containers/{id}/stop?t=&signal=`: 304 when it was not running.
pub(crate) async fn stop(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let (t, sig) = match stop_params(&params) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.stop_container(&id, t, sig)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::NOT_MODIFIED.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /containers/{id}/restart?t=`.
pub(crate) async fn restart(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let (t, sig) = match stop_params(&params) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if sig.is_some() {
        return not_supported("a signal on restart").into_response();
    }
    match blocking(move || engine.restart_container(&id, t)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /containers/{id}/rename?name=`.
pub(crate) async fn rename(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let Some(name) = params.non_empty("name").map(str::to_string) else {
        return ApiError::bad_request("rename: the new name is required (name=)").into_response();
    };
    match blocking(move || engine.rename_container(&id, &name)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /containers/prune?filters=`.
pub(crate) async fn prune(State(engine): State<Engine>, params: Params) -> Response {
    let filters = match params.filters() {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.prune_containers(&filters)).await {
        Ok((ids, bytes)) => Json(json!({
            "ContainersDeleted": if ids.is_empty() { Value::Null } else { json!(ids) },
            "SpaceReclaimed": bytes,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /containers/{parent}/{alias}?link=1`: a legacy link's name has a slash (the
/// docker CLI sends `docker rm --link /web/db` as `web/db`).
pub(crate) async fn remove_link_path(
    state: State<Engine>,
    Path((parent, alias)): Path<(String, String)>,
    params: Params,
) -> Response {
    remove(state, Path(format!("{parent}/{alias}")), params).await
}

/// `DELETE /containers/{id}?force=&v=`: `v` also removes the anonymous volumes the
/// container created (named volumes are kept).
pub(crate) async fn remove(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let force = match params.bool("force") {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let volumes = match params.bool("v") {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let link = match params.bool("link") {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if link {
        return match blocking(move || engine.remove_link(&id)).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => e.into_response(),
        };
    }
    match blocking(move || engine.remove_container_and_volumes(&id, force, volumes)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------
// List and inspect

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Docker's `units.HumanDuration`: "Less than a second", "3 seconds", "About a minute"...
fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let mins = secs / 60;
    let hours = mins / 60;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".into()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

fn since(t: &str) -> String {
    match parse_time(t) {
        Some(t) => human_duration(chrono::Utc::now() - t),
        None => "Less than a second".into(),
    }
}

/// Docker's `State` word and `Status` text of a container.
fn state_words(c: &ContainerSummary) -> (&'static str, String) {
    if c.restarting {
        let when = match &c.state {
            ContainerState::Exited(x) => since(&x.finished_at),
            _ => "Less than a second".into(),
        };
        let code = match &c.state {
            ContainerState::Exited(x) => x.exit_code,
            _ => 0,
        };
        return ("restarting", format!("Restarting ({code}) {when} ago"));
    }
    match &c.state {
        ContainerState::Created => ("created", "Created".into()),
        ContainerState::Running { started_at, .. } if c.paused => {
            ("paused", format!("Up {} (Paused)", since(started_at)))
        }
        ContainerState::Running { started_at, .. } => {
            let health = match c.status.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            ("running", format!("Up {}{health}", since(started_at)))
        }
        ContainerState::Exited(x) => (
            "exited",
            format!("Exited ({}) {} ago", x.exit_code, since(&x.finished_at)),
        ),
        ContainerState::Dead => ("dead", "Dead".into()),
    }
}

/// The command line as `docker ps` shows it.
fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Docker's container name: `/name` (or `/` and the short ID for a nameless record).
pub(crate) fn docker_name(rec: &ContainerRecord) -> String {
    if rec.name.is_empty() {
        format!("/{}", &rec.id[..12])
    } else {
        format!("/{}", rec.name)
    }
}

fn summary_json(c: &ContainerSummary, names: &[String]) -> Value {
    let rec = &c.record;
    let (state_word, status) = state_words(c);
    let created = parse_time(&rec.created).map(|t| t.timestamp()).unwrap_or(0);
    json!({
        "Id": rec.id,
        "Names": names,
        "Image": rec.image,
        "ImageID": rec.image_id.to_string(),
        "Command": command_line(&rec.args),
        "Created": created,
        "Ports": [],
        "Labels": rec.labels,
        "State": state_word,
        "Status": status,
        "HostConfig": { "NetworkMode": if rec.network_host { "host" } else { "none" } },
        "NetworkSettings": { "Networks": {} },
        "Mounts": mounts_json(rec),
    })
}

/// Docker's `docker ps` filters berth answers.
const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "exited", "health", "ancestor", "before", "since", "network",
    "publish", "expose",
];

/// Whether a container passes the list filters (values of one filter are ORed, filters
/// ANDed, as Docker).
fn list_match(
    c: &ContainerSummary,
    f: &berth_engine::Filters,
    all: &[ContainerSummary],
    names: &[String],
) -> bool {
    let rec = &c.record;
    let any = |name: &str, pred: &dyn Fn(&str) -> bool| {
        let v = f.get(name);
        v.is_empty() || v.iter().any(|x| pred(x))
    };
    let (state_word, _) = state_words(c);
    let health = match c.status.health.as_ref().map(|h| h.status.as_str()) {
        Some(h) if matches!(c.state, ContainerState::Running { .. }) => h.to_string(),
        _ if rec.run.healthcheck.is_some() => "starting".to_string(),
        _ => "none".to_string(),
    };
    let exit_code = match &c.state {
        ContainerState::Exited(x) => Some(x.exit_code),
        _ => None,
    };
    let created_of = |name: &str| -> Option<String> {
        all.iter()
            .find(|o| {
                o.record.id == name
                    || o.record.name == name.trim_start_matches('/')
                    || (name.len() >= 3 && o.record.id.starts_with(name))
            })
            .map(|o| o.record.created.clone())
    };
    any("id", &|v| rec.id.starts_with(v))
        && any("name", &|v| {
            // Docker matches the container's own name (not the `/parent/alias` names its
            // legacy links give it, which Names lists) as a regular expression; berth as a
            // substring, which is what plain names give in both.
            names
                .first()
                .is_some_and(|n| n.contains(v.trim_start_matches('^')))
        })
        && f.labels_match("label", &rec.labels)
        && any("status", &|v| v == state_word)
        && any("exited", &|v| {
            exit_code.is_some_and(|c| v.parse::<i32>().is_ok_and(|x| x == c))
        })
        && any("health", &|v| v == health)
        && any("ancestor", &|v| {
            rec.image == v
                || rec.image_id.to_string() == v
                || rec
                    .image_id
                    .to_string()
                    .trim_start_matches("sha256:")
                    .starts_with(v)
        })
        && any("before", &|v| {
            created_of(v).is_some_and(|t| rec.created < t)
        })
        && any("since", &|v| created_of(v).is_some_and(|t| rec.created > t))
}

/// `GET /containers/json?all=&limit=&filters=`.
pub(crate) async fn list(State(engine): State<Engine>, params: Params) -> Response {
    let all = match params.bool("all") {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let filters = match params.filters() {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = filters.check(LIST_FILTERS) {
        return ApiError::from(e).into_response();
    }
    // A status filter lists stopped containers too.
    let all = all || !filters.get("status").is_empty() || !filters.get("exited").is_empty();
    let limit: Option<usize> = match params.int("limit") {
        Ok(l) => l.filter(|l| *l > 0).map(|l| l as usize),
        Err(e) => return e.into_response(),
    };
    let listed = blocking(move || {
        let rows = engine.list_containers()?;
        let live: BTreeMap<String, berth_engine::ContainerNet> = rows
            .iter()
            .filter_map(|c| {
                engine
                    .container_net(&c.record.id)
                    .map(|n| (c.record.id.clone(), n))
            })
            .collect();
        let records: Vec<ContainerRecord> = rows.iter().map(|c| c.record.clone()).collect();
        let links = engine.container_link_names(&records);
        Ok((rows, live, container_net::net_names(&engine), links))
    })
    .await;
    match listed {
        Ok((rows, live, names, links)) => {
            let mut out: Vec<Value> = Vec::new();
            for c in rows.iter().filter(|c| {
                all || matches!(c.state, ContainerState::Running { .. }) || c.restarting
            }) {
                let l = live.get(&c.record.id);
                match container_net::filter_match(&filters, &c.record, l, &names) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return e.into_response(),
                }
                let mut cnames = vec![docker_name(&c.record)];
                cnames.extend(links.get(&c.record.id).into_iter().flatten().cloned());
                if !list_match(c, &filters, &rows, &cnames) {
                    continue;
                }
                if out.len() >= limit.unwrap_or(usize::MAX) {
                    break;
                }
                let mut doc = summary_json(c, &cnames);
                container_net::patch_summary(&mut doc, &c.record, l, &names);
                out.push(doc);
            }
            Json(out).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn health_json(h: &HealthState) -> Value {
    json!({
        "Status": h.status,
        "FailingStreak": h.failing_streak,
        "Log": h.log.iter().map(|r| json!({
            "Start": r.start,
            "End": r.end,
            "ExitCode": r.exit_code,
            "Output": r.output,
        })).collect::<Vec<_>>(),
    })
}

fn inspect_json(c: &ContainerSummary, log_path: &std::path::Path) -> Value {
    let (rec, state) = (&c.record, &c.state);
    let (status, _) = state_words(c);
    let (pid, exit_code, oom, started, finished) = match state {
        ContainerState::Running { pid, started_at } => {
            (*pid, 0, false, started_at.clone(), ZERO_TIME.to_string())
        }
        ContainerState::Exited(x) => (
            0,
            x.exit_code,
            x.oom_killed,
            x.started_at.clone(),
            x.finished_at.clone(),
        ),
        _ => (0, 0, false, ZERO_TIME.to_string(), ZERO_TIME.to_string()),
    };
    let network = if rec.network_host { "host" } else { "none" };
    let (path, args) = match rec.args.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let run = &rec.run;
    let mut state_json = json!({
        "Status": status,
        "Running": matches!(state, ContainerState::Running { .. }),
        "Paused": false,
        "Restarting": c.restarting,
        "OOMKilled": oom,
        "Dead": matches!(state, ContainerState::Dead),
        "Pid": pid,
        "ExitCode": exit_code,
        "Error": if matches!(state, ContainerState::Dead) {
            "the container's shim is gone without an exit status"
        } else {
            ""
        },
        "StartedAt": started,
        "FinishedAt": finished,
    });
    // Docker: no Health until the container's first start.
    let never_started = matches!(state, ContainerState::Created) && c.status.health.is_none();
    if run.healthcheck.is_some() && !never_started {
        let h = c.status.health.clone().unwrap_or_else(|| HealthState {
            status: if matches!(state, ContainerState::Running { .. }) {
                "starting".into()
            } else {
                "unhealthy".into()
            },
            ..HealthState::default()
        });
        state_json["Health"] = health_json(&h);
    }
    let healthcheck = run.healthcheck.as_ref().map(|h| {
        json!({
            "Test": h.test,
            "Interval": h.interval.unwrap_or(0),
            "Timeout": h.timeout.unwrap_or(0),
            "StartPeriod": h.start_period.unwrap_or(0),
            "StartInterval": h.start_interval.unwrap_or(0),
            "Retries": h.retries.unwrap_or(0),
        })
    });
    let hostname = if run.hostname.is_empty() {
        rec.id[..12].to_string()
    } else {
        run.hostname.clone()
    };
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": path,
        "Args": args,
        "State": state_json,
        "Image": rec.image_id.to_string(),
        "Name": docker_name(rec),
        "RestartCount": c.status.restart_count,
        "Driver": "overlayfs",
        "Platform": "linux",
        // No file with the `none` log driver (Docker shows an empty path).
        "LogPath": if rec.log_driver == "none" { std::path::Path::new("") } else { log_path },
        "HostConfig": {
            "NetworkMode": network,
            "Privileged": rec.privileged,
            "ReadonlyRootfs": rec.read_only,
            "MaskedPaths": rec.masked_paths,
            "ReadonlyPaths": rec.readonly_paths,
            "LogConfig": {
                "Type": if rec.log_driver == "none" { "none" } else { "json-file" },
                // What was asked (Docker's echo); the daemon's defaults apply all the same.
                "Config": rec.log_opts.clone().unwrap_or_else(|| BTreeMap::from([
                    ("max-size".to_string(), rec.log_max_size.to_string()),
                    ("max-file".to_string(), rec.log_max_file.to_string()),
                ])),
            },
            "CgroupParent": "",
            "Runtime": "runc",
            "PidMode": if rec.host_namespaces.pid { "host" } else { "" },
            "IpcMode": if rec.host_namespaces.ipc { "host" } else { "private" },
            "UTSMode": if rec.host_namespaces.uts { "host" } else { "" },
            "UsernsMode": if rec.host_namespaces.user { "host" } else { rec.userns_mode.as_str() },
            "CgroupnsMode": if rec.host_namespaces.cgroup { "host" } else { "private" },
            "Isolation": "",
            "AutoRemove": run.auto_remove,
            "Init": run.init,
            "RestartPolicy": {
                "Name": run.restart_policy.display_name(),
                "MaximumRetryCount": run.restart_policy.maximum_retry_count,
            },
            "Binds": rec.mount_config.binds,
            "VolumesFrom": rec.mount_config.volumes_from,
        },
        "Mounts": mounts_json(rec),
        "Config": {
            "Hostname": hostname,
            "User": run.user,
            "Env": run.env,
            "Entrypoint": run.entrypoint,
            "Cmd": run.cmd,
            "WorkingDir": run.working_dir,
            "Image": rec.image,
            "Labels": rec.labels,
            "StopSignal": run.stop_signal,
            "StopTimeout": run.stop_timeout,
            "Healthcheck": healthcheck,
            "Tty": rec.tty,
            "OpenStdin": rec.open_stdin,
            "StdinOnce": rec.stdin_once,
            "AttachStdin": rec.attach_stdin,
            "AttachStdout": rec.attach_stdout,
            "AttachStderr": rec.attach_stderr,
            "Volumes": config_volumes_json(rec),
        },
        "NetworkSettings": { "Networks": {} },
    })
}

/// `GET /containers/{parent}/{alias}/json`: a legacy link's name names its target.
pub(crate) async fn inspect_link_path(
    state: State<Engine>,
    Path((parent, alias)): Path<(String, String)>,
) -> Response {
    inspect(state, Path(format!("{parent}/{alias}"))).await
}

/// `GET /containers/{id}/json`.
pub(crate) async fn inspect(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let result = blocking(move || {
        let c = engine.container_summary(&id)?;
        let log = engine.container_log_path(&c.record);
        let execs = engine.container_exec_ids(&c.record.id);
        let live = engine.container_net(&c.record.id);
        let names = container_net::net_names(&engine);
        // berth's own field: what confines the container (null if its spec is gone).
        let confinement = engine.container_confinement(&c.record).ok();
        let links = engine.container_links(&c.record);
        Ok((c, log, execs, live, names, confinement, links))
    })
    .await;
    match result {
        Ok((c, log, execs, live, names, confinement, links)) => {
            let mut doc = inspect_json(&c, &log);
            doc["Confinement"] = json!(confinement);
            if let Some(dir) = log.parent() {
                container_net::patch_inspect(&mut doc, &c.record, live.as_ref(), &names, dir);
            }
            // Docker: the running execs' IDs, null when there are none.
            doc["ExecIDs"] = if execs.is_empty() {
                Value::Null
            } else {
                json!(execs)
            };
            patch_inspect(&mut doc, &c.record, c.paused);
            // HostConfig.Mounts and Tmpfs are omitted when empty, as Docker does.
            let rec = &c.record;
            if let Some(hc) = doc.get_mut("HostConfig").and_then(Value::as_object_mut) {
                // Docker: `/target:/self/alias` per legacy link, null when none.
                hc.insert(
                    "Links".into(),
                    if links.is_empty() {
                        Value::Null
                    } else {
                        json!(links)
                    },
                );
                if let Some(m) = &rec.mount_config.mounts {
                    hc.insert("Mounts".into(), json!(m));
                }
                if let Some(t) = &rec.mount_config.tmpfs {
                    hc.insert("Tmpfs".into(), json!(t));
                }
            }
            Json(doc).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /containers/{id}/changes`: `[{"Path","Kind"}]` (0 modified, 1 added, 2
/// deleted), `null` when nothing changed (as Docker).
pub(crate) async fn changes(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match blocking(move || engine.container_changes(&id)).await {
        Ok(list) if list.is_empty() => Json(Value::Null).into_response(),
        Ok(list) => Json(
            list.iter()
                .map(|c| json!({"Path": c.path, "Kind": c.kind as u8}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------
// Logs

/// Log `since`/`until`: Unix seconds with an optional fraction, as the docker CLI sends
/// them (it turns `10m` and RFC 3339 into that), or RFC 3339. `0` means unset.
fn log_time(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = params.non_empty(name).filter(|v| *v != "0") else {
        return Ok(None);
    };
    crate::events::parse_time(v).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid value for {name}: {v:?}: expected Unix seconds or RFC 3339"
        ))
    })
}

/// Largest chunk of log frames sent to a client at once.
const LOG_CHUNK: usize = 32 * 1024;

/// Frames log records for a client (multiplexed, or raw with a TTY) and sends them in
/// chunks of up to [`LOG_CHUNK`]; what it holds goes at once when the reader has caught
/// up, so a follower sees each line as it is written.
pub(crate) struct LogFrames {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    tty: bool,
    timestamps: bool,
}

impl LogFrames {
    pub(crate) fn new(tx: tokio::sync::mpsc::Sender<Bytes>, tty: bool, timestamps: bool) -> Self {
        LogFrames {
            tx,
            buf: Vec::new(),
            tty,
            timestamps,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl LogSink for LogFrames {
    fn record(&mut self, r: &LogRecord) -> std::io::Result<()> {
        let line = if self.timestamps {
            std::borrow::Cow::Owned(format!("{} {}", r.time, r.log))
        } else {
            std::borrow::Cow::Borrowed(r.log.as_str())
        };
        if self.tty {
            self.buf.extend_from_slice(line.as_bytes());
        } else {
            let kind = if r.stream == "stderr" { STDERR } else { STDOUT };
            frame(kind, line.as_bytes(), &mut self.buf);
        }
        if self.buf.len() >= LOG_CHUNK {
            self.send()?;
        }
        Ok(())
    }

    fn caught_up(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /containers/{id}/logs?stdout=&stderr=&tail=&timestamps=&since=&until=&follow=`.
pub(crate) async fn logs(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let parsed = (|| -> Result<(LogQuery, bool), ApiError> {
        if params.bool("details")? {
            return Err(not_supported("log details (--details)"));
        }
        let tail = match params.non_empty("tail") {
            None | Some("all") => None,
            Some(t) => match t.parse::<i64>() {
                Ok(n) if n < 0 => None,
                Ok(n) => Some(n as usize),
                Err(_) => return Err(ApiError::bad_request(format!("invalid tail value {t:?}"))),
            },
        };
        Ok((
            LogQuery {
                stdout: params.bool("stdout")?,
                stderr: params.bool("stderr")?,
                since: log_time(&params, "since")?,
                until: log_time(&params, "until")?,
                tail,
                follow: params.bool("follow")?,
            },
            params.bool("timestamps")?,
        ))
    })();
    let (q, timestamps) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !q.stdout && !q.stderr {
        return ApiError::bad_request("Bad parameters: you must choose at least one stream")
            .into_response();
    }
    // Errors (no such container) get a status; after this the headers go out at once,
    // so a follower of a quiet container is not left without a response.
    let check = {
        let (engine, id) = (engine.clone(), id.clone());
        blocking(move || engine.container(&id)).await
    };
    // A TTY container's log is one stream: raw, as Docker sends it.
    let tty = match check {
        // The `none` log driver keeps nothing: Docker's 501 and words, before any byte.
        Ok(rec) if rec.log_driver == "none" => {
            return ApiError::new(
                axum::http::StatusCode::NOT_IMPLEMENTED,
                "configured logging driver does not support reading",
            )
            .into_response()
        }
        Ok(rec) => rec.tty,
        Err(e) => return e.into_response(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        let mut frames = LogFrames::new(tx, tty, timestamps);
        if let Err(e) = engine.read_logs(&id, &q, &mut frames) {
            tracing::debug!(error = %e, "logs ended early");
        }
    });
    let body = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, std::io::Error>))
    });
    let content_type = if tty { RAW } else { MULTIPLEXED };
    (
        StatusCode::OK,
        [(CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_frames_are_sent_in_chunks_and_at_once_when_caught_up() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut frames = LogFrames::new(tx, false, false);
        let rec = |log: &str, stream: &str| LogRecord {
            log: log.into(),
            stream: stream.into(),
            time: "2024-01-01T00:00:00Z".into(),
        };
        frames.record(&rec("a\n", "stdout")).expect("record");
        frames.record(&rec("b\n", "stderr")).expect("record");
        assert!(
            rx.try_recv().is_err(),
            "held until a chunk fills or the reader caught up"
        );
        frames.caught_up().expect("caught up");
        let chunk = rx.try_recv().expect("one chunk");
        assert_eq!(
            &chunk[..],
            b"\x01\0\0\0\0\0\0\x02a\n\x02\0\0\0\0\0\0\x02b\n"
        );
        frames.caught_up().expect("nothing to send");
        assert!(rx.try_recv().is_err());
        let line = "x".repeat(99) + "\n";
        for _ in 0..1000 {
            frames.record(&rec(&line, "stdout")).expect("record");
        }
        frames.caught_up().expect("caught up");
        let mut total = 0;
        while let Ok(chunk) = rx.try_recv() {
            assert!(chunk.len() < LOG_CHUNK + 108, "{}", chunk.len());
            total += chunk.len();
        }
        assert_eq!(total, 1000 * 108);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        assert_eq!(human_duration(chrono::Duration::seconds(3)), "3 seconds");
        assert_eq!(
            human_duration(chrono::Duration::seconds(70)),
            "About a minute"
        );
    }

    #[test]
    fn tty_and_stdin_map() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"a","Tty":true,"OpenStdin":true,"StdinOnce":true,"AttachStdin":true,"AttachStdout":true}"#,
        )
        .expect("ok");
        let o = create_options(body, None).expect("ok");
        assert!(o.runtime.tty && o.open_stdin && o.stdin_once);
        assert!(o.attach_stdin && o.attach_stdout && !o.attach_stderr);
    }

    #[test]
    fn network_fields_map_into_the_net_request() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"a","Domainname":"example.test","ExposedPorts":{"443/tcp":{}},
                "HostConfig":{"NetworkMode":"front","PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":""}],"53/udp":null},
                "PublishAllPorts":true,"Dns":["9.9.9.9"],"DnsSearch":["a.test"],"DnsOptions":["ndots:2"],
                "ExtraHosts":["db:10.0.0.1"],"Links":null},
                "NetworkingConfig":{"EndpointsConfig":{"front":{"Aliases":["web"],"IPAMConfig":{"IPv4Address":"100.90.0.9"},"MacAddress":""}}}}"#,
        )
        .expect("ok");
        let o = create_options(body, None).expect("ok");
        let n = &o.net;
        assert_eq!(n.mode, "front");
        assert_eq!(o.runtime.network, NetworkMode::None);
        assert_eq!(
            n.port_bindings["80/tcp"],
            [PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: String::new()
            }]
        );
        assert!(n.port_bindings["53/udp"].is_empty());
        assert!(n.publish_all);
        assert_eq!(n.exposed_ports, ["443/tcp"]);
        assert_eq!(n.dns, ["9.9.9.9"]);
        assert_eq!(n.dns_search, ["a.test"]);
        assert_eq!(n.dns_options, ["ndots:2"]);
        assert_eq!(n.extra_hosts, ["db:10.0.0.1"]);
        assert_eq!(n.domainname, "example.test");
        let front = &n.endpoints["front"];
        assert_eq!(front.aliases, ["web".to_string()]);
        assert_eq!(
            front.ipv4_address.map(|i| i.to_string()).as_deref(),
            Some("100.90.0.9")
        );

        // The docker CLI's empty `default` endpoint says nothing; a filled one is the
        // default network's.
        let o = create_options(
            serde_json::from_str(
                r#"{"Image":"a","HostConfig":{"NetworkMode":"default"},"NetworkingConfig":{"EndpointsConfig":{"default":{}}}}"#,
            )
            .expect("ok"),
            None,
        )
        .expect("ok");
        assert!(o.net.endpoints.is_empty());
        let o = create_options(
            serde_json::from_str(
                r#"{"Image":"a","NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":{"IPv4Address":"100.72.0.9"}}}}}"#,
            )
            .expect("ok"),
            None,
        )
        .expect("ok");
        assert!(o.net.endpoints.contains_key("bridge"));

        // Links: HostConfig's (legacy) and the endpoints' (user networks) reach the engine.
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"a","HostConfig":{"Links":["db:cache"]},
                "NetworkingConfig":{"EndpointsConfig":{"n":{"Links":["x:y"],"Aliases":["a"]}}}}"#,
        )
        .expect("ok");
        let o = create_options(body, None).expect("links accepted");
        assert_eq!(o.net.links, ["db:cache"]);
        assert_eq!(o.net.endpoint_links["n"], ["x:y"]);
        assert_eq!(o.net.endpoints["n"].aliases, ["a"]);
        assert!(o.net.endpoints["n"].links.is_empty());
    }

    #[test]
    fn create_body_maps() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"a","Cmd":["exit 3"],"Entrypoint":null,"Env":["A=1"],
                "HostConfig":{"NetworkMode":"host","Binds":["/srv:/data:ro"],"PidsLimit":0,
                "LogConfig":{"Type":"json-file","Config":{"max-size":"1m","max-file":"2"}}}}"#,
        )
        .expect("ok");
        let o = create_options(body, Some("x".into())).expect("ok");
        assert_eq!(o.runtime.args_override, Some(vec!["exit 3".to_string()]));
        assert_eq!(o.runtime.network, NetworkMode::Host);
        assert_eq!(o.runtime.resources.pids_limit, None);
        assert_eq!(o.log_max_size, Some(1 << 20));
        assert_eq!(o.log_max_file, Some(2));
        assert_eq!(o.mounts.requests.len(), 1);
    }
}
