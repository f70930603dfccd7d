//! `berth-shim CONTAINER_DIR`: the supervisor of one container.
//!
//! The engine writes `CONTAINER_DIR/shim.json` and the bundle, spawns this program with
//! its stdout on a pipe, and reads that pipe to its end: one line, `ok PID` once the
//! container runs, or `error MESSAGE`. Meanwhile the shim
//! 1. detaches: forks twice with `setsid` between, so it is no child of the daemon and in
//!    no session of it — killing the daemon (even SIGKILL) leaves it and the container;
//! 2. receives the sockets the engine hands over on its stdin, if any (the userland
//!    proxy's, and the clients attached before the start: `ShimConfig::attach`),
//!    becomes a child subreaper, makes the container's stdio — stdout/stderr pipes, a
//!    stdin pipe with OpenStdin (else `/dev/null`), or with a TTY a console socket on
//!    which libcontainer sends the pty master — and binds the control socket `shim.sock`;
//! 3. runs `berth-driver create` (libcontainer) with the pipes' ends; the driver exits;
//!    the container's init is reparented to the shim; with published ports the kernel
//!    cannot translate, runs the userland proxy (`berth-proxy`, `proxy.rs`) on the
//!    sockets the engine bound; serves the clients attached before the start as attached
//!    clients before it reads any output, so they miss none of it;
//! 4. loops on `poll`: output → json-file log (rotated; the shim always reads, so a
//!    container never blocks on an absent or slow reader) and every attached client,
//!    clients' input → the container's stdin, control requests, and the init's pidfd;
//! 5. when init exits: reaps it, drains the pipes (or the pty), flushes attached clients
//!    and closes them, ends the userland proxy, reads the OOM kill count, writes
//!    `exit.json` atomically, removes the socket and answers waiters; then removes the
//!    container's cgroups and libcontainer's state (`berth-driver delete` when something
//!    resists) and exits. From step 1 to its exit it holds the `flock` on the
//!    container's directory that a new start waits for.
//!
//! No async runtime and no libcontainer in this process: after start it holds a few
//! buffers and file descriptors (see `docs/ARCHITECTURE.md` for the measured memory).
//! Formats: `berth_runtime::shim_protocol`.

