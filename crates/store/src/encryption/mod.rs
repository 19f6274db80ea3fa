//! Encryption at rest: [`Encrypted`] wraps any [`Storage`] and encrypts the values of keys under
//! configured prefixes (the apiserver passes `/registry/core/secrets/`) with AES-GCM-256, so the
//! backend, its files, its write-ahead log and its history only ever hold ciphertext. It owns the
//! key file lifecycle and key rotation; it must never return ciphertext or garbage as a value,
//! never put plaintext or key material in an error or log, and never drop a key that a record
//! still uses.
//!
//! Why a wrapper rather than a transformer inside the SQLite backend: the same wrapper serves every
//! backend (SQLite today, etcd later) with one implementation and one test suite, and the backend
//! stays a byte store. The price is that rotation rewrites through the public trait (compare-and-
//! swap updates, visible to watchers as MODIFIED events, like kube's documented
//! `kubectl replace` step).
//!
//! Reads: every listed key decrypts; values without the `k8s:enc:` prefix are plaintext written
//! before encryption was enabled (kube's `identity` provider) and are returned as they are until
//! the next rotation encrypts them. A record that cannot be decrypted fails that object only
//! ([`StoreError::Decrypt`], naming the key name); a list containing it fails as a whole, as in
//! kube-apiserver, while `get` of every other object keeps working. A watch yields the error in
//! place of that event and continues.
//!
//! Rotation ([`Encrypted::rotate`]) is crash-safe and resumable: (1) a new key is generated and
//! written to the key file *first* (primary), the old keys stay listed; (2) every record not under
//! the primary key is re-encrypted with a compare-and-swap update; (3) the history is compacted
//! so no old ciphertext (or pre-encryption plaintext) remains in the backend; (4) only then are the
//! old keys removed from the key file. A crash at any point leaves every record readable with the
//! keys in the file; calling `rotate` again on a key file that lists several keys resumes the
//! interrupted rotation with its primary key instead of adding another. Compaction in step 3
//! expires watches and continue tokens older than the rotation: clients re-list (410).

mod keyfile;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Mutex, RwLock};

type SharedRing = Arc<std::sync::RwLock<Arc<Keyring>>>;

use crate::{
    Deleted, KeyValue, ListOptions, ListResult, Storage, StoreError, WatchEvent, WatchStream,
};
use keyfile::{Keyring, NamedKey, Unreadable, envelope_key_name};

/// Records rewritten per listed page during rotation.
const ROTATION_PAGE: u64 = 256;
/// Verification passes after the first before rotation gives up (concurrent old-key writers are
/// excluded by the write gate, so the second pass normally finds nothing).
const ROTATION_PASSES: usize = 4;

/// Which keys are encrypted and where the key file lives.
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    /// Storage key prefixes whose values are encrypted, e.g. `/registry/core/secrets/`.
    pub prefixes: Vec<String>,
    /// The key file; created with one fresh key (mode 0600) when missing.
    pub key_file: PathBuf,
}

/// Limits for one [`Encrypted::rotate_with`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotateOptions {
    /// Re-encrypt at most this many records, then stop with both keys still listed (the next
    /// `rotate` resumes). `None`: run to completion.
    pub max_records: Option<u64>,
}

/// What a rotation run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The key every record is (or, if incomplete, will be) encrypted with.
    pub primary: String,
    /// Records re-encrypted in this run.
    pub rewritten: u64,
    /// Keys removed from the key file (empty while incomplete).
    pub removed_keys: Vec<String>,
    /// False when the run stopped early ([`RotateOptions::max_records`]); rotate again.
    pub complete: bool,
}

/// Which key each encrypted record uses (for a `status` command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionStatus {
    /// Key names in the key file, primary first.
    pub keys: Vec<String>,
    /// Record count per key name; plaintext records are counted under `"identity"`.
    pub records_per_key: std::collections::BTreeMap<String, u64>,
    /// True when the key file lists more than one key: a rotation is in progress.
    pub rotation_in_progress: bool,
}

/// A [`Storage`] that encrypts values under configured prefixes before they reach `S`.
pub struct Encrypted<S> {
    inner: S,
    prefixes: Vec<String>,
    key_file: PathBuf,
    /// The keyring in use; watches share it so they follow rotations.
    ring: SharedRing,
    /// Writers hold a read guard from encryption until the backend acknowledged, so swapping the
    /// keyring (under the write guard) waits for in-flight writes that used the old primary key.
    gate: RwLock<()>,
    rotation: Mutex<()>,
}

