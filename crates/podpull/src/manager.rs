//! [`ImageManager::ensure_image`]: kubelet's `EnsureImageExists` for one container image of one pod, in
//! kubelet's order: warn about pull secrets that could not be fetched, apply the default tag, build the pod's
//! credentials (a malformed secret blocks the pod), check presence, run KEP-2535's verification, decide with the
//! pull policy, honour the per-pod-and-image back-off, pull through the single flight, record who pulled, and
//! report every step as kubelet's Events and waiting reasons. It owns the sequencing and the state (back-off,
//! flights, records); it must never run containers, never read Secrets itself (the agent fetches them from the
//! pod's own namespace) and never put a credential value in an Event, a message or a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::{PullError, PullRequest, Puller, StoredImage};
use registry::RegistryError;
use unpack::SnapshotId;

use crate::backoff::{BackOff, Clock, SystemClock};
use crate::flight::{FanOut, FlightKey, FlightResult, Flights, PullProgress};
use crate::policy::{self, Decision, PullPolicy};
use crate::records::{self, PulledWith, RecordError, RecordStore, SecretCoordinates, Verdict};
use crate::secrets::{self, CredentialSource, FetchedSecret, PodCredentials};
use crate::texts::{self, Refusal, reason, waiting};

/// Settings of an [`ImageManager`].
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// First back-off after a failed pull (kubelet: 10 s).
    pub backoff_initial: Duration,
    /// Longest back-off (kubelet: 300 s); entries expire after twice this.
    pub backoff_max: Duration,
    /// The node's Docker config, whose `auths` are tried after every pod secret.
    pub docker_config: Option<PathBuf>,
    /// KEP-2535: a pod may use a present private image only with credentials that pulled it (default on).
    pub verify_credentials: bool,
    /// KEP-2535 `AlwaysVerify`: also verify images berth never pulled (default off, kubelet's
    /// `NeverVerifyPreloadedImages`).
    pub verify_preloaded_images: bool,
    /// The platform selected from multi-platform images.
    pub platform: oci::Platform,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            docker_config: None,
            verify_credentials: true,
            verify_preloaded_images: false,
            platform: oci::Platform::host(),
        }
    }
}

/// The pod an image is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid` (the back-off is per pod uid).
    pub uid: String,
}

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl EventType {
    /// `Normal` or `Warning`, as the Event API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Receives the Events of a pod's container (the agent posts them with the container as `fieldPath`).
pub trait Recorder: Send + Sync {
    /// One Event.
    fn event(&self, kind: EventType, reason: &str, message: String);
}

/// What the agent needs to create a container from the image.
#[derive(Clone, Debug)]
pub struct ReadyImage {
    /// The normalised reference with its tag or digest (`docker.io/library/busybox:latest`).
    pub name: String,
    /// `imageID` as kubelet shows it: `<repository>@sha256:...` (the digest the reference resolved to).
    pub image_id: String,
    /// The image ID in the CRI sense: the config digest.
    pub config_digest: oci::Digest,
    /// The snapshot chain, bottom-most first (empty when the puller has no snapshotter).
    pub snapshots: Vec<SnapshotId>,
    /// The parsed image config.
    pub config: oci::ImageConfig,
    /// Manifest, config and layers in bytes (kubelet's image size).
    pub size: u64,
}

/// Why the container cannot start yet: `state.waiting` of its status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Waiting {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName`, `ImageInspectError`,
    /// `CreateContainerError`, or (as kubelet does for a malformed pull secret) the error text itself.
    pub reason: String,
    /// The message.
    pub message: String,
}

