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

/// Runs `tests/sdk/NAME.py DOCKER_HOST FIXTURES` against a fresh daemon; the script
/// prints `ok` when every check passed.
fn run_sdk_script(name: &str) {
    require_sdk();
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sdk/{name}.py"));
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
fn docker_sdk_for_python_creates_uses_and_removes_volumes() {
    run_sdk_script("volumes");
}

#[test]
fn docker_sdk_for_python_loads_lists_saves_removes_and_prunes() {
    run_sdk_script("images");
}

#[test]
fn docker_sdk_for_python_exec_run() {
    run_sdk_script("exec");
}

#[test]
fn docker_sdk_for_python_runs_and_attaches_to_containers() {
    run_sdk_script("containers_stdio");
}

#[test]
fn docker_sdk_for_python_manages_networks_and_published_ports() {
    run_sdk_script("networks");
}

#[test]
fn docker_sdk_for_python_sees_docker_s_status_codes_timing_and_fields() {
    run_sdk_script("api_behaviour");
}

#[test]
fn docker_sdk_for_python_links_and_volumes_from() {
    run_sdk_script("links");
}

#[test]
fn docker_sdk_for_python_commits_a_container() {
    run_sdk_script("commit");
}

#[test]
fn docker_sdk_for_python_stop_during_a_restart_delay_holds() {
    run_sdk_script("restart_race");
}

#[test]
fn docker_sdk_for_python_runs_services() {
    run_sdk_script("services");
}

#[test]
fn docker_sdk_for_python_builds_images() {
    run_sdk_script("build");
}
