//! Peer-to-peer layer sharing: this node's side of `image::BlobPeers`. Before a blob leaves the registry, the
//! agent looks for another node that has it (or is downloading it) and streams it from that node's
//! `GET /blobs/{digest}` (see [`crate::server`]); the puller verifies every byte against the manifest's digest
//! and falls back to the registry on any failure.
//!
//! Coordination and advertising go through one coordination.k8s.io/v1 Lease per blob,
//! `kube-system/blob-<algorithm>-<hex>`, a small tracker record:
//! - `spec.holderIdentity` is the node that claimed the blob and downloads it from the registry (a short
//!   lease, [`CLAIM_DURATION`], renewed every [`RENEW_EVERY`] while it downloads, cleared when it ends);
//! - the annotation [`BLOB_NODES_ANNOTATION`] lists the nodes that committed the blob, newest first, at most
//!   [`MAX_ADVERTISED`] of them.
//!
//! A puller reads the Lease once: it streams from an advertised node (random order, spreading the load), else
//! from the live claimer (its in-progress ingest, so simultaneous pulls overlap instead of queueing), else it
//! takes the claim (create, or a resourceVersion-checked update when nobody holds it, the holder stopped
//! renewing for the lease duration as measured on this node's clock, or the holder cannot be reached) and
//! downloads from the registry. So a
//! layer leaves the registry about once however many nodes pull it at the same moment, each pull costs one
//! GET of one small object plus a few writes per blob, and nothing scales with the number of nodes (no
//! broadcast to every node, no per-node list of blobs on the Node object). Stale entries (a node that
//! garbage-collected the blob, or left) only cost a 404 or a failed connect before the next candidate, and
//! [`crate::trackers`] sweeps them away: each node drops itself from trackers of blobs its store lost, nodes
//! whose Node object is gone are dropped, and a tracker left with no node and no live claim is deleted (with a
//! resourceVersion precondition). When a tracker is deleted under a claim or an advertisement in flight, that
//! write is retried against the tracker as it now is (created afresh).
//!
//! Transport and node credentials: each agent connects with its own serving certificate as its TLS client
//! certificate and pins the peer's serving certificate by the SHA-256 published on the peer's Node
//! (`berth.dev/serving-cert-sha256`, with `tlspin::pinned_client_config` as the API server does for
//! logs); the serving side accepts the connection only if the presented certificate's SHA-256 matches the
//! annotation of the Node its common name names. Only nodes registered with the cluster (with the node token) can therefore read blobs, and a node
//! can only impersonate itself. Peers learn nothing a node could not pull itself: the manifest and tag
//! resolution always come from the registry with the pod's credentials, and a blob is only asked for by
//! digest.
//!
//! Failures of the API server or of peers never fail a pull: they answer "registry". This module must never
//! hand the puller a peer stream without a pinned certificate, never write a Lease another node validly
//! holds, and never wait without bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use image::{BlobPeers, BlobSource, BlobTicket, Located, PeerBlob};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use oci::Descriptor;
use rand::seq::SliceRandom;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tlspin::{CertificatePin, pinned_client_config};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::SERVING_CERT_ANNOTATION;

/// Namespace of the blob trackers.
pub const CLAIM_NAMESPACE: &str = "kube-system";
/// Annotation on a blob tracker: nodes that committed the blob, newest first, comma-separated.
pub const BLOB_NODES_ANNOTATION: &str = "berth.dev/blob-nodes";
/// Label on every blob tracker (so `kubectl get leases -l berth.dev/blob-tracker` lists them).
pub const TRACKER_LABEL: &str = "berth.dev/blob-tracker";
/// How long a claim stays valid without renewal.
pub const CLAIM_DURATION: Duration = Duration::from_secs(10);
/// How often a claimer renews while it downloads.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// At most this many nodes are advertised per blob.
pub const MAX_ADVERTISED: usize = 16;
/// Each API call of the coordination may take this long before the pull goes to the registry.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting and the TLS handshake to a peer.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer's response headers.
const PEER_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two reads of a peer's body (a claimer waits up to a minute for its registry itself).
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(75);
/// How often a puller looks again while the claimer has not started writing.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// How long a puller waits for a live claimer that has not started writing before using the registry.
const CLAIMER_START_WAIT: Duration = Duration::from_secs(30);
/// Conflicting tracker updates are retried this often.
const UPDATE_ATTEMPTS: usize = 8;

