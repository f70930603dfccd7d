//! `docker run --rm` as a user sees it (issue 17): the exit code, the container gone when
//! the CLI returns (its name free at once), and on the default bridge no interface,
//! namespace, address or rule left behind — after many runs in parallel once the daemon
//! settles, and when the daemon is stopped right after the runs (the kernel's part of a
//! bridge teardown happens after the exit is reported; it must still be complete before
//! the daemon exits).
//!
//! Each daemon runs in a network namespace of its own (see the harness).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use berth_tests::*;

/// berth's veths in the daemon's namespace.
fn berth_veths(d: &Daemon) -> Vec<String> {
    let out = d.netns_cmd(&["ip", "-o", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("bth"))
        .collect()
}

/// The addresses on the default bridge (the gateway's only, once nothing runs).
fn bridge_addresses(d: &Daemon) -> String {
    let out = d
        .netns_cmd(&["ip", "-o", "addr", "show", "dev", "berth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect::<Vec<_>>()
        .join(" ")
}

/// berth's nftables table (it has no counters).
fn berth_rules(d: &Daemon) -> String {
    let out = d
        .netns_cmd(&["nft", "list", "table", "ip", "berth"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.root.join("netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Containers, veths and namespace files left (all empty once settled).
fn leftovers(d: &Daemon) -> (String, Vec<String>, Vec<String>) {
    (ok(d.docker(&["ps", "-aq"])), berth_veths(d), netns_files(d))
}

#[test]
fn run_rm_returns_the_exit_code_with_the_container_gone() {
    let Some(d) = docker_cli_daemon() else { return };
    for network in ["none", "bridge"] {
        let run_once = |cmd: &str| {
            let args = ["run", "--rm", "--name", "once", "--network", network];
            d.docker(&[&args[..], &["fixture/app:1", cmd]].concat())
        };
        let out = run_once("exit 3");
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        // Gone when the CLI returns: not listed, not found, its name free again.
        assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
        let err = fails(d.docker(&["inspect", "once"]));
        assert!(err.contains("No such"), "{err}");
        ok(run_once("true"));
    }
    // A stopped container on the bridge holds no interface once `stop` returns.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "held",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    assert_eq!(berth_veths(&d).len(), 1);
    // libcontainer's state of the running container is under /run, not in its directory.
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "held"]));
    assert_eq!(d.runtime_state_entries(), vec![id.trim().to_string()]);
    assert!(!d
        .root
        .join("containers")
        .join(id.trim())
        .join("runtime")
        .exists());
    ok(d.docker(&["stop", "-t", "0", "held"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    // Started again, its interfaces come back (same names as the last run's).
    ok(d.docker(&["start", "held"]));
    assert_eq!(berth_veths(&d).len(), 1);
    ok(d.docker(&["rm", "-f", "held"]));
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    // Removed with the container, as the state of every `--rm` run before.
    assert!(
        d.runtime_state_entries().is_empty(),
        "{:?}",
        d.runtime_state_entries()
    );
}

#[test]
fn many_parallel_run_rm_on_the_bridge_leave_nothing_once_the_daemon_settles() {
    let Some(d) = docker_cli_daemon() else { return };
    let rules_before = berth_rules(&d);
    let addresses_before = bridge_addresses(&d);
    assert!(!addresses_before.is_empty());
    // 100 runs, 20 at a time, alternately on the bridge and with no network.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= 100 {
                    break;
                }
                let network = if i % 4 == 3 { "none" } else { "bridge" };
                let out = d.docker(&[
                    "run",
                    "--rm",
                    "--network",
                    network,
                    "fixture/app:1",
                    &format!("exit {}", i % 7),
                ]);
                if out.status.code() != Some((i % 7) as i32) {
                    failures.lock().unwrap().push(format!("run {i}: {out:?}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    // Every container is gone when its CLI returns; the kernel's part of the bridge
    // teardowns may still be under way for a moment.
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (containers, veths, netns) = leftovers(&d);
        if containers.is_empty() && veths.is_empty() && netns.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after 30 s: containers {containers:?}, veths {veths:?}, namespaces {netns:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(bridge_addresses(&d), addresses_before);
    assert_eq!(berth_rules(&d), rules_before);
    // Each shim removes its container's runtime state right after it reported the exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.runtime_state_entries().is_empty() {
        assert!(
            Instant::now() < deadline,
            "runtime state left after 30 s: {:?}",
            d.runtime_state_entries()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Removed containers' directories are deleted too.
    let removed = d.root.join("removed-containers");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&removed).is_ok_and(|mut rd| rd.next().is_some()) {
        assert!(Instant::now() < deadline, "{removed:?} not emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The addresses were all given back: the next container still gets one.
    ok(d.docker(&["run", "--rm", "fixture/app:1", "true"]));
}

#[test]
fn a_deferred_bridge_teardown_is_finished_before_the_daemon_exits() {
    let Some(mut d) = docker_cli_daemon() else {
        return;
    };
    for _ in 0..5 {
        ok(d.docker(&["run", "--rm", "fixture/app:1", "true"]));
    }
    ok(d.docker(&["run", "-d", "--name", "brief", "fixture/app:1", "true"]));
    // Its exit recorded (the daemon may not have handled it yet), the daemon is stopped
    // at once (SIGTERM, waited for): the exit is handled, and whatever the teardown
    // thread had left to do is done, before the daemon is gone.
    assert_eq!(ok(d.docker(&["wait", "brief"])).trim(), "0");
    d.kill(libc::SIGTERM);
    assert!(berth_veths(&d).is_empty(), "{:?}", berth_veths(&d));
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    // No container runs: the daemon's runtime state directory went with it (each shim
    // removes its container's at the exit).
    assert!(
        !d.runtime_state().exists(),
        "{:?}",
        d.runtime_state_entries()
    );
    // The next daemon runs containers as before.
    d.start_again();
    ok(d.docker(&["rm", "brief"]));
    ok(d.docker(&["run", "--rm", "fixture/app:1", "true"]));
}

#[test]
fn runtime_state_left_by_removed_containers_is_swept_when_the_daemon_starts() {
    let Some(mut d) = docker_cli_daemon() else {
        return;
    };
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "kept",
        "fixture/app:1",
        "exec sleep 60",
    ]));
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "kept"]))
        .trim()
        .to_string();
    // What a crash between a removal and the deletion of its runtime state leaves.
    let gone = "0".repeat(64);
    let stale = d.runtime_state().join(&gone).join(&gone);
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("state.json"), "{}").unwrap();
    d.restart_after_sigkill();
    // The running container's state is kept (an exec into it finds it), the rest goes.
    assert_eq!(d.runtime_state_entries(), vec![id.clone()]);
    assert_eq!(ok(d.docker(&["exec", "kept", "echo", "in"])).trim(), "in");
    ok(d.docker(&["rm", "-f", "kept"]));
    assert!(
        d.runtime_state_entries().is_empty(),
        "{:?}",
        d.runtime_state_entries()
    );
}

/// One request on a connection of its own (`Connection: close`): the status code and the
/// body.
fn api(d: &Daemon, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// The shim reports the exit before it removes the container's cgroups and runtime state;
/// a start sent the moment the exit is reported waits for that, so it never meets the
/// last run's state (libcontainer: "container already exists") or has its new cgroup
/// removed under it.
#[test]
fn a_container_started_again_the_moment_it_exits_runs_every_time() {
    let Some(d) = docker_cli_daemon() else { return };
    ok(d.docker(&[
        "create",
        "--name",
        "again",
        "--network",
        "none",
        "fixture/app:1",
        "sleep 0.1",
    ]));
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "again"]))
        .trim()
        .to_string();
    let dir = d.root.join("containers").join(&id);
    // The shim's lock on the container's directory (the on-disk protocol): whether
    // someone holds it now.
    let locked = || {
        let f = std::fs::File::open(&dir).unwrap();
        // SAFETY: flock on a descriptor this closure owns; closing it releases the lock.
        let r = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        r != 0
    };
    assert!(!locked(), "a created container has no shim");
    for i in 0..25 {
        let (code, body) = api(&d, "POST", "/containers/again/start");
        assert_eq!(code, 204, "start {i}: {body}\n{}", d.log());
        if i == 0 {
            assert!(locked(), "the running container's shim holds its directory");
        }
        // Answered at the exit; the next start follows without a pause.
        let (code, body) = api(&d, "POST", "/containers/again/wait");
        assert_eq!(code, 200, "wait {i}: {body}");
        assert!(body.contains("\"StatusCode\":0"), "wait {i}: {body}");
    }
    // The last shim exits once its cleanup is done: nothing keeps the lock.
    let deadline = Instant::now() + Duration::from_secs(30);
    while locked() {
        assert!(
            Instant::now() < deadline,
            "the lock is still held after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(d.docker(&["rm", "-f", "again"]));
    // A user's rm waits for the shim: nothing of it is left when it returns.
    assert!(
        d.runtime_state_entries().is_empty(),
        "{:?}",
        d.runtime_state_entries()
    );
}
