//! The node lifecycle controller: a Node whose agent has not posted a heartbeat (the Ready condition's
//! `lastHeartbeatTime`) for longer than `node_grace` gets Ready=Unknown (reason `NodeStatusUnknown`, message
//! `Kubelet stopped posting node status.`; `NodeStatusNeverUpdated` when it never posted one), its other
//! conditions Unknown, a `NodeNotReady` Event, and the Ready condition of its pods set False, as
//! kube-controller-manager does. It never deletes or evicts pods, never taints, and never touches a node whose
//! heartbeat is fresh (the agent owns the Node's status).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Recorder};
use crate::{ControllerOptions, Error, pods};

pub(crate) async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) {
    let notify = Arc::new(Notify::new());
    let (store, task) = crate::scheduler::spawn_reflector(
        Api::<Node>::all(client.clone()),
        notify,
        shutdown.clone(),
    );
    let recorder = Recorder::new(client.clone(), "node-controller");
    // Check at least four times per grace period so a silent node turns Unknown close to the deadline.
    let period = opts
        .node_monitor_period
        .min(opts.node_grace / 4)
        .max(Duration::from_millis(100));
    let grace = SignedDuration::try_from(opts.node_grace).unwrap_or(SignedDuration::from_secs(40));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
        let now = Timestamp::now();
        for node in store.state() {
            if silent_change(&node, now, grace).is_some()
                && let Err(e) = mark_unknown(&client, &recorder, &node.name_any(), now, grace).await
            {
                tracing::warn!(node = %node.name_any(), error = %e, "failed to mark node unknown");
            }
        }
    }
    let _ = task.await;
}

/// What the controller must do about a node: nothing (fresh heartbeat or already Unknown), or mark it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Silence {
    Stopped,
    Never,
}

fn silent_change(node: &Node, now: Timestamp, grace: SignedDuration) -> Option<Silence> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "Unknown" => None,
        Some(c) => {
            let beat = c
                .last_heartbeat_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
                .or(node.metadata.creation_timestamp.as_ref())?;
            (beat.0 + grace < now).then_some(Silence::Stopped)
        }
        None => {
            let created = node.metadata.creation_timestamp.as_ref()?;
            (created.0 + grace < now).then_some(Silence::Never)
        }
    }
}

async fn mark_unknown(
    client: &kube::Client,
    recorder: &Recorder,
    name: &str,
    now: Timestamp,
    grace: SignedDuration,
) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    // Re-read: the cached copy may predate a heartbeat; the update is conditional on this resourceVersion.
    let mut node = api
        .get(name)
        .await
        .map_err(Error::api(format!("get node {name}")))?;
    let Some(silence) = silent_change(&node, now, grace) else {
        return Ok(());
    };
    let status = node.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let (reason, message) = match silence {
        Silence::Stopped => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
        Silence::Never => (
            "NodeStatusNeverUpdated",
            "Kubelet never posted node status.",
        ),
    };
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            last_heartbeat_time: node.metadata.creation_timestamp.clone(),
            ..Default::default()
        });
    }
    for c in conditions.iter_mut() {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_transition_time = Some(Time(now));
        }
    }
    api.replace_status(name, &PostParams::default(), &node)
        .await
        .map_err(Error::api(format!("update status of node {name}")))?;
    tracing::info!(
        node = name,
        "node stopped posting status, marked Ready=Unknown"
    );
    recorder
        .record(
            &node.object_ref(&()),
            EventType::Normal,
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
    mark_pods_not_ready(client, recorder, name, now).await
}

async fn mark_pods_not_ready(
    client: &kube::Client,
    recorder: &Recorder,
    node: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let all: Api<Pod> = Api::all(client.clone());
    let list = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(Error::api(format!("list pods on node {node}")))?;
    for pod in list
        .items
        .iter()
        .filter(|p| pods::node_name(p) == node && pods::is_ready(p))
    {
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
            c.status = "False".into();
            c.last_transition_time = Some(Time(now));
        }
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        api.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::api(format!(
            "mark pod {ns}/{} not ready",
            pod.name_any()
        )))?;
        recorder
            .record(
                &pod.object_ref(&()),
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready".into(),
            )
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(conditions: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn only_a_heartbeat_older_than_the_grace_period_marks_the_node() {
        let n = node(
            json!([{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:01:00Z"}]),
        );
        let grace = SignedDuration::from_secs(40);
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(silent_change(&n, at("2026-01-01T00:01:30Z"), grace), None);
        assert_eq!(
            silent_change(&n, at("2026-01-01T00:01:41Z"), grace),
            Some(Silence::Stopped)
        );
        let unknown = node(
            json!([{"type": "Ready", "status": "Unknown", "lastHeartbeatTime": "2026-01-01T00:01:00Z"}]),
        );
        assert_eq!(
            silent_change(&unknown, at("2026-01-01T01:00:00Z"), grace),
            None
        );
        let never = node(json!([]));
        assert_eq!(
            silent_change(&never, at("2026-01-01T00:00:41Z"), grace),
            Some(Silence::Never)
        );
    }
}
