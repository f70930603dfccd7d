//! The Docker Engine API over the berth engine.
//!
//! This crate only translates: HTTP requests in Docker's wire format become
//! [`berth_engine::Engine`] calls, and their results become Docker's JSON. It holds no
//! business logic. The engine is blocking, so every call runs on a blocking thread;
//! request and response bodies stream through bounded channels (an archive is never
//! held in memory whole).
//!
//! Layout: [`router`] lists every route; `middleware.rs` checks and strips the
//! `/v1.xx` prefix before routing, adds Docker's common headers and logs each request;
//! `system.rs` and `images.rs` hold the handlers; `stream.rs` runs engine calls that
//! read or write bodies; `params.rs` parses query strings; `body.rs` checks JSON
//! bodies' Content-Type and `decode.rs` decodes them as Docker's Go decoder does (null
//! is absence, keys match case-insensitively, unknown keys are ignored); `swarm.rs`
//! answers swarm endpoints as a node outside a swarm; `error.rs` maps engine errors to
//! status codes; `version.rs` is the [`ApiVersion`] type.

#![recursion_limit = "256"] // the `/info` document is one large `json!`

use std::future::Future;

use axum::routing::{delete, get, post};
use axum::Router;
use berth_engine::Engine;

mod archive;
mod attach;
mod body;
mod build;
mod cgroups;
mod commit;
mod container_net;
mod containers;
mod decode;
mod distribution;
mod error;
mod events;
mod exec;
mod hijack;
mod images;
mod middleware;
mod mounts;
mod networks;
mod params;
mod secrets;
mod services;
mod services_logs;
mod services_spec;
mod stream;
mod swarm;
mod system;
mod version;
mod volumes;

pub use error::ApiError;
pub use version::ApiVersion;

/// The Docker API version berth speaks (the maximum it accepts).
pub const API_VERSION: &str = "1.47";
/// The oldest Docker API version berth accepts.
pub const MIN_API_VERSION: &str = "1.24";

/// The value of the `Server` header of every response.
pub const SERVER_HEADER: &str = concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)");

/// The whole Docker API as an axum router. Requests may carry a `/v{major}.{minor}`
/// prefix; it is checked and stripped before routing.
pub fn router(engine: Engine) -> Router {
    // The services' reconcile loop decodes task templates as this API does.
    engine.start_services(services::task_factory());
    let api = Router::new()
        .route("/_ping", get(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(system::disk_usage))
        .route("/auth", post(distribution::auth))
        .route("/images/json", get(images::list))
        .route("/images/outdated", get(build::outdated))
        .route("/images/outdated/rebuild", post(build::rebuild_outdated))
        .route("/images/load", post(images::load))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/images/get", get(images::save_many))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*name}",
            get(images::get_by_name)
                .post(images::post_by_name)
                .delete(images::remove),
        )
        .route("/events", get(events::events))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}", delete(containers::remove))
        // A link's path (`/PARENT/ALIAS`) as a container name: any other method on
        // such a path is an unknown route (Docker's 404), not a known one (405).
        .route(
            "/containers/{parent}/{alias}",
            delete(containers::remove_link_path).fallback(error::not_found),
        )
        .route(
            "/containers/{parent}/{alias}/json",
            get(containers::inspect_link_path).fallback(error::not_found),
        )
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/changes", get(containers::changes))
        .route("/commit", post(commit::commit))
        .route("/containers/{id}/attach", post(attach::attach))
        .route("/containers/{id}/resize", post(attach::resize))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::head).put(archive::put),
        )
        .route("/containers/{id}/stats", get(cgroups::stats))
        .route("/containers/{id}/top", get(cgroups::top))
        .route("/containers/{id}/update", post(cgroups::update))
        .route("/containers/{id}/pause", post(cgroups::pause))
        .route("/containers/{id}/unpause", post(cgroups::unpause))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/swarm/unlock", post(swarm::unlock))
        .route("/nodes", get(swarm::nodes))
        .route("/nodes/{id}", get(swarm::node).delete(swarm::node_remove))
        .route("/nodes/{id}/update", post(swarm::node_update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(services_logs::service_logs))
        .route("/tasks", get(services::tasks))
        .route("/tasks/{id}", get(services::task))
        .route("/tasks/{id}/logs", get(services_logs::task_logs))
        .route("/secrets", get(secrets::secret_list))
        .route("/secrets/create", post(secrets::secret_create))
        .route(
            "/secrets/{id}",
            get(secrets::secret_inspect).delete(secrets::secret_remove),
        )
        .route("/secrets/{id}/update", post(secrets::secret_update))
        .route("/configs", get(secrets::config_list))
        .route("/configs/create", post(secrets::config_create))
        .route(
            "/configs/{id}",
            get(secrets::config_inspect).delete(secrets::config_remove),
        )
        .route("/configs/{id}/update", post(secrets::config_update))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(engine);
    middleware::wrap(api)
}

/// How long requests in flight may take to finish once the daemon is asked to stop.
/// Some never end by themselves: a `wait` for a container that runs on, an attach, an
/// event stream, `logs -f`. Docker cuts everything at once; berth lets the short ones
/// finish and cuts the rest after this.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on a unix listener until `shutdown` resolves; requests in flight then
/// have [`SHUTDOWN_GRACE`] to finish before this returns (the ones left are cut when the
/// process exits).
pub async fn serve(
    engine: Engine,
    listener: tokio::net::UnixListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let server = std::future::IntoFuture::into_future(
        axum::serve(listener, router(engine)).with_graceful_shutdown(signal),
    );
    tokio::pin!(server);
    let grace_over = async move {
        if stopping_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = &mut server => served,
        () = grace_over => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "requests still in flight after the grace period (a wait for a running container, an attach, an event stream): cut"
            );
            Ok(())
        }
    }
}
