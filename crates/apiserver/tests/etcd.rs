//! API servers on a real etcd (Debian's /usr/bin/etcd, data on /dev/shm through the store-etcd fixture): two
//! servers on one 3-member cluster read and watch each other's writes, keep serving when the raft leader member is
//! killed, and refuse a data dir of another cluster; an unreachable etcd is a 503 naming it; `berth migrate`'s
//! SQLite -> etcd copy keeps names, uids and encrypted Secrets, is idempotent and refuses a foreign target;
//! `berth secrets rotate-key` on etcd refuses while a server runs, resumes an interrupted rotation, re-encrypts
//! every Secret, and a server still holding the old key refuses to start.

#[path = "../../store-etcd/tests/common/mod.rs"]
mod etcd;

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use store::Storage;

const WAIT: Duration = Duration::from_secs(30);

struct Server {
    shutdown: apiserver::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), apiserver::ServerError>>,
    client: Client,
}

impl Server {
    async fn start(dir: &Path, datastore: apiserver::Datastore) -> Server {
        let shutdown = apiserver::CancellationToken::new();
        let config = apiserver::ServerConfig {
            data_dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
        };
        let running = apiserver::spawn_with(config, datastore, None, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("server on {}: {e}", dir.display()));
        let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
        let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        Server {
            shutdown,
            task: running.task,
            client: Client::try_from(cfg).unwrap(),
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A copy of a data dir (how a further API server of a cluster starts).
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

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}
    }))
    .unwrap()
}

fn secret(name: &str, password: &str) -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "type": "Opaque", "stringData": {"password": password}
    }))
    .unwrap()
}

fn password(s: &Secret) -> String {
    String::from_utf8(s.data.as_ref().unwrap()["password"].0.clone()).unwrap()
}

/// Names of the next `n` ADDED/MODIFIED events of a watch.
async fn next_names<S>(watch: &mut S, n: usize) -> Vec<String>
where
    S: futures::Stream<Item = Result<WatchEvent<ConfigMap>, kube::Error>> + Unpin,
{
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(WAIT, watch.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(o) | WatchEvent::Modified(o)))) => {
                out.push(o.metadata.name.unwrap())
            }
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
            other => panic!("after {out:?}: unexpected {other:?}"),
        }
    }
    out
}

