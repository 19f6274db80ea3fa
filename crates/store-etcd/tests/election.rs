//! Lease-based leader election on a real etcd: one leader at a time, hand-over on resign, and
//! leadership lost when the lease cannot be renewed.

mod common;

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_candidate_leads_only_after_the_first_resigns() {
    let cluster = common::Cluster::single();
    let a = cluster.connect().await;
    let b = cluster.connect().await;
    let first = a
        .elect("controller-manager", "a", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(first.is_held());
    let candidate = tokio::spawn(async move {
        b.elect("controller-manager", "b", Duration::from_secs(5))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!candidate.is_finished(), "b must wait while a leads");
    // Another election is independent.
    let other = a
        .elect("scheduler", "a", Duration::from_secs(5))
        .await
        .unwrap();
    first.resign().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), candidate)
        .await
        .expect("b leads soon after a resigns")
        .unwrap();
    assert!(second.is_held() && other.is_held());
    assert!(
        second
            .key()
            .contains("/berth/elections/controller-manager/"),
        "{}",
        second.key()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_is_lost_when_the_lease_cannot_be_renewed() {
    let mut cluster = common::Cluster::single();
    let store = cluster.connect().await;
    let ttl = Duration::from_secs(3);
    let leadership = store.elect("scheduler", "a", ttl).await.unwrap();
    // Renewal keeps it well past the TTL.
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert!(leadership.is_held());
    cluster.kill(0);
    let killed = Instant::now();
    tokio::time::timeout(ttl, leadership.lost())
        .await
        .expect("leadership is lost within the ttl");
    assert!(!leadership.is_held());
    assert!(
        killed.elapsed() <= ttl,
        "lost before etcd could expire the lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_name_with_a_slash_is_refused() {
    let cluster = common::Cluster::single();
    let store = cluster.connect().await;
    let err = store
        .elect("a/b", "x", Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"a/b\"") && err.contains("without '/'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_campaign_does_not_keep_its_lease_alive() {
    let cluster = common::Cluster::single();
    let a = cluster.connect().await;
    let b = cluster.connect().await;
    let c = cluster.connect().await;
    let first = a
        .elect("controller-manager", "a", Duration::from_secs(2))
        .await
        .unwrap();
    // b queues behind a, then gives up (its future is dropped).
    let abandoned = tokio::spawn(async move {
        b.elect("controller-manager", "b", Duration::from_secs(2))
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    abandoned.abort();
    let _ = abandoned.await;
    first.resign().await.unwrap();
    // b's queued key expires with its unrenewed lease, so c leads within a few seconds
    // instead of waiting behind a candidate that no longer exists.
    let third = tokio::time::timeout(
        Duration::from_secs(10),
        c.elect("controller-manager", "c", Duration::from_secs(2)),
    )
    .await
    .expect("c leads once b's lease expired")
    .unwrap();
    assert!(third.is_held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn candidates_lists_the_leader_first_then_waiting_candidates_until_they_leave() {
    let cluster = common::Cluster::single();
    let a = cluster.connect().await;
    let b = cluster.connect().await;
    assert!(a.candidates("lifecycle").await.unwrap().is_empty());
    let first = a
        .elect("lifecycle", "server-a", Duration::from_secs(5))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        b.elect("lifecycle", "server-b", Duration::from_secs(5))
            .await
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.candidates("lifecycle").await.unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "b never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.candidates("lifecycle").await.unwrap(),
        ["server-a", "server-b"]
    );
    // Another election's candidates are not listed.
    assert!(a.candidates("lifecycl").await.unwrap().is_empty());
    first.resign().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("b leads after a resigned")
        .unwrap();
    assert_eq!(a.candidates("lifecycle").await.unwrap(), ["server-b"]);
    second.resign().await.unwrap();
    assert!(a.candidates("lifecycle").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_campaign_leaves_the_election_at_once() {
    let cluster = common::Cluster::single();
    let a = cluster.connect().await;
    let b = cluster.connect().await;
    let first = a
        .elect("lifecycle", "a", Duration::from_secs(30))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let waiting = tokio::spawn(async move {
        b.elect_until("lifecycle", "b", Duration::from_secs(30), async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.candidates("lifecycle").await.unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "b never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.send(()).unwrap();
    assert!(
        waiting.await.unwrap().is_none(),
        "a stopped campaign does not lead"
    );
    // Gone well before its 30 s lease could expire.
    assert_eq!(a.candidates("lifecycle").await.unwrap(), ["a"]);
    assert!(first.is_held());
}
