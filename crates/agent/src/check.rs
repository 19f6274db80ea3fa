//! Registry checks (`POST /registryChecks` on the agent's endpoint, called by the API server for a
//! `berth.dev/v1 RegistryCheck`): log in to one registry from this node, with the node's own trust (the local
//! hosts directory plus the cluster `RegistryHost` folders, the same [`LayeredTrust`] pulls use), and answer
//! in one of five results: `Accepted`, `Rejected` (the registry or its token server refused the credential),
//! `Unreachable`, `UntrustedCertificate` (with the host:port whose certificate failed, e.g. a token server)
//! or `PlainHTTPOnly`, plus the registry crate's full message with its fix (for a TLS failure in the words of
//! the pull's own Event, whose fix is the cluster-wide trust) and, on request, the certificate chain the host
//! presents (`registry::Client::fetch_chain`, the library behind `berth trust fetch`).
//!
//! The login is `GET /v2/` with challenge, token or basic auth (`registry::Repository::ping`), then the
//! manifest is resolved (`HEAD`) when an image is named; the credential is the typed user name and password, or
//! the one kubelet's rules pick from the Secret the API server forwarded (`podpull::secrets::pod_credentials`),
//! each tried in kubelet's order. A TLS failure that looks like plain http on a TLS port (or a connection the
//! registry drops) is confirmed with one anonymous plain-http `GET /v2/` (no credential ever goes over plain
//! http, and nothing falls back to it).
//!
//! Only the API server's client certificate (CN `berth:apiserver`) may ask. It must never log, echo or put in
//! a message the password or the Secret's data, never change trust, and never write to disk.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Secret;
use registry::{
    ClientConfig, Credential, ErrorKind, HostPort, RegistryError, RetryPolicy, Role, TlsErrorClass,
    TrustConfig,
};
use serde::{Deserialize, Serialize};

use crate::APISERVER_CLIENT_CN;
use crate::pods::Agent;
use crate::trust::LayeredTrust;

/// The endpoint's path (the API server's `registrychecks` forwards here).
pub(crate) const PATH: &str = "/registryChecks";
/// How long a whole check may take (the API server waits 30 s for the answer).
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// Connect and response-header limits of the check's registry client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
/// The plain-http confirmation's limit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// The repository named in the login scope when no image is given (token servers issue a token for the
/// login even when the repository does not exist).
pub(crate) const PROBE_REPOSITORY: &str = "berth/registry-check";

/// A password from the request; Debug never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What the API server sends (no Debug: it carries a password or a Secret's data).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CheckRequest {
    pub server: String,
    pub username: String,
    pub password: Option<Password>,
    pub secret: Option<Secret>,
    pub image: String,
    pub fetch_certificate: bool,
}

/// The five answers.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckResult {
    Accepted,
    Rejected,
    Unreachable,
    UntrustedCertificate,
    #[serde(rename = "PlainHTTPOnly")]
    PlainHttpOnly,
}

/// One presented certificate.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// `sha256:<hex>`.
    pub sha256: String,
    pub not_before: String,
    pub not_after: String,
    #[serde(rename = "isCA")]
    pub is_ca: bool,
    pub self_signed: bool,
    pub pem: String,
}

/// The answer (the `status` of the RegistryCheck).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckStatus {
    pub result: CheckResult,
    /// The TLS class code or the registry error kind, `ok` when accepted.
    pub reason: String,
    /// The host:port the result is about.
    pub host: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<CertSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

impl CheckStatus {
    fn new(result: CheckResult, reason: &str, host: String, message: String) -> Self {
        CheckStatus {
            result,
            reason: reason.to_string(),
            host,
            message,
            chain: Vec::new(),
            chain_host: None,
            verdict: None,
        }
    }
}

/// One credential to try, labelled as a person recognises it (never with a secret value).
pub(crate) struct Attempt {
    pub label: String,
    pub credential: Option<Credential>,
}

