//! Docker's json-file log driver, byte for byte: one JSON object per line,
//! `{"log":"line\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}`.
//!
//! - A record is one line of output with its `\n`; a line longer than [`MAX_LINE`] is cut
//!   into records without a trailing `\n` (Docker's 16 KiB partial messages); a last line
//!   without `\n` is written as is when the stream ends.
//! - Strings are escaped as Go's encoding/json does (`<`, `>`, `&` as `\u003c`…; invalid
//!   UTF-8 as U+FFFD), so existing log shippers parse them the same.
//! - Rotation as Docker's `max-size`/`max-file`: before a record would take the current
//!   file past `max_size`, `ID-json.log.{n-1}` → `.{n}`, …, the current file → `.1`, and a
//!   new file is started; at most `max_file` files exist. A container can never use more
//!   than `max_size × max_file` bytes of log (plus one record).
//!
//! Write errors (a full disk) drop the record and are counted, never block the container.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest record; longer lines are split (Docker's bufio size for json-file).
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct JsonLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_file: u32,
    partial: [Vec<u8>; 2],
    record: Vec<u8>,
    /// Records dropped because the file could not be written.
    pub dropped: u64,
    /// The `none` log driver: output is read (attached clients get it) and not kept.
    discard: bool,
}

impl JsonLog {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> std::io::Result<JsonLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode_0640()
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
            record: Vec::new(),
            dropped: 0,
            discard: false,
        })
    }

    /// The `none` log driver: no file, nothing kept.
    pub fn discarding(path: &Path) -> JsonLog {
        JsonLog {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            max_size: 0,
            max_file: 1,
            partial: [Vec::new(), Vec::new()],
            record: Vec::new(),
            dropped: 0,
            discard: true,
        }
    }

    /// Takes bytes read from a stream; writes every complete line.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        if self.discard {
            return;
        }
        let idx = stream as usize;
        while !data.is_empty() {
            let room = MAX_LINE - self.partial[idx].len();
            let take = data.iter().take(room).position(|&b| b == b'\n');
            match take {
                Some(nl) => {
                    self.partial[idx].extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    self.emit(stream);
                }
                None => {
                    let n = room.min(data.len());
                    self.partial[idx].extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.partial[idx].len() >= MAX_LINE {
                        self.emit(stream);
                    }
                }
            }
        }
    }

    /// Writes what is left of a line without its `\n` (the stream ended).
    pub fn flush_partial(&mut self, stream: Stream) {
        if !self.partial[stream as usize].is_empty() {
            self.emit(stream);
        }
    }

    fn emit(&mut self, stream: Stream) {
        let idx = stream as usize;
        let line = std::mem::take(&mut self.partial[idx]);
        let mut rec = std::mem::take(&mut self.record);
        rec.clear();
        rec.extend_from_slice(b"{\"log\":");
        escape_json(&String::from_utf8_lossy(&line), &mut rec);
        rec.extend_from_slice(b",\"stream\":\"");
        rec.extend_from_slice(stream.name().as_bytes());
        rec.extend_from_slice(b"\",\"time\":\"");
        rec.extend_from_slice(rfc3339_nano(std::time::SystemTime::now()).as_bytes());
        rec.extend_from_slice(b"\"}\n");
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate();
        }
        match self.file.as_mut().map(|f| f.write_all(&rec)) {
            Some(Ok(())) => self.size += rec.len() as u64,
            _ => self.dropped += 1,
        }
        self.record = rec;
        // Keep the line buffer's allocation bounded and reused.
        let mut line = line;
        line.clear();
        if line.capacity() <= 4 * MAX_LINE {
            self.partial[idx] = line;
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) {
        self.file = None;
        if self.max_file <= 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            let _ = std::fs::rename(&self.path, self.rotated(1));
        }
        self.size = 0;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode_0640()
            .open(&self.path)
            .ok();
    }
}

trait Mode0640 {
    fn mode_0640(&mut self) -> &mut Self;
}

impl Mode0640 for OpenOptions {
    fn mode_0640(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o640)
    }
}

/// Appends `s` as a JSON string the way Go's encoding/json writes it.
pub fn escape_json(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let v = c as u32;
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((v >> shift) & 0xf) as usize]);
                }
            }
            c if (c as u32) < 0x20 => {
                let v = c as u32;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(v >> 4) as usize]);
                out.push(HEX[(v & 0xf) as usize]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// UTC time as Go's `time.RFC3339Nano` (trailing zeros of the fraction trimmed).
pub fn rfc3339_nano(t: std::time::SystemTime) -> String {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::ZERO);
    let secs = d.as_secs() as i64;
    let nanos = d.subsec_nanos();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, dd) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339_nano() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_400_000);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.1234Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 1); // 2000-02-29
        assert_eq!(rfc3339_nano(t), "2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn strings_are_escaped_as_go_does() {
        let mut out = Vec::new();
        escape_json("a\"b\\c\n<&>\u{1}é", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"b\\c\n\u003c\u0026\u003e\u0001é""#
        );
    }

    fn records(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_become_records_and_partial_lines_wait() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let mut log = JsonLog::open(&p, 0, 1).unwrap();
        log.write(Stream::Stdout, b"hello\nwor");
        log.write(Stream::Stderr, b"err\n");
        log.write(Stream::Stdout, b"ld\nend");
        log.flush_partial(Stream::Stdout);
        let r = records(&p);
        let logs: Vec<(&str, &str)> = r
            .iter()
            .map(|v| (v["log"].as_str().unwrap(), v["stream"].as_str().unwrap()))
            .collect();
        assert_eq!(
            logs,
            vec![
                ("hello\n", "stdout"),
                ("err\n", "stderr"),
                ("world\n", "stdout"),
                ("end", "stdout")
            ]
        );
        assert!(r[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn long_lines_are_split_at_16k() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let mut log = JsonLog::open(&p, 0, 1).unwrap();
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.push(b'\n');
        log.write(Stream::Stdout, &data);
        let r = records(&p);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["log"].as_str().unwrap().len(), MAX_LINE);
        assert_eq!(r[1]["log"].as_str().unwrap(), "aaaaaaaaaa\n");
    }

    #[test]
    fn rotation_keeps_at_most_max_file_files_of_max_size() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let mut log = JsonLog::open(&p, 1000, 3).unwrap();
        for i in 0..2000 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["x-json.log", "x-json.log.1", "x-json.log.2"]);
        for n in &names {
            assert!(std::fs::metadata(t.path().join(n)).unwrap().len() <= 1000);
        }
        let last = records(&p);
        assert_eq!(last.last().unwrap()["log"].as_str().unwrap(), "line 1999\n");
        let older = records(&t.path().join("x-json.log.1"));
        let first_cur = last[0]["log"].as_str().unwrap();
        let last_old = older.last().unwrap()["log"].as_str().unwrap();
        let n = |s: &str| -> u32 { s.trim().trim_start_matches("line ").parse().unwrap() };
        assert_eq!(n(last_old) + 1, n(first_cur), "no record lost at rotation");
    }

    #[test]
    fn max_file_one_truncates() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let mut log = JsonLog::open(&p, 500, 1).unwrap();
        for i in 0..100 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
        assert!(std::fs::metadata(&p).unwrap().len() <= 500);
    }
}
