//! Attaching to a container's stdio, and the start handshake that loses no output.
//!
//! A client attaches through the container's shim (`attach` on `shim.sock`, format in
//! `berth_runtime::shim_protocol`): the engine hands the front end the connected stream;
//! the front end copies it to and from its client.
//!
//! The docker CLI attaches *before* it starts a container (`docker run`, `start -a`), so
//! an attach to a container that does not run yet is kept pending in the engine. The
//! start hands every pending attacher to the shim it spawns: one end of a unix socket
//! pair each, on the shim's stdin with the userland proxy's sockets
//! (`ShimConfig::attach`); the shim serves them as attached clients before it reads any
//! of the container's output, so nothing the process writes can precede them, and the
//! container starts at once. The attachers' clients get the other ends once the shim
//! reports the container running. (Before, the shim created the container and waited
//! for the engine to connect the attachers and send `start`: four more trips between
//! engine and shim, about 1.4 ms, on every `docker run` in the foreground.)
//!
//! While a start is in progress, new attach requests for that container wait for it to
//! finish (then attach to the running shim), so none falls between the two paths.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use berth_runtime::shim_protocol::SHIM_SOCKET;
use tracing::{instrument, warn};

use crate::containers::{connect_shim, shim_request, ContainerRecord, ContainerState};
use crate::error::{EngineError, Result};
use crate::Engine;

/// Which of the container's streams an attach wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl AttachOptions {
    /// The streams as the shim names them (`stdin=0|1 stdout=0|1 stderr=0|1`).
    pub(crate) fn streams(&self) -> String {
        format!(
            "stdin={} stdout={} stderr={}",
            u8::from(self.stdin),
            u8::from(self.stdout),
            u8::from(self.stderr)
        )
    }

    fn request(&self) -> String {
        format!("attach {}\n", self.streams())
    }
}

/// An attach: connected to the running container, or pending until it starts.
pub struct Attach {
    id: String,
    opts: AttachOptions,
    inner: AttachInner,
}

enum AttachInner {
    Ready(UnixStream),
    Pending(Receiver<UnixStream>),
}

impl Attach {
    /// The streams attached (stdin only if the container has one).
    pub fn options(&self) -> AttachOptions {
        self.opts
    }

    /// The stream to the shim, once the container runs (blocks until then). Output
    /// arrives on it (framed unless the container has a TTY) until the container exits;
    /// what is written to it goes to the container's stdin (with `stdin`).
    pub fn wait(self) -> Result<UnixStream> {
        match self.inner {
            AttachInner::Ready(s) => Ok(s),
            AttachInner::Pending(rx) => rx.recv().map_err(|_| {
                EngineError::conflict(format!(
                    "container {}: attach ended: the container was removed or its start failed",
                    self.id
                ))
            }),
        }
    }
}

#[derive(Default)]
struct Slot {
    /// A start of this container is in progress.
    starting: bool,
    pending: Vec<(AttachOptions, SyncSender<UnixStream>)>,
}

/// Pending attaches and starts in progress, per container ID.
#[derive(Default)]
pub(crate) struct Attachments {
    slots: Mutex<HashMap<String, Slot>>,
    changed: Condvar,
}

/// Ends a start on drop: waiting attachers go on.
pub(crate) struct StartGuard<'a> {
    attachments: &'a Attachments,
    id: String,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        let mut slots = self.attachments.lock();
        if let Some(s) = slots.get_mut(&self.id) {
            s.starting = false;
            if s.pending.is_empty() {
                slots.remove(&self.id);
            }
        }
        self.attachments.changed.notify_all();
    }
}

impl Attachments {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a start of `id` in progress and takes its pending attachers.
    pub(crate) fn begin_start(
        &self,
        id: &str,
    ) -> (StartGuard<'_>, Vec<(AttachOptions, SyncSender<UnixStream>)>) {
        let mut slots = self.lock();
        let slot = slots.entry(id.to_string()).or_default();
        slot.starting = true;
        let pending = std::mem::take(&mut slot.pending);
        (
            StartGuard {
                attachments: self,
                id: id.to_string(),
            },
            pending,
        )
    }

