//! Peer-to-peer layer sharing end to end, as root with Debian's runc: a real in-process API server, the real
//! docker-registry with TLS and htpasswd (testkit), a multi-layer image of about 30 MiB, and four agents on this
//! machine that start pods of that image at the same moment. The registry's access log must show each blob
//! served about once (at most 1.5x the image's bytes in total), every node ends with every blob verified, and
//! the blob endpoint serves registered Nodes only. This binary doubles as the detached-container shim
//! (`__shim <root> <id>`), as berth re-executes itself. Nothing is skipped: missing runc, busybox-static, skopeo
//! or docker-registry fails the run and says what to install.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{AgentConfig, CancellationToken, CrashBackoff, ShimCommand, Started};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::Digest as _;
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "p2p-canary-3e81";
const REPO: &str = "team/fleet";
const NODES: usize = 4;
const APPLETS: &[&str] = &["sh", "sleep", "true"];

fn main() {
    runtime::exit_if_shim("__shim");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tests: &[(&str, fn())] = &[
        (
            "four_agents_pulling_one_image_at_once_take_each_layer_from_the_registry_about_once",
            four_agents_pulling_one_image_at_once_take_each_layer_from_the_registry_about_once,
        ),
        (
            "a_dead_claim_is_taken_over_and_a_later_node_pulls_from_the_node_that_has_the_blobs",
            a_dead_claim_is_taken_over_and_a_later_node_pulls_from_the_node_that_has_the_blobs,
        ),
    ];
    testkit::runner::run_tests(tests);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .and_then(|u| u.parse::<u32>().ok())
        == Some(0)
}

/// Incompressible bytes (xorshift), so layer sizes are what they say.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// busybox plus three 10 MiB layers (plain tar: no time spent compressing noise).
fn fleet_image() -> testkit::image::Image {
    let mut b = ImageBuilder::new()
        .cmd(["sleep", "1000"])
        .env("PATH=/bin")
        .layer(testkit::image::busybox_rootfs(APPLETS), Compression::Gzip);
    for i in 0..3u64 {
        b = b.layer(
            vec![Entry::file(format!("data/part{i}"), noise(i + 1, 10 << 20))],
            Compression::None,
        );
    }
    b.build().unwrap()
}

struct RunningAgent {
    name: String,
    root: PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
    started: Started,
}

struct Env {
    dir: tempfile::TempDir,
    server_stop: CancellationToken,
    server: apiserver::Running,
    client: kube::Client,
    node_client: kube::Client,
    pki: TestPki,
    registry: Registry,
    image: testkit::image::Image,
}

async fn client_from(path: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

impl Env {
    async fn start() -> Env {
        assert!(is_root(), "these tests run containers and must run as root");
        let dir = tempfile::tempdir().unwrap();
        let server_stop = CancellationToken::new();
        let server = apiserver::spawn(
            apiserver::ServerConfig {
                data_dir: dir.path().join("server"),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            None,
            server_stop.clone(),
        )
        .await
        .unwrap();
        let client = client_from(&server.admin_kubeconfig).await;
        let node_kubeconfig = dir.path().join("server/node.kubeconfig");
        let node_client = if node_kubeconfig.exists() {
            client_from(&node_kubeconfig).await
        } else {
            client.clone()
        };
        let pki = TestPki::new().unwrap();
        let registry = Registry::start(
            RegistryOptions::new()
                .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
                .htpasswd([User::new("alice", PASSWORD)]),
        )
        .await
        .unwrap();
        let image = fleet_image();
        image
            .push(
                &registry,
                &format!("{REPO}:v1"),
                Some(&Credentials::new("alice", PASSWORD)),
            )
            .await
            .unwrap();
        Env {
            dir,
            server_stop,
            server,
            client,
            node_client,
            pki,
            registry,
            image,
        }
    }

    fn image_ref(&self) -> String {
        format!("{}/{REPO}:v1", self.registry.host_port())
    }

    async fn start_agent(&self, name: &str, hosts: &Path) -> RunningAgent {
        let root = self.dir.path().join(name);
        let shim = ShimCommand {
            program: std::env::current_exe().unwrap(),
            args: vec!["__shim".into()],
        };
        let mut cfg = AgentConfig::new(
            name,
            &root,
            self.node_client.clone(),
            self.server.ca_pem.clone(),
            shim,
        );
        cfg.heartbeat = Duration::from_secs(1);
        cfg.hosts_dir = Some(hosts.to_path_buf());
        cfg.tracker_sweep = Duration::from_secs(1);
        cfg.pull_backoff_initial = Duration::from_secs(1);
        cfg.pull_backoff_max = Duration::from_secs(2);
        cfg.crash_backoff = CrashBackoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(agent::run_with_ready(cfg, shutdown.clone(), tx));
        let started = match rx.await {
            Ok(s) => s,
            Err(_) => panic!("agent failed to start: {:?}", task.await),
        };
        RunningAgent {
            name: name.to_string(),
            root,
            shutdown,
            task,
            started,
        }
    }

    async fn create_pull_secret(&self) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let host = self.registry.host_port();
        let config = json!({"auths": {host: {
            "username": "alice", "password": PASSWORD, "auth": b64(&format!("alice:{PASSWORD}"))
        }}});
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&config.to_string())},
        }))
        .unwrap();
        Api::namespaced(self.client.clone(), "default")
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Config and layer blobs of the image: (digest, size).
    fn blobs(&self) -> Vec<(String, u64)> {
        self.image
            .blobs()
            .into_iter()
            .map(|(d, _)| (d.digest, d.size))
            .collect()
    }
}

