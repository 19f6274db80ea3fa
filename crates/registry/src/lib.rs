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
//! errors are one [`RegistryError`] with a [`ErrorKind`] to branch on.

pub mod auth;
pub mod blob;
pub mod challenge;
pub mod client;
pub mod doctor;
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
pub use error::{ErrorKind, RegistryError, Role};
pub use manifest::{Resolved, ResolvedImage};
pub use origin::{HostPort, Origin, Scheme};
pub use probe::{CertInfo, ChainReport, Verdict, fetch_chain};
pub use repository::Repository;
pub use retry::RetryPolicy;
pub use tls::{HostConfig, HostConfigSource, TlsErrorClass, TlsFailure, TrustConfig};

/// The host Docker Hub's `docker.io` names are pulled from (containerd's default).
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

impl Client {
    /// A repository handle for `registry` (`host[:port]`; `docker.io` means Docker Hub) and a
    /// repository path, bound to one credential (or anonymous).
    pub fn repository_at(
        &self,
        registry: &str,
        repository: &str,
        credential: Option<Credential>,
    ) -> Result<Repository, RegistryError> {
        let registry = match registry {
            "docker.io" | "index.docker.io" | "" => DOCKER_HUB_HOST,
            r => r,
        };
        let host = HostPort::parse(registry, 443).ok_or_else(|| {
            RegistryError::Config(format!(
                "invalid registry host {registry:?}: expected host or host:port"
            ))
        })?;
        let scheme = self.scheme_for(&host)?;
        Ok(Repository::new(
            self.clone(),
            Origin { scheme, host },
            repository.to_string(),
            credential,
        ))
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
