//! The pull pipeline. It owns the credential loop (next credential only after a 401/403), the
//! bounded parallel fetch of config and layers, the hand-off of each byte stream to a blocking
//! writer thread (hashing and disk writes never run on the async executor), and the order of
//! commits: every blob verified and committed before the image record that names it, and before
//! the unpack task (which overlaps the rest of the download) may read it. With peers, each blob
//! is asked of them first (after the registry resolved the manifest with the caller's
//! credentials); a failing or lying peer costs one discarded attempt, then the registry. It must
//! never keep an unverified byte visible, never resume a peer's partial bytes from the registry,
//! and never retry a failure another credential cannot fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use oci::{Descriptor, Platform};
use registry::{Credential, ErrorKind, Repository};
use std::sync::mpsc;
use tokio::sync::mpsc as tokio_mpsc;

use crate::error::{AttemptFailure, PullError};
use crate::peers::{BlobOrigin, BlobPeers, BlobSource, BlobTicket};
use crate::progress::{Discard, Progress, ProgressSink};

/// How many blobs of one image download at once unless configured otherwise. containerd uses 3;
/// berth hashes and writes on separate threads, so a little more keeps both cores busy.
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 4;

/// Chunks in flight between a download and its writer thread (back-pressure bound, so a fast
/// network never buffers more than this many chunks in memory per blob).
const CHANNEL_DEPTH: usize = 16;

/// Settings of a [`Puller`].
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Blobs downloaded at once per image.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
        }
    }
}

/// One credential to try, with a label saying where it came from (for messages; never the
/// value). `credential: None` is an anonymous attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// e.g. `secret "regcred" key "registry.example.com"`.
    pub label: String,
    /// The credential, or none for anonymous.
    pub credential: Option<Credential>,
}

impl Attempt {
    /// The anonymous attempt.
    pub fn anonymous() -> Self {
        Attempt {
            label: "anonymous".to_string(),
            credential: None,
        }
    }
}

/// What to pull.
#[derive(Clone, Debug)]
pub struct PullRequest {
    /// The image (normalised; a missing tag means `latest`).
    pub reference: oci::Reference,
    /// Credentials in the order kubelet would try them; empty means one anonymous attempt.
    pub attempts: Vec<Attempt>,
    /// The platform to select from an index.
    pub platform: Platform,
}

/// A finished pull (and unpack, when the puller has a snapshotter).
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The image record's name (normalised reference with the default tag applied).
    pub name: String,
    /// What the reference resolved to (index or manifest): its digest is the repo digest.
    pub target: Descriptor,
    /// The platform's image manifest.
    pub manifest: Descriptor,
    /// The image config.
    pub config: Descriptor,
    /// The layers, in order.
    pub layers: Vec<Descriptor>,
    /// Manifest + config + layers, in bytes (what containerd reports as the image size).
    pub size: u64,
    /// Bytes actually downloaded by this pull (0 when everything was already present).
    pub downloaded: u64,
    /// The label of the attempt that succeeded.
    pub credential: String,
    /// The snapshot chain of the layers (bottom-most first) when the puller unpacks, each
    /// snapshot recording the user `image:<name>`; empty otherwise.
    pub snapshots: Vec<unpack::SnapshotId>,
    /// Wall time of the pull (and unpack).
    pub elapsed: Duration,
}

/// Pulls images from registries into a content store.
#[derive(Clone)]
pub struct Puller {
    client: registry::Client,
    store: content::Store,
    opts: PullOptions,
    snapshotter: Option<Arc<unpack::Snapshotter>>,
    peers: Option<Arc<dyn BlobPeers>>,
}

impl Puller {
    /// A puller over a registry client and a store.
    pub fn new(client: registry::Client, store: content::Store, opts: PullOptions) -> Self {
        Puller {
            client,
            store,
            opts,
            snapshotter: None,
            peers: None,
        }
    }