/// A parsed request: where to log in and with what.
pub(crate) struct Plan {
    /// `host[:port]` as image references write it (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository of the login scope.
    pub repository: String,
    /// The image whose manifest is checked.
    pub image: Option<oci::Reference>,
    /// The credentials, in kubelet's order; empty means anonymous.
    pub attempts: Vec<Attempt>,
    /// Why no credential could be taken from the Secret, when that is the answer.
    pub no_credential: Option<String>,
    pub fetch_certificate: bool,
}

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// `POST /registryChecks`.
pub(crate) async fn serve(agent: Arc<Agent>, user: Option<String>, body: Bytes) -> Response {
    if user.as_deref() != Some(APISERVER_CLIENT_CN) {
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden (user={}, verb=create, resource=nodes, subresource=registrychecks)",
                user.as_deref().unwrap_or("system:anonymous")
            ),
        );
    }
    let request: CheckRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        // serde's message may quote a value, and the body holds a password: name the place only.
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "the registry check request is not the JSON the agent expects (line {}, column {}); the API server and this agent may be different berth versions",
                    e.line(),
                    e.column()
                ),
            );
        }
    };
    let plan = match plan(request) {
        Ok(p) => p,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let client = match check_client(&agent.trust) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let status = run(&client, &plan).await;
    tracing::info!(
        registry = %plan.registry,
        result = ?status.result,
        reason = %status.reason,
        host = %status.host,
        "registry check"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&status).expect("status serializes"),
    )
        .into_response()
}

/// The registry client of a check: the pulls' trust, with short limits so an answer comes in time.
pub(crate) fn check_client(trust: &LayeredTrust) -> Result<registry::Client, RegistryError> {
    registry::Client::new(ClientConfig {
        hosts: Arc::new(trust.clone()),
        retry: RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        connect_timeout: CONNECT_TIMEOUT,
        response_header_timeout: CONNECT_TIMEOUT,
        ..ClientConfig::default()
    })
}

/// The registry of a `server` as a registry Secret's `auths` key writes it: scheme and path dropped, Docker
/// Hub's names folded to `docker.io`.
pub(crate) fn registry_of_server(server: &str) -> String {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// The host:port a registry is reached at.
fn home_host(registry: &str) -> Option<HostPort> {
    let home = match registry {
        "docker.io" => registry::DOCKER_HUB_HOST,
        r => r,
    };
    HostPort::parse(home, 443)
}

/// Turns a request into a plan; an error is a bad request.
pub(crate) fn plan(request: CheckRequest) -> Result<Plan, String> {
    let image = match request.image.trim() {
        "" => None,
        i => Some(
            oci::Reference::parse_normalized(i)
                .map_err(|e| format!("spec.image {i:?} is not a valid image reference: {e}"))?,
        ),
    };
    let registry = match (request.server.trim(), &image) {
        ("", Some(r)) => r.domain().to_string(),
        ("", None) => {
            return Err("spec.server is empty and no spec.image names a registry".into());
        }
        (s, _) => registry_of_server(s),
    };
    if home_host(&registry).is_none() {
        return Err(format!(
            "spec.server {:?} does not name a registry host[:port]",
            request.server
        ));
    }
    if let Some(r) = &image
        && registry_of_server(r.domain()) != registry
    {
        return Err(format!(
            "spec.image {:?} is on registry {} but spec.server names {registry}; check one registry at a time",
            request.image,
            r.domain()
        ));
    }
    let repository = image
        .as_ref()
        .map(|r| r.path().to_string())
        .unwrap_or_else(|| PROBE_REPOSITORY.to_string());
    let mut attempts = Vec::new();
    let mut no_credential = None;
    if let Some(p) = request.password {
        attempts.push(Attempt {
            label: format!("user {:?}", request.username),
            credential: Some(Credential::password(request.username, p.0)),
        });
    } else if let Some(secret) = request.secret {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let matched_image = match &image {
            Some(r) => r.to_string(),
            None => format!("{registry}/{PROBE_REPOSITORY}"),
        };
        match podpull::secrets::pod_credentials(
            &matched_image,
            &namespace,
            &[podpull::FetchedSecret::Found(secret)],
            None,
        ) {
            Ok(creds) if creds.candidates.is_empty() => {
                no_credential = Some(format!(
                    "secret {namespace}/{name} has no entry kubelet would use for {matched_image}: none of its auths keys matches registry {registry}; add an entry for {registry} (Registry address) or choose the secret written for it"
                ));
            }
            Ok(creds) => attempts.extend(creds.candidates.into_iter().map(|c| Attempt {
                label: c.attempt.label,
                credential: c.attempt.credential,
            })),
            Err(e) => no_credential = Some(e.to_string()),
        }
    }
    Ok(Plan {
        registry,
        repository,
        image,
        attempts,
        no_credential,
        fetch_certificate: request.fetch_certificate,
    })
}

/// The host:port an error is about (a token server's own TLS failure names the token server).
fn error_host(e: &RegistryError) -> Option<&HostPort> {
    use RegistryError::*;
    match e {
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
        | Protocol { host, .. } => Some(host),
        Tls(f) => Some(&f.host),
        DigestMismatch { .. } | Unsupported(_) | InvalidManifest(_) | Config(_) => None,
    }
}

fn kind_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Denied => "denied",
        ErrorKind::NotFound => "not_found",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Server => "server",
        ErrorKind::Network => "network",
        ErrorKind::Tls => "tls",
        ErrorKind::Integrity => "integrity",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Policy => "policy",
        ErrorKind::Config => "config",
    }
}

