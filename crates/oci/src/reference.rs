//! Image references with the grammar, normalisation and error texts of `github.com/distribution/reference`
//! (`Parse`, `ParseNormalizedNamed`, `ParseNamed`, `ParseDockerRef`, `ParseAnyReference`, `WithName`/`WithTag`/
//! `WithDigest` and the `Familiar*` helpers). It owns turning a user-written string into domain, path, tag and
//! digest; it must never do IO, never guess a registry other than the Docker Hub default that upstream applies,
//! and never accept a string upstream rejects (kubelet and containerd parse the same strings and must agree).
//!
//! The grammar is matched by hand ([`grammar`]) rather than with the `regex` crate: the upstream expression is
//! regular but its capture groups rely on Go's leftmost-first semantics (the first component becomes the domain
//! whenever it can). With `@` excluded from every part and `:` excluded from the path, the split points are
//! forced (digest after the only `@`, tag after a `:` that follows the last `/`, domain before the first `/`), so
//! a direct matcher is exact, allocation-free and trivially panic-free on any input, which the fuzz target checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};
use crate::pattern::{BadPattern, path_match};

/// `RepositoryNameTotalLengthMax`: the maximum length of the path (the domain is not counted).
pub const REPOSITORY_NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The Docker Hub domain used by normalisation.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy Docker Hub domain rewritten to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of official Docker Hub images.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag added by [`Reference::with_default_tag`].
pub const DEFAULT_TAG: &str = "latest";

/// Why a string is not a valid reference. `Display` texts are exactly upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// `ErrReferenceInvalidFormat`
    #[error("invalid reference format")]
    InvalidFormat,
    /// `ErrTagInvalidFormat`
    #[error("invalid tag format")]
    TagInvalidFormat,
    /// `ErrDigestInvalidFormat`
    #[error("invalid digest format")]
    DigestInvalidFormat,
    /// `ErrNameContainsUppercase`
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// `ErrNameEmpty`
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// `ErrNameTooLong`
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// `ErrNameNotCanonical`
    #[error("repository name must be canonical")]
    NameNotCanonical,
    /// The digest part failed go-digest validation.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// `ParseNormalizedNamed` on a 64-character hex string (an image id, not a name).
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexadecimalName(String),
    /// `ParseNormalizedNamed` on a remote name with upper case.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    RemoteNameUppercase(String),
}

/// The hand-written matchers for the sub-expressions of upstream `regexp.go`.
pub mod grammar {
    fn is_alnum_lower(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit()
    }

    /// `path-component = [a-z0-9]+ (?:(?:[._]|__|[-]+)[a-z0-9]+)*`
    pub fn is_path_component(s: &str) -> bool {
        let b = s.as_bytes();
        if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum_lower(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !is_alnum_lower(b[i]) {
                i += 1;
            }
            let sep = &s[start..i];
            let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    }

    /// `remote-name = path-component (?:/path-component)*`
    pub fn is_remote_name(s: &str) -> bool {
        s.split('/').all(is_path_component)
    }

    /// `domain-name-component = [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
    fn is_domain_component(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    }

    fn is_port(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// `domainAndPort = (?:domain-name|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`, anchored.
    pub fn is_domain_and_port(s: &str) -> bool {
        if let Some(inner) = s.strip_prefix('[') {
            let Some(end) = inner.find(']') else {
                return false;
            };
            let (addr, rest) = (&inner[..end], &inner[end + 1..]);
            if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return false;
            }
            return rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port);
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        host.split('.').all(is_domain_component) && port.is_none_or(is_port)
    }

    /// `tag = [\w][\w.-]{0,127}` (ASCII `\w`), anchored.
    pub fn is_tag(s: &str) -> bool {
        let b = s.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        !b.is_empty()
            && b.len() <= 128
            && word(b[0])
            && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
    }

    /// `digest = [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`, anchored.
    pub fn is_digest(s: &str) -> bool {
        let Some((alg, hex)) = s.split_once(':') else {
            return false;
        };
        let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphabetic()
                && b.iter().all(|c| c.is_ascii_alphanumeric())
        });
        alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// `identifier = [a-f0-9]{64}`, anchored.
    pub fn is_identifier(s: &str) -> bool {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// `anchoredNameRegexp`: `^(?:(domainAndPort)/)?(remote-name)$`. Returns (domain or "", path). As with Go's
    /// leftmost-first matching, the first component is the domain whenever it can be one.
    pub fn split_name(s: &str) -> Option<(&str, &str)> {
        if let Some((first, rest)) = s.split_once('/')
            && is_domain_and_port(first)
            && is_remote_name(rest)
        {
            return Some((first, rest));
        }
        is_remote_name(s).then_some(("", s))
    }

    /// `referenceRegexp`: `^(name)(?::(tag))?(?:@(digest))?$`. Returns (name, tag or "", digest or "").
    pub fn split_reference(s: &str) -> Option<(&str, &str, &str)> {
        let (before, digest) = match s.split_once('@') {
            Some((b, d)) => {
                if !is_digest(d) {
                    return None;
                }
                (b, d)
            }
            None => (s, ""),
        };
        let (name, tag) = match before.rfind(':') {
            Some(colon) if before.rfind('/').is_none_or(|slash| colon > slash) => {
                let tag = &before[colon + 1..];
                if !is_tag(tag) {
                    return None;
                }
                (&before[..colon], tag)
            }
            _ => (before, ""),
        };
        split_name(name)?;
        Some((name, tag, digest))
    }
}

/// A named image reference: `[domain/]path[:tag][@digest]`. (A digest without a name is [`AnyReference::Digest`].)
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// The result of [`Reference::parse_any`]: a name, or a bare image id / digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyReference {
    Named(Reference),
    Digest(Digest),
}

