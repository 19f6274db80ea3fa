//! The ReplicaSet controller: keeps `spec.replicas` active Pods (created from the template with generateName
//! `<rs>-`, labels and annotations of the template, a controller ownerReference with blockOwnerDeletion),
//! adopts matching orphans, deletes surplus pods in upstream's order (unscheduled, pending, not ready, doubled
//! up, newest first) and writes status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
//! observedGeneration) with the Events `SuccessfulCreate`/`SuccessfulDelete` (`Created pod: x`). Pods are listed
//! fresh from the API server on every reconcile, so the controller never acts on a stale cache. It never deletes
//! pods it does not own (the API server's garbage collector removes the pods of a deleted ReplicaSet).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Recorder};
use crate::{ControllerOptions, Error, labels, pods};

/// Upstream's `BurstReplicas`: at most this many creations or deletions per sync.
const BURST_REPLICAS: usize = 500;

pub(crate) struct Ctx {
    pub(crate) client: kube::Client,
    pub(crate) recorder: Recorder,
}

pub(crate) async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default());
    drive(
        controller,
        "replicaset-controller",
        &client,
        &opts,
        shutdown,
        reconcile,
    )
    .await;
}

/// Runs one workload controller to completion: `component` (upstream's name, e.g. `replicaset-controller`) as the
/// Event source and in logs, the shared concurrency, requeue policy and error log, and a graceful stop when
/// `shutdown` is cancelled.
pub(crate) async fn drive<K, Fut>(
    controller: Controller<K>,
    component: &'static str,
    client: &kube::Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
    reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> Fut,
) where
    K: Clone + Resource + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), component),
    });
    controller
        .with_config(Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                crate::log_controller_error(component, &e);
            }
        })
        .await;
}

pub(crate) fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    if err.is_conflict() {
        Action::requeue(Duration::from_millis(100))
    } else {
        Action::requeue(Duration::from_secs(2))
    }
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let uid = rs.uid().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = api
        .list(&ListParams::default().labels(&labels::query(&spec.selector)))
        .await
        .map_err(Error::api(format!("list pods of replicaset {ns}/{name}")))?;
    let mut owned: Vec<Pod> = Vec::new();
    for pod in listed.items {
        let pod_labels = pod.labels().clone();
        match labels::controller_uid(pod.metadata.owner_references.as_ref()) {
            Some(owner) if owner == uid => owned.push(pod),
            None if labels::matches(&spec.selector, &pod_labels) && !pods::is_terminating(&pod) => {
                owned.push(adopt(&api, &rs, pod).await?);
            }
            _ => {}
        }
    }
    let active: Vec<&Pod> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let diff = active.len() as i64 - replicas as i64;
    if diff < 0 {
        create_pods(&ctx, &api, &rs, ((-diff) as usize).min(BURST_REPLICAS)).await?;
    } else if diff > 0 {
        let mut on_node: HashMap<&str, usize> = HashMap::new();
        for p in &active {
            *on_node.entry(pods::node_name(p)).or_default() += 1;
        }
        let mut ranked: Vec<(&Pod, usize)> = active
            .iter()
            .map(|p| (*p, on_node[pods::node_name(p)]))
            .collect();
        ranked.sort_by(|a, b| pods::deletion_order(a.0, a.1, b.0, b.1));
        for (pod, _) in ranked.into_iter().take((diff as usize).min(BURST_REPLICAS)) {
            let pod_name = pod.name_any();
            match api.delete(&pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.recorder
                        .record(
                            &rs.object_ref(&()),
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted pod: {pod_name}"),
                        )
                        .await
                }
                Err(e) if crate::is_status(&e, 404) => {}
                Err(e) => {
                    ctx.recorder
                        .record(
                            &rs.object_ref(&()),
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        )
                        .await;
                    return Err(Error::api(format!("delete pod {ns}/{pod_name}"))(e));
                }
            }
        }
    }

    // Status from the pods seen at the start of this sync, as upstream's calculateStatus.
    let now = Timestamp::now();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(
            active
                .iter()
                .filter(|p| {
                    template_labels
                        .iter()
                        .all(|(k, v)| p.labels().get(k) == Some(v))
                })
                .count() as i32,
        ),
        ready_replicas: Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32),
        available_replicas: Some(
            active
                .iter()
                .filter(|p| pods::is_available(p, min_ready, now))
                .count() as i32,
        ),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    write_status(&ctx.client, &rs, status).await?;
    let wake = active
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match wake {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn same_counts(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    a.replicas == b.replicas
        && a.fully_labeled_replicas.unwrap_or(0) == b.fully_labeled_replicas.unwrap_or(0)
        && a.ready_replicas.unwrap_or(0) == b.ready_replicas.unwrap_or(0)
        && a.available_replicas.unwrap_or(0) == b.available_replicas.unwrap_or(0)
        && a.observed_generation == b.observed_generation
}

async fn write_status(
    client: &kube::Client,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), Error> {
    if rs.status.as_ref().is_some_and(|s| same_counts(s, &status)) {
        return Ok(());
    }
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({"status": {
        "replicas": status.replicas,
        "fullyLabeledReplicas": status.fully_labeled_replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "observedGeneration": status.observed_generation,
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api(format!(
            "update status of replicaset {ns}/{name}"
        )))?;
    Ok(())
}

async fn adopt(api: &Api<Pod>, rs: &ReplicaSet, pod: Pod) -> Result<Pod, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(labels::controller_ref(rs));
    let patch = serde_json::json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
    }});
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::api(format!(
        "adopt pod {} into replicaset {}",
        pod.name_any(),
        rs.name_any()
    )))
}

/// A Pod for `rs` from its template (name left to generateName).
pub(crate) fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![labels::controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates `count` pods in upstream's slow-start batches (1, 2, 4, ...), stopping at the first failing batch.
async fn create_pods(
    ctx: &Ctx,
    api: &Api<Pod>,
    rs: &ReplicaSet,
    count: usize,
) -> Result<(), Error> {
    let pod = pod_from_template(rs);
    let mut remaining = count;
    let mut batch = 1usize;
    while remaining > 0 {
        let n = batch.min(remaining);
        let pp = PostParams::default();
        let results = futures::future::join_all((0..n).map(|_| api.create(&pp, &pod))).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(p) => {
                    ctx.recorder
                        .record(
                            &rs.object_ref(&()),
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        )
                        .await
                }
                Err(e) => {
                    ctx.recorder
                        .record(
                            &rs.object_ref(&()),
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        )
                        .await;
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(Error::api(format!(
                "create pod for replicaset {}/{}",
                rs.namespace().unwrap_or_default(),
                rs.name_any()
            ))(e));
        }
        remaining -= n;
        batch *= 2;
    }
    Ok(())
}
