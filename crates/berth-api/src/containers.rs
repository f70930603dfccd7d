//! `/containers/...`: create, start, wait, kill, remove, list, inspect, logs.
//!
//! Only what the engine runs today: no log follow; it is refused with a 400 saying "not
//! supported yet" rather than half-served. Attach and resize are in `attach.rs`.
//! Containers are found by full ID, name or unique ID prefix (the engine resolves them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::{
    ContainerOptions, ContainerRecord, ContainerState, CreateOptions, Engine, EngineError,
    MountSpec, NetworkMode,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::hijack::{frame, MULTIPLEXED, RAW, STDERR, STDOUT};
use crate::images::blocking;
use crate::params::Params;

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
    privileged: bool,
    binds: Option<Vec<String>>,
    memory: i64,
    nano_cpus: i64,
    pids_limit: Option<i64>,
    log_config: Option<LogConfigBody>,
    // Accepted only when empty/off: refusing beats silently ignoring them.
    port_bindings: Option<BTreeMap<String, serde_json::Value>>,
    publish_all_ports: bool,
    restart_policy: Option<RestartPolicyBody>,
    auto_remove: bool,
    mounts: Option<Vec<serde_json::Value>>,
    tmpfs: Option<BTreeMap<String, String>>,
    devices: Option<Vec<serde_json::Value>>,
    volumes_from: Option<Vec<String>>,
    /// `[height, width]` of the TTY (the docker CLI sends its terminal's size).
    console_size: Option<[u64; 2]>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: String,
}

/// Docker's `ContainerConfig` with a `HostConfig` member (the create body).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    image: String,
    cmd: Option<StrSlice>,
    entrypoint: Option<StrSlice>,
    env: Option<Vec<String>>,
    working_dir: String,
    user: String,
    labels: Option<BTreeMap<String, String>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    host_config: Option<HostConfigBody>,
}

/// Docker's size strings for log options: `10m`, `1g`, `512k`, `100` (bytes).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// `-v SRC:DST[:ro|rw]` with an absolute host source; named volumes come later.
fn parse_bind(b: &str) -> Result<MountSpec, ApiError> {
    let parts: Vec<&str> = b.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(ApiError::bad_request(format!("invalid bind {b:?}"))),
    };
    if !src.starts_with('/') {
        return Err(not_supported(&format!("named volume {src:?}")));
    }
    let mut read_only = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" => read_only = false,
            _ => return Err(not_supported(&format!("bind option {m:?}"))),
        }
    }
    Ok(MountSpec::Bind {
        source: PathBuf::from(src),
        target: dst.to_string(),
        read_only,
    })
}

fn create_options(body: CreateBody, name: Option<String>) -> Result<CreateOptions, ApiError> {
    let hc = body.host_config.unwrap_or_default();
    if hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || hc.publish_all_ports {
        return Err(not_supported("publishing ports (-p, -P)"));
    }
    if !matches!(
        hc.restart_policy.as_ref().map(|r| r.name.as_str()),
        None | Some("") | Some("no")
    ) {
        return Err(not_supported("a restart policy (--restart)"));
    }
    if hc.auto_remove {
        return Err(not_supported("--rm (AutoRemove)"));
    }
    if hc.mounts.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(not_supported("--mount"));
    }
    if hc.tmpfs.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(not_supported("--tmpfs"));
    }
    if hc.devices.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(not_supported("--device"));
    }
    if hc.volumes_from.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(not_supported("--volumes-from"));
    }
    let network = match hc.network_mode.as_deref() {
        None | Some("") | Some("default") | Some("none") | Some("bridge") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => return Err(not_supported(&format!("network mode {other:?}"))),
    };
    let mut runtime = ContainerOptions {
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
        network,
        tty: body.tty,
        ..ContainerOptions::default()
    };
    for b in hc.binds.unwrap_or_default() {
        runtime.mounts.push(parse_bind(&b)?);
    }
    if hc.memory > 0 {
        runtime.resources.memory = Some(hc.memory);
    }
    if hc.nano_cpus > 0 {
        runtime.resources.nano_cpus = Some(hc.nano_cpus);
    }
    // Docker sends 0 for "not set"; -1 means unlimited.
    runtime.resources.pids_limit = hc.pids_limit.filter(|p| *p != 0);
    let mut opts = CreateOptions {
        runtime,
        name,
        labels: body.labels.unwrap_or_default(),
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        console_size: hc
            .console_size
            .filter(|[h, w]| *h > 0 && *w > 0)
            .map(|[h, w]| [h.min(u16::MAX.into()) as u16, w.min(u16::MAX.into()) as u16]),
        ..CreateOptions::default()
    };
    if let Some(lc) = hc.log_config {
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
    }
    Ok(opts)
}

