//! agent: the node agent. It registers its Node, runs the Pods bound to it with runc, and reports kubelet-style
//! status, Events and logs. It talks to the API server like any client and must never touch the control plane's
//! storage.
//!
//! Layout under the agent root (several agents on one machine each have their own root):
//! `content/` (the content store), `unpack/` (snapshots and container root filesystems), `runtime/` (runc
//! bundles, state, CRI-format logs), `netns/<pod uid>` (pod network namespaces), `image_manager/` (podpull's
//! records), `pki/` (the log endpoint's self-signed serving certificate) and `cluster-hosts/` (the hosts
//! directory materialised from `RegistryHost` objects).
//!
//! Nodes share image blobs: each agent serves its content store to registered Nodes and asks them before the
//! registry, coordinated through one Lease per blob in `kube-system` (see `peers`); every byte from a peer is
//! verified against the registry's manifest.
//!
//! It never reads a Secret of another namespace for a Pod, never stops containers on its own shutdown (a
//! restarted agent re-adopts them from the runtime's state) and never puts a credential in a log, Event or
//! annotation. Pull logic lives in crate `podpull`; runc logic in crate `runtime`.

mod backoff;
mod check;
mod env;
mod error;
mod events;
mod logs;
mod netns;
mod node;
mod peers;
mod pods;
mod progress;
mod server;
mod status;
mod trackers;
mod trust;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::AgentError;
pub use runtime::ShimCommand;
pub use tokio_util::sync::CancellationToken;

/// The kubelet version the agent reports in `nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.32.0-berth";

/// Annotation on the Node with the lowercase hex SHA-256 of the DER of the agent's serving certificate.
pub const SERVING_CERT_ANNOTATION: &str = "berth.dev/serving-cert-sha256";

/// Annotation on a Pod with the per-layer progress of its current image pull (JSON).
pub const PULL_PROGRESS_ANNOTATION: &str = "berth.dev/pull-progress";

pub use peers::{BLOB_NODES_ANNOTATION, CLAIM_NAMESPACE, TRACKER_LABEL, tracker_name};

/// The only client certificate common name the log endpoint accepts.
pub const APISERVER_CLIENT_CN: &str = "berth:apiserver";

/// Folder of the materialised cluster trust under the agent root.
pub const CLUSTER_HOSTS_DIR: &str = "cluster-hosts";

/// kubelet's container restart back-off (`10s` doubling to `300s`, reset after `10m` of running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashBackoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for CrashBackoff {
    fn default() -> Self {
        CrashBackoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// Everything one agent needs.
#[derive(Clone)]
pub struct AgentConfig {
    /// The Node name (also the `kubernetes.io/hostname` label).
    pub node_name: String,
    /// The agent's state root (see the crate doc for the layout).
    pub root: PathBuf,
    /// An API client with the node's identity.
    pub client: kube::Client,
    /// The cluster CA (PEM): client certificates on the log endpoint must chain to it.
    pub ca_pem: String,
    /// Address of the log endpoint (`127.0.0.1:0` picks a free port, published on the Node).
    pub listen: SocketAddr,
    /// How often the Ready condition is posted (kubelet: 10 s).
    pub heartbeat: Duration,
    /// The node-local containerd-style hosts directory (registry trust and mirrors), if any.
    pub hosts_dir: Option<PathBuf>,
    /// The node's Docker `config.json` credentials, tried after a Pod's pull secrets.
    pub docker_config: Option<PathBuf>,
    /// Image pull back-off (kubelet: 10 s doubling to 300 s).
    pub pull_backoff_initial: Duration,
    pub pull_backoff_max: Duration,
    /// Container restart back-off.
    pub crash_backoff: CrashBackoff,
    /// KEP-2535: re-verify credentials before a pod uses a cached private image (default on).
    pub verify_pull_credentials: bool,
    /// How the detached-container shim is started (`berth __shim`; a test binary may be its own shim).
    pub shim: ShimCommand,
    /// A specific runc binary (default: found on PATH).
    pub runc: Option<PathBuf>,
    /// Share blobs with other nodes: serve this node's content store on `GET /blobs/{digest}` to registered
    /// Nodes and ask them (coordinated through a Lease per blob) before the registry (default on).
    pub peer_blobs: bool,
    /// How often the blob trackers of nodes that lost the blob or left are cleaned (with `peer_blobs`).
    pub tracker_sweep: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("node_name", &self.node_name)
            .field("root", &self.root)
            .field("listen", &self.listen)
            .field("heartbeat", &self.heartbeat)
            .field("hosts_dir", &self.hosts_dir)
            .field("docker_config", &self.docker_config)
            .field("crash_backoff", &self.crash_backoff)
            .field("peer_blobs", &self.peer_blobs)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// A configuration with kubelet's defaults for everything but the identity, root and client.
    pub fn new(
        node_name: impl Into<String>,
        root: impl Into<PathBuf>,
        client: kube::Client,
        ca_pem: impl Into<String>,
        shim: ShimCommand,
    ) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            root: root.into(),
            client,
            ca_pem: ca_pem.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat: Duration::from_secs(10),
            hosts_dir: None,
            docker_config: None,
            pull_backoff_initial: Duration::from_secs(10),
            pull_backoff_max: Duration::from_secs(300),
            crash_backoff: CrashBackoff::default(),
            verify_pull_credentials: true,
            shim,
            runc: None,
            peer_blobs: true,
            tracker_sweep: trackers::SWEEP_EVERY,
        }
    }
}

