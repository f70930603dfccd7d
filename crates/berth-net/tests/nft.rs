//! berth's nftables table against the real kernel with real traffic.
//!
//! Each scenario runs on a thread moved into a FRESH network namespace (the "host" of
//! the scenario; the machine's own namespace is never touched), builds a small topology
//! there with `ip` (a bridge with its gateway address, "containers" in namespaces made
//! with `ip netns add` and joined by veth pairs, an "external" namespace joined to the
//! host by a veth), applies a model and checks which connections go through. Servers
//! and clients are std sockets on threads that setns into a namespace. Every scenario
//! runs twice: with br_netfilter handing bridged frames to the IP hooks
//! (bridge-nf-call-iptables=1, per namespace) and without.
//!
//! A "blocked" assertion is always paired with a control that shows the same connection
//! going through when berth's table is absent, so it cannot pass because the topology is
//! broken.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_net::nft::{self, BridgeRules, PortRule, Proto, Ruleset};

// ---------------------------------------------------------------- topology helpers

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &str) {
    run("ip", &args.split_whitespace().collect::<Vec<_>>());
}

fn nft_script(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(
        child.wait().expect("nft").success(),
        "nft -f - failed for {script}"
    );
}

fn sysctl(path: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .unwrap_or_else(|e| panic!("writing {value} to {path}: {e}"));
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
struct Ns {
    name: String,
}

impl Ns {
    fn new() -> Ns {
        let name = format!(
            "bnft{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&format!("netns add {name}"));
        ip(&format!("-n {name} link set lo up"));
        Ns { name }
    }

    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&self.name);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// A TCP server on 0.0.0.0:`port` in this namespace; each connection is answered
    /// with "`tag` <address of the peer as seen by the server>".
    fn serve_tcp(&self, port: u16, tag: &str) -> Server {
        serve(Some(&self.name), Ipv4Addr::UNSPECIFIED, port, tag, false)
    }

    /// Same over UDP: each datagram is answered the same way.
    fn serve_udp(&self, port: u16, tag: &str) -> Server {
        serve(Some(&self.name), Ipv4Addr::UNSPECIFIED, port, tag, true)
    }
}

/// A server on `ip`:`port` (TCP or UDP) in namespace `ns`, or in the calling thread's
/// namespace when `ns` is None; each connection or datagram is answered with
/// "`tag` <address of the peer as seen by the server>".
fn serve(ns: Option<&str>, ip: Ipv4Addr, port: u16, tag: &str, udp: bool) -> Server {
    let (name, tag) = (ns.map(str::to_string), tag.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        if let Some(name) = name {
            enter(&name);
        }
        let addr = SocketAddrV4::new(ip, port);
        if udp {
            let sock = UdpSocket::bind(addr).expect("bind udp");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 64];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(format!("{tag} {}", peer.ip()).as_bytes(), peer);
                }
            }
        } else {
            let listener = TcpListener::bind(addr).expect("bind tcp");
            listener.set_nonblocking(true).expect("nonblocking");
            ready_tx.send(()).expect("ready");
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(format!("{tag} {}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    });
    ready_rx.recv().expect("server did not start");
    Server {
        stop,
        thread: Some(thread),
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn enter(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    rustix::thread::move_into_link_name_space(
        f.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("setns");
}

struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects over TCP and returns what the server says.
fn tcp_get(addr: &str) -> std::io::Result<String> {
    let addr: SocketAddrV4 = addr.parse().expect("address");
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Sends a datagram and returns the answer (a few tries: the first may wait for ARP).
fn udp_get(addr: &str) -> std::io::Result<String> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = [0u8; 64];
    let mut last = None;
    for _ in 0..3 {
        sock.send_to(b"ping", addr)?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no answer")))
}

fn assert_blocked(what: &str, r: std::io::Result<String>) {
    assert!(r.is_err(), "{what} should be blocked but got {r:?}");
}

/// The host of one scenario: the fresh namespace of the thread running it.
struct Lab {
    brnf: bool,
    next_veth: usize,
    children: Vec<Ns>,
}

impl Lab {
    /// A bridge carrying the gateway address `gw` (CIDR), with route_localnet as the
    /// engine sets it.
    fn bridge(&self, name: &str, gw: &str) {
        ip(&format!("link add {name} type bridge"));
        ip(&format!("addr add {gw} dev {name}"));
        ip(&format!("link set {name} up"));
        sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1");
    }

    /// A "container": a namespace joined to `bridge` by a veth (host end in hairpin
    /// mode), with address `addr` (CIDR) and a default route via `gw`.
    fn container(&mut self, bridge: &str, addr: &str, gw: &str) -> usize {
        let ns = Ns::new();
        let veth = format!("v{}", self.next_veth);
        self.next_veth += 1;
        ip(&format!(
            "link add {veth} type veth peer name eth0 netns {}",
            ns.name
        ));
        ip(&format!("link set {veth} master {bridge}"));
        ip(&format!("link set {veth} type bridge_slave hairpin on"));
        ip(&format!("link set {veth} up"));
        ip(&format!("-n {} addr add {addr} dev eth0", ns.name));
        ip(&format!("-n {} link set eth0 up", ns.name));
        ip(&format!("-n {} route add default via {gw}", ns.name));
        self.children.push(ns);
        self.children.len() - 1
    }

    /// An "other host": a namespace at 10.99.0.2/24 joined by a veth to this host at
    /// 10.99.0.1/24, routing everything (container subnets included) via this host.
    fn external(&mut self) -> usize {
        let ns = Ns::new();
        ip(&format!(
            "link add ext0 type veth peer name eth0 netns {}",
            ns.name
        ));
        ip("addr add 10.99.0.1/24 dev ext0");
        ip("link set ext0 up");
        ip(&format!("-n {} addr add 10.99.0.2/24 dev eth0", ns.name));
        ip(&format!("-n {} link set eth0 up", ns.name));
        ip(&format!("-n {} route add default via 10.99.0.1", ns.name));
        self.children.push(ns);
        self.children.len() - 1
    }

    fn ns(&self, i: usize) -> &Ns {
        &self.children[i]
    }
}

/// Runs `scenario` in a fresh namespace, once without and once with br_netfilter.
fn with_lab(scenario: impl Fn(&mut Lab) + Sync) {
    for brnf in [false, true] {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: only the network namespace of this thread (ours, made for the
                // scenario) is unshared; no file descriptor table is involved.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                    .expect("unshare(CLONE_NEWNET) (tests run as root)");
                ip("link set lo up");
                let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
                if std::path::Path::new(knob).exists() {
                    std::fs::write(knob, if brnf { "1" } else { "0" }).expect("br_netfilter knob");
                } else if brnf {
                    eprintln!("br_netfilter is not loaded: skipping the br_netfilter run");
                    return;
                }
                // A new namespace inherits the host's IPv4 forwarding setting: start
                // from off, whatever the host has.
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").expect("ip_forward off");
                assert!(
                    nft::enable_ip_forward().expect("ip_forward"),
                    "forwarding was off: enabling it is a change"
                );
                assert!(
                    !nft::enable_ip_forward().expect("ip_forward"),
                    "second call changes nothing"
                );
                let mut lab = Lab {
                    brnf,
                    next_veth: 0,
                    children: Vec::new(),
                };
                scenario(&mut lab);
                nft::remove().expect("remove");
            })
            .join()
            .unwrap_or_else(|e| {
                eprintln!(
                    "scenario failed with br_netfilter {}",
                    if brnf { "on" } else { "off" }
                );
                std::panic::resume_unwind(e)
            })
        });
    }
}

fn bridge(name: &str, subnet: &str) -> BridgeRules {
    BridgeRules {
        bridge: name.into(),
        subnet: subnet.parse().expect("subnet"),
        masquerade: true,
        internal: false,
        icc: true,
        subnet6: None,
    }
}

fn port(
    proto: Proto,
    host: Option<&str>,
    host_port: u16,
    to: &str,
    container_port: u16,
    br: &str,
) -> PortRule {
    PortRule {
        proto,
        host_ip: host.map(|h| h.parse().expect("host ip")),
        host_port,
        container_ip: to.parse().expect("container ip"),
        container_port,
        bridge: br.into(),
        host_ip6: None,
        container_ip6: None,
    }
}

// ---------------------------------------------------------------- scenarios

#[test]
fn port_published_on_loopback_reaches_the_container_from_the_host() {
    with_lab(|lab| {
        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let _srv = lab.ns(c1).serve_tcp(80, "c1");
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![port(
                Proto::Tcp,
                Some("127.0.0.1"),
                8080,
                "100.72.0.2",
                80,
                "br0",
            )],
        })
        .expect("apply");

        // reached, and the container sees the gateway (127.0.0.1 was masqueraded)
        assert_eq!(
            tcp_get("127.0.0.1:8080").expect("127.0.0.1:8080"),
            "c1 100.72.0.1"
        );
        // nothing listens on the port in the host namespace: the kernel translated it
        drop(TcpListener::bind("127.0.0.1:8080").expect("port 8080 is free on the host"));
        // published on loopback only: the host's other address does not answer
        assert_blocked("100.72.0.1:8080", tcp_get("100.72.0.1:8080"));
    });
}

#[test]
fn port_published_on_loopback_is_not_reachable_from_a_neighbour() {
    with_lab(|lab| {
        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let ext = lab.external();
        let _srv = lab.ns(c1).serve_tcp(80, "c1");
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![port(
                Proto::Tcp,
                Some("127.0.0.1"),
                8080,
                "100.72.0.2",
                80,
                "br0",
            )],
        })
        .expect("apply");
        // a neighbour that routes 127.0.0.1 to this host (as in CVE-2020-8558)
        let e = &lab.ns(ext).name;
        ip(&format!("-n {e} addr flush dev lo"));
        ip(&format!(
            "-n {e} route add 127.0.0.1/32 via 10.99.0.1 dev eth0"
        ));
        lab.ns(ext)
            .run(|| sysctl("net/ipv4/conf/eth0/route_localnet", "1"));
        // count such packets arriving here, before any translation
        nft_script("table ip probe {\n\tchain pre {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\tip daddr 127.0.0.1 tcp dport 8080 counter\n\t}\n}\n");

        assert_blocked(
            "neighbour -> 127.0.0.1:8080",
            lab.ns(ext).run(|| tcp_get("127.0.0.1:8080")),
        );
        let probe = run("nft", &["list", "table", "ip", "probe"]);
        assert!(
            !probe.contains("packets 0 "),
            "the packets did reach the host: {probe}"
        );
        assert_eq!(
            tcp_get("127.0.0.1:8080").expect("from the host itself"),
            "c1 100.72.0.1"
        );
    });
}

