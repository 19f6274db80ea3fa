//! `berth trust fetch`: connect to one host:port, record the certificate chain it presents and
//! judge it against the trust that host would get from the client (system roots + that host's CAs
//! + its client certificate), in words a person understands.
//!
//! It owns the chain report ([`ChainReport`], one [`CertInfo`] per presented certificate with its
//! SHA-256 fingerprint) and the handshake probe. The verdict is never computed here: the probe
//! wraps the host's real verifier from [`crate::tls::build_verifier`] in a recorder that only
//! copies the presented chain before delegating, and a failure is classified by
//! [`crate::tls::classify_rustls`] like any failed pull. It never trusts, saves or pins anything
//! (no trust on first use), never sends a credential (the only request is a bare `GET /v2/`, sent
//! to surface a post-handshake "client certificate required" alert), and never falls back to
//! plain http.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Client, ClientConfig};
use crate::error::{RegistryError, Role};
use crate::origin::HostPort;
use crate::tls::{
    HostConfig, SystemRoots, TlsErrorClass, TlsFailure, build_rustls_config_with_verifier,
    build_verifier, load_system_roots, sha256_fingerprint, tls_failure,
};

/// One presented certificate, as a person inspects it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number (colon-separated hex).
    pub serial: String,
    /// Validity start, RFC 3339 UTC.
    pub not_before: String,
    /// Validity end, RFC 3339 UTC.
    pub not_after: String,
    /// Subject alternative names (DNS names and IP addresses).
    pub sans: Vec<String>,
    /// `RSA 2048`, `ECDSA P-256`, `Ed25519`, ...
    pub key_type: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// Issuer equals subject.
    pub self_signed: bool,
    /// The certificate in PEM (public data; for pinning after an out-of-band fingerprint check).
    pub pem: String,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, c) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate cannot be parsed: {e}"))?;
        let mut sans = Vec::new();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            _ => None,
                        };
                        sans.extend(ip.map(|i| i.to_string()));
                    }
                    _ => {}
                }
            }
        }
        let spki = c.public_key();
        let key_type = if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 {
            "Ed25519".to_string()
        } else {
            match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(k)) => {
                    format!("RSA {}", k.key_size())
                }
                Ok(x509_parser::public_key::PublicKey::EC(k)) => match k.key_size() {
                    256 => "ECDSA P-256".to_string(),
                    384 => "ECDSA P-384".to_string(),
                    521 | 528 => "ECDSA P-521".to_string(),
                    n => format!("ECDSA ({n} bits)"),
                },
                Ok(other) => format!("{} bits ({})", other.key_size(), spki.algorithm.algorithm),
                Err(_) => format!("unknown ({})", spki.algorithm.algorithm),
            }
        };
        let pem = {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                s.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
                s.push('\n');
            }
            s.push_str("-----END CERTIFICATE-----\n");
            s
        };
        Ok(CertInfo {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            serial: c.raw_serial_as_string(),
            not_before: rfc3339(c.validity().not_before.timestamp()),
            not_after: rfc3339(c.validity().not_after.timestamp()),
            sans,
            key_type,
            sha256: sha256_fingerprint(der),
            is_ca: c.is_ca(),
            self_signed: c.subject().as_raw() == c.issuer().as_raw(),
            pem,
        })
    }

    /// `sha256:<hex>`, the form `berth trust add --fingerprint` takes.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", self.sha256)
    }
}

fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{ts}"))
}

/// The judgement of a presented chain against the host's current trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The chain verifies for this host name and the handshake (and a first request) succeeded.
    Ok,
    /// The handshake failed for this reason.
    Failed(TlsErrorClass),
}

impl Verdict {
    /// `ok`, `unknown_authority`, `incomplete_chain`, `expired`, `name_mismatch`, ...
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed(c) => c.code(),
        }
    }

    /// The verdict in plain words.
    pub fn summary(self) -> &'static str {
        match self {
            Verdict::Ok => "ok: the chain is trusted for this host and the TLS handshake succeeded",
            Verdict::Failed(c) => c.summary(),
        }
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

fn host_string<S: serde::Serializer>(h: &HostPort, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}

fn failure_string<S: serde::Serializer>(f: &Option<TlsFailure>, s: S) -> Result<S::Ok, S::Error> {
    match f {
        Some(f) => s.collect_str(f),
        None => s.serialize_none(),
    }
}

/// What `berth trust fetch` shows.
#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    /// The host:port connected to.
    #[serde(serialize_with = "host_string")]
    pub host: HostPort,
    /// The certificates the server presented, leaf first, in the order sent.
    pub presented: Vec<CertInfo>,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict in words, plus the verifier's own wording when it failed.
    pub detail: String,
    /// Negotiated protocol version (`TLSv1_3`), when the handshake completed.
    pub protocol: Option<String>,
    /// Trust sources consulted for this host (system roots, files, folders).
    pub sources: Vec<String>,
    /// A client certificate is configured for this host.
    pub client_certificate: bool,
    /// What to do, when the verdict is not ok.
    pub fix: Option<String>,
    /// The full classified failure, rendered as a pull would report it.
    #[serde(serialize_with = "failure_string")]
    pub failure: Option<TlsFailure>,
}

