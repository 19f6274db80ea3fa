//! The kubelet credential keyring (`pkg/credentialprovider/keyring.go`), reproduced exactly: keys normalised
//! (`https://` added, `/v1/`/`/v2/` cut, host alone for an empty path), de-duplicated and reverse-sorted; a key
//! matches an image when ports are equal, the hosts have the same number of labels, each label matches by
//! `filepath.Match`, and the key path is a plain string prefix of the image path. Every matching key contributes
//! its credentials; only if none matched, Docker Hub images fall back to an `index.docker.io` key. It owns
//! matching and the explanation of matches; it must never read files, run helpers or log credential values.
//!
//! URL handling mirrors Go's `net/url.Parse` for the parts that decide a match (host validation, port syntax,
//! percent-decoding of the path) and `net.SplitHostPort`; a key Go cannot parse is ignored (kubelet logs and
//! skips it) and is reported by [`Keyring::ignored`].

use std::collections::HashMap;
use std::fmt;

use oci::pattern::path_match;

use crate::docker_config::DockerConfigEntry;

/// Where a credential came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A pull secret (`namespace` is absent when the manifest had none).
    Secret {
        namespace: Option<String>,
        name: String,
    },
    /// A Docker config file on this node.
    DockerConfig { path: String },
    /// A Docker credential helper (`docker-credential-<name>`), configured in `path`.
    Helper { name: String, path: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Secret {
                namespace: Some(ns),
                name,
            } => write!(f, "secret {ns}/{name}"),
            Origin::Secret {
                namespace: None,
                name,
            } => write!(f, "secret {name}"),
            Origin::DockerConfig { path } => write!(f, "docker config {path}"),
            Origin::Helper { name, path } => write!(
                f,
                "credential helper docker-credential-{name} (from {path})"
            ),
        }
    }
}

/// A credential found for an image, with what matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedCredential {
    pub origin: Origin,
    /// The registry key exactly as written in the document.
    pub key: String,
    /// The key after kubelet normalisation (the keyring index entry that matched).
    pub normalized_key: String,
    /// True when this came from the Docker Hub fallback rather than a key match.
    pub default_registry_fallback: bool,
    pub credential: DockerConfigEntry,
}

/// A key that could not be used, and why (Go's `url.Parse` rejected it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    pub origin: Origin,
    pub key: String,
    pub reason: String,
}

/// Why a keyring key does or does not match an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVerdict {
    pub normalized_key: String,
    /// The keys as written, with their origins.
    pub written: Vec<(Origin, String)>,
    /// `None` when it matches.
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone)]
struct Stored {
    origin: Origin,
    key: String,
    entry: DockerConfigEntry,
}

/// kubelet `BasicDockerKeyring`.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    index: Vec<String>,
    creds: HashMap<String, Vec<Stored>>,
    ignored: Vec<IgnoredKey>,
}

/// The Docker Hub key the fallback looks for.
pub const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// The parts of a Go `*url.URL` the keyring uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GoUrl {
    host: String,
    path: String,
}

fn valid_optional_port(port: &str) -> bool {
    // Go validOptionalPort: "" or ":" followed by digits only.
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Go `shouldEscape(c, encodeHost)` for ASCII: characters a host may not contain.
fn host_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"".contains(&b)
}

