//! User-namespace remapping (`berth daemon --userns-remap default`) through the real
//! docker CLI: container root is the remap range's first id on the host, the image's
//! files are root's inside (idmapped layers), the container's writes land as the mapped
//! id in its upper dir, published ports still answer, exec and health checks run inside
//! the user namespace, `docker cp`/`diff`/`commit` see the container's ids,
//! `--userns=host` opts out, and what cannot work with a user namespace is refused by name.

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn setup() -> Daemon {
    let d = Daemon::start_with(&["--userns-remap", "default"]);
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    d
}

/// dockremap's range in `/etc/subuid` (`default` made it): (first id, size).
fn range() -> (u32, u32) {
    let c = std::fs::read_to_string("/etc/subuid").expect("read /etc/subuid");
    let r = c
        .lines()
        .find_map(|l| l.strip_prefix("dockremap:"))
        .expect("dockremap has a range in /etc/subuid");
    let mut f = r.split(':').map(|s| s.parse::<u32>().expect("a number"));
    (f.next().expect("start"), f.next().expect("size"))
}

fn range_start() -> u32 {
    range().0
}

/// `docker cp CONTAINER:PATH -` listed with numeric owners (`tar -tv --numeric-owner`).
fn cp_listing(d: &Daemon, from: &str) -> String {
    let out = d.docker(&["cp", from, "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("out.tar");
    std::fs::write(&tar, &out.stdout).expect("write the archive");
    let t = std::process::Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar)
        .output()
        .expect("run tar");
    String::from_utf8_lossy(&t.stdout).into_owned()
}

#[test]
fn container_root_is_the_range_start_on_the_host_and_root_inside() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let start = range_start();
    // Inside: root; the image's files are root's; a new file is root's.
    let out = ok(d.docker(&[
        "run",
        "--name",
        "c1",
        "--network",
        "none",
        "fixture/app:1",
        "id -u; busybox stat -c '%u:%g' /bin /etc; busybox touch /made-here; busybox stat -c '%u' /made-here; busybox stat -c '%u:%g' /etc/hosts /etc/resolv.conf; echo 10.9.8.7 extra >> /etc/hosts && echo ready",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0:0", "image files are root's inside: {out}");
    assert_eq!(lines[2], "0:0", "{out}");
    assert_eq!(lines[3], "0", "{out}");
    // berth's /etc files are root's inside (root can edit its /etc/hosts, as with Docker).
    assert_eq!(lines[4], "0:0", "/etc/hosts: {out}");
    assert_eq!(lines[5], "0:0", "/etc/resolv.conf: {out}");
    // On the host: the file in the upper dir is owned by the range start.
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "c1"]));
    let upper = d
        .root
        .join("containers")
        .join(id.trim())
        .join("upper/made-here");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&upper).expect("the file is in the upper dir");
    assert_eq!((m.uid(), m.gid()), (start, start), "{}", upper.display());
    // Logs still work.
    let logs = ok(d.docker(&["logs", "c1"]));
    assert!(logs.contains("ready"), "{logs}");
}

#[test]
fn a_running_process_is_the_range_start_on_the_host() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let start = range_start();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "sl",
        "--network",
        "none",
        "fixture/app:1",
        "sleep 1000",
    ]));
    let pid = ok(d.docker(&["inspect", "-f", "{{.State.Pid}}", "sl"]));
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|s| s.parse().expect("uid"))
        .collect();
    assert_eq!(uids, vec![start; 4], "{uid_line}");
    // inspect's Confinement says so: a user namespace with the range, not the host's.
    let conf = ok(d.docker(&["inspect", "-f", "{{json .Confinement}}", "sl"]));
    let conf: serde_json::Value = serde_json::from_str(&conf).expect("json");
    assert_eq!(conf["Spec"]["UserNamespace"], true, "{conf}");
    assert_eq!(conf["Spec"]["UidMappings"][0]["hostID"], start, "{conf}");
    assert_eq!(
        conf["Live"]["UidMap"],
        format!("0 {start} {}", range().1),
        "the kernel's uid_map: {conf}"
    );
    let user_ns = conf["Live"]["Namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["Type"] == "user")
        .cloned()
        .expect("user namespace listed");
    assert_eq!(user_ns["Host"], false, "{user_ns}");
    // An exec'd process joins the user namespace: the same host uid, not the host's root.
    ok(d.docker(&["exec", "-d", "sl", "busybox", "sleep", "997"]));
    let mut exec_uids = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        exec_uids = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .find(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"busybox\0sleep\0997\0")
            })
            .and_then(|e| std::fs::read_to_string(e.path().join("status")).ok())
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(String::from));
        if exec_uids.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let exec_uids = exec_uids.expect("the exec'd process is on the host's /proc");
    assert!(
        exec_uids
            .split_whitespace()
            .skip(1)
            .all(|u| u == start.to_string()),
        "{exec_uids}"
    );
    ok(d.docker(&["rm", "-f", "sl"]));
}