#[test]
fn port_published_on_all_addresses_reaches_the_container_from_outside() {
    with_lab(|lab| {
        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let ext = lab.external();
        let _srv = lab.ns(c1).serve_tcp(80, "c1");
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![port(Proto::Tcp, None, 8080, "100.72.0.2", 80, "br0")],
        })
        .expect("apply");

        // through prerouting: the client's address is kept
        assert_eq!(
            lab.ns(ext)
                .run(|| tcp_get("10.99.0.1:8080"))
                .expect("from outside"),
            "c1 10.99.0.2"
        );
        // and from the host itself, on loopback and on its other address
        assert_eq!(
            tcp_get("127.0.0.1:8080").expect("127.0.0.1"),
            "c1 100.72.0.1"
        );
        assert!(tcp_get("10.99.0.1:8080")
            .expect("10.99.0.1")
            .starts_with("c1 "));
    });
}

#[test]
fn udp_port_round_trip() {
    with_lab(|lab| {
        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let ext = lab.external();
        let _srv = lab.ns(c1).serve_udp(53, "c1");
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![port(Proto::Udp, None, 5353, "100.72.0.2", 53, "br0")],
        })
        .expect("apply");

        assert_eq!(
            lab.ns(ext)
                .run(|| udp_get("10.99.0.1:5353"))
                .expect("udp from outside"),
            "c1 10.99.0.2"
        );
        assert_eq!(
            udp_get("127.0.0.1:5353").expect("udp from the host"),
            "c1 100.72.0.1"
        );
        // the port is published for udp only
        assert_blocked("tcp 127.0.0.1:5353", tcp_get("127.0.0.1:5353"));
    });
}

