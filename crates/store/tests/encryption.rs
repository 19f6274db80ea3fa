//! Encryption at rest over the real SQLite backend: no plaintext in the database, WAL or shared
//! memory files, rotation without loss (including an interrupted rotation that is resumed), per-
//! object errors for undecryptable records, fail-closed key files, and the full conformance suite
//! run through the encrypting wrapper.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use store::encryption::{Encrypted, EncryptionConfig, RotateOptions};
use store::sqlite::{SqliteConfig, SqliteStore};
use store::suite::{Backend, BoxFuture, next_events};
use store::{EventKind, ListOptions, Storage, StoreError};

const SECRETS: &str = "/registry/core/secrets/";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn db(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }
    fn key_file(&self) -> PathBuf {
        self.dir.path().join("encryption-keys.json")
    }
    fn sqlite(&self) -> SqliteStore {
        SqliteStore::open(SqliteConfig::new(self.db())).unwrap()
    }
    fn open(&self) -> Encrypted<SqliteStore> {
        Encrypted::open(
            self.sqlite(),
            EncryptionConfig {
                prefixes: vec![SECRETS.into()],
                key_file: self.key_file(),
            },
        )
        .unwrap()
    }
    /// Every file SQLite keeps for the database.
    fn files(&self) -> Vec<PathBuf> {
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut p = self.db().into_os_string();
                p.push(suffix);
                PathBuf::from(p)
            })
            .collect()
    }
}

fn contains(path: &Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(_) => false,
    }
}

fn secret(name: &str) -> String {
    format!("{SECRETS}default/{name}")
}

