//! Networks: Docker's bridge networks, the default one included, over `berth-net`.
//!
//! - A network is a record (`STATE/networks/<id>.json`, durable) and, in the kernel, a
//!   bridge carrying the gateway address, plus the network's part of berth's nftables
//!   table and an embedded DNS server listening on the gateway address.
//! - A container on bridge networks gets a network namespace of its own, prepared by the
//!   engine before each start at `STATE/netns/<id>` (the runtime spec joins it by path)
//!   and torn down after each exit; one veth pair per network. What was set up is
//!   recorded in `containers/<id>/network.json` *before* the kernel objects are made, so
//!   a crash mid-setup is repaired: the next start (or the daemon's) tears down exactly
//!   what the file names, and an interface or namespace no file names is swept.
//! - Addresses are allocated sequentially from the network's subnet (see
//!   `berth_net::ipam`): in use are the addresses of running containers' endpoints, read
//!   back from their `network.json` at daemon start, so no address is handed out twice
//!   across restarts; the cursor is kept in `networks/<id>.cursor`.
//! - Published ports are DNAT rules in the kernel, but for the addresses its NAT cannot
//!   serve (`[::1]`, IPv6 for a container without IPv6), which the userland proxy serves
//!   (`port_proxy.rs`: sockets bound here at start, relayed by the shim's `berth-proxy`).
//!   berth's nftables table is regenerated from this module's state and applied
//!   atomically whenever a network or a published port changes, and at daemon start
//!   (reconcile).
//! - `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` of a container are files of its
//!   directory, bind-mounted, rewritten at each start (Docker's way).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard, PoisonError};

use berth_net::{dns, ipam, link, netns, nft};
use berth_types::ErrorKind;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::containers::{io_err, random_id, write_atomic, write_replace, ContainerRecord};
use crate::error::{EngineError, Result};
use crate::events::EventType;
use crate::{port_proxy, Engine, WeakEngine};
use berth_runtime::shim_protocol::{ProxyPort, PROXY_MAX_PORTS};
use std::os::fd::OwnedFd;

/// Version of `networks/<id>.json`.
pub const NETWORK_RECORD_VERSION: u32 = 1;
/// Version of `containers/<id>/network.json`.
pub const CONTAINER_NET_VERSION: u32 = 1;
pub(crate) const NET_STATE_FILE: &str = "network.json";
/// The default network's name, as Docker calls it.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Prefix of the host ends of berth's veth pairs.
const VETH_PREFIX: &str = "bth";
/// The files of a container's /etc that the engine writes.
pub(crate) const ETC_FILES: [(&str, &str); 3] = [
    ("hosts", "/etc/hosts"),
    ("resolv.conf", "/etc/resolv.conf"),
    ("hostname", "/etc/hostname"),
];

/// Driver options berth honours (Docker's names).
const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// Endpoint driver options berth honours (Docker's names).
const OPT_EP_SYSCTLS: &str = "com.docker.network.endpoint.sysctls";
const OPT_EP_IFNAME: &str = "com.docker.network.endpoint.ifname";

/// A network (`networks/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRecord {
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// `bridge`.
    pub driver: String,
    /// RFC 3339.
    pub created: String,
    /// The bridge interface.
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where dynamic addresses come from (`--ip-range`), else the whole subnet.
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    /// The subnet was given by the user (static addresses are allowed only then, as in
    /// Docker).
    #[serde(default)]
    pub user_subnet: bool,
    /// No route to or from the outside (`--internal`).
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    /// Containers of the network may talk to each other.
    #[serde(default = "yes")]
    pub icc: bool,
    /// Outgoing traffic is masqueraded.
    #[serde(default = "yes")]
    pub masquerade: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The default network (`bridge`): no name resolution between its containers
    /// (Docker's rule), and it cannot be removed.
    #[serde(default)]
    pub default_bridge: bool,
    /// Dual-stack (`--ipv6`): containers get an address of `subnet6` too.
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Services' virtual IPs on this network, by service ID. Kept in the network's
    /// record so that they are reserved before any container takes an address at
    /// daemon start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_vips: BTreeMap<String, ServiceVip>,
}

/// A service's virtual IP on a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceVip {
    /// The service's name (for the rule's comment).
    pub service: String,
    pub vip: Ipv4Addr,
}

fn yes() -> bool {
    true
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// `docker network create`'s request.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    /// `bridge` (the default); other drivers are refused.
    pub driver: Option<String>,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    /// The IPv6 subnet of a dual-stack network (`--ipv6 --subnet fd00:…/64`) and its
    /// gateway (the subnet's first host address when None).
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// How a container joins a network (Docker's EndpointSettings as given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetAttachment {
    pub network_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`.
    #[serde(default)]
    pub ipv4_address: Option<Ipv4Addr>,
    /// `--ip6` (on a dual-stack network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Ipv6Addr>,
    /// `--mac-address` (`aa:bb:cc:dd:ee:ff` once checked); None: derived from the
    /// address, as Docker derives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// `--link-local-ip`: more addresses on the interface (IPv4 with a /16, as Docker).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<IpAddr>,
    /// The endpoint's driver options (`--driver-opt`): `com.docker.network.endpoint.sysctls`
    /// and `com.docker.network.endpoint.ifname`; others are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Links on a user-defined network (`NAME:ALIAS`): DNS aliases of other containers
    /// that only this container resolves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// A legacy link on the default bridge (`--link NAME:ALIAS`): the target's address in
/// /etc/hosts and its ports and environment in the linking container's environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LegacyLink {
    /// The target container's ID.
    pub container: String,
    pub alias: String,
}

/// A host port binding as Docker's PortBindings spell it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortBinding {
    /// Empty: every address of the host.
    #[serde(default)]
    pub host_ip: String,
    /// Empty or `0`: any free port; `8000-8010`: the first free one of the range.
    #[serde(default)]
    pub host_port: String,
}

/// A container's network configuration (in its record).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetConfig {
    /// Docker's NetworkMode as the container has it: `bridge`, `host`, `none` or a
    /// network's name.
    #[serde(default)]
    pub mode: String,
    /// The create named no network mode (or `default`): inspect's `HostConfig.NetworkMode`
    /// says `default`, as Docker's, while `mode` holds what it resolved to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mode_default: bool,
    /// The networks it is connected to, the first one the primary (default route, ports).
    #[serde(default)]
    pub networks: Vec<NetAttachment>,
    /// `"80/tcp"` → bindings.
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: publish every exposed port on a free host port.
    #[serde(default)]
    pub publish_all: bool,
    /// `"80/tcp"`: the image's ExposedPorts and `--expose`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host name:ip`.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub domainname: String,
    /// The deprecated container-wide `Config.MacAddress` as given (inspect shows it);
    /// applied to the primary network's attachment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// Legacy links (`--link`) on the default bridge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LegacyLink>,
}

impl NetConfig {
    /// Whether the container has a network namespace the engine prepares.
    pub fn bridged(&self) -> bool {
        !matches!(self.mode.as_str(), "host" | "none" | "")
    }
}

/// What the network part of a create asks for, by name (resolved at create).
#[derive(Debug, Clone, Default)]
pub struct NetRequest {
    /// NetworkMode: empty/`default`/`bridge`, `host`, `none`, or a network name or id.
    pub mode: String,
    /// EndpointsConfig: network name or id → the endpoint's settings (`network_id`
    /// is filled in when the name is resolved).
    pub endpoints: BTreeMap<String, NetAttachment>,
    /// The deprecated container-wide `Config.MacAddress`: the primary network's.
    pub mac_address: String,
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    pub publish_all: bool,
    pub exposed_ports: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub domainname: String,
    /// HostConfig.Links (`NAME[:ALIAS]`).
    pub links: Vec<String>,
    /// EndpointsConfig's Links, by network name or id.
    pub endpoint_links: BTreeMap<String, Vec<String>>,
}

/// Docker's `ParseLink`: `NAME[:ALIAS]` (ALIAS defaults to NAME); the `/NAME:/SELF/ALIAS`
/// form inspect shows is accepted too. Returns (name, alias).
pub fn parse_link(s: &str) -> Result<(String, String)> {
    if s.is_empty() {
        return Err(EngineError::invalid("empty string specified for links"));
    }
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [name] => Ok((name.to_string(), name.to_string())),
        [name, alias] if name.starts_with('/') => Ok((
            name[1..].to_string(),
            alias.rsplit('/').next().unwrap_or(alias).to_string(),
        )),
        [name, alias] => Ok((name.to_string(), alias.to_string())),
        _ => Err(EngineError::invalid(format!("bad format for links: {s}"))),
    }
}

/// The conflict Docker names for links with a network namespace that is not the
/// container's own.
const HOST_NETWORK_AND_LINKS: &str =
    "conflicting options: host type networking can't be used with links. This would result in undefined behavior";

/// The environment Docker gives a linking container for one link (`links.Link.ToEnv`):
/// `ALIAS_PORT`, `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]` (with `_START`/`_END`
/// for runs of consecutive ports), `ALIAS_NAME=/self/alias`, `ALIAS_ENV_<VAR>` of the
/// target's Config.Env (but HOME and PATH).
pub(crate) fn link_env(
    name: &str,
    ip: Ipv4Addr,
    target_env: &[String],
    ports: &[String],
) -> Vec<String> {
    let alias = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .to_uppercase()
        .replace('-', "_");
    let mut ports: Vec<(u16, String)> = ports
        .iter()
        .filter_map(|p| parse_port_key(p).ok())
        .collect();
    ports.sort_by(|a, b| (a.0, a.1 != "tcp", &a.1).cmp(&(b.0, b.1 != "tcp", &b.1)));
    ports.dedup();
    let mut env = Vec::new();
    if let Some((p, proto)) = ports.first() {
        env.push(format!("{alias}_PORT={proto}://{ip}:{p}"));
    }
    let mut i = 0;
    while i < ports.len() {
        // Docker's nextContiguous: the last index of the run from ports[i], counting
        // one number per entry; a run is written only past two entries (`j > i+1`).
        let start = u32::from(ports[i].0) as usize;
        let j = ports
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(k, p)| usize::from(p.0) > start + (k - i))
            .map_or(ports.len() - 1, |(k, _)| k - 1);
        if j > i + 1 {
            let (p, proto) = &ports[i];
            let (q, qproto) = &ports[j];
            let up = proto.to_uppercase();
            env.push(format!("{alias}_PORT_{p}_{up}_START={proto}://{ip}:{p}"));
            env.push(format!("{alias}_PORT_{p}_{up}_ADDR={ip}"));
            env.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
            env.push(format!("{alias}_PORT_{p}_{up}_PORT_START={p}"));
            env.push(format!(
                "{alias}_PORT_{p}_{}_END={qproto}://{ip}:{q}",
                qproto.to_uppercase()
            ));
            env.push(format!(
                "{alias}_PORT_{p}_{}_PORT_END={q}",
                qproto.to_uppercase()
            ));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    for (p, proto) in &ports {
        let up = proto.to_uppercase();
        env.push(format!("{alias}_PORT_{p}_{up}={proto}://{ip}:{p}"));
        env.push(format!("{alias}_PORT_{p}_{up}_ADDR={ip}"));
        env.push(format!("{alias}_PORT_{p}_{up}_PORT={p}"));
        env.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
    }
    env.push(format!("{alias}_NAME={name}"));
    for e in target_env {
        let Some((k, v)) = e.split_once('=') else {
            continue;
        };
        if k == "HOME" || k == "PATH" {
            continue;
        }
        env.push(format!("{alias}_ENV_{k}={v}"));
    }
    env
}

/// One network interface of a running container (`network.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    pub endpoint_id: String,
    /// Inside the container: `eth0`, `eth1`, ...
    pub ifname: String,
    /// The veth's host end.
    pub host_ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// On a dual-stack network: the IPv6 address, its prefix length and the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prefix_len6: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    pub mac: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The names other containers resolve it by on this network.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// `--link-local-ip` addresses on the interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<IpAddr>,
    /// Per-interface sysctls (`com.docker.network.endpoint.sysctls`), keys as paths
    /// under /proc/sys with the interface's name in place of `IFNAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<(String, String)>,
    /// Its links on this network: alias → the name it stands for (only this container
    /// resolves them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
}

/// A published port of a running container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPort {
    /// `tcp` or `udp`.
    pub proto: String,
    pub container_port: u16,
    /// `0.0.0.0`: every address of the host (IPv6 ones too, for a container on a
    /// dual-stack network); an IPv6 address: that one only.
    pub host_ip: IpAddr,
    pub host_port: u16,
    /// Served by the userland proxy (`port_proxy.rs`: `[::1]`, an IPv6 address for a
    /// container without IPv6), not by nftables.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy: bool,
}

/// The network state of a running container (`containers/<id>/network.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerNet {
    pub version: u32,
    pub netns: PathBuf,
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
}

/// A network as the API shows it: its record and the containers on it.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    pub record: NetworkRecord,
    /// Container id → (container name, endpoint).
    pub containers: BTreeMap<String, (String, Endpoint)>,
}

/// The userland proxy's sockets bound for a container's published ports.
type ProxySockets = Vec<(PublishedPort, OwnedFd)>;

/// A port to publish.
struct WantedPort {
    proto: String,
    cport: u16,
    /// The host address ([`ALL_ADDRESSES`]: every one).
    ip: IpAddr,
    /// Host port range (None: the ephemeral range).
    range: Option<(u16, u16)>,
    /// Served by the userland proxy.
    proxy: bool,
    /// With every address: the IPv6 address the proxy serves as well, on the same port
    /// (`::` for an IPv4-only container, `::1` for a dual-stack one).
    companion: Option<IpAddr>,
}

/// What trying one host port for a [`WantedPort`] found.
enum Claim {
    /// Free: the proxy's socket if it serves the port, and the companion's.
    Got(Option<OwnedFd>, Option<(IpAddr, OwnedFd)>),
    /// Published by another container.
    Allocated,
    /// A host process holds it.
    HostBusy,
    /// A host process holds the companion's address.
    CompanionBusy(IpAddr),
}

/// Tries host port `port` for `w`: against berth's published ports (`taken`), then
/// against host processes by binding (a probe closed at once, or the proxy's socket,
/// kept). A companion address that cannot be bound for another reason than being in use
/// (IPv6 turned off) is left out.
fn claim(taken: &[PublishedPort], w: &WantedPort, port: u16) -> Result<Claim> {
    let clash = |ip: IpAddr| {
        taken.iter().any(|t| {
            t.proto == w.proto
                && t.host_port == port
                && (t.host_ip == ip || t.host_ip.is_unspecified() || ip.is_unspecified())
        })
    };
    if clash(w.ip) || w.companion.is_some_and(clash) {
        return Ok(Claim::Allocated);
    }
    let socket = if w.proxy {
        match port_proxy::bind(&w.proto, w.ip, port) {
            Ok(fd) => Some(fd),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(Claim::HostBusy),
            Err(e) => return Err(port_proxy::bind_error(&w.proto, w.ip, port, &e)),
        }
    } else {
        match host_port_free(&w.proto, w.ip, port) {
            Ok(true) => None,
            Ok(false) => return Ok(Claim::HostBusy),
            Err(e) => {
                return Err(EngineError::invalid(format!(
                    "Bind for {}:{port}/{} failed: {e}",
                    w.ip, w.proto
                )))
            }
        }
    };
    let also = match w.companion {
        Some(ip) => match port_proxy::bind(&w.proto, ip, port) {
            Ok(fd) => Some((ip, fd)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Ok(Claim::CompanionBusy(ip))
            }
            Err(e) => {
                tracing::debug!(address = %ip, port, error = %e, "no userland proxy on this address");
                None
            }
        },
        None => None,
    };
    Ok(Claim::Got(socket, also))
}

