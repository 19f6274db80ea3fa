//! The backend-neutral storage contract: the [`Storage`] trait, its value types, and the
//! [`StorageExt::guaranteed_update`] retry helper. It owns the semantics every backend must honour
//! (one global revision counter, compare-and-swap on mod revisions, snapshot pagination, gap-free
//! watch) and must never name a backend, a Kubernetes kind, or interpret the stored bytes.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::StoreError;

/// One stored object.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (survives updates; resets on delete + create).
    pub create_revision: u64,
    /// Revision of the last write to the key; becomes `metadata.resourceVersion`.
    pub mod_revision: u64,
}

impl std::fmt::Debug for KeyValue {
    // Values may be Secrets: print their length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// Paging and consistency options of [`Storage::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Maximum number of items in this page; `None` or `Some(0)` means everything.
    pub limit: Option<u64>,
    /// Token from a previous page's [`ListResult::continue_token`]; the page is read at that
    /// page's revision.
    pub continue_token: Option<String>,
    /// List the state as of this exact revision (kube `resourceVersionMatch=Exact`); ignored when
    /// a continue token is given. `None` means the current revision.
    pub revision: Option<u64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Items in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the whole list (all pages) is a snapshot of; becomes the List's
    /// `metadata.resourceVersion`.
    pub revision: u64,
    /// Present when more items follow; opaque, resumes at the same revision.
    pub continue_token: Option<String>,
}

/// Result of [`Storage::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The object as it was just before deletion.
    pub item: KeyValue,
    /// Revision of the delete itself.
    pub revision: u64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change delivered by [`Storage::watch`].
#[derive(Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: String,
    /// The new value; for [`EventKind::Deleted`] the last value before deletion.
    pub value: Bytes,
    /// Revision of this change (for deletes: the delete's revision).
    pub revision: u64,
}

impl std::fmt::Debug for WatchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchEvent")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("revision", &self.revision)
            .finish()
    }
}

/// A watch: events in strictly increasing revision order. The stream ends after yielding
/// [`StoreError::Expired`] (the consumer fell behind the retained history: re-list) and ends
/// without an error when the backend shuts down. Other errors (for example
/// [`StoreError::Decrypt`] for one object) are yielded in place of that event and the stream
/// continues.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// A key-value store with one global revision counter, compare-and-swap, snapshot pagination and
/// watch-from-revision. Object safe: the apiserver holds `Arc<dyn Storage>`.
///
/// Keys are UTF-8 strings; a prefix matches byte-wise, so callers pass a trailing `/` to select a
/// directory (`/registry/core/pods/default/` does not match `/registry/core/pods/default2/x`).
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The current value of `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in key order, as of one revision. Errors with
    /// [`StoreError::Expired`] when a continue token's revision was compacted.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError>;

    /// Create `key`; returns the new revision. [`StoreError::AlreadyExists`] if present.
    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError>;

    /// Replace `key` if its mod revision is `expected_mod_revision`; returns the new revision.
    /// [`StoreError::Conflict`] (with the current revision) or [`StoreError::NotFound`].
    async fn update(
        &self,
        key: &str,
        expected_mod_revision: u64,
        value: Bytes,
    ) -> Result<u64, StoreError>;

    /// Delete `key`, only if its mod revision matches when `expected_mod_revision` is given.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<Deleted, StoreError>;

    /// Every change under `prefix` with a revision greater than `from_revision`, in order:
    /// retained history first, then live, with no gap and no duplicate.
    /// [`StoreError::Expired`] when `from_revision` is older than the retained history.
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, StoreError>;

    /// The revision of the latest committed write (0 for an empty new store).
    async fn current_revision(&self) -> Result<u64, StoreError>;

    /// Drop history at or below `revision`: watches and continue tokens from older revisions
    /// get [`StoreError::Expired`]. Current values are never affected.
    async fn compact(&self, revision: u64) -> Result<(), StoreError>;
}

/// Helpers available on every [`Storage`], including `dyn Storage`.
pub trait StorageExt: Storage {
    /// Read `key`, compute its new value with `f`, and write it with compare-and-swap, retrying
    /// from a fresh read whenever another writer got in between. `f` may be called several
    /// times; it returns the new value or an error that aborts the update. Errors with
    /// [`StoreError::NotFound`] (converted into `E`) when the key does not exist.
    fn guaranteed_update<'a, F, E>(
        &'a self,
        key: &'a str,
        mut f: F,
    ) -> impl Future<Output = Result<KeyValue, E>> + Send + 'a
    where
        F: FnMut(&KeyValue) -> Result<Bytes, E> + Send + 'a,
        E: From<StoreError> + Send + 'a,
    {
        async move {
            let mut current = self.get(key).await?;
            loop {
                let Some(existing) = current.take() else {
                    return Err(StoreError::NotFound {
                        key: key.to_owned(),
                    }
                    .into());
                };
                let value = f(&existing)?;
                match self.update(key, existing.mod_revision, value.clone()).await {
                    Ok(revision) => {
                        return Ok(KeyValue {
                            key: key.to_owned(),
                            value,
                            create_revision: existing.create_revision,
                            mod_revision: revision,
                        });
                    }
                    Err(StoreError::Conflict { .. }) => current = self.get(key).await?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

impl<T: Storage + ?Sized> StorageExt for T {}

#[async_trait::async_trait]
impl<T: Storage + ?Sized> Storage for std::sync::Arc<T> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        (**self).get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        (**self).list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        (**self).create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        expected_mod_revision: u64,
        value: Bytes,
    ) -> Result<u64, StoreError> {
        (**self).update(key, expected_mod_revision, value).await
    }
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<Deleted, StoreError> {
        (**self).delete(key, expected_mod_revision).await
    }
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, StoreError> {
        (**self).watch(prefix, from_revision).await
    }
    async fn current_revision(&self) -> Result<u64, StoreError> {
        (**self).current_revision().await
    }
    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        (**self).compact(revision).await
    }
}
