//! Services on one host through the real docker CLI: `docker service create` converges
//! (the CLI's own progress and its 5 s stability check), `ls`/`ps`/`inspect` show
//! Docker's fields, a replica removed behind the engine's back is replaced, `scale` up
//! and down, a rolling `update` and `rollback` go through every slot, an update whose
//! tasks fail rolls back by itself, a daemon SIGKILL keeps the services and starts no
//! duplicates, `service rm` and `swarm leave --force` take the tasks away.

use std::time::{Duration, Instant};

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn swarm_with_app() -> Daemon {
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    ok(d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
    d
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

/// The running containers of service `name` (its tasks), as `docker ps` lists them.
fn task_containers(d: &Daemon, name: &str) -> Vec<String> {
    ok(d.docker(&[
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

/// The current states (`Running`, `Starting`, …) of the service's tasks whose desired
/// state is running, sorted.
fn task_states(d: &Daemon, name: &str) -> Vec<String> {
    let mut states: Vec<String> = running_tasks(d, name)
        .iter()
        .filter_map(|row| row.split_whitespace().nth(1).map(str::to_string))
        .collect();
    states.sort();
    states
}

/// `docker service ps NAME` rows whose desired state is running: `name state`.
fn running_tasks(d: &Daemon, name: &str) -> Vec<String> {
    let mut rows: Vec<String> = ok(d.docker(&[
        "service",
        "ps",
        name,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Name}} {{.CurrentState}}",
    ]))
    .lines()
    .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
    .collect();
    rows.sort();
    rows
}

fn service_field(d: &Daemon, name: &str, format: &str) -> String {
    ok(d.docker(&["service", "inspect", name, "--format", format]))
        .trim()
        .to_string()
}

/// The command line of each running task of `name` (what its containers run).
fn task_args(d: &Daemon, name: &str) -> Vec<String> {
    let mut out: Vec<String> = task_containers(d, name)
        .iter()
        .map(|c| {
            ok(d.docker(&["inspect", c, "--format", "{{json .Config.Cmd}}"]))
                .trim()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn services_converge_heal_scale_update_and_roll_back() {
    if !docker_available() {
        return;
    }
    let mut d = swarm_with_app();

    // Create: the CLI waits for the tasks and checks they stay up (its own 5 s).
    let out = d.docker(&[
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
        // a task replaced behind the counts below.
        "--no-healthcheck",
        "fixture/app:1",
        "sleep 1000",
    ]);
    let text = ok(out);
    let id = text.lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(id.len(), 25, "service ID: {text}");
    assert_eq!(
        ok(d.docker(&[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}"
        ]))
        .trim(),
        "web replicated 2/2 fixture/app:1"
    );
    assert_eq!(running_tasks(&d, "web"), ["web.1 Running", "web.2 Running"]);
    assert_eq!(task_containers(&d, "web").len(), 2);
    assert_eq!(
        service_field(
            &d,
            "web",
            "{{.ID}} {{.Spec.Name}} {{.Spec.Labels.tier}} {{.Spec.Mode.Replicated.Replicas}}"
        ),
        format!("{id} web front 2")
    );
    // Filters of `service ls`.
    assert_eq!(
        ok(d.docker(&["service", "ls", "-q", "--filter", "label=tier=front"])).trim(),
        &id[..12]
    );
    assert_eq!(
        ok(d.docker(&["service", "ls", "-q", "--filter", "label=tier=back"])).trim(),
        ""
    );

    // A replica removed behind the engine's back is replaced; the old task stays in the
    // history, failed.
    let victim = task_containers(&d, "web")[0].clone();
    ok(d.docker(&["rm", "-f", &victim]));
    eventually("the removed replica replaced", &d, || {
        let c = task_containers(&d, "web");
        c.len() == 2 && !c.contains(&victim)
    });
    let history = ok(d.docker(&[
        "service",
        "ps",
        "web",
        "--format",
        "{{.Name}} {{.DesiredState}}",
    ]));
    assert!(
        history.lines().filter(|l| l.ends_with("Shutdown")).count() >= 1,
        "{history}"
    );

    // Scale up and down (no rollout: the tasks that run stay).
    let before = task_containers(&d, "web");
    ok(d.docker(&["service", "scale", "web=3"]));
    eventually("three replicas", &d, || {
        task_containers(&d, "web").len() == 3
    });
    let after = task_containers(&d, "web");
    assert!(
        before.iter().all(|c| after.contains(c)),
        "{before:?} {after:?}"
    );
    ok(d.docker(&["service", "scale", "--detach", "web=1"]));
    eventually("one replica", &d, || task_containers(&d, "web").len() == 1);
    ok(d.docker(&["service", "scale", "web=2"]));
    eventually("two replicas", &d, || task_containers(&d, "web").len() == 2);

    // A rolling update: every slot gets a task of the new revision; the CLI waits for it.
    // (`--args` is split as a shell would: the quotes keep one argument for `sh -c`.)
    ok(d.docker(&["service", "update", "--args", "'sleep 999'", "web"]));
    assert_eq!(task_args(&d, "web"), ["[\"sleep 999\"]", "[\"sleep 999\"]"]);
    assert_eq!(
        service_field(&d, "web", "{{.UpdateStatus.State}}"),
        "completed"
    );
    assert_eq!(
        service_field(
            &d,
            "web",
            "{{json .PreviousSpec.TaskTemplate.ContainerSpec.Args}}"
        ),
        "[\"sleep 1000\"]"
    );
    // Rollback on demand: the previous revision's tasks again.
    ok(d.docker(&["service", "rollback", "web"]));
    eventually("rolled back", &d, || {
        task_args(&d, "web") == ["[\"sleep 1000\"]", "[\"sleep 1000\"]"]
    });
    eventually("the rollback recorded complete", &d, || {
        service_field(&d, "web", "{{.UpdateStatus.State}}") == "rollback_completed"
    });

    // An update whose tasks fail within the monitor period rolls back by itself.
    ok(d.docker(&[
        "service",
        "update",
        "--detach",
        "--args",
        "'exit 1'",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "3s",
        "web",
    ]));
    eventually("the failed update rolled back", &d, || {
        service_field(&d, "web", "{{.UpdateStatus.State}}") == "rollback_completed"
    });
    eventually("the previous tasks run", &d, || {
        task_args(&d, "web") == ["[\"sleep 1000\"]", "[\"sleep 1000\"]"]
    });
    assert_eq!(
        service_field(&d, "web", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}"),
        "[\"sleep 1000\"]"
    );

    // A daemon SIGKILL: the service and its tasks are kept; no duplicate starts.
    if against_docker().is_none() {
        let before = task_containers(&d, "web");
        d.restart_after_sigkill();
        eventually("both tasks running after the restart", &d, || {
            running_tasks(&d, "web") == ["web.1 Running", "web.2 Running"]
        });
        // A window for a duplicate start to show.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(task_containers(&d, "web"), before);
        assert_eq!(running_tasks(&d, "web"), ["web.1 Running", "web.2 Running"]);
    }

    // Remove: its tasks go, within their grace period.
    ok(d.docker(&["service", "rm", "web"]));
    eventually("the tasks removed", &d, || {
        ok(d.docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.swarm.service.name=web",
        ]))
        .trim()
        .is_empty()
    });
    let err = fails(d.docker(&["service", "inspect", "web"]));
    assert!(err.contains("web"), "{err}");
    ok(d.docker(&["swarm", "leave", "--force"]));
}

#[test]
fn leaving_the_swarm_takes_the_services_and_refusals_name_what_berth_lacks() {
    if !docker_available() {
        return;
    }
    let d = swarm_with_app();
    ok(d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "api",
        "fixture/app:1",
        "sleep 1000",
    ]));
    eventually("the task runs", &d, || {
        task_containers(&d, "api").len() == 1
    });
    // The same name twice: Docker's conflict.
    let err = fails(d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "api",
        "fixture/app:1",
    ]));
    assert!(
        err.contains("already exists") || err.contains("name conflicts"),
        "{err}"
    );
    if against_docker().is_none() {
        // What berth cannot do yet is refused by name, and creates nothing.
        let err = fails(d.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            "pub",
            "--publish",
            "mode=host,target=80,published=18080",
            "fixture/app:1",
        ]));
        assert!(err.contains("host mode is not supported yet"), "{err}");
        let err = fails(d.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            "nosuch",
            "fixture/nosuch:1",
        ]));
        assert!(err.contains("fixture/nosuch:1"), "{err}");
        assert_eq!(
            ok(d.docker(&["service", "ls", "--format", "{{.Name}}"])).trim(),
            "api"
        );
    }
    ok(d.docker(&["swarm", "leave", "--force"]));
    eventually("the tasks removed with the swarm", &d, || {
        ok(d.docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.swarm.service.name=api",
        ]))
        .trim()
        .is_empty()
    });
    let err = fails(d.docker(&["service", "ls"]));
    assert!(err.contains("This node is not a swarm manager."), "{err}");
}

