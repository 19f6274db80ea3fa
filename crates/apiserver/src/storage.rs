//! Opening the storage of a data directory: the SQLite backend at `<dir>/state.db` wrapped by the store's
//! encryption layer for `/registry/core/secrets/` (key file `<dir>/encryption.key`, created 0600 on first start),
//! and the `berth secrets rotate-key` operation. The rest of the server sees only `Arc<dyn Storage>`.

use std::path::Path;
use std::sync::Arc;

use store::encryption::{Encrypted, EncryptionConfig, RotationReport};
use store::sqlite::{SqliteConfig, SqliteStore};
use store::{Storage, StoreError};

/// Storage prefixes encrypted at rest.
pub const ENCRYPTED_PREFIXES: &[&str] = &["/registry/core/secrets/"];

fn open_encrypted(data_dir: &Path) -> Result<Encrypted<SqliteStore>, StoreError> {
    let sqlite = SqliteStore::open(SqliteConfig::new(data_dir.join("state.db")))?;
    Encrypted::open(
        sqlite,
        EncryptionConfig {
            prefixes: ENCRYPTED_PREFIXES.iter().map(|p| p.to_string()).collect(),
            key_file: data_dir.join("encryption.key"),
        },
    )
}

/// The storage of a data dir.
pub fn open(data_dir: &Path) -> Result<Arc<dyn Storage>, StoreError> {
    Ok(Arc::new(open_encrypted(data_dir)?))
}

/// Re-encrypts every Secret of a data dir with a new key (the server must not be running: the store holds an
/// exclusive lock on the database).
pub async fn rotate_key(data_dir: &Path) -> Result<RotationReport, StoreError> {
    open_encrypted(data_dir)?.rotate().await
}
