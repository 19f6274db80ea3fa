//! The encryption key file and the in-memory keyring built from it. It owns the file format
//! (JSON `{"keys":[{"name":"key-1","secret":"<base64 of 32 bytes>"}]}`, the first key encrypts,
//! every listed key decrypts), creating it on first start with mode 0600, atomic replacement
//! (write a temporary file, fsync, rename, fsync the directory) and the AES-GCM-256 envelope
//! `k8s:enc:aesgcm:v1:<keyname>:<12-byte nonce><ciphertext+tag>` with the storage key as
//! associated data (as kube-apiserver does), so a ciphertext cannot be moved to another object.
//! It must never let key material reach an error, a log or `Debug` output, and never start with an
//! unreadable or malformed key file (fail closed).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::StoreError;

/// Every encrypted record starts with this.
pub(crate) const ENVELOPE_PREFIX: &[u8] = b"k8s:enc:";
const AESGCM_PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Serialize, Deserialize)]
struct FileFormat {
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
struct FileKey {
    name: String,
    secret: String,
}

impl Drop for FileKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// One named AES-256 key.
pub(crate) struct NamedKey {
    pub(crate) name: String,
    material: [u8; 32],
    cipher: Aes256Gcm,
}

impl Drop for NamedKey {
    fn drop(&mut self) {
        self.material.zeroize();
    }
}

impl NamedKey {
    fn new(name: String, material: [u8; 32]) -> Self {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&material));
        NamedKey {
            name,
            material,
            cipher,
        }
    }

    /// A fresh random key from the operating system's RNG.
    pub(crate) fn generate(name: String) -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut material = [0u8; 32];
        material.copy_from_slice(&key);
        NamedKey::new(name, material)
    }
}

/// The keys of a key file, primary (encrypting) key first.
pub(crate) struct Keyring {
    pub(crate) keys: Vec<NamedKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.name))
            .finish()
    }
}

/// Why a record could not be decrypted (the key name is reported separately).
pub(crate) enum Unreadable {
    UnknownKey(String),
    Malformed(&'static str, String),
    Failed(String),
}

impl Keyring {
    pub(crate) fn primary(&self) -> &NamedKey {
        &self.keys[0]
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.name.clone()).collect()
    }

