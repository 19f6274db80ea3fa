//! Server assembly: data-dir layout, TLS and token bootstrap, kubeconfigs, the SQLite store with Secrets
//! encrypted at rest, the lifecycle tasks, and the HTTPS listener, with graceful shutdown. The only place that
//! names the SQLite backend (the handlers see the `Storage` trait). It must never log a token or key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::app::{self, App};
use crate::auth::TokenStore;
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

/// Runs the server until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    create_private_dir(&config.data_dir)?;
    let pki = pki::ensure(
        &pki::PkiPaths::new(&config.data_dir),
        &pki::serving_sans(config.listen.ip()),
    )?;
    let mut tokens = TokenStore::open(&config.data_dir)?;
    kubeconfig::write_all(&config.data_dir, config.listen, &pki.ca_pem, &mut tokens)?;
    let store = open_store(&config.data_dir)?;
    let app = Arc::new(App {
        store,
        auth: tokens.authenticator(),
        shutdown: shutdown.clone(),
        ready: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    lifecycle::bootstrap(&app)
        .await
        .map_err(|s| ServerError::Bootstrap(s.message.clone()))?;
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    let lifecycle_task = tokio::spawn(lifecycle::run(app.clone()));
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "berth API server ready");
    serve::serve_tls(
        listener,
        pki.server_config()?,
        app::router(app.clone()),
        shutdown,
    )
    .await;
    let _ = lifecycle_task.await;
    Ok(())
}
