//! `berth-proxy PARENT_PID PROTO LISTEN TARGET [PROTO LISTEN TARGET ...]`: the userland
//! proxy of a container's published ports that the kernel cannot translate (`[::1]`, and
//! an IPv6 address of the host for a container without IPv6), as Docker's
//! `docker-proxy`.
//!
//! The engine binds each listening socket when the container starts (so a port in use
//! is refused then, by name) and sends them to the container's shim, which runs this
//! program as its child with the sockets as fds 3, 4, … in the order of the arguments.
//! It:
//! - drops its privileges (uid/gid 65534, no supplementary groups, no new privileges):
//!   relaying needs only the sockets it holds and connections to the container;
//! - dies with the shim (`PR_SET_PDEATHSIG`; the shim also kills it when the container
//!   exits), so it never outlives the container, and lives through daemon restarts as
//!   the shim does;
//! - relays in one `poll` loop, no threads: TCP connections to `TARGET` (half-closes
//!   passed on; at most one 16 KiB chunk pending per direction, a side is not read
//!   while the other has not taken the previous chunk), UDP datagrams through one socket
//!   per client address towards `TARGET` (replies go back from the listening socket),
//!   closed after [`PROXY_UDP_IDLE_SECS`] without traffic;
//! - serves at most [`PROXY_MAX_CONNECTIONS`] TCP connections and as many UDP flows at
//!   once: at the limit, a TCP listener is not read (the kernel's backlog holds new
//!   connections until one ends) and datagrams of new UDP clients are dropped (known
//!   clients go on).
//!
//! The container sees connections from the host's address on its network (the
//! gateway), as with docker-proxy.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_runtime::shim_protocol::{PROXY_MAX_CONNECTIONS, PROXY_UDP_IDLE_SECS};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// Bytes read from one side of a TCP connection at a time (and at most pending for the
/// other side).
const CHUNK: usize = 16 * 1024;
/// Datagrams or connections taken from one socket per turn (fairness between sockets).
const BATCH: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let usage = "usage: berth-proxy PARENT_PID PROTO LISTEN TARGET [PROTO LISTEN TARGET ...]";
    let (parent, specs) = args.split_first().ok_or(usage)?;
    let parent: i32 = parent.parse().map_err(|_| usage.to_string())?;
    if specs.is_empty() || !specs.len().is_multiple_of(3) {
        return Err(usage.into());
    }
    let mut ports = Vec::new();
    for (i, s) in specs.chunks(3).enumerate() {
        let listen: SocketAddr = s[1]
            .parse()
            .map_err(|_| format!("{}: not an address", s[1]))?;
        let target: SocketAddr = s[2]
            .parse()
            .map_err(|_| format!("{}: not an address", s[2]))?;
        let fd = 3 + i as i32;
        // The shim put the socket there (dup2) and nothing else in this process owns it.
        rustix::io::fcntl_getfd(
            // SAFETY: only borrowed to check that the fd is open; owned below.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        )
        .map_err(|e| format!("fd {fd} ({} {listen}): {e}", s[0]))?;
        // SAFETY: fd is open (checked above) and owned by nobody else in this process:
        // the shim placed it at this number for us.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
        let port = match s[0].as_str() {
            "tcp" => Port::Tcp(TcpListener::from(owned)),
            "udp" => Port::Udp(UdpSocket::from(owned)),
            p => return Err(format!("{listen}: protocol {p}: tcp or udp")),
        };
        ports.push((port, target));
    }
    raise_fd_limit();
    drop_privileges()?;
    // After the credentials change (which clears it): die with the shim.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
        return Err("the shim is gone".into());
    }
    let mut proxy = Proxy::new(ports)?;
    loop {
        proxy.turn(None);
    }
}

