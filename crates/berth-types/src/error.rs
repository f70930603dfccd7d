//! The few error classes every berth error maps to. The API edge turns them into HTTP
//! status codes; nothing below the API knows about HTTP.

/// What kind of failure an error is, independent of which object it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// The object exists already and the operation would replace it.
    AlreadyExists,
    /// The request or the input data breaks a rule (bad reference, hostile archive, ...).
    InvalidArgument,
    /// The operation conflicts with the object's state (image in use, ...).
    Conflict,
    /// A policy forbids the operation.
    Forbidden,
    /// A resource is exhausted or a dependency is not available (disk full, ...).
    Unavailable,
    /// A bug or an unexpected failure of the host (I/O error, corrupt database).
    Internal,
    /// The operation does not apply to this object's configuration (Docker's 501, e.g.
    /// reading the logs of a container whose log driver keeps none).
    NotImplemented,
}
