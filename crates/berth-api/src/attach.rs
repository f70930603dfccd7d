//! `POST /containers/{id}/attach` (hijacked) and `POST /containers/{id}/resize`.
//!
//! The engine connects the attach to the container's shim (at once, or when the
//! container starts: the docker CLI attaches before it starts); this module copies the
//! shim's stream to the client — already in Docker's multiplexed framing, or raw with a
//! TTY — and the client's input to the shim. With a TTY the detach keys (`detachKeys=`,
//! default ctrl-p,ctrl-q) end the attach and leave the container running, as Docker
//! does (Docker scans for them only with a TTY; without one the bytes are stdin).

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::{
    parse_detach_keys, Attach, AttachOptions, ContainerRecord, DetachScanner, Engine, LogQuery,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::containers::LogFrames;
use crate::error::ApiError;
use crate::hijack::{hijack, Conn, MULTIPLEXED, RAW};
use crate::images::blocking;
use crate::params::Params;

/// Docker's default detach keys: ctrl-p, ctrl-q.
const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=&detachKeys=`.
pub(crate) async fn attach(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
    req: Request,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let opts = AttachOptions {
            stdin: params.bool("stdin")?,
            stdout: params.bool("stdout")?,
            stderr: params.bool("stderr")?,
        };
        let keys = parse_detach_keys(
            params
                .non_empty("detachKeys")
                .unwrap_or(DEFAULT_DETACH_KEYS),
        )
        .map_err(ApiError::from)?;
        Ok((opts, params.bool("stream")?, params.bool("logs")?, keys))
    })();
    let (opts, stream, logs, keys) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Errors (no such container) are answered before the connection is hijacked; a
    // pending attach is registered now, before the client goes on to start.
    let result = blocking(move || {
        if stream {
            let (rec, att) = engine.attach_container(&id, opts)?;
            Ok((engine, rec, Some(att)))
        } else {
            let rec = engine.container(&id)?;
            Ok((engine, rec, None))
        }
    })
    .await;
    let (engine, rec, att) = match result {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let content_type = if rec.tty { RAW } else { MULTIPLEXED };
    hijack(req, content_type, move |conn| async move {
        serve(engine, rec, att, conn, opts, logs, keys).await;
    })
}

/// Sends the container's log (`logs=1`) as it is read, in chunks; false if the client
/// went away.
async fn send_logs(
    engine: &Engine,
    rec: &ContainerRecord,
    opts: &AttachOptions,
    conn: &mut Conn,
) -> bool {
    let q = LogQuery {
        stdout: opts.stdout,
        stderr: opts.stderr,
        ..LogQuery::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let (engine, id, tty) = (engine.clone(), rec.id.clone(), rec.tty);
    let reader = tokio::task::spawn_blocking(move || {
        engine.read_logs(&id, &q, &mut LogFrames::new(tx, tty, false))
    });
    while let Some(chunk) = rx.recv().await {
        if conn.write_all(&chunk).await.is_err() {
            // Dropping the receiver ends the reader.
            return false;
        }
    }
    if let Ok(Err(e)) = reader.await {
        tracing::debug!(container.id = %rec.id, error = %e, "attach's logs ended early");
    }
    true
}

async fn serve(
    engine: Engine,
    rec: ContainerRecord,
    att: Option<Attach>,
    mut conn: Conn,
    opts: AttachOptions,
    logs: bool,
    keys: Vec<u8>,
) {
    if logs && (opts.stdout || opts.stderr) && !send_logs(&engine, &rec, &opts, &mut conn).await {
        return;
    }
    let Some(att) = att else {
        let _ = conn.shutdown().await;
        return;
    };
    let stdin = att.options().stdin;
    let shim = match blocking(move || att.wait()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(container.id = %rec.id, error = %e.message, "attach ended before the container started");
            let _ = conn.shutdown().await;
            return;
        }
    };
    let shim = match shim
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(shim))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(container.id = %rec.id, error = %e, "attach: shim stream");
            return;
        }
    };
    let scanner = rec.tty.then(|| DetachScanner::new(keys));
    pump(conn, shim, stdin, scanner).await;
}

/// Copies shim → client until the shim ends the stream, and client → shim (stdin).
/// The client closing its input half-closes the shim side (the shim then closes the
/// container's stdin, or ends the attach); the detach keys end everything at once.
async fn pump(
    conn: Conn,
    shim: tokio::net::UnixStream,
    stdin: bool,
    mut scanner: Option<DetachScanner>,
) {
    let (mut cr, mut cw) = tokio::io::split(conn);
    let (mut sr, mut sw) = shim.into_split();
    let out = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    let input = async move {
        if !stdin {
            // The client's input is not read (it cannot reach the container).
            return std::future::pending::<bool>().await;
        }
        let mut buf = vec![0u8; 32 * 1024];
        let mut pass = Vec::with_capacity(buf.len());
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sw.shutdown().await;
                    return false;
                }
                Ok(n) => n,
            };
            pass.clear();
            let detached = match scanner.as_mut() {
                Some(s) => s.feed(&buf[..n], &mut pass),
                None => {
                    pass.extend_from_slice(&buf[..n]);
                    false
                }
            };
            if !pass.is_empty() && sw.write_all(&pass).await.is_err() {
                return false;
            }
            if detached {
                return true;
            }
        }
    };
    tokio::pin!(out);
    tokio::pin!(input);
    tokio::select! {
        () = &mut out => {}
        detached = &mut input => {
            if !detached {
                out.await;
            }
            // Detached: dropping both streams ends the attach; the container runs on.
        }
    }
}

/// `POST /containers/{id}/resize?h=&w=`.
pub(crate) async fn resize(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let dim = |name: &str| -> Result<u16, ApiError> {
        let v = params.non_empty(name).unwrap_or("0");
        v.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value for query parameter '{name}': {v:?} is not a number from 0 to 65535"
            ))
        })
    };
    let (h, w) = match (dim("h"), dim("w")) {
        (Ok(h), Ok(w)) => (h, w),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    match blocking(move || engine.resize_container(&id, h, w)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}
