//! The one error type of the hosts crate.
//!
//! Owns every message a user sees when a hosts directory, a `hosts.toml`, a Docker certs.d folder
//! or a trust operation is wrong: each names the file (and for `hosts.toml` the line, column and
//! dotted field) and says how to fix it. It must never carry the content of a key file or the value
//! of a configured header (headers may hold tokens): only paths, field names and the offending
//! non-secret token (a capability name, a URL, a duration).

use std::path::PathBuf;

/// Errors from loading host configuration or editing trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    /// A `hosts.toml` is not valid TOML.
    #[error("{} line {line} column {column}: invalid toml: {message}; fix the syntax (see https://toml.io)", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A field of a `hosts.toml` has a wrong type or value.
    #[error("{} line {line} column {column}: {field}: {message}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// Dotted field name, e.g. `host."https://mirror".capabilities`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Docker certs.d layout error, with Docker's wording after the folder.
    #[error("{}: {message}", dir.display())]
    CertsD {
        /// The folder.
        dir: PathBuf,
        /// Docker's exact message (`missing key ... for client certificate ...`).
        message: String,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {action}: {message}; check that it exists and its permissions", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was attempted (`cannot read`, `cannot write`...).
        action: &'static str,
        /// The OS error.
        message: String,
    },
    /// A registry namespace (`host[:port]`) is not valid.
    #[error("invalid registry host {namespace:?}: {reason}")]
    Namespace {
        /// What was given.
        namespace: String,
        /// Why it is refused.
        reason: String,
    },
    /// A trust operation (`berth trust add/remove`) was refused.
    #[error("{0}")]
    Trust(String),
}

impl HostsError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, e: &std::io::Error) -> Self {
        HostsError::Io {
            path: path.into(),
            action,
            message: e.to_string(),
        }
    }

    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            HostsError::Syntax { path, .. }
            | HostsError::Field { path, .. }
            | HostsError::Io { path, .. } => Some(path),
            HostsError::CertsD { dir, .. } => Some(dir),
            HostsError::Namespace { .. } | HostsError::Trust(_) => None,
        }
    }
}

impl From<HostsError> for registry::RegistryError {
    fn from(e: HostsError) -> Self {
        registry::RegistryError::Config(e.to_string())
    }
}
