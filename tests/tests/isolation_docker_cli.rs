//! Isolation seen from inside a default container, tried as an attacker would, through
//! the real docker CLI: what the seccomp filter lets through (`clone` with namespace
//! flags, another process's memory, file handles), the masked and read-only system paths
//! and their documented loosening, and what a container can do to its cgroups.
//!
//! The probe is `tests/tools/probe.c` (static), bind-mounted read-only into the
//! fixture image. Each case also runs with the capability that Docker's profile ties to
//! the call, to show the refusal is the filter's rule and not a broken probe.

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

/// `docker run --rm` of a shell script with the probe at /probe; its output.
fn probe_run(d: &Daemon, flags: &[&str], script: &str) -> String {
    let bind = format!("{}:/probe:ro", probe_binary().display());
    let mut args = vec!["run", "--rm", "--network", "none", "-v", &bind];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["fixture/app:1", script]);
    ok(d.docker(&args))
}

/// `clone(2)` may not make a namespace without CAP_SYS_ADMIN, whichever flags are
/// combined, in the container's process and in an exec'd one; so no nested user and
/// network namespace, and no AF_PACKET socket in one (berth drops NET_RAW).
#[test]
fn clone_cannot_make_namespaces_in_a_default_container() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let kinds = [
        "user",
        "net",
        "pid",
        "mnt",
        "uts",
        "ipc",
        "cgroup",
        "user,net",
        "user,mnt,pid",
    ];
    let script: String = kinds
        .iter()
        .map(|k| format!("/probe clone {k}; "))
        .chain(["/probe packet-in-userns".to_string()])
        .collect();
    let out = probe_run(&d, &[], &script);
    for k in kinds {
        assert!(out.contains(&format!("clone {k}: EPERM")), "{k}:\n{out}");
    }
    assert!(!out.contains("packet socket"), "{out}");

    // The same filter holds for a process started by `docker exec`.
    let bind = format!("{}:/probe:ro", probe_binary().display());
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "target",
        "--network",
        "none",
        "-v",
        &bind,
        "fixture/app:1",
        "sleep 1000",
    ]));
    let out = ok(d.docker(&["exec", "target", "/probe", "clone", "user,net"]));
    assert!(out.contains("clone user,net: EPERM"), "{out}");
    ok(d.docker(&["rm", "-f", "target"]));

    // Docker's profile lifts the rule for CAP_SYS_ADMIN; so does berth.
    let out = probe_run(&d, &["--cap-add", "SYS_ADMIN"], "/probe clone user,net");
    assert!(out.contains("clone user,net: ok"), "{out}");
}

/// Reading or writing another process's memory needs CAP_SYS_PTRACE; file handles need
/// CAP_DAC_READ_SEARCH (berth is stricter than Docker here: docs/SECURITY-DEFAULTS.md).
#[test]
fn process_memory_and_file_handles_need_their_capabilities() {
    if !docker_available() {
        return;
    }
    let d = setup();
    // A sibling process of the same user in the same container.
    // The sibling is probed once it runs `sleep` (its memory map is read first: on a
    // slow host it may still be the shell's fork, mid-exec).
    let script = "sleep 1000 & s=$!; \
                  until [ \"$(cat /proc/$s/comm 2>/dev/null)\" = sleep ]; do :; done; \
                  /probe vmread $s; /probe vmwrite $s; \
                  /probe handle /etc/hostname; kill $s";
    let out = probe_run(&d, &[], script);
    for what in ["vmread", "vmwrite", "handle /etc/hostname"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(what) && l.ends_with(": EPERM")),
            "{what}:\n{out}"
        );
    }
    let out = probe_run(&d, &["--cap-add", "SYS_PTRACE"], script);
    assert!(
        out.lines()
            .any(|l| l.starts_with("vmread") && l.ends_with(": ok")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("vmwrite") && l.ends_with(": ok")),
        "{out}"
    );
    assert!(out.contains("handle /etc/hostname: EPERM"), "{out}");
    let out = probe_run(&d, &["--cap-add", "DAC_READ_SEARCH"], script);
    assert!(out.contains("handle /etc/hostname: ok"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("vmread") && l.ends_with(": EPERM")),
        "{out}"
    );
}

