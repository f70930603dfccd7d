//! Services on one host (issue 15): Docker's swarm-mode services without a cluster. A
//! service's desired state lives in `berth-services`' store (its revisions, each with the
//! image ID its reference resolved to); its tasks are containers of this engine, labelled
//! as Docker labels them (`com.docker.swarm.service.id`, `…task.id`, …).
//!
//! The reconcile loop (one thread) reads each service's record and its tasks, asks
//! `berth_services::plan` what to do, carries the actions out and sleeps until a task's
//! container changes (its events wake the loop), the plan's `wake_at`, or a second. The
//! order of its writes makes a daemon killed at any point resume without duplicates: a
//! task's container is created, then its record written, then the container started; a
//! container with a task label but no record is an orphan of a kill in between and is
//! removed; a recorded task whose container was never started is started.
//!
//! The Docker JSON of a task's container (the spec's `TaskTemplate`) is the API's to
//! decode: it registers a [`TaskFactory`] that turns a revision's spec into the
//! container's create options. Tasks run from the revision's image ID, never the tag, so
//! a rollback runs what ran before even when the tag moved.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_services::{
    plan, Action, Condition, Desired, FailureAction, Health, Millis, Order, Reason,
    RestartPolicy as TaskRestart, RolloutPolicy, ServiceRecord, ServiceStore, StoreError, Task,
    TaskRecord, TaskState,
};
use berth_types::ErrorKind;
use serde_json::Value;
use tracing::{info, warn};

use crate::containers::{ContainerState, CreateOptions};
use crate::error::{EngineError, Result};
use crate::Engine;

/// A service's record with Docker's `ServiceSpec` as each revision's spec.
pub type Service = ServiceRecord<Value>;
pub use berth_services::Rollout;

/// Turns a revision's `ServiceSpec` into the create options of one of its tasks'
/// containers (the API's decoding of `TaskTemplate`); the engine adds the name, the
/// labels and the restart policy (none: the loop restarts tasks).
pub type TaskFactory = Arc<dyn Fn(&Value) -> Result<CreateOptions> + Send + Sync>;

/// Docker's labels on a task's container.
pub const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";
pub const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
pub const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";
pub const LABEL_TASK_NAME: &str = "com.docker.swarm.task.name";
pub const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";

/// Plans carried out in a row before the loop waits (each plan must see the previous
/// one's actions done; a converging service needs a few).
const PLANS_PER_ROUND: usize = 8;
/// The longest the loop sleeps without an event: health and exits it is not told of
/// (a shim killed) are seen within this.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// What an update asks besides a new spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollback {
    /// None: the spec is the new one.
    No,
    /// Docker's `rollback=previous`.
    Previous,
    /// A kept revision by number (berth's `rollback=N`, `berth service rollback --to N`).
    To(u64),
}

/// The loop's shared state (in the engine).
pub(crate) struct ServicesState {
    factory: std::sync::OnceLock<TaskFactory>,
    /// Set by anything that changes a service or a task; the loop clears it.
    wake: Mutex<bool>,
    wake_cv: Condvar,
    /// Task containers being stopped in the background (not stopped twice).
    stopping: Mutex<HashSet<String>>,
    /// Outside a swarm, task containers are swept only when this is set: at daemon start
    /// (a kill may have left orphans) and when the swarm is left. Inside one, every round
    /// sweeps.
    sweep_due: std::sync::atomic::AtomicBool,
    /// Outside a swarm: the overlay networks (the swarm's) are to be removed once their
    /// tasks are gone. Set at daemon start and when the swarm is left.
    swarm_networks_due: std::sync::atomic::AtomicBool,
    /// Held while a service's virtual IPs change: a round that read a service just
    /// before its removal does not allocate them again after the removal freed them.
    vips: Mutex<()>,
}

impl Default for ServicesState {
    fn default() -> Self {
        ServicesState {
            factory: Default::default(),
            wake: Default::default(),
            wake_cv: Default::default(),
            stopping: Default::default(),
            sweep_due: std::sync::atomic::AtomicBool::new(true),
            swarm_networks_due: std::sync::atomic::AtomicBool::new(true),
            vips: Mutex::new(()),
        }
    }
}

/// Where a task is, for Docker's `Status` (its `State`, `Message`, `Err`).
#[derive(Debug, Clone)]
pub struct TaskStatus {
    /// Docker's task state: `starting`, `running`, `complete`, `failed`, `shutdown`,
    /// `rejected`.
    pub state: &'static str,
    pub message: String,
    pub err: Option<String>,
    /// RFC 3339: when the task reached that state.
    pub timestamp: String,
    pub container_id: Option<String>,
    pub pid: i64,
    pub exit_code: Option<i64>,
}

/// A task as `GET /tasks` shows it.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub record: TaskRecord,
    pub service_name: String,
    /// The revision's `ServiceSpec` (the task's `Spec` is its `TaskTemplate`).
    pub spec: Value,
    pub image_id: String,
    /// `running` or `shutdown`.
    pub desired_state: &'static str,
    pub status: TaskStatus,
    /// Of the service's current revision.
    pub up_to_date: bool,
    /// The node it runs on (this one).
    pub node_id: String,
}

/// A service with its tasks' counts (`GET /services?status=true`).
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub service: Service,
    pub running: u64,
    pub desired: u64,
    pub completed: u64,
}

pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn rfc3339_ms(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn ms_of(rfc3339: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

fn store_err(e: StoreError) -> EngineError {
    match e {
        StoreError::NotFound(s) => EngineError::not_found(format!("service {s} not found")),
        StoreError::NameInUse(n) => EngineError::conflict(format!(
            "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {n} exists"
        )),
        e @ StoreError::OutOfSequence { .. } => EngineError::invalid(format!(
            "rpc error: code = Unknown desc = update out of sequence ({e})"
        )),
        e @ (StoreError::NoPrevious(_) | StoreError::NoRevision { .. }) => {
            EngineError::invalid(e.to_string())
        }
        e => EngineError::internal(e.to_string()),
    }
}

/// A duration in nanoseconds (Docker's JSON) at `path` of `v`; `default` when absent.
fn nanos(v: &Value, path: &[&str], default: Duration) -> Result<Duration> {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) if !x.is_null() => cur = x,
            _ => return Ok(default),
        }
    }
    match cur.as_u64() {
        Some(n) => Ok(Duration::from_nanos(n)),
        None => Err(EngineError::invalid(format!(
            "{}: a duration in nanoseconds (a non-negative integer), not {cur}",
            path.join(".")
        ))),
    }
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).filter(|x| !x.is_null())?;
    }
    Some(cur)
}

