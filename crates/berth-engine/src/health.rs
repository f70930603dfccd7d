//! Health checks: the image's `HEALTHCHECK` or `--health-*`, run inside the container
//! as an exec, with Docker's timing and states, and — what Docker never shipped
//! (moby#28400) — an action when the container turns unhealthy (`--health-on-failure`,
//! or the label `berth.health-on-failure` for clients without the flag).
//!
//! One checker thread per running container with a check, for the life of that run
//! (it ends when the container stops or starts again). Timing as Docker: the first
//! probe one interval after the start (`start_interval` during the start period);
//! a probe that exceeds `timeout` is killed and counts as a failure; failures during the
//! start period do not count, a success ends it; `retries` consecutive failures make the
//! container `unhealthy`. The state (status, failing streak, last five results) is in
//! the container's `status.json`, so inspect shows it after a daemon restart; each change
//! of status emits `health_status: healthy|unhealthy`.
//!
//! Actions on turning unhealthy: `kill` sends SIGKILL and lets the restart policy decide
//! (the kill is not a user's stop); `restart` stops the container (stop signal, grace
//! period, SIGKILL) and starts it again at once, whatever the policy; `stop` stops it as
//! `docker stop` does (no restart policy revives it).

use std::time::{Duration, Instant};

use berth_image::model::HealthConfig;
use tracing::{info, warn};

use crate::containers::ContainerState;
use crate::lifecycle::{HealthAction, HealthResult, HealthState};
use crate::{Engine, WeakEngine};

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `Health.Log`.
const KEEP_RESULTS: usize = 5;
/// Output kept per result (Docker keeps 4 KiB).
const MAX_OUTPUT: usize = 4096;

