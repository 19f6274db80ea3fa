//! The storage conformance suite: behaviour every [`Storage`] backend must show, as async
//! functions over a [`Backend`] factory, plus [`crate::conformance_tests!`] which expands to one
//! `#[tokio::test]` per case. Backends run it from their integration tests. It must never depend on
//! a particular backend or on timing beyond generous timeouts.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    EventKind, KeyValue, ListOptions, Storage, StorageExt, StoreError, WatchEvent, WatchStream,
};

/// A boxed future, for the object-safe factory.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens a backend at one persistent location. Each call after the previous store was dropped
/// must see the data the previous store committed.
pub trait Backend: Send + Sync {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Storage>>;
}

const WAIT: Duration = Duration::from_secs(20);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next `n` events of `stream`, failing the test on error, end or timeout.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(event))) => out.push(event),
            Ok(Some(Err(e))) => panic!("watch error after {} events: {e}", out.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", out.len()),
            Err(_) => panic!("timed out waiting for watch event {} of {n}", out.len() + 1),
        }
    }
    out
}

/// Asserts that nothing arrives on `stream` within a short time.
pub async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("expected no watch event, got {item:?}");
    }
}

fn summary(events: &[WatchEvent]) -> Vec<(EventKind, String, String, u64)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.key.clone(),
                String::from_utf8_lossy(&e.value).into_owned(),
                e.revision,
            )
        })
        .collect()
}

pub async fn create_get_and_revisions(backend: &dyn Backend) {
    let s = backend.open().await;
    let r0 = s.current_revision().await.unwrap();
    assert_eq!(s.get("/t/a").await.unwrap(), None);
    let r1 = s.create("/t/a", b("one")).await.unwrap();
    assert!(r1 > r0);
    assert_eq!(s.current_revision().await.unwrap(), r1);
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: "/t/a".into(),
            value: b("one"),
            create_revision: r1,
            mod_revision: r1
        }
    );
    let r2 = s.create("/t/b", b("two")).await.unwrap();
    assert!(r2 > r1, "revisions are global and increasing");
}

pub async fn create_existing_key_is_already_exists(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/a", b("one")).await.unwrap();
    let err = s.create("/t/a", b("other")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { key, revision } if key == "/t/a" && *revision == r1),
        "{err}"
    );
    assert_eq!(err.http_status_hint(), 409);
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, b("one"));
    assert_eq!(
        s.current_revision().await.unwrap(),
        r1,
        "a rejected write uses no revision"
    );
}

pub async fn update_is_compare_and_swap(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/a", b("v1")).await.unwrap();
    let r2 = s.update("/t/a", r1, b("v2")).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.value),
        (r1, r2, b("v2"))
    );

    let err = s.update("/t/a", r1, b("stale")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { expected, current, .. } if *expected == r1 && *current == r2),
        "{err}"
    );
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, b("v2"));

    let err = s.update("/t/missing", 1, b("x")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(s.current_revision().await.unwrap(), r2);
}

pub async fn delete_returns_last_value_and_checks_revision(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/a", b("v1")).await.unwrap();
    let r2 = s.update("/t/a", r1, b("v2")).await.unwrap();
    let err = s.delete("/t/a", Some(r1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { current, .. } if current == r2),
        "{err}"
    );
    assert!(s.get("/t/a").await.unwrap().is_some());

    let deleted = s.delete("/t/a", Some(r2)).await.unwrap();
    assert_eq!(deleted.item.value, b("v2"));
    assert_eq!(
        (deleted.item.create_revision, deleted.item.mod_revision),
        (r1, r2)
    );
    assert!(deleted.revision > r2);
    assert_eq!(s.current_revision().await.unwrap(), deleted.revision);
    assert_eq!(s.get("/t/a").await.unwrap(), None);
    let err = s.delete("/t/a", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    let r4 = s.create("/t/a", b("again")).await.unwrap();
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(
        kv.create_revision, r4,
        "re-created key has a new create revision"
    );
    let deleted = s.delete("/t/a", None).await.unwrap();
    assert_eq!(deleted.item.value, b("again"));
}

pub async fn exactly_one_concurrent_update_wins(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/contended", b("0")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.update("/t/contended", r1, Bytes::from(format!("writer-{i}")))
                .await
        }));
    }
    let mut wins = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(rev) => wins.push(rev),
            Err(StoreError::Conflict { expected, .. }) => {
                assert_eq!(expected, r1);
                conflicts += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one winner");
    assert_eq!(conflicts, 31);
    assert_eq!(
        s.get("/t/contended").await.unwrap().unwrap().mod_revision,
        wins[0]
    );
}

