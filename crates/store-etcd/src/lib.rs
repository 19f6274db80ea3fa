//! store-etcd: the `store::Storage` trait on an etcd v3 cluster (`berth server --datastore
//! etcd://HOST:PORT[,HOST:PORT...]`, or `etcds://` with a CA and an optional client certificate),
//! plus lease-based leader election ([`EtcdStore::elect`]). It must never interpret the values it
//! stores, never name Kubernetes kinds, and never put a value or TLS key material in an error,
//! log or `Debug` output.
//!
//! # Mapping
//! - A storage key `K` is the etcd key `key_prefix + K`. berth's keys already start with
//!   `/registry/` (as kube-apiserver's etcd keys do), so the default `key_prefix` is empty; set
//!   one (for example `/cluster-a`) to share an etcd cluster between several berth clusters.
//! - etcd's cluster-wide revision *is* the store revision (`metadata.resourceVersion`): create,
//!   update and delete return the revision of their etcd transaction, `mod_revision` and
//!   `create_revision` are etcd's own. A fresh etcd starts at revision 1, not 0.
//! - create = txn `create_revision(K) == 0`; update = txn `mod_revision(K) == expected` (and the
//!   key exists); delete = txn with the optional expected `mod_revision`, returning the previous
//!   value. Failed compares read the key in the same transaction to report `AlreadyExists`,
//!   `Conflict` (with the current revision) or `NotFound`.
//! - list reads every page at the first page's revision; the continue token (kube-apiserver's
//!   format, `store::encode_continue`, shared with SQLite) carries that revision and the next key. A compacted revision is `Expired` (410).
//! - watch = etcd watch with previous values from `from_revision + 1`; it resumes on another
//!   member after a failure from the last delivered revision; compaction ends it with `Expired`.
//!
//! # Client crate
//! [`etcd_client`] (crate `etcd-client`, the maintained tonic/prost client of the etcd v3 API,
//! used by GreptimeDB, Databend and others): async, multi-endpoint balancing, TLS through rustls
//! with ring (the workspace's TLS stack), and the v3election service. Its build script compiles
//! etcd's `.proto` files with `protoc`, so building needs Debian's `protobuf-compiler` (protoc
//! 3.21, which handles these proto3 files; `scripts/install-deps` must install it). Of the
//! alternatives, `etcd-rs` runs protoc as well, and `etcdv3client` ships generated code (no
//! protoc) but is a small single-author crate on tonic 0.12 / prost 0.13 (a second gRPC stack
//! next to the workspace's 0.14) without the election service or endpoint balancing; a
//! hand-written gRPC client would only duplicate `etcd-client`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use store::Storage;
//! use store_etcd::{EtcdConfig, EtcdStore};
//! let config = EtcdConfig::from_url("etcd://127.0.0.1:2379,127.0.0.2:2379")?;
//! let store = EtcdStore::connect(config).await?;
//! let rev = store.create("/registry/core/configmaps/default/a", "{}".into()).await?;
//! let leadership = store
//!     .elect("kube-controller-manager", "host-a_1234", std::time::Duration::from_secs(15))
//!     .await?;
//! leadership.lost().await; // stop acting
//! # let _ = rev; Ok(())
//! # }
//! ```

mod backend;
mod config;
mod election;
mod error;
mod watch;

pub use backend::EtcdStore;
pub use config::{EtcdConfig, EtcdTls};
pub use election::Leadership;
pub use error::EtcdError;
