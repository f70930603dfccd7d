//! Attached clients of the shim: the `attach` control request turns its connection into
//! a stream (format in `berth_runtime::shim_protocol`).
//!
//! Every client has its own output buffer. The shim never blocks on a client: sockets are
//! non-blocking, output is queued and written when the socket is writable, and a client
//! whose queue would pass [`ATTACH_BUFFER_MAX`] is disconnected (it sees EOF early and
//! can read the rest from the log). Dropping output silently would be worse: a client
//! that got disconnected knows it missed something.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use berth_runtime::shim_protocol::ATTACH_BUFFER_MAX;

use crate::jsonlog::Stream;

/// Which streams a client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Parses `stdin=1 stdout=1 stderr=0` (missing keys are 0).
pub fn parse_streams(args: &str) -> Result<Streams, String> {
    let mut s = Streams::default();
    for kv in args.split_whitespace() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("attach option {kv:?}: expected KEY=0|1"))?;
        let on = match v {
            "1" => true,
            "0" => false,
            _ => return Err(format!("attach option {kv:?}: expected 0 or 1")),
        };
        match k {
            "stdin" => s.stdin = on,
            "stdout" => s.stdout = on,
            "stderr" => s.stderr = on,
            _ => return Err(format!("attach option {k:?} is unknown")),
        }
    }
    Ok(s)
}

/// What happened when a client's input was read.
pub enum Input {
    /// Nothing (would block, or not a stdin client: its bytes are discarded).
    None,
    /// Bytes for the container's stdin.
    Data(usize),
    /// The client closed its write side.
    Eof,
}

pub struct Attacher {
    pub conn: UnixStream,
    pub streams: Streams,
    /// Output not written yet.
    out: Vec<u8>,
    /// Still reading the client's input.
    pub input_open: bool,
    /// Disconnect it (write error, or too slow).
    pub dead: bool,
}

impl Attacher {
    pub fn new(conn: UnixStream, streams: Streams) -> std::io::Result<Attacher> {
        conn.set_nonblocking(true)?;
        Ok(Attacher {
            conn,
            streams,
            out: Vec::new(),
            input_open: true,
            dead: false,
        })
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Queues output of `stream` (framed unless `raw`, i.e. a TTY) if the client wants it.
    pub fn push(&mut self, stream: Stream, data: &[u8], raw: bool) {
        let wanted = match stream {
            Stream::Stdout => self.streams.stdout,
            Stream::Stderr => self.streams.stderr,
        };
        if !wanted || self.dead {
            return;
        }
        let need = data.len() + if raw { 0 } else { 8 };
        if self.out.len() + need > ATTACH_BUFFER_MAX {
            eprintln!(
                "berth-shim: attached client disconnected: more than {ATTACH_BUFFER_MAX} bytes of output pending (it does not keep up)"
            );
            self.dead = true;
            self.out = Vec::new();
            return;
        }
        if !raw {
            let kind = match stream {
                Stream::Stdout => 1u8,
                Stream::Stderr => 2u8,
            };
            self.out.push(kind);
            self.out.extend_from_slice(&[0, 0, 0]);
            self.out
                .extend_from_slice(&(data.len() as u32).to_be_bytes());
        }
        self.out.extend_from_slice(data);
        self.flush();
    }

    /// Writes as much pending output as the socket takes now.
    pub fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            match self.conn.write(&self.out) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        if self.out.is_empty() && self.out.capacity() > 64 * 1024 {
            self.out = Vec::new(); // give a burst's memory back
        }
    }

    /// Reads the client's input into `buf`.
    pub fn read_input(&mut self, buf: &mut [u8]) -> Input {
        match self.conn.read(buf) {
            Ok(0) => {
                self.input_open = false;
                Input::Eof
            }
            Ok(n) if self.streams.stdin => Input::Data(n),
            Ok(_) => Input::None,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                Input::None
            }
            Err(_) => {
                self.input_open = false;
                Input::Eof
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_parse() {
        let s = parse_streams("stdin=1 stdout=1 stderr=0").expect("ok");
        assert!(s.stdin && s.stdout && !s.stderr);
        assert_eq!(parse_streams("").expect("ok"), Streams::default());
        assert!(parse_streams("stdin=yes").is_err());
        assert!(parse_streams("logs=1").is_err());
    }

    #[test]
    fn output_is_framed_and_filtered() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let mut at = Attacher::new(
            a,
            Streams {
                stdin: false,
                stdout: true,
                stderr: false,
            },
        )
        .expect("attacher");
        at.push(Stream::Stderr, b"no", false);
        at.push(Stream::Stdout, b"hi\n", false);
        drop(at);
        let mut got = Vec::new();
        b.read_to_end(&mut got).expect("read");
        assert_eq!(got, [1, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }

    #[test]
    fn a_client_that_does_not_read_is_disconnected() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let mut at = Attacher::new(
            a,
            Streams {
                stdin: false,
                stdout: true,
                stderr: true,
            },
        )
        .expect("attacher");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            at.push(Stream::Stdout, &chunk, true);
        }
        assert!(at.dead);
    }
}
