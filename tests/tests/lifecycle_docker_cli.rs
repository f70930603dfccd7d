//! A container's life through the real docker CLI: restart policies (also across a
//! daemon SIGKILL), `--rm`, stop with its grace period and stop signal, restart, rename,
//! prune, logs follow/since/tail, events, `ps` filters, `--init`, and what inspect shows.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn daemon_with_app() -> Daemon {
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    d
}

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    ok(d.docker(&["inspect", name, "--format", format]))
        .trim()
        .to_string()
}

/// Polls `f` until it returns true (a state change the daemon makes on its own).
fn eventually(what: &str, d: &Daemon, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not reached in 30 s\n{}", d.log());
}

#[test]
fn on_failure_restarts_up_to_its_limit_and_always_survives_a_daemon_kill() {
    if !docker_available() {
        return;
    }
    let mut d = daemon_with_app();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "fixture/app:1",
        "echo run; exit 4",
    ]));
    eventually("two restarts then stopped", &d, || {
        inspect(&d, "flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    // Three runs in all, each logged; nothing more comes.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ok(d.docker(&["logs", "flaky"])).lines().count(), 3);
    assert_eq!(inspect(&d, "flaky", "{{.State.ExitCode}}"), "4");
    assert_eq!(
        inspect(
            &d,
            "flaky",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:2"
    );

    // A success does not restart an on-failure container.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "fixture/app:1",
        "exit 0",
    ]));
    eventually("fine exited", &d, || {
        inspect(&d, "fine", "{{.State.Status}}") == "exited"
    });
    assert_eq!(inspect(&d, "fine", "{{.RestartCount}}"), "0");

    // always: a container that exits on its own comes back; a user's stop is respected.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--restart",
        "always",
        "fixture/app:1",
        "sleep 1000",
    ]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "svc2",
        "--restart",
        "unless-stopped",
        "fixture/app:1",
        "sleep 1000",
    ]));
    ok(d.docker(&["stop", "-t", "0", "svc2"]));
    let pid = inspect(&d, "svc", "{{.State.Pid}}");
    // The container's init dies while the daemon is away (SIGKILL, as a crash).
    d.kill(libc::SIGKILL);
    let pid_n: i32 = pid.parse().expect("pid");
    // SAFETY: kill(2) with a pid read from inspect; no memory is involved.
    unsafe { libc::kill(pid_n, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    d.restart_after_sigkill();
    eventually("svc started again by the daemon", &d, || {
        inspect(&d, "svc", "{{.State.Status}}") == "running"
    });
    assert_ne!(inspect(&d, "svc", "{{.State.Pid}}"), pid);
    // unless-stopped after a user's stop stays stopped across the daemon restart.
    assert_eq!(inspect(&d, "svc2", "{{.State.Status}}"), "exited");
    // docker kill is a user's stop too: no restart.
    ok(d.docker(&["kill", "svc"]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&d, "svc", "{{.State.Status}}"), "exited");

    // Docker's rules on the policy.
    let err = fails(d.docker(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--rm",
        "fixture/app:1",
        "true",
    ]));
    assert!(err.contains("--restart") && err.contains("--rm"), "{err}");
    let err = fails(d.docker(&["create", "--restart", "sometimes", "fixture/app:1"]));
    assert!(err.contains("sometimes"), "{err}");
}

#[test]
fn rm_flag_removes_the_container_when_it_exits() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_app();
    // Created first: a started one may be gone before inspect looks (a slow host).
    let id = ok(d.docker(&["create", "--rm", "fixture/app:1", "sleep 0.2"]));
    let id = id.trim().to_string();
    assert_eq!(inspect(&d, &id, "{{.HostConfig.AutoRemove}}"), "true");
    ok(d.docker(&["start", &id]));
    eventually("removed after exit", &d, || {
        !ok(d.docker(&["ps", "-aq", "--no-trunc"])).contains(&id)
    });
    // And after a stop.
    ok(d.docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "tmp",
        "fixture/app:1",
        "sleep 1000",
    ]));
    ok(d.docker(&["stop", "-t", "0", "tmp"]));
    eventually("removed after stop", &d, || {
        !ok(d.docker(&["ps", "-a", "--format", "{{.Names}}"])).contains("tmp")
    });
}