impl Waiting {
    fn new(reason: impl Into<String>, message: impl Into<String>) -> Waiting {
        Waiting {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The manager cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The KEP-2535 state directory is unusable.
    #[error(transparent)]
    Records(#[from] RecordError),
}

struct Inner {
    puller: Puller,
    records: Option<Arc<RecordStore>>,
    opts: ManagerOptions,
    backoff: BackOff,
    clock: Arc<dyn Clock>,
    flights: Flights,
}

/// kubelet's image manager for the pods of one node. Cheap to clone.
#[derive(Clone)]
pub struct ImageManager {
    inner: Arc<Inner>,
}

/// Everything a pull needs, moved into the flight's task.
struct PullJob {
    puller: Puller,
    records: Option<Arc<RecordStore>>,
    request: PullRequest,
    name: String,
    repository: String,
    credentials: PodCredentials,
}

impl PullJob {
    async fn run(self, fanout: Arc<FanOut>) -> FlightResult {
        let records = self.records.clone();
        if let Some(r) = &records {
            let (r, name, flight) = (r.clone(), self.name.clone(), self.credentials.identity());
            if let Err(e) = blocking(move || r.write_intent(&name, &flight)).await {
                tracing::warn!(error = %e, "cannot record the pull intent");
            }
        }
        let result = self.puller.pull_with_progress(&self.request, fanout).await;
        if let Some(r) = records {
            // Anonymous or node credentials: every pod may use it. A label this job did not offer cannot
            // happen; if it did, nothing is recorded and the intent stays, so the image is never taken for a
            // preloaded one (pods must re-authenticate).
            let anonymous = image::Attempt::anonymous().label;
            let with =
                match &result {
                    Ok(pulled) if pulled.credential == anonymous => Some(Some(PulledWith::Node)),
                    Ok(pulled) => {
                        Some(self.credentials.by_label(&pulled.credential).map(
                            |c| match &c.source {
                                CredentialSource::Secret {
                                    uid,
                                    namespace,
                                    name,
                                } => PulledWith::Secret(SecretCoordinates {
                                    uid: uid.clone(),
                                    namespace: namespace.clone(),
                                    name: name.clone(),
                                    credential_hash: c.hash.clone(),
                                }),
                                CredentialSource::Node { .. } => PulledWith::Node,
                            },
                        ))
                    }
                    Err(_) => None,
                };
            let image_ref = result.as_ref().ok().map(|p| p.config.digest.to_string());
            let (name, repository, flight) = (
                self.name.clone(),
                self.repository.clone(),
                self.credentials.identity(),
            );
            let done = blocking(move || -> Result<(), RecordError> {
                match (with, image_ref) {
                    (Some(Some(with)), Some(image_ref)) => {
                        // Only a written record ends the intent: if it cannot be written, the intent keeps the
                        // image from being taken for a preloaded one.
                        r.record_pull(&image_ref, &repository, with)?;
                        r.remove_intent(&name, &flight)
                    }
                    (Some(None), _) => Ok(()),
                    _ => r.remove_intent(&name, &flight),
                }
            })
            .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, image = %self.name, "cannot update the KEP-2535 record");
            }
        }
        result.map(Arc::new).map_err(Arc::new)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RecordError> + Send + 'static,
) -> Result<T, RecordError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(RecordError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("record task failed: {e}")),
        })
    })
}

/// The TLS failure inside a pull error, if that is what failed.
fn tls_failure(e: &PullError) -> Option<&registry::TlsFailure> {
    match e {
        PullError::Registry(RegistryError::Tls(t)) => Some(t),
        _ => None,
    }
}

/// The text of a failed pull: kubelet's aggregate over refused credentials, berth's TLS text, or the error.
pub fn pull_error_text(e: &PullError) -> String {
    if let Some(t) = tls_failure(e) {
        return texts::tls_failure(t);
    }
    match e {
        PullError::Denied(failures) => texts::aggregate(
            &failures
                .iter()
                .map(|f| Refusal {
                    label: f.label.clone(),
                    message: f.error.to_string(),
                })
                .collect::<Vec<_>>(),
        ),
        other => other.to_string(),
    }
}

fn stored_size(s: &StoredImage) -> u64 {
    s.manifest.size + s.config.size + s.layers.iter().map(|l| l.size).sum::<u64>()
}

