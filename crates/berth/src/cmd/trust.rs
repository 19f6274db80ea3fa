//! `berth trust`: registry TLS trust per host:port from the command line. `fetch` connects to one
//! host:port and prints the chain it presents (subject, issuer, validity, SANs, key type, SHA-256
//! fingerprint) and the verdict against the trust that host gets today (`--hosts-dir`,
//! `--ca-file`, system roots), with the fix. `add` trusts one CA for one host:port: from a file,
//! or from the presented chain picked by a fingerprint checked out of band (or confirmed by a
//! person on a terminal); before saving, the handshake is re-run with the candidate so a problem
//! trust cannot fix (name mismatch, expired certificate) is refused with its reason. `list` and
//! `remove` show and undo. The probing lives in `registry::probe`, the files and the audit log in
//! `hosts::TrustStore`; this module only decides what to ask them and formats. It must never save
//! a certificate nobody vouched for (no silent trust on first use) and never write trust for any
//! host:port but the one named.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use registry::{CertInfo, ChainReport, HostPort, Role, TlsErrorClass, Verdict};

use crate::cmd::pull::{Output, client_with, trust_source};

/// `berth trust ...`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Connect to HOST[:PORT] and show the certificate chain it presents, with SHA-256
    /// fingerprints, and whether this machine trusts it for that host.
    ///
    /// Exit status: 0 when the chain is trusted, 2 when it was fetched but is not trusted,
    /// 1 when the host could not be reached or an input is invalid.
    Fetch(FetchArgs),
    /// Trust a CA for HOST[:PORT] only, written to the hosts directory (pulls and agents that
    /// watch that directory use it at once) and recorded in its audit log.
    ///
    /// With --fingerprint, the certificate is taken from the chain the server presents and must
    /// match the fingerprint you got from the registry's administrator. With --from-server alone,
    /// the chain's CA is shown and you are asked to confirm (a terminal is required).
    Add(AddArgs),
    /// List the CAs trusted per host in the hosts directory.
    List(ListArgs),
    /// Stop trusting the CAs `berth trust add` wrote for HOST[:PORT] (all, or one by fingerprint).
    Remove(RemoveArgs),
}

/// `berth trust fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The registry (or redirect target) as HOST[:PORT]; the port defaults to 443
    pub host: String,
    /// A hosts directory (hosts.toml and certs.d layouts, per host:port; default: /etc/berth/certs.d when it exists)
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// An extra CA bundle (PEM) trusted for every host, added to the system roots
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// A SHA-256 fingerprint as lowercase hex (64 digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(String);

/// clap value parser: `sha256:HEX` or `HEX`, with or without colons, any case.
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    let t = s.trim();
    let t = match t.split_once(':') {
        Some((alg, rest)) if alg.eq_ignore_ascii_case("sha256") => rest,
        _ => t,
    };
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a SHA-256 fingerprint: expected sha256: and 64 hex digits (colons allowed), as berth trust fetch prints"
        ));
    }
    Ok(Fingerprint(hex.to_ascii_lowercase()))
}

/// `berth trust add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The registry (or redirect target) as HOST[:PORT]; the port defaults to 443
    pub host: String,
    /// The SHA-256 fingerprint of the CA (or pinned self-signed certificate) to trust, as
    /// `berth trust fetch` prints it
    #[arg(long, value_name = "sha256:HEX", value_parser = parse_fingerprint)]
    pub fingerprint: Option<Fingerprint>,
    /// Take the CA from the chain the server presents; without --fingerprint, asks for
    /// confirmation on a terminal
    #[arg(long, conflicts_with = "ca_file")]
    pub from_server: bool,
    /// Trust the CA certificate(s) in this PEM file
    #[arg(long = "ca-file", value_name = "FILE", conflicts_with = "fingerprint")]
    pub ca_file: Option<PathBuf>,
    /// The hosts directory to write to
    #[arg(long, value_name = "DIR", default_value = hosts::DEFAULT_HOSTS_DIR)]
    pub hosts_dir: PathBuf,
    /// Also present this client certificate (PEM) to HOST[:PORT] (registries that require mutual
    /// TLS); copied into the host's folder as client.cert
    #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM; default: the --client-cert file holds it too);
    /// copied as client.key, readable by root only
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Trust the CA on every node of the cluster: record it in the cluster's RegistryHost for
    /// HOST[:PORT] (berth.dev/v1), which every agent applies to its next pull, instead of in the
    /// local hosts directory
    #[arg(long)]
    pub cluster: bool,
    /// The kubeconfig for --cluster (default: $KUBECONFIG, ~/.kube/config, then the local
    /// berth server's admin kubeconfig)
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
}

