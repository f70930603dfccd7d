//! Bridges, veth pairs, addresses and routes, over rtnetlink; and sysctls.
//!
//! The kernel's own interface, not the `ip` command: no process to spawn, errors come
//! back as errno values (ENODEV, EEXIST) that can be told apart, and nothing depends on
//! the iproute2 version installed. The messages are built with `netlink-packet-route`
//! and exchanged over a plain blocking `netlink-sys` socket (the crate has no async
//! runtime; a request and its acknowledgement are one send and one or two receives).
//!
//! Every function acts in the network namespace of the calling thread, except where a
//! namespace path is given; [`crate::netns::run_in`] runs code in another one.
//!
//! Links berth creates: per network a bridge carrying the gateway address; per container
//! and network a veth pair whose host end is a port of the bridge (with hairpin on, so a
//! container can reach its own published ports through the host's DNAT) and whose peer
//! lives in the container's namespace with its fixed name, MAC, address and routes.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use berth_types::ErrorKind;
use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::{netns, Error, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Checks that `name` can be a Linux interface name: 1 to 15 bytes, no '/', ':' or
/// whitespace, not "." or "..".
fn check_ifname(what: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > IFNAME_MAX
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii_graphic());
    if bad {
        return Err(Error::invalid(
            format!("{what} {name:?}"),
            "an interface name has 1 to 15 printable ASCII characters, none of '/', ':' or a space",
        ));
    }
    Ok(())
}

/// The kind of error an errno from the kernel means.
fn kind_of(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENOENT) => ErrorKind::NotFound,
        Some(libc::EEXIST) => ErrorKind::AlreadyExists,
        Some(libc::EBUSY) => ErrorKind::Conflict,
        Some(libc::EPERM) | Some(libc::EACCES) => ErrorKind::Forbidden,
        Some(libc::EINVAL) | Some(libc::ERANGE) => ErrorKind::InvalidArgument,
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) | Some(libc::ENOSPC) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

fn nl_err(object: impl Into<String>, op: &str, e: io::Error) -> Error {
    Error::new(kind_of(&e), object, format!("{op}: {e}"))
}

/// A blocking rtnetlink socket, bound in the namespace of the thread that opened it.
struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends one request and collects the replies until its acknowledgement (or, for a
    /// dump, its end). An error reply becomes the `io::Error` of its errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let mut replies = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC)?;
            if n > self.buf.len() {
                return Err(io::Error::other(format!(
                    "netlink reply of {n} bytes exceeds the {} byte buffer",
                    self.buf.len()
                )));
            }
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::other(format!("bad netlink reply: {e}")))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue; // a late reply to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(_) => return Err(e.to_io()),
                    },
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, flags).map(|_| ())
    }

    /// The link named `name`, or None.
    fn get_link(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// Changes the link with index `index`: its flags under `mask`, and `attributes`.
    fn set_link(
        &mut self,
        index: u32,
        flags: LinkFlags,
        mask: LinkFlags,
        attributes: Vec<LinkAttribute>,
    ) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.header.change_mask = mask;
        m.attributes = attributes;
        self.ack(RouteNetlinkMessage::SetLink(m), 0)
    }

    fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.set_link(index, LinkFlags::Up, LinkFlags::Up, Vec::new())
    }

    fn delete(&mut self, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.ack(RouteNetlinkMessage::DelLink(m), 0)
    }

    /// The IPv4 addresses of link `index` (address, prefix length).
    fn ipv4_addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let local = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(IpAddr::V4(v4)) => Some(*v4),
                        _ => None,
                    });
                    local.map(|l| (l, a.header.prefix_len))
                }
                _ => None,
            })
            .collect())
    }

    fn address_message(index: u32, net: Ipv4Net) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = net.prefix_len();
        m.header.scope = AddressScope::Universe;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(net.addr())));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(net.addr())));
        if net.prefix_len() < 31 {
            m.attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
        m
    }

    fn add_address(&mut self, index: u32, net: Ipv4Net) -> io::Result<()> {
        let m = Self::address_message(index, net);
        self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn del_address(&mut self, index: u32, net: Ipv4Net) -> io::Result<()> {
        let m = Self::address_message(index, net);
        self.ack(RouteNetlinkMessage::DelAddress(m), 0)
    }

    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        self.ack(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
    }
}

