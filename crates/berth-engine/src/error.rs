//! Engine errors: a message naming the object and the rule, and a kind the API maps to a
//! status code.

use berth_types::ErrorKind;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::InvalidArgument, message)
    }
    pub fn conflict(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::Internal, message)
    }
}

impl From<berth_store::Error> for EngineError {
    fn from(e: berth_store::Error) -> EngineError {
        EngineError::new(e.kind(), e.to_string())
    }
}

impl From<berth_image::ImageError> for EngineError {
    fn from(e: berth_image::ImageError) -> EngineError {
        EngineError::new(e.kind(), e.to_string())
    }
}

impl From<berth_types::ReferenceError> for EngineError {
    fn from(e: berth_types::ReferenceError) -> EngineError {
        EngineError::invalid(e.to_string())
    }
}
