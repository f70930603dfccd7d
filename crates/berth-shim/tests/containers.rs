//! End to end, as root on the real kernel: an image loaded from a `docker save` archive
//! (Docker 20.10's) runs through the engine → overlay rootfs → berth-shim → berth-driver
//! (libcontainer) → json-file log → exit.json, and containers outlive the engine.
//!
//! The test lives in the shim's crate so Cargo builds `berth-shim` and `berth-driver` for
//! it (`CARGO_BIN_EXE_*`). Skipped (with a message) when not root.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use berth_engine::{ContainerState, CreateOptions, DaemonConfig, Engine};
use berth_runtime::ContainerOptions;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/app-docker-save.tar"
);

fn setup() -> bool {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY-free in edition 2021; done once, before any engine spawns a shim.
        std::env::set_var("BERTH_SHIM", env!("CARGO_BIN_EXE_berth-shim"));
    });
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipping: containers need root");
    }
    root
}

fn engine(root: &Path) -> Engine {
    Engine::open(DaemonConfig {
        // Containers of these tests need no network: leave the host's alone.
        bridge: "none".into(),
        root: root.to_path_buf(),
        min_free_bytes: Some(0),
        ..Default::default()
    })
    .expect("open engine")
}

fn load(e: &Engine) {
    let mut f = std::fs::File::open(FIXTURE).expect("fixture");
    e.load(&mut f, &mut |_| {}).expect("load fixture");
}

fn with_cmd(script: &str) -> CreateOptions {
    CreateOptions {
        runtime: ContainerOptions {
            args_override: Some(vec![script.to_string()]),
            ..ContainerOptions::default()
        },
        ..CreateOptions::default()
    }
}

fn log_text(e: &Engine, id: &str) -> String {
    e.container_logs(id)
        .unwrap()
        .iter()
        .map(|r| r.log.clone())
        .collect()
}

#[test]
fn a_container_runs_logs_and_exits_with_its_code() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("root"));
    load(&e);

    let id = e
        .create_container("fixture/app:1", &CreateOptions::default())
        .unwrap()
        .id;
    assert_eq!(e.container_state(&id).unwrap(), ContainerState::Created);
    e.start_container(&id).unwrap();
    assert_eq!(e.wait_container(&id).unwrap(), 0);
    let logs = e.container_logs(&id).unwrap();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].log, "hello from a layer\n");
    assert_eq!(logs[0].stream, "stdout");
    assert!(logs[0].time.ends_with('Z'));
    let path = t.path().join(format!("root/containers/{id}/{id}-json.log"));
    let raw = std::fs::read_to_string(path).unwrap();
    assert!(
        raw.starts_with("{\"log\":\"hello from a layer\\n\",\"stream\":\"stdout\",\"time\":\""),
        "json-file format: {raw}"
    );
    match e.container_state(&id).unwrap() {
        ContainerState::Exited(x) => {
            assert_eq!(x.exit_code, 0);
            assert_eq!(x.signal, None);
            assert!(!x.oom_killed);
        }
        s => panic!("state {s:?}"),
    }

    // Started again: runs again, the log grows.
    e.start_container(&id).unwrap();
    assert_eq!(e.wait_container(&id).unwrap(), 0);
    assert_eq!(e.container_logs(&id).unwrap().len(), 2);

    let id3 = e
        .create_container("fixture/app:1", &with_cmd("echo out; echo err >&2; exit 3"))
        .unwrap()
        .id;
    e.start_container(&id3).unwrap();
    assert_eq!(e.wait_container(&id3).unwrap(), 3);
    // Once it exited, nothing of it is left in the runtime: no cgroup directory in any
    // hierarchy, no libcontainer state (the shim releases them).
    let cg_left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join("berth").join(&id3))
        .chain([std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/berth/{id3}"
        ))])
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(cg_left.is_empty(), "{cg_left:?}");
    assert!(!t
        .path()
        .join(format!("root/containers/{id3}/runtime/{id3}"))
        .exists());
    let logs = e.container_logs(&id3).unwrap();
    let mut got: Vec<(String, String)> = logs.into_iter().map(|r| (r.stream, r.log)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("stderr".to_string(), "err\n".to_string()),
            ("stdout".to_string(), "out\n".to_string())
        ]
    );

    e.remove_container(&id, false).unwrap();
    e.remove_container(&id3, false).unwrap();
    assert!(!t.path().join(format!("root/containers/{id}")).exists());
    assert!(e.list_containers().unwrap().is_empty());
}

