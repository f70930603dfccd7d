//! The real docker CLI drives berth's volumes and mounts: `volume create|ls|inspect|rm|
//! prune` (output compared with berth's own CLI), named volumes shared between
//! containers, read-only mounts, tmpfs, anonymous volumes and `rm -v`, copy-up of image
//! content, and hostile names, targets and symlinks.
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs, cgroup v2).

use std::path::Path;

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

/// Removes every container (and its anonymous volumes) when a test ends, pass or fail,
/// so no overlay stays mounted under the test's temporary directory.
struct RemoveContainers<'a>(&'a Daemon);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let ids = String::from_utf8_lossy(&self.0.docker(&["ps", "-aq"]).stdout).into_owned();
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.split_whitespace());
        if args.len() > 3 {
            let _ = self.0.docker(&args);
        }
    }
}

fn daemon_with_fixture() -> Daemon {
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    d
}

/// `docker run -d ARGS`, waits; returns (exit code, stdout+stderr of the logs, id).
fn run(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    let id = ok(d.docker(&a)).trim().to_string();
    let code: i32 = ok(d.docker(&["wait", &id]))
        .trim()
        .parse()
        .expect("exit code");
    let logs = d.docker(&["logs", &id]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    (code, text, id)
}

fn inspect(d: &Daemon, obj: &str, format: &str) -> String {
    ok(d.docker(&["inspect", "--format", format, obj]))
        .trim()
        .to_string()
}

/// A gzip rootfs tarball: busybox, plus what `extra` adds to the rootfs directory.
fn rootfs_tarball(dir: &Path, extra: impl Fn(&Path)) -> std::path::PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    for a in ["sh", "cat", "echo", "ls", "grep", "sleep", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
    }
    extra(&rootfs);
    let out = dir.join("rootfs.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-czf"])
        .arg(&out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    out
}