pub async fn guaranteed_update_retries_until_applied(backend: &dyn Backend) {
    let s = backend.open().await;
    s.create("/t/counter", b("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                s.guaranteed_update("/t/counter", |kv: &KeyValue| {
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    Ok::<_, StoreError>(Bytes::from((n + 1).to_string()))
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get("/t/counter").await.unwrap().unwrap().value, b("200"));
    let err = s
        .guaranteed_update("/t/none", |_: &KeyValue| Ok::<_, StoreError>(b("x")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

pub async fn prefix_with_trailing_slash_is_isolated(backend: &dyn Backend) {
    let s = backend.open().await;
    let start = s.current_revision().await.unwrap();
    let mut watch = s
        .watch("/registry/core/pods/default/", start)
        .await
        .unwrap();
    s.create("/registry/core/pods/default/a", b("a"))
        .await
        .unwrap();
    s.create("/registry/core/pods/default2/b", b("b"))
        .await
        .unwrap();
    s.create("/registry/core/pods/default/c", b("c"))
        .await
        .unwrap();
    s.create("/registry/core/pods/defaulz", b("z"))
        .await
        .unwrap();
    let list = s
        .list("/registry/core/pods/default/", ListOptions::default())
        .await
        .unwrap();
    let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/core/pods/default/a",
            "/registry/core/pods/default/c"
        ]
    );
    let events = next_events(&mut watch, 2).await;
    let keys: Vec<_> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/core/pods/default/a",
            "/registry/core/pods/default/c"
        ]
    );
    assert_quiet(&mut watch).await;
    let all = s.list("", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 4, "the empty prefix lists everything");
}

pub async fn list_pages_are_one_snapshot_while_writes_continue(backend: &dyn Backend) {
    let s = backend.open().await;
    let mut expected = BTreeMap::new();
    for i in 0..20 {
        let key = format!("/t/p/k{i:02}");
        let rev = s.create(&key, Bytes::from(format!("v{i}"))).await.unwrap();
        expected.insert(key, (format!("v{i}"), rev));
    }
    s.create("/t/q/outside", b("x")).await.unwrap();
    let opts = |token: Option<String>| ListOptions {
        limit: Some(6),
        continue_token: token,
        revision: None,
    };
    let first = s.list("/t/p/", opts(None)).await.unwrap();
    assert_eq!(first.items.len(), 6);
    let snapshot = first.revision;
    let mut seen: Vec<KeyValue> = first.items.clone();
    let mut token = first.continue_token.clone();
    let mut round = 0;
    while let Some(t) = token {
        // Writes between pages: modify, delete, and create keys ahead of and behind the cursor.
        let k10 = s.get("/t/p/k10").await.unwrap();
        if let Some(k10) = k10 {
            s.update(
                "/t/p/k10",
                k10.mod_revision,
                Bytes::from(format!("changed-{round}")),
            )
            .await
            .unwrap();
        }
        if round == 0 {
            s.delete("/t/p/k15", None).await.unwrap();
            s.create("/t/p/k05a", b("new-behind")).await.unwrap();
            s.create("/t/p/k17a", b("new-ahead")).await.unwrap();
            s.delete("/t/p/k19", None).await.unwrap();
            s.create("/t/p/k19", b("recreated")).await.unwrap();
        }
        round += 1;
        let page = s.list("/t/p/", opts(Some(t))).await.unwrap();
        assert_eq!(
            page.revision, snapshot,
            "every page is read at the first page's revision"
        );
        assert!(page.items.len() <= 6);
        seen.extend(page.items);
        token = page.continue_token;
    }
    let got: BTreeMap<_, _> = seen
        .iter()
        .map(|kv| {
            assert!(kv.mod_revision <= snapshot);
            (
                kv.key.clone(),
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                ),
            )
        })
        .collect();
    assert_eq!(seen.len(), got.len(), "no key is listed twice");
    assert_eq!(got, expected);

    let fresh = s.list("/t/p/", ListOptions::default()).await.unwrap();
    assert!(fresh.revision > snapshot);
    let keys: Vec<_> = fresh.items.iter().map(|kv| kv.key.as_str()).collect();
    assert!(keys.contains(&"/t/p/k05a") && keys.contains(&"/t/p/k17a"));
    assert!(!keys.contains(&"/t/p/k15"));
    assert_eq!(fresh.items.len(), 21);
    assert!(fresh.continue_token.is_none());
}

