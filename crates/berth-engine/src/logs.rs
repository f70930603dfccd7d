//! Reading a container's json-file log: `docker logs` with `--since`, `--until`,
//! `--tail` and `--follow`.
//!
//! The shim writes `<id>-json.log` and rotates it by renaming to `.1`, `.2`, … (the
//! oldest beyond `max-file` is deleted; rotated files are plain, never compressed). A
//! reader opens the current file first, then takes the rotated files oldest first, then
//! the current one through the descriptor it opened. A rotated file with the inode of
//! that descriptor is the current file renamed after it was opened: it is skipped (it is
//! read through the descriptor). Following polls that descriptor; when the shim rotates,
//! the path names a new file: the reader finishes the old one (its descriptor still reads
//! the renamed file) and continues with the new one, so nothing is skipped or read twice.
//! Following ends when the container no longer runs and the file holds nothing more, when
//! `until` passes, or when the reader's consumer fails (the client went away).
//!
//! Memory stays bounded whatever the size of the log:
//! - Without `tail`, every file is streamed in [`BLOCK`] reads; only the line being
//!   assembled is held.
//! - With `tail = N`, the current file (up to its size when the call starts), then the
//!   rotated files newest first, are read backwards in [`BLOCK`]s until N records that
//!   the query selects (stream, `since`, `until`) are counted; the files are then
//!   streamed forward from the first of them to that end. Nothing but one block and one
//!   line is held, however large N is. `tail = 0` reads nothing (then follows).
//! - A line longer than [`MAX_RECORD`] (the shim writes at most 16 KiB of output per
//!   record, about 100 KiB escaped) is not a record the shim wrote: it is skipped with a
//!   warning, as a record that does not parse.
//! - The current file's last line without its `\n` is still being written: it is not
//!   emitted until it is complete (a rotated file's last line is complete).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_types::ErrorKind;
use serde::Deserialize;
use tracing::warn;

use crate::containers::{io_err, ContainerRecord, ContainerState};
use crate::error::{EngineError, Result};
use crate::Engine;

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// One read of a log file, forwards or backwards.
const BLOCK: usize = 64 * 1024;

/// Longest line taken as a record.
const MAX_RECORD: usize = 1 << 20;

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
    /// Only the last N selected records of what exists when the call starts.
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

    /// Whether `line` is a record this query selects (counting for `tail`).
    fn selects_line(&self, line: &[u8]) -> bool {
        !line.is_empty()
            && serde_json::from_slice::<LogRecord>(line).is_ok_and(|r| self.selects(&r))
    }
}

/// Where [`Engine::read_logs`] sends records; a closure taking each record is one.
pub trait LogSink {
    /// Takes the next record; an error ends the read (the client went away).
    fn record(&mut self, r: &LogRecord) -> io::Result<()>;

    /// Every record there is now was given: a sink that batches records sends what it
    /// holds (a follower then waits for more output).
    fn caught_up(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&LogRecord) -> io::Result<()>> LogSink for F {
    fn record(&mut self, r: &LogRecord) -> io::Result<()> {
        self(r)
    }
}

type Emit<'a> = dyn LogSink + 'a;

/// The consumer of the records failed: the client went away.
fn gone(e: io::Error) -> EngineError {
    EngineError::new(ErrorKind::Unavailable, e.to_string())
}

/// Parses one line and emits it if the query selects it; a bad record is skipped.
fn take_line(line: &[u8], path: &Path, q: &LogQuery, emit: &mut Emit<'_>) -> Result<()> {
    if line.is_empty() {
        return Ok(());
    }
    match serde_json::from_slice::<LogRecord>(line) {
        Ok(r) if q.selects(&r) => emit.record(&r).map_err(gone),
        Ok(_) => Ok(()),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "bad log record skipped");
            Ok(())
        }
    }
}

/// Splits a file read forwards into lines; holds only the line being assembled.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    /// In a line longer than [`MAX_RECORD`]: drop bytes up to the next `\n`.
    skipping: bool,
}

