//! The Deployment controller: turns a Deployment into ReplicaSets named `<deployment>-<pod-template-hash>`,
//! rolls out template changes (RollingUpdate with maxSurge/maxUnavailable resolved as upstream's
//! `ResolveFenceposts`, or Recreate), keeps the revision annotation `deployment.kubernetes.io/revision` on the
//! ReplicaSets and the Deployment, deletes ReplicaSets beyond `revisionHistoryLimit`, and writes status and the
//! Available/Progressing conditions with upstream's reasons and messages so that `kubectl rollout status` and
//! `kubectl rollout restart` behave as on a real cluster. Scaling Events are `ScalingReplicaSet` with upstream's
//! text. The algorithm follows kube-controller-manager's `pkg/controller/deployment` (sync, rolling, recreate,
//! progress); ReplicaSets are listed fresh from the API server on every reconcile. It never creates or deletes
//! Pods (the ReplicaSet controller does) and never deletes a ReplicaSet that still has replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::events::EventType;
use crate::replicaset::{Ctx, drive};
use crate::{ControllerOptions, Error, hash, labels, pods};

/// The label and selector key that ties a ReplicaSet's pods to one template.
pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

// Condition reasons (pkg/controller/deployment/util).
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub(crate) async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    drive(
        controller,
        "deployment-controller",
        &client,
        &opts,
        shutdown,
        reconcile,
    )
    .await;
}

/// Upstream's `intstr.GetScaledValueFromIntOrPercent`: an int as is, `"N%"` of `total` rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    format!("invalid value {s:?}: must be an integer or a percentage like \"25%\"")
                })?;
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// Upstream's `ResolveFenceposts`: (maxSurge rounded up, maxUnavailable rounded down) for `desired` replicas;
/// when both are zero maxUnavailable becomes 1 so a rollout can progress.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)
        .map_err(|e| format!("maxSurge: {e}"))?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)
        .map_err(|e| format!("maxUnavailable: {e}"))?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = ru.map(|r| r.max_surge.as_ref()).unwrap_or(Some(&default));
    let unavailable = ru
        .map(|r| r.max_unavailable.as_ref())
        .unwrap_or(Some(&default));
    resolve_fenceposts(surge, unavailable, replicas_of(d)).map_err(|message| Error::Invalid {
        object: format!(
            "deployment {}/{}",
            d.namespace().unwrap_or_default(),
            d.name_any()
        ),
        field: "spec.strategy.rollingUpdate".into(),
        message,
    })
}

/// Upstream's `MaxUnavailable`: 0 for Recreate or zero replicas, else the resolved maxUnavailable capped at
/// replicas.
fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas_of(d) == 0 {
        return 0;
    }
    fenceposts(d)
        .map(|(_, u)| u.min(replicas_of(d)))
        .unwrap_or(0)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32,
) -> i32 {
    rs.status.as_ref().map(f).unwrap_or(0)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// A template as JSON with the pod-template-hash label removed (upstream's `EqualIgnoreHash`).
fn template_without_hash(t: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(t.cloned().unwrap_or_default()).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            v["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if v.get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.is_empty())
    {
        v.as_object_mut().map(|m| m.remove("metadata"));
    }
    v
}

fn same_template(d: &Deployment, rs: &ReplicaSet) -> bool {
    template_without_hash(d.spec.as_ref().map(|s| &s.template))
        == template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
}

fn condition<'a>(status: &'a DeploymentStatus, kind: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == kind)
}

fn new_condition(kind: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Time(Timestamp::now());
    DeploymentCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Upstream's `SetDeploymentCondition`: same status and reason keeps the condition; same status keeps the
/// transition time.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conditions.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

fn remove_condition(status: &mut DeploymentStatus, kind: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != kind);
    }
}

