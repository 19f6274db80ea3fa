//! A loaded hosts directory and the resolution of an image namespace to its endpoints.
//!
//! Owns [`HostsConfig`]: one snapshot of a containerd-style hosts directory (default
//! `/etc/berth/certs.d`; `/etc/containerd/certs.d` and `/etc/docker/certs.d` trees work as they
//! are), each namespace folder loaded independently from its `hosts.toml` or, when that is absent
//! or empty, from Docker's certs.d layout; CA files are read and parsed at load time so a broken
//! CA is reported with the field that names it and never replaces a good one (see
//! [`crate::Watched`]). It owns [`HostsConfig::resolve`] (containerd's lookup order
//! `<dir>/host_port_/`, `<dir>/host:port/`, `<dir>/_default/`; mirrors in file order, then the
//! server) and the `registry::HostConfigSource` view (trust for exactly one host:port).
//!
//! Where berth is deliberately stricter than containerd (each is a rule this module must keep):
//! - a `hosts.toml` that fails to parse is an error for that namespace (containerd logs it and
//!   silently falls back to the certs.d files);
//! - `localhost` and loopback registries get no special treatment: containerd defaults them to
//!   `http` with an https-first fallback and `skip_verify`; berth uses verified https unless the
//!   folder says `server = "http://localhost:5000"` (or `skip_verify = true`) explicitly;
//! - an `http://` endpoint is plain http, even when it also lists `ca`/`client`/`skip_verify`
//!   (containerd then tries https first and falls back to http); a TLS failure is never retried
//!   over http, so the model has no fallback flag at all;
//! - credentials go by default only to the namespace's own registry host:port over https: a
//!   mirror, or a `server` on another host, gets them only with `send_credentials = true` (berth
//!   extension key, per host entry or top level), and never over http.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry::{HostConfig, HostConfigSource, HostPort, RegistryError, Scheme};
use rustls_pki_types::CertificateDer;

use crate::certsd::load_certs_dir;
use crate::error::HostsError;
use crate::model::{Capabilities, Endpoint};
use crate::parse::{EntryUrl, HostEntry, parse_hosts_toml};

/// The default hosts directory of berth.
pub const DEFAULT_HOSTS_DIR: &str = "/etc/berth/certs.d";

/// The folder consulted when no namespace folder matches.
pub const DEFAULT_NAMESPACE: &str = "_default";

/// The host Docker Hub's `docker.io` namespace is served from.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// Where a namespace's configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceSource {
    /// A `hosts.toml`.
    HostsToml(PathBuf),
    /// A Docker certs.d folder (no `hosts.toml`, or an empty one).
    CertsD(PathBuf),
}

impl fmt::Display for NamespaceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceSource::HostsToml(p) => write!(f, "{}", p.display()),
            NamespaceSource::CertsD(p) => write!(f, "{}/ (certs.d layout)", p.display()),
        }
    }
}

/// A CA file and the certificates it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedCa {
    /// The file.
    pub path: PathBuf,
    /// Its certificates (DER).
    pub certs: Vec<CertificateDer<'static>>,
}

/// One configured entry with its CA files loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedEntry {
    /// The parsed entry.
    pub entry: HostEntry,
    /// Its CA files, read at load time (empty for plain-http endpoints).
    pub cas: Vec<LoadedCa>,
}

/// One namespace folder, loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceConfig {
    /// The folder name (`reg.example:5000`, `reg.example_5000_`, `docker.io`, `_default`).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// The file or layout it was read from.
    pub source: NamespaceSource,
    /// `[host."..."]` entries in file order.
    pub hosts: Vec<LoadedEntry>,
    /// The top-level (server) entry.
    pub server: LoadedEntry,
    /// Non-fatal findings (logged at load).
    pub warnings: Vec<String>,
}

/// One snapshot of a hosts directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsConfig {
    dir: PathBuf,
    namespaces: BTreeMap<String, Arc<NamespaceConfig>>,
    errors: BTreeMap<String, HostsError>,
}

/// Splits a namespace into (lower-cased text, host:port, explicit port given).
fn parse_namespace(namespace: &str) -> Result<(String, HostPort, bool), HostsError> {
    let ns = namespace.trim().to_ascii_lowercase();
    let bad = |reason: &str| HostsError::Namespace {
        namespace: namespace.to_string(),
        reason: reason.to_string(),
    };
    if ns.is_empty() || ns.contains('/') || ns.chars().any(char::is_whitespace) {
        return Err(bad("expected host or host:port of an image reference"));
    }
    let ns = if ns == "index.docker.io" {
        "docker.io".to_string()
    } else {
        ns
    };
    let hp = HostPort::parse(&ns, 443)
        .ok_or_else(|| bad("expected host or host:port with a numeric port"))?;
    let explicit_port = if let Some(rest) = ns.strip_prefix('[') {
        rest.contains("]:")
    } else {
        ns.matches(':').count() == 1
    };
    Ok((ns, hp, explicit_port))
}

