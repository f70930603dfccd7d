//! The real docker CLI against berth: load, images, inspect, history, tag, save, import,
//! rmi, prune and system df print what Docker prints, with Docker's IDs.

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

#[test]
fn docker_cli_loads_both_fixtures_with_dockers_ids() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let v = ok(d.docker(&["version", "--format", "{{.Server.APIVersion}}"]));
    assert!(v.trim() >= "1.41", "server API version {v}");
    ok(d.docker(&["info"]));

    let out = ok(d.docker(&[
        "load",
        "-i",
        fixtures()
            .join("app-docker-save.tar")
            .to_str()
            .expect("path"),
    ]));
    assert!(out.contains("Loaded image: fixture/app:1"), "{out}");
    let id = ok(d.docker(&["image", "inspect", "--format", "{{.Id}}", "fixture/app:1"]));
    assert_eq!(id.trim(), FIXTURE_ID);

    let images = ok(d.docker(&["images"]));
    let row = images
        .lines()
        .find(|l| l.starts_with("fixture/app"))
        .expect("fixture row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "1");
    assert_eq!(cols[2], &FIXTURE_ID[7..19]);

    // The config survives: every field the issue names.
    let cfg = ok(d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "fixture/app:1",
    ]));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("config json");
    assert_eq!(cfg["WorkingDir"], "/srv/app");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat /srv/app/hello.txt"]));
    assert!(cfg["Env"]
        .as_array()
        .expect("env")
        .contains(&serde_json::json!("GREETING=hello")));
    assert_eq!(cfg["Labels"]["team"], "platform");
    assert!(cfg["ExposedPorts"].get("8080/tcp").is_some());
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/bin/cat", "/srv/app/hello.txt"])
    );
    assert_eq!(cfg["Healthcheck"]["Interval"], 2_000_000_000i64);

    let out = ok(d.docker(&[
        "load",
        "-i",
        fixtures()
            .join("app-oci-archive.tar")
            .to_str()
            .expect("path"),
    ]));
    assert!(out.contains("Loaded image"), "{out}");
    let ids = ok(d.docker(&["images", "-q", "--no-trunc"]));
    assert!(ids.contains(FIXTURE_OCI_ID), "{ids}");

    let hist = ok(d.docker(&["history", "fixture/app:1"]));
    assert!(hist.contains("WORKDIR /srv/app"), "{hist}");
}

#[test]
fn docker_cli_save_is_read_by_skopeo_and_reloads_with_the_same_id() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    ok(d.docker(&[
        "load",
        "-i",
        fixtures()
            .join("app-docker-save.tar")
            .to_str()
            .expect("path"),
    ]));
    let saved = d.dir.path().join("saved.tar");
    ok(d.docker(&["save", "-o", saved.to_str().expect("path"), "fixture/app:1"]));
    if have("skopeo") {
        let cfg = ok(std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--config",
                &format!("docker-archive:{}", saved.display()),
            ])
            .output()
            .expect("skopeo"));
        let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
        assert_eq!(cfg["config"]["WorkingDir"], "/srv/app");
        assert_eq!(
            cfg["rootfs"]["diff_ids"].as_array().map(|a| a.len()),
            Some(3)
        );
    }
    // Remove, then load what docker saved: same ID.
    let out = ok(d.docker(&["rmi", "fixture/app:1"]));
    assert!(
        out.contains("Untagged: fixture/app:1") && out.contains(&format!("Deleted: {FIXTURE_ID}")),
        "{out}"
    );
    let out = ok(d.docker(&["load", "-i", saved.to_str().expect("path")]));
    assert!(out.contains("Loaded image: fixture/app:1"), "{out}");
    let id = ok(d.docker(&["image", "inspect", "--format", "{{.Id}}", "fixture/app:1"]));
    assert_eq!(id.trim(), FIXTURE_ID);
}

