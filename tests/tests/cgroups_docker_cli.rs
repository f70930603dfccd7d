//! The real docker CLI against berth's cgroup features: resource flags at create (checked
//! in the container's cgroup files and from inside), stats (one-shot and streamed), top,
//! update (live and across a restart), pause/unpause, OOM kills; and the Docker SDK for
//! Python's `stats()` and `top()`.
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs; cgroup v1 or v2 — the files are looked up for
//! whichever the host has).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn cgroup_v2() -> bool {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T", "/sys/fs/cgroup"])
        .output()
        .expect("stat");
    String::from_utf8_lossy(&out.stdout).trim() == "cgroup2fs"
}

/// A file of a container's cgroup: `v1` is (controller, file), `v2` the unified file.
fn cg_file(id: &str, v1: (&str, &str), v2: &str) -> PathBuf {
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup/berth").join(id).join(v2)
    } else {
        Path::new("/sys/fs/cgroup")
            .join(v1.0)
            .join("berth")
            .join(id)
            .join(v1.1)
    }
}

/// Whether the host can enforce a knob: its file is in berth's parent cgroup (read here
/// directly, not from berth's own probe), e.g. no blkio weight file on a disk scheduler
/// without weights, no memsw file without swap accounting.
fn host_has(v1: (&str, &str), v2: &str) -> bool {
    cg_file("", v1, v2).exists()
}

