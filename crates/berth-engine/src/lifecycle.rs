//! A container's life after create: the monitor that sees it exit, restart policies
//! with backoff, `--rm`, stop (signal, grace period, SIGKILL), restart, rename, prune,
//! and what the daemon does with containers it finds when it starts.
//!
//! **Monitor.** Every running container has one monitor thread in the daemon, blocked on
//! its shim's `wait` request (no polling). When the container exits, the monitor emits
//! `oom` (if the cgroup saw an OOM kill) and `die`, then applies, in this order: a user's
//! stop (nothing more), `--rm` (the container is removed), the restart policy. Restarts
//! back off as Docker's do: 100 ms, doubled after each restart, at most one minute, back
//! to 100 ms once a run lasted 10 s. While it waits the container is `restarting`.
//!
//! **Status.** What changes over a container's life and must survive the daemon —
//! the restart count, whether a user stopped it, its health — is in `status.json` next
//! to `container.json`, replaced atomically (not fsync'd: it survives a daemon crash;
//! a power loss may bring back the previous version) under the engine's record lock.
//!
//! **Daemon start.** Containers that run are monitored again; containers whose policy
//! says so are started (`always`; `unless-stopped` unless a user stopped it;
//! `on-failure` after a failure, within its retry count) — this is also what happens
//! after a host reboot, once the daemon is started by the init system; `--rm`
//! containers that exited while the daemon was away are removed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_image::model::HealthConfig;
use berth_runtime::shim_protocol::{ExitRecord, EXIT_FILE};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::containers::{connect_shim, io_err, write_replace, ContainerRecord, ContainerState};
use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::Engine;

const STATUS_FILE: &str = "status.json";
/// Docker's default grace period of `stop`.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// The monitors, restarts and backoffs in progress (in memory).
#[derive(Debug, Default)]
pub(crate) struct Tracking {
    /// Containers with a monitor thread.
    pub(crate) monitored: std::collections::HashSet<String>,
    /// Containers waiting out a restart backoff.
    pub(crate) restarting: std::collections::HashSet<String>,
    /// The last backoff of each container.
    pub(crate) backoff: std::collections::HashMap<String, Duration>,
    /// Containers that `--health-on-failure=restart` is stopping: their monitor starts
    /// them again at once.
    pub(crate) health_restart: std::collections::HashSet<String>,
    /// Containers a user stopped whose status file does not say so yet: the write
    /// failed for want of space (a container filled the disk). The stop goes on; the
    /// restart policy leaves them alone; the next status write records it.
    pub(crate) stopped_by_user: std::collections::HashSet<String>,
    /// Signals being sent to each container whose `kill` event is not out yet: its
    /// `die` waits for them (a container killed with SIGKILL can exit, and its exit be
    /// reported, before the sender gets the shim's answer).
    pub(crate) signalling: std::collections::HashMap<String, usize>,
}

/// What follows a container's exit.
#[derive(Debug, Clone, Copy)]
enum AfterExit {
    /// `--health-on-failure=restart` stopped it: start it again at once.
    HealthRestart,
    /// Its restart policy starts it again after the backoff.
    Restart,
    /// It stays exited (removed with `--rm`).
    Nothing { auto_remove: bool },
}

/// `--restart`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no` (or empty), `always`, `unless-stopped`, `on-failure`.
    #[serde(default)]
    pub name: String,
    /// `on-failure:N`: at most N restarts (0: no limit).
    #[serde(default)]
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Checks a policy as the API receives it (Docker's rules and messages).
    pub fn validate(&self) -> Result<()> {
        match self.name.as_str() {
            "" | "no" | "always" | "unless-stopped" if self.maximum_retry_count != 0 => {
                Err(EngineError::invalid(format!(
                    "invalid restart policy: maximum retry count can only be used with 'on-failure' (policy {:?})",
                    self.name
                )))
            }
            "" | "no" | "always" | "unless-stopped" => Ok(()),
            "on-failure" if self.maximum_retry_count < 0 => Err(EngineError::invalid(
                "invalid restart policy: maximum retry count cannot be negative",
            )),
            "on-failure" => Ok(()),
            other => Err(EngineError::invalid(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'unless-stopped', or 'on-failure'"
            ))),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self.name.as_str(), "" | "no")
    }

    /// Docker's name for inspect: `no` when unset.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            "no"
        } else {
            &self.name
        }
    }
}

