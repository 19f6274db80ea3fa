//! error: the one error type of the content store.
//!
//! Every variant says what failed, where (digest, file path, image name) and what to do next.
//! Messages are lowercase without a trailing period. This module must never format blob
//! contents or anything read from a registry other than digests and sizes.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error(
        "content store: cannot {op} {path}: {source}; check that the store directory is writable and the disk is not full"
    )]
    Io {
        /// What was being done ("open", "rename", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The blob is not in the store.
    #[error("content {digest} not found in {path}: pull the image again to fetch it")]
    NotFound {
        /// The missing digest.
        digest: Digest,
        /// Where it was expected.
        path: PathBuf,
    },

    /// A writer was asked for content that is already committed.
    #[error("content {digest} already exists in {path}: use it as is")]
    AlreadyExists {
        /// The committed digest.
        digest: Digest,
        /// Its path.
        path: PathBuf,
    },

    /// More bytes arrived than the descriptor declared; the ingest was discarded (INT-06).
    #[error(
        "blob {digest} exceeds declared size {expected} (at least {received} bytes received); the registry sent more than the descriptor allows, the partial download was discarded: check the registry or mirror serving this blob"
    )]
    ExceedsSize {
        /// The digest being written.
        digest: Digest,
        /// The declared size.
        expected: u64,
        /// Bytes offered so far (at least `expected + 1`).
        received: u64,
    },

    /// The bytes written do not hash to, or are not as long as, the descriptor (INT-01).
    #[error(
        "blob verification failed: expected {expected} ({expected_size} bytes) but received content is {actual} ({actual_size} bytes); the download was discarded, retry the pull and check the registry or mirror serving it"
    )]
    Mismatch {
        /// The digest the descriptor declared.
        expected: Digest,
        /// The size the descriptor declared.
        expected_size: u64,
        /// The digest of what was received.
        actual: Digest,
        /// How many bytes were received.
        actual_size: u64,
    },

    /// A committed blob and a descriptor disagree about its size.
    #[error(
        "descriptor for {digest} declares {declared} bytes but the stored verified blob at {path} has {stored} bytes: the manifest referencing it is wrong, check the image"
    )]
    DescriptorSize {
        /// The digest.
        digest: Digest,
        /// Size the descriptor declared.
        declared: u64,
        /// Size of the committed blob.
        stored: u64,
        /// Path of the committed blob.
        path: PathBuf,
    },

    /// A committed blob no longer hashes to its name (INT-11); it was moved to quarantine.
    #[error(
        "blob {digest} is corrupt: its content hashes to {actual}; it was moved to {quarantined} and will not be served, pull the image again to re-fetch it"
    )]
    Corrupt {
        /// The name of the blob.
        digest: Digest,
        /// What it hashes to now.
        actual: Digest,
        /// Where it was moved.
        quarantined: PathBuf,
    },

    /// A blob is too large to be read into memory as a manifest or config (INT-05).
    #[error(
        "blob {digest} is {size} bytes, over the {limit} byte limit for manifests and configs: the descriptor pointing at it is not a manifest or config, check the image"
    )]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A writer was used after it failed and discarded its ingest.
    #[error(
        "writer for {digest} was discarded after an earlier error: acquire a new writer and start again"
    )]
    Discarded {
        /// The digest of the writer.
        digest: Digest,
    },

    /// A store file (ingest metadata, image record, lease) is not what this version writes.
    #[error(
        "content store file {path} is invalid: {reason}; remove the file (the store rebuilds ingests and leases; image records must be pulled again)"
    )]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An image record refers to a blob that is not committed (INT-10: the image mapping is
    /// written only after all its blobs committed).
    #[error(
        "image {name} cannot be recorded: {missing} (referenced by {referenced_by}) is not in the content store; fetch all blobs before recording the image"
    )]
    IncompleteImage {
        /// The image name.
        name: String,
        /// The missing blob.
        missing: Digest,
        /// The digest of the manifest (or "the image record") that references it.
        referenced_by: String,
    },

    /// A manifest referenced by an image cannot be read, so references are unknown.
    #[error(
        "manifest {digest} of image {image} cannot be parsed ({reason}); gc deleted nothing: run verify, then remove or re-pull the image"
    )]
    UnreadableManifest {
        /// The image whose walk failed.
        image: String,
        /// The manifest digest.
        digest: Digest,
        /// Why it could not be parsed.
        reason: String,
    },

    /// Timed out waiting for another writer of the same digest.
    #[error(
        "timed out after {waited_ms} ms waiting for another download of {digest} (lock {lock}) to finish: retry, or check for a stuck pull"
    )]
    LockTimeout {
        /// The digest.
        digest: Digest,
        /// The lock file.
        lock: PathBuf,
        /// How long we waited.
        waited_ms: u128,
    },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// True when the error means "content is not in the store".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
