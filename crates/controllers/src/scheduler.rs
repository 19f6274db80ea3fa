//! The scheduler: binds pending Pods (no `spec.nodeName`, not terminating, `schedulerName` default) to Ready,
//! schedulable Nodes through the `pods/binding` subresource. It filters nodes as upstream's default plugins do
//! for what berth models (Ready, `spec.unschedulable`, NoSchedule/NoExecute taints and tolerations,
//! `nodeSelector`, the `pods` allocatable) and scores by fewest pods (spreading), ties by name. A pod that fits
//! nowhere gets PodScheduled=False/Unschedulable with upstream's `0/N nodes are available: ...` message and a
//! Warning `FailedScheduling` Event (once per distinct message), and is retried whenever a Node changes or a
//! pod leaves a node, and every `scheduler_retry`. A pod with a pre-set `spec.nodeName` is never touched. The
//! scheduler never writes a Pod's spec (only the API server's binding does) and never evicts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, Pod, PodCondition, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Recorder};
use crate::{ControllerOptions, pods};

const SCHEDULER_NAME: &str = "default-scheduler";

/// Drives a reflector for `api` until shutdown, waking `notify` on every change.
pub(crate) fn spawn_reflector<K>(
    api: Api<K>,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.take_until(shutdown.cancelled_owned()));
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => {
                    tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed, retrying")
                }
            }
        }
    });
    (store, task)
}

pub(crate) async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) {
    let notify = Arc::new(Notify::new());
    let (pod_store, pod_task) = spawn_reflector(
        Api::<Pod>::all(client.clone()),
        notify.clone(),
        shutdown.clone(),
    );
    let (node_store, node_task) = spawn_reflector(
        Api::<Node>::all(client.clone()),
        notify.clone(),
        shutdown.clone(),
    );
    let mut sched = Scheduler {
        client: client.clone(),
        recorder: Recorder::new(client, SCHEDULER_NAME),
        assumed: HashMap::new(),
        reported: HashMap::new(),
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async { let _ = tokio::join!(pod_store.wait_until_ready(), node_store.wait_until_ready()); } => {}
    }
    while !shutdown.is_cancelled() {
        sched.pass(&pod_store.state(), &node_store.state()).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notify.notified() => {}
            _ = tokio::time::sleep(opts.scheduler_retry) => {}
        }
    }
    let _ = tokio::join!(pod_task, node_task);
}

struct Scheduler {
    client: kube::Client,
    recorder: Recorder,
    /// Pods bound in this process that the pod cache does not show bound yet (uid -> node).
    assumed: HashMap<String, String>,
    /// The unschedulable message last reported per pod uid (one Event per distinct message).
    reported: HashMap<String, String>,
}

/// Why a node does not fit a pod, rendered as upstream's reason strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Misfit {
    Taint(String),
    Selector,
    Unschedulable,
    TooManyPods,
}

impl Misfit {
    fn reason(&self) -> String {
        match self {
            Misfit::Taint(t) => format!("node(s) had untolerated taint {t}"),
            Misfit::Selector => "node(s) didn't match Pod's node affinity/selector".to_string(),
            Misfit::Unschedulable => "node(s) were unschedulable".to_string(),
            Misfit::TooManyPods => "Too many pods".to_string(),
        }
    }
}

fn node_ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let op = t.operator.as_deref().unwrap_or("Equal");
        let key_ok = match t.key.as_deref() {
            None | Some("") => op == "Exists",
            Some(k) => k == taint.key,
        };
        let value_ok = op == "Exists"
            || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        effect_ok && key_ok && value_ok
    })
}

fn taint_text(key: &str, value: &str) -> String {
    format!("{{{key}: {value}}}")
}

/// Why `node` cannot take `pod`, or `None` when it fits. `pods_on_node` counts its active pods.
fn misfit(pod: &Pod, node: &Node, pods_on_node: usize) -> Option<Misfit> {
    let spec = pod.spec.as_ref();
    let tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    // Upstream's node lifecycle taints NotReady/unreachable nodes; berth derives the same taints from the
    // Ready condition so the scheduler's message reads as upstream's.
    let implied = match node_ready_status(node) {
        "True" => None,
        "False" => Some("node.kubernetes.io/not-ready"),
        _ => Some("node.kubernetes.io/unreachable"),
    };
    if let Some(key) = implied {
        let t = Taint {
            key: key.to_string(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerates(&tolerations, &t) {
            return Some(Misfit::Taint(taint_text(key, "")));
        }
    }
    let node_spec = node.spec.as_ref();
    if node_spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        let t = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerates(&tolerations, &t) {
            return Some(Misfit::Unschedulable);
        }
    }
    for taint in node_spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerates(&tolerations, taint)
        {
            return Some(Misfit::Taint(taint_text(
                &taint.key,
                taint.value.as_deref().unwrap_or(""),
            )));
        }
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = spec.and_then(|s| s.node_selector.as_ref())
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return Some(Misfit::Selector);
    }
    let max_pods = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods"))
        .and_then(|q| q.0.parse::<usize>().ok());
    if max_pods.is_some_and(|m| pods_on_node >= m) {
        return Some(Misfit::TooManyPods);
    }
    None
}

/// Upstream's FitError message: `0/N nodes are available: <count reason, ...>. preemption: ...`.
fn unschedulable_message(total: usize, misfits: &[Misfit]) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for m in misfits {
        *histogram.entry(m.reason()).or_default() += 1;
    }
    let mut reasons: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reasons.sort();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        reasons.join(", ")
    )
}

