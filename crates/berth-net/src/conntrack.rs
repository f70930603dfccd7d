//! Connection tracking entries of a container address, over ctnetlink (the kernel's
//! netfilter netlink family; what `conntrack -D` does).
//!
//! When a container goes, the kernel keeps its conntrack entries until they time out,
//! and a flow that keeps sending keeps its entry alive: a UDP client of a published port
//! (syslog, DNS, metrics) would go on being translated to the removed container's
//! address, and reach nothing, even once another container publishes the same port.
//! [`flush_addresses`] deletes every IPv4 entry with one of the addresses at either end
//! of either direction, so the flow's next packet goes through the rules of the moment. The same
//! flow sending while no container published the port got an entry with no translation
//! at all, which would hide a new container's rule as long as the flow keeps sending:
//! [`flush_unanswered`] deletes the never-answered entries to a port when it is
//! published.

use std::io;
use std::net::Ipv4Addr;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::{retry_eintr, Error, Result};

// linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h, netlink.h
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_ZONE: u16 = 18;
/// IPS_SEEN_REPLY in CTA_STATUS: packets went both ways.
const IPS_SEEN_REPLY: u32 = 1 << 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// Deletes the IPv4 conntrack entries (in the calling thread's network namespace) that
/// have one of `ips` as a source or destination of either direction, in one pass over
/// the table; returns how many. No conntrack in the kernel (nothing was ever tracked) is
/// 0 entries.
pub fn flush_addresses(ips: &[Ipv4Addr]) -> Result<usize> {
    // A set: the engine may flush the addresses of thousands of exits at once.
    let set: std::collections::HashSet<Ipv4Addr> = ips.iter().copied().collect();
    let named = |ip: &Option<Ipv4Addr>| ip.is_some_and(|ip| set.contains(&ip));
    let obj = match ips {
        [_, _, _, _, ..] => format!("conntrack entries of {} addresses", ips.len()),
        _ => format!("conntrack entries of {ips:?}"),
    };
    flush_matching(&obj, ips.is_empty(), |e| e.addresses().iter().any(named))
}

/// Deletes the IPv4 conntrack entries with an address of the subnet `network/prefix` at
/// either end of either direction, except the addresses of `keep` (the running
/// containers' and the gateway's: an entry between a running container and the gateway
/// stays), in one pass; returns how many.
pub fn flush_in_subnet(network: Ipv4Addr, prefix: u8, keep: &[Ipv4Addr]) -> Result<usize> {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    let base = u32::from(network) & mask;
    let gone = |ip: &Option<Ipv4Addr>| {
        ip.is_some_and(|ip| u32::from(ip) & mask == base && !keep.contains(&ip))
    };
    flush_matching(
        &format!("conntrack entries of {network}/{prefix}"),
        false,
        |e| e.addresses().iter().any(gone),
    )
}

/// Deletes the IPv4 conntrack entries whose original direction goes to one of the
/// destination `ports` of protocol `proto` (`libc::IPPROTO_UDP`, ...) and that never saw
/// a reply (a flow to a port nobody served; answered flows, such as the host's own
/// queries to a remote server on that port, stay), in one pass; returns how many.
pub fn flush_unanswered(proto: u8, ports: &[u16]) -> Result<usize> {
    let obj = format!("conntrack entries to ports {ports:?}/{proto}");
    flush_matching(&obj, ports.is_empty(), |e| {
        e.orig_proto == Some(proto)
            && e.orig_dst_port.is_some_and(|p| ports.contains(&p))
            && !e.seen_reply
    })
}

fn flush_matching(obj: &str, nothing: bool, matches: impl Fn(&Entry) -> bool) -> Result<usize> {
    if nothing {
        return Ok(0);
    }
    let err = |op: &str, e: io::Error| Error::io(obj, op, e);
    let mut nl = Ctnetlink::open().map_err(|e| err("open netlink socket", e))?;
    let entries = match nl.dump() {
        Ok(entries) => entries,
        // No ctnetlink (module absent, conntrack never loaded): nothing is tracked.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOENT)) => {
            return Ok(0)
        }
        Err(e) => return Err(err("list", e)),
    };
    let mut deleted = 0;
    for entry in entries.iter().filter(|e| matches(e)) {
        match nl.delete(entry) {
            Ok(()) => deleted += 1,
            // Gone meanwhile (timed out, closed).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("delete", e)),
        }
    }
    Ok(deleted)
}