mod attach;
mod jsonlog;
mod proxy;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use attach::{Attacher, Input};
use berth_runtime::shim_protocol::{
    lock_container_dir, ExitRecord, ShimConfig, ShimState, BUNDLE_DIR, CONSOLE_SOCKET, EXIT_FILE,
    SHIM_CONFIG_FILE, SHIM_LOG_FILE, SHIM_PROTOCOL_VERSION, SHIM_SOCKET, SHIM_STATE_FILE,
};
use jsonlog::{rfc3339_nano, JsonLog, Stream};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
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
    // Held to the process's exit: the engine waits for it before anything that needs the
    // container's runtime state gone (shim_protocol's doc).
    let _lock = match lock_container_dir(&dir) {
        Ok(Some(fd)) => fd,
        Ok(None) => {
            println!(
                "error another berth-shim still supervises the container in {}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            println!("error lock {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
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

/// One `poll` slot: what a ready fd stands for.
#[derive(Clone, Copy)]
enum Slot {
    /// outputs[i]: the stdout pipe (or the pty master) and the stderr pipe.
    Output(usize),
    /// The container's stdin (pipe or pty master) is writable.
    Input,
    Pidfd,
    Listener,
    Attacher(usize),
}

struct Shim {
    cfg: ShimConfig,
    dir: PathBuf,
    pid: i32,
    pidfd: OwnedFd,
    /// The container's output: [stdout or the pty master, stderr]; None once at EOF.
    outputs: [Option<File>; 2],
    /// Where attached clients' input goes: the stdin pipe or the pty master (a dup);
    /// None without OpenStdin or once closed (StdinOnce).
    input: Option<File>,
    /// Input not written to the container yet (bounded by INPUT_BUFFER_MAX).
    input_buf: Vec<u8>,
    /// The pty master (TTY containers), for resize.
    master: Option<OwnedFd>,
    listener: UnixListener,
    log: JsonLog,
    started_at: String,
    attachers: Vec<Attacher>,
    waiters: Vec<UnixStream>,
    /// Close the container's stdin once `input_buf` is written (StdinOnce).
    close_input_when_flushed: bool,
    /// The userland proxy of published ports (`proxy.rs`), killed at exit.
    proxy: Option<proxy::ProxyChild>,
}

/// Input bytes buffered for the container's stdin; while full, clients' input is not read
/// (they wait, the container never does).
const INPUT_BUFFER_MAX: usize = 64 * 1024;

/// Replaces `dir/name` atomically (temp file + rename): readers see the old or the new
/// content, never a mix. Not fsync'd: these records (state, exit status) describe a
/// process that a power loss ends anyway, and a sync here would sit on the critical path
/// of every start and exit (`run --rm`); a daemon or shim crash loses nothing (the page
/// cache survives it).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    fs::rename(&tmp, dir.join(name))
}

/// The exit record's space, taken once the container runs: at the exit the record is
/// written into it and renamed to `exit.json`, so that it is kept on a full filesystem
/// too (a container that filled the state root's filesystem is stopped and removed
/// without anything else freeing space first: its outcome must not be lost then).
const EXIT_RESERVE: &str = ".exit.json.reserve";
/// A filesystem block: far more than an exit record (about 200 bytes).
const EXIT_RESERVE_BYTES: usize = 4096;

fn reserve_exit_record(dir: &Path) {
    let path = dir.join(EXIT_RESERVE);
    let made = File::create(&path).and_then(|mut f| f.write_all(&[b' '; EXIT_RESERVE_BYTES]));
    if let Err(e) = made {
        // The record is then written as any file (which a full disk may refuse).
        eprintln!("berth-shim: {}: {e}", path.display());
        let _ = fs::remove_file(&path);
    }
}

/// Writes `exit.json` into the space [`reserve_exit_record`] took (no new block on any
/// filesystem), else as a new file.
fn write_exit_record(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let reserve = dir.join(EXIT_RESERVE);
    if bytes.len() <= EXIT_RESERVE_BYTES {
        if let Ok(mut f) = OpenOptions::new().write(true).open(&reserve) {
            let written = f
                .write_all(bytes)
                .and_then(|()| f.set_len(bytes.len() as u64));
            drop(f);
            if written
                .and_then(|()| fs::rename(&reserve, dir.join(EXIT_FILE)))
                .is_ok()
            {
                return Ok(());
            }
        }
    }
    write_atomic(dir, EXIT_FILE, bytes)
}

/// Duplicates `fd` to a number ≥ 10 (close-on-exec), so `dup2` onto 3, 4 and 5 in the
/// driver never meets an fd that already has that number.
fn high_fd(fd: impl AsFd) -> Result<OwnedFd, String> {
    rustix::io::fcntl_dupfd_cloexec(fd, 10).map_err(|e| format!("dup: {e}"))
}

fn set_nonblocking(fd: impl AsFd) -> Result<(), String> {
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(|e| format!("fcntl: {e}"))?;
    rustix::fs::fcntl_setfl(&fd, fl | rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| format!("fcntl: {e}"))
}

/// Receives the engine's sockets from stdin (one `SCM_RIGHTS` message, see
/// `shim_protocol`): the proxy's listening sockets, then the attached clients'
/// connections. Close-on-exec, so neither the driver nor the container ever holds them.
/// Nothing to receive (and stdin untouched) without proxied ports or attached clients.
/// Returns the proxy's sockets and the attached clients' connections.
fn receive_handoff(cfg: &ShimConfig) -> Result<(Vec<OwnedFd>, Vec<OwnedFd>), String> {
    let n = cfg.proxy.len() + cfg.attach.len();
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let stdin = std::io::stdin();
    let stdin = stdin.as_fd();
    let what = "the engine's sockets (userland proxy, attached clients)";
    rustix::net::sockopt::set_socket_timeout(
        stdin,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(10)),
    )
    .map_err(|e| format!("{what}: stdin: {e}"))?;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(n))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(stdin, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("{what}: {e}"))?;
    let mut out = Vec::with_capacity(n);
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            out.extend(fds);
        }
    }
    if out.len() != n {
        return Err(format!("{what}: {} received, {n} expected", out.len()));
    }
    let attached = out.split_off(cfg.proxy.len());
    Ok((out, attached))
}

