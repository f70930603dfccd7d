//! The daemon's JSON-lines progress streams (`/images/load`, `/images/create`) shown as
//! the docker CLI shows them: plain lines when stderr is not a terminal, progress bars
//! (indicatif, on stderr) when it is. Results always go to stdout.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Response;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use crate::client::Lines;

/// One line of a Docker JSON-message stream.
#[derive(Debug, Default, Deserialize)]
pub struct JsonMessage {
    #[serde(default)]
    pub stream: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "progressDetail")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    pub error_detail: Option<ErrorDetail>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProgressDetail {
    #[serde(default)]
    pub current: i64,
    #[serde(default)]
    pub total: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
}

/// An error the daemon reported inside a stream; printed as its bare message, as the
/// docker CLI does.
#[derive(Debug)]
pub struct StreamError(pub String);

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamError {}

/// Progress display: bars when enabled, otherwise nothing but plain output.
pub struct Progress {
    multi: Option<MultiProgress>,
    layers: HashMap<String, ProgressBar>,
    transfers: Vec<ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    /// `enabled` when stderr is a terminal and the user did not ask for quiet.
    pub fn new(enabled: bool) -> Progress {
        let multi = enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            multi,
            layers: HashMap::new(),
            transfers: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.multi.is_some()
    }

    /// A bar for bytes moved between us and the daemon (`total` when known).
    pub fn transfer_bar(&mut self, label: &str, total: Option<u64>) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(style(
                "{prefix}: [{bar:40}] {decimal_bytes}/{decimal_total_bytes} ({decimal_bytes_per_sec}, {eta} left)",
            )),
            None => ProgressBar::new_spinner()
                .with_style(style("{prefix}: {spinner} {decimal_bytes} ({decimal_bytes_per_sec})")),
        };
        let bar = multi.add(bar.with_prefix(label.to_string()));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.transfers.push(bar.clone());
        Some(bar)
    }

    /// Prints a result line to stdout, below the bars: they stop where they are first
    /// (results come when the work is done).
    pub fn print_out(&self, text: &str) {
        self.settle();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Stops every bar where it is, leaving it on screen.
    pub fn settle(&self) {
        for bar in self.layers.values().chain(&self.transfers) {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }

    /// Shows one message; an error message becomes the returned error.
    pub fn show(&mut self, jm: &JsonMessage) -> Result<(), StreamError> {
        if let Some(detail) = &jm.error_detail {
            return Err(StreamError(detail.message.clone()));
        }
        if let Some(e) = &jm.error {
            return Err(StreamError(e.clone()));
        }
        let has_progress = jm
            .progress_detail
            .as_ref()
            .is_some_and(|p| p.current > 0 || p.total > 0);
        if let (Some(multi), Some(p)) = (&self.multi, &jm.progress_detail) {
            // An empty progressDetail on a layer with a bar ends it (`Pull complete`).
            if jm.stream.is_empty() && (has_progress || !self.layers.contains_key(&jm.id)) {
                let bar = self.layers.entry(jm.id.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_prefix(if jm.id.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", jm.id)
                    });
                    b
                });
                if p.total > 0 {
                    bar.set_style(style(
                        "{prefix}{msg:<14} [{bar:40}] {decimal_bytes}/{decimal_total_bytes}",
                    ));
                    bar.set_length(p.total as u64);
                } else {
                    bar.set_style(style("{prefix}{msg:<14} {spinner} {decimal_bytes}"));
                }
                bar.set_position(p.current.max(0) as u64);
                bar.set_message(jm.status.clone());
                return Ok(());
            }
        }
        if has_progress {
            // Not a terminal: docker drops progress lines.
            return Ok(());
        }
        if jm.stream.is_empty() && jm.status.is_empty() && jm.id.is_empty() {
            // Only an `aux` payload (push's digest): nothing to show.
            return Ok(());
        }
        if !jm.stream.is_empty() {
            self.print_out(&jm.stream);
            return Ok(());
        }
        if let Some(bar) = self.layers.get(&jm.id) {
            bar.set_message(jm.status.clone());
            bar.abandon();
            return Ok(());
        }
        if jm.id.is_empty() {
            self.print_out(&format!("{}\n", jm.status));
        } else {
            self.print_out(&format!("{}: {}\n", jm.id, jm.status));
        }
        Ok(())
    }

    /// Reads a JSON-message stream to its end showing nothing; an error message in it
    /// becomes the returned error.
    pub async fn drain_stream(&mut self, resp: Response<Incoming>) -> anyhow::Result<()> {
        let mut lines = Lines::new(resp);
        while let Some(line) = lines.next_line().await? {
            if let Ok(jm) = serde_json::from_slice::<JsonMessage>(&line) {
                if let Some(d) = jm.error_detail {
                    return Err(StreamError(d.message).into());
                }
                if let Some(e) = jm.error {
                    return Err(StreamError(e).into());
                }
            }
        }
        Ok(())
    }

    /// Reads a JSON-message stream to its end, showing each message.
    pub async fn show_stream(&mut self, resp: Response<Incoming>) -> anyhow::Result<()> {
        let mut lines = Lines::new(resp);
        let result = async {
            while let Some(line) = lines.next_line().await? {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<JsonMessage>(&line) {
                    Ok(jm) => self.show(&jm)?,
                    // Not JSON: pass it through, as docker does with raw bodies.
                    Err(_) => self.print_out(&format!("{}\n", String::from_utf8_lossy(&line))),
                }
            }
            Ok(())
        }
        .await;
        self.settle();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> JsonMessage {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn errors_become_stream_errors() {
        let mut p = Progress::new(false);
        let e = p
            .show(&msg(
                r#"{"errorDetail":{"message":"bad layer"},"error":"bad layer"}"#,
            ))
            .unwrap_err();
        assert_eq!(e.to_string(), "bad layer");
        let e = p.show(&msg(r#"{"error":"old style"}"#)).unwrap_err();
        assert_eq!(e.to_string(), "old style");
    }

    #[test]
    fn progress_is_skipped_without_terminal() {
        let mut p = Progress::new(false);
        p.show(&msg(
            r#"{"status":"Loading layer","progressDetail":{"current":5,"total":9},"id":"ab"}"#,
        ))
        .unwrap();
        assert!(p.layers.is_empty());
    }
}