/// `POST /containers/create?name=`.
pub(crate) async fn create(State(engine): State<Engine>, params: Params, body: Bytes) -> Response {
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("invalid create body: {e}")).into_response()
        }
    };
    if body.image.is_empty() {
        return ApiError::bad_request("no image specified").into_response();
    }
    let image = body.image.clone();
    let opts = match create_options(body, params.non_empty("name").map(str::to_string)) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let result = blocking(move || {
        engine.create_container(&image, &opts).map_err(|e| {
            if e.kind == berth_types::ErrorKind::NotFound {
                EngineError::not_found(format!("No such image: {image}"))
            } else {
                e
            }
        })
    })
    .await;
    match result {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({ "Id": id, "Warnings": [] })),
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

/// `POST /containers/{id}/wait`: blocks until the container exits.
pub(crate) async fn wait(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let next_exit = match params.non_empty("condition") {
        None | Some("not-running") => false,
        Some("next-exit") => true,
        Some(c) => return not_supported(&format!("wait condition {c:?}")).into_response(),
    };
    // Resolve first: a missing container is a 404. Then answer the headers at once and
    // the status when it comes, as Docker does: the docker CLI waits for the headers of
    // `wait?condition=next-exit` before it starts the container.
    let id = {
        let engine = engine.clone();
        match blocking(move || engine.container(&id)).await {
            Ok(rec) => rec.id,
            Err(e) => return e.into_response(),
        }
    };
    let result = async move {
        let r = blocking(move || {
            if next_exit {
                return engine.wait_next_exit(&id);
            }
            match engine.container_state(&id)? {
                ContainerState::Exited(x) => Ok(x.exit_code),
                // Docker's not-running condition is met at once by a created container.
                ContainerState::Created => Ok(0),
                _ => engine.wait_container(&id),
            }
        })
        .await;
        let body = match r {
            Ok(code) => json!({ "StatusCode": code, "Error": null }),
            Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.message } }),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(body.to_string()))
    };
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::stream::once(result)),
    )
        .into_response()
}

/// Signal names and numbers as `docker kill --signal` sends them.
fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "ALRM" => 14,
        "STOP" => 19,
        "CONT" => 18,
        "WINCH" => 28,
        _ => return None,
    })
}

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