/// One entry as listed: its addresses, and the raw attributes that name it for a delete.
#[derive(Debug)]
struct Entry {
    /// (source, destination) of the original and of the reply direction.
    orig: (Option<Ipv4Addr>, Option<Ipv4Addr>),
    reply: (Option<Ipv4Addr>, Option<Ipv4Addr>),
    /// The original direction's protocol number and destination port.
    orig_proto: Option<u8>,
    orig_dst_port: Option<u16>,
    seen_reply: bool,
    /// CTA_TUPLE_ORIG and CTA_ZONE as the kernel sent them.
    key: Vec<u8>,
}

impl Entry {
    /// The source and destination of both directions.
    fn addresses(&self) -> [Option<Ipv4Addr>; 4] {
        [self.orig.0, self.orig.1, self.reply.0, self.reply.1]
    }
}

struct Ctnetlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Ctnetlink {
    fn open() -> io::Result<Ctnetlink> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        Ok(Ctnetlink {
            socket,
            seq: 0,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Sends one ctnetlink request (`attrs` after the nfgenmsg) and hands each reply
    /// message's payload (after the nfgenmsg) to `each`, until the end of the dump or
    /// the acknowledgement.
    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        attrs: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
        out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian).
        out.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        out.extend_from_slice(attrs);
        retry_eintr(|| self.socket.send(&out, 0))?;
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
            while offset + NLMSG_HDRLEN <= n {
                let m = &self.buf[offset..n];
                let len = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize;
                if len < NLMSG_HDRLEN || len > m.len() {
                    return Err(io::Error::other("bad netlink reply length"));
                }
                let kind = u16::from_ne_bytes([m[4], m[5]]);
                let seq = u32::from_ne_bytes([m[8], m[9], m[10], m[11]]);
                offset += (len + 3) & !3;
                if seq != self.seq {
                    continue; // a late reply to an earlier request
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = m
                            .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| io::Error::other("short netlink error reply"))?;
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => {
                        if let Some(payload) = m.get(NLMSG_HDRLEN + NFGENMSG_LEN..len) {
                            each(kind & 0xff, payload);
                        }
                    }
                }
            }
        }
    }

    fn dump(&mut self) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        self.request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, &[], |kind, payload| {
            if kind == IPCTNL_MSG_CT_NEW {
                if let Some(e) = parse_entry(payload) {
                    entries.push(e);
                }
            }
        })?;
        Ok(entries)
    }

    fn delete(&mut self, entry: &Entry) -> io::Result<()> {
        self.request(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, &entry.key, |_, _| {})
    }
}

/// The attributes of a buffer: (type without flags, payload, the whole attribute).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let (whole, payload) = (&b[..len], &b[4..len]);
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, payload, whole))
    })
}

#[derive(Default)]
struct Tuple {
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    proto: Option<u8>,
    dst_port: Option<u16>,
}

fn parse_tuple(t: &[u8]) -> Tuple {
    let mut out = Tuple::default();
    for (kind, inner, _) in attrs(t) {
        for (field, v, _) in attrs(inner) {
            match (kind, field) {
                (CTA_TUPLE_IP, CTA_IP_V4_SRC) => {
                    out.src = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
                }
                (CTA_TUPLE_IP, CTA_IP_V4_DST) => {
                    out.dst = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
                }
                (CTA_TUPLE_PROTO, CTA_PROTO_NUM) => out.proto = v.first().copied(),
                (CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT) => {
                    out.dst_port = <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes)
                }
                _ => {}
            }
        }
    }
    out
}