#[test]
fn the_security_defaults_are_in_force_inside() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("root"));
    load(&e);
    let id = e
        .create_container(
            "fixture/app:1",
            &with_cmd("busybox grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; busybox hostname; busybox ls /sys/class/net"),
        )
        .unwrap().id;
    e.start_container(&id).unwrap();
    assert_eq!(e.wait_container(&id).unwrap(), 0);
    let out = log_text(&e, &id);
    println!("{out}");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .to_string()
    };
    assert_eq!(field("Seccomp:"), "2");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(
        u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
        berth_runtime::caps::CapSet::default_set().mask()
    );
    assert!(out.contains(&id[..12]), "hostname is the short id: {out}");
    assert!(out.lines().any(|l| l == "lo"), "network none: {out}");
    e.remove_container(&id, false).unwrap();
}

#[test]
fn a_container_outlives_its_engine_and_is_killed_by_the_next_one() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let id = {
        let e = engine(&root);
        load(&e);
        let id = e
            .create_container("fixture/app:1", &with_cmd("sleep 1000"))
            .unwrap()
            .id;
        e.start_container(&id).unwrap();
        id
        // The engine is dropped here: its lock and handles go, as when a daemon dies.
    };
    std::thread::sleep(Duration::from_millis(200));
    let e = engine(&root);
    let pid = match e.container_state(&id).unwrap() {
        ContainerState::Running { pid, .. } => pid,
        s => panic!("container must still run after the engine is gone, state {s:?}"),
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Its image cannot be removed while it exists, forced or not.
    let err = e.remove_image("fixture/app:1", false, false).unwrap_err();
    assert!(
        err.message.contains("being used by running container"),
        "{err}"
    );
    let err = e.remove_image("fixture/app:1", true, false).unwrap_err();
    assert!(err.message.contains("cannot be forced"), "{err}");
    // Nor removed without force.
    assert!(e.remove_container(&id, false).is_err());

    let started = Instant::now();
    e.kill_container(&id, libc::SIGKILL).unwrap();
    assert_eq!(e.wait_container(&id).unwrap(), 128 + libc::SIGKILL);
    assert!(started.elapsed() < Duration::from_secs(10));
    match e.container_state(&id).unwrap() {
        ContainerState::Exited(x) => assert_eq!(x.signal, Some(libc::SIGKILL)),
        s => panic!("state {s:?}"),
    }
    // The shim is gone with its container; the exit status stays for the engine.
    assert!(!t
        .path()
        .join(format!("root/containers/{id}/shim.sock"))
        .exists());

    // Stopped: rmi needs force; GC keeps the container's layers when forced.
    let err = e.remove_image("fixture/app:1", false, false).unwrap_err();
    assert!(err.message.contains("must be forced"), "{err}");
    e.remove_image("fixture/app:1", true, false).unwrap();
    e.start_container(&id).unwrap();
    e.kill_container(&id, libc::SIGTERM).unwrap();
    // sh as PID 1 ignores SIGTERM (no handler): kill it for good.
    std::thread::sleep(Duration::from_millis(100));
    if matches!(
        e.container_state(&id).unwrap(),
        ContainerState::Running { .. }
    ) {
        e.kill_container(&id, libc::SIGKILL).unwrap();
    }
    assert!(e.wait_container(&id).unwrap() > 128);
    e.remove_container(&id, false).unwrap();
    assert!(
        e.collect_garbage().unwrap() > 0,
        "the layers go with the last user"
    );
}

#[test]
fn remove_force_kills_a_running_container() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("root"));
    load(&e);
    let id = e
        .create_container("fixture/app:1", &with_cmd("sleep 1000"))
        .unwrap()
        .id;
    e.start_container(&id).unwrap();
    e.remove_container(&id, true).unwrap();
    assert!(e.list_containers().unwrap().is_empty());
    assert!(!t.path().join(format!("root/containers/{id}")).exists());
}

const DAEMON_ROOT_ENV: &str = "BERTH_TEST_DAEMON_ROOT";

