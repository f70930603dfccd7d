//! The embedded DNS server: one per network, listening on the network's gateway address,
//! port 53, over UDP and TCP.
//!
//! Containers' resolv.conf names the gateway of their first network. A query is answered
//! as follows (in this order):
//!
//! 1. a packet that does not decode as a DNS query is dropped (UDP) or its connection is
//!    closed (TCP); a response (QR set) is ignored;
//! 2. a client the [`Resolver`] does not know ([`Resolver::is_client`] false) gets REFUSED
//!    and nothing is forwarded: this is not an open resolver;
//! 3. an opcode other than QUERY gets NOTIMP, a message without exactly one question
//!    FORMERR;
//! 4. a name the resolver knows for this client ([`Resolver::lookup`], class IN): an
//!    authoritative answer, TTL [`LOCAL_TTL`] (600 s, like Docker), with every IPv4
//!    address for A, every IPv6 address (dual-stack networks) for AAAA, both for ANY, and
//!    NOERROR with no record otherwise (MX..., or AAAA of an IPv4-only container), so
//!    that a client never falls through to an upstream for a container's name;
//! 5. a PTR query for `d.c.b.a.in-addr.arpa` or a full `ip6.arpa` name whose address the
//!    resolver names ([`Resolver::reverse`]): that name;
//! 6. anything else is forwarded to the client's upstreams ([`Resolver::upstreams`]) in
//!    order, [`UPSTREAM_TIMEOUT`] each, moving on when one times out, cannot be reached or
//!    answers SERVFAIL. The first other answer is relayed byte for byte except its id
//!    (the upstream saw a fresh random id; the client gets its own back). Forwarding uses
//!    the transport the client used: a UDP answer truncated by the upstream (TC) reaches
//!    the client as is, the client retries over TCP, and that query goes upstream over TCP.
//!    No upstream, or none answered: SERVFAIL.
//!
//! Names are matched whole, case-insensitively, without the trailing dot: `web.` and `WEB`
//! both ask for `web`; `web.example.com` (a search domain appended by the client's stub
//! resolver) is not `web` and is forwarded, as a name of the outside world.
//!
//! Why this way: the daemon has no async runtime on this path, and a network's DNS traffic
//! is small, so plain threads and blocking sockets suffice. One thread serves UDP (local
//! answers inline, each forward in a short-lived thread of its own), one accepts TCP
//! connections (a thread per connection). Forwards in flight are bounded by
//! [`MAX_FORWARDS`] (over that: SERVFAIL) and TCP connections by [`MAX_TCP_CONNECTIONS`]
//! (over that: closed at once); a TCP connection idle for [`TCP_IDLE_TIMEOUT`] is closed.
//! Forwarding from the daemon (in the host's network namespace) means the host's own
//! resolvers, 127.0.0.53 included, are reachable as upstreams.
//!
//! Dropping [`DnsServer`] stops it: its sockets are shut down, which wakes the blocked
//! threads at once, the two serving threads are joined, and its port is free again when
//! the drop returns. Forward threads still waiting on an upstream only hold a weak
//! reference to the UDP socket and drop their answer.
//!
//! Encoding and decoding is hickory-proto's; the only bytes touched by hand are the
//! message id of a relayed query or answer and the two-byte length prefix of DNS over TCP.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use berth_types::ErrorKind;
use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::IpNet;

use crate::{Error, Result};

/// TTL of the answers for containers' names and addresses (Docker's value).
pub const LOCAL_TTL: u32 = 600;
/// How long one upstream has to answer before the next one is asked.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries in flight at once, UDP and TCP together; over that: SERVFAIL.
pub const MAX_FORWARDS: usize = 64;
/// TCP connections served at once; over that a new connection is closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection without a complete query for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest UDP answer we send ourselves when the query carries EDNS (the DNS flag day
/// 2020 value); without EDNS the limit is 512 bytes.
const EDNS_PAYLOAD: u16 = 1232;
/// Safety net on the blocking reads of the serving threads: they also wake up this often
/// to look at the stop flag (shutting the sockets down normally wakes them at once).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What the engine answers for one network's DNS server. Called from the server's
/// threads, possibly concurrently; each call should be quick (a lookup in memory).
///
/// `client` is the querier's source address (IPv4-mapped IPv6 addresses are turned back
/// into IPv4 first).
pub trait Resolver: Send + Sync + 'static {
    /// Whether `client` is a container of this server's network. False: the query is
    /// REFUSED and nothing else is asked.
    fn is_client(&self, client: IpAddr) -> bool;
    /// The addresses of the container `name` (lowercase, no trailing dot) as seen by
    /// `client`: names, aliases and short ids of the containers sharing a network with
    /// it; IPv4 ones answer A queries, IPv6 ones (dual-stack networks) AAAA. `None`: not
    /// a container's name (the query is forwarded); `Some` without an address of the
    /// asked family: a known name (answered NOERROR, empty).
    fn lookup(&self, client: IpAddr, name: &str) -> Option<Vec<IpAddr>>;
    /// The name (no trailing dot) of the container that has address `ip` on a network
    /// `client` shares with it, for PTR queries. `None`: forwarded.
    fn reverse(&self, client: IpAddr, ip: IpAddr) -> Option<String>;
    /// Where to forward what is not a container's name, in order of preference (usually
    /// [`HostResolvConf::upstreams`] of the host's resolv.conf).
    fn upstreams(&self, client: IpAddr) -> Vec<SocketAddr>;
}

/// A running DNS server. Dropping it stops it (see the module documentation).
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tcp: Option<Arc<TcpListener>>,
    threads: Vec<JoinHandle<()>>,
}

/// State shared by the server's threads.
struct Shared {
    resolver: Arc<dyn Resolver>,
    stop: AtomicBool,
    forwards: AtomicUsize,
    /// Open TCP connections (clones of their streams, to shut them down on stop).
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
}

impl DnsServer {
    /// Binds `addr` over UDP and TCP and starts serving. Port 0 picks a port free for
    /// both protocols (tests). A bind error names the address (in use: Conflict; not an
    /// address of this host: Unavailable).
    pub fn start(addr: SocketAddr, resolver: Arc<dyn Resolver>) -> Result<DnsServer> {
        let (udp, tcp) = bind_both(addr)?;
        let addr = udp
            .local_addr()
            .map_err(|e| Error::io(server_object(addr), "local address", e))?;
        let object = server_object(addr);
        udp.set_read_timeout(Some(POLL_INTERVAL))
            .map_err(|e| Error::io(&object, "set udp read timeout", e))?;
        let udp = Arc::new(udp);
        let tcp = Arc::new(tcp);
        let shared = Arc::new(Shared {
            resolver,
            stop: AtomicBool::new(false),
            forwards: AtomicUsize::new(0),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        });
        let mut server = DnsServer {
            addr,
            shared: shared.clone(),
            tcp: Some(tcp.clone()),
            threads: Vec::new(),
        };
        let udp_shared = shared.clone();
        let udp_thread = thread::Builder::new()
            .name(format!("dns-udp-{addr}"))
            .spawn(move || serve_udp(&udp, &udp_shared))
            .map_err(|e| Error::io(&object, "spawn udp thread", e))?;
        server.threads.push(udp_thread);
        let tcp_thread = thread::Builder::new()
            .name(format!("dns-tcp-{addr}"))
            .spawn(move || serve_tcp(tcp, shared))
            .map_err(|e| Error::io(&object, "spawn tcp thread", e))?;
        server.threads.push(tcp_thread);
        tracing::debug!(%addr, "dns server started");
        Ok(server)
    }

