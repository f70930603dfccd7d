//! berth's registry server: the OCI Distribution Spec v1.1 API (blobs, chunked and
//! monolithic uploads, cross-repository mount, manifests by tag and digest, tag list,
//! catalog, referrers, optional delete) over its own state root, with users, per-repository
//! permissions, bearer tokens, immutable tags, an audit log and TLS.
//!
//! ```text
//! ROOT/
//!   berth.lock, layout.json, meta.redb, content/, trash/   a berth store (shared code)
//!   registry.redb                                          repositories, links, manifests, tags
//!   users.toml, users.lock                                 users and permissions (auth)
//!   token.key                                              token signing key, 0600 (auth)
//!   audit.log                                              pushes, tag changes, deletes (audit)
//! ```
//!
//! [`Registry`] holds the rules and is blocking; [`http::router`] is the wire;
//! [`auth::AccessControl`] says who may do what.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod audit;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod names;
pub mod registry;
pub mod tls;

pub use error::{Error, Result};
pub use http::{router, App};
pub use registry::{Registry, RegistryConfig};

/// Serves the registry over plain HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: std::sync::Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
