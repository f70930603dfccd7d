//! The audit log: `ROOT/audit.log`, one JSON object per line for every push, tag change
//! and delete, flushed and fsync'd before the request is answered. It never holds a
//! secret: user names, addresses, repositories, references and digests only.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// The audit log's file name in the registry root.
pub const AUDIT_FILE: &str = "audit.log";

/// One audited action.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `manifest.push`, `blob.push`, `blob.mount`, `manifest.delete`, `tag.delete`,
    /// `blob.delete`
    pub action: &'static str,
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// For a tag moved by a manifest push: the digest it pointed at before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    /// For a mount: the source repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    user: &'a str,
    remote: Option<String>,
    #[serde(flatten)]
    event: &'a Event,
}

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) `ROOT/audit.log` for appending.
    pub fn open(root: &Path) -> std::io::Result<AuditLog> {
        let path = root.join(AUDIT_FILE);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and fsyncs it (blocking).
    pub fn record(
        &self,
        user: &str,
        remote: Option<SocketAddr>,
        event: &Event,
    ) -> std::io::Result<()> {
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user,
            remote: remote.map(|r| r.to_string()),
            event,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&bytes)?;
        f.sync_data()
    }
}