    /// Ask `peers` for each blob before the registry. The manifest still comes from the registry
    /// with the request's credentials, so peers only ever serve blobs of an image the caller may
    /// pull; their bytes are verified at commit, and any peer failure falls back to the registry.
    pub fn with_peers(mut self, peers: Arc<dyn BlobPeers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Unpack every pulled image into `snapshotter` (on the blocking pool; layers already
    /// unpacked are skipped). Each layer is unpacked as soon as its blob is committed and
    /// verified, while later layers still download; the pull returns once the chain is
    /// complete. Without it a pull only fills the content store.
    pub fn with_snapshotter(mut self, snapshotter: Arc<unpack::Snapshotter>) -> Self {
        self.snapshotter = Some(snapshotter);
        self
    }

    /// The snapshotter pulls unpack into, if any.
    pub fn snapshotter(&self) -> Option<&Arc<unpack::Snapshotter>> {
        self.snapshotter.as_ref()
    }

    /// The content store.
    pub fn store(&self) -> &content::Store {
        &self.store
    }

    /// Pulls `req` without progress reporting.
    pub async fn pull(&self, req: &PullRequest) -> Result<Pulled, PullError> {
        self.pull_with_progress(req, Arc::new(Discard)).await
    }

    /// Pulls `req`, reporting each step to `sink`.
    pub async fn pull_with_progress(
        &self,
        req: &PullRequest,
        sink: Arc<dyn ProgressSink>,
    ) -> Result<Pulled, PullError> {
        let started = Instant::now();
        let reference = req.reference.clone().with_default_tag();
        let (repo, resolved, label) = self.resolve(&reference, req).await?;

        let lease = {
            let store = self.store.clone();
            blocking(move || store.lease()).await??
        };

        // The documents first: small, already verified by the registry client against their
        // digests, and needed by gc to find the blobs below once the record exists.
        self.put_bytes(&resolved.top.descriptor, &resolved.top.bytes, &lease)
            .await?;
        if resolved.descriptor.digest != resolved.top.descriptor.digest {
            self.put_bytes(&resolved.descriptor, &resolved.bytes, &lease)
                .await?;
        }

        let config = resolved.manifest.config.clone();
        let layers = resolved.manifest.layers.clone();
        let mut blobs = Vec::with_capacity(layers.len() + 1);
        blobs.push(config.clone());
        blobs.extend(layers.iter().cloned());
        sink.event(Progress::Resolved {
            digest: resolved.top.descriptor.digest.clone(),
            manifest: resolved.descriptor.digest.clone(),
            blobs: blobs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.digest.clone(), d.size, i > 0))
                .collect(),
        });

        let size = resolved.descriptor.size + blobs.iter().map(|d| d.size).sum::<u64>();
        let name = reference.to_string();

        // With a snapshotter, unpacking overlaps the download: once the config is committed an
        // unpack task starts on the blocking pool, and each layer is handed to it (by index)
        // as soon as its blob is committed and verified, never before. The lease keeps every
        // blob from a content gc until the unpack is done.
        let (ready_tx, ready_rx) = mpsc::channel::<usize>();
        let start_unpack = std::sync::Mutex::new(self.snapshotter.clone().map(|snapshotter| {
            let (store, name, config, layers) = (
                self.store.clone(),
                name.clone(),
                config.clone(),
                layers.clone(),
            );
            move || {
                crate::snapshots::spawn_unpack(snapshotter, store, name, config, layers, ready_rx)
            }
        }));
        let unpacking = std::sync::Mutex::new(None);

        // Futures are built up front (not polled) so the stream holds no borrowing closure.
        let fetches: Vec<_> = blobs
            .iter()
            .enumerate()
            .map(|(j, desc)| {
                let fetch = self.fetch_blob(&repo, desc, &lease, sink.clone());
                let ready = ready_tx.clone();
                let (start_unpack, unpacking) = (&start_unpack, &unpacking);
                async move {
                    let n = fetch.await?;
                    if j == 0 {
                        let start = start_unpack
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take();
                        if let Some(start) = start {
                            *unpacking.lock().unwrap_or_else(|p| p.into_inner()) = Some(start());
                        }
                    } else {
                        // Only a committed blob is announced; a closed channel means no unpack.
                        let _ = ready.send(j - 1);
                    }
                    Ok::<u64, PullError>(n)
                }
            })
            .collect();
        drop(ready_tx);
        let fetched: Result<u64, PullError> = stream::iter(fetches)
            .buffer_unordered(self.opts.max_concurrent_downloads.max(1))
            .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
            .await;
        // Every sender is gone now: the unpack task sees the end of the ready layers.
        drop(start_unpack);
        let unpacking = unpacking.into_inner().unwrap_or_else(|p| p.into_inner());
        let downloaded = match fetched {
            Ok(n) => n,
            Err(e) => {
                // Let the unpack finish what it took (committed blobs only) before reporting.
                if let Some(task) = unpacking {
                    let _ = task.await;
                }
                return Err(e);
            }
        };

        let record = {
            let store = self.store.clone();
            let (name, target) = (name.clone(), resolved.top.descriptor.clone());
            let manifest = (resolved.descriptor.digest != target.digest)
                .then(|| resolved.descriptor.digest.clone());
            blocking(move || store.put_image(&name, &target, manifest.as_ref(), Some(size))).await
        };
        let snapshots = match unpacking {
            Some(task) => {
                let chain = task
                    .await
                    .map_err(|e| PullError::Internal(format!("unpack task: {e}")));
                record??;
                chain??
            }
            None => {
                record??;
                Vec::new()
            }
        };
        drop(lease);
        Ok(Pulled {
            name,
            target: resolved.top.descriptor.clone(),
            manifest: resolved.descriptor.clone(),
            config,
            layers,
            size,
            downloaded,
            credential: label,
            snapshots,
            elapsed: started.elapsed(),
        })
    }

