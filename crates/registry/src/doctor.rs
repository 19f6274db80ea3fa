//! `berth doctor IMAGE`: walk the whole pull path one step at a time and say which step fails,
//! why, and what to do.
//!
//! It owns the checklist: reference -> host config -> DNS -> TCP -> TLS -> `/v2/` -> auth
//! challenge -> token -> manifest -> blob (the image's smallest blob, fetched like a pull fetches
//! it, following redirects, and digest-verified when small, so a CDN's own TLS or trust problem is
//! found and named with its host:port). Each step is a
//! [`Step`] (ok / fail / skipped, detail, fix); after the first failure the remaining steps are
//! skipped. Every network step goes through the same [`Client`] (and so the same per-host trust
//! and credential rules) a pull uses; TLS verdicts come from [`crate::probe`], fixes from
//! [`crate::tls::TlsFailure::hint`] and the error kinds of [`RegistryError`]. Credentials are
//! tried in the caller's order and, like a pull, the next one is tried only after a 401/403.
//! It must never print a secret (details carry labels and user names only, and server text has
//! already been scrubbed by the repository), never change trust, and never write to disk.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;

use crate::auth::{Credential, validate_realm};
use crate::challenge::parse_headers;
use crate::client::{Client, Ctx};
use crate::error::{ErrorKind, RegistryError, Role};
use crate::origin::{HostPort, Origin, Scheme, redact_url};
use crate::probe::Verdict;
use crate::repository::Repository;

/// The result of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The step passed.
    Ok,
    /// The step failed: the pull would fail here.
    Fail,
    /// The step was not run (an earlier step failed, or it does not apply).
    Skipped,
}

impl Outcome {
    /// `ok`, `FAIL`, `skipped`: how the checklist prints it.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One line of the checklist.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// `reference`, `host config`, `dns`, `tcp`, `tls`, `v2 api`, `auth challenge`, `token`,
    /// `manifest`, `blob`.
    pub name: &'static str,
    /// Result.
    pub outcome: Outcome,
    /// The host:port this step talked to (the redirect target for a redirected blob).
    pub host: Option<String>,
    /// What was found (or why it failed, or why it was skipped).
    pub detail: String,
    /// What to do, on failure.
    pub fix: Option<String>,
}

/// The whole checklist.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The image as given.
    pub image: String,
    /// Steps in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// True when no step failed: a pull would succeed.
    pub fn passed(&self) -> bool {
        !self.steps.iter().any(|s| s.outcome == Outcome::Fail)
    }

    /// The first failing step.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.outcome == Outcome::Fail)
    }
}

/// One credential to try (the same order a pull would use), or anonymous.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Where it came from, e.g. `secret "regcred" key "reg.example:5000" user "alice"`; never a
    /// secret value.
    pub label: String,
    /// The credential, or none for anonymous access.
    pub credential: Option<Credential>,
}

/// The step names, in order.
pub const STEPS: [&str; 10] = [
    "reference",
    "host config",
    "dns",
    "tcp",
    "tls",
    "v2 api",
    "auth challenge",
    "token",
    "manifest",
    "blob",
];

struct Checklist {
    steps: Vec<Step>,
}

impl Checklist {
    fn ok(&mut self, name: &'static str, host: Option<&HostPort>, detail: String) {
        self.push(name, Outcome::Ok, host, detail, None);
    }
    fn skip(&mut self, name: &'static str, host: Option<&HostPort>, detail: String) {
        self.push(name, Outcome::Skipped, host, detail, None);
    }
    fn fail(&mut self, name: &'static str, host: Option<&HostPort>, detail: String, fix: String) {
        self.push(name, Outcome::Fail, host, detail, Some(fix));
    }
    fn fail_err(&mut self, name: &'static str, fallback: &HostPort, err: &RegistryError) {
        let host = error_host(err).unwrap_or_else(|| fallback.clone());
        self.fail(name, Some(&host), err.to_string(), fix_for(err, &host));
    }
    fn push(
        &mut self,
        name: &'static str,
        outcome: Outcome,
        host: Option<&HostPort>,
        detail: String,
        fix: Option<String>,
    ) {
        self.steps.push(Step {
            name,
            outcome,
            host: host.map(ToString::to_string),
            detail,
            fix,
        });
    }
    /// Marks every step not yet reported as skipped.
    fn finish(mut self, image: &str) -> Report {
        let failed = self.steps.iter().any(|s| s.outcome == Outcome::Fail);
        for name in STEPS.iter().skip(self.steps.len()) {
            self.steps.push(Step {
                name,
                outcome: Outcome::Skipped,
                host: None,
                detail: if failed {
                    "not run: an earlier step failed".into()
                } else {
                    "not needed".into()
                },
                fix: None,
            });
        }
        Report {
            image: image.to_string(),
            steps: self.steps,
        }
    }
}

