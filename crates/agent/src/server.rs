//! The agent's HTTPS endpoint (kubelet's port 10250 contract for `kubectl logs`, and blobs for peer nodes): a
//! self-signed serving certificate kept under `<root>/pki/` (its SHA-256 is published on the Node so the API
//! server and peers can pin it), a client certificate required on every connection, and per-route
//! authorization of who presented it:
//! - `GET /containerLogs/{namespace}/{pod}/{container}` and `/healthz`: only a certificate that chains to the
//!   cluster CA and names CN `berth:apiserver`, answering with kubelet's texts;
//! - `GET /blobs/{digest}` (with `Range: bytes=N-` or `N-M`): only another node, i.e. a certificate whose
//!   common name is `<node>@berth-agent` and whose SHA-256 is the `berth.dev/serving-cert-sha256` annotation of
//!   that registered Node (agents connect with their own serving certificate). It streams the committed blob,
//!   or the download in progress (`content::Store::follow`), so simultaneous pulls overlap; the receiver
//!   verifies the digest.
//!
//! The TLS layer requires a client certificate and checks its handshake signature but accepts any issuer (a
//! node's certificate is self-signed); the decision is made per connection from the presented chain (the
//! cluster CA chain check for the API server, the Node pin for peers) and applied per route. Hand-written TLS
//! accept loop (tokio-rustls + hyper-util) rather than a server crate, because these checks need the peer
//! certificate per connection, which axum's own server does not expose. It must never serve anything to a
//! peer without a verified client certificate, never serve a blob to anything but a registered Node, and never
//! log key material.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::APISERVER_CLIENT_CN;
use crate::error::AgentError;
use crate::pods::Agent;

/// The serving certificate and key of this agent (also its client identity towards peers).
pub(crate) struct ServingIdentity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint: String,
}

impl ServingIdentity {
    /// Load `<root>/pki/serving.crt|key`, creating a self-signed pair on first start.
    pub fn load_or_create(root: &Path, node_name: &str) -> Result<Self, AgentError> {
        let dir = root.join("pki");
        let (cert_path, key_path) = (dir.join("serving.crt"), dir.join("serving.key"));
        let bad = |path: &PathBuf, message: String| AgentError::ServingCert {
            path: path.clone(),
            message,
        };
        if !cert_path.exists() || !key_path.exists() {
            fs::create_dir_all(&dir).map_err(|e| AgentError::io("creating", &dir, e))?;
            let key = KeyPair::generate().map_err(|e| bad(&key_path, e.to_string()))?;
            let mut params =
                CertificateParams::new(vec![node_name.to_string(), "localhost".into()])
                    .map_err(|e| bad(&cert_path, e.to_string()))?;
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, format!("{node_name}@berth-agent"));
            params.distinguished_name = dn;
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            let cert = params
                .self_signed(&key)
                .map_err(|e| bad(&cert_path, e.to_string()))?;
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
        }
        let cert = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| bad(&cert_path, format!("not a PEM certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| bad(&key_path, format!("not a PEM private key: {e}")))?;
        let fingerprint = hex::encode(Sha256::digest(cert.as_ref()));
        Ok(ServingIdentity {
            cert,
            key,
            fingerprint,
        })
    }
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AgentError::io("creating", &tmp, e))?;
    f.write_all(content)
        .and_then(|_| f.sync_all())
        .map_err(|e| AgentError::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| AgentError::io("renaming into place", path, e))
}

/// The server's TLS settings and the cluster CA check applied per connection.
#[derive(Clone)]
pub(crate) struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    cluster: Arc<dyn ClientCertVerifier>,
}

/// Requires a client certificate and checks the handshake signature with its key, whoever issued it; who it
/// is gets decided per connection (see the module doc).
#[derive(Debug)]
struct AnyIssuer {
    cluster: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for AnyIssuer {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.cluster.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match x509_parser::parse_x509_certificate(end_entity.as_ref()) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.cluster.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.cluster.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.cluster.supported_verify_schemes()
    }
}

/// rustls settings: our certificate and a client certificate required on every connection (checked against the
/// cluster CA or a Node pin per connection).
pub(crate) fn tls_config(
    identity: &ServingIdentity,
    ca_pem: &str,
) -> Result<ServerTls, AgentError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| AgentError::ClusterCa(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| AgentError::ClusterCa(e.to_string()))?;
        found += 1;
    }
    if found == 0 {
        return Err(AgentError::ClusterCa("no PEM certificate in it".into()));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| AgentError::ClusterCa(e.to_string()))?;
    let any = Arc::new(AnyIssuer {
        cluster: verifier.clone(),
    });
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::ClusterCa(e.to_string()))?
        .with_client_cert_verifier(any)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| AgentError::ServingCert {
            path: PathBuf::from("pki/serving.crt"),
            message: e.to_string(),
        })?;
    Ok(ServerTls {
        config: Arc::new(cfg),
        cluster: verifier,
    })
}

