//! The controllers against a real in-process API server, with the test playing the node agent (see `common`):
//! scheduling (spread, nodeSelector, pre-set nodeName, unschedulable condition and Event, retry when nodes
//! change), node lifecycle (silent node -> Ready=Unknown), Deployments (complete status, rolling update bounds,
//! rollout restart, Recreate), ReplicaSet scale down, StatefulSets (ordered start, rolling update), and real
//! `kubectl rollout status` against both.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Cluster, eventually};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn pod(name: &str, extra_spec: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "registry.example:5000/app:1"}]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra_spec.as_object().unwrap().clone());
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:1"}]},
            },
        },
    }))
    .unwrap()
}

fn statefulset(name: &str, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:1"}]},
            },
        },
    }))
    .unwrap()
}

async fn node_of(api: &Api<Pod>, name: &str) -> Option<String> {
    api.get(name).await.ok()?.spec?.node_name
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_deployment_complete(c: &Cluster, name: &str, secs: u64) -> Deployment {
    let api: Api<Deployment> = c.api();
    eventually(secs, &format!("deployment {name} complete"), || {
        let api = api.clone();
        async move {
            let d = api.get(name).await.ok()?;
            let s = d.status.clone()?;
            let want = d.spec.as_ref()?.replicas?;
            let progressing = s
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Progressing")?;
            (s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(want)
                && s.replicas == Some(want)
                && s.available_replicas == Some(want)
                && progressing.reason.as_deref() == Some("NewReplicaSetAvailable"))
            .then_some(d)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_spreads_pods_honours_node_selector_and_leaves_preset_node_names() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({"disk": "ssd"})).await;
    c.agent.add_node("node-b", json!({})).await;
    let pods: Api<Pod> = c.api();
    pods.create(
        &PostParams::default(),
        &pod("ssd", json!({"nodeSelector": {"disk": "ssd"}})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("pinned", json!({"nodeName": "node-b"})),
    )
    .await
    .unwrap();
    let ssd = eventually(20, "ssd bound", || node_of(&pods, "ssd")).await;
    assert_eq!(ssd, "node-a", "nodeSelector disk=ssd must land on node-a");
    // One pod on each node now (the pinned pod counts for node-b): four more spread 2/2.
    for i in 0..4 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut per_node = BTreeMap::new();
    for i in 0..4 {
        let name = format!("p{i}");
        let node = eventually(20, &format!("{name} bound"), || node_of(&pods, &name)).await;
        *per_node.entry(node).or_insert(0) += 1;
    }
    assert_eq!(
        per_node,
        BTreeMap::from([("node-a".to_string(), 2), ("node-b".to_string(), 2)]),
        "fewest pods first spreads evenly"
    );
    // The binding set PodScheduled=True; the pinned pod kept its node and has no scheduler event.
    let p0 = pods.get("p0").await.unwrap();
    let cond = p0
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(cond.status, "True");
    assert_eq!(node_of(&pods, "pinned").await.as_deref(), Some("node-b"));
    c.wait_for_event("p0", "Scheduled", 1).await;
    let ev = c.events_for("p0").await;
    assert!(
        ev.iter().any(|e| e.reason.as_deref() == Some("Scheduled")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Successfully assigned default/p0 to node-"))),
        "{ev:?}"
    );
    assert!(
        c.events_for("pinned")
            .await
            .iter()
            .all(|e| e.reason.as_deref() != Some("Scheduled"))
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_gets_condition_and_event_then_binds_when_a_node_fits() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.add_node("node-b", json!({})).await;
    let pods: Api<Pod> = c.api();
    pods.create(
        &PostParams::default(),
        &pod("gpu", json!({"nodeSelector": {"gpu": "yes"}})),
    )
    .await
    .unwrap();
    let want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    eventually(20, "PodScheduled=False Unschedulable", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("gpu").await.ok()?;
            let c = p
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled")?;
            (c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(want))
            .then_some(())
        }
    })
    .await;
    eventually(10, "FailedScheduling event", || async {
        let ev = c.events_for("gpu").await;
        ev.iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .then_some(())
    })
    .await;
    // Retries (every 2 s in these tests) with an unchanged message add no further Event.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events = c.events_for("gpu").await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one FailedScheduling event per distinct message: {events:?}"
    );
    assert_eq!(failed[0].type_.as_deref(), Some("Warning"));
    assert_eq!(failed[0].message.as_deref(), Some(want));
    assert_eq!(node_of(&pods, "gpu").await, None);
    // A node change makes it schedulable: labelling node-b retries the pod.
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .patch(
            "node-b",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"gpu": "yes"}}})),
        )
        .await
        .unwrap();
    let node = eventually(20, "gpu bound after node label", || node_of(&pods, "gpu")).await;
    assert_eq!(node, "node-b");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_unknown_and_no_pod_is_bound_to_it() {
    let c = Cluster::start().await;
    c.agent.add_node("alive", json!({})).await;
    c.agent.add_node("silent", json!({})).await;
    c.agent.silence("silent");
    let nodes: Api<Node> = Api::all(c.client.clone());
    let ready = |n: Node| {
        n.status
            .and_then(|s| s.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
    };
    let cond = eventually(20, "silent node Ready=Unknown", || {
        let nodes = nodes.clone();
        async move { ready(nodes.get("silent").await.ok()?).filter(|c| c.status == "Unknown") }
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        cond.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    // The heartbeating node stays Ready well past the grace period (3 s in these tests).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        ready(nodes.get("alive").await.unwrap()).unwrap().status,
        "True"
    );
    assert_eq!(
        ready(nodes.get("silent").await.unwrap()).unwrap().status,
        "Unknown"
    );
    let pods: Api<Pod> = c.api();
    for i in 0..3 {
        pods.create(&PostParams::default(), &pod(&format!("q{i}"), json!({})))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let name = format!("q{i}");
        assert_eq!(
            eventually(20, "bound", || node_of(&pods, &name)).await,
            "alive"
        );
    }
    c.wait_for_event("silent", "NodeNotReady", 1).await;
    let ev = c.events_for("silent").await;
    assert!(
        ev.iter()
            .any(|e| e.reason.as_deref() == Some("NodeNotReady")),
        "{ev:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_replica_deployment_reaches_complete_status() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.add_node("node-b", json!({})).await;
    let api: Api<Deployment> = c.api();
    api.create(&PostParams::default(), &deployment("web", 10, json!({})))
        .await
        .unwrap();
    let d = wait_deployment_complete(&c, "web", 60).await;
    let s = d.status.clone().unwrap();
    assert_eq!(
        (s.ready_replicas, s.unavailable_replicas),
        (Some(10), Some(0))
    );
    let conds = s.conditions.unwrap();
    let avail = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    assert_eq!(
        avail.message.as_deref(),
        Some("Deployment has minimum availability.")
    );
    let prog = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    let rss: Vec<ReplicaSet> = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.labels().get("pod-template-hash").unwrap().clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert!(
        hash.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{hash}"
    );
    assert_eq!(
        prog.message.as_deref(),
        Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
    );
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", "web", Some(true), Some(true))
    );
    let rs_status = rs.status.clone().unwrap();
    assert_eq!(
        (
            rs_status.replicas,
            rs_status.fully_labeled_replicas,
            rs_status.ready_replicas,
            rs_status.available_replicas,
            rs_status.observed_generation
        ),
        (10, Some(10), Some(10), Some(10), rs.metadata.generation)
    );
    let pods: Vec<Pod> = c
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 10);
    let prefix = format!("web-{hash}-");
    for p in &pods {
        let suffix = p
            .name_any()
            .strip_prefix(&prefix)
            .map(str::to_string)
            .unwrap_or_default();
        assert_eq!(
            suffix.len(),
            5,
            "pod name {} is <rs>-<5 chars>",
            p.name_any()
        );
        assert_eq!(p.labels().get("pod-template-hash"), Some(&hash));
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.name.as_str(), o.controller, o.block_owner_deletion),
            (rs.name_any().as_str(), Some(true), Some(true))
        );
    }
    c.wait_for_event("web", "ScalingReplicaSet", 1).await;
    let d_events = c.events_for("web").await;
    assert!(
        d_events
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet")
                && e.message.as_deref()
                    == Some(format!("Scaled up replica set web-{hash} from 0 to 10").as_str())),
        "{d_events:?}"
    );
    c.wait_for_event(&rs.name_any(), "SuccessfulCreate", 10)
        .await;
    let rs_events = c.events_for(&rs.name_any()).await;
    let created = rs_events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("SuccessfulCreate")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&format!("Created pod: web-{hash}-")))
        })
        .count();
    assert_eq!(created, 10);
    // Scale down to 4: the ReplicaSet deletes 6 and reports it.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    wait_deployment_complete(&c, "web", 30).await;
    eventually(20, "4 pods left", || async {
        let n = c
            .api::<Pod>()
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .len();
        (n == 4).then_some(())
    })
    .await;
    c.wait_for_event(&rs.name_any(), "SuccessfulDelete", 6)
        .await;
    let deleted = c
        .events_for(&rs.name_any())
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulDelete"))
        .count();
    assert_eq!(deleted, 6);
    c.stop().await;
}

