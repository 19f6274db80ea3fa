//! `berth trust`: registry TLS trust per host:port from the command line. `fetch` connects to one
//! host:port and prints the chain it presents (subject, issuer, validity, SANs, key type, SHA-256
//! fingerprint) and the verdict against the trust that host gets today (`--hosts-dir`,
//! `--ca-file`, system roots), with the fix. The probing and the verdict live in
//! `registry::probe`; this module only formats. It must never trust, save or pin anything by
//! itself (no trust on first use).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use registry::{ChainReport, HostPort, Role, Verdict};

use crate::cmd::pull::Output;

/// `berth trust ...`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Connect to HOST[:PORT] and show the certificate chain it presents, with SHA-256
    /// fingerprints, and whether this machine trusts it for that host.
    ///
    /// Exit status: 0 when the chain is trusted, 2 when it was fetched but is not trusted,
    /// 1 when the host could not be reached or an input is invalid.
    Fetch(FetchArgs),
}

/// `berth trust fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The registry (or redirect target) as HOST[:PORT]; the port defaults to 443
    pub host: String,
    /// A certs.d-style directory: DIR/HOST:PORT/*.crt CAs and *.cert/*.key client pairs, per host
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// An extra CA bundle (PEM) trusted for every host, added to the system roots
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Fetch(a) => fetch(a).await,
    }
}

fn parse_host(s: &str) -> anyhow::Result<HostPort> {
    let trimmed = s
        .strip_prefix("https://")
        .unwrap_or(s)
        .trim_end_matches('/');
    HostPort::parse(trimmed, 443).with_context(|| {
        format!("invalid host {s:?}: expected HOST or HOST:PORT, e.g. registry.example.com:5000")
    })
}

async fn fetch(a: FetchArgs) -> anyhow::Result<i32> {
    let host = parse_host(&a.host)?;
    let client =
        registry::Client::new(registry::ClientConfig::with_trust(registry::TrustConfig {
            ca_files: a.ca_files.clone(),
            hosts_dir: a.hosts_dir.clone(),
            ..Default::default()
        }))?;
    let report = client
        .fetch_chain(&host, Role::Registry)
        .await
        .with_context(|| format!("cannot fetch the certificate chain of {host}"))?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)),
    }
    Ok(if report.verdict == Verdict::Ok { 0 } else { 2 })
}

/// The human-readable report.
pub fn render(r: &ChainReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Host:      {}", r.host);
    if let Some(p) = &r.protocol {
        let _ = writeln!(s, "Protocol:  {p}");
    }
    let _ = writeln!(
        s,
        "Certificates presented by the server ({}), leaf first:",
        r.presented.len()
    );
    for (i, c) in r.presented.iter().enumerate() {
        let role = match (i, c.is_ca, c.self_signed) {
            (0, _, true) => "leaf, self-signed",
            (0, _, false) => "leaf",
            (_, true, true) => "root CA",
            (_, true, false) => "intermediate CA",
            (_, false, _) => "not a CA",
        };
        let _ = writeln!(s, "  [{i}] {role}");
        let _ = writeln!(s, "      Subject:   {}", c.subject);
        let _ = writeln!(s, "      Issuer:    {}", c.issuer);
        let _ = writeln!(s, "      Valid:     {} to {}", c.not_before, c.not_after);
        if !c.sans.is_empty() {
            let _ = writeln!(s, "      SANs:      {}", c.sans.join(", "));
        }
        let _ = writeln!(s, "      Key:       {}", c.key_type);
        let _ = writeln!(s, "      Serial:    {}", c.serial);
        let _ = writeln!(s, "      SHA-256:   {}", c.fingerprint());
    }
    let _ = writeln!(s, "Trust consulted for {}:", r.host);
    for src in &r.sources {
        let _ = writeln!(s, "  {src}");
    }
    let _ = writeln!(
        s,
        "Client certificate: {}",
        if r.client_certificate {
            "configured"
        } else {
            "none"
        }
    );
    let _ = writeln!(
        s,
        "Verdict:   {} ({})",
        r.verdict.summary(),
        r.verdict.code()
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(s, "Error:     {f}");
    }
    if let Some(fix) = &r.fix {
        let _ = writeln!(s, "Fix:       {fix}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::parse_host;

    #[test]
    fn host_argument_takes_host_port_and_defaults_to_443() {
        assert_eq!(
            parse_host("reg.example:5000").unwrap().to_string(),
            "reg.example:5000"
        );
        assert_eq!(parse_host("reg.example").unwrap().port(), 443);
        assert_eq!(
            parse_host("https://reg.example:8443/").unwrap().port(),
            8443
        );
        assert!(parse_host("bad host:x").is_err());
    }
}
