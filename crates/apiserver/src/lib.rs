//! apiserver: berth's kubectl-compatible HTTPS API server. It owns everything HTTP: TLS bootstrap, bearer-token
//! authentication and the admin/viewer/node roles, routing, request limits, content negotiation at the HTTP edge,
//! CRUD/patch/watch handlers, the pod `binding`, `status` and `log` subresources (logs proxied to the node agent
//! over pinned mutual TLS), the create-only `registrychecks` (forwarded to a Ready node's agent over the same
//! channel), metadata semantics (uid, resourceVersion, generation, generateName, finalizers,
//! deletion and garbage collection), the namespace lifecycle, and mounting the web console under `/ui`
//! ([`spawn`] with a router). Object formats come from `wire`, the object model
//! (registry, defaulting, validation, Status, OpenAPI, discovery) from `api`, and persistence from the `store`
//! trait (the datastore, SQLite or etcd, is chosen in [`storage`] only). It must never name a storage backend
//! beyond that trait outside [`storage`], and never log a Secret's data or a token.

mod app;
pub mod auth;
mod binding;
mod bridge;
mod codec;
mod discovery;
mod files;
mod handlers;
pub mod kubeconfig;
mod lifecycle;
mod meta;
mod nscache;
pub mod pki;
pub mod podlog;
mod registrycheck;
pub mod routes;
mod scale;
mod serve;
pub mod server;
pub mod storage;
pub mod ui;
mod watch;

pub use server::{
    DEFAULT_LISTEN, Running, ServerConfig, ServerError, default_data_dir, run, spawn, spawn_with,
};
pub use storage::{Datastore, DatastoreError, MigrationReport, migrate_sqlite_to_etcd, rotate_key};
pub use store_etcd::{EtcdConfig, EtcdTls};
pub use tokio_util::sync::CancellationToken;
