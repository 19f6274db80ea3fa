//! An HTTPS token server speaking the distribution token protocol (docs/spec/auth/token.md and oauth.md):
//! `GET` with optional Basic auth, `service`, repeated `scope`, `offline_token`; OAuth2 `POST` form with
//! `grant_type=password|refresh_token`, `client_id`, `service`, space-separated `scope`, `access_type`. It
//! issues ES256 JWTs that the real distribution 2.8 verifies: the signing certificate travels in the JWT
//! header `x5c` and chains to the CA given to the registry as `rootcertbundle` (distribution 2.8
//! `registry/auth/token/token.go` tries `x5c`, then `jwk`, then a libtrust `kid`; `aud` must be a string
//! equal to the registry's `service`, `iss` its `issuer`, and `exp`/`nbf` are checked with 60 s leeway).
//! Grants are the intersection of what was asked and what the user may do, like real servers. Every request
//! is recorded for assertions (never the password or token values). The protocol handling is written here
//! because no maintained crate implements its server side; JWT signing uses `jsonwebtoken`. It must never grant more than its
//! configuration allows, and never log a credential.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::net::{Body, Handler, Server, oci_error, respond};
use crate::pki::{Ca, Leaf, LeafSpec, Usage, Validity};
use crate::registry::TokenAuth;
use crate::secret::Secret;

/// What a principal may do on one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Repository name, or `*` for every repository.
    pub repository: String,
    /// Allowed actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

impl Grant {
    /// `pull` on a repository.
    pub fn pull(repository: impl Into<String>) -> Grant {
        Grant {
            repository: repository.into(),
            actions: vec!["pull".into()],
        }
    }

    /// `pull` and `push` on a repository.
    pub fn pull_push(repository: impl Into<String>) -> Grant {
        Grant {
            repository: repository.into(),
            actions: vec!["pull".into(), "push".into()],
        }
    }
}

/// A user of the token server.
#[derive(Clone, Debug)]
pub struct TokenUser {
    /// User name.
    pub name: String,
    /// Password (redacted in `Debug`).
    pub password: Secret,
    /// What the user may do.
    pub grants: Vec<Grant>,
}

impl TokenUser {
    /// A user with grants.
    pub fn new(name: impl Into<String>, password: impl Into<Secret>, grants: Vec<Grant>) -> Self {
        TokenUser {
            name: name.into(),
            password: password.into(),
            grants,
        }
    }
}

/// Which token fields the response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TokenFields {
    /// `token` only.
    Token,
    /// `access_token` only.
    AccessToken,
    /// Both, with the same value.
    #[default]
    Both,
}

/// How `issued_at` appears in responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssuedAt {
    /// The issue time (RFC 3339).
    #[default]
    Now,
    /// Field omitted.
    Omitted,
}

/// Options of [`TokenServer::start`].
#[derive(Clone, Debug)]
pub struct TokenServerOptions {
    /// Loopback IP to listen on.
    pub ip: IpAddr,
    /// TLS server certificate of the token endpoint.
    pub tls: Leaf,
    /// PEM of the CA that issued `tls` (given to clients and to skopeo).
    pub tls_ca_pem: String,
    /// `service` (the JWT `aud`).
    pub service: String,
    /// `issuer` (the JWT `iss`).
    pub issuer: String,
    /// Users.
    pub users: Vec<TokenUser>,
    /// What anonymous requests may do.
    pub anonymous: Vec<Grant>,
    /// JWT lifetime (`exp - iat`).
    pub lifetime: Duration,
    /// `expires_in` reported; `None` omits the field.
    pub expires_in: Option<u64>,
    /// `issued_at` reporting.
    pub issued_at: IssuedAt,
    /// Added to the clock for `iat`/`nbf`/`exp` (negative issues tokens from the past: expired ones).
    pub clock_offset_secs: i64,
    /// Token fields in responses.
    pub fields: TokenFields,
    /// Issue refresh tokens (on `offline_token=true` / `access_type=offline`) and accept
    /// `grant_type=refresh_token`.
    pub refresh_tokens: bool,
    /// Accept OAuth2 POST; `false` answers 404 so clients fall back to GET.
    pub post: bool,
}

