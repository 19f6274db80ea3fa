//! TLS trust per host:port and classification of TLS failures.
//!
//! Owns the [`HostConfigSource`] seam (here [`TrustConfig`]: system roots, `--ca-file` files and a
//! Docker certs.d-style `--hosts-dir`; crate `hosts` implements it for containerd hosts.toml with
//! reload and mirrors: `host_config` gives per-host:port trust, `endpoints` the per-namespace
//! endpoint list of [`crate::endpoint`], and `generation` tells the client when to rebuild a host's
//! transport), building one rustls `ClientConfig` (ring provider, ALPN h2 + http/1.1)
//! per host:port, and turning a failed handshake into a [`TlsFailure`] that names the host, its
//! role, the class of failure, the trust sources consulted and the fix.
//!
//! Rules it must never break: a CA configured for host A never enters the root store of host B;
//! `skip_verify` applies to exactly the host:port whose configuration says so;
//! a client certificate is presented only to the host:port whose folder holds it; trust is never
//! inferred (no TOFU, no downloading CAs, no DNS-derived decisions); a TLS failure is final (this
//! module gives callers nothing to "retry over http" with). The certificate verifier is rustls'
//! own WebPKI verifier; the wrapper here only records what the server presented when verification
//! fails, so the error can say "expired on ...", "self-signed leaf" or "no intermediates sent".

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::error::{RegistryError, Role};
use crate::origin::HostPort;

/// Where the system roots came from (for messages).
#[derive(Clone, Debug)]
pub enum SystemRoots {
    /// Loaded from the OS store / `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    Native(usize),
    /// The OS store was empty; the bundled Mozilla roots (webpki-roots) are used.
    WebpkiBundle(usize),
    /// System roots disabled by configuration.
    Disabled,
}

impl fmt::Display for SystemRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemRoots::Native(n) => write!(
                f,
                "system roots ({n} certificates from the OS store, SSL_CERT_FILE or SSL_CERT_DIR)"
            ),
            SystemRoots::WebpkiBundle(n) => write!(
                f,
                "bundled webpki roots ({n} certificates; the OS store had none)"
            ),
            SystemRoots::Disabled => write!(f, "system roots disabled"),
        }
    }
}

/// A client certificate and key for one host (mTLS). Debug never shows the key.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The `.cert` file.
    pub cert_path: PathBuf,
    /// The `.key` file.
    pub key_path: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Everything the client needs to talk to one host:port.
#[derive(Clone, Debug, Default)]
pub struct HostConfig {
    /// Extra CAs for this host (system roots are added by the client), with their file.
    pub ca_certs: Vec<(PathBuf, CertificateDer<'static>)>,
    /// Client certificate for this host only.
    pub client_identity: Option<ClientIdentity>,
    /// Speak plain http to this host (explicit opt-in, exact host:port).
    pub plain_http: bool,
    /// Human-readable trust sources consulted for this host (paths, marked when absent).
    pub sources: Vec<String>,
    /// Skip certificate verification for this host:port only (containerd `skip_verify`, written
    /// explicitly for this endpoint; never inferred). The handshake signatures are still
    /// checked, the chain and the name are not; the client logs a warning for every transport it
    /// builds this way. Redirect targets and token realms on other host:ports stay verified.
    pub skip_verify: bool,
    /// The hosts directory this configuration was read from, so a TLS error can name the exact
    /// `berth trust add ... --hosts-dir DIR` that fixes it (`None`: no hosts directory in use).
    pub hosts_dir: Option<PathBuf>,
}

/// Supplies per-host configuration. The client caches one transport per host:port built from
/// [`HostConfigSource::host_config`] and asks [`HostConfigSource::generation`] before every
/// request: when the generation differs from the one the cached transport was built at, that
/// host's transport is rebuilt (hot reload without a restart).
pub trait HostConfigSource: Send + Sync + fmt::Debug {
    /// The configuration for `host`.
    fn host_config(&self, host: &HostPort) -> Result<HostConfig, RegistryError>;

    /// A counter that changes whenever any host's configuration may have changed. Called before
    /// every request, so it must be cheap (an atomic load, or a stat of a few files). The default
    /// (a constant) suits sources that never change, such as command-line flags.
    fn generation(&self) -> u64 {
        0
    }

