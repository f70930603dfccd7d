//! Pull and push through the daemon: berth's CLI and the docker CLI against berth's
//! registry and Distribution's, with credentials from `login`, the trust policy, and a
//! pull that fails halfway and resumes without fetching finished layers again.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use berth_tests::{
    berth_bin, fails, fixtures, free_port, have, ok, wait_for_port, Daemon, RegistryServer,
    FIXTURE_ID,
};

/// The fixture's three layer blobs (docker save stores them uncompressed).
const FIXTURE_LAYERS: usize = 3;

fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

/// `berth --host … ARGS` with its own credentials file.
fn berth(d: &Daemon, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(berth_bin());
    c.arg("--host")
        .arg(d.host())
        .args(args)
        .env("DOCKER_CONFIG", d.dir.path().join("berth-config"));
    run(c, stdin)
}

/// The docker CLI against this daemon (its own credentials file).
fn docker(d: &Daemon, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new("docker");
    c.args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"));
    run(c, stdin)
}

fn fixture_archive() -> String {
    fixtures().join("app-docker-save.tar").display().to_string()
}

/// berth's registry; when it has access control (`berth registry user add`), a user
/// who may pull and push everything. Returns the password when there is a user.
fn berth_registry() -> (RegistryServer, Option<&'static str>) {
    let reg = RegistryServer::start(&[]);
    let mut c = Command::new(berth_bin());
    c.args(["registry", "user", "add", "tester", "--root"])
        .arg(&reg.root)
        .args(["--password-stdin", "--pull", "*", "--push", "*"]);
    let added = run(c, Some("s3cret-pw\n")).status.success();
    (reg, added.then_some("s3cret-pw"))
}

/// `berth login`. The registry notices a new user within a second (it re-reads its
/// users file at most once a second), so a refusal right after the add is retried.
fn login(d: &Daemon, host: &str, password: Option<&str>) {
    let Some(pw) = password else {
        return;
    };
    let mut last = None;
    for _ in 0..20 {
        let out = berth(
            d,
            &["login", "-u", "tester", "--password-stdin", host],
            Some(&format!("{pw}\n")),
        );
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains("Login Succeeded"), "{text}");
            return;
        }
        last = Some(out);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ok(last.expect("a login attempt"));
}

/// Image ID and RepoDigests as `berth image inspect` shows them.
fn inspect(d: &Daemon, name: &str) -> (String, Vec<String>) {
    let out = ok(berth(d, &["image", "inspect", name], None));
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    let id = v[0]["Id"].as_str().expect("Id").to_string();
    let digests = v[0]["RepoDigests"]
        .as_array()
        .expect("RepoDigests")
        .iter()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    (id, digests)
}

fn skopeo_digest(image: &str, password: Option<&str>) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false"]);
    if let Some(pw) = password {
        c.arg("--creds").arg(format!("tester:{pw}"));
    }
    c.arg(format!("docker://{image}"));
    let v: serde_json::Value = serde_json::from_str(&ok(run(c, None))).expect("skopeo JSON");
    v["Digest"].as_str().expect("Digest").to_string()
}

fn digest_line(push_out: &str, tag: &str) -> String {
    push_out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{tag}: digest: ")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in push output:\n{push_out}"))
        .to_string()
}

#[test]
fn push_then_pull_into_a_new_daemon_gives_the_same_image() {
    let (reg, pw) = berth_registry();
    let host = reg.host();
    let name = format!("{host}/fixture/app:1");
    let allow = format!("{host}/fixture/*");
    let d1 = Daemon::start_host_net(&[
        "--allow-registry",
        &allow,
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d1, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d1, &["tag", "fixture/app:1", &name], None));
    login(&d1, &host, pw);
    let pushed = ok(berth(&d1, &["push", &name], None));
    let digest = digest_line(&pushed, "1");
    assert_eq!(
        skopeo_digest(&name, pw),
        digest,
        "the registry holds what berth reported"
    );
    let repo_digest = format!("{host}/fixture/app@{digest}");
    assert!(inspect(&d1, &name).1.contains(&repo_digest));

    let d2 = Daemon::start_host_net(&["--allow-registry", &allow]);
    login(&d2, &host, pw);
    let pulled = ok(berth(&d2, &["pull", &name], None));
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {name}")),
        "{pulled}"
    );
    let (id, digests) = inspect(&d2, &name);
    assert_eq!(id, FIXTURE_ID);
    assert_eq!(digests, vec![repo_digest.clone()]);

    // Again: nothing to fetch, and by digest it resolves to the same image.
    let again = ok(berth(&d2, &["pull", &name], None));
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}")),
        "{again}"
    );
    assert!(!again.contains("Pull complete"), "{again}");
    let by_digest = ok(berth(&d2, &["pull", &repo_digest], None));
    assert!(
        by_digest.contains(&format!("Digest: {digest}")),
        "{by_digest}"
    );
    assert_eq!(inspect(&d2, &repo_digest).0, FIXTURE_ID);
}

