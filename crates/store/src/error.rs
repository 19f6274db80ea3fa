//! The one error type of the storage layer. It owns the wording of every failure a backend or the
//! encryption wrapper can report, and how the apiserver should classify it (`http_status_hint`).
//! It must never carry a stored value, a key file secret or a decrypted byte: only storage keys
//! (object paths such as `/registry/core/secrets/ns/name`), revisions, key *names* and file paths.

use std::path::PathBuf;

/// Everything that can go wrong in a [`crate::Storage`] call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist (update, delete, guaranteed update).
    #[error("key {key} not found")]
    NotFound { key: String },

    /// `create` on a key that already exists; `revision` is its current mod revision.
    #[error(
        "key {key} already exists at revision {revision}; delete it first or update it instead"
    )]
    AlreadyExists { key: String, revision: u64 },

    /// Compare-and-swap failed: the caller's expected mod revision is stale.
    #[error(
        "conflict on key {key}: expected revision {expected} but the current revision is {current}; \
         re-read the object and retry"
    )]
    Conflict {
        key: String,
        expected: u64,
        current: u64,
    },

    /// The requested revision was compacted away (HTTP 410 Gone, reason `Expired`).
    #[error(
        "revision {requested} has been compacted (history starts after revision {compacted}); \
         list again and continue from the new list revision"
    )]
    Expired { requested: u64, compacted: u64 },

    /// A revision newer than the store's current one was asked for (list at revision, compact).
    #[error(
        "revision {requested} is in the future (current revision is {current}); use a revision at or below {current}"
    )]
    FutureRevision { requested: u64, current: u64 },

    /// The continue token is malformed or belongs to another prefix (HTTP 400).
    #[error("invalid continue token: {reason}; restart the list without a continue token")]
    InvalidContinue { reason: String },

    /// A stored record under an encrypted prefix could not be decrypted. Errors for that object
    /// only; names the key that was needed, never the data.
    #[error("cannot decrypt {key} (encrypted with key {key_name:?}): {reason}")]
    Decrypt {
        key: String,
        key_name: String,
        reason: String,
    },

    /// The encryption key file is missing, unreadable or malformed (startup fails closed).
    #[error("encryption key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },

    /// Key rotation refused or failed.
    #[error("key rotation: {reason}")]
    Rotation { reason: String },

    /// The database file is damaged; the store refuses to start rather than re-initialise it.
    #[error(
        "database {path} is corrupt ({detail}); stop the server, restore {path} from a backup \
         (or move it aside to start empty); it is never re-initialised automatically"
    )]
    Corrupt { path: PathBuf, detail: String },

    /// Another process (or another store in this process) holds the database.
    #[error(
        "database {path} is already open by another berth process (lock {lock}); stop it first"
    )]
    Locked { path: PathBuf, lock: PathBuf },

    /// Any other SQLite failure, with what the store was doing.
    #[error("database {path}: {context}: {source}")]
    Database {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// A filesystem operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A remote datastore (an etcd cluster) did not answer or failed the request. `backend`
    /// names it as the user configured it (`etcd://127.0.0.1:2379,...`); `reason` says which
    /// operation failed and why, never a stored value (HTTP 503).
    #[error(
        "datastore {backend} is unavailable: {reason}; check that its members are running and \
         reachable from this server"
    )]
    Unavailable { backend: String, reason: String },

    /// The backend was shut down (its writer thread is gone).
    #[error("storage backend is closed; restart the server")]
    Closed,

    /// A caller-supplied argument is not acceptable (empty key, key not valid for the backend).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl StoreError {
    /// The HTTP status the apiserver should answer with for this error.
    pub fn http_status_hint(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } => 409,
            StoreError::Expired { .. } => 410,
            StoreError::InvalidContinue { .. }
            | StoreError::InvalidArgument(_)
            | StoreError::FutureRevision { .. } => 400,
            StoreError::Closed | StoreError::Locked { .. } | StoreError::Unavailable { .. } => 503,
            _ => 500,
        }
    }

    /// True for [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