    /// The endpoints for images whose registry is `namespace` (`host[:port]` as written in the
    /// image reference, `docker.io` for Docker Hub), in the order to try them: mirrors first, the
    /// server last. `None` (the default) means "no configuration": the registry itself over
    /// https (or plain http when [`HostConfig::plain_http`] says so) is the only endpoint. See
    /// [`crate::endpoint`] for how the client uses them. Called once per
    /// [`crate::Client::repository`], so a configuration change applies to the next pull.
    fn endpoints(
        &self,
        namespace: &str,
    ) -> Result<Option<Vec<crate::endpoint::RegistryEndpoint>>, RegistryError> {
        let _ = namespace;
        Ok(None)
    }
}

/// Trust from flags: `--ca-file` (every host), `--hosts-dir` (certs.d layout, per host:port) and
/// explicit plain-http hosts.
#[derive(Clone, Debug, Default)]
pub struct TrustConfig {
    /// PEM (or DER) CA files trusted for every host, in addition to the system roots.
    pub ca_files: Vec<PathBuf>,
    /// certs.d-style directory: `DIR/HOST:PORT/*.crt` (and `DIR/HOST/` for port 443) CAs,
    /// `*.cert` + `*.key` client pairs.
    pub hosts_dir: Option<PathBuf>,
    /// Hosts spoken to over plain http (exact host:port; never inferred).
    pub plain_http: Vec<HostPort>,
}

fn config_err(msg: String) -> RegistryError {
    RegistryError::Config(msg)
}

/// Reads certificates from a PEM file (or a single DER certificate).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let bytes = std::fs::read(path).map_err(|e| {
        config_err(format!(
            "cannot read CA file {}: {e}; check the path and its permissions",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let cert = item.map_err(|e| {
            config_err(format!(
                "CA file {} is not valid PEM: {e}; it must hold -----BEGIN CERTIFICATE----- blocks",
                path.display()
            ))
        })?;
        out.push(cert);
    }
    if out.is_empty() {
        if x509_parser::parse_x509_certificate(&bytes).is_ok() {
            out.push(CertificateDer::from(bytes));
        } else {
            return Err(config_err(format!(
                "CA file {} holds no certificate; it must hold PEM -----BEGIN CERTIFICATE----- blocks or one DER certificate",
                path.display()
            )));
        }
    }
    Ok(out)
}

impl ClientIdentity {
    /// Loads and checks a client certificate and its private key: `cert_path` holds the
    /// certificate (chain) in PEM or DER; `key_path` the PEM private key (PKCS#8, PKCS#1 or
    /// SEC1), or `None` when the key is in the certificate file (containerd's single-file
    /// form). The pair is validated the way the TLS client will use it: the key must match the
    /// certificate's public key. This is what `berth trust add --client-cert F --client-key F`
    /// calls before writing anything. Errors name both files and never contain key material.
    pub fn load(
        cert_path: &Path,
        key_path: Option<&Path>,
    ) -> Result<ClientIdentity, RegistryError> {
        let key_file = key_path.unwrap_or(cert_path);
        let chain = load_certs(cert_path).map_err(|e| match e {
            RegistryError::Config(m) => {
                config_err(m.replacen("CA file", "client certificate file", 1))
            }
            other => other,
        })?;
        let key_bytes = std::fs::read(key_file).map_err(|e| {
            config_err(format!(
                "cannot read client key {}: {e}; check the path and its permissions",
                key_file.display()
            ))
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| {
            config_err(format!(
                "client key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1) for {}",
                key_file.display(),
                cert_path.display()
            ))
        })?;
        let id = ClientIdentity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_file.to_path_buf(),
            chain,
            key: Arc::new(key),
        };
        id.check_pair()?;
        Ok(id)
    }

    /// The certificate chain (leaf first).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Fails unless rustls accepts the pair for client authentication (the key matches the leaf).
    fn check_pair(&self) -> Result<(), RegistryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(SkipVerify {
            algorithms: provider.signature_verification_algorithms,
        });
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_err(format!("TLS provider setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map(|_| ())
            .map_err(|e| {
                config_err(format!(
                    "client certificate {} and key {} do not form a usable pair: {e}; give the key that belongs to this certificate",
                    self.cert_path.display(),
                    self.key_path.display()
                ))
            })
    }
}

fn load_identity(cert_path: &Path, key_path: &Path) -> Result<ClientIdentity, RegistryError> {
    ClientIdentity::load(cert_path, Some(key_path))
}

/// The certs.d folders consulted for a host: `DIR/HOST:PORT`, then `DIR/HOST` when the port is 443.
pub fn certs_d_folders(dir: &Path, host: &HostPort) -> Vec<PathBuf> {
    let mut v = vec![dir.join(host.to_string())];
    if host.port() == 443 {
        let h = if host.host().contains(':') {
            format!("[{}]", host.host())
        } else {
            host.host().to_string()
        };
        v.push(dir.join(h));
    }
    v
}

fn read_certs_d(folder: &Path, hc: &mut HostConfig) -> Result<(), RegistryError> {
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            hc.sources
                .push(format!("{}/ (not present)", folder.display()));
            return Ok(());
        }
        Err(e) => {
            return Err(config_err(format!(
                "cannot read trust folder {}: {e}; check its permissions",
                folder.display()
            )));
        }
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let mut found = Vec::new();
    for p in &names {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "crt" => {
                for c in load_certs(p)? {
                    hc.ca_certs.push((p.clone(), c));
                }
                found.push(p.display().to_string());
            }
            "cert" => {
                let key = p.with_extension("key");
                if !key.exists() {
                    return Err(config_err(format!(
                        "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                        key.display(),
                        p.display()
                    )));
                }
                if hc.client_identity.is_none() {
                    hc.client_identity = Some(load_identity(p, &key)?);
                    found.push(format!("{} (client certificate)", p.display()));
                }
            }
            "key" => {
                let cert = p.with_extension("cert");
                if !cert.exists() {
                    return Err(config_err(format!(
                        "missing client certificate {} for key {}",
                        cert.display(),
                        p.display()
                    )));
                }
            }
            _ => {}
        }
    }
    if found.is_empty() {
        hc.sources
            .push(format!("{}/ (no .crt or .cert files)", folder.display()));
    } else {
        hc.sources.extend(found);
    }
    Ok(())
}

impl HostConfigSource for TrustConfig {
    fn host_config(&self, host: &HostPort) -> Result<HostConfig, RegistryError> {
        let mut hc = HostConfig {
            plain_http: self.plain_http.contains(host),
            hosts_dir: self.hosts_dir.clone(),
            ..HostConfig::default()
        };
        for f in &self.ca_files {
            for c in load_certs(f)? {
                hc.ca_certs.push((f.clone(), c));
            }
            hc.sources.push(format!("--ca-file {}", f.display()));
        }
        if let Some(dir) = &self.hosts_dir {
            for folder in certs_d_folders(dir, host) {
                read_certs_d(&folder, &mut hc)?;
            }
        }
        Ok(hc)
    }
}

/// Loads the system roots once: the OS store, or webpki-roots when the OS store is empty.
pub fn load_system_roots(enabled: bool) -> (Arc<RootCertStore>, SystemRoots) {
    let mut store = RootCertStore::empty();
    if !enabled {
        return (Arc::new(store), SystemRoots::Disabled);
    }
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = store.add_parsable_certificates(native.certs);
    if added > 0 {
        return (Arc::new(store), SystemRoots::Native(added));
    }
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let n = store.len();
    (Arc::new(store), SystemRoots::WebpkiBundle(n))
}

