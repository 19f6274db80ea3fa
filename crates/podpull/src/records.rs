//! KEP-2535 "ensure secret pulled images": which credentials pulled each image, kept on disk so a restart keeps
//! the guarantee. Under `<state_dir>/pulled/` one record per image (keyed by its image ID, the config digest)
//! maps each repository name to the pull secrets whose credentials pulled it (uid, namespace, name and a SHA-256
//! of the credential) or to `nodePodsAccessible` when it was pulled anonymously or with node credentials; under
//! `<state_dir>/pulling/` an intent is written before each pull and removed after, so an image whose pull was
//! interrupted is never mistaken for a preloaded one. It owns kubelet's `MustAttemptImagePull` decision. Files
//! are written atomically (temporary file, fsync, rename, fsync of the directory). It must never store a
//! credential value (only the hash) and never decide policy (that is `policy`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::secrets::CredentialSource;

const API_VERSION: &str = "podpull.berth.dev/v1";
const PULLED_KIND: &str = "ImagePulledRecord";
const INTENT_KIND: &str = "ImagePullIntent";

/// A pull secret that pulled an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretCoordinates {
    /// The Secret's `metadata.uid`.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Lowercase hex SHA-256 of the credential it provided.
    pub credential_hash: String,
}

/// Who may use an image pulled under one repository name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullCredentials {
    /// Secrets whose credentials pulled it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_secrets: Vec<SecretCoordinates>,
    /// Pulled anonymously or with node credentials: every pod on the node may use it.
    #[serde(default)]
    pub node_pods_accessible: bool,
}

/// kubelet's `ImagePulledRecord`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PulledRecord {
    /// Always `podpull.berth.dev/v1`.
    pub api_version: String,
    /// Always `ImagePulledRecord`.
    pub kind: String,
    /// The image ID (config digest).
    pub image_ref: String,
    /// Seconds since the Unix epoch of the last change.
    pub last_updated: u64,
    /// Repository name (normalised, without tag or digest) to who pulled it.
    pub credential_mapping: BTreeMap<String, PullCredentials>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Intent {
    api_version: String,
    kind: String,
    image: String,
}

/// How a successful pull authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PulledWith {
    /// Anonymously or with node credentials.
    Node,
    /// With a pod pull secret.
    Secret(SecretCoordinates),
}

/// What [`must_attempt_pull`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The pod may use the present image; `add` is a secret to add to the record (a new secret with known
    /// credentials, or a rotated known secret).
    Accessible {
        /// The record update, if any.
        add: Option<SecretCoordinates>,
    },
    /// The pod must re-authenticate with the registry (pull) before it may use the image.
    MustPull,
}

/// A record file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// IO on a record file.
    #[error(
        "KEP-2535 record {path}: {source}; check the agent's state directory permissions and free space"
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A record that does not parse (treated as "must pull", never as accessible).
    #[error(
        "KEP-2535 record {path} is corrupt: {message}; it is rewritten by the next successful pull"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error (positions only).
        message: String,
    },
}

/// kubelet `MustAttemptImagePull` for a present image: `record` is its pulled record, `intent` whether a pull
/// of it was interrupted, `repository` the normalised name without tag or digest, `pod_secrets` the pod-secret
/// credentials the keyring matched for this image (source and hash), `verify_preloaded` whether images berth
/// never pulled must be verified too (kubelet's `AlwaysVerify`; the default `NeverVerifyPreloadedImages` exempts
/// them).
pub fn must_attempt_pull<'a>(
    record: Option<&PulledRecord>,
    intent: bool,
    repository: &str,
    pod_secrets: impl IntoIterator<Item = (&'a CredentialSource, &'a str)>,
    verify_preloaded: bool,
) -> Verdict {
    let Some(record) = record else {
        return if intent || verify_preloaded {
            Verdict::MustPull
        } else {
            Verdict::Accessible { add: None }
        };
    };
    let Some(cached) = record.credential_mapping.get(repository) else {
        return Verdict::MustPull;
    };
    if cached.node_pods_accessible {
        return Verdict::Accessible { add: None };
    }
    for (source, hash) in pod_secrets {
        let CredentialSource::Secret {
            uid,
            namespace,
            name,
        } = source
        else {
            continue;
        };
        let mine = SecretCoordinates {
            uid: uid.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            credential_hash: hash.to_string(),
        };
        for c in &cached.kubernetes_secrets {
            let hash_match = !c.credential_hash.is_empty() && c.credential_hash == hash;
            let coordinates_match =
                !c.uid.is_empty() && c.uid == *uid && c.namespace == *namespace && c.name == *name;
            if hash_match || coordinates_match {
                let changed = !(hash_match && coordinates_match);
                return Verdict::Accessible {
                    add: changed.then_some(mine),
                };
            }
        }
    }
    Verdict::MustPull
}

