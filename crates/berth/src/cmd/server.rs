//! `berth server`, `berth kubeconfig` and `berth secrets rotate-key`: argument parsing and wiring only. The API
//! server, its data-dir layout and key rotation live in the `apiserver` crate; this module must never hold server
//! logic, and never print a token except in the kubeconfig the user asked for.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use apiserver::CancellationToken;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Directory for state, certificates, tokens and kubeconfigs
    /// [default: /var/lib/berth/server as root, else <user data dir>/berth/server]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to serve HTTPS on
    #[arg(long, default_value = apiserver::DEFAULT_LISTEN)]
    listen: SocketAddr,
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
    /// Re-encrypt every Secret with a newly generated key (stop the server first)
    RotateKey {
        /// The server's data directory
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn data_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(apiserver::default_data_dir)
}

pub async fn serve(args: ServerArgs) -> anyhow::Result<i32> {
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
    let config = apiserver::ServerConfig {
        data_dir: data_dir(args.data_dir),
        listen: args.listen,
    };
    apiserver::run(config, shutdown)
        .await
        .context("berth server")?;
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
        SecretsCommand::RotateKey { data_dir: dir } => {
            let dir = data_dir(dir);
            let report = apiserver::rotate_key(&dir).await.with_context(|| {
                format!("rotating the secrets encryption key in {}", dir.display())
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
