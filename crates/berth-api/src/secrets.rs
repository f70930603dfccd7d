//! `/secrets` and `/configs`: Docker's swarm secrets and configs on this one host (the
//! engine's `swarm_objects`). A secret's value is never sent back; a config's is
//! (`Spec.Data`), as Docker does. Outside a swarm every endpoint is Docker's 503.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::swarm_objects::{ObjectKind, ObjectRecord};
use berth_engine::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;

/// Docker's `SecretSpec` / `ConfigSpec` (Go's decoder: keys case-insensitive, null is
/// absence, unknown keys ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SpecBody {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    /// base64, as Go encodes a `[]byte`.
    data: Option<String>,
    driver: Option<Value>,
    templating: Option<Value>,
}

/// The spec's parts berth keeps.
struct Spec {
    name: String,
    labels: BTreeMap<String, String>,
    data: Option<Vec<u8>>,
}

/// Never the value in a log line.
impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field(
                "data",
                &self.data.as_ref().map(|d| format!("<{} bytes>", d.len())),
            )
            .finish()
    }
}

/// Decodes a spec. A secret driver or a templating engine is refused by name.
fn decode_spec(kind: ObjectKind, body: &[u8]) -> Result<Spec, ApiError> {
    let b: SpecBody = crate::decode::body(body, &format!("{kind} spec"))?;
    let set = |v: &Option<Value>| {
        v.as_ref().is_some_and(|v| {
            v.get("Name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
        })
    };
    if set(&b.driver) {
        return Err(ApiError::bad_request(format!(
            "{kind} {}: external secret drivers (Driver) are not supported by berth: the value is given in Data",
            b.name
        )));
    }
    if set(&b.templating) {
        return Err(ApiError::bad_request(format!(
            "{kind} {}: templating (Templating) is not supported by berth",
            b.name
        )));
    }
    let data = match b.data {
        None => None,
        Some(d) => Some(berth_engine::swarm_objects::decode_base64(&d).map_err(|e| {
            ApiError::bad_request(format!("invalid {kind} spec: Data: not base64: {e}"))
        })?),
    };
    Ok(Spec {
        name: b.name,
        labels: b.labels.unwrap_or_default(),
        data,
    })
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Docker's `Secret` / `Config` document.
fn object_json(o: &ObjectRecord) -> Value {
    let mut spec = json!({ "Name": o.name, "Labels": o.labels });
    if o.kind == ObjectKind::Config {
        spec["Data"] = json!(berth_engine::swarm_objects::encode_base64(&o.data));
    }
    json!({
        "ID": o.id,
        "Version": { "Index": o.version },
        "CreatedAt": rfc3339(o.created_at),
        "UpdatedAt": rfc3339(o.updated_at),
        "Spec": spec,
    })
}

async fn create(engine: Engine, kind: ObjectKind, body: &[u8]) -> Response {
    let Spec { name, labels, data } = match decode_spec(kind, body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let data = data.unwrap_or_default();
    match blocking(move || engine.create_object(kind, &name, labels, data)).await {
        Ok(o) => (StatusCode::CREATED, Json(json!({ "ID": o.id }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list(engine: Engine, kind: ObjectKind, params: Params) -> Response {
    let filters = match params.filters() {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let checked = filters.clone();
    let all = match blocking(move || {
        engine.swarm_required()?;
        checked.check(&["id", "label", "name", "names"])?;
        engine.objects(kind)
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (ids, names, exact) = (filters.get("id"), filters.get("name"), filters.get("names"));
    let mut out: Vec<&ObjectRecord> = all
        .iter()
        .filter(|o| {
            (ids.is_empty() || ids.iter().any(|i| o.id.starts_with(i.as_str())))
                && (names.is_empty() || names.iter().any(|n| o.name.starts_with(n.as_str())))
                && (exact.is_empty() || exact.contains(&o.name))
                && filters.labels_match("label", &o.labels)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Json(out.into_iter().map(object_json).collect::<Vec<_>>()).into_response()
}

async fn inspect(engine: Engine, kind: ObjectKind, key: String) -> Response {
    match blocking(move || engine.object(kind, &key)).await {
        Ok(o) => Json(object_json(&o)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn update(
    engine: Engine,
    kind: ObjectKind,
    key: String,
    params: Params,
    body: &[u8],
) -> Response {
    let version = match params.non_empty("version").map(str::parse::<u64>) {
        Some(Ok(v)) => v,
        Some(Err(_)) | None => {
            return ApiError::bad_request(format!(
                "{kind} update: the query parameter 'version' (a number) is required"
            ))
            .into_response()
        }
    };
    let Spec { name, labels, data } = match decode_spec(kind, body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.update_object(kind, &key, version, Some(&name), labels, data))
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn remove(engine: Engine, kind: ObjectKind, key: String) -> Response {
    match blocking(move || engine.remove_object(kind, &key)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /secrets/create`.
pub(crate) async fn secret_create(State(e): State<Engine>, JsonBody(b): JsonBody) -> Response {
    create(e, ObjectKind::Secret, &b).await
}
/// `GET /secrets?filters=`.
pub(crate) async fn secret_list(State(e): State<Engine>, p: Params) -> Response {
    list(e, ObjectKind::Secret, p).await
}
/// `GET /secrets/{id}`.
pub(crate) async fn secret_inspect(State(e): State<Engine>, Path(id): Path<String>) -> Response {
    inspect(e, ObjectKind::Secret, id).await
}
/// `POST /secrets/{id}/update?version=`.
pub(crate) async fn secret_update(
    State(e): State<Engine>,
    Path(id): Path<String>,
    p: Params,
    JsonBody(b): JsonBody,
) -> Response {
    update(e, ObjectKind::Secret, id, p, &b).await
}
/// `DELETE /secrets/{id}`.
pub(crate) async fn secret_remove(State(e): State<Engine>, Path(id): Path<String>) -> Response {
    remove(e, ObjectKind::Secret, id).await
}
/// `POST /configs/create`.
pub(crate) async fn config_create(State(e): State<Engine>, JsonBody(b): JsonBody) -> Response {
    create(e, ObjectKind::Config, &b).await
}
/// `GET /configs?filters=`.
pub(crate) async fn config_list(State(e): State<Engine>, p: Params) -> Response {
    list(e, ObjectKind::Config, p).await
}
/// `GET /configs/{id}`.
pub(crate) async fn config_inspect(State(e): State<Engine>, Path(id): Path<String>) -> Response {
    inspect(e, ObjectKind::Config, id).await
}
/// `POST /configs/{id}/update?version=`.
pub(crate) async fn config_update(
    State(e): State<Engine>,
    Path(id): Path<String>,
    p: Params,
    JsonBody(b): JsonBody,
) -> Response {
    update(e, ObjectKind::Config, id, p, &b).await
}
/// `DELETE /configs/{id}`.
pub(crate) async fn config_remove(State(e): State<Engine>, Path(id): Path<String>) -> Response {
    remove(e, ObjectKind::Config, id).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_decode_as_go_does_and_refuse_what_berth_lacks() {
        let Spec { name, labels, data } = decode_spec(
            ObjectKind::Secret,
            br#"{"name":"db","Labels":{"a":"b"},"Data":"cHc="}"#,
        )
        .unwrap();
        assert_eq!((name.as_str(), data.unwrap()), ("db", b"pw".to_vec()));
        assert_eq!(labels["a"], "b");
        let e = decode_spec(ObjectKind::Secret, br#"{"Name":"x","Data":"%%"}"#).unwrap_err();
        assert!(e.message.contains("not base64"), "{}", e.message);
        let e = decode_spec(
            ObjectKind::Secret,
            br#"{"Name":"x","Data":"cHc=","Driver":{"Name":"vault"}}"#,
        )
        .unwrap_err();
        assert!(
            e.message.contains("external secret drivers"),
            "{}",
            e.message
        );
        let e = decode_spec(
            ObjectKind::Config,
            br#"{"Name":"x","Data":"cHc=","Templating":{"Name":"golang"}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("templating"), "{}", e.message);
        // An empty driver (the docker CLI's default) is none.
        decode_spec(
            ObjectKind::Secret,
            br#"{"Name":"x","Data":"cHc=","Driver":null}"#,
        )
        .unwrap();
    }
}
