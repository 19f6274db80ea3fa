//! The seam through which a pull asks other nodes for a blob before the registry. The puller owns the
//! policy around it: peers are asked only for blobs of a manifest the registry already served (with the
//! pod's own credentials), every peer byte goes through the store's digest-verified commit, and on any peer
//! failure (connect, stream error, size or digest mismatch) the partial ingest is discarded and the blob is
//! fetched from the registry. Implementations (the node agent's) own discovery, coordination and transport.
//!
//! This module must never let a peer decide what a blob is (only the manifest's descriptor does) and never
//! know how peers are found or reached.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use oci::Descriptor;

/// The bytes of a blob from one peer, starting at the offset asked for.
pub struct PeerBlob {
    /// The peer's name, for messages and progress (`node-3`).
    pub peer: String,
    /// The body; an `Err` item ends the attempt (the puller falls back to the registry).
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl std::fmt::Debug for PeerBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBlob")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Where to get a blob's bytes.
#[derive(Debug)]
pub enum BlobSource {
    /// From the registry (no peer has it, or this node was chosen to download it for the others).
    Registry,
    /// From a peer; unverified until the commit checks the digest.
    Peer(PeerBlob),
}

/// Told once this node has the blob committed, whatever the source; dropped without it when the fetch
/// failed. A claim that this node downloads the blob for the others releases itself on drop.
pub trait BlobTicket: Send {
    /// The blob is committed and verified in this node's store.
    fn committed(self: Box<Self>);
}

/// A ticket with nothing to do.
#[derive(Debug, Default)]
pub struct NoTicket;

impl BlobTicket for NoTicket {
    fn committed(self: Box<Self>) {}
}

/// The answer of [`BlobPeers::locate`].
pub struct Located {
    /// Where the bytes come from first.
    pub source: BlobSource,
    /// Kept until the blob is committed (from this source or, after a peer failure, the registry).
    pub ticket: Box<dyn BlobTicket>,
}

impl std::fmt::Debug for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Located")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Located {
    /// Fetch from the registry with nothing to report afterwards.
    pub fn registry() -> Self {
        Located {
            source: BlobSource::Registry,
            ticket: Box::new(NoTicket),
        }
    }
}

/// Other nodes that may serve blobs. Called once per blob this node does not have, while this node holds
/// the store's writer for it (so one call per node and blob at a time), with the offset already on disk.
pub trait BlobPeers: Send + Sync {
    /// Where to fetch `desc` from, starting at `offset`. Must not fail: anything that goes wrong answers
    /// [`Located::registry`].
    fn locate<'a>(&'a self, desc: &'a Descriptor, offset: u64) -> BoxFuture<'a, Located>;
}

/// Where the bytes of a blob came from, reported to [`crate::ProgressSink::blob_source`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobOrigin {
    /// The registry (or its mirror / CDN redirect).
    Registry,
    /// A peer node, by name.
    Peer(String),
}

impl std::fmt::Display for BlobOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobOrigin::Registry => f.write_str("registry"),
            BlobOrigin::Peer(p) => write!(f, "peer {p}"),
        }
    }
}
