//! berth's own `swarm` and `service` verbs against a berth daemon: `swarm init` prints
//! the node, `service create` waits until the replicas run, `ls`/`ps`/`inspect` show
//! docker's columns, `scale` up and down, a rolling `update` and `rollback` wait until
//! they complete, an update whose tasks fail rolls back and the command says so, `rm`
//! and `swarm leave --force` take the tasks away.
//!
//! Every test leaves the swarm and removes its containers (they outlive the daemon).

use std::time::{Duration, Instant};

use berth_tests::*;

/// A daemon in a swarm with fixture/app:1 (entrypoint `/bin/sh -c`) loaded; the swarm is
/// left and every container removed when the test ends, pass or fail.
struct Env {
    d: Daemon,
}

impl Env {
    fn start() -> Env {
        let d = Daemon::start();
        let archive = fixtures().join("app-docker-save.tar");
        ok(d.berth(&["load", "-i", archive.to_str().expect("path")]));
        Env { d }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.d.berth(&["swarm", "leave", "--force"]);
        let ids = String::from_utf8_lossy(&self.d.berth(&["ps", "-aq"]).stdout).into_owned();
        for id in ids.split_whitespace() {
            let _ = self.d.berth(&["rm", "-f", id]);
        }
    }
}

/// Polls `f` until it returns true (the reconcile loop acts on its own).
fn eventually(what: &str, d: &Daemon, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not reached in 60 s\n{}", d.log());
}

/// The running containers of service `name` (its tasks), as `berth ps` lists them.
fn task_containers(d: &Daemon, name: &str) -> Vec<String> {
    ok(d.berth(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ]))
    .lines()
    .map(str::to_string)
    .collect()
}

