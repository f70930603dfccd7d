//! `berth-shim CONTAINER_DIR`: the supervisor of one container.
//!
//! The engine writes `CONTAINER_DIR/shim.json` and the bundle, spawns this program with
//! its stdout on a pipe, and reads that pipe to its end: one line, `ok PID` once the
//! container runs, or `error MESSAGE`. Meanwhile the shim
//! 1. detaches: forks twice with `setsid` between, so it is no child of the daemon and in
//!    no session of it — killing the daemon (even SIGKILL) leaves it and the container;
//! 2. becomes a child subreaper, makes the container's stdout/stderr pipes, binds the
//!    control socket `shim.sock`;
//! 3. runs `berth-driver create` (libcontainer) with the pipes' write ends; the driver
//!    exits, the container's init is reparented to the shim;
//! 4. loops on `poll`: pipe data → json-file log (rotated; the shim always reads, so a
//!    container never blocks on an absent reader), control requests, and the init's
//!    pidfd;
//! 5. when init exits: reaps it, drains the pipes, reads the OOM kill count, runs
//!    `berth-driver delete` (cgroups, runtime state), writes `exit.json` atomically,
//!    answers waiters, removes the socket and exits.
//!
//! No async runtime and no libcontainer in this process: after start it holds a few
//! buffers and file descriptors (see `docs/ARCHITECTURE.md` for the measured memory).
//! Formats: `berth_runtime::shim_protocol`.

mod jsonlog;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime};

use berth_runtime::shim_protocol::{
    ExitRecord, ShimConfig, ShimState, BUNDLE_DIR, EXIT_FILE, RUNTIME_DIR, SHIM_CONFIG_FILE,
    SHIM_LOG_FILE, SHIM_PROTOCOL_VERSION, SHIM_SOCKET, SHIM_STATE_FILE,
};
use jsonlog::{rfc3339_nano, JsonLog, Stream};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, WaitOptions};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: berth-shim CONTAINER_DIR");
        return ExitCode::FAILURE;
    };
    let cfg = match read_config(&dir) {
        Ok(c) => c,
        Err(e) => {
            println!("error {e}");
            return ExitCode::FAILURE;
        }
    };
    match daemonize() {
        Ok(true) => {}
        Ok(false) => return ExitCode::SUCCESS,
        Err(e) => {
            println!("error daemonize: {e}");
            return ExitCode::FAILURE;
        }
    }
    match Shim::start(&dir, cfg) {
        Ok(shim) => {
            shim.supervise();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-shim: {e}");
            let mut out = std::io::stdout();
            let _ = writeln!(out, "error {}", e.replace('\n', " "));
            let _ = out.flush();
            ExitCode::FAILURE
        }
    }
}

fn read_config(dir: &Path) -> Result<ShimConfig, String> {
    let p = dir.join(SHIM_CONFIG_FILE);
    let bytes = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let cfg: ShimConfig =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    if cfg.version != SHIM_PROTOCOL_VERSION {
        return Err(format!(
            "{}: version {} is not supported (this shim knows {SHIM_PROTOCOL_VERSION})",
            p.display(),
            cfg.version
        ));
    }
    Ok(cfg)
}

/// Forks twice with `setsid` in between. Returns true in the daemon, false in the
/// processes that must exit (the first waits for the second so the caller reaps nothing
/// left behind).
fn daemonize() -> Result<bool, String> {
    // SAFETY: the process is single-threaded here (nothing has spawned a thread), so the
    // child may run arbitrary code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().to_string()),
        0 => {
            rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
            // SAFETY: still single-threaded, as above.
            match unsafe { libc::fork() } {
                -1 => Err(std::io::Error::last_os_error().to_string()),
                0 => Ok(true),
                // SAFETY: _exit ends the middle process without running atexit handlers
                // or flushing stdio buffers that the daemon also holds.
                _ => unsafe { libc::_exit(0) },
            }
        }
        child => {
            let _ = rustix::process::waitpid(Pid::from_raw(child), WaitOptions::empty());
            Ok(false)
        }
    }
}

struct Shim {
    cfg: ShimConfig,
    dir: PathBuf,
    pid: i32,
    pidfd: OwnedFd,
    out_r: File,
    err_r: File,
    listener: UnixListener,
    log: JsonLog,
    started_at: String,
}

/// Writes `bytes` to `dir/name` atomically: a temp file, fsync, rename, fsync the dir.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Duplicates `fd` to a number ≥ 10 (close-on-exec), so `dup2` onto 3 and 4 in the
/// driver never meets an fd that already has that number.
fn high_fd(fd: OwnedFd) -> Result<OwnedFd, String> {
    rustix::io::fcntl_dupfd_cloexec(&fd, 10).map_err(|e| format!("dup: {e}"))
}

