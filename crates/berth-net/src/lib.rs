//! Container networking for berth, through the kernel's own interfaces:
//!
//! - [`netns`]: network namespaces kept alive by a bind mount (one per container), and
//!   running code inside one;
//! - [`link`]: bridges, veth pairs, addresses and routes over netlink;
//! - [`ipam`]: address pools, subnet choice and address allocation;
//! - [`nft`]: address translation (published ports, masquerade) and filtering
//!   (isolation between networks) in berth's own nftables table, never touching rules
//!   berth did not create;
//! - [`dns`]: the embedded DNS server each network's containers query;
//! - [`conntrack`]: deleting a removed container's connection tracking entries.
//!
//! This crate knows nothing of containers or of the engine's records: the engine tells
//! it what to build; everything here is blocking (no async runtime).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod conntrack;
pub mod dns;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;

use berth_types::ErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A networking error: the object it concerns (a bridge, a namespace, a subnet...) and
/// what went wrong or which rule was broken.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub object: String,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, object: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            kind,
            object: object.into(),
            message: message.into(),
        }
    }
    pub fn invalid(object: impl Into<String>, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, object, message)
    }
    pub fn conflict(object: impl Into<String>, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, object, message)
    }
    pub fn unavailable(object: impl Into<String>, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, object, message)
    }
    pub fn internal(object: impl Into<String>, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, object, message)
    }
    /// An I/O error of `op` on `object`.
    pub fn io(object: impl Into<String>, op: &str, e: std::io::Error) -> Error {
        Error::internal(object, format!("{op}: {e}"))
    }
}

/// Calls `f` again while it fails with EINTR (a signal during a blocking socket call).
pub(crate) fn retry_eintr<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
