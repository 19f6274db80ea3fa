//! Test harness: a real in-process API server (`apiserver::spawn` on 127.0.0.1, port 0), the controllers under
//! test, and a stand-in for the node agent (there is none in these tests): it registers Nodes with a Ready
//! condition, heartbeats them, marks pods bound to its nodes Running and Ready through the status subresource
//! after a configurable delay, and finishes graceful pod deletions as a kubelet would.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub struct Cluster {
    _dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub client: Client,
    server_stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), apiserver::ServerError>>,
    ctrl_stop: CancellationToken,
    controllers: tokio::task::JoinHandle<Result<(), controllers::Error>>,
    pub agent: Agent,
}

pub fn test_options() -> controllers::ControllerOptions {
    controllers::ControllerOptions {
        node_grace: Duration::from_secs(3),
        node_monitor_period: Duration::from_millis(500),
        scheduler_retry: Duration::from_secs(2),
        ..Default::default()
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_with(test_options()).await
    }

    pub async fn start_with(opts: controllers::ControllerOptions) -> Cluster {
        Self::start_inner(Some(opts)).await
    }

    /// A cluster whose controllers the test runs itself (e.g. behind leader election).
    pub async fn start_without_controllers() -> Cluster {
        Self::start_inner(None).await
    }

    async fn start_inner(opts: Option<controllers::ControllerOptions>) -> Cluster {
        let _ = tracing_subscriber_init();
        let dir = tempfile::tempdir().unwrap();
        let server_stop = CancellationToken::new();
        let running = apiserver::spawn(
            apiserver::ServerConfig {
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            None,
            server_stop.clone(),
        )
        .await
        .expect("api server starts");
        let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
        let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(cfg).unwrap();
        let ctrl_stop = CancellationToken::new();
        let controllers = match opts {
            Some(opts) => tokio::spawn(controllers::run(client.clone(), opts, ctrl_stop.clone())),
            None => tokio::spawn(async { Ok(()) }),
        };
        let agent = Agent::start(client.clone());
        Cluster {
            data_dir: dir.path().to_path_buf(),
            kubeconfig: running.admin_kubeconfig.clone(),
            _dir: dir,
            client,
            server_stop,
            server: running.task,
            ctrl_stop,
            controllers,
            agent,
        }
    }

    /// Graceful shutdown of the controllers (must return Ok promptly), then the agent and the server.
    pub async fn stop(self) {
        self.ctrl_stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.controllers)
            .await
            .expect("controllers stop within 10s of shutdown")
            .unwrap()
            .unwrap();
        self.agent.stop.cancel();
        let _ = self.agent.task.await;
        self.server_stop.cancel();
        let _ = self.server.await;
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = self.api();
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect()
    }

    /// Waits (Events are written just after the change they report) until the Events about `name` satisfy
    /// `pred`, and returns them.
    pub async fn wait_events(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        eventually(20, what, || async {
            let ev = self.events_for(name).await;
            pred(&ev).then_some(ev)
        })
        .await
    }

    /// Waits until at least `n` Events with `reason` exist about `name`.
    pub async fn wait_for_event(&self, name: &str, reason: &str, n: usize) {
        let what = format!("{n} {reason} event(s) about {name}");
        self.wait_events(name, &what, |ev| {
            ev.iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .count()
                >= n
        })
        .await;
    }
}

fn tracing_subscriber_init() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init()
}

/// Waits until `f` returns Some, polling every 50 ms, failing with `what` after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct AgentState {
    /// Nodes this agent owns and whether it still heartbeats them.
    nodes: HashMap<String, bool>,
    /// When a pod (uid) was first seen bound to one of our nodes.
    seen: HashMap<String, tokio::time::Instant>,
    ready_delay: Duration,
}

pub struct Agent {
    state: Arc<Mutex<AgentState>>,
    client: Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    fn start(client: Client) -> Agent {
        let state = Arc::new(Mutex::new(AgentState::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(agent_loop(client.clone(), state.clone(), stop.clone()));
        Agent {
            state,
            client,
            stop,
            task,
        }
    }

    /// How long after a pod is bound it becomes Running and Ready.
    pub fn set_ready_delay(&self, d: Duration) {
        self.state.lock().unwrap().ready_delay = d;
    }

    /// Registers a Node with labels and a fresh Ready=True heartbeat; it keeps heartbeating.
    pub async fn add_node(&self, name: &str, labels: serde_json::Value) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        heartbeat(&self.client, name).await;
        self.state
            .lock()
            .unwrap()
            .nodes
            .insert(name.to_string(), true);
    }

    /// Stops heartbeating a node (as if its agent died).
    pub fn silence(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .nodes
            .insert(name.to_string(), false);
    }
}

async fn heartbeat(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now().to_string();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                        "lastTransitionTime": now}],
        "allocatable": {"pods": "110", "cpu": "2", "memory": "4Gi"},
        "capacity": {"pods": "110", "cpu": "2", "memory": "4Gi"},
    }});
    if let Err(e) = nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        eprintln!("test agent: heartbeat of {name} failed: {e}");
    }
}

async fn agent_loop(client: Client, state: Arc<Mutex<AgentState>>, stop: CancellationToken) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut last_beat = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_beat.elapsed() > Duration::from_millis(500) {
            last_beat = tokio::time::Instant::now();
            let beating: Vec<String> = state
                .lock()
                .unwrap()
                .nodes
                .iter()
                .filter(|(_, b)| **b)
                .map(|(n, _)| n.clone())
                .collect();
            for n in beating {
                heartbeat(&client, &n).await;
            }
        }
        let Ok(list) = pods.list(&ListParams::default()).await else {
            continue;
        };
        let (ours, delay): (HashSet<String>, Duration) = {
            let s = state.lock().unwrap();
            (s.nodes.keys().cloned().collect(), s.ready_delay)
        };
        for pod in list.items {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            if !ours.contains(&node) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let name = pod.name_any();
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = api
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
                continue;
            }
            let uid = pod.uid().unwrap_or_default();
            let first = *state
                .lock()
                .unwrap()
                .seen
                .entry(uid)
                .or_insert_with(tokio::time::Instant::now);
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running || first.elapsed() < delay {
                continue;
            }
            let now = Timestamp::now().to_string();
            let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
            let status = json!({"status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "startTime": now,
                "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
            }});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                eprintln!("test agent: marking {ns}/{name} ready failed: {e}");
            }
        }
    }
}
