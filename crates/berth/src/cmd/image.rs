//! `berth image ...`: image reference tools. `berth image parse REF [-o json]` shows how kubelet and containerd
//! read a reference (distribution/reference `ParseNormalizedNamed`, `FamiliarString`, `ParseDockerRef`). This
//! module only calls `oci::reference` and prints; it must never parse references itself.

use anyhow::Result;
use oci::Reference;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Parse an image reference the way kubelet and containerd do, and show its parts.
    ///
    /// Exit status: 0 when the reference is valid, 1 (with the upstream error text) when it is not.
    Parse(ParseArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct ParseArgs {
    /// The image reference, e.g. `nginx`, `reg.example.com:5000/team/app:1.2` or `app@sha256:...`
    pub reference: String,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

pub async fn run(c: Command) -> Result<i32> {
    match c {
        Command::Parse(args) => parse(args),
    }
}

/// The `-o json` document; field names are a stable interface.
#[derive(serde::Serialize)]
struct Parsed {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
    name: String,
    familiar: String,
    normalized: String,
}

fn parse(args: ParseArgs) -> Result<i32> {
    let r = match Reference::parse_normalized(&args.reference) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let parsed = Parsed {
        domain: r.domain().to_owned(),
        path: r.path().to_owned(),
        tag: r.tag().map(str::to_owned),
        digest: r.digest().map(|d| d.to_string()),
        name: r.name(),
        familiar: r.familiar_string(),
        normalized: r.clone().with_default_tag().to_string(),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&parsed)?),
        Output::Text => {
            println!("domain:     {}", parsed.domain);
            println!("path:       {}", parsed.path);
            println!("tag:        {}", parsed.tag.as_deref().unwrap_or("<none>"));
            println!(
                "digest:     {}",
                parsed.digest.as_deref().unwrap_or("<none>")
            );
            println!("name:       {}", parsed.name);
            println!("familiar:   {}", parsed.familiar);
            println!("normalized: {}", parsed.normalized);
        }
    }
    Ok(0)
}
