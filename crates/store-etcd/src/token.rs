//! Continue tokens of paginated lists, in kube-apiserver's format: base64url (no padding) of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<next key relative to the list prefix>"}`.
//! The token carries the snapshot revision of the first page and the key to resume from (the
//! last returned key plus `\0`), relative to the list prefix so that it can never reach outside
//! the prefix it is used with. It must never carry values. (`store` has the same format in a
//! private module; it is written here again until `store` exports it.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use store::StoreError;

const VERSION: &str = "meta.k8s.io/v1";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: u64,
    start: String,
}

/// The token resuming a list of `prefix` at `revision` right after `last_key`.
pub(crate) fn encode(prefix: &str, last_key: &str, revision: u64) -> String {
    let relative = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = Token {
        v: VERSION.to_owned(),
        rv: revision,
        start: format!("{relative}\u{0}"),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("a token always serialises"))
}

/// The revision and the first key (inclusive, absolute) encoded in `token` for `prefix`.
pub(crate) fn decode(prefix: &str, token: &str) -> Result<(u64, String), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidContinue {
        reason: reason.to_owned(),
    };
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64url"))?;
    let token: Token = serde_json::from_slice(&raw).map_err(|_| invalid("not a continue token"))?;
    if token.v != VERSION {
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
    fn token_resumes_after_the_last_key_at_the_same_revision() {
        let token = encode("/registry/core/pods/", "/registry/core/pods/ns/b", 42);
        let (rev, start) = decode("/registry/core/pods/", &token).unwrap();
        assert_eq!((rev, start.as_str()), (42, "/registry/core/pods/ns/b\u{0}"));
    }

    #[test]
    fn token_is_relative_to_the_list_prefix() {
        let token = encode("/registry/core/secrets/", "/registry/core/secrets/ns/a", 7);
        let (_, start) = decode("/registry/core/pods/", &token).unwrap();
        assert!(start.starts_with("/registry/core/pods/"), "{start}");
    }

    #[test]
    fn token_matches_kube_apiserver_json_shape() {
        let token = encode("/p/", "/p/a", 5);
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap();
        assert_eq!(json, r#"{"v":"meta.k8s.io/v1","rv":5,"start":"a\u0000"}"#);
    }

    #[test]
    fn malformed_tokens_are_invalid_continue() {
        for token in [
            "%%%".to_owned(),
            URL_SAFE_NO_PAD.encode(b"hello"),
            URL_SAFE_NO_PAD.encode(br#"{"v":"x","rv":1,"start":"a"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":3,"start":""}"#),
        ] {
            let err = decode("/p/", &token).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidContinue { .. }),
                "{token}: {err}"
            );
            assert_eq!(err.http_status_hint(), 400);
        }
    }
}