fn open_netlink(object: &str) -> Result<Netlink> {
    Netlink::open().map_err(|e| nl_err(object, "open netlink socket", e))
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Sets link `name` up (used for `lo` in new namespaces).
pub(crate) fn set_up(name: &str) -> Result<()> {
    let obj = format!("link {name}");
    let mut nl = open_netlink(&obj)?;
    let link = nl
        .get_link(name)
        .map_err(|e| nl_err(&obj, "look up", e))?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, &obj, "no such link"))?;
    nl.set_up(link.header.index)
        .map_err(|e| nl_err(&obj, "set up", e))
}

/// Makes sure the bridge `name` exists, carries the address `gateway` (e.g.
/// 100.72.0.1/24), has MTU `mtu` when given, has `route_localnet` on, and is up.
/// Idempotent: the daemon calls it at every start to reconcile.
///
/// - A link of that name that is not a bridge is an error of kind Conflict: it is not
///   berth's, so it is left alone.
/// - Addresses: the gateway address is added when missing. Other IPv4 addresses are
///   removed only when this call created the bridge (a new bridge has none, but a
///   bridge is never half-configured by us); on an existing bridge they are left alone,
///   since berth never removes what it may not have added (an operator's address).
/// - `net.ipv4.conf.<name>.route_localnet=1`: published ports are DNATed in the kernel
///   including for connections the host makes to 127.0.0.1; after DNAT such packets
///   leave through the bridge with a 127.0.0.0/8 source, which the kernel drops as
///   martian unless route_localnet is on for that interface (the nft masquerade rule
///   then rewrites the source to the gateway address).
pub fn ensure_bridge(name: &str, gateway: Ipv4Net, mtu: Option<u32>) -> Result<()> {
    check_ifname("bridge", name)?;
    let obj = format!("bridge {name}");
    let mut nl = open_netlink(&obj)?;
    let (link, created) = match nl.get_link(name).map_err(|e| nl_err(&obj, "look up", e))? {
        Some(link) => {
            match link_kind(&link) {
                Some(InfoKind::Bridge) => {}
                other => {
                    let kind =
                        other.map_or_else(|| "a device".to_string(), |k| format!("a {k} device"));
                    return Err(Error::conflict(
                        obj,
                        format!("a link of this name exists and is {kind}, not a bridge"),
                    ));
                }
            }
            (link, false)
        }
        None => {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(name.to_string()));
            if let Some(mtu) = mtu {
                m.attributes.push(LinkAttribute::Mtu(mtu));
            }
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Bridge,
                )]));
            nl.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
                .map_err(|e| nl_err(&obj, "create", e))?;
            let link = nl
                .get_link(name)
                .map_err(|e| nl_err(&obj, "look up", e))?
                .ok_or_else(|| Error::internal(&obj, "created but not found"))?;
            (link, true)
        }
    };
    let configured = configure_bridge(&mut nl, &obj, name, &link, created, gateway, mtu);
    if configured.is_err() && created {
        let _ = nl.delete(name);
    }
    configured
}

fn configure_bridge(
    nl: &mut Netlink,
    obj: &str,
    name: &str,
    link: &LinkMessage,
    created: bool,
    gateway: Ipv4Net,
    mtu: Option<u32>,
) -> Result<()> {
    let index = link.header.index;
    if let Some(mtu) = mtu {
        if link_mtu(link) != Some(mtu) {
            nl.set_link(
                index,
                LinkFlags::empty(),
                LinkFlags::empty(),
                vec![LinkAttribute::Mtu(mtu)],
            )
            .map_err(|e| nl_err(obj, &format!("set mtu {mtu}"), e))?;
        }
    }
    let addresses = nl
        .ipv4_addresses(index)
        .map_err(|e| nl_err(obj, "list addresses", e))?;
    let want = (gateway.addr(), gateway.prefix_len());
    if created {
        for (addr, prefix) in addresses.iter().filter(|a| **a != want) {
            let net = Ipv4Net::new(*addr, *prefix).map_err(|e| {
                Error::internal(obj, format!("kernel address {addr}/{prefix}: {e}"))
            })?;
            nl.del_address(index, net)
                .map_err(|e| nl_err(obj, &format!("remove address {net}"), e))?;
        }
    }
    if !addresses.contains(&want) {
        nl.add_address(index, gateway)
            .map_err(|e| nl_err(obj, &format!("add address {gateway}"), e))?;
    }
    set_sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
    nl.set_up(index).map_err(|e| nl_err(obj, "set up", e))
}

