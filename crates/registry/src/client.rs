//! The HTTP plumbing: per-host transports, bounded retries, hand-followed redirects, capped reads.
//!
//! Owns [`Client`] (cheap to clone, `Send + Sync`): one `reqwest::Client` per host:port, each built
//! with that host's rustls configuration from [`crate::tls`], so connection pools (and HTTP/2
//! sessions where offered) are reused per host and trust never leaks between hosts. Before each
//! request the host configuration's generation is compared with the cached transport's; a change
//! rebuilds that host's transport, so new trust applies without a restart. reqwest's own
//! redirect handling is disabled (`Policy::none()`); [`Client::send_following`] follows up to
//! [`ClientConfig::max_redirects`] hops itself, choosing the transport for each hop's host,
//! dropping `Authorization` for good on any change of scheme, host or port, refusing https->http
//! and link-local / foreign private targets. Retries are bounded ([`crate::retry`]); `Retry-After`
//! is honoured up to a cap. This module must never put a reqwest error (whose Display carries the
//! full URL) or a URL query string into an error, and never retry a TLS failure over plain http.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rustls::RootCertStore;
use url::Url;

use crate::auth::check_target_address;
use crate::error::{RegistryError, Role, Scrub, render_chain, render_error_body_for};
use crate::origin::{HostPort, Origin, Scheme, crosses_origin, redact_url};
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::tls::{
    HostConfig, HostConfigSource, SystemRoots, TrustConfig, build_rustls_config, load_system_roots,
    tls_failure,
};

