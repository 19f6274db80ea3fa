//! Content digests (`algorithm:hex`) with the validation rules and error texts of go-digest v1.0.0, plus an
//! incremental [`Digester`]. It owns parsing, formatting and computing digests; it must never accept a digest
//! whose encoded part does not have exactly the length of its algorithm, and never do IO.
//!
//! Supported algorithms are sha256, sha384 and sha512: the set kubelet links (`crypto/sha256` and
//! `crypto/sha512`), so a sha512-pinned image reference is accepted the way kubelet accepts it. Any other
//! algorithm that is well formed is `unsupported digest algorithm`, as go-digest reports for an unlinked hash.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// Why a string is not a usable digest. The texts are those of go-digest v1.0.0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// `ErrDigestInvalidFormat`
    #[error("invalid checksum digest format")]
    InvalidFormat,
    /// `ErrDigestInvalidLength`
    #[error("invalid checksum digest length")]
    InvalidLength,
    /// `ErrDigestUnsupported`
    #[error("unsupported digest algorithm")]
    Unsupported,
}

/// A digest algorithm this crate can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// The canonical algorithm of the distribution ecosystem.
    pub const CANONICAL: Algorithm = Algorithm::Sha256;

    /// The identifier used in digest strings (`sha256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Size of the hash in bytes; the hex encoding is twice as long.
    pub fn size(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha384 => 48,
            Algorithm::Sha512 => 64,
        }
    }

    /// The algorithm named `name`, if it is one this crate supports.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// A fresh incremental hasher for this algorithm.
    pub fn digester(self) -> Digester {
        Digester::new(self)
    }

    /// Digest of `bytes` with this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut d = self.digester();
        d.update(bytes);
        d.finish()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated digest: a supported algorithm and its lower-case hex encoding of the right length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.digest(bytes)
    }

    /// The sha512 digest of `bytes`.
    pub fn sha512(bytes: &[u8]) -> Digest {
        Algorithm::Sha512.digest(bytes)
    }

    /// Builds a digest from an algorithm and its hex encoding, validating the encoding.
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        validate_encoded(algorithm, hex)?;
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded part (go-digest `Encoded`).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `bytes` hash to this digest.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        self.algorithm.digest(bytes) == *self
    }
}

fn validate_encoded(algorithm: Algorithm, encoded: &str) -> Result<(), DigestError> {
    if encoded.len() != algorithm.size() * 2 {
        return Err(DigestError::InvalidLength);
    }
    if encoded
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(DigestError::InvalidFormat)
    }
}

/// go-digest `DigestRegexpAnchored`: `^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`.
fn matches_generic_digest(s: &str) -> bool {
    let Some((alg, enc)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = !alg.is_empty()
        && alg.split(['.', '+', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    let enc_ok = !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
    alg_ok && enc_ok
}

impl FromStr for Digest {
    type Err = DigestError;

    /// go-digest `Parse` (v1.0.0 `Validate`).
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let i = match s.find(':') {
            Some(i) if i > 0 && i + 1 != s.len() => i,
            _ => return Err(DigestError::InvalidFormat),
        };
        let (alg, encoded) = (&s[..i], &s[i + 1..]);
        let Some(algorithm) = Algorithm::from_name(alg) else {
            if !matches_generic_digest(s) {
                return Err(DigestError::InvalidFormat);
            }
            return Err(DigestError::Unsupported);
        };
        Digest::from_parts(algorithm, encoded)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse()
            .map_err(|e: DigestError| serde::de::Error::custom(format!("digest {s:?}: {e}")))
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// Incremental digest computation: feed bytes with [`Digester::update`], then [`Digester::finish`].
pub struct Digester {
    hasher: Hasher,
    written: u64,
}

impl Digester {
    /// A digester for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Digester {
        let hasher = match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Digester { hasher, written: 0 }
    }

    /// The algorithm being computed.
    pub fn algorithm(&self) -> Algorithm {
        match self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha384(_) => Algorithm::Sha384,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds more content.
    pub fn update(&mut self, bytes: &[u8]) {
        self.written += bytes.len() as u64;
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// Number of bytes fed so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let hex = match self.hasher {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        };
        Digest { algorithm, hex }
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester")
            .field("algorithm", &self.algorithm())
            .field("written", &self.written)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::sha256(b"").to_string(), EMPTY_SHA256);
    }

    #[test]
    fn incremental_digester_equals_one_shot() {
        let mut d = Digester::new(Algorithm::Sha512);
        d.update(b"hello ");
        d.update(b"world");
        assert_eq!(d.written(), 11);
        assert_eq!(d.finish(), Digest::sha512(b"hello world"));
    }

    #[test]
    fn parse_round_trips_display() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert!(d.verify(b""));
        assert!(!d.verify(b"x"));
    }

    /// go-digest `digest_test.go` TestParseDigest rows, with v1.0.0 error values.
    #[test]
    fn parse_matches_go_digest_error_table() {
        let f64 = "e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b";
        let cases: Vec<(String, Result<Algorithm, DigestError>)> = vec![
            (format!("sha256:{f64}"), Ok(Algorithm::Sha256)),
            (
                "sha384:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d"
                    .into(),
                Ok(Algorithm::Sha384),
            ),
            (f64.into(), Err(DigestError::InvalidFormat)),
            (format!("sha256:{}", &f64[..63]), Err(DigestError::InvalidLength)),
            (":".into(), Err(DigestError::InvalidFormat)),
            ("sha256:".into(), Err(DigestError::InvalidFormat)),
            (format!(":{f64}"), Err(DigestError::InvalidFormat)),
            (format!("sha256:{}X", &f64[..63]), Err(DigestError::InvalidFormat)),
            (format!("sha256:{}", f64.to_uppercase()), Err(DigestError::InvalidFormat)),
            (format!("foo:{f64}"), Err(DigestError::Unsupported)),
            ("sha384.foo+bar:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d".into(), Err(DigestError::Unsupported)),
            ("sha384_foo+bar:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d".into(), Err(DigestError::Unsupported)),
            ("sha256+b64:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564".into(), Err(DigestError::Unsupported)),
            ("sha256:E58FCF7418D4390DEC8E8FB69D88C06EC07039D651FEDD3AA72AF9972E7D046B".into(), Err(DigestError::InvalidFormat)),
        ];
        for (input, want) in cases {
            let got = input.parse::<Digest>().map(|d| d.algorithm());
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn error_texts_are_those_of_go_digest() {
        assert_eq!(
            DigestError::InvalidFormat.to_string(),
            "invalid checksum digest format"
        );
        assert_eq!(
            DigestError::InvalidLength.to_string(),
            "invalid checksum digest length"
        );
        assert_eq!(
            DigestError::Unsupported.to_string(),
            "unsupported digest algorithm"
        );
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let d = Digest::sha256(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>("\"sha256:abc\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid checksum digest length"), "{err}");
    }
}