    /// The address served (with the port chosen when started with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server now, as dropping it does; an error if one of its serving threads
    /// had panicked.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<()> {
        if self.threads.is_empty() {
            return Ok(());
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the threads blocked reading: an empty datagram for the UDP one (shutting
        // a UDP socket down would make std's recv_from panic on the address-less wake
        // up), a shutdown for the TCP listener (accept fails). Errors are of no
        // consequence: the read timeout and the stop flag end the UDP thread anyway.
        wake_udp(self.addr);
        if let Some(tcp) = self.tcp.take() {
            let _ = rustix::net::shutdown(&*tcp, rustix::net::Shutdown::Both);
        }
        if let Ok(connections) = self.shared.connections.lock() {
            for stream in connections.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        let mut panicked = false;
        for thread in self.threads.drain(..) {
            panicked |= thread.join().is_err();
        }
        tracing::debug!(addr = %self.addr, "dns server stopped");
        if panicked {
            return Err(Error::internal(
                server_object(self.addr),
                "a serving thread had panicked",
            ));
        }
        Ok(())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            tracing::error!(error = %e, "dns server stopped");
        }
    }
}

/// Sends an empty datagram to `addr` (an address of this host) from a fresh socket.
fn wake_udp(addr: SocketAddr) {
    let target = match addr.ip() {
        ip if ip.is_unspecified() && addr.is_ipv4() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    };
    if let Ok(socket) = UdpSocket::bind(unspecified_for(target)) {
        let _ = socket.send_to(&[], target);
    }
}

fn server_object(addr: SocketAddr) -> String {
    format!("dns server on {addr}")
}

fn bind_error(addr: SocketAddr, proto: &str, e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::AddrInUse => ErrorKind::Conflict,
        io::ErrorKind::AddrNotAvailable => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let message = match e.kind() {
        io::ErrorKind::AddrInUse => format!("cannot bind {proto} {addr}: address in use ({e})"),
        io::ErrorKind::AddrNotAvailable => {
            format!("cannot bind {proto} {addr}: not an address of this host ({e})")
        }
        _ => format!("cannot bind {proto} {addr}: {e}"),
    };
    Error::new(kind, server_object(addr), message)
}

/// Binds UDP then TCP on the same address and port; with port 0, retries a few times
/// when the port the kernel chose for UDP is taken for TCP.
fn bind_both(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp = UdpSocket::bind(addr).map_err(|e| bind_error(addr, "udp", e))?;
        let bound = udp.local_addr().map_err(|e| bind_error(addr, "udp", e))?;
        match TcpListener::bind(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && attempts < 16 => {
                tracing::debug!(%bound, error = %e, "tcp port taken, trying another");
            }
            Err(e) => return Err(bind_error(bound, "tcp", e)),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

// ---------------------------------------------------------------------------------------
// Deciding what to answer
// ---------------------------------------------------------------------------------------

/// What to do with one received packet.
enum Decision {
    /// Nothing (malformed, or not a query).
    Drop,
    /// Send this answer (encoded).
    Answer(Vec<u8>),
    /// Forward the packet (its raw bytes) to the client's upstreams.
    Forward { query: Message, packet: Vec<u8> },
}

fn decide(
    resolver: &dyn Resolver,
    client: IpAddr,
    packet: &[u8],
    transport: Transport,
) -> Decision {
    let query = match Message::from_vec(packet) {
        Ok(query) => query,
        Err(e) => {
            tracing::debug!(%client, error = %e, "dns: malformed query dropped");
            return Decision::Drop;
        }
    };
    if query.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    let reply = |answer: Message| match encode(&answer, &query, transport == Transport::Udp) {
        Some(bytes) => Decision::Answer(bytes),
        None => Decision::Drop,
    };
    if !resolver.is_client(client) {
        tracing::debug!(%client, "dns: query from a stranger refused");
        return reply(error_answer(&query, ResponseCode::Refused));
    }
    if query.metadata.op_code != OpCode::Query {
        return reply(error_answer(&query, ResponseCode::NotImp));
    }
    let [question] = query.queries.as_slice() else {
        return reply(error_answer(&query, ResponseCode::FormErr));
    };
    if question.query_class() == DNSClass::IN {
        let qtype = question.query_type();
        let qname = question.name();
        if let Some(name) = local_name(qname) {
            if let Some(addresses) = resolver.lookup(client, &name) {
                let mut answer = local_answer(&query);
                for ip in addresses {
                    let rdata = match ip {
                        IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                            RData::A(A(v4))
                        }
                        IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => {
                            RData::AAAA(AAAA(v6))
                        }
                        _ => continue,
                    };
                    answer.add_answer(Record::from_rdata(qname.clone(), LOCAL_TTL, rdata));
                }
                return reply(answer);
            }
        }
        if qtype == RecordType::PTR {
            let host = match qname.parse_arpa_name() {
                Ok(IpNet::V4(net)) if net.prefix_len() == 32 => Some(IpAddr::V4(net.addr())),
                Ok(IpNet::V6(net)) if net.prefix_len() == 128 => Some(IpAddr::V6(net.addr())),
                _ => None,
            };
            if let Some(host) = host {
                {
                    if let Some(target) = resolver
                        .reverse(client, host)
                        .and_then(|name| Name::from_ascii(format!("{name}.")).ok())
                    {
                        let mut answer = local_answer(&query);
                        answer.add_answer(Record::from_rdata(
                            qname.clone(),
                            LOCAL_TTL,
                            RData::PTR(PTR(target)),
                        ));
                        return reply(answer);
                    }
                }
            }
        }
    }
    Decision::Forward {
        query,
        packet: packet.to_vec(),
    }
}

/// The lookup key of a query name: lowercase, no trailing dot; None for the root.
fn local_name(name: &Name) -> Option<String> {
    if name.is_root() {
        return None;
    }
    let mut ascii = name.to_ascii().to_ascii_lowercase();
    if ascii.ends_with('.') {
        ascii.pop();
    }
    (!ascii.is_empty()).then_some(ascii)
}

/// A response to `query`: same id, RD and CD, the question echoed, EDNS if it had EDNS.
fn response_to(query: &Message) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.metadata.recursion_available = true;
    response.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

fn local_answer(query: &Message) -> Message {
    let mut answer = response_to(query);
    answer.metadata.authoritative = true;
    answer
}

fn error_answer(query: &Message, code: ResponseCode) -> Message {
    let mut answer = response_to(query);
    answer.metadata.response_code = code;
    answer
}

/// Encodes an answer of ours; over UDP, a message larger than the client accepts is sent
/// truncated (TC, no records) so that the client retries over TCP. When even the echoed
/// questions do not fit (an error answer to a query of many long questions), the
/// truncated answer has no question either: never more than the client accepts.
fn encode(answer: &Message, query: &Message, udp: bool) -> Option<Vec<u8>> {
    let bytes = match answer.to_vec() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "dns: cannot encode an answer");
            return None;
        }
    };
    let limit = match &query.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD)),
        None => 512,
    };
    if udp && bytes.len() > limit {
        let mut truncated = answer.truncate();
        let bytes = truncated.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        truncated.queries.clear();
        return truncated.to_vec().ok();
    }
    Some(bytes)
}

