//! The node agent end to end, as root with Debian's runc: a real in-process API server (`apiserver::spawn`), the
//! real docker-registry with TLS and htpasswd (testkit), an image built in code around the host's static
//! busybox and pushed with skopeo, and the agent itself with short back-offs. This binary doubles as the
//! detached-container shim (`__shim <root> <id>`), as berth re-executes itself. Nothing is skipped: missing runc,
//! busybox-static, skopeo or docker-registry fails the run and says what to install.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{AgentConfig, CancellationToken, CrashBackoff, ShimCommand, Started};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use testkit::image::{Compression, Credentials, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "agent-canary-51c2";
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "nc", "hostname", "true", "false",
];

fn main() {
    runtime::exit_if_shim("__shim");
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::var_os("AGENT_TEST_LOG").is_some() {
        tracing_subscriber_init();
    }
    let tests: &[(&str, fn())] = &[
        (
            "a_pod_with_pull_secrets_runs_serves_its_log_and_is_deleted",
            a_pod_with_pull_secrets_runs_serves_its_log_and_is_deleted,
        ),
        (
            "restart_never_with_exit_3_fails_with_reason_error",
            restart_never_with_exit_3_fails_with_reason_error,
        ),
        (
            "a_crashing_container_goes_into_crash_loop_back_off",
            a_crashing_container_goes_into_crash_loop_back_off,
        ),
        (
            "a_registry_host_object_heals_an_unknown_ca_pull_without_restart",
            a_registry_host_object_heals_an_unknown_ca_pull_without_restart,
        ),
        (
            "a_restarted_agent_readopts_running_containers",
            a_restarted_agent_readopts_running_containers,
        ),
        (
            "two_agents_share_a_machine_and_pod_containers_share_localhost",
            two_agents_share_a_machine_and_pod_containers_share_localhost,
        ),
        (
            "twenty_pods_of_one_image_start_in_parallel_with_one_runc_process_each",
            twenty_pods_of_one_image_start_in_parallel_with_one_runc_process_each,
        ),
    ];
    testkit::runner::run_tests(tests);
}

