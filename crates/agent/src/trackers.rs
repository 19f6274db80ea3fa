//! Garbage collection of the blob trackers of [`crate::peers`] (`kube-system/blob-<algorithm>-<hex>` Leases
//! labelled [`TRACKER_LABEL`]). Every agent sweeps them now and then ([`SWEEP_EVERY`], jittered, and once
//! shortly after it starts): it removes itself from the advertised nodes of every tracker whose blob its content
//! store no longer has (the store lost it to `berth rmi`, image garbage collection or a wiped root: the agent
//! cannot be told, the CLI deletes blobs in another process), removes nodes whose Node object is gone, and
//! deletes a tracker that then advertises no node and has no live claim. Every write carries the
//! resourceVersion the sweep read (an update is a checked replace, a delete has a resourceVersion
//! precondition), so a node that claims or advertises the blob at the same moment wins and the sweep leaves that
//! tracker for its next pass; the claim and advertise paths of [`crate::peers`] retry when their tracker was
//! deleted under them.
//!
//! Cost: one paginated list of the trackers per node per sweep, plus one GET per distinct other node named (to
//! see whether it still exists) and a write only where something changed. A claim counts as live while its
//! `renewTime` is within its duration plus [`CLAIM_SKEW`] of this node's clock (the sweep is not urgent, so it
//! tolerates skew between nodes rather than measuring like the claim path does).
//!
//! This module must never remove another node that still has a Node object, never delete a tracker whose claim
//! may be live, never write without the resourceVersion it read, and never fail the agent: API errors are
//! logged and the next sweep tries again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio_util::sync::CancellationToken;

use crate::peers::{
    BLOB_NODES_ANNOTATION, CLAIM_DURATION, CLAIM_NAMESPACE, TRACKER_LABEL, advertised,
};

/// How often an agent sweeps the trackers (each sweep is jittered by up to a fifth of this).
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// The first sweep after the agent starts (so a root wiped while the agent was down is noticed soon).
const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(30);
/// A claim is live while its renewTime is within its duration plus this of this node's clock.
pub const CLAIM_SKEW: Duration = Duration::from_secs(60);
/// Trackers per list page.
const PAGE: u32 = 250;

/// What one sweep changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Trackers read.
    pub trackers: usize,
    /// Trackers whose advertised nodes were rewritten.
    pub pruned: usize,
    /// Trackers deleted.
    pub deleted: usize,
    /// Writes lost to a concurrent claimer or advertiser (left for the next sweep).
    pub conflicts: usize,
}

/// What the sweep does with one tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Keep,
    /// Rewrite the advertised nodes to this list.
    Advertise(Vec<String>),
    Delete,
}

/// The blob digest a tracker name stands for (`blob-sha256-<hex>` is `sha256:<hex>`).
fn tracker_digest(name: &str) -> Option<oci::Digest> {
    let rest = name.strip_prefix("blob-")?;
    let (algorithm, hex) = rest.split_once('-')?;
    format!("{algorithm}:{hex}").parse().ok()
}

/// Whether the tracker's claim may still be live at `now`.
fn claim_live(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return false;
    };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return false;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(CLAIM_DURATION, Duration::from_secs);
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        // A holder without any time: it cannot be judged, so it is kept.
        return true;
    };
    let age = now.as_second().saturating_sub(renewed.0.as_second());
    age < (duration + CLAIM_SKEW).as_secs() as i64
}

/// The decision for one tracker: `keeps(node)` says whether an advertised node stays listed.
fn decide(lease: &Lease, now: Timestamp, keeps: impl Fn(&str) -> bool) -> Action {
    let nodes = advertised(lease);
    let kept: Vec<String> = nodes.iter().filter(|n| keeps(n)).cloned().collect();
    if kept.is_empty() && !claim_live(lease, now) {
        Action::Delete
    } else if kept != nodes {
        Action::Advertise(kept)
    } else {
        Action::Keep
    }
}

fn is_gone_or_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

/// The tracker sweep of one node.
pub(crate) struct Sweeper {
    node: String,
    leases: Api<Lease>,
    nodes: Api<Node>,
    store: content::Store,
}

impl Sweeper {
    pub fn new(node: &str, client: kube::Client, store: content::Store) -> Self {
        Sweeper {
            node: node.to_string(),
            leases: Api::namespaced(client.clone(), CLAIM_NAMESPACE),
            nodes: Api::all(client),
            store,
        }
    }