/// Waits (60 s) until container `name` has logged "ready": its script installed its
/// signal trap, so a stop signal sent now is handled, not the shell's default.
fn wait_ready(d: &Daemon, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = ok(d.docker(&["logs", name]));
        if logs.lines().any(|l| l == "ready") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never logged ready: {logs}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stop_uses_the_stop_signal_then_kills_after_the_grace_period() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_app();
    // The events are read from the daemon's history afterwards (--since/--until): a
    // stream started now may not be subscribed yet when the first action happens.
    let since = chrono_now_secs() - 1;

    // A process that handles SIGTERM exits at once with its own status.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "polite",
        "fixture/app:1",
        "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    ]));
    wait_ready(&d, "polite");
    assert_eq!(ok(d.docker(&["stop", "polite"])).trim(), "polite");
    assert_eq!(inspect(&d, "polite", "{{.State.ExitCode}}"), "0");
    assert_eq!(ok(d.docker(&["logs", "polite"])).trim(), "ready\nbye");

    // One that ignores it is killed after -t.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "fixture/app:1",
        "trap '' TERM; echo ready; sleep 1000",
    ]));
    wait_ready(&d, "stubborn");
    ok(d.docker(&["stop", "-t", "1", "stubborn"]));
    assert_eq!(inspect(&d, "stubborn", "{{.State.ExitCode}}"), "137");

    // --stop-signal: USR1 handled by the script.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "30",
        "fixture/app:1",
        "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done",
    ]));
    assert_eq!(
        inspect(&d, "usr1", "{{.Config.StopSignal}} {{.Config.StopTimeout}}"),
        "SIGUSR1 30"
    );
    wait_ready(&d, "usr1");
    ok(d.docker(&["stop", "usr1"]));
    assert_eq!(inspect(&d, "usr1", "{{.State.ExitCode}}"), "42");

    // Stopping a stopped container is not an error.
    ok(d.docker(&["stop", "usr1"]));

    // restart: a new run, same container.
    let before = inspect(&d, "stubborn", "{{.State.StartedAt}}");
    ok(d.docker(&["restart", "-t", "0", "stubborn"]));
    assert_eq!(inspect(&d, "stubborn", "{{.State.Status}}"), "running");
    assert_ne!(inspect(&d, "stubborn", "{{.State.StartedAt}}"), before);
    ok(d.docker(&["rm", "-f", "stubborn"]));

    // The events tell the story in order.
    let text = ok(d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &(chrono_now_secs() + 1).to_string(),
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes \"signal\"}}{{index .Actor.Attributes \"exitCode\"}}",
    ]));
    let lines: Vec<&str> = text.lines().collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| *l == needle)
            .unwrap_or_else(|| panic!("{needle:?} not in events:\n{text}"))
    };
    assert!(pos("create polite ") < pos("start polite "));
    assert!(pos("kill polite 15") < pos("die polite 0"));
    assert!(pos("die polite 0") < pos("stop polite "));
    assert!(pos("kill stubborn 15") < pos("kill stubborn 9"));
    assert!(pos("kill stubborn 9") < pos("die stubborn 137"));
    assert!(pos("kill usr1 10") < pos("die usr1 42"));
    assert!(pos("restart stubborn ") > pos("die stubborn 137"));
    assert!(pos("destroy stubborn ") > pos("restart stubborn "));
}

