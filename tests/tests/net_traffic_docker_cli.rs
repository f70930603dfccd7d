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

fn daemon() -> Option<Daemon> {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return None;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    Some(d)
}

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
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let Some(d) = daemon() else { return };
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
    let Some(mut d) = daemon() else { return };
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "fixture/app:1",
        "exec httpd -f -p 8080 -h /etc",
    ]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "brief",
        "fixture/app:1",
        "exec sleep 2",
    ]));
    let ip = eth0_address(&d, "web");
    let brief_ip = eth0_address(&d, "brief");
    eventually(|| http_get(&d, ip, 8080, "/hostname"));

    d.kill(libc::SIGKILL);
    // While no daemon runs, the container still answers; `brief` exits.
    let page = http_get(&d, ip, 8080, "/hostname").expect("served while the daemon is down");
    assert!(
        page.lines().next().unwrap_or("").contains(" 200 "),
        "{page}"
    );
    std::thread::sleep(Duration::from_secs(3));
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

    ok(d.docker(&["rm", "-f", "web", "new", "brief"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    assert!(netns_files(&d).is_empty());
}
