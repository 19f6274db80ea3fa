//! Parser for containerd's `hosts.toml` (plus berth's `send_credentials` extension).
//!
//! Owns turning the text of one `hosts.toml` into [`HostsFile`]: the `[host."<url>"]` entries in
//! file order and the top-level server entry, with paths made absolute against the file's folder,
//! capabilities checked, and every problem reported with file, line, column and dotted field. It
//! uses the `toml` crate's span-preserving `DeTable` (file order comes from key spans, so the
//! workspace-wide `toml` map type does not matter). It must never read the files the configuration
//! points at (that is the loader's job), never echo a header value (they may be tokens), and never
//! invent an http fallback: an `http://` URL is plain http, anything else is https.
//!
//! Go's `time.ParseDuration` grammar for `dial_timeout` is written by hand here: no maintained
//! crate parses exactly Go's syntax (`1.5s`, `1m30s`, `300ms`, `2us`/`2µs`).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use registry::{HostPort, Scheme};
use toml::Spanned;
use toml::de::{DeTable, DeValue};
use url::Url;

use crate::error::HostsError;
use crate::model::{Capabilities, ClientPair, Headers};

/// A parsed endpoint URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryUrl {
    /// `scheme://host:port<path>`.
    pub url: Url,
    /// http or https.
    pub scheme: Scheme,
    /// Host and effective port.
    pub host: HostPort,
    /// API root path.
    pub path: String,
}

/// One `[host."<url>"]` entry or the top-level server settings, before defaults are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// The endpoint; `None` for a server entry without `server = ...` (the namespace host).
    pub url: Option<EntryUrl>,
    /// `capabilities`, or all when absent.
    pub capabilities: Capabilities,
    /// `ca`, absolute.
    pub ca_files: Vec<PathBuf>,
    /// (line, column) of each `ca` path, parallel to `ca_files` (empty for certs.d folders).
    pub ca_positions: Vec<(usize, usize)>,
    /// `client`, absolute.
    pub client_pairs: Vec<ClientPair>,
    /// (line, column) of each `client` entry, parallel to `client_pairs`.
    pub client_positions: Vec<(usize, usize)>,
    /// `skip_verify`.
    pub skip_verify: bool,
    /// `[header]`.
    pub headers: Headers,
    /// `override_path`.
    pub override_path: bool,
    /// `dial_timeout`.
    pub dial_timeout: Option<Duration>,
    /// `proxy`.
    pub proxy: Option<Url>,
    /// `send_credentials` (berth extension); `None` means the default rule.
    pub send_credentials: Option<bool>,
    /// 1-based line where the entry starts (the table header, or 1 for the top level).
    pub line: usize,
    /// The dotted field prefix as written (`host."https://mirror"`; empty for the top level).
    pub field: String,
}

/// A parsed `hosts.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsFile {
    /// The file.
    pub path: PathBuf,
    /// `[host."..."]` entries in file order.
    pub hosts: Vec<HostEntry>,
    /// The top-level (server) entry, tried last.
    pub server: HostEntry,
    /// Non-fatal findings (unknown keys, TLS settings on a plain-http host).
    pub warnings: Vec<String>,
}