#[test]
fn volume_lifecycle_and_output_match_the_docker_cli() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        ok(d.docker(&["volume", "create", "--label", "team=db", "--label", "tier", "vol10"])),
        "vol10\n"
    );
    assert_eq!(ok(d.berth(&["volume", "create", "vol2"])), "vol2\n");
    // Creating an existing name returns it, unchanged (labels stay).
    assert_eq!(ok(d.docker(&["volume", "create", "vol10"])), "vol10\n");
    let anon = ok(d.docker(&["volume", "create"])).trim().to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    assert!(anon.bytes().all(|b| b.is_ascii_hexdigit()), "{anon}");

    // Listing: the docker CLI and berth's print the same bytes.
    for args in [
        &["volume", "ls"][..],
        &["volume", "ls", "-q"],
        &["volume", "ls", "--filter", "label=team=db"],
        &[
            "volume",
            "ls",
            "--filter",
            "name=vol",
            "--format",
            // (Not {{.Labels}} of a volume with two labels: the docker CLI prints them
            // in Go's random map order.)
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Mountpoint}}",
        ],
        &["volume", "ls", "--filter", "name=vol2", "--format", "json"],
        &["volume", "inspect", "vol10", "vol2"],
        &[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Mountpoint}}",
            "vol2",
        ],
    ] {
        assert_eq!(ok(d.docker(args)), ok(d.berth(args)), "{args:?}");
    }
    assert_eq!(
        ok(d.berth(&[
            "volume",
            "ls",
            "--filter",
            "name=vol10",
            "--format",
            "{{.Labels}}"
        ])),
        "team=db,tier=\n"
    );
    let ls = ok(d.docker(&["volume", "ls"]));
    let mut lines = ls.lines();
    assert_eq!(lines.next(), Some("DRIVER    VOLUME NAME"), "{ls}");
    let names: Vec<&str> = lines
        .map(|l| l.split_whitespace().nth(1).expect(l))
        .collect();
    assert_eq!(names, [anon.as_str(), "vol2", "vol10"], "{ls}");
    assert_eq!(
        ok(d.docker(&["volume", "ls", "-q", "--filter", "label=team=db"])),
        "vol10\n"
    );
    assert_eq!(
        ok(d.docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.volume.anonymous"
        ])),
        format!("{anon}\n")
    );
    assert_eq!(
        ok(d.docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "dangling=true",
            "--filter",
            "name=vol2"
        ])),
        "vol2\n"
    );

    let mountpoint = d.root.join("volumes/vol10/_data");
    assert_eq!(
        ok(d.docker(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Mountpoint}} {{index .Labels \"team\"}}",
            "vol10"
        ])),
        format!("vol10 local local {} db\n", mountpoint.display())
    );
    assert!(mountpoint.is_dir());
    let created = ok(d.docker(&["volume", "inspect", "--format", "{{.CreatedAt}}", "vol10"]));
    // RFC 3339 in UTC, seconds: 2026-11-26T13:05:00Z.
    let c = created.trim().as_bytes();
    assert!(
        c.len() == 20 && c[4] == b'-' && c[10] == b'T' && c[19] == b'Z',
        "CreatedAt {created}"
    );

    // Volumes survive a daemon restart.
    let mut d = d;
    d.restart_after_sigkill();
    assert_eq!(
        ok(d.docker(&["volume", "ls", "-q"])),
        format!("{anon}\nvol2\nvol10\n")
    );

    // Refusals name the object and the rule, and change nothing.
    let err = fails(d.docker(&["volume", "create", "../x"]));
    assert!(
        err.contains("\"../x\" includes invalid characters for a local volume name"),
        "{err}"
    );
    let err = fails(d.docker(&["volume", "create", "-d", "nfs", "nv"]));
    assert!(
        err.contains("volume driver \"nfs\" is not supported yet"),
        "{err}"
    );
    let err = fails(d.docker(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "tv",
    ]));
    assert!(err.contains("not supported yet"), "{err}");
    assert!(!ok(d.docker(&["volume", "ls", "-q"])).contains("nv"));
    let err = fails(d.docker(&["volume", "inspect", "nope"]));
    assert!(err.contains("no such volume"), "{err}");
    let (docker, berth) = (
        d.docker(&["volume", "inspect", "nope", "vol2"]),
        d.berth(&["volume", "inspect", "nope", "vol2"]),
    );
    assert_eq!(docker.stdout, berth.stdout);
    assert_eq!(docker.stderr, berth.stderr);
    assert!(!docker.status.success() && !berth.status.success());
    let err = fails(d.docker(&["volume", "rm", "nope"]));
    assert!(err.contains("no such volume"), "{err}");
    ok(d.docker(&["volume", "rm", "-f", "nope"]));

    // Prune (API >= 1.42): anonymous ones only, unless --all; label filters.
    let out = ok(d.docker(&["volume", "prune", "-f"]));
    assert_eq!(
        out,
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n")
    );
    let out = ok(d.docker(&["volume", "prune", "-af", "--filter", "label!=team"]));
    assert_eq!(out, "Deleted Volumes:\nvol2\n\nTotal reclaimed space: 0B\n");
    assert_eq!(ok(d.docker(&["volume", "rm", "vol10"])), "vol10\n");
    assert_eq!(ok(d.docker(&["volume", "ls", "-q"])), "");
    assert!(!mountpoint.exists());
    assert_eq!(
        ok(d.berth(&["volume", "prune", "-f"])),
        "Total reclaimed space: 0B\n"
    );
    // A client of API 1.41 gets that version's prune: every unused volume.
    ok(d.docker(&["volume", "create", "oldapi"]));
    let out = ok(std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", "--unix-socket"])
        .arg(&d.sock)
        .arg("http://berth/v1.41/volumes/prune")
        .output()
        .expect("curl"));
    assert_eq!(out, r#"{"VolumesDeleted":["oldapi"],"SpaceReclaimed":0}"#);
}

