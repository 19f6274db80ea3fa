//! One pod's worker (kubelet's pod worker + `SyncPod`): it keeps the pod's sandbox (a network namespace shared
//! by its containers, or the host's for `hostNetwork`), ensures each container's image through `podpull`,
//! creates and starts containers with the runtime in spec order, restarts them per `restartPolicy` with the
//! crash-loop back-off, writes the pod status through `pods/status` (only when it changed; at most every
//! [`MIN_STATUS_INTERVAL`] unless the phase or a condition changed, so Running is written as soon as it is
//! true), and on deletion stops the containers within the grace period, removes them with their root
//! filesystems and sandbox, and deletes the Pod with `gracePeriodSeconds=0` as kubelet does.
//!
//! Once a container's image is ready its creation starts at once: the pull progress annotation is removed by
//! its publisher in the background (an API write that the start must not wait for). Debug-level traces give
//! each step's time (image ready, create, start, status written) per pod.
//!
//! It must never read a Secret outside the pod's namespace, never stop containers when the agent shuts down
//! (only when the pod goes), and never block the agent on one pod's pull.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use runtime::{ContainerState, CreateOptions, MountFn, Overrides, RootfsSource, Status};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::go_duration;
use crate::events::{Involved, Kind};
use crate::pods::{Agent, Published, attempt, container_labels, labels};
use crate::progress::PodProgress;
use crate::status::{ContainerView, Instance, PodView};

/// Shortest time between two status writes of one pod (bursts of changes are folded into one write).
pub(crate) const MIN_STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// How often a pod is synced when nothing happens.
const RESYNC: Duration = Duration::from_secs(30);

/// kubelet's `format.Pod`: `name_namespace(uid)`.
fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// Whether a container record is (about to be) running.
fn active(st: &ContainerState) -> bool {
    st.status == Status::Running || (st.status == Status::Created && st.attach.is_some())
}

fn instance(st: &ContainerState) -> Instance {
    Instance {
        id: st.id.clone(),
        running: active(st),
        started: st.started,
        finished: st.finished,
        exit_code: st.exit_code,
        error: st.error.clone(),
    }
}

/// Posts podpull's Events for one container.
struct ContainerRecorder {
    sink: crate::events::EventSink,
    involved: Involved,
}

impl podpull::Recorder for ContainerRecorder {
    fn event(&self, kind: podpull::EventType, reason: &str, message: String) {
        let kind = match kind {
            podpull::EventType::Normal => Kind::Normal,
            podpull::EventType::Warning => Kind::Warning,
        };
        self.sink.record(&self.involved, kind, reason, message);
    }
}

impl podpull::PullProgress for PodProgress {
    fn progress(&self, event: image::Progress) {
        self.apply(event);
    }

    fn blob_source(&self, digest: &oci::Digest, origin: &image::BlobOrigin) {
        self.source(digest, origin);
    }
}

/// Why a container did not start this time.
struct Wait {
    reason: String,
    message: String,
    retry: Duration,
}

struct Worker {
    agent: Arc<Agent>,
    uid: String,
    waiting: HashMap<String, (String, String)>,
    images: HashMap<String, (String, String)>,
    last_status: Option<Value>,
    last_write: Option<Instant>,
    start_time: Option<String>,
    sandbox_ready: bool,
    published: Arc<Mutex<Published>>,
}

/// How the agent talks to one worker.
pub(crate) struct Signals {
    /// The newest version of the pod.
    pub pod: watch::Receiver<Arc<Pod>>,
    /// A container of the pod changed state.
    pub wake: Arc<Notify>,
    /// The pod is gone from the API (clean up without deleting it).
    pub gone: CancellationToken,
    /// The agent stops (leave everything running).
    pub shutdown: CancellationToken,
    /// Where the worker publishes its container views for the log endpoint.
    pub published: Arc<Mutex<Published>>,
}

/// The worker loop of pod `uid` until it is deleted (or the agent stops); `id` names this worker.
pub(crate) async fn run(agent: Arc<Agent>, uid: String, id: u64, signals: Signals) {
    let Signals {
        pod: mut pod_rx,
        wake,
        gone,
        shutdown,
        published,
    } = signals;
    let mut w = Worker {
        agent: agent.clone(),
        uid: uid.clone(),
        waiting: HashMap::new(),
        images: HashMap::new(),
        last_status: None,
        last_write: None,
        start_time: None,
        sandbox_ready: false,
        published,
    };
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let pod = pod_rx.borrow_and_update().clone();
        if gone.is_cancelled() {
            w.terminate(&pod, false).await;
            break;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            w.terminate(&pod, true).await;
            break;
        }
        let next = w.sync(&pod).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = gone.cancelled() => {}
            r = pod_rx.changed() => if r.is_err() { break },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(next) => {}
        }
    }
    agent.worker_done(&uid, id);
}