/// Every address of the host, as a published port records it.
const ALL_ADDRESSES: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// In-memory networking state (behind the engine's `net` mutex).
#[derive(Default)]
pub(crate) struct NetState {
    networks: BTreeMap<String, NetRuntime>,
    /// Running containers' network state, by container id.
    live: BTreeMap<String, LiveNet>,
    /// Services' published ports with their ready tasks, by service id (the services'
    /// reconcile loop sets them).
    services: BTreeMap<String, Vec<nft::ServicePortRule>>,
    /// Services' names on their networks with their ready tasks, by service id (the
    /// services' reconcile loop sets them; the embedded DNS server answers them).
    service_dns: BTreeMap<String, ServiceDns>,
    /// The virtual IPs' backends in the table, by service id (applied again only when
    /// they change).
    vips_applied: BTreeMap<String, Vec<(Ipv4Addr, Vec<Ipv4Addr>)>>,
    /// The userland proxy's sockets bound by a start, by container id, until the shim
    /// takes them (`port_proxy.rs`); dropped (closed) by a teardown.
    proxy_sockets: BTreeMap<String, Vec<(ProxyPort, OwnedFd)>>,
    /// Exited containers whose interfaces and namespace the teardown thread has yet to
    /// delete (see [`Engine::network_teardown_deferred`]); their addresses stay taken
    /// until it has.
    deferred: BTreeSet<String>,
    /// The teardown thread's queue (started with the first deferred teardown): the
    /// container, its network state, and whether its conntrack flush can wait
    /// ([`NetState::flush_can_wait`]).
    teardown_queue: Option<std::sync::mpsc::Sender<(String, ContainerNet, bool)>>,
    /// Addresses given back whose conntrack entries were not deleted yet
    /// ([`NetState::flush_can_wait`]): deleted all at once before one of them is handed
    /// out again ([`NetState::flush_before_reuse`]).
    unflushed: BTreeSet<Ipv4Addr>,
    /// Set at the daemon's start: the last daemon may have left such addresses. The
    /// first address handed out flushes the default bridge's subnet (every entry of an
    /// address no running container has) instead.
    unflushed_unknown: bool,
    /// Set once the daemon is about to exit ([`Engine::close_network_teardowns`]): a
    /// teardown asked for after that does nothing (not half of it): the next daemon's
    /// start tears down what its records say.
    closed: bool,
}

/// A service as the embedded DNS server knows it: on each of its networks, its name,
/// `tasks.NAME` and its network aliases resolve to the addresses of its ready tasks
/// (running, and healthy where they have a health check) and to nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceDns {
    /// The networks' IDs.
    pub networks: Vec<String>,
    /// Lowercase.
    pub names: Vec<String>,
    /// The ready tasks' container IDs.
    pub ready: Vec<String>,
}

impl NetState {
    /// Whether an exited container's conntrack entries can wait until its address is
    /// handed out again: on the default bridge without published ports, nothing
    /// translates to its address (no port, no service address, no alias network), so
    /// its entries are only its own flows, and they matter only to the next holder of
    /// the address (a reply stream kept alive from outside would reach it). The walk of
    /// the table they cost (~11 ms of kernel time with 262144 buckets, even nearly
    /// empty) is then paid once per reuse instead of at every exit: with addresses
    /// handed out round-robin, rarely.
    fn flush_can_wait(&self, net: &ContainerNet) -> bool {
        net.ports.is_empty()
            && net.endpoints.iter().all(|e| {
                self.networks
                    .get(&e.network_id)
                    .is_some_and(|n| n.rec.default_bridge)
            })
    }

    /// Before `ip` is handed out: the conntrack entries of the addresses whose flush
    /// waited go, if `ip` is one of them (all of them in one walk of the table).
    fn flush_before_reuse(&mut self, ip: Ipv4Addr) {
        if std::mem::take(&mut self.unflushed_unknown) {
            self.unflushed.clear();
            let Some(n) = self.networks.values().find(|n| n.rec.default_bridge) else {
                return;
            };
            let mut keep: Vec<Ipv4Addr> = self
                .live
                .values()
                .flat_map(|l| l.net.endpoints.iter().map(|e| e.ip))
                .collect();
            keep.push(n.rec.gateway);
            let subnet = n.rec.subnet;
            match berth_net::conntrack::flush_in_subnet(
                subnet.network(),
                subnet.prefix_len(),
                &keep,
            ) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(%subnet, entries = n, "conntrack entries of exited containers deleted")
                }
                Err(e) => {
                    warn!(%subnet, error = %e, "conntrack entries of exited containers not deleted")
                }
            }
            return;
        }
        if !self.unflushed.contains(&ip) {
            return;
        }
        let ips: Vec<Ipv4Addr> = std::mem::take(&mut self.unflushed).into_iter().collect();
        match berth_net::conntrack::flush_addresses(&ips) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                entries = n,
                "conntrack entries of exited containers deleted"
            ),
            Err(e) => warn!(error = %e, "conntrack entries of exited containers not deleted"),
        }
    }

    /// Returns endpoints' addresses to their networks' free sets.
    fn release<'a>(&mut self, endpoints: impl IntoIterator<Item = &'a Endpoint>) {
        for ep in endpoints {
            if let Some(n) = self.networks.get_mut(&ep.network_id) {
                n.alloc.release(ep.ip);
                if let (Some(a6), Some(ip6)) = (n.alloc6.as_mut(), ep.ip6) {
                    a6.release(ip6);
                }
            }
        }
    }
}

struct NetRuntime {
    rec: NetworkRecord,
    alloc: ipam::Allocator,
    /// A dual-stack network's IPv6 addresses.
    alloc6: Option<ipam::Allocator6>,
    dns: Option<dns::DnsServer>,
}

struct LiveNet {
    name: String,
    net: ContainerNet,
    /// Where its DNS queries for other names go.
    upstreams: Vec<SocketAddr>,
}

/// IDs of the two networks that have no record: Docker lists `host` and `none` too.
/// Stable: the hex of `<name>-berth-predefined-network`, padded with zeros to 64 digits
/// (the name comes first, so their short IDs differ).
fn predefined_id(name: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for b in format!("{name}-berth-predefined-network").bytes() {
        let _ = write!(s, "{b:02x}");
    }
    s.truncate(64);
    while s.len() < 64 {
        s.push('0');
    }
    s
}

fn net_err(e: berth_net::Error) -> EngineError {
    EngineError::new(e.kind, e.to_string())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Network names as Docker (20.10+) takes them: anything but blank; berth also refuses
/// `/` (the API could not name such a network in a path) and control characters, and
/// more than 255 bytes.
fn valid_network_name(n: &str) -> bool {
    !n.trim().is_empty() && n.len() <= 255 && !n.contains('/') && !n.chars().any(char::is_control)
}

/// A host interface name for the veth of a container on a network: `bth` and 12 hex
/// digits of a hash of both IDs (15 bytes, the kernel's limit).
fn veth_name(container_id: &str, network_id: &str) -> String {
    // FNV-1a, 64 bit: stable across versions (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(network_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{VETH_PREFIX}{:012x}", h & 0xffff_ffff_ffff)
}

/// Parses `80`, `80/tcp`, `53/udp` (Docker's port keys).
pub fn parse_port_key(key: &str) -> Result<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp") {
        return Err(EngineError::invalid(format!(
            "port {key}: protocol {proto} is not supported (tcp or udp)"
        )));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => Err(EngineError::invalid(format!(
            "port {key}: not a port number (1-65535)"
        ))),
    }
}

/// The host's ephemeral port range (`net.ipv4.ip_local_port_range`), where `-P` takes
/// its ports, as Docker does.
fn ephemeral_range() -> (u16, u16) {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(a, b)| a <= b && *a > 0)
        .unwrap_or((32768, 60999))
}

/// Whether a host process holds `ip:port` (tried by binding, then closing at once: berth
/// itself never listens on a published port).
fn host_port_free(proto: &str, ip: IpAddr, port: u16) -> std::io::Result<bool> {
    let addr = SocketAddr::from((ip, port));
    let r = if proto == "udp" {
        std::net::UdpSocket::bind(addr).map(drop)
    } else {
        std::net::TcpListener::bind(addr).map(drop)
    };
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(false),
        Err(e) => Err(e),
    }
}

impl Engine {
    fn networks_dir(&self) -> PathBuf {
        self.store().root().join("networks")
    }

    pub(crate) fn netns_path(&self, container_id: &str) -> PathBuf {
        self.store().root().join("netns").join(container_id)
    }

