//! `docker service logs` through the real docker CLI: every task's lines with the CLI's
//! `NAME.SLOT.TASK@NODE    | line` context (it parses the details berth sends), `--raw`,
//! `--no-task-ids`, `--tail` per task, `-t`, one task's logs, a TTY service's raw logs,
//! and `-f` following the tasks there are and the tasks started after it began. The
//! wire format (frames, details, timestamps first, Docker's errors) is checked through
//! curl on the API socket.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::*;

fn tools_available() -> bool {
    for tool in ["docker", "curl"] {
        if !have(tool) {
            eprintln!("{tool} not installed; skipping");
            return false;
        }
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

/// Polls `f` until it returns true (the services' loop starts tasks on its own).
fn eventually(what: &str, d: &Daemon, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("{what}: not reached in 60 s\n{}", d.log());
}

/// The lines `docker service logs ARGS` prints, stdout's then stderr's (the CLI prints
/// a task's stderr lines on its own stderr).
fn service_logs(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut full = vec!["service", "logs"];
    full.extend_from_slice(args);
    let out = d.docker(&full);
    assert!(
        out.status.success(),
        "docker {full:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_string)
        .collect()
}

/// `GET PATH` on the API socket: status and body.
fn api_get(d: &Daemon, path: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "%{http_code}", "--unix-socket"])
        .arg(&d.sock)
        .arg(format!("http://x{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let mut body = out.stdout;
    let split = body.len().saturating_sub(3);
    let status = String::from_utf8_lossy(&body[split..])
        .parse()
        .expect("status");
    body.truncate(split);
    (status, body)
}

/// The frames of a multiplexed stream: (stream, payload).
fn frames(mut b: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert!(b.len() >= 8 + n, "a cut frame: {b:?}");
        out.push((b[0], String::from_utf8_lossy(&b[8..8 + n]).into_owned()));
        b = &b[8 + n..];
    }
    assert!(b.is_empty(), "bytes after the last frame: {b:?}");
    out
}

/// Whether `s` is Docker's log timestamp: RFC 3339 in UTC with nine digits of fraction
/// (`2006-01-02T15:04:05.000000000Z`, Go's `RFC3339NanoFixed`).
fn is_timestamp(s: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddddddddZ";
    s.len() == shape.len()
        && s.bytes().zip(shape.bytes()).all(|(c, want)| {
            if want == b'd' {
                c.is_ascii_digit()
            } else {
                c == want
            }
        })
}

#[test]
fn service_logs_show_every_task_with_its_context() {
    if !tools_available() {
        return;
    }
    let d = swarm_with_app();
    ok(d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "talk",
        "--replicas",
        "2",
        // Not about health: a task replaced after a probe timed out on a loaded host
        // would add its lines to the exact counts below.
        "--no-healthcheck",
        "fixture/app:1",
        "echo out-$HOSTNAME; echo err-$HOSTNAME >&2; sleep 1000",
    ]));
    eventually("both tasks wrote their lines", &d, || {
        service_logs(&d, &["--raw", "talk"]).len() == 4
    });

    // The CLI's context: `talk.SLOT.TASKID@NODE    | line`, both slots, both streams.
    let lines = service_logs(&d, &["talk"]);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let mut per_slot = std::collections::BTreeMap::<String, Vec<String>>::new();
    for l in &lines {
        assert!(
            l.starts_with("talk.1.") || l.starts_with("talk.2."),
            "{lines:?}"
        );
        let (ctx, text) = l.split_once("    | ").expect("the CLI's separator");
        assert!(ctx.contains('@'), "{l}");
        // talk.N.TASKID (12 characters) @ node
        let task = ctx.split('@').next().unwrap_or_default();
        assert_eq!(task.len(), "talk.1.".len() + 12, "{l}");
        per_slot
            .entry(ctx[..6].to_string())
            .or_default()
            .push(text.to_string());
    }
    assert_eq!(per_slot.len(), 2, "{lines:?}");
    for texts in per_slot.values() {
        let mut texts = texts.clone();
        texts.sort();
        assert_eq!(texts.len(), 2, "{lines:?}");
        let host = texts[1].strip_prefix("out-").expect("an out- line");
        assert_eq!(texts[0], format!("err-{host}"), "{lines:?}");
    }

    // `--raw`: the lines alone.
    let raw: BTreeSet<String> = service_logs(&d, &["--raw", "talk"]).into_iter().collect();
    let texts: BTreeSet<String> = per_slot.values().flatten().cloned().collect();
    assert_eq!(raw, texts);

    // `--no-task-ids`: `talk.SLOT@NODE`.
    let lines = service_logs(&d, &["--no-task-ids", "talk"]);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("talk.1@") || l.starts_with("talk.2@")),
        "{lines:?}"
    );

    // `--tail 1` counts per task: one line of each.
    let lines = service_logs(&d, &["--tail", "1", "talk"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let slots: BTreeSet<&str> = lines.iter().map(|l| &l[..6]).collect();
    assert_eq!(slots.len(), 2, "{lines:?}");
    assert!(service_logs(&d, &["--tail", "0", "talk"]).is_empty());

    // `-t`: the time first, then the context.
    let lines = service_logs(&d, &["-t", "talk"]);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        let (time, rest) = l.split_once(' ').expect("a timestamp");
        assert!(is_timestamp(time), "{l}");
        assert!(rest.starts_with("talk."), "{l}");
    }

    // The wire: stdout only; then details and timestamps, timestamps first.
    let sid = ok(d.docker(&["service", "inspect", "talk", "--format", "{{.ID}}"]))
        .trim()
        .to_string();
    let (status, body) = api_get(&d, "/services/talk/logs?stdout=1");
    assert_eq!(status, 200);
    let f = frames(&body);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f.iter().all(|(s, l)| *s == 1 && l.starts_with("out-")),
        "{f:?}"
    );
    let (status, body) = api_get(
        &d,
        &format!("/services/{sid}/logs?stdout=1&stderr=1&details=1&timestamps=1"),
    );
    assert_eq!(status, 200);
    let f = frames(&body);
    assert_eq!(f.len(), 4, "{f:?}");
    let node = ok(d.docker(&["info", "--format", "{{.Swarm.NodeID}}"]))
        .trim()
        .to_string();
    for (stream, payload) in &f {
        let mut parts = payload.splitn(3, ' ');
        let (time, details, line) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        assert!(is_timestamp(time), "{payload}");
        let prefix = format!(
            "com.docker.swarm.node.id={node},com.docker.swarm.service.id={sid},com.docker.swarm.task.id="
        );
        assert!(details.starts_with(&prefix), "{payload}");
        assert_eq!(details.len(), prefix.len() + 25, "{payload}");
        let want = if *stream == 1 { "out-" } else { "err-" };
        assert!(line.starts_with(want) && line.ends_with('\n'), "{payload}");
    }

    // `--no-resolve --no-trunc`: the IDs the details carry, whole.
    let lines = service_logs(&d, &["--no-resolve", "--no-trunc", "talk"]);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        let (ctx, _) = l.split_once("    | ").expect("the CLI's separator");
        let (task, at) = ctx.split_once('@').expect("task@node");
        assert_eq!(at, node, "{l}");
        assert!(task.starts_with(&format!("{sid}.")), "{l}");
        assert_eq!(task.len(), sid.len() + ".1.".len() + 25, "{l}");
    }

    // Docker's refusals and words (its swarm router answers a plain error: 500).
    let (status, body) = api_get(&d, "/services/talk/logs");
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&body)
        .contains("Bad parameters: you must choose at least one stream"));
    let (status, body) = api_get(&d, "/services/talk/logs?stdout=1&tail=-1");
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&body).contains("negative tail values not supported"));
    let (status, body) = api_get(&d, "/services/nosuch/logs?stdout=1");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("service nosuch not found"));
    let (status, body) = api_get(&d, "/tasks/nosuch/logs?stdout=1");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("task nosuch not found"));

    // One task's logs, by ID and by a prefix of it.
    let task = ok(d.docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "name=talk.2",
        "talk",
    ]))
    .trim()
    .to_string();
    assert_eq!(task.len(), 25, "{task}");
    for key in [task.as_str(), &task[..10]] {
        let lines = service_logs(&d, &[key]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let ctx = format!("talk.2.{}@", &task[..12]);
        assert!(lines.iter().all(|l| l.starts_with(&ctx)), "{lines:?}");
    }

    // Neither a service nor a task: the CLI names what it looked for.
    let err = fails(d.docker(&["service", "logs", "nosuch"]));
    assert!(err.contains("nosuch"), "{err}");

    ok(d.docker(&["swarm", "leave", "--force"]));
}

