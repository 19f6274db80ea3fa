//! `berth run`, `ps`, `stop`, `rm`, `logs` and the hidden `__shim`: containers from the command
//! line. It wires the three libraries together under one root directory: the content store in
//! `<root>/content` (pulling with the same flags as `berth pull` when the image is missing), the
//! snapshotter in `<root>/unpack` (layer snapshots, each container's rootfs, retained as
//! `container:<id>` until `rm`) and the runtime state in `<root>/runtime` (bundles, runc state,
//! logs). It must never hold pull, unpack or runc logic of its own and never print a credential.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use image::{PullOptions, PullRequest, Puller};
use runtime::{
    ContainerState, CreateOptions, ForegroundIo, LogOptions, MountFn, Overrides, RootfsSource,
    Runtime, ShimCommand, Status,
};
use unpack::{SnapshotId, Snapshotter};

use super::pull::{RegistryArgs, RootArgs, open_snapshotter};

/// Folder of the container runtime state under the berth root.
const RUNTIME_DIR: &str = "runtime";
/// The hidden subcommand the runtime re-executes berth with for a detached container.
pub const SHIM_SUBCOMMAND: &str = "__shim";

/// `berth run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Name of the container (default: the first 12 characters of its id)
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container (and release its snapshots) when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container id; output goes to `berth logs`
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Environment variable KEY=VALUE (or KEY to copy it from berth's environment)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print the runtime setup (runc, cgroups) before running
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub root: RootArgs,
    /// Image reference, e.g. registry.example.com:5000/team/app:v1
    pub image: String,
    /// Command and arguments replacing the image's Cmd (after `--`, or right after IMAGE)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `berth ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print container ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub root: RootArgs,
}

/// `berth stop`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before killing
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Containers (name, id or unique id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
    #[command(flatten)]
    pub root: RootArgs,
}

/// `berth rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill a running container before removing it
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Containers (name, id or unique id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
    #[command(flatten)]
    pub root: RootArgs,
}

/// `berth logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the log until the container exits
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Prefix each line with its timestamp
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Container (name, id or unique id prefix)
    pub container: String,
    #[command(flatten)]
    pub root: RootArgs,
}

/// `berth __shim <state root> <id> <runc>` (hidden; started by the runtime for `run -d`).
#[derive(Args, Debug)]
pub struct ShimArgs {
    /// The runtime state root
    pub state_root: PathBuf,
    /// The container id
    pub id: String,
    /// The runc of the runtime that started the shim
    pub runc: PathBuf,
}

fn open_runtime(root: &Path) -> anyhow::Result<Runtime> {
    let dir = root.join(RUNTIME_DIR);
    Runtime::new(&dir)
        .with_context(|| format!("cannot open the container runtime at {}", dir.display()))
}

/// Run a blocking library call off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blocking task panicked")?
}

/// The `-e` entries as `KEY=VALUE`; a bare `KEY` copies berth's own value (and is dropped when
/// unset), as `docker run -e KEY` does.
fn env_overrides(entries: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        if key.is_empty() {
            bail!("-e {e:?}: the variable name is empty; pass KEY=VALUE");
        }
        if e.contains('=') {
            out.push(e.clone());
        } else if let Ok(value) = std::env::var(key) {
            out.push(format!("{key}={value}"));
        }
    }
    Ok(out)
}

