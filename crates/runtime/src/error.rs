//! The runtime's error type: one enum for every failure a caller can see. It owns the wording of
//! messages (what failed, where, and how to fix it) and must never carry secrets or swallow runc's
//! own explanation of a failure.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the runtime crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No runc binary could be found.
    #[error("runc not found in PATH: install Debian's runc (apt-get install runc)")]
    RuncNotFound,

    /// runc ran and reported a failure; `message` is runc's own text (from its JSON log).
    #[error("runc {command} failed for container {id}: {message}{hint}")]
    Runc {
        command: &'static str,
        id: String,
        message: String,
        /// Extra context such as the cgroup setup in use (starts with "; " when present).
        hint: String,
    },

    /// runc could not be executed at all.
    #[error("running {path} {command}: {source}: check that runc is installed and executable")]
    RuncExec {
        path: PathBuf,
        command: &'static str,
        #[source]
        source: io::Error,
    },

    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A state file could not be parsed.
    #[error(
        "container state file {path} is corrupt: {reason}: remove the container directory by hand"
    )]
    CorruptState { path: PathBuf, reason: String },

    /// The container name is taken.
    #[error(
        "container name {name:?} is already in use by container {id}: remove it (berth rm {name}) or choose another name"
    )]
    NameInUse { name: String, id: String },

    /// The container name is not valid.
    #[error(
        "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters) is allowed"
    )]
    InvalidName { name: String },

    /// No container matches.
    #[error("no such container: {0}: list containers with berth ps -a")]
    NotFound(String),

    /// A prefix matches more than one container.
    #[error(
        "container id prefix {prefix:?} is ambiguous ({count} containers match): give more characters or the name"
    )]
    Ambiguous { prefix: String, count: usize },

    /// The operation needs a container that is not running.
    #[error("container {name} is running: stop it first (berth stop {name}) or force the removal")]
    Running { name: String },

    /// The operation needs a created container.
    #[error(
        "container {name} cannot be started: it is {status} (only a newly created container can be started)"
    )]
    NotStartable { name: String, status: String },

    /// The image and the overrides give nothing to run.
    #[error("no command to run: the image config has neither Entrypoint nor Cmd: pass a command")]
    NoCommand,

    /// A field of the image config or of the overrides is invalid.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: String,
    },

    /// The user could not be resolved inside the rootfs.
    #[error(transparent)]
    User(#[from] crate::user::UserError),

    /// The cgroup filesystem is unusable.
    #[error("cgroups: {0}")]
    Cgroups(String),

    /// The OCI runtime spec could not be built.
    #[error("building the OCI runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),

    /// The caller's rootfs mount callback failed.
    #[error("mounting the rootfs of container {id} at {path}: {message}")]
    RootfsMount {
        id: String,
        path: PathBuf,
        message: String,
    },

    /// The detached container's shim failed before reporting a started container.
    #[error("starting container {id} detached: {message} (shim log: {log})")]
    Shim {
        id: String,
        message: String,
        log: PathBuf,
    },

    /// A wait ran out of time.
    #[error(
        "timed out after {seconds}s waiting for container {name} to exit: kill it (berth kill {name})"
    )]
    Timeout { name: String, seconds: u64 },

    /// A signal name or number is not known.
    #[error("unknown signal {0:?}: use a name like SIGTERM, TERM or a number like 15")]
    UnknownSignal(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
