//! Daemon configuration: `/etc/berth/config.toml`, overridden by command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub const DEFAULT_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/config.toml";

/// Every key of the daemon config file. Unknown keys are refused so a typo is noticed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// State root.
    pub root: PathBuf,
    /// Where the API listens (`unix:///path`).
    pub host: String,
    /// Group owning the socket (mode 0660), if any.
    pub socket_group: Option<String>,
    /// Keep setuid/setgid bits and file capabilities when unpacking layers. Off by
    /// default: a loosening an operator must ask for.
    pub preserve_setuid: bool,
    /// Refuse a layer larger than this once uncompressed (bytes).
    pub max_layer_bytes: u64,
    /// Refuse a compressed layer expanding more than this many times (past 1 GiB).
    pub max_compression_ratio: u64,
    /// Keep this many bytes free on the state filesystem while loading.
    pub min_free_bytes: u64,
    /// Where images may come from (`[policy]`: `allow`, `require_digest`).
    pub policy: crate::policy::PolicyConfig,
    /// Pull-through mirrors (`[registry_mirrors]`): a registry host (as references name
    /// it, `docker.io`, `registry.example:5000`) to mirror endpoints tried in order
    /// (`["https://mirror.example", "http://127.0.0.1:5001"]`) before the origin.
    pub registry_mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            root: PathBuf::from(DEFAULT_ROOT),
            host: DEFAULT_HOST.to_string(),
            socket_group: None,
            preserve_setuid: false,
            max_layer_bytes: 64 << 30,
            max_compression_ratio: 1000,
            min_free_bytes: 512 << 20,
            policy: crate::policy::PolicyConfig::default(),
            registry_mirrors: Default::default(),
        }
    }
}

impl DaemonConfig {
    /// Reads a config file; a missing file at the default path gives the defaults.
    pub fn load(path: &Path, required: bool) -> Result<DaemonConfig> {
        match std::fs::read_to_string(path) {
            Ok(s) => toml::from_str(&s)
                .map_err(|e| EngineError::invalid(format!("config file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(DaemonConfig::default())
            }
            Err(e) => Err(EngineError::invalid(format!(
                "config file {}: {e}",
                path.display()
            ))),
        }
    }
}