    /// Tries each credential in order; moves on only when the registry refused it (401/403).
    async fn resolve(
        &self,
        reference: &oci::Reference,
        req: &PullRequest,
    ) -> Result<(Repository, registry::ResolvedImage, String), PullError> {
        let anonymous = [Attempt::anonymous()];
        let attempts = if req.attempts.is_empty() {
            &anonymous[..]
        } else {
            &req.attempts[..]
        };
        let mut failures = Vec::new();
        for attempt in attempts {
            let repo = self
                .client
                .repository(reference, attempt.credential.clone())?;
            match repo.resolve_image(reference, &req.platform).await {
                Ok(resolved) => return Ok((repo, resolved, attempt.label.clone())),
                Err(e) if matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::Denied) => {
                    tracing::debug!(credential = %attempt.label, error = %e, "credential refused");
                    failures.push(AttemptFailure {
                        label: attempt.label.clone(),
                        error: e,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(PullError::Denied(failures))
    }

    /// Commits bytes the registry client already verified (manifests, indexes).
    async fn put_bytes(
        &self,
        desc: &Descriptor,
        bytes: &Bytes,
        lease: &content::Lease,
    ) -> Result<(), PullError> {
        let (store, desc, bytes, lease) = (
            self.store.clone(),
            desc.clone(),
            bytes.clone(),
            lease.clone(),
        );
        blocking(move || -> Result<(), PullError> {
            match store.acquire(&desc.digest.to_string(), &desc, Some(&lease))? {
                content::Acquired::Exists(_) => Ok(()),
                content::Acquired::Writer(mut w) => {
                    if w.offset() != 0 {
                        w.reset()?;
                    }
                    w.write_all(&bytes)?;
                    w.commit().map(|_| ()).map_err(PullError::Integrity)
                }
            }
        })
        .await?
    }

    /// Downloads one blob into the store unless it is there (or another pull is writing it, in
    /// which case this waits and finds it committed). With peers, they are asked first; a peer
    /// attempt that fails in any way (including the digest check at commit) leaves nothing behind
    /// and the blob is fetched from the registry. Returns the bytes downloaded.
    async fn fetch_blob(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        lease: &content::Lease,
        sink: Arc<dyn ProgressSink>,
    ) -> Result<u64, PullError> {
        let mut ticket: Option<Box<dyn BlobTicket>> = None;
        let mut ask_peers = self.peers.is_some();
        loop {
            let acquired = self
                .store
                .acquire_async(desc.digest.to_string(), desc.clone(), Some(lease.clone()))
                .await?;
            let writer = match acquired {
                content::Acquired::Exists(_) => {
                    sink.event(Progress::BlobDone {
                        digest: desc.digest.clone(),
                        size: desc.size,
                        existed: true,
                    });
                    return Ok(0);
                }
                content::Acquired::Writer(w) => w,
            };
            let offset = writer.offset();
            let source = match &self.peers {
                Some(peers) if ask_peers && offset < desc.size => {
                    ask_peers = false;
                    let located = peers.locate(desc, offset).await;
                    ticket = Some(located.ticket);
                    located.source
                }
                _ => BlobSource::Registry,
            };
            match source {
                BlobSource::Peer(blob) => {
                    let peer = blob.peer;
                    sink.blob_source(&desc.digest, &BlobOrigin::Peer(peer.clone()));
                    let who = peer.clone();
                    let body = blob.body.map_err(move |e| {
                        PullError::Internal(format!("reading the blob from peer {who}: {e}"))
                    });
                    match self
                        .write_blob(writer, desc, Some(Ok(body)), true, &sink)
                        .await
                    {
                        Ok(n) => {
                            if let Some(t) = ticket.take() {
                                t.committed();
                            }
                            return Ok(n);
                        }
                        Err(e) => {
                            tracing::warn!(
                                digest = %desc.digest, %peer, error = %e,
                                "blob from a peer failed; fetching it from the registry"
                            );
                        }
                    }
                }
                BlobSource::Registry => {
                    sink.blob_source(&desc.digest, &BlobOrigin::Registry);
                    let body = if offset < desc.size {
                        Some(
                            repo.fetch_blob(desc, offset)
                                .await
                                .map(|b| b.map_err(PullError::from))
                                .map_err(PullError::from),
                        )
                    } else {
                        None
                    };
                    let n = self.write_blob(writer, desc, body, false, &sink).await?;
                    if let Some(t) = ticket.take() {
                        t.committed();
                    }
                    return Ok(n);
                }
            }
        }
    }

    /// Streams `body` into `writer` (from its offset) on a blocking writer thread and commits it.
    /// With `discard_partial`, a download that stops early discards the ingest instead of keeping
    /// it for a resume (bytes from an untrusted peer are never resumed from the registry).
    async fn write_blob<S>(
        &self,
        writer: content::Writer,
        desc: &Descriptor,
        body: Option<Result<S, PullError>>,
        discard_partial: bool,
        sink: &Arc<dyn ProgressSink>,
    ) -> Result<u64, PullError>
    where
        S: futures_util::Stream<Item = Result<Bytes, PullError>> + Unpin,
    {
        sink.event(Progress::BlobStarted {
            digest: desc.digest.clone(),
            size: desc.size,
            offset: writer.offset(),
        });

        // The writer lives on a blocking thread: it hashes and writes while this task keeps
        // reading the network. It commits only on `Finish`; if the download fails, the channel
        // closes without it and the partial ingest is kept for the next pull to resume (or
        // discarded, for a peer's bytes).
        let (tx, mut rx) = tokio_mpsc::channel::<Chunk>(CHANNEL_DEPTH);
        let writing = tokio::task::spawn_blocking(move || -> Result<bool, content::Error> {
            let mut writer = writer;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Chunk::Data(b) => writer.write_all(&b)?,
                    Chunk::Finish => return writer.commit().map(|_| true),
                }
            }
            if discard_partial {
                writer.discard()?;
            }
            Ok(false)
        });

        let mut received = 0u64;
        let download = async {
            if let Some(body) = body {
                let mut body = body?;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    let n = chunk.len() as u64;
                    if tx.send(Chunk::Data(chunk)).await.is_err() {
                        // The writer stopped (a write or size check failed): its error wins.
                        return Ok::<(), PullError>(());
                    }
                    received += n;
                    sink.event(Progress::BlobBytes {
                        digest: desc.digest.clone(),
                        bytes: n,
                    });
                }
            }
            let _ = tx.send(Chunk::Finish).await;
            Ok(())
        }
        .await;
        drop(tx);
        let written = writing
            .await
            .map_err(|e| PullError::Internal(format!("blob writer for {}: {e}", desc.digest)))?;
        match (download, written) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(match e {
                e @ (content::Error::Mismatch { .. } | content::Error::ExceedsSize { .. }) => {
                    PullError::Integrity(e)
                }
                e => PullError::Store(e),
            }),
            (Ok(()), Ok(true)) => {
                sink.event(Progress::BlobDone {
                    digest: desc.digest.clone(),
                    size: desc.size,
                    existed: false,
                });
                Ok(received)
            }
            (Ok(()), Ok(false)) => Err(PullError::Internal(format!(
                "blob writer for {} stopped before the download finished",
                desc.digest
            ))),
        }
    }
}

enum Chunk {
    Data(Bytes),
    Finish,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PullError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PullError::Internal(format!("blocking task: {e}")))
}
