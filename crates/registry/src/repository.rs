//! One repository on one registry, with one credential: challenge handling, tokens, manifests,
//! blob requests.
//!
//! Owns the authorization state machine of a pull: nothing is sent before a challenge; a Basic
//! challenge is answered with Basic only when a username/password exists; a Bearer challenge
//! leads to a token from the (validated) realm, OAuth2 POST first for credentials with a GET
//! fallback (containerd semantics), anonymous GET otherwise; a 401 carrying
//! `error="invalid_token"` (or a wider scope) is answered exactly once more. Tokens are cached
//! per (realm, service, scopes, with or without the credential) inside this repository handle,
//! so a token obtained with one credential never serves another and an anonymous token never
//! serves a credentialed request. The cache has one lock per key, held across that key's token
//! exchange only: concurrent requests for the same key wait for one exchange (single flight),
//! and a slow token server never delays requests that need another key. It also owns manifest
//! resolution (HEAD, GET fallback, digest checks, size cap) and opening blob requests (Range,
//! Content-Range validation).
//!
//! A handle holds the namespace's endpoints ([`crate::endpoint`]): each keeps its own challenge
//! state, gets the credential only when its `send_credentials` says so, and is tried in order
//! by the manifest and blob operations (`targets`, then `fail_over` after each failure).
//!
//! It must never send the credential (or a token derived from it) to any origin other than the
//! registry's own and its validated realm, never answer a challenge that came from a redirect
//! target, never over plain http, and never word a not-found as an access denial.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use url::Url;

use crate::auth::{
    Credential, MAX_TOKEN_BODY, Secret, Token, TokenFlow, TokenKey, parse_token_response,
    token_scopes, token_valid_until, validate_realm,
};
use crate::challenge::{Challenge, parse_headers};
use crate::client::{Client, Ctx, Followed, read_capped_lossy};
use crate::endpoint::RegistryEndpoint;
use crate::error::{ErrorKind, MAX_ERROR_BODY, RegistryError, Role, Scrub, render_error_body_for};
use crate::origin::{HostPort, Origin, redact_url};

/// `Accept` for manifest requests: the four supported media types (and `*/*` like containerd, so
/// an unexpected type is reported by name instead of as a 404).
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// The OAuth2 `client_id` sent to token servers.
pub const CLIENT_ID: &str = "berth";

/// `Docker-Content-Digest`.
pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

#[derive(Clone, Debug)]
enum AuthMode {
    /// No challenge seen yet: send nothing.
    None,
    /// Basic challenge seen.
    Basic,
    /// Bearer challenge seen.
    Bearer {
        realm: Url,
        service: String,
        scope: Option<String>,
    },
}

pub(crate) struct RepoInner {
    pub(crate) client: Client,
    /// The namespace's own registry (what messages call "the registry").
    pub(crate) registry: Origin,
    pub(crate) repository: String,
    credential: Option<Credential>,
    /// Where requests go, in order (mirrors, then the server).
    pub(crate) endpoints: Vec<Arc<EndpointState>>,
    tokens: TokenSlots,
    /// Bearer and refresh tokens this handle received, most recent last (at most
    /// [`MAX_ISSUED`]): a server that echoes request headers must not leak them into an error.
    issued: Mutex<Vec<Secret>>,
}

/// One endpoint of a handle: its configuration, parsed headers and challenge state.
pub(crate) struct EndpointState {
    pub(crate) spec: RegistryEndpoint,
    headers: HeaderMap,
    mode: Mutex<AuthMode>,
}

/// An endpoint to try now, and whether it is the last candidate (only the last one retries).
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) ep: Arc<EndpointState>,
    pub(crate) last: bool,
}

/// What an operation needs from an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Resolve a tag (pull + resolve capabilities).
    Resolve,
    /// Fetch by digest (pull capability).
    Pull,
}

/// A token cache key: the exchange's parameters plus whether the credential was used.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotKey {
    key: TokenKey,
    authenticated: bool,
}

type Slot = Arc<tokio::sync::Mutex<Option<(Secret, Instant)>>>;

/// The token cache: one async lock per key (single flight per key); the map's own lock is held
/// only to find or create a slot, never across IO.
#[derive(Default)]
struct TokenSlots(Mutex<HashMap<SlotKey, Slot>>);

