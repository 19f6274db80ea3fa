//! The agent's pod machinery: the shared [`Agent`] (runtime, snapshotter, image manager, Event writer), the
//! watch of the Pods bound to this node (`fieldSelector spec.nodeName=<node>`), one worker task per pod uid
//! (see [`crate::worker`]), a monitor that wakes a worker when one of its containers changes state, garbage
//! collection of containers and sandboxes whose pod is gone, and the lookup behind the log endpoint.
//!
//! Containers are found again after an agent restart from the labels the runtime keeps with each container
//! (pod uid, container name, attempt, image): nothing else is needed to re-adopt them. It must never act on a
//! container without the agent's labels and never stop containers because the agent itself stops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use runtime::{ContainerState, Runtime, ShimCommand, Status};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::AgentError;
use crate::events::EventSink;
use crate::status::ContainerView;
use crate::{AgentConfig, CLUSTER_HOSTS_DIR};

/// Labels the agent puts on its containers.
pub(crate) mod labels {
    pub const POD_UID: &str = "berth.dev/pod-uid";
    pub const POD_NAMESPACE: &str = "berth.dev/pod-namespace";
    pub const POD_NAME: &str = "berth.dev/pod-name";
    pub const CONTAINER: &str = "berth.dev/container";
    pub const ATTEMPT: &str = "berth.dev/attempt";
    pub const IMAGE: &str = "berth.dev/image";
    pub const IMAGE_ID: &str = "berth.dev/image-id";
}