fn tracing_subscriber_init() {
    // Plain stderr logging of the agent when debugging a failure (AGENT_TEST_LOG=1).
    struct Stderr;
    impl tracing::Subscriber for Stderr {
        fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
            *m.level() <= tracing::Level::INFO
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, e: &tracing::Event<'_>) {
            struct V(String);
            impl tracing::field::Visit for V {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push_str(&format!(" {}={:?}", f.name(), v));
                }
            }
            let mut v = V(String::new());
            e.record(&mut v);
            eprintln!(
                "[{}] {}{}",
                e.metadata().level(),
                e.metadata().target(),
                v.0
            );
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let _ = tracing::subscriber::set_global_default(Stderr);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn is_root() -> bool {
    nix_geteuid() == 0
}

fn nix_geteuid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

fn busybox_image() -> testkit::image::Image {
    let entries = testkit::image::busybox_rootfs(APPLETS);
    ImageBuilder::new()
        .cmd(["sh", "-c", "echo image-default-command; sleep 1000"])
        .env("PATH=/bin")
        .layer(entries, Compression::Gzip)
        .build()
        .unwrap()
}

/// A private registry (TLS with its own CA, htpasswd) holding `team/busybox:v1`.
struct PrivateRegistry {
    pki: TestPki,
    registry: Registry,
}

impl PrivateRegistry {
    async fn start() -> PrivateRegistry {
        let pki = TestPki::new().unwrap();
        let registry = Registry::start(
            RegistryOptions::new()
                .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
                .htpasswd([User::new("alice", PASSWORD)]),
        )
        .await
        .unwrap();
        busybox_image()
            .push(
                &registry,
                "team/busybox:v1",
                Some(&Credentials::new("alice", PASSWORD)),
            )
            .await
            .unwrap();
        PrivateRegistry { pki, registry }
    }

    fn image(&self) -> String {
        format!("{}/team/busybox:v1", self.registry.host_port())
    }
}

struct Agent {
    root: PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
    started: Started,
}

impl Agent {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

struct Env {
    dir: tempfile::TempDir,
    server_stop: CancellationToken,
    server: apiserver::Running,
    client: kube::Client,
    node_client: kube::Client,
    registry: PrivateRegistry,
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
        let registry = PrivateRegistry::start().await;
        Env {
            dir,
            server_stop,
            server,
            client,
            node_client,
            registry,
        }
    }

    /// A node-local hosts dir trusting `ca_pem` for `host_port` (certs.d layout).
    fn hosts_dir(&self, name: &str, host_port: &str, ca_pem: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(d.join(host_port)).unwrap();
        std::fs::write(d.join(host_port).join("ca.crt"), ca_pem).unwrap();
        d
    }

    fn config(&self, node: &str, root: &Path, hosts_dir: Option<PathBuf>) -> AgentConfig {
        let shim = ShimCommand {
            program: std::env::current_exe().unwrap(),
            args: vec!["__shim".into()],
        };
        let mut cfg = AgentConfig::new(
            node,
            root,
            self.node_client.clone(),
            self.server.ca_pem.clone(),
            shim,
        );
        cfg.heartbeat = Duration::from_secs(1);
        cfg.hosts_dir = hosts_dir;
        cfg.pull_backoff_initial = Duration::from_secs(1);
        cfg.pull_backoff_max = Duration::from_secs(2);
        cfg.crash_backoff = CrashBackoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        cfg
    }

    async fn start_agent(&self, cfg: AgentConfig) -> Agent {
        let root = cfg.root.clone();
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(agent::run_with_ready(cfg, shutdown.clone(), tx));
        let started = match rx.await {
            Ok(s) => s,
            Err(_) => panic!("agent failed to start: {:?}", task.await),
        };
        Agent {
            root,
            shutdown,
            task,
            started,
        }
    }

    async fn create_pull_secret(&self, ns: &str, name: &str) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let host = self.registry.registry.host_port();
        let config = json!({"auths": {host: {
            "username": "alice", "password": PASSWORD, "auth": b64(&format!("alice:{PASSWORD}"))
        }}});
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&config.to_string())},
        }))
        .unwrap();
        Api::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    async fn create_pod(&self, pod: Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        Api::namespaced(self.client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    /// Delete every pod and wait until the agent removed them (and their containers under `root`).
    async fn delete_pods(&self, root: &Path) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        for p in api.list(&ListParams::default()).await.unwrap().items {
            let name = p.metadata.name.unwrap();
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            || !runtime_records(root).is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "pods or containers were not removed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) {
        self.server_stop.cancel();
        let _ = self.server.task.await;
    }
}

fn pod_json(name: &str, node: &str, image: &str, command: &[&str], policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 2,
            "imagePullSecrets": [{"name": "myregistrykey"}],
            "containers": [{"name": "app", "image": image, "command": command, "env": [{"name": "GREETING", "value": "hello"}]}],
        },
    })
}

/// Poll the pod until `f` holds (or fail with the last status after `timeout`).
async fn wait_pod(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(p) = api.get(name).await {
            last = serde_json::to_value(&p).unwrap();
            if f(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "pod {name} did not reach the wanted state in {timeout:?}; last: {}",
        serde_json::to_string_pretty(&last["status"]).unwrap()
    );
}

fn condition<'a>(pod: &'a Value, kind: &str) -> &'a Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

