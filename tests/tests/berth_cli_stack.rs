//! berth's own `stack` verbs against a berth daemon: `stack deploy` reads a compose file
//! (variables, a network, a named volume, replicas, a health check) and creates what
//! the docker CLI would create, printing docker's lines; `stack ls/services/ps` show
//! docker's columns; a redeploy whose environment changed updates only that service;
//! `--prune` removes a service the file dropped; a broken file fails naming the service
//! and the key and creates nothing; `stack rm` removes the services and the networks.
//!
//! Every test leaves the swarm and removes its containers (they outlive the daemon).

use std::path::Path;
use std::process::{Command, Output, Stdio};
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

/// Runs `berth --host … ARGS` with extra environment variables (for `${VAR}`).
fn berth_env(d: &Daemon, vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(berth_bin())
        .arg("--host")
        .arg(d.host())
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    let mut out: Vec<String> = ok(d.berth(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ]))
    .lines()
    .map(str::to_string)
    .collect();
    out.sort();
    out
}

/// The value of `var` in the environment of each running task of `name`.
fn task_env(d: &Daemon, name: &str, var: &str) -> Vec<String> {
    let mut out: Vec<String> = task_containers(d, name)
        .iter()
        .filter_map(|c| {
            let o = d.berth(&["inspect", c, "--format", "{{json .Config.Env}}"]);
            o.status.success().then(|| {
                let env: Vec<String> =
                    serde_json::from_slice(&o.stdout).expect("the environment as JSON");
                env.iter()
                    .find_map(|e| e.strip_prefix(&format!("{var}=")).map(str::to_string))
                    .unwrap_or_default()
            })
        })
        .collect();
    out.sort();
    out
}

