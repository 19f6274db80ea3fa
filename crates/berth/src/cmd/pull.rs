//! `berth pull`, `berth images`, `berth rmi`: the local image store from the command line. It
//! turns flags into a keyring (the same kubelet rules the agent uses), a registry client with the
//! requested trust, and a `Puller`; then renders progress (bars on a terminal, JSON lines with
//! `-o json`) and the kubelet-style result. It must never print a credential and never hold pull
//! logic of its own.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use credentials::{CredentialSources, HelperRunner, SecretString};
use image::{Attempt, Progress, PullOptions, PullRequest, Puller};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON (progress as JSON lines, then one result object).
    Json,
}

/// Where the store lives.
#[derive(Args, Clone, Debug)]
pub struct RootArgs {
    /// Content store root (default: /var/lib/berth as root, else the user's data directory)
    #[arg(long, value_name = "DIR", env = "BERTH_ROOT")]
    pub root: Option<PathBuf>,
}

impl RootArgs {
    fn open(&self) -> anyhow::Result<content::Store> {
        let dir = self.dir().join(content::CONTENT_DIR);
        content::Store::open(&dir)
            .with_context(|| format!("cannot open the content store at {}", dir.display()))
    }

    /// The root directory (the content store lives in its `content/` folder).
    pub fn dir(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(content::default_root)
    }

    /// The layer snapshotter in the root's `unpack/` folder.
    pub fn snapshotter(&self) -> anyhow::Result<unpack::Snapshotter> {
        open_snapshotter(&self.dir())
    }
}

/// The layer snapshotter under a berth root (`<root>/unpack`).
pub fn open_snapshotter(root: &Path) -> anyhow::Result<unpack::Snapshotter> {
    let dir = root.join(UNPACK_DIR);
    unpack::Snapshotter::open(&dir)
        .with_context(|| format!("cannot open the snapshotter at {}", dir.display()))
}

/// Folder of the snapshotter under the berth root.
const UNPACK_DIR: &str = "unpack";

/// `--creds USER[:PASS]` as parsed: the password, when given, is held only in a redacting type, so a `{:?}` of
/// the arguments never shows it.
#[derive(Clone)]
pub struct CredsArg {
    user: String,
    password: Option<SecretString>,
}

impl std::fmt::Debug for CredsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredsArg")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// clap value parser of `--creds`: USER:PASS (split at the first `:`) or USER alone.
pub fn parse_creds(s: &str) -> Result<CredsArg, String> {
    let (user, password) = match s.split_once(':') {
        Some((u, p)) => (u, Some(SecretString::new(p))),
        None => (s, None),
    };
    if user.is_empty() {
        return Err(
            "the user name is empty; pass USER:PASS, or USER and the password on standard input"
                .into(),
        );
    }
    Ok(CredsArg {
        user: user.to_string(),
        password,
    })
}

/// Credential, trust and platform flags shared by every command that talks to a registry.
#[derive(Args, Clone, Debug)]
pub struct RegistryArgs {
    /// A kubernetes.io/dockerconfigjson or dockercfg Secret manifest (YAML or JSON), tried in order
    #[arg(long = "secret", value_name = "FILE")]
    pub secrets: Vec<PathBuf>,
    /// Credentials USER, with the password read from standard input (not echoed on a terminal), tried first;
    /// USER:PASS also works but exposes the password to other processes
    #[arg(long, value_name = "USER[:PASS]", value_parser = parse_creds)]
    pub creds: Option<CredsArg>,
    /// Also use a Docker config.json, its auths and its credential helper (default: $DOCKER_CONFIG/config.json
    /// or ~/.docker/config.json), tried last
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub docker_config: Option<PathBuf>,
    /// A hosts directory: containerd hosts.toml and Docker certs.d (DIR/HOST:PORT/*.crt CAs, *.cert/*.key client
    /// pairs) per host:port, re-read when it changes (default: /etc/berth/certs.d when it exists)
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// An extra CA bundle (PEM) trusted for every host, added to the system roots
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Platform to select from a multi-platform image: os/arch[/variant] (default: this machine)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

impl RegistryArgs {
    /// The trust every registry command uses: the hosts directory (watched) plus `--ca-file`.
    pub(crate) fn trust(&self) -> anyhow::Result<hosts::TrustSource> {
        trust_source(self.hosts_dir.as_deref(), &self.ca_files)
    }

