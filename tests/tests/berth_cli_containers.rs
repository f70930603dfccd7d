//! berth's container verbs against the docker CLI on the same daemon: the same output
//! for `ps`, `inspect -f`, `logs` and `events`, `run`'s exit code and `--rm`, and the
//! create body's berth-only flag (`--health-on-failure`) reaching the daemon.
//!
//! Every test removes the containers it started (they outlive the test daemon).

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

/// A daemon with fixture/app:1 (entrypoint `/bin/sh -c`) loaded; every container is
/// force-removed when the test ends, pass or fail.
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
        let ids = String::from_utf8_lossy(&self.d.berth(&["ps", "-aq"]).stdout).into_owned();
        for id in ids.split_whitespace() {
            let _ = self.d.berth(&["rm", "-f", id]);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// berth's and docker's stdout for the same arguments, which must both succeed and be
/// equal. Output with relative times ("3 seconds ago") can differ when a second ticks
/// between the two runs: a few tries absorb that, a real difference stays.
fn same_output(d: &Daemon, args: &[&str]) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..5 {
        let docker = ok(d.docker(args));
        let berth = ok(d.berth(args));
        if docker == berth {
            return berth;
        }
        last = (docker, berth);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "berth {args:?} differs from docker's:\n--- docker\n{}\n--- berth\n{}",
        last.0, last.1
    );
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn berth_with_stdin(d: &Daemon, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(berth_bin())
        .arg("--host")
        .arg(d.host())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("berth")
}

#[test]
fn berth_ps_matches_docker_ps() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    // A running one, one that exited, one only created; one made by berth's CLI.
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "team=ops",
        "fixture/app:1",
        "echo started; sleep 300",
    ]));
    ok(d.docker(&["run", "-d", "--name", "done", "fixture/app:1", "exit 2"]));
    assert_eq!(ok(d.berth(&["wait", "done"])), "2\n");
    let created = ok(d.berth(&["create", "--name", "idle", "fixture/app:1"]));
    assert_eq!(created.trim().len(), 64, "create prints the ID: {created}");

    let table = same_output(d, &["ps"]);
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.contains("web"), "{table}");
    assert!(
        !table.contains("idle"),
        "ps without -a lists running ones only:\n{table}"
    );
    let all = same_output(d, &["ps", "-a"]);
    assert!(
        all.contains("idle") && all.contains("done") && all.contains("Exited (2)"),
        "{all}"
    );
    assert_eq!(same_output(d, &["ps", "-q"]).lines().count(), 1);
    same_output(d, &["ps", "-aq"]);
    same_output(d, &["ps", "-a", "--no-trunc"]);
    same_output(d, &["ps", "-n", "2"]);
    same_output(d, &["ps", "-l"]);
    same_output(d, &["ps", "-a", "-f", "status=exited"]);
    same_output(d, &["ps", "-a", "--filter", "label=team=ops"]);
    let json = same_output(d, &["ps", "-a", "--format", "json"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert!(
            v.get("Names").is_some() && v.get("RunningFor").is_some(),
            "{line}"
        );
    }
    same_output(
        d,
        &[
            "ps",
            "-a",
            "--format",
            "table {{.Names}}\t{{.State}}\t{{.Labels}}\t{{.Command}}",
        ],
    );
    same_output(
        d,
        &[
            "container",
            "ls",
            "-a",
            "--format",
            "{{.ID}} {{.Image}} {{.Status}}",
        ],
    );
    let err = fails(d.berth(&["ps", "--format", "{{.Nope}}"]));
    assert!(err.contains("Nope"), "{err}");
}

