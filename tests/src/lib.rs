//! Harness for black-box tests: starts a real `berth daemon` on a fresh state root and
//! socket, and runs client commands (berth, docker, skopeo) against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The berth binary under test: `$BERTH_BIN`, else the workspace's debug build.
pub fn berth_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["debug", "release"] {
        let p = root.join("target").join(profile).join("berth");
        if p.exists() {
            return p;
        }
    }
    panic!("berth binary not found: run `cargo build -p berth` or set BERTH_BIN");
}

/// Directory of the fixtures written by Docker and skopeo.
pub fn fixtures() -> PathBuf {
    std::env::var("BERTH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
}

pub const FIXTURE_ID: &str =
    "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617";
pub const FIXTURE_OCI_ID: &str =
    "sha256:bea0fb7fae117d4b868a4b2bfa59bc4215c726ef84db4c62c9f7b2bb68a75623";
pub const FIXTURE_OCI_MANIFEST: &str =
    "sha256:efd776a2a1bad35f585006a0cda0ac43449721e940da80d839807b7c303f3131";

/// A daemon of its own with the Docker-saved fixture (`fixture/app:1`) loaded through
/// the docker CLI; None (the test skips, saying why) where the docker CLI is missing.
pub fn docker_cli_daemon() -> Option<Daemon> {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return None;
    }
    let d = Daemon::start();
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
    Some(d)
}

/// Whether a client program is installed.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running daemon; killed and its state removed on drop.
///
/// Each daemon runs in a network namespace of its own (`ip netns` name in `netns`), so
/// its bridges, nftables table and published ports never meet the host's or another
/// test's; traffic to its containers goes through [`Daemon::in_netns`] or
/// [`Daemon::netns_cmd`]. [`Daemon::start_host_net`] runs one in the host's namespace
/// with no default bridge network (for tests that reach a registry on the host's
/// loopback).
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub sock: PathBuf,
    /// The daemon's network namespace (`ip netns` name), if it has its own.
    pub netns: Option<String>,
    /// Flags given at start, given again on a restart.
    args: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    /// Where the daemon keeps libcontainer's state of its containers:
    /// `/run/berth/runtime/<key>`, the key the first 16 hex digits of the SHA-256 of
    /// the canonical state root (the engine's `runtime_base`).
    pub fn runtime_state(&self) -> PathBuf {
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        let out = Command::new("sh")
            .args(["-c", "printf %s \"$1\" | sha256sum", "sh"])
            .arg(&root)
            .output()
            .expect("sha256sum");
        let hex = String::from_utf8_lossy(&out.stdout);
        Path::new("/run/berth/runtime").join(&hex[..16])
    }

    /// The containers whose runtime state is kept ([`Daemon::runtime_state`]'s entries).
    pub fn runtime_state_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.runtime_state())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::launch(extra, true)
    }

    /// A daemon in the host's network namespace, started with `--bridge none`.
    pub fn start_host_net(extra: &[&str]) -> Daemon {
        let mut args = vec!["--bridge", "none"];
        args.extend_from_slice(extra);
        Self::launch(&args, false)
    }

    fn launch(extra: &[&str], own_netns: bool) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("tempdir");
        if let Some(sock) = against_docker() {
            // The private Docker of scripts/against-docker.sh: no berth daemon, flags
            // ignored; an engine emptied before and after each test, as a fresh daemon.
            let d = Daemon {
                root: dir.path().join("root"),
                dir,
                sock,
                netns: std::env::var("BERTH_TEST_DOCKER_NETNS").ok(),
                args: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
            };
            d.reset_docker();
            return d;
        }
        let root = dir.path().join("root");
        let sock = dir.path().join("berth.sock");
        let netns = own_netns.then(new_netns);
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // A lane's daemon flags (e.g. every test under `--userns-remap default`), unless
        // the test sets that flag itself.
        if let Ok(lane) = std::env::var("BERTH_TEST_DAEMON_ARGS") {
            let lane: Vec<&str> = lane.split_whitespace().collect();
            let flag = lane.first().copied().unwrap_or_default();
            if !args.iter().any(|a| a == flag) {
                args.extend(lane.iter().map(|s| s.to_string()));
            }
        }
        let mut d = Daemon {
            dir,
            root,
            sock,
            netns,
            args,
            child: None,
        };
        d.spawn();
        d
    }

    /// Runs `f` on a thread inside the daemon's network namespace (the host's when it
    /// has none): to reach published ports on its 127.0.0.1, or its containers.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            Some(ns) => in_named_netns(ns, f),
            None => f(),
        }
    }

    /// A command that runs in the daemon's network namespace (`ip netns exec`).
    pub fn netns_cmd(&self, args: &[&str]) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(args);
                c
            }
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    fn spawn(&mut self) {
        assert!(
            against_docker().is_none(),
            "this test stops and starts its daemon: it cannot run against Docker"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("daemon log");
        let mut cmd = Command::new(berth_bin());
        cmd.args(["daemon", "--root"])
            .arg(&self.root)
            .arg("--host")
            .arg(self.host())
            .args(&self.args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(ns) = &self.netns {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = f.as_raw_fd();
            // SAFETY: setns(2) on an fd the parent opened (inherited by the child, closed
            // after spawn) is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("start berth daemon");
            drop(f);
            self.child = Some(child);
        } else {
            self.child = Some(cmd.spawn().expect("start berth daemon"));
        }
        // Generous: a loaded host or a TCG guest (the VM lane) can take many seconds.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("daemon exited early with {status}: {}", self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up: {}", self.log());
    }

    /// With `BERTH_TEST_LOGS=DIR`, copies the daemon's log to `DIR/<test>-<n>.log` (the
    /// test's thread name) before the test's directory goes: the VM lane keeps them, so a
    /// lane that fails on what a daemon left behind can be read afterwards.
    fn keep_log(&self) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let Some(dir) = std::env::var_os("BERTH_TEST_LOGS") else {
            return;
        };
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .replace("::", "-");
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let to = dir.join(format!("{test}-{}-{n}.log", std::process::id()));
        let _ = std::fs::copy(self.dir.path().join("daemon.log"), to);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with `signal` and waits for it.
    pub fn kill(&mut self, signal: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(c.id() as i32, signal) };
            let _ = c.wait();
        }
    }

    /// Starts the daemon again (after [`Daemon::kill`]) with the same flags, root,
    /// socket and network namespace.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the daemon still runs");
        self.spawn();
    }

    /// Stops (SIGKILL) and starts the daemon again on the same root and socket.
    pub fn restart_after_sigkill(&mut self) {
        self.kill(libc::SIGKILL);
        self.spawn();
    }

    /// Runs `berth --host … ARGS`.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(berth_bin())
            .arg("--host")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    /// The docker CLI set up for this daemon, to spawn with its own stdio.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        c
    }

    /// Runs the real docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }
}

