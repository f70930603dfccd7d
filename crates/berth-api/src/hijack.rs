//! Hijacked connections: `attach` and `exec start` turn the HTTP connection into a raw
//! bidirectional stream, as Docker does.
//!
//! The docker CLI and the SDKs send `Connection: Upgrade` and `Upgrade: tcp`; berth then
//! answers `101 UPGRADED` and, once hyper hands the connection over, gives the handler
//! the raw stream: the client's stdin is what it reads, the container's output is what it
//! writes. A client that does not ask for an upgrade gets `200 OK` with the output as the
//! response body, and its stdin reads as empty (HTTP/1.1 cannot carry both directions
//! without the upgrade).
//!
//! Output framing (Docker's `stdcopy`): without a TTY the stream is
//! `application/vnd.docker.multiplexed-stream`, each chunk framed by [`frame`]; with a TTY
//! it is `application/vnd.docker.raw-stream`, the bytes as the terminal wrote them.

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// `application/vnd.docker.multiplexed-stream`: output framed per stream.
pub(crate) const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
/// `application/vnd.docker.raw-stream`: TTY output, unframed.
pub(crate) const RAW: &str = "application/vnd.docker.raw-stream";

/// Stream numbers of [`frame`].
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;

/// One frame of Docker's multiplexed stream: stream type (0 stdin, 1 stdout, 2 stderr,
/// 3 systemerr), three zero bytes, the payload length as a big-endian u32, the payload.
pub(crate) fn frame(stream: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A hijacked connection: read the client's input, write the output.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The connection a hijack handler gets.
pub(crate) type Conn = Pin<Box<dyn Io>>;

/// Whether the request asks to upgrade the connection (`Connection: Upgrade`).
fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Answers `req` by hijacking its connection: returns the response to send now (`101`
/// or `200`), and runs `run` on the connection once it is ours. `content_type` is
/// [`MULTIPLEXED`] or [`RAW`]. Errors found before this call must be answered with a
/// normal error response instead (the status line is this function's).
pub(crate) fn hijack<F, Fut>(mut req: Request, content_type: &'static str, run: F) -> Response
where
    F: FnOnce(Conn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if wants_upgrade(&req) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => run(Box::pin(TokioIo::new(upgraded))).await,
                Err(e) => tracing::debug!(error = %e, "connection upgrade failed"),
            }
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("tcp"));
        return resp;
    }
    // No upgrade: the output becomes the response body; input is empty.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (body_side, input_side) = tokio::io::split(theirs);
    drop(input_side); // our reads see EOF at once
    tokio::spawn(run(Box::pin(ours)));
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(body_side));
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_docker_header() {
        let mut out = Vec::new();
        frame(STDERR, b"hi\n", &mut out);
        assert_eq!(out, [2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }
}
