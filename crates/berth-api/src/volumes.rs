//! `/volumes`: list, create, inspect, remove, prune (Docker's local driver).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_engine::{Engine, Volume, VolumeCreate};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;
use crate::version::ApiVersion;

/// A map as Go encodes it: `null` when empty.
fn go_map(m: &BTreeMap<String, String>) -> Value {
    if m.is_empty() {
        Value::Null
    } else {
        json!(m)
    }
}

/// Docker's `volume.Volume`, fields in Docker's order; `UsageData` only for `system df`.
pub(crate) fn volume_json(v: &Volume, usage: Option<(u64, usize)>) -> Value {
    let mut out = json!({
        "CreatedAt": v.record.created,
        "Driver": v.record.driver,
        "Labels": go_map(&v.record.labels),
        "Mountpoint": v.mountpoint.display().to_string(),
        "Name": v.record.name,
        "Options": go_map(&v.record.options),
        "Scope": "local",
    });
    if let (Some((size, refs)), Some(o)) = (usage, out.as_object_mut()) {
        o.insert(
            "UsageData".into(),
            json!({ "Size": size, "RefCount": refs }),
        );
    }
    out
}

/// `GET /volumes?filters=`.
pub(crate) async fn list(
    State(engine): State<Engine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let filters = params.filters()?;
    let vols = blocking(move || engine.list_volumes(&filters)).await?;
    let list: Vec<Value> = vols.iter().map(|v| volume_json(v, None)).collect();
    Ok(Json(json!({ "Volumes": list, "Warnings": null })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    cluster_volume_spec: Option<Value>,
}

/// `POST /volumes/create`.
pub(crate) async fn create(State(engine): State<Engine>, JsonBody(body): JsonBody) -> Response {
    let body: CreateBody = match crate::decode::body(&body, "volume create body") {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if body
        .cluster_volume_spec
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return ApiError::bad_request("cluster volumes are not supported yet by berth")
            .into_response();
    }
    let opts = VolumeCreate {
        name: Some(body.name).filter(|n| !n.is_empty()),
        driver: Some(body.driver).filter(|d| !d.is_empty()),
        labels: body.labels.unwrap_or_default(),
        driver_opts: body.driver_opts.unwrap_or_default(),
    };
    match blocking(move || engine.create_volume(&opts)).await {
        Ok(v) => (StatusCode::CREATED, Json(volume_json(&v, None))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /volumes/{name}`.
pub(crate) async fn inspect(
    State(engine): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = blocking(move || engine.volume(&name)).await?;
    Ok(Json(volume_json(&v, None)))
}

/// `DELETE /volumes/{name}?force=`: 409 while a container uses the volume, even forced.
pub(crate) async fn remove(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let force = params.bool("force")?;
    blocking(move || engine.remove_volume(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune?filters=`: `all`, `label`, `label!`. Clients of API < 1.42
/// get the old behaviour (every unused volume), as Docker gives them.
pub(crate) async fn prune(
    State(engine): State<Engine>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let mut filters = params.filters()?;
    if version < ApiVersion::new(1, 42) && filters.get("all").is_empty() {
        filters.insert("all", "true");
    }
    let report = blocking(move || engine.prune_volumes(&filters)).await?;
    let deleted = if report.deleted.is_empty() {
        Value::Null
    } else {
        json!(report.deleted)
    };
    Ok(Json(
        json!({ "VolumesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed }),
    ))
}
