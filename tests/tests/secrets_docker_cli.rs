//! Swarm secrets and configs through the real docker CLI: `docker secret|config
//! create/ls/inspect/rm` (Docker's refusals by name: a taken name, an empty value, a
//! secret in use), a service's tasks get them as read-only files with the owner and mode
//! asked (a secret under /run/secrets, on a tmpfs of its own, never written to berth's
//! disk), a replaced task gets them again, `--secret-rm` then `secret rm`, a stack file's
//! `secrets:` through `docker stack deploy`, and `swarm leave --force` takes them away
//! (with the stack's overlay network).

use std::time::{Duration, Instant};

use berth_tests::*;

const SECRET: &str = "s3cr3t-value-7f1d9c";

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn eventually(what: &str, d: &Daemon, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not reached in 60 s\n{}", d.log());
}

/// The running task containers of service `name`.
fn task_containers(d: &Daemon, name: &str) -> Vec<String> {
    ok(d.docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ]))
    .lines()
    .map(str::to_string)
    .collect()
}

fn one_task(d: &Daemon, name: &str) -> String {
    let mut c = Vec::new();
    eventually(&format!("a task of {name} runs"), d, || {
        c = task_containers(d, name);
        c.len() == 1
    });
    c.remove(0)
}

fn exec(d: &Daemon, c: &str, script: &str) -> String {
    ok(d.docker(&["exec", c, "sh", "-c", script]))
}

/// Mount points under berth's state root whose file system is tmpfs.
fn tmpfs_mounts_under(root: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let root = root.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let at = f.get(4)?;
            (at.starts_with(&root) && f.get(sep + 1) == Some(&"tmpfs")).then(|| at.to_string())
        })
        .collect()
}

/// Whether any regular file under `dir` (not crossing into other file systems)
/// contains `needle`.
fn on_disk(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-rl", "--devices=skip", "-F", needle])
        .arg(dir)
        .output()
        .expect("grep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| {
            // Files on a tmpfs (the task files) are in memory, not on the disk.
            !tmpfs_mounts_under(dir)
                .iter()
                .any(|m| p.starts_with(m.as_str()))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn secrets_and_configs_reach_tasks_as_files_and_never_the_disk() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));

    // Outside a swarm: Docker's 503.
    let err = fails(d.docker(&["secret", "ls"]));
    assert!(err.contains("This node is not a swarm manager"), "{err}");
    ok(d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));

    let value = d.dir.path().join("value");
    std::fs::write(&value, SECRET).expect("write");
    let v = value.to_str().expect("path");
    let id = ok(d.docker(&["secret", "create", "--label", "team=a", "db", v]));
    assert_eq!(id.trim().len(), 25, "{id}");
    assert_eq!(
        ok(d.docker(&["secret", "ls", "--format", "{{.Name}} {{.Labels}}"])).trim(),
        "db team=a"
    );
    // The value is never sent back.
    let inspect = ok(d.docker(&["secret", "inspect", "db"]));
    assert!(!inspect.contains(SECRET), "{inspect}");
    assert!(inspect.contains(id.trim()), "{inspect}");
    let err = fails(d.docker(&["secret", "create", "db", v]));
    assert!(err.contains("db already exists"), "{err}");
    let big = d.dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 600 * 1024]).expect("write");
    let err = fails(d.docker(&["secret", "create", "big", big.to_str().expect("path")]));
    assert!(
        err.contains("data must be larger than 0 and less than 500KB"),
        "{err}"
    );
    let err = fails(d.docker(&["secret", "create", "bad/name", v]));
    assert!(err.contains("is invalid"), "{err}");

    let conf = d.dir.path().join("app.conf");
    std::fs::write(&conf, "level=debug\n").expect("write");
    ok(d.docker(&["config", "create", "app.conf", conf.to_str().expect("path")]));
    // A config's value is shown (Docker's `--pretty` prints it).
    let pretty = ok(d.docker(&["config", "inspect", "--pretty", "app.conf"]));
    assert!(pretty.contains("level=debug"), "{pretty}");
    assert_eq!(
        ok(d.docker(&["config", "ls", "--format", "{{.Name}}"])).trim(),
        "app.conf"
    );

    // A service that references both: each as a file, with the owner and mode asked.
    ok(d.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--restart-delay",
        "200ms",
        "--stop-grace-period",
        "1s",
        "--secret",
        "db",
        "--secret",
        "source=db,target=/etc/app/pw,uid=1000,gid=1001,mode=0400",
        "--config",
        "source=app.conf,target=/etc/app.conf",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let c = one_task(&d, "web");
    assert_eq!(exec(&d, &c, "cat /run/secrets/db"), SECRET);
    assert_eq!(
        exec(
            &d,
            &c,
            "stat -c '%u %g %a' /run/secrets/db /etc/app/pw /etc/app.conf"
        ),
        "0 0 444\n1000 1001 400\n0 0 444\n"
    );
    assert_eq!(exec(&d, &c, "cat /etc/app.conf"), "level=debug\n");
    // Read-only in the container, even for its root.
    let err = fails(d.docker(&["exec", &c, "sh", "-c", "echo x > /run/secrets/db"]));
    assert!(err.contains("Read-only file system"), "{err}");
    // In memory only: the task's files are on a tmpfs, and no file of berth's state
    // root on the disk holds the value (the metadata database holds it base64).
    assert!(
        tmpfs_mounts_under(&d.root)
            .iter()
            .any(|m| m.contains(&c) && m.ends_with("/files")),
        "{:?}",
        tmpfs_mounts_under(&d.root)
    );
    assert_eq!(on_disk(&d.root, SECRET), Vec::<String>::new());
    let inspect = ok(d.docker(&["inspect", &c]));
    assert!(!inspect.contains(SECRET));

    // In use: refused by name, and still there.
    let err = fails(d.docker(&["secret", "rm", "db"]));
    assert!(
        err.contains("secret 'db' is in use by the following service: web"),
        "{err}"
    );
    let err = fails(d.docker(&["config", "rm", "app.conf"]));
    assert!(
        err.contains("in use by the following service: web"),
        "{err}"
    );

    // A task killed behind the engine's back: its replacement gets the files again, and
    // the dead task's tmpfs is gone.
    ok(d.docker(&["kill", &c]));
    let mut c2 = String::new();
    eventually("the task is replaced", &d, || {
        let now = task_containers(&d, "web");
        match now.first() {
            Some(n) if *n != c => {
                c2 = n.clone();
                true
            }
            _ => false,
        }
    });
    assert_eq!(exec(&d, &c2, "cat /etc/app/pw"), SECRET);
    assert!(
        !tmpfs_mounts_under(&d.root).iter().any(|m| m.contains(&c)),
        "{:?}",
        tmpfs_mounts_under(&d.root)
    );

    // An update that drops the references; then they can go.
    ok(d.docker(&[
        "service",
        "update",
        "-d",
        "--secret-rm",
        "db",
        "--config-rm",
        "app.conf",
        "web",
    ]));
    eventually("the update is done", &d, || {
        let now = task_containers(&d, "web");
        now.len() == 1
            && now[0] != c2
            && fails(d.docker(&["exec", &now[0], "cat", "/run/secrets/db"]))
                .contains("No such file")
    });
    ok(d.docker(&["secret", "rm", "db"]));
    ok(d.docker(&["config", "rm", "app.conf"]));
    assert_eq!(ok(d.docker(&["secret", "ls", "-q"])), "");
    let err = fails(d.docker(&["secret", "inspect", "db"]));
    assert!(err.contains("not found"), "{err}");

    // A service naming a secret that does not exist is refused, and not created.
    let err = fails(d.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        "x",
        "--secret",
        "nope",
        "fixture/app:1",
    ]));
    assert!(err.contains("nope"), "{err}");
    ok(d.docker(&["service", "rm", "web"]));
    eventually("the tasks are gone", &d, || {
        task_containers(&d, "web").is_empty()
    });
}

