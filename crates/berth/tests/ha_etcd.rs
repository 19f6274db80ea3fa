//! Highly available control plane: `berth server --datastore etcd://...` processes (the built binary, started
//! from copies of one data dir, `--no-agent`) on a real 3-member etcd cluster on loopback (data on /dev/shm).
//!
//! - The test: three `berth agent` processes (own roots, one machine) behind a TCP front for the two
//!   servers (as a load balancer would be) run a Deployment of a real image from a private TLS registry; mid
//!   rollout the server holding the controllers' Lease and the etcd raft leader are killed together. The rollout
//!   completes, every ConfigMap created before or acknowledged during the kills is stored, a watch on the
//!   surviving server sees every one of them without a break, and a watch through the front resumes on the
//!   survivor without a 410. The Deployment is deleted and its containers are gone before the test ends.
//! - A lighter failover test plays the node agent itself (a heartbeating Node, bound pods marked Running).
//! - The lifecycle tasks (namespace deletion, garbage collection) run on one server only, and on the survivor
//!   once that one is killed (read from the servers' logs).
//!
//! Every child process is killed on drop; containers left by a failing test are killed and unmounted.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
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
    client_ports: Vec<u16>,
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
            client_ports: ports.iter().map(|(c, _)| *c).collect(),
            url,
        }
    }

    /// The index of the raft leader, asking each live member which member it is and whom it follows.
    async fn leader(&self) -> usize {
        for _ in 0..100 {
            let mut ids = Vec::new();
            let mut leader = None;
            for port in &self.client_ports {
                let config =
                    store_etcd::EtcdConfig::from_url(&format!("etcd://127.0.0.1:{port}")).unwrap();
                let status = match store_etcd::EtcdStore::connect(config).await {
                    Ok(member) => member.client().status().await.ok(),
                    Err(_) => None,
                };
                ids.push(
                    status
                        .as_ref()
                        .and_then(|s| s.header())
                        .map(|h| h.member_id()),
                );
                leader = leader.or(status.map(|s| s.leader()).filter(|l| *l != 0));
            }
            if let Some(i) = leader.and_then(|l| ids.iter().position(|id| *id == Some(l))) {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the etcd cluster has no leader");
    }

    fn kill(&mut self, member: usize) {
        self.members[member].kill();
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
            .env("BERTH_LOG", "info,apiserver::lifecycle=debug")
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

// ---------------------------------------------------------------------------------------------------------------
// The test: real agents, a real image, the leading server and the etcd raft leader killed mid-rollout.

const REGISTRY_USER: &str = "ha";
const REGISTRY_PASSWORD: &str = "ha-etcd-registry-pw-7e1c";
const REPLICAS: i32 = 3;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A TCP front for the API servers, as a load balancer would be: each connection goes to the first server in
/// `backends` that accepts it, so clients move to the survivor once the first server dies (their open connections
/// to it break). The servers share one serving certificate (copied data dirs) valid for 127.0.0.1.
async fn front(backends: Vec<u16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for port in backends {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    port
}

/// One `berth agent` process with its own root and node name, talking to `server`.
fn start_agent(name: &str, root: &Path, server: &str, data_dir: &Path) -> Proc {
    std::fs::create_dir_all(root).unwrap();
    let log = std::fs::File::create(root.with_extension("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("agent")
        .args(["--server", server])
        .arg("--token-file")
        .arg(data_dir.join("node.token"))
        .arg("--ca-file")
        .arg(data_dir.join("pki/ca.crt"))
        .args(["--node-name", name])
        .arg("--root")
        .arg(root)
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--image-pull-backoff",
            "1s",
        ])
        .env("BERTH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Proc(Some(child))
}

/// Process ids whose command line contains all of `needles`.
fn processes_with(needles: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().all(|n| cmdline.contains(n)) {
            out.push(pid);
        }
    }
    out
}

/// The shims (and so the containers) the agents under `root` left running.
fn shims_under(root: &Path) -> Vec<i32> {
    processes_with(&["__shim", &root.display().to_string()])
}

/// Kills, on drop, containers a failing test left under `root` (each shim with its descendants) and detaches
/// their mounts, so no test leaves a container or a mount behind.
struct ContainerReaper(PathBuf);

impl Drop for ContainerReaper {
    fn drop(&mut self) {
        fn descendants(pid: i32, out: &mut Vec<i32>) {
            for task in std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let children =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                    descendants(child, out);
                    out.push(child);
                }
            }
        }
        for shim in shims_under(&self.0) {
            let mut pids = Vec::new();
            descendants(shim, &mut pids);
            pids.push(shim);
            for pid in pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let root = self.0.display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let path = std::ffi::CString::new(mount).unwrap();
            // SAFETY: a valid NUL-terminated path; MNT_DETACH only detaches this mount.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A TLS + htpasswd docker-registry holding `team/web:v1` and `team/web:v2` (busybox images that sleep).
async fn registry_with_web_images() -> (testkit::pki::TestPki, testkit::registry::Registry) {
    use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
    use testkit::registry::{Registry, RegistryOptions, User};
    let pki = testkit::pki::TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new(REGISTRY_USER, REGISTRY_PASSWORD)]),
    )
    .await
    .unwrap();
    for version in ["v1", "v2"] {
        ImageBuilder::new()
            .cmd(["sh", "-c", &format!("echo web {version}; exec sleep 3600")])
            .env("PATH=/bin")
            .layer(
                testkit::image::busybox_rootfs(&["sh", "echo", "sleep"]),
                Compression::Gzip,
            )
            .layer(
                vec![Entry::file("etc/version", format!("{version}\n"))],
                Compression::Gzip,
            )
            .build()
            .unwrap()
            .push(
                &registry,
                &format!("team/web:{version}"),
                Some(&Credentials::new(REGISTRY_USER, REGISTRY_PASSWORD)),
            )
            .await
            .unwrap();
    }
    (pki, registry)
}

/// The kubernetes.io/dockerconfigjson Secret for the registry at `host`.
fn pull_secret(host: &str) -> k8s_openapi::api::core::v1::Secret {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
    let config = json!({"auths": {host: {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD, "auth": auth}}});
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}}))
    .unwrap()
}

