//! `docker exec` against berth with the real docker CLI: output, exit codes, -e, -w, -u,
//! -i, -t, -d, --privileged, errors (missing binary, stopped container) and the
//! container's confinement (seccomp, no_new_privs, capabilities) in the exec'd process.
//!
//! Needs the shim and driver next to the daemon binary (`cargo build --workspace`) and a
//! host that can run containers (root, overlayfs, cgroup v2).

use std::io::Write;
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

/// A daemon with the fixture image and a running container `box` (`sleep 1000`).
fn daemon_with_running_container() -> Daemon {
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    ok(d.docker(&["run", "-d", "--name", "box", "fixture/app:1", "sleep 1000"]));
    d
}

/// Removes the named containers when the test ends, failed or not: containers outlive
/// the daemon, and these run `sleep 1000`.
struct Cleanup {
    host: String,
    config: std::path::PathBuf,
    names: &'static [&'static str],
}

impl Cleanup {
    fn new(d: &Daemon, names: &'static [&'static str]) -> Cleanup {
        Cleanup {
            host: d.host(),
            config: d.dir.path().join("docker-config"),
            names,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(self.names)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .output();
    }
}

/// A docker command with `stdin` fed to it.
fn docker_with_stdin(d: &Daemon, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run docker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("docker output")
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{field} not in {status}"))
}

