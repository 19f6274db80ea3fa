//! A fault-injecting HTTPS reverse proxy in front of a [`Registry`] and a CDN on another host and CA. The
//! `Front` forwards every request to the registry (credentials included: it stands for the registry) and can
//! answer blob GETs with `307` to the `Cdn`, which serves the blob bytes from the registry's storage with
//! Range support, checks the signed query, and records every request header so tests can prove no
//! `Authorization` reached it. Both apply [`FaultRule`]s: a [`Fault`] plus a matcher on method and path
//! regex and a count. Faults are small and composable: rules that replace the response (status, 429,
//! challenge, canned body, oversized manifest) win in order; body rules (reset, flipped byte, stall,
//! extra bytes) and `IgnoreRange` stack. Written on hyper because faults need control of framing and
//! connection teardown that a proxy crate hides. It must never forward to anything but its registry, and
//! never record or print credential values beyond what tests read back from its own request log.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::net::{
    Body, BoxError, Handler, Server, full, header_pairs, oci_error, respond, stream_body,
};
use crate::pki::Leaf;
use crate::registry::{Registry, error_chain, parse_digest};

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send the first `bytes` body bytes, then tear the connection down (the client sees an unexpected EOF).
    ResetAfter { bytes: u64 },
    /// XOR the body byte at `offset` with 0xff (same length, wrong digest).
    FlipByte { offset: u64 },
    /// `429 Too Many Requests` with `Retry-After: <retry_after>` (seconds or an HTTP date) and a
    /// `TOOMANYREQUESTS` error body.
    TooManyRequests { retry_after: String },
    /// Answer with this status (e.g. 500, 503) and an OCI error body.
    Status { status: u16 },
    /// Send headers and the first `after_bytes` body bytes, then nothing, forever (until the fixture drops).
    Stall { after_bytes: u64 },
    /// Answer `200` with a syntactically valid OCI manifest of exactly `size` bytes (padding annotation),
    /// with a matching `Docker-Content-Digest`.
    OversizedManifest { size: usize },
    /// Answer `401` with this `WWW-Authenticate` value (e.g. a realm on another host, on http, or on
    /// 169.254.169.254).
    Challenge { www_authenticate: String },
    /// Answer with a canned response.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Drop the request's `Range` header: the full body comes back with `200`.
    IgnoreRange,
    /// Append `count` zero bytes after the real body. With `declare`, `Content-Length` includes them (the
    /// body is bigger than the descriptor says); without, the response is chunked with no length (a body
    /// that streams past the descriptor size; `u64::MAX` streams forever).
    ExtraBytes { count: u64, declare: bool },
    /// Wait before answering.
    Delay { duration: Duration },
    /// Answer with this status and a `text/plain` body listing every request header as
    /// `name: value` lines, `Authorization` included: a misconfigured server or CDN that echoes
    /// its request, for canary tests that secrets never reach an error message.
    EchoHeaders { status: u16 },
}

impl Fault {
    /// A bearer challenge whose realm is `realm` (service `testkit-registry`).
    pub fn bearer_realm(realm: &str) -> Fault {
        Fault::Challenge {
            www_authenticate: format!("Bearer realm=\"{realm}\",service=\"testkit-registry\""),
        }
    }
}

/// A fault with a matcher: method (`None` = any), a regex on the path, and how many times it fires.
#[derive(Debug)]
pub struct FaultRule {
    method: Option<http::Method>,
    path: Regex,
    times: Option<usize>,
    fired: AtomicUsize,
    fault: Fault,
}