/// Builds the rustls configuration for one host: system roots + that host's CAs, that host's
/// client identity, ring provider, ALPN h2 and http/1.1.
pub fn build_rustls_config(
    host: &HostPort,
    system: &RootCertStore,
    hc: &HostConfig,
) -> Result<rustls::ClientConfig, RegistryError> {
    let verifier = build_verifier(host, system, hc)?;
    build_rustls_config_with_verifier(host, hc, verifier)
}

/// The certificate verifier for one host: rustls' WebPKI verifier over system roots + that
/// host's CAs, wrapped so a failure carries a summary of the presented chain.
pub fn build_verifier(
    host: &HostPort,
    system: &RootCertStore,
    hc: &HostConfig,
) -> Result<Arc<dyn ServerCertVerifier>, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    if hc.skip_verify {
        return Ok(Arc::new(SkipVerify {
            algorithms: provider.signature_verification_algorithms,
        }));
    }
    let mut roots = system.clone();
    for (path, cert) in &hc.ca_certs {
        roots.add(cert.clone()).map_err(|e| {
            config_err(format!(
                "CA certificate in {} (for {host}) cannot be used as a trust anchor: {e}",
                path.display()
            ))
        })?;
    }
    let roots = Arc::new(roots);
    // an empty store (system roots disabled, no CA configured) trusts nothing: every certificate
    // fails as signed by an unknown authority, with the same classification as any other host
    let inner = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| config_err(format!("no usable trust anchors for {host}: {e}")))?,
        )
    };
    Ok(Arc::new(RecordingVerifier {
        inner,
        algorithms: provider.signature_verification_algorithms,
        anchors: roots,
        host_cas: hc.ca_certs.len(),
    }))
}

/// The rustls configuration for one host with a given verifier (the probe wraps the host's real
/// verifier to record the chain): that host's client identity, ring provider, ALPN h2, http/1.1.
pub fn build_rustls_config_with_verifier(
    host: &HostPort,
    hc: &HostConfig,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(format!("TLS provider setup for {host}: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match &hc.client_identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| {
                config_err(format!(
                    "client certificate {} and key {} for {host} do not form a usable pair: {e}",
                    id.cert_path.display(),
                    id.key_path.display()
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// What the server presented, summarised when verification failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresentedChain {
    /// Leaf subject DN.
    pub subject: String,
    /// Leaf issuer DN.
    pub issuer: String,
    /// Validity start (RFC 2822-ish, UTC).
    pub not_before: String,
    /// Validity end.
    pub not_after: String,
    /// Leaf is self-signed (issuer == subject).
    pub self_signed: bool,
    /// Leaf carries CA:TRUE.
    pub leaf_is_ca: bool,
    /// Number of intermediates the server sent.
    pub intermediates: usize,
    /// Subject Alternative Names of the leaf.
    pub names: Vec<String>,
    /// Leaf issuer is the subject of one of the anchors (trusted issuer name).
    pub issuer_is_anchor_subject: bool,
    /// Leaf carries an Authority Information Access extension (issuer certificate published).
    pub has_aia_ca_issuers: bool,
    /// CAs configured for this host (files and folders), beyond the system roots.
    pub host_cas: usize,
    /// SHA-256 (lowercase hex) of the last CA certificate the server presented (the one to trust
    /// when the server's chain ends below a trusted root), if it presented any CA.
    pub top_ca_sha256: Option<String>,
}

/// SHA-256 of a DER certificate, lowercase hex (openssl's `-fingerprint -sha256` without colons).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(der))
}

fn is_ca_cert(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| c.is_ca())
}

fn summarise(
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &RootCertStore,
    host_cas: usize,
) -> PresentedChain {
    let mut p = PresentedChain {
        intermediates: intermediates.len(),
        host_cas,
        top_ca_sha256: intermediates
            .iter()
            .rev()
            .find(|c| is_ca_cert(c.as_ref()))
            .map(|c| sha256_fingerprint(c.as_ref())),
        ..PresentedChain::default()
    };
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(ee.as_ref()) {
        p.subject = cert.subject().to_string();
        p.issuer = cert.issuer().to_string();
        p.not_before = cert.validity().not_before.to_string();
        p.not_after = cert.validity().not_after.to_string();
        p.self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
        p.leaf_is_ca = cert.is_ca();
        p.has_aia_ca_issuers = cert
            .get_extension_unique(&x509_parser::oid_registry::OID_PKIX_AUTHORITY_INFO_ACCESS)
            .ok()
            .flatten()
            .is_some();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => p.names.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*b)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a).to_string()),
                            _ => None,
                        };
                        p.names.extend(ip);
                    }
                    _ => {}
                }
            }
        }
        let issuer_raw = cert.issuer().as_raw();
        p.issuer_is_anchor_subject = anchors
            .roots
            .iter()
            .any(|a| strip_der_header(a.subject.as_ref()) == strip_der_header(issuer_raw));
    }
    p
}

/// Trust anchors store the subject without the outer SEQUENCE header; names from x509-parser keep
/// it. Compare the contents only.
fn strip_der_header(b: &[u8]) -> &[u8] {
    if b.first() != Some(&0x30) || b.len() < 2 {
        return b;
    }
    let len_byte = b[1];
    let hdr = if len_byte & 0x80 == 0 {
        2
    } else {
        2 + (len_byte & 0x7f) as usize
    };
    b.get(hdr..).unwrap_or(b)
}

