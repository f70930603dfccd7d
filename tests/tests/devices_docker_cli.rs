//! Host devices (`--device`) and device cgroup rules (`--device-cgroup-rule`) through the
//! real docker CLI (and the API where the CLI checks input itself): nodes made in the
//! container's /dev under their own or a new name, read and written through; the
//! permissions and rules enforced by the device cgroup (v1 files or the v2 BPF
//! program); Docker's refusals; inspect; `--privileged` still passing every device.
//!
//! The device cgroup is proved with a node of an unassigned major number (4000, which no
//! kernel driver registers): an open the cgroup lets through fails in the driver lookup
//! with ENXIO ("No such device or address"), one the cgroup refuses fails with EPERM
//! ("Operation not permitted"). Nothing of the host is touched.
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs; cgroup v1 or v2).

use std::path::Path;
use std::process::Command;

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

/// `docker run --rm` of a shell script; its stdout and stderr together.
fn run(d: &Daemon, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["fixture/app:1", script]);
    let out = d.docker(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "docker {args:?} failed: {text}");
    text
}

/// A character device node of the unassigned major 4000 on the host, in `dir`.
fn fake_device(dir: &Path, minor: u32) -> String {
    let p = dir.join(format!("fake{minor}"));
    let st = Command::new("mknod")
        .arg(&p)
        .args(["c", "4000", &minor.to_string()])
        .status()
        .expect("mknod");
    assert!(st.success(), "mknod {}", p.display());
    p.to_str().expect("path").to_string()
}

/// What opening `path` for reading and for writing says, from inside the container:
/// `read:ok` / `read:<error>` and the same for `write`.
fn open_both(path: &str) -> String {
    format!(
        "(: < {path}) 2>/tmp/r && echo read:ok || echo read:$(cat /tmp/r); \
         (: > {path}) 2>/tmp/w && echo write:ok || echo write:$(cat /tmp/w)"
    )
}

/// The API through curl (for what the docker CLI refuses before sending): status line
/// and body.
fn api(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.sock)
        .args([
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .arg(format!("http://berth/v1.41{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

#[test]
fn host_devices_are_read_and_written_through_under_their_own_or_a_new_name() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let out = run(
        &d,
        &[
            "--device",
            "/dev/null:/dev/mynull:rw",
            "--device",
            "/dev/zero:/dev/sub/myzero",
            "--device",
            "/dev/full:/dev/myfull",
        ],
        "echo gone > /dev/mynull && echo null:ok; \
         busybox stat -c 'null:%F:%t:%T' /dev/mynull; \
         busybox head -c 3 /dev/sub/myzero | busybox od -An -tx1; \
         echo x > /dev/myfull || echo full:failed",
    );
    assert!(out.contains("null:ok"), "{out}");
    // The node has the host's numbers (hex in stat's %t:%T): 1:3 is /dev/null.
    assert!(out.contains("null:character special file:1:3"), "{out}");
    assert!(out.contains(" 00 00 00"), "reads from /dev/zero: {out}");
    // /dev/full answers ENOSPC to every write: it is that device, under another name.
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("full:failed"), "{out}");
}

#[test]
fn permissions_and_rules_are_what_the_device_cgroup_allows() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let tmp = tempfile::tempdir().expect("tmp");
    let fake = fake_device(tmp.path(), 1);
    let fake2 = fake_device(tmp.path(), 2);
    // `:r`: reads reach the (absent) driver, writes are refused by the cgroup.
    let out = run(
        &d,
        &["--device", &format!("{fake}:/dev/fake:r")],
        &open_both("/dev/fake"),
    );
    assert!(
        out.contains("read:") && out.contains("No such device or address"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("write:") && l.contains("Operation not permitted")),
        "a write through an r-only device must be refused: {out}"
    );
    // `:rw` (and the default rwm): both reach the driver.
    for spec in [format!("{fake}:/dev/fake:rw"), format!("{fake}:/dev/fake")] {
        let out = run(&d, &["--device", &spec], &open_both("/dev/fake"));
        assert_eq!(
            out.matches("No such device or address").count(),
            2,
            "{spec}: {out}"
        );
    }
    // A directory passes every node below it, with the permissions given.
    let out = run(
        &d,
        &[
            "--device",
            &format!("{}:/dev/fakes:w", tmp.path().display()),
        ],
        &format!(
            "{}; {}",
            open_both("/dev/fakes/fake1"),
            open_both("/dev/fakes/fake2")
        ),
    );
    assert_eq!(out.matches("read:").count(), 2, "{out}");
    assert_eq!(out.matches("Operation not permitted").count(), 2, "{out}");
    assert_eq!(out.matches("No such device or address").count(), 2, "{out}");
    let _ = fake2;

    // A node made inside: mknod needs CAP_MKNOD, which berth does not give by default.
    let mk = "busybox mknod /tmp/n c 4000 7 2>&1 && echo made; ";
    let out = run(&d, &[], &format!("{mk}{}", open_both("/tmp/n")));
    assert!(!out.contains("made"), "mknod without CAP_MKNOD: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // With CAP_MKNOD the node is made, but the cgroup refuses to open it...
    let out = run(
        &d,
        &["--cap-add", "MKNOD"],
        &format!("{mk}{}", open_both("/tmp/n")),
    );
    assert!(out.contains("made"), "{out}");
    assert_eq!(out.matches("Operation not permitted").count(), 2, "{out}");
    // ... unless a rule allows it: `c 4000:* r` lets reads through, not writes.
    let out = run(
        &d,
        &["--cap-add", "MKNOD", "--device-cgroup-rule", "c 4000:* r"],
        &format!("{mk}{}", open_both("/tmp/n")),
    );
    assert!(out.contains("made"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("read:") && l.contains("No such device or address")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("write:") && l.contains("Operation not permitted")),
        "{out}"
    );
    let out = run(
        &d,
        &["--cap-add", "MKNOD", "--device-cgroup-rule", "c 4000:7 rwm"],
        &format!("{mk}{}", open_both("/tmp/n")),
    );
    assert_eq!(out.matches("No such device or address").count(), 2, "{out}");
}

#[test]
fn bad_devices_and_rules_are_refused_with_dockers_words_and_nothing_is_created() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let err = fails(d.docker(&[
        "run",
        "--name",
        "ghost",
        "--device",
        "/dev/berth-no-such-device",
        "fixture/app:1",
        "true",
    ]));
    assert!(
        err.contains(
            "error gathering device information while adding custom device \"/dev/berth-no-such-device\": no such file or directory"
        ),
        "{err}"
    );
    let err = fails(d.docker(&[
        "create",
        "--name",
        "ghost",
        "--device",
        "/etc/hostname:/dev/x",
        "fixture/app:1",
    ]));
    assert!(
        err.contains("adding custom device \"/etc/hostname\": not a device node"),
        "{err}"
    );
    // The runtime makes nodes only below /dev: another path is refused by name.
    let err = fails(d.docker(&[
        "create",
        "--name",
        "ghost",
        "--device",
        "/dev/null:/mynull",
        "fixture/app:1",
    ]));
    assert!(
        err.contains("/mynull") && err.contains("below /dev"),
        "{err}"
    );
    assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "", "nothing created");

    // What the docker CLI checks before sending, the daemon checks too.
    let (code, body) = api(
        &d,
        "POST",
        "/containers/create?name=ghost",
        r#"{"Image":"fixture/app:1","HostConfig":{"Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/null","CgroupPermissions":"rwx"}]}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad mode specified: rwx"), "{body}");
    for (rule, words) in [
        ("c 1:3", "invalid device cgroup rule format: 'c 1:3'"),
        (
            "x 1:3 rwm",
            "invalid device cgroup rule format: 'x 1:3 rwm'",
        ),
        (
            "c 1:3 rwx",
            "invalid device cgroup rule format: 'c 1:3 rwx'",
        ),
        (
            "c 5000:1 r",
            "invalid major value in device cgroup rule format: 'c 5000:1 r'",
        ),
    ] {
        let (code, body) = api(
            &d,
            "POST",
            "/containers/create?name=ghost",
            &format!(
                r#"{{"Image":"fixture/app:1","HostConfig":{{"DeviceCgroupRules":["{rule}"]}}}}"#
            ),
        );
        assert_eq!(code, 400, "{rule}: {body}");
        assert!(body.contains(words), "{rule}: {body}");
    }
    assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "", "nothing created");
}

