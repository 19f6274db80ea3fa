//! registry: the OCI distribution client of berth: per-host TLS trust, authentication challenges
//! and tokens, manifest resolution and blob streams with redirects, retries and resume.
//!
//! It owns every byte berth exchanges with a registry, a token server or a redirect target, and
//! every rule about where a credential may go (only the registry's own scheme+host+port and its
//! validated token realm over https). It knows nothing of disks beyond reading the configured
//! trust files: content is handed to the caller as verified `Bytes` (manifests) or bounded streams
//! (blobs) for the content store to commit. Entry points: [`Client::new`], [`Client::repository`],
//! [`Repository::resolve`], [`Repository::fetch_manifest`], [`Repository::fetch_blob`],
//! [`Repository::ping`], [`probe::fetch_chain`] (trust fetch), [`doctor::diagnose`] (berth doctor);
//! errors are one [`RegistryError`] with a [`ErrorKind`] to branch on. Host configuration reaches
//! the client through one trait, [`HostConfigSource`]: per-host:port trust (`host_config`), the
//! per-namespace endpoint list (`endpoints`: mirrors, capabilities, who gets credentials; see
//! [`endpoint`]) and a `generation` for hot reload.

pub mod auth;
pub mod blob;
pub mod challenge;
pub mod client;
pub mod doctor;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod origin;
pub mod probe;
pub mod repository;
pub mod retry;
pub mod tls;

pub use auth::{Credential, Secret};
pub use blob::{BlobStream, VerifyingStream};
pub use challenge::{Challenge, parse_www_authenticate};
pub use client::{Client, ClientConfig, DEFAULT_MAX_MANIFEST_SIZE, MinThroughput};
pub use endpoint::RegistryEndpoint;
pub use error::{ErrorKind, RegistryError, Role};
pub use manifest::{Resolved, ResolvedImage};
pub use origin::{HostPort, Origin, Scheme};
pub use probe::{CertInfo, ChainReport, Verdict, fetch_chain};
pub use repository::Repository;
pub use retry::RetryPolicy;
pub use tls::{
    ClientIdentity, HostConfig, HostConfigSource, TlsErrorClass, TlsFailure, TrustConfig,
};

/// The host Docker Hub's `docker.io` names are pulled from (containerd's default).
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

impl Client {
    /// A repository handle for `registry` (`host[:port]`; `docker.io` means Docker Hub) and a
    /// repository path, bound to one credential (or anonymous).
    ///
    /// The endpoints come from the host configuration ([`HostConfigSource::endpoints`] for the
    /// namespace `registry`): mirrors in order, then the server; without configuration, the
    /// registry itself. An endpoint's scheme must agree with its host:port's trust configuration
    /// (plain http only where configured), and `skip_verify` endpoints are logged as warnings.
    pub fn repository_at(
        &self,
        registry: &str,
        repository: &str,
        credential: Option<Credential>,
    ) -> Result<Repository, RegistryError> {
        let namespace = if registry.is_empty() {
            "docker.io"
        } else {
            registry
        };
        let home = match registry {
            "docker.io" | "index.docker.io" | "" => DOCKER_HUB_HOST,
            r => r,
        };
        let host = HostPort::parse(home, 443).ok_or_else(|| {
            RegistryError::Config(format!(
                "invalid registry host {home:?}: expected host or host:port"
            ))
        })?;
        let scheme = self.scheme_for(&host)?;
        let home = Origin { scheme, host };
        let endpoints = match self.config().hosts.endpoints(namespace)? {
            None => vec![RegistryEndpoint::registry(home.clone())],
            Some(list) if list.is_empty() => {
                return Err(RegistryError::Config(format!(
                    "the host configuration lists no endpoint for {namespace}; configure a server or a host entry"
                )));
            }
            Some(list) => list,
        };
        for ep in &endpoints {
            let hc = self.host_config(ep.host())?;
            if ep.is_plain_http() != hc.plain_http {
                return Err(RegistryError::Config(format!(
                    "endpoint {} ({}) is {} but {} is configured as {}; use one scheme for one host:port",
                    ep.label(),
                    ep.source,
                    if ep.is_plain_http() {
                        "plain http"
                    } else {
                        "https"
                    },
                    ep.host(),
                    if hc.plain_http { "plain http" } else { "https" },
                )));
            }
            if hc.skip_verify && !hc.plain_http {
                tracing::warn!(
                    endpoint = %ep.label(),
                    source = %ep.source,
                    "pulling {namespace}/{repository} through {} with TLS certificate verification DISABLED (skip_verify)",
                    ep.host()
                );
            }
        }
        Repository::new(
            self.clone(),
            home,
            repository.to_string(),
            credential,
            endpoints,
        )
    }

    /// A repository handle for an image reference's registry and path.
    pub fn repository(
        &self,
        reference: &oci::Reference,
        credential: Option<Credential>,
    ) -> Result<Repository, RegistryError> {
        self.repository_at(reference.domain(), reference.path(), credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn client_and_repository_are_clone_send_sync() {
        assert_shareable::<Client>();
        assert_shareable::<Repository>();
        fn assert_send<T: Send>() {}
        assert_send::<BlobStream>();
    }

    #[test]
    fn docker_hub_names_map_to_the_registry_host() {
        let c = Client::new(ClientConfig {
            system_roots: false,
            ..ClientConfig::default()
        })
        .unwrap();
        let r: oci::Reference = oci::Reference::parse_normalized("busybox").unwrap();
        let repo = c.repository(&r, None).unwrap();
        assert_eq!(repo.host().to_string(), "registry-1.docker.io:443");
        assert_eq!(repo.name(), "library/busybox");
        let repo = c.repository_at("reg.example:5000", "a/b", None).unwrap();
        assert_eq!(repo.host().to_string(), "reg.example:5000");
        assert!(c.repository_at("bad host:x", "a", None).is_err());
    }
}
