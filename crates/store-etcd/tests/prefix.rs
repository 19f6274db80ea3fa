//! Two berth clusters sharing one etcd through different key prefixes never see each other.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use store::{ListOptions, Storage};
use store_etcd::EtcdStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_isolate_stores_sharing_one_etcd() {
    let cluster = common::Cluster::single();
    let a = EtcdStore::connect(cluster.config().with_key_prefix("/cluster-a"))
        .await
        .unwrap();
    let b = EtcdStore::connect(cluster.config().with_key_prefix("/cluster-b"))
        .await
        .unwrap();
    let start = a.current_revision().await.unwrap();
    let mut watch_a = a.watch("", start).await.unwrap();
    let ra = a.create("/registry/x", Bytes::from("a")).await.unwrap();
    b.create("/registry/x", Bytes::from("b")).await.unwrap();
    b.create("/registry/y", Bytes::from("b")).await.unwrap();

    let all_a = a.list("", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all_a.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/x"]);
    assert_eq!(all_a.items[0].value, Bytes::from("a"));
    assert_eq!(
        b.list("", ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        b.get("/registry/x").await.unwrap().unwrap().value,
        Bytes::from("b")
    );

    let event = tokio::time::timeout(Duration::from_secs(20), watch_a.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((event.key.as_str(), event.revision), ("/registry/x", ra));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch_a.next())
            .await
            .is_err(),
        "b's writes are not in a's watch"
    );
    // The revision is etcd's, shared by both prefixes.
    assert_eq!(
        a.current_revision().await.unwrap(),
        b.current_revision().await.unwrap()
    );
}