/// What a started agent tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound address of the log endpoint.
    pub listen: SocketAddr,
    /// Lowercase hex SHA-256 of the serving certificate's DER (also on the Node).
    pub serving_cert_sha256: String,
}

/// Run the agent until `shutdown` is cancelled. Containers keep running after it returns.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    run_with_ready(config, shutdown, tx).await
}

/// [`run`], reporting the bound log endpoint once the agent serves (for `listen` port 0).
pub async fn run_with_ready(
    config: AgentConfig,
    shutdown: CancellationToken,
    ready: tokio::sync::oneshot::Sender<Started>,
) -> Result<(), AgentError> {
    let identity = server::ServingIdentity::load_or_create(&config.root, &config.node_name)?;
    let peers = config.peer_blobs.then(|| {
        Arc::new(peers::Peers::new(
            &config.node_name,
            config.client.clone(),
            identity.cert.clone(),
            identity.key.clone_key(),
        )) as Arc<dyn image::BlobPeers>
    });
    let agent = pods::Agent::open(&config, peers).await?;
    let agent = Arc::new(agent);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| AgentError::Listen {
        addr: config.listen,
        source,
    })?;
    let tls = server::tls_config(&identity, &config.ca_pem)?;
    let node = node::NodeReporter::new(&config, bound, identity.fingerprint.clone(), &agent)?;
    node.register().await?;

    let mut tasks = tokio::task::JoinSet::new();
    {
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { server::serve(listener, tls, agent, shutdown).await });
    }
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            node.heartbeat_loop(shutdown).await;
            Ok(())
        });
    }
    {
        let client = config.client.clone();
        let dir = config.root.join(CLUSTER_HOSTS_DIR);
        let shutdown = shutdown.clone();
        tasks.spawn(async move { trust::watch_registry_hosts(client, dir, shutdown).await });
    }
    {
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { agent.run_pods(shutdown).await });
    }
    if config.peer_blobs {
        let sweeper = trackers::Sweeper::new(
            &config.node_name,
            config.client.clone(),
            agent.store.clone(),
        );
        let (every, shutdown) = (config.tracker_sweep, shutdown.clone());
        tasks.spawn(async move {
            sweeper.run(every, shutdown).await;
            Ok(())
        });
    }
    let _ = ready.send(Started {
        listen: bound,
        serving_cert_sha256: identity.fingerprint.clone(),
    });
    tracing::info!(node = %config.node_name, listen = %bound, "agent running");

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = match joined {
            Ok(r) => r,
            Err(e) => Err(AgentError::Task(e.to_string())),
        };
        if let Err(e) = outcome {
            if result.is_ok() {
                tracing::error!(error = %e, "agent task failed; shutting down");
                result = Err(e);
            }
            shutdown.cancel();
        }
    }
    agent.shutdown_workers().await;
    result
}
