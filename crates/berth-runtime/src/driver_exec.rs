//! `docker exec`: one more process in a running container, through libcontainer's tenant
//! builder (`ContainerBuilder::as_tenant()`): it joins the namespaces and the cgroup of
//! the container's init.
//!
//! The process starts as a copy of the container's own (`process` of the bundle's
//! `config.json`, as Docker and runc do): same user, capabilities, no_new_privs, rlimits,
//! AppArmor profile, environment; then the exec's command line, environment additions,
//! working directory, TTY, user (resolved against the container's rootfs, like
//! `--user` at create) and, for `--privileged`, every capability.
//!
//! Two gaps of libcontainer 0.7's tenant builder are closed here:
//! - it drops `linux.seccomp` from the spec it builds for the tenant, so an exec'd
//!   process would run without the container's seccomp filter. [`ExecExecutor`] loads the
//!   container's filter itself, right before `execve` (after the capabilities are
//!   dropped, which is allowed because the container runs with no_new_privs; a
//!   container without no_new_privs and with a filter can only be exec'd into with
//!   `--privileged`, else the exec fails with a clear error);
//! - its errors do not say why the command could not run. [`ExecExecutor`] looks the
//!   executable up as runc does (Go's `exec.LookPath`) and writes Docker's reason and exit
//!   code (127 not found, 126 cannot be invoked) to a pipe the caller reads.
//!
//! Like [`crate::driver`], call this only from a single-threaded helper process
//! (`berth-driver`): libcontainer forks, and the exec'd process is the caller's child.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{LinuxSeccomp, Spec};

use crate::shim_protocol::ExecRequest;
use crate::user::{self, UserError};

/// Docker's `PATH` when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's exit code when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Docker's exit code when the command cannot be invoked.
pub const EXIT_CANNOT_INVOKE: i32 = 126;

/// Why an exec did not start: Docker's exit code for the failure and the reason, as
/// runc words it (`exec: "nope": executable file not found in $PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecStartError {
    pub exit_code: i32,
    pub message: String,
    /// The runtime failed to start the process (not a request found wrong before it,
    /// such as an unknown user).
    pub runtime: bool,
}

impl ExecStartError {
    fn new(exit_code: i32, message: impl Into<String>) -> ExecStartError {
        ExecStartError {
            exit_code,
            message: message.into(),
            runtime: true,
        }
    }

    fn request(exit_code: i32, message: impl Into<String>) -> ExecStartError {
        ExecStartError {
            runtime: false,
            ..ExecStartError::new(exit_code, message)
        }
    }
}

/// Merges `KEY=VALUE` overrides into `base` (Docker's `ReplaceOrAppendEnvValues`): a key
/// that exists is replaced in place, a new one appended, `KEY` alone removes it.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map(|(k, _)| k).unwrap_or(e).to_string();
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let k = key(o);
        let pos = out.iter().position(|e| key(e) == k);
        match (o.contains('='), pos) {
            (true, Some(i)) => out[i] = o.clone(),
            (true, None) => out.push(o.clone()),
            (false, Some(i)) => {
                out.remove(i);
            }
            (false, None) => {}
        }
    }
    out
}

