//! A service's published port through the real docker CLI: connections spread over the
//! ready replicas (nftables, no proxy); a replica that is not healthy yet gets none; 20
//! consecutive start-first rolling updates under a bounded load loop fail no request;
//! the port is the service's (another service or a container cannot take it) until the
//! service goes. Traffic stays in the daemon's own network namespace (127.0.0.1).

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_tests::*;

const PORT: u16 = 18080;

/// The wall clock as the daemon's log writes it (to place a failure in the log).
fn chrono_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

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

/// One request: connect to the published port, read the answer (a task's name).
fn request(port: u16) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Generous timeouts: a slow answer (a loaded 2-core host) is not a failed request.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(20))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    let name = out.trim().to_string();
    if name.is_empty() {
        return Err("an empty answer".into());
    }
    Ok(name)
}

/// The task names `n` requests reached.
fn names(d: &Daemon, n: usize) -> BTreeSet<String> {
    d.in_netns(|| {
        (0..n)
            .filter_map(|_| request(PORT).ok())
            .collect::<BTreeSet<_>>()
    })
}

/// The hostnames of the service's running task containers.
fn task_hostnames(d: &Daemon, name: &str) -> BTreeSet<String> {
    ok(d.docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
        "--format",
        "{{.ID}}",
    ]))
    .lines()
    .map(|id| {
        ok(d.docker(&["inspect", id, "--format", "{{.Config.Hostname}}"]))
            .trim()
            .to_string()
    })
    .collect()
}

#[test]
fn a_published_service_port_spreads_over_ready_replicas_and_survives_rolling_updates() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    ok(d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
    let serve = format!(
        "type=bind,source={},target=/serve,readonly",
        tcp_serve_binary().display()
    );
    let published = format!("{PORT}:7000");
    ok(d.docker(&[
        "service",
        "create",
        "--name",
        "lb",
        "--replicas",
        "2",
        "-p",
        &published,
        "--mount",
        &serve,
        // Ready once it listens: no connection goes to a task before.
        "--health-cmd",
        "test -e /tmp/ready",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "20s",
        "--update-order",
        "start-first",
        "--update-monitor",
        "500ms",
        "--stop-grace-period",
        "5s",
        "--restart-delay",
        "200ms",
        "fixture/app:1",
        "exec /serve 7000",
    ]));
    assert_eq!(
        ok(d.docker(&["service", "ls", "--format", "{{.Name}} {{.Ports}}"])).trim(),
        format!("lb *:{PORT}->7000/tcp")
    );
    // Connections reach every replica.
    eventually("both replicas answer", &d, || {
        names(&d, 40) == task_hostnames(&d, "lb") && task_hostnames(&d, "lb").len() == 2
    });
    ok(d.docker(&["service", "scale", "lb=3"]));
    eventually("three replicas answer", &d, || {
        let want = task_hostnames(&d, "lb");
        want.len() == 3 && names(&d, 60) == want
    });

    // The port is the service's.
    if against_docker().is_none() {
        let err = fails(d.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            "other",
            "-p",
            &published,
            "fixture/app:1",
            "sleep 1000",
        ]));
        assert!(err.contains("already in use by another service"), "{err}");
        let err = fails(d.docker(&["run", "-d", "-p", &published, "fixture/app:1", "sleep 1000"]));
        assert!(err.contains(&PORT.to_string()), "{err}");
    }

    // 20 rolling updates under load: not one failed request.
    let stop = AtomicBool::new(false);
    let (good, bad) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let slowest = std::sync::atomic::AtomicU64::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            d.in_netns(|| {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let r = request(PORT);
                    let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                    slowest.fetch_max(ms, Ordering::Relaxed);
                    match r {
                        Ok(_) => good.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors
                                .lock()
                                .expect("lock")
                                .push(format!("{} {e}", chrono_now()));
                            bad.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        });
        for i in 0..20 {
            let out = d.docker(&["service", "update", "--force", "lb"]);
            if !out.status.success() {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "update {i}: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    d.log()
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (good, bad) = (good.into_inner(), bad.into_inner());
    eprintln!(
        "20 rolling updates: {good} requests answered, {bad} failed, the slowest in {} ms",
        slowest.into_inner()
    );
    assert_eq!(
        bad,
        0,
        "{good} answered; failures: {:?}\n{}",
        errors.into_inner().expect("lock"),
        d.log()
    );
    assert!(good > 100, "the load loop ran: {good} requests");
    assert_eq!(
        ok(d.docker(&[
            "service",
            "inspect",
            "lb",
            "--format",
            "{{.UpdateStatus.State}}"
        ]))
        .trim(),
        "completed"
    );
    // (The last old task may still be finishing within its grace period.)
    eventually("three tasks after the updates", &d, || {
        task_hostnames(&d, "lb").len() == 3
    });
    let now = task_hostnames(&d, "lb");
    assert_eq!(names(&d, 60), now);

    // Removed: the port answers no more, and a container may publish it.
    ok(d.docker(&["service", "rm", "lb"]));
    eventually("the port released", &d, || {
        d.in_netns(|| request(PORT).is_err())
    });
    if against_docker().is_none() {
        eventually("a container may publish the port", &d, || {
            // A failed try may leave the container created (a name taken on the next).
            let _ = d.docker(&["rm", "-f", "after"]);
            d.docker(&[
                "run",
                "-d",
                "--name",
                "after",
                "-p",
                &published,
                "fixture/app:1",
                "sleep 1000",
            ])
            .status
            .success()
        });
        ok(d.docker(&["rm", "-f", "after"]));
    }
    ok(d.docker(&["swarm", "leave", "--force"]));
}