/// Whether `host` answers the registry API over plain http (one anonymous `GET /v2/`, no retries).
async fn answers_plain_http(host: &HostPort) -> bool {
    let Ok(client) = registry::Client::new(ClientConfig {
        hosts: Arc::new(TrustConfig {
            plain_http: vec![host.clone()],
            ..TrustConfig::default()
        }),
        system_roots: false,
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        connect_timeout: PROBE_TIMEOUT,
        response_header_timeout: PROBE_TIMEOUT,
        ..ClientConfig::default()
    }) else {
        return false;
    };
    let Ok(repo) = client.repository_at(&host.to_string(), PROBE_REPOSITORY, None) else {
        return false;
    };
    match tokio::time::timeout(PROBE_TIMEOUT * 2, repo.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::Denied),
        Err(_) => false,
    }
}

/// The answer for a failure that is not a refused credential.
async fn classify(e: &RegistryError, registry_host: &HostPort) -> CheckStatus {
    let host = error_host(e).unwrap_or(registry_host).clone();
    // A TLS handshake that gets no TLS back (or a connection the server drops) may be a plain-http registry.
    let maybe_plain = match e {
        RegistryError::Tls(f) => f.class == TlsErrorClass::Protocol && f.role == Role::Registry,
        RegistryError::Network {
            role: Role::Registry,
            ..
        } => true,
        _ => false,
    };
    if maybe_plain && answers_plain_http(&host).await {
        return CheckStatus::new(
            CheckResult::PlainHttpOnly,
            "plain_http",
            host.to_string(),
            format!(
                "{host} answers the registry API over plain http only (GET http://{host}/v2/), not over TLS; berth never falls back from https to http and never sends credentials over plain http: serve the registry over TLS (then trust its CA for {host}), or, for anonymous pulls only, create a RegistryHost for {host} with insecure: true (the TLS attempt said: {e})"
            ),
        );
    }
    if let RegistryError::Tls(f) = e {
        let result = if f.class == TlsErrorClass::Protocol {
            CheckResult::Unreachable
        } else {
            CheckResult::UntrustedCertificate
        };
        // The words of the pull's own Event: the verifier's cause, the trust sources and the cluster-wide fix.
        return CheckStatus::new(
            result,
            f.class.code(),
            host.to_string(),
            podpull::texts::tls_failure(f),
        );
    }
    let (result, fix) = match e.kind() {
        ErrorKind::Unauthorized | ErrorKind::Denied | ErrorKind::NotFound => {
            (CheckResult::Rejected, None)
        }
        ErrorKind::Policy if matches!(e, RegistryError::InsecureCredentials { .. }) => (
            CheckResult::PlainHttpOnly,
            Some(format!(
                "{host} is configured as a plain-http host and berth never sends credentials over plain http: serve it over TLS, or test (and pull) anonymously"
            )),
        ),
        _ => (
            CheckResult::Unreachable,
            Some(registry::doctor::fix_for(e, &host)),
        ),
    };
    let message = match fix {
        Some(fix) if !e.to_string().contains("fix:") => format!("{e}; fix: {fix}"),
        _ => e.to_string(),
    };
    CheckStatus::new(result, kind_code(e.kind()), host.to_string(), message)
}

