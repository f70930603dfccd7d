//! The engine: the one facade every berth front end (the Docker API server, and through
//! it the CLI) calls. It owns the store and enforces the rules; front ends only
//! translate. All methods are blocking (file and disk I/O); async callers run them on a
//! blocking thread.

pub mod archive;
pub mod attach;
pub mod build;
pub mod cgroups;
mod changes;
mod commit;
pub mod config;
mod confinement;
mod container_cgroup;
pub mod containers;
pub mod distribution;
pub mod error;
pub mod events;
pub mod exec;
pub mod filters;
pub mod health;
pub mod images;
pub mod lifecycle;
pub mod logs;
pub mod networks;
pub mod policy;
mod port_proxy;
pub mod services;
mod space;
pub mod swarm;
pub mod swarm_objects;
pub mod volumes;

pub use archive::PathStat;
pub use attach::{parse_detach_keys, Attach, AttachOptions, DetachScanner};
pub use berth_net::link::LinkStats;
/// What the host can do, as [`Engine::host`] returns it.
pub use berth_runtime::devices::DeviceMapping;
pub use berth_runtime::host;
pub use berth_runtime::resources::DEFAULT_PIDS_LIMIT;
pub use berth_runtime::spec::HostNamespaces;
pub use berth_runtime::{Resources, ThrottleDevice as ThrottleDeviceSpec, Ulimit};
pub use changes::{Change, ChangeKind};
pub use commit::CommitOptions;
pub use config::DaemonConfig;
pub use container_cgroup::{ResourceUpdate, StatsSample, TopResult};
pub use containers::*;
pub use distribution::{PullResult, PushResult};
pub use error::{EngineError, Result};
pub use events::{Event, EventType, Subscription};
pub use exec::{ExecConfig, ExecInfo, ExecStreams};
pub use filters::Filters;
pub use images::*;
pub use lifecycle::{
    ContainerStatus, HealthAction, HealthResult, HealthState, RestartPolicy, RunSettings,
    WaitCondition,
};
pub use logs::{LogQuery, LogRecord, LogSink};
pub use networks::{
    ContainerNet, Endpoint, NetAttachment, NetConfig, NetRequest, NetworkCreate, NetworkInfo,
    NetworkRecord, PortBinding, PublishedPort,
};
pub use policy::{Operation, Policy, PolicyConfig};
pub use volumes::*;

use std::sync::Arc;

use berth_store::Store;

/// The engine; cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// libcontainer's state of this engine's containers (`containers::runtime_base`).
    runtime_base: std::path::PathBuf,
    config: DaemonConfig,
    started: chrono::DateTime<chrono::Utc>,
    events: events::EventBus,
    attachments: attach::Attachments,
    /// Serialises writes of container records and status files.
    records: std::sync::Mutex<()>,
    /// Parsed container records, read again when their file changes.
    record_cache: containers::RecordCache,
    lifecycle: std::sync::Mutex<lifecycle::Tracking>,
    /// Signalled when a monitor has handled an exit (see `wait_monitor_done`).
    monitor_done: std::sync::Condvar,
    /// Signalled (with `net`) when the teardown thread is done with a batch of exits
    /// (see `Engine::wait_deferred_teardown`).
    net_teardown_done: std::sync::Condvar,
    execs: exec::ExecTable,
    /// Networks and running containers' endpoints (see `networks.rs`).
    net: std::sync::Mutex<networks::NetState>,
    /// What the host can do, probed once at open.
    host: berth_runtime::host::Host,
    /// The host's cgroup filesystem (from `host`).
    cgroup_fs: cgroups::CgroupFs,
    /// Disk space kept for stopping and removing containers on a full disk.
    reserve: space::SpaceReserve,
    /// The free space loads keep (`min_free_bytes`, resolved for the state filesystem).
    min_free_bytes: u64,
    /// Uses of containers' rootfs mounts by ID (see `Engine::hold_rootfs`).
    rootfs_holds: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// `userns_remap` resolved at open: the id mapping of remapped containers.
    remap: Option<berth_runtime::userns::IdMap>,
    /// Set once the state root took an idmapped mount (at open with `userns_remap`,
    /// else with the first `--userns=auto` container).
    idmap_checked: std::sync::OnceLock<()>,
    /// The services' reconcile loop (see `services.rs`).
    services: services::ServicesState,
    /// Removed `--rm` containers whose shims still release their runtime state.
    releases: containers::PendingReleases,
}

/// A weak reference to an engine: what background threads hold while they wait, so
/// they never keep a stopped daemon's engine (and its state-root lock) alive.
#[derive(Clone)]
pub struct WeakEngine(std::sync::Weak<Inner>);

