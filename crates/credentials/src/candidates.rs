//! The one place that builds the credentials to try for an image from local sources, in order: pull-secret
//! manifests as given (kubelet's `imagePullSecrets` order), then the `auths` of a node Docker config, then (a berth
//! addition, only when a Docker config is given) that config's credential helper for the image's registry. Both
//! `berth auth match` (which explains the choice) and `berth pull`/`doctor` (which use it) call
//! [`credentials_to_try`], so they can never disagree. It never contacts a registry and never puts a secret value
//! in a note or an error: helper failures are kept as notes with the helper's redacted message.

use std::path::PathBuf;

use crate::{
    CredentialError, HelperRunner, MatchedCredential, Origin, PullKeyring, PullSecret,
    SkippedSecret,
};

/// Where credentials come from.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// Secret manifests (YAML or JSON), in `imagePullSecrets` order.
    pub secrets: Vec<PathBuf>,
    /// A node Docker config: `None` = not used, `Some(None)` = the default path
    /// ([`crate::default_docker_config_path`]), `Some(Some(path))` = that file.
    pub docker_config: Option<Option<PathBuf>>,
}

/// A source that contributed nothing for this image, and why (not an error: the pull goes on without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceNote {
    /// The source, as [`Origin`] prints it.
    pub source: String,
    /// Why it contributed nothing.
    pub reason: String,
}

/// The credentials to try for one image, and what explains them.
#[derive(Debug, Clone)]
pub struct Candidates {
    /// `ParseNormalizedNamed(image).Name()`.
    pub repository: String,
    /// In the order they are tried: secret matches, Docker config matches, then the helper's credential.
    pub credentials: Vec<MatchedCredential>,
    /// The keyring the matches came from (for explaining keys that did not match).
    pub keyring: PullKeyring,
    /// The Docker config file used, when one was.
    pub docker_config: Option<PathBuf>,
    /// Secrets skipped and helpers that gave nothing.
    pub notes: Vec<SourceNote>,
}

/// The server URL Docker passes to a credential helper for a registry domain.
pub fn helper_server_url(domain: &str) -> String {
    if domain == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        domain.to_owned()
    }
}

/// Reads every secret manifest in `paths`, in order.
pub fn read_secret_files(paths: &[PathBuf]) -> Result<Vec<PullSecret>, CredentialError> {
    let mut out = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).map_err(|source| CredentialError::Read {
            path: p.display().to_string(),
            source,
        })?;
        out.extend(PullSecret::from_manifest(&bytes, &p.display().to_string())?);
    }
    Ok(out)
}

/// The Docker config path a [`CredentialSources::docker_config`] value names.
pub fn docker_config_path(arg: &Option<PathBuf>) -> Result<PathBuf, CredentialError> {
    match arg {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.clone()),
        _ => crate::default_docker_config_path().ok_or(CredentialError::NoDockerConfigPath),
    }
}

