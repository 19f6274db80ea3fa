//! TLS material of one server data directory: a self-signed CA (kept for the life of the data dir, since every
//! kubeconfig embeds it), a serving certificate signed by it for 127.0.0.1, localhost and the listen host, and the
//! client certificate (CN `berth:apiserver`, client auth only) the server presents to node agents for `pods/log`. The
//! serving certificate is re-issued when the wanted SAN set changes (for example a new `--listen` host). Private
//! keys are written with mode 0600 and never logged; this module must never hand a key to anything but rustls.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::files::{write_private, write_public};

/// Failures while creating or loading the server's certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "failed to read {path}: {source}; check the data directory permissions or remove the pki directory to regenerate it"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to generate certificate {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error(
        "{path} is not a valid PEM {what}: {detail}; remove it to regenerate the server certificates"
    )]
    Parse {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("failed to build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Paths of the PEM files under `<data-dir>/pki`.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub serving_sans: PathBuf,
    /// Client certificate the API server presents to node agents (`pods/log`), CN `berth:apiserver`.
    pub agent_client_cert: PathBuf,
    pub agent_client_key: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("pki");
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            serving_sans: dir.join("serving.sans"),
            agent_client_cert: dir.join("agent-client.crt"),
            agent_client_key: dir.join("agent-client.key"),
            dir,
        }
    }
}

/// The loaded certificates: the CA certificate PEM (for kubeconfigs) and the serving chain and key.
pub struct Pki {
    pub ca_pem: String,
    serving_chain: Vec<CertificateDer<'static>>,
    serving_key: PrivateKeyDer<'static>,
    agent_client_chain: Vec<CertificateDer<'static>>,
    agent_client_key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("serving_chain_len", &self.serving_chain.len())
            .finish_non_exhaustive()
    }
}

/// SANs of the serving certificate: always 127.0.0.1, ::1 and localhost, plus the listen host when it is a
/// concrete address (not 0.0.0.0 / ::).
pub fn serving_sans(listen_host: IpAddr) -> Vec<String> {
    let mut sans = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    if !listen_host.is_unspecified() {
        let host = listen_host.to_string();
        if !sans.contains(&host) {
            sans.push(host);
        }
    }
    sans
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn new_ca() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "ca key",
        source,
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "berth-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time_now_minus_hour();
    params.not_after = params.not_before + std::time::Duration::from_secs(10 * 365 * 24 * 3600);
    let cert = params
        .self_signed(&key)
        .map_err(|source| PkiError::Generate { what: "ca", source })?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn time_now_minus_hour() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::hours(1)
}