/// `BERTH_TEST_AGAINST_DOCKER=unix:///path/docker.sock`: the tests' daemon is that Docker
/// Engine instead of a berth daemon (scripts/against-docker.sh sets it; run one test
/// thread, the engine is shared). Proves an expectation is Docker's (docs/TESTING.md).
pub fn against_docker() -> Option<PathBuf> {
    let host = std::env::var("BERTH_TEST_AGAINST_DOCKER").ok()?;
    let path = host.strip_prefix("unix://").unwrap_or(&host);
    Some(PathBuf::from(path))
}

impl Daemon {
    /// Against Docker: removes every container (with its anonymous volumes), volume,
    /// user-defined network and image, so each test starts from an empty engine.
    fn reset_docker(&self) {
        let ids = |args: &[&str]| -> Vec<String> {
            String::from_utf8_lossy(&self.docker(args).stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let run = |base: &[&str], ids: Vec<String>| {
            if !ids.is_empty() {
                let mut args: Vec<&str> = base.to_vec();
                args.extend(ids.iter().map(String::as_str));
                let _ = self.docker(&args);
            }
        };
        run(&["rm", "-f", "-v"], ids(&["ps", "-aq"]));
        let _ = self.docker(&["network", "prune", "-f"]);
        run(&["volume", "rm", "-f"], ids(&["volume", "ls", "-q"]));
        // A committed image's parent cannot go before it (Docker's 409 "image has
        // dependent child images"): rounds until none is left.
        for _ in 0..8 {
            let mut images = ids(&["images", "-aq"]);
            images.sort();
            images.dedup();
            if images.is_empty() {
                break;
            }
            run(&["rmi", "-f"], images);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if against_docker().is_some() {
            self.reset_docker();
            return;
        }
        // Containers outlive their daemon by design: remove what a test left behind
        // (running shims, mounted overlays), then stop the daemon and unmount anything
        // still mounted under the test's directory, so a test run leaves the host clean.
        if self.child.is_some() {
            let ids = self.berth(&["ps", "-aq", "--no-trunc"]);
            let ids = String::from_utf8_lossy(&ids.stdout).to_string();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = self.berth(&args);
            }
        }
        self.kill(libc::SIGTERM);
        self.keep_log();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.path().to_string_lossy().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A new `ip netns` namespace with loopback up, named after this process and a counter
/// (the caller deletes it).
pub fn new_netns() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("berth-t{}-{n}", std::process::id());
    let ok = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["netns", "add", &name]);
    ok(&["-n", &name, "link", "set", "lo", "up"]);
    name
}

/// Runs `f` on a thread inside the `ip netns` namespace `name`.
pub fn in_named_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(name).unwrap_or_else(|e| panic!("enter network namespace {name}: {e}"));
            f()
        })
        .join()
        .expect("thread in a network namespace")
    })
}