/// Builds the exec'd process from the container's spec and the request.
fn exec_process(
    spec: &Spec,
    rootfs: &Path,
    req: &ExecRequest,
) -> Result<oci_spec::runtime::Process, ExecStartError> {
    let mut p = spec.process().clone().ok_or_else(|| {
        ExecStartError::new(EXIT_CANNOT_INVOKE, "the container's spec has no process")
    })?;
    if req.args.is_empty() {
        return Err(ExecStartError::new(
            EXIT_CANNOT_INVOKE,
            "no exec command specified",
        ));
    }
    p.set_args(Some(req.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    p.set_env(Some(merge_env(&env, &req.env)));
    if let Some(cwd) = &req.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    p.set_terminal(Some(req.tty));
    p.set_console_size(None);
    if let Some(u) = &req.user {
        let r = user::resolve(rootfs, u, &[]).map_err(|e| match e {
            UserError::UnknownUser { .. } => ExecStartError::request(
                EXIT_CANNOT_INVOKE,
                format!("unable to find user {u}: no matching entries in passwd file"),
            ),
            UserError::UnknownGroup { group, .. } => ExecStartError::request(
                EXIT_CANNOT_INVOKE,
                format!("unable to find group {group}: no matching entries in group file"),
            ),
            other => ExecStartError::request(EXIT_CANNOT_INVOKE, other.to_string()),
        })?;
        let mut user = p.user().clone();
        user.set_uid(r.uid);
        user.set_gid(r.gid);
        user.set_additional_gids(Some(r.additional_gids).filter(|g| !g.is_empty()));
        user.set_username(r.username);
        p.set_user(user);
    }
    if req.privileged {
        // Every capability this process holds: a capability outside the runtime's own
        // bounding set cannot be granted (raising it fails with EPERM).
        let held = bounding_mask();
        let all: oci_spec::runtime::Capabilities = crate::caps::ALL_CAPABILITIES
            .iter()
            .filter(|c| held & (1u64 << c.1) != 0)
            .map(|c| c.2)
            .collect();
        let mut caps = p.capabilities().clone().unwrap_or_default();
        caps.set_bounding(Some(all.clone()))
            .set_effective(Some(all.clone()))
            .set_permitted(Some(all))
            .set_inheritable(None)
            .set_ambient(None);
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// The calling process's capability bounding set (`CapBnd` of /proc/self/status); all
/// bits when it cannot be read.
fn bounding_mask() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Checks that `p` is an executable file (Go's `findExecutable`, with access(2) for the
/// current user).
fn check_executable(p: &Path) -> Result<(), (i32, &'static str)> {
    let meta = fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "no such file or directory"),
        std::io::ErrorKind::PermissionDenied => (EXIT_CANNOT_INVOKE, "permission denied"),
        _ => (EXIT_CANNOT_INVOKE, "cannot be accessed"),
    })?;
    if meta.is_dir() {
        return Err((EXIT_CANNOT_INVOKE, "is a directory"));
    }
    if meta.permissions().mode() & 0o111 == 0
        || rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_err()
    {
        return Err((EXIT_CANNOT_INVOKE, "permission denied"));
    }
    Ok(())
}

/// runc's lookup of the command (Go's `exec.LookPath`): a name with a `/` is used as
/// is, any other is searched in `path_var`.
pub fn look_path(name: &str, path_var: &str) -> Result<PathBuf, ExecStartError> {
    if name.contains('/') {
        return match check_executable(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err((code, "no such file or directory")) => Err(ExecStartError::new(
                code,
                format!("exec: \"{name}\": stat {name}: no such file or directory"),
            )),
            Err((code, why)) => Err(ExecStartError::new(
                code,
                format!("exec: \"{name}\": {why}"),
            )),
        };
    }
    if !name.is_empty() {
        for dir in path_var.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let p = Path::new(dir).join(name);
            if check_executable(&p).is_ok() {
                return Ok(p);
            }
        }
    }
    Err(ExecStartError::new(
        EXIT_NOT_FOUND,
        format!("exec: \"{name}\": executable file not found in $PATH"),
    ))
}

fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::ENOEXEC) => "exec format error".into(),
        Some(libc::ETXTBSY) => "text file busy".into(),
        _ => e.to_string(),
    }
}

/// Runs in the exec'd process, inside the container, after libcontainer set it up:
/// looks the command up, loads the container's seccomp filter and calls `execv`.
/// Failures are written as `CODE MESSAGE` to `err_fd` (a pipe to the driver).
#[derive(Clone)]
struct ExecExecutor {
    seccomp: Option<LinuxSeccomp>,
    err_fd: RawFd,
}

impl ExecExecutor {
    fn fail(&self, e: ExecStartError) -> String {
        let line = format!("{} {}", e.exit_code, e.message);
        // SAFETY: `err_fd` is the write end of a pipe the driver created before forking
        // and keeps open until libcontainer returns; writing a byte slice to it has no
        // memory-safety requirement beyond a valid pointer and length.
        unsafe {
            libc::write(self.err_fd, line.as_ptr().cast(), line.len());
        }
        e.message
    }

