//! Identifiers, digests, image references, media types and error kinds shared by every
//! berth crate. Nothing here does I/O.

pub mod digest;
pub mod error;
pub mod media;
pub mod reference;

pub use digest::{Digest, DigestError, Sha256Writer};
pub use error::ErrorKind;
pub use reference::{Reference, ReferenceError};
