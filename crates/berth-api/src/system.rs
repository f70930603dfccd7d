//! `/_ping`, `/version`, `/info`, `/system/df`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_engine::host::CgroupMode;
use berth_engine::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::images::{blocking, summary_json};
use crate::params::Params;
use crate::version::ApiVersion;
use crate::{API_VERSION, MIN_API_VERSION};

const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_COMMIT: &str = match option_env!("BERTH_GIT_COMMIT") {
    Some(c) => c,
    None => "",
};
const BUILD_TIME: &str = match option_env!("BERTH_BUILD_TIME") {
    Some(t) => t,
    None => "",
};
const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");

/// `GET|HEAD /_ping`.
pub(crate) async fn ping() -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            ),
            (PRAGMA, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("builder-version"),
                // The classic builder (Docker's BuilderV1).
                HeaderValue::from_static("1"),
            ),
        ],
        "OK",
    )
        .into_response()
}

/// Docker's architecture name (`GOARCH`) of the host.
fn go_arch() -> String {
    berth_image::model::host_platform().architecture
}

fn kernel_version() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The `Version` document (`GET /version`); types follow Docker's `types.Version`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VersionDoc {
    platform: PlatformName,
    components: Vec<Component>,
    version: String,
    api_version: String,
    #[serde(rename = "MinAPIVersion")]
    min_api_version: String,
    git_commit: String,
    go_version: String,
    os: String,
    arch: String,
    kernel_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    build_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PlatformName {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Component {
    name: String,
    version: String,
    /// Docker's type is `map[string]string`: every value a string.
    details: BTreeMap<String, String>,
}

/// `GET /version`.
pub(crate) async fn version() -> Json<VersionDoc> {
    let kernel = kernel_version();
    let details = BTreeMap::from([
        ("ApiVersion".to_string(), API_VERSION.to_string()),
        ("Arch".to_string(), go_arch()),
        ("BuildTime".to_string(), BUILD_TIME.to_string()),
        ("Experimental".to_string(), "false".to_string()),
        ("GitCommit".to_string(), GIT_COMMIT.to_string()),
        ("GoVersion".to_string(), RUSTC_VERSION.to_string()),
        ("KernelVersion".to_string(), kernel.clone()),
        ("MinAPIVersion".to_string(), MIN_API_VERSION.to_string()),
        ("Os".to_string(), "linux".to_string()),
    ]);
    let doc = VersionDoc {
        platform: PlatformName {
            name: "berth".to_string(),
        },
        components: vec![Component {
            name: "Engine".to_string(),
            version: BERTH_VERSION.to_string(),
            details,
        }],
        version: BERTH_VERSION.to_string(),
        api_version: API_VERSION.to_string(),
        min_api_version: MIN_API_VERSION.to_string(),
        git_commit: GIT_COMMIT.to_string(),
        go_version: RUSTC_VERSION.to_string(),
        os: "linux".to_string(),
        arch: go_arch(),
        kernel_version: kernel,
        build_time: BUILD_TIME.to_string(),
    };
    Json(doc)
}

/// Facts about the host for `/info`, read from /proc, /sys and /etc.
struct Host {
    os_pretty: String,
    os_version: String,
    mem_total: u64,
    ncpu: usize,
    nfd: usize,
}

fn read_host() -> Host {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut os_pretty = os_field("PRETTY_NAME");
    if os_pretty.is_empty() {
        os_pretty = "Linux".to_string();
    }
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Host {
        os_version: os_field("VERSION_ID"),
        os_pretty,
        mem_total,
        ncpu: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        nfd: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0),
    }
}

/// The name `docker info` shows for the filesystem under the state root.
fn backing_filesystem(root: &std::path::Path) -> String {
    let Ok(st) = rustix::fs::statfs(root) else {
        return "unknown".to_string();
    };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let magic = st.f_type as i64 as u32;
    match magic {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0x5346_414F => "afs",
        0xF2F5_2010 => "f2fs",
        _ => "unknown",
    }
    .to_string()
}