#[test]
fn rename_prune_filters_and_inspect() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_app();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "a1",
        "-l",
        "tier=web",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "--init",
        "fixture/app:1",
        "sleep 1000",
    ]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "b1",
        "-l",
        "tier=db",
        "fixture/app:1",
        "exit 3",
    ]));
    ok(d.docker(&["run", "-d", "--name", "c1", "fixture/app:1", "exit 0"]));
    eventually("b1 and c1 exited", &d, || {
        ok(d.docker(&["ps", "-q"])).lines().count() == 1
    });

    // Filters.
    let names = |args: &[&str]| {
        let mut a = vec!["ps", "-a", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = ok(d.docker(&a)).lines().map(str::to_string).collect();
        v.sort();
        v.join(",")
    };
    assert_eq!(names(&["--filter", "status=exited"]), "b1,c1");
    assert_eq!(names(&["--filter", "status=running"]), "a1");
    assert_eq!(names(&["--filter", "label=tier"]), "a1,b1");
    assert_eq!(names(&["--filter", "label=tier=db"]), "b1");
    assert_eq!(names(&["--filter", "exited=3"]), "b1");
    assert_eq!(names(&["--filter", "name=c1"]), "c1");
    assert_eq!(
        names(&[
            "--filter",
            "ancestor=fixture/app:1",
            "--filter",
            "status=running"
        ]),
        "a1"
    );
    let err = fails(d.docker(&["ps", "--filter", "colour=blue"]));
    assert!(err.contains("colour"), "{err}");

    // Inspect shows how it runs.
    assert_eq!(
        inspect(
            &d,
            "a1",
            "{{.Config.WorkingDir}} {{.Config.User}} {{.HostConfig.Init}}"
        ),
        "/tmp 1000 true"
    );
    let env = inspect(&d, "a1", "{{json .Config.Env}}");
    assert!(
        env.contains("\"FOO=bar\"") && env.contains("PATH="),
        "{env}"
    );
    let log_path = inspect(&d, "a1", "{{.LogPath}}");
    assert!(
        std::path::Path::new(&log_path).is_file(),
        "LogPath {log_path}"
    );
    // --init: PID 1 is the init, the command its child.
    let cmdline = ok(d.docker(&["exec", "a1", "cat", "/proc/1/cmdline"]));
    assert!(cmdline.starts_with("/sbin/docker-init"), "{cmdline:?}");

    // Rename.
    ok(d.docker(&["rename", "a1", "web"]));
    assert_eq!(inspect(&d, "web", "{{.Name}}"), "/web");
    let err = fails(d.docker(&["rename", "web", "b1"]));
    assert!(err.contains("already in use"), "{err}");
    let err = fails(d.docker(&["rename", "web", "bad/name"]));
    assert!(err.contains("Invalid container name"), "{err}");

    // Prune: only stopped containers, label filter honoured.
    let out = ok(d.docker(&["container", "prune", "-f", "--filter", "label=tier=db"]));
    assert!(out.contains("Deleted Containers"), "{out}");
    assert_eq!(names(&[]), "c1,web");
    ok(d.docker(&["container", "prune", "-f"]));
    assert_eq!(names(&[]), "web");
    ok(d.docker(&["rm", "-f", "web"]));
}

#[test]
fn logs_follow_since_and_tail() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_app();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "talker",
        "fixture/app:1",
        "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; echo done >&2",
    ]));
    // -f ends when the container exits, with every line.
    let mut child = Command::new("docker")
        .args(["logs", "-f", "talker"])
        .env("DOCKER_HOST", d.host())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().expect("wait");
    assert!(status.success());
    assert_eq!(lines, ["line 1", "line 2", "line 3", "line 4", "line 5"]);

    assert_eq!(
        ok(d.docker(&["logs", "--tail", "3", "talker"])).trim(),
        "line 4\nline 5"
    );
    let ts = ok(d.docker(&["logs", "-t", "--tail", "2", "talker"]));
    assert!(
        ts.trim().ends_with("line 5") && ts.starts_with("20"),
        "{ts}"
    );
    // --since in the future: nothing; --until in the past: nothing.
    assert_eq!(
        ok(d.docker(&["logs", "--since", "2099-01-01T00:00:00Z", "talker"])).trim(),
        ""
    );
    assert_eq!(
        ok(d.docker(&["logs", "--until", "2000-01-01T00:00:00Z", "talker"])).trim(),
        ""
    );
    assert_eq!(
        ok(d.docker(&["logs", "--since", "1h", "talker"]))
            .lines()
            .count(),
        5
    );
}