    fn command(spec: &Spec) -> Result<(Vec<String>, PathBuf), ExecStartError> {
        let p = spec
            .process()
            .as_ref()
            .ok_or_else(|| ExecStartError::new(EXIT_CANNOT_INVOKE, "no process in the spec"))?;
        let args = p.args().clone().unwrap_or_default();
        let name = args.first().cloned().unwrap_or_default();
        let path_var = p
            .env()
            .as_ref()
            .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let path = look_path(&name, &path_var)?;
        Ok((args, path))
    }
}

impl Executor for ExecExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        Self::command(spec)
            .map(|_| ())
            .map_err(|e| ExecutorValidationError::ArgValidationError(self.fail(e)))
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let (args, path) = Self::command(spec).map_err(|e| ExecutorError::Other(self.fail(e)))?;
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            ExecutorError::Other(self.fail(ExecStartError::new(
                EXIT_CANNOT_INVOKE,
                "the command contains a NUL byte",
            )))
        })?;
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                ExecutorError::Other(self.fail(ExecStartError::new(
                    EXIT_CANNOT_INVOKE,
                    "an argument contains a NUL byte",
                )))
            })?;
        let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        if let Some(filter) = &self.seccomp {
            if libcontainer::seccomp::is_notify(filter) {
                return Err(ExecutorError::Other(self.fail(ExecStartError::new(
                    EXIT_CANNOT_INVOKE,
                    "the container's seccomp profile uses notify actions: exec into it is not supported yet by berth",
                ))));
            }
            libcontainer::seccomp::initialize_seccomp(filter).map_err(|e| {
                ExecutorError::Other(self.fail(ExecStartError::new(
                    EXIT_CANNOT_INVOKE,
                    format!(
                        "applying the container's seccomp profile: {e} (a container without no-new-privileges can be exec'd into only with --privileged)"
                    ),
                )))
            })?;
        }
        // Rust programs (the driver) ignore SIGPIPE and an ignored signal stays ignored
        // across execve: give the command the default disposition, as a shell would.
        // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        // SAFETY: `cpath` and every element of `argv` are NUL-terminated strings that
        // live until after the call; `argv` ends with a null pointer. On success execv
        // does not return.
        unsafe {
            libc::execv(cpath.as_ptr(), argv.as_ptr());
        }
        let err = std::io::Error::last_os_error();
        let code = if err.raw_os_error() == Some(libc::ENOENT) {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_INVOKE
        };
        Err(ExecutorError::Other(self.fail(ExecStartError::new(
            code,
            format!("exec {}: {}", path.display(), errno_text(&err)),
        ))))
    }
}

