//! Origins (scheme, host, port) and safe URL rendering.
//!
//! Owns the one notion of "the same place" that every credential and trust decision in this crate
//! uses: two URLs share an origin only when scheme, lower-cased host and effective port are all
//! equal. Also owns [`redact_url`], the only way a URL may reach an error message or a log: query
//! strings (CDN signatures, SAS tokens), fragments and userinfo are always dropped. This module must
//! never render a URL with its query and never treat "same host, different port" as the same place.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// A network endpoint as trust is configured for it: lower-cased host plus explicit port.
///
/// Display renders `host:port` (`[::1]:5000` for IPv6), the form used by certs.d folders and in
/// every error message.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Builds a host:port; the host is lower-cased and IPv6 brackets are removed.
    pub fn new(host: &str, port: u16) -> Self {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Self {
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; a missing port means `default_port`.
    pub fn parse(s: &str, default_port: u16) -> Option<Self> {
        if s.is_empty() {
            return None;
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, tail) = rest.split_once(']')?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if tail.is_empty() => default_port,
                None => return None,
            };
            return Some(Self::new(host, port));
        }
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => Some(Self::new(h, p.parse().ok()?)),
            Some(_) => Some(Self::new(s, default_port)),
            None => Some(Self::new(s, default_port)),
        }
    }

    /// The lower-cased host without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP literal, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The scheme of an origin; only http and https are ever dialled.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Scheme {
    /// Plain HTTP (only for hosts configured as plain-http).
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// (scheme, host, port): the unit credentials and trust are bound to.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Origin {
    /// http or https.
    pub scheme: Scheme,
    /// Host and effective port.
    pub host: HostPort,
}

impl Origin {
    /// The origin of an http(s) URL; `None` for any other scheme or a URL without a host.
    pub fn of(url: &Url) -> Option<Self> {
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let host = match url.host()? {
            Host::Domain(d) => d.to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port_or_known_default()?;
        Some(Self {
            scheme,
            host: HostPort::new(&host, port),
        })
    }

    /// The base URL `scheme://host:port/`.
    pub fn base_url(&self) -> Url {
        let s = format!("{}://{}/", self.scheme.as_str(), self.host);
        Url::parse(&s).expect("origin renders a valid url")
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)
    }
}

/// Renders a URL for messages: scheme, host, port and path only (no userinfo, query or fragment).
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// True when a request moving from `from` to `to` must lose its `Authorization` header: any change
/// of scheme, host or port.
pub fn crosses_origin(from: &Url, to: &Url) -> bool {
    match (Origin::of(from), Origin::of(to)) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_names_ports_and_ipv6() {
        assert_eq!(
            HostPort::parse("Reg.Example.com", 443).unwrap().to_string(),
            "reg.example.com:443"
        );
        assert_eq!(
            HostPort::parse("reg:5000", 443).unwrap().to_string(),
            "reg:5000"
        );
        assert_eq!(
            HostPort::parse("[::1]:5000", 443).unwrap().to_string(),
            "[::1]:5000"
        );
        assert_eq!(HostPort::parse("[::1]", 443).unwrap().port(), 443);
        assert!(HostPort::parse("reg:notaport", 443).is_none());
        assert!(HostPort::parse("", 443).is_none());
    }

    #[test]
    fn redact_url_drops_query_userinfo_and_fragment() {
        let u = Url::parse("https://user:pw@cdn.example:8443/blob/x?sig=SECRET&se=1#frag").unwrap();
        let r = redact_url(&u);
        assert_eq!(r, "https://cdn.example:8443/blob/x");
        assert!(!r.contains("SECRET"));
        assert!(!r.contains("pw"));
    }

    #[test]
    fn origin_change_detected_on_scheme_host_or_port() {
        let base = Url::parse("https://reg.example:5000/v2/a").unwrap();
        for (to, crosses) in [
            ("https://reg.example:5000/v2/b", false),
            ("https://REG.example:5000/other?x=1", false),
            ("http://reg.example:5000/v2/b", true),
            ("https://reg.example:5001/v2/b", true),
            ("https://reg.example/v2/b", true),
            ("https://cdn.example:5000/v2/b", true),
            ("https://reg.example.evil.io:5000/v2/b", true),
            ("ftp://reg.example:5000/v2/b", true),
        ] {
            assert_eq!(
                crosses_origin(&base, &Url::parse(to).unwrap()),
                crosses,
                "{to}"
            );
        }
        // the default port is the effective port
        assert!(!crosses_origin(
            &Url::parse("https://r.example/").unwrap(),
            &Url::parse("https://r.example:443/").unwrap()
        ));
    }
}