// ---------------------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------------------

/// One forward counted against [`MAX_FORWARDS`]; released when dropped.
struct ForwardSlot(Arc<Shared>);

impl ForwardSlot {
    fn take(shared: &Arc<Shared>) -> Option<ForwardSlot> {
        let taken = shared
            .forwards
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_FORWARDS).then_some(n + 1)
            });
        taken.ok().map(|_| ForwardSlot(shared.clone()))
    }
}

impl Drop for ForwardSlot {
    fn drop(&mut self) {
        self.0.forwards.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Asks the upstreams in turn; the answer to relay to the client (its id set back to the
/// client's), or SERVFAIL of our own.
fn forward(
    shared: &Shared,
    client: IpAddr,
    query: &Message,
    packet: &[u8],
    transport: Transport,
) -> Vec<u8> {
    let upstreams = shared.resolver.upstreams(client);
    let client_id = query.metadata.id;
    for upstream in &upstreams {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let id: u16 = rand::random();
        let mut outgoing = packet.to_vec();
        set_id(&mut outgoing, id);
        let reply = match transport {
            Transport::Udp => exchange_udp(shared, *upstream, &outgoing, id),
            Transport::Tcp => exchange_tcp(*upstream, &outgoing, id),
        };
        match reply {
            Ok((mut reply, code)) if code != ResponseCode::ServFail => {
                set_id(&mut reply, client_id);
                return reply;
            }
            Ok(_) => tracing::debug!(%upstream, "dns: upstream answered SERVFAIL, next"),
            Err(e) => tracing::debug!(%upstream, error = %e, "dns: upstream failed, next"),
        }
    }
    if upstreams.is_empty() {
        tracing::debug!(%client, "dns: no upstream to forward to");
    }
    encode(
        &error_answer(query, ResponseCode::ServFail),
        query,
        transport == Transport::Udp,
    )
    .unwrap_or_default()
}

/// Sets the id of an encoded message (its first two bytes, RFC 1035 4.1.1).
fn set_id(message: &mut [u8], id: u16) {
    if let Some(head) = message.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
}

/// The header of an upstream's reply, if it is a response with the id we sent.
fn check_reply(reply: &[u8], id: u16) -> Option<ResponseCode> {
    let header = Header::read(&mut BinDecoder::new(reply)).ok()?;
    (header.metadata.id == id && header.metadata.message_type == MessageType::Response)
        .then_some(header.metadata.response_code)
}

fn unspecified_for(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

fn exchange_udp(
    shared: &Shared,
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
) -> io::Result<(Vec<u8>, ResponseCode)> {
    let socket = UdpSocket::bind(unspecified_for(upstream))?;
    socket.connect(upstream)?;
    socket.send(query)?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buf = vec![0u8; 65535];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "server stopping",
            ));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
        }
        socket.set_read_timeout(Some(remaining.min(POLL_INTERVAL)))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                let reply = &buf[..n];
                if let Some(code) = check_reply(reply, id) {
                    return Ok((reply.to_vec(), code));
                }
                // Not the answer to our query (stale or forged): keep waiting.
            }
            // A signal to this thread (EINTR) is no failure of the upstream.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
) -> io::Result<(Vec<u8>, ResponseCode)> {
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)?;
    stream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    write_frame(&mut stream, query)?;
    let reply = read_frame(&mut stream, deadline)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))?;
    let code = check_reply(&reply, id)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not our answer"))?;
    Ok((reply, code))
}

// ---------------------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------------------

fn serve_udp(socket: &Arc<UdpSocket>, shared: &Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    while !shared.stop.load(Ordering::SeqCst) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::debug!(error = %e, "dns: udp receive failed");
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let client = canonical(from.ip());
        match decide(&*shared.resolver, client, &buf[..n], Transport::Udp) {
            Decision::Drop => {}
            Decision::Answer(bytes) => send_udp(socket, &bytes, from),
            Decision::Forward { query, packet } => {
                let Some(slot) = ForwardSlot::take(shared) else {
                    tracing::debug!(%client, "dns: too many forwards in flight");
                    if let Some(bytes) =
                        encode(&error_answer(&query, ResponseCode::ServFail), &query, true)
                    {
                        send_udp(socket, &bytes, from);
                    }
                    continue;
                };
                let weak = Arc::downgrade(socket);
                let servfail = encode(&error_answer(&query, ResponseCode::ServFail), &query, true);
                let spawned = thread::Builder::new()
                    .name("dns-forward".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let reply = forward(&slot.0, client, &query, &packet, Transport::Udp);
                        reply_udp(&weak, &reply, from);
                        drop(slot);
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "dns: cannot start a forward thread");
                    if let Some(bytes) = servfail {
                        send_udp(socket, &bytes, from);
                    }
                }
            }
        }
    }
}

fn send_udp(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to) {
        tracing::debug!(%to, error = %e, "dns: udp send failed");
    }
}

/// Sends a forwarded answer if the server still runs.
fn reply_udp(socket: &Weak<UdpSocket>, bytes: &[u8], to: SocketAddr) {
    if let Some(socket) = socket.upgrade() {
        send_udp(&socket, bytes, to);
    }
}

// ---------------------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------------------

fn serve_tcp(listener: Arc<TcpListener>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let (stream, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                tracing::debug!(error = %e, "dns: tcp accept failed");
                // Out of descriptors and the like: do not spin.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
        {
            let Ok(mut connections) = shared.connections.lock() else {
                break;
            };
            if connections.len() >= MAX_TCP_CONNECTIONS {
                tracing::debug!(%from, "dns: too many tcp connections, closing a new one");
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => {
                    connections.insert(id, clone);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dns: cannot clone a tcp stream");
                    continue;
                }
            }
        }
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("dns-tcp-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve_connection(stream, canonical(from.ip()), &conn_shared);
                if let Ok(mut connections) = conn_shared.connections.lock() {
                    connections.remove(&id);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "dns: cannot start a tcp connection thread");
            if let Ok(mut connections) = shared.connections.lock() {
                connections.remove(&id);
            }
        }
    }
}