/// A daemon killed with SIGKILL: this test binary is run again as a separate "daemon"
/// process that starts a container and prints its ID; it is then killed with SIGKILL.
/// The container keeps running, and a new engine finds it, its log and its exit.
#[test]
fn a_container_survives_sigkill_of_the_daemon_process() {
    if let Some(root) = std::env::var_os(DAEMON_ROOT_ENV) {
        // Inside the "daemon" process.
        let e = engine(Path::new(&root));
        load(&e);
        let id = e
            .create_container(
                "fixture/app:1",
                &with_cmd("echo started; sleep 1000; echo never"),
            )
            .unwrap()
            .id;
        e.start_container(&id).unwrap();
        println!("container-id={id}");
        std::thread::sleep(Duration::from_secs(1000));
        return;
    }
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let mut daemon = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_container_survives_sigkill_of_the_daemon_process",
            "--nocapture",
        ])
        .env(DAEMON_ROOT_ENV, &root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(daemon.stdout.take().unwrap());
    let mut id = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
            break;
        }
        if let Some(v) = line.trim().strip_prefix("container-id=") {
            id = v.to_string();
            break;
        }
    }
    assert_eq!(id.len(), 64, "the daemon process did not start a container");
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();

    let e = engine(&root);
    assert!(
        matches!(
            e.container_state(&id).unwrap(),
            ContainerState::Running { .. }
        ),
        "the container must outlive a SIGKILLed daemon"
    );
    e.kill_container(&id, libc::SIGKILL).unwrap();
    assert_eq!(e.wait_container(&id).unwrap(), 137);
    assert_eq!(log_text(&e, &id), "started\n");
    e.remove_container(&id, false).unwrap();
}

/// A container flooding its stdout never takes more log space than max-size × max-file,
/// and the newest lines are kept.
#[test]
fn a_flood_of_output_is_rotated_within_the_limit() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("root"));
    load(&e);
    let mut opts =
        with_cmd("i=0; while [ $i -lt 20000 ]; do echo \"line $i of the flood\"; i=$((i+1)); done");
    opts.log_max_size = Some(100_000);
    opts.log_max_file = Some(2);
    let id = e.create_container("fixture/app:1", &opts).unwrap().id;
    e.start_container(&id).unwrap();
    assert_eq!(e.wait_container(&id).unwrap(), 0);
    let dir = t.path().join(format!("root/containers/{id}"));
    let mut total = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with(&format!("{id}-json.log")) {
            files += 1;
            let len = entry.metadata().unwrap().len();
            assert!(len <= 100_000, "{name}: {len} bytes");
            total += len;
        }
    }
    assert_eq!(files, 2);
    assert!(total <= 200_000);
    let logs = e.container_logs(&id).unwrap();
    assert_eq!(logs.last().unwrap().log, "line 19999 of the flood\n");
    e.remove_container(&id, false).unwrap();
}

/// A container over its memory limit is OOM-killed and the exit record says so.
#[test]
fn an_oom_kill_is_recorded() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("root"));
    load(&e);
    let mut opts = with_cmd("busybox dd if=/dev/zero of=/dev/null bs=256M count=1");
    opts.runtime.resources.memory = Some(16 << 20);
    opts.runtime.resources.memory_swap = Some(16 << 20);
    let id = e.create_container("fixture/app:1", &opts).unwrap().id;
    e.start_container(&id).unwrap();
    let code = e.wait_container(&id).unwrap();
    match e.container_state(&id).unwrap() {
        ContainerState::Exited(x) => {
            assert_eq!(code, 137, "{x:?} {}", log_text(&e, &id));
            assert!(x.oom_killed, "{x:?}");
        }
        s => panic!("state {s:?}"),
    }
    e.remove_container(&id, false).unwrap();
}

/// A command missing from the image fails `start` with the runtime's reason, and the
/// container can be started again (and fails again the same way) and removed.
#[test]
fn a_missing_command_fails_start_with_a_reason() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("root"));
    load(&e);
    let opts = CreateOptions {
        runtime: ContainerOptions {
            entrypoint_override: Some(vec!["/no/such/binary".into()]),
            ..ContainerOptions::default()
        },
        ..CreateOptions::default()
    };
    let id = e.create_container("fixture/app:1", &opts).unwrap().id;
    let err = e.start_container(&id).unwrap_err();
    println!("{err}");
    assert!(err.message.contains("start failed"), "{err}");
    let err2 = e.start_container(&id).unwrap_err();
    assert!(!err2.message.contains("already exists"), "{err2}");
    e.remove_container(&id, false).unwrap();
    assert!(e.list_containers().unwrap().is_empty());
}
