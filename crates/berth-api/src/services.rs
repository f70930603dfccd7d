//! `/services` and `/tasks`: Docker's swarm-mode services on this one host. The engine
//! keeps the services and runs the reconcile loop (`berth_engine::services`); this module
//! translates Docker's JSON (the spec's task template through `services_spec`, the
//! documents the docker CLI and the SDKs read).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::services::{Rollback, Service, ServiceView, TaskView};
use berth_engine::{Engine, EngineError};
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;

/// The factory the engine's loop decodes task templates with.
pub(crate) fn task_factory() -> berth_engine::services::TaskFactory {
    std::sync::Arc::new(|spec: &Value| {
        crate::services_spec::task_options(spec)
            .map(|(_, opts)| opts)
            .map_err(|e| {
                let kind = match e.status {
                    StatusCode::BAD_REQUEST => berth_types::ErrorKind::InvalidArgument,
                    StatusCode::NOT_FOUND => berth_types::ErrorKind::NotFound,
                    StatusCode::NOT_IMPLEMENTED => berth_types::ErrorKind::NotImplemented,
                    StatusCode::CONFLICT => berth_types::ErrorKind::Conflict,
                    _ => berth_types::ErrorKind::Internal,
                };
                EngineError::new(kind, e.message)
            })
    })
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Docker's `Service` document.
fn service_json(s: &Service, status: Option<&ServiceView>, vips: &[(String, String)]) -> Value {
    let spec = s.current().map_or(Value::Null, |r| r.spec.clone());
    let mut out = json!({
        "ID": s.id,
        "Version": { "Index": s.version },
        "CreatedAt": rfc3339(s.created_at),
        "UpdatedAt": rfc3339(s.updated_at),
        "Spec": spec,
        "Endpoint": endpoint_json(&spec, vips),
    });
    if let Some(prev) = s.previous.and_then(|p| s.revision_of(p)) {
        out["PreviousSpec"] = prev.spec.clone();
    }
    // Docker shows UpdateStatus once the service was updated (or rolled back).
    if s.revisions.len() > 1 || s.previous.is_some() {
        let mut st = json!({
            "State": s.rollout.docker_state(),
            "StartedAt": rfc3339(s.rollout_started_at),
        });
        if let Some(c) = s.rollout_completed_at {
            st["CompletedAt"] = json!(rfc3339(c));
        }
        st["Message"] = json!(match &s.rollout {
            berth_engine::services::Rollout::Completed => "update completed".to_string(),
            berth_engine::services::Rollout::Updating => "update in progress".to_string(),
            berth_engine::services::Rollout::RollbackStarted => "rollback in progress".to_string(),
            berth_engine::services::Rollout::RollbackCompleted => "rollback completed".to_string(),
            berth_engine::services::Rollout::Paused(m)
            | berth_engine::services::Rollout::RollbackPaused(m) => m.clone(),
        });
        out["UpdateStatus"] = st;
    }
    // berth's extension (Docker's clients ignore it): the revisions kept, each with the
    // image ID it runs, for `rollback=N`.
    out["Revision"] = json!(s.revision);
    out["Revisions"] = Value::Array(
        s.revisions
            .iter()
            .map(|r| {
                json!({
                    "Number": r.number,
                    "Image": r.spec.pointer("/TaskTemplate/ContainerSpec/Image").cloned().unwrap_or(Value::Null),
                    "ImageID": r.image_digest,
                    "CreatedAt": rfc3339(r.created_at),
                })
            })
            .collect(),
    );
    if let Some(v) = status {
        out["ServiceStatus"] = json!({
            "RunningTasks": v.running,
            "DesiredTasks": v.desired,
            "CompletedTasks": v.completed,
        });
    }
    out
}

/// Docker's `Endpoint`: the spec's mode and ports, with the published ports as
/// allocated, and the virtual IPs the service holds on its networks.
fn endpoint_json(spec: &Value, vips: &[(String, String)]) -> Value {
    let es = spec.get("EndpointSpec").cloned().unwrap_or(Value::Null);
    let mode = es
        .get("Mode")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or("vip");
    let ports: Vec<Value> = berth_engine::services::service_ports(spec)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            json!({
                "Protocol": p.proto.as_str(),
                "TargetPort": p.target,
                "PublishedPort": p.published,
                "PublishMode": "ingress",
            })
        })
        .collect();
    let mut out = json!({ "Spec": { "Mode": mode } });
    if !ports.is_empty() {
        out["Spec"]["Ports"] = json!(ports.clone());
        out["Ports"] = json!(ports);
    }
    if !vips.is_empty() {
        out["VirtualIPs"] = Value::Array(
            vips.iter()
                .map(|(nid, addr)| json!({ "NetworkID": nid, "Addr": addr }))
                .collect(),
        );
    }
    out
}

