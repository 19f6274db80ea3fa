//! Credentials, token scopes, realm validation, token responses and the token cache.
//!
//! Owns the pure parts of registry authentication: the redacting [`Credential`] type, the scope
//! set sent to a token server, the rule deciding whether a Bearer realm may be contacted at all
//! ([`validate_realm`], CRED-02), parsing a token response (`token` / `access_token`,
//! `expires_in`, `issued_at`) and a per-(realm, service, scopes) cache with expiry. It performs no
//! IO. It must never render a password, identity token or bearer token in Debug, Display or an
//! error, and never approve a realm on a link-local / metadata address, over plain http for an
//! https registry, or on another host's private IP literal.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use url::Url;

use crate::origin::{HostPort, Origin, Scheme, redact_url};

/// A secret string whose Debug and Display never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The value, for building a request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (Basic, OAuth2 password grant, token GET with Basic).
    Password {
        /// User name (not secret, shown in Debug).
        username: String,
        /// Password.
        password: Secret,
    },
    /// A docker-config `identitytoken`: OAuth2 refresh_token grant.
    IdentityToken(Secret),
}

impl Credential {
    /// Username + password.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credential::Password {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// An identity (refresh) token.
    pub fn identity_token(token: impl Into<String>) -> Self {
        Credential::IdentityToken(Secret::new(token))
    }

