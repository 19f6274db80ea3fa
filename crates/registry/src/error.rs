//! The crate's single error type, its coarse [`ErrorKind`], and registry error-body rendering.
//!
//! Owns how every failure of a registry conversation is worded: each message names the host:port
//! (and its role: registry, token realm, redirect target), the repository where one is known, and
//! a fix where one exists. It must never contain a credential, a token, or a URL query string: URLs
//! enter this module only as already-redacted strings (see [`crate::origin::redact_url`]), lower
//! layers' errors only as rendered cause chains (never a `reqwest::Error`, whose Debug/Display
//! carry the full URL), and registry error bodies only through [`render_error_body`], which keeps
//! the parsed `errors[]` fields, strips control characters and caps the length.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::origin::HostPort;
use crate::tls::TlsFailure;

/// The familiar prefix for authentication and authorization failures (containerd/kubelet wording).
pub const PULL_ACCESS_DENIED: &str =
    "pull access denied, repository does not exist or may require authorization";

/// What a host is to the pull, for error messages and trust decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The registry the image reference names.
    Registry,
    /// The token server named by a Bearer challenge's realm.
    TokenRealm,
    /// A host a registry redirected a request to (CDN, object store).
    RedirectTarget,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Registry => "registry",
            Role::TokenRealm => "token realm",
            Role::RedirectTarget => "redirect target",
        })
    }
}

/// Coarse classification the node agent branches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Credentials missing or rejected (a 401 from the registry, a 401/403 from its token realm):
    /// try the next credential. A token server that answers garbage is [`ErrorKind::Protocol`] and
    /// a challenge this client cannot answer is [`ErrorKind::Unsupported`]: another credential
    /// would not help with either.
    Unauthorized,
    /// Authenticated but not allowed (403, `DENIED`, `insufficient_scope`): try the next credential.
    Denied,
    /// Repository, tag, manifest or blob does not exist.
    NotFound,
    /// 429 or `TOOMANYREQUESTS`: back off.
    RateLimited,
    /// The registry failed (5xx) after bounded retries.
    Server,
    /// Connection, DNS, reset, timeout or stall.
    Network,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// Bytes did not match their digest or declared size.
    Integrity,
    /// A manifest or media type this client does not pull (schema1, unknown type, no platform),
    /// or an authentication scheme it cannot answer.
    Unsupported,
    /// A response broke the protocol (bad JSON, bad headers, unexpected status).
    Protocol,
    /// A security rule refused the request (realm, redirect, plain http).
    Policy,
    /// Local configuration is wrong (unreadable CA file, bad key pair).
    Config,
}