    fn net_state(&self) -> MutexGuard<'_, NetState> {
        self.inner
            .net
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read_network_records(&self) -> Vec<NetworkRecord> {
        let dir = self.networks_dir();
        let Ok(rd) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match fs::read(&p).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<NetworkRecord>(&b).map_err(|e| e.to_string())
            }) {
                Ok(r) if r.version <= NETWORK_RECORD_VERSION => out.push(r),
                Ok(r) => {
                    warn!(path = %p.display(), version = r.version, "network record of a newer berth: skipped")
                }
                Err(e) => {
                    warn!(path = %p.display(), error = %e, "unreadable network record: skipped")
                }
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        out
    }

    fn write_network_record(&self, rec: &NetworkRecord) -> Result<()> {
        let dir = self.networks_dir();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create", e))?;
        let bytes = serde_json::to_vec_pretty(rec)
            .map_err(|e| EngineError::internal(format!("network {}: record: {e}", rec.name)))?;
        write_atomic(&dir, &format!("{}.json", rec.id), &bytes)
    }

    fn save_cursor(&self, id: &str, cursor: Option<Ipv4Addr>) {
        if let Some(c) = cursor {
            let _ = write_replace(
                &self.networks_dir(),
                &format!("{id}.cursor"),
                c.to_string().as_bytes(),
            );
        }
    }

    fn load_cursor(&self, id: &str) -> Option<Ipv4Addr> {
        fs::read_to_string(self.networks_dir().join(format!("{id}.cursor")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The IPv6 cursor of a dual-stack network (`ID.cursor6`).
    fn save_cursor6(&self, id: &str, cursor: Option<Ipv6Addr>) {
        if let Some(c) = cursor {
            let _ = write_replace(
                &self.networks_dir(),
                &format!("{id}.cursor6"),
                c.to_string().as_bytes(),
            );
        }
    }

    fn load_cursor6(&self, id: &str) -> Option<Ipv6Addr> {
        fs::read_to_string(self.networks_dir().join(format!("{id}.cursor6")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Turns IPv6 forwarding on for dual-stack networks, warning about the interfaces
    /// that stop taking router advertisements with it.
    fn enable_ipv6_forward(&self) {
        match nft::enable_ipv6_forward() {
            Ok(Some(ra1)) if ra1.is_empty() => info!("net.ipv6.conf.all.forwarding set to 1 (dual-stack networks reach the outside through the host)"),
            Ok(Some(ra1)) => warn!(interfaces = %ra1.join(","), "net.ipv6.conf.all.forwarding set to 1 for dual-stack networks: these interfaces had accept_ra=1 and no longer take router advertisements (set net.ipv6.conf.IFACE.accept_ra=2 to keep them)"),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot enable IPv6 forwarding: dual-stack containers cannot reach the outside over IPv6"),
        }
    }

    /// The host's routes and berth's own subnets: what a new subnet must not overlap.
    fn taken_subnets(&self, st: &NetState) -> Vec<Ipv4Net> {
        let mut taken: Vec<Ipv4Net> = st.networks.values().map(|n| n.rec.subnet).collect();
        match ipam::host_routes() {
            Ok(r) => taken.extend(r.into_iter().map(|(_, net)| net)),
            Err(e) => warn!(error = %e, "cannot read the host's routes"),
        }
        taken
    }

    /// Brings a network to life in the kernel: its bridge (created if missing, e.g.
    /// after a host reboot) and its DNS server.
    fn activate_network(&self, rec: &NetworkRecord) -> Result<NetRuntime> {
        let gw = Ipv4Net::new(rec.gateway, rec.subnet.prefix_len())
            .map_err(|e| EngineError::internal(format!("network {}: {e}", rec.name)))?;
        let gw6 = match (rec.subnet6, rec.gateway6) {
            (Some(s6), Some(g6)) => Some(
                Ipv6Net::new(g6, s6.prefix_len())
                    .map_err(|e| EngineError::internal(format!("network {}: {e}", rec.name)))?,
            ),
            _ => None,
        };
        link::ensure_bridge(&rec.bridge, gw, gw6, rec.mtu).map_err(net_err)?;
        let mut alloc =
            ipam::Allocator::new(rec.subnet, rec.ip_range, rec.gateway).map_err(net_err)?;
        alloc.set_cursor(self.load_cursor(&rec.id));
        for (sid, v) in &rec.service_vips {
            if let Err(e) = alloc.reserve(v.vip) {
                warn!(network = %rec.name, service.id = %sid, vip = %v.vip, error = %e, "a service's virtual IP is not reserved");
            }
        }
        let alloc6 = match (rec.subnet6, rec.gateway6) {
            (Some(s6), Some(g6)) => {
                let mut a = ipam::Allocator6::new(s6, g6).map_err(net_err)?;
                a.set_cursor(self.load_cursor6(&rec.id));
                Some(a)
            }
            _ => None,
        };
        let resolver: Arc<dyn dns::Resolver> = Arc::new(NetResolver {
            engine: self.downgrade(),
            network_id: rec.id.clone(),
        });
        let dns = match dns::DnsServer::start(SocketAddr::from((rec.gateway, 53)), resolver) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(network = %rec.name, error = %e, "embedded DNS server not started: containers of this network cannot resolve names");
                None
            }
        };
        Ok(NetRuntime {
            rec: rec.clone(),
            alloc,
            alloc6,
            dns,
        })
    }

    /// At open: loads the networks (creating the default one), brings their bridges up,
    /// takes back the running containers' addresses and ports, tears down what stopped
    /// containers left (their exit while the daemon was away, a crash mid-setup), sweeps
    /// interfaces and namespaces nothing names, and applies berth's nftables table.
    pub(crate) fn open_networks(&self, running: &BTreeSet<String>) {
        let mut st = self.net_state();
        // The last daemon may have left addresses whose conntrack flush waited.
        st.unflushed_unknown = true;
        let mut records = self.read_network_records();
        let want_default = self.config().bridge != "none";
        if want_default && !records.iter().any(|r| r.default_bridge) {
            match self.new_default_network(&st) {
                Ok(r) => records.insert(0, r),
                Err(e) => warn!(error = %e, "default bridge network not created"),
            }
        }
        if self.config().ip_forward && !records.is_empty() {
            match nft::enable_ip_forward() {
                Ok(true) => info!("net.ipv4.ip_forward set to 1 (containers on bridge networks reach the outside through the host)"),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot enable IPv4 forwarding"),
            }
        }
        if self.config().ip_forward && records.iter().any(|r| r.subnet6.is_some()) {
            self.enable_ipv6_forward();
        }
        for rec in records {
            if rec.default_bridge && !want_default {
                continue;
            }
            match self.activate_network(&rec) {
                Ok(rt) => {
                    st.networks.insert(rec.id.clone(), rt);
                }
                Err(e) => warn!(network = %rec.name, error = %e, "network not brought up"),
            }
        }
        // Running containers keep their endpoints; the others' are torn down.
        let mut claimed: BTreeSet<String> = BTreeSet::new();
        for rec in self.container_records().unwrap_or_default() {
            if running.contains(&rec.id) {
                // A running container's veths are its own even if its network.json
                // cannot be read: never swept.
                for a in &rec.net.networks {
                    claimed.insert(veth_name(&rec.id, &a.network_id));
                }
            }
            let Some(net) = self.read_container_net(&rec.id) else {
                continue;
            };
            if running.contains(&rec.id) {
                for ep in &net.endpoints {
                    claimed.insert(ep.host_ifname.clone());
                    if let Some(n) = st.networks.get_mut(&ep.network_id) {
                        if let Err(e) = n.alloc.reserve(ep.ip) {
                            warn!(container.id = %rec.id, error = %e, "address of a running container");
                        }
                        if let (Some(a6), Some(ip6)) = (n.alloc6.as_mut(), ep.ip6) {
                            if let Err(e) = a6.reserve(ip6) {
                                warn!(container.id = %rec.id, error = %e, "IPv6 address of a running container");
                            }
                        }
                    }
                }
                let upstreams = self.upstreams_for(&rec);
                st.live.insert(
                    rec.id.clone(),
                    LiveNet {
                        name: rec.name.clone(),
                        net,
                        upstreams,
                    },
                );
            } else {
                info!(container.id = %rec.id, "tearing down the network of a container that is not running");
                teardown_kernel(&net);
                let _ = fs::remove_file(self.container_dir(&rec.id).join(NET_STATE_FILE));
            }
        }
        // Then namespaces of containers that do not run and interfaces no running
        // container claims: leftovers of state removed since (a crash mid-setup is
        // covered by the teardown above: network.json is written before either exists).
        if let Ok(rd) = fs::read_dir(self.store().root().join("netns")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                if !running.contains(&id) {
                    let path = e.path();
                    if let Err(err) = netns::remove(&path) {
                        warn!(path = %path.display(), error = %err, "stale network namespace not removed");
                    }
                }
            }
        }
        match link::links_with_prefix(VETH_PREFIX) {
            Ok(links) => {
                for l in links.into_iter().filter(|l| !claimed.contains(l)) {
                    info!(interface = %l, "removing a veth no container claims");
                    let _ = link::remove_veth(&l);
                }
            }
            Err(e) => warn!(error = %e, "cannot list interfaces"),
        }
        if let Err(e) = self.apply_rules(&st) {
            warn!(error = %e, "berth's nftables rules not applied");
        }
    }

    fn new_default_network(&self, st: &NetState) -> Result<NetworkRecord> {
        let cfg = self.config();
        let (subnet, gateway) = match &cfg.bip {
            Some(bip) => {
                let n: Ipv4Net = bip.parse().map_err(|_| {
                    EngineError::invalid(format!(
                        "bip {bip:?}: not an address with a prefix length (100.72.0.1/24)"
                    ))
                })?;
                (n.trunc(), n.addr())
            }
            None => {
                // A bridge of that name left by an earlier state root keeps its subnet.
                let existing = ipam::host_routes()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(dev, _)| *dev == cfg.bridge)
                    .map(|(_, net)| net)
                    .find(|n| {
                        !st.networks
                            .values()
                            .any(|o| ipam::overlaps(&o.rec.subnet, n))
                    });
                let s = match existing {
                    Some(s) => s,
                    None => ipam::choose_subnet(&cfg.address_pools, &self.taken_subnets(st))
                        .map_err(net_err)?,
                };
                (s, ipam::default_gateway(&s).map_err(net_err)?)
            }
        };
        let rec = NetworkRecord {
            service_vips: BTreeMap::new(),
            version: NETWORK_RECORD_VERSION,
            id: random_id()?,
            name: DEFAULT_NETWORK.into(),
            driver: "bridge".into(),
            created: now_rfc3339(),
            bridge: cfg.bridge.clone(),
            subnet,
            gateway,
            ip_range: None,
            user_subnet: cfg.bip.is_some(),
            internal: false,
            attachable: false,
            icc: true,
            masquerade: true,
            mtu: None,
            labels: BTreeMap::new(),
            options: BTreeMap::from([
                (OPT_BRIDGE_NAME.to_string(), cfg.bridge.clone()),
                (OPT_ICC.to_string(), "true".to_string()),
                (OPT_MASQUERADE.to_string(), "true".to_string()),
            ]),
            default_bridge: true,
            enable_ipv6: false,
            subnet6: None,
            gateway6: None,
        };
        self.write_network_record(&rec)?;
        info!(network.id = %rec.id, subnet = %subnet, bridge = %rec.bridge, "default bridge network created");
        Ok(rec)
    }

    /// Regenerates berth's nftables table from the state and applies it (removes it when
    /// there is no network).
    fn apply_rules(&self, st: &NetState) -> Result<()> {
        let mut rules = nft::Ruleset {
            ip6: link::ipv6_available(),
            ..nft::Ruleset::default()
        };
        for n in st.networks.values() {
            rules.bridges.push(nft::BridgeRules {
                bridge: n.rec.bridge.clone(),
                subnet: n.rec.subnet,
                masquerade: n.rec.masquerade && !n.rec.internal,
                internal: n.rec.internal,
                icc: n.rec.icc,
                subnet6: n.rec.subnet6,
            });
        }
        for live in st.live.values() {
            let Some(ep) = live.net.endpoints.first() else {
                continue;
            };
            let Some(n) = st.networks.get(&ep.network_id) else {
                continue;
            };
            for p in live.net.ports.iter().filter(|p| !p.proxy) {
                rules.ports.push(nft::PortRule {
                    proto: if p.proto == "udp" {
                        nft::Proto::Udp
                    } else {
                        nft::Proto::Tcp
                    },
                    host_ip: match p.host_ip {
                        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
                        _ => None,
                    },
                    host_port: p.host_port,
                    container_ip: ep.ip,
                    container_port: p.container_port,
                    bridge: n.rec.bridge.clone(),
                    host_ip6: match p.host_ip {
                        IpAddr::V6(v6) => Some(v6),
                        IpAddr::V4(_) => None,
                    },
                    // On every address: the host's IPv6 ones too, for a dual-stack
                    // container; on an IPv6 address: that one.
                    container_ip6: ep
                        .ip6
                        .filter(|_| p.host_ip.is_unspecified() || p.host_ip.is_ipv6()),
                });
            }
        }
        rules.services = st.services.values().flatten().cloned().collect();
        // Virtual IPs: each goes to the service's ready tasks on that network.
        for n in st.networks.values() {
            for (sid, v) in &n.rec.service_vips {
                let backends = vip_backends(st, sid, &n.rec.id);
                rules.vips.push(nft::ServiceVipRule {
                    service: v.service.clone(),
                    bridge: n.rec.bridge.clone(),
                    vip: v.vip,
                    backends,
                });
            }
        }
        // No network at all (`bridge = "none"` and no user network): no table either.
        if rules.bridges.is_empty() && rules.ports.is_empty() {
            return nft::remove().map_err(net_err);
        }
        nft::apply(&rules).map_err(net_err)
    }

    /// Sets a service's published ports and the tasks they go to (`rules` empty: the
    /// service publishes nothing, or is gone) and applies the table when that changed.
    /// The change is atomic: a connection arriving meanwhile sees the old or the new map.
    pub(crate) fn set_service_ports(
        &self,
        service_id: &str,
        rules: Vec<nft::ServicePortRule>,
    ) -> Result<()> {
        let mut st = self.net_state();
        let old = st.services.get(service_id).cloned().unwrap_or_default();
        if old == rules {
            return Ok(());
        }
        if rules.is_empty() {
            st.services.remove(service_id);
        } else {
            st.services.insert(service_id.to_string(), rules);
        }
        if let Err(e) = self.apply_rules(&st) {
            if old.is_empty() {
                st.services.remove(service_id);
            } else {
                st.services.insert(service_id.to_string(), old);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Sets what a service's names resolve to; `None` forgets the service. `networks`
    /// are names or IDs as the spec gives them (those that do not exist are left out).
    pub(crate) fn set_service_dns(
        &self,
        service_id: &str,
        dns: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    ) {
        let mut st = self.net_state();
        let Some((networks, names, ready)) = dns else {
            st.service_dns.remove(service_id);
            return;
        };
        let networks = networks
            .iter()
            .filter_map(|n| Self::find_network(&st, n).map(|r| r.id.clone()))
            .collect();
        let names = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        st.service_dns.insert(
            service_id.to_string(),
            ServiceDns {
                networks,
                names,
                ready,
            },
        );
    }

    /// Gives a service a virtual IP on each of `networks` (names or IDs; none: it has
    /// none, as with `endpoint_mode: dnsrr` or once it is gone) and points them at its
    /// ready tasks (as [`Engine::set_service_dns`] last set them). A new one is the
    /// highest free address of the network, kept in the network's record and held by
    /// the host on the bridge; one no longer wanted is released. Returns the service's
    /// virtual IPs by network ID, with the subnet's prefix length.
    pub(crate) fn set_service_vips(
        &self,
        service_id: &str,
        service_name: &str,
        networks: &[String],
    ) -> Result<BTreeMap<String, Ipv4Net>> {
        let mut st = self.net_state();
        let wanted: BTreeSet<String> = networks
            .iter()
            .filter_map(|n| Self::find_network(&st, n))
            .filter(|r| !r.default_bridge)
            .map(|r| r.id.clone())
            .collect();
        let mut out = BTreeMap::new();
        let mut changed = false;
        let ids: Vec<String> = st.networks.keys().cloned().collect();
        for nid in ids {
            let Some(n) = st.networks.get_mut(&nid) else {
                continue;
            };
            let has = n.rec.service_vips.get(service_id).cloned();
            match (wanted.contains(&nid), has) {
                (true, Some(v)) => {
                    // The host holds it (again after a reboot).
                    link::add_host_address(&n.rec.bridge, v.vip).map_err(net_err)?;
                    if let Ok(net) = Ipv4Net::new(v.vip, n.rec.subnet.prefix_len()) {
                        out.insert(nid.clone(), net);
                    }
                }
                (true, None) => {
                    let vip = n.alloc.allocate_from_top().map_err(net_err)?;
                    let mut rec = n.rec.clone();
                    rec.service_vips.insert(
                        service_id.to_string(),
                        ServiceVip {
                            service: service_name.to_string(),
                            vip,
                        },
                    );
                    let done = self
                        .write_network_record(&rec)
                        .and_then(|()| link::add_host_address(&rec.bridge, vip).map_err(net_err));
                    if let Err(e) = done {
                        n.alloc.release(vip);
                        return Err(e);
                    }
                    info!(network = %rec.name, service = service_name, %vip, "service virtual IP allocated");
                    if let Ok(net) = Ipv4Net::new(vip, rec.subnet.prefix_len()) {
                        out.insert(nid.clone(), net);
                    }
                    n.rec = rec;
                    changed = true;
                }
                (false, Some(v)) => {
                    let mut rec = n.rec.clone();
                    rec.service_vips.remove(service_id);
                    self.write_network_record(&rec)?;
                    link::remove_host_address(&rec.bridge, v.vip).map_err(net_err)?;
                    n.alloc.release(v.vip);
                    info!(network = %rec.name, service.id = service_id, vip = %v.vip, "service virtual IP released");
                    n.rec = rec;
                    changed = true;
                }
                (false, None) => {}
            }
        }
        // The backends follow the ready tasks: the table is applied when anything about
        // this service's virtual IPs differs from what it holds.
        let rules_now = self.vip_rules_of(&st, service_id);
        let rules_applied = st.vips_applied.get(service_id).cloned().unwrap_or_default();
        if changed || rules_now != rules_applied {
            self.apply_rules(&st)?;
            if rules_now.is_empty() {
                st.vips_applied.remove(service_id);
            } else {
                st.vips_applied.insert(service_id.to_string(), rules_now);
            }
        }
        Ok(out)
    }

    /// A service's virtual IPs with their backends, as the table would hold them.
    fn vip_rules_of(&self, st: &NetState, service_id: &str) -> Vec<(Ipv4Addr, Vec<Ipv4Addr>)> {
        let mut out = Vec::new();
        for n in st.networks.values() {
            let Some(v) = n.rec.service_vips.get(service_id) else {
                continue;
            };
            let backends = vip_backends(st, service_id, &n.rec.id);
            out.push((v.vip, backends));
        }
        out
    }

    /// A service's virtual IPs: (network ID, `ADDR/PREFIX`), as Docker's
    /// `Endpoint.VirtualIPs` shows them.
    pub fn service_virtual_ips(&self, service_id: &str) -> Vec<(String, String)> {
        let st = self.net_state();
        st.networks
            .values()
            .filter_map(|n| {
                let v = n.rec.service_vips.get(service_id)?;
                Some((
                    n.rec.id.clone(),
                    format!("{}/{}", v.vip, n.rec.subnet.prefix_len()),
                ))
            })
            .collect()
    }

    /// The services that hold a virtual IP on some network.
    pub(crate) fn services_with_vips(&self) -> Vec<String> {
        let st = self.net_state();
        let mut out: BTreeSet<String> = BTreeSet::new();
        for n in st.networks.values() {
            out.extend(n.rec.service_vips.keys().cloned());
        }
        out.into_iter().collect()
    }

    /// The services the DNS server knows.
    pub(crate) fn services_with_dns(&self) -> Vec<String> {
        self.net_state().service_dns.keys().cloned().collect()
    }

    /// The services that have published ports in the table.
    pub(crate) fn services_with_ports(&self) -> Vec<String> {
        self.net_state().services.keys().cloned().collect()
    }

    /// A running container's IPv4 address on its first network.
    pub(crate) fn container_ipv4(&self, id: &str) -> Option<Ipv4Addr> {
        self.net_state()
            .live
            .get(id)
            .and_then(|l| l.net.endpoints.first())
            .map(|ep| ep.ip)
    }

    /// Whether `proto/port` is published on the host's IPv4 addresses by a running
    /// container or by a service other than `except`.
    pub(crate) fn host_port_in_use(&self, proto: &str, port: u16, except: &str) -> Option<String> {
        let st = self.net_state();
        for (sid, rules) in &st.services {
            if sid != except
                && rules
                    .iter()
                    .any(|r| r.proto.as_str() == proto && r.host_port == port)
            {
                return Some(format!("service {sid}"));
            }
        }
        for live in st.live.values() {
            if live
                .net
                .ports
                .iter()
                .any(|p| p.proto == proto && p.host_port == port && !p.host_ip.is_ipv6())
            {
                return Some(format!("container {}", live.name));
            }
        }
        None
    }

    /// The userland proxy's sockets bound by this start (`port_proxy.rs`), for its shim.
    pub(crate) fn take_proxy_sockets(&self, id: &str) -> Vec<(ProxyPort, OwnedFd)> {
        self.net_state()
            .proxy_sockets
            .remove(id)
            .unwrap_or_default()
    }

    /// Looks a network up by exact ID, exact name, or unique ID prefix (Docker's order).
    fn find_network<'a>(st: &'a NetState, key: &str) -> Option<&'a NetworkRecord> {
        if let Some(n) = st.networks.get(key) {
            return Some(&n.rec);
        }
        if let Some(n) = st.networks.values().find(|n| n.rec.name == key) {
            return Some(&n.rec);
        }
        let mut by_prefix = st.networks.values().filter(|n| n.rec.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) if !key.is_empty() => Some(&n.rec),
            _ => None,
        }
    }

    fn network_not_found(key: &str) -> EngineError {
        EngineError::not_found(format!("network {key} not found"))
    }

    /// The predefined `host` and `none` networks, as records for listing.
    fn predefined(name: &str) -> NetworkRecord {
        NetworkRecord {
            service_vips: BTreeMap::new(),
            version: NETWORK_RECORD_VERSION,
            id: predefined_id(name),
            name: name.into(),
            driver: name.replace("none", "null"),
            created: String::new(),
            bridge: String::new(),
            subnet: Ipv4Net::default(),
            gateway: Ipv4Addr::UNSPECIFIED,
            ip_range: None,
            user_subnet: false,
            internal: false,
            attachable: false,
            icc: true,
            masquerade: false,
            mtu: None,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            default_bridge: false,
            enable_ipv6: false,
            subnet6: None,
            gateway6: None,
        }
    }

    fn info_of(st: &NetState, rec: &NetworkRecord) -> NetworkInfo {
        let mut containers = BTreeMap::new();
        for (cid, live) in &st.live {
            for ep in live.net.endpoints.iter().filter(|e| e.network_id == rec.id) {
                containers.insert(cid.clone(), (live.name.clone(), ep.clone()));
            }
        }
        NetworkInfo {
            record: rec.clone(),
            containers,
        }
    }

    /// `docker network ls`: the bridge networks, then `host` and `none`.
    pub fn list_networks(&self) -> Vec<NetworkInfo> {
        let st = self.net_state();
        let mut out: Vec<NetworkInfo> = st
            .networks
            .values()
            .map(|n| Self::info_of(&st, &n.rec))
            .collect();
        for p in ["host", "none"] {
            out.push(NetworkInfo {
                record: Self::predefined(p),
                containers: BTreeMap::new(),
            });
        }
        out
    }

    /// `docker network inspect`.
    pub fn network(&self, key: &str) -> Result<NetworkInfo> {
        let st = self.net_state();
        if let Some(rec) = Self::find_network(&st, key) {
            return Ok(Self::info_of(&st, rec));
        }
        for p in ["host", "none"] {
            let rec = Self::predefined(p);
            if key == p || (key.len() >= 3 && rec.id.starts_with(key)) {
                return Ok(NetworkInfo {
                    record: rec,
                    containers: BTreeMap::new(),
                });
            }
        }
        Err(Self::network_not_found(key))
    }

    /// `docker network create`.
    pub fn create_network(&self, req: &NetworkCreate) -> Result<NetworkRecord> {
        let name = req.name.as_str();
        if !valid_network_name(name) {
            return Err(EngineError::invalid(format!(
                "network name {name:?}: a name must not be blank, contain '/' or control characters, or be longer than 255 bytes"
            )));
        }
        if matches!(name, "host" | "none" | DEFAULT_NETWORK | "default") {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!("{name} is a pre-defined network and cannot be created"),
            ));
        }
        match req.driver.as_deref() {
            None | Some("") | Some("bridge") => {}
            // A swarm of one host: an overlay network spans this host only, so it is a
            // bridge here (shown as `overlay`, scope `swarm`); Docker's 503 outside a
            // swarm.
            Some("overlay") => {
                self.swarm_required()?;
            }
            Some(d) => {
                return Err(EngineError::invalid(format!(
                    "network {name}: driver {d} is not supported by berth (bridge only)"
                )))
            }
        }
        match (req.enable_ipv6, req.subnet6) {
            (true, None) => {
                return Err(EngineError::invalid(format!(
                    "network {name}: --ipv6 needs an IPv6 --subnet (berth has no default IPv6 pool: choose a unique local /64, e.g. from fd00::/8)"
                )))
            }
            (false, Some(s6)) => {
                return Err(EngineError::invalid(format!(
                    "network {name}: IPv6 subnet {s6} given without --ipv6 (EnableIPv6)"
                )))
            }
            (true, Some(_)) if !link::ipv6_available() => {
                return Err(EngineError::new(
                    ErrorKind::Unavailable,
                    format!("network {name}: --ipv6: this host's kernel has no IPv6"),
                ))
            }
            _ => {}
        }
        if req.gateway6.is_some() && req.subnet6.is_none() {
            return Err(EngineError::invalid(format!(
                "network {name}: an IPv6 gateway needs an IPv6 subnet"
            )));
        }
        let mut icc = true;
        let mut masquerade = true;
        let mut mtu = None;
        let mut bridge_name = None;
        for (k, v) in &req.options {
            let bool_opt = |v: &str| -> Result<bool> {
                v.parse::<bool>().map_err(|_| {
                    EngineError::invalid(format!(
                        "network {name}: option {k}={v}: not true or false"
                    ))
                })
            };
            match k.as_str() {
                OPT_ICC => icc = bool_opt(v)?,
                OPT_MASQUERADE => masquerade = bool_opt(v)?,
                OPT_MTU => {
                    mtu = Some(v.parse::<u32>().ok().filter(|m| (68..=65535).contains(m)).ok_or_else(
                        || EngineError::invalid(format!("network {name}: option {k}={v}: not an MTU (68-65535)")),
                    )?)
                }
                OPT_BRIDGE_NAME => {
                    if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', '\0']) {
                        return Err(EngineError::invalid(format!(
                            "network {name}: option {k}={v}: not an interface name (1-15 bytes, no '/' or space)"
                        )));
                    }
                    bridge_name = Some(v.clone())
                }
                _ => {
                    return Err(EngineError::invalid(format!(
                        "network {name}: driver option {k} is not supported by berth (supported: {OPT_BRIDGE_NAME}, {OPT_ICC}, {OPT_MASQUERADE}, {OPT_MTU})"
                    )))
                }
            }
        }
        let mut st = self.net_state();
        if st.networks.values().any(|n| n.rec.name == name) {
            return Err(EngineError::conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let id = random_id()?;
        let bridge = bridge_name.unwrap_or_else(|| format!("berth-{}", &id[..9]));
        if st.networks.values().any(|n| n.rec.bridge == bridge) {
            return Err(EngineError::conflict(format!(
                "network {name}: bridge {bridge} is used by another network"
            )));
        }
        let subnet = match req.subnet {
            Some(s) => {
                if s.trunc() != s {
                    return Err(EngineError::invalid(format!(
                        "network {name}: subnet {s} is not a network address (did you mean {}?)",
                        s.trunc()
                    )));
                }
                if let Some(other) = st
                    .networks
                    .values()
                    .find(|n| ipam::overlaps(&n.rec.subnet, &s))
                {
                    return Err(EngineError::new(
                        ErrorKind::Forbidden,
                        format!(
                            "Pool overlaps with other one on this address space: subnet {s} overlaps network {} ({})",
                            other.rec.name, other.rec.subnet
                        ),
                    ));
                }
                s
            }
            None => ipam::choose_subnet(&self.config().address_pools, &self.taken_subnets(&st))
                .map_err(net_err)?,
        };
        let gateway = match req.gateway {
            Some(g) => g,
            None => ipam::default_gateway(&subnet).map_err(net_err)?,
        };
        // Validates the gateway and range against the subnet.
        ipam::Allocator::new(subnet, req.ip_range, gateway)
            .map_err(|e| EngineError::invalid(format!("network {name}: {e}")))?;
        let gateway6 = match req.subnet6 {
            Some(s6) => {
                if let Some(other) = st.networks.values().find(|n| {
                    n.rec
                        .subnet6
                        .is_some_and(|o| o.contains(&s6.network()) || s6.contains(&o.network()))
                }) {
                    return Err(EngineError::new(
                        ErrorKind::Forbidden,
                        format!(
                            "Pool overlaps with other one on this address space: IPv6 subnet {s6} overlaps network {}",
                            other.rec.name
                        ),
                    ));
                }
                let g6 = match req.gateway6 {
                    Some(g) => g,
                    None => ipam::default_gateway6(&s6)
                        .map_err(|e| EngineError::invalid(format!("network {name}: {e}")))?,
                };
                ipam::Allocator6::new(s6, g6)
                    .map_err(|e| EngineError::invalid(format!("network {name}: {e}")))?;
                Some(g6)
            }
            None => None,
        };
        let mut options = req.options.clone();
        options.retain(|_, v| !v.is_empty());
        let rec = NetworkRecord {
            service_vips: BTreeMap::new(),
            version: NETWORK_RECORD_VERSION,
            id: id.clone(),
            name: name.to_string(),
            driver: if req.driver.as_deref() == Some("overlay") {
                "overlay".into()
            } else {
                "bridge".into()
            },
            created: now_rfc3339(),
            bridge,
            subnet,
            gateway,
            ip_range: req.ip_range,
            user_subnet: req.subnet.is_some(),
            internal: req.internal,
            attachable: req.attachable,
            icc,
            masquerade,
            mtu,
            labels: req.labels.clone(),
            options,
            default_bridge: false,
            enable_ipv6: req.enable_ipv6,
            subnet6: req.subnet6,
            gateway6,
        };
        if self.config().ip_forward {
            if let Ok(true) = nft::enable_ip_forward() {
                info!("net.ipv4.ip_forward set to 1 (containers on bridge networks reach the outside through the host)");
            }
            if rec.subnet6.is_some() {
                self.enable_ipv6_forward();
            }
        }
        // The record last: a crash before it leaves a bridge the next create of the
        // same ID cannot meet (IDs are random) and `network prune` cannot see; the
        // bridge is removed here on failure.
        let rt = self.activate_network(&rec)?;
        st.networks.insert(id.clone(), rt);
        let done = self
            .write_network_record(&rec)
            .and_then(|_| self.apply_rules(&st));
        if let Err(e) = done {
            if let Some(rt) = st.networks.remove(&id) {
                drop(rt.dns);
            }
            let _ = link::delete_link(&rec.bridge);
            let _ = fs::remove_file(self.networks_dir().join(format!("{id}.json")));
            let _ = self.apply_rules(&st);
            return Err(e);
        }
        drop(st);
        info!(network.id = %id, name, subnet = %rec.subnet, "network created");
        self.emit_network(&rec, "create", None);
        Ok(rec)
    }

    fn emit_network(&self, rec: &NetworkRecord, action: &str, container: Option<&str>) {
        let mut attrs = BTreeMap::from([
            ("name".to_string(), rec.name.clone()),
            ("type".to_string(), rec.driver.clone()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_string());
        }
        self.emit(EventType::Network, action, rec.id.clone(), attrs);
    }

    /// `docker network rm`: refused while a container (running or not) is connected.
    /// A swarm's overlay network whose only users are tasks of removed services (being
    /// stopped within their grace period, as after `docker stack rm` removed the
    /// services) goes once they are gone: swarm removes it then too.
    pub fn remove_network(&self, key: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let departing = {
                let st = self.net_state();
                match Self::find_network(&st, key) {
                    Some(r) if r.driver == "overlay" => Some(r.id.clone()),
                    _ => None,
                }
            };
            let Some(id) = departing else { break };
            let users: Vec<ContainerRecord> = self
                .container_records()?
                .into_iter()
                .filter(|c| c.net.networks.iter().any(|a| a.network_id == id))
                .collect();
            if users.is_empty()
                || !users.iter().all(|c| self.is_departing_task(c))
                || std::time::Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.remove_network_now(key)
    }

    pub(crate) fn remove_network_now(&self, key: &str) -> Result<()> {
        // Exited containers' veths go before their bridge does.
        self.settle_network_teardowns(std::time::Duration::from_secs(30));
        let mut st = self.net_state();
        let rec = match Self::find_network(&st, key) {
            Some(r) => r.clone(),
            None if matches!(key, "host" | "none") => {
                return Err(EngineError::new(
                    ErrorKind::Forbidden,
                    format!("{key} is a pre-defined network and cannot be removed"),
                ))
            }
            None => return Err(Self::network_not_found(key)),
        };
        if rec.default_bridge {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "{} is a pre-defined network and cannot be removed",
                    rec.name
                ),
            ));
        }
        let users: Vec<String> = self
            .container_records()?
            .into_iter()
            .filter(|c| c.net.networks.iter().any(|a| a.network_id == rec.id))
            .map(|c| c.name)
            .collect();
        if !users.is_empty() {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "error while removing network: network {} id {} has active endpoints (containers {})",
                    rec.name,
                    rec.id,
                    users.join(", ")
                ),
            ));
        }
        // The record first: once it is gone the network is gone; a crash after leaves a
        // bridge the next daemon start does not bring up (and the rules no longer name).
        let path = self.networks_dir().join(format!("{}.json", rec.id));
        fs::remove_file(&path).map_err(|e| io_err(&path, "remove", e))?;
        let _ = fs::remove_file(self.networks_dir().join(format!("{}.cursor", rec.id)));
        if let Some(rt) = st.networks.remove(&rec.id) {
            drop(rt.dns);
        }
        if let Err(e) = self.apply_rules(&st) {
            warn!(network = %rec.name, error = %e, "rules not updated after removing the network");
        }
        if let Err(e) = link::delete_link(&rec.bridge) {
            warn!(network = %rec.name, error = %e, "bridge not removed");
        }
        drop(st);
        info!(network.id = %rec.id, name = %rec.name, "network removed");
        self.emit_network(&rec, "destroy", None);
        Ok(())
    }

    /// `docker network prune`: removes user-defined networks no container uses (that
    /// match `filters`: `label`, `until`). Returns their names.
    pub fn prune_networks(&self, filters: &crate::Filters) -> Result<Vec<String>> {
        filters.check(&["until", "label", "label!"])?;
        let until = match filters.get("until") {
            [] => None,
            [u] => Some(crate::images::parse_until(u)?),
            _ => return Err(EngineError::invalid("more than one until filter")),
        };
        let used: BTreeSet<String> = self
            .container_records()?
            .iter()
            .flat_map(|c| c.net.networks.iter().map(|a| a.network_id.clone()))
            .collect();
        let candidates: Vec<NetworkRecord> = {
            let st = self.net_state();
            st.networks
                .values()
                .map(|n| n.rec.clone())
                .filter(|r| !r.default_bridge && !used.contains(&r.id))
                .collect()
        };
        let mut removed = Vec::new();
        for rec in candidates {
            if !filters.labels_match("label", &rec.labels)
                || filters.get("label!").iter().any(|f| {
                    let mut one = crate::Filters::default();
                    one.insert("label", f);
                    one.labels_match("label", &rec.labels)
                })
            {
                continue;
            }
            if let Some(u) = until {
                let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                    .map(|t| t.timestamp())
                    .unwrap_or(0);
                if created >= u {
                    continue;
                }
            }
            match self.remove_network(&rec.id) {
                Ok(()) => removed.push(rec.name),
                Err(e) if e.kind == ErrorKind::Forbidden => {} // a container joined meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Resolves a create's network request into the container's configuration.
    pub(crate) fn resolve_net_request(&self, req: &NetRequest) -> Result<NetConfig> {
        let st = self.net_state();
        let mode = match req.mode.as_str() {
            "" | "default" | DEFAULT_NETWORK => {
                if self.config().bridge == "none" {
                    "none".to_string()
                } else {
                    DEFAULT_NETWORK.to_string()
                }
            }
            m => m.to_string(),
        };
        let mut cfg = NetConfig {
            mode: mode.clone(),
            mode_default: matches!(req.mode.as_str(), "" | "default"),
            networks: Vec::new(),
            port_bindings: req.port_bindings.clone(),
            publish_all: req.publish_all,
            exposed_ports: req.exposed_ports.clone(),
            dns: req.dns.clone(),
            dns_search: req.dns_search.clone(),
            dns_options: req.dns_options.clone(),
            extra_hosts: req.extra_hosts.clone(),
            domainname: req.domainname.clone(),
            mac_address: String::new(),
            links: Vec::new(),
        };
        for l in req
            .links
            .iter()
            .chain(req.endpoint_links.values().flatten())
        {
            parse_link(l)?;
        }
        let user_defined = !matches!(mode.as_str(), "host" | "none" | DEFAULT_NETWORK)
            && Self::find_network(&st, &mode).is_some_and(|r| !r.default_bridge);
        if !req.links.is_empty() && mode == "host" {
            return Err(EngineError::invalid(HOST_NETWORK_AND_LINKS));
        }
        // Legacy links: on the default bridge (and `none`, where Docker records them and
        // they do nothing). On a user-defined network Docker leaves HostConfig.Links
        // aside: the docker CLI sends them in the network's EndpointsConfig as well.
        if !user_defined {
            for l in &req.links {
                let (name, alias) = parse_link(l)?;
                let target = self.container(&name).map_err(|e| {
                    if e.kind == ErrorKind::NotFound {
                        EngineError::invalid(format!(
                            "could not get container for {name}: No such container: {name}"
                        ))
                    } else {
                        e
                    }
                })?;
                if target.network_host {
                    return Err(EngineError::invalid(HOST_NETWORK_AND_LINKS));
                }
                // Docker reserves `/self/alias` once: a second link of the alias is ignored.
                if cfg.links.iter().any(|x| x.alias == alias) {
                    warn!(link = %l, "a link of this alias exists; ignored");
                    continue;
                }
                cfg.links.push(LegacyLink {
                    container: target.id,
                    alias,
                });
            }
        }
        for d in &cfg.dns {
            d.parse::<IpAddr>()
                .map_err(|_| EngineError::invalid(format!("--dns {d}: not an IP address")))?;
        }
        for h in &cfg.extra_hosts {
            parse_extra_host(h)?;
        }
        for k in cfg.port_bindings.keys().chain(cfg.exposed_ports.iter()) {
            parse_port_key(k)?;
        }
        for (k, bindings) in &cfg.port_bindings {
            for b in bindings {
                if !b.host_ip.is_empty() {
                    // `::1` and IPv6 addresses for IPv4-only containers go through the
                    // userland proxy (`port_proxy.rs`).
                    let _: IpAddr = b.host_ip.parse().map_err(|_| {
                        EngineError::invalid(format!(
                            "port {k}: host IP {} is not an IP address",
                            b.host_ip
                        ))
                    })?;
                }
                parse_host_ports(&b.host_port).map_err(|m| {
                    EngineError::invalid(format!("port {k}: host port {:?}: {m}", b.host_port))
                })?;
            }
        }
        if mode.starts_with("container:") {
            return Err(EngineError::invalid(format!(
                "network mode {mode} is not supported yet by berth"
            )));
        }
        if matches!(mode.as_str(), "host" | "none") {
            if let Some(n) = req.endpoints.keys().find(|n| n.as_str() != mode) {
                return Err(EngineError::invalid(format!(
                    "container cannot be connected to network {n} with network mode {mode}"
                )));
            }
            if !req.mac_address.is_empty()
                || req.endpoints.values().any(|a| a.mac_address.is_some())
            {
                // Docker's words.
                return Err(EngineError::invalid(
                    "conflicting options: mac-address and the network mode",
                ));
            }
            if req
                .endpoints
                .values()
                .any(|a| !a.link_local_ips.is_empty() || !a.driver_opts.is_empty())
            {
                return Err(EngineError::invalid(format!(
                    "network mode {mode}: the container has no interface of its own for link-local addresses or endpoint driver options"
                )));
            }
            // Docker discards published ports without a network namespace of the
            // container's own on a bridge (its CLI warns for host).
            cfg.port_bindings.clear();
            cfg.publish_all = false;
            return Ok(cfg);
        }
        let primary = Self::find_network(&st, &mode)
            .ok_or_else(|| Self::network_not_found(&mode))?
            .clone();
        let mut keys: Vec<&String> = req.endpoints.keys().collect();
        // The primary network first, then the others by name.
        keys.sort_by_key(|k| {
            Self::find_network(&st, k).map(|r| r.id.clone()) != Some(primary.id.clone())
        });
        let mut seen = BTreeSet::new();
        let mut primary_settings = req
            .endpoints
            .iter()
            .find(|(k, _)| Self::find_network(&st, k).is_some_and(|r| r.id == primary.id))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if !req.mac_address.is_empty() {
            // The deprecated container-wide address is the primary network's (Docker
            // migrates it so); both given, they must agree.
            let top = parse_mac(&req.mac_address)?;
            let ep = primary_settings
                .mac_address
                .as_deref()
                .map(parse_mac)
                .transpose()?;
            if ep.is_some_and(|ep| ep != top) {
                return Err(EngineError::invalid(
                    "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
                ));
            }
            primary_settings.mac_address = Some(ipam::format_mac(&top));
            cfg.mac_address = req.mac_address.clone();
        }
        let mut add = |rec: &NetworkRecord, settings: NetAttachment| -> Result<()> {
            if !seen.insert(rec.id.clone()) {
                return Ok(());
            }
            let att = check_attachment(
                rec,
                NetAttachment {
                    network_id: rec.id.clone(),
                    ..settings
                },
            )?;
            cfg.networks.push(att);
            Ok(())
        };
        if primary.internal && (!cfg.port_bindings.is_empty() || cfg.publish_all) {
            return Err(EngineError::invalid(format!(
                "network {} is internal: ports cannot be published from it",
                primary.name
            )));
        }
        add(&primary, primary_settings)?;
        for k in keys {
            let rec = Self::find_network(&st, k).ok_or_else(|| Self::network_not_found(k))?;
            add(rec, req.endpoints[k].clone())?;
        }
        check_ifnames(&cfg.networks)?;
        for (k, links) in req.endpoint_links.iter().filter(|(_, l)| !l.is_empty()) {
            let rec = match k.as_str() {
                "default" => &primary,
                k => Self::find_network(&st, k).ok_or_else(|| Self::network_not_found(k))?,
            };
            if rec.default_bridge {
                return Err(EngineError::invalid(
                    "links are only supported for user-defined networks",
                ));
            }
            if let Some(a) = cfg.networks.iter_mut().find(|a| a.network_id == rec.id) {
                for l in links {
                    let (name, alias) = parse_link(l)?;
                    a.links.push(format!("{name}:{alias}"));
                }
            }
        }
        Ok(cfg)
    }

    fn read_container_net(&self, id: &str) -> Option<ContainerNet> {
        let p = self.container_dir(id).join(NET_STATE_FILE);
        let bytes = fs::read(&p).ok()?;
        match serde_json::from_slice::<ContainerNet>(&bytes) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(path = %p.display(), error = %e, "unreadable network state");
                None
            }
        }
    }

    /// The network state of a running container (inspect, ps).
    pub fn container_net(&self, id: &str) -> Option<ContainerNet> {
        self.net_state().live.get(id).map(|l| l.net.clone())
    }

    /// Traffic counters of a running container's interfaces, as the container sees them
    /// (for `docker stats`): the host end's, with receive and transmit swapped.
    pub(crate) fn network_counters(&self, id: &str) -> BTreeMap<String, link::LinkStats> {
        let Some(net) = self.container_net(id) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for ep in &net.endpoints {
            if let Ok(Some(h)) = link::link_stats(&ep.host_ifname) {
                out.insert(ep.ifname.clone(), h.swapped());
            }
        }
        out
    }

    /// A network's name by ID (inspect shows networks by name).
    pub fn network_name(&self, id: &str) -> Option<String> {
        self.net_state()
            .networks
            .get(id)
            .map(|n| n.rec.name.clone())
    }

    /// Upstream resolvers of a container's DNS queries: its `--dns`, else the daemon's
    /// `dns`, else the host's.
    fn upstreams_for(&self, rec: &ContainerRecord) -> Vec<SocketAddr> {
        let mut list: Vec<String> = rec.net.dns.clone();
        if list.is_empty() {
            list = self.config().dns.clone();
        }
        let mut out: Vec<SocketAddr> = list
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if out.is_empty() {
            if let Ok(h) = dns::read_resolv_conf(Path::new("/etc/resolv.conf")) {
                out = h
                    .nameservers
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 53))
                    .collect();
            }
        }
        out
    }

    /// Before each start: writes the container's /etc files and, on bridge networks,
    /// makes its namespace, its interfaces and its published ports. On failure, what was
    /// made is undone.
    pub(crate) fn network_setup(&self, rec: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        // Its previous run's interfaces (same names) are gone first.
        self.wait_deferred_teardown(&rec.id);
        if !rec.net.bridged() {
            return self.write_etc_files(rec, None);
        }
        let netns_path = self.netns_path(&rec.id);
        let mut st = self.net_state();
        // Endpoints: addresses now, under the lock.
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let names = interface_names(&rec.net.networks);
        for (a, ifname) in rec.net.networks.iter().zip(&names) {
            let r = self.new_endpoint(&mut st, rec, a, ifname);
            match r {
                Ok(ep) => endpoints.push(ep),
                Err(e) => {
                    st.release(&endpoints);
                    return Err(e);
                }
            }
        }
        let dual_stack = endpoints.first().is_some_and(|e| e.ip6.is_some());
        let (ports, sockets) = match self.allocate_ports(&st, rec, dual_stack) {
            Ok(p) => p,
            Err(e) => {
                st.release(&endpoints);
                return Err(e);
            }
        };
        let net = ContainerNet {
            version: CONTAINER_NET_VERSION,
            netns: netns_path.clone(),
            endpoints,
            ports,
        };
        // Recorded before any kernel object exists: a crash from here on is repaired.
        // Replaced atomically, not fsync'd (two syncs on the path of every start on a
        // bridge): a daemon crash loses nothing (the page cache survives it), and after a
        // power loss nothing it names exists any more (no container runs, interfaces and
        // namespaces are gone with the boot; the daemon's start sweeps `bth*` interfaces
        // and namespace files no running container claims).
        let written = serde_json::to_vec_pretty(&net)
            .map_err(|e| EngineError::internal(format!("container {}: network state: {e}", rec.id)))
            .and_then(|b| write_replace(&dir, NET_STATE_FILE, &b));
        if let Err(e) = written {
            st.release(&net.endpoints);
            return Err(e);
        }
        for n in net
            .endpoints
            .iter()
            .filter_map(|e| st.networks.get(&e.network_id))
        {
            self.save_cursor(&n.rec.id, n.alloc.cursor());
            self.save_cursor6(&n.rec.id, n.alloc6.as_ref().and_then(|a| a.cursor()));
        }
        let made = (|| -> Result<()> {
            if rec.userns.is_some() {
                // Inside the container's user namespace, so its root owns it (sysfs,
                // sysctls); configured from the host as any other.
                berth_runtime::userns::create_netns_in(&self.userns_path(&rec.id), &netns_path)
                    .map_err(|e| {
                        EngineError::new(e.kind(), format!("container {}: {e}", rec.id))
                    })?;
                netns::loopback_up(&netns_path).map_err(net_err)?;
            } else {
                netns::create(&netns_path).map_err(net_err)?;
            }
            for (i, ep) in net.endpoints.iter().enumerate() {
                self.plug(&st, &net, ep, i == 0)?;
            }
            Ok(())
        })();
        if let Some(ep) = net.endpoints.first().filter(|_| !sockets.is_empty()) {
            // The proxy relays to the container's IPv4 address (it always has one).
            let held = sockets
                .into_iter()
                .map(|(p, fd)| {
                    let listen = SocketAddr::from((p.host_ip, p.host_port));
                    let target = SocketAddr::from((ep.ip, p.container_port));
                    (port_proxy::proxy_port(&p.proto, listen, target), fd)
                })
                .collect();
            st.proxy_sockets.insert(rec.id.clone(), held);
        }
        let upstreams = self.upstreams_for(rec);
        st.live.insert(
            rec.id.clone(),
            LiveNet {
                name: rec.name.clone(),
                net: net.clone(),
                upstreams,
            },
        );
        let made = made
            .and_then(|_| {
                if net.ports.is_empty() {
                    Ok(())
                } else {
                    self.apply_rules(&st)
                }
            })
            .and_then(|_| self.write_etc_files(rec, Some((&st, &net))));
        drop(st);
        if let Err(e) = made {
            self.network_teardown(&rec.id);
            return Err(e);
        }
        flush_unpublished_flows(&rec.id, &net.ports);
        for ep in &net.endpoints {
            if let Some(n) = self
                .net_state()
                .networks
                .get(&ep.network_id)
                .map(|n| n.rec.clone())
            {
                self.emit_network(&n, "connect", Some(&rec.id));
            }
        }
        Ok(())
    }

    /// Allocates an endpoint of `rec` on the attachment's network (callers hold the lock).
    fn new_endpoint(
        &self,
        st: &mut NetState,
        rec: &ContainerRecord,
        a: &NetAttachment,
        ifname: &str,
    ) -> Result<Endpoint> {
        let n = st.networks.get_mut(&a.network_id).ok_or_else(|| {
            EngineError::not_found(format!(
                "container {}: network {} not found (removed, or not brought up: see the daemon log)",
                rec.name, a.network_id
            ))
        })?;
        let ip = match a.ipv4_address {
            Some(ip) => {
                n.alloc.reserve(ip).map_err(|e| {
                    EngineError::new(
                        e.kind,
                        format!("container {}: network {}: {e}", rec.name, n.rec.name),
                    )
                })?;
                ip
            }
            None => n.alloc.allocate().map_err(|e| {
                EngineError::new(
                    e.kind,
                    format!("container {}: network {}: {e}", rec.name, n.rec.name),
                )
            })?,
        };
        let ip6 = match (n.alloc6.as_mut(), a.ipv6_address) {
            (Some(a6), Some(want)) => Some(a6.reserve(want).map(|()| want)),
            (Some(a6), None) => Some(a6.allocate()),
            (None, Some(want)) => Some(Err(berth_net::Error::invalid(
                format!("address {want}"),
                "the network has no IPv6 (create it with --ipv6 and an IPv6 --subnet)",
            ))),
            (None, None) => None,
        };
        let ip6 = match ip6.transpose() {
            Ok(v) => v,
            Err(e) => {
                n.alloc.release(ip);
                return Err(EngineError::new(
                    e.kind,
                    format!("container {}: network {}: {e}", rec.name, n.rec.name),
                ));
            }
        };
        let mut dns_names = Vec::new();
        if !n.rec.default_bridge {
            dns_names.push(rec.name.clone());
            dns_names.extend(a.aliases.iter().cloned());
            dns_names.push(rec.id[..12].to_string());
            let mut seen = BTreeSet::new();
            dns_names.retain(|n| seen.insert(n.clone()));
        }
        let mac = match &a.mac_address {
            Some(m) => m.clone(),
            None => ipam::format_mac(&ipam::mac_for(ip)),
        };
        let ep = Endpoint {
            network_id: n.rec.id.clone(),
            endpoint_id: random_id()?,
            ifname: ifname.to_string(),
            host_ifname: veth_name(&rec.id, &n.rec.id),
            ip,
            prefix_len: n.rec.subnet.prefix_len(),
            gateway: n.rec.gateway,
            ip6,
            prefix_len6: if ip6.is_some() {
                n.rec.subnet6.map_or(0, |s6| s6.prefix_len())
            } else {
                0
            },
            gateway6: n.rec.gateway6.filter(|_| ip6.is_some()),
            mac,
            aliases: with_short_id(&n.rec, &a.aliases, &rec.id),
            dns_names,
            link_local_ips: a.link_local_ips.clone(),
            sysctls: endpoint_sysctls(a, ifname)?,
            links: a
                .links
                .iter()
                .filter_map(|l| parse_link(l).ok())
                .map(|(name, alias)| (alias.to_ascii_lowercase(), name))
                .collect(),
        };
        st.flush_before_reuse(ep.ip);
        Ok(ep)
    }

    /// Makes an endpoint's veth pair; `primary` gets the default route.
    fn plug(&self, st: &NetState, net: &ContainerNet, ep: &Endpoint, primary: bool) -> Result<()> {
        let n = st.networks.get(&ep.network_id).ok_or_else(|| {
            EngineError::not_found(format!("network {} not found", ep.network_id))
        })?;
        let address = Ipv4Net::new(ep.ip, ep.prefix_len)
            .map_err(|e| EngineError::internal(format!("endpoint {}: {e}", ep.ip)))?;
        let (link_mtu, route_mtu) = self.network_mtus(&n.rec);
        link::add_veth(&link::VethSpec {
            host_name: ep.host_ifname.clone(),
            bridge: n.rec.bridge.clone(),
            netns: net.netns.clone(),
            ifname: ep.ifname.clone(),
            mac: parse_mac(&ep.mac)?,
            address,
            gateway: (primary && !n.rec.internal).then_some(ep.gateway),
            address6: match ep.ip6 {
                Some(ip6) => Some(
                    Ipv6Net::new(ip6, ep.prefix_len6)
                        .map_err(|e| EngineError::internal(format!("endpoint {ip6}: {e}")))?,
                ),
                None => None,
            },
            gateway6: ep.gateway6.filter(|_| primary && !n.rec.internal),
            mtu: Some(link_mtu),
            route_mtu,
            link_local: ep.link_local_ips.clone(),
            sysctls: ep.sysctls.clone(),
        })
        .map_err(net_err)
    }

    /// A network's link MTU (its veths; the bridge follows its ports) and the MTU of the
    /// default route through its gateway. A network with an explicit
    /// `com.docker.network.driver.mtu` uses it for both (Docker's layout); the others
    /// get the daemon's `link_mtu` on the links, for traffic that stays within the host,
    /// and its `mtu` on the default route, for traffic that leaves through the gateway.
    fn network_mtus(&self, rec: &NetworkRecord) -> (u32, Option<u32>) {
        if let Some(mtu) = rec.mtu {
            return (mtu, None);
        }
        let cfg = self.config();
        match cfg.link_mtu {
            0 => (cfg.mtu, None),
            link => (link.max(cfg.mtu), Some(cfg.mtu)),
        }
    }

    /// Host ports for the container's bindings (and `-P`), free of berth's other
    /// published ports and of host processes, with the userland proxy's sockets bound
    /// (`port_proxy.rs`).
    /// `dual_stack`: the container's first network gives it an IPv6 address (a port on
    /// an IPv6 address of the host is then translated by the kernel).
    fn allocate_ports(
        &self,
        st: &NetState,
        rec: &ContainerRecord,
        dual_stack: bool,
    ) -> Result<(Vec<PublishedPort>, ProxySockets)> {
        let userland_proxy = self.config().userland_proxy;
        // A binding on every address also serves the host's IPv6 addresses the kernel
        // cannot translate to this container through the proxy: all of them for an
        // IPv4-only container, `::1` for a dual-stack one (Docker's userland proxy).
        let companion = (userland_proxy && link::ipv6_available()).then_some(if dual_stack {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        let mut wanted: Vec<WantedPort> = Vec::new();
        for (key, bindings) in &rec.net.port_bindings {
            let (cport, proto) = parse_port_key(key)?;
            let list: Vec<PortBinding> = if bindings.is_empty() {
                vec![PortBinding::default()]
            } else {
                bindings.clone()
            };
            for b in list {
                let ip = match b.host_ip.parse::<IpAddr>() {
                    Ok(ip) if ip.is_unspecified() => ALL_ADDRESSES,
                    Ok(ip) => ip,
                    Err(_) => ALL_ADDRESSES,
                };
                let range = parse_host_ports(&b.host_port).map_err(EngineError::invalid)?;
                let proxy = port_proxy::proxied(ip, dual_stack);
                if proxy && !userland_proxy {
                    return Err(EngineError::invalid(format!(
                        "port {key}: host IP {ip}: only the userland proxy can publish there (the kernel routes no ::1 traffic off the host, and has no NAT from IPv6 to a container without IPv6), and the daemon's config turns it off (userland_proxy = false)"
                    )));
                }
                wanted.push(WantedPort {
                    proto: proto.clone(),
                    cport,
                    ip,
                    range,
                    proxy,
                    companion: companion.filter(|_| ip.is_unspecified()),
                });
            }
        }
        if rec.net.publish_all {
            for key in &rec.net.exposed_ports {
                let (cport, proto) = parse_port_key(key)?;
                let key_norm = format!("{cport}/{proto}");
                if rec.net.port_bindings.keys().any(|k| {
                    parse_port_key(k)
                        .map(|(p, pr)| format!("{p}/{pr}"))
                        .ok()
                        .as_deref()
                        == Some(key_norm.as_str())
                }) {
                    continue;
                }
                wanted.push(WantedPort {
                    proto,
                    cport,
                    ip: ALL_ADDRESSES,
                    range: None,
                    proxy: false,
                    companion,
                });
            }
        }
        let mut taken: Vec<PublishedPort> = st
            .live
            .values()
            .flat_map(|l| l.net.ports.iter().cloned())
            .collect();
        let mut out = Vec::new();
        let mut sockets = Vec::new();
        let mut capped = 0usize;
        for mut w in wanted {
            if sockets.len() >= PROXY_MAX_PORTS {
                if w.proxy {
                    return Err(EngineError::invalid(format!(
                        "port {}/{}: host IP {}: more than {PROXY_MAX_PORTS} ports of one container would go through the userland proxy (publish fewer on IPv6 addresses the kernel cannot translate)",
                        w.cport, w.proto, w.ip
                    )));
                }
                capped += usize::from(w.companion.take().is_some());
            }
            let (port, socket, also) = match w.range {
                Some((lo, hi)) if lo == hi => match claim(&taken, &w, lo)? {
                    Claim::Got(socket, also) => (lo, socket, also),
                    Claim::Allocated => {
                        return Err(EngineError::conflict(format!(
                            "Bind for {}:{lo} failed: port is already allocated",
                            w.ip
                        )))
                    }
                    Claim::HostBusy if w.proxy => {
                        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
                        return Err(port_proxy::bind_error(&w.proto, w.ip, lo, &e));
                    }
                    Claim::HostBusy => {
                        return Err(EngineError::conflict(format!(
                            "Bind for {}:{lo}/{} failed: a process of the host listens on it",
                            w.ip, w.proto
                        )))
                    }
                    Claim::CompanionBusy(ip) => {
                        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
                        return Err(port_proxy::bind_error(&w.proto, ip, lo, &e));
                    }
                },
                r => {
                    let (lo, hi) = r.unwrap_or_else(ephemeral_range);
                    let span = u32::from(hi - lo) + 1;
                    let start = u32::from(std::process::id() as u16 ^ (w.cport.rotate_left(7)));
                    let mut found = None;
                    for i in 0..span {
                        let p = lo + ((start + i) % span) as u16;
                        if let Claim::Got(socket, also) = claim(&taken, &w, p)? {
                            found = Some((p, socket, also));
                            break;
                        }
                    }
                    found.ok_or_else(|| {
                        EngineError::conflict(format!(
                            "no free host port for {}/{} in {lo}-{hi}",
                            w.cport, w.proto
                        ))
                    })?
                }
            };
            let p = PublishedPort {
                proto: w.proto.clone(),
                container_port: w.cport,
                host_ip: w.ip,
                host_port: port,
                proxy: w.proxy,
            };
            taken.push(p.clone());
            if let Some(fd) = socket {
                sockets.push((p.clone(), fd));
            }
            out.push(p);
            if let Some((ip, fd)) = also {
                let p = PublishedPort {
                    proto: w.proto,
                    container_port: w.cport,
                    host_ip: ip,
                    host_port: port,
                    proxy: true,
                };
                taken.push(p.clone());
                sockets.push((p.clone(), fd));
                out.push(p);
            }
        }
        if capped > 0 {
            warn!(
                container.id = %rec.id,
                ports = capped,
                "published on IPv4 (and the kernel's IPv6) only: beyond {PROXY_MAX_PORTS} ports of one container, the userland proxy serves no more IPv6 addresses"
            );
        }
        out.sort();
        Ok((out, sockets))
    }

    /// After each exit (and before each start, and at remove): removes the container's
    /// interfaces and namespace, releases its addresses and ports. Idempotent.
    pub(crate) fn network_teardown(&self, id: &str) {
        self.network_teardown_as(id, false);
    }

    /// The teardown after a container's exit (its monitor): what the API shows and what
    /// routes traffic changes now — published ports withdrawn, the endpoints gone from
    /// DNS and `inspect`, `disconnect` events — while the kernel's part (deleting the
    /// veths, which waits for an RCU grace period: 15–40 ms each, and the namespace, then
    /// the conntrack entries) is left to the engine's teardown thread, off the path of
    /// the exit, the `die` event and a `run --rm`'s removal. Until that thread is done
    /// the container's addresses stay taken (no other container gets them while the old
    /// veth with that MAC is on the bridge), a start of the same container waits for it
    /// (same interface names), and the daemon waits for it before it exits
    /// ([`Engine::settle_network_teardowns`]). After a crash, the daemon's start removes
    /// the `bth*` interfaces and namespaces no running container claims.
    pub(crate) fn network_teardown_deferred(&self, id: &str) {
        self.network_teardown_as(id, true);
    }

    fn network_teardown_as(&self, id: &str, defer: bool) {
        let path = self.container_dir(id).join(NET_STATE_FILE);
        let mut st = self.net_state();
        // A start that failed before its shim took them: closed here.
        st.proxy_sockets.remove(id);
        if st.closed {
            // The daemon exits now: the next start's reconcile does it, whole.
            return;
        }
        if st.deferred.contains(id) {
            // The teardown thread has it (and removes the file).
            return;
        }
        let live = st.live.remove(id).map(|l| l.net);
        let net = live.or_else(|| self.read_container_net(id));
        let Some(net) = net else {
            drop(st);
            // Nothing recorded; a namespace could still exist (a crash between
            // creating the file and... no: the file comes first). Nothing to do.
            return;
        };
        let flush_waits = st.flush_can_wait(&net);
        let deferred = defer && !net.endpoints.is_empty() && self.queue_teardown(&mut st, id, &net);
        if !deferred {
            st.release(&net.endpoints);
            if flush_waits {
                st.unflushed.extend(net.endpoints.iter().map(|e| e.ip));
            }
        }
        // The published ports go before the interfaces: a connection arriving between
        // the two would be sent to an address that no longer exists and wait for ARP
        // (about 3 s, EHOSTUNREACH) where it is now refused at once (found by
        // bench/services.sh during compose recreates).
        if !net.ports.is_empty() {
            if let Err(e) = self.apply_rules(&st) {
                warn!(container.id = %id, error = %e, "rules not updated after the container's exit");
            }
        }
        if !deferred {
            // Under the lock: its addresses are free already.
            teardown_kernel(&net);
        }
        let nets: Vec<NetworkRecord> = net
            .endpoints
            .iter()
            .filter_map(|e| st.networks.get(&e.network_id).map(|n| n.rec.clone()))
            .collect();
        drop(st);
        if deferred {
            for n in nets {
                self.emit_network(&n, "disconnect", Some(id));
            }
            return;
        }
        // After the rules: a packet between the two would make a new entry to the old
        // address again.
        if !flush_waits {
            flush_conntrack(id, &net.endpoints);
        }
        let _ = fs::remove_file(&path);
        for n in nets {
            self.emit_network(&n, "disconnect", Some(id));
        }
    }

    /// Hands `net` to the teardown thread (started on first use); false if it cannot
    /// run (the caller then tears down at once).
    fn queue_teardown(&self, st: &mut NetState, id: &str, net: &ContainerNet) -> bool {
        if st.teardown_queue.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<(String, ContainerNet, bool)>();
            let weak = self.downgrade();
            let spawned = std::thread::Builder::new()
                .name("net-teardown".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    while let Ok(first) = rx.recv() {
                        // What queued up meanwhile goes in the same pass: one walk of the
                        // conntrack table (the kernel visits every bucket, ~11 ms with
                        // 262144 even when empty) serves every exit in it.
                        let mut batch = vec![first];
                        batch.extend(rx.try_iter());
                        for (_, net, _) in &batch {
                            teardown_kernel(net);
                        }
                        let now: Vec<Endpoint> = batch
                            .iter()
                            .filter(|(_, _, waits)| !waits)
                            .flat_map(|(_, net, _)| net.endpoints.iter().cloned())
                            .collect();
                        let ids: Vec<&str> = batch.iter().map(|(id, _, _)| id.as_str()).collect();
                        flush_conntrack(&ids.join(","), &now);
                        let Some(engine) = Engine::upgrade(&weak) else {
                            continue;
                        };
                        for (id, _, _) in &batch {
                            let _ = fs::remove_file(engine.container_dir(id).join(NET_STATE_FILE));
                        }
                        let mut st = engine.net_state();
                        for (id, net, waits) in &batch {
                            st.release(&net.endpoints);
                            if *waits {
                                st.unflushed.extend(net.endpoints.iter().map(|e| e.ip));
                            }
                            st.deferred.remove(id);
                        }
                        drop(st);
                        engine.inner.net_teardown_done.notify_all();
                    }
                });
            match spawned {
                Ok(_) => st.teardown_queue = Some(tx),
                Err(e) => {
                    warn!(error = %e, "cannot start the network teardown thread");
                    return false;
                }
            }
        }
        let waits = st.flush_can_wait(net);
        let sent = st
            .teardown_queue
            .as_ref()
            .is_some_and(|q| q.send((id.to_string(), net.clone(), waits)).is_ok());
        if sent {
            st.deferred.insert(id.to_string());
        } else {
            st.teardown_queue = None;
        }
        sent
    }

    /// Waits until the teardown thread is done with container `id` (at most 30 s).
    pub(crate) fn wait_deferred_teardown(&self, id: &str) {
        let st = self.net_state();
        let _ = self.inner.net_teardown_done.wait_timeout_while(
            st,
            std::time::Duration::from_secs(30),
            |st| st.deferred.contains(id),
        );
    }

    /// Waits (at most `timeout`) until every deferred network teardown is done. True
    /// when none is left.
    pub fn settle_network_teardowns(&self, timeout: std::time::Duration) -> bool {
        self.settle_teardowns_then(timeout, |_| {})
    }

    /// The daemon's last word on networks: waits (at most `timeout`) for the deferred
    /// teardowns, then closes: a teardown asked for afterwards (a container that exits
    /// while the daemon goes away) is left whole to the next daemon's start, never cut
    /// off halfway by the process's exit. True when none was left.
    pub(crate) fn close_network_teardowns(&self, timeout: std::time::Duration) -> bool {
        self.settle_teardowns_then(timeout, |st| st.closed = true)
    }

    fn settle_teardowns_then(
        &self,
        timeout: std::time::Duration,
        then: impl FnOnce(&mut NetState),
    ) -> bool {
        let st = self.net_state();
        let (mut st, _) = self
            .inner
            .net_teardown_done
            .wait_timeout_while(st, timeout, |st| !st.deferred.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        let left = st.deferred.len();
        then(&mut st);
        if left > 0 {
            warn!(containers = left, "network teardowns still pending");
        }
        left == 0
    }

    /// `docker network connect`: records the network in the container's configuration
    /// An overlay network (a swarm's) takes services' tasks; other containers only when
    /// it was created `--attachable` (Docker's rule and words).
    pub(crate) fn check_manually_attachable(&self, network_id: &str, is_task: bool) -> Result<()> {
        if is_task {
            return Ok(());
        }
        let st = self.net_state();
        match Self::find_network(&st, network_id) {
            Some(r) if r.driver == "overlay" && !r.attachable => Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "Could not attach to network {}: rpc error: code = PermissionDenied desc = network {} not manually attachable",
                    r.name, r.id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// and, when it runs, plugs it in at once.
    pub fn connect_network(
        &self,
        network: &str,
        container: &str,
        settings: NetAttachment,
    ) -> Result<()> {
        let rec = self.container(container)?;
        let nrec = {
            let st = self.net_state();
            Self::find_network(&st, network)
                .cloned()
                .ok_or_else(|| Self::network_not_found(network))?
        };
        self.check_manually_attachable(
            &nrec.id,
            rec.labels.contains_key(crate::services::LABEL_TASK_ID),
        )?;
        if !rec.net.bridged() {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "container {} uses network mode {}: it cannot be connected to other networks",
                    rec.name,
                    if rec.network_host {
                        "host"
                    } else {
                        rec.net.mode.as_str()
                    }
                ),
            ));
        }
        if rec.net.networks.iter().any(|a| a.network_id == nrec.id) {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "endpoint with name {} already exists in network {}",
                    rec.name, nrec.name
                ),
            ));
        }
        // `network connect --link NAME:ALIAS`: as at create, DNS aliases only this
        // container resolves, on a user-defined network only (Docker's rule and words).
        let mut links = Vec::with_capacity(settings.links.len());
        for l in &settings.links {
            if nrec.default_bridge {
                return Err(EngineError::invalid(
                    "links are only supported for user-defined networks",
                ));
            }
            let (name, alias) = parse_link(l)?;
            links.push(format!("{name}:{alias}"));
        }
        let mut att = check_attachment(
            &nrec,
            NetAttachment {
                network_id: nrec.id.clone(),
                links,
                ..settings
            },
        )?;
        att.aliases = with_short_id(&nrec, &att.aliases, &rec.id);
        let mut all = rec.net.networks.clone();
        all.push(att.clone());
        check_ifnames(&all)?;
        let running = self.container_net(&rec.id).is_some();
        if running {
            let mut st = self.net_state();
            let Some(mut live) = st.live.remove(&rec.id) else {
                return Err(EngineError::conflict(format!(
                    "container {} stopped meanwhile",
                    rec.name
                )));
            };
            let idx = match custom_ifname(&att) {
                Some(n) if live.net.endpoints.iter().any(|e| e.ifname == n) => {
                    st.live.insert(rec.id.clone(), live);
                    return Err(EngineError::conflict(format!(
                        "container {}: interface name {n} is taken by another of its endpoints",
                        rec.name
                    )));
                }
                Some(n) => n.to_string(),
                None => (0..)
                    .map(|i| format!("eth{i}"))
                    .find(|n| !live.net.endpoints.iter().any(|e| &e.ifname == n))
                    .unwrap_or_else(|| "eth9".into()),
            };
            let r = self.new_endpoint(&mut st, &rec, &att, &idx).and_then(|ep| {
                live.net.endpoints.push(ep.clone());
                let saved = serde_json::to_vec_pretty(&live.net)
                    .map_err(|e| EngineError::internal(e.to_string()))
                    .and_then(|b| write_atomic(&self.container_dir(&rec.id), NET_STATE_FILE, &b));
                match saved.and_then(|_| self.plug(&st, &live.net, &ep, false)) {
                    Ok(()) => Ok(ep),
                    Err(e) => {
                        live.net
                            .endpoints
                            .retain(|x| x.endpoint_id != ep.endpoint_id);
                        st.release([&ep]);
                        let _ = link::remove_veth(&ep.host_ifname);
                        Err(e)
                    }
                }
            });
            if let Some(n) = st.networks.get(&nrec.id) {
                self.save_cursor(&n.rec.id, n.alloc.cursor());
                self.save_cursor6(&n.rec.id, n.alloc6.as_ref().and_then(|a| a.cursor()));
            }
            st.live.insert(rec.id.clone(), live);
            r?;
        }
        self.update_record(&rec.id, |r| r.net.networks.push(att.clone()))?;
        self.emit_network(&nrec, "connect", Some(&rec.id));
        Ok(())
    }

    /// `docker network disconnect`.
    pub fn disconnect_network(&self, network: &str, container: &str, _force: bool) -> Result<()> {
        let rec = self.container(container)?;
        let nrec = {
            let st = self.net_state();
            Self::find_network(&st, network)
                .cloned()
                .ok_or_else(|| Self::network_not_found(network))?
        };
        if !rec.net.networks.iter().any(|a| a.network_id == nrec.id) {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "container {} is not connected to network {}",
                    rec.name, nrec.name
                ),
            ));
        }
        {
            let mut st = self.net_state();
            if let Some(mut live) = st.live.remove(&rec.id) {
                let was_primary = live
                    .net
                    .endpoints
                    .first()
                    .is_some_and(|e| e.network_id == nrec.id);
                let (gone, keep): (Vec<Endpoint>, Vec<Endpoint>) = live
                    .net
                    .endpoints
                    .drain(..)
                    .partition(|e| e.network_id == nrec.id);
                live.net.endpoints = keep;
                for ep in &gone {
                    if let Err(e) = link::remove_veth(&ep.host_ifname) {
                        warn!(container.id = %rec.id, error = %e, "veth not removed");
                    }
                    st.release([ep]);
                }
                // The published ports follow the first endpoint: rules change with it.
                let had_ports = !live.net.ports.is_empty() && was_primary;
                if let Ok(b) = serde_json::to_vec_pretty(&live.net) {
                    let _ = write_atomic(&self.container_dir(&rec.id), NET_STATE_FILE, &b);
                }
                st.live.insert(rec.id.clone(), live);
                if had_ports {
                    let _ = self.apply_rules(&st);
                }
                flush_conntrack(&rec.id, &gone);
            }
        }
        self.update_record(&rec.id, |r| {
            r.net.networks.retain(|a| a.network_id != nrec.id)
        })?;
        self.emit_network(&nrec, "disconnect", Some(&rec.id));
        Ok(())
    }

    /// Keeps the DNS names of a renamed running container current.
    pub(crate) fn network_rename(&self, id: &str, old: &str, new: &str) {
        let mut st = self.net_state();
        let default_ids: BTreeSet<String> = st
            .networks
            .values()
            .filter(|n| n.rec.default_bridge)
            .map(|n| n.rec.id.clone())
            .collect();
        if let Some(live) = st.live.get_mut(id) {
            live.name = new.to_string();
            for ep in &mut live.net.endpoints {
                if default_ids.contains(&ep.network_id) {
                    continue;
                }
                for n in &mut ep.dns_names {
                    if n == old {
                        *n = new.to_string();
                    }
                }
            }
        }
    }

    /// The default bridge's endpoint of a running container (callers hold the lock).
    fn default_bridge_endpoint<'a>(st: &NetState, net: &'a ContainerNet) -> Option<&'a Endpoint> {
        net.endpoints.iter().find(|e| {
            st.networks
                .get(&e.network_id)
                .is_some_and(|n| n.rec.default_bridge)
        })
    }

    /// /etc/hosts lines of a container's legacy links (Docker's: the target's address
    /// with the alias, its hostname and its name), for the targets that run on the
    /// default bridge; nothing when the container is not on it.
    fn link_hosts(&self, rec: &ContainerRecord, st: &NetState, net: &ContainerNet) -> String {
        let mut out = String::new();
        if rec.net.links.is_empty() || Self::default_bridge_endpoint(st, net).is_none() {
            return out;
        }
        for l in &rec.net.links {
            let Ok(target) = self.container(&l.container) else {
                continue;
            };
            let Some(ep) = st
                .live
                .get(&target.id)
                .and_then(|t| Self::default_bridge_endpoint(st, &t.net))
            else {
                continue;
            };
            let mut names = format!("{} {}", l.alias, target.run.hostname);
            if l.alias != target.name {
                names = format!("{names} {}", target.name);
            }
            out.push_str(&format!("{}\t{names}\n", ep.ip));
        }
        out
    }

    /// The environment of a container's legacy links at its start (Docker's
    /// `setupLinkedContainers`): every target still there must run, on the default
    /// bridge. Nothing when the container itself is not on the default bridge.
    pub(crate) fn legacy_link_env(&self, rec: &ContainerRecord) -> Result<Vec<String>> {
        if rec.net.links.is_empty() {
            return Ok(Vec::new());
        }
        let on_bridge = {
            let st = self.net_state();
            rec.net.networks.iter().any(|a| {
                st.networks
                    .get(&a.network_id)
                    .is_some_and(|n| n.rec.default_bridge)
            })
        };
        if !on_bridge {
            return Ok(Vec::new());
        }
        let mut env = Vec::new();
        for l in &rec.net.links {
            // A removed target takes its link with it (Docker's link index).
            let Ok(target) = self.container(&l.container) else {
                continue;
            };
            let link_name = format!("/{}/{}", rec.name, l.alias);
            if !matches!(
                self.container_state(&target.id)?,
                crate::ContainerState::Running { .. }
            ) {
                return Err(EngineError::internal(format!(
                    "Cannot link to a non running container: /{} AS {link_name}",
                    target.name
                )));
            }
            let ip = {
                let st = self.net_state();
                st.live
                    .get(&target.id)
                    .and_then(|t| Self::default_bridge_endpoint(&st, &t.net))
                    .map(|e| e.ip)
            };
            let Some(ip) = ip else {
                return Err(EngineError::internal(format!(
                    "container {} not attached to default bridge network",
                    target.id
                )));
            };
            let mut ports = target.net.exposed_ports.clone();
            ports.extend(target.net.port_bindings.keys().cloned());
            env.extend(link_env(&link_name, ip, &target.run.env, &ports));
        }
        Ok(env)
    }

    /// Rewrites, in place (the file is bind-mounted), the /etc/hosts of running
    /// containers that link to `target` (or of `only`), after the target started again
    /// with a new address or a link was removed: Docker's parent update.
    pub(crate) fn refresh_link_hosts(&self, target: Option<&str>, only: Option<&str>) {
        // Only a running container on a network has an /etc/hosts to update: their
        // records are read, not every container's (a start must not cost more with
        // each stopped container the host keeps).
        let live: Vec<String> = match only {
            Some(o) => vec![o.to_string()],
            None => self.net_state().live.keys().cloned().collect(),
        };
        let parents: Vec<_> = live
            .iter()
            .filter_map(|id| self.container(id).ok())
            .filter(|r| {
                only.is_some_and(|o| o == r.id)
                    || target.is_some_and(|t| r.net.links.iter().any(|l| l.container == t))
            })
            .collect();
        for parent in &parents {
            let st = self.net_state();
            let Some(live) = st.live.get(&parent.id) else {
                continue;
            };
            let net = live.net.clone();
            let hosts = match self.hosts_content(parent, Some((&st, &net))) {
                Ok(h) => h,
                Err(e) => {
                    warn!(container.id = %parent.id, error = %e, "/etc/hosts not updated");
                    continue;
                }
            };
            drop(st);
            let path = self.container_dir(&parent.id).join("hosts");
            let written = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, hosts.as_bytes()));
            if let Err(e) = written {
                warn!(container.id = %parent.id, error = %e, "/etc/hosts not updated");
            }
        }
    }

    /// Writes `hosts`, `resolv.conf` and `hostname` in the container's directory.
    fn write_etc_files(
        &self,
        rec: &ContainerRecord,
        net: Option<(&NetState, &ContainerNet)>,
    ) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let hostname = rec.run.hostname.clone();
        let host_conf = dns::read_resolv_conf(Path::new("/etc/resolv.conf")).ok();
        let hosts = self.hosts_content(rec, net)?;
        let primary = net.and_then(|(_, n)| n.endpoints.first());
        // resolv.conf
        let mut resolv = String::from("# Generated by berth.\n");
        let search = if rec.net.dns_search.is_empty() {
            host_conf
                .as_ref()
                .map(|h| h.search.clone())
                .unwrap_or_default()
        } else {
            rec.net.dns_search.clone()
        };
        let options = if rec.net.dns_options.is_empty() {
            host_conf
                .as_ref()
                .map(|h| h.options.clone())
                .unwrap_or_default()
        } else {
            rec.net.dns_options.clone()
        };
        let embedded = primary.and_then(|ep| {
            net.and_then(|(st, _)| st.networks.get(&ep.network_id))
                .filter(|n| n.dns.is_some())
                .map(|_| ep.gateway)
        });
        match embedded {
            Some(gw) => {
                resolv.push_str(&format!(
                    "# The network's embedded DNS server (containers by name; other names go to {}).\nnameserver {gw}\n",
                    if rec.net.dns.is_empty() { "the daemon's resolvers" } else { "--dns" }
                ));
            }
            None => {
                let servers: Vec<String> = if rec.net.dns.is_empty() {
                    host_conf
                        .as_ref()
                        .map(|h| h.nameservers.iter().map(|i| i.to_string()).collect())
                        .unwrap_or_default()
                } else {
                    rec.net.dns.clone()
                };
                for s in servers {
                    resolv.push_str(&format!("nameserver {s}\n"));
                }
            }
        }
        if !search.is_empty() {
            resolv.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !options.is_empty() {
            resolv.push_str(&format!("options {}\n", options.join(" ")));
        }
        for (file, content) in [
            ("hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n")),
        ] {
            // In place: only a start writes them, when nothing has them mounted yet,
            // and the next start writes them again; a new file and a rename would be
            // three more inodes per start on the state root.
            crate::containers::write_in_place(&dir, file, content.as_bytes())?;
            // A remapped container's root owns them (as with Docker): else they are the
            // overflow id's inside and root there cannot write /etc/hosts.
            if let Some(m) = rec.userns {
                let p = dir.join(file);
                std::os::unix::fs::lchown(&p, Some(m.uid), Some(m.gid))
                    .map_err(|e| io_err(&p, "chown", e))?;
            }
        }
        Ok(())
    }

    /// `/etc/hosts` of a container (see [`Engine::write_etc_files`]).
    fn hosts_content(
        &self,
        rec: &ContainerRecord,
        net: Option<(&NetState, &ContainerNet)>,
    ) -> Result<String> {
        let hostname = rec.run.hostname.clone();
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        let primary = net.and_then(|(_, n)| n.endpoints.first());
        for h in &rec.net.extra_hosts {
            let (name, ip) = parse_extra_host(h)?;
            let ip = if ip == "host-gateway" {
                match primary {
                    Some(ep) => ep.gateway.to_string(),
                    None => "127.0.0.1".to_string(),
                }
            } else {
                ip
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        if let Some((st, n)) = net {
            hosts.push_str(&self.link_hosts(rec, st, n));
        }
        if rec.network_host {
            if let Ok(h) = fs::read_to_string("/etc/hosts") {
                hosts = h;
            }
        } else if let Some(ep) = primary {
            let mut names = hostname.clone();
            if !rec.net.domainname.is_empty() {
                names = format!("{hostname}.{} {hostname}", rec.net.domainname);
            }
            hosts.push_str(&format!("{}\t{names}\n", ep.ip));
        } else {
            hosts.push_str(&format!("127.0.0.1\t{hostname}\n"));
        }
        Ok(hosts)
    }
}

/// Deletes the kernel's connection tracking entries of addresses a container no longer
/// has (after its rules are gone): a flow that keeps sending (UDP to a published port)
/// would otherwise stay translated to the old address, reaching nothing, even once
/// another container publishes the port. Errors are logged: teardown goes on.
fn flush_conntrack(id: &str, endpoints: &[Endpoint]) {
    let ips: Vec<Ipv4Addr> = endpoints.iter().map(|ep| ep.ip).collect();
    match berth_net::conntrack::flush_addresses(&ips) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(container.id = %id, entries = n, "conntrack entries deleted"),
        Err(e) => warn!(container.id = %id, error = %e, "conntrack entries not deleted"),
    }
}