/// Carried inside `CertificateError::Other` so the classifier sees both the verifier's verdict
/// and what the server presented.
#[derive(Debug)]
pub struct VerifyFailure {
    /// The WebPKI verdict.
    pub error: CertificateError,
    /// What the server sent.
    pub presented: PresentedChain,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for VerifyFailure {}

/// Delegates every decision to rustls' WebPKI verifier; on failure it attaches a summary of the
/// presented chain. It never turns a failure into a success.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    anchors: Arc<RootCertStore>,
    host_cas: usize,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        verdict.map_err(|e| match e {
            rustls::Error::InvalidCertificate(ce) => rustls::Error::InvalidCertificate(
                CertificateError::Other(OtherError(Arc::new(VerifyFailure {
                    error: ce,
                    presented: summarise(end_entity, intermediates, &self.anchors, self.host_cas),
                }))),
            ),
            other => other,
        })
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

/// `skip_verify`: accepts any certificate chain and name for the one host:port configured so,
/// but still checks the handshake signatures (the peer must hold the key of the certificate it
/// sent). Also used to check a client pair without connecting anywhere.
#[derive(Debug)]
struct SkipVerify {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

/// The class of a TLS failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsErrorClass {
    /// The chain does not lead to a trusted CA.
    UnknownAuthority,
    /// The server sent a leaf only, its issuer is not trusted, and the issuer is not self-signed:
    /// most likely a missing intermediate.
    MissingIntermediate,
    /// The leaf is self-signed (no CA).
    SelfSignedLeaf,
    /// Certificate expired.
    Expired,
    /// Certificate not yet valid.
    NotYetValid,
    /// Certificate not valid for the host name or IP.
    NameMismatch,
    /// Signature algorithm too weak or unsupported, or bad signature.
    BadSignature,
    /// Certificate revoked, wrong purpose, bad encoding, or another certificate problem.
    BadCertificate,
    /// The server presents a CA certificate as its own (end-entity) certificate: it is
    /// configured with its CA's certificate instead of a leaf issued by that CA.
    CaAsLeaf,
    /// The server requires a client certificate and none is configured.
    ClientCertRequired,
    /// The server rejected the configured client certificate.
    ClientCertRejected,
    /// Handshake or record-layer protocol failure (plain http on a TLS port, no common version).
    Protocol,
}

/// A classified TLS failure, rendered with host, role, sources and a fix.
#[derive(Debug, Clone)]
pub struct TlsFailure {
    /// The host:port whose handshake failed.
    pub host: HostPort,
    /// Its role in the pull.
    pub role: Role,
    /// The class.
    pub class: TlsErrorClass,
    /// The verifier's or peer's wording.
    pub detail: String,
    /// Presented chain, when verification failed.
    pub presented: Option<PresentedChain>,
    /// Trust sources consulted (system roots, files, folders).
    pub sources: Vec<String>,
    /// A client certificate was configured for this host.
    pub client_cert_configured: bool,
    /// The hosts directory in use, named in the fix (`None`: the client reads none).
    pub hosts_dir: Option<PathBuf>,
}

impl std::error::Error for TlsFailure {}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.host;
        write!(
            f,
            "tls: failed to verify certificate of {h} ({}): ",
            self.role
        )?;
        let p = self.presented.as_ref();
        let issuer = p.map(|p| p.issuer.as_str()).unwrap_or("");
        match self.class {
            TlsErrorClass::UnknownAuthority => {
                write!(f, "x509: certificate signed by unknown authority")?;
                if !issuer.is_empty() {
                    write!(f, " (issuer \"{issuer}\"")?;
                    if p.is_some_and(|p| p.intermediates == 0 && !p.self_signed) {
                        write!(
                            f,
                            "; the server sent only its own certificate, so if that issuer is an intermediate CA the chain is also incomplete"
                        )?;
                    }
                    write!(f, ")")?;
                }
            }
            TlsErrorClass::MissingIntermediate => write!(
                f,
                "x509: certificate signed by unknown authority (issuer \"{issuer}\"; the server sent no intermediate certificates, so an intermediate CA may be missing from its chain)"
            )?,
            TlsErrorClass::SelfSignedLeaf => write!(
                f,
                "x509: certificate signed by unknown authority (the server presents the self-signed leaf certificate \"{}\", which is not trusted for this host; issue the registry certificate from a CA and trust that CA, or pin this exact certificate for this host only)",
                p.map(|p| p.subject.as_str()).unwrap_or("")
            )?,
            TlsErrorClass::Expired => write!(
                f,
                "x509: certificate has expired (valid {} to {}): {}",
                p.map(|p| p.not_before.as_str()).unwrap_or("?"),
                p.map(|p| p.not_after.as_str()).unwrap_or("?"),
                self.detail
            )?,
            TlsErrorClass::NotYetValid => write!(
                f,
                "x509: certificate is not yet valid (valid {} to {}): {}",
                p.map(|p| p.not_before.as_str()).unwrap_or("?"),
                p.map(|p| p.not_after.as_str()).unwrap_or("?"),
                self.detail
            )?,
            TlsErrorClass::NameMismatch => {
                write!(f, "x509: certificate is not valid for {}", h.host())?;
                if let Some(p) = p.filter(|p| !p.names.is_empty()) {
                    write!(f, " (valid for {}", p.names.join(", "))?;
                    write!(f, ")")?;
                } else {
                    write!(
                        f,
                        " (it has no matching subject alternative name; certificates need SANs, the common name is ignored)"
                    )?;
                }
            }
            TlsErrorClass::BadSignature => {
                write!(f, "x509: unsupported or invalid signature: {}", self.detail)?;
                if p.is_some_and(|p| p.issuer_is_anchor_subject) {
                    write!(
                        f,
                        " (issuer \"{issuer}\" is trusted by name, but its signature on this certificate cannot be verified: a weak algorithm such as SHA-1, or a different key under the same name)"
                    )?;
                }
            }
            TlsErrorClass::BadCertificate => {
                write!(f, "x509: certificate rejected: {}", self.detail)?
            }
            TlsErrorClass::CaAsLeaf => write!(
                f,
                "x509: the server presents the CA certificate \"{}\" as its own certificate; a CA certificate cannot identify a server ({})",
                p.map(|p| p.subject.as_str()).unwrap_or(""),
                self.detail
            )?,
            TlsErrorClass::ClientCertRequired => write!(
                f,
                "the server requires a client certificate and none is configured for {h}: {}",
                self.detail
            )?,
            TlsErrorClass::ClientCertRejected => write!(
                f,
                "the server rejected the client certificate configured for {h}: {}",
                self.detail
            )?,
            TlsErrorClass::Protocol => write!(f, "handshake failed: {}", self.detail)?,
        }
        if !self.sources.is_empty() {
            write!(f, "; trust sources consulted: {}", self.sources.join(", "))?;
        }
        write!(f, "; fix: {}", self.hint())
    }
}

