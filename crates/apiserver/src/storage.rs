//! Opening the storage of a server: the datastore ([`Datastore`]: SQLite at `<dir>/state.db`, the default, or an
//! etcd v3 cluster) wrapped by the store's encryption layer for `/registry/core/secrets/` (key file
//! `<dir>/encryption.key`, created 0600 on first start), the cluster identity check that keeps API servers with
//! different keys or CAs off one etcd, `berth migrate` ([`migrate_sqlite_to_etcd`]) and the
//! `berth secrets rotate-key` operation. The rest of the server sees only `Arc<dyn Storage>`. It must never
//! decrypt a record it copies, and never put a stored value or key material in an error.
//!
//! Several API servers on one etcd form one cluster only when they share the data dir's secrets: the encryption
//! key (every server must read every Secret), the cluster CA (clients and agents trust one CA) and the tokens
//! (one admin kubeconfig works everywhere). Start the first server, then start each further server from a copy of
//! the first one's data directory. The first server on an etcd records the cluster identity (the CA's SHA-256,
//! encrypted with its key) at [`CLUSTER_IDENTITY_KEY`]; a server whose key cannot decrypt it, or whose CA differs,
//! refuses to start and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use store::encryption::{Encrypted, EncryptionConfig, RotationReport};
use store::sqlite::{SqliteConfig, SqliteStore};
use store::{ListOptions, Storage, StoreError};
use store_etcd::{EtcdConfig, EtcdError, EtcdStore};

/// Storage prefixes encrypted at rest.
pub const ENCRYPTED_PREFIXES: &[&str] = &["/registry/core/secrets/"];

/// The record (on etcd) that ties a datastore to one cluster's encryption key and CA. Outside `/registry/`, so no
/// API resource ever lists it; encrypted like a Secret.
pub const CLUSTER_IDENTITY_KEY: &str = "/berth/cluster-identity";

/// The record `berth migrate` keeps in the target while and after copying (outside `/registry/`).
pub const MIGRATION_KEY: &str = "/berth/migration";

/// Where a server keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// SQLite at `<data-dir>/state.db` (one API server per data dir).
    Sqlite,
    /// An etcd v3 cluster, shared by every API server of the cluster.
    Etcd(EtcdConfig),
}

impl Datastore {
    /// `sqlite://<data-dir>` or the etcd URL, for logs and messages.
    pub fn describe(&self, data_dir: &Path) -> String {
        match self {
            Datastore::Sqlite => format!("sqlite://{}", data_dir.display()),
            Datastore::Etcd(config) => config.display_url(),
        }
    }
}

