//! What the engine does with a running container's cgroup: stats, top, update, pause and
//! unpause. The cgroup files themselves are read and written by [`crate::cgroups`].
//!
//! Paused is not recorded anywhere: it is read from the freezer each time, so it stays
//! true across daemon restarts and cannot disagree with the kernel.

use std::collections::HashSet;
use std::process::{Command, Stdio};

use berth_runtime::oci_spec::runtime::Spec;
use berth_runtime::shim_protocol::BUNDLE_DIR;
use tracing::{info, instrument, warn};

use crate::cgroups::{self, Cgroup, CgroupStats};
use crate::containers::{ContainerRecord, ContainerState};
use crate::error::{EngineError, Result};
use crate::lifecycle::RestartPolicy;
use crate::Engine;

/// One statistics sample of a container.
#[derive(Debug, Clone)]
pub struct StatsSample {
    pub read: chrono::DateTime<chrono::Utc>,
    /// `None` when the container does not run.
    pub cgroup: Option<CgroupStats>,
    /// The host's CPU time (Docker's `system_cpu_usage`), ns.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// The host's memory: Docker reports it as the limit of an unlimited container.
    pub machine_memory: u64,
    /// Per interface inside the container (`eth0`...): its traffic counters, seen from
    /// the container (the veth's host end counts the other way round). Empty without a
    /// bridge network.
    pub networks: std::collections::BTreeMap<String, berth_net::link::LinkStats>,
}

/// The rows of `docker top`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopResult {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// What `docker update` changes; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    pub memory: Option<i64>,
    /// Memory + swap; -1 unlimited.
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// ≤ 0: unlimited.
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub restart_policy: Option<RestartPolicy>,
}

impl ResourceUpdate {
    fn touches_cgroup(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.memory_reservation.is_some()
            || self.nano_cpus.is_some()
            || self.cpu_shares.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
            || self.pids_limit.is_some()
            || self.blkio_weight.is_some()
    }
}

fn not_running(name: &str) -> EngineError {
    EngineError::conflict(format!("container {name} is not running"))
}

/// The rows of `ps` output whose PID is in `pids` (Docker's `parsePSOutput`).
pub fn filter_ps_output(output: &str, pids: &HashSet<i32>) -> Result<TopResult> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::invalid("Couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines {
        let mut fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let Some(pid) = fields.get(pid_index).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may hold spaces.
        if fields.len() > titles.len() {
            let tail = fields.split_off(titles.len() - 1).join(" ");
            fields.push(tail);
        }
        processes.push(fields);
    }
    Ok(TopResult { titles, processes })
}

impl Engine {
    /// The cgroup of a container (whether or not it exists now).
    pub fn container_cgroup(&self, rec: &ContainerRecord) -> Result<Cgroup> {
        Ok(self.cgroup_fs().cgroup(&rec.cgroup_path))
    }

    /// Removes what is left of a container's cgroup once it no longer runs (a failed
    /// start, a release the shim could not finish); logs what stays (processes in it).
    pub(crate) fn release_cgroup(&self, rec: &ContainerRecord) {
        let cg = self.cgroup_fs().cgroup(&rec.cgroup_path);
        if !cg.remove() {
            warn!(container.id = %rec.id, "container cgroup not removed: it still holds processes");
        }
    }

    /// Whether the container runs and its cgroup is frozen (`docker pause`).
    pub fn container_paused(&self, rec: &ContainerRecord) -> bool {
        self.container_cgroup(rec)
            .ok()
            .filter(Cgroup::exists)
            .is_some_and(|cg| cg.frozen().unwrap_or(false))
    }

    fn running_record(&self, name: &str) -> Result<(ContainerRecord, Cgroup)> {
        let rec = self.container(name)?;
        match self.container_state(&rec.id)? {
            ContainerState::Running { .. } => {}
            _ => return Err(not_running(name)),
        }
        let cg = self.container_cgroup(&rec)?;
        if !cg.exists() {
            return Err(not_running(name));
        }
        Ok((rec, cg))
    }

