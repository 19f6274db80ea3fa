//! [`TrustSource`]: the per-host:port trust the command line hands the registry client. It layers a hosts
//! directory ([`Watched`], re-read when it changes, so `berth trust add` applies to a running pull or agent with
//! no restart), `--ca-file` bundles (trusted for every host, added to the system roots as before), and, for the
//! dry run of `berth trust add`, one candidate CA for exactly one host:port that is never written anywhere.
//!
//! It must never let a CA configured for one host:port reach another (the hosts directory keeps that rule; a
//! candidate applies to its own host:port only), never cache CA files across generations (the client rebuilds a
//! host's transport when [`HostConfigSource::generation`] moves) and never infer trust.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry::{HostConfig, HostConfigSource, HostPort, RegistryError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::DEFAULT_HOSTS_DIR;
use crate::error::HostsError;
use crate::watch::Watched;

/// The hosts directory to use: the one given, else [`DEFAULT_HOSTS_DIR`] when it exists, else none.
pub fn effective_hosts_dir(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(d) => Some(d.to_path_buf()),
        None => {
            let d = Path::new(DEFAULT_HOSTS_DIR);
            d.is_dir().then(|| d.to_path_buf())
        }
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    host: HostPort,
    label: String,
    certs: Vec<CertificateDer<'static>>,
}

/// Hosts directory + `--ca-file` + an optional unsaved candidate CA, as one [`HostConfigSource`].
#[derive(Debug, Clone, Default)]
pub struct TrustSource {
    hosts: Option<Arc<Watched>>,
    ca_files: Vec<PathBuf>,
    candidate: Option<Candidate>,
}

impl TrustSource {
    /// Trust from `hosts` (none: system roots and `--ca-file` only).
    pub fn new(hosts: Option<Arc<Watched>>) -> Self {
        Self {
            hosts,
            ..Self::default()
        }
    }

    /// Opens `dir` with [`Watched::open`] (a missing directory is empty and is picked up once it appears).
    pub fn open(dir: Option<&Path>) -> Result<Self, HostsError> {
        Ok(Self::new(match dir {
            Some(d) => Some(Arc::new(Watched::open(d)?)),
            None => None,
        }))
    }

    /// Adds CA bundles trusted for every host (`--ca-file`).
    pub fn with_ca_files(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        self.ca_files.extend(files);
        self
    }

    /// Adds the PEM certificates in `pem` as CAs for `host` only, shown as `label` among the trust sources.
    /// Nothing is written: this is how `berth trust add` checks a certificate before saving it.
    pub fn with_candidate(
        mut self,
        host: HostPort,
        label: impl Into<String>,
        pem: &[u8],
    ) -> Result<Self, HostsError> {
        let label = label.into();
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HostsError::Trust(format!("{label}: not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(HostsError::Trust(format!(
                "{label}: holds no PEM certificate"
            )));
        }
        self.candidate = Some(Candidate { host, label, certs });
        Ok(self)
    }

    /// The watched hosts directory, if any.
    pub fn watched(&self) -> Option<&Arc<Watched>> {
        self.hosts.as_ref()
    }
}

impl HostConfigSource for TrustSource {
    fn host_config(&self, host: &HostPort) -> Result<HostConfig, RegistryError> {
        let mut hc = match &self.hosts {
            Some(w) => w.host_config(host)?,
            None => HostConfig::default(),
        };
        for f in &self.ca_files {
            for c in registry::tls::load_certs(f)? {
                hc.ca_certs.push((f.clone(), c));
            }
            hc.sources.push(format!("--ca-file {}", f.display()));
        }
        if let Some(c) = &self.candidate
            && &c.host == host
        {
            for cert in &c.certs {
                hc.ca_certs.push((PathBuf::from(&c.label), cert.clone()));
            }
            hc.sources
                .push(format!("{} (candidate, not saved)", c.label));
        }
        Ok(hc)
    }

    fn generation(&self) -> u64 {
        self.hosts
            .as_ref()
            .map_or(0, |w| HostConfigSource::generation(&**w))
    }

    /// The hosts directory's endpoints for `namespace` (mirrors, then the server); without a
    /// hosts directory, none (the registry itself).
    fn endpoints(
        &self,
        namespace: &str,
    ) -> Result<Option<Vec<registry::RegistryEndpoint>>, RegistryError> {
        match &self.hosts {
            Some(w) => w.endpoints(namespace),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::ca_pem;

    #[test]
    fn a_candidate_applies_to_its_host_port_only_and_ca_files_to_every_host() {
        let d = tempfile::tempdir().unwrap();
        let bundle = d.path().join("bundle.pem");
        std::fs::write(&bundle, ca_pem("everyone")).unwrap();
        let a = HostPort::new("reg.example", 5000);
        let b = HostPort::new("reg.example", 5001);
        let src = TrustSource::open(Some(&d.path().join("hosts")))
            .unwrap()
            .with_ca_files([bundle.clone()])
            .with_candidate(
                a.clone(),
                "fetched from reg.example:5000",
                ca_pem("only-a").as_bytes(),
            )
            .unwrap();
        let ha = src.host_config(&a).unwrap();
        let hb = src.host_config(&b).unwrap();
        assert_eq!(ha.ca_certs.len(), 2);
        assert_eq!(hb.ca_certs.len(), 1);
        assert_eq!(hb.ca_certs[0].0, bundle);
        assert!(
            ha.sources
                .iter()
                .any(|s| s.contains("(candidate, not saved)")),
            "{:?}",
            ha.sources
        );
        assert!(
            !hb.sources.iter().any(|s| s.contains("candidate")),
            "{:?}",
            hb.sources
        );
    }

    #[test]
    fn a_ca_written_into_the_watched_directory_moves_the_generation_and_applies() {
        let d = tempfile::tempdir().unwrap();
        let src = TrustSource::open(Some(d.path())).unwrap();
        let host = HostPort::new("127.0.0.1", 5000);
        let g = src.generation();
        assert!(src.host_config(&host).unwrap().ca_certs.is_empty());
        crate::TrustStore::new(d.path())
            .with_user("test")
            .add(&host, ca_pem("registry ca").as_bytes())
            .unwrap();
        assert!(src.generation() > g);
        assert_eq!(src.host_config(&host).unwrap().ca_certs.len(), 1);
        let other = HostPort::new("127.0.0.1", 5001);
        assert!(src.host_config(&other).unwrap().ca_certs.is_empty());
    }

    #[test]
    fn no_directory_given_means_the_default_only_when_it_exists() {
        assert_eq!(
            effective_hosts_dir(Some(Path::new("/x"))),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            effective_hosts_dir(None).is_some(),
            Path::new(DEFAULT_HOSTS_DIR).is_dir()
        );
    }

    #[test]
    fn a_candidate_without_a_certificate_is_refused() {
        let e = TrustSource::default()
            .with_candidate(HostPort::new("r", 443), "input", b"not pem")
            .unwrap_err();
        assert!(
            e.to_string().contains("input: holds no PEM certificate"),
            "{e}"
        );
    }
}