impl TlsFailure {
    /// The fix to suggest: the exact commands, naming this host:port only.
    pub fn hint(&self) -> String {
        let h = &self.host;
        let p = self.presented.as_ref();
        let issuer = p.map(|p| p.issuer.as_str()).unwrap_or("its issuer");
        // the directory the failing client reads, so the command fixes this very client
        let (dir_flag, folder) = match &self.hosts_dir {
            Some(d) => (
                format!(" --hosts-dir {}", d.display()),
                format!("{}/{h}", d.display()),
            ),
            None => (
                " --hosts-dir DIR".to_string(),
                format!(
                    "DIR/{h} (and pass --hosts-dir DIR to the pull; no hosts directory is in use now)"
                ),
            ),
        };
        let add = match p.and_then(|p| p.top_ca_sha256.as_deref()) {
            Some(fp) => format!("`berth trust add {h}{dir_flag} --fingerprint sha256:{fp}`"),
            None => format!(
                "`berth trust add {h}{dir_flag} --ca-file CA.pem` with the certificate of the CA \"{issuer}\" (from the registry's administrator)"
            ),
        };
        let role_note = if self.role == Role::RedirectTarget {
            " (this host is where the registry redirected the download; it needs its own trust)"
        } else {
            ""
        };
        match self.class {
            TlsErrorClass::UnknownAuthority => format!(
                "run `berth trust fetch {h}` and check the fingerprints, then trust its CA for this host only: {add} (or put it in {folder}/ca.crt, or pass --ca-file){role_note}; never retried over plain http"
            ),
            TlsErrorClass::MissingIntermediate => format!(
                "configure {h} to send its full chain (leaf and intermediate certificates), or trust the intermediate CA \"{issuer}\" for this host: `berth trust add {h}{dir_flag} --ca-file INTERMEDIATE.pem` (or append it to {folder}/ca.crt); inspect the chain with `berth trust fetch {h}`{role_note}"
            ),
            TlsErrorClass::SelfSignedLeaf => format!(
                "issue the certificate of {h} from a CA and trust that CA for this host (`berth trust fetch {h}`, then {add}), or pin this exact certificate for this host only by putting it in {folder}/ca.crt{role_note}"
            ),
            TlsErrorClass::Expired | TlsErrorClass::NotYetValid => format!(
                "renew the certificate of {h} (or fix this machine's clock); inspect it with `berth trust fetch {h}`"
            ),
            TlsErrorClass::NameMismatch => format!(
                "use the host name the certificate was issued for, or reissue the certificate of {h} with a subject alternative name for {}; inspect it with `berth trust fetch {h}`",
                h.host()
            ),
            TlsErrorClass::BadSignature | TlsErrorClass::BadCertificate => format!(
                "reissue the certificate of {h} with a SHA-256 (or stronger) signature from a trusted CA; inspect it with `berth trust fetch {h}`"
            ),
            TlsErrorClass::CaAsLeaf => format!(
                "{h} is configured to serve its CA certificate instead of its own leaf certificate: the registry's operator must serve a leaf certificate issued by that CA for {} (with the intermediates, if any); trusting or pinning this certificate on this machine does not fix it, a CA certificate is never accepted as a server's certificate; inspect what it serves with `berth trust fetch {h}`",
                h.host()
            ),
            TlsErrorClass::ClientCertRequired => format!(
                "put the client certificate and key for this host in {folder}/client.cert and client.key (check the pair with `berth trust add {h}{dir_flag} --client-cert CERT --client-key KEY`)"
            ),
            TlsErrorClass::ClientCertRejected => format!(
                "check that the client certificate in {folder}/ is issued by a CA the server accepts and is still valid"
            ),
            TlsErrorClass::Protocol => format!(
                "check that {h} serves TLS on this port (a plain-http registry must be configured as plain http explicitly)"
            ),
        }
    }
}

impl TlsErrorClass {
    /// A stable machine-readable name (`unknown_authority`, `incomplete_chain`, ...).
    pub fn code(self) -> &'static str {
        match self {
            TlsErrorClass::UnknownAuthority => "unknown_authority",
            TlsErrorClass::MissingIntermediate => "incomplete_chain",
            TlsErrorClass::SelfSignedLeaf => "self_signed_leaf",
            TlsErrorClass::Expired => "expired",
            TlsErrorClass::NotYetValid => "not_yet_valid",
            TlsErrorClass::NameMismatch => "name_mismatch",
            TlsErrorClass::BadSignature => "bad_signature",
            TlsErrorClass::BadCertificate => "bad_certificate",
            TlsErrorClass::CaAsLeaf => "ca_used_as_leaf",
            TlsErrorClass::ClientCertRequired => "client_certificate_required",
            TlsErrorClass::ClientCertRejected => "client_certificate_rejected",
            TlsErrorClass::Protocol => "protocol",
        }
    }

    /// The class in plain words.
    pub fn summary(self) -> &'static str {
        match self {
            TlsErrorClass::UnknownAuthority => {
                "not trusted: the certificate was issued by a CA this machine does not trust for this host"
            }
            TlsErrorClass::MissingIntermediate => {
                "not trusted: incomplete chain (the server does not send the intermediate CA certificate that links its certificate to a trusted CA)"
            }
            TlsErrorClass::SelfSignedLeaf => {
                "not trusted: the server's certificate is self-signed (not issued by a CA) and is not pinned for this host"
            }
            TlsErrorClass::Expired => "not trusted: the certificate has expired",
            TlsErrorClass::NotYetValid => {
                "not trusted: the certificate is not valid yet (check this machine's clock)"
            }
            TlsErrorClass::NameMismatch => {
                "not trusted: the certificate was issued for other names than the one connected to"
            }
            TlsErrorClass::BadSignature => {
                "not trusted: a signature in the chain uses a weak or unsupported algorithm, or does not verify"
            }
            TlsErrorClass::BadCertificate => "not trusted: the certificate was rejected",
            TlsErrorClass::CaAsLeaf => {
                "not trusted: the server presents a CA certificate as its own certificate (it must serve a leaf issued by that CA)"
            }
            TlsErrorClass::ClientCertRequired => {
                "the server requires a client certificate and none is configured for this host"
            }
            TlsErrorClass::ClientCertRejected => {
                "the server rejected the client certificate configured for this host"
            }
            TlsErrorClass::Protocol => {
                "no TLS session: the handshake failed (is this port serving TLS?)"
            }
        }
    }
}

