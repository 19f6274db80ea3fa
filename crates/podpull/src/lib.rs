//! podpull: kubelet's image manager for Pods on a berth node. For one container image of one pod it turns the
//! pod's `imagePullSecrets` (fetched by the agent from the pod's own namespace) and the node's Docker config into
//! the credentials to try, applies imagePullPolicy, the per-pod-and-image back-off and KEP-2535 credential
//! verification (on by default), pulls through a single flight per image and credential identity with
//! `image::Puller`, and reports every step with kubelet's exact Event reasons, messages and container waiting
//! reasons, plus berth's TLS failure text that names the host:port, its role and the `berth trust` fix.
//!
//! It must never run containers (that is `runtime` through the agent), never read Secrets from the API (the agent
//! does, for the pod's namespace only), never talk to a registry except through `image::Puller`, and never put a
//! credential value in an Event, a waiting message, a record or a log.
//!
//! Entry point: [`ImageManager::ensure_image`].

pub mod backoff;
pub mod flight;
pub mod manager;
pub mod policy;
pub mod records;
pub mod secrets;
pub mod texts;

pub use backoff::{BackOff, Clock, ManualClock, SystemClock};
pub use flight::PullProgress;
pub use manager::{
    EventType, ImageManager, ManagerError, ManagerOptions, PodRef, ReadyImage, Recorder, Waiting,
    pull_error_text,
};
pub use policy::PullPolicy;
pub use records::{PulledRecord, RecordError};
pub use secrets::{CredentialSource, FetchedSecret, MalformedSecret};