#[test]
fn hairpin_container_reaches_published_ports_of_its_own_bridge() {
    with_lab(|lab| {
        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let c2 = lab.container("br0", "100.72.0.3/24", "100.72.0.1");
        let _ext = lab.external(); // gives the host its address 10.99.0.1
        let _srv = lab.ns(c1).serve_tcp(80, "c1");
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![port(Proto::Tcp, None, 8080, "100.72.0.2", 80, "br0")],
        })
        .expect("apply");

        // itself, via the host's address: replies come back through the host
        assert_eq!(
            lab.ns(c1)
                .run(|| tcp_get("10.99.0.1:8080"))
                .expect("c1 to itself"),
            "c1 100.72.0.1"
        );
        // a neighbour, via the host's address and via the gateway
        for addr in ["10.99.0.1:8080", "100.72.0.1:8080"] {
            assert_eq!(
                lab.ns(c2)
                    .run(|| tcp_get(addr))
                    .expect("c2 to c1's published port"),
                "c1 100.72.0.1",
                "via {addr}"
            );
        }
        // and directly on the bridge, without translation (icc)
        assert_eq!(
            lab.ns(c2)
                .run(|| tcp_get("100.72.0.2:80"))
                .expect("c2 to c1 directly"),
            "c1 100.72.0.3"
        );
    });
}

