//! Request body decoding by Content-Type (JSON, YAML, Kubernetes protobuf), response encoding
//! (JSON, YAML) and `Accept` negotiation (plain objects, `Table`, `PartialObjectMetadata`,
//! aggregated discovery). It owns the size/depth/alias limits and the line/column error texts;
//! it must never look at what an object means (validation, defaulting) or speak HTTP: the
//! apiserver passes header values and bytes in and maps the errors to Status codes.
//!
//! Limits: serde_json and serde_yaml both stop at a nesting depth of 128; serde_yaml 0.9 also
//! refuses alias expansion beyond a repetition limit (the "billion laughs" case), which the
//! tests below prove stays fast. On top of that we bound the body size and refuse YAML with
//! more than one document (an API request carries one object).

use std::collections::BTreeMap;

use serde::Deserialize as _;
use serde_json::Value;

use crate::protobuf;

/// Limits applied while decoding a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body, in bytes (kube-apiserver's default is 3 MiB).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 3 * 1024 * 1024,
        }
    }
}

/// The serialization of a request or response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Protobuf,
}

/// Why a request body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "unsupported content type {0:?}; send application/json, application/yaml or application/vnd.kubernetes.protobuf"
    )]
    UnsupportedMediaType(String),
    #[error(
        "request body is {size} bytes, more than the limit of {limit} bytes; split the object or shrink it"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("request body is empty; send one JSON or YAML object")]
    Empty,
    #[error(
        "invalid JSON in request body at line {line} column {column}: {detail}; fix the JSON syntax"
    )]
    Json {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("invalid YAML in request body{at}: {detail}; fix the YAML syntax")]
    Yaml { at: String, detail: String },
    #[error(
        "request body holds {0} YAML documents, an API request takes exactly one; send each object separately (kubectl -f splits files for you)"
    )]
    MultipleDocuments(usize),
    #[error(transparent)]
    Protobuf(#[from] protobuf::ProtobufError),
    #[error("response could not be encoded as {format}: {detail}")]
    Encode {
        format: &'static str,
        detail: String,
    },
}

/// Parses a `Content-Type` header value into the body format. Patch media types
/// (`application/merge-patch+json`, ...) are JSON, `application/apply-patch+yaml` is YAML.
pub fn body_format(content_type: &str) -> Result<Format, CodecError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json" => Ok(Format::Json),
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => Ok(Format::Yaml),
        protobuf::MEDIA_TYPE => Ok(Format::Protobuf),
        _ => Err(CodecError::UnsupportedMediaType(content_type.to_string())),
    }
}

/// Decodes a request body of the given `Content-Type` into a JSON value.
pub fn decode_body(content_type: &str, body: &[u8], limits: Limits) -> Result<Value, CodecError> {
    let format = body_format(content_type)?;
    decode(format, body, limits)
}

/// Decodes a request body of a known format into a JSON value.
pub fn decode(format: Format, body: &[u8], limits: Limits) -> Result<Value, CodecError> {
    if body.len() > limits.max_body_bytes {
        return Err(CodecError::TooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    match format {
        Format::Json => decode_json(body),
        Format::Yaml => decode_yaml(body),
        Format::Protobuf => Ok(protobuf::decode(body)?),
    }
}

fn decode_json(body: &[u8]) -> Result<Value, CodecError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(CodecError::Empty);
    }
    serde_json::from_slice(body).map_err(|e| CodecError::Json {
        line: e.line(),
        column: e.column(),
        detail: strip_position(&e.to_string()),
    })
}

/// serde_json appends " at line L column C"; we carry them as fields instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn yaml_error(e: &serde_yaml::Error) -> CodecError {
    let at = e
        .location()
        .map(|l| format!(" at line {} column {}", l.line(), l.column()))
        .unwrap_or_default();
    let detail = e.to_string();
    let detail = match detail.rfind(" at line ") {
        Some(i) if !at.is_empty() => detail[..i].to_string(),
        _ => detail,
    };
    CodecError::Yaml { at, detail }
}

fn decode_yaml(body: &[u8]) -> Result<Value, CodecError> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_slice(body) {
        let value = Value::deserialize(document).map_err(|e| yaml_error(&e))?;
        documents.push(value);
    }
    // Empty documents (a leading or trailing `---`) decode as null and are not objects.
    documents.retain(|d| !d.is_null());
    match documents.len() {
        0 => Err(CodecError::Empty),
        1 => Ok(documents.pop().unwrap_or(Value::Null)),
        n => Err(CodecError::MultipleDocuments(n)),
    }
}