/// Docker's `Task` document.
fn task_json(t: &TaskView) -> Value {
    let mut spec = t.spec.get("TaskTemplate").cloned().unwrap_or(Value::Null);
    let mut status = json!({
        "Timestamp": t.status.timestamp,
        "State": t.status.state,
        "Message": t.status.message,
        "PortStatus": {},
    });
    if let Some(err) = &t.status.err {
        status["Err"] = json!(err);
    }
    if let Some(cid) = &t.status.container_id {
        status["ContainerStatus"] = json!({
            "ContainerID": cid,
            "PID": t.status.pid,
            "ExitCode": t.status.exit_code.unwrap_or(0),
        });
    }
    if spec.is_object() && spec.get("ForceUpdate").is_none() {
        spec["ForceUpdate"] = json!(0);
    }
    json!({
        "ID": t.record.id,
        "Version": { "Index": t.record.revision },
        "CreatedAt": rfc3339(t.record.created_at),
        "UpdatedAt": t.status.timestamp,
        "Labels": {},
        "Spec": spec,
        "ServiceID": t.record.service_id,
        "Slot": t.record.slot,
        "NodeID": t.node_id,
        "Status": status,
        "DesiredState": t.desired_state,
        "NetworksAttachments": [],
    })
}

/// The field names of Docker's `ServiceSpec` and what it contains (`api/types/swarm`,
/// `api/types/mount`), as Docker writes them.
const SPEC_FIELDS: &[&str] = &[
    "Name",
    "Labels",
    "TaskTemplate",
    "Mode",
    "UpdateConfig",
    "RollbackConfig",
    "Networks",
    "EndpointSpec",
    "ContainerSpec",
    "PluginSpec",
    "NetworkAttachmentSpec",
    "Resources",
    "RestartPolicy",
    "Placement",
    "LogDriver",
    "ForceUpdate",
    "Runtime",
    "Image",
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
    "Test",
    "Interval",
    "Timeout",
    "StartPeriod",
    "StartInterval",
    "Retries",
    "Replicated",
    "Global",
    "ReplicatedJob",
    "GlobalJob",
    "Replicas",
    "MaxConcurrent",
    "TotalCompletions",
    "Parallelism",
    "Delay",
    "FailureAction",
    "Monitor",
    "MaxFailureRatio",
    "Order",
    "Condition",
    "MaxAttempts",
    "Window",
    "Limits",
    "Reservations",
    "NanoCPUs",
    "MemoryBytes",
    "Pids",
    "GenericResources",
    "Constraints",
    "Preferences",
    "MaxReplicas",
    "Platforms",
    "Target",
    "Aliases",
    "DriverOpts",
    "Ports",
    "Protocol",
    "TargetPort",
    "PublishedPort",
    "PublishMode",
    "Options",
    "Type",
    "Source",
    "Consistency",
    "BindOptions",
    "VolumeOptions",
    "TmpfsOptions",
    "Propagation",
    "NonRecursive",
    "NoCopy",
    "DriverConfig",
    "SizeBytes",
    "Nameservers",
    "Search",
    "Soft",
    "Hard",
    "File",
    "SecretID",
    "SecretName",
    "ConfigID",
    "ConfigName",
    "UID",
    "GID",
    "CredentialSpec",
    "SELinuxContext",
    "Seccomp",
    "AppArmor",
    "NoNewPrivileges",
    "Architecture",
    "OS",
    "Spread",
    "SpreadDescriptor",
    "Profile",
];

/// Fields whose keys are the user's (labels, options): kept as given.
const USER_MAPS: &[&str] = &["Labels", "DriverOpts", "Options", "Sysctls"];

/// Docker's field names for the keys of a spec: Docker decodes JSON case-insensitively
/// (Go), and clients rely on it (the Docker SDK for Python sends `Mode.replicated`);
/// berth stores and shows the spec with Docker's names, as Docker does.
fn canonical_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                let name = SPEC_FIELDS
                    .iter()
                    .find(|f| f.eq_ignore_ascii_case(&k))
                    .map_or(k, |f| (*f).to_string());
                if !USER_MAPS.contains(&name.as_str()) || !val.is_object() {
                    canonical_keys(&mut val);
                }
                map.insert(name, val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_keys),
        _ => {}
    }
}