/// Polls a rollout and returns (max pods the ReplicaSets ask for, min ready pods) over all observations.
///
/// maxSurge bounds the sum of the ReplicaSets' `spec.replicas`, as upstream's `NewRSNewReplicas` computes it: the
/// pods themselves may exceed it for the moment between an old ReplicaSet's scale-down and its controller deleting
/// the pods, exactly as on a real cluster, so counting pods would make this test depend on timing.
async fn observe_rollout(c: &Cluster, name: &str, secs: u64) -> (usize, usize) {
    let pods: Api<Pod> = c.api();
    let sets: Api<ReplicaSet> = c.api();
    let deployments: Api<Deployment> = c.api();
    let mut max_pods = 0;
    let mut min_ready = usize::MAX;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .unwrap()
            .items;
        let active: Vec<&Pod> = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let asked: i32 = sets
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .unwrap()
            .items
            .iter()
            .filter_map(|rs| rs.spec.as_ref().and_then(|s| s.replicas))
            .sum();
        max_pods = max_pods.max(asked as usize);
        min_ready = min_ready.min(active.iter().filter(|p| is_ready(p)).count());
        let d = deployments.get(name).await.unwrap();
        let s = d.status.clone().unwrap_or_default();
        let want = d.spec.as_ref().unwrap().replicas.unwrap();
        let done = s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want);
        if done && active.len() == want as usize {
            return (max_pods, min_ready);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout of {name} did not finish: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_respects_max_surge_and_max_unavailable_at_every_step() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.set_ready_delay(Duration::from_millis(300));
    let api: Api<Deployment> = c.api();
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}});
    api.create(&PostParams::default(), &deployment("roll", 6, strategy))
        .await
        .unwrap();
    wait_deployment_complete(&c, "roll", 60).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:2"}]}}}});
    api.patch("roll", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let (max_pods, min_ready) = observe_rollout(&c, "roll", 90).await;
    assert!(max_pods <= 6 + 2, "maxSurge 2 exceeded: {max_pods} pods");
    assert!(
        min_ready >= 6 - 1,
        "maxUnavailable 1 exceeded: {min_ready} ready"
    );
    assert!(max_pods > 6, "the rollout surged (observed {max_pods})");
    // Percentages: 25%/25% of 8 = surge 2, unavailable 2.
    api.patch("roll", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 8, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}})))
        .await
        .unwrap();
    wait_deployment_complete(&c, "roll", 60).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:3"}]}}}});
    api.patch("roll", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let (max_pods, min_ready) = observe_rollout(&c, "roll", 90).await;
    assert!(max_pods <= 10, "25% surge of 8 is 2: {max_pods} pods");
    assert!(
        min_ready >= 6,
        "25% unavailable of 8 is 2: {min_ready} ready"
    );
    let rss = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut revisions: Vec<(String, i32)> = rss
        .iter()
        .map(|r| {
            (
                r.annotations()["deployment.kubernetes.io/revision"].clone(),
                r.spec.as_ref().unwrap().replicas.unwrap(),
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        [
            ("1".to_string(), 0),
            ("2".to_string(), 0),
            ("3".to_string(), 8)
        ]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_creates_a_new_replicaset_and_scales_the_old_one_to_zero() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    let api: Api<Deployment> = c.api();
    api.create(&PostParams::default(), &deployment("app", 3, json!({})))
        .await
        .unwrap();
    wait_deployment_complete(&c, "app", 60).await;
    let first = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items[0]
        .name_any();
    // What `kubectl rollout restart` sends: a template annotation.
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-26T22:00:00Z"}}}}});
    api.patch("app", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let d = wait_deployment_complete(&c, "app", 60).await;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let rss = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(rss.len(), 2);
    let old = rss.iter().find(|r| r.name_any() == first).unwrap();
    let new = rss.iter().find(|r| r.name_any() != first).unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        new.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let tmpl = new
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap();
    assert!(
        tmpl.annotations
            .as_ref()
            .unwrap()
            .contains_key("kubectl.kubernetes.io/restartedAt")
    );
    let scaled_down = format!("Scaled down replica set {first} from 3 to");
    let events = c
        .wait_events("app", "old replica set scaled down", |ev| {
            ev.iter().any(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&scaled_down))
            })
        })
        .await;
    assert!(
        events.iter().any(|e| e.message.as_deref()
            == Some(format!("Scaled down replica set {first} from 3 to 2").as_str())
            || e.message.as_deref()
                == Some(format!("Scaled down replica set {first} from 3 to 0").as_str())
            || e.message.as_deref().is_some_and(
                |m| m.starts_with(&format!("Scaled down replica set {first} from 3 to"))
            )),
        "{events:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_deployment_removes_old_pods_before_creating_new_ones() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.set_ready_delay(Duration::from_millis(200));
    let api: Api<Deployment> = c.api();
    api.create(
        &PostParams::default(),
        &deployment("rec", 3, json!({"type": "Recreate"})),
    )
    .await
    .unwrap();
    wait_deployment_complete(&c, "rec", 60).await;
    let old_hash = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items[0]
        .labels()["pod-template-hash"]
        .clone();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:2"}]}}}});
    api.patch("rec", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let pods: Api<Pod> = c.api();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let hashes: HashSet<String> = list
            .iter()
            .map(|p| p.labels()["pod-template-hash"].clone())
            .collect();
        assert!(
            hashes.len() <= 1,
            "old and new pods coexist under Recreate: {hashes:?}"
        );
        if list.len() == 3 && list.iter().all(is_ready) && !hashes.contains(&old_hash) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recreate rollout did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_deployment_complete(&c, "rec", 30).await;
    c.stop().await;
}

async fn wait_statefulset_rolled_out(c: &Cluster, name: &str, secs: u64) -> StatefulSet {
    let api: Api<StatefulSet> = c.api();
    eventually(secs, &format!("statefulset {name} rolled out"), || {
        let api = api.clone();
        async move {
            let s = api.get(name).await.ok()?;
            let st = s.status.clone()?;
            let want = s.spec.as_ref()?.replicas?;
            // kubectl's statefulset rollout status rules (RollingUpdate, partition 0).
            (st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0)
                && st.observed_generation.unwrap_or(0) > 0
                && st.ready_replicas.unwrap_or(0) >= want
                && st.updated_replicas.unwrap_or(0) >= want
                && st.current_revision == st.update_revision)
                .then_some(s)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_starts_pods_in_order_one_at_a_time_and_rolls_highest_first() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.set_ready_delay(Duration::from_millis(300));
    let api: Api<StatefulSet> = c.api();
    api.create(&PostParams::default(), &statefulset("web", 3))
        .await
        .unwrap();
    let pods: Api<Pod> = c.api();
    let mut order: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let not_ready: Vec<String> = list
            .iter()
            .filter(|p| !is_ready(p))
            .map(|p| p.name_any())
            .collect();
        assert!(
            not_ready.len() <= 1,
            "OrderedReady: two pods pending at once: {not_ready:?}"
        );
        for p in &list {
            if !order.contains(&p.name_any()) {
                order.push(p.name_any());
            }
        }
        if list.len() == 3 && list.iter().all(is_ready) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statefulset did not come up: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(order, ["web-0", "web-1", "web-2"]);
    let s = wait_statefulset_rolled_out(&c, "web", 30).await;
    let st = s.status.unwrap();
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.current_replicas,
            st.updated_replicas,
            st.available_replicas
        ),
        (3, Some(3), Some(3), Some(3), Some(3))
    );
    let rev = st.update_revision.clone().unwrap();
    assert!(rev.starts_with("web-"));
    let revisions = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        revisions[0]
            .labels()
            .get("controller.kubernetes.io/hash")
            .map(String::as_str),
        rev.strip_prefix("web-")
    );
    assert_eq!(
        revisions
            .iter()
            .map(|r| (r.name_any(), r.revision))
            .collect::<Vec<_>>(),
        [(rev.clone(), 1)]
    );
    let web1 = pods.get("web-1").await.unwrap();
    let l = web1.labels();
    assert_eq!(
        l.get("statefulset.kubernetes.io/pod-name")
            .map(String::as_str),
        Some("web-1")
    );
    assert_eq!(
        l.get("apps.kubernetes.io/pod-index").map(String::as_str),
        Some("1")
    );
    assert_eq!(l.get("controller-revision-hash"), Some(&rev));
    assert_eq!(
        web1.spec.as_ref().unwrap().hostname.as_deref(),
        Some("web-1")
    );
    assert_eq!(
        web1.spec.as_ref().unwrap().subdomain.as_deref(),
        Some("web")
    );
    let events = c
        .wait_events("web", "SuccessfulCreate for web-0", |ev| {
            ev.iter().any(|e| {
                e.message.as_deref() == Some("create Pod web-0 in StatefulSet web successful")
            })
        })
        .await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("SuccessfulCreate")
                && e.message.as_deref() == Some("create Pod web-0 in StatefulSet web successful"))
    );

    // Rolling update: pods are replaced from the highest ordinal down.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:2"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let mut replaced: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = api.get("web").await.unwrap();
        let update = s
            .status
            .as_ref()
            .and_then(|st| st.update_revision.clone())
            .unwrap_or_default();
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        for p in &list {
            if update != rev
                && p.labels().get("controller-revision-hash") == Some(&update)
                && !replaced.contains(&p.name_any())
            {
                replaced.push(p.name_any());
            }
        }
        if replaced.len() == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rolling update did not finish: {replaced:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(replaced, ["web-2", "web-1", "web-0"]);
    let s = wait_statefulset_rolled_out(&c, "web", 30).await;
    assert_ne!(s.status.unwrap().current_revision.unwrap(), rev);
    // Scale down removes the highest ordinal.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    eventually(30, "web-2 removed", || async {
        let names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        (names.len() == 2 && !names.contains(&"web-2".to_string())).then_some(())
    })
    .await;
    c.stop().await;
}

