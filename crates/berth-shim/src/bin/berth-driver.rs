//! `berth-driver`: the libcontainer side of the shim, a short-lived helper.
//!
//! ```text
//! berth-driver create RUNTIME_ROOT ID BUNDLE [--stdin] [--console-socket PATH]
//! berth-driver delete RUNTIME_ROOT ID
//! berth-driver kill RUNTIME_ROOT ID SIGNO
//! berth-driver state RUNTIME_ROOT ID
//! berth-driver exec RUNTIME_ROOT ID            # fd 3: the exec control socket
//! ```
//!
//! `exec` runs one process in the running container (`docker exec`); the protocol on fd 3
//! (one [`ExecRequest`] line in, [`ExecReply`] lines out) is in
//! `berth_runtime::shim_protocol`. The process inherits fds 0, 1 and 2, or gets a new
//! pseudo-terminal whose master is passed back with the `started` reply. The driver waits
//! for the process and reports its exit; it exits 0 once it has replied, whatever the
//! process did.
//!
//! `create` creates and starts the container and prints `pid N`; the container's init is
//! a child of this process until it exits, then it is reparented to the shim (a child
//! subreaper), which reaps it. Keeping libcontainer out of the long-lived shim process
//! keeps the shim's memory small (see `docs/ARCHITECTURE.md`, "The shim").
//!
//! Stdio of `create`: fds 3 and 4 are the container's stdout and stderr; with `--stdin`
//! fd 5 is its stdin, else its stdin is `/dev/null`. With `--console-socket PATH` (the
//! spec has `terminal: true`) libcontainer sends the pty master to that socket and fds 3
//! and 4 are not used.
//! Errors go to stderr, one line, with exit status 1.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_runtime::driver::{Driver, Stdio};
use berth_runtime::shim_protocol::{ExecReply, ExecRequest, SHIM_PROTOCOL_VERSION};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::WaitOptions;

fn run(args: &[String]) -> Result<String, String> {
    let usage = || {
        "usage: berth-driver create|delete|kill|state RUNTIME_ROOT ID [BUNDLE [--stdin] [--console-socket PATH]|SIGNO]".to_string()
    };
    let (verb, root, id) = match args {
        [verb, root, id, ..] => (verb.as_str(), Path::new(root), id.as_str()),
        _ => return Err(usage()),
    };
    let driver = Driver::new(root);
    match (verb, args.get(3)) {
        ("create", Some(bundle)) => {
            let (mut stdin_fd, mut console) = (false, None);
            let mut rest = args[4..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--stdin" => stdin_fd = true,
                    "--console-socket" => {
                        console = Some(Path::new(rest.next().ok_or_else(usage)?));
                    }
                    _ => return Err(usage()),
                }
            }
            // SAFETY: the shim passes the write ends of the container's stdout and stderr
            // pipes as fds 3 and 4 (and with --stdin the read end of its stdin pipe as fd
            // 5); nothing else owns them in this process.
            let (stdout, stderr) = unsafe { (OwnedFd::from_raw_fd(3), OwnedFd::from_raw_fd(4)) };
            let stdin = if stdin_fd {
                // SAFETY: as above, fd 5 is the shim's, handed to this process alone.
                unsafe { OwnedFd::from_raw_fd(5) }
            } else {
                // Never the driver's own stdin.
                std::fs::File::open("/dev/null")
                    .map_err(|e| format!("/dev/null: {e}"))?
                    .into()
            };
            let causes = record_errors();
            let created = driver.create(
                id,
                Path::new(bundle),
                Stdio {
                    stdin: Some(stdin),
                    stdout,
                    stderr,
                },
                console,
            );
            let why = causes.map(read_errors).unwrap_or_default();
            let pid = created.map_err(|e| with_causes(&e.to_string(), &why))?;
            if let Err(e) = driver.start(id) {
                let _ = driver.delete(id, true);
                return Err(e.to_string());
            }
            Ok(format!("pid {pid}"))
        }
        ("delete", None) => driver
            .delete(id, true)
            .map(|()| "ok".to_string())
            .map_err(|e| e.to_string()),
        ("kill", Some(sig)) => {
            let sig: i32 = sig
                .parse()
                .map_err(|_| format!("signal {sig:?}: not a number"))?;
            driver
                .kill(id, sig, false)
                .map(|()| "ok".to_string())
                .map_err(|e| e.to_string())
        }
        ("state", None) => driver
            .state(id)
            .map(|s| format!("{} {}", s.status, s.pid.unwrap_or(0)))
            .map_err(|e| e.to_string()),
        _ => Err(usage()),
    }
}

