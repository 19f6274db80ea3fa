//! The StatefulSet controller: pods `<set>-0 .. <set>-(N-1)` with the labels `statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index` and `controller-revision-hash`, hostname and subdomain set; OrderedReady (pod
//! i+1 is created only when pod i is Running and Ready, scale down one at a time from the highest ordinal) or
//! Parallel management; RollingUpdate (highest ordinal first, one at a time, down to `partition`) or OnDelete
//! updates; template history kept as ControllerRevisions `<set>-<hash>` (pruned to revisionHistoryLimit); status
//! (replicas, readyReplicas, currentReplicas, updatedReplicas, availableReplicas, currentRevision,
//! updateRevision, collisionCount, observedGeneration) as upstream computes it, so `kubectl rollout status
//! statefulset/x` works. Follows kube-controller-manager's `pkg/controller/statefulset` (maxUnavailable 1). It
//! never touches PersistentVolumeClaims (berth has no volumes API) and never deletes pods it does not own.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::events::EventType;
use crate::replicaset::{Ctx, drive};
use crate::{ControllerOptions, Error, hash, labels, pods};

pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub(crate) const REVISION_LABEL: &str = "controller-revision-hash";
/// Label of a ControllerRevision carrying its hash (upstream's `ControllerRevisionHashLabel`).
const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

pub(crate) async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
    .owns(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    );
    drive(
        controller,
        "statefulset-controller",
        &client,
        &opts,
        shutdown,
        reconcile,
    )
    .await;
}

/// Upstream's `getPatch`: the revision data is `{"spec":{"template":<template + "$patch":"replace">}}`.
pub(crate) fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

fn template_of_revision(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The ordinal of a pod named `<set>-<n>`.
pub(crate) fn ordinal(set: &str, pod: &str) -> Option<usize> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok()
}

