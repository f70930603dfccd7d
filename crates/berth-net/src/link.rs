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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use berth_types::ErrorKind;
use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::{netns, retry_eintr, Error, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Checks that `name` can be a Linux interface name (see [`check_ifname`]); the rule
/// broken as a message.
pub fn check_ifname_str(name: &str) -> std::result::Result<(), String> {
    check_ifname("interface", name).map_err(|e| e.message)
}

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
    match errno(e) {
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

/// An error reply of the kernel with its extended-ack message ("Nexthop has invalid
/// gateway"), which says more than the errno alone.
#[derive(Debug)]
struct KernelError {
    errno: i32,
    detail: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        write!(f, "{os} ({})", self.detail)
    }
}

impl std::error::Error for KernelError {}

/// The errno of an error from the kernel, with or without an extended-ack message.
fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<KernelError>())
            .map(|k| k.errno)
    })
}

/// NLMSGERR_ATTR_MSG, from linux/netlink.h.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The extended-ack message in the payload of an error reply (after the errno: the
/// request's header, whole request unless NLM_F_CAPPED, then attributes if
/// NLM_F_ACK_TLVS).
fn ext_ack_message(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize
    };
    let mut rest = payload.get((request_len + 3) & !3..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &rest[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = rest.get((len + 3) & !3..)?;
    }
    None
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
        // Error replies carry the kernel's message, and not a copy of the request. Both
        // are optional comforts (older kernels): failures to enable them are ignored.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
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
        retry_eintr(|| self.socket.send(&out, 0))?;

        let mut replies = Vec::new();
        loop {
            let (socket, buf) = (&self.socket, &mut self.buf);
            let n = retry_eintr(|| socket.recv(&mut &mut buf[..], libc::MSG_TRUNC))?;
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
                        Some(code) => {
                            let detail = ext_ack_message(&e.header, reply.header.flags);
                            return Err(match detail {
                                Some(detail) => io::Error::new(
                                    e.to_io().kind(),
                                    KernelError {
                                        errno: code.get().abs(),
                                        detail,
                                    },
                                ),
                                None => e.to_io(),
                            });
                        }
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
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
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

    /// The global IPv6 addresses of link `index` (address, prefix length).
    fn ipv6_addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv6Addr, u8)>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        let replies = self.request(RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let addr = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
                        _ => None,
                    });
                    addr.map(|l| (l, a.header.prefix_len))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds an IPv6 address without duplicate address detection (berth hands out each
    /// address once: waiting a second for DAD would only delay the container's start).
    fn add_address6(&mut self, index: u32, net: Ipv6Net) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = net.prefix_len();
        m.header.scope = AddressScope::Universe;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V6(net.addr())));
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// The IPv6 default route through `gateway`.
    fn add_default_route6(
        &mut self,
        index: u32,
        gateway: Ipv6Addr,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        if let Some(mtu) = mtu {
            m.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        self.ack(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
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

    /// `mtu`: the route's own MTU (RTAX_MTU), below the link's; None: the link's.
    fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        if let Some(mtu) = mtu {
            m.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
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
pub fn ensure_bridge(
    name: &str,
    gateway: Ipv4Net,
    gateway6: Option<Ipv6Net>,
    mtu: Option<u32>,
) -> Result<()> {
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
    let configured = configure_bridge(
        &mut nl,
        &obj,
        name,
        &link,
        created,
        (gateway, gateway6),
        mtu,
    );
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
    (gateway, gateway6): (Ipv4Net, Option<Ipv6Net>),
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
    // A bridge whose address was never set takes the lowest MAC among its ports, so a
    // container joining or leaving changes the gateway's MAC under the others: their
    // ARP caches then point at nothing until they expire, and DNS and outbound traffic
    // time out meanwhile. Its current address is made its own (Docker sets one too).
    if let Some(mac) = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) if m.len() == 6 => Some(m.clone()),
        _ => None,
    }) {
        nl.set_link(
            index,
            LinkFlags::empty(),
            LinkFlags::empty(),
            vec![LinkAttribute::Address(mac)],
        )
        .map_err(|e| nl_err(obj, "set its MAC address", e))?;
    }
    set_sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
    if let Some(gw6) = gateway6 {
        // A dual-stack network: IPv6 on, no router advertisements taken from the
        // bridge's ports (the containers are not routers), the gateway address added
        // when missing (other addresses are left alone, as for IPv4).
        enable_ipv6(name).map_err(|e| Error::new(e.kind, obj, e.to_string()))?;
        let have = nl
            .ipv6_addresses(index)
            .map_err(|e| nl_err(obj, "list IPv6 addresses", e))?;
        if !have.contains(&(gw6.addr(), gw6.prefix_len())) {
            nl.add_address6(index, gw6)
                .map_err(|e| nl_err(obj, &format!("add address {gw6}"), e))?;
        }
    }
    nl.set_up(index).map_err(|e| nl_err(obj, "set up", e))
}

/// Turns IPv6 on for an interface of the calling thread's namespace, with router
/// advertisements ignored. Refused by name on a kernel without IPv6.
fn enable_ipv6(ifname: &str) -> Result<()> {
    let key = format!("net/ipv6/conf/{ifname}/disable_ipv6");
    if !Path::new("/proc/sys").join(&key).exists() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!("interface {ifname}"),
            "this kernel has no IPv6 (booted with ipv6.disable=1 or built without it)",
        ));
    }
    set_sysctl(&format!("net/ipv6/conf/{ifname}/accept_ra"), "0")?;
    set_sysctl(&key, "0")
}