impl Lines {
    /// Takes the next bytes of the file; emits every line they complete.
    fn feed(
        &mut self,
        mut data: &[u8],
        path: &Path,
        q: &LogQuery,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let head = &data[..nl];
            data = &data[nl + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                take_line(head, path, q, emit)?;
            } else {
                self.partial.extend_from_slice(head);
                let r = take_line(&self.partial, path, q, emit);
                self.partial.clear();
                r?;
            }
        }
        if !self.skipping {
            self.partial.extend_from_slice(data);
            if self.partial.len() > MAX_RECORD {
                warn!(path = %path.display(), max_bytes = MAX_RECORD, "log line longer than any record skipped");
                self.partial = Vec::new();
                self.skipping = true;
            }
        }
        Ok(())
    }

    /// The file is complete (rotated): what is left is its last line.
    fn finish(&mut self, path: &Path, q: &LogQuery, emit: &mut Emit<'_>) -> Result<()> {
        let last = std::mem::take(&mut self.partial);
        if !std::mem::replace(&mut self.skipping, false) {
            take_line(&last, path, q, emit)?;
        }
        Ok(())
    }
}

/// The lines of a file from its end backwards, read in [`BLOCK`]s.
struct Backward<'f> {
    file: &'f File,
    path: &'f Path,
    /// Offset of `buf[0]` in the file.
    pos: u64,
    /// The bytes before the lines already given (without the `\n` ending the last).
    buf: Vec<u8>,
    /// Length `buf` is cut to before the next line is looked for.
    cut: Option<usize>,
    /// In a line longer than [`MAX_RECORD`]: drop bytes back to the `\n` before it.
    skipping: bool,
    done: bool,
}

impl<'f> Backward<'f> {
    /// Lines of `file` before `end`. A file still written (`complete` false) has no line
    /// after its last `\n` yet; the offset where that partial line starts is returned.
    fn new(
        file: &'f File,
        path: &'f Path,
        end: u64,
        complete: bool,
        stats: &mut ReadStats,
    ) -> Result<(Backward<'f>, u64)> {
        let mut b = Backward {
            file,
            path,
            pos: end,
            buf: Vec::new(),
            cut: None,
            skipping: false,
            done: false,
        };
        if complete {
            b.read_block(stats)?;
            if b.buf.last() == Some(&b'\n') {
                b.buf.pop();
            }
            return Ok((b, end));
        }
        loop {
            if let Some(i) = memchr::memrchr(b'\n', &b.buf) {
                b.buf.truncate(i);
                let partial_start = b.pos + i as u64 + 1;
                return Ok((b, partial_start));
            }
            if b.pos == 0 {
                b.buf.clear();
                b.done = true;
                return Ok((b, 0));
            }
            if b.buf.len() > MAX_RECORD {
                // All of it belongs to the partial line: nothing of it is kept.
                b.buf.clear();
            }
            b.read_block(stats)?;
        }
    }

    /// Puts the block before `buf` in front of it.
    fn read_block(&mut self, stats: &mut ReadStats) -> Result<()> {
        let n = self.pos.min(BLOCK as u64) as usize;
        if n == 0 {
            return Ok(());
        }
        let start = self.pos - n as u64;
        let mut block = Vec::with_capacity(n + self.buf.len());
        block.resize(n, 0);
        self.file
            .read_exact_at(&mut block, start)
            .map_err(|e| io_err(self.path, "read", e))?;
        block.extend_from_slice(&self.buf);
        self.buf = block;
        self.pos = start;
        stats.bytes_read += n as u64;
        stats.held(self.buf.capacity());
        Ok(())
    }

    /// The last line not given yet and the offset where it starts; `None` at the start
    /// of the file. Lines longer than [`MAX_RECORD`] are left out.
    fn prev(&mut self, stats: &mut ReadStats) -> Result<Option<(u64, &[u8])>> {
        if let Some(c) = self.cut.take() {
            self.buf.truncate(c);
        }
        loop {
            match memchr::memrchr(b'\n', &self.buf) {
                Some(i) if self.skipping => {
                    self.skipping = false;
                    self.buf.truncate(i);
                }
                Some(i) => {
                    self.cut = Some(i);
                    return Ok(Some((self.pos + i as u64 + 1, &self.buf[i + 1..])));
                }
                None if self.pos == 0 => {
                    if std::mem::replace(&mut self.done, true) || self.skipping {
                        return Ok(None);
                    }
                    self.cut = Some(0);
                    return Ok(Some((0, &self.buf[..])));
                }
                None => {
                    if self.skipping || self.buf.len() > MAX_RECORD {
                        self.skipping = true;
                        self.buf.clear();
                    }
                    self.read_block(stats)?;
                }
            }
        }
    }
}