/// `berth trust list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// The hosts directory
    #[arg(long, value_name = "DIR", default_value = hosts::DEFAULT_HOSTS_DIR)]
    pub hosts_dir: PathBuf,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `berth trust remove`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The host as HOST[:PORT]; the port defaults to 443
    pub host: String,
    /// Only the CA whose SHA-256 fingerprint starts with this (at least 8 hex digits)
    #[arg(long, value_name = "sha256:HEX")]
    pub fingerprint: Option<String>,
    /// The hosts directory
    #[arg(long, value_name = "DIR", default_value = hosts::DEFAULT_HOSTS_DIR)]
    pub hosts_dir: PathBuf,
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Fetch(a) => fetch(a).await,
        Command::Add(a) => add(a).await,
        Command::List(a) => list(a),
        Command::Remove(a) => remove(a),
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
    let client = client_with(trust_source(a.hosts_dir.as_deref(), &a.ca_files)?)?;
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

/// The presented certificate to trust, chosen by fingerprint: a CA, or a self-signed leaf (pinned).
fn pick<'a>(report: &'a ChainReport, want: &Fingerprint) -> anyhow::Result<&'a CertInfo> {
    let host = &report.host;
    let Some((i, cert)) = report
        .presented
        .iter()
        .enumerate()
        .find(|(_, c)| c.sha256 == want.0)
    else {
        let shown: Vec<String> = report
            .presented
            .iter()
            .map(|c| format!("{} ({})", c.fingerprint(), c.subject))
            .collect();
        bail!(
            "{host} presented no certificate with fingerprint sha256:{}; it presented {}. Check the fingerprint with the registry's administrator; if the CA is not sent by the server, get its file and use --ca-file",
            want.0,
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(", ")
            }
        );
    };
    let pinned_self_signed_leaf = i == 0 && cert.self_signed;
    if !cert.is_ca && !pinned_self_signed_leaf {
        bail!(
            "sha256:{} is {host}'s own certificate ({}), not a CA; trust the CA that issued it (berth trust fetch {host} shows the chain)",
            want.0,
            cert.subject
        );
    }
    Ok(cert)
}

/// The CA a person is asked to confirm with `--from-server` alone.
fn offered(report: &ChainReport) -> anyhow::Result<&CertInfo> {
    report
        .ca_to_trust()
        .or_else(|| report.presented.first().filter(|c| c.self_signed))
        .with_context(|| {
            format!(
                "{} presented no CA certificate and no self-signed one; get the CA file from the registry's administrator and use --ca-file",
                report.host
            )
        })
}