struct Ctx<'a> {
    path: &'a Path,
    src: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = &self.src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn err(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> HostsError {
        let (line, column) = self.line_col(span.start);
        HostsError::Field {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn warn(&self, span: std::ops::Range<usize>, field: &str, message: &str) -> String {
        let (line, column) = self.line_col(span.start);
        format!(
            "{} line {line} column {column}: {field}: {message}",
            self.path.display()
        )
    }

    fn abs(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    v.type_str()
}

fn expect_str<'v>(
    ctx: &Ctx<'_>,
    v: &'v Spanned<DeValue<'_>>,
    field: &str,
    what: &str,
) -> Result<&'v str, HostsError> {
    v.get_ref().as_str().ok_or_else(|| {
        ctx.err(
            v.span(),
            field,
            format!("expected {what}, found {}", type_name(v.get_ref())),
        )
    })
}

fn expect_bool(ctx: &Ctx<'_>, v: &Spanned<DeValue<'_>>, field: &str) -> Result<bool, HostsError> {
    v.get_ref().as_bool().ok_or_else(|| {
        ctx.err(
            v.span(),
            field,
            format!(
                "expected a boolean (true or false), found {}",
                type_name(v.get_ref())
            ),
        )
    })
}

fn path_value(ctx: &Ctx<'_>, v: &Spanned<DeValue<'_>>, field: &str) -> Result<PathBuf, HostsError> {
    let s = expect_str(ctx, v, field, "a file path string")?;
    if s.is_empty() {
        return Err(ctx.err(
            v.span(),
            field,
            "empty file path; remove the entry or name a file",
        ));
    }
    Ok(ctx.abs(s))
}

/// Cleans a URL path the way Go's `path.Clean` does, with "/" and "" both meaning "no path".
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

/// Parses an endpoint URL as containerd does: no scheme means https; the API root gets `/v2`
/// appended unless it already ends in `/v2` or `override_path` is set.
pub fn parse_endpoint_url(raw: &str, override_path: bool) -> Result<EntryUrl, String> {
    let lower = raw.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("http://") || lower.starts_with("https://") {
        raw.to_string()
    } else if let Some((scheme, _)) = raw.split_once("://") {
        return Err(format!(
            "unsupported scheme {scheme:?}; use https:// (or http:// for a plain-http registry)"
        ));
    } else {
        format!("https://{raw}")
    };
    let u = Url::parse(&with_scheme).map_err(|e| format!("invalid url: {e}"))?;
    let scheme = match u.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => {
            return Err(format!(
                "unsupported scheme {other:?}; use https:// (or http:// for a plain-http registry)"
            ));
        }
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "the url carries user information; remove it (credentials come from pull secrets, never from hosts.toml)"
                .to_string(),
        );
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(
            "the url carries a query or fragment; write scheme://host[:port][/path] only"
                .to_string(),
        );
    }
    let host_str = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "the url has no host".to_string())?;
    let port = u
        .port_or_known_default()
        .ok_or_else(|| "the url has no port".to_string())?;
    let host = HostPort::new(host_str, port);
    let mut path = clean_path(u.path());
    if path.is_empty() {
        if !override_path {
            path = "/v2".to_string();
        }
    } else if !path.ends_with("/v2") && !override_path {
        path.push_str("/v2");
    }
    let mut url = Url::parse(&format!("{}://{}", scheme.as_str(), host))
        .map_err(|e| format!("invalid url: {e}"))?;
    url.set_path(&path);
    Ok(EntryUrl {
        url,
        scheme,
        host,
        path,
    })
}

/// Parses a Go `time.ParseDuration` string.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let bad = || format!("invalid duration {orig:?}; write e.g. \"3s\", \"500ms\" or \"1m30s\"");
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!(
            "negative duration {orig:?}; write a positive duration such as \"3s\""
        ));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1f64,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += num * nanos_per;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

const KNOWN_KEYS: &[&str] = &[
    "capabilities",
    "ca",
    "client",
    "skip_verify",
    "header",
    "override_path",
    "dial_timeout",
    "proxy",
    "send_credentials",
];