#[test]
fn named_volume_data_survives_containers_and_read_only_refuses_writes() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_fixture();
    let _cleanup = RemoveContainers(&d);
    let (code, logs, first) = run(
        &d,
        &[
            "--name",
            "writer",
            "-v",
            "shared:/data",
            "fixture/app:1",
            "echo persisted > /data/f",
        ],
    );
    assert_eq!(code, 0, "{logs}");
    // Named volumes are created on first use, with Docker's mount point fields.
    assert_eq!(
        inspect(&d, "writer", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.Driver}} {{.Mode}} {{.RW}}{{end}}"),
        "volume shared /data local z true"
    );
    assert_eq!(
        inspect(&d, "writer", "{{json .HostConfig.Binds}}"),
        r#"["shared:/data"]"#
    );
    let ps = ok(d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Mounts}}"]));
    assert!(ps.lines().any(|l| l == "writer shared"), "{ps}");
    // In use by a stopped container: refused (force does not override), naming it.
    for args in [
        &["volume", "rm", "shared"][..],
        &["volume", "rm", "-f", "shared"],
    ] {
        let err = fails(d.docker(args));
        assert!(
            err.contains("volume is in use") && err.contains(&first),
            "{err}"
        );
    }
    // Prune skips volumes in use.
    assert_eq!(
        ok(d.docker(&["volume", "prune", "-af"])),
        "Total reclaimed space: 0B\n"
    );
    ok(d.docker(&["rm", "writer"]));
    // Removing the container keeps the named volume, even with -v.
    let (code, logs, second) = run(&d, &["-v", "shared:/data", "fixture/app:1", "cat /data/f"]);
    assert_eq!((code, logs.trim()), (0, "persisted"));
    ok(d.docker(&["rm", "-v", &second]));
    assert!(ok(d.docker(&["volume", "ls", "-q"])).contains("shared"));
    // The same content from another container, read-only: writes fail inside.
    let (code, logs, ro) = run(
        &d,
        &[
            "-v",
            "shared:/data:ro",
            "fixture/app:1",
            "cat /data/f && echo x > /data/g",
        ],
    );
    assert_ne!(code, 0, "write to a read-only volume succeeded: {logs}");
    assert!(
        logs.contains("persisted") && logs.contains("Read-only file system"),
        "{logs}"
    );
    assert_eq!(
        inspect(&d, &ro, "{{range .Mounts}}{{.Mode}} {{.RW}}{{end}}"),
        "ro false"
    );
    assert!(!d.root.join("volumes/shared/_data/g").exists());
    ok(d.docker(&["rm", &ro]));
    // Nothing uses it any more.
    assert_eq!(ok(d.docker(&["volume", "rm", "shared"])), "shared\n");

    // -v with a missing host directory creates it; --mount type=bind refuses it.
    let host = d.dir.path().join("made-by-v");
    let spec = format!("{}:/h", host.display());
    let (code, logs, id) = run(&d, &["-v", &spec, "fixture/app:1", "echo hi > /h/f"]);
    assert_eq!(code, 0, "{logs}");
    assert_eq!(
        std::fs::read_to_string(host.join("f")).expect("bind wrote"),
        "hi\n"
    );
    assert_eq!(
        inspect(&d, &id, "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}} {{.Propagation}}{{end}}"),
        format!("bind {} /h true rprivate", host.display())
    );
    // A file bind onto a path the image does not have: the file is the mount target.
    let conf = d.dir.path().join("app.conf");
    std::fs::write(&conf, "key=value\n").expect("write");
    let spec = format!("{}:/etc/app/app.conf:ro", conf.display());
    let (code, logs, _) = run(&d, &["-v", &spec, "fixture/app:1", "cat /etc/app/app.conf"]);
    assert_eq!((code, logs.as_str()), (0, "key=value\n"));
    let missing = format!("type=bind,source={}/nope,target=/h", d.dir.path().display());
    let err = fails(d.docker(&["create", "--mount", &missing, "fixture/app:1"]));
    assert!(err.contains("bind source path does not exist"), "{err}");
}

