//! berth's nftables table (`table ip berth`): address translation for published ports
//! and outbound traffic, and the isolation of berth's bridges.
//!
//! The engine keeps the whole model ([`Ruleset`]: every bridge network and every
//! published port) and hands it here on every change and at daemon start. [`render`]
//! turns it into one nft script that creates an empty `ip berth` table (so that the
//! delete cannot fail), deletes it and writes the full table again; [`apply`] feeds that
//! script to `nft -f -`, which runs it as ONE transaction. The switch from the old rules to
//! the new ones is therefore atomic (no packet ever sees a half-built table) and
//! idempotent (applying the same model twice gives the same table), and nothing outside
//! berth's own table is ever read or changed. Plain nft syntax is rendered (not JSON) so
//! that the output is easy to read in review, in `nft list table ip berth` and in tests.
//!
//! What the rules do (IPv4; the `ip6 berth` table does the same for dual-stack networks,
//! see `render6`):
//!
//! - `published` (jumped to from the nat `prerouting` and `output` hooks for packets to
//!   an address of the host, `fib daddr type local`): DNAT of each published port to its
//!   container. From the output hook this covers connections from the host itself,
//!   127.0.0.1 included (the engine sets `route_localnet` on the bridge so that the
//!   rerouted packet may keep its loopback source until it is masqueraded). Prerouting
//!   never translates packets addressed to 127.0.0.0/8: a neighbour on the link could
//!   otherwise reach ports published on loopback only (CVE-2020-8558), nor DNS queries
//!   from a bridge to its gateway (the embedded DNS server), even when port 53 is
//!   published. Published ports are reachable from every bridge through the host's
//!   addresses, as with Docker's userland proxy. (berth's own userland proxy serves
//!   only what these rules cannot: `::1`, and IPv6 for containers without IPv6; the
//!   engine gives it no rule here.)
//! - `postrouting`: masquerade of loopback sources leaving through a bridge (host to
//!   127.0.0.1:published), of translated traffic from a bridge's subnet going back out
//!   of that bridge (hairpin: a container reaching a published port of its own network,
//!   itself included, gets replies back through the host), and of a bridge's subnet
//!   leaving through any other interface (outbound NAT, unless `masquerade` is false).
//! - `forward` (filter): replies (`ct state established,related`) pass; an internal
//!   bridge forwards nothing to or from another interface; traffic between containers of
//!   one bridge (seen here only when br_netfilter is active) passes when `icc` is set and
//!   is dropped otherwise (published ports excepted); traffic entering a bridge from
//!   anywhere else passes only when it was translated by a published port (`ct status
//!   dnat`), so unpublished container ports cannot be reached from other hosts and two
//!   berth bridges cannot talk to each other directly. Base chains have policy accept:
//!   traffic that involves no berth bridge is left alone.
//!
//! The rules hold both with and without br_netfilter. Without it, intra-bridge traffic
//! never reaches the IP hooks, so `icc = false` needs br_netfilter to be enforced. With
//! it, a container reaching its OWN published port is DNATed back to the bridge port it
//! came from; the bridge only sends a frame back out of its ingress port when that port
//! is in hairpin mode, so container veths must have `hairpin on` (link's job).

use std::collections::HashSet;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The family and name of berth's table.
pub const TABLE: &str = "ip berth";
/// Its IPv6 twin, for dual-stack networks (present only while one exists).
pub const TABLE6: &str = "ip6 berth";

/// The nft binary: where Debian's `nftables` package puts it, else looked up in PATH
/// (a daemon's PATH does not always include the sbin directories).
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// Whether the `nft` program berth applies its rules with is installed (where
/// [`apply`] looks for it: `/usr/sbin`, `/sbin`, then `PATH`).
pub fn program_found() -> bool {
    let on_path = || {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nft").is_file()))
    };
    nft_binary() != "nft" || on_path()
}

/// Everything berth's table must express: all bridge networks and all published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
    /// The kernel has IPv6: the `ip6 berth` table is managed (written while a bridge has
    /// an IPv6 subnet, deleted otherwise). Without IPv6 it is never named.
    #[serde(default)]
    pub ip6: bool,
    /// Services' published ports (IPv4, every address of the host), each spread over
    /// the service's ready tasks.
    #[serde(default)]
    pub services: Vec<ServicePortRule>,
    /// Services' virtual IPs, one per service and network.
    #[serde(default)]
    pub vips: Vec<ServiceVipRule>,
}

/// A service's virtual IP on one bridge network (an address of the bridge's subnet,
/// held by the host): new connections from that bridge to `vip`, on any protocol and
/// port, go to one of `backends` (random, per connection), unchanged in port. No backend:
/// packets to it are dropped (the host's own services are never reached through it).
/// Replies come back through the host (the hairpin masquerade), so the task sees the
/// gateway's address as the client's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVipRule {
    pub service: String,
    pub bridge: String,
    pub vip: Ipv4Addr,
    /// The ready tasks' addresses on that bridge.
    pub backends: Vec<Ipv4Addr>,
}

/// A service's published port: new connections to `host_port` on any address of the
/// host go to one of `backends` (random, per connection: `numgen random`), on
/// `target_port`. A backend taken out gets no new connection; the ones it has keep
/// their translation (conntrack) until they end. No backend: no rule (the host's port
/// answers as unpublished).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePortRule {
    /// The service's name (in the rule's comment).
    pub service: String,
    pub proto: Proto,
    pub host_port: u16,
    pub target_port: u16,
    /// The ready tasks' addresses, each on one of the model's bridges.
    pub backends: Vec<Ipv4Addr>,
}

