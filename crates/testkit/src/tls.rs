//! TLS plumbing shared by the fixtures: rustls client configurations from test PEMs (per-fixture trust,
//! optional client certificate) and the reqwest clients testkit uses itself (readiness probes, raw pushes,
//! the front proxy's upstream). It always uses the `ring` provider explicitly and never touches the
//! process-wide default provider or the system trust store.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};
use crate::pki::Leaf;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate of a PEM bundle.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::tls("parsing certificate pem", e))?;
    if certs.is_empty() {
        return Err(Error::tls(
            "parsing certificate pem",
            "no CERTIFICATE block found",
        ));
    }
    Ok(certs)
}

/// A rustls client configuration trusting exactly the CAs in `ca_pems`, presenting `identity` if given,
/// offering HTTP/1.1 only.
pub fn rustls_client_config(
    ca_pems: &[&str],
    identity: Option<&Leaf>,
) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in certs_from_pem(pem)? {
            roots
                .add(cert)
                .map_err(|e| Error::tls("adding trusted ca", e))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls("client config", e))?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain_der(), leaf.key_der())
            .map_err(|e| Error::tls("client certificate", e))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A reqwest client trusting exactly `ca_pems` (plain http works too), with an optional client certificate;
/// it follows no redirects and uses no proxy.
pub fn reqwest_client(ca_pems: &[&str], identity: Option<&Leaf>) -> Result<reqwest::Client> {
    let cfg = rustls_client_config(ca_pems, identity)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| Error::tls("building http client", crate::registry::error_chain(&e)))
}
