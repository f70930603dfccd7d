//! Faults an operator's bad day brings, through the real docker CLI: berth keeps
//! control of what it started, loses nothing and says what happened.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn setup() -> Daemon {
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    d
}

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    ok(d.docker(&["inspect", "-f", format, name]))
        .trim()
        .to_string()
}

/// Polls `f` every 100 ms until it holds, for at most 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not reached within 30 s");
}

fn http_get(d: &Daemon, port: u16) -> std::io::Result<String> {
    d.in_netns(move || {
        let addr = (Ipv4Addr::LOCALHOST, port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

/// The parent PID and the state letter of a process (`None` once it is reaped).
fn ppid_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((f.next()?.parse().ok()?, state))
}

fn alive(pid: i32) -> bool {
    ppid_and_state(pid).is_some_and(|(_, s)| s != 'Z' && s != 'X')
}

/// The container's shim (the init's parent), killed with SIGKILL; the init's PID.
fn kill_shim(d: &Daemon, name: &str) -> i32 {
    let init: i32 = inspect(d, name, "{{.State.Pid}}").parse().expect("pid");
    let (shim, _) = ppid_and_state(init).expect("the init runs");
    let comm = std::fs::read_to_string(format!("/proc/{shim}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "berth-shim", "the init's parent");
    // SAFETY: kill(2) on a PID just read; no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(shim, libc::SIGKILL) }, 0);
    init
}

/// A container whose supervisor is killed does not run on unsupervised: its processes
/// are killed, inspect says it exited with 137, its published port is closed with it,
/// `docker start` gives it a fresh run; with a restart policy it comes back by itself.
#[test]
fn a_killed_shim_takes_its_container_down_and_the_restart_policy_applies() {
    if !docker_available() {
        return;
    }
    let d = setup();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1:8080:80",
        "fixture/app:1",
        "httpd -p 80 -h /etc; exec sleep 1000",
    ]));
    eventually("the server answers", || http_get(&d, 8080).is_ok());
    let id = inspect(&d, "web", "{{.Id}}");
    let init = kill_shim(&d, "web");
    eventually("web is reported exited", || {
        inspect(&d, "web", "{{.State.Status}}") == "exited"
    });
    assert_eq!(inspect(&d, "web", "{{.State.ExitCode}}"), "137");
    eventually("the init is gone", || !alive(init));
    // Nothing of the container runs: its cgroup is gone (every hierarchy), and the
    // server (a child of the init) with it.
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroups")
        .flatten()
    {
        let dir = e.path().join("berth").join(&id);
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert!(!std::path::Path::new("/sys/fs/cgroup/berth")
        .join(&id)
        .exists());
    assert!(http_get(&d, 8080).is_err(), "the port still answers");
    ok(d.docker(&["stop", "web"]));
    ok(d.docker(&["start", "web"]));
    eventually("the server answers again", || http_get(&d, 8080).is_ok());
    assert_eq!(inspect(&d, "web", "{{.State.Status}}"), "running");

    // With a restart policy the container is started again, as after any other exit.
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
    let first = kill_shim(&d, "svc");
    eventually("svc runs again", || {
        inspect(&d, "svc", "{{.State.Status}} {{.RestartCount}}") == "running 1"
    });
    let second: i32 = inspect(&d, "svc", "{{.State.Pid}}").parse().expect("pid");
    assert_ne!(first, second);
    assert!(!alive(first), "the first run's init still runs");

    // A shim killed while the daemon is down: found at start, the same way.
    let mut d = d;
    d.kill(libc::SIGKILL);
    let third = {
        let (shim, _) = ppid_and_state(second).expect("svc's init runs");
        // SAFETY: as in kill_shim.
        unsafe { libc::kill(shim, libc::SIGKILL) };
        second
    };
    d.start_again();
    eventually("svc runs a new init", || {
        inspect(&d, "svc", "{{.State.Status}}") == "running"
            && inspect(&d, "svc", "{{.State.Pid}}") != third.to_string()
    });
    eventually("the orphaned init is gone", || !alive(third));
    ok(d.docker(&["rm", "-f", "web", "svc"]));
}

/// Whether something is mounted on `path` (the host's mount table).
fn mounted(path: &std::path::Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = path.to_str().expect("path");
    table.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// A stopped container's rootfs is not mounted (as with Docker): it is mounted at start,
/// unmounted when the container exits, and a `docker cp` into a stopped container mounts
/// it only for the copy; what was written is there at the next start.
#[test]
fn a_stopped_container_s_rootfs_is_unmounted_and_mounted_again_at_start() {
    if !docker_available() {
        return;
    }
    let d = setup();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "rr",
        "fixture/app:1",
        "echo one > /mark; exec sleep 1000",
    ]));
    let id = inspect(&d, "rr", "{{.Id}}");
    let rootfs = d.root.join("containers").join(&id).join("rootfs");
    assert!(mounted(&rootfs), "a running container's rootfs is mounted");
    ok(d.docker(&["stop", "-t", "0", "rr"]));
    eventually("the rootfs is unmounted at stop", || !mounted(&rootfs));
    // cp into and out of the stopped container.
    let src = d.dir.path().join("f.txt");
    std::fs::write(&src, "two\n").expect("write");
    ok(d.docker(&["cp", src.to_str().expect("path"), "rr:/f.txt"]));
    assert!(!mounted(&rootfs), "cp leaves the rootfs unmounted");
    let out = d.dir.path().join("out");
    ok(d.docker(&["cp", "rr:/mark", out.to_str().expect("path")]));
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "one\n");
    assert!(!mounted(&rootfs));
    ok(d.docker(&["start", "rr"]));
    assert!(mounted(&rootfs), "mounted again at start");
    let seen = ok(d.docker(&["exec", "rr", "cat", "/mark", "/f.txt"]));
    assert_eq!(seen, "one\ntwo\n");
    ok(d.docker(&["kill", "rr"]));
    eventually("the rootfs is unmounted after a kill", || !mounted(&rootfs));
    // An exit of its own (not a stop) unmounts it too.
    ok(d.docker(&["run", "--name", "ee", "fixture/app:1", "true"]));
    let ee = inspect(&d, "ee", "{{.Id}}");
    let ee_rootfs = d.root.join("containers").join(&ee).join("rootfs");
    eventually("the rootfs is unmounted after the exit", || {
        !mounted(&ee_rootfs)
    });
    ok(d.docker(&["rm", "ee"]));
    ok(d.docker(&["rm", "rr"]));
}