pub async fn list_at_exact_revision(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/x/a", b("a1")).await.unwrap();
    let r2 = s.create("/t/x/b", b("b1")).await.unwrap();
    s.update("/t/x/a", r1, b("a2")).await.unwrap();
    s.delete("/t/x/b", Some(r2)).await.unwrap();
    s.create("/t/x/c", b("c1")).await.unwrap();
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    let old = s.list("/t/x/", at(r2)).await.unwrap();
    assert_eq!(old.revision, r2);
    let state: Vec<_> = old
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone(), kv.mod_revision))
        .collect();
    assert_eq!(state, [("/t/x/a", b("a1"), r1), ("/t/x/b", b("b1"), r2)]);
    let current = s.current_revision().await.unwrap();
    let err = s.list("/t/x/", at(current + 10)).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err}");
}

pub async fn continue_token_of_compacted_revision_is_expired(backend: &dyn Backend) {
    let s = backend.open().await;
    for i in 0..5 {
        s.create(&format!("/t/e/{i}"), b("v")).await.unwrap();
    }
    let first = s
        .list(
            "/t/e/",
            ListOptions {
                limit: Some(2),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    let token = first.continue_token.expect("more pages");
    let r = s.create("/t/e/late", b("v")).await.unwrap();
    s.compact(r).await.unwrap();
    let err = s
        .list(
            "/t/e/",
            ListOptions {
                limit: Some(2),
                continue_token: Some(token),
                revision: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Expired { requested, .. } if requested == first.revision),
        "{err}"
    );
    assert_eq!(err.http_status_hint(), 410);
}

pub async fn invalid_continue_token_is_rejected(backend: &dyn Backend) {
    let s = backend.open().await;
    let err = s
        .list(
            "/t/",
            ListOptions {
                continue_token: Some("bm90LWEtdG9rZW4".into()),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidContinue { .. }), "{err}");
    assert_eq!(err.http_status_hint(), 400);
}

pub async fn watch_replays_history_then_streams_live(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/w/a", b("a1")).await.unwrap();
    let r2 = s.update("/t/w/a", r1, b("a2")).await.unwrap();
    let r3 = s.create("/t/w/b", b("b1")).await.unwrap();
    let mut watch = s.watch("/t/w/", r1).await.unwrap();
    let replayed = next_events(&mut watch, 2).await;
    assert_eq!(
        summary(&replayed),
        [
            (EventKind::Modified, "/t/w/a".into(), "a2".into(), r2),
            (EventKind::Added, "/t/w/b".into(), "b1".into(), r3),
        ]
    );
    let d = s.delete("/t/w/a", None).await.unwrap();
    let r5 = s.create("/t/w/c", b("c1")).await.unwrap();
    let live = next_events(&mut watch, 2).await;
    assert_eq!(
        summary(&live),
        [
            (EventKind::Deleted, "/t/w/a".into(), "a2".into(), d.revision),
            (EventKind::Added, "/t/w/c".into(), "c1".into(), r5),
        ]
    );
    assert_quiet(&mut watch).await;

    let mut from_now = s.watch("/t/w/", r5).await.unwrap();
    assert_quiet(&mut from_now).await;
    let mut future = s.watch("/t/w/", r5 + 2).await.unwrap();
    s.create("/t/w/d", b("d")).await.unwrap();
    let r7 = s.create("/t/w/e", b("e")).await.unwrap();
    let r8 = s.create("/t/w/f", b("f")).await.unwrap();
    assert_eq!(next_events(&mut from_now, 3).await.len(), 3);
    let later = next_events(&mut future, 1).await;
    assert!(later[0].revision > r5 + 2 && later[0].revision >= r7.min(r8));
}

pub async fn delete_event_carries_last_value(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/d/a", b("first")).await.unwrap();
    let mut watch = s.watch("/t/d/", r1).await.unwrap();
    let r2 = s.update("/t/d/a", r1, b("last")).await.unwrap();
    let deleted = s.delete("/t/d/a", Some(r2)).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    assert_eq!(
        summary(&events),
        [
            (EventKind::Modified, "/t/d/a".into(), "last".into(), r2),
            (
                EventKind::Deleted,
                "/t/d/a".into(),
                "last".into(),
                deleted.revision
            ),
        ]
    );
    // The same through history replay.
    let mut replay = s.watch("/t/d/", r2).await.unwrap();
    let events = next_events(&mut replay, 1).await;
    assert_eq!(
        (events[0].kind, events[0].value.clone()),
        (EventKind::Deleted, b("last"))
    );
}

pub async fn watch_from_compacted_revision_is_expired(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/c/a", b("1")).await.unwrap();
    let r2 = s.update("/t/c/a", r1, b("2")).await.unwrap();
    let r3 = s.update("/t/c/a", r2, b("3")).await.unwrap();
    s.compact(r2).await.unwrap();
    let err = match s.watch("/t/c/", r1).await {
        Ok(_) => panic!("watch from a compacted revision must fail"),
        Err(e) => e,
    };
    assert!(
        matches!(err, StoreError::Expired { requested, .. } if requested == r1),
        "{err}"
    );
    assert_eq!(err.http_status_hint(), 410);
    let mut ok = s.watch("/t/c/", r2).await.unwrap();
    let events = next_events(&mut ok, 1).await;
    assert_eq!(events[0].revision, r3);
    // Compaction never touches current values.
    assert_eq!(s.get("/t/c/a").await.unwrap().unwrap().value, b("3"));
    let err = s.compact(r3 + 100).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err}");
}

pub async fn watch_has_no_gap_or_duplicate_under_concurrent_writers(backend: &dyn Backend) {
    let s = backend.open().await;
    let start = s.current_revision().await.unwrap();
    let mut from_start = s.watch("/t/cw/", start).await.unwrap();
    let writers = 4;
    let per_writer = 50;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let key = format!("/t/cw/{w}");
            let mut revs = vec![s.create(&key, b("0")).await.unwrap()];
            for i in 1..per_writer {
                let prev = *revs.last().unwrap();
                revs.push(
                    s.update(&key, prev, Bytes::from(i.to_string()))
                        .await
                        .unwrap(),
                );
                // Unrelated traffic that the watch must skip.
                s.create(&format!("/t/other/{w}-{i}"), b("x"))
                    .await
                    .unwrap();
            }
            revs
        }));
    }
    // A second watch starts in the middle: history replay must hand over to live without loss.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = s.current_revision().await.unwrap();
    let mut from_middle = s.watch("/t/cw/", middle).await.unwrap();
    let mut all_revs = Vec::new();
    for t in tasks {
        all_revs.extend(t.await.unwrap());
    }
    all_revs.sort_unstable();
    let total = writers * per_writer;
    let events = next_events(&mut from_start, total).await;
    let revs: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(revs, all_revs, "every event once, in revision order");
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &events {
        per_key
            .entry(e.key.clone())
            .or_default()
            .push(String::from_utf8_lossy(&e.value).into_owned());
    }
    for values in per_key.values() {
        let want: Vec<String> = (0..per_writer).map(|i| i.to_string()).collect();
        assert_eq!(values, &want);
    }
    let tail: Vec<u64> = all_revs.iter().copied().filter(|r| *r > middle).collect();
    let got: Vec<u64> = next_events(&mut from_middle, tail.len())
        .await
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(got, tail);
    assert_quiet(&mut from_start).await;
    assert_quiet(&mut from_middle).await;
}