/// `DELETE /containers/{id}?force=&v=` (berth has no volumes yet: `v` changes nothing).
pub(crate) async fn remove(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let force = match params.bool("force") {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = params.bool("v") {
        return e.into_response();
    }
    if params.bool("link").unwrap_or(false) {
        return not_supported("removing links").into_response();
    }
    match blocking(move || engine.remove_container(&id, force)).await {
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
fn state_words(state: &ContainerState) -> (&'static str, String) {
    match state {
        ContainerState::Created => ("created", "Created".into()),
        ContainerState::Running { started_at, .. } => {
            ("running", format!("Up {}", since(started_at)))
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

fn docker_name(rec: &ContainerRecord) -> String {
    if rec.name.is_empty() {
        format!("/{}", &rec.id[..12])
    } else {
        format!("/{}", rec.name)
    }
}

fn summary_json(rec: &ContainerRecord, state: &ContainerState) -> Value {
    let (state_word, status) = state_words(state);
    let created = parse_time(&rec.created).map(|t| t.timestamp()).unwrap_or(0);
    json!({
        "Id": rec.id,
        "Names": [docker_name(rec)],
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
        "Mounts": [],
    })
}

/// `GET /containers/json?all=`; filters are not supported yet.
pub(crate) async fn list(State(engine): State<Engine>, params: Params) -> Response {
    let all = match params.bool("all") {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if params.non_empty("filters").is_some_and(|f| f != "{}") {
        return not_supported("filtering the container list").into_response();
    }
    let limit: Option<usize> = params
        .non_empty("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    match blocking(move || engine.list_containers()).await {
        Ok(rows) => {
            let out: Vec<Value> = rows
                .iter()
                .filter(|c| all || matches!(c.state, ContainerState::Running { .. }))
                .take(limit.unwrap_or(usize::MAX))
                .map(|c| summary_json(&c.record, &c.state))
                .collect();
            Json(out).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn inspect_json(rec: &ContainerRecord, state: &ContainerState) -> Value {
    let (status, _) = state_words(state);
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
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": status,
            "Running": matches!(state, ContainerState::Running { .. }),
            "Paused": false,
            "Restarting": false,
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
        },
        "Image": rec.image_id.to_string(),
        "Name": docker_name(rec),
        "RestartCount": 0,
        "Driver": "overlayfs",
        "Platform": "linux",
        "LogPath": "",
        "HostConfig": {
            "NetworkMode": network,
            "Privileged": rec.privileged,
            "ReadonlyRootfs": rec.read_only,
            "LogConfig": {
                "Type": "json-file",
                "Config": {
                    "max-size": rec.log_max_size.to_string(),
                    "max-file": rec.log_max_file.to_string(),
                },
            },
            "CgroupParent": "",
            "AutoRemove": false,
            "RestartPolicy": { "Name": "no", "MaximumRetryCount": 0 },
        },
        "Mounts": [],
        "Config": {
            "Hostname": &rec.id[..12],
            "Image": rec.image,
            "Labels": rec.labels,
            "Tty": rec.tty,
            "OpenStdin": rec.open_stdin,
            "StdinOnce": rec.stdin_once,
            "AttachStdin": rec.attach_stdin,
            "AttachStdout": rec.attach_stdout,
            "AttachStderr": rec.attach_stderr,
            "Cmd": rec.args,
        },
        "NetworkSettings": { "Networks": {} },
    })
}

/// `GET /containers/{id}/json`.
pub(crate) async fn inspect(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let result = blocking(move || {
        let rec = engine.container(&id)?;
        let state = engine.container_state(&rec.id)?;
        Ok((rec, state))
    })
    .await;
    match result {
        Ok((rec, state)) => Json(inspect_json(&rec, &state)).into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------
// Logs

/// `GET /containers/{id}/logs?stdout=&stderr=&tail=&timestamps=` (not `follow`).
pub(crate) async fn logs(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let flags = (|| -> Result<(bool, bool, bool), ApiError> {
        if params.bool("follow")? {
            return Err(not_supported("following logs (--follow)"));
        }
        if params.non_empty("since").is_some_and(|s| s != "0")
            || params.non_empty("until").is_some_and(|s| s != "0")
        {
            return Err(not_supported("since/until on logs"));
        }
        Ok((
            params.bool("stdout")?,
            params.bool("stderr")?,
            params.bool("timestamps")?,
        ))
    })();
    let (stdout, stderr, timestamps) = match flags {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if !stdout && !stderr {
        return ApiError::bad_request("Bad parameters: you must choose at least one stream")
            .into_response();
    }
    let tail = match params.non_empty("tail") {
        None | Some("all") => None,
        Some(t) => match t.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return ApiError::bad_request(format!("invalid tail value {t:?}")).into_response()
            }
        },
    };
    let (tty, records) = match blocking(move || {
        let rec = engine.container(&id)?;
        Ok((rec.tty, engine.container_logs(&rec.id)?))
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut selected: Vec<_> = records
        .into_iter()
        .filter(|r| (r.stream == "stdout" && stdout) || (r.stream == "stderr" && stderr))
        .collect();
    if let Some(n) = tail {
        let skip = selected.len().saturating_sub(n);
        selected.drain(..skip);
    }
    let mut out = Vec::new();
    for r in &selected {
        let kind = if r.stream == "stderr" { STDERR } else { STDOUT };
        let line = if timestamps {
            std::borrow::Cow::Owned(format!("{} {}", r.time, r.log))
        } else {
            std::borrow::Cow::Borrowed(r.log.as_str())
        };
        // A TTY container's log is one stream: raw, as Docker sends it.
        if tty {
            out.extend_from_slice(line.as_bytes());
        } else {
            frame(kind, line.as_bytes(), &mut out);
        }
    }
    let content_type = if tty { RAW } else { MULTIPLEXED };
    (
        StatusCode::OK,
        [(CONTENT_TYPE, content_type)],
        Body::from(out),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(o.runtime.mounts.len(), 1);
    }
}
