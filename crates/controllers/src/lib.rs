//! controllers: the control loops that turn desired state into Pods (scheduler, node lifecycle, Deployment ->
//! ReplicaSet, ReplicaSet -> Pod, StatefulSet -> Pod and ControllerRevision). They talk to the API server like any
//! client, through `kube` (watchers, reflectors and `kube::runtime::Controller`), and must never touch storage.
//! Garbage collection by ownerReferences is the API server's job and is never duplicated here; this crate never
//! runs a Pod and never decides readiness (the node agent writes the Ready condition). [`run`] runs the loops
//! unconditionally; [`run_elected`] runs them only while this process holds a coordination.k8s.io Lease.

mod deployment;
mod events;
mod hash;
mod labels;
mod leader;
mod nodelifecycle;
mod pods;
mod replicaset;
mod scheduler;
mod statefulset;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use deployment::{resolve_fenceposts, scaled_value};
pub use hash::{controller_revision_hash, pod_template_hash, safe_encode};
pub use leader::{LeaseOptions, run_elected};

/// Settings of the control loops.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How long a Node may go without a heartbeat (Ready condition `lastHeartbeatTime`) before the node
    /// lifecycle controller marks it Ready=Unknown (kube-controller-manager's `--node-monitor-grace-period`, 40 s).
    pub node_grace: Duration,
    /// How often the node lifecycle controller checks heartbeats (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// How often the scheduler retries unschedulable pods without any cluster change (upstream flushes them
    /// after at most 5 minutes; berth retries sooner because it has no other source of retries).
    pub scheduler_retry: Duration,
    /// How many objects of one kind each controller reconciles at once (0 = unbounded).
    pub concurrency: u16,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            node_grace: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            scheduler_retry: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

/// Failures of the control loops.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done (`create pod default/web-0`).
        action: String,
        /// The client error, carrying the API server's Status message.
        #[source]
        source: kube::Error,
    },
    /// An object holds a value the controller cannot act on (validation should have refused it).
    #[error("{object}: invalid {field}: {message}; fix the object's spec")]
    Invalid {
        /// `kind namespace/name`.
        object: String,
        /// The field path (`spec.strategy.rollingUpdate.maxSurge`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A control loop task panicked or was aborted.
    #[error("controller {name} stopped unexpectedly: {message}")]
    Task {
        /// The loop (`scheduler`, `deployment`, ...).
        name: &'static str,
        /// The join error.
        message: String,
    },
}

impl Error {
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Api { action, source }
    }

    /// True when the error is an API Conflict (409): the object changed and the loop should retry promptly.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }
}

/// True when a client error is a Status with `code`.
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Runs every control loop until `shutdown` is cancelled, then waits for in-flight reconciles to finish and
/// returns. [`run_elected`] wraps this call: it calls `run` when it acquires the Lease and cancels the token
/// when it loses it.
pub async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let loops: Vec<(&'static str, tokio::task::JoinHandle<()>)> = vec![
        (
            "scheduler",
            tokio::spawn(scheduler::run(
                client.clone(),
                opts.clone(),
                shutdown.clone(),
            )),
        ),
        (
            "node-lifecycle",
            tokio::spawn(nodelifecycle::run(
                client.clone(),
                opts.clone(),
                shutdown.clone(),
            )),
        ),
        (
            "replicaset",
            tokio::spawn(replicaset::run(
                client.clone(),
                opts.clone(),
                shutdown.clone(),
            )),
        ),
        (
            "deployment",
            tokio::spawn(deployment::run(
                client.clone(),
                opts.clone(),
                shutdown.clone(),
            )),
        ),
        (
            "statefulset",
            tokio::spawn(statefulset::run(
                client.clone(),
                opts.clone(),
                shutdown.clone(),
            )),
        ),
    ];
    tracing::info!("controllers started");
    let mut first_error = None;
    for (name, handle) in loops {
        if let Err(e) = handle.await {
            // One loop died: stop the others so the caller (and a leader-election gate) sees the failure.
            shutdown.cancel();
            first_error.get_or_insert(Error::Task {
                name,
                message: e.to_string(),
            });
        }
    }
    tracing::info!("controllers stopped");
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Logs one failed reconcile of a `kube::runtime::Controller` (object gone from the cache is routine).
pub(crate) fn log_controller_error<E: std::error::Error, Q: std::error::Error>(
    controller: &'static str,
    err: &kube::runtime::controller::Error<E, Q>,
) {
    use kube::runtime::controller::Error as C;
    match err {
        C::ObjectNotFound(_) => {
            tracing::debug!(controller, error = %err, "object gone before reconcile")
        }
        _ => tracing::warn!(controller, error = %err, "reconcile failed, retrying"),
    }
}
