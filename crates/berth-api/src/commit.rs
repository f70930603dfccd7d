//! `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: a container as a
//! new image (Docker 20.10's route: `pause` defaults to true, `changes` repeats, the body
//! is a container `Config` or nothing; 201 `{"Id": "sha256:…"}`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::{CommitOptions, Engine};
use berth_image::model::{HealthConfig, RunConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;

/// The fields of a commit body's `Config` berth applies to the image.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CommitBody {
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "ExposedPorts")]
    exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Healthcheck")]
    healthcheck: Option<HealthConfig>,
    #[serde(rename = "Volumes")]
    volumes: Option<BTreeMap<String, Value>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "StopSignal")]
    stop_signal: Option<String>,
    #[serde(rename = "OnBuild")]
    on_build: Option<Vec<String>>,
    #[serde(rename = "Shell")]
    shell: Option<Vec<String>>,
}

fn config_of(bytes: &[u8]) -> Result<Option<RunConfig>, ApiError> {
    let text = String::from_utf8_lossy(bytes);
    if matches!(text.trim(), "" | "null") {
        return Ok(None);
    }
    let b: CommitBody = crate::decode::body(bytes, "commit body")?;
    let empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(Some(RunConfig {
        user: empty(b.user),
        exposed_ports: b.exposed_ports,
        env: b.env,
        entrypoint: b.entrypoint,
        cmd: b.cmd,
        healthcheck: b.healthcheck,
        volumes: b.volumes,
        working_dir: empty(b.working_dir),
        labels: b.labels,
        stop_signal: empty(b.stop_signal),
        on_build: b.on_build,
        shell: b.shell,
        ..Default::default()
    }))
}

/// `POST /commit`.
pub(crate) async fn commit(
    State(engine): State<Engine>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Response {
    let result = (|| -> Result<(String, CommitOptions), ApiError> {
        let pause = match params.get("pause") {
            None | Some("") => true,
            Some(_) => params.bool("pause")?,
        };
        let opts = CommitOptions {
            repo: params.get("repo").unwrap_or("").to_string(),
            tag: params.get("tag").unwrap_or("").to_string(),
            author: params.get("author").unwrap_or("").to_string(),
            comment: params.get("comment").unwrap_or("").to_string(),
            pause,
            changes: params.all("changes"),
            config: config_of(&body)?,
        };
        Ok((params.get("container").unwrap_or("").to_string(), opts))
    })();
    let (container, opts) = match result {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.commit_container(&container, &opts)).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "Id": id }))).into_response(),
        Err(e) => e.into_response(),
    }
}