#[test]
fn docker_cli_import_tag_rmi_prune_and_df() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let tarball = busybox_rootfs(d.dir.path());
    let out = ok(d.docker(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV APP=demo",
        "-c",
        "WORKDIR /srv",
        "-m",
        "from busybox",
        tarball.to_str().expect("path"),
        "demo/busybox:1",
    ]));
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let cfg = ok(d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "demo/busybox:1",
    ]));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(cfg["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(cfg["WorkingDir"], "/srv");
    assert!(cfg["Env"]
        .as_array()
        .expect("env")
        .contains(&serde_json::json!("APP=demo")));

    ok(d.docker(&["tag", "demo/busybox:1", "demo/busybox:2"]));
    let images = ok(d.docker(&["images", "demo/busybox"]));
    assert_eq!(
        images
            .lines()
            .filter(|l| l.starts_with("demo/busybox"))
            .count(),
        2,
        "{images}"
    );
    // Removing by ID with two tags needs -f, as in Docker.
    let id = ok(d.docker(&["image", "inspect", "--format", "{{.Id}}", "demo/busybox:1"]));
    let err = fails(d.docker(&["rmi", &id.trim()[7..19]]));
    assert!(err.contains("must be forced"), "{err}");
    let out = ok(d.docker(&["rmi", "demo/busybox:2"]));
    assert!(
        out.contains("Untagged: demo/busybox:2") && !out.contains("Deleted"),
        "{out}"
    );

    let df = ok(d.docker(&["system", "df"]));
    let images_row = df
        .lines()
        .find(|l| l.starts_with("Images"))
        .expect("Images row");
    assert_eq!(images_row.split_whitespace().nth(1), Some("1"), "{df}");

    // An untagged (dangling) image is pruned by `image prune`; a tagged one only with -a.
    ok(d.docker(&["import", tarball.to_str().expect("path")]));
    let dangling = ok(d.docker(&["images", "-q", "--filter", "dangling=true"]));
    assert_eq!(dangling.lines().count(), 1, "{dangling}");
    let out = ok(d.docker(&["image", "prune", "-f"]));
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert!(ok(d.docker(&["images", "-q", "--filter", "dangling=true"]))
        .trim()
        .is_empty());
    assert!(ok(d.docker(&["images", "-q"])).lines().count() == 1);
    ok(d.docker(&["image", "prune", "-a", "-f"]));
    assert!(ok(d.docker(&["images", "-q"])).trim().is_empty());
    // Nothing left on disk once the images are gone.
    let blobs = std::fs::read_dir(d.root.join("content/blobs/sha256"))
        .expect("blobs")
        .count();
    let snaps = std::fs::read_dir(d.root.join("snapshots"))
        .expect("snapshots")
        .count();
    assert_eq!(
        (blobs, snaps),
        (0, 1),
        "blobs and snapshots (besides .staging) must be gone"
    );
}

#[test]
fn docker_cli_reports_a_hostile_archive_and_nothing_is_listed() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let evil = hostile_archive(d.dir.path());
    let err = fails(d.docker(&["load", "-i", evil.to_str().expect("path")]));
    assert!(err.contains("escapes"), "{err}");
    assert!(err.contains("evil/x:1"), "{err}");
    assert!(ok(d.docker(&["images", "-q"])).trim().is_empty());
    ok(d.docker(&["image", "prune", "-a", "-f"]));
    let blobs = std::fs::read_dir(d.root.join("content/blobs/sha256"))
        .expect("blobs")
        .count();
    assert_eq!(blobs, 0, "stray blobs after a failed load and a prune");
}

/// A docker-save archive whose second layer holds `../../etc/berth-evil`.
pub fn hostile_archive(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("evil.tar");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(HOSTILE_PY)
        .arg(&p)
        .status()
        .expect("python3");
    assert!(status.success());
    p
}

const HOSTILE_PY: &str = r#"
import hashlib, io, json, sys, tarfile
def layer(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in entries:
            ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
layers = [layer([("ok.txt", b"fine\n")]), layer([("../../etc/berth-evil", b"pwned\n")])]
diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
    "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cid = hashlib.sha256(config).hexdigest()
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    paths = []
    for l in layers:
        p = hashlib.sha256(l).hexdigest() + "/layer.tar"; add(p, l); paths.append(p)
    add(cid + ".json", config)
    add("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": ["evil/x:1"], "Layers": paths}]).encode())
open(sys.argv[1], "wb").write(out.getvalue())
"#;

/// A docker-save archive whose config sets every runtime field the issue names.
const FULL_CONFIG_PY: &str = r#"
import hashlib, io, json, sys, tarfile
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
    ti = tarfile.TarInfo("hello.txt"); data = b"hi\n"; ti.size = len(data); t.addfile(ti, io.BytesIO(data))
layer = b.getvalue()
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
  "config": {"User": "1000:1000", "Env": ["A=1", "B=two"], "Entrypoint": ["/bin/app"], "Cmd": ["--serve"],
    "WorkingDir": "/srv", "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}, "Labels": {"team": "ops"},
    "Volumes": {"/data": {}}, "StopSignal": "SIGINT",
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5000000000, "Timeout": 1000000000,
                    "StartPeriod": 2000000000, "Retries": 3}},
  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}, indent=1).encode()
cid = hashlib.sha256(config).hexdigest()
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add("l1/layer.tar", layer); add(cid + ".json", config)
    add("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": ["full/config:1"], "Layers": ["l1/layer.tar"]}]).encode())
open(sys.argv[1], "wb").write(out.getvalue())
print("sha256:" + cid)
"#;

#[test]
fn every_config_field_survives_load_inspect_save() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = d.dir.path().join("full.tar");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(FULL_CONFIG_PY)
        .arg(&archive)
        .output()
        .expect("python3");
    let id = ok(out).trim().to_string();
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let cfg = ok(d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "full/config:1",
    ]));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Env"], serde_json::json!(["A=1", "B=two"]));
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/app"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["--serve"]));
    assert_eq!(cfg["WorkingDir"], "/srv");
    assert!(cfg["ExposedPorts"].get("53/udp").is_some());
    assert_eq!(cfg["Labels"]["team"], "ops");
    assert!(cfg["Volumes"].get("/data").is_some());
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["Healthcheck"]["StartPeriod"], 2_000_000_000i64);
    assert_eq!(cfg["Healthcheck"]["Retries"], 3);
    let got = ok(d.docker(&["image", "inspect", "--format", "{{.Id}}", "full/config:1"]));
    assert_eq!(got.trim(), id);
    // Saved and loaded into a fresh daemon: the same bytes, so the same ID.
    let saved = d.dir.path().join("saved.tar");
    ok(d.docker(&["save", "-o", saved.to_str().expect("path"), "full/config:1"]));
    let d2 = Daemon::start();
    ok(d2.docker(&["load", "-i", saved.to_str().expect("path")]));
    let got = ok(d2.docker(&["image", "inspect", "--format", "{{.Id}}", "full/config:1"]));
    assert_eq!(got.trim(), id);
}
