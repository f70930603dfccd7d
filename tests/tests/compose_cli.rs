//! docker-compose 1.29 (Debian's, the Python one operators still run) against berth,
//! unchanged and with the API version it negotiates: `up -d` creates the project's
//! network, volume and container; `up -d` after a change recreates the container (its
//! named volume's data kept); `down` removes them. Compose 1.29 reads the image's
//! `ContainerConfig` on a recreate, which Docker dropped in API 1.45 (compose fails with
//! `KeyError: 'ContainerConfig'` against Docker 25 and later); berth keeps it.

use std::process::{Command, Output, Stdio};

use berth_tests::*;

fn compose(d: &Daemon, file: &std::path::Path, args: &[&str]) -> Output {
    Command::new("docker-compose")
        .arg("-f")
        .arg(file)
        .args(["-p", "proj"])
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env_remove("COMPOSE_API_VERSION")
        .env_remove("DOCKER_API_VERSION")
        .stdin(Stdio::null())
        .output()
        .expect("run docker-compose")
}

fn stack(greeting: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: fixture/app:1
    command: ["sleep 1000"]
    environment:
      - GREETING={greeting}
    volumes:
      - data:/data
    stop_grace_period: 1s
volumes:
  data: {{}}
"#
    )
}

#[test]
fn compose_up_recreate_and_down_with_the_negotiated_api() {
    if !have("docker-compose") || !have("docker") {
        eprintln!("docker-compose or the docker CLI not installed; skipping");
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let file = d.dir.path().join("docker-compose.yml");

    std::fs::write(&file, stack("one")).expect("write");
    ok(compose(&d, &file, &["up", "-d"]));
    let env = |d: &Daemon| ok(d.docker(&["inspect", "proj_web_1", "-f", "{{json .Config.Env}}"]));
    assert!(env(&d).contains("GREETING=one"), "{}", env(&d));
    let first = ok(d.docker(&["inspect", "proj_web_1", "-f", "{{.Id}}"]));
    ok(d.docker(&["exec", "proj_web_1", "sh", "-c", "echo kept > /data/file"]));

    // A change: compose recreates the container (reading the image's ContainerConfig).
    std::fs::write(&file, stack("two")).expect("write");
    let out = compose(&d, &file, &["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Recreating proj_web_1"), "{err}");
    assert!(env(&d).contains("GREETING=two"), "{}", env(&d));
    assert_ne!(
        ok(d.docker(&["inspect", "proj_web_1", "-f", "{{.Id}}"])),
        first
    );
    assert_eq!(
        ok(d.docker(&["exec", "proj_web_1", "cat", "/data/file"])),
        "kept\n"
    );

    // Down: the container and the network go; the named volume stays (compose's rule).
    ok(compose(&d, &file, &["down"]));
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
    let nets = ok(d.docker(&["network", "ls", "--format", "{{.Name}}"]));
    assert!(!nets.contains("proj_default"), "{nets}");
    assert!(ok(d.docker(&["volume", "ls", "--format", "{{.Name}}"])).contains("proj_data"));
}

/// compose 1.29's `build:`: `up -d --build` builds the service's image through berth's
/// classic builder (build args, target, the image name compose gives it) and runs it;
/// a second `build` takes every step from the cache.
#[test]
fn compose_builds_the_service_image() {
    if !have("docker-compose") || !have("docker") {
        eprintln!("docker-compose or the docker CLI not installed; skipping");
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    let dir = d.dir.path().join("app");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM fixture/app:1 AS base\nARG WHO=nobody\nRUN echo \"hello $WHO\" > /greeting\n\
         FROM base AS final\nCOPY note.txt /note.txt\n",
    )
    .expect("write");
    std::fs::write(dir.join("note.txt"), "a note\n").expect("write");
    let file = d.dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        r#"version: "3.8"
services:
  web:
    build:
      context: ./app
      target: final
      args:
        WHO: compose
    image: built/web:1
    command: ["busybox cat /greeting /note.txt; sleep 1000"]
    stop_grace_period: 1s
"#,
    )
    .expect("write");
    let out = compose(&d, &file, &["up", "-d", "--build"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = || ok(d.docker(&["logs", "proj_web_1"]));
    for _ in 0..100 {
        if logs().contains("a note") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs(), "hello compose\na note\n");
    let out = compose(&d, &file, &["build"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Using cache") && !text.contains("Running in"),
        "{text}"
    );
    ok(compose(&d, &file, &["down"]));
}