impl TokenServerOptions {
    /// Defaults: 127.0.0.1, service `testkit-registry`, issuer `testkit-token-issuer`, lifetime 300 s,
    /// `expires_in` 300, both token fields, refresh tokens and POST enabled, no users, no anonymous access.
    pub fn new(tls: Leaf, tls_ca_pem: impl Into<String>) -> Self {
        TokenServerOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls,
            tls_ca_pem: tls_ca_pem.into(),
            service: "testkit-registry".into(),
            issuer: "testkit-token-issuer".into(),
            users: Vec::new(),
            anonymous: Vec::new(),
            lifetime: Duration::from_secs(300),
            expires_in: Some(300),
            issued_at: IssuedAt::Now,
            clock_offset_secs: 0,
            fields: TokenFields::Both,
            refresh_tokens: true,
            post: true,
        }
    }

    /// Adds a user.
    pub fn user(mut self, user: TokenUser) -> Self {
        self.users.push(user);
        self
    }
}

/// Which grant a token request used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantType {
    /// GET without credentials.
    Anonymous,
    /// GET with Basic auth.
    Basic,
    /// POST `grant_type=password`.
    Password,
    /// POST `grant_type=refresh_token`.
    RefreshToken,
    /// Anything else (recorded as sent).
    Other(String),
}

/// One request the token server received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// Which grant was used.
    pub grant: GrantType,
    /// The authenticated user, if authentication succeeded.
    pub user: Option<String>,
    /// Whether an `Authorization: Basic` header was present.
    pub basic_auth: bool,
    /// `service` parameter.
    pub service: Option<String>,
    /// `client_id` parameter.
    pub client_id: Option<String>,
    /// Requested scopes, one per entry.
    pub scopes: Vec<String>,
    /// Whether a refresh token was asked for.
    pub offline: bool,
    /// Response status.
    pub status: u16,
}

#[derive(Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

struct State {
    opts: TokenServerOptions,
    signing: Leaf,
    signing_key: jsonwebtoken::EncodingKey,
    requests: Mutex<Vec<TokenRequest>>,
    refresh: Mutex<HashMap<String, String>>,
}

/// A running token server; stops on drop.
pub struct TokenServer {
    server: Server,
    state: Arc<State>,
    signing_ca: Ca,
}

impl fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .finish()
    }
}

impl TokenServer {
    /// Generates a signing CA and certificate, and starts serving `https://ip:port/token`.
    pub async fn start(opts: TokenServerOptions) -> Result<TokenServer> {
        let signing_ca = Ca::root("testkit token signing ca")?;
        let signing = signing_ca.issue(&LeafSpec {
            common_name: "testkit token signer".into(),
            sans: Vec::new(),
            validity: Validity::Current,
            usage: Usage::ServerAndClient,
        })?;
        let signing_key =
            jsonwebtoken::EncodingKey::from_ec_pem(signing.key_pem().expose().as_bytes())
                .map_err(|e| Error::tls("token signing key", e))?;
        let tls = opts.tls.rustls_server_config()?;
        let ip = opts.ip;
        let state = Arc::new(State {
            opts,
            signing,
            signing_key,
            requests: Mutex::new(Vec::new()),
            refresh: Mutex::new(HashMap::new()),
        });
        let st = state.clone();
        let handler: Handler = Arc::new(move |req| {
            let st = st.clone();
            Box::pin(async move { st.handle(req).await })
        });
        let server = Server::start(ip, Some(tls), handler)?;
        Ok(TokenServer {
            server,
            state,
            signing_ca,
        })
    }

    /// `https://ip:port/token`.
    pub fn realm(&self) -> String {
        format!("https://{}/token", self.server.addr())
    }

    /// `ip:port`.
    pub fn host_port(&self) -> String {
        self.server.addr().to_string()
    }

    /// The `service` (JWT audience).
    pub fn service(&self) -> &str {
        &self.state.opts.service
    }

    /// The `issuer`.
    pub fn issuer(&self) -> &str {
        &self.state.opts.issuer
    }

