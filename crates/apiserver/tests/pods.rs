//! The pod subresources a scheduler and a node agent use, driven with kube-rs against `apiserver::spawn`:
//! `pods/binding` (nodeName + PodScheduled=True, 409 when already bound, 404 for a missing pod, 422 for a bad
//! target) and `pods/status` writes of a full kubelet status by the node identity.

use k8s_openapi::api::core::v1::{Binding, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

struct Server {
    _dir: tempfile::TempDir,
    shutdown: apiserver::CancellationToken,
    running: apiserver::Running,
    admin: Client,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = apiserver::spawn(config, None, shutdown.clone())
        .await
        .unwrap();
    let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Server {
        _dir: dir,
        shutdown,
        admin: Client::try_from(cfg).unwrap(),
        running,
    }
}

impl Server {
    /// A client acting as `system:node` with the raw token from `node.token`.
    async fn node_client(&self) -> Client {
        let token = std::fs::read_to_string(&self.running.node_token_file).unwrap();
        let kc = Kubeconfig::read_from(&self.running.admin_kubeconfig).unwrap();
        let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        cfg.auth_info.token = Some(token.trim().to_string().into());
        Client::try_from(cfg).unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.task.await.unwrap().unwrap();
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}
    }))
    .unwrap()
}

fn binding(pod: &str, node: &str) -> Binding {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    }))
    .unwrap()
}

fn api_err(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_sets_node_name_and_pod_scheduled_once_and_conflicts_after() {
    let s = start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.admin.clone());
    pods.create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();

    let st: Status = pods
        .create_subresource(
            "binding",
            "web",
            &PostParams::default(),
            &binding("web", "n1"),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_deref(), Some("Success"));
    assert_eq!(st.code, Some(201));
    let bound = pods.get("web").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("n1")
    );
    let conditions = bound.status.unwrap().conditions.unwrap();
    let scheduled = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled.status, "True");
    assert!(scheduled.last_transition_time.is_some());

    let err = api_err(
        pods.create_subresource::<_, Status>(
            "binding",
            "web",
            &PostParams::default(),
            &binding("web", "n2"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n1\""
    );

    let err = api_err(
        pods.create_subresource::<_, Status>(
            "binding",
            "nope",
            &PostParams::default(),
            &binding("nope", "n1"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "pods \"nope\" not found")
    );

    pods.create(&PostParams::default(), &pod("other"))
        .await
        .unwrap();
    let err = api_err(
        pods.create_subresource::<_, Status>(
            "binding",
            "other",
            &PostParams::default(),
            &binding("web", "n1"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "name in URL does not match name in Binding object")
    );
    let no_target = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "other"}, "target": {"kind": "Pod"}});
    let err = api_err(
        pods.create_subresource::<_, Status>(
            "binding",
            "other",
            &PostParams::default(),
            &no_target,
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .starts_with("Binding \"other\" is invalid: [target.kind: Unsupported value: \"Pod\""),
        "{}",
        err.message
    );
    // Nothing was bound by the failed attempts.
    let other = pods.get("other").await.unwrap();
    assert_eq!(other.spec.unwrap().node_name, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bindings_of_one_pod_have_exactly_one_winner() {
    let s = start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.admin.clone());
    pods.create(&PostParams::default(), &pod("race"))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let pods = pods.clone();
        async move {
            pods.create_subresource::<_, Status>(
                "binding",
                "race",
                &PostParams::default(),
                &binding("race", &format!("n{i}")),
            )
            .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for r in results.into_iter().filter_map(Result::err) {
        assert_eq!(api_err(r).code, 409);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_writes_a_full_kubelet_status_through_the_status_subresource() {
    let s = start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.admin.clone());
    pods.create(&PostParams::default(), &pod("run"))
        .await
        .unwrap();
    pods.create_subresource::<_, Status>(
        "binding",
        "run",
        &PostParams::default(),
        &binding("run", "n1"),
    )
    .await
    .unwrap();

    let node_pods: Api<Pod> = Api::default_namespaced(s.node_client().await);
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "10.88.0.5", "podIPs": [{"ip": "10.88.0.5"}],
        "startTime": "2026-01-01T00:00:00Z",
        "qosClass": "BestEffort",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:01Z"},
            {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:02Z"},
            {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:02Z"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
        "containerStatuses": [{
            "name": "app", "ready": true, "started": true, "restartCount": 1,
            "image": "registry.example.com/app:1",
            "imageID": "registry.example.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "containerID": "runc://4f1c",
            "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:01Z", "containerID": "runc://3e0b"}}
        }]
    }});
    let updated = node_pods
        .patch_status("run", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let st = updated.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.88.0.5"));
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(st.start_time.is_some());
    let cs = &st.container_statuses.unwrap()[0];
    assert_eq!((cs.ready, cs.restart_count), (true, 1));
    assert_eq!(
        cs.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert_eq!(st.conditions.unwrap().len(), 5);

    // A full replace through /status (what kube-rs `replace_status` sends) keeps the spec untouched.
    let mut current = node_pods.get("run").await.unwrap();
    current.status.as_mut().unwrap().phase = Some("Succeeded".into());
    current.spec.as_mut().unwrap().node_name = Some("elsewhere".into());
    let replaced = node_pods
        .replace_status("run", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.status.unwrap().phase.as_deref(), Some("Succeeded"));
    assert_eq!(replaced.spec.unwrap().node_name.as_deref(), Some("n1"));
    s.stop().await;
}