#[test]
fn tmpfs_mounts_are_tmpfs_with_their_size_and_mode() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_fixture();
    let _cleanup = RemoveContainers(&d);
    let (code, logs, id) = run(
        &d,
        &[
            "--tmpfs",
            "/scratch:size=1m,mode=1770",
            "--mount",
            "type=tmpfs,destination=/t2,tmpfs-size=2097152",
            "fixture/app:1",
            "busybox grep -E ' /(scratch|t2) ' /proc/mounts && echo x > /scratch/f && busybox stat -c %a /scratch",
        ],
    );
    assert_eq!(code, 0, "{logs}");
    let scratch = logs
        .lines()
        .find(|l| l.contains(" /scratch "))
        .expect(&logs);
    assert!(scratch.starts_with("tmpfs /scratch tmpfs "), "{scratch}");
    assert!(
        scratch.contains("size=1024k") && scratch.contains("noexec"),
        "{scratch}"
    );
    let t2 = logs.lines().find(|l| l.contains(" /t2 ")).expect(&logs);
    assert!(t2.contains("size=2048k"), "{t2}");
    assert_eq!(logs.lines().last(), Some("1770"), "{logs}");
    assert_eq!(
        inspect(&d, &id, "{{json .HostConfig.Tmpfs}}"),
        r#"{"/scratch":"size=1m,mode=1770"}"#
    );
    // As Docker 20.10: a --mount tmpfs is in .Mounts, a --tmpfs one is not.
    let mounts = inspect(&d, &id, "{{json .Mounts}}");
    assert!(
        mounts.contains(r#""Type":"tmpfs","Source":"","Destination":"/t2""#),
        "{mounts}"
    );
    assert!(!mounts.contains("/scratch"), "{mounts}");
    let err = fails(d.docker(&["create", "--tmpfs", "/x:uid=1000", "fixture/app:1"]));
    assert!(
        err.contains("tmpfs option \"uid=1000\"") && err.contains("not supported yet"),
        "{err}"
    );
}

#[test]
fn anonymous_volumes_rm_v_and_prune_rules() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_fixture();
    let _cleanup = RemoveContainers(&d);
    let (code, logs, id) = run(&d, &["-v", "/data", "fixture/app:1", "echo x > /data/f"]);
    assert_eq!(code, 0, "{logs}");
    let anon = inspect(&d, &id, "{{range .Mounts}}{{.Name}}{{end}}");
    assert_eq!(anon.len(), 64, "{anon}");
    assert_eq!(
        inspect(&d, &id, "{{json .Config.Volumes}}"),
        r#"{"/data":{}}"#
    );
    assert_eq!(
        ok(d.docker(&["volume", "inspect", "--format", "{{json .Labels}}", &anon])).trim(),
        r#"{"com.docker.volume.anonymous":""}"#
    );
    // In use: prune skips it, rm refuses it.
    ok(d.docker(&["volume", "create", "named"]));
    let (_, _, keeper) = run(
        &d,
        &["-v", "kept:/k", "-v", "/anon2", "fixture/app:1", "true"],
    );
    let anon2 = inspect(
        &d,
        &keeper,
        "{{range .Mounts}}{{if eq .Destination \"/anon2\"}}{{.Name}}{{end}}{{end}}",
    );
    assert_eq!(
        ok(d.docker(&["volume", "prune", "-f"])),
        "Total reclaimed space: 0B\n"
    );
    // rm -v removes the container's anonymous volume, not the named one.
    ok(d.docker(&["rm", "-v", &id]));
    let left = ok(d.docker(&["volume", "ls", "-q"]));
    assert!(!left.contains(&anon), "{left}");
    // The keeper's volumes survive a removal without -v, and become prunable.
    ok(d.docker(&["rm", &keeper]));
    let out = ok(d.docker(&["volume", "prune", "-f"]));
    assert_eq!(
        out,
        format!("Deleted Volumes:\n{anon2}\n\nTotal reclaimed space: 0B\n")
    );
    let mut left: Vec<String> = ok(d.docker(&["volume", "ls", "-q"]))
        .lines()
        .map(String::from)
        .collect();
    left.sort();
    assert_eq!(left, ["kept", "named"]);
    // system df counts volumes and their size.
    let (code, _, _) = run(&d, &["-v", "kept:/k", "fixture/app:1", "echo 12345 > /k/f"]);
    assert_eq!(code, 0);
    let df = ok(d.docker(&["system", "df"]));
    let row = df
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .expect(&df);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[2..4], ["2", "1"], "{row}");
    assert_eq!(
        ok(d.docker(&["system", "df"])),
        ok(d.berth(&["system", "df"]))
    );
    let out = ok(d.docker(&["volume", "prune", "-af"]));
    assert_eq!(
        out,
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    );
}