/// The host:port an error names.
fn error_host(err: &RegistryError) -> Option<HostPort> {
    use RegistryError::*;
    match err {
        Unauthorized { host, .. }
        | Denied { host, .. }
        | NotFound { host, .. }
        | RateLimited { host, .. }
        | Server { host, .. }
        | UnexpectedStatus { host, .. }
        | Network { host, .. }
        | Stalled { host, .. }
        | TooSlow { host, .. }
        | RealmRefused { host, .. }
        | RedirectRefused { host, .. }
        | TooManyRedirects { host, .. }
        | InsecureCredentials { host, .. }
        | Token { host, .. }
        | UnsupportedChallenge { host, .. }
        | TooLarge { host, .. }
        | SizeExceeded { host, .. }
        | ShortRead { host, .. }
        | Protocol { host, .. } => Some(host.clone()),
        Tls(f) => Some(f.host.clone()),
        DigestMismatch { .. } | Unsupported(_) | InvalidManifest(_) | Config(_) => None,
    }
}

/// The fix for an error, naming the host:port.
pub fn fix_for(err: &RegistryError, host: &HostPort) -> String {
    match err {
        RegistryError::Tls(f) => return f.hint(),
        RegistryError::RealmRefused { .. } => {
            return format!(
                "the registry {host} names a token server berth will not contact (see the reason); fix the registry's token realm setting (it must be https and not a link-local or another host's private address)"
            );
        }
        RegistryError::RedirectRefused { .. } => {
            return format!(
                "{host} redirects to a target berth will not follow (see the reason); fix the registry's storage redirect settings"
            );
        }
        RegistryError::InsecureCredentials { .. } => {
            return format!("configure TLS for {host}: credentials are never sent over plain http");
        }
        _ => {}
    }
    match err.kind() {
        ErrorKind::Unauthorized => format!(
            "give credentials for {host} that the registry accepts: --creds USER (password on standard input), --secret FILE (a kubernetes.io/dockerconfigjson Secret) or --docker-config; `berth auth match IMAGE --secret FILE` shows which secret and key would be used"
        ),
        ErrorKind::Denied => format!(
            "the credentials were accepted but do not grant pull on this repository: ask the administrator of {host} for pull access, or use credentials that have it"
        ),
        ErrorKind::NotFound => format!(
            "check the repository path and tag (both are case-sensitive) on {host}; the image may not have been pushed"
        ),
        ErrorKind::RateLimited => format!(
            "wait for the rate limit of {host} to reset (see retry-after), or authenticate to get a higher limit"
        ),
        ErrorKind::Server => {
            format!("{host} is failing (5xx): retry later or check the registry's logs")
        }
        ErrorKind::Network => format!(
            "check that {host} is up and reachable from this machine (address, port, firewall, proxy)"
        ),
        ErrorKind::Tls => format!("inspect the certificate chain with `berth trust fetch {host}`"),
        ErrorKind::Integrity => format!(
            "{host} served content that does not match its digest: report it to the registry's administrator; nothing was stored"
        ),
        ErrorKind::Unsupported => {
            "the image uses a format or platform berth cannot pull (see the detail); rebuild or push it in an OCI or Docker v2 format, or choose another --platform".into()
        }
        ErrorKind::Protocol => format!(
            "{host} does not behave like an OCI distribution registry here (see the detail): check the address and port"
        ),
        ErrorKind::Policy => format!("fix the configuration of {host} named in the detail"),
        ErrorKind::Config => {
            "fix the local trust configuration named in the detail (--hosts-dir, --ca-file)".into()
        }
    }
}

