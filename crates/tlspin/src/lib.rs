//! The pinned-certificate TLS client berth uses between its own components (the API server to node
//! agents for logs and registry checks, node agents to each other for blobs): [`CertificatePin`] and
//! [`pinned_client_config`], a rustls `ClientConfig` that trusts exactly one server certificate, named
//! by the SHA-256 of its DER and published out of band (on the node's Node object), and presents a
//! client certificate.
//!
//! Rules it must never break: it trusts nothing but the pinned certificate (no roots, no names, no
//! validity dates, no TOFU) while still checking the handshake signatures against that certificate's
//! key; it does no IO of its own beyond building the rustls configuration; and it is never a way to
//! skip verification for a registry (registry trust is per host:port in crate `registry`). It is a
//! leaf so that the control plane and the node can share it without depending on each other. The
//! verifier is written here because rustls ships only WebPKI verifiers; a pin check is the few lines
//! of [`ServerCertVerifier`] below, with rustls' own signature verification.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The one server certificate a [`pinned_client_config`] trusts: the SHA-256 of its DER, and the text a
/// handshake with any other certificate fails with.
#[derive(Clone)]
pub struct CertificatePin {
    sha256: [u8; 32],
    mismatch: Arc<MismatchText>,
}

/// Explains a pin mismatch from (presented, pinned) lowercase hex SHA-256 fingerprints.
type MismatchText = dyn Fn(&str, &str) -> String + Send + Sync;

impl fmt::Debug for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificatePin")
            .field("sha256", &hex::encode(self.sha256))
            .finish_non_exhaustive()
    }
}

impl CertificatePin {
    /// Pins the certificate whose DER hashes to `sha256`. A mismatch fails the handshake with
    /// "the server presented a certificate with SHA-256 {presented}, but {pinned} is pinned".
    pub fn new(sha256: [u8; 32]) -> Self {
        CertificatePin {
            sha256,
            mismatch: Arc::new(|presented, pinned| {
                format!(
                    "the server presented a certificate with SHA-256 {presented}, but {pinned} is pinned"
                )
            }),
        }
    }

    /// The error text for a mismatch, from (presented, pinned) lowercase hex SHA-256 fingerprints:
    /// say where the pin comes from and how to fix it.
    pub fn with_mismatch(
        mut self,
        mismatch: impl Fn(&str, &str) -> String + Send + Sync + 'static,
    ) -> Self {
        self.mismatch = Arc::new(mismatch);
        self
    }

    /// The pinned SHA-256.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

/// Trusts exactly the pinned certificate; handshake signatures are still checked against its key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: CertificatePin,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest as _;
        let presented: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if presented == self.pin.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General((self.pin.mismatch)(
                &hex::encode(presented),
                &hex::encode(self.pin.sha256),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS client configuration for talking to one known peer whose self-signed certificate is
/// published out of band (berth's node agents publish the SHA-256 of their serving certificate on
/// their Node): the server is trusted if and only if the certificate it presents hashes to `pin`,
/// whatever its names, issuer or validity period (no roots, no hostname check; the handshake
/// signatures are still verified, so the server must hold that certificate's key). `chain` and
/// `key` are presented as the client certificate. Safe default protocol versions of `provider`;
/// ALPN http/1.1 only.
///
/// Use it only where the pin itself comes from a trusted source; it is not a way to skip
/// verification for registries (their trust is `registry::tls::build_rustls_config`, per host:port).
pub fn pinned_client_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    pin: CertificatePin,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let verifier = Arc::new(PinnedVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::RootCertStore;

    /// A TLS server on loopback with a self-signed certificate for an unrelated name that
    /// requires a client certificate from `client_ca`; answers with the client certificate it saw.
    async fn pinned_server(
        client_ca: CertificateDer<'static>,
    ) -> (
        std::net::SocketAddr,
        CertificateDer<'static>,
        tokio::task::JoinHandle<Option<CertificateDer<'static>>>,
    ) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["elsewhere.invalid".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(client_ca).unwrap();
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
                .accept(tcp)
                .await
                .ok()?;
            tls.get_ref().1.peer_certificates().map(|c| c[0].clone())
        });
        (addr, cert.der().clone(), task)
    }

    #[tokio::test]
    async fn a_pinned_client_trusts_exactly_the_pinned_certificate_and_presents_its_own() {
        use sha2::Digest as _;
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "node-1");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
        let client_key = || PrivateKeyDer::Pkcs8(client_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connect = |addr: std::net::SocketAddr, pin: CertificatePin| {
            let config = pinned_client_config(
                provider.clone(),
                pin,
                vec![client_cert.der().clone()],
                client_key(),
            )
            .unwrap();
            assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = ServerName::IpAddress(addr.ip().into());
                tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map(|_| ())
            }
        };

        // The pinned certificate is trusted although it is self-signed for another name, and the
        // server sees the client certificate.
        let (addr, server_cert, server) = pinned_server(ca.der().clone()).await;
        let pin: [u8; 32] = sha2::Sha256::digest(server_cert.as_ref()).into();
        connect(addr, CertificatePin::new(pin)).await.unwrap();
        assert_eq!(server.await.unwrap().as_ref(), Some(client_cert.der()));

        // Any other certificate fails the handshake with the caller's explanation.
        let (addr, server_cert, server) = pinned_server(ca.der().clone()).await;
        let pin = CertificatePin::new([7; 32]).with_mismatch(|presented, pinned| {
            format!("node-9 presented {presented}, its Node pins {pinned}")
        });
        let e = connect(addr, pin).await.unwrap_err().to_string();
        let expected = format!(
            "node-9 presented {}, its Node pins {}",
            hex::encode(sha2::Sha256::digest(server_cert.as_ref())),
            "07".repeat(32)
        );
        assert!(e.contains(&expected), "{e}");
        assert_eq!(server.await.unwrap(), None);
        let default = format!("{:?}", CertificatePin::new([7; 32]));
        assert!(default.contains(&"07".repeat(32)), "{default}");
    }
}