fn uint(v: &Value, path: &[&str], default: u64) -> Result<u64> {
    match field(v, path) {
        None => Ok(default),
        Some(x) => x.as_u64().ok_or_else(|| {
            EngineError::invalid(format!(
                "{}: a non-negative integer, not {x}",
                path.join(".")
            ))
        }),
    }
}

fn string<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str> {
    match field(v, path) {
        None => Ok(""),
        Some(x) => x
            .as_str()
            .ok_or_else(|| EngineError::invalid(format!("{}: a string, not {x}", path.join(".")))),
    }
}

/// The replica count a spec asks for (`Mode.Replicated.Replicas`, 1 by default; a global
/// service runs one task on this one node).
pub fn replicas_of(spec: &Value) -> Result<u64> {
    let mode = field(spec, &["Mode"]);
    let global = mode.and_then(|m| field(m, &["Global"])).is_some();
    let replicated = mode.and_then(|m| field(m, &["Replicated"])).is_some();
    if mode.is_some_and(|m| {
        m.as_object().is_some_and(|o| {
            o.iter()
                .any(|(k, v)| !v.is_null() && k != "Global" && k != "Replicated")
        })
    }) {
        return Err(EngineError::new(
            ErrorKind::NotImplemented,
            "service mode: only replicated and global services are supported by berth (not jobs)",
        ));
    }
    if global && replicated {
        return Err(EngineError::invalid(
            "service mode: Replicated and Global are exclusive",
        ));
    }
    if global {
        return Ok(1);
    }
    uint(spec, &["Mode", "Replicated", "Replicas"], 1)
}

fn rollout_policy(spec: &Value, key: &str) -> Result<RolloutPolicy> {
    let d = RolloutPolicy::default();
    let Some(c) = field(spec, &[key]) else {
        return Ok(d);
    };
    let failure_action = match string(c, &["FailureAction"])? {
        "" | "pause" => FailureAction::Pause,
        "continue" => FailureAction::Continue,
        "rollback" if key == "UpdateConfig" => FailureAction::Rollback,
        other => {
            return Err(EngineError::invalid(format!(
                "{key}.FailureAction: {other:?} is not one of pause, continue{}",
                if key == "UpdateConfig" {
                    ", rollback"
                } else {
                    ""
                }
            )))
        }
    };
    let order = match string(c, &["Order"])? {
        "" | "stop-first" => Order::StopFirst,
        "start-first" => Order::StartFirst,
        other => {
            return Err(EngineError::invalid(format!(
                "{key}.Order: {other:?} is not one of stop-first, start-first"
            )))
        }
    };
    let max_failure_ratio = match field(c, &["MaxFailureRatio"]) {
        None => 0.0,
        Some(x) => match x.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                return Err(EngineError::invalid(format!(
                    "{key}.MaxFailureRatio: a number from 0 to 1, not {x}"
                )))
            }
        },
    };
    let monitor = nanos(c, &["Monitor"], d.monitor)?;
    Ok(RolloutPolicy {
        parallelism: uint(c, &["Parallelism"], d.parallelism)?,
        delay: nanos(c, &["Delay"], d.delay)?,
        failure_action,
        // Docker: an unset (zero) monitor is the default's 5 s.
        monitor: if monitor.is_zero() {
            d.monitor
        } else {
            monitor
        },
        max_failure_ratio,
        order,
    })
}

fn restart_policy(spec: &Value) -> Result<TaskRestart> {
    let d = TaskRestart::default();
    let Some(p) = field(spec, &["TaskTemplate", "RestartPolicy"]) else {
        return Ok(d);
    };
    let condition = match string(p, &["Condition"])? {
        "" | "any" => Condition::Any,
        "on-failure" => Condition::OnFailure,
        "none" => Condition::None,
        other => {
            return Err(EngineError::invalid(format!(
            "TaskTemplate.RestartPolicy.Condition: {other:?} is not one of none, on-failure, any"
        )))
        }
    };
    Ok(TaskRestart {
        condition,
        delay: nanos(p, &["Delay"], d.delay)?,
        max_attempts: uint(p, &["MaxAttempts"], 0)?,
        window: nanos(p, &["Window"], Duration::ZERO)?,
    })
}

/// Checks what the engine reads of a spec (mode, restart, update and rollback
/// settings): the errors name the field.
fn check_spec(spec: &Value) -> Result<()> {
    replicas_of(spec)?;
    restart_policy(spec)?;
    rollout_policy(spec, "UpdateConfig")?;
    rollout_policy(spec, "RollbackConfig")?;
    Ok(())
}

/// The image reference a spec's tasks run.
fn image_of(spec: &Value) -> Result<String> {
    match string(spec, &["TaskTemplate", "ContainerSpec", "Image"])? {
        "" => Err(EngineError::invalid(
            "ContainerSpec: image reference must be provided",
        )),
        s => Ok(s.to_string()),
    }
}

/// One of a service's published ports (`EndpointSpec.Ports`, ingress mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePort {
    pub proto: berth_net::nft::Proto,
    /// 0 until allocated (create and update allocate it).
    pub published: u16,
    pub target: u16,
}

/// The first port Docker allocates for a service that publishes without choosing one.
const SERVICE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// A service's published ports as its spec asks (the errors name the field).
/// The networks a spec's tasks attach to (names or IDs as given: `TaskTemplate.Networks`,
/// else the deprecated top-level `Networks`) and the aliases they ask for there.
fn service_networks(spec: &Value) -> (Vec<String>, Vec<String>) {
    let list = field(spec, &["TaskTemplate", "Networks"])
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .or_else(|| field(spec, &["Networks"]).and_then(Value::as_array));
    let mut networks = Vec::new();
    let mut aliases = Vec::new();
    for n in list.into_iter().flatten() {
        if let Some(t) = n.get("Target").and_then(Value::as_str) {
            networks.push(t.to_string());
        }
        for a in n
            .get("Aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !aliases.iter().any(|x: &String| x == a) {
                aliases.push(a.to_string());
            }
        }
    }
    (networks, aliases)
}