#[test]
fn stacks_deploy_redeploy_and_remove_through_the_docker_cli() {
    if !docker_available() {
        return;
    }
    let d = swarm_with_app();
    let file = d.dir.path().join("stack.yml");
    let compose = |cmd: &str| {
        format!(
            r#"version: "3.8"
services:
  web:
    image: fixture/app:1
    command: ["{cmd}"]
    environment:
      - GREETING=hi
    stop_grace_period: 1s
    # Not about health: a task replaced after the image's probe timed out on a loaded
    # host would break the counts below.
    healthcheck:
      disable: true
    deploy:
      replicas: 2
      update_config:
        order: start-first
        monitor: 1s
      restart_policy:
        delay: 200ms
  db:
    image: fixture/app:1
    command: ["sleep 1001"]
    stop_grace_period: 1s
    healthcheck:
      disable: true
"#
        )
    };
    // A service outside the stack: `stack ps` does not show its task.
    ok(d.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        "loner",
        "fixture/app:1",
        "sleep 1000",
    ]));
    std::fs::write(&file, compose("sleep 1000")).expect("write stack file");
    let f = file.to_str().expect("path");
    ok(d.docker(&["stack", "deploy", "-c", f, "s"]));
    assert_eq!(
        ok(d.docker(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"])).trim(),
        "s 2"
    );
    eventually("the stack's replicas run", &d, || {
        ok(d.docker(&[
            "stack",
            "services",
            "s",
            "--format",
            "{{.Name}} {{.Replicas}}",
        ]))
        .lines()
        .collect::<Vec<_>>()
            == ["s_db 1/1", "s_web 2/2"]
    });
    let names = ok(d.docker(&["stack", "ps", "s", "--format", "{{.Name}}"]));
    assert!(
        !names.is_empty() && names.lines().all(|n| n.starts_with("s_")),
        "{names}"
    );
    ok(d.docker(&["service", "rm", "loner"]));

    // The stack's network: a swarm overlay network, which is a bridge on this one host;
    // its tasks are on it, other containers only when it is attachable.
    assert_eq!(
        ok(d.docker(&[
            "network",
            "inspect",
            "s_default",
            "--format",
            "{{.Driver}} {{.Scope}} {{index .Labels \"com.docker.stack.namespace\"}}"
        ]))
        .trim(),
        "overlay swarm s"
    );
    let web = task_containers(&d, "s_web");
    let nets = ok(d.docker(&[
        "inspect",
        &web[0],
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{json $v.Aliases}}{{end}}",
    ]));
    assert!(nets.starts_with("s_default "), "{nets}");
    if against_docker().is_none() {
        // berth resolves a service's name to its tasks' addresses as network aliases
        // (Docker answers with a virtual IP instead, and shows no such alias).
        assert!(
            nets.contains("\"web\""),
            "the service's name is an alias: {nets}"
        );
    }
    let err = fails(d.docker(&[
        "run",
        "--rm",
        "--network",
        "s_default",
        "fixture/app:1",
        "true",
    ]));
    assert!(err.contains("not manually attachable"), "{err}");

    // A redeploy with a changed service rolls it; the other service is left alone.
    let db = task_containers(&d, "s_db");
    std::fs::write(&file, compose("sleep 999")).expect("write stack file");
    ok(d.docker(&["stack", "deploy", "-c", f, "s"]));
    eventually("the redeployed service rolled", &d, || {
        task_args(&d, "s_web") == ["[\"sleep 999\"]", "[\"sleep 999\"]"]
    });
    assert_eq!(task_containers(&d, "s_db"), db);

    // Remove: services, their tasks and the network go.
    ok(d.docker(&["stack", "rm", "s"]));
    assert_eq!(
        ok(d.docker(&["stack", "ls", "--format", "{{.Name}}"])).trim(),
        ""
    );
    eventually("the stack's tasks removed", &d, || {
        ok(d.docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.stack.namespace=s",
        ]))
        .trim()
        .is_empty()
    });
    let err = fails(d.docker(&["network", "inspect", "s_default"]));
    assert!(err.contains("s_default"), "{err}");
    ok(d.docker(&["swarm", "leave", "--force"]));
}

