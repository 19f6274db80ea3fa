//! Highly available control plane: two `berth server --datastore etcd://...` processes (the built binary, started
//! from copies of one data dir, `--no-agent`) on a real 3-member etcd cluster on loopback (data on /dev/shm). The
//! test plays the node agent (a heartbeating Node, bound pods marked Running and Ready) and kills the process
//! whose controllers hold the `kube-system/berth-controllers` Lease in the middle of a Deployment rollout: the
//! other server's controllers take the Lease and finish the rollout. Every child process is killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

const ETCD: &str = "/usr/bin/etcd";
const NODE: &str = "ha-node";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills and reaps a child process when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-member etcd cluster on 127.0.0.1 with its data on tmpfs when available.
struct Etcd {
    _dir: tempfile::TempDir,
    members: Vec<Proc>,
    url: String,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = if Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("berth-ha-etcd-")
                .tempdir_in("/dev/shm")
                .unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let child = Command::new(ETCD)
                    .arg("--name")
                    .arg(format!("m{i}"))
                    .arg("--data-dir")
                    .arg(dir.path().join(format!("m{i}")))
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                    .args(["--logger", "zap", "--log-level", "warn"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("start /usr/bin/etcd (apt-get install etcd-server)");
                Proc(Some(child))
            })
            .collect();
        let url = format!(
            "etcd://{}",
            ports
                .iter()
                .map(|(c, _)| format!("127.0.0.1:{c}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        Etcd {
            _dir: dir,
            members,
            url,
        }
    }
}

/// One `berth server` process.
struct Server {
    proc: Proc,
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn start(dir: &Path, etcd: &Etcd) -> Server {
        let port = free_port();
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("server")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--datastore", &etcd.url])
            .arg("--no-agent")
            .env("BERTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Server {
            proc: Proc(Some(child)),
            dir: dir.to_path_buf(),
            port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// An admin client once the server answers `/readyz` on its own port.
    async fn client(&mut self) -> Client {
        for _ in 0..600 {
            if let Some(Ok(status)) = self.proc.0.as_mut().map(|c| c.try_wait())
                && let Some(status) = status
            {
                panic!("berth server exited with {status}:\n{}", self.log());
            }
            let kubeconfig = self.dir.join("admin.kubeconfig");
            if let Ok(kc) = Kubeconfig::read_from(&kubeconfig)
                && kc.clusters.iter().any(|c| {
                    c.cluster.as_ref().and_then(|c| c.server.as_deref())
                        == Some(&format!("https://127.0.0.1:{}", self.port))
                })
            {
                let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .unwrap();
                let client = Client::try_from(cfg).unwrap();
                // The server answers only once it is ready (default namespaces created).
                if client.apiserver_version().await.is_ok() {
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("berth server not ready after 60s:\n{}", self.log());
    }
}

/// Copies a data dir (how a further API server of a cluster starts).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn now() -> serde_json::Value {
    serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now())).unwrap()
}

/// Plays the node agent through whichever server `client` currently points at: heartbeats `NODE` and marks its
/// bound pods Running and Ready, deletes terminating ones.
async fn play_agent(client: Arc<Mutex<Client>>, stop: Stop) {
    let mut beat = tokio::time::Instant::now() - Duration::from_secs(1);
    while !stop.is_stopped() {
        let c = client.lock().unwrap().clone();
        if beat.elapsed() >= Duration::from_millis(500) {
            beat = tokio::time::Instant::now();
            let t = now();
            let status = json!({"status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t}],
                "allocatable": {"pods": "110", "cpu": "4", "memory": "8Gi"},
                "capacity": {"pods": "110", "cpu": "4", "memory": "8Gi"}}});
            let _ = Api::<Node>::all(c.clone())
                .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        }
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE);
                if !bound {
                    continue;
                }
                let name = pod.name_any();
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = pods
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
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    continue;
                }
                let t = now();
                let cond = |k: &str| json!({"type": k, "status": "True", "lastTransitionTime": t});
                let status = json!({"status": {"phase": "Running", "hostIP": "127.0.0.1", "startTime": t,
                    "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")]}});
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A stop flag shared with the fake agent.
#[derive(Clone, Default)]
struct Stop(Arc<AtomicBool>);

impl Stop {
    fn stop(&self) {
        self.0.store(true, Ordering::Release)
    }
    fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

async fn lease_holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt("berth-controllers")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits up to `secs` for `check` to return `Some`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.replicas == Some(replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leading_server_lets_the_other_finish_a_rollout() {
    let etcd = Etcd::start();
    assert_eq!(etcd.members.len(), 3);
    let root = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    let mut a = Server::start(&dir_a, &etcd);
    let client_a = a.client().await;
    copy_dir(&dir_a, &dir_b);
    let mut b = Server::start(&dir_b, &etcd);
    let client_b = b.client().await;

    // The fake agent registers its node and keeps it Ready.
    let node: Node = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}}))
    .unwrap();
    Api::<Node>::all(client_a.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let agent_client = Arc::new(Mutex::new(client_a.clone()));
    let stop = Stop::default();
    let agent = tokio::spawn(play_agent(agent_client.clone(), stop.clone()));

    // Exactly one server's controllers lead.
    let holder = eventually(60, "a controllers lease holder", || {
        let c = client_a.clone();
        async move { lease_holder(&c).await }
    })
    .await;
    let (leader, survivor, survivor_client) = if holder.ends_with(&format!(":{}", a.port)) {
        (&mut a, &mut b, client_b.clone())
    } else {
        assert!(holder.ends_with(&format!(":{}", b.port)), "{holder}");
        (&mut b, &mut a, client_a.clone())
    };
    *agent_client.lock().unwrap() = survivor_client.clone();

    let deployments: Api<Deployment> = Api::namespaced(survivor_client.clone(), "default");
    let replicas = 4;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "minReadySeconds": 2,
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:v1"}]}}}}))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    eventually(120, "the first rollout", || {
        let d = deployments.clone();
        async move { d.get("web").await.ok().filter(|d| rolled_out(d, replicas)) }
    })
    .await;

    // Start a rollout (minReadySeconds keeps it going for several seconds), then kill the leading server.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example.com/web:v2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    eventually(60, "the rollout to start", || {
        let d = deployments.clone();
        async move {
            d.get("web").await.ok().filter(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.updated_replicas)
                    .unwrap_or(0)
                    >= 1
            })
        }
    })
    .await;
    leader.proc.kill();

    // The survivor's controllers take the Lease and finish the rollout.
    let survivor_port = survivor.port;
    let new_holder = eventually(60, "the surviving server to take the lease", || {
        let c = survivor_client.clone();
        async move {
            lease_holder(&c)
                .await
                .filter(|h| h.ends_with(&format!(":{survivor_port}")))
        }
    })
    .await;
    assert_ne!(new_holder, holder);
    let done = eventually(120, "the rollout to complete after the failover", || {
        let d = deployments.clone();
        async move { d.get("web").await.ok().filter(|d| rolled_out(d, replicas)) }
    })
    .await;
    assert_eq!(done.status.unwrap().unavailable_replicas.unwrap_or(0), 0);
    let pods: Vec<Pod> = Api::<Pod>::namespaced(survivor_client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let images: Vec<String> = pods
        .iter()
        .map(|p| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(
        images,
        vec!["registry.example.com/web:v2".to_string(); replicas as usize],
        "{}",
        survivor.log()
    );

    stop.stop();
    agent.await.unwrap();
}