impl ChainReport {
    /// The presented certificate to trust for this host, if the server sent a CA: the last CA
    /// certificate in the presented chain.
    pub fn ca_to_trust(&self) -> Option<&CertInfo> {
        self.presented.iter().rev().find(|c| c.is_ca)
    }
}

/// Wraps the host's verifier and copies the presented chain before delegating every decision.
#[derive(Debug)]
struct ChainRecorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let mut seen = self.seen.lock().expect("chain recorder");
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Fetches and judges the chain of `host` with the trust `cfg` gives it (system roots are loaded
/// for this call). A host that cannot be reached is an error; a chain that is not trusted is a
/// report with a failed verdict.
pub async fn fetch_chain(
    host: &HostPort,
    cfg: &ClientConfig,
) -> Result<ChainReport, RegistryError> {
    let hc = cfg.hosts.host_config(host)?;
    let (system, desc) = load_system_roots(cfg.system_roots);
    probe(
        host,
        Role::Registry,
        &hc,
        &system,
        &desc,
        cfg.connect_timeout,
    )
    .await
}

impl Client {
    /// Fetches and judges the chain of `host` with the trust this client uses for it right now;
    /// `role` is how a failure names the host (registry, token realm, redirect target).
    pub async fn fetch_chain(
        &self,
        host: &HostPort,
        role: Role,
    ) -> Result<ChainReport, RegistryError> {
        let hc = self.host_config(host)?;
        let timeout = self.config().connect_timeout;
        probe(
            host,
            role,
            &hc,
            self.system_store(),
            self.system_roots(),
            timeout,
        )
        .await
    }
}

async fn probe(
    host: &HostPort,
    role: Role,
    hc: &HostConfig,
    system: &rustls::RootCertStore,
    system_desc: &SystemRoots,
    timeout: Duration,
) -> Result<ChainReport, RegistryError> {
    if hc.plain_http {
        return Err(RegistryError::Config(format!(
            "{host} is configured as a plain-http host: it presents no certificate chain; remove it from the plain-http hosts to use TLS"
        )));
    }
    // the chain is judged against the real trust even where `skip_verify` is configured, so
    // `berth trust fetch` says whether trusting a CA would let verification be switched back on
    let judged = HostConfig {
        skip_verify: false,
        ..hc.clone()
    };
    let recorder = Arc::new(ChainRecorder {
        inner: build_verifier(host, system, &judged)?,
        seen: Mutex::new(Vec::new()),
    });
    let mut tls = build_rustls_config_with_verifier(host, hc, recorder.clone())?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.host().to_string()).map_err(|e| {
        RegistryError::Config(format!("{host} is not a valid TLS server name: {e}"))
    })?;
    let network = |request: &str, cause: String| RegistryError::Network {
        host: host.clone(),
        role,
        request: request.to_string(),
        cause,
    };
    let tcp = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.host(), host.port())),
    )
    .await
    .map_err(|_| {
        network(
            "TCP connect",
            format!("no answer within {}s", timeout.as_secs()),
        )
    })?
    .map_err(|e| network("TCP connect", e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let outcome: Result<String, std::io::Error> = tokio::time::timeout(timeout, async {
        let mut s = connector.connect(name, tcp).await?;
        let protocol = s
            .get_ref()
            .1
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        // TLS 1.3 servers refuse a missing client certificate only after the handshake: one bare
        // request (no credentials) makes that alert visible
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-trust-fetch\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 4096];
        let mut got = 0usize;
        loop {
            let n = s.read(&mut buf[got..]).await?;
            got += n;
            if n == 0 || got == buf.len() || buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok(protocol)
    })
    .await
    .unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no TLS answer within {}s", timeout.as_secs()),
        ))
    });
    let presented_der = std::mem::take(&mut *recorder.seen.lock().expect("chain recorder"));
    let presented = presented_der
        .iter()
        .map(|d| {
            CertInfo::from_der(d.as_ref()).map_err(|e| RegistryError::Protocol {
                host: host.clone(),
                role,
                reason: format!("the server presented a {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sources = vec![system_desc.to_string()];
    sources.extend(hc.sources.iter().cloned());
    let client_certificate = hc.client_identity.is_some();
    match outcome {
        Ok(protocol) => Ok(ChainReport {
            host: host.clone(),
            presented,
            verdict: Verdict::Ok,
            detail: Verdict::Ok.summary().to_string(),
            protocol: Some(protocol),
            sources,
            client_certificate,
            fix: None,
            failure: None,
        }),
        Err(e) => match tls_failure(&e, host, role, hc, system_desc) {
            Some(f) => Ok(ChainReport {
                host: host.clone(),
                presented,
                verdict: Verdict::Failed(f.class),
                detail: format!("{}: {}", f.class.summary(), f.detail),
                protocol: None,
                sources,
                client_certificate,
                fix: Some(f.hint()),
                failure: Some(f),
            }),
            None => Err(network(
                "TLS handshake",
                if presented.is_empty() {
                    format!(
                        "{e} (the connection closed before a certificate arrived; is this port serving TLS?)"
                    )
                } else {
                    e.to_string()
                },
            )),
        },
    }
}
