//! Published ports served by the userland proxy instead of nftables: the addresses the
//! kernel's NAT cannot serve. `[::1]` (the kernel routes no loopback IPv6 traffic off the
//! host, so a DNAT to a container is dropped), and IPv6 addresses of the host for a
//! container that has no IPv6 address (no NAT from IPv6 to IPv4), asked for by address
//! or as the IPv6 twin of a port on every address (`networks.rs`, `allocate_ports`).
//! Everything else stays kernel-only (`berth_net::nft`).
//!
//! Life of such a port: `network_setup` binds its socket while it allocates the
//! container's ports (a port in use is refused then, in Docker's words, and nothing is
//! left: the socket is dropped with the failed setup) and keeps it in the network state;
//! `start_inner` takes the sockets and sends them to the shim over its stdin
//! ([`Handoff`]; `ShimConfig::proxy` describes them); the shim runs `berth-proxy` with
//! them for as long as the container runs (through daemon restarts) and kills it when
//! the container exits. The daemon's copies close once sent; a start that fails earlier
//! closes them with the network teardown.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use berth_runtime::shim_protocol::ProxyPort;

use crate::error::EngineError;

/// Whether a port published on host address `ip` goes through the proxy: `::1` always;
/// another (specific) IPv6 address when the container has no IPv6 address on its first
/// network (`dual_stack` false). Unspecified addresses never do.
pub(crate) fn proxied(ip: IpAddr, dual_stack: bool) -> bool {
    match ip {
        IpAddr::V6(v6) => !v6.is_unspecified() && (v6.is_loopback() || !dual_stack),
        IpAddr::V4(_) => false,
    }
}

/// Binds the proxy's socket for `proto` on `ip:port`: close-on-exec, IPv6-only on an
/// IPv6 address (`[::]` is every IPv6 address, not IPv4 too), a TCP one listening with
/// `SO_REUSEADDR` as Go's listeners (a restart is not refused over connections still in
/// TIME_WAIT).
pub(crate) fn bind(proto: &str, ip: IpAddr, port: u16) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if ip.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let tcp = proto != "udp";
    let kind = if tcp {
        SocketType::STREAM
    } else {
        SocketType::DGRAM
    };
    let fd = rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, None)?;
    if ip.is_ipv6() {
        rustix::net::sockopt::set_ipv6_v6only(&fd, true)?;
    }
    if tcp {
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    rustix::net::bind(&fd, &SocketAddr::from((ip, port)))?;
    if tcp {
        rustix::net::listen(&fd, 511)?;
    }
    Ok(fd)
}

/// Docker's error for a proxy that cannot bind: `Error starting userland proxy: listen
/// tcp6 [::1]:8080: bind: address already in use` (a conflict when the address is in
/// use).
pub(crate) fn bind_error(proto: &str, ip: IpAddr, port: u16, e: &std::io::Error) -> EngineError {
    let family = if ip.is_ipv6() { "6" } else { "4" };
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "cannot assign requested address".to_string(),
        _ => e.to_string(),
    };
    let msg = format!(
        "Error starting userland proxy: listen {proto}{family} {}: bind: {why}",
        SocketAddr::from((ip, port))
    );
    if e.kind() == std::io::ErrorKind::AddrInUse {
        EngineError::conflict(msg)
    } else {
        EngineError::invalid(msg)
    }
}

/// The proxy's description of one bound socket.
pub(crate) fn proxy_port(proto: &str, listen: SocketAddr, target: SocketAddr) -> ProxyPort {
    ProxyPort {
        proto: proto.to_string(),
        listen,
        target,
    }
}

/// Hands the proxy's sockets to the shim: its stdin is one end of a unix socket pair,
/// and [`Handoff::send`] sends the sockets over the other end (`SCM_RIGHTS`) once it
/// runs. So no fd of the daemon is ever inheritable, and the shim is spawned as any
/// other (posix_spawn; a `pre_exec` would make every such start fork the daemon).
pub(crate) struct Handoff {
    ours: OwnedFd,
    fds: Vec<OwnedFd>,
}