    pub(crate) fn client(&self) -> anyhow::Result<registry::Client> {
        client_with(self.trust()?)
    }

    pub(crate) fn platform(&self) -> anyhow::Result<oci::Platform> {
        match &self.platform {
            None => Ok(oci::Platform::host()),
            Some(p) => p
                .parse::<oci::Platform>()
                .map_err(|e| anyhow::anyhow!("--platform {p:?}: {e}")),
        }
    }

    /// The credentials to try for `image`: an explicit `--creds`, then what
    /// [`credentials::credentials_to_try`] finds (the same list `berth auth match` prints).
    pub(crate) fn attempts(&self, image: &str) -> anyhow::Result<Vec<Attempt>> {
        let mut attempts = Vec::new();
        if let Some(creds) = &self.creds {
            let password = match &creds.password {
                Some(p) => {
                    warn_password_on_command_line();
                    p.clone()
                }
                None => read_password(&creds.user)?,
            };
            attempts.push(Attempt {
                label: format!("--creds user {:?}", creds.user),
                credential: Some(registry::Credential::password(
                    creds.user.clone(),
                    password.expose(),
                )),
            });
        }
        let sources = CredentialSources {
            secrets: self.secrets.clone(),
            docker_config: self.docker_config.clone().map(Some),
        };
        let found = credentials::credentials_to_try(image, &sources, &HelperRunner::default())?;
        for note in &found.notes {
            tracing::warn!(source = %note.source, reason = %note.reason, "credential source not used");
        }
        for m in found.credentials {
            let label = format!(
                "{} key {:?} user {:?}",
                m.origin, m.key, m.credential.username
            );
            let credential = match &m.credential.identity_token {
                Some(token) if !token.is_empty() => {
                    registry::Credential::identity_token(token.expose())
                }
                _ => registry::Credential::password(
                    m.credential.username.clone(),
                    m.credential.password.expose(),
                ),
            };
            attempts.push(Attempt {
                label,
                credential: Some(credential),
            });
        }
        Ok(attempts)
    }
}

/// The hosts directory given (or the default one when it exists), watched, plus `ca_files` for every host.
pub(crate) fn trust_source(
    hosts_dir: Option<&Path>,
    ca_files: &[PathBuf],
) -> anyhow::Result<hosts::TrustSource> {
    let dir = hosts::effective_hosts_dir(hosts_dir);
    let src = hosts::TrustSource::open(dir.as_deref()).with_context(|| {
        format!(
            "cannot open the hosts directory {}",
            dir.as_deref().unwrap_or(Path::new("")).display()
        )
    })?;
    Ok(src.with_ca_files(ca_files.iter().cloned()))
}

/// A registry client over `trust`.
pub(crate) fn client_with(trust: hosts::TrustSource) -> anyhow::Result<registry::Client> {
    Ok(registry::Client::new(registry::ClientConfig {
        hosts: Arc::new(trust),
        ..registry::ClientConfig::default()
    })?)
}

/// docker's CRED-08 warning, printed once per process.
fn warn_password_on_command_line() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "warning: a password given with --creds USER:PASS is visible to other processes on this machine; use --creds USER and type the password, or pipe it on standard input"
        );
    });
}

/// The password for `--creds USER`: prompted without echo on a terminal, else one line of standard input.
fn read_password(user: &str) -> anyhow::Result<SecretString> {
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("password for {user}: "))
            .context("--creds USER: cannot read the password from the terminal")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("--creds USER: cannot read the password from standard input")?;
        line
    };
    Ok(SecretString::new(line.trim_end_matches(['\r', '\n'])))
}

