//! Single flight of pulls: concurrent requests for the same image with the same credential identity share one
//! pull (one resolve, one download of each blob, one KEP-2535 record update); requests with different
//! credentials never share, so no pod ever rides on another pod's authentication. Progress of the shared pull
//! is fanned out to every waiting caller's sink (a late joiner first gets the `Resolved` event it missed). The
//! pull runs in its own task, so a caller that gives up never cancels it for the others. Where each blob's bytes
//! come from (the registry or a peer node, as `image` reports it) is fanned out the same way, and replayed to
//! late joiners with the `Resolved` event. It must never decide whether to pull (that is the manager) and never
//! see a credential value.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use image::{BlobOrigin, Progress, PullError, Pulled};
use oci::Digest;

/// Where a caller wants progress of its pull.
pub trait PullProgress: Send + Sync {
    /// One event of the (possibly shared) pull.
    fn progress(&self, event: Progress);

    /// Where the bytes of blob `digest` come from: told before its [`Progress::BlobStarted`], and again (with
    /// [`BlobOrigin::Registry`]) when a peer failed and the blob is fetched afresh. A caller joining a shared
    /// pull late is told the latest origin of every blob already started, right after `Resolved`. Ignored by
    /// default.
    fn blob_source(&self, digest: &Digest, origin: &BlobOrigin) {
        let _ = (digest, origin);
    }
}

impl<F: Fn(Progress) + Send + Sync> PullProgress for F {
    fn progress(&self, event: Progress) {
        self(event)
    }
}

/// The result every caller of one flight receives.
pub type FlightResult = Result<Arc<Pulled>, Arc<PullError>>;

/// Identity of a flight: the image record name and the credential identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlightKey {
    /// Normalised image name with its tag or digest.
    pub image: String,
    /// [`crate::secrets::PodCredentials::identity`].
    pub credentials: String,
}

#[derive(Default)]
struct FanOutState {
    sinks: Vec<Arc<dyn PullProgress>>,
    /// The `Resolved` event, replayed to callers that join later.
    resolved: Option<Progress>,
    /// The latest origin of every blob started so far, in the order they started, replayed likewise.
    sources: Vec<(Digest, BlobOrigin)>,
}

/// Forwards the progress of one pull to every caller waiting on it.
#[derive(Default)]
pub struct FanOut {
    state: Mutex<FanOutState>,
}

impl FanOut {
    fn add(&self, sink: Arc<dyn PullProgress>) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(resolved) = &g.resolved {
            sink.progress(resolved.clone());
        }
        for (digest, origin) in &g.sources {
            sink.blob_source(digest, origin);
        }
        g.sinks.push(sink);
    }
}

impl image::ProgressSink for FanOut {
    fn event(&self, event: Progress) {
        let sinks = {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(event, Progress::Resolved { .. }) {
                g.resolved = Some(event.clone());
            }
            g.sinks.clone()
        };
        for s in &sinks {
            s.progress(event.clone());
        }
    }

    fn blob_source(&self, digest: &Digest, origin: &BlobOrigin) {
        let sinks = {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match g.sources.iter_mut().find(|(d, _)| d == digest) {
                Some((_, o)) => *o = origin.clone(),
                None => g.sources.push((digest.clone(), origin.clone())),
            }
            g.sinks.clone()
        };
        for s in &sinks {
            s.blob_source(digest, origin);
        }
    }
}

struct Flight {
    id: u64,
    result: Shared<BoxFuture<'static, FlightResult>>,
    fanout: Arc<FanOut>,
}

/// The flights in progress.
#[derive(Clone, Default)]
pub struct Flights {
    map: Arc<Mutex<HashMap<FlightKey, Flight>>>,
    next_id: Arc<AtomicU64>,
}

