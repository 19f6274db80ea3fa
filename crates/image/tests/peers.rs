//! The peer seam of a pull against the real docker-registry (TLS + htpasswd): a peer that serves another
//! node's content store (committed or still downloading, through `content::Store::follow`) saves every
//! registry blob GET; a peer that lies, breaks off or has nothing costs one discarded attempt and the
//! registry serves the blob; what a peer sent is never committed unless it verifies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use image::{
    Attempt, BlobOrigin, BlobPeers, BlobSource, BlobTicket, Located, PeerBlob, Progress,
    PullOptions, PullRequest, Puller,
};
use oci::Descriptor;
use registry::{Client, ClientConfig, Credential, TrustConfig};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "peer-canary-91d0";
const REPO: &str = "team/app";

struct Env {
    _pki: TestPki,
    registry: Registry,
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    image: testkit::image::Image,
}

async fn env() -> Env {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server(["127.0.0.1", "localhost"]).unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(leaf, pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    let mut b = ImageBuilder::new().cmd(["/bin/app"]);
    for i in 0..3u64 {
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ (i + 1);
        let content: Vec<u8> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        b = b.layer(
            vec![Entry::file(format!("layer{i}/data"), content)],
            Compression::Gzip,
        );
    }
    let image = b.build().unwrap();
    image
        .push(
            &registry,
            &format!("{REPO}:v1"),
            Some(&Credentials::new("alice", PASSWORD)),
        )
        .await
        .unwrap();
    Env {
        _pki: pki,
        registry,
        dir,
        ca_file,
        image,
    }
}

impl Env {
    fn puller(&self, store: &content::Store) -> Puller {
        let client = Client::new(ClientConfig::with_trust(TrustConfig {
            ca_files: vec![self.ca_file.clone()],
            ..Default::default()
        }))
        .unwrap();
        Puller::new(client, store.clone(), PullOptions::default())
    }

    fn store(&self, name: &str) -> content::Store {
        content::Store::open(self.dir.path().join(name)).unwrap()
    }

    fn request(&self) -> PullRequest {
        PullRequest {
            reference: oci::Reference::parse_normalized(&format!(
                "{}/{REPO}:v1",
                self.registry.host_port()
            ))
            .unwrap(),
            attempts: vec![Attempt {
                label: "alice".into(),
                credential: Some(Credential::password("alice", PASSWORD)),
            }],
            platform: oci::Platform::parse("linux/amd64").unwrap(),
        }
    }

    /// Registry GETs answered with bytes, per layer and for the config.
    async fn blob_gets(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (d, _) in self.image.blobs() {
            if d.media_type.contains("manifest") {
                continue;
            }
            out.push(self.registry.blob_gets(REPO, &d.digest).await);
        }
        out
    }
}

/// Counts committed tickets.
struct Counted(Arc<AtomicUsize>);

impl BlobTicket for Counted {
    fn committed(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a test peer does.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Serve from its store (the real follower path).
    Honest,
    /// Serve bytes of the right length that are not the blob.
    Lies,
    /// Serve the first half, then fail the stream.
    Breaks,
    /// Have nothing: the registry.
    Empty,
}

/// A peer node backed by a real content store.
struct StorePeer {
    store: content::Store,
    behaviour: Behaviour,
    committed: Arc<AtomicUsize>,
    asked: AtomicUsize,
}

impl StorePeer {
    fn new(store: content::Store, behaviour: Behaviour) -> Arc<StorePeer> {
        Arc::new(StorePeer {
            store,
            behaviour,
            committed: Arc::new(AtomicUsize::new(0)),
            asked: AtomicUsize::new(0),
        })
    }
}

impl BlobPeers for StorePeer {
    fn locate<'a>(&'a self, desc: &'a Descriptor, offset: u64) -> BoxFuture<'a, Located> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let ticket = Box::new(Counted(self.committed.clone()));
            let size = desc.size;
            let body: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>> =
                match self.behaviour {
                    Behaviour::Empty => {
                        return Located {
                            source: BlobSource::Registry,
                            ticket,
                        };
                    }
                    Behaviour::Lies => Box::pin(futures_util::stream::iter([Ok(Bytes::from(
                        vec![0xab; (size - offset) as usize],
                    ))])),
                    Behaviour::Honest | Behaviour::Breaks => {
                        use std::io::Read;
                        let mut f = self.store.follow(&desc.digest).unwrap().unwrap();
                        f.start_at(offset).unwrap();
                        let mut all = Vec::new();
                        f.read_to_end(&mut all).unwrap();
                        if self.behaviour == Behaviour::Breaks {
                            all.truncate(all.len() / 2);
                            Box::pin(futures_util::stream::iter([
                                Ok(Bytes::from(all)),
                                Err(std::io::Error::other("connection reset by peer")),
                            ]))
                        } else {
                            Box::pin(futures_util::stream::iter([Ok(Bytes::from(all))]))
                        }
                    }
                };
            Located {
                source: BlobSource::Peer(PeerBlob {
                    peer: "node-3".into(),
                    body,
                }),
                ticket,
            }
        })
    }
}