/// What reading cost: bytes read from the files and the largest buffer held.
#[derive(Debug, Default, Clone, Copy)]
struct ReadStats {
    bytes_read: u64,
    max_held: usize,
}

impl ReadStats {
    fn held(&mut self, bytes: usize) {
        self.max_held = self.max_held.max(bytes);
    }
}

/// Reads log files forwards, one [`BLOCK`] at a time.
struct Reader {
    block: Vec<u8>,
    stats: ReadStats,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            block: vec![0; BLOCK],
            stats: ReadStats::default(),
        }
    }

    /// Streams `file` from `from` (else where it is) to `to` (else its end) through
    /// `lines`; returns the number of bytes read.
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &mut self,
        file: &mut File,
        path: &Path,
        from: Option<u64>,
        to: Option<u64>,
        lines: &mut Lines,
        q: &LogQuery,
        emit: &mut Emit<'_>,
    ) -> Result<u64> {
        let mut at = match from {
            Some(f) => file.seek(SeekFrom::Start(f)),
            None => file.stream_position(),
        }
        .map_err(|e| io_err(path, "seek", e))?;
        let first = at;
        loop {
            let want = match to {
                Some(t) if at >= t => break,
                Some(t) => (t - at).min(BLOCK as u64) as usize,
                None => BLOCK,
            };
            let n = match file.read(&mut self.block[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(path, "read", e)),
            };
            at += n as u64;
            self.stats.bytes_read += n as u64;
            lines.feed(&self.block[..n], path, q, emit)?;
            self.stats.held(BLOCK + lines.partial.capacity());
        }
        Ok(at - first)
    }
}

/// The current log file, open, and what is pending of it.
struct Cursor {
    path: PathBuf,
    file: File,
    ino: u64,
    lines: Lines,
}

fn open_file(path: &Path) -> Result<Option<(File, fs::Metadata)>> {
    match File::open(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(|e| io_err(path, "stat", e))?;
            Ok(Some((file, meta)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "open the log", e)),
    }
}

impl Cursor {
    fn open(path: &Path) -> Result<Option<Cursor>> {
        Ok(open_file(path)?.map(|(file, meta)| Cursor {
            path: path.to_path_buf(),
            file,
            ino: meta.ino(),
            lines: Lines::default(),
        }))
    }

    /// Whether the path now names another file (the shim rotated).
    fn rotated(&self) -> bool {
        fs::metadata(&self.path)
            .map(|m| m.ino() != self.ino)
            .unwrap_or(true)
    }
}