#[test]
fn pull_of_a_digest_the_repository_lacks_fails() {
    let (reg, pw) = berth_registry();
    let host = reg.host();
    let name = format!("{host}/fixture/app:1");
    let d = Daemon::start_host_net(&[
        "--allow-registry",
        &host,
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d, &["tag", "fixture/app:1", &name], None));
    login(&d, &host, pw);
    ok(berth(&d, &["push", &name], None));
    // The config's digest is a blob of the repository, not a manifest.
    let wrong = format!("{host}/fixture/app@{FIXTURE_ID}");
    let err = fails(berth(&d, &["pull", &wrong], None));
    assert!(err.contains("fixture/app"), "{err}");
}

#[test]
fn docker_cli_logs_in_pushes_and_pulls_through_berth() {
    if !have("docker") {
        eprintln!("skipped: docker CLI not installed");
        return;
    }
    let (reg, pw) = berth_registry();
    let host = reg.host();
    let name = format!("{host}/fixture/app:docker");
    let allow = format!("{host}/fixture/*");
    let d1 = Daemon::start_host_net(&[
        "--allow-registry",
        &allow,
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(docker(&d1, &["load", "-i", &fixture_archive()], None));
    ok(docker(&d1, &["tag", "fixture/app:1", &name], None));
    if let Some(pw) = pw {
        // Wait until the registry knows the new user.
        login(&d1, &host, Some(pw));
        let out = ok(docker(
            &d1,
            &["login", "-u", "tester", "--password-stdin", &host],
            Some(&format!("{pw}\n")),
        ));
        assert!(out.contains("Login Succeeded"), "{out}");
        // A wrong password is refused by the registry, through the daemon.
        fails(docker(
            &d1,
            &["login", "-u", "tester", "--password-stdin", &host],
            Some("wrong\n"),
        ));
    }
    let pushed = ok(docker(&d1, &["push", &name], None));
    let digest = digest_line(&pushed, "docker");
    assert_eq!(skopeo_digest(&name, pw), digest);

    let d2 = Daemon::start_host_net(&["--allow-registry", &allow]);
    if let Some(pw) = pw {
        ok(docker(
            &d2,
            &["login", "-u", "tester", "--password-stdin", &host],
            Some(&format!("{pw}\n")),
        ));
    }
    let pulled = ok(docker(&d2, &["pull", &name], None));
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    let out = ok(docker(
        &d2,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RepoDigests}}",
            &name,
        ],
        None,
    ));
    assert_eq!(
        out.trim(),
        format!("{FIXTURE_ID} [\"{host}/fixture/app@{digest}\"]")
    );
}