fn dur(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The probe's command line: `CMD args...` or `CMD-SHELL script`.
fn probe_args(h: &HealthConfig) -> Option<Vec<String>> {
    let test = h.test.as_ref()?;
    match test.split_first()? {
        (kind, rest) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        (kind, [script]) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".into(), "-c".into(), script.clone()])
        }
        _ => None,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Engine {
    /// Starts the health checker of a container's run that began at `started_at`.
    pub(crate) fn start_health_checks(&self, id: &str, started_at: &str) {
        self.run_health_checks(id, started_at, false);
    }

    /// Resumes the health checker of a container that ran on while the daemon was down:
    /// the last recorded health stays until the next probe says otherwise (Docker's
    /// restore keeps it too).
    pub(crate) fn resume_health_checks(&self, id: &str, started_at: &str) {
        self.run_health_checks(id, started_at, true);
    }

    fn run_health_checks(&self, id: &str, started_at: &str, resume: bool) {
        let Ok(rec) = self.container(id) else { return };
        let Some(hc) = rec.run.healthcheck.clone() else {
            return;
        };
        let Some(args) = probe_args(&hc) else {
            warn!(container.id = %id, test = ?hc.test, "health check test not understood; no checks run");
            return;
        };
        let _ = self.update_status(id, |s| {
            if !(resume && s.health.is_some()) {
                s.health = Some(HealthState {
                    status: "starting".into(),
                    ..HealthState::default()
                })
            }
        });
        let weak = self.downgrade();
        let (id, started_at) = (id.to_string(), started_at.to_string());
        let spawned = std::thread::Builder::new()
            .name(format!("health-{}", &id[..12.min(id.len())]))
            .stack_size(256 * 1024)
            .spawn(move || health_loop(&weak, &id, &started_at, &hc, &args));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the health checker");
        }
    }

    /// Whether the run that began at `started_at` still runs.
    fn same_run(&self, id: &str, started_at: &str) -> bool {
        matches!(
            self.container_state(id),
            Ok(ContainerState::Running { started_at: s, .. }) if s == started_at
        )
    }
}

/// The checker thread: holds the engine weakly between probes, so a stopped daemon's
/// engine is not kept alive by it.
fn health_loop(weak: &WeakEngine, id: &str, started_at: &str, hc: &HealthConfig, args: &[String]) {
    let interval = dur(hc.interval, DEFAULT_INTERVAL);
    let timeout = dur(hc.timeout, DEFAULT_TIMEOUT);
    let start_period = dur(hc.start_period, Duration::ZERO);
    let start_interval = dur(hc.start_interval, DEFAULT_START_INTERVAL);
    let retries = hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
    let run_began = Instant::now();
    let mut in_start_period = !start_period.is_zero();
    loop {
        if in_start_period && run_began.elapsed() >= start_period {
            in_start_period = false;
        }
        let wait = if in_start_period {
            start_interval
        } else {
            interval
        };
        // Sleep in steps so a stopped container ends its checker soon.
        let until = Instant::now() + wait;
        while Instant::now() < until {
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(1)),
            );
            let Some(engine) = Engine::upgrade(weak) else {
                return;
            };
            if !engine.same_run(id, started_at) {
                return;
            }
        }
        let Some(engine) = Engine::upgrade(weak) else {
            return;
        };
        let start = now();
        let probe_began = Instant::now();
        let probe = engine.exec_capture(id, args.to_vec(), timeout);
        let (code, output) = if probe_began.elapsed() >= timeout {
            // The probe was killed at the timeout, whatever it reported.
            (
                -1,
                format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()).into_bytes(),
            )
        } else {
            match probe {
                Ok((code, out)) => (i64::from(code), out),
                Err(e) => {
                    if !engine.same_run(id, started_at) {
                        return;
                    }
                    (-1, e.message.into_bytes())
                }
            }
        };
        if !engine.same_run(id, started_at) {
            return;
        }
        let mut output = output;
        output.truncate(MAX_OUTPUT);
        let result = HealthResult {
            start,
            end: now(),
            exit_code: code,
            output: String::from_utf8_lossy(&output).into_owned(),
        };
        // A success ends the start period.
        if code == 0 {
            in_start_period = false;
        }
        let counts = !in_start_period;
        let mut before = String::new();
        let updated = engine.update_status(id, |s| {
            let h = s.health.get_or_insert_with(HealthState::default);
            before = h.status.clone();
            h.log.push(result);
            if h.log.len() > KEEP_RESULTS {
                let extra = h.log.len() - KEEP_RESULTS;
                h.log.drain(..extra);
            }
            if code == 0 {
                h.failing_streak = 0;
                h.status = "healthy".into();
            } else if counts {
                h.failing_streak += 1;
                if h.failing_streak >= retries {
                    h.status = "unhealthy".into();
                }
            }
            if h.status.is_empty() {
                h.status = "starting".into();
            }
        });
        let Ok(st) = updated else { return };
        let after = st.health.map(|h| h.status).unwrap_or_default();
        if after != before {
            if let Ok(rec) = engine.container(id) {
                engine.emit_container(&rec, format!("health_status: {after}"), &[]);
                if after == "unhealthy" {
                    engine.act_on_unhealthy(id, rec.run.health_on_failure);
                    if rec.run.health_on_failure != HealthAction::None {
                        return;
                    }
                }
            }
        }
    }
}

impl Engine {
    fn act_on_unhealthy(&self, id: &str, action: HealthAction) {
        if action == HealthAction::None {
            return;
        }
        info!(container.id = %id, action = action.as_str(), "container unhealthy: acting on it (health-on-failure)");
        let result = match action {
            HealthAction::None => Ok(()),
            HealthAction::Kill => self.signal_container(id, libc::SIGKILL),
            HealthAction::Stop => self.stop_container(id, None, None).map(|_| ()),
            HealthAction::Restart => self.restart_in_place(id),
        };
        if let Err(e) = result {
            warn!(container.id = %id, error = %e, action = action.as_str(), "health-on-failure action failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_cmd_or_shell() {
        let h = |t: &[&str]| HealthConfig {
            test: Some(t.iter().map(|s| s.to_string()).collect()),
            ..HealthConfig::default()
        };
        assert_eq!(
            probe_args(&h(&["CMD", "true"])),
            Some(vec!["true".to_string()])
        );
        assert_eq!(
            probe_args(&h(&["CMD-SHELL", "exit 1"])),
            Some(vec!["/bin/sh".into(), "-c".into(), "exit 1".into()])
        );
        assert_eq!(probe_args(&h(&["CMD"])), None);
        assert_eq!(probe_args(&h(&["BOGUS", "x"])), None);
    }
}