    /// PEM of the CA the registry must trust for tokens (`rootcertbundle`).
    pub fn root_cert_bundle_pem(&self) -> &str {
        self.signing_ca.cert_pem()
    }

    /// PEM of the CA of the token endpoint's TLS certificate.
    pub fn tls_ca_pem(&self) -> &str {
        &self.state.opts.tls_ca_pem
    }

    /// The registry's `auth.token` settings pointing at this server.
    pub fn registry_auth(&self) -> TokenAuth {
        TokenAuth {
            realm: self.realm(),
            service: self.service().to_string(),
            issuer: self.issuer().to_string(),
            root_cert_bundle_pem: self.root_cert_bundle_pem().to_string(),
            realm_ca_pem: Some(self.tls_ca_pem().to_string()),
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Issues a token directly (no HTTP) for `subject` with exactly `access` (`(repository, actions)`),
    /// shifted by `clock_offset_secs`: for tests that need a hand-made (e.g. expired) token.
    pub fn issue_token(
        &self,
        subject: &str,
        access: &[(&str, &[&str])],
        clock_offset_secs: i64,
    ) -> Result<Secret> {
        let access = access
            .iter()
            .map(|(name, actions)| Access {
                kind: "repository".into(),
                name: name.to_string(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        self.state
            .sign(subject, access, clock_offset_secs)
            .map(|(t, _)| t)
    }
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Splits `type[(class)]:name:actions`; the name may contain `:` (host:port).
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        kind,
        name,
        actions.split(',').filter(|a| !a.is_empty()).collect(),
    ))
}

impl State {
    fn record(&self, r: TokenRequest) {
        self.requests.lock().expect("requests lock").push(r);
    }

    fn user(&self, name: &str, password: &str) -> Option<&TokenUser> {
        self.opts
            .users
            .iter()
            .find(|u| u.name == name && u.password.expose() == password)
    }

    fn grants_of(&self, user: Option<&str>) -> &[Grant] {
        match user {
            Some(u) => self
                .opts
                .users
                .iter()
                .find(|x| x.name == u)
                .map(|x| x.grants.as_slice())
                .unwrap_or(&[]),
            None => &self.opts.anonymous,
        }
    }

    /// The intersection of the requested scopes and the principal's grants.
    fn access_for(&self, user: Option<&str>, scopes: &[String]) -> Vec<Access> {
        let grants = self.grants_of(user);
        let mut out: Vec<Access> = Vec::new();
        for scope in scopes {
            let Some((kind, name, wanted)) = parse_scope(scope) else {
                continue;
            };
            if kind != "repository" {
                continue;
            }
            let allowed: Vec<&str> = grants
                .iter()
                .filter(|g| g.repository == "*" || g.repository == name)
                .flat_map(|g| g.actions.iter().map(String::as_str))
                .collect();
            let actions: Vec<String> = wanted
                .iter()
                .filter(|a| allowed.contains(a) || allowed.contains(&"*"))
                .map(|a| a.to_string())
                .collect();
            if actions.is_empty() {
                continue;
            }
            match out.iter_mut().find(|a| a.name == name) {
                Some(existing) => {
                    for a in actions {
                        if !existing.actions.contains(&a) {
                            existing.actions.push(a);
                        }
                    }
                }
                None => out.push(Access {
                    kind: "repository".into(),
                    name: name.to_string(),
                    actions,
                }),
            }
        }
        out
    }

    fn sign(
        &self,
        subject: &str,
        access: Vec<Access>,
        offset: i64,
    ) -> Result<(Secret, OffsetDateTime)> {
        let now = OffsetDateTime::now_utc() + time::Duration::seconds(offset);
        let iat = now.unix_timestamp();
        let claims = Claims {
            iss: self.opts.issuer.clone(),
            sub: subject.to_string(),
            aud: self.opts.service.clone(),
            exp: iat + self.opts.lifetime.as_secs() as i64,
            nbf: iat,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(
            self.signing
                .chain_der()
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
                .collect(),
        );
        let token = jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| Error::tls("signing token", e))?;
        Ok((Secret::new(token), now))
    }

    fn token_response(
        &self,
        user: Option<&str>,
        scopes: &[String],
        offline: bool,
    ) -> Response<Body> {
        let access = self.access_for(user, scopes);
        let (token, issued) =
            match self.sign(user.unwrap_or(""), access, self.opts.clock_offset_secs) {
                Ok(t) => t,
                Err(e) => return respond(500, &[], oci_error("UNKNOWN", &e.to_string())),
            };
        let mut body = serde_json::Map::new();
        if matches!(self.opts.fields, TokenFields::Token | TokenFields::Both) {
            body.insert("token".into(), json!(token.expose()));
        }
        if matches!(
            self.opts.fields,
            TokenFields::AccessToken | TokenFields::Both
        ) {
            body.insert("access_token".into(), json!(token.expose()));
        }
        if let Some(e) = self.opts.expires_in {
            body.insert("expires_in".into(), json!(e));
        }
        if self.opts.issued_at == IssuedAt::Now {
            let text = issued
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            body.insert("issued_at".into(), json!(text));
        }
        if offline
            && self.opts.refresh_tokens
            && let Some(u) = user
        {
            let rt = uuid::Uuid::new_v4().simple().to_string();
            self.refresh
                .lock()
                .expect("refresh lock")
                .insert(rt.clone(), u.to_string());
            body.insert("refresh_token".into(), json!(rt));
        }
        respond(
            200,
            &[("content-type", "application/json".into())],
            serde_json::to_vec(&body).expect("token response serializes"),
        )
    }

    fn unauthorized(&self, message: &str) -> Response<Body> {
        respond(
            401,
            &[
                ("content-type", "application/json".into()),
                ("www-authenticate", "Basic realm=\"testkit-token\"".into()),
            ],
            oci_error("UNAUTHORIZED", message),
        )
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != "/token" {
            return respond(404, &[], oci_error("NOT_FOUND", "only /token is served"));
        }
        match *req.method() {
            http::Method::GET => self.handle_get(req),
            http::Method::POST => self.handle_post(req).await,
            _ => respond(405, &[("allow", "GET, POST".into())], Bytes::new()),
        }
    }

    fn handle_get(&self, req: Request<Incoming>) -> Response<Body> {
        let pairs = query_pairs(req.uri().query());
        let scopes: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        let basic = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            })
            .map(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), Secret::new(p)))
                    })
            });
        let mut rec = TokenRequest {
            method: "GET".into(),
            grant: if basic.is_some() {
                GrantType::Basic
            } else {
                GrantType::Anonymous
            },
            user: None,
            basic_auth: basic.is_some(),
            service: first(&pairs, "service").map(String::from),
            client_id: first(&pairs, "client_id").map(String::from),
            scopes: scopes.clone(),
            offline: first(&pairs, "offline_token") == Some("true"),
            status: 0,
        };
        let resp = match &basic {
            Some(Some((u, p))) => match self.user(u, p.expose()) {
                Some(user) => {
                    rec.user = Some(user.name.clone());
                    self.token_response(Some(&user.name), &scopes, rec.offline)
                }
                None => self.unauthorized("invalid username or password"),
            },
            Some(None) => self.unauthorized("malformed basic credentials"),
            None => self.token_response(None, &scopes, false),
        };
        rec.status = resp.status().as_u16();
        self.record(rec);
        resp
    }

    async fn handle_post(&self, req: Request<Incoming>) -> Response<Body> {
        let basic_auth = req.headers().contains_key(http::header::AUTHORIZATION);
        if !self.opts.post {
            self.record(TokenRequest {
                method: "POST".into(),
                grant: GrantType::Other(String::new()),
                user: None,
                basic_auth,
                service: None,
                client_id: None,
                scopes: Vec::new(),
                offline: false,
                status: 404,
            });
            return respond(
                404,
                &[],
                oci_error("NOT_FOUND", "oauth2 POST is disabled; use GET"),
            );
        }
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(400, &[], oci_error("UNSUPPORTED", "unreadable body")),
        };
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let scopes: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        let grant = match first(&pairs, "grant_type") {
            Some("password") => GrantType::Password,
            Some("refresh_token") => GrantType::RefreshToken,
            other => GrantType::Other(other.unwrap_or_default().to_string()),
        };
        let mut rec = TokenRequest {
            method: "POST".into(),
            grant: grant.clone(),
            user: None,
            basic_auth,
            service: first(&pairs, "service").map(String::from),
            client_id: first(&pairs, "client_id").map(String::from),
            scopes: scopes.clone(),
            offline: first(&pairs, "access_type") == Some("offline"),
            status: 0,
        };
        let resp = if rec.client_id.is_none() || rec.service.is_none() {
            respond(
                400,
                &[],
                oci_error("UNSUPPORTED", "client_id and service are required"),
            )
        } else {
            match grant {
                GrantType::Password => {
                    let user = first(&pairs, "username").unwrap_or_default();
                    let pass = first(&pairs, "password").unwrap_or_default();
                    match self.user(user, pass) {
                        Some(u) => {
                            rec.user = Some(u.name.clone());
                            self.token_response(Some(&u.name), &scopes, rec.offline)
                        }
                        None => self.unauthorized("invalid username or password"),
                    }
                }
                GrantType::RefreshToken if self.opts.refresh_tokens => {
                    let rt = first(&pairs, "refresh_token").unwrap_or_default();
                    let user = self.refresh.lock().expect("refresh lock").get(rt).cloned();
                    match user {
                        Some(u) => {
                            rec.user = Some(u.clone());
                            self.token_response(Some(&u), &scopes, false)
                        }
                        None => self.unauthorized("unknown refresh token"),
                    }
                }
                _ => respond(400, &[], oci_error("UNSUPPORTED", "unsupported grant_type")),
            }
        };
        rec.status = resp.status().as_u16();
        self.record(rec);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_name_may_contain_host_port() {
        let (k, n, a) = parse_scope("repository:127.0.0.1:5000/app:pull,push").unwrap();
        assert_eq!(
            (k, n, a),
            ("repository", "127.0.0.1:5000/app", vec!["pull", "push"])
        );
        assert!(parse_scope("nonsense").is_none());
    }

    fn state(users: Vec<TokenUser>, anonymous: Vec<Grant>) -> State {
        let pki = crate::pki::TestPki::new().unwrap();
        let mut opts = TokenServerOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem());
        opts.users = users;
        opts.anonymous = anonymous;
        let signing = pki.client("signer").unwrap();
        let signing_key =
            jsonwebtoken::EncodingKey::from_ec_pem(signing.key_pem().expose().as_bytes()).unwrap();
        State {
            opts,
            signing,
            signing_key,
            requests: Mutex::new(Vec::new()),
            refresh: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn grants_the_intersection_of_requested_and_allowed() {
        let st = state(
            vec![TokenUser::new("alice", "pw", vec![Grant::pull("team/app")])],
            vec![],
        );
        let a = st.access_for(
            Some("alice"),
            &[
                "repository:team/app:pull,push".into(),
                "repository:other:pull".into(),
            ],
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, "team/app");
        assert_eq!(a[0].actions, vec!["pull"]);
        assert!(
            st.access_for(None, &["repository:team/app:pull".into()])
                .is_empty()
        );
    }

    #[tokio::test]
    async fn response_fields_follow_the_options() {
        let mut st = state(vec![], vec![Grant::pull("*")]);
        st.opts.fields = TokenFields::Token;
        st.opts.expires_in = None;
        st.opts.issued_at = IssuedAt::Omitted;
        let resp = st.token_response(None, &["repository:x:pull".into()], true);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["token"], "anonymous never gets a refresh token");
    }

    #[test]
    fn signed_token_carries_x5c_and_string_audience() {
        let st = state(vec![], vec![Grant::pull("*")]);
        let (tok, _) = st
            .sign("", st.access_for(None, &["repository:x:pull".into()]), 0)
            .unwrap();
        let parts: Vec<&str> = tok.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| -> serde_json::Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .unwrap(),
            )
            .unwrap()
        };
        let header = dec(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["x5c"].as_array().unwrap().len(), 2);
        let claims = dec(parts[1]);
        assert_eq!(claims["aud"], "testkit-registry");
        assert_eq!(claims["access"][0]["actions"][0], "pull");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
    }
}