/// What the anonymous `/v2/` request found.
enum Api {
    Anonymous,
    Challenge(HeaderMap),
}

/// Runs the checklist for `image` with `client`'s trust, trying `attempts` in order (an empty
/// list means anonymous access). The report passes only when a pull would succeed.
pub async fn diagnose(
    client: &Client,
    image: &str,
    attempts: &[Attempt],
    platform: &oci::Platform,
) -> Report {
    let mut c = Checklist { steps: Vec::new() };
    run(&mut c, client, image, attempts, platform).await;
    c.finish(image)
}

async fn run(
    c: &mut Checklist,
    client: &Client,
    image: &str,
    attempts: &[Attempt],
    platform: &oci::Platform,
) {
    // reference
    let reference = match oci::Reference::parse_normalized(image) {
        Ok(r) => r,
        Err(e) => {
            c.fail(
                "reference",
                None,
                format!("couldn't parse image name {image:?}: {e}"),
                "write the image as [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], e.g. registry.example.com:5000/team/app:1.0 (lowercase path)".into(),
            );
            return;
        }
    };
    let domain = match reference.domain() {
        "docker.io" | "index.docker.io" => crate::DOCKER_HUB_HOST,
        d => d,
    };
    let Some(host) = HostPort::parse(domain, 443) else {
        c.fail(
            "reference",
            None,
            format!("invalid registry host {domain:?} in {image:?}"),
            "write the registry as HOST or HOST:PORT".into(),
        );
        return;
    };
    let what = match (reference.digest(), reference.tag()) {
        (Some(d), _) => format!("digest {d}"),
        (None, Some(t)) => format!("tag {t:?}"),
        (None, None) => format!("tag {:?} (default)", oci::reference::DEFAULT_TAG),
    };
    c.ok(
        "reference",
        Some(&host),
        format!("registry {host}, repository {}, {what}", reference.path()),
    );

    // host config
    let hc = match client.host_config(&host) {
        Ok(hc) => hc,
        Err(e) => {
            c.fail_err("host config", &host, &e);
            return;
        }
    };
    let scheme = if hc.plain_http {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let mut sources = vec![client.system_roots().to_string()];
    sources.extend(hc.sources.iter().cloned());
    c.ok(
        "host config",
        Some(&host),
        format!(
            "{}; {} host CA(s); client certificate: {}; trust sources: {}",
            if hc.plain_http {
                "plain http (explicitly configured)"
            } else {
                "https"
            },
            hc.ca_certs.len(),
            hc.client_identity
                .as_ref()
                .map(|i| i.cert_path.display().to_string())
                .unwrap_or_else(|| "none".into()),
            sources.join(", ")
        ),
    );

    // dns
    let timeout = client.config().connect_timeout;
    let addrs: Vec<std::net::SocketAddr> = if let Some(ip) = host.ip() {
        c.ok(
            "dns",
            Some(&host),
            format!("{ip} is an IP address (no lookup)"),
        );
        vec![std::net::SocketAddr::new(ip, host.port())]
    } else {
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.host(), host.port())))
            .await
        {
            Ok(Ok(a)) => {
                let a: Vec<_> = a.collect();
                if a.is_empty() {
                    c.fail(
                        "dns",
                        Some(&host),
                        format!("{} has no addresses", host.host()),
                        format!("check the name {} and this machine's resolver", host.host()),
                    );
                    return;
                }
                let shown: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
                c.ok(
                    "dns",
                    Some(&host),
                    format!("{} resolves to {}", host.host(), shown.join(", ")),
                );
                a
            }
            Ok(Err(e)) => {
                c.fail(
                    "dns",
                    Some(&host),
                    format!("cannot resolve {}: {e}", host.host()),
                    format!(
                        "check the spelling of {} and this machine's DNS configuration (/etc/resolv.conf, /etc/hosts)",
                        host.host()
                    ),
                );
                return;
            }
            Err(_) => {
                c.fail(
                    "dns",
                    Some(&host),
                    format!(
                        "resolving {} took longer than {}s",
                        host.host(),
                        timeout.as_secs()
                    ),
                    "check this machine's DNS servers (/etc/resolv.conf)".into(),
                );
                return;
            }
        }
    };

    // tcp
    let mut last_err = String::new();
    let mut connected = None;
    for a in &addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => {
                connected = Some(*a);
                break;
            }
            Ok(Err(e)) => last_err = format!("{e} (address {a})"),
            Err(_) => last_err = format!("no answer within {}s (address {a})", timeout.as_secs()),
        }
    }
    match connected {
        Some(a) => c.ok("tcp", Some(&host), format!("connected to {a}")),
        None => {
            c.fail(
                "tcp",
                Some(&host),
                format!("cannot connect to {host}: {last_err}"),
                format!(
                    "check that the registry runs and listens on port {} of {}, and that no firewall blocks it",
                    host.port(),
                    host.host()
                ),
            );
            return;
        }
    }

    // tls
    if scheme == Scheme::Http {
        c.skip(
            "tls",
            Some(&host),
            format!("{host} is configured as plain http"),
        );
    } else {
        match client.fetch_chain(&host, Role::Registry).await {
            Ok(r) if r.verdict == Verdict::Ok => {
                let leaf = r
                    .presented
                    .first()
                    .map(|l| {
                        format!(
                            "; certificate \"{}\" issued by \"{}\", valid until {}, sha256:{}",
                            l.subject, l.issuer, l.not_after, l.sha256
                        )
                    })
                    .unwrap_or_default();
                c.ok(
                    "tls",
                    Some(&host),
                    format!("{} trusted{leaf}", r.protocol.as_deref().unwrap_or("TLS")),
                );
            }
            Ok(r) => {
                let (detail, fix) = match &r.failure {
                    Some(f) => (f.to_string(), f.hint()),
                    None => (r.detail.clone(), r.fix.clone().unwrap_or_default()),
                };
                c.fail("tls", Some(&host), detail, fix);
                return;
            }
            Err(e) => {
                c.fail_err("tls", &host, &e);
                return;
            }
        }
    }

    // v2 api (anonymous)
    let origin = Origin {
        scheme,
        host: host.clone(),
    };
    let repo_path = reference.path().to_string();
    let ctx = Ctx::new(&origin, &repo_path, crate::error::Scrub::default());
    let mut url = origin.base_url();
    url.set_path("/v2/");
    let api = match client
        .send_following(
            Method::GET,
            url.clone(),
            HeaderMap::new(),
            None,
            None,
            Role::Registry,
            true,
            &ctx,
        )
        .await
    {
        Err(e) => {
            c.fail_err("v2 api", &host, &e);
            return;
        }
        Ok(f) => {
            let version = f
                .resp
                .headers()
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" ({v})"))
                .unwrap_or_default();
            match f.resp.status() {
                s if s.is_success() => {
                    c.ok(
                        "v2 api",
                        Some(&host),
                        format!(
                            "GET {} answered {s}{version}: anonymous access to the API is allowed",
                            redact_url(&url)
                        ),
                    );
                    Api::Anonymous
                }
                StatusCode::UNAUTHORIZED => {
                    c.ok(
                        "v2 api",
                        Some(&host),
                        format!(
                            "GET {} answered 401{version}: a registry that asks for authentication",
                            redact_url(&url)
                        ),
                    );
                    Api::Challenge(f.resp.headers().clone())
                }
                s => {
                    c.fail(
                        "v2 api",
                        Some(&host),
                        format!(
                            "GET {} answered {s}: this host:port does not serve the registry v2 API",
                            redact_url(&url)
                        ),
                        format!(
                            "check the registry address and port ({host}); the registry must answer GET /v2/ with 200 or 401"
                        ),
                    );
                    return;
                }
            }
        }
    };

    // auth challenge
    let mut bearer_realm = None;
    match &api {
        Api::Anonymous => c.skip(
            "auth challenge",
            Some(&host),
            "the registry did not ask for authentication at /v2/".into(),
        ),
        Api::Challenge(headers) => {
            let challenges = parse_headers(headers);
            if let Some(b) = challenges.iter().find(|c| c.is_bearer()) {
                let Some(realm) = b.param("realm").filter(|r| !r.is_empty()) else {
                    c.fail(
                        "auth challenge",
                        Some(&host),
                        "Bearer challenge without a realm: no realm specified for token auth challenge".into(),
                        format!("fix the token settings of the registry {host}: its challenge must name a realm"),
                    );
                    return;
                };
                match validate_realm(realm, &origin) {
                    Ok(u) => {
                        let realm_host = Origin::of(&u).map(|o| o.host);
                        c.ok(
                            "auth challenge",
                            Some(&host),
                            format!(
                                "Bearer: token server {} (service {:?})",
                                redact_url(&u),
                                b.param("service").unwrap_or("")
                            ),
                        );
                        bearer_realm = realm_host;
                    }
                    Err((realm, reason)) => {
                        let e = RegistryError::RealmRefused {
                            host: host.clone(),
                            realm,
                            reason,
                        };
                        c.fail_err("auth challenge", &host, &e);
                        return;
                    }
                }
            } else if challenges.iter().any(|c| c.is_basic()) {
                c.ok(
                    "auth challenge",
                    Some(&host),
                    "Basic: username and password are sent to the registry itself".into(),
                );
            } else {
                let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
                c.fail(
                    "auth challenge",
                    Some(&host),
                    if schemes.is_empty() {
                        "401 without a WWW-Authenticate challenge".into()
                    } else {
                        format!(
                            "failed to find supported auth scheme among {}: only basic and bearer are implemented",
                            schemes.join(", ")
                        )
                    },
                    format!("configure the registry {host} for Basic or Bearer (token) authentication"),
                );
                return;
            }
        }
    }

    // token + manifest, credential by credential, as a pull tries them
    let anonymous = [Attempt {
        label: "anonymous".into(),
        credential: None,
    }];
    let attempts = if attempts.is_empty() {
        &anonymous[..]
    } else {
        attempts
    };
    let mut refused: Vec<String> = Vec::new();
    let mut last_auth_failure: Option<(&'static str, RegistryError)> = None;
    let mut chosen: Option<(
        Repository,
        oci::Descriptor,
        Vec<oci::Descriptor>,
        oci::Descriptor,
    )> = None;
    let mut token_detail = String::new();
    let mut manifest_detail = String::new();
    for a in attempts {
        let repo = match client.repository_at(&host.to_string(), &repo_path, a.credential.clone()) {
            Ok(r) => r,
            Err(e) => {
                c.fail_err("token", &host, &e);
                return;
            }
        };
        if let Err(e) = repo.ping().await {
            if e.is_auth_failure() {
                refused.push(format!("{}: {e}", a.label));
                last_auth_failure = Some(("token", e));
                continue;
            }
            c.fail_err("token", &host, &e);
            return;
        }
        token_detail = match (&api, &bearer_realm) {
            (Api::Anonymous, _) => format!("{}: no token needed at /v2/", a.label),
            (_, Some(realm)) => format!("{}: token issued by {realm} and accepted", a.label),
            (_, None) => format!("{}: accepted by the registry", a.label),
        };
        match repo.resolve_image(&reference, platform).await {
            Ok(img) => {
                let layers: Vec<oci::Descriptor> = img.manifest.layers.clone();
                manifest_detail = format!(
                    "{} {} ({}){}, {} layer(s)",
                    what,
                    img.top.descriptor.digest,
                    img.top.descriptor.media_type,
                    if img.top.is_index() {
                        format!(" -> {platform} manifest {}", img.descriptor.digest)
                    } else {
                        String::new()
                    },
                    layers.len()
                );
                chosen = Some((
                    repo,
                    img.descriptor.clone(),
                    layers,
                    img.manifest.config.clone(),
                ));
                break;
            }
            Err(e) if e.is_auth_failure() => {
                refused.push(format!("{}: {e}", a.label));
                last_auth_failure = Some(("manifest", e));
                continue;
            }
            Err(e) => {
                c.ok("token", Some(&host), token_detail);
                c.fail_err("manifest", &host, &e);
                return;
            }
        }
    }
    let Some((repo, _manifest, layers, config)) = chosen else {
        let (step, e) = last_auth_failure.expect("every attempt failed with an auth error");
        let fix = fix_for(&e, &host);
        if step == "manifest" {
            c.ok(
                "token",
                Some(&host),
                "the registry accepted the credentials at /v2/".into(),
            );
        }
        c.fail(step, Some(&host), refused.join("; "), fix);
        return;
    };
    c.ok("token", Some(&host), token_detail);
    c.ok("manifest", Some(&host), manifest_detail);

    // blob: the smallest blob of the image, requested like a pull does (GET from offset 0,
    // following redirects), read and digest-verified when small; larger ones only opened
    let blob = layers
        .iter()
        .chain(std::iter::once(&config))
        .min_by_key(|d| d.size)
        .cloned()
        .expect("config descriptor is always present");
    if blob.size == 0 {
        c.skip(
            "blob",
            Some(&host),
            "the image has no non-empty blob to fetch".into(),
        );
        return;
    }
    let stream = match repo
        .fetch_blob_digest(&blob.digest, blob.size, Some(&blob.media_type), 0)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            c.fail_err("blob", &host, &e);
            return;
        }
    };
    let (served, role) = stream
        .served_by()
        .map(|(h, r)| (h.clone(), r))
        .unwrap_or((host.clone(), Role::Registry));
    let full = blob.size <= MAX_VERIFIED_BLOB;
    let read = async {
        use futures_util::StreamExt;
        let mut got = 0u64;
        if full {
            let mut v = stream.verified();
            while let Some(chunk) = v.next().await {
                got += chunk?.len() as u64;
            }
        } else {
            let mut s = stream;
            if let Some(chunk) = s.next().await {
                got += chunk?.len() as u64;
            }
        }
        Ok::<u64, RegistryError>(got)
    };
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(got)) => c.ok(
            "blob",
            Some(&served),
            format!(
                "GET blob {} ({} bytes) answered by {served} ({role}): {}",
                blob.digest,
                blob.size,
                if full {
                    format!("{got} bytes, digest verified")
                } else {
                    format!("first {got} bytes received")
                }
            ),
        ),
        Ok(Err(e)) => c.fail_err("blob", &served, &e),
        Err(_) => c.fail(
            "blob",
            Some(&served),
            format!(
                "reading blob {} from {served} took longer than 60s",
                blob.digest
            ),
            format!("check the health of {served} and the network path to it"),
        ),
    }
}