fn unescape(s: &str, host: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => out.push(v),
                    None => return Err("invalid URL escape".into()),
                }
                i += 3;
            }
            b if host && b < 0x80 && !host_char_ok(b) => {
                return Err("invalid character in host name".into());
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go `url.Parse` of an absolute `http(s)://` URL, reduced to host and (decoded) path.
fn parse_go_url(url: &str) -> Result<GoUrl, String> {
    if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL".into());
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split('#').next().unwrap_or("");
    let rest = rest.split('?').next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    if let Some(stripped) = host.strip_prefix('[') {
        let Some(end) = stripped.find(']') else {
            return Err("missing ']' in host".into());
        };
        if !valid_optional_port(&stripped[end + 1..]) {
            return Err("invalid port after host".into());
        }
    } else if let Some(i) = host.rfind(':')
        && !valid_optional_port(&host[i..])
    {
        return Err("invalid port after host".into());
    }
    Ok(GoUrl {
        host: unescape(host, true)?,
        path: unescape(path, false)?,
    })
}

/// Go `net.SplitHostPort`, falling back to (host, "") on error as kubelet's `splitURL` does.
fn split_host_port(hostport: &str) -> (&str, &str) {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let after = &rest[end + 1..];
            if let Some(port) = after.strip_prefix(':')
                && !port.contains(':')
                && !rest[..end].contains('[')
            {
                return (&rest[..end], port);
            }
        }
        return (hostport, "");
    }
    match hostport.matches(':').count() {
        1 => hostport.split_once(':').unwrap_or((hostport, "")),
        _ => (hostport, ""),
    }
}

/// kubelet `Add` key normalisation: `Err` when Go's `url.Parse` would reject the key.
pub fn normalize_key(key: &str) -> Result<String, String> {
    let value = if key.starts_with("https://") || key.starts_with("http://") {
        key.to_owned()
    } else {
        format!("https://{key}")
    };
    let parsed = parse_go_url(&value)?;
    let mut path = parsed.path.as_str();
    if path.starts_with("/v2/") || path.starts_with("/v1/") {
        path = &path[3..];
    }
    if !path.is_empty() && path != "/" {
        Ok(format!("{}{}", parsed.host, path))
    } else {
        Ok(parsed.host)
    }
}

/// kubelet `urlsMatchStr(glob, target)`, with the reason for a mismatch (`Ok(())` = match).
pub fn url_mismatch(glob: &str, target: &str) -> Result<(), String> {
    let g = parse_go_url(&format!("https://{glob}"))
        .map_err(|e| format!("key is not a valid URL: {e}"))?;
    let t = parse_go_url(&format!("https://{target}"))
        .map_err(|e| format!("image is not a valid URL: {e}"))?;
    let (g_host, g_port) = split_host_port(&g.host);
    let (t_host, t_port) = split_host_port(&t.host);
    let show = |p: &str| {
        if p.is_empty() {
            "no port".to_owned()
        } else {
            format!("port {p}")
        }
    };
    if g_port != t_port {
        return Err(format!(
            "key has {} but the image registry has {}",
            show(g_port),
            show(t_port)
        ));
    }
    let g_labels: Vec<&str> = g_host.split('.').collect();
    let t_labels: Vec<&str> = t_host.split('.').collect();
    if g_labels.len() != t_labels.len() {
        return Err(format!(
            "key host {g_host:?} has {} labels but the image registry {t_host:?} has {} (a * matches within one label)",
            g_labels.len(),
            t_labels.len()
        ));
    }
    if !t.path.starts_with(&g.path) {
        return Err(format!(
            "key path {:?} is not a prefix of the image path {:?}",
            g.path, t.path
        ));
    }
    for (gl, tl) in g_labels.iter().zip(&t_labels) {
        match path_match(gl, tl) {
            Ok(true) => {}
            Ok(false) => return Err(format!("host label {gl:?} does not match {tl:?}")),
            Err(_) => return Err(format!("host label {gl:?} is a malformed pattern")),
        }
    }
    Ok(())
}

/// kubelet `urlsMatchStr`.
pub fn urls_match(glob: &str, target: &str) -> bool {
    url_mismatch(glob, target).is_ok()
}