/// The driver's error message from its stderr (or its status).
fn driver_error(verb: &str, status: std::process::ExitStatus, stderr: &[u8]) -> String {
    let msg = String::from_utf8_lossy(stderr);
    let msg = msg.trim().trim_start_matches("berth-driver: ");
    if msg.is_empty() {
        format!("berth-driver {verb}: {status}")
    } else {
        msg.replace('\n', " ")
    }
}

/// Accepts libcontainer's connection on the console socket and receives the pty master.
fn receive_pty_master(listener: &UnixListener) -> Result<OwnedFd, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "{CONSOLE_SOCKET}: the runtime sent no pty master within 10 s"
                    ));
                }
                let mut fds = [PollFd::new(listener, PollFlags::IN)];
                let ts = rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let _ = poll(&mut fds, Some(&ts));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{CONSOLE_SOCKET}: accept: {e}")),
        }
    };
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut name = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(&conn, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("{CONSOLE_SOCKET}: recvmsg: {e}"))?;
    let mut master = None;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                master.get_or_insert(fd);
            }
        }
    }
    master.ok_or_else(|| format!("{CONSOLE_SOCKET}: the runtime's message carried no fd"))
}

/// `TIOCSWINSZ` on the pty master.
fn set_winsize(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), String> {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, ws).map_err(|e| format!("TIOCSWINSZ: {e}"))
}