/// Distribution's registry (Debian's `docker-registry`) on a free port; killed on drop.
struct Distribution {
    _dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Distribution {
    fn start() -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let root = dir.path().join("data");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\nlog: {{level: error}}\n",
                root.display()
            ),
        )
        .expect("write config");
        let log = dir.path().join("registry.log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("registry.err")).expect("log"))
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, &mut child, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        Distribution {
            _dir: dir,
            port,
            child,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `DELETE path` to 127.0.0.1:`port`; returns the status line.
fn http_delete(port: u16, path: &str) -> String {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_string()
}

fn blob_present(root: &Path, digest: &str) -> bool {
    root.join("content/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .is_file()
}

#[test]
fn distribution_registry_round_trip_and_resume_after_a_failed_layer() {
    if !have("docker-registry") {
        eprintln!("skipped: docker-registry (Distribution) not installed");
        return;
    }
    let dist = Distribution::start();
    let host = dist.host();
    let name = format!("{host}/fixture/app:1");
    let d1 = Daemon::start_host_net(&[
        "--allow-registry",
        &host,
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d1, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d1, &["tag", "fixture/app:1", &name], None));
    let pushed = ok(berth(&d1, &["push", &name], None));
    let digest = digest_line(&pushed, "1");
    assert_eq!(
        skopeo_digest(&name, None),
        digest,
        "Distribution stored what berth sent"
    );

    // The manifest's layers, from the registry itself.
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"));
    let manifest: serde_json::Value = serde_json::from_str(&ok(run(c, None))).expect("manifest");
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(layers.len(), FIXTURE_LAYERS);

    // Break the pull: the registry loses the middle layer.
    let status = http_delete(dist.port, &format!("/v2/fixture/app/blobs/{}", layers[1]));
    assert!(status.contains("202"), "{status}");
    let d2 = Daemon::start_host_net(&["--allow-registry", &host]);
    let err = fails(berth(&d2, &["pull", &name], None));
    assert!(
        err.contains(&layers[1]),
        "the error names the missing layer: {err}"
    );
    // The layers that could be fetched are kept, verified, for the next attempt.
    assert!(blob_present(&d2.root, &layers[0]));
    assert!(!blob_present(&d2.root, &layers[1]));
    assert!(blob_present(&d2.root, &layers[2]));
    assert!(fails(berth(&d2, &["image", "inspect", &name], None)).contains("No such image"));

    // The blob comes back (berth re-uploads only what is missing); the pull resumes.
    let repushed = ok(berth(&d1, &["push", &name], None));
    assert_eq!(
        repushed.matches("Layer already exists").count(),
        FIXTURE_LAYERS,
        "only the lost layer is uploaded again:\n{repushed}"
    );
    let resumed = ok(berth(&d2, &["pull", &name], None));
    assert_eq!(
        resumed.matches("Already exists").count(),
        2,
        "finished layers are not fetched again:\n{resumed}"
    );
    assert_eq!(resumed.matches("Pull complete").count(), 1, "{resumed}");
    let (id, digests) = inspect(&d2, &name);
    assert_eq!(id, FIXTURE_ID);
    assert_eq!(digests, vec![format!("{host}/fixture/app@{digest}")]);
}

#[test]
fn policy_refuses_pulls_and_loads_naming_the_rule() {
    // No allow list: pulls are refused, loads are allowed.
    let d = Daemon::start_host_net(&[]);
    let err = fails(berth(&d, &["pull", "busybox"], None));
    assert!(
        err.contains(
            "image docker.io/library/busybox:latest: registry docker.io is not allowed by policy"
        ),
        "{err}"
    );
    ok(berth(&d, &["load", "-i", &fixture_archive()], None));

    // An allow list: other registries and repositories are refused, by pull and by load,
    // before anything is fetched or stored.
    let (reg, _) = berth_registry();
    let host = reg.host();
    let allow = format!("{host}/team/*");
    let d = Daemon::start_host_net(&["--allow-registry", &allow]);
    let err = fails(berth(&d, &["pull", &format!("{host}/fixture/app:1")], None));
    assert!(
        err.contains(&format!(
            "image {host}/fixture/app:1: repository {host}/fixture/app is not allowed by policy (allow: {allow})"
        )),
        "{err}"
    );
    let err = fails(berth(&d, &["pull", "busybox"], None));
    assert!(
        err.contains(&format!(
            "registry docker.io is not allowed by policy (allow: {allow})"
        )),
        "{err}"
    );
    let err = fails(berth(&d, &["load", "-i", &fixture_archive()], None));
    assert!(
        err.contains("image docker.io/fixture/app:1: registry docker.io is not allowed by policy"),
        "{err}"
    );
    assert!(ok(berth(&d, &["images", "-q"], None)).trim().is_empty());
    // The docker CLI sees the same refusal.
    if have("docker") {
        let err = fails(docker(&d, &["pull", "busybox"], None));
        assert!(err.contains("not allowed by policy"), "{err}");
    }
}

#[test]
fn policy_can_require_digests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[policy]\nallow = [\"127.0.0.1:1/team/*\"]\nrequire_digest = true\n",
    )
    .expect("write config");
    let d = Daemon::start_host_net(&["--config", &cfg.display().to_string()]);
    let err = fails(berth(&d, &["pull", "127.0.0.1:1/team/app:1"], None));
    assert!(err.contains("require_digest"), "{err}");
}

#[test]
fn logout_forgets_the_credentials() {
    let d = Daemon::start_host_net(&[]);
    let cfg_dir = d.dir.path().join("berth-config");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    std::fs::write(
        cfg_dir.join("config.json"),
        r#"{"auths":{"127.0.0.1:5999":{"auth":"dTpw"}},"psFormat":"x"}"#,
    )
    .expect("write");
    let out = ok(berth(&d, &["logout", "127.0.0.1:5999"], None));
    assert!(
        out.contains("Removing login credentials for 127.0.0.1:5999"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg_dir.join("config.json")).expect("read"))
            .expect("json");
    assert_eq!(v["psFormat"], "x", "other keys are kept");
    assert!(v["auths"].get("127.0.0.1:5999").is_none());
}

#[test]
fn image_copy_promotes_between_registries_with_equal_digests() {
    if !have("docker-registry") {
        eprintln!("skipped: docker-registry (Distribution) not installed");
        return;
    }
    let (dev, pw) = berth_registry();
    let prod = Distribution::start();
    let src = format!("{}/fixture/app:1", dev.host());
    let d = Daemon::start_host_net(&[
        "--allow-registry",
        &dev.host(),
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d, &["tag", "fixture/app:1", &src], None));
    login(&d, &dev.host(), pw);
    let digest = digest_line(&ok(berth(&d, &["push", &src], None)), "1");

    // No tag on the destination: the source's is kept.
    let dst_repo = format!("{}/promoted/app", prod.host());
    let out = ok(berth(&d, &["image", "copy", &src, &dst_repo], None));
    assert!(out.contains(&format!("digest: {digest}")), "{out}");
    assert_eq!(out.matches("copied").count(), FIXTURE_LAYERS + 1, "{out}");
    assert_eq!(skopeo_digest(&format!("{dst_repo}:1"), None), digest);
    // Again: every blob is there already.
    let out = ok(berth(
        &d,
        &["image", "copy", &src, &format!("{dst_repo}:1")],
        None,
    ));
    assert_eq!(
        out.matches("already exists").count(),
        FIXTURE_LAYERS + 1,
        "{out}"
    );

    // And the promoted image pulls from prod as the same image.
    let d2 = Daemon::start_host_net(&["--allow-registry", &prod.host()]);
    ok(berth(&d2, &["pull", &format!("{dst_repo}:1")], None));
    assert_eq!(inspect(&d2, &format!("{dst_repo}:1")).0, FIXTURE_ID);
}

/// Sends `PUT path` with `body` to 127.0.0.1:`port`; returns the status line.
fn http_put(port: u16, path: &str, content_type: &str, body: &[u8]) -> String {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send");
    s.write_all(body).expect("send body");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_string()
}

#[test]
fn pull_chooses_the_platform_from_an_index_and_keeps_it() {
    if !have("docker-registry") {
        eprintln!("skipped: docker-registry (Distribution) not installed");
        return;
    }
    let dist = Distribution::start();
    let host = dist.host();
    let d1 = Daemon::start_host_net(&[
        "--allow-registry",
        &host,
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d1, &["load", "-i", &fixture_archive()], None));
    let single = format!("{host}/fixture/app:single");
    ok(berth(&d1, &["tag", "fixture/app:1", &single], None));
    let pushed = ok(berth(&d1, &["push", &single], None));
    let m_digest = digest_line(&pushed, "single");
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{single}"));
    let raw = ok(run(c, None));
    let m_type = serde_json::from_str::<serde_json::Value>(&raw).expect("manifest")["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    // An index for two platforms (the arm64 entry names the same manifest: enough for
    // berth to have to choose, and complete, so a push sends the index back).
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": m_type, "digest": m_digest, "size": raw.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": m_type, "digest": m_digest, "size": raw.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    })
    .to_string();
    let status = http_put(
        dist.port,
        "/v2/fixture/app/manifests/multi",
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    );
    assert!(status.contains("201"), "{status}");
    let index_digest = skopeo_digest(&format!("{host}/fixture/app:multi"), None);

    let d2 = Daemon::start_host_net(&["--allow-registry", &host]);
    let multi = format!("{host}/fixture/app:multi");
    let err = fails(berth(
        &d2,
        &["pull", "--platform", "linux/s390x", &multi],
        None,
    ));
    assert!(err.contains("has no manifest for linux/s390x"), "{err}");
    let out = ok(berth(&d2, &["pull", &multi], None));
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let (id, digests) = inspect(&d2, &multi);
    assert_eq!(id, FIXTURE_ID);
    assert_eq!(digests, vec![format!("{host}/fixture/app@{index_digest}")]);

    // The index was kept: pushing the image under a new tag sends it back unchanged.
    let copy = format!("{host}/fixture/app:again");
    ok(berth(&d2, &["tag", &multi, &copy], None));
    let pushed = ok(berth(&d2, &["push", &copy], None));
    assert_eq!(digest_line(&pushed, "again"), index_digest, "{pushed}");
}

#[test]
fn pull_goes_through_a_mirror_and_names_every_endpoint_when_all_fail() {
    let (mirror, pw) = berth_registry();
    let mhost = mirror.host();
    // Put the image in the mirror under the origin's repository path.
    let d1 = Daemon::start_host_net(&[
        "--allow-registry",
        &format!("{mhost}/*"),
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d1, &["load", "-i", &fixture_archive()], None));
    let in_mirror = format!("{mhost}/fixture/app:1");
    ok(berth(&d1, &["tag", "fixture/app:1", &in_mirror], None));
    login(&d1, &mhost, pw);
    let digest = digest_line(&ok(berth(&d1, &["push", &in_mirror], None)), "1");

    // The origin: nothing listens there. Only the origin is in the allow list.
    let origin = format!("127.0.0.1:{}", free_port());
    let endpoint = match pw {
        Some(pw) => format!("http://tester:{pw}@{mhost}"),
        None => format!("http://{mhost}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[policy]\nallow = [\"{origin}/fixture/*\"]\n\n[registry_mirrors]\n\"{origin}\" = [\"{endpoint}\"]\n"
        ),
    )
    .expect("write config");
    let d2 = Daemon::start_host_net(&["--config", &cfg.display().to_string()]);
    let name = format!("{origin}/fixture/app:1");
    let pulled = ok(berth(&d2, &["pull", &name], None));
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    let (id, digests) = inspect(&d2, &name);
    assert_eq!(id, FIXTURE_ID);
    assert_eq!(
        digests,
        vec![format!("{origin}/fixture/app@{digest}")],
        "RepoDigests name the origin's repository, not the mirror's"
    );

    // The mirror does not widen the policy: the mirror's own name is still refused.
    let refused = fails(berth(&d2, &["pull", &in_mirror], None));
    assert!(refused.contains("allow"), "{refused}");

    // Missing on the mirror, the origin has it: the pull falls back to the origin.
    let (origin2, pw2) = berth_registry();
    let o2 = origin2.host();
    let empty_mirror = RegistryServer::start(&[]);
    let d3 = Daemon::start_host_net(&[
        "--allow-registry",
        &format!("{o2}/*"),
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d3, &["load", "-i", &fixture_archive()], None));
    let at_origin = format!("{o2}/fixture/app:1");
    ok(berth(&d3, &["tag", "fixture/app:1", &at_origin], None));
    login(&d3, &o2, pw2);
    let digest2 = digest_line(&ok(berth(&d3, &["push", &at_origin], None)), "1");
    let cfg2 = dir.path().join("config2.toml");
    std::fs::write(
        &cfg2,
        format!(
            "[policy]\nallow = [\"{o2}/fixture/*\"]\n\n[registry_mirrors]\n\"{o2}\" = [\"http://{}\"]\n",
            empty_mirror.host()
        ),
    )
    .expect("write config");
    let d4 = Daemon::start_host_net(&["--config", &cfg2.display().to_string()]);
    login(&d4, &o2, pw2);
    let out = ok(berth(&d4, &["pull", &at_origin], None));
    assert!(out.contains(&format!("Digest: {digest2}")), "{out}");
    assert_eq!(inspect(&d4, &at_origin).0, FIXTURE_ID);

    // Missing on the mirror, origin unreachable: the error names both.
    let err = fails(berth(
        &d2,
        &["pull", &format!("{origin}/fixture/missing:1")],
        None,
    ));
    assert!(err.contains(&format!("mirror http://{mhost}")), "{err}");
    assert!(err.contains(&format!("origin {origin}")), "{err}");
    assert!(!err.contains("s3cret-pw"), "credentials never shown: {err}");
}

/// `berth image copy` with its own credentials file (the daemon is not involved).
fn berth_copy(d: &Daemon, src: &str, dst: &str) -> String {
    ok(berth(d, &["image", "copy", src, dst], None))
}

fn last_digest(copy_out: &str) -> String {
    copy_out
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest line:\n{copy_out}"))
        .trim()
        .to_string()
}

#[test]
fn image_copy_between_archives_and_a_registry_matches_skopeo() {
    if !have("skopeo") {
        eprintln!("skipped: skopeo not installed");
        return;
    }
    let (reg, pw) = berth_registry();
    let host = reg.host();
    let d = Daemon::start_host_net(&[]);
    login(&d, &host, pw);
    let out_dir = tempfile::tempdir().expect("tempdir");

    // docker save archive → registry: a manifest made from the config, layers as they are.
    let name = format!("{host}/promo/app:1");
    let pushed = berth_copy(
        &d,
        &format!("docker-archive:{}", fixture_archive()),
        &format!("docker://{name}"),
    );
    let digest = last_digest(&pushed);
    assert_eq!(skopeo_digest(&name, pw), digest, "{pushed}");
    // Named by the archive's tag works too, and gives the same manifest.
    let again = berth_copy(
        &d,
        &format!("docker-archive:{}:fixture/app:1", fixture_archive()),
        &format!("{host}/promo/app:2"),
    );
    assert_eq!(last_digest(&again), digest);
    assert!(again.contains("already exists"), "{again}");

    // registry → oci-archive, by berth and by skopeo: the same manifest digest.
    let ours = out_dir.path().join("berth.tar");
    let theirs = out_dir.path().join("skopeo.tar");
    let out = berth_copy(
        &d,
        &format!("docker://{name}"),
        &format!("oci-archive:{}:app:1", ours.display()),
    );
    assert_eq!(last_digest(&out), digest);
    let mut c = Command::new("skopeo");
    // Keep the layers as they are (skopeo gzips uncompressed layers by default).
    c.args([
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
    ]);
    if let Some(pw) = pw {
        c.arg("--src-creds").arg(format!("tester:{pw}"));
    }
    c.arg(format!("docker://{name}"))
        .arg(format!("oci-archive:{}:app:1", theirs.display()));
    ok(run(c, None));
    let inspect_archive = |p: &Path| -> serde_json::Value {
        let mut c = Command::new("skopeo");
        c.arg("inspect").arg(format!("oci-archive:{}", p.display()));
        serde_json::from_str(&ok(run(c, None))).expect("skopeo JSON")
    };
    let (a, b) = (inspect_archive(&ours), inspect_archive(&theirs));
    assert_eq!(a["Digest"], b["Digest"]);
    assert_eq!(a["Digest"].as_str(), Some(digest.as_str()));
    assert_eq!(a["Layers"], b["Layers"]);
    assert_eq!(a["Layers"].as_array().map(Vec::len), Some(FIXTURE_LAYERS));

    // oci-archive → registry: the same digest again.
    let back = berth_copy(
        &d,
        &format!("oci-archive:{}:app:1", ours.display()),
        &format!("{host}/promo/back:1"),
    );
    assert_eq!(last_digest(&back), digest);

    // registry → docker-archive: berth loads it as the fixture image.
    let saved = out_dir.path().join("saved.tar");
    berth_copy(
        &d,
        &format!("docker://{name}"),
        &format!("docker-archive:{}:fixture/app:copied", saved.display()),
    );
    let loaded = ok(berth(
        &d,
        &["load", "-i", &saved.display().to_string()],
        None,
    ));
    assert!(loaded.contains("fixture/app:copied"), "{loaded}");
    assert_eq!(inspect(&d, "fixture/app:copied").0, FIXTURE_ID);
}

#[test]
fn image_copy_refuses_an_archive_whose_layer_is_not_its_diff_id() {
    let (reg, pw) = berth_registry();
    let host = reg.host();
    let d = Daemon::start_host_net(&[]);
    login(&d, &host, pw);
    // The fixture with one byte of its biggest layer changed.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.tar");
    let mut input = tar::Archive::new(std::fs::File::open(fixture_archive()).expect("open"));
    let mut out = tar::Builder::new(std::fs::File::create(&bad).expect("create"));
    let mut biggest: Option<(String, u64)> = None;
    let mut members = Vec::new();
    for e in input.entries().expect("entries") {
        let mut e = e.expect("entry");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("read");
        let path = e.path().expect("path").display().to_string();
        if path.ends_with("layer.tar") && biggest.as_ref().is_none_or(|b| b.1 < e.size()) {
            biggest = Some((path.clone(), e.size()));
        }
        members.push((e.header().clone(), path, data));
    }
    let target = biggest.expect("a layer").0;
    for (mut h, path, mut data) in members {
        if path == target {
            let mid = data.len() / 2;
            data[mid] ^= 0xff;
        }
        out.append_data(&mut h, &path, data.as_slice())
            .expect("append");
    }
    out.finish().expect("finish");
    let err = fails(berth(
        &d,
        &[
            "image",
            "copy",
            &format!("docker-archive:{}", bad.display()),
            &format!("{host}/promo/bad:1"),
        ],
        None,
    ));
    assert!(err.contains("diff_id"), "{err}");
    assert!(err.contains(&target), "{err}");
}

/// A build records its base (name and the registry's digest, as labels with OCI's
/// annotation keys); `berth image outdated` compares it with the registry's digest now:
/// up to date, then outdated once the base's tag moves (`--exit-code` says so).
#[test]
fn a_built_image_records_its_base_and_outdated_sees_the_tag_move() {
    if !have("docker-registry") {
        eprintln!("skipped: docker-registry (Distribution) not installed");
        return;
    }
    let dist = Distribution::start();
    let host = dist.host();
    let base = format!("{host}/base:1");
    let d = Daemon::start_host_net(&[
        "--allow-registry",
        &host,
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d, &["tag", "fixture/app:1", &base], None));
    let digest = digest_line(&ok(berth(&d, &["push", &base], None)), "1");
    ok(berth(&d, &["rmi", &base], None));
    ok(berth(&d, &["pull", &base], None));

    let ctx = tempfile::tempdir().expect("tempdir");
    let dockerfile = ctx.path().join("Dockerfile");
    std::fs::write(&dockerfile, format!("FROM {base}\nRUN echo app > /app\n")).expect("write");
    let ctx_path = ctx.path().to_str().expect("path");
    ok(berth(&d, &["build", "-t", "app:1", ctx_path], None));
    let labels = ok(berth(
        &d,
        &["image", "inspect", "app:1", "-f", "{{json .Config.Labels}}"],
        None,
    ));
    assert!(
        labels.contains(&format!(r#""org.opencontainers.image.base.name":"{base}""#)),
        "{labels}"
    );
    assert!(
        labels.contains(&format!(
            r#""org.opencontainers.image.base.digest":"{digest}""#
        )),
        "{labels}"
    );
    let table = ok(berth(&d, &["image", "outdated", "--exit-code"], None));
    let row = table
        .lines()
        .find(|l| l.starts_with("app:1"))
        .expect(&table);
    assert!(row.ends_with("up to date"), "{table}");

    // The base's tag moves in the registry: the image is outdated.
    std::fs::write(&dockerfile, "FROM fixture/app:1\nRUN echo newer > /base\n").expect("write");
    ok(berth(&d, &["build", "-t", &base, ctx_path], None));
    ok(berth(&d, &["push", &base], None));
    let out = berth(&d, &["image", "outdated", "--exit-code"], None);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("app:1"))
        .expect(&table);
    assert!(row.ends_with("outdated"), "{table}");

    // `build --rebuild-outdated`: app:1 again, from the context the daemon kept, on the
    // base as the registry has it now.
    let old_id = ok(berth(
        &d,
        &["image", "inspect", "app:1", "-f", "{{.Id}}"],
        None,
    ));
    let out = ok(berth(&d, &["build", "--rebuild-outdated"], None));
    assert!(out.contains("Rebuilding app:1"), "{out}");
    assert!(out.contains("1 outdated image(s) rebuilt"), "{out}");
    let new_id = ok(berth(
        &d,
        &["image", "inspect", "app:1", "-f", "{{.Id}}"],
        None,
    ));
    assert_ne!(old_id, new_id);
    let ran = ok(berth(
        &d,
        &["run", "--rm", "app:1", "busybox cat /base /app"],
        None,
    ));
    assert_eq!(ran, "newer\napp\n");
    let table = ok(berth(&d, &["image", "outdated", "--exit-code"], None));
    let row = table
        .lines()
        .find(|l| l.starts_with("app:1"))
        .expect(&table);
    assert!(row.ends_with("up to date"), "{table}");
}

/// A base image from a registry that wants credentials: `berth build` sends what
/// `login` stored (X-Registry-Config, as `docker build`), so the build pulls it, and
/// `image outdated` asks the registry with them too.
#[test]
fn a_build_pulls_its_base_with_the_stored_credentials_and_outdated_uses_them() {
    let (reg, pw) = berth_registry();
    let pw = pw.expect("registry user added");
    let host = reg.host();
    let base = format!("{host}/base/app:1");
    let d = Daemon::start_host_net(&[
        "--allow-registry",
        &format!("{host}/base/*"),
        "--allow-registry",
        "docker.io/fixture/*",
    ]);
    ok(berth(&d, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d, &["tag", "fixture/app:1", &base], None));
    login(&d, &host, Some(pw));
    ok(berth(&d, &["push", &base], None));
    ok(berth(&d, &["rmi", &base], None));

    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo app > /app\n"),
    )
    .expect("write");
    let ctx_path = ctx.path().to_str().expect("path");
    let built = ok(berth(&d, &["build", "-t", "app:1", ctx_path], None));
    assert!(built.contains(&format!("Pulling {base}")), "{built}");
    let table = ok(berth(&d, &["image", "outdated", "--exit-code"], None));
    let row = table
        .lines()
        .find(|l| l.starts_with("app:1"))
        .expect(&table);
    assert!(row.ends_with("up to date"), "{table}");

    // Without the credentials the registry refuses: the build says so by name.
    ok(berth(&d, &["logout", &host], None));
    ok(berth(&d, &["rmi", &base], None));
    let out = berth(&d, &["build", "--pull", "-t", "app:2", ctx_path], None);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("base image {base}")), "{text}");
    let table = ok(berth(&d, &["image", "outdated"], None));
    let row = table
        .lines()
        .find(|l| l.starts_with("app:1"))
        .expect(&table);
    assert!(row.contains("unknown"), "{table}");
}

