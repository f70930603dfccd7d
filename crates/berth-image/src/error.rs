//! Image errors name the image, the layer and the entry concerned, and the rule broken.

use berth_types::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The input breaks a rule: `image fixture/app:1 layer 2 (sha256:…): entry ../x: path escapes the layer root`.
    #[error("{0}")]
    Invalid(String),
    /// A resource ran out (disk space, the free-space reserve).
    #[error("{0}")]
    NoSpace(String),
    #[error("{0}")]
    NotFound(String),
    /// A policy of the daemon refuses the image.
    #[error("{0}")]
    Forbidden(String),
    /// A registry refused a request or answered something berth cannot use.
    #[error("{0}")]
    Registry(String),
    /// The registry could not be reached or the transfer broke.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Invalid(_) => ErrorKind::InvalidArgument,
            ImageError::NoSpace(_) => ErrorKind::Unavailable,
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Forbidden(_) => ErrorKind::Forbidden,
            ImageError::Registry(_) => ErrorKind::InvalidArgument,
            ImageError::Unavailable(_) => ErrorKind::Unavailable,
            ImageError::Store(e) => e.kind(),
            ImageError::Io { source, .. } if berth_store::error::is_no_space(source) => {
                ErrorKind::Unavailable
            }
            ImageError::Io { .. } => ErrorKind::Internal,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> ImageError {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