impl FaultRule {
    /// A rule firing `fault` on every request (narrow it with `on` / `times`).
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            method: None,
            path: Regex::new("").expect("empty regex"),
            times: None,
            fired: AtomicUsize::new(0),
            fault,
        }
    }

    /// Matches only `method` and paths matching `path_regex` (e.g. `"GET"`, `r"/blobs/sha256:"`).
    pub fn on(mut self, method: &str, path_regex: &str) -> Result<FaultRule> {
        self.method =
            Some(
                http::Method::from_bytes(method.as_bytes()).map_err(|e| Error::Option {
                    field: "fault method",
                    message: format!("{method:?}: {e}"),
                })?,
            );
        self.path = Regex::new(path_regex).map_err(|e| Error::Option {
            field: "fault path regex",
            message: format!("{path_regex:?}: {e}"),
        })?;
        Ok(self)
    }

    /// Matches any method on paths matching `path_regex`.
    pub fn on_path(mut self, path_regex: &str) -> Result<FaultRule> {
        self.path = Regex::new(path_regex).map_err(|e| Error::Option {
            field: "fault path regex",
            message: format!("{path_regex:?}: {e}"),
        })?;
        Ok(self)
    }

    /// Fires only for the first `n` matching requests.
    pub fn times(mut self, n: usize) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// How many times the rule fired so far.
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }

    fn take(&self, method: &http::Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) || !self.path.is_match(path) {
            return false;
        }
        loop {
            let n = self.fired.load(Ordering::SeqCst);
            if self.times.is_some_and(|t| n >= t) {
                return false;
            }
            if self
                .fired
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return true;
            }
        }
    }
}

/// The fault rules of a Front or Cdn; rules can be added while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Arc<FaultRule>>>,
}

impl Faults {
    /// Adds a rule and returns a handle to read how often it fired.
    pub fn add(&self, rule: FaultRule) -> Arc<FaultRule> {
        let rule = Arc::new(rule);
        self.rules.lock().expect("faults lock").push(rule.clone());
        rule
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().expect("faults lock").clear();
    }

    fn select(&self, method: &http::Method, path: &str) -> Vec<Fault> {
        self.rules
            .lock()
            .expect("faults lock")
            .iter()
            .filter(|r| r.take(method, path))
            .map(|r| r.fault.clone())
            .collect()
    }
}

/// One request a Front or Cdn received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Requests = Arc<Mutex<Vec<RecordedRequest>>>;

fn record(requests: &Requests, req: &Request<Incoming>) {
    requests
        .lock()
        .expect("requests lock")
        .push(RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(String::from),
            headers: header_pairs(req.headers()),
        });
}

/// A response that replaces the real one, if any fault asks for it.
fn replacement(faults: &[Fault], request_headers: &http::HeaderMap) -> Option<Response<Body>> {
    for f in faults {
        let resp = match f {
            Fault::EchoHeaders { status } => {
                let text: String = header_pairs(request_headers)
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\n"))
                    .collect();
                respond(
                    *status,
                    &[("content-type", "text/plain".into())],
                    Bytes::from(format!("your request was:\n{text}")),
                )
            }
            Fault::TooManyRequests { retry_after } => respond(
                429,
                &[
                    ("retry-after", retry_after.clone()),
                    ("content-type", "application/json".into()),
                ],
                oci_error("TOOMANYREQUESTS", "injected: too many requests"),
            ),
            Fault::Status { status } => respond(
                *status,
                &[("content-type", "application/json".into())],
                oci_error("UNKNOWN", &format!("injected status {status}")),
            ),
            Fault::Challenge { www_authenticate } => respond(
                401,
                &[
                    ("www-authenticate", www_authenticate.clone()),
                    ("content-type", "application/json".into()),
                ],
                oci_error("UNAUTHORIZED", "injected: authentication required"),
            ),
            Fault::Respond {
                status,
                headers,
                body,
            } => {
                let hs: Vec<(&str, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                respond(*status, &hs, body.clone())
            }
            Fault::OversizedManifest { size } => {
                let body = oversized_manifest(*size);
                respond(
                    200,
                    &[
                        ("content-type", crate::image::OCI_MANIFEST.into()),
                        ("docker-content-digest", crate::image::sha256_digest(&body)),
                    ],
                    body,
                )
            }
            _ => continue,
        };
        return Some(resp);
    }
    None
}

/// A valid OCI manifest JSON of exactly `size` bytes (or the minimal document when `size` is smaller).
pub fn oversized_manifest(size: usize) -> Bytes {
    let empty = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    let head = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"config\":{{\"mediaType\":\"{}\",\"digest\":\"{empty}\",\"size\":2}},\"layers\":[],\"annotations\":{{\"pad\":\"",
        crate::image::OCI_MANIFEST,
        crate::image::OCI_CONFIG
    );
    let tail = "\"}}";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut out = Vec::with_capacity(size.max(head.len() + tail.len()));
    out.extend_from_slice(head.as_bytes());
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(tail.as_bytes());
    Bytes::from(out)
}

