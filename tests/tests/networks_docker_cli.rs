//! The real docker CLI (and berth's) manage networks and published ports on berth:
//! network create/ls/inspect/rm/prune/connect/disconnect in Docker's shapes, the
//! refusals of what berth cannot do, published ports as `docker port`, `docker ps` and
//! inspect show them, endpoints of running and stopped containers, and the /etc files.
//!
//! No test here sends traffic: connectivity is tested elsewhere. The daemons make
//! bridges, veths and nftables rules in the network namespace they run in (each test's
//! own, once the harness gives daemons theirs).
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs, cgroup v2).

use berth_tests::*;
use serde_json::Value;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn load_fixture(d: &Daemon) {
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn networks_are_created_listed_inspected_removed_and_pruned_as_docker_shows_them() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();

    // The default bridge network and the predefined host and none.
    let ls = ok(d.docker(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]));
    assert_eq!(
        ls,
        "bridge bridge local\nhost host local\nnone null local\n"
    );
    let bridge = json(&ok(d.docker(&["network", "inspect", "bridge"])));
    let bridge = &bridge[0];
    assert_eq!(
        bridge["Options"]["com.docker.network.bridge.name"],
        "berth0"
    );
    let subnet = bridge["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .expect("subnet");
    assert!(
        subnet.starts_with("100.7"),
        "default pool is 100.72.0.0/13: {subnet}"
    );
    assert!(subnet.ends_with("/24"), "{subnet}");
    // `docker info` no longer says containers default to no network.
    let info = ok(d.docker(&["info", "--format", "{{json .Warnings}}"]));
    assert!(!info.contains("--network none"), "{info}");

    let id = ok(d.docker(&[
        "network",
        "create",
        "--subnet",
        "100.90.7.0/24",
        "--gateway",
        "100.90.7.254",
        "--ip-range",
        "100.90.7.128/25",
        "--internal",
        "--attachable",
        "--label",
        "tier=web",
        "front",
    ]));
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");

    let doc = json(&ok(d.docker(&["network", "inspect", "front"])));
    let n = &doc[0];
    assert_eq!(n["Name"], "front");
    assert_eq!(n["Id"], id);
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["EnableIPv4"], true);
    assert_eq!(n["EnableIPv6"], false);
    assert_eq!(
        n["IPAM"],
        json(
            r#"{"Driver":"default","Options":null,"Config":[{"Subnet":"100.90.7.0/24","IPRange":"100.90.7.128/25","Gateway":"100.90.7.254"}]}"#
        )
    );
    assert_eq!(n["Internal"], true);
    assert_eq!(n["Attachable"], true);
    assert_eq!(n["Ingress"], false);
    assert_eq!(n["ConfigFrom"], json(r#"{"Network":""}"#));
    assert_eq!(n["ConfigOnly"], false);
    assert_eq!(n["Containers"], json("{}"));
    assert_eq!(n["Labels"], json(r#"{"tier":"web"}"#));
    assert!(n["Created"].as_str().is_some_and(|c| c.starts_with("20")));
    // By ID prefix too, and with a template.
    let tmpl = ok(d.docker(&[
        "network",
        "inspect",
        &id[..10],
        "--format",
        "{{.Name}} {{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]));
    assert_eq!(tmpl, "front 100.90.7.254\n");

    // A network without a subnet takes the next /24 of the default pool.
    ok(d.docker(&["network", "create", "back"]));
    let back = ok(d.docker(&[
        "network",
        "inspect",
        "back",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
    ]));
    let (sub, gw) = back.trim().split_once(' ').expect(&back);
    assert!(sub.starts_with("100.7") && sub.ends_with(".0/24"), "{back}");
    assert_ne!(sub, subnet, "two networks got the same subnet");
    assert_eq!(gw, sub.replace(".0/24", ".1"), "{back}");

    // Filters.
    let ls = |args: &[&str]| {
        let mut a = vec!["network", "ls", "--format", "{{.Name}}"];
        a.extend_from_slice(args);
        ok(d.docker(&a))
    };
    assert_eq!(ls(&["--filter", "label=tier=web"]), "front\n");
    assert_eq!(ls(&["--filter", "type=custom"]), "back\nfront\n");
    assert_eq!(ls(&["--filter", "type=builtin"]), "bridge\nhost\nnone\n");
    assert_eq!(ls(&["--filter", "driver=null"]), "none\n");
    assert_eq!(ls(&["--filter", "dangling=true"]), "back\nfront\n");
    assert_eq!(ls(&["--filter", "name=fro"]), "front\n");
    assert_eq!(ls(&["--filter", &format!("id={}", &id[..12])]), "front\n");
    let q = ok(d.docker(&["network", "ls", "-q", "--filter", "name=front"]));
    assert_eq!(q, format!("{}\n", &id[..12]));
    let err = fails(d.docker(&["network", "ls", "--filter", "colour=red"]));
    assert!(err.contains("invalid filter 'colour'"), "{err}");

    // The berth CLI prints what the docker CLI prints.
    for args in [
        vec!["network", "ls"],
        vec!["network", "ls", "--no-trunc"],
        vec!["network", "ls", "-q"],
        vec!["network", "ls", "--filter", "type=custom"],
        vec![
            "network",
            "ls",
            "--format",
            "{{.ID}}: {{.Name}} {{.Labels}} {{.Internal}}",
        ],
        vec!["network", "ls", "--format", "json"],
        vec![
            "network",
            "ls",
            "--format",
            "table {{.Name}}\t{{.IPv4}}\t{{.IPv6}}",
        ],
        vec!["network", "inspect", "front", "bridge"],
        vec!["network", "inspect", "-f", "{{.Name}} {{.Driver}}", "front"],
    ] {
        assert_eq!(
            ok(d.berth(&args)),
            ok(d.docker(&args)),
            "berth {args:?} differs from docker"
        );
    }
    // berth creates and removes networks too.
    let bid = ok(d.berth(&["network", "create", "--subnet", "100.90.9.0/24", "side"]));
    assert_eq!(
        ok(d.docker(&["network", "inspect", "side", "--format", "{{.Id}}"])),
        bid
    );
    assert_eq!(ok(d.berth(&["network", "rm", "side"])), "side\n");

    // A duplicate name is refused, with Docker's words.
    let err = fails(d.docker(&["network", "create", "front"]));
    assert!(
        err.contains("network with name front already exists"),
        "{err}"
    );

    assert_eq!(
        ok(d.docker(&["network", "rm", "front", "back"])),
        "front\nback\n"
    );
    let err = fails(d.docker(&["network", "inspect", "front"]));
    assert!(err.contains("front"), "{err}");
    assert_eq!(ls(&["--filter", "type=custom"]), "");

    // Prune removes unused custom networks (matching the filter), never the default.
    ok(d.docker(&["network", "create", "--label", "tmp=1", "p1"]));
    ok(d.docker(&["network", "create", "p2"]));
    let out = ok(d.docker(&["network", "prune", "-f", "--filter", "label=tmp=1"]));
    assert_eq!(out, "Deleted Networks:\np1\n\n");
    let out = ok(d.berth(&["network", "prune", "-f"]));
    assert_eq!(out, "Deleted Networks:\np2\n\n");
    assert_eq!(ok(d.docker(&["network", "prune", "-f"])), "");
    assert_eq!(ls(&[]), "bridge\nhost\nnone\n");
}

#[test]
fn what_berth_cannot_do_with_networks_is_refused_clearly() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    ok(d.docker(&["network", "create", "--subnet", "100.90.20.0/24", "taken"]));
    for (args, want) in [
        (
            vec!["--subnet", "nope", "x1"],
            "Invalid subnet nope : invalid CIDR address: nope",
        ),
        (
            vec!["--subnet", "100.90.20.128/25", "x2"],
            "Pool overlaps with other one on this address space",
        ),
        (
            vec!["--subnet", "100.90.21.5/24", "x3"],
            "not a network address (did you mean 100.90.21.0/24?)",
        ),
        (
            vec!["-d", "macvlan", "x4"],
            "network x4: driver macvlan is not supported by berth (bridge only)",
        ),
        // An overlay network needs a swarm (Docker's 503 outside one).
        (
            vec!["-d", "overlay", "x4o"],
            "This node is not a swarm manager",
        ),
        (
            vec!["--ingress", "x5"],
            "ingress network (swarm) is not supported yet by berth",
        ),
        (
            vec!["--ipv6", "x6"],
            "--ipv6 needs an IPv6 --subnet (berth has no default IPv6 pool",
        ),
        (
            vec![
                "--subnet",
                "100.90.22.0/24",
                "--subnet",
                "100.90.23.0/24",
                "x7",
            ],
            "more than one IPAM config",
        ),
        (
            vec![
                "--subnet",
                "100.90.22.0/24",
                "--aux-address",
                "a=100.90.22.9",
                "x8",
            ],
            "auxiliary addresses (--aux-address)",
        ),
        (vec!["--config-only", "x9"], "config-only network"),
        (vec!["--scope", "swarm", "x10"], "network scope \"swarm\""),
        (
            vec!["-o", "com.example.x=1", "x11"],
            "driver option com.example.x",
        ),
        (
            vec!["host"],
            "host is a pre-defined network and cannot be created",
        ),
    ] {
        let mut a = vec!["network", "create"];
        a.extend_from_slice(&args);
        let err = fails(d.docker(&a));
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Nothing was created by the refused requests.
    let ls = ok(d.docker(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        "type=custom",
    ]));
    assert_eq!(ls, "taken\n");

    for n in ["bridge", "host", "none"] {
        let err = fails(d.docker(&["network", "rm", n]));
        assert!(
            err.contains(&format!(
                "{n} is a pre-defined network and cannot be removed"
            )),
            "{err}"
        );
    }
    let err = fails(d.docker(&["network", "rm", "nonexistent"]));
    assert!(err.contains("network nonexistent not found"), "{err}");

    load_fixture(&d);
    ok(d.docker(&[
        "create",
        "--name",
        "c1",
        "--network",
        "taken",
        "fixture/app:1",
    ]));
    // Links on connect are for user-defined networks (Docker's rule; links_docker_cli
    // covers them there).
    let err = fails(d.docker(&["network", "connect", "--link", "c1:x", "bridge", "c1"]));
    assert!(
        err.contains("links are only supported for user-defined networks"),
        "{err}"
    );
    // An IPv6 address on an IPv4-only network: refused by name (dual-stack networks
    // take one: net_traffic_docker_cli).
    let err = fails(d.docker(&["network", "connect", "--ip6", "fd00::5", "bridge", "c1"]));
    assert!(
        err.contains("--ip6 fd00::5: network bridge has no IPv6"),
        "{err}"
    );
    // A legacy link's target must run (links_docker_cli covers links).
    let err = fails(d.docker(&["run", "--rm", "--link", "c1:x", "fixture/app:1", "true"]));
    assert!(
        err.contains("Cannot link to a non running container: /c1 AS /"),
        "{err}"
    );
    // A network with a container on it stays.
    let err = fails(d.docker(&["network", "rm", "taken"]));
    assert!(err.contains("has active endpoints"), "{err}");
    assert!(err.contains("c1"), "{err}");
    // Static addresses only on networks with a user subnet, aliases not on the default.
    let err = fails(d.docker(&["create", "--ip", "100.72.0.77", "fixture/app:1"]));
    assert!(
        err.contains("user specified IP address is supported only"),
        "{err}"
    );
    let err = fails(d.docker(&[
        "create",
        "--network",
        "taken",
        "--ip",
        "100.90.99.7",
        "fixture/app:1",
    ]));
    assert!(err.contains("not in the subnet 100.90.20.0/24"), "{err}");
    let err = fails(d.berth(&["create", "--network-alias", "x", "fixture/app:1"]));
    assert!(err.contains("aliases"), "{err}");
}

#[test]
fn published_ports_show_in_docker_port_ps_and_inspect() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let udp = free_port();
    let id = ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1::80",
        "-p",
        &format!("127.0.0.1:{udp}:81/udp"),
        "--expose",
        "443",
        "fixture/app:1",
        "sleep 300",
    ]));
    let id = id.trim();

    // docker port: every mapping, and one.
    let port = ok(d.docker(&["port", "web"]));
    let lines: Vec<&str> = port.lines().collect();
    assert_eq!(lines.len(), 2, "{port}");
    let tcp_host_port: u16 = lines
        .iter()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no 80/tcp mapping: {port}"));
    assert!(tcp_host_port > 0);
    assert!(
        lines.contains(&format!("81/udp -> 127.0.0.1:{udp}").as_str()),
        "{port}"
    );
    assert_eq!(
        ok(d.docker(&["port", "web", "80/tcp"])),
        format!("127.0.0.1:{tcp_host_port}\n")
    );
    let err = fails(d.docker(&["port", "web", "443"]));
    assert!(
        err.contains("No public port '443' published for web"),
        "{err}"
    );
    let err = fails(d.berth(&["port", "web", "443/tcp"]));
    assert!(
        err.contains("No public port '443/tcp' published for web"),
        "{err}"
    );
    // berth port prints the same.
    assert_eq!(ok(d.berth(&["port", "web"])), port);
    assert_eq!(
        ok(d.berth(&["port", "web", "81/udp"])),
        format!("127.0.0.1:{udp}\n")
    );

    // docker ps: published and exposed-only ports.
    let ps = ok(d.docker(&["ps", "--format", "{{.Names}}|{{.Ports}}|{{.Networks}}"]));
    assert!(ps.starts_with("web|"), "{ps}");
    assert!(
        ps.contains(&format!("127.0.0.1:{tcp_host_port}->80/tcp")),
        "{ps}"
    );
    assert!(ps.contains(&format!("127.0.0.1:{udp}->81/udp")), "{ps}");
    assert!(ps.contains("443/tcp"), "{ps}");
    assert!(ps.trim_end().ends_with("|bridge"), "{ps}");
    assert_eq!(
        ok(d.berth(&["ps", "--format", "{{.Ports}}"])),
        ok(d.docker(&["ps", "--format", "{{.Ports}}"]))
    );
    // The publish, expose and network filters of docker ps.
    let names = |f: &str| ok(d.docker(&["ps", "--format", "{{.Names}}", "--filter", f]));
    assert_eq!(names(&format!("publish={tcp_host_port}")), "web\n");
    assert_eq!(names(&format!("publish={udp}/udp")), "web\n");
    assert_eq!(names(&format!("publish={udp}/tcp")), "");
    assert_eq!(names("expose=443"), "web\n");
    assert_eq!(names("expose=444"), "");
    assert_eq!(names("network=bridge"), "web\n");
    assert_eq!(names("network=none"), "");

    // Inspect: bindings as asked, ports as given, the endpoint on the default network.
    let doc = json(&ok(d.docker(&["inspect", "web"])));
    let c = &doc[0];
    // No --network given: Docker's `default` (the default bridge network).
    assert_eq!(c["HostConfig"]["NetworkMode"], "default");
    assert_eq!(
        c["HostConfig"]["PortBindings"]["80/tcp"],
        json(r#"[{"HostIp":"127.0.0.1","HostPort":""}]"#)
    );
    assert_eq!(c["HostConfig"]["PublishAllPorts"], false);
    let ports = &c["NetworkSettings"]["Ports"];
    assert_eq!(
        ports["80/tcp"],
        json(&format!(
            r#"[{{"HostIp":"127.0.0.1","HostPort":"{tcp_host_port}"}}]"#
        ))
    );
    assert_eq!(ports["443/tcp"], Value::Null);
    assert!(ports.get("443/tcp").is_some(), "{ports}");
    assert!(c["Config"]["ExposedPorts"].get("443/tcp").is_some());
    let ns = &c["NetworkSettings"];
    let ep = &ns["Networks"]["bridge"];
    let ip = ep["IPAddress"].as_str().expect("IPAddress");
    assert!(ip.starts_with("100.7"), "{ep}");
    assert_eq!(ns["IPAddress"], ip, "legacy top-level address");
    assert_eq!(ns["Gateway"], ep["Gateway"]);
    assert_eq!(ns["MacAddress"], ep["MacAddress"]);
    assert_eq!(ns["EndpointID"], ep["EndpointID"]);
    assert_eq!(ep["IPPrefixLen"], 24);
    assert_eq!(
        ns["SandboxKey"].as_str().map(|k| k.ends_with(id)),
        Some(true)
    );
    let bridge_id = ok(d.docker(&["network", "inspect", "bridge", "--format", "{{.Id}}"]));
    assert_eq!(ep["NetworkID"], bridge_id.trim());
    // The network lists the container.
    let members = json(&ok(d.docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{json .Containers}}",
    ])));
    assert_eq!(members[id]["Name"], "web");
    assert_eq!(members[id]["IPv4Address"], format!("{ip}/24"));

    // -P publishes every exposed port on a free host port.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "all",
        "-P",
        "--expose",
        "7000",
        "fixture/app:1",
        "sleep 300",
    ]));
    let all = ok(d.docker(&["port", "all", "7000"]));
    assert!(all.starts_with("0.0.0.0:"), "{all}");

    // Stopped: the network entry stays, without addresses; no ports.
    ok(d.docker(&["stop", "-t", "1", "web"]));
    let doc = json(&ok(d.docker(&["inspect", "web"])));
    let ns = &doc[0]["NetworkSettings"];
    assert_eq!(ns["Ports"], json("{}"));
    assert_eq!(ns["Networks"]["bridge"]["IPAddress"], "");
    assert_eq!(ns["Networks"]["bridge"]["NetworkID"], bridge_id.trim());
    assert_eq!(ns["SandboxKey"], "");
    assert_eq!(ok(d.docker(&["port", "web"])), "");
    let ps = ok(d.docker(&["ps", "-a", "--filter", "name=web", "--format", "{{.Ports}}"]));
    assert_eq!(ps, "\n");
}

