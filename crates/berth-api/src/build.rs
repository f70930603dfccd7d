//! `POST /build`: Docker's classic builder protocol. The body is the context (a tar,
//! plain or compressed); the answer is Docker's JSON message stream (`stream` lines,
//! `aux` with the image ID, an `errorDetail` line when a step fails). What berth cannot
//! honour is refused by name before anything runs.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use berth_engine::build::{BuildOptions, BuildProgress, RegistryAuths};
use berth_engine::Engine;
use serde_json::json;

use crate::error::ApiError;
use crate::params::Params;
use crate::stream::{self, LateError, Sink};

const JSON: &str = "application/json";

/// A JSON object parameter (`buildargs`, `labels`): Docker sends `{}`-shaped JSON.
fn json_param<T: serde::de::DeserializeOwned + Default>(
    params: &Params,
    name: &str,
) -> Result<T, ApiError> {
    match params.non_empty(name) {
        None => Ok(T::default()),
        Some(raw) => serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid {name} parameter {raw:?}: {e}"))),
    }
}

fn options(params: &Params) -> Result<(BuildOptions, bool), ApiError> {
    if let Some(r) = params.non_empty("remote") {
        return Err(ApiError::not_implemented(format!(
            "remote={r}: berth builds from the context sent in the request only"
        )));
    }
    if params.get("version") == Some("2") {
        return Err(ApiError::not_implemented(
            "version=2 (BuildKit): berth implements the classic builder (set DOCKER_BUILDKIT=0)",
        ));
    }
    if params.bool("squash")? {
        return Err(ApiError::not_implemented(
            "squash is not supported by berth's builder",
        ));
    }
    for name in [
        "memory",
        "memswap",
        "cpushares",
        "cpusetcpus",
        "cpuperiod",
        "cpuquota",
        "shmsize",
    ] {
        if params.int(name)?.is_some_and(|v| v != 0) {
            return Err(ApiError::not_implemented(format!(
                "{name}: resource limits of build steps are not supported by berth's builder"
            )));
        }
    }
    if params.non_empty("extrahosts").is_some() {
        return Err(ApiError::not_implemented(
            "extrahosts is not supported by berth's builder",
        ));
    }
    if params.non_empty("outputs").is_some() {
        return Err(ApiError::not_implemented(
            "outputs is not supported by berth's builder (the result is an image)",
        ));
    }
    let cache_from: Vec<String> = json_param(params, "cachefrom")?;
    let build_args: BTreeMap<String, Option<String>> = json_param(params, "buildargs")?;
    let labels: BTreeMap<String, String> = json_param(params, "labels")?;
    let remove = match params.get("rm") {
        None | Some("") => true,
        Some(_) => params.bool("rm")?,
    };
    Ok((
        BuildOptions {
            dockerfile: params.get("dockerfile").unwrap_or("").to_string(),
            tags: params
                .all("t")
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect(),
            build_args,
            target: params.get("target").unwrap_or("").to_string(),
            labels,
            no_cache: params.bool("nocache")?,
            pull: params.bool("pull")?,
            network: params.get("networkmode").unwrap_or("").to_string(),
            platform: params.get("platform").unwrap_or("").to_string(),
            cache_from,
            remove,
            force_remove: params.bool("forcerm")?,
            registry_auth: RegistryAuths::default(),
        },
        params.bool("q")?,
    ))
}

/// The stream's messages: `{"stream": …}` (none with `q` but the ID) and the `aux` ID.
struct Progress<'a> {
    sink: &'a mut Sink,
    quiet: bool,
}

impl BuildProgress for Progress<'_> {
    fn stream(&mut self, text: &str) -> std::io::Result<()> {
        if self.quiet || text.is_empty() {
            return Ok(());
        }
        self.sink.json(&json!({ "stream": text }))
    }

    fn result(&mut self, id: &str) -> std::io::Result<()> {
        self.sink.json(&json!({ "aux": { "ID": id } }))?;
        if self.quiet {
            self.sink.json(&json!({ "stream": format!("{id}\n") }))?;
        }
        Ok(())
    }
}

/// `POST /build`.
pub(crate) async fn build(
    State(engine): State<Engine>,
    params: Params,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let (mut opts, quiet) = match options(&params) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    opts.registry_auth = crate::distribution::registry_config(&headers);
    let mut reader = stream::body_reader(body);
    stream::respond(JSON, LateError::JsonLine, move |sink| {
        let mut progress = Progress { sink, quiet };
        engine
            .build_image(&mut reader, &opts, &mut progress)
            .inspect_err(|_| stream::drain_after_error(&mut reader))?;
        Ok(())
    })
    .await
}

/// `POST /images/outdated/rebuild` (berth's, `berth build --rebuild-outdated`): builds
/// every outdated image again from its kept context (see `Engine::rebuild_outdated`),
/// answered as `/build`'s JSON stream; credentials as `/build`'s (`X-Registry-Config`).
pub(crate) async fn rebuild_outdated(
    State(engine): State<Engine>,
    headers: axum::http::HeaderMap,
) -> Response {
    let auths = crate::distribution::registry_config(&headers);
    stream::respond(JSON, LateError::JsonLine, move |sink| {
        let mut progress = Progress { sink, quiet: false };
        let n = engine.rebuild_outdated(&auths, &mut progress)?;
        progress
            .stream(&format!("{n} outdated image(s) rebuilt\n"))
            .map_err(|e| berth_engine::EngineError::internal(e.to_string()))?;
        Ok(())
    })
    .await
}

/// `POST /build/prune` (`docker builder prune`): the build cache that no container uses;
/// `all` also what other images are built on. Filters and `keep-storage` are refused by
/// name (berth's cache has no LRU to keep).
pub(crate) async fn prune(
    State(engine): State<Engine>,
    params: Params,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let all = params.bool("all")?;
    if params.int("keep-storage")?.is_some_and(|k| k != 0) {
        return Err(ApiError::not_implemented(
            "keep-storage is not supported by berth's build cache",
        ));
    }
    if !params.filters()?.0.is_empty() {
        return Err(ApiError::not_implemented(
            "filters of build cache prune are not supported by berth",
        ));
    }
    let (removed, freed) = crate::images::blocking(move || engine.prune_build_cache(all)).await?;
    Ok(axum::Json(
        json!({ "CachesDeleted": removed, "SpaceReclaimed": freed }),
    ))
}

/// `GET /images/outdated` (berth's, no Docker endpoint): the images built here whose
/// base image has another digest in its registry now.
pub(crate) async fn outdated(
    State(engine): State<Engine>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let auths = crate::distribution::registry_config(&headers);
    let rows = crate::images::blocking(move || engine.outdated_images(&auths)).await?;
    Ok(axum::Json(serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "Image": r.image,
                    "Base": r.base,
                    "Recorded": r.recorded,
                    "Current": r.current,
                    "Status": r.status,
                })
            })
            .collect(),
    )))
}
