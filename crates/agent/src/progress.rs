//! Pull progress on the Pod: the `berth.dev/pull-progress` annotation, a JSON document
//! `{"image": "...", "layers": [{"digest": "sha256:...", "size": N, "done": M, "source": "peer:node-3"}]}` that
//! the console renders as per-layer bars. `source` says where the layer's bytes come from, `"registry"` or
//! `"peer:<node>"` (as the image crate reports it, updated to `"registry"` when a peer fails mid-blob); it is
//! absent until the download of that layer starts and for a layer the node already had. Events from the pull
//! are folded into one in-memory state; a publisher task writes it as soon as the first layer starts
//! downloading (so even a short pull shows where its layers come from), then at most every [`MIN_INTERVAL`]
//! (about two writes a second per pod), and removes the annotation when the pull ends. A pull that downloads
//! nothing (every blob already on the node) never writes. All publishers of a node share one [`Pacer`]: the
//! annotation is a display, so the node writes it at most [`NODE_WRITES_PER_SEC`] times a second in total (20
//! pods waiting for one pull each refresh every 2 s instead of 40 writes a second, each fanned out to every
//! watcher of the pods, competing with the pull for the CPU), and the removals when a pull ends go out at that
//! pace behind the pods' status writes instead of in one burst as their containers start. It must never block
//! the pull or a status write on the API server.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::PULL_PROGRESS_ANNOTATION;

/// Shortest time between two writes of one pod's annotation.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Most progress-annotation writes (updates and removals) a node makes per second, over all its pods.
pub(crate) const NODE_WRITES_PER_SEC: u32 = 10;

/// The node's schedule of progress-annotation writes: each write takes the next free slot, slots
/// `1 / NODE_WRITES_PER_SEC` apart, so the writes of many pods are spread out instead of bunched.
#[derive(Debug)]
pub(crate) struct Pacer {
    spacing: Duration,
    next: Mutex<Option<Instant>>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(Duration::from_secs(1) / NODE_WRITES_PER_SEC)
    }
}

impl Pacer {
    pub(crate) fn new(spacing: Duration) -> Pacer {
        Pacer {
            spacing,
            next: Mutex::new(None),
        }
    }