/// Failures to open a datastore or to migrate one.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error("storage in {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("datastore {datastore}: {source}")]
    Remote {
        datastore: String,
        #[source]
        source: StoreError,
    },
    /// The data dir does not belong to the cluster already stored in the datastore.
    #[error("datastore {datastore} belongs to another cluster: {reason}")]
    ForeignCluster { datastore: String, reason: String },
    /// `berth migrate` into a datastore that already holds objects.
    #[error(
        "target {datastore} already holds {count} object(s) under /registry/ that were not migrated from {source_dir}; \
         migrate into an empty etcd (or another key prefix), or pass --force to overwrite objects with the same keys"
    )]
    TargetNotEmpty {
        datastore: String,
        count: u64,
        source_dir: String,
    },
    /// `berth secrets rotate-key` while API servers use the datastore.
    #[error(
        "API servers are running on {datastore} ({servers}); stop every API server of the cluster before rotating \
         the secrets encryption key (a running server keeps encrypting with the key it loaded; a killed one is \
         listed for up to 15 s), then copy the rotated encryption.key to every server's data dir and start them \
         again"
    )]
    ServersRunning { datastore: String, servers: String },
    /// An API server started on the datastore while `berth secrets rotate-key` ran.
    #[error(
        "API servers started on {datastore} during the key rotation ({servers}); stop them, copy {key_file} to \
         their data dirs and run the rotation again (it finds nothing left to re-encrypt if none wrote a Secret)"
    )]
    ServerStartedDuringRotation {
        datastore: String,
        servers: String,
        key_file: PathBuf,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn encryption(data_dir: &Path, extra: &[&str]) -> EncryptionConfig {
    EncryptionConfig {
        prefixes: ENCRYPTED_PREFIXES
            .iter()
            .chain(extra)
            .map(|p| p.to_string())
            .collect(),
        key_file: data_dir.join("encryption.key"),
    }
}

fn open_sqlite(data_dir: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(SqliteConfig::new(data_dir.join("state.db")))
}

fn open_encrypted(data_dir: &Path) -> Result<Encrypted<SqliteStore>, StoreError> {
    Encrypted::open(open_sqlite(data_dir)?, encryption(data_dir, &[]))
}

/// The storage of a data dir on SQLite.
pub fn open(data_dir: &Path) -> Result<Arc<dyn Storage>, StoreError> {
    Ok(Arc::new(open_encrypted(data_dir)?))
}

/// Opens `datastore` for the server of `data_dir` whose cluster CA is `ca_pem`. On etcd this checks (or, for the
/// first server, records) the cluster identity.
pub async fn open_datastore(
    data_dir: &Path,
    datastore: &Datastore,
    ca_pem: &str,
) -> Result<Arc<dyn Storage>, DatastoreError> {
    let config = match datastore {
        Datastore::Sqlite => {
            return open(data_dir).map_err(|source| DatastoreError::Store {
                path: data_dir.to_path_buf(),
                source,
            });
        }
        Datastore::Etcd(config) => config,
    };
    let etcd = EtcdStore::connect(config.clone()).await?;
    let store =
        Encrypted::open(etcd, encryption(data_dir, &[CLUSTER_IDENTITY_KEY])).map_err(|source| {
            DatastoreError::Store {
                path: data_dir.to_path_buf(),
                source,
            }
        })?;
    check_cluster_identity(&store, data_dir, &config.display_url(), ca_pem).await?;
    Ok(Arc::new(store))
}

fn ca_fingerprint(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.trim().as_bytes()))
}

fn identity_value(ca_pem: &str) -> Bytes {
    Bytes::from(serde_json::json!({"caSha256": ca_fingerprint(ca_pem)}).to_string())
}

/// Records this server's cluster identity in an empty datastore, or checks it against the recorded one.
async fn check_cluster_identity(
    store: &dyn Storage,
    data_dir: &Path,
    url: &str,
    ca_pem: &str,
) -> Result<(), DatastoreError> {
    let remote = |source| DatastoreError::Remote {
        datastore: url.to_owned(),
        source,
    };
    let foreign = |reason: String| DatastoreError::ForeignCluster {
        datastore: url.to_owned(),
        reason,
    };
    let copy_hint = "start every further API server of a cluster from a copy of the first server's data \
                     directory (encryption.key, pki/ and the token files)";
    loop {
        let stored = match store.get(CLUSTER_IDENTITY_KEY).await {
            Ok(Some(kv)) => kv.value,
            Ok(None) => match store
                .create(CLUSTER_IDENTITY_KEY, identity_value(ca_pem))
                .await
            {
                Ok(_) => {
                    tracing::info!(datastore = %url, "recorded this cluster's identity in the datastore");
                    return Ok(());
                }
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(remote(e)),
            },
            Err(StoreError::Decrypt { .. }) => {
                return Err(foreign(format!(
                    "the encryption key {} cannot decrypt its records (another API server wrote them with \
                     its own key, or `berth secrets rotate-key` rotated them: then copy the rotated \
                     encryption.key here); {copy_hint}",
                    data_dir.join("encryption.key").display()
                )));
            }
            Err(e) => return Err(remote(e)),
        };
        let recorded: serde_json::Value = serde_json::from_slice(&stored).unwrap_or_default();
        let want = ca_fingerprint(ca_pem);
        return match recorded.get("caSha256").and_then(|v| v.as_str()) {
            Some(ca) if ca == want => Ok(()),
            _ => Err(foreign(format!(
                "its cluster CA differs from {} (clients and agents of that cluster would not trust this \
                 server); {copy_hint}",
                data_dir.join("pki/ca.crt").display()
            ))),
        };
    }
}

