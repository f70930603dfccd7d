//! Container stdio with the real docker CLI: foreground `docker run` (attach before
//! start, no output lost), stdout/stderr kept apart, stdin (`-i`), TTY (`-it` driven on a
//! pseudo-terminal), resize, detach keys, `docker attach`, `docker start -a[i]`, exit
//! codes, and the raw log of a TTY container.
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs, cgroup v2).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use berth_tests::*;

const IMAGE: &str = "fixture/app:1";

/// A daemon with the fixture image loaded (its entrypoint is `/bin/sh -c`), or None
/// when the docker CLI is missing.
/// Runs `tests/sdk/pty_docker.py` on a ROWS×COLS terminal: the docker CLI with `args`,
/// following `steps`. Returns its report (`exit N` last).
fn on_pty(d: &Daemon, rows: u16, cols: u16, steps: &str, args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/pty_docker.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(steps)
        .arg(rows.to_string())
        .arg(cols.to_string())
        .arg("docker")
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .expect("python3");
    let report = ok(out);
    assert!(report.contains("exit "), "{report}");
    report
}

#[test]
fn foreground_run_prints_all_output_every_time() {
    let Some(d) = docker_cli_daemon() else { return };
    for i in 0..20 {
        let name = format!("fg{i}");
        // Every other run with --rm (the CLI then waits for condition=removed).
        let out = if i % 2 == 0 {
            d.docker(&["run", "--name", &name, IMAGE, "echo hello"])
        } else {
            d.docker(&["run", "--rm", "--name", &name, IMAGE, "echo hello"])
        };
        assert_eq!(ok(out), "hello\n", "run {i}: {}", d.log());
    }
    let names = ok(d.docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert_eq!(
        names.lines().count(),
        10,
        "the --rm containers are gone: {names}"
    );
    // A burst larger than the pipes' buffers arrives whole and in order.
    let out = ok(d.docker(&["run", IMAGE, "busybox seq 1 20000"]));
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert!(out == expected, "seq output differs (len {})", out.len());
}

#[test]
fn stdout_and_stderr_stay_apart_and_the_exit_code_is_the_containers() {
    let Some(d) = docker_cli_daemon() else { return };
    let script = "echo out; echo err >&2; exit 3";
    let out = d.docker(&["run", IMAGE, script]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = d.docker(&["run", IMAGE, "exit 0"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn stdin_is_piped_into_the_container_and_eof_ends_it() {
    let Some(d) = docker_cli_daemon() else { return };
    let mut child = d
        .docker_cmd(&["run", "-i", IMAGE, "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hi\nthere\n")
        .expect("write");
    let out = child.wait_with_output().expect("docker");
    assert_eq!(ok(out), "hi\nthere\ndone\n");

    // Without -i the container's stdin is empty (/dev/null), whatever the CLI gets.
    let mut child = d
        .docker_cmd(&["run", IMAGE, "cat; echo empty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker");
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"ignored\n")
        .expect("write");
    let out = child.wait_with_output().expect("docker");
    assert_eq!(ok(out), "empty\n");

    // docker start -ai: the same with a created container.
    ok(d.docker(&["create", "-i", "--name", "sai", IMAGE, "cat"]));
    let mut child = d
        .docker_cmd(&["start", "-ai", "sai"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"again\n")
        .expect("write");
    let out = child.wait_with_output().expect("docker");
    assert_eq!(ok(out), "again\n");
    let cfg = ok(d.docker(&[
        "inspect",
        "sai",
        "--format",
        "{{.Config.OpenStdin}} {{.Config.StdinOnce}} {{.Config.Tty}} {{.Config.AttachStdin}}",
    ]));
    assert_eq!(cfg.trim(), "true true false true");
}

#[test]
fn start_a_prints_the_output_of_a_created_container() {
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&[
        "create",
        "--name",
        "sa",
        IMAGE,
        "echo started; echo oops >&2; exit 2",
    ]));
    let out = d.docker(&["start", "-a", "sa"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n", "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n", "{out:?}");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn tty_run_is_interactive_resizes_and_logs_raw() {
    let Some(d) = docker_cli_daemon() else { return };
    // The CLI sends its terminal's size at create; the shell sees it, then a resize.
    let steps = r##"[["expect", "# "],
        ["send", "busybox tty; busybox stty size\n"], ["expect", "/dev/pts/"], ["expect", "33 101"],
        ["resize", 40, 120], ["until", "busybox stty size\n", "40 120"],
        ["send", "exit 5\n"]]"##;
    let report = on_pty(
        &d,
        33,
        101,
        steps,
        &["run", "-it", "--name", "t1", IMAGE, "sh"],
    );
    assert!(report.trim_end().ends_with("exit 5"), "{report}");
    let cfg = ok(d.docker(&["inspect", "t1", "--format", "{{.Config.Tty}}"]));
    assert_eq!(cfg.trim(), "true");

    // A TTY container's log is raw terminal output: no multiplexing headers, CRLF.
    ok(d.docker(&[
        "run",
        "-d",
        "-t",
        "--name",
        "t2",
        IMAGE,
        "echo tty-out; busybox tty",
    ]));
    assert_eq!(ok(d.docker(&["wait", "t2"])).trim(), "0");
    let out = d.docker(&["logs", "t2"]);
    let logs = ok(out);
    assert!(
        logs.starts_with("tty-out\r\n/dev/pts/"),
        "tty log not raw: {logs:?}"
    );
}

#[test]
fn detach_keys_leave_the_container_running_and_attach_reconnects() {
    let Some(d) = docker_cli_daemon() else { return };
    let steps = r##"[["expect", "# "], ["send", "echo f$((1+1))z\n"], ["expect", "f2z"],
        ["send", "\u0010\u0011"]]"##;
    let report = on_pty(
        &d,
        24,
        80,
        steps,
        &["run", "-it", "--name", "det", IMAGE, "sh"],
    );
    assert!(report.trim_end().ends_with("exit 0"), "{report}");
    let running = ok(d.docker(&["inspect", "det", "--format", "{{.State.Running}}"]));
    assert_eq!(running.trim(), "true", "detached container stopped");

    // docker attach to it again; it ends with the container.
    let steps = r##"[["until", "echo a$((2+3))z\n", "a5z"], ["send", "exit 7\n"]]"##;
    let report = on_pty(&d, 24, 80, steps, &["attach", "det"]);
    assert!(report.trim_end().ends_with("exit 7"), "{report}");
    let code = ok(d.docker(&["inspect", "det", "--format", "{{.State.ExitCode}}"]));
    assert_eq!(code.trim(), "7");
}

#[test]
fn attach_to_a_running_container_streams_its_output() {
    let Some(d) = docker_cli_daemon() else { return };
    let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    ok(d.docker(&["run", "-d", "--name", "ticker", IMAGE, script]));
    let mut child = d
        .docker_cmd(&["attach", "ticker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker attach");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = lines.next().expect("attach ended early").expect("read");
        seen.push(line);
    }
    assert!(seen.iter().all(|l| l.starts_with("tick ")), "{seen:?}");
    // Consecutive: nothing dropped between chunks.
    let n: Vec<u64> = seen
        .iter()
        .map(|l| l["tick ".len()..].parse().expect("number"))
        .collect();
    assert_eq!(n[1], n[0] + 1);
    assert_eq!(n[2], n[1] + 1);
    // The attach ends when the container does, with its exit code.
    ok(d.docker(&["kill", "ticker"]));
    for l in lines.by_ref() {
        l.expect("read");
    }
    let status = child.wait().expect("docker attach");
    assert_eq!(status.code(), Some(137));
}

#[test]
fn attach_and_resize_errors_are_clear() {
    let Some(d) = docker_cli_daemon() else { return };
    let err = fails(d.docker(&["attach", "nosuch"]));
    assert!(err.contains("No such container"), "{err}");
    ok(d.docker(&["run", "-d", "--name", "plain", IMAGE, "sleep 30"]));
    // No TTY: the API refuses a resize (the CLI's `container attach` does not resize).
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg("--unix-socket")
        .arg(&d.sock)
        .arg("http://d/containers/plain/resize?h=10&w=10")
        .output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "409");
    }
    ok(d.docker(&["kill", "plain"]));
}

#[test]
fn an_attached_client_that_does_not_read_never_blocks_the_container() {
    let Some(d) = docker_cli_daemon() else { return };
    let id = ok(d.docker(&[
        "create",
        "--name",
        "flood",
        IMAGE,
        "busybox seq 1 300000; echo end",
    ]));
    let id = id.trim();
    // Attach (before start, so every byte is meant for this client) and never read.
    let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(
        conn,
        "POST /containers/{id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut conn, &mut b).expect("response head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // ~2 MB of output: far more than the client's queue and the socket buffers.
    ok(d.docker(&["start", "flood"]));
    assert_eq!(ok(d.docker(&["wait", "flood"])).trim(), "0");
    let tail = ok(d.docker(&["logs", "--tail", "2", "flood"]));
    assert_eq!(tail, "300000\nend\n", "the log has everything");
    drop(conn);
}

/// `attach?logs=1&stream=0` (the Docker SDK's `attach(logs=True, stream=False)`): the
/// whole log, framed per stream, then the connection ends; many records arrive whole,
/// in order, however the daemon chunks them.
#[test]
fn attach_with_logs_sends_the_whole_log_framed() {
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&[
        "run",
        "--name",
        "talker",
        "--no-healthcheck",
        IMAGE,
        "busybox seq 1 20000; echo oops >&2",
    ]));
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "talker"]));
    let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(
        conn,
        "POST /containers/{}/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        id.trim()
    )
    .expect("send");
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut conn, &mut all).expect("read");
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    assert!(
        all.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&all[..head_end])
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut rest = &all[head_end..];
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a frame header cut short");
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let payload = &rest[8..8 + len];
        match rest[0] {
            1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            s => panic!("stream {s}"),
        }
        rest = &rest[8 + len..];
    }
    let want: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out), want);
    assert_eq!(err, b"oops\n");
}