/// Every failure of this crate.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401 without usable credentials, or with credentials the registry/token server rejected.
    #[error("{PULL_ACCESS_DENIED}: {repository} on {host}: {reason}")]
    Unauthorized {
        /// The registry host:port.
        host: HostPort,
        /// Repository path.
        repository: String,
        /// What exactly failed (no secret).
        reason: String,
    },
    /// 403 / `DENIED` / `insufficient_scope`.
    #[error("{PULL_ACCESS_DENIED}: {repository} on {host}: access denied: {reason}")]
    Denied {
        /// The registry host:port.
        host: HostPort,
        /// Repository path.
        repository: String,
        /// Registry message.
        reason: String,
    },
    /// 404 / `*_UNKNOWN`.
    #[error("{what} not found in repository {repository} on {host}: {reason}")]
    NotFound {
        /// The registry host:port.
        host: HostPort,
        /// Repository path.
        repository: String,
        /// `manifest for tag "1.0"`, `blob sha256:...`.
        what: String,
        /// Registry message.
        reason: String,
    },
    /// 429 with a wait beyond the cap or after the retry budget.
    #[error("rate limited by {host} ({role}) for {repository}: {}{reason}", retry_hint(.retry_after))]
    RateLimited {
        /// Host that sent the 429.
        host: HostPort,
        /// Its role.
        role: Role,
        /// Repository path.
        repository: String,
        /// The registry's Retry-After, if any.
        retry_after: Option<Duration>,
        /// Registry message.
        reason: String,
    },
    /// 5xx after bounded retries.
    #[error("{host} ({role}) failed with {status} for {url} after {attempts} attempt(s){}", detail_suffix(.detail))]
    Server {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
        /// Redacted URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// Parsed body.
        detail: String,
    },
    /// Any other unexpected status.
    #[error("unexpected status from {request} ({role} {host}): {status}{}", detail_suffix(.detail))]
    UnexpectedStatus {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
        /// `HEAD request to <redacted url>`.
        request: String,
        /// Status line (`403 Forbidden`).
        status: String,
        /// Parsed body.
        detail: String,
    },
    /// Connection-level failure (DNS, refused, reset, EOF, timeouts) after bounded retries.
    #[error("request to {host} ({role}) failed: {request}: {cause}")]
    Network {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
        /// `GET <redacted url>`.
        request: String,
        /// Rendered cause chain (no URL).
        cause: String,
    },
    /// No body bytes for the no-progress timeout.
    #[error("pull of {what} from {host} ({role}) stalled: no data for {}s; the registry or network stopped sending (check the registry's health or raise the no-progress timeout)", .after.as_secs_f64())]
    Stalled {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
        /// `blob sha256:...`.
        what: String,
        /// The no-progress timeout.
        after: Duration,
    },
    /// A blob arrived slower than [`crate::ClientConfig::min_blob_throughput`] allows.
    #[error("pull of {what} from {host} ({role}) is too slow: {got} bytes in the last {}s, below the minimum of {min_bytes} bytes per {}s; the registry or network is throttled or keeps dropping the connection (check the network path or lower the minimum blob throughput)", .window.as_secs_f64(), .window.as_secs_f64())]
    TooSlow {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
        /// `blob sha256:...`.
        what: String,
        /// Bytes received in the window.
        got: u64,
        /// The configured minimum per window.
        min_bytes: u64,
        /// The window.
        window: Duration,
    },
    /// TLS failure, classified.
    #[error(transparent)]
    Tls(Box<TlsFailure>),
    /// A realm URL failed validation before any request was made.
    #[error("registry {host}: refusing bearer realm \"{realm}\": {reason}")]
    RealmRefused {
        /// Registry host.
        host: HostPort,
        /// Redacted realm.
        realm: String,
        /// Why.
        reason: String,
    },
    /// A redirect was refused.
    #[error("{host} ({role}) redirected {url} to {target}: refused: {reason}")]
    RedirectRefused {
        /// Host that redirected.
        host: HostPort,
        /// Its role.
        role: Role,
        /// Redacted source URL.
        url: String,
        /// Redacted target.
        target: String,
        /// Why.
        reason: String,
    },
    /// More than the redirect budget.
    #[error("GET {url} on {host}: stopped after {hops} redirects")]
    TooManyRedirects {
        /// Registry host.
        host: HostPort,
        /// Redacted first URL.
        url: String,
        /// The limit.
        hops: usize,
    },
    /// Credentials would travel over plain http.
    #[error(
        "refusing to send credentials to http://{host} (plain-http {role}); configure TLS for it"
    )]
    InsecureCredentials {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
    },
    /// The token server answered, but not with a usable token (bad JSON, no token, an unexpected
    /// status other than 401/403): a server fault, classified [`ErrorKind::Protocol`].
    #[error("token realm {realm} for registry {host}: {reason}")]
    Token {
        /// Registry host.
        host: HostPort,
        /// Redacted realm.
        realm: String,
        /// What was wrong.
        reason: String,
    },
    /// A 401 whose challenges this client cannot answer.
    #[error(
        "registry {host} asked for authentication this client cannot provide for {repository}: {reason}"
    )]
    UnsupportedChallenge {
        /// Registry host.
        host: HostPort,
        /// Repository path.
        repository: String,
        /// Why.
        reason: String,
    },
    /// A body exceeded its size cap while reading.
    #[error("{what} from {host} is larger than the {cap} byte limit ({size})")]
    TooLarge {
        /// Host.
        host: HostPort,
        /// `manifest for "repo:tag"`, `token response`.
        what: String,
        /// The cap in bytes.
        cap: u64,
        /// `4400000 bytes` or `at least 4393217 bytes`.
        size: String,
    },
    /// A blob stream produced more bytes than the descriptor declared.
    #[error("blob {digest} from {host} exceeds declared size {size}")]
    SizeExceeded {
        /// Host.
        host: HostPort,
        /// Descriptor digest.
        digest: String,
        /// Descriptor size.
        size: u64,
    },
    /// Content did not hash to its digest.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked, with host and repository.
        what: String,
        /// Expected digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// A stream ended early and could not be resumed within the retry budget.
    #[error(
        "short read of blob {digest} from {host}: expected {expected} bytes but got {got}: {cause}"
    )]
    ShortRead {
        /// Host.
        host: HostPort,
        /// Descriptor digest.
        digest: String,
        /// Declared size.
        expected: u64,
        /// Bytes received.
        got: u64,
        /// Last cause.
        cause: String,
    },
    /// Content this client refuses or cannot pull (schema1, unknown media type, no platform).
    #[error("{0}")]
    Unsupported(String),
    /// A manifest that is malformed or ambiguous (message names host, repository, reference).
    #[error("{0}")]
    InvalidManifest(String),
    /// A response broke the protocol.
    #[error("invalid response from {host} ({role}): {reason}")]
    Protocol {
        /// Host.
        host: HostPort,
        /// Its role.
        role: Role,
        /// What was wrong.
        reason: String,
    },
    /// Local configuration problem (file and fix named in the message).
    #[error("{0}")]
    Config(String),
}

