//! `pods/log` end to end: a small real HTTPS node agent inside the test (axum behind tokio-rustls) that requires
//! a client certificate chaining to the cluster CA with CN `berth:apiserver`, serves known logs and kubelet's
//! error texts, and records every query it gets. The API server must find it from the Node (InternalIP, port,
//! pinned serving-cert SHA-256), pass the user's parameters through, stream `follow` unbuffered, resolve the
//! container as upstream, relay the agent's errors, and refuse an agent whose certificate does not match the pin.
//! Driven with kube-rs and with the real `kubectl logs` / `kubectl logs -f`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

#[path = "common/kubectl.rs"]
mod kubectl;

/// What the test agent saw and how it behaves.
#[derive(Default)]
struct AgentState {
    /// `path?query` of every request, in order.
    requests: Mutex<Vec<String>>,
    /// CN of every accepted client certificate.
    client_cns: Mutex<Vec<String>>,
    /// Released by the test to let the `slow` follow stream continue.
    proceed: Notify,
}

struct TestAgent {
    addr: SocketAddr,
    /// Lowercase hex SHA-256 of the serving certificate's DER.
    fingerprint: String,
    state: Arc<AgentState>,
    task: tokio::task::JoinHandle<()>,
}

async fn container_logs(
    State(state): State<Arc<AgentState>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("/containerLogs/{ns}/{pod}/{container}?{query}"));
    let follow = query.split('&').any(|p| p == "follow=true");
    let previous = query.split('&').any(|p| p == "previous=true");
    match (pod.as_str(), container.as_str()) {
        ("web", "app") if previous => (
            StatusCode::BAD_REQUEST,
            "previous terminated container \"app\" in pod \"web\" not found",
        )
            .into_response(),
        ("web", "app") if follow => {
            // Two lines with a pause between them, then the end (the container exited).
            let stream = futures::stream::iter(0..2).then(|i| async move {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Ok::<_, std::io::Error>(format!("tick {}\n", i + 1))
            });
            Body::from_stream(stream).into_response()
        }
        ("web", "app") => "line 1\nline 2\n".into_response(),
        ("web", "slow") => {
            let state = state.clone();
            let stream = futures::stream::iter(0..2).then(move |i| {
                let state = state.clone();
                async move {
                    if i > 0 {
                        state.proceed.notified().await;
                    }
                    Ok::<_, std::io::Error>(if i == 0 { "first\n" } else { "second\n" })
                }
            });
            Body::from_stream(stream).into_response()
        }
        ("web", "waiting") => (
            StatusCode::BAD_REQUEST,
            "container \"waiting\" in pod \"web\" is waiting to start: ContainerCreating",
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            format!("pod \"{ns}/{pod}\" is not known to this node"),
        )
            .into_response(),
    }
}