/// `berth pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference, e.g. registry.example.com:5000/team/app:v1
    pub image: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub root: RootArgs,
    /// Blobs downloaded at once
    #[arg(long, default_value_t = image::PullOptions::default().max_concurrent_downloads)]
    pub max_concurrent_downloads: usize,
    /// Only fetch and verify the blobs; do not unpack the layers into snapshots
    #[arg(long)]
    pub no_unpack: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub async fn pull(args: PullArgs) -> anyhow::Result<i32> {
    let reference = oci::Reference::parse_normalized(&args.image)
        .map_err(|e| anyhow::anyhow!("couldn't parse image name {:?}: {e}", args.image))?;
    let attempts = args.registry.attempts(&args.image)?;
    // kubelet's second duration: everything from here, including waiting for the store's locks and another
    // process's pull of the same blobs (the puller's own time is `pulled.elapsed`)
    let started = std::time::Instant::now();
    let request = PullRequest {
        reference,
        attempts,
        platform: args.registry.platform()?,
    };
    let store = args.root.open()?;
    let mut puller = Puller::new(
        args.registry.client()?,
        store,
        PullOptions {
            max_concurrent_downloads: args.max_concurrent_downloads,
        },
    );
    if !args.no_unpack {
        puller = puller.with_snapshotter(Arc::new(args.root.snapshotter()?));
    }
    let sink: Arc<dyn image::ProgressSink> = match args.output {
        Output::Json => Arc::new(JsonProgress),
        Output::Text if std::io::stderr().is_terminal() => Arc::new(Bars::new()),
        Output::Text => Arc::new(|_: Progress| {}),
    };
    let pulled = puller
        .pull_with_progress(&request, sink)
        .await
        .with_context(|| format!("failed to pull image {:?}", args.image))?;
    match args.output {
        Output::Json => println!(
            "{}",
            json!({
                "image": pulled.name,
                "digest": pulled.target.digest.to_string(),
                "mediaType": pulled.target.media_type,
                "manifest": pulled.manifest.digest.to_string(),
                "config": pulled.config.digest.to_string(),
                "size": pulled.size,
                "downloaded": pulled.downloaded,
                "seconds": pulled.elapsed.as_secs_f64(),
                "secondsIncludingWaiting": started.elapsed().max(pulled.elapsed).as_secs_f64(),
                "credential": pulled.credential,
                "snapshots": pulled.snapshots.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        ),
        Output::Text => {
            println!(
                "{}",
                podpull::texts::pulled(&args.image, pulled.elapsed, started.elapsed(), pulled.size)
            );
            println!("Digest: {}", pulled.target.digest);
            if !pulled.snapshots.is_empty() {
                println!("Unpacked: {} layers", pulled.snapshots.len());
            }
        }
    }
    Ok(0)
}

/// Progress as JSON lines on standard output.
struct JsonProgress;

impl image::ProgressSink for JsonProgress {
    fn event(&self, event: Progress) {
        let line = match event {
            Progress::Resolved {
                digest,
                manifest,
                blobs,
            } => json!({"event": "resolved", "digest": digest.to_string(),
                "manifest": manifest.to_string(),
                "blobs": blobs.iter().map(|(d, s, layer)| json!({"digest": d.to_string(), "size": s, "layer": layer})).collect::<Vec<_>>()}),
            Progress::BlobStarted {
                digest,
                size,
                offset,
            } => {
                json!({"event": "started", "digest": digest.to_string(), "size": size, "offset": offset})
            }
            // Byte counts are folded into "done"; one line per chunk would flood the output.
            Progress::BlobBytes { .. } => return,
            Progress::BlobDone {
                digest,
                size,
                existed,
            } => {
                json!({"event": "done", "digest": digest.to_string(), "size": size, "existed": existed})
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// One progress bar per blob on standard error.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<std::collections::HashMap<oci::Digest, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(Default::default()),
        }
    }

    fn bar(&self, digest: &oci::Digest, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().expect("progress bars");
        bars.entry(digest.clone())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                    )
                    .expect("progress template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(format!("{:.19}", digest.hex()));
                bar
            })
            .clone()
    }
}

impl image::ProgressSink for Bars {
    fn event(&self, event: Progress) {
        match event {
            Progress::Resolved { blobs, .. } => {
                for (d, size, _) in &blobs {
                    self.bar(d, *size);
                }
            }
            Progress::BlobStarted {
                digest,
                size,
                offset,
            } => {
                let bar = self.bar(&digest, size);
                bar.set_position(offset);
                if offset > 0 {
                    bar.set_message("resumed");
                }
            }
            Progress::BlobBytes { digest, bytes } => self.bar(&digest, 0).inc(bytes),
            Progress::BlobDone {
                digest,
                size,
                existed,
            } => {
                let bar = self.bar(&digest, size);
                bar.set_position(size);
                bar.finish_with_message(if existed {
                    "already present"
                } else {
                    "verified"
                });
            }
        }
    }
}

/// `berth images`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub async fn images(args: ImagesArgs) -> anyhow::Result<i32> {
    let store = args.root.open()?;
    let mut records = store.list_images()?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    match args.output {
        Output::Json => {
            let list: Vec<_> = records
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "digest": r.target.digest.to_string(),
                        "mediaType": r.target.media_type,
                        "manifest": r.manifest.as_ref().map(ToString::to_string),
                        "size": r.total_size,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Output::Text => {
            println!("{:<60} {:<20} {:>12}", "IMAGE", "DIGEST", "SIZE");
            for r in &records {
                println!(
                    "{:<60} {:<20} {:>12}",
                    r.name,
                    format!(
                        "{}:{:.12}",
                        r.target.digest.algorithm().as_str(),
                        r.target.digest.hex()
                    ),
                    r.total_size.map(|s| s.to_string()).unwrap_or_default()
                );
            }
        }
    }
    Ok(0)
}

/// `berth rmi`.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Images to remove (as pulled: a reference, normalised the same way)
    #[arg(required = true)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub root: RootArgs,
}

