//! Registry errors. Each carries the object it concerns and the rule it broke, and maps
//! to one of the OCI Distribution Spec's error codes; the HTTP layer turns the code into
//! a status.

use berth_types::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository name {name:?} is invalid: {rule}")]
    NameInvalid { name: String, rule: &'static str },
    #[error("repository {0} is not known to this registry")]
    NameUnknown(String),
    #[error("tag {tag:?} is invalid: a tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    TagInvalid { tag: String },
    #[error("digest invalid: {reason}")]
    DigestInvalid { reason: String },
    #[error("blob {digest} is not in repository {repo}")]
    BlobUnknown { repo: String, digest: Digest },
    #[error("upload {uuid} is not in progress in repository {repo}")]
    BlobUploadUnknown { repo: String, uuid: String },
    #[error("upload {uuid} in repository {repo}: {reason}")]
    BlobUploadInvalid {
        repo: String,
        uuid: String,
        reason: String,
    },
    #[error("upload {uuid} in repository {repo}: chunk starts at byte {start} but the upload has {offset} bytes; chunks must be sent in order")]
    RangeInvalid {
        repo: String,
        uuid: String,
        start: u64,
        offset: u64,
    },
    #[error("manifest {reference} in repository {repo} is invalid: {reason}")]
    ManifestInvalid {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error("manifest {reference} is not in repository {repo}")]
    ManifestUnknown { repo: String, reference: String },
    #[error("manifest {reference} in repository {repo} references {what} {digest}, which is not in the repository; push it first")]
    ManifestBlobUnknown {
        repo: String,
        reference: String,
        what: &'static str,
        digest: Digest,
    },
    #[error("{what} is too large: {size} bytes, the limit is {limit} bytes")]
    SizeInvalid { what: String, size: u64, limit: u64 },
    #[error("{0}")]
    Unsupported(String),
    #[error("requested range of blob {digest} is not satisfiable: {reason}")]
    RangeNotSatisfiable { digest: Digest, reason: String },
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error("registry database: {0}")]
    Db(String),
}

impl Error {
    /// The spec's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NameInvalid { .. } => "NAME_INVALID",
            Error::NameUnknown(_) => "NAME_UNKNOWN",
            Error::TagInvalid { .. } => "TAG_INVALID",
            Error::DigestInvalid { .. } => "DIGEST_INVALID",
            Error::BlobUnknown { .. } => "BLOB_UNKNOWN",
            Error::BlobUploadUnknown { .. } => "BLOB_UPLOAD_UNKNOWN",
            Error::BlobUploadInvalid { .. } | Error::RangeInvalid { .. } => "BLOB_UPLOAD_INVALID",
            Error::ManifestInvalid { .. } => "MANIFEST_INVALID",
            Error::ManifestUnknown { .. } => "MANIFEST_UNKNOWN",
            Error::ManifestBlobUnknown { .. } => "MANIFEST_BLOB_UNKNOWN",
            Error::SizeInvalid { .. } => "SIZE_INVALID",
            Error::Unsupported(_) => "UNSUPPORTED",
            Error::Denied(_) => "DENIED",
            Error::RangeNotSatisfiable { .. } => "RANGE_INVALID",
            Error::Store(e) if e.kind() == berth_types::ErrorKind::InvalidArgument => {
                "DIGEST_INVALID"
            }
            Error::Store(e) if e.kind() == berth_types::ErrorKind::Unavailable => "UNAVAILABLE",
            Error::Store(_) | Error::Db(_) => "INTERNAL",
        }
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error { Error::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
