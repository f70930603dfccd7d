//! Exec instances (`docker exec`): one more process in a running container.
//!
//! As in Docker, an exec is created first ([`Engine::exec_create`]: the container must be
//! running and not paused, `Engine::container_paused`), then started once ([`Engine::exec_start`]), and can be
//! inspected and resized. Instances live in memory: they are forgotten
//! [`EXEC_KEEP`] after their process exited, when their container is removed, and when
//! the daemon stops.
//!
//! Who runs the process: `exec_start` spawns `berth-driver exec RUNTIME_ROOT ID` as a
//! child of the daemon (from a blocking thread, never a tokio worker). The driver calls
//! libcontainer's tenant builder, which forks the process into the container's
//! namespaces and cgroup as a child of the driver; the driver waits for it. The
//! process's stdin, stdout and stderr are pipes to the daemon (the driver's fds 0, 1, 2),
//! or, with a TTY, a pseudo-terminal whose master the driver passes to the daemon. The
//! driver reports `started`, then `exited` with Docker's exit code, on a socket pair
//! (`berth_runtime::shim_protocol::ExecReply`); its own failures arrive there too, so
//! they are never confused with the process's exit status.
//!
//! If the daemon dies during an exec, the pipes and the pty master close: the process
//! sees EOF on stdin, gets `EPIPE`/`SIGPIPE` when it writes (`SIGHUP` with a TTY), and
//! the driver, now orphaned, still reaps it. The exec's record is gone with the
//! daemon's memory, as in Docker.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_runtime::shim_protocol::{ExecReply, ExecRequest, SHIM_PROTOCOL_VERSION};
use berth_types::ErrorKind;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tracing::{info, instrument, warn};

use crate::containers::{random_id, shim_binaries, ContainerRecord, ContainerState};
use crate::error::{EngineError, Result};
use crate::Engine;

/// How long an exec that exited stays inspectable (Docker's exec GC runs every 5 min).
pub const EXEC_KEEP: Duration = Duration::from_secs(300);

/// The most output [`Engine::exec_capture`] keeps.
pub const CAPTURE_LIMIT: usize = 4096;

/// What `docker exec` asks for (`POST /containers/{id}/exec`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// The command line; at least one element.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` added to the container's environment (`KEY` alone removes it).
    pub env: Vec<String>,
    /// Absolute; the container's working directory when `None`.
    pub working_dir: Option<String>,
    /// `--user`; the container's user when `None`.
    pub user: Option<String>,
    /// Every capability instead of the container's set.
    pub privileged: bool,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// Docker's `--detach-keys` (`ctrl-p,ctrl-q`); the default sequence when empty.
    /// They apply with a TTY and stdin, as in Docker.
    pub detach_keys: String,
}

/// An exec instance as `docker exec inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    /// `None` until the process ended (or failed to start).
    pub exit_code: Option<i32>,
    /// Host PID while running, else 0.
    pub pid: i32,
    /// The process ended: the instance can be forgotten.
    pub can_remove: bool,
}

/// The streams of a started exec, for the caller to copy. With a TTY, `stdout` (and
/// `stdin` when attached) are the pty master; `stderr` is `None`. Closing `stdin` closes
/// the process's stdin (not with a TTY: the terminal stays).
#[derive(Debug)]
pub struct ExecStreams {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    pub tty: bool,
    /// With a TTY: the key sequence that detaches the client from the exec (the process
    /// keeps running) when it appears in stdin; empty without a TTY.
    pub detach_keys: Vec<u8>,
}

/// Docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Parses Docker's detach keys (`term.ToBytes`): comma-separated single characters or
/// `ctrl-@`, `ctrl-a` … `ctrl-z`, `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_`.
/// Empty gives the default (ctrl-p, ctrl-q).
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>> {
    if keys.is_empty() {
        return Ok(DEFAULT_DETACH_KEYS.to_vec());
    }
    const CTRL: &[u8] = b"@abcdefghijklmnopqrstuvwxyz[\\]^_";
    keys.split(',')
        .map(|k| {
            if k.len() == 1 {
                return Ok(k.as_bytes()[0]);
            }
            k.strip_prefix("ctrl-")
                .filter(|c| c.len() == 1)
                .and_then(|c| CTRL.iter().position(|x| *x == c.as_bytes()[0]))
                .map(|code| code as u8)
                .ok_or_else(|| {
                    EngineError::invalid(format!(
                        "Invalid detach keys ({keys}) provided: unknown character: '{k}'"
                    ))
                })
        })
        .collect()
}