#[test]
fn berth_inspect_logs_and_events_match_docker() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    let t0 = unix_now() - 1;
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "talker",
        "-e",
        "WHO=berth",
        "fixture/app:1",
        "echo out-$WHO; echo err-line >&2; echo second",
    ]));
    assert_eq!(ok(d.berth(&["wait", "talker"])), "0\n");

    for f in [
        "{{.Name}} {{.State.Status}} {{.State.ExitCode}}",
        "{{json .Config.Env}}",
        "{{.Config.Image}} {{index .Config.Labels \"team\"}}",
        "{{.HostConfig.RestartPolicy.Name}} {{.Path}} {{join .Args \",\"}}",
    ] {
        same_output(d, &["inspect", "-f", f, "talker"]);
        same_output(d, &["container", "inspect", "--format", f, "talker"]);
    }
    let whole = same_output(d, &["inspect", "talker"]);
    let v: serde_json::Value = serde_json::from_str(&whole).expect("inspect JSON");
    assert_eq!(v[0]["Name"], "/talker");
    // The top-level inspect still finds images; --type narrows it.
    same_output(d, &["inspect", "-f", "{{.Id}}", "fixture/app:1"]);
    let err = fails(d.berth(&["inspect", "--type", "image", "talker"]));
    assert!(err.contains("talker"), "{err}");
    let err = fails(d.berth(&["inspect", "no-such-thing"]));
    assert!(err.contains("No such object: no-such-thing"), "{err}");

    // logs: stdout and stderr kept apart, as docker keeps them.
    let (docker, berth) = (d.docker(&["logs", "talker"]), d.berth(&["logs", "talker"]));
    assert!(berth.status.success());
    assert_eq!(text(&berth.stdout), "out-berth\nsecond\n");
    assert_eq!(text(&berth.stdout), text(&docker.stdout));
    assert_eq!(text(&berth.stderr), "err-line\n");
    assert_eq!(text(&berth.stderr), text(&docker.stderr));
    same_output(d, &["logs", "--tail", "1", "talker"]);
    same_output(d, &["logs", "-n", "1", "-t", "talker"]);
    same_output(d, &["logs", "--since", "1h", "talker"]);

    let t1 = (unix_now() + 1).to_string();
    let t0 = t0.to_string();
    let events = same_output(d, &["events", "--since", &t0, "--until", &t1]);
    let id = ok(d.berth(&["inspect", "-f", "{{.Id}}", "talker"]));
    let id = id.trim();
    assert!(
        events
            .lines()
            .any(|l| l.contains(&format!(" container start {id} (")) && l.contains("name=talker")),
        "{events}"
    );
    same_output(
        d,
        &[
            "events",
            "--since",
            &t0,
            "--until",
            &t1,
            "--filter",
            "event=die",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.exitCode}} {{.Actor.Attributes.name}}",
        ],
    );
    same_output(
        d,
        &["events", "--since", &t0, "--until", &t1, "--format", "json"],
    );
}

#[test]
fn berth_lifecycle_verbs() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&[
        "create",
        "--name",
        "svc",
        "--stop-timeout",
        "1",
        "fixture/app:1",
        "sleep 300",
    ]));
    assert_eq!(ok(d.berth(&["start", "svc"])), "svc\n");
    let state = |name: &str| {
        ok(d.berth(&["inspect", "-f", "{{.State.Status}}", name]))
            .trim()
            .to_string()
    };
    assert_eq!(state("svc"), "running");
    assert_eq!(ok(d.berth(&["restart", "-t", "1", "svc"])), "svc\n");
    assert_eq!(state("svc"), "running");
    assert_eq!(ok(d.berth(&["kill", "-s", "KILL", "svc"])), "svc\n");
    eventually("killed", d, || state("svc") == "exited");
    assert_eq!(ok(d.berth(&["rename", "svc", "svc2"])), "");
    assert_eq!(state("svc2"), "exited");
    ok(d.berth(&["container", "start", "svc2"]));
    assert_eq!(ok(d.berth(&["stop", "-t", "1", "svc2"])), "svc2\n");
    // Errors name the container, after the successes, with status 1.
    let out = d.berth(&["stop", "svc2", "nope"]);
    assert!(!out.status.success());
    assert_eq!(text(&out.stdout), "svc2\n");
    assert!(
        text(&out.stderr).contains("No such container: nope"),
        "{}",
        text(&out.stderr)
    );
    // rm -f of something missing is reported but not a failure, as docker does.
    let out = d.berth(&["rm", "-f", "nope"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(ok(d.berth(&["rm", "svc2"])), "svc2\n");

    ok(d.berth(&["run", "-d", "--name", "gone", "fixture/app:1", "true"]));
    ok(d.berth(&["wait", "gone"]));
    let out = ok(d.berth(&["container", "prune", "-f"]));
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "");
}