impl ImageManager {
    /// A manager pulling with `puller` (give it a snapshotter to get snapshot chains), keeping KEP-2535
    /// records under `state_dir`.
    pub fn new(
        puller: Puller,
        state_dir: &Path,
        opts: ManagerOptions,
    ) -> Result<ImageManager, ManagerError> {
        ImageManager::with_clock(puller, state_dir, opts, Arc::new(SystemClock))
    }

    /// Like [`ImageManager::new`], reading time for the back-off from `clock` (tests move time by hand).
    pub fn with_clock(
        puller: Puller,
        state_dir: &Path,
        opts: ManagerOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<ImageManager, ManagerError> {
        let records = if opts.verify_credentials {
            Some(Arc::new(RecordStore::open(state_dir)?))
        } else {
            None
        };
        Ok(ImageManager {
            inner: Arc::new(Inner {
                puller,
                records,
                backoff: BackOff::new(opts.backoff_initial, opts.backoff_max),
                opts,
                clock,
                flights: Flights::default(),
            }),
        })
    }

    /// The current back-off delay of `image` (as written in the container) for pod `uid`, if any.
    pub fn backoff_delay(&self, uid: &str, container_image: &str) -> Option<Duration> {
        let image = policy::apply_default_tag(container_image).ok()?;
        self.inner.backoff.delay(&format!("{uid}_{image}"))
    }

    /// kubelet `EnsureImageExists` for `container_image` of `pod` with `imagePullPolicy` `policy` (None or
    /// empty: the API default) and the pod's `imagePullSecrets` as fetched from its namespace, in order.
    /// Emits every Event through `recorder` and forwards pull progress to `progress`.
    pub async fn ensure_image(
        &self,
        pod: &PodRef,
        container_image: &str,
        policy: Option<&str>,
        secrets: &[FetchedSecret],
        recorder: &dyn Recorder,
        progress: Option<Arc<dyn PullProgress>>,
    ) -> Result<ReadyImage, Waiting> {
        let result = self
            .ensure(pod, container_image, policy, secrets, recorder, progress)
            .await;
        if let Err(w) = &result {
            // kuberuntime's event when the container cannot be created because of the image.
            recorder.event(
                EventType::Warning,
                reason::FAILED,
                texts::container_error(&w.reason),
            );
        }
        result
    }

    async fn ensure(
        &self,
        pod: &PodRef,
        image: &str,
        policy: Option<&str>,
        secrets: &[FetchedSecret],
        recorder: &dyn Recorder,
        progress: Option<Arc<dyn PullProgress>>,
    ) -> Result<ReadyImage, Waiting> {
        let inner = &self.inner;
        let missing = secrets::missing_names(secrets);
        if !missing.is_empty() {
            recorder.event(
                EventType::Warning,
                reason::FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET,
                texts::failed_to_retrieve_secrets(&missing),
            );
        }

        let with_tag = match policy::apply_default_tag(image) {
            Ok(i) => i,
            Err(e) => {
                let msg = texts::failed_to_apply_default_tag(image, &e);
                recorder.event(EventType::Warning, reason::INSPECT_FAILED, msg.clone());
                return Err(Waiting::new(waiting::INVALID_IMAGE_NAME, msg));
            }
        };
        let reference = oci::Reference::parse_normalized(image).map_err(|e| {
            Waiting::new(
                waiting::INVALID_IMAGE_NAME,
                texts::failed_to_apply_default_tag(
                    image,
                    &texts::couldnt_parse_image_name(image, &e.to_string()),
                ),
            )
        })?;
        let name = reference.clone().with_default_tag().to_string();
        let repository = reference.name();
        let pull_policy = PullPolicy::effective(policy, image)
            .map_err(|e| Waiting::new(waiting::CREATE_CONTAINER_CONFIG_ERROR, e.to_string()))?;
        let credentials = secrets::pod_credentials(
            image,
            &pod.namespace,
            secrets,
            inner.opts.docker_config.as_deref(),
        )
        .map_err(|e| Waiting::new(e.to_string(), e.to_string()))?;

        let stored = {
            let (store, name) = (inner.puller.store().clone(), name.clone());
            tokio::task::spawn_blocking(move || image::load_stored_image(&store, &name))
                .await
                .map_err(|e| PullError::Internal(format!("inspect task: {e}")))
                .and_then(|r| r)
        };
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                let msg = texts::failed_to_inspect(image, &e.to_string());
                recorder.event(EventType::Warning, reason::INSPECT_FAILED, msg.clone());
                return Err(Waiting::new(waiting::IMAGE_INSPECT_ERROR, msg));
            }
        };