/// Moves the calling thread into an `ip netns` namespace.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns(2) with a valid namespace fd changes only this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// stdout of a command that must succeed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a command that must fail.
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "command succeeded but should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A rootfs tarball (gzip) of Debian's static busybox with a few applet links.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is installed");
    for a in ["sh", "cat", "echo", "true", "ls"] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
    }
    std::fs::write(rootfs.join("etc/hostname"), "demo\n").expect("write");
    let out = dir.join("rootfs.tar.gz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-czf")
        .arg(&out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    out
}

/// A free TCP port on 127.0.0.1 (bound once to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, or panics with `log`.
pub fn wait_for_port(port: u16, child: &mut Child, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early with {status}: {}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not come up on port {port}: {}", log());
}

/// A running `berth registry serve` on 127.0.0.1 and a free port; killed on drop.
pub struct RegistryServer {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub port: u16,
    child: Child,
}

/// A registry user: name, password, and `berth registry user add` permission flags
/// (`["--pull", "*", "--push", "team/*"]`).
pub struct RegistryUser<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub perms: &'a [&'a str],
}

/// The user [`RegistryServer::start`] adds: may pull, push and delete everything.
pub const REGISTRY_ADMIN: RegistryUser<'static> = RegistryUser {
    name: "admin",
    password: "admin-pw",
    perms: &["--pull", "*", "--push", "*", "--delete", "*"],
};

/// `berth registry user add NAME --root ROOT --password-stdin PERMS...`
pub fn registry_user_add(root: &Path, user: &RegistryUser<'_>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(berth_bin())
        .args(["registry", "user", "add", user.name, "--root"])
        .arg(root)
        .arg("--password-stdin")
        .args(user.perms)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth registry user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{}\n", user.password).as_bytes())
        .expect("write password");
    child.wait_with_output().expect("berth registry user add")
}

impl RegistryServer {
    /// A registry with the user [`REGISTRY_ADMIN`].
    pub fn start(extra: &[&str]) -> RegistryServer {
        Self::start_with_users(extra, &[REGISTRY_ADMIN])
    }

    /// A registry with `users`, added before it starts.
    pub fn start_with_users(extra: &[&str], users: &[RegistryUser<'_>]) -> RegistryServer {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        for u in users {
            ok(registry_user_add(&root, u));
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let mut child = Command::new(berth_bin())
            .args(["registry", "serve", "--root"])
            .arg(&root)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start berth registry serve");
        let log_path = dir.path().join("registry.log");
        wait_for_port(port, &mut child, || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        });
        RegistryServer {
            dir,
            root,
            port,
            child,
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `admin:admin-pw`, for `skopeo --creds` and the like.
    pub fn admin_creds(&self) -> String {
        format!("{}:{}", REGISTRY_ADMIN.name, REGISTRY_ADMIN.password)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A static UDP echo server (`tests/tools/udp_echo.c`, built once with `cc -static`):
/// busybox's nc has no UDP, and a static binary runs in any image (bind-mount it).
pub fn udp_echo_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| static_tool("udp_echo")).clone()
}

/// `tests/tools/tcp_serve.c` built static: answers each TCP connection with a name,
/// finishes what it accepted on SIGTERM (services' load-balancing tests).
pub fn tcp_serve_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| static_tool("tcp_serve")).clone()
}

/// The attacker's probe of the isolation tests (`tests/tools/probe.c`, static): clone
/// with namespace flags, process_vm_readv/writev, name_to_handle_at, AF_PACKET.
pub fn probe_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| static_tool("probe")).clone()
}

/// Builds `tests/tools/NAME.c` with `cc -static` into `target/test-tools/` (per test
/// process: test binaries run in parallel).
fn static_tool(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools")
        .join(format!("{name}.c"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-tools");
    std::fs::create_dir_all(&dir).expect("test-tools dir");
    let out = dir.join(format!("{name}-{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc (gcc and libc6-dev are needed to build the test tools)");
    assert!(st.success(), "cc -static {} failed", src.display());
    out
}