/// The folder names containerd consults for a namespace, in order (without `_default`).
pub fn namespace_folders(namespace: &str) -> Result<Vec<String>, HostsError> {
    let (ns, _, explicit_port) = parse_namespace(namespace)?;
    let mut out = Vec::new();
    if explicit_port && let Some(i) = ns.rfind(':') {
        out.push(format!("{}_{}_", &ns[..i], &ns[i + 1..]));
    }
    out.push(ns);
    Ok(out)
}

/// The host:port an image namespace's own registry is served from (`docker.io` is Docker Hub).
pub fn home_host(namespace: &str) -> Result<HostPort, HostsError> {
    let (ns, hp, _) = parse_namespace(namespace)?;
    if ns == "docker.io" {
        return Ok(HostPort::new(DOCKER_HUB_HOST, 443));
    }
    Ok(hp)
}

fn is_home(namespace_home: &HostPort, host: &HostPort) -> bool {
    if namespace_home == host {
        return true;
    }
    namespace_home.host() == DOCKER_HUB_HOST
        && namespace_home.port() == 443
        && host.port() == 443
        && matches!(host.host(), "docker.io" | "index.docker.io")
}

fn entry_field(entry: &HostEntry, key: &str) -> String {
    if entry.field.is_empty() {
        key.to_string()
    } else {
        format!("{}.{key}", entry.field)
    }
}

fn load_entry(entry: HostEntry, source: &NamespaceSource) -> Result<LoadedEntry, HostsError> {
    let plain_http = entry.url.as_ref().is_some_and(|u| u.scheme == Scheme::Http);
    let mut cas = Vec::new();
    let err = |key: &str, pos: Option<(usize, usize)>, message: String| match source {
        NamespaceSource::HostsToml(p) => {
            let (line, column) = pos.unwrap_or((entry.line.max(1), 1));
            HostsError::Field {
                path: p.clone(),
                line,
                column,
                field: entry_field(&entry, key),
                message,
            }
        }
        NamespaceSource::CertsD(d) => HostsError::CertsD {
            dir: d.clone(),
            message,
        },
    };
    if !plain_http {
        for (i, f) in entry.ca_files.iter().enumerate() {
            let certs = registry::tls::load_certs(f)
                .map_err(|e| err("ca", entry.ca_positions.get(i).copied(), config_message(e)))?;
            cas.push(LoadedCa {
                path: f.clone(),
                certs,
            });
        }
        for (i, pair) in entry.client_pairs.iter().enumerate() {
            for p in std::iter::once(&pair.cert).chain(pair.key.as_ref()) {
                if let Err(e) = std::fs::metadata(p) {
                    return Err(err(
                        "client",
                        entry.client_positions.get(i).copied(),
                        format!("cannot read client certificate file {}: {e}", p.display()),
                    ));
                }
            }
        }
    }
    Ok(LoadedEntry { entry, cas })
}

fn config_message(e: RegistryError) -> String {
    match e {
        RegistryError::Config(m) => m,
        other => other.to_string(),
    }
}

/// Loads one namespace folder.
pub fn load_namespace(name: &str, dir: &Path) -> Result<NamespaceConfig, HostsError> {
    let toml_path = dir.join("hosts.toml");
    let text = match std::fs::read(&toml_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(HostsError::io(&toml_path, "cannot read", &e)),
    };
    let (source, hosts, server, warnings) = match text.filter(|b| !b.is_empty()) {
        Some(bytes) => {
            let src = String::from_utf8(bytes).map_err(|_| HostsError::Syntax {
                path: toml_path.clone(),
                line: 1,
                column: 1,
                message: "the file is not valid UTF-8".to_string(),
            })?;
            let f = parse_hosts_toml(&toml_path, &src)?;
            (
                NamespaceSource::HostsToml(toml_path),
                f.hosts,
                f.server,
                f.warnings,
            )
        }
        None => (
            NamespaceSource::CertsD(dir.to_path_buf()),
            Vec::new(),
            load_certs_dir(dir)?,
            Vec::new(),
        ),
    };
    let hosts = hosts
        .into_iter()
        .map(|h| load_entry(h, &source))
        .collect::<Result<Vec<_>, _>>()?;
    let server = load_entry(server, &source)?;
    Ok(NamespaceConfig {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        source,
        hosts,
        server,
        warnings,
    })
}

