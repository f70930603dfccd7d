//! The planner driven against a simulated host: tasks start, become healthy, fail, stop
//! within a grace period, as each revision's behaviour says; every 50 ms the world
//! advances, the planner plans and its actions are carried out. The assertions are what
//! an operator would see: replicas running, no slot without a ready task during a
//! start-first update, rollbacks, restart delays.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use berth_services::{
    plan, Action, Condition, Desired, FailureAction, Health, Millis, Order, Reason, RestartPolicy,
    Rollout, RolloutPolicy, Task, TaskState,
};

#[derive(Clone, Copy)]
enum Behaviour {
    /// Runs; healthy 1 s after start (a health check) or at once (none).
    Good { healthcheck: bool },
    /// Exits with `code` 500 ms after start; with a health check it is never healthy.
    Exits { code: i64, healthcheck: bool },
    /// Runs, and is unhealthy 2 s after start.
    Unhealthy,
}

struct World {
    now: Millis,
    desired: Desired,
    previous: Option<u64>,
    tasks: Vec<Task>,
    stop_at: BTreeMap<String, Millis>,
    behaviour: BTreeMap<u64, Behaviour>,
    next_id: u64,
    starts: Vec<(Millis, u64, u64)>,
    removed: Vec<String>,
}

const GRACE: Millis = 300;