async fn events_of(client: &kube::Client, pod: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// An HTTPS client for the agent's endpoint: it trusts the agent's self-signed serving certificate (as the API
/// server pins it) and presents a client certificate of CN `cn` signed by the cluster CA.
fn log_client(env: &Env, root: &Path, cn: &str) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject;
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
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let serving =
        rustls_pki_types::CertificateDer::from_pem_file(root.join("pki/serving.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(serving).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_log(env: &Env, agent: &Agent, path_and_query: &str) -> (u16, String) {
    let url = format!("https://{}{path_and_query}", agent.started.listen);
    let resp = log_client(env, &agent.root, "berth:apiserver")
        .get(url)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

fn runtime_records(root: &Path) -> Vec<runtime::ContainerState> {
    runtime::Runtime::new(root.join("runtime"))
        .unwrap()
        .records()
        .unwrap()
}

fn a_pod_with_pull_secrets_runs_serves_its_log_and_is_deleted() {
    rt().block_on(async {
        let env = Env::start().await;
        let host = env.registry.registry.host_port();
        let hosts = env.hosts_dir("hosts", &host, env.registry.pki.ca_pem());
        let root = env.dir.path().join("node-a");
        let agent = env
            .start_agent(env.config("node-a", &root, Some(hosts)))
            .await;

        // The node registers with its endpoint, fingerprint and Ready condition, and heartbeats.
        let nodes: Api<Node> = Api::all(env.client.clone());
        let node = serde_json::to_value(nodes.get("node-a").await.unwrap()).unwrap();
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            agent.started.listen.port()
        );
        assert_eq!(
            node["metadata"]["annotations"][agent::SERVING_CERT_ANNOTATION],
            agent.started.serving_cert_sha256
        );
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/hostname"],
            "node-a"
        );
        assert!(
            node["status"]["nodeInfo"]["containerRuntimeVersion"]
                .as_str()
                .unwrap()
                .starts_with("runc://")
        );
        assert_eq!(
            node["status"]["nodeInfo"]["kubeletVersion"],
            agent::KUBELET_VERSION
        );
        let ready = condition(&node, "Ready").clone();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "kubelet is posting ready status");
        let first_beat = ready["lastHeartbeatTime"].clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let n = serde_json::to_value(nodes.get("node-a").await.unwrap()).unwrap();
            if condition(&n, "Ready")["lastHeartbeatTime"] != first_beat {
                break;
            }
            assert!(Instant::now() < deadline, "the heartbeat never moved");
        }

        env.create_pull_secret("default", "myregistrykey").await;
        let image = env.registry.image();
        env.create_pod(pod_json(
            "web",
            "node-a",
            &image,
            &["sh", "-c", "echo $GREETING from-pod; hostname; sleep 1000"],
            "Always",
        ))
        .await;
        let pod = wait_pod(&env.client, "web", Duration::from_secs(60), |p| {
            p["status"]["phase"] == "Running" && condition(p, "Ready")["status"] == "True"
        })
        .await;
        let cs = &pod["status"]["containerStatuses"][0];
        assert!(
            cs["containerID"].as_str().unwrap().starts_with("runc://"),
            "{cs}"
        );
        assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"), "{cs}");
        assert_eq!(cs["image"], image);
        assert_eq!(cs["ready"], true);
        assert_eq!(cs["restartCount"], 0);
        assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
        assert!(
            pod["metadata"]["annotations"]
                .get(agent::PULL_PROGRESS_ANNOTATION)
                .is_none(),
            "the pull progress annotation is removed once the pull ended"
        );
        assert!(pod["status"]["startTime"].is_string());
        for kind in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "PodScheduled",
        ] {
            assert_eq!(condition(&pod, kind)["status"], "True", "{kind}");
        }
        let events = events_of(&env.client, "web").await;
        for (reason, text) in [
            ("Created", "Created container: app"),
            ("Started", "Started container app"),
        ] {
            assert!(
                events.iter().any(|(r, m)| r == reason && m == text),
                "{events:?}"
            );
        }
        assert!(events.iter().any(|(r, _)| r == "Pulled"), "{events:?}");
        assert!(!events.iter().any(|(_, m)| m.contains(PASSWORD)));

        // The log through the agent's endpoint (client certificate of the API server).
        let mut log = String::new();
        for _ in 0..50 {
            let (code, body) = get_log(&env, &agent, "/containerLogs/default/web/app").await;
            assert_eq!(code, 200, "{body}");
            log = body;
            if log.contains("web\n") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(log, "hello from-pod\nweb\n");
        let (code, body) = get_log(
            &env,
            &agent,
            "/containerLogs/default/web/app?timestamps=true&tailLines=1",
        )
        .await;
        assert_eq!(code, 200);
        assert!(
            body.ends_with("Z web\n") && body.lines().count() == 1,
            "{body}"
        );
        let (code, body) =
            get_log(&env, &agent, "/containerLogs/default/web/app?previous=true").await;
        assert_eq!(
            (code, body.as_str()),
            (
                400,
                "previous terminated container \"app\" in pod \"web\" not found"
            )
        );
        let (code, body) = get_log(&env, &agent, "/containerLogs/default/nope/app").await;
        assert_eq!((code, body.as_str()), (404, "pod \"nope\" does not exist"));
        // Any other client identity is refused.
        let url = format!(
            "https://{}/containerLogs/default/web/app",
            agent.started.listen
        );
        let resp = log_client(&env, &root, "mallory").get(url).send().await;
        match resp {
            Ok(r) => assert_eq!(r.status().as_u16(), 403),
            Err(e) => panic!("a foreign client certificate must get a 403, got {e}"),
        }

        // Deletion: stop within the grace period, remove the containers, then the pod disappears.
        let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
        api.delete("web", &DeleteParams::default()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.get_opt("web").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the pod was never deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(runtime_records(&root).is_empty(), "containers left behind");
        assert!(
            std::fs::read_dir(root.join("netns"))
                .unwrap()
                .next()
                .is_none(),
            "sandbox left behind"
        );
        let events = events_of(&env.client, "web").await;
        assert!(
            events
                .iter()
                .any(|(r, m)| r == "Killing" && m == "Stopping container app"),
            "{events:?}"
        );

        agent.stop().await;
        env.stop().await;
    });
}