/// Re-encrypts every Secret (and, on etcd, the cluster identity record) with a new key added to
/// `<data-dir>/encryption.key`; crash-safe and resumable as [`Encrypted::rotate`] is (run it again after a failure:
/// it resumes with the key it generated). Every API server of the cluster must be stopped, since a running server
/// keeps encrypting with the key it loaded: on SQLite the database lock enforces that, on etcd the rotation refuses
/// while any server campaigns in the lifecycle election `berth-lifecycle` (every running server on an etcd does;
/// a server killed without stopping stays listed until its 15 s lease lapses). On etcd, copy the rotated `encryption.key` to every server's data dir before starting them
/// again; a server still holding the old key refuses to start and says so.
pub async fn rotate_key(
    data_dir: &Path,
    datastore: &Datastore,
) -> Result<RotationReport, DatastoreError> {
    let config = match datastore {
        Datastore::Sqlite => {
            let failed = |source| DatastoreError::Store {
                path: data_dir.to_path_buf(),
                source,
            };
            return open_encrypted(data_dir)
                .map_err(failed)?
                .rotate()
                .await
                .map_err(failed);
        }
        Datastore::Etcd(config) => config,
    };
    let url = config.display_url();
    let remote = |source| DatastoreError::Remote {
        datastore: url.clone(),
        source,
    };
    let ca_file = data_dir.join("pki/ca.crt");
    let ca_pem = std::fs::read_to_string(&ca_file).map_err(|source| DatastoreError::Read {
        path: ca_file.clone(),
        source,
    })?;
    let etcd = EtcdStore::connect(config.clone()).await?;
    let running = etcd.candidates(crate::lifecycle::ELECTION).await?;
    if !running.is_empty() {
        return Err(DatastoreError::ServersRunning {
            datastore: url.clone(),
            servers: running.join(", "),
        });
    }
    let store = Encrypted::open(etcd.clone(), encryption(data_dir, &[CLUSTER_IDENTITY_KEY]))
        .map_err(|source| DatastoreError::Store {
            path: data_dir.to_path_buf(),
            source,
        })?;
    // A data dir of another cluster would fail on its first Secret; say why before touching the key file.
    check_cluster_identity(&store, data_dir, &url, &ca_pem).await?;
    let report = store.rotate().await.map_err(remote)?;
    let started = etcd.candidates(crate::lifecycle::ELECTION).await?;
    if !started.is_empty() {
        return Err(DatastoreError::ServerStartedDuringRotation {
            datastore: url.clone(),
            servers: started.join(", "),
            key_file: data_dir.join("encryption.key"),
        });
    }
    Ok(report)
}

/// What [`migrate_sqlite_to_etcd`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// `etcd://...` of the target.
    pub target: String,
    /// Objects created in the target.
    pub created: u64,
    /// Objects the target already held with the same stored bytes (a re-run).
    pub unchanged: u64,
    /// Objects the target held with other bytes, replaced by the source's.
    pub replaced: u64,
    /// Objects per resource (`core/secrets`, `apps/deployments`, ...).
    pub per_resource: BTreeMap<String, u64>,
    /// Secrets read back from the target and decrypted with the data dir's key.
    pub secrets_verified: u64,
}

