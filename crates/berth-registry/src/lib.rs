//! berth's registry server: the OCI Distribution Spec v1.1 API (blobs, chunked and
//! monolithic uploads, cross-repository mount, manifests by tag and digest, tag list,
//! catalog, referrers, optional delete) over its own state root.
//!
//! ```text
//! ROOT/
//!   berth.lock, layout.json, meta.redb, content/, trash/   a berth store (shared code)
//!   registry.redb                                          repositories, links, manifests, tags
//! ```
//!
//! [`Registry`] holds the rules and is blocking; [`http::router`] is the wire.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod db;
pub mod error;
pub mod http;
pub mod names;
pub mod registry;

pub use error::{Error, Result};
pub use http::router;
pub use registry::{Registry, RegistryConfig};

/// Serves the registry on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: std::sync::Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}
