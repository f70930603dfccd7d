//! The terminal side of `run`, `start -a`, `attach`, `exec` and `logs`: Docker's
//! multiplexed output split back into stdout and stderr, stdin copied to a hijacked
//! connection, the local terminal in raw mode with its size sent to the daemon, and
//! signals forwarded to the container.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::client::{empty, Client, Hijacked, Query};

/// Docker's stream numbers in the 8-byte frame header.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const SYSTEMERR: u8 = 3;

/// Copies the container's output to our stdout and stderr: raw with a TTY, else
/// demultiplexed from Docker's frames (stream byte, three zero bytes, big-endian
/// length, payload). Ends at the end of the stream.
pub async fn copy_output<R: AsyncRead + Unpin>(mut r: R, tty: bool) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    if tty {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = r
                .read(&mut buf)
                .await
                .context("reading the container's output")?;
            if n == 0 {
                return Ok(());
            }
            stdout
                .write_all(&buf[..n])
                .await
                .map_err(super::stdout_error)?;
            stdout.flush().await.map_err(super::stdout_error)?;
        }
    }
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    loop {
        match r.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e).context("reading the container's output"),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        payload.resize(len, 0);
        r.read_exact(&mut payload)
            .await
            .context("reading the container's output")?;
        match header[0] {
            STDIN | STDOUT => {
                stdout
                    .write_all(&payload)
                    .await
                    .map_err(super::stdout_error)?;
                stdout.flush().await.map_err(super::stdout_error)?;
            }
            STDERR => {
                stderr.write_all(&payload).await?;
                stderr.flush().await?;
            }
            SYSTEMERR => anyhow::bail!("{}", String::from_utf8_lossy(&payload)),
            other => anyhow::bail!(
                "the daemon's output stream has a frame of unknown stream type {other}"
            ),
        }
    }
}

/// A response body as a byte reader.
pub fn body_reader(body: Incoming) -> impl AsyncRead + Unpin {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    tokio_util::io::StreamReader::new(stream)
}

/// The default detach sequence, ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// docker's `--detach-keys` (`ctrl-p,ctrl-q`, `ctrl-a,x`): the bytes of the sequence.
pub fn parse_detach_keys(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let k = key.trim();
        let b = match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                x @ b'a'..=b'z' => x - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => anyhow::bail!("Unknown character: '{k}'"),
            },
            Some(_) => anyhow::bail!("Unknown character: '{k}'"),
            None if k.len() == 1 => k.as_bytes()[0],
            None => anyhow::bail!("Unknown character: '{k}'"),
        };
        out.push(b);
    }
    Ok(out)
}

/// How a hijacked session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The container's output ended (it exited, or closed its streams).
    Output,
    /// We typed the detach sequence: the daemon let go, the container still runs.
    Detached,
}

/// Runs a hijacked session until the container's output ends: the output goes to our
/// stdout/stderr; with `stdin`, our stdin goes to the container and its end closes our
/// side of the connection (the container then sees EOF), as the docker CLI does. The
/// daemon acts on the detach sequence; we watch for it too, to know we detached.
pub async fn session(
    h: Hijacked,
    tty: bool,
    stdin: bool,
    detach_keys: Vec<u8>,
) -> anyhow::Result<Ended> {
    match h {
        Hijacked::Body(body) => copy_output(body_reader(body), tty)
            .await
            .map(|()| Ended::Output),
        Hijacked::Upgraded(io) => {
            let (rd, wr) = tokio::io::split(io);
            let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let input = stdin.then(|| tokio::spawn(copy_stdin(wr, detach_keys, detached.clone())));
            let result = copy_output(rd, tty).await;
            if let Some(t) = input {
                t.abort();
            }
            result?;
            Ok(if detached.load(std::sync::atomic::Ordering::SeqCst) {
                Ended::Detached
            } else {
                Ended::Output
            })
        }
    }
}