/// Copies every object of the SQLite store of `data_dir` into the etcd cluster `target`, keeping the stored bytes
/// (names, uids, and the Secrets' ciphertext: the servers on etcd must use this data dir's `encryption.key`).
/// Refuses a target holding objects not migrated from this data dir unless `force` (then objects with the same keys
/// are overwritten, others kept). Resumable: run it again after a failure; a finished migration run again reports
/// everything unchanged. The source must not be in use (the SQLite lock makes a running server an error).
pub async fn migrate_sqlite_to_etcd(
    data_dir: &Path,
    target: EtcdConfig,
    force: bool,
) -> Result<MigrationReport, DatastoreError> {
    let url = target.display_url();
    let remote = |source| DatastoreError::Remote {
        datastore: url.clone(),
        source,
    };
    let source = open_sqlite(data_dir).map_err(|source| DatastoreError::Store {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let ca_file = data_dir.join("pki/ca.crt");
    let ca_pem = std::fs::read_to_string(&ca_file).map_err(|source| DatastoreError::Read {
        path: ca_file.clone(),
        source,
    })?;
    // The source's identity: its CA, which moves with the data dir.
    let marker = serde_json::json!({"sourceCaSha256": ca_fingerprint(&ca_pem), "sourceDir": data_dir.display().to_string()});
    let etcd = EtcdStore::connect(target.clone()).await?;

    let previous = etcd.get(MIGRATION_KEY).await.map_err(remote)?;
    let ours = previous.as_ref().is_some_and(|kv| {
        serde_json::from_slice::<serde_json::Value>(&kv.value)
            .ok()
            .and_then(|v| v.get("sourceCaSha256").cloned())
            == marker.get("sourceCaSha256").cloned()
    });
    if !ours && !force {
        let present = etcd
            .list(
                "/registry/",
                ListOptions {
                    limit: Some(1),
                    ..ListOptions::default()
                },
            )
            .await
            .map_err(remote)?;
        if !present.items.is_empty() {
            let count = count_keys(&etcd, "/registry/").await.map_err(remote)?;
            return Err(DatastoreError::TargetNotEmpty {
                datastore: url.clone(),
                count,
                source_dir: data_dir.display().to_string(),
            });
        }
    }
    let mut state = marker.clone();
    state["state"] = "copying".into();
    put(&etcd, MIGRATION_KEY, Bytes::from(state.to_string()))
        .await
        .map_err(remote)?;

    let copied = store::copy::copy_prefix(&source, &etcd, "/registry/", 3)
        .await
        .map_err(remote)?;

    // Read every Secret back through the key the servers will use: a wrong key fails here, not at first read.
    let check = Encrypted::open(etcd.clone(), encryption(data_dir, &[CLUSTER_IDENTITY_KEY]))
        .map_err(|source| DatastoreError::Store {
            path: data_dir.to_path_buf(),
            source,
        })?;
    let mut secrets_verified = 0;
    for prefix in ENCRYPTED_PREFIXES {
        secrets_verified += count_keys(&check, prefix).await.map_err(remote)?;
    }

    // The servers started on the target from this data dir must find it theirs: with --force the target's previous
    // identity (if any) is replaced.
    if force {
        match etcd.delete(CLUSTER_IDENTITY_KEY, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(remote(e)),
        }
        check_cluster_identity(&check, data_dir, &url, &ca_pem).await?;
    } else {
        check_cluster_identity(&check, data_dir, &url, &ca_pem).await?;
    }

    state["state"] = "complete".into();
    state["sourceRevision"] = copied.source_revision.into();
    put(&etcd, MIGRATION_KEY, Bytes::from(state.to_string()))
        .await
        .map_err(remote)?;
    Ok(MigrationReport {
        target: url.clone(),
        created: copied.created,
        unchanged: copied.unchanged,
        replaced: copied.replaced,
        per_resource: copied
            .per_group
            .into_iter()
            .map(|(group, n)| (group.trim_start_matches("/registry/").to_owned(), n))
            .collect(),
        secrets_verified,
    })
}

/// Creates or replaces `key` (no other writer is expected during a migration).
async fn put(store: &dyn Storage, key: &str, value: Bytes) -> Result<(), StoreError> {
    loop {
        let result = match store.get(key).await? {
            None => store.create(key, value.clone()).await,
            Some(kv) => store.update(key, kv.mod_revision, value.clone()).await,
        };
        match result {
            Ok(_) => return Ok(()),
            Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Keys under `prefix`, read page by page (decrypting them when `store` is the encrypting wrapper).
async fn count_keys(store: &dyn Storage, prefix: &str) -> Result<u64, StoreError> {
    let mut count = 0;
    let mut token = None;
    loop {
        let page = store
            .list(
                prefix,
                ListOptions {
                    limit: Some(500),
                    continue_token: token.take(),
                    revision: None,
                },
            )
            .await?;
        count += page.items.len() as u64;
        match page.continue_token {
            Some(next) => token = Some(next),
            None => return Ok(count),
        }
    }
}