/// kubelet `isDefaultRegistryMatch`.
pub fn is_default_registry_match(image: &str) -> bool {
    let (first, rest) = match image.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (image, None),
    };
    if first.is_empty() {
        return false;
    }
    if rest.is_none() || first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !first.contains(['.', ':'])
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// kubelet `Add`: adds every entry of one document, in document order.
    pub fn add(&mut self, origin: &Origin, entries: &[(String, DockerConfigEntry)]) {
        for (key, entry) in entries {
            let normalized = match normalize_key(key) {
                Ok(n) => n,
                Err(reason) => {
                    self.ignored.push(IgnoredKey {
                        origin: origin.clone(),
                        key: key.clone(),
                        reason,
                    });
                    continue;
                }
            };
            self.creds
                .entry(normalized.clone())
                .or_default()
                .push(Stored {
                    origin: origin.clone(),
                    key: key.clone(),
                    entry: entry.clone(),
                });
            self.index.push(normalized);
        }
        self.index.sort_unstable_by(|a, b| b.cmp(a));
        self.index.dedup();
    }

    /// The normalised keys, in lookup (reverse-sorted) order.
    pub fn keys(&self) -> &[String] {
        &self.index
    }

    /// Keys that were skipped because they are not valid URLs.
    pub fn ignored(&self) -> &[IgnoredKey] {
        &self.ignored
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn matched(&self, key: &str, fallback: bool) -> impl Iterator<Item = MatchedCredential> + '_ {
        let key = key.to_owned();
        self.creds
            .get(&key)
            .into_iter()
            .flatten()
            .map(move |s| MatchedCredential {
                origin: s.origin.clone(),
                key: s.key.clone(),
                normalized_key: key.clone(),
                default_registry_fallback: fallback,
                credential: s.entry.clone(),
            })
    }

    /// kubelet `Lookup(image)`: `image` is the normalised repository name (`docker.io/library/nginx`).
    pub fn lookup(&self, image: &str) -> Vec<MatchedCredential> {
        let mut out: Vec<MatchedCredential> = Vec::new();
        for k in &self.index {
            if urls_match(k, image) {
                out.extend(self.matched(k, false));
            }
        }
        if out.is_empty() && is_default_registry_match(image) {
            out.extend(self.matched(DEFAULT_REGISTRY_HOST, true));
        }
        out
    }

    /// For every key, whether it matches `image` and why not.
    pub fn explain(&self, image: &str) -> Vec<KeyVerdict> {
        self.index
            .iter()
            .map(|k| KeyVerdict {
                normalized_key: k.clone(),
                written: self.creds[k]
                    .iter()
                    .map(|s| (s.origin.clone(), s.key.clone()))
                    .collect(),
                mismatch: url_mismatch(k, image).err(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::SecretString;

    fn entry(user: &str, pass: &str) -> DockerConfigEntry {
        DockerConfigEntry {
            username: user.into(),
            password: SecretString::new(pass),
            ..Default::default()
        }
    }

    fn origin(name: &str) -> Origin {
        Origin::Secret {
            namespace: None,
            name: name.into(),
        }
    }

    fn users(m: &[MatchedCredential]) -> Vec<&str> {
        m.iter().map(|c| c.credential.username.as_str()).collect()
    }

    /// kubernetes `keyring_test.go` TestURLsMatch: every row.
    #[test]
    fn urls_match_agrees_with_kubelet_table() {
        let rows = [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
            ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
            (
                "*.kubernetes.io:1111/blah",
                "prefix.kubernetes.io:1111/blah",
                true,
            ),
            (
                "prefix.*.io:1111/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                true,
            ),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("*.*.kubernetes.io", "kubernetes.io", false),
            ("kubernetes.io", "kubernetes.com", false),
            ("k*.io", "quay.io", false),
            (
                "*.kubernetes.io:1234/blah",
                "prefix.kubernetes.io:1111/blah",
                false,
            ),
            (
                "prefix.*.io/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                false,
            ),
            ("*kubernetes.io", "kubernetes.io", true),
            ("*.io", "a.b.io", false),
            ("bar.example.com/pong", "bar.example.com/pongz", true),
        ];
        for (glob, target, want) in rows {
            assert_eq!(urls_match(glob, target), want, "{glob} vs {target}");
        }
    }

    fn single_key_keyring(key: &str) -> Keyring {
        let mut k = Keyring::new();
        let mut e = entry("foo", "bar");
        e.email = "foo@bar.baz".into();
        k.add(&origin("s"), &[(key.to_owned(), e)]);
        k
    }

    /// kubernetes TestDockerKeyringForGlob: every row (lookup of `<target>/foo/bar`).
    #[test]
    fn glob_keys_match_per_kubelet_table() {
        let rows = [
            ("https://hello.kubernetes.io", "hello.kubernetes.io"),
            ("https://*.docker.io", "prefix.docker.io"),
            ("https://prefix.*.io", "prefix.docker.io"),
            ("https://prefix.docker.*", "prefix.docker.io"),
            ("https://*.docker.io/path", "prefix.docker.io/path"),
            ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
            ("https://prefix.docker.*/path", "prefix.docker.io/path"),
            ("https://*.docker.io:8888", "prefix.docker.io:8888"),
            ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
            ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
            (
                "https://*.docker.io/path:1111",
                "prefix.docker.io/path:1111",
            ),
            ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
            ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
            (
                "https://prefix.docker.*/path:1111",
                "prefix.docker.io/path:1111",
            ),
            ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
            ("*.docker.io:1111", "prefix.docker.io:1111/path"),
        ];
        for (glob, target) in rows {
            let k = single_key_keyring(glob);
            let got = k.lookup(&format!("{target}/foo/bar"));
            assert_eq!(got.len(), 1, "{glob} should match {target}");
            let c = &got[0].credential;
            assert_eq!(
                (c.username.as_str(), c.password.expose(), c.email.as_str()),
                ("foo", "bar", "foo@bar.baz")
            );
        }
    }

    /// kubernetes TestKeyringMiss: every row.
    #[test]
    fn keyring_misses_per_kubelet_table() {
        let rows = [
            ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
            ("https://*.docker.com", "prefix.docker.io"),
            ("https://suffix.*.io", "prefix.docker.io"),
            ("https://prefix.docker.c*", "prefix.docker.io"),
            (
                "https://prefix.*.io/path:1111",
                "prefix.docker.io/path/subpath:1111",
            ),
            ("suffix.*.io", "prefix.docker.io"),
        ];
        for (glob, lookup) in rows {
            assert!(
                single_key_keyring(glob)
                    .lookup(&format!("{lookup}/foo/bar"))
                    .is_empty(),
                "{glob} vs {lookup}"
            );
        }
    }

    /// kubernetes TestKeyringMissWithDockerHubCredentials, TestKeyringHitWithUnqualifiedDockerHub,
    /// TestKeyringHitWithUnqualifiedLibraryDockerHub, TestKeyringHitWithQualifiedDockerHub.
    #[test]
    fn docker_hub_default_key_fallback_per_kubelet_tests() {
        let k = single_key_keyring("https://index.docker.io/v1/");
        assert_eq!(k.keys(), ["index.docker.io"]);
        assert!(k.lookup("world.mesos.org/foo/bar").is_empty());
        let hit = k.lookup("google/docker-registry");
        assert_eq!(users(&hit), ["foo"]);
        assert!(hit[0].default_registry_fallback);
        assert_eq!(users(&k.lookup("jenkins")), ["foo"]);
        let qualified = k.lookup("index.docker.io/v1//google/docker-registry");
        assert!(!qualified.is_empty() && qualified.len() <= 2);
        assert_eq!(qualified[0].credential.username, "foo");
    }

    /// kubernetes TestIsDefaultRegistryMatch: every row.
    #[test]
    fn default_registry_match_per_kubelet_table() {
        let rows = [
            ("foo/bar", true),
            ("docker.io/foo/bar", true),
            ("index.docker.io/foo/bar", true),
            ("foo", true),
            ("", false),
            ("registry.tld/foo/bar", false),
            ("registry:5000/foo/bar", false),
            ("myhostdocker.io/foo/bar", false),
        ];
        for (image, want) in rows {
            assert_eq!(is_default_registry_match(image), want, "{image:?}");
        }
    }

    /// kubernetes TestDockerKeyringLookup: every row, with credential order.
    #[test]
    fn lookup_order_per_kubelet_table() {
        let mut k = Keyring::new();
        k.add(
            &origin("s"),
            &[
                ("bar.example.com/pong".into(), entry("grace", "squash")),
                ("bar.example.com".into(), entry("ada", "smash")),
            ],
        );
        let rows: [(&str, &[&str]); 7] = [
            ("bar.example.com", &["ada"]),
            ("bar.example.com/pong", &["grace", "ada"]),
            ("bar.example.com/ping", &["ada"]),
            ("bar.example.com/pongz", &["grace", "ada"]),
            ("bar.example.com/pong/pang", &["grace", "ada"]),
            ("example.com", &[]),
            ("foo.example.com", &[]),
        ];
        for (image, want) in rows {
            assert_eq!(users(&k.lookup(image)), want, "{image}");
        }
    }

    /// kubernetes TestIssue3797: every row.
    #[test]
    fn scheme_and_v1_path_keys_match_host_images() {
        let mut k = Keyring::new();
        k.add(
            &origin("s"),
            &[("https://quay.io/v1/".into(), entry("rex", "tiny arms"))],
        );
        for image in ["quay.io", "quay.io/foo", "quay.io/foo/bar"] {
            assert_eq!(users(&k.lookup(image)), ["rex"], "{image}");
        }
    }

    #[test]
    fn key_normalisation_examples() {
        assert_eq!(
            normalize_key("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(normalize_key("https://quay.io/v1/").unwrap(), "quay.io");
        assert_eq!(
            normalize_key("*.docker.io:1111").unwrap(),
            "*.docker.io:1111"
        );
        assert_eq!(
            normalize_key("http://reg.example.com/v2/team").unwrap(),
            "reg.example.com/team"
        );
        assert!(normalize_key("reg.example.com:http").is_err());
        assert!(normalize_key("reg example.com").is_err());
    }

    #[test]
    fn same_key_from_two_secrets_keeps_secret_order() {
        let mut k = Keyring::new();
        k.add(
            &origin("first"),
            &[("reg.example.com".into(), entry("a", "1"))],
        );
        k.add(
            &origin("second"),
            &[("https://reg.example.com/v1/".into(), entry("b", "2"))],
        );
        let got = k.lookup("reg.example.com/app");
        assert_eq!(users(&got), ["a", "b"]);
        assert_eq!(got[1].key, "https://reg.example.com/v1/");
        assert_eq!(got[1].origin, origin("second"));
    }

    #[test]
    fn explain_gives_a_reason_per_key() {
        let mut k = Keyring::new();
        k.add(
            &origin("s"),
            &[
                ("reg.example.com:5000".into(), entry("a", "1")),
                ("*.example.com".into(), entry("b", "2")),
            ],
        );
        let v = k.explain("reg.example.com/app");
        let reasons: Vec<_> = v.iter().map(|v| v.mismatch.clone()).collect();
        assert_eq!(
            reasons[0].as_deref(),
            Some("key has port 5000 but the image registry has no port")
        );
        assert_eq!(reasons[1], None);
        let v = k.explain("a.b.example.com/app");
        assert!(
            v[1].mismatch.as_deref().unwrap().contains("has 3 labels"),
            "{v:?}"
        );
    }

    #[test]
    fn ipv6_keys_split_ports_like_go() {
        assert!(urls_match("[::1]:5000", "[::1]:5000/app"));
        assert!(!urls_match("[::1]:5000", "[::1]:5001/app"));
    }
}