fn serve_connection(mut stream: TcpStream, client: IpAddr, shared: &Arc<Shared>) {
    if stream.set_write_timeout(Some(TCP_IDLE_TIMEOUT)).is_err() {
        return;
    }
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let packet = match read_frame(&mut stream, Instant::now() + TCP_IDLE_TIMEOUT) {
            Ok(Some(packet)) if !packet.is_empty() => packet,
            // Closed, idle too long, a zero-length frame or a broken frame.
            Ok(_) | Err(_) => return,
        };
        let reply = match decide(&*shared.resolver, client, &packet, Transport::Tcp) {
            Decision::Drop => return,
            Decision::Answer(bytes) => Some(bytes),
            Decision::Forward { query, packet } => match ForwardSlot::take(shared) {
                Some(_slot) => Some(forward(shared, client, &query, &packet, Transport::Tcp)),
                None => encode(&error_answer(&query, ResponseCode::ServFail), &query, false),
            },
        };
        let Some(reply) = reply else { return };
        if write_frame(&mut stream, &reply).is_err() {
            return;
        }
    }
}

/// Writes one DNS-over-TCP message: its length on two bytes, then the message.
fn write_frame(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 64 KiB"))?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame)
}

/// A byte stream whose reads can be given a timeout: a TCP connection, or bytes in
/// memory (for [`fuzz_tcp_stream`], where the timeout is of no consequence).
trait TimedRead: Read {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl TimedRead for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))
    }
}

impl TimedRead for &[u8] {
    fn set_timeout(&mut self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one DNS-over-TCP message, whole by `deadline`. `None`: the peer closed the
/// connection between messages.
fn read_frame(stream: &mut impl TimedRead, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    if !read_exact_by(stream, &mut len, deadline, true)? {
        return Ok(None);
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact_by(stream, &mut message, deadline, false)?;
    Ok(Some(message))
}

/// Fills `buf` by `deadline`. Returns false if the peer closed before the first byte and
/// `eof_ok`; a close in the middle is an error.
fn read_exact_by(
    stream: &mut impl TimedRead,
    buf: &mut [u8],
    deadline: Instant,
    eof_ok: bool,
) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
        }
        stream.set_timeout(remaining)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 && eof_ok => return Ok(false),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// Fuzzing entry points
// ---------------------------------------------------------------------------------------

/// The fixed in-memory [`Resolver`] of [`fuzz_one`] and [`fuzz_tcp_stream`]: its only
/// client is [`FUZZ_CLIENT`]; it knows `web` (two addresses), `empty` (no address),
/// `replicas` (60 addresses: too many for 512 bytes, so UDP answers get truncated) and
/// names `web` for PTR queries of 100.72.0.2 and 100.72.0.3; it has no upstream.
struct FuzzResolver;

/// The one client [`fuzz_one`] plays (100.72.0.10); any other address is a stranger.
#[doc(hidden)]
pub const FUZZ_CLIENT: Ipv4Addr = Ipv4Addr::new(100, 72, 0, 10);

impl Resolver for FuzzResolver {
    fn is_client(&self, client: IpAddr) -> bool {
        client == IpAddr::V4(FUZZ_CLIENT)
    }
    fn lookup(&self, _client: IpAddr, name: &str) -> Option<Vec<IpAddr>> {
        fuzz_addresses(name).map(|v| v.into_iter().map(IpAddr::V4).collect())
    }
    fn reverse(&self, _client: IpAddr, ip: IpAddr) -> Option<String> {
        matches!(ip, IpAddr::V4(v4) if matches!(v4.octets(), [100, 72, 0, 2 | 3]))
            .then(|| "web".to_string())
    }
    fn upstreams(&self, _client: IpAddr) -> Vec<SocketAddr> {
        Vec::new()
    }
}

/// The addresses [`fuzz_one`]'s resolver has for `name` (lowercase, no trailing dot).
#[doc(hidden)]
pub fn fuzz_addresses(name: &str) -> Option<Vec<Ipv4Addr>> {
    match name {
        "web" => Some(vec![
            Ipv4Addr::new(100, 72, 0, 2),
            Ipv4Addr::new(100, 72, 0, 3),
        ]),
        "empty" => Some(Vec::new()),
        "replicas" => Some((1..=60).map(|i| Ipv4Addr::new(100, 72, 1, i)).collect()),
        _ => None,
    }
}

/// For the cargo-fuzz target `dns_query` only (not an API): what the server does with
/// `packet` received from [`FUZZ_CLIENT`] (or, with `stranger`, from another address)
/// over UDP (`udp`) or TCP, with the fixed resolver of [`fuzz_addresses`]: the encoded
/// answer, or `None` when the packet is dropped or would be forwarded (nothing is
/// forwarded and no socket is opened).
#[doc(hidden)]
pub fn fuzz_one(packet: &[u8], udp: bool, stranger: bool) -> Option<Vec<u8>> {
    let client = if stranger {
        IpAddr::V4(Ipv4Addr::new(100, 72, 0, 11))
    } else {
        IpAddr::V4(FUZZ_CLIENT)
    };
    let transport = if udp { Transport::Udp } else { Transport::Tcp };
    match decide(&FuzzResolver, client, packet, transport) {
        Decision::Answer(bytes) => Some(bytes),
        Decision::Drop | Decision::Forward { .. } => None,
    }
}

/// For the cargo-fuzz target `dns_query` only (not an API): `bytes` as what a client
/// sends on one TCP connection, read with the server's frame reader. Returns the
/// messages read before the connection would be closed (peer gone, cut frame, empty
/// frame) and, for each, [`fuzz_one`]'s answer over TCP.
#[doc(hidden)]
pub fn fuzz_tcp_stream(mut bytes: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut exchanges = Vec::new();
    let deadline = Instant::now() + TCP_IDLE_TIMEOUT;
    while let Ok(Some(message)) = read_frame(&mut bytes, deadline) {
        if message.is_empty() {
            break;
        }
        let answer = fuzz_one(&message, false, false);
        exchanges.push((message, answer));
    }
    exchanges
}

// ---------------------------------------------------------------------------------------
// The host's resolv.conf
// ---------------------------------------------------------------------------------------

/// The host's resolver configuration, as in resolv.conf(5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostResolvConf {
    /// `nameserver` lines, in order (addresses that do not parse are skipped).
    pub nameservers: Vec<IpAddr>,
    /// The search list: the last `search` (or `domain`) line wins, as for glibc.
    pub search: Vec<String>,
    /// The words of every `options` line, in order (`ndots:2`, `edns0`, ...).
    pub options: Vec<String>,
}

impl HostResolvConf {
    /// The nameservers as upstreams of the embedded server (port 53).
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect()
    }
}

/// Reads a resolv.conf (`/etc/resolv.conf` on the host). Comments (`#` or `;` at the
/// start of a line, or after a word) and lines it does not understand are ignored, as the
/// C library does. A file that cannot be read is an error naming it.
pub fn read_resolv_conf(path: &Path) -> Result<HostResolvConf> {
    let text = fs::read_to_string(path).map_err(|e| {
        let kind = if e.kind() == io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Internal
        };
        Error::new(kind, path.display().to_string(), format!("read: {e}"))
    })?;
    Ok(parse_resolv_conf(&text))
}