fn pod_revision(p: &Pod) -> &str {
    p.labels()
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

/// Upstream's `isRunningAndReady`.
fn running_and_ready(p: &Pod) -> bool {
    pods::phase(p) == "Running" && pods::is_ready(p)
}

fn healthy(p: &Pod, min_ready: i32, now: Timestamp) -> bool {
    running_and_ready(p) && !pods::is_terminating(p) && pods::is_available(p, min_ready, now)
}

async fn reconcile(cached: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(set) = sts_api
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("get statefulset {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = set.spec.clone().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let query = labels::query(&spec.selector);
    let mut status = set.status.clone().unwrap_or_default();

    // Revisions: find or create the one for the current template.
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut revisions: Vec<ControllerRevision> = rev_api
        .list(&ListParams::default().labels(&query))
        .await
        .map_err(Error::api(format!(
            "list controllerrevisions of statefulset {ns}/{name}"
        )))?
        .items
        .into_iter()
        .filter(|r| {
            labels::controller_uid(r.metadata.owner_references.as_ref()) == Some(uid.as_str())
        })
        .collect();
    revisions.sort_by_key(|r| r.revision);
    let data = revision_data(&spec.template);
    let max_revision = revisions.last().map(|r| r.revision).unwrap_or(0);
    let update_revision = match revisions
        .iter()
        .position(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
    {
        Some(i) if revisions[i].revision == max_revision => revisions[i].clone(),
        Some(i) => {
            // An older template came back (rollback): it becomes the newest revision, as upstream.
            let patch = json!({"revision": max_revision + 1});
            let r = rev_api
                .patch(
                    &revisions[i].name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(Error::api(format!(
                    "update controllerrevision {ns}/{}",
                    revisions[i].name_any()
                )))?;
            revisions[i] = r.clone();
            r
        }
        None => {
            let r = create_revision(&rev_api, &set, &data, max_revision + 1, &mut status).await?;
            revisions.push(r.clone());
            r
        }
    };
    let update_name = update_revision.name_any();
    let current_revision = status
        .current_revision
        .as_ref()
        .and_then(|c| revisions.iter().find(|r| &r.name_any() == c))
        .cloned()
        .unwrap_or_else(|| update_revision.clone());
    let current_name = current_revision.name_any();

    // Pods by ordinal.
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = pod_api
        .list(&ListParams::default().labels(&query))
        .await
        .map_err(Error::api(format!("list pods of statefulset {ns}/{name}")))?;
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let mut slots: Vec<Option<Pod>> = vec![None; replicas];
    let mut condemned: Vec<(usize, Pod)> = Vec::new();
    for pod in listed.items {
        if labels::controller_uid(pod.metadata.owner_references.as_ref()) != Some(uid.as_str()) {
            continue;
        }
        match ordinal(&name, &pod.name_any()) {
            Some(i) if i < replicas => slots[i] = Some(pod),
            Some(i) => condemned.push((i, pod)),
            None => {}
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy
        .type_
        .as_deref()
        .is_none_or(|t| t == "RollingUpdate");
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0) as usize;
    let current_template =
        template_of_revision(&current_revision).unwrap_or_else(|| spec.template.clone());

    let mut step = Step {
        ctx: &ctx,
        set: &set,
        api: &pod_api,
    };
    let mut done = false;
    // Replicas in ordinal order.
    for (i, slot) in slots.iter_mut().enumerate() {
        match slot {
            None => {
                let (template, rev) = if rolling && i < partition {
                    (&current_template, current_name.as_str())
                } else {
                    (&spec.template, update_name.as_str())
                };
                if let Some(p) = step.create(i, template, rev).await? {
                    *slot = Some(p);
                }
                if monotonic {
                    done = true;
                    break;
                }
            }
            Some(p)
                if matches!(pods::phase(p), "Failed" | "Succeeded") && !pods::is_terminating(p) =>
            {
                // Upstream recreates failed pods: delete now, create on the next pass.
                step.delete(p).await?;
                if monotonic {
                    done = true;
                    break;
                }
            }
            Some(p) if !healthy(p, min_ready, now) && monotonic => {
                done = true;
                break;
            }
            Some(_) => {}
        }
    }
    // Condemned pods, highest ordinal first.
    if !done {
        for (_, p) in &condemned {
            if pods::is_terminating(p) {
                if monotonic {
                    done = true;
                    break;
                }
                continue;
            }
            step.delete(p).await?;
            if monotonic {
                done = true;
                break;
            }
        }
    }
    // Rolling update, highest ordinal first, one pod at a time, down to the partition.
    if !done && rolling {
        for i in (partition..replicas).rev() {
            let Some(p) = &slots[i] else { break };
            if pod_revision(p) != update_name && !pods::is_terminating(p) {
                step.delete(p).await?;
                break;
            }
            if !healthy(p, min_ready, now) {
                break;
            }
        }
    }

    // Status from the pods as seen (plus the ones created in this pass), as upstream's computeReplicaStatus.
    let mut next = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: status.collision_count,
        current_revision: Some(current_name.clone()),
        update_revision: Some(update_name.clone()),
        conditions: status.conditions.clone(),
        ..Default::default()
    };
    let mut ready = 0;
    let mut available = 0;
    let mut current = 0;
    let mut updated = 0;
    for p in slots
        .iter()
        .flatten()
        .chain(condemned.iter().map(|(_, p)| p))
    {
        next.replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if pods::is_available(p, min_ready, now) {
                available += 1;
            }
        }
        if !pods::is_terminating(p) {
            if pod_revision(p) == current_name {
                current += 1;
            }
            if pod_revision(p) == update_name {
                updated += 1;
            }
        }
    }
    next.ready_replicas = Some(ready);
    next.available_replicas = Some(available);
    next.current_replicas = Some(current);
    next.updated_replicas = Some(updated);
    // completeRollingUpdate
    if rolling && updated == next.replicas && ready == next.replicas {
        next.current_replicas = Some(updated);
        next.current_revision = Some(update_name.clone());
    }
    if set.status.as_ref() != Some(&next) {
        let patch = json!({"status": serde_json::to_value(&next).unwrap_or(Value::Null)});
        sts_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!(
                "update status of statefulset {ns}/{name}"
            )))?;
    }
    truncate_history(
        &rev_api,
        &spec,
        &revisions,
        &slots,
        &condemned,
        &[current_name, update_name],
    )
    .await?;
    let wake = slots
        .iter()
        .flatten()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(wake
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

async fn create_revision(
    api: &Api<ControllerRevision>,
    set: &StatefulSet,
    data: &Value,
    number: i64,
    status: &mut StatefulSetStatus,
) -> Result<ControllerRevision, Error> {
    let ns = set.namespace().unwrap_or_default();
    let template_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    loop {
        let rev_hash = hash::controller_revision_hash(data, status.collision_count);
        let rev_name = format!("{}-{rev_hash}", set.name_any());
        let mut rev_labels = template_labels.clone();
        rev_labels.insert(REVISION_HASH_LABEL.into(), rev_hash);
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(rev_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(rev_labels),
                owner_references: Some(vec![labels::controller_ref(set)]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: number,
        };
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => return Ok(r),
            Err(e) if crate::is_status(&e, 409) => {
                let existing = api.get(&rev_name).await.map_err(Error::api(format!(
                    "get controllerrevision {ns}/{rev_name}"
                )))?;
                if existing.data.as_ref().map(|d| &d.0) == Some(data)
                    && labels::controller_uid(existing.metadata.owner_references.as_ref())
                        == set.uid().as_deref()
                {
                    return Ok(existing);
                }
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                if status.collision_count > Some(1000) {
                    return Err(Error::api(format!(
                        "create controllerrevision {ns}/{rev_name} (too many hash collisions)"
                    ))(e));
                }
            }
            Err(e) => {
                return Err(Error::api(format!(
                    "create controllerrevision {ns}/{rev_name}"
                ))(e));
            }
        }
    }
}

/// Upstream's `truncateHistory`: keep revisions in use plus the newest `revisionHistoryLimit` others.
async fn truncate_history(
    api: &Api<ControllerRevision>,
    spec: &k8s_openapi::api::apps::v1::StatefulSetSpec,
    revisions: &[ControllerRevision],
    slots: &[Option<Pod>],
    condemned: &[(usize, Pod)],
    live: &[String],
) -> Result<(), Error> {
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut in_use: Vec<&str> = live.iter().map(String::as_str).collect();
    in_use.extend(
        slots
            .iter()
            .flatten()
            .chain(condemned.iter().map(|(_, p)| p))
            .map(pod_revision),
    );
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !in_use.contains(&r.name_any().as_str()))
        .collect();
    if history.len() <= limit {
        return Ok(());
    }
    for r in &history[..history.len() - limit] {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if crate::is_status(&e, 404) => {}
            Err(e) => {
                return Err(Error::api(format!(
                    "delete controllerrevision {}",
                    r.name_any()
                ))(e));
            }
        }
    }
    Ok(())
}

struct Step<'a> {
    ctx: &'a Ctx,
    set: &'a StatefulSet,
    api: &'a Api<Pod>,
}