pub fn service_ports(spec: &Value) -> Result<Vec<ServicePort>> {
    let Some(ports) = field(spec, &["EndpointSpec", "Ports"]) else {
        return Ok(Vec::new());
    };
    let Some(ports) = ports.as_array() else {
        return Err(EngineError::invalid("EndpointSpec.Ports: a list"));
    };
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("EndpointSpec.Ports[{i}]");
        let proto = match string(p, &["Protocol"])? {
            "" | "tcp" => berth_net::nft::Proto::Tcp,
            "udp" => berth_net::nft::Proto::Udp,
            other => {
                return Err(EngineError::new(
                    ErrorKind::NotImplemented,
                    format!("{at}.Protocol: {other:?} is not supported by berth (tcp, udp)"),
                ))
            }
        };
        match string(p, &["PublishMode"])? {
            "" | "ingress" => {}
            "host" => {
                return Err(EngineError::new(
                    ErrorKind::NotImplemented,
                    format!("{at}.PublishMode: host mode is not supported yet by berth (ingress: the port spreads over the tasks)"),
                ))
            }
            other => {
                return Err(EngineError::invalid(format!(
                    "{at}.PublishMode: {other:?} is not one of ingress, host"
                )))
            }
        }
        let port = |name: &str| -> Result<u16> {
            let n = uint(p, &[name], 0)?;
            u16::try_from(n)
                .map_err(|_| EngineError::invalid(format!("{at}.{name}: {n} is not a port")))
        };
        let target = port("TargetPort")?;
        if target == 0 {
            return Err(EngineError::invalid(format!(
                "{at}.TargetPort: a published port needs a target port"
            )));
        }
        let published = port("PublishedPort")?;
        if let Some(o) = out
            .iter()
            .find(|o: &&ServicePort| o.proto == proto && published != 0 && o.published == published)
        {
            return Err(EngineError::invalid(format!(
                "{at}: port {}/{} is published twice",
                o.published, o.proto
            )));
        }
        out.push(ServicePort {
            proto,
            published,
            target,
        });
    }
    Ok(out)
}