/// `--cache-from` an image pulled from a registry (built and pushed by another host):
/// its history serves as the cache, as Docker's classic builder does, so the build on
/// a new host runs nothing and gives the pushed image itself.
#[test]
fn a_pulled_image_serves_as_cache_from() {
    if !have("docker-registry") {
        eprintln!("skipped: docker-registry (Distribution) not installed");
        return;
    }
    let dist = Distribution::start();
    let host = dist.host();
    let name = format!("{host}/app:1");
    let args = [
        "--allow-registry",
        host.as_str(),
        "--allow-registry",
        "docker.io/fixture/*",
    ];
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM fixture/app:1\nRUN echo one > /one\nENV STEP=two\nCOPY a.txt /a.txt\nCMD [\"busybox cat /one /a.txt\"]\n",
    )
    .expect("write");
    std::fs::write(ctx.path().join("a.txt"), "first\n").expect("write");
    let ctx_path = ctx.path().to_str().expect("path");

    let ci = Daemon::start_host_net(&args);
    ok(berth(&ci, &["load", "-i", &fixture_archive()], None));
    ok(berth(&ci, &["build", "-t", &name, ctx_path], None));
    ok(berth(&ci, &["push", &name], None));
    let pushed = ok(berth(
        &ci,
        &["image", "inspect", &name, "-f", "{{.Id}}"],
        None,
    ));

    let d = Daemon::start_host_net(&args);
    ok(berth(&d, &["load", "-i", &fixture_archive()], None));
    ok(berth(&d, &["pull", &name], None));
    let out = ok(berth(
        &d,
        &["build", "--cache-from", &name, "-t", "app:2", ctx_path],
        None,
    ));
    assert!(!out.contains("Running in"), "a step ran:\n{out}");
    assert_eq!(out.matches("Using cache").count(), 4, "{out}");
    let built = ok(berth(
        &d,
        &["image", "inspect", "app:2", "-f", "{{.Id}}"],
        None,
    ));
    assert_eq!(built, pushed, "the build is the pushed image");

    // A changed file: the steps before its COPY still come from the pulled image.
    std::fs::write(ctx.path().join("a.txt"), "changed\n").expect("write");
    let out = ok(berth(
        &d,
        &["build", "--cache-from", &name, "-t", "app:3", ctx_path],
        None,
    ));
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert_eq!(
        ok(berth(&d, &["run", "--rm", "app:3"], None)),
        "one\nchanged\n"
    );
    // The steps restored from it are this host's build cache now (as with Docker).
    let out = ok(berth(&d, &["build", "-t", "app:4", ctx_path], None));
    assert!(!out.contains("Running in"), "{out}");
    // On a host that did not name it, the pulled image serves as nothing.
    let other = Daemon::start_host_net(&args);
    ok(berth(&other, &["load", "-i", &fixture_archive()], None));
    ok(berth(&other, &["pull", &name], None));
    let out = ok(berth(&other, &["build", "-t", "app:2", ctx_path], None));
    assert!(!out.contains("Using cache"), "{out}");
}