/// One bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeRules {
    /// The bridge interface, e.g. `berth0`.
    pub bridge: String,
    /// The network's subnet (the gateway address is on the bridge).
    pub subnet: ipnet::Ipv4Net,
    /// Masquerade traffic from the subnet leaving through another interface (false for
    /// `--internal` networks, which do not leave anyway).
    pub masquerade: bool,
    /// No traffic to or from any other interface at all.
    pub internal: bool,
    /// Containers on this bridge may talk to each other (Docker's
    /// `com.docker.network.bridge.enable_icc`, default true).
    pub icc: bool,
    /// A dual-stack network's IPv6 subnet (its gateway is on the bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<ipnet::Ipv6Net>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port: `host_ip:host_port/proto` -> `container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRule {
    pub proto: Proto,
    /// The host address the port is published on; `None` means every address of the
    /// host; `Some(127.0.0.1)` publishes on loopback only.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The bridge the container address is on (must be one of the model's bridges).
    pub bridge: String,
    /// Published on this IPv6 address of the host only (then `host_ip` is None and
    /// nothing is published on IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip6: Option<Ipv6Addr>,
    /// The container's IPv6 address on a dual-stack bridge: a port published on every
    /// address (or on `host_ip6`) is also translated for IPv6 to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ip6: Option<Ipv6Addr>,
}

impl PortRule {
    /// The IPv4 addresses it is published on: None when none (IPv6 only), Some(None)
    /// every one.
    fn v4_scope(&self) -> Option<Option<Ipv4Addr>> {
        self.host_ip6.is_none().then_some(self.host_ip)
    }
    /// The IPv6 addresses it claims: None when none (an IPv4 address only), Some(None)
    /// every one (claimed even for a container without IPv6, as Docker binds `[::]`).
    fn v6_scope(&self) -> Option<Option<Ipv6Addr>> {
        self.host_ip.is_none().then_some(self.host_ip6)
    }
}

fn scopes_overlap<T: PartialEq>(a: Option<Option<T>>, b: Option<Option<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.is_none() || b.is_none() || a == b,
        _ => false,
    }
}

/// Checks that `r` can be rendered safely and means something: bridge names are plain
/// interface names (they are written into the script), unique, with disjoint subnets;
/// each port names a known, non-internal bridge, a container address in its subnet,
/// non-zero ports, and does not overlap another port of the same protocol.
pub fn validate(r: &Ruleset) -> Result<()> {
    let mut names = HashSet::new();
    for (i, b) in r.bridges.iter().enumerate() {
        let object = format!("bridge {:?}", b.bridge);
        if !valid_ifname(&b.bridge) {
            return Err(Error::invalid(
                object,
                "an interface name must be 1 to 15 characters among a-z, A-Z, 0-9, '-', '_' and '.'",
            ));
        }
        if !names.insert(b.bridge.as_str()) {
            return Err(Error::invalid(
                object,
                "the bridge appears twice in the model",
            ));
        }
        if let Some(other) = r.bridges[..i].iter().find(|o| {
            o.subnet.contains(&b.subnet.network()) || b.subnet.contains(&o.subnet.network())
        }) {
            return Err(Error::invalid(
                object,
                format!(
                    "subnet {} overlaps subnet {} of bridge {:?}",
                    b.subnet, other.subnet, other.bridge
                ),
            ));
        }
    }
    for (i, b) in r.bridges.iter().enumerate() {
        let Some(s6) = b.subnet6 else { continue };
        let object = format!("bridge {:?}", b.bridge);
        if !r.ip6 {
            return Err(Error::invalid(
                object,
                format!("IPv6 subnet {s6}: this host has no IPv6"),
            ));
        }
        if let Some(other) = r.bridges[..i].iter().find(|o| {
            o.subnet6
                .is_some_and(|o6| o6.contains(&s6.network()) || s6.contains(&o6.network()))
        }) {
            return Err(Error::invalid(
                object,
                format!(
                    "IPv6 subnet {s6} overlaps the IPv6 subnet of bridge {:?}",
                    other.bridge
                ),
            ));
        }
    }
    for (i, p) in r.ports.iter().enumerate() {
        let object = format!("published port {}", describe_port(p));
        let Some(b) = r.bridges.iter().find(|b| b.bridge == p.bridge) else {
            return Err(Error::invalid(
                object,
                format!("bridge {:?} is not in the model", p.bridge),
            ));
        };
        if b.internal {
            return Err(Error::invalid(
                object,
                format!(
                    "bridge {:?} is internal: no port can be published on it",
                    p.bridge
                ),
            ));
        }
        if !b.subnet.contains(&p.container_ip) {
            return Err(Error::invalid(
                object,
                format!(
                    "container address {} is not in subnet {} of bridge {:?}",
                    p.container_ip, b.subnet, b.bridge
                ),
            ));
        }
        if p.host_port == 0 || p.container_port == 0 {
            return Err(Error::invalid(object, "port 0 cannot be published"));
        }
        if p.host_ip.is_some() && p.host_ip6.is_some() {
            return Err(Error::invalid(
                object,
                "one port rule publishes on one host address (IPv4 or IPv6) or on all",
            ));
        }
        if let Some(c6) = p.container_ip6 {
            if !b.subnet6.is_some_and(|s6| s6.contains(&c6)) {
                return Err(Error::invalid(
                    object,
                    format!(
                        "container address {c6} is not in the IPv6 subnet of bridge {:?}",
                        b.bridge
                    ),
                ));
            }
        } else if p.host_ip6.is_some() {
            return Err(Error::invalid(
                object,
                "published on an IPv6 address of the host, but the container has no IPv6 address on this bridge",
            ));
        }
        if p.host_ip6.is_some_and(|h| h.is_loopback()) {
            return Err(Error::invalid(
                object,
                "::1: the kernel routes no loopback IPv6 traffic off the host, so a port cannot be published on it without a userland proxy (publish on 127.0.0.1 or on every address)",
            ));
        }
        if let Some(other) = r.ports[..i].iter().find(|o| {
            o.proto == p.proto
                && o.host_port == p.host_port
                && (scopes_overlap(o.v4_scope(), p.v4_scope())
                    || scopes_overlap(o.v6_scope(), p.v6_scope()))
        }) {
            return Err(Error::conflict(
                object,
                format!("already published by {}", describe_port(other)),
            ));
        }
    }
    validate_services(r)?;
    validate_vips(r)
}

