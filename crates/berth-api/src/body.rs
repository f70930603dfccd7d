//! Request bodies that hold JSON, taken as Docker takes them.
//!
//! Docker checks the `Content-Type` of every endpoint whose body is a JSON document
//! (`httputils.CheckForJSON`): a body without the header, or with another media type,
//! is refused with 400 before it is read; no header and no body is an empty request.
//! [`JsonBody`] is that rule as an extractor, for every such endpoint.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;

use crate::error::ApiError;

/// The largest JSON body berth reads (a create body with many mounts and labels is a
/// few kB; Docker reads without a limit).
pub const MAX_JSON_BODY: usize = 4 << 20;

/// The bytes of a JSON request body, its `Content-Type` checked (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct JsonBody(pub Bytes);

/// Docker's rule: no `Content-Type` is fine for an empty body; otherwise the media type
/// (parameters such as `charset` aside) must be `application/json`.
pub fn check_json(headers: &HeaderMap, body_len: usize) -> Result<(), ApiError> {
    let ct = match headers.get(CONTENT_TYPE) {
        None if body_len == 0 => return Ok(()),
        None => "",
        Some(v) => v.to_str().unwrap_or(""),
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "unsupported Content-Type header ({ct}): must be 'application/json'"
    )))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<JsonBody, ApiError> {
        let headers = req.headers().clone();
        let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "request body: {e} (a JSON body is at most {MAX_JSON_BODY} bytes)"
                ))
            })?;
        check_json(&headers, bytes.len())?;
        Ok(JsonBody(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).expect("header"));
        }
        h
    }

    #[test]
    fn only_json_or_nothing_is_accepted() {
        assert!(check_json(&with(None), 0).is_ok());
        assert!(check_json(&with(Some("application/json")), 10).is_ok());
        assert!(check_json(&with(Some("application/json; charset=utf-8")), 10).is_ok());
        assert!(check_json(&with(Some("Application/JSON")), 10).is_ok());
        let e = check_json(&with(None), 2).expect_err("no header with a body");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        let e = check_json(&with(Some("text/plain")), 2).expect_err("text/plain");
        assert!(e.message.contains("text/plain"), "{}", e.message);
        assert!(e.message.contains("application/json"), "{}", e.message);
        // An empty body with a wrong type is still the wrong type (Docker checks it).
        assert!(check_json(&with(Some("text/plain")), 0).is_err());
    }
}
