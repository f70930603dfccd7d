//! Legacy links (`--link NAME[:ALIAS]`) through the real docker CLI: on the default
//! bridge the linking container gets the target's address in /etc/hosts and Docker's
//! link variables in its environment, inspect shows `/target:/self/alias`, the target
//! carries the link's name, `docker rm --link` removes only the link, a stopped or
//! missing target is refused in Docker's words, and a restarted target's new address
//! reaches the linking container's /etc/hosts. On a user-defined network a link is a
//! DNS alias only the linking container resolves.
//!
//! Each daemon runs in a network namespace of its own (see the harness).

use std::net::Ipv4Addr;

use berth_tests::*;

/// Removes every container when a test ends, pass or fail.
struct RemoveContainers<'a>(&'a Daemon);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let ids = String::from_utf8_lossy(&self.0.docker(&["ps", "-aq"]).stdout).into_owned();
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.split_whitespace());
        if args.len() > 3 {
            let _ = self.0.docker(&args);
        }
    }
}

fn inspect(d: &Daemon, obj: &str, format: &str) -> String {
    ok(d.docker(&["inspect", "--format", format, obj]))
        .trim()
        .to_string()
}

fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(d.docker(&["exec", name, "sh", "-c", script]))
}

fn bridge_ip(d: &Daemon, name: &str) -> String {
    let ip = inspect(d, name, "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    ip.parse::<Ipv4Addr>()
        .unwrap_or_else(|_| panic!("{name}: no bridge address: {ip:?}"));
    ip
}

fn sleeper(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["fixture/app:1", "sleep 300"]);
    ok(d.docker(&a)).trim().to_string()
}