fn retry_hint(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!("retry after {}s: ", d.as_secs()),
        None => String::new(),
    }
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

impl RegistryError {
    /// The classification the caller branches on.
    pub fn kind(&self) -> ErrorKind {
        use RegistryError::*;
        match self {
            Unauthorized { .. } => ErrorKind::Unauthorized,
            Denied { .. } => ErrorKind::Denied,
            NotFound { .. } => ErrorKind::NotFound,
            RateLimited { .. } => ErrorKind::RateLimited,
            Server { .. } => ErrorKind::Server,
            Network { .. } | Stalled { .. } | TooSlow { .. } | ShortRead { .. } => {
                ErrorKind::Network
            }
            Tls(_) => ErrorKind::Tls,
            SizeExceeded { .. } | DigestMismatch { .. } => ErrorKind::Integrity,
            TooLarge { .. } | Unsupported(_) | UnsupportedChallenge { .. } => {
                ErrorKind::Unsupported
            }
            UnexpectedStatus { .. }
            | Protocol { .. }
            | Token { .. }
            | TooManyRedirects { .. }
            | InvalidManifest(_) => ErrorKind::Protocol,
            RealmRefused { .. } | RedirectRefused { .. } | InsecureCredentials { .. } => {
                ErrorKind::Policy
            }
            Config(_) => ErrorKind::Config,
        }
    }

    /// True when another credential might succeed (401/403 class failures only).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unauthorized | ErrorKind::Denied)
    }
}

/// The `errors[]` entries of a registry error body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// Parsed entries (code upper-cased, unknown codes kept as sent).
    pub errors: Vec<ErrorEntry>,
    /// Sanitised text when the body was not the JSON error format.
    pub text: Option<String>,
}

/// One entry of `errors[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    /// `MANIFEST_UNKNOWN`, `DENIED`, ... (`UNKNOWN` when absent).
    pub code: String,
    /// Human message.
    pub message: String,
    /// Compact rendering of `detail`, if any.
    pub detail: Option<String>,
}

/// Bytes of an error body that are kept (containerd keeps 64,000).
pub const MAX_ERROR_BODY: usize = 64_000;
const MAX_RENDERED: usize = 1024;

#[derive(Deserialize)]
struct RawBody {
    errors: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Removes control characters (terminal escapes) and caps the length on a char boundary.
pub fn sanitize(s: &str, cap: usize) -> String {
    let mut out = String::with_capacity(s.len().min(cap));
    for c in s.chars() {
        if out.len() + c.len_utf8() > cap {
            out.push('…');
            break;
        }
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        out.push(c);
    }
    out.trim().to_string()
}

impl ErrorBody {
    /// Parses a (capped) error body.
    pub fn parse(body: &[u8]) -> Self {
        let body = &body[..body.len().min(MAX_ERROR_BODY)];
        if let Ok(raw) = serde_json::from_slice::<RawBody>(body) {
            let errors = raw
                .errors
                .into_iter()
                .map(|e| ErrorEntry {
                    code: e
                        .code
                        .filter(|c| !c.is_empty())
                        .map(|c| sanitize(&c, 64).to_ascii_uppercase())
                        .unwrap_or_else(|| "UNKNOWN".to_string()),
                    message: sanitize(e.message.as_deref().unwrap_or(""), 512),
                    detail: e.detail.filter(|d| !d.is_null()).map(|d| match d {
                        serde_json::Value::String(s) => sanitize(&s, 256),
                        other => sanitize(&other.to_string(), 256),
                    }),
                })
                .collect();
            return Self { errors, text: None };
        }
        let text = sanitize(&String::from_utf8_lossy(body), 256);
        Self {
            errors: Vec::new(),
            text: (!text.is_empty()).then_some(text),
        }
    }

