//! Test PKI built with `rcgen`: a root CA, an intermediate CA, server and client leaves, and the bad cases a
//! registry client must refuse (expired, not yet valid, wrong SAN, self-signed leaf, chain without its
//! intermediate). It owns certificate generation, PEM/DER accessors, SHA-256 fingerprints and writing
//! material to files; it must never be used outside tests (keys are generated fast, kept in memory, and the
//! validity windows are tuned for tests), and never prints a private key (`Debug` redacts it).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Lowercase hex SHA-256 of a DER certificate (what `openssl x509 -fingerprint -sha256` shows, without
/// colons and in lowercase).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Colon-separated uppercase SHA-256 fingerprint, the form `openssl x509 -fingerprint -sha256` prints.
pub fn fingerprint_sha256_colons(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The validity window of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid from one hour ago for 30 days.
    Current,
    /// Valid from 30 days ago until 1 day ago.
    Expired,
    /// Valid from 1 day from now for 30 days.
    NotYetValid,
    /// An explicit window.
    Window {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
}

impl Validity {
    fn window(self) -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        match self {
            Validity::Current => (now - Duration::hours(1), now + Duration::days(30)),
            Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(1), now + Duration::days(31)),
            Validity::Window {
                not_before,
                not_after,
            } => (not_before, not_after),
        }
    }
}

/// What a leaf certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (`serverAuth`).
    Server,
    /// TLS client for mTLS (`clientAuth`).
    Client,
    /// Both; also what a token-signing certificate uses.
    ServerAndClient,
}

/// A request for a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Common name of the subject.
    pub common_name: String,
    /// Subject alternative names: IP literals become IP SANs, everything else DNS SANs.
    pub sans: Vec<String>,
    /// Validity window.
    pub validity: Validity,
    /// Extended key usage.
    pub usage: Usage,
}

impl LeafSpec {
    /// A currently valid server certificate for the given SANs.
    pub fn server<S: Into<String>>(sans: impl IntoIterator<Item = S>) -> Self {
        let sans: Vec<String> = sans.into_iter().map(Into::into).collect();
        LeafSpec {
            common_name: sans
                .first()
                .cloned()
                .unwrap_or_else(|| "testkit server".into()),
            sans,
            validity: Validity::Current,
            usage: Usage::Server,
        }
    }

    /// A currently valid client certificate (mTLS) with the given common name and no SANs.
    pub fn client(common_name: impl Into<String>) -> Self {
        LeafSpec {
            common_name: common_name.into(),
            sans: Vec::new(),
            validity: Validity::Current,
            usage: Usage::Client,
        }
    }

    /// The same request with another validity window.
    pub fn with_validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }
}

fn san(value: &str) -> Result<SanType> {
    Ok(match value.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            value
                .to_string()
                .try_into()
                .map_err(Error::pki(format!("subject alternative name {value:?}")))?,
        ),
    })
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "berth testkit");
    dn
}