fn spec_of(body: &[u8], what: &str) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("{what}: invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "{what}: the body must be a ServiceSpec object"
        )));
    }
    canonical_keys(&mut v);
    Ok(v)
}

/// Checks of the parts of a spec that are the service's (the task template's are
/// `services_spec`'s; the published ports the engine's).
fn check_service_fields(spec: &Value) -> Result<(), ApiError> {
    match spec.pointer("/EndpointSpec/Mode").and_then(Value::as_str) {
        None | Some("" | "vip" | "dnsrr") => {}
        Some(m) => {
            return Err(ApiError::bad_request(format!(
                "EndpointSpec.Mode: {m:?} is not one of vip, dnsrr"
            )))
        }
    }
    crate::services_spec::task_create_body(spec)?;
    Ok(())
}

/// `POST /services/create`.
pub(crate) async fn create(State(engine): State<Engine>, JsonBody(body): JsonBody) -> Response {
    let spec = match spec_of(&body, "service create") {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let name = match spec.get("Name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => random_name(),
    };
    if let Err(e) = crate::services_spec::check_service_name(&name) {
        return e.into_response();
    }
    let mut spec = spec;
    spec["Name"] = json!(name);
    // Outside a swarm: Docker's 503 before anything is looked at.
    {
        let engine = engine.clone();
        if let Err(e) = blocking(move || engine.swarm_required()).await {
            return e.into_response();
        }
    }
    if let Err(e) = check_service_fields(&spec) {
        return e.into_response();
    }
    match blocking(move || engine.create_service(&name, spec)).await {
        Ok(s) => (
            StatusCode::CREATED,
            Json(json!({ "ID": s.id, "Warnings": [] })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// A name for a service created without one (Docker's are adjective_surname; berth's
/// are `service-` and 8 base-36 characters).
fn random_name() -> String {
    let mut b = [0u8; 8];
    if getrandom(&mut b).is_err() {
        return format!("service-{}", std::process::id());
    }
    let s: String = b
        .iter()
        .map(|x| char::from_digit(u32::from(*x) % 36, 36).unwrap_or('0'))
        .collect();
    format!("service-{s}")
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `GET /services?filters=&status=`.
pub(crate) async fn list(State(engine): State<Engine>, params: Params) -> Response {
    let filters = match params.filters() {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let status = match params.bool("status") {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let checked = filters.clone();
    let result = blocking(move || {
        engine.swarm_required()?;
        checked.check(&["id", "name", "label", "mode"])?;
        let all = engine.services()?;
        let vips: Vec<Vec<(String, String)>> = all
            .iter()
            .map(|v| engine.service_virtual_ips(&v.service.id))
            .collect();
        Ok::<_, berth_engine::EngineError>(all.into_iter().zip(vips).collect::<Vec<_>>())
    })
    .await;
    let all = match result {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let out: Vec<Value> = all
        .iter()
        .filter(|(v, _)| {
            let s = &v.service;
            let spec = s.current().map_or(&Value::Null, |r| &r.spec);
            let ids = filters.get("id");
            let names = filters.get("name");
            let modes = filters.get("mode");
            let labels: std::collections::BTreeMap<String, String> = spec
                .get("Labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let mode = if spec.pointer("/Mode/Global").is_some_and(|g| !g.is_null()) {
                "global"
            } else {
                "replicated"
            };
            (ids.is_empty() || ids.iter().any(|i| s.id.starts_with(i.as_str())))
                && (names.is_empty() || names.iter().any(|n| s.name.starts_with(n.as_str())))
                && (modes.is_empty() || modes.iter().any(|m| m == mode))
                && filters.labels_match("label", &labels)
        })
        .map(|(v, vips)| service_json(&v.service, status.then_some(v), vips))
        .collect();
    Json(out).into_response()
}

/// `GET /services/{id}`.
pub(crate) async fn inspect(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let found = blocking(move || {
        let s = engine.service(&id)?;
        let vips = engine.service_virtual_ips(&s.id);
        Ok::<_, berth_engine::EngineError>((s, vips))
    })
    .await;
    match found {
        Ok((s, vips)) => Json(service_json(&s, None, &vips)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /services/{id}/update?version=&rollback=previous`.
pub(crate) async fn update(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Response {
    let version = match params.non_empty("version").map(str::parse::<u64>) {
        Some(Ok(v)) => v,
        Some(Err(_)) | None => {
            return ApiError::bad_request(
                "service update: the query parameter 'version' (a number) is required",
            )
            .into_response()
        }
    };
    let rollback = match params.get("rollback") {
        None | Some("") => Rollback::No,
        Some("previous") => Rollback::Previous,
        // berth's extension: a kept revision by number (`Revisions` in the document).
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => match n.parse() {
            Ok(n) => Rollback::To(n),
            Err(_) => {
                return ApiError::bad_request(format!("service update: rollback={n}: too large"))
                    .into_response()
            }
        },
        Some(other) => {
            return ApiError::bad_request(format!(
                "service update: rollback={other:?}: \"previous\" or a revision number"
            ))
            .into_response()
        }
    };
    let spec = match spec_of(&body, "service update") {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if rollback == Rollback::No {
        if let Err(e) = check_service_fields(&spec) {
            return e.into_response();
        }
    }
    match blocking(move || engine.update_service(&id, version, spec, rollback)).await {
        Ok(_) => Json(json!({ "Warnings": [] })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /services/{id}`.
pub(crate) async fn remove(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match blocking(move || engine.remove_service(&id)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /tasks?filters=` (service, id, name, node, desired-state, label, `_up-to-date`).
pub(crate) async fn tasks(State(engine): State<Engine>, params: Params) -> Response {
    let filters = match params.filters() {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let result = blocking(move || {
        engine.swarm_required()?;
        filters.check(&[
            "id",
            "name",
            "service",
            "node",
            "desired-state",
            "label",
            "_up-to-date",
        ])?;
        // Services by ID, name or prefix, as Docker resolves the filter.
        let mut service_ids = Vec::new();
        for s in filters.get("service") {
            match engine.service(s) {
                Ok(svc) => service_ids.push(svc.id),
                Err(e) if e.kind == berth_types::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let all = engine.tasks(None)?;
        let up_to_date = filters.bool("_up-to-date")?;
        Ok(all
            .into_iter()
            .filter(|t| {
                let name = format!("{}.{}", t.service_name, t.record.slot);
                (filters.get("service").is_empty() || service_ids.contains(&t.record.service_id))
                    && (filters.get("id").is_empty()
                        || filters
                            .get("id")
                            .iter()
                            .any(|i| t.record.id.starts_with(i.as_str())))
                    && (filters.get("name").is_empty()
                        || filters
                            .get("name")
                            .iter()
                            .any(|n| name.starts_with(n.as_str())))
                    && (filters.get("node").is_empty()
                        || filters
                            .get("node")
                            .iter()
                            .any(|n| t.node_id.starts_with(n.as_str()) || n == "self"))
                    && (filters.get("desired-state").is_empty()
                        || filters.get("desired-state").iter().any(|d| {
                            d == t.desired_state
                                || (d == "accepted" && t.desired_state == "running")
                        }))
                    && up_to_date.is_none_or(|u| u == t.up_to_date)
                    // The service's labels (swarmkit matches a task by its service's
                    // annotations: `docker stack ps` filters on the stack's label).
                    && filters.labels_match(
                        "label",
                        &t.spec
                            .get("Labels")
                            .and_then(|l| serde_json::from_value(l.clone()).ok())
                            .unwrap_or_default(),
                    )
            })
            .map(|t| task_json(&t))
            .collect::<Vec<_>>())
    })
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /tasks/{id}`.
pub(crate) async fn task(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let result = blocking(move || {
        let all = engine.tasks(None)?;
        let matching: Vec<TaskView> = all
            .into_iter()
            .filter(|t| t.record.id.starts_with(id.as_str()))
            .collect();
        match matching.len() {
            1 => Ok(matching.into_iter().next()),
            _ => Err(EngineError::not_found(format!("task {id} not found"))),
        }
    })
    .await;
    match result {
        Ok(Some(t)) => Json(task_json(&t)).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_keys_take_docker_s_names_but_labels_keep_the_user_s() {
        let mut v = json!({
            "name": "api",
            "Labels": {"team": "a", "mode": "x"},
            "mode": {"replicated": {"replicas": 2}},
            "TaskTemplate": {"ContainerSpec": {"image": "x", "labels": {"image": "kept"}},
                             "LogDriver": {"name": "json-file", "options": {"max-size": "1m"}}},
        });
        canonical_keys(&mut v);
        assert_eq!(
            v,
            json!({
                "Name": "api",
                "Labels": {"team": "a", "mode": "x"},
                "Mode": {"Replicated": {"Replicas": 2}},
                "TaskTemplate": {"ContainerSpec": {"Image": "x", "Labels": {"image": "kept"}},
                                 "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}}},
            })
        );
    }
}
