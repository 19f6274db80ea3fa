//! The agent's HTTPS endpoint (kubelet's port 10250 contract for `kubectl logs`): a self-signed serving
//! certificate kept under `<root>/pki/` (its SHA-256 is published on the Node so the API server can pin it), a
//! client certificate required on every connection that must chain to the cluster CA and name CN
//! `berth:apiserver`, and `GET /containerLogs/{namespace}/{pod}/{container}` answering with kubelet's texts.
//!
//! Hand-written TLS accept loop (tokio-rustls + hyper-util) rather than a server crate, because the CN check needs
//! the verified peer certificate per connection, which axum's own server does not expose. It must never serve
//! anything to a peer without a verified client certificate and never log key material.

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
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::APISERVER_CLIENT_CN;
use crate::error::AgentError;
use crate::pods::Agent;

/// The serving certificate and key of this agent.
pub(crate) struct ServingIdentity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
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

/// rustls settings: our certificate, client certificates required and verified against the cluster CA.
pub(crate) fn tls_config(
    identity: &ServingIdentity,
    ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, AgentError> {
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
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::ClusterCa(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| AgentError::ServingCert {
            path: PathBuf::from("pki/serving.crt"),
            message: e.to_string(),
        })?;
    Ok(Arc::new(cfg))
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

#[derive(Clone)]
struct Conn {
    agent: Arc<Agent>,
    user: Option<String>,
}

/// Accept connections until `shutdown`; open log streams are cut when it fires.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let acceptor = TlsAcceptor::from(tls);
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
        let (acceptor, agent) = (acceptor.clone(), agent.clone());
        conns.spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake on the log endpoint failed");
                    return;
                }
            };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()));
            let app = router(Conn { agent, user });
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