#[test]
fn legacy_links_give_hosts_env_names_and_are_removed_by_rm_link() {
    let Some(d) = docker_cli_daemon() else { return };
    let _cleanup = RemoveContainers(&d);
    let db = sleeper(
        &d,
        &[
            "--name",
            "db",
            "-e",
            "DB_USER=admin",
            "--expose",
            "5432",
            "--expose",
            "9053/udp",
        ],
    );
    let db_ip = bridge_ip(&d, "db");
    sleeper(
        &d,
        &[
            "--name",
            "web",
            "--link",
            "db:database",
            "--link",
            "db",
            "-e",
            "OWN=1",
        ],
    );

    // /etc/hosts: the alias, the target's hostname (its short ID) and its name.
    let hosts = sh(&d, "web", "cat /etc/hosts");
    let short = &db[..12];
    assert!(
        hosts.contains(&format!("{db_ip}\tdatabase {short} db\n")),
        "{hosts}"
    );
    // Linked under its own name: the name is not repeated.
    assert!(hosts.contains(&format!("{db_ip}\tdb {short}\n")), "{hosts}");

    // The environment Docker gives a link (not in Config.Env).
    let env = sh(&d, "web", "env");
    for want in [
        format!("DATABASE_PORT=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP_ADDR={db_ip}"),
        "DATABASE_PORT_5432_TCP_PORT=5432".to_string(),
        "DATABASE_PORT_5432_TCP_PROTO=tcp".to_string(),
        format!("DATABASE_PORT_9053_UDP=udp://{db_ip}:9053"),
        "DATABASE_NAME=/web/database".to_string(),
        "DATABASE_ENV_DB_USER=admin".to_string(),
        "DB_NAME=/web/db".to_string(),
        "DB_ENV_DB_USER=admin".to_string(),
        "OWN=1".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in\n{env}");
    }
    assert!(!env.contains("DATABASE_ENV_PATH"), "{env}");
    // An exec sees them too, as in Docker.
    assert_eq!(sh(&d, "web", "echo $DATABASE_NAME"), "/web/database\n");
    let config_env = inspect(&d, "web", "{{json .Config.Env}}");
    assert!(!config_env.contains("DATABASE_"), "{config_env}");

    // Inspect and the target's names.
    assert_eq!(
        inspect(&d, "web", "{{json .HostConfig.Links}}"),
        r#"["/db:/web/database","/db:/web/db"]"#
    );
    assert_eq!(inspect(&d, "db", "{{json .HostConfig.Links}}"), "null");
    let names = ok(d.docker(&["ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]));
    let db_row = names
        .lines()
        .find(|l| l.starts_with(&db))
        .unwrap_or_else(|| panic!("{names}"));
    let mut listed: Vec<&str> = db_row
        .split_whitespace()
        .nth(1)
        .expect("names")
        .split(',')
        .collect();
    listed.sort();
    assert_eq!(listed, ["db", "web/database", "web/db"], "{db_row}");
    // Without --no-trunc the docker CLI shows only the container's own name.
    let short_names = ok(d.docker(&[
        "ps",
        "--filter",
        &format!("id={db}"),
        "--format",
        "{{.Names}}",
    ]));
    assert_eq!(short_names, "db\n");
    // The name filter matches a container's own name, not a link's (Docker 20.10's, as
    // tests/sdk/links.py shows against it).
    let by_link = ok(d.docker(&["ps", "--filter", "name=web/database", "-q"]));
    assert_eq!(by_link, "");
    // The link's name finds the target.
    assert_eq!(inspect(&d, "web/database", "{{.Id}}"), db);

    // A restarted target gets its address back into the linking container's hosts.
    ok(d.docker(&["stop", "-t", "0", "db"]));
    sleeper(&d, &["--name", "filler"]);
    ok(d.docker(&["start", "db"]));
    let new_ip = bridge_ip(&d, "db");
    let hosts = sh(&d, "web", "cat /etc/hosts");
    assert!(
        hosts.contains(&format!("{new_ip}\tdatabase {short} db\n")),
        "{new_ip}: {hosts}"
    );

    // `docker rm --link` removes the link, not a container.
    ok(d.docker(&["rm", "--link", "/web/database"]));
    assert_eq!(
        inspect(&d, "web", "{{json .HostConfig.Links}}"),
        r#"["/db:/web/db"]"#
    );
    assert_eq!(inspect(&d, "db", "{{.State.Running}}"), "true");
    let hosts = sh(&d, "web", "cat /etc/hosts");
    assert!(!hosts.contains("database"), "{hosts}");
    assert!(
        hosts.contains(&format!("{new_ip}\tdb {short}\n")),
        "{hosts}"
    );
    let err = fails(d.docker(&["rm", "--link", "db"]));
    assert!(
        err.contains("cannot remove the default link name of the container"),
        "{err}"
    );
    let err = fails(d.docker(&["rm", "--link", "web/nope"]));
    assert!(err.contains("No such container: web/nope"), "{err}");

    // Removing the target takes the link with it.
    ok(d.docker(&["rm", "-f", "db"]));
    assert_eq!(inspect(&d, "web", "{{json .HostConfig.Links}}"), "null");
}

#[test]
fn links_need_a_running_target_and_refuse_host_networking() {
    let Some(d) = docker_cli_daemon() else { return };
    let _cleanup = RemoveContainers(&d);
    ok(d.docker(&["create", "--name", "idle", "fixture/app:1", "sleep 300"]));
    ok(d.docker(&[
        "create",
        "--name",
        "late",
        "--link",
        "idle:i",
        "fixture/app:1",
        "sleep 300",
    ]));
    let err = fails(d.docker(&["start", "late"]));
    assert!(
        err.contains("Cannot link to a non running container: /idle AS /late/i"),
        "{err}"
    );
    // Start order: once the target runs, so does the linking container.
    ok(d.docker(&["start", "idle"]));
    ok(d.docker(&["start", "late"]));
    assert_eq!(inspect(&d, "late", "{{.State.Running}}"), "true");

    let err = fails(d.docker(&["create", "--link", "nope:x", "fixture/app:1", "true"]));
    assert!(
        err.contains("could not get container for nope") && err.contains("No such container"),
        "{err}"
    );
    let err = fails(d.docker(&[
        "create",
        "--network",
        "host",
        "--link",
        "idle:x",
        "fixture/app:1",
        "true",
    ]));
    assert!(err.contains("can't be used with links"), "{err}");
}

/// Whether `container` resolves `name` (busybox nslookup), and to which addresses.
fn lookup(d: &Daemon, container: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
    let out = d.docker(&["exec", container, "sh", "-c", &format!("nslookup {name}")]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
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

#[test]
fn links_on_a_user_network_are_dns_aliases_of_the_linking_container() {
    let Some(d) = docker_cli_daemon() else { return };
    let _cleanup = RemoveContainers(&d);
    ok(d.docker(&["network", "create", "front"]));
    sleeper(&d, &["--name", "srv", "--network", "front"]);
    let srv_ip: Ipv4Addr = inspect(&d, "srv", "{{.NetworkSettings.Networks.front.IPAddress}}")
        .parse()
        .expect("address");
    sleeper(
        &d,
        &[
            "--name",
            "client",
            "--network",
            "front",
            "--link",
            "srv:backend",
        ],
    );
    sleeper(&d, &["--name", "other", "--network", "front"]);
    assert_eq!(lookup(&d, "client", "backend"), Some(vec![srv_ip]));
    assert_eq!(lookup(&d, "client", "srv"), Some(vec![srv_ip]));
    // Scoped to the linking container.
    assert_eq!(lookup(&d, "other", "backend"), None);
    assert_eq!(lookup(&d, "other", "srv"), Some(vec![srv_ip]));
    assert_eq!(
        inspect(
            &d,
            "client",
            "{{json .NetworkSettings.Networks.front.Links}}"
        ),
        r#"["srv:backend"]"#
    );
    // No legacy link on a user-defined network: nothing in /etc/hosts or HostConfig.
    assert_eq!(inspect(&d, "client", "{{json .HostConfig.Links}}"), "null");
    let hosts = sh(&d, "client", "cat /etc/hosts");
    assert!(!hosts.contains("backend"), "{hosts}");
    // `network connect --link`: the same, given to a running container on a network it
    // joins; still its own.
    ok(d.docker(&["network", "create", "back"]));
    ok(d.docker(&["network", "connect", "back", "srv"]));
    let srv_back: Ipv4Addr = inspect(&d, "srv", "{{.NetworkSettings.Networks.back.IPAddress}}")
        .parse()
        .expect("address");
    ok(d.docker(&["network", "connect", "--link", "srv:store", "back", "other"]));
    assert_eq!(lookup(&d, "other", "store"), Some(vec![srv_back]));
    assert_eq!(lookup(&d, "client", "store"), None);
    assert_eq!(
        inspect(&d, "other", "{{json .NetworkSettings.Networks.back.Links}}"),
        r#"["srv:store"]"#
    );
    // On the default bridge such a link would do nothing: Docker 20.10 records it and
    // ignores it; berth refuses it by name (docs/TESTING.md, differences).
    let out = d.docker(&[
        "network", "connect", "--link", "srv:bad", "bridge", "client",
    ]);
    if against_docker().is_none() {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("links are only supported for user-defined networks"),
            "{err}"
        );
    }
}