#[derive(Default)]
struct Run {
    started: bool,
    running: bool,
    pid: i32,
    exit_code: Option<i32>,
    finished: Option<Instant>,
    pidfd: Option<OwnedFd>,
    master: Option<Arc<OwnedFd>>,
    /// The terminal size asked for (rows, columns), applied once the pty exists.
    size: Option<(u16, u16)>,
}

struct Exec {
    id: String,
    container_id: String,
    config: ExecConfig,
    run: Mutex<Run>,
    changed: Condvar,
}

impl Exec {
    fn lock(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self) -> ExecInfo {
        let r = self.lock();
        ExecInfo {
            id: self.id.clone(),
            container_id: self.container_id.clone(),
            config: self.config.clone(),
            running: r.running,
            exit_code: r.exit_code,
            pid: if r.running { r.pid } else { 0 },
            can_remove: r.exit_code.is_some(),
        }
    }

    /// Records the end of the process and wakes waiters.
    fn finish(&self, exit_code: i32) {
        let mut r = self.lock();
        r.running = false;
        r.exit_code = Some(exit_code);
        r.finished = Some(Instant::now());
        r.pidfd = None;
        r.master = None;
        drop(r);
        self.changed.notify_all();
    }

    /// Blocks until the process ended (or `deadline`); the exit code if it did.
    fn wait(&self, deadline: Option<Instant>) -> Option<i32> {
        let mut r = self.lock();
        loop {
            if let Some(code) = r.exit_code {
                return Some(code);
            }
            match deadline {
                None => r = self.changed.wait(r).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    r = self
                        .changed
                        .wait_timeout(r, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

/// The exec instances of the engine.
#[derive(Default)]
pub(crate) struct ExecTable {
    map: Mutex<HashMap<String, Arc<Exec>>>,
}

impl ExecTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Exec>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets instances whose process ended more than [`EXEC_KEEP`] ago.
    fn prune(&self) {
        self.lock()
            .retain(|_, e| e.lock().finished.is_none_or(|t| t.elapsed() < EXEC_KEEP));
    }
}

/// Replies of `berth-driver exec`, with the fds passed along.
struct Replies {
    sock: UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Replies {
    /// The next reply; `None` at EOF (the driver is gone).
    fn next(&mut self) -> std::io::Result<Option<ExecReply>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return serde_json::from_slice(&line).map(Some).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                });
            }
            let mut chunk = [0u8; 4096];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut anc = RecvAncillaryBuffer::new(&mut space);
            let r = match rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut anc,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(r) => r,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for msg in anc.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = msg {
                    self.fds.extend(fds);
                }
            }
            if r.bytes == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..r.bytes]);
        }
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::internal(format!("{what}: {e}"))
}

/// Docker's event text: `exec_create: cmd args`.
fn event_action(verb: &str, cmd: &[String]) -> String {
    format!("{verb}: {}", cmd.join(" "))
}

