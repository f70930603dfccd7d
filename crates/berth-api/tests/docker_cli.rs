//! The real docker CLI against `berth_api::serve` on a unix socket: what a user types,
//! and what they see. Skipped (with a note) where no `docker` binary is installed.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn docker_bin() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("docker"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin/docker")])
        .find(|p| p.is_file())
}

struct Cli {
    bin: PathBuf,
    host: String,
    config: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run docker");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed; returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert_eq!(
            o.code, 0,
            "docker {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_works_against_berth() {
    let Some(bin) = docker_bin() else {
        eprintln!("skipped: no docker CLI installed");
        return;
    };
    let api = api();
    let dir = api.root.path().to_path_buf();
    let sock = dir.join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_api::serve(api.engine.clone(), listener, async {
        let _ = stop_rx.await;
    }));
    std::fs::create_dir_all(dir.join("cli-config")).expect("config dir");
    let cli = Cli {
        bin,
        host: format!("unix://{}", sock.display()),
        config: dir.join("cli-config"),
    };

    let out = cli.ok(&["version"]).await;
    assert!(out.contains("Server: berth"), "{out}");
    assert!(
        out.contains(&format!(
            "API version:      {} (minimum version 1.24)",
            berth_api::API_VERSION
        )),
        "{out}"
    );

    let o = cli.run(&["info"]).await;
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("Storage Driver: overlayfs"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("Default Runtime: berth"), "{}", o.stdout);
    // The default network is a bridge now: no warning about networking.
    assert!(!o.stderr.contains("--network none"), "{}", o.stderr);

    let out = cli
        .ok(&["load", "-i", &fixture().display().to_string()])
        .await;
    assert_eq!(out.trim(), "Loaded image: fixture/app:1");

    let out = cli.ok(&["images"]).await;
    let row = out.lines().nth(1).expect("an image row");
    assert!(
        row.starts_with("fixture/app") && row.contains(" 1 ") && row.contains("60531c6e24d2"),
        "{out}"
    );

    let out = cli
        .ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Config.WorkingDir}} {{json .Config.Entrypoint}}",
            "fixture/app:1",
        ])
        .await;
    assert_eq!(
        out.trim(),
        format!("{FIXTURE_ID} /srv/app [\"/bin/sh\",\"-c\"]")
    );

    let out = cli.ok(&["history", "fixture/app:1"]).await;
    assert_eq!(out.lines().count(), 10, "{out}");
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("60531c6e24d2")),
        "{out}"
    );

    cli.ok(&["tag", "fixture/app:1", "team/app:2"]).await;
    let out = cli
        .ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .await;
    // The docker CLI walks an image's tags through a Go map: any order.
    let mut rows = out.lines().collect::<Vec<_>>();
    rows.sort_unstable();
    assert_eq!(rows, ["fixture/app:1", "team/app:2"]);
    let out = cli.ok(&["rmi", "team/app:2"]).await;
    assert_eq!(out.trim(), "Untagged: team/app:2");

    let saved = dir.join("saved.tar");
    cli.ok(&["save", "-o", &saved.display().to_string(), "fixture/app:1"])
        .await;
    let members = tar_members(&std::fs::read(&saved).expect("saved archive"));
    assert!(members.iter().any(|m| m == "manifest.json"), "{members:?}");

    let rootfs = dir.join("rootfs.tar");
    std::fs::write(&rootfs, rootfs_tar("hi")).expect("rootfs");
    let out = cli
        .ok(&[
            "import",
            "-c",
            "CMD [\"/hello\"]",
            &rootfs.display().to_string(),
            "imp/x:1",
        ])
        .await;
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let dangling = cli.ok(&["import", &rootfs_with(&dir, "other")]).await;
    let out = cli.ok(&["images"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("<none>") && l.contains(&dangling.trim()[7..19])),
        "{out}"
    );

    let out = cli.ok(&["image", "prune", "-f"]).await;
    assert!(
        out.contains(&format!("deleted: {}", dangling.trim())),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space:"), "{out}");

    let out = cli.ok(&["system", "df"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("Images") && l.contains(" 2 ")),
        "{out}"
    );
    let out = cli.ok(&["system", "df", "-v"]).await;
    assert!(out.contains("fixture/app"), "{out}");

    let o = cli.run(&["image", "inspect", "nosuch:1"]).await;
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("No such image: nosuch:1"), "{}", o.stderr);
    let o = cli.run(&["rmi", "fixture/app:1"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("Deleted: sha256:60531c6e24d2"),
        "{}",
        o.stdout
    );

    stop_tx.send(()).expect("server running");
    server.await.expect("task").expect("serve");
}

fn rootfs_with(dir: &Path, content: &str) -> String {
    let p = dir.join(format!("rootfs-{content}.tar"));
    std::fs::write(&p, rootfs_tar(content)).expect("write rootfs");
    p.display().to_string()
}