/// A stable daemon ID in Docker's UUID form, derived from the host name and state root.
fn daemon_id(root: &std::path::Path) -> String {
    let seed = format!("{}\0{}", hostname(), root.display());
    let hex = berth_types::Digest::of(seed.as_bytes()).hex();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `GET /info`. Field names and JSON types follow Docker's `system.Info` (the CLI
/// decodes into it; a wrong type makes `docker info` fail).
pub(crate) async fn info(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    Ok(Json(info_value(engine).await?))
}

/// `docker info`'s document (also what a swarm node's description is made of).
pub(crate) async fn info_value(engine: Engine) -> Result<Value, ApiError> {
    let e = engine.clone();
    let (images, host, backing, containers, swarm) = blocking(move || {
        let images = e.image_count()?;
        let containers = e.list_containers()?;
        // Docker counts a paused container as paused, not running.
        let paused = containers
            .iter()
            .filter(|c| {
                matches!(c.state, berth_engine::ContainerState::Running { .. })
                    && e.container_paused(&c.record)
            })
            .count();
        Ok((
            images,
            read_host(),
            backing_filesystem(&e.config().root),
            (containers, paused),
            e.swarm()?,
        ))
    })
    .await?;
    let (containers, paused) = containers;
    let running = containers
        .iter()
        .filter(|c| matches!(c.state, berth_engine::ContainerState::Running { .. }))
        .count()
        - paused;
    let root = engine.config().root.display().to_string();
    let probe = engine.host();
    let (cg, caps) = (&probe.cgroup, &probe.cgroup.caps);
    let warnings = probe.warnings();
    let v = json!({
        "ID": daemon_id(&engine.config().root),
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images,
        "Driver": "overlayfs",
        "DriverStatus": [["Backing Filesystem", backing]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        "MemoryLimit": caps.memory_limit,
        "SwapLimit": caps.swap_limit,
        "KernelMemory": caps.kernel_memory,
        "KernelMemoryTCP": caps.kernel_memory_tcp,
        "CpuCfsPeriod": caps.cpu_cfs,
        "CpuCfsQuota": caps.cpu_cfs,
        "CPUShares": caps.cpu_shares,
        "CPUSet": caps.cpuset,
        "PidsLimit": caps.pids_limit,
        "IPv4Forwarding": false,
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "NFd": host.nfd,
        "OomKillDisable": caps.oom_kill_disable,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": if cg.mode == CgroupMode::None { "none" } else { "cgroupfs" },
        "CgroupVersion": cg.version_str(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": host.os_pretty,
        "OSVersion": host.os_version,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": [],
            "IndexConfigs": {},
            "Mirrors": [],
        },
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": null,
        "DockerRootDir": root,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": hostname(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": BERTH_VERSION,
        "Runtimes": { "berth": { "path": "libcontainer" } },
        "DefaultRuntime": "berth",
        "Swarm": crate::swarm::info_json(swarm.as_ref()),
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
        "CDISpecDirs": [],
        "Warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
        // berth's own: the whole probe (cgroup mode, controllers, limits, kernel features).
        "BerthHost": probe,
    });
    Ok(v)
}

/// `GET /system/df`.
pub(crate) async fn disk_usage(
    State(engine): State<Engine>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    // `type` (API 1.42+) narrows the answer; berth reports images and volumes so far,
    // the other kinds are empty whichever are asked for.
    let types = params.all("type");
    for t in &types {
        if !["container", "image", "volume", "build-cache"].contains(&t.as_str()) {
            return Err(ApiError::bad_request(format!(
                "invalid value for query parameter 'type': {t:?} (allowed: container, image, volume, build-cache)"
            )));
        }
    }
    let want = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let with_volumes = want("volume");
    let with_cache = want("build-cache");
    let (du, volumes, cache) = blocking(move || {
        let du = engine.disk_usage()?;
        let volumes = if with_volumes {
            engine.volume_usage()?
        } else {
            Vec::new()
        };
        let cache = if with_cache {
            (engine.build_cache()?, engine.kept_contexts()?)
        } else {
            Default::default()
        };
        Ok((du, volumes, cache))
    })
    .await?;
    let images: Vec<Value> = du
        .images
        .iter()
        .map(|s| summary_json(s, version, true, Some(s.containers as i64)))
        .collect();
    let mut v = serde_json::Map::new();
    if want("image") {
        v.insert("LayersSize".into(), json!(du.layers_size));
        v.insert("Images".into(), Value::Array(images));
    }
    if want("container") {
        v.insert("Containers".into(), json!([]));
    }
    if want("volume") {
        let vols: Vec<Value> = volumes
            .iter()
            .map(|u| crate::volumes::volume_json(&u.volume, Some((u.size, u.ref_count))))
            .collect();
        v.insert("Volumes".into(), Value::Array(vols));
    }
    if want("build-cache") {
        // The classic builder's cache: the builds' intermediate images, and the kept
        // contexts (BuildKit's `source.local` records are the like of them).
        let (cache, contexts) = cache;
        let mut entries: Vec<Value> = cache
            .iter()
            .map(|e| {
                let parents: Vec<String> = e.parent.iter().map(|p| p.to_string()).collect();
                json!({
                    "ID": e.id.to_string(),
                    "Parent": parents.first().cloned().unwrap_or_default(),
                    "Parents": parents,
                    "Type": "regular",
                    "Description": e.description,
                    "InUse": e.in_use,
                    "Shared": e.shared,
                    "Size": e.size,
                    "CreatedAt": e.created,
                    "LastUsedAt": null,
                    "UsageCount": 0,
                })
            })
            .collect();
        entries.extend(contexts.iter().map(|c| {
            json!({
                "ID": c.id,
                "Parent": "",
                "Parents": [],
                "Type": "source.local",
                "Description": c.description,
                "InUse": c.in_use,
                "Shared": false,
                "Size": c.size,
                "CreatedAt": c.created,
                "LastUsedAt": null,
                "UsageCount": 0,
            })
        }));
        v.insert("BuildCache".into(), Value::Array(entries));
    }
    Ok(Json(Value::Object(v)))
}
