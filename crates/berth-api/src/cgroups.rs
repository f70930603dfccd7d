//! `/containers/{id}/stats`, `/top`, `/update`, `/pause`, `/unpause`, and Docker's
//! `Resources` (the cgroup part of `HostConfig`, shared by create and update).

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::cgroups::CgroupStats;
use berth_engine::{
    ContainerRecord, Engine, ResourceUpdate, RestartPolicy, StatsSample, ThrottleDeviceSpec,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::body::JsonBody;
use crate::containers::docker_name;
use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;

/// Go's zero time, Docker's `read` of a container that does not run.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn not_supported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported yet by berth"))
}

/// `{"Path": "/dev/sda", "Rate": 1048576}`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ThrottleBody {
    path: String,
    rate: u64,
}

/// `{"Name": "nofile", "Soft": 1024, "Hard": 2048}`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

/// Docker's `Resources`, flattened into `HostConfig` (create) and `UpdateConfig`.
/// Pointers and slices may arrive as `null`, hence the `Option`s.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ResourcesBody {
    memory: i64,
    memory_swap: i64,
    memory_reservation: i64,
    nano_cpus: i64,
    cpu_shares: i64,
    cpu_period: i64,
    cpu_quota: i64,
    cpuset_cpus: String,
    cpuset_mems: String,
    pub(crate) pids_limit: Option<i64>,
    blkio_weight: u16,
    blkio_device_read_bps: Option<Vec<ThrottleBody>>,
    blkio_device_write_bps: Option<Vec<ThrottleBody>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    blkio_device_read_iops: Option<Vec<ThrottleBody>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    blkio_device_write_iops: Option<Vec<ThrottleBody>>,
    ulimits: Option<Vec<UlimitBody>>,
    // Refused when set: berth cannot honour them yet.
    blkio_weight_device: Option<Vec<Value>>,
    kernel_memory: i64,
    #[serde(rename = "KernelMemoryTCP")]
    kernel_memory_tcp: i64,
    cpu_realtime_period: i64,
    cpu_realtime_runtime: i64,
    cpu_count: i64,
    cpu_percent: i64,
    #[serde(rename = "IOMaximumIOps")]
    io_maximum_iops: u64,
    #[serde(rename = "IOMaximumBandwidth")]
    io_maximum_bandwidth: u64,
    memory_swappiness: Option<i64>,
    oom_kill_disable: Option<bool>,
    /// Create takes them (`containers.rs`); an update refuses them.
    pub(crate) device_cgroup_rules: Option<Vec<String>>,
    /// Create reads `HostConfig.Devices` itself; here for the update body only.
    devices: Option<Vec<Value>>,
    device_requests: Option<Vec<Value>>,
    cgroup_parent: String,
}

fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