/// The attempt number of a container record (0 when the label is missing or bad).
pub(crate) fn attempt(st: &ContainerState) -> u32 {
    st.labels
        .get(labels::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// What a worker publishes for the log endpoint.
#[derive(Debug, Default, Clone)]
pub(crate) struct Published {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerView>,
    /// Names of the containers in the pod spec.
    pub spec_containers: Vec<String>,
}

struct WorkerHandle {
    id: u64,
    pod: watch::Sender<Arc<Pod>>,
    wake: Arc<Notify>,
    gone: CancellationToken,
    published: Arc<Mutex<Published>>,
    task: tokio::task::JoinHandle<()>,
}

/// Where the log of one container instance is and whether it still runs.
pub(crate) struct LogTarget {
    pub path: PathBuf,
    pub alive: Box<dyn Fn() -> bool + Send>,
}

/// Everything the pod workers share.
pub(crate) struct Agent {
    pub node_name: String,
    pub root: PathBuf,
    pub client: kube::Client,
    pub runtime: Runtime,
    pub snapshotter: Arc<unpack::Snapshotter>,
    pub images: podpull::ImageManager,
    /// The node's content store (served to peer nodes by the agent's endpoint).
    pub store: content::Store,
    /// The registry trust pulls use (node hosts directory + cluster RegistryHosts), for registry checks.
    pub trust: crate::trust::LayeredTrust,
    pub events: EventSink,
    /// The node's schedule for pull-progress annotation writes (shared by every pod's publisher).
    pub progress_pacer: Arc<crate::progress::Pacer>,
    events_stop: CancellationToken,
    pub shim: ShimCommand,
    pub crash: Mutex<Backoff>,
    pub pull_retry: Duration,
    host_ip: String,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    next_worker: std::sync::atomic::AtomicU64,
    /// Running records whose process runc no longer has, since when (see [`Agent::containers_of`]).
    vanished: Mutex<HashMap<String, Instant>>,
}

/// How long an exit may take to be recorded by the shim before it is reported without a code.
pub(crate) const EXIT_RECORD_GRACE: Duration = Duration::from_secs(3);

fn blocking_err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

impl Agent {
    /// Open the node's stores and runtime under the root; pulls ask `peers` for blobs first when given.
    pub async fn open(
        config: &AgentConfig,
        peers: Option<Arc<dyn image::BlobPeers>>,
    ) -> Result<Agent, AgentError> {
        let root = config.root.clone();
        std::fs::create_dir_all(&root).map_err(|e| AgentError::io("creating", &root, e))?;
        let runtime_root = root.join("runtime");
        let runtime =
            Runtime::with_runc(&runtime_root, config.runc.as_deref()).map_err(|source| {
                AgentError::Runtime {
                    root: runtime_root.clone(),
                    source: Box::new(source),
                }
            })?;
        let unpack_root = root.join("unpack");
        let snapshotter = Arc::new(unpack::Snapshotter::open(&unpack_root).map_err(|source| {
            AgentError::Snapshotter {
                root: unpack_root.clone(),
                source: Box::new(source),
            }
        })?);
        let content_root = root.join(content::CONTENT_DIR);
        let store = content::Store::open(&content_root).map_err(|e| AgentError::Content {
            root: content_root.clone(),
            message: e.to_string(),
        })?;
        let local = match &config.hosts_dir {
            Some(d) => {
                Some(
                    hosts::TrustSource::open(Some(d)).map_err(|source| AgentError::Hosts {
                        path: d.clone(),
                        source: Box::new(source),
                    })?,
                )
            }
            None => None,
        };
        let cluster_dir = root.join(CLUSTER_HOSTS_DIR);
        std::fs::create_dir_all(&cluster_dir)
            .map_err(|e| AgentError::io("creating", &cluster_dir, e))?;
        let cluster =
            hosts::TrustSource::open(Some(&cluster_dir)).map_err(|source| AgentError::Hosts {
                path: cluster_dir.clone(),
                source: Box::new(source),
            })?;
        let trust = crate::trust::LayeredTrust { local, cluster };
        let client = registry::Client::new(registry::ClientConfig {
            hosts: Arc::new(trust.clone()),
            ..registry::ClientConfig::default()
        })
        .map_err(|e| AgentError::Registry(e.to_string()))?;
        let mut puller = image::Puller::new(client, store.clone(), image::PullOptions::default())
            .with_snapshotter(snapshotter.clone());
        if let Some(peers) = peers {
            puller = puller.with_peers(peers);
        }
        let images = podpull::ImageManager::new(
            puller,
            &root.join("image_manager"),
            podpull::ManagerOptions {
                backoff_initial: config.pull_backoff_initial,
                backoff_max: config.pull_backoff_max,
                docker_config: config.docker_config.clone(),
                verify_credentials: config.verify_pull_credentials,
                ..podpull::ManagerOptions::default()
            },
        )
        .map_err(|e| AgentError::Images(e.to_string()))?;
        let events_stop = CancellationToken::new();
        let (events, _task) = crate::events::spawn(
            config.client.clone(),
            config.node_name.clone(),
            events_stop.clone(),
        );
        let host_ip = match config.listen.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            ip => ip.to_string(),
        };
        Ok(Agent {
            node_name: config.node_name.clone(),
            root,
            client: config.client.clone(),
            runtime,
            snapshotter,
            images,
            store,
            trust,
            events,
            progress_pacer: Arc::default(),
            events_stop,
            shim: config.shim.clone(),
            crash: Mutex::new(Backoff::new(config.crash_backoff)),
            pull_retry: config.pull_backoff_initial.min(Duration::from_secs(10)),
            host_ip,
            workers: Mutex::new(HashMap::new()),
            next_worker: std::sync::atomic::AtomicU64::new(1),
            vanished: Mutex::new(HashMap::new()),
        })
    }

    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    pub fn runtime_info(&self) -> Result<runtime::RuntimeInfo, AgentError> {
        self.runtime.info().map_err(|source| AgentError::Runtime {
            root: self.runtime.root().to_path_buf(),
            source: Box::new(source),
        })
    }

    /// The containers of one pod, their status checked by the runtime (from `/proc`, no runc process per
    /// container: workers call this on every sync). A container whose process is gone but
    /// whose exit the shim has not recorded yet is still reported running for [`EXIT_RECORD_GRACE`] (the
    /// second value is then true: ask again soon), so a status never shows an exit without its code while
    /// the code is on its way; after that the exit is reported without a code, as the runtime does.
    pub async fn containers_of(
        self: &Arc<Self>,
        uid: &str,
    ) -> Result<(Vec<ContainerState>, bool), String> {
        let (agent, uid) = (self.clone(), uid.to_string());
        tokio::task::spawn_blocking(move || {
            let raw = agent.runtime.records().map_err(blocking_err)?;
            let mut pending = false;
            let mut out = Vec::new();
            let mut vanished = agent.vanished.lock().unwrap_or_else(|p| p.into_inner());
            for st in raw
                .into_iter()
                .filter(|c| c.labels.get(labels::POD_UID) == Some(&uid))
            {
                if st.status != Status::Running {
                    vanished.remove(&st.id);
                    out.push(st);
                    continue;
                }
                match agent.runtime.inspect(&st.id) {
                    Ok(fresh) if fresh.status == Status::Exited && fresh.exit_code.is_none() => {
                        let since = *vanished.entry(st.id.clone()).or_insert_with(Instant::now);
                        if since.elapsed() < EXIT_RECORD_GRACE {
                            pending = true;
                            out.push(st);
                        } else {
                            out.push(fresh);
                        }
                    }
                    Ok(fresh) => out.push(fresh),
                    Err(_) => out.push(st),
                }
            }
            Ok((out, pending))
        })
        .await
        .map_err(blocking_err)?
    }

    /// Remove one container and release its root filesystem.
    pub fn remove_container(&self, id: &str) {
        self.vanished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Err(e) = self.runtime.remove(id, true) {
            tracing::warn!(container = %id, error = %e, "cannot remove the container");
        }
        if let Err(e) = self.snapshotter.remove_rootfs(id) {
            tracing::warn!(container = %id, error = %e, "cannot release the container's snapshots");
        }
    }

    /// Watch this node's pods and drive their workers until `shutdown`.
    pub async fn run_pods(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), AgentError> {
        {
            let agent = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { agent.monitor(shutdown).await });
        }
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let mut listed: HashSet<String> = HashSet::new();
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ev = stream.next() => ev,
            };
            let Some(ev) = ev else { return Ok(()) };
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "watching pods failed; retrying");
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(pod) => {
                    if let Some(uid) = pod.metadata.uid.clone() {
                        listed.insert(uid);
                    }
                    self.upsert(pod, &shutdown);
                }
                watcher::Event::Apply(pod) => self.upsert(pod, &shutdown),
                watcher::Event::Delete(pod) => {
                    if let Some(uid) = &pod.metadata.uid {
                        self.forget(uid);
                    }
                }
                watcher::Event::InitDone => {
                    let stale: Vec<String> = self
                        .workers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .keys()
                        .filter(|uid| !listed.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in stale {
                        self.forget(&uid);
                    }
                    let agent = self.clone();
                    let keep = listed.clone();
                    let _ = tokio::task::spawn_blocking(move || agent.collect_orphans(&keep)).await;
                }
            }
        }
    }

    fn upsert(self: &Arc<Self>, pod: Pod, shutdown: &CancellationToken) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = workers.get(&uid)
            && !h.task.is_finished()
        {
            h.pod.send_replace(pod);
            return;
        }
        let (tx, rx) = watch::channel(pod.clone());
        let wake = Arc::new(Notify::new());
        let gone = CancellationToken::new();
        let published = Arc::new(Mutex::new(Published {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ..Default::default()
        }));
        let id = self
            .next_worker
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(crate::worker::run(
            self.clone(),
            uid.clone(),
            id,
            crate::worker::Signals {
                pod: rx,
                wake: wake.clone(),
                gone: gone.clone(),
                shutdown: shutdown.clone(),
                published: published.clone(),
            },
        ));
        workers.insert(
            uid,
            WorkerHandle {
                id,
                pod: tx,
                wake,
                gone,
                published,
                task,
            },
        );
    }

    /// The pod is gone from the API: its worker cleans up and ends.
    fn forget(&self, uid: &str) {
        if let Some(h) = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
        {
            h.gone.cancel();
        }
    }

    /// A worker that finished its pod removes itself (unless a newer worker took the uid over).
    pub fn worker_done(&self, uid: &str, id: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if workers.get(uid).is_some_and(|h| h.id == id) {
            workers.remove(uid);
        }
    }

    /// Wait for the workers after shutdown (they leave containers running).
    pub async fn shutdown_workers(&self) {
        let tasks: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h.task)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        self.events_stop.cancel();
    }

    /// Containers and sandboxes of pods this node no longer has (kubelet's container GC for deleted pods).
    fn collect_orphans(&self, keep: &HashSet<String>) {
        let known: HashSet<String> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let records = match self.runtime.records() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers for garbage collection");
                return;
            }
        };
        for st in records {
            let Some(uid) = st.labels.get(labels::POD_UID) else {
                continue;
            };
            if keep.contains(uid) || known.contains(uid) {
                continue;
            }
            tracing::info!(container = %st.id, pod_uid = %uid, "removing the container of a pod that no longer exists");
            if st.status == Status::Running
                && let Err(e) = self.runtime.stop(&st.id, Duration::from_secs(2))
            {
                tracing::warn!(container = %st.id, error = %e, "cannot stop an orphaned container");
            }
            self.remove_container(&st.id);
        }
        for uid in crate::netns::list(&self.root) {
            if !keep.contains(&uid)
                && !known.contains(&uid)
                && let Err(e) = crate::netns::remove(&self.root, &uid)
            {
                tracing::warn!(pod_uid = %uid, error = %e, "cannot remove an orphaned pod network namespace");
            }
        }
    }

    /// Wake workers whose containers changed state (the shim records exits on disk).
    async fn monitor(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last: HashMap<String, Vec<(String, Status, Option<i32>)>> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let agent = self.clone();
            let Ok(Ok(records)) =
                tokio::task::spawn_blocking(move || agent.runtime.records()).await
            else {
                continue;
            };
            let mut now: HashMap<String, Vec<(String, Status, Option<i32>)>> = HashMap::new();
            for st in records {
                if let Some(uid) = st.labels.get(labels::POD_UID) {
                    now.entry(uid.clone()).or_default().push((
                        st.id.clone(),
                        st.status,
                        st.exit_code,
                    ));
                }
            }
            let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            for (uid, h) in workers.iter() {
                if now.get(uid) != last.get(uid) {
                    h.wake.notify_one();
                }
            }
            drop(workers);
            last = now;
        }
    }

    /// The log file kubelet would serve for `container` of pod `namespace/pod` (`previous`: the last dead
    /// instance), with kubelet's error texts.
    pub fn log_target(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, (StatusCode, String)> {
        let published = {
            let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers
                .values()
                .map(|h| {
                    h.published
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                })
                .find(|p| p.namespace == namespace && p.name == pod)
        };
        let Some(published) = published else {
            return Err((StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist")));
        };
        if !published.spec_containers.iter().any(|c| c == container) {
            return Err((
                StatusCode::NOT_FOUND,
                format!("container {container:?} not found in pod {pod:?}"),
            ));
        }
        let Some(view) = published.containers.iter().find(|c| c.name == container) else {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {pod:?} is not available"),
            ));
        };
        let id =
            container_id_for_logs(view, pod, previous).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
        let path = self.runtime.log_path(&id);
        let runtime = self.runtime.clone();
        Ok(LogTarget {
            path,
            alive: Box::new(move || {
                runtime.records().is_ok_and(|all| {
                    all.iter().any(|s| {
                        s.id == id
                            && (s.status == Status::Running
                                || (s.status == Status::Created && s.attach.is_some()))
                    })
                })
            }),
        })
    }
}