fn restart_never_with_exit_3_fails_with_reason_error() {
    rt().block_on(async {
        let env = Env::start().await;
        let host = env.registry.registry.host_port();
        let hosts = env.hosts_dir("hosts", &host, env.registry.pki.ca_pem());
        let root = env.dir.path().join("node-b");
        let agent = env
            .start_agent(env.config("node-b", &root, Some(hosts)))
            .await;
        env.create_pull_secret("default", "myregistrykey").await;
        env.create_pod(pod_json(
            "once",
            "node-b",
            &env.registry.image(),
            &["sh", "-c", "echo bye; exit 3"],
            "Never",
        ))
        .await;
        let pod = wait_pod(&env.client, "once", Duration::from_secs(60), |p| {
            p["status"]["phase"] == "Failed"
        })
        .await;
        let t = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(t["exitCode"], 3, "{t}");
        assert_eq!(t["reason"], "Error");
        assert!(t["startedAt"].is_string() && t["finishedAt"].is_string());
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
        assert_eq!(condition(&pod, "Ready")["reason"], "PodCompleted");
        // Never: no restart happens later either.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(runtime_records(&root).len(), 1);
        let (code, body) = get_log(&env, &agent, "/containerLogs/default/once/app").await;
        assert_eq!((code, body.as_str()), (200, "bye\n"));
        env.delete_pods(&root).await;
        agent.stop().await;
        env.stop().await;
    });
}

fn a_crashing_container_goes_into_crash_loop_back_off() {
    rt().block_on(async {
        let env = Env::start().await;
        let host = env.registry.registry.host_port();
        let hosts = env.hosts_dir("hosts", &host, env.registry.pki.ca_pem());
        let root = env.dir.path().join("node-c");
        let agent = env
            .start_agent(env.config("node-c", &root, Some(hosts)))
            .await;
        env.create_pull_secret("default", "myregistrykey").await;
        let created = env
            .create_pod(pod_json(
                "crash",
                "node-c",
                &env.registry.image(),
                &["sh", "-c", "echo crashing; exit 1"],
                "Always",
            ))
            .await;
        let uid = created.metadata.uid.unwrap();
        let pod = wait_pod(&env.client, "crash", Duration::from_secs(60), |p| {
            let cs = &p["status"]["containerStatuses"][0];
            cs["restartCount"].as_u64().unwrap_or(0) >= 2
                && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
        let cs = &pod["status"]["containerStatuses"][0];
        let message = cs["state"]["waiting"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("back-off ")
                && message.ends_with(&format!(
                    "restarting failed container=app pod=crash_default({uid})"
                )),
            "{message}"
        );
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(pod["status"]["phase"], "Running");
        assert_eq!(condition(&pod, "Ready")["status"], "False");
        let events = events_of(&env.client, "crash").await;
        let backoff =
            format!("Back-off restarting failed container app in pod crash_default({uid})");
        assert!(
            events.iter().any(|(r, m)| r == "BackOff" && m == &backoff),
            "{events:?}"
        );
        let (code, body) = get_log(
            &env,
            &agent,
            "/containerLogs/default/crash/app?previous=true",
        )
        .await;
        assert_eq!((code, body.as_str()), (200, "crashing\n"));
        // The restart count keeps growing with the back-off.
        let count = cs["restartCount"].as_u64().unwrap();
        wait_pod(&env.client, "crash", Duration::from_secs(30), |p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_u64()
                .unwrap_or(0)
                > count
        })
        .await;
        // Old instances are collected: at most the current and the previous one remain.
        assert!(runtime_records(&root).len() <= 2);
        env.delete_pods(&root).await;
        agent.stop().await;
        env.stop().await;
    });
}

fn a_registry_host_object_heals_an_unknown_ca_pull_without_restart() {
    rt().block_on(async {
        let env = Env::start().await;
        let root = env.dir.path().join("node-d");
        // No node-local trust: the registry's CA is unknown.
        let agent = env.start_agent(env.config("node-d", &root, None)).await;
        env.create_pull_secret("default", "myregistrykey").await;
        env.create_pod(pod_json("trusty", "node-d", &env.registry.image(), &["sh", "-c", "echo trusted; sleep 1000"], "Always"))
            .await;
        let pod = wait_pod(&env.client, "trusty", Duration::from_secs(60), |p| {
            let r = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
            r == "ImagePullBackOff" || r == "ErrImagePull"
        })
        .await;
        let message = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(&env.registry.registry.host_port()), "{message}");
        let rh: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "berth.dev/v1", "kind": "RegistryHost",
            "metadata": {"name": "test-registry"},
            "spec": {"host": env.registry.registry.host_port(), "caBundle": env.registry.pki.ca_pem()},
        }))
        .unwrap();
        let ar = kube::api::ApiResource {
            group: "berth.dev".into(),
            version: "v1".into(),
            api_version: "berth.dev/v1".into(),
            kind: "RegistryHost".into(),
            plural: "registryhosts".into(),
        };
        Api::<kube::api::DynamicObject>::all_with(env.client.clone(), &ar)
            .create(&PostParams::default(), &rh)
            .await
            .unwrap();
        let pod = wait_pod(&env.client, "trusty", Duration::from_secs(60), |p| p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"][0]["ready"] == true)
        .await;
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
        let folder = root.join(agent::CLUSTER_HOSTS_DIR).join(env.registry.registry.host_port());
        assert!(folder.join("hosts.toml").exists() && folder.join("ca.crt").exists());
        // Deleting the object removes the folder.
        Api::<kube::api::DynamicObject>::all_with(env.client.clone(), &ar)
            .delete("test-registry", &DeleteParams::default())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while folder.exists() {
            assert!(Instant::now() < deadline, "the trust folder was not removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env.delete_pods(&root).await;
        agent.stop().await;
        env.stop().await;
    });
}

