//! Swarm mode on one host through the real docker CLI: `docker swarm init` makes the
//! daemon the one manager of a swarm of its own (Docker's output, `docker info`, `docker
//! node ls`), kept across a daemon SIGKILL; update, token rotation and node availability
//! work as Docker's; joining another swarm, removing the one node and `leave` without
//! `--force` are refused by name; `leave --force` ends it.

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

#[test]
fn swarm_init_makes_this_daemon_the_one_manager_until_it_leaves() {
    if !docker_available() {
        return;
    }
    let mut d = Daemon::start();
    // Outside a swarm: Docker's 503s, word for word.
    let err = fails(d.docker(&["node", "ls"]));
    assert!(err.contains("This node is not a swarm manager."), "{err}");
    let err = fails(d.docker(&["swarm", "leave"]));
    assert!(err.contains("This node is not part of a swarm"), "{err}");

    let out = ok(d.docker(&["swarm", "init"]));
    assert!(
        out.starts_with("Swarm initialized: current node ("),
        "{out}"
    );
    assert!(out.contains("is now a manager."), "{out}");
    assert!(out.contains("docker swarm join --token SWMTKN-1-"), "{out}");
    let node_id = ok(d.docker(&["info", "-f", "{{.Swarm.NodeID}}"]))
        .trim()
        .to_string();
    assert_eq!(node_id.len(), 25, "{node_id}");
    assert!(out.contains(&format!("current node ({node_id})")), "{out}");
    assert_eq!(
        ok(d.docker(&[
            "info",
            "-f",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} {{.Swarm.Managers}}"
        ]))
        .trim(),
        "active true 1 1"
    );
    let ls = ok(d.docker(&[
        "node",
        "ls",
        "--format",
        "{{.ID}} {{.Self}} {{.Status}} {{.Availability}} {{.ManagerStatus}}",
    ]));
    assert_eq!(ls.trim(), format!("{node_id} true Ready Active Leader"));
    assert_eq!(
        ok(d.docker(&[
            "node",
            "inspect",
            "self",
            "-f",
            "{{.Spec.Role}} {{.ManagerStatus.Leader}}"
        ]))
        .trim(),
        "manager true"
    );

    // Refused by name: another swarm, a second init, services, removing the node,
    // leaving without --force.
    let err = fails(d.docker(&["swarm", "join", "--token", "SWMTKN-1-x-y", "127.0.0.1:2377"]));
    assert!(
        err.contains("joining another swarm is not supported"),
        "{err}"
    );
    let err = fails(d.docker(&["swarm", "init"]));
    assert!(
        err.contains("This node is already part of a swarm."),
        "{err}"
    );
    // None of its secrets and configs yet (`secrets_docker_cli.rs` has the rest).
    assert_eq!(ok(d.docker(&["secret", "ls", "-q"])), "");
    assert_eq!(ok(d.docker(&["config", "ls", "-q"])), "");
    let err = fails(d.docker(&["node", "rm", &node_id]));
    assert!(err.contains("only manager"), "{err}");
    let err = fails(d.docker(&["swarm", "leave"]));
    assert!(
        err.contains("Use `--force` to ignore this message."),
        "{err}"
    );
    let err = fails(d.docker(&["swarm", "init", "--autolock"]));
    assert!(
        err.contains("swarm autolock (--autolock) is not supported"),
        "{err}"
    );

    // Update (the spec's version index is checked by the CLI's read-modify-write),
    // token rotation, the node's availability.
    ok(d.docker(&["swarm", "update", "--task-history-limit", "2"]));
    assert_eq!(
        ok(d.docker(&[
            "info",
            "-f",
            "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}}"
        ]))
        .trim(),
        "2"
    );
    let before = ok(d.docker(&["swarm", "join-token", "-q", "worker"]));
    let rotated = ok(d.docker(&["swarm", "join-token", "--rotate", "-q", "worker"]));
    assert_ne!(before.trim(), rotated.trim());
    assert_eq!(
        ok(d.docker(&["swarm", "join-token", "-q", "worker"])).trim(),
        rotated.trim()
    );
    ok(d.docker(&[
        "node",
        "update",
        "--availability",
        "drain",
        "--label-add",
        "zone=a",
        "self",
    ]));
    assert_eq!(
        ok(d.docker(&[
            "node",
            "inspect",
            "self",
            "-f",
            "{{.Spec.Availability}} {{.Spec.Labels.zone}}"
        ]))
        .trim(),
        "drain a"
    );

    // The swarm is the state root's: a SIGKILL of the daemon keeps it.
    d.restart_after_sigkill();
    assert_eq!(
        ok(d.docker(&["info", "-f", "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}"])).trim(),
        format!("active {node_id}")
    );

    ok(d.docker(&["swarm", "leave", "--force"]));
    assert_eq!(
        ok(d.docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"])).trim(),
        "inactive"
    );
    let err = fails(d.docker(&["node", "ls"]));
    assert!(err.contains("This node is not a swarm manager."), "{err}");
    // A new swarm is a new cluster and node.
    ok(d.docker(&["swarm", "init"]));
    let again = ok(d.docker(&["info", "-f", "{{.Swarm.NodeID}}"]));
    assert_ne!(again.trim(), node_id);
    ok(d.docker(&["swarm", "leave", "--force"]));
}
