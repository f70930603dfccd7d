//! The reconcile planner: one service's desired state and the tasks that exist for it in,
//! the actions that bring them together out.
//!
//! It is a pure function of its inputs and the time it is given: no clock, no I/O, no
//! memory between calls. The daemon's reconcile loop reads the service's record and its
//! tasks (containers labelled with the service, slot and revision), calls [`plan`],
//! carries the actions out, and calls it again when a task changes state or at
//! [`Plan::wake_at`]. Because everything it decides from is durable (the record, and the
//! containers themselves), a daemon that was killed mid-update plans the same next step
//! after its restart, and a task that was created before the kill is seen, not created
//! again. The loop must carry out one plan's actions before asking for the next: the
//! planner sees a started task only once it exists.
//!
//! Semantics follow Docker's Swarm mode (swarmkit's orchestrator, restart supervisor and
//! updater) on one node:
//! - slots `1..=replicas`, each wanting one running task of the current revision;
//! - a task that ends, or that fails its health check, is shut down and replaced as the
//!   restart policy says (condition, delay, max attempts within a window);
//! - a revision change rolls through the slots `parallelism` at a time (0: all),
//!   `stop-first` (the old task stops, then the new one starts) or `start-first` (the new
//!   task must be ready, running and healthy where it has a health check, before the old
//!   one is shut down), waiting `delay` after each slot;
//! - a new task that fails within `monitor` of its start counts against the rollout; more
//!   failures than `max_failure_ratio` of the replicas pause it, roll it back, or are
//!   ignored (`failure_action`); the rollout is complete once every slot runs a ready task
//!   of the revision and the last of them has outlived `monitor`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The planner never reads a clock: the caller passes
/// `now`, and the tasks' times come from their records.
pub type Millis = u64;

fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a task that ended is replaced (Docker's `RestartPolicy.Condition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Never: the slot stays empty once its task ends.
    None,
    /// When the task failed: a non-zero exit, or a failed health check.
    OnFailure,
    /// Whenever the task ends (Docker's default).
    Any,
}

/// Docker's `TaskTemplate.RestartPolicy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: Condition,
    /// Between a task's end and its replacement's start (Docker's default 5 s).
    pub delay: Duration,
    /// Replacements of one slot within `window` (0: no limit).
    pub max_attempts: u64,
    /// The window `max_attempts` counts in (0: unbounded).
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: Condition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

/// What a rollout does when too many of its new tasks fail (`failure_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    Pause,
    Continue,
    Rollback,
}

/// Which of a slot's two tasks goes first during a rollout (`order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    StopFirst,
    StartFirst,
}

/// Docker's `UpdateConfig` (and `RollbackConfig`, which has the same fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// Slots updated at once (0: all of them).
    pub parallelism: u64,
    /// Wait after a slot's new task is ready before the next slot starts.
    pub delay: Duration,
    pub failure_action: FailureAction,
    /// How long a new task must run before it no longer counts as a failure of the rollout.
    pub monitor: Duration,
    /// The share of the replicas whose new tasks may fail before `failure_action` applies.
    pub max_failure_ratio: f64,
    pub order: Order,
}

impl Default for RolloutPolicy {
    /// Docker's defaults for both `UpdateConfig` and `RollbackConfig`.
    fn default() -> Self {
        RolloutPolicy {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: 0.0,
            order: Order::StopFirst,
        }
    }
}

/// Docker's `UpdateStatus.State`, plus its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "message", rename_all = "snake_case")]
pub enum Rollout {
    /// Nothing to roll out (also a service that was never updated).
    Completed,
    Updating,
    Paused(String),
    RollbackStarted,
    RollbackPaused(String),
    RollbackCompleted,
}

impl Rollout {
    /// Docker's name for the state (`UpdateStatus.State`).
    pub fn docker_state(&self) -> &'static str {
        match self {
            Rollout::Completed => "completed",
            Rollout::Updating => "updating",
            Rollout::Paused(_) => "paused",
            Rollout::RollbackStarted => "rollback_started",
            Rollout::RollbackPaused(_) => "rollback_paused",
            Rollout::RollbackCompleted => "rollback_completed",
        }
    }

    fn rolling_back(&self) -> bool {
        matches!(
            self,
            Rollout::RollbackStarted | Rollout::RollbackPaused(_) | Rollout::RollbackCompleted
        )
    }

    fn paused(&self) -> bool {
        matches!(self, Rollout::Paused(_) | Rollout::RollbackPaused(_))
    }
}