fn web_deployment(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "minReadySeconds": 2,
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "imagePullSecrets": [{"name": "regcred"}],
                    "containers": [{"name": "web", "image": image}]}}}}))
    .unwrap()
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}))
        .unwrap()
}

/// What a watch of ConfigMaps saw.
#[derive(Default, Debug)]
struct Seen {
    /// Names of ADDED ConfigMaps with their resourceVersion, in delivery order.
    added: Vec<(String, u64)>,
    /// How many times the watch was (re)started.
    starts: usize,
    /// Failures: broken connections, error events (a 410 would be one).
    errors: Vec<String>,
}

/// The next item of a stream. berth's dev-dependencies have no `futures`: kube's `WatchStreamExt`, implemented for
/// every `Stream`, has `Stream` as its supertrait, so bounding on it makes `poll_next` callable.
async fn next_item<S>(stream: &mut std::pin::Pin<Box<S>>) -> Option<S::Item>
where
    S: kube::runtime::WatchStreamExt + ?Sized,
{
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

/// Watches ConfigMaps of `default` from `rv` until `stop`, resuming from the last resourceVersion it saw whenever the
/// stream ends or breaks, as client-go's reflector does.
async fn watch_config_maps(client: Client, mut rv: String, stop: Stop, seen: Arc<Mutex<Seen>>) {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    while !stop.is_stopped() {
        seen.lock().unwrap().starts += 1;
        let mut stream = match api.watch(&WatchParams::default().timeout(290), &rv).await {
            Ok(stream) => Box::pin(stream),
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .errors
                    .push(format!("watch from {rv}: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = next_item(&mut stream) => next.transpose(),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.is_stopped() { return }
                    continue;
                }
            };
            let mut record = seen.lock().unwrap();
            match next {
                Ok(Some(WatchEvent::Added(cm))) => {
                    rv = cm.resource_version().unwrap();
                    record.added.push((cm.name_any(), rv.parse().unwrap()));
                }
                Ok(Some(WatchEvent::Modified(cm) | WatchEvent::Deleted(cm))) => {
                    rv = cm.resource_version().unwrap()
                }
                Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                Ok(Some(WatchEvent::Error(status))) => {
                    record.errors.push(format!(
                        "{} {}: {}",
                        status.code, status.reason, status.message
                    ));
                    if status.code == 410 {
                        return;
                    }
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    record.errors.push(format!("watch stream from {rv}: {e}"));
                    break;
                }
            }
        }
    }
}

/// Creates ConfigMaps `during-N` one after another through `client` until `stop`; returns the acknowledged names.
async fn write_config_maps(client: Client, stop: Stop) -> Vec<String> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !stop.is_stopped() {
        let name = format!("during-{n}");
        n += 1;
        // A create whose answer was lost may still have been stored: the name is then never reused.
        if api
            .create(&PostParams::default(), &config_map(&name))
            .await
            .is_ok()
        {
            acknowledged.push(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acknowledged
}

async fn web_pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// True when every web pod runs `image` with its container running and Ready, on a known node.
fn all_running(pods: &[Pod], image: &str) -> bool {
    pods.len() == REPLICAS as usize
        && pods.iter().all(|p| {
            let spec = p.spec.as_ref().unwrap();
            let status = p.status.clone().unwrap_or_default();
            p.metadata.deletion_timestamp.is_none()
                && spec.containers[0].image.as_deref() == Some(image)
                && status
                    .container_statuses
                    .as_ref()
                    .and_then(|c| c.first())
                    .is_some_and(|c| {
                        c.ready && c.state.as_ref().and_then(|s| s.running.as_ref()).is_some()
                    })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_on_three_agents_survives_killing_the_leading_server_and_the_etcd_leader() {
    assert!(
        is_root(),
        "this test runs containers with runc and must run as root"
    );
    let (pki, registry) = registry_with_web_images().await;
    let host = registry.host_port();
    let mut etcd = Etcd::start();
    let root = tempfile::tempdir().unwrap();
    let _reaper = ContainerReaper(root.path().to_path_buf());
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    let mut a = Server::start(&dir_a, &etcd);
    let client_a = a.client().await;
    copy_dir(&dir_a, &dir_b);
    let mut b = Server::start(&dir_b, &etcd);
    let client_b = b.client().await;

    // The registry's CA for every node (a RegistryHost), and its credentials as a pull secret.
    let ca_file = root.path().join("registry-ca.crt");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    let trust = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["trust", "add", "--cluster", &host, "--ca-file"])
        .arg(&ca_file)
        .arg("--kubeconfig")
        .arg(dir_a.join("admin.kubeconfig"))
        .output()
        .unwrap();
    assert!(
        trust.status.success(),
        "{}",
        String::from_utf8_lossy(&trust.stderr)
    );
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client_a.clone(), "default")
        .create(&PostParams::default(), &pull_secret(&host))
        .await
        .unwrap();

    // Which server leads the controllers decides the front's order: clients use the leader until it dies.
    let holder = eventually(60, "a controllers lease holder", || {
        let c = client_a.clone();
        async move { lease_holder(&c).await }
    })
    .await;
    let leader_is_a = holder.ends_with(&format!(":{}", a.port));
    let (leader, survivor, survivor_client) = if leader_is_a {
        (&mut a, &mut b, client_b.clone())
    } else {
        (&mut b, &mut a, client_a.clone())
    };
    assert!(holder.ends_with(&format!(":{}", leader.port)), "{holder}");
    let front_port = front(vec![leader.port, survivor.port]).await;
    let front_url = format!("https://127.0.0.1:{front_port}");
    let front_client = {
        let mut kc = Kubeconfig::read_from(dir_a.join("admin.kubeconfig")).unwrap();
        for cluster in kc.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
            cluster.server = Some(front_url.clone());
        }
        Client::try_from(
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap(),
        )
        .unwrap()
    };

    // Three agents on this machine, each with its own root, all through the front.
    let nodes = ["ha-agent-0", "ha-agent-1", "ha-agent-2"];
    let _agents: Vec<Proc> = nodes
        .iter()
        .map(|n| start_agent(n, &root.path().join(n), &front_url, &dir_a))
        .collect();
    eventually(60, "three Ready nodes", || {
        let c = survivor_client.clone();
        async move {
            let list = Api::<Node>::all(c)
                .list(&ListParams::default())
                .await
                .ok()?;
            let ready = list.items.iter().filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            (ready.count() == nodes.len()).then_some(())
        }
    })
    .await;

    // v1 runs on all three nodes.
    let (v1, v2) = (format!("{host}/team/web:v1"), format!("{host}/team/web:v2"));
    let deployments: Api<Deployment> = Api::namespaced(front_client.clone(), "default");
    deployments
        .create(&PostParams::default(), &web_deployment(&v1))
        .await
        .unwrap();
    let pods = eventually(90, "v1 running on three nodes", || {
        let c = survivor_client.clone();
        let v1 = v1.clone();
        async move { Some(web_pods(&c).await).filter(|p| all_running(p, &v1)) }
    })
    .await;
    let mut on: Vec<String> = pods
        .iter()
        .map(|p| p.spec.clone().unwrap().node_name.unwrap())
        .collect();
    on.sort();
    assert_eq!(on, nodes, "one pod per node");

    // Writes before the kills, a watch on the survivor and one through the front from before them, a writer.
    let configmaps: Api<ConfigMap> = Api::namespaced(front_client.clone(), "default");
    let start_rv = configmaps
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..20 {
        configmaps
            .create(&PostParams::default(), &config_map(&format!("before-{i}")))
            .await
            .unwrap();
    }
    let stop = Stop::default();
    let (direct, fronted) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    let watchers = [
        tokio::spawn(watch_config_maps(
            survivor_client.clone(),
            start_rv.clone(),
            stop.clone(),
            direct.clone(),
        )),
        tokio::spawn(watch_config_maps(
            front_client.clone(),
            start_rv.clone(),
            stop.clone(),
            fronted.clone(),
        )),
    ];
    let writer_stop = Stop::default();
    let writer = tokio::spawn(write_config_maps(front_client.clone(), writer_stop.clone()));

    // Roll out v2; once the first new pod is up, kill the etcd raft leader and the leading server together.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(&web_deployment(&v2)),
        )
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
    let etcd_leader = etcd.leader().await;
    etcd.kill(etcd_leader);
    leader.proc.kill();

    // The survivor's controllers take the Lease and finish the rollout; the agents moved to it through the front.
    let survivor_port = survivor.port;
    eventually(
        60,
        "the surviving server to take the controllers lease",
        || {
            let c = survivor_client.clone();
            async move {
                lease_holder(&c)
                    .await
                    .filter(|h| h.ends_with(&format!(":{survivor_port}")))
            }
        },
    )
    .await;
    let survivor_deployments: Api<Deployment> = Api::namespaced(survivor_client.clone(), "default");
    eventually(120, "the rollout to complete after the kills", || {
        let d = survivor_deployments.clone();
        async move { d.get("web").await.ok().filter(|d| rolled_out(d, REPLICAS)) }
    })
    .await;
    let pods = eventually(60, "v2 running everywhere", || {
        let c = survivor_client.clone();
        let v2 = v2.clone();
        async move { Some(web_pods(&c).await).filter(|p| all_running(p, &v2)) }
    })
    .await;
    assert_eq!(pods.len(), REPLICAS as usize, "{}", survivor.log());
    // The writer ran through the whole failover.
    writer_stop.stop();
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() >= 10,
        "the writer got {} writes acknowledged",
        acknowledged.len()
    );

    // No write is lost: everything acknowledged is stored.
    let stored: Vec<ConfigMap> = Api::namespaced(survivor_client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let stored: std::collections::BTreeSet<String> = stored
        .iter()
        .map(|c| c.name_any())
        .filter(|n| n.starts_with("before-") || n.starts_with("during-"))
        .collect();
    for name in (0..20)
        .map(|i| format!("before-{i}"))
        .chain(acknowledged.iter().cloned())
    {
        assert!(stored.contains(&name), "acknowledged write {name} lost");
    }
    // Watches resume: both saw every stored ConfigMap once, in resourceVersion order; the survivor's watch never
    // broke, the fronted one resumed on the survivor without a 410.
    eventually(30, "both watches to deliver every stored ConfigMap", || {
        let caught_up = |s: &Arc<Mutex<Seen>>| s.lock().unwrap().added.len() >= stored.len();
        let done = caught_up(&direct) && caught_up(&fronted);
        async move { done.then_some(()) }
    })
    .await;
    stop.stop();
    for watcher in watchers {
        watcher.await.unwrap();
    }
    for (what, seen) in [("survivor", &direct), ("front", &fronted)] {
        let seen = seen.lock().unwrap();
        let names: std::collections::BTreeSet<String> =
            seen.added.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, stored, "{what} watch: {seen:?}");
        assert_eq!(
            seen.added.len(),
            stored.len(),
            "{what} watch delivered duplicates"
        );
        assert!(
            seen.added.windows(2).all(|w| w[0].1 < w[1].1),
            "{what} watch out of order"
        );
        assert!(
            !seen
                .errors
                .iter()
                .any(|e| e.starts_with("410") || e.contains("too old")),
            "{what}: {:?}",
            seen.errors
        );
    }
    {
        let direct = direct.lock().unwrap();
        assert_eq!(
            (direct.starts, &direct.errors),
            (1, &Vec::new()),
            "the survivor's watch never breaks"
        );
        let fronted = fronted.lock().unwrap();
        assert!(
            fronted.starts >= 2,
            "the fronted watch resumed after the kill"
        );
        eprintln!(
            "killed etcd member m{etcd_leader} (raft leader) and the server on :{}; {} creates acknowledged during \
             the failover; {} ConfigMaps watched; the fronted watch resumed {} time(s) after: {:?}",
            leader.port,
            acknowledged.len(),
            stored.len(),
            fronted.starts - 1,
            fronted.errors
        );
    }

    // Clean up: the Deployment's pods go (garbage collection on the survivor), and so do their containers.
    survivor_deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually(60, "the web pods to be gone", || {
        let c = survivor_client.clone();
        async move { web_pods(&c).await.is_empty().then_some(()) }
    })
    .await;
    eventually(30, "the containers to stop", || {
        let root = root.path().to_path_buf();
        async move { shims_under(&root).is_empty().then_some(()) }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// Lifecycle tasks: one server sweeps; the survivor takes over.

const LEADING_LIFECYCLE: &str = "leading the lifecycle tasks";
const SWEEP: &str = "lifecycle sweep";

/// Creates namespace `name` holding a ConfigMap, deletes it and waits until the lifecycle tasks removed it.
async fn delete_namespace_with_content(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), name)
        .create(&PostParams::default(), &config_map("content"))
        .await
        .unwrap();
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(60, &format!("namespace {name} to be finalized"), || {
        let namespaces = namespaces.clone();
        async move { matches!(namespaces.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_tasks_run_on_one_server_and_move_to_the_survivor() {
    let etcd = Etcd::start();
    let root = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    let mut a = Server::start(&dir_a, &etcd);
    let client_a = a.client().await;
    copy_dir(&dir_a, &dir_b);
    let mut b = Server::start(&dir_b, &etcd);
    let client_b = b.client().await;

    let first_leads = eventually(30, "a lifecycle leader", || {
        let (la, lb) = (a.log(), b.log());
        async move {
            match (
                la.contains(LEADING_LIFECYCLE),
                lb.contains(LEADING_LIFECYCLE),
            ) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
                (true, true) => panic!("both servers lead the lifecycle tasks:\n{la}\n{lb}"),
            }
        }
    })
    .await;
    let (holder, other, other_client) = if first_leads {
        (&mut a, &mut b, client_b)
    } else {
        (&mut b, &mut a, client_a)
    };
    // Work for the tasks, asked of the server that does not run them.
    delete_namespace_with_content(&other_client, "doomed-before").await;
    assert!(
        holder.log().contains(SWEEP),
        "the leader sweeps:\n{}",
        holder.log()
    );
    let log = other.log();
    assert!(
        !log.contains(SWEEP) && !log.contains(LEADING_LIFECYCLE),
        "the other server never sweeps:\n{log}"
    );

    // The holder dies without resigning: the survivor takes over once its lease lapses, and finalizes namespaces.
    holder.proc.kill();
    let other_log = || other.log();
    eventually(40, "the survivor to lead the lifecycle tasks", || {
        let log = other_log();
        async move { log.contains(LEADING_LIFECYCLE).then_some(()) }
    })
    .await;
    delete_namespace_with_content(&other_client, "doomed-after").await;
    assert!(other.log().contains(SWEEP), "{}", other.log());
}
