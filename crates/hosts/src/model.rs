//! The resolved configuration model: what the registry client gets for one image namespace.
//!
//! Owns [`Endpoint`] (one place to send requests, with its trust and the rules about what it may
//! be asked and given), [`Capabilities`], [`ClientPair`] and [`Headers`]. It is pure data: no IO,
//! no parsing. It deliberately has no "http fallback" or "insecure" switch: an endpoint is either
//! `https` (verified unless `skip_verify` was written for that exact endpoint) or `http` because
//! its URL says `http://`; a TLS failure on an https endpoint is final. Header values may be
//! secrets (an `Authorization` header in a mirror's `[header]` table), so [`Headers`] never shows a
//! value in `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use registry::{HostPort, Scheme};
use url::Url;

/// What a host may be used for (containerd's host capabilities).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Fetch manifests and blobs by digest.
    pub const PULL: Capabilities = Capabilities(1);
    /// Resolve a tag to a digest (a trusted operation).
    pub const RESOLVE: Capabilities = Capabilities(2);
    /// Push content.
    pub const PUSH: Capabilities = Capabilities(4);
    /// Serve the referrers API.
    pub const REFERRERS: Capabilities = Capabilities(8);
    /// The default when `capabilities` is absent: all of them.
    pub const ALL: Capabilities = Capabilities(15);
    /// No capability.
    pub const NONE: Capabilities = Capabilities(0);

    /// The names accepted in `capabilities`, in containerd's order.
    pub const NAMES: [(&'static str, Capabilities); 4] = [
        ("pull", Capabilities::PULL),
        ("resolve", Capabilities::RESOLVE),
        ("push", Capabilities::PUSH),
        ("referrers", Capabilities::REFERRERS),
    ];

    /// Parses one capability name (case-insensitive, as containerd).
    pub fn parse(name: &str) -> Option<Capabilities> {
        let lower = name.to_ascii_lowercase();
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, c)| *c)
    }

    /// True when every capability of `other` is present.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// True when no capability is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect();
        write!(f, "[{}]", names.join(", "))
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A TLS client certificate and its key file. `key` is `None` when the certificate file also
/// holds the key (containerd's single-file form). Only paths: the key material is never loaded here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientPair {
    /// Certificate (chain) file.
    pub cert: PathBuf,
    /// Private key file, or `None` when `cert` holds the key too.
    pub key: Option<PathBuf>,
}

/// Extra request headers for one endpoint, in file order. Values may be secrets: `Debug` shows the
/// names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Vec<String>)>);

impl Headers {
    pub(crate) fn push(&mut self, name: String, values: Vec<String>) {
        self.0.push((name, values));
    }

    /// (name, values) pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The values of one header (name compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// True when no header is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(n, v)| (n, format!("<{} value(s) redacted>", v.len()))),
            )
            .finish()
    }
}

/// One place requests for a namespace may go, as the client must treat it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host:port<path>`; the path is the API root (`/v2`, `/us/v2`, or with
    /// `override_path` exactly what was written, possibly empty).
    pub url: Url,
    /// http or https. `Http` only when the configuration wrote `http://` for this endpoint.
    pub scheme: Scheme,
    /// Host and effective port; the unit trust and credentials are bound to.
    pub host: HostPort,
    /// The API root path (no trailing slash; empty means the server root).
    pub path: String,
    /// What this endpoint may be used for.
    pub capabilities: Capabilities,
    /// CA files for this endpoint only, appended to the system roots.
    pub ca_files: Vec<PathBuf>,
    /// Client certificates presented to this endpoint only.
    pub client_pairs: Vec<ClientPair>,
    /// Skip certificate verification for this endpoint (written explicitly; never inferred).
    pub skip_verify: bool,
    /// Extra headers sent to this endpoint.
    pub headers: Headers,
    /// The path is the API root as written (no automatic `/v2`).
    pub override_path: bool,
    /// Connection timeout (`dial_timeout`); `None` means the client's default (containerd: 30s).
    pub dial_timeout: Option<Duration>,
    /// Proxy for this endpoint (`proxy`, containerd 2.2+); `None` means the environment's.
    pub proxy: Option<Url>,
    /// A `[host."..."]` entry (tried before the server, in file order).
    pub is_mirror: bool,
    /// Whether the image's pull credentials may be sent here: by default only to the namespace's
    /// own registry host:port over https; a mirror or another server gets them only with
    /// `send_credentials = true` (berth extension), and never over plain http.
    pub send_credentials: bool,
    /// Value of the `ns` query parameter containerd adds when the endpoint is not the namespace's
    /// own host (`?ns=<namespace>`); `None` for the namespace's own host.
    pub ns: Option<String>,
    /// Where this endpoint was configured (`hosts.toml`, certs.d folder, or `default`).
    pub source: String,
}

impl Endpoint {
    /// True when this endpoint may resolve tags to digests.
    pub fn can_resolve(&self) -> bool {
        self.capabilities.contains(Capabilities::RESOLVE)
    }

    /// True when this endpoint may serve content by digest.
    pub fn can_pull(&self) -> bool {
        self.capabilities.contains(Capabilities::PULL)
    }

    /// This endpoint as the registry client takes it ([`registry::RegistryEndpoint`]): the
    /// capabilities, credential rule, headers (multi-valued headers become repeated entries),
    /// `ns` and API root carry over; trust (CAs, client pairs, `skip_verify`, plain http) reaches
    /// the client per host:port through `registry::HostConfigSource::host_config` instead.
    pub fn to_registry(&self) -> registry::RegistryEndpoint {
        registry::RegistryEndpoint {
            origin: registry::Origin {
                scheme: self.scheme,
                host: self.host.clone(),
            },
            path: self.path.trim_end_matches('/').to_string(),
            pull: self.can_pull(),
            resolve: self.can_resolve(),
            send_credentials: self.send_credentials,
            headers: self
                .headers
                .iter()
                .flat_map(|(n, vs)| vs.iter().map(move |v| (n.to_string(), v.clone())))
                .collect(),
            ns: self.ns.clone(),
            mirror: self.is_mirror,
            source: self.source.clone(),
        }
    }

    /// The URL of `rest` (e.g. `library/busybox/manifests/latest`) under the API root.
    pub fn join(&self, rest: &str) -> Url {
        let mut u = self.url.clone();
        let base = self.path.trim_end_matches('/');
        u.set_path(&format!("{base}/{}", rest.trim_start_matches('/')));
        if let Some(ns) = &self.ns {
            u.query_pairs_mut().append_pair("ns", ns);
        }
        u
    }
}