#[test]
fn containers_connect_disconnect_and_get_their_etc_files() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    ok(d.docker(&["network", "create", "--subnet", "100.90.8.0/24", "app"]));
    ok(d.docker(&["network", "create", "--subnet", "100.90.9.0/24", "other"]));
    let id = ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "app",
        "--network-alias",
        "db",
        "--ip",
        "100.90.8.50",
        "fixture/app:1",
        "sleep 300",
    ]));
    let id = id.trim();
    let ep = json(&ok(d.docker(&[
        "inspect",
        "c1",
        "--format",
        "{{json .NetworkSettings.Networks.app}}",
    ])));
    assert_eq!(ep["IPAddress"], "100.90.8.50");
    assert_eq!(ep["IPAMConfig"], json(r#"{"IPv4Address":"100.90.8.50"}"#));
    // Docker 20.10 appends the short ID on a user-defined network.
    assert_eq!(ep["Aliases"], serde_json::json!(["db", &id[..12]]));
    assert_eq!(ep["Gateway"], "100.90.8.1");
    let dns = ep["DNSNames"].as_array().expect("DNSNames");
    for want in ["c1", "db", &id[..12]] {
        assert!(dns.iter().any(|n| n == want), "{want} not in {dns:?}");
    }
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "c1",
            "--format",
            "{{.HostConfig.NetworkMode}} {{.NetworkSettings.IPAddress}}"
        ])),
        "app \n",
        "the legacy top-level address is the default network's"
    );

    // Connect to a second network while running, then disconnect.
    ok(d.docker(&["network", "connect", "--alias", "cache", "other", "c1"]));
    let nets = ok(d.docker(&[
        "inspect",
        "c1",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
    ]));
    assert!(
        nets.starts_with("app=100.90.8.50 other=100.90.9."),
        "{nets}"
    );
    let members = ok(d.docker(&[
        "network",
        "inspect",
        "other",
        "--format",
        "{{range .Containers}}{{.Name}}{{end}}",
    ]));
    assert_eq!(members, "c1\n");
    assert_eq!(
        ok(d.docker(&["ps", "--format", "{{.Names}}", "--filter", "network=other"])),
        "c1\n"
    );
    let err = fails(d.docker(&["network", "connect", "other", "c1"]));
    assert!(err.contains("already exists in network other"), "{err}");
    ok(d.berth(&["network", "disconnect", "other", "c1"]));
    let nets = ok(d.docker(&[
        "inspect",
        "c1",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    ]));
    assert_eq!(nets, "app \n");
    let err = fails(d.docker(&["network", "disconnect", "other", "c1"]));
    assert!(err.contains("is not connected to network other"), "{err}");
    // berth connects too (a stopped container keeps the network for its next start).
    ok(d.docker(&[
        "create",
        "--name",
        "c2",
        "--network",
        "none",
        "fixture/app:1",
    ]));
    let none_id = ok(d.docker(&["network", "inspect", "none", "--format", "{{.Id}}"]));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "c2",
            "--format",
            "{{.HostConfig.NetworkMode}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.NetworkID}}{{end}}",
        ])),
        format!("none none={none_id}")
    );
    let err = fails(d.berth(&["network", "connect", "app", "c2"]));
    assert!(
        err.contains("cannot be connected to other networks"),
        "{err}"
    );
    let c3 = ok(d.docker(&["create", "--name", "c3", "fixture/app:1"]));
    ok(d.berth(&["network", "connect", "--alias", "x3", "app", "c3"]));
    let nets = ok(d.docker(&[
        "inspect",
        "c3",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.Aliases}}:{{$v.IPAddress}} {{end}}",
    ]));
    assert_eq!(
        nets,
        format!("app:[x3 {}]: bridge:[]: \n", &c3.trim()[..12])
    );

    // berth run takes the same network flags.
    let c4id = ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "c4",
        "--network",
        "app",
        "--network-alias",
        "c4alias",
        "--ip",
        "100.90.8.60",
        "-p",
        "127.0.0.1::80",
        "--add-host",
        "h:100.90.8.7",
        "fixture/app:1",
        "sleep 300",
    ]));
    let c4 = ok(d.docker(&[
        "inspect",
        "c4",
        "--format",
        "{{.NetworkSettings.Networks.app.IPAddress}} {{.NetworkSettings.Networks.app.Aliases}} {{.HostConfig.ExtraHosts}}",
    ]));
    assert_eq!(
        c4,
        format!(
            "100.90.8.60 [c4alias {}] [h:100.90.8.7]\n",
            &c4id.trim()[..12]
        )
    );
    assert!(ok(d.berth(&["port", "c4", "80"])).starts_with("127.0.0.1:"));
    // Both CLIs show the network's members alike.
    assert_eq!(
        ok(d.berth(&["network", "inspect", "app"])),
        ok(d.docker(&["network", "inspect", "app"]))
    );
    let members = ok(d.docker(&[
        "network",
        "inspect",
        "app",
        "--format",
        "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}",
    ]));
    assert!(members.contains("c1=100.90.8.50/24"), "{members}");
    assert!(members.contains("c4=100.90.8.60/24"), "{members}");

    // /etc/hosts, resolv.conf and hostname: files of the container's directory,
    // shown by inspect and written from --add-host, --dns-search, --hostname.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--hostname",
        "h1",
        "--domainname",
        "example.test",
        "--add-host",
        "db.local:100.90.8.99",
        "--dns-search",
        "corp.test",
        "--dns-option",
        "ndots:2",
        "fixture/app:1",
        "cat /etc/hosts /etc/resolv.conf /etc/hostname",
    ]));
    assert!(out.contains("100.90.8.99\tdb.local\n"), "{out}");
    assert!(out.contains("h1.example.test h1\n"), "{out}");
    assert!(
        out.contains("nameserver 100.90.8.1\n"),
        "embedded DNS: {out}"
    );
    assert!(out.contains("search corp.test\n"), "{out}");
    assert!(out.contains("options ndots:2\n"), "{out}");
    assert!(out.ends_with("h1\n"), "{out}");
    let doc = json(&ok(d.docker(&["inspect", "c1"])));
    let c = &doc[0];
    for key in ["HostsPath", "ResolvConfPath", "HostnamePath"] {
        let p = c[key].as_str().unwrap_or_else(|| panic!("{key}"));
        assert!(p.contains(id), "{key} {p}");
        assert!(std::path::Path::new(p).is_file(), "{key} {p}");
    }
    let cfg = ok(d.docker(&[
        "create",
        "--dns",
        "9.9.9.9",
        "--dns-search",
        "a.test",
        "--dns-option",
        "ndots:1",
        "--add-host",
        "x:1.2.3.4",
        "--domainname",
        "d.test",
        "fixture/app:1",
    ]));
    let hc = ok(d.docker(&[
        "inspect",
        cfg.trim(),
        "--format",
        "{{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}} {{json .HostConfig.ExtraHosts}} {{.Config.Domainname}}",
    ]));
    assert_eq!(
        hc,
        "[\"9.9.9.9\"] [\"a.test\"] [\"ndots:1\"] [\"x:1.2.3.4\"] d.test\n"
    );
    let err = fails(d.docker(&["create", "--add-host", "x:nope", "fixture/app:1"]));
    assert!(err.contains("nope"), "{err}");
}
