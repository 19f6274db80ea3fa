//! The etcd backend against a real 3-member etcd cluster on loopback: writes continue after the
//! leader is killed, a watch resumes from its last revision when its member dies, and a watch
//! that resumes past a compaction ends with `Expired`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use store::{EventKind, ListOptions, Storage, StoreError, WatchEvent, WatchStream};
use store_etcd::{EtcdConfig, EtcdStore};

const WAIT: Duration = Duration::from_secs(30);

async fn next_events(watch: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(WAIT, watch.next()).await {
            Ok(Some(Ok(e))) => out.push(e),
            Ok(Some(Err(e))) => panic!("watch error after {} events: {e}", out.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", out.len()),
            Err(_) => panic!("timed out waiting for watch event {} of {n}", out.len() + 1),
        }
    }
    out
}

/// The index of the current raft leader.
async fn leader_index(cluster: &common::Cluster, store: &EtcdStore) -> usize {
    let mut client = store.client();
    let leader = client.status().await.expect("status").leader();
    let members = client.member_list().await.expect("member list");
    let member = members
        .members()
        .iter()
        .find(|m| m.id() == leader)
        .expect("leader is a member");
    let index: usize = member.name().trim_start_matches('m').parse().unwrap();
    assert!(index < 3, "{}", cluster.url());
    index
}

/// A store that talks to member `i` only (its client can be given more endpoints later).
async fn connect_to_member(cluster: &common::Cluster, i: usize) -> EtcdStore {
    let mut config =
        EtcdConfig::from_url(&format!("etcd://127.0.0.1:{}", cluster.client_port(i))).unwrap();
    config.dial_timeout = Duration::from_secs(30);
    EtcdStore::connect(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_continue_after_the_leader_member_is_killed() {
    let mut cluster = common::Cluster::start(3, None);
    let store = cluster.connect().await;
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(
            store
                .create(&format!("/registry/t/k{i}"), Bytes::from(format!("v{i}")))
                .await
                .unwrap(),
        );
    }
    let leader = leader_index(&cluster, &store).await;
    cluster.kill(leader);

    // Every write after the kill succeeds (a new leader is elected among the two survivors).
    for (i, revision) in revisions.iter_mut().enumerate() {
        let key = format!("/registry/t/k{i}");
        let rev = store
            .update(&key, *revision, Bytes::from(format!("w{i}")))
            .await
            .unwrap_or_else(|e| panic!("update {key} after killing m{leader}: {e}"));
        assert!(rev > *revision);
        *revision = rev;
    }
    for i in 10..20 {
        store
            .create(&format!("/registry/t/k{i}"), Bytes::from(format!("v{i}")))
            .await
            .unwrap();
    }
    let list = store
        .list("/registry/t/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 20, "no write was lost");
    for kv in &list.items {
        let i: usize = kv.key.trim_start_matches("/registry/t/k").parse().unwrap();
        let want = if i < 10 {
            format!("w{i}")
        } else {
            format!("v{i}")
        };
        assert_eq!(kv.value, Bytes::from(want), "{}", kv.key);
        if i < 10 {
            assert_eq!(kv.mod_revision, revisions[i]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_from_its_last_revision_when_its_member_dies() {
    let mut cluster = common::Cluster::start(3, None);
    let writer = cluster.connect().await;
    // The watch runs through member 0 only, so killing member 0 certainly breaks its stream.
    let watcher = connect_to_member(&cluster, 0).await;
    let start = watcher.current_revision().await.unwrap();
    let mut watch = watcher.watch("/registry/w/", start).await.unwrap();

    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(
            writer
                .create(&format!("/registry/w/a{i}"), Bytes::from("x"))
                .await
                .unwrap(),
        );
    }
    let before: Vec<u64> = next_events(&mut watch, 5)
        .await
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(before, expected);

    watcher
        .client()
        .add_endpoint(format!("http://127.0.0.1:{}", cluster.client_port(1)))
        .await
        .unwrap();
    cluster.kill(0);
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(
            writer
                .create(&format!("/registry/w/b{i}"), Bytes::from("y"))
                .await
                .unwrap(),
        );
    }
    let deleted = writer.delete("/registry/w/a0", None).await.unwrap();
    after.push(deleted.revision);
    let events = next_events(&mut watch, 6).await;
    let got: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(got, after, "no gap and no duplicate across the member kill");
    assert_eq!(events[5].kind, EventKind::Deleted);
    assert_eq!(events[5].value, Bytes::from("x"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch.next())
            .await
            .is_err(),
        "nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resuming_after_a_compaction_ends_with_expired() {
    let mut cluster = common::Cluster::start(3, None);
    let writer = cluster.connect().await;
    let watcher = connect_to_member(&cluster, 0).await;
    let start = writer
        .create("/registry/c/a", Bytes::from("1"))
        .await
        .unwrap();
    let mut watch = watcher.watch("/registry/c/", start).await.unwrap();
    let r2 = writer
        .update("/registry/c/a", start, Bytes::from("2"))
        .await
        .unwrap();
    assert_eq!(next_events(&mut watch, 1).await[0].revision, r2);

    // The watch's only member dies; meanwhile history moves on and is compacted.
    cluster.kill(0);
    let r3 = writer
        .update("/registry/c/a", r2, Bytes::from("3"))
        .await
        .unwrap();
    let r4 = writer
        .update("/registry/c/a", r3, Bytes::from("4"))
        .await
        .unwrap();
    writer.compact(r4).await.unwrap();
    watcher
        .client()
        .add_endpoint(format!("http://127.0.0.1:{}", cluster.client_port(1)))
        .await
        .unwrap();

    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Err(StoreError::Expired {
            requested,
            compacted,
        }))) => {
            assert_eq!(requested, r2, "the watch had delivered up to r2");
            assert_eq!(compacted, r4);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("stream ends")
            .is_none(),
        "the stream ends after Expired"
    );
}