fn confirm(report: &ChainReport, cert: &CertInfo) -> anyhow::Result<bool> {
    let host = &report.host;
    if !std::io::stdin().is_terminal() {
        bail!(
            "--from-server without --fingerprint needs a person to confirm on a terminal, and standard input is not one; check the fingerprint out of band (berth trust fetch {host}) and pass --fingerprint {}",
            cert.fingerprint()
        );
    }
    eprint!("{}", render(report));
    eprintln!(
        "Trust this certificate for {host} only?\n  Subject: {}\n  SHA-256: {}\nCompare the fingerprint with one obtained from the registry's administrator.",
        cert.subject,
        cert.fingerprint()
    );
    eprint!("Type yes to trust it: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the confirmation")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

async fn add(a: AddArgs) -> anyhow::Result<i32> {
    let host = parse_host(&a.host)?;
    let store = hosts::TrustStore::new(&a.hosts_dir);
    if let Some(cert) = &a.client_cert {
        add_client_identity(&store, &host, cert, a.client_key.as_deref())?;
        if a.ca_file.is_none() && a.fingerprint.is_none() && !a.from_server {
            return Ok(0);
        }
    }
    let pem = match (&a.ca_file, &a.fingerprint, a.from_server) {
        (Some(file), _, _) => std::fs::read(file)
            .with_context(|| format!("cannot read CA file {}", file.display()))?,
        (None, None, false) => {
            bail!(
                "say which certificate to trust: --fingerprint sha256:HEX (see berth trust fetch {host}), --ca-file FILE, or --from-server to confirm on a terminal"
            )
        }
        (None, want, _) => {
            let current = client_with(trust_source(Some(&a.hosts_dir), &[])?)?;
            let report = current
                .fetch_chain(&host, Role::Registry)
                .await
                .with_context(|| format!("cannot fetch the certificate chain of {host}"))?;
            let cert = match want {
                Some(w) => pick(&report, w)?,
                None => {
                    let cert = offered(&report)?;
                    if !confirm(&report, cert)? {
                        eprintln!("not trusted: nothing was changed");
                        return Ok(1);
                    }
                    cert
                }
            };
            check_with_candidate(&host, &a.hosts_dir, cert).await?;
            cert.pem.clone().into_bytes()
        }
    };
    if a.cluster {
        return add_to_cluster(&a, &host, &pem).await;
    }
    let added = store
        .add(&host, &pem)
        .with_context(|| format!("cannot trust the certificate for {host}"))?;
    if added.is_empty() {
        println!("already trusted for {host}: nothing was changed");
    }
    for e in &added {
        println!(
            "trusted sha256:{} ({}, valid until {}) for {} only: {}",
            e.fingerprint,
            e.subject,
            e.not_after,
            e.host,
            e.file.display()
        );
    }
    if !added.is_empty() {
        println!("audit log: {}", store.audit_log_path().display());
    }
    Ok(0)
}

/// `berth trust add --client-cert`: checks that the key matches the certificate, then installs the pair as
/// `client.cert` / `client.key` (0600) in the host's folder, where the certs.d loader presents it to that
/// host:port only.
fn add_client_identity(
    store: &hosts::TrustStore,
    host: &HostPort,
    cert: &Path,
    key: Option<&Path>,
) -> anyhow::Result<()> {
    registry::ClientIdentity::load(cert, key)
        .with_context(|| format!("cannot use the client certificate for {host}"))?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let folder = store.folder_for(host);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let cert_pem = read(cert)?;
    let key_pem = read(key.unwrap_or(cert))?;
    hosts::trust::write_atomic(&folder.join("client.cert"), &cert_pem, 0o644)?;
    hosts::trust::write_atomic(&folder.join("client.key"), &key_pem, 0o600)?;
    println!(
        "client certificate {} presented to {host} only: {}",
        cert.display(),
        folder.join("client.cert").display()
    );
    Ok(())
}

/// `berth trust add --cluster`: every certificate of the PEM into the cluster's RegistryHost for `host`.
async fn add_to_cluster(a: &AddArgs, host: &HostPort, pem: &[u8]) -> anyhow::Result<i32> {
    use crate::cmd::cluster::{self, TrustChange};
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .map(|der| {
            let der = der.map_err(|e| anyhow::anyhow!("{e}"))?;
            CertInfo::from_der(&der).map_err(|e| anyhow::anyhow!(e))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("the certificate to trust for {host} is not valid PEM"))?;
    if certs.is_empty() {
        bail!("no certificate found in the PEM to trust for {host}");
    }
    let client = cluster::client(a.kubeconfig.as_deref()).await?;
    for cert in certs {
        let what = match cluster::trust_host(client.clone(), host, &cert.pem, &cert.sha256).await? {
            TrustChange::Created(name) => format!("created RegistryHost {name}"),
            TrustChange::Updated(name) => format!("updated RegistryHost {name}"),
            TrustChange::Unchanged(name) => {
                println!("already trusted for {host} in RegistryHost {name}: nothing was changed");
                continue;
            }
        };
        println!(
            "trusted sha256:{} ({}) for {host} on every node: {what}",
            cert.sha256, cert.subject
        );
    }
    Ok(0)
}

/// Re-runs the handshake with `cert` added for `host` (nothing saved) and refuses when that
/// trust would not make it pass for a reason trust cannot fix.
async fn check_with_candidate(host: &HostPort, dir: &Path, cert: &CertInfo) -> anyhow::Result<()> {
    let label = format!("{} from {host}", cert.fingerprint());
    let trial =
        trust_source(Some(dir), &[])?.with_candidate(host.clone(), label, cert.pem.as_bytes())?;
    let report = client_with(trial)?
        .fetch_chain(host, Role::Registry)
        .await
        .with_context(|| format!("cannot re-check {host} with the certificate"))?;
    match report.verdict {
        Verdict::Ok => Ok(()),
        // the chain verified; the client certificate is a separate step
        Verdict::Failed(TlsErrorClass::ClientCertRequired | TlsErrorClass::ClientCertRejected) => {
            eprintln!(
                "note: {host} verifies with this CA but wants a client certificate: put client.cert and client.key in {}",
                dir.join(host.to_string()).display()
            );
            Ok(())
        }
        Verdict::Failed(_) => bail!(
            "not trusted: trusting {} for {host} would not fix its TLS: {}",
            cert.fingerprint(),
            match report.failure {
                Some(f) => f.to_string(),
                None => format!("{}; fix: {}", report.detail, report.fix.unwrap_or_default()),
            }
        ),
    }
}

fn list(a: ListArgs) -> anyhow::Result<i32> {
    let listing = hosts::TrustStore::new(&a.hosts_dir).list();
    match a.output {
        Output::Json => {
            let entries: Vec<_> = listing
                .entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "host": e.host,
                        "fingerprint": format!("sha256:{}", e.fingerprint),
                        "subject": e.subject,
                        "notAfter": e.not_after,
                        "file": e.file.display().to_string(),
                        "managed": e.managed,
                        "pinOk": e.pin_ok,
                    })
                })
                .collect();
            let errors: Vec<String> = listing.errors.iter().map(ToString::to_string).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"entries": entries, "errors": errors})
                )?
            );
        }
        Output::Text => {
            if listing.entries.is_empty() {
                println!("no CA is trusted per host in {}", a.hosts_dir.display());
            }
            for e in &listing.entries {
                let how = match (e.managed, e.pin_ok) {
                    (true, true) => "berth trust",
                    (true, false) => {
                        "berth trust, PIN MISMATCH: the file no longer matches its name"
                    }
                    (false, _) => "written by hand",
                };
                println!("{}", e.host);
                println!("  sha256:{}", e.fingerprint);
                println!("  subject: {}, valid until {}", e.subject, e.not_after);
                println!("  file: {} ({how})", e.file.display());
            }
            for err in &listing.errors {
                eprintln!("error: {err}");
            }
        }
    }
    Ok(if listing.errors.is_empty() { 0 } else { 1 })
}

