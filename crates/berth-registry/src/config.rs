//! The registry's config file (TOML; unknown keys are refused). Command-line flags
//! override it.
//!
//! ```toml
//! root = "/var/lib/berth-registry"
//! addr = "0.0.0.0:5000"
//! delete_enabled = false
//! gc_interval = 3600                  # seconds, 0 = never
//! immutable_tags = ["prod/*"]         # repository patterns whose tags never move
//! anonymous_pull = []                 # repository patterns anyone may pull (default none)
//! insecure_listen_any = false         # non-loopback address without TLS
//!
//! [tls]
//! cert = "/etc/berth-registry/cert.pem"
//! key = "/etc/berth-registry/key.pem"
//!
//! [htpasswd]                          # reuse a Distribution htpasswd file (bcrypt only)
//! file = "/etc/docker-registry/htpasswd"
//! pull = ["*"]
//! push = ["team/*"]
//! delete = []
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub root: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub delete_enabled: Option<bool>,
    pub gc_interval: Option<u64>,
    #[serde(default)]
    pub immutable_tags: Vec<String>,
    #[serde(default)]
    pub anonymous_pull: Vec<String>,
    pub insecure_listen_any: Option<bool>,
    pub tls: Option<TlsFiles>,
    pub htpasswd: Option<HtpasswdConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdConfig {
    pub file: PathBuf,
    #[serde(default)]
    pub pull: Vec<String>,
    #[serde(default)]
    pub push: Vec<String>,
    #[serde(default)]
    pub delete: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("registry config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry config {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_refuses_unknown_ones() {
        let c = FileConfig::parse(
            r#"
root = "/r"
addr = "127.0.0.1:5000"
delete_enabled = true
gc_interval = 60
immutable_tags = ["prod/*"]
anonymous_pull = ["public/*"]
insecure_listen_any = false
[tls]
cert = "c.pem"
key = "k.pem"
[htpasswd]
file = "h"
pull = ["*"]
"#,
        )
        .unwrap();
        assert_eq!(c.immutable_tags, vec!["prod/*"]);
        assert_eq!(c.tls.unwrap().cert, PathBuf::from("c.pem"));
        assert_eq!(c.htpasswd.unwrap().pull, vec!["*"]);
        let err = FileConfig::parse("adress = \"x\"").unwrap_err();
        assert!(err.contains("adress"), "{err}");
        let err = FileConfig::parse("[tls]\ncert = \"a\"\nkey = \"b\"\nca = \"c\"").unwrap_err();
        assert!(err.contains("ca"), "{err}");
    }
}
