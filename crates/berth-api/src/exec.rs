//! `docker exec`: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (hijacked),
//! `POST /exec/{id}/resize`, `GET /exec/{id}/json`.
//!
//! Start copies the process's streams over the hijacked connection: without a TTY the
//! output is Docker's multiplexed stream (stdout and stderr framed), with one raw; the
//! client's input goes to the process's stdin, and when the client closes its input
//! (half-close), the process's stdin is closed. The engine's files are blocking, so each
//! is read or written on a blocking thread and bridged with channels. A process that
//! cannot be started gets Docker's treatment: its error message on the output stream,
//! the exit code (126, as Docker's daemon records for any cause) in `GET /exec/{id}/json`. With a TTY and stdin, the detach
//! keys (default ctrl-p ctrl-q) in the input close the client's session and leave the
//! process running, as in Docker.

use std::io::{Read, Write};

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::{Engine, ExecConfig, ExecInfo, ExecStreams};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::hijack::{frame, hijack, Conn, MULTIPLEXED, RAW, STDERR, STDOUT};
use crate::images::blocking;
use crate::params::Params;

/// The exec create body (Docker's `ExecOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    detach_keys: String,
    tty: bool,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    privileged: bool,
    user: String,
    working_dir: String,
}

/// The exec start body (Docker's `ExecStartOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    tty: bool,
    /// `[height, width]`.
    console_size: Option<Vec<u16>>,
}

/// `POST /containers/{id}/exec`.
pub(crate) async fn create(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    let body: CreateBody = match crate::decode::body(&body, "exec create body") {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let config = ExecConfig {
        cmd: body.cmd.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
        working_dir: Some(body.working_dir).filter(|w| !w.is_empty()),
        user: Some(body.user).filter(|u| !u.is_empty()),
        privileged: body.privileged,
        tty: body.tty,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        detach_keys: body.detach_keys,
    };
    match blocking(move || engine.exec_create(&id, config)).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "Id": id }))).into_response(),
        Err(e) => e.into_response(),
    }
}

fn inspect_json(info: &ExecInfo) -> Value {
    let (entrypoint, arguments) = match info.config.cmd.split_first() {
        Some((e, a)) => (e.clone(), a.to_vec()),
        None => (String::new(), Vec::new()),
    };
    json!({
        "ID": info.id,
        "Running": info.running,
        "ExitCode": info.exit_code,
        "ProcessConfig": {
            "tty": info.config.tty,
            "entrypoint": entrypoint,
            "arguments": arguments,
            "privileged": info.config.privileged,
            "user": info.config.user.clone().unwrap_or_default(),
        },
        "OpenStdin": info.config.attach_stdin,
        "OpenStderr": info.config.attach_stderr,
        "OpenStdout": info.config.attach_stdout,
        "CanRemove": info.can_remove,
        "ContainerID": info.container_id,
        "DetachKeys": info.config.detach_keys,
        "Pid": info.pid,
    })
}