fn cg_read(id: &str, v1: (&str, &str), v2: &str) -> String {
    let p = cg_file(id, v1, v2);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn setup() -> Daemon {
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    d
}

fn full_id(d: &Daemon, name: &str) -> String {
    ok(d.docker(&["inspect", "-f", "{{.Id}}", name]))
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

/// A block device of the host (for the throttle flags).
fn block_device() -> Option<(PathBuf, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut devs: Vec<PathBuf> = std::fs::read_dir("/dev")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    devs.sort();
    devs.into_iter().find_map(|p| {
        let md = std::fs::metadata(&p).ok()?;
        if !md.file_type().is_block_device() {
            return None;
        }
        let rdev = md.rdev();
        // glibc's gnu_dev_major/gnu_dev_minor.
        let maj = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let min = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        Some((p, format!("{maj}:{min}")))
    })
}

#[test]
fn docker_cli_resource_flags_reach_the_cgroup_and_inspect() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let dev = block_device();
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "limits",
        "--memory",
        "64m",
        "--memory-reservation",
        "32m",
        "--memory-swap",
        "96m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "--pids-limit",
        "100",
    ];
    let dev_arg = dev
        .as_ref()
        .map(|(p, _)| format!("{}:1mb", p.display()))
        .unwrap_or_default();
    let iops_arg = dev
        .as_ref()
        .map(|(p, _)| format!("{}:100", p.display()))
        .unwrap_or_default();
    if dev.is_some() {
        args.extend_from_slice(&["--device-read-bps", &dev_arg]);
        args.extend_from_slice(&["--device-write-iops", &iops_arg]);
    }
    args.extend_from_slice(&["fixture/app:1", "sleep 1000"]);
    let out = d.docker(&args);
    let warnings = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    let id = full_id(&d, "limits");
    // Swap accounting is a host's choice: where it is off, Docker's warning, and the
    // memory limit alone.
    let swap = host_has(("memory", "memory.memsw.limit_in_bytes"), "memory.swap.max");
    assert_eq!(
        warnings.contains("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap."),
        !swap,
        "{warnings}"
    );

    let mem = cg_read(&id, ("memory", "memory.limit_in_bytes"), "memory.max");
    assert_eq!(mem, (64u64 << 20).to_string());
    let res = cg_read(&id, ("memory", "memory.soft_limit_in_bytes"), "memory.low");
    assert_eq!(res, (32u64 << 20).to_string());
    let pids = cg_read(&id, ("pids", "pids.max"), "pids.max");
    assert_eq!(pids, "100");
    let cpus = cg_read(&id, ("cpuset", "cpuset.cpus"), "cpuset.cpus");
    assert_eq!(cpus, "0");
    if cgroup_v2() {
        assert_eq!(cg_read(&id, ("", ""), "cpu.max"), "50000 100000");
        if swap {
            assert_eq!(
                cg_read(&id, ("", ""), "memory.swap.max"),
                (32u64 << 20).to_string()
            );
        }
    } else {
        assert_eq!(
            cg_read(&id, ("cpu", "cpu.cfs_quota_us"), ""),
            "50000",
            "--cpus 0.5"
        );
        assert_eq!(cg_read(&id, ("cpu", "cpu.shares"), ""), "512");
        if swap {
            assert_eq!(
                cg_read(&id, ("memory", "memory.memsw.limit_in_bytes"), ""),
                (96u64 << 20).to_string()
            );
        }
    }
    if let Some((_, majmin)) = &dev {
        let rule = cg_read(&id, ("blkio", "blkio.throttle.read_bps_device"), "io.max");
        assert!(
            rule.contains(majmin) && rule.contains("1048576"),
            "read bps rule for {majmin}: {rule}"
        );
        let rule = cg_read(&id, ("blkio", "blkio.throttle.write_iops_device"), "io.max");
        assert!(rule.contains(majmin), "write iops rule: {rule}");
    }

    let hc = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.PidsLimit}}",
        "limits",
    ]));
    assert_eq!(
        hc.trim(),
        format!(
            "{} {} {} 500000000 512 0 100",
            64u64 << 20,
            if swap { 96i64 << 20 } else { -1 },
            32u64 << 20
        )
    );

    // From inside: the cpuset and the memory limit the container sees.
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "inside",
        "--cpuset-cpus",
        "0",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--blkio-weight",
        "300",
        "--cpuset-mems",
        "0",
        "--ulimit",
        "nofile=1024:2048",
        "fixture/app:1",
        "while read l; do case $l in Cpus_allowed_list*) echo $l;; esac; done < /proc/self/status; ulimit -n; exec sleep 1000",
    ]);
    let warnings = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    let mut logs = String::new();
    eventually("the container reports its limits", || {
        logs = ok(d.docker(&["logs", "inside"]));
        logs.split_whitespace().count() >= 3
    });
    assert_eq!(
        logs.split_whitespace().collect::<Vec<_>>(),
        ["Cpus_allowed_list:", "0", "1024"],
        "{logs}"
    );
    let inside = full_id(&d, "inside");
    assert_eq!(
        cg_read(&inside, ("cpuset", "cpuset.mems"), "cpuset.mems"),
        "0"
    );
    if cgroup_v2() {
        assert_eq!(cg_read(&inside, ("", ""), "cpu.max"), "25000 50000");
    } else {
        assert_eq!(cg_read(&inside, ("cpu", "cpu.cfs_period_us"), ""), "50000");
        assert_eq!(cg_read(&inside, ("cpu", "cpu.cfs_quota_us"), ""), "25000");
    }
    // The weight file depends on the I/O scheduler (CFQ's blkio.weight, BFQ's; v2's
    // io.weight needs the iocost controller): where there is none, Docker's warning and
    // the weight discarded, and the container runs all the same.
    let weight = [
        ("blkio", "blkio.weight", "io.bfq.weight"),
        ("blkio", "blkio.bfq.weight", "io.weight"),
    ]
    .iter()
    .find(|(c, v1, v2)| host_has((c, v1), v2))
    .map(|(c, v1, v2)| cg_file(&inside, (c, v1), v2));
    let discarded = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.";
    assert_eq!(warnings.contains(discarded), weight.is_none(), "{warnings}");
    if let Some(weight) = &weight {
        let weight = std::fs::read_to_string(weight).expect("read weight");
        // v1 and BFQ take the value as is (BFQ may print "default 300"); v2's io.weight
        // is converted (1 + (300 - 10) * 9999 / 990 = 2930).
        assert!(
            weight.trim().ends_with("300") || weight.contains("2930"),
            "blkio weight: {weight}"
        );
    }
    let hc = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.BlkioWeight}}",
        "inside",
    ]));
    let weight = if weight.is_some() { 300 } else { 0 };
    assert_eq!(hc.trim(), format!("50000 25000 {weight}"));

    // What berth cannot honour is refused, never ignored.
    for (flags, what) in [
        (&["--oom-kill-disable"][..], "--oom-kill-disable"),
        (&["--cpu-rt-runtime", "1000"][..], "--cpu-rt-runtime"),
        (&["--cgroup-parent", "/other"][..], "--cgroup-parent"),
    ] {
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.push("fixture/app:1");
        let err = fails(d.docker(&args));
        assert!(
            err.contains(what) && err.contains("not supported yet"),
            "{flags:?}: {err}"
        );
    }
    // Bad values name the flag and the rule.
    let err = fails(d.docker(&[
        "create",
        "--cpus",
        "0.5",
        "--cpu-period",
        "50000",
        "fixture/app:1",
    ]));
    assert!(err.contains("Conflicting options"), "{err}");
    let err = fails(d.docker(&["create", "--memory", "1m", "fixture/app:1"]));
    assert!(err.contains("--memory") && err.contains("6MB"), "{err}");
    // Containers outlive the daemon: remove what runs.
    ok(d.docker(&["rm", "-f", "limits", "inside"]));
}