/// Whether the kernel of the calling thread's namespace has IPv6.
pub fn ipv6_available() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

/// Adds `ip`/32 to the interface `ifname` (a service's virtual IP on its network's
/// bridge: the host answers ARP for it there). Ok if it is there already.
pub fn add_host_address(ifname: &str, ip: Ipv4Addr) -> Result<()> {
    host_address(ifname, ip, true)
}

/// Removes `ip`/32 from the interface `ifname`. Ok if it is not there (or the interface
/// is gone).
pub fn remove_host_address(ifname: &str, ip: Ipv4Addr) -> Result<()> {
    host_address(ifname, ip, false)
}

fn host_address(ifname: &str, ip: Ipv4Addr, add: bool) -> Result<()> {
    check_ifname("link", ifname)?;
    let obj = format!("link {ifname}");
    let mut nl = open_netlink(&obj)?;
    let Some(link) = nl
        .get_link(ifname)
        .map_err(|e| nl_err(&obj, "look up", e))?
    else {
        return if add {
            Err(Error::new(ErrorKind::NotFound, obj, "no such interface"))
        } else {
            Ok(())
        };
    };
    let index = link.header.index;
    let have = nl
        .ipv4_addresses(index)
        .map_err(|e| nl_err(&obj, "list addresses", e))?
        .contains(&(ip, 32));
    let net = Ipv4Net::new(ip, 32).map_err(|e| Error::internal(&obj, e.to_string()))?;
    match (add, have) {
        (true, false) => nl
            .add_address(index, net)
            .map_err(|e| nl_err(&obj, &format!("add address {net}"), e)),
        (false, true) => nl
            .del_address(index, net)
            .map_err(|e| nl_err(&obj, &format!("remove address {net}"), e)),
        _ => Ok(()),
    }
}