impl ResourcesBody {
    /// Refuses every field berth cannot honour (when set), for create and update.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let refused: [(bool, &str); 12] = [
            (
                non_empty(&self.blkio_weight_device),
                "--blkio-weight-device",
            ),
            (self.kernel_memory != 0, "--kernel-memory"),
            (self.kernel_memory_tcp != 0, "KernelMemoryTCP"),
            (self.cpu_realtime_period != 0, "--cpu-rt-period"),
            (self.cpu_realtime_runtime != 0, "--cpu-rt-runtime"),
            (self.cpu_count != 0, "--cpu-count"),
            (self.cpu_percent != 0, "--cpu-percent"),
            (self.io_maximum_iops != 0, "--io-maxiops"),
            (self.io_maximum_bandwidth != 0, "--io-maxbandwidth"),
            (self.oom_kill_disable == Some(true), "--oom-kill-disable"),
            (non_empty(&self.device_requests), "--gpus (DeviceRequests)"),
            (!self.cgroup_parent.is_empty(), "--cgroup-parent"),
        ];
        match refused.iter().find(|(set, _)| *set) {
            Some((_, what)) => Err(not_supported(what)),
            None => Ok(()),
        }
    }

    /// The resources of a `docker create`.
    pub(crate) fn into_create(
        self,
    ) -> Result<(berth_engine::Resources, Vec<berth_engine::Ulimit>), ApiError> {
        self.refuse_unsupported()?;
        let pos = |v: i64| (v != 0).then_some(v);
        let throttles = |v: Option<Vec<ThrottleBody>>| -> Vec<ThrottleDeviceSpec> {
            v.unwrap_or_default()
                .into_iter()
                .map(|t| ThrottleDeviceSpec {
                    path: PathBuf::from(t.path),
                    rate: t.rate,
                })
                .collect()
        };
        let mut ulimits = Vec::new();
        for u in self.ulimits.unwrap_or_default() {
            if u.soft < 0 || u.hard < 0 || u.soft > u.hard {
                return Err(ApiError::bad_request(format!(
                    "invalid ulimit {}: soft {} and hard {} must be ≥ 0, soft ≤ hard",
                    u.name, u.soft, u.hard
                )));
            }
            ulimits.push(berth_engine::Ulimit {
                name: u.name,
                soft: u.soft as u64,
                hard: u.hard as u64,
            });
        }
        let r = berth_engine::Resources {
            memory: pos(self.memory),
            memory_swap: pos(self.memory_swap),
            memory_reservation: pos(self.memory_reservation),
            // -1 (what the docker CLI sends unless asked) is the host's default.
            memory_swappiness: self.memory_swappiness.filter(|s| *s != -1),
            nano_cpus: pos(self.nano_cpus),
            cpu_shares: u64_field("CpuShares", self.cpu_shares)?,
            cpu_period: u64_field("CpuPeriod", self.cpu_period)?,
            cpu_quota: pos(self.cpu_quota),
            cpuset_cpus: Some(self.cpuset_cpus).filter(|s| !s.is_empty()),
            cpuset_mems: Some(self.cpuset_mems).filter(|s| !s.is_empty()),
            // Docker sends 0 for "not set"; -1 means unlimited.
            pids_limit: self.pids_limit.filter(|p| *p != 0),
            blkio_weight: (self.blkio_weight != 0).then_some(self.blkio_weight),
            device_read_bps: throttles(self.blkio_device_read_bps),
            device_write_bps: throttles(self.blkio_device_write_bps),
            device_read_iops: throttles(self.blkio_device_read_iops),
            device_write_iops: throttles(self.blkio_device_write_iops),
        };
        Ok((r, ulimits))
    }

    /// The changes of a `docker update` (zero and empty mean "unchanged").
    fn into_update(self) -> Result<ResourceUpdate, ApiError> {
        self.refuse_unsupported()?;
        for (list, flag) in [
            (&self.blkio_device_read_bps, "BlkioDeviceReadBps"),
            (&self.blkio_device_write_bps, "BlkioDeviceWriteBps"),
            (&self.blkio_device_read_iops, "BlkioDeviceReadIOps"),
            (&self.blkio_device_write_iops, "BlkioDeviceWriteIOps"),
        ] {
            if non_empty(list) {
                return Err(not_supported(&format!("updating {flag}")));
            }
        }
        if non_empty(&self.ulimits) {
            return Err(not_supported("updating Ulimits"));
        }
        // Docker's update ignores them (its CLI has no flag for them): refused by name.
        if non_empty(&self.devices) {
            return Err(not_supported("updating Devices"));
        }
        if non_empty(&self.device_cgroup_rules) {
            return Err(not_supported("updating DeviceCgroupRules"));
        }
        if self.memory_swappiness.is_some_and(|s| s != -1) {
            return Err(not_supported("updating MemorySwappiness"));
        }
        let pos = |v: i64| (v != 0).then_some(v);
        Ok(ResourceUpdate {
            memory: pos(self.memory),
            memory_swap: pos(self.memory_swap),
            memory_reservation: pos(self.memory_reservation),
            nano_cpus: pos(self.nano_cpus),
            cpu_shares: u64_field("CpuShares", self.cpu_shares)?,
            cpu_period: u64_field("CpuPeriod", self.cpu_period)?,
            cpu_quota: pos(self.cpu_quota),
            cpuset_cpus: Some(self.cpuset_cpus).filter(|s| !s.is_empty()),
            cpuset_mems: Some(self.cpuset_mems).filter(|s| !s.is_empty()),
            pids_limit: self.pids_limit,
            blkio_weight: (self.blkio_weight != 0).then_some(self.blkio_weight),
            restart_policy: None,
        })
    }
}

