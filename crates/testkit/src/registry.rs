//! A real CNCF distribution registry (`/usr/bin/docker-registry`, 2.8.x) started for one test: generated
//! `config.yml`, filesystem storage and logs in a temp dir, a free loopback port, optional TLS (leaf chain +
//! key), optional mTLS (client CA), and auth none / htpasswd (bcrypt computed in-process) / token. It owns the
//! process (killed on `Drop`) and the parsing of its access log so tests can count requests per path; it must
//! never bind a non-loopback address, use port 5000 or the system registry service, or put a password in a
//! process argument or log.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::error::{Error, Result};
use crate::pki::{Leaf, write_file};
use crate::secret::Secret;

/// Path of the distribution binary installed by the Debian `docker-registry` package.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A user of an htpasswd-protected registry (or of the token server).
#[derive(Clone, Debug)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password (redacted in `Debug`).
    pub password: Secret,
}

impl User {
    /// A user with a password.
    pub fn new(name: impl Into<String>, password: impl Into<Secret>) -> Self {
        User {
            name: name.into(),
            password: password.into(),
        }
    }
}

/// Token-auth settings of the registry: the `auth.token` section of distribution's config.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// `realm`: the token endpoint URL clients are sent to in the challenge.
    pub realm: String,
    /// `service`: the `aud` the registry accepts and clients pass as `service`.
    pub service: String,
    /// `issuer`: the `iss` the registry accepts.
    pub issuer: String,
    /// `rootcertbundle`: PEM of the CA(s) the token signing certificate (JWT `x5c`) must chain to.
    pub root_cert_bundle_pem: String,
    /// PEM of the CA that issued the token server's TLS certificate; handed to clients (skopeo's cert dir)
    /// so they can reach the realm. `None` when the realm uses the registry's CA.
    pub realm_ca_pem: Option<String>,
}

/// How the registry authenticates clients.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// Anonymous access.
    #[default]
    None,
    /// `auth.htpasswd` with these users (bcrypt hashes written by testkit).
    Htpasswd(Vec<User>),
    /// `auth.token`.
    Token(TokenAuth),
}

/// Options of [`Registry::start`].
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Loopback IP to listen on (default 127.0.0.1).
    pub ip: IpAddr,
    /// Server certificate; `None` serves plain http.
    pub tls: Option<Leaf>,
    /// CA PEM clients must trust to verify `tls` (the test root).
    pub ca_pem: Option<String>,
    /// Requires client certificates issued by this CA (mTLS).
    pub client_ca_pem: Option<String>,
    /// Client certificate testkit itself uses against an mTLS registry (readiness probe, pushes).
    pub client_identity: Option<Leaf>,
    /// Authentication.
    pub auth: Auth,
    /// How long to wait for `/v2/` to answer.
    pub ready_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: None,
            ca_pem: None,
            client_ca_pem: None,
            client_identity: None,
            auth: Auth::None,
            ready_timeout: Duration::from_secs(20),
        }
    }
}

impl RegistryOptions {
    /// Plain-http, anonymous registry on 127.0.0.1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve TLS with `leaf`; clients trust `ca_pem`.
    pub fn tls(mut self, leaf: Leaf, ca_pem: impl Into<String>) -> Self {
        self.tls = Some(leaf);
        self.ca_pem = Some(ca_pem.into());
        self
    }

    /// Listen on another loopback IP (e.g. 127.0.0.2).
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    /// Require client certificates issued by `client_ca_pem`; testkit authenticates with `identity`.
    pub fn mtls(mut self, client_ca_pem: impl Into<String>, identity: Leaf) -> Self {
        self.client_ca_pem = Some(client_ca_pem.into());
        self.client_identity = Some(identity);
        self
    }

    /// htpasswd auth with these users.
    pub fn htpasswd(mut self, users: impl IntoIterator<Item = User>) -> Self {
        self.auth = Auth::Htpasswd(users.into_iter().collect());
        self
    }

    /// Token auth.
    pub fn token(mut self, token: TokenAuth) -> Self {
        self.auth = Auth::Token(token);
        self
    }
}