impl Engine {
    /// Gives each published port of `spec` asking for none (PublishedPort 0) a free port
    /// of Docker's range (written into the spec), and refuses a port another service or
    /// a running container holds.
    fn allocate_service_ports(&self, spec: &mut Value, service_id: &str) -> Result<()> {
        let ports = service_ports(spec)?;
        if ports.is_empty() {
            return Ok(());
        }
        let others: Vec<ServicePort> = self
            .service_store()
            .services::<Value>()
            .map_err(store_err)?
            .iter()
            .filter(|s| s.id != service_id)
            .filter_map(|s| s.current())
            .map(|r| service_ports(&r.spec))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let taken = |proto: berth_net::nft::Proto, port: u16, mine: &[ServicePort]| {
            others
                .iter()
                .chain(mine)
                .any(|o| o.proto == proto && o.published == port)
                || self
                    .host_port_in_use(proto.as_str(), port, service_id)
                    .is_some()
        };
        let mut done: Vec<ServicePort> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let published = if p.published == 0 {
                SERVICE_PORT_RANGE
                    .clone()
                    .find(|&n| !taken(p.proto, n, &done))
                    .ok_or_else(|| {
                        EngineError::new(
                            ErrorKind::Unavailable,
                            "no free port left in 30000-32767 for a service",
                        )
                    })?
            } else {
                if others
                    .iter()
                    .any(|o| o.proto == p.proto && o.published == p.published)
                {
                    return Err(EngineError::invalid(format!(
                        "port '{}' is already in use by another service",
                        p.published
                    )));
                }
                if let Some(who) = self.host_port_in_use(p.proto.as_str(), p.published, service_id)
                {
                    return Err(EngineError::invalid(format!(
                        "port {}/{} is already published by {who}",
                        p.published, p.proto
                    )));
                }
                p.published
            };
            if let Some(slot) = spec
                .pointer_mut(&format!("/EndpointSpec/Ports/{i}"))
                .and_then(Value::as_object_mut)
            {
                slot.insert("PublishedPort".into(), Value::from(published));
            }
            done.push(ServicePort { published, ..*p });
        }
        Ok(())
    }

    /// Whether the container's health check says healthy now.
    fn container_healthy(&self, cid: &str) -> bool {
        self.container_status(cid)
            .health
            .as_ref()
            .is_some_and(|h| h.status == "healthy")
    }

    /// Whether a task's container runs and is ready (healthy, where it has a check).
    fn task_ready(&self, t: &TaskRecord) -> Option<(String, std::net::Ipv4Addr)> {
        if t.shutdown.is_some() || t.error.is_some() {
            return None;
        }
        let cid = t.container_id.as_deref()?;
        let rec = self.container(cid).ok()?;
        if !matches!(
            self.container_state(cid).ok()?,
            ContainerState::Running { .. }
        ) {
            return None;
        }
        if rec.run.healthcheck.is_some() && !self.container_healthy(cid) {
            return None;
        }
        self.container_ipv4(cid).map(|ip| (cid.to_string(), ip))
    }

    /// Points the service's published ports at its ready tasks (none: the ports are
    /// released). Called after every round and before a task is stopped, so a task
    /// leaves the load balancer before it gets its stop signal.
    fn refresh_service_lb(&self, svc: &Service) -> Result<()> {
        let ready: Vec<(String, std::net::Ipv4Addr)> = self
            .service_store()
            .tasks(Some(&svc.id))
            .map_err(store_err)?
            .iter()
            .filter_map(|t| self.task_ready(t))
            .collect();
        // Its names on its networks: the ready tasks.
        let spec = svc.current().map_or(&Value::Null, |r| &r.spec);
        let (networks, aliases) = service_networks(spec);
        let mut names = vec![svc.name.clone(), format!("tasks.{}", svc.name)];
        names.extend(aliases);
        self.set_service_dns(
            &svc.id,
            Some((
                networks,
                names,
                ready.iter().map(|(c, _)| c.clone()).collect(),
            )),
        );
        self.sync_service_vips(svc)?;
        let ports = service_ports(spec)?;
        if ports.is_empty() {
            return self.set_service_ports(&svc.id, Vec::new());
        }
        let mut backends: Vec<std::net::Ipv4Addr> = ready.iter().map(|(_, ip)| *ip).collect();
        backends.sort();
        let rules = ports
            .iter()
            .filter(|p| p.published != 0)
            .map(|p| berth_net::nft::ServicePortRule {
                service: svc.name.clone(),
                proto: p.proto,
                host_port: p.published,
                target_port: p.target,
                backends: backends.clone(),
            })
            .collect();
        self.set_service_ports(&svc.id, rules)
    }

    /// A virtual IP on each of the service's networks unless `EndpointSpec.Mode` is
    /// dnsrr (allocated, kept or released to match its current spec).
    fn sync_service_vips(&self, svc: &Service) -> Result<()> {
        let _g = self
            .services_state()
            .vips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.service_store().service::<Value>(&svc.id).is_err() {
            return Ok(()); // removed meanwhile: its removal released them
        }
        let spec = svc.current().map_or(&Value::Null, |r| &r.spec);
        let dnsrr = field(spec, &["EndpointSpec", "Mode"]).and_then(Value::as_str) == Some("dnsrr");
        let vip_networks = if dnsrr {
            Vec::new()
        } else {
            service_networks(spec).0
        };
        self.set_service_vips(&svc.id, &svc.name, &vip_networks)
            .map(drop)
    }

    pub(crate) fn service_store(&self) -> ServiceStore {
        ServiceStore::new(self.store().meta.clone())
    }

    fn services_state(&self) -> &ServicesState {
        &self.inner.services
    }

    /// Registers the decoding of task templates and starts the reconcile loop (once).
    pub fn start_services(&self, factory: TaskFactory) {
        if self.services_state().factory.set(factory).is_err() {
            return;
        }
        let weak = self.downgrade();
        let spawned = std::thread::Builder::new()
            .name("services".into())
            .spawn(move || services_loop(&weak));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the services' reconcile loop");
        }
    }

    /// Wakes the reconcile loop (a service or one of its tasks changed).
    pub(crate) fn wake_services(&self) {
        let st = self.services_state();
        *st.wake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        st.wake_cv.notify_all();
    }

    fn task_options(&self, spec: &Value) -> Result<CreateOptions> {
        match self.services_state().factory.get() {
            Some(f) => f(spec),
            None => Err(EngineError::new(
                ErrorKind::Unavailable,
                "services are not available: the reconcile loop is not running",
            )),
        }
    }

    /// The image ID a spec's reference resolves to on this host.
    fn resolve_service_image(&self, spec: &Value) -> Result<String> {
        let image = image_of(spec)?;
        // A reference pinned by the docker CLI (`name:tag@sha256:…` of a registry's
        // manifest) resolves by its digest; the tag is only shown.
        let (rec, _) = self.resolve(&image).map_err(|e| {
            if e.kind == ErrorKind::NotFound {
                EngineError::invalid(format!(
                    "service image {image}: no such image on this host (berth resolves a service's image when the service is created or updated: pull or load it first)"
                ))
            } else {
                e
            }
        })?;
        Ok(rec.id.to_string())
    }

    /// `POST /services/create`: checks the spec (the task template through the factory,
    /// the image on this host), records revision 1; the loop starts the tasks.
    pub fn create_service(&self, name: &str, mut spec: Value) -> Result<Service> {
        let swarm = self.swarm_required()?;
        check_spec(&spec)?;
        let opts = self.task_options(&spec)?;
        self.check_task_files(&opts.task_files)?;
        let image_id = self.resolve_service_image(&spec)?;
        let id = crate::swarm::base36(25)?;
        self.allocate_service_ports(&mut spec, &id)?;
        let rec = self
            .service_store()
            .create(&id, name, spec, &image_id, now_ms())
            .map_err(store_err)?;
        // Its virtual IPs before the answer, as Docker's (inspect shows them at once).
        if let Err(e) = self.sync_service_vips(&rec) {
            let _ = self.set_service_vips(&id, name, &[]);
            let _ = self.service_store().remove(&id);
            return Err(e);
        }
        info!(service.id = %id, service.name = name, node.id = %swarm.node_id, image = %image_id, "service created");
        self.emit_service(&rec, "create");
        self.wake_services();
        Ok(rec)
    }

    /// Every service.
    pub fn services(&self) -> Result<Vec<ServiceView>> {
        let store = self.service_store();
        let services: Vec<Service> = store.services().map_err(store_err)?;
        let tasks = store.tasks(None).map_err(store_err)?;
        let mut out = Vec::new();
        for s in services {
            let desired = s.current().map_or(Ok(0), |r| replicas_of(&r.spec))?;
            let mut running = 0;
            let mut completed = 0;
            for t in tasks.iter().filter(|t| t.service_id == s.id) {
                match self.task_container_state(t) {
                    Some(ContainerState::Running { .. }) if t.shutdown.is_none() => running += 1,
                    Some(ContainerState::Exited(x)) if x.exit_code == 0 => completed += 1,
                    _ => {}
                }
            }
            out.push(ServiceView {
                service: s,
                running,
                desired,
                completed,
            });
        }
        Ok(out)
    }

    /// The service whose ID, name or unique ID prefix is `key`.
    pub fn service(&self, key: &str) -> Result<Service> {
        self.swarm_required()?;
        self.service_store().find(key).map_err(store_err)
    }

    /// `POST /services/{id}/update?version=N[&rollback=previous|REVISION]`: a spec whose
    /// task template changed is a new revision (its image resolved now) and a rolling
    /// update; one that only changes the service (replicas, labels, update settings)
    /// changes the current revision in place. `rollback`: the previous revision (or the
    /// kept revision named) becomes current, with the image ID it recorded.
    pub fn update_service(
        &self,
        key: &str,
        version: u64,
        mut spec: Value,
        rollback: Rollback,
    ) -> Result<Service> {
        let cur = self.service(key)?;
        let store = self.service_store();
        let now = now_ms();
        let to = match rollback {
            Rollback::No => None,
            Rollback::Previous => Some(None),
            Rollback::To(n) => Some(Some(n)),
        };
        let rec = if let Some(to) = to {
            if to == Some(cur.revision) {
                return Err(EngineError::invalid(format!(
                    "service {}: revision {} is the current one",
                    cur.name, cur.revision
                )));
            }
            store
                .rollback::<Value>(&cur.id, Some(version), to, now)
                .map_err(store_err)?
        } else {
            check_spec(&spec)?;
            // A port the service had stays its own when the new spec asks for any.
            self.keep_published_ports(&cur, &mut spec);
            self.allocate_service_ports(&mut spec, &cur.id)?;
            if let Some(n) = field(&spec, &["Name"]).and_then(Value::as_str) {
                if !n.is_empty() && n != cur.name {
                    return Err(EngineError::invalid(format!(
                        "service {}: renaming services is not supported",
                        cur.name
                    )));
                }
            }
            let same_tasks = cur.current().is_some_and(|r| {
                field(&r.spec, &["TaskTemplate"]) == field(&spec, &["TaskTemplate"])
            });
            if same_tasks {
                store
                    .respec(&cur.id, version, spec, now)
                    .map_err(store_err)?
            } else {
                let opts = self.task_options(&spec)?;
                self.check_task_files(&opts.task_files)?;
                let image_id = self.resolve_service_image(&spec)?;
                store
                    .update(&cur.id, version, spec, &image_id, now)
                    .map_err(store_err)?
            }
        };
        // Networks the new spec names get their virtual IPs before the answer.
        if let Err(e) = self.sync_service_vips(&rec) {
            warn!(service.id = %rec.id, error = %e, "service virtual IPs: the reconcile loop tries again");
        }
        info!(service.id = %rec.id, revision = rec.revision, ?rollback, "service updated");
        self.emit_service(&rec, "update");
        self.wake_services();
        Ok(rec)
    }

    /// An update asking for a port without a number (PublishedPort 0) for a target the
    /// service already publishes keeps the port it has (Docker keeps it too).
    fn keep_published_ports(&self, cur: &Service, spec: &mut Value) {
        let Some(had) = cur.current().and_then(|r| service_ports(&r.spec).ok()) else {
            return;
        };
        let Some(ports) = spec
            .pointer_mut("/EndpointSpec/Ports")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for p in ports {
            let zero = p.get("PublishedPort").and_then(Value::as_u64).unwrap_or(0) == 0;
            let target = p.get("TargetPort").and_then(Value::as_u64).unwrap_or(0);
            let proto = p.get("Protocol").and_then(Value::as_str).unwrap_or("tcp");
            if let Some(h) = had.iter().find(|h| {
                u64::from(h.target) == target
                    && h.proto.as_str() == if proto.is_empty() { "tcp" } else { proto }
            }) {
                if zero {
                    if let Some(o) = p.as_object_mut() {
                        o.insert("PublishedPort".into(), Value::from(h.published));
                    }
                }
            }
        }
    }

    /// `DELETE /services/{id}`: the record and its tasks' records go now; the loop stops
    /// the tasks' containers (within their grace period) and removes them.
    pub fn remove_service(&self, key: &str) -> Result<()> {
        let cur = self.service(key)?;
        {
            let _g = self
                .services_state()
                .vips
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.service_store().remove(&cur.id).map_err(store_err)?;
            // Its virtual IPs are free once the answer is given (its tasks stop meanwhile).
            if let Err(e) = self.set_service_vips(&cur.id, &cur.name, &[]) {
                warn!(service.id = %cur.id, error = %e, "service virtual IPs: the reconcile loop releases them");
            }
        }
        info!(service.id = %cur.id, service.name = %cur.name, "service removed");
        self.emit_service(&cur, "remove");
        self.wake_services();
        Ok(())
    }

    /// `docker swarm leave --force`: the services go with the swarm.
    pub(crate) fn remove_all_services(&self) -> Result<()> {
        let store = self.service_store();
        let all: Vec<Service> = store.services().map_err(store_err)?;
        for s in all {
            store.remove(&s.id).map_err(store_err)?;
            self.emit_service(&s, "remove");
        }
        self.remove_all_objects()?;
        self.services_state()
            .sweep_due
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.services_state()
            .swarm_networks_due
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake_services();
        Ok(())
    }

    /// Outside a swarm: removes the overlay networks (they went with the swarm, as on a
    /// Docker node that leaves) that nothing uses any more. Returns whether some wait for
    /// task containers still stopping. One that a container which is not a task uses
    /// stays, with a warning (the operator removes it).
    fn remove_swarm_networks(&self) -> Result<bool> {
        let overlays: Vec<(String, String)> = self
            .list_networks()
            .into_iter()
            .filter(|n| n.record.driver == "overlay")
            .map(|n| (n.record.id, n.record.name))
            .collect();
        if overlays.is_empty() {
            return Ok(false);
        }
        let records = self.container_records()?;
        let mut pending = false;
        for (id, name) in overlays {
            let users: Vec<&crate::ContainerRecord> = records
                .iter()
                .filter(|c| c.net.networks.iter().any(|a| a.network_id == id))
                .collect();
            if users.is_empty() {
                self.remove_network_now(&id)?;
                info!(network = %name, "overlay network removed with the swarm");
            } else if users.iter().all(|c| c.labels.contains_key(LABEL_TASK_ID)) {
                pending = true;
            } else {
                warn!(network = %name, "overlay network kept after the swarm: containers that are not tasks use it");
            }
        }
        Ok(pending)
    }

    fn emit_service(&self, s: &Service, action: &str) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), s.name.clone());
        self.emit(
            crate::events::EventType::Service,
            action,
            s.id.clone(),
            attrs,
        );
    }

    fn task_container_state(&self, t: &TaskRecord) -> Option<ContainerState> {
        let cid = t.container_id.as_deref()?;
        self.container(cid).ok()?;
        self.container_state(cid).ok()
    }

    /// Every task (of `service` when given), newest first.
    pub fn tasks(&self, service: Option<&str>) -> Result<Vec<TaskView>> {
        let swarm = self.swarm_required()?;
        let store = self.service_store();
        let services: Vec<Service> = store.services().map_err(store_err)?;
        let sid = match service {
            Some(k) => Some(store.find::<Value>(k).map_err(store_err)?.id),
            None => None,
        };
        let mut out = Vec::new();
        for t in store.tasks(sid.as_deref()).map_err(store_err)? {
            let Some(s) = services.iter().find(|s| s.id == t.service_id) else {
                continue;
            };
            let Some(rev) = s.revision_of(t.revision).or_else(|| s.current()) else {
                continue;
            };
            let status = self.task_status(&t);
            out.push(TaskView {
                service_name: s.name.clone(),
                spec: rev.spec.clone(),
                image_id: rev.image_digest.clone(),
                desired_state: if t.shutdown.is_some() {
                    "shutdown"
                } else {
                    "running"
                },
                up_to_date: t.revision == s.revision,
                node_id: swarm.node_id.clone(),
                status,
                record: t,
            });
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.record.created_at));
        Ok(out)
    }

    fn task_status(&self, t: &TaskRecord) -> TaskStatus {
        let base = TaskStatus {
            state: "starting",
            message: "starting".into(),
            err: None,
            timestamp: rfc3339_ms(t.created_at),
            container_id: t.container_id.clone(),
            pid: 0,
            exit_code: None,
        };
        if let Some(err) = &t.error {
            return TaskStatus {
                state: if t.container_id.is_some() {
                    "failed"
                } else {
                    "rejected"
                },
                message: "failed".into(),
                err: Some(err.clone()),
                timestamp: rfc3339_ms(t.ended_at.unwrap_or(t.created_at)),
                ..base
            };
        }
        match self.task_container_state(t) {
            None => TaskStatus {
                state: if t.shutdown.is_some() {
                    "shutdown"
                } else {
                    "orphaned"
                },
                message: "removed".into(),
                err: t
                    .shutdown
                    .is_none()
                    .then(|| "task: the container was removed".to_string()),
                timestamp: rfc3339_ms(t.ended_at.unwrap_or(t.created_at)),
                ..base
            },
            Some(ContainerState::Created) => base,
            // Docker's task with a health check stays "starting" until its container is
            // first healthy (clients that wait for a rollout count running tasks, then
            // wait the monitor period: counting unready ones would end their wait before
            // the rollout can).
            Some(ContainerState::Running { pid, .. })
                if t.ready_at.is_none()
                    && t.container_id.as_deref().is_some_and(|cid| {
                        self.container(cid)
                            .is_ok_and(|r| r.run.healthcheck.is_some())
                            && !self.container_healthy(cid)
                    }) =>
            {
                TaskStatus {
                    pid: i64::from(pid),
                    ..base
                }
            }
            Some(ContainerState::Running { pid, started_at }) => TaskStatus {
                state: "running",
                message: "started".into(),
                timestamp: started_at,
                pid: i64::from(pid),
                ..base
            },
            Some(ContainerState::Exited(x)) => {
                let by_berth = matches!(t.shutdown, Some(Reason::Update | Reason::Surplus));
                let unhealthy = t.shutdown == Some(Reason::Unhealthy);
                let (state, err) = if unhealthy {
                    (
                        "failed",
                        Some(format!(
                            "task: non-zero exit ({}): the container was unhealthy",
                            x.exit_code
                        )),
                    )
                } else if by_berth {
                    ("shutdown", None)
                } else if x.exit_code == 0 {
                    ("complete", None)
                } else {
                    (
                        "failed",
                        Some(format!("task: non-zero exit ({})", x.exit_code)),
                    )
                };
                TaskStatus {
                    state,
                    message: if state == "shutdown" {
                        "shutdown".into()
                    } else {
                        "finished".into()
                    },
                    err,
                    timestamp: x.finished_at.clone(),
                    exit_code: Some(i64::from(x.exit_code)),
                    ..base
                }
            }
            Some(ContainerState::Dead) => TaskStatus {
                state: "failed",
                message: "finished".into(),
                err: Some("task: the container's supervisor is gone".into()),
                ..base
            },
        }
    }

    /// The planner's view of one task (and what to record of what was seen: the time it
    /// was first ready, the time its container went missing).
    fn plan_task(&self, t: &mut TaskRecord, has_health: &mut bool, now: Millis) -> (Task, bool) {
        let mut changed = false;
        let ended = |t: &mut TaskRecord, changed: &mut bool| {
            if t.ended_at.is_none() {
                t.ended_at = Some(now);
                *changed = true;
            }
            TaskState::Exited {
                code: 137,
                at: t.ended_at.unwrap_or(now),
            }
        };
        let state = if t.error.is_some() {
            TaskState::Exited {
                code: 255,
                at: t.ended_at.unwrap_or(t.created_at),
            }
        } else {
            match (t.container_id.clone(), self.task_container_state(t)) {
                (None, _) | (_, None) => ended(t, &mut changed),
                // Recorded, never started (a kill between the two): the loop starts wanted
                // ones; the planner sees it pending.
                (Some(_), Some(ContainerState::Created)) => TaskState::Pending,
                (Some(cid), Some(ContainerState::Running { started_at, .. })) => {
                    let rec = self.container(&cid).ok();
                    *has_health = rec.as_ref().is_some_and(|r| r.run.healthcheck.is_some());
                    let health = if *has_health {
                        match self
                            .container_status(&cid)
                            .health
                            .as_ref()
                            .map(|h| h.status.as_str())
                        {
                            Some("healthy") => Health::Healthy,
                            Some("unhealthy") => Health::Unhealthy,
                            _ => Health::Starting,
                        }
                    } else {
                        Health::None
                    };
                    if t.ready_at.is_none() && matches!(health, Health::None | Health::Healthy) {
                        t.ready_at = Some(now);
                        changed = true;
                    }
                    TaskState::Running {
                        since: ms_of(&started_at).unwrap_or(now),
                        health,
                        ready_at: t.ready_at,
                    }
                }
                (_, Some(ContainerState::Exited(x))) => TaskState::Exited {
                    code: i64::from(x.exit_code),
                    at: ms_of(&x.finished_at).unwrap_or(now),
                },
                (_, Some(ContainerState::Dead)) => ended(t, &mut changed),
            }
        };
        (
            Task {
                id: t.id.clone(),
                slot: t.slot,
                revision: t.revision,
                state,
                shutdown: t.shutdown,
                created_at: t.created_at,
            },
            changed,
        )
    }

    /// One round for one service: plans and carries out until nothing is left to do now.
    /// Returns when to plan again.
    fn reconcile_service(&self, id: &str, history_limit: usize) -> Result<Option<Millis>> {
        let store = self.service_store();
        let mut wake = None;
        for _ in 0..PLANS_PER_ROUND {
            let now = now_ms();
            let svc: Service = match store.service(id) {
                Ok(s) => s,
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(store_err(e)),
            };
            let Some(cur) = svc.current() else {
                return Err(EngineError::internal(format!(
                    "service {}: its current revision {} is not kept",
                    svc.name, svc.revision
                )));
            };
            let desired = Desired {
                revision: svc.revision,
                replicas: replicas_of(&cur.spec)?,
                restart: restart_policy(&cur.spec)?,
                update: rollout_policy(&cur.spec, "UpdateConfig")?,
                rollback: rollout_policy(&cur.spec, "RollbackConfig")?,
                rollout: svc.rollout.clone(),
                rollout_started_at: svc.rollout_started_at,
                can_roll_back: svc.previous.is_some(),
                history_limit,
            };
            let mut records = store.tasks(Some(id)).map_err(store_err)?;
            let mut tasks = Vec::with_capacity(records.len());
            for r in &mut records {
                let mut has_health = false;
                let (t, changed) = self.plan_task(r, &mut has_health, now);
                if changed {
                    store.put_task(r).map_err(store_err)?;
                }
                // A wanted task recorded but never started: start it now.
                if t.state == TaskState::Pending && t.shutdown.is_none() {
                    self.start_task(r);
                }
                tasks.push(t);
            }
            let p = plan(&desired, &tasks, now);
            wake = p.wake_at;
            if p.actions.is_empty() {
                // Ready tasks in, the others out.
                self.refresh_service_lb(&svc)?;
                break;
            }
            for a in p.actions {
                self.carry_out(&svc, &mut records, a, now)?;
            }
        }
        Ok(wake)
    }

    fn carry_out(
        &self,
        svc: &Service,
        records: &mut [TaskRecord],
        action: Action,
        now: Millis,
    ) -> Result<()> {
        let store = self.service_store();
        match action {
            Action::Start { slot, revision } => self.create_task(svc, slot, revision, now),
            Action::Shutdown { task, reason } => {
                let Some(r) = records.iter_mut().find(|r| r.id == task) else {
                    return Ok(());
                };
                r.shutdown = Some(reason);
                store.put_task(r).map_err(store_err)?;
                info!(service.name = %svc.name, task.id = %r.id, slot = r.slot, ?reason, "task shut down");
                // Out of the load balancer first: no new connection reaches it once it
                // gets its stop signal; the ones it has finish within its grace period.
                if let Err(e) = self.refresh_service_lb(svc) {
                    warn!(service.name = %svc.name, error = %e, "load balancer not updated");
                }
                if let Some(cid) = r.container_id.clone() {
                    let grace = svc
                        .revision_of(r.revision)
                        .and_then(|rev| {
                            field(
                                &rev.spec,
                                &["TaskTemplate", "ContainerSpec", "StopGracePeriod"],
                            )
                        })
                        .and_then(Value::as_u64)
                        .map(|n| i64::try_from(n.div_ceil(1_000_000_000)).unwrap_or(i64::MAX));
                    self.stop_task_container(cid, grace, false);
                }
                Ok(())
            }
            Action::Remove { task } => {
                if let Some(r) = records.iter().find(|r| r.id == task) {
                    if let Some(cid) = &r.container_id {
                        match self.remove_container_and_volumes(cid, true, true) {
                            Err(e) if e.kind != ErrorKind::NotFound => return Err(e),
                            _ => {}
                        }
                    }
                }
                store.remove_task(&task).map_err(store_err)
            }
            Action::Rollout(r) => {
                info!(service.name = %svc.name, rollout = r.docker_state(), "rollout");
                store
                    .set_rollout::<Value>(&svc.id, r, now)
                    .map(|_| ())
                    .map_err(store_err)
            }
            Action::Rollback(msg) => {
                warn!(service.name = %svc.name, "{msg}");
                store
                    .rollback::<Value>(&svc.id, None, None, now)
                    .map(|_| ())
                    .map_err(store_err)
            }
        }
    }

    /// A new task of `svc` in `slot` from `revision`: its container is created, then its
    /// record written, then the container started. A task whose container cannot be
    /// created or started is recorded as failed (the planner applies the restart policy).
    fn create_task(&self, svc: &Service, slot: u64, revision: u64, now: Millis) -> Result<()> {
        let store = self.service_store();
        let Some(rev) = svc.revision_of(revision) else {
            return Err(EngineError::internal(format!(
                "service {}: revision {revision} is not kept",
                svc.name
            )));
        };
        let task_id = crate::swarm::base36(25)?;
        let node_id = self.swarm()?.map(|s| s.node_id).unwrap_or_default();
        let mut rec = TaskRecord {
            schema: berth_services::store::SCHEMA,
            id: task_id.clone(),
            service_id: svc.id.clone(),
            slot,
            revision,
            container_id: None,
            created_at: now,
            shutdown: None,
            ready_at: None,
            ended_at: None,
            error: None,
        };
        let name = format!("{}.{slot}.{task_id}", svc.name);
        let created = self.task_options(&rev.spec).and_then(|mut opts| {
            opts.name = Some(name.clone());
            opts.labels.insert(LABEL_SERVICE_ID.into(), svc.id.clone());
            opts.labels
                .insert(LABEL_SERVICE_NAME.into(), svc.name.clone());
            opts.labels.insert(LABEL_TASK_ID.into(), task_id.clone());
            opts.labels.insert(LABEL_TASK_NAME.into(), name.clone());
            opts.labels.insert(LABEL_NODE_ID.into(), node_id.clone());
            opts.settings.restart_policy = Default::default();
            opts.settings.auto_remove = false;
            self.create_container(&rev.image_digest, &opts)
        });
        match created {
            Ok(c) => rec.container_id = Some(c.id),
            Err(e) => {
                warn!(service.name = %svc.name, slot, error = %e, "task rejected: its container cannot be created");
                rec.error = Some(e.message);
                rec.ended_at = Some(now);
            }
        }
        store.put_task(&rec).map_err(store_err)?;
        if rec.error.is_none() {
            info!(service.name = %svc.name, task.id = %task_id, slot, revision, "task created");
            self.start_task(&mut rec);
        }
        Ok(())
    }

    /// Starts a recorded task's container; a failure is recorded with the task.
    fn start_task(&self, rec: &mut TaskRecord) {
        let Some(cid) = rec.container_id.clone() else {
            return;
        };
        if let Err(e) = self.start_container(&cid) {
            warn!(task.id = %rec.id, error = %e, "task failed: its container did not start");
            rec.error = Some(e.message);
            rec.ended_at = Some(now_ms());
            if let Err(e) = self.service_store().put_task(rec) {
                warn!(task.id = %rec.id, error = %e, "task failure not recorded");
            }
        }
    }

    /// Stops a task's container within `grace` seconds in the background (once), then
    /// removes it when `remove` (its task is gone).
    fn stop_task_container(&self, cid: String, grace: Option<i64>, remove: bool) {
        {
            let mut s = self
                .services_state()
                .stopping
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !s.insert(cid.clone()) {
                return;
            }
        }
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("task-stop-{}", &cid[..12.min(cid.len())]))
            .spawn({
                let cid = cid.clone();
                move || {
                    if let Err(e) = engine.stop_container(&cid, grace, None) {
                        if e.kind != ErrorKind::NotFound {
                            warn!(container.id = %cid, error = %e, "stopping a task failed");
                        }
                    }
                    if remove {
                        if let Err(e) = engine.remove_container_and_volumes(&cid, true, true) {
                            if e.kind != ErrorKind::NotFound {
                                warn!(container.id = %cid, error = %e, "removing a task failed");
                            }
                        }
                    }
                    engine
                        .services_state()
                        .stopping
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&cid);
                    engine.wake_services();
                }
            });
        if let Err(e) = spawned {
            warn!(container.id = %cid, error = %e, "cannot stop a task");
            self.services_state()
                .stopping
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&cid);
        }
    }

    /// Containers labelled as tasks whose task record is gone (their service was removed,
    /// or the daemon was killed between a container's create and its record): stopped
    /// within their grace period and removed.
    fn sweep_task_containers(&self) -> Result<()> {
        match self.service_store().prune_orphan_tasks() {
            Ok(0) => {}
            Ok(n) => info!(tasks = n, "records of tasks whose service is gone removed"),
            Err(e) => warn!(error = %e, "records of tasks whose service is gone not removed"),
        }
        let known: HashSet<String> = self
            .service_store()
            .tasks(None)
            .map_err(store_err)?
            .into_iter()
            .map(|t| t.id)
            .collect();
        // The records only (no state): this runs every round inside a swarm.
        for c in self.container_records()? {
            let Some(task) = c.labels.get(LABEL_TASK_ID) else {
                continue;
            };
            if known.contains(task) {
                continue;
            }
            let grace = c.run.stop_timeout;
            self.stop_task_container(c.id.clone(), grace, true);
        }
        Ok(())
    }

    /// A task's container whose task is gone (its service was removed): the loop is
    /// stopping and removing it.
    pub(crate) fn is_departing_task(&self, c: &crate::ContainerRecord) -> bool {
        let Some(task) = c.labels.get(LABEL_TASK_ID) else {
            return false;
        };
        match self.service_store().tasks(None) {
            Ok(tasks) => !tasks.iter().any(|t| &t.id == task),
            Err(_) => false,
        }
    }

    fn reconcile_all(&self) -> Result<Option<Millis>> {
        let swarm = self.swarm()?;
        let sweep_due = self
            .services_state()
            .sweep_due
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if swarm.is_some() || sweep_due {
            if let Err(e) = self.sweep_task_containers() {
                // Tried again next round.
                self.services_state()
                    .sweep_due
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
        }
        if swarm.is_none()
            && self
                .services_state()
                .swarm_networks_due
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let pending = self.remove_swarm_networks().unwrap_or_else(|e| {
                warn!(error = %e, "overlay networks not removed after the swarm");
                true
            });
            if pending {
                self.services_state()
                    .swarm_networks_due
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let services: Vec<Service> = match swarm {
            Some(_) => self.service_store().services().map_err(store_err)?,
            None => Vec::new(),
        };
        // The ports of removed services (or of a swarm left) are released.
        for gone in self
            .services_with_ports()
            .into_iter()
            .filter(|id| !services.iter().any(|s| &s.id == id))
        {
            self.set_service_ports(&gone, Vec::new())?;
        }
        for gone in self
            .services_with_dns()
            .into_iter()
            .filter(|id| !services.iter().any(|s| &s.id == id))
        {
            self.set_service_dns(&gone, None);
        }
        for gone in self
            .services_with_vips()
            .into_iter()
            .filter(|id| !services.iter().any(|s| &s.id == id))
        {
            self.set_service_vips(&gone, "", &[])?;
        }
        let Some(swarm) = swarm else {
            return Ok(None);
        };
        let history_limit = field(&swarm.spec, &["Orchestration", "TaskHistoryRetentionLimit"])
            .and_then(Value::as_u64)
            .map_or(5, |n| usize::try_from(n).unwrap_or(5));
        let mut wake: Option<Millis> = None;
        for s in services {
            match self.reconcile_service(&s.id, history_limit) {
                Ok(Some(w)) => wake = Some(wake.map_or(w, |x| x.min(w))),
                Ok(None) => {}
                Err(e) => warn!(service.name = %s.name, error = %e, "reconcile failed"),
            }
        }
        Ok(wake)
    }
}

fn services_loop(weak: &crate::WeakEngine) {
    info!("services: reconcile loop started");
    loop {
        let Some(engine) = Engine::upgrade(weak) else {
            return;
        };
        let wake_at = match engine.reconcile_all() {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "services: reconcile failed");
                None
            }
        };
        let timeout = wake_at
            .map(|w| Duration::from_millis(w.saturating_sub(now_ms())))
            .unwrap_or(IDLE_WAKE)
            .min(IDLE_WAKE);
        let st = engine.services_state();
        let guard = st
            .wake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut guard, _) = st
            .wake_cv
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = false;
        drop(guard);
        drop(engine);
    }
}