#[test]
fn copy_up_fills_new_volumes_from_the_image_unless_nocopy() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_fixture();
    let _cleanup = RemoveContainers(&d);
    let (code, logs, _) = run(
        &d,
        &[
            "-v",
            "app:/srv/app",
            "fixture/app:1",
            "cat /srv/app/hello.txt",
        ],
    );
    assert_eq!((code, logs.trim()), (0, "hello from a layer"));
    assert_eq!(
        std::fs::read_to_string(d.root.join("volumes/app/_data/hello.txt")).expect("copied up"),
        "hello from a layer\n"
    );
    // Not empty any more: a later container sees the volume's content, not the image's.
    std::fs::write(d.root.join("volumes/app/_data/hello.txt"), "changed\n").expect("write");
    let (_, logs, _) = run(
        &d,
        &[
            "-v",
            "app:/srv/app",
            "fixture/app:1",
            "cat /srv/app/hello.txt",
        ],
    );
    assert_eq!(logs.trim(), "changed");
    for spec in [
        &["-v", "empty1:/srv/app:nocopy"][..],
        &[
            "--mount",
            "type=volume,source=empty2,target=/srv/app,volume-nocopy",
        ],
    ] {
        let mut args = spec.to_vec();
        args.extend(["fixture/app:1", "ls -A /srv/app | busybox wc -l"]);
        let (code, logs, _) = run(&d, &args);
        assert_eq!((code, logs.trim()), (0, "0"), "{spec:?}");
    }
    // --mount volume labels apply to the volume it creates.
    let (_, _, id) = run(
        &d,
        &[
            "--mount",
            "type=volume,source=labelled,target=/srv/app,volume-label=a=b,readonly",
            "fixture/app:1",
            "true",
        ],
    );
    assert_eq!(
        ok(d.docker(&["volume", "inspect", "--format", "{{.Labels.a}}", "labelled"])).trim(),
        "b"
    );
    assert_eq!(
        inspect(
            &d,
            &id,
            "{{range .Mounts}}{{.Name}} {{.Mode}} {{.RW}}{{end}}"
        ),
        "labelled z false"
    );
    assert!(inspect(&d, &id, "{{json .HostConfig.Mounts}}").contains(r#""Type":"volume""#));
}

#[test]
fn image_volumes_become_anonymous_volumes_with_the_image_content() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let _cleanup = RemoveContainers(&d);
    let tar = rootfs_tarball(d.dir.path(), |root| {
        std::fs::create_dir_all(root.join("vol")).expect("mkdir");
        std::fs::write(root.join("vol/seed"), "seeded\n").expect("write");
    });
    ok(d.docker(&[
        "import",
        "-c",
        "VOLUME /vol",
        tar.to_str().expect("path"),
        "withvol:1",
    ]));
    let (code, logs, id) = run(&d, &["withvol:1", "/bin/cat", "/vol/seed"]);
    assert_eq!((code, logs.trim()), (0, "seeded"));
    let name = inspect(
        &d,
        &id,
        "{{range .Mounts}}{{.Name}} {{.Destination}} {{.Mode}}{{end}}",
    );
    assert!(name.ends_with(" /vol"), "{name}");
    let name = name.split(' ').next().expect("name").to_string();
    assert_eq!(name.len(), 64);
    // A user mount on the same path replaces the image's volume.
    let (_, _, id2) = run(&d, &["-v", "mine:/vol", "withvol:1", "/bin/true"]);
    assert_eq!(inspect(&d, &id2, "{{len .Mounts}}"), "1");
    ok(d.docker(&["rm", "-v", &id, &id2]));
    assert_eq!(ok(d.docker(&["volume", "ls", "-q"])), "mine\n");
}