/// Records where each blob came from, in order.
#[derive(Default)]
struct Origins(Mutex<Vec<(String, BlobOrigin)>>);

impl image::ProgressSink for Origins {
    fn event(&self, _: Progress) {}
    fn blob_source(&self, digest: &oci::Digest, origin: &BlobOrigin) {
        self.0
            .lock()
            .unwrap()
            .push((digest.to_string(), origin.clone()));
    }
}

/// Pulls the image once into a fresh "seed" store straight from the registry.
async fn seed(env: &Env) -> content::Store {
    let store = env.store("seed");
    env.puller(&store).pull(&env.request()).await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_with_the_blobs_serves_them_and_the_registry_serves_each_blob_once() {
    let env = env().await;
    let seeded = seed(&env).await;
    let peer = StorePeer::new(seeded, Behaviour::Honest);
    let store = env.store("node-b");
    let origins = Arc::new(Origins::default());
    let pulled = env
        .puller(&store)
        .with_peers(peer.clone())
        .pull_with_progress(&env.request(), origins.clone())
        .await
        .unwrap();
    assert_eq!(pulled.layers.len(), 3);
    for l in &pulled.layers {
        assert!(store.verify(&l.digest).is_ok(), "{} verified", l.digest);
    }
    assert_eq!(
        env.blob_gets().await,
        vec![1; 4],
        "only the seed pull hit the registry"
    );
    assert_eq!(peer.asked.load(Ordering::SeqCst), 4, "config and 3 layers");
    assert_eq!(peer.committed.load(Ordering::SeqCst), 4);
    let origins = origins.0.lock().unwrap();
    assert!(
        origins
            .iter()
            .all(|(_, o)| *o == BlobOrigin::Peer("node-3".into())),
        "{origins:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mismatching_peer_bytes_are_refused_and_refetched_from_the_registry() {
    let env = env().await;
    let peer = StorePeer::new(env.store("unused"), Behaviour::Lies);
    let store = env.store("node-b");
    let origins = Arc::new(Origins::default());
    let pulled = env
        .puller(&store)
        .with_peers(peer.clone())
        .pull_with_progress(&env.request(), origins.clone())
        .await
        .unwrap();
    for l in &pulled.layers {
        assert!(store.verify(&l.digest).is_ok(), "{} verified", l.digest);
    }
    assert!(
        store.ingests().unwrap().is_empty(),
        "no peer bytes left behind"
    );
    assert_eq!(env.blob_gets().await, vec![1; 4]);
    // The ticket still learns of the commit (this node now has the blob to share).
    assert_eq!(peer.committed.load(Ordering::SeqCst), 4);
    let origins = origins.0.lock().unwrap();
    for (d, _) in env.image.blobs() {
        if d.media_type.contains("manifest") {
            continue;
        }
        let seen: Vec<&BlobOrigin> = origins
            .iter()
            .filter(|(x, _)| *x == d.digest)
            .map(|(_, o)| o)
            .collect();
        assert_eq!(
            seen,
            vec![&BlobOrigin::Peer("node-3".into()), &BlobOrigin::Registry],
            "{}",
            d.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_stream_that_breaks_leaves_no_partial_data_and_the_registry_serves_the_whole_blob() {
    let env = env().await;
    let seeded = seed(&env).await;
    let peer = StorePeer::new(seeded, Behaviour::Breaks);
    let store = env.store("node-b");
    let pulled = env
        .puller(&store)
        .with_peers(peer.clone())
        .pull(&env.request())
        .await
        .unwrap();
    for l in &pulled.layers {
        assert!(store.verify(&l.digest).is_ok());
    }
    // The seed pull plus one full refetch each: the peer's half was not resumed from.
    assert_eq!(env.blob_gets().await, vec![2; 4]);
    let ranged = env
        .registry
        .access_log_settled()
        .await
        .into_iter()
        .filter(|e| e.method == "GET" && e.status == 206)
        .count();
    assert_eq!(ranged, 0, "no registry request resumed a peer's bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_without_the_blob_sends_the_pull_to_the_registry() {
    let env = env().await;
    let peer = StorePeer::new(env.store("unused"), Behaviour::Empty);
    let store = env.store("node-b");
    let pulled = env
        .puller(&store)
        .with_peers(peer.clone())
        .pull(&env.request())
        .await
        .unwrap();
    assert_eq!(
        pulled.downloaded,
        env.image
            .blobs()
            .iter()
            .filter(|(d, _)| !d.media_type.contains("manifest"))
            .map(|(d, _)| d.size)
            .sum::<u64>()
    );
    assert_eq!(env.blob_gets().await, vec![1; 4]);
    assert_eq!(peer.asked.load(Ordering::SeqCst), 4);
    assert_eq!(peer.committed.load(Ordering::SeqCst), 4);
    // A second pull finds everything local: peers are not asked again.
    env.puller(&store)
        .with_peers(peer.clone())
        .pull(&env.request())
        .await
        .unwrap();
    assert_eq!(peer.asked.load(Ordering::SeqCst), 4);
}