/// /proc and /sys keep Docker's masked and read-only paths by default; the docker CLI's
/// `--security-opt systempaths=unconfined` (sent as empty MaskedPaths and ReadonlyPaths)
/// is honoured, never dropped, and inspect shows which paths a container has.
#[test]
fn system_paths_are_masked_by_default_and_unconfined_on_request() {
    if !docker_available() {
        return;
    }
    let d = setup();
    // Which of the masked paths a kernel has varies (no /proc/kcore on some): count the
    // masks over those that exist on this host.
    let masked = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ];
    let present: Vec<&str> = masked
        .iter()
        .copied()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(!present.is_empty(), "none of {masked:?} on this host");
    let script = format!(
        "echo berth > /proc/sys/kernel/domainname 2>/dev/null && echo SYSCTL; \
         for p in {}; do grep -q \" $p \" /proc/self/mountinfo && echo MASKED $p; done; true",
        present.join(" ")
    );
    let out = probe_run(&d, &[], &script);
    assert!(!out.contains("SYSCTL"), "{out}");
    for p in &present {
        assert!(out.contains(&format!("MASKED {p}")), "{p}:\n{out}");
    }
    let out = probe_run(&d, &["--security-opt", "systempaths=unconfined"], &script);
    // The UTS namespace's domainname is the container's own: writable once /proc/sys is.
    assert!(out.contains("SYSCTL"), "{out}");
    assert!(!out.contains("MASKED"), "{out}");

    ok(d.docker(&["create", "--name", "plain", "fixture/app:1"]));
    ok(d.docker(&[
        "create",
        "--name",
        "open",
        "--security-opt",
        "systempaths=unconfined",
        "fixture/app:1",
    ]));
    let paths = |name: &str| {
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.MaskedPaths}} {{json .HostConfig.ReadonlyPaths}}",
            name,
        ]))
        .trim()
        .to_string()
    };
    let plain = paths("plain");
    assert!(
        plain.contains("\"/proc/kcore\"") && plain.contains("\"/proc/sys\""),
        "{plain}"
    );
    assert_eq!(paths("open"), "[] []");
}

/// A container has its own cgroup in every hierarchy of the host (named v1 ones such as
/// `name=systemd` and a hybrid host's cgroup2 tree included, never the host's root), and
/// none of its cgroup files can be written from inside: no limit raised, no sub-cgroup,
/// no process moved, no `release_agent` in sight. Once it is removed, nothing is left.
#[test]
fn a_container_is_placed_in_its_own_cgroups_and_cannot_change_them() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let files = [
        "pids.max",
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.max",
        "memory.swap.max",
        "cpu.cfs_quota_us",
        "cpu.max",
        "cpu.shares",
        "cpu.weight",
        "cpuset.cpus",
        "devices.allow",
        "freezer.state",
        "cgroup.freeze",
        "cgroup.procs",
        "cgroup.subtree_control",
        "notify_on_release",
        "release_agent",
    ];
    let script = format!(
        "for dir in /sys/fs/cgroup /sys/fs/cgroup/*; do \
           [ -d $dir ] || continue; \
           for f in {}; do [ -e $dir/$f ] || continue; echo SEEN $dir/$f; \
             echo 1 > $dir/$f 2>/dev/null && echo WROTE $dir/$f; done; \
           mkdir $dir/sub 2>/dev/null && echo MADE $dir/sub; \
         done; \
         find /sys/fs/cgroup -name release_agent | sed 's/^/AGENT /'; \
         echo DONE; exec sleep 1000",
        files.join(" ")
    );
    ok(d.docker(&["run", "-d", "--name", "jail", "fixture/app:1", &script]));
    let mut logs = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !logs.contains("DONE") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        logs = ok(d.docker(&["logs", "jail"]));
    }
    assert!(logs.contains("DONE"), "{logs}");
    assert!(
        logs.contains("SEEN /sys/fs/cgroup/"),
        "no cgroup file seen:\n{logs}"
    );
    for bad in ["WROTE", "MADE", "AGENT"] {
        assert!(!logs.contains(bad), "{bad}:\n{logs}");
    }

    // From the host: the container's init in /berth/<id> of every hierarchy it is in.
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "jail"]))
        .trim()
        .to_string();
    let pid = ok(d.docker(&["inspect", "-f", "{{.State.Pid}}", "jail"]))
        .trim()
        .to_string();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let own = format!("/berth/{id}");
    for line in cgroup.lines() {
        // `hierarchy-ID:controllers:path`; the path may not be the host's root.
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        assert_eq!(path, own, "{line}\n{cgroup}");
    }
    ok(d.docker(&["rm", "-f", "jail"]));
    // Every hierarchy of the host, named ones included: no directory of it is left.
    let mut left = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        for p in [e.path().join("berth").join(&id), e.path().join(&id)] {
            if p.exists() {
                left.push(p);
            }
        }
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup/berth").join(&id);
    assert!(left.is_empty() && !v2.exists(), "left behind: {left:?}");
}

