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
    /// Build contexts kept after a tagged build (the most recently used, one per first
    /// tag), so that the next build of that tag writes only the files that changed; 0
    /// keeps none.
    pub build_contexts_kept: usize,
    /// Keep this many bytes free on the state filesystem while loading images and
    /// copying into containers. Unset: [`DEFAULT_MIN_FREE_BYTES`] or a tenth of the
    /// state filesystem, whichever is smaller (see [`DaemonConfig::min_free_bytes_for`]).
    pub min_free_bytes: Option<u64>,
    /// Host paths allowed as bind sources although the bind rules refuse them (berth's
    /// socket, `/etc`, another engine's socket: see `docs/SECURITY-DEFAULTS.md`); a
    /// source at or below one of them is not checked. Empty by default.
    pub allow_bind_sources: Vec<PathBuf>,
    /// Host namespaces containers may share (`pid`, `ipc`, `uts`, `cgroupns`: what
    /// `--pid=host` and the like ask for). Empty by default: such a container is refused
    /// with an error naming this key.
    pub allow_host_namespaces: Vec<String>,
    /// Where images may come from (`[policy]`: `allow`, `require_digest`).
    pub policy: crate::policy::PolicyConfig,
    /// Pull-through mirrors (`[registry_mirrors]`): a registry host (as references name
    /// it, `docker.io`, `registry.example:5000`) to mirror endpoints tried in order
    /// (`["https://mirror.example", "http://127.0.0.1:5001"]`) before the origin.
    pub registry_mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// The init binary `--init` runs as the container's PID 1 (a static binary: it runs
    /// inside any image). Unset: the first of `docker-init` in Docker's places and
    /// Debian's `tini-static`.
    pub init_path: Option<PathBuf>,
    /// Default json-file `max-size` of containers that set none (`10m`, `512k`, bytes;
    /// `0`: never rotate — a disk can then fill).
    pub log_max_size: String,
    /// Default json-file `max-file` of containers that set none (at least 1).
    pub log_max_file: u32,
    /// The default bridge network's interface (`berth0`); `none`: no default network
    /// (containers that name no network get none, as Docker's `--bridge=none`).
    pub bridge: String,
    /// The default bridge's address and prefix (`100.72.0.1/24`); unset: the first free
    /// subnet of `address_pools`.
    pub bip: Option<String>,
    /// Where networks without an explicit subnet take theirs (`[[address_pools]]` with
    /// `base = "100.72.0.0/13"` and `size = 24`, the default: outside the RFC 1918 ranges
    /// corporate networks use).
    pub address_pools: Vec<berth_net::ipam::Pool>,
    /// Set `net.ipv4.ip_forward=1` when bridge networks exist (without it containers
    /// cannot reach beyond the host).
    pub ip_forward: bool,
    /// Upstream DNS servers of the embedded DNS server for containers without `--dns`;
    /// empty: the host's (`/etc/resolv.conf`).
    pub dns: Vec<String>,
    /// The MTU of traffic leaving a bridge network through its gateway (to the host's
    /// other interfaces and beyond), for networks without
    /// `com.docker.network.driver.mtu`: the MTU of the containers' default route. 1500,
    /// as Docker; lower it under a tunnel or VPN uplink.
    pub mtu: u32,
    /// The MTU of the bridge and veth links of networks without
    /// `com.docker.network.driver.mtu`: traffic between containers of a network and
    /// between them and the host itself (published ports reached from the host, the
    /// gateway's DNS) never leaves the host, and uses large frames, as loopback does.
    /// 0: the links use `mtu` (Docker's layout).
    pub link_mtu: u32,
    /// User-namespace remapping of containers (Docker's `userns-remap`): `default` (the
    /// user `dockremap`, created with 65536 ids when missing) or `USER[:GROUP]` (their
    /// first `/etc/subuid` and `/etc/subgid` ranges). Unset: no remapping.
    pub userns_remap: Option<String>,
    /// Serve the published ports the kernel's NAT cannot through the userland proxy
    /// (`berth-proxy`, one process per container that has such ports; Docker's
    /// `userland-proxy`): `-p [::1]:…`, `-p [ADDR]:…` (an IPv6 address) for a container
    /// without IPv6, and for a port on every address the host's IPv6 addresses (`[::]`)
    /// for a container without IPv6, `[::1]` for a dual-stack one. False: those
    /// bindings are refused by name and a port on every address is published on the
    /// host's IPv4 addresses only (dual-stack containers: and IPv6 ones but `::1`).
    pub userland_proxy: bool,
}

/// The most `min_free_bytes` keeps free when unset: 512 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 512 << 20;

/// The default `link_mtu`: large frames within the host (loopback's is 65536; a veth's
/// maximum is 65535).
pub const DEFAULT_LINK_MTU: u32 = 65520;

/// Where `--init` looks for an init binary when `init_path` is unset.
pub const INIT_CANDIDATES: [&str; 4] = [
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
    "/usr/bin/tini-static",
    "/usr/sbin/tini-static",
];

/// Docker's size strings: `10m`, `1g`, `512k`, `100` (bytes), optionally with a `b`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0 && n.is_finite()).then_some((n * mult as f64) as u64)
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
            build_contexts_kept: 8,
            min_free_bytes: None,
            allow_bind_sources: Vec::new(),
            allow_host_namespaces: Vec::new(),
            policy: crate::policy::PolicyConfig::default(),
            registry_mirrors: Default::default(),
            init_path: None,
            log_max_size: "10m".into(),
            log_max_file: 3,
            bridge: "berth0".into(),
            bip: None,
            address_pools: berth_net::ipam::default_pools(),
            ip_forward: true,
            dns: Vec::new(),
            mtu: 1500,
            link_mtu: DEFAULT_LINK_MTU,
            userns_remap: None,
            userland_proxy: true,
        }
    }
}

