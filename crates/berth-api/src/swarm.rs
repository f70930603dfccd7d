//! Swarm mode on one host: `/swarm` (init, inspect, update, leave; join refused by name),
//! `/nodes` (this daemon, the one manager). Outside a swarm every swarm endpoint answers
//! Docker's 503, which clients expect (the Docker SDK calls `swarm/leave` in its cleanup
//! and reads the message). Services and tasks are `services.rs`', secrets and configs
//! `secrets.rs`'.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::swarm::{SwarmInit, SwarmState};
use berth_engine::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::images::blocking;
use crate::networks::nullable;
use crate::params::Params;

/// Docker's `Swarm` document.
fn swarm_json(st: &SwarmState) -> Value {
    json!({
        "ID": st.cluster_id,
        "Version": { "Index": st.index },
        "CreatedAt": st.created_at,
        "UpdatedAt": st.updated_at,
        "Spec": st.spec,
        "TLSInfo": { "TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": "" },
        "RootRotationInProgress": false,
        "DefaultAddrPool": st.default_addr_pool,
        "SubnetSize": st.subnet_size,
        "DataPathPort": st.data_path_port,
        "JoinTokens": { "Worker": st.worker_token, "Manager": st.manager_token },
    })
}

/// The swarm's port on the advertised address (`ADDR:2377`, or the listen port).
fn manager_addr(st: &SwarmState) -> String {
    let port = st
        .listen_addr
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
        .unwrap_or("2377");
    if st.advertise_addr.contains(':') && !st.advertise_addr.starts_with('[') {
        // Already ADDR:PORT (IPv4 or a name), or a bare IPv6 address.
        if st.advertise_addr.matches(':').count() == 1 {
            return st.advertise_addr.clone();
        }
        return format!("[{}]:{port}", st.advertise_addr);
    }
    format!("{}:{port}", st.advertise_addr)
}

/// Docker's `Node` document for this daemon.
pub(crate) fn node_json(st: &SwarmState, info: &Value) -> Value {
    let host = manager_addr(st);
    let addr = host
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_default();
    json!({
        "ID": st.node_id,
        "Version": { "Index": st.index },
        "CreatedAt": st.created_at,
        "UpdatedAt": st.updated_at,
        "Spec": {
            "Labels": st.node_labels,
            "Role": "manager",
            "Availability": st.availability,
        },
        "Description": {
            "Hostname": info["Name"],
            "Platform": { "Architecture": info["Architecture"], "OS": info["OSType"] },
            "Resources": {
                "NanoCPUs": info["NCPU"].as_u64().unwrap_or(1) * 1_000_000_000,
                "MemoryBytes": info["MemTotal"],
            },
            "Engine": { "EngineVersion": info["ServerVersion"], "Plugins": [] },
            "TLSInfo": { "TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": "" },
        },
        "Status": { "State": "ready", "Addr": addr },
        "ManagerStatus": { "Leader": true, "Reachability": "reachable", "Addr": host },
    })
}

/// `docker info`'s `Swarm` section.
pub(crate) fn info_json(st: Option<&SwarmState>) -> Value {
    match st {
        None => json!({
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null,
        }),
        Some(st) => {
            let cluster = swarm_json(st);
            let mut cluster = cluster.as_object().cloned().unwrap_or_default();
            cluster.remove("JoinTokens");
            json!({
                "NodeID": st.node_id,
                "NodeAddr": manager_addr(st).rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap_or_default(),
                "LocalNodeState": "active",
                "ControlAvailable": true,
                "Error": "",
                "RemoteManagers": [{ "NodeID": st.node_id, "Addr": manager_addr(st) }],
                "Nodes": 1,
                "Managers": 1,
                "Cluster": cluster,
            })
        }
    }
}

/// `GET /swarm`.
pub(crate) async fn inspect(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    let st = blocking(move || engine.swarm_required()).await?;
    Ok(Json(swarm_json(&st)))
}

/// Docker's `InitRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InitBody {
    #[serde(deserialize_with = "nullable")]
    listen_addr: String,
    #[serde(deserialize_with = "nullable")]
    advertise_addr: String,
    #[serde(deserialize_with = "nullable")]
    data_path_port: u32,
    default_addr_pool: Option<Vec<String>>,
    spec: Option<Value>,
    #[serde(deserialize_with = "nullable")]
    auto_lock_managers: bool,
    #[serde(deserialize_with = "nullable")]
    availability: String,
    #[serde(deserialize_with = "nullable")]
    subnet_size: u32,
}