pub async fn rmi(args: RmiArgs) -> anyhow::Result<i32> {
    let store = args.root.open()?;
    let snapshotter = args.root.snapshotter()?;
    let mut code = 0;
    for image in &args.images {
        let name = oci::Reference::parse_normalized(image)
            .map_err(|e| anyhow::anyhow!("couldn't parse image name {image:?}: {e}"))?
            .with_default_tag()
            .to_string();
        let chain = image::load_stored_image(&store, &name)?
            .map(|stored| unpack::chain_ids(&stored.image_config.rootfs.diff_ids))
            .unwrap_or_default();
        if store.remove_image(&name)? {
            if !chain.is_empty() {
                snapshotter.release(&chain, &image::image_user(&name))?;
            }
            println!("Untagged: {name}");
        } else {
            eprintln!("error: no such image: {name} (see `berth images`)");
            code = 1;
        }
    }
    // Snapshots first: a layer still unpacked for a container keeps its snapshot, while the blobs
    // go as soon as no image names them.
    for id in snapshotter.gc()? {
        println!("Deleted snapshot: {id}");
    }
    let report = store.gc(&content::GcOptions::default())?;
    for d in &report.removed {
        println!("Deleted: {d}");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::parse_creds;

    #[test]
    fn creds_password_never_shows_in_debug_and_an_empty_user_is_refused() {
        let c = parse_creds("alice:s3cret:with-colon").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(c.password.as_ref().unwrap().expose(), "s3cret:with-colon");
        assert!(parse_creds("bob").unwrap().password.is_none());
        assert!(
            parse_creds(":pw")
                .unwrap_err()
                .contains("user name is empty")
        );
    }
}