#[test]
fn hostile_names_targets_and_symlinks_stay_inside() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_fixture();
    let _cleanup = RemoveContainers(&d);
    // (The docker CLI turns `./x` and `../x` into absolute host paths itself.)
    let err = fails(d.docker(&["create", "-v", "v/../../x:/p", "fixture/app:1"]));
    assert!(
        err.contains("includes invalid characters for a local volume name"),
        "{err}"
    );
    let err = fails(d.docker(&["volume", "create", "a/../../b"]));
    assert!(err.contains("invalid characters"), "{err}");
    let err = fails(d.docker(&[
        "create",
        "--mount",
        "type=volume,source=v,target=relative",
        "fixture/app:1",
    ]));
    assert!(
        err.contains("'relative' mount path must be absolute"),
        "{err}"
    );
    let err = fails(d.docker(&["create", "-v", "vol:/p:z", "fixture/app:1"]));
    assert!(
        err.contains("SELinux") && err.contains("not supported yet"),
        "{err}"
    );
    let err = fails(d.docker(&["create", "-v", "/tmp:/p:rshared", "fixture/app:1"]));
    assert!(
        err.contains("propagation") && err.contains("not supported yet"),
        "{err}"
    );
    // Nothing was created by the refused requests.
    assert_eq!(ok(d.docker(&["volume", "ls", "-q"])), "");
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");

    // An image whose /data is a symlink pointing at a host directory (absolute, and
    // climbing with ..): the volume lands inside the rootfs; the host is never read
    // (copy-up) nor written.
    let host = d.dir.path().join("host-secret");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("marker"), "host\n").expect("write");
    let up = "../".repeat(12);
    let rel = format!("{up}{}", host.display());
    let abs = host.display().to_string();
    let tar = rootfs_tarball(d.dir.path(), |root| {
        std::os::unix::fs::symlink(&abs, root.join("data")).expect("symlink");
        std::os::unix::fs::symlink(&rel, root.join("up")).expect("symlink");
    });
    ok(d.docker(&["import", tar.to_str().expect("path"), "evil:1"]));
    for (vol, dest) in [("abs", "/data"), ("climb", "/up")] {
        let spec = format!("{vol}:{dest}");
        let script = format!("ls {dest}; echo pwned > {dest}/written");
        let (code, logs, _) = run(&d, &["-v", &spec, "evil:1", "/bin/sh", "-c", &script]);
        assert_eq!(code, 0, "{logs}");
        assert!(
            !logs.contains("marker"),
            "the host directory is visible: {logs}"
        );
        let data = d.root.join("volumes").join(vol).join("_data");
        assert!(!data.join("marker").exists(), "copy-up read the host");
        assert_eq!(
            std::fs::read_to_string(data.join("written")).expect("volume written"),
            "pwned\n"
        );
    }
    // A container that swaps a directory above its mount for a symlink cannot redirect
    // the mount at its next start.
    let (code, logs, id) = run(
        &d,
        &[
            "-v",
            "swap:/a/b",
            "fixture/app:1",
            "busybox mv /a /a2 && busybox ln -s /srv /a",
        ],
    );
    assert_eq!(code, 0, "{logs}");
    let err = fails(d.docker(&["start", &id]));
    assert!(err.contains("replaced by a symlink"), "{err}");
    let mut host_files: Vec<String> = std::fs::read_dir(&host)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    host_files.sort();
    assert_eq!(host_files, ["marker"], "the host directory was written");
}

