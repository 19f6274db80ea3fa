//! Key ranges and continue tokens shared by every backend. It owns the byte-wise prefix range
//! (`[prefix, prefix_end)`) and the opaque continue-token format, modelled on kube-apiserver's
//! (`{"v":"meta.k8s.io/v1","rv":<rev>,"start":"<key suffix>\u0000"}`, base64url): the token holds
//! the next key *relative to the list prefix*, so a token can never reach outside the prefix it was
//! issued for. It must never carry values.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::StoreError;

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

/// Half-open byte range `[start, end)` selecting every key that starts with `prefix`.
///
/// Keys are UTF-8, which never contains the byte 0xFF, so `[0xFF]` bounds the empty prefix and
/// incrementing the last byte of a non-empty prefix never overflows.
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.as_bytes().to_vec();
    let end = match start.last() {
        None => vec![0xFF],
        Some(_) => {
            let mut end = start.clone();
            let last = end.len() - 1;
            end[last] += 1;
            end
        }
    };
    (start, end)
}

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: u64,
    start: String,
}

/// Encode the token that resumes a list of `prefix` at `revision` after `last_key`. Every
/// backend issues its continue tokens with this, so a token's format does not depend on the
/// datastore.
pub fn encode_continue(prefix: &str, last_key: &str, revision: u64) -> String {
    let suffix = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = Token {
        v: TOKEN_VERSION.to_owned(),
        rv: revision,
        // The smallest key strictly greater than `last_key`.
        start: format!("{suffix}\u{0}"),
    };
    let json = serde_json::to_vec(&token).expect("continue token serialises");
    URL_SAFE_NO_PAD.encode(json)
}

/// Decode a continue token for `prefix`: the revision to list at and the first key (inclusive,
/// absolute). Errors with [`StoreError::InvalidContinue`] (HTTP 400) for a malformed token.
pub fn decode_continue(prefix: &str, token: &str) -> Result<(u64, String), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidContinue {
        reason: reason.to_owned(),
    };
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64url"))?;
    let token: Token = serde_json::from_slice(&raw).map_err(|_| invalid("not a continue token"))?;
    if token.v != TOKEN_VERSION {
        return Err(invalid("unsupported token version"));
    }
    if token.rv == 0 {
        return Err(invalid("token has no revision"));
    }
    if token.start.is_empty() {
        return Err(invalid("token has no start key"));
    }
    Ok((token.rv, format!("{prefix}{}", token.start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_excludes_sibling_with_longer_name() {
        let (start, end) = prefix_range("/registry/core/pods/default/");
        let inside = b"/registry/core/pods/default/a".as_slice();
        let sibling = b"/registry/core/pods/default2/a".as_slice();
        assert!(inside >= start.as_slice() && inside < end.as_slice());
        assert!(!(sibling >= start.as_slice() && sibling < end.as_slice()));
    }

    #[test]
    fn empty_prefix_range_covers_every_utf8_key() {
        let (start, end) = prefix_range("");
        assert!(start.is_empty());
        assert!("\u{10FFFF}".as_bytes() < end.as_slice());
    }

    #[test]
    fn continue_token_round_trips_relative_to_prefix() {
        let token = encode_continue("/r/pods/", "/r/pods/ns/b", 42);
        let (rev, start) = decode_continue("/r/pods/", &token).unwrap();
        assert_eq!(rev, 42);
        assert_eq!(start, "/r/pods/ns/b\u{0}");
    }

    #[test]
    fn continue_token_cannot_escape_its_prefix() {
        let token = encode_continue("/r/secrets/", "/r/secrets/ns/a", 7);
        let (_, start) = decode_continue("/r/pods/", &token).unwrap();
        assert!(start.starts_with("/r/pods/"));
    }

    #[test]
    fn continue_token_matches_kube_apiserver_json_shape() {
        let token = encode_continue("/p/", "/p/a", 5);
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap();
        assert_eq!(json, r#"{"v":"meta.k8s.io/v1","rv":5,"start":"a\u0000"}"#);
    }

    #[test]
    fn garbage_continue_token_is_invalid() {
        for token in [
            "%%%",
            "aGVsbG8",
            &URL_SAFE_NO_PAD.encode(br#"{"v":"x","rv":1,"start":"a"}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":3,"start":""}"#),
        ] {
            let err = decode_continue("/p/", token).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidContinue { .. }),
                "{token}: {err}"
            );
        }
    }
}