/// Bind sources are judged by what they are (berth's own socket and state, the host's
/// credentials, kernel interfaces, device nodes, service directories), host symlinks
/// resolved, for files and directories alike, through `-v` and `--mount`; nothing is
/// created for a refused source; the operator's `allow_bind_sources` is the override.
#[test]
fn bind_sources_are_refused_for_what_they_are() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let refused = |spec: &str, rule: &str| {
        let err = fails(d.docker(&["run", "--rm", "-v", spec, "fixture/app:1", "true"]));
        assert!(
            err.contains("refused") && err.contains(rule),
            "{spec}: {err}"
        );
        assert!(
            err.contains("allow_bind_sources"),
            "names the override: {err}"
        );
        err
    };
    let sock = d.sock.display().to_string();
    refused(
        &format!("{sock}:/var/run/docker.sock"),
        "berth's own socket",
    );
    refused(
        &format!("{}:/s", d.root.display()),
        "berth's own socket or state root",
    );
    refused(
        &format!("{}:/c", d.root.join("containers").display()),
        "inside",
    );
    // A symlink to the socket is resolved first.
    let link = d.dir.path().join("innocent.sock");
    std::os::unix::fs::symlink(&d.sock, &link).expect("symlink");
    refused(&format!("{}:/s", link.display()), "resolves to");
    refused(&format!("{}:/s", d.dir.path().display()), "it contains");
    // Credentials: the directory and the files in it alike.
    refused("/etc:/x", "credentials");
    refused("/etc/shadow:/x:ro", "credentials");
    refused("/etc/passwd:/x:ro", "credentials");
    refused("/root:/x:ro", "credentials");
    // Kernel interfaces, devices, service directories.
    refused("/proc/1:/x:ro", "kernel interfaces");
    refused("/sys:/x:ro", "kernel interfaces");
    refused("/dev/null:/x", "device node");
    refused("/var/lib:/x:ro", "services");
    let err = refused("/run:/x:ro", "services");
    if !std::path::Path::new("/run/docker.sock").exists() {
        assert!(
            !err.contains("docker.sock"),
            "names only what exists: {err}"
        );
    }
    // A device node outside /dev is refused for what it is.
    let node = d.dir.path().join("null");
    let st = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(st.success());
    refused(&format!("{}:/x", node.display()), "device node");
    // --mount is judged the same way.
    let err = fails(d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/etc/shadow,target=/x,readonly",
        "fixture/app:1",
        "true",
    ]));
    assert!(err.contains("credentials"), "{err}");
    // A missing source below a refused directory is refused before anything is made.
    refused("/etc/berth-test-never-made:/x", "credentials");
    assert!(!std::path::Path::new("/etc/berth-test-never-made").exists());
    // Public configuration: read-only only; the host's programs likewise.
    if std::path::Path::new("/etc/ssl/certs").is_dir() {
        let out = ok(d.docker(&[
            "run",
            "--rm",
            "-v",
            "/etc/ssl/certs:/certs:ro",
            "fixture/app:1",
            "ls /certs | head -1",
        ]));
        assert!(!out.trim().is_empty());
        refused("/etc/ssl/certs:/certs", "read-only");
    }
    refused("/usr/bin:/x", "read-only");
    ok(d.docker(&[
        "run",
        "--rm",
        "-v",
        "/usr/bin:/x:ro",
        "fixture/app:1",
        "true",
    ]));
    // Ordinary host directories work as with Docker.
    let data = d.dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    ok(d.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", data.display()),
        "fixture/app:1",
        "echo hi > /data/f",
    ]));
    assert_eq!(
        std::fs::read_to_string(data.join("f")).expect("read"),
        "hi\n"
    );
    drop(d);

    // The operator's allow-list: exactly what it names, nothing more.
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_dir.path().join("berth.toml");
    std::fs::write(&cfg, "allow_bind_sources = [\"/etc/ssl\"]\n").expect("config");
    let d = Daemon::start_with(&["--config", cfg.to_str().expect("path")]);
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    if std::path::Path::new("/etc/ssl").is_dir() {
        ok(d.docker(&[
            "run",
            "--rm",
            "-v",
            "/etc/ssl:/ssl",
            "fixture/app:1",
            "true",
        ]));
    }
    let err = fails(d.docker(&["run", "--rm", "-v", "/etc:/x:ro", "fixture/app:1", "true"]));
    assert!(err.contains("credentials"), "{err}");
}

