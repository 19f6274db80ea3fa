//! `berth server`, `berth agent`, `berth kubeconfig` and `berth secrets rotate-key`: argument parsing and wiring
//! only. `berth server` is the all-in-one: the API server (crate `apiserver`) with the console at `/ui` (crate
//! `console`), the controllers (crate `controllers`) and a node agent for this machine (crate `agent`), each
//! talking to the API like any client; `berth agent` joins another node. The data-dir layout and key rotation
//! live in `apiserver`. This module must never hold server, controller or agent logic, and never print a token
//! except in the kubeconfig the user asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use apiserver::CancellationToken;

use crate::cmd::run::SHIM_SUBCOMMAND;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Directory for state, certificates, tokens and kubeconfigs
    /// [default: /var/lib/berth/server as root, else <user data dir>/berth/server]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to serve HTTPS on
    #[arg(long, default_value = apiserver::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve the API (and console) only: no controllers and no node agent on this machine
    #[arg(long)]
    api_only: bool,
    /// Run the controllers but no node agent on this machine (nodes join with `berth agent`)
    #[arg(long, conflicts_with = "api_only")]
    no_agent: bool,
    /// Where objects are stored: etcd://HOST:PORT[,HOST:PORT...] (or etcds:// with --etcd-cafile) shared by
    /// several servers started from copies of one data dir; default: SQLite in the data dir
    #[arg(long, value_name = "URL")]
    datastore: Option<String>,
    #[command(flatten)]
    etcd_tls: crate::cmd::migrate::EtcdTlsArgs,
    #[command(flatten)]
    node: NodeArgs,
}

/// What the node agent of `berth server` and `berth agent` share.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// The node's name [default: this machine's host name]
    #[arg(long)]
    node_name: Option<String>,
    /// The node's state root: images, snapshots, containers and their logs
    /// [default: /var/lib/berth as root, else the user's data directory]
    #[arg(long, value_name = "DIR", env = "BERTH_ROOT")]
    root: Option<PathBuf>,
    /// A containerd-style hosts directory with this node's own registry trust and mirrors (in addition
    /// to the cluster's RegistryHost objects) [default: /etc/berth/certs.d when it exists]
    #[arg(long, value_name = "DIR")]
    hosts_dir: Option<PathBuf>,
    /// Docker config.json whose credentials this node tries after a pod's pull secrets
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Address of the agent's log endpoint, which the API server calls for `kubectl logs`
    /// [default: the API server's address with a free port for `berth server`, 0.0.0.0:10250 for `berth agent`]
    #[arg(long, value_name = "ADDR")]
    agent_listen: Option<SocketAddr>,
    /// First image pull back-off; it doubles up to --image-pull-backoff-max (kubelet: 10s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", hide = true)]
    image_pull_backoff: Duration,
    /// Longest image pull back-off (kubelet: 300s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "300s", hide = true)]
    image_pull_backoff_max: Duration,
    /// Do not share image blobs with other nodes (by default the agent serves its blobs to registered nodes on
    /// its endpoint and asks them before the registry, one download per blob for the whole cluster)
    #[arg(long)]
    no_peer_blobs: bool,
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The API server, e.g. https://10.0.0.1:6443
    #[arg(long)]
    server: String,
    /// File holding the node token (`node.token` in the server's data directory)
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The cluster CA certificate (`pki/ca.crt` in the server's data directory)
    #[arg(long, value_name = "FILE")]
    ca_file: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// The server's data directory
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the read-only viewer kubeconfig instead of the admin one
    #[arg(long)]
    viewer: bool,
}

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every Secret with a newly generated key (stop every API server of the cluster first; on etcd,
    /// then copy the rotated encryption.key to every server's data dir)
    RotateKey {
        /// The server's data directory
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The cluster's datastore as given to `berth server --datastore` (etcd://HOST:PORT[,HOST:PORT...]);
        /// default: SQLite in the data dir
        #[arg(long, value_name = "URL")]
        datastore: Option<String>,
        #[command(flatten)]
        etcd_tls: crate::cmd::migrate::EtcdTlsArgs,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    hosts::parse::parse_go_duration(s)
}

fn data_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(apiserver::default_data_dir)
}

/// A token cancelled on SIGINT or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        signal.cancel();
    });
    shutdown
}

/// This machine's host name, lowercased, as a node name.
fn host_name() -> anyhow::Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read this machine's host name; pass --node-name")?;
    let name = raw.trim().to_ascii_lowercase();
    anyhow::ensure!(
        !name.is_empty(),
        "this machine has an empty host name; pass --node-name"
    );
    Ok(name)
}

/// A client that authenticates with a bearer token and trusts only `ca_pem`.
async fn token_client(server: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "berth", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "node", "user": {"token": token}}],
        "contexts": [{"name": "node", "context": {"cluster": "berth", "user": "node"}}],
        "current-context": "node",
    });
    let kc: kube::config::Kubeconfig = serde_json::from_value(doc)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("invalid API server address {server:?}"))?;
    Ok(kube::Client::try_from(config)?)
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the node token file {}", path.display()))?;
    let token = token.trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "the node token file {} is empty; copy node.token from the server's data directory",
        path.display()
    );
    Ok(token)
}