impl TokenSlots {
    fn slot(&self, key: &SlotKey) -> Slot {
        self.0
            .lock()
            .expect("token slots")
            .entry(key.clone())
            .or_default()
            .clone()
    }
}

/// Tokens remembered for scrubbing (a pull uses a handful; old ones have expired anyway).
const MAX_ISSUED: usize = 32;

/// A repository handle bound to one credential. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct Repository {
    pub(crate) inner: Arc<RepoInner>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("registry", &self.inner.registry.to_string())
            .field("repository", &self.inner.repository)
            .field("credential", &self.inner.credential)
            .field(
                "endpoints",
                &self
                    .inner
                    .endpoints
                    .iter()
                    .map(|e| e.spec.label())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The outcome of handling a 401.
enum Next {
    Retry,
}

/// What one request has already done about 401s: answered the first challenge, refreshed once.
#[derive(Default)]
struct Tries {
    learned: bool,
    refreshed: bool,
}

/// What a registry request is about, for messages.
#[derive(Clone, Debug)]
pub(crate) struct What(pub(crate) String);

impl Repository {
    pub(crate) fn new(
        client: Client,
        registry: Origin,
        repository: String,
        credential: Option<Credential>,
        endpoints: Vec<RegistryEndpoint>,
    ) -> Result<Self, RegistryError> {
        let endpoints = endpoints
            .into_iter()
            .map(|spec| {
                let mut headers = HeaderMap::new();
                for (name, value) in &spec.headers {
                    let bad = |what: &str| {
                        RegistryError::Config(format!(
                            "header {name:?} of endpoint {} ({}): invalid header {what}; fix the [header] table",
                            spec.label(),
                            spec.source
                        ))
                    };
                    let n = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| bad("name"))?;
                    let mut v = HeaderValue::from_str(value).map_err(|_| bad("value"))?;
                    v.set_sensitive(true);
                    headers.append(n, v);
                }
                Ok(Arc::new(EndpointState {
                    spec,
                    headers,
                    mode: Mutex::new(AuthMode::None),
                }))
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        Ok(Self {
            inner: Arc::new(RepoInner {
                client,
                registry,
                repository,
                credential,
                endpoints,
                tokens: TokenSlots::default(),
                issued: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The endpoints requests for this repository go to, in the order they are tried.
    pub fn endpoints(&self) -> Vec<RegistryEndpoint> {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.spec.clone())
            .collect()
    }

    /// The endpoints an operation may use, in order, the last one marked. Fails when none has
    /// the capability, naming the configuration to fix.
    pub(crate) fn targets(&self, need: Need) -> Result<Vec<Target>, RegistryError> {
        let eligible: Vec<Arc<EndpointState>> = self
            .inner
            .endpoints
            .iter()
            .filter(|e| match need {
                Need::Pull => e.spec.pull,
                Need::Resolve => e.spec.pull && e.spec.resolve,
            })
            .cloned()
            .collect();
        if eligible.is_empty() {
            let (cap, op) = match need {
                Need::Pull => ("pull", "fetch content by digest"),
                Need::Resolve => ("pull and resolve", "resolve a tag"),
            };
            return Err(RegistryError::Config(format!(
                "no endpoint for {} may {op}: none of {} has the capabilities [{cap}]; add them to one host entry (or the server) in {}",
                self.inner.registry.host,
                self.inner
                    .endpoints
                    .iter()
                    .map(|e| e.spec.label())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.inner
                    .endpoints
                    .last()
                    .map(|e| e.spec.source.as_str())
                    .unwrap_or("the hosts directory")
            )));
        }
        let n = eligible.len();
        Ok(eligible
            .into_iter()
            .enumerate()
            .map(|(i, ep)| Target {
                ep,
                last: i + 1 == n,
            })
            .collect())
    }

    /// After `t` failed with `e`: the error when `t` was the last candidate; otherwise logs the
    /// failure and lets the caller move on to the next endpoint (containerd: the next host on
    /// any error).
    pub(crate) fn fail_over(&self, t: &Target, e: RegistryError) -> Result<(), RegistryError> {
        if t.last {
            return Err(e);
        }
        if e.kind() == ErrorKind::NotFound {
            // a mirror without this content is normal, not a fault
            tracing::info!(endpoint = %t.ep.spec.label(), repository = %self.inner.repository, error = %e, "not on this endpoint, trying the next one");
        } else {
            tracing::warn!(
                endpoint = %t.ep.spec.label(),
                source = %t.ep.spec.source,
                repository = %self.inner.repository,
                error = %e,
                "endpoint failed, trying the next one"
            );
        }
        Ok(())
    }

    /// The credential for requests to `ep` (none when the endpoint may not receive it).
    fn credential_for(&self, ep: &EndpointState) -> Option<&Credential> {
        if ep.spec.send_credentials {
            self.inner.credential.as_ref()
        } else {
            None
        }
    }

    /// The registry host:port.
    pub fn host(&self) -> &HostPort {
        &self.inner.registry.host
    }

    /// The repository path.
    pub fn name(&self) -> &str {
        &self.inner.repository
    }

    /// The context of requests to `t`'s endpoint; its headers only when `headers`.
    pub(crate) fn ctx<'a>(&'a self, t: &'a Target, headers: bool) -> Ctx<'a> {
        let mut c = Ctx::new(&t.ep.spec.origin, &self.inner.repository, self.scrubber());
        c.retry = t.last;
        if headers {
            c.origin_headers = t.ep.headers.clone();
        }
        c
    }

    /// The secrets of this handle: the credential's password or identity token, base64
    /// `user:pass`, and every bearer and refresh token it received.
    pub(crate) fn scrubber(&self) -> Scrub {
        let mut secrets: Vec<String> = Vec::new();
        if let Some(c) = &self.inner.credential {
            secrets.extend(c.secrets().into_iter().map(str::to_string));
            if let Credential::Password { username, password } = c {
                secrets.push(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose())),
                );
            }
        }
        for ep in &self.inner.endpoints {
            secrets.extend(ep.spec.headers.iter().map(|(_, v)| v.clone()));
        }
        secrets.extend(
            self.inner
                .issued
                .lock()
                .expect("issued tokens")
                .iter()
                .map(|t| t.expose().to_string()),
        );
        Scrub::new(secrets)
    }

    /// Removes credential material (see [`Self::scrubber`]) from text that came from a server.
    pub(crate) fn scrub(&self, s: String) -> String {
        self.scrubber().apply(s)
    }

    fn remember_issued(&self, token: &Token) {
        let mut issued = self.inner.issued.lock().expect("issued tokens");
        for t in std::iter::once(&token.value).chain(token.refresh_token.as_ref()) {
            if !issued.contains(t) {
                issued.push(t.clone());
            }
        }
        let excess = issued.len().saturating_sub(MAX_ISSUED);
        issued.drain(..excess);
    }

    fn user_desc(&self, ep: &EndpointState) -> String {
        if self.credential_for(ep).is_none() && self.inner.credential.is_some() {
            return format!(
                "anonymous access (the credentials for {} are not sent to {}; set send_credentials = true for it in {} to allow that)",
                self.inner.registry.host,
                ep.spec.label(),
                ep.spec.source
            );
        }
        match &self.inner.credential {
            Some(Credential::Password { username, .. }) => {
                format!("the credentials of user {username:?}")
            }
            Some(Credential::IdentityToken(_)) => "the identity token".into(),
            None => "anonymous access".into(),
        }
    }

    /// `GET /v2/`: checks that the host is a v2 registry and that the credential (if any) is
    /// accepted. Answers the challenge like any other request.
    /// Tries the endpoints that may serve content, in order, until one answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        for t in self.targets(Need::Pull)? {
            match self.ping_at(&t).await {
                Ok(()) => return Ok(()),
                Err(e) => self.fail_over(&t, e)?,
            }
        }
        unreachable!("fail_over returns the last endpoint's error")
    }

    async fn ping_at(&self, t: &Target) -> Result<(), RegistryError> {
        let what = What("registry API (/v2/)".into());
        let f = self
            .request(t, Method::GET, "/", HeaderMap::new(), &what)
            .await?;
        match f.resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(RegistryError::Protocol {
                host: t.ep.spec.host().clone(),
                role: Role::Registry,
                reason: format!(
                    "GET {} answered 404: this host does not serve the registry v2 API",
                    redact_url(&f.url)
                ),
            }),
            _ => Err(self.status_error(f, "GET", &what).await),
        }
    }

    /// Sends a request to the registry, answering challenges. Returns the final response (which
    /// may be any status) unless authorization failed for good.
    /// `rest` is the path under the endpoint's API root (`/` or `/<repo>/manifests/<ref>`).
    pub(crate) async fn request(
        &self,
        t: &Target,
        method: Method,
        rest: &str,
        headers: HeaderMap,
        what: &What,
    ) -> Result<Followed, RegistryError> {
        let url = t.ep.spec.url(rest);
        let mut tries = Tries::default();
        tracing::debug!(what = %what.0, method = %method, url = %redact_url(&url), endpoint = %t.ep.spec.source, "registry request");
        loop {
            let (auth, key) = self.authorization(t).await?;
            let sent_auth = auth.is_some();
            let f = self
                .inner
                .client
                .send_following(
                    method.clone(),
                    url.clone(),
                    headers.clone(),
                    auth,
                    None,
                    Role::Registry,
                    true,
                    &self.ctx(t, true),
                )
                .await?;
            if f.resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(f);
            }
            if f.crossed {
                // CVE-2020-15157 / CRED-03: a redirect target's challenge is never answered
                return Err(RegistryError::UnexpectedStatus {
                    host: Origin::of(&f.url)
                        .map(|o| o.host)
                        .unwrap_or_else(|| self.host().clone()),
                    role: f.role,
                    request: format!("{method} request to {}", redact_url(&f.url)),
                    status: "401 Unauthorized".into(),
                    detail: format!(
                        "the redirect target asked for authentication; credentials for {} are never sent to other hosts",
                        t.ep.spec.host()
                    ),
                });
            }
            let challenges = parse_headers(f.resp.headers());
            let body = read_capped_lossy(f.resp, MAX_ERROR_BODY).await;
            match self
                .on_unauthorized(t, &challenges, sent_auth, key, &mut tries, &body)
                .await?
            {
                Next::Retry => continue,
            }
        }
    }

    async fn on_unauthorized(
        &self,
        t: &Target,
        challenges: &[Challenge],
        sent_auth: bool,
        key: Option<SlotKey>,
        tries: &mut Tries,
        body: &[u8],
    ) -> Result<Next, RegistryError> {
        let ep = &*t.ep;
        let credential = self.credential_for(ep);
        let host = ep.spec.host().clone();
        let repository = self.inner.repository.clone();
        let detail = render_error_body_for(Role::Registry, body, &self.scrubber());
        let bearer = challenges.iter().find(|c| c.is_bearer());
        let basic = challenges.iter().find(|c| c.is_basic());
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            host: host.clone(),
            repository: repository.clone(),
            reason,
        };
        if let Some(b) = bearer {
            let realm = b.param("realm").filter(|r| !r.is_empty()).ok_or_else(|| {
                RegistryError::UnsupportedChallenge {
                    host: host.clone(),
                    repository: repository.clone(),
                    reason: "no realm specified for token auth challenge".into(),
                }
            })?;
            let realm = validate_realm(realm, &ep.spec.origin).map_err(|(realm, reason)| {
                RegistryError::RealmRefused {
                    host: host.clone(),
                    realm,
                    reason,
                }
            })?;
            let new_mode = AuthMode::Bearer {
                realm,
                service: b.param("service").unwrap_or("").to_string(),
                scope: b.param("scope").map(str::to_string),
            };
            let error = b.param("error").unwrap_or("");
            if !sent_auth {
                // a challenge to an unauthenticated request: learn it and answer (once)
                if tries.learned {
                    return Err(unauthorized(format!(
                        "the registry keeps asking for authentication{}",
                        suffix(&detail)
                    )));
                }
                *ep.mode.lock().expect("auth mode") = new_mode;
                tries.learned = true;
                return Ok(Next::Retry);
            }
            let challenge_scopes = token_scopes(&self.inner.repository, b.param("scope"));
            let wider = key
                .as_ref()
                .is_some_and(|k| k.key.scopes != challenge_scopes);
            let refreshable = error == "invalid_token"
                || (error == "insufficient_scope" && wider)
                || (!error.is_empty() && error != "insufficient_scope");
            if refreshable && !tries.refreshed {
                // exactly one refresh: drop the token and ask again (with the challenge's scope)
                tries.refreshed = true;
                if let Some(k) = key {
                    *self.inner.tokens.slot(&k).lock().await = None;
                }
                *ep.mode.lock().expect("auth mode") = new_mode;
                return Ok(Next::Retry);
            }
            if error == "insufficient_scope" {
                if credential.is_none() {
                    return Err(unauthorized(format!(
                        "no credentials were given and anonymous access is not allowed (insufficient_scope for {}){}",
                        b.param("scope").unwrap_or("pull"),
                        suffix(&detail)
                    )));
                }
                return Err(RegistryError::Denied {
                    host,
                    repository,
                    reason: format!(
                        "insufficient_scope: the token issued for {} does not grant {}{}",
                        self.user_desc(ep),
                        b.param("scope").unwrap_or("pull"),
                        suffix(&detail)
                    ),
                });
            }
            let reason = match credential {
                None if self.inner.credential.is_some() => format!(
                    "the endpoint requires authentication and was asked with {}{}",
                    self.user_desc(ep),
                    suffix(&detail)
                ),
                None => format!(
                    "no credentials were given and the registry requires them{}",
                    suffix(&detail)
                ),
                Some(_) if !error.is_empty() => format!(
                    "server message: {error}: authorization failed with {}{}",
                    self.user_desc(ep),
                    suffix(&detail)
                ),
                Some(_) => format!(
                    "the registry rejected the token issued for {}{}",
                    self.user_desc(ep),
                    suffix(&detail)
                ),
            };
            return Err(unauthorized(reason));
        }
        if basic.is_some() {
            if sent_auth || tries.learned {
                return Err(unauthorized(format!(
                    "the registry rejected {}{}",
                    self.user_desc(ep),
                    suffix(&detail)
                )));
            }
            return match credential {
                None if self.inner.credential.is_some() => Err(unauthorized(format!(
                    "authorization failed: no basic auth credentials for {}{}",
                    self.user_desc(ep),
                    suffix(&detail)
                ))),
                None => Err(unauthorized(format!(
                    "authorization failed: no basic auth credentials{}",
                    suffix(&detail)
                ))),
                Some(Credential::IdentityToken(_)) => Err(RegistryError::UnsupportedChallenge {
                    host,
                    repository,
                    reason: "the registry asks for Basic authentication, but the credential is an identity token (it needs a username and password)".into(),
                }),
                Some(Credential::Password { .. }) => {
                    *ep.mode.lock().expect("auth mode") = AuthMode::Basic;
                    tries.learned = true;
                    Ok(Next::Retry)
                }
            };
        }
        if challenges.is_empty() {
            return Err(unauthorized(format!(
                "401 without a WWW-Authenticate challenge{}",
                suffix(&detail)
            )));
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Err(RegistryError::UnsupportedChallenge {
            host,
            repository,
            reason: format!(
                "failed to find supported auth scheme among {}: only basic and bearer are implemented",
                schemes.join(", ")
            ),
        })
    }

    /// The `Authorization` value for `t`'s endpoint, obtaining a token if needed. Only the
    /// token slot of this exchange's key is locked while a token is fetched: requests needing
    /// the same key wait for that one exchange, all others proceed.
    async fn authorization(
        &self,
        t: &Target,
    ) -> Result<(Option<HeaderValue>, Option<SlotKey>), RegistryError> {
        let ep = &*t.ep;
        let mode = ep.mode.lock().expect("auth mode").clone();
        let plain = ep.spec.is_plain_http();
        let credential = self.credential_for(ep);
        match mode {
            AuthMode::None => Ok((None, None)),
            AuthMode::Basic => {
                let Some(Credential::Password { username, password }) = credential else {
                    return Ok((None, None));
                };
                if plain {
                    return Err(RegistryError::InsecureCredentials {
                        host: ep.spec.host().clone(),
                        role: Role::Registry,
                    });
                }
                Ok((Some(basic_header(username, password.expose())), None))
            }
            AuthMode::Bearer {
                realm,
                service,
                scope,
            } => {
                let key = SlotKey {
                    key: TokenKey {
                        realm: realm.to_string(),
                        service: service.clone(),
                        scopes: token_scopes(&self.inner.repository, scope.as_deref()),
                    },
                    authenticated: credential.is_some(),
                };
                let slot = self.inner.tokens.slot(&key);
                let mut cached = slot.lock().await;
                if let Some((value, until)) = cached.as_ref()
                    && Instant::now() < *until
                {
                    return Ok((Some(bearer_header(value.expose())), Some(key)));
                }
                if plain && credential.is_some() {
                    return Err(RegistryError::InsecureCredentials {
                        host: ep.spec.host().clone(),
                        role: Role::Registry,
                    });
                }
                let now_sys = SystemTime::now();
                let token = self
                    .fetch_token(t, credential, &realm, &service, &key.key.scopes)
                    .await?;
                self.remember_issued(&token);
                *cached = Some((
                    token.value.clone(),
                    token_valid_until(&token, now_sys, Instant::now()),
                ));
                Ok((Some(bearer_header(token.value.expose())), Some(key)))
            }
        }
    }

    fn realm_err(&self, realm: &Url, reason: String) -> RegistryError {
        RegistryError::Token {
            host: self.host().clone(),
            realm: redact_url(realm),
            reason: self.scrub(reason),
        }
    }

    async fn fetch_token(
        &self,
        t: &Target,
        credential: Option<&Credential>,
        realm: &Url,
        service: &str,
        scopes: &[String],
    ) -> Result<Token, RegistryError> {
        if realm.scheme() == "http" && credential.is_some() {
            return Err(RegistryError::InsecureCredentials {
                host: Origin::of(realm)
                    .map(|o| o.host)
                    .unwrap_or_else(|| self.host().clone()),
                role: Role::TokenRealm,
            });
        }
        match credential {
            Some(Credential::Password { username, password }) => {
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "password")
                    .append_pair("username", username)
                    .append_pair("password", password.expose())
                    .append_pair("client_id", CLIENT_ID)
                    .append_pair("service", service)
                    .append_pair("scope", &scopes.join(" "))
                    .finish();
                let f = self.post_token(t, realm, form).await?;
                match f.resp.status().as_u16() {
                    // containerd: these mean "this server does not do OAuth2 POST; use GET"
                    400 | 401 | 404 | 405 => {
                        tracing::debug!(realm = %redact_url(realm), status = f.resp.status().as_u16(), "oauth token POST refused, falling back to GET");
                        let auth = basic_header(username, password.expose());
                        self.get_token(t, realm, service, scopes, Some(auth)).await
                    }
                    _ => self.token_response(t, f, TokenFlow::OAuthPost, realm).await,
                }
            }
            Some(Credential::IdentityToken(tok)) => {
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", tok.expose())
                    .append_pair("client_id", CLIENT_ID)
                    .append_pair("service", service)
                    .append_pair("scope", &scopes.join(" "))
                    .finish();
                let f = self.post_token(t, realm, form).await?;
                self.token_response(t, f, TokenFlow::OAuthPost, realm).await
            }
            None => self.get_token(t, realm, service, scopes, None).await,
        }
    }

    async fn post_token(
        &self,
        t: &Target,
        realm: &Url,
        form: String,
    ) -> Result<Followed, RegistryError> {
        self.inner
            .client
            .send_following(
                Method::POST,
                realm.clone(),
                HeaderMap::new(),
                None,
                Some((
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                    Bytes::from(form),
                )),
                Role::TokenRealm,
                false,
                &self.ctx(t, false),
            )
            .await
    }

    async fn get_token(
        &self,
        t: &Target,
        realm: &Url,
        service: &str,
        scopes: &[String],
        auth: Option<HeaderValue>,
    ) -> Result<Token, RegistryError> {
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if !service.is_empty() {
                q.append_pair("service", service);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let with_creds = auth.is_some();
        let f = self
            .inner
            .client
            .send_following(
                Method::GET,
                url,
                HeaderMap::new(),
                auth,
                None,
                Role::TokenRealm,
                !with_creds,
                &self.ctx(t, false),
            )
            .await?;
        self.token_response(t, f, TokenFlow::Get, realm).await
    }

    async fn token_response(
        &self,
        t: &Target,
        f: Followed,
        flow: TokenFlow,
        realm: &Url,
    ) -> Result<Token, RegistryError> {
        let status = f.resp.status();
        let realm_host = Origin::of(&f.url)
            .map(|o| o.host)
            .unwrap_or_else(|| self.host().clone());
        if status.is_success() {
            let body = self
                .inner
                .client
                .read_capped(
                    f.resp,
                    MAX_TOKEN_BODY as u64,
                    &realm_host,
                    Role::TokenRealm,
                    "token response",
                )
                .await?;
            return parse_token_response(&body, flow, SystemTime::now())
                .map_err(|reason| self.realm_err(realm, reason));
        }
        let body = read_capped_lossy(f.resp, MAX_ERROR_BODY).await;
        // a token server's text may echo the form it got (password, refresh token): keep only
        // its errors[] code and message
        let detail = render_error_body_for(Role::TokenRealm, &body, &self.scrubber());
        match status.as_u16() {
            401 | 403 => Err(RegistryError::Unauthorized {
                host: t.ep.spec.host().clone(),
                repository: self.inner.repository.clone(),
                reason: format!(
                    "token realm {realm_host} refused {} ({}){}",
                    self.user_desc(&t.ep),
                    status,
                    suffix(&detail)
                ),
            }),
            _ => Err(self.realm_err(
                realm,
                format!(
                    "unexpected status {status} from token {}{}",
                    if flow == TokenFlow::Get {
                        "GET"
                    } else {
                        "POST"
                    },
                    suffix(&detail)
                ),
            )),
        }
    }

    /// Turns a final non-success response into the matching error.
    pub(crate) async fn status_error(
        &self,
        f: Followed,
        method: &str,
        what: &What,
    ) -> RegistryError {
        let status = f.resp.status();
        let host = Origin::of(&f.url)
            .map(|o| o.host)
            .unwrap_or_else(|| self.host().clone());
        let url = redact_url(&f.url);
        let role = f.role;
        let body = if method == "HEAD" {
            Bytes::new()
        } else {
            read_capped_lossy(f.resp, MAX_ERROR_BODY).await
        };
        // a redirect target (CDN, object store) echoes the signed request in its text: only its
        // errors[] code and message are kept (CRED-07)
        let detail = render_error_body_for(role, &body, &self.scrubber());
        let repository = self.inner.repository.clone();
        if role != Role::Registry {
            return RegistryError::UnexpectedStatus {
                host,
                role,
                request: format!("{method} request to {url}"),
                status: status.to_string(),
                detail,
            };
        }
        match status.as_u16() {
            401 => RegistryError::Unauthorized {
                host,
                repository,
                reason: non_empty(detail, "unauthorized"),
            },
            403 => RegistryError::Denied {
                host,
                repository,
                reason: non_empty(detail, "403 Forbidden"),
            },
            404 => RegistryError::NotFound {
                host,
                repository,
                what: what.0.clone(),
                reason: non_empty(detail, "404 Not Found"),
            },
            s if (500..600).contains(&s) => RegistryError::Server {
                host,
                role,
                url,
                status: s,
                attempts: 1,
                detail,
            },
            _ => RegistryError::UnexpectedStatus {
                host,
                role,
                request: format!("{method} request to {url}"),
                status: status.to_string(),
                detail,
            },
        }
    }
}

