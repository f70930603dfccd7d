//! Swarm-mode endpoints on a node that is not part of a swarm: Docker's 503 answers,
//! which clients expect (the Docker SDK calls `swarm/leave` in its cleanup and reads the
//! message). Services on one host are issue 15's work; until then these say what Docker
//! says on a daemon that never ran `swarm init`.

use axum::http::StatusCode;

use crate::error::ApiError;

const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// `GET /swarm`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs` (any method).
pub(crate) async fn not_a_manager() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_A_MANAGER)
}

/// `POST /swarm/leave`.
pub(crate) async fn leave() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not part of a swarm",
    )
}