impl World {
    fn new(replicas: u64, behaviour: Behaviour) -> World {
        let mut b = BTreeMap::new();
        b.insert(1, behaviour);
        World {
            now: 1_000_000,
            desired: Desired {
                revision: 1,
                replicas,
                restart: RestartPolicy::default(),
                update: RolloutPolicy::default(),
                rollback: RolloutPolicy::default(),
                rollout: Rollout::Completed,
                rollout_started_at: 0,
                can_roll_back: false,
                history_limit: 5,
            },
            previous: None,
            tasks: Vec::new(),
            stop_at: BTreeMap::new(),
            behaviour: b,
            next_id: 0,
            starts: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// A new revision, as `docker service update` records it.
    fn update(&mut self, behaviour: Behaviour) {
        self.previous = Some(self.desired.revision);
        self.desired.revision += 1;
        self.behaviour.insert(self.desired.revision, behaviour);
        self.desired.rollout = Rollout::Updating;
        self.desired.rollout_started_at = self.now;
        self.desired.can_roll_back = true;
    }

    fn progress(&mut self) {
        let now = self.now;
        for t in &mut self.tasks {
            let b = self.behaviour[&t.revision];
            if let Some(&at) = self.stop_at.get(&t.id) {
                if now >= at && !matches!(t.state, TaskState::Exited { .. }) {
                    t.state = TaskState::Exited { code: 143, at: now };
                }
                continue;
            }
            match t.state {
                TaskState::Pending if now >= t.created_at + 100 => {
                    let health = match b {
                        Behaviour::Good { healthcheck: false }
                        | Behaviour::Exits {
                            healthcheck: false, ..
                        } => Health::None,
                        _ => Health::Starting,
                    };
                    let ready_at = (health == Health::None).then_some(now);
                    t.state = TaskState::Running {
                        since: now,
                        health,
                        ready_at,
                    };
                }
                TaskState::Running {
                    since,
                    health,
                    ready_at,
                } => match b {
                    Behaviour::Exits { code, .. } if now >= since + 500 => {
                        t.state = TaskState::Exited { code, at: now }
                    }
                    Behaviour::Good { healthcheck: true }
                        if health == Health::Starting && now >= since + 1000 =>
                    {
                        t.state = TaskState::Running {
                            since,
                            health: Health::Healthy,
                            ready_at: ready_at.or(Some(now)),
                        }
                    }
                    Behaviour::Unhealthy if now >= since + 2000 => {
                        t.state = TaskState::Running {
                            since,
                            health: Health::Unhealthy,
                            ready_at,
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn apply(&mut self) {
        let p = plan(&self.desired, &self.tasks, self.now);
        if std::env::var("SIM_TRACE").is_ok() && !p.actions.is_empty() {
            eprintln!("{} {:?}", self.now - 1_000_000, p.actions);
        }
        for a in p.actions {
            match a {
                Action::Start { slot, revision } => {
                    self.next_id += 1;
                    self.starts.push((self.now, slot, revision));
                    self.tasks.push(Task {
                        id: format!("t{}", self.next_id),
                        slot,
                        revision,
                        state: TaskState::Pending,
                        shutdown: None,
                        created_at: self.now,
                    });
                }
                Action::Shutdown { task, reason } => {
                    let t = self.tasks.iter_mut().find(|t| t.id == task).expect("task");
                    assert!(t.shutdown.is_none(), "{task} shut down twice");
                    t.shutdown = Some(reason);
                    self.stop_at.insert(task, self.now + GRACE);
                }
                Action::Remove { task } => {
                    self.tasks.retain(|t| t.id != task);
                    self.removed.push(task);
                }
                Action::Rollout(r) => self.desired.rollout = r,
                Action::Rollback(_) => {
                    self.desired.revision = self.previous.expect("previous revision");
                    self.desired.rollout = Rollout::RollbackStarted;
                    self.desired.rollout_started_at = self.now;
                    self.desired.can_roll_back = false;
                }
            }
        }
    }

    /// Ready tasks the load balancer would send to (wanted, running, healthy or no check).
    fn serving(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.shutdown.is_none())
            .filter(|t| {
                matches!(
                    t.state,
                    TaskState::Running {
                        health: Health::None | Health::Healthy,
                        ..
                    }
                )
            })
            .count()
    }

    fn running_revisions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .tasks
            .iter()
            .filter(|t| t.shutdown.is_none() && !matches!(t.state, TaskState::Exited { .. }))
            .map(|t| t.revision)
            .collect();
        v.sort();
        v
    }

    /// Runs for `secs`, calling `check` after every step.
    fn run(&mut self, secs: u64, mut check: impl FnMut(&World)) {
        let end = self.now + secs * 1000;
        while self.now < end {
            self.now += 50;
            self.progress();
            self.apply();
            check(self);
        }
    }

    fn settle(&mut self, secs: u64) {
        self.run(secs, |_| {});
    }
}

fn deployed(replicas: u64, b: Behaviour) -> World {
    let mut w = World::new(replicas, b);
    w.settle(3);
    assert_eq!(w.serving(), replicas as usize);
    w
}

#[test]
fn a_deploy_starts_every_replica_once() {
    let w = deployed(3, Behaviour::Good { healthcheck: true });
    assert_eq!(w.running_revisions(), vec![1, 1, 1]);
    assert_eq!(w.starts.len(), 3);
    assert_eq!(w.desired.rollout, Rollout::Completed);
}

#[test]
fn start_first_update_never_leaves_fewer_ready_replicas() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: true });
    w.desired.update.order = Order::StartFirst;
    w.update(Behaviour::Good { healthcheck: true });
    let mut lowest = usize::MAX;
    let mut most_new_starting = 0;
    w.run(30, |w| {
        lowest = lowest.min(w.serving());
        let starting = w
            .tasks
            .iter()
            .filter(|t| t.revision == 2 && t.shutdown.is_none())
            .filter(|t| {
                !matches!(
                    t.state,
                    TaskState::Running {
                        health: Health::Healthy,
                        ..
                    }
                )
            })
            .count();
        most_new_starting = most_new_starting.max(starting);
    });
    assert_eq!(lowest, 3, "a slot was without a ready task");
    assert_eq!(most_new_starting, 1, "parallelism 1 was exceeded");
    assert_eq!(w.running_revisions(), vec![2, 2, 2]);
    assert_eq!(w.desired.rollout, Rollout::Completed);
}

#[test]
fn stop_first_update_takes_down_one_slot_at_a_time() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: false });
    w.update(Behaviour::Good { healthcheck: false });
    let mut lowest = usize::MAX;
    w.run(20, |w| lowest = lowest.min(w.serving()));
    assert_eq!(lowest, 2);
    assert_eq!(w.running_revisions(), vec![2, 2, 2]);
    assert_eq!(w.desired.rollout, Rollout::Completed);
}

#[test]
fn parallelism_zero_updates_every_slot_at_once() {
    let mut w = deployed(4, Behaviour::Good { healthcheck: false });
    w.desired.update.parallelism = 0;
    w.desired.update.order = Order::StartFirst;
    let t0 = w.now;
    w.update(Behaviour::Good { healthcheck: false });
    w.settle(10);
    let new_starts: Vec<Millis> = w.starts.iter().filter(|s| s.2 == 2).map(|s| s.0).collect();
    assert_eq!(new_starts.len(), 4);
    assert!(new_starts.iter().all(|&s| s == t0 + 50), "{new_starts:?}");
}

#[test]
fn the_update_delay_separates_slots() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: false });
    w.desired.update.delay = Duration::from_secs(2);
    w.desired.update.order = Order::StartFirst;
    w.update(Behaviour::Good { healthcheck: false });
    w.settle(20);
    let new_starts: Vec<Millis> = w.starts.iter().filter(|s| s.2 == 2).map(|s| s.0).collect();
    assert_eq!(new_starts.len(), 3);
    for pair in new_starts.windows(2) {
        assert!(pair[1] - pair[0] >= 2000, "{new_starts:?}");
    }
    assert_eq!(w.desired.rollout, Rollout::Completed);
}