/// Applies the body faults to a response whose body is `body`.
fn shape_body(
    faults: &[Fault],
    mut parts: http::response::Parts,
    body: futures_util::stream::BoxStream<'static, std::result::Result<Bytes, BoxError>>,
) -> Response<Body> {
    let mut cut: Option<(u64, bool)> = None; // (offset, stall instead of reset)
    let mut flips: Vec<u64> = Vec::new();
    let mut extra: Option<(u64, bool)> = None;
    for f in faults {
        match f {
            Fault::ResetAfter { bytes } => cut = Some((*bytes, false)),
            Fault::Stall { after_bytes } => cut = Some((*after_bytes, true)),
            Fault::FlipByte { offset } => flips.push(*offset),
            Fault::ExtraBytes { count, declare } => extra = Some((*count, *declare)),
            _ => {}
        }
    }
    if let Some((count, declare)) = extra {
        let len = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        parts.headers.remove(http::header::CONTENT_LENGTH);
        if let (true, Some(len)) = (declare, len) {
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                (len.saturating_add(count)).into(),
            );
        }
    }
    let mut offset = 0u64;
    let shaped = body.map(move |chunk| {
        let chunk = chunk?;
        let start = offset;
        offset += chunk.len() as u64;
        if flips.iter().any(|f| (start..offset).contains(f)) {
            let mut v = chunk.to_vec();
            for f in &flips {
                if (start..offset).contains(f) {
                    v[(f - start) as usize] ^= 0xff;
                }
            }
            return Ok(Bytes::from(v));
        }
        Ok(chunk)
    });
    let extra_stream =
        futures_util::stream::unfold(extra.map(|(c, _)| c).unwrap_or(0), |left| async move {
            if left == 0 {
                return None;
            }
            let n = left.min(64 * 1024);
            Some((
                Ok::<_, BoxError>(Bytes::from(vec![0u8; n as usize])),
                left - n,
            ))
        });
    let mut stream = shaped.chain(extra_stream).boxed();
    if let Some((limit, stall)) = cut {
        let mut sent = 0u64;
        let limited = stream
            .map(move |chunk| -> std::result::Result<Bytes, BoxError> {
                let chunk = chunk?;
                let room = limit.saturating_sub(sent);
                sent += chunk.len() as u64;
                Ok(chunk.slice(..(room.min(chunk.len() as u64)) as usize))
            })
            .take_while(|c| futures_util::future::ready(!matches!(c, Ok(b) if b.is_empty())));
        stream = if stall {
            limited.chain(futures_util::stream::pending()).boxed()
        } else {
            limited
                .chain(futures_util::stream::once(async {
                    // hyper buffers small writes and drops its buffer when the body fails: pausing first
                    // lets it flush the headers and the bytes sent so far, as a real mid-body reset would
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<Bytes, BoxError>("injected connection reset".into())
                }))
                .boxed()
        };
    }
    Response::from_parts(parts, stream_body(stream))
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn sign(secret: &str, digest: &str) -> String {
    hex::encode(Sha256::digest(format!("{secret}:{digest}").as_bytes()))
}