/// Runs a planned check with `client` (bounded by [`CHECK_TIMEOUT`]).
pub(crate) async fn run(client: &registry::Client, plan: &Plan) -> CheckStatus {
    let Some(home) = home_host(&plan.registry) else {
        return CheckStatus::new(
            CheckResult::Unreachable,
            "config",
            plan.registry.clone(),
            format!("{} is not a registry host[:port]", plan.registry),
        );
    };
    let mut status = match tokio::time::timeout(CHECK_TIMEOUT, login(client, plan, &home)).await {
        Ok(s) => s,
        Err(_) => CheckStatus::new(
            CheckResult::Unreachable,
            "timeout",
            home.to_string(),
            format!(
                "no answer from {home} within {}s; check that the registry is up and reachable from this node (address, port, firewall, proxy)",
                CHECK_TIMEOUT.as_secs()
            ),
        ),
    };
    if plan.fetch_certificate && status.result != CheckResult::PlainHttpOnly {
        // The host that failed (a token server, say) is the one whose chain a person must judge.
        let failed = match status.result {
            CheckResult::UntrustedCertificate => HostPort::parse(&status.host, 443),
            _ => None,
        };
        let (target, role) = match failed {
            Some(h) if h != home => (h, Role::TokenRealm),
            _ => (home, Role::Registry),
        };
        match tokio::time::timeout(CHECK_TIMEOUT, client.fetch_chain(&target, role)).await {
            Ok(Ok(report)) => {
                status.chain = report
                    .presented
                    .iter()
                    .map(|c| CertSummary {
                        subject: c.subject.clone(),
                        issuer: c.issuer.clone(),
                        sha256: c.fingerprint(),
                        not_before: c.not_before.clone(),
                        not_after: c.not_after.clone(),
                        is_ca: c.is_ca,
                        self_signed: c.self_signed,
                        pem: c.pem.clone(),
                    })
                    .collect();
                status.chain_host = Some(target.to_string());
                status.verdict = Some(report.verdict.code().to_string());
            }
            Ok(Err(e)) => {
                if status.result == CheckResult::Accepted {
                    status.message.push_str(&format!(
                        "; the certificate chain of {target} could not be fetched: {e}"
                    ));
                }
            }
            Err(_) => {}
        }
    }
    status
}