/// `inspect`'s `Confinement` shows what a container really has: its spec (capabilities,
/// seccomp filter digest, no-new-privileges, namespaces, mounts and modes, cgroup path,
/// user) and, while it runs, the kernel's view of its init, which must agree.
#[test]
fn inspect_shows_the_confinement_a_container_really_has() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let run = |name: &str, flags: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["fixture/app:1", "exec sleep 1000"]);
        ok(d.docker(&args));
        let raw = ok(d.docker(&["inspect", "-f", "{{json .Confinement}}", name]));
        serde_json::from_str::<serde_json::Value>(&raw).expect("json")
    };
    let names = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("name").to_string())
            .collect()
    };
    let a = run("aa", &[]);
    let spec = &a["Spec"];
    let live = &a["Live"];
    let eff = names(&spec["Capabilities"]["Effective"]);
    assert_eq!(eff.len(), 11, "{eff:?}");
    assert!(eff.contains("CHOWN") && !eff.contains("SYS_ADMIN") && !eff.contains("NET_RAW"));
    assert_eq!(
        names(&live["CapEff"]),
        eff,
        "the kernel agrees with the spec"
    );
    assert_eq!(names(&live["CapBnd"]), eff);
    assert_eq!(spec["NoNewPrivileges"], true);
    assert_eq!(live["NoNewPrivs"], true);
    assert_eq!(live["Seccomp"], "filter");
    let digest = spec["Seccomp"]["Digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(live["Uid"], 0);
    assert_eq!(spec["UserNamespace"], false);
    for ns in live["Namespaces"].as_array().expect("namespaces") {
        let t = ns["Type"].as_str().expect("type");
        let shared = ns["Host"].as_bool().expect("bool");
        match t {
            "user" | "time" => assert!(shared, "{t} is the host's without remapping"),
            _ => assert!(!shared, "{t} must be private: {ns}"),
        }
    }
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "aa"]))
        .trim()
        .to_string();
    let cg = live["Cgroup"].as_array().expect("cgroup lines");
    assert!(
        !cg.is_empty() && cg.iter().all(|l| l.as_str().expect("line").contains(&id)),
        "{cg:?}"
    );
    let sys = spec["Mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["Destination"] == "/sys")
        .expect("/sys mounted");
    assert_eq!(sys["Mode"], "ro");
    // The same profile and capabilities: the same filter.
    let b = run("bb", &[]);
    assert_eq!(b["Spec"]["Seccomp"]["Digest"], digest.as_str());
    // Loosened containers show it.
    let c = run(
        "cc",
        &[
            "--cap-add",
            "SYS_PTRACE",
            "--security-opt",
            "seccomp=unconfined",
        ],
    );
    assert!(names(&c["Live"]["CapEff"]).contains("SYS_PTRACE"));
    assert!(c["Spec"]["Seccomp"].is_null());
    assert_eq!(c["Live"]["Seccomp"], "disabled");
    let p = run("pp", &["--privileged"]);
    assert!(names(&p["Live"]["CapEff"]).contains("SYS_ADMIN"));
    assert_eq!(p["Spec"]["Privileged"], true);
    // Stopped: the spec remains, the live view is null.
    ok(d.docker(&["rm", "-f", "bb", "cc", "pp"]));
    ok(d.docker(&["stop", "-t", "0", "aa"]));
    let raw = ok(d.docker(&["inspect", "-f", "{{json .Confinement.Live}}", "aa"]));
    assert_eq!(raw.trim(), "null");
    ok(d.docker(&["rm", "aa"]));
}