/// Sends one reply line on the exec control socket, with `fd` attached when given.
fn send_reply(
    sock: &UnixStream,
    reply: &ExecReply,
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), String> {
    let mut line = serde_json::to_vec(reply).map_err(|e| format!("reply: {e}"))?;
    line.push(b'\n');
    let fds;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if let Some(fd) = fd {
        fds = [fd];
        anc.push(SendAncillaryMessage::ScmRights(&fds));
    }
    let mut sent = 0;
    while sent < line.len() {
        let n = if sent == 0 {
            sendmsg(sock, &[IoSlice::new(&line)], &mut anc, SendFlags::NOSIGNAL)
        } else {
            rustix::net::send(sock, &line[sent..], SendFlags::NOSIGNAL)
        }
        .map_err(|e| format!("send reply: {e}"))?;
        sent += n;
    }
    Ok(())
}

/// Receives the pty master libcontainer sends to the console socket.
fn receive_master(listener: &UnixListener) -> Result<OwnedFd, String> {
    let (conn, _) = listener
        .accept()
        .map_err(|e| format!("console socket: accept: {e}"))?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 256];
    recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("console socket: receive: {e}"))?;
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err("console socket: no pty master received".into())
}

/// `berth-driver exec`: returns once the outcome is reported on fd 3; its own errors
/// are reported there too, as `failed` replies.
fn exec(root: &Path, id: &str) -> Result<(), String> {
    // SAFETY: the engine passes one end of a unix stream socket pair as fd 3 and nothing
    // else in this process owns it.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(3) });
    exec_on(&sock, root, id).or_else(|e| {
        send_reply(
            &sock,
            &ExecReply::Failed {
                exit_code: berth_runtime::driver_exec::EXIT_CANNOT_INVOKE,
                message: e.clone(),
                runtime: true,
            },
            None,
        )
        .map_err(|_| e)
    })
}