/// Options of [`Cdn::start`].
#[derive(Clone, Debug)]
pub struct CdnOptions {
    /// Loopback IP (default 127.0.0.2: another host than the registry).
    pub ip: IpAddr,
    /// TLS certificate (from another CA than the registry's, for per-host trust tests).
    pub tls: Leaf,
    /// PEM of the CA that issued `tls`.
    pub ca_pem: String,
}

impl CdnOptions {
    /// A CDN on 127.0.0.2 with this certificate.
    pub fn new(tls: Leaf, ca_pem: impl Into<String>) -> Self {
        CdnOptions {
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            tls,
            ca_pem: ca_pem.into(),
        }
    }
}

/// A blob CDN: serves `GET /blobs/<digest>?sig=...` from a registry's storage, with Range support; records
/// every request; answers 403 to a missing or wrong signature.
pub struct Cdn {
    server: Server,
    secret: String,
    ca_pem: String,
    requests: Requests,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for Cdn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdn").field("url", &self.url()).finish()
    }
}

struct CdnState {
    storage_blob_root: PathBuf,
    secret: String,
    requests: Requests,
    faults: Arc<Faults>,
}

impl Cdn {
    /// Starts a CDN serving the blobs of `registry`.
    pub async fn start(registry: &Registry, opts: CdnOptions) -> Result<Cdn> {
        let secret = random_hex();
        let requests: Requests = Arc::default();
        let faults: Arc<Faults> = Arc::default();
        let state = Arc::new(CdnState {
            storage_blob_root: registry.storage_dir().join("docker/registry/v2/blobs"),
            secret: secret.clone(),
            requests: requests.clone(),
            faults: faults.clone(),
        });
        let handler: Handler = Arc::new(move |req| {
            let st = state.clone();
            Box::pin(async move { st.handle(req).await })
        });
        let server = Server::start(opts.ip, Some(opts.tls.rustls_server_config()?), handler)?;
        Ok(Cdn {
            server,
            secret,
            ca_pem: opts.ca_pem,
            requests,
            faults,
        })
    }

    /// `https://ip:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// PEM of the CA of the CDN's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The signed URL of a blob (what the Front redirects to).
    pub fn blob_url(&self, digest: &str) -> String {
        format!(
            "{}/blobs/{digest}?sig={}",
            self.url(),
            sign(&self.secret, digest)
        )
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The CDN's fault rules.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

enum RangeSpec {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full; // multiple ranges: serve the whole body, as RFC 9110 allows
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let r = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => Some((s, e.min(len.saturating_sub(1)))),
        (Some(s), None) if b.is_empty() => Some((s, len.saturating_sub(1))),
        (None, Some(n)) if a.is_empty() && n > 0 => {
            Some((len.saturating_sub(n), len.saturating_sub(1)))
        }
        _ => None,
    };
    match r {
        Some((s, e)) if s < len && s <= e => RangeSpec::Part(s, e),
        _ => RangeSpec::Unsatisfiable,
    }
}

impl CdnState {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        record(&self.requests, &req);
        let path = req.uri().path().to_string();
        let mut faults = self.faults.select(req.method(), &path);
        if let Some(d) = faults.iter().find_map(|f| match f {
            Fault::Delay { duration } => Some(*duration),
            _ => None,
        }) {
            tokio::time::sleep(d).await;
        }
        if let Some(resp) = replacement(&faults, req.headers()) {
            return resp;
        }
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return respond(405, &[("allow", "GET, HEAD".into())], Bytes::new());
        }
        let Some(digest) = path.strip_prefix("/blobs/") else {
            return respond(404, &[], Bytes::from_static(b"not found"));
        };
        let Ok((alg, hex)) = parse_digest(digest) else {
            return respond(404, &[], Bytes::from_static(b"not a digest"));
        };
        let sig = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.into_owned());
        if sig.as_deref() != Some(sign(&self.secret, digest).as_str()) {
            return respond(403, &[], Bytes::from_static(b"signature does not match"));
        }
        let file = self
            .storage_blob_root
            .join(alg)
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let data = match tokio::fs::read(&file).await {
            Ok(d) => Bytes::from(d),
            Err(_) => return respond(404, &[], Bytes::from_static(b"no such blob")),
        };
        let ignore_range = faults.iter().any(|f| matches!(f, Fault::IgnoreRange));
        let range = req
            .headers()
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| !ignore_range);
        let len = data.len() as u64;
        let (status, body, content_range) = match parse_range(range, len) {
            RangeSpec::Full => (200, data, None),
            RangeSpec::Part(s, e) => (
                206,
                data.slice(s as usize..=e as usize),
                Some(format!("bytes {s}-{e}/{len}")),
            ),
            RangeSpec::Unsatisfiable => {
                return respond(
                    416,
                    &[("content-range", format!("bytes */{len}"))],
                    Bytes::new(),
                );
            }
        };
        let mut builder = Response::builder()
            .status(status)
            .header("content-type", "application/octet-stream")
            .header("accept-ranges", "bytes")
            .header("content-length", body.len())
            .header("docker-content-digest", digest);
        if let Some(cr) = content_range {
            builder = builder.header("content-range", cr);
        }
        let (parts, _) = builder.body(()).expect("valid response").into_parts();
        faults.retain(|f| !matches!(f, Fault::IgnoreRange));
        let stream = futures_util::stream::once(async move { Ok::<_, BoxError>(body) }).boxed();
        let is_head = req.method() == http::Method::HEAD;
        if is_head {
            return Response::from_parts(parts, full(Bytes::new()));
        }
        shape_body(&faults, parts, stream)
    }
}

