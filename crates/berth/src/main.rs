//! berth: the command-line entry point. It parses arguments (clap), sets up logging and hands each subcommand to
//! its module under `cmd/`. It owns no logic of its own: every behaviour lives in a library crate, so the binary
//! must never grow parsing, networking or storage code. Each `cmd::*` module exposes `Args` (clap) and
//! `run(args) -> anyhow::Result<i32>`, the process exit code.

mod cmd;

/// mimalloc instead of glibc malloc: the API server allocates many small JSON nodes per request, and glibc's
/// malloc/free took 13 % of a create's CPU in a profile (docs/benchmarks.md, API server). Built without
/// transparent huge pages (`no_thp`): with them every fresh 2 MiB of heap is zeroed at first touch, which made
/// each container's shim (this binary) cost ~30 ms of page clearing at start and grew every process's RSS in
/// 2 MiB steps (perf of a 20-pod start, docs/benchmarks.md, rollout).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "run workloads from images in private third-party registries"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), also read from BERTH_LOG
    #[arg(long, global = true, env = "BERTH_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Image references and local images
    #[command(subcommand)]
    Image(cmd::image::Command),
    /// Registry credentials: which secret and key would be used for an image
    #[command(subcommand)]
    Auth(cmd::auth::Command),
    /// Pull an image into the local content store
    Pull(cmd::pull::PullArgs),
    /// List images in the local store
    Images(cmd::pull::ImagesArgs),
    /// Remove images from the local store (and garbage-collect unreferenced blobs)
    Rmi(cmd::pull::RmiArgs),
    /// Run a command in a new container (pulling and unpacking the image if needed)
    Run(cmd::run::RunArgs),
    /// List containers
    Ps(cmd::run::PsArgs),
    /// Stop running containers (stop signal, then SIGKILL after the grace period)
    Stop(cmd::run::StopArgs),
    /// Remove containers and release their snapshots
    Rm(cmd::run::RmArgs),
    /// Print a detached container's output
    Logs(cmd::run::LogsArgs),
    /// Supervise a detached container (started by `berth run -d`)
    #[command(name = "__shim", hide = true)]
    Shim(cmd::run::ShimArgs),
    /// Registry TLS trust per host: fetch a host's chain, trust its CA, list, remove
    #[command(subcommand)]
    Trust(cmd::trust::Command),
    /// Check the whole pull path of an image step by step and say what fails and how to fix it
    Doctor(cmd::doctor::DoctorArgs),
    /// Run berth on one machine: the API server (kubectl-compatible; SQLite, or etcd with --datastore), the
    /// console at /ui, the controllers and a node agent
    Server(cmd::server::ServerArgs),
    /// Join a cluster as a node: run the pods the scheduler binds to this machine
    Agent(cmd::server::AgentArgs),
    /// Print the admin kubeconfig of a server's data directory
    Kubeconfig(cmd::server::KubeconfigArgs),
    /// Secrets at rest
    #[command(subcommand)]
    Secrets(cmd::server::SecretsCommand),
    /// Copy a stopped server's objects from SQLite to etcd (Secrets stay encrypted)
    Migrate(cmd::migrate::MigrateArgs),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let command = match cli.command {
        // One shim per running container: no async runtime and its threads (see `cmd::run::shim`).
        Command::Shim(a) => std::process::exit(cmd::run::shim(a)),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match command {
            Command::Image(c) => cmd::image::run(c).await,
            Command::Auth(c) => cmd::auth::run(c).await,
            Command::Pull(a) => cmd::pull::pull(a).await,
            Command::Images(a) => cmd::pull::images(a).await,
            Command::Rmi(a) => cmd::pull::rmi(a).await,
            Command::Run(a) => cmd::run::run(a).await,
            Command::Ps(a) => cmd::run::ps(a).await,
            Command::Stop(a) => cmd::run::stop(a).await,
            Command::Rm(a) => cmd::run::rm(a).await,
            Command::Logs(a) => cmd::run::logs(a).await,
            Command::Shim(_) => unreachable!("the shim runs before the async runtime starts"),
            Command::Trust(c) => cmd::trust::run(c).await,
            Command::Doctor(a) => cmd::doctor::run(a).await,
            Command::Server(a) => cmd::server::serve(a).await,
            Command::Agent(a) => cmd::server::agent(a).await,
            Command::Kubeconfig(a) => cmd::server::kubeconfig(a).await,
            Command::Secrets(c) => cmd::server::secrets(c).await,
            Command::Migrate(a) => cmd::migrate::run(a).await,
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