#[test]
fn docker_cli_stats_and_top_show_the_container() {
    if !docker_available() {
        return;
    }
    let d = setup();
    ok(d.docker(&[
        "run",
        "-d",
        // The fixture image has a health check; its probes (execs) would show in top.
        "--no-healthcheck",
        "--name",
        "cg-stats",
        "--memory",
        "64m",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let row = ok(d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}",
        "cg-stats",
    ]));
    let f: Vec<&str> = row.trim().split('|').collect();
    assert_eq!(f[0], "cg-stats", "{row}");
    assert!(f[1].ends_with("/ 64MiB"), "memory limit: {row}");
    assert!(!f[1].starts_with("0B"), "memory usage: {row}");
    assert!(f[2].parse::<u32>().expect("pids") >= 1, "{row}");
    assert!(f[3].ends_with('%'), "{row}");

    // Streamed: at least two samples, then the CLI is killed.
    let mut child = Command::new("docker")
        .args(["stats", "--format", "{{.Name}} {{.MemUsage}}", "cg-stats"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker stats");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if line.contains("cg-stats") && line.contains("64MiB") {
                samples.push(line);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(samples.len() >= 2, "streamed samples: {samples:?}");

    // top: the container's process, and none of the host's (the daemon, this test).
    let top = ok(d.docker(&["top", "cg-stats"]));
    let mut lines = top.lines();
    let header = lines.next().expect("header");
    assert!(header.contains("PID") && header.contains("CMD"), "{top}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{top}");
    assert!(rows[0].trim_end().ends_with("sleep 1000"), "{top}");
    assert!(!top.contains("berth"), "host processes listed: {top}");
    let top = ok(d.docker(&["top", "cg-stats", "-o", "pid,comm"]));
    assert!(
        top.lines()
            .nth(1)
            .is_some_and(|l| l.trim_end().ends_with("sleep")),
        "{top}"
    );
    // A container whose processes run as another uid: `ps -o` alone would list only the
    // daemon's uid and terminal; berth selects the container's pids (`-q`), as Docker.
    ok(d.docker(&[
        "run",
        "-d",
        "--no-healthcheck",
        "--name",
        "cg-user",
        "--user",
        "1234:1234",
        "--network",
        "none",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let top = ok(d.docker(&["top", "cg-user", "-o", "pid,uid,comm"]));
    let rows: Vec<&str> = top.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{top}");
    assert!(
        rows[0].split_whitespace().skip(1).eq(["1234", "sleep"]),
        "{top}"
    );
    ok(d.docker(&["rm", "-f", "cg-user"]));

    ok(d.docker(&["kill", "cg-stats"]));
    ok(d.docker(&["wait", "cg-stats"]));
    let err = fails(d.docker(&["top", "cg-stats"]));
    assert!(err.contains("is not running"), "{err}");
    // A stopped container has zeroed stats.
    let row = ok(d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}|{{.PIDs}}",
        "cg-stats",
    ]));
    assert_eq!(row.trim(), "0B / 0B|0", "{row}");
    // Containers outlive the daemon and keep their rootfs mounted: remove them.
    ok(d.docker(&["rm", "cg-stats"]));
}

#[test]
fn docker_cli_updates_pauses_and_oom_kills() {
    if !docker_available() {
        return;
    }
    let mut d = setup();
    let shared = d.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    let bind = format!("{}:/x", shared.display());
    // A counter, then (once /x/go exists) a fork loop that the pids limit must bound (in
    // a subshell: ash gives up on the first failed fork), then an exec, which needs none.
    let script = "i=0; while [ ! -f /x/go ]; do i=$((i+1)); echo $i > /x/count; sleep 0.1; done; \
                  ( n=0; while [ $n -lt 40 ]; do sleep 1000 & n=$((n+1)); done ); echo done > /x/forked; exec sleep 1000";
    ok(d.docker(&[
        "run",
        "-d",
        // The fixture image has a health check; its probes (execs) would show in top.
        "--no-healthcheck",
        "--name",
        "upd",
        "--memory",
        "64m",
        "-v",
        &bind,
        "fixture/app:1",
        script,
    ]));
    let id = full_id(&d, "upd");
    let count = || std::fs::read_to_string(shared.join("count")).unwrap_or_default();

    // update: the live cgroup, stats and inspect follow.
    let out = ok(d.docker(&["update", "--memory", "100m", "--pids-limit", "10", "upd"]));
    assert_eq!(out.trim(), "upd");
    assert_eq!(
        cg_read(&id, ("memory", "memory.limit_in_bytes"), "memory.max"),
        (100u64 << 20).to_string()
    );
    assert_eq!(cg_read(&id, ("pids", "pids.max"), "pids.max"), "10");
    let row = ok(d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "upd"]));
    assert!(row.trim().ends_with("/ 100MiB"), "{row}");
    let hc = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        "upd",
    ]));
    assert_eq!(hc.trim(), format!("{} 10", 100u64 << 20));
    // The memory + swap limit (twice the first memory limit) stays: a memory limit
    // above it is refused. Without swap accounting there is none to keep.
    if host_has(("memory", "memory.memsw.limit_in_bytes"), "memory.swap.max") {
        let err = fails(d.docker(&["update", "--memory", "1g", "upd"]));
        assert!(err.contains("memoryswap"), "{err}");
    }
    // A CPU the host lacks is refused as Docker refuses it; the record keeps the old
    // value.
    let err = fails(d.docker(&["update", "--cpuset-cpus", "1023", "upd"]));
    assert!(
        err.contains("Requested CPUs are not available - requested 1023, available: "),
        "{err}"
    );
    let hc = ok(d.docker(&["inspect", "-f", "{{.HostConfig.CpusetCpus}}", "upd"]));
    assert_eq!(hc.trim(), "");
    let err = fails(d.docker(&["update", "--restart", "sometimes", "upd"]));
    assert!(err.contains("restart policy"), "{err}");
    ok(d.docker(&["update", "--restart", "on-failure:3", "upd"]));
    let rp = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        "upd",
    ]));
    assert_eq!(rp.trim(), "on-failure 3");

    // pause: the counter stops, ps and inspect say so, even after a daemon restart.
    eventually("the counter runs", || !count().is_empty());
    ok(d.docker(&["pause", "upd"]));
    let frozen = count();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(count(), frozen, "the counter advanced while paused");
    let ps = ok(d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    let row = ps.lines().find(|l| l.starts_with("upd ")).expect(&ps);
    assert!(
        row.starts_with("upd Up") && row.ends_with("(Paused)"),
        "{ps}"
    );
    let info = ok(d.docker(&[
        "info",
        "--format",
        "{{.ContainersRunning}} {{.ContainersPaused}}",
    ]));
    assert_eq!(info.trim(), "0 1");
    d.restart_after_sigkill();
    let st = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Paused}} {{.State.Running}}",
        "upd",
    ]));
    assert_eq!(st.trim(), "paused true true");
    let err = fails(d.docker(&["pause", "upd"]));
    assert!(err.contains("already paused"), "{err}");
    ok(d.docker(&["unpause", "upd"]));
    eventually("the counter advances again", || count() != frozen);
    let st = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Paused}}",
        "upd",
    ]));
    assert_eq!(st.trim(), "running false");

    // The pids limit bounds the fork loop.
    std::fs::write(shared.join("go"), "").expect("write");
    eventually("the fork loop ends", || shared.join("forked").exists());
    let current: u32 = cg_read(&id, ("pids", "pids.current"), "pids.current")
        .parse()
        .expect("pids.current");
    assert!(current <= 10, "pids.current {current} above the limit");
    let procs = ok(d.docker(&["top", "upd"])).lines().count() - 1;
    assert!((2..=10).contains(&procs), "{procs} processes for 40 forks");

    // A paused container can be killed; the update survives a restart.
    ok(d.docker(&["pause", "upd"]));
    ok(d.docker(&["kill", "upd"]));
    assert_eq!(ok(d.docker(&["wait", "upd"])).trim(), "137");
    std::fs::remove_file(shared.join("go")).expect("rm");
    ok(d.docker(&["start", "upd"]));
    assert_eq!(
        cg_read(&id, ("memory", "memory.limit_in_bytes"), "memory.max"),
        (100u64 << 20).to_string()
    );
    assert_eq!(cg_read(&id, ("pids", "pids.max"), "pids.max"), "10");
    ok(d.docker(&["pause", "upd"]));
    ok(d.docker(&["rm", "-f", "upd"]));
    let err = fails(d.docker(&["pause", "upd"]));
    assert!(err.contains("No such container"), "{err}");

    // OOM: the kernel kills the allocator; inspect says so.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "oom",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "fixture/app:1",
        "x=a; while true; do x=$x$x; done",
    ]));
    assert_eq!(ok(d.docker(&["wait", "oom"])).trim(), "137");
    let st = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "oom",
    ]));
    assert_eq!(st.trim(), "true 137");
    ok(d.docker(&["rm", "oom"]));
}