/// Service ports: names safe in a comment, ports non-zero, backends on a bridge that
/// is not internal, no overlap with each other or with a container's published port.
fn validate_services(r: &Ruleset) -> Result<()> {
    for (i, sp) in r.services.iter().enumerate() {
        let object = format!(
            "published port {}/{} of service {:?}",
            sp.host_port, sp.proto, sp.service
        );
        if sp.service.is_empty()
            || !sp
                .service
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(Error::invalid(object, "a service name is [A-Za-z0-9_.-]+"));
        }
        if sp.host_port == 0 || sp.target_port == 0 {
            return Err(Error::invalid(object, "port 0 cannot be published"));
        }
        for ip in &sp.backends {
            if !r
                .bridges
                .iter()
                .any(|b| !b.internal && b.subnet.contains(ip))
            {
                return Err(Error::invalid(
                    object,
                    format!("task address {ip} is on no bridge that may publish ports"),
                ));
            }
        }
        if let Some(other) = r.services[..i]
            .iter()
            .find(|o| o.proto == sp.proto && o.host_port == sp.host_port)
        {
            return Err(Error::conflict(
                object,
                format!("already published by service {:?}", other.service),
            ));
        }
        if let Some(p) = r
            .ports
            .iter()
            .find(|p| p.proto == sp.proto && p.host_port == sp.host_port && p.v4_scope().is_some())
        {
            return Err(Error::conflict(
                object,
                format!("already published by {}", describe_port(p)),
            ));
        }
    }
    Ok(())
}

fn validate_vips(r: &Ruleset) -> Result<()> {
    for (i, v) in r.vips.iter().enumerate() {
        let object = format!("virtual IP {} of service {:?}", v.vip, v.service);
        if v.service.is_empty()
            || !v
                .service
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(Error::invalid(object, "a service name is [A-Za-z0-9_.-]+"));
        }
        let Some(b) = r.bridges.iter().find(|b| b.bridge == v.bridge) else {
            return Err(Error::invalid(
                object,
                format!("bridge {:?} is not in the model", v.bridge),
            ));
        };
        for ip in std::iter::once(&v.vip).chain(&v.backends) {
            if !b.subnet.contains(ip) {
                return Err(Error::invalid(
                    object,
                    format!("{ip} is not in {}'s subnet {}", b.bridge, b.subnet),
                ));
            }
        }
        if r.vips[..i].iter().any(|o| o.vip == v.vip) {
            return Err(Error::conflict(
                object,
                "the address is another service's virtual IP",
            ));
        }
    }
    Ok(())
}

