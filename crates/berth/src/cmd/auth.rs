//! `berth auth ...`: explain registry credentials. `berth auth match IMAGE --secret FILE... [--docker-config
//! [FILE]]` lists, in the order kubelet would try them, the credentials that match an image: pod secrets in the
//! order given (like `imagePullSecrets`), then the node Docker config's `auths`, then (a berth addition, only with
//! `--docker-config`) a configured credential helper; the list comes from `credentials::credentials_to_try`, the
//! function `berth pull` and `berth doctor` use, so what is shown is what a pull tries. It prints where each came from, the key that matched and
//! the user name; it must never print a password, token or `auth` value. Exit status: 0 when at least one
//! credential matches, 1 when none does (the pull would be anonymous) or an input is invalid.

use std::path::PathBuf;

use anyhow::Result;
use credentials::{
    CredentialSources, HelperRunner, KeyVerdict, Keyring, MatchedCredential, Origin,
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

fn match_image(args: MatchArgs) -> Result<i32> {
    let sources = CredentialSources {
        secrets: args.secrets.clone(),
        docker_config: args.docker_config.clone(),
    };
    // the same function `berth pull` and `berth doctor` build their attempts with
    let found = credentials::credentials_to_try(&args.image, &sources, &HelperRunner::default())?;
    let keyring = &found.keyring;

    let mut keys = Vec::new();
    for k in [keyring.pod(), keyring.node()] {
        for v in verdicts(k, &found.repository) {
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
    let skipped: Vec<JsonNote> = found
        .notes
        .iter()
        .map(|n| JsonNote {
            source: n.source.clone(),
            reason: n.reason.clone(),
        })
        .collect();

    let report = JsonReport {
        image: args.image.clone(),
        repository: found.repository.clone(),
        matched: !found.credentials.is_empty(),
        credentials: found.credentials.iter().map(json_credential).collect(),
        keys,
        skipped,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print_text(
            &report,
            args.secrets.is_empty() && found.docker_config.is_none(),
        ),
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