async fn login(client: &registry::Client, plan: &Plan, home: &HostPort) -> CheckStatus {
    if let Some(why) = &plan.no_credential {
        return CheckStatus::new(
            CheckResult::Rejected,
            "no_matching_credential",
            home.to_string(),
            why.clone(),
        );
    }
    let anonymous = [Attempt {
        label: "anonymous".into(),
        credential: None,
    }];
    let attempts = if plan.attempts.is_empty() {
        &anonymous[..]
    } else {
        &plan.attempts[..]
    };
    let mut refused: Vec<(String, RegistryError)> = Vec::new();
    for a in attempts {
        let repo =
            match client.repository_at(&plan.registry, &plan.repository, a.credential.clone()) {
                Ok(r) => r,
                Err(e) => return classify(&e, home).await,
            };
        if let Err(e) = repo.ping().await {
            if e.is_auth_failure() {
                refused.push((a.label.clone(), e));
                continue;
            }
            return classify(&e, home).await;
        }
        let scheme = match client.scheme_for(home) {
            Ok(registry::Scheme::Http) => " over plain http (as configured for this host)",
            _ => "",
        };
        let Some(image) = &plan.image else {
            return CheckStatus::new(
                CheckResult::Accepted,
                "ok",
                home.to_string(),
                format!("{home} accepted {}{scheme}", a.label),
            );
        };
        match repo.resolve(image).await {
            Ok(resolved) => {
                return CheckStatus::new(
                    CheckResult::Accepted,
                    "ok",
                    home.to_string(),
                    format!(
                        "{home} accepted {}{scheme} and serves {image} ({})",
                        a.label, resolved.descriptor.digest
                    ),
                );
            }
            Err(e) if e.is_auth_failure() => {
                refused.push((a.label.clone(), e));
                continue;
            }
            Err(e) => return classify(&e, home).await,
        }
    }
    let host = refused
        .last()
        .and_then(|(_, e)| error_host(e))
        .unwrap_or(home)
        .to_string();
    let reason = refused
        .last()
        .map(|(_, e)| kind_code(e.kind()))
        .unwrap_or("unauthorized");
    let lines: Vec<String> = refused.iter().map(|(l, e)| format!("{l}: {e}")).collect();
    let fix = refused
        .last()
        .map(|(_, e)| {
            if e.kind() == ErrorKind::Denied {
                format!(
                    "the credentials were accepted but do not grant pull on {}: ask the administrator of {home} for pull access, or use credentials that have it",
                    plan.repository
                )
            } else {
                format!(
                    "check the user name and password (or token) for {home}; a robot account or access token is best"
                )
            }
        })
        .unwrap_or_default();
    CheckStatus::new(
        CheckResult::Rejected,
        reason,
        host,
        format!("{}; fix: {fix}", lines.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
    use testkit::pki::TestPki;
    use testkit::registry::{Registry, RegistryOptions, User, free_port};

    const PASSWORD: &str = "check-pass-0123";

    /// The agent's real trust: an (empty) local hosts directory and the cluster folder, into which the
    /// RegistryHost for `trusted` (with `ca_pem`) is materialised as the agent does it.
    struct Node {
        _dir: tempfile::TempDir,
        client: registry::Client,
    }

    fn node(trusted: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("hosts");
        let cluster = dir.path().join("cluster");
        std::fs::create_dir_all(&local).unwrap();
        std::fs::create_dir_all(&cluster).unwrap();
        for (host, ca) in trusted {
            crate::trust::materialise(&cluster, "rh", &json!({"host": host, "caBundle": ca}), None)
                .unwrap();
        }
        let trust = LayeredTrust {
            local: Some(hosts::TrustSource::open(Some(&local)).unwrap()),
            cluster: hosts::TrustSource::open(Some(&cluster)).unwrap(),
        };
        Node {
            _dir: dir,
            client: check_client(&trust).unwrap(),
        }
    }

    fn request(v: serde_json::Value) -> CheckRequest {
        serde_json::from_value(v).unwrap()
    }

    async fn check(n: &Node, v: serde_json::Value) -> CheckStatus {
        run(&n.client, &plan(request(v)).unwrap()).await
    }

    async fn htpasswd_registry(pki: &TestPki, ip: [u8; 4]) -> (Registry, testkit::pki::Leaf) {
        let leaf = pki
            .server([std::net::IpAddr::from(ip).to_string()])
            .unwrap();
        let reg = Registry::start(
            RegistryOptions::new()
                .ip(std::net::IpAddr::from(ip))
                .tls(leaf.clone(), pki.ca_pem())
                .htpasswd([User::new("alice", PASSWORD)]),
        )
        .await
        .unwrap();
        (reg, leaf)
    }

    #[tokio::test]
    async fn a_trusted_registry_accepts_the_right_password_and_rejects_a_wrong_one() {
        let pki = TestPki::new().unwrap();
        let (reg, _) = htpasswd_registry(&pki, [127, 0, 0, 1]).await;
        let host = reg.host_port();
        ImageBuilder::new()
            .layer(vec![Entry::file("a", b"a".to_vec())], Compression::Gzip)
            .build()
            .unwrap()
            .push_raw(
                &reg,
                "team/app:v1",
                Some(&Credentials::new("alice", PASSWORD)),
            )
            .await
            .unwrap();
        let n = node(&[(&host, pki.ca_pem())]);
        let ok = check(
            &n,
            json!({"server": host, "username": "alice", "password": PASSWORD}),
        )
        .await;
        assert_eq!(
            (ok.result, ok.reason.as_str()),
            (CheckResult::Accepted, "ok"),
            "{ok:?}"
        );
        assert_eq!(ok.host, host);
        let ok = check(
            &n,
            json!({"image": format!("{host}/team/app:v1"), "username": "alice", "password": PASSWORD}),
        )
        .await;
        assert_eq!(ok.result, CheckResult::Accepted, "{ok:?}");
        assert!(ok.message.contains("sha256:"), "{ok:?}");
        let bad = check(&n, json!({"server": format!("https://{host}/v1/"), "username": "alice", "password": "wrong-one"})).await;
        assert_eq!(bad.result, CheckResult::Rejected, "{bad:?}");
        assert_eq!(bad.host, host);
        assert!(!bad.message.contains("wrong-one"), "{bad:?}");
        assert!(bad.message.contains("user \"alice\""), "{bad:?}");
        let anon = check(&n, json!({"server": host})).await;
        assert_eq!(
            (anon.result, anon.reason.as_str()),
            (CheckResult::Rejected, "unauthorized")
        );
    }

    #[tokio::test]
    async fn an_unknown_ca_is_untrusted_with_the_host_and_the_presented_chain() {
        let pki = TestPki::new().unwrap();
        let (reg, leaf) = htpasswd_registry(&pki, [127, 0, 0, 2]).await;
        let host = reg.host_port();
        let n = node(&[]);
        let s = check(
            &n,
            json!({"server": host, "username": "alice", "password": PASSWORD, "fetchCertificate": true}),
        )
        .await;
        assert_eq!(s.result, CheckResult::UntrustedCertificate, "{s:?}");
        assert_eq!(
            (s.host.as_str(), s.reason.as_str()),
            (host.as_str(), "unknown_authority")
        );
        assert!(
            s.message
                .contains("x509: certificate signed by unknown authority"),
            "{s:?}"
        );
        assert!(s.message.contains("fix:"), "{s:?}");
        assert_eq!(s.chain_host.as_deref(), Some(host.as_str()));
        assert_eq!(s.verdict.as_deref(), Some("unknown_authority"));
        assert!(!s.chain.is_empty());
        assert_eq!(
            s.chain[0].sha256,
            format!("sha256:{}", leaf.fingerprint_sha256())
        );
        assert!(!s.chain[0].is_ca);
        assert!(s.chain.iter().all(|c| c.pem.contains("BEGIN CERTIFICATE")));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["result"], "UntrustedCertificate");
        assert!(json["chain"][0]["notAfter"].is_string() && json["chain"][0]["isCA"].is_boolean());
        // Once the cluster trusts the CA for that host:port, the same check is accepted.
        let trusted = node(&[(&host, pki.ca_pem())]);
        let s = check(&trusted, json!({"server": host, "username": "alice", "password": PASSWORD, "fetchCertificate": true})).await;
        assert_eq!(s.result, CheckResult::Accepted, "{s:?}");
        assert_eq!(s.verdict.as_deref(), Some("ok"));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let port = free_port(std::net::IpAddr::from([127, 0, 0, 1])).unwrap();
        let host = format!("127.0.0.1:{port}");
        let s = check(
            &node(&[]),
            json!({"server": host, "fetchCertificate": true}),
        )
        .await;
        assert_eq!(
            (s.result, s.reason.as_str()),
            (CheckResult::Unreachable, "network"),
            "{s:?}"
        );
        assert_eq!(s.host, host);
        assert!(
            s.message.contains(&host) && s.message.contains("fix:"),
            "{s:?}"
        );
        assert!(s.chain.is_empty());
    }

    #[tokio::test]
    async fn a_plain_http_registry_is_plain_http_only() {
        let reg = Registry::start(RegistryOptions::new()).await.unwrap();
        let host = reg.host_port();
        let s = check(
            &node(&[]),
            json!({"server": host, "username": "alice", "password": PASSWORD}),
        )
        .await;
        assert_eq!(s.result, CheckResult::PlainHttpOnly, "{s:?}");
        assert_eq!(s.host, host);
        assert!(s.message.contains("insecure: true"), "{s:?}");
        assert!(!s.message.contains(PASSWORD));
        assert_eq!(serde_json::to_value(&s).unwrap()["result"], "PlainHTTPOnly");
    }

    fn dockerconfig_secret(key: &str, user: &str, password: &str) -> serde_json::Value {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let config = json!({"auths": {key: {"auth": b64(&format!("{user}:{password}"))}}});
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "team", "uid": "u1"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&config.to_string())}})
    }

    #[tokio::test]
    async fn a_secret_is_tested_with_the_credential_kubelet_would_pick() {
        let pki = TestPki::new().unwrap();
        let (reg, _) = htpasswd_registry(&pki, [127, 0, 0, 1]).await;
        let host = reg.host_port();
        let n = node(&[(&host, pki.ca_pem())]);
        let s = check(
            &n,
            json!({"server": host, "secret": dockerconfig_secret(&host, "alice", PASSWORD)}),
        )
        .await;
        assert_eq!(s.result, CheckResult::Accepted, "{s:?}");
        assert!(s.message.contains("regcred"), "{s:?}");
        let s = check(&n, json!({"server": host, "secret": dockerconfig_secret("other.example.com", "alice", PASSWORD)})).await;
        assert_eq!(
            (s.result, s.reason.as_str()),
            (CheckResult::Rejected, "no_matching_credential"),
            "{s:?}"
        );
        assert!(s.message.contains("team/regcred"), "{s:?}");
        let s = check(
            &n,
            json!({"server": host, "secret": dockerconfig_secret(&host, "alice", "not-it")}),
        )
        .await;
        assert_eq!(s.result, CheckResult::Rejected, "{s:?}");
        assert!(!s.message.contains("not-it"), "{s:?}");
    }

    #[test]
    fn requests_name_one_registry_and_never_show_the_password() {
        assert_eq!(
            registry_of_server("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(
            registry_of_server("Reg.Example.com:5000"),
            "reg.example.com:5000"
        );
        let p = plan(request(json!({"image": "busybox"}))).unwrap();
        assert_eq!(
            (p.registry.as_str(), p.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        let p = plan(request(json!({"server": "r.io"}))).unwrap();
        assert_eq!(p.repository, PROBE_REPOSITORY);
        assert!(p.attempts.is_empty());
        let e = plan(request(json!({"server": "a.io", "image": "b.io/x"})))
            .err()
            .unwrap();
        assert!(e.contains("check one registry at a time"), "{e}");
        assert!(plan(request(json!({"image": "UPPER/case"}))).is_err());
        assert!(plan(request(json!({}))).is_err());
        let r = request(json!({"server": "r.io", "username": "u", "password": "hunter2-secret"}));
        assert!(!format!("{:?}", r.password).contains("hunter2"));
    }
}
