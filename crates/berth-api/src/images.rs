//! `/images/...`: load, save, import, list, inspect, history, tag, remove, prune.
//!
//! Image names may contain slashes (`team/app:1`, `reg:5000/a/b`), so the routes that
//! take a name are one catch-all, `/images/{*name}`, and the action suffix (`/json`,
//! `/history`, `/get`, `/tag`, `/push`) is split off here.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_engine::{DeleteItem, Engine, EngineError, ImageDetails, ImageSummary, ImportOptions};
use berth_image::model::{ImageConfig, RunConfig};
use berth_image::{LoadEvent, SaveFormat};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::params::Params;
use crate::stream::{self, LateError};
use crate::version::ApiVersion;

const JSON: &str = "application/json";
const TAR: &str = "application/x-tar";

/// Runs a blocking engine call off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, EngineError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Maps a failed write to the response body (the client went away) to an engine error.
fn sink_error(e: std::io::Error) -> EngineError {
    EngineError::new(
        berth_types::ErrorKind::Unavailable,
        format!("writing the response: {e}"),
    )
}

// ---------------------------------------------------------------------------------
// Wire shapes

/// One image as `GET /images/json` and `GET /system/df` list it (Docker's
/// `image.Summary`). `shared` says whether SharedSize was computed (else -1, as Docker
/// without `shared-size=1`); `containers` likewise (else -1).
pub(crate) fn summary_json(
    s: &ImageSummary,
    version: ApiVersion,
    shared: bool,
    containers: Option<i64>,
) -> Value {
    let (mut repo_tags, mut repo_digests) = (s.repo_tags.clone(), s.repo_digests.clone());
    // Before API 1.43 Docker listed dangling images as `<none>:<none>`.
    if version < ApiVersion::new(1, 43) && repo_tags.is_empty() && repo_digests.is_empty() {
        repo_tags.push("<none>:<none>".to_string());
        repo_digests.push("<none>@<none>".to_string());
    }
    let mut v = json!({
        "Containers": containers.unwrap_or(-1),
        "Created": s.created,
        "Id": s.id.to_string(),
        "Labels": s.labels,
        "ParentId": "",
        "RepoDigests": repo_digests,
        "RepoTags": repo_tags,
        "SharedSize": if shared { s.shared_size as i64 } else { -1 },
        "Size": s.size,
    });
    if version < ApiVersion::new(1, 44) {
        v["VirtualSize"] = json!(s.size);
    }
    v
}

/// An RFC 3339 time as Go's `time.RFC3339Nano` writes it (trailing zeros trimmed).
fn rfc3339_nano(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .ok()?
        .with_timezone(&chrono::Utc);
    let full = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (head, frac) = full.trim_end_matches('Z').split_once('.')?;
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        format!("{head}Z")
    } else {
        format!("{head}.{frac}Z")
    })
}

/// The image's `config` as Docker's `container.Config`: the fields Docker always sends
/// are present (empty when the image does not set them), then every field the image
/// config has, unknown ones included, as the image wrote them.
fn run_config_json(rc: Option<&RunConfig>) -> Value {
    let mut base = json!({
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": null,
        "Cmd": null,
        "Image": "",
        "Volumes": null,
        "WorkingDir": "",
        "Entrypoint": null,
        "OnBuild": null,
        "Labels": null,
    });
    if let (Some(rc), Value::Object(base_map)) = (rc, &mut base) {
        if let Ok(Value::Object(m)) = serde_json::to_value(rc) {
            for (k, v) in m {
                base_map.insert(k, v);
            }
        }
    }
    base
}

