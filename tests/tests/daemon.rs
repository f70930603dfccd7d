//! The daemon itself: socket permissions, one daemon per root, its config file, and a
//! daemon killed in the middle of a load leaving nothing half-loaded behind, and
//! refusals that reach a client still writing its body.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use berth_tests::*;

#[test]
fn socket_is_0660_and_a_second_daemon_on_the_same_root_is_refused() {
    let d = Daemon::start();
    let mode = std::fs::metadata(&d.sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    let other_sock = d.dir.path().join("other.sock");
    let out = std::process::Command::new(berth_bin())
        .args(["daemon", "--bridge", "none", "--root"])
        .arg(&d.root)
        .arg("--host")
        .arg(format!("unix://{}", other_sock.display()))
        .output()
        .expect("second daemon");
    assert!(
        !out.status.success(),
        "a second daemon started on a locked root"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn daemon_reads_its_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("c.sock");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = \"{}\"\nhost = \"unix://{}\"\n",
            dir.path().join("r").display(),
            sock.display()
        ),
    )
    .expect("config");
    let log = dir.path().join("c.log");
    let mut child = std::process::Command::new(berth_bin())
        .args(["daemon", "--bridge", "none", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("daemon");
    let up = wait_for_socket(&sock, &mut child);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        up,
        "daemon did not listen where its config file said: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        dir.path().join("r/meta.redb").exists(),
        "daemon did not use the configured root"
    );

    std::fs::write(&cfg, "no_such_key = 1\n").expect("config");
    let out = std::process::Command::new(berth_bin())
        .args(["daemon", "--bridge", "none", "--config"])
        .arg(&cfg)
        .output()
        .expect("daemon");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));
}