/// The tracker Lease of a blob.
pub fn tracker_name(digest: &oci::Digest) -> String {
    format!("blob-{}-{}", digest.algorithm(), digest.hex())
}

/// The nodes a tracker advertises, newest first.
pub(crate) fn advertised(lease: &Lease) -> Vec<String> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BLOB_NODES_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `nodes` with `node` moved to the front, capped at [`MAX_ADVERTISED`].
fn with_front(nodes: Vec<String>, node: &str) -> String {
    let mut out = vec![node.to_string()];
    out.extend(nodes.into_iter().filter(|n| n != node));
    out.truncate(MAX_ADVERTISED);
    out.join(",")
}

/// Why a peer could not serve a blob.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// The peer answered 404: it has neither the blob nor a download of it.
    #[error("node {node} does not have blob {digest}")]
    NotFound { node: String, digest: String },
    /// Anything else (no address, connect, TLS pin, status, framing).
    #[error("node {node} cannot serve blob {digest}: {reason}")]
    Failed {
        node: String,
        digest: String,
        reason: String,
    },
}

/// This node's peer client and blob coordination.
#[derive(Clone)]
pub(crate) struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    leases: Api<Lease>,
    nodes: Api<Node>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
    /// One pooled HTTPS client per pinned peer certificate.
    clients: Mutex<HashMap<[u8; 32], reqwest::Client>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// Peers of `node`, authenticating with its serving certificate and key.
    pub fn new(
        node: &str,
        client: kube::Client,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        Peers {
            inner: Arc::new(Inner {
                node: node.to_string(),
                leases: Api::namespaced(client.clone(), CLAIM_NAMESPACE),
                nodes: Api::all(client),
                cert,
                key,
                provider: Arc::new(rustls::crypto::ring::default_provider()),
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl BlobPeers for Peers {
    fn locate<'a>(&'a self, desc: &'a Descriptor, offset: u64) -> BoxFuture<'a, Located> {
        Box::pin(self.inner.clone().locate(desc.clone(), offset))
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// A checked write lost to another writer: the tracker changed (409) or was garbage-collected (404).
fn is_lost_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

/// Label a tracker (one written before the label existed, or by hand) so the sweep sees it.
fn label(lease: &mut Lease) {
    lease
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .entry(TRACKER_LABEL.to_string())
        .or_insert_with(|| "true".into());
}

async fn api<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match timeout(API_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(
            format!("{what}: no answer from the API server within {API_TIMEOUT:?}").into(),
        )),
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Inner {
    /// A ticket that advertises this node once the blob is committed.
    fn advertise(self: &Arc<Self>, digest: &oci::Digest) -> Box<dyn BlobTicket> {
        Box::new(Ticket {
            inner: self.clone(),
            name: tracker_name(digest),
            renewing: None,
            done: false,
        })
    }

    fn registry(self: &Arc<Self>, digest: &oci::Digest) -> Located {
        Located {
            source: BlobSource::Registry,
            ticket: self.advertise(digest),
        }
    }

    async fn locate(self: Arc<Self>, desc: Descriptor, offset: u64) -> Located {
        let digest = &desc.digest;
        let name = tracker_name(digest);
        let mut tried: HashSet<String> = HashSet::new();
        // The tracker's resourceVersion and when this node first saw it (client-go's observedTime).
        let mut observed: Option<(String, Instant)> = None;
        let started = Instant::now();
        let mut conflicts = 0;
        loop {
            let lease = match api("reading the blob tracker", self.leases.get_opt(&name)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "cannot read the blob tracker {CLAIM_NAMESPACE}/{name}; fetching from the registry");
                    return self.registry(digest);
                }
            };
            let Some(lease) = lease else {
                match self.create_claim(&name).await {
                    Ok(()) => return self.claimed(digest, name),
                    Err(e) if is_conflict(&e) && conflicts < UPDATE_ATTEMPTS => {
                        conflicts += 1;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(%digest, error = %e, "cannot create the blob tracker {CLAIM_NAMESPACE}/{name}; fetching from the registry");
                        return self.registry(digest);
                    }
                }
            };
            let rv = lease.metadata.resource_version.clone().unwrap_or_default();
            let seen = Instant::now();
            let changed_at = match &observed {
                Some((r, t)) if *r == rv => *t,
                _ => {
                    observed = Some((rv, seen));
                    seen
                }
            };
            let spec = lease.spec.clone().unwrap_or_default();
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(CLAIM_DURATION, Duration::from_secs);
            let claimer = spec
                .holder_identity
                .clone()
                .filter(|h| !h.is_empty() && *h != self.node)
                .filter(|_| seen.duration_since(changed_at) < duration);

            let mut candidates: Vec<String> = advertised(&lease)
                .into_iter()
                .filter(|n| *n != self.node && !tried.contains(n))
                .collect();
            candidates.shuffle(&mut rand::rng());
            for peer in candidates {
                match self.open(&peer, &desc, offset).await {
                    Ok(blob) => return self.from_peer(digest, blob),
                    Err(e) => {
                        tracing::debug!(error = %e, "advertised peer cannot serve the blob");
                        tried.insert(peer);
                    }
                }
            }
            if let Some(claimer) = claimer
                && !tried.contains(&claimer)
            {
                match self.open(&claimer, &desc, offset).await {
                    Ok(blob) => return self.from_peer(digest, blob),
                    // It claimed the blob but has not started writing it yet.
                    Err(PeerError::NotFound { .. }) if started.elapsed() < CLAIMER_START_WAIT => {
                        tokio::time::sleep(WAIT_POLL).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "the node that claimed the blob cannot serve it; taking the claim over");
                        tried.insert(claimer);
                    }
                }
            }
            // Nobody (reachable) downloads it and nobody advertised could serve it: claim it, so that
            // the nodes pulling it at the same time stream from this one.
            match self.take_claim(lease).await {
                Ok(()) => return self.claimed(digest, name),
                Err(e) if is_lost_race(&e) && conflicts < UPDATE_ATTEMPTS => conflicts += 1,
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "cannot claim the blob tracker {CLAIM_NAMESPACE}/{name}; fetching from the registry");
                    return self.registry(digest);
                }
            }
        }
    }

    fn from_peer(self: &Arc<Self>, digest: &oci::Digest, blob: PeerBlob) -> Located {
        tracing::info!(%digest, peer = %blob.peer, "fetching blob from a peer");
        Located {
            source: BlobSource::Peer(blob),
            ticket: self.advertise(digest),
        }
    }

    fn claimed(self: &Arc<Self>, digest: &oci::Digest, name: String) -> Located {
        tracing::debug!(%digest, "claimed the blob: downloading it from the registry for the cluster");
        let stop = CancellationToken::new();
        tokio::spawn(self.clone().renew(name.clone(), stop.clone()));
        Located {
            source: BlobSource::Registry,
            ticket: Box::new(Ticket {
                inner: self.clone(),
                name,
                renewing: Some(stop),
                done: false,
            }),
        }
    }

    fn claim_spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.node.clone()),
            lease_duration_seconds: Some(CLAIM_DURATION.as_secs() as i32),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        }
    }

    async fn create_claim(&self, name: &str) -> Result<(), kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(CLAIM_NAMESPACE.to_string()),
                labels: Some(BTreeMap::from([(TRACKER_LABEL.to_string(), "true".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(self.claim_spec()),
        };
        api(
            "creating the blob tracker",
            self.leases.create(&PostParams::default(), &lease),
        )
        .await
        .map(|_| ())
    }

    /// Take a tracker nobody validly holds (the update is checked against its resourceVersion).
    async fn take_claim(&self, mut lease: Lease) -> Result<(), kube::Error> {
        let name = lease.metadata.name.clone().unwrap_or_default();
        let transitions = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        let mut spec = self.claim_spec();
        spec.lease_transitions = Some(transitions + 1);
        lease.spec = Some(spec);
        label(&mut lease);
        api(
            "claiming the blob tracker",
            self.leases.replace(&name, &PostParams::default(), &lease),
        )
        .await
        .map(|_| ())
    }

    /// Renew the claim until `stop` (or until another node holds it).
    async fn renew(self: Arc<Self>, name: String, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
            let mut lease = match api("renewing the blob claim", self.leases.get(&name)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "renewing the blob claim {name} failed");
                    continue;
                }
            };
            let Some(spec) = lease.spec.as_mut() else {
                return;
            };
            if spec.holder_identity.as_deref() != Some(self.node.as_str()) {
                tracing::info!("another node took over the blob claim {name}");
                return;
            }
            spec.renew_time = Some(now());
            if stop.is_cancelled() {
                return;
            }
            if let Err(e) = api(
                "renewing the blob claim",
                self.leases.replace(&name, &PostParams::default(), &lease),
            )
            .await
            {
                tracing::debug!(error = %e, "renewing the blob claim {name} failed");
            }
        }
    }

    /// Release this node's claim (if it still holds it) and, when `committed`, advertise it.
    async fn finish(self: Arc<Self>, name: String, committed: bool) {
        for _ in 0..UPDATE_ATTEMPTS {
            let lease = match api("reading the blob tracker", self.leases.get_opt(&name)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "updating the blob tracker {name} failed");
                    return;
                }
            };
            let result = match lease {
                None if committed => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(CLAIM_NAMESPACE.to_string()),
                            labels: Some(BTreeMap::from([(
                                TRACKER_LABEL.to_string(),
                                "true".into(),
                            )])),
                            annotations: Some(BTreeMap::from([(
                                BLOB_NODES_ANNOTATION.to_string(),
                                self.node.clone(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec {
                            lease_duration_seconds: Some(CLAIM_DURATION.as_secs() as i32),
                            ..LeaseSpec::default()
                        }),
                    };
                    api(
                        "creating the blob tracker",
                        self.leases.create(&PostParams::default(), &lease),
                    )
                    .await
                    .map(|_| ())
                }
                None => return,
                Some(mut lease) => {
                    let mine = lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        == Some(self.node.as_str());
                    let nodes = advertised(&lease);
                    // A full list has sources enough: later nodes do not write (bounded writes per blob).
                    let enough = nodes.contains(&self.node) || nodes.len() >= MAX_ADVERTISED;
                    if !mine && (!committed || enough) {
                        return;
                    }
                    if mine && let Some(spec) = lease.spec.as_mut() {
                        spec.holder_identity = None;
                        spec.renew_time = Some(now());
                    }
                    label(&mut lease);
                    if committed {
                        lease
                            .metadata
                            .annotations
                            .get_or_insert_with(BTreeMap::new)
                            .insert(
                                BLOB_NODES_ANNOTATION.to_string(),
                                with_front(nodes, &self.node),
                            );
                    }
                    api(
                        "updating the blob tracker",
                        self.leases.replace(&name, &PostParams::default(), &lease),
                    )
                    .await
                    .map(|_| ())
                }
            };
            match result {
                Ok(()) => return,
                Err(e) if is_lost_race(&e) => {
                    // Nodes that committed at the same moment: spread the retries.
                    let jitter = rand::random_range(10..100u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "updating the blob tracker {name} failed");
                    return;
                }
            }
        }
    }

    /// The pooled client that pins `pin` and authenticates as this node.
    fn client(&self, pin: [u8; 32]) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&pin) {
            return Ok(c.clone());
        }
        let pinned = CertificatePin::new(pin).with_mismatch(|presented, pinned| {
            format!(
                "the peer presented a serving certificate with SHA-256 {presented}, but its Node pins {pinned} in {SERVING_CERT_ANNOTATION}"
            )
        });
        let tls = pinned_client_config(
            self.provider.clone(),
            pinned,
            vec![self.cert.clone()],
            self.key.clone_key(),
        )
        .map_err(|e| format!("the serving certificate cannot be a client certificate: {e}"))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(PEER_CONNECT_TIMEOUT)
            .read_timeout(PEER_READ_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        clients.insert(pin, client.clone());
        Ok(client)
    }

    /// Open `GET /blobs/{digest}` from `offset` on node `peer`.
    async fn open(
        &self,
        peer: &str,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<PeerBlob, PeerError> {
        let digest = desc.digest.to_string();
        let failed = |reason: String| PeerError::Failed {
            node: peer.to_string(),
            digest: digest.clone(),
            reason,
        };
        let node = api("reading the peer's Node", self.nodes.get(peer))
            .await
            .map_err(|e| failed(format!("reading its Node: {e}")))?;
        let (addr, pin) = endpoint(&node).map_err(failed)?;
        let client = self.client(pin).map_err(failed)?;
        let url = format!("https://{addr}/blobs/{digest}");
        let request = client
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes={offset}-"))
            .send();
        let resp = match timeout(PEER_HEADERS_TIMEOUT, request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(failed(format!("GET {url}: {}", error_chain(&e)))),
            Err(_) => {
                return Err(failed(format!(
                    "GET {url}: no response within {PEER_HEADERS_TIMEOUT:?}"
                )));
            }
        };
        match resp.status().as_u16() {
            206 => {
                let range = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let want = format!("bytes {offset}-{}/{}", desc.size - 1, desc.size);
                if range != want {
                    return Err(failed(format!(
                        "GET {url}: Content-Range {range:?}, expected {want:?}"
                    )));
                }
            }
            404 => {
                return Err(PeerError::NotFound {
                    node: peer.to_string(),
                    digest,
                });
            }
            code => {
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                return Err(failed(format!("GET {url}: HTTP {code}: {}", text.trim())));
            }
        }
        let who = peer.to_string();
        let body = resp.bytes_stream().map(move |r: reqwest::Result<Bytes>| {
            r.map_err(|e| std::io::Error::other(format!("from node {who}: {}", error_chain(&e))))
        });
        Ok(PeerBlob {
            peer: peer.to_string(),
            body: Box::pin(body),
        })
    }
}