/// The common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Who is on the other end of one connection.
#[derive(Clone)]
struct Conn {
    agent: Arc<Agent>,
    /// The common name of a client certificate that chains to the cluster CA.
    user: Option<String>,
    /// The presented certificate (any issuer): common name and SHA-256 of its DER.
    presented: Option<(String, String)>,
    /// The Node the presented certificate is pinned by, decided once per connection.
    node: Arc<tokio::sync::OnceCell<Option<String>>>,
}

impl Conn {
    /// The registered Node whose `berth.dev/serving-cert-sha256` is the presented certificate's SHA-256.
    async fn peer_node(&self) -> Option<String> {
        self.node
            .get_or_init(|| async {
                let (cn, sha) = self.presented.as_ref()?;
                let name = cn.strip_suffix(PEER_CN_SUFFIX)?;
                let nodes: kube::Api<k8s_openapi::api::core::v1::Node> =
                    kube::Api::all(self.agent.client.clone());
                let node = match nodes.get_opt(name).await {
                    Ok(n) => n?,
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "cannot read the Node of a peer");
                        return None;
                    }
                };
                let pinned = node
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(crate::SERVING_CERT_ANNOTATION))?;
                (pinned == sha).then(|| name.to_string())
            })
            .await
            .clone()
    }
}

/// The common name suffix of an agent's serving certificate (`<node>@berth-agent`).
const PEER_CN_SUFFIX: &str = "@berth-agent";

/// Accept connections until `shutdown`; open log streams are cut when it fires.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let acceptor = TlsAcceptor::from(tls.config.clone());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a log endpoint connection failed");
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let (acceptor, agent, cluster) = (acceptor.clone(), agent.clone(), tls.cluster.clone());
        conns.spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake on the log endpoint failed");
                    return;
                }
            };
            let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
            let (user, presented) = match certs.split_first() {
                Some((ee, intermediates)) => {
                    let cn = common_name(ee.as_ref());
                    let chained = cluster
                        .verify_client_cert(ee, intermediates, UnixTime::now())
                        .is_ok();
                    let sha = hex::encode(Sha256::digest(ee.as_ref()));
                    (cn.clone().filter(|_| chained), cn.map(|cn| (cn, sha)))
                }
                None => (None, None),
            };
            let app = router(Conn {
                agent,
                user,
                presented,
                node: Arc::new(tokio::sync::OnceCell::new()),
            });
            let service = TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "log endpoint connection ended with an error");
            }
        });
    }
    conns.shutdown().await;
    Ok(())
}

fn router(conn: Conn) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/healthz", get(healthz))
        .route(
            crate::check::PATH,
            axum::routing::post(|State(c): State<Conn>, body: axum::body::Bytes| {
                crate::check::serve(c.agent, c.user, body)
            }),
        )
        .route("/blobs/{digest}", get(blob))
        .fallback(not_found)
        .with_state(conn)
}

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// kubelet's authorization failure text for a request it will not serve.
fn forbidden(user: Option<&str>, subresource: &str) -> Response {
    text(
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden (user={}, verb=get, resource=nodes, subresource={subresource})",
            user.unwrap_or("system:anonymous")
        ),
    )
}

async fn healthz(State(conn): State<Conn>) -> Response {
    if conn.user.as_deref() != Some(APISERVER_CLIENT_CN) {
        return forbidden(conn.user.as_deref(), "healthz");
    }
    text(StatusCode::OK, "ok")
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

async fn container_logs(
    State(conn): State<Conn>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if conn.user.as_deref() != Some(APISERVER_CLIENT_CN) {
        return forbidden(conn.user.as_deref(), "log");
    }
    let q = match crate::logs::LogQuery::parse(&query, time::OffsetDateTime::now_utc()) {
        Ok(q) => q,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    let target = match conn
        .agent
        .log_target(&namespace, &pod, &container, q.previous)
    {
        Ok(t) => t,
        Err((code, message)) => return text(code, message),
    };
    let follow = q.follow;
    let rx = crate::logs::stream(target.path, q, target.alive);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    if follow {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            "no-cache".parse().expect("static header"),
        );
    }
    resp
}

/// How much of a blob one read moves to the connection.
const BLOB_CHUNK: usize = 256 * 1024;

/// The requested byte range `[start, end)` of a blob of `size` bytes; `None` when it cannot be satisfied. Only
/// single ranges `bytes=N-` and `bytes=N-M` are served (what peers send).
fn byte_range(header: Option<&str>, size: u64) -> Option<(u64, u64)> {
    let Some(value) = header else {
        return Some((0, size));
    };
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => size,
        e => e.parse::<u64>().ok()?.checked_add(1)?.min(size),
    };
    (start < end).then_some((start, end))
}