/// `GET /images/{name}/json` (Docker's `image.InspectResponse`).
fn inspect_json(d: &ImageDetails, version: ApiVersion) -> Value {
    let cfg: &ImageConfig = &d.config;
    let mut v = Map::new();
    v.insert("Id".into(), json!(d.summary.id.to_string()));
    v.insert("RepoTags".into(), json!(d.summary.repo_tags));
    v.insert("RepoDigests".into(), json!(d.summary.repo_digests));
    v.insert(
        "Parent".into(),
        json!(d.record.parent.map(|p| p.to_string()).unwrap_or_default()),
    );
    v.insert(
        "Comment".into(),
        json!(cfg.comment.clone().unwrap_or_default()),
    );
    if let Some(created) = cfg.created.as_deref() {
        v.insert(
            "Created".into(),
            json!(rfc3339_nano(created).unwrap_or_else(|| created.to_string())),
        );
    }
    // Docker dropped these in API 1.45, but clients that negotiate a newer version still
    // read them: docker-compose 1.29's recreate fails with `KeyError: 'ContainerConfig'`
    // (as it does against Docker 25 and later). berth keeps them in every version.
    {
        v.insert(
            "Container".into(),
            cfg.other
                .get("container")
                .cloned()
                .unwrap_or_else(|| json!("")),
        );
        let cc = cfg
            .other
            .get("container_config")
            .and_then(|c| serde_json::from_value::<RunConfig>(c.clone()).ok());
        v.insert("ContainerConfig".into(), run_config_json(cc.as_ref()));
    }
    v.insert(
        "DockerVersion".into(),
        json!(cfg.docker_version.clone().unwrap_or_default()),
    );
    v.insert(
        "Author".into(),
        json!(cfg.author.clone().unwrap_or_default()),
    );
    v.insert("Config".into(), run_config_json(cfg.config.as_ref()));
    v.insert("Architecture".into(), json!(cfg.architecture));
    if let Some(variant) = &cfg.variant {
        v.insert("Variant".into(), json!(variant));
    }
    v.insert("Os".into(), json!(cfg.os));
    if let Some(os_version) = &cfg.os_version {
        v.insert("OsVersion".into(), json!(os_version));
    }
    v.insert("Size".into(), json!(d.summary.size));
    if version < ApiVersion::new(1, 44) {
        v.insert("VirtualSize".into(), json!(d.summary.size));
    }
    let mut driver_data = Map::new();
    if !d.layer_dirs.is_empty() {
        let lower: Vec<String> = d
            .layer_dirs
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        driver_data.insert("LowerDir".into(), json!(lower.join(":")));
    }
    v.insert(
        "GraphDriver".into(),
        json!({ "Name": "overlayfs", "Data": driver_data }),
    );
    let layers: Vec<String> = cfg.rootfs.diff_ids.iter().map(|d| d.to_string()).collect();
    v.insert(
        "RootFS".into(),
        json!({ "Type": "layers", "Layers": layers }),
    );
    v.insert(
        "Metadata".into(),
        json!({ "LastTagTime": "0001-01-01T00:00:00Z" }),
    );
    Value::Object(v)
}

/// One row of `GET /images/{name}/history`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryJson {
    id: String,
    created: i64,
    created_by: String,
    tags: Option<Vec<String>>,
    size: u64,
    comment: String,
}