fn u64_field(name: &str, v: i64) -> Result<Option<u64>, ApiError> {
    match v {
        0 => Ok(None),
        v if v < 0 => Err(ApiError::bad_request(format!(
            "invalid {name} {v}: must not be negative"
        ))),
        v => Ok(Some(v as u64)),
    }
}

// ---------------------------------------------------------------------------------
// Inspect and list

/// Docker's `HostConfig` resource fields of a container, as set at create or by update.
pub(crate) fn host_config_resources(rec: &ContainerRecord) -> Map<String, Value> {
    let r = &rec.resources;
    let n = |v: Option<i64>| v.unwrap_or(0);
    let swap = match (r.memory, r.memory_swap) {
        (_, Some(s)) => s,
        (Some(m), None) => m.saturating_mul(2),
        (None, None) => 0,
    };
    let throttles = |v: &[ThrottleDeviceSpec]| -> Value {
        v.iter()
            .map(|t| json!({ "Path": t.path.display().to_string(), "Rate": t.rate }))
            .collect()
    };
    let pids = match r.pids_limit {
        None => Value::from(berth_engine::DEFAULT_PIDS_LIMIT),
        Some(p) if p <= 0 => Value::from(-1),
        Some(p) => Value::from(p),
    };
    let v = json!({
        "Memory": n(r.memory),
        "MemorySwap": swap,
        "MemoryReservation": n(r.memory_reservation),
        "NanoCpus": n(r.nano_cpus),
        "CpuShares": r.cpu_shares.unwrap_or(0),
        "CpuPeriod": r.cpu_period.unwrap_or(0),
        "CpuQuota": n(r.cpu_quota),
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": r.cpuset_cpus.clone().unwrap_or_default(),
        "CpusetMems": r.cpuset_mems.clone().unwrap_or_default(),
        "PidsLimit": pids,
        "BlkioWeight": r.blkio_weight.unwrap_or(0),
        "BlkioWeightDevice": [],
        "Devices": rec.devices,
        "DeviceCgroupRules": Some(&rec.device_cgroup_rules).filter(|r| !r.is_empty()),
        "DeviceRequests": null,
        "BlkioDeviceReadBps": throttles(&r.device_read_bps),
        "BlkioDeviceWriteBps": throttles(&r.device_write_bps),
        "BlkioDeviceReadIOps": throttles(&r.device_read_iops),
        "BlkioDeviceWriteIOps": throttles(&r.device_write_iops),
        "KernelMemoryTCP": 0,
        "MemorySwappiness": r.memory_swappiness,
        "OomKillDisable": false,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Adds the cgroup view to an inspect document: resource fields in `HostConfig`, and
/// the paused state (`State.Paused`, `State.Status` "paused").
pub(crate) fn patch_inspect(doc: &mut Value, rec: &ContainerRecord, paused: bool) {
    if let Some(Value::Object(hc)) = doc.get_mut("HostConfig") {
        hc.extend(host_config_resources(rec));
    }
    if paused {
        if let Some(Value::Object(st)) = doc.get_mut("State") {
            st.insert("Paused".into(), Value::Bool(true));
            st.insert("Status".into(), "paused".into());
        }
    }
}

// ---------------------------------------------------------------------------------
// Stats

fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn cpu_json(s: Option<(&CgroupStats, &StatsSample)>) -> Value {
    let Some((cg, sample)) = s else {
        return json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        });
    };
    let mut usage = json!({
        "total_usage": cg.cpu.total_ns,
        "usage_in_kernelmode": cg.cpu.system_ns,
        "usage_in_usermode": cg.cpu.user_ns,
    });
    if !cg.cpu.percpu_ns.is_empty() {
        usage["percpu_usage"] = json!(cg.cpu.percpu_ns);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": sample.system_cpu_ns,
        "online_cpus": sample.online_cpus,
        "throttling_data": {
            "periods": cg.cpu.periods,
            "throttled_periods": cg.cpu.throttled_periods,
            "throttled_time": cg.cpu.throttled_ns,
        },
    })
}