/// Blobs up to this size are read completely and verified by the blob step.
const MAX_VERIFIED_BLOB: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_checklist_marks_the_rest_skipped_after_a_failure() {
        let mut c = Checklist { steps: Vec::new() };
        let h = HostPort::new("reg", 5000);
        c.ok("reference", Some(&h), "x".into());
        c.fail("host config", Some(&h), "bad".into(), "fix it".into());
        let r = c.finish("reg:5000/a");
        assert_eq!(r.steps.len(), STEPS.len());
        assert!(!r.passed());
        assert_eq!(r.first_failure().unwrap().name, "host config");
        assert!(
            r.steps[2..]
                .iter()
                .all(|s| s.outcome == Outcome::Skipped && s.detail.contains("earlier step failed"))
        );
        let names: Vec<&str> = r.steps.iter().map(|s| s.name).collect();
        assert_eq!(names, STEPS);
    }

    #[test]
    fn fixes_name_the_host_and_never_suggest_plain_http_for_credentials() {
        let h = HostPort::new("reg", 5000);
        let e = RegistryError::Unauthorized {
            host: h.clone(),
            repository: "a".into(),
            reason: "no".into(),
        };
        assert!(fix_for(&e, &h).contains("reg:5000"));
        let e = RegistryError::InsecureCredentials {
            host: h.clone(),
            role: Role::Registry,
        };
        assert!(fix_for(&e, &h).contains("configure TLS for reg:5000"));
        assert_eq!(error_host(&e), Some(h));
    }

    #[test]
    fn step_serialises_with_lowercase_outcome() {
        let s = Step {
            name: "tls",
            outcome: Outcome::Fail,
            host: Some("127.0.0.1:1".into()),
            detail: "d".into(),
            fix: Some("f".into()),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["outcome"], "fail");
        assert_eq!(v["name"], "tls");
        assert_eq!(Outcome::Fail.label(), "FAIL");
    }
}
