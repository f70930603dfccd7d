//! The files and the control socket through which the engine and a container's shim
//! (`berth-shim`) talk. Both sides use these types, so the formats live in one place.
//!
//! In the container's directory `STATE/containers/<id>/`:
//!
//! | file | written by | content |
//! | --- | --- | --- |
//! | `shim.json` | engine, before spawning the shim | [`ShimConfig`] |
//! | `bundle/config.json` | engine | the OCI runtime spec |
//! | `shim.state.json` | shim, once the container runs | [`ShimState`] |
//! | `shim.sock` | shim | the control socket (below) |
//! | `<id>-json.log` (+ `.1`, `.2`, …) | shim | Docker's json-file log, rotated |
//! | `exit.json` | shim, atomically, after reaping init | [`ExitRecord`] |
//! | `shim.log` | shim | the shim's own errors |
//! | `console.sock` | shim, with a TTY, while the driver creates the container | libcontainer sends the pty master here (SCM_RIGHTS); removed once received |
//!
//! Published ports the kernel cannot translate (`[::1]`, an IPv6 address of the host for
//! a container without IPv6) are served by the userland proxy: the engine binds their
//! sockets ([`ShimConfig::proxy`] describes them). Clients attached before the start
//! get a unix socket pair each ([`ShimConfig::attach`]). When there are any of either,
//! the engine spawns the shim with one end of a unix socket pair as its stdin and sends
//! the proxy's sockets, then the attached clients' ends, over the other end, in that
//! order, in one `SCM_RIGHTS` message (one byte of data); the shim receives them first
//! thing. It runs `berth-proxy PARENT_PID PROTO LISTEN TARGET ...`
//! with the sockets as its fds 3, 4, … (in that order), as its child with a
//! parent-death signal, and kills it when the container exits, before it writes
//! `exit.json`.
//!
//! The shim's stdout, read by the engine to its end: `ok PID` once the container runs,
//! or `error MESSAGE`.
//!
//! Control socket: a unix stream socket; one request line per connection, one reply:
//! - `kill SIGNO\n` → `ok\n` or `error MESSAGE\n` (pidfd_send_signal to the init);
//! - `state\n` → one JSON line, [`ShimState`];
//! - `wait\n` → nothing until the container exits, then one JSON line, [`ExitRecord`]
//!   (a client that sees EOF instead reads `exit.json`);
//! - `resize HEIGHT WIDTH\n` → `ok\n` or `error MESSAGE\n` (`TIOCSWINSZ` on the pty
//!   master; an error without a TTY);
//! - `attach stdin=0|1 stdout=0|1 stderr=0|1\n` → `ok\n`, then the connection is a
//!   stream until the container exits:
//!   - shim → client: the output of the selected streams as it arrives. Without a TTY
//!     each chunk is framed as Docker's multiplexed stream (8-byte header: stream 1 or
//!     2, three zero bytes, big-endian u32 length); with a TTY the raw terminal bytes.
//!     EOF once the container exited and its output is drained. A client that does not
//!     keep up (more than [`ATTACH_BUFFER_MAX`] bytes pending) is disconnected: the
//!     container and the log never wait for an attached client.
//!   - client → shim (with `stdin=1`): bytes for the container's stdin (the pipe, or the
//!     pty master with a TTY). When the client closes its write side: with
//!     [`ShimConfig::stdin_once`] and no TTY the container's stdin is closed; otherwise
//!     the attach ends (Docker's semantics). The input of `stdin=0` clients is ignored.
//!
//! Every file carries a `version`; readers refuse versions they do not know.
//!
//! The shim holds an exclusive `flock` on the container's directory from the moment it
//! is the daemon process to its own exit (the kernel drops it then, whatever ended the
//! shim). At the container's exit the shim writes `exit.json` and answers its `wait`
//! and `attach` clients first, then removes the container's cgroups and libcontainer's
//! state: the exit is reported without waiting for that. Whatever needs them gone (a
//! new start of the container, the engine's removal of what is left, the daemon's
//! shutdown) waits for the lock first ([`wait_for_shim_exit`]).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};

use serde::{Deserialize, Serialize};

/// Version of every file and reply in this module.
pub const SHIM_PROTOCOL_VERSION: u32 = 1;
pub const SHIM_CONFIG_FILE: &str = "shim.json";
pub const SHIM_STATE_FILE: &str = "shim.state.json";
pub const SHIM_SOCKET: &str = "shim.sock";
pub const EXIT_FILE: &str = "exit.json";
pub const SHIM_LOG_FILE: &str = "shim.log";
/// Directory of the OCI bundle (its `config.json`).
pub const BUNDLE_DIR: &str = "bundle";
/// libcontainer's state root for the container, in its directory: where a berth before
/// [`RUNTIME_BASE`] kept it (still used for a container that has it).
pub const RUNTIME_DIR: &str = "runtime";
/// Where libcontainer's state of the containers is kept: `/run` (a tmpfs, as runc's
/// `/run/runc` and containerd's `/run/containerd`), one directory per state root
/// (`RUNTIME_BASE/<key of the state root>/<id>/`, see the engine). It is the state of
/// running processes, rewritten at each start and exit: on the state root's disk each
/// new file, rewrite and unlink of it was disk work on the start and exit path (on a
/// filesystem mounted with `discard`, a synchronous trim per freed block).
pub const RUNTIME_BASE: &str = "/run/berth/runtime";
/// The console socket of a TTY container (in the container's directory).
pub const CONSOLE_SOCKET: &str = "console.sock";
/// Output bytes an attached client may have pending before it is disconnected.
pub const ATTACH_BUFFER_MAX: usize = 1 << 20;