/// Image present locally (or pulled now) and unpacked: its config and snapshot chain.
async fn ensure_image(
    args: &RunArgs,
    root: &Path,
    snapshotter: Arc<Snapshotter>,
) -> anyhow::Result<(image::StoredImage, Vec<SnapshotId>)> {
    let reference = oci::Reference::parse_normalized(&args.image)
        .map_err(|e| anyhow::anyhow!("couldn't parse image name {:?}: {e}", args.image))?;
    let name = reference.clone().with_default_tag().to_string();
    let content_dir = root.join(content::CONTENT_DIR);
    let store = content::Store::open(&content_dir)
        .with_context(|| format!("cannot open the content store at {}", content_dir.display()))?;
    let local = {
        let (store, name) = (store.clone(), name.clone());
        blocking(move || Ok(image::load_stored_image(&store, &name)?)).await?
    };
    if let Some(stored) = local {
        let chain = image::unpack_stored(
            snapshotter,
            store,
            stored.name.clone(),
            stored.config.clone(),
            stored.layers.clone(),
        )
        .await
        .with_context(|| format!("failed to prepare image {:?}", args.image))?;
        return Ok((stored, chain));
    }
    eprintln!("Unable to find image {name:?} locally");
    let request = PullRequest {
        reference,
        attempts: args.registry.attempts(&args.image)?,
        platform: args.registry.platform()?,
    };
    let puller = Puller::new(
        args.registry.client()?,
        store.clone(),
        PullOptions::default(),
    )
    .with_snapshotter(snapshotter);
    let pulled = puller
        .pull(&request)
        .await
        .with_context(|| format!("failed to pull image {:?}", args.image))?;
    eprintln!(
        "Pulled {} ({} bytes, {} layers unpacked)",
        pulled.target.digest,
        pulled.size,
        pulled.snapshots.len()
    );
    let stored = {
        let name = pulled.name.clone();
        blocking(move || Ok(image::load_stored_image(&store, &name)?)).await?
    }
    .with_context(|| format!("image {name} vanished from the store right after its pull"))?;
    Ok((stored, pulled.snapshots))
}

/// `berth run`.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let root = args.root.dir();
    let env = env_overrides(&args.env)?;
    let runtime = {
        let root = root.clone();
        blocking(move || open_runtime(&root)).await?
    };
    let info = runtime
        .info()
        .context("cannot inspect the container runtime")?;
    tracing::debug!(cgroups = %info.cgroups, cgroup_parent = %info.cgroup_parent, runc = %info.runc.display(), "runtime");
    if args.verbose {
        eprintln!("{info}");
    }
    let snapshotter = {
        let root = root.clone();
        Arc::new(blocking(move || open_snapshotter(&root)).await?)
    };
    let (stored, chain) = ensure_image(&args, &root, snapshotter.clone()).await?;

    // The rootfs is prepared inside `create`, once the runtime has chosen the container id:
    // the snapshotter keys the container's upper layer (or flattened copy) by that id.
    let prepared_for: Arc<Mutex<Option<String>>> = Arc::default();
    let mount: MountFn = {
        let (snapshotter, chain, prepared_for) =
            (snapshotter.clone(), chain.clone(), prepared_for.clone());
        Box::new(move |target: &Path| {
            let id = runtime::container_id_of_rootfs(target)?;
            let rootfs = snapshotter
                .prepare_rootfs(&chain, &id)
                .map_err(|e| e.to_string())?;
            *prepared_for.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
            rootfs.mount(target).map_err(|e| e.to_string())
        })
    };
    let command = (!args.command.is_empty()).then(|| args.command.clone());
    let options = CreateOptions {
        name: args.name.clone(),
        image: stored.name.clone(),
        config: stored.image_config.config.clone(),
        rootfs: RootfsSource::Mount(mount),
        overrides: Overrides {
            args: command,
            env,
            ..Default::default()
        },
        auto_remove: args.rm,
    };
    let created = {
        let runtime = runtime.clone();
        blocking(move || Ok(runtime.create(options)?)).await
    };
    let state = match created {
        Ok(state) => state,
        Err(e) => {
            let id = prepared_for
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(id) = id {
                release_rootfs(&snapshotter, &id);
            }
            eprintln!("info: cgroup setup: {}", info.cgroups);
            return Err(e.context(format!("cannot create a container from {}", stored.name)));
        }
    };
    tracing::debug!(id = %state.id, name = %state.name, "created");

    if args.detach {
        let shim = ShimCommand {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![SHIM_SUBCOMMAND.into()],
        };
        let started = {
            let (runtime, id) = (runtime.clone(), state.id.clone());
            blocking(move || Ok(runtime.start_detached(&id, &shim)?)).await
        };
        return match started {
            Ok(state) => {
                println!("{}", state.id);
                Ok(0)
            }
            Err(e) => {
                eprintln!("info: cgroup setup: {}", info.cgroups);
                cleanup_failed(&runtime, &snapshotter, &state.id);
                Err(e.context(format!("cannot start container {}", state.name)))
            }
        };
    }

    // SIGINT from the terminal reaches runc too (same process group) and runc forwards it; a
    // SIGTERM sent to berth alone is forwarded here. Either way berth keeps waiting, so the exit
    // is recorded and `--rm` still happens.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let running = {
        let (runtime, id) = (runtime.clone(), state.id.clone());
        tokio::task::spawn_blocking(move || runtime.run_foreground(&id, ForegroundIo::default()))
    };
    tokio::pin!(running);
    let result = loop {
        tokio::select! {
            r = &mut running => break r.context("foreground task panicked")?,
            _ = interrupt.recv() => tracing::debug!("SIGINT: left to runc, which forwards it"),
            _ = terminate.recv() => {
                let (runtime, id) = (runtime.clone(), state.id.clone());
                // Fire and forget: the exit arrives through `running` either way.
                drop(tokio::task::spawn_blocking(move || {
                    let sent = runtime::parse_signal("TERM").and_then(|sig| runtime.kill(&id, sig));
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, "cannot forward SIGTERM to the container");
                    }
                }));
            }
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("info: cgroup setup: {}", info.cgroups);
            if args.rm {
                cleanup_failed(&runtime, &snapshotter, &state.id);
            }
            return Err(
                anyhow::Error::new(e).context(format!("cannot run container {}", state.name))
            );
        }
    };
    if args.rm {
        let (snapshotter, id) = (snapshotter.clone(), state.id.clone());
        blocking(move || {
            release_rootfs(&snapshotter, &id);
            Ok(())
        })
        .await?;
    }
    Ok(code)
}

