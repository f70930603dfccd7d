//! `docker commit` against berth: the container's changes become a layer over its image
//! (added, modified and deleted files, an opaque directory, hard links, symlinks, special
//! modes, empty directories), the config is the container's with `--change` applied,
//! author and message show in inspect and history, the container is paused while it is
//! read, and the committed image runs, saves and reads back with skopeo.

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn load_fixture(d: &Daemon) {
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
}

/// Runs `script` in a new container of `image`; returns its output.
fn sh(d: &Daemon, image: &str, script: &str) -> String {
    ok(d.docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        script,
    ]))
}

#[test]
fn a_committed_container_runs_with_its_changes() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let script = "set -e; B=/bin/busybox; \
        echo new > /new.txt; $B chmod 4755 /new.txt; \
        $B ln /new.txt /hard; $B ln -s /new.txt /sym; \
        $B mkdir /empty; $B chmod 1777 /empty; $B mkfifo /fifo; \
        $B rm /etc/passwd; \
        $B rm -r /srv/app; $B mkdir /srv/app; echo other > /srv/app/other";
    ok(d.docker(&[
        "run",
        "--name",
        "c1",
        "--entrypoint",
        "/bin/sh",
        "fixture/app:1",
        "-c",
        script,
    ]));
    // docker diff shows what the commit takes.
    let diff = ok(d.docker(&["diff", "c1"]));
    for want in [
        "A /new.txt",
        "D /etc/passwd",
        "C /srv/app",
        "A /srv/app/other",
    ] {
        assert!(diff.lines().any(|l| l == want), "{want} in {diff}");
    }
    let id = ok(d.docker(&[
        "commit",
        "-a",
        "Jane <jane@example.test>",
        "-m",
        "first commit",
        "-c",
        "ENV MODE=committed",
        "-c",
        "EXPOSE 9090",
        "-c",
        r#"CMD ["cat", "/new.txt"]"#,
        "c1",
        "committed/app:v1",
    ]));
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    // The new image's command and content.
    assert_eq!(
        ok(d.docker(&["run", "--rm", "--entrypoint", "", "committed/app:v1"])).trim(),
        "new"
    );
    let out = sh(
        &d,
        "committed/app:v1",
        "B=/bin/busybox; $B stat -c '%a %h' /new.txt; cat /hard; $B readlink /sym; \
         $B stat -c '%a %F' /empty; $B stat -c '%F' /fifo; \
         test -e /etc/passwd && echo passwd-back; \
         $B ls /srv/app; echo \"MODE=$MODE\"",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "4755 2",
            "new",
            "/new.txt",
            "1777 directory",
            "fifo",
            "other",
            "MODE=committed"
        ],
        "{out}"
    );
    // Config, author, parent, history.
    let fixture_id = ok(d.docker(&["image", "inspect", "-f", "{{.Id}}", "fixture/app:1"]));
    let f = ok(d.docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Author}}|{{.Parent}}|{{json .Config.ExposedPorts}}|{{.Config.WorkingDir}}",
        "committed/app:v1",
    ]));
    let want = format!(
        "Jane <jane@example.test>|{}|{{\"8080/tcp\":{{}},\"9090/tcp\":{{}}}}|/srv/app",
        fixture_id.trim()
    );
    assert_eq!(f.trim(), want);
    let hist = ok(d.docker(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "committed/app:v1",
    ]));
    let top = hist.lines().next().expect("history row");
    assert!(top.ends_with("|first commit"), "{hist}");
    // The parent of a committed image: by ID a conflict even forced (Docker's words).
    let e = fails(d.docker(&["rmi", "-f", fixture_id.trim()]));
    assert!(
        e.contains("(cannot be forced) - image has dependent child images"),
        "{e}"
    );
    // A change Docker's commit does not take is refused by name.
    let e = fails(d.docker(&["commit", "-c", "RUN true", "c1"]));
    assert!(e.contains("run is not a valid change command"), "{e}");
    // No repository: a dangling image.
    let dangling = ok(d.docker(&["commit", "c1"]));
    let images = ok(d.docker(&["images", "--filter", "dangling=true", "-q", "--no-trunc"]));
    assert!(images.contains(dangling.trim()), "{images}");
    // berth's own CLI: the same endpoint, docker's flags.
    let by_berth = ok(d.berth(&[
        "commit",
        "-a",
        "berth",
        "-m",
        "via berth",
        "--pause=false",
        "c1",
        "berth/made:1",
    ]));
    assert!(by_berth.trim().starts_with("sha256:"), "{by_berth}");
    let a = ok(d.docker(&["image", "inspect", "-f", "{{.Author}}", "berth/made:1"]));
    assert_eq!(a.trim(), "berth");
    // A commit of an unchanged container adds no layer.
    ok(d.docker(&["create", "--name", "c2", "committed/app:v1"]));
    ok(d.docker(&["commit", "c2", "committed/app:same"]));
    let layers = |r: &str| {
        ok(d.docker(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", r]))
            .trim()
            .to_string()
    };
    assert_eq!(layers("committed/app:same"), layers("committed/app:v1"));
    // docker save of the committed image reads back with skopeo.
    if have("skopeo") {
        let archive = d.dir.path().join("committed.tar");
        ok(d.docker(&[
            "save",
            "-o",
            archive.to_str().expect("path"),
            "committed/app:v1",
        ]));
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", archive.display()))
            .output()
            .expect("skopeo");
        let cfg: serde_json::Value = serde_json::from_str(&ok(out)).expect("skopeo config json");
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["cat", "/new.txt"]));
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(4));
    }
}

#[test]
fn a_running_container_is_paused_while_it_is_committed() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "live",
        // The image's probes are execs: their events would slip into the list below.
        "--no-healthcheck",
        "--entrypoint",
        "/bin/sh",
        "fixture/app:1",
        "-c",
        "echo up > /state; echo ready; exec sleep 300",
    ]));
    // /state written before the first commit (read from the logs: an exec or a copy
    // would add events of its own).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let logs = ok(d.docker(&["logs", "live"]));
        if logs.trim() == "ready" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "live never wrote /state: {logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let start = chrono_now();
    ok(d.docker(&["commit", "live", "live/img:1"]));
    ok(d.docker(&["commit", "--pause=false", "live", "live/img:2"]));
    let end = chrono_now() + 1;
    let events = ok(d.docker(&[
        "events",
        "--since",
        &(start - 1).to_string(),
        "--until",
        &end.to_string(),
        "--filter",
        "container=live",
        "--format",
        "{{.Action}}",
    ]));
    let actions: Vec<&str> = events
        .lines()
        .filter(|a| !matches!(*a, "create" | "start"))
        .collect();
    assert_eq!(
        actions,
        vec!["pause", "commit", "unpause", "commit"],
        "{events}"
    );
    // Still running, not paused, and the image has its file.
    let st = ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "live"]));
    assert_eq!(st.trim(), "running");
    assert_eq!(sh(&d, "live/img:1", "cat /state").trim(), "up");
    ok(d.docker(&["rm", "-f", "live"]));
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
