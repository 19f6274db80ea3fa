//! `berth auth ...`: explain registry credentials. `berth auth match IMAGE --secret FILE... [--docker-config
//! [FILE]]` lists, in the order kubelet would try them, the credentials that match an image: pod secrets in the
//! order given (like `imagePullSecrets`), then the node Docker config's `auths`, then (a berth addition, only with
//! `--docker-config`) a configured credential helper. It prints where each came from, the key that matched and
//! the user name; it must never print a password, token or `auth` value. Exit status: 0 when at least one
//! credential matches, 1 when none does (the pull would be anonymous) or an input is invalid.

use std::path::PathBuf;

use anyhow::{Context, Result};
use credentials::{
    DockerCliConfig, HelperRunner, KeyVerdict, Keyring, MatchedCredential, Origin, PullKeyring,
    PullSecret,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show which credentials would be tried for IMAGE, in order, and why.
    ///
    /// Exit status: 0 when a credential matches, 1 when none does or an input is invalid.
    Match(MatchArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct MatchArgs {
    /// The image, as written in the Pod spec (e.g. `nginx`, `reg.example.com/team/app:1`)
    pub image: String,
    /// A Secret manifest (YAML or JSON, as `kubectl get secret -o yaml` prints it); repeat in imagePullSecrets order
    #[arg(long = "secret", value_name = "FILE")]
    pub secrets: Vec<PathBuf>,
    /// Also use a Docker config; without FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json
    #[arg(long = "docker-config", value_name = "FILE", num_args = 0..=1)]
    pub docker_config: Option<Option<PathBuf>>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

pub async fn run(c: Command) -> Result<i32> {
    match c {
        Command::Match(args) => match_image(args),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonCredential {
    source: &'static str,
    secret: Option<String>,
    namespace: Option<String>,
    file: Option<String>,
    helper: Option<String>,
    key: String,
    normalized_key: String,
    docker_hub_fallback: bool,
    username: String,
    identity_token: bool,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonKey {
    source: String,
    key: String,
    normalized_key: String,
    matches: bool,
    reason: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport {
    image: String,
    repository: String,
    matched: bool,
    credentials: Vec<JsonCredential>,
    keys: Vec<JsonKey>,
    skipped: Vec<JsonNote>,
}

#[derive(serde::Serialize)]
struct JsonNote {
    source: String,
    reason: String,
}

fn json_credential(m: &MatchedCredential) -> JsonCredential {
    let (source, secret, namespace, file, helper) = match &m.origin {
        Origin::Secret { namespace, name } => {
            ("secret", Some(name.clone()), namespace.clone(), None, None)
        }
        Origin::DockerConfig { path } => ("dockerConfig", None, None, Some(path.clone()), None),
        Origin::Helper { name, path } => (
            "credentialHelper",
            None,
            None,
            Some(path.clone()),
            Some(name.clone()),
        ),
    };
    JsonCredential {
        source,
        secret,
        namespace,
        file,
        helper,
        key: m.key.clone(),
        normalized_key: m.normalized_key.clone(),
        docker_hub_fallback: m.default_registry_fallback,
        username: m.credential.username.clone(),
        identity_token: m.credential.identity_token.is_some(),
    }
}

fn verdicts(k: &Keyring, repository: &str) -> Vec<KeyVerdict> {
    k.explain(repository)
}

/// The server URL Docker passes to helpers for a registry domain.
fn helper_server_url(domain: &str) -> String {
    if domain == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        domain.to_owned()
    }
}

fn read_secrets(paths: &[PathBuf]) -> Result<Vec<PullSecret>> {
    let mut out = Vec::new();
    for p in paths {
        let bytes =
            std::fs::read(p).with_context(|| format!("reading secret manifest {}", p.display()))?;
        out.extend(PullSecret::from_manifest(&bytes, &p.display().to_string())?);
    }
    Ok(out)
}

fn match_image(args: MatchArgs) -> Result<i32> {
    let secrets = read_secrets(&args.secrets)?;
    let mut keyring = PullKeyring::from_secrets(&secrets)?;
    let mut helper_note: Vec<JsonNote> = Vec::new();
    let mut docker_config: Option<(PathBuf, DockerCliConfig)> = None;
    if let Some(arg) = &args.docker_config {
        let path = match arg {
            Some(p) => p.clone(),
            None => credentials::default_docker_config_path().context(
                "no Docker config path: set DOCKER_CONFIG or HOME, or pass --docker-config FILE",
            )?,
        };
        let cfg = credentials::load_docker_config(&path)?;
        keyring.add_node_config(&path, &cfg);
        docker_config = Some((path, cfg));
    }
    let lookup = keyring.lookup(&args.image)?;
    let mut found = lookup.credentials.clone();

    if let Some((path, cfg)) = &docker_config {
        let domain = oci::Reference::parse_normalized(&args.image)?
            .domain()
            .to_owned();
        if let Some(helper) = cfg.helper_for(&domain) {
            let url = helper_server_url(&domain);
            let origin = Origin::Helper {
                name: helper.to_owned(),
                path: path.display().to_string(),
            };
            match HelperRunner::default().get(helper, &url, &path.display().to_string()) {
                Ok(Some(entry)) => found.push(MatchedCredential {
                    origin,
                    key: url.clone(),
                    normalized_key: url,
                    default_registry_fallback: false,
                    credential: entry,
                }),
                Ok(None) => helper_note.push(JsonNote {
                    source: origin.to_string(),
                    reason: format!("has no credential for {url}"),
                }),
                Err(e) => helper_note.push(JsonNote {
                    source: origin.to_string(),
                    reason: e.to_string(),
                }),
            }
        }
    }

    let mut keys = Vec::new();
    for k in [keyring.pod(), keyring.node()] {
        for v in verdicts(k, &lookup.repository) {
            for (origin, written) in &v.written {
                keys.push(JsonKey {
                    source: origin.to_string(),
                    key: written.clone(),
                    normalized_key: v.normalized_key.clone(),
                    matches: v.mismatch.is_none(),
                    reason: v.mismatch.clone(),
                });
            }
        }
        for ig in k.ignored() {
            keys.push(JsonKey {
                source: ig.origin.to_string(),
                key: ig.key.clone(),
                normalized_key: String::new(),
                matches: false,
                reason: Some(format!("ignored: not a valid registry URL ({})", ig.reason)),
            });
        }
    }
    let mut skipped: Vec<JsonNote> = keyring
        .skipped()
        .iter()
        .map(|s| JsonNote {
            source: s.origin.to_string(),
            reason: format!("not used: {}", s.reason),
        })
        .collect();
    skipped.extend(helper_note);

    let report = JsonReport {
        image: args.image.clone(),
        repository: lookup.repository.clone(),
        matched: !found.is_empty(),
        credentials: found.iter().map(json_credential).collect(),
        keys,
        skipped,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print_text(&report, args.secrets.is_empty() && docker_config.is_none()),
    }
    Ok(if report.matched { 0 } else { 1 })
}

fn print_text(r: &JsonReport, no_sources: bool) {
    println!("image {} is looked up as {}", r.image, r.repository);
    if r.matched {
        println!("credentials, in the order they would be tried:");
        for (i, c) in r.credentials.iter().enumerate() {
            let source = match c.source {
                "secret" => match &c.namespace {
                    Some(ns) => format!("secret {ns}/{}", c.secret.as_deref().unwrap_or_default()),
                    None => format!("secret {}", c.secret.as_deref().unwrap_or_default()),
                },
                "credentialHelper" => format!(
                    "credential helper docker-credential-{} (from {})",
                    c.helper.as_deref().unwrap_or_default(),
                    c.file.as_deref().unwrap_or_default()
                ),
                _ => format!("docker config {}", c.file.as_deref().unwrap_or_default()),
            };
            let mut how = format!("key {:?}", c.key);
            if c.key != c.normalized_key {
                how.push_str(&format!(" (normalized {})", c.normalized_key));
            }
            if c.docker_hub_fallback {
                how.push_str(", Docker Hub default-key fallback");
            }
            let user = if c.identity_token {
                "identity token".to_owned()
            } else if c.username.is_empty() {
                "no user name".to_owned()
            } else {
                format!("user {:?}", c.username)
            };
            println!("  {}. {source}: {how}: {user}", i + 1);
        }
    } else {
        println!(
            "no credential matches {}: the pull would be attempted anonymously",
            r.repository
        );
        if no_sources {
            println!("  no --secret or --docker-config was given");
        }
        if r.keys.is_empty() && !no_sources {
            println!("  the given secrets and config hold no registry keys");
        }
    }
    let misses: Vec<&JsonKey> = r.keys.iter().filter(|k| !k.matches).collect();
    if !misses.is_empty() {
        println!("keys that do not match:");
        for k in misses {
            println!(
                "  {} key {:?}: {}",
                k.source,
                k.key,
                k.reason.as_deref().unwrap_or_default()
            );
        }
    }
    for s in &r.skipped {
        println!("note: {}: {}", s.source, s.reason);
    }
}
