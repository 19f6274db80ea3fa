//! From a pod's `imagePullSecrets` (as the agent fetched them from the pod's own namespace) and the node's Docker
//! config to the ordered credentials to try for one image, each with where it came from and a SHA-256 hash of its
//! content for KEP-2535 records and single-flight identity. It owns kubelet's rules here: secrets in
//! `imagePullSecrets` order, a secret that could not be fetched skipped (the caller warns), a malformed one fails
//! the whole pod with an error naming namespace/name and key, node credentials after every pod secret. It must
//! never put a credential value anywhere but the opaque `registry::Credential` and the one-way hash.

use std::collections::BTreeMap;
use std::path::Path;

use credentials::{MatchedCredential, Origin, PullKeyring, PullSecret, SecretError};
use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest as _, Sha256};

use crate::texts::go_quote;

/// One entry of a pod's `imagePullSecrets`, as the agent could fetch it. (Not boxed: the contract hands the
/// Secret over by value, and a pod has a handful of these for the length of one call.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum FetchedSecret {
    /// The Secret object, read from the pod's namespace.
    Found(Secret),
    /// The Secret does not exist or could not be read.
    Missing {
        /// Its name in `imagePullSecrets`.
        name: String,
    },
}

/// Where a credential to try came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A pod pull secret.
    Secret {
        /// `metadata.uid` (empty when the object had none).
        uid: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The node's Docker config (every pod on the node may use what it pulls).
    Node {
        /// The file.
        path: String,
    },
}

/// One credential to try, with its source and content hash.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// What the puller tries (label and opaque credential).
    pub attempt: image::Attempt,
    /// Where it came from.
    pub source: CredentialSource,
    /// Lowercase hex SHA-256 of the credential's content (user name, password, identity token), never shown.
    pub hash: String,
}

/// The credentials for one image of one pod.
#[derive(Clone, Debug, Default)]
pub struct PodCredentials {
    /// In the order kubelet tries them: pod secrets, then node credentials.
    pub candidates: Vec<Candidate>,
}

impl PodCredentials {
    /// The attempts for the puller (empty means one anonymous attempt).
    pub fn attempts(&self) -> Vec<image::Attempt> {
        self.candidates.iter().map(|c| c.attempt.clone()).collect()
    }

    /// The candidate that produced the attempt labelled `label`.
    pub fn by_label(&self, label: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.attempt.label == label)
    }

    /// The identity of this credential list for single flight: equal only for the same credentials in the
    /// same order (anonymous is the empty list).
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        for c in &self.candidates {
            h.update(c.hash.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The pod-secret candidates (what KEP-2535 compares with its records).
    pub fn pod_secrets(&self) -> impl Iterator<Item = (&CredentialSource, &str)> {
        self.candidates
            .iter()
            .filter(|c| matches!(c.source, CredentialSource::Secret { .. }))
            .map(|c| (&c.source, c.hash.as_str()))
    }
}

/// A pull secret kubelet cannot use: every image of the pod fails with this text as its waiting reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "image pull secret {namespace}/{name} is malformed: {problem}; recreate it with `kubectl create secret docker-registry {name} -n {namespace} --docker-server=HOST:PORT --docker-username=USER --docker-password=...`"
)]
pub struct MalformedSecret {
    /// The secret's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What is wrong (`.data[".dockerconfigjson"]: invalid JSON at line 1 column 6: ...`), never a value.
    pub problem: String,
}

/// The names of secrets that could not be fetched, in order (for `FailedToRetrieveImagePullSecret`).
pub fn missing_names(secrets: &[FetchedSecret]) -> Vec<String> {
    secrets
        .iter()
        .filter_map(|s| match s {
            FetchedSecret::Missing { name } if !name.is_empty() => Some(name.clone()),
            _ => None,
        })
        .collect()
}

struct Found<'a> {
    pull: PullSecret,
    uid: &'a str,
}

fn to_pull_secret<'a>(secret: &'a Secret, pod_namespace: &str) -> Found<'a> {
    let meta = &secret.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or(pod_namespace);
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only in the API, merged over data; honour it if a caller passes it through.
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.as_bytes().to_vec());
    }
    Found {
        pull: PullSecret::from_parts(
            Some(namespace),
            meta.name.as_deref().unwrap_or_default(),
            secret.type_.as_deref().unwrap_or("Opaque"),
            data,
        ),
        uid: meta.uid.as_deref().unwrap_or_default(),
    }
}

