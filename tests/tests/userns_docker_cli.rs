//! User-namespace remapping (`berth daemon --userns-remap default`) through the real
//! docker CLI: container root is the remap range's first id on the host, the image's
//! files are root's inside (idmapped layers), the container's writes land as the mapped
//! id in its upper dir, published ports still answer, `--userns=host` opts out, and what
//! cannot work with a user namespace is refused by name.

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

/// The first id of dockremap's range in `/etc/subuid` (`default` made it).
fn range_start() -> u32 {
    let c = std::fs::read_to_string("/etc/subuid").expect("read /etc/subuid");
    c.lines()
        .find_map(|l| l.strip_prefix("dockremap:"))
        .and_then(|r| r.split(':').next())
        .and_then(|s| s.parse().ok())
        .expect("dockremap has a range in /etc/subuid")
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
        "id -u; busybox stat -c '%u:%g' /bin /etc; busybox touch /made-here; busybox stat -c '%u' /made-here; echo ready",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0:0", "image files are root's inside: {out}");
    assert_eq!(lines[2], "0:0", "{out}");
    assert_eq!(lines[3], "0", "{out}");
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
    // docker exec would not join the user namespace (libcontainer 0.7): refused by name.
    let out = d.docker(&["exec", "sl", "id"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user namespace remapping is not supported yet"),
        "{err}"
    );
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
        for _ in 0..50 {
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
        (
            vec!["--health-cmd", "true"],
            "health check with user namespaces enabled is not supported yet",
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
