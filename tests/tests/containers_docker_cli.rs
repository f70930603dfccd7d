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
    // No --network: Docker's NetworkMode `default` (the default bridge network).
    assert_eq!(status.trim(), "/app exited false default false");

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

    // docker info counts them.
    let counts = ok(d.docker(&["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]));
    assert_eq!(counts.trim(), "2 0", "two exited containers: {counts}");
    // Options berth cannot honour yet are refused, never silently ignored.
    let err = fails(d.docker(&["run", "-d", "--oom-score-adj", "5", "fixture/app:1"]));
    assert!(
        err.contains("--oom-score-adj") && err.contains("not supported yet"),
        "{err}"
    );
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

/// The confinement as a process inside sees it, through the docker CLI: the defaults and
/// each explicit loosening.
#[test]
fn docker_cli_security_defaults_and_their_loosenings_seen_from_inside() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let status = |flags: &[&str]| -> String {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[
            "fixture/app:1",
            "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status",
        ]);
        let id = ok(d.docker(&args)).trim().to_string();
        assert_eq!(ok(d.docker(&["wait", &id])).trim(), "0");
        let out = ok(d.docker(&["logs", &id]));
        ok(d.docker(&["rm", &id]));
        out
    };
    let field = |out: &str, name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let caps = |out: &str| u64::from_str_radix(&field(out, "CapEff:"), 16).expect("CapEff");
    let default = status(&[]);
    assert_eq!(field(&default, "Seccomp:"), "2", "{default}");
    assert_eq!(field(&default, "NoNewPrivs:"), "1", "{default}");
    // Podman's set: no NET_RAW (13), MKNOD (27), AUDIT_WRITE (29), SYS_ADMIN (21).
    for bit in [13, 21, 27, 29] {
        assert_eq!(caps(&default) & (1 << bit), 0, "cap {bit} in {default}");
    }
    let nnp = status(&["--security-opt", "no-new-privileges=false"]);
    assert_eq!(field(&nnp, "NoNewPrivs:"), "0", "{nnp}");
    assert_eq!(field(&nnp, "Seccomp:"), "2", "{nnp}");
    let unconfined = status(&["--security-opt", "seccomp=unconfined"]);
    assert_eq!(field(&unconfined, "Seccomp:"), "0", "{unconfined}");
    let raw = status(&["--cap-add", "NET_RAW"]);
    assert_ne!(caps(&raw) & (1 << 13), 0, "{raw}");
    let privileged = status(&["--privileged"]);
    assert_eq!(field(&privileged, "Seccomp:"), "0", "{privileged}");
    let host_bnd = std::fs::read_to_string("/proc/self/status").expect("status");
    let host_bnd = u64::from_str_radix(&field(&host_bnd, "CapBnd:"), 16).expect("CapBnd");
    assert_eq!(
        caps(&privileged),
        host_bnd & ((1 << 41) - 1),
        "{privileged}"
    );
}

#[test]
fn docker_cli_hostname_shm_size_and_sysctls_take_effect() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--hostname",
        "web1",
        "--shm-size",
        "16m",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "fixture/app:1",
        "hostname; df -k /dev/shm | tail -1; cat /proc/sys/net/ipv4/ip_forward",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("web1"), "{out}");
    assert!(lines.get(1).is_some_and(|l| l.contains("16384")), "{out}");
    assert_eq!(lines.get(2).copied(), Some("1"), "{out}");
    // What berth cannot honour is refused, not ignored.
    let err = fails(d.docker(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "fixture/app:1",
        "true",
    ]));
    assert!(err.contains("not supported yet"), "{err}");
}

#[test]
fn a_run_rm_whose_start_fails_exits_127_and_leaves_nothing() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    // The docker CLI waits for a --rm container's removal before it reports a failed
    // start: the daemon must remove it (it used to hang here).
    let out = d.docker(&["run", "--rm", "--entrypoint", "/nope", "fixture/app:1"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nope"), "{err}");
    assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "");
    // Without --rm the container stays, created, and the CLI exits just the same.
    let out = d.docker(&[
        "run",
        "--name",
        "kept",
        "--entrypoint",
        "/nope",
        "fixture/app:1",
    ]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let state = ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "kept"]));
    assert_eq!(state.trim(), "created");
}