fn malformed(namespace: &str, e: SecretError) -> MalformedSecret {
    match e {
        SecretError::Data { name, key, problem } => MalformedSecret {
            namespace: namespace.to_string(),
            name,
            problem: format!(".data[{}]: {problem}", go_quote(&key)),
        },
        SecretError::Base64 { name, key, message } => MalformedSecret {
            namespace: namespace.to_string(),
            name,
            problem: format!(".data[{}]: invalid base64: {message}", go_quote(&key)),
        },
        SecretError::Manifest { origin, message } => MalformedSecret {
            namespace: namespace.to_string(),
            name: origin,
            problem: message,
        },
    }
}

/// SHA-256 over the credential's content in a fixed JSON shape (kubelet hashes its JSON AuthConfig the same
/// way); the value is never stored or shown, only the hash.
fn credential_hash(m: &MatchedCredential) -> String {
    let c = &m.credential;
    let doc = serde_json::json!({
        "username": c.username,
        "password": c.password.expose(),
        "identitytoken": c.identity_token.as_ref().map(|t| t.expose()),
    });
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Builds the credentials to try for `image` (already validated) for a pod in `namespace`: the pod's secrets
/// in order, then the `auths` of the node Docker config at `docker_config` (absent file: none; unreadable or
/// malformed: logged and skipped, as kubelet does).
pub fn pod_credentials(
    image: &str,
    namespace: &str,
    secrets: &[FetchedSecret],
    docker_config: Option<&Path>,
) -> Result<PodCredentials, MalformedSecret> {
    let found: Vec<Found<'_>> = secrets
        .iter()
        .filter_map(|s| match s {
            FetchedSecret::Found(secret) => Some(to_pull_secret(secret, namespace)),
            FetchedSecret::Missing { .. } => None,
        })
        .collect();
    for f in &found {
        f.pull
            .docker_entries()
            .map_err(|e| malformed(f.pull.namespace.as_deref().unwrap_or(namespace), e))?;
    }
    let pulls: Vec<PullSecret> = found.iter().map(|f| f.pull.clone()).collect();
    let mut keyring = PullKeyring::from_secrets(&pulls).map_err(|e| malformed(namespace, e))?;
    if let Some(path) = docker_config {
        match credentials::load_docker_config(path) {
            Ok(cfg) => keyring.add_node_config(path, &cfg),
            Err(credentials::CredentialError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, "node Docker config not used for image pulls");
            }
        }
    }
    let lookup = keyring.lookup(image).map_err(|e| MalformedSecret {
        namespace: namespace.to_string(),
        name: String::new(),
        problem: e.to_string(),
    })?;
    let candidates = lookup
        .credentials
        .iter()
        .map(|m| {
            let source = match &m.origin {
                Origin::Secret {
                    namespace: ns,
                    name,
                } => {
                    let ns = ns.clone().unwrap_or_else(|| namespace.to_string());
                    let uid = found
                        .iter()
                        .find(|f| f.pull.name == *name && f.pull.namespace.as_deref() == Some(&ns))
                        .map(|f| f.uid.to_string())
                        .unwrap_or_default();
                    CredentialSource::Secret {
                        uid,
                        namespace: ns,
                        name: name.clone(),
                    }
                }
                Origin::DockerConfig { path } | Origin::Helper { path, .. } => {
                    CredentialSource::Node { path: path.clone() }
                }
            };
            let credential = match &m.credential.identity_token {
                Some(token) if !token.is_empty() => {
                    registry::Credential::identity_token(token.expose())
                }
                _ => registry::Credential::password(
                    m.credential.username.clone(),
                    m.credential.password.expose(),
                ),
            };
            Candidate {
                attempt: image::Attempt {
                    label: format!(
                        "{} key {} user {}",
                        m.origin,
                        go_quote(&m.key),
                        go_quote(&m.credential.username)
                    ),
                    credential: Some(credential),
                },
                source,
                hash: credential_hash(m),
            }
        })
        .collect();
    Ok(PodCredentials { candidates })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A `kubernetes.io/dockerconfigjson` Secret for `host` with this user and password.
    pub(crate) fn docker_secret(ns: &str, name: &str, uid: &str, config: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(config.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    pub(crate) fn auths(host: &str, user: &str, password: &str) -> String {
        format!(r#"{{"auths":{{"{host}":{{"username":"{user}","password":"{password}"}}}}}}"#)
    }

    #[test]
    fn pod_secrets_come_in_order_then_node_credentials_with_sources_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("config.json");
        std::fs::write(&node, auths("reg.example:5000", "node-user", "node-pw")).unwrap();
        let secrets = [
            FetchedSecret::Found(docker_secret(
                "team",
                "b",
                "uid-b",
                &auths("reg.example:5000", "bob", "pw-b"),
            )),
            FetchedSecret::Missing {
                name: "gone".into(),
            },
            FetchedSecret::Found(docker_secret(
                "team",
                "a",
                "uid-a",
                &auths("reg.example:5000", "ann", "pw-a"),
            )),
            FetchedSecret::Found(docker_secret(
                "team",
                "other",
                "uid-o",
                &auths("other.example", "x", "y"),
            )),
        ];
        let creds =
            pod_credentials("reg.example:5000/app:v1", "team", &secrets, Some(&node)).unwrap();
        let labels: Vec<_> = creds
            .candidates
            .iter()
            .map(|c| c.attempt.label.as_str())
            .collect();
        assert_eq!(
            labels,
            [
                r#"secret team/b key "reg.example:5000" user "bob""#,
                r#"secret team/a key "reg.example:5000" user "ann""#,
                &*format!(
                    r#"docker config {} key "reg.example:5000" user "node-user""#,
                    node.display()
                ),
            ]
        );
        assert_eq!(
            creds.candidates[0].source,
            CredentialSource::Secret {
                uid: "uid-b".into(),
                namespace: "team".into(),
                name: "b".into()
            }
        );
        assert!(matches!(
            creds.candidates[2].source,
            CredentialSource::Node { .. }
        ));
        assert_eq!(missing_names(&secrets), ["gone"]);
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("pw-a") && !shown.contains("node-pw"),
            "{shown}"
        );
    }

    #[test]
    fn a_malformed_secret_names_namespace_name_and_key_and_never_its_content() {
        let secrets = [
            FetchedSecret::Found(docker_secret(
                "team",
                "good",
                "u1",
                &auths("r.io", "a", "b"),
            )),
            FetchedSecret::Found(docker_secret("team", "bad", "u2", "{\"auths\": hunter2")),
        ];
        let e = pod_credentials("r.io/app", "team", &secrets, None).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(r#"image pull secret team/bad is malformed: .data[".dockerconfigjson"]: invalid JSON at line 1 column "#),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn hashes_are_equal_for_equal_content_and_identity_follows_order() {
        let one = [FetchedSecret::Found(docker_secret(
            "a",
            "s1",
            "u1",
            &auths("r.io", "u", "p"),
        ))];
        let same = [FetchedSecret::Found(docker_secret(
            "b",
            "s2",
            "u2",
            &auths("r.io", "u", "p"),
        ))];
        let other = [FetchedSecret::Found(docker_secret(
            "a",
            "s1",
            "u1",
            &auths("r.io", "u", "q"),
        ))];
        let h = |s: &[FetchedSecret]| pod_credentials("r.io/app", "ns", s, None).unwrap();
        assert_eq!(h(&one).candidates[0].hash, h(&same).candidates[0].hash);
        assert_ne!(h(&one).candidates[0].hash, h(&other).candidates[0].hash);
        assert_eq!(h(&one).identity(), h(&same).identity());
        assert_ne!(h(&one).identity(), h(&other).identity());
        assert_ne!(h(&one).identity(), PodCredentials::default().identity());
        assert_eq!(h(&one).candidates[0].hash.len(), 64);
    }

    #[test]
    fn an_absent_node_config_and_other_secret_types_contribute_nothing() {
        let mut opaque = docker_secret("a", "o", "u", "{}");
        opaque.type_ = Some("Opaque".into());
        let creds = pod_credentials(
            "r.io/app",
            "a",
            &[FetchedSecret::Found(opaque)],
            Some(Path::new("/nonexistent/config.json")),
        )
        .unwrap();
        assert!(creds.candidates.is_empty());
        assert!(creds.attempts().is_empty());
    }
}