/// Options of [`Front::start`].
#[derive(Clone, Debug)]
pub struct FrontOptions {
    /// Loopback IP (default 127.0.0.1).
    pub ip: IpAddr,
    /// The Front's own TLS certificate.
    pub tls: Leaf,
    /// PEM of the CA that issued `tls`.
    pub ca_pem: String,
    /// Redirect authorised blob GETs to this CDN (its `blob_url`), with `307`.
    pub redirect_blobs: bool,
}

impl FrontOptions {
    /// A Front on 127.0.0.1 with this certificate, no redirects.
    pub fn new(tls: Leaf, ca_pem: impl Into<String>) -> Self {
        FrontOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls,
            ca_pem: ca_pem.into(),
            redirect_blobs: false,
        }
    }
}

/// A reverse proxy before a registry with blob redirects and fault injection; stops on drop.
pub struct Front {
    server: Server,
    ca_pem: String,
    requests: Requests,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").field("url", &self.url()).finish()
    }
}

struct FrontState {
    upstream: reqwest::Client,
    upstream_base: String,
    public_host: String,
    cdn: Option<(String, String)>, // (base url, secret)
    blob_path: Regex,
    requests: Requests,
    faults: Arc<Faults>,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
];

impl Front {
    /// Starts a Front for `registry`; with `cdn` and `opts.redirect_blobs`, blob GETs the registry authorises
    /// are answered with `307` to the CDN.
    pub async fn start(
        registry: &Registry,
        cdn: Option<&Cdn>,
        opts: FrontOptions,
    ) -> Result<Front> {
        if opts.redirect_blobs && cdn.is_none() {
            return Err(Error::Option {
                field: "redirect_blobs",
                message: "blob redirects need a Cdn: pass Some(&cdn)".into(),
            });
        }
        let requests: Requests = Arc::default();
        let faults: Arc<Faults> = Arc::default();
        // the public host is known only after binding: bind first through a placeholder handler cell
        let cell: Arc<std::sync::OnceLock<Arc<FrontState>>> = Arc::default();
        let c = cell.clone();
        let handler: Handler = Arc::new(move |req| {
            let st = c.get().cloned();
            Box::pin(async move {
                match st {
                    Some(st) => st.handle(req).await,
                    None => respond(503, &[], oci_error("UNAVAILABLE", "front is starting")),
                }
            })
        });
        let server = Server::start(opts.ip, Some(opts.tls.rustls_server_config()?), handler)?;
        let state = Arc::new(FrontState {
            upstream: registry.http_client()?,
            upstream_base: registry.url(),
            public_host: server.addr().to_string(),
            cdn: cdn
                .filter(|_| opts.redirect_blobs)
                .map(|c| (c.url(), c.secret.clone())),
            blob_path: Regex::new(r"^/v2/(.+)/blobs/(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
                .expect("blob regex"),
            requests: requests.clone(),
            faults: faults.clone(),
        });
        let _ = cell.set(state);
        Ok(Front {
            server,
            ca_pem: opts.ca_pem,
            requests,
            faults,
        })
    }

    /// `https://ip:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    /// `ip:port`, the registry host clients use.
    pub fn host_port(&self) -> String {
        self.server.addr().to_string()
    }

    /// PEM of the CA of the Front's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The Front's fault rules.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

impl FrontState {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        record(&self.requests, &req);
        let path = req.uri().path().to_string();
        let faults = self.faults.select(req.method(), &path);
        if let Some(d) = faults.iter().find_map(|f| match f {
            Fault::Delay { duration } => Some(*duration),
            _ => None,
        }) {
            tokio::time::sleep(d).await;
        }
        if let Some(resp) = replacement(&faults, req.headers()) {
            return resp;
        }
        let ignore_range = faults.iter().any(|f| matches!(f, Fault::IgnoreRange));
        let (parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let url = format!("{}{path_and_query}", self.upstream_base);
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in parts.headers.iter() {
            if HOP_BY_HOP.contains(&k.as_str()) || (ignore_range && k == http::header::RANGE) {
                continue;
            }
            headers.append(k.clone(), v.clone());
        }
        headers.insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
        if let Ok(v) = http::HeaderValue::from_str(&self.public_host) {
            headers.insert("x-forwarded-host", v);
        }

        // blob redirect: let the registry authorise with a HEAD, then send the client to the CDN
        if let Some((cdn, secret)) = &self.cdn
            && parts.method == http::Method::GET
            && let Some(c) = self.blob_path.captures(parts.uri.path())
        {
            let digest = c[2].to_string();
            // the HEAD only asks "may this client read this blob?": without Range, so the registry
            // answers 200 (not 206) and ranged (resumed) GETs are redirected like any other
            let mut head_headers = headers.clone();
            head_headers.remove(http::header::RANGE);
            let head = self.upstream.head(&url).headers(head_headers).send().await;
            match head {
                Ok(r) if r.status() == reqwest::StatusCode::OK => {
                    return respond(
                        307,
                        &[
                            (
                                "location",
                                format!("{cdn}/blobs/{digest}?sig={}", sign(secret, &digest)),
                            ),
                            ("docker-content-digest", digest.clone()),
                        ],
                        Bytes::new(),
                    );
                }
                // not authorised or unknown: forward the GET so the client gets the registry's own answer
                Ok(_) => {}
                Err(e) => {
                    return respond(
                        502,
                        &[],
                        oci_error("UNAVAILABLE", &format!("upstream: {}", error_chain(&e))),
                    );
                }
            }
        }

        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return respond(
                    400,
                    &[],
                    oci_error("UNKNOWN", &format!("reading request body: {e}")),
                );
            }
        };
        let upstream = self
            .upstream
            .request(parts.method.clone(), &url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let resp = match upstream {
            Ok(r) => r,
            Err(e) => {
                return respond(
                    502,
                    &[],
                    oci_error("UNAVAILABLE", &format!("upstream: {}", error_chain(&e))),
                );
            }
        };
        let mut builder = Response::builder().status(resp.status().as_u16());
        for (k, v) in resp.headers() {
            if HOP_BY_HOP.contains(&k.as_str()) {
                continue;
            }
            builder = builder.header(k, v);
        }
        let (parts_out, _) = builder.body(()).expect("valid response").into_parts();
        if parts.method == http::Method::HEAD {
            return Response::from_parts(parts_out, full(Bytes::new()));
        }
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))
            .boxed();
        shape_body(&faults, parts_out, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_manifest_has_exact_size_and_is_json() {
        let m = oversized_manifest(4 * 1024 * 1024 + 1);
        assert_eq!(m.len(), 4 * 1024 * 1024 + 1);
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["schemaVersion"], 2);
    }