fn parse_entry(
    ctx: &Ctx<'_>,
    table: &DeTable<'_>,
    prefix: &str,
    url_raw: Option<(&str, std::ops::Range<usize>)>,
    line: usize,
    top_level: bool,
    warnings: &mut Vec<String>,
) -> Result<HostEntry, HostsError> {
    let field = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let mut entry = HostEntry {
        url: None,
        capabilities: Capabilities::ALL,
        ca_files: Vec::new(),
        ca_positions: Vec::new(),
        client_pairs: Vec::new(),
        client_positions: Vec::new(),
        skip_verify: false,
        headers: Headers::default(),
        override_path: false,
        dial_timeout: None,
        proxy: None,
        send_credentials: None,
        line,
        field: prefix.to_string(),
    };
    // override_path first: it changes how the URL is read
    if let Some(v) = table.get("override_path") {
        entry.override_path = expect_bool(ctx, v, &field("override_path"))?;
    }
    for (k, v) in table.iter() {
        let key: &str = k.get_ref();
        let f = field(key);
        match key {
            "override_path" => {}
            "capabilities" => {
                let arr = v.get_ref().as_array().ok_or_else(|| {
                    ctx.err(
                        v.span(),
                        &f,
                        format!(
                            "expected an array of strings such as [\"pull\", \"resolve\"], found {}",
                            type_name(v.get_ref())
                        ),
                    )
                })?;
                if !arr.is_empty() {
                    let mut caps = Capabilities::NONE;
                    for item in arr.iter() {
                        let name = expect_str(ctx, item, &f, "a capability name")?;
                        let c = Capabilities::parse(name).ok_or_else(|| {
                            ctx.err(
                                item.span(),
                                &f,
                                format!(
                                    "unknown capability {name:?} (expected pull, resolve, push, referrers)"
                                ),
                            )
                        })?;
                        caps = caps.union(c);
                    }
                    entry.capabilities = caps;
                }
            }
            "ca" => match v.get_ref() {
                DeValue::String(_) => {
                    entry.ca_files.push(path_value(ctx, v, &f)?);
                    entry.ca_positions.push(ctx.line_col(v.span().start));
                }
                DeValue::Array(arr) => {
                    for item in arr.iter() {
                        entry.ca_files.push(path_value(ctx, item, &f)?);
                        entry.ca_positions.push(ctx.line_col(item.span().start));
                    }
                }
                other => {
                    return Err(ctx.err(
                        v.span(),
                        &f,
                        format!(
                            "expected a file path or an array of file paths, found {}",
                            type_name(other)
                        ),
                    ));
                }
            },
            "client" => match v.get_ref() {
                DeValue::String(_) => {
                    entry.client_pairs.push(ClientPair {
                        cert: path_value(ctx, v, &f)?,
                        key: None,
                    });
                    entry.client_positions.push(ctx.line_col(v.span().start));
                }
                DeValue::Array(arr) => {
                    for item in arr.iter() {
                        entry.client_positions.push(ctx.line_col(item.span().start));
                        match item.get_ref() {
                            DeValue::String(_) => entry.client_pairs.push(ClientPair {
                                cert: path_value(ctx, item, &f)?,
                                key: None,
                            }),
                            DeValue::Array(pair) => {
                                if pair.len() != 2 {
                                    return Err(ctx.err(
                                        item.span(),
                                        &f,
                                        format!(
                                            "invalid pair with {} elements; write [\"client.cert\", \"client.key\"] (key \"\" when the cert file holds the key)",
                                            pair.len()
                                        ),
                                    ));
                                }
                                let cert = path_value(ctx, &pair[0], &f)?;
                                let key_s =
                                    expect_str(ctx, &pair[1], &f, "a key file path string")?;
                                let key = if key_s.is_empty() {
                                    None
                                } else {
                                    Some(ctx.abs(key_s))
                                };
                                entry.client_pairs.push(ClientPair { cert, key });
                            }
                            other => {
                                return Err(ctx.err(
                                    item.span(),
                                    &f,
                                    format!(
                                        "expected a file path or a [cert, key] pair, found {}",
                                        type_name(other)
                                    ),
                                ));
                            }
                        }
                    }
                }
                other => {
                    return Err(ctx.err(
                        v.span(),
                        &f,
                        format!(
                            "expected a file path, an array of paths or [cert, key] pairs, found {}",
                            type_name(other)
                        ),
                    ));
                }
            },
            "skip_verify" => entry.skip_verify = expect_bool(ctx, v, &f)?,
            "send_credentials" => entry.send_credentials = Some(expect_bool(ctx, v, &f)?),
            "header" => {
                let t = v.get_ref().as_table().ok_or_else(|| {
                    ctx.err(
                        v.span(),
                        &f,
                        format!(
                            "expected a table of header names, found {}",
                            type_name(v.get_ref())
                        ),
                    )
                })?;
                let mut names: Vec<_> = t.iter().collect();
                names.sort_by_key(|(k, _)| k.span().start);
                for (hk, hv) in names {
                    let name: &str = hk.get_ref();
                    let hf = format!("{f}.{name}");
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(ctx.err(hk.span(), &hf, "invalid header name"));
                    }
                    let values = match hv.get_ref() {
                        DeValue::String(s) => vec![s.to_string()],
                        DeValue::Array(arr) => {
                            let mut out = Vec::new();
                            for item in arr.iter() {
                                out.push(
                                    expect_str(ctx, item, &hf, "a string header value")?
                                        .to_string(),
                                );
                            }
                            out
                        }
                        other => {
                            return Err(ctx.err(
                                hv.span(),
                                &hf,
                                format!(
                                    "expected a string or an array of strings, found {}",
                                    type_name(other)
                                ),
                            ));
                        }
                    };
                    for val in &values {
                        if http::HeaderValue::from_str(val).is_err() {
                            return Err(ctx.err(
                                hv.span(),
                                &hf,
                                "header value holds characters not allowed in http headers (control characters or newlines)",
                            ));
                        }
                    }
                    entry.headers.push(name.to_string(), values);
                }
            }
            "dial_timeout" => {
                let s = expect_str(ctx, v, &f, "a duration string such as \"3s\"")?;
                entry.dial_timeout =
                    Some(parse_go_duration(s).map_err(|m| ctx.err(v.span(), &f, m))?);
            }
            "proxy" => {
                let s = expect_str(ctx, v, &f, "a proxy url string")?;
                entry.proxy = Some(parse_proxy(s).map_err(|m| ctx.err(v.span(), &f, m))?);
            }
            "server" if top_level => {}
            "host" if top_level => {}
            _ => {
                if !KNOWN_KEYS.contains(&key) {
                    warnings.push(ctx.warn(
                        k.span(),
                        &f,
                        "unknown key ignored (known: server, host, capabilities, ca, client, skip_verify, header, override_path, dial_timeout, proxy, send_credentials)",
                    ));
                }
            }
        }
    }
    if let Some((raw, span)) = url_raw {
        let u = parse_endpoint_url(raw, entry.override_path)
            .map_err(|m| ctx.err(span.clone(), if top_level { "server" } else { prefix }, m))?;
        if u.scheme == Scheme::Http {
            let label = if top_level {
                "server".to_string()
            } else {
                prefix.to_string()
            };
            if entry.send_credentials == Some(true) {
                return Err(ctx.err(
                    span,
                    &label,
                    "send_credentials = true is not allowed for a plain-http endpoint (credentials are never sent over http); use https://",
                ));
            }
            if !entry.ca_files.is_empty() || !entry.client_pairs.is_empty() || entry.skip_verify {
                warnings.push(ctx.warn(
                    span,
                    &label,
                    "ca, client and skip_verify are ignored for a plain-http endpoint (berth never tries https then http); write https:// to use them",
                ));
            }
        }
        entry.url = Some(u);
    }
    Ok(entry)
}