impl HostsConfig {
    /// An empty configuration (every namespace resolves to its own registry over https).
    pub fn empty(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            namespaces: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Loads every namespace folder of `dir`. A missing `dir` is an empty configuration; a
    /// folder that fails to load is recorded (see [`HostsConfig::errors`]) and resolving an image
    /// of that namespace fails with that error; other folders are unaffected.
    pub fn load(dir: impl Into<PathBuf>) -> Result<Self, HostsError> {
        let dir = dir.into();
        let mut cfg = Self::empty(dir.clone());
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cfg),
            Err(e) => return Err(HostsError::io(&dir, "cannot read hosts directory", &e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| HostsError::io(&dir, "cannot read hosts directory", &e))?;
            let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = ent.path();
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            match load_namespace(&name, &path) {
                Ok(ns) => {
                    for w in &ns.warnings {
                        tracing::warn!(namespace = %name, "{w}");
                    }
                    cfg.namespaces.insert(name, Arc::new(ns));
                }
                Err(e) => {
                    cfg.errors.insert(name, e);
                }
            }
        }
        Ok(cfg)
    }

    /// The hosts directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Namespace folders that failed to load, by folder name.
    pub fn errors(&self) -> &BTreeMap<String, HostsError> {
        &self.errors
    }

    /// Namespace folders loaded, by folder name.
    pub fn namespaces(&self) -> &BTreeMap<String, Arc<NamespaceConfig>> {
        &self.namespaces
    }

    /// Keeps, for every folder that failed now but loaded before, the previous good version.
    pub(crate) fn keep_previous_good(&mut self, previous: &HostsConfig) {
        for name in self.errors.keys() {
            if let Some(good) = previous.namespaces.get(name) {
                self.namespaces.insert(name.clone(), good.clone());
            }
        }
    }

    /// The folder that governs `namespace` (containerd's order), with its name.
    fn folder_for(&self, namespace: &str) -> Result<Option<Arc<NamespaceConfig>>, HostsError> {
        let mut names = namespace_folders(namespace)?;
        names.push(DEFAULT_NAMESPACE.to_string());
        for name in names {
            if let Some(ns) = self.namespaces.get(&name) {
                return Ok(Some(ns.clone()));
            }
            if let Some(e) = self.errors.get(&name) {
                return Err(e.clone());
            }
        }
        Ok(None)
    }

    /// The endpoints for images whose registry is `namespace` (`host[:port]`, e.g. `docker.io`,
    /// `reg.example:5000`): mirrors in file order, then the server. Tag resolution must use only
    /// endpoints with [`Capabilities::RESOLVE`]; credentials only where `send_credentials`.
    pub fn resolve(&self, namespace: &str) -> Result<Vec<Endpoint>, HostsError> {
        let (ns, ns_host, _) = parse_namespace(namespace)?;
        let home = home_host(namespace)?;
        let folder = self.folder_for(namespace)?;
        let mut out = Vec::new();
        let make = |le: &LoadedEntry, url: EntryUrl, is_mirror: bool, source: String| {
            let e = &le.entry;
            let https = url.scheme == Scheme::Https;
            let send_credentials = https
                && e.send_credentials
                    .unwrap_or_else(|| is_home(&home, &url.host));
            Endpoint {
                ns: if url.host == ns_host {
                    None
                } else {
                    Some(ns.clone())
                },
                scheme: url.scheme,
                host: url.host,
                path: url.path,
                url: url.url,
                capabilities: e.capabilities,
                ca_files: if https {
                    e.ca_files.clone()
                } else {
                    Vec::new()
                },
                client_pairs: if https {
                    e.client_pairs.clone()
                } else {
                    Vec::new()
                },
                skip_verify: https && e.skip_verify,
                headers: e.headers.clone(),
                override_path: e.override_path,
                dial_timeout: e.dial_timeout,
                proxy: e.proxy.clone(),
                is_mirror,
                send_credentials,
                source,
            }
        };
        let default_url = || -> Result<EntryUrl, HostsError> {
            crate::parse::parse_endpoint_url(&format!("https://{home}"), false).map_err(|reason| {
                HostsError::Namespace {
                    namespace: namespace.to_string(),
                    reason,
                }
            })
        };
        match folder {
            None => {
                let le = LoadedEntry {
                    entry: HostEntry {
                        url: None,
                        capabilities: Capabilities::ALL,
                        ca_files: Vec::new(),
                        ca_positions: Vec::new(),
                        client_pairs: Vec::new(),
                        client_positions: Vec::new(),
                        skip_verify: false,
                        headers: Default::default(),
                        override_path: false,
                        dial_timeout: None,
                        proxy: None,
                        send_credentials: None,
                        line: 0,
                        field: String::new(),
                    },
                    cas: Vec::new(),
                };
                out.push(make(&le, default_url()?, false, "default".to_string()));
            }
            Some(folder) => {
                for h in &folder.hosts {
                    let url = h.entry.url.clone().expect("host entries always have a url");
                    let src = format!("{} line {}", folder.source, h.entry.line);
                    out.push(make(h, url, true, src));
                }
                let url = match &folder.server.entry.url {
                    Some(u) => u.clone(),
                    None => default_url()?,
                };
                out.push(make(&folder.server, url, false, folder.source.to_string()));
            }
        }
        Ok(out)
    }