/// Waits (at most 60 s) until `n` pods exist and all are Ready; the time since `started`, or what was seen.
async fn wait_ready(pods: &Api<Pod>, n: usize, started: Instant) -> Result<Duration, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let values: Vec<Value> = list
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        if values.len() == n && values.iter().all(ready) {
            return Ok(started.elapsed());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not every pod became Ready: {:#?}",
                values.iter().map(|p| &p["status"]).collect::<Vec<_>>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes every pod and waits until the agents removed them and their containers.
async fn remove_pods(pods: &Api<Pod>, agents: &[RunningAgent]) {
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let _ = pods
            .delete(&p.metadata.name.unwrap(), &DeleteParams::default())
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
        || agents.iter().any(|a| !runtime_records(&a.root).is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "pods or containers were not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The layer sources shown by a pod's pull-progress annotation, collected until `task` is aborted.
struct ProgressSources {
    task: tokio::task::JoinHandle<()>,
    /// (digest, source) of every layer of every annotation value seen; source empty while unknown.
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

/// Starts watching pod `name` (before it exists) for its `berth.dev/pull-progress` annotation.
async fn watch_progress_sources(pods: &Api<Pod>, name: &str) -> ProgressSources {
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let name = name.to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event.unwrap() else {
                continue;
            };
            if p.metadata.name.as_deref() != Some(name.as_str()) {
                continue;
            }
            let Some(raw) = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(agent::PULL_PROGRESS_ANNOTATION))
            else {
                continue;
            };
            let doc: Value = serde_json::from_str(raw).unwrap();
            let mut seen = out.lock().unwrap();
            for layer in doc["layers"].as_array().unwrap() {
                seen.push((
                    layer["digest"].as_str().unwrap().to_string(),
                    layer["source"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    });
    ProgressSources { task, seen }
}

/// A tracker's advertised nodes, sorted.
fn nodes_of(tracker: &Lease) -> Vec<String> {
    let mut nodes: Vec<String> = tracker
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(agent::BLOB_NODES_ANNOTATION))
        .map(|v| {
            v.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

fn holder_of(tracker: &Lease) -> Option<String> {
    tracker
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
}

/// Waits (at most 15 s: the agents sweep every second) until tracker `name` (None: absent) passes `ok`.
async fn wait_tracker(
    leases: &Api<Lease>,
    name: &str,
    ok: impl Fn(Option<&Lease>) -> bool,
) -> Option<Lease> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let tracker = leases.get_opt(name).await.unwrap();
        if ok(tracker.as_ref()) {
            return tracker;
        }
        assert!(
            Instant::now() < deadline,
            "tracker {name} is {:?}",
            tracker.as_ref().map(|t| (nodes_of(t), holder_of(t)))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Registry GETs answered with bytes for `digest`.
fn registry_gets(log: &[testkit::registry::AccessLogEntry], digest: &str) -> usize {
    let path = format!("/v2/{REPO}/blobs/{digest}");
    log.iter()
        .filter(|e| e.method == "GET" && e.path() == path && (200..300).contains(&e.status))
        .count()
}

fn runtime_records(root: &Path) -> Vec<runtime::ContainerState> {
    runtime::Runtime::new(root.join("runtime"))
        .unwrap()
        .records()
        .unwrap()
}

fn pod(name: &str, node: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "fleet"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "app", "image": image, "command": ["sleep", "1000"]}],
        },
    }))
    .unwrap()
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// An HTTPS client for an agent's endpoint that pins its serving certificate and presents `identity`.
fn endpoint_client(
    target: &RunningAgent,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> reqwest::Client {
    let serving = CertificateDer::from_pem_file(target.root.join("pki/serving.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(serving).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A node's own serving identity (what it presents to peers).
fn node_identity(agent: &RunningAgent) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    (
        CertificateDer::from_pem_file(agent.root.join("pki/serving.crt")).unwrap(),
        PrivateKeyDer::from_pem_file(agent.root.join("pki/serving.key")).unwrap(),
    )
}

/// A self-signed certificate that claims to be `node`'s serving certificate (not the one its Node pins).
fn impostor(node: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![node.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{node}@berth-agent"));
    let cert = params.self_signed(&key).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// The cluster CA's `berth:apiserver` client identity (allowed to read logs, not blobs).
fn apiserver_identity(env: &Env) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let pki_dir = env.dir.path().join("server/pki");
    let ca_pem = std::fs::read_to_string(pki_dir.join("ca.crt")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki_dir.join("ca.key")).unwrap())
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth:apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

fn four_agents_pulling_one_image_at_once_take_each_layer_from_the_registry_about_once() {
    rt().block_on(async {
        let env = Env::start().await;
        let hosts = env.dir.path().join("hosts");
        let host_dir = hosts.join(env.registry.host_port());
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("ca.crt"), env.pki.ca_pem()).unwrap();
        let mut agents = Vec::new();
        for i in 1..=NODES {
            agents.push(env.start_agent(&format!("node-p{i}"), &hosts).await);
        }
        env.create_pull_secret().await;

        // Every node starts its pull at the same moment.
        let image = env.image_ref();
        let started = Instant::now();
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
        let creates = agents.iter().enumerate().map(|(i, a)| {
            let (pods, p) = (pods.clone(), pod(&format!("fleet-{i}"), &a.name, &image));
            async move { pods.create(&PostParams::default(), &p).await.unwrap() }
        });
        futures::future::join_all(creates).await;
        let all_ready = wait_ready(&pods, NODES, started).await;
        // The containers go before any assertion, so a failure leaves nothing running.
        remove_pods(&pods, &agents).await;
        let fleet_time = all_ready.unwrap_or_else(|e| panic!("{e}"));

        // The registry served each blob about once.
        let blobs = env.blobs();
        let image_bytes: u64 = blobs.iter().map(|(_, s)| s).sum();
        let log = env.registry.access_log_settled().await;
        let mut served = 0u64;
        let mut per_blob = Vec::new();
        for (digest, size) in &blobs {
            let path = format!("/v2/{REPO}/blobs/{digest}");
            let gets: Vec<_> = log
                .iter()
                .filter(|e| e.method == "GET" && e.path() == path && (200..300).contains(&e.status))
                .collect();
            served += gets.iter().map(|e| e.bytes).sum::<u64>();
            per_blob.push((digest.clone(), *size, gets.len()));
        }
        println!(
            "fleet of {NODES}: all pods Ready in {fleet_time:?}; registry served {served} of {image_bytes} image bytes \
             ({:.2}x); GETs per blob: {:?}",
            served as f64 / image_bytes as f64,
            per_blob.iter().map(|(_, s, n)| (s, n)).collect::<Vec<_>>()
        );
        assert!(
            served * 2 <= image_bytes * 3,
            "the registry served {served} bytes for a {image_bytes}-byte image pulled by {NODES} nodes (at most 1.5x allowed): {per_blob:?}"
        );
        for (digest, size, gets) in &per_blob {
            if *size >= 1 << 20 {
                assert!(*gets >= 1 && *gets <= 2, "blob {digest} fetched {gets} times from the registry");
            }
        }

        // Every node holds every blob, verified, and trackers advertise the nodes that have them.
        for a in &agents {
            let store = content::Store::open(a.root.join(content::CONTENT_DIR)).unwrap();
            for (digest, _) in &blobs {
                let d: oci::Digest = digest.parse().unwrap();
                store.verify(&d).unwrap_or_else(|e| panic!("{}: {e}", a.name));
            }
        }
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), agent::CLAIM_NAMESPACE);
        let (_, big) = blobs.iter().max_by_key(|(_, s)| *s).map(|(d, s)| (s, d)).unwrap();
        let big_digest: oci::Digest = big.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tracker = leases.get(&agent::tracker_name(&big_digest)).await.unwrap();
            let listed = tracker
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(agent::BLOB_NODES_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let holder = tracker.spec.and_then(|s| s.holder_identity);
            if listed.split(',').filter(|n| !n.is_empty()).count() == NODES && holder.is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the tracker of {big} lists {listed:?} (holder {holder:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The blob endpoint: a registered node reads ranges; anyone else is refused.
        let (a1, a2) = (&agents[0], &agents[1]);
        let url = format!("https://{}/blobs/{big}", a1.started.listen);
        let expected = env
            .image
            .blobs()
            .into_iter()
            .find(|(d, _)| d.digest == *big)
            .map(|(_, b)| b)
            .unwrap();
        let peer = endpoint_client(a1, Some(node_identity(a2)));
        let resp = peer
            .get(&url)
            .header("Range", "bytes=1000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 206);
        assert_eq!(
            resp.headers()["content-range"].to_str().unwrap(),
            format!("bytes 1000-{}/{}", expected.len() - 1, expected.len())
        );
        let body = resp.bytes().await.unwrap();
        assert!(body[..] == expected[1000..], "a peer reads the exact bytes");
        let full = peer.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&full))),
            *big
        );
        let missing = format!("https://{}/blobs/sha256:{}", a1.started.listen, "0".repeat(64));
        assert_eq!(peer.get(&missing).send().await.unwrap().status().as_u16(), 404);
        let bad = format!("https://{}/blobs/sha256:xyz", a1.started.listen);
        assert_eq!(peer.get(&bad).send().await.unwrap().status().as_u16(), 400);

        for (who, identity) in [
            ("an impostor of node-p2", impostor(&a2.name)),
            ("the API server", apiserver_identity(&env)),
        ] {
            let resp = endpoint_client(a1, Some(identity))
                .get(&url)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 403, "{who} must not read blobs");
            let text = resp.text().await.unwrap();
            assert!(text.contains("subresource=blobs"), "{text}");
        }
        // A node may read blobs but not logs.
        let logs = format!("https://{}/containerLogs/default/any/app", a1.started.listen);
        assert_eq!(peer.get(&logs).send().await.unwrap().status().as_u16(), 403);
        // Without a client certificate there is no connection at all.
        assert!(endpoint_client(a1, None).get(&url).send().await.is_err());

        for a in agents {
            a.shutdown.cancel();
            a.task.await.unwrap().unwrap();
        }
        env.server_stop.cancel();
        let _ = env.server.task.await;
    });
}

fn a_dead_claim_is_taken_over_and_a_later_node_pulls_from_the_node_that_has_the_blobs() {
    rt().block_on(async {
        let env = Env::start().await;
        let hosts = env.dir.path().join("hosts");
        let host_dir = hosts.join(env.registry.host_port());
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("ca.crt"), env.pki.ca_pem()).unwrap();
        env.create_pull_secret().await;
        // The largest layer's tracker: claimed by a node that died, advertising a node that left.
        let blobs = env.blobs();
        let (big, _) = blobs.iter().max_by_key(|(_, s)| *s).unwrap().clone();
        let big_digest: oci::Digest = big.parse().unwrap();
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), agent::CLAIM_NAMESPACE);
        let stale: Lease = serde_json::from_value(json!({
            "metadata": {"name": agent::tracker_name(&big_digest), "namespace": agent::CLAIM_NAMESPACE,
                         "annotations": {agent::BLOB_NODES_ANNOTATION: "node-ghost"}},
            "spec": {"holderIdentity": "node-gone", "leaseDurationSeconds": 10,
                     "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0},
        }))
        .unwrap();
        leases.create(&PostParams::default(), &stale).await.unwrap();

        let image = env.image_ref();
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
        let mut agents = vec![env.start_agent("node-p1", &hosts).await];
        pods.create(&PostParams::default(), &pod("first", "node-p1", &image))
            .await
            .unwrap();
        let first = wait_ready(&pods, 1, Instant::now()).await;
        // A node that joins later takes every blob from node-p1, not from the registry, and its pod's pull
        // progress names node-p1 as the source of each layer.
        agents.push(env.start_agent("node-p2", &hosts).await);
        let sources = watch_progress_sources(&pods, "second").await;
        let second = match first {
            Ok(_) => {
                pods.create(&PostParams::default(), &pod("second", "node-p2", &image))
                    .await
                    .unwrap();
                wait_ready(&pods, 2, Instant::now()).await
            }
            Err(e) => Err(e),
        };
        sources.task.abort();
        remove_pods(&pods, &agents).await;
        let second_time = second.unwrap_or_else(|e| panic!("{e}"));
        let seen = sources.seen.lock().unwrap().clone();
        let layers = env.image.blobs().len() - 1;
        let named: Vec<&(String, String)> = seen.iter().filter(|(_, s)| !s.is_empty()).collect();
        assert!(
            !named.is_empty() && named.iter().all(|(_, s)| s == "peer:node-p1"),
            "the pull progress of the second pod ({layers} layers, Ready after {second_time:?}) showed sources {seen:?}"
        );

        let log = env.registry.access_log_settled().await;
        for (digest, _) in &blobs {
            assert_eq!(registry_gets(&log, digest), 1, "registry GETs of {digest}");
        }
        // node-p1 took the dead claim over once; both nodes are advertised, and node-ghost (no Node object)
        // was swept away.
        let name = agent::tracker_name(&big_digest);
        let tracker = wait_tracker(&leases, &name, |t| {
            t.is_some_and(|t| nodes_of(t) == ["node-p1", "node-p2"] && holder_of(t).is_none())
        })
        .await;
        assert_eq!(
            tracker.unwrap().spec.unwrap().lease_transitions,
            Some(1),
            "node-p1 took the claim over once"
        );

        // The blob goes from node-p2's store (as `berth rmi` does): node-p2 drops itself from the tracker.
        let remove_blob = |a: &RunningAgent| {
            let store = content::Store::open(a.root.join(content::CONTENT_DIR)).unwrap();
            assert!(store.delete(&big_digest).unwrap(), "{} had the blob", a.name);
        };
        remove_blob(&agents[1]);
        wait_tracker(&leases, &name, |t| {
            t.is_some_and(|t| nodes_of(t) == ["node-p1"])
        })
        .await;
        // And from node-p1's: nobody has it or claims it, so the tracker is deleted.
        remove_blob(&agents[0]);
        wait_tracker(&leases, &name, |t| t.is_none()).await;
        // The other blobs' trackers stay: both nodes still have them.
        for (digest, _) in blobs.iter().filter(|(d, _)| *d != big) {
            let d: oci::Digest = digest.parse().unwrap();
            let t = leases.get(&agent::tracker_name(&d)).await.unwrap();
            assert_eq!(nodes_of(&t).len(), 2, "tracker of {digest}");
        }
        for a in agents {
            a.shutdown.cancel();
            a.task.await.unwrap().unwrap();
        }
        env.server_stop.cancel();
        let _ = env.server.task.await;
    });
}