#[test]
fn a_published_port_answers_on_the_bridge() {
    if !docker_available() {
        return;
    }
    let d = setup();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1:18931:8080",
        "fixture/app:1",
        "busybox mkdir -p /w && echo remapped > /w/index.html && exec busybox httpd -f -p 8080 -h /w",
    ]));
    let body = d.in_netns(|| {
        let mut last = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match http_get("127.0.0.1:18931", "/index.html") {
                Ok(b) => return b,
                Err(e) => last = e,
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        last
    });
    assert!(body.contains("remapped"), "{body}");
}

fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn userns_host_opts_out_and_host_namespaces_and_privileged_are_refused() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--userns=host",
        "fixture/app:1",
        "busybox grep Uid /proc/self/status",
    ]));
    assert!(out.split_whitespace().skip(1).all(|u| u == "0"), "{out}");
    for (flags, words) in [
        (
            vec!["--privileged"],
            "privileged mode is incompatible with user namespaces",
        ),
        (
            vec!["--network", "host"],
            "cannot share the host's network namespace when user namespaces are enabled",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(flags.iter().copied());
        args.extend(["fixture/app:1", "true"]);
        let out = d.docker(&args);
        assert!(!out.status.success(), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{flags:?}: {err}");
    }
    // With --userns=host, --privileged runs as without remapping.
    ok(d.docker(&[
        "run",
        "--rm",
        "--privileged",
        "--userns=host",
        "fixture/app:1",
        "true",
    ]));
}

/// A remapped container's files are the range's ids on the host; `docker commit` and
/// `docker diff` see them as the container does: the committed image has root's files
/// as root's and a user's as that user's, also for a container that runs unremapped.
#[test]
fn commit_keeps_the_containers_owners_not_the_hosts() {
    if !docker_available() {
        return;
    }
    let d = setup();
    ok(d.docker(&[
        "run",
        "--name",
        "c2",
        "--network",
        "none",
        "fixture/app:1",
        "busybox touch /root-file /user-file && busybox chown 1000:50 /user-file",
    ]));
    let diff = ok(d.docker(&["diff", "c2"]));
    assert!(diff.lines().any(|l| l == "A /user-file"), "{diff}");
    ok(d.docker(&["commit", "c2", "remapped/commit:1"]));
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--userns=host",
        "--network",
        "none",
        "remapped/commit:1",
        "busybox stat -c '%u:%g' /root-file /user-file",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["0:0", "1000:50"],
        "owners in the committed image: {out}"
    );
}

/// `docker cp` with a remapped container: an archive out of it carries the owners the
/// container sees, and a file copied in (owned by root on the host) is the container's
/// root's, which is the range's first id on the host.
#[test]
fn cp_shows_and_writes_the_containers_owners() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let start = range_start();
    ok(d.docker(&[
        "run",
        "--name",
        "c3",
        "--network",
        "none",
        "fixture/app:1",
        "busybox touch /made && busybox chown 1000:50 /made",
    ]));
    let tmp = tempfile::tempdir().expect("tempdir");
    let listing = |path: &str| cp_listing(&d, &format!("c3:{path}"));
    let l = listing("/made");
    assert!(l.contains(" 1000/50 "), "owner in the archive: {l}");
    let src = tmp.path().join("copied-in");
    std::fs::write(&src, "from the host").expect("write");
    ok(d.docker(&["cp", src.to_str().expect("path"), "c3:/copied-in"]));
    let l = listing("/copied-in");
    assert!(l.contains(" 0/0 "), "root's inside: {l}");
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "c3"]));
    let upper = d
        .root
        .join("containers")
        .join(id.trim())
        .join("upper/copied-in");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&upper).expect("the file is in the upper dir");
    assert_eq!((m.uid(), m.gid()), (start, start), "{}", upper.display());
}