impl Engine {
    pub(crate) fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    pub(crate) fn upgrade(w: &WeakEngine) -> Option<Engine> {
        w.0.upgrade().map(|inner| Engine { inner })
    }

    /// Opens the state root named in `config` (creating it), taking its lock.
    pub fn open(config: DaemonConfig) -> Result<Engine> {
        let store = Store::open(&config.root)?;
        if config.preserve_setuid {
            tracing::warn!(
                "preserve_setuid = true: setuid/setgid bits and file capabilities from image layers are kept"
            );
        }
        let min_free_bytes = {
            let fs_bytes = rustix::fs::statvfs(&config.root)
                .map(|st| st.f_blocks.saturating_mul(st.f_frsize))
                .unwrap_or(u64::MAX);
            config.min_free_bytes_for(fs_bytes)
        };
        if min_free_bytes == 0 {
            tracing::warn!("min_free_bytes = 0: loads may fill the state filesystem");
        } else {
            tracing::info!(
                min_free_bytes,
                configured = config.min_free_bytes.is_some(),
                "free space kept on the state filesystem"
            );
        }
        let host = berth_runtime::host::Host::detect(berth_net::nft::program_found());
        tracing::info!(
            cgroup.mode = ?host.cgroup.mode,
            cgroup.controllers = %host
                .cgroup
                .controllers
                .iter()
                .filter(|(_, c)| c.delegated)
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            kernel = %host.kernel_release,
            "host probed"
        );
        for w in host.warnings() {
            tracing::warn!("{}", w.trim_start_matches("WARNING: "));
        }
        let remap = match &config.userns_remap {
            None => None,
            Some(spec) => {
                let map = berth_runtime::userns::resolve(spec)
                    .map_err(|e| EngineError::new(e.kind(), e.to_string()))?;
                // The image layers are shared through idmapped mounts: the state
                // filesystem must allow them on this kernel, else refuse now, by name.
                berth_runtime::userns::probe_idmap(store.root(), &map).map_err(|e| {
                    EngineError::new(
                        berth_types::ErrorKind::Unavailable,
                        format!(
                            "userns-remap: the state root {} cannot be idmapped on this kernel ({}): {e}; berth shares image layers between remapped containers only through idmapped mounts (Linux 5.19 for overlayfs over them; tmpfs from 6.3)",
                            store.root().display(),
                            host.kernel_release
                        ),
                    )
                })?;
                tracing::info!(
                    remap.uid = map.uid,
                    remap.gid = map.gid,
                    remap.size = map.size,
                    "user namespace remapping: container root is an unprivileged host id"
                );
                Some(map)
            }
        };
        let cgroup_fs = cgroups::CgroupFs::of_host(&host.cgroup);
        let reserve = space::SpaceReserve::new(&config.root);
        reserve.ensure();
        let engine = Engine {
            inner: Arc::new(Inner {
                runtime_base: containers::runtime_base(store.root()),
                store,
                config,
                started: chrono::Utc::now(),
                events: events::EventBus::new(),
                attachments: attach::Attachments::default(),
                records: std::sync::Mutex::new(()),
                record_cache: Default::default(),
                lifecycle: Default::default(),
                monitor_done: std::sync::Condvar::new(),
                net_teardown_done: std::sync::Condvar::new(),
                execs: exec::ExecTable::default(),
                net: Default::default(),
                host,
                cgroup_fs,
                reserve,
                min_free_bytes,
                rootfs_holds: Default::default(),
                idmap_checked: match remap {
                    Some(_) => std::sync::OnceLock::from(()),
                    None => std::sync::OnceLock::new(),
                },
                remap,
                services: Default::default(),
                releases: Default::default(),
            }),
        };
        engine.sweep_incomplete_containers();
        engine.sweep_builds();
        engine.rediscover_containers();
        engine.resume_containers();
        Ok(engine)
    }

    pub fn config(&self) -> &DaemonConfig {
        &self.inner.config
    }

    /// The free space loads and copies keep on the state filesystem: `min_free_bytes`,
    /// or its default scaled to the filesystem's size (resolved at open).
    pub fn min_free_bytes(&self) -> u64 {
        self.inner.min_free_bytes
    }

    /// What the host can do (cgroup layout and limits, kernel features), probed at open.
    pub fn host(&self) -> &berth_runtime::host::Host {
        &self.inner.host
    }

    /// The id mapping of remapped containers (`userns_remap`), if remapping is on.
    pub fn remap(&self) -> Option<berth_runtime::userns::IdMap> {
        self.inner.remap
    }

    pub(crate) fn cgroup_fs(&self) -> &cgroups::CgroupFs {
        &self.inner.cgroup_fs
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn execs(&self) -> &exec::ExecTable {
        &self.inner.execs
    }

    /// When this engine was opened.
    pub fn started(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.started
    }
}