/// What berth does when a container becomes unhealthy (`--health-on-failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthAction {
    /// Only report it (Docker's behaviour).
    #[default]
    None,
    /// SIGKILL it; the restart policy then applies as to any failure.
    Kill,
    /// Restart it in place.
    Restart,
    /// Stop it (as `docker stop`: the restart policy does not bring it back).
    Stop,
}

impl HealthAction {
    pub fn parse(s: &str) -> Result<HealthAction> {
        Ok(match s {
            "" | "none" => HealthAction::None,
            "kill" => HealthAction::Kill,
            "restart" => HealthAction::Restart,
            "stop" => HealthAction::Stop,
            other => {
                return Err(EngineError::invalid(format!(
                    "invalid health-on-failure action {other:?}: use none, kill, restart or stop"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HealthAction::None => "none",
            HealthAction::Kill => "kill",
            HealthAction::Restart => "restart",
            HealthAction::Stop => "stop",
        }
    }
}

/// How the container runs, as created (Docker's `Config` and part of `HostConfig`);
/// changed only by `update` (restart policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSettings {
    /// The process environment as the runtime spec has it (image + user), without
    /// `HOSTNAME`.
    pub env: Vec<String>,
    /// `-w` or the image's WorkingDir (empty: `/`).
    pub working_dir: String,
    /// `-u` or the image's User.
    pub user: String,
    /// `--entrypoint` as given (None: the image's).
    pub entrypoint: Option<Vec<String>>,
    /// The command as given (None: the image's).
    pub cmd: Option<Vec<String>>,
    pub hostname: String,
    /// `--stop-signal` or the image's StopSignal (None: SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (None: 10; -1: wait forever).
    pub stop_timeout: Option<i64>,
    pub restart_policy: RestartPolicy,
    /// `--rm`.
    pub auto_remove: bool,
    /// The health check in force (the user's, else the image's); None: no check.
    pub healthcheck: Option<HealthConfig>,
    pub health_on_failure: HealthAction,
    /// `--init`.
    pub init: bool,
}

/// A health check's result (Docker's `Health.Log` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    /// The last five results, oldest first.
    pub log: Vec<HealthResult>,
}

/// What changes over a container's life (`status.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerStatus {
    /// Restarts by the restart policy since the last start by a user.
    pub restart_count: u32,
    /// A user stopped (or killed) it: restart policies leave it alone, and
    /// `unless-stopped` does not start it with the daemon.
    pub manually_stopped: bool,
    /// None when the container has no health check or has not run one since it started.
    pub health: Option<HealthState>,
}

/// A Docker signal name or number (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.trim().to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        let n = libc::SIGRTMIN() + off;
        return (n <= libc::SIGRTMAX()).then_some(n);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-')?.parse().ok()?
        };
        let n = libc::SIGRTMAX() - off;
        return (n >= libc::SIGRTMIN()).then_some(n);
    }
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    })
}

/// The result of one wait on the shim.
enum Waited {
    Exited(ExitRecord),
    /// The shim is gone without an exit record.
    Lost,
    TimedOut,
}

/// Why a wait for a container ends (`docker wait --condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Returns at once if the container is not running, else at its exit.
    NotRunning,
    /// At its next exit, even if it is not running yet.
    NextExit,
    /// When it is removed.
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::invalid(format!(
                "invalid condition: {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// Waits for the shim in `dir` to report an exit, at most `timeout`.
fn wait_shim(dir: &Path, timeout: Option<Duration>) -> Result<Waited> {
    let read_exit = || -> Result<Option<ExitRecord>> {
        match fs::read(dir.join(EXIT_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                EngineError::internal(format!("{}: {e}", dir.join(EXIT_FILE).display()))
            }),
            Err(_) => Ok(None),
        }
    };
    let mut s = match connect_shim(dir) {
        Ok(s) => s,
        Err(_) => {
            return Ok(match read_exit()? {
                Some(x) => Waited::Exited(x),
                None => Waited::Lost,
            })
        }
    };
    s.set_read_timeout(timeout)
        .map_err(|e| io_err(dir, "shim socket timeout", e))?;
    s.write_all(b"wait\n")
        .map_err(|e| io_err(dir, "shim wait", e))?;
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(Waited::TimedOut)
        }
        _ => {}
    }
    if let Ok(x) = serde_json::from_slice::<ExitRecord>(reply.trim_ascii()) {
        return Ok(Waited::Exited(x));
    }
    // EOF without a reply: the shim ended; it writes exit.json before closing.
    Ok(match read_exit()? {
        Some(x) => Waited::Exited(x),
        None => Waited::Lost,
    })
}