/// `docker exec` joins the container's user namespace: root inside, the range's first id
/// on the host (a file it writes is that id's in the upper dir; before the runtime's
/// patch it ran as the host's root). Health probes are execs: a health check runs and
/// reports healthy.
#[test]
fn exec_and_health_checks_run_inside_the_user_namespace() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let start = range_start();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "c4",
        "--network",
        "none",
        "--health-cmd",
        "busybox test -e /bin/busybox",
        "--health-interval",
        "1s",
        // The image says 1 s: a probe (an exec) can take longer than that on a slow
        // host (the VM lane runs under TCG); this test is about where it runs.
        "--health-timeout",
        "60s",
        "fixture/app:1",
        "busybox sleep 300",
    ]));
    let out = ok(d.docker(&[
        "exec",
        "c4",
        "busybox",
        "sh",
        "-c",
        "id -u; busybox grep -E '^(Uid|CapEff)' /proc/self/status; busybox touch /by-exec",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("0"), "{out}");
    // Inside, /proc/self/status shows the namespace's ids: 0, not the host's.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().skip(1).all(|u| u == "0")),
        "{out}"
    );
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "c4"]));
    let upper = d
        .root
        .join("containers")
        .join(id.trim())
        .join("upper/by-exec");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&upper).expect("the exec's file is in the upper dir");
    assert_eq!((m.uid(), m.gid()), (start, start), "{}", upper.display());
    // A user given to exec is the container's user, mapped too.
    let out = ok(d.docker(&["exec", "-u", "1000:50", "c4", "busybox", "id"]));
    assert!(out.contains("uid=1000") && out.contains("gid=50"), "{out}");
    // The health check's probes run: healthy within a few intervals.
    let mut status = String::new();
    for _ in 0..480 {
        status = ok(d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "c4"]));
        if status.trim() == "healthy" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(
        status.trim(),
        "healthy",
        "{}",
        ok(d.docker(&["inspect", "c4"]))
    );
    ok(d.docker(&["rm", "-f", "c4"]));
}

/// Volumes of a remapped container are idmapped: root inside owns a new volume (and the
/// image's content copied into it), files it writes are the same ids on disk as without
/// remapping (root's are the host's 0, not the range's), the data outlives the container,
/// and `docker cp` through the volume sees the same owners.
#[test]
fn volumes_are_idmapped_so_the_containers_ids_are_the_volumes() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let out = ok(d.docker(&[
        "run",
        "--name",
        "v1",
        "--network",
        "none",
        "-v",
        "data:/data",
        "-v",
        "etcv:/etc",
        "fixture/app:1",
        "busybox stat -c '%u:%g' /data /etc; busybox touch /data/root-file /etc/new && busybox chown 1000:50 /data/root-file && busybox touch /data/r2 && echo wrote",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["0:0", "0:0", "wrote"], "{out}");
    let data = ok(d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]));
    let data = std::path::PathBuf::from(data.trim());
    use std::os::unix::fs::MetadataExt;
    let owner = |p: &std::path::Path| {
        let m = std::fs::metadata(p).expect("stat");
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&data.join("r2")), (0, 0), "root's file on disk");
    assert_eq!(
        owner(&data.join("root-file")),
        (1000, 50),
        "a user's file on disk"
    );
    // docker cp through the volume: the same owners.
    let l = cp_listing(&d, "v1:/data/root-file");
    assert!(l.contains(" 1000/50 "), "{l}");
    // Removing the container unmounts its view of the volume and keeps the data.
    ok(d.docker(&["rm", "v1"]));
    assert!(
        data.join("r2").exists(),
        "the volume's data outlives the container"
    );
    let id_dirs = std::fs::read_dir(d.root.join("containers"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(id_dirs, 0, "the container's directory is gone");
    // A second container (unremapped) sees the same owners.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--userns=host",
        "--network",
        "none",
        "-v",
        "data:/data",
        "fixture/app:1",
        "busybox stat -c '%u:%g' /data/r2 /data/root-file",
    ]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0:0", "1000:50"], "{out}");
}