#[test]
fn stack_secrets_and_leaving_the_swarm() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    ok(d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
    std::fs::write(d.dir.path().join("pw.txt"), SECRET).expect("write");
    std::fs::write(d.dir.path().join("app.conf"), "port=80\n").expect("write");
    let file = d.dir.path().join("stack.yml");
    std::fs::write(
        &file,
        r#"version: "3.8"
services:
  web:
    image: fixture/app:1
    command: ["sleep 1000"]
    stop_grace_period: 1s
    secrets:
      - db_pw
      - source: db_pw
        target: /etc/pw
        mode: 0440
    configs:
      - source: app
        target: /etc/app.conf
secrets:
  db_pw:
    file: ./pw.txt
configs:
  app:
    file: ./app.conf
"#,
    )
    .expect("write");
    ok(d.docker(&["stack", "deploy", "-c", file.to_str().expect("path"), "s"]));
    let mut names = ok(d.docker(&["secret", "ls", "--format", "{{.Name}}"]));
    names.push_str(&ok(d.docker(&["config", "ls", "--format", "{{.Name}}"])));
    assert_eq!(names, "s_db_pw\ns_app\n");
    let c = one_task(&d, "s_web");
    assert_eq!(exec(&d, &c, "cat /run/secrets/db_pw"), SECRET);
    assert_eq!(
        exec(&d, &c, "stat -c %a /etc/pw; cat /etc/app.conf"),
        "440\nport=80\n"
    );

    // Leaving the swarm takes the services, their secrets and configs, and the tasks'
    // tmpfs mounts.
    assert!(ok(d.docker(&["network", "ls", "--format", "{{.Name}}"])).contains("s_default"));
    ok(d.docker(&["swarm", "leave", "--force"]));
    eventually("the task is gone", &d, || {
        task_containers(&d, "s_web").is_empty()
    });
    // (Unmounted as the exit is handled, a moment after the process ends.)
    eventually("the task's tmpfs is unmounted", &d, || {
        tmpfs_mounts_under(&d.root).is_empty()
    });
    // The stack's overlay network goes with the swarm (as on a Docker node that leaves).
    eventually("the overlay network is gone", &d, || {
        !ok(d.docker(&["network", "ls", "--format", "{{.Name}}"])).contains("s_default")
    });
    ok(d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
    assert_eq!(ok(d.docker(&["secret", "ls", "-q"])), "");
    assert_eq!(ok(d.docker(&["config", "ls", "-q"])), "");
}
