//! Docker credential documents: the `.dockercfg` flat map, the `.dockerconfigjson` `{"auths": ...}` document and
//! the Docker CLI `config.json` (`auths`, `credHelpers`, `credsStore`, `identitytoken`). It owns decoding entries
//! exactly as kubelet's `DockerConfigEntry.UnmarshalJSON` does (case-insensitive field names like Go's
//! `encoding/json`, a non-empty `auth` overriding username and password, StdEncoding when the trimmed value ends
//! in `=`, RawStdEncoding otherwise, `\r`/`\n` ignored, split at the first `:`). It must never put a value in an
//! error: documents are first parsed as untyped JSON (whose syntax errors carry only positions) and then walked
//! by hand so that type errors name the field, not its content.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::redact::SecretString;

/// The text kubelet returns for an `auth` value without a `:`.
pub const AUTH_FORMAT_ERROR: &str =
    "unable to parse auth field, must be formatted as base64(username:password)";

/// One credential as written for one registry key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfigEntry {
    pub username: String,
    pub password: SecretString,
    pub email: String,
    /// Only read from Docker CLI config files (kubelet ignores it in Secrets).
    pub identity_token: Option<SecretString>,
}

/// Why a document could not be decoded; `field` is a JSON path like `auths["reg.example.com"].auth`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl DecodeError {
    pub(crate) fn json(e: &serde_json::Error) -> DecodeError {
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        DecodeError::Json {
            line: e.line(),
            column: e.column(),
            message,
        }
    }

    fn field(field: impl Into<String>, message: impl Into<String>) -> DecodeError {
        DecodeError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn engine(padded: bool) -> GeneralPurpose {
    let config = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_encode_padding(padded)
        .with_decode_padding_mode(if padded {
            DecodePaddingMode::RequireCanonical
        } else {
            DecodePaddingMode::RequireNone
        });
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
}

/// Go `base64.StdEncoding.DecodeString` (`padded`) or `RawStdEncoding`: `\r` and `\n` are skipped anywhere; the
/// error names only the offset, like Go's `illegal base64 data at input byte N`.
pub fn go_base64_decode(input: &str, padded: bool) -> Result<Vec<u8>, String> {
    let filtered: Vec<u8> = input
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    engine(padded).decode(&filtered).map_err(|e| {
        let offset = match e {
            base64::DecodeError::InvalidByte(o, _)
            | base64::DecodeError::InvalidLastSymbol(o, _) => o,
            base64::DecodeError::InvalidLength(len) => len,
            base64::DecodeError::InvalidPadding => filtered.len(),
        };
        format!("illegal base64 data at input byte {offset}")
    })
}

/// kubelet `decodeDockerConfigFieldAuth`: returns (username, password).
pub fn decode_auth_field(field: &str) -> Result<(String, SecretString), String> {
    let padded = field.trim().ends_with('=');
    let decoded = go_base64_decode(field, padded)?;
    // Go converts with string(bytes): invalid UTF-8 is kept byte-for-byte; replacement is the closest in Rust.
    let decoded = String::from_utf8_lossy(&decoded);
    match decoded.split_once(':') {
        Some((user, pass)) => Ok((user.to_owned(), SecretString::new(pass))),
        None => Err(AUTH_FORMAT_ERROR.to_owned()),
    }
}

/// `base64(username:password)`, as written by `kubectl create secret docker-registry`.
pub fn encode_auth_field(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Go's `encoding/json` field lookup: exact name first, then ASCII case-insensitive; the last duplicate wins.
fn get_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_field(obj: &Map<String, Value>, name: &str, path: &str) -> Result<String, DecodeError> {
    match get_field(obj, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(DecodeError::field(
            format!("{path}.{name}"),
            format!("expected a string, found {}", type_name(other)),
        )),
    }
}

/// Decodes one entry (`DockerConfigEntry.UnmarshalJSON`), `path` naming it in errors.
pub fn decode_entry(
    value: &Value,
    path: &str,
    read_identity_token: bool,
) -> Result<DockerConfigEntry, DecodeError> {
    let obj = match value {
        Value::Null => return Ok(DockerConfigEntry::default()),
        Value::Object(o) => o,
        other => {
            return Err(DecodeError::field(
                path,
                format!("expected an object, found {}", type_name(other)),
            ));
        }
    };
    let mut entry = DockerConfigEntry {
        username: string_field(obj, "username", path)?,
        password: SecretString::new(string_field(obj, "password", path)?),
        email: string_field(obj, "email", path)?,
        identity_token: None,
    };
    let auth = string_field(obj, "auth", path)?;
    if read_identity_token {
        let token = string_field(obj, "identitytoken", path)?;
        if !token.is_empty() {
            entry.identity_token = Some(SecretString::new(token));
        }
    }
    if !auth.is_empty() {
        let (user, pass) =
            decode_auth_field(&auth).map_err(|m| DecodeError::field(format!("{path}.auth"), m))?;
        entry.username = user;
        entry.password = pass;
    }
    Ok(entry)
}

fn parse_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::json(&e))
}

