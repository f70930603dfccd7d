//! Errors as Docker sends them: a status code and `{"message": "..."}`.
//!
//! Status codes by engine error kind: NotFound 404, AlreadyExists 409, InvalidArgument
//! 400, Conflict 409, Forbidden 403, Unavailable 503, Internal 500. Docker answers 500
//! when the disk is full; berth's engine reports that as Unavailable and the API says
//! 503, which tells a client the request may succeed later.
//!
//! Each failure is logged once: an error response carries a [`Failure`] extension and
//! the request log line (`middleware.rs`) then says what failed, at error for server
//! faults (5xx), at warn for refused requests (4xx), and at debug for "not found", which
//! clients probe for routinely. A failure after a streamed response has begun is logged
//! where the stream ends (`stream.rs`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::EngineError;
use berth_types::ErrorKind;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, message)
    }

    /// Logs a failure that happened after the response status was sent.
    pub(crate) fn log_late(&self) {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "response stream failed");
        } else {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "response stream failed");
        }
    }
}

/// The message of an error response, for the request log line.
#[derive(Debug, Clone)]
pub(crate) struct Failure(pub String);

/// The HTTP status for an engine error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::new(status_of(e.kind), e.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "message": &self.message })),
        )
            .into_response();
        resp.extensions_mut().insert(Failure(self.message));
        resp
    }
}

/// Unknown routes: Docker's 404.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "page not found")
}

/// A known path with a method it does not take.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