/// Removes the sockets and links libcontainer's tenant builder leaves in the container's
/// runtime directory (`tenant-notify-*.sock`, `tenant-tty-*.sock`); runs under the exec
/// lock, so no other exec is using them.
fn remove_tenant_leftovers(container_dir: &Path) {
    if let Ok(rd) = fs::read_dir(container_dir) {
        for e in rd.flatten() {
            if e.file_name().as_bytes().starts_with(b"tenant-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Starts the process of `req` in the running container `id` (libcontainer state in
/// `root/<id>`). With `console_socket`, libcontainer sends the pty master there (the
/// caller listens); else the process inherits the caller's fds 0, 1 and 2. Returns the
/// PID of the process (a child of the caller, which must reap it).
pub fn exec(
    root: &Path,
    id: &str,
    req: &ExecRequest,
    console_socket: Option<&Path>,
) -> Result<i32, ExecStartError> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        ExecStartError::new(EXIT_CANNOT_INVOKE, format!("container {id}: {what}: {e}"))
    };
    let container_dir = root.join(id);
    let container =
        Container::load(container_dir.clone()).map_err(|e| internal("load runtime state", &e))?;
    let bundle = container.bundle().to_path_buf();
    let spec =
        Spec::load(bundle.join("config.json")).map_err(|e| internal("load config.json", &e))?;
    crate::driver::raise_hard_rlimits(&spec);
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| bundle.join(r.path()))
        .ok_or_else(|| internal("config.json", &"no root"))?;
    let process = exec_process(&spec, &rootfs, req)?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    // The filter in libcontainer's reading: already so in the bundle an older driver
    // wrote for libcontainer (`crate::driver::LIBCONTAINER_BUNDLE`), else made here as
    // the driver's create makes it (`crate::driver::libcontainer_spec`).
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let seccomp = if bundle.ends_with(crate::driver::LIBCONTAINER_BUNDLE) {
        seccomp.cloned()
    } else {
        seccomp.map(crate::seccomp::for_libcontainer)
    };

    // One exec at a time per container sets up: the leftovers of libcontainer are
    // removed under the same lock.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(container_dir.join(".berth-exec.lock"))
        .map_err(|e| internal("exec lock", &e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| internal("exec lock", &e))?;
    // As at create: the exec'd process joins the container's cgroup in the hierarchies
    // libcgroups leaves alone (it joins the others itself), only where it still exists.
    if let Some(path) = &cgroups_path {
        for e in crate::placement::join_existing(&crate::placement::hierarchies(), path) {
            eprintln!("container {id}: exec not placed in the container's cgroup there: {e}");
        }
    }

    let process_file = container_dir.join(format!(
        "berth-exec-{}.json",
        rustix::process::getpid().as_raw_nonzero()
    ));
    let bytes = serde_json::to_vec(&process).map_err(|e| internal("process.json", &e))?;
    fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&process_file)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| internal("write process.json", &e))?;

    let (err_r, err_w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .map_err(|e| internal("pipe", &e))?;
    let executor = ExecExecutor {
        seccomp,
        err_fd: err_w.as_raw_fd(),
    };
    let result = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(root)
        .map(|b| {
            b.with_executor(executor)
                .with_console_socket(console_socket)
                .as_tenant()
                .with_process(Some(&process_file))
                .with_detach(req.tty)
                .build()
        });
    drop(err_w);
    let _ = fs::remove_file(&process_file);
    remove_tenant_leftovers(&container_dir);
    drop(lock);
    // libcgroups makes the cgroup it joins a tenant to (create_dir_all): an exec that lost
    // a race with the container's end (a health check, as the container stops or is
    // removed) has made its cgroups again. Removing every empty one puts that right; a
    // running container's cgroups hold its init, and rmdir leaves them alone.
    if !matches!(result, Ok(Ok(_))) {
        if let Some(path) = &cgroups_path {
            crate::placement::remove(
                &crate::placement::all_hierarchies(),
                path,
                std::time::Duration::ZERO,
            );
        }
    }
    match result {
        Ok(Ok(pid)) => Ok(pid.as_raw()),
        Ok(Err(e)) | Err(e) => {
            let mut reason = String::new();
            let _ = fs::File::from(err_r).read_to_string(&mut reason);
            match reason.split_once(' ') {
                Some((code, msg)) if code.parse::<i32>().is_ok() => Err(ExecStartError::new(
                    code.parse().unwrap_or(EXIT_CANNOT_INVOKE),
                    msg,
                )),
                _ => Err(internal("exec", &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merges_like_docker() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let got = merge_env(&base, &["A=2".into(), "B=3".into(), "PATH".into()]);
        assert_eq!(got, vec!["A=2".to_string(), "B=3".to_string()]);
    }

    #[test]
    fn look_path_words_errors_as_runc() {
        let e = look_path("no-such-cmd-berth", "/nonexistent").expect_err("missing");
        assert_eq!(e.exit_code, 127);
        assert_eq!(
            e.message,
            "exec: \"no-such-cmd-berth\": executable file not found in $PATH"
        );
        let e = look_path("/", DEFAULT_PATH).expect_err("a directory");
        assert_eq!(e.exit_code, 126);
        assert_eq!(e.message, "exec: \"/\": is a directory");
        let e = look_path("/nope/x", DEFAULT_PATH).expect_err("missing");
        assert_eq!(e.exit_code, 127);
        assert!(look_path("sh", DEFAULT_PATH).is_ok());
    }
}