fn delete_json(items: &[DeleteItem]) -> Vec<Value> {
    items
        .iter()
        .map(|i| match i {
            DeleteItem::Untagged(r) => json!({ "Untagged": r }),
            DeleteItem::Deleted(d) => json!({ "Deleted": d.to_string() }),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Handlers

/// `GET /images/json?all=&filters=&digests=&shared-size=&manifests=`.
pub(crate) async fn list(
    State(engine): State<Engine>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Json<Vec<Value>>, ApiError> {
    // `all`: also the intermediate images (untagged parents of other images, a build's
    // steps). `digests` changes nothing: berth always lists them (still checked).
    let all = params.bool("all")?;
    params.bool("digests")?;
    params.bool("manifests")?;
    let shared = params.bool("shared-size")?;
    let mut filters = params.filters()?;
    // Before API 1.41, `filter=<reference>` was the way to filter by name.
    if version < ApiVersion::new(1, 41) {
        if let Some(f) = params.non_empty("filter") {
            filters.insert("reference", f);
        }
    }
    let images = blocking(move || engine.list_images(&filters, all)).await?;
    Ok(Json(
        images
            .iter()
            .map(|s| summary_json(s, version, shared, None))
            .collect(),
    ))
}

/// `GET /images/{name}/json|history|get`.
pub(crate) async fn get_by_name(
    State(engine): State<Engine>,
    Extension(version): Extension<ApiVersion>,
    Path(path): Path<String>,
    params: Params,
) -> Response {
    let Some((name, action)) = path.rsplit_once('/').filter(|(n, _)| !n.is_empty()) else {
        return crate::error::not_found().await.into_response();
    };
    let name = name.to_string();
    match action {
        "json" => match blocking(move || engine.inspect_image(&name)).await {
            Ok(d) => Json(inspect_json(&d, version)).into_response(),
            Err(e) => e.into_response(),
        },
        "history" => match blocking(move || engine.history(&name)).await {
            Ok(rows) => Json(
                rows.into_iter()
                    .map(|r| HistoryJson {
                        id: r.id,
                        created: r.created,
                        created_by: r.created_by,
                        tags: if r.tags.is_empty() {
                            None
                        } else {
                            Some(r.tags)
                        },
                        size: r.size,
                        comment: r.comment,
                    })
                    .collect::<Vec<_>>(),
            )
            .into_response(),
            Err(e) => e.into_response(),
        },
        "get" => save(engine, vec![name], &params).await,
        _ => crate::error::not_found().await.into_response(),
    }
}

/// `POST /images/{name}/tag|push`.
pub(crate) async fn post_by_name(
    State(engine): State<Engine>,
    Path(path): Path<String>,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some((name, action)) = path.rsplit_once('/').filter(|(n, _)| !n.is_empty()) else {
        return crate::error::not_found().await.into_response();
    };
    let name = name.to_string();
    match action {
        "tag" => {
            let repo = match params.non_empty("repo") {
                Some(r) => r.to_string(),
                None => {
                    return ApiError::bad_request("missing query parameter 'repo'").into_response()
                }
            };
            let tag = params.non_empty("tag").map(str::to_string);
            match blocking(move || engine.tag(&name, &repo, tag.as_deref())).await {
                Ok(_) => StatusCode::CREATED.into_response(),
                Err(e) => e.into_response(),
            }
        }
        "push" => crate::distribution::push(engine, name, params, headers).await,
        _ => crate::error::not_found().await.into_response(),
    }
}

/// `DELETE /images/{name}?force=&noprune=`.
pub(crate) async fn remove(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Vec<Value>>, ApiError> {
    let force = params.bool("force")?;
    let noprune = params.bool("noprune")?;
    let items = blocking(move || engine.remove_image(&name, force, noprune)).await?;
    Ok(Json(delete_json(&items)))
}

/// `POST /images/prune?filters=`.
pub(crate) async fn prune(
    State(engine): State<Engine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let filters = params.filters()?;
    let report = blocking(move || engine.prune_images(&filters)).await?;
    let deleted = if report.deleted.is_empty() {
        Value::Null
    } else {
        json!(delete_json(&report.deleted))
    };
    Ok(Json(
        json!({ "ImagesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed }),
    ))
}

/// The short ID `docker load` shows for an archive member: the first 12 characters of
/// its name, after `blobs/sha256/` in OCI layouts.
fn member_id(name: &str) -> String {
    let n = name.strip_prefix("blobs/sha256/").unwrap_or(name);
    n.chars().take(12).collect()
}

/// Whether a member is metadata rather than a layer (no progress is shown for those).
fn is_metadata_member(name: &str) -> bool {
    name.ends_with(".json")
        || name.ends_with("/json")
        || name == "oci-layout"
        || name == "repositories"
        || name.ends_with("/VERSION")
}

/// `POST /images/load?quiet=`: the body is a `docker save` or OCI layout archive.
pub(crate) async fn load(State(engine): State<Engine>, params: Params, body: Body) -> Response {
    let quiet = match params.bool("quiet") {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let mut reader = stream::body_reader(body);
    // Docker answers 200 and puts any error in the stream (docker-py raises
    // ImageLoadError from it).
    stream::respond(JSON, LateError::AlwaysJsonLine, move |sink| {
        let mut sink_err = None;
        let mut on_event = |ev: LoadEvent| {
            if quiet || sink_err.is_some() {
                return;
            }
            if let LoadEvent::File {
                name,
                current,
                total,
            } = ev
            {
                if is_metadata_member(&name) {
                    return;
                }
                let msg =
                    stream::progress_message("Loading layer", &member_id(&name), current, total);
                if let Err(e) = sink.json(&msg) {
                    sink_err = Some(e);
                }
            }
        };
        let loaded = engine
            .load(&mut reader, &mut on_event)
            .inspect_err(|_| stream::drain_after_error(&mut reader))?;
        if let Some(e) = sink_err {
            return Err(sink_error(e));
        }
        for l in loaded {
            if l.tags.is_empty() {
                sink.json(&json!({ "stream": format!("Loaded image ID: {}\n", l.id) }))
                    .map_err(sink_error)?;
            }
            for t in &l.tags {
                sink.json(&json!({ "stream": format!("Loaded image: {t}\n") }))
                    .map_err(sink_error)?;
            }
        }
        Ok(())
    })
    .await
}

/// `GET /images/get?names=a&names=b[&format=oci]`.
pub(crate) async fn save_many(State(engine): State<Engine>, params: Params) -> Response {
    let names = params.all("names");
    save(engine, names, &params).await
}

/// Streams the named images as an archive: Docker's `docker save` layout, or an OCI
/// image layout with `format=oci` (a berth extension).
async fn save(engine: Engine, names: Vec<String>, params: &Params) -> Response {
    let format = match params.non_empty("format") {
        None | Some("docker") => SaveFormat::Docker,
        Some("oci") => SaveFormat::Oci,
        Some(other) => {
            return ApiError::bad_request(format!(
                "invalid value for query parameter 'format': {other:?} (use docker or oci)"
            ))
            .into_response()
        }
    };
    let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return ApiError::bad_request("missing query parameter 'names': name at least one image")
            .into_response();
    }
    stream::respond(TAR, LateError::Abort, move |sink| {
        engine.save(&names, format, sink)
    })
    .await
}

/// `POST /images/create`: pull (`fromImage`, see `distribution.rs`) or import a rootfs
/// tarball (`fromSrc=-`, the body).
pub(crate) async fn create(
    State(engine): State<Engine>,
    params: Params,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    if params.non_empty("fromImage").is_some() {
        return crate::distribution::pull(engine, params, headers).await;
    }
    let opts = match import_options(&params) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let mut reader = stream::body_reader(body);
    stream::respond(JSON, LateError::JsonLine, move |sink| {
        let id = engine
            .import(&mut reader, &opts)
            .inspect_err(|_| stream::drain_after_error(&mut reader))?;
        sink.json(&json!({ "status": id.to_string() }))
            .map_err(sink_error)
    })
    .await
}

fn import_options(params: &Params) -> Result<ImportOptions, ApiError> {
    match params.non_empty("fromSrc") {
        Some("-") => {}
        Some(src) => {
            return Err(ApiError::bad_request(format!(
                "fromSrc {src:?}: berth does not fetch URLs; send the rootfs tarball as the request body (fromSrc=-)"
            )))
        }
        None => return Err(ApiError::bad_request("missing query parameter 'fromSrc' or 'fromImage'")),
    }
    let reference = match (params.non_empty("repo"), params.non_empty("tag")) {
        (Some(repo), Some(tag)) => Some(format!("{repo}:{tag}")),
        (Some(repo), None) => Some(repo.to_string()),
        (None, _) => None,
    };
    Ok(ImportOptions {
        reference,
        changes: params
            .all("changes")
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect(),
        message: params.non_empty("message").map(str::to_string),
        platform: params.non_empty("platform").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_go() {
        assert_eq!(
            rfc3339_nano("2026-11-26T09:35:10.62907791Z").as_deref(),
            Some("2026-11-26T09:35:10.62907791Z")
        );
        assert_eq!(
            rfc3339_nano("2026-11-26T09:35:10Z").as_deref(),
            Some("2026-11-26T09:35:10Z")
        );
        assert_eq!(
            rfc3339_nano("2026-11-26T10:35:10.5+01:00").as_deref(),
            Some("2026-11-26T09:35:10.5Z")
        );
    }

    #[test]
    fn member_ids_are_short() {
        assert_eq!(
            member_id("e9c807c5ab4099e3946b60f6/layer.tar"),
            "e9c807c5ab40"
        );
        assert_eq!(member_id("blobs/sha256/0123456789abcdef"), "0123456789ab");
        assert!(is_metadata_member("manifest.json"));
        assert!(!is_metadata_member("e9c807c5ab40/layer.tar"));
    }

    #[test]
    fn run_config_keeps_docker_fields() {
        let v = run_config_json(None);
        for k in [
            "User",
            "Env",
            "Cmd",
            "Entrypoint",
            "WorkingDir",
            "Labels",
            "Volumes",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