    /// The secret values, so error bodies that echo them can be scrubbed.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            Credential::Password { password, .. } => vec![password.expose()],
            Credential::IdentityToken(t) => vec![t.expose()],
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// `repository:<path>:pull` plus the challenge's (space-separated) scopes, sorted, de-duplicated.
pub fn token_scopes(repository: &str, challenge_scope: Option<&str>) -> Vec<String> {
    let mut set = BTreeSet::new();
    set.insert(format!("repository:{repository}:pull"));
    if let Some(s) = challenge_scope {
        for part in s.split(' ').filter(|p| !p.is_empty()) {
            set.insert(part.to_string());
        }
    }
    set.into_iter().collect()
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:a.b.c.d`), NAT64 well-known
/// prefix (`64:ff9b::a.b.c.d`, RFC 6052) and 6to4 (`2002:AABB:CCDD::/48`, RFC 3056). A target
/// written in one of these forms reaches the embedded IPv4 host, so it is judged as that host.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    if let Some(m) = v6.to_ipv4_mapped() {
        return Some(m);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

fn is_link_local_or_meta(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || embedded_v4(v6).is_some_and(|m| is_link_local_or_meta(IpAddr::V4(m)))
        }
    }
}

fn is_private_or_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                // unique local fc00::/7
                || (s[0] & 0xfe00) == 0xfc00
                // deprecated site-local fec0::/10 (still routed inside some sites)
                || (s[0] & 0xffc0) == 0xfec0
                // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
                || s[..3] == [0x64, 0xff9b, 1]
                || embedded_v4(v6).is_some_and(|m| is_private_or_loopback(IpAddr::V4(m)))
        }
    }
}

/// The address rule shared by realms and redirect targets: never link-local / metadata /
/// unspecified; a private or loopback IP literal only when the registry's own host is that same
/// IP (realms: `same_host_only`) or itself a private/loopback IP (redirect targets).
pub fn check_target_address(
    target: &HostPort,
    registry: &HostPort,
    same_host_only: bool,
) -> Result<(), String> {
    let Some(ip) = target.ip() else {
        return Ok(());
    };
    if is_link_local_or_meta(ip) {
        return Err(format!(
            "host {} is a link-local, metadata or unspecified address",
            target.host()
        ));
    }
    if is_private_or_loopback(ip) {
        let allowed = if same_host_only {
            registry.host() == target.host()
        } else {
            registry.ip().is_some_and(is_private_or_loopback)
        };
        if !allowed {
            return Err(format!(
                "host {} is a loopback or private address and is not the registry's own host {}",
                target.host(),
                registry.host()
            ));
        }
    }
    Ok(())
}

/// Decides whether a Bearer realm may be contacted (before any IO).
///
/// Rules: http(s) only; https unless the registry itself is plain-http; never a link-local or
/// metadata IP literal; a loopback/private IP literal only on the registry's own host (any port).
pub fn validate_realm(realm: &str, registry: &Origin) -> Result<Url, (String, String)> {
    let shown = |u: &str| match Url::parse(u) {
        Ok(u) => redact_url(&u),
        Err(_) => crate::error::sanitize(u.split('?').next().unwrap_or(""), 200),
    };
    let url = Url::parse(realm).map_err(|e| (shown(realm), format!("not a valid URL: {e}")))?;
    let r = shown(realm);
    let origin = Origin::of(&url)
        .ok_or_else(|| (r.clone(), format!("unsupported scheme {:?}", url.scheme())))?;
    if origin.scheme == Scheme::Http && registry.scheme == Scheme::Https {
        return Err((
            r,
            "plain http realm for an https registry (credentials would travel unencrypted)".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((r, "realm URL carries userinfo".into()));
    }
    check_target_address(&origin.host, &registry.host, true).map_err(|e| (r, e))?;
    Ok(url)
}

/// A parsed token response.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The bearer token.
    pub value: Secret,
    /// Lifetime from `issued_at` (or receipt).
    pub expires_in: Duration,
    /// When it was issued (`issued_at`, or when received).
    pub issued_at: SystemTime,
    /// An OAuth refresh token, if granted.
    pub refresh_token: Option<Secret>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Default token lifetime when `expires_in` is absent or not positive (token.md).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Maximum token response size read (c/image `MaxAuthTokenBodySize`).
pub const MAX_TOKEN_BODY: usize = 1 << 20;

#[derive(Deserialize)]
struct RawToken {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Which request produced the response: POST (OAuth2) requires `access_token`; GET prefers
/// `access_token` over `token` when both are present (containerd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFlow {
    /// OAuth2 POST.
    OAuthPost,
    /// Docker token GET.
    Get,
}

/// Parses a token response body received at `now`.
pub fn parse_token_response(
    body: &[u8],
    flow: TokenFlow,
    now: SystemTime,
) -> Result<Token, String> {
    let raw: RawToken = serde_json::from_slice(body)
        .map_err(|e| format!("token response is not valid JSON: {e}"))?;
    let value = match flow {
        TokenFlow::OAuthPost => raw.access_token,
        TokenFlow::Get => raw.access_token.filter(|t| !t.is_empty()).or(raw.token),
    }
    .filter(|t| !t.is_empty())
    .ok_or_else(|| "authorization server did not include a token in the response".to_string())?;
    let expires_in = match raw.expires_in {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => DEFAULT_TOKEN_LIFETIME,
    };
    let issued_at = raw
        .issued_at
        .as_deref()
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(SystemTime::from)
        // a server clock ahead of ours must not extend the lifetime
        .filter(|t| *t <= now)
        .unwrap_or(now);
    Ok(Token {
        value: Secret::new(value),
        expires_in,
        issued_at,
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
    })
}

/// Cache key: realm, service and the exact scope set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Realm URL.
    pub realm: String,
    /// `service` parameter.
    pub service: String,
    /// Sorted scopes.
    pub scopes: Vec<String>,
}

struct CachedToken {
    value: Secret,
    valid_until: Instant,
}

/// Until when a token received at (`now_sys`, `now`) may be used: its remaining lifetime minus a
/// safety margin of a tenth of the lifetime (at most 10 s), so it does not expire in flight.
pub fn token_valid_until(token: &Token, now_sys: SystemTime, now: Instant) -> Instant {
    let age = now_sys.duration_since(token.issued_at).unwrap_or_default();
    let remaining = token.expires_in.saturating_sub(age);
    let margin = (token.expires_in / 10).min(Duration::from_secs(10));
    now + remaining.saturating_sub(margin)
}

/// Tokens of one credential (each `Repository` owns one cache, so tokens obtained with one
/// credential never serve another).
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<TokenKey, CachedToken>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.tokens.len())
            .finish()
    }
}

impl TokenCache {
    /// A fresh token for `key` at `now`, if one is cached.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<Secret> {
        self.tokens
            .get(key)
            .filter(|t| now < t.valid_until)
            .map(|t| t.value.clone())
    }

    /// Stores a token received at (`now_sys`, `now`). A safety margin of a tenth of the lifetime
    /// (at most 10 s) keeps a token from expiring in flight.
    pub fn insert(&mut self, key: TokenKey, token: &Token, now_sys: SystemTime, now: Instant) {
        let valid_until = token_valid_until(token, now_sys, now);
        self.tokens.insert(
            key,
            CachedToken {
                value: token.value.clone(),
                valid_until,
            },
        );
    }

    /// Drops a token (after `invalid_token`).
    pub fn remove(&mut self, key: &TokenKey) {
        self.tokens.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(u: &str) -> Origin {
        Origin::of(&Url::parse(u).unwrap()).unwrap()
    }

    #[test]
    fn credential_debug_redacts_password_and_identity_token() {
        let c = Credential::password("bob", "hunter2-canary");
        let d = format!("{c:?}");
        assert!(d.contains("bob") && d.contains("<redacted>") && !d.contains("hunter2"));
        let t = Credential::identity_token("idtok-canary");
        assert!(!format!("{t:?}").contains("idtok"));
        assert_eq!(format!("{}", Secret::new("x")), "<redacted>");
    }

    #[test]
    fn scopes_include_pull_plus_challenge_sorted_and_deduplicated() {
        assert_eq!(token_scopes("a/b", None), vec!["repository:a/b:pull"]);
        assert_eq!(
            token_scopes(
                "a/b",
                Some("repository:a/b:pull  registry:catalog:* repository:a/b:pull,push")
            ),
            vec![
                "registry:catalog:*",
                "repository:a/b:pull",
                "repository:a/b:pull,push"
            ]
        );
        // names containing host:port are not split
        assert_eq!(
            token_scopes("reg:5000/x", Some("repository:reg:5000/x:pull")),
            vec!["repository:reg:5000/x:pull"]
        );
    }

    #[test]
    fn realm_validation_table() {
        let https_reg = origin("https://127.0.0.1:5000/");
        let public_reg = origin("https://registry-1.docker.io/");
        let plain_reg = origin("http://reg.internal:5000/");
        let ok = |realm: &str, reg: &Origin| validate_realm(realm, reg).is_ok();
        // same host, other port: allowed even on loopback
        assert!(ok("https://127.0.0.1:5001/token", &https_reg));
        assert!(ok("https://127.0.0.1:5000/token", &https_reg));
        // cross-host public realm
        assert!(ok("https://auth.docker.io/token", &public_reg));
        // plain http realm for https registry
        assert!(!ok("http://auth.docker.io/token", &public_reg));
        assert!(!ok("http://127.0.0.1:5001/token", &https_reg));
        // http realm for a plain-http registry is permitted
        assert!(ok("http://reg.internal:5001/token", &plain_reg));
        // metadata and link-local
        assert!(!ok("https://169.254.169.254/latest/meta-data", &public_reg));
        assert!(!ok("https://[fe80::1]/token", &public_reg));
        assert!(!ok("https://0.0.0.0/token", &public_reg));
        // other hosts' private/loopback literals
        assert!(!ok("https://10.0.0.5/token", &public_reg));
        assert!(!ok("https://127.0.0.3:5001/token", &https_reg));
        assert!(!ok("https://[::1]/token", &public_reg));
        assert!(!ok("https://[::ffff:127.0.0.1]/token", &public_reg));
        // site-local, NAT64 and 6to4 forms of private, loopback and metadata addresses
        assert!(!ok("https://[fec0::1]/token", &public_reg));
        assert!(!ok("https://[64:ff9b::a9fe:a9fe]/token", &public_reg));
        assert!(!ok("https://[64:ff9b::7f00:1]/token", &public_reg));
        assert!(!ok("https://[64:ff9b:1::1]/token", &public_reg));
        assert!(!ok("https://[2002:a00:5::1]/token", &public_reg));
        assert!(!ok("https://[2002:a9fe:a9fe::1]/token", &public_reg));
        // their public counterparts pass
        assert!(ok("https://[64:ff9b::808:808]/token", &public_reg));
        assert!(ok("https://[2002:808:808::1]/token", &public_reg));
        assert!(ok("https://[2001:db8::1]/token", &public_reg));
        // same-host private realm (on-prem Harbor at 10.x)
        assert!(ok(
            "https://10.1.2.3:8443/service/token",
            &origin("https://10.1.2.3:5000/")
        ));
        // other schemes and junk
        assert!(!ok("ftp://auth.docker.io/token", &public_reg));
        assert!(!ok("file:///etc/passwd", &public_reg));
        assert!(!ok("not a url", &public_reg));
        assert!(!ok("https://user:pw@auth.docker.io/token", &public_reg));
    }

    #[test]
    fn realm_refusal_never_echoes_query() {
        let (shown, _) = validate_realm(
            "http://auth.example/token?secret=abc",
            &origin("https://r/"),
        )
        .unwrap_err();
        assert_eq!(shown, "http://auth.example/token");
    }

    #[test]
    fn redirect_targets_may_be_private_only_when_registry_is() {
        let reg_loop = HostPort::new("127.0.0.1", 5000);
        let reg_pub = HostPort::new("registry.example", 443);
        let cdn = HostPort::new("127.0.0.2", 6000);
        assert!(check_target_address(&cdn, &reg_loop, false).is_ok());
        assert!(check_target_address(&cdn, &reg_pub, false).is_err());
        assert!(
            check_target_address(&HostPort::new("169.254.169.254", 80), &reg_loop, false).is_err()
        );
        assert!(check_target_address(&HostPort::new("cdn.example", 443), &reg_pub, false).is_ok());
    }

    #[test]
    fn token_response_access_token_vs_token_rules() {
        let now = SystemTime::now();
        let both = br#"{"token":"t","access_token":"a"}"#;
        assert_eq!(
            parse_token_response(both, TokenFlow::Get, now)
                .unwrap()
                .value
                .expose(),
            "a"
        );
        assert_eq!(
            parse_token_response(br#"{"token":"t"}"#, TokenFlow::Get, now)
                .unwrap()
                .value
                .expose(),
            "t"
        );
        assert_eq!(
            parse_token_response(br#"{"token":"t","access_token":""}"#, TokenFlow::Get, now)
                .unwrap()
                .value
                .expose(),
            "t"
        );
        // POST requires access_token
        let e = parse_token_response(br#"{"token":"t"}"#, TokenFlow::OAuthPost, now).unwrap_err();
        assert_eq!(
            e,
            "authorization server did not include a token in the response"
        );
        let e = parse_token_response(br#"{"token":""}"#, TokenFlow::Get, now).unwrap_err();
        assert!(e.contains("did not include a token"));
        assert!(parse_token_response(b"<html>", TokenFlow::Get, now).is_err());
    }

    #[test]
    fn token_expiry_defaults_to_60s_and_honours_issued_at() {
        let now = SystemTime::now();
        let t = parse_token_response(br#"{"token":"t"}"#, TokenFlow::Get, now).unwrap();
        assert_eq!(t.expires_in, DEFAULT_TOKEN_LIFETIME);
        let t =
            parse_token_response(br#"{"token":"t","expires_in":0}"#, TokenFlow::Get, now).unwrap();
        assert_eq!(t.expires_in, DEFAULT_TOKEN_LIFETIME);
        let t = parse_token_response(br#"{"token":"t","expires_in":300}"#, TokenFlow::Get, now)
            .unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(300));

        // issued 250 s ago with a 300 s lifetime: at most 50 s left
        let issued = time::OffsetDateTime::from(now - Duration::from_secs(250))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body = format!(r#"{{"token":"t","expires_in":300,"issued_at":"{issued}"}}"#);
        let t = parse_token_response(body.as_bytes(), TokenFlow::Get, now).unwrap();
        let mut cache = TokenCache::default();
        let key = TokenKey {
            realm: "https://a/token".into(),
            service: "s".into(),
            scopes: vec!["repository:x:pull".into()],
        };
        let i0 = Instant::now();
        cache.insert(key.clone(), &t, now, i0);
        assert!(cache.get(&key, i0 + Duration::from_secs(10)).is_some());
        assert!(cache.get(&key, i0 + Duration::from_secs(50)).is_none());

        // issued in the future (server clock ahead): counted from receipt
        let future = time::OffsetDateTime::from(now + Duration::from_secs(3600))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body = format!(r#"{{"token":"t","expires_in":60,"issued_at":"{future}"}}"#);
        let t = parse_token_response(body.as_bytes(), TokenFlow::Get, now).unwrap();
        assert_eq!(t.issued_at, now);
    }

    #[test]
    fn token_cache_is_keyed_by_exact_scope_set_and_expires() {
        let now = SystemTime::now();
        let i0 = Instant::now();
        let t =
            parse_token_response(br#"{"token":"t","expires_in":60}"#, TokenFlow::Get, now).unwrap();
        let k1 = TokenKey {
            realm: "r".into(),
            service: "s".into(),
            scopes: vec!["repository:a:pull".into()],
        };
        let mut k2 = k1.clone();
        k2.scopes.push("repository:b:pull".into());
        let mut c = TokenCache::default();
        c.insert(k1.clone(), &t, now, i0);
        assert!(c.get(&k1, i0).is_some());
        assert!(c.get(&k2, i0).is_none());
        // the 6 s margin: expired at 54 s
        assert!(c.get(&k1, i0 + Duration::from_secs(53)).is_some());
        assert!(c.get(&k1, i0 + Duration::from_secs(55)).is_none());
        c.remove(&k1);
        assert!(c.get(&k1, i0).is_none());
        assert!(!format!("{t:?}").contains("\"t\""));
    }
}
