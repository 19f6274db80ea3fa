//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1 / RFC 7235 challenges).
//!
//! Owns turning header values into [`Challenge`]s: several challenges per header and several
//! headers, case-insensitive schemes and parameter names, quoted values with backslash escapes,
//! empty values (`empty=""`) and token68 credentials. Written by hand because no maintained crate
//! parses multi-challenge headers with the leniency registries need (the `headers` crate handles
//! one scheme per header, `www-authenticate` is unmaintained). This module is pure and total: it
//! never fails or panics on hostile input (it is a fuzz target) and never makes a decision about
//! which challenge to answer.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Challenge {
    /// The scheme, lower-cased (`bearer`, `basic`, ...).
    pub scheme: String,
    /// Parameters with lower-cased names; the first occurrence of a name wins.
    pub params: BTreeMap<String, String>,
    /// A token68 value (`Negotiate abc==`), when the challenge carries one.
    pub token68: Option<String>,
}

impl Challenge {
    /// A parameter by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// True for the `bearer` scheme.
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// True for the `basic` scheme.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    /// A quoted-string starting at `"`; backslash escapes the next byte; an unterminated string
    /// runs to the end of input.
    fn quoted(&mut self) -> String {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses one `WWW-Authenticate` header value into its challenges (possibly several, possibly none).
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        // between challenges: whitespace and empty list elements
        while matches!(c.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            c.pos += 1;
        }
        let Some(b) = c.peek() else { break };
        let scheme = c.take_while(is_tchar);
        if scheme.is_empty() {
            // garbage (a stray quote, '=' ...): skip it, quoted strings whole
            if b == b'"' {
                c.quoted();
            } else {
                c.pos += 1;
            }
            continue;
        }
        let mut ch = Challenge {
            scheme: text(scheme).to_ascii_lowercase(),
            ..Challenge::default()
        };
        parse_params(&mut c, &mut ch);
        out.push(ch);
    }
    out
}