fn exec_on(sock: &UnixStream, root: &Path, id: &str) -> Result<(), String> {
    let mut line = String::new();
    BufReader::new(sock)
        .read_line(&mut line)
        .map_err(|e| format!("exec request: {e}"))?;
    let req: ExecRequest = serde_json::from_str(&line).map_err(|e| format!("exec request: {e}"))?;
    if req.version != SHIM_PROTOCOL_VERSION {
        return Err(format!("exec request: unknown version {}", req.version));
    }
    let root = std::fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let dir = root.join(id);
    // The console socket, bound through /proc/self/fd so that a long state root never
    // hits the 108-byte limit of socket paths; libcontainer reaches it through a link.
    let mut console: Option<(UnixListener, PathBuf)> = None;
    if req.tty {
        let d = std::fs::File::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = format!(
            "berth-console-{}.sock",
            rustix::process::getpid().as_raw_nonzero()
        );
        let _ = std::fs::remove_file(dir.join(&name));
        let l = UnixListener::bind(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()))
            .map_err(|e| format!("console socket: {e}"))?;
        console = Some((l, dir.join(name)));
    }
    let started = berth_runtime::driver_exec::exec(
        &root,
        id,
        &req,
        console.as_ref().map(|(_, p)| p.as_path()),
    );
    let master = match (&started, &console) {
        (Ok(_), Some((l, _))) => Some(receive_master(l)),
        _ => None,
    };
    if let Some((_, p)) = &console {
        let _ = std::fs::remove_file(p);
    }
    let pid = match (started, master) {
        (Err(e), _) => {
            return send_reply(
                sock,
                &ExecReply::Failed {
                    exit_code: e.exit_code,
                    message: e.message,
                    runtime: e.runtime,
                },
                None,
            )
        }
        (Ok(pid), Some(Err(e))) => {
            // The process runs without a terminal anyone can reach: end it.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).ok_or("bad pid")?,
                rustix::process::Signal::KILL,
            );
            let _ =
                rustix::process::waitpid(rustix::process::Pid::from_raw(pid), WaitOptions::empty());
            return send_reply(
                sock,
                &ExecReply::Failed {
                    exit_code: berth_runtime::driver_exec::EXIT_CANNOT_INVOKE,
                    message: e,
                    runtime: true,
                },
                None,
            );
        }
        (Ok(pid), master) => {
            // Only the process keeps its stdio: the engine sees EOF when it is done.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(&null);
            }
            let master = master.and_then(Result::ok);
            // The engine may be gone (daemon killed): still wait for and reap the process.
            let _ = send_reply(
                sock,
                &ExecReply::Started { pid },
                master.as_ref().map(|m| m.as_fd()),
            );
            drop(master);
            pid
        }
    };
    let p = rustix::process::Pid::from_raw(pid).ok_or("bad pid")?;
    let status = loop {
        match rustix::process::waitpid(Some(p), WaitOptions::empty()) {
            Ok(Some((_, st))) => break Some(st),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break None,
        }
    };
    let exit_code = match status {
        Some(st) => st
            .exit_status()
            .or_else(|| st.terminating_signal().map(|s| 128 + s))
            .unwrap_or(255),
        None => 255,
    };
    let _ = send_reply(sock, &ExecReply::Exited { exit_code }, None);
    Ok(())
}

/// Records libcontainer's error events during a create, from this process and the ones
/// it forks before the container's command runs (they share the open file): the only
/// place it says which mount or which syscall failed. An anonymous memory file (closed
/// on exec), so a create writes nothing to disk for it. Returns the file to read them
/// back from ([`read_errors`]).
fn record_errors() -> Option<std::fs::File> {
    let fd =
        rustix::fs::memfd_create("berth-driver-errors", rustix::fs::MemfdFlags::CLOEXEC).ok()?;
    let file = std::fs::File::from(fd);
    let writer = file.try_clone().ok()?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(writer))
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::ERROR)
        .try_init();
    Some(file)
}

/// What [`record_errors`] recorded.
fn read_errors(mut file: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut s = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut s));
    s
}

/// The one-line error of a failed create, with the innermost causes libcontainer logged
/// (it logs them innermost first; the outer ones repeat the error itself).
fn with_causes(error: &str, logged: &str) -> String {
    const CAUSES: usize = 2;
    let mut causes: Vec<&str> = Vec::new();
    for line in logged.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if causes.len() < CAUSES && !causes.contains(&line) && !error.contains(line) {
            causes.push(line);
        }
    }
    if causes.is_empty() {
        error.to_string()
    } else {
        format!("{error} (runtime: {})", causes.join("; "))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [verb, root, id] = args.as_slice() {
        if verb == "exec" {
            return match exec(Path::new(root), id) {
                Ok(()) => ExitCode::SUCCESS,
                // fd 3 is unusable: the engine sees EOF without a reply and says so.
                Err(_) => ExitCode::FAILURE,
            };
        }
    }
    // Rust's runtime ignores SIGPIPE, and the container's init (forked from here by
    // libcontainer) would keep that across execve: `yes | head` would never end. Give
    // it the default disposition, as Docker's containers have.
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-driver: {e}");
            ExitCode::FAILURE
        }
    }
}