#[test]
fn a_broken_revision_rolls_back_by_itself_without_losing_a_ready_replica() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: true });
    w.desired.update.order = Order::StartFirst;
    w.desired.update.failure_action = FailureAction::Rollback;
    w.update(Behaviour::Exits {
        code: 1,
        healthcheck: true,
    });
    let mut lowest = usize::MAX;
    w.run(30, |w| lowest = lowest.min(w.serving()));
    assert_eq!(lowest, 3);
    assert_eq!(w.desired.revision, 1);
    assert_eq!(w.desired.rollout, Rollout::RollbackCompleted);
    assert_eq!(w.running_revisions(), vec![1, 1, 1]);
    // Only the first slot tried the broken revision.
    assert_eq!(w.starts.iter().filter(|s| s.2 == 2).count(), 1);
}

#[test]
fn a_revision_crashing_after_its_start_takes_down_one_slot_at_most() {
    // No health check: the new task is ready once it runs, the old one leaves, then the
    // new one crashes. The slot stays busy for `monitor`, so the rollout stops there.
    let mut w = deployed(3, Behaviour::Good { healthcheck: false });
    w.desired.update.order = Order::StartFirst;
    w.desired.update.failure_action = FailureAction::Rollback;
    w.update(Behaviour::Exits {
        code: 1,
        healthcheck: false,
    });
    let mut lowest = usize::MAX;
    w.run(30, |w| lowest = lowest.min(w.serving()));
    assert_eq!(lowest, 2);
    assert_eq!(w.starts.iter().filter(|s| s.2 == 2).count(), 1);
    assert_eq!(w.desired.rollout, Rollout::RollbackCompleted);
    assert_eq!(w.running_revisions(), vec![1, 1, 1]);
}

#[test]
fn an_unhealthy_revision_rolls_back_stop_first() {
    let mut w = deployed(2, Behaviour::Good { healthcheck: true });
    w.desired.update.failure_action = FailureAction::Rollback;
    w.desired.update.monitor = Duration::from_secs(10);
    w.update(Behaviour::Unhealthy);
    w.settle(40);
    assert_eq!(w.desired.rollout, Rollout::RollbackCompleted);
    assert_eq!(w.running_revisions(), vec![1, 1]);
    assert_eq!(w.serving(), 2);
}

#[test]
fn failure_action_pause_stops_the_rollout_and_keeps_old_replicas() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: false });
    w.desired.update.order = Order::StartFirst;
    w.update(Behaviour::Exits {
        code: 2,
        healthcheck: false,
    });
    w.settle(20);
    match &w.desired.rollout {
        Rollout::Paused(m) => assert!(m.starts_with("update paused due to failure"), "{m}"),
        other => panic!("rollout {other:?}"),
    }
    assert_eq!(w.running_revisions().iter().filter(|&&r| r == 1).count(), 2);
    assert_eq!(w.serving(), 2, "the old tasks of the other slots run on");
}

#[test]
fn failure_action_continue_with_a_failure_ratio_finishes_the_rollout() {
    let mut w = deployed(2, Behaviour::Good { healthcheck: false });
    w.desired.update.failure_action = FailureAction::Continue;
    w.update(Behaviour::Good { healthcheck: false });
    w.settle(20);
    assert_eq!(w.desired.rollout, Rollout::Completed);
    assert_eq!(w.running_revisions(), vec![2, 2]);
}

#[test]
fn a_replica_that_dies_is_replaced_after_the_restart_delay() {
    let mut w = deployed(2, Behaviour::Good { healthcheck: false });
    let victim = w.tasks[0].id.clone();
    let died = w.now;
    w.tasks[0].state = TaskState::Exited {
        code: 137,
        at: died,
    };
    w.settle(10);
    assert_eq!(w.serving(), 2);
    let restart = w.starts.last().expect("a restart");
    assert!(
        restart.0 >= died + 5000,
        "restarted at +{} ms",
        restart.0 - died
    );
    let t = w
        .tasks
        .iter()
        .find(|t| t.id == victim)
        .expect("kept in history");
    assert_eq!(t.shutdown, Some(Reason::Ended));
}

#[test]
fn the_restart_condition_decides_whether_an_ended_task_comes_back() {
    for (condition, code, back) in [
        (Condition::None, 1, false),
        (Condition::OnFailure, 0, false),
        (Condition::OnFailure, 3, true),
        (Condition::Any, 0, true),
    ] {
        let mut w = deployed(1, Behaviour::Good { healthcheck: false });
        w.desired.restart.condition = condition;
        w.tasks[0].state = TaskState::Exited { code, at: w.now };
        w.settle(10);
        assert_eq!(w.serving() == 1, back, "{condition:?} exit {code}");
    }
}