fn a_restarted_agent_readopts_running_containers() {
    rt().block_on(async {
        let env = Env::start().await;
        let host = env.registry.registry.host_port();
        let hosts = env.hosts_dir("hosts", &host, env.registry.pki.ca_pem());
        let root = env.dir.path().join("node-e");
        let agent = env
            .start_agent(env.config("node-e", &root, Some(hosts.clone())))
            .await;
        env.create_pull_secret("default", "myregistrykey").await;
        env.create_pod(pod_json(
            "keep",
            "node-e",
            &env.registry.image(),
            &["sh", "-c", "echo kept; sleep 1000"],
            "Always",
        ))
        .await;
        let before = wait_pod(&env.client, "keep", Duration::from_secs(60), |p| {
            p["status"]["phase"] == "Running"
        })
        .await;
        let id = before["status"]["containerStatuses"][0]["containerID"].clone();
        agent.stop().await;
        let records = runtime_records(&root);
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].status,
            runtime::Status::Running,
            "the agent's stop leaves containers running"
        );
        let agent = env
            .start_agent(env.config("node-e", &root, Some(hosts)))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = wait_pod(&env.client, "keep", Duration::from_secs(10), |p| {
            p["status"]["phase"] == "Running"
        })
        .await;
        assert_eq!(after["status"]["containerStatuses"][0]["containerID"], id);
        assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
        assert_eq!(runtime_records(&root).len(), 1);
        let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
        api.delete("keep", &DeleteParams::default()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.get_opt("keep").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the pod was never deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        agent.stop().await;
        env.stop().await;
    });
}