#[test]
fn a_daemon_killed_mid_update_finishes_it_without_duplicates() {
    if !docker_available() || against_docker().is_some() {
        // (The daemon is killed: berth's own.)
        return;
    }
    let mut d = swarm_with_app();
    ok(d.docker(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--stop-grace-period",
        "1s",
        "--update-order",
        "start-first",
        "--update-monitor",
        "1s",
        "--restart-delay",
        "200ms",
        // The image's health check gates each slot of the update (a window for the
        // kill); its 1 s timeout is too short for a probe on a loaded host, and a task
        // replaced as unhealthy would be one more of the new revision.
        "--health-timeout",
        "20s",
        "fixture/app:1",
        "sleep 1000",
    ]));
    ok(d.docker(&[
        "service",
        "update",
        "--detach",
        "--args",
        "'sleep 998'",
        "web",
    ]));
    // Mid-update: the first slot's new task is starting or running.
    eventually("the update under way", &d, || {
        task_args(&d, "web").contains(&"[\"sleep 998\"]".to_string())
    });
    d.restart_after_sigkill();
    eventually("the update finished after the restart", &d, || {
        task_args(&d, "web") == ["[\"sleep 998\"]"; 3]
            && service_field(&d, "web", "{{.UpdateStatus.State}}") == "completed"
    });
    // One task of the new revision per slot was ever created, and one runs per slot.
    let all_new: Vec<String> = ok(d.docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        "label=com.docker.swarm.service.name=web",
        "--format",
        "{{.Command}}",
    ]))
    .lines()
    .filter(|l| l.contains("sleep 998"))
    .map(str::to_string)
    .collect();
    assert_eq!(all_new.len(), 3, "{all_new:?}\n{}", d.log());
    let rows = running_tasks(&d, "web");
    assert_eq!(
        rows,
        ["web.1 Running", "web.2 Running", "web.3 Running"],
        "{}",
        d.log()
    );
    ok(d.docker(&["service", "rm", "web"]));
    ok(d.docker(&["swarm", "leave", "--force"]));
}

