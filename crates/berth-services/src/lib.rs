//! Services on one host (berth's answer to Docker's Swarm mode services without a
//! cluster): a service's desired state and the revisions it went through, and the
//! reconcile planner that compares it with the tasks that exist and says what to do:
//! keep the replicas, replace what ended or is unhealthy, roll a new revision through the
//! slots, roll back; and the secrets and configs services mount into their tasks. The
//! engine runs the loop and the tasks (containers); the API
//! translates Docker's `/services` and `/tasks`.

pub mod objects;
pub mod plan;
pub mod store;

pub use objects::{ObjectError, ObjectKind, ObjectRecord, ObjectStore};
pub use plan::{
    plan, Action, Condition, Desired, FailureAction, Health, Millis, Order, Plan, Reason,
    RestartPolicy, Rollout, RolloutPolicy, Task, TaskState,
};
pub use store::{Revision, ServiceRecord, ServiceStore, StoreError, TaskRecord};