/// Deletes the never-answered connection tracking entries of UDP flows to host ports the
/// container has just published (after its rules are in): a client that kept sending
/// while no container published the port has an entry without translation, which would
/// keep its datagrams away from the new rule for as long as it keeps sending. (TCP needs
/// none: a connection to a port nobody served was refused and is gone.)
fn flush_unpublished_flows(id: &str, ports: &[PublishedPort]) {
    let udp: Vec<u16> = ports
        .iter()
        .filter(|p| p.proto == "udp" && !p.proxy)
        .map(|p| p.host_port)
        .collect();
    if let Err(e) = berth_net::conntrack::flush_unanswered(libc::IPPROTO_UDP as u8, &udp) {
        warn!(container.id = %id, error = %e, "conntrack entries not deleted");
    }
}

/// Removes a container's veths and namespace (errors logged: teardown goes on).
fn teardown_kernel(net: &ContainerNet) {
    for ep in &net.endpoints {
        if let Err(e) = link::remove_veth(&ep.host_ifname) {
            warn!(interface = %ep.host_ifname, error = %e, "veth not removed");
        }
    }
    if let Err(e) = netns::remove(&net.netns) {
        warn!(path = %net.netns.display(), error = %e, "network namespace not removed");
    }
}

/// The aliases of an endpoint as Docker 20.10 records them: on a user-defined network the
/// container's short ID is appended (it resolves through the embedded DNS as any alias
/// does); the default bridge has no aliases.
fn with_short_id(net: &NetworkRecord, aliases: &[String], container_id: &str) -> Vec<String> {
    let mut v = aliases.to_vec();
    let short = &container_id[..container_id.len().min(12)];
    if !net.default_bridge && !v.iter().any(|a| a == short) {
        v.push(short.to_string());
    }
    v
}