/// Remove a container that failed to start, with its rootfs.
fn cleanup_failed(runtime: &Runtime, snapshotter: &Snapshotter, id: &str) {
    if let Err(e) = runtime.remove(id, true) {
        tracing::warn!(container = %id, error = %e, "cannot remove the failed container");
    }
    release_rootfs(snapshotter, id);
}

/// Drop a container's rootfs and its hold on the snapshots; failures are logged (the container
/// itself is already gone, and a later `rm` of the same id cannot find it).
fn release_rootfs(snapshotter: &Snapshotter, id: &str) {
    if let Err(e) = snapshotter.remove_rootfs(id) {
        tracing::warn!(container = %id, error = %e, "cannot release the container's snapshots");
    }
}

/// `berth __shim`: the detached container's supervisor; returns the shim's exit status. It runs on the main
/// thread without an async runtime: a shim lives as long as its container, one per container, so it holds no
/// worker threads it never uses (its only other threads copy the container's output).
pub fn shim(args: ShimArgs) -> i32 {
    let code = runtime::shim_main(&args.state_root, &args.id, &args.runc);
    // An `--rm` container was removed by the shim: its snapshots go with it.
    let removed = !args.state_root.join("containers").join(&args.id).exists();
    if removed && let Some(berth_root) = args.state_root.parent() {
        match open_snapshotter(berth_root) {
            Ok(snapshotter) => release_rootfs(&snapshotter, &args.id),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot release snapshots"),
        }
    }
    code
}