fn render_vip(v: &ServiceVipRule) -> String {
    let head = format!("iifname \"{}\" ip daddr {}", v.bridge, v.vip);
    let comment = format!("service {}: virtual IP on {}", v.service, v.bridge);
    match v.backends.as_slice() {
        [] => format!("{head} drop comment \"{comment} (no ready task)\""),
        [one] => format!("{head} dnat to {one} comment \"{comment}\""),
        many => format!(
            "{head} dnat to numgen random mod {} map {{ {} }} comment \"{comment}\"",
            many.len(),
            many.iter()
                .enumerate()
                .map(|(i, ip)| format!("{i} : {ip}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn render_service_port(sp: &ServicePortRule) -> Option<String> {
    let to = match sp.backends.as_slice() {
        [] => return None,
        [one] => one.to_string(),
        many => format!(
            "numgen random mod {} map {{ {} }}",
            many.len(),
            many.iter()
                .enumerate()
                .map(|(i, ip)| format!("{i} : {ip}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Some(format!(
        "{proto} dport {} dnat to {to}:{} comment \"service {}: 0.0.0.0:{}/{proto}\"",
        sp.host_port,
        sp.target_port,
        sp.service,
        sp.host_port,
        proto = sp.proto,
    ))
}

/// Linux interface names are at most 15 bytes; berth keeps to characters that need no
/// quoting anywhere (nft, ip, sysctl paths).
fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && name != "."
        && name != ".."
}

fn describe_port(p: &PortRule) -> String {
    let host = match (p.host_ip, p.host_ip6) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(ip6)) => format!("[{ip6}]"),
        (None, None) => "0.0.0.0".to_string(),
    };
    format!(
        "{host}:{}/{} -> {}:{} on {}",
        p.host_port, p.proto, p.container_ip, p.container_port, p.bridge
    )
}

/// The nft script that replaces berth's table with the rules for `r`, in one
/// transaction. Deterministic: same model, same text (rules follow the model's order).
/// The model must have passed [`validate`] (as [`apply`] ensures): names are written
/// into the script as they are.
pub fn render(r: &Ruleset) -> String {
    let mut published = Vec::new();
    for p in r.ports.iter().filter(|p| p.v4_scope().is_some()) {
        let daddr = p
            .host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        published.push(format!(
            "{daddr}{proto} dport {} dnat to {}:{} comment \"{}\"",
            p.host_port,
            p.container_ip,
            p.container_port,
            describe_port(p),
            proto = p.proto,
        ));
    }
    published.extend(r.services.iter().filter_map(render_service_port));

    let mut postrouting = Vec::new();
    for b in &r.bridges {
        let (br, net) = (&b.bridge, b.subnet.trunc());
        if b.internal {
            // nothing is published on it and nothing leaves it
            continue;
        }
        postrouting.push(format!(
            "oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade comment \"host to a port published on loopback, {br}\""
        ));
        postrouting.push(format!(
            "oifname \"{br}\" ip saddr {net} ct status dnat masquerade comment \"hairpin: {br} to a published port on {br}\""
        ));
        if b.masquerade {
            postrouting.push(format!(
                "oifname != \"{br}\" ip saddr {net} masquerade comment \"outbound from {br}\""
            ));
        }
    }

    let mut forward = vec![
        "ct state established,related accept comment \"replies and related traffic\"".to_string(),
    ];
    for b in &r.bridges {
        let br = &b.bridge;
        if b.internal {
            forward.push(format!(
                "iifname \"{br}\" oifname != \"{br}\" drop comment \"{br} is internal\""
            ));
            forward.push(format!(
                "oifname \"{br}\" iifname != \"{br}\" drop comment \"{br} is internal\""
            ));
        }
        if b.icc {
            forward.push(format!(
                "iifname \"{br}\" oifname \"{br}\" accept comment \"{br}: containers may talk to each other\""
            ));
        } else {
            forward.push(format!(
                "iifname \"{br}\" oifname \"{br}\" ct status dnat accept comment \"{br}: published ports\""
            ));
            forward.push(format!(
                "iifname \"{br}\" oifname \"{br}\" drop comment \"{br}: inter-container traffic disabled\""
            ));
        }
        forward.push(format!(
            "oifname \"{br}\" ct status dnat accept comment \"published ports on {br}\""
        ));
        forward.push(format!(
            "oifname \"{br}\" drop comment \"{br} accepts only published ports and replies\""
        ));
    }

    let mut s = String::new();
    s.push_str("# berth's own table, regenerated in full; nothing else is touched\n");
    s.push_str(&format!("table {TABLE} {{}}\n"));
    s.push_str(&format!("delete table {TABLE}\n"));
    s.push_str(&format!("table {TABLE} {{\n"));
    s.push_str("\tcomment \"managed by berth: changes are overwritten\"\n");
    chain(&mut s, "published", None, &published);
    // Virtual IPs first: a port published on all addresses must not capture them.
    let mut prerouting: Vec<String> = r.vips.iter().map(render_vip).collect();
    for b in &r.bridges {
        // the embedded DNS server listens on the gateway: the address of the host that
        // is in the bridge's subnet; a port 53 published on all addresses must not
        // capture the containers' queries
        prerouting.push(format!(
            "iifname \"{br}\" ip daddr {net} meta l4proto {{ tcp, udp }} th dport 53 return comment \"{br}: the embedded DNS server on the gateway\"",
            br = b.bridge,
            net = b.subnet.trunc(),
        ));
    }
    prerouting.push("ip daddr != 127.0.0.0/8 fib daddr type local jump published comment \"to the host from outside (never to loopback)\"".to_string());
    chain(
        &mut s,
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        &prerouting,
    );
    chain(
        &mut s,
        "output",
        Some("type nat hook output priority -100; policy accept;"),
        &["fib daddr type local jump published comment \"from the host to itself, loopback included\"".to_string()],
    );
    chain(
        &mut s,
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &postrouting,
    );
    chain(
        &mut s,
        "forward",
        Some("type filter hook forward priority filter; policy accept;"),
        &forward,
    );
    s.push_str("}\n");
    if r.ip6 && r.bridges.iter().any(|b| b.subnet6.is_some()) {
        render6(r, &forward, &mut s);
    }
    s
}

/// The `ip6 berth` table, in the same transaction as `ip berth`: deleted, then written
/// again (only while some bridge is dual-stack: a host whose nftables lacks the ip6
/// family never sees it otherwise).
/// The same forward rules as IPv4's (they name interfaces only); published ports of
/// containers with an IPv6 address translated for the host's IPv6 addresses (never
/// `::1`: see [`validate`]); masquerade of a dual-stack subnet leaving it (outbound, and
/// hairpin to a published port).
fn render6(r: &Ruleset, forward: &[String], s: &mut String) {
    s.push_str(&format!("table {TABLE6} {{}}\n"));
    s.push_str(&format!("delete table {TABLE6}\n"));
    let mut published = Vec::new();
    for p in &r.ports {
        let (Some(c6), Some(_)) = (p.container_ip6, p.v6_scope()) else {
            continue;
        };
        let daddr = p
            .host_ip6
            .map(|ip| format!("ip6 daddr {ip} "))
            .unwrap_or_default();
        published.push(format!(
            "{daddr}{proto} dport {} dnat to [{c6}]:{} comment \"{}\"",
            p.host_port,
            p.container_port,
            describe_port(p),
            proto = p.proto,
        ));
    }
    let mut postrouting = Vec::new();
    for b in &r.bridges {
        let (Some(s6), false) = (b.subnet6, b.internal) else {
            continue;
        };
        let (br, net) = (&b.bridge, s6.trunc());
        postrouting.push(format!(
            "oifname \"{br}\" ip6 saddr {net} ct status dnat masquerade comment \"hairpin: {br} to a published port on {br}\""
        ));
        if b.masquerade {
            postrouting.push(format!(
                "oifname != \"{br}\" ip6 saddr {net} masquerade comment \"outbound from {br}\""
            ));
        }
    }
    s.push_str(&format!("table {TABLE6} {{\n"));
    s.push_str("\tcomment \"managed by berth: changes are overwritten\"\n");
    chain(s, "published", None, &published);
    chain(
        s,
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        &["ip6 daddr != ::1 fib daddr type local jump published comment \"to the host from outside\"".to_string()],
    );
    chain(
        s,
        "output",
        Some("type nat hook output priority -100; policy accept;"),
        &["ip6 daddr != ::1 fib daddr type local jump published comment \"from the host to itself (not ::1)\"".to_string()],
    );
    chain(
        s,
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &postrouting,
    );
    chain(
        s,
        "forward",
        Some("type filter hook forward priority filter; policy accept;"),
        forward,
    );
    s.push_str("}\n");
}

fn chain(s: &mut String, name: &str, base: Option<&str>, rules: &[String]) {
    s.push_str(&format!("\tchain {name} {{\n"));
    if let Some(base) = base {
        s.push_str(&format!("\t\t{base}\n"));
    }
    for rule in rules {
        s.push_str(&format!("\t\t{rule}\n"));
    }
    s.push_str("\t}\n");
}

/// Replaces berth's table with the rules for `r`, atomically (one `nft -f -`
/// transaction). An invalid model changes nothing.
pub fn apply(r: &Ruleset) -> Result<()> {
    validate(r)?;
    run_nft(&["-f", "-"], &render(r))?;
    let dual = r.bridges.iter().any(|b| b.subnet6.is_some());
    if dual {
        IP6_TABLE_MAYBE.store(true, Ordering::Relaxed);
    } else if r.ip6 && IP6_TABLE_MAYBE.swap(false, Ordering::Relaxed) {
        // The last dual-stack network is gone (or a previous daemon may have left the
        // table): removed on its own, once, so that the IPv4 rules never depend on the
        // ip6 family. A failure (no such family) means there is no such table.
        let _ = run_nft(
            &["-f", "-"],
            &format!("table {TABLE6} {{}}\ndelete table {TABLE6}\n"),
        );
    }
    Ok(())
}

/// Whether `ip6 berth` may exist (unknown at start: a previous daemon may have left it).
static IP6_TABLE_MAYBE: AtomicBool = AtomicBool::new(true);

/// Checks `r` with `nft -c` (parse and kernel validation, nothing is committed).
pub fn check(r: &Ruleset) -> Result<()> {
    validate(r)?;
    run_nft(&["-c", "-f", "-"], &render(r))
}

/// Deletes berth's table if it exists (in one transaction; fine if it does not).
pub fn remove() -> Result<()> {
    run_nft(
        &["-f", "-"],
        &format!("table {TABLE} {{}}\ndelete table {TABLE}\n"),
    )?;
    if IP6_TABLE_MAYBE.swap(false, Ordering::Relaxed) {
        let _ = run_nft(
            &["-f", "-"],
            &format!("table {TABLE6} {{}}\ndelete table {TABLE6}\n"),
        );
    }
    Ok(())
}

fn run_nft(args: &[&str], script: &str) -> Result<()> {
    let object = format!("nftables table {TABLE}");
    let nft = nft_binary();
    let mut child = Command::new(nft)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::unavailable(
                &object,
                format!("cannot run {nft} (is the nftables package installed?): {e}"),
            )
        })?;
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(script.as_bytes()),
        None => Ok(()),
    };
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(&object, "waiting for nft", e))?;
    if !out.status.success() {
        return Err(Error::internal(
            object,
            format!(
                "nft {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    written.map_err(|e| Error::io(object, "writing the script to nft", e))
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Turns IPv6 forwarding on (in the calling thread's network namespace) if it is off,
/// for dual-stack networks; returns the interfaces that take router advertisements only
/// while the host does not forward (`accept_ra` 1): with forwarding on they stop doing
/// so, which the engine warns about (set their `accept_ra` to 2 to keep them), as the
/// kernel's rule is the same for every engine. Ok(None) when it was on already.
pub fn enable_ipv6_forward() -> Result<Option<Vec<String>>> {
    let cur =
        std::fs::read_to_string(IP6_FORWARD).map_err(|e| Error::io(IP6_FORWARD, "read", e))?;
    if cur.trim() != "0" {
        return Ok(None);
    }
    let mut ra1 = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/sys/net/ipv6/conf") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if matches!(name.as_str(), "all" | "default" | "lo") {
                continue;
            }
            let ra = std::fs::read_to_string(e.path().join("accept_ra")).unwrap_or_default();
            if ra.trim() == "1" {
                ra1.push(name);
            }
        }
    }
    ra1.sort();
    std::fs::write(IP6_FORWARD, "1").map_err(|e| Error::io(IP6_FORWARD, "write", e))?;
    Ok(Some(ra1))
}

/// Turns IPv4 forwarding on (in the calling thread's network namespace) if it is off;
/// returns whether it changed, so that the engine can log it.
pub fn enable_ip_forward() -> Result<bool> {
    let cur = std::fs::read_to_string(IP_FORWARD).map_err(|e| Error::io(IP_FORWARD, "read", e))?;
    if cur.trim() != "0" {
        return Ok(false);
    }
    std::fs::write(IP_FORWARD, "1").map_err(|e| Error::io(IP_FORWARD, "write", e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Ruleset {
        Ruleset {
            bridges: vec![
                BridgeRules {
                    bridge: "berth0".into(),
                    subnet: "100.72.0.0/24".parse().expect("subnet"),
                    masquerade: true,
                    internal: false,
                    icc: true,
                    subnet6: None,
                },
                BridgeRules {
                    bridge: "berth-0a1b2c3d4".into(),
                    subnet: "100.72.1.0/24".parse().expect("subnet"),
                    masquerade: false,
                    internal: true,
                    icc: false,
                    subnet6: None,
                },
            ],
            ports: vec![
                PortRule {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_ip: "100.72.0.2".parse().expect("ip"),
                    container_port: 80,
                    bridge: "berth0".into(),
                    host_ip6: None,
                    container_ip6: None,
                },
                PortRule {
                    proto: Proto::Udp,
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 5353,
                    container_ip: "100.72.0.3".parse().expect("ip"),
                    container_port: 53,
                    bridge: "berth0".into(),
                    host_ip6: None,
                    container_ip6: None,
                },
            ],
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
        }
    }

    fn with_services() -> Ruleset {
        let mut r = example();
        r.services = vec![
            ServicePortRule {
                service: "web".into(),
                proto: Proto::Tcp,
                host_port: 9000,
                target_port: 80,
                backends: vec![
                    "100.72.0.4".parse().expect("ip"),
                    "100.72.0.5".parse().expect("ip"),
                ],
            },
            ServicePortRule {
                service: "one".into(),
                proto: Proto::Udp,
                host_port: 9001,
                target_port: 53,
                backends: vec!["100.72.0.6".parse().expect("ip")],
            },
            ServicePortRule {
                service: "none-ready".into(),
                proto: Proto::Tcp,
                host_port: 9002,
                target_port: 80,
                backends: vec![],
            },
        ];
        r
    }

    #[test]
    fn virtual_ips_translate_from_their_bridge_only_and_drop_without_tasks() {
        let bridge = |name: &str, net: &str| BridgeRules {
            bridge: name.into(),
            subnet: net.parse().unwrap(),
            masquerade: true,
            internal: false,
            icc: true,
            subnet6: None,
        };
        let mut r = Ruleset {
            bridges: vec![bridge("brs1", "100.72.5.0/24")],
            vips: vec![
                ServiceVipRule {
                    service: "web".into(),
                    bridge: "brs1".into(),
                    vip: "100.72.5.254".parse().unwrap(),
                    backends: vec!["100.72.5.2".parse().unwrap(), "100.72.5.3".parse().unwrap()],
                },
                ServiceVipRule {
                    service: "db".into(),
                    bridge: "brs1".into(),
                    vip: "100.72.5.253".parse().unwrap(),
                    backends: vec![],
                },
            ],
            ..Ruleset::default()
        };
        validate(&r).unwrap();
        let text = render(&r);
        let web = "iifname \"brs1\" ip daddr 100.72.5.254 dnat to numgen random mod 2 map { 0 : 100.72.5.2, 1 : 100.72.5.3 }";
        let db = "iifname \"brs1\" ip daddr 100.72.5.253 drop";
        let dns = "th dport 53 return";
        let (w, d, n) = (
            text.find(web).expect(&text),
            text.find(db).expect(&text),
            text.find(dns).expect(&text),
        );
        assert!(
            w < n && d < n,
            "virtual IPs come before the DNS return: {text}"
        );
        // A backend or address outside the bridge's subnet, a bridge not in the model,
        // two services on one address: refused.
        r.vips[1].vip = "100.72.5.254".parse().unwrap();
        assert!(validate(&r)
            .unwrap_err()
            .to_string()
            .contains("another service's virtual IP"));
        r.vips[1].vip = "100.72.6.1".parse().unwrap();
        assert!(validate(&r)
            .unwrap_err()
            .to_string()
            .contains("not in brs1's subnet"));
        r.vips[1].vip = "100.72.5.253".parse().unwrap();
        r.vips[1].bridge = "brs9".into();
        assert!(validate(&r)
            .unwrap_err()
            .to_string()
            .contains("not in the model"));
    }

    #[test]
    fn service_ports_spread_over_their_ready_tasks() {
        let r = with_services();
        validate(&r).expect("valid");
        let text = render(&r);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in [
            "tcp dport 9000 dnat to numgen random mod 2 map { 0 : 100.72.0.4, 1 : 100.72.0.5 }:80 comment \"service web: 0.0.0.0:9000/tcp\"",
            "udp dport 9001 dnat to 100.72.0.6:53 comment \"service one: 0.0.0.0:9001/udp\"",
        ] {
            assert!(lines.contains(&want), "missing line {want:?}\n{text}");
        }
        assert!(
            !text.contains("9002"),
            "a service without a ready task has no rule"
        );
        in_fresh_netns(|| check(&r).expect("nft takes the service rules"));
    }

    #[test]
    fn service_ports_are_checked() {
        let mut r = with_services();
        r.services[1].host_port = 9000;
        r.services[1].proto = Proto::Tcp;
        let e = validate(&r).expect_err("two services on one port");
        assert!(
            e.to_string()
                .contains("already published by service \"web\""),
            "{e}"
        );
        let mut r = with_services();
        r.services[0].host_port = 8080;
        let e = validate(&r).expect_err("a container's port");
        assert!(
            e.to_string()
                .contains("already published by 0.0.0.0:8080/tcp"),
            "{e}"
        );
        let mut r = with_services();
        r.services[0].backends.push("10.9.9.9".parse().expect("ip"));
        let e = validate(&r).expect_err("a backend off the bridges");
        assert!(e.to_string().contains("10.9.9.9"), "{e}");
        let mut r = with_services();
        r.services[0].service = "we\"b".into();
        assert!(validate(&r).is_err());
    }

    /// Runs `f` on a new thread moved into a fresh network namespace.
    fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: only the network namespace is unshared, on a thread of our own
                // that shares no file descriptor table trick with others.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                    .expect("unshare(CLONE_NEWNET) (tests run as root)");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    #[test]
    fn render_example() {
        let text = render(&example());
        println!("{text}");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // the transaction replaces the table, nothing else
        assert_eq!(
            lines[1..4],
            [
                "table ip berth {}",
                "delete table ip berth",
                "table ip berth {"
            ]
        );
        assert!(!text.contains("flush ruleset"));
        for want in [
            "tcp dport 8080 dnat to 100.72.0.2:80 comment \"0.0.0.0:8080/tcp -> 100.72.0.2:80 on berth0\"",
            "ip daddr 127.0.0.1 udp dport 5353 dnat to 100.72.0.3:53 comment \"127.0.0.1:5353/udp -> 100.72.0.3:53 on berth0\"",
            "type nat hook prerouting priority dstnat; policy accept;",
            "iifname \"berth0\" ip daddr 100.72.0.0/24 meta l4proto { tcp, udp } th dport 53 return comment \"berth0: the embedded DNS server on the gateway\"",
            "ip daddr != 127.0.0.0/8 fib daddr type local jump published comment \"to the host from outside (never to loopback)\"",
            "fib daddr type local jump published comment \"from the host to itself, loopback included\"",
            "oifname \"berth0\" ip saddr 127.0.0.0/8 masquerade comment \"host to a port published on loopback, berth0\"",
            "oifname \"berth0\" ip saddr 100.72.0.0/24 ct status dnat masquerade comment \"hairpin: berth0 to a published port on berth0\"",
            "oifname != \"berth0\" ip saddr 100.72.0.0/24 masquerade comment \"outbound from berth0\"",
            "type filter hook forward priority filter; policy accept;",
            "iifname \"berth0\" oifname \"berth0\" accept comment \"berth0: containers may talk to each other\"",
            "oifname \"berth0\" ct status dnat accept comment \"published ports on berth0\"",
            "oifname \"berth0\" drop comment \"berth0 accepts only published ports and replies\"",
            "iifname \"berth-0a1b2c3d4\" oifname != \"berth-0a1b2c3d4\" drop comment \"berth-0a1b2c3d4 is internal\"",
            "oifname \"berth-0a1b2c3d4\" iifname != \"berth-0a1b2c3d4\" drop comment \"berth-0a1b2c3d4 is internal\"",
            "iifname \"berth-0a1b2c3d4\" oifname \"berth-0a1b2c3d4\" drop comment \"berth-0a1b2c3d4: inter-container traffic disabled\"",
        ] {
            assert!(lines.contains(&want), "missing line {want:?}");
        }
        // the internal bridge is not masqueraded outbound
        assert!(!text.contains("outbound from berth-0a1b2c3d4"));
        // model order is kept, and output is deterministic
        let a = text.find("dport 8080").expect("8080");
        let b = text.find("dport 5353").expect("5353");
        assert!(a < b);
        assert_eq!(text, render(&example()));
    }

    #[test]
    fn nft_accepts_the_rendered_scripts() {
        in_fresh_netns(|| {
            check(&example()).expect("example model");
            check(&Ruleset::default()).expect("empty model");
            // and the empty model really gives a table with the hooks and no rules
            apply(&Ruleset::default()).expect("apply empty model");
            remove().expect("remove");
            remove().expect("remove twice");
        });
    }

    /// The example with berth0 dual-stack and its first port translated for IPv6 too.
    fn dual_stack() -> Ruleset {
        let mut r = example();
        r.ip6 = true;
        r.bridges[0].subnet6 = Some("fd00:b::/64".parse().expect("subnet"));
        r.ports[0].container_ip6 = Some("fd00:b::2".parse().expect("ip"));
        r
    }

    #[test]
    fn a_dual_stack_bridge_gets_an_ip6_table_that_goes_with_it() {
        let text = render(&dual_stack());
        assert!(text.contains("table ip6 berth {\n"), "{text}");
        assert!(
            text.contains("tcp dport 8080 dnat to [fd00:b::2]:80"),
            "{text}"
        );
        assert!(
            text.contains("oifname != \"berth0\" ip6 saddr fd00:b::/64 masquerade"),
            "{text}"
        );
        // The loopback-only IPv4 port has no IPv6 twin.
        assert_eq!(text.matches("dport 5353").count(), 1, "{text}");
        // Without a dual-stack bridge the ip6 table is not in the script (apply deletes
        // it on its own); without IPv6 on the host it is never named.
        let mut r = dual_stack();
        r.bridges[0].subnet6 = None;
        r.ports[0].container_ip6 = None;
        assert!(!render(&r).contains("ip6"));
        assert!(!render(&example()).contains("ip6"));
        in_fresh_netns(|| {
            apply(&dual_stack()).expect("apply dual-stack");
            let listed = Command::new(nft_binary())
                .args(["list", "table", "ip6", "berth"])
                .output()
                .expect("nft list");
            let listed = String::from_utf8_lossy(&listed.stdout);
            assert!(listed.contains("dnat to [fd00:b::2]:80"), "{listed}");
            apply(&r).expect("apply without it");
            let gone = Command::new(nft_binary())
                .args(["list", "table", "ip6", "berth"])
                .output()
                .expect("nft list");
            assert!(!gone.status.success(), "the ip6 table is gone");
            remove().expect("remove");
        });
    }

    #[test]
    fn ipv6_ports_and_subnets_are_checked() {
        let mut r = dual_stack();
        r.ports[0].container_ip6 = Some("fd00:c::2".parse().expect("ip"));
        assert!(
            refused(&r).contains("not in the IPv6 subnet"),
            "{}",
            refused(&r)
        );
        let mut r = dual_stack();
        r.ports[0].host_ip6 = Some(Ipv6Addr::LOCALHOST);
        assert!(refused(&r).contains("userland proxy"), "{}", refused(&r));
        let mut r = dual_stack();
        r.ports[1].host_ip = None;
        r.ports[1].host_ip6 = Some("fd00:1::5".parse().expect("ip"));
        assert!(refused(&r).contains("no IPv6 address"), "{}", refused(&r));
        let mut r = dual_stack();
        r.bridges[1].subnet6 = Some("fd00:b:0:0:1::/80".parse().expect("subnet"));
        assert!(
            refused(&r).contains("overlaps the IPv6 subnet"),
            "{}",
            refused(&r)
        );
        let mut r = dual_stack();
        r.ip6 = false;
        assert!(refused(&r).contains("no IPv6"), "{}", refused(&r));
        // A port on an IPv4 address and one on an IPv6 address with the same number do
        // not collide; one on every address collides with both.
        let mut r = dual_stack();
        r.ports[0].host_ip = Some(Ipv4Addr::LOCALHOST);
        r.ports[1].proto = Proto::Tcp;
        r.ports[1].host_port = 8080;
        r.ports[1].host_ip = None;
        r.ports[1].host_ip6 = Some("fd00:1::5".parse().expect("ip"));
        r.ports[1].container_ip6 = Some("fd00:b::3".parse().expect("ip"));
        validate(&r).expect("an IPv4 address beside an IPv6 one");
        r.ports[0].host_ip = None;
        assert!(refused(&r).contains("already published"), "{}", refused(&r));
    }

    fn refused(r: &Ruleset) -> String {
        validate(r)
            .expect_err("the model should be refused")
            .to_string()
    }

    #[test]
    fn nft_errors_carry_nft_stderr() {
        let e = in_fresh_netns(|| {
            run_nft(&["-c", "-f", "-"], "table ip berth { chain c { bogus } }\n")
        })
        .expect_err("nft rejects the script");
        let text = e.to_string();
        assert!(text.contains("nft -c -f - failed"), "{text}");
        assert!(text.contains("bogus"), "{text}");
    }

    #[test]
    fn invalid_models_are_refused() {
        let mut r = example();
        r.bridges[0].bridge = "bad\"name".into();
        assert!(refused(&r).contains("interface name"));

        let mut r = example();
        r.bridges[1].bridge = "berth0".into();
        assert!(refused(&r).contains("appears twice"));

        let mut r = example();
        r.bridges[1].subnet = "100.72.0.0/16".parse().expect("subnet");
        assert!(refused(&r).contains("overlaps"));

        let mut r = example();
        r.ports[0].bridge = "nosuch".into();
        assert!(refused(&r).contains("not in the model"));

        let mut r = example();
        r.ports[0].bridge = "berth-0a1b2c3d4".into();
        r.ports[0].container_ip = "100.72.1.2".parse().expect("ip");
        assert!(refused(&r).contains("internal"));

        let mut r = example();
        r.ports[0].container_ip = "100.72.9.2".parse().expect("ip");
        assert!(refused(&r).contains("not in subnet"));

        let mut r = example();
        r.ports[0].host_port = 0;
        assert!(refused(&r).contains("port 0"));

        // 127.0.0.1:5353/udp and 0.0.0.0:5353/udp overlap; the same port in tcp does not
        let mut r = example();
        let mut p = r.ports[1].clone();
        p.host_ip = None;
        r.ports.push(p.clone());
        let e = validate(&r).expect_err("overlapping ports");
        assert_eq!(e.kind, berth_types::ErrorKind::Conflict);
        assert!(
            e.to_string()
                .contains("already published by 127.0.0.1:5353/udp"),
            "{e}"
        );
        r.ports.pop();
        p.proto = Proto::Tcp;
        r.ports.push(p);
        validate(&r).expect("tcp and udp do not clash");
    }

    #[test]
    fn model_is_serde_roundtrippable() {
        let r = example();
        let json = serde_json::to_string(&r).expect("serialise");
        assert!(json.contains("\"proto\":\"udp\""));
        let back: Ruleset = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, r);
    }
}