fn kubectl(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(args)
        .output()
        .expect("run /usr/bin/kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_succeeds_for_a_deployment_and_a_statefulset() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.set_ready_delay(Duration::from_millis(200));
    c.api::<Deployment>()
        .create(&PostParams::default(), &deployment("web", 10, json!({})))
        .await
        .unwrap();
    c.api::<StatefulSet>()
        .create(&PostParams::default(), &statefulset("db", 3))
        .await
        .unwrap();
    let out = tokio::task::block_in_place(|| {
        kubectl(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=90s"],
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl rollout status deployment failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("deployment \"web\" successfully rolled out"),
        "{stdout}"
    );
    let out = tokio::task::block_in_place(|| {
        kubectl(
            &c,
            &["rollout", "status", "statefulset/db", "--timeout=90s"],
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl rollout status statefulset failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("partitioned roll out complete: 3 new pods have been updated..."),
        "{stdout}"
    );
    // kubectl rollout restart rolls out a new ReplicaSet, and rollout status follows it to completion.
    let out =
        tokio::task::block_in_place(|| kubectl(&c, &["rollout", "restart", "deployment/web"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::block_in_place(|| {
        kubectl(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=90s"],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(rss.len(), 2);
    assert_eq!(
        rss.iter()
            .filter(|r| r.spec.as_ref().unwrap().replicas == Some(0))
            .count(),
        1
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_statefulset_creates_all_pods_at_once_and_on_delete_waits_for_deletion() {
    let c = Cluster::start().await;
    c.agent.add_node("node-a", json!({})).await;
    c.agent.set_ready_delay(Duration::from_millis(1500));
    let mut set = statefulset("par", 3);
    let spec = set.spec.as_mut().unwrap();
    spec.pod_management_policy = Some("Parallel".into());
    spec.update_strategy = Some(serde_json::from_value(json!({"type": "OnDelete"})).unwrap());
    let api: Api<StatefulSet> = c.api();
    api.create(&PostParams::default(), &set).await.unwrap();
    let pods: Api<Pod> = c.api();
    // Parallel: all three exist before any is ready.
    eventually(20, "three pods pending together", || async {
        let list = pods.list(&ListParams::default()).await.ok()?.items;
        (list.len() == 3 && list.iter().all(|p| !is_ready(p))).then_some(())
    })
    .await;
    eventually(30, "three ready", || async {
        let s = api.get("par").await.ok()?;
        (s.status?.ready_replicas == Some(3)).then_some(())
    })
    .await;
    let first_rev = api
        .get("par")
        .await
        .unwrap()
        .status
        .unwrap()
        .update_revision
        .unwrap();
    // OnDelete: a template change creates a revision but replaces nothing until a pod is deleted.
    c.agent.set_ready_delay(Duration::from_millis(100));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.example:5000/app:2"}]}}}});
    api.patch("par", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let new_rev = eventually(20, "new update revision", || async {
        let st = api.get("par").await.ok()?.status?;
        st.update_revision.filter(|r| *r != first_rev)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        assert_eq!(
            p.labels().get("controller-revision-hash"),
            Some(&first_rev),
            "{} replaced under OnDelete",
            p.name_any()
        );
    }
    pods.delete("par-1", &Default::default()).await.unwrap();
    eventually(30, "par-1 recreated at the new revision", || async {
        let p = pods.get("par-1").await.ok()?;
        (p.labels().get("controller-revision-hash") == Some(&new_rev)
            && p.metadata.deletion_timestamp.is_none())
        .then_some(())
    })
    .await;
    let st = api.get("par").await.unwrap().status.unwrap();
    assert_eq!(st.current_revision.as_deref(), Some(first_rev.as_str()));
    let revisions = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(revisions.len(), 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_runs_controllers_and_a_successor_takes_over_on_release() {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = Cluster::start_without_controllers().await;
    c.agent.add_node("node-a", json!({})).await;
    let lease_opts = |id: &str| controllers::LeaseOptions {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
        ..controllers::LeaseOptions::new(id)
    };
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get("berth-controllers")
                .await
                .ok()?
                .spec?
                .holder_identity
        }
    };
    let stop_a = tokio_util::sync::CancellationToken::new();
    let a = tokio::spawn(controllers::run_elected(
        c.client.clone(),
        common::test_options(),
        lease_opts("a"),
        stop_a.clone(),
    ));
    eventually(20, "a holds the lease", || async {
        holder().await.filter(|h| h == "a")
    })
    .await;
    let stop_b = tokio_util::sync::CancellationToken::new();
    let b = tokio::spawn(controllers::run_elected(
        c.client.clone(),
        common::test_options(),
        lease_opts("b"),
        stop_b.clone(),
    ));
    // Longer than the lease duration: a keeps renewing, b stays a candidate.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(holder().await.as_deref(), Some("a"));
    let pods: Api<Pod> = c.api();
    pods.create(&PostParams::default(), &pod("one", json!({})))
        .await
        .unwrap();
    eventually(20, "pod one bound by a's scheduler", || {
        node_of(&pods, "one")
    })
    .await;
    // a shuts down gracefully and releases; b takes over well before the lease would have expired.
    stop_a.cancel();
    tokio::time::timeout(Duration::from_secs(10), a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    eventually(3, "b holds the lease", || async {
        holder().await.filter(|h| h == "b")
    })
    .await;
    let lease = leases.get("berth-controllers").await.unwrap().spec.unwrap();
    assert_eq!(
        lease.lease_transitions,
        Some(1),
        "created by a (0), taken over by b (1)"
    );
    pods.create(&PostParams::default(), &pod("two", json!({})))
        .await
        .unwrap();
    eventually(20, "pod two bound by b's scheduler", || {
        node_of(&pods, "two")
    })
    .await;
    // The Scheduled Event follows the binding; give it a moment, then count.
    for name in ["one", "two"] {
        eventually(10, "Scheduled event", || async {
            let ev = c.events_for(name).await;
            ev.iter()
                .any(|e| e.reason.as_deref() == Some("Scheduled"))
                .then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["one", "two"] {
        let scheduled = c
            .events_for(name)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Scheduled"))
            .count();
        assert_eq!(scheduled, 1, "{name} scheduled by exactly one leader");
    }
    stop_b.cancel();
    tokio::time::timeout(Duration::from_secs(10), b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(holder().await, None, "b released the lease on shutdown");
    c.stop().await;
}