/// `docker run`'s exit status says why a start failed, as with Docker: 127 only for a
/// command that does not exist, 126 for one that cannot be run, 125 for every other
/// failure (here a bind of a file over a directory), even when its message says "No such
/// file" or "Permission denied" about something else.
#[test]
fn a_failed_start_exits_127_or_126_only_for_the_command() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    // A file bound over a directory: the runtime cannot mount it (not the command).
    let file = d.dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let file_over_bin = format!("{}:/bin", file.display());
    for (args, code) in [
        (&["--entrypoint", "/nope"][..], 127),
        (&["--entrypoint", "nope"][..], 127),
        (&["--entrypoint", "/tmp"][..], 126),
        (&["--entrypoint", "/etc/passwd"][..], 126),
        (&["-v", file_over_bin.as_str()][..], 125),
    ] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["fixture/app:1", "true"]);
        let out = d.docker(&a);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
    }
    assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "");
    // A failed start leaves no cgroup behind, in any hierarchy.
    ok(d.docker(&[
        "create",
        "--name",
        "bad",
        "--network",
        "none",
        "-v",
        &file_over_bin,
        "fixture/app:1",
        "true",
    ]));
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "bad"]));
    assert!(!d.docker(&["start", "bad"]).status.success());
    let left = |id: &str| -> Vec<String> {
        std::fs::read_dir("/sys/fs/cgroup")
            .expect("/sys/fs/cgroup")
            .flatten()
            .map(|h| h.path().join("berth").join(id))
            .chain([std::path::Path::new("/sys/fs/cgroup/berth").join(id)])
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect()
    };
    assert_eq!(left(id.trim()), Vec::<String>::new());
    ok(d.docker(&["rm", "bad"]));
    assert_eq!(left(id.trim()), Vec::<String>::new());
}

/// berth's runtime (youki's libcontainer 0.7) makes every container mount with
/// mount_setattr, which Linux has since 5.12: on an older kernel (Debian 11's 5.10, which
/// the VM lane boots) a container is refused at create, naming the syscall and the
/// kernel, and `docker info` warns; on a newer one it runs.
#[test]
fn a_kernel_older_than_5_12_is_refused_by_name() {
    if !docker_available() {
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let out = d.docker(&["run", "--rm", "--network", "none", "fixture/app:1", "true"]);
    let warnings = ok(d.docker(&["info", "--format", "{{json .Warnings}}"]));
    let warned = warnings.contains("no mount_setattr (Linux 5.12)");
    if version < (5, 12) {
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("this host's kernel ({})", release.trim()))
                && err.contains("has no mount_setattr (Linux 5.12)"),
            "{err}"
        );
        assert!(warned, "{warnings}");
        assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "", "nothing created");
    } else {
        ok(out);
        assert!(!warned, "{warnings}");
    }
}

/// `docker diff` lists what a container added, changed and deleted, as Docker does: a
/// fresh container has no changes (berth's own mount points are not the container's).
#[test]
fn docker_diff_lists_a_container_s_changes() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    ok(d.docker(&["create", "--name", "fresh", "fixture/app:1", "true"]));
    assert_eq!(ok(d.docker(&["diff", "fresh"])).trim(), "");
    ok(d.docker(&["start", "-a", "fresh"]));
    assert_eq!(
        ok(d.docker(&["diff", "fresh"])).trim(),
        "",
        "a run that wrote nothing"
    );
    ok(d.docker(&[
        "run",
        "--name",
        "busy",
        "fixture/app:1",
        "rm /srv/app/hello.txt; echo n > /srv/app/new; mkdir -p /newdir && echo f > /newdir/f",
    ]));
    let out = ok(d.docker(&["diff", "busy"]));
    // The set of changes; the order of entries in one directory is not Docker's
    // contract (Docker 20.10 listed `A /srv/app/new` before `D /srv/app/hello.txt`).
    let mut got = out.lines().collect::<Vec<_>>();
    got.sort_by_key(|l| l.get(2..).unwrap_or(l).to_string());
    assert_eq!(
        got,
        vec![
            "A /newdir",
            "A /newdir/f",
            "C /srv",
            "C /srv/app",
            "D /srv/app/hello.txt",
            "A /srv/app/new",
        ],
        "{out}"
    );
    assert!(!d.docker(&["diff", "nosuch"]).status.success());
}