fn wants_this_scheduler(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME)
}

impl Scheduler {
    async fn pass(&mut self, all_pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut pending: Vec<&Arc<Pod>> = Vec::new();
        let mut live = std::collections::HashSet::new();
        for p in all_pods {
            let uid = p.uid().unwrap_or_default();
            live.insert(uid.clone());
            let node = pods::node_name(p);
            if !node.is_empty() {
                self.assumed.remove(&uid);
                self.reported.remove(&uid);
                let phase = pods::phase(p);
                if phase != "Succeeded" && phase != "Failed" {
                    *counts.entry(node.to_string()).or_default() += 1;
                }
            } else if let Some(n) = self.assumed.get(&uid) {
                *counts.entry(n.clone()).or_default() += 1;
            } else if !pods::is_terminating(p) && pods::is_active(p) && wants_this_scheduler(p) {
                pending.push(p);
            }
        }
        self.assumed.retain(|uid, _| live.contains(uid));
        self.reported.retain(|uid, _| live.contains(uid));
        pending.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb).then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let mut sorted_nodes: Vec<&Arc<Node>> = nodes
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .collect();
        sorted_nodes.sort_by_key(|n| n.name_any());
        for pod in pending {
            let mut best: Option<(usize, &str)> = None;
            let mut misfits = Vec::new();
            for node in &sorted_nodes {
                let name = node.metadata.name.as_deref().unwrap_or("");
                let count = counts.get(name).copied().unwrap_or(0);
                match misfit(pod, node, count) {
                    Some(m) => misfits.push(m),
                    None if best.is_none_or(|(c, _)| count < c) => best = Some((count, name)),
                    None => {}
                }
            }
            match best {
                Some((_, node)) => {
                    if self.bind(pod, node).await {
                        self.assumed
                            .insert(pod.uid().unwrap_or_default(), node.to_string());
                        *counts.entry(node.to_string()).or_default() += 1;
                    }
                }
                None => {
                    let message = unschedulable_message(sorted_nodes.len(), &misfits);
                    self.report_unschedulable(pod, message).await;
                }
            }
        }
    }

    async fn bind(&self, pod: &Pod, node: &str) -> bool {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{name}"), node, "bound pod");
                self.recorder
                    .record(
                        &pod.object_ref(&()),
                        EventType::Normal,
                        "Scheduled",
                        format!("Successfully assigned {ns}/{name} to {node}"),
                    )
                    .await;
                true
            }
            Err(e) if crate::is_status(&e, 409) || crate::is_status(&e, 404) => {
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "pod already bound or gone");
                false
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), node, error = %e, "binding failed, will retry");
                false
            }
        }
    }

    async fn report_unschedulable(&mut self, pod: &Pod, message: String) {
        let uid = pod.uid().unwrap_or_default();
        if self.reported.get(&uid) == Some(&message) {
            return;
        }
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let current = conditions.iter().position(|c| c.type_ == "PodScheduled");
        let unchanged = current.is_some_and(|i| {
            let c = &conditions[i];
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message.as_str())
        });
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        if !unchanged {
            let transition = current
                .filter(|&i| conditions[i].status == "False")
                .and_then(|i| conditions[i].last_transition_time.clone())
                .unwrap_or(Time(Timestamp::now()));
            let cond = PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message.clone()),
                last_transition_time: Some(transition),
                last_probe_time: None,
                observed_generation: None,
            };
            match current {
                Some(i) => conditions[i] = cond,
                None => conditions.push(cond),
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "failed to set PodScheduled=False");
                return;
            }
        }
        tracing::info!(pod = %format!("{ns}/{name}"), %message, "pod is unschedulable");
        self.recorder
            .record(
                &pod.object_ref(&()),
                EventType::Warning,
                "FailedScheduling",
                message.clone(),
            )
            .await;
        self.reported.insert(uid, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": ready}], "allocatable": {"pods": "2"}},
        }))
        .unwrap()
    }

    fn pod(selector: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeSelector": selector}}))
            .unwrap()
    }

    #[test]
    fn message_counts_reasons_like_upstream_fit_error() {
        let p = pod(json!({"disk": "ssd"}));
        let nodes = [
            node("a", "True", json!({})),
            node("b", "Unknown", json!({"disk": "ssd"})),
            node("c", "True", json!({"disk": "hdd"})),
        ];
        let misfits: Vec<Misfit> = nodes.iter().filter_map(|n| misfit(&p, n, 0)).collect();
        assert_eq!(
            unschedulable_message(3, &misfits),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            unschedulable_message(0, &[]),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn a_full_node_and_an_untolerated_taint_do_not_fit() {
        let p = pod(json!({}));
        let n = node("a", "True", json!({}));
        assert_eq!(misfit(&p, &n, 1), None);
        assert_eq!(misfit(&p, &n, 2), Some(Misfit::TooManyPods));
        let mut tainted = n.clone();
        tainted.spec = Some(
            serde_json::from_value(
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            )
            .unwrap(),
        );
        assert_eq!(
            misfit(&p, &tainted, 0),
            Some(Misfit::Taint("{k: v}".into()))
        );
        let mut tolerant = p.clone();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![
            serde_json::from_value(json!({"key": "k", "operator": "Exists"})).unwrap(),
        ]);
        assert_eq!(misfit(&tolerant, &tainted, 0), None);
    }
}