/// The manifest size cap (4 MiB; containers/image and distribution use the same).
pub const DEFAULT_MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Client settings. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Per-host trust and transport settings.
    pub hosts: Arc<dyn HostConfigSource>,
    /// Trust the system roots (webpki-roots when the OS store is empty).
    pub system_roots: bool,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive (covers the TLS handshake).
    pub response_header_timeout: Duration,
    /// A body that yields no bytes for this long is stalled. A stalled blob body is resumed with
    /// `Range` (counted in [`RetryPolicy::max_resume_without_progress`]); other bodies fail.
    pub no_progress_timeout: Duration,
    /// The slowest blob download accepted: a blob that receives fewer than
    /// [`MinThroughput::bytes`] in any [`MinThroughput::window`] (time spent resuming included)
    /// fails with [`RegistryError::TooSlow`], so a body that trickles or drops after every
    /// chunk cannot hold a pull forever. `None` disables the check. Default: 32 KiB per 60 s
    /// (about 550 bytes/s).
    pub min_blob_throughput: Option<MinThroughput>,
    /// Largest manifest accepted.
    pub max_manifest_size: u64,
    /// Redirect hops followed (containerd: 10).
    pub max_redirects: usize,
    /// `User-Agent` sent everywhere.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            hosts: Arc::new(TrustConfig::default()),
            system_roots: true,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            response_header_timeout: Duration::from_secs(30),
            no_progress_timeout: Duration::from_secs(300),
            min_blob_throughput: Some(MinThroughput::default()),
            max_manifest_size: DEFAULT_MAX_MANIFEST_SIZE,
            max_redirects: 10,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A minimum number of bytes per time window (see [`ClientConfig::min_blob_throughput`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinThroughput {
    /// Bytes that must arrive within each window.
    pub bytes: u64,
    /// The window length (must not be zero).
    pub window: Duration,
}

impl Default for MinThroughput {
    fn default() -> Self {
        Self {
            bytes: 32 * 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl ClientConfig {
    /// Production defaults with the given trust configuration.
    pub fn with_trust(trust: TrustConfig) -> Self {
        Self {
            hosts: Arc::new(trust),
            ..Self::default()
        }
    }
}

/// One host's transport.
pub(crate) struct HostTransport {
    pub(crate) http: reqwest::Client,
    pub(crate) config: HostConfig,
    tls: Arc<rustls::ClientConfig>,
    /// [`HostConfigSource::generation`] this transport was built at.
    generation: u64,
    /// The post-handshake TLS diagnosis already ran for this transport.
    diagnosed: AtomicBool,
}

pub(crate) struct Inner {
    pub(crate) cfg: ClientConfig,
    system: Arc<RootCertStore>,
    pub(crate) system_desc: SystemRoots,
    hosts: Mutex<HashMap<HostPort, Arc<HostTransport>>>,
}

/// The registry client: clone freely, share across tasks.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("system_roots", &self.inner.system_desc)
            .finish_non_exhaustive()
    }
}

/// Request context for error messages.
#[derive(Clone, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a Origin,
    pub(crate) repository: &'a str,
    /// Secrets cut out of any server text that enters an error.
    pub(crate) scrub: Scrub,
    /// Retry transient failures. False for an endpoint that is not the last one to try: it gets
    /// one attempt and the caller moves on to the next endpoint (containerd retries only on the
    /// last host).
    pub(crate) retry: bool,
    /// Headers for requests while they stay on `registry`'s origin (an endpoint's `header`
    /// entries); never sent to a redirect target or a token realm.
    pub(crate) origin_headers: HeaderMap,
}

impl<'a> Ctx<'a> {
    /// A context for requests to `registry` with retries and no extra headers.
    pub(crate) fn new(registry: &'a Origin, repository: &'a str, scrub: Scrub) -> Self {
        Ctx {
            registry,
            repository,
            scrub,
            retry: true,
            origin_headers: HeaderMap::new(),
        }
    }
}

/// A response plus where it finally came from.
pub(crate) struct Followed {
    pub(crate) resp: reqwest::Response,
    pub(crate) url: Url,
    /// The request left the first URL's origin at some hop (Authorization was dropped).
    pub(crate) crossed: bool,
    pub(crate) role: Role,
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

impl Client {
    /// Builds a client; loads the system roots once.
    pub fn new(cfg: ClientConfig) -> Result<Self, RegistryError> {
        let (system, system_desc) = load_system_roots(cfg.system_roots);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                system,
                system_desc,
                hosts: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The scheme used for a host (https unless configured plain-http).
    pub fn scheme_for(&self, host: &HostPort) -> Result<Scheme, RegistryError> {
        Ok(if self.transport(host)?.config.plain_http {
            Scheme::Http
        } else {
            Scheme::Https
        })
    }

    /// The trust configuration of `host` in force now (what the next request to it would use).
    pub fn host_config(&self, host: &HostPort) -> Result<HostConfig, RegistryError> {
        Ok(self.transport(host)?.config.clone())
    }

    /// The system roots in use, as shown in messages.
    pub fn system_roots(&self) -> &SystemRoots {
        &self.inner.system_desc
    }

    pub(crate) fn system_store(&self) -> &RootCertStore {
        &self.inner.system
    }

    /// The transport for `host`: the cached one while the host configuration's generation is
    /// unchanged, else a new one built from the current configuration (hot reload). Connections
    /// of a replaced transport finish their requests and are then dropped with it.
    pub(crate) fn transport(&self, host: &HostPort) -> Result<Arc<HostTransport>, RegistryError> {
        let generation = self.inner.cfg.hosts.generation();
        if let Some(t) = self.inner.hosts.lock().expect("transport map").get(host)
            && t.generation == generation
        {
            return Ok(t.clone());
        }
        let config = self.inner.cfg.hosts.host_config(host)?;
        if config.skip_verify && !config.plain_http {
            tracing::warn!(
                %host,
                sources = %config.sources.join(", "),
                "TLS CERTIFICATE VERIFICATION IS DISABLED for {host} (skip_verify): anyone on the network path can impersonate this host; use it only for testing and trust the host's CA instead"
            );
        }
        let tls = build_rustls_config(host, &self.inner.system, &config)?;
        let tls = Arc::new(tls);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.inner.cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(self.inner.cfg.user_agent.clone())
            .build()
            .map_err(|e| {
                RegistryError::Config(format!(
                    "cannot build the HTTP client for {host}: {}",
                    render_chain(&e.without_url())
                ))
            })?;
        let t = Arc::new(HostTransport {
            http,
            config,
            tls,
            generation,
            diagnosed: AtomicBool::new(false),
        });
        let mut map = self.inner.hosts.lock().expect("transport map");
        match map.get(host) {
            // another task built one for this generation (or a newer one) meanwhile: share it
            Some(existing) if existing.generation == generation => Ok(existing.clone()),
            _ => {
                if map.insert(host.clone(), t.clone()).is_some() {
                    tracing::info!(%host, generation, "host configuration changed, transport rebuilt");
                }
                Ok(t)
            }
        }
    }

    async fn transport_error(
        &self,
        e: reqwest::Error,
        t: &HostTransport,
        host: &HostPort,
        role: Role,
        method: &Method,
        url: &Url,
    ) -> (RegistryError, bool) {
        let post_handshake = !e.is_connect()
            && !e.is_timeout()
            && url.scheme() == "https"
            && closed_before_response(&e);
        let e = e.without_url();
        if let Some(f) = tls_failure(&e, host, role, &t.config, &self.inner.system_desc) {
            return (RegistryError::Tls(Box::new(f)), false);
        }
        // TLS 1.3 servers reject a missing or bad client certificate with an alert that arrives
        // after the handshake; hyper reports only "connection closed". Re-run the handshake once
        // by hand to read that alert: only for that symptom (the connection closed before any
        // response byte) and only once per transport, so transient resets in a retry loop do not
        // each cost a handshake and a request (to a CDN too).
        if post_handshake
            && !t.diagnosed.swap(true, Ordering::SeqCst)
            && let Some(alert) =
                diagnose_handshake(&t.tls, host, self.inner.cfg.connect_timeout).await
            && let Some(f) = tls_failure(&alert, host, role, &t.config, &self.inner.system_desc)
        {
            return (RegistryError::Tls(Box::new(f)), false);
        }
        let transient = !e.is_builder();
        (
            RegistryError::Network {
                host: host.clone(),
                role,
                request: format!("{method} {}", redact_url(url)),
                cause: render_chain(&e),
            },
            transient,
        )
    }

    /// Sends one request to one URL with bounded retries (network errors, timeouts, 408, 429,
    /// 500/502/503/504). Does not follow redirects. Final 429 and 5xx become errors.
    pub(crate) async fn send(
        &self,
        req: reqwest::Request,
        role: Role,
        ctx: &Ctx<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = req.url().clone();
        let method = req.method().clone();
        let origin = Origin::of(&url).ok_or_else(|| RegistryError::Protocol {
            host: ctx.registry.host.clone(),
            role,
            reason: format!("unsupported URL scheme in {}", redact_url(&url)),
        })?;
        let host = origin.host.clone();
        let t = self.transport(&host)?;
        if origin.scheme == Scheme::Http && !t.config.plain_http {
            return Err(RegistryError::RedirectRefused {
                host: ctx.registry.host.clone(),
                role,
                url: redact_url(&url),
                target: redact_url(&url),
                reason: format!("{host} is not configured as a plain-http host"),
            });
        }
        let policy = &self.inner.cfg.retry;
        let max_attempts = if ctx.retry { policy.max_attempts } else { 1 };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= max_attempts;
            let r = req.try_clone().ok_or_else(|| RegistryError::Protocol {
                host: host.clone(),
                role,
                reason: "request body cannot be replayed".into(),
            })?;
            let sent =
                tokio::time::timeout(self.inner.cfg.response_header_timeout, t.http.execute(r))
                    .await;
            let resp = match sent {
                Err(_) => {
                    if last {
                        return Err(RegistryError::Network {
                            host,
                            role,
                            request: format!("{method} {}", redact_url(&url)),
                            cause: format!(
                                "no response within {}s ({attempt} attempts)",
                                self.inner.cfg.response_header_timeout.as_secs_f64()
                            ),
                        });
                    }
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    continue;
                }
                Ok(Err(e)) => {
                    let (err, transient) = self
                        .transport_error(e, &t, &host, role, &method, &url)
                        .await;
                    if !transient || last {
                        return Err(err);
                    }
                    tracing::debug!(%host, %role, attempt, error = %err, "retrying request");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    continue;
                }
                Ok(Ok(resp)) => resp,
            };
            let status = resp.status();
            match status.as_u16() {
                429 => {
                    let wait = resp
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let too_long = wait.is_some_and(|w| w > policy.max_retry_after);
                    if too_long || last {
                        let body = read_capped_lossy(resp, crate::error::MAX_ERROR_BODY).await;
                        return Err(RegistryError::RateLimited {
                            host,
                            role,
                            repository: ctx.repository.to_string(),
                            retry_after: wait,
                            reason: non_empty(
                                render_error_body_for(role, &body, &ctx.scrub),
                                "429 Too Many Requests",
                            ),
                        });
                    }
                    drop(resp);
                    let d = wait.unwrap_or_else(|| policy.backoff(attempt));
                    tracing::info!(%host, %role, wait_ms = d.as_millis() as u64, "rate limited, waiting");
                    tokio::time::sleep(d).await;
                }
                408 | 500 | 502 | 503 | 504 => {
                    if last {
                        let body = read_capped_lossy(resp, crate::error::MAX_ERROR_BODY).await;
                        return Err(RegistryError::Server {
                            host,
                            role,
                            url: redact_url(&url),
                            status: status.as_u16(),
                            attempts: attempt,
                            detail: render_error_body_for(role, &body, &ctx.scrub),
                        });
                    }
                    drop(resp);
                    tracing::debug!(%host, %role, attempt, status = status.as_u16(), "retrying after server error");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
                _ => return Ok(resp),
            }
        }
    }

    /// Sends a request and follows redirects by hand. `authorization` is attached only while the
    /// request stays on the first URL's origin; once it leaves, it never comes back. When
    /// `cross_origin` is false, a redirect to another origin is refused (token endpoints).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_following(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        authorization: Option<HeaderValue>,
        body: Option<(HeaderValue, Bytes)>,
        role: Role,
        cross_origin: bool,
        ctx: &Ctx<'_>,
    ) -> Result<Followed, RegistryError> {
        let first = url.clone();
        let first_origin = Origin::of(&first);
        let mut cur = url;
        let mut method = method;
        let mut body = body;
        let mut crossed = false;
        let mut role_now = role;
        let max = self.inner.cfg.max_redirects;
        for hop in 0..=max {
            let t = self.transport(
                &Origin::of(&cur)
                    .ok_or_else(|| RegistryError::Protocol {
                        host: ctx.registry.host.clone(),
                        role: role_now,
                        reason: format!("unsupported URL {}", redact_url(&cur)),
                    })?
                    .host,
            )?;
            let mut hs = HeaderMap::new();
            if !crossed {
                for (k, v) in ctx.origin_headers.iter() {
                    if !headers.contains_key(k) {
                        let mut v = v.clone();
                        v.set_sensitive(true);
                        hs.append(k.clone(), v);
                    }
                }
            }
            for (k, v) in headers.iter() {
                hs.append(k.clone(), v.clone());
            }
            let mut rb = t.http.request(method.clone(), cur.clone()).headers(hs);
            if !crossed && let Some(a) = &authorization {
                let mut a = a.clone();
                a.set_sensitive(true);
                rb = rb.header(header::AUTHORIZATION, a);
            }
            if let Some((ct, b)) = &body {
                rb = rb.header(header::CONTENT_TYPE, ct.clone()).body(b.clone());
            }
            let req = rb.build().map_err(|e| RegistryError::Protocol {
                host: ctx.registry.host.clone(),
                role: role_now,
                reason: format!("cannot build request: {}", render_chain(&e.without_url())),
            })?;
            let resp = self.send(req, role_now, ctx).await?;
            if !is_redirect(resp.status()) {
                return Ok(Followed {
                    resp,
                    url: cur,
                    crossed,
                    role: role_now,
                });
            }
            let from_host = Origin::of(&cur)
                .map(|o| o.host)
                .unwrap_or_else(|| ctx.registry.host.clone());
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let Some(location) = location else {
                return Err(RegistryError::Protocol {
                    host: from_host,
                    role: role_now,
                    reason: format!(
                        "{} redirect without a Location header for {}",
                        resp.status().as_u16(),
                        redact_url(&cur)
                    ),
                });
            };
            if hop == max {
                return Err(RegistryError::TooManyRedirects {
                    host: ctx.registry.host.clone(),
                    url: redact_url(&first),
                    hops: max,
                });
            }
            let refuse = |target: String, reason: String| RegistryError::RedirectRefused {
                host: from_host.clone(),
                role: role_now,
                url: redact_url(&cur),
                target,
                reason,
            };
            let next = cur.join(&location).map_err(|e| {
                refuse(
                    crate::error::sanitize(location.split('?').next().unwrap_or(""), 200),
                    format!("invalid Location: {e}"),
                )
            })?;
            let next_origin = Origin::of(&next).ok_or_else(|| {
                refuse(
                    redact_url(&next),
                    format!("unsupported scheme {:?}", next.scheme()),
                )
            })?;
            if cur.scheme() == "https" && next.scheme() == "http" {
                return Err(refuse(
                    redact_url(&next),
                    format!("{from_host} redirected to plain http"),
                ));
            }
            check_target_address(&next_origin.host, &ctx.registry.host, false)
                .map_err(|r| refuse(redact_url(&next), r))?;
            if crosses_origin(&cur, &next) || Some(&next_origin) != first_origin.as_ref() {
                if !cross_origin {
                    return Err(refuse(
                        redact_url(&next),
                        "token endpoints may not redirect to another origin".into(),
                    ));
                }
                crossed = true;
            }
            role_now = if &next_origin == ctx.registry {
                role
            } else if role == Role::TokenRealm {
                Role::TokenRealm
            } else {
                Role::RedirectTarget
            };
            tracing::debug!(from = %redact_url(&cur), to = %redact_url(&next), hop = hop + 1, "following redirect");
            if resp.status() == StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            if matches!(resp.status().as_u16(), 301 | 302) && method == Method::POST {
                method = Method::GET;
                body = None;
            }
            cur = next;
        }
        unreachable!("the loop returns on the last hop")
    }

    /// Reads a whole body, failing once it exceeds `cap` bytes, or stalls.
    pub(crate) async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        cap: u64,
        host: &HostPort,
        role: Role,
        what: &str,
    ) -> Result<Bytes, RegistryError> {
        if let Some(len) = resp.content_length()
            && len > cap
        {
            return Err(RegistryError::TooLarge {
                host: host.clone(),
                what: what.to_string(),
                cap,
                size: format!("{len} bytes"),
            });
        }
        let mut buf = BytesMut::new();
        loop {
            let chunk =
                tokio::time::timeout(self.inner.cfg.no_progress_timeout, resp.chunk()).await;
            match chunk {
                Err(_) => {
                    return Err(RegistryError::Stalled {
                        host: host.clone(),
                        role,
                        what: what.to_string(),
                        after: self.inner.cfg.no_progress_timeout,
                    });
                }
                Ok(Err(e)) => {
                    return Err(RegistryError::Network {
                        host: host.clone(),
                        role,
                        request: format!("reading {what}"),
                        cause: render_chain(&e.without_url()),
                    });
                }
                Ok(Ok(None)) => return Ok(buf.freeze()),
                Ok(Ok(Some(c))) => {
                    if buf.len() as u64 + c.len() as u64 > cap {
                        return Err(RegistryError::TooLarge {
                            host: host.clone(),
                            what: what.to_string(),
                            cap,
                            size: format!("at least {} bytes", buf.len() as u64 + c.len() as u64),
                        });
                    }
                    buf.extend_from_slice(&c);
                }
            }
        }
    }
}

fn non_empty(s: String, default: &str) -> String {
    if s.is_empty() { default.to_string() } else { s }
}

/// Reads at most `cap` bytes of a body (for error messages); errors end the read.
pub(crate) async fn read_capped_lossy(mut resp: reqwest::Response, cap: usize) -> Bytes {
    let mut buf = BytesMut::new();
    while buf.len() < cap {
        match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
            Ok(Ok(Some(c))) => {
                let take = c.len().min(cap - buf.len());
                buf.extend_from_slice(&c[..take]);
            }
            _ => break,
        }
    }
    buf.freeze()
}

/// True when the error chain says the connection ended before a response arrived because the
/// peer closed it (hyper's "incomplete message" or "canceled") or sent a TLS alert: the two symptoms a TLS 1.3
/// post-handshake alert (`certificate_required`, `bad_certificate`) shows as. A reset, a refused
/// connection or a timeout is not one of them.
fn closed_before_response(e: &(dyn std::error::Error + 'static)) -> bool {
    if crate::tls::find_rustls_error(e).is_some() {
        return true;
    }
    // hyper keeps a connection's io error only as text ("connection error: received fatal
    // alert: ..."), so the alert is recognised by its rustls wording
    if render_chain(e).contains("received fatal alert") {
        return true;
    }
    let mut cur = Some(e);
    while let Some(x) = cur {
        // hyper says "incomplete message" when the peer closed mid-response, and "canceled"
        // when it closed the connection before the request was written: after a TLS 1.3
        // handshake the server's alert can arrive at either moment
        if x.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        cur = x.source();
    }
    false
}

/// Connects to `host`, completes a TLS handshake with the host's configuration (HTTP/1.1 ALPN),
/// sends a bare `GET /v2/` and reads the answer, returning the TLS error the peer caused, if any
/// (e.g. a post-handshake `certificate_required` alert). Never sends credentials.
async fn diagnose_handshake(
    cfg: &Arc<rustls::ClientConfig>,
    host: &HostPort,
    timeout: Duration,
) -> Option<std::io::Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = (**cfg).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from(host.host().to_string()).ok()?;
    let run = async {
        let tcp = tokio::net::TcpStream::connect((host.host(), host.port())).await?;
        let mut tls = connector.connect(name, tcp).await?;
        let req = format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 512];
        loop {
            if tls.read(&mut buf).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Err(e)) if crate::tls::find_rustls_error(&e).is_some() => Some(e),
        _ => None,
    }
}
