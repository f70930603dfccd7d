//! berth's registry against real clients: skopeo pushes Docker and OCI archives into it
//! and copies them back out, podman pulls from it, and Distribution's registry, given
//! the same pushes, ends up with the same digests.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use berth_tests::{
    berth_bin, fails, fixtures, free_port, have, ok, wait_for_port, RegistryServer,
    FIXTURE_OCI_MANIFEST,
};

fn skopeo(args: &[&str]) -> String {
    ok(Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo"))
}

fn archive(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// Pushes both fixtures into the registry at `host`; returns the manifest digests
/// skopeo inspect reports for (docker-archive, oci-archive).
fn push_fixtures(host: &str) -> (String, String) {
    let docker_dst = format!("docker://{host}/fixture/app:1");
    let oci_dst = format!("docker://{host}/fixture/oci:1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive("app-docker-save.tar")),
        &docker_dst,
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", archive("app-oci-archive.tar")),
        &oci_dst,
    ]);
    (inspect_digest(&docker_dst), inspect_digest(&oci_dst))
}

fn inspect_digest(image: &str) -> String {
    let mut args = vec!["inspect"];
    if image.starts_with("docker://") {
        args.push("--tls-verify=false");
    }
    args.push(image);
    let out = skopeo(&args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo inspect JSON");
    v["Digest"].as_str().expect("Digest").to_string()
}

fn sha256_file(path: &Path) -> String {
    let out = ok(Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum"));
    format!("sha256:{}", out.split_whitespace().next().expect("hash"))
}

#[test]
fn skopeo_pushes_and_pulls_and_podman_pulls() {
    if !have("skopeo") {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let reg = RegistryServer::start(&[]);
    let host = reg.host();
    let (docker_digest, oci_digest) = push_fixtures(&host);
    // The OCI archive's manifest is pushed verbatim: the digest skopeo wrote.
    assert_eq!(oci_digest, FIXTURE_OCI_MANIFEST, "{}", reg.log());
    assert!(docker_digest.starts_with("sha256:"));

    // The tags and catalog show what was pushed.
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{host}/fixture/app"),
    ]);
    assert!(tags.contains("\"1\""), "{tags}");

    // Copied back out: the same manifest bytes.
    let out = reg.dir.path().join("out-oci.tar");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/fixture/oci:1"),
        &format!("oci-archive:{}", out.display()),
    ]);
    assert_eq!(
        inspect_digest(&format!("oci-archive:{}", out.display())),
        oci_digest
    );
    let dir_out = reg.dir.path().join("out-dir");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/fixture/app:1"),
        &format!("dir:{}", dir_out.display()),
    ]);
    assert_eq!(sha256_file(&dir_out.join("manifest.json")), docker_digest);

    // By digest too.
    let by_digest = inspect_digest(&format!("docker://{host}/fixture/app@{docker_digest}"));
    assert_eq!(by_digest, docker_digest);

    if have("podman") {
        let proot = reg.dir.path().join("podman-root");
        let prun = reg.dir.path().join("podman-runroot");
        let out = ok(Command::new("podman")
            .arg("--root")
            .arg(&proot)
            .arg("--runroot")
            .arg(&prun)
            .args([
                "pull",
                "--tls-verify=false",
                &format!("{host}/fixture/app:1"),
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run podman"));
        // podman prints the image ID: Docker's config digest.
        assert!(
            out.trim()
                .ends_with(berth_tests::FIXTURE_ID.trim_start_matches("sha256:")),
            "{out}"
        );
    } else {
        eprintln!("skipping podman pull: podman is not installed");
    }
}

/// Distribution's registry on a free port; killed on drop.
struct Distribution {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Distribution {
    fn start() -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\nlog: {{level: error}}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, &mut child, || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        });
        Distribution {
            child,
            _dir: dir,
            port,
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn digests_match_distributions_registry() {
    if !have("skopeo") || !have("docker-registry") {
        eprintln!("skipping: skopeo or docker-registry is not installed");
        return;
    }
    let berth = RegistryServer::start(&[]);
    let dist = Distribution::start();
    let ours = push_fixtures(&berth.host());
    let theirs = push_fixtures(&format!("127.0.0.1:{}", dist.port));
    assert_eq!(
        ours, theirs,
        "berth and Distribution store different manifests"
    );
}

#[test]
fn refuses_non_loopback_address_without_explicit_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = fails(
        Command::new(berth_bin())
            .args(["registry", "serve", "--root"])
            .arg(dir.path().join("root"))
            .args(["--addr", "0.0.0.0:0"])
            .output()
            .expect("run berth"),
    );
    assert!(err.contains("--insecure-listen-any"), "{err}");
}