/// Runs `curl` against the daemon's socket: (status code, body).
fn api(
    d: &Daemon,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.sock)
        .args(["-X", method]);
    match content_type {
        Some(ct) => {
            c.args(["-H", &format!("Content-Type: {ct}")]);
        }
        // curl sends a form type for -d unless told to send none.
        None => {
            c.args(["-H", "Content-Type:"]);
        }
    }
    if !body.is_empty() {
        c.args(["--data-binary", body]);
    }
    let out = ok(c
        .arg(format!("http://berth/v1.41{path}"))
        .output()
        .expect("curl"));
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.parse().expect("status"), body.to_string())
}

/// Requests Docker refuses are refused, with its status codes, and change nothing.
#[test]
fn sloppy_requests_are_refused_as_docker_refuses_them() {
    if !have("curl") {
        return;
    }
    let d = setup();
    let create = r#"{"Image":"fixture/app:1","Cmd":["true"]}"#;
    for (ct, body) in [(Some("text/plain"), create), (None, create)] {
        let (code, msg) = api(&d, "POST", "/containers/create?name=xx", ct, body);
        assert_eq!(code, 400, "{ct:?}: {msg}");
        assert!(msg.contains("application/json"), "{msg}");
    }
    let (code, msg) = api(
        &d,
        "POST",
        "/containers/create?name=xx",
        Some("application/json"),
        r#"{"Image":"fixture/app:1","HostConfig":{"ShmSize":-1}}"#,
    );
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("SHM size can not be less than 0"), "{msg}");
    let (code, msg) = api(&d, "GET", "/containers/json?limit=abc", None, "");
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("limit"), "{msg}");
    for (path, body) in [
        ("/networks/create", r#"{"Name":"n1"}"#),
        ("/volumes/create", r#"{"Name":"v1"}"#),
    ] {
        let (code, msg) = api(&d, "POST", path, Some("text/plain"), body);
        assert_eq!(code, 400, "{path}: {msg}");
    }
    // Nothing was made.
    assert!(ok(d.docker(&["ps", "-aq"])).trim().is_empty());
    assert!(!ok(d.docker(&["network", "ls"])).contains("n1"));
    assert!(!ok(d.docker(&["volume", "ls"])).contains("v1"));
    // The same requests, well formed, work (charset parameters are fine).
    let (code, msg) = api(
        &d,
        "POST",
        "/containers/create?name=xx",
        Some("application/json; charset=utf-8"),
        r#"{"Image":"fixture/app:1","HostConfig":{"ShmSize":0}}"#,
    );
    assert_eq!(code, 201, "{msg}");
    let (code, msg) = api(&d, "GET", "/containers/json?all=1&limit=1", None, "");
    assert_eq!(code, 200, "{msg}");
    assert!(msg.contains("\"/xx\""), "{msg}");
    ok(d.docker(&["rm", "xx"]));
}