impl Worker {
    fn involved(&self, pod: &Pod, container: Option<&str>) -> Involved {
        Involved {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: self.uid.clone(),
            field_path: container.map(|c| format!("spec.containers{{{c}}}")),
        }
    }

    fn event(&self, pod: &Pod, container: Option<&str>, kind: Kind, reason: &str, message: String) {
        self.agent
            .events
            .record(&self.involved(pod, container), kind, reason, message);
    }

    /// One pass: sandbox, containers, status. Returns when the pod needs the next pass at the latest.
    async fn sync(&mut self, pod: &Pod) -> Duration {
        let Some(spec) = pod.spec.as_ref() else {
            return RESYNC;
        };
        let mut next = RESYNC;
        if self.start_time.is_none() {
            self.start_time = Some(
                pod.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0.to_string())
                    .unwrap_or_else(crate::status::now_rfc3339),
            );
        }
        let host_network = spec.host_network.unwrap_or(false);
        let netns = if host_network {
            self.sandbox_ready = true;
            None
        } else {
            let (root, uid) = (self.agent.root.clone(), self.uid.clone());
            match tokio::task::spawn_blocking(move || crate::netns::ensure(&root, &uid)).await {
                Ok(Ok(p)) => {
                    self.sandbox_ready = true;
                    Some(p)
                }
                Ok(Err(e)) => {
                    self.event(
                        pod,
                        None,
                        Kind::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    self.sandbox_ready = false;
                    let _ = self.write_status(pod, &[], true).await;
                    return self.agent.pull_retry;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the sandbox task panicked");
                    return self.agent.pull_retry;
                }
            }
        };
        let mut records = match self.agent.containers_of(&self.uid).await {
            Ok((r, pending)) => {
                if pending {
                    next = next.min(Duration::from_millis(500));
                }
                r
            }
            Err(e) => {
                tracing::warn!(pod = %format_pod(pod), error = %e, "cannot list the pod's containers");
                return Duration::from_secs(2);
            }
        };
        if self.last_status.is_none() {
            // kubectl shows ContainerCreating (and the start time) while the first pull runs.
            if let Some(d) = self.write_status(pod, &records, true).await {
                next = next.min(d);
            }
        }
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let mut secrets: Option<Vec<podpull::FetchedSecret>> = None;
        let mut started_any = false;
        for c in &spec.containers {
            let mut mine: Vec<&ContainerState> = records
                .iter()
                .filter(|r| r.labels.get(labels::CONTAINER) == Some(&c.name))
                .collect();
            mine.sort_by_key(|r| attempt(r));
            let start_attempt = match mine.last() {
                None => Some(0),
                Some(cur) if active(cur) => {
                    self.waiting.remove(&c.name);
                    None
                }
                Some(cur) => {
                    let restart = match policy {
                        "Never" => false,
                        "OnFailure" => cur.exit_code != Some(0),
                        _ => true,
                    };
                    if !restart {
                        self.waiting.remove(&c.name);
                        None
                    } else {
                        let key = format!("{}_{}", self.uid, c.name);
                        let now = SystemTime::now();
                        let finished = cur.finished.map_or(now, SystemTime::from);
                        let mut crash = self.agent.crash.lock().unwrap_or_else(|p| p.into_inner());
                        if crash.in_backoff(&key, finished, now) {
                            let message = format!(
                                "back-off {} restarting failed container={} pod={}",
                                go_duration(crash.current(&key)),
                                c.name,
                                format_pod(pod)
                            );
                            if let Some(at) = crash.ready_at(&key, finished) {
                                next = next.min(
                                    at.duration_since(now).unwrap_or_default()
                                        + Duration::from_millis(50),
                                );
                            }
                            drop(crash);
                            let entering = self
                                .waiting
                                .get(&c.name)
                                .map(|(r, m)| (r.as_str(), m.as_str()))
                                != Some(("CrashLoopBackOff", message.as_str()));
                            if entering {
                                self.event(
                                    pod,
                                    Some(&c.name),
                                    Kind::Warning,
                                    "BackOff",
                                    format!(
                                        "Back-off restarting failed container {} in pod {}",
                                        c.name,
                                        format_pod(pod)
                                    ),
                                );
                            }
                            self.waiting
                                .insert(c.name.clone(), ("CrashLoopBackOff".into(), message));
                            None
                        } else {
                            crash.next(&key, finished, now);
                            Some(attempt(cur) + 1)
                        }
                    }
                }
            };
            let Some(n) = start_attempt else { continue };
            match self.start(pod, c, n, netns.as_deref(), &mut secrets).await {
                Ok(()) => {
                    self.waiting.remove(&c.name);
                    started_any = true;
                    // Keep the new instance and the one before it (for `--previous`).
                    for old in mine.iter().filter(|r| attempt(r) + 1 < n) {
                        let (agent, id) = (self.agent.clone(), old.id.clone());
                        let _ =
                            tokio::task::spawn_blocking(move || agent.remove_container(&id)).await;
                    }
                }
                Err(wait) => {
                    next = next.min(wait.retry);
                    self.waiting
                        .insert(c.name.clone(), (wait.reason, wait.message));
                }
            }
        }
        if started_any {
            match self.agent.containers_of(&self.uid).await {
                Ok((r, _)) => records = r,
                Err(e) => tracing::warn!(error = %e, "cannot list the pod's containers"),
            }
        }
        if let Some(d) = self.write_status(pod, &records, false).await {
            next = next.min(d);
        }
        next
    }

