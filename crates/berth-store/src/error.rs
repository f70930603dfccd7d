//! Store errors: what failed, on which object, and why.

use std::path::{Path, PathBuf};

use berth_types::{Digest, ErrorKind};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {expected}: content has digest {actual} ({size} bytes); refusing to store it")]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {0} not found in the content store")]
    BlobNotFound(Digest),
    #[error("snapshot of layer {0} not found")]
    SnapshotNotFound(Digest),
    #[error("state root is in use by another berth process (lock {})", .0.display())]
    Locked(PathBuf),
    #[error("{what} version {found} is not supported (this berth supports {supported}); refusing to open the state root")]
    Version {
        what: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("metadata database: {0}")]
    Db(String),
    /// redb refuses calls after an earlier I/O error until the file is opened again.
    #[error("metadata database: {0}")]
    DbPoisoned(String),
    /// The metadata database could not read or write its file (a full disk).
    #[error("metadata database: {0}")]
    DbIo(std::io::Error),
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

impl Error {
    pub fn io(path: &Path, op: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } if is_no_space(source) => ErrorKind::Unavailable,
            Error::Io { .. } => ErrorKind::Internal,
            Error::DigestMismatch { .. } => ErrorKind::InvalidArgument,
            Error::BlobNotFound(_) | Error::SnapshotNotFound(_) => ErrorKind::NotFound,
            Error::Locked(_) => ErrorKind::Unavailable,
            Error::DbIo(e) if is_no_space(e) => ErrorKind::Unavailable,
            Error::Version { .. }
            | Error::Db(_)
            | Error::DbPoisoned(_)
            | Error::DbIo(_)
            | Error::Corrupt(_) => ErrorKind::Internal,
        }
    }

    /// Whether the failure is a full disk or an exhausted quota.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } | Error::DbIo(source) => is_no_space(source),
            _ => false,
        }
    }
}

pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Error {
        match e {
            redb::StorageError::PreviousIo => Error::DbPoisoned(e.to_string()),
            redb::StorageError::Io(io) => Error::DbIo(io),
            e => Error::Db(e.to_string()),
        }
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Error {
        match e {
            redb::Error::PreviousIo => Error::DbPoisoned(e.to_string()),
            redb::Error::Io(io) => Error::DbIo(io),
            e => Error::Db(e.to_string()),
        }
    }
}

/// The other redb errors wrap a `StorageError` where the I/O ones live.
macro_rules! db_err {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for Error {
            fn from(e: redb::$t) -> Error {
                match e {
                    redb::$t::Storage(s) => Error::from(s),
                    e => Error::Db(e.to_string()),
                }
            }
        }
    )*};
}
db_err!(DatabaseError, TransactionError, TableError, CommitError);