#[test]
fn docker_sdk_for_python_stats_top_update_pause() {
    let sdk = Command::new("python3")
        .args(["-c", "import docker"])
        .status();
    if !sdk.map(|s| s.success()).unwrap_or(false) {
        panic!(
            "the Docker SDK for Python is not installed: run scripts/deps.sh (pip install docker)"
        );
    }
    let d = Daemon::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/cgroups.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(d.host())
        .arg(fixtures())
        .output()
        .expect("python3");
    let stdout = ok(out);
    assert_eq!(stdout.trim(), "ok", "{}", d.log());
}

/// `docker info` says what this host can limit, as Docker does: each field and warning
/// against the host's own cgroup files (whatever host this runs on).
#[test]
fn docker_info_reports_what_the_host_can_limit() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let info: serde_json::Value =
        serde_json::from_str(&ok(d.docker(&["info", "--format", "{{json .}}"]))).expect("json");
    let v2 = cgroup_v2();
    assert_eq!(info["CgroupVersion"], if v2 { "2" } else { "1" });
    assert_eq!(info["CgroupDriver"], "cgroupfs");
    let fields = [
        (
            "MemoryLimit",
            ("memory", "memory.limit_in_bytes"),
            "memory.max",
        ),
        (
            "SwapLimit",
            ("memory", "memory.memsw.limit_in_bytes"),
            "memory.swap.max",
        ),
        ("CpuCfsQuota", ("cpu", "cpu.cfs_quota_us"), "cpu.max"),
        ("CPUShares", ("cpu", "cpu.shares"), "cpu.weight"),
        ("CPUSet", ("cpuset", "cpuset.cpus"), "cpuset.cpus"),
        ("PidsLimit", ("pids", "pids.max"), "pids.max"),
    ];
    for (field, v1, v2file) in fields {
        assert_eq!(info[field], host_has(v1, v2file), "{field}: {info:#}");
    }
    let warnings: Vec<String> = info["Warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let weight = host_has(("blkio", "blkio.weight"), "io.weight")
        || host_has(("blkio", "blkio.bfq.weight"), "io.bfq.weight");
    let no_weight = if v2 {
        "WARNING: No io.weight support"
    } else {
        "WARNING: No blkio weight support"
    };
    assert_eq!(
        warnings.iter().any(|w| w == no_weight),
        !weight,
        "{warnings:?}"
    );
    let swap = host_has(("memory", "memory.memsw.limit_in_bytes"), "memory.swap.max");
    assert_eq!(
        warnings
            .iter()
            .any(|w| w == "WARNING: No swap limit support"),
        !swap,
        "{warnings:?}"
    );
    // The probe itself, for operators: berth's own field (the docker CLI drops fields
    // it does not know; the API has it).
    let raw = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&d.sock)
        .arg("http://berth/info")
        .output()
        .expect("curl");
    let info: serde_json::Value = serde_json::from_str(&ok(raw)).expect("info json");
    let cgroup2_mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .contains(" - cgroup2 ");
    assert_eq!(
        info["BerthHost"]["cgroup"]["mode"],
        match (v2, cgroup2_mounted) {
            (true, _) => "unified",
            (false, true) => "hybrid",
            (false, false) => "legacy",
        },
        "{:#}",
        info["BerthHost"]
    );
}

