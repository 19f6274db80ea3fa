//! store: berth's persistence layer. It owns the backend-neutral [`Storage`] contract (get, list
//! with snapshot pagination, create, compare-and-swap update, delete, watch from a revision, one
//! global revision counter that becomes `metadata.resourceVersion`), the default SQLite backend
//! ([`sqlite::SqliteStore`]), encryption at rest for configured key prefixes
//! ([`encryption::Encrypted`]), and the conformance suite every backend must pass (`suite`, behind
//! the `testing` feature), plus [`copy::copy_prefix`], which copies stored bytes between backends
//! (`berth migrate`). It must never know Kubernetes kinds or parse stored values, and never
//! put a stored value or key material in an error, log or `Debug` output.
//!
//! ```no_run
//! use std::sync::Arc;
//! use store::encryption::{EncryptionConfig, Encrypted};
//! use store::sqlite::{SqliteConfig, SqliteStore};
//! use store::{ListOptions, Storage, StorageExt};
//!
//! # async fn demo() -> Result<(), store::StoreError> {
//! let sqlite = SqliteStore::open(SqliteConfig::new("/var/lib/berth/state.db"))?;
//! let store = Arc::new(Encrypted::open(
//!     sqlite,
//!     EncryptionConfig {
//!         prefixes: vec!["/registry/core/secrets/".into()],
//!         key_file: "/var/lib/berth/encryption-keys.json".into(),
//!     },
//! )?);
//! let storage: Arc<dyn Storage> = store.clone(); // what the apiserver holds
//! let rv = storage.create("/registry/core/configmaps/default/a", "{}".into()).await?;
//! storage.update("/registry/core/configmaps/default/a", rv, "{\"x\":1}".into()).await?;
//! storage
//!     .guaranteed_update("/registry/core/configmaps/default/a", |kv| {
//!         Ok::<_, store::StoreError>(kv.value.clone())
//!     })
//!     .await?;
//! let page = storage.list("/registry/core/configmaps/", ListOptions::default()).await?;
//! let _watch = storage.watch("/registry/core/configmaps/", page.revision).await?;
//! store.rotate().await?; // re-encrypt every Secret under a new key
//! # Ok(())
//! # }
//! ```

pub mod copy;
pub mod encryption;
mod error;
mod range;
pub mod sqlite;
mod storage;
#[cfg(feature = "testing")]
pub mod suite;

pub use error::StoreError;
pub use range::{decode_continue, encode_continue};
pub use storage::{
    Deleted, EventKind, KeyValue, ListOptions, ListResult, Storage, StorageExt, WatchEvent,
    WatchStream,
};