#[test]
fn health_checks_report_status_and_act_on_failure() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_app();
    // healthy, then unhealthy when the probe starts failing.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test \"$(cat /tmp/state)\" = ok",
        "--health-interval",
        "200ms",
        // The image's 1 s timeout is too short for a probe on a slow host (qemu's TCG).
        "--health-timeout",
        "20s",
        "--health-retries",
        "2",
        "fixture/app:1",
        "echo ok > /tmp/state; sleep 1000",
    ]));
    eventually("healthy", &d, || {
        inspect(&d, "hc", "{{.State.Health.Status}}") == "healthy"
    });
    let ps = ok(d.docker(&["ps", "--filter", "name=hc", "--format", "{{.Status}}"]));
    assert!(ps.contains("(healthy)"), "{ps}");
    assert_eq!(
        ok(d.docker(&["ps", "-q", "--filter", "health=healthy"]))
            .lines()
            .count(),
        1
    );
    ok(d.docker(&["exec", "hc", "sh", "-c", "echo bad > /tmp/state"]));
    eventually("unhealthy", &d, || {
        inspect(&d, "hc", "{{.State.Health.Status}}") == "unhealthy"
    });
    let streak: i64 = inspect(&d, "hc", "{{.State.Health.FailingStreak}}")
        .parse()
        .expect("n");
    assert!(streak >= 2, "failing streak {streak}");
    let log = inspect(&d, "hc", "{{json .State.Health.Log}}");
    assert!(log.contains("\"ExitCode\":1"), "{log}");
    // Without --health-on-failure berth only reports it, as Docker.
    assert_eq!(inspect(&d, "hc", "{{.State.Status}}"), "running");
    let ev = ok(d.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!("{}", chrono_now_secs() + 1),
        "--filter",
        "container=hc",
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]));
    assert!(
        ev.contains("health_status: healthy") && ev.contains("health_status: unhealthy"),
        "{ev}"
    );
    ok(d.docker(&["rm", "-f", "hc"]));

    // --health-on-failure=restart (the label, from the docker CLI): restarted in place.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "heal",
        "-l",
        "berth.health-on-failure=restart",
        "--health-cmd",
        "test \"$(cat /tmp/state)\" = ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "fixture/app:1",
        "echo ok > /tmp/state; sleep 1; echo bad > /tmp/state; sleep 1000",
    ]));
    eventually("restarted by its health check", &d, || {
        inspect(&d, "heal", "{{.RestartCount}}") != "0"
            && inspect(&d, "heal", "{{.State.Status}}") == "running"
    });
    ok(d.docker(&["rm", "-f", "heal"]));

    // =stop: stopped for good, even with --restart always.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "halt",
        "--restart",
        "always",
        "-l",
        "berth.health-on-failure=stop",
        "--health-cmd",
        "false",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "fixture/app:1",
        "sleep 1000",
    ]));
    eventually("stopped by its health check", &d, || {
        inspect(&d, "halt", "{{.State.Status}}") == "exited"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(inspect(&d, "halt", "{{.State.Status}}"), "exited");

    // A bad action is refused at create, naming the label.
    let err = fails(d.docker(&[
        "create",
        "-l",
        "berth.health-on-failure=explode",
        "fixture/app:1",
    ]));
    assert!(err.contains("berth.health-on-failure"), "{err}");
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn the_daemon_wide_log_default_applies_to_containers_that_set_none() {
    if !docker_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "log_max_size = \"1m\"\nlog_max_file = 2\n").expect("config");
    let d = Daemon::start_with(&["--config", cfg.to_str().expect("path")]);
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    // A flood of output: at most 2 files of 1 MiB (plus the record being written).
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "flood",
        "--no-healthcheck",
        "fixture/app:1",
        "i=0; while [ $i -lt 60000 ]; do echo line $i of a flood of output; i=$((i+1)); done",
    ]));
    assert_eq!(ok(d.docker(&["wait", "flood"])).trim(), "0");
    // Inspect shows what the container asked for (nothing, as Docker); the daemon's
    // defaults apply all the same (the files below).
    assert_eq!(
        inspect(&d, "flood", "{{json .HostConfig.LogConfig.Config}}"),
        "{}"
    );
    let log = std::path::PathBuf::from(inspect(&d, "flood", "{{.LogPath}}"));
    let dir_of_log = log.parent().expect("log dir");
    let total: u64 = std::fs::read_dir(dir_of_log)
        .expect("container dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        total <= 2 * 1024 * 1024 + 64 * 1024,
        "logs use {total} bytes"
    );
    // The newest lines are kept.
    let tail = ok(d.docker(&["logs", "--tail", "1", "flood"]));
    assert_eq!(tail.trim(), "line 59999 of a flood of output");
    // A container's own --log-opt wins over the default.
    ok(d.docker(&[
        "create",
        "--name",
        "own",
        "--log-opt",
        "max-size=5m",
        "fixture/app:1",
    ]));
    assert_eq!(
        inspect(
            &d,
            "own",
            "{{index .HostConfig.LogConfig.Config \"max-size\"}}"
        ),
        "5m",
        "shown as given, as Docker shows it"
    );
    // A bad default stops the daemon from starting, naming the key.
    std::fs::write(&cfg, "log_max_size = \"lots\"\n").expect("config");
    let out = std::process::Command::new(berth_bin())
        .args([
            "daemon",
            "--bridge",
            "none",
            "--config",
            cfg.to_str().expect("path"),
            "--root",
        ])
        .arg(dir.path().join("r2"))
        .arg("--host")
        .arg(format!("unix://{}", dir.path().join("s2.sock").display()))
        .output()
        .expect("run daemon");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("log_max_size"),
        "{out:?}"
    );
}

