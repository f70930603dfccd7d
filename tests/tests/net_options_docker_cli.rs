//! Endpoint options of bridge networks through the real docker CLI (and the API where
//! the CLI has no flag): `--mac-address` (per endpoint, and the deprecated
//! container-wide `Config.MacAddress`), `--link-local-ip`, the endpoint driver options
//! `com.docker.network.endpoint.sysctls` and `com.docker.network.endpoint.ifname`.
//! Each is checked from inside the container (the kernel's view), in inspect, and with
//! real traffic between containers; bad values are refused with Docker's words and
//! nothing is left behind after `rm`.
//!
//! Each daemon runs in a network namespace of its own (see the harness); every packet
//! stays inside it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use berth_tests::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Runs a shell command in a container.
fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(d.docker(&["exec", name, "sh", "-c", script]))
}

fn inspect(d: &Daemon, name: &str) -> Value {
    json(&ok(d.docker(&["inspect", name])))[0].clone()
}

/// A raw API call with curl over the daemon's socket: (HTTP status, body).
fn api(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = d.host();
    let sock = host.trim_start_matches("unix://");
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            sock,
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &format!("http://berth/v1.47{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

fn berth_veths(d: &Daemon) -> Vec<String> {
    let out = d.netns_cmd(&["ip", "-o", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("bth"))
        .collect()
}

fn have_curl() -> bool {
    if !have("curl") {
        eprintln!("curl not installed; skipping");
        return false;
    }
    true
}

#[test]
fn mac_addresses_are_given_to_the_interface_shown_and_checked() {
    if !have_curl() {
        return;
    }
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&["network", "create", "--subnet", "100.91.1.0/24", "front"]));

    // On a user network, upper case as typed: the kernel and inspect have it.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "m1",
        "--network",
        "front",
        "--mac-address",
        "02:42:DE:AD:BE:EF",
        "fixture/app:1",
        "exec httpd -f -p 8080 -h /etc",
    ]));
    assert_eq!(
        sh(&d, "m1", "cat /sys/class/net/eth0/address").trim(),
        "02:42:de:ad:be:ef"
    );
    let doc = inspect(&d, "m1");
    assert_eq!(
        doc["NetworkSettings"]["Networks"]["front"]["MacAddress"],
        "02:42:de:ad:be:ef"
    );
    let net = json(&ok(d.docker(&["network", "inspect", "front"])));
    let id = doc["Id"].as_str().unwrap();
    assert_eq!(net[0]["Containers"][id]["MacAddress"], "02:42:de:ad:be:ef");

    // On the default network: the legacy top-level field too.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "m2",
        "--mac-address",
        "02:42:00:11:22:33",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    assert_eq!(
        sh(&d, "m2", "cat /sys/class/net/eth0/address").trim(),
        "02:42:00:11:22:33"
    );
    let doc = inspect(&d, "m2");
    assert_eq!(doc["NetworkSettings"]["MacAddress"], "02:42:00:11:22:33");
    assert_eq!(
        doc["NetworkSettings"]["Networks"]["bridge"]["MacAddress"],
        "02:42:00:11:22:33"
    );

    // The API's connect takes one (the docker CLI has no flag for it): m2 joins front
    // with it, at once, and reaches m1 there (the neighbour entry names m1's MAC).
    let (code, body) = api(
        &d,
        "POST",
        "/networks/front/connect",
        r#"{"Container":"m2","EndpointConfig":{"MacAddress":"02:42:00:44:55:66"}}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        sh(&d, "m2", "cat /sys/class/net/eth1/address").trim(),
        "02:42:00:44:55:66"
    );
    let m1_ip = inspect(&d, "m1")["NetworkSettings"]["Networks"]["front"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let page = sh(
        &d,
        "m2",
        &format!(
            "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {m1_ip} 8080 && ip neigh show {m1_ip}"
        ),
    );
    assert!(page.contains("02:42:de:ad:be:ef"), "{page}");

    // The deprecated container-wide Config.MacAddress (API < 1.44 clients, the Docker
    // SDK for Python): the primary network's interface gets it; inspect shows it.
    let (code, body) = api(
        &d,
        "POST",
        "/containers/create?name=m3",
        r#"{"Image":"fixture/app:1","Cmd":["exec sleep 300"],"MacAddress":"02:42:0a:0b:0c:0d","HostConfig":{"NetworkMode":"front"}}"#,
    );
    assert_eq!(code, 201, "{body}");
    ok(d.docker(&["start", "m3"]));
    assert_eq!(
        sh(&d, "m3", "cat /sys/class/net/eth0/address").trim(),
        "02:42:0a:0b:0c:0d"
    );
    let doc = inspect(&d, "m3");
    assert_eq!(doc["Config"]["MacAddress"], "02:42:0a:0b:0c:0d");
    assert_eq!(
        doc["NetworkSettings"]["Networks"]["front"]["MacAddress"],
        "02:42:0a:0b:0c:0d"
    );

    // Refused, with Docker's words, and nothing is created.
    for (body, want) in [
        (
            r#"{"Image":"fixture/app:1","NetworkingConfig":{"EndpointsConfig":{"front":{"MacAddress":"02:42:zz:00:00:01"}}},"HostConfig":{"NetworkMode":"front"}}"#,
            "invalid MAC address 02:42:zz:00:00:01",
        ),
        (
            r#"{"Image":"fixture/app:1","MacAddress":"02:42:0a:0b:0c:0e","NetworkingConfig":{"EndpointsConfig":{"front":{"MacAddress":"02:42:0a:0b:0c:0f"}}},"HostConfig":{"NetworkMode":"front"}}"#,
            "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
        ),
        (
            r#"{"Image":"fixture/app:1","MacAddress":"02:42:0a:0b:0c:0e","HostConfig":{"NetworkMode":"host"}}"#,
            "conflicting options: mac-address and the network mode",
        ),
    ] {
        let (code, out) = api(&d, "POST", "/containers/create?name=bad", body);
        assert_eq!(code, 400, "{body}: {out}");
        assert!(out.contains(want), "{body}: {out}");
    }
    let err = fails(d.docker(&[
        "create",
        "--name",
        "bad",
        "--mac-address",
        "03:00:00:00:00:01",
        "fixture/app:1",
    ]));
    assert!(
        err.contains("invalid MAC address 03:00:00:00:00:01: a multicast"),
        "{err}"
    );
    let (code, out) = api(
        &d,
        "POST",
        "/networks/bridge/connect",
        r#"{"Container":"m1","EndpointConfig":{"MacAddress":"nope"}}"#,
    );
    assert_eq!(code, 400, "{out}");
    assert!(out.contains("invalid MAC address nope"), "{out}");
    assert!(fails(d.docker(&["inspect", "bad"])).contains("No such"));

    ok(d.docker(&["rm", "-f", "m1", "m2", "m3"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
}

#[test]
fn link_local_addresses_and_endpoint_driver_options_reach_the_interface() {
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&["network", "create", "front"]));
    ok(d.docker(&["network", "create", "back"]));

    // --link-local-ip and a per-interface sysctl on the first network.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "l1",
        "--network",
        "name=front,driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1",
        "--link-local-ip",
        "169.254.10.1",
        "fixture/app:1",
        "exec sleep 300",
    ]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "l2",
        "--network",
        "front",
        "--link-local-ip",
        "169.254.10.2",
        "fixture/app:1",
        "exec httpd -f -p 8080 -h /etc",
    ]));
    let addrs = sh(&d, "l1", "ip -4 -o addr show eth0");
    assert!(addrs.contains("inet 169.254.10.1/16"), "{addrs}");
    assert_eq!(
        sh(&d, "l1", "cat /proc/sys/net/ipv4/conf/eth0/log_martians").trim(),
        "1"
    );
    assert_eq!(
        sh(&d, "l2", "cat /proc/sys/net/ipv4/conf/eth0/log_martians").trim(),
        "0"
    );
    // The two talk over their link-local addresses.
    let host = sh(&d, "l2", "hostname");
    let page = sh(
        &d,
        "l1",
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 169.254.10.2 8080",
    );
    assert!(page.contains(" 200 "), "{page}");
    assert!(page.trim_end().ends_with(host.trim()), "{page}");
    let doc = inspect(&d, "l1");
    let ep = &doc["NetworkSettings"]["Networks"]["front"];
    assert_eq!(
        ep["IPAMConfig"]["LinkLocalIPs"],
        json(r#"["169.254.10.1"]"#)
    );
    assert_eq!(
        ep["DriverOpts"]["com.docker.network.endpoint.sysctls"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("net.ipv4.conf.ifname.log_martians=1")
    );

    // An interface name of the user's choice (network connect --driver-opt).
    ok(d.docker(&[
        "network",
        "connect",
        "--driver-opt",
        "com.docker.network.endpoint.ifname=back0",
        "back",
        "l1",
    ]));
    let link = sh(&d, "l1", "ip -o link show back0");
    assert!(link.contains("back0"), "{link}");
    // Restarted, the names hold (back0 stays, front keeps eth0).
    ok(d.docker(&["restart", "-t", "0", "l1"]));
    let links = sh(&d, "l1", "ip -o link show");
    assert!(
        links.contains(": back0@") && links.contains(": eth0@"),
        "{links}"
    );

    // Refused by name, nothing created.
    for (args, want) in [
        (
            vec!["--network", "name=front,driver-opt=com.example.opt=1"],
            "endpoint driver option com.example.opt is not supported yet by berth",
        ),
        (
            vec![
                "--network",
                "name=front,driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.eth0.forwarding=1",
            ],
            "unrecognised network interface sysctl",
        ),
        (
            vec![
                "--network",
                "name=front,driver-opt=com.docker.network.endpoint.sysctls=net.ipv6.conf.IFNAME.disable_ipv6=0",
            ],
            "is IPv4 only",
        ),
        (
            vec![
                "--network",
                "name=front,driver-opt=com.docker.network.endpoint.ifname=x0",
                "--network",
                "name=back,driver-opt=com.docker.network.endpoint.ifname=x0",
            ],
            "ask for the same interface name",
        ),
        (
            vec!["--network", "front", "--link-local-ip", "fe80::7"],
            "has no IPv6",
        ),
    ] {
        let mut a = vec!["create", "--name", "bad"];
        a.extend_from_slice(&args);
        a.push("fixture/app:1");
        let err = fails(d.docker(&a));
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(fails(d.docker(&["inspect", "bad"])).contains("No such"));

    ok(d.docker(&["rm", "-f", "l1", "l2"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    ok(d.docker(&["network", "rm", "front", "back"]));
}
