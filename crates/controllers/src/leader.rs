//! Leader election for the control loops over a coordination.k8s.io/v1 Lease, as client-go's leaderelection
//! with a LeaseLock: a candidate takes the Lease when it is free or its holder has not renewed it for
//! `lease_duration` (measured on this process's monotonic clock from when the record last changed, so clocks of
//! different machines never matter), runs [`crate::run`] while it holds it, renews every `retry_period`, steps
//! down (cancelling the loops and waiting for them) when it cannot renew within `renew_deadline` or sees
//! another holder, and releases the Lease on shutdown so a successor takes over at once. It never runs the
//! loops without holding the Lease, and never writes a Lease another candidate validly holds.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{ControllerOptions, Error};

/// Where the Lease lives and how it is held (client-go's defaults: 15 s / 10 s / 2 s).
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Namespace of the Lease (`kube-system`).
    pub namespace: String,
    /// Name of the Lease (`berth-controllers`).
    pub name: String,
    /// This candidate's identity, unique per process (host name plus a random suffix).
    pub identity: String,
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// The interval between acquire and renew attempts.
    pub retry_period: Duration,
}

impl LeaseOptions {
    /// The defaults for `identity` in `kube-system/berth-controllers`.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            namespace: "kube-system".into(),
            name: "berth-controllers".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

struct Elector {
    api: Api<Lease>,
    opts: LeaseOptions,
    /// The last Lease spec seen and when it was first seen (client-go's observedRecord/observedTime).
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    fn holder(spec: &LeaseSpec) -> &str {
        spec.holder_identity.as_deref().unwrap_or("")
    }

    /// One acquire-or-renew attempt: Ok(true) when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let id = self.opts.identity.clone();
        let duration = i32::try_from(self.opts.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        let Some(mut lease) = self.api.get_opt(&self.opts.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.opts.name.clone()),
                    namespace: Some(self.opts.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(id),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observed = l.spec.map(|s| (s, Instant::now()));
                    Ok(true)
                }
                Err(e) if crate::is_status(&e, 409) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(s, _)| *s != spec) {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = Self::holder(&spec).to_string();
        let held_for =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration).max(1) as u64);
        let observed_at = self
            .observed
            .as_ref()
            .map(|(_, t)| *t)
            .unwrap_or_else(Instant::now);
        let valid = !holder.is_empty() && observed_at + held_for > Instant::now();
        if holder != id && valid {
            return Ok(false);
        }
        let mut next = spec.clone();
        if holder != id {
            next.acquire_time = Some(MicroTime(now));
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(id);
        next.lease_duration_seconds = Some(duration);
        next.renew_time = Some(MicroTime(now));
        lease.spec = Some(next);
        // The replace carries the resourceVersion read above: a concurrent writer makes it a 409.
        match self
            .api
            .replace(&self.opts.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observed = l.spec.map(|s| (s, Instant::now()));
                Ok(true)
            }
            Err(e) if crate::is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (holder cleared, duration 1 s) when this candidate still holds it.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.opts.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if Self::holder(spec) != self.opts.identity {
            return;
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api
            .replace(&self.opts.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(identity = %self.opts.identity, lease = %self.opts.name, "released controller lease")
            }
            Err(e) => {
                tracing::warn!(identity = %self.opts.identity, error = %e, "failed to release controller lease")
            }
        }
    }
}

/// Runs the control loops only while this process holds the Lease, until `shutdown`; on shutdown the loops
/// stop gracefully and the Lease is released. Losing the Lease stops the loops and makes this process a
/// candidate again.
pub async fn run_elected(
    client: kube::Client,
    opts: ControllerOptions,
    lease: LeaseOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut elector = Elector {
        api: Api::namespaced(client.clone(), &lease.namespace),
        opts: lease.clone(),
        observed: None,
    };
    loop {
        // Candidate.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %format!("{}/{}", lease.namespace, lease.name), error = %e, "lease acquire attempt failed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(lease.retry_period) => {}
            }
        }
        tracing::info!(identity = %lease.identity, lease = %format!("{}/{}", lease.namespace, lease.name), "acquired controller lease, starting controllers");
        let term = shutdown.child_token();
        let mut loops = tokio::spawn(crate::run(client.clone(), opts.clone(), term.clone()));
        let mut renewed = Instant::now();
        let stopping = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break true,
                res = &mut loops => {
                    elector.release().await;
                    return res.map_err(|e| Error::Task { name: "controllers", message: e.to_string() })?;
                }
                _ = tokio::time::sleep(lease.retry_period) => {
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => {
                            tracing::warn!(identity = %lease.identity, "controller lease taken by another candidate, stepping down");
                            break false;
                        }
                        Err(e) if renewed.elapsed() > lease.renew_deadline => {
                            tracing::warn!(identity = %lease.identity, error = %e, "could not renew controller lease within the renew deadline, stepping down");
                            break false;
                        }
                        Err(e) => tracing::warn!(error = %e, "controller lease renewal failed, retrying"),
                    }
                }
            }
        };
        term.cancel();
        let result = loops.await.map_err(|e| Error::Task {
            name: "controllers",
            message: e.to_string(),
        })?;
        if stopping {
            elector.release().await;
            return result;
        }
        result?;
    }
}
