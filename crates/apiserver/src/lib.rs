//! apiserver: berth's kubectl-compatible HTTPS API server. It owns everything HTTP: TLS bootstrap, bearer-token
//! authentication and the admin/viewer roles, routing, request limits, content negotiation at the HTTP edge,
//! CRUD/patch/watch handlers, metadata semantics (uid, resourceVersion, generation, generateName, finalizers,
//! deletion and garbage collection) and the namespace lifecycle. Object formats come from `wire`, the object model
//! (registry, defaulting, validation, Status, OpenAPI, discovery) from `api`, and persistence from the `store`
//! trait. It must never name a storage backend beyond that trait, and never log a Secret's data or a token.

mod app;
pub mod auth;
mod bridge;
mod codec;
mod discovery;
mod files;
mod handlers;
pub mod kubeconfig;
mod lifecycle;
mod meta;
pub mod pki;
pub mod routes;
mod scale;
mod serve;
pub mod server;
pub mod storage;
mod watch;

pub use server::{DEFAULT_LISTEN, ServerConfig, ServerError, default_data_dir, run};
pub use storage::rotate_key;
pub use tokio_util::sync::CancellationToken;