/// Builds the credentials to try for `image` from `sources`, running a configured credential helper with
/// `helpers`.
pub fn credentials_to_try(
    image: &str,
    sources: &CredentialSources,
    helpers: &HelperRunner,
) -> Result<Candidates, CredentialError> {
    let secrets = read_secret_files(&sources.secrets)?;
    let mut keyring = PullKeyring::from_secrets(&secrets)?;
    let mut docker_config = None;
    if let Some(arg) = &sources.docker_config {
        let path = docker_config_path(arg)?;
        let cfg = crate::load_docker_config(&path)?;
        keyring.add_node_config(&path, &cfg);
        docker_config = Some((path, cfg));
    }
    let lookup = keyring.lookup(image)?;
    let mut credentials = lookup.credentials;
    let mut notes: Vec<SourceNote> = keyring
        .skipped()
        .iter()
        .map(|s: &SkippedSecret| SourceNote {
            source: s.origin.to_string(),
            reason: format!("not used: {}", s.reason),
        })
        .collect();
    if let Some((path, cfg)) = &docker_config {
        let domain = oci::Reference::parse_normalized(image)
            .map_err(|source| CredentialError::Image {
                image: image.to_owned(),
                source,
            })?
            .domain()
            .to_owned();
        if let Some(helper) = cfg.helper_for(&domain) {
            let url = helper_server_url(&domain);
            let shown = path.display().to_string();
            let origin = Origin::Helper {
                name: helper.to_owned(),
                path: shown.clone(),
            };
            match helpers.get(helper, &url, &shown) {
                Ok(Some(entry)) => credentials.push(MatchedCredential {
                    origin,
                    key: url.clone(),
                    normalized_key: url,
                    default_registry_fallback: false,
                    credential: entry,
                }),
                Ok(None) => notes.push(SourceNote {
                    source: origin.to_string(),
                    reason: format!("has no credential for {url}"),
                }),
                Err(e) => notes.push(SourceNote {
                    source: origin.to_string(),
                    reason: e.to_string(),
                }),
            }
        }
    }
    Ok(Candidates {
        repository: lookup.repository,
        credentials,
        keyring,
        docker_config: docker_config.map(|(p, _)| p),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret_manifest(name: &str, host: &str, user: &str) -> String {
        let config =
            format!(r#"{{"auths":{{"{host}":{{"username":"{user}","password":"pw-{user}"}}}}}}"#);
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            b64(&config)
        )
    }

    /// A directory holding `docker-credential-fake`, which answers `user` for `reg.example:5000` only.
    fn fake_helper(dir: &std::path::Path) -> HelperRunner {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = bin.join("docker-credential-fake");
        std::fs::write(
            &script,
            "#!/bin/sh\nread url\nif [ \"$url\" = reg.example:5000 ]; then\n  printf '{\"ServerURL\":\"%s\",\"Username\":\"helper-user\",\"Secret\":\"helper-secret\"}' \"$url\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        HelperRunner::with_search_path(bin)
    }

    fn users(c: &Candidates) -> Vec<String> {
        c.credentials
            .iter()
            .map(|m| m.credential.username.clone())
            .collect()
    }

    #[test]
    fn secrets_then_docker_config_auths_then_its_helper_in_that_order() {
        let d = tempfile::tempdir().unwrap();
        let runner = fake_helper(d.path());
        let s1 = d.path().join("b.yaml");
        let s2 = d.path().join("a.yaml");
        std::fs::write(&s1, secret_manifest("b", "reg.example:5000", "from-b")).unwrap();
        std::fs::write(&s2, secret_manifest("a", "reg.example:5000", "from-a")).unwrap();
        let cfg = d.path().join("config.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}}}},"credHelpers":{{"reg.example:5000":"fake"}}}}"#,
                b64("node-user:node-pw")
            ),
        )
        .unwrap();
        let sources = CredentialSources {
            secrets: vec![s1, s2],
            docker_config: Some(Some(cfg.clone())),
        };
        let c = credentials_to_try("reg.example:5000/team/app:v1", &sources, &runner).unwrap();
        assert_eq!(c.repository, "reg.example:5000/team/app");
        assert_eq!(users(&c), ["from-b", "from-a", "node-user", "helper-user"]);
        assert_eq!(
            c.credentials[3].origin,
            Origin::Helper {
                name: "fake".into(),
                path: cfg.display().to_string()
            }
        );
        assert_eq!(
            c.credentials[3].credential.password.expose(),
            "helper-secret"
        );
        assert_eq!(c.docker_config.as_deref(), Some(cfg.as_path()));
        assert!(c.notes.is_empty(), "{:?}", c.notes);

        // without the Docker config, neither its auths nor its helper are used
        let only_secrets = CredentialSources {
            docker_config: None,
            ..sources
        };
        let c = credentials_to_try("reg.example:5000/team/app:v1", &only_secrets, &runner).unwrap();
        assert_eq!(users(&c), ["from-b", "from-a"]);
    }

    #[test]
    fn a_helper_without_a_credential_is_a_note_and_never_shows_a_secret() {
        let d = tempfile::tempdir().unwrap();
        let runner = fake_helper(d.path());
        let cfg = d.path().join("config.json");
        std::fs::write(&cfg, r#"{"credsStore":"fake"}"#).unwrap();
        let sources = CredentialSources {
            secrets: vec![],
            docker_config: Some(Some(cfg)),
        };
        let c = credentials_to_try("other.example/x:1", &sources, &runner).unwrap();
        assert!(c.credentials.is_empty());
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].source.contains("docker-credential-fake"),
            "{:?}",
            c.notes
        );
        assert!(c.notes[0].reason.contains("other.example"), "{:?}", c.notes);
        // a missing helper is a note too, naming the program and the config that set it
        let missing = HelperRunner::with_search_path(d.path().join("empty"));
        let c = credentials_to_try("other.example/x:1", &sources, &missing).unwrap();
        assert!(
            c.notes[0]
                .reason
                .contains("docker-credential-fake not found"),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn an_unreadable_secret_file_is_an_error_naming_it() {
        let sources = CredentialSources {
            secrets: vec![PathBuf::from("/nonexistent/regcred.yaml")],
            docker_config: None,
        };
        let e = credentials_to_try("nginx", &sources, &HelperRunner::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/regcred.yaml: cannot read"),
            "{e}"
        );
    }
}
