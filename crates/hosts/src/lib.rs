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
//! How the pull path uses it: [`TrustSource`], [`Watched`] and [`HostsConfig`] implement
//! `registry::HostConfigSource`. `host_config(host:port)` gives the trust of one connection
//! (CAs, client pair, `skip_verify`, plain http); `endpoints(namespace)` gives the endpoints of an
//! image's registry as `registry::RegistryEndpoint`s ([`Endpoint::to_registry`]): mirrors in file
//! order, the server last. The registry client tries them in that order, resolves tags only on
//! endpoints with the `resolve` capability, sends each endpoint its `[header]` entries, honours
//! `override_path`, and moves on to the next endpoint when one fails (network, TLS, 404, 5xx,
//! 401/403). Every lookup re-reads a changed directory, so an edit applies to the next pull.
//!
//! Berth extension key, **`send_credentials`** (boolean; per `[host."..."]` entry or at the top
//! level for the server): whether the image's pull credentials (imagePullSecrets, `--creds`,
//! docker config) may be sent to that endpoint. By default they go only to the namespace's own
//! registry host:port (`docker.io` also covers `registry-1.docker.io`) over https; a mirror, or a
//! `server` on another host, is asked anonymously unless it says `send_credentials = true`.
//! Credentials never go over plain http: `send_credentials = true` on an `http://` endpoint is
//! refused as an error. containerd has no such key (its CRI credentials go to every host; see
//! containerd#10540); containerd ignores unknown keys, so a file using it stays valid there.
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