#[test]
fn service_logs_follow_the_tasks_there_are_and_those_started_later() {
    if !tools_available() {
        return;
    }
    let d = swarm_with_app();
    ok(d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "tick",
        // Not about health: a replaced task would be a third host below.
        "--no-healthcheck",
        "fixture/app:1",
        "while true; do echo tick-$HOSTNAME; sleep 1; done",
    ]));
    eventually("the task ticks", &d, || {
        !service_logs(&d, &["--raw", "tick"]).is_empty()
    });

    // Follow from the start; a second replica started after it is followed as well.
    let out_path = d.dir.path().join("follow.out");
    let out = std::fs::File::create(&out_path).expect("follow output");
    let mut follow = d
        .docker_cmd(&["service", "logs", "-f", "--raw", "tick"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("docker service logs -f");
    let read = || -> Vec<String> {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    eventually("the follower printed the history", &d, || {
        !read().is_empty()
    });
    let at_start = read().len();
    ok(d.docker(&["service", "scale", "--detach", "tick=2"]));
    eventually("ticks of both tasks followed", &d, || {
        let lines = read();
        let hosts: BTreeSet<&String> = lines.iter().collect();
        lines.len() >= at_start + 2 && hosts.len() == 2
    });
    let _ = follow.kill();
    let _ = follow.wait();

    // A TTY service: its logs are raw, read with `--raw` (the CLI refuses to format them).
    ok(d.docker(&[
        "service",
        "create",
        "--detach",
        "--tty",
        "--name",
        "console",
        "fixture/app:1",
        "echo hi-tty; sleep 1000",
    ]));
    eventually("the TTY task wrote", &d, || {
        service_logs(&d, &["--raw", "console"])
            .iter()
            .any(|l| l.trim_end() == "hi-tty")
    });
    let err = fails(d.docker(&["service", "logs", "console"]));
    assert!(
        err.contains("tty service logs only supported with --raw"),
        "{err}"
    );

    // berth ends a follow when its service is removed (Docker 20.10 keeps it open).
    if against_docker().is_none() {
        let mut follow = d
            .docker_cmd(&["service", "logs", "-f", "tick"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker service logs -f");
        std::thread::sleep(Duration::from_secs(1));
        ok(d.docker(&["service", "rm", "tick"]));
        eventually("the follow ended with its service", &d, || {
            matches!(follow.try_wait(), Ok(Some(_)))
        });
    }

    ok(d.docker(&["swarm", "leave", "--force"]));
}
