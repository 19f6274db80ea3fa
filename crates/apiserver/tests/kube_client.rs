//! kube-rs against an in-process `apiserver::spawn`: optimistic concurrency (409 Conflict on a stale
//! resourceVersion, exactly one winner among concurrent writers with the same resourceVersion) and watch resume
//! semantics (events strictly after the given resourceVersion, in order, with DELETED carrying the last state).
//! Each scenario runs on SQLite and on a real etcd (`apiserver::spawn_with`, the store-etcd test fixture).

#[path = "../../store-etcd/tests/common/mod.rs"]
mod etcd;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

struct Running {
    /// Dropped after the server: kills the etcd members of an etcd-backed run.
    _etcd: Option<etcd::Cluster>,
    _dir: tempfile::TempDir,
    shutdown: apiserver::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), apiserver::ServerError>>,
    client: Client,
}

async fn start() -> Running {
    start_on(false).await
}

/// A server on SQLite, or with `on_etcd` on a fresh single-member etcd.
async fn start_on(on_etcd: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let cluster = on_etcd.then(etcd::Cluster::single);
    let datastore = match &cluster {
        Some(c) => apiserver::Datastore::Etcd(c.config()),
        None => apiserver::Datastore::Sqlite,
    };
    let running = apiserver::spawn_with(config, datastore, None, shutdown.clone())
        .await
        .unwrap();
    let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(
        cfg.cluster_url.to_string().trim_end_matches('/'),
        running.url
    );
    let client = Client::try_from(cfg).unwrap();
    // spawn returns only once the server is ready: no polling needed.
    let ready = client
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.trim(), "ok");
    Running {
        _etcd: cluster,
        _dir: dir,
        shutdown,
        task: running.task,
        client,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_update_is_a_conflict_and_only_one_concurrent_writer_wins() {
    conflicts(start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_update_is_a_conflict_and_only_one_concurrent_writer_wins_on_etcd() {
    conflicts(start_on(true).await).await;
}

async fn conflicts(r: Running) {
    let api: Api<ConfigMap> = Api::namespaced(r.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("cm", "1"))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = api
        .replace("cm", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    // Re-using the old resourceVersion is a 409 with the upstream message.
    let err = api
        .replace("cm", &PostParams::default(), &first)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert_eq!(
                s.message,
                "Operation cannot be fulfilled on configmaps \"cm\": the object has been modified; please apply your changes to the latest version and try again"
            );
        }
        other => panic!("expected a 409, got {other:?}"),
    }

    // Eight writers with the same resourceVersion: exactly one wins.
    let base = api.get("cm").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let api = api.clone();
        let mut cm = base.clone();
        cm.data = Some([("k".to_string(), format!("w{i}"))].into());
        tasks.push(tokio::spawn(async move {
            api.replace("cm", &PostParams::default(), &cm).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_strictly_after_the_given_resource_version() {
    watch_resume(start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_strictly_after_the_given_resource_version_on_etcd() {
    watch_resume(start_on(true).await).await;
}

async fn watch_resume(r: Running) {
    let api: Api<ConfigMap> = Api::namespaced(r.client.clone(), "default");
    let a = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let from = a.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &config_map("b", "1"))
        .await
        .unwrap();
    let mut a2 = api.get("a").await.unwrap();
    a2.data = Some([("k".to_string(), "2".to_string())].into());
    api.replace("a", &PostParams::default(), &a2).await.unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();

    let stream = api
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = stream.take(3).try_collect().await.unwrap();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap()),
            WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.clone().unwrap()),
            WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.clone().unwrap()),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ADDED".into(), "b".into()),
            ("MODIFIED".into(), "a".into()),
            ("DELETED".into(), "b".into())
        ]
    );
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o
                .metadata
                .resource_version
                .as_deref()
                .unwrap()
                .parse()
                .unwrap(),
            _ => 0,
        })
        .collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > from.parse::<u64>().unwrap(),
        "{rvs:?}"
    );

    // A live watch sees a new object promptly.
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), "default");
    let list_rv = pods
        .list_metadata(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut live = pods
        .watch(&WatchParams::default().timeout(10), &list_rv)
        .await
        .unwrap()
        .boxed();
    let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "www.3rdregistry.com/janedoe/awesomeapp:v1"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("p")));
    drop(live);
    r.stop().await;
}
