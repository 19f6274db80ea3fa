//! The crate-wide error type of testkit. It owns the wording of every fixture failure (which component,
//! where: address, file or field, and how to fix it); it must never carry a secret value (password, token,
//! private key) in its text.

use std::path::PathBuf;

/// Result alias used by every testkit fixture.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a fixture can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Generating a key or certificate failed.
    #[error("test pki: {what} failed: {source}")]
    Pki {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An external program (docker-registry, skopeo) could not be started or failed.
    #[error(
        "{program}: {message}; install it (scripts/test installs the Debian package) or check its output"
    )]
    Program { program: String, message: String },
    /// The registry process did not become ready.
    #[error(
        "registry at {addr} did not answer GET /v2/ within {secs}s: {reason}; registry log follows:\n{log}"
    )]
    RegistryNotReady {
        addr: String,
        secs: u64,
        reason: String,
        log: String,
    },
    /// Building TLS configuration from fixture material failed.
    #[error("tls setup for {what}: {message}")]
    Tls { what: String, message: String },
    /// An HTTP exchange done by a fixture (raw push, readiness probe) failed.
    #[error("{method} {url}: {message}")]
    Http {
        method: String,
        url: String,
        message: String,
    },
    /// An image description cannot be built as asked.
    #[error("image builder: {0}")]
    Image(String),
    /// A fixture option is invalid.
    #[error("invalid fixture option {field}: {message}")]
    Option {
        field: &'static str,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    pub(crate) fn pki(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
        let what = what.into();
        move |source| Error::Pki { what, source }
    }

    pub(crate) fn tls(what: impl Into<String>, message: impl ToString) -> Error {
        Error::Tls {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