/// What the service wants, as its durable record says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// The revision every slot must run (after a rollback: the revision rolled back to).
    pub revision: u64,
    pub replicas: u64,
    pub restart: RestartPolicy,
    pub update: RolloutPolicy,
    pub rollback: RolloutPolicy,
    pub rollout: Rollout,
    /// When the current rollout began: failures of tasks created before it do not count.
    pub rollout_started_at: Millis,
    /// Whether a revision to roll back to exists (`failure_action: rollback` pauses
    /// instead when there is none).
    pub can_roll_back: bool,
    /// Ended tasks kept per slot for `docker service ps` (Docker's task history limit, 5).
    pub history_limit: usize,
}

/// A task's health check, as its container reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// The task has no health check: running is ready.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// Why a task was shut down: recorded with the task by the engine, reported back in
/// [`TaskState::Exited`], so that an ended task's replacement obeys the restart policy
/// only when the task ended on its own or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Its process ended by itself (recorded after the fact).
    Ended,
    /// It failed its health check and is being replaced.
    Unhealthy,
    /// A rollout replaces it with a task of another revision.
    Update,
    /// Its slot is above the replica count, or it duplicates a slot's task.
    Surplus,
}

/// Where a task is, as its container says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Created; its start has not been seen yet.
    Pending,
    /// Running since `since`; `ready_at`: when it first was ready (running, and healthy
    /// where it has a health check).
    Running {
        since: Millis,
        health: Health,
        ready_at: Option<Millis>,
    },
    /// Ended at `at` with `code` (also after the engine stopped it).
    Exited { code: i64, at: Millis },
}

/// One task (a container) of the service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub slot: u64,
    pub revision: u64,
    pub state: TaskState,
    /// Set once the task's desired state is shutdown, with why.
    pub shutdown: Option<Reason>,
    pub created_at: Millis,
}

impl Task {
    fn live(&self) -> bool {
        !matches!(self.state, TaskState::Exited { .. })
    }

    fn ready(&self) -> bool {
        matches!(
            self.state,
            TaskState::Running {
                health: Health::None | Health::Healthy,
                ..
            }
        )
    }

    fn ready_at(&self) -> Option<Millis> {
        match self.state {
            TaskState::Running { ready_at, .. } => ready_at,
            _ => None,
        }
    }

    fn started_at(&self) -> Option<Millis> {
        match self.state {
            TaskState::Running { since, .. } => Some(since),
            _ => None,
        }
    }

    fn exited_at(&self) -> Option<Millis> {
        match self.state {
            TaskState::Exited { at, .. } => Some(at),
            _ => None,
        }
    }

    /// A task that is wanted but has ended or failed its health check.
    fn failing(&self) -> Option<Reason> {
        if self.shutdown.is_some() {
            return None;
        }
        match self.state {
            TaskState::Exited { .. } => Some(Reason::Ended),
            TaskState::Running {
                health: Health::Unhealthy,
                ..
            } => Some(Reason::Unhealthy),
            _ => None,
        }
    }
}

/// One step for the reconcile loop to carry out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Create and start a task for `slot` from `revision`'s spec.
    Start { slot: u64, revision: u64 },
    /// Set the task's desired state to shutdown with `reason` (recorded with it); take it
    /// out of the load balancer; stop it within its grace period if it still runs.
    Shutdown { task: String, reason: Reason },
    /// Remove an ended task beyond the history limit (its container and record).
    Remove { task: String },
    /// Record the rollout's new state.
    Rollout(Rollout),
    /// Make the previous revision current again and record `RollbackStarted` with the
    /// message; the next plan rolls the slots back with the rollback policy.
    Rollback(String),
}

/// What [`plan`] decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// When to plan again if no task changes before then (a restart delay, a rollout
    /// delay or a monitor period ends).
    pub wake_at: Option<Millis>,
}