/// The command line of each running task of `name` (what its containers run).
fn task_args(d: &Daemon, name: &str) -> Vec<String> {
    let mut out: Vec<String> = task_containers(d, name)
        .iter()
        .filter_map(|c| {
            // A container may be gone between the listing and the inspect.
            let o = d.berth(&["inspect", c, "--format", "{{json .Config.Cmd}}"]);
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .collect();
    out.sort();
    out
}

fn service_field(d: &Daemon, name: &str, format: &str) -> String {
    ok(d.berth(&["service", "inspect", name, "--format", format]))
        .trim()
        .to_string()
}

#[test]
fn berth_service_verbs_create_scale_update_roll_back_and_remove() {
    if against_docker().is_some() {
        eprintln!("berth's own CLI only; skipping against Docker");
        return;
    }
    let env = Env::start();
    let d = &env.d;

    let init = ok(d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
    let node = init
        .trim()
        .strip_prefix("Swarm initialized: current node (")
        .and_then(|r| r.strip_suffix(") is now a manager."))
        .unwrap_or_else(|| panic!("swarm init printed: {init}"));
    assert_eq!(node.len(), 25, "{init}");

    // Create: returns once both replicas run, the ID first.
    let out = ok(d.berth(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--restart-delay",
        "200ms",
        "--stop-grace-period",
        "2s",
        "--label",
        "tier=front",
        // Not about health: the image's probe, timing out on a loaded host, would have
        // a task replaced (one more row of `service ps`).
        "--no-healthcheck",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let id = out.lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(id.len(), 25, "service ID: {out}");
    assert!(out.contains("overall progress: 2 out of 2 tasks"), "{out}");
    assert!(
        out.trim_end().ends_with("verify: Service converged"),
        "{out}"
    );
    assert_eq!(task_containers(d, "web").len(), 2);
    assert_eq!(
        task_args(d, "web"),
        ["[\"sleep 1000\"]", "[\"sleep 1000\"]"]
    );

    // ls: docker's columns; -q the short ID; filters reach the daemon.
    let ls = ok(d.berth(&["service", "ls"]));
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        "{ls}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [&id[..12], "web", "replicated", "2/2", "fixture/app:1"],
        "{ls}"
    );
    assert_eq!(ok(d.berth(&["service", "ls", "-q"])).trim(), &id[..12]);
    assert_eq!(
        ok(d.berth(&["service", "ls", "-q", "--filter", "label=tier=back"])).trim(),
        ""
    );
    assert_eq!(
        ok(d.berth(&[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}"
        ]))
        .trim(),
        "web replicated 2/2 fixture/app:1"
    );

    // ps: two running tasks on this node.
    let ps = ok(d.berth(&["service", "ps", "web"]));
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{ps}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0].len(), 12, "{ps}");
        assert_eq!(r[1], format!("web.{}", i + 1), "{ps}");
        assert_eq!(r[2], "fixture/app:1", "{ps}");
        assert_eq!(&r[4..6], ["Running", "Running"], "{ps}");
        assert!(r[6..].join(" ").ends_with("ago"), "{ps}");
    }
    let ps_q = ok(d.berth(&["service", "ps", "-q", "web"]));
    assert_eq!(ps_q.lines().count(), 2, "{ps_q}");
    assert!(ps_q.lines().all(|l| l.len() == 25), "{ps_q}");
    let err = fails(d.berth(&["service", "ps", "nosuch"]));
    assert!(err.contains("no such service: nosuch"), "{err}");

    // inspect: the daemon's document, as an array or through a template.
    let doc: serde_json::Value =
        serde_json::from_str(&ok(d.berth(&["service", "inspect", "web"]))).expect("JSON");
    assert_eq!(doc[0]["ID"], id.as_str());
    assert_eq!(
        doc[0]["Spec"]["TaskTemplate"]["RestartPolicy"]["Delay"],
        200_000_000
    );
    assert_eq!(
        service_field(
            d,
            "web",
            "{{.Spec.Name}} {{.Spec.Labels.tier}} {{.Spec.Mode.Replicated.Replicas}}"
        ),
        "web front 2"
    );
    let pretty = ok(d.berth(&["service", "inspect", "--pretty", "web"]));
    assert!(pretty.contains(" Replicas:\t2"), "{pretty}");

    // Scale up and down: the tasks that run stay.
    let before = task_containers(d, "web");
    let out = ok(d.berth(&["service", "scale", "web=3"]));
    assert!(out.starts_with("web scaled to 3\n"), "{out}");
    let after = task_containers(d, "web");
    assert_eq!(after.len(), 3, "{out}");
    assert!(
        before.iter().all(|c| after.contains(c)),
        "{before:?} {after:?}"
    );
    ok(d.berth(&["service", "scale", "web=1"]));
    eventually("one replica", d, || task_containers(d, "web").len() == 1);
    assert_eq!(
        service_field(d, "web", "{{.Spec.Mode.Replicated.Replicas}}"),
        "1"
    );

    // A rolling update (and two replicas again): the command waits until it completed.
    let out = ok(d.berth(&[
        "service",
        "update",
        "--replicas",
        "2",
        "--args",
        "'sleep 999'",
        "web",
    ]));
    assert_eq!(out.lines().next(), Some("web"), "{out}");
    assert_eq!(
        service_field(d, "web", "{{.UpdateStatus.State}}"),
        "completed"
    );
    eventually("the new command runs", d, || {
        task_args(d, "web") == ["[\"sleep 999\"]", "[\"sleep 999\"]"]
    });

    // Rollback: the previous spec (one replica of the old command) is current again.
    let out = ok(d.berth(&["service", "rollback", "web"]));
    assert_eq!(out.lines().next(), Some("web"), "{out}");
    assert_eq!(
        service_field(d, "web", "{{.UpdateStatus.State}}"),
        "rollback_completed"
    );
    assert_eq!(
        service_field(
            d,
            "web",
            "{{json .Spec.TaskTemplate.ContainerSpec.Args}} {{.Spec.Mode.Replicated.Replicas}}"
        ),
        "[\"sleep 1000\"] 1"
    );
    eventually("the old command runs", d, || {
        task_args(d, "web") == ["[\"sleep 1000\"]"]
    });

    // An update whose tasks fail rolls back by itself; the command fails and says so.
    let err = fails(d.berth(&[
        "service",
        "update",
        "--args",
        "'exit 1'",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "3s",
        "web",
    ]));
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(
        service_field(d, "web", "{{.UpdateStatus.State}}"),
        "rollback_completed"
    );
    assert_eq!(
        service_field(d, "web", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}"),
        "[\"sleep 1000\"]"
    );
    eventually("the previous tasks run", d, || {
        task_args(d, "web") == ["[\"sleep 1000\"]"]
    });

    // --to: any kept revision by number (berth's; `inspect` lists them), with the image
    // ID it recorded; a revision that is not kept is refused by name.
    assert_eq!(
        service_field(d, "web", "{{.Revision}} {{len .Revisions}}"),
        "1 3"
    );
    let err = fails(d.berth(&["service", "rollback", "--to", "9", "web"]));
    assert!(err.contains("revision 9 is not kept"), "{err}");
    ok(d.berth(&["service", "rollback", "--to", "2", "web"]));
    assert_eq!(service_field(d, "web", "{{.Revision}}"), "2");
    // (Revision 2 is the update's: two replicas of the new command.)
    eventually("revision 2's command runs", d, || {
        task_args(d, "web") == ["[\"sleep 999\"]", "[\"sleep 999\"]"]
    });

    // Remove: the tasks go; the service is no more.
    assert_eq!(ok(d.berth(&["service", "rm", "web"])), "web\n");
    eventually("the tasks removed", d, || {
        ok(d.berth(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.swarm.service.name=web",
        ]))
        .trim()
        .is_empty()
    });
    let err = fails(d.berth(&["service", "inspect", "web"]));
    assert!(err.contains("web"), "{err}");
    let err = fails(d.berth(&["service", "rm", "web"]));
    assert!(err.contains("Error response from daemon"), "{err}");

    assert_eq!(
        ok(d.berth(&["swarm", "leave", "--force"])),
        "Node left the swarm.\n"
    );
    let err = fails(d.berth(&["service", "ls"]));
    assert!(err.contains("This node is not a swarm manager."), "{err}");
}