/// One line of the registry's access log (Apache combined format, written by distribution for every request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// Client address as logged.
    pub remote: String,
    /// Authenticated user as logged (`-` when none).
    pub user: String,
    /// HTTP method.
    pub method: String,
    /// Request URI: path and query.
    pub uri: String,
    /// Response status.
    pub status: u16,
    /// Response size in bytes as logged (0 for `-`).
    pub bytes: u64,
    /// `User-Agent`.
    pub user_agent: String,
}

impl AccessLogEntry {
    /// The path part of the URI (without the query).
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }

    /// Parses one Apache combined-log line; `None` for anything else (e.g. structured log lines).
    pub fn parse(line: &str) -> Option<AccessLogEntry> {
        static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| {
            Regex::new(r#"^(\S+) \S+ (\S+) \[[^\]]+\] "(\S+) (\S+) [^"]+" (\d{3}) (\d+|-) "[^"]*" "([^"]*)""#)
                .expect("valid access log regex")
        });
        let c = re.captures(line)?;
        Some(AccessLogEntry {
            remote: c[1].to_string(),
            user: c[2].to_string(),
            method: c[3].to_string(),
            uri: c[4].to_string(),
            status: c[5].parse().ok()?,
            bytes: c[6].parse().unwrap_or(0),
            user_agent: c[7].to_string(),
        })
    }
}

#[derive(Default)]
struct LogState {
    access: Vec<AccessLogEntry>,
    lines: Vec<String>,
    last_line_at: Option<Instant>,
}

/// A running distribution registry; the process is killed when this is dropped.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    realm_ca_pem: Option<String>,
    client_identity: Option<Leaf>,
    log: Arc<Mutex<LogState>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url())
            .field("dir", &self.dir.path())
            .field("pid", &self.child.id())
            .finish()
    }
}

/// Picks a free TCP port on `ip` by binding port 0.
pub fn free_port(ip: IpAddr) -> Result<u16> {
    let l =
        TcpListener::bind((ip, 0)).map_err(Error::io("binding a free port on", ip.to_string()))?;
    let port = l
        .local_addr()
        .map_err(Error::io("reading bound address on", ip.to_string()))?
        .port();
    Ok(port)
}

fn yaml_str(s: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars
    serde_json::to_string(s).expect("string serializes")
}

fn htpasswd_file(users: &[User]) -> Result<String> {
    let mut out = String::new();
    for u in users {
        if u.name.contains(':') || u.name.contains('\n') {
            return Err(Error::Option {
                field: "htpasswd user",
                message: format!("user name {:?} must not contain ':' or a newline", u.name),
            });
        }
        // cost 4 (the minimum) keeps the registry's per-request bcrypt check fast in tests
        let hash = bcrypt::hash_with_result(u.password.expose(), 4).map_err(|e| Error::Option {
            field: "htpasswd password",
            message: format!("bcrypt of the password of {:?} failed: {e}", u.name),
        })?;
        out.push_str(&format!(
            "{}:{}\n",
            u.name,
            hash.format_for_version(bcrypt::Version::TwoY)
        ));
    }
    Ok(out)
}