fn decode_map(
    value: &Value,
    path: &str,
    identity: bool,
) -> Result<Vec<(String, DockerConfigEntry)>, DecodeError> {
    let obj = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(o) => o,
        other => {
            return Err(DecodeError::field(
                path,
                format!("expected an object, found {}", type_name(other)),
            ));
        }
    };
    obj.iter()
        .map(|(k, v)| {
            let p = if path.is_empty() {
                format!("[{k:?}]")
            } else {
                format!("{path}[{k:?}]")
            };
            Ok((k.clone(), decode_entry(v, &p, identity)?))
        })
        .collect()
}

/// A `.dockercfg` document: `{"<registry>": {entry}, ...}`. Entries keep document order.
pub fn parse_dockercfg(bytes: &[u8]) -> Result<Vec<(String, DockerConfigEntry)>, DecodeError> {
    decode_map(&parse_json(bytes)?, "", false)
}

/// A `.dockerconfigjson` document: `{"auths": {...}}` (other fields ignored, as kubelet does).
pub fn parse_dockerconfigjson(
    bytes: &[u8],
) -> Result<Vec<(String, DockerConfigEntry)>, DecodeError> {
    let v = parse_json(bytes)?;
    match &v {
        Value::Object(o) => match get_field(o, "auths") {
            Some(a) => decode_map(a, "auths", false),
            None => Ok(Vec::new()),
        },
        Value::Null => Ok(Vec::new()),
        other => Err(DecodeError::field(
            "(document)",
            format!("expected an object, found {}", type_name(other)),
        )),
    }
}

/// A Docker CLI `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerCliConfig {
    /// `auths`, in document order (with `identitytoken`).
    pub auths: Vec<(String, DockerConfigEntry)>,
    /// `credHelpers`: registry host -> helper suffix (`docker-credential-<suffix>`).
    pub cred_helpers: Vec<(String, String)>,
    /// `credsStore`: the default helper suffix.
    pub creds_store: Option<String>,
}