#[test]
fn a_broken_image_rolls_back_by_itself_to_the_recorded_image_not_the_moved_tag() {
    // Not against Docker: with an image no registry knows, Docker records no digest and
    // its rollback looks the moved tag up again (it runs the broken image and never
    // completes); berth records the image ID with each revision.
    if !docker_available() || against_docker().is_some() {
        return;
    }
    let d = swarm_with_app();
    // A broken image: its entrypoint fails at once.
    ok(d.docker(&["create", "--name", "base", "fixture/app:1", "true"]));
    ok(d.docker(&[
        "commit",
        "--change",
        "ENTRYPOINT [\"/bin/sh\", \"-c\", \"exit 1\"]",
        "base",
        "fixture/broken:1",
    ]));
    ok(d.docker(&["rm", "base"]));
    let good_id = ok(d.docker(&["image", "inspect", "fixture/app:1", "--format", "{{.Id}}"]))
        .trim()
        .to_string();
    ok(d.docker(&[
        "service",
        "create",
        "--name",
        "app",
        "--replicas",
        "2",
        "--stop-grace-period",
        "1s",
        "--restart-delay",
        "200ms",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "2s",
        // The image's 1 s probe timeout is too short on a loaded host: a good task
        // replaced as unhealthy mid-rollback would pause it.
        "--health-timeout",
        "20s",
        "fixture/app:1",
        "sleep 1000",
    ]));
    // The tag the service was created from now names the broken image: what runs, and
    // what a rollback runs, is the image the service recorded.
    ok(d.docker(&["tag", "fixture/broken:1", "fixture/app:1"]));
    ok(d.docker(&[
        "service",
        "update",
        "--detach",
        "--image",
        "fixture/broken:1",
        "app",
    ]));
    eventually("the broken update rolled back", &d, || {
        service_field(&d, "app", "{{.UpdateStatus.State}}") == "rollback_completed"
    });
    eventually("two tasks of the recorded image run", &d, || {
        let c = task_containers(&d, "app");
        c.len() == 2
            && c.iter()
                .all(|c| ok(d.docker(&["inspect", c, "--format", "{{.Image}}"])).trim() == good_id)
    });
    assert!(
        service_field(&d, "app", "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
            .starts_with("fixture/app:1"),
        "the spec is the previous one again"
    );
    ok(d.docker(&["service", "rm", "app"]));
    ok(d.docker(&["swarm", "leave", "--force"]));
}

/// The IPv4 addresses `name` resolves to from `container` (busybox nslookup through the
/// embedded DNS server); empty when there is no answer.
fn resolve(d: &Daemon, container: &str, name: &str) -> Vec<String> {
    // Fully qualified: busybox would also ask for NAME.SEARCH-DOMAIN, which the DNS
    // server forwards to the host's resolvers (unreachable from the test's namespace).
    let out = d.docker(&[
        "exec",
        container,
        "busybox",
        "nslookup",
        &format!("{name}."),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut ips: Vec<String> = text
        .split("Name:")
        .skip(1)
        .flat_map(|part| {
            part.lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .filter_map(|a| a.trim().split(' ').next().map(str::to_string))
                .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
                .collect::<Vec<_>>()
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// A container's address on network `net`.
fn address_on(d: &Daemon, container: &str, net: &str) -> String {
    ok(d.docker(&[
        "inspect",
        container,
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
    ]))
    .trim()
    .to_string()
}

/// One HTTP GET of `http://HOST/` from the client (busybox nc, 2 s timeout; the
/// image's busybox wget crashes): the body (a task's hostname), or None.
fn fetch(d: &Daemon, host: &str) -> Option<String> {
    let out = d.docker(&[
        "exec",
        "client",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {host} 80"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    text.lines().last().map(|l| l.trim().to_string())
}

/// The hostnames that answered `n` requests to `host`.
fn answered_by(d: &Daemon, host: &str, n: usize) -> Vec<String> {
    let mut seen: Vec<String> = (0..n).filter_map(|_| fetch(d, host)).collect();
    seen.sort();
    seen.dedup();
    seen
}

#[test]
fn a_service_is_reached_through_its_name_on_healthy_tasks_only() {
    if !docker_available() || against_docker().is_some() {
        // Docker's overlay networks do not work on these machines.
        return;
    }
    let d = swarm_with_app();
    ok(d.docker(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "--subnet",
        "100.90.40.0/24",
        "front",
    ]));
    // Each task serves its hostname on port 80; it is healthy while /tmp/ok exists.
    let service = |name: &str, mode: &str| {
        ok(d.docker(&[
            "service",
            "create",
            "-d",
            "--name",
            name,
            "--replicas",
            "2",
            "--endpoint-mode",
            mode,
            "--network",
            &format!("name=front,alias={name}-alias"),
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
            // The default 1 s timeout is too short for a probe on a loaded host: one slow
            // probe would make a ready task unhealthy and replaced.
            "--health-timeout",
            "20s",
            // Not ready until a check passes; failures count from then on.
            "--health-start-period",
            "10m",
            "--health-start-interval",
            "200ms",
            "--restart-delay",
            "200ms",
            "--stop-grace-period",
            "1s",
            "fixture/app:1",
            "busybox mkdir -p /www && busybox hostname > /www/index.html && exec busybox httpd -f -p 80 -h /www",
        ]));
    };
    service("api", "vip");
    // The virtual IP, allocated before the create answers: the highest free address
    // of the network, shown as Docker shows it.
    let net_id = ok(d.docker(&["network", "inspect", "front", "-f", "{{.Id}}"]));
    let vips = ok(d.docker(&[
        "service",
        "inspect",
        "api",
        "-f",
        "{{range .Endpoint.VirtualIPs}}{{.NetworkID}} {{.Addr}}{{end}}",
    ]));
    assert_eq!(vips.trim(), format!("{} 100.90.40.254/24", net_id.trim()));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "front",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let mut tasks = Vec::new();
    eventually("two tasks run", &d, || {
        tasks = task_containers(&d, "api");
        tasks.len() == 2
    });
    // The name and the alias resolve to it, `tasks.api` to the ready tasks.
    let vip = "100.90.40.254";
    assert_eq!(resolve(&d, "client", "api"), [vip]);
    assert_eq!(resolve(&d, "client", "api-alias"), [vip]);
    // Running but not healthy yet: no task answers, through the name or otherwise.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(resolve(&d, "client", "tasks.api"), Vec::<String>::new());
    assert_eq!(fetch(&d, "api"), None);
    // And Docker's clients see such tasks starting, not running.
    assert_eq!(task_states(&d, "api"), ["Starting", "Starting"]);

    let host = |c: &str| c[..12].to_string();
    let (a, b) = (tasks[0].clone(), tasks[1].clone());
    let (ip_a, ip_b) = (address_on(&d, &a, "front"), address_on(&d, &b, "front"));
    ok(d.docker(&["exec", &a, "busybox", "touch", "/tmp/ok"]));
    eventually("the healthy task answers", &d, || {
        resolve(&d, "client", "tasks.api") == [ip_a.clone()]
    });
    assert_eq!(answered_by(&d, "api", 8), [host(&a)]);
    assert_eq!(task_states(&d, "api"), ["Running", "Starting"]);
    ok(d.docker(&["exec", &b, "busybox", "touch", "/tmp/ok"]));
    let mut both = vec![ip_a.clone(), ip_b.clone()];
    both.sort();
    eventually("both tasks are ready", &d, || {
        resolve(&d, "client", "tasks.api") == both
    });
    let mut hosts = vec![host(&a), host(&b)];
    hosts.sort();
    assert_eq!(answered_by(&d, "api", 24), hosts);

    // A task that turns unhealthy gets no new connection (and is replaced by one that
    // is not ready until it says so).
    ok(d.docker(&["exec", &a, "busybox", "rm", "/tmp/ok"]));
    eventually("the unhealthy task leaves", &d, || {
        resolve(&d, "client", "tasks.api") == [ip_b.clone()]
    });
    assert_eq!(answered_by(&d, "api", 8), [host(&b)]);
    assert_eq!(resolve(&d, "client", "api"), [vip]);

    // endpoint_mode dnsrr: no virtual IP; the name resolves to the ready tasks.
    service("rr", "dnsrr");
    let mut rr = Vec::new();
    eventually("two rr tasks run", &d, || {
        rr = task_containers(&d, "rr");
        rr.len() == 2
    });
    assert_eq!(
        ok(d.docker(&[
            "service",
            "inspect",
            "rr",
            "-f",
            "{{len .Endpoint.VirtualIPs}}"
        ]))
        .trim(),
        "0"
    );
    ok(d.docker(&["exec", &rr[0], "busybox", "touch", "/tmp/ok"]));
    let rr_ip = address_on(&d, &rr[0], "front");
    eventually("rr resolves to its ready task", &d, || {
        resolve(&d, "client", "rr") == [rr_ip.clone()]
    });
    assert_eq!(answered_by(&d, "rr", 4), [host(&rr[0])]);

    // Gone with the service: the name, and the address (free for another service).
    ok(d.docker(&["service", "rm", "api", "rr"]));
    eventually("the names are gone", &d, || {
        resolve(&d, "client", "api").is_empty() && resolve(&d, "client", "rr").is_empty()
    });
    service("api2", "vip");
    assert_eq!(
        ok(d.docker(&[
            "service",
            "inspect",
            "api2",
            "-f",
            "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}",
        ]))
        .trim(),
        "100.90.40.254/24",
        "api2 gets the address api released"
    );
    ok(d.docker(&["service", "rm", "api2"]));
    ok(d.docker(&["rm", "-f", "client"]));
}
