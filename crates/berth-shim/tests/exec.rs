//! Exec through the engine, as root on the real kernel: `Engine::exec_capture` (the
//! health check helper) and the life of exec instances. Lives in the shim's crate so
//! Cargo builds `berth-shim` and `berth-driver` for it. Skipped when not root.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use berth_engine::{CreateOptions, DaemonConfig, Engine, ExecConfig};
use berth_runtime::ContainerOptions;
use berth_types::ErrorKind;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/app-docker-save.tar"
);

fn setup() -> bool {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("BERTH_SHIM", env!("CARGO_BIN_EXE_berth-shim"));
    });
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipping: containers need root");
    }
    root
}

/// An engine with a running `sleep 1000` container; returns its ID.
fn running(root: &Path) -> (Engine, String) {
    let e = Engine::open(DaemonConfig {
        // Containers of these tests need no network: leave the host's alone.
        bridge: "none".into(),
        root: root.to_path_buf(),
        min_free_bytes: Some(0),
        ..Default::default()
    })
    .expect("open engine");
    let mut f = std::fs::File::open(FIXTURE).expect("fixture");
    e.load(&mut f, &mut |_| {}).expect("load fixture");
    let opts = CreateOptions {
        runtime: ContainerOptions {
            args_override: Some(vec!["sleep 1000".to_string()]),
            ..ContainerOptions::default()
        },
        ..CreateOptions::default()
    };
    let id = e.create_container("fixture/app:1", &opts).unwrap().id;
    e.start_container(&id).unwrap();
    (e, id)
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[test]
fn exec_capture_returns_exit_code_and_bounded_output_and_kills_at_the_timeout() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (e, id) = running(&t.path().join("root"));
    let long = Duration::from_secs(60);

    let (code, out) = e
        .exec_capture(&id, sh("echo out; echo err >&2; exit 3"), long)
        .unwrap();
    assert_eq!(code, 3);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("out\n") && text.contains("err\n"), "{text}");

    // Output is cut at 4096 bytes; the process still runs to its end.
    let (code, out) = e
        .exec_capture(&id, sh("busybox yes | busybox head -c 100000"), long)
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(out.len(), berth_engine::exec::CAPTURE_LIMIT);

    // A missing command: an error with runc's message (a health check records it with
    // exit code -1, as Docker's daemon does for a probe that cannot start).
    let err = e
        .exec_capture(&id, vec!["nope".into()], long)
        .expect_err("a missing command cannot start");
    assert!(
        err.message.contains("executable file not found in $PATH"),
        "{}",
        err.message
    );

    // The timeout kills the process.
    let err = e
        .exec_capture(&id, sh("sleep 1000"), Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{}", err.message);
    assert!(
        e.container_exec_ids(&id).is_empty(),
        "the killed exec still runs"
    );
    e.remove_container(&id, true).unwrap();
}

#[test]
fn exec_instances_report_their_state_and_go_with_their_container() {
    if !setup() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (e, id) = running(&t.path().join("root"));
    let exec = e
        .exec_create(
            &id,
            ExecConfig {
                cmd: sh("exit 5"),
                user: Some("1000".into()),
                ..ExecConfig::default()
            },
        )
        .unwrap();
    let info = e.exec_inspect(&exec).unwrap();
    assert!(!info.running && info.exit_code.is_none() && info.container_id == id);
    assert!(e.exec_start(&exec, true, None).unwrap().is_none());
    assert_eq!(e.exec_wait(&exec).unwrap(), 5);
    let info = e.exec_inspect(&exec).unwrap();
    assert_eq!(
        (info.running, info.exit_code, info.pid),
        (false, Some(5), 0)
    );
    // An exec runs once.
    let err = e.exec_start(&exec, true, None).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    // Bad requests are refused before anything runs.
    let err = e.exec_create(&id, ExecConfig::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    e.remove_container(&id, true).unwrap();
    assert_eq!(e.exec_inspect(&exec).unwrap_err().kind, ErrorKind::NotFound);
}