        let verification = inner
            .records
            .as_ref()
            .filter(|_| inner.opts.verify_credentials);
        let verdict = match (&stored, verification) {
            (Some(s), Some(records)) => Some(
                self.verify(records, s, &name, &repository, &credentials)
                    .await,
            ),
            _ => None,
        };
        let must_pull = matches!(verdict, Some(Verdict::MustPull));
        match policy::decide(
            pull_policy,
            stored.is_some(),
            verification.is_some(),
            must_pull,
        ) {
            Decision::UsePresent { verified } => {
                let stored = stored.expect("decide uses a present image only");
                if let (Some(Verdict::Accessible { add: Some(add) }), Some(records)) =
                    (verdict, verification)
                {
                    let (r, image_ref, repo) = (
                        records.clone(),
                        stored.config.digest.to_string(),
                        repository.clone(),
                    );
                    if let Err(e) =
                        blocking(move || r.record_pull(&image_ref, &repo, PulledWith::Secret(add)))
                            .await
                    {
                        tracing::warn!(error = %e, image = %name, "cannot update the KEP-2535 record");
                    }
                }
                recorder.event(
                    EventType::Normal,
                    reason::PULLED,
                    texts::already_present(image, verified),
                );
                self.ready_from_store(stored, &repository).await
            }
            Decision::NeverPull => {
                let msg = texts::never_pull(image);
                recorder.event(
                    EventType::Warning,
                    reason::ERR_IMAGE_NEVER_PULL,
                    msg.clone(),
                );
                Err(Waiting::new(waiting::ERR_IMAGE_NEVER_PULL, msg))
            }
            Decision::Pull => {
                self.pull(
                    pod,
                    image,
                    &with_tag,
                    reference,
                    name,
                    repository,
                    credentials,
                    recorder,
                    progress,
                )
                .await
            }
        }
    }

    async fn verify(
        &self,
        records: &Arc<RecordStore>,
        stored: &StoredImage,
        name: &str,
        repository: &str,
        credentials: &PodCredentials,
    ) -> Verdict {
        let (r, image_ref, name_owned) = (
            records.clone(),
            stored.config.digest.to_string(),
            name.to_string(),
        );
        let loaded =
            blocking(move || Ok((r.pulled(&image_ref)?, r.intent_exists(&name_owned)?))).await;
        match loaded {
            Ok((record, intent)) => records::must_attempt_pull(
                record.as_ref(),
                intent,
                repository,
                credentials.pod_secrets(),
                self.inner.opts.verify_preloaded_images,
            ),
            Err(e) => {
                // Unknown provenance never grants access: re-authenticate.
                tracing::warn!(error = %e, image = %name, "KEP-2535 record unusable; the pod must re-authenticate");
                Verdict::MustPull
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pull(
        &self,
        pod: &PodRef,
        image: &str,
        with_tag: &str,
        reference: oci::Reference,
        name: String,
        repository: String,
        credentials: PodCredentials,
        recorder: &dyn Recorder,
        progress: Option<Arc<dyn PullProgress>>,
    ) -> Result<ReadyImage, Waiting> {
        let inner = &self.inner;
        let key = format!("{}_{}", pod.uid, with_tag);
        if let Some(previous) = inner.backoff.in_back_off(&key, inner.clock.now()) {
            recorder.event(EventType::Normal, reason::BACK_OFF, texts::back_off(image));
            let message = texts::back_off_waiting(
                image,
                previous.as_ref().map(|(r, m)| (r.as_str(), m.as_str())),
            );
            return Err(Waiting::new(waiting::IMAGE_PULL_BACK_OFF, message));
        }
        recorder.event(EventType::Normal, reason::PULLING, texts::pulling(image));
        let started = inner.clock.now();
        let flight_key = FlightKey {
            image: name.clone(),
            credentials: credentials.identity(),
        };
        let job = PullJob {
            puller: inner.puller.clone(),
            records: inner.records.clone(),
            request: PullRequest {
                reference,
                attempts: credentials.attempts(),
                platform: inner.opts.platform.clone(),
            },
            name,
            repository: repository.clone(),
            credentials,
        };
        let (_, result) = inner
            .flights
            .join(flight_key, progress, move |fanout| job.run(fanout))
            .await;
        let now = inner.clock.now();
        match result {
            Err(e) => {
                let message = pull_error_text(&e);
                recorder.event(
                    EventType::Warning,
                    reason::FAILED,
                    texts::failed_to_pull(image, &message),
                );
                if tls_failure(&e).is_some() {
                    recorder.event(
                        EventType::Warning,
                        reason::REGISTRY_TLS_FAILED,
                        message.clone(),
                    );
                }
                inner
                    .backoff
                    .next(&key, now, waiting::ERR_IMAGE_PULL, &message);
                Err(Waiting::new(waiting::ERR_IMAGE_PULL, message))
            }
            Ok(pulled) => {
                recorder.event(
                    EventType::Normal,
                    reason::PULLED,
                    texts::pulled(
                        image,
                        pulled.elapsed,
                        now.saturating_duration_since(started),
                        pulled.size,
                    ),
                );
                inner.backoff.gc(now);
                inner.backoff.succeeded(&key);
                let stored = {
                    let (store, name) = (inner.puller.store().clone(), pulled.name.clone());
                    tokio::task::spawn_blocking(move || image::load_stored_image(&store, &name))
                        .await
                        .map_err(|e| PullError::Internal(format!("inspect task: {e}")))
                        .and_then(|r| r)
                };
                match stored {
                    Ok(Some(s)) => Ok(ReadyImage {
                        name: pulled.name.clone(),
                        image_id: format!("{repository}@{}", pulled.target.digest),
                        config_digest: pulled.config.digest.clone(),
                        snapshots: pulled.snapshots.clone(),
                        config: s.image_config,
                        size: pulled.size,
                    }),
                    Ok(None) => Err(Waiting::new(
                        waiting::IMAGE_INSPECT_ERROR,
                        texts::failed_to_inspect(
                            image,
                            &format!(
                                "image {} was removed from the store right after its pull (an image gc ran concurrently); it is pulled again on the next sync",
                                pulled.name
                            ),
                        ),
                    )),
                    Err(e) => Err(Waiting::new(
                        waiting::IMAGE_INSPECT_ERROR,
                        texts::failed_to_inspect(image, &e.to_string()),
                    )),
                }
            }
        }
    }

    async fn ready_from_store(
        &self,
        stored: StoredImage,
        repository: &str,
    ) -> Result<ReadyImage, Waiting> {
        let snapshots = match self.inner.puller.snapshotter() {
            Some(snapshotter) => image::unpack_stored(
                snapshotter.clone(),
                self.inner.puller.store().clone(),
                stored.name.clone(),
                stored.config.clone(),
                stored.layers.clone(),
            )
            .await
            .map_err(|e| Waiting::new(waiting::CREATE_CONTAINER_ERROR, e.to_string()))?,
            None => Vec::new(),
        };
        Ok(ReadyImage {
            image_id: format!("{repository}@{}", stored.target.digest),
            config_digest: stored.config.digest.clone(),
            size: stored_size(&stored),
            name: stored.name,
            snapshots,
            config: stored.image_config,
        })
    }
}