#[test]
fn a_container_directory_without_a_record_is_swept_at_start() {
    if !docker_available() {
        return;
    }
    let mut d = daemon_with_app();
    ok(d.docker(&["create", "--name", "keep", "fixture/app:1"]));
    // What a crash in the middle of a create leaves: a directory, no container.json.
    let stray = d.root.join("containers").join("f".repeat(64));
    std::fs::create_dir_all(stray.join("upper")).expect("stray dir");
    d.restart_after_sigkill();
    assert!(!stray.exists(), "the incomplete directory is still there");
    assert_eq!(inspect(&d, "keep", "{{.State.Status}}"), "created");
}

#[test]
fn health_checks_go_on_after_a_daemon_kill() {
    if !docker_available() || against_docker().is_some() {
        return;
    }
    let mut d = daemon_with_app();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test \"$(cat /tmp/state)\" = ok",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "20s",
        "--health-retries",
        "2",
        "fixture/app:1",
        "echo ok > /tmp/state; sleep 1000",
    ]));
    eventually("healthy", &d, || {
        inspect(&d, "hc", "{{.State.Health.Status}}") == "healthy"
    });
    d.restart_after_sigkill();
    // The last health stays (not `starting` again), and the probes run on: a failing
    // probe makes it unhealthy.
    assert_eq!(inspect(&d, "hc", "{{.State.Health.Status}}"), "healthy");
    ok(d.docker(&["exec", "hc", "sh", "-c", "echo bad > /tmp/state"]));
    eventually("unhealthy after the restart", &d, || {
        inspect(&d, "hc", "{{.State.Health.Status}}") == "unhealthy"
    });
    ok(d.docker(&["rm", "-f", "hc"]));
}