/// Parses the auth-params (or token68) following a scheme; stops before the next challenge.
fn parse_params(c: &mut Cursor<'_>, ch: &mut Challenge) {
    // a scheme must be followed by whitespace to carry parameters
    if !matches!(c.peek(), Some(b' ' | b'\t')) {
        return;
    }
    c.skip_ws();
    // token68 (`scheme abc==`) or a lone empty parameter (`scheme key=`)
    let save = c.pos;
    let t = c.take_while(is_token68_char);
    let eq = c.take_while(|b| b == b'=');
    c.skip_ws();
    if !t.is_empty() && matches!(c.peek(), None | Some(b',')) {
        if eq.len() == 1 && t.iter().all(|&b| is_tchar(b)) {
            ch.params.entry(text(t).to_ascii_lowercase()).or_default();
        } else {
            ch.token68 = Some(format!("{}{}", text(t), text(eq)));
        }
        return;
    }
    c.pos = save;
    loop {
        let save = c.pos;
        c.skip_ws();
        match c.peek() {
            None => return,
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            _ => {}
        }
        let name = c.take_while(is_tchar);
        if name.is_empty() {
            // not a parameter and not a scheme: skip the byte (or quoted string) and go on
            if c.peek() == Some(b'"') {
                c.quoted();
            } else {
                c.pos += 1;
            }
            continue;
        }
        c.skip_ws();
        if c.peek() != Some(b'=') {
            // `name` followed by something other than '=': the next challenge's scheme
            c.pos = save;
            return;
        }
        c.pos += 1;
        c.skip_ws();
        let value = match c.peek() {
            Some(b'"') => c.quoted(),
            // lenient unquoted value: up to the next comma or whitespace (realm URLs sent unquoted)
            _ => text(c.take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n'))),
        };
        ch.params
            .entry(text(name).to_ascii_lowercase())
            .or_insert(value);
    }
}

/// Parses every `WWW-Authenticate` header of a response, in header order.
pub fn parse_headers(headers: &http::HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .flat_map(|v| parse_www_authenticate(&String::from_utf8_lossy(v.as_bytes())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn bearer(pairs: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: "bearer".into(),
            params: params(pairs),
            token68: None,
        }
    }

    /// containerd remotes/docker/auth/parse_test.go TestParseAuthHeaderBearer rows.
    #[test]
    fn containerd_bearer_rows_parse_realm_service_scope() {
        for (realm, service, scope) in [
            (
                "https://auth.docker.io/token",
                "registry.docker.io",
                "repository:foo/bar:pull,push",
            ),
            (
                "https://auth.docker.io/token",
                "registry.docker.io",
                "repository:foo/bar:pull,push repository:foo/baz:pull repository:foo/foo:push",
            ),
        ] {
            let v = format!(r#"Bearer realm="{realm}",service="{service}",scope="{scope}""#);
            assert_eq!(
                parse_www_authenticate(&v),
                vec![bearer(&[
                    ("realm", realm),
                    ("service", service),
                    ("scope", scope)
                ])]
            );
        }
    }

    /// containerd TestParseAuthHeader: `empty=""` is kept as an empty value.
    #[test]
    fn containerd_empty_quoted_value_is_kept() {
        let v = r#"Bearer realm="https://auth.example.io/token",empty="",service="registry.example.io",scope="repository:library/hello-world:pull,push""#;
        let c = parse_www_authenticate(v);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("empty"), Some(""));
        assert_eq!(c[0].param("service"), Some("registry.example.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/hello-world:pull,push")
        );
    }

    /// distribution authchallenge_test.go TestAuthChallengeParse: unquoted token values and
    /// backslash escapes in quoted values.
    #[test]
    fn distribution_unquoted_and_escaped_values() {
        let v = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",other=fun,slashed="he\"\l\lo""#;
        let c = parse_www_authenticate(v);
        assert_eq!(
            c,
            vec![bearer(&[
                ("realm", "https://auth.example.com/token"),
                ("service", "registry.example.com"),
                ("other", "fun"),
                ("slashed", "he\"llo"),
            ])]
        );
    }

    /// distribution TestFilteringManager: two headers, each a challenge, both kept in order.
    #[test]
    fn distribution_two_headers_yield_two_challenges() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::WWW_AUTHENTICATE,
            r#"Bearer realm="https://auth.example.com/token",service="keep.example.com""#
                .parse()
                .unwrap(),
        );
        h.append(
            http::header::WWW_AUTHENTICATE,
            r#"Bearer realm="https://evil.example.net/token",service="drop.example.net""#
                .parse()
                .unwrap(),
        );
        let c = parse_headers(&h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("service"), Some("keep.example.com"));
        assert_eq!(c[1].param("service"), Some("drop.example.net"));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let v = r#"Basic realm="Registry Realm", Bearer realm="https://a/token",service="s",scope="repository:x:pull""#;
        let c = parse_www_authenticate(v);
        assert_eq!(c.len(), 2);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("scope"), Some("repository:x:pull"));
    }

    #[test]
    fn schemes_and_names_are_case_insensitive() {
        let c = parse_www_authenticate(r#"BEARER Realm="r", SERVICE=s"#);
        assert_eq!(c, vec![bearer(&[("realm", "r"), ("service", "s")])]);
        assert_eq!(c[0].param("Realm"), Some("r"));
    }

    #[test]
    fn bare_schemes_and_empty_list_elements() {
        let c = parse_www_authenticate(",, Basic , Bearer realm=\"x\" ,,");
        assert_eq!(c.len(), 2);
        assert!(c[0].is_basic() && c[0].params.is_empty());
        assert_eq!(c[1].param("realm"), Some("x"));
    }

    #[test]
    fn token68_is_recognised_and_followed_by_next_challenge() {
        let c = parse_www_authenticate("Negotiate YIIBhwYGKwYBBQUCoIIBezCC/w==, Basic realm=\"r\"");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "negotiate");
        assert_eq!(
            c[0].token68.as_deref(),
            Some("YIIBhwYGKwYBBQUCoIIBezCC/w==")
        );
        assert!(c[1].is_basic());
    }

    #[test]
    fn whitespace_around_equals_and_unquoted_urls() {
        let c = parse_www_authenticate("Bearer realm = https://a.example/token , service = reg");
        assert_eq!(
            c,
            vec![bearer(&[
                ("realm", "https://a.example/token"),
                ("service", "reg")
            ])]
        );
    }

    #[test]
    fn first_occurrence_of_a_parameter_wins() {
        let c = parse_www_authenticate(r#"Bearer realm="a",realm="b""#);
        assert_eq!(c[0].param("realm"), Some("a"));
    }

    #[test]
    fn unterminated_quote_and_garbage_never_panic() {
        for v in [
            "",
            "\"",
            "=",
            "Bearer realm=\"abc",
            "Bearer realm=\"a\\",
            "Bearer =x, ,=,\"\"",
            "Bearer realm=",
            "\u{7f}\u{0}Basic",
            "Bearer realm=\"\u{e9}t\u{e9}\"",
        ] {
            let _ = parse_www_authenticate(v);
        }
        assert_eq!(
            parse_www_authenticate("Bearer realm=\"abc")[0].param("realm"),
            Some("abc")
        );
        assert_eq!(
            parse_www_authenticate("Bearer realm=")[0].param("realm"),
            Some("")
        );
    }

    #[test]
    fn error_parameter_of_invalid_token_challenge() {
        let v = r#"Bearer realm="https://auth/token",service="reg",error="invalid_token",error_description="expired""#;
        let c = parse_www_authenticate(v);
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        assert_eq!(c[0].param("error_description"), Some("expired"));
    }
}