/// A bind asked with `:idmap` (berth's and Podman's option) is an idmapped mount in a
/// remapped container: the host's ids are the container's on it (the host's root is
/// root inside, and root inside writes as the host's root there, which is why it is
/// opt-in); a plain bind stays unremapped, as with Docker. Without remapping `:idmap`
/// is refused by name.
#[test]
fn a_bind_with_idmap_maps_the_hosts_ids_and_a_plain_bind_does_not() {
    if !docker_available() {
        return;
    }
    let d = setup();
    let host = tempfile::tempdir().expect("tempdir");
    let src = host.path().join("shared");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("users"), "x").expect("write");
    std::os::unix::fs::chown(src.join("users"), Some(1000), Some(50)).expect("chown");
    let bind = |mode: &str| format!("{}:/b{mode}", src.display());
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind(":idmap"),
        "fixture/app:1",
        "busybox stat -c '%u:%g' /b /b/users; busybox touch /b/by-root && echo wrote",
    ]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0:0", "1000:50", "wrote"],
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(src.join("by-root")).expect("written through the bind");
    assert_eq!(
        (m.uid(), m.gid()),
        (0, 0),
        "root inside is the host's root on it"
    );
    // A plain bind: the host's root is the overflow id inside; root cannot write.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind(""),
        "fixture/app:1",
        "busybox stat -c '%u' /b; busybox touch /b/again 2>/dev/null || echo refused",
    ]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["65534", "refused"],
        "{out}"
    );
    // No container directory keeps a mount after the --rm containers are gone.
    let left = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !left.contains(&format!("{}/containers/", d.root.display())),
        "mounts left under the state root"
    );
    // Without remapping, :idmap means nothing: refused by name, nothing created.
    let plain = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(plain.docker(&["load", "-i", archive.to_str().expect("path")]));
    let err = fails(plain.docker(&["create", "-v", &bind(":idmap"), "fixture/app:1"]));
    assert!(
        err.contains("idmap needs user namespace remapping"),
        "{err}"
    );
    let n = ok(plain.docker(&["ps", "-aq"]));
    assert!(n.trim().is_empty(), "a container was left: {n}");
}

/// Gives the user `containers` subordinate ids for `--userns=auto` when it has none, as
/// an operator would (Podman's documented setting); a range already there is kept.
/// Returns the pool's first range in `/etc/subuid`: (start, size).
fn auto_pool() -> (u64, u64) {
    use std::io::Write;
    for file in ["/etc/subuid", "/etc/subgid"] {
        let c = std::fs::read_to_string(file).unwrap_or_default();
        if !c.lines().any(|l| l.starts_with("containers:")) {
            let sep = if c.is_empty() || c.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .and_then(|mut f| {
                    f.write_all(format!("{sep}containers:2147483647:2147483648\n").as_bytes())
                })
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    let c = std::fs::read_to_string("/etc/subuid").expect("read /etc/subuid");
    let r = c
        .lines()
        .find_map(|l| l.strip_prefix("containers:"))
        .expect("containers has a range");
    let mut f = r.split(':').map(|s| s.parse::<u64>().expect("a number"));
    (f.next().expect("start"), f.next().expect("size"))
}

/// Runs NAME (`sleep 1000`, a file made as root in the volume `autovol`) with `--userns
/// MODE`, through berth's CLI: the docker CLI 20.10 refuses any mode but `host` itself
/// (`invalid USER mode`); the API takes Podman's `auto`.
fn run_auto(d: &Daemon, name: &str, mode: &str) {
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--userns",
        mode,
        "-v",
        "autovol:/data",
        "fixture/app:1",
        "busybox touch /data/by-root; sleep 1000",
    ]));
}

/// A running container's uid mapping as the host sees it: (first host id, size).
fn uid_map(d: &Daemon, name: &str) -> (u64, u64) {
    let pid = ok(d.docker(&["inspect", "-f", "{{.State.Pid}}", name]));
    let m = std::fs::read_to_string(format!("/proc/{}/uid_map", pid.trim())).expect("uid_map");
    let f: Vec<u64> = m
        .split_whitespace()
        .map(|s| s.parse().expect("a number"))
        .collect();
    assert_eq!((f.len(), f[0]), (3, 0), "one mapping of root: {m}");
    (f[1], f[2])
}