/// A default container cannot lift the limits berth set: its view of its cgroup is
/// read-only (v1: each hierarchy bound read-only; v2: the namespaced cgroup2 mount).
#[test]
fn a_container_cannot_raise_its_own_limits() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let script = "for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do \
                  [ -e $f ] || continue; echo 99999 > $f && echo WROTE; echo seen $(cat $f); done; \
                  mkdir /sys/fs/cgroup/pids/sub /sys/fs/cgroup/sub 2>/dev/null && echo MADE; \
                  exec sleep 1000";
    ok(d.docker(&["run", "-d", "--name", "jail", "fixture/app:1", script]));
    let id = full_id(&d, "jail");
    let mut logs = String::new();
    eventually("the container reports", || {
        logs = ok(d.docker(&["logs", "jail"]));
        logs.contains("seen")
    });
    assert!(!logs.contains("WROTE") && !logs.contains("MADE"), "{logs}");
    assert!(logs.contains("seen 2048"), "{logs}");
    assert_eq!(cg_read(&id, ("pids", "pids.max"), "pids.max"), "2048");
    ok(d.docker(&["rm", "-f", "jail"]));
}

/// `--memory-swappiness` reaches memory.swappiness where the host has it (cgroup v1) and
/// is discarded with Docker's warning where it does not (cgroup v2); out of range is
/// refused with Docker's words.
#[test]
fn docker_cli_memory_swappiness_is_applied_or_discarded_as_docker_does() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "sw",
        "--memory-swappiness",
        "7",
        "fixture/app:1",
        "exec sleep 1000",
    ]);
    assert!(out.status.success(), "{out:?}");
    let warned = String::from_utf8_lossy(&out.stderr).contains("Memory swappiness discarded");
    let id = full_id(&d, "sw");
    let shown = ok(d.docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.MemorySwappiness}}",
        "sw",
    ]));
    let has_swappiness = host_has(("memory", "memory.swappiness"), "memory.no-such-file");
    if has_swappiness {
        assert!(!warned, "{out:?}");
        assert_eq!(cg_read(&id, ("memory", "memory.swappiness"), ""), "7");
        assert_eq!(shown.trim(), "7");
    } else {
        assert!(warned, "no warning for a discarded swappiness: {out:?}");
        assert_eq!(shown.trim(), "null");
    }
    // Out of range: the daemon refuses it (the docker CLI checks it before sending);
    // where the host has no swappiness it is discarded first, with the warning, as
    // Docker's daemon does (verifyPlatformContainerResources).
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&d.sock)
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"Image":"fixture/app:1","HostConfig":{"MemorySwappiness":101}}"#,
            "http://berth/v1.41/containers/create",
        ])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    if has_swappiness {
        assert!(
            body.contains("valid memory swappiness range is 0-100"),
            "{body}"
        );
    } else {
        assert!(body.contains("Memory swappiness discarded"), "{body}");
    }
    ok(d.docker(&["rm", "-f", "sw"]));
}