    /// [`HostsConfig::resolve`] for an image reference's registry.
    pub fn resolve_reference(
        &self,
        reference: &oci::Reference,
    ) -> Result<Vec<Endpoint>, HostsError> {
        self.resolve(reference.domain())
    }

    /// Every configured entry whose endpoint is exactly `host` (scheme-independent), with its
    /// label for messages. Implicit servers count for the folder's own host (not for `_default`).
    fn entries_for(&self, host: &HostPort) -> Vec<(String, bool, &LoadedEntry)> {
        let mut out = Vec::new();
        for ns in self.namespaces.values() {
            for h in &ns.hosts {
                if let Some(u) = &h.entry.url
                    && &u.host == host
                {
                    let label = format!("{} line {} (host \"{}\")", ns.source, h.entry.line, u.url);
                    out.push((label, u.scheme == Scheme::Http, h));
                }
            }
            let server_host = match &ns.server.entry.url {
                Some(u) => Some((u.host.clone(), u.scheme == Scheme::Http)),
                None if ns.name == DEFAULT_NAMESPACE => None,
                None => {
                    let name = ns.name.as_str();
                    // `host_port_` folders name `host:port`
                    let as_ns = match name.strip_suffix('_').and_then(|s| s.rsplit_once('_')) {
                        Some((h, p)) if p.parse::<u16>().is_ok() => format!("{h}:{p}"),
                        _ => name.to_string(),
                    };
                    home_host(&as_ns).ok().map(|h| (h, false))
                }
            };
            if let Some((h, http)) = server_host
                && &h == host
            {
                out.push((ns.source.to_string(), http, &ns.server));
            }
        }
        out
    }

