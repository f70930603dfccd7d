//! `docker cp` against berth: both directions, stdin/stdout tars, running and stopped
//! containers, ownership (`-a`), and hostile paths: symlinks in the container pointing at
//! `/` or above it, and hand-made tars with `../` entries, absolute names, a symlink to
//! `/` followed by an entry through it, and device nodes. Nothing may be read from or
//! written to the host outside the container's rootfs.
//!
//! Needs the shim next to the daemon binary (`cargo build --workspace`) and a host that
//! can run containers (root, overlayfs, cgroup v2).

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn load_fixture(d: &Daemon) {
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
}

/// Runs the docker CLI with `input` on its stdin.
fn docker_stdin(d: &Daemon, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run docker");
    let mut stdin = child.stdin.take().expect("stdin");
    // The CLI may fail before reading everything; a broken pipe is then expected.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("docker")
}

/// Entries of a tar: (name, type flag, uid, mode, content or link target).
fn tar_entries(bytes: &[u8]) -> Vec<(String, u8, u64, u32, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().expect("tar") {
        let mut e = e.expect("entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header().clone();
        let mut data = Vec::new();
        if let Some(l) = e.link_name_bytes() {
            data = l.into_owned();
        } else {
            e.read_to_end(&mut data).expect("read");
        }
        out.push((
            name,
            h.entry_type().as_byte(),
            h.uid().expect("uid"),
            h.mode().expect("mode"),
            data,
        ));
    }
    out
}

/// A tar entry written with its name exactly as given (no cleaning).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

/// A file at the host's `/` with a unique name, removed on drop.
struct HostMarker(PathBuf);

impl HostMarker {
    fn new(tag: &str) -> HostMarker {
        let p = PathBuf::from(format!("/berth-cp-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        HostMarker(p)
    }
    /// The same name in another host directory (removed on drop too).
    fn beside(&self, dir: &str) -> HostMarker {
        HostMarker(Path::new(dir).join(self.name()))
    }
    fn name(&self) -> String {
        self.0
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn docker_cp_copies_files_and_trees_both_ways() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    ok(d.docker(&["run", "-d", "--name", "cpc", "fixture/app:1", "sleep 1000"]));

    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::create_dir_all(src.join("empty")).expect("mkdir");
    std::fs::write(src.join("a.txt"), "alpha\n").expect("write");
    std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::fs::write(src.join("sub/b.sh"), "#!/bin/sh\necho b\n").expect("write");
    std::fs::set_permissions(src.join("sub/b.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    std::fs::hard_link(src.join("a.txt"), src.join("hard")).expect("link");
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(src.join("a.txt"))
        .expect("open")
        .set_modified(old)
        .expect("mtime");

    // Host -> container (a directory into an existing directory), and back.
    ok(d.docker(&["cp", src.to_str().expect("path"), "cpc:/tmp/"]));
    let out = tmp.path().join("out");
    ok(d.docker(&["cp", "cpc:/tmp/src", out.to_str().expect("path")]));
    assert_eq!(
        std::fs::read_to_string(out.join("a.txt")).expect("a"),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sub/b.sh")).expect("b"),
        "#!/bin/sh\necho b\n"
    );
    let a = std::fs::metadata(out.join("a.txt")).expect("meta");
    assert_eq!(a.mode() & 0o7777, 0o640);
    assert_eq!(a.mtime(), 1_600_000_000, "mtime kept");
    assert_eq!(
        std::fs::metadata(out.join("sub/b.sh"))
            .expect("meta")
            .mode()
            & 0o7777,
        0o755
    );
    assert!(out.join("empty").is_dir(), "empty directories are copied");
    assert_eq!(
        std::fs::read_link(out.join("link")).expect("link"),
        Path::new("a.txt")
    );
    assert_eq!(
        std::fs::metadata(out.join("hard")).expect("hard").ino(),
        a.ino(),
        "hard links stay hard links"
    );

    // `/.`: the directory's contents, into a new directory.
    let out2 = tmp.path().join("out2");
    ok(d.docker(&["cp", "cpc:/tmp/src/.", out2.to_str().expect("path")]));
    assert_eq!(
        std::fs::read_to_string(out2.join("a.txt")).expect("a"),
        "alpha\n"
    );
    assert!(out2.join("sub/b.sh").is_file());

    // A file to a new name, and a tar to stdout.
    ok(d.docker(&[
        "cp",
        src.join("a.txt").to_str().expect("path"),
        "cpc:/tmp/renamed.txt",
    ]));
    let tar = d.docker(&["cp", "cpc:/tmp/renamed.txt", "-"]);
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let entries = tar_entries(&tar.stdout);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0, "renamed.txt");
    assert_eq!(entries[0].4, b"alpha\n");

    // A tar from stdin into a directory.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "fromstdin/", tar::EntryType::Directory, "", b"");
    raw_entry(&mut b, "fromstdin/x", tar::EntryType::Regular, "", b"xx");
    let input = b.into_inner().expect("tar");
    ok(docker_stdin(&d, &["cp", "-", "cpc:/tmp"], &input));
    let got = d.docker(&["cp", "cpc:/tmp/fromstdin/x", "-"]);
    assert_eq!(tar_entries(&got.stdout)[0].4, b"xx");

    // -L follows a symlink in the container: the file, under the link's name.
    let out3 = tmp.path().join("followed");
    ok(d.docker(&[
        "cp",
        "-L",
        "cpc:/tmp/src/link",
        out3.to_str().expect("path"),
    ]));
    assert!(std::fs::symlink_metadata(&out3).expect("meta").is_file());
    assert_eq!(std::fs::read_to_string(&out3).expect("read"), "alpha\n");

    // The whole root, into a new directory: Docker's rebasing of `/` works.
    let whole = tmp.path().join("whole");
    ok(d.docker(&["cp", "cpc:/", whole.to_str().expect("path")]));
    assert_eq!(
        std::fs::read_to_string(whole.join("tmp/src/a.txt")).expect("a"),
        "alpha\n"
    );
    assert!(whole.join("bin").is_dir());

    // Missing paths: Docker's message.
    let err = fails(d.docker(&["cp", "cpc:/no/such", tmp.path().to_str().expect("path")]));
    assert!(
        err.contains("Could not find the file /no/such in container cpc"),
        "{err}"
    );
    // A directory is never replaced by a file (the CLI asks noOverwriteDirNonDir).
    let clash = tmp.path().join("clash");
    std::fs::create_dir_all(clash.join("sub")).expect("mkdir");
    std::fs::write(clash.join("sub").join("x"), "x").expect("write");
    let f = tmp.path().join("sub");
    std::fs::write(&f, "file, not dir").expect("write");
    let err = fails(d.docker(&["cp", f.to_str().expect("path"), "cpc:/tmp/src/"]));
    assert!(err.contains("cannot overwrite directory"), "{err}");
    // The extraction point must be a directory.
    let err = fails(docker_stdin(
        &d,
        &["cp", "-", "cpc:/tmp/renamed.txt"],
        &input,
    ));
    assert!(err.contains("must be a directory"), "{err}");

    ok(d.docker(&["rm", "-f", "cpc"]));
}

#[test]
fn docker_cp_into_a_stopped_container_is_seen_when_it_starts() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    ok(d.docker(&[
        "create",
        "--name",
        "stopped",
        "fixture/app:1",
        "cat /msg.txt /data/deep.txt",
    ]));
    let tmp = tempfile::tempdir().expect("tmp");
    let msg = tmp.path().join("msg.txt");
    std::fs::write(&msg, "copied before start\n").expect("write");
    ok(d.docker(&["cp", msg.to_str().expect("path"), "stopped:/"]));
    // Missing parents of entries are created, as Docker does.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        "data/deep.txt",
        tar::EntryType::Regular,
        "",
        b"deep\n",
    );
    ok(docker_stdin(
        &d,
        &["cp", "-", "stopped:/"],
        &b.into_inner().expect("tar"),
    ));
    ok(d.docker(&["start", "stopped"]));
    assert_eq!(ok(d.docker(&["wait", "stopped"])).trim(), "0");
    assert_eq!(
        ok(d.docker(&["logs", "stopped"])),
        "copied before start\ndeep\n"
    );
    // Out of an exited container, too.
    let out = tmp.path().join("back.txt");
    ok(d.docker(&["cp", "stopped:/msg.txt", out.to_str().expect("path")]));
    assert_eq!(
        std::fs::read_to_string(out).expect("read"),
        "copied before start\n"
    );

    // A read-only rootfs refuses writes, as Docker.
    ok(d.docker(&["create", "--name", "rofs", "--read-only", "fixture/app:1"]));
    let err = fails(d.docker(&["cp", msg.to_str().expect("path"), "rofs:/"]));
    assert!(
        err.contains("container rootfs is marked read-only"),
        "{err}"
    );
    // Reading still works.
    ok(d.docker(&[
        "cp",
        "rofs:/bin/sh",
        tmp.path().join("sh").to_str().expect("path"),
    ]));
}

#[test]
fn docker_cp_archive_mode_uses_the_container_user() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    ok(d.docker(&[
        "create",
        "--name",
        "usr",
        "--user",
        "1234:5678",
        "fixture/app:1",
    ]));
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join("owned.txt");
    std::fs::write(&f, "x").expect("write");
    std::os::unix::fs::chown(&f, Some(4321), Some(4321)).expect("chown");
    // Default: the archive's owner (what Docker does).
    ok(d.docker(&["cp", f.to_str().expect("path"), "usr:/tmp/"]));
    let t = d.docker(&["cp", "usr:/tmp/owned.txt", "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].2, 4321);
    // -a: the container's user.
    ok(d.docker(&["cp", "-a", f.to_str().expect("path"), "usr:/tmp/"]));
    let t = d.docker(&["cp", "usr:/tmp/owned.txt", "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].2, 1234);
}

/// An image whose rootfs holds `/escape -> /` and `/up -> ../../../../`.
fn hostile_image(d: &Daemon, dir: &Path) {
    let rootfs = dir.join("evil-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("tmp")).expect("mkdir");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
    std::fs::write(rootfs.join("etc/hostname"), "inside-the-container\n").expect("write");
    std::os::unix::fs::symlink("/", rootfs.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("../../../../", rootfs.join("up")).expect("symlink");
    let tgz = dir.join("evil.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-czf")
        .arg(&tgz)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    ok(d.docker(&["import", tgz.to_str().expect("path"), "evil:1"]));
}

#[test]
fn docker_cp_never_follows_container_symlinks_out_of_the_rootfs() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().expect("tmp");
    hostile_image(&d, tmp.path());
    ok(d.docker(&["create", "--name", "hostile", "evil:1", "/bin/sh"]));

    // Reading through the symlinks reads the container's files.
    assert_ne!(
        std::fs::read_to_string("/etc/hostname").unwrap_or_default(),
        "inside-the-container\n"
    );
    for p in [
        "hostile:/escape/etc/hostname",
        "hostile:/up/etc/hostname",
        "hostile:/escape/../up/etc/hostname",
    ] {
        let t = d.docker(&["cp", p, "-"]);
        assert!(
            t.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&t.stderr)
        );
        let e = tar_entries(&t.stdout);
        assert_eq!(e[0].0, "hostname");
        assert_eq!(e[0].4, b"inside-the-container\n", "{p}");
    }
    // A file that exists only on the host is not found through them.
    let marker = HostMarker::new("read");
    std::fs::write(&marker.0, "host secret").expect("write marker");
    for link in ["escape", "up"] {
        let p = format!("hostile:/{link}/{}", marker.name());
        let err = fails(d.docker(&["cp", &p, tmp.path().to_str().expect("path")]));
        assert!(err.contains("Could not find the file"), "{p}: {err}");
    }
    // The symlink itself is archived as a symlink.
    let t = d.docker(&["cp", "hostile:/escape", "-"]);
    let e = tar_entries(&t.stdout);
    assert_eq!(
        (e[0].0.as_str(), e[0].1, e[0].4.as_slice()),
        ("escape", b'2', &b"/"[..])
    );

    // Writing through them lands inside the rootfs.
    let w1 = HostMarker::new("write1");
    let w2 = HostMarker::new("write2");
    for (w, dest) in [(&w1, "hostile:/escape/"), (&w2, "hostile:/up/tmp/")] {
        let f = tmp.path().join(w.name());
        std::fs::write(&f, "copied in").expect("write");
        ok(d.docker(&["cp", f.to_str().expect("path"), dest]));
        assert!(!w.0.exists(), "{dest}: written on the host");
    }
    let t = d.docker(&["cp", &format!("hostile:/{}", w1.name()), "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"copied in");
    let t = d.docker(&["cp", &format!("hostile:/tmp/{}", w2.name()), "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"copied in");
    let in_host_tmp = w2.beside("/tmp");
    assert!(!in_host_tmp.0.exists());
}

#[test]
fn docker_cp_refuses_or_contains_hostile_archives() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().expect("tmp");
    hostile_image(&d, tmp.path());
    ok(d.docker(&["create", "--name", "hostile", "evil:1", "/bin/sh"]));

    // `../` climbing out of the extraction directory: refused, nothing written.
    let m1 = HostMarker::new("dotdot");
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        &format!("../../../../../../../..{}", m1.0.display()),
        tar::EntryType::Regular,
        "",
        b"pwned",
    );
    let err = fails(docker_stdin(
        &d,
        &["cp", "-", "hostile:/tmp"],
        &b.into_inner().expect("tar"),
    ));
    assert!(
        err.contains("is outside of the extraction directory"),
        "{err}"
    );
    assert!(!m1.0.exists());

    // An absolute entry name is relative to the extraction directory; a symlink to `/`
    // followed by an entry through it resolves in the container; a relative symlink
    // climbing out is refused as Docker refuses it.
    let m2 = HostMarker::new("abs");
    let m3 = HostMarker::new("through");
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        &m2.0.display().to_string(),
        tar::EntryType::Regular,
        "",
        b"abs",
    );
    raw_entry(&mut b, "root", tar::EntryType::Symlink, "/", b"");
    raw_entry(
        &mut b,
        &format!("root/{}", m3.name()),
        tar::EntryType::Regular,
        "",
        b"through",
    );
    ok(docker_stdin(
        &d,
        &["cp", "-", "hostile:/tmp"],
        &b.into_inner().expect("tar"),
    ));
    assert!(!m2.0.exists() && !m3.0.exists(), "written on the host");
    let t = d.docker(&["cp", &format!("hostile:/tmp/{}", m2.name()), "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"abs");
    let t = d.docker(&["cp", &format!("hostile:/{}", m3.name()), "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"through");

    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        "sneaky",
        tar::EntryType::Symlink,
        "../../../../etc",
        b"",
    );
    let err = fails(docker_stdin(
        &d,
        &["cp", "-", "hostile:/tmp"],
        &b.into_inner().expect("tar"),
    ));
    assert!(err.contains("invalid symlink"), "{err}");

    // Through the image's own symlinks, the extraction directory is still in the rootfs.
    let m4 = HostMarker::new("viaup");
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, &m4.name(), tar::EntryType::Regular, "", b"up");
    ok(docker_stdin(
        &d,
        &["cp", "-", "hostile:/up/"],
        &b.into_inner().expect("tar"),
    ));
    assert!(!m4.0.exists());
    let t = d.docker(&["cp", &format!("hostile:/{}", m4.name()), "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"up");

    // Device nodes are refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("kmem").expect("path");
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).expect("major");
    h.set_device_minor(2).expect("minor");
    h.set_mode(0o666);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).expect("append");
    let err = fails(docker_stdin(
        &d,
        &["cp", "-", "hostile:/tmp"],
        &b.into_inner().expect("tar"),
    ));
    assert!(err.contains("device nodes cannot be copied"), "{err}");
    let err = fails(d.docker(&["cp", "hostile:/tmp/kmem", "-"]));
    assert!(err.contains("Could not find the file"), "{err}");
}

#[test]
fn docker_sdk_for_python_puts_and_gets_archives() {
    let sdk = Command::new("python3")
        .args(["-c", "import docker"])
        .status();
    if !sdk.map(|s| s.success()).unwrap_or(false) {
        panic!(
            "the Docker SDK for Python is not installed: run scripts/deps.sh (pip install docker)"
        );
    }
    let d = Daemon::start();
    load_fixture(&d);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/cp.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(d.host())
        .output()
        .expect("python3");
    assert_eq!(ok(out).trim(), "ok");
}

#[test]
fn docker_cp_reads_and_writes_bind_mounts_at_their_source() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let tmp = tempfile::tempdir().expect("tmp");
    let rw = tmp.path().join("rw");
    let ro = tmp.path().join("ro");
    std::fs::create_dir_all(&rw).expect("mkdir");
    std::fs::create_dir_all(&ro).expect("mkdir");
    std::fs::write(rw.join("from-host.txt"), "host side\n").expect("write");
    // A symlink in the volume resolves inside the volume, not on the host.
    std::os::unix::fs::symlink("/", rw.join("escape")).expect("symlink");
    let vrw = format!("{}:/data", rw.display());
    let vro = format!("{}:/config:ro", ro.display());
    ok(d.docker(&[
        "create",
        "--name",
        "vols",
        "--read-only",
        "-v",
        &vrw,
        "-v",
        &vro,
        "-v",
        "named:/vol",
        "fixture/app:1",
    ]));

    let t = d.docker(&["cp", "vols:/data/from-host.txt", "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"host side\n");
    let f = tmp.path().join("in.txt");
    std::fs::write(&f, "into the volume\n").expect("write");
    // A writable mount takes writes even with a read-only rootfs, as Docker.
    ok(d.docker(&["cp", f.to_str().expect("path"), "vols:/data/"]));
    assert_eq!(
        std::fs::read_to_string(rw.join("in.txt")).expect("on the host side of the volume"),
        "into the volume\n"
    );
    let err = fails(d.docker(&["cp", f.to_str().expect("path"), "vols:/config/"]));
    assert!(err.contains("mounted volume is marked read-only"), "{err}");
    assert!(!ro.join("in.txt").exists());
    let err = fails(d.docker(&["cp", "vols:/data/escape/etc/hostname", "-"]));
    assert!(err.contains("Could not find the file"), "{err}");
    // A named volume: what is copied in is in the volume (another container sees it).
    ok(d.docker(&["cp", f.to_str().expect("path"), "vols:/vol/"]));
    ok(d.docker(&[
        "create",
        "--name",
        "reader",
        "-v",
        "named:/mnt",
        "fixture/app:1",
    ]));
    let t = d.docker(&["cp", "reader:/mnt/in.txt", "-"]);
    assert_eq!(tar_entries(&t.stdout)[0].4, b"into the volume\n");
    // The directory itself is archived under its container name.
    let t = d.docker(&["cp", "vols:/data", "-"]);
    let names: Vec<String> = tar_entries(&t.stdout).into_iter().map(|e| e.0).collect();
    assert!(names.contains(&"data/".to_string()), "{names:?}");
    assert!(names.contains(&"data/in.txt".to_string()), "{names:?}");
}