fn parse_proxy(s: &str) -> Result<Url, String> {
    let u = Url::parse(s)
        .map_err(|e| format!("invalid proxy url: {e}; write e.g. \"http://proxy:8080\""))?;
    if !matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") {
        return Err(format!(
            "unsupported proxy scheme {:?}; use http, https, socks5 or socks5h",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("proxy url has no host".to_string());
    }
    if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() || u.fragment().is_some() {
        return Err("proxy url must not have a path, query or fragment".to_string());
    }
    Ok(u)
}

/// Parses the text of `path` (a `hosts.toml`); relative paths are taken against its folder.
pub fn parse_hosts_toml(path: &Path, src: &str) -> Result<HostsFile, HostsError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { path, src, base };
    let root = DeTable::parse(src).map_err(|e| {
        let (line, column) = ctx.line_col(e.span().map(|s| s.start).unwrap_or(0));
        HostsError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let root = root.get_ref();
    let mut warnings = Vec::new();

    let server_raw = match root.get("server") {
        Some(v) => Some((expect_str(&ctx, v, "server", "a url string")?, v.span())),
        None => None,
    };
    let server = parse_entry(&ctx, root, "", server_raw, 1, true, &mut warnings)?;

    let mut hosts = Vec::new();
    if let Some(h) = root.get("host") {
        let t = h.get_ref().as_table().ok_or_else(|| {
            ctx.err(
                h.span(),
                "host",
                format!(
                    "expected tables [host.\"https://mirror.example\"], found {}",
                    type_name(h.get_ref())
                ),
            )
        })?;
        let mut entries: Vec<_> = t.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (k, v) in entries {
            let url: &str = k.get_ref();
            let prefix = format!("host.{:?}", url);
            let table = v.get_ref().as_table().ok_or_else(|| {
                ctx.err(
                    v.span(),
                    &prefix,
                    format!("expected a table, found {}", type_name(v.get_ref())),
                )
            })?;
            let (line, _) = ctx.line_col(k.span().start);
            hosts.push(parse_entry(
                &ctx,
                table,
                &prefix,
                Some((url, k.span())),
                line,
                false,
                &mut warnings,
            )?);
        }
    }
    Ok(HostsFile {
        path: path.to_path_buf(),
        hosts,
        server,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// containerd `TestParseHostFile`, ported as data.
    const CONTAINERD_TEST_TOML: &str = r#"
server = "https://test-default.registry"
ca = "/etc/path/default"
[header]
  x-custom-1 = "custom header"

[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push", "referrers"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "/etc/certs/client.pem"

[host."https://test-3.registry"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]

[host."https://no-referrers.registry"]
  capabilities = ["pull", "resolve", "push"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]

[host."https://noncompliantmirror.registry/v2/namespaceprefix"]
  capabilities = ["pull"]
  override_path = true

[host."https://noprefixnoncompliant.registry"]
  override_path = true

[host."https://onlyheader.registry".header]
  x-custom-1 = "justaheader"

[host."https://dial-timeout.registry"]
  dial_timeout = "3s"
"#;

    #[test]
    fn containerd_parse_host_file_table_matches() {
        let f = parse_hosts_toml(
            Path::new("/etc/berth/certs.d/x/hosts.toml"),
            CONTAINERD_TEST_TOML,
        )
        .unwrap();
        let pull = Capabilities::PULL;
        let all = Capabilities::ALL;
        let no_ref = Capabilities::PULL
            .union(Capabilities::RESOLVE)
            .union(Capabilities::PUSH);
        // (scheme, host:port, path, caps, ca, client pairs, skip_verify, headers, dial timeout)
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            Capabilities,
            Vec<&'static str>,
            Vec<(&'static str, Option<&'static str>)>,
            bool,
            Vec<(&'static str, Vec<&'static str>)>,
            Option<Duration>,
        );
        let expected: Vec<Row> = vec![
            (
                "https",
                "mirror.registry:443",
                "/v2",
                pull,
                vec!["/etc/certs/mirror.pem"],
                vec![],
                false,
                vec![("x-custom-2", vec!["value1", "value2"])],
                None,
            ),
            (
                "https",
                "mirror-bak.registry:443",
                "/us/v2",
                pull,
                vec![],
                vec![],
                true,
                vec![],
                None,
            ),
            (
                "http",
                "mirror.registry:80",
                "/v2",
                pull,
                vec![],
                vec![],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "test-1.registry:443",
                "/v2",
                all,
                vec!["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"],
                vec![
                    ("/etc/certs/client.cert", Some("/etc/certs/client.key")),
                    ("/etc/certs/client.pem", None),
                ],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "test-2.registry:443",
                "/v2",
                all,
                vec![],
                vec![("/etc/certs/client.pem", None)],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "test-3.registry:443",
                "/v2",
                all,
                vec![],
                vec![
                    ("/etc/certs/client-1.pem", None),
                    ("/etc/certs/client-2.pem", None),
                ],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "no-referrers.registry:443",
                "/v2",
                no_ref,
                vec![],
                vec![
                    ("/etc/certs/client-1.pem", None),
                    ("/etc/certs/client-2.pem", None),
                ],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "noncompliantmirror.registry:443",
                "/v2/namespaceprefix",
                pull,
                vec![],
                vec![],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "noprefixnoncompliant.registry:443",
                "",
                all,
                vec![],
                vec![],
                false,
                vec![],
                None,
            ),
            (
                "https",
                "onlyheader.registry:443",
                "/v2",
                all,
                vec![],
                vec![],
                false,
                vec![("x-custom-1", vec!["justaheader"])],
                None,
            ),
            (
                "https",
                "dial-timeout.registry:443",
                "/v2",
                all,
                vec![],
                vec![],
                false,
                vec![],
                Some(Duration::from_secs(3)),
            ),
            (
                "https",
                "test-default.registry:443",
                "/v2",
                all,
                vec!["/etc/path/default"],
                vec![],
                false,
                vec![("x-custom-1", vec!["custom header"])],
                None,
            ),
        ];
        let mut got: Vec<&HostEntry> = f.hosts.iter().collect();
        got.push(&f.server);
        assert_eq!(got.len(), expected.len());
        for (i, (e, g)) in expected.iter().zip(got).enumerate() {
            let u = g.url.as_ref().unwrap();
            assert_eq!(u.scheme.as_str(), e.0, "row {i}");
            assert_eq!(u.host.to_string(), e.1, "row {i}");
            assert_eq!(u.path, e.2, "row {i}");
            assert_eq!(g.capabilities, e.3, "row {i}");
            assert_eq!(
                g.ca_files,
                e.4.iter().map(|s| p(s)).collect::<Vec<_>>(),
                "row {i}"
            );
            let pairs: Vec<ClientPair> =
                e.5.iter()
                    .map(|(c, k)| ClientPair {
                        cert: p(c),
                        key: k.map(p),
                    })
                    .collect();
            assert_eq!(g.client_pairs, pairs, "row {i}");
            assert_eq!(g.skip_verify, e.6, "row {i}");
            let headers: Vec<(&str, Vec<&str>)> = g
                .headers
                .iter()
                .map(|(n, v)| (n, v.iter().map(String::as_str).collect()))
                .collect();
            assert_eq!(headers, e.7, "row {i}");
            assert_eq!(g.dial_timeout, e.8, "row {i}");
        }
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    }

    #[test]
    fn host_entries_keep_file_order_not_alphabetical() {
        let src = "[host.\"https://zzz.example\"]\n[host.\"https://aaa.example\"]\n[host.\"https://mmm.example\"]\n";
        let f = parse_hosts_toml(Path::new("/d/h/hosts.toml"), src).unwrap();
        let order: Vec<String> = f
            .hosts
            .iter()
            .map(|h| h.url.as_ref().unwrap().host.host().to_string())
            .collect();
        assert_eq!(order, ["zzz.example", "aaa.example", "mmm.example"]);
        assert_eq!(f.hosts[1].line, 2);
    }

    #[test]
    fn relative_paths_are_relative_to_the_hosts_toml_folder() {
        let src = "ca = \"docker-mirror.crt\"\nclient = [[\"c/client.cert\", \"c/client.key\"]]\n[host.\"https://m\"]\nca = [\"../shared/ca.pem\", \"/abs/ca.pem\"]\n";
        let f =
            parse_hosts_toml(Path::new("/etc/berth/certs.d/docker.io/hosts.toml"), src).unwrap();
        assert_eq!(
            f.server.ca_files,
            [p("/etc/berth/certs.d/docker.io/docker-mirror.crt")]
        );
        assert_eq!(
            f.server.client_pairs,
            [ClientPair {
                cert: p("/etc/berth/certs.d/docker.io/c/client.cert"),
                key: Some(p("/etc/berth/certs.d/docker.io/c/client.key"))
            }]
        );
        assert_eq!(
            f.hosts[0].ca_files,
            [
                p("/etc/berth/certs.d/docker.io/../shared/ca.pem"),
                p("/abs/ca.pem")
            ]
        );
    }

    #[test]
    fn unknown_capability_names_file_line_column_and_field() {
        let src = "server = \"https://reg:5000\"\n\n[host.\"https://mirror\"]\n  capabilities = [\"pull\", \"pul\"]\n";
        let path = Path::new("/etc/berth/certs.d/reg:5000/hosts.toml");
        let e = parse_hosts_toml(path, src).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/berth/certs.d/reg:5000/hosts.toml line 4 column 27: host.\"https://mirror\".capabilities: unknown capability \"pul\" (expected pull, resolve, push, referrers)"
        );
    }

    #[test]
    fn malformed_values_are_reported_with_their_field() {
        let path = Path::new("/h/reg/hosts.toml");
        for (src, line, field, needle) in [
            (
                "skip_verify = \"yes\"\n",
                1,
                "skip_verify",
                "expected a boolean",
            ),
            (
                "\n[host.\"https://m\"]\nca = 5\n",
                3,
                "host.\"https://m\".ca",
                "expected a file path",
            ),
            (
                "[host.\"https://m\"]\nclient = [[\"a\", \"b\", \"c\"]]\n",
                2,
                "host.\"https://m\".client",
                "invalid pair with 3 elements",
            ),
            (
                "[host.\"https://m\"]\ndial_timeout = \"3 seconds\"\n",
                2,
                "host.\"https://m\".dial_timeout",
                "invalid duration",
            ),
            (
                "[host.\"https://m\".header]\nx-a = 1\n",
                2,
                "host.\"https://m\".header.x-a",
                "expected a string or an array",
            ),
            (
                "[host.\"ftp://m\"]\n",
                1,
                "host.\"ftp://m\"",
                "unsupported scheme",
            ),
            (
                "server = \"https://user:pw@reg\"\n",
                1,
                "server",
                "user information",
            ),
            (
                "capabilities = \"pull\"\n",
                1,
                "capabilities",
                "expected an array",
            ),
            (
                "[host.\"http://m:5000\"]\nsend_credentials = true\n",
                1,
                "host.\"http://m:5000\"",
                "never sent over http",
            ),
            (
                "proxy = \"ftp://p\"\n",
                1,
                "proxy",
                "unsupported proxy scheme",
            ),
        ] {
            let e = parse_hosts_toml(path, src).unwrap_err();
            match &e {
                HostsError::Field {
                    line: l,
                    field: f,
                    message,
                    ..
                } => {
                    assert_eq!((*l, f.as_str()), (line, field), "{src}: {e}");
                    assert!(message.contains(needle), "{src}: {e}");
                }
                other => panic!("{src}: unexpected {other:?}"),
            }
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    #[test]
    fn invalid_toml_is_a_syntax_error_with_position() {
        let e = parse_hosts_toml(
            Path::new("/h/r/hosts.toml"),
            "server = \"https://r\"\n[host.\"https://m\"\ncapabilities = [\"pull\"]\n",
        )
        .unwrap_err();
        match &e {
            HostsError::Syntax { line, .. } => assert_eq!(*line, 2, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string().starts_with("/h/r/hosts.toml line 2 column "),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_warn_and_plain_http_tls_settings_warn() {
        let src = "skip_verfy = true\n[host.\"http://192.168.31.250:5000\"]\ncapabilities = [\"pull\", \"resolve\", \"push\"]\nskip_verify = true\n";
        let f = parse_hosts_toml(Path::new("/h/docker.io/hosts.toml"), src).unwrap();
        assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
        assert!(
            f.warnings[0].contains("line 1 column 1: skip_verfy: unknown key"),
            "{:?}",
            f.warnings
        );
        assert!(
            f.warnings[1].contains("ignored for a plain-http endpoint"),
            "{:?}",
            f.warnings
        );
        let h = &f.hosts[0];
        assert_eq!(h.url.as_ref().unwrap().scheme, Scheme::Http);
    }

    #[test]
    fn endpoint_url_rules_match_containerd() {
        for (raw, over, want) in [
            ("reg.example", false, "https://reg.example/v2"),
            ("reg.example:5000", false, "https://reg.example:5000/v2"),
            (
                "http://reg.example:5000",
                false,
                "http://reg.example:5000/v2",
            ),
            ("https://reg.example/", false, "https://reg.example/v2"),
            ("https://reg.example/v2", false, "https://reg.example/v2"),
            (
                "https://reg.example/a/../b/",
                false,
                "https://reg.example/b/v2",
            ),
            (
                "https://reg.example/custom",
                true,
                "https://reg.example/custom",
            ),
            ("https://[::1]:5000", false, "https://[::1]:5000/v2"),
            ("HTTPS://Reg.Example:443", false, "https://reg.example/v2"),
        ] {
            let u = parse_endpoint_url(raw, over).unwrap();
            assert_eq!(u.url.as_str(), want, "{raw}");
        }
        assert_eq!(
            parse_endpoint_url("https://[::1]:5000", false)
                .unwrap()
                .host
                .to_string(),
            "[::1]:5000"
        );
    }

    #[test]
    fn go_durations_parse() {
        for (s, ns) in [
            ("3s", 3_000_000_000u64),
            ("300ms", 300_000_000),
            ("1.5s", 1_500_000_000),
            ("1m30s", 90_000_000_000),
            ("2us", 2_000),
            ("2µs", 2_000),
            ("1h", 3_600_000_000_000),
            ("0", 0),
        ] {
            assert_eq!(
                parse_go_duration(s).unwrap(),
                Duration::from_nanos(ns),
                "{s}"
            );
        }
        for s in ["", "3", "s", "3 s", "-1s", "1d", "1.2.3s"] {
            assert!(parse_go_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn header_values_never_appear_in_debug() {
        let src = "[host.\"https://m\".header]\nAuthorization = \"Bearer SECRET-TOKEN\"\n";
        let f = parse_hosts_toml(Path::new("/h/r/hosts.toml"), src).unwrap();
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("SECRET-TOKEN"), "{dbg}");
        assert!(dbg.contains("Authorization"));
        assert_eq!(
            f.hosts[0].headers.get("authorization").unwrap(),
            ["Bearer SECRET-TOKEN"]
        );
    }
}