#[test]
fn berth_run_sends_health_on_failure_as_the_label() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&[
        "create",
        "--name",
        "hc",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--health-on-failure",
        "restart",
        "fixture/app:1",
        "sleep 300",
    ]));
    let labels = ok(d.docker(&["inspect", "-f", "{{json .Config.Labels}}", "hc"]));
    let v: serde_json::Value = serde_json::from_str(&labels).expect("labels");
    assert_eq!(v["berth.health-on-failure"], "restart");
    let hc = ok(d.docker(&["inspect", "-f", "{{json .Config.Healthcheck}}", "hc"]));
    let hc: serde_json::Value = serde_json::from_str(&hc).expect("healthcheck");
    assert_eq!(hc["Test"], serde_json::json!(["CMD-SHELL", "true"]));
    assert_eq!(hc["Interval"], 1_000_000_000i64);
    assert_eq!(hc["Retries"], 2);
    // A bad action is refused before anything is created.
    let err = fails(d.berth(&["create", "--health-on-failure", "explode", "fixture/app:1"]));
    assert!(err.contains("--health-on-failure"), "{err}");
    // An option berth cannot honour is refused, not ignored.
    let err = fails(d.berth(&["run", "-d", "--platform", "linux/arm64", "fixture/app:1"]));
    assert!(err.contains("not supported yet by berth"), "{err}");
    assert_eq!(ok(d.berth(&["ps", "-aq"])).lines().count(), 1);
}

#[test]
fn berth_run_missing_image_says_so_and_shows_the_pull_error() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    // No registry answers on this port: the pull fails and says why.
    let port = free_port();
    let image = format!("127.0.0.1:{port}/none/such");
    let out = d.berth(&["run", "-d", &image]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{image}:latest' locally")),
        "{err}"
    );
    assert!(err.lines().count() >= 2, "the pull's error follows: {err}");
    let err = fails(d.berth(&["run", "-d", "--pull", "never", &image]));
    assert!(!err.contains("Unable to find image"), "{err}");
}

/// The container as the daemon records it, without what differs per container (IDs,
/// names, times, paths, anonymous volume names).
fn comparable_inspect(d: &Daemon, name: &str) -> serde_json::Value {
    let out = ok(d.docker(&["inspect", name]));
    // The container's own ID appears in its cgroup path and files (Confinement).
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", name]));
    let out = out.replace(id.trim(), "ID");
    let mut v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    let mut v = v[0].take();
    // Anonymous volumes have names of their own.
    if let Some(serde_json::Value::Array(ms)) = v.pointer_mut("/Confinement/Spec/Mounts") {
        for m in ms {
            if m["Source"]
                .as_str()
                .is_some_and(|s| s.contains("/volumes/"))
            {
                m["Source"] = serde_json::Value::Null;
            }
        }
    }
    let serde_json::Value::Object(mut m) = v else {
        panic!("inspect of {name} is not an object")
    };
    for k in [
        "Id",
        "Name",
        "Created",
        "LogPath",
        "ResolvConfPath",
        "HostnamePath",
        "HostsPath",
    ] {
        m.remove(k);
    }
    if let Some(c) = m.get_mut("Config").and_then(|c| c.as_object_mut()) {
        c.remove("Hostname");
    }
    if let Some(serde_json::Value::Array(mounts)) = m.get_mut("Mounts") {
        for mount in mounts {
            if mount["Type"] == "volume" {
                mount["Name"] = serde_json::Value::Null;
                mount["Source"] = serde_json::Value::Null;
            }
        }
    }
    serde_json::Value::Object(m)
}