impl<S> std::fmt::Debug for Encrypted<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("prefixes", &self.prefixes)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Encrypted<S> {
    /// Wrap `inner`, loading the key file (or creating it on first start). Fails closed when the
    /// key file is unreadable or malformed.
    pub fn open(inner: S, config: EncryptionConfig) -> Result<Self, StoreError> {
        if config.prefixes.iter().any(|p| p.is_empty()) {
            return Err(StoreError::InvalidArgument(
                "an encrypted prefix must not be empty; name the resource prefix, e.g. /registry/core/secrets/".into(),
            ));
        }
        let ring = keyfile::load_or_create(&config.key_file)?;
        Ok(Encrypted {
            inner,
            prefixes: config.prefixes,
            key_file: config.key_file,
            ring: Arc::new(std::sync::RwLock::new(Arc::new(ring))),
            gate: RwLock::new(()),
            rotation: Mutex::new(()),
        })
    }

    /// The wrapped backend (it holds ciphertext for encrypted prefixes).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The key file this wrapper reads and rotates.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    fn encrypted(&self, key: &str) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn open_value(&self, ring: &Keyring, key: &str, stored: Bytes) -> Result<Bytes, StoreError> {
        if !self.encrypted(key) {
            return Ok(stored);
        }
        match ring.decrypt(key, &stored) {
            Ok(Some(plain)) => Ok(Bytes::from(plain)),
            Ok(None) => Ok(stored),
            Err(why) => Err(self.decrypt_error(key, why)),
        }
    }

    fn decrypt_error(&self, key: &str, why: Unreadable) -> StoreError {
        let (key_name, reason) = match why {
            Unreadable::UnknownKey(name) => (
                name,
                format!(
                    "the key is not in the key file {}; add that key back to the key file",
                    self.key_file.display()
                ),
            ),
            Unreadable::Malformed(what, name) => (
                name,
                format!(
                    "{what}; the stored record is damaged, restore it from a backup or delete it"
                ),
            ),
            Unreadable::Failed(name) => (
                name,
                format!(
                    "authentication failed: the key material for this name in {} is not the one \
                     the record was written with, or the record was modified",
                    self.key_file.display()
                ),
            ),
        };
        StoreError::Decrypt {
            key: key.to_owned(),
            key_name,
            reason,
        }
    }

    fn seal(&self, ring: &Keyring, key: &str, value: Bytes) -> Bytes {
        if self.encrypted(key) {
            Bytes::from(ring.encrypt(key, &value))
        } else {
            value
        }
    }

    fn current_ring(&self) -> Arc<Keyring> {
        load_ring(&self.ring)
    }

    /// Swap the keyring once no write that encrypted with the previous one is in flight.
    async fn install_ring(&self, ring: Arc<Keyring>) {
        let _gate = self.gate.write().await;
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
    }

    /// Rotate to a new key and re-encrypt everything; see the module documentation.
    pub async fn rotate(&self) -> Result<RotationReport, StoreError> {
        self.rotate_with(RotateOptions::default()).await
    }

    /// [`Encrypted::rotate`] with limits (an incomplete run leaves a resumable state).
    pub async fn rotate_with(&self, opts: RotateOptions) -> Result<RotationReport, StoreError> {
        let _exclusive = self.rotation.lock().await;
        // The file is the source of truth: another run may have been interrupted after writing it.
        let on_disk = keyfile::load(&self.key_file)?;
        let ring = if on_disk.keys.len() == 1 {
            let mut keys = vec![NamedKey::generate(keyfile::new_key_name(&on_disk.names()))];
            keys.extend(on_disk.keys);
            let ring = Keyring { keys };
            keyfile::save(&self.key_file, &ring)?;
            tracing::info!(key_file = %self.key_file.display(), new_key = %ring.primary().name, "encryption key rotation started");
            ring
        } else {
            tracing::info!(key_file = %self.key_file.display(), primary = %on_disk.primary().name, "resuming interrupted encryption key rotation");
            on_disk
        };
        let ring = Arc::new(ring);
        self.install_ring(Arc::clone(&ring)).await;
        let primary = ring.primary().name.clone();

        let mut rewritten = 0u64;
        let mut passes = 0;
        loop {
            let before = rewritten;
            for prefix in &self.prefixes {
                if !self
                    .reencrypt_prefix(&ring, prefix, &mut rewritten, opts.max_records)
                    .await?
                {
                    return Ok(RotationReport {
                        primary,
                        rewritten,
                        removed_keys: Vec::new(),
                        complete: false,
                    });
                }
            }
            passes += 1;
            if rewritten == before {
                break;
            }
            if passes > ROTATION_PASSES {
                return Err(StoreError::Rotation {
                    reason: format!(
                        "records under the old keys kept appearing after {passes} passes; \
                         stop other writers and run the rotation again"
                    ),
                });
            }
        }

        // No record uses an old key any more; remove old ciphertext from history, then the keys.
        let revision = self.inner.current_revision().await?;
        self.inner.compact(revision).await?;
        let removed_keys: Vec<String> = ring.names().into_iter().skip(1).collect();
        if !removed_keys.is_empty() {
            let material = keyfile::load(&self.key_file)?;
            let keep: Vec<NamedKey> = material
                .keys
                .into_iter()
                .filter(|k| k.name == primary)
                .collect();
            if keep.len() != 1 {
                return Err(StoreError::Rotation {
                    reason: format!(
                        "key file {} changed during rotation (primary key {primary:?} missing); \
                         restore it and run the rotation again",
                        self.key_file.display()
                    ),
                });
            }
            let final_ring = Keyring { keys: keep };
            keyfile::save(&self.key_file, &final_ring)?;
            self.install_ring(Arc::new(final_ring)).await;
        }
        tracing::info!(primary = %primary, rewritten, removed = ?removed_keys, "encryption key rotation complete");
        Ok(RotationReport {
            primary,
            rewritten,
            removed_keys,
            complete: true,
        })
    }

    /// Re-encrypt every record under `prefix` not using the primary key. Returns false when the
    /// record budget ran out.
    async fn reencrypt_prefix(
        &self,
        ring: &Keyring,
        prefix: &str,
        rewritten: &mut u64,
        budget: Option<u64>,
    ) -> Result<bool, StoreError> {
        let primary = ring.primary().name.as_str();
        let mut token = None;
        loop {
            let page = match self
                .inner
                .list(
                    prefix,
                    ListOptions {
                        limit: Some(ROTATION_PAGE),
                        continue_token: token.take(),
                        revision: None,
                    },
                )
                .await
            {
                Ok(page) => page,
                // History moved on while paging: start the prefix over (done records are skipped).
                Err(StoreError::Expired { .. }) => continue,
                Err(e) => return Err(e),
            };
            for item in page.items {
                let mut current = Some(item);
                while let Some(record) = current.take() {
                    if envelope_key_name(&record.value) == Some(primary) {
                        break;
                    }
                    if budget.is_some_and(|max| *rewritten >= max) {
                        return Ok(false);
                    }
                    let plain = match ring.decrypt(&record.key, &record.value) {
                        Ok(Some(plain)) => plain,
                        Ok(None) => record.value.to_vec(),
                        Err(why) => {
                            let err = self.decrypt_error(&record.key, why);
                            return Err(StoreError::Rotation {
                                reason: format!(
                                    "{err}; no key was removed, fix this record and rotate again"
                                ),
                            });
                        }
                    };
                    let sealed = Bytes::from(ring.encrypt(&record.key, &plain));
                    match self
                        .inner
                        .update(&record.key, record.mod_revision, sealed)
                        .await
                    {
                        Ok(_) => *rewritten += 1,
                        Err(StoreError::Conflict { .. }) => {
                            current = self.inner.get(&record.key).await?
                        }
                        Err(StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            match page.continue_token {
                Some(next) => token = Some(next),
                None => return Ok(true),
            }
        }
    }

    /// Key usage per record and whether a rotation is in progress.
    pub async fn status(&self) -> Result<EncryptionStatus, StoreError> {
        let ring = keyfile::load(&self.key_file)?;
        let mut records_per_key = std::collections::BTreeMap::new();
        for prefix in &self.prefixes {
            let mut token = None;
            loop {
                let page = self
                    .inner
                    .list(
                        prefix,
                        ListOptions {
                            limit: Some(ROTATION_PAGE),
                            continue_token: token.take(),
                            revision: None,
                        },
                    )
                    .await?;
                for item in &page.items {
                    let name = match envelope_key_name(&item.value) {
                        Some(name) => name.to_owned(),
                        None if item.value.starts_with(keyfile::ENVELOPE_PREFIX) => {
                            "unsupported".to_owned()
                        }
                        None => "identity".to_owned(),
                    };
                    *records_per_key.entry(name).or_insert(0) += 1;
                }
                match page.continue_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(EncryptionStatus {
            keys: ring.names(),
            rotation_in_progress: ring.keys.len() > 1,
            records_per_key,
        })
    }
}

#[async_trait::async_trait]
impl<S: Storage> Storage for Encrypted<S> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let Some(mut kv) = self.inner.get(key).await? else {
            return Ok(None);
        };
        let ring = self.current_ring();
        kv.value = self.open_value(&ring, key, kv.value)?;
        Ok(Some(kv))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let mut page = self.inner.list(prefix, opts).await?;
        let ring = self.current_ring();
        for item in &mut page.items {
            let stored = std::mem::take(&mut item.value);
            item.value = self.open_value(&ring, &item.key, stored)?;
        }
        Ok(page)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        let _gate = self.gate.read().await;
        let sealed = self.seal(&self.current_ring(), key, value);
        self.inner.create(key, sealed).await
    }

    async fn update(
        &self,
        key: &str,
        expected_mod_revision: u64,
        value: Bytes,
    ) -> Result<u64, StoreError> {
        let _gate = self.gate.read().await;
        let sealed = self.seal(&self.current_ring(), key, value);
        self.inner.update(key, expected_mod_revision, sealed).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<Deleted, StoreError> {
        if !self.encrypted(key) {
            return self.inner.delete(key, expected_mod_revision).await;
        }
        // Refuse to delete (and so to return) a record that cannot be decrypted: read it first
        // and delete exactly that revision.
        loop {
            let Some(current) = self.inner.get(key).await? else {
                return Err(StoreError::NotFound {
                    key: key.to_owned(),
                });
            };
            if let Some(expected) = expected_mod_revision
                && expected != current.mod_revision
            {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: current.mod_revision,
                });
            }
            let ring = self.current_ring();
            let plain = self.open_value(&ring, key, current.value.clone())?;
            match self.inner.delete(key, Some(current.mod_revision)).await {
                Ok(mut deleted) => {
                    deleted.item.value = plain;
                    return Ok(deleted);
                }
                Err(StoreError::Conflict { .. }) if expected_mod_revision.is_none() => continue,
                Err(StoreError::Conflict { current: now, .. }) => {
                    return Err(StoreError::Conflict {
                        key: key.to_owned(),
                        expected: current.mod_revision,
                        current: now,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, StoreError> {
        let inner = self.inner.watch(prefix, from_revision).await?;
        let prefixes = self.prefixes.clone();
        let opener = Opener {
            prefixes,
            key_file: self.key_file.clone(),
            ring: Arc::clone(&self.ring),
        };
        Ok(inner
            .map(move |item| {
                let event = item?;
                opener.open_event(event)
            })
            .boxed())
    }

    async fn current_revision(&self) -> Result<u64, StoreError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
}

/// Decrypts watch events with the keyring current when each event is delivered, so a watch
/// follows rotations.
struct Opener {
    prefixes: Vec<String>,
    key_file: PathBuf,
    ring: SharedRing,
}

fn load_ring(ring: &SharedRing) -> Arc<Keyring> {
    Arc::clone(&ring.read().unwrap_or_else(|p| p.into_inner()))
}

impl Opener {
    fn open_event(&self, mut event: WatchEvent) -> Result<WatchEvent, StoreError> {
        if !self
            .prefixes
            .iter()
            .any(|p| event.key.starts_with(p.as_str()))
        {
            return Ok(event);
        }
        match load_ring(&self.ring).decrypt(&event.key, &event.value) {
            Ok(Some(plain)) => event.value = Bytes::from(plain),
            Ok(None) => {}
            Err(why) => {
                let (key_name, what) = match why {
                    Unreadable::UnknownKey(n) => (n, "the key is not in the key file"),
                    Unreadable::Malformed(what, n) => (n, what),
                    Unreadable::Failed(n) => (n, "authentication failed"),
                };
                return Err(StoreError::Decrypt {
                    key: event.key,
                    key_name,
                    reason: format!("{what} ({})", self.key_file.display()),
                });
            }
        }
        Ok(event)
    }
}