fn set_winsize(master: &OwnedFd, (rows, cols): (u16, u16)) -> std::io::Result<()> {
    rustix::termios::tcsetwinsize(
        master,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(Into::into)
}

impl Engine {
    fn exec_instance(&self, id: &str) -> Result<Arc<Exec>> {
        self.execs()
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found(format!("No such exec instance: {id}")))
    }

    fn running_container(&self, name: &str) -> Result<ContainerRecord> {
        let rec = self.container(name)?;
        if !matches!(
            self.container_state(&rec.id)?,
            ContainerState::Running { .. }
        ) {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if self.container_paused(&rec) {
            return Err(EngineError::conflict(format!(
                "container {} is paused, unpause the container before exec",
                rec.id
            )));
        }
        Ok(rec)
    }

    /// `POST /containers/{id}/exec`: records an exec instance; returns its ID.
    #[instrument(skip_all, fields(container.id = %container))]
    pub fn exec_create(&self, container: &str, config: ExecConfig) -> Result<String> {
        if config.cmd.is_empty() {
            return Err(EngineError::invalid("No exec command specified"));
        }
        if let Some(w) = &config.working_dir {
            if !w.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
        }
        if config
            .cmd
            .iter()
            .chain(&config.env)
            .any(|s| s.contains('\0'))
        {
            return Err(EngineError::invalid(
                "exec command and environment must not contain NUL bytes",
            ));
        }
        let rec = self.running_container(container)?;
        self.execs().prune();
        let id = random_id()?;
        let action = event_action("exec_create", &config.cmd);
        self.execs().lock().insert(
            id.clone(),
            Arc::new(Exec {
                id: id.clone(),
                container_id: rec.id.clone(),
                config,
                run: Mutex::new(Run::default()),
                changed: Condvar::new(),
            }),
        );
        self.emit_container(&rec, action, &[("execID", id.clone())]);
        Ok(id)
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInfo> {
        Ok(self.exec_instance(id)?.info())
    }

    /// IDs of the container's execs from their create until their process ends
    /// (`ExecIDs` of `docker inspect`; Docker lists a created, not yet started exec too).
    pub fn container_exec_ids(&self, container_id: &str) -> Vec<String> {
        let execs: Vec<Arc<Exec>> = self.execs().lock().values().cloned().collect();
        execs
            .into_iter()
            .filter(|e| e.container_id == container_id && e.lock().exit_code.is_none())
            .map(|e| e.id.clone())
            .collect()
    }

    /// Forgets the execs of a removed container.
    pub(crate) fn forget_execs(&self, container_id: &str) {
        self.execs()
            .lock()
            .retain(|_, e| e.container_id != container_id);
    }

    /// `POST /exec/{id}/start`: starts the process. Returns its streams (none when
    /// `detach`). A process that cannot be started records Docker's exit code (126, for
    /// any cause) and returns an error with runc's message, e.g.
    /// `OCI runtime exec failed: exec failed: unable to start container process: exec:
    /// "nope": executable file not found in $PATH: unknown`.
    #[instrument(skip_all, fields(exec.id = %id))]
    pub fn exec_start(
        &self,
        id: &str,
        detach: bool,
        console_size: Option<(u16, u16)>,
    ) -> Result<Option<ExecStreams>> {
        let exec = self.exec_instance(id)?;
        {
            let mut r = exec.lock();
            if r.running {
                return Err(EngineError::conflict(format!(
                    "Error: Exec command {id} is already running"
                )));
            }
            if r.started {
                return Err(EngineError::conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            r.started = true;
            if r.size.is_none() {
                r.size = console_size;
            }
        }
        let started = self.spawn_exec(&exec, detach);
        if let Err(e) = &started {
            // Never started: nothing will report an exit, so record one.
            if exec.lock().exit_code.is_none() {
                exec.finish(EXIT_START_FAILED);
            }
            warn!(exec.id = %id, error = %e.message, "exec failed to start");
        }
        started
    }

    fn spawn_exec(&self, exec: &Arc<Exec>, detach: bool) -> Result<Option<ExecStreams>> {
        let rec = self.running_container(&exec.container_id)?;
        let cfg = &exec.config;
        let (_, driver) = shim_binaries()?;
        let runtime = self.runtime_root(&rec.id);
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| io_err("exec: socketpair", e))?;
        let piped = |on: bool| {
            if on && !detach && !cfg.tty {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let mut cmd = Command::new(&driver);
        cmd.arg("exec")
            .arg(&runtime)
            .arg(&rec.id)
            .stdin(piped(cfg.attach_stdin))
            .stdout(piped(cfg.attach_stdout))
            .stderr(piped(cfg.attach_stderr));
        let fd = theirs.as_raw_fd();
        // SAFETY: between fork and exec the closure only calls dup2 and fcntl, which are
        // async-signal-safe, on an fd that is open in the parent.
        unsafe {
            cmd.pre_exec(move || {
                if fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| io_err(&format!("exec: spawn {}", driver.display()), e))?;
        drop(theirs);
        let mut replies = Replies {
            sock: UnixStream::from(ours),
            buf: Vec::new(),
            fds: Vec::new(),
        };
        let req = ExecRequest {
            version: SHIM_PROTOCOL_VERSION,
            args: cfg.cmd.clone(),
            env: cfg.env.clone(),
            cwd: cfg.working_dir.clone(),
            user: cfg.user.clone(),
            privileged: cfg.privileged,
            tty: cfg.tty,
        };
        let mut line = serde_json::to_vec(&req).map_err(|e| io_err("exec request", e))?;
        line.push(b'\n');
        let first = replies.sock.write_all(&line).and_then(|()| replies.next());
        let pid = match first {
            Ok(Some(ExecReply::Started { pid })) => pid,
            Ok(Some(ExecReply::Failed {
                exit_code: _,
                message,
                runtime,
            })) => {
                let _ = child.wait();
                // Docker's daemon records 126 for every exec that cannot start (a missing
                // binary included: 127 is `docker run`'s, derived by the CLI).
                exec.finish(EXIT_START_FAILED);
                let message = if runtime {
                    format!(
                        "OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
                    )
                } else {
                    message
                };
                return Err(EngineError::new(ErrorKind::InvalidArgument, message));
            }
            other => {
                let _ = child.kill();
                let status = child.wait();
                return Err(EngineError::internal(format!(
                    "exec in container {}: berth-driver gave no start reply ({other:?}, exit {status:?})",
                    rec.id
                )));
            }
        };
        let master = replies.fds.pop().map(Arc::new);
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        {
            let mut r = exec.lock();
            r.running = true;
            r.pid = pid;
            r.pidfd = pidfd;
            if let (Some(m), Some(size)) = (&master, r.size) {
                let _ = set_winsize(m, size);
            }
            r.master = master.clone();
        }
        info!(container.id = %rec.id, exec.id = %exec.id, pid, "exec started");
        self.emit_container(
            &rec,
            event_action("exec_start", &cfg.cmd),
            &[("execID", exec.id.clone())],
        );
        let streams = if detach {
            None
        } else if let Some(m) = &master {
            let dup = |on: bool| -> Result<Option<File>> {
                if !on {
                    return Ok(None);
                }
                let fd = rustix::io::fcntl_dupfd_cloexec(m.as_ref(), 3)
                    .map_err(|e| io_err("exec: dup pty master", e))?;
                Ok(Some(File::from(fd)))
            };
            Some(ExecStreams {
                stdin: dup(cfg.attach_stdin)?,
                stdout: dup(true)?,
                stderr: None,
                tty: true,
                detach_keys: parse_detach_keys(&cfg.detach_keys)?,
            })
        } else {
            Some(ExecStreams {
                stdin: child.stdin.take().map(|s| File::from(OwnedFd::from(s))),
                stdout: child.stdout.take().map(|s| File::from(OwnedFd::from(s))),
                stderr: child.stderr.take().map(|s| File::from(OwnedFd::from(s))),
                tty: false,
                detach_keys: Vec::new(),
            })
        };
        drop(master);
        let engine = self.clone();
        let exec2 = Arc::clone(exec);
        std::thread::Builder::new()
            .name("exec-monitor".into())
            .spawn(move || engine.monitor_exec(rec, exec2, replies, child))
            .map_err(|e| io_err("exec: monitor thread", e))?;
        Ok(streams)
    }

    /// Waits for the driver's `exited` reply, reaps the driver, records the exit.
    fn monitor_exec(
        &self,
        rec: ContainerRecord,
        exec: Arc<Exec>,
        mut replies: Replies,
        mut child: Child,
    ) {
        let code = loop {
            match replies.next() {
                Ok(Some(ExecReply::Exited { exit_code })) => break exit_code,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    warn!(exec.id = %exec.id, "berth-driver ended without reporting the exit of the exec'd process");
                    break EXIT_START_FAILED;
                }
            }
        };
        let _ = child.wait();
        exec.finish(code);
        info!(container.id = %rec.id, exec.id = %exec.id, exit_code = code, "exec exited");
        self.emit_container(
            &rec,
            "exec_die",
            &[("execID", exec.id.clone()), ("exitCode", code.to_string())],
        );
    }

    /// Blocks until the exec's process ended; its exit code.
    pub fn exec_wait(&self, id: &str) -> Result<i32> {
        let exec = self.exec_instance(id)?;
        if !exec.lock().started {
            return Err(EngineError::conflict(format!(
                "exec {id} has not been started"
            )));
        }
        exec.wait(None)
            .ok_or_else(|| EngineError::internal(format!("exec {id}: no exit code")))
    }

    /// `POST /exec/{id}/resize?h=&w=`: sets the terminal size (kept and applied at start
    /// when the process does not run yet).
    pub fn exec_resize(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let exec = self.exec_instance(id)?;
        if !exec.config.tty {
            return Err(EngineError::conflict(format!(
                "exec {id} has no TTY: it cannot be resized"
            )));
        }
        let mut r = exec.lock();
        if r.exit_code.is_some() {
            return Err(EngineError::conflict(format!("exec {id} is not running")));
        }
        r.size = Some((rows, cols));
        if let Some(m) = &r.master {
            set_winsize(m, (rows, cols)).map_err(|e| io_err(&format!("exec {id}: resize"), e))?;
        }
        Ok(())
    }

    /// Runs `args` in the running container without a TTY, as a health check does:
    /// returns the exit code and the first [`CAPTURE_LIMIT`] bytes of stdout and stderr
    /// interleaved. A command that cannot be started is an error with the runtime's
    /// message (a health check records it as exit code -1, as Docker's does). When `timeout` passes, the process is killed
    /// and an `Unavailable` error says so.
    pub fn exec_capture(
        &self,
        container: &str,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let id = self.exec_create(
            container,
            ExecConfig {
                cmd: args,
                attach_stdout: true,
                attach_stderr: true,
                ..ExecConfig::default()
            },
        )?;
        let exec = self.exec_instance(&id)?;
        let streams = match self.exec_start(&id, false, None) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(EngineError::internal(format!("exec {id}: no streams"))),
            Err(e) => return Err(e),
        };
        let out = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let mut readers = 0;
        for f in [streams.stdout, streams.stderr].into_iter().flatten() {
            readers += 1;
            let (out, done_tx) = (Arc::clone(&out), done_tx.clone());
            std::thread::Builder::new()
                .name("exec-capture".into())
                .spawn(move || {
                    let mut f = f;
                    let mut buf = [0u8; 4096];
                    loop {
                        match f.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                                let room = CAPTURE_LIMIT.saturating_sub(o.len());
                                o.extend_from_slice(&buf[..n.min(room)]);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    let _ = done_tx.send(());
                })
                .map_err(|e| io_err("exec: capture thread", e))?;
        }
        drop(done_tx);
        let code = match exec.wait(Some(deadline)) {
            Some(code) => code,
            None => {
                if let Some(pidfd) = &exec.lock().pidfd {
                    let _ =
                        rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
                }
                // The driver reaps it and reports at once.
                let _ = exec.wait(Some(Instant::now() + Duration::from_secs(10)));
                return Err(EngineError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "exec in container {}: {:?} did not finish within {timeout:?}: killed",
                        exec.container_id, exec.config.cmd
                    ),
                ));
            }
        };
        // Output still in the pipes; a background child holding them open is not waited for.
        let drain_until = Instant::now() + Duration::from_secs(1);
        for _ in 0..readers {
            let left = drain_until.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        let out = out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok((code, out))
    }
}

/// The exit code berth records for an exec whose start failed for a reason of its own
/// (not the command's): Docker's "cannot invoke".
pub const EXIT_START_FAILED: i32 = 126;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker() {
        assert_eq!(parse_detach_keys("").expect("parses"), vec![0x10, 0x11]);
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").expect("parses"),
            vec![0x10, 0x11]
        );
        assert_eq!(
            parse_detach_keys("ctrl-@,a,ctrl-_").expect("parses"),
            vec![0, b'a', 31]
        );
        assert_eq!(parse_detach_keys("ctrl-\\").expect("parses"), vec![28]);
        let e = parse_detach_keys("ctrl-pp").expect_err("refused");
        assert!(
            e.message.contains("unknown character: 'ctrl-pp'"),
            "{}",
            e.message
        );
    }
}