/// Deletes the link `name` (for a veth, both ends). Ok if there is none.
pub fn delete_link(name: &str) -> Result<()> {
    check_ifname("link", name)?;
    let obj = format!("link {name}");
    let mut nl = open_netlink(&obj)?;
    match nl.delete(name) {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
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

/// Traffic counters of a link, as the kernel keeps them (`IFLA_STATS64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl LinkStats {
    /// The counters seen from the other end of a veth pair (receive and transmit
    /// swapped): a container's view from its host end's counters.
    pub fn swapped(self) -> LinkStats {
        LinkStats {
            rx_bytes: self.tx_bytes,
            rx_packets: self.tx_packets,
            rx_errors: self.tx_errors,
            rx_dropped: self.tx_dropped,
            tx_bytes: self.rx_bytes,
            tx_packets: self.rx_packets,
            tx_errors: self.rx_errors,
            tx_dropped: self.rx_dropped,
        }
    }
}

/// The counters of link `name` (None when it does not exist).
pub fn link_stats(name: &str) -> Result<Option<LinkStats>> {
    check_ifname("link", name)?;
    let obj = format!("link {name}");
    let mut nl = open_netlink(&obj)?;
    let link = nl.get_link(name).map_err(|e| nl_err(obj, "look up", e))?;
    Ok(link.map(|l| {
        l.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Stats64(s) => Some(LinkStats {
                    rx_bytes: s.rx_bytes,
                    rx_packets: s.rx_packets,
                    rx_errors: s.rx_errors,
                    rx_dropped: s.rx_dropped,
                    tx_bytes: s.tx_bytes,
                    tx_packets: s.tx_packets,
                    tx_errors: s.tx_errors,
                    tx_dropped: s.tx_dropped,
                }),
                _ => None,
            })
            .unwrap_or_default()
    }))
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
    /// A dual-stack network's IPv6 address for the peer (IPv6 stays off on it without).
    pub address6: Option<Ipv6Net>,
    /// When Some, the IPv6 default route goes through this gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// The pair's MTU. Default: the bridge's.
    pub mtu: Option<u32>,
    /// The default route's MTU, when traffic leaving through the gateway must stay below
    /// the link's MTU (a link MTU for traffic within the host, a route MTU for the
    /// world beyond it). Default: the link's.
    pub route_mtu: Option<u32>,
    /// More addresses on the peer (`--link-local-ip`): IPv4 ones with a /16 prefix, as
    /// Docker adds them.
    pub link_local: Vec<IpAddr>,
    /// Sysctls set inside the namespace before the peer comes up: (path under /proc/sys,
    /// value), e.g. `net/ipv4/conf/eth0/log_martians`.
    pub sysctls: Vec<(String, String)>,
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

    // A leftover of a crash (its namespace may be gone): a veth of that name is ours to
    // replace; any other kind of link is not berth's and is left alone.
    let leftover = nl
        .get_link(&spec.host_name)
        .map_err(|e| nl_err(&obj, "look up", e))?;
    if let Some(link) = leftover {
        if link_kind(&link) != Some(&InfoKind::Veth) {
            return Err(Error::conflict(
                &obj,
                "a link of this name exists and is not a veth",
            ));
        }
        match nl.delete(&spec.host_name) {
            Ok(()) => tracing::info!(link = %spec.host_name, "deleted leftover veth"),
            Err(e) if errno(&e) == Some(libc::ENODEV) => {}
            Err(e) => return Err(nl_err(&obj, "delete leftover", e)),
        }
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

    let configured = configure_veth(&mut nl, &obj, spec, mtu);
    if configured.is_err() {
        if let Err(e) = nl.delete(&spec.host_name) {
            tracing::warn!(link = %spec.host_name, error = %e, "could not delete half-made veth");
        }
    }
    configured
}

