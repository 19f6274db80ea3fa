//! Error type of the unpack crate. Every variant names the layer digest (when one is involved),
//! the entry path or file, and the rule or limit that refused it; it must never carry file
//! contents or anything read from a credential store.

use std::io;
use std::path::PathBuf;

use oci::Digest;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while applying layers or managing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry would land outside the snapshot (`..`, a symlinked parent pointing out, ...).
    #[error(
        "layer {layer}: entry {path:?} escapes the snapshot root ({reason}); the layer is refused, \
         check where the image came from"
    )]
    Breakout {
        layer: Digest,
        path: String,
        reason: String,
    },
    /// A hardlink whose target is outside the snapshot, through a symlink, or missing.
    #[error("layer {layer}: entry {path:?}: invalid hardlink target {target:?} ({reason})")]
    InvalidHardlink {
        layer: Digest,
        path: String,
        target: String,
        reason: String,
    },
    /// A whiteout the image-spec forbids (`.wh.`, `.wh..`, `.wh...`).
    #[error("layer {layer}: entry {path:?}: invalid whiteout name ({reason})")]
    InvalidWhiteout {
        layer: Digest,
        path: String,
        reason: String,
    },
    /// An entry name that is not acceptable (NUL, component > 255 bytes, ...).
    #[error("layer {layer}: entry {path:?}: invalid entry name ({reason})")]
    InvalidName {
        layer: Digest,
        path: String,
        reason: String,
    },
    /// A configured limit was reached (decompression bomb, absurd archive).
    #[error(
        "layer {layer}: {what} exceeds limit {limit} (at entry {path:?}); the layer is refused, \
         raise unpack::Limits::{field} only if the image is trusted"
    )]
    Limit {
        layer: Digest,
        what: &'static str,
        field: &'static str,
        limit: u64,
        path: String,
    },
    /// The compressed bytes do not hash to the layer descriptor's digest.
    #[error(
        "layer {layer}: compressed content digest mismatch: expected {layer}, actual {actual}; \
         the stored blob is corrupt, delete it from the content store and pull again"
    )]
    LayerDigest { layer: Digest, actual: Digest },
    /// The uncompressed bytes do not hash to the diffID of the image config.
    #[error(
        "layer {layer}: diffID mismatch: expected {expected}, actual {actual}; the image config \
         does not describe this layer, the image is corrupt or was tampered with"
    )]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// A layer media type that this crate cannot unpack.
    #[error(
        "layer {layer}: unsupported layer media type {media_type:?}; expected a tar, tar+gzip or \
         tar+zstd OCI or Docker layer"
    )]
    UnsupportedMediaType { layer: Digest, media_type: String },
    /// A tar entry kind this crate refuses (sparse files, GNU volume headers, ...).
    #[error("layer {layer}: entry {path:?}: {reason}")]
    Unsupported {
        layer: Digest,
        path: String,
        reason: String,
    },
    /// The archive itself is malformed (bad header, truncated stream, bad compression).
    #[error("layer {layer}: malformed archive near entry {path:?}: {source}")]
    Archive {
        layer: Digest,
        path: String,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation for one entry failed.
    #[error("layer {layer}: entry {path:?}: {op}: {source}")]
    Entry {
        layer: Digest,
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation on the snapshotter's own files failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The content store could not provide a layer blob.
    #[error("layer {layer}: content store: {source}")]
    Content {
        layer: Digest,
        #[source]
        source: Box<content::Error>,
    },
    /// The image config's diffIDs do not pair up with the manifest's layers.
    #[error(
        "image config lists {diff_ids} diffIDs (rootfs.diff_ids) but the manifest has {layers} \
         layers; the image is malformed, rebuild or re-push it"
    )]
    LayerCount { diff_ids: usize, layers: usize },
    /// A snapshot is not present (not unpacked, or garbage collected).
    #[error("snapshot {id} not found under {}; unpack the image again", root.display())]
    NotFound { id: String, root: PathBuf },
    /// A snapshot or container identifier that is not acceptable as a directory name.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidId {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// Snapshot metadata that cannot be read back.
    #[error("snapshot metadata {}: {reason}; remove the snapshot directory and unpack again", path.display())]
    Metadata { path: PathBuf, reason: String },
    /// An overlay mount or unmount failed.
    #[error(
        "overlay {op} on {}: {source}; check that the kernel has overlayfs and berth runs with \
         CAP_SYS_ADMIN, or use the native snapshotter",
        target.display()
    )]
    Mount {
        op: &'static str,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A pull stopped before this layer's blob was committed, so it was never unpacked.
    #[error(
        "layer {layer}: its blob was never committed to the content store (the pull stopped \
         first), so it was not unpacked; pull the image again"
    )]
    Incomplete { layer: Digest },
    /// A worker thread panicked while unpacking a layer.
    #[error("layer {layer}: unpack worker panicked")]
    Panicked { layer: Digest },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// The layer digest this error is about, if any.
    pub fn layer(&self) -> Option<&Digest> {
        match self {
            Error::Breakout { layer, .. }
            | Error::InvalidHardlink { layer, .. }
            | Error::InvalidWhiteout { layer, .. }
            | Error::InvalidName { layer, .. }
            | Error::Limit { layer, .. }
            | Error::LayerDigest { layer, .. }
            | Error::DiffId { layer, .. }
            | Error::UnsupportedMediaType { layer, .. }
            | Error::Unsupported { layer, .. }
            | Error::Archive { layer, .. }
            | Error::Entry { layer, .. }
            | Error::Content { layer, .. }
            | Error::Panicked { layer }
            | Error::Incomplete { layer } => Some(layer),
            _ => None,
        }
    }
}
