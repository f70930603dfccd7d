//! Reading a container's json-file log: `docker logs` with `--since`, `--until`,
//! `--tail` and `--follow`.
//!
//! The shim writes `<id>-json.log` and rotates it by renaming to `.1`, `.2`, … (the
//! oldest beyond `max-file` is deleted). A reader takes the rotated files oldest first,
//! then the current one through an open descriptor. Following polls that descriptor;
//! when the shim rotates, the path names a new file: the reader finishes the old one
//! (its descriptor still reads the renamed file) and continues with the new one, so
//! nothing is skipped or read twice. Following ends when the container no longer runs
//! and the file holds nothing more, when `until` passes, or when the reader's consumer
//! fails (the client went away).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use crate::containers::{io_err, ContainerRecord, ContainerState};
use crate::error::Result;
use crate::Engine;

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// One json-file log record.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LogRecord {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// What `docker logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub stdout: bool,
    pub stderr: bool,
    /// Only records at or after this time (ns since the epoch).
    pub since: Option<i64>,
    /// Only records before this time (ns since the epoch); following stops then.
    pub until: Option<i64>,
    /// Only the last N records of what exists when the call starts.
    pub tail: Option<usize>,
    pub follow: bool,
}

fn record_time(r: &LogRecord) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&r.time)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