#[test]
fn inspect_shows_devices_and_rules_and_update_refuses_them() {
    if !docker_available() {
        return;
    }
    let d = setup();
    ok(d.docker(&[
        "create",
        "--name",
        "devs",
        "--device",
        "/dev/null:/dev/mynull:r",
        "--device",
        "/dev/zero",
        "--device-cgroup-rule",
        "c 4000:* rw",
        "--device-cgroup-rule",
        "b *:* m",
        "fixture/app:1",
    ]));
    let devices: serde_json::Value = serde_json::from_str(&ok(d.docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Devices}}",
        "devs",
    ])))
    .expect("json");
    assert_eq!(
        devices,
        serde_json::json!([
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "r"},
            {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/zero", "CgroupPermissions": "rwm"},
        ])
    );
    let rules = ok(d.docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.DeviceCgroupRules}}",
        "devs",
    ]));
    assert_eq!(rules.trim(), r#"["c 4000:* rw","b *:* m"]"#);
    // Without them: Docker's empty list and null.
    ok(d.docker(&["create", "--name", "plain", "fixture/app:1"]));
    let plain = ok(d.docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Devices}} {{json .HostConfig.DeviceCgroupRules}}",
        "plain",
    ]));
    assert_eq!(plain.trim(), "[] null");

    // Docker's update takes neither (its CLI has no flag); berth refuses them by name.
    let (code, body) = api(
        &d,
        "POST",
        "/containers/devs/update",
        r#"{"Devices":[{"PathOnHost":"/dev/full","PathInContainer":"/dev/full","CgroupPermissions":"rwm"}]}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("updating Devices is not supported yet"),
        "{body}"
    );
    let (code, body) = api(
        &d,
        "POST",
        "/containers/devs/update",
        r#"{"DeviceCgroupRules":["c 1:3 rwm"]}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("updating DeviceCgroupRules"), "{body}");
    // The devices stay as created, and work after the refused update.
    ok(d.docker(&["start", "-a", "devs"]));
}

#[test]
fn privileged_still_passes_every_host_device_and_a_renamed_one() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let tmp = tempfile::tempdir().expect("tmp");
    let fake = fake_device(tmp.path(), 3);
    let out = run(
        &d,
        &[
            "--privileged",
            "--device",
            "/dev/null:/dev/mynull",
            "--device",
            &format!("{fake}:/dev/fake:r"),
        ],
        &format!(
            "echo x > /dev/mynull && echo mynull:ok; ls /dev/kmsg && echo kmsg:ok; {}",
            open_both("/dev/fake")
        ),
    );
    assert!(out.contains("mynull:ok"), "{out}");
    assert!(
        out.contains("kmsg:ok"),
        "a host device only --privileged passes: {out}"
    );
    // Every device is allowed: the mapping's `r` changes nothing (as Docker).
    assert_eq!(out.matches("No such device or address").count(), 2, "{out}");
}