#[test]
fn bridges_are_isolated_and_only_published_ports_are_reachable_from_outside() {
    with_lab(|lab| {
        lab.bridge("bra", "100.72.0.1/24");
        lab.bridge("brb", "100.72.1.1/24");
        let a1 = lab.container("bra", "100.72.0.2/24", "100.72.0.1");
        let b1 = lab.container("brb", "100.72.1.2/24", "100.72.1.1");
        let ext = lab.external();
        let _a80 = lab.ns(a1).serve_tcp(80, "a1");
        let _a81 = lab.ns(a1).serve_tcp(81, "a1");
        let _b80 = lab.ns(b1).serve_tcp(80, "b1");
        let _e90 = lab.ns(ext).serve_tcp(90, "ext");

        let a_to_b = || lab.ns(a1).run(|| tcp_get("100.72.1.2:80"));
        let b_to_a = || lab.ns(b1).run(|| tcp_get("100.72.0.2:80"));
        let ext_to_a81 = || lab.ns(ext).run(|| tcp_get("100.72.0.2:81"));
        let ext_to_a80 = || lab.ns(ext).run(|| tcp_get("100.72.0.2:80"));
        // controls: with no berth table the kernel routes all of these
        assert_eq!(a_to_b().expect("control a1 -> b1"), "b1 100.72.0.2");
        assert_eq!(b_to_a().expect("control b1 -> a1"), "a1 100.72.1.2");
        assert_eq!(ext_to_a81().expect("control ext -> a1:81"), "a1 10.99.0.2");

        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![
                bridge("bra", "100.72.0.0/24"),
                bridge("brb", "100.72.1.0/24"),
            ],
            ports: vec![port(Proto::Tcp, None, 8080, "100.72.0.2", 80, "bra")],
        })
        .expect("apply");

        assert_blocked("a1 -> b1", a_to_b());
        assert_blocked("b1 -> a1", b_to_a());
        assert_blocked("ext -> a1:81 (not published)", ext_to_a81());
        assert_blocked("ext -> a1:80 directly", ext_to_a80());
        assert_eq!(
            lab.ns(ext)
                .run(|| tcp_get("10.99.0.1:8080"))
                .expect("published port"),
            "a1 10.99.0.2"
        );
        // outbound traffic leaves, masqueraded to the host's address
        assert_eq!(
            lab.ns(a1)
                .run(|| tcp_get("10.99.0.2:90"))
                .expect("a1 -> outside"),
            "ext 10.99.0.1"
        );
        // a published port is reachable from the other bridge through the host's
        // addresses (as with Docker's userland proxy), only directly it is not
        assert_eq!(
            lab.ns(b1)
                .run(|| tcp_get("10.99.0.1:8080"))
                .expect("b1 -> a1's published port"),
            "a1 100.72.0.1"
        );
        // traffic not involving berth's bridges is left alone, and only traffic to the
        // host's own addresses is translated: port 8080 of another host stays that host's
        let _e8080 = lab.ns(ext).serve_tcp(8080, "ext");
        assert_eq!(
            tcp_get("10.99.0.2:90").expect("host -> outside"),
            "ext 10.99.0.1"
        );
        assert_eq!(
            tcp_get("10.99.0.2:8080").expect("host -> outside:8080"),
            "ext 10.99.0.1"
        );
        assert_eq!(
            lab.ns(a1)
                .run(|| tcp_get("10.99.0.2:8080"))
                .expect("a1 -> outside:8080"),
            "ext 10.99.0.1"
        );
    });
}