    /// True when any entry has this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// Only the `errors[]` codes and messages, with URL queries and `key=value` words redacted;
    /// never the raw text nor `detail`. Used for hosts other than the registry.
    pub fn render_foreign(&self) -> String {
        let s = self
            .errors
            .iter()
            .map(|e| {
                let mut s = e.code.to_ascii_lowercase();
                if !e.message.is_empty() {
                    s.push_str(": ");
                    s.push_str(&redact_params(&e.message));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ");
        sanitize(&s, MAX_RENDERED)
    }

    /// `code: message (detail); ...` or the sanitised text; empty when there is nothing.
    pub fn render(&self) -> String {
        if self.errors.is_empty() {
            return self.text.clone().unwrap_or_default();
        }
        let s = self
            .errors
            .iter()
            .map(|e| {
                let mut s = e.code.to_ascii_lowercase();
                if !e.message.is_empty() {
                    s.push_str(": ");
                    s.push_str(&e.message);
                }
                if let Some(d) = &e.detail {
                    s.push_str(" (");
                    s.push_str(d);
                    s.push(')');
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ");
        sanitize(&s, MAX_RENDERED)
    }
}

/// Renders an error body sent by a host in `role`. The registry's body is rendered in full
/// ([`ErrorBody::render`]); a redirect target's or token realm's body is reduced to
/// [`ErrorBody::render_foreign`], because object stores and CDNs echo the signed request
/// (`<StringToSign>`, `sig=`, `X-Amz-Signature=`) in their error text (CRED-07).
///
/// The secrets in `scrub` are cut out of the raw body before it is parsed and shortened (so no
/// prefix of a secret survives a cut at the length cap) and again from the rendering (a secret
/// that was JSON-escaped in the body).
pub(crate) fn render_error_body_for(role: Role, body: &[u8], scrub: &Scrub) -> String {
    let raw = scrub.apply(String::from_utf8_lossy(body).into_owned());
    let parsed = ErrorBody::parse(raw.as_bytes());
    scrub.apply(match role {
        Role::Registry => parsed.render(),
        Role::TokenRealm | Role::RedirectTarget => parsed.render_foreign(),
    })
}

/// Replaces URL query strings and `key=value` words in text from a foreign host with
/// `<redacted>` values: what such a host says about its request can carry a signature.
fn redact_params(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            if let Some((head, _)) = w.split_once('?') {
                format!("{head}?<redacted>")
            } else if let Some((key, _)) = w.split_once('=') {
                format!("{key}=<redacted>")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Secret values (password, base64 `user:pass`, identity token, bearer and refresh tokens) that
/// are cut out of any server text before it enters an error. Its Debug shows only the count.
#[derive(Clone, Default)]
pub(crate) struct Scrub(Vec<String>);

impl fmt::Debug for Scrub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrub({} secrets)", self.0.len())
    }
}

impl Scrub {
    /// A scrub list of these values (values shorter than 3 characters are ignored: replacing them
    /// would garble the message without protecting anything).
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut v: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // longest first, so a secret containing another is removed whole
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Self(v)
    }

    /// `s` with every listed secret replaced by `<redacted>`.
    pub(crate) fn apply(&self, s: String) -> String {
        let mut out = s;
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
}

/// Renders an error's cause chain, `a: b: c`, skipping repeats. Callers pass errors whose Display
/// carries no URL (e.g. `reqwest::Error::without_url`).
pub fn render_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_renders_code_message_and_detail() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}},{"code":"DENIED","message":"no"}]}"#;
        let p = ErrorBody::parse(b);
        assert!(p.has_code("MANIFEST_UNKNOWN"));
        assert_eq!(
            p.render(),
            r#"manifest_unknown: manifest unknown ({"Tag":"nope"}); denied: no"#
        );
    }