impl Plan {
    fn wake(&mut self, at: Millis) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// A slot's state in a rollout.
enum SlotRollout {
    /// Runs a ready task of the current revision and nothing older.
    Done { ready_at: Option<Millis> },
    /// Has a live task of an older revision and no new task yet.
    Dirty,
    /// Part-way: a new task is starting, or an old one is stopping for the update.
    InFlight,
    /// No live task: the old one was stopped for the update (stop-first); start the new.
    Refill,
    /// No live task (it ended, or the service is new).
    Empty,
}

/// The actions that bring `tasks` to `desired` at time `now`.
pub fn plan(desired: &Desired, tasks: &[Task], now: Millis) -> Plan {
    let mut out = Plan::default();
    let policy = if desired.rollout.rolling_back() {
        &desired.rollback
    } else {
        &desired.update
    };

    // Tasks that ended or failed their health check while wanted: record the shutdown
    // (and stop an unhealthy one); they are replaced below like any empty slot.
    let mut recorded: BTreeMap<&str, Reason> = BTreeMap::new();
    for t in tasks {
        if let Some(reason) = t.failing() {
            out.actions.push(Action::Shutdown {
                task: t.id.clone(),
                reason,
            });
            recorded.insert(&t.id, reason);
        }
    }
    let shutdown_of = |t: &Task| t.shutdown.or_else(|| recorded.get(t.id.as_str()).copied());
    let wanted = |t: &Task| shutdown_of(t).is_none();

    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        slots.entry(t.slot).or_default().push(t);
    }

    // Slots above the replica count: shut their tasks down.
    for (_, ts) in slots.range(desired.replicas.saturating_add(1)..) {
        for t in ts.iter().filter(|t| wanted(t) && t.live()) {
            out.actions.push(Action::Shutdown {
                task: t.id.clone(),
                reason: Reason::Surplus,
            });
        }
    }

