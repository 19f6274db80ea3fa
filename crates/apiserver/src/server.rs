//! Server assembly: data-dir layout, TLS and token bootstrap (admin/viewer kubeconfigs, the node token), the
//! datastore (SQLite by default, or etcd through [`spawn_with`]) with Secrets encrypted at rest, the lifecycle
//! tasks (on etcd only on the holder of their election), and the HTTPS listener, with graceful shutdown. [`spawn`] returns once the server is ready (for
//! in-process tests and the all-in-one binary, which mounts the console through it); [`run`] is `spawn` then
//! wait. With [`spawn`], [`crate::storage`] is the only place that names a backend (the handlers see the
//! `Storage` trait). It must never log a token or key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{Role, TokenStore};
use crate::storage::{Datastore, DatastoreError};
use crate::{kubeconfig, lifecycle, pki, serve};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6443";

/// What `berth server` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
}

/// Failures of server startup.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    #[error("storage in {path}: {source}")]
    Store {
        path: PathBuf,
        source: Box<store::StoreError>,
    },
    /// The datastore cannot be opened, or belongs to another cluster (the message names it).
    #[error(transparent)]
    Datastore(Box<DatastoreError>),
    #[error("failed to listen on {addr}: {source}; pick another address with --listen")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to create the default namespaces: {0}")]
    Bootstrap(String),
}

/// The default data directory: `/var/lib/berth/server` as root, else `<user data dir>/berth/server`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/berth/server")
    } else {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("berth")
            .join("server")
    }
}

fn create_private_dir(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| ServerError::DataDir {
            path: path.to_path_buf(),
            source,
        })
}

/// Opens the store of a data dir: SQLite at `<dir>/state.db`, Secrets encrypted with the key file
/// `<dir>/encryption.key`.
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn store::Storage>, ServerError> {
    crate::storage::open(data_dir).map_err(|source| ServerError::Store {
        path: data_dir.to_path_buf(),
        source: Box::new(source),
    })
}

/// A started server, returned by [`spawn`] once it accepts requests and `/readyz` answers ok.
#[derive(Debug)]
pub struct Running {
    /// `https://127.0.0.1:<port>`: the URL in the kubeconfigs (the actual port when the config asked for port 0).
    pub url: String,
    /// The cluster CA certificate (PEM) that signed the serving certificate.
    pub ca_pem: String,
    /// `<data-dir>/pki/ca.crt`.
    pub ca_file: PathBuf,
    /// `<data-dir>/admin.kubeconfig`.
    pub admin_kubeconfig: PathBuf,
    /// `<data-dir>/node.token`: the raw node token (`system:node`) for agents, mode 0600.
    pub node_token_file: PathBuf,
    /// Serves until the shutdown token is cancelled, then drains connections and ends.
    pub task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

/// Starts the server on SQLite (`<data-dir>/state.db`) and returns once it is ready: the data dir, certificates,
/// tokens and kubeconfigs exist, the listener is bound (port 0 picks a free port, reflected in `url` and the
/// kubeconfigs) and the default namespaces are created. `ui`, when given, is the web console's router, served under
/// `/ui` without authentication (see [`crate::ui`]). The server runs in `task` until `shutdown` is cancelled.
pub async fn spawn(
    config: ServerConfig,
    ui: Option<axum::Router>,
    shutdown: CancellationToken,
) -> Result<Running, ServerError> {
    spawn_with(config, Datastore::Sqlite, ui, shutdown).await
}

/// [`spawn`] on the given datastore. On etcd several servers can share one cluster: start the further ones from a
/// copy of the first server's data dir (see [`crate::storage`]); watches come from etcd, so every server sees every
/// write. The data dir still holds certificates, tokens, kubeconfigs and the encryption key.
pub async fn spawn_with(
    config: ServerConfig,
    datastore: Datastore,
    ui: Option<axum::Router>,
    shutdown: CancellationToken,
) -> Result<Running, ServerError> {
    create_private_dir(&config.data_dir)?;
    let paths = pki::PkiPaths::new(&config.data_dir);
    let pki = pki::ensure(&paths, &pki::serving_sans(config.listen.ip()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let mut tokens = TokenStore::open(&config.data_dir)?;
    kubeconfig::write_all(&config.data_dir, local, &pki.ca_pem, &mut tokens)?;
    let (node_token_file, node_token) =
        crate::auth::ensure_node_token(&config.data_dir, &mut tokens)?;
    kubeconfig::write_node(&config.data_dir, local, &pki.ca_pem, &node_token)?;
    drop(node_token);
    let store = crate::storage::open_datastore(&config.data_dir, &datastore, &pki.ca_pem)
        .await
        .map_err(|e| ServerError::Datastore(Box::new(e)))?;
    // On etcd the lifecycle tasks run on one server at a time (its own connection for the election).
    let election = match &datastore {
        Datastore::Sqlite => lifecycle::Election::Sole,
        Datastore::Etcd(etcd) => lifecycle::Election::etcd(
            store_etcd::EtcdStore::connect(etcd.clone())
                .await
                .map_err(|e| ServerError::Datastore(Box::new(DatastoreError::Etcd(e))))?,
            local,
        ),
    };
    let app = Arc::new(App {
        store,
        auth: tokens.authenticator(),
        shutdown: shutdown.clone(),
        ready: AtomicBool::new(false),
        agent_client: Some({
            let (chain, key) = pki.agent_client_identity();
            crate::podlog::AgentClient::new(chain, key)
        }),
        namespaces: Default::default(),
    });
    lifecycle::bootstrap(&app)
        .await
        .map_err(|s| ServerError::Bootstrap(s.message.clone()))?;
    let tls = pki.server_config()?;
    // Holds a store handle: the server's task waits for it, so a stopped server has released the datastore.
    let namespace_cache = tokio::spawn(app.namespaces.clone().run(
        app.store.clone(),
        lifecycle::ns_info().storage_prefix(),
        shutdown.clone(),
    ));
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    let router = crate::ui::router(app.clone(), ui);
    tracing::info!(listen = %local, data_dir = %config.data_dir.display(), datastore = %datastore.describe(&config.data_dir), "berth API server ready");
    let task = tokio::spawn(async move {
        let lifecycle_task = tokio::spawn(lifecycle::run(app.clone(), election));
        serve::serve_tls(listener, tls, router, shutdown).await;
        let _ = lifecycle_task.await;
        let _ = namespace_cache.await;
        Ok(())
    });
    Ok(Running {
        url: kubeconfig::server_url(local),
        ca_pem: pki.ca_pem.clone(),
        ca_file: paths.ca_cert.clone(),
        admin_kubeconfig: config.data_dir.join(kubeconfig::file_name(Role::Admin)),
        node_token_file,
        task,
    })
}

/// Runs the server until `shutdown` is cancelled (no console).
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    let running = spawn(config, None, shutdown).await?;
    match running.task.await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        // The task is never aborted; a cancelled join can only mean the runtime is shutting down.
        Err(_) => Ok(()),
    }
}
