//! image: the one crate that knows both the registry client and the content store. A pull is
//! resolve (tag or digest, platform selection) -> fetch every blob the image needs -> commit each
//! one verified into the store -> write the image record. It owns the order in which credentials
//! are tried (the next one only after a 401/403, never after a TLS or network failure), the
//! single-flight of blobs (through the store's per-digest writer locks, so two pulls of one image,
//! in this process or another, download each blob once) and the progress stream a terminal,
//! the agent or the console renders. With a snapshotter, a pull also unpacks the committed
//! layers into snapshots (see `snapshots`). With [`BlobPeers`], other nodes are asked for each blob
//! first; their bytes are verified like the registry's and any failure falls back to the registry.
//!
//! It must never parse HTTP or touch the registry's wire protocol (that is `registry`), never
//! write a blob outside the store's verified commit path (that is `content`), and never read a
//! credential's value (they pass through as opaque `registry::Credential`s).

mod error;
mod peers;
mod progress;
mod pull;
mod snapshots;

pub use error::{AttemptFailure, PullError};
pub use peers::{BlobOrigin, BlobPeers, BlobSource, BlobTicket, Located, NoTicket, PeerBlob};
pub use progress::{Progress, ProgressSink};
pub use pull::{Attempt, PullOptions, PullRequest, Pulled, Puller};
pub use snapshots::{StoredImage, image_user, load_stored_image, unpack_stored};