    // The rollout's failures so far: tasks of the revision, created since the rollout
    // began, that ended by themselves or failed their health check within `monitor` of
    // their creation (Docker: "failure or early termination").
    let rolling = matches!(
        desired.rollout,
        Rollout::Updating | Rollout::RollbackStarted
    );
    let monitor = ms(policy.monitor);
    let failures: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.revision == desired.revision && t.created_at >= desired.rollout_started_at)
        .filter(|t| {
            let failed = match shutdown_of(t) {
                Some(Reason::Unhealthy) => true,
                Some(Reason::Ended) | None => !t.live(),
                Some(Reason::Update | Reason::Surplus) => false,
            };
            let end = t.exited_at().unwrap_or(now);
            failed && end.saturating_sub(t.created_at) <= monitor
        })
        .collect();
    let allowed = (policy.max_failure_ratio * desired.replicas as f64).floor();
    let mut halted = desired.rollout.paused();
    if rolling && !failures.is_empty() && failures.len() as f64 > allowed {
        let first = failures
            .iter()
            .min_by_key(|t| (t.exited_at().unwrap_or(now), t.id.as_str()))
            .map_or("", |t| t.id.as_str());
        match (policy.failure_action, desired.rollout.rolling_back()) {
            (FailureAction::Continue, _) => {}
            (FailureAction::Rollback, false) if desired.can_roll_back => {
                out.actions.push(Action::Rollback(format!(
                    "update rolled back due to failure or early termination of task {first}"
                )));
                return out;
            }
            (_, false) => {
                out.actions.push(Action::Rollout(Rollout::Paused(format!(
                    "update paused due to failure or early termination of task {first}"
                ))));
                halted = true;
            }
            (_, true) => {
                out.actions
                    .push(Action::Rollout(Rollout::RollbackPaused(format!(
                        "rollback paused due to failure or early termination of task {first}"
                    ))));
                halted = true;
            }
        }
    }

    // Each wanted slot.
    let delay = ms(policy.delay);
    let mut states = Vec::new();
    for slot in 1..=desired.replicas {
        let ts: &[&Task] = slots.get(&slot).map_or(&[], |v| v.as_slice());
        let live: Vec<&Task> = ts
            .iter()
            .copied()
            .filter(|t| wanted(t) && t.live())
            .collect();
        let new: Vec<&Task> = live
            .iter()
            .copied()
            .filter(|t| t.revision == desired.revision)
            .collect();
        let old: Vec<&Task> = live
            .iter()
            .copied()
            .filter(|t| t.revision != desired.revision)
            .collect();

        // The new task to keep: the ready one, else the oldest; extra ones are surplus.
        let keep = new
            .iter()
            .copied()
            .min_by_key(|t| (!t.ready(), t.created_at, t.id.as_str()));
        for t in new
            .iter()
            .filter(|t| Some(t.id.as_str()) != keep.map(|k| k.id.as_str()))
        {
            out.actions.push(Action::Shutdown {
                task: t.id.clone(),
                reason: Reason::Surplus,
            });
        }

        // An old task stopping for the update (stop-first), or stopped and not yet
        // replaced: the slot is part-way through the rollout.
        let stopping_for_update = ts.iter().any(|t| {
            t.live() && t.shutdown == Some(Reason::Update) && t.revision != desired.revision
        });
        let last_ended = ts
            .iter()
            .filter(|t| !t.live())
            .max_by_key(|t| (t.exited_at(), t.created_at));
        let stopped_for_update = live.is_empty()
            && last_ended.is_some_and(|t| {
                t.shutdown == Some(Reason::Update) && t.revision != desired.revision
            });
        let state = match keep {
            Some(k) if k.ready() => {
                // start-first, or a slot whose new task is ready anyway: the old ones go.
                for t in &old {
                    out.actions.push(Action::Shutdown {
                        task: t.id.clone(),
                        reason: Reason::Update,
                    });
                }
                SlotRollout::Done {
                    ready_at: k.ready_at(),
                }
            }
            Some(_) => SlotRollout::InFlight,
            None if !old.is_empty() => SlotRollout::Dirty,
            None if stopping_for_update => SlotRollout::InFlight,
            None if stopped_for_update => SlotRollout::Refill,
            None => SlotRollout::Empty,
        };
        // Wanted tasks of another revision still run: a rollout has work here. (An old
        // task already shut down and stopping is not: once the rollout completed, its
        // stop would otherwise start the rollout over.)
        let has_old = !old.is_empty();
        states.push((slot, state, old, has_old));
    }

    // Rollout capacity: a slot takes a place of `parallelism` while part-way, until its
    // new task has outlived `monitor` (berth is stricter than swarmkit here, which moves on
    // once the task runs: a revision that crashes after its start then takes down at most
    // `parallelism` slots before its failure stops the rollout), and for `delay` after the
    // new task became ready.
    let mut busy: u64 = 0;
    for (slot, state, _, _) in &states {
        match state {
            SlotRollout::InFlight | SlotRollout::Refill => busy += 1,
            SlotRollout::Done { ready_at } if rolling => {
                let k = slots.get(slot).and_then(|ts| {
                    ts.iter()
                        .filter(|t| wanted(t) && t.revision == desired.revision && t.ready())
                        .find(|t| t.created_at >= desired.rollout_started_at)
                });
                let free_at = k.map(|k| {
                    let monitored = k.started_at().unwrap_or(now).saturating_add(monitor);
                    let delayed = ready_at.unwrap_or(now).saturating_add(delay);
                    monitored.max(delayed)
                });
                if let Some(at) = free_at.filter(|&at| at > now) {
                    busy += 1;
                    out.wake(at);
                }
            }
            _ => {}
        }
    }
    let mut room = if policy.parallelism == 0 {
        u64::MAX
    } else {
        policy.parallelism.saturating_sub(busy)
    };

    let dirty_exists = states.iter().any(|(_, _, _, has_old)| *has_old);
    if dirty_exists && !halted && !rolling {
        // A revision differs from what runs while no rollout is recorded (the record was
        // written and the daemon stopped before the first step): the rollout is on.
        out.actions
            .push(Action::Rollout(if desired.rollout.rolling_back() {
                Rollout::RollbackStarted
            } else {
                Rollout::Updating
            }));
    }

    for (slot, state, old, _) in &states {
        match state {
            SlotRollout::Dirty if !halted && room > 0 => {
                room -= 1;
                match policy.order {
                    // A new task of this slot that failed before is retried as the
                    // restart policy says; the old one runs meanwhile.
                    Order::StartFirst => {
                        match restart_at(desired, slots.get(slot), &shutdown_of, now) {
                            Some(at) if at <= now => out.actions.push(Action::Start {
                                slot: *slot,
                                revision: desired.revision,
                            }),
                            Some(at) => out.wake(at),
                            None => {}
                        }
                    }
                    Order::StopFirst => {
                        for t in old {
                            out.actions.push(Action::Shutdown {
                                task: t.id.clone(),
                                reason: Reason::Update,
                            });
                        }
                    }
                }
            }
            SlotRollout::Refill => out.actions.push(Action::Start {
                slot: *slot,
                revision: desired.revision,
            }),
            SlotRollout::Empty => {
                if let Some(at) = restart_at(desired, slots.get(slot), &shutdown_of, now) {
                    if at <= now {
                        out.actions.push(Action::Start {
                            slot: *slot,
                            revision: desired.revision,
                        });
                    } else {
                        out.wake(at);
                    }
                }
            }
            _ => {}
        }
    }

    // The rollout ends when every slot runs a ready task of the revision and the last
    // one has outlived `monitor`.
    if rolling && !halted {
        let all_done = states.iter().all(|(slot, s, _, _)| {
            matches!(s, SlotRollout::Done { .. })
                || (matches!(s, SlotRollout::Empty)
                    && restart_at(desired, slots.get(slot), &shutdown_of, now).is_none())
        });
        if all_done {
            let last_start = tasks
                .iter()
                .filter(|t| wanted(t) && t.revision == desired.revision)
                .filter(|t| t.created_at >= desired.rollout_started_at)
                .filter_map(|t| t.started_at())
                .max();
            match last_start {
                Some(s) if s.saturating_add(monitor) > now => out.wake(s.saturating_add(monitor)),
                _ => out
                    .actions
                    .push(Action::Rollout(if desired.rollout.rolling_back() {
                        Rollout::RollbackCompleted
                    } else {
                        Rollout::Completed
                    })),
            }
        } else if let Some(s) = tasks
            .iter()
            .filter(|t| wanted(t) && t.revision == desired.revision && t.live())
            .filter_map(|t| t.started_at())
            .filter(|s| s.saturating_add(monitor) > now)
            .min()
        {
            // A new task inside its monitor period: a failure then must be seen in time.
            out.wake(s.saturating_add(monitor));
        }
    }

    // History: ended, shut-down tasks beyond the limit, oldest first, per slot.
    for ts in slots.values() {
        let mut ended: Vec<&Task> = ts
            .iter()
            .copied()
            .filter(|t| !t.live() && t.shutdown.is_some())
            .collect();
        if ended.len() > desired.history_limit {
            ended.sort_by_key(|t| (t.exited_at(), t.created_at));
            let extra = ended.len() - desired.history_limit;
            for t in &ended[..extra] {
                out.actions.push(Action::Remove { task: t.id.clone() });
            }
        }
    }
    out
}

