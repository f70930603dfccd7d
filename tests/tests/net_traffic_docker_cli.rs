//! Bridge networking seen from the outside, with real traffic: containers started by the
//! docker CLI get an address on the default bridge, reach the host and are reached from
//! it, keep their connectivity when the daemon is killed, and leave no interface,
//! namespace or address behind.
//!
//! Each daemon runs in a network namespace of its own (see the harness); every packet
//! stays inside it.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use berth_tests::*;

/// Runs a shell command in a container (the image's busybox applets are not all linked
/// into PATH; its shell runs them).
fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(d.docker(&["exec", name, "sh", "-c", script]))
}

/// The container's IPv4 address on `eth0`, read from inside it.
fn eth0_address(d: &Daemon, name: &str) -> Ipv4Addr {
    let out = sh(d, name, "ip -4 -o addr show eth0");
    let cidr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet address in {out:?}"));
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// Runs `name`, a container of the static UDP echo server on port 53, published as
/// `publish` (`127.0.0.1:5353:53/udp`).
fn run_udp_echo(d: &Daemon, name: &str, publish: &str) {
    let bind = format!("{}:/udp_echo:ro", udp_echo_binary().display());
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "-p",
        publish,
        "-v",
        &bind,
        "fixture/app:1",
        "exec /udp_echo 53",
    ]));
}