    /// Drops the pending attachers of a removed container (their clients see the end).
    pub(crate) fn cancel(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// Sends the `attach` request on a new connection to the shim and reads its `ok`.
/// None when no shim listens.
pub(crate) fn attach_to_shim(dir: &Path, opts: AttachOptions) -> Result<Option<UnixStream>> {
    let sock = dir.join(SHIM_SOCKET);
    let io = |e: std::io::Error| EngineError::internal(format!("{}: attach: {e}", sock.display()));
    let mut s = match connect_shim(dir) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io(e)),
    };
    s.write_all(opts.request().as_bytes()).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    // Byte by byte: what follows the reply line is the container's output.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            // EOF: the shim exited meanwhile.
            Ok(_) => return Ok(None),
            Err(e) => return Err(io(e)),
        }
    }
    let line = String::from_utf8_lossy(&line);
    if line != "ok" {
        return Err(EngineError::internal(format!(
            "{}: attach: {}",
            sock.display(),
            line.trim_start_matches("error ")
        )));
    }
    s.set_read_timeout(None).map_err(io)?;
    Ok(Some(s))
}

impl Engine {
    /// Attaches to a container's stdio (`docker attach`, and `docker run` before its
    /// start). A running container is attached at once; any other is attached when it
    /// next starts ([`Attach::wait`] blocks until then).
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn attach_container(
        &self,
        name: &str,
        opts: AttachOptions,
    ) -> Result<(ContainerRecord, Attach)> {
        let rec = self.container(name)?;
        // As Docker: stdin is attached only to a container that has one (OpenStdin).
        let opts = AttachOptions {
            stdin: opts.stdin && rec.open_stdin,
            ..opts
        };
        let dir = self.container_dir(&rec.id);
        let att = &self.inner.attachments;
        let mut slots = att.lock();
        while slots.get(&rec.id).is_some_and(|s| s.starting) {
            slots = att.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
        if let ContainerState::Running { .. } = self.container_state(&rec.id)? {
            drop(slots);
            if let Some(s) = attach_to_shim(&dir, opts)? {
                let id = rec.id.clone();
                return Ok((
                    rec,
                    Attach {
                        id,
                        opts,
                        inner: AttachInner::Ready(s),
                    },
                ));
            }
            // It exited meanwhile: attach to its next start.
            slots = att.lock();
        }
        let (tx, rx) = sync_channel(1);
        slots
            .entry(rec.id.clone())
            .or_default()
            .pending
            .push((opts, tx));
        let id = rec.id.clone();
        Ok((
            rec,
            Attach {
                id,
                opts,
                inner: AttachInner::Pending(rx),
            },
        ))
    }

    /// Sets the window size of a TTY container's terminal (`docker resize`, and the
    /// docker CLI after attaching).
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn resize_container(&self, name: &str, height: u16, width: u16) -> Result<()> {
        let rec = self.container(name)?;
        if !rec.tty {
            return Err(EngineError::conflict(format!(
                "container {}: cannot resize: it has no TTY",
                rec.id
            )));
        }
        let dir = self.container_dir(&rec.id);
        match shim_request(&dir, &format!("resize {height} {width}"))? {
            Some(r) if r.trim() == "ok" => Ok(()),
            Some(r) if !r.is_empty() => Err(EngineError::internal(format!(
                "container {}: resize: {}",
                rec.id,
                r.trim().trim_start_matches("error ")
            ))),
            _ => Err(EngineError::conflict(format!(
                "container {} is not running",
                rec.id
            ))),
        }
    }
}

/// Docker's detach keys (`--detach-keys`, default `ctrl-p,ctrl-q`): a comma-separated
/// list of single characters or `ctrl-X` (X a letter or one of `@[\]^_`).
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let bad = |k: &str| {
        EngineError::invalid(format!(
            "invalid detach keys {s:?}: {k:?} is not a character or ctrl-<value>"
        ))
    };
    let mut out = Vec::new();
    for k in s.split(',') {
        let lower = k.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [c @ (b'[' | b'\\' | b']' | b'^' | b'_')] => c - b'@',
                _ => return Err(bad(k)),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad(k));
        }
    }
    Ok(out)
}

/// Finds the detach keys in a client's input, as Docker's `copyEscapable`: bytes that
/// may start the sequence are held back until it is complete (detach: they are dropped)
/// or broken (they are passed on).
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    /// Appends to `out` what goes to the container; true when the sequence completed
    /// (the rest of `input` is dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    if self.keys.len() == 1 {
                        return true;
                    }
                } else {
                    out.push(b);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").expect("ok"), [16, 17]);
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-[").expect("ok"),
            [b'a', 0, 27]
        );
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn detach_sequence_is_found_and_partial_matches_pass_through() {
        let mut s = DetachScanner::new(vec![16, 17]);
        let mut out = Vec::new();
        assert!(!s.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        assert!(!s.feed(b"c", &mut out));
        assert_eq!(out, b"ab\x10c");
        assert!(!s.feed(b"\x10\x10", &mut out));
        assert!(s.feed(b"\x11zz", &mut out));
        assert_eq!(out, b"ab\x10c\x10");
    }
}