fn parse_entry(payload: &[u8]) -> Option<Entry> {
    let (mut orig, mut reply) = (None, Tuple::default());
    let mut key = Vec::new();
    let mut seen_reply = false;
    for (kind, v, whole) in attrs(payload) {
        match kind {
            CTA_TUPLE_ORIG => {
                orig = Some(parse_tuple(v));
                key.extend_from_slice(whole);
                key.resize((key.len() + 3) & !3, 0);
            }
            CTA_TUPLE_REPLY => reply = parse_tuple(v),
            CTA_STATUS => {
                seen_reply = <[u8; 4]>::try_from(v)
                    .map(|b| u32::from_be_bytes(b) & IPS_SEEN_REPLY != 0)
                    .unwrap_or(false)
            }
            CTA_ZONE => {
                key.extend_from_slice(whole);
                key.resize((key.len() + 3) & !3, 0);
            }
            _ => {}
        }
    }
    let orig = orig?;
    Some(Entry {
        orig: (orig.src, orig.dst),
        reply: (reply.src, reply.dst),
        orig_proto: orig.proto,
        orig_dst_port: orig.dst_port,
        seen_reply,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::in_fresh_netns;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn sh(args: &[&str]) {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Counts the entries naming `ip` (a dump, as flush_address makes).
    fn entries_of(ip: Ipv4Addr) -> usize {
        let mut nl = Ctnetlink::open().expect("open");
        nl.dump()
            .expect("dump")
            .iter()
            .filter(|e| e.addresses().contains(&Some(ip)))
            .count()
    }

    #[test]
    fn flush_removes_the_entries_of_one_address_and_no_other() {
        in_fresh_netns(|| {
            sh(&["ip", "link", "set", "lo", "up"]);
            sh(&["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"]);
            sh(&["ip", "addr", "add", "127.0.0.3/8", "dev", "lo"]);
            // Conntrack tracks a namespace once a table there needs it.
            sh(&["nft", "add", "table", "ip", "ct_test"]);
            let hook = "{ type filter hook output priority 0; }";
            sh(&["nft", "add", "chain", "ip", "ct_test", "c", hook]);
            sh(&[
                "nft", "add", "rule", "ip", "ct_test", "c", "ct", "state", "new", "counter",
            ]);
            // Two UDP flows: one to 127.0.0.2, one to 127.0.0.3.
            let a = UdpSocket::bind("127.0.0.2:0").unwrap();
            let b = UdpSocket::bind("127.0.0.3:0").unwrap();
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            c.send_to(b"to a", a.local_addr().unwrap()).unwrap();
            c.send_to(b"to b", b.local_addr().unwrap()).unwrap();
            let two: Ipv4Addr = "127.0.0.2".parse().unwrap();
            let three: Ipv4Addr = "127.0.0.3".parse().unwrap();
            assert_eq!(entries_of(two), 1);
            assert_eq!(entries_of(three), 1);

            // By port: a's flow is answered and stays; b's was never answered.
            let mut buf = [0u8; 16];
            let (_, from) = a.recv_from(&mut buf).unwrap();
            a.send_to(b"back", from).unwrap();
            c.recv_from(&mut buf).unwrap();
            let (pa, pb) = (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            );
            let udp = libc::IPPROTO_UDP as u8;
            assert_eq!(flush_unanswered(udp, &[pa]).expect("a"), 0);
            assert_eq!(entries_of(two), 1);
            assert_eq!(
                flush_unanswered(libc::IPPROTO_TCP as u8, &[pb]).expect("tcp"),
                0
            );
            assert_eq!(flush_unanswered(udp, &[pb]).expect("b"), 1);
            assert_eq!(entries_of(three), 0);
            c.send_to(b"to b", b.local_addr().unwrap()).unwrap();
            assert_eq!(entries_of(three), 1);

            assert_eq!(flush_addresses(&[two]).expect("flush"), 1);
            assert_eq!(entries_of(two), 0);
            assert_eq!(entries_of(three), 1, "another address's entry stays");
            assert_eq!(flush_addresses(&[two]).expect("again"), 0);

            sh(&["nft", "delete", "table", "ip", "ct_test"]);
        })
        .expect("fresh netns");
    }

    #[test]
    fn a_subnet_flush_keeps_the_kept_addresses_and_what_is_outside() {
        in_fresh_netns(|| {
            sh(&["ip", "link", "set", "lo", "up"]);
            for a in ["10.9.0.1/24", "10.9.0.2/24", "10.9.0.3/24", "10.8.0.4/24"] {
                sh(&["ip", "addr", "add", a, "dev", "lo"]);
            }
            sh(&["nft", "add", "table", "ip", "ct_test"]);
            let hook = "{ type filter hook output priority 0; }";
            sh(&["nft", "add", "chain", "ip", "ct_test", "c", hook]);
            sh(&[
                "nft", "add", "rule", "ip", "ct_test", "c", "ct", "state", "new", "counter",
            ]);
            // The "gateway" (.1) talks to a kept address (.2), a gone one (.3) and one
            // outside the subnet.
            let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
            let gw = UdpSocket::bind("10.9.0.1:0").unwrap();
            for to in ["10.9.0.2", "10.9.0.3", "10.8.0.4"] {
                let peer = UdpSocket::bind((ip(to), 0)).unwrap();
                gw.send_to(b"x", peer.local_addr().unwrap()).unwrap();
            }
            assert_eq!(entries_of(ip("10.9.0.1")), 3);
            let deleted = flush_in_subnet(ip("10.9.0.0"), 24, &[ip("10.9.0.1"), ip("10.9.0.2")]);
            assert_eq!(deleted.expect("flush"), 1);
            assert_eq!(entries_of(ip("10.9.0.3")), 0, "the gone address's entry");
            assert_eq!(
                entries_of(ip("10.9.0.2")),
                1,
                "a kept address's entry stays"
            );
            assert_eq!(entries_of(ip("10.8.0.4")), 1, "outside the subnet: stays");
            sh(&["nft", "delete", "table", "ip", "ct_test"]);
        })
        .expect("fresh netns");
    }
}