fn configure_veth(nl: &mut Netlink, obj: &str, spec: &VethSpec, mtu: u32) -> Result<()> {
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
    disable_ipv6(&spec.host_name).map_err(|e| Error::new(e.kind, obj, e.to_string()))?;
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
        match spec.address6 {
            Some(a6) => {
                enable_ipv6(&spec.ifname)
                    .map_err(|e| Error::new(e.kind, &inside, e.to_string()))?;
                nl.add_address6(index, a6)
                    .map_err(|e| nl_err(&inside, &format!("add address {a6}"), e))?;
            }
            None => disable_ipv6(&spec.ifname)
                .map_err(|e| Error::new(e.kind, &inside, e.to_string()))?,
        }
        for ip in &spec.link_local {
            match ip {
                IpAddr::V4(v4) => {
                    let net = Ipv4Net::new(*v4, 16)
                        .map_err(|e| Error::internal(&inside, format!("address {v4}/16: {e}")))?;
                    nl.add_address(index, net).map_err(|e| {
                        nl_err(&inside, &format!("add link-local address {net}"), e)
                    })?;
                }
                IpAddr::V6(v6) if spec.address6.is_some() => {
                    let net = Ipv6Net::new(*v6, 64)
                        .map_err(|e| Error::internal(&inside, format!("address {v6}/64: {e}")))?;
                    nl.add_address6(index, net).map_err(|e| {
                        nl_err(&inside, &format!("add link-local address {net}"), e)
                    })?;
                }
                IpAddr::V6(_) => {
                    return Err(Error::invalid(
                        &inside,
                        format!("link-local address {ip}: IPv6 is not enabled on this interface"),
                    ))
                }
            }
        }
        for (key, value) in &spec.sysctls {
            set_sysctl(key, value).map_err(|e| Error::new(e.kind, &inside, e.to_string()))?;
        }
        nl.set_up(index).map_err(|e| nl_err(&inside, "set up", e))?;
        if let Some(gw) = spec.gateway {
            nl.add_default_route(index, gw, spec.route_mtu.filter(|m| *m < mtu))
                .map_err(|e| nl_err(&inside, &format!("add default route via {gw}"), e))?;
        }
        if let (Some(gw6), Some(_)) = (spec.gateway6, spec.address6) {
            nl.add_default_route6(index, gw6, spec.route_mtu.filter(|m| *m < mtu))
                .map_err(|e| nl_err(&inside, &format!("add IPv6 default route via {gw6}"), e))?;
        }
        Ok(())
    })?
}

