//! Where the requests for one image namespace may go: [`RegistryEndpoint`], the seam through which
//! host configuration (crate `hosts`: containerd `hosts.toml`, mirrors) steers the client.
//!
//! The seam is [`crate::HostConfigSource::endpoints`]: when a [`crate::Repository`] is created for
//! an image whose registry is `namespace` (`docker.io`, `reg.example:5000`), the client asks its
//! host configuration for that namespace's endpoints, in the order they must be tried (mirrors in
//! file order, then the server, as containerd does). A source that has no opinion answers `None`
//! and the registry itself is the only endpoint. The client then, per operation:
//! - resolves a tag only on endpoints with [`RegistryEndpoint::resolve`] (and `pull`); fetches
//!   manifests and blobs by digest on endpoints with [`RegistryEndpoint::pull`];
//! - moves on to the next endpoint when one fails (network, TLS, 404, 5xx, 429, 401/403, a bad
//!   answer) and only reports the failure of the last one; endpoints other than the last are
//!   tried once, without retries, so a dead mirror costs one attempt;
//! - sends the image's credentials only to endpoints with [`RegistryEndpoint::send_credentials`]
//!   (the namespace's own registry by default; a mirror only when configured so), and never over
//!   plain http; other endpoints are asked anonymously, with their own anonymous tokens;
//! - adds [`RegistryEndpoint::headers`] to requests to that endpoint's origin only (never to a
//!   redirect target or a token realm), and `?ns=<namespace>` when [`RegistryEndpoint::ns`] says so;
//! - builds every URL under [`RegistryEndpoint::path`] (`/v2` normally; `override_path` roots are
//!   used as written).
//!
//! Trust (CAs, client certificates, `skip_verify`, plain http) stays per host:port in
//! [`crate::HostConfig`]; an endpoint's scheme must agree with it (an `http` endpoint needs its
//! host:port configured as plain http, so a TLS failure can never turn into a plain-http retry).
//! This module is pure data: it performs no IO and must never render a header value.

use std::fmt;

use crate::origin::{HostPort, Origin, Scheme};

/// The default API root of a registry.
pub const API_ROOT: &str = "/v2";

/// One place requests for a namespace may go (a mirror or the registry itself).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryEndpoint {
    /// Scheme, host and port.
    pub origin: Origin,
    /// The API root path without a trailing slash (`/v2`; with `override_path`, what was written,
    /// possibly empty).
    pub path: String,
    /// May serve manifests and blobs by digest.
    pub pull: bool,
    /// May resolve tags to digests (a trusted operation: a mirror that may not is never asked).
    pub resolve: bool,
    /// The image's credentials may be sent here (over https only).
    pub send_credentials: bool,
    /// Extra request headers for this endpoint (name, value), in order. May hold secrets:
    /// `Debug` shows the names only.
    pub headers: Vec<(String, String)>,
    /// `ns` query parameter added to every request (containerd adds it for endpoints that are
    /// not the namespace's own host).
    pub ns: Option<String>,
    /// A mirror (tried before the server).
    pub mirror: bool,
    /// Where it was configured, for messages (`/etc/berth/certs.d/x/hosts.toml line 3`).
    pub source: String,
}

impl fmt::Debug for RegistryEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryEndpoint")
            .field("origin", &self.origin.to_string())
            .field("path", &self.path)
            .field("pull", &self.pull)
            .field("resolve", &self.resolve)
            .field("send_credentials", &self.send_credentials)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| format!("{n}: <redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("ns", &self.ns)
            .field("mirror", &self.mirror)
            .field("source", &self.source)
            .finish()
    }
}

impl RegistryEndpoint {
    /// The registry itself at `origin`: `/v2`, every capability, credentials allowed.
    pub fn registry(origin: Origin) -> Self {
        Self {
            origin,
            path: API_ROOT.to_string(),
            pull: true,
            resolve: true,
            send_credentials: true,
            headers: Vec::new(),
            ns: None,
            mirror: false,
            source: "default".to_string(),
        }
    }

    /// The host:port.
    pub fn host(&self) -> &HostPort {
        &self.origin.host
    }

    /// `scheme://host:port<path>` for messages.
    pub fn label(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }

    /// True when plain http.
    pub fn is_plain_http(&self) -> bool {
        self.origin.scheme == Scheme::Http
    }

    /// The URL of `rest` (`/` or `/<repo>/manifests/<ref>`) under the API root, with `ns`.
    pub fn url(&self, rest: &str) -> url::Url {
        let mut u = self.origin.base_url();
        let root = self.path.trim_end_matches('/');
        u.set_path(&format!("{root}{rest}"));
        if let Some(ns) = &self.ns {
            u.query_pairs_mut().append_pair("ns", ns);
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::of(&url::Url::parse(s).unwrap()).unwrap()
    }

    #[test]
    fn urls_honour_the_api_root_override_and_ns() {
        let mut e = RegistryEndpoint::registry(origin("https://reg.example:5000"));
        assert_eq!(e.url("/").as_str(), "https://reg.example:5000/v2/");
        assert_eq!(
            e.url("/a/b/manifests/v1").as_str(),
            "https://reg.example:5000/v2/a/b/manifests/v1"
        );
        e.path = "/mirror/v2".into();
        e.ns = Some("docker.io".into());
        assert_eq!(
            e.url("/library/x/blobs/sha256:00").as_str(),
            "https://reg.example:5000/mirror/v2/library/x/blobs/sha256:00?ns=docker.io"
        );
        // an override_path root of "" is the server root
        e.path = String::new();
        e.ns = None;
        assert_eq!(
            e.url("/a/manifests/1").as_str(),
            "https://reg.example:5000/a/manifests/1"
        );
    }

    #[test]
    fn debug_never_shows_header_values() {
        let mut e = RegistryEndpoint::registry(origin("https://m.example"));
        e.headers = vec![("Authorization".into(), "Bearer canary-hdr".into())];
        let d = format!("{e:?}");
        assert!(d.contains("Authorization: <redacted>"), "{d}");
        assert!(!d.contains("canary-hdr"), "{d}");
    }
}