/// A container's processes start with SIGPIPE at its default action (as Docker's): a
/// pipeline whose reader ends stops its writer (`yes | head` ends).
#[test]
fn a_container_s_processes_get_sigpipe_s_default_action() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "fixture/app:1",
        "yes | head -1; ign=$(sed -n 's/^SigIgn:\\s*//p' /proc/1/status); echo $(( 0x$ign & 0x1000 ))",
    ]));
    assert_eq!(out, "y\n0\n", "SIGPIPE ignored in the container");
}

/// `--log-driver none`: nothing is kept (no log file), an attached client still gets the
/// output, and `docker logs` says the driver keeps nothing (Docker's 501 and words).
#[test]
fn the_none_log_driver_keeps_nothing_and_says_so() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let out = ok(d.docker(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "fixture/app:1",
        "echo attached",
    ]));
    assert_eq!(out, "attached\n");
    let err = fails(d.docker(&["logs", "quiet"]));
    assert!(
        err.contains("configured logging driver does not support reading"),
        "{err}"
    );
    let shown = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}",
        "quiet",
    ]));
    assert_eq!(shown.trim(), "none|");
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "quiet"]));
    let dir = d.root.join("containers").join(id.trim());
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("container dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("json.log"))
        .collect();
    assert!(logs.is_empty(), "a log file was written: {logs:?}");
    ok(d.docker(&["rm", "quiet"]));
}

/// A container is found as Docker finds it, in Docker's order: its full ID, its name
/// (with or without the leading `/`), then a unique ID prefix; an ambiguous prefix is
/// refused by name. A name made of 64 hex digits that is no container's ID is a name.
#[test]
fn containers_are_found_by_id_name_and_unique_prefix_in_dockers_order() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let hexname = "ab".repeat(32);
    let a = ok(d.docker(&["create", "--name", "first", "fixture/app:1"]));
    let b = ok(d.docker(&["create", "--name", &hexname, "fixture/app:1"]));
    let (a, b) = (a.trim(), b.trim());
    let name_of = |key: &str| ok(d.docker(&["inspect", "--format", "{{.Name}}", key]));
    assert_eq!(name_of(a).trim(), "/first");
    assert_eq!(name_of(b).trim(), format!("/{hexname}"));
    assert_eq!(name_of("first").trim(), "/first");
    assert_eq!(name_of("/first").trim(), "/first");
    assert_eq!(name_of(&hexname).trim(), format!("/{hexname}"));
    // The shortest prefix of each that the other does not share.
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    assert_eq!(name_of(&a[..=common]).trim(), "/first");
    assert_eq!(name_of(&b[..=common]).trim(), format!("/{hexname}"));
    // Among 17 IDs two share at least their first digit: their common prefix is
    // ambiguous, and refused as such.
    let mut ids: Vec<String> = (0..15)
        .map(|_| {
            ok(d.docker(&["create", "fixture/app:1"]))
                .trim()
                .to_string()
        })
        .collect();
    ids.extend([a.to_string(), b.to_string()]);
    let shared = ids
        .iter()
        .enumerate()
        .flat_map(|(i, x)| ids[i + 1..].iter().map(move |y| (x, y)))
        .map(|(x, y)| &x[..x.bytes().zip(y.bytes()).take_while(|(p, q)| p == q).count()])
        .find(|p| !p.is_empty())
        .expect("two of 17 IDs share a first digit");
    let err = fails(d.docker(&["start", shared]));
    assert!(
        err.contains(&format!("container ID prefix {shared} is ambiguous")),
        "{err}"
    );
    let mut rm = vec!["rm"];
    rm.extend(ids[..15].iter().map(String::as_str));
    ok(d.docker(&rm));
    let err = fails(d.docker(&["inspect", "--type", "container", &"cd".repeat(32)]));
    assert!(err.contains("No such container"), "{err}");
    // A full ID keeps working once the container has run and stopped.
    ok(d.docker(&["start", a]));
    assert_eq!(ok(d.docker(&["wait", a])).trim(), "0");
    assert_eq!(name_of(a).trim(), "/first");
    ok(d.docker(&["rm", a, b]));
    let err = fails(d.docker(&["inspect", "--type", "container", a]));
    assert!(err.contains("No such container"), "{err}");
}