    /// Encrypt `plaintext` for storage key `key` with the primary key.
    pub(crate) fn encrypt(&self, key: &str, plaintext: &[u8]) -> Vec<u8> {
        let primary = self.primary();
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = primary
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: key.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail below 64 GiB");
        let mut out = Vec::with_capacity(
            AESGCM_PREFIX.len() + primary.name.len() + 1 + NONCE_LEN + sealed.len(),
        );
        out.extend_from_slice(AESGCM_PREFIX);
        out.extend_from_slice(primary.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypt a stored record. `Ok(None)` means the record is not an envelope (plaintext
    /// written before encryption was enabled) and is returned as is by the caller.
    pub(crate) fn decrypt(&self, key: &str, stored: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if !stored.starts_with(ENVELOPE_PREFIX) {
            return Ok(None);
        }
        let Some(rest) = stored.strip_prefix(AESGCM_PREFIX) else {
            let provider = stored[ENVELOPE_PREFIX.len()..]
                .split(|b| *b == b':')
                .next()
                .map(|p| String::from_utf8_lossy(&p[..p.len().min(32)]).into_owned())
                .unwrap_or_default();
            return Err(Unreadable::Malformed(
                "unsupported encryption provider",
                provider,
            ));
        };
        let Some(colon) = rest.iter().take(256).position(|b| *b == b':') else {
            return Err(Unreadable::Malformed(
                "record has no key name",
                String::new(),
            ));
        };
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let body = &rest[colon + 1..];
        let Some(named) = self.keys.iter().find(|k| k.name == name) else {
            return Err(Unreadable::UnknownKey(name));
        };
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(Unreadable::Malformed("record is truncated", name));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        named
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .map(Some)
            .map_err(|_| Unreadable::Failed(name))
    }
}

/// The key name of an encrypted record, if it is an AES-GCM envelope.
pub(crate) fn envelope_key_name(stored: &[u8]) -> Option<&str> {
    let rest = stored.strip_prefix(AESGCM_PREFIX)?;
    let colon = rest.iter().take(256).position(|b| *b == b':')?;
    std::str::from_utf8(&rest[..colon]).ok()
}

fn key_file_error(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::KeyFile {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A key name not yet in `existing`, derived from the current time.
pub(crate) fn new_key_name(existing: &[String]) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("key-{secs}");
    let mut name = base.clone();
    let mut n = 1;
    while existing.contains(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Load the key file, or create it with one fresh key (mode 0600) when it does not exist.
pub(crate) fn load_or_create(path: &Path) -> Result<Keyring, StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "encryption key file is readable by group or others; run chmod 600 on it"
                );
            }
            load(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ring = Keyring {
                keys: vec![NamedKey::generate(new_key_name(&[]))],
            };
            save(path, &ring)?;
            tracing::info!(path = %path.display(), key = %ring.primary().name, "created encryption key file");
            Ok(ring)
        }
        Err(e) => Err(key_file_error(
            path,
            format!("cannot read: {e}; fix its permissions"),
        )),
    }
}

/// Load and validate an existing key file.
pub(crate) fn load(path: &Path) -> Result<Keyring, StoreError> {
    let mut raw = std::fs::read(path)
        .map_err(|e| key_file_error(path, format!("cannot read: {e}; fix its permissions")))?;
    let parsed: Result<FileFormat, _> = serde_json::from_slice(&raw);
    raw.zeroize();
    // serde_json messages can quote the offending input, so report only the position.
    let parsed = parsed.map_err(|e| {
        key_file_error(
            path,
            format!(
                "not a valid key file at line {} column {}; expected {{\"keys\":[{{\"name\":\"...\",\"secret\":\"<base64 of 32 bytes>\"}}]}}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if parsed.keys.is_empty() {
        return Err(key_file_error(path, "lists no keys; add at least one key"));
    }
    let mut keys: Vec<NamedKey> = Vec::with_capacity(parsed.keys.len());
    for (i, entry) in parsed.keys.iter().enumerate() {
        if !valid_name(&entry.name) {
            return Err(key_file_error(
                path,
                format!(
                    "keys[{i}].name must be 1-64 characters of letters, digits, '-', '_' or '.'"
                ),
            ));
        }
        if keys.iter().any(|k| k.name == entry.name) {
            return Err(key_file_error(
                path,
                format!(
                    "keys[{i}].name {:?} is listed twice; key names must be unique",
                    entry.name
                ),
            ));
        }
        let mut decoded = STANDARD.decode(entry.secret.trim()).map_err(|_| {
            key_file_error(
                path,
                format!("keys[{i}].secret ({}) is not valid base64", entry.name),
            )
        })?;
        if decoded.len() != 32 {
            let len = decoded.len();
            decoded.zeroize();
            return Err(key_file_error(
                path,
                format!(
                    "keys[{i}].secret ({}) decodes to {len} bytes; AES-256 needs exactly 32",
                    entry.name
                ),
            ));
        }
        let mut material = [0u8; 32];
        material.copy_from_slice(&decoded);
        decoded.zeroize();
        keys.push(NamedKey::new(entry.name.clone(), material));
    }
    Ok(Keyring { keys })
}

/// Atomically replace the key file with `ring` (mode 0600).
pub(crate) fn save(path: &Path, ring: &Keyring) -> Result<(), StoreError> {
    let io = |context: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| StoreError::Io {
            path: p,
            context,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create key file directory", dir))?;
    let format = FileFormat {
        keys: ring
            .keys
            .iter()
            .map(|k| FileKey {
                name: k.name.clone(),
                secret: STANDARD.encode(k.material),
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&format).expect("key file serialises");
    json.push(b'\n');
    drop(format);

    let mut tmp: PathBuf = path.as_os_str().to_owned().into();
    tmp.as_mut_os_string().push(".tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()
    })();
    json.zeroize();
    written.map_err(io("write key file", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace key file", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync key file directory", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str]) -> Keyring {
        Keyring {
            keys: names
                .iter()
                .map(|n| NamedKey::generate((*n).into()))
                .collect(),
        }
    }

    #[test]
    fn envelope_has_kube_prefix_and_round_trips() {
        let ring = ring(&["k1"]);
        let sealed = ring.encrypt("/registry/core/secrets/ns/a", b"canary");
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert_eq!(envelope_key_name(&sealed), Some("k1"));
        let opened = ring
            .decrypt("/registry/core/secrets/ns/a", &sealed)
            .ok()
            .flatten();
        assert_eq!(opened.as_deref(), Some(b"canary".as_slice()));
    }

    #[test]
    fn nonce_differs_per_write() {
        let ring = ring(&["k1"]);
        let a = ring.encrypt("/k", b"same");
        let b = ring.encrypt("/k", b"same");
        assert_ne!(a, b);
    }

    #[test]
    fn ciphertext_moved_to_another_key_fails() {
        let ring = ring(&["k1"]);
        let sealed = ring.encrypt("/registry/core/secrets/ns/a", b"canary");
        assert!(matches!(
            ring.decrypt("/registry/core/secrets/ns/b", &sealed),
            Err(Unreadable::Failed(name)) if name == "k1"
        ));
    }

    #[test]
    fn unknown_key_name_is_reported() {
        let sealed = ring(&["old"]).encrypt("/k", b"x");
        assert!(
            matches!(ring(&["new"]).decrypt("/k", &sealed), Err(Unreadable::UnknownKey(n)) if n == "old")
        );
    }

    #[test]
    fn plaintext_is_not_an_envelope() {
        assert!(matches!(ring(&["k"]).decrypt("/k", b"{\"a\":1}"), Ok(None)));
    }

    #[test]
    fn key_file_is_created_with_0600_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load(&path).unwrap();
        assert_eq!(created.names(), loaded.names());
        let sealed = created.encrypt("/k", b"v");
        assert!(loaded.decrypt("/k", &sealed).ok().flatten().is_some());
    }

    #[test]
    fn malformed_key_file_fails_closed_without_echoing_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(
            &path,
            br#"{"keys":[{"name":"a","secret":"c2VjcmV0LXZhbHVl"}]}"#,
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("32"), "{err}");
        assert!(!err.contains("c2VjcmV0LXZhbHVl"), "{err}");

        std::fs::write(&path, br#"{"keys":[{"name":"a","secret":12345678}]}"#).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("12345678"), "{err}");

        std::fs::write(&path, br#"{"keys":[]}"#).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("no keys"));
    }

    #[test]
    fn keyring_debug_shows_names_only() {
        let ring = ring(&["k1"]);
        let material = STANDARD.encode(ring.keys[0].material);
        let debug = format!("{ring:?}");
        assert_eq!(debug, "[\"k1\"]");
        assert!(!debug.contains(&material));
    }
}