    /// Sweep once shortly after the start, then every `every` (jittered) until `shutdown`.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        let mut wait = FIRST_SWEEP_AFTER.min(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.sweep().await {
                Ok(r) if r.pruned + r.deleted > 0 => tracing::info!(
                    trackers = r.trackers,
                    pruned = r.pruned,
                    deleted = r.deleted,
                    conflicts = r.conflicts,
                    "swept the blob trackers in {CLAIM_NAMESPACE}"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot list the blob trackers in {CLAIM_NAMESPACE} (label {TRACKER_LABEL}); trying again in {every:?}"
                ),
            }
            let jitter = rand::random_range(0..=every.as_millis() as u64 / 5);
            wait = every + Duration::from_millis(jitter);
        }
    }

    /// One pass over every tracker. Only listing fails it; a failed write is logged and left for the next pass.
    pub async fn sweep(&self) -> Result<SweepReport, kube::Error> {
        let mut report = SweepReport::default();
        // Whether each other node named still has a Node object (an API error counts as present).
        let mut present: HashMap<String, bool> = HashMap::new();
        let mut params = ListParams::default().labels(TRACKER_LABEL).limit(PAGE);
        loop {
            let page = self.leases.list(&params).await?;
            for lease in page.items {
                report.trackers += 1;
                let Some(name) = lease.metadata.name.clone() else {
                    continue;
                };
                let mut keeps = HashMap::new();
                for node in advertised(&lease) {
                    let keep = if node == self.node {
                        self.has_blob(&name)
                    } else {
                        match present.get(&node) {
                            Some(p) => *p,
                            None => {
                                let p = self.node_exists(&node).await;
                                present.insert(node.clone(), p);
                                p
                            }
                        }
                    };
                    keeps.insert(node, keep);
                }
                let action = decide(&lease, Timestamp::now(), |n| {
                    keeps.get(n).copied().unwrap_or(true)
                });
                match self.apply(&name, lease, action).await {
                    Ok(Some(Action::Delete)) => report.deleted += 1,
                    Ok(Some(_)) => report.pruned += 1,
                    Ok(None) => {}
                    Err(e) if is_gone_or_conflict(&e) => report.conflicts += 1,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot clean the blob tracker {CLAIM_NAMESPACE}/{name}")
                    }
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(report),
            }
        }
    }

    /// Whether this node's content store has the tracker's blob (unreadable: assumed present).
    fn has_blob(&self, tracker: &str) -> bool {
        let Some(digest) = tracker_digest(tracker) else {
            return true;
        };
        match self.store.exists(&digest) {
            Ok(has) => has,
            Err(e) => {
                tracing::debug!(%digest, error = %e, "cannot check the content store for a tracked blob");
                true
            }
        }
    }

    async fn node_exists(&self, node: &str) -> bool {
        match self.nodes.get_opt(node).await {
            Ok(n) => n.is_some(),
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot read a Node named by a blob tracker");
                true
            }
        }
    }

    /// Carry out `action` against the resourceVersion `lease` was read at; the action taken, if any.
    async fn apply(
        &self,
        name: &str,
        mut lease: Lease,
        action: Action,
    ) -> Result<Option<Action>, kube::Error> {
        let rv = lease.metadata.resource_version.clone();
        match &action {
            Action::Keep => return Ok(None),
            Action::Delete => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: rv,
                        uid: lease.metadata.uid.clone(),
                    }),
                    ..DeleteParams::default()
                };
                self.leases.delete(name, &params).await?;
            }
            Action::Advertise(nodes) => {
                lease
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(BLOB_NODES_ANNOTATION.to_string(), nodes.join(","));
                // `replace` carries metadata.resourceVersion: a concurrent write makes it a 409.
                self.leases
                    .replace(name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(Some(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(nodes: &str, holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        let renewed = Timestamp::from_second(1_800_000_000 - renewed_secs_ago).unwrap();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("blob-sha256-{}", "ab".repeat(32)), "namespace": CLAIM_NAMESPACE,
                         "resourceVersion": "7", "annotations": {BLOB_NODES_ANNOTATION: nodes}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 10,
                     "renewTime": renewed.to_string()},
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn tracker_names_map_back_to_their_blob_digest() {
        let d: oci::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(tracker_digest(&crate::peers::tracker_name(&d)), Some(d));
        assert_eq!(tracker_digest("blob-sha256-xyz"), None);
        assert_eq!(tracker_digest("kube-scheduler"), None);
    }

    #[test]
    fn nodes_that_lost_the_blob_or_left_are_dropped_and_the_others_kept_in_order() {
        let lease = tracker("n3,n1,n2", None, 3600);
        assert_eq!(
            decide(&lease, now(), |n| n != "n1"),
            Action::Advertise(vec!["n3".into(), "n2".into()])
        );
        assert_eq!(decide(&lease, now(), |_| true), Action::Keep);
    }

    #[test]
    fn a_tracker_without_nodes_goes_unless_its_claim_may_be_live() {
        // Released claim (no holder), nobody has the blob.
        assert_eq!(
            decide(&tracker("n1", None, 0), now(), |_| false),
            Action::Delete
        );
        assert_eq!(
            decide(&tracker("", None, 0), now(), |_| true),
            Action::Delete
        );
        // Someone is downloading it right now: the tracker stays, only the node list shrinks.
        assert_eq!(
            decide(&tracker("n1", Some("n2"), 5), now(), |_| false),
            Action::Advertise(vec![])
        );
        assert_eq!(
            decide(&tracker("", Some("n2"), 5), now(), |_| true),
            Action::Keep
        );
        // Within the skew margin the claim is still taken as live; past it, it is dead.
        let margin = (10 + CLAIM_SKEW.as_secs()) as i64;
        assert_eq!(
            decide(&tracker("", Some("n2"), margin - 1), now(), |_| true),
            Action::Keep
        );
        assert_eq!(
            decide(&tracker("", Some("n2"), margin), now(), |_| true),
            Action::Delete
        );
    }
}