/// `berth ps`.
pub async fn ps(args: PsArgs) -> anyhow::Result<i32> {
    let root = args.root.dir();
    let list = blocking(move || Ok(open_runtime(&root)?.list()?)).await?;
    let now = SystemTime::now();
    if !args.quiet {
        println!(
            "{:<14}{:<40}{:<24}{:<18}{:<26}NAMES",
            "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
        );
    }
    for st in list
        .iter()
        .filter(|s| args.all || s.status == Status::Running)
    {
        if args.quiet {
            println!("{}", st.short_id());
            continue;
        }
        println!(
            "{:<14}{:<40}{:<24}{:<18}{:<26}{}",
            st.short_id(),
            st.image,
            quoted_command(&st.command),
            format!("{} ago", human_duration(since(now, st.created.into()))),
            status_text(st, now),
            st.name
        );
    }
    Ok(0)
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// `"sh -c 'echo…"` like docker: the command, truncated to 20 characters, in quotes.
fn quoted_command(command: &[String]) -> String {
    let full = command.join(" ");
    let short: String = if full.chars().count() > 20 {
        full.chars().take(19).chain(['…']).collect()
    } else {
        full
    };
    format!("{short:?}")
}

fn status_text(st: &ContainerState, now: SystemTime) -> String {
    match st.status {
        Status::Created => "Created".to_string(),
        Status::Running => {
            let started = st.started.map_or(st.created.into(), SystemTime::from);
            format!("Up {}", human_duration(since(now, started)))
        }
        Status::Exited => {
            let code = st
                .exit_code
                .map_or_else(|| "?".to_string(), |c| c.to_string());
            match st.finished {
                Some(f) => format!(
                    "Exited ({code}) {} ago",
                    human_duration(since(now, f.into()))
                ),
                None => format!("Exited ({code})"),
            }
        }
    }
}

/// docker's `units.HumanDuration`: "Less than a second", "5 seconds", "About a minute", ...
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours) = (secs / 60, secs / 3600);
    match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        _ if mins == 1 => "About a minute".to_string(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// `berth stop`.
pub async fn stop(args: StopArgs) -> anyhow::Result<i32> {
    let root = args.root.dir();
    let runtime = blocking(move || open_runtime(&root)).await?;
    let grace = Duration::from_secs(args.time);
    let mut code = 0;
    for key in args.containers {
        let runtime = runtime.clone();
        let k = key.clone();
        match blocking(move || Ok(runtime.stop(&k, grace)?)).await {
            Ok(_) => println!("{key}"),
            Err(e) => {
                eprintln!("error: cannot stop container {key:?}: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `berth rm`.
pub async fn rm(args: RmArgs) -> anyhow::Result<i32> {
    let root = args.root.dir();
    let (runtime, snapshotter) = {
        let root = root.clone();
        blocking(move || Ok((open_runtime(&root)?, open_snapshotter(&root)?))).await?
    };
    let snapshotter = Arc::new(snapshotter);
    let mut code = 0;
    for key in args.containers {
        let (runtime, snapshotter, k) = (runtime.clone(), snapshotter.clone(), key.clone());
        let force = args.force;
        let removed = blocking(move || {
            let id = runtime.inspect(&k)?.id;
            runtime.remove(&id, force)?;
            snapshotter.remove_rootfs(&id).with_context(|| {
                format!("container {k} removed, but its snapshots were not released")
            })?;
            Ok(())
        })
        .await;
        match removed {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("error: cannot remove container {key:?}: {e:#}");
                code = 1;
            }
        }
    }
    let snapshots = blocking(move || Ok(snapshotter.gc()?)).await?;
    for id in snapshots {
        tracing::debug!(snapshot = %id, "snapshot removed");
    }
    Ok(code)
}

/// `berth logs`.
pub async fn logs(args: LogsArgs) -> anyhow::Result<i32> {
    let root = args.root.dir();
    let runtime = blocking(move || open_runtime(&root)).await?;
    let opts = LogOptions {
        follow: args.follow,
        timestamps: args.timestamps,
        tail: args.tail,
    };
    let key = args.container;
    blocking(move || {
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        runtime
            .logs(&key, opts, &mut out, &mut err)
            .with_context(|| format!("cannot read the logs of container {key:?}"))?;
        out.flush().ok();
        Ok(())
    })
    .await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_read_like_docker_ps() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(61)), "About a minute");
        assert_eq!(human_duration(s(45 * 60)), "45 minutes");
        assert_eq!(human_duration(s(3600 + 5)), "About an hour");
        assert_eq!(human_duration(s(47 * 3600)), "47 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
    }

    #[test]
    fn env_entries_without_a_value_copy_berths_own_or_are_dropped() {
        let path = std::env::var("PATH").unwrap();
        let out = env_overrides(&[
            "A=1".into(),
            "PATH".into(),
            "BERTH_SURELY_UNSET_VAR_1".into(),
        ])
        .unwrap();
        assert_eq!(out, vec!["A=1".to_string(), format!("PATH={path}")]);
        assert!(env_overrides(&["=x".into()]).is_err());
    }

    #[test]
    fn long_commands_are_cut_to_twenty_characters() {
        assert_eq!(quoted_command(&["sh".into()]), "\"sh\"");
        let long = quoted_command(&["sh".into(), "-c".into(), "echo hello; exit 3".into()]);
        assert_eq!(long.chars().count(), 22, "{long}");
    }
}
