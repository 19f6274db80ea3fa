//! hosts: registry host configuration for berth: containerd's `hosts.toml` directory format and
//! Docker's certs.d layout, resolved per image namespace, hot-reloaded, and edited by
//! `berth trust`.
//!
//! It owns the configuration model ([`Endpoint`]: where requests for a namespace may go, in which
//! order, with which trust, and whether credentials and tag resolution are allowed there), the
//! parsing with file/line/column/field errors, the per-host:port trust view the registry client
//! consumes through `registry::HostConfigSource`, reload without restart ([`Watched`]) and the
//! trust store editing with its audit log ([`trust`]). It never talks to the network, never
//! loads private key material (paths only, except the registry crate's own certs.d loader for
//! client identities), never infers trust or plain http from a host name or address, and never
//! offers an http fallback for a TLS failure.
//!
//! Entry points: [`HostsConfig::load`] / [`HostsConfig::resolve`], [`Watched::open`],
//! [`trust::TrustStore`].

pub mod certsd;
pub mod config;
pub mod error;
pub mod model;
pub mod parse;
pub mod source;
pub mod trust;
pub mod watch;

pub use config::{
    DEFAULT_HOSTS_DIR, DEFAULT_NAMESPACE, HostsConfig, LoadedCa, LoadedEntry, NamespaceConfig,
    NamespaceSource, home_host, namespace_folders,
};
pub use error::HostsError;
pub use model::{Capabilities, ClientPair, Endpoint, Headers};
pub use source::{TrustSource, effective_hosts_dir};
pub use trust::{TrustEntry, TrustListing, TrustStore};
pub use watch::Watched;