#[test]
fn internal_bridge_and_disabled_icc() {
    with_lab(|lab| {
        lab.bridge("bri", "100.72.2.1/24");
        lab.bridge("brn", "100.72.3.1/24");
        let i1 = lab.container("bri", "100.72.2.2/24", "100.72.2.1");
        let i2 = lab.container("bri", "100.72.2.3/24", "100.72.2.1");
        let n1 = lab.container("brn", "100.72.3.2/24", "100.72.3.1");
        let n2 = lab.container("brn", "100.72.3.3/24", "100.72.3.1");
        let ext = lab.external();
        let _i2 = lab.ns(i2).serve_tcp(80, "i2");
        let _n2 = lab.ns(n2).serve_tcp(80, "n2");
        let _e90 = lab.ns(ext).serve_tcp(90, "ext");

        let i1_out = || lab.ns(i1).run(|| tcp_get("10.99.0.2:90"));
        let ext_to_i2 = || lab.ns(ext).run(|| tcp_get("100.72.2.3:80"));
        let n1_to_n2 = || lab.ns(n1).run(|| tcp_get("100.72.3.3:80"));
        assert_eq!(i1_out().expect("control i1 -> outside"), "ext 100.72.2.2");
        assert_eq!(ext_to_i2().expect("control ext -> i2"), "i2 10.99.0.2");
        assert_eq!(n1_to_n2().expect("control n1 -> n2"), "n2 100.72.3.2");

        let mut internal = bridge("bri", "100.72.2.0/24");
        internal.internal = true;
        internal.masquerade = false;
        let mut no_icc = bridge("brn", "100.72.3.0/24");
        no_icc.icc = false;
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![internal, no_icc],
            ports: vec![],
        })
        .expect("apply");

        assert_blocked("internal i1 -> outside", i1_out());
        assert_blocked("outside -> internal i2", ext_to_i2());
        assert_eq!(
            lab.ns(i1)
                .run(|| tcp_get("100.72.2.3:80"))
                .expect("i1 -> i2 on the internal bridge"),
            "i2 100.72.2.2"
        );
        if lab.brnf {
            assert_blocked("n1 -> n2 with icc off", n1_to_n2());
        } else {
            // without br_netfilter, bridged frames never reach the IP hooks: documented
            assert_eq!(
                n1_to_n2().expect("n1 -> n2, no br_netfilter"),
                "n2 100.72.3.2"
            );
        }
    });
}