fn cn_of(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Starts the test agent on 127.0.0.1: client certificates must chain to `cluster_ca_pem` and name
/// `berth:apiserver`.
async fn start_agent(cluster_ca_pem: &str) -> TestAgent {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let fingerprint = hex::encode(Sha256::digest(cert.der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cluster_ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let state = Arc::new(AgentState::default());
    let router = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let st = state.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            let st = st.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                let cn = cn_of(&peer);
                st.client_cns.lock().unwrap().push(cn.clone());
                if cn != "berth:apiserver" {
                    return;
                }
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TestAgent {
        addr,
        fingerprint,
        state,
        task,
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    shutdown: apiserver::CancellationToken,
    running: apiserver::Running,
    client: Client,
    agent: TestAgent,
}

/// A server, the test agent registered as node `n1`, and pod `web` (containers app, slow, waiting) bound to it.
async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = apiserver::spawn(config, None, shutdown.clone())
        .await
        .unwrap();
    let agent = start_agent(&running.ca_pem).await;
    let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(cfg).unwrap();
    register_node(&client, "n1", agent.addr, &agent.fingerprint).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "n1", "containers": [
            {"name": "app", "image": "r.example.com/app:1"},
            {"name": "slow", "image": "r.example.com/app:1"},
            {"name": "waiting", "image": "r.example.com/app:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    Cluster {
        _dir: dir,
        shutdown,
        running,
        client,
        agent,
    }
}

async fn register_node(client: &Client, name: &str, addr: SocketAddr, fingerprint: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"berth.dev/serving-cert-sha256": fingerprint}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": addr.ip().to_string()}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}}
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

impl Cluster {
    fn requests(&self) -> Vec<String> {
        self.agent.state.requests.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.agent.task.abort();
        self.shutdown.cancel();
        self.running.task.await.unwrap().unwrap();
    }
}

fn api_err(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn params(container: &str) -> LogParams {
    LogParams {
        container: Some(container.into()),
        ..LogParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_fetched_from_the_pinned_agent_with_the_users_parameters() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    assert_eq!(
        pods.logs("web", &params("app")).await.unwrap(),
        "line 1\nline 2\n"
    );
    let lp = LogParams {
        tail_lines: Some(5),
        timestamps: true,
        limit_bytes: Some(100),
        since_seconds: Some(60),
        ..params("app")
    };
    pods.logs("web", &lp).await.unwrap();
    assert_eq!(
        c.requests(),
        [
            "/containerLogs/default/web/app?",
            "/containerLogs/default/web/app?timestamps=true&sinceSeconds=60&tailLines=5&limitBytes=100",
        ]
    );
    assert!(
        c.agent
            .state
            .client_cns
            .lock()
            .unwrap()
            .iter()
            .all(|cn| cn == "berth:apiserver")
    );

    // kubelet's texts come back as Status errors with the agent's code.
    let e = api_err(pods.logs("web", &params("waiting")).await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (
            400,
            "BadRequest",
            "container \"waiting\" in pod \"web\" is waiting to start: ContainerCreating"
        )
    );
    let lp = LogParams {
        previous: true,
        ..params("app")
    };
    let e = api_err(pods.logs("web", &lp).await.unwrap_err());
    assert_eq!(
        e.message,
        "previous terminated container \"app\" in pod \"web\" not found"
    );

    // Container resolution happens before the agent is asked.
    let e = api_err(pods.logs("web", &LogParams::default()).await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            400,
            "a container name must be specified for pod web, choose one of: [app slow waiting]"
        )
    );
    let e = api_err(pods.logs("web", &params("nope")).await.unwrap_err());
    assert_eq!(e.message, "container nope is not valid for pod web");
    let e = api_err(pods.logs("missing", &params("app")).await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "pods \"missing\" not found")
    );
    let bad = LogParams {
        tail_lines: Some(-1),
        ..params("app")
    };
    assert_eq!(api_err(pods.logs("web", &bad).await.unwrap_err()).code, 422);
    assert_eq!(c.requests().len(), 4, "{:?}", c.requests());

    // A pod no node runs yet has an empty log, as upstream.
    let pending: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending"}, "spec": {"containers": [{"name": "app", "image": "i"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pending).await.unwrap();
    assert_eq!(
        pods.logs("pending", &LogParams::default()).await.unwrap(),
        ""
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_each_line_as_the_agent_sends_it() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let lp = LogParams {
        follow: true,
        ..params("slow")
    };
    let mut lines = pods.log_stream("web", &lp).await.unwrap().lines();
    let first = tokio::time::timeout(Duration::from_secs(5), lines.try_next())
        .await
        .expect("the first line arrives while the agent still holds the stream open")
        .unwrap();
    assert_eq!(first.as_deref(), Some("first"));
    c.agent.state.proceed.notify_one();
    let rest: Vec<String> = tokio::time::timeout(Duration::from_secs(5), lines.try_collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, ["second"]);
    assert_eq!(
        c.requests(),
        ["/containerLogs/default/web/slow?follow=true"]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_certificate_does_not_match_the_pin_is_refused() {
    let c = cluster().await;
    // Node n2 points at the same agent but pins another certificate.
    register_node(&c.client, "n2", c.agent.addr, &"00".repeat(32)).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other"}, "spec": {"nodeName": "n2", "containers": [{"name": "app", "image": "i"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let e = api_err(pods.logs("other", &LogParams::default()).await.unwrap_err());
    assert_eq!(e.code, 500);
    assert!(
        e.message.contains(&format!(
            "the agent presented a serving certificate with SHA-256 {}, but its Node pins {}",
            c.agent.fingerprint,
            "00".repeat(32)
        )),
        "{}",
        e.message
    );
    assert!(e.message.contains("node \"n2\""), "{}", e.message);
    assert!(c.requests().is_empty(), "{:?}", c.requests());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_logs_follow_work_through_the_agent() {
    let c = cluster().await;
    let k = kubectl::Kubectl::new(&c.running.admin_kubeconfig);
    let out = k.run(&["logs", "web", "-c", "app"], None).await;
    assert_eq!(out.ok(), "line 1\nline 2\n");
    let out = k.run(&["logs", "-f", "web", "-c", "app"], None).await;
    assert_eq!(out.ok(), "tick 1\ntick 2\n");
    let out = k.run(&["logs", "web", "-c", "waiting"], None).await;
    assert_eq!(
        out.err().trim(),
        "Error from server (BadRequest): container \"waiting\" in pod \"web\" is waiting to start: ContainerCreating"
    );
    let out = k
        .run(&["logs", "web", "-c", "app", "--previous"], None)
        .await;
    assert_eq!(
        out.err().trim(),
        "Error from server (BadRequest): previous terminated container \"app\" in pod \"web\" not found"
    );
    // Without -c kubectl picks the first container and says so, as against a real cluster.
    let out = k.run(&["logs", "web", "--tail=1"], None).await;
    assert_eq!(out.ok(), "line 1\nline 2\n");
    assert!(
        out.stderr
            .contains("Defaulted container \"app\" out of: app, slow, waiting"),
        "{}",
        out.stderr
    );
    assert_eq!(
        c.requests().last().unwrap(),
        "/containerLogs/default/web/app?tailLines=1"
    );
    c.stop().await;
}