    /// One statistics sample (`docker stats`); a container that does not run gives a
    /// sample without cgroup figures.
    pub fn container_stats(&self, rec: &ContainerRecord) -> Result<StatsSample> {
        let ticks = cgroups::clock_ticks();
        let running = matches!(
            self.container_state(&rec.id)?,
            ContainerState::Running { .. }
        );
        let cgroup = if running {
            let cg = self.container_cgroup(rec)?;
            // The container may exit between the state check and the reads.
            if cg.exists() {
                match cg.stats(ticks) {
                    Ok(s) => Some(s),
                    Err(_) if !cg.exists() => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            }
        } else {
            None
        };
        let proc_stat = std::fs::read_to_string("/proc/stat")
            .map_err(|e| EngineError::internal(format!("/proc/stat: read: {e}")))?;
        Ok(StatsSample {
            read: chrono::Utc::now(),
            cgroup,
            system_cpu_ns: cgroups::system_cpu_usage_ns(&proc_stat, ticks).unwrap_or(0),
            online_cpus: cgroups::online_cpus(),
            machine_memory: cgroups::machine_memory(),
            networks: self.network_counters(&rec.id),
        })
    }

    /// `docker top`: runs `ps ARGS` (default `-ef`) on the host and keeps the rows of the
    /// container's processes.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn container_top(&self, name: &str, ps_args: &str) -> Result<TopResult> {
        let (_, cg) = self.running_record(name)?;
        let pids: HashSet<i32> = cg.pids()?.into_iter().collect();
        let args: Vec<&str> = if ps_args.trim().is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let ps = |extra: Option<String>| {
            Command::new("ps")
                .args(&args)
                .args(extra.map(|q| vec!["-q".to_string(), q]).unwrap_or_default())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    EngineError::internal(format!(
                        "running ps: {e} (berth's top needs procps installed on the host)"
                    ))
                })
        };
        // As Docker's daemon: `-q PID,…` selects the container's processes whatever their
        // user and terminal (plain `ps -o pid,comm` lists only the caller's uid and
        // terminal, so a container running as another uid would show nothing); some
        // options cannot be combined with `-q` (`f`), so again without it.
        let mut list: Vec<i32> = pids.iter().copied().collect();
        list.sort_unstable();
        let q = list
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut out = ps((!q.is_empty()).then_some(q))?;
        if !out.status.success() {
            out = ps(None)?;
        }
        if !out.status.success() {
            return Err(EngineError::invalid(format!(
                "ps {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        filter_ps_output(&String::from_utf8_lossy(&out.stdout), &pids)
    }

    /// `docker pause`: freezes every process of the container.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn pause_container(&self, name: &str) -> Result<()> {
        let (rec, cg) = self.running_record(name)?;
        if !self.host().cgroup.caps.freezer {
            return Err(EngineError::new(
                berth_types::ErrorKind::Unavailable,
                format!(
                    "cannot pause container {name}: this host has no cgroup freezer (freezer.state on cgroup v1, cgroup.freeze on v2)"
                ),
            ));
        }
        if cg.frozen()? {
            return Err(EngineError::conflict(format!(
                "container {name} is already paused"
            )));
        }
        cg.freeze().map_err(|e| match e.kind {
            // It exited while being frozen.
            berth_types::ErrorKind::NotFound => not_running(name),
            _ => e,
        })?;
        info!(container.id = %rec.id, "container paused");
        self.emit_container(&rec, "pause", &[]);
        Ok(())
    }

    /// `docker unpause`.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn unpause_container(&self, name: &str) -> Result<()> {
        let (rec, cg) = self.running_record(name)?;
        if !cg.frozen()? {
            return Err(EngineError::conflict(format!(
                "container {name} is not paused"
            )));
        }
        cg.thaw()?;
        info!(container.id = %rec.id, "container unpaused");
        self.emit_container(&rec, "unpause", &[]);
        Ok(())
    }

    /// Thaws a paused container's cgroup (after a SIGKILL, so it can die).
    pub(crate) fn thaw_if_paused(&self, rec: &ContainerRecord) -> Result<()> {
        let cg = self.container_cgroup(rec)?;
        if cg.exists() && cg.frozen()? {
            cg.thaw()?;
        }
        Ok(())
    }

    /// `docker update`: checks the new limits, writes them into the running container's
    /// cgroup, and keeps them (record and bundle) for the next start. Returns warnings.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn update_container(&self, name: &str, upd: &ResourceUpdate) -> Result<Vec<String>> {
        let _records = self.record_lock();
        let mut rec = self.container(name)?;
        if let Some(p) = &upd.restart_policy {
            p.validate()?;
            if rec.run.auto_remove && !p.is_none() {
                return Err(EngineError::invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
        }
        let caps = &self.host().cgroup.caps;
        let mut r = rec.resources.clone();
        let set = |v: Option<i64>| v.filter(|v| *v != 0);
        if let Some(m) = upd.memory {
            // Docker's rule: the memory + swap limit already set stays unless given
            // (there is none without swap accounting).
            let cur_swap = set(r.memory_swap)
                .or(set(r.memory).map(|m| m.saturating_mul(2)))
                .filter(|_| caps.swap_limit);
            if upd.memory_swap.is_none() {
                if let Some(s) = cur_swap.filter(|s| *s > 0) {
                    if m > s {
                        return Err(EngineError::conflict(
                            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
                        ));
                    }
                }
                r.memory_swap = cur_swap;
            }
            r.memory = Some(m);
        }
        if let Some(s) = upd.memory_swap {
            r.memory_swap = Some(s);
        }
        if let Some(v) = upd.memory_reservation {
            r.memory_reservation = Some(v);
        }
        if upd.nano_cpus.is_some()
            && (set(r.cpu_quota).is_some() || r.cpu_period.is_some_and(|p| p != 0))
        {
            return Err(EngineError::conflict(
                "Conflicting options: NanoCPUs cannot be updated as CPU Period/Quota has already been set",
            ));
        }
        if (upd.cpu_period.is_some() || upd.cpu_quota.is_some()) && set(r.nano_cpus).is_some() {
            return Err(EngineError::conflict(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
            ));
        }
        if let Some(v) = upd.nano_cpus {
            r.nano_cpus = Some(v);
        }
        if let Some(v) = upd.cpu_shares {
            r.cpu_shares = Some(v);
        }
        if let Some(v) = upd.cpu_period {
            r.cpu_period = Some(v);
        }
        if let Some(v) = upd.cpu_quota {
            r.cpu_quota = Some(v);
        }
        if let Some(v) = &upd.cpuset_cpus {
            r.cpuset_cpus = Some(v.clone());
        }
        if let Some(v) = &upd.cpuset_mems {
            r.cpuset_mems = Some(v.clone());
        }
        if let Some(v) = upd.pids_limit {
            r.pids_limit = Some(if v <= 0 { -1 } else { v });
        }
        if let Some(v) = upd.blkio_weight {
            r.blkio_weight = Some(v);
        }

        let dir = self.store().root().join("containers").join(&rec.id);
        let bundle = dir.join(BUNDLE_DIR);
        let cfg_path = bundle.join("config.json");
        let bytes = std::fs::read(&cfg_path)
            .map_err(|e| EngineError::internal(format!("{}: read: {e}", cfg_path.display())))?;
        let mut spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::internal(format!("{}: {e}", cfg_path.display())))?;
        let mut linux = spec.linux().clone().unwrap_or_default();
        let devices = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        // As at create: what the host cannot enforce is discarded with Docker's warning.
        let invalid = |e: berth_runtime::resources::ResourceError| {
            EngineError::invalid(format!("container {name}: {e}"))
        };
        let (r, warnings) = berth_runtime::resources::fit_to_host(&r, caps).map_err(invalid)?;
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut oci = berth_runtime::resources::to_oci(&r, devices, host_cpus).map_err(invalid)?;
        berth_runtime::resources::restrict_to_host(&mut oci, caps);

        if upd.touches_cgroup() {
            if let ContainerState::Running { .. } = self.container_state(&rec.id)? {
                let cg = self.container_cgroup(&rec)?;
                if cg.exists() {
                    cg.apply(&oci).map_err(|e| {
                        EngineError::new(
                            e.kind,
                            format!("container {name}: cannot update resources: {}", e.message),
                        )
                    })?;
                }
            }
            linux.set_resources(Some(oci));
            spec.set_linux(Some(linux));
            let cfg = serde_json::to_vec_pretty(&spec)
                .map_err(|e| EngineError::internal(format!("container {name}: spec: {e}")))?;
            crate::containers::write_atomic(&bundle, "config.json", &cfg)?;
        }
        rec.resources = r;
        if let Some(p) = &upd.restart_policy {
            if !p.name.is_empty() {
                rec.run.restart_policy = p.clone();
            }
        }
        self.write_record(&rec)?;
        info!(container.id = %rec.id, "container updated");
        self.emit_container(&rec, "update", &[]);
        Ok(warnings)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_are_filtered_by_pid_and_keep_spaces_in_the_command() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 12:00 ?        00:00:01 /sbin/init splash\n\
                   root        4242       1  0 12:01 ?        00:00:00 sleep 1000\n\
                   root        4243    4242  0 12:01 ?        00:00:00 sh -c echo a  b\n";
        let pids: HashSet<i32> = [4242, 4243].into_iter().collect();
        let t = filter_ps_output(out, &pids).unwrap();
        assert_eq!(t.titles.len(), 8);
        assert_eq!(t.processes.len(), 2);
        assert_eq!(t.processes[0][1], "4242");
        assert_eq!(t.processes[0][7], "sleep 1000");
        assert_eq!(t.processes[1][7], "sh -c echo a b");
        assert!(filter_ps_output("USER COMMAND\nroot x\n", &pids)
            .unwrap_err()
            .message
            .contains("PID"));
    }
}