/// Ensures the CA and a serving certificate for `sans` exist under `paths`, creating what is missing, and loads
/// them.
pub fn ensure(paths: &PkiPaths, sans: &[String]) -> Result<Pki, PkiError> {
    fs::create_dir_all(&paths.dir).map_err(|source| PkiError::Write {
        path: paths.dir.clone(),
        source,
    })?;
    if !paths.ca_cert.exists() || !paths.ca_key.exists() {
        let (cert, key) = new_ca()?;
        write_private(&paths.ca_key, key.as_bytes()).map_err(|source| PkiError::Write {
            path: paths.ca_key.clone(),
            source,
        })?;
        write_public(&paths.ca_cert, cert.as_bytes()).map_err(|source| PkiError::Write {
            path: paths.ca_cert.clone(),
            source,
        })?;
        // A new CA invalidates any certificate signed by an older one.
        let _ = fs::remove_file(&paths.serving_cert);
        let _ = fs::remove_file(&paths.agent_client_cert);
        tracing::info!(path = %paths.ca_cert.display(), "generated a new server CA");
    }
    let ca_pem = read(&paths.ca_cert)?;
    let wanted_sans = sans.join("\n");
    let current_sans = fs::read_to_string(&paths.serving_sans).unwrap_or_default();
    if !paths.serving_cert.exists() || !paths.serving_key.exists() || current_sans != wanted_sans {
        let issuer = ca_issuer(paths, &ca_pem)?;
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "serving key",
            source,
        })?;
        let mut params =
            CertificateParams::new(sans.to_vec()).map_err(|source| PkiError::Generate {
                what: "serving",
                source,
            })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "berth-apiserver");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time_now_minus_hour();
        params.not_after = params.not_before + std::time::Duration::from_secs(2 * 365 * 24 * 3600);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|source| PkiError::Generate {
                what: "serving",
                source,
            })?;
        write_private(&paths.serving_key, key.serialize_pem().as_bytes()).map_err(|source| {
            PkiError::Write {
                path: paths.serving_key.clone(),
                source,
            }
        })?;
        write_public(&paths.serving_cert, cert.pem().as_bytes()).map_err(|source| {
            PkiError::Write {
                path: paths.serving_cert.clone(),
                source,
            }
        })?;
        write_public(&paths.serving_sans, wanted_sans.as_bytes()).map_err(|source| {
            PkiError::Write {
                path: paths.serving_sans.clone(),
                source,
            }
        })?;
        tracing::info!(sans = %sans.join(","), "issued a serving certificate");
    }
    if !paths.agent_client_cert.exists() || !paths.agent_client_key.exists() {
        issue_agent_client(paths, &ca_pem)?;
    }
    let cert_pem = read(&paths.serving_cert)?;
    let mut serving_chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Parse {
            path: paths.serving_cert.clone(),
            what: "certificate",
            detail: e.to_string(),
        })?;
    serving_chain.extend(
        CertificateDer::pem_slice_iter(ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::Parse {
                path: paths.ca_cert.clone(),
                what: "certificate",
                detail: e.to_string(),
            })?,
    );
    let key_pem = read(&paths.serving_key)?;
    let serving_key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| PkiError::Parse {
            path: paths.serving_key.clone(),
            what: "private key",
            detail: e.to_string(),
        })?;
    let client_pem = read(&paths.agent_client_cert)?;
    let agent_client_chain = CertificateDer::pem_slice_iter(client_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Parse {
            path: paths.agent_client_cert.clone(),
            what: "certificate",
            detail: e.to_string(),
        })?;
    let client_key_pem = read(&paths.agent_client_key)?;
    let agent_client_key =
        PrivateKeyDer::from_pem_slice(client_key_pem.as_bytes()).map_err(|e| PkiError::Parse {
            path: paths.agent_client_key.clone(),
            what: "private key",
            detail: e.to_string(),
        })?;
    Ok(Pki {
        ca_pem,
        serving_chain,
        serving_key,
        agent_client_chain,
        agent_client_key,
    })
}

/// The CN node agents require of the API server's client certificate.
pub const AGENT_CLIENT_CN: &str = "berth:apiserver";

fn ca_issuer(paths: &PkiPaths, ca_pem: &str) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let ca_key_pem = read(&paths.ca_key)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::Parse {
        path: paths.ca_key.clone(),
        what: "private key",
        detail: e.to_string(),
    })?;
    Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(|e| PkiError::Parse {
        path: paths.ca_cert.clone(),
        what: "certificate",
        detail: e.to_string(),
    })
}

/// Issues `agent-client.crt|key`: CN `berth:apiserver`, client auth only, signed by the cluster CA.
fn issue_agent_client(paths: &PkiPaths, ca_pem: &str) -> Result<(), PkiError> {
    let issuer = ca_issuer(paths, ca_pem)?;
    let key = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "agent client key",
        source,
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, AGENT_CLIENT_CN);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time_now_minus_hour();
    params.not_after = params.not_before + std::time::Duration::from_secs(2 * 365 * 24 * 3600);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| PkiError::Generate {
            what: "agent client",
            source,
        })?;
    write_private(&paths.agent_client_key, key.serialize_pem().as_bytes()).map_err(|source| {
        PkiError::Write {
            path: paths.agent_client_key.clone(),
            source,
        }
    })?;
    write_public(&paths.agent_client_cert, cert.pem().as_bytes()).map_err(|source| {
        PkiError::Write {
            path: paths.agent_client_cert.clone(),
            source,
        }
    })?;
    tracing::info!(
        cn = AGENT_CLIENT_CN,
        "issued the node agent client certificate"
    );
    Ok(())
}

impl Pki {
    /// The client identity for connections to node agents: the certificate chain and a copy of its key.
    pub(crate) fn agent_client_identity(
        &self,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            self.agent_client_chain.clone(),
            self.agent_client_key.clone_key(),
        )
    }

    /// A rustls server configuration offering HTTP/2 and HTTP/1.1 through ALPN.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.serving_chain.clone(), self.serving_key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
