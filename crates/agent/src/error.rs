//! The agent's error type: what failed, where, and what to do about it. It must never carry a credential.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Failures that stop the agent (per-pod failures become container states and Events instead).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "failed to {action} {path}: {source}; check that the agent root is writable by the agent"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for the log endpoint: {source}; pick another --listen address"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the container runtime under {root} is unusable: {source}")]
    Runtime {
        root: PathBuf,
        source: Box<runtime::Error>,
    },
    #[error("the snapshotter under {root} is unusable: {source}")]
    Snapshotter {
        root: PathBuf,
        source: Box<unpack::Error>,
    },
    #[error("the content store under {root} is unusable: {message}")]
    Content { root: PathBuf, message: String },
    #[error("the registry client cannot be built: {0}")]
    Registry(String),
    #[error("the hosts directory {path} cannot be read: {source}")]
    Hosts {
        path: PathBuf,
        source: Box<hosts::HostsError>,
    },
    #[error("the image manager cannot start: {0}")]
    Images(String),
    #[error("the serving certificate under {path} is unusable: {message}; remove it to regenerate")]
    ServingCert { path: PathBuf, message: String },
    #[error("the cluster CA given to the agent is unusable: {0}; pass the API server's ca.crt")]
    ClusterCa(String),
    #[error("the API server refused {what}: {source}")]
    Api {
        what: String,
        source: Box<kube::Error>,
    },
    #[error("agent task failed: {0}")]
    Task(String),
}

impl AgentError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AgentError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        AgentError::Api {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
