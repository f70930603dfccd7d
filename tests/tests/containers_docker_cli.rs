//! The real docker CLI runs containers on berth: run -d, wait, logs, ps, inspect, rm,
//! and rmi refused while a container uses the image.
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs, cgroup v2).

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

#[test]
fn docker_cli_runs_waits_logs_lists_and_removes_containers() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));

    let id = ok(d.docker(&["run", "-d", "--name", "app", "fixture/app:1"]));
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "container ID {id:?}");
    assert_eq!(ok(d.docker(&["wait", "app"])).trim(), "0");

    let logs = d.docker(&["logs", "app"]);
    let out = ok(logs);
    assert_eq!(out.trim(), "hello from a layer", "{}", d.log());

    let ps = ok(d.docker(&["ps", "-a"]));
    let row = ps.lines().find(|l| l.ends_with(" app")).expect(&ps);
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("Exited (0)"), "{row}");
    assert!(row.contains("fixture/app:1"), "{row}");
    // Not running: not listed without -a.
    assert!(!ok(d.docker(&["ps"])).contains(" app"));

    let code = ok(d.docker(&["inspect", "app", "--format", "{{.State.ExitCode}}"]));
    assert_eq!(code.trim(), "0");
    let status = ok(d.docker(&[
        "inspect",
        &id[..12],
        "--format",
        "{{.Name}} {{.State.Status}} {{.State.Running}} {{.HostConfig.NetworkMode}} {{.Config.Tty}}",
    ]));
    assert_eq!(status.trim(), "/app exited false none false");

    // The name is taken.
    let err = fails(d.docker(&["create", "--name", "app", "fixture/app:1"]));
    assert!(err.contains("already in use"), "{err}");

    // The entrypoint is /bin/sh -c, so the argument is a script.
    let id3 = ok(d.docker(&["run", "-d", "fixture/app:1", "echo oops >&2; exit 3"]));
    assert_eq!(ok(d.docker(&["wait", id3.trim()])).trim(), "3");
    let out = d.docker(&["logs", id3.trim()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "oops");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");

    // Unsupported options are refused clearly.
    let err = fails(d.docker(&["create", "-t", "fixture/app:1"]));
    assert!(err.contains("not supported yet"), "{err}");
    // docker info counts them.
    let counts = ok(d.docker(&["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]));
    assert_eq!(counts.trim(), "2 0", "two exited containers: {counts}");
    // Options berth cannot honour yet are refused, never silently ignored.
    for (flags, what) in [
        (&["-p", "8080:80"][..], "publishing ports"),
        (&["--device", "/dev/null"][..], "--device"),
    ] {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.push("fixture/app:1");
        let err = fails(d.docker(&args));
        assert!(
            err.contains(what) && err.contains("not supported yet"),
            "{flags:?}: {err}"
        );
    }
    // A 404 "No such image" makes the CLI try a pull, which the default policy refuses.
    let err = fails(d.docker(&["create", "no/such:image"]));
    assert!(err.contains("Unable to find image"), "{err}");

    // rmi is refused while containers use the image.
    let err = fails(d.docker(&["rmi", "fixture/app:1"]));
    assert!(err.contains("container"), "{err}");

    ok(d.docker(&["rm", "app"]));
    ok(d.docker(&["rm", id3.trim()]));
    let err = fails(d.docker(&["inspect", "--type", "container", "app"]));
    assert!(err.contains("No such container"), "{err}");
    assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "");
    ok(d.docker(&["rmi", "fixture/app:1"]));
}

#[test]
fn docker_cli_kills_and_force_removes_a_running_container() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let ps = ok(d.docker(&["ps"]));
    let row = ps.lines().find(|l| l.ends_with(" sleeper")).expect(&ps);
    assert!(row.contains("Up "), "{row}");
    let err = fails(d.docker(&["rm", "sleeper"]));
    assert!(err.contains("running"), "{err}");
    ok(d.docker(&["kill", "sleeper"]));
    assert_eq!(ok(d.docker(&["wait", "sleeper"])).trim(), "137");
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "sleeper2",
        "fixture/app:1",
        "sleep 1000",
    ]));
    ok(d.docker(&["rm", "-f", "sleeper2"]));
    ok(d.docker(&["rm", "sleeper"]));
}