async fn copy_stdin<W: AsyncWrite + Unpin>(
    mut wr: W,
    keys: Vec<u8>,
    detached: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut input = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    let mut matched = 0usize;
    loop {
        match input.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut seen = false;
                for b in &buf[..n] {
                    if !keys.is_empty() && *b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            seen = true;
                            break;
                        }
                    } else {
                        matched = usize::from(!keys.is_empty() && *b == keys[0]);
                    }
                }
                if seen {
                    detached.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if wr.write_all(&buf[..n]).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                if seen {
                    // The daemon detaches us; stop reading the terminal.
                    return;
                }
            }
        }
    }
    // End of our stdin: half-close, so the container's stdin ends too.
    let _ = wr.shutdown().await;
}

/// The local terminal in raw mode for the life of the value (for `-it`): keys go to the
/// container as typed, its terminal echoes them. Restored on drop.
pub struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    /// Raw mode when stdin is a terminal; `None` otherwise.
    pub fn enable() -> anyhow::Result<Option<RawTerminal>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(Some(RawTerminal { saved }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// The size of our terminal (rows, columns), when stdout is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    let ws = rustix::termios::tcgetwinsize(&out).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sends our terminal's size: `POST {prefix}/resize?h=&w=` (prefix
/// `/containers/ID` or `/exec/ID`).
pub async fn resize(client: &Client, prefix: &str) -> anyhow::Result<()> {
    let Some((h, w)) = terminal_size() else {
        return Ok(());
    };
    let q = Query::new(format!("{prefix}/resize"))
        .arg("h", h.to_string())
        .arg("w", w.to_string());
    client.post(&q.build(), empty(), None).await?;
    Ok(())
}

/// Sends the size now and again on every SIGWINCH, until the returned task is aborted.
pub fn monitor_size(client: &Client, prefix: String) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = resize(&client, &prefix).await {
            tracing::debug!(error = %e, "resize failed");
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Err(e) = resize(&client, &prefix).await {
                tracing::debug!(error = %e, "resize failed");
            }
        }
    })
}

/// Forwards the signals we receive (INT, TERM, HUP, QUIT, USR1, USR2) to the container,
/// as the docker CLI's `--sig-proxy` does, until the returned task is aborted.
pub fn proxy_signals(client: &Client, id: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let client = client.clone();
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "INT"),
            (SignalKind::terminate(), "TERM"),
            (SignalKind::hangup(), "HUP"),
            (SignalKind::quit(), "QUIT"),
            (SignalKind::user_defined1(), "USR1"),
            (SignalKind::user_defined2(), "USR2"),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(8);
        for (kind, name) in kinds {
            let Ok(mut s) = signal(kind) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        while let Some(name) = rx.recv().await {
            let q = Query::new(format!("/containers/{id}/kill")).arg("signal", name);
            if let Err(e) = client.post(&q.build(), empty(), None).await {
                eprintln!("error forwarding signal {name} to {id}: {e}");
            }
        }
    })
}

/// Whether stdin is a terminal (for `-t` with `-i`).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[tokio::test]
    async fn system_error_frames_become_errors() {
        let mut data = frame(STDOUT, b"");
        data.extend(frame(SYSTEMERR, b"the container is gone"));
        let e = copy_output(&data[..], false).await.unwrap_err();
        assert_eq!(e.to_string(), "the container is gone");
    }

    #[test]
    fn detach_keys() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            DEFAULT_DETACH_KEYS
        );
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), [1, b'x']);
        assert!(parse_detach_keys("ctrl-ab").is_err());
        assert!(parse_detach_keys("esc").is_err());
    }

    #[tokio::test]
    async fn a_cut_frame_is_an_error() {
        let mut data = frame(STDOUT, b"hello");
        data.truncate(10);
        assert!(copy_output(&data[..], false).await.is_err());
        assert!(copy_output(&b""[..], false).await.is_ok());
    }
}