/// When an empty slot may get a new task: `None` when the restart policy says never.
fn restart_at(
    desired: &Desired,
    tasks: Option<&Vec<&Task>>,
    shutdown_of: &dyn Fn(&Task) -> Option<Reason>,
    now: Millis,
) -> Option<Millis> {
    let tasks = tasks.map_or(&[][..], |v| v.as_slice());
    // The slot's last task: if berth stopped it (an update, a surplus), the slot is
    // refilled at once; if it ended by itself or failed, the restart policy decides.
    let last = tasks
        .iter()
        .filter(|t| !t.live() || shutdown_of(t).is_some())
        .max_by_key(|t| (t.exited_at().unwrap_or(now), t.created_at));
    let Some(last) = last else {
        return Some(now);
    };
    let reason = shutdown_of(last);
    let by_itself = matches!(reason, Some(Reason::Ended | Reason::Unhealthy));
    if !by_itself {
        return Some(now);
    }
    // A task of another revision that failed (a rollout that was then rolled back) is no
    // reason to hold back the current revision.
    if last.revision != desired.revision {
        return Some(now);
    }
    let failed = matches!(reason, Some(Reason::Unhealthy))
        || matches!(last.state, TaskState::Exited { code, .. } if code != 0);
    match desired.restart.condition {
        Condition::None => return None,
        Condition::OnFailure if !failed => return None,
        _ => {}
    }
    if desired.restart.max_attempts > 0 {
        let window = ms(desired.restart.window);
        let since = if window == 0 {
            0
        } else {
            now.saturating_sub(window)
        };
        let attempts = tasks
            .iter()
            .filter(|t| matches!(shutdown_of(t), Some(Reason::Ended | Reason::Unhealthy)))
            .filter(|t| t.exited_at().unwrap_or(now) >= since)
            .count() as u64;
        // The slot's first task is not a restart: max_attempts restarts means
        // max_attempts + 1 runs.
        if attempts > desired.restart.max_attempts {
            return None;
        }
    }
    let ended = last.exited_at().unwrap_or(now);
    Some(ended.saturating_add(ms(desired.restart.delay)))
}