impl Handoff {
    /// The shim's stdin and the sender; None when there is nothing to hand over.
    pub(crate) fn new(fds: Vec<OwnedFd>) -> std::io::Result<Option<(Handoff, OwnedFd)>> {
        if fds.is_empty() {
            return Ok(None);
        }
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Some((Handoff { ours, fds }, theirs)))
    }

    /// Sends the sockets (one message, one byte); the daemon's copies close with it. A
    /// shim that does not receive them reports the start as failed.
    pub(crate) fn send(self) -> std::io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let borrowed: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        let mut space =
            vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        if !cmsg.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(std::io::Error::other("too many sockets for one message"));
        }
        rustix::net::sendmsg(
            &self.ours,
            &[std::io::IoSlice::new(b"p")],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_what_the_kernel_cannot_translate_is_proxied() {
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(proxied(v6("::1"), false));
        assert!(proxied(v6("::1"), true));
        assert!(proxied(v6("fd00:ee::1"), false));
        assert!(!proxied(v6("fd00:ee::1"), true));
        assert!(!proxied(v6("::"), false));
        assert!(!proxied(v6("127.0.0.1"), false));
        assert!(!proxied(v6("0.0.0.0"), false));
    }

    #[test]
    fn the_sockets_arrive_in_order_over_the_handoff() {
        let a = bind("tcp", "127.0.0.1".parse().unwrap(), 0).unwrap();
        let b = bind("udp", "127.0.0.1".parse().unwrap(), 0).unwrap();
        let want = [
            std::net::TcpListener::from(a.try_clone().unwrap())
                .local_addr()
                .unwrap(),
            std::net::UdpSocket::from(b.try_clone().unwrap())
                .local_addr()
                .unwrap(),
        ];
        let (h, theirs) = Handoff::new(vec![a, b]).unwrap().unwrap();
        h.send().unwrap();
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &theirs,
            &mut iov,
            &mut cmsg,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap();
        let mut got = Vec::new();
        for m in cmsg.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = m {
                got.extend(fds);
            }
        }
        assert_eq!(got.len(), 2);
        let mut it = got.into_iter();
        let tcp = std::net::TcpListener::from(it.next().unwrap());
        let udp = std::net::UdpSocket::from(it.next().unwrap());
        assert_eq!([tcp.local_addr().unwrap(), udp.local_addr().unwrap()], want);
    }

    #[test]
    fn every_ipv6_address_is_ipv6_only() {
        // [::]:P bound by the proxy leaves 0.0.0.0:P to the kernel's rules (and to
        // the IPv4 probe).
        let Ok(fd) = bind("tcp", "::".parse().unwrap(), 0) else {
            return; // no IPv6 here
        };
        let l = std::net::TcpListener::from(fd);
        let port = l.local_addr().unwrap().port();
        assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
        let u = std::net::UdpSocket::from(bind("udp", "::".parse().unwrap(), port).unwrap());
        assert_eq!(u.local_addr().unwrap().port(), port);
        assert!(std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok());
    }

    #[test]
    fn a_port_in_use_is_refused_in_docker_s_words() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let e = bind("tcp", "127.0.0.1".parse().unwrap(), port).unwrap_err();
        let err = bind_error("tcp", "127.0.0.1".parse().unwrap(), port, &e);
        assert_eq!(
            err.to_string(),
            format!("Error starting userland proxy: listen tcp4 127.0.0.1:{port}: bind: address already in use")
        );
        assert_eq!(err.kind, berth_types::ErrorKind::Conflict);
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert!(bind_error("udp", "::1".parse().unwrap(), 8080, &e)
            .to_string()
            .ends_with("listen udp6 [::1]:8080: bind: address already in use"));
    }
}