    /// Reserves the next free slot and returns when it comes (at once when the schedule is idle).
    pub(crate) async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.spacing);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Layer {
    pub digest: String,
    pub size: u64,
    pub done: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The annotation's `source` of a layer: `registry` or `peer:<node>`.
pub(crate) fn source_text(origin: &image::BlobOrigin) -> String {
    match origin {
        image::BlobOrigin::Registry => "registry".to_string(),
        image::BlobOrigin::Peer(node) => format!("peer:{node}"),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Document {
    pub image: String,
    pub layers: Vec<Layer>,
}

/// The progress of one pull for one pod.
#[derive(Debug)]
pub(crate) struct PodProgress {
    doc: Mutex<Document>,
    dirty: AtomicBool,
    /// Told when a layer starts downloading (or learns its source): the publisher's first write.
    started: tokio::sync::Notify,
}

impl PodProgress {
    pub fn new(image: &str) -> Self {
        PodProgress {
            doc: Mutex::new(Document {
                image: image.to_string(),
                layers: Vec::new(),
            }),
            dirty: AtomicBool::new(false),
            started: tokio::sync::Notify::new(),
        }
    }

    /// Fold one pull event in.
    pub fn apply(&self, event: image::Progress) {
        let mut doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        let layer = |doc: &mut Document, digest: &oci::Digest| -> Option<usize> {
            let d = digest.to_string();
            doc.layers.iter().position(|l| l.digest == d)
        };
        match event {
            image::Progress::Resolved { blobs, .. } => {
                doc.layers = blobs
                    .into_iter()
                    .filter(|(_, _, is_layer)| *is_layer)
                    .map(|(digest, size, _)| Layer {
                        digest: digest.to_string(),
                        size,
                        done: 0,
                        source: None,
                    })
                    .collect();
            }
            image::Progress::BlobStarted { digest, offset, .. } => {
                if let Some(i) = layer(&mut doc, &digest) {
                    doc.layers[i].done = offset;
                    self.started.notify_one();
                }
            }
            image::Progress::BlobBytes { digest, bytes } => {
                if let Some(i) = layer(&mut doc, &digest) {
                    doc.layers[i].done += bytes;
                }
            }
            image::Progress::BlobDone { digest, size, .. } => {
                if let Some(i) = layer(&mut doc, &digest) {
                    doc.layers[i].done = size;
                }
            }
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Record where the bytes of layer `digest` come from (a config blob is not a layer and is ignored).
    pub fn source(&self, digest: &oci::Digest, origin: &image::BlobOrigin) {
        let mut doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        let d = digest.to_string();
        if let Some(layer) = doc.layers.iter_mut().find(|l| l.digest == d) {
            layer.source = Some(source_text(origin));
            self.dirty.store(true, Ordering::Release);
            self.started.notify_one();
        }
    }

    fn take(&self) -> Option<Document> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        let doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        (!doc.layers.is_empty()).then(|| doc.clone())
    }
}

/// Write the annotation once a layer starts downloading and then at most every [`MIN_INTERVAL`] while the pull
/// runs (until `done`), each write in its turn on the node's `pacer`, then remove it if it was ever written.
pub(crate) async fn publish(
    client: kube::Client,
    namespace: String,
    pod: String,
    progress: std::sync::Arc<PodProgress>,
    pacer: std::sync::Arc<Pacer>,
    done: CancellationToken,
) {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &namespace);
    let mut written = false;
    tokio::select! {
        biased;
        _ = done.cancelled() => return,
        _ = progress.started.notified() => {}
    }
    loop {
        tokio::select! {
            biased;
            _ = done.cancelled() => break,
            _ = pacer.turn() => {}
        }
        if let Some(doc) = progress.take() {
            let value = serde_json::to_string(&doc).unwrap_or_default();
            let patch = json!({"metadata": {"annotations": {PULL_PROGRESS_ANNOTATION: value}}});
            match api
                .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => written = true,
                Err(e) => tracing::debug!(pod = %pod, error = %e, "cannot publish pull progress"),
            }
        }
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(MIN_INTERVAL) => {}
        }
    }
    if written {
        pacer.turn().await;
        let patch = json!({"metadata": {"annotations": {PULL_PROGRESS_ANNOTATION: null}}});
        if let Err(e) = api
            .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod = %pod, error = %e, "cannot remove the pull progress annotation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_progress_follows_the_pull_events_and_ignores_the_config_blob() {
        let d = |c: char| -> oci::Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let p = PodProgress::new("reg:5000/app:v1");
        assert!(p.take().is_none());
        p.apply(image::Progress::Resolved {
            digest: d('a'),
            manifest: d('a'),
            blobs: vec![(d('c'), 10, false), (d('1'), 100, true), (d('2'), 50, true)],
        });
        p.apply(image::Progress::BlobStarted {
            digest: d('1'),
            size: 100,
            offset: 20,
        });
        p.apply(image::Progress::BlobBytes {
            digest: d('1'),
            bytes: 30,
        });
        p.apply(image::Progress::BlobDone {
            digest: d('2'),
            size: 50,
            existed: true,
        });
        let doc = p.take().unwrap();
        assert_eq!(doc.image, "reg:5000/app:v1");
        assert_eq!(
            doc.layers
                .iter()
                .map(|l| (l.size, l.done))
                .collect::<Vec<_>>(),
            vec![(100, 50), (50, 50)]
        );
        assert!(p.take().is_none(), "nothing new to write");
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_writes_of_all_pods_and_lets_the_first_after_a_pause_go_at_once() {
        let spacing = Duration::from_millis(100);
        let pacer = std::sync::Arc::new(Pacer::new(spacing));
        let start = Instant::now();
        let turns: Vec<_> = (0..4)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.turn().await;
                    Instant::now()
                })
            })
            .collect();
        let mut at = Vec::new();
        for t in turns {
            at.push(t.await.unwrap() - start);
        }
        at.sort();
        assert_eq!(at, [0, 100, 200, 300].map(Duration::from_millis));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = Instant::now();
        pacer.turn().await;
        assert_eq!(
            Instant::now(),
            idle,
            "an idle schedule does not delay a write"
        );
    }

    #[tokio::test]
    async fn only_a_layer_that_starts_downloading_wakes_the_publisher() {
        let d = |c: char| -> oci::Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let wait = Duration::from_millis(50);
        let p = PodProgress::new("reg:5000/app:v1");
        p.apply(image::Progress::Resolved {
            digest: d('a'),
            manifest: d('a'),
            blobs: vec![(d('c'), 10, false), (d('1'), 100, true), (d('2'), 50, true)],
        });
        p.source(&d('c'), &image::BlobOrigin::Registry);
        p.apply(image::Progress::BlobStarted {
            digest: d('c'),
            size: 10,
            offset: 0,
        });
        p.apply(image::Progress::BlobDone {
            digest: d('2'),
            size: 50,
            existed: true,
        });
        assert!(
            tokio::time::timeout(wait, p.started.notified())
                .await
                .is_err(),
            "the config blob and cached layers do not start a write"
        );
        p.source(&d('1'), &image::BlobOrigin::Peer("node-3".into()));
        assert!(
            tokio::time::timeout(wait, p.started.notified())
                .await
                .is_ok()
        );
    }

    #[test]
    fn each_layer_names_where_its_bytes_come_from_and_a_failed_peer_turns_into_the_registry() {
        let d = |c: char| -> oci::Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let p = PodProgress::new("reg:5000/app:v1");
        p.apply(image::Progress::Resolved {
            digest: d('a'),
            manifest: d('a'),
            blobs: vec![
                (d('c'), 10, false),
                (d('1'), 100, true),
                (d('2'), 50, true),
                (d('3'), 70, true),
            ],
        });
        p.source(&d('c'), &image::BlobOrigin::Peer("node-3".into()));
        p.source(&d('1'), &image::BlobOrigin::Peer("node-3".into()));
        p.source(&d('2'), &image::BlobOrigin::Peer("node-4".into()));
        p.source(&d('2'), &image::BlobOrigin::Registry);
        let doc = p.take().unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        let sources: Vec<&serde_json::Value> = json["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["source"])
            .collect();
        assert_eq!(
            sources,
            [
                &json!("peer:node-3"),
                &json!("registry"),
                &serde_json::Value::Null
            ]
        );
        assert!(
            !json["layers"][2]
                .as_object()
                .unwrap()
                .contains_key("source"),
            "a layer not started yet has no source"
        );
    }
}