#[test]
fn berth_service_detached_global_and_refusals() {
    if against_docker().is_some() {
        eprintln!("berth's own CLI only; skipping against Docker");
        return;
    }
    let env = Env::start();
    let d = &env.d;

    // Outside a swarm: the daemon's words, as the CLI prints API errors.
    let err = fails(d.berth(&["service", "create", "fixture/app:1"]));
    assert!(
        err.contains("Error response from daemon: This node is not a swarm manager."),
        "{err}"
    );
    ok(d.berth(&["swarm", "init"]));

    // --detach: the ID only, at once.
    let out = ok(d.berth(&[
        "service",
        "create",
        "-d",
        "--name",
        "api",
        "--no-healthcheck",
        "fixture/app:1",
        "sleep 1000",
    ]));
    assert_eq!(out.lines().count(), 1, "{out}");
    eventually("the detached task runs", d, || {
        task_containers(d, "api").len() == 1
    });

    // Global mode: one task on this node; the command waits for it.
    let out = ok(d.berth(&[
        "service",
        "create",
        "--quiet",
        "--mode",
        "global",
        "--name",
        "agent",
        "--no-healthcheck",
        "fixture/app:1",
        "sleep 1000",
    ]));
    assert_eq!(out.lines().count(), 1, "--quiet prints the ID only: {out}");
    assert_eq!(task_containers(d, "agent").len(), 1);
    assert_eq!(
        ok(d.berth(&[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}}"
        ])),
        "agent global 1/1\napi replicated 1/1\n"
    );
    let err = fails(d.berth(&["service", "scale", "agent=2"]));
    assert!(
        err.contains("agent: scale can only be used with replicated"),
        "{err}"
    );

    // A published port the daemon picks, shown as docker shows it.
    ok(d.berth(&[
        "service",
        "create",
        "-d",
        "--name",
        "pub",
        "-p",
        "80",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let ports = ok(d.berth(&[
        "service",
        "ls",
        "--filter",
        "name=pub",
        "--format",
        "{{.Ports}}",
    ]));
    let published: u16 = ports
        .trim()
        .strip_prefix("*:")
        .and_then(|p| p.strip_suffix("->80/tcp"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("ports: {ports}"));
    assert!((30000..=32767).contains(&published), "{ports}");
    ok(d.berth(&["service", "rm", "pub"]));

    // Refusals: the same name twice, an image that is not here.
    let err = fails(d.berth(&["service", "create", "-d", "--name", "api", "fixture/app:1"]));
    assert!(err.contains("Error response from daemon"), "{err}");
    let err = fails(d.berth(&["service", "create", "-d", "fixture/nosuch:1"]));
    assert!(err.contains("fixture/nosuch:1"), "{err}");
    let err = fails(d.berth(&["service", "create", "--restart-delay", "5", "fixture/app:1"]));
    assert!(err.contains("--restart-delay"), "{err}");

    assert_eq!(
        ok(d.berth(&["service", "rm", "api", "agent"])),
        "api\nagent\n"
    );
    ok(d.berth(&["swarm", "leave", "--force"]));
}

#[test]
fn berth_service_create_gives_up_on_tasks_that_keep_failing() {
    if against_docker().is_some() {
        eprintln!("berth's own CLI only; skipping against Docker");
        return;
    }
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&["swarm", "init"]));
    // The task exits at once, again and again: after a minute the command gives up,
    // naming the task's error; the service stays.
    let started = Instant::now();
    let out = d.berth(&[
        "service",
        "create",
        "--name",
        "bad",
        "--restart-delay",
        "500ms",
        "fixture/app:1",
        "exit 3",
    ]);
    let err = fails(out);
    assert!(started.elapsed() < Duration::from_secs(120), "{err}");
    assert!(err.contains("its tasks keep failing"), "{err}");
    assert!(err.contains("non-zero exit (3)"), "{err}");
    assert_eq!(
        ok(d.berth(&["service", "ls", "--format", "{{.Name}}"])),
        "bad\n"
    );
    let ps = ok(d.berth(&["service", "ps", "--no-trunc", "bad"]));
    assert!(ps.contains("\"task: non-zero exit (3)\""), "{ps}");
    ok(d.berth(&["service", "rm", "bad"]));
    ok(d.berth(&["swarm", "leave", "--force"]));
}