impl NodeArgs {
    fn config(
        &self,
        client: kube::Client,
        ca_pem: String,
        default_listen: SocketAddr,
    ) -> anyhow::Result<agent::AgentConfig> {
        let name = match &self.node_name {
            Some(n) => n.clone(),
            None => host_name()?,
        };
        let shim = agent::ShimCommand {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![SHIM_SUBCOMMAND.into()],
        };
        let root = self.root.clone().unwrap_or_else(content::default_root);
        let mut config = agent::AgentConfig::new(name, root, client, ca_pem, shim);
        config.listen = self.agent_listen.unwrap_or(default_listen);
        config.hosts_dir = hosts::effective_hosts_dir(self.hosts_dir.as_deref());
        config.docker_config = self
            .docker_config
            .clone()
            .or_else(credentials::default_docker_config_path);
        config.pull_backoff_initial = self.image_pull_backoff;
        config.pull_backoff_max = self.image_pull_backoff_max.max(self.image_pull_backoff);
        config.peer_blobs = !self.no_peer_blobs;
        Ok(config)
    }
}

/// `berth server`.
pub async fn serve(args: ServerArgs) -> anyhow::Result<i32> {
    let shutdown = shutdown_on_signals();
    let config = apiserver::ServerConfig {
        data_dir: data_dir(args.data_dir),
        listen: args.listen,
    };
    let datastore = args.etcd_tls.datastore(args.datastore.as_deref())?;
    let elected = matches!(datastore, apiserver::Datastore::Etcd(_));
    let running =
        apiserver::spawn_with(config, datastore, Some(console::router()), shutdown.clone())
            .await
            .context("berth server")?;
    let mut tasks = tokio::task::JoinSet::new();
    if !args.api_only {
        let admin = crate::cmd::cluster::client(Some(&running.admin_kubeconfig)).await?;
        let stop = shutdown.clone();
        let options = controllers::ControllerOptions::default();
        // On a shared datastore one server's controllers act at a time (a Lease through the API).
        let lease = elected
            .then(|| {
                let addr = running.url.trim_start_matches("https://");
                host_name().map(|h| controllers::LeaseOptions::new(format!("{h}_{addr}")))
            })
            .transpose()?;
        tasks.spawn(async move {
            match lease {
                Some(lease) => controllers::run_elected(admin, options, lease, stop).await,
                None => controllers::run(admin, options, stop).await,
            }
            .context("controllers")
        });
    }
    if !args.api_only && !args.no_agent {
        let token = read_token(&running.node_token_file)?;
        let client = token_client(&running.url, &running.ca_pem, &token).await?;
        let listen = SocketAddr::new(args.listen.ip(), 0);
        let config = args.node.config(client, running.ca_pem.clone(), listen)?;
        let stop = shutdown.clone();
        tasks.spawn(async move { agent::run(config, stop).await.context("node agent") });
    }
    // A failing part stops the whole process: an all-in-one server without its agent or controllers
    // would look healthy while nothing runs.
    let mut result = Ok(());
    tokio::select! {
        served = running.task => {
            served.context("API server task")?.context("berth server")?;
        }
        Some(part) = tasks.join_next() => {
            result = part.context("server task")?;
            shutdown.cancel();
        }
    }
    shutdown.cancel();
    while let Some(part) = tasks.join_next().await {
        if let Err(e) = part.context("server task")? {
            tracing::error!(error = %format!("{e:#}"), "stopped with an error");
        }
    }
    result.map(|()| 0)
}

/// `berth agent`.
pub async fn agent(args: AgentArgs) -> anyhow::Result<i32> {
    let shutdown = shutdown_on_signals();
    let ca_pem = std::fs::read_to_string(&args.ca_file)
        .with_context(|| format!("cannot read the cluster CA {}", args.ca_file.display()))?;
    let token = read_token(&args.token_file)?;
    let client = token_client(&args.server, &ca_pem, &token).await?;
    let config = args
        .node
        .config(client, ca_pem, SocketAddr::from(([0, 0, 0, 0], 10250)))?;
    agent::run(config, shutdown).await.context("berth agent")?;
    Ok(0)
}

pub async fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<i32> {
    let role = if args.viewer {
        apiserver::auth::Role::Viewer
    } else {
        apiserver::auth::Role::Admin
    };
    let text = apiserver::kubeconfig::read(&data_dir(args.data_dir), role)?;
    print!("{text}");
    Ok(0)
}

pub async fn secrets(c: SecretsCommand) -> anyhow::Result<i32> {
    match c {
        SecretsCommand::RotateKey {
            data_dir: dir,
            datastore,
            etcd_tls,
        } => {
            let dir = data_dir(dir);
            let datastore = etcd_tls.datastore(datastore.as_deref())?;
            let report = apiserver::rotate_key(&dir, &datastore)
                .await
                .with_context(|| {
                    format!(
                        "rotating the secrets encryption key of {} with the key file in {}",
                        datastore.describe(&dir),
                        dir.display()
                    )
                })?;
            println!(
                "secrets re-encrypted with key {}: {} rewritten, {} old key(s) removed",
                report.primary,
                report.rewritten,
                report.removed_keys.len()
            );
            Ok(if report.complete { 0 } else { 1 })
        }
    }
}
