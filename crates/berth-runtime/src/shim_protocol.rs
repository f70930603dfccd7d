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
//!
//! Control socket: a unix stream socket; one request line per connection, one reply:
//! - `kill SIGNO\n` → `ok\n` or `error MESSAGE\n` (pidfd_send_signal to the init);
//! - `state\n` → one JSON line, [`ShimState`];
//! - `wait\n` → nothing until the container exits, then one JSON line, [`ExitRecord`]
//!   (a client that sees EOF instead reads `exit.json`).
//!
//! Every file carries a `version`; readers refuse versions they do not know.

use std::path::PathBuf;

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
/// libcontainer's state root for the container.
pub const RUNTIME_DIR: &str = "runtime";

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
    /// The container's cgroup path as given to the runtime (`/berth/<id>`), to read the
    /// OOM kill count from.
    pub cgroup_path: Option<PathBuf>,
    /// The driver binary (`berth-driver`): absolute path.
    pub driver: PathBuf,
}

impl ShimConfig {
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
    /// `running` or `exited`.
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