impl Shim {
    fn start(dir: &Path, cfg: ShimConfig) -> Result<Shim, String> {
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        let devnull = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(SHIM_LOG_FILE)
            .map_err(|e| format!("{SHIM_LOG_FILE}: {e}"))?;
        rustix::stdio::dup2_stdin(&devnull).map_err(|e| format!("stdin: {e}"))?;
        rustix::stdio::dup2_stderr(&log).map_err(|e| format!("stderr: {e}"))?;
        drop(log);
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "become child subreaper: {}",
                std::io::Error::last_os_error()
            ));
        }
        let _ = fs::remove_file(EXIT_FILE);
        let _ = fs::remove_file(SHIM_SOCKET);
        let listener =
            UnixListener::bind(SHIM_SOCKET).map_err(|e| format!("bind {SHIM_SOCKET}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{SHIM_SOCKET}: {e}"))?;
        let log_path = format!("{}-json.log", cfg.id);
        let log = JsonLog::open(Path::new(&log_path), cfg.log_max_size, cfg.log_max_file)
            .map_err(|e| format!("{log_path}: {e}"))?;

        let flags = rustix::pipe::PipeFlags::CLOEXEC;
        let (out_r, out_w) = rustix::pipe::pipe_with(flags).map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = rustix::pipe::pipe_with(flags).map_err(|e| format!("pipe: {e}"))?;
        let (out_w, err_w) = (high_fd(out_w)?, high_fd(err_w)?);
        let (ow, ew): (RawFd, RawFd) = (out_w.as_raw_fd(), err_w.as_raw_fd());
        let mut cmd = Command::new(&cfg.driver);
        cmd.arg("create")
            .arg(dir.join(RUNTIME_DIR))
            .arg(&cfg.id)
            .arg(dir.join(BUNDLE_DIR))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls dup2,
        // which is async-signal-safe; ow and ew are open in the parent (owned above) and
        // distinct from 3 and 4 (high_fd).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::dup2(ow, 3) < 0 || libc::dup2(ew, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd
            .output()
            .map_err(|e| format!("run {}: {e}", cfg.driver.display()))?;
        drop((out_w, err_w));
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let msg = msg.trim().trim_start_matches("berth-driver: ");
            return Err(if msg.is_empty() {
                format!("berth-driver create: {}", out.status)
            } else {
                msg.to_string()
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid: i32 = stdout
            .trim()
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("berth-driver create: unexpected output {stdout:?}"))?;
        let pidfd = Pid::from_raw(pid)
            .ok_or_else(|| format!("berth-driver create: bad pid {pid}"))
            .and_then(|p| {
                rustix::process::pidfd_open(p, PidfdFlags::empty())
                    .map_err(|e| format!("pidfd_open {pid}: {e}"))
            })?;
        let started_at = rfc3339_nano(SystemTime::now());
        let shim = Shim {
            pid,
            pidfd,
            out_r: File::from(out_r),
            err_r: File::from(err_r),
            listener,
            log,
            started_at,
            dir: dir.to_path_buf(),
            cfg,
        };
        shim.write_state("running")
            .map_err(|e| format!("{SHIM_STATE_FILE}: {e}"))?;
        // Ready: tell the engine, then let go of its pipe.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "ok {pid}");
        let _ = stdout.flush();
        let _ = rustix::stdio::dup2_stdout(&devnull);
        Ok(shim)
    }

    fn state(&self, status: &str) -> ShimState {
        ShimState {
            version: SHIM_PROTOCOL_VERSION,
            shim_pid: rustix::process::getpid().as_raw_nonzero().get(),
            pid: self.pid,
            started_at: self.started_at.clone(),
            status: status.to_string(),
        }
    }

    fn write_state(&self, status: &str) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&self.state(status)).map_err(std::io::Error::other)?;
        write_atomic(&self.dir, SHIM_STATE_FILE, &bytes)
    }

    fn supervise(mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut open = [true, true];
        let mut waiters: Vec<UnixStream> = Vec::new();
        let mut status: Option<rustix::process::WaitStatus> = None;
        let mut drain_deadline: Option<std::time::Instant> = None;
        loop {
            if status.is_some() && !open[0] && !open[1] {
                break;
            }
            let timeout = drain_deadline.map(|d| {
                let left = d.saturating_duration_since(std::time::Instant::now());
                rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                }
            });
            let (out_ready, err_ready, pid_ready, sock_ready) = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
                let mut slots = [usize::MAX; 4];
                let ev = PollFlags::IN;
                if open[0] {
                    slots[0] = fds.len();
                    fds.push(PollFd::new(&self.out_r, ev));
                }
                if open[1] {
                    slots[1] = fds.len();
                    fds.push(PollFd::new(&self.err_r, ev));
                }
                if status.is_none() {
                    slots[2] = fds.len();
                    fds.push(PollFd::new(&self.pidfd, ev));
                }
                slots[3] = fds.len();
                fds.push(PollFd::new(&self.listener, ev));
                match poll(&mut fds, timeout.as_ref()) {
                    Ok(0) if drain_deadline.is_some() => break,
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        eprintln!("berth-shim: poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                let ready = |slot: usize| {
                    slot != usize::MAX && fds.get(slot).is_some_and(|f| !f.revents().is_empty())
                };
                (
                    ready(slots[0]),
                    ready(slots[1]),
                    ready(slots[2]),
                    ready(slots[3]),
                )
            };
            for (i, ready) in [out_ready, err_ready].into_iter().enumerate() {
                if !ready {
                    continue;
                }
                let (stream, file) = if i == 0 {
                    (Stream::Stdout, &mut self.out_r)
                } else {
                    (Stream::Stderr, &mut self.err_r)
                };
                match file.read(&mut buf) {
                    Ok(0) => {
                        open[i] = false;
                        self.log.flush_partial(stream);
                    }
                    Ok(n) => self.log.write(stream, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("berth-shim: read {}: {e}", stream_name(stream));
                        open[i] = false;
                        self.log.flush_partial(stream);
                    }
                }
            }
            if pid_ready && status.is_none() {
                status = self.reap();
                if status.is_some() {
                    // The container's processes are gone with its init (PID namespace);
                    // what they wrote is still in the pipes: read it, but not forever.
                    drain_deadline = Some(std::time::Instant::now() + Duration::from_secs(2));
                }
            }
            if sock_ready {
                while let Ok((conn, _)) = self.listener.accept() {
                    if let Some(w) = self.handle(conn) {
                        waiters.push(w);
                    }
                }
            }
        }
        self.log.flush_partial(Stream::Stdout);
        self.log.flush_partial(Stream::Stderr);
        self.finish(status, waiters);
    }

    /// Reaps the init if it exited (and any other child that did: the shim is a
    /// subreaper). Returns the init's status.
    fn reap(&self) -> Option<rustix::process::WaitStatus> {
        let pid = Pid::from_raw(self.pid)?;
        let st = match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => Some(st),
            Ok(None) => None,
            Err(e) => {
                eprintln!("berth-shim: waitpid {}: {e}", self.pid);
                None
            }
        };
        while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
        st
    }

    /// Answers one control request; a `wait` connection is returned to be answered at exit.
    fn handle(&self, mut conn: UnixStream) -> Option<UnixStream> {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        let mut req = [0u8; 64];
        let mut n = 0;
        while n < req.len() {
            match conn.read(&mut req[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    if req[..n].contains(&b'\n') {
                        break;
                    }
                }
                Err(_) => return None,
            }
        }
        let line = String::from_utf8_lossy(&req[..n]);
        let line = line.trim();
        let reply = if let Some(sig) = line.strip_prefix("kill ") {
            match sig
                .parse::<i32>()
                .ok()
                .and_then(rustix::process::Signal::from_named_raw)
            {
                Some(sig) => match rustix::process::pidfd_send_signal(&self.pidfd, sig) {
                    Ok(()) | Err(rustix::io::Errno::SRCH) => "ok\n".to_string(),
                    Err(e) => format!("error kill: {e}\n"),
                },
                None => format!("error signal {sig:?}: not a signal number\n"),
            }
        } else if line == "state" {
            let mut s = serde_json::to_string(&self.state("running")).unwrap_or_default();
            s.push('\n');
            s
        } else if line == "wait" {
            return Some(conn);
        } else {
            format!("error unknown request {line:?}\n")
        };
        let _ = conn.write_all(reply.as_bytes());
        None
    }

    fn oom_killed(&self) -> bool {
        let Some(cg) = self.cfg.cgroup_path.as_deref() else {
            return false;
        };
        let rel = cg.strip_prefix("/").unwrap_or(cg);
        let count = |path: PathBuf| -> Option<u64> {
            let text = fs::read_to_string(path).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        };
        let base = Path::new("/sys/fs/cgroup");
        count(base.join("memory").join(rel).join("memory.oom_control"))
            .or_else(|| count(base.join(rel).join("memory.events")))
            .is_some_and(|n| n > 0)
    }

    fn finish(self, status: Option<rustix::process::WaitStatus>, waiters: Vec<UnixStream>) {
        let (exit_code, signal) = match status {
            Some(st) => {
                if let Some(code) = st.exit_status() {
                    (code, None)
                } else if let Some(sig) = st.terminating_signal() {
                    (128 + sig, Some(sig))
                } else {
                    (255, None)
                }
            }
            None => (255, None),
        };
        let oom_killed = self.oom_killed();
        let del = Command::new(&self.cfg.driver)
            .arg("delete")
            .arg(self.dir.join(RUNTIME_DIR))
            .arg(&self.cfg.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output();
        match del {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "berth-shim: berth-driver delete: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("berth-shim: berth-driver delete: {e}"),
        }
        let rec = ExitRecord {
            version: SHIM_PROTOCOL_VERSION,
            exit_code,
            signal,
            oom_killed,
            started_at: self.started_at.clone(),
            finished_at: rfc3339_nano(SystemTime::now()),
        };
        let mut line = serde_json::to_vec(&rec).unwrap_or_default();
        if let Err(e) = write_atomic(&self.dir, EXIT_FILE, &line) {
            eprintln!("berth-shim: write {EXIT_FILE}: {e}");
        }
        let _ = self.write_state("exited");
        if self.log.dropped > 0 {
            eprintln!(
                "berth-shim: {} log records dropped (write errors)",
                self.log.dropped
            );
        }
        let _ = fs::remove_file(SHIM_SOCKET);
        line.push(b'\n');
        for mut w in waiters {
            let _ = w.write_all(&line);
        }
    }
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}
