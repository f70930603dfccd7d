//! What every request goes through before routing: the request log line, the headers
//! Docker puts on every response, a small body read whole (so that an early refusal
//! reaches the client), and the `/v{major}.{minor}` prefix, which is checked
//! against the versions berth speaks and stripped (the handlers see the version as an
//! [`ApiVersion`] request extension).

use std::time::Instant;

use axum::extract::Request;
use axum::http::header::{HeaderName, HeaderValue, SERVER};
use axum::http::uri::PathAndQuery;
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::{ApiError, Failure};
use crate::version::ApiVersion;
use crate::{API_VERSION, MIN_API_VERSION, SERVER_HEADER};

/// Splits `/v1.47/images/json` into `("1.47", "/images/json")`. Docker's router takes
/// `/v{version:[0-9.]+}` as the prefix; a path that does not start so has none.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (ver, tail) = rest.split_at(end);
    if ver.is_empty() || !ver.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((ver, tail))
}

/// Checks and strips the version prefix.
async fn version_prefix(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let Some((ver, tail)) = split_version(&path) else {
        req.extensions_mut().insert(ApiVersion::max());
        return next.run(req).await;
    };
    let Ok(version) = ver.parse::<ApiVersion>() else {
        return ApiError::bad_request(format!("invalid API version {ver:?} in the request path"))
            .into_response();
    };
    if version > ApiVersion::max() {
        return ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        ))
        .into_response();
    }
    if version < ApiVersion::min() {
        return ApiError::bad_request(format!(
            "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, \
             please upgrade your client to a newer version"
        ))
        .into_response();
    }
    let tail = if tail.is_empty() { "/" } else { tail };
    let new_pq = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = match PathAndQuery::try_from(new_pq) {
        Ok(pq) => Some(pq),
        Err(e) => return ApiError::bad_request(format!("request path: {e}")).into_response(),
    };
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return ApiError::bad_request(format!("request path: {e}")).into_response(),
    }
    req.extensions_mut().insert(version);
    next.run(req).await
}

/// Bodies up to this size (by their `Content-Length`) are read before routing.
const SMALL_BODY: u64 = 1 << 20;

/// Reads a small request body whole before anything can answer the request. A refusal
/// (a bad version prefix, a query parameter, an unknown route, an endpoint berth
/// refuses) otherwise answers before the body is read, and hyper then closes the
/// connection under a client that is still writing: the client sees `broken pipe`
/// instead of the error message. Large and chunked bodies (archives, build contexts)
/// stay streamed; their handlers read them.
async fn read_small_body(req: Request, next: Next) -> Response {
    let len = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(len) = len.filter(|l| (1..=SMALL_BODY).contains(l)) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, len as usize).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("reading the request body: {e}")).into_response()
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The headers Docker sends on every response.
async fn common_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static("api-version"),
        HeaderValue::from_static(API_VERSION),
    );
    h.insert(
        HeaderName::from_static("docker-experimental"),
        HeaderValue::from_static("false"),
    );
    h.insert(
        HeaderName::from_static("ostype"),
        HeaderValue::from_static("linux"),
    );
    h.insert(SERVER, HeaderValue::from_static(SERVER_HEADER));
    resp
}

/// One line per request: debug when it succeeded, else at the level its failure calls
/// for, with the error message. Only the path is logged: never bodies or query strings.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let duration_ms = start.elapsed().as_millis() as u64;
    let code = status.as_u16();
    match resp.extensions().get::<Failure>() {
        None => tracing::debug!(%method, %path, status = code, duration_ms, "request"),
        Some(Failure(error)) if status.is_server_error() => {
            tracing::error!(%method, %path, status = code, duration_ms, %error, "request failed")
        }
        Some(Failure(error)) if status == StatusCode::NOT_FOUND => {
            tracing::debug!(%method, %path, status = code, duration_ms, %error, "request failed")
        }
        Some(Failure(error)) => {
            tracing::warn!(%method, %path, status = code, duration_ms, %error, "request refused")
        }
    }
    resp
}

/// Puts the version check and the common middleware in front of the routes. The
/// prefix must be stripped before routing, so the routes sit behind a router that has
/// only a fallback: its middleware runs first and the inner router sees the new path.
pub(crate) fn wrap(api: Router) -> Router {
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(version_prefix))
        .layer(middleware::from_fn(read_small_body))
        .layer(middleware::from_fn(common_headers))
        .layer(middleware::from_fn(log_request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_version_prefix() {
        assert_eq!(
            split_version("/v1.41/images/json"),
            Some(("1.41", "/images/json"))
        );
        assert_eq!(split_version("/v1.41"), Some(("1.41", "")));
        assert_eq!(split_version("/version"), None);
        assert_eq!(split_version("/images/json"), None);
        assert_eq!(split_version("/v/x"), None);
    }
}