/// Docker's `StatsJSON` of one sample, with `pre` as the previous one (`precpu_stats`).
/// A sample of a container that does not run is Docker's zeroed document.
pub(crate) fn stats_json(
    rec: &ContainerRecord,
    sample: &StatsSample,
    pre: Option<&StatsSample>,
) -> Value {
    let blkio_empty = json!({
        "io_service_bytes_recursive": null,
        "io_serviced_recursive": null,
        "io_queue_recursive": null,
        "io_service_time_recursive": null,
        "io_wait_time_recursive": null,
        "io_merged_recursive": null,
        "io_time_recursive": null,
        "sectors_recursive": null,
    });
    let Some(cg) = &sample.cgroup else {
        return json!({
            "name": docker_name(rec),
            "id": rec.id,
            "read": ZERO_TIME,
            "preread": ZERO_TIME,
            "pids_stats": {},
            "blkio_stats": blkio_empty,
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": cpu_json(None),
            "precpu_stats": cpu_json(None),
            "memory_stats": {},
        });
    };
    let pre_cg = pre.and_then(|p| p.cgroup.as_ref().map(|c| (c, p)));
    let mut pids = json!({ "current": cg.pids_current });
    if let Some(l) = cg.pids_limit {
        pids["limit"] = json!(l);
    }
    let mut blkio = blkio_empty;
    blkio["io_service_bytes_recursive"] = cg
        .io_service_bytes
        .iter()
        .map(|e| json!({ "major": e.major, "minor": e.minor, "op": e.op, "value": e.value }))
        .collect();
    // As Docker: an unlimited container's limit is the host's memory.
    let limit = match cg.memory.limit {
        Some(l) if sample.machine_memory == 0 || l <= sample.machine_memory => l,
        _ => sample.machine_memory,
    };
    let mut memory = json!({
        "usage": cg.memory.usage,
        "stats": cg.memory.stats,
        "limit": limit,
    });
    if let Some(m) = cg.memory.max_usage {
        memory["max_usage"] = json!(m);
    }
    if let Some(f) = cg.memory.failcnt {
        memory["failcnt"] = json!(f);
    }
    let mut doc = json!({
        "name": docker_name(rec),
        "id": rec.id,
        "read": rfc3339(&sample.read),
        "preread": pre.filter(|p| p.cgroup.is_some()).map_or(ZERO_TIME.to_string(), |p| rfc3339(&p.read)),
        "pids_stats": pids,
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(Some((cg, sample))),
        "precpu_stats": cpu_json(pre_cg),
        "memory_stats": memory,
    });
    // Docker's `networks`: per interface, omitted without any (the CLI's NET I/O).
    if !sample.networks.is_empty() {
        let nets: serde_json::Map<String, Value> = sample
            .networks
            .iter()
            .map(|(ifname, n)| {
                (
                    ifname.clone(),
                    json!({
                        "rx_bytes": n.rx_bytes,
                        "rx_packets": n.rx_packets,
                        "rx_errors": n.rx_errors,
                        "rx_dropped": n.rx_dropped,
                        "tx_bytes": n.tx_bytes,
                        "tx_packets": n.tx_packets,
                        "tx_errors": n.tx_errors,
                        "tx_dropped": n.tx_dropped,
                    }),
                )
            })
            .collect();
        doc["networks"] = Value::Object(nets);
    }
    doc
}

