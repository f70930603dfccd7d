//! The userland proxy of the container's published ports that the kernel cannot
//! translate (`berth-proxy`, see its source): the shim receives the listening sockets
//! the engine bound ([`ShimConfig::proxy`], sent over its stdin: `receive_handoff` in
//! `main.rs`), runs the proxy as its child once the container exists, and kills it when
//! the container exits. The proxy also dies with the shim (parent-death signal), so it
//! never outlives the container.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};

use berth_runtime::shim_protocol::{ShimConfig, PROXY_BINARY};
use rustix::event::{poll, PollFd, PollFlags};

/// The running proxy.
pub struct ProxyChild {
    pidfd: OwnedFd,
}

/// Runs `berth-proxy` (next to the driver) with the sockets as its fds 3, 4, …; None
/// when the container publishes nothing through it.
pub fn spawn(cfg: &ShimConfig, socks: Vec<OwnedFd>) -> Result<Option<ProxyChild>, String> {
    if socks.is_empty() {
        return Ok(None);
    }
    let bin = cfg.driver.with_file_name(PROXY_BINARY);
    // Above every number the child gets, so the dup2s below never overwrite one another.
    let floor = 10 + socks.len() as RawFd;
    let high: Vec<OwnedFd> = socks
        .iter()
        .map(|s| rustix::io::fcntl_dupfd_cloexec(s, floor).map_err(|e| format!("dup: {e}")))
        .collect::<Result<_, _>>()?;
    drop(socks);
    let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = Command::new(&bin);
    cmd.arg(rustix::process::getpid().as_raw_nonzero().get().to_string());
    for p in &cfg.proxy {
        cmd.arg(&p.proto)
            .arg(p.listen.to_string())
            .arg(p.target.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls dup2 and
    // prctl, which are async-signal-safe; the fds in `raw` are open in the parent
    // (owned by `high`, alive until after spawn) and above the targets 3..3+n.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // The proxy sets it again after dropping privileges (which clears it); this
            // covers the time until then.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (install berth-proxy next to berth-driver, or set userland_proxy = false in the daemon's config)"
        } else {
            ""
        };
        format!("userland proxy: run {}: {e}{hint}", bin.display())
    })?;
    drop(high);
    let pid = rustix::process::Pid::from_raw(child.id() as i32)
        .ok_or_else(|| "userland proxy: bad pid".to_string())?;
    // Not reaped yet: only the shim's loop reaps, and it has not run.
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("userland proxy: pidfd_open: {e}"))?;
    Ok(Some(ProxyChild { pidfd }))
}

impl ProxyChild {
    /// Kills the proxy and waits (up to 2 s) until it is gone, so its sockets are closed
    /// when this returns (a process's files are closed before it becomes a zombie).
    pub fn stop(self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: 2,
            tv_nsec: 0,
        };
        let _ = poll(&mut fds, Some(&ts));
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
        );
    }
}