fn class_of_cert_error(e: &CertificateError, presented: Option<&PresentedChain>) -> TlsErrorClass {
    use CertificateError as C;
    match e {
        C::UnknownIssuer => match presented {
            Some(p) if p.self_signed && !p.leaf_is_ca => TlsErrorClass::SelfSignedLeaf,
            // the issuer's name is trusted, yet no path verifies: a weak or unsupported signature
            // (webpki reports SHA-1 signed chains this way) or a different key under the same name
            Some(p) if !p.self_signed && p.issuer_is_anchor_subject => TlsErrorClass::BadSignature,
            // leaf only, from an issuer that publishes its certificate (AIA), or for a host the
            // operator already trusts a CA for: the server left out its intermediate
            Some(p)
                if !p.self_signed
                    && p.intermediates == 0
                    && (p.has_aia_ca_issuers || p.host_cas > 0) =>
            {
                TlsErrorClass::MissingIntermediate
            }
            _ => TlsErrorClass::UnknownAuthority,
        },
        C::Expired | C::ExpiredContext { .. } => TlsErrorClass::Expired,
        C::NotValidYet | C::NotValidYetContext { .. } => TlsErrorClass::NotYetValid,
        C::NotValidForName | C::NotValidForNameContext { .. } => TlsErrorClass::NameMismatch,
        C::BadSignature
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => TlsErrorClass::BadSignature,
        #[allow(deprecated)]
        C::UnsupportedSignatureAlgorithm => TlsErrorClass::BadSignature,
        C::Other(o)
            if matches!(
                o.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            TlsErrorClass::CaAsLeaf
        }
        _ => match presented {
            // webpki reports a self-signed leaf configured as an anchor as CaUsedAsEndEntity-like
            // failures; name it plainly.
            Some(p) if p.self_signed && !p.leaf_is_ca => TlsErrorClass::SelfSignedLeaf,
            _ => TlsErrorClass::BadCertificate,
        },
    }
}

/// Classifies a rustls error.
pub fn classify_rustls(
    err: &rustls::Error,
    client_cert_configured: bool,
) -> (TlsErrorClass, String, Option<PresentedChain>) {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::InvalidCertificate(ce @ CertificateError::Other(other)) => {
            if let Some(vf) = other.0.downcast_ref::<VerifyFailure>() {
                let class = class_of_cert_error(&vf.error, Some(&vf.presented));
                (class, vf.error.to_string(), Some(vf.presented.clone()))
            } else {
                (class_of_cert_error(ce, None), err.to_string(), None)
            }
        }
        rustls::Error::InvalidCertificate(ce) => {
            (class_of_cert_error(ce, None), err.to_string(), None)
        }
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            if client_cert_configured {
                (TlsErrorClass::ClientCertRejected, err.to_string(), None)
            } else {
                (TlsErrorClass::ClientCertRequired, err.to_string(), None)
            }
        }
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::HandshakeFailure,
        ) => {
            if client_cert_configured {
                (TlsErrorClass::ClientCertRejected, err.to_string(), None)
            } else if matches!(err, rustls::Error::AlertReceived(A::HandshakeFailure)) {
                (TlsErrorClass::Protocol, err.to_string(), None)
            } else {
                (TlsErrorClass::ClientCertRequired, err.to_string(), None)
            }
        }
        _ => (TlsErrorClass::Protocol, err.to_string(), None),
    }
}