/// Docker's rules for an endpoint's settings on a network: aliases, static addresses,
/// the MAC address, link-local addresses and the endpoint driver options. Returns the
/// settings with the MAC address in its canonical form.
fn check_attachment(rec: &NetworkRecord, mut att: NetAttachment) -> Result<NetAttachment> {
    let aliases = &att.aliases;
    if rec.default_bridge && !aliases.is_empty() {
        return Err(EngineError::invalid(
            "network-scoped aliases are supported only for containers in user defined networks",
        ));
    }
    for a in aliases {
        if a.is_empty() || a.len() > 253 || a.contains(char::is_whitespace) {
            return Err(EngineError::invalid(format!(
                "network alias {a:?}: not a DNS name"
            )));
        }
    }
    if let Some(ip) = att.ipv4_address {
        if !rec.user_subnet || rec.default_bridge {
            return Err(EngineError::invalid(format!(
                "--ip {ip}: user specified IP address is supported only when connecting to networks with user configured subnets"
            )));
        }
        if !rec.subnet.contains(&ip) {
            return Err(EngineError::invalid(format!(
                "--ip {ip}: not in the subnet {} of network {}",
                rec.subnet, rec.name
            )));
        }
    }
    if let Some(ip6) = att.ipv6_address {
        match rec.subnet6 {
            None => {
                return Err(EngineError::invalid(format!(
                "--ip6 {ip6}: network {} has no IPv6 (create it with --ipv6 and an IPv6 --subnet)",
                rec.name
            )))
            }
            Some(s6) if !s6.contains(&ip6) => {
                return Err(EngineError::invalid(format!(
                    "--ip6 {ip6}: not in the IPv6 subnet {s6} of network {}",
                    rec.name
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(m) = &att.mac_address {
        att.mac_address = Some(ipam::format_mac(&parse_mac(m)?));
    }
    for ip in &att.link_local_ips {
        match ip {
            IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || v4.is_loopback() => {
                return Err(EngineError::invalid(format!(
                    "invalid link-local IP address {ip}: not a unicast address"
                )))
            }
            IpAddr::V4(v4) if rec.subnet.contains(v4) => {
                return Err(EngineError::invalid(format!(
                    "link-local IP address {ip} lies in the subnet {} of network {}: use --ip for an address of the network",
                    rec.subnet, rec.name
                )))
            }
            IpAddr::V4(_) => {}
            IpAddr::V6(v6) if rec.subnet6.is_some() => {
                if !v6.is_unicast_link_local() {
                    return Err(EngineError::invalid(format!(
                        "invalid link-local IP address {ip}: not in fe80::/10"
                    )));
                }
            }
            IpAddr::V6(_) => {
                return Err(EngineError::invalid(format!(
                    "link-local IP address {ip}: network {} has no IPv6 (IPv6 link-local addresses need an IPv6 network)",
                    rec.name
                )))
            }
        }
    }
    for (k, v) in &att.driver_opts {
        match k.as_str() {
            OPT_EP_SYSCTLS => {
                parse_endpoint_sysctls(v, rec)?;
            }
            OPT_EP_IFNAME => {
                link::check_ifname_str(v).map_err(|m| {
                    EngineError::invalid(format!("endpoint option {k}={v:?}: {m}"))
                })?;
            }
            _ => {
                return Err(EngineError::invalid(format!(
                    "network {}: endpoint driver option {k} is not supported yet by berth (supported: {OPT_EP_SYSCTLS}, {OPT_EP_IFNAME})",
                    rec.name
                )))
            }
        }
    }
    Ok(att)
}

/// A MAC address as Go's `net.ParseMAC` takes a 48-bit one (`aa:bb:cc:dd:ee:ff`,
/// `aa-bb-...`, `aabb.ccdd.eeff`), unicast (an interface cannot have a multicast one).
/// Docker's words on failure.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = || EngineError::invalid(format!("invalid MAC address {s}"));
    let hex: String = if s.len() == 14 && s.matches('.').count() == 2 {
        let groups: Vec<&str> = s.split('.').collect();
        if groups.iter().any(|g| g.len() != 4) {
            return Err(bad());
        }
        groups.concat()
    } else if s.len() == 17 {
        let sep = s.as_bytes()[2];
        if sep != b':' && sep != b'-' {
            return Err(bad());
        }
        let groups: Vec<&str> = s.split(sep as char).collect();
        if groups.len() != 6 || groups.iter().any(|g| g.len() != 2) {
            return Err(bad());
        }
        groups.concat()
    } else {
        return Err(bad());
    };
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(EngineError::invalid(format!(
            "invalid MAC address {s}: a multicast or all-zero address cannot be an interface's"
        )));
    }
    Ok(mac)
}

/// The interface name an endpoint asks for (`com.docker.network.endpoint.ifname`).
fn custom_ifname(a: &NetAttachment) -> Option<&str> {
    a.driver_opts
        .get(OPT_EP_IFNAME)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

/// The container's interface names, one per attachment in order: the name asked for,
/// else the lowest free `ethN` (as Docker names them).
fn interface_names(atts: &[NetAttachment]) -> Vec<String> {
    let custom: BTreeSet<&str> = atts.iter().filter_map(custom_ifname).collect();
    let mut next = 0;
    atts.iter()
        .map(|a| match custom_ifname(a) {
            Some(n) => n.to_string(),
            None => loop {
                let n = format!("eth{next}");
                next += 1;
                if !custom.contains(n.as_str()) {
                    break n;
                }
            },
        })
        .collect()
}

/// Two endpoints of a container cannot ask for the same interface name.
fn check_ifnames(atts: &[NetAttachment]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for n in atts.iter().filter_map(custom_ifname) {
        if !seen.insert(n) {
            return Err(EngineError::invalid(format!(
                "{OPT_EP_IFNAME}={n}: two endpoints of the container ask for the same interface name"
            )));
        }
    }
    Ok(())
}

/// `com.docker.network.endpoint.sysctls`: `net.X.Y.IFNAME.Z=V[,...]` with X `ipv4`,
/// `ipv6` or `mpls` (Docker's rule, and its words); `IFNAME` (or `ifname`) stands for
/// the interface. Returns (X.Y, Z, V) per entry.
fn parse_endpoint_sysctls(v: &str, rec: &NetworkRecord) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for sc in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let unrecognised = || {
            EngineError::invalid(format!(
                "unrecognised network interface sysctl '{sc}'; represent 'net.X.Y.ethN.Z=V' as 'net.X.Y.IFNAME.Z=V', 'X' must be 'ipv4', 'ipv6' or 'mpls'"
            ))
        };
        let (k, val) = sc.split_once('=').ok_or_else(|| {
            EngineError::invalid(format!("expected sysctl '{sc}' to have format name=value"))
        })?;
        let parts: Vec<&str> = k.splitn(5, '.').collect();
        if parts.len() != 5
            || parts[0] != "net"
            || !matches!(parts[1], "ipv4" | "ipv6" | "mpls")
            || !matches!(parts[3], "IFNAME" | "ifname")
        {
            return Err(unrecognised());
        }
        let plain = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !plain(parts[2]) || !plain(parts[4]) || val.is_empty() || val.contains(['\n', '\0']) {
            return Err(unrecognised());
        }
        if parts[1] == "ipv6" && parts[4] == "disable_ipv6" {
            return Err(EngineError::invalid(if rec.subnet6.is_some() {
                format!(
                    "sysctl '{sc}': berth sets IPv6 on the interfaces of dual-stack network {} itself",
                    rec.name
                )
            } else {
                format!(
                    "sysctl '{sc}': network {} is IPv4 only; IPv6 on its interfaces would go around its isolation rules (create a dual-stack network with --ipv6)",
                    rec.name
                )
            }));
        }
        out.push((
            format!("{}/{}", parts[1], parts[2]),
            parts[4].to_string(),
            val.to_string(),
        ));
    }
    Ok(out)
}

/// An endpoint's sysctls as paths under /proc/sys for the interface `ifname`.
fn endpoint_sysctls(a: &NetAttachment, ifname: &str) -> Result<Vec<(String, String)>> {
    let Some(v) = a.driver_opts.get(OPT_EP_SYSCTLS) else {
        return Ok(Vec::new());
    };
    let rec = NetworkRecord {
        service_vips: BTreeMap::new(),
        name: a.network_id.clone(),
        ..Engine::predefined("")
    };
    Ok(parse_endpoint_sysctls(v, &rec)?
        .into_iter()
        .map(|(xy, z, val)| (format!("net/{xy}/{ifname}/{z}"), val))
        .collect())
}

/// `--add-host name:ip` (or `name=ip`; `host-gateway` names the network's gateway).
pub fn parse_extra_host(h: &str) -> Result<(String, String)> {
    let (name, ip) = h
        .split_once('=')
        .or_else(|| h.split_once(':'))
        .ok_or_else(|| EngineError::invalid(format!("--add-host {h}: expected NAME:IP")))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(EngineError::invalid(format!(
            "--add-host {h}: bad host name"
        )));
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
        return Err(EngineError::invalid(format!(
            "--add-host {h}: {ip} is not an IP address (or host-gateway)"
        )));
    }
    Ok((name.to_string(), ip.to_string()))
}

/// A HostPort: empty or `0` (any), `8080`, or `8000-8010`.
fn parse_host_ports(s: &str) -> std::result::Result<Option<(u16, u16)>, String> {
    let s = s.trim();
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    let p = |x: &str| {
        x.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{x} is not a port number (1-65535)"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                return Err(format!("range {a}-{b} is empty"));
            }
            Ok(Some((a, b)))
        }
        None => {
            let x = p(s)?;
            Ok(Some((x, x)))
        }
    }
}