fn leaf_params(spec: &LeafSpec) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&spec.common_name);
    params.subject_alt_names = spec.sans.iter().map(|s| san(s)).collect::<Result<_>>()?;
    let (not_before, not_after) = spec.validity.window();
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match spec.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn ca_params(common_name: &str, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    let (not_before, not_after) = validity.window();
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A certificate authority that can issue intermediates and leaves.
pub struct Ca {
    name: String,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    /// Certificates between this CA and its root (empty for a root), nearest first.
    chain_above: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("name", &self.name)
            .field("fingerprint_sha256", &self.fingerprint_sha256())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// A new self-signed root CA valid from an hour ago for 30 days.
    pub fn root(common_name: &str) -> Result<Ca> {
        let key = KeyPair::generate().map_err(Error::pki("root ca key generation"))?;
        let params = ca_params(common_name, Validity::Current);
        let cert = params
            .self_signed(&key)
            .map_err(Error::pki(format!("self-signing root ca {common_name:?}")))?;
        Ok(Ca {
            name: common_name.to_string(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            chain_above: Vec::new(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A new intermediate CA issued by this CA.
    pub fn intermediate(&self, common_name: &str) -> Result<Ca> {
        let key = KeyPair::generate().map_err(Error::pki("intermediate ca key generation"))?;
        let params = ca_params(common_name, Validity::Current);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(Error::pki(format!(
                "issuing intermediate ca {common_name:?}"
            )))?;
        let mut chain_above = vec![self.cert_der.clone()];
        chain_above.extend(self.chain_above.iter().cloned());
        Ok(Ca {
            name: common_name.to_string(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            chain_above,
            issuer: Issuer::new(params, key),
        })
    }

    fn is_root(&self) -> bool {
        self.chain_above.is_empty()
    }

    /// Issues a leaf. The leaf's chain holds every intermediate up to (not including) the root.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf> {
        let key = KeyPair::generate().map_err(Error::pki("leaf key generation"))?;
        let params = leaf_params(spec)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(Error::pki(format!(
                "issuing leaf {:?} from {:?}",
                spec.common_name, self.name
            )))?;
        let mut intermediates = Vec::new();
        if !self.is_root() {
            intermediates.push(self.cert_der.clone());
            // the root is the last element of chain_above and is never sent
            let above = &self.chain_above[..self.chain_above.len() - 1];
            intermediates.extend(above.iter().cloned());
        }
        Ok(Leaf::new(cert.der().clone(), intermediates, &key))
    }

    /// Common name of this CA.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 fingerprint (lowercase hex) of the CA certificate.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint_sha256(&self.cert_der)
    }

    /// Writes the CA certificate to `dir/<file_name>` and returns the path.
    pub fn write_to(&self, dir: &Path, file_name: &str) -> Result<PathBuf> {
        write_file(dir, file_name, self.cert_pem.as_bytes(), 0o644)
    }
}

/// A leaf certificate, its private key and the intermediates a server sends with it.
#[derive(Clone)]
pub struct Leaf {
    cert_der: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    key_der: Arc<Vec<u8>>,
    key_pem: Secret,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("fingerprint_sha256", &self.fingerprint_sha256())
            .field("intermediates", &self.intermediates.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl Leaf {
    fn new(
        cert_der: CertificateDer<'static>,
        intermediates: Vec<CertificateDer<'static>>,
        key: &KeyPair,
    ) -> Leaf {
        Leaf {
            cert_der,
            intermediates,
            key_der: Arc::new(key.serialize_der()),
            key_pem: Secret::new(key.serialize_pem()),
        }
    }

    /// A self-signed leaf (not a CA, no separate issuer) for the given spec.
    pub fn self_signed(spec: &LeafSpec) -> Result<Leaf> {
        let key = KeyPair::generate().map_err(Error::pki("self-signed leaf key generation"))?;
        let params = leaf_params(spec)?;
        let cert = params.self_signed(&key).map_err(Error::pki(format!(
            "self-signing leaf {:?}",
            spec.common_name
        )))?;
        Ok(Leaf::new(cert.der().clone(), Vec::new(), &key))
    }

    /// The same key and certificate, but a server using it sends only the leaf (the intermediate is omitted).
    pub fn without_intermediates(&self) -> Leaf {
        Leaf {
            intermediates: Vec::new(),
            ..self.clone()
        }
    }

    /// The leaf certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The leaf certificate alone, PEM.
    pub fn cert_pem(&self) -> String {
        pem_of(&self.cert_der)
    }

    /// Leaf followed by the intermediates, PEM: what a server presents.
    pub fn chain_pem(&self) -> String {
        let mut out = self.cert_pem();
        for c in &self.intermediates {
            out.push_str(&pem_of(c));
        }
        out
    }

    /// Leaf followed by the intermediates, DER.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        let mut out = vec![self.cert_der.clone()];
        out.extend(self.intermediates.iter().cloned());
        out
    }

    /// The private key (PKCS#8 PEM), wrapped so it cannot be printed by accident.
    pub fn key_pem(&self) -> &Secret {
        &self.key_pem
    }

    /// The private key as PKCS#8 DER for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.as_ref().clone()))
    }

    /// SHA-256 fingerprint (lowercase hex) of the leaf certificate.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint_sha256(&self.cert_der)
    }

    /// Writes `<stem>.crt` (chain PEM) and `<stem>.key` (0600) into `dir`.
    pub fn write_to(&self, dir: &Path, stem: &str) -> Result<LeafFiles> {
        let cert = write_file(
            dir,
            &format!("{stem}.crt"),
            self.chain_pem().as_bytes(),
            0o644,
        )?;
        let key = write_file(
            dir,
            &format!("{stem}.key"),
            self.key_pem.expose().as_bytes(),
            0o600,
        )?;
        Ok(LeafFiles { cert, key })
    }

    /// A rustls server configuration presenting this leaf's chain (HTTP/1.1 only), ring provider.
    pub fn rustls_server_config(&self) -> Result<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls("server config", e))?
        .with_no_client_auth()
        .with_single_cert(self.chain_der(), self.key_der())
        .map_err(|e| Error::tls("server certificate", e))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// Paths written by [`Leaf::write_to`].
#[derive(Debug, Clone)]
pub struct LeafFiles {
    /// Chain PEM (leaf first).
    pub cert: PathBuf,
    /// PKCS#8 private key PEM, mode 0600.
    pub key: PathBuf,
}

pub(crate) fn write_file(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(Error::io("creating directory", dir))?;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .map_err(Error::io("creating", &path))?;
    f.write_all(data).map_err(Error::io("writing", &path))?;
    Ok(path)
}

/// The standard test PKI: root CA -> intermediate CA -> leaves, plus an unrelated CA for "another CA" cases.
#[derive(Debug)]
pub struct TestPki {
    /// The trust anchor clients are given.
    pub root: Ca,
    /// The intermediate that issues every leaf.
    pub intermediate: Ca,
}

impl TestPki {
    /// Generates a root and an intermediate.
    pub fn new() -> Result<TestPki> {
        Self::named("berth testkit")
    }

    /// Generates a root and an intermediate whose names start with `prefix` (to tell several PKIs apart).
    pub fn named(prefix: &str) -> Result<TestPki> {
        let root = Ca::root(&format!("{prefix} root ca"))?;
        let intermediate = root.intermediate(&format!("{prefix} intermediate ca"))?;
        Ok(TestPki { root, intermediate })
    }

    /// The root CA PEM: what a client trusts.
    pub fn ca_pem(&self) -> &str {
        self.root.cert_pem()
    }

    /// A valid server leaf for the SANs (e.g. `["127.0.0.1", "localhost"]`), chain includes the intermediate.
    pub fn server<S: Into<String>>(&self, sans: impl IntoIterator<Item = S>) -> Result<Leaf> {
        self.intermediate.issue(&LeafSpec::server(sans))
    }

    /// A server leaf that expired yesterday.
    pub fn expired_server<S: Into<String>>(
        &self,
        sans: impl IntoIterator<Item = S>,
    ) -> Result<Leaf> {
        self.intermediate
            .issue(&LeafSpec::server(sans).with_validity(Validity::Expired))
    }

    /// A server leaf valid only from tomorrow.
    pub fn not_yet_valid_server<S: Into<String>>(
        &self,
        sans: impl IntoIterator<Item = S>,
    ) -> Result<Leaf> {
        self.intermediate
            .issue(&LeafSpec::server(sans).with_validity(Validity::NotYetValid))
    }

    /// A valid server leaf whose only SAN is `wrong.invalid` (wrong for any loopback address).
    pub fn wrong_san_server(&self) -> Result<Leaf> {
        self.intermediate
            .issue(&LeafSpec::server(["wrong.invalid"]))
    }

    /// A self-signed server leaf for the SANs (not issued by the PKI).
    pub fn self_signed_server<S: Into<String>>(
        &self,
        sans: impl IntoIterator<Item = S>,
    ) -> Result<Leaf> {
        Leaf::self_signed(&LeafSpec::server(sans))
    }

    /// A valid server leaf that a server presents without its intermediate (incomplete chain).
    pub fn server_missing_intermediate<S: Into<String>>(
        &self,
        sans: impl IntoIterator<Item = S>,
    ) -> Result<Leaf> {
        Ok(self.server(sans)?.without_intermediates())
    }

    /// A client certificate for mTLS with the given common name.
    pub fn client(&self, common_name: &str) -> Result<Leaf> {
        self.intermediate.issue(&LeafSpec::client(common_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(pki: &TestPki) -> Arc<rustls::RootCertStore> {
        let mut store = rustls::RootCertStore::empty();
        store.add(pki.root.cert_der().clone()).unwrap();
        Arc::new(store)
    }

    fn verify(pki: &TestPki, leaf: &Leaf, name: &str) -> std::result::Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(pki), provider)
                .build()
                .unwrap();
        let chain = leaf.chain_der();
        let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &server_name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn valid_server_leaf_chains_to_root_through_intermediate() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.server(["127.0.0.1", "localhost"]).unwrap();
        assert_eq!(leaf.chain_der().len(), 2);
        verify(&pki, &leaf, "127.0.0.1").unwrap();
        verify(&pki, &leaf, "localhost").unwrap();
    }

    #[test]
    fn bad_leaves_fail_verification_for_their_reason() {
        let pki = TestPki::new().unwrap();
        let expired = verify(
            &pki,
            &pki.expired_server(["127.0.0.1"]).unwrap(),
            "127.0.0.1",
        )
        .unwrap_err();
        assert!(
            matches!(
                expired,
                rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })
            ),
            "{expired:?}"
        );
        let future = verify(
            &pki,
            &pki.not_yet_valid_server(["127.0.0.1"]).unwrap(),
            "127.0.0.1",
        )
        .unwrap_err();
        assert!(
            matches!(
                future,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidYetContext { .. }
                )
            ),
            "{future:?}"
        );
        let wrong = verify(&pki, &pki.wrong_san_server().unwrap(), "127.0.0.1").unwrap_err();
        assert!(
            matches!(
                wrong,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{wrong:?}"
        );
        let missing = verify(
            &pki,
            &pki.server_missing_intermediate(["127.0.0.1"]).unwrap(),
            "127.0.0.1",
        )
        .unwrap_err();
        assert_eq!(
            missing,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
        let selfsigned = verify(
            &pki,
            &pki.self_signed_server(["127.0.0.1"]).unwrap(),
            "127.0.0.1",
        )
        .unwrap_err();
        assert_eq!(
            selfsigned,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        let pki = TestPki::new().unwrap();
        let fp = pki.root.fingerprint_sha256();
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, hex::encode(Sha256::digest(pki.root.cert_der())));
        let colons = fingerprint_sha256_colons(pki.root.cert_der());
        assert_eq!(colons.replace(':', "").to_lowercase(), fp);
    }

    #[test]
    fn write_to_writes_chain_and_private_key_with_0600() {
        use std::os::unix::fs::PermissionsExt;
        let pki = TestPki::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = pki
            .server(["127.0.0.1"])
            .unwrap()
            .write_to(dir.path(), "server")
            .unwrap();
        let chain = std::fs::read_to_string(&files.cert).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            std::fs::read_to_string(&files.key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }

    #[test]
    fn leaf_debug_redacts_the_key() {
        let pki = TestPki::new().unwrap();
        let leaf = pki.client("alice").unwrap();
        let shown = format!("{leaf:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