/// kubelet's `validateContainerLogStatus` over the container's status.
pub(crate) fn container_id_for_logs(
    view: &ContainerView,
    pod: &str,
    previous: bool,
) -> Result<String, String> {
    let name = &view.name;
    let status = view.to_status();
    let strip = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.strip_prefix("runc://"))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let last = status["lastState"].get("terminated");
    let state = &status["state"];
    if previous {
        return last.and_then(|t| strip(&t["containerID"])).ok_or_else(|| {
            format!("previous terminated container {name:?} in pod {pod:?} not found")
        });
    }
    if state.get("running").is_some() {
        return strip(&status["containerID"])
            .ok_or_else(|| format!("container {name:?} in pod {pod:?} is not available"));
    }
    if let Some(t) = state.get("terminated") {
        return strip(&t["containerID"])
            .or_else(|| last.and_then(|l| strip(&l["containerID"])))
            .ok_or_else(|| format!("container {name:?} in pod {pod:?} is terminated"));
    }
    if let Some(l) = last {
        return strip(&l["containerID"])
            .ok_or_else(|| format!("container {name:?} in pod {pod:?} is terminated"));
    }
    let reason = state["waiting"]["reason"].as_str().unwrap_or_default();
    Err(match reason {
        "ErrImagePull" => {
            format!("container {name:?} in pod {pod:?} is waiting to start: image can't be pulled")
        }
        "ImagePullBackOff" => format!(
            "container {name:?} in pod {pod:?} is waiting to start: trying and failing to pull image"
        ),
        r => format!("container {name:?} in pod {pod:?} is waiting to start: {r}"),
    })
}

