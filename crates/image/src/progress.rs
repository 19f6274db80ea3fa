//! Progress events of a pull. It owns the event vocabulary shared by the CLI's progress bars, its
//! JSON lines and (later) the agent's per-pod annotation; it must never format for a particular
//! display.

use oci::Digest;

use crate::peers::BlobOrigin;

/// One step of a pull, in the order they happen for each blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The reference was resolved to this manifest; `blobs` lists what will be fetched
    /// (config first, then layers) with their sizes.
    Resolved {
        /// Digest of the document the reference names (index or manifest).
        digest: Digest,
        /// The platform-selected image manifest.
        manifest: Digest,
        /// Every blob of the image: (digest, size, is_layer).
        blobs: Vec<(Digest, u64, bool)>,
    },
    /// A blob download started at `offset` (non-zero when resuming a partial ingest).
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Bytes already on disk from an earlier attempt.
        offset: u64,
    },
    /// `bytes` more bytes of a blob were received and written.
    BlobBytes {
        /// The blob.
        digest: Digest,
        /// How many bytes this event adds.
        bytes: u64,
    },
    /// A blob is committed; `existed` when it was already in the store (nothing downloaded).
    BlobDone {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// True when nothing had to be downloaded.
        existed: bool,
    },
}

/// Where progress goes. Called from the pull's tasks: keep it cheap and non-blocking.
pub trait ProgressSink: Send + Sync {
    /// One event.
    fn event(&self, event: Progress);

    /// Where the bytes of `digest` come from, told before its [`Progress::BlobStarted`] (again, with
    /// [`BlobOrigin::Registry`], when a peer failed and the blob is fetched afresh). Ignored by default.
    fn blob_source(&self, digest: &Digest, origin: &BlobOrigin) {
        let _ = (digest, origin);
    }
}

impl<F: Fn(Progress) + Send + Sync> ProgressSink for F {
    fn event(&self, event: Progress) {
        self(event)
    }
}

/// A sink that drops everything.
pub(crate) struct Discard;

impl ProgressSink for Discard {
    fn event(&self, _: Progress) {}
}