/// Upstream's `DeploymentComplete`.
fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas_of(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`.
fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Upstream's `DeploymentTimedOut`.
fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, "Progressing") else {
        return false;
    };
    if c.reason.as_deref() == Some(NEW_RS_AVAILABLE) || c.reason.as_deref() == Some(TIMED_OUT) {
        return c.reason.as_deref() == Some(TIMED_OUT);
    }
    c.last_update_time
        .as_ref()
        .is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(deadline)) < now)
}

struct Sync<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    ns: String,
    rs_api: Api<ReplicaSet>,
    /// Every ReplicaSet this Deployment controls.
    all: Vec<ReplicaSet>,
    /// Index of the new ReplicaSet in `all`.
    new: Option<usize>,
}

async fn reconcile(cached: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(d) = d_api
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("get deployment {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
    {
        ctx.recorder
            .record(
                &d.object_ref(&()),
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
        return Ok(Action::await_change());
    }
    let listed = rs_api
        .list(&ListParams::default().labels(&labels::query(&selector)))
        .await
        .map_err(Error::api(format!(
            "list replicasets of deployment {ns}/{name}"
        )))?;
    let uid = d.uid().unwrap_or_default();
    let mut all = Vec::new();
    for rs in listed.items {
        match labels::controller_uid(rs.metadata.owner_references.as_ref()) {
            Some(owner) if owner == uid => all.push(rs),
            None if labels::matches(&selector, rs.labels())
                && rs.metadata.deletion_timestamp.is_none() =>
            {
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(labels::controller_ref(&d));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
                let adopted = rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(Error::api(format!(
                        "adopt replicaset {ns}/{}",
                        rs.name_any()
                    )))?;
                all.push(adopted);
            }
            _ => {}
        }
    }
    // Oldest first, as upstream's ReplicaSetsByCreationTimestamp.
    all.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let new = all.iter().position(|rs| same_template(&d, rs));
    let mut s = Sync {
        ctx: &ctx,
        d,
        ns,
        rs_api,
        all,
        new,
    };
    let paused = s.d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    if paused {
        s.scale_only().await?;
        s.write_status(false).await?;
        return Ok(Action::await_change());
    }
    if is_rolling(&s.d) {
        s.rolling().await
    } else {
        s.recreate().await
    }
}

impl Sync<'_> {
    fn name(&self) -> String {
        self.d.name_any()
    }

    fn old(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.new)
            .map(|(_, rs)| rs)
    }

    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new.map(|i| &self.all[i])
    }

    fn total_spec(&self) -> i32 {
        self.all.iter().map(rs_replicas).sum()
    }

    /// Upstream's `getNewReplicaSet`: sync the existing new ReplicaSet's revision, or create it.
    async fn ensure_new(&mut self, create: bool) -> Result<(), Error> {
        let max_old = self.old().map(revision).max().unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new {
            let rs = &self.all[i];
            let annotations = self.rs_annotations(rs, new_revision);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if annotations != *rs.annotations()
                || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0)
            {
                let patch = json!({"metadata": {"annotations": annotations}, "spec": {"minReadySeconds": min_ready.unwrap_or(0)}});
                let updated = self
                    .rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(Error::api(format!(
                        "update replicaset {}/{}",
                        self.ns,
                        rs.name_any()
                    )))?;
                self.all[i] = updated;
            }
            let rev = self.all[i]
                .annotations()
                .get(REVISION)
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(&rev).await?;
            let has_progressing = self
                .d
                .status
                .as_ref()
                .is_some_and(|s| condition(s, "Progressing").is_some());
            if progress_deadline(&self.d).is_some() && !has_progressing {
                let msg = format!("Found new replica set {:?}", self.all[i].name_any());
                let generation = self.d.metadata.generation;
                let status = self.d.status.get_or_insert_with(Default::default);
                set_condition(
                    status,
                    new_condition("Progressing", "True", FOUND_NEW_RS, msg),
                );
                status.observed_generation = generation;
                self.put_status().await?;
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let template_json = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
        let hash = hash::pod_template_hash(&template_json, collision_count);
        let rs_name = format!("{}-{}", self.name(), hash);
        let mut template = spec.template.clone();
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let replicas = self.new_rs_replicas(None)?;
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.ns.clone()),
                labels: tmeta.labels.clone(),
                owner_references: Some(vec![labels::controller_ref(&self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        rs.metadata.annotations = Some(self.rs_annotations(&rs, new_revision));
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                tracing::info!(deployment = %format!("{}/{}", self.ns, self.name()), replicaset = %rs_name, "created new replica set");
                if replicas > 0 {
                    self.ctx
                        .recorder
                        .record(
                            &self.d.object_ref(&()),
                            EventType::Normal,
                            "ScalingReplicaSet",
                            format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                        )
                        .await;
                }
                self.all.push(created);
                self.new = Some(self.all.len() - 1);
                self.set_deployment_revision(&new_revision.to_string())
                    .await?;
                if progress_deadline(&self.d).is_some() {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    let msg = format!("Created new replica set {rs_name:?}");
                    set_condition(
                        status,
                        new_condition("Progressing", "True", NEW_RS_CREATED, msg),
                    );
                    self.put_status().await?;
                }
                Ok(())
            }
            Err(e) if crate::is_status(&e, 409) => {
                // A ReplicaSet of that name exists: ours with an equal template means the cache lagged;
                // anything else is a hash collision, resolved by bumping collisionCount as upstream.
                let existing = self
                    .rs_api
                    .get(&rs_name)
                    .await
                    .map_err(Error::api(format!("get replicaset {}/{rs_name}", self.ns)))?;
                let ours = labels::controller_uid(existing.metadata.owner_references.as_ref())
                    == self.d.uid().as_deref();
                if ours && same_template(&self.d, &existing) {
                    self.all.push(existing);
                    self.new = Some(self.all.len() - 1);
                    return Ok(());
                }
                let status = self.d.status.get_or_insert_with(Default::default);
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                tracing::info!(deployment = %format!("{}/{}", self.ns, self.name()), replicaset = %rs_name, "pod template hash collision, bumping collisionCount");
                self.put_status().await?;
                Err(Error::api(format!(
                    "create replicaset {}/{rs_name}",
                    self.ns
                ))(e))
            }
            Err(e) => Err(Error::api(format!(
                "create replicaset {}/{rs_name}",
                self.ns
            ))(e)),
        }
    }

    /// The annotations a ReplicaSet of this Deployment carries: the Deployment's own (except the ones upstream
    /// skips), the revision (raised to `new_revision` only), desired and max replicas.
    fn rs_annotations(&self, rs: &ReplicaSet, new_revision: i64) -> BTreeMap<String, String> {
        let mut out = rs.annotations().clone();
        for (k, v) in self.d.annotations() {
            if ![
                LAST_APPLIED,
                REVISION,
                REVISION_HISTORY,
                DESIRED_REPLICAS,
                MAX_REPLICAS,
                ROLLBACK_TO,
            ]
            .contains(&k.as_str())
            {
                out.insert(k.clone(), v.clone());
            }
        }
        if revision(rs) < new_revision {
            out.insert(REVISION.into(), new_revision.to_string());
        }
        let want = replicas_of(&self.d);
        let surge = if is_rolling(&self.d) {
            fenceposts(&self.d).map(|(s, _)| s).unwrap_or(0)
        } else {
            0
        };
        out.insert(DESIRED_REPLICAS.into(), want.to_string());
        out.insert(MAX_REPLICAS.into(), (want + surge).to_string());
        out
    }

    async fn set_deployment_revision(&mut self, rev: &str) -> Result<(), Error> {
        if rev.is_empty() || self.d.annotations().get(REVISION).map(String::as_str) == Some(rev) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let updated = api
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!(
                "set revision of deployment {}/{}",
                self.ns,
                self.name()
            )))?;
        self.d.metadata = updated.metadata;
        Ok(())
    }

    /// Upstream's `NewRSNewReplicas`.
    fn new_rs_replicas(&self, new: Option<&ReplicaSet>) -> Result<i32, Error> {
        let want = replicas_of(&self.d);
        if !is_rolling(&self.d) {
            return Ok(want);
        }
        let new_current = new.map(rs_replicas).unwrap_or(0);
        let (surge, _) = fenceposts(&self.d)?;
        let current: i32 = self.total_spec();
        let max_total = want + surge;
        if current >= max_total {
            return Ok(new_current);
        }
        let up = (max_total - current).min(want - new_current);
        Ok(new_current + up.max(0))
    }

    /// Scales the ReplicaSet at `i` to `to`, with upstream's ScalingReplicaSet Event.
    async fn scale(&mut self, i: usize, to: i32) -> Result<bool, Error> {
        let rs = &self.all[i];
        let from = rs_replicas(rs);
        let want = replicas_of(&self.d);
        let surge = if is_rolling(&self.d) {
            fenceposts(&self.d)?.0
        } else {
            0
        };
        let annotations_ok = rs.annotations().get(DESIRED_REPLICAS) == Some(&want.to_string())
            && rs.annotations().get(MAX_REPLICAS) == Some(&(want + surge).to_string());
        if from == to && annotations_ok {
            return Ok(false);
        }
        let rs_name = rs.name_any();
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: want.to_string(), MAX_REPLICAS: (want + surge).to_string()}},
            "spec": {"replicas": to},
        });
        let updated = self
            .rs_api
            .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!(
                "scale replicaset {}/{rs_name} to {to}",
                self.ns
            )))?;
        self.all[i] = updated;
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            self.ctx
                .recorder
                .record(
                    &self.d.object_ref(&()),
                    EventType::Normal,
                    "ScalingReplicaSet",
                    format!("Scaled {verb} replica set {rs_name} from {from} to {to}"),
                )
                .await;
        }
        Ok(from != to)
    }

    /// Upstream's `sync` for a paused Deployment: scale the new ReplicaSet (or the newest active one) only.
    async fn scale_only(&mut self) -> Result<(), Error> {
        self.ensure_new(false).await?;
        if let Some(i) = self.new {
            let want = replicas_of(&self.d);
            if self.old().all(|rs| rs_replicas(rs) == 0) {
                self.scale(i, want).await?;
            }
        }
        Ok(())
    }

    async fn rolling(&mut self) -> Result<Action, Error> {
        self.ensure_new(true).await?;
        // reconcileNewReplicaSet
        if let Some(i) = self.new {
            let want = replicas_of(&self.d);
            let cur = rs_replicas(&self.all[i]);
            let target = if cur > want {
                want
            } else {
                self.new_rs_replicas(Some(&self.all[i].clone()))?
            };
            if self.scale(i, target).await? {
                return self.finish().await;
            }
        }
        if self.reconcile_old().await? {
            return self.finish().await;
        }
        if self
            .d
            .status
            .as_ref()
            .is_some_and(|s| is_complete(&self.d, s))
        {
            self.cleanup().await?;
        }
        self.finish().await
    }

    /// Upstream's `reconcileOldReplicaSets`: scale old ReplicaSets down without going under minAvailable.
    async fn reconcile_old(&mut self) -> Result<bool, Error> {
        let old_count: i32 = self.old().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let mut all_count = self.total_spec();
        let (_, unavailable) = fenceposts(&self.d)?;
        let min_available = replicas_of(&self.d) - unavailable;
        let new_unavailable = self
            .new_rs()
            .map(|rs| rs_replicas(rs) - rs_status(rs, |s| s.available_replicas.unwrap_or(0)))
            .unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let olds: Vec<usize> = (0..self.all.len())
            .filter(|i| Some(*i) != self.new)
            .collect();
        // cleanupUnhealthyReplicas: unavailable old pods go first, they do not count against availability.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.all[i];
            let (spec, avail) = (
                rs_replicas(rs),
                rs_status(rs, |s| s.available_replicas.unwrap_or(0)),
            );
            if spec == 0 || spec == avail {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec - avail);
            self.scale(i, spec - down).await?;
            cleaned += down;
        }
        all_count -= cleaned;
        let _ = all_count;
        // scaleDownOldReplicaSetsForRollingUpdate: available pods above minAvailable.
        let available: i32 = self
            .all
            .iter()
            .map(|rs| rs_status(rs, |s| s.available_replicas.unwrap_or(0)))
            .sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &olds {
                if scaled >= total {
                    break;
                }
                let spec = rs_replicas(&self.all[i]);
                if spec == 0 {
                    continue;
                }
                let down = spec.min(total - scaled);
                self.scale(i, spec - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn recreate(&mut self) -> Result<Action, Error> {
        self.ensure_new(false).await?;
        // scaleDownOldReplicaSetsForRecreate
        let olds: Vec<usize> = (0..self.all.len())
            .filter(|i| Some(*i) != self.new)
            .collect();
        let mut scaled = false;
        for i in olds {
            scaled |= self.scale(i, 0).await?;
        }
        if scaled {
            return self.finish().await;
        }
        if self.old_pods_running().await? {
            self.write_status(false).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        if self.new.is_none() {
            self.ensure_new(true).await?;
        }
        if let Some(i) = self.new {
            let want = replicas_of(&self.d);
            if self.scale(i, want).await? {
                return self.finish().await;
            }
        }
        if self
            .d
            .status
            .as_ref()
            .is_some_and(|s| is_complete(&self.d, s))
        {
            self.cleanup().await?;
        }
        self.finish().await
    }

    /// Upstream's `oldPodsRunning`: any pod of an old ReplicaSet not yet Failed/Succeeded (terminating counts).
    async fn old_pods_running(&self) -> Result<bool, Error> {
        if self.old().any(|rs| rs_status(rs, |s| s.replicas) > 0) {
            return Ok(true);
        }
        let old_uids: Vec<String> = self.old().filter_map(|rs| rs.uid()).collect();
        if old_uids.is_empty() {
            return Ok(false);
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let pods = api
            .list(&ListParams::default().labels(&labels::query(&selector)))
            .await
            .map_err(Error::api(format!(
                "list pods of deployment {}/{}",
                self.ns,
                self.name()
            )))?;
        Ok(pods.items.iter().any(|p| {
            labels::controller_uid(p.metadata.owner_references.as_ref())
                .is_some_and(|u| old_uids.iter().any(|o| o == u))
                && !matches!(pods::phase(p), "Failed" | "Succeeded")
        }))
    }

    /// Upstream's `cleanupDeployment`: delete the oldest-revision idle ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<usize> = (0..self.all.len())
            .filter(|i| Some(*i) != self.new && self.all[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|&a, &b| {
            revision(&self.all[a])
                .cmp(&revision(&self.all[b]))
                .then_with(|| created(&self.all[a]).cmp(&created(&self.all[b])))
        });
        let mut gone = Vec::new();
        for &i in cleanable.iter().take(diff as usize) {
            let rs = &self.all[i];
            let idle = rs_replicas(rs) == 0
                && rs_status(rs, |s| s.replicas) == 0
                && rs
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0)
                    >= rs.metadata.generation.unwrap_or(0);
            if !idle {
                continue;
            }
            match self
                .rs_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {
                    tracing::info!(replicaset = %rs.name_any(), "deleted old replica set beyond revisionHistoryLimit");
                    gone.push(i);
                }
                Err(e) if crate::is_status(&e, 404) => gone.push(i),
                Err(e) => {
                    return Err(Error::api(format!(
                        "delete replicaset {}/{}",
                        self.ns,
                        rs.name_any()
                    ))(e));
                }
            }
        }
        let new_name = self.new_rs().map(|r| r.name_any());
        let mut i = 0;
        self.all.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
        self.new = new_name.and_then(|n| self.all.iter().position(|r| r.name_any() == n));
        Ok(())
    }

    /// Status as upstream's `calculateStatus` plus, unless `paused`, `syncRolloutStatus`.
    fn calculate(&self, rollout: bool) -> DeploymentStatus {
        let old = self.d.status.clone().unwrap_or_default();
        let available: i32 = self
            .all
            .iter()
            .map(|rs| rs_status(rs, |s| s.available_replicas.unwrap_or(0)))
            .sum();
        let total = self.total_spec();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(
                self.all
                    .iter()
                    .map(|rs| rs_status(rs, |s| s.replicas))
                    .sum(),
            ),
            updated_replicas: Some(
                self.new_rs()
                    .map(|rs| rs_status(rs, |s| s.replicas))
                    .unwrap_or(0),
            ),
            ready_replicas: Some(
                self.all
                    .iter()
                    .map(|rs| rs_status(rs, |s| s.ready_replicas.unwrap_or(0)))
                    .sum(),
            ),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
            terminating_replicas: None,
        };
        if available >= replicas_of(&self.d) - max_unavailable(&self.d) {
            set_condition(
                &mut status,
                new_condition(
                    "Available",
                    "True",
                    MIN_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                ),
            );
        } else {
            set_condition(
                &mut status,
                new_condition(
                    "Available",
                    "False",
                    MIN_UNAVAILABLE,
                    "Deployment does not have minimum availability.".into(),
                ),
            );
        }
        if !rollout {
            return status;
        }
        if progress_deadline(&self.d).is_none() {
            remove_condition(&mut status, "Progressing");
            return status;
        }
        let current = condition(&old, "Progressing").cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if complete_before {
            return status;
        }
        let subject = match self.new_rs() {
            Some(rs) => format!("ReplicaSet {:?}", rs.name_any()),
            None => format!("Deployment {:?}", self.name()),
        };
        if is_complete(&self.d, &status) {
            set_condition(
                &mut status,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    format!("{subject} has successfully progressed."),
                ),
            );
        } else if is_progressing(&self.d, &status) {
            let mut c = new_condition(
                "Progressing",
                "True",
                RS_UPDATED,
                format!("{subject} is progressing."),
            );
            if let Some(cur) = &current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut status, "Progressing");
            }
            set_condition(&mut status, c);
        } else if timed_out(&self.d, &status, Timestamp::now()) {
            set_condition(
                &mut status,
                new_condition(
                    "Progressing",
                    "False",
                    TIMED_OUT,
                    format!("{subject} has timed out progressing."),
                ),
            );
        }
        status
    }

    async fn write_status(&mut self, rollout: bool) -> Result<(), Error> {
        let status = self.calculate(rollout);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.put_status().await
    }

    async fn put_status(&mut self) -> Result<(), Error> {
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let status =
            serde_json::to_value(self.d.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let patch = json!({"metadata": {"resourceVersion": self.d.metadata.resource_version}, "status": status});
        let updated = api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!(
                "update status of deployment {}/{}",
                self.ns,
                self.name()
            )))?;
        self.d.metadata = updated.metadata;
        Ok(())
    }

    /// Writes status and asks to be woken for a progress deadline check while the rollout is incomplete.
    async fn finish(&mut self) -> Result<Action, Error> {
        self.write_status(true).await?;
        let status = self.d.status.clone().unwrap_or_default();
        match (
            progress_deadline(&self.d),
            condition(&status, "Progressing"),
        ) {
            (Some(deadline), Some(c))
                if c.reason.as_deref() != Some(NEW_RS_AVAILABLE)
                    && c.reason.as_deref() != Some(TIMED_OUT) =>
            {
                let since = c
                    .last_update_time
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_else(Timestamp::now);
                let at = since + SignedDuration::from_secs(i64::from(deadline));
                let left = at.duration_since(Timestamp::now()).as_secs().max(1) as u64;
                Ok(Action::requeue(Duration::from_secs(left)))
            }
            _ => Ok(Action::await_change()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        // Upstream's defaults (25%/25%) on 10 replicas: surge ceil(2.5)=3, unavailable floor(2.5)=2.
        assert_eq!(
            resolve_fenceposts(Some(&s("25%")), Some(&s("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&s("25%")), Some(&s("25%")), 3),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&s("25%")), Some(&s("25%")), 1),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&s("50%")), Some(&s("10%")), 5),
            Ok((3, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&s("100%")), Some(&s("0%")), 4),
            Ok((4, 0))
        );
    }

    #[test]
    fn integers_are_taken_as_is_and_zero_zero_becomes_one_unavailable() {
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 10),
            Ok((2, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 10),
            Ok((0, 1))
        );
        assert_eq!(resolve_fenceposts(None, None, 3), Ok((0, 1)));
        assert_eq!(
            resolve_fenceposts(Some(&s("0%")), Some(&s("0%")), 0),
            Ok((0, 1))
        );
    }

    #[test]
    fn a_string_without_percent_sign_is_refused() {
        assert!(
            resolve_fenceposts(Some(&s("3")), None, 10)
                .unwrap_err()
                .starts_with("maxSurge: invalid value")
        );
        assert_eq!(scaled_value(&s("33%"), 10, true), Ok(4));
        assert_eq!(scaled_value(&s("33%"), 10, false), Ok(3));
    }

    #[test]
    fn template_equality_ignores_the_pod_template_hash_label() {
        let d: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
        let r: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a", "pod-template-hash": "abc"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
        assert_eq!(
            template_without_hash(Some(&d)),
            template_without_hash(Some(&r))
        );
        let other: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
        assert_ne!(
            template_without_hash(Some(&d)),
            template_without_hash(Some(&other))
        );
    }
}
