//! berth's registry against real clients: skopeo pushes Docker and OCI archives into it
//! and copies them back out, podman pulls from it, and Distribution's registry, given
//! the same pushes, ends up with the same digests. Credentials, permissions, immutable
//! tags, the config file and TLS are checked with skopeo and podman too.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use berth_tests::{
    berth_bin, fails, fixtures, free_port, have, ok, registry_user_add, wait_for_port,
    RegistryServer, RegistryUser, FIXTURE_OCI_MANIFEST, REGISTRY_ADMIN,
};

fn skopeo_output(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo")
}

fn skopeo(args: &[&str]) -> String {
    ok(skopeo_output(args))
}

fn archive(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// Pushes both fixtures into the registry at `host` (with `creds` when given); returns
/// the manifest digests skopeo inspect reports for (docker-archive, oci-archive).
fn push_fixtures(host: &str, creds: Option<&str>) -> (String, String) {
    let docker_dst = format!("docker://{host}/fixture/app:1");
    let oci_dst = format!("docker://{host}/fixture/oci:1");
    let dest_creds = creds.map(|c| format!("--dest-creds={c}"));
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    args.extend(dest_creds.as_deref());
    let docker_src = format!("docker-archive:{}", archive("app-docker-save.tar"));
    let oci_src = format!("oci-archive:{}", archive("app-oci-archive.tar"));
    skopeo(&[args.as_slice(), &[&docker_src, &docker_dst]].concat());
    skopeo(&[args.as_slice(), &[&oci_src, &oci_dst]].concat());
    (
        inspect_digest(&docker_dst, creds),
        inspect_digest(&oci_dst, creds),
    )
}

fn inspect_digest(image: &str, creds: Option<&str>) -> String {
    let mut args = vec!["inspect"];
    if image.starts_with("docker://") {
        args.push("--tls-verify=false");
    }
    let creds = creds.map(|c| format!("--creds={c}"));
    args.extend(creds.as_deref());
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
    let creds = reg.admin_creds();
    let c = Some(creds.as_str());
    let src_creds = format!("--src-creds={creds}");
    let list_creds = format!("--creds={creds}");
    let (docker_digest, oci_digest) = push_fixtures(&host, c);
    // The OCI archive's manifest is pushed verbatim: the digest skopeo wrote.
    assert_eq!(oci_digest, FIXTURE_OCI_MANIFEST, "{}", reg.log());
    assert!(docker_digest.starts_with("sha256:"));

    // The tags and catalog show what was pushed.
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &list_creds,
        &format!("docker://{host}/fixture/app"),
    ]);
    assert!(tags.contains("\"1\""), "{tags}");

    // Copied back out: the same manifest bytes.
    let out = reg.dir.path().join("out-oci.tar");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &src_creds,
        &format!("docker://{host}/fixture/oci:1"),
        &format!("oci-archive:{}", out.display()),
    ]);
    assert_eq!(
        inspect_digest(&format!("oci-archive:{}", out.display()), None),
        oci_digest
    );
    let dir_out = reg.dir.path().join("out-dir");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &src_creds,
        &format!("docker://{host}/fixture/app:1"),
        &format!("dir:{}", dir_out.display()),
    ]);
    assert_eq!(sha256_file(&dir_out.join("manifest.json")), docker_digest);

    // By digest too.
    let by_digest = inspect_digest(&format!("docker://{host}/fixture/app@{docker_digest}"), c);
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
                &list_creds,
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
    let ours = push_fixtures(&berth.host(), Some(&berth.admin_creds()));
    let theirs = push_fixtures(&format!("127.0.0.1:{}", dist.port), None);
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

fn podman(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .arg("--root")
        .arg(dir.join("podman-root"))
        .arg("--runroot")
        .arg(dir.join("podman-runroot"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run podman")
}

const DEV: RegistryUser<'static> = RegistryUser {
    name: "dev",
    password: "dev-pw",
    perms: &["--pull", "team/*", "--push", "team/*"],
};
const READER: RegistryUser<'static> = RegistryUser {
    name: "reader",
    password: "reader-pw",
    perms: &["--pull", "*"],
};

#[test]
fn skopeo_and_podman_need_credentials_and_permissions() {
    if !have("skopeo") {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let reg = RegistryServer::start_with_users(&[], &[REGISTRY_ADMIN, DEV, READER]);
    let host = reg.host();
    let src = format!("docker-archive:{}", archive("app-docker-save.tar"));
    let push = |creds: Option<&str>, repo: &str| {
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        let c = creds.map(|c| format!("--dest-creds={c}"));
        args.extend(c.as_deref());
        let dst = format!("docker://{host}/{repo}:1");
        args.extend([src.as_str(), dst.as_str()]);
        skopeo_output(&args)
    };
    // Anonymous, wrong password, unknown user, no push permission: refused.
    for (creds, repo) in [
        (None, "team/app"),
        (Some("dev:wrong"), "team/app"),
        (Some("nobody:dev-pw"), "team/app"),
        (Some("reader:reader-pw"), "team/app"),
        (Some("dev:dev-pw"), "other/app"),
    ] {
        let err = fails(push(creds, repo));
        assert!(
            err.contains("unauthorized") || err.contains("denied") || err.contains("401"),
            "{creds:?} {repo}: {err}"
        );
    }
    // With push permission: accepted.
    ok(push(Some("dev:dev-pw"), "team/app"));
    let digest = inspect_digest(
        &format!("docker://{host}/team/app:1"),
        Some("reader:reader-pw"),
    );
    let err = fails(skopeo_output(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/team/app:1"),
    ]));
    assert!(err.contains("unauthorized") || err.contains("401"), "{err}");

    // The audit log names the user, the repository, the tag and the digest.
    let audit = std::fs::read_to_string(reg.root.join("audit.log")).expect("audit.log");
    let line: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit JSON"))
        .find(|v| v["action"] == "manifest.push")
        .expect("a manifest.push line");
    assert_eq!(line["user"], "dev");
    assert_eq!(line["repository"], "team/app");
    assert_eq!(line["reference"], "1");
    assert_eq!(line["digest"], digest.as_str());
    assert!(line["remote"]
        .as_str()
        .unwrap_or("")
        .starts_with("127.0.0.1:"));
    assert!(!audit.contains("dev-pw"), "{audit}");

    if have("podman") {
        let dir = reg.dir.path();
        let image = format!("{host}/team/app:1");
        let err = fails(podman(dir, &["pull", "--tls-verify=false", &image]));
        assert!(err.contains("unauthorized") || err.contains("401"), "{err}");
        let out = ok(podman(
            dir,
            &[
                "pull",
                "--tls-verify=false",
                "--creds",
                "reader:reader-pw",
                &image,
            ],
        ));
        assert!(
            out.trim()
                .ends_with(berth_tests::FIXTURE_ID.trim_start_matches("sha256:")),
            "{out}"
        );
    } else {
        eprintln!("skipping podman pull: podman is not installed");
    }
}