fn suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn non_empty(s: String, d: &str) -> String {
    if s.is_empty() { d.to_string() } else { s }
}

fn basic_header(user: &str, pass: &str) -> HeaderValue {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut v = HeaderValue::from_str(&format!("Basic {enc}")).expect("base64 is a valid header");
    v.set_sensitive(true);
    v
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

/// The header map for a manifest request.
pub(crate) fn manifest_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;

    #[test]
    fn scrubber_covers_password_basic_value_and_issued_tokens() {
        let client = Client::new(ClientConfig {
            system_roots: false,
            ..ClientConfig::default()
        })
        .unwrap();
        let repo = client
            .repository_at(
                "reg.example:5000",
                "a/b",
                Some(Credential::password("alice", "pw-canary-1")),
            )
            .unwrap();
        repo.remember_issued(&Token {
            value: Secret::new("bearer-canary-2"),
            expires_in: std::time::Duration::from_secs(60),
            issued_at: SystemTime::now(),
            refresh_token: Some(Secret::new("refresh-canary-3")),
        });
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw-canary-1");
        let text = format!(
            "pw-canary-1 Basic {basic} Bearer bearer-canary-2 refresh_token=refresh-canary-3"
        );
        assert_eq!(
            repo.scrub(text),
            "<redacted> Basic <redacted> Bearer <redacted> refresh_token=<redacted>"
        );
        // the list stays bounded
        for i in 0..(MAX_ISSUED + 5) {
            repo.remember_issued(&Token {
                value: Secret::new(format!("t-{i:04}")),
                expires_in: std::time::Duration::from_secs(60),
                issued_at: SystemTime::now(),
                refresh_token: None,
            });
        }
        assert_eq!(repo.inner.issued.lock().unwrap().len(), MAX_ISSUED);
    }
}
