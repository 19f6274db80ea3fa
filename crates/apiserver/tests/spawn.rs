//! `apiserver::spawn` as other crates' tests use it: it returns a ready server (port 0 resolved into `url` and
//! the kubeconfigs), the node token authenticates as `system:node` and may write, the CA and node token are
//! stable across a restart on the same data dir, and `run` still serves until cancelled.

use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

async fn admin_client(running: &apiserver::Running) -> Client {
    let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

fn token_client(running: &apiserver::Running, token: &str) -> Client {
    let mut cfg = Config::new(running.url.parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(&running.ca_pem)]);
    cfg.auth_info.token = Some(token.to_string().into());
    Client::try_from(cfg).unwrap()
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn config(dir: &std::path::Path) -> apiserver::ServerConfig {
    apiserver::ServerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_returns_a_ready_server_whose_node_token_acts_as_system_node() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let running = apiserver::spawn(config(dir.path()), None, shutdown.clone())
        .await
        .unwrap();
    assert!(running.url.starts_with("https://127.0.0.1:"));
    assert!(!running.url.ends_with(":0"));
    assert_eq!(running.ca_file, dir.path().join("pki/ca.crt"));
    assert_eq!(
        std::fs::read_to_string(&running.ca_file).unwrap(),
        running.ca_pem
    );
    assert_eq!(running.node_token_file, dir.path().join("node.token"));
    let mode = std::fs::metadata(&running.node_token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // No readiness polling: the first request after spawn succeeds.
    let admin = admin_client(&running).await;
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    assert!(ns.get("default").await.is_ok());

    let token = std::fs::read_to_string(&running.node_token_file).unwrap();
    let node_client = token_client(&running, token.trim());
    let nodes: Api<Node> = Api::all(node_client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();

    // A forged token is rejected, so the node token's success above is a real identity check.
    let forged = token_client(&running, "0000");
    let err = Api::<ConfigMap>::default_namespaced(forged)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 401),
        "{err:?}"
    );

    shutdown.cancel();
    running.task.await.unwrap().unwrap();

    // Restart on the same data dir: same CA, same node token, the object is still there.
    let shutdown = apiserver::CancellationToken::new();
    let again = apiserver::spawn(config(dir.path()), None, shutdown.clone())
        .await
        .unwrap();
    assert_eq!(again.ca_pem, running.ca_pem);
    assert_eq!(
        std::fs::read_to_string(&again.node_token_file).unwrap(),
        token
    );
    let nodes: Api<Node> = Api::all(token_client(&again, token.trim()));
    assert!(nodes.get("n1").await.is_ok());
    shutdown.cancel();
    again.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_until_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let task = tokio::spawn(apiserver::run(config(dir.path()), shutdown.clone()));
    let kubeconfig = dir.path().join("admin.kubeconfig");
    let mut served = false;
    for _ in 0..200 {
        if let Ok(kc) = Kubeconfig::read_from(&kubeconfig) {
            let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap();
            let client = Client::try_from(cfg).unwrap();
            let ready = client
                .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
                .await;
            if ready.is_ok_and(|s| s.trim() == "ok") {
                served = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "run never became ready");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