/// An HTTP GET from the daemon's network namespace; the response body.
fn http_get(d: &Daemon, ip: Ipv4Addr, port: u16, path: &str) -> std::io::Result<String> {
    let path = path.to_string();
    d.in_netns(move || {
        let mut s = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

/// Retries `f` for a few seconds (a server in a container starts asynchronously).
fn eventually<T>(mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("gave up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// berth's veths in the daemon's namespace.
fn berth_veths(d: &Daemon) -> Vec<String> {
    let out = d.netns_cmd(&["ip", "-o", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("bth"))
        .collect()
}

fn netns_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.root.join("netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn default_bridge_gives_an_address_carries_traffic_and_leaves_nothing_behind() {
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "fixture/app:1",
        "exec httpd -f -p 8080 -h /etc",
    ]));
    let ip = eth0_address(&d, "web");
    let subnet_base = u32::from(Ipv4Addr::new(100, 72, 0, 0));
    assert_eq!(
        u32::from(ip) & 0xffff_ff00,
        subnet_base,
        "{ip} is not in the default pool's first /24"
    );
    // The default route goes through the bridge's gateway; resolv.conf names the
    // embedded DNS server there.
    let route = sh(&d, "web", "ip route");
    assert!(route.contains("default via 100.72.0.1 dev eth0"), "{route}");
    let resolv = sh(&d, "web", "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 100.72.0.1"), "{resolv}");
    let hosts = sh(&d, "web", "cat /etc/hosts");
    let hostname = sh(&d, "web", "hostname");
    assert!(
        hosts.contains(&format!("{ip}\t{}", hostname.trim())),
        "{hosts}"
    );

    // The host reaches the container's server at its address.
    let page = eventually(|| http_get(&d, ip, 8080, "/hostname"));
    assert!(
        page.lines().next().unwrap_or("").contains(" 200 "),
        "{page}"
    );
    assert!(page.trim_end().ends_with(hostname.trim()), "{page}");
    // docker stats counts the container's traffic (NET I/O: received / sent).
    let netio = ok(d.docker(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"]));
    let (rx, tx) = netio.trim().split_once(" / ").expect(&netio);
    assert!(rx != "0B" && tx != "0B", "{netio}");

    // The container reaches the host through the gateway, from its own address.
    let (port, from) = d.in_netns(|| {
        let l = TcpListener::bind("100.72.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, peer) = l.accept().unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            (peer.ip(), buf)
        });
        (port, t)
    });
    ok(d.docker(&[
        "exec",
        "web",
        "sh",
        "-c",
        &format!("echo ping | nc 100.72.0.1 {port}"),
    ]));
    let (peer, msg) = from.join().unwrap();
    assert_eq!(peer, std::net::IpAddr::V4(ip));
    assert_eq!(msg.trim(), "ping");

    // A second container gets another address.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "two",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    let ip2 = eth0_address(&d, "two");
    assert_ne!(ip, ip2);
    assert_eq!(berth_veths(&d).len(), 2, "{:?}", berth_veths(&d));
    assert_eq!(netns_files(&d).len(), 2);

    // Removal leaves no interface and no namespace; a stopped container holds none.
    ok(d.docker(&["rm", "-f", "web"]));
    ok(d.docker(&["stop", "-t", "0", "two"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    // Started again, it gets an address no one had before (sequential allocation).
    ok(d.docker(&["start", "two"]));
    let ip3 = eth0_address(&d, "two");
    assert!(ip3 != ip && ip3 != ip2, "{ip3} handed out again");
    ok(d.docker(&["rm", "-f", "two"]));
    assert!(berth_veths(&d).is_empty());
}

#[test]
fn running_containers_keep_their_network_across_a_daemon_kill() {
    let Some(mut d) = docker_cli_daemon() else {
        return;
    };
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "fixture/app:1",
        "exec httpd -f -p 8080 -h /etc",
    ]));
    // `brief` exits when told to (a file in its bind mount), whatever the host's speed.
    let go = d.dir.path().join("go");
    std::fs::create_dir(&go).unwrap();
    let bind = format!("{}:/go", go.display());
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "brief",
        "-v",
        &bind,
        "fixture/app:1",
        "while [ ! -e /go/now ]; do sleep 0.1; done",
    ]));
    let ip = eth0_address(&d, "web");
    let brief_ip = eth0_address(&d, "brief");
    let brief_id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "brief"]));
    eventually(|| http_get(&d, ip, 8080, "/hostname"));

    d.kill(libc::SIGKILL);
    // While no daemon runs, the container still answers; `brief` exits (its shim
    // releases its cgroup).
    let page = http_get(&d, ip, 8080, "/hostname").expect("served while the daemon is down");
    assert!(
        page.lines().next().unwrap_or("").contains(" 200 "),
        "{page}"
    );
    std::fs::write(go.join("now"), "").unwrap();
    let brief_cgroups = ["/sys/fs/cgroup/berth", "/sys/fs/cgroup/pids/berth"]
        .map(|p| std::path::Path::new(p).join(brief_id.trim()));
    eventually(|| match brief_cgroups.iter().any(|p| p.exists()) {
        true => Err(std::io::Error::other("brief still runs")),
        false => Ok(()),
    });
    d.start_again();

    // The running container kept its address and its server; the exited one's
    // interface and namespace are gone (torn down at daemon start).
    assert_eq!(eth0_address(&d, "web"), ip);
    let page = http_get(&d, ip, 8080, "/hostname").expect("served after the restart");
    assert!(
        page.lines().next().unwrap_or("").contains(" 200 "),
        "{page}"
    );
    assert_eq!(berth_veths(&d).len(), 1, "{:?}", berth_veths(&d));
    assert_eq!(netns_files(&d).len(), 1, "{:?}", netns_files(&d));

    // The running container's address is not handed out again; nor, yet, the one the
    // exited container had (sequential allocation).
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "new",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    let new_ip = eth0_address(&d, "new");
    assert!(
        new_ip != ip && new_ip != brief_ip,
        "{new_ip} handed out twice"
    );

    // berth's table is in place after the restart (reconciled).
    let table = d
        .netns_cmd(&["nft", "list", "table", "ip", "berth"])
        .output()
        .unwrap();
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );

    // A published port keeps working while the daemon is down (the rules are the
    // kernel's), and rules lost meanwhile (a flush, a reboot of the firewall) come back
    // when the daemon starts.
    httpd(&d, &["--name", "pub", "-p", "127.0.0.1:8080:80"]);
    eventually(|| http_get(&d, Ipv4Addr::LOCALHOST, 8080, "/hostname"));
    d.kill(libc::SIGKILL);
    http_get(&d, Ipv4Addr::LOCALHOST, 8080, "/hostname").expect("published while down");
    let st = d
        .netns_cmd(&["nft", "delete", "table", "ip", "berth"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(http_get(&d, Ipv4Addr::LOCALHOST, 8080, "/hostname").is_err());
    d.start_again();
    let page = http_get(&d, Ipv4Addr::LOCALHOST, 8080, "/hostname").expect("reconciled");
    assert!(page.contains(" 200 "), "{page}");

    ok(d.docker(&["rm", "-f", "web", "new", "brief", "pub"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    assert!(netns_files(&d).is_empty());
}

/// Whether the container resolves `name` (busybox nslookup), and to which addresses.
fn lookup(d: &Daemon, container: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
    let out = d.docker(&["exec", container, "sh", "-c", &format!("nslookup {name}")]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Answers follow the "Name:" line; the server's own address comes before it.
    let answers: Vec<Ipv4Addr> = text
        .split("Name:")
        .skip(1)
        .flat_map(|part| {
            part.lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .filter_map(|a| a.trim().split(' ').next()?.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    (!answers.is_empty()).then_some(answers)
}

/// An HTTP GET of `path` on port 80 of `ip` from inside a container (busybox nc, 3 s
/// timeout); the response, or None when nothing answers.
fn http_from(d: &Daemon, container: &str, ip: Ipv4Addr, path: &str) -> Option<String> {
    http_from_port(d, container, ip, 80, path)
}

fn http_from_port(
    d: &Daemon,
    container: &str,
    ip: Ipv4Addr,
    port: u16,
    path: &str,
) -> Option<String> {
    let out = d.docker(&[
        "exec",
        container,
        "sh",
        "-c",
        &format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && text.contains(" 200 ")).then_some(text)
}

fn httpd(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["fixture/app:1", "exec httpd -f -p 80 -h /etc"]);
    ok(d.docker(&a)).trim().to_string()
}

fn bridges(d: &Daemon) -> Vec<String> {
    let out = d
        .netns_cmd(&["ip", "-o", "link", "show", "type", "bridge"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(str::to_string)
        .collect()
}

fn nft_table(d: &Daemon) -> String {
    let out = d
        .netns_cmd(&["nft", "list", "table", "ip", "berth"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&["network", "create", "front"]));
    ok(d.docker(&["network", "create", "back"]));
    httpd(
        &d,
        &[
            "--name",
            "api",
            "--network",
            "back",
            "--network-alias",
            "db",
        ],
    );
    httpd(&d, &["--name", "web", "--network", "front"]);
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "gw",
        "--network",
        "front",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    ok(d.docker(&["network", "connect", "back", "gw"]));
    let api_ip = eth0_address(&d, "api");
    let web_ip = eth0_address(&d, "web");

    // A container on both networks resolves names and aliases of both, and reaches them.
    assert_eq!(lookup(&d, "gw", "api"), Some(vec![api_ip]));
    assert_eq!(lookup(&d, "gw", "DB"), Some(vec![api_ip]));
    assert_eq!(lookup(&d, "gw", "web"), Some(vec![web_ip]));
    let api_host = sh(&d, "api", "hostname");
    let page = http_from(&d, "gw", api_ip, "/hostname").expect("gw reaches api");
    assert!(page.trim_end().ends_with(api_host.trim()), "{page}");
    assert!(http_from(&d, "gw", web_ip, "/hostname").is_some());

    // A container on one network neither resolves nor reaches the other's.
    assert_eq!(lookup(&d, "web", "api"), None);
    assert!(
        http_from(&d, "web", api_ip, "/hostname").is_none(),
        "front reached back"
    );
    assert!(
        http_from(&d, "api", web_ip, "/hostname").is_none(),
        "back reached front"
    );

    // Disconnected, gw no longer resolves back's names; connected again, it does.
    ok(d.docker(&["network", "disconnect", "back", "gw"]));
    assert_eq!(lookup(&d, "gw", "api"), None);
    assert!(http_from(&d, "gw", api_ip, "/hostname").is_none());

    // Teardown: no container, then no network, leaves a bridge, a veth or a rule.
    ok(d.docker(&["rm", "-f", "api", "web", "gw"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    let before = bridges(&d);
    assert_eq!(before.len(), 3, "{before:?}");
    ok(d.docker(&["network", "rm", "front", "back"]));
    assert_eq!(bridges(&d), ["berth0"]);
    let table = nft_table(&d);
    assert!(!table.contains("berth-"), "{table}");
}

#[test]
fn published_ports_work_on_loopback_over_tcp_and_udp_without_a_proxy() {
    let Some(d) = docker_cli_daemon() else { return };
    httpd(&d, &["--name", "web", "-p", "127.0.0.1:8080:80"]);
    let page = eventually(|| http_get(&d, Ipv4Addr::LOCALHOST, 8080, "/hostname"));
    assert!(
        page.lines().next().unwrap_or("").contains(" 200 "),
        "{page}"
    );

    // No process listens on the published port: the kernel translates.
    let ss = d.netns_cmd(&["ss", "-Hltnup"]).output().unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout).to_string();
    assert!(!ss.contains(":8080"), "something listens on 8080:\n{ss}");
    assert_eq!(
        ok(d.docker(&["port", "web"])).trim(),
        "80/tcp -> 127.0.0.1:8080"
    );
    let ps = ok(d.docker(&["ps", "--format", "{{.Names}} {{.Ports}}"]));
    let row = ps.lines().find(|l| l.starts_with("web ")).expect(&ps);
    assert!(row.contains("127.0.0.1:8080->80/tcp"), "{ps}");

    // The port is taken.
    let err = fails(d.docker(&[
        "run",
        "-d",
        "-p",
        "127.0.0.1:8080:80",
        "fixture/app:1",
        "exec sleep 5",
    ]));
    assert!(err.contains("already allocated"), "{err}");

    // -P publishes exposed ports on free host ports, every host address (loopback too).
    httpd(&d, &["--name", "any", "-P", "--expose", "80"]);
    let mapping = ok(d.docker(&["port", "any", "80/tcp"]));
    let port: u16 = mapping
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{mapping}"));
    assert!(mapping.starts_with("0.0.0.0:"), "{mapping}");
    let page = eventually(|| http_get(&d, Ipv4Addr::LOCALHOST, port, "/hostname"));
    assert!(page.contains(" 200 "), "{page}");
    // Hairpin: a container reaches its own published port through the host's address
    // on its bridge (the gateway), and so does a neighbour; a port published on
    // loopback only is not reachable from containers.
    let gw = Ipv4Addr::new(100, 72, 0, 1);
    assert!(http_from_port(&d, "any", gw, port, "/hostname").is_some());
    assert!(http_from_port(&d, "web", gw, port, "/hostname").is_some());
    assert!(http_from_port(&d, "any", gw, 8080, "/hostname").is_none());

    // UDP: a datagram to the published port reaches the container's socket, and the
    // echo comes back.
    run_udp_echo(&d, "udp", "127.0.0.1:5353:53/udp");
    let reply = d.in_netns(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 64];
        loop {
            s.send_to(b"over-udp", "127.0.0.1:5353").unwrap();
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                return (buf[..n].to_vec(), from);
            }
            assert!(
                Instant::now() < deadline,
                "no UDP echo through 127.0.0.1:5353"
            );
        }
    });
    assert_eq!(reply.0, b"over-udp");
    assert_eq!(reply.1, "127.0.0.1:5353".parse().unwrap());

    // Removed, the port is closed again and the rules are gone.
    ok(d.docker(&["rm", "-f", "web", "any", "udp"]));
    assert!(http_get(&d, Ipv4Addr::LOCALHOST, 8080, "/").is_err());
    let table = nft_table(&d);
    assert!(!table.contains("dnat to"), "{table}");
}

/// A DNS server answering every A query with `answer` (test upstream).
fn fake_upstream(d: &Daemon, answer: Ipv4Addr) {
    let sock = d.in_netns(|| std::net::UdpSocket::bind("127.0.0.1:53").unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80; // QR
            r[3] = 0x80; // RA, NOERROR
                         // The question's type follows its name (labels up to a zero byte).
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += 1 + buf[i] as usize;
            }
            let qtype_a = buf.get(i + 1..i + 3) == Some(&[0, 1]);
            if qtype_a {
                r[6] = 0;
                r[7] = 1; // ANCOUNT
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&answer.octets());
            }
            let _ = sock.send_to(&r, peer);
        }
    });
}

#[test]
fn dns_forwards_other_names_and_etc_files_follow_the_flags() {
    let Some(d) = docker_cli_daemon() else { return };
    fake_upstream(&d, Ipv4Addr::new(192, 0, 2, 7));
    ok(d.docker(&["network", "create", "apps"]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "apps",
        "--dns",
        "127.0.0.1",
        "--hostname",
        "one",
        "--add-host",
        "db.internal:10.9.8.7",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    httpd(&d, &["--name", "c2", "--network", "apps"]);
    // Names of the network locally, the rest from the container's --dns servers.
    assert_eq!(lookup(&d, "c1", "c2"), Some(vec![eth0_address(&d, "c2")]));
    assert_eq!(
        lookup(&d, "c1", "example.test"),
        Some(vec![Ipv4Addr::new(192, 0, 2, 7)])
    );
    assert_eq!(sh(&d, "c1", "hostname").trim(), "one");
    let hosts = sh(&d, "c1", "cat /etc/hosts");
    assert!(hosts.contains("10.9.8.7\tdb.internal"), "{hosts}");
    assert!(
        hosts.contains(&format!("{}\tone", eth0_address(&d, "c1"))),
        "{hosts}"
    );
    // The default bridge's DNS forwards too, but does not resolve container names
    // (Docker's rule for the default network).
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "b1",
        "--dns",
        "127.0.0.1",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    httpd(&d, &["--name", "b2"]);
    assert_eq!(
        lookup(&d, "b1", "example.test"),
        Some(vec![Ipv4Addr::new(192, 0, 2, 7)])
    );
    // b2 is not a name on the default network: the query goes upstream, which answers
    // everything with the test address.
    assert_eq!(
        lookup(&d, "b1", "b2"),
        Some(vec![Ipv4Addr::new(192, 0, 2, 7)])
    );
    ok(d.docker(&["rm", "-f", "c1", "c2", "b1", "b2"]));
}

#[test]
fn leftovers_of_a_crash_are_swept_at_daemon_start() {
    let Some(mut d) = docker_cli_daemon() else {
        return;
    };
    d.kill(libc::SIGKILL);
    // A veth berth would have made and a namespace file nothing names.
    let st = d
        .netns_cmd(&[
            "ip",
            "link",
            "add",
            "bth00000000dead",
            "type",
            "veth",
            "peer",
            "name",
            "xdead",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(d.root.join("netns")).unwrap();
    std::fs::write(d.root.join("netns").join("0".repeat(64)), b"").unwrap();
    d.start_again();
    // Swept before the daemon serves (the engine opens before the socket is bound).
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    // The daemon serves, and networking works.
    httpd(&d, &["--name", "web"]);
    let ip = eth0_address(&d, "web");
    eventually(|| http_get(&d, ip, 80, "/hostname"));
}

/// A network's subnet and gateway, as `docker network inspect` shows them.
fn subnet_of(d: &Daemon, network: &str) -> String {
    ok(d.docker(&[
        "network",
        "inspect",
        network,
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
    ]))
    .trim()
    .to_string()
}

#[test]
fn address_pools_come_from_the_daemon_config() {
    if !have("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[address_pools]]\nbase = \"198.18.0.0/16\"\nsize = 26\n",
    )
    .unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(subnet_of(&d, "bridge"), "198.18.0.0/26 198.18.0.1");
    ok(d.docker(&["network", "create", "one"]));
    assert_eq!(subnet_of(&d, "one"), "198.18.0.64/26 198.18.0.65");
    // A subnet given explicitly may lie anywhere; one overlapping another network's is
    // refused.
    let err = fails(d.docker(&["network", "create", "--subnet", "198.18.0.64/27", "two"]));
    assert!(err.contains("overlaps"), "{err}");
}

#[test]
fn a_fresh_state_root_takes_back_the_existing_bridge_subnet() {
    let Some(mut d) = docker_cli_daemon() else {
        return;
    };
    let before = subnet_of(&d, "bridge");
    // The state root is wiped (a reinstall); the bridge stays in the kernel.
    d.kill(libc::SIGKILL);
    std::fs::remove_dir_all(&d.root).unwrap();
    d.start_again();
    assert_eq!(subnet_of(&d, "bridge"), before);
    let addrs = d
        .netns_cmd(&["ip", "-4", "-o", "addr", "show", "dev", "berth0"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout).to_string();
    assert_eq!(addrs.lines().count(), 1, "{addrs}");
}

/// A namespace standing for a machine next to the host, behind a veth link with a
/// 1500-byte MTU from the daemon's namespace (198.19.0.1 there, 198.19.0.2 here).
struct Neighbour {
    name: String,
}

impl Neighbour {
    fn attach(d: &Daemon) -> Neighbour {
        let nb = Neighbour { name: new_netns() };
        let n = nb.name.as_str();
        let ip = |args: &[&str]| {
            let mut c = std::process::Command::new("ip");
            c.args(args);
            c
        };
        ok(d.netns_cmd(&[
            "ip", "link", "add", "nbr0", "mtu", "1500", "type", "veth", "peer", "name", "nbr1",
            "mtu", "1500", "netns", n,
        ])
        .output()
        .unwrap());
        ok(
            d.netns_cmd(&["ip", "addr", "add", "198.19.0.1/24", "dev", "nbr0"])
                .output()
                .unwrap(),
        );
        ok(d.netns_cmd(&["ip", "link", "set", "nbr0", "up"])
            .output()
            .unwrap());
        ok(
            ip(&["-n", n, "addr", "add", "198.19.0.2/24", "dev", "nbr1"])
                .output()
                .unwrap(),
        );
        ok(ip(&["-n", n, "link", "set", "nbr1", "up"])
            .output()
            .unwrap());
        nb
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_named_netns(&self.name, f)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The container's default route as the host's `ip` shows it, read in the container's
/// network namespace (busybox's `ip` leaves out route metrics such as the MTU).
fn default_route(d: &Daemon, name: &str) -> String {
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", name]));
    let ns = d.root.join("netns").join(id.trim());
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-4", "route", "show", "default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn links_carry_large_frames_within_the_host_and_the_default_route_keeps_1500() {
    let Some(d) = docker_cli_daemon() else { return };
    let nb = Neighbour::attach(&d);
    run_udp_echo(&d, "big", "5354:53/udp");
    // Within the host, large frames (the bridge follows its ports); beyond the gateway,
    // the daemon's mtu (1500).
    assert_eq!(sh(&d, "big", "cat /sys/class/net/eth0/mtu").trim(), "65520");
    assert_eq!(
        default_route(&d, "big"),
        "default via 100.72.0.1 dev eth0 proto static mtu 1500"
    );
    let bridge_mtu = d
        .netns_cmd(&["cat", "/sys/class/net/berth0/mtu"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&bridge_mtu.stdout).trim(), "65520");

    // A client on the machine next door sends to the published port over its 1500-byte
    // link. The container's reply of 3000 bytes leaves through the gateway: its route
    // makes the container fragment it, and it arrives at the first try. (With the link's
    // MTU on that route, the reply would go out whole with DF set and die at the 1500-byte
    // link.)
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let (small_reply, big_reply) = nb.run(|| {
        let s = std::net::UdpSocket::bind("198.19.0.2:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        // The server starts asynchronously: small datagrams until it answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        let small = loop {
            s.send_to(b"hello", "198.19.0.1:5354").unwrap();
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                break buf[..n].to_vec();
            }
            assert!(Instant::now() < deadline, "no UDP echo from the neighbour");
        };
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(&big, "198.19.0.1:5354").unwrap();
        let large = s.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec());
        (small, large)
    });
    assert_eq!(small_reply, b"hello");
    let big_reply = big_reply.expect("the 3000-byte echo did not come back at the first try");
    assert_eq!(big_reply, big);

    // A network with an explicit MTU is Docker's layout: links and routes at that MTU.
    ok(d.docker(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "small",
    ]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "small1",
        "--network",
        "small",
        "fixture/app:1",
        "sleep 600",
    ]));
    assert_eq!(
        sh(&d, "small1", "cat /sys/class/net/eth0/mtu").trim(),
        "1400"
    );
    assert!(!default_route(&d, "small1").contains("mtu"));
    ok(d.docker(&["rm", "-f", "big", "small1"]));
}

#[test]
fn the_daemon_mtu_and_link_mtu_come_from_its_config() {
    if !have("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "mtu = 1400\nlink_mtu = 0\n").unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().unwrap()]));
    ok(d.docker(&["run", "-d", "--name", "mtu1", "fixture/app:1", "sleep 600"]));
    assert_eq!(sh(&d, "mtu1", "cat /sys/class/net/eth0/mtu").trim(), "1400");
    assert!(!default_route(&d, "mtu1").contains("mtu"));
    ok(d.docker(&["rm", "-f", "mtu1"]));

    // Nonsense is refused at start, naming the key.
    std::fs::write(&cfg, "mtu = 9000\nlink_mtu = 1500\n").unwrap();
    let out = std::process::Command::new(berth_bin())
        .args([
            "daemon",
            "--bridge",
            "none",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["--host", &format!("unix://{}/s.sock", dir.path().display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("link_mtu 1500"), "{err}");
}

#[test]
fn a_udp_client_that_keeps_sending_follows_the_port_to_a_new_container() {
    let Some(d) = docker_cli_daemon() else { return };
    let run = |name: &str| run_udp_echo(&d, name, "127.0.0.1:5357:53/udp");
    // One client socket, one source port, for the whole test (a syslog or metrics
    // sender that never stops).
    let s = d.in_netns(|| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let echoed = |what: &[u8]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 64];
        loop {
            s.send_to(what, "127.0.0.1:5357").unwrap();
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                if &buf[..n] == what {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    };
    run("first");
    assert!(echoed(b"to the first"), "no echo from the first container");
    ok(d.docker(&["rm", "-f", "first"]));
    // It goes on sending while nobody publishes the port.
    for _ in 0..5 {
        s.send_to(b"to nobody", "127.0.0.1:5357").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    run("second");
    assert!(
        echoed(b"to the second"),
        "the flow stayed stuck to the removed container or to no translation (conntrack)"
    );
    ok(d.docker(&["rm", "-f", "second"]));
}

/// The container's global IPv6 address on `eth0`, read from inside it.
fn eth0_address6(d: &Daemon, name: &str) -> std::net::Ipv6Addr {
    let out = sh(d, name, "ip -6 -o addr show eth0 scope global");
    let cidr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet6 address in {out:?}"));
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// An HTTP GET of `path` on port 80 of an IPv6 address from inside a container.
fn http6_from(d: &Daemon, container: &str, ip: std::net::Ipv6Addr, path: &str) -> Option<String> {
    let out = d.docker(&[
        "exec",
        container,
        "sh",
        "-c",
        &format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && text.contains(" 200 ")).then_some(text)
}

/// Whether the container resolves `name`'s AAAA records (busybox nslookup), and to which.
fn lookup6(d: &Daemon, container: &str, name: &str) -> Vec<std::net::Ipv6Addr> {
    let out = d.docker(&[
        "exec",
        container,
        "sh",
        "-c",
        &format!("nslookup -type=AAAA {name}"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split("Name:")
        .skip(1)
        .flat_map(|part| {
            part.lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .filter_map(|a| a.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Dual-stack networks (`--ipv6 --subnet fd00:…/64`): containers get an IPv6 address (or
/// the one asked with `--ip6`) and route, reach each other over IPv6 by name (AAAA),
/// not another network's; a port published on every address answers on the host's IPv6
/// addresses (DNAT in `ip6 berth`, no proxy), an IPv6 address of the host for an
/// IPv4-only container through the userland proxy; an IPv6 network without a subnet is
/// refused by name; removing the last dual-stack network removes the ip6 table.
#[test]
fn dual_stack_networks_carry_ipv6_by_name_isolated_and_published() {
    let Some(d) = docker_cli_daemon() else { return };
    let have_ipv6 = d
        .netns_cmd(&["test", "-d", "/proc/sys/net/ipv6"])
        .status()
        .unwrap()
        .success();
    if !have_ipv6 {
        // The documented refusal on a kernel without IPv6.
        let err = fails(d.docker(&[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:b0::/64",
            "ds",
        ]));
        assert!(err.contains("has no IPv6"), "{err}");
        return;
    }
    ok(d.docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:b0::/64",
        "ds",
    ]));
    ok(d.docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:b1::/64",
        "other6",
    ]));
    let cfg = ok(d.docker(&[
        "network",
        "inspect",
        "ds",
        "-f",
        "{{.EnableIPv6}} {{json .IPAM.Config}}",
    ]));
    assert!(
        cfg.starts_with("true ")
            && cfg.contains(r#"{"Subnet":"fd00:b0::/64","Gateway":"fd00:b0::1"}"#),
        "{cfg}"
    );
    httpd(&d, &["--name", "web", "--network", "ds", "-p", "8080:80"]);
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--network",
        "ds",
        "--ip6",
        "fd00:b0::99",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    httpd(&d, &["--name", "far", "--network", "other6"]);
    let web6 = eth0_address6(&d, "web");
    assert!(web6.segments()[..4] == [0xfd00, 0xb0, 0, 0], "{web6}");
    assert_eq!(
        ok(d.docker(&["inspect", "web", "-f", "{{with .NetworkSettings.Networks.ds}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}} {{.IPv6Gateway}}{{end}}"])).trim(),
        format!("{web6}/64 fd00:b0::1")
    );
    assert_eq!(eth0_address6(&d, "cli").to_string(), "fd00:b0::99");
    let route = sh(&d, "cli", "ip -6 route show default");
    assert!(
        route.starts_with("default via fd00:b0::1 dev eth0"),
        "{route}"
    );
    // By name over IPv6 on the same network: AAAA, and traffic.
    assert_eq!(lookup6(&d, "cli", "web"), vec![web6]);
    let page = http6_from(&d, "cli", web6, "/hostname").expect("cli reaches web over IPv6");
    assert!(
        page.trim_end().ends_with(sh(&d, "web", "hostname").trim()),
        "{page}"
    );
    // Not across networks.
    let far6 = eth0_address6(&d, "far");
    assert!(lookup6(&d, "cli", "far").is_empty());
    assert!(
        http6_from(&d, "cli", far6, "/hostname").is_none(),
        "ds reached other6"
    );
    assert!(
        http6_from(&d, "far", web6, "/hostname").is_none(),
        "other6 reached ds"
    );
    // A published port on every address: the host's IPv6 addresses too (one put on the
    // daemon's loopback, in the test's network namespace).
    assert!(d
        .netns_cmd(&["ip", "addr", "add", "fd00:ee::1/128", "dev", "lo", "nodad"])
        .status()
        .unwrap()
        .success());
    let get6 = |port: u16| {
        eventually(|| {
            d.in_netns(move || -> std::io::Result<String> {
                let addr = std::net::SocketAddr::new("fd00:ee::1".parse().unwrap(), port);
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                write!(s, "GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            })
        })
    };
    let got = get6(8080);
    assert!(got.contains(" 200 "), "{got}");
    // And on the IPv6 loopback, which the kernel cannot translate: the userland proxy.
    let got = eventually(|| http6_loopback(&d, 8080, "/hostname"));
    assert!(
        got.trim_end().ends_with(sh(&d, "web", "hostname").trim()),
        "{got}"
    );
    assert_eq!(
        ok(d.docker(&["port", "web", "80"])).trim(),
        "0.0.0.0:8080\n[::1]:8080"
    );
    // On that one IPv6 address only: `-p [ADDR]:8081:80`.
    httpd(
        &d,
        &[
            "--name",
            "web2",
            "--network",
            "ds",
            "-p",
            "[fd00:ee::1]:8081:80",
        ],
    );
    let got = get6(8081);
    assert!(
        got.trim_end().ends_with(sh(&d, "web2", "hostname").trim()),
        "{got}"
    );
    assert_eq!(
        ok(d.docker(&["port", "web2", "80"])).trim(),
        "[fd00:ee::1]:8081"
    );
    // A container without IPv6 on its first network is published on an IPv6 address
    // through the userland proxy (no NAT from IPv6 to IPv4), as Docker does.
    httpd(&d, &["--name", "v4only", "-p", "[fd00:ee::1]:8082:80"]);
    let got = get6(8082);
    assert!(
        got.trim_end()
            .ends_with(sh(&d, "v4only", "hostname").trim()),
        "{got}"
    );
    ok(d.docker(&["rm", "-f", "v4only"]));
    let err = fails(d.docker(&["network", "create", "--ipv6", "x6"]));
    assert!(err.contains("--ipv6 needs an IPv6 --subnet"), "{err}");
    let err = fails(d.docker(&["network", "create", "--subnet", "fd00:b2::/64", "x7"]));
    assert!(err.contains("given without --ipv6"), "{err}");
    let err = fails(d.docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:b0:0:0:1::/80",
        "x8",
    ]));
    assert!(err.contains("overlaps network ds"), "{err}");
    // The addresses survive a daemon SIGKILL: a new container gets another one.
    let mut d = d;
    d.restart_after_sigkill();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "ds",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    let late6 = eth0_address6(&d, "late");
    assert!(
        late6 != web6 && late6.to_string() != "fd00:b0::99",
        "{late6}"
    );
    // Teardown: the ip6 table goes with the last dual-stack network.
    ok(d.docker(&["rm", "-f", "web", "web2", "cli", "far", "late"]));
    ok(d.docker(&["network", "rm", "ds", "other6"]));
    let out = d
        .netns_cmd(&["nft", "list", "table", "ip6", "berth"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the ip6 table outlived the networks");
}

/// The host's IPv6 loopback in the daemon's namespace, if it has one.
fn have_ipv6_loopback(d: &Daemon) -> bool {
    d.in_netns(|| std::net::TcpListener::bind("[::1]:0").is_ok())
}

/// An HTTP GET to `[::1]:port` from the daemon's namespace.
fn http6_loopback(d: &Daemon, port: u16, path: &str) -> std::io::Result<String> {
    let path = path.to_string();
    d.in_netns(move || {
        let addr = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        if !out.contains(" 200 ") {
            return Err(std::io::Error::other(format!("answer: {out:?}")));
        }
        Ok(out)
    })
}

/// A datagram to `[::1]:port` from the daemon's namespace; the echo and where it came
/// from.
fn udp6_echo(d: &Daemon, port: u16, msg: &'static [u8]) -> (Vec<u8>, std::net::SocketAddr) {
    d.in_netns(move || {
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 64];
        loop {
            s.send_to(msg, ("::1", port)).unwrap();
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                return (buf[..n].to_vec(), from);
            }
            assert!(
                Instant::now() < deadline,
                "no UDP echo through [::1]:{port}"
            );
        }
    })
}

/// The host port of `docker port NAME KEY`'s first line.
fn published_port(d: &Daemon, name: &str, key: &str) -> (String, u16) {
    let out = ok(d.docker(&["port", name, key]));
    let line = out.lines().next().unwrap_or_else(|| panic!("{out:?}"));
    let (host, port) = line.trim().rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

/// A TCP listener on `[::]:0` that takes IPv6 only (IPV6_V6ONLY before the bind, so
/// its port may be free on IPv4).
fn socket2_v6only_listener() -> std::net::TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket syscalls on a descriptor this function creates and owns; the
    // option value is a live c_int.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut a: libc::sockaddr_in6 = std::mem::zeroed();
        a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        assert_eq!(
            libc::bind(
                fd,
                (&a as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
            0
        );
        assert_eq!(libc::listen(fd, 16), 0);
        std::net::TcpListener::from_raw_fd(fd)
    }
}

/// The status files of the userland proxies serving `[::1]:port` (their command lines
/// name it).
fn proxy_status(port: u16) -> Vec<String> {
    let needle = format!("[::1]:{port}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
                return false;
            };
            let args: Vec<String> = c
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first().is_some_and(|a| a.ends_with("berth-proxy")) && args.contains(&needle)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .collect()
}

fn proxies_of(port: u16) -> usize {
    proxy_status(port).len()
}

/// Ports published on the host's IPv6 loopback (`-p [::1]:…`) go through the userland
/// proxy, bound when the container starts: TCP and UDP reach the container, inspect and
/// `docker port` show them, a port in use is refused by name at start and leaves
/// nothing behind, the relay lives through a daemon restart and ends with the
/// container, and a restart binds again.
#[test]
fn ports_on_the_ipv6_loopback_go_through_the_userland_proxy() {
    let Some(mut d) = docker_cli_daemon() else {
        return;
    };
    if !have_ipv6_loopback(&d) {
        eprintln!("no IPv6 loopback ([::1]) in the daemon's network namespace; skipping");
        return;
    }
    httpd(&d, &["--name", "web6", "-p", "[::1]::80"]);
    let (host, port) = published_port(&d, "web6", "80/tcp");
    assert_eq!(host, "[::1]");
    let page = eventually(|| http6_loopback(&d, port, "/hostname"));
    let hostname = sh(&d, "web6", "hostname");
    assert!(page.trim_end().ends_with(hostname.trim()), "{page}");
    // The container sees the host's address on its network (the gateway) as the
    // client, as with docker-proxy: a connection held open shows in its /proc/net/tcp.
    let gw: Ipv4Addr = ok(d.docker(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "web6"]))
        .trim()
        .parse()
        .unwrap();
    let held = d.in_netns(move || TcpStream::connect(("::1", port)).unwrap());
    // httpd's socket may be IPv6 (the address then IPv4-mapped, in tcp6).
    let gw_hex = format!("{:08X}", u32::from_le_bytes(gw.octets()));
    let from_gw = [
        format!(":0050 {gw_hex}:"),
        format!(":0050 0000000000000000FFFF0000{gw_hex}:"),
    ];
    eventually(|| {
        let t = sh(&d, "web6", "cat /proc/net/tcp /proc/net/tcp6");
        match from_gw.iter().any(|f| t.contains(f)) {
            true => Ok(()),
            false => Err(std::io::Error::other(format!("no {from_gw:?} in {t}"))),
        }
    });
    drop(held);
    let ports = ok(d.docker(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "web6"]));
    assert!(
        ports.contains(&format!(
            r#""80/tcp":[{{"HostIp":"::1","HostPort":"{port}"}}]"#
        )),
        "{ports}"
    );
    // One proxy process for the container, unprivileged; no nftables rule for it.
    let status = proxy_status(port);
    assert_eq!(status.len(), 1);
    let field = |name: &str| {
        status[0]
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), ["65534"; 4]);
    assert_eq!(field("Gid:"), ["65534"; 4]);
    assert_eq!(field("NoNewPrivs:"), ["1"]);
    assert_eq!(field("CapEff:"), ["0000000000000000"]);
    let table = nft_table(&d);
    assert!(!table.contains(&format!("dport {port}")), "{table}");

    // UDP: each client address has its flow; the echo comes back from [::1]:PORT.
    run_udp_echo(&d, "udp6", "[::1]:5353:53/udp");
    let (echo, from) = udp6_echo(&d, 5353, b"over-udp6");
    assert_eq!(echo, b"over-udp6");
    assert_eq!(from, "[::1]:5353".parse().unwrap());

    // Taken by another container: Docker's "already allocated"; by a host process:
    // Docker's userland proxy error. Either way the container is left created, with no
    // interface, namespace or proxy.
    let veths = berth_veths(&d).len();
    let err = fails(d.docker(&[
        "run",
        "-d",
        "--name",
        "dup",
        "-p",
        &format!("[::1]:{port}:80"),
        "fixture/app:1",
        "exec sleep 60",
    ]));
    assert!(err.contains("port is already allocated"), "{err}");
    let held = d.in_netns(|| std::net::TcpListener::bind("[::1]:0").unwrap());
    let busy = held.local_addr().unwrap().port();
    let err = fails(d.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-p",
        &format!("[::1]:{busy}:80"),
        "fixture/app:1",
        "exec sleep 60",
    ]));
    assert!(
        err.contains(&format!(
            "Error starting userland proxy: listen tcp6 [::1]:{busy}: bind: address already in use"
        )),
        "{err}"
    );
    assert_eq!(berth_veths(&d).len(), veths);
    assert_eq!(proxies_of(busy), 0);
    let state = ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "busy"]));
    assert_eq!(state.trim(), "created");
    drop(held);
    ok(d.docker(&["rm", "dup", "busy"]));

    // The relay is the shim's: it goes on while the daemon is down and after it is back.
    d.kill(libc::SIGKILL);
    http6_loopback(&d, port, "/hostname").expect("served while the daemon is down");
    d.start_again();
    let page = http6_loopback(&d, port, "/hostname").expect("served after the restart");
    assert!(page.trim_end().ends_with(hostname.trim()), "{page}");
    assert_eq!(udp6_echo(&d, 5353, b"again").0, b"again");
    assert_eq!(proxies_of(port), 1);

    // A port on every address of an IPv4-only container: the kernel translates IPv4,
    // the proxy serves the host's IPv6 addresses (`[::]`, IPv6 only), as Docker's
    // userland proxy does.
    httpd(&d, &["--name", "every", "-p", "8090:80"]);
    assert_eq!(
        ok(d.docker(&["port", "every", "80"])).trim(),
        "0.0.0.0:8090\n[::]:8090"
    );
    let page = eventually(|| http6_loopback(&d, 8090, "/hostname"));
    assert!(
        page.trim_end()
            .ends_with(sh(&d, "every", "hostname").trim()),
        "{page}"
    );
    eventually(|| http_get(&d, Ipv4Addr::LOCALHOST, 8090, "/hostname"));
    // A host process on [::]:PORT is named, as Docker names it.
    let held6 = d.in_netns(socket2_v6only_listener);
    let p6 = held6.local_addr().unwrap().port();
    let err = fails(d.docker(&[
        "run",
        "-d",
        "--name",
        "busy6",
        "-p",
        &format!("{p6}:80"),
        "fixture/app:1",
        "exec sleep 60",
    ]));
    assert!(
        err.contains(&format!(
            "Error starting userland proxy: listen tcp6 [::]:{p6}: bind: address already in use"
        )),
        "{err}"
    );
    drop(held6);
    ok(d.docker(&["rm", "-f", "every", "busy6"]));

    // Bounded: at most 64 ports of one container go through the proxy; the IPv6 twins
    // of a larger range are left out (IPv4 is all there), explicit ones refused.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "many",
        "-p",
        "9100-9169:9100-9169",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    let lines = ok(d.docker(&["port", "many"]));
    assert_eq!(lines.matches("0.0.0.0:").count(), 70, "{lines}");
    assert_eq!(lines.matches("[::]:").count(), 64, "{lines}");
    ok(d.docker(&["rm", "-f", "many"]));
    let err = fails(d.docker(&[
        "run",
        "-d",
        "--name",
        "toomany",
        "-p",
        "[::1]:9200-9269:9200-9269",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    assert!(
        err.contains("more than 64 ports of one container would go through the userland proxy"),
        "{err}"
    );
    ok(d.docker(&["rm", "toomany"]));

    // Stopped: the port is closed (no proxy is left) and free for anyone.
    ok(d.docker(&["stop", "-t", "1", "web6"]));
    assert!(http6_loopback(&d, port, "/").is_err());
    assert_eq!(proxies_of(port), 0);
    assert!(d.in_netns(|| std::net::TcpListener::bind(("::1", port)).is_ok()));
    // Started again: bound again (a new port: none was asked for).
    ok(d.docker(&["start", "web6"]));
    let (_, port2) = published_port(&d, "web6", "80/tcp");
    eventually(|| http6_loopback(&d, port2, "/hostname"));

    // A shim that dies takes its proxy along (parent-death signal): nothing relays to
    // a container without a supervisor.
    let st = proxy_status(5353);
    assert_eq!(st.len(), 1);
    let shim: i32 = st[0]
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{shim}/comm")).unwrap();
    assert_eq!(comm.trim(), "berth-shim");
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    assert_eq!(unsafe { libc::kill(shim, libc::SIGKILL) }, 0);
    eventually(|| match proxies_of(5353) {
        0 => Ok(()),
        _ => Err(std::io::Error::other("the proxy outlived its shim")),
    });

    ok(d.docker(&["rm", "-f", "web6", "udp6"]));
    assert!(http6_loopback(&d, port2, "/").is_err());
    assert_eq!(proxies_of(port2) + proxies_of(5353), 0);
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
}

/// `userland_proxy = false`: what only the proxy can serve is refused by name, and a
/// port on every address is IPv4 only (no process listens).
#[test]
fn without_the_userland_proxy_ipv6_loopback_ports_are_refused_by_name() {
    if !have("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "userland_proxy = false\n").unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let err = fails(d.docker(&[
        "run",
        "-d",
        "-p",
        "[::1]:9000:80",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    assert!(
        err.contains("only the userland proxy can publish there")
            && err.contains("userland_proxy = false"),
        "{err}"
    );
    httpd(&d, &["--name", "v4", "-p", "8091:80"]);
    assert_eq!(ok(d.docker(&["port", "v4", "80"])).trim(), "0.0.0.0:8091");
    eventually(|| http_get(&d, Ipv4Addr::LOCALHOST, 8091, "/hostname"));
    let ss = d.netns_cmd(&["ss", "-Hltn"]).output().unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout).to_string();
    assert!(!ss.contains(":8091"), "something listens on 8091:\n{ss}");
    ok(d.docker(&["rm", "-f", "v4"]));
}