#[test]
fn config_file_immutable_tags_refuse_a_moved_tag() {
    if !have("skopeo") {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("registry.toml");
    std::fs::write(&config, "immutable_tags = [\"prod/*\"]\ngc_interval = 0\n").expect("config");
    let reg = RegistryServer::start(&["--config", config.to_str().expect("utf-8")]);
    let host = reg.host();
    let creds = format!("--dest-creds={}", reg.admin_creds());
    let copy = |src: &str, dst: &str| {
        skopeo_output(&["copy", "--dest-tls-verify=false", &creds, src, dst])
    };
    let docker = format!("docker-archive:{}", archive("app-docker-save.tar"));
    let oci = format!("oci-archive:{}", archive("app-oci-archive.tar"));
    ok(copy(&docker, &format!("docker://{host}/prod/app:1.0")));
    // The same image again is fine; another one under the same tag is not.
    ok(copy(&docker, &format!("docker://{host}/prod/app:1.0")));
    let err = fails(copy(&oci, &format!("docker://{host}/prod/app:1.0")));
    assert!(
        err.contains("tag 1.0 of repository prod/app is immutable (rule: prod/*)"),
        "{err}"
    );
    // Elsewhere tags move.
    ok(copy(&docker, &format!("docker://{host}/dev/app:1.0")));
    ok(copy(&oci, &format!("docker://{host}/dev/app:1.0")));

    // Unknown keys in the config file are refused.
    std::fs::write(&config, "immutable_tag = [\"prod/*\"]\n").expect("config");
    let err = fails(
        Command::new(berth_bin())
            .args(["registry", "serve", "--root"])
            .arg(dir.path().join("root2"))
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run berth"),
    );
    assert!(err.contains("immutable_tag"), "{err}");
}

#[test]
fn skopeo_pushes_over_tls() {
    if !have("skopeo") {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key_pair.serialize_pem()).expect("key");
    // containers/image trusts the *.crt files of a cert dir as CAs.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    std::fs::write(certs.join("ca.crt"), cert.pem()).expect("ca.crt");
    let reg = RegistryServer::start(&[
        "--tls-cert",
        cert_path.to_str().expect("utf-8"),
        "--tls-key",
        key_path.to_str().expect("utf-8"),
    ]);
    let host = reg.host();
    let dst = format!("docker://{host}/tls/app:1");
    let cert_dir = format!("--dest-cert-dir={}", certs.display());
    let creds = format!("--dest-creds={}", reg.admin_creds());
    let src = format!("oci-archive:{}", archive("app-oci-archive.tar"));
    // Without trusting the certificate: refused by the client.
    let err = fails(skopeo_output(&["copy", &creds, &src, &dst]));
    assert!(err.contains("certificate"), "{err}");
    ok(skopeo_output(&["copy", &cert_dir, &creds, &src, &dst]));
    let out = skopeo(&[
        "inspect",
        &format!("--cert-dir={}", certs.display()),
        &format!("--creds={}", reg.admin_creds()),
        &dst,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo inspect JSON");
    assert_eq!(v["Digest"], FIXTURE_OCI_MANIFEST);
    // The token realm is https.
    assert!(reg.log().contains("tls=true"), "{}", reg.log());
}

#[test]
fn user_add_ls_rm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    ok(registry_user_add(&root, &DEV));
    let err = fails(registry_user_add(&root, &DEV));
    assert!(err.contains("user dev already exists"), "{err}");
    let bad = RegistryUser {
        name: "x",
        password: "p",
        perms: &["--push", "Team/*"],
    };
    let err = fails(registry_user_add(&root, &bad));
    assert!(err.contains("Team/*"), "{err}");
    let users = std::fs::read_to_string(root.join("users.toml")).expect("users.toml");
    assert!(
        users.contains("version = 1") && users.contains("$2b$"),
        "{users}"
    );
    assert!(!users.contains("dev-pw"), "{users}");
    let ls = |root: &Path| {
        ok(Command::new(berth_bin())
            .args(["registry", "user", "ls", "--root"])
            .arg(root)
            .output()
            .expect("run berth"))
    };
    let out = ls(&root);
    assert!(
        out.lines()
            .any(|l| l.starts_with("dev ") && l.contains("team/*")),
        "{out}"
    );
    ok(Command::new(berth_bin())
        .args(["registry", "user", "rm", "dev", "--root"])
        .arg(&root)
        .output()
        .expect("run berth"));
    assert!(!ls(&root).contains("dev "));
}