impl DockerCliConfig {
    /// Parses a `config.json` document.
    pub fn parse(bytes: &[u8]) -> Result<DockerCliConfig, DecodeError> {
        let v = parse_json(bytes)?;
        let Value::Object(o) = &v else {
            return Err(DecodeError::field(
                "(document)",
                format!("expected an object, found {}", type_name(&v)),
            ));
        };
        let auths = match get_field(o, "auths") {
            Some(a) => decode_map(a, "auths", true)?,
            None => Vec::new(),
        };
        let cred_helpers = match get_field(o, "credHelpers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(DecodeError::field(
                        format!("credHelpers[{k:?}]"),
                        format!("expected a string, found {}", type_name(other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(DecodeError::field(
                    "credHelpers",
                    format!("expected an object, found {}", type_name(other)),
                ));
            }
        };
        let creds_store = Some(string_field(o, "credsStore", "")?).filter(|s| !s.is_empty());
        Ok(DockerCliConfig {
            auths,
            cred_helpers,
            creds_store,
        })
    }

    /// The helper Docker would use for `host` (`credHelpers[host]`, else `credsStore`).
    pub fn helper_for(&self, host: &str) -> Option<&str> {
        self.cred_helpers
            .iter()
            .find(|(k, _)| k == host)
            .map(|(_, v)| v.as_str())
            .or(self.creds_store.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubernetes `config_test.go` TestDecodeDockerConfigFieldAuth (its rows `Zm9vOmJhcg==`, `cGFudHM=`,
    /// `pants`), plus rows for the decode rules of newer kubelets: unpadded input uses RawStdEncoding,
    /// `\n` is ignored, any other whitespace fails.
    #[test]
    fn decode_auth_field_matches_kubelet_table() {
        let std = base64::engine::general_purpose::STANDARD.encode("foo:bar");
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.encode("foo:bar");
        let encoded = encode_auth_field("foo", "bar");
        let rows: Vec<(&str, Option<(&str, &str)>)> = vec![
            ("Zm9vOmJhcg==", Some(("foo", "bar"))),
            ("Zm9vOmJhcg", Some(("foo", "bar"))),
            ("Zm9vOm\nJhcg==\n", Some(("foo", "bar"))),
            (&std, Some(("foo", "bar"))),
            (&raw, Some(("foo", "bar"))),
            (&encoded, Some(("foo", "bar"))),
            ("cGFudHM=", None),
            ("Zm9vOmJhcg== ", None),
            ("pants", None),
        ];
        for (input, want) in rows {
            let got = decode_auth_field(input);
            match want {
                Some((u, p)) => {
                    let (gu, gp) = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                    assert_eq!((gu.as_str(), gp.expose()), (u, p), "{input:?}");
                }
                None => assert!(got.is_err(), "{input:?} should fail"),
            }
        }
        assert_eq!(
            decode_auth_field("cGFudHM=").unwrap_err(),
            AUTH_FORMAT_ERROR
        );
    }

    #[test]
    fn base64_errors_name_an_offset_never_the_data() {
        let e = decode_auth_field("c2VjcmV0 ").unwrap_err();
        assert_eq!(e, "illegal base64 data at input byte 8");
    }

    /// kubernetes `config_test.go` TestDockerConfigEntryJSONDecode: every row.
    #[test]
    fn entry_decode_matches_kubelet_table() {
        type Want = Option<(&'static str, &'static str, &'static str)>;
        let rows: [(&str, Want); 5] = [
            (
                r#"{"username": "foo", "password": "bar", "email": "foo@example.com"}"#,
                Some(("foo", "bar", "foo@example.com")),
            ),
            (
                r#"{"auth": "Zm9vOmJhcg==", "email": "foo@example.com"}"#,
                Some(("foo", "bar", "foo@example.com")),
            ),
            (
                r#"{"username": "foo", "password": "bar", "auth": "cGluZzpwb25n", "email": "foo@example.com"}"#,
                Some(("ping", "pong", "foo@example.com")),
            ),
            (r#"{"auth": "pants", "email": "foo@example.com"}"#, None),
            (r#"{"email": false}"#, None),
        ];
        for (input, want) in rows {
            let v: Value = serde_json::from_str(input).unwrap();
            let got = decode_entry(&v, "entry", false);
            match want {
                Some((u, p, e)) => {
                    let got = got.unwrap();
                    assert_eq!(
                        (
                            got.username.as_str(),
                            got.password.expose(),
                            got.email.as_str()
                        ),
                        (u, p, e)
                    );
                }
                None => assert!(got.is_err(), "{input} should fail"),
            }
        }
    }

    #[test]
    fn field_names_match_case_insensitively_like_go() {
        let v: Value = serde_json::from_str(r#"{"Username": "u", "PASSWORD": "p"}"#).unwrap();
        let e = decode_entry(&v, "x", false).unwrap();
        assert_eq!((e.username.as_str(), e.password.expose()), ("u", "p"));
    }

    #[test]
    fn type_errors_name_the_field_not_the_value() {
        let e = parse_dockerconfigjson(br#"{"auths": {"reg.example.com": {"password": 12345}}}"#)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"auths["reg.example.com"].password: expected a string, found a number"#
        );
        assert!(!e.to_string().contains("12345"));
    }

    /// kubernetes TestDockerConfigJsonJSONDecode / TestDockerConfigJSONDecode.
    #[test]
    fn both_secret_formats_decode_in_document_order() {
        let cfg = br#"{"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz", "email": "bar@example.com"}}"#;
        let flat = parse_dockercfg(cfg).unwrap();
        let wrapped = parse_dockerconfigjson(
            format!(r#"{{"auths": {}}}"#, String::from_utf8_lossy(cfg)).as_bytes(),
        )
        .unwrap();
        assert_eq!(flat, wrapped);
        assert_eq!(flat[0].0, "http://foo.example.com");
        assert_eq!(flat[1].1.password.expose(), "baz");
    }

    #[test]
    fn cli_config_reads_helpers_and_identity_tokens() {
        let c = DockerCliConfig::parse(
            br#"{"auths": {"reg.example.com": {"auth": "PHRva2VuPjo=", "identitytoken": "tok"}},
                 "credHelpers": {"gcr.io": "gcloud"}, "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(
            c.auths[0].1.identity_token.as_ref().unwrap().expose(),
            "tok"
        );
        assert_eq!(c.helper_for("gcr.io"), Some("gcloud"));
        assert_eq!(c.helper_for("quay.io"), Some("desktop"));
    }
}