/// `--volumes-from`: the new container mounts every volume (named and anonymous) and
/// bind of the source with its mode, `:ro` makes them all read-only, a mount given
/// explicitly at the same destination wins, tmpfs mounts are not inherited, and the
/// source's anonymous volume is kept by `rm -v` while another container uses it.
#[test]
fn volumes_from_shares_volumes_and_binds_with_their_modes() {
    if !docker_available() {
        return;
    }
    let d = daemon_with_fixture();
    let _cleanup = RemoveContainers(&d);
    let host = d.dir.path().join("from-host");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("b.txt"), "bound\n").expect("write");
    let bind = format!("{}:/bind:ro", host.display());
    let (code, logs, src) = run(
        &d,
        &[
            "--name",
            "src",
            "-v",
            "named:/named",
            "-v",
            "/anon",
            "-v",
            &bind,
            "--tmpfs",
            "/scratch",
            "fixture/app:1",
            "echo n > /named/f && echo a > /anon/f && echo s > /scratch/f",
        ],
    );
    assert_eq!(code, 0, "{logs}");
    let anon = inspect(
        &d,
        &src,
        "{{range .Mounts}}{{if eq .Destination \"/anon\"}}{{.Name}}{{end}}{{end}}",
    );
    assert_eq!(anon.len(), 64, "{anon}");

    // The content is there, rw volumes stay writable, the ro bind stays ro, and the
    // source's tmpfs is not mounted.
    let (code, logs, reader) = run(
        &d,
        &[
            "--volumes-from",
            "src",
            "fixture/app:1",
            "cat /named/f /anon/f /bind/b.txt; echo w > /named/w && echo named-rw; \
             (echo w > /bind/w) 2>/dev/null || echo bind-ro; \
             grep -c ' /scratch ' /proc/mounts",
        ],
    );
    assert_eq!(
        (code, logs.as_str()),
        (1, "n\na\nbound\nnamed-rw\nbind-ro\n0\n"),
        "{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(d.root.join("volumes/named/_data/w")).expect("written"),
        "w\n"
    );
    assert_eq!(
        inspect(&d, &reader, "{{json .HostConfig.VolumesFrom}}"),
        r#"["src"]"#
    );
    let mut mounts: Vec<String> = inspect(
        &d,
        &reader,
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.Mode}} {{.RW}};{{end}}",
    )
    .split(';')
    .filter(|s| !s.is_empty())
    .map(String::from)
    .collect();
    mounts.sort();
    assert_eq!(
        mounts,
        [
            "bind  /bind  false".to_string(),
            format!("volume {anon} /anon  true"),
            "volume named /named  true".to_string(),
        ]
    );
    assert_eq!(
        inspect(&d, &src, "{{json .HostConfig.VolumesFrom}}"),
        "null"
    );

    // `:ro`: every inherited mount is read-only.
    let (code, logs, ro) = run(
        &d,
        &[
            "--volumes-from",
            "src:ro",
            "fixture/app:1",
            "cat /anon/f && echo x > /anon/x",
        ],
    );
    assert_ne!(
        code, 0,
        "write through --volumes-from :ro succeeded: {logs}"
    );
    assert!(
        logs.contains("a\n") && logs.contains("Read-only file system"),
        "{logs}"
    );
    assert!(!d.root.join(format!("volumes/{anon}/_data/x")).exists());
    assert_eq!(
        inspect(&d, &ro, "{{range .Mounts}}{{.RW}} {{end}}"),
        "false false false"
    );

    // A mount given explicitly at the same destination wins.
    let (code, logs, explicit) = run(
        &d,
        &[
            "--volumes-from",
            "src",
            "-v",
            "other:/named",
            "fixture/app:1",
            "test -e /named/f && echo inherited || echo explicit",
        ],
    );
    assert_eq!((code, logs.as_str()), (0, "explicit\n"));
    assert_eq!(
        inspect(
            &d,
            &explicit,
            "{{range .Mounts}}{{if eq .Destination \"/named\"}}{{.Name}}{{end}}{{end}}"
        ),
        "other"
    );

    // Docker's mode rules.
    let err = fails(d.docker(&["create", "--volumes-from", "src:shared", "fixture/app:1"]));
    assert!(err.contains("invalid mode: shared"), "{err}");

    // The anonymous volume is the source's and the others': `rm -v` of the source
    // keeps it while they use it; the last `rm -v` removes it.
    ok(d.docker(&["rm", "-v", &src]));
    assert!(ok(d.docker(&["volume", "ls", "-q"])).contains(&anon));
    let err = fails(d.docker(&["volume", "rm", &anon]));
    assert!(err.contains("volume is in use"), "{err}");
    ok(d.docker(&["rm", "-v", &ro, &explicit]));
    assert!(ok(d.docker(&["volume", "ls", "-q"])).contains(&anon));
    ok(d.docker(&["rm", "-v", &reader]));
    let left = ok(d.docker(&["volume", "ls", "-q"]));
    assert!(!left.contains(&anon), "{left}");
    assert!(left.contains("named") && left.contains("other"), "{left}");
}