/// Turns IPv6 off on an interface of the calling thread's namespace before it comes up:
/// on an IPv4-only network an interface left with a link-local IPv6 address
/// would let containers reach each other and the host over IPv6, past the IPv4 rules
/// that isolate them (Docker does the same). Nothing to do on a kernel without IPv6.
fn disable_ipv6(ifname: &str) -> Result<()> {
    let key = format!("net/ipv6/conf/{ifname}/disable_ipv6");
    if !Path::new("/proc/sys").join(&key).exists() {
        return Ok(());
    }
    set_sysctl(&key, "1")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::in_fresh_netns;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Runs a command (in the calling thread's namespace) and returns its stdout.
    fn sh(args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("spawn");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Names of the links in the calling thread's namespace.
    fn link_names() -> Vec<String> {
        sh(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }

    /// A namespace at a temporary path, removed on drop.
    struct Ns {
        path: PathBuf,
        _dir: tempfile::TempDir,
    }
    impl Ns {
        fn new() -> Ns {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("ns");
            netns::create(&path).expect("create netns");
            Ns { path, _dir: dir }
        }
    }
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = netns::remove(&self.path);
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    fn spec(host: &str, ns: &Ns, last: u8) -> VethSpec {
        VethSpec {
            host_name: host.to_string(),
            bridge: "brt0".to_string(),
            netns: ns.path.clone(),
            ifname: "eth0".to_string(),
            mac: [0x02, 0x42, 100, 72, 0, last],
            address: net(&format!("100.72.0.{last}/24")),
            gateway: Some("100.72.0.1".parse().expect("ip")),
            address6: None,
            gateway6: None,
            mtu: None,
            route_mtu: None,
            link_local: Vec::new(),
            sysctls: Vec::new(),
        }
    }

    #[test]
    fn ensure_bridge_is_idempotent() {
        in_fresh_netns(|| {
            ensure_bridge("brt0", net("100.72.0.1/24"), None, None).expect("create");
            ensure_bridge("brt0", net("100.72.0.1/24"), None, None).expect("again");
            let addrs = sh(&["ip", "-4", "-o", "addr", "show", "dev", "brt0"]);
            assert_eq!(addrs.lines().count(), 1, "{addrs}");
            assert!(
                addrs.contains("inet 100.72.0.1/24 brd 100.72.0.255"),
                "{addrs}"
            );
            let link = sh(&["ip", "-d", "-o", "link", "show", "brt0"]);
            assert!(link.contains(",UP"), "{link}");
            assert!(link.contains("bridge"), "{link}");
            assert_eq!(
                get_sysctl("net/ipv4/conf/brt0/route_localnet").expect("sysctl"),
                "1"
            );

            // Reconcile: an MTU change is applied; an operator's extra address stays; a
            // bridge set down is set up again.
            sh(&["ip", "addr", "add", "100.99.0.1/24", "dev", "brt0"]);
            sh(&["ip", "link", "set", "brt0", "down"]);
            ensure_bridge("brt0", net("100.72.0.1/24"), None, Some(1400)).expect("reconcile");
            let link = sh(&["ip", "-o", "link", "show", "brt0"]);
            assert!(link.contains("mtu 1400"), "{link}");
            assert!(link.contains(",UP"), "{link}");
            let addrs = sh(&["ip", "-4", "-o", "addr", "show", "dev", "brt0"]);
            assert_eq!(addrs.lines().count(), 2, "{addrs}");
            assert!(addrs.contains("100.99.0.1/24"), "{addrs}");

            // A new bridge with an MTU.
            ensure_bridge("brt1", net("100.72.1.1/24"), None, Some(1450)).expect("create");
            assert!(sh(&["ip", "-o", "link", "show", "brt1"]).contains("mtu 1450"));
            assert!(links_with_prefix("brt").expect("list") == ["brt0", "brt1"]);

            delete_link("brt1").expect("delete");
            delete_link("brt1").expect("delete is idempotent");
            assert!(!link_exists("brt1").expect("exists"));
            assert!(link_exists("brt0").expect("exists"));
        })
        .expect("fresh netns");
    }

    #[test]
    fn ensure_bridge_refuses_other_links_and_bad_names() {
        in_fresh_netns(|| {
            sh(&[
                "ip", "link", "add", "notbr0", "type", "veth", "peer", "name", "notbr1",
            ]);
            let err = ensure_bridge("notbr0", net("100.72.0.1/24"), None, None).expect_err("veth");
            assert_eq!(err.kind, ErrorKind::Conflict);
            let msg = err.to_string();
            assert!(
                msg.contains("bridge notbr0") && msg.contains("veth"),
                "{msg}"
            );
            // Unchanged: no address was added.
            assert!(!sh(&["ip", "-4", "addr", "show", "dev", "notbr0"]).contains("inet"));

            for bad in ["", "a/b", "has space", "sixteen-chars-xx", "..", "a:b"] {
                let err = ensure_bridge(bad, net("100.72.0.1/24"), None, None).expect_err(bad);
                assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
            }
            assert_eq!(link_names(), ["lo", "notbr1", "notbr0"]);
        })
        .expect("fresh netns");
    }

    /// Accepts `n` connections on `listener`, each sending a line; returns (peer, line).
    fn serve(
        listener: TcpListener,
        n: usize,
    ) -> std::thread::JoinHandle<Vec<(SocketAddr, String)>> {
        std::thread::spawn(move || {
            (0..n)
                .map(|_| {
                    let (mut s, peer) = listener.accept().expect("accept");
                    s.set_read_timeout(Some(Duration::from_secs(10)))
                        .expect("timeout");
                    let mut buf = [0u8; 64];
                    let k = s.read(&mut buf).expect("read");
                    s.write_all(b"pong").expect("write");
                    (peer, String::from_utf8_lossy(&buf[..k]).into_owned())
                })
                .collect()
        })
    }

    fn ping(to: SocketAddr, msg: &str) -> String {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(msg.as_bytes()).expect("write");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read");
        reply
    }

    #[test]
    fn veth_pairs_carry_traffic_between_namespaces_and_the_bridge() {
        in_fresh_netns(|| {
            ensure_bridge("brt0", net("100.72.0.1/24"), None, None).expect("bridge");
            // The bridge keeps its MAC whatever ports come and go (the gateway's MAC in
            // the containers' ARP caches stays right).
            let bridge_mac = || {
                let l = sh(&["ip", "-o", "link", "show", "brt0"]);
                l.split("link/ether ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .expect("bridge mac")
                    .to_string()
            };
            let mac_before = bridge_mac();
            let (a, b) = (Ns::new(), Ns::new());
            let t = Instant::now();
            add_veth(&spec("bthtesta", &a, 2)).expect("veth a");
            let add_a = t.elapsed();
            // B: a jumbo link for traffic within the host, 1400 beyond the gateway.
            let mut sb = spec("bthtestb", &b, 3);
            sb.mtu = Some(9000);
            sb.route_mtu = Some(1400);
            add_veth(&sb).expect("veth b");

            assert!(link_exists("bthtesta").expect("exists"));
            assert_eq!(
                links_with_prefix("btht").expect("list"),
                ["bthtesta", "bthtestb"]
            );
            let host = sh(&["ip", "-o", "link", "show", "bthtesta"]);
            assert!(
                host.contains("master brt0") && host.contains(",UP"),
                "{host}"
            );
            let port = sh(&["bridge", "-d", "link", "show", "dev", "bthtesta"]);
            assert!(port.contains("hairpin on"), "{port}");
            // A port with a MAC below the bridge's does not move it.
            sh(&[
                "ip",
                "link",
                "set",
                "bthtesta",
                "address",
                "02:00:00:00:00:01",
            ]);
            assert_eq!(bridge_mac(), mac_before);
            // No peer in the host namespace.
            assert_eq!(link_names(), ["lo", "brt0", "bthtesta", "bthtestb"]);

            // Inside A: eth0 with the MAC, the bridge's MTU, the address, up, and the
            // default route via the gateway.
            let (link, addr, addr6, route) = netns::run_in(&a.path, || {
                (
                    sh(&["ip", "-o", "link", "show", "eth0"]),
                    sh(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]),
                    sh(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"]),
                    sh(&["ip", "-4", "route", "show", "default"]),
                )
            })
            .expect("run_in a");
            assert!(link.contains("02:42:64:48:00:02"), "{link}");
            assert!(link.contains("mtu 1500") && link.contains(",UP"), "{link}");
            assert!(addr.contains("inet 100.72.0.2/24"), "{addr}");
            // IPv4 only: no link-local IPv6 address to go around IPv4's rules with, on
            // either end.
            assert_eq!(addr6, "", "eth0 has IPv6 addresses");
            assert_eq!(
                sh(&["ip", "-6", "-o", "addr", "show", "dev", "bthtesta"]),
                ""
            );
            assert_eq!(route.trim(), "default via 100.72.0.1 dev eth0 proto static");
            let (link_b, route_b) = netns::run_in(&b.path, || {
                (
                    sh(&["ip", "-o", "link", "show", "eth0"]),
                    sh(&["ip", "-4", "route", "show", "default"]),
                )
            })
            .expect("run_in b");
            assert!(link_b.contains("mtu 9000"), "{link_b}");
            assert_eq!(
                route_b.trim(),
                "default via 100.72.0.1 dev eth0 proto static mtu 1400"
            );

            // Real TCP: a listener in A; a client in B, then one in the bridge's namespace.
            let listener = netns::run_in(&a.path, || TcpListener::bind("100.72.0.2:0"))
                .expect("run_in")
                .expect("bind in a");
            let to = listener.local_addr().expect("addr");
            let server = serve(listener, 2);
            let reply = netns::run_in(&b.path, || ping(to, "from b")).expect("run_in b");
            assert_eq!(reply, "pong");
            assert_eq!(ping(to, "from host"), "pong");
            let seen = server.join().expect("server");
            assert_eq!(seen[0].0.ip().to_string(), "100.72.0.3");
            assert_eq!(seen[0].1, "from b");
            assert_eq!(seen[1].0.ip().to_string(), "100.72.0.1");
            assert_eq!(seen[1].1, "from host");
            // The host end counts what the container sent (its rx) and received.
            let st = link_stats("bthtesta").expect("stats").expect("exists");
            assert!(st.rx_packets >= 4 && st.tx_packets >= 4, "{st:?}");
            assert!(st.rx_bytes > 0 && st.tx_bytes > 0, "{st:?}");
            assert_eq!(link_stats("bthnosuch").expect("stats"), None);

            let t = Instant::now();
            remove_veth("bthtesta").expect("remove a");
            let remove_a = t.elapsed();
            println!(
                "add_veth took {} ms, remove_veth {} ms",
                add_a.as_micros() as f64 / 1000.0,
                remove_a.as_micros() as f64 / 1000.0
            );
            assert!(!link_exists("bthtesta").expect("exists"));
            let inside = netns::run_in(&a.path, link_names).expect("run_in a");
            assert_eq!(inside, ["lo"], "the peer went with the host end");
            remove_veth("bthtesta").expect("remove is idempotent");

            // Re-adding into the same namespace works (container restart).
            add_veth(&spec("bthtesta", &a, 2)).expect("veth a again");
            remove_veth("bthtesta").expect("remove a");
            remove_veth("bthtestb").expect("remove b");
            assert_eq!(link_names(), ["lo", "brt0"]);
        })
        .expect("fresh netns");
    }

    #[test]
    fn a_dual_stack_veth_gets_its_ipv6_address_and_route_and_carries_traffic() {
        in_fresh_netns(|| {
            let gw6: Ipv6Net = "fd00:b::1/64".parse().expect("net");
            ensure_bridge("brt0", net("100.72.0.1/24"), Some(gw6), None).expect("bridge");
            ensure_bridge("brt0", net("100.72.0.1/24"), Some(gw6), None).expect("again");
            let bridge6 = sh(&[
                "ip", "-6", "-o", "addr", "show", "dev", "brt0", "scope", "global",
            ]);
            assert_eq!(
                bridge6.matches("inet6 fd00:b::1/64").count(),
                1,
                "{bridge6}"
            );
            let (a, b) = (Ns::new(), Ns::new());
            for (host, ns, last) in [("bthtesta", &a, 2u8), ("bthtestb", &b, 3)] {
                let mut sp = spec(host, ns, last);
                sp.address6 = Some(format!("fd00:b::{last}/64").parse().expect("net"));
                sp.gateway6 = Some("fd00:b::1".parse().expect("ip"));
                add_veth(&sp).expect("veth");
            }
            let (addr6, route6, ra) = netns::run_in(&a.path, || {
                (
                    sh(&[
                        "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
                    ]),
                    sh(&["ip", "-6", "route", "show", "default"]),
                    get_sysctl("net/ipv6/conf/eth0/accept_ra"),
                )
            })
            .expect("run_in a");
            assert!(addr6.contains("inet6 fd00:b::2/64"), "{addr6}");
            // No duplicate address detection pending: usable at once.
            assert!(!addr6.contains("tentative"), "{addr6}");
            assert!(
                route6.starts_with("default via fd00:b::1 dev eth0"),
                "{route6}"
            );
            assert_eq!(ra.expect("accept_ra"), "0");
            // TCP over IPv6: B to A, and the host (bridge) to A.
            let listener = netns::run_in(&a.path, || TcpListener::bind("[fd00:b::2]:0"))
                .expect("run_in")
                .expect("bind in a");
            let to = listener.local_addr().expect("addr");
            let server = serve(listener, 2);
            assert_eq!(
                netns::run_in(&b.path, || ping(to, "from b")).expect("run_in b"),
                "pong"
            );
            assert_eq!(ping(to, "from host"), "pong");
            let seen = server.join().expect("server");
            assert_eq!(seen[0].0.ip().to_string(), "fd00:b::3");
            assert_eq!(seen[1].0.ip().to_string(), "fd00:b::1");
            remove_veth("bthtesta").expect("remove a");
            remove_veth("bthtestb").expect("remove b");
        })
        .expect("fresh netns");
    }

    #[test]
    fn add_veth_failures_leave_nothing() {
        in_fresh_netns(|| {
            let ns = Ns::new();
            // No bridge.
            let err = add_veth(&spec("bthtesta", &ns, 2)).expect_err("no bridge");
            assert_eq!(err.kind, ErrorKind::NotFound);
            let msg = err.to_string();
            assert!(
                msg.contains("veth bthtesta") && msg.contains("bridge brt0"),
                "{msg}"
            );
            assert_eq!(link_names(), ["lo"]);

            ensure_bridge("brt0", net("100.72.0.1/24"), None, None).expect("bridge");
            // No namespace.
            let mut s = spec("bthtesta", &ns, 2);
            s.netns = Path::new("/nonexistent/ns").to_path_buf();
            let err = add_veth(&s).expect_err("no netns");
            assert_eq!(err.kind, ErrorKind::NotFound);
            assert!(err.to_string().contains("/nonexistent/ns"), "{err}");

            // A failure after the pair exists (the gateway is not on the link): the host
            // end and the peer are deleted.
            let mut s = spec("bthtesta", &ns, 2);
            s.gateway = Some("100.99.0.1".parse().expect("ip"));
            let err = add_veth(&s).expect_err("unreachable gateway");
            let msg = err.to_string();
            assert!(msg.contains("default route via 100.99.0.1"), "{msg}");
            assert!(
                msg.contains("veth bthtesta") && msg.contains("eth0"),
                "{msg}"
            );
            assert_eq!(link_names(), ["lo", "brt0"]);
            assert_eq!(netns::run_in(&ns.path, link_names).expect("run_in"), ["lo"]);

            // The peer name is taken inside the namespace: nothing is created.
            netns::run_in(&ns.path, || {
                sh(&[
                    "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0",
                ])
            })
            .expect("run_in");
            let err = add_veth(&spec("bthtesta", &ns, 2)).expect_err("eth0 taken");
            assert!(err.to_string().contains("create (peer eth0"), "{err}");
            assert_eq!(link_names(), ["lo", "brt0"]);
            netns::run_in(&ns.path, || sh(&["ip", "link", "del", "eth0"])).expect("run_in");

            // Bad input is refused before anything is done.
            let mut s = spec("bthtesta", &ns, 2);
            s.mac = [0x01, 0, 0, 0, 0, 1];
            assert_eq!(
                add_veth(&s).expect_err("multicast").kind,
                ErrorKind::InvalidArgument
            );
            let mut s = spec("bthtesta", &ns, 2);
            s.ifname = "eth0/x".to_string();
            assert_eq!(
                add_veth(&s).expect_err("bad name").kind,
                ErrorKind::InvalidArgument
            );

            // A link of the host end's name that is not a veth is not berth's.
            let mut s = spec("brt0", &ns, 2);
            s.bridge = "brt0".to_string();
            let err = add_veth(&s).expect_err("name of the bridge");
            assert_eq!(err.kind, ErrorKind::Conflict);
            assert!(link_exists("brt0").expect("exists"));

            // A leftover host end of the same name (a crash) is replaced.
            sh(&[
                "ip", "link", "add", "bthtesta", "type", "veth", "peer", "name", "old0",
            ]);
            add_veth(&spec("bthtesta", &ns, 2)).expect("over a leftover");
            assert_eq!(link_names(), ["lo", "brt0", "bthtesta"]);
            remove_veth("bthtesta").expect("remove");
        })
        .expect("fresh netns");
    }

    #[test]
    fn sysctls_are_per_namespace_and_keys_are_checked() {
        let host = get_sysctl("net/ipv4/ip_forward").expect("host value");
        in_fresh_netns(|| {
            let before = get_sysctl("net/ipv4/ip_forward").expect("get");
            let flipped = if before == "1" { "0" } else { "1" };
            set_sysctl("net/ipv4/ip_forward", flipped).expect("set");
            assert_eq!(get_sysctl("net/ipv4/ip_forward").expect("get"), flipped);
        })
        .expect("fresh netns");
        assert_eq!(get_sysctl("net/ipv4/ip_forward").expect("host value"), host);
        for bad in [
            "",
            "/net/ipv4/ip_forward",
            "net/../../etc/passwd",
            "net//x",
            "net/./x",
        ] {
            let err = set_sysctl(bad, "1").expect_err(bad);
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
            assert!(get_sysctl(bad).is_err());
        }
        let err = get_sysctl("net/ipv4/no_such_key").expect_err("missing");
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(
            err.to_string().contains("sysctl net/ipv4/no_such_key"),
            "{err}"
        );
    }
}