fn big_archive(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).expect("create");
    let data: Vec<u8> = (0..(64u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut layer = Vec::new();
    {
        let mut b = tar::Builder::new(&mut layer);
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "data.bin", data.as_slice())
            .expect("append");
        b.finish().expect("finish");
    }
    let mut outer = tar::Builder::new(&mut f);
    let mut h = tar::Header::new_ustar();
    h.set_size(layer.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    outer
        .append_data(&mut h, "aaaa/layer.tar", layer.as_slice())
        .expect("append");
    outer.finish().expect("finish");
    drop(outer);
    f.flush().expect("flush");
}

#[test]
fn daemon_killed_mid_load_leaves_no_image_and_no_stray_blobs() {
    let mut d = Daemon::start();
    let big = d.dir.path().join("big.tar");
    big_archive(&big);
    // Send half the archive as a chunked request body and stop, so the daemon is surely
    // in the middle of the load when it is killed.
    let bytes = std::fs::read(&big).expect("read archive");
    let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    conn.write_all(
        b"POST /v1.41/images/load HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .expect("request head");
    for chunk in bytes[..bytes.len() / 2].chunks(1 << 20) {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .expect("chunk");
        conn.write_all(chunk).expect("chunk");
        conn.write_all(b"\r\n").expect("chunk");
    }
    conn.flush().expect("flush");
    let ingest = d.root.join("content/ingest");
    let staging = d.root.join("snapshots/.staging");
    let mut busy = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let n = |p: &std::path::Path| std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0);
        busy = n(&ingest) > 0 && n(&staging) > 0;
        if busy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(busy, "the load never started writing: {}", d.log());
    d.restart_after_sigkill();
    drop(conn);
    assert!(
        ok(d.berth(&["images", "-q"])).trim().is_empty(),
        "a half-loaded image is listed"
    );
    assert_eq!(
        std::fs::read_dir(&ingest).expect("ingest").count(),
        0,
        "ingest not cleaned on start"
    );
    let staging = d.root.join("snapshots/.staging");
    assert_eq!(
        std::fs::read_dir(staging).expect("staging").count(),
        0,
        "staging not cleaned on start"
    );
    ok(d.berth(&["image", "prune", "-a", "-f"]));
    let blobs = std::fs::read_dir(d.root.join("content/blobs/sha256"))
        .expect("blobs")
        .count();
    assert_eq!(blobs, 0);
    // And the daemon still works.
    let fixture = fixtures().join("app-docker-save.tar");
    ok(d.berth(&["load", "-i", fixture.to_str().expect("path")]));
}

/// Mounts a small tmpfs; unmounted on drop.
struct SmallFs {
    path: std::path::PathBuf,
}

impl SmallFs {
    fn mount(path: &std::path::Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(path).expect("mkdir");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "berth-test"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(st.success(), "mounting a tmpfs needs root");
        SmallFs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

fn daemon_on(
    dir: &std::path::Path,
    root: &std::path::Path,
    extra_config: &str,
) -> (std::process::Child, String) {
    let sock = dir.join("fs.sock");
    let cfg = dir.join("fs.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = \"{}\"\nhost = \"unix://{}\"\n{extra_config}",
            root.display(),
            sock.display()
        ),
    )
    .expect("config");
    let log = dir.join("fs.log");
    let mut child = std::process::Command::new(berth_bin())
        .args(["daemon", "--bridge", "none", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("daemon");
    if !wait_for_socket(&sock, &mut child) {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "daemon did not come up on {}: {}",
            sock.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    (child, format!("unix://{}", sock.display()))
}

/// Waits (60 s: a loaded host or a TCG guest is slow) until the daemon `child` accepts
/// connections on `sock`; false if it never does or exits first.
fn wait_for_socket(sock: &std::path::Path, child: &mut std::process::Child) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    false
}

fn berth_at(host: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(berth_bin())
        .arg("--host")
        .arg(host)
        .args(args)
        .output()
        .expect("berth")
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = SmallFs::mount(&dir.path().join("small"), "48m");
    let root = fs.path.join("root");
    let big = dir.path().join("big.tar");
    big_archive(&big); // 64 MiB layer: does not fit
    let fixture = fixtures().join("app-docker-save.tar");

    // 1. A free-space reserve larger than the filesystem refuses even a small load,
    //    naming the setting that changes it.
    let (mut child, host) = daemon_on(dir.path(), &root, "min_free_bytes = 536870912\n");
    let err = fails(berth_at(
        &host,
        &["load", "-i", fixture.to_str().expect("path")],
    ));
    assert!(
        err.contains("free") && err.contains("must stay free") && err.contains("min_free_bytes"),
        "{err}"
    );
    assert!(ok(berth_at(&host, &["images", "-q"])).trim().is_empty());
    let _ = child.kill();
    let _ = child.wait();

    // 1b. Unset, the reserve scales with the filesystem (a tenth of 48 MiB, not 512 MiB):
    //     the small image loads; the large one is refused by the reserve, by name.
    let (mut child, host) = daemon_on(dir.path(), &root, "");
    let out = ok(berth_at(
        &host,
        &["load", "-i", fixture.to_str().expect("path")],
    ));
    assert!(out.contains("Loaded image: fixture/app:1"), "{out}");
    let err = fails(berth_at(
        &host,
        &["load", "-i", big.to_str().expect("path")],
    ));
    assert!(err.contains("min_free_bytes"), "{err}");
    ok(berth_at(&host, &["rmi", "fixture/app:1"]));
    let _ = child.kill();
    let _ = child.wait();

    // 2. Without the reserve, the disk itself fills: ENOSPC is reported, nothing listed,
    //    nothing left in ingest or staging, and the daemon keeps working.
    let (mut child, host) = daemon_on(dir.path(), &root, "min_free_bytes = 0\n");
    let err = fails(berth_at(
        &host,
        &["load", "-i", big.to_str().expect("path")],
    ));
    assert!(err.to_lowercase().contains("space"), "{err}");
    assert!(ok(berth_at(&host, &["images", "-q"])).trim().is_empty());
    assert_eq!(
        std::fs::read_dir(root.join("content/ingest"))
            .expect("ingest")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.join("snapshots/.staging"))
            .expect("staging")
            .count(),
        0
    );
    let out = ok(berth_at(
        &host,
        &["load", "-i", fixture.to_str().expect("path")],
    ));
    assert!(out.contains("Loaded image: fixture/app:1"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Free bytes (for unprivileged users) on the filesystem of `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(path)
        .output()
        .expect("stat");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().expect("number"));
    f.next().expect("blocks") * f.next().expect("block size")
}

/// A container that fills the state filesystem can still be stopped and removed (the
/// writes on those paths use the space reserve); reads work while the disk is full;
/// once it is gone the space is back and containers run again.
#[test]
fn a_container_that_fills_the_disk_can_be_stopped_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = SmallFs::mount(&dir.path().join("small"), "64m");
    let root = fs.path.join("root");
    let fixture = fixtures().join("app-docker-save.tar");
    let (mut child, host) = daemon_on(dir.path(), &root, "");
    ok(berth_at(
        &host,
        &["load", "-i", fixture.to_str().expect("path")],
    ));
    ok(berth_at(&host, &["tag", "fixture/app:1", "extra/app:1"]));
    let id = ok(berth_at(
        &host,
        &[
            "run",
            "-d",
            "--name",
            "filler",
            "--restart",
            "always",
            "fixture/app:1",
            // A writer that never stops: it takes any space freed.
            "while :; do cat /dev/zero >> /fill 2>/dev/null; done",
        ],
    ))
    .trim()
    .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while free_bytes(&root) > 64 << 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk did not fill: {} bytes free",
            free_bytes(&root)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Reads work on a full disk.
    let ps = ok(berth_at(&host, &["ps", "-q", "--no-trunc"]));
    assert!(ps.contains(&id), "{ps}");
    assert!(ok(berth_at(&host, &["images"])).contains("fixture/app"));
    // Stop works, and the restart policy does not bring it back (the user stopped it).
    ok(berth_at(&host, &["stop", "-t", "1", "filler"]));
    let state = ok(berth_at(
        &host,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "filler",
        ],
    ));
    assert_eq!(
        state.trim(),
        "exited 137",
        "stopped by SIGKILL after 1 s (the shell as PID 1 ignores SIGTERM)"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let state = ok(berth_at(
        &host,
        &["inspect", "-f", "{{.State.Status}}", "filler"],
    ));
    assert_eq!(state.trim(), "exited", "a stopped container stays stopped");
    // Removal works and gives the space back.
    ok(berth_at(&host, &["rm", "-f", "filler"]));
    assert!(!root.join("containers").join(&id).exists());
    // The directory is deleted in the background once renamed away (docs/ON-DISK.md):
    // the space comes back within moments of the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while free_bytes(&root) <= 16 << 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        free_bytes(&root) > 16 << 20,
        "space given back: {}",
        free_bytes(&root)
    );
    // Created while there is space, started when there is none (below).
    ok(berth_at(
        &host,
        &["create", "--name", "pre", "fixture/app:1", "echo started"],
    ));
    // A fill that is stopped by rm -f while running works the same.
    ok(berth_at(
        &host,
        &[
            "run",
            "-d",
            "--name",
            "filler2",
            "fixture/app:1",
            // Output written on the full disk: the log write fails, the supervisor
            // (and the container) carry on.
            "cat /dev/zero > /fill; i=0; while [ $i -lt 50 ]; do echo after-full $i; i=$((i+1)); done; exec sleep 1000",
        ],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while free_bytes(&root) > 64 << 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk did not fill again"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A create on the full disk is refused, naming the lack of space, and leaves no
    // container behind; logs are read.
    let err = fails(berth_at(
        &host,
        &["create", "--name", "late", "fixture/app:1", "true"],
    ));
    assert!(err.to_lowercase().contains("space"), "{err}");
    let mut all: Vec<String> = ok(berth_at(&host, &["ps", "-a", "--format", "{{.Names}}"]))
        .lines()
        .map(str::to_string)
        .collect();
    all.sort();
    assert_eq!(all, ["filler2", "pre"], "nothing half-created");
    ok(berth_at(&host, &["logs", "filler2"]));
    let running = ok(berth_at(
        &host,
        &["inspect", "-f", "{{.State.Running}}", "filler2"],
    ));
    assert_eq!(
        running.trim(),
        "true",
        "the supervisor survives a log write on a full disk"
    );
    // A start on the full disk fails cleanly (or works): never half-started.
    if berth_at(&host, &["start", "pre"]).status.success() {
        ok(berth_at(&host, &["wait", "pre"]));
    }
    let state = ok(berth_at(
        &host,
        &["inspect", "-f", "{{.State.Status}}", "pre"],
    ));
    assert!(matches!(state.trim(), "created" | "exited"), "{state}");
    // An untag on the full disk is applied (and stays applied after a restart) or
    // refused; here it is applied: the space reserve is there again since the removal.
    ok(berth_at(&host, &["rmi", "extra/app:1"]));
    ok(berth_at(&host, &["rm", "-f", "filler2"]));
    let out = ok(berth_at(
        &host,
        &["run", "--rm", "fixture/app:1", "echo again"],
    ));
    assert_eq!(out.trim(), "again");
    // With space back, the container that could not start starts.
    let out = ok(berth_at(&host, &["start", "-a", "pre"]));
    assert_eq!(out.trim(), "started");
    ok(berth_at(&host, &["rm", "pre"]));
    assert!(ok(berth_at(&host, &["ps", "-aq"])).trim().is_empty());
    let _ = child.kill();
    let _ = child.wait();
    // What was answered is what is there after a restart.
    let (mut child, host) = daemon_on(dir.path(), &root, "");
    let images = ok(berth_at(&host, &["images", "--format", "{{.Repository}}"]));
    assert_eq!(images.trim(), "fixture/app");
    let _ = child.kill();
    let _ = child.wait();
}

/// A docker-save archive of two layers (random 8 MiB each), tagged `race/x:1`.
const TWO_LAYERS_PY: &str = r#"
import hashlib, io, json, os, sys, tarfile
def layer(name):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        data = os.urandom(8 << 20); ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
layers = [layer("a.bin"), layer("b.bin")]
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]}}).encode()
cid = hashlib.sha256(config).hexdigest()
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add("l1/layer.tar", layers[0]); add("l2/layer.tar", layers[1]); add(cid + ".json", config)
    add("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": ["race/x:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode())
open(sys.argv[1], "wb").write(out.getvalue())
"#;

#[test]
fn prune_during_a_load_does_not_take_what_the_load_will_use() {
    let d = Daemon::start();
    let archive = d.dir.path().join("two.tar");
    let st = std::process::Command::new("python3")
        .arg("-c")
        .arg(TWO_LAYERS_PY)
        .arg(&archive)
        .status()
        .expect("python3");
    assert!(st.success());
    let bytes = std::fs::read(&archive).expect("read");
    let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    conn.write_all(
        b"POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .expect("request head");
    let send = |conn: &mut std::os::unix::net::UnixStream, part: &[u8]| {
        for chunk in part.chunks(1 << 20) {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .expect("chunk");
            conn.write_all(chunk).expect("chunk");
            conn.write_all(b"\r\n").expect("chunk");
        }
    };
    // The first layer whole and part of the second: the load is mid-way.
    let split = (8 << 20) + (4 << 20);
    send(&mut conn, &bytes[..split]);
    let staging = d.root.join("snapshots/.staging");
    for _ in 0..500 {
        if std::fs::read_dir(&staging).map(|r| r.count()).unwrap_or(0) >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Prune everything while the load is in flight.
    ok(d.berth(&["image", "prune", "-a", "-f"]));
    send(&mut conn, &bytes[split..]);
    conn.write_all(b"0\r\n\r\n").expect("end");
    let mut response = String::new();
    std::io::Read::read_to_string(&mut conn, &mut response).expect("response");
    assert!(response.contains("Loaded image: race/x:1"), "{response}");
    // Everything the image needs is there: it saves and reloads with the same ID.
    let id = ok(d.berth(&["image", "inspect", "--format", "{{.Id}}", "race/x:1"]));
    let saved = d.dir.path().join("saved.tar");
    ok(d.berth(&["save", "-o", saved.to_str().expect("path"), "race/x:1"]));
    let d2 = Daemon::start();
    ok(d2.berth(&["load", "-i", saved.to_str().expect("path")]));
    assert_eq!(
        ok(d2.berth(&["image", "inspect", "--format", "{{.Id}}", "race/x:1"])),
        id
    );
}

/// Reads one HTTP/1.1 response with a Content-Length body: (status line, body).
fn read_response(conn: &mut std::os::unix::net::UnixStream) -> (String, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("response head");
        assert_eq!(
            n,
            1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("response body");
    let status = head.lines().next().unwrap_or("").to_string();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_refusal_waits_for_the_request_body_and_keeps_the_connection() {
    let d = Daemon::start();
    let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    let body = br#"{"JoinToken":"SWMTKN-1-x-y","RemoteAddrs":["127.0.0.1:2377"]}"#;
    // Refused before any handler reads a body: by the route (join), by the version
    // prefix, by an unknown path. The head goes first and the body later, as a client
    // writing a large body does: the body must still be taken and the error must reach
    // the client, on a connection that stays usable.
    for (path, status, want) in [
        (
            "/v1.47/swarm/join",
            "400",
            "joining another swarm is not supported",
        ),
        (
            "/v9.99/containers/create",
            "400",
            "client version 9.99 is too new",
        ),
        ("/v1.47/no/such/endpoint", "404", "page not found"),
    ] {
        conn.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .expect("request head");
        std::thread::sleep(std::time::Duration::from_millis(200));
        conn.write_all(body)
            .expect("the body is taken, not refused with a closed connection");
        let (line, text) = read_response(&mut conn);
        assert!(line.contains(status), "{path}: {line} {text}");
        assert!(text.contains(want), "{path}: {text}");
    }
    conn.write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\n\r\n")
        .expect("ping on the same connection");
    let (line, text) = read_response(&mut conn);
    assert!(line.contains("200"), "{line}");
    assert_eq!(text, "OK");
}

/// A SIGTERM stops the daemon even while a client waits on something that does not end
/// by itself (a `wait` for a container that runs on): after a grace period the request
/// is cut. The container runs on, and the next daemon finds it running.
#[test]
fn sigterm_stops_the_daemon_while_a_client_waits_for_a_running_container() {
    let mut d = Daemon::start();
    let fixture = fixtures().join("app-docker-save.tar");
    ok(d.berth(&["load", "-i", fixture.to_str().expect("path")]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "runs-on",
        "--network",
        "none",
        "fixture/app:1",
        "sleep 1000",
    ]));
    // A wait on a raw connection: its answer's head comes at once, its body at the
    // container's exit. Once the head is read, the request is in flight.
    let mut waiter = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    waiter
        .write_all(
            b"POST /containers/runs-on/wait HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = std::io::Read::read(&mut waiter, &mut byte).expect("read the head");
        assert_eq!(
            n,
            1,
            "the connection closed: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Stopped in a thread: with the bug it never returns, and the test fails at the
    // deadline instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    let stopper = std::thread::spawn(move || {
        d.kill(libc::SIGTERM);
        let _ = tx.send(());
        d
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok(),
        "the daemon did not stop within 120 s of SIGTERM while a wait was in flight"
    );
    let mut d = stopper.join().expect("stopper");
    assert!(d.log().contains("cut"), "{}", d.log());
    // The client sees its connection end without the exit it waited for.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut waiter, &mut rest);
    assert!(!rest.contains("StatusCode"), "{rest}");
    // The container ran on without its daemon; the next one finds it.
    d.start_again();
    assert_eq!(
        ok(d.berth(&["inspect", "-f", "{{.State.Status}}", "runs-on"])).trim(),
        "running"
    );
    ok(d.berth(&["rm", "-f", "runs-on"]));
}
