//! Engine calls that read a request body or write a response body.
//!
//! The engine is blocking, so it runs on a blocking thread: the request body reaches it
//! as a blocking `Read` (a bridge over the body stream, pulled as the engine reads), and
//! what it writes goes through a bounded channel to the response body. Neither side
//! holds more than a few chunks, so a multi-gigabyte archive never sits in memory.
//!
//! As in Docker, the status code waits for the first byte of output: a call that fails
//! before writing anything gets a proper error response (404, 400, ...). Once output has
//! begun, the status is already sent; a JSON-message stream then ends with an
//! `{"errorDetail":...,"error":...}` line, and a raw stream (a tar) is aborted, so the
//! client sees a failed download rather than a silently short archive.

use std::io::{self, Read, Write};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::EngineError;
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::ApiError;

/// Bytes gathered before a raw-stream chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the engine thread and the response body.
const CHANNEL_CHUNKS: usize = 8;

/// What the blocking side sends to the response body.
enum Msg {
    Data(Bytes),
    Done(Result<(), EngineError>),
}

/// What to do with a failure once output has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LateError {
    /// End the stream with a Docker JSON error message.
    JsonLine,
    /// Every failure is a JSON error message in a 200 response, even one before the
    /// first byte (Docker's `images/load`: clients read the error from the stream).
    AlwaysJsonLine,
    /// Abort the response body.
    Abort,
}

/// The engine's end of a response body: a buffered blocking `Write` for raw output, and
/// [`Sink::json`] for JSON messages (sent at once).
pub(crate) struct Sink {
    tx: mpsc::Sender<Msg>,
    buf: Vec<u8>,
}

impl Sink {
    fn send(&mut self, b: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Msg::Data(b))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Sends one JSON message (a line).
    pub(crate) fn json(&mut self, v: &serde_json::Value) -> io::Result<()> {
        self.flush_buf()?;
        let mut line = serde_json::to_vec(v).map_err(io::Error::other)?;
        line.push(b'\n');
        self.send(Bytes::from(line))
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.send(chunk)
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > CHUNK_BYTES {
            self.flush_buf()?;
        }
        if data.len() >= CHUNK_BYTES {
            self.send(Bytes::copy_from_slice(data))?;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

/// The request body as a blocking reader, for use on a blocking thread. Must be called
/// from within the runtime (it captures its handle).
pub(crate) fn body_reader(body: Body) -> impl Read + Send + 'static {
    let stream = body.into_data_stream().map_err(io::Error::other);
    SyncIoBridge::new(StreamReader::new(stream))
}

/// Most bytes of an upload read and discarded after the request failed.
const DRAIN_LIMIT_BYTES: u64 = 1 << 30;

/// Reads (and discards) what is left of a request body after the request failed early,
/// so a client still writing its upload receives the error response instead of a broken
/// pipe. Bounded: past [`DRAIN_LIMIT_BYTES`] the connection is closed.
pub(crate) fn drain_after_error(body: &mut impl Read) {
    let _ = io::copy(&mut body.take(DRAIN_LIMIT_BYTES), &mut io::sink());
}

/// Runs `work` on a blocking thread with a [`Sink`] for the response body, and answers
/// with `content_type`. See the module doc for what happens to failures.
pub(crate) async fn respond<F>(content_type: &'static str, late: LateError, work: F) -> Response
where
    F: FnOnce(&mut Sink) -> Result<(), EngineError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL_CHUNKS);
    let done_tx = tx.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut sink = Sink {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        };
        work(&mut sink)?;
        sink.flush_buf()
            .map_err(|e| EngineError::new(berth_types::ErrorKind::Unavailable, e.to_string()))
    });
    tokio::spawn(async move {
        let res = match task.await {
            Ok(r) => r,
            Err(e) => Err(EngineError::internal(format!("request task failed: {e}"))),
        };
        if let Err(mpsc::error::SendError(Msg::Done(Err(e)))) = done_tx.send(Msg::Done(res)).await {
            tracing::debug!(error = %e, "client went away before the response ended");
        }
    });

    let first = match rx.recv().await {
        Some(Msg::Data(b)) => b,
        Some(Msg::Done(Err(e))) if matches!(late, LateError::AlwaysJsonLine) => {
            let fail = ApiError::from(e);
            fail.log_late();
            return (
                StatusCode::OK,
                [(CONTENT_TYPE, content_type)],
                Body::from(error_line(&fail.message)),
            )
                .into_response();
        }
        Some(Msg::Done(Err(e))) => return ApiError::from(e).into_response(),
        Some(Msg::Done(Ok(()))) | None => {
            return ([(CONTENT_TYPE, content_type)], Body::empty()).into_response()
        }
    };
    struct St {
        pending: Option<Bytes>,
        rx: mpsc::Receiver<Msg>,
        ended: bool,
    }
    let st = St {
        pending: Some(first),
        rx,
        ended: false,
    };
    let body = futures::stream::unfold(st, move |mut st| async move {
        if let Some(b) = st.pending.take() {
            return Some((Ok(b), st));
        }
        if st.ended {
            return None;
        }
        let fail = match st.rx.recv().await {
            Some(Msg::Data(b)) => return Some((Ok(b), st)),
            Some(Msg::Done(Ok(()))) => return None,
            Some(Msg::Done(Err(e))) => ApiError::from(e),
            None => ApiError::internal("the response ended without a result"),
        };
        st.ended = true;
        fail.log_late();
        match late {
            LateError::JsonLine | LateError::AlwaysJsonLine => {
                Some((Ok(error_line(&fail.message)), st))
            }
            LateError::Abort => Some((Err(io::Error::other(fail.message)), st)),
        }
    });
    (
        StatusCode::OK,
        [(CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

/// A Docker JSON error message line.
pub(crate) fn error_line(message: &str) -> Bytes {
    let v = serde_json::json!({ "errorDetail": { "message": message }, "error": message });
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A progress message as `docker load` shows them.
pub(crate) fn progress_message(
    status: &str,
    id: &str,
    current: u64,
    total: u64,
) -> serde_json::Value {
    serde_json::json!({
        "status": status,
        "progressDetail": { "current": current, "total": total },
        "progress": progress_bar(current, total),
        "id": id,
    })
}

/// Docker's progress text (`JSONProgress.String` at full width):
/// `[=====>      ]  1.2MB/4MB`.
pub(crate) fn progress_bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let pct = ((current as f64 / total as f64 * 100.0) as usize / 2).min(50);
    let bar = format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct));
    if current > total {
        return format!("{bar}{:>8}", human_size(current));
    }
    format!("{bar}{:>8}/{}", human_size(current), human_size(total))
}

/// Decimal sizes with 4 significant digits, as Docker's `units.HumanSize`: `1.234MB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    let decimals = if size >= 100.0 {
        1
    } else if size >= 10.0 {
        2
    } else {
        3
    };
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_000_000), "4MB");
        assert_eq!(human_size(45_600_000_000), "45.6GB");
    }

    #[test]
    fn progress_bar_has_docker_shape() {
        let p = progress_bar(2_000_000, 4_000_000);
        assert!(p.starts_with("[=========================>"), "{p}");
        assert!(p.ends_with("     2MB/4MB"), "{p}");
        assert_eq!(p.len(), 1 + 25 + 1 + 25 + 2 + 8 + 4);
    }
}