#[test]
fn berth_create_builds_the_body_docker_builds() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    let src = d.dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let bind = format!("{}:/data:ro", src.display());
    let mount = format!("type=bind,source={},target=/m,readonly", src.display());
    let flags: Vec<&str> = vec![
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--entrypoint",
        "/bin/sh",
        "-l",
        "team=ops",
        "-l",
        "bare",
        "--init",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "4",
        "--restart",
        "on-failure:2",
        "--health-cmd",
        "true",
        "--health-interval",
        "3s",
        "--health-retries",
        "4",
        "--health-start-period",
        "1s",
        "--network",
        "host",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "32m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "77",
        "--blkio-weight",
        "300",
        "--ulimit",
        "nofile=1024:2048",
        "--tmpfs",
        "/run:size=1m",
        "-v",
        &bind,
        "--mount",
        &mount,
        "-v",
        "/anon",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=2",
    ];
    let with = |name: &'static str| {
        let mut a = vec!["create", "--name", name];
        a.extend_from_slice(&flags);
        a.extend_from_slice(&["fixture/app:1", "-c", "echo hi"]);
        a
    };
    ok(d.docker(&with("by-docker")));
    ok(d.berth(&with("by-berth")));
    let (a, b) = (
        comparable_inspect(d, "by-docker"),
        comparable_inspect(d, "by-berth"),
    );
    assert_eq!(
        a, b,
        "the same flags make a different container:\n--- docker\n{a:#}\n--- berth\n{b:#}"
    );
    assert_eq!(b["HostConfig"]["Memory"], 64 << 20);
}

// ---- These need the attach endpoint (POST /containers/{id}/attach, hijacked). ----

#[test]
fn berth_run_foreground_exit_code_and_rm() {
    let env = Env::start();
    let d = &env.d;
    let out = d.berth(&["run", "--rm", "fixture/app:1", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "", "--rm leaves nothing");
    let out = d.berth(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "fixture/app:1",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    let out = d.berth(&[
        "run",
        "--name",
        "hi",
        "fixture/app:1",
        "echo hi; echo oops >&2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(
        ok(d.berth(&["inspect", "-f", "{{.State.Status}}", "hi"])).trim(),
        "exited"
    );
}

#[test]
fn berth_run_interactive_copies_stdin() {
    let env = Env::start();
    let d = &env.d;
    let out = berth_with_stdin(d, &["run", "--rm", "-i", "fixture/app:1", "cat"], b"hi\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
}

#[test]
fn berth_exec_output_and_exit_code() {
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&["run", "-d", "--name", "box", "fixture/app:1", "sleep 300"]));
    let out = ok(d.berth(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "echo $X $(pwd)",
    ]));
    assert_eq!(out, "1 /tmp\n");
    let out = d.berth(&["exec", "box", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = berth_with_stdin(d, &["exec", "-i", "box", "cat"], b"piped\n");
    assert_eq!(text(&out.stdout), "piped\n");
}

#[test]
fn berth_cp_both_ways() {
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&["run", "-d", "--name", "files", "fixture/app:1", "sleep 300"]));
    let dir = d.dir.path().join("cp");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let local = dir.join("greeting.txt");
    std::fs::write(&local, "from the host\n").expect("write");
    ok(d.berth(&["cp", local.to_str().expect("path"), "files:/tmp/"]));
    ok(d.berth(&[
        "cp",
        local.to_str().expect("path"),
        "files:/tmp/renamed.txt",
    ]));
    let back = dir.join("back.txt");
    ok(d.berth(&["cp", "files:/tmp/renamed.txt", back.to_str().expect("path")]));
    assert_eq!(
        std::fs::read_to_string(&back).expect("read"),
        "from the host\n"
    );
    ok(d.berth(&["cp", "files:/srv/app", dir.to_str().expect("path")]));
    assert!(dir.join("app/hello.txt").exists());
}

// ---- These need top, stats, pause and update. ----

#[test]
fn berth_top_stats_pause_update() {
    if !docker_available() {
        return;
    }
    let env = Env::start();
    let d = &env.d;
    ok(d.berth(&["run", "-d", "--name", "busy", "fixture/app:1", "sleep 300"]));
    let top = ok(d.berth(&["top", "busy"]));
    assert!(
        top.lines().next().is_some_and(|h| h.contains("PID")),
        "{top}"
    );
    assert!(top.contains("sleep 300"), "{top}");
    let stats = ok(d.berth(&["stats", "--no-stream", "busy"]));
    let header = stats.lines().next().unwrap_or_default();
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(stats.contains("busy"), "{stats}");
    assert_eq!(ok(d.berth(&["pause", "busy"])), "busy\n");
    same_output(d, &["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(ok(d.berth(&["unpause", "busy"])), "busy\n");
    assert_eq!(
        ok(d.berth(&["update", "--memory", "64m", "busy"])),
        "busy\n"
    );
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.Memory}}", "busy"])).trim(),
        (64 << 20).to_string()
    );
}