/// Finds a `rustls::Error` in an error's source chain. `io::Error::source` skips its payload, so
/// each `io::Error` is also opened with `get_ref`.
pub fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = cur {
        if depth > 32 {
            return None;
        }
        depth += 1;
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = find_rustls_error(inner)
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// Builds a [`TlsFailure`] when `err` has a rustls error in its chain.
pub fn tls_failure(
    err: &(dyn std::error::Error + 'static),
    host: &HostPort,
    role: Role,
    hc: &HostConfig,
    system: &SystemRoots,
) -> Option<TlsFailure> {
    let r = find_rustls_error(err)?;
    let (class, detail, presented) = classify_rustls(r, hc.client_identity.is_some());
    let mut sources = vec![system.to_string()];
    sources.extend(hc.sources.iter().cloned());
    Some(TlsFailure {
        host: host.clone(),
        role,
        class,
        detail,
        presented,
        sources,
        client_cert_configured: hc.client_identity.is_some(),
        hosts_dir: hc.hosts_dir.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(self_signed: bool, ca: bool, intermediates: usize) -> PresentedChain {
        PresentedChain {
            subject: "CN=reg".into(),
            issuer: if self_signed {
                "CN=reg".into()
            } else {
                "CN=Private CA".into()
            },
            not_before: "Jan  1 00:00:00 2020 +00:00".into(),
            not_after: "Jan  1 00:00:00 2021 +00:00".into(),
            self_signed,
            leaf_is_ca: ca,
            intermediates,
            names: vec!["reg.example".into(), "127.0.0.1".into()],
            issuer_is_anchor_subject: false,
            has_aia_ca_issuers: false,
            host_cas: 0,
            top_ca_sha256: None,
        }
    }

    fn wrapped(ce: CertificateError, p: PresentedChain) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            VerifyFailure {
                error: ce,
                presented: p,
            },
        ))))
    }

    fn failure(err: &rustls::Error, role: Role) -> TlsFailure {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err.clone());
        let hc = HostConfig {
            sources: vec!["/etc/berth/hosts/127.0.0.2:5001/ (not present)".into()],
            ..HostConfig::default()
        };
        tls_failure(
            &io,
            &HostPort::new("127.0.0.2", 5001),
            role,
            &hc,
            &SystemRoots::Native(140),
        )
        .expect("rustls error found through io::Error")
    }

    #[test]
    fn unknown_issuer_keeps_go_wording_host_role_sources_and_hint() {
        let f = failure(
            &wrapped(CertificateError::UnknownIssuer, chain(false, false, 1)),
            Role::RedirectTarget,
        );
        assert_eq!(f.class, TlsErrorClass::UnknownAuthority);
        let s = f.to_string();
        assert!(
            s.contains("x509: certificate signed by unknown authority"),
            "{s}"
        );
        assert!(s.contains("127.0.0.2:5001 (redirect target)"), "{s}");
        assert!(s.contains("/etc/berth/hosts/127.0.0.2:5001/"), "{s}");
        assert!(s.contains("system roots"), "{s}");
        assert!(s.contains("berth trust fetch 127.0.0.2:5001"), "{s}");
        assert!(s.contains("--ca-file"), "{s}");
    }

    #[test]
    fn self_signed_leaf_is_named() {
        let f = failure(
            &wrapped(CertificateError::UnknownIssuer, chain(true, false, 0)),
            Role::Registry,
        );
        assert_eq!(f.class, TlsErrorClass::SelfSignedLeaf);
        assert!(f.to_string().contains("self-signed leaf"));
        assert!(
            f.to_string()
                .contains("x509: certificate signed by unknown authority")
        );
    }

    #[test]
    fn expired_and_not_yet_valid_show_the_window() {
        let f = failure(
            &wrapped(CertificateError::Expired, chain(false, false, 0)),
            Role::TokenRealm,
        );
        assert_eq!(f.class, TlsErrorClass::Expired);
        let s = f.to_string();
        assert!(
            s.contains("has expired (valid Jan  1 00:00:00 2020 +00:00 to Jan  1 00:00:00 2021"),
            "{s}"
        );
        assert!(s.contains("(token realm)"));
        let f = failure(
            &wrapped(CertificateError::NotValidYet, chain(false, false, 0)),
            Role::Registry,
        );
        assert_eq!(f.class, TlsErrorClass::NotYetValid);
    }

    #[test]
    fn name_mismatch_lists_certificate_names() {
        let f = failure(
            &wrapped(CertificateError::NotValidForName, chain(false, false, 0)),
            Role::Registry,
        );
        assert_eq!(f.class, TlsErrorClass::NameMismatch);
        assert!(f.to_string().contains("valid for reg.example, 127.0.0.1"));
    }

    #[test]
    fn ca_served_as_leaf_asks_the_operator_for_a_leaf_not_a_new_signature_or_pin() {
        let ca_used_as_leaf =
            CertificateError::Other(OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity)));
        // Self-signed CA pinned for the host and served as the leaf, and a CA issued by another.
        for presented in [chain(true, true, 0), chain(false, true, 0)] {
            let f = failure(&wrapped(ca_used_as_leaf.clone(), presented), Role::Registry);
            assert_eq!(f.class, TlsErrorClass::CaAsLeaf);
            assert_eq!(f.class.code(), "ca_used_as_leaf");
            let s = f.to_string();
            assert!(s.contains("127.0.0.2:5001 (registry)"), "{s}");
            assert!(s.contains("presents the CA certificate \"CN=reg\""), "{s}");
            let hint = f.hint();
            assert!(
                hint.contains("instead of its own leaf certificate")
                    && hint.contains("operator must serve a leaf certificate issued by that CA")
                    && hint.contains("pinning this certificate on this machine does not fix it"),
                "{hint}"
            );
            assert!(!hint.contains("SHA-256"), "{hint}");
            assert!(!hint.contains("berth trust add"), "{hint}");
        }
        // Unwrapped (no presented chain) it is classified the same.
        let e = rustls::Error::InvalidCertificate(ca_used_as_leaf);
        assert_eq!(classify_rustls(&e, false).0, TlsErrorClass::CaAsLeaf);
    }

    #[test]
    fn weak_signature_is_classified() {
        let f = failure(
            &wrapped(CertificateError::BadSignature, chain(false, false, 0)),
            Role::Registry,
        );
        assert_eq!(f.class, TlsErrorClass::BadSignature);
    }

    #[test]
    fn client_certificate_alerts_depend_on_configuration() {
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert_eq!(
            classify_rustls(&e, false).0,
            TlsErrorClass::ClientCertRequired
        );
        assert_eq!(
            classify_rustls(&e, true).0,
            TlsErrorClass::ClientCertRejected
        );
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        assert_eq!(
            classify_rustls(&e, false).0,
            TlsErrorClass::ClientCertRequired
        );
        assert_eq!(
            classify_rustls(&e, true).0,
            TlsErrorClass::ClientCertRejected
        );
    }

    #[test]
    fn corrupt_record_is_a_protocol_failure() {
        let e = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let f = failure(&e, Role::Registry);
        assert_eq!(f.class, TlsErrorClass::Protocol);
        assert!(f.hint().contains("serves TLS"));
    }

    #[test]
    fn non_tls_errors_are_not_classified() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(find_rustls_error(&io).is_none());
    }

    #[test]
    fn certs_d_folders_add_bare_host_only_for_443() {
        let d = Path::new("/h");
        assert_eq!(
            certs_d_folders(d, &HostPort::new("reg", 5000)),
            vec![PathBuf::from("/h/reg:5000")]
        );
        assert_eq!(
            certs_d_folders(d, &HostPort::new("reg", 443)),
            vec![PathBuf::from("/h/reg:443"), PathBuf::from("/h/reg")]
        );
    }

    #[test]
    fn certs_d_reads_host_cas_only_for_that_host_and_pairs_client_certs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        std::fs::create_dir(dir.path().join("a:5000")).unwrap();
        std::fs::write(dir.path().join("a:5000/ca.crt"), ca.cert.pem()).unwrap();
        let tc = TrustConfig {
            hosts_dir: Some(dir.path().to_path_buf()),
            ..TrustConfig::default()
        };
        let a = tc.host_config(&HostPort::new("a", 5000)).unwrap();
        assert_eq!(a.ca_certs.len(), 1);
        let b = tc.host_config(&HostPort::new("b", 5000)).unwrap();
        assert!(b.ca_certs.is_empty(), "trust for a must not cover b");
        assert!(b.sources[0].contains("b:5000/ (not present)"));
        let a_other_port = tc.host_config(&HostPort::new("a", 5001)).unwrap();
        assert!(a_other_port.ca_certs.is_empty());

        // a .cert without .key is refused with docker's wording
        let cl = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        std::fs::write(dir.path().join("a:5000/client.cert"), cl.cert.pem()).unwrap();
        let err = tc
            .host_config(&HostPort::new("a", 5000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing key") && err.contains("must use the extension .crt"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("a:5000/client.key"),
            cl.signing_key.serialize_pem(),
        )
        .unwrap();
        let a = tc.host_config(&HostPort::new("a", 5000)).unwrap();
        let id = a.client_identity.clone().expect("client pair loaded");
        assert!(!format!("{id:?}").contains("PRIVATE KEY"));
        assert!(format!("{id:?}").contains("<redacted>"));
        let (system, _) = load_system_roots(false);
        build_rustls_config(&HostPort::new("a", 5000), &system, &a).unwrap();

        // a .key without .cert is refused
        std::fs::create_dir(dir.path().join("c:1")).unwrap();
        std::fs::write(dir.path().join("c:1/x.key"), cl.signing_key.serialize_pem()).unwrap();
        let err = tc
            .host_config(&HostPort::new("c", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing client certificate"), "{err}");
    }

    #[test]
    fn the_fix_names_the_hosts_directory_in_use() {
        let mut f = failure(
            &wrapped(CertificateError::UnknownIssuer, chain(false, false, 1)),
            Role::Registry,
        );
        f.hosts_dir = Some(PathBuf::from("/srv/berth/hosts"));
        let hint = f.hint();
        assert!(
            hint.contains(
                "`berth trust add 127.0.0.2:5001 --hosts-dir /srv/berth/hosts --ca-file CA.pem`"
            ),
            "{hint}"
        );
        assert!(
            hint.contains("/srv/berth/hosts/127.0.0.2:5001/ca.crt"),
            "{hint}"
        );
        assert!(!hint.contains("<hosts-dir>"), "{hint}");
        let mut p = chain(false, false, 1);
        p.top_ca_sha256 = Some("ab".repeat(32));
        f.presented = Some(p);
        assert!(
            f.hint().contains(&format!(
                "`berth trust add 127.0.0.2:5001 --hosts-dir /srv/berth/hosts --fingerprint sha256:{}`",
                "ab".repeat(32)
            )),
            "{}",
            f.hint()
        );
        f.class = TlsErrorClass::ClientCertRequired;
        assert!(
            f.hint()
                .contains("/srv/berth/hosts/127.0.0.2:5001/client.cert"),
            "{}",
            f.hint()
        );
        // no hosts directory in use: say how to make one
        f.hosts_dir = None;
        f.class = TlsErrorClass::UnknownAuthority;
        assert!(f.hint().contains("--hosts-dir DIR"), "{}", f.hint());
        // the TrustConfig source records its directory for the message
        let tc = TrustConfig {
            hosts_dir: Some(PathBuf::from("/h")),
            ..TrustConfig::default()
        };
        assert_eq!(
            tc.host_config(&HostPort::new("r", 1)).unwrap().hosts_dir,
            Some(PathBuf::from("/h"))
        );
    }

    #[test]
    fn client_identity_load_checks_the_pair_and_accepts_a_combined_file() {
        let dir = tempfile::tempdir().unwrap();
        let cl = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, cl.cert.pem()).unwrap();
        std::fs::write(&key, cl.signing_key.serialize_pem()).unwrap();
        let id = ClientIdentity::load(&cert, Some(&key)).unwrap();
        assert_eq!(id.chain().len(), 1);
        assert!(!format!("{id:?}").contains("PRIVATE KEY"));

        // containerd's single-file form: certificate and key in one file
        let both = dir.path().join("both.pem");
        std::fs::write(
            &both,
            format!("{}{}", cl.cert.pem(), cl.signing_key.serialize_pem()),
        )
        .unwrap();
        let id = ClientIdentity::load(&both, None).unwrap();
        assert_eq!(id.key_path, both);

        // a key of another certificate: refused, naming both files, no key material
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let wrong = dir.path().join("wrong.pem");
        let secret = other.signing_key.serialize_pem();
        std::fs::write(&wrong, &secret).unwrap();
        let e = ClientIdentity::load(&cert, Some(&wrong))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.pem") && e.contains("wrong.pem"), "{e}");
        assert!(e.contains("do not form a usable pair"), "{e}");
        assert!(!e.contains(secret.lines().nth(1).unwrap()), "{e}");

        // not a key, not a certificate, missing files
        let e = ClientIdentity::load(&cert, Some(&cert))
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no PEM private key"), "{e}");
        let e = ClientIdentity::load(&key, Some(&key))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("client certificate file") && e.contains("k.pem"),
            "{e}"
        );
        let e = ClientIdentity::load(&dir.path().join("nope.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn unreadable_or_empty_ca_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not a cert").unwrap();
        let err = load_certs(&p).unwrap_err().to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
        let err = load_certs(&dir.path().join("nope.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}