impl Flights {
    /// Joins the flight for `key`, or starts one running `start(fanout)` when there is none. Returns whether
    /// this call started it, and the shared result.
    pub async fn join<F, Fut>(
        &self,
        key: FlightKey,
        progress: Option<Arc<dyn PullProgress>>,
        start: F,
    ) -> (bool, FlightResult)
    where
        F: FnOnce(Arc<FanOut>) -> Fut,
        Fut: Future<Output = FlightResult> + Send + 'static,
    {
        let (leader, result) = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => {
                    if let Some(p) = progress {
                        f.fanout.add(p);
                    }
                    (false, f.result.clone())
                }
                None => {
                    let fanout = Arc::new(FanOut::default());
                    if let Some(p) = progress {
                        fanout.add(p);
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let work = start(fanout.clone());
                    let map_ref = self.map.clone();
                    let done_key = key.clone();
                    let task = tokio::spawn(async move {
                        let out = work.await;
                        // Later callers start a new flight (and find the image present or re-resolve it).
                        let mut map = map_ref.lock().unwrap_or_else(|p| p.into_inner());
                        if map.get(&done_key).is_some_and(|f| f.id == id) {
                            map.remove(&done_key);
                        }
                        out
                    });
                    let result = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(PullError::Internal(format!(
                                "pull task failed: {e}"
                            ))))
                        })
                    }
                    .boxed()
                    .shared();
                    map.insert(
                        key,
                        Flight {
                            id,
                            result: result.clone(),
                            fanout,
                        },
                    );
                    (true, result)
                }
            }
        };
        (leader, result.await)
    }

    /// How many flights are in progress.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn key(image: &str, creds: &str) -> FlightKey {
        FlightKey {
            image: image.into(),
            credentials: creds.into(),
        }
    }

    fn failing(text: &'static str) -> FlightResult {
        Err(Arc::new(PullError::Internal(text.into())))
    }

    #[tokio::test]
    async fn same_image_and_credentials_share_one_run_and_different_credentials_never_do() {
        let flights = Flights::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let mut calls = Vec::new();
        for creds in ["alice", "alice", "alice", "bob"] {
            let (flights, runs, gate) = (flights.clone(), runs.clone(), gate_rx.clone());
            calls.push(tokio::spawn(async move {
                flights
                    .join(key("reg/app:v1", creds), None, move |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let mut gate = gate;
                        let _ = gate.wait_for(|open| *open).await;
                        failing(if creds == "alice" { "a" } else { "b" })
                    })
                    .await
            }));
        }
        while flights.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate_tx.send(true).unwrap();
        let mut leaders = 0;
        let mut texts = Vec::new();
        for c in calls {
            let (leader, r) = c.await.unwrap();
            leaders += usize::from(leader);
            texts.push(r.unwrap_err().to_string());
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "one run per credential identity"
        );
        assert_eq!(leaders, 2);
        assert_eq!(
            texts,
            [
                "internal error: a",
                "internal error: a",
                "internal error: a",
                "internal error: b"
            ]
        );
        assert!(flights.is_empty(), "finished flights are removed");
    }

    #[tokio::test]
    async fn a_late_joiner_gets_the_resolved_event_it_missed() {
        let fan = FanOut::default();
        let digest: oci::Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        image::ProgressSink::event(
            &fan,
            Progress::Resolved {
                digest: digest.clone(),
                manifest: digest.clone(),
                blobs: vec![],
            },
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        fan.add(Arc::new(move |e: Progress| s.lock().unwrap().push(e)));
        image::ProgressSink::event(
            &fan,
            Progress::BlobBytes {
                digest: digest.clone(),
                bytes: 3,
            },
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(matches!(seen[0], Progress::Resolved { .. }));
    }

    /// Records blob origins as `digest-prefix=origin` strings.
    #[derive(Default)]
    struct Origins(Mutex<Vec<String>>);

    impl PullProgress for Origins {
        fn progress(&self, _: Progress) {}
        fn blob_source(&self, digest: &Digest, origin: &BlobOrigin) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}={origin}", &digest.hex()[..1]));
        }
    }

    #[test]
    fn blob_origins_reach_every_caller_and_late_joiners_get_the_latest_origin_of_each_blob() {
        let fan = FanOut::default();
        let d = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let early = Arc::new(Origins::default());
        fan.add(early.clone());
        image::ProgressSink::event(
            &fan,
            Progress::Resolved {
                digest: d('f'),
                manifest: d('f'),
                blobs: vec![(d('a'), 1, true), (d('b'), 1, true)],
            },
        );
        let sink: &dyn image::ProgressSink = &fan;
        sink.blob_source(&d('a'), &BlobOrigin::Peer("node-3".into()));
        sink.blob_source(&d('b'), &BlobOrigin::Peer("node-4".into()));
        // node-4 failed mid-blob: the image crate fetches it afresh from the registry.
        sink.blob_source(&d('b'), &BlobOrigin::Registry);
        assert_eq!(
            *early.0.lock().unwrap(),
            ["a=peer node-3", "b=peer node-4", "b=registry"]
        );
        let late = Arc::new(Origins::default());
        fan.add(late.clone());
        assert_eq!(*late.0.lock().unwrap(), ["a=peer node-3", "b=registry"]);
    }
}