fn two_agents_share_a_machine_and_pod_containers_share_localhost() {
    rt().block_on(async {
        let env = Env::start().await;
        let host = env.registry.registry.host_port();
        let hosts = env.hosts_dir("hosts", &host, env.registry.pki.ca_pem());
        let (root1, root2) = (env.dir.path().join("node-f1"), env.dir.path().join("node-f2"));
        let a1 = env.start_agent(env.config("node-f1", &root1, Some(hosts.clone()))).await;
        let a2 = env.start_agent(env.config("node-f2", &root2, Some(hosts))).await;
        assert_ne!(a1.started.listen.port(), a2.started.listen.port());
        assert_ne!(a1.started.serving_cert_sha256, a2.started.serving_cert_sha256);
        env.create_pull_secret("default", "myregistrykey").await;
        let image = env.registry.image();
        env.create_pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pair", "namespace": "default"},
            "spec": {
                "nodeName": "node-f2",
                "terminationGracePeriodSeconds": 1,
                "imagePullSecrets": [{"name": "myregistrykey"}],
                "containers": [
                    {"name": "server", "image": image,
                     "command": ["sh", "-c", "while true; do echo pong | nc -l -p 8080; done"]},
                    {"name": "client", "image": image,
                     "command": ["sh", "-c", "until nc 127.0.0.1 8080; do sleep 0.2; done; sleep 1000"]},
                ],
            },
        }))
        .await;
        wait_pod(&env.client, "pair", Duration::from_secs(60), |p| {
            condition(p, "Ready")["status"] == "True"
        })
        .await;
        let mut log = String::new();
        for _ in 0..100 {
            log = get_log(&env, &a2, "/containerLogs/default/pair/client").await.1;
            if log.contains("pong") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(log, "pong\n", "the client reached the server over the pod's loopback");
        // The pod belongs to node-f2: node-f1 neither runs nor serves it.
        assert!(runtime_records(&root1).is_empty());
        let (code, _) = get_log(&env, &a1, "/containerLogs/default/pair/client").await;
        assert_eq!(code, 404);
        env.delete_pods(&root2).await;
        a1.stop().await;
        a2.stop().await;
        env.stop().await;
    });
}

/// The largest number of `[from, to]` windows that contain one instant.
fn max_overlap(windows: &[(time::OffsetDateTime, time::OffsetDateTime)]) -> usize {
    windows
        .iter()
        .map(|(at, _)| {
            windows
                .iter()
                .filter(|(from, to)| from <= at && at <= to)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn twenty_pods_of_one_image_start_in_parallel_with_one_runc_process_each() {
    rt().block_on(async {
        let env = Env::start().await;
        let host = env.registry.registry.host_port();
        let hosts = env.hosts_dir("hosts", &host, env.registry.pki.ca_pem());
        let root = env.dir.path().join("node-g");
        // The agent's runc logs every subcommand it is asked for, then runs the real one.
        let runc_log = env.dir.path().join("runc-calls.log");
        let wrapper = env.dir.path().join("runc-wrapper");
        let real = runtime::runc::find_runc(None).unwrap();
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
                runc_log.display(),
                real.display()
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut cfg = env.config("node-g", &root, Some(hosts));
        cfg.runc = Some(wrapper);
        let agent = env.start_agent(cfg).await;
        env.create_pull_secret("default", "myregistrykey").await;
        let names: Vec<String> = (0..20).map(|i| format!("many-{i}")).collect();
        for name in &names {
            let mut pod = pod_json(
                name,
                "node-g",
                &env.registry.image(),
                &["sleep", "1000"],
                "Always",
            );
            pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
            env.create_pod(pod).await;
        }
        for name in &names {
            let pod = wait_pod(&env.client, name, Duration::from_secs(120), |p| {
                p["status"]["phase"] == "Running"
            })
            .await;
            assert_eq!(condition(&pod, "Ready")["status"], "True", "{name}");
        }
        let records = runtime_records(&root);
        assert_eq!(records.len(), 20);
        let windows: Vec<_> = records
            .iter()
            .map(|r| {
                assert_eq!(r.status, runtime::Status::Running, "{}", r.name);
                assert!(r.pid_start.is_some(), "{} names its process", r.name);
                (
                    r.created,
                    r.started.expect("a running container has a start time"),
                )
            })
            .collect();
        // Serial creation and start would leave every window alone; the workers start their pods together.
        let overlap = max_overlap(&windows);
        assert!(
            overlap >= 2,
            "the 20 create-to-start windows never overlap: {windows:?}"
        );
        // Liveness of running containers comes from /proc: nothing spawned `runc state` on the way to Running.
        let calls = std::fs::read_to_string(&runc_log).unwrap_or_default();
        let count = |sub: &str| {
            calls
                .lines()
                .filter(|l| l.split_whitespace().any(|w| w == sub))
                .count()
        };
        assert_eq!(count("state"), 0, "runc state was run:\n{calls}");
        // Each container is created and started by one `runc run --detach`, not `create` + `start`.
        assert_eq!(
            (count("run"), count("create"), count("start")),
            (20, 0, 0),
            "runc calls:\n{calls}"
        );
        env.delete_pods(&root).await;
        agent.stop().await;
        env.stop().await;
    });
}
