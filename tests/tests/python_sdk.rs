//! The Docker SDK for Python (from PyPI) drives berth's image endpoints.

use berth_tests::*;

fn require_sdk() {
    let sdk = std::process::Command::new("python3")
        .args(["-c", "import docker"])
        .status();
    if !sdk.map(|s| s.success()).unwrap_or(false) {
        panic!(
            "the Docker SDK for Python is not installed: run scripts/deps.sh (pip install docker)"
        );
    }
}

#[test]
fn docker_sdk_for_python_creates_uses_and_removes_volumes() {
    require_sdk();
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/volumes.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.host())
        .arg(fixtures())
        .output()
        .expect("python3");
    let stdout = ok(out);
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn docker_sdk_for_python_loads_lists_saves_removes_and_prunes() {
    require_sdk();
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/images.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.host())
        .arg(fixtures())
        .output()
        .expect("python3");
    let stdout = ok(out);
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn docker_sdk_for_python_exec_run() {
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/exec.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.host())
        .arg(fixtures())
        .output()
        .expect("python3");
    let stdout = ok(out);
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn docker_sdk_for_python_runs_and_attaches_to_containers() {
    require_sdk();
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/containers_stdio.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.host())
        .arg(fixtures())
        .output()
        .expect("python3");
    let stdout = ok(out);
    assert_eq!(stdout.trim(), "ok", "{}", d.log());
}

#[test]
fn docker_sdk_for_python_manages_networks_and_published_ports() {
    require_sdk();
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/networks.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.host())
        .arg(fixtures())
        .output()
        .expect("python3");
    let stdout = ok(out);
    assert_eq!(stdout.trim(), "ok", "{}", d.log());
}
