//! `/containers/{id}/archive` (`docker cp`): HEAD stats a path, GET streams it as a tar,
//! PUT extracts a tar (plain, gzip or zstd) into a directory. The stat travels in the
//! `X-Docker-Container-Path-Stat` header, base64 of Docker's `PathStat` JSON.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_engine::{Engine, PathStat};

use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;
use crate::stream::{self, LateError};

const TAR: &str = "application/x-tar";
const STAT_HEADER: &str = "x-docker-container-path-stat";

fn path_param(params: &Params) -> Result<String, ApiError> {
    match params.non_empty("path") {
        Some(p) => Ok(p.to_string()),
        None => Err(ApiError::bad_request(
            "missing query parameter 'path': name a path in the container",
        )),
    }
}

fn stat_header(stat: &PathStat) -> Result<HeaderValue, ApiError> {
    let json =
        serde_json::to_vec(stat).map_err(|e| ApiError::internal(format!("path stat: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(json);
    HeaderValue::from_str(&b64).map_err(|e| ApiError::internal(format!("path stat header: {e}")))
}

fn with_stat(mut resp: Response, stat: &PathStat) -> Response {
    match stat_header(stat) {
        Ok(v) => {
            resp.headers_mut()
                .insert(HeaderName::from_static(STAT_HEADER), v);
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// `HEAD /containers/{id}/archive?path=`
pub(crate) async fn head(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let path = match path_param(&params) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.stat_path(&id, &path)).await {
        Ok(stat) => with_stat(StatusCode::OK.into_response(), &stat),
        Err(e) => e.into_response(),
    }
}

/// `GET /containers/{id}/archive?path=`: the tar, streamed; the stat in the header.
pub(crate) async fn get(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let path = match path_param(&params) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let stat: Arc<Mutex<Option<PathStat>>> = Arc::default();
    let slot = stat.clone();
    let resp = stream::respond(TAR, LateError::Abort, move |sink| {
        let mut on_stat = |s: &PathStat| {
            if let Ok(mut g) = slot.lock() {
                *g = Some(s.clone());
            }
        };
        engine.get_archive(&id, &path, &mut on_stat, sink)
    })
    .await;
    if !resp.status().is_success() {
        return resp;
    }
    // The stat is known before the first byte of the tar (and so before `respond` returns).
    let stat = stat.lock().ok().and_then(|g| g.clone());
    match stat {
        Some(s) => with_stat(resp, &s),
        None => resp,
    }
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: the body is
/// a tar extracted into the directory `path`.
pub(crate) async fn put(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
    body: Body,
) -> Response {
    let parsed = (|| -> Result<(String, bool, bool), ApiError> {
        Ok((
            path_param(&params)?,
            params.bool("noOverwriteDirNonDir")?,
            params.bool("copyUIDGID")?,
        ))
    })();
    let (path, no_overwrite, copy_uid_gid) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut reader = stream::body_reader(body);
    match blocking(move || {
        engine
            .put_archive(&id, &path, &mut reader, no_overwrite, copy_uid_gid)
            .inspect_err(|_| stream::drain_after_error(&mut reader))
    })
    .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}