/// `stack ps` rows of the tasks meant to run: `name state`, sorted.
fn running_tasks(d: &Daemon, stack: &str) -> Vec<String> {
    let mut rows: Vec<String> = ok(d.berth(&[
        "stack",
        "ps",
        stack,
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

fn compose(greeting_default: &str, with_db: bool) -> String {
    let mut s = format!(
        r#"version: "3.8"
services:
  web:
    image: fixture/app:1
    command: ["sleep 1000"]
    environment:
      - GREETING=${{GREETING:-{greeting_default}}}
      - STACK_NAME
    networks: [front]
    volumes:
      - data:/data
    healthcheck:
      test: "true"
      interval: 1s
      # Without one the image's 1 s applies: too short for a probe on a loaded host
      # (a task replaced as unhealthy); the health check gates the rolling update.
      timeout: 20s
      retries: 2
    stop_grace_period: 1s
    deploy:
      replicas: 2
      labels:
        tier: front
      update_config:
        order: start-first
        monitor: 1s
      restart_policy:
        delay: 200ms
"#
    );
    if with_db {
        s.push_str(
            r#"    depends_on: [db]
  db:
    image: fixture/app:1
    command: ["sleep 1001"]
    networks: [front]
    stop_grace_period: 1s
    # Not about health: a task replaced after a probe timed out would not be "left alone".
    healthcheck:
      disable: true
    deploy:
      update_config:
        monitor: 1s
"#,
        );
    }
    s.push_str(
        r#"networks:
  front:
    driver: overlay
    labels:
      purpose: test
volumes:
  data:
"#,
    );
    s
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the compose file");
}

#[test]
fn berth_stack_deploys_lists_redeploys_prunes_and_removes() {
    if against_docker().is_some() {
        eprintln!("berth's own CLI only; skipping against Docker");
        return;
    }
    let env = Env::start();
    let d = &env.d;
    let file = d.dir.path().join("stack.yml");
    let f = file.to_str().expect("path");
    write(&file, &compose("hi", true));

    // Outside a swarm: refused before anything is made.
    let err = fails(d.berth(&["stack", "deploy", "-c", f, "s"]));
    assert!(err.contains("this node is not a swarm manager"), "{err}");
    ok(d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));

    // Deploy, following the services until they converge.
    let out = berth_env(
        d,
        &[("STACK_NAME", "from-env")],
        &["stack", "deploy", "--detach=false", "-c", f, "s"],
    );
    let text = ok(Output {
        status: out.status,
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "Creating network s_front",
            "Creating service s_db",
            "Creating service s_web"
        ],
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("verify: Service converged"),
        "{text}"
    );
    assert_eq!(
        text.matches("verify: Service converged").count(),
        2,
        "{text}"
    );
    // depends_on is ignored, and said so; with --detach=false, no note about detaching.
    let err = stderr(&out);
    assert!(
        err.contains("Ignoring unsupported options: depends_on\n"),
        "{err}"
    );
    assert!(!err.contains("--detach=false was not specified"), "{err}");

    // ls: docker's columns.
    let ls = ok(d.berth(&["stack", "ls"]));
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, [vec!["NAME", "SERVICES"], vec!["s", "2"]], "{ls}");
    assert_eq!(
        ok(d.berth(&["stack", "ls", "--format", "{{.Name}}: {{.Services}}"])),
        "s: 2\n"
    );

    // services: `service ls`'s table, the stack's services only.
    let services = ok(d.berth(&["stack", "services", "s"]));
    let header: Vec<&str> = services
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        "{services}"
    );
    assert_eq!(
        ok(d.berth(&[
            "stack",
            "services",
            "s",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}"
        ])),
        "s_db replicated 1/1 fixture/app:1\ns_web replicated 2/2 fixture/app:1\n"
    );
    assert_eq!(
        ok(d.berth(&["stack", "services", "-q", "s"]))
            .lines()
            .count(),
        2
    );
    assert_eq!(
        ok(d.berth(&[
            "stack",
            "services",
            "s",
            "--filter",
            "name=s_web",
            "--format",
            "{{.Name}}"
        ])),
        "s_web\n"
    );

    // ps: every task runs; the names are docker's.
    eventually("the stack's tasks run", d, || {
        running_tasks(d, "s") == ["s_db.1 Running", "s_web.1 Running", "s_web.2 Running"]
    });
    let ps = ok(d.berth(&["stack", "ps", "s"]));
    let header: Vec<&str> = ps
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR", "PORTS"],
        "{ps}"
    );
    assert!(
        ok(d.berth(&["stack", "ps", "-q", "s"]))
            .lines()
            .all(|l| l.len() == 25),
        "whole task IDs with -q"
    );

    // What was made: the services' labels and settings, the network, the volume.
    assert_eq!(
        ok(d.berth(&[
            "service",
            "inspect",
            "s_web",
            "--format",
            "{{index .Spec.Labels \"com.docker.stack.namespace\"}} {{.Spec.Labels.tier}} {{.Spec.Mode.Replicated.Replicas}} {{.Spec.UpdateConfig.Order}} {{.Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}"
        ]))
        .trim(),
        "s front 2 start-first [CMD-SHELL true]"
    );
    assert_eq!(
        ok(d.berth(&[
            "network",
            "inspect",
            "s_front",
            "--format",
            "{{.Driver}} {{.Scope}} {{index .Labels \"com.docker.stack.namespace\"}} {{.Labels.purpose}}"
        ]))
        .trim(),
        "overlay swarm s test"
    );
    let web = task_containers(d, "s_web");
    let mounts = ok(d.berth(&[
        "inspect",
        &web[0],
        "--format",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
    ]));
    assert_eq!(mounts.trim(), "volume s_data /data");
    let nets: serde_json::Value = serde_json::from_str(&ok(d.berth(&[
        "inspect",
        &web[0],
        "--format",
        "{{json .NetworkSettings.Networks}}",
    ])))
    .expect("the networks as JSON");
    let names: Vec<&String> = nets.as_object().expect("a mapping").keys().collect();
    assert_eq!(names, ["s_front"], "{nets}");
    assert!(
        nets["s_front"]["Aliases"]
            .as_array()
            .is_some_and(|a| a.contains(&serde_json::json!("web"))),
        "the service's name is an alias: {nets}"
    );
    // Interpolation and a variable taken from the command's environment.
    assert_eq!(task_env(d, "s_web", "GREETING"), ["hi", "hi"]);
    assert_eq!(task_env(d, "s_web", "STACK_NAME"), ["from-env", "from-env"]);

    // A redeploy with a changed environment: both services are updated, only s_web
    // gets new tasks.
    let db = task_containers(d, "s_db");
    assert_eq!(db.len(), 1);
    let db_id = ok(d.berth(&["service", "inspect", "s_db", "--format", "{{.ID}}"]))
        .trim()
        .to_string();
    let web_id = ok(d.berth(&["service", "inspect", "s_web", "--format", "{{.ID}}"]))
        .trim()
        .to_string();
    let out = berth_env(
        d,
        &[("GREETING", "hello"), ("STACK_NAME", "from-env")],
        &["stack", "deploy", "-c", f, "s"],
    );
    let err = stderr(&out);
    let text = ok(out);
    assert_eq!(
        text,
        format!("Updating service s_db (id: {db_id})\nUpdating service s_web (id: {web_id})\n")
    );
    assert!(
        err.contains(
            "Since --detach=false was not specified, tasks will be created in the background."
        ),
        "{err}"
    );
    eventually("s_web rolled to the new environment", d, || {
        task_env(d, "s_web", "GREETING") == ["hello", "hello"]
    });
    assert_eq!(task_containers(d, "s_db"), db, "s_db was left alone");

    // --prune: the service the file no longer has goes.
    write(&file, &compose("hello", false));
    let out = ok(berth_env(
        d,
        &[("STACK_NAME", "from-env")],
        &["stack", "deploy", "--prune", "-c", f, "s"],
    ));
    assert_eq!(
        out,
        format!("Removing service s_db\nUpdating service s_web (id: {web_id})\n")
    );
    assert_eq!(
        ok(d.berth(&["stack", "services", "s", "--format", "{{.Name}}"])),
        "s_web\n"
    );
    eventually("s_db's task removed", d, || {
        task_containers(d, "s_db").is_empty()
    });
    assert_eq!(task_env(d, "s_web", "GREETING"), ["hello", "hello"]);

    // rm: the services, then the network.
    let out = ok(d.berth(&["stack", "rm", "s"]));
    assert_eq!(out, "Removing service s_web\nRemoving network s_front\n");
    assert_eq!(ok(d.berth(&["stack", "ls", "--format", "{{.Name}}"])), "");
    eventually("the stack's containers removed", d, || {
        ok(d.berth(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.stack.namespace=s",
        ]))
        .trim()
        .is_empty()
    });
    eventually("the stack's network removed", d, || {
        !d.berth(&["network", "inspect", "s_front"]).status.success()
    });
    // Nothing left: said on stderr, not an error (ps: an error, as docker).
    let o = d.berth(&["stack", "rm", "s"]);
    assert!(o.status.success());
    assert_eq!(stderr(&o), "Nothing found in stack: s\n");
    let o = d.berth(&["stack", "services", "s"]);
    assert!(o.status.success());
    assert_eq!(stderr(&o), "Nothing found in stack: s\n");
    let err = fails(d.berth(&["stack", "ps", "s"]));
    assert!(err.contains("nothing found in stack: s"), "{err}");
}

