//! One repository on one registry, with one credential: challenge handling, tokens, manifests,
//! blob requests.
//!
//! Owns the authorization state machine of a pull: nothing is sent before a challenge; a Basic
//! challenge is answered with Basic only when a username/password exists; a Bearer challenge
//! leads to a token from the (validated) realm, OAuth2 POST first for credentials with a GET
//! fallback (containerd semantics), anonymous GET otherwise; a 401 carrying
//! `error="invalid_token"` (or a wider scope) is answered exactly once more. Tokens are cached
//! per (realm, service, scopes) inside this repository handle, so a token obtained with one
//! credential never serves another. It also owns manifest resolution (HEAD, GET fallback, digest
//! checks, size cap) and opening blob requests (Range, Content-Range validation).
//!
//! It must never send the credential (or a token derived from it) to any origin other than the
//! registry's own and its validated realm, never answer a challenge that came from a redirect
//! target, never over plain http, and never word a not-found as an access denial.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use url::Url;

use crate::auth::{
    Credential, MAX_TOKEN_BODY, Secret, Token, TokenCache, TokenFlow, TokenKey,
    parse_token_response, token_scopes, validate_realm,
};
use crate::challenge::{Challenge, parse_headers};
use crate::client::{Client, Ctx, Followed, read_capped_lossy};
use crate::error::{MAX_ERROR_BODY, RegistryError, Role, Scrub, render_error_body_for};
use crate::origin::{HostPort, Origin, Scheme, redact_url};

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
    pub(crate) registry: Origin,
    pub(crate) repository: String,
    credential: Option<Credential>,
    mode: Mutex<AuthMode>,
    tokens: tokio::sync::Mutex<TokenCache>,
    /// Bearer and refresh tokens this handle received, most recent last (at most
    /// [`MAX_ISSUED`]): a server that echoes request headers must not leak them into an error.
    issued: Mutex<Vec<Secret>>,
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
    ) -> Self {
        Self {
            inner: Arc::new(RepoInner {
                client,
                registry,
                repository,
                credential,
                mode: Mutex::new(AuthMode::None),
                tokens: tokio::sync::Mutex::new(TokenCache::default()),
                issued: Mutex::new(Vec::new()),
            }),
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

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            registry: &self.inner.registry,
            repository: &self.inner.repository,
            scrub: self.scrubber(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> Url {
        let mut u = self.inner.registry.base_url();
        u.set_path(path);
        u
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

    fn user_desc(&self) -> String {
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
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("/v2/");
        let f = self
            .request(
                Method::GET,
                url.clone(),
                HeaderMap::new(),
                &What("registry API (/v2/)".into()),
            )
            .await?;
        match f.resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(RegistryError::Protocol {
                host: self.host().clone(),
                role: Role::Registry,
                reason: format!(
                    "GET {} answered 404: this host does not serve the registry v2 API",
                    redact_url(&url)
                ),
            }),
            _ => Err(self
                .status_error(f, "GET", &What("registry API (/v2/)".into()))
                .await),
        }
    }

    /// Sends a request to the registry, answering challenges. Returns the final response (which
    /// may be any status) unless authorization failed for good.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        what: &What,
    ) -> Result<Followed, RegistryError> {
        let mut tries = Tries::default();
        tracing::debug!(what = %what.0, method = %method, url = %redact_url(&url), "registry request");
        loop {
            let (auth, key) = self.authorization().await?;
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
                    &self.ctx(),
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
                        self.host()
                    ),
                });
            }
            let challenges = parse_headers(f.resp.headers());
            let body = read_capped_lossy(f.resp, MAX_ERROR_BODY).await;
            match self
                .on_unauthorized(&challenges, sent_auth, key, &mut tries, &body)
                .await?
            {
                Next::Retry => continue,
            }
        }
    }

    async fn on_unauthorized(
        &self,
        challenges: &[Challenge],
        sent_auth: bool,
        key: Option<TokenKey>,
        tries: &mut Tries,
        body: &[u8],
    ) -> Result<Next, RegistryError> {
        let host = self.host().clone();
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
            let realm =
                validate_realm(realm, &self.inner.registry).map_err(|(realm, reason)| {
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
                *self.inner.mode.lock().expect("auth mode") = new_mode;
                tries.learned = true;
                return Ok(Next::Retry);
            }
            let challenge_scopes = token_scopes(&self.inner.repository, b.param("scope"));
            let wider = key.as_ref().is_some_and(|k| k.scopes != challenge_scopes);
            let refreshable = error == "invalid_token"
                || (error == "insufficient_scope" && wider)
                || (!error.is_empty() && error != "insufficient_scope");
            if refreshable && !tries.refreshed {
                // exactly one refresh: drop the token and ask again (with the challenge's scope)
                tries.refreshed = true;
                if let Some(k) = key {
                    self.inner.tokens.lock().await.remove(&k);
                }
                *self.inner.mode.lock().expect("auth mode") = new_mode;
                return Ok(Next::Retry);
            }
            if error == "insufficient_scope" {
                if self.inner.credential.is_none() {
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
                        self.user_desc(),
                        b.param("scope").unwrap_or("pull"),
                        suffix(&detail)
                    ),
                });
            }
            let reason = match &self.inner.credential {
                None => format!(
                    "no credentials were given and the registry requires them{}",
                    suffix(&detail)
                ),
                Some(_) if !error.is_empty() => format!(
                    "server message: {error}: authorization failed with {}{}",
                    self.user_desc(),
                    suffix(&detail)
                ),
                Some(_) => format!(
                    "the registry rejected the token issued for {}{}",
                    self.user_desc(),
                    suffix(&detail)
                ),
            };
            return Err(unauthorized(reason));
        }
        if basic.is_some() {
            if sent_auth || tries.learned {
                return Err(unauthorized(format!(
                    "the registry rejected {}{}",
                    self.user_desc(),
                    suffix(&detail)
                )));
            }
            return match &self.inner.credential {
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
                    *self.inner.mode.lock().expect("auth mode") = AuthMode::Basic;
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

    /// The `Authorization` value for the registry, obtaining a token if needed.
    async fn authorization(
        &self,
    ) -> Result<(Option<HeaderValue>, Option<TokenKey>), RegistryError> {
        let mode = self.inner.mode.lock().expect("auth mode").clone();
        let plain = self.inner.registry.scheme == Scheme::Http;
        match mode {
            AuthMode::None => Ok((None, None)),
            AuthMode::Basic => {
                let Some(Credential::Password { username, password }) = &self.inner.credential
                else {
                    return Ok((None, None));
                };
                if plain {
                    return Err(RegistryError::InsecureCredentials {
                        host: self.host().clone(),
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
                let key = TokenKey {
                    realm: realm.to_string(),
                    service: service.clone(),
                    scopes: token_scopes(&self.inner.repository, scope.as_deref()),
                };
                let mut cache = self.inner.tokens.lock().await;
                if let Some(t) = cache.get(&key, Instant::now()) {
                    return Ok((Some(bearer_header(t.expose())), Some(key)));
                }
                if plain && self.inner.credential.is_some() {
                    return Err(RegistryError::InsecureCredentials {
                        host: self.host().clone(),
                        role: Role::Registry,
                    });
                }
                let now_sys = SystemTime::now();
                let token = self.fetch_token(&realm, &service, &key.scopes).await?;
                self.remember_issued(&token);
                cache.insert(key.clone(), &token, now_sys, Instant::now());
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
        realm: &Url,
        service: &str,
        scopes: &[String],
    ) -> Result<Token, RegistryError> {
        if realm.scheme() == "http" && self.inner.credential.is_some() {
            return Err(RegistryError::InsecureCredentials {
                host: Origin::of(realm)
                    .map(|o| o.host)
                    .unwrap_or_else(|| self.host().clone()),
                role: Role::TokenRealm,
            });
        }
        match &self.inner.credential {
            Some(Credential::Password { username, password }) => {
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "password")
                    .append_pair("username", username)
                    .append_pair("password", password.expose())
                    .append_pair("client_id", CLIENT_ID)
                    .append_pair("service", service)
                    .append_pair("scope", &scopes.join(" "))
                    .finish();
                let f = self.post_token(realm, form).await?;
                match f.resp.status().as_u16() {
                    // containerd: these mean "this server does not do OAuth2 POST; use GET"
                    400 | 401 | 404 | 405 => {
                        tracing::debug!(realm = %redact_url(realm), status = f.resp.status().as_u16(), "oauth token POST refused, falling back to GET");
                        let auth = basic_header(username, password.expose());
                        self.get_token(realm, service, scopes, Some(auth)).await
                    }
                    _ => self.token_response(f, TokenFlow::OAuthPost, realm).await,
                }
            }
            Some(Credential::IdentityToken(t)) => {
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", t.expose())
                    .append_pair("client_id", CLIENT_ID)
                    .append_pair("service", service)
                    .append_pair("scope", &scopes.join(" "))
                    .finish();
                let f = self.post_token(realm, form).await?;
                self.token_response(f, TokenFlow::OAuthPost, realm).await
            }
            None => self.get_token(realm, service, scopes, None).await,
        }
    }

    async fn post_token(&self, realm: &Url, form: String) -> Result<Followed, RegistryError> {
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
                &self.ctx(),
            )
            .await
    }

    async fn get_token(
        &self,
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
                &self.ctx(),
            )
            .await?;
        self.token_response(f, TokenFlow::Get, realm).await
    }

    async fn token_response(
        &self,
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
                host: self.host().clone(),
                repository: self.inner.repository.clone(),
                reason: format!(
                    "token realm {realm_host} refused {} ({}){}",
                    self.user_desc(),
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