/// Encodes a response body as JSON or YAML.
pub fn encode(value: &Value, format: Format) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| CodecError::Encode {
            format: "json",
            detail: e.to_string(),
        }),
        Format::Yaml => serde_yaml::to_string(value)
            .map(String::into_bytes)
            .map_err(|e| CodecError::Encode {
                format: "yaml",
                detail: e.to_string(),
            }),
        Format::Protobuf => Err(CodecError::Encode {
            format: "protobuf",
            detail: "protobuf responses are not produced; negotiate application/json".into(),
        }),
    }
}

/// One media range of an `Accept` header, with its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    pub kind: String,
    pub subtype: String,
    pub params: BTreeMap<String, String>,
    pub q: f32,
}

/// Parses an `Accept` header into media ranges, in the client's order, dropping `q=0` ranges.
pub fn parse_accept(header: &str) -> Vec<MediaRange> {
    let mut out = Vec::new();
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let essence = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let Some((kind, subtype)) = essence.split_once('/') else {
            continue;
        };
        let mut params = BTreeMap::new();
        let mut q = 1.0f32;
        for p in pieces {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"').to_string();
            if k == "q" {
                q = v.parse().unwrap_or(1.0);
            } else {
                params.insert(k, v);
            }
        }
        if q > 0.0 {
            out.push(MediaRange {
                kind: kind.trim().into(),
                subtype: subtype.trim().into(),
                params,
                q,
            });
        }
    }
    // stable: equal q keeps the client's order
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// What an endpoint can render besides the plain object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// The resource itself (or its List).
    Object,
    /// `meta.k8s.io/v1` (or v1beta1) `Table`.
    Table,
    /// `meta.k8s.io/v1` `PartialObjectMetadata` / `PartialObjectMetadataList`.
    PartialObjectMetadata,
    /// `apidiscovery.k8s.io/v2` (or v2beta1) `APIGroupDiscoveryList`.
    AggregatedDiscovery,
}

/// The negotiated response form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub format: Format,
    pub rendering: Rendering,
    /// The group version of the rendering (`v1`, `v1beta1`, `v2`, `v2beta1`), when not `Object`.
    pub version: Option<String>,
    /// The exact `Content-Type` to answer with.
    pub content_type: String,
}

/// No acceptable response form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "none of the accepted media types {accept:?} can be served; accept application/json or application/yaml{extra}"
)]
pub struct NotAcceptable {
    pub accept: String,
    extra: String,
}

fn plain(format: Format) -> Choice {
    let content_type = match format {
        Format::Yaml => "application/yaml",
        _ => "application/json",
    };
    Choice {
        format,
        rendering: Rendering::Object,
        version: None,
        content_type: content_type.into(),
    }
}

fn as_choice(range: &MediaRange, allowed: &[Rendering]) -> Option<Choice> {
    let format = match (range.kind.as_str(), range.subtype.as_str()) {
        ("application", "json") | ("application", "*") | ("*", "*") => Format::Json,
        ("application", "yaml") => Format::Yaml,
        _ => return None,
    };
    let Some(as_) = range.params.get("as") else {
        return Some(plain(format));
    };
    let group = range.params.get("g").map(String::as_str).unwrap_or("");
    let version = range.params.get("v").map(String::as_str).unwrap_or("");
    let (rendering, versions): (Rendering, &[&str]) = match (as_.as_str(), group) {
        ("Table", "meta.k8s.io") => (Rendering::Table, &["v1", "v1beta1"]),
        ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io") => {
            (Rendering::PartialObjectMetadata, &["v1", "v1beta1"])
        }
        ("APIGroupDiscoveryList", "apidiscovery.k8s.io") => {
            (Rendering::AggregatedDiscovery, &["v2", "v2beta1"])
        }
        _ => return None,
    };
    if !allowed.contains(&rendering) || !versions.contains(&version) || format != Format::Json {
        return None;
    }
    // Parameter order matters to kubectl for discovery (it compares the header verbatim).
    let content_type = match rendering {
        Rendering::AggregatedDiscovery => {
            format!("application/json;g=apidiscovery.k8s.io;v={version};as={as_}")
        }
        _ => format!("application/json;as={as_};v={version};g={group}"),
    };
    Some(Choice {
        format,
        rendering,
        version: Some(version.to_string()),
        content_type,
    })
}