    async fn fetch_secrets(&self, pod: &Pod) -> Vec<podpull::FetchedSecret> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Secret> = Api::namespaced(self.agent.client.clone(), ns);
        let mut out = Vec::new();
        let refs = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        for r in refs {
            let name = r.name.clone();
            if name.is_empty() {
                continue;
            }
            match api.get_opt(&name).await {
                Ok(Some(s)) => out.push(podpull::FetchedSecret::Found(s)),
                Ok(None) => out.push(podpull::FetchedSecret::Missing { name }),
                Err(e) => {
                    tracing::warn!(pod = %format_pod(pod), secret = %name, error = %e, "cannot read the pull secret");
                    out.push(podpull::FetchedSecret::Missing { name });
                }
            }
        }
        out
    }

    /// Ensure the image, create and start attempt `n` of container `c`.
    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        n: u32,
        netns: Option<&Path>,
        secrets: &mut Option<Vec<podpull::FetchedSecret>>,
    ) -> Result<(), Wait> {
        let agent = self.agent.clone();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let image = c.image.clone().unwrap_or_default();
        if secrets.is_none() {
            *secrets = Some(self.fetch_secrets(pod).await);
        }
        let pod_ref = podpull::PodRef {
            namespace: ns.clone(),
            name: name.clone(),
            uid: self.uid.clone(),
        };
        let recorder = ContainerRecorder {
            sink: agent.events.clone(),
            involved: self.involved(pod, Some(&c.name)),
        };
        let progress = Arc::new(PodProgress::new(&image));
        let done = CancellationToken::new();
        let publisher = tokio::spawn(crate::progress::publish(
            agent.client.clone(),
            ns.clone(),
            name.clone(),
            progress.clone(),
            agent.progress_pacer.clone(),
            done.clone(),
        ));
        let ready = agent
            .images
            .ensure_image(
                &pod_ref,
                &image,
                c.image_pull_policy.as_deref(),
                secrets.as_deref().unwrap_or_default(),
                &recorder,
                Some(progress as Arc<dyn podpull::PullProgress>),
            )
            .await;
        // The publisher removes the progress annotation in its own time: the container does not wait for it.
        done.cancel();
        drop(publisher);
        let ready = ready.map_err(|w| Wait {
            reason: w.reason,
            message: w.message,
            retry: agent.pull_retry,
        })?;
        self.images
            .insert(c.name.clone(), (ready.name.clone(), ready.image_id.clone()));
        let image_ready = Instant::now();
        tracing::debug!(pod = %format_pod(pod), container = %c.name, image = %ready.name, "image ready");

        let pod_ip = pod
            .spec
            .as_ref()
            .is_some_and(|s| s.host_network.unwrap_or(false))
            .then(|| agent.host_ip().to_string());
        let built = crate::env::build(&agent.client, pod, c, agent.host_ip(), pod_ip.as_deref())
            .await
            .map_err(|e| {
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Warning,
                    "Failed",
                    format!("Error: {}", e.0),
                );
                Wait {
                    reason: "CreateContainerConfigError".into(),
                    message: e.0,
                    retry: agent.pull_retry,
                }
            })?;
        let spec = pod.spec.as_ref();
        let host_network = spec.is_some_and(|s| s.host_network.unwrap_or(false));
        let hostname = if host_network {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| agent.node_name.clone())
        } else {
            spec.and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| name.clone())
                .chars()
                .take(63)
                .collect()
        };
        let user = c.security_context.as_ref().and_then(|sc| {
            sc.run_as_user.map(|u| match sc.run_as_group {
                Some(g) => format!("{u}:{g}"),
                None => u.to_string(),
            })
        });
        let overrides = Overrides {
            command: built.command,
            args: built.args,
            env: built.env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            user,
            hostname: Some(hostname),
            network_namespace: netns.map(Path::to_path_buf),
        };
        let container_name = format!("k8s_{}_{}_{}", c.name, self.uid, n);
        let mount: MountFn = {
            let (snapshotter, chain) = (agent.snapshotter.clone(), ready.snapshots.clone());
            Box::new(move |target: &Path| {
                let id = runtime::container_id_of_rootfs(target)?;
                let rootfs = snapshotter
                    .prepare_rootfs(&chain, &id)
                    .map_err(|e| e.to_string())?;
                rootfs.mount(target).map_err(|e| e.to_string())
            })
        };
        let options = CreateOptions {
            name: Some(container_name.clone()),
            image: ready.name.clone(),
            config: ready.config.config.clone(),
            rootfs: RootfsSource::Mount(mount),
            overrides,
            auto_remove: false,
        };
        let labels = container_labels(pod, &c.name, n, &ready.name, &ready.image_id);
        let created = {
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || {
                // A record left by an attempt that failed half-way holds the name: drop it first.
                if let Ok(old) = agent.runtime.inspect(&container_name)
                    && old.name == container_name
                {
                    agent.remove_container(&old.id);
                }
                let created = agent.runtime.create_labeled(options, labels);
                if created.is_err() {
                    // The rootfs may have been prepared before the failure.
                    if let Ok(all) = agent.runtime.records() {
                        for r in all.iter().filter(|r| r.name == container_name) {
                            agent.remove_container(&r.id);
                        }
                    }
                }
                created
            })
            .await
        };
        tracing::debug!(
            pod = %format_pod(pod),
            container = %c.name,
            after_image_ms = image_ready.elapsed().as_millis() as u64,
            ok = matches!(created, Ok(Ok(_))),
            "container created"
        );
        let state = match created {
            Ok(Ok(st)) => st,
            Ok(Err(e)) => {
                let message = e.to_string();
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                return Err(Wait {
                    reason: "CreateContainerError".into(),
                    message,
                    retry: agent.pull_retry,
                });
            }
            Err(e) => {
                return Err(Wait {
                    reason: "CreateContainerError".into(),
                    message: format!("the create task failed: {e}"),
                    retry: agent.pull_retry,
                });
            }
        };
        self.event(
            pod,
            Some(&c.name),
            Kind::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        let started = {
            let (agent, id) = (agent.clone(), state.id.clone());
            tokio::task::spawn_blocking(move || agent.runtime.start_detached(&id, &agent.shim))
                .await
        };
        tracing::debug!(
            pod = %format_pod(pod),
            container = %c.name,
            after_image_ms = image_ready.elapsed().as_millis() as u64,
            ok = matches!(started, Ok(Ok(_))),
            "container started"
        );
        match started {
            Ok(Ok(_)) => self.event(
                pod,
                Some(&c.name),
                Kind::Normal,
                "Started",
                format!("Started container {}", c.name),
            ),
            // The record now shows the failed start as an exit: the restart policy decides what follows.
            Ok(Err(e)) => self.event(
                pod,
                Some(&c.name),
                Kind::Warning,
                "Failed",
                format!("Error: failed to start container \"{}\": {e}", c.name),
            ),
            Err(e) => tracing::error!(error = %e, "the start task failed"),
        }
        Ok(())
    }

    fn views(&self, pod: &Pod, records: &[ContainerState]) -> Vec<ContainerView> {
        let Some(spec) = pod.spec.as_ref() else {
            return Vec::new();
        };
        spec.containers
            .iter()
            .map(|c| {
                let mut mine: Vec<&ContainerState> = records
                    .iter()
                    .filter(|r| r.labels.get(labels::CONTAINER) == Some(&c.name))
                    .collect();
                mine.sort_by_key(|r| attempt(r));
                let current = mine.last().copied();
                let previous = mine.len().checked_sub(2).map(|i| mine[i]);
                let (image, image_id) =
                    match current {
                        Some(cur) => (
                            cur.labels.get(labels::IMAGE).cloned().unwrap_or_default(),
                            cur.labels
                                .get(labels::IMAGE_ID)
                                .cloned()
                                .unwrap_or_default(),
                        ),
                        None => self.images.get(&c.name).cloned().unwrap_or_else(|| {
                            (c.image.clone().unwrap_or_default(), String::new())
                        }),
                    };
                ContainerView {
                    name: c.name.clone(),
                    image,
                    image_id,
                    current: current.map(instance),
                    previous: previous.map(instance),
                    waiting: self.waiting.get(&c.name).cloned(),
                    restart_count: current.map_or(0, attempt),
                }
            })
            .collect()
    }

    /// Write the status if it changed; returns when to try again when it was written too recently.
    async fn write_status(
        &mut self,
        pod: &Pod,
        records: &[ContainerState],
        force: bool,
    ) -> Option<Duration> {
        let views = self.views(pod, records);
        {
            let mut p = self.published.lock().unwrap_or_else(|p| p.into_inner());
            p.namespace = pod.metadata.namespace.clone().unwrap_or_default();
            p.name = pod.metadata.name.clone().unwrap_or_default();
            p.spec_containers = pod
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            p.containers = views.clone();
        }
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        let host_network = pod
            .spec
            .as_ref()
            .is_some_and(|s| s.host_network.unwrap_or(false));
        let host_ip = self.agent.host_ip().to_string();
        let start_time = self
            .start_time
            .clone()
            .unwrap_or_else(crate::status::now_rfc3339);
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let status = crate::status::pod_status(&PodView {
            restart_policy: &policy,
            containers: &views,
            sandbox_ready: self.sandbox_ready,
            host_ip: &host_ip,
            pod_ip: host_network.then_some(host_ip.as_str()),
            start_time: &start_time,
            previous: previous.as_ref(),
        });
        if self.last_status.as_ref() == Some(&status) {
            return None;
        }
        if !force
            && !crate::status::is_transition(self.last_status.as_ref(), &status)
            && let Some(at) = self.last_write
            && at.elapsed() < MIN_STATUS_INTERVAL
        {
            return Some(MIN_STATUS_INTERVAL - at.elapsed());
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &ns);
        let patch = json!({"status": status});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = %format_pod(pod), phase = %status["phase"], "status written");
                self.last_status = Some(status);
                self.last_write = Some(Instant::now());
                None
            }
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => {
                tracing::warn!(pod = %format_pod(pod), error = %e, "cannot write the pod status");
                Some(Duration::from_secs(1))
            }
        }
    }

    /// Stop and remove everything of the pod; with `delete`, remove the Pod object as kubelet does.
    async fn terminate(&mut self, pod: &Pod, delete: bool) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                if delete {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                } else {
                    None
                }
            })
            .unwrap_or(if delete { 30 } else { 2 })
            .max(0) as u64;
        let grace = Duration::from_secs(grace);
        let records = self
            .agent
            .containers_of(&self.uid)
            .await
            .map(|(r, _)| r)
            .unwrap_or_default();
        let mut stops = Vec::new();
        for st in records.iter().filter(|s| active(s)) {
            let cname = st
                .labels
                .get(labels::CONTAINER)
                .cloned()
                .unwrap_or_default();
            self.event(
                pod,
                Some(&cname),
                Kind::Normal,
                "Killing",
                format!("Stopping container {cname}"),
            );
            let (agent, id) = (self.agent.clone(), st.id.clone());
            stops.push(tokio::task::spawn_blocking(move || {
                agent.runtime.stop(&id, grace)
            }));
        }
        for s in stops {
            match s.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(pod = %format_pod(pod), error = %e, "stopping a container failed")
                }
                Err(e) => tracing::warn!(error = %e, "the stop task failed"),
            }
        }
        {
            let (agent, ids): (_, Vec<String>) = (
                self.agent.clone(),
                records.iter().map(|r| r.id.clone()).collect(),
            );
            let uid = self.uid.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for id in ids {
                    agent.remove_container(&id);
                }
                if let Err(e) = crate::netns::remove(&agent.root, &uid) {
                    tracing::warn!(pod_uid = %uid, error = %e, "cannot remove the pod network namespace");
                }
            })
            .await;
        }
        self.agent
            .crash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_pod(&self.uid);
        if !delete {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = %format_pod(pod), "pod deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %format_pod(pod), error = %e, "cannot delete the pod"),
        }
    }
}