impl DaemonConfig {
    /// The free space loads keep on a state filesystem of `fs_bytes`: the configured
    /// `min_free_bytes`, or [`DEFAULT_MIN_FREE_BYTES`] capped at a tenth of the
    /// filesystem (a 64 MiB state root cannot keep 512 MiB free).
    pub fn min_free_bytes_for(&self, fs_bytes: u64) -> u64 {
        self.min_free_bytes
            .unwrap_or_else(|| DEFAULT_MIN_FREE_BYTES.min(fs_bytes / 10))
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        if parse_size(&self.log_max_size).is_none() {
            return Err(EngineError::invalid(format!(
                "log_max_size {:?}: not a size (10m, 512k, 1g, bytes)",
                self.log_max_size
            )));
        }
        for n in &self.allow_host_namespaces {
            if !matches!(n.as_str(), "pid" | "ipc" | "uts" | "cgroupns") {
                return Err(EngineError::invalid(format!(
                    "allow_host_namespaces: {n:?} is not one of pid, ipc, uts, cgroupns"
                )));
            }
        }
        if self.log_max_file == 0 {
            return Err(EngineError::invalid("log_max_file must be at least 1"));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains(['/', ' ']) {
            return Err(EngineError::invalid(format!(
                "bridge {:?}: not an interface name (1-15 bytes, no '/' or space), or none",
                self.bridge
            )));
        }
        if let Some(bip) = &self.bip {
            if bip.parse::<ipnet::Ipv4Net>().is_err() {
                return Err(EngineError::invalid(format!(
                    "bip {bip:?}: not an IPv4 address with a prefix length (100.72.0.1/24)"
                )));
            }
        }
        if self.address_pools.is_empty() {
            return Err(EngineError::invalid(
                "address_pools must name at least one pool",
            ));
        }
        for p in &self.address_pools {
            p.validate()
                .map_err(|e| EngineError::invalid(format!("address_pools: {e}")))?;
        }
        if !(68..=65535).contains(&self.mtu) {
            return Err(EngineError::invalid(format!(
                "mtu {}: not between 68 (IPv4's minimum) and 65535",
                self.mtu
            )));
        }
        if self.link_mtu != 0 && !(self.mtu..=65535).contains(&self.link_mtu) {
            return Err(EngineError::invalid(format!(
                "link_mtu {}: 0 (the links use mtu) or between mtu ({}) and 65535",
                self.link_mtu, self.mtu
            )));
        }
        if self.userns_remap.as_deref() == Some("") {
            return Err(EngineError::invalid(
                "userns_remap: expected default, USER or USER:GROUP",
            ));
        }
        for d in &self.dns {
            if d.parse::<std::net::IpAddr>().is_err() {
                return Err(EngineError::invalid(format!(
                    "dns {d:?}: not an IP address"
                )));
            }
        }
        Ok(())
    }

    /// The default json-file rotation: (max-size bytes, max-file).
    pub fn log_defaults(&self) -> (u64, u32) {
        (
            parse_size(&self.log_max_size).unwrap_or(10 << 20),
            self.log_max_file.max(1),
        )
    }

    /// The init binary for `--init`, or an error naming where berth looked.
    pub fn init_binary(&self) -> Result<PathBuf> {
        if let Some(p) = &self.init_path {
            return if p.is_file() {
                Ok(p.clone())
            } else {
                Err(EngineError::invalid(format!(
                    "--init: init_path {} is not a file",
                    p.display()
                )))
            };
        }
        INIT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                EngineError::new(
                    berth_types::ErrorKind::Unavailable,
                    format!(
                        "--init: no init binary found (looked for {}); install Debian's tini package or set init_path in the daemon config",
                        INIT_CANDIDATES.join(", ")
                    ),
                )
            })
    }
    /// Reads a config file; a missing file at the default path gives the defaults.
    pub fn load(path: &Path, required: bool) -> Result<DaemonConfig> {
        match std::fs::read_to_string(path) {
            Ok(s) => {
                let c: DaemonConfig = toml::from_str(&s).map_err(|e| {
                    EngineError::invalid(format!("config file {}: {e}", path.display()))
                })?;
                c.validate().map_err(|e| {
                    EngineError::invalid(format!("config file {}: {}", path.display(), e.message))
                })?;
                Ok(c)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_reserve_scales_with_the_filesystem_unless_set() {
        let mut c = DaemonConfig::default();
        assert_eq!(c.min_free_bytes_for(64 << 20), (64 << 20) / 10);
        assert_eq!(c.min_free_bytes_for(100 << 30), DEFAULT_MIN_FREE_BYTES);
        c.min_free_bytes = Some(0);
        assert_eq!(c.min_free_bytes_for(100 << 30), 0);
        c.min_free_bytes = Some(1 << 30);
        assert_eq!(c.min_free_bytes_for(64 << 20), 1 << 30);
        let parsed: DaemonConfig = toml::from_str("min_free_bytes = 1024").unwrap_or_default();
        assert_eq!(parsed.min_free_bytes, Some(1024));
    }
}
