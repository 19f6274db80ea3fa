//! credentials: which registry credentials kubelet would offer for an image, and from where. It reads pull
//! Secrets (`kubernetes.io/dockerconfigjson`, `kubernetes.io/dockercfg`) and Docker config files, builds the
//! kubelet keyring (pod secrets in `imagePullSecrets` order, then the node's Docker config), looks images up on
//! their normalised name, and runs Docker credential helpers. Every credential carries its origin and the key
//! that matched, so callers can explain a choice. It must never log, print or put in an error a password, token
//! or `auth` value (they live in [`SecretString`]), never pass a secret as a process argument, and never talk to
//! a registry (that is the `registry` crate's job).

pub mod candidates;
pub mod docker_config;
pub mod helper;
pub mod keyring;
pub mod pull_secret;
pub mod redact;

use std::path::{Path, PathBuf};

pub use candidates::{
    Candidates, CredentialSources, SourceNote, credentials_to_try, docker_config_path,
    helper_server_url, read_secret_files,
};
pub use docker_config::{DecodeError, DockerCliConfig, DockerConfigEntry};
pub use helper::{HelperError, HelperRunner};
pub use keyring::{IgnoredKey, KeyVerdict, Keyring, MatchedCredential, Origin};
pub use pull_secret::{PullSecret, SecretError};
pub use redact::SecretString;

/// Any failure of this crate.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    DockerConfig { path: String, problem: DecodeError },
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error("no Docker config path: set DOCKER_CONFIG or HOME, or pass --docker-config FILE")]
    NoDockerConfigPath,
    #[error("image {image:?}: {source}")]
    Image {
        image: String,
        source: oci::ReferenceError,
    },
}

/// A pod secret that contributes nothing, and why (kubelet skips these silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSecret {
    pub origin: Origin,
    pub reason: String,
}

/// The result of a lookup: the repository looked up and the credentials in the order they would be tried.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// `ParseNormalizedNamed(image).Name()`, e.g. `docker.io/library/nginx`.
    pub repository: String,
    pub credentials: Vec<MatchedCredential>,
}

/// kubelet's `UnionDockerKeyring{pod secrets, node docker config}`.
#[derive(Debug, Clone, Default)]
pub struct PullKeyring {
    pod: Keyring,
    node: Keyring,
    skipped: Vec<SkippedSecret>,
}

/// The node's Docker config file: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Reads and parses a Docker CLI `config.json`.
pub fn load_docker_config(path: &Path) -> Result<DockerCliConfig, CredentialError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CredentialError::Read {
        path: shown.clone(),
        source,
    })?;
    DockerCliConfig::parse(&bytes).map_err(|problem| CredentialError::DockerConfig {
        path: shown,
        problem,
    })
}

impl PullKeyring {
    /// kubelet `MakeDockerKeyring` for the pod: every secret in `imagePullSecrets` order. One malformed secret
    /// fails the whole keyring, as in kubelet (the pod's pulls then fail with that error).
    pub fn from_secrets(secrets: &[PullSecret]) -> Result<PullKeyring, SecretError> {
        let mut k = PullKeyring::default();
        for s in secrets {
            match s.docker_entries()? {
                Some(entries) => k.pod.add(&s.origin(), &entries),
                None => k.skipped.push(SkippedSecret {
                    origin: s.origin(),
                    reason: s
                        .ignored_reason()
                        .unwrap_or_else(|| "no registry entries".into()),
                }),
            }
        }
        Ok(k)
    }

    /// Adds the `auths` of a node Docker config (tried after every pod secret).
    pub fn add_node_config(&mut self, path: &Path, config: &DockerCliConfig) {
        self.node.add(
            &Origin::DockerConfig {
                path: path.display().to_string(),
            },
            &config.auths,
        );
    }

    /// The pod-secret part.
    pub fn pod(&self) -> &Keyring {
        &self.pod
    }

    /// The node part.
    pub fn node(&self) -> &Keyring {
        &self.node
    }

    /// Secrets that contributed nothing.
    pub fn skipped(&self) -> &[SkippedSecret] {
        &self.skipped
    }

    /// Looks `image` up on `ParseNormalizedNamed(image).Name()`: pod credentials first, then node ones.
    pub fn lookup(&self, image: &str) -> Result<Lookup, CredentialError> {
        let repository = oci::Reference::parse_normalized(image)
            .map_err(|source| CredentialError::Image {
                image: image.to_owned(),
                source,
            })?
            .name();
        let mut credentials = self.pod.lookup(&repository);
        credentials.extend(self.node.lookup(&repository));
        Ok(Lookup {
            repository,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secret(name: &str, config: &str) -> PullSecret {
        let mut data = BTreeMap::new();
        data.insert(".dockerconfigjson".to_owned(), config.as_bytes().to_vec());
        PullSecret::from_parts(
            Some("default"),
            name,
            pull_secret::TYPE_DOCKER_CONFIG_JSON,
            data,
        )
    }

    #[test]
    fn lookup_uses_the_normalised_name_and_pod_secrets_before_node_config() {
        let mut k = PullKeyring::from_secrets(&[
            secret(
                "b",
                r#"{"auths":{"docker.io":{"username":"from-b","password":"x"}}}"#,
            ),
            secret(
                "a",
                r#"{"auths":{"https://index.docker.io/v1/":{"username":"from-a","password":"x"}}}"#,
            ),
        ])
        .unwrap();
        let node = DockerCliConfig::parse(
            br#"{"auths":{"docker.io/library":{"username":"node","password":"y"}}}"#,
        )
        .unwrap();
        k.add_node_config(Path::new("/root/.docker/config.json"), &node);
        let l = k.lookup("nginx").unwrap();
        assert_eq!(l.repository, "docker.io/library/nginx");
        let users: Vec<_> = l
            .credentials
            .iter()
            .map(|c| c.credential.username.as_str())
            .collect();
        // "docker.io" matches directly, so the index.docker.io fallback is not used; node config comes last.
        assert_eq!(users, ["from-b", "node"]);
    }

    #[test]
    fn one_bad_secret_fails_the_whole_keyring() {
        let e = PullKeyring::from_secrets(&[secret("good", r#"{"auths":{}}"#), secret("bad", "{")])
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(r#"secret "bad": .data[".dockerconfigjson"]: invalid JSON"#),
            "{e}"
        );
    }

    #[test]
    fn invalid_image_is_an_error_with_upstream_text() {
        let k = PullKeyring::default();
        let e = k.lookup("Foo/Bar").unwrap_err();
        // "Foo" has upper case, so upstream takes it as the domain and reports the remote name only.
        assert_eq!(
            e.to_string(),
            r#"image "Foo/Bar": invalid reference format: repository name (Bar) must be lowercase"#
        );
    }
}