/// Path of the rotated file `n` of the log `current`.
fn rotated_path(current: &Path, n: u32) -> PathBuf {
    let mut p = current.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Emits what the log at `current` (with its rotated files `.1` … `.{max_file-1}`) holds
/// now that `q` selects; returns the current file for following.
fn read_files(
    current: &Path,
    max_file: u32,
    q: &LogQuery,
    reader: &mut Reader,
    emit: &mut Emit<'_>,
) -> Result<Option<Cursor>> {
    // Open the current file first: what rotates after this is still read through it.
    let mut cur = Cursor::open(current)?;
    let cur_ino = cur.as_ref().map(|c| c.ino);
    let rotated = 1..max_file.max(1);
    let Some(n) = q.tail else {
        for k in rotated.rev() {
            let path = rotated_path(current, k);
            let Some((mut file, meta)) = open_file(&path)? else {
                continue;
            };
            if Some(meta.ino()) == cur_ino {
                continue;
            }
            let mut lines = Lines::default();
            reader.stream(&mut file, &path, Some(0), None, &mut lines, q, emit)?;
            lines.finish(&path, q, emit)?;
        }
        if let Some(c) = cur.as_mut() {
            reader.stream(&mut c.file, &c.path, Some(0), None, &mut c.lines, q, emit)?;
        }
        return Ok(cur);
    };

    // Backwards: where the last `n` selected records start, as (source, offset); source
    // 0 is the current file up to `end`, k the rotated file `.k` (opened here).
    let end = match cur.as_ref() {
        Some(c) => c
            .file
            .metadata()
            .map_err(|e| io_err(current, "stat", e))?
            .len(),
        None => 0,
    };
    let mut older: Vec<(PathBuf, File)> = Vec::new();
    let mut count = 0;
    let mut start = None;
    if let Some(c) = cur.as_ref() {
        let (mut back, partial_start) =
            Backward::new(&c.file, current, end, false, &mut reader.stats)?;
        if n == 0 {
            start = Some((0, partial_start));
        }
        while start.is_none() {
            let Some((off, line)) = back.prev(&mut reader.stats)? else {
                break;
            };
            if q.selects_line(line) {
                count += 1;
                if count == n {
                    start = Some((0, off));
                }
            }
        }
    } else if n == 0 {
        start = Some((0, 0));
    }
    for k in rotated {
        if start.is_some() {
            break;
        }
        let path = rotated_path(current, k);
        let Some((file, meta)) = open_file(&path)? else {
            continue;
        };
        if Some(meta.ino()) == cur_ino {
            continue;
        }
        {
            let (mut back, _) = Backward::new(&file, &path, meta.len(), true, &mut reader.stats)?;
            while let Some((off, line)) = back.prev(&mut reader.stats)? {
                if q.selects_line(line) {
                    count += 1;
                    if count == n {
                        start = Some((older.len() + 1, off));
                        break;
                    }
                }
            }
        }
        older.push((path, file));
    }
    // Fewer than `n`: everything from the oldest file.
    let (source, offset) = start.unwrap_or((older.len(), 0));

    // Forwards from there to `end`.
    for (i, (path, file)) in older.iter_mut().enumerate().rev() {
        let k = i + 1;
        if k > source {
            continue;
        }
        let from = if k == source { offset } else { 0 };
        let mut lines = Lines::default();
        reader.stream(file, path, Some(from), None, &mut lines, q, emit)?;
        lines.finish(path, q, emit)?;
    }
    if let Some(c) = cur.as_mut() {
        let from = if source == 0 { offset } else { 0 };
        reader.stream(
            &mut c.file,
            &c.path,
            Some(from),
            Some(end),
            &mut c.lines,
            q,
            emit,
        )?;
    }
    Ok(cur)
}

impl Engine {
    /// Sends the container's log records that `q` selects to `emit`, oldest first; with
    /// `follow`, then what the container writes until it stops (see the module docs).
    /// `emit` is told when it has been given everything there is for now.
    pub fn read_logs(&self, name: &str, q: &LogQuery, emit: &mut dyn LogSink) -> Result<()> {
        self.read_logs_while(name, q, emit, &|| true)
    }

    /// [`Engine::read_logs`], and a follower also ends (`Ok`) once `wanted` returns false
    /// (asked before each poll for new output): a reader whose consumer went away ends
    /// though the container stays quiet (one reader among many, as a service's logs).
    pub fn read_logs_while(
        &self,
        name: &str,
        q: &LogQuery,
        emit: &mut dyn LogSink,
        wanted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let rec = self.container(name)?;
        if rec.log_driver == "none" {
            // Docker's words and kind (501): nothing was kept to read.
            return Err(crate::EngineError::new(
                berth_types::ErrorKind::NotImplemented,
                "configured logging driver does not support reading",
            ));
        }
        let current = self.container_log_path(&rec);
        let mut reader = Reader::new();
        let mut cur = read_files(&current, rec.log_max_file, q, &mut reader, emit)?;
        emit.caught_up().map_err(gone)?;
        if !q.follow {
            return Ok(());
        }
        let mut polls: u32 = 0;
        // The monitor let go of the container during the last wait: its state is asked
        // at once, so a follower ends with the exit rather than up to five polls later.
        let mut exited = false;
        loop {
            if !wanted() || q.until.is_some_and(|u| crate::events::now_nano() >= u) {
                return Ok(());
            }
            // Checked before reading: a container that stopped has written everything.
            let running = !(exited || polls.is_multiple_of(5)) || self.still_running(&rec)?;
            polls = polls.wrapping_add(1);
            let mut read = 0;
            match cur.as_mut() {
                Some(c) => {
                    read +=
                        reader.stream(&mut c.file, &c.path, None, None, &mut c.lines, q, emit)?;
                    if c.rotated() {
                        // Finish the renamed file, then switch to the new one.
                        read += reader.stream(
                            &mut c.file,
                            &c.path,
                            None,
                            None,
                            &mut c.lines,
                            q,
                            emit,
                        )?;
                        c.lines.finish(&c.path, q, emit)?;
                        cur = Cursor::open(&current)?;
                        if let Some(n) = cur.as_mut() {
                            read += reader.stream(
                                &mut n.file,
                                &n.path,
                                None,
                                None,
                                &mut n.lines,
                                q,
                                emit,
                            )?;
                        }
                    }
                }
                None => {
                    cur = Cursor::open(&current)?;
                    if let Some(n) = cur.as_mut() {
                        read += reader.stream(
                            &mut n.file,
                            &n.path,
                            None,
                            None,
                            &mut n.lines,
                            q,
                            emit,
                        )?;
                    }
                }
            }
            if read > 0 {
                emit.caught_up().map_err(gone)?;
            }
            if !running && read == 0 {
                return Ok(());
            }
            exited = self.wait_exit_or(&rec.id, FOLLOW_POLL);
        }
    }

    /// Sleeps `timeout`, or less when the monitor of container `id` lets go of it
    /// (its process exited and the exit is recorded): true then.
    fn wait_exit_or(&self, id: &str, timeout: Duration) -> bool {
        let tracking = self
            .inner
            .lifecycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !tracking.monitored.contains(id) {
            drop(tracking);
            std::thread::sleep(timeout);
            return false;
        }
        let (tracking, _) = self
            .inner
            .monitor_done
            .wait_timeout_while(tracking, timeout, |t| t.monitored.contains(id))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !tracking.monitored.contains(id)
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
        self.read_logs(name, &q, &mut |r: &LogRecord| {
            out.push(r.clone());
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(i: usize, stream: &str, log: &str) -> String {
        let r = serde_json::json!({
            "log": log,
            "stream": stream,
            "time": format!("2024-01-01T00:{:02}:{:02}.000000001Z", i / 60, i % 60),
        });
        format!("{r}\n")
    }

    /// Writes records `range` (stdout, "i\n") to `path`.
    fn write(path: &Path, range: std::ops::Range<usize>) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        for i in range {
            f.write_all(line(i, "stdout", &format!("{i}\n")).as_bytes())
                .expect("write");
        }
    }

    fn all() -> LogQuery {
        LogQuery {
            stdout: true,
            stderr: true,
            ..LogQuery::default()
        }
    }

    fn tail(n: usize) -> LogQuery {
        LogQuery {
            tail: Some(n),
            ..all()
        }
    }

    /// Reads `current` (3 files) with `q`; returns the logs, the cursor and the stats.
    fn read(current: &Path, q: &LogQuery) -> (Vec<String>, Option<Cursor>, ReadStats) {
        let mut out = Vec::new();
        let mut reader = Reader::new();
        let cur = read_files(current, 3, q, &mut reader, &mut |r: &LogRecord| {
            out.push(r.log.clone());
            Ok(())
        })
        .expect("read");
        (out, cur, reader.stats)
    }

    fn logs(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("{i}\n")).collect()
    }

    /// Files `.2` (0..3), `.1` (3..6) and the current one (6..9).
    fn rotated_log(dir: &Path) -> PathBuf {
        let cur = dir.join("c-json.log");
        write(&rotated_path(&cur, 2), 0..3);
        write(&rotated_path(&cur, 1), 3..6);
        write(&cur, 6..9);
        cur
    }

    #[test]
    fn without_tail_every_file_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = rotated_log(dir.path());
        assert_eq!(read(&cur, &all()).0, logs(0..9));
    }

    #[test]
    fn tail_across_rotated_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = rotated_log(dir.path());
        assert_eq!(read(&cur, &tail(2)).0, logs(7..9));
        assert_eq!(read(&cur, &tail(3)).0, logs(6..9));
        assert_eq!(read(&cur, &tail(5)).0, logs(4..9));
        assert_eq!(read(&cur, &tail(8)).0, logs(1..9));
    }

    #[test]
    fn tail_larger_than_the_log_gives_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = rotated_log(dir.path());
        assert_eq!(read(&cur, &tail(9)).0, logs(0..9));
        assert_eq!(read(&cur, &tail(1000)).0, logs(0..9));
        // No current file yet, or none at all.
        fs::remove_file(&cur).expect("rm");
        assert_eq!(read(&cur, &tail(4)).0, logs(2..6));
        let empty = dir.path().join("none-json.log");
        assert!(read(&empty, &tail(4)).0.is_empty());
    }

    #[test]
    fn tail_zero_emits_nothing_then_follows_from_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = rotated_log(dir.path());
        // A record being written when the call starts.
        let last = line(9, "stdout", "9\n");
        let (head, rest) = last.split_at(10);
        fs::OpenOptions::new()
            .append(true)
            .open(&cur)
            .and_then(|mut f| f.write_all(head.as_bytes()))
            .expect("append");
        let (out, c, stats) = read(&cur, &tail(0));
        assert!(out.is_empty());
        // The end of the file backwards to find where the partial record starts (a
        // small file: all of it), then that partial record.
        let size = fs::metadata(&cur).expect("stat").len();
        assert!(stats.bytes_read <= size + head.len() as u64, "{stats:?}");
        let mut c = c.expect("cursor");
        fs::OpenOptions::new()
            .append(true)
            .open(&cur)
            .and_then(|mut f| f.write_all(rest.as_bytes()))
            .expect("append");
        write(&cur, 10..11);
        let mut out = Vec::new();
        let mut reader = Reader::new();
        reader
            .stream(
                &mut c.file,
                &cur,
                None,
                None,
                &mut c.lines,
                &all(),
                &mut |r: &LogRecord| {
                    out.push(r.log.clone());
                    Ok(())
                },
            )
            .expect("follow");
        assert_eq!(out, logs(9..11));
    }

    #[test]
    fn tail_counts_only_the_selected_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = dir.path().join("c-json.log");
        let mut text = String::new();
        for i in 0..20 {
            let stream = if i % 2 == 0 { "stdout" } else { "stderr" };
            text.push_str(&line(i, stream, &format!("{i}\n")));
        }
        fs::write(&cur, text).expect("write");
        let q = LogQuery {
            stdout: false,
            tail: Some(3),
            ..all()
        };
        assert_eq!(read(&cur, &q).0, ["15\n", "17\n", "19\n"]);
        let q = LogQuery {
            stderr: false,
            tail: Some(2),
            ..all()
        };
        assert_eq!(read(&cur, &q).0, ["16\n", "18\n"]);
    }

    #[test]
    fn since_and_until_apply_before_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = rotated_log(dir.path());
        let ns = |i: usize| {
            chrono::DateTime::parse_from_rfc3339(&format!("2024-01-01T00:00:{i:02}.000000001Z"))
                .expect("time")
                .timestamp_nanos_opt()
                .expect("ns")
        };
        let q = LogQuery {
            since: Some(ns(2)),
            until: Some(ns(7)),
            tail: Some(3),
            ..all()
        };
        assert_eq!(read(&cur, &q).0, logs(4..7));
        let q = LogQuery {
            since: Some(ns(2)),
            until: Some(ns(7)),
            tail: Some(30),
            ..all()
        };
        assert_eq!(read(&cur, &q).0, logs(2..7));
    }

    #[test]
    fn a_partial_last_line_waits_for_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = dir.path().join("c-json.log");
        write(&cur, 0..3);
        let last = line(3, "stdout", "3\n");
        let (head, rest) = last.split_at(last.len() - 5);
        fs::OpenOptions::new()
            .append(true)
            .open(&cur)
            .and_then(|mut f| f.write_all(head.as_bytes()))
            .expect("append");
        assert_eq!(read(&cur, &all()).0, logs(0..3));
        assert_eq!(read(&cur, &tail(1)).0, logs(2..3));
        let (out, c, _) = read(&cur, &tail(2));
        assert_eq!(out, logs(1..3));
        let mut c = c.expect("cursor");
        fs::OpenOptions::new()
            .append(true)
            .open(&cur)
            .and_then(|mut f| f.write_all(rest.as_bytes()))
            .expect("append");
        let mut out = Vec::new();
        Reader::new()
            .stream(
                &mut c.file,
                &cur,
                None,
                None,
                &mut c.lines,
                &all(),
                &mut |r: &LogRecord| {
                    out.push(r.log.clone());
                    Ok(())
                },
            )
            .expect("follow");
        assert_eq!(out, logs(3..4));
        // A rotated file's last line is complete without its `\n`.
        let r1 = rotated_path(&cur, 1);
        fs::write(&r1, line(0, "stdout", "r\n").trim_end()).expect("write");
        fs::remove_file(&cur).expect("rm");
        assert_eq!(read(&cur, &all()).0, ["r\n"]);
        assert_eq!(read(&cur, &tail(1)).0, ["r\n"]);
    }

    #[test]
    fn lines_longer_than_a_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = dir.path().join("c-json.log");
        let big = |c: char| c.to_string().repeat(BLOCK * 2 + 17);
        let mut text = String::new();
        for (i, c) in ['a', 'b', 'c', 'd'].into_iter().enumerate() {
            text.push_str(&line(i, "stdout", &big(c)));
            text.push_str(&line(i, "stderr", "small\n"));
        }
        fs::write(&cur, &text).expect("write");
        let (out, _, _) = read(&cur, &all());
        assert_eq!(out.len(), 8);
        assert_eq!(out[6], big('d'));
        let small = || "small\n".to_string();
        let (out, _, _) = read(&cur, &tail(3));
        assert_eq!(out, [small(), big('d'), small()]);
        let (out, _, _) = read(&cur, &tail(4));
        assert_eq!(out, [big('c'), small(), big('d'), small()]);
        let q = LogQuery {
            stderr: false,
            tail: Some(2),
            ..all()
        };
        assert_eq!(read(&cur, &q).0, [big('c'), big('d')]);
    }

    #[test]
    fn bad_and_overlong_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = dir.path().join("c-json.log");
        let mut text = line(0, "stdout", "0\n");
        text.push_str("not json\n");
        text.push_str(&"x".repeat(MAX_RECORD * 2 + 3));
        text.push('\n');
        text.push_str(&line(1, "stdout", "1\n"));
        text.push_str(&"y".repeat(MAX_RECORD + 1));
        text.push('\n');
        text.push_str(&line(2, "stdout", "2\n"));
        fs::write(&cur, &text).expect("write");
        for q in [all(), tail(3), tail(100)] {
            let (out, _, stats) = read(&cur, &q);
            assert_eq!(out, logs(0..3), "{q:?}");
            assert!(stats.max_held < 2 * MAX_RECORD + 2 * BLOCK, "{stats:?}");
        }
        assert_eq!(read(&cur, &tail(2)).0, logs(1..3));
    }

    #[test]
    fn a_rotated_file_that_is_the_open_current_one_is_not_read_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = dir.path().join("c-json.log");
        write(&cur, 0..3);
        // The shim rotated between the open of the current file and the rotated ones.
        fs::hard_link(&cur, rotated_path(&cur, 1)).expect("link");
        assert_eq!(read(&cur, &all()).0, logs(0..3));
        assert_eq!(read(&cur, &tail(5)).0, logs(0..3));
    }

    #[test]
    fn tail_of_a_large_log_reads_a_bounded_part_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cur = dir.path().join("c-json.log");
        let mut f = io::BufWriter::new(File::create(&cur).expect("create"));
        let payload = "p".repeat(180);
        let mut size = 0;
        let mut i = 0;
        while size < 50 << 20 {
            let l = line(i, "stdout", &format!("{i} {payload}\n"));
            f.write_all(l.as_bytes()).expect("write");
            size += l.len();
            i += 1;
        }
        f.flush().expect("flush");
        drop(f);
        let (out, _, stats) = read(&cur, &tail(5));
        let want: Vec<String> = (i - 5..i).map(|k| format!("{k} {payload}\n")).collect();
        assert_eq!(out, want);
        // One block backwards, then the five records forwards.
        assert!(stats.bytes_read <= 2 * BLOCK as u64, "{stats:?}");
        assert!(stats.max_held <= 2 * BLOCK, "{stats:?}");
        // Streaming all of it holds one block and one line.
        let mut n = 0;
        let mut reader = Reader::new();
        read_files(&cur, 1, &all(), &mut reader, &mut |_: &LogRecord| {
            n += 1;
            Ok(())
        })
        .expect("read");
        assert_eq!(n, i);
        assert_eq!(reader.stats.bytes_read, size as u64);
        assert!(reader.stats.max_held <= 2 * BLOCK, "{:?}", reader.stats);
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