/// The soft limit of open files up to the hard one: a connection takes two.
fn raise_fd_limit() {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

/// uid and gid 65534 (nobody), no supplementary groups, no new privileges. Skipped
/// when not root (tests).
fn drop_privileges() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let nobody: libc::uid_t = 65534;
    // SAFETY: plain syscalls with integer arguments and a null list of length 0; the
    // process is single-threaded, so the process-wide credentials change at once.
    let r = unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(nobody, nobody, nobody) != 0
            || libc::setresuid(nobody, nobody, nobody) != 0
        {
            -1
        } else {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        }
    };
    if r != 0 {
        return Err(format!(
            "drop privileges: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

enum Port {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A listening socket and where its traffic goes.
struct Listener {
    port: Port,
    target: SocketAddr,
}

/// One direction of a TCP connection.
#[derive(Default)]
struct Half {
    /// Read but not yet written to the other side (at most one chunk).
    pending: Vec<u8>,
    /// The reading side sent EOF.
    eof: bool,
    /// The EOF was passed on (shutdown of the writing side).
    shut: bool,
}

struct Conn {
    client: TcpStream,
    target: TcpStream,
    connected: bool,
    /// client → target
    up: Half,
    /// target → client
    down: Half,
    dead: bool,
}

struct Flow {
    listener: usize,
    client: SocketAddr,
    sock: UdpSocket,
    last: Instant,
}

#[derive(Clone, Copy)]
enum Slot {
    Listener(usize),
    Client(usize),
    Target(usize),
    Flow(usize),
}

struct Proxy {
    listeners: Vec<Listener>,
    conns: Vec<Conn>,
    flows: Vec<Flow>,
    /// (listener, client address) → index in `flows`.
    flow_index: HashMap<(usize, SocketAddr), usize>,
    buf: Vec<u8>,
    accept_paused_until: Option<Instant>,
    idle: Duration,
    max: usize,
    /// The limit was logged (once per time it is reached).
    full_logged: bool,
    /// An accept error was logged (once until an accept succeeds).
    accept_error_logged: bool,
}

impl Proxy {
    fn new(ports: Vec<(Port, SocketAddr)>) -> Result<Proxy, String> {
        let mut listeners = Vec::new();
        for (port, target) in ports {
            match &port {
                Port::Tcp(l) => l.set_nonblocking(true),
                Port::Udp(u) => u.set_nonblocking(true),
            }
            .map_err(|e| format!("{target}: {e}"))?;
            listeners.push(Listener { port, target });
        }
        Ok(Proxy {
            listeners,
            conns: Vec::new(),
            flows: Vec::new(),
            flow_index: HashMap::new(),
            buf: vec![0u8; 65536],
            accept_paused_until: None,
            idle: Duration::from_secs(PROXY_UDP_IDLE_SECS),
            max: PROXY_MAX_CONNECTIONS,
            full_logged: false,
            accept_error_logged: false,
        })
    }

    /// One `poll` and the work it found; `max_wait` bounds the wait (tests).
    fn turn(&mut self, max_wait: Option<Duration>) {
        let now = Instant::now();
        self.expire_flows(now);
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
        }
        let mut deadline: Option<Instant> = self
            .flows
            .iter()
            .map(|f| f.last + self.idle)
            .min()
            .into_iter()
            .chain(self.accept_paused_until)
            .min();
        if let Some(w) = max_wait {
            deadline = Some(deadline.map_or(now + w, |d| d.min(now + w)));
        }
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(now);
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let ready: Vec<(Slot, PollFlags)> = {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let mut slots: Vec<Slot> = Vec::new();
            let tcp_room = self.conns.len() < self.max && self.accept_paused_until.is_none();
            for (i, l) in self.listeners.iter().enumerate() {
                match &l.port {
                    Port::Tcp(t) if tcp_room => {
                        fds.push(PollFd::new(t, PollFlags::IN));
                        slots.push(Slot::Listener(i));
                    }
                    // Always read: a full flow table still relays known clients'
                    // datagrams (new clients' are dropped).
                    Port::Udp(u) => {
                        fds.push(PollFd::new(u, PollFlags::IN));
                        slots.push(Slot::Listener(i));
                    }
                    _ => {}
                }
            }
            for (i, c) in self.conns.iter().enumerate() {
                let (cf, tf) = c.interest();
                if !cf.is_empty() {
                    fds.push(PollFd::new(&c.client, cf));
                    slots.push(Slot::Client(i));
                }
                if !tf.is_empty() {
                    fds.push(PollFd::new(&c.target, tf));
                    slots.push(Slot::Target(i));
                }
            }
            for (i, f) in self.flows.iter().enumerate() {
                fds.push(PollFd::new(&f.sock, PollFlags::IN));
                slots.push(Slot::Flow(i));
            }
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return,
                Err(e) => {
                    eprintln!("berth-proxy: poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
            fds.iter()
                .zip(slots)
                .filter(|(f, _)| !f.revents().is_empty())
                .map(|(f, s)| (s, f.revents()))
                .collect()
        };
        for (slot, revents) in ready {
            match slot {
                Slot::Listener(i) => self.listener_ready(i),
                Slot::Client(i) => {
                    if let Some(c) = self.conns.get_mut(i) {
                        c.client_ready(revents, &mut self.buf);
                    }
                }
                Slot::Target(i) => {
                    if let Some(c) = self.conns.get_mut(i) {
                        c.target_ready(revents, &mut self.buf);
                    }
                }
                Slot::Flow(i) => self.flow_ready(i),
            }
        }
        let before = self.conns.len();
        self.conns.retain(|c| !c.finished());
        if self.conns.len() < before && self.conns.len() < self.max {
            self.full_logged = false;
        }
    }

    fn listener_ready(&mut self, i: usize) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let target = l.target;
        match &l.port {
            Port::Tcp(t) => {
                for _ in 0..BATCH {
                    if self.conns.len() >= self.max {
                        log_full(&mut self.full_logged, self.max, "TCP connections");
                        break;
                    }
                    match t.accept() {
                        Ok((client, _)) => {
                            self.accept_error_logged = false;
                            if let Some(c) = Conn::open(client, target) {
                                self.conns.push(c);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            // EMFILE/ENFILE/ENOBUFS: the connection stays queued; try
                            // again a little later rather than spinning on it (said once
                            // until an accept succeeds: shim.log is not rotated).
                            if !self.accept_error_logged {
                                self.accept_error_logged = true;
                                eprintln!("berth-proxy: accept: {e}");
                            }
                            self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                            break;
                        }
                    }
                }
            }
            Port::Udp(u) => {
                for _ in 0..BATCH {
                    let (n, client) = match u.recv_from(&mut self.buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    let idx = match self.flow_index.get(&(i, client)) {
                        Some(&f) => f,
                        None => {
                            if self.flows.len() >= self.max {
                                log_full(&mut self.full_logged, self.max, "UDP flows");
                                continue; // dropped, as a full queue would
                            }
                            match open_flow(target) {
                                Ok(sock) => {
                                    self.flows.push(Flow {
                                        listener: i,
                                        client,
                                        sock,
                                        last: Instant::now(),
                                    });
                                    let f = self.flows.len() - 1;
                                    self.flow_index.insert((i, client), f);
                                    f
                                }
                                // Out of fds or ports: dropped, as UDP allows (not
                                // logged: each datagram would be).
                                Err(_) => continue,
                            }
                        }
                    };
                    if let Some(f) = self.flows.get_mut(idx) {
                        f.last = Instant::now();
                        // A refused or full send is a lost datagram, as UDP allows.
                        let _ = f.sock.send(&self.buf[..n]);
                    }
                }
            }
        }
    }

    fn flow_ready(&mut self, i: usize) {
        let Some(f) = self.flows.get_mut(i) else {
            return;
        };
        let Some(Listener {
            port: Port::Udp(l), ..
        }) = self.listeners.get(f.listener)
        else {
            return;
        };
        for _ in 0..BATCH {
            match f.sock.recv(&mut self.buf) {
                Ok(n) => {
                    f.last = Instant::now();
                    let _ = l.send_to(&self.buf[..n], f.client);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // ICMP port unreachable from the container (nothing listens yet): the
                // flow stays until it is idle.
                Err(_) => {}
            }
        }
    }

    fn expire_flows(&mut self, now: Instant) {
        let idle = self.idle;
        let before = self.flows.len();
        self.flows.retain(|f| now.duration_since(f.last) < idle);
        if self.flows.len() != before {
            self.flow_index = self
                .flows
                .iter()
                .enumerate()
                .map(|(i, f)| ((f.listener, f.client), i))
                .collect();
            if self.flows.len() < self.max {
                self.full_logged = false;
            }
        }
    }
}

/// Says once (until the count drops again) that a limit is reached.
fn log_full(logged: &mut bool, max: usize, what: &str) {
    if !*logged {
        *logged = true;
        eprintln!("berth-proxy: {max} {what} at once: the limit; new ones wait");
    }
}

/// A UDP socket towards the container for one client address.
fn open_flow(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any)?;
    s.connect(target)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A non-blocking connect to `target` (in progress when this returns).
fn connect_nonblocking(target: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if target.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &target) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

impl Conn {
    fn open(client: TcpStream, target: SocketAddr) -> Option<Conn> {
        if client.set_nonblocking(true).is_err() {
            return None;
        }
        // Not logged, as a refused connection is not: a client could fill shim.log.
        let t = connect_nonblocking(target).ok()?;
        let _ = client.set_nodelay(true);
        let _ = t.set_nodelay(true);
        Some(Conn {
            client,
            target: t,
            connected: false,
            up: Half::default(),
            down: Half::default(),
            dead: false,
        })
    }

    /// Failed, or both directions ended and passed on: to be closed.
    fn finished(&self) -> bool {
        self.dead || (self.up.shut && self.down.shut)
    }

    /// What to wait for on (client, target).
    fn interest(&self) -> (PollFlags, PollFlags) {
        if self.dead {
            return (PollFlags::empty(), PollFlags::empty());
        }
        if !self.connected {
            return (PollFlags::empty(), PollFlags::OUT);
        }
        let mut c = PollFlags::empty();
        let mut t = PollFlags::empty();
        if !self.up.eof && self.up.pending.is_empty() {
            c |= PollFlags::IN;
        }
        if !self.down.pending.is_empty() {
            c |= PollFlags::OUT;
        }
        if !self.down.eof && self.down.pending.is_empty() {
            t |= PollFlags::IN;
        }
        if !self.up.pending.is_empty() {
            t |= PollFlags::OUT;
        }
        (c, t)
    }

    fn client_ready(&mut self, revents: PollFlags, buf: &mut [u8]) {
        let any = PollFlags::ERR | PollFlags::HUP;
        if revents.intersects(PollFlags::OUT | any) && !self.down.pending.is_empty() {
            self.dead |= !flush(&mut self.client, &mut self.down);
        }
        if revents.intersects(PollFlags::IN | any) && self.connected {
            self.dead |= !pump(&mut self.client, &mut self.target, &mut self.up, buf);
        }
    }

    fn target_ready(&mut self, revents: PollFlags, buf: &mut [u8]) {
        if !self.connected {
            match rustix::net::sockopt::socket_error(&self.target) {
                Ok(Ok(())) => self.connected = true,
                // Refused or unreachable: the client's connection is closed (as
                // docker-proxy does).
                _ => {
                    self.dead = true;
                    return;
                }
            }
            return;
        }
        let any = PollFlags::ERR | PollFlags::HUP;
        if revents.intersects(PollFlags::OUT | any) && !self.up.pending.is_empty() {
            self.dead |= !flush(&mut self.target, &mut self.up);
        }
        if revents.intersects(PollFlags::IN | any) {
            self.dead |= !pump(&mut self.target, &mut self.client, &mut self.down, buf);
        }
    }
}

/// Reads what `from` has (once) and writes it to `to`; what `to` does not take now is
/// kept in `half.pending` (then `from` is not read until it is written). False on an
/// error of either socket (the connection is then closed).
fn pump(from: &mut TcpStream, to: &mut TcpStream, half: &mut Half, buf: &mut [u8]) -> bool {
    if half.eof || !half.pending.is_empty() {
        return true;
    }
    let chunk = buf.len().min(CHUNK);
    match from.read(&mut buf[..chunk]) {
        Ok(0) => {
            half.eof = true;
            shut(to, half)
        }
        Ok(n) => {
            half.pending.extend_from_slice(&buf[..n]);
            flush(to, half)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => true,
        Err(_) => false,
    }
}

/// Writes `half.pending` to `to` as far as it goes; passes the EOF on once it is empty.
fn flush(to: &mut TcpStream, half: &mut Half) -> bool {
    while !half.pending.is_empty() {
        match to.write(&half.pending) {
            Ok(0) => return false,
            Ok(n) => {
                half.pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    half.pending = Vec::new();
    shut(to, half)
}

/// After EOF with nothing pending: shutdown of the writing side (the peer sees EOF).
fn shut(to: &TcpStream, half: &mut Half) -> bool {
    if half.eof && half.pending.is_empty() && !half.shut {
        half.shut = true;
        return to.shutdown(std::net::Shutdown::Write).is_ok();
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Runs the proxy on a thread until the returned flag is set.
    fn spawn(ports: Vec<(Port, SocketAddr)>, max: usize, idle: Duration) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut p = Proxy::new(ports).unwrap();
        p.max = max;
        p.idle = idle;
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.turn(Some(Duration::from_millis(20)));
            }
        });
        stop
    }

    #[test]
    fn tcp_is_relayed_both_ways_with_half_close() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in server.incoming().take(2) {
                let mut c = c.unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                got.reverse();
                c.write_all(&got).unwrap();
            }
        });
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = spawn(vec![(Port::Tcp(l), target)], 8, Duration::from_secs(90));
        for size in [5usize, 300_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let w = {
                let mut c = c.try_clone().unwrap();
                let data = data.clone();
                std::thread::spawn(move || {
                    c.write_all(&data).unwrap();
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                })
            };
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            w.join().unwrap();
            let mut want = data;
            want.reverse();
            assert_eq!(back.len(), want.len());
            assert!(back == want);
        }
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn connections_beyond_the_limit_wait_for_one_to_end() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in server.incoming() {
                let mut c = c.unwrap();
                std::thread::spawn(move || {
                    let mut b = [0u8; 64];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = spawn(vec![(Port::Tcp(l), target)], 1, Duration::from_secs(90));
        let echo = |c: &mut TcpStream, m: &[u8]| -> std::io::Result<Vec<u8>> {
            c.write_all(m)?;
            let mut b = vec![0u8; m.len()];
            c.read_exact(&mut b)?;
            Ok(b)
        };
        let mut first = TcpStream::connect(addr).unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(echo(&mut first, b"one").unwrap(), b"one");
        // Queued in the backlog, not served while the first one lasts.
        let mut second = TcpStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(echo(&mut second, b"two").is_err());
        drop(first);
        second
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 3];
        second.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"two");
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn a_refused_target_closes_the_client() {
        // A port nobody listens on: bind, note, close.
        let target = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = spawn(vec![(Port::Tcp(l), target)], 8, Duration::from_secs(90));
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 8];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn udp_flows_per_client_with_idle_expiry_and_a_limit() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 2048];
            loop {
                let (n, from) = server.recv_from(&mut b).unwrap();
                // The reply names the proxy's flow socket (one per client).
                let mut r = b[..n].to_vec();
                r.extend_from_slice(format!("@{}", from.port()).as_bytes());
                server.send_to(&r, from).unwrap();
            }
        });
        let l = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = spawn(vec![(Port::Udp(l), target)], 2, Duration::from_millis(300));
        let ask = |c: &UdpSocket, m: &[u8]| -> Option<String> {
            c.send_to(m, addr).unwrap();
            let mut b = [0u8; 2048];
            let (n, from) = c.recv_from(&mut b).ok()?;
            assert_eq!(from, addr, "the reply comes from the published address");
            Some(String::from_utf8_lossy(&b[..n]).into_owned())
        };
        let client = |timeout_ms| {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
                .unwrap();
            c
        };
        let (a, b, c) = (client(3000), client(3000), client(400));
        let ra1 = ask(&a, b"a").unwrap();
        let ra2 = ask(&a, b"a").unwrap();
        assert_eq!(ra1, ra2, "one flow per client address");
        let rb = ask(&b, b"b").unwrap();
        assert_ne!(ra1[1..], rb[1..], "another client, another flow");
        // Two flows: the limit; a third client waits (its datagram is dropped).
        assert_eq!(ask(&c, b"c"), None);
        // Idle flows are closed (300 ms without a datagram); then the third client gets
        // one. Each refused try waits out its 400 ms read timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let reply = loop {
            if let Some(r) = ask(&c, b"c") {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the idle flows were never closed"
            );
        };
        assert!(reply.starts_with("c@"), "{reply}");
        stop.store(true, Ordering::Relaxed);
    }
}