impl LogQuery {
    fn selects(&self, r: &LogRecord) -> bool {
        let stream_ok = match r.stream.as_str() {
            "stderr" => self.stderr,
            _ => self.stdout,
        };
        if !stream_ok {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(t) = record_time(r) else {
            return false;
        };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// Splits complete lines off `buf` into records; keeps a trailing partial line.
fn parse_lines(buf: &mut Vec<u8>, path: &Path, out: &mut Vec<LogRecord>) {
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    for line in buf[..last_nl].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<LogRecord>(line) {
            Ok(r) => out.push(r),
            Err(e) => warn!(path = %path.display(), error = %e, "bad log record skipped"),
        }
    }
    buf.drain(..=last_nl);
}

/// An open log file and what is pending of it.
struct Cursor {
    path: PathBuf,
    file: File,
    ino: u64,
    partial: Vec<u8>,
}

impl Cursor {
    fn open(path: &Path) -> io::Result<Option<Cursor>> {
        match File::open(path) {
            Ok(file) => {
                let ino = file.metadata()?.ino();
                Ok(Some(Cursor {
                    path: path.to_path_buf(),
                    file,
                    ino,
                    partial: Vec::new(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads what was appended since the last call.
    fn read_new(&mut self, out: &mut Vec<LogRecord>) -> io::Result<()> {
        let mut chunk = Vec::new();
        self.file.read_to_end(&mut chunk)?;
        self.partial.extend_from_slice(&chunk);
        parse_lines(&mut self.partial, &self.path, out);
        Ok(())
    }

    /// Whether the path now names another file (the shim rotated).
    fn rotated(&self) -> bool {
        fs::metadata(&self.path)
            .map(|m| m.ino() != self.ino)
            .unwrap_or(true)
    }
}

impl Engine {
    /// Sends the container's log records that `q` selects to `emit`, oldest first; with
    /// `follow`, then what the container writes until it stops (see the module docs).
    pub fn read_logs(
        &self,
        name: &str,
        q: &LogQuery,
        emit: &mut dyn FnMut(&LogRecord) -> io::Result<()>,
    ) -> Result<()> {
        let rec = self.container(name)?;
        let current = self.container_log_path(&rec);
        // Open the current file first: what rotates after this is still read through it.
        let mut cur = Cursor::open(&current).map_err(|e| io_err(&current, "open the log", e))?;
        let mut records = Vec::new();
        for f in rotated_files(&rec, &current) {
            let text = match fs::read(&f) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&f, "read", e)),
            };
            let mut buf = text;
            buf.push(b'\n');
            parse_lines(&mut buf, &f, &mut records);
        }
        if let Some(c) = cur.as_mut() {
            c.read_new(&mut records)
                .map_err(|e| io_err(&current, "read", e))?;
        }
        records.retain(|r| q.selects(r));
        if let Some(n) = q.tail {
            let skip = records.len().saturating_sub(n);
            records.drain(..skip);
        }
        let gone = |e: io::Error| {
            crate::EngineError::new(berth_types::ErrorKind::Unavailable, e.to_string())
        };
        for r in &records {
            emit(r).map_err(gone)?;
        }
        if !q.follow {
            return Ok(());
        }
        let mut polls: u32 = 0;
        loop {
            if q.until.is_some_and(|u| crate::events::now_nano() >= u) {
                return Ok(());
            }
            // Checked before reading: a container that stopped has written everything.
            let running = !polls.is_multiple_of(5) || self.still_running(&rec)?;
            polls = polls.wrapping_add(1);
            let mut batch = Vec::new();
            match cur.as_mut() {
                Some(c) => {
                    c.read_new(&mut batch)
                        .map_err(|e| io_err(&current, "read", e))?;
                    if c.rotated() {
                        // Finish the renamed file, then switch to the new one.
                        c.read_new(&mut batch)
                            .map_err(|e| io_err(&current, "read", e))?;
                        cur = Cursor::open(&current)
                            .map_err(|e| io_err(&current, "open the log", e))?;
                        if let Some(n) = cur.as_mut() {
                            n.read_new(&mut batch)
                                .map_err(|e| io_err(&current, "read", e))?;
                        }
                    }
                }
                None => {
                    cur =
                        Cursor::open(&current).map_err(|e| io_err(&current, "open the log", e))?;
                }
            }
            for r in batch.iter().filter(|r| q.selects(r)) {
                emit(r).map_err(gone)?;
            }
            if !running && batch.is_empty() {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }

    fn still_running(&self, rec: &ContainerRecord) -> Result<bool> {
        Ok(matches!(
            self.container_state(&rec.id)?,
            ContainerState::Running { .. }
        ) || self.is_restarting(&rec.id))
    }

    /// Every selected record at once (no follow).
    pub fn container_logs(&self, name: &str) -> Result<Vec<LogRecord>> {
        let mut out = Vec::new();
        let q = LogQuery {
            stdout: true,
            stderr: true,
            ..LogQuery::default()
        };
        self.read_logs(name, &q, &mut |r| {
            out.push(r.clone());
            Ok(())
        })?;
        Ok(out)
    }
}

/// The rotated files of a container's log, oldest first.
fn rotated_files(rec: &ContainerRecord, current: &Path) -> Vec<PathBuf> {
    (1..rec.log_max_file.max(1))
        .rev()
        .map(|n| {
            let mut p = current.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_wait_for_their_end() {
        let mut buf = br#"{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}
{"log":"b"#
            .to_vec();
        let mut out = Vec::new();
        parse_lines(&mut buf, Path::new("x"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].log, "a\n");
        buf.extend_from_slice(b"\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-01T00:00:01Z\"}\n");
        parse_lines(&mut buf, Path::new("x"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].stream, "stderr");
        assert!(buf.is_empty());
    }

    #[test]
    fn queries_select_by_stream_and_time() {
        let r = |stream: &str, time: &str| LogRecord {
            log: "x".into(),
            stream: stream.into(),
            time: time.into(),
        };
        let t0 = "2024-01-01T00:00:00.5Z";
        let ns = chrono::DateTime::parse_from_rfc3339(t0)
            .expect("time")
            .timestamp_nanos_opt()
            .expect("ns");
        let q = LogQuery {
            stdout: true,
            stderr: false,
            since: Some(ns),
            until: Some(ns + 1),
            ..LogQuery::default()
        };
        assert!(q.selects(&r("stdout", t0)));
        assert!(!q.selects(&r("stderr", t0)));
        assert!(!q.selects(&r("stdout", "2024-01-01T00:00:00.4Z")));
        assert!(!q.selects(&r("stdout", "2024-01-01T00:00:01Z")));
    }
}