impl Step<'_> {
    /// Creates pod `ordinal` from `template` at revision `rev`; `None` when it already exists.
    async fn create(
        &mut self,
        ordinal: usize,
        template: &PodTemplateSpec,
        rev: &str,
    ) -> Result<Option<Pod>, Error> {
        let set_name = self.set.name_any();
        let pod_name = format!("{set_name}-{ordinal}");
        let meta = template.metadata.clone().unwrap_or_default();
        let mut pod_labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
        pod_labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        pod_labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        pod_labels.insert(REVISION_LABEL.into(), rev.to_string());
        let mut pod_spec = template.spec.clone().unwrap_or_default();
        pod_spec.hostname = Some(pod_name.clone());
        if let Some(svc) = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .filter(|s| !s.is_empty())
        {
            pod_spec.subdomain = Some(svc);
        }
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                namespace: self.set.namespace(),
                labels: Some(pod_labels),
                annotations: meta.annotations,
                owner_references: Some(vec![labels::controller_ref(self.set)]),
                ..Default::default()
            },
            spec: Some(pod_spec),
            status: None,
        };
        match self.api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                self.ctx
                    .recorder
                    .record(
                        &self.set.object_ref(&()),
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                    )
                    .await;
                Ok(Some(p))
            }
            Err(e) if crate::is_status(&e, 409) => Ok(None),
            Err(e) => {
                self.ctx
                    .recorder
                    .record(
                        &self.set.object_ref(&()),
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                        ),
                    )
                    .await;
                Err(Error::api(format!(
                    "create pod {}/{pod_name}",
                    self.set.namespace().unwrap_or_default()
                ))(e))
            }
        }
    }

    async fn delete(&mut self, pod: &Pod) -> Result<(), Error> {
        let set_name = self.set.name_any();
        let pod_name = pod.name_any();
        match self.api.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                self.ctx
                    .recorder
                    .record(
                        &self.set.object_ref(&()),
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("delete Pod {pod_name} in StatefulSet {set_name} successful"),
                    )
                    .await;
                Ok(())
            }
            Err(e) if crate::is_status(&e, 404) => Ok(()),
            Err(e) => {
                self.ctx
                    .recorder
                    .record(
                        &self.set.object_ref(&()),
                        EventType::Warning,
                        "FailedDelete",
                        format!(
                            "delete Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                        ),
                    )
                    .await;
                Err(Error::api(format!(
                    "delete pod {}/{pod_name}",
                    self.set.namespace().unwrap_or_default()
                ))(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_canonical_set_member_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
    }

    #[test]
    fn revision_data_round_trips_the_template_and_marks_it_replace() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
        let data = revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let rev = ControllerRevision {
            data: Some(RawExtension(data)),
            revision: 1,
            metadata: Default::default(),
        };
        assert_eq!(template_of_revision(&rev), Some(t));
    }
}
