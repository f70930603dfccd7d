//! berth's own CLI: the same verbs and flags as Docker's, and OCI archives skopeo reads.

use berth_tests::*;

fn sha256_hex(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), data).expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn berth_cli_load_images_inspect_save_both_formats() {
    let d = Daemon::start();
    // The OCI archive from stdin first: skopeo's config differs from Docker's (no
    // Healthcheck), so it is another image with the same tag; the docker archive loaded
    // next takes the tag over, as in Docker.
    let f = std::fs::File::open(fixtures().join("app-oci-archive.tar")).expect("fixture");
    let out = std::process::Command::new(berth_bin())
        .args(["--host", &d.host(), "load"])
        .stdin(f)
        .output()
        .expect("berth load");
    let out = ok(out);
    assert!(out.contains("Loaded image: fixture/app:1"), "{out}");
    let out = ok(d.berth(&["load", "-i", path(&fixtures().join("app-docker-save.tar"))]));
    assert!(out.contains("Loaded image: fixture/app:1"), "{out}");
    let dangling = ok(d.berth(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]));
    assert_eq!(
        dangling.trim(),
        FIXTURE_OCI_ID,
        "the OCI image lost its tag to the docker one"
    );

    let images = ok(d.berth(&["images", "--no-trunc"]));
    assert!(images.contains(FIXTURE_ID), "{images}");
    assert!(images
        .lines()
        .next()
        .is_some_and(|h| h.contains("REPOSITORY") && h.contains("IMAGE ID")));

    let json_lines = ok(d.berth(&["images", "--format", "json"]));
    for line in json_lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(
            v.get("Repository").is_some() && v.get("ID").is_some(),
            "{line}"
        );
    }
    let tmpl = ok(d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]));
    assert!(
        tmpl.lines()
            .any(|l| l == format!("fixture/app:1 {}", &FIXTURE_ID[7..19])),
        "{tmpl}"
    );

    let inspect = ok(d.berth(&["image", "inspect", "fixture/app:1"]));
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("inspect JSON");
    assert_eq!(v[0]["Id"], FIXTURE_ID);
    assert_eq!(v[0]["Config"]["StopSignal"], serde_json::Value::Null);
    assert_eq!(
        v[0]["RootFS"]["Layers"].as_array().map(|a| a.len()),
        Some(3)
    );

    // docker format: skopeo reads it and sees Docker's config.
    let docker_tar = d.dir.path().join("docker.tar");
    ok(d.berth(&["save", "-o", path(&docker_tar), "fixture/app:1"]));
    let oci_tar = d.dir.path().join("oci.tar");
    ok(d.berth(&[
        "save",
        "--format",
        "oci",
        "-o",
        path(&oci_tar),
        "fixture/app:1",
    ]));
    if have("skopeo") {
        let cfg = ok(std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--config",
                "--raw",
                &format!("docker-archive:{}", docker_tar.display()),
            ])
            .output()
            .expect("skopeo"));
        // skopeo sees Docker's config byte for byte: its digest is the image ID.
        assert_eq!(
            sha256_hex(cfg.as_bytes()),
            FIXTURE_ID[7..],
            "config bytes changed on save"
        );
        let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
        assert_eq!(cfg["config"]["Healthcheck"]["Retries"], 2);
        let raw = ok(std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                &format!("oci-archive:{}", oci_tar.display()),
            ])
            .output()
            .expect("skopeo"));
        let m: serde_json::Value = serde_json::from_str(&raw).expect("manifest");
        assert_eq!(
            m["config"]["digest"], FIXTURE_ID,
            "the OCI manifest must point at Docker's config"
        );
        // skopeo can copy it on to another format without complaint.
        let copy = d.dir.path().join("copy.tar");
        ok(std::process::Command::new("skopeo")
            .args([
                "copy",
                &format!("oci-archive:{}", oci_tar.display()),
                &format!("docker-archive:{}:fixture/app:copy", copy.display()),
            ])
            .output()
            .expect("skopeo copy"));
    }
    // And both reload into a fresh daemon with Docker's ID.
    let d2 = Daemon::start();
    ok(d2.berth(&["load", "-i", path(&oci_tar)]));
    ok(d2.berth(&["load", "-i", path(&docker_tar)]));
    let id = ok(d2.berth(&["image", "inspect", "--format", "{{.Id}}", "fixture/app:1"]));
    assert_eq!(id.trim(), FIXTURE_ID);
}

#[test]
fn berth_cli_import_with_changes_tag_rmi_prune() {
    let d = Daemon::start();
    let tarball = busybox_rootfs(d.dir.path());
    let out = ok(d.berth(&[
        "import",
        "--change",
        "ENTRYPOINT [\"/bin/sh\", \"-c\"]",
        "--change",
        "USER 1000",
        "--change",
        "EXPOSE 8080",
        "--change",
        "LABEL team=ops",
        path(&tarball),
        "demo/bb:1",
    ]));
    let id = out.trim().to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    let cfg = ok(d.berth(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "demo/bb:1",
    ]));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(cfg["User"], "1000");
    assert_eq!(cfg["Labels"]["team"], "ops");
    assert!(cfg["ExposedPorts"].get("8080/tcp").is_some());

    let err = fails(d.berth(&["import", "--change", "RUN rm -rf /", path(&tarball), "x:1"]));
    assert!(err.contains("RUN"), "{err}");

    ok(d.berth(&["tag", "demo/bb:1", "demo/bb:latest"]));
    let out = ok(d.berth(&["rmi", "demo/bb"]));
    assert!(out.contains("Untagged: demo/bb:latest"), "{out}");
    let err = fails(d.berth(&["rmi", "no/such:image"]));
    assert!(err.contains("No such image"), "{err}");
    let out = ok(d.berth(&["image", "prune", "-a", "-f"]));
    assert!(out.contains(&id), "{out}");
    let df = ok(d.berth(&["system", "df"]));
    assert!(df.contains("Images"), "{df}");
}