/// The addresses on network `network_id` of a service's ready tasks: its virtual IP's
/// backends.
fn vip_backends(st: &NetState, service_id: &str, network_id: &str) -> Vec<Ipv4Addr> {
    st.service_dns
        .get(service_id)
        .map(|d| {
            d.ready
                .iter()
                .filter_map(|cid| st.live.get(cid))
                .flat_map(|l| l.net.endpoints.iter())
                .filter(|ep| ep.network_id == network_id)
                .map(|ep| ep.ip)
                .collect()
        })
        .unwrap_or_default()
}

/// Turns the order of a service's addresses in successive answers.
static ROUND_ROBIN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The embedded DNS server's view of the engine, for one network.
struct NetResolver {
    engine: WeakEngine,
    network_id: String,
}

impl NetResolver {
    fn with_state<T>(&self, f: impl FnOnce(&NetState, &str) -> Option<T>) -> Option<T> {
        let engine = Engine::upgrade(&self.engine)?;
        let st = engine.net_state();
        // The client: a container with an endpoint on this network.
        f(&st, &self.network_id)
    }
}

fn client_of<'a>(st: &'a NetState, network_id: &str, client: IpAddr) -> Option<&'a LiveNet> {
    let IpAddr::V4(ip) = client else {
        return None;
    };
    st.live.values().find(|l| {
        l.net
            .endpoints
            .iter()
            .any(|e| e.network_id == network_id && e.ip == ip)
    })
}