/// `--userns=auto` (Podman's) without any daemon option: each container gets a user
/// namespace with a range of its own from the `containers` user's subordinate ids,
/// never one another container holds (also across a daemon SIGKILL); a removed
/// container's range is given again; `auto:size=N` sizes it; the image's files and a
/// volume's are root's inside; what cannot work in a user namespace is refused by name.
#[test]
fn userns_auto_gives_each_container_a_range_of_its_own() {
    if !docker_available() {
        return;
    }
    let (pool_start, pool_size) = auto_pool();
    let mut d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    run_auto(&d, "a1", "auto");
    run_auto(&d, "a2", "auto");
    run_auto(&d, "a3", "auto:size=1024");
    let (m1, m2, m3) = (uid_map(&d, "a1"), uid_map(&d, "a2"), uid_map(&d, "a3"));
    assert_eq!((m1.1, m2.1, m3.1), (65536, 65536, 1024));
    let mut spans = [m1, m2, m3];
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "ranges overlap: {spans:?}");
    }
    for (start, size) in spans {
        assert!(
            start >= pool_start && start + size <= pool_start + pool_size,
            "{start}+{size} is outside the pool {pool_start}+{pool_size}"
        );
    }
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", "a3"])).trim(),
        "auto:size=1024"
    );
    // Root inside is the range's first id on the host; the image's files are root's.
    let pid = ok(d.docker(&["inspect", "-f", "{{.State.Pid}}", "a1"]));
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("status");
    assert!(
        status.lines().any(
            |l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&m1.0.to_string())
        ),
        "{status}"
    );
    assert_eq!(
        ok(d.docker(&[
            "exec",
            "a1",
            "sh",
            "-c",
            "id -u; busybox stat -c '%u:%g' /bin /data/by-root"
        ])),
        "0\n0:0\n0:0\n"
    );
    // The volume's file is root's on disk too (volumes are idmapped mounts).
    let vol = ok(d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "autovol"]));
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(std::path::Path::new(vol.trim()).join("by-root")).expect("stat");
    assert_eq!((m.uid(), m.gid()), (0, 0));
    // The ranges are the records': after a SIGKILL of the daemon a new container still
    // gets none that a running one holds.
    d.restart_after_sigkill();
    run_auto(&d, "a4", "auto");
    let m4 = uid_map(&d, "a4");
    for m in [m1, m2, m3] {
        assert!(
            m4.0 + m4.1 <= m.0 || m.0 + m.1 <= m4.0,
            "{m4:?} overlaps {m:?}"
        );
    }
    // A removed container's range is free again: the lowest is given first.
    let lowest = [m1, m2, m3, m4].into_iter().min().expect("a range");
    let name = [("a1", m1), ("a2", m2), ("a3", m3), ("a4", m4)]
        .into_iter()
        .find(|(_, m)| *m == lowest)
        .map(|(n, _)| n)
        .expect("name");
    ok(d.docker(&["rm", "-f", name]));
    run_auto(
        &d,
        "a5",
        if lowest.1 == 1024 {
            "auto:size=1024"
        } else {
            "auto"
        },
    );
    assert_eq!(uid_map(&d, "a5"), lowest);
    // Refused by name: an option berth does not take; what needs the host's namespaces.
    for (flags, words) in [
        (
            vec!["--userns", "auto:uidmapping=0:1000:1"],
            "\"uidmapping\" is not supported",
        ),
        (
            vec!["--userns", "auto:size=0"],
            "size must be a number of ids",
        ),
        (
            vec!["--userns", "auto", "--privileged"],
            "privileged mode is incompatible with user namespaces",
        ),
        (
            vec!["--userns", "auto", "--network", "host"],
            "cannot share the host's network namespace when user namespaces are enabled",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(flags.iter().copied());
        args.extend(["fixture/app:1", "true"]);
        let out = d.berth(&args);
        assert!(!out.status.success(), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{flags:?}: {err}");
    }
    for n in ["a2", "a3", "a4", "a5", "a1"] {
        let _ = d.docker(&["rm", "-f", n]);
    }
}

/// `--device` in a remapped container: the runtime cannot mknod in a user namespace, so
/// each node is a bind mount of the host's node (under its own or a new name), and the
/// device cgroup still decides what may be opened (the node's mode too: the host's
/// root owns it, so the container's root is "other" to it).
#[test]
fn devices_are_the_hosts_nodes_under_their_own_or_a_new_name() {
    if !docker_available() {
        return;
    }
    let d = setup();
    // A node no driver serves (major 4000), writable by all, in /dev (a bind keeps its
    // source's nodev, which a temporary directory's filesystem may have).
    let fake = format!("/dev/berth-userns-fake-{}", std::process::id());
    let st = std::process::Command::new("mknod")
        .args(["-m", "666", &fake, "c", "4000", "1"])
        .status()
        .expect("mknod");
    assert!(st.success(), "mknod {fake}");
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _gone = Gone(fake.clone());
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        "/dev/null:/dev/mynull:rw",
        "--device",
        "/dev/zero:/dev/sub/myzero",
        "--device",
        &format!("{fake}:/dev/fake:r"),
        "fixture/app:1",
        "echo gone > /dev/mynull && echo null:ok; busybox stat -c 'null:%t:%T' /dev/mynull; busybox head -c 2 /dev/sub/myzero | busybox od -An -tx1; (: < /dev/fake) 2>&1; (: > /dev/fake) 2>&1; true",
    ]);
    let out = ok(out);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[..3], ["null:ok", "null:1:3", "00 00"], "{out}");
    // Reads reach the (absent) driver; writes are refused by the device cgroup.
    assert!(lines[3].contains("No such device or address"), "{out}");
    assert!(lines[4].contains("Operation not permitted"), "{out}");
}