#[test]
fn docker_exec_runs_commands_with_options_and_exit_codes() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_running_container();
    let _cleanup = Cleanup::new(&d, &["box", "done"]);

    assert_eq!(ok(d.docker(&["exec", "box", "echo", "hello"])), "hello\n");

    // The exit code propagates.
    let out = d.docker(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // -e adds to the container's environment; -w sets the working directory.
    assert_eq!(
        ok(d.docker(&["exec", "-e", "FOO=bar", "box", "sh", "-c", "echo $FOO"])),
        "bar\n"
    );
    let env_file = d.dir.path().join("exec.env");
    std::fs::write(&env_file, "FROM_FILE=yes\n").expect("env file");
    assert_eq!(
        ok(d.docker(&[
            "exec",
            "--env-file",
            env_file.to_str().expect("path"),
            "box",
            "sh",
            "-c",
            "echo $FROM_FILE"
        ])),
        "yes\n"
    );
    assert_eq!(
        ok(d.docker(&["exec", "-w", "/tmp", "box", "sh", "-c", "pwd"])),
        "/tmp\n"
    );

    // -u runs as another user.
    assert_eq!(
        ok(d.docker(&["exec", "-u", "1000:1000", "box", "sh", "-c", "id -u; id -g"])),
        "1000\n1000\n"
    );
    assert_eq!(ok(d.docker(&["exec", "box", "id", "-u"])), "0\n");
    let out = d.docker(&["exec", "-u", "nosuchuser", "box", "id"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    // Docker's message: found before the runtime runs, so without the OCI prefix.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "unable to find user nosuchuser: no matching entries in passwd file",
        "{out:?}"
    );

    // A missing binary: Docker's message and exit code 126 (127 is `docker run`'s).
    let out = d.docker(&["exec", "box", "no-such-binary"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("OCI runtime exec failed")
            && all.contains("exec: \"no-such-binary\": executable file not found in $PATH"),
        "{all}"
    );
    // A directory cannot be invoked: 126.
    let out = d.docker(&["exec", "box", "/tmp"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");

    // -i forwards stdin and closes it at its end.
    let out = docker_with_stdin(&d, &["exec", "-i", "box", "cat"], b"hi\n");
    assert_eq!(String::from_utf8_lossy(&ok(out).into_bytes()), "hi\n");
    let out = docker_with_stdin(
        &d,
        &["exec", "-i", "box", "busybox", "wc", "-c"],
        &[b'x'; 100_000],
    );
    assert_eq!(ok(out).trim(), "100000");

    // -d runs in the background: the file it creates appears.
    assert_eq!(
        ok(d.docker(&[
            "exec",
            "-d",
            "box",
            "sh",
            "-c",
            "touch /tmp/from-detached; exec sleep 1000"
        ])),
        ""
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d
        .docker(&["exec", "box", "sh", "-c", "test -e /tmp/from-detached"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the detached exec never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // It is listed in the container's ExecIDs while it runs; no exec that ended is
    // (one the CLI created but could not start stays listed, as with Docker). The
    // image's health check (`/bin/cat /srv/app/hello.txt` every 2 s) is an exec too, as in
    // Docker, and is listed while a probe runs: on a slow host one may be running now.
    let ids = ok(d.docker(&["inspect", "box", "--format", "{{json .ExecIDs}}"]));
    let ids: Vec<String> = serde_json::from_str(ids.trim()).expect("ExecIDs");
    let execs: Vec<serde_json::Value> = ids.iter().map(|id| exec_json(&d, id)).collect();
    let is_probe = |e: &serde_json::Value| {
        e["ProcessConfig"]["entrypoint"] == "/bin/cat"
            && e["ProcessConfig"]["arguments"] == serde_json::json!(["/srv/app/hello.txt"])
    };
    let running: Vec<&serde_json::Value> = execs
        .iter()
        .filter(|e| e["Running"] == true && !is_probe(e))
        .collect();
    assert_eq!(running.len(), 1, "{execs:?}");
    assert_eq!(
        running[0]["ProcessConfig"]["arguments"][1], "touch /tmp/from-detached; exec sleep 1000",
        "{execs:?}"
    );
    assert!(
        execs.iter().all(|e| e["ExitCode"].is_null() || is_probe(e)),
        "an exec that ended is listed: {execs:?}"
    );
}

/// `GET /exec/{id}/json` on the daemon's socket (the docker CLI has no exec inspect).
fn exec_json(d: &Daemon, id: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(s, "GET /exec/{id}/json HTTP/1.0\r\nHost: berth\r\n\r\n").expect("request");
    let mut r = String::new();
    s.read_to_string(&mut r).expect("response");
    let body = r.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("exec {id}: {e}: {r}"))
}

#[test]
fn docker_exec_with_a_tty() {
    if !docker_available() || !have("script") {
        return;
    }
    let d = daemon_with_running_container();
    let _cleanup = Cleanup::new(&d, &["box", "done"]);
    // `script` gives the docker CLI a terminal, so -t is honoured end to end.
    let cmd = "docker exec -it box busybox tty; docker exec -it box sh -c 'exit 3'; echo code=$?";
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        // (`script` may echo a NUL it sends at its stdin's EOF before the name: `^@`.)
        text.lines()
            .any(|l| l.trim().trim_start_matches("^@").starts_with("/dev/pts/")),
        "{text}\n{}",
        d.log()
    );
    assert!(text.contains("code=3"), "{text}");
    // Without a terminal on the client, -t still gives the process one.
    let out = ok(d.docker(&["exec", "-t", "box", "sh", "-c", "test -t 0 && echo tty"]));
    assert_eq!(out.trim(), "tty");
}

#[test]
fn docker_exec_keeps_the_containers_confinement_and_refuses_stopped_containers() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_running_container();
    let _cleanup = Cleanup::new(&d, &["box", "done"]);
    let status = ok(d.docker(&["exec", "box", "cat", "/proc/self/status"]));
    assert_eq!(status_field(&status, "Seccomp:"), "2", "{status}");
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{status}");
    let init = ok(d.docker(&["exec", "box", "cat", "/proc/1/status"]));
    assert_eq!(
        status_field(&status, "CapEff:"),
        status_field(&init, "CapEff:"),
        "the exec'd process has the container's capabilities"
    );
    assert_eq!(
        status_field(&status, "CapBnd:"),
        status_field(&init, "CapBnd:")
    );
    // --privileged: every capability (CAP_SYS_ADMIN is bit 21), still under seccomp.
    let p = ok(d.docker(&["exec", "--privileged", "box", "cat", "/proc/self/status"]));
    let eff = u64::from_str_radix(status_field(&p, "CapEff:"), 16).expect("hex");
    let base = u64::from_str_radix(status_field(&status, "CapEff:"), 16).expect("hex");
    assert!(
        eff & (1 << 21) != 0 && base & (1 << 21) == 0,
        "{eff:x} {base:x}"
    );
    assert_eq!(eff & base, base);
    assert_eq!(status_field(&p, "Seccomp:"), "2");

    // Exec into a stopped container is refused, naming it.
    let id = ok(d.docker(&["run", "-d", "--name", "done", "fixture/app:1", "true"]));
    let id = id.trim();
    assert_eq!(ok(d.docker(&["wait", "done"])).trim(), "0");
    let err = fails(d.docker(&["exec", "done", "echo", "x"]));
    assert!(err.contains(id) && err.contains("is not running"), "{err}");
    let err = fails(d.docker(&["exec", "no-such-container", "echo", "x"]));
    assert!(
        err.contains("No such container: no-such-container"),
        "{err}"
    );
    // Exec into a paused container is refused.
    ok(d.docker(&["pause", "box"]));
    let err = fails(d.docker(&["exec", "box", "echo", "x"]));
    assert!(
        err.contains("is paused, unpause the container before exec"),
        "{err}"
    );
    ok(d.docker(&["unpause", "box"]));
    assert_eq!(ok(d.docker(&["exec", "box", "echo", "x"])), "x\n");
    // Relative working directories are refused.
    let err = fails(d.docker(&["exec", "-w", "tmp", "box", "sh", "-c", "pwd"]));
    assert!(err.contains("absolute path"), "{err}");
}

#[test]
fn an_exec_outlives_a_killed_daemon() {
    if !docker_available() {
        return;
    }
    let mut d = daemon_with_running_container();
    let _cleanup = Cleanup::new(&d, &["box"]);
    // Waits for /tmp/go, then leaves /tmp/done.
    ok(d.docker(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; touch /tmp/done",
    ]));
    d.restart_after_sigkill();
    // The exec instance was in the old daemon's memory only, as in Docker: none is
    // listed but, on a slow host, a probe of the image's health check running now.
    let ids = ok(d.docker(&["inspect", "box", "--format", "{{json .ExecIDs}}"]));
    let ids: Option<Vec<String>> = serde_json::from_str(ids.trim()).expect("ExecIDs");
    for id in ids.unwrap_or_default() {
        let e = exec_json(&d, &id);
        assert_eq!(
            e["ProcessConfig"]["arguments"],
            serde_json::json!(["/srv/app/hello.txt"]),
            "an exec of the killed daemon is listed: {e}"
        );
    }
    ok(d.docker(&["exec", "box", "busybox", "touch", "/tmp/go"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d
        .docker(&["exec", "box", "sh", "-c", "test -e /tmp/done"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the exec'd process did not survive the daemon"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