/// An endpoint's addresses (its IPv6 one on a dual-stack network) added to a DNS
/// answer's, each once.
fn push_addresses(out: &mut Vec<IpAddr>, ep: &Endpoint) {
    for ip in std::iter::once(IpAddr::V4(ep.ip)).chain(ep.ip6.map(IpAddr::V6)) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
}

impl dns::Resolver for NetResolver {
    fn is_client(&self, client: IpAddr) -> bool {
        self.with_state(|st, nid| client_of(st, nid, client).map(|_| ()))
            .is_some()
    }

    fn lookup(&self, client: IpAddr, name: &str) -> Option<Vec<IpAddr>> {
        self.with_state(|st, nid| {
            let me = client_of(st, nid, client)?;
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let mut out = Vec::new();
            // The client's own links first (Docker's endpoint-scoped aliases): the alias
            // resolves to what its target resolves to on that network.
            for mine in &me.net.endpoints {
                let Some(target) = mine.links.get(&name) else {
                    continue;
                };
                for other in st.live.values() {
                    for ep in other
                        .net
                        .endpoints
                        .iter()
                        .filter(|e| e.network_id == mine.network_id)
                    {
                        if ep.dns_names.iter().any(|n| n.eq_ignore_ascii_case(target)) {
                            push_addresses(&mut out, ep);
                        }
                    }
                }
            }
            if !out.is_empty() {
                return Some(out);
            }
            // A service's name on one of its networks: its ready tasks only (none ready:
            // an empty answer, never a task that is starting, unhealthy or stopping),
            // in a rotating order (DNS round robin).
            let mut is_service = false;
            for mine in &me.net.endpoints {
                for (sid, svc) in st.service_dns.iter().filter(|(_, s)| {
                    s.networks.contains(&mine.network_id) && s.names.contains(&name)
                }) {
                    is_service = true;
                    // Its virtual IP on this network, unless `tasks.NAME` is asked.
                    let vip = st
                        .networks
                        .get(&mine.network_id)
                        .and_then(|n| n.rec.service_vips.get(sid));
                    if let Some(v) = vip.filter(|_| !name.starts_with("tasks.")) {
                        if !out.contains(&IpAddr::V4(v.vip)) {
                            out.push(IpAddr::V4(v.vip));
                        }
                        continue;
                    }
                    for cid in &svc.ready {
                        let Some(live) = st.live.get(cid) else {
                            continue;
                        };
                        for ep in live
                            .net
                            .endpoints
                            .iter()
                            .filter(|e| e.network_id == mine.network_id)
                        {
                            push_addresses(&mut out, ep);
                        }
                    }
                }
            }
            if is_service {
                if !out.is_empty() {
                    let turn = ROUND_ROBIN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let n = out.len();
                    out.rotate_left(turn % n);
                }
                return Some(out);
            }
            for mine in &me.net.endpoints {
                for other in st.live.values() {
                    for ep in other
                        .net
                        .endpoints
                        .iter()
                        .filter(|e| e.network_id == mine.network_id)
                    {
                        if ep.dns_names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                            push_addresses(&mut out, ep);
                        }
                    }
                }
            }
            (!out.is_empty()).then_some(out)
        })
    }

    fn reverse(&self, client: IpAddr, ip: IpAddr) -> Option<String> {
        self.with_state(|st, nid| {
            let me = client_of(st, nid, client)?;
            for mine in &me.net.endpoints {
                for other in st.live.values() {
                    if let Some(ep) = other.net.endpoints.iter().find(|e| {
                        e.network_id == mine.network_id
                            && (IpAddr::V4(e.ip) == ip || e.ip6.map(IpAddr::V6) == Some(ip))
                    }) {
                        return ep.dns_names.first().cloned();
                    }
                }
            }
            None
        })
    }

    fn upstreams(&self, client: IpAddr) -> Vec<SocketAddr> {
        self.with_state(|st, nid| client_of(st, nid, client).map(|l| l.upstreams.clone()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_the_kernel_limit_and_are_stable() {
        let a = veth_name(&"a".repeat(64), &"b".repeat(64));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("bth"));
        assert_eq!(a, veth_name(&"a".repeat(64), &"b".repeat(64)));
        assert_ne!(a, veth_name(&"a".repeat(64), &"c".repeat(64)));
    }

    #[test]
    fn port_keys_and_host_ports_parse() {
        assert_eq!(parse_port_key("80").unwrap(), (80, "tcp".into()));
        assert_eq!(parse_port_key("53/UDP").unwrap(), (53, "udp".into()));
        assert!(parse_port_key("80/sctp").is_err());
        assert!(parse_port_key("0/tcp").is_err());
        assert!(parse_port_key("x/tcp").is_err());
        assert_eq!(parse_host_ports("").unwrap(), None);
        assert_eq!(parse_host_ports("0").unwrap(), None);
        assert_eq!(parse_host_ports("8080").unwrap(), Some((8080, 8080)));
        assert_eq!(parse_host_ports("8000-8010").unwrap(), Some((8000, 8010)));
        assert!(parse_host_ports("9-8").is_err());
        assert!(parse_host_ports("70000").is_err());
    }

    #[test]
    fn links_parse_as_docker_s_parse_link() {
        assert_eq!(parse_link("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(
            parse_link("db:cache").unwrap(),
            ("db".into(), "cache".into())
        );
        assert_eq!(
            parse_link("/db:/web/cache").unwrap(),
            ("db".into(), "cache".into())
        );
        assert!(parse_link("").is_err());
        assert_eq!(
            parse_link("a:b:c").unwrap_err().message,
            "bad format for links: a:b:c"
        );
    }

    /// Docker's `links.Link.ToEnv`: the lowest port (tcp first) as ALIAS_PORT, runs of
    /// consecutive ports with _START/_END, every port's four variables, the name, the
    /// target's environment but HOME and PATH.
    #[test]
    fn link_env_is_docker_s() {
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        let env = link_env(
            "/web/my-db",
            ip,
            &[
                "A=1".into(),
                "PATH=/bin".into(),
                "HOME=/root".into(),
                "BARE".into(),
            ],
            &[
                "6380/tcp".into(),
                "6379/tcp".into(),
                "6379/udp".into(),
                "80/tcp".into(),
            ],
        );
        assert_eq!(
            env,
            [
                "MY_DB_PORT=tcp://10.0.0.2:80",
                "MY_DB_PORT_6379_TCP_START=tcp://10.0.0.2:6379",
                "MY_DB_PORT_6379_TCP_ADDR=10.0.0.2",
                "MY_DB_PORT_6379_TCP_PROTO=tcp",
                "MY_DB_PORT_6379_TCP_PORT_START=6379",
                "MY_DB_PORT_6379_TCP_END=tcp://10.0.0.2:6380",
                "MY_DB_PORT_6379_TCP_PORT_END=6380",
                "MY_DB_PORT_80_TCP=tcp://10.0.0.2:80",
                "MY_DB_PORT_80_TCP_ADDR=10.0.0.2",
                "MY_DB_PORT_80_TCP_PORT=80",
                "MY_DB_PORT_80_TCP_PROTO=tcp",
                "MY_DB_PORT_6379_TCP=tcp://10.0.0.2:6379",
                "MY_DB_PORT_6379_TCP_ADDR=10.0.0.2",
                "MY_DB_PORT_6379_TCP_PORT=6379",
                "MY_DB_PORT_6379_TCP_PROTO=tcp",
                "MY_DB_PORT_6379_UDP=udp://10.0.0.2:6379",
                "MY_DB_PORT_6379_UDP_ADDR=10.0.0.2",
                "MY_DB_PORT_6379_UDP_PORT=6379",
                "MY_DB_PORT_6379_UDP_PROTO=udp",
                "MY_DB_PORT_6380_TCP=tcp://10.0.0.2:6380",
                "MY_DB_PORT_6380_TCP_ADDR=10.0.0.2",
                "MY_DB_PORT_6380_TCP_PORT=6380",
                "MY_DB_PORT_6380_TCP_PROTO=tcp",
                "MY_DB_NAME=/web/my-db",
                "MY_DB_ENV_A=1",
            ]
        );
    }

    #[test]
    fn extra_hosts_parse() {
        assert_eq!(
            parse_extra_host("db:10.1.2.3").unwrap(),
            ("db".into(), "10.1.2.3".into())
        );
        assert_eq!(
            parse_extra_host("db=::1").unwrap(),
            ("db".into(), "::1".into())
        );
        assert_eq!(
            parse_extra_host("gw:host-gateway").unwrap().1,
            "host-gateway"
        );
        assert!(parse_extra_host("db").is_err());
        assert!(parse_extra_host("db:nope").is_err());
    }

    #[test]
    fn macs_parse_as_go_parses_them_and_must_be_unicast() {
        for ok in ["02:42:AC:11:00:02", "02-42-ac-11-00-02", "0242.ac11.0002"] {
            assert_eq!(parse_mac(ok).unwrap(), [2, 0x42, 0xac, 0x11, 0, 2], "{ok}");
        }
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:zz:11:00:02",
            "0242ac110002",
            "02:42:ac:11:00:02:03",
        ] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.message.contains("invalid MAC address"), "{bad}: {e}");
        }
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .message
            .contains("multicast"));
        assert!(parse_mac("00:00:00:00:00:00").is_err());
    }

    #[test]
    fn endpoint_sysctls_and_interface_names() {
        let rec = Engine::predefined("n");
        let got = parse_endpoint_sysctls(
            "net.ipv4.conf.IFNAME.log_martians=1, net.ipv6.conf.ifname.accept_ra=0",
            &rec,
        )
        .unwrap();
        assert_eq!(
            got[0],
            ("ipv4/conf".into(), "log_martians".into(), "1".into())
        );
        assert_eq!(got[1].1, "accept_ra");
        for bad in [
            "net.ipv4.conf.eth0.log_martians=1",
            "net.ipv4.conf.IFNAME=1",
            "kernel.x.y.IFNAME.z=1",
            "net.ipv4.conf.IFNAME.../x=1",
            "net.ipv4.conf.IFNAME.log_martians=",
        ] {
            assert!(parse_endpoint_sysctls(bad, &rec).is_err(), "{bad}");
        }
        assert!(parse_endpoint_sysctls("net.ipv4.conf.IFNAME.x", &rec)
            .unwrap_err()
            .message
            .contains("format name=value"));
        let att = |ifname: Option<&str>| NetAttachment {
            driver_opts: ifname
                .map(|n| BTreeMap::from([(OPT_EP_IFNAME.to_string(), n.to_string())]))
                .unwrap_or_default(),
            ..NetAttachment::default()
        };
        // Automatic names skip the ones asked for.
        assert_eq!(
            interface_names(&[att(None), att(Some("eth0")), att(None)]),
            ["eth1", "eth0", "eth2"]
        );
        assert!(check_ifnames(&[att(Some("x0")), att(Some("x0"))]).is_err());
        assert!(check_ifnames(&[att(Some("x0")), att(None)]).is_ok());
    }

    #[test]
    fn predefined_ids_are_stable_hex() {
        let h = predefined_id("host");
        assert_eq!(h.len(), 64);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(h[..12], predefined_id("none")[..12]);
    }
}