/// Blocks until the container's shim reports an exit (None: the shim is gone without one).
fn wait_for_exit(id: &str, dir: &Path) -> Option<ExitRecord> {
    loop {
        match wait_shim(dir, None) {
            Ok(Waited::Exited(x)) => return Some(x),
            Ok(Waited::Lost) => return None,
            Ok(Waited::TimedOut) => continue,
            Err(e) => {
                warn!(container.id = %id, error = %e, "monitor: wait failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn duration_since(rfc3339: &str) -> Option<Duration> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}

impl Engine {
    /// The container's status: its status file (defaults when absent), and a user's
    /// stop that a full disk kept from it (see [`Tracking::stopped_by_user`]).
    pub fn container_status(&self, id: &str) -> ContainerStatus {
        let mut st = self.status_file(id);
        if self.tracking().stopped_by_user.contains(id) {
            st.manually_stopped = true;
        }
        st
    }

    fn status_file(&self, id: &str) -> ContainerStatus {
        fs::read(self.container_dir(id).join(STATUS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Notes a signal being sent to `id` (see [`Tracking::signalling`]); the guard ends
    /// it.
    pub(crate) fn signal_in_flight(&self, id: &str) -> SignalInFlight<'_> {
        *self
            .tracking()
            .signalling
            .entry(id.to_string())
            .or_default() += 1;
        SignalInFlight {
            engine: self,
            id: id.to_string(),
        }
    }

    /// Waits (at most a second: a shim that does not answer) until no signal is being
    /// sent to `id`.
    fn wait_signals_sent(&self, id: &str) {
        let l = self.tracking();
        let _ = self
            .inner
            .monitor_done
            .wait_timeout_while(l, Duration::from_secs(1), |l| {
                l.signalling.get(id).is_some_and(|n| *n > 0)
            });
    }

    pub(crate) fn tracking(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.inner
            .lifecycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the status file under the record lock.
    pub(crate) fn update_status(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerStatus),
    ) -> Result<ContainerStatus> {
        self.update_status_with(id, f, false)
    }

    /// Records that a user stops (or removes) the container, so no restart policy
    /// brings it back. On a full disk (this is how the container that filled it is
    /// stopped) the write uses the space reserve; if even that is gone (the container
    /// still writes), the stop is kept in memory and goes on: the status file says so
    /// at its next write.
    pub(crate) fn mark_stopped_by_user(&self, id: &str) -> Result<()> {
        self.tracking().stopped_by_user.insert(id.to_string());
        match self.update_status_with(id, |s| s.manually_stopped = true, true) {
            Ok(_) => Ok(()),
            Err(e) if e.kind == berth_types::ErrorKind::Unavailable => {
                warn!(container.id = %id, error = %e, "stopped by a user: not recorded on disk yet (no space); kept in memory");
                Ok(())
            }
            Err(e) => {
                self.tracking().stopped_by_user.remove(id);
                Err(e)
            }
        }
    }

    fn update_status_with(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerStatus),
        use_reserve: bool,
    ) -> Result<ContainerStatus> {
        let _g = self.record_lock();
        let dir = self.container_dir(id);
        if !dir.exists() {
            return Err(EngineError::not_found(format!("No such container: {id}")));
        }
        let on_disk = self.status_file(id);
        let mut st = self.container_status(id);
        f(&mut st);
        // A missing file reads as the default status: nothing to write for that.
        if st != on_disk {
            let bytes = serde_json::to_vec_pretty(&st)
                .map_err(|e| EngineError::internal(format!("container {id}: status: {e}")))?;
            if use_reserve {
                self.inner
                    .reserve
                    .retry_on_full(|| crate::containers::replace_file(&dir, STATUS_FILE, &bytes))
                    .map_err(|e| io_err(&dir.join(STATUS_FILE), "write", e))?;
            } else {
                write_replace(&dir, STATUS_FILE, &bytes)?;
            }
        }
        // The file says what the status is now.
        self.tracking().stopped_by_user.remove(id);
        Ok(st)
    }

    /// Whether the restart policy is waiting to start the container again.
    pub fn is_restarting(&self, id: &str) -> bool {
        self.inner
            .lifecycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .restarting
            .contains(id)
    }

    /// Forgets what the lifecycle tracks of a removed container (its last restart
    /// backoff, a pending health restart): kept otherwise for the daemon's lifetime.
    pub(crate) fn forget_lifecycle(&self, id: &str) {
        let mut l = self
            .inner
            .lifecycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.backoff.remove(id);
        l.health_restart.remove(id);
        l.stopped_by_user.remove(id);
    }

    /// What the daemon does last, once it serves no more requests: the exits its
    /// containers' shims have recorded by now are handled (the `die` event, the network
    /// teardown, the rootfs unmount: each container's monitor takes a few ms), then the
    /// deferred network teardowns finish, each within `timeout`. A container that exits
    /// later is handled by the next daemon's start, as one that exits while no daemon
    /// runs; none is left half torn down. The state root's directory under
    /// `/run/berth/runtime` is removed when no container has state there. True when
    /// everything was done in time.
    pub fn close(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut exits_handled = false;
        loop {
            let pending: Vec<String> = {
                let l = self.tracking();
                l.monitored
                    .iter()
                    .filter(|id| self.container_dir(id).join(EXIT_FILE).exists())
                    .cloned()
                    .collect()
            };
            if pending.is_empty() {
                exits_handled = true;
                break;
            }
            if Instant::now() >= until {
                warn!(
                    containers = pending.len(),
                    "exits not handled before the daemon's exit"
                );
                break;
            }
            let l = self.tracking();
            let _ = self
                .inner
                .monitor_done
                .wait_timeout(l, Duration::from_millis(20));
        }
        let settled = self.close_network_teardowns(until.saturating_duration_since(Instant::now()));
        // Shims of exited containers finish removing their runtime state (in the
        // background for removed ones), so that nothing of it outlives the daemon.
        let released = self.settle_releases(until.saturating_duration_since(Instant::now()))
            && self.settle_exited_shims(until);
        // libcontainer's state directory of this state root goes with the daemon when no
        // container has state in it (containers that run on keep theirs, and it).
        let _ = std::fs::remove_dir(&self.inner.runtime_base);
        exits_handled && settled && released
    }

    /// Waits, until `until` at most, for the shims of exited containers that still hold
    /// their container's lock (cleaning up after the exit). True when none is left.
    fn settle_exited_shims(&self, until: Instant) -> bool {
        let Ok(rd) = std::fs::read_dir(self.containers_dir()) else {
            return true;
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|dir| dir.join(EXIT_FILE).exists())
            .all(|dir| {
                berth_runtime::shim_protocol::wait_for_shim_exit(
                    &dir,
                    until.saturating_duration_since(Instant::now()),
                )
            })
    }

    /// Starts the monitor of a running container, unless one runs.
    pub(crate) fn monitor(&self, id: &str) {
        {
            let mut l = self
                .inner
                .lifecycle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !l.monitored.insert(id.to_string()) {
                return;
            }
        }
        // The thread holds the engine weakly while it waits, so dropping the engine (a
        // daemon that stops) releases the state root's lock; the containers run on.
        let weak = self.downgrade();
        let dir = self.container_dir(id);
        let id = id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("monitor-{}", &id[..12.min(id.len())]))
            .stack_size(256 * 1024)
            .spawn({
                let id = id.clone();
                move || {
                    let exit = wait_for_exit(&id, &dir);
                    if let Some(engine) = Engine::upgrade(&weak) {
                        engine.after_wait(&id, exit);
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(container.id = %id, error = %e, "cannot start the container's monitor");
            let mut l = self.tracking();
            l.monitored.remove(&id);
            l.restarting.remove(&id);
        }
    }

    /// The monitor's work once the container exited (`None`: its shim is gone without
    /// an exit status).
    fn after_wait(&self, id: &str, exit: Option<ExitRecord>) {
        // `restarting`: the restart policy takes the container up in the same step as
        // the monitor lets go of it, as Docker sets Restarting with the exit: else a
        // `rm` without force in between found it exited and removed it.
        let done = |restarting: bool| {
            let mut l = self
                .inner
                .lifecycle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            l.monitored.remove(id);
            if restarting {
                l.restarting.insert(id.to_string());
            } else {
                l.restarting.remove(id);
            }
            drop(l);
            self.inner.monitor_done.notify_all();
        };
        let Ok(rec) = self.container(id) else {
            done(false);
            return; // removed meanwhile
        };
        // A shim gone without an exit status: berth does not leave the container running
        // unsupervised; its processes are killed and the exit recorded (137).
        let exit = exit.or_else(|| self.reap_orphan(&rec));
        let (code, ran_for) = match &exit {
            Some(x) => (x.exit_code, duration_since(&x.started_at)),
            None => (255, None),
        };
        if exit.as_ref().is_some_and(|x| x.oom_killed) {
            self.emit_container(&rec, "oom", &[]);
        }
        // After the `kill` event of a signal that ended it, as Docker orders them.
        self.wait_signals_sent(&rec.id);
        self.emit_container(&rec, "die", &[("exitCode", code.to_string())]);
        self.network_teardown_deferred(&rec.id);
        // Its secrets leave memory with it.
        if let Err(e) = crate::swarm_objects::unmount_task_files(&self.container_dir(&rec.id)) {
            warn!(container.id = %rec.id, error = %e, "task files left mounted");
        }
        // A stopped container's rootfs is not mounted (a restart mounts it again).
        self.unmount_rootfs_if_idle(&rec.id);
        // Done with this run: a stop or remove waiting for the monitor goes on now, so
        // its own events come after `die` (before any restart starts a new monitor).
        let next = self.next_after_exit(&rec, code);
        done(matches!(
            next,
            AfterExit::HealthRestart | AfterExit::Restart
        ));
        self.apply_after_exit(&rec, next, ran_for);
    }

    /// A container whose shim is gone without an exit status (killed, crashed): its
    /// processes would run on with nobody to collect their output, report their exit or
    /// apply the restart policy. The runtime kills every process of its cgroup (the
    /// ground truth: the init and whatever it forked) and removes its state; what it
    /// misses is killed from the cgroup's process list; the exit is recorded as Docker
    /// reports a killed container, 137 (SIGKILL), so the restart policy applies as to any
    /// other exit. `None` when the container's files are gone (removed meanwhile).
    pub(crate) fn reap_orphan(&self, rec: &ContainerRecord) -> Option<ExitRecord> {
        let dir = self.container_dir(&rec.id);
        if !dir.join(crate::containers::RECORD_FILE).exists() {
            return None;
        }
        warn!(container.id = %rec.id, "container's shim is gone without an exit status: killing the container's processes");
        if let Err(e) = self.cleanup_runtime(rec) {
            warn!(container.id = %rec.id, error = %e, "runtime cleanup failed");
        }
        if let Ok(cg) = self.container_cgroup(rec) {
            if let Err(e) = cg.kill_all(Duration::from_secs(10)) {
                warn!(container.id = %rec.id, error = %e, "processes of the container left running");
            }
        }
        self.release_cgroup(rec);
        let started_at = fs::read(dir.join(berth_runtime::shim_protocol::SHIM_STATE_FILE))
            .ok()
            .and_then(|b| {
                serde_json::from_slice::<berth_runtime::shim_protocol::ShimState>(&b).ok()
            })
            .map(|s| s.started_at)
            .unwrap_or_default();
        let x = ExitRecord {
            version: berth_runtime::shim_protocol::SHIM_PROTOCOL_VERSION,
            exit_code: 128 + libc::SIGKILL,
            signal: Some(libc::SIGKILL),
            oom_killed: false,
            started_at,
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        match serde_json::to_vec(&x) {
            Ok(bytes) => {
                if let Err(e) = crate::containers::write_atomic(&dir, EXIT_FILE, &bytes) {
                    warn!(container.id = %rec.id, error = %e, "exit status not recorded");
                }
            }
            Err(e) => warn!(container.id = %rec.id, error = %e, "exit status not recorded"),
        }
        Some(x)
    }

    /// What happens once a container exited: nothing after a user's stop, removal with
    /// `--rm`, else its restart policy.
    fn after_exit(&self, rec: &ContainerRecord, code: i32, ran_for: Option<Duration>) {
        let next = self.next_after_exit(rec, code);
        let mut l = self.tracking();
        if matches!(next, AfterExit::HealthRestart | AfterExit::Restart) {
            l.restarting.insert(rec.id.clone());
        } else {
            l.restarting.remove(&rec.id);
        }
        drop(l);
        self.apply_after_exit(rec, next, ran_for);
    }

    /// What the exit of `rec` with `code` leads to.
    fn next_after_exit(&self, rec: &ContainerRecord, code: i32) -> AfterExit {
        let health_restart = self.tracking().health_restart.remove(&rec.id);
        let status = self.container_status(&rec.id);
        if status.manually_stopped {
            AfterExit::Nothing {
                auto_remove: rec.run.auto_remove,
            }
        } else if health_restart {
            AfterExit::HealthRestart
        } else if self.should_restart(rec, &status, code) {
            AfterExit::Restart
        } else {
            AfterExit::Nothing {
                auto_remove: rec.run.auto_remove,
            }
        }
    }

    /// Carries out [`Engine::next_after_exit`]'s decision; the two restarts find the
    /// container marked `restarting` and clear the mark once it runs (or is left alone).
    fn apply_after_exit(&self, rec: &ContainerRecord, next: AfterExit, ran_for: Option<Duration>) {
        match next {
            AfterExit::HealthRestart => {
                let r = self
                    .update_status(&rec.id, |s| s.restart_count += 1)
                    .and_then(|_| self.start_inner(&rec.id, false));
                self.restart_done(&rec.id);
                match r {
                    Ok(()) => self.emit_container(rec, "restart", &[]),
                    Err(e) => {
                        warn!(container.id = %rec.id, error = %e, "health-on-failure: start failed")
                    }
                }
            }
            AfterExit::Restart => self.restart_with_backoff(rec, ran_for),
            AfterExit::Nothing { auto_remove: true } => {
                if let Err(e) = self.auto_remove_container(&rec.id) {
                    if e.kind != berth_types::ErrorKind::NotFound {
                        warn!(container.id = %rec.id, error = %e, "--rm: removing the container failed");
                    }
                }
            }
            AfterExit::Nothing { auto_remove: false } => {}
        }
    }

    fn should_restart(&self, rec: &ContainerRecord, st: &ContainerStatus, code: i32) -> bool {
        let p = &rec.run.restart_policy;
        match p.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0
                    && (p.maximum_retry_count == 0
                        || i64::from(st.restart_count) < p.maximum_retry_count)
            }
            _ => false,
        }
    }

    /// After a user's stop mark: waits for a restart in progress to settle (its backoff
    /// sees the mark within 50 ms; one past its check finishes its start), so the state
    /// the caller judges next is the last one: else stop or `rm -f` returned and the
    /// restart started the container after, or `rm -f` found it gone between its check
    /// and its kill (issue 14 item 5).
    pub(crate) fn settle_restart(&self, id: &str) {
        let settle_until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < settle_until && self.is_restarting(id) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn restart_with_backoff(&self, rec: &ContainerRecord, ran_for: Option<Duration>) {
        let delay = {
            let mut l = self
                .inner
                .lifecycle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let prev = l.backoff.get(&rec.id).copied();
            let next = match prev {
                Some(d) if ran_for.is_none_or(|r| r < BACKOFF_RESET_AFTER) => {
                    (d * 2).min(BACKOFF_MAX)
                }
                _ => BACKOFF_START,
            };
            l.backoff.insert(rec.id.clone(), next);
            l.restarting.insert(rec.id.clone());
            next
        };
        info!(container.id = %rec.id, delay_ms = delay.as_millis() as u64, "restart policy: restarting");
        let until = Instant::now() + delay;
        // Sleep in steps, so a user's stop or remove during the backoff cancels it.
        let cancelled = loop {
            let st = self.container_status(&rec.id);
            if st.manually_stopped || !self.container_dir(&rec.id).exists() {
                break true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        };
        if cancelled {
            self.tracking().restarting.remove(&rec.id);
            return;
        }
        let result = self
            .update_status(&rec.id, |s| s.restart_count += 1)
            .and_then(|_| self.start_inner(&rec.id, false));
        match result {
            Ok(()) => self.restart_done(&rec.id),
            Err(e) => {
                warn!(container.id = %rec.id, error = %e, "restart policy: start failed");
                // A start that fails is a failure too: try again later (Docker does).
                // `after_exit` says whether it is still restarting.
                if self.container(&rec.id).is_ok() {
                    self.after_exit(rec, 255, None);
                } else {
                    self.tracking().restarting.remove(&rec.id);
                }
            }
        }
    }

    /// A restart started the container: it is no longer restarting, unless its new run
    /// already ended and that run's monitor said what comes next (it keeps the last
    /// word: the mark stays as it set it).
    fn restart_done(&self, id: &str) {
        let mut l = self.tracking();
        if l.monitored.contains(id) {
            l.restarting.remove(id);
        }
    }

    /// On daemon start: monitors running containers, starts those whose policy says so,
    /// removes exited `--rm` containers. Runs in the background.
    pub(crate) fn resume_containers(&self) {
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("resume".into())
            .spawn(move || {
                let Ok(all) = engine.list_containers() else {
                    return;
                };
                for c in all {
                    let rec = &c.record;
                    match &c.state {
                        ContainerState::Running { started_at, .. } => {
                            engine.monitor(&rec.id);
                            // Its health checks ran in the daemon that stopped.
                            if rec.run.healthcheck.is_some() {
                                engine.resume_health_checks(&rec.id, started_at);
                            }
                        }
                        ContainerState::Created => {}
                        ContainerState::Exited(_) | ContainerState::Dead => {
                            let code = match &c.state {
                                ContainerState::Exited(x) => x.exit_code,
                                _ => 255,
                            };
                            let st = engine.container_status(&rec.id);
                            let policy = rec.run.restart_policy.name.as_str();
                            let start = match policy {
                                "always" => true,
                                "unless-stopped" => !st.manually_stopped,
                                "on-failure" => {
                                    !st.manually_stopped && engine.should_restart(rec, &st, code)
                                }
                                _ => false,
                            };
                            if start {
                                info!(container.id = %rec.id, policy, "starting container (restart policy)");
                                if let Err(e) = engine.start_inner(&rec.id, false) {
                                    warn!(container.id = %rec.id, error = %e, "restart policy: start failed");
                                }
                            } else if rec.run.auto_remove {
                                if let Err(e) = engine.remove_container_and_volumes(&rec.id, false, true) {
                                    warn!(container.id = %rec.id, error = %e, "--rm: removing the container failed");
                                }
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot resume containers");
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after `timeout` seconds (the
    /// container's `--stop-timeout`, else 10; negative: wait forever). Returns false when
    /// the container was not running (Docker answers 304).
    pub fn stop_container(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<i32>,
    ) -> Result<bool> {
        let rec = self.container(name)?;
        // A user's stop: the restart policy leaves it alone (also during a backoff).
        self.mark_stopped_by_user(&rec.id)?;
        self.settle_restart(&rec.id);
        if !matches!(
            self.container_state(&rec.id)?,
            ContainerState::Running { .. }
        ) {
            return Ok(false);
        }
        let sig = match signal {
            Some(s) => s,
            None => match rec.run.stop_signal.as_deref() {
                Some(s) => parse_signal(s).ok_or_else(|| {
                    EngineError::invalid(format!("container {}: invalid stop signal {s:?}", rec.id))
                })?,
                None => libc::SIGTERM,
            },
        };
        let timeout = timeout
            .or(rec.run.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let dir = self.container_dir(&rec.id);
        match self.kill_container(&rec.id, sig) {
            Ok(()) => {}
            // It exited between the check and the signal: stopped all the same (the
            // restart_race SDK script hit this as a 409 "is not running").
            Err(e) if e.kind == berth_types::ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
        let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        let exited = match grace {
            Some(g) if g.is_zero() => false,
            g => !matches!(wait_shim(&dir, g)?, Waited::TimedOut),
        };
        if !exited {
            info!(container.id = %rec.id, timeout, "container did not stop in time; killing it");
            match self.kill_container(&rec.id, libc::SIGKILL) {
                Ok(()) => {}
                Err(e) if e.kind == berth_types::ErrorKind::Conflict => {} // exited meanwhile
                Err(e) => return Err(e),
            }
            wait_shim(&dir, None)?;
        }
        self.wait_monitor_done(&rec.id);
        self.emit_container(&rec, "stop", &[]);
        Ok(true)
    }

    /// `--health-on-failure=restart`: stops the container (stop signal, grace period,
    /// SIGKILL) without it counting as a user's stop; its monitor starts it again.
    pub(crate) fn restart_in_place(&self, id: &str) -> Result<()> {
        let rec = self.container(id)?;
        self.inner
            .lifecycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .health_restart
            .insert(rec.id.clone());
        let sig = rec
            .run
            .stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(libc::SIGTERM);
        let timeout = rec.run.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT);
        let dir = self.container_dir(&rec.id);
        self.signal_container(&rec.id, sig)?;
        let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        if matches!(wait_shim(&dir, grace)?, Waited::TimedOut) {
            self.signal_container(&rec.id, libc::SIGKILL)?;
        }
        Ok(())
    }

    /// `docker restart`: stop (if running), then start.
    pub fn restart_container(&self, name: &str, timeout: Option<i64>) -> Result<()> {
        let rec = self.container(name)?;
        self.stop_container(&rec.id, timeout, None)?;
        self.wait_monitor_done(&rec.id);
        self.start_container(&rec.id)?;
        self.emit_container(&rec, "restart", &[]);
        Ok(())
    }

    /// Waits (briefly) until the monitor has handled the last exit, so a start right
    /// after a stop does not race with the exit's bookkeeping.
    pub(crate) fn wait_monitor_done(&self, id: &str) {
        let tracking = self
            .inner
            .lifecycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self
            .inner
            .monitor_done
            .wait_timeout_while(tracking, Duration::from_secs(5), |t| {
                t.monitored.contains(id)
            });
        // A stop, kill or `rm -f` returns with the container's interfaces gone, as before
        // their deletion left the exit path; only an exit nobody waits for (`run --rm`,
        // `-d`) leaves it to the teardown thread.
        self.wait_deferred_teardown(id);
    }

    /// `docker rename`.
    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !crate::containers::valid_name(new_name) {
            return Err(EngineError::invalid(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let _g = self.record_lock();
        let mut rec = self.container(name)?;
        if rec.name == new_name {
            return Err(EngineError::invalid(format!(
                "Renaming a container with the same name as its current name: {new_name}"
            )));
        }
        if let Some(other) = self
            .container_records()?
            .iter()
            .find(|r| r.name == new_name)
        {
            return Err(EngineError::conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        let old = std::mem::replace(&mut rec.name, new_name.to_string());
        self.write_record(&rec)?;
        drop(_g);
        self.network_rename(&rec.id, &old, new_name);
        self.emit_container(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// `docker container prune`: removes every container that does not run (filters
    /// `until`, `label`, `label!`). Returns the removed IDs and the bytes freed (their
    /// writable layers).
    pub fn prune_containers(&self, filters: &Filters) -> Result<(Vec<String>, u64)> {
        filters.check(&["until", "label", "label!"])?;
        let until = match filters.get("until") {
            [] => None,
            [u] => Some(crate::images::parse_until(u)?),
            _ => return Err(EngineError::invalid("more than one until filter")),
        };
        let mut removed = Vec::new();
        let mut reclaimed = 0u64;
        for c in self.list_containers()? {
            if matches!(c.state, ContainerState::Running { .. }) || self.is_restarting(&c.record.id)
            {
                continue;
            }
            let rec = &c.record;
            if !filters.labels_match("label", &rec.labels) {
                continue;
            }
            if !filters.get("label!").is_empty()
                && filters.get("label!").iter().any(|f| {
                    let mut one = Filters::default();
                    one.insert("label", f);
                    one.labels_match("label", &rec.labels)
                })
            {
                continue;
            }
            if let Some(u) = until {
                let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                    .map(|t| t.timestamp())
                    .unwrap_or(0);
                if created >= u {
                    continue;
                }
            }
            let size = crate::volumes::dir_size(&self.container_dir(&rec.id).join("upper"));
            match self.remove_container(&rec.id, false) {
                Ok(()) => {
                    removed.push(rec.id.clone());
                    reclaimed += size;
                }
                Err(e) => warn!(container.id = %rec.id, error = %e, "prune: not removed"),
            }
        }
        let mut attrs = BTreeMap::new();
        attrs.insert("reclaimed".to_string(), reclaimed.to_string());
        self.emit(crate::EventType::Container, "prune", "", attrs);
        Ok((removed, reclaimed))
    }
}

/// A signal being sent to a container (see [`Engine::signal_in_flight`]).
pub(crate) struct SignalInFlight<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for SignalInFlight<'_> {
    fn drop(&mut self) {
        let mut l = self.engine.tracking();
        if let Some(n) = l.signalling.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.signalling.remove(&self.id);
            }
        }
        drop(l);
        self.engine.inner.monitor_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_validate_like_docker() {
        let p = |n: &str, m: i64| RestartPolicy {
            name: n.into(),
            maximum_retry_count: m,
        };
        assert!(p("", 0).validate().is_ok());
        assert!(p("always", 0).validate().is_ok());
        assert!(p("on-failure", 3).validate().is_ok());
        assert!(p("always", 3).validate().is_err());
        assert!(p("on-failure", -1).validate().is_err());
        let e = p("sometimes", 0).validate().expect_err("unknown");
        assert!(e.message.contains("sometimes"), "{}", e.message);
    }

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("term"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn health_actions_parse() {
        assert_eq!(
            HealthAction::parse("restart").ok(),
            Some(HealthAction::Restart)
        );
        assert!(HealthAction::parse("explode").is_err());
    }
}