    #[test]
    fn error_body_unknown_or_missing_code_becomes_unknown() {
        let p = ErrorBody::parse(br#"{"errors":[{"message":"x"}]}"#);
        assert_eq!(p.errors[0].code, "UNKNOWN");
    }

    #[test]
    fn error_body_non_json_is_sanitised_and_capped() {
        let mut body = b"<html>\x1b[31mbad\x07 gateway</html>".to_vec();
        body.extend(std::iter::repeat_n(b'a', 100_000));
        let r = ErrorBody::parse(&body).render();
        assert!(r.starts_with("<html> [31mbad gateway"), "{r}");
        assert!(!r.contains('\x1b'));
        assert!(r.len() <= 260, "{}", r.len());
    }

    #[test]
    fn error_body_over_cap_is_not_parsed_beyond_64k() {
        // a valid JSON body that only closes after 64k is treated as text
        let mut body = br#"{"errors":[{"code":"DENIED","message":""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_ERROR_BODY));
        body.extend(br#""}]}"#);
        let p = ErrorBody::parse(&body);
        assert!(p.errors.is_empty());
    }

    #[test]
    fn foreign_error_body_keeps_only_codes_and_messages_with_queries_redacted() {
        let none = Scrub::default();
        let xml = b"<Error><Code>SignatureDoesNotMatch</Code><StringToSign>GET\n/x?sig=abc</StringToSign></Error>";
        for role in [Role::RedirectTarget, Role::TokenRealm] {
            assert_eq!(render_error_body_for(role, xml, &none), "");
        }
        assert!(render_error_body_for(Role::Registry, xml, &none).contains("StringToSign"));
        let json = br#"{"errors":[{"code":"DENIED","message":"link https://cdn/x?sig=abc&se=1 expired, key=v","detail":"sig=abc"}]}"#;
        assert_eq!(
            render_error_body_for(Role::RedirectTarget, json, &none),
            "denied: link https://cdn/x?<redacted> expired, key=<redacted>"
        );
    }

    #[test]
    fn secrets_are_scrubbed_before_the_length_cap_cuts_them() {
        let secret = "tok-0123456789abcdefghijklmnopqrstuvwxyz";
        let scrub = Scrub::new([secret.to_string(), "ab".to_string()]);
        // the secret starts just before the 256-character cap of non-JSON text
        let body = format!("{} Bearer {secret}", "x".repeat(240));
        let r = render_error_body_for(Role::Registry, body.as_bytes(), &scrub);
        assert!(!r.contains("tok-01"), "{r}");
        assert!(r.contains("Bearer <red"), "{r}");
        // values under 3 characters are not treated as secrets
        assert_eq!(scrub.apply("ab cd".into()), "ab cd");
        assert_eq!(format!("{scrub:?}"), "Scrub(1 secrets)");
    }

    #[test]
    fn token_server_faults_and_unsupported_challenges_are_not_auth_failures() {
        let host = HostPort::new("reg", 443);
        let token = RegistryError::Token {
            host: host.clone(),
            realm: "https://auth/token".into(),
            reason: "token response is not valid JSON".into(),
        };
        assert_eq!(token.kind(), ErrorKind::Protocol);
        assert!(!token.is_auth_failure());
        let unsupported = RegistryError::UnsupportedChallenge {
            host,
            repository: "a".into(),
            reason: "only basic and bearer are implemented".into(),
        };
        assert_eq!(unsupported.kind(), ErrorKind::Unsupported);
        assert!(!unsupported.is_auth_failure());
    }

    #[test]
    fn unauthorized_message_keeps_familiar_prefix_and_names_host() {
        let e = RegistryError::Unauthorized {
            host: HostPort::new("reg.example", 5000),
            repository: "team/app".into(),
            reason: "no credentials".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with(PULL_ACCESS_DENIED));
        assert!(s.contains("reg.example:5000"));
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(e.is_auth_failure());
    }

    #[test]
    fn not_found_is_not_worded_as_access_denied() {
        let e = RegistryError::NotFound {
            host: HostPort::new("reg", 443),
            repository: "a".into(),
            what: "manifest for tag \"x\"".into(),
            reason: "manifest_unknown: manifest unknown".into(),
        };
        assert!(!e.to_string().contains(PULL_ACCESS_DENIED));
        assert!(!e.is_auth_failure());
    }

    #[test]
    fn rate_limited_message_quotes_registry_and_wait() {
        let e = RegistryError::RateLimited {
            host: HostPort::new("reg", 443),
            role: Role::Registry,
            repository: "a".into(),
            retry_after: Some(Duration::from_secs(3600)),
            reason: "toomanyrequests: slow down".into(),
        };
        assert_eq!(
            e.to_string(),
            "rate limited by reg:443 (registry) for a: retry after 3600s: toomanyrequests: slow down"
        );
    }
}