fn key_names(path: &Path) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_wal_and_shm_never_contain_the_plaintext_canary() {
    let env = Env::new();
    let canary = b"CANARY-d41d8cd98f00b204e980";
    let control = b"CONTROL-plain-configmap-7788";
    {
        let s = env.open();
        let r = s
            .create(&secret("a"), Bytes::from_static(canary))
            .await
            .unwrap();
        s.update(
            &secret("a"),
            r,
            Bytes::from([canary.as_slice(), b"-v2"].concat()),
        )
        .await
        .unwrap();
        s.create(&secret("b"), Bytes::from_static(canary))
            .await
            .unwrap();
        s.delete(&secret("b"), None).await.unwrap();
        s.create(
            "/registry/core/configmaps/default/c",
            Bytes::from_static(control),
        )
        .await
        .unwrap();
        assert_eq!(
            s.get(&secret("a")).await.unwrap().unwrap().value,
            [canary.as_slice(), b"-v2"].concat()
        );
        let raw = s.inner().get(&secret("a")).await.unwrap().unwrap();
        assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:"));
        // While open: the WAL holds the recent pages.
        let files = env.files();
        assert!(
            files.iter().any(|f| contains(f, control)),
            "the scan sees stored bytes"
        );
        for f in &files {
            assert!(
                !contains(f, canary),
                "plaintext canary found in {}",
                f.display()
            );
        }
    }
    for f in env.files() {
        assert!(
            !contains(&f, canary),
            "plaintext canary found in {}",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_written_before_encryption_is_gone_after_rotation() {
    let env = Env::new();
    let canary = b"CANARY-before-encryption-5150";
    {
        let plain = env.sqlite();
        let r = plain
            .create(&secret("old"), Bytes::from_static(canary))
            .await
            .unwrap();
        plain
            .update(
                &secret("old"),
                r,
                Bytes::from([canary.as_slice(), b"-2"].concat()),
            )
            .await
            .unwrap();
    }
    assert!(env.files().iter().any(|f| contains(f, canary)));
    {
        let s = env.open();
        // Read as plaintext (identity) until rotated.
        assert_eq!(
            s.get(&secret("old")).await.unwrap().unwrap().value,
            [canary.as_slice(), b"-2"].concat()
        );
        let report = s.rotate().await.unwrap();
        assert!(report.complete);
        assert_eq!(report.rewritten, 1);
        assert_eq!(
            s.get(&secret("old")).await.unwrap().unwrap().value,
            [canary.as_slice(), b"-2"].concat()
        );
    }
    for f in env.files() {
        assert!(
            !contains(&f, canary),
            "plaintext remnant in {}",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_loses_nothing() {
    let env = Env::new();
    let s = env.open();
    let first_key = key_names(&env.key_file());
    assert_eq!(first_key.len(), 1);
    for i in 0..40 {
        s.create(
            &secret(&format!("s{i:02}")),
            Bytes::from(format!("value-{i}")),
        )
        .await
        .unwrap();
    }
    s.create(
        "/registry/core/configmaps/default/x",
        Bytes::from_static(b"plain"),
    )
    .await
    .unwrap();
    let report = s.rotate().await.unwrap();
    assert!(report.complete);
    assert_eq!(report.rewritten, 40);
    assert_eq!(report.removed_keys, first_key);
    assert_eq!(
        key_names(&env.key_file()),
        std::slice::from_ref(&report.primary)
    );

    let list = s.list(SECRETS, ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), 40);
    for (i, kv) in list.items.iter().enumerate() {
        assert_eq!(kv.value, Bytes::from(format!("value-{i}")));
    }
    let raw = s
        .inner()
        .list(SECRETS, ListOptions::default())
        .await
        .unwrap();
    let prefix = format!("k8s:enc:aesgcm:v1:{}:", report.primary);
    assert!(
        raw.items
            .iter()
            .all(|kv| kv.value.starts_with(prefix.as_bytes()))
    );
    drop(s);

    // A fresh process with only the new key file reads everything.
    let s = env.open();
    for i in 0..40 {
        let kv = s.get(&secret(&format!("s{i:02}"))).await.unwrap().unwrap();
        assert_eq!(kv.value, Bytes::from(format!("value-{i}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_rotation_leaves_everything_readable_and_resumes() {
    let env = Env::new();
    let old_key;
    let new_key;
    {
        let s = env.open();
        old_key = key_names(&env.key_file())[0].clone();
        for i in 0..30 {
            s.create(
                &secret(&format!("s{i:02}")),
                Bytes::from(format!("value-{i}")),
            )
            .await
            .unwrap();
        }
        // "Crash" after 10 records: nothing after the budget runs.
        let report = s
            .rotate_with(RotateOptions {
                max_records: Some(10),
            })
            .await
            .unwrap();
        assert!(!report.complete);
        assert_eq!(report.rewritten, 10);
        new_key = report.primary;
        assert_eq!(
            key_names(&env.key_file()),
            [new_key.clone(), old_key.clone()]
        );
    }
    let s = env.open();
    for i in 0..30 {
        let kv = s.get(&secret(&format!("s{i:02}"))).await.unwrap().unwrap();
        assert_eq!(kv.value, Bytes::from(format!("value-{i}")));
    }
    let status = s.status().await.unwrap();
    assert!(status.rotation_in_progress);
    assert_eq!(status.records_per_key.get(&new_key), Some(&10));
    assert_eq!(status.records_per_key.get(&old_key), Some(&20));
    // Writes during the interrupted state use the new primary key.
    s.create(&secret("during"), Bytes::from_static(b"d"))
        .await
        .unwrap();

    let report = s.rotate().await.unwrap();
    assert!(report.complete);
    assert_eq!(
        report.primary, new_key,
        "resumes with the interrupted rotation's key"
    );
    assert_eq!(report.rewritten, 20);
    assert_eq!(report.removed_keys, [old_key]);
    assert_eq!(key_names(&env.key_file()), std::slice::from_ref(&new_key));
    let status = s.status().await.unwrap();
    assert!(!status.rotation_in_progress);
    assert_eq!(status.records_per_key.len(), 1);
    assert_eq!(status.records_per_key.get(&new_key), Some(&31));
    assert_eq!(
        s.list(SECRETS, ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        31
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_concurrent_writes_leaves_no_record_on_the_old_key() {
    let env = Env::new();
    let s = Arc::new(env.open());
    for i in 0..50 {
        s.create(
            &secret(&format!("pre{i:02}")),
            Bytes::from(format!("pre-{i}")),
        )
        .await
        .unwrap();
    }
    let writer = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let mut written = 0;
            for i in 0..150 {
                let key = secret(&format!("live{i:03}"));
                s.create(&key, Bytes::from(format!("live-{i}")))
                    .await
                    .unwrap();
                // Updates of pre-existing records race with their re-encryption.
                let pre = secret(&format!("pre{:02}", i % 50));
                let kv = s.get(&pre).await.unwrap().unwrap();
                match s
                    .update(
                        &pre,
                        kv.mod_revision,
                        Bytes::from(format!("pre-{}-{i}", i % 50)),
                    )
                    .await
                {
                    Ok(_) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                written += 1;
            }
            written
        })
    };
    let report = s.rotate().await.unwrap();
    assert!(report.complete);
    assert_eq!(writer.await.unwrap(), 150);
    let status = s.status().await.unwrap();
    assert_eq!(status.keys, std::slice::from_ref(&report.primary));
    assert_eq!(
        status.records_per_key.len(),
        1,
        "{:?}",
        status.records_per_key
    );
    assert_eq!(status.records_per_key.get(&report.primary), Some(&200));
    let list = s.list(SECRETS, ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_record_errors_for_that_object_only() {
    let env = Env::new();
    let s = env.open();
    s.create(&secret("good"), Bytes::from_static(b"good-value"))
        .await
        .unwrap();
    s.create(&secret("bad"), Bytes::from_static(b"CANARY-bad-value"))
        .await
        .unwrap();
    let raw = s.inner().get(&secret("bad")).await.unwrap().unwrap();
    let mut damaged = raw.value.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    s.inner()
        .update(&secret("bad"), raw.mod_revision, Bytes::from(damaged))
        .await
        .unwrap();

    assert_eq!(
        s.get(&secret("good")).await.unwrap().unwrap().value,
        Bytes::from_static(b"good-value")
    );
    let key_name = key_names(&env.key_file())[0].clone();
    let err = s.get(&secret("bad")).await.unwrap_err();
    match &err {
        StoreError::Decrypt {
            key, key_name: k, ..
        } => {
            assert_eq!(key, &secret("bad"));
            assert_eq!(k, &key_name);
        }
        other => panic!("expected a decrypt error, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&key_name) && text.contains("authentication failed"),
        "{text}"
    );
    assert!(
        !text.contains("CANARY") && !text.contains("k8s:enc"),
        "{text}"
    );
    assert_eq!(err.http_status_hint(), 500);

    let err = s.list(SECRETS, ListOptions::default()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Decrypt { ref key, .. } if key == &secret("bad")),
        "{err}"
    );
    let err = s.delete(&secret("bad"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt { .. }), "{err}");
    assert!(
        s.inner().get(&secret("bad")).await.unwrap().is_some(),
        "refused delete keeps it"
    );
    let err = s.rotate().await.unwrap_err();
    assert!(matches!(err, StoreError::Rotation { .. }), "{err}");
    assert_eq!(
        key_names(&env.key_file()).len(),
        2,
        "no key removed while a record is unreadable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_material_and_missing_key_give_per_object_errors() {
    let env = Env::new();
    {
        let s = env.open();
        s.create(&secret("a"), Bytes::from_static(b"value-a"))
            .await
            .unwrap();
    }
    let name = key_names(&env.key_file())[0].clone();
    // Same key name, different material.
    std::fs::write(
        env.key_file(),
        format!(
            r#"{{"keys":[{{"name":"{name}","secret":"{}"}}]}}"#,
            "A".repeat(43) + "="
        ),
    )
    .unwrap();
    let s = env.open();
    let err = s.get(&secret("a")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Decrypt { key_name, reason, .. } if key_name == &name && reason.contains("authentication failed")),
        "{err}"
    );
    s.create(&secret("b"), Bytes::from_static(b"value-b"))
        .await
        .unwrap();
    assert_eq!(
        s.get(&secret("b")).await.unwrap().unwrap().value,
        Bytes::from_static(b"value-b")
    );
    drop(s);

    // A key file that no longer lists the key.
    std::fs::write(
        env.key_file(),
        format!(
            r#"{{"keys":[{{"name":"other","secret":"{}"}}]}}"#,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
        ),
    )
    .unwrap();
    let s = env.open();
    let err = s.get(&secret("a")).await.unwrap_err().to_string();
    assert!(
        err.contains(&name) && err.contains("not in the key file"),
        "{err}"
    );
}

#[tokio::test]
async fn unreadable_key_file_fails_closed() {
    let env = Env::new();
    std::fs::write(env.key_file(), b"not json").unwrap();
    let err = Encrypted::open(
        env.sqlite(),
        EncryptionConfig {
            prefixes: vec![SECRETS.into()],
            key_file: env.key_file(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::KeyFile { .. }), "{err}");
    assert!(err.to_string().contains("encryption-keys.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_decrypts_events_including_deletes() {
    let env = Env::new();
    let s = env.open();
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch("/registry/core/", start).await.unwrap();
    let r = s
        .create(&secret("w"), Bytes::from_static(b"v1"))
        .await
        .unwrap();
    s.update(&secret("w"), r, Bytes::from_static(b"v2"))
        .await
        .unwrap();
    s.create(
        "/registry/core/configmaps/default/c",
        Bytes::from_static(b"cm"),
    )
    .await
    .unwrap();
    s.delete(&secret("w"), None).await.unwrap();
    let events = next_events(&mut watch, 4).await;
    let got: Vec<_> = events.iter().map(|e| (e.kind, e.value.clone())).collect();
    assert_eq!(
        got,
        [
            (EventKind::Added, Bytes::from_static(b"v1")),
            (EventKind::Modified, Bytes::from_static(b"v2")),
            (EventKind::Added, Bytes::from_static(b"cm")),
            (EventKind::Deleted, Bytes::from_static(b"v2")),
        ]
    );
}

/// The conformance suite through the encrypting wrapper (every test key is encrypted).
struct EncryptedSqlite {
    dir: tempfile::TempDir,
}

impl Backend for EncryptedSqlite {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Storage>> {
        let db = self.dir.path().join("state.db");
        let key_file = self.dir.path().join("keys.json");
        Box::pin(async move {
            let inner = SqliteStore::open(SqliteConfig::new(db)).unwrap();
            Arc::new(
                Encrypted::open(
                    inner,
                    EncryptionConfig {
                        prefixes: vec!["/t/".into(), "/registry/".into()],
                        key_file,
                    },
                )
                .unwrap(),
            ) as Arc<dyn Storage>
        })
    }
}

mod through_encryption {
    use super::EncryptedSqlite;
    store::conformance_tests!(EncryptedSqlite {
        dir: tempfile::tempdir().unwrap()
    });
}