fn parse_resolv_conf(text: &str) -> HostResolvConf {
    let mut conf = HostResolvConf::default();
    for line in text.lines() {
        let line = match line.find(['#', ';']) {
            Some(comment) => &line[..comment],
            None => line,
        };
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword {
            "nameserver" => {
                // A scoped IPv6 address (fe80::1%eth0) cannot be used from elsewhere.
                if let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) {
                    conf.nameservers.push(ip);
                }
            }
            "search" | "domain" => {
                conf.search = words
                    .map(|w| w.trim_end_matches('.').to_string())
                    .filter(|w| !w.is_empty())
                    .collect();
            }
            "options" => conf.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    conf
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::HashSet;

    const WEB1: Ipv4Addr = Ipv4Addr::new(100, 72, 0, 2);
    const WEB2: Ipv4Addr = Ipv4Addr::new(100, 72, 0, 3);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    const DUAL6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 0x20);
    /// Long enough for any answer on a loopback; a failure guard, not a timing assertion.
    const WAIT: Duration = Duration::from_secs(10);

    struct FakeResolver {
        clients: HashSet<IpAddr>,
        names: HashMap<String, Vec<Ipv4Addr>>,
        /// IPv6 addresses of names (dual-stack), beside `names`' IPv4 ones.
        names6: HashMap<String, Vec<Ipv6Addr>>,
        upstreams: Vec<SocketAddr>,
    }

    impl Resolver for FakeResolver {
        fn is_client(&self, client: IpAddr) -> bool {
            self.clients.contains(&client)
        }
        fn lookup(&self, _client: IpAddr, name: &str) -> Option<Vec<IpAddr>> {
            let v4 = self.names.get(name);
            let v6 = self.names6.get(name);
            if v4.is_none() && v6.is_none() {
                return None;
            }
            let mut all: Vec<IpAddr> = v4.into_iter().flatten().map(|ip| IpAddr::V4(*ip)).collect();
            all.extend(v6.into_iter().flatten().map(|ip| IpAddr::V6(*ip)));
            Some(all)
        }
        fn reverse(&self, _client: IpAddr, ip: IpAddr) -> Option<String> {
            let v4 = self
                .names
                .iter()
                .find(|(_, ips)| ips.iter().any(|a| IpAddr::V4(*a) == ip));
            let v6 = self
                .names6
                .iter()
                .find(|(_, ips)| ips.iter().any(|a| IpAddr::V6(*a) == ip));
            v4.map(|(name, _)| name.clone())
                .or_else(|| v6.map(|(name, _)| name.clone()))
        }
        fn upstreams(&self, _client: IpAddr) -> Vec<SocketAddr> {
            self.upstreams.clone()
        }
    }

    /// A server on 127.0.0.1 whose only client is 127.0.0.1 and which knows `web`
    /// (two addresses) and `db.internal`, forwarding to `upstreams`.
    fn server(upstreams: Vec<SocketAddr>) -> DnsServer {
        server_for(IpAddr::V4(Ipv4Addr::LOCALHOST), upstreams)
    }

    fn server_for(client: IpAddr, upstreams: Vec<SocketAddr>) -> DnsServer {
        let resolver = FakeResolver {
            clients: HashSet::from([client]),
            names: HashMap::from([
                ("web".to_string(), vec![WEB1, WEB2]),
                (
                    "db.internal".to_string(),
                    vec![Ipv4Addr::new(100, 72, 0, 9)],
                ),
                ("dual".to_string(), vec![Ipv4Addr::new(100, 72, 0, 20)]),
            ]),
            names6: HashMap::from([("dual".to_string(), vec![DUAL6])]),
            upstreams,
        };
        DnsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(resolver)).unwrap()
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        let mut name = Name::from_ascii(name).unwrap();
        name.set_fqdn(true);
        message.add_query(hickory_proto::op::Query::query(name, qtype));
        message
    }

    fn client_socket() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        socket
    }

    fn recv_message(socket: &UdpSocket) -> Message {
        let mut buf = vec![0u8; 65535];
        let n = loop {
            match socket.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("an answer"),
            }
        };
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn udp_ask(server: SocketAddr, query: &Message) -> Message {
        let socket = client_socket();
        socket.connect(server).unwrap();
        socket.send(&query.to_vec().unwrap()).unwrap();
        recv_message(&socket)
    }

    fn tcp_connect(server: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }

    fn tcp_ask_on(stream: &mut TcpStream, query: &Message) -> Message {
        write_frame(stream, &query.to_vec().unwrap()).unwrap();
        let reply = read_frame(stream, Instant::now() + WAIT).unwrap().unwrap();
        Message::from_vec(&reply).unwrap()
    }

    fn a_records(answer: &Message) -> Vec<Ipv4Addr> {
        answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    /// What a fake upstream does with the queries it receives.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Answers A 203.0.113.7 for any name.
        Answer,
        /// Answers SERVFAIL.
        ServFail,
        /// Over UDP: an empty answer with TC set; over TCP: the full answer.
        TruncateUdp,
        /// Never answers.
        Silent,
    }

    /// A DNS server of the outside world, on 127.0.0.1 (UDP and TCP, same port).
    struct Upstream {
        addr: SocketAddr,
        udp_queries: Arc<AtomicUsize>,
        tcp_queries: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        tcp: Arc<TcpListener>,
        threads: Vec<JoinHandle<()>>,
    }

    fn upstream_answer(packet: &[u8], mode: Mode, over_tcp: bool) -> Option<Vec<u8>> {
        let query = Message::from_vec(packet).ok()?;
        let mut answer = Message::response(query.metadata.id, OpCode::Query);
        answer.metadata.recursion_desired = query.metadata.recursion_desired;
        answer.metadata.recursion_available = true;
        answer.add_queries(query.queries.iter().cloned());
        match mode {
            Mode::Silent => return None,
            Mode::ServFail => answer.metadata.response_code = ResponseCode::ServFail,
            Mode::TruncateUdp if !over_tcp => answer.metadata.truncation = true,
            Mode::Answer | Mode::TruncateUdp => {
                let name = query.queries[0].name().clone();
                answer.add_answer(Record::from_rdata(name, 60, RData::A(A(OUTSIDE))));
            }
        }
        answer.to_vec().ok()
    }

    impl Upstream {
        fn start(mode: Mode) -> Upstream {
            let (udp, tcp) = bind_both("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = udp.local_addr().unwrap();
            udp.set_read_timeout(Some(POLL_INTERVAL)).unwrap();
            let (udp, tcp) = (Arc::new(udp), Arc::new(tcp));
            let stop = Arc::new(AtomicBool::new(false));
            let udp_queries = Arc::new(AtomicUsize::new(0));
            let tcp_queries = Arc::new(AtomicUsize::new(0));
            let (s, u, c) = (udp.clone(), stop.clone(), udp_queries.clone());
            let udp_thread = thread::spawn(move || {
                let mut buf = vec![0u8; 65535];
                while !u.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        if n == 0 {
                            continue;
                        }
                        c.fetch_add(1, Ordering::SeqCst);
                        if let Some(answer) = upstream_answer(&buf[..n], mode, false) {
                            let _ = s.send_to(&answer, from);
                        }
                    }
                }
            });
            let (l, u, c) = (tcp.clone(), stop.clone(), tcp_queries.clone());
            let tcp_thread = thread::spawn(move || {
                while let Ok((mut stream, _)) = l.accept() {
                    if u.load(Ordering::SeqCst) {
                        break;
                    }
                    while let Ok(Some(packet)) = read_frame(&mut stream, Instant::now() + WAIT) {
                        c.fetch_add(1, Ordering::SeqCst);
                        match upstream_answer(&packet, mode, true) {
                            Some(answer) => {
                                let _ = write_frame(&mut stream, &answer);
                            }
                            None => break,
                        }
                    }
                }
            });
            Upstream {
                addr,
                udp_queries,
                tcp_queries,
                stop,
                tcp,
                threads: vec![udp_thread, tcp_thread],
            }
        }

        fn queries(&self) -> usize {
            self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
        }
    }

    impl Drop for Upstream {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            wake_udp(self.addr);
            let _ = rustix::net::shutdown(&*self.tcp, rustix::net::Shutdown::Both);
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }

    /// An address where nothing listens (a port just released, on a loopback address no
    /// other test binds, so that no test socket takes it meanwhile).
    fn dead_address() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.3:0").unwrap();
        socket.local_addr().unwrap()
    }

    #[test]
    fn container_names_answer_locally_case_insensitively() {
        let upstream = Upstream::start(Mode::Answer);
        let dns = server(vec![upstream.addr]);
        for name in ["web", "WeB.", "DB.Internal"] {
            let q = query(name, RecordType::A);
            let answer = udp_ask(dns.local_addr(), &q);
            assert_eq!(answer.metadata.id, q.metadata.id);
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert!(answer.metadata.authoritative, "{name}");
            assert_eq!(answer.queries, q.queries, "the question is echoed as asked");
            assert!(answer.answers.iter().all(|r| r.ttl == LOCAL_TTL));
            let expected = if name.starts_with('D') {
                vec![Ipv4Addr::new(100, 72, 0, 9)]
            } else {
                vec![WEB1, WEB2]
            };
            assert_eq!(a_records(&answer), expected, "{name}");
        }
        // Another type for a container's name: NOERROR without record, not forwarded.
        for qtype in [RecordType::AAAA, RecordType::MX] {
            let answer = udp_ask(dns.local_addr(), &query("web", qtype));
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert!(answer.answers.is_empty());
        }
        // A dual-stack container: A gives its IPv4 address, AAAA its IPv6 one, ANY
        // both; its IPv6 address's PTR names it.
        let records = |qtype| {
            let answer = udp_ask(dns.local_addr(), &query("dual", qtype));
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            answer
                .answers
                .iter()
                .map(|r| r.data.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(records(RecordType::A), ["100.72.0.20"]);
        assert_eq!(records(RecordType::AAAA), ["fd00:b::20"]);
        assert_eq!(records(RecordType::ANY), ["100.72.0.20", "fd00:b::20"]);
        let ptr = udp_ask(
            dns.local_addr(),
            &query(
                "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.0.0.0.0.0.d.f.ip6.arpa",
                RecordType::PTR,
            ),
        );
        assert_eq!(
            ptr.answers
                .iter()
                .map(|r| r.data.to_string())
                .collect::<Vec<_>>(),
            ["dual."]
        );
        // A search domain appended is another name: forwarded.
        let answer = udp_ask(dns.local_addr(), &query("web.example.com", RecordType::A));
        assert_eq!(a_records(&answer), vec![OUTSIDE]);
        assert_eq!(upstream.queries(), 1);
    }

    #[test]
    fn a_local_answer_too_big_for_udp_is_truncated_then_served_over_tcp() {
        let many: Vec<Ipv4Addr> = (1..=60).map(|i| Ipv4Addr::new(100, 72, 1, i)).collect();
        let resolver = FakeResolver {
            clients: HashSet::from([IpAddr::V4(Ipv4Addr::LOCALHOST)]),
            names: HashMap::from([("replicas".to_string(), many.clone())]),
            names6: HashMap::new(),
            upstreams: vec![],
        };
        let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(resolver)).unwrap();
        let q = query("replicas", RecordType::A);
        let answer = udp_ask(dns.local_addr(), &q);
        assert!(answer.metadata.truncation);
        assert!(answer.answers.is_empty());
        let mut stream = tcp_connect(dns.local_addr());
        let answer = tcp_ask_on(&mut stream, &q);
        assert!(!answer.metadata.truncation);
        assert_eq!(a_records(&answer), many);
        // With EDNS the client accepts larger UDP answers: all 60 fit in 1232 bytes.
        let mut q = query("replicas", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let answer = udp_ask(dns.local_addr(), &q);
        assert!(!answer.metadata.truncation);
        assert_eq!(a_records(&answer), many);
        assert!(answer.edns.is_some(), "EDNS is answered with EDNS");
    }

    #[test]
    fn ptr_names_a_container_address() {
        let upstream = Upstream::start(Mode::Answer);
        let dns = server(vec![upstream.addr]);
        let answer = udp_ask(
            dns.local_addr(),
            &query("3.0.72.100.in-addr.arpa.", RecordType::PTR),
        );
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        let names: Vec<String> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(ptr) => Some(ptr.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(names, vec!["web.".to_string()]);
        assert_eq!(upstream.queries(), 0);
    }

    #[test]
    fn strangers_are_refused_and_nothing_is_forwarded() {
        let upstream = Upstream::start(Mode::Answer);
        let dns = server_for("127.0.0.9".parse().unwrap(), vec![upstream.addr]);
        for name in ["web", "example.com"] {
            let q = query(name, RecordType::A);
            let answer = udp_ask(dns.local_addr(), &q);
            assert_eq!(answer.metadata.id, q.metadata.id);
            assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
            assert!(answer.answers.is_empty());
            let mut stream = tcp_connect(dns.local_addr());
            let answer = tcp_ask_on(&mut stream, &q);
            assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        }
        assert_eq!(upstream.queries(), 0);
    }

    #[test]
    fn other_names_are_forwarded_with_the_client_id() {
        let upstream = Upstream::start(Mode::Answer);
        let dns = server(vec![upstream.addr]);
        for _ in 0..3 {
            let q = query("example.com", RecordType::A);
            let answer = udp_ask(dns.local_addr(), &q);
            assert_eq!(answer.metadata.id, q.metadata.id);
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert!(!answer.metadata.authoritative);
            assert_eq!(answer.queries, q.queries);
            assert_eq!(a_records(&answer), vec![OUTSIDE]);
        }
        assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_dead_silent_or_failing_upstream_passes_to_the_next() {
        let silent = Upstream::start(Mode::Silent);
        let failing = Upstream::start(Mode::ServFail);
        let good = Upstream::start(Mode::Answer);
        let dns = server(vec![dead_address(), silent.addr, failing.addr, good.addr]);
        let q = query("example.org", RecordType::A);
        let answer = udp_ask(dns.local_addr(), &q);
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(a_records(&answer), vec![OUTSIDE]);
        assert_eq!(silent.queries(), 1);
        assert_eq!(failing.queries(), 1);
        assert_eq!(good.queries(), 1);
    }

    #[test]
    fn without_upstream_forwarding_fails_with_servfail() {
        let dns = server(vec![]);
        let q = query("example.com", RecordType::A);
        let answer = udp_ask(dns.local_addr(), &q);
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        let dead = server(vec![dead_address()]);
        let answer = udp_ask(dead.local_addr(), &q);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        let mut stream = tcp_connect(dead.local_addr());
        let answer = tcp_ask_on(&mut stream, &q);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn tcp_serves_local_and_forwarded_names_on_one_connection() {
        let upstream = Upstream::start(Mode::Answer);
        let dns = server(vec![upstream.addr]);
        let mut stream = tcp_connect(dns.local_addr());
        let q = query("web", RecordType::A);
        let answer = tcp_ask_on(&mut stream, &q);
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(a_records(&answer), vec![WEB1, WEB2]);
        let q = query("example.com", RecordType::A);
        let answer = tcp_ask_on(&mut stream, &q);
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(a_records(&answer), vec![OUTSIDE]);
        assert_eq!(upstream.tcp_queries.load(Ordering::SeqCst), 1);
        assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_truncated_upstream_answer_is_retried_over_tcp() {
        let upstream = Upstream::start(Mode::TruncateUdp);
        let dns = server(vec![upstream.addr]);
        let q = query("big.example.com", RecordType::A);
        let answer = udp_ask(dns.local_addr(), &q);
        assert!(answer.metadata.truncation, "TC is relayed to the client");
        assert!(answer.answers.is_empty());
        let mut stream = tcp_connect(dns.local_addr());
        let answer = tcp_ask_on(&mut stream, &q);
        assert!(!answer.metadata.truncation);
        assert_eq!(a_records(&answer), vec![OUTSIDE]);
        assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1);
        assert_eq!(upstream.tcp_queries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn malformed_input_is_dropped_and_serving_goes_on() {
        let dns = server(vec![]);
        let socket = client_socket();
        socket.connect(dns.local_addr()).unwrap();
        let mut response = query("web", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        let junk: Vec<Vec<u8>> = vec![
            b"\xff\x00garbage that is no dns message at all".to_vec(),
            vec![0x12, 0x34, 0x01],     // truncated header
            vec![],                     // empty datagram
            response.to_vec().unwrap(), // a response, not a query
            {
                // A question cut in the middle of its name.
                let mut cut = query("example.com", RecordType::A).to_vec().unwrap();
                cut.truncate(18);
                cut
            },
        ];
        for packet in &junk {
            socket.send(packet).unwrap();
        }
        let q = query("web", RecordType::A);
        socket.send(&q.to_vec().unwrap()).unwrap();
        // The first answer to arrive is the one to the good query: junk got none.
        let answer = recv_message(&socket);
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(a_records(&answer), vec![WEB1, WEB2]);

        // TCP: a zero-length frame, garbage or a frame cut short close the connection.
        let frames: [&[u8]; 3] = [&[0, 0], &[0, 5, 1, 2, 3, 4, 5], &[0, 40, 1, 2]];
        for frame in frames {
            let mut stream = tcp_connect(dns.local_addr());
            stream.write_all(frame).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            assert!(rest.is_empty(), "no answer to {frame:?}");
        }
        let mut stream = tcp_connect(dns.local_addr());
        let answer = tcp_ask_on(&mut stream, &q);
        assert_eq!(a_records(&answer), vec![WEB1, WEB2]);
    }

    #[test]
    fn mutated_packets_never_panic() {
        use rand::{Rng, SeedableRng};
        let resolver = FakeResolver {
            clients: HashSet::from([IpAddr::V4(Ipv4Addr::LOCALHOST)]),
            names: HashMap::from([("web".to_string(), vec![WEB1])]),
            names6: HashMap::new(),
            upstreams: vec![],
        };
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut with_edns = query("web", RecordType::A);
        with_edns.set_edns(Edns::new());
        let seeds: Vec<Vec<u8>> = vec![
            query("web", RecordType::A).to_vec().unwrap(),
            query("2.0.72.100.in-addr.arpa", RecordType::PTR)
                .to_vec()
                .unwrap(),
            with_edns.to_vec().unwrap(),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(53);
        let mut answered = 0;
        for seed in &seeds {
            for len in 0..=seed.len() {
                for transport in [Transport::Udp, Transport::Tcp] {
                    if let Decision::Answer(_) = decide(&resolver, client, &seed[..len], transport)
                    {
                        answered += 1;
                    }
                }
            }
            for _ in 0..2000 {
                let mut packet = seed.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..packet.len());
                    packet[i] = rng.gen();
                }
                if let Decision::Answer(_) = decide(&resolver, client, &packet, Transport::Udp) {
                    answered += 1;
                }
            }
        }
        // The intact seeds at least were answered.
        assert!(answered >= seeds.len());
    }

    /// Found by the `dns_query` fuzz target (fuzz/regressions/dns_query/
    /// udp-answer-over-512): FORMERR to a UDP query of several long questions echoed them
    /// all, in an answer over the client's 512 bytes even once truncated.
    #[test]
    fn an_error_answer_over_udp_fits_512_bytes_even_with_long_questions() {
        // Three names of 193 bytes without a common suffix (nothing to compress).
        let long = |c: char| {
            let label = c.to_string().repeat(63);
            format!("{label}.{label}.{label}.")
        };
        let mut q = query(&long('a'), RecordType::A);
        for c in ['b', 'c'] {
            q.add_query(hickory_proto::op::Query::query(
                Name::from_ascii(long(c)).unwrap(),
                RecordType::AAAA,
            ));
        }
        let packet = q.to_vec().unwrap();
        assert!(packet.len() > 512);
        let Some(bytes) = fuzz_one(&packet, true, false) else {
            panic!("no answer");
        };
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
        let answer = Message::from_vec(&bytes).unwrap();
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        assert!(answer.metadata.truncation);
        // Over TCP the whole answer, questions echoed.
        let answer = Message::from_vec(&fuzz_one(&packet, false, false).unwrap()).unwrap();
        assert_eq!(answer.queries, q.queries);
        assert!(!answer.metadata.truncation);
        // A stranger's REFUSED too.
        let bytes = fuzz_one(&packet, true, true).unwrap();
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    }

    #[test]
    fn the_fuzz_entry_points_answer_like_the_server() {
        let q = query("replicas", RecordType::A);
        let packet = q.to_vec().unwrap();
        let udp = Message::from_vec(&fuzz_one(&packet, true, false).unwrap()).unwrap();
        assert!(udp.metadata.truncation);
        let tcp = Message::from_vec(&fuzz_one(&packet, false, false).unwrap()).unwrap();
        assert_eq!(a_records(&tcp).len(), 60);
        assert!(fuzz_one(
            &query("example.com", RecordType::A).to_vec().unwrap(),
            true,
            false
        )
        .is_none());
        // Two frames, then one cut short: two exchanges.
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(&u16::try_from(packet.len()).unwrap().to_be_bytes());
            stream.extend_from_slice(&packet);
        }
        stream.pop();
        let exchanges = fuzz_tcp_stream(&stream);
        assert_eq!(exchanges.len(), 2);
        assert!(exchanges.iter().all(|(m, a)| m == &packet && a.is_some()));
    }

    #[test]
    fn odd_queries_get_an_error_answer() {
        let dns = server(vec![]);
        let mut two = query("web", RecordType::A);
        two.add_query(hickory_proto::op::Query::query(
            Name::from_ascii("db.internal").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            udp_ask(dns.local_addr(), &two).metadata.response_code,
            ResponseCode::FormErr
        );
        let mut notify = query("web", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(
            udp_ask(dns.local_addr(), &notify).metadata.response_code,
            ResponseCode::NotImp
        );
    }

    #[test]
    fn forwards_over_the_limit_get_servfail() {
        let silent = Upstream::start(Mode::Silent);
        let dns = server(vec![silent.addr]);
        let socket = client_socket();
        socket.connect(dns.local_addr()).unwrap();
        for i in 0..MAX_FORWARDS {
            socket
                .send(
                    &query(&format!("n{i}.example.com"), RecordType::A)
                        .to_vec()
                        .unwrap(),
                )
                .unwrap();
        }
        let over = query("over.example.com", RecordType::A);
        socket.send(&over.to_vec().unwrap()).unwrap();
        // The forwards wait on the silent upstream; the one over the limit is answered
        // at once.
        let answer = recv_message(&socket);
        assert_eq!(answer.metadata.id, over.metadata.id);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        // Local names are still answered.
        let answer = udp_ask(dns.local_addr(), &query("web", RecordType::A));
        assert_eq!(a_records(&answer), vec![WEB1, WEB2]);
    }

    #[test]
    fn tcp_connections_over_the_limit_are_closed() {
        let dns = server(vec![]);
        let q = query("web", RecordType::A);
        let mut open: Vec<TcpStream> = (0..MAX_TCP_CONNECTIONS)
            .map(|_| {
                let mut stream = tcp_connect(dns.local_addr());
                tcp_ask_on(&mut stream, &q);
                stream
            })
            .collect();
        let mut extra = tcp_connect(dns.local_addr());
        let _ = write_frame(&mut extra, &q.to_vec().unwrap());
        assert!(matches!(
            read_frame(&mut extra, Instant::now() + WAIT),
            Ok(None) | Err(_)
        ));
        // Every open connection still works.
        let answer = tcp_ask_on(&mut open[0], &q);
        assert_eq!(a_records(&answer), vec![WEB1, WEB2]);
        open.clear();
    }

    /// Whether this process has a socket bound to `addr` (an IPv4 address) in
    /// `/proc/net/<proto>`: any for `udp`, a listening one for `tcp` (what keeps the port
    /// from being bound again; the accepted connection's end is checked by reading it).
    fn holds_socket_on(proto: &str, addr: SocketAddr) -> bool {
        let SocketAddr::V4(v4) = addr else {
            panic!("{addr}: IPv4 only")
        };
        let ours: HashSet<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().to_string();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect();
        // The table writes the address as the u32 in host order, in hex.
        let local = format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        );
        std::fs::read_to_string(format!("/proc/net/{proto}"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|f| {
                f.get(1) == Some(&local.as_str())
                    && (proto != "tcp" || f.get(3) == Some(&"0A"))
                    && f.get(9).is_some_and(|i| ours.contains(*i))
            })
    }

    #[test]
    fn dropping_the_server_frees_its_port() {
        let dns = server(vec![]);
        let addr = dns.local_addr();
        let mut idle = tcp_connect(addr);
        udp_ask(addr, &query("web", RecordType::A));
        tcp_ask_on(&mut idle, &query("web", RecordType::A));
        assert!(holds_socket_on("udp", addr) && holds_socket_on("tcp", addr));
        dns.stop().expect("no serving thread panicked");
        // Asked of the kernel's socket tables, not by binding the port again: another
        // test running meanwhile may have been given the freed port.
        assert!(!holds_socket_on("udp", addr), "udp socket still open");
        assert!(!holds_socket_on("tcp", addr), "tcp socket still open");
        // The open connection was closed.
        assert!(matches!(
            read_frame(&mut idle, Instant::now() + WAIT),
            Ok(None) | Err(_)
        ));
    }

    #[test]
    fn bind_errors_name_the_address() {
        let dns = server(vec![]);
        let resolver = Arc::new(FakeResolver {
            clients: HashSet::new(),
            names: HashMap::new(),
            names6: HashMap::new(),
            upstreams: vec![],
        });
        let Err(e) = DnsServer::start(dns.local_addr(), resolver.clone()) else {
            panic!("bound an address in use");
        };
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.to_string().contains(&dns.local_addr().to_string()), "{e}");
        // 192.0.2.1 (TEST-NET-1) is no address of this host; binding sends nothing.
        let Err(e) = DnsServer::start("192.0.2.1:53".parse().unwrap(), resolver) else {
            panic!("bound an address not present");
        };
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.to_string().contains("192.0.2.1:53"), "{e}");
    }

    #[test]
    fn resolv_conf_lines_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        fs::write(
            &path,
            "# Generated by NetworkManager\n\
             ; another comment\n\
             domain old.example\n\
             search corp.example.  lab.example # trailing comment\n\
             nameserver 127.0.0.53\n\
             nameserver   2001:db8::1\n\
             nameserver fe80::1%eth0\n\
             nameserver not-an-address\n\
             nameserver\n\
             options ndots:2 edns0\n\
             options timeout:1\n\
             sortlist 130.155.160.0/255.255.240.0\n\
             complete garbage line\n\
             \n",
        )
        .unwrap();
        let conf = read_resolv_conf(&path).unwrap();
        assert_eq!(
            conf.nameservers,
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(conf.search, vec!["corp.example", "lab.example"]);
        assert_eq!(conf.options, vec!["ndots:2", "edns0", "timeout:1"]);
        assert_eq!(
            conf.upstreams(),
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
        let Err(e) = read_resolv_conf(&dir.path().join("missing")) else {
            panic!("read a missing file");
        };
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