/// Picks the response form for an `Accept` header. `allowed` lists the renderings the endpoint
/// supports besides the plain object. No header, or `*/*`, gives plain JSON; protobuf ranges are
/// skipped (kubectl always lists `application/json` after them).
pub fn negotiate(accept: Option<&str>, allowed: &[Rendering]) -> Result<Choice, NotAcceptable> {
    let header = accept.unwrap_or("").trim();
    if header.is_empty() {
        return Ok(plain(Format::Json));
    }
    let ranges = parse_accept(header);
    if let Some(choice) = ranges.iter().find_map(|r| as_choice(r, allowed)) {
        return Ok(choice);
    }
    let extra = if allowed.contains(&Rendering::Table) {
        " or application/json;as=Table;v=v1;g=meta.k8s.io".to_string()
    } else {
        String::new()
    };
    Err(NotAcceptable {
        accept: header.to_string(),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const TBL: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    const AGG: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn kubectl_table_accept_negotiates_table_v1() {
        let c = negotiate(Some(TBL), &[Rendering::Table]).unwrap();
        assert_eq!(c.rendering, Rendering::Table);
        assert_eq!(
            c.content_type,
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        );
    }

    #[test]
    fn table_accept_falls_back_to_json_where_tables_are_not_served() {
        let c = negotiate(Some(TBL), &[]).unwrap();
        assert_eq!(c, plain(Format::Json));
    }

    #[test]
    fn aggregated_discovery_content_type_is_exact() {
        let c = negotiate(Some(AGG), &[Rendering::AggregatedDiscovery]).unwrap();
        assert_eq!(
            c.content_type,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        // kubectl 1.27-1.29 ask for v2beta1 only
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let c = negotiate(Some(old), &[Rendering::AggregatedDiscovery]).unwrap();
        assert_eq!(c.version.as_deref(), Some("v2beta1"));
    }

    #[test]
    fn protobuf_first_accept_gets_json() {
        let c = negotiate(
            Some("application/vnd.kubernetes.protobuf,application/json"),
            &[],
        )
        .unwrap();
        assert_eq!(c.content_type, "application/json");
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf"), &[]).is_err());
    }

    #[test]
    fn yaml_and_quality_are_honoured() {
        let c = negotiate(Some("application/json;q=0.5, application/yaml"), &[]).unwrap();
        assert_eq!(c.format, Format::Yaml);
        let c = negotiate(Some("application/json, */*"), &[]).unwrap();
        assert_eq!(c.format, Format::Json);
        let err = negotiate(Some("text/html"), &[Rendering::Table])
            .unwrap_err()
            .to_string();
        assert!(err.contains("as=Table"), "{err}");
    }

    #[test]
    fn json_error_has_line_and_column() {
        let err =
            decode_body("application/json", b"{\n  \"a\": x\n}", Limits::default()).unwrap_err();
        match err {
            CodecError::Json { line, column, .. } => assert_eq!((line, column), (2, 8)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn yaml_decodes_to_json_value() {
        let v = decode_body(
            "application/yaml",
            b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}})
        );
        let v = decode_body(
            "application/apply-patch+yaml",
            b"{\"kind\":\"Pod\"}",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(v["kind"], "Pod");
    }

    #[test]
    fn yaml_multi_document_is_refused() {
        let err =
            decode_body("application/yaml", b"a: 1\n---\nb: 2\n", Limits::default()).unwrap_err();
        assert!(matches!(err, CodecError::MultipleDocuments(2)), "{err}");
        // a document marker alone is not a second object
        assert!(decode_body("application/yaml", b"---\na: 1\n---\n", Limits::default()).is_ok());
    }

    #[test]
    fn yaml_error_has_line_and_column() {
        let err = decode_body("application/yaml", b"a: 1\nb: [1, 2\n", Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at line"), "{err}");
    }

    #[test]
    fn yaml_alias_bomb_is_rejected_quickly() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
            bomb.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        let started = Instant::now();
        let err = decode_body("application/yaml", bomb.as_bytes(), Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.contains("repetition limit"), "{err}");
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode_body("application/json", deep.as_bytes(), Limits::default()).is_err());
        let deep_yaml = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = decode_body("application/yaml", deep_yaml.as_bytes(), Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("recursion limit"), "{err}");
    }

    #[test]
    fn oversized_and_unknown_bodies_are_refused() {
        let limits = Limits { max_body_bytes: 4 };
        assert!(matches!(
            decode_body("application/json", b"{\"a\":1}", limits),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_body("text/plain", b"x", Limits::default()),
            Err(CodecError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            decode_body("application/json", b"  ", Limits::default()),
            Err(CodecError::Empty)
        ));
    }

    #[test]
    fn yaml_encoding_round_trips() {
        let v = serde_json::json!({"kind":"Pod","spec":{"containers":[{"name":"a"}]}});
        let bytes = encode(&v, Format::Yaml).unwrap();
        assert_eq!(decode(Format::Yaml, &bytes, Limits::default()).unwrap(), v);
    }
}