#[test]
fn max_attempts_limits_restarts_of_a_slot() {
    let mut w = World::new(
        1,
        Behaviour::Exits {
            code: 1,
            healthcheck: false,
        },
    );
    w.desired.restart.max_attempts = 2;
    w.desired.restart.delay = Duration::from_millis(100);
    w.settle(30);
    assert_eq!(w.starts.len(), 3, "one run and two restarts");
}

#[test]
fn an_unhealthy_replica_is_replaced() {
    let mut w = World::new(1, Behaviour::Unhealthy);
    w.desired.restart.delay = Duration::from_millis(0);
    w.settle(5);
    let first = w.tasks[0].clone();
    assert_eq!(first.shutdown, Some(Reason::Unhealthy));
    assert!(w.starts.len() >= 2);
}

#[test]
fn scaling_down_shuts_the_highest_slots_and_up_refills() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: false });
    w.desired.replicas = 1;
    w.settle(2);
    let live: Vec<u64> = w
        .tasks
        .iter()
        .filter(|t| t.shutdown.is_none())
        .map(|t| t.slot)
        .collect();
    assert_eq!(live, vec![1]);
    assert!(w
        .tasks
        .iter()
        .filter(|t| t.slot > 1)
        .all(|t| t.shutdown == Some(Reason::Surplus)));
    w.desired.replicas = 3;
    w.settle(2);
    assert_eq!(
        w.serving(),
        3,
        "a slot stopped by a scale-down comes back without a delay"
    );
}

#[test]
fn a_duplicate_task_in_a_slot_is_shut_down() {
    let mut w = deployed(1, Behaviour::Good { healthcheck: false });
    let mut dup = w.tasks[0].clone();
    dup.id = "dup".into();
    dup.created_at += 1;
    w.tasks.push(dup);
    w.settle(1);
    assert_eq!(w.serving(), 1);
    let d = w.tasks.iter().find(|t| t.id == "dup").expect("dup");
    assert_eq!(d.shutdown, Some(Reason::Surplus));
}

#[test]
fn ended_tasks_beyond_the_history_limit_are_removed() {
    let mut w = World::new(
        1,
        Behaviour::Exits {
            code: 1,
            healthcheck: false,
        },
    );
    w.desired.restart.delay = Duration::from_millis(100);
    w.settle(20);
    let in_slot = w
        .tasks
        .iter()
        .filter(|t| t.slot == 1 && t.shutdown.is_some())
        .count();
    assert!(in_slot <= 5, "{in_slot} ended tasks kept");
    assert!(!w.removed.is_empty());
    // The oldest go first.
    assert_eq!(w.removed[0], "t1");
}

#[test]
fn a_recorded_revision_without_a_rollout_state_starts_the_rollout() {
    // The daemon recorded the new revision and was killed before recording the state.
    let mut w = deployed(2, Behaviour::Good { healthcheck: false });
    w.desired.revision = 2;
    w.behaviour
        .insert(2, Behaviour::Good { healthcheck: false });
    w.desired.rollout_started_at = w.now;
    w.settle(15);
    assert_eq!(w.running_revisions(), vec![2, 2]);
    assert_eq!(w.desired.rollout, Rollout::Completed);
}

#[test]
fn planning_twice_on_the_same_state_decides_the_same() {
    let mut w = deployed(3, Behaviour::Good { healthcheck: true });
    w.update(Behaviour::Good { healthcheck: true });
    w.settle(1);
    let a = plan(&w.desired, &w.tasks, w.now);
    let b = plan(&w.desired, &w.tasks, w.now);
    assert_eq!(a, b);
}

#[test]
fn an_old_task_still_stopping_after_the_rollout_completed_starts_no_new_rollout() {
    // A start-first rollout completed while the last old task is still within its stop
    // grace period (longer than `monitor`): nothing is left to do; the rollout stays
    // completed (it flapped back to updating, raising the service's version).
    let mut w = World::new(1, Behaviour::Good { healthcheck: false });
    w.desired.revision = 2;
    w.desired.rollout = Rollout::Completed;
    w.desired.can_roll_back = true;
    let running = |since| TaskState::Running {
        since,
        health: Health::None,
        ready_at: Some(since),
    };
    let tasks = vec![
        Task {
            id: "old".into(),
            slot: 1,
            revision: 1,
            state: running(10),
            shutdown: Some(Reason::Update),
            created_at: 10,
        },
        Task {
            id: "new".into(),
            slot: 1,
            revision: 2,
            state: running(20),
            shutdown: None,
            created_at: 20,
        },
    ];
    let p = plan(&w.desired, &tasks, 100_000);
    assert_eq!(p.actions, Vec::<Action>::new());
}