    #[test]
    fn rule_fires_only_on_match_and_only_n_times() {
        let r = FaultRule::new(Fault::Status { status: 503 })
            .on("GET", "/blobs/")
            .unwrap()
            .times(2);
        let get = http::Method::GET;
        assert!(!r.take(&http::Method::HEAD, "/v2/a/blobs/x"));
        assert!(!r.take(&get, "/v2/a/manifests/x"));
        assert!(r.take(&get, "/v2/a/blobs/x"));
        assert!(r.take(&get, "/v2/a/blobs/x"));
        assert!(!r.take(&get, "/v2/a/blobs/x"));
        assert_eq!(r.fired(), 2);
    }

    #[test]
    fn range_parsing_follows_rfc9110() {
        assert!(matches!(
            parse_range(Some("bytes=0-9"), 100),
            RangeSpec::Part(0, 9)
        ));
        assert!(matches!(
            parse_range(Some("bytes=90-"), 100),
            RangeSpec::Part(90, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=-10"), 100),
            RangeSpec::Part(90, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=95-200"), 100),
            RangeSpec::Part(95, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=100-"), 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(parse_range(None, 100), RangeSpec::Full));
    }

    async fn collect(resp: Response<Body>) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    out.extend_from_slice(f.data_ref().map(|b| b.as_ref()).unwrap_or_default())
                }
                Err(e) => return Err(format!("{e}; got {} bytes", out.len())),
            }
        }
        Ok(out)
    }

    fn shaped(faults: &[Fault], data: &'static [u8]) -> Response<Body> {
        let (parts, _) = Response::builder()
            .header("content-length", data.len())
            .body(())
            .unwrap()
            .into_parts();
        let chunks = futures_util::stream::iter(
            data.chunks(3)
                .map(|c| Ok::<_, BoxError>(Bytes::from_static(c))),
        )
        .boxed();
        shape_body(faults, parts, chunks)
    }

    #[tokio::test]
    async fn body_faults_compose() {
        let data: &'static [u8] = b"0123456789";
        let flipped = collect(shaped(&[Fault::FlipByte { offset: 4 }], data))
            .await
            .unwrap();
        assert_eq!(flipped[4], b'4' ^ 0xff);
        assert_eq!(flipped.len(), 10);
        let err = collect(shaped(
            &[
                Fault::ResetAfter { bytes: 5 },
                Fault::FlipByte { offset: 1 },
            ],
            data,
        ))
        .await
        .unwrap_err();
        assert!(err.contains("got 5 bytes"), "{err}");
        let extra = shaped(
            &[Fault::ExtraBytes {
                count: 4,
                declare: true,
            }],
            data,
        );
        assert_eq!(extra.headers()["content-length"], "14");
        assert_eq!(collect(extra).await.unwrap().len(), 14);
        let chunked = shaped(
            &[Fault::ExtraBytes {
                count: 4,
                declare: false,
            }],
            data,
        );
        assert!(chunked.headers().get("content-length").is_none());
        let stalled = shaped(&[Fault::Stall { after_bytes: 2 }], data);
        let r = tokio::time::timeout(Duration::from_millis(200), collect(stalled)).await;
        assert!(r.is_err(), "stalled body must not complete");
    }
}