/// The address of a Node's agent endpoint and the pin of its serving certificate.
fn endpoint(node: &Node) -> Result<(SocketAddr, [u8; 32]), String> {
    let pin = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SERVING_CERT_ANNOTATION))
        .ok_or_else(|| format!("its Node has no {SERVING_CERT_ANNOTATION} annotation"))?;
    let pin: [u8; 32] = hex::decode(pin)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("its Node's {SERVING_CERT_ANNOTATION} is not a SHA-256 in hex"))?;
    let status = node.status.as_ref();
    let ip: IpAddr = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .and_then(|a| a.address.parse().ok())
        .ok_or("its Node has no InternalIP address in status.addresses")?;
    let port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|k| k.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or("its Node has no status.daemonEndpoints.kubeletEndpoint.Port")?;
    Ok((SocketAddr::new(ip, port), pin))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Told when the blob is committed here: releases this node's claim (if any) and advertises the node. Dropped
/// without a commit, it only releases the claim so another node can take over at once.
struct Ticket {
    inner: Arc<Inner>,
    name: String,
    renewing: Option<CancellationToken>,
    done: bool,
}

impl Ticket {
    fn end(&mut self, committed: bool) {
        self.done = true;
        if let Some(stop) = self.renewing.take() {
            stop.cancel();
        } else if !committed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(self.inner.clone().finish(self.name.clone(), committed));
        }
    }
}

