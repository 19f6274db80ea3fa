//! The namespace cache of the create path: which namespaces exist and which are terminating, kept by one
//! list-then-watch of the namespaces prefix, so that a create in an active namespace (nearly every write) needs
//! no store read, as upstream's NamespaceLifecycle admission reads its informer rather than etcd.
//!
//! It only ever answers "active" from the cache. Anything else (not yet synced, namespace unknown to the cache,
//! terminating) sends the caller to the live store read it did before, so a namespace created a moment ago is
//! never refused and a terminating one is judged on its stored state. It must never refuse a request on its
//! own and never hold anything but namespace names and their terminating flag.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use store::{EventKind, ListOptions, Storage, StoreError};
use tokio_util::sync::CancellationToken;

/// Pause before listing again after the store failed or a watch ended.
const RETRY: Duration = Duration::from_secs(1);

/// What the cache knows of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// It exists and has no `deletionTimestamp`.
    Active,
    /// Not known to be active: read the store.
    Ask,
}

#[derive(Default)]
struct State {
    synced: bool,
    /// Namespace name -> terminating.
    namespaces: HashMap<String, bool>,
}

/// Shared by every request; filled by [`NamespaceCache::run`]. Until that task has listed once (and whenever
/// its watch is broken) every lookup answers [`Known::Ask`].
#[derive(Default)]
pub struct NamespaceCache {
    state: RwLock<State>,
}

#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    metadata: StoredMeta,
}

#[derive(Deserialize, Default)]
struct StoredMeta {
    #[serde(default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

impl NamespaceCache {
    pub fn lookup(&self, namespace: &str) -> Known {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        match state.namespaces.get(namespace) {
            Some(false) if state.synced => Known::Active,
            _ => Known::Ask,
        }
    }

    /// Lists the namespaces under `prefix` (`/registry/core/namespaces/`) and follows them until `shutdown`,
    /// listing again whenever the watch breaks (compaction, store restart).
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Storage>,
        prefix: String,
        shutdown: CancellationToken,
    ) {
        loop {
            let synced = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.follow(&*store, &prefix) => r,
            };
            self.unsync();
            if let Err(e) = synced {
                tracing::debug!(error = %e, "namespace cache: listing again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// One list-then-watch; returns when the watch ends.
    async fn follow(&self, store: &dyn Storage, prefix: &str) -> Result<(), StoreError> {
        let list = store.list(prefix, ListOptions::default()).await?;
        let mut namespaces = HashMap::with_capacity(list.items.len());
        for kv in &list.items {
            if let Some(name) = kv.key.strip_prefix(prefix) {
                namespaces.insert(name.to_string(), terminating(&kv.value));
            }
        }
        let mut watch = store.watch(prefix, list.revision).await?;
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.namespaces = namespaces;
            state.synced = true;
        }
        while let Some(event) = watch.next().await {
            let event = event?;
            let Some(name) = event.key.strip_prefix(prefix) else {
                continue;
            };
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            match event.kind {
                EventKind::Deleted => {
                    state.namespaces.remove(name);
                }
                EventKind::Added | EventKind::Modified => {
                    state
                        .namespaces
                        .insert(name.to_string(), terminating(&event.value));
                }
            }
        }
        Ok(())
    }

    fn unsync(&self) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.synced = false;
        state.namespaces.clear();
    }
}

/// Whether a stored Namespace carries a `deletionTimestamp`; an unreadable one counts as terminating, so the
/// caller reads the store and reports the real problem.
fn terminating(value: &[u8]) -> bool {
    serde_json::from_slice::<Stored>(value)
        .map(|s| s.metadata.deletion_timestamp.is_some())
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const PREFIX: &str = "/registry/core/namespaces/";

    async fn store() -> (tempfile::TempDir, Arc<dyn Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let s = store::sqlite::SqliteStore::open(store::sqlite::SqliteConfig::new(
            dir.path().join("db.sqlite"),
        ))
        .unwrap();
        (dir, Arc::new(s))
    }

    async fn eventually(cache: &NamespaceCache, ns: &str, want: Known) {
        for _ in 0..200 {
            if cache.lookup(ns) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{ns} never became {want:?}");
    }

    #[tokio::test]
    async fn answers_active_only_for_listed_or_watched_namespaces_without_deletion_timestamp() {
        let (_dir, store) = store().await;
        let ns = |name: &str, deleting: bool| {
            let mut v = serde_json::json!({"metadata": {"name": name}});
            if deleting {
                v["metadata"]["deletionTimestamp"] = "2026-11-27T00:00:00Z".into();
            }
            Bytes::from(serde_json::to_vec(&v).unwrap())
        };
        store
            .create(&format!("{PREFIX}a"), ns("a", false))
            .await
            .unwrap();
        let cache = Arc::new(NamespaceCache::default());
        assert_eq!(cache.lookup("a"), Known::Ask, "not synced yet");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            cache
                .clone()
                .run(store.clone(), PREFIX.into(), shutdown.clone()),
        );
        eventually(&cache, "a", Known::Active).await;
        assert_eq!(
            cache.lookup("b"),
            Known::Ask,
            "unknown namespaces are read live"
        );

        let rev = store
            .create(&format!("{PREFIX}b"), ns("b", false))
            .await
            .unwrap();
        eventually(&cache, "b", Known::Active).await;
        store
            .update(&format!("{PREFIX}b"), rev, ns("b", true))
            .await
            .unwrap();
        eventually(&cache, "b", Known::Ask).await;
        store.delete(&format!("{PREFIX}a"), None).await.unwrap();
        eventually(&cache, "a", Known::Ask).await;
        // Other prefixes never enter the cache.
        store
            .create("/registry/core/namespacesx/c", ns("c", false))
            .await
            .unwrap();
        store
            .create(&format!("{PREFIX}d"), ns("d", false))
            .await
            .unwrap();
        eventually(&cache, "d", Known::Active).await;
        assert_eq!(cache.lookup("c"), Known::Ask);

        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn an_unreadable_namespace_counts_as_terminating_so_the_store_is_asked() {
        assert!(terminating(b"not json"));
        assert!(!terminating(br#"{"metadata":{"name":"a"}}"#));
        assert!(terminating(br#"{"metadata":{"deletionTimestamp":"x"}}"#));
    }
}
