//! Connection settings of the etcd backend: the `etcd://HOST:PORT[,HOST:PORT...]` /
//! `etcds://...` datastore URL, TLS files (CA, client certificate and key), the key prefix and
//! timeouts. It owns parsing and validating them and loading the TLS files into the client's
//! options; it must never open a connection, and never put key material in an error or `Debug`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::EtcdError;

/// TLS settings for `etcds://` endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM bundle of the CAs that sign the etcd members' serving certificates.
    pub ca_file: PathBuf,
    /// PEM client certificate presented to etcd (`--client-cert-auth`); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// Everything needed to reach an etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `HOST:PORT` of each member's client URL.
    pub endpoints: Vec<String>,
    /// TLS settings; required exactly when the URL scheme was `etcds://`.
    pub tls: Option<EtcdTls>,
    /// Prepended to every storage key in etcd (see the crate documentation). Empty by default:
    /// berth's keys already start with `/registry/`.
    pub key_prefix: String,
    /// How long to wait for a first answer from any endpoint.
    pub dial_timeout: Duration,
    /// Upper bound of one storage call, retries across members included.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Parses a datastore URL: `etcd://HOST:PORT[,HOST:PORT...]` (plain gRPC) or
    /// `etcds://HOST:PORT[,...]` (TLS; set [`EtcdConfig::tls`] before connecting).
    pub fn from_url(url: &str) -> Result<Self, EtcdError> {
        let invalid = |reason: String| EtcdError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else {
            return Err(invalid(
                "the scheme must be etcd:// (plain) or etcds:// (TLS)".into(),
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(invalid("no endpoint given; write etcd://HOST:PORT".into()));
        }
        let mut endpoints = Vec::new();
        for endpoint in rest.split(',') {
            endpoints.push(parse_endpoint(endpoint).map_err(invalid)?);
        }
        Ok(EtcdConfig {
            endpoints,
            tls: tls.then(|| EtcdTls {
                ca_file: PathBuf::new(),
                cert_file: None,
                key_file: None,
            }),
            key_prefix: String::new(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        })
    }

    /// Sets the TLS files (the URL must have been `etcds://`).
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The endpoints as the user wrote them, for error messages: `etcd://a:1,b:2`.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", self.endpoints.join(","))
    }

    /// The endpoint URLs handed to the gRPC client.
    pub(crate) fn client_urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }

    /// Connection options for the client, loading the TLS files.
    pub(crate) fn connect_options(&self) -> Result<etcd_client::ConnectOptions, EtcdError> {
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &self.tls {
            if tls.ca_file.as_os_str().is_empty() {
                return Err(EtcdError::TlsConfig {
                    url: self.display_url(),
                    reason: "etcds:// needs a CA file (--etcd-cafile) that signs the members' certificates".into(),
                });
            }
            let ca = read_pem(&tls.ca_file, "CA bundle")?;
            let mut tls_options = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca));
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    let cert = read_pem(cert, "client certificate")?;
                    let key = read_pem(key, "client key")?;
                    tls_options = tls_options.identity(etcd_client::Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => {
                    return Err(EtcdError::TlsConfig {
                        url: self.display_url(),
                        reason:
                            "a client certificate needs both --etcd-certfile and --etcd-keyfile"
                                .into(),
                    });
                }
            }
            options = options.with_tls(tls_options);
        }
        Ok(options)
    }
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, EtcdError> {
    let bytes = std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(EtcdError::TlsFile {
            what,
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a PEM file"),
        });
    }
    Ok(bytes)
}

/// Validates one `HOST:PORT` (IPv6 as `[::1]:2379`).
fn parse_endpoint(endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() {
        return Err("empty endpoint between commas".into());
    }
    if endpoint.contains('/') || endpoint.contains('@') {
        return Err(format!(
            "endpoint {endpoint:?} must be HOST:PORT without path or user"
        ));
    }
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("endpoint {endpoint:?} must be [IPv6]:PORT"))?;
        (host, port)
    } else {
        endpoint.rsplit_once(':').ok_or_else(|| {
            format!("endpoint {endpoint:?} has no port; write HOST:PORT (etcd listens on 2379)")
        })?
    };
    if host.is_empty() || host.contains(':') && !endpoint.starts_with('[') {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(endpoint.to_owned()),
        _ => Err(format!(
            "endpoint {endpoint:?} has an invalid port {port:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_url_with_several_members_parses() {
        let c = EtcdConfig::from_url("etcd://127.0.0.1:2379,127.0.0.2:2379,[::1]:2379").unwrap();
        assert_eq!(
            c.endpoints,
            ["127.0.0.1:2379", "127.0.0.2:2379", "[::1]:2379"]
        );
        assert!(c.tls.is_none());
        assert_eq!(c.key_prefix, "");
        assert_eq!(
            c.client_urls(),
            [
                "http://127.0.0.1:2379",
                "http://127.0.0.2:2379",
                "http://[::1]:2379"
            ]
        );
        assert_eq!(
            c.display_url(),
            "etcd://127.0.0.1:2379,127.0.0.2:2379,[::1]:2379"
        );
    }

    #[test]
    fn tls_url_uses_https_and_requires_a_ca_file() {
        let c = EtcdConfig::from_url("etcds://etcd.example:2379").unwrap();
        assert_eq!(c.client_urls(), ["https://etcd.example:2379"]);
        let err = c.connect_options().unwrap_err().to_string();
        assert!(
            err.contains("etcds://etcd.example:2379") && err.contains("CA file"),
            "{err}"
        );
    }

    #[test]
    fn client_certificate_without_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let c = EtcdConfig::from_url("etcds://127.0.0.1:2379")
            .unwrap()
            .with_tls(EtcdTls {
                ca_file: ca,
                cert_file: Some(dir.path().join("client.pem")),
                key_file: None,
            });
        let err = c.connect_options().unwrap_err().to_string();
        assert!(err.contains("--etcd-keyfile"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let c = EtcdConfig::from_url("etcds://127.0.0.1:2379")
            .unwrap()
            .with_tls(EtcdTls {
                ca_file: "/nonexistent/etcd-ca.pem".into(),
                cert_file: None,
                key_file: None,
            });
        let err = c.connect_options().unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/etcd-ca.pem") && err.contains("CA bundle"),
            "{err}"
        );
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("http://127.0.0.1:2379", "scheme"),
            ("etcd://", "no endpoint"),
            ("etcd://127.0.0.1", "no port"),
            ("etcd://127.0.0.1:0", "invalid port"),
            ("etcd://127.0.0.1:x", "invalid port"),
            ("etcd://127.0.0.1:2379,", "empty endpoint"),
            ("etcd://127.0.0.1:2379/path", "without path"),
            ("etcd://user@127.0.0.1:2379", "without path or user"),
            ("etcd://:2379", "no valid host"),
        ] {
            let err = EtcdConfig::from_url(url).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains(url), "{url}: {err}");
        }
    }
}