#[test]
fn berth_stack_refuses_broken_files_and_creates_nothing() {
    if against_docker().is_some() {
        eprintln!("berth's own CLI only; skipping against Docker");
        return;
    }
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
    let file = d.dir.path().join("broken.yml");
    let f = file.to_str().expect("path");
    let nothing_made = || {
        assert_eq!(ok(d.berth(&["service", "ls", "-q"])), "");
        assert_eq!(
            ok(d.berth(&[
                "network",
                "ls",
                "-q",
                "--filter",
                "label=com.docker.stack.namespace=b"
            ])),
            ""
        );
    };
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web:\n    image: fixture/app:1\n   command: x\n",
            "yaml: line 4:",
        ),
        (
            "services:\n  web:\n    image: fixture/app:1\n    imagee: typo\n",
            "services.web Additional property imagee is not allowed",
        ),
        (
            "services:\n  web:\n    image: fixture/app:1\n    deploy:\n      replicas: two\n",
            "services.web.deploy.replicas must be an integer",
        ),
        (
            "services:\n  web:\n    command: sleep 1\n",
            "service web: image is required",
        ),
        (
            "services:\n  web:\n    image: fixture/app:1\n    networks: [nope]\n",
            "service web: undefined network \"nope\"",
        ),
        (
            "services:\n  web:\n    image: fixture/app:1\n  db:\n    image: fixture/app:1\n    volumes: [\"gone:/d\"]\n",
            "service db: undefined volume \"gone\"",
        ),
        (
            "services:\n  web:\n    image: fixture/app:1\n    volumes_from: [db]\n",
            "Compose file contains unsupported options:",
        ),
    ];
    for (yaml, expected) in cases {
        write(&file, yaml);
        let err = fails(d.berth(&["stack", "deploy", "-c", f, "b"]));
        assert!(
            err.contains(expected),
            "{yaml}\nexpected {expected:?} in: {err}"
        );
        nothing_made();
    }
    let err = fails(d.berth(&["stack", "deploy", "-c", "/nonexistent/s.yml", "b"]));
    assert!(
        err.contains("open /nonexistent/s.yml: no such file or directory"),
        "{err}"
    );
    let err = fails(d.berth(&[
        "stack",
        "deploy",
        "-c",
        f,
        "--resolve-image",
        "sometimes",
        "b",
    ]));
    assert!(
        err.contains("invalid option sometimes for flag --resolve-image"),
        "{err}"
    );
    let err = fails(d.berth(&["stack", "deploy", "-c", f, "' '"]));
    assert!(err.contains("invalid stack name"), "{err}");

    // An image that is not on the host: the daemon refuses the service by name, after
    // the network was made (as docker leaves it).
    write(&file, "services:\n  web:\n    image: fixture/none:1\n");
    let out = d.berth(&["stack", "deploy", "-c", f, "b"]);
    let err = fails(Output {
        status: out.status,
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
    });
    assert!(
        err.contains("failed to create service b_web: Error response from daemon:")
            && err.contains("fixture/none:1"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Creating network b_default\nCreating service b_web\n"
    );
    assert_eq!(ok(d.berth(&["service", "ls", "-q"])), "");

    // Secrets come from a file next to the compose file; a daemon that refuses them
    // fails the deploy with its own words, before any service.
    std::fs::write(d.dir.path().join("token.txt"), "hunter2").expect("write the secret");
    write(
        &file,
        "services:\n  web:\n    image: fixture/app:1\n    command: [\"sleep 1000\"]\n    stop_grace_period: 1s\n    secrets: [token]\nsecrets:\n  token:\n    file: ./token.txt\n",
    );
    let out = d.berth(&["stack", "deploy", "-c", f, "b"]);
    if !out.status.success() {
        let err = stderr(&out);
        assert!(
            err.contains("Error response from daemon") && err.contains("secret"),
            "{err}"
        );
        assert_eq!(ok(d.berth(&["service", "ls", "-q"])), "");
    } else {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("Creating secret b_token\n"), "{text}");
        eventually("the task with the secret runs", d, || {
            task_containers(d, "b_web").len() == 1
        });
        let c = &task_containers(d, "b_web")[0];
        assert_eq!(
            ok(d.berth(&["exec", c, "cat", "/run/secrets/token"])),
            "hunter2"
        );
    }
    let out = ok(d.berth(&["stack", "rm", "--detach=false", "b"]));
    assert!(out.ends_with("Removing network b_default\n"), "{out}");
    assert_eq!(
        ok(d.berth(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.stack.namespace=b"
        ])),
        "",
        "--detach=false returns once the tasks are gone"
    );
}