#[test]
fn apply_replaces_the_table_and_leaves_other_tables_alone() {
    with_lab(|lab| {
        let other = "table ip other {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 9 counter accept comment \"not berth's\"\n\t}\n}\n";
        nft_script(other);
        let list_other = || run("nft", &["list", "table", "ip", "other"]);
        let other_before = list_other();

        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let _s80 = lab.ns(c1).serve_tcp(80, "c1:80");
        let _s81 = lab.ns(c1).serve_tcp(81, "c1:81");
        let mut model = Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![
                port(Proto::Tcp, None, 8080, "100.72.0.2", 80, "br0"),
                port(Proto::Tcp, None, 8081, "100.72.0.2", 81, "br0"),
            ],
        };
        nft::apply(&model).expect("apply");
        let listed = run("nft", &["list", "table", "ip", "berth"]);
        nft::apply(&model).expect("apply again");
        assert_eq!(
            run("nft", &["list", "table", "ip", "berth"]),
            listed,
            "apply is idempotent"
        );
        assert_eq!(tcp_get("127.0.0.1:8080").expect("8080"), "c1:80 100.72.0.1");
        assert_eq!(tcp_get("127.0.0.1:8081").expect("8081"), "c1:81 100.72.0.1");

        // an invalid model changes nothing
        let mut bad = model.clone();
        bad.ports[0].bridge = "nosuch".into();
        assert!(nft::apply(&bad).is_err());
        assert_eq!(run("nft", &["list", "table", "ip", "berth"]), listed);

        // a port taken out of the model is no longer reachable
        model.ports.pop();
        nft::apply(&model).expect("apply without 8081");
        assert_eq!(
            tcp_get("127.0.0.1:8080").expect("8080 still"),
            "c1:80 100.72.0.1"
        );
        assert_blocked("8081 after removal", tcp_get("127.0.0.1:8081"));
        assert_eq!(list_other(), other_before);

        nft::remove().expect("remove");
        let tables = run("nft", &["list", "tables"]);
        assert!(!tables.contains("berth"), "{tables}");
        assert!(tables.contains("table ip other"), "{tables}");
        assert_eq!(list_other(), other_before);
        nft::remove().expect("remove when absent");
        assert_blocked("8080 after remove", tcp_get("127.0.0.1:8080"));
    });
}

#[test]
fn a_published_port_53_does_not_capture_the_embedded_dns() {
    with_lab(|lab| {
        lab.bridge("br0", "100.72.0.1/24");
        let c1 = lab.container("br0", "100.72.0.2/24", "100.72.0.1");
        let c2 = lab.container("br0", "100.72.0.3/24", "100.72.0.1");
        let ext = lab.external();
        let _c1u = lab.ns(c1).serve_udp(53, "c1");
        let _c1t = lab.ns(c1).serve_tcp(53, "c1");
        // the embedded DNS server: on the gateway address, in the host namespace
        let gw = Ipv4Addr::new(100, 72, 0, 1);
        let _dnsu = serve(None, gw, 53, "dns", true);
        let _dnst = serve(None, gw, 53, "dns", false);
        nft::apply(&Ruleset {
            ip6: false,
            services: Vec::new(),
            vips: Vec::new(),
            bridges: vec![bridge("br0", "100.72.0.0/24")],
            ports: vec![
                port(Proto::Udp, None, 53, "100.72.0.2", 53, "br0"),
                port(Proto::Tcp, None, 53, "100.72.0.2", 53, "br0"),
            ],
        })
        .expect("apply");

        assert_eq!(
            lab.ns(c2)
                .run(|| udp_get("100.72.0.1:53"))
                .expect("udp query to the gateway"),
            "dns 100.72.0.3"
        );
        assert_eq!(
            lab.ns(c2)
                .run(|| tcp_get("100.72.0.1:53"))
                .expect("tcp query to the gateway"),
            "dns 100.72.0.3"
        );
        // while port 53 is published everywhere else
        assert_eq!(
            lab.ns(ext)
                .run(|| udp_get("10.99.0.1:53"))
                .expect("udp from outside"),
            "c1 10.99.0.2"
        );
        assert_eq!(
            lab.ns(c2)
                .run(|| tcp_get("10.99.0.1:53"))
                .expect("hairpin tcp"),
            "c1 100.72.0.1"
        );
    });
}