/// Index of the raft leader member (members are named m0, m1, m2).
async fn leader_index(cluster: &etcd::Cluster) -> usize {
    let mut client = cluster.connect().await.client();
    let leader = client.status().await.unwrap().leader();
    let members = client.member_list().await.unwrap();
    let member = members.members().iter().find(|m| m.id() == leader).unwrap();
    member.name().trim_start_matches('m').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_etcd_read_and_watch_each_others_writes_across_a_member_kill() {
    let mut cluster = etcd::Cluster::start(3, None);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(dir_a.path(), apiserver::Datastore::Etcd(cluster.config())).await;
    copy_dir(dir_a.path(), dir_b.path());
    let b = Server::start(dir_b.path(), apiserver::Datastore::Etcd(cluster.config())).await;
    let (cms_a, cms_b): (Api<ConfigMap>, Api<ConfigMap>) = (
        Api::namespaced(a.client.clone(), "default"),
        Api::namespaced(b.client.clone(), "default"),
    );

    // Watches opened on each server before any write.
    let rv = cms_b
        .list_metadata(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watch_b = cms_b
        .watch(&WatchParams::default().timeout(120), &rv)
        .await
        .unwrap()
        .boxed();
    let mut watch_a = cms_a
        .watch(&WatchParams::default().timeout(120), &rv)
        .await
        .unwrap()
        .boxed();

    // A write on A is read on B (a Secret too: same encryption key) and watched on B, and the other way round.
    cms_a
        .create(&PostParams::default(), &config_map("from-a", "1"))
        .await
        .unwrap();
    let secrets_a: Api<Secret> = Api::namespaced(a.client.clone(), "default");
    let created = secrets_a
        .create(&PostParams::default(), &secret("reg", "s3cret"))
        .await
        .unwrap();
    let on_b: Api<Secret> = Api::namespaced(b.client.clone(), "default");
    let read = on_b.get("reg").await.unwrap();
    assert_eq!(password(&read), "s3cret");
    assert_eq!(read.metadata.uid, created.metadata.uid);
    assert_eq!(cms_b.get("from-a").await.unwrap().data.unwrap()["k"], "1");
    assert_eq!(next_names(&mut watch_b, 1).await, ["from-a"]);
    cms_b
        .create(&PostParams::default(), &config_map("from-b", "1"))
        .await
        .unwrap();
    assert_eq!(next_names(&mut watch_a, 2).await, ["from-a", "from-b"]);
    assert_eq!(next_names(&mut watch_b, 1).await, ["from-b"]);

    // The raft leader dies: writes on both servers continue and both watches deliver them, in order, no gap.
    let leader = leader_index(&cluster).await;
    cluster.kill(leader);
    let mut expected = Vec::new();
    for i in 0..4 {
        let (api, name) = if i % 2 == 0 {
            (&cms_a, format!("after-a{i}"))
        } else {
            (&cms_b, format!("after-b{i}"))
        };
        api.create(&PostParams::default(), &config_map(&name, "x"))
            .await
            .unwrap_or_else(|e| panic!("create {name} after killing etcd m{leader}: {e}"));
        expected.push(name);
    }
    assert_eq!(next_names(&mut watch_a, 4).await, expected);
    assert_eq!(next_names(&mut watch_b, 4).await, expected);
    let listed: Vec<String> = cms_b
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(listed.len(), 6, "{listed:?}");

    drop((watch_a, watch_b));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_data_dir_refuses_the_cluster_and_names_the_fix() {
    let cluster = etcd::Cluster::single();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(dir_a.path(), apiserver::Datastore::Etcd(cluster.config())).await;
    let err = apiserver::spawn_with(
        apiserver::ServerConfig {
            data_dir: dir_b.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
        },
        apiserver::Datastore::Etcd(cluster.config()),
        None,
        apiserver::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&cluster.url())
            && err.contains("another cluster")
            && err.contains("encryption.key")
            && err.contains("copy of the first server's data directory"),
        "{err}"
    );

    // The same key with another CA is refused as well.
    std::fs::create_dir_all(dir_b.path()).unwrap();
    std::fs::copy(
        dir_a.path().join("encryption.key"),
        dir_b.path().join("encryption.key"),
    )
    .unwrap();
    let err = apiserver::spawn_with(
        apiserver::ServerConfig {
            data_dir: dir_b.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
        },
        apiserver::Datastore::Etcd(cluster.config()),
        None,
        apiserver::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cluster CA differs") && err.contains("pki/ca.crt"),
        "{err}"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_a_503_naming_the_datastore() {
    let mut cluster = etcd::Cluster::single();
    let dir = tempfile::tempdir().unwrap();
    let mut config = cluster.config();
    config.request_timeout = Duration::from_secs(2);
    let s = Server::start(dir.path(), apiserver::Datastore::Etcd(config)).await;
    // kube-rs retries 503s by default (for minutes); this test wants the first answer.
    let kc = Kubeconfig::read_from(dir.path().join("admin.kubeconfig")).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    let cms: Api<ConfigMap> = Api::namespaced(Client::try_from(cfg).unwrap(), "default");
    cms.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    cluster.kill(0);
    let started = std::time::Instant::now();
    let answer = cms.get("a").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
    match answer {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (503, "ServiceUnavailable")
            );
            assert!(
                status.message.contains(&cluster.url())
                    && status
                        .message
                        .contains("get /registry/core/configmaps/default/a"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_objects_with_their_uids_and_encrypted_secrets_idempotently() {
    // A cluster on SQLite with a Secret and a ConfigMap.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Server::start(dir.path(), apiserver::Datastore::Sqlite).await;
    let secrets: Api<Secret> = Api::namespaced(sqlite.client.clone(), "default");
    let secret_uid = secrets
        .create(&PostParams::default(), &secret("reg", "hunter2"))
        .await
        .unwrap()
        .metadata
        .uid;
    let cms: Api<ConfigMap> = Api::namespaced(sqlite.client.clone(), "default");
    let cm_uid = cms
        .create(&PostParams::default(), &config_map("settings", "v"))
        .await
        .unwrap()
        .metadata
        .uid;
    sqlite.stop().await;

    let cluster = etcd::Cluster::single();
    let report = apiserver::migrate_sqlite_to_etcd(dir.path(), cluster.config(), false)
        .await
        .unwrap();
    assert!(report.created >= 2 + 4, "{report:?}"); // the objects above and the default namespaces
    assert_eq!((report.unchanged, report.replaced), (0, 0), "{report:?}");
    assert_eq!(report.per_resource["core/secrets"], 1, "{report:?}");
    assert_eq!(report.per_resource["core/namespaces"], 4, "{report:?}");
    assert_eq!(report.secrets_verified, 1);

    // Stored bytes are copied as they are: the Secret is still ciphertext in etcd.
    let raw = cluster.connect().await;
    let stored = raw
        .get("/registry/core/secrets/default/reg")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.value.starts_with(b"k8s:enc:aesgcm:v1:"));
    assert!(!stored.value.windows(7).any(|w| w == b"hunter2"));

    // Running it again changes nothing.
    let again = apiserver::migrate_sqlite_to_etcd(dir.path(), cluster.config(), false)
        .await
        .unwrap();
    assert_eq!(
        (again.created, again.unchanged, again.replaced),
        (0, report.created, 0)
    );

    // A server on etcd from the same data dir serves the objects with their uids; the Secret decrypts.
    let on_etcd = Server::start(dir.path(), apiserver::Datastore::Etcd(cluster.config())).await;
    let secrets: Api<Secret> = Api::namespaced(on_etcd.client.clone(), "default");
    let read = secrets.get("reg").await.unwrap();
    assert_eq!(password(&read), "hunter2");
    assert_eq!(read.metadata.uid, secret_uid);
    let cms: Api<ConfigMap> = Api::namespaced(on_etcd.client.clone(), "default");
    assert_eq!(cms.get("settings").await.unwrap().metadata.uid, cm_uid);
    on_etcd.stop().await;

    // Another cluster's data dir is refused: the target holds objects it did not write.
    let other = tempfile::tempdir().unwrap();
    Server::start(other.path(), apiserver::Datastore::Sqlite)
        .await
        .stop()
        .await;
    let err = apiserver::migrate_sqlite_to_etcd(other.path(), cluster.config(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already holds") && err.contains("--force") && err.contains(&cluster.url()),
        "{err}"
    );
}

/// The raw (encrypted) values of every Secret in etcd.
async fn raw_secrets(cluster: &etcd::Cluster) -> Vec<(String, Vec<u8>)> {
    cluster
        .connect()
        .await
        .list("/registry/core/secrets/", store::ListOptions::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.value.to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_key_on_etcd_refuses_running_servers_resumes_and_reencrypts_every_secret() {
    use base64::Engine;
    let cluster = etcd::Cluster::single();
    let datastore = apiserver::Datastore::Etcd(cluster.config());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), datastore.clone()).await;
    let secrets: Api<Secret> = Api::namespaced(server.client.clone(), "default");
    for i in 0..5 {
        secrets
            .create(
                &PostParams::default(),
                &secret(&format!("s{i}"), &format!("pw-{i}")),
            )
            .await
            .unwrap();
    }
    // Every running server campaigns in the lifecycle election: rotating under it is refused.
    let raw = cluster.connect().await;
    let deadline = std::time::Instant::now() + WAIT;
    while raw.candidates("berth-lifecycle").await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never campaigned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = apiserver::rotate_key(dir.path(), &datastore)
        .await
        .unwrap_err();
    assert!(
        matches!(err, apiserver::DatastoreError::ServersRunning { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&cluster.url())
            && msg.contains("127.0.0.1:")
            && msg.contains("stop every API server"),
        "{msg}"
    );
    let before = raw_secrets(&cluster).await;
    let old_dir = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), old_dir.path());
    server.stop().await;

    // A rotation interrupted right after writing its new key to the key file (its first step).
    let key_file = dir.path().join("encryption.key");
    let mut keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    let old_name = keys["keys"][0]["name"].as_str().unwrap().to_owned();
    let material: [u8; 32] = rand::random();
    keys["keys"].as_array_mut().unwrap().insert(
        0,
        serde_json::json!({"name": "key-resumed",
            "secret": base64::engine::general_purpose::STANDARD.encode(material)}),
    );
    std::fs::write(&key_file, serde_json::to_vec(&keys).unwrap()).unwrap();

    let report = apiserver::rotate_key(dir.path(), &datastore).await.unwrap();
    assert_eq!(
        report.primary, "key-resumed",
        "resumed, no third key: {report:?}"
    );
    assert!(
        report.complete && report.removed_keys == [old_name.clone()],
        "{report:?}"
    );
    let after = raw_secrets(&cluster).await;
    // Every Secret and the cluster identity record.
    assert_eq!(report.rewritten as usize, after.len() + 1, "{report:?}");
    assert_eq!(after.len(), before.len());
    for (key, value) in &after {
        assert!(
            value.starts_with(b"k8s:enc:aesgcm:v1:key-resumed:"),
            "{key} re-encrypted with the new key"
        );
        assert!(
            !value.windows(3).any(|w| w == b"pw-"),
            "{key} is ciphertext"
        );
    }
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    // A data dir still holding the old key no longer opens the cluster, and says why.
    let config = apiserver::ServerConfig {
        data_dir: old_dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let refused = apiserver::spawn_with(
        config,
        datastore.clone(),
        None,
        apiserver::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("cannot decrypt") && refused.contains("rotate-key"),
        "{refused}"
    );

    // A server from the rotated data dir reads every Secret.
    let server = Server::start(dir.path(), datastore.clone()).await;
    let secrets: Api<Secret> = Api::namespaced(server.client.clone(), "default");
    for i in 0..5 {
        assert_eq!(
            password(&secrets.get(&format!("s{i}")).await.unwrap()),
            format!("pw-{i}")
        );
    }
    server.stop().await;
}