fn timespec(d: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

impl Shim {
    fn start(dir: &Path, cfg: ShimConfig) -> Result<Shim, String> {
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        // Before stdin becomes /dev/null; close-on-exec: the driver and the container
        // never get them.
        let (proxy_socks, attached) = receive_handoff(&cfg)?;
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
        let log = if cfg.log_none {
            JsonLog::discarding(Path::new(&log_path))
        } else {
            JsonLog::open(Path::new(&log_path), cfg.log_max_size, cfg.log_max_file)
                .map_err(|e| format!("{log_path}: {e}"))?
        };

        // The container's stdio: pipes, or a pty whose master arrives on the console
        // socket (fds 3 and 4 of the driver are then /dev/null).
        let flags = rustix::pipe::PipeFlags::CLOEXEC;
        let console = if cfg.tty {
            let _ = fs::remove_file(CONSOLE_SOCKET);
            let l = UnixListener::bind(CONSOLE_SOCKET)
                .map_err(|e| format!("bind {CONSOLE_SOCKET}: {e}"))?;
            l.set_nonblocking(true)
                .map_err(|e| format!("{CONSOLE_SOCKET}: {e}"))?;
            Some(l)
        } else {
            None
        };
        let (mut outputs, out_w, err_w) = if cfg.tty {
            ([None, None], high_fd(&devnull)?, high_fd(&devnull)?)
        } else {
            let (out_r, out_w) =
                rustix::pipe::pipe_with(flags).map_err(|e| format!("pipe: {e}"))?;
            let (err_r, err_w) =
                rustix::pipe::pipe_with(flags).map_err(|e| format!("pipe: {e}"))?;
            (
                [Some(File::from(out_r)), Some(File::from(err_r))],
                high_fd(out_w)?,
                high_fd(err_w)?,
            )
        };
        let (mut input, in_r) = if cfg.open_stdin && !cfg.tty {
            let (r, w) = rustix::pipe::pipe_with(flags).map_err(|e| format!("pipe: {e}"))?;
            set_nonblocking(&w)?;
            (Some(File::from(w)), Some(high_fd(r)?))
        } else {
            (None, None)
        };
        let (ow, ew): (RawFd, RawFd) = (out_w.as_raw_fd(), err_w.as_raw_fd());
        let ir: RawFd = in_r.as_ref().map_or(-1, |f| f.as_raw_fd());
        let mut cmd = Command::new(&cfg.driver);
        cmd.arg("create")
            .arg(cfg.runtime_root(dir))
            .arg(&cfg.id)
            .arg(dir.join(BUNDLE_DIR));
        if in_r.is_some() {
            cmd.arg("--stdin");
        }
        if cfg.tty {
            cmd.arg("--console-socket").arg(dir.join(CONSOLE_SOCKET));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls dup2,
        // which is async-signal-safe; ow, ew and ir are open in the parent (owned above)
        // and distinct from 3, 4 and 5 (high_fd).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::dup2(ow, 3) < 0 || libc::dup2(ew, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if ir >= 0 && libc::dup2(ir, 5) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let run_err = |e: std::io::Error| format!("run {}: {e}", cfg.driver.display());
        let out = cmd.output().map_err(run_err)?;
        if !out.status.success() {
            return Err(driver_error("create", out.status, &out.stderr));
        }
        let pid_line = String::from_utf8_lossy(&out.stdout).into_owned();
        drop((out_w, err_w, in_r));
        let result = (|| -> Result<(i32, Option<OwnedFd>, Option<proxy::ProxyChild>), String> {
            let pid: i32 = pid_line
                .trim()
                .strip_prefix("pid ")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("berth-driver create: unexpected output {pid_line:?}"))?;
            let master = match &console {
                Some(l) => {
                    let m = receive_pty_master(l)?;
                    let _ = fs::remove_file(CONSOLE_SOCKET);
                    set_nonblocking(&m)?;
                    if let Some([h, w]) = cfg.console_size {
                        set_winsize(&m, h, w)?;
                    }
                    Some(m)
                }
                None => None,
            };
            // The published ports' sockets are bound (by the engine): relaying starts
            // with the container.
            let proxy = proxy::spawn(&cfg, proxy_socks)?;
            Ok((pid, master, proxy))
        })();
        let (pid, master, proxy) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(CONSOLE_SOCKET);
                Self::delete_container(&cfg, dir);
                return Err(e);
            }
        };
        drop(console);
        if let Some(m) = &master {
            let dup = |m: &OwnedFd| {
                rustix::io::fcntl_dupfd_cloexec(m, 0)
                    .map(File::from)
                    .map_err(|e| format!("dup: {e}"))
            };
            outputs[0] = Some(dup(m)?);
            if cfg.open_stdin {
                input = Some(dup(m)?);
            }
        }
        let pidfd = Pid::from_raw(pid)
            .ok_or_else(|| format!("berth-driver create: bad pid {pid}"))
            .and_then(|p| {
                rustix::process::pidfd_open(p, PidfdFlags::empty())
                    .map_err(|e| format!("pidfd_open {pid}: {e}"))
            })?;
        let started_at = rfc3339_nano(SystemTime::now());
        // The clients attached before the start: served from the first output on (none
        // is read before the supervision loop).
        let mut attachers = Vec::with_capacity(attached.len());
        for (fd, spec) in attached.into_iter().zip(&cfg.attach) {
            let streams = attach::parse_streams(spec).map_err(|e| format!("attach: {e}"))?;
            match Attacher::new(UnixStream::from(fd), streams) {
                Ok(a) => attachers.push(a),
                Err(e) => eprintln!("berth-shim: attach: {e}"),
            }
        }
        let shim = Shim {
            pid,
            pidfd,
            outputs,
            input,
            input_buf: Vec::new(),
            master,
            listener,
            log,
            started_at,
            attachers,
            waiters: Vec::new(),
            close_input_when_flushed: false,
            proxy,
            dir: dir.to_path_buf(),
            cfg,
        };
        shim.write_state()
            .map_err(|e| format!("{SHIM_STATE_FILE}: {e}"))?;
        let reply = format!("ok {pid}");
        // Ready: tell the engine, then let go of its pipe.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{reply}");
        let _ = stdout.flush();
        let _ = rustix::stdio::dup2_stdout(&devnull);
        // After the answer: the engine's start does not wait for it.
        reserve_exit_record(dir);
        Ok(shim)
    }

    /// `berth-driver delete` (cgroups, libcontainer's state); errors go to shim.log.
    fn delete_container(cfg: &ShimConfig, dir: &Path) {
        let del = Command::new(&cfg.driver)
            .arg("delete")
            .arg(cfg.runtime_root(dir))
            .arg(&cfg.id)
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
    }

    /// The shim's state: its container runs (the exit goes to `exit.json`).
    fn state(&self) -> ShimState {
        ShimState {
            version: SHIM_PROTOCOL_VERSION,
            shim_pid: rustix::process::getpid().as_raw_nonzero().get(),
            pid: self.pid,
            started_at: self.started_at.clone(),
            status: "running".to_string(),
        }
    }

    fn write_state(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&self.state()).map_err(std::io::Error::other)?;
        write_atomic(&self.dir, SHIM_STATE_FILE, &bytes)
    }

    /// Sends container output to the log and every attached client.
    fn output(&mut self, stream: Stream, data: &[u8]) {
        self.log.write(stream, data);
        let raw = self.cfg.tty;
        for a in &mut self.attachers {
            a.push(stream, data, raw);
        }
    }

    fn close_output(&mut self, i: usize) {
        self.outputs[i] = None;
        self.log.flush_partial(if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        });
    }

    /// Writes buffered input to the container's stdin, as much as it takes now.
    fn flush_input(&mut self) {
        let Some(f) = self.input.as_mut() else {
            self.input_buf.clear();
            return;
        };
        while !self.input_buf.is_empty() {
            match f.write(&self.input_buf) {
                Ok(n) => {
                    self.input_buf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The container closed its stdin (or exited): input has nowhere to go.
                    self.input_buf.clear();
                    if !self.cfg.tty {
                        self.input = None;
                    }
                    return;
                }
            }
        }
    }

    /// A client closed its input: Docker closes the container's stdin with StdinOnce (no
    /// TTY), else ends that client's attach.
    fn input_eof(&mut self, i: usize) {
        let Some(a) = self.attachers.get_mut(i) else {
            return;
        };
        if !a.streams.stdin {
            return; // its input never mattered; keep sending it output
        }
        if self.cfg.stdin_once && !self.cfg.tty {
            // Close once what it sent is written.
            self.flush_input();
            if self.input_buf.is_empty() {
                self.input = None;
            } else {
                self.close_input_when_flushed = true;
            }
        } else {
            a.dead = true;
        }
    }

    fn supervise(mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut status: Option<rustix::process::WaitStatus> = None;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            // Dropping a client closes its connection.
            self.attachers.retain(|a| !a.dead);
            if status.is_some()
                && self.outputs.iter().all(Option::is_none)
                && !self.attachers.iter().any(Attacher::has_output)
            {
                break;
            }
            let now = Instant::now();
            if drain_deadline.is_some_and(|d| now >= d) {
                break;
            }
            let timeout = drain_deadline.map(|d| timespec(d.saturating_duration_since(now)));
            let ready: Vec<(Slot, PollFlags)> = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5 + self.attachers.len());
                let mut slots: Vec<Slot> = Vec::with_capacity(fds.capacity());
                let ev = PollFlags::IN;
                for (i, o) in self.outputs.iter().enumerate() {
                    if let Some(f) = o {
                        fds.push(PollFd::new(f, ev));
                        slots.push(Slot::Output(i));
                    }
                }
                if let Some(f) = self.input.as_ref().filter(|_| !self.input_buf.is_empty()) {
                    fds.push(PollFd::new(f, PollFlags::OUT));
                    slots.push(Slot::Input);
                }
                if status.is_none() {
                    fds.push(PollFd::new(&self.pidfd, ev));
                    slots.push(Slot::Pidfd);
                }
                fds.push(PollFd::new(&self.listener, ev));
                slots.push(Slot::Listener);
                let input_room = self.input_buf.len() < INPUT_BUFFER_MAX;
                for (i, a) in self.attachers.iter().enumerate() {
                    let mut flags = PollFlags::empty();
                    if a.input_open && input_room {
                        flags |= PollFlags::IN;
                    }
                    if a.has_output() {
                        flags |= PollFlags::OUT;
                    }
                    if !flags.is_empty() {
                        fds.push(PollFd::new(&a.conn, flags));
                        slots.push(Slot::Attacher(i));
                    }
                }
                match poll(&mut fds, timeout.as_ref()) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        eprintln!("berth-shim: poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                fds.iter()
                    .zip(slots)
                    .filter(|(f, _)| !f.revents().is_empty())
                    .map(|(f, s)| (s, f.revents()))
                    .collect()
            };
            for (slot, revents) in ready {
                match slot {
                    Slot::Output(i) => {
                        let stream = if i == 0 {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        };
                        let Some(f) = self.outputs[i].as_mut() else {
                            continue;
                        };
                        match f.read(&mut buf) {
                            Ok(0) => self.close_output(i),
                            Ok(n) => self.output(stream, &buf[..n]),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::Interrupted
                                        | std::io::ErrorKind::WouldBlock
                                ) => {}
                            // A pty master reads EIO once no process holds the slave.
                            Err(e) if self.cfg.tty && e.raw_os_error() == Some(libc::EIO) => {
                                self.close_output(i)
                            }
                            Err(e) => {
                                eprintln!("berth-shim: read {}: {e}", stream_name(stream));
                                self.close_output(i);
                            }
                        }
                    }
                    Slot::Input => self.flush_input(),
                    Slot::Pidfd => {
                        if status.is_none() {
                            status = self.reap();
                            if status.is_some() {
                                // The container's processes are gone with its init (PID
                                // namespace); what they wrote is still in the pipes: read
                                // it and hand it to attached clients, but not forever.
                                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                                self.input = None;
                                self.input_buf = Vec::new();
                            }
                        }
                    }
                    Slot::Listener => {
                        while let Ok((conn, _)) = self.listener.accept() {
                            self.handle(conn);
                        }
                    }
                    Slot::Attacher(i) => {
                        if revents.contains(PollFlags::OUT) {
                            if let Some(a) = self.attachers.get_mut(i) {
                                a.flush();
                            }
                        }
                        if revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                            let room = INPUT_BUFFER_MAX.saturating_sub(self.input_buf.len());
                            let Some(a) = self.attachers.get_mut(i) else {
                                continue;
                            };
                            if !a.input_open || room == 0 {
                                continue;
                            }
                            match a.read_input(&mut buf[..room.min(64 * 1024)]) {
                                Input::None => {}
                                Input::Data(n) => {
                                    if self.input.is_some() {
                                        self.input_buf.extend_from_slice(&buf[..n]);
                                        self.flush_input();
                                    }
                                }
                                Input::Eof => self.input_eof(i),
                            }
                        }
                    }
                }
            }
            if self.close_input_when_flushed && self.input_buf.is_empty() {
                self.close_input_when_flushed = false;
                self.input = None;
            }
        }
        self.log.flush_partial(Stream::Stdout);
        self.log.flush_partial(Stream::Stderr);
        // EOF to every attached client: the container's output is complete.
        self.attachers.clear();
        self.finish(status);
    }

    /// Answers one control request. `wait` connections are kept to be answered at exit,
    /// `attach` connections become attached clients.
    fn handle(&mut self, mut conn: UnixStream) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        let mut req = [0u8; 128];
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
                Err(_) => return,
            }
        }
        let end = req[..n].iter().position(|b| *b == b'\n').unwrap_or(n);
        let line = String::from_utf8_lossy(&req[..end]).trim().to_string();
        let rest = req.get(end + 1..n).unwrap_or_default().to_vec();
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
            let mut s = serde_json::to_string(&self.state()).unwrap_or_default();
            s.push('\n');
            s
        } else if line == "wait" {
            self.waiters.push(conn);
            return;
        } else if let Some(size) = line.strip_prefix("resize ") {
            self.resize(size)
                .map_or_else(|e| format!("error {e}\n"), |()| "ok\n".to_string())
        } else if let Some(args) = line.strip_prefix("attach") {
            match attach::parse_streams(args) {
                Ok(streams) => {
                    if conn.write_all(b"ok\n").is_err() {
                        return;
                    }
                    if streams.stdin && self.input.is_some() {
                        self.input_buf.extend_from_slice(&rest);
                        self.flush_input();
                    }
                    match Attacher::new(conn, streams) {
                        Ok(a) => self.attachers.push(a),
                        Err(e) => eprintln!("berth-shim: attach: {e}"),
                    }
                    return;
                }
                Err(e) => format!("error {e}\n"),
            }
        } else {
            format!("error unknown request {line:?}\n")
        };
        let _ = conn.write_all(reply.as_bytes());
    }

    /// `resize H W`: the pty's window size (the kernel sends SIGWINCH to its foreground
    /// process group).
    fn resize(&self, size: &str) -> Result<(), String> {
        let Some(master) = &self.master else {
            return Err("the container has no TTY".into());
        };
        let mut it = size.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(rows)), Some(Ok(cols)), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("resize {size:?}: expected HEIGHT WIDTH (0-65535)"));
        };
        set_winsize(master, rows, cols)
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

    /// Removes the container's cgroup (every v1 hierarchy, or the v2 directory) and
    /// libcontainer's state directory, as `berth-driver delete` does for a stopped
    /// container (berth sets no hooks). False when a cgroup directory cannot be removed
    /// (still busy, or not empty): the state is then left for the driver.
    fn release_runtime_state(&self) -> bool {
        let Some(cg) = self.cfg.cgroup_path.as_deref() else {
            return false;
        };
        let rel = cg.strip_prefix("/").unwrap_or(cg);
        if rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return false;
        }
        let base = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![base.join(rel)];
        if let Ok(rd) = fs::read_dir(base) {
            for e in rd.flatten() {
                dirs.push(e.path().join(rel));
            }
        }
        for d in dirs {
            let mut attempt = 0;
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    // The container's last processes are being reaped.
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 5 => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return false,
                }
            }
        }
        let root = self.cfg.runtime_root(&self.dir);
        let state = root.join(&self.cfg.id);
        if let Err(e) = fs::remove_dir_all(&state) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("berth-shim: remove {}: {e}", state.display());
                return false;
            }
        }
        // The container's state root too (made again at the next create): under /run
        // nothing is left of a stopped container, and a container's `runtime/` of an
        // older berth goes, so that its next start uses /run.
        let _ = fs::remove_dir(&root);
        true
    }

    fn finish(mut self, status: Option<rustix::process::WaitStatus>) {
        // The published ports close with the container, before anyone learns of its exit.
        if let Some(p) = self.proxy.take() {
            p.stop();
        }
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
        // Read while the cgroup is there.
        let oom_killed = self.oom_killed();
        let rec = ExitRecord {
            version: SHIM_PROTOCOL_VERSION,
            exit_code,
            signal,
            oom_killed,
            started_at: self.started_at.clone(),
            finished_at: rfc3339_nano(SystemTime::now()),
        };
        let mut line = serde_json::to_vec(&rec).unwrap_or_default();
        if let Err(e) = write_exit_record(&self.dir, &line) {
            eprintln!("berth-shim: write {EXIT_FILE}: {e}");
        }
        if self.log.dropped > 0 {
            eprintln!(
                "berth-shim: {} log records dropped (write errors)",
                self.log.dropped
            );
        }
        let _ = fs::remove_file(SHIM_SOCKET);
        line.push(b'\n');
        for mut w in std::mem::take(&mut self.waiters) {
            let _ = w.write_all(&line);
        }
        // The exit is reported. A stopped container's runtime state is its cgroup
        // directories and libcontainer's state directory: removed now, without starting
        // a process, while the shim still holds its lock on the container's directory
        // (a new start waits for it); the driver does it when something is left
        // (processes still exiting: libcontainer retries).
        if !self.release_runtime_state() {
            Self::delete_container(&self.cfg, &self.dir);
        }
    }
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}