pub async fn data_survives_reopen(backend: &dyn Backend) {
    let s = backend.open().await;
    let r1 = s.create("/t/r/a", b("a1")).await.unwrap();
    let r2 = s.update("/t/r/a", r1, b("a2")).await.unwrap();
    let r3 = s.create("/t/r/b", b("b1")).await.unwrap();
    let deleted = s.delete("/t/r/b", Some(r3)).await.unwrap();
    let before = s.current_revision().await.unwrap();
    assert_eq!(before, deleted.revision);
    drop(s);

    let s = backend.open().await;
    assert_eq!(s.current_revision().await.unwrap(), before);
    let kv = s.get("/t/r/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (b("a2"), r1, r2)
    );
    assert_eq!(s.get("/t/r/b").await.unwrap(), None);
    let next = s.create("/t/r/c", b("c1")).await.unwrap();
    assert!(next > before, "revisions never repeat after a restart");
    let mut watch = s.watch("/t/r/", r1).await.unwrap();
    let events = next_events(&mut watch, 4).await;
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.revision)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Modified, r2),
            (EventKind::Added, r3),
            (EventKind::Deleted, deleted.revision),
            (EventKind::Added, next),
        ]
    );
}

/// Expands to one `#[tokio::test]` per conformance case; `$factory` is an expression producing a
/// fresh [`Backend`] for each test.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            create_get_and_revisions,
            create_existing_key_is_already_exists,
            update_is_compare_and_swap,
            delete_returns_last_value_and_checks_revision,
            exactly_one_concurrent_update_wins,
            guaranteed_update_retries_until_applied,
            prefix_with_trailing_slash_is_isolated,
            list_pages_are_one_snapshot_while_writes_continue,
            list_at_exact_revision,
            continue_token_of_compacted_revision_is_expired,
            invalid_continue_token_is_rejected,
            watch_replays_history_then_streams_live,
            delete_event_carries_last_value,
            watch_from_compacted_revision_is_expired,
            watch_has_no_gap_or_duplicate_under_concurrent_writers,
            data_survives_reopen,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $factory;
                $crate::suite::$case(&backend).await;
            }
        )*
    };
}