impl BlobTicket for Ticket {
    fn committed(mut self: Box<Self>) {
        self.end(true);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.end(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_names_are_valid_object_names() {
        let d: oci::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let name = tracker_name(&d);
        assert_eq!(name, format!("blob-sha256-{}", "ab".repeat(32)));
        assert!(name.len() <= 253);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn advertising_puts_the_node_first_without_duplicates_and_caps_the_list() {
        let nodes: Vec<String> = (0..MAX_ADVERTISED + 4).map(|i| format!("n{i}")).collect();
        let out = with_front(nodes, "n3");
        let list: Vec<&str> = out.split(',').collect();
        assert_eq!(list.len(), MAX_ADVERTISED);
        assert_eq!(list[0], "n3");
        assert_eq!(list.iter().filter(|n| **n == "n3").count(), 1);
        assert_eq!(list[1], "n0");
        assert_eq!(with_front(vec![], "a"), "a");
    }

    #[test]
    fn a_node_without_an_endpoint_or_pin_is_not_a_peer() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "annotations": {SERVING_CERT_ANNOTATION: "ab".repeat(32)}},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.2"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}},
        }))
        .unwrap();
        let (addr, pin) = endpoint(&node).unwrap();
        assert_eq!(addr, "127.0.0.2:10250".parse().unwrap());
        assert_eq!(pin, [0xab; 32]);
        let mut no_pin = node.clone();
        no_pin.metadata.annotations = None;
        assert!(
            endpoint(&no_pin)
                .unwrap_err()
                .contains(SERVING_CERT_ANNOTATION)
        );
        let mut no_port = node.clone();
        no_port.status.as_mut().unwrap().daemon_endpoints = None;
        assert!(endpoint(&no_port).unwrap_err().contains("kubeletEndpoint"));
    }
}