async fn blob(
    State(conn): State<Conn>,
    UrlPath(digest): UrlPath<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(peer) = conn.peer_node().await else {
        let who = conn
            .presented
            .as_ref()
            .map(|(cn, _)| cn.as_str())
            .or(conn.user.as_deref());
        return forbidden(who, "blobs");
    };
    let digest: oci::Digest = match digest.parse() {
        Ok(d) => d,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid blob digest {digest:?}: {e}"),
            );
        }
    };
    let store = conn.agent.store.clone();
    let d = digest.clone();
    let opened = match tokio::task::spawn_blocking(move || store.follow(&d)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("blob reader: {e}"),
            );
        }
    };
    let Some(mut following) = opened else {
        return text(
            StatusCode::NOT_FOUND,
            format!("blob {digest} is not on node {}", conn.agent.node_name),
        );
    };
    let size = following.size();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Some((start, end)) = byte_range(range, size) else {
        let mut resp = text(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {range:?} is not satisfiable for blob {digest} of {size} bytes"),
        );
        if let Ok(v) = format!("bytes */{size}").parse() {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return resp;
    };
    let state = if following.was_committed() {
        "committed"
    } else {
        "downloading"
    };
    tracing::info!(%digest, %peer, start, end, state, "serving a blob to a peer");
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        if let Err(e) = following.start_at(start) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = end - start;
        while left > 0 {
            let mut buf = vec![0u8; BLOB_CHUNK.min(usize::try_from(left).unwrap_or(BLOB_CHUNK))];
            match following.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(buf.into())).is_err() {
                        return; // the peer went away
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "a blob stream to a peer ended early");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, "application/octet-stream".into());
    set(header::CONTENT_LENGTH, (end - start).to_string());
    set(
        header::HeaderName::from_static("x-berth-blob-state"),
        state.into(),
    );
    if range.is_some() {
        set(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServingIdentity::load_or_create(dir.path(), "node-a").unwrap();
        let b = ServingIdentity::load_or_create(dir.path(), "node-a").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("pki/serving.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            common_name(a.cert.as_ref()).as_deref(),
            Some("node-a@berth-agent")
        );
    }

    #[test]
    fn blob_ranges_are_single_byte_ranges_within_the_blob() {
        assert_eq!(byte_range(None, 100), Some((0, 100)));
        assert_eq!(byte_range(Some("bytes=0-"), 100), Some((0, 100)));
        assert_eq!(byte_range(Some("bytes=40-"), 100), Some((40, 100)));
        assert_eq!(byte_range(Some("bytes=40-49"), 100), Some((40, 50)));
        assert_eq!(byte_range(Some("bytes=40-1000"), 100), Some((40, 100)));
        assert_eq!(byte_range(Some("bytes=100-"), 100), None);
        assert_eq!(byte_range(Some("bytes=50-40"), 100), None);
        assert_eq!(byte_range(Some("bytes=-10"), 100), None);
        assert_eq!(byte_range(Some("bytes=1-2,5-6"), 100), None);
        assert_eq!(byte_range(Some("items=1-"), 100), None);
    }

    #[test]
    fn the_tls_layer_wants_a_parsable_client_certificate_and_leaves_trust_to_the_routes() {
        let dir = tempfile::tempdir().unwrap();
        let id = ServingIdentity::load_or_create(dir.path(), "n").unwrap();
        // Any other certificate stands in for the cluster CA: the node's does not chain to it.
        ServingIdentity::load_or_create(&dir.path().join("ca"), "ca").unwrap();
        let ca_pem = std::fs::read_to_string(dir.path().join("ca/pki/serving.crt")).unwrap();
        let tls = tls_config(&id, &ca_pem).unwrap();
        let any = AnyIssuer {
            cluster: tls.cluster.clone(),
        };
        assert!(any.client_auth_mandatory());
        assert!(
            any.verify_client_cert(&id.cert, &[], UnixTime::now())
                .is_ok()
        );
        assert!(
            tls.cluster
                .verify_client_cert(&id.cert, &[], UnixTime::now())
                .is_err(),
            "a node certificate is never the API server"
        );
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(
            any.verify_client_cert(&garbage, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn an_empty_cluster_ca_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let id = ServingIdentity::load_or_create(dir.path(), "n").unwrap();
        let err = tls_config(&id, "").err().unwrap().to_string();
        assert!(
            err.contains("no PEM certificate") && err.contains("ca.crt"),
            "{err}"
        );
    }
}