/// How the shim runs one container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    pub version: u32,
    /// The container ID (64 hex digits).
    pub id: String,
    /// The json-file log: rotate when the current file would exceed this many bytes
    /// (0: never rotate).
    pub log_max_size: u64,
    /// Files kept in total, the current one included (at least 1).
    pub log_max_file: u32,
    /// The `none` log driver: the output is not kept (no log file).
    #[serde(default)]
    pub log_none: bool,
    /// The container's cgroup path as given to the runtime (`/berth/<id>`), to read the
    /// OOM kill count from.
    pub cgroup_path: Option<PathBuf>,
    /// The driver binary (`berth-driver`): absolute path.
    pub driver: PathBuf,
    /// The spec has `terminal: true`: the shim receives the pty master through
    /// `console.sock` and uses it for output (logged as stdout) and input.
    #[serde(default)]
    pub tty: bool,
    /// The container's stdin is a pipe fed by attached clients (else `/dev/null`).
    #[serde(default)]
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client that sends stdin
    /// closes its input (Docker's `StdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// The pty's initial size, `[height, width]` (Docker's `ConsoleSize`), set before the
    /// process starts.
    #[serde(default)]
    pub console_size: Option<[u16; 2]>,
    /// Ports published through the userland proxy (`berth-proxy`, next to the driver):
    /// the engine binds each listening socket at start and sends it to the shim over its
    /// stdin (see the module's documentation); the shim runs the proxy once the
    /// container exists and ends it when the container exits. Empty: no proxy process
    /// (and stdin is `/dev/null`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<ProxyPort>,
    /// libcontainer's state root for this container (under [`RUNTIME_BASE`]); absent:
    /// [`RUNTIME_DIR`] in the container's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<PathBuf>,
    /// Clients attached before the start (`docker run`, `docker start -a`): the streams
    /// each wants, as in an `attach` request (`stdin=0|1 stdout=0|1 stderr=0|1`). The
    /// engine sends one end of a unix socket pair per entry on the shim's stdin, after
    /// the userland proxy's sockets (see the module's documentation); the shim serves
    /// each as an attached client before it reads any of the container's output, so
    /// none is lost to them, without holding the start back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach: Vec<String>,
}

/// One port the userland proxy serves: connections (TCP) or datagrams (UDP) arriving on
/// its socket (sent by the engine), bound to `listen`, are relayed to `target` (the
/// container's address and port).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProxyPort {
    /// `tcp` or `udp`.
    pub proto: String,
    /// The host address and port the socket is bound to (for messages).
    pub listen: std::net::SocketAddr,
    /// Where the traffic goes.
    pub target: std::net::SocketAddr,
}

/// The userland proxy's binary, next to the driver.
pub const PROXY_BINARY: &str = "berth-proxy";
/// Connections (TCP) and flows (UDP) one proxy process serves at once; at the limit a
/// TCP listener is not read (the kernel's backlog holds new connections until one ends)
/// and datagrams of new UDP clients are dropped (known clients go on).
pub const PROXY_MAX_CONNECTIONS: usize = 1024;
/// Ports one container publishes through the proxy at most (the daemon holds their
/// sockets during the start, and runs with the system's usual 1024 open files): an
/// explicit binding beyond it is refused by name, the IPv6 twins of a port on every
/// address beyond it are not made (a warning in the daemon's log), as for a large
/// `-p 8000-8999:8000-8999`.
pub const PROXY_MAX_PORTS: usize = 64;
/// UDP: a client address's flow (its socket towards the container) is closed after this
/// long without a datagram either way (docker-proxy's 90 s).
pub const PROXY_UDP_IDLE_SECS: u64 = 90;

impl ShimConfig {
    /// libcontainer's state root for the container whose directory is `dir`.
    pub fn runtime_root(&self, dir: &std::path::Path) -> PathBuf {
        self.runtime_root
            .clone()
            .unwrap_or_else(|| dir.join(RUNTIME_DIR))
    }

    /// Docker's json-file defaults as berth applies them: 10 MB × 3 files.
    pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
    pub const DEFAULT_LOG_MAX_FILE: u32 = 3;
}