    /// Per-connection trust for exactly `host`: the CA files and plain-http choice configured for
    /// an endpoint at that host:port, and nothing configured for any other host:port (a
    /// registry's CA never covers its CDN, and a `_default` top-level `ca` is not applied here).
    pub fn host_config_for(&self, host: &HostPort) -> Result<HostConfig, HostsError> {
        // a folder named for this host that failed to load fails closed
        for name in self.folder_names_for(host) {
            if !self.namespaces.contains_key(&name)
                && let Some(e) = self.errors.get(&name)
            {
                return Err(e.clone());
            }
        }
        let entries = self.entries_for(host);
        let mut hc = HostConfig::default();
        let http: Vec<&String> = entries.iter().filter(|e| e.1).map(|e| &e.0).collect();
        let https: Vec<&String> = entries.iter().filter(|e| !e.1).map(|e| &e.0).collect();
        if !http.is_empty() && !https.is_empty() {
            return Err(HostsError::Trust(format!(
                "{host} is configured as plain http in {} and as https in {}; use one scheme for one host:port",
                http[0], https[0]
            )));
        }
        hc.plain_http = !http.is_empty();
        hc.hosts_dir = Some(self.dir.clone());
        let skip: Vec<&String> = entries
            .iter()
            .filter(|e| !e.1 && e.2.entry.skip_verify)
            .map(|e| &e.0)
            .collect();
        let verify: Vec<&String> = entries
            .iter()
            .filter(|e| !e.1 && !e.2.entry.skip_verify)
            .map(|e| &e.0)
            .collect();
        if !skip.is_empty() && !verify.is_empty() {
            return Err(HostsError::Trust(format!(
                "{host} is configured with skip_verify = true in {} and without it in {}; use one setting for one host:port",
                skip[0], verify[0]
            )));
        }
        hc.skip_verify = !skip.is_empty();
        let mut client_sources = Vec::new();
        for (label, is_http, le) in &entries {
            if *is_http {
                hc.sources.push(format!("{label} (plain http)"));
                continue;
            }
            for ca in &le.cas {
                if hc.ca_certs.iter().any(|(p, _)| p == &ca.path) {
                    continue;
                }
                for c in &ca.certs {
                    hc.ca_certs.push((ca.path.clone(), c.clone()));
                }
            }
            if le.entry.skip_verify {
                hc.sources.push(format!(
                    "{label}: skip_verify = true (certificate verification disabled for {host})"
                ));
            }
            if !le.entry.client_pairs.is_empty() {
                client_sources.push((label.clone(), *le));
            }
            hc.sources.push(if le.cas.is_empty() {
                label.clone()
            } else {
                format!(
                    "{label} (ca {})",
                    le.cas
                        .iter()
                        .map(|c| c.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        if entries.is_empty() {
            hc.sources
                .push(format!("{}/{host}/ (not configured)", self.dir.display()));
        }
        if !client_sources.is_empty() {
            hc.client_identity = self.client_identity_for(host, &client_sources)?;
        }
        Ok(hc)
    }

    fn folder_names_for(&self, host: &HostPort) -> Vec<String> {
        let hp = host.to_string();
        let mut names = vec![hp.clone()];
        if let Some(i) = hp.rfind(':') {
            names.push(format!("{}_{}_", &hp[..i], &hp[i + 1..]));
            if host.port() == 443 {
                names.push(hp[..i].to_string());
            }
        }
        if host.host() == DOCKER_HUB_HOST && host.port() == 443 {
            names.push("docker.io".to_string());
        }
        names
    }

    /// The client certificate presented to `host`: the first `client` pair of the first entry
    /// that configures one (hosts.toml `client`, or a certs.d `.cert`/`.key` pair), loaded and
    /// checked with `registry::ClientIdentity::load`. rustls presents one certificate per
    /// connection, so further pairs are ignored with a warning.
    fn client_identity_for(
        &self,
        host: &HostPort,
        sources: &[(String, &LoadedEntry)],
    ) -> Result<Option<registry::tls::ClientIdentity>, HostsError> {
        let mut pairs = sources
            .iter()
            .flat_map(|(label, le)| le.entry.client_pairs.iter().map(move |p| (label, p)));
        let Some((label, first)) = pairs.next() else {
            return Ok(None);
        };
        let ignored: Vec<String> = pairs
            .filter(|(_, p)| *p != first)
            .map(|(l, p)| format!("{} ({l})", p.cert.display()))
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(%host, used = %first.cert.display(), ignored = %ignored.join(", "), "several client certificates configured for one host:port; only the first is presented");
        }
        registry::tls::ClientIdentity::load(&first.cert, first.key.as_deref())
            .map(Some)
            .map_err(|e| HostsError::Trust(format!("{label}: {}", config_message(e))))
    }

    /// The endpoints of `namespace` as the registry client takes them.
    pub fn registry_endpoints(
        &self,
        namespace: &str,
    ) -> Result<Vec<registry::RegistryEndpoint>, HostsError> {
        Ok(self
            .resolve(namespace)?
            .iter()
            .map(Endpoint::to_registry)
            .collect())
    }
}

impl HostConfigSource for HostsConfig {
    fn host_config(&self, host: &HostPort) -> Result<HostConfig, RegistryError> {
        self.host_config_for(host).map_err(Into::into)
    }

    fn endpoints(
        &self,
        namespace: &str,
    ) -> Result<Option<Vec<registry::RegistryEndpoint>>, RegistryError> {
        Ok(Some(self.registry_endpoints(namespace)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use registry::HostConfigSource;

    /// A CA certificate in PEM form with `cn` as its subject.
    pub(crate) fn ca_pem(cn: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn urls(eps: &[Endpoint]) -> Vec<String> {
        eps.iter().map(|e| e.url.to_string()).collect()
    }

    #[test]
    fn no_folder_means_the_registry_itself_over_verified_https() {
        let d = tempfile::tempdir().unwrap();
        let cfg = HostsConfig::load(d.path().join("absent")).unwrap();
        // containerd TestDefaultHosts: docker.io -> https://registry-1.docker.io/v2, all caps
        let eps = cfg.resolve("docker.io").unwrap();
        assert_eq!(urls(&eps), ["https://registry-1.docker.io/v2"]);
        assert_eq!(eps[0].capabilities, Capabilities::ALL);
        assert!(eps[0].send_credentials && !eps[0].is_mirror && !eps[0].skip_verify);
        assert_eq!(eps[0].ns.as_deref(), Some("docker.io"));
        let eps = cfg.resolve("reg.example:5000").unwrap();
        assert_eq!(urls(&eps), ["https://reg.example:5000/v2"]);
        assert_eq!(eps[0].ns, None);
        // localhost: berth does not infer http or skip_verify (containerd does)
        for ns in [
            "localhost:5000",
            "localhost",
            "127.0.0.1:5000",
            "[::1]:5000",
        ] {
            let eps = cfg.resolve(ns).unwrap();
            assert_eq!(eps.len(), 1, "{ns}");
            assert_eq!(eps[0].scheme, Scheme::Https, "{ns}");
            assert!(!eps[0].skip_verify, "{ns}");
        }
        assert!(cfg.resolve("bad host").is_err());
        assert!(cfg.resolve("reg:notaport").is_err());
    }

    #[test]
    fn lookup_order_is_underscored_then_colon_then_default() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "_default/hosts.toml",
            "server = \"https://default.example\"\n",
        );
        write(
            dir,
            "reg.example:5000/hosts.toml",
            "server = \"https://colon.example\"\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        assert_eq!(
            urls(&cfg.resolve("reg.example:5000").unwrap()),
            ["https://colon.example/v2"]
        );
        assert_eq!(
            urls(&cfg.resolve("other.example").unwrap()),
            ["https://default.example/v2"]
        );
        write(
            dir,
            "reg.example_5000_/hosts.toml",
            "server = \"https://underscore.example\"\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        assert_eq!(
            urls(&cfg.resolve("reg.example:5000").unwrap()),
            ["https://underscore.example/v2"]
        );
        // the folder without a port is a different namespace
        assert_eq!(
            urls(&cfg.resolve("reg.example").unwrap()),
            ["https://default.example/v2"]
        );
        assert_eq!(
            namespace_folders("Reg.Example:5000").unwrap(),
            ["reg.example_5000_", "reg.example:5000"]
        );
        assert_eq!(namespace_folders("reg.example").unwrap(), ["reg.example"]);
        assert_eq!(
            namespace_folders("[::1]:5000").unwrap(),
            ["[::1]_5000_", "[::1]:5000"]
        );
        // an existing but empty folder governs (certs.d layout with nothing), _default is not used
        std::fs::create_dir(dir.join("empty.example")).unwrap();
        let cfg = HostsConfig::load(dir).unwrap();
        assert_eq!(
            urls(&cfg.resolve("empty.example").unwrap()),
            ["https://empty.example/v2"]
        );
    }

    #[test]
    fn docs_local_mirror_example_orders_mirrors_and_guards_resolve_and_credentials() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(dir, "docker.io/docker-mirror.crt", &ca_pem("mirror ca"));
        write(
            dir,
            "docker.io/hosts.toml",
            r#"server = "https://registry-1.docker.io"    # Exclude this to not use upstream

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]                  # Requires less trust, won't resolve tag to digest from this host
[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "docker-mirror.crt"
  send_credentials = true
"#,
        );
        let cfg = HostsConfig::load(dir).unwrap();
        assert!(cfg.errors().is_empty(), "{:?}", cfg.errors());
        let eps = cfg.resolve("docker.io").unwrap();
        assert_eq!(
            urls(&eps),
            [
                "https://public-mirror.example.com/v2",
                "https://docker-mirror.internal/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert_eq!(
            eps.iter().map(|e| e.is_mirror).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(
            eps.iter().map(|e| e.can_resolve()).collect::<Vec<_>>(),
            [false, true, true]
        );
        // the public mirror never gets credentials; the private one only because it says so
        assert_eq!(
            eps.iter().map(|e| e.send_credentials).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(eps[1].ca_files, [dir.join("docker.io/docker-mirror.crt")]);
        assert_eq!(
            eps[0].join("library/busybox/manifests/latest").as_str(),
            "https://public-mirror.example.com/v2/library/busybox/manifests/latest?ns=docker.io"
        );
        assert!(
            eps[0].source.ends_with("docker.io/hosts.toml line 3"),
            "{}",
            eps[0].source
        );
    }

    #[test]
    fn docs_simple_docker_example_gives_hub_hosts_credentials() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "docker.io/hosts.toml",
            "server = \"https://docker.io\"\n\n[host.\"https://registry-1.docker.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        );
        let cfg = HostsConfig::load(d.path()).unwrap();
        let eps = cfg.resolve("docker.io").unwrap();
        assert_eq!(
            urls(&eps),
            ["https://registry-1.docker.io/v2", "https://docker.io/v2"]
        );
        // both are Docker Hub: the namespace's own credentials may go there
        assert!(eps.iter().all(|e| e.send_credentials));
        assert_eq!(
            eps[0].capabilities,
            Capabilities::PULL.union(Capabilities::RESOLVE)
        );
        // index.docker.io is the same namespace
        assert_eq!(cfg.resolve("index.docker.io").unwrap(), eps);
        // and the per-connection trust view finds the folder for the hub host
        let hc = cfg
            .host_config(&HostPort::new("registry-1.docker.io", 443))
            .unwrap();
        assert!(
            hc.sources
                .iter()
                .any(|s| s.contains("docker.io/hosts.toml")),
            "{:?}",
            hc.sources
        );
    }

    #[test]
    fn docs_default_mirror_and_bypass_examples() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "_default/hosts.toml",
            "[host.\"https://registry.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        );
        write(
            dir,
            "docker.io/hosts.toml",
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://192.168.31.250:5000\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  skip_verify = true\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let eps = cfg.resolve("quay.io").unwrap();
        assert_eq!(
            urls(&eps),
            ["https://registry.example.com/v2", "https://quay.io/v2"]
        );
        assert!(
            !eps[0].send_credentials,
            "a default mirror never gets quay.io credentials"
        );
        assert!(eps[1].send_credentials);
        let eps = cfg.resolve("docker.io").unwrap();
        assert_eq!(eps[0].scheme, Scheme::Http);
        assert!(
            !eps[0].skip_verify && !eps[0].send_credentials,
            "plain http: no tls, no credentials"
        );
        assert_eq!(cfg.namespaces()["docker.io"].warnings.len(), 1);
        // a server on another host gets no credentials by default
        write(
            dir,
            "_default/hosts.toml",
            "server = \"https://registry.example.com\"\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let eps = cfg.resolve("quay.io").unwrap();
        assert_eq!(urls(&eps), ["https://registry.example.com/v2"]);
        assert!(!eps[0].send_credentials);
        assert_eq!(eps[0].ns.as_deref(), Some("quay.io"));
    }

    #[test]
    fn docker_certs_d_layout_applies_when_hosts_toml_is_absent_or_empty() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(dir, "reg.example:5000/ca.crt", &ca_pem("reg ca"));
        write(dir, "reg.example:5000/hosts.toml", "");
        let cfg = HostsConfig::load(dir).unwrap();
        let eps = cfg.resolve("reg.example:5000").unwrap();
        assert_eq!(eps[0].ca_files, [dir.join("reg.example:5000/ca.crt")]);
        assert!(matches!(
            cfg.namespaces()["reg.example:5000"].source,
            NamespaceSource::CertsD(_)
        ));
        write(dir, "bad.example/client.cert", "x");
        let cfg = HostsConfig::load(dir).unwrap();
        let e = cfg.resolve("bad.example").unwrap_err().to_string();
        assert!(e.contains("missing key client.key for client certificate client.cert. CA certificates must use the extension .crt"), "{e}");
        // other namespaces are unaffected
        assert!(cfg.resolve("reg.example:5000").is_ok());
    }

    #[test]
    fn broken_ca_file_is_reported_with_field_and_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "reg:5000/hosts.toml",
            "server = \"https://reg:5000\"\n\n[host.\"https://mirror:6000\"]\n  ca = \"missing.pem\"\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let e = cfg.resolve("reg:5000").unwrap_err().to_string();
        assert!(e.contains("reg:5000/hosts.toml line 4 column 8: host.\"https://mirror:6000\".ca: cannot read CA file"), "{e}");
        assert!(e.contains("missing.pem"), "{e}");
        let err = cfg
            .host_config(&HostPort::new("reg", 5000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn trust_is_per_host_port_and_never_covers_other_hosts() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(dir, "reg.example:5000/reg.pem", &ca_pem("reg ca"));
        write(dir, "reg.example:5000/mirror.pem", &ca_pem("mirror ca"));
        write(
            dir,
            "reg.example:5000/hosts.toml",
            "ca = \"reg.pem\"\n[host.\"https://mirror.example:6000\"]\n  capabilities = [\"pull\"]\n  ca = \"mirror.pem\"\n[host.\"http://plain.example:7000\"]\n",
        );
        write(
            dir,
            "_default/hosts.toml",
            &format!(
                "ca = \"{}\"\n",
                dir.join("reg.example:5000/reg.pem").display()
            ),
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let reg = cfg
            .host_config(&HostPort::new("reg.example", 5000))
            .unwrap();
        assert_eq!(reg.ca_certs.len(), 1);
        assert!(reg.ca_certs[0].0.ends_with("reg.pem"));
        assert!(!reg.plain_http);
        let mirror = cfg
            .host_config(&HostPort::new("mirror.example", 6000))
            .unwrap();
        assert_eq!(mirror.ca_certs.len(), 1);
        assert!(mirror.ca_certs[0].0.ends_with("mirror.pem"));
        // the same host on another port, a CDN, and anything else: nothing (not even _default's ca)
        for other in [
            HostPort::new("reg.example", 5001),
            HostPort::new("reg.example", 443),
            HostPort::new("cdn.example", 443),
            HostPort::new("mirror.example", 443),
        ] {
            let hc = cfg.host_config(&other).unwrap();
            assert!(hc.ca_certs.is_empty(), "{other}");
            assert!(!hc.plain_http, "{other}");
            assert!(
                hc.sources[0].contains("not configured"),
                "{other}: {:?}",
                hc.sources
            );
        }
        assert!(
            cfg.host_config(&HostPort::new("plain.example", 7000))
                .unwrap()
                .plain_http
        );
    }

    #[test]
    fn docker_layout_client_pair_is_loaded_for_its_host_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let cl = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        write(dir, "mtls.example:8443/client.cert", &cl.cert.pem());
        write(
            dir,
            "mtls.example:8443/client.key",
            &cl.signing_key.serialize_pem(),
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let hc = cfg
            .host_config(&HostPort::new("mtls.example", 8443))
            .unwrap();
        assert!(hc.client_identity.is_some());
        assert!(
            cfg.host_config(&HostPort::new("cdn.example", 443))
                .unwrap()
                .client_identity
                .is_none()
        );
        // a hosts.toml client pair (cert and key files, relative to the file) is presented too
        write(dir, "toml.example:8443/c.pem", &cl.cert.pem());
        write(
            dir,
            "toml.example:8443/k.pem",
            &cl.signing_key.serialize_pem(),
        );
        write(
            dir,
            "toml.example:8443/hosts.toml",
            "client = [[\"c.pem\", \"k.pem\"]]\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let hc = cfg
            .host_config(&HostPort::new("toml.example", 8443))
            .unwrap();
        let id = hc.client_identity.expect("hosts.toml client pair loaded");
        assert!(id.cert_path.ends_with("c.pem") && id.key_path.ends_with("k.pem"));
        // a key that does not belong to the certificate is refused, naming both files
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        write(
            dir,
            "toml.example:8443/k.pem",
            &other.signing_key.serialize_pem(),
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let e = cfg
            .host_config(&HostPort::new("toml.example", 8443))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.pem") && e.contains("k.pem") && e.contains("do not form a usable pair"),
            "{e}"
        );
        assert!(!e.contains("PRIVATE KEY"), "{e}");
    }

    #[test]
    fn skip_verify_applies_to_its_host_port_only_and_must_agree() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "reg.example:5000/hosts.toml",
            "[host.\"https://mirror.example:6000\"]\n  skip_verify = true\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let m = cfg
            .host_config(&HostPort::new("mirror.example", 6000))
            .unwrap();
        assert!(m.skip_verify);
        assert!(
            m.sources.iter().any(|s| s.contains("skip_verify = true")),
            "{:?}",
            m.sources
        );
        assert_eq!(m.hosts_dir.as_deref(), Some(dir));
        for other in [
            HostPort::new("reg.example", 5000),
            HostPort::new("mirror.example", 6001),
            HostPort::new("mirror.example", 443),
        ] {
            assert!(!cfg.host_config(&other).unwrap().skip_verify, "{other}");
        }
        // another namespace listing the same host:port with verification on: refused
        write(
            dir,
            "other.example/hosts.toml",
            "[host.\"https://mirror.example:6000\"]\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let e = cfg
            .host_config(&HostPort::new("mirror.example", 6000))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("skip_verify = true in") && e.contains("one setting"),
            "{e}"
        );
    }

    #[test]
    fn registry_endpoints_carry_capabilities_credentials_headers_ns_and_override_path() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "reg.example:5000/hosts.toml",
            r#"server = "https://reg.example:5000"

[host."https://mirror.example:6000/cache/v2"]
  capabilities = ["pull"]
  override_path = true
  [host."https://mirror.example:6000/cache/v2".header]
    x-mirror-token = ["a", "b"]

[host."https://trusted.example:7000"]
  capabilities = ["pull", "resolve"]
  send_credentials = true
"#,
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let eps = cfg.registry_endpoints("reg.example:5000").unwrap();
        assert_eq!(
            eps.iter().map(|e| e.label()).collect::<Vec<_>>(),
            [
                "https://mirror.example:6000/cache/v2",
                "https://trusted.example:7000/v2",
                "https://reg.example:5000/v2"
            ]
        );
        assert_eq!(
            eps.iter().map(|e| (e.pull, e.resolve)).collect::<Vec<_>>(),
            [(true, false), (true, true), (true, true)]
        );
        assert_eq!(
            eps.iter().map(|e| e.send_credentials).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(
            eps[0].headers,
            [
                ("x-mirror-token".to_string(), "a".to_string()),
                ("x-mirror-token".to_string(), "b".to_string())
            ]
        );
        assert_eq!(eps[0].ns.as_deref(), Some("reg.example:5000"));
        assert_eq!(eps[2].ns, None);
        assert_eq!(
            eps[0].url("/app/manifests/sha256:00").as_str(),
            "https://mirror.example:6000/cache/v2/app/manifests/sha256:00?ns=reg.example%3A5000"
        );
        assert!(eps[0].mirror && eps[1].mirror && !eps[2].mirror);
        // the client's seam answers the same list
        assert_eq!(
            HostConfigSource::endpoints(&cfg, "reg.example:5000").unwrap(),
            Some(eps)
        );
    }

    #[test]
    fn conflicting_schemes_for_one_host_port_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "a.example/hosts.toml",
            "[host.\"http://m.example:5000\"]\n",
        );
        write(
            dir,
            "b.example/hosts.toml",
            "[host.\"https://m.example:5000\"]\n",
        );
        let cfg = HostsConfig::load(dir).unwrap();
        let e = cfg
            .host_config(&HostPort::new("m.example", 5000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain http") && e.contains("as https"), "{e}");
    }
}