/// `GET /exec/{id}/json`.
pub(crate) async fn inspect(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match blocking(move || engine.exec_inspect(&id)).await {
        Ok(info) => Json(inspect_json(&info)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /exec/{id}/resize?h=&w=`.
pub(crate) async fn resize(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let dim = |name: &str| -> Result<u16, ApiError> {
        let v = params.non_empty(name).ok_or_else(|| {
            ApiError::bad_request(format!("resize: query parameter '{name}' is required"))
        })?;
        v.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!(
                "resize: '{name}' must be a number from 0 to 65535, not {v:?}"
            ))
        })
    };
    let (h, w) = match (dim("h"), dim("w")) {
        (Ok(h), Ok(w)) => (h, w),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    match blocking(move || engine.exec_resize(&id, h, w)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /exec/{id}/start`: detached, answers once the process runs; else hijacks the
/// connection and streams until the process ended and its output is drained.
pub(crate) async fn start(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("exec start body: {e}")).into_response(),
    };
    if let Err(e) = crate::body::check_json(&parts.headers, body.len()) {
        return e.into_response();
    }
    let body: StartBody = match crate::decode::body(&body, "exec start body") {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let size = match body.console_size.as_deref() {
        None | Some([]) | Some([0, 0]) => None,
        Some([h, w]) => Some((*h, *w)),
        Some(other) => {
            return ApiError::bad_request(format!(
                "ConsoleSize must be [height, width], not {other:?}"
            ))
            .into_response()
        }
    };
    // Errors known before the hijack are answered as such (unknown exec, already started).
    let info = {
        let (engine, id) = (engine.clone(), id.clone());
        match blocking(move || engine.exec_inspect(&id)).await {
            Ok(i) => i,
            Err(e) => return e.into_response(),
        }
    };
    if info.running {
        return ApiError::new(
            StatusCode::CONFLICT,
            format!("Error: Exec command {id} is already running"),
        )
        .into_response();
    }
    if info.exit_code.is_some() {
        return ApiError::new(
            StatusCode::CONFLICT,
            format!("Error: Exec command {id} has already run"),
        )
        .into_response();
    }
    if body.detach {
        return match blocking(move || engine.exec_start(&id, true, size)).await {
            Ok(_) => StatusCode::OK.into_response(),
            Err(e) => e.into_response(),
        };
    }
    let multiplexed = !body.tty;
    let req = Request::from_parts(parts, Body::empty());
    hijack(
        req,
        if multiplexed { MULTIPLEXED } else { RAW },
        move |conn| async move {
            let started = {
                let (engine, id) = (engine.clone(), id.clone());
                blocking(move || engine.exec_start(&id, false, size)).await
            };
            match started {
                Ok(Some(streams)) => pump(conn, engine, id, streams, multiplexed).await,
                Ok(None) => {}
                Err(e) => {
                    // Docker writes the start error on the output stream.
                    let mut conn = conn;
                    let msg = format!("{}\r\n", e.message);
                    let mut out = Vec::new();
                    if multiplexed {
                        frame(STDOUT, msg.as_bytes(), &mut out);
                    } else {
                        out.extend_from_slice(msg.as_bytes());
                    }
                    let _ = conn.write_all(&out).await;
                    let _ = conn.shutdown().await;
                    // Read what the client still sends until it closes: closing with
                    // unread input would reset the connection before it read the error.
                    let (mut rd, _wr) = tokio::io::split(conn);
                    let _ = tokio::time::timeout(LINGER, drain(&mut rd)).await;
                }
            }
        },
    )
}

/// Copies the client's input to the process and the process's output to the client;
/// returns once the output ended and the exit is recorded (so that the client's
/// following `GET /exec/{id}/json` sees the exit code).
async fn pump(conn: Conn, engine: Engine, id: String, streams: ExecStreams, multiplexed: bool) {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    for (kind, file) in [(STDOUT, streams.stdout), (STDERR, streams.stderr)] {
        let Some(mut file) = file else { continue };
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send((kind, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // A pty master reads EIO once the terminal's last user closed it.
                    Err(_) => break,
                }
            }
        });
    }
    drop(tx);
    // With a TTY, the detach keys in the input end the client's session; the process
    // keeps running (Docker's copyEscapable).
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let mut escape = (streams.tty && !streams.detach_keys.is_empty())
        .then(|| Escape::new(streams.detach_keys.clone()));
    let mut can_detach = escape.is_some() && streams.stdin.is_some();
    let input = streams.stdin.map(|mut stdin| {
        // Bounded: a client that sends faster than the process reads waits.
        let (itx, mut irx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        tokio::task::spawn_blocking(move || {
            while let Some(chunk) = irx.blocking_recv() {
                if stdin.write_all(&chunk).is_err() {
                    break;
                }
            }
            // Dropping `stdin` closes the process's stdin (EOF for it).
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (data, detached) = match escape.as_mut() {
                    Some(e) => e.feed(&buf[..n]),
                    None => (buf[..n].to_vec(), false),
                };
                if !data.is_empty() && itx.send(data).await.is_err() {
                    // The process's stdin is closed: read on until the client
                    // closes (see `LINGER`).
                    drain(&mut rd).await;
                    break;
                }
                if detached {
                    let _ = detach_tx.send(());
                    return;
                }
            }
        })
    });
    let mut client_gone = false;
    let mut out = Vec::new();
    loop {
        let (kind, data) = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => m,
                None => break,
            },
            r = &mut detach_rx, if can_detach => {
                can_detach = false;
                if r.is_ok() {
                    // Detached: close the connection, keep the terminal drained so the
                    // process never blocks on it.
                    let _ = wr.shutdown().await;
                    drop(wr);
                    tokio::spawn(async move { while rx.recv().await.is_some() {} });
                    return;
                }
                continue;
            }
        };
        if client_gone {
            continue; // keep draining so the process never blocks on a full pipe
        }
        out.clear();
        if multiplexed {
            frame(kind, &data, &mut out);
        } else {
            out.extend_from_slice(&data);
        }
        if wr.write_all(&out).await.is_err() {
            client_gone = true;
        }
    }
    let _ = blocking(move || engine.exec_wait(&id)).await;
    let _ = wr.shutdown().await;
    if let Some(mut task) = input {
        if tokio::time::timeout(LINGER, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// How long the connection stays open after the output ended, for the client to close
/// it: closing first with unread input would reset the connection (ECONNRESET) before
/// the client read the end of the output.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Finds the detach sequence in the input across reads, as Docker's `copyEscapable`: bytes
/// that may start the sequence are held back until it is complete (detach) or broken
/// (they are forwarded).
struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    fn new(keys: Vec<u8>) -> Escape {
        Escape { keys, matched: 0 }
    }

    /// The bytes to forward, and whether the sequence completed (the rest is dropped).
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b != self.keys[self.matched] {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b != self.keys[0] {
                    out.push(b);
                    continue;
                }
            }
            self.matched += 1;
            if self.matched == self.keys.len() {
                return (out, true);
            }
        }
        (out, false)
    }
}

/// Reads and discards until EOF or an error.
async fn drain(rd: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_finds_the_detach_sequence_across_reads() {
        let mut e = Escape::new(vec![0x10, 0x11]);
        assert_eq!(e.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(e.feed(b"\x11rest"), (Vec::new(), true));
        let mut e = Escape::new(vec![0x10, 0x11]);
        // A broken sequence is forwarded whole.
        assert_eq!(e.feed(b"\x10x\x10\x10"), (b"\x10x\x10".to_vec(), false));
        assert_eq!(e.feed(b"y"), (b"\x10y".to_vec(), false));
        let mut e = Escape::new(vec![b'q']);
        assert_eq!(e.feed(b"abq"), (b"ab".to_vec(), true));
    }
}