/// Applies a successful pull of `repository` to `record`.
pub fn apply_pull(record: &mut PulledRecord, repository: &str, with: PulledWith) {
    let entry = record
        .credential_mapping
        .entry(repository.to_string())
        .or_default();
    match with {
        PulledWith::Node => entry.node_pods_accessible = true,
        PulledWith::Secret(s) => {
            entry
                .kubernetes_secrets
                .retain(|c| !(c.uid == s.uid && c.namespace == s.namespace && c.name == s.name));
            entry.kubernetes_secrets.push(s);
        }
    }
}

/// The records under a state directory.
#[derive(Debug)]
pub struct RecordStore {
    pulled: PathBuf,
    pulling: PathBuf,
    /// Serialises read-modify-write of records within this process.
    lock: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_name(key: &str) -> String {
    format!("{}.json", hex::encode(Sha256::digest(key.as_bytes())))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename, fsync of the
/// directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| RecordError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn remove_synced(path: &Path) -> Result<(), RecordError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

impl RecordStore {
    /// Opens (creating) the record directories under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<RecordStore, RecordError> {
        let pulled = state_dir.join("pulled");
        let pulling = state_dir.join("pulling");
        for d in [&pulled, &pulling] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        Ok(RecordStore {
            pulled,
            pulling,
            lock: Mutex::new(()),
        })
    }

    fn pulled_path(&self, image_ref: &str) -> PathBuf {
        self.pulled.join(file_name(image_ref))
    }

    /// One intent per pull in flight: `<hash(image)>-<hash(flight)>.json`, so concurrent pulls of one image
    /// with different credentials never remove each other's intent.
    fn intent_path(&self, image: &str, flight: &str) -> PathBuf {
        let image_hash = hex::encode(Sha256::digest(image.as_bytes()));
        self.pulling
            .join(format!("{image_hash}-{}", file_name(flight)))
    }

    /// The pulled record of `image_ref`, if any.
    pub fn pulled(&self, image_ref: &str) -> Result<Option<PulledRecord>, RecordError> {
        let path = self.pulled_path(image_ref);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let record: PulledRecord =
            serde_json::from_slice(&bytes).map_err(|e| RecordError::Corrupt {
                path: path.clone(),
                message: format!(
                    "line {} column {}: {:?}",
                    e.line(),
                    e.column(),
                    e.classify()
                ),
            })?;
        if record.image_ref != image_ref || record.kind != PULLED_KIND {
            return Err(RecordError::Corrupt {
                path,
                message: format!("it holds a {} for {:?}", record.kind, record.image_ref),
            });
        }
        Ok(Some(record))
    }

    /// Whether a pull of `image` (normalised, with its tag or digest) was started and not finished.
    pub fn intent_exists(&self, image: &str) -> Result<bool, RecordError> {
        let prefix = format!("{}-", hex::encode(Sha256::digest(image.as_bytes())));
        let entries = std::fs::read_dir(&self.pulling).map_err(io(&self.pulling))?;
        for entry in entries {
            let entry = entry.map_err(io(&self.pulling))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records that a pull of `image` starts; `flight` identifies this pull among concurrent ones.
    pub fn write_intent(&self, image: &str, flight: &str) -> Result<(), RecordError> {
        let doc = Intent {
            api_version: API_VERSION.into(),
            kind: INTENT_KIND.into(),
            image: image.into(),
        };
        let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        write_atomic(&self.intent_path(image, flight), &bytes)
    }

    /// Records that the pull `flight` of `image` ended (after its record was written, or after a failure).
    pub fn remove_intent(&self, image: &str, flight: &str) -> Result<(), RecordError> {
        remove_synced(&self.intent_path(image, flight))
    }

    /// Applies a successful pull of `repository` as image `image_ref` to its record.
    pub fn record_pull(
        &self,
        image_ref: &str,
        repository: &str,
        with: PulledWith,
    ) -> Result<(), RecordError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = match self.pulled(image_ref) {
            Ok(Some(r)) => r,
            // A corrupt record is replaced by what this pull proves.
            Ok(None) | Err(RecordError::Corrupt { .. }) => PulledRecord {
                api_version: API_VERSION.into(),
                kind: PULLED_KIND.into(),
                image_ref: image_ref.into(),
                last_updated: 0,
                credential_mapping: BTreeMap::new(),
            },
            Err(e) => return Err(e),
        };
        let before = record.credential_mapping.clone();
        apply_pull(&mut record, repository, with);
        if record.credential_mapping == before && record.last_updated != 0 {
            return Ok(());
        }
        record.last_updated = now_unix();
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        write_atomic(&self.pulled_path(image_ref), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(uid: &str, ns: &str, name: &str, hash: &str) -> (CredentialSource, String) {
        (
            CredentialSource::Secret {
                uid: uid.into(),
                namespace: ns.into(),
                name: name.into(),
            },
            hash.into(),
        )
    }

    fn coords(uid: &str, ns: &str, name: &str, hash: &str) -> SecretCoordinates {
        SecretCoordinates {
            uid: uid.into(),
            namespace: ns.into(),
            name: name.into(),
            credential_hash: hash.into(),
        }
    }

    fn record_with(repo: &str, creds: PullCredentials) -> PulledRecord {
        PulledRecord {
            api_version: API_VERSION.into(),
            kind: PULLED_KIND.into(),
            image_ref: "sha256:cfg".into(),
            last_updated: 1,
            credential_mapping: BTreeMap::from([(repo.to_string(), creds)]),
        }
    }

    fn verdict(
        record: Option<&PulledRecord>,
        intent: bool,
        pod: &[(CredentialSource, String)],
    ) -> Verdict {
        must_attempt_pull(
            record,
            intent,
            "reg/app",
            pod.iter().map(|(s, h)| (s, h.as_str())),
            false,
        )
    }

    #[test]
    fn must_attempt_pull_follows_kubelet() {
        let private = record_with(
            "reg/app",
            PullCredentials {
                kubernetes_secrets: vec![coords("u1", "team", "regcred", "h1")],
                node_pods_accessible: false,
            },
        );
        let public = record_with(
            "reg/app",
            PullCredentials {
                kubernetes_secrets: vec![],
                node_pods_accessible: true,
            },
        );
        let accessible = Verdict::Accessible { add: None };
        // Preloaded (never pulled by berth): exempt by default, verified under AlwaysVerify.
        assert_eq!(verdict(None, false, &[]), accessible);
        assert_eq!(
            must_attempt_pull(None, false, "reg/app", [], true),
            Verdict::MustPull
        );
        // An interrupted pull is not a preloaded image.
        assert_eq!(verdict(None, true, &[]), Verdict::MustPull);
        // Pulled anonymously or with node credentials: everyone.
        assert_eq!(verdict(Some(&public), false, &[]), accessible);
        // Pulled under another repository name only.
        assert_eq!(
            must_attempt_pull(Some(&private), false, "reg/other", [], false),
            Verdict::MustPull
        );
        // No secret, or a secret with other credentials: re-authenticate.
        assert_eq!(verdict(Some(&private), false, &[]), Verdict::MustPull);
        assert_eq!(
            verdict(Some(&private), false, &[secret("u9", "other", "x", "h9")]),
            Verdict::MustPull
        );
        // Same secret: accessible, nothing to update.
        assert_eq!(
            verdict(
                Some(&private),
                false,
                &[secret("u1", "team", "regcred", "h1")]
            ),
            accessible
        );
        // Same credentials in another secret: accessible, and that secret is added.
        assert_eq!(
            verdict(Some(&private), false, &[secret("u2", "dev", "copy", "h1")]),
            Verdict::Accessible {
                add: Some(coords("u2", "dev", "copy", "h1"))
            }
        );
        // The same secret object rotated: accessible, hash updated.
        assert_eq!(
            verdict(
                Some(&private),
                false,
                &[secret("u1", "team", "regcred", "h2")]
            ),
            Verdict::Accessible {
                add: Some(coords("u1", "team", "regcred", "h2"))
            }
        );
        // A recreated secret with the same name (new uid) and new content proves nothing.
        assert_eq!(
            verdict(
                Some(&private),
                false,
                &[secret("u3", "team", "regcred", "h3")]
            ),
            Verdict::MustPull
        );
        // Node credentials of the pod never count as a pod secret.
        let node = (
            CredentialSource::Node { path: "/c".into() },
            "h1".to_string(),
        );
        assert_eq!(verdict(Some(&private), false, &[node]), Verdict::MustPull);
    }

    #[test]
    fn records_and_intents_persist_atomically_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        assert!(store.pulled("sha256:cfg").unwrap().is_none());
        store.write_intent("reg/app:v1", "alice").unwrap();
        store.write_intent("reg/app:v1", "bob").unwrap();
        assert!(store.intent_exists("reg/app:v1").unwrap());
        assert!(!store.intent_exists("reg/app:v2").unwrap());
        store.remove_intent("reg/app:v1", "bob").unwrap();
        assert!(
            store.intent_exists("reg/app:v1").unwrap(),
            "alice's pull is still in flight"
        );
        store
            .record_pull(
                "sha256:cfg",
                "reg/app",
                PulledWith::Secret(coords("u1", "t", "a", "h1")),
            )
            .unwrap();
        store
            .record_pull(
                "sha256:cfg",
                "reg/app",
                PulledWith::Secret(coords("u1", "t", "a", "h2")),
            )
            .unwrap();
        store
            .record_pull(
                "sha256:cfg",
                "reg/app",
                PulledWith::Secret(coords("u2", "t", "b", "h3")),
            )
            .unwrap();
        store.remove_intent("reg/app:v1", "alice").unwrap();
        assert!(!store.intent_exists("reg/app:v1").unwrap());
        store.remove_intent("reg/app:v1", "alice").unwrap();

        let reopened = RecordStore::open(dir.path()).unwrap();
        let r = reopened.pulled("sha256:cfg").unwrap().unwrap();
        assert_eq!(
            r.credential_mapping["reg/app"].kubernetes_secrets,
            [coords("u1", "t", "a", "h2"), coords("u2", "t", "b", "h3")]
        );
        assert!(!r.credential_mapping["reg/app"].node_pods_accessible);
        reopened
            .record_pull("sha256:cfg", "reg/app", PulledWith::Node)
            .unwrap();
        let r = reopened.pulled("sha256:cfg").unwrap().unwrap();
        assert!(r.credential_mapping["reg/app"].node_pods_accessible);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("pulled"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".json"));
        // No credential value can be in the file: only hashes were ever given to it.
        let text = std::fs::read_to_string(dir.path().join("pulled").join(&names[0])).unwrap();
        assert!(text.contains("\"credentialHash\": \"h2\""), "{text}");
    }

    #[test]
    fn a_corrupt_record_is_an_error_and_the_next_pull_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("pulled").join(file_name("sha256:cfg")),
            b"{not json",
        )
        .unwrap();
        let e = store.pulled("sha256:cfg").unwrap_err();
        assert!(matches!(e, RecordError::Corrupt { .. }), "{e}");
        store
            .record_pull("sha256:cfg", "reg/app", PulledWith::Node)
            .unwrap();
        assert!(store.pulled("sha256:cfg").unwrap().is_some());
    }
}