/// Deletes the link `name` (for a veth, both ends). Ok if there is none.
pub fn delete_link(name: &str) -> Result<()> {
    check_ifname("link", name)?;
    let obj = format!("link {name}");
    let mut nl = open_netlink(&obj)?;
    match nl.delete(name) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl_err(obj, "delete", e)),
    }
}

/// Whether a link named `name` exists.
pub fn link_exists(name: &str) -> Result<bool> {
    check_ifname("link", name)?;
    let obj = format!("link {name}");
    let mut nl = open_netlink(&obj)?;
    nl.get_link(name)
        .map(|l| l.is_some())
        .map_err(|e| nl_err(obj, "look up", e))
}

/// Names of the links whose name starts with `prefix` (to sweep leftovers of a crash).
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let obj = format!("links {prefix}*");
    let mut nl = open_netlink(&obj)?;
    let links = nl.links().map_err(|e| nl_err(&obj, "list", e))?;
    let mut names: Vec<String> = links
        .iter()
        .filter_map(link_name)
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

/// One container's attachment to a bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// Host end, a port of `bridge` (e.g. `bth0123456789ab`).
    pub host_name: String,
    pub bridge: String,
    /// The container's network namespace (see [`crate::netns`]).
    pub netns: PathBuf,
    /// The peer's name inside the namespace (`eth0`, `eth1`, ...).
    pub ifname: String,
    pub mac: [u8; 6],
    /// The container's address and the network's prefix length (e.g. 100.72.0.2/24).
    pub address: Ipv4Net,
    /// When Some, the default route in the namespace goes through this gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Default: the bridge's MTU.
    pub mtu: Option<u32>,
}

/// Plugs a container namespace into a bridge with a veth pair (see [`VethSpec`]).
///
/// The pair is created in one request with the peer created directly inside the
/// container namespace (IFLA_NET_NS_FD of the namespace file) under its final name, MAC
/// and MTU: the peer never appears in the host namespace, so it needs no temporary name
/// and cannot collide with a host link. The host end is enslaved to the bridge at
/// creation, gets hairpin mode (so a container reaches its own published ports through
/// the host's DNAT) and is set up. Then, inside the namespace, the peer gets its
/// address, is set up, and gets the default route when `gateway` is Some.
///
/// A link already named `host_name` (leftover of a crash) is deleted first. On any
/// failure the host end is deleted (which deletes the peer) and the error returned.
pub fn add_veth(spec: &VethSpec) -> Result<()> {
    check_ifname("veth", &spec.host_name)?;
    let obj = format!("veth {}", spec.host_name);
    check_ifname(&format!("{obj}: peer"), &spec.ifname)?;
    check_ifname(&format!("{obj}: bridge"), &spec.bridge)?;
    if spec.mac[0] & 1 == 1 || spec.mac == [0; 6] {
        return Err(Error::invalid(
            &obj,
            format!("mac {} is not a unicast address", format_mac(&spec.mac)),
        ));
    }
    let mut nl = open_netlink(&obj)?;
    let bridge = nl
        .get_link(&spec.bridge)
        .map_err(|e| nl_err(&obj, &format!("look up bridge {}", spec.bridge), e))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                &obj,
                format!("bridge {} does not exist", spec.bridge),
            )
        })?;
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        return Err(Error::conflict(
            &obj,
            format!("{} is not a bridge", spec.bridge),
        ));
    }
    let mtu = match spec.mtu.or_else(|| link_mtu(&bridge)) {
        Some(mtu) => mtu,
        None => {
            return Err(Error::internal(
                &obj,
                format!("bridge {} has no mtu", spec.bridge),
            ))
        }
    };
    let ns: File = netns::open(&spec.netns).map_err(|e| {
        Error::new(
            e.kind,
            &obj,
            format!("namespace {}: {}", spec.netns.display(), e.message),
        )
    })?;

    // A leftover of a crash: its namespace may be gone, the name is ours.
    match nl.delete(&spec.host_name) {
        Ok(()) => tracing::info!(link = %spec.host_name, "deleted leftover veth"),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => return Err(nl_err(&obj, "delete leftover", e)),
    }

    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(spec.ifname.clone()));
    peer.attributes
        .push(LinkAttribute::Address(spec.mac.to_vec()));
    peer.attributes.push(LinkAttribute::Mtu(mtu));
    peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    let mut m = LinkMessage::default();
    m.attributes
        .push(LinkAttribute::IfName(spec.host_name.clone()));
    m.attributes.push(LinkAttribute::Mtu(mtu));
    m.attributes
        .push(LinkAttribute::Controller(bridge.header.index));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    nl.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(|e| {
            nl_err(
                &obj,
                &format!("create (peer {} in {})", spec.ifname, spec.netns.display()),
                e,
            )
        })?;
    drop(ns);

    let configured = configure_veth(&mut nl, &obj, spec);
    if configured.is_err() {
        if let Err(e) = nl.delete(&spec.host_name) {
            tracing::warn!(link = %spec.host_name, error = %e, "could not delete half-made veth");
        }
    }
    configured
}