/// `--pid=host`, `--ipc=host`, `--uts=host` and `--cgroupns=host` are a policy decision:
/// refused by default with an error naming the daemon option, honoured when the operator
/// allows them (the container then really shares those namespaces, and sets no
/// hostname on the host). `--userns=host` is what berth does anyway.
#[test]
fn host_namespaces_are_refused_by_default_and_honoured_when_allowed() {
    if !docker_available() {
        return;
    }
    let d = setup();
    for ns in ["pid", "ipc", "uts", "cgroupns"] {
        let flag = format!("--{ns}=host");
        let out = d.docker(&["run", "--rm", &flag, "fixture/app:1", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("allow_host_namespaces") && err.contains(&flag),
            "{flag}: {err}"
        );
    }
    ok(d.docker(&["run", "--rm", "--userns=host", "fixture/app:1", "true"]));
    drop(d);

    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_dir.path().join("berth.toml");
    std::fs::write(
        &cfg,
        "allow_host_namespaces = [\"pid\", \"ipc\", \"uts\", \"cgroupns\"]\n",
    )
    .expect("config");
    let d = Daemon::start_with(&["--config", cfg.to_str().expect("path")]);
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let script = "for n in pid ipc uts cgroup; do readlink /proc/self/ns/$n; done; hostname";
    let ns = |n: &str| {
        std::fs::read_link(format!("/proc/self/ns/{n}"))
            .expect("ns")
            .display()
            .to_string()
    };
    let hostname = rustix_hostname();
    let shared = ok(d.docker(&[
        "run",
        "--rm",
        "--pid=host",
        "--ipc=host",
        "--uts=host",
        "--cgroupns=host",
        "fixture/app:1",
        script,
    ]));
    let want = format!(
        "{}\n{}\n{}\n{}\n{hostname}\n",
        ns("pid"),
        ns("ipc"),
        ns("uts"),
        ns("cgroup")
    );
    assert_eq!(shared, want, "shares the host's namespaces");
    assert_eq!(
        rustix_hostname(),
        hostname,
        "the host's hostname is unchanged"
    );
    let own = ok(d.docker(&["run", "--rm", "fixture/app:1", script]));
    for n in ["pid", "ipc", "uts", "cgroup"] {
        assert!(
            !own.contains(&ns(n)),
            "a default container has its own {n}: {own}"
        );
    }
    ok(d.docker(&[
        "create",
        "--name",
        "hh",
        "--pid=host",
        "--uts=host",
        "fixture/app:1",
    ]));
    let modes = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.PidMode}} {{.HostConfig.UTSMode}} {{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}}",
        "hh",
    ]));
    assert_eq!(modes.trim(), "host host private private");
}

fn rustix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}