fn json_line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: one JSON document, or (stream) one per
/// second until the client goes away or the container stops.
pub(crate) async fn stats(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    // Docker's default is to stream.
    let stream = match params.get("stream") {
        None => true,
        Some(_) => match params.bool("stream") {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        },
    };
    let one_shot = match params.bool("one-shot") {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    if one_shot && stream {
        return ApiError::bad_request("cannot have stream=true and one-shot=true").into_response();
    }
    let rec = {
        let engine = engine.clone();
        match blocking(move || engine.container(&id)).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        }
    };
    let sample =
        |engine: Engine, rec: ContainerRecord| blocking(move || engine.container_stats(&rec));
    let first = match sample(engine.clone(), rec.clone()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if !stream {
        let doc = if first.cgroup.is_none() || one_shot {
            stats_json(&rec, &first, None)
        } else {
            // Two samples a second apart, so CPU % has something to compare with.
            tokio::time::sleep(Duration::from_secs(1)).await;
            match sample(engine.clone(), rec.clone()).await {
                Ok(second) => stats_json(&rec, &second, Some(&first)),
                Err(e) => return e.into_response(),
            }
        };
        return (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/json")],
            json_line(&doc),
        )
            .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(async move {
        let mut prev: Option<StatsSample> = None;
        let mut cur = first;
        loop {
            let running = cur.cgroup.is_some();
            if tx
                .send(Ok(json_line(&stats_json(&rec, &cur, prev.as_ref()))))
                .await
                .is_err()
            {
                return; // the client went away
            }
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.is_closed() {
                return;
            }
            match sample(engine.clone(), rec.clone()).await {
                Ok(next) => prev = Some(std::mem::replace(&mut cur, next)),
                Err(e) => {
                    tracing::warn!(container.id = %rec.id, error = %e.message, "stats sample failed");
                    return;
                }
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------
// Top, pause, unpause, update

/// `GET /containers/{id}/top?ps_args=`.
pub(crate) async fn top(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let args = params.get("ps_args").unwrap_or("").to_string();
    match blocking(move || engine.container_top(&id, &args)).await {
        Ok(t) => Json(json!({ "Titles": t.titles, "Processes": t.processes })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /containers/{id}/pause`.
pub(crate) async fn pause(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match blocking(move || engine.pause_container(&id)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /containers/{id}/unpause`.
pub(crate) async fn unpause(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match blocking(move || engine.unpause_container(&id)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyUpdate {
    name: String,
    maximum_retry_count: i64,
}

/// Docker's `UpdateConfig`: `Resources` and `RestartPolicy`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    /// Decoded from the same object (`update_request`).
    #[serde(skip)]
    resources: ResourcesBody,
    restart_policy: Option<RestartPolicyUpdate>,
}

fn update_request(body: &[u8]) -> Result<ResourceUpdate, ApiError> {
    let value: serde_json::Value = crate::decode::body(body, "update body")?;
    let mut body: UpdateBody = crate::decode::value_as(value.clone(), "update body")?;
    body.resources = crate::decode::value_as(value, "update body")?;
    let mut upd = body.resources.into_update()?;
    upd.restart_policy =
        body.restart_policy
            .filter(|p| !p.name.is_empty())
            .map(|p| RestartPolicy {
                name: p.name,
                maximum_retry_count: p.maximum_retry_count,
            });
    Ok(upd)
}

/// `POST /containers/{id}/update`.
pub(crate) async fn update(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    let upd = match update_request(&body) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.update_container(&id, &upd)).await {
        Ok(warnings) => Json(json!({ "Warnings": warnings })).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_body_maps_and_refuses() {
        let u = update_request(
            br#"{"Memory":104857600,"MemorySwap":-1,"PidsLimit":50,"CpuShares":0,
                 "CpusetCpus":"0","RestartPolicy":{"Name":"on-failure","MaximumRetryCount":2},
                 "BlkioWeightDevice":null,"MemorySwappiness":null}"#,
        )
        .expect("parses");
        assert_eq!(u.memory, Some(100 << 20));
        assert_eq!(u.memory_swap, Some(-1));
        assert_eq!(u.pids_limit, Some(50));
        assert_eq!(u.cpu_shares, None);
        assert_eq!(u.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(
            u.restart_policy.map(|p| (p.name, p.maximum_retry_count)),
            Some(("on-failure".to_string(), 2))
        );
        let e = update_request(br#"{"KernelMemory":1000000}"#).expect_err("refused");
        assert!(e.message.contains("--kernel-memory"), "{}", e.message);
        let e = update_request(br#"{"OomKillDisable":true}"#).expect_err("refused");
        assert!(e.message.contains("not supported yet"), "{}", e.message);
        let e = update_request(br#"{"BlkioDeviceReadBps":[{"Path":"/dev/vda","Rate":1}]}"#)
            .expect_err("refused");
        assert!(e.message.contains("BlkioDeviceReadBps"), "{}", e.message);
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;
    use berth_engine::cgroups::{BlkioEntry, CpuStats, MemoryStats};

    fn record() -> ContainerRecord {
        serde_json::from_value(json!({
            "version": 1,
            "id": "ab".repeat(32),
            "image": "app:1",
            "image_id": format!("sha256:{}", "cd".repeat(32)),
            "layers": [],
            "created": "2026-01-01T00:00:00Z",
            "log_max_size": 0,
            "log_max_file": 1,
            "cgroup_path": "/berth/x",
            "name": "web",
        }))
        .expect("record")
    }

    fn sample(total_ns: u64, limit: Option<u64>) -> StatsSample {
        StatsSample {
            read: chrono::Utc::now(),
            cgroup: Some(CgroupStats {
                cpu: CpuStats {
                    total_ns,
                    percpu_ns: vec![total_ns, 0],
                    user_ns: 1,
                    system_ns: 2,
                    periods: 3,
                    throttled_periods: 4,
                    throttled_ns: 5,
                },
                memory: MemoryStats {
                    usage: 100,
                    max_usage: Some(200),
                    limit,
                    failcnt: Some(0),
                    stats: [("total_inactive_file".to_string(), 10)].into(),
                },
                pids_current: 2,
                pids_limit: None,
                io_service_bytes: vec![BlkioEntry {
                    major: 254,
                    minor: 0,
                    op: "Read".into(),
                    value: 4096,
                }],
            }),
            system_cpu_ns: total_ns * 10,
            online_cpus: 2,
            machine_memory: 1 << 30,
            networks: [(
                "eth0".to_string(),
                berth_engine::LinkStats {
                    rx_bytes: 1500,
                    tx_bytes: 600,
                    ..Default::default()
                },
            )]
            .into(),
        }
    }

    #[test]
    fn stats_json_has_dockers_shape() {
        let rec = record();
        let pre = sample(1000, Some(64 << 20));
        let cur = sample(3000, None);
        let v = stats_json(&rec, &cur, Some(&pre));
        assert_eq!(v["name"], "/web");
        assert_eq!(v["networks"]["eth0"]["rx_bytes"], 1500);
        assert_eq!(v["networks"]["eth0"]["tx_bytes"], 600);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 3000);
        assert_eq!(
            v["cpu_stats"]["cpu_usage"]["percpu_usage"],
            json!([3000, 0])
        );
        assert_eq!(v["cpu_stats"]["system_cpu_usage"], 30000);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["cpu_stats"]["throttling_data"]["throttled_time"], 5);
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 1000);
        assert_ne!(v["preread"], ZERO_TIME);
        // Unlimited: the host's memory, as Docker.
        assert_eq!(v["memory_stats"]["limit"], 1u64 << 30);
        assert_eq!(v["memory_stats"]["max_usage"], 200);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 10);
        assert_eq!(v["pids_stats"], json!({ "current": 2 }));
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][0],
            json!({ "major": 254, "minor": 0, "op": "Read", "value": 4096 })
        );
        let first = stats_json(&rec, &pre, None);
        assert_eq!(first["preread"], ZERO_TIME);
        assert_eq!(first["memory_stats"]["limit"], 64u64 << 20);
        assert_eq!(first["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    }

    #[test]
    fn a_container_that_does_not_run_has_zeroed_stats() {
        let rec = record();
        let mut s = sample(1, None);
        s.cgroup = None;
        let v = stats_json(&rec, &s, None);
        assert_eq!(v["read"], ZERO_TIME);
        assert_eq!(v["memory_stats"], json!({}));
        assert_eq!(v["pids_stats"], json!({}));
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert_eq!(v["id"], rec.id);
    }
}