impl Registry {
    /// Writes the config, starts `docker-registry serve`, waits until `GET /v2/` answers (any status).
    pub async fn start(opts: RegistryOptions) -> Result<Registry> {
        if !opts.ip.is_loopback() {
            return Err(Error::Option {
                field: "ip",
                message: format!(
                    "{} is not a loopback address; tests only use loopback",
                    opts.ip
                ),
            });
        }
        if !Path::new(REGISTRY_BIN).exists() {
            return Err(Error::Program {
                program: REGISTRY_BIN.into(),
                message: "not found".into(),
            });
        }
        let mut last_err = None;
        for _ in 0..3 {
            match Self::start_once(&opts).await {
                Ok(r) => return Ok(r),
                Err(e @ Error::RegistryNotReady { .. })
                    if e.to_string().contains("address already in use") =>
                {
                    last_err = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn start_once(opts: &RegistryOptions) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-registry-")
            .tempdir()
            .map_err(Error::io("creating temp dir", std::env::temp_dir()))?;
        let root = dir.path();
        let storage = root.join("storage");
        std::fs::create_dir_all(&storage).map_err(Error::io("creating", &storage))?;
        let port = free_port(opts.ip)?;
        let addr = SocketAddr::new(opts.ip, port);

        let mut cfg = String::new();
        cfg.push_str("version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n");
        cfg.push_str(&format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n",
            yaml_str(&storage.to_string_lossy())
        ));
        let secret = uuid::Uuid::new_v4().simple().to_string();
        cfg.push_str(&format!(
            "http:\n  addr: {}\n  secret: {}\n",
            yaml_str(&addr.to_string()),
            yaml_str(&secret)
        ));
        if let Some(leaf) = &opts.tls {
            let files = leaf.write_to(root, "server")?;
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&files.cert.to_string_lossy()),
                yaml_str(&files.key.to_string_lossy())
            ));
            if let Some(client_ca) = &opts.client_ca_pem {
                let p = write_file(root, "client-ca.pem", client_ca.as_bytes(), 0o644)?;
                cfg.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    yaml_str(&p.to_string_lossy())
                ));
            }
        } else if opts.client_ca_pem.is_some() {
            return Err(Error::Option {
                field: "client_ca_pem",
                message: "mTLS needs a server certificate: set RegistryOptions::tls too".into(),
            });
        }
        match &opts.auth {
            Auth::None => {}
            Auth::Htpasswd(users) => {
                let p = write_file(root, "htpasswd", htpasswd_file(users)?.as_bytes(), 0o600)?;
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                    yaml_str("testkit-registry"),
                    yaml_str(&p.to_string_lossy())
                ));
            }
            Auth::Token(t) => {
                let p = write_file(
                    root,
                    "token-roots.pem",
                    t.root_cert_bundle_pem.as_bytes(),
                    0o644,
                )?;
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n    autoredirect: false\n",
                    yaml_str(&t.realm),
                    yaml_str(&t.service),
                    yaml_str(&t.issuer),
                    yaml_str(&p.to_string_lossy())
                ));
            }
        }
        let cfg_path = write_file(root, "config.yml", cfg.as_bytes(), 0o600)?;
        let log_path = root.join("registry.log");
        let log_file =
            std::fs::File::create(&log_path).map_err(Error::io("creating", &log_path))?;
        let log_file = Arc::new(Mutex::new(log_file));

        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg_path)
            .current_dir(root)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Program {
                program: REGISTRY_BIN.into(),
                message: format!("spawn failed: {e}"),
            })?;
        let log = Arc::new(Mutex::new(LogState::default()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_log_reader(stdout, log.clone(), log_file.clone());
        spawn_log_reader(stderr, log.clone(), log_file);

        let realm_ca_pem = match &opts.auth {
            Auth::Token(t) => t.realm_ca_pem.clone(),
            _ => None,
        };
        let mut registry = Registry {
            child,
            dir,
            addr,
            tls: opts.tls.is_some(),
            ca_pem: opts.ca_pem.clone(),
            realm_ca_pem,
            client_identity: opts.client_identity.clone(),
            log,
        };
        registry.wait_ready(opts.ready_timeout).await?;
        Ok(registry)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client = self.http_client()?;
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(timeout, format!("process exited with {status}")));
            }
            match client.get(&url).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 200 || status == 401 {
                        return Ok(());
                    }
                    last = format!("unexpected status {status}");
                }
                Err(e) => last = error_chain(&e),
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn not_ready(&self, timeout: Duration, reason: String) -> Error {
        Error::RegistryNotReady {
            addr: self.addr.to_string(),
            secs: timeout.as_secs(),
            reason,
            log: self.log_text(),
        }
    }

    /// A reqwest client that trusts this registry's CA (and the realm CA) and presents the client identity
    /// when mTLS is configured. It follows no redirects.
    pub fn http_client(&self) -> Result<reqwest::Client> {
        let mut pems: Vec<&str> = Vec::new();
        pems.extend(self.ca_pem.as_deref());
        pems.extend(self.realm_ca_pem.as_deref());
        crate::tls::reqwest_client(&pems, self.client_identity.as_ref())
    }

    /// `https://ip:port` (or `http://` without TLS).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// `ip:port`, the registry host as written in image references.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that clients trust for this registry (`None` for plain http).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// PEM of the CA of the token realm, when token auth uses another CA.
    pub fn realm_ca_pem(&self) -> Option<&str> {
        self.realm_ca_pem.as_deref()
    }

    /// Client certificate testkit presents to an mTLS registry.
    pub fn client_identity(&self) -> Option<&Leaf> {
        self.client_identity.as_ref()
    }

    /// The registry's filesystem storage root (`rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where distribution keeps the bytes of a blob (`sha256:<hex>`), whether or not it exists.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let (alg, hex) = parse_digest(digest)?;
        Ok(self
            .storage_dir()
            .join("docker/registry/v2/blobs")
            .join(alg)
            .join(&hex[..2])
            .join(hex)
            .join("data"))
    }

    /// The combined stdout/stderr log file of the process.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").lines.join("\n")
    }

    /// Access-log entries parsed so far.
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        self.log.lock().expect("log lock").access.clone()
    }

    /// Waits until the log has been quiet for 200 ms (at most 5 s), then returns the access log: the registry
    /// writes an entry after the response was sent, so a client may be ahead of it.
    pub async fn access_log_settled(&self) -> Vec<AccessLogEntry> {
        let start = Instant::now();
        loop {
            let quiet = {
                let state = self.log.lock().expect("log lock");
                state
                    .last_line_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
            };
            if quiet || start.elapsed() > Duration::from_secs(5) {
                return self.access_log();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Number of requests with this method whose path (without query) equals `path`, after the log settled.
    pub async fn count_requests(&self, method: &str, path: &str) -> usize {
        self.access_log_settled()
            .await
            .iter()
            .filter(|e| e.method.eq_ignore_ascii_case(method) && e.path() == path)
            .count()
    }

    /// Number of `GET /v2/<repo>/blobs/<digest>` requests the registry answered with blob bytes (2xx): how
    /// often the blob was actually fetched (401/404 answers are not fetches; see `count_requests`).
    pub async fn blob_gets(&self, repo: &str, digest: &str) -> usize {
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.access_log_settled()
            .await
            .iter()
            .filter(|e| e.method == "GET" && e.path() == path && (200..300).contains(&e.status))
            .count()
    }

    /// Kills the process now (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn parse_digest(digest: &str) -> Result<(&str, &str)> {
    let (alg, hex) = digest.split_once(':').ok_or_else(|| Error::Option {
        field: "digest",
        message: format!("{digest:?} is not <algorithm>:<hex>"),
    })?;
    let ok_len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => 0,
    };
    if hex.len() != ok_len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::Option {
            field: "digest",
            message: format!("{digest:?} is not a sha256/sha512 digest with lowercase hex"),
        });
    }
    Ok((alg, hex))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn spawn_log_reader(
    pipe: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<LogState>>,
    file: Arc<Mutex<std::fs::File>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
            let mut state = log.lock().expect("log lock");
            if let Some(entry) = AccessLogEntry::parse(&line) {
                state.access.push(entry);
            }
            state.lines.push(line);
            state.last_line_at = Some(Instant::now());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_access_log_line() {
        let line = r#"127.0.0.1 - - [26/Nov/2026:19:30:00 +0000] "GET /v2/app/blobs/sha256:ab?x=1 HTTP/1.1" 200 1234 "" "skopeo/1.9.3""#;
        let e = AccessLogEntry::parse(line).unwrap();
        assert_eq!(e.method, "GET");
        assert_eq!(e.path(), "/v2/app/blobs/sha256:ab");
        assert_eq!(e.status, 200);
        assert_eq!(e.bytes, 1234);
        assert_eq!(e.user_agent, "skopeo/1.9.3");
    }

    #[test]
    fn structured_log_lines_are_not_access_entries() {
        assert!(
            AccessLogEntry::parse(
                r#"time="2026-11-26T19:30:00Z" level=info msg="listening on 127.0.0.1:1""#
            )
            .is_none()
        );
    }

    #[test]
    fn htpasswd_lines_are_bcrypt_2y_and_verify() {
        let text = htpasswd_file(&[User::new("alice", "s3cret")]).unwrap();
        let (name, hash) = text.trim_end().split_once(':').unwrap();
        assert_eq!(name, "alice");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
    }

    #[test]
    fn htpasswd_rejects_colon_in_user_name() {
        assert!(htpasswd_file(&[User::new("a:b", "x")]).is_err());
    }

    #[test]
    fn parse_digest_rejects_uppercase_and_traversal() {
        assert!(parse_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(parse_digest("sha256:../../x").is_err());
    }
}