/// `POST /swarm/init` → 200 with the node's ID as a JSON string.
pub(crate) async fn init(State(engine): State<Engine>, JsonBody(body): JsonBody) -> Response {
    let b: InitBody = match crate::decode::body(&body, "swarm init body") {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if b.auto_lock_managers {
        return ApiError::bad_request(
            "swarm autolock (--autolock) is not supported by berth: its state is not encrypted at rest",
        )
        .into_response();
    }
    let req = SwarmInit {
        listen_addr: b.listen_addr,
        // DataPathAddr and ForceNewCluster concern other nodes and a cluster's quorum:
        // with one node and nothing to recover from, they have no effect (not decoded).
        advertise_addr: b.advertise_addr,
        data_path_port: b.data_path_port,
        default_addr_pool: b.default_addr_pool.unwrap_or_default(),
        subnet_size: b.subnet_size,
        spec: b.spec.unwrap_or(Value::Null),
        availability: b.availability,
    };
    match blocking(move || engine.swarm_init(&req)).await {
        Ok(st) => Json(json!(st.node_id)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /swarm/join`: refused by name.
pub(crate) async fn join() -> ApiError {
    ApiError::bad_request(
        "berth runs swarm mode on this one host: joining another swarm is not supported (a cluster of hosts goes through an existing scheduler: Docker Swarm, Kubernetes, Nomad)",
    )
}

/// `POST /swarm/leave?force=`.
pub(crate) async fn leave(
    State(engine): State<Engine>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let force = params.bool("force")?;
    blocking(move || engine.swarm_leave(force)).await?;
    Ok(StatusCode::OK)
}

fn version_param(params: &Params, what: &str) -> Result<u64, ApiError> {
    let v = params.non_empty("version").ok_or_else(|| {
        ApiError::bad_request(format!("{what}: the query parameter 'version' is required"))
    })?;
    v.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("{what}: version must be a number, not {v:?}")))
}

/// `POST /swarm/update?version=&rotateWorkerToken=&rotateManagerToken=`.
pub(crate) async fn update(
    State(engine): State<Engine>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let version = version_param(&params, "swarm update")?;
    let rotate_worker = params.bool("rotateWorkerToken")?;
    let rotate_manager = params.bool("rotateManagerToken")?;
    if params.bool("rotateManagerUnlockKey")? {
        return Err(ApiError::bad_request(
            "swarm autolock is not supported by berth: there is no unlock key to rotate",
        ));
    }
    let spec: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("swarm update body: {e}")))?
    };
    blocking(move || engine.swarm_update(version, &spec, rotate_worker, rotate_manager)).await?;
    Ok(StatusCode::OK)
}

/// `GET /swarm/unlockkey`: autolock is never on.
pub(crate) async fn unlock_key(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    blocking(move || engine.swarm_required()).await?;
    Ok(Json(json!({ "UnlockKey": "" })))
}

/// `POST /swarm/unlock`.
pub(crate) async fn unlock() -> ApiError {
    ApiError::bad_request("swarm is not locked")
}

async fn this_node(engine: Engine) -> Result<(SwarmState, Value), ApiError> {
    let e = engine.clone();
    let st = blocking(move || e.swarm_required()).await?;
    let info = crate::system::info_value(engine).await?;
    Ok((st, info))
}

/// `GET /nodes`.
pub(crate) async fn nodes(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    let (st, info) = this_node(engine).await?;
    Ok(Json(json!([node_json(&st, &info)])))
}

fn node_matches(st: &SwarmState, info: &Value, id: &str) -> bool {
    !id.is_empty()
        && (st.node_id.starts_with(id) || info["Name"].as_str() == Some(id) || id == "self")
}

/// `GET /nodes/{id}` (the ID, a prefix of it, or the hostname).
pub(crate) async fn node(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, info) = this_node(engine).await?;
    if !node_matches(&st, &info, &id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("node {id} not found"),
        ));
    }
    Ok(Json(node_json(&st, &info)))
}

/// `POST /nodes/{id}/update?version=`.
pub(crate) async fn node_update(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let version = version_param(&params, "node update")?;
    let (st, info) = this_node(engine.clone()).await?;
    if !node_matches(&st, &info, &id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("node {id} not found"),
        ));
    }
    let spec: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("node update body: {e}")))?;
    blocking(move || engine.swarm_node_update(version, &spec)).await?;
    Ok(StatusCode::OK)
}

/// `DELETE /nodes/{id}`: the one node is the swarm's manager.
pub(crate) async fn node_remove(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (st, info) = this_node(engine).await?;
    if !node_matches(&st, &info, &id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("node {id} not found"),
        ));
    }
    Err(ApiError::bad_request(format!(
        "node {} is the swarm's only manager: it cannot be removed (docker swarm leave --force ends the swarm)",
        st.node_id
    )))
}