fn configure_veth(nl: &mut Netlink, obj: &str, spec: &VethSpec) -> Result<()> {
    let host = nl
        .get_link(&spec.host_name)
        .map_err(|e| nl_err(obj, "look up", e))?
        .ok_or_else(|| Error::internal(obj, "created but not found"))?;
    let index = host.header.index;
    // IFLA_LINKINFO { IFLA_INFO_SLAVE_KIND bridge, IFLA_INFO_SLAVE_DATA { IFLA_BRPORT_MODE } }
    // on the port: `ip link set X type bridge_slave hairpin on`.
    let hairpin = LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            true,
        )])),
    ]);
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(hairpin);
    nl.ack(RouteNetlinkMessage::NewLink(m), 0)
        .map_err(|e| nl_err(obj, "set hairpin mode", e))?;
    nl.set_up(index).map_err(|e| nl_err(obj, "set up", e))?;

    let inside = format!("{obj}: {} in {}", spec.ifname, spec.netns.display());
    netns::run_in(&spec.netns, || -> Result<()> {
        let mut nl = open_netlink(&inside)?;
        let peer = nl
            .get_link(&spec.ifname)
            .map_err(|e| nl_err(&inside, "look up", e))?
            .ok_or_else(|| Error::internal(&inside, "created but not found"))?;
        let index = peer.header.index;
        nl.add_address(index, spec.address)
            .map_err(|e| nl_err(&inside, &format!("add address {}", spec.address), e))?;
        nl.set_up(index).map_err(|e| nl_err(&inside, "set up", e))?;
        if let Some(gw) = spec.gateway {
            nl.add_default_route(index, gw)
                .map_err(|e| nl_err(&inside, &format!("add default route via {gw}"), e))?;
        }
        Ok(())
    })?
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Deletes a veth pair by its host end (the peer in the container namespace goes with
/// it). Ok if it does not exist.
pub fn remove_veth(host_name: &str) -> Result<()> {
    delete_link(host_name)
}

fn sysctl_path(key: &str) -> Result<PathBuf> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if !ok {
        return Err(Error::invalid(
            format!("sysctl {key:?}"),
            "a key is a relative path under /proc/sys (like net/ipv4/ip_forward), without '.' or '..' components",
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

/// Writes the sysctl `key` (a path under /proc/sys, e.g. `net/ipv4/ip_forward`).
/// Network sysctls apply to the calling thread's network namespace.
pub fn set_sysctl(key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key)?;
    std::fs::write(&path, value)
        .map_err(|e| nl_err(format!("sysctl {key}"), &format!("write {value:?}"), e))
}

/// Reads the sysctl `key` (trailing newline removed).
pub fn get_sysctl(key: &str) -> Result<String> {
    let path = sysctl_path(key)?;
    let s =
        std::fs::read_to_string(&path).map_err(|e| nl_err(format!("sysctl {key}"), "read", e))?;
    Ok(s.trim_end_matches('\n').to_string())
}