impl fmt::Display for AnyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyReference::Named(r) => r.fmt(f),
            AnyReference::Digest(d) => d.fmt(f),
        }
    }
}

impl Reference {
    /// Go `Parse`: the grammar only, no normalisation (`ubuntu` stays `ubuntu`, `foo/bar` has domain `foo`).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::NameEmpty);
        }
        let Some((name, tag, digest)) = grammar::split_reference(s) else {
            let lower = s.to_lowercase();
            if lower != s && grammar::split_reference(&lower).is_some() {
                return Err(ReferenceError::NameContainsUppercase);
            }
            return Err(ReferenceError::InvalidFormat);
        };
        let (domain, path) = grammar::split_name(name).ok_or(ReferenceError::InvalidFormat)?;
        if path.len() > REPOSITORY_NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        let digest = if digest.is_empty() {
            None
        } else {
            Some(Digest::from_str(digest)?)
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: (!tag.is_empty()).then(|| tag.to_owned()),
            digest,
        })
    }

    /// Go `ParseNormalizedNamed`: Docker Hub defaults (`docker.io`, `library/`), `index.docker.io` rewritten,
    /// 64-hex names and upper-case remote names rejected.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if grammar::is_identifier(s) {
            return Err(ReferenceError::HexadecimalName(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => &remainder[..],
        };
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::RemoteNameUppercase(remote.to_owned()));
        }
        Reference::parse(&format!("{domain}/{remainder}"))
    }

    /// Go `ParseNamed`: like [`Reference::parse_normalized`], but the input must already be in normalised form.
    pub fn parse_named(s: &str) -> Result<Reference, ReferenceError> {
        let named = Reference::parse_normalized(s)?;
        if named.to_string() != s {
            return Err(ReferenceError::NameNotCanonical);
        }
        Ok(named)
    }

    /// Go `ParseDockerRef`: normalised, then [`Reference::with_default_tag`].
    pub fn parse_docker_ref(s: &str) -> Result<Reference, ReferenceError> {
        Ok(Reference::parse_normalized(s)?.with_default_tag())
    }

    /// Go `ParseAnyReference`: a 64-hex string is a sha256 image id, a valid digest is a digest, anything else is
    /// parsed with [`Reference::parse_normalized`].
    pub fn parse_any(s: &str) -> Result<AnyReference, ReferenceError> {
        if grammar::is_identifier(s) {
            return Ok(AnyReference::Digest(Digest::from_str(&format!(
                "sha256:{s}"
            ))?));
        }
        if let Ok(d) = Digest::from_str(s) {
            return Ok(AnyReference::Digest(d));
        }
        Reference::parse_normalized(s).map(AnyReference::Named)
    }

    /// Go `WithName`: a name without tag or digest.
    pub fn with_name(name: &str) -> Result<Reference, ReferenceError> {
        let (domain, path) = grammar::split_name(name).ok_or(ReferenceError::InvalidFormat)?;
        if path.len() > REPOSITORY_NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        Ok(Reference {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: None,
            digest: None,
        })
    }

    /// Go `WithTag`: this reference with `tag` (keeping any digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !grammar::is_tag(tag) {
            return Err(ReferenceError::TagInvalidFormat);
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// Go `WithDigest`: this reference pinned to `digest` (keeping any tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The `ParseDockerRef` rule: `:latest` when there is neither tag nor digest; the tag is dropped when both
    /// are present (the digest wins).
    pub fn with_default_tag(self) -> Reference {
        match (&self.tag, &self.digest) {
            (None, None) => Reference {
                tag: Some(DEFAULT_TAG.to_owned()),
                ..self
            },
            (Some(_), Some(_)) => Reference { tag: None, ..self },
            _ => self,
        }
    }

    /// Go `TrimNamed`: the name alone.
    pub fn trimmed(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// Go `IsNameOnly`.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The domain (host and optional port), or `""` when an unnormalised name has none.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the domain.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path` (or `path` without a domain): Go `Named.Name()`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The `(domain, path)` shown to users: `docker.io` dropped, `library/` dropped when nothing else follows.
    fn familiar_parts(&self) -> (&str, &str) {
        if self.domain != DEFAULT_DOMAIN {
            return (&self.domain, &self.path);
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => ("", rest),
            _ => ("", &self.path),
        }
    }

    /// Go `FamiliarName`: `docker.io/library/ubuntu` is `ubuntu`.
    pub fn familiar_name(&self) -> String {
        match self.familiar_parts() {
            ("", path) => path.to_owned(),
            (domain, path) => format!("{domain}/{path}"),
        }
    }

    /// Go `FamiliarString`: the familiar name with tag and digest.
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// Go `FamiliarMatch`: `path.Match` on the familiar string, then on the familiar name.
    pub fn familiar_match(&self, pattern: &str) -> Result<bool, BadPattern> {
        let matched = path_match(pattern, &self.familiar_string())?;
        if matched {
            return Ok(true);
        }
        Ok(path_match(pattern, &self.familiar_name()).unwrap_or(false))
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

/// Go `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    // Order matters: `index.docker.io` contains a dot but must still be rewritten.
    let (domain, remote) = if maybe_domain == "localhost" {
        (maybe_domain, maybe_remote)
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain.contains(['.', ':']) || maybe_domain.to_lowercase() != maybe_domain {
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain, remote.to_owned())
}

impl fmt::Display for Reference {
    /// The full string (Go `String()`): `domain/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// Same as [`Reference::parse`] (no normalisation).
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    /// Go `Field.UnmarshalText`: [`Reference::parse`] on the string.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Reference, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Reference::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("image reference {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_kept_as_domain_by_normalisation() {
        let r = Reference::parse_normalized("localhost/foo:1").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("localhost", "foo", Some("1"))
        );
    }

    #[test]
    fn path_limit_counts_the_path_only() {
        let ok = format!("example.com/{}", "a".repeat(255));
        assert!(Reference::parse(&ok).is_ok());
        let long = format!("example.com/{}", "a".repeat(256));
        assert_eq!(Reference::parse(&long), Err(ReferenceError::NameTooLong));
    }

    #[test]
    fn sha512_digests_are_accepted_like_kubelet() {
        let s = format!("reg.example.com/app@sha512:{}", "f".repeat(128));
        let r = Reference::parse(&s).unwrap();
        assert_eq!(
            r.digest().unwrap().algorithm(),
            crate::digest::Algorithm::Sha512
        );
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn uppercase_remote_name_error_names_the_remote() {
        let e = Reference::parse_normalized("docker.io/Foo/bar:tag").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid reference format: repository name (Foo/bar) must be lowercase"
        );
    }

    #[test]
    fn hex_id_error_names_the_input() {
        let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let e = Reference::parse_normalized(id).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid repository name ({id}), cannot specify 64-byte hexadecimal strings")
        );
    }

    #[test]
    fn default_tag_is_added_only_to_bare_names_and_tag_dropped_with_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            Reference::parse_docker_ref("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        let both = Reference::parse_docker_ref(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(both.to_string(), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn serde_round_trips_through_parse() {
        let r = Reference::parse("example.com:8000/named:tagged").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"example.com:8000/named:tagged\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        let err = serde_json::from_str::<Reference>("\"\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("repository name must have at least one component"),
            "{err}"
        );
    }
}