/// What the shim records once the container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShimState {
    pub version: u32,
    /// PID of the shim.
    pub shim_pid: i32,
    /// PID of the container's init, in the host PID namespace.
    pub pid: i32,
    /// RFC 3339 with nanoseconds.
    pub started_at: String,
    /// `running` (the exit is recorded in `exit.json`; a shim before it also wrote
    /// `exited` here).
    pub status: String,
}

/// How the container's init ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub version: u32,
    /// Docker's exit code: the exit status, or 128 + the signal number.
    pub exit_code: i32,
    /// The signal that killed init, if one did.
    pub signal: Option<i32>,
    /// The cgroup reported an OOM kill (best effort).
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
}

/// Exec: `berth-driver exec RUNTIME_ROOT ID` runs one process in a running container
/// (`docker exec`). The engine passes a unix stream socket as the driver's fd 3 and
/// writes one JSON line, [`ExecRequest`]; the driver answers with JSON lines,
/// [`ExecReply`]: `started` (with the pty master attached by `SCM_RIGHTS` when `tty`),
/// then `exited`; or `failed` alone when the process could not be started. The
/// process's stdin, stdout and stderr are the driver's fds 0, 1 and 2 (not used with a
/// TTY). The driver's own errors are `failed` replies, never its exit status, so they
/// cannot be mistaken for the process's exit code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub version: u32,
    /// The command line (at least one element).
    pub args: Vec<String>,
    /// `KEY=VALUE` added to (or replacing in) the container's environment; `KEY` alone
    /// removes the variable.
    pub env: Vec<String>,
    /// Absolute working directory; the container's when `None`.
    pub cwd: Option<String>,
    /// `uid`, `uid:gid`, `name`, `name:group` resolved in the container's rootfs; the
    /// container's user when `None`.
    pub user: Option<String>,
    /// Every capability instead of the container's set.
    pub privileged: bool,
    /// Run the process on a new pseudo-terminal.
    pub tty: bool,
}

/// One reply line of `berth-driver exec`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecReply {
    /// The process runs; PID in the host's PID namespace.
    Started { pid: i32 },
    /// The process exited: Docker's exit code (status, or 128 + signal).
    Exited { exit_code: i32 },
    /// The process could not be started. `exit_code` is Docker's for that failure (127:
    /// executable not found, 126: cannot be invoked). `runtime`: the runtime failed to
    /// start it (Docker prefixes those messages with `OCI runtime exec failed`), as
    /// opposed to a request found wrong before (an unknown user).
    Failed {
        exit_code: i32,
        message: String,
        #[serde(default = "yes")]
        runtime: bool,
    },
}

fn yes() -> bool {
    true
}

/// Takes the shim's lock on the container's directory `dir` (see the module's doc): the
/// returned fd holds it (close-on-exec: the shim's children do not). `None` when another
/// process holds it: a shim still supervises the container.
pub fn lock_container_dir(dir: &Path) -> std::io::Result<Option<OwnedFd>> {
    let fd = open_container_dir(dir)?;
    Ok(try_lock(&fd)?.then_some(fd))
}

/// The container's directory, opened to take or wait for the shim's lock on it (the lock
/// is the directory's, wherever it is renamed to).
pub fn open_container_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Takes the lock through `fd` if no one else holds it (then `fd` holds it until it is
/// closed). False when a shim holds it.
pub fn try_lock(fd: &OwnedFd) -> std::io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits until no shim holds the lock of the directory `fd` is open on (the shim exited,
/// its cleanup done), at most `timeout`; `fd` then holds it until it is closed. True when
/// none holds it.
pub fn wait_unlocked(fd: &OwnedFd, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    let mut pause = Duration::from_micros(250);
    loop {
        match try_lock(fd) {
            Ok(true) => return true,
            Ok(false) if Instant::now() < until => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            _ => return false,
        }
    }
}

/// [`wait_unlocked`] on the container's directory `dir`, released at once. True when no
/// shim holds it any more, or the directory is gone.
pub fn wait_for_shim_exit(dir: &Path, timeout: Duration) -> bool {
    match open_container_dir(dir) {
        Ok(fd) => wait_unlocked(&fd, timeout),
        Err(_) => true,
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    /// Whether a shim holds the container directory's lock now (a missing directory: no).
    fn shim_holds(dir: &Path) -> bool {
        matches!(lock_container_dir(dir), Ok(None))
    }

    #[test]
    fn the_shims_lock_is_waited_for_until_its_holder_closes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!shim_holds(dir.path()));
        let held = lock_container_dir(dir.path()).expect("lock").expect("free");
        assert!(shim_holds(dir.path()));
        assert!(lock_container_dir(dir.path()).expect("probe").is_none());
        assert!(!wait_for_shim_exit(dir.path(), Duration::from_millis(20)));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        assert!(wait_for_shim_exit(dir.path(), Duration::from_secs(10)));
        t.join().expect("join");
        assert!(!shim_holds(dir.path()));
        // No directory, no shim.
        assert!(wait_for_shim_exit(&dir.path().join("gone"), Duration::ZERO));
        assert!(!shim_holds(&dir.path().join("gone")));
    }
}