/// The labels of a new container.
pub(crate) fn container_labels(
    pod: &Pod,
    container: &str,
    attempt: u32,
    image: &str,
    image_id: &str,
) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (
            labels::POD_UID.to_string(),
            m.uid.clone().unwrap_or_default(),
        ),
        (
            labels::POD_NAMESPACE.to_string(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (
            labels::POD_NAME.to_string(),
            m.name.clone().unwrap_or_default(),
        ),
        (labels::CONTAINER.to_string(), container.to_string()),
        (labels::ATTEMPT.to_string(), attempt.to_string()),
        (labels::IMAGE.to_string(), image.to_string()),
        (labels::IMAGE_ID.to_string(), image_id.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Instance;

    fn inst(id: &str, running: bool, code: Option<i32>) -> Instance {
        Instance {
            id: id.into(),
            running,
            started: None,
            finished: None,
            exit_code: code,
            error: None,
        }
    }

    #[test]
    fn log_lookup_follows_kubelets_rules_and_texts() {
        let mut v = ContainerView {
            name: "app".into(),
            ..Default::default()
        };
        assert_eq!(
            container_id_for_logs(&v, "web", false).unwrap_err(),
            "container \"app\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        v.waiting = Some(("ImagePullBackOff".into(), "Back-off pulling image".into()));
        assert_eq!(
            container_id_for_logs(&v, "web", false).unwrap_err(),
            "container \"app\" in pod \"web\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(
            container_id_for_logs(&v, "web", true).unwrap_err(),
            "previous terminated container \"app\" in pod \"web\" not found"
        );
        v.waiting = None;
        v.current = Some(inst("new", true, None));
        v.previous = Some(inst("old", false, Some(1)));
        assert_eq!(container_id_for_logs(&v, "web", false).unwrap(), "new");
        assert_eq!(container_id_for_logs(&v, "web", true).unwrap(), "old");
        // Crash loop: the dead instance is both the current log and the previous one.
        v.current = Some(inst("dead", false, Some(1)));
        v.waiting = Some(("CrashLoopBackOff".into(), "back-off".into()));
        assert_eq!(container_id_for_logs(&v, "web", false).unwrap(), "dead");
        assert_eq!(container_id_for_logs(&v, "web", true).unwrap(), "dead");
    }
}