fn remove(a: RemoveArgs) -> anyhow::Result<i32> {
    let host = parse_host(&a.host)?;
    let store = hosts::TrustStore::new(&a.hosts_dir);
    let removed = store
        .remove(&host, a.fingerprint.as_deref())
        .with_context(|| format!("cannot remove trust for {host}"))?;
    if removed.is_empty() {
        eprintln!(
            "error: no CA written by berth trust add is trusted for {host} in {}{} (berth trust list shows them)",
            a.hosts_dir.display(),
            a.fingerprint
                .as_deref()
                .map(|f| format!(" matching {f}"))
                .unwrap_or_default()
        );
        return Ok(1);
    }
    for e in &removed {
        println!(
            "removed sha256:{} ({}) for {}: {}",
            e.fingerprint,
            e.subject,
            host,
            e.file.display()
        );
    }
    Ok(0)
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
    use super::{parse_fingerprint, parse_host};

    #[test]
    fn fingerprint_takes_hex_with_or_without_colons_prefix_and_in_any_case() {
        let hex = "ab".repeat(32);
        let want = parse_fingerprint(&hex).unwrap();
        assert_eq!(parse_fingerprint(&format!("sha256:{hex}")).unwrap(), want);
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{}", hex.to_uppercase())).unwrap(),
            want
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")).unwrap(),
            want
        );
        assert_eq!(parse_fingerprint(&colons).unwrap(), want);
        assert!(
            parse_fingerprint("sha256:abcd")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(parse_fingerprint(&format!("sha1:{hex}")).is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

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
