//! Decoding of `application/vnd.kubernetes.protobuf` request bodies into the JSON object the
//! JSON path would have produced. It owns the `k8s\0` + `runtime.Unknown` envelope, the kind
//! dispatch and the error texts; it must never encode protobuf responses (the apiserver answers
//! JSON, which kubectl accepts), validate or default objects, or touch HTTP.
//!
//! Messages are decoded with the `k8s-pb` crate (prost, proto2 presence), then mapped to JSON
//! by `convert` through a field table generated from k8s-pb and k8s-openapi names
//! (`tools/gen_protobuf_json.py`; k8s-pb has no serde support of its own).

mod convert;
mod generated;

use k8s_pb::api::{apps::v1 as apps, core::v1 as core};
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value};

use convert::ToJson;

/// The four bytes every Kubernetes protobuf body starts with: `k8s\0`.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The `(apiVersion, kind)` pairs this module decodes.
pub const SUPPORTED_KINDS: &[(&str, &str)] = &[
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "ReplicaSet"),
];

/// Why a protobuf body could not be decoded. Every message names the place and ends with the fix.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error(
        "protobuf body does not start with the kubernetes magic 6b387300 (\"k8s\\0\") at byte offset 0, found {found}; send the object as application/json or as a kubernetes protobuf envelope"
    )]
    MissingMagic { found: String },
    #[error(
        "malformed runtime.Unknown envelope in protobuf body at byte offset {offset}: {detail}; send the object as application/json"
    )]
    Envelope { offset: usize, detail: String },
    #[error(
        "protobuf envelope has no typeMeta.apiVersion/kind (got apiVersion {api_version:?}, kind {kind:?}); send the object as application/json"
    )]
    MissingTypeMeta { api_version: String, kind: String },
    #[error(
        "protobuf envelope uses contentEncoding {0:?}, which is not supported; send the object unencoded or as application/json"
    )]
    ContentEncoding(String),
    #[error(
        "protobuf bodies of {api_version} {kind} are not supported (supported: {supported}); send the object as application/json"
    )]
    UnsupportedKind {
        api_version: String,
        kind: String,
        supported: String,
    },
    #[error(
        "malformed {kind} protobuf object at byte offset {offset} of the body: {detail}; send the object as application/json"
    )]
    Object {
        kind: String,
        offset: usize,
        detail: String,
    },
    #[error(
        "{kind} protobuf field {field} cannot be represented as JSON: {detail}; send the object as application/json"
    )]
    Field {
        kind: String,
        field: String,
        detail: String,
    },
}

/// The `runtime.Unknown` envelope of a Kubernetes protobuf body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub api_version: String,
    pub kind: String,
    /// The encoded object.
    pub raw: Vec<u8>,
    /// Byte offset of `raw` within the whole body (for error positions).
    pub raw_offset: usize,
    pub content_encoding: String,
    pub content_type: String,
}

/// Splits a protobuf body into its envelope: checks the magic, decodes `runtime.Unknown`.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope, ProtobufError> {
    if body.len() < MAGIC.len() || body[..MAGIC.len()] != MAGIC {
        let found = body
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        return Err(ProtobufError::MissingMagic {
            found: if found.is_empty() {
                "an empty body".into()
            } else {
                found
            },
        });
    }
    let rest = &body[MAGIC.len()..];
    if let Some((offset, detail)) = framing_error(rest) {
        return Err(ProtobufError::Envelope {
            offset: MAGIC.len() + offset,
            detail,
        });
    }
    let unknown = Unknown::decode(rest).map_err(|e| ProtobufError::Envelope {
        offset: MAGIC.len(),
        detail: e.to_string(),
    })?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    Ok(Envelope {
        api_version: type_meta.api_version.unwrap_or_default(),
        kind: type_meta.kind.unwrap_or_default(),
        raw_offset: MAGIC.len() + raw_field_offset(rest).unwrap_or(0),
        raw,
        content_encoding: unknown.content_encoding.unwrap_or_default(),
        content_type: unknown.content_type.unwrap_or_default(),
    })
}

/// Decodes a Kubernetes protobuf request body into the JSON object (with `apiVersion` and
/// `kind` first) that the same request sent as JSON would carry.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let env = decode_envelope(body)?;
    if env.api_version.is_empty() || env.kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta {
            api_version: env.api_version,
            kind: env.kind,
        });
    }
    if !env.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(env.content_encoding));
    }
    let object = match (env.api_version.as_str(), env.kind.as_str()) {
        ("v1", "Secret") => object_json::<core::Secret>(&env)?,
        ("v1", "Namespace") => object_json::<core::Namespace>(&env)?,
        ("v1", "ConfigMap") => object_json::<core::ConfigMap>(&env)?,
        ("v1", "ServiceAccount") => object_json::<core::ServiceAccount>(&env)?,
        ("v1", "Pod") => object_json::<core::Pod>(&env)?,
        ("apps/v1", "Deployment") => object_json::<apps::Deployment>(&env)?,
        ("apps/v1", "StatefulSet") => object_json::<apps::StatefulSet>(&env)?,
        ("apps/v1", "ReplicaSet") => object_json::<apps::ReplicaSet>(&env)?,
        _ => {
            return Err(ProtobufError::UnsupportedKind {
                supported: SUPPORTED_KINDS
                    .iter()
                    .map(|(v, k)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                api_version: env.api_version,
                kind: env.kind,
            });
        }
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(env.api_version.clone()));
    out.insert("kind".into(), Value::String(env.kind.clone()));
    if let Value::Object(fields) = object {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

fn object_json<M: Message + Default + ToJson>(env: &Envelope) -> Result<Value, ProtobufError> {
    if let Some((offset, detail)) = framing_error(&env.raw) {
        return Err(ProtobufError::Object {
            kind: env.kind.clone(),
            offset: env.raw_offset + offset,
            detail,
        });
    }
    let message = M::decode(env.raw.as_slice()).map_err(|e| ProtobufError::Object {
        kind: env.kind.clone(),
        offset: env.raw_offset,
        detail: e.to_string(),
    })?;
    message.to_json().map_err(|e| ProtobufError::Field {
        kind: env.kind.clone(),
        field: e.path_string(),
        detail: e.message,
    })
}

/// Reads a base-128 varint at `pos`; returns (value, next position).
fn varint(buf: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(pos)?;
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

/// Walks the top-level fields of a protobuf message and reports the first framing error
/// (truncated varint, bad wire type, length past the end) with its byte offset.
fn framing_error(buf: &[u8]) -> Option<(usize, String)> {
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let Some((key, next)) = varint(buf, pos) else {
            return Some((start, "truncated field tag".into()));
        };
        pos = next;
        let field = key >> 3;
        if field == 0 {
            return Some((start, "field number 0 is invalid".into()));
        }
        match key & 7 {
            0 => match varint(buf, pos) {
                Some((_, n)) => pos = n,
                None => return Some((start, format!("field {field}: truncated varint"))),
            },
            1 => pos += 8,
            5 => pos += 4,
            2 => match varint(buf, pos) {
                Some((len, n)) => match usize::try_from(len).ok().and_then(|l| n.checked_add(l)) {
                    Some(end) => pos = end,
                    None => return Some((start, format!("field {field}: length {len} overflows"))),
                },
                None => return Some((start, format!("field {field}: truncated length"))),
            },
            wt => return Some((start, format!("field {field}: unsupported wire type {wt}"))),
        }
        if pos > buf.len() {
            return Some((
                start,
                format!(
                    "field {field} runs past the end of the message ({} bytes)",
                    buf.len()
                ),
            ));
        }
    }
    None
}

/// Offset of the payload of field 2 (`raw`) inside a well-framed `runtime.Unknown`.
fn raw_field_offset(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < buf.len() {
        let (key, next) = varint(buf, pos)?;
        pos = next;
        match key & 7 {
            0 => pos = varint(buf, pos)?.1,
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let (len, n) = varint(buf, pos)?;
                if key >> 3 == 2 {
                    return Some(n);
                }
                pos = n + usize::try_from(len).ok()?;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw.to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn body_without_magic_is_refused_with_what_was_found() {
        let err = decode(b"{\"kind\":\"Secret\"}").unwrap_err().to_string();
        assert!(err.contains("found 7b226b69"), "{err}");
        assert!(err.contains("application/json"), "{err}");
        assert!(decode(b"").unwrap_err().to_string().contains("empty body"));
    }

    #[test]
    fn truncated_object_reports_byte_offset() {
        // Secret with field 1 (metadata) claiming 100 bytes but carrying 2.
        let body = envelope("v1", "Secret", &[0x0a, 100, 0x0a, 0x00]);
        // raw (4 bytes) is followed by the empty contentEncoding and contentType fields (2 bytes each)
        let raw_at = body.len() - 8;
        let err = decode(&body).unwrap_err();
        match &err {
            ProtobufError::Object { kind, offset, .. } => {
                assert_eq!(kind, "Secret");
                assert_eq!(*offset, raw_at);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("runs past the end"), "{err}");
    }

    #[test]
    fn unsupported_kind_lists_supported_ones() {
        let err = decode(&envelope("v1", "Service", &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("v1 Service are not supported"), "{err}");
        assert!(err.contains("apps/v1 Deployment"), "{err}");
    }

    #[test]
    fn envelope_without_type_meta_is_refused() {
        let mut body = MAGIC.to_vec();
        body.extend(
            Unknown {
                raw: Some(vec![]),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::MissingTypeMeta { .. })
        ));
    }

    #[test]
    fn invalid_utf8_string_is_reported_with_field() {
        // Namespace.metadata.name = [0xff]
        let body = envelope("v1", "Namespace", &[0x0a, 0x03, 0x0a, 0x01, 0xff]);
        let err = decode(&body).unwrap_err().to_string();
        assert!(err.contains("malformed Namespace protobuf object"), "{err}");
        assert!(err.to_lowercase().contains("utf-8"), "{err}");
    }

    #[test]
    fn pod_fields_map_to_kubernetes_json_names() {
        use k8s_pb::api::core::v1 as c;
        use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
        use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
        let pod = c::Pod {
            metadata: Some(ObjectMeta {
                name: Some("p".into()),
                namespace: Some(String::new()),
                creation_timestamp: Some(Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(5),
                }),
                ..Default::default()
            }),
            spec: Some(c::PodSpec {
                host_ipc: Some(true),
                volumes: vec![c::Volume {
                    name: Some("scratch".into()),
                    volume_source: Some(c::VolumeSource {
                        empty_dir: Some(c::EmptyDirVolumeSource {
                            medium: Some(String::new()),
                            size_limit: None,
                        }),
                        ..Default::default()
                    }),
                }],
                containers: vec![c::Container {
                    name: Some("app".into()),
                    env_from: vec![c::EnvFromSource {
                        secret_ref: Some(c::SecretEnvSource {
                            local_object_reference: Some(c::LocalObjectReference {
                                name: Some("creds".into()),
                            }),
                            optional: None,
                        }),
                        ..Default::default()
                    }],
                    readiness_probe: Some(c::Probe {
                        handler: Some(c::ProbeHandler {
                            http_get: Some(c::HttpGetAction {
                                port: Some(IntOrString {
                                    r#type: Some(1),
                                    int_val: None,
                                    str_val: Some("http".into()),
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        period_seconds: Some(5),
                        ..Default::default()
                    }),
                    resources: Some(c::ResourceRequirements {
                        limits: [(
                            "cpu".to_string(),
                            k8s_pb::apimachinery::pkg::api::resource::Quantity {
                                string: Some("500m".into()),
                            },
                        )]
                        .into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let json = decode(&envelope("v1", "Pod", &pod.encode_to_vec())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "creationTimestamp": "2023-11-14T22:13:20Z"},
                "spec": {
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "containers": [{
                        "name": "app",
                        "envFrom": [{"secretRef": {"name": "creds"}}],
                        "resources": {"limits": {"cpu": "500m"}},
                        "readinessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 5}
                    }],
                    "hostIPC": true
                }
            })
        );
    }

    #[test]
    fn int_or_string_int_form_is_a_number() {
        use k8s_pb::api::apps::v1 as a;
        use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
        let d = a::Deployment {
            spec: Some(a::DeploymentSpec {
                strategy: Some(a::DeploymentStrategy {
                    r#type: Some("RollingUpdate".into()),
                    rolling_update: Some(a::RollingUpdateDeployment {
                        max_surge: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(2),
                            str_val: None,
                        }),
                        max_unavailable: Some(IntOrString {
                            r#type: Some(1),
                            int_val: None,
                            str_val: Some("25%".into()),
                        }),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = decode(&envelope("apps/v1", "Deployment", &d.encode_to_vec())).unwrap();
        assert_eq!(
            json["spec"]["strategy"]["rollingUpdate"],
            serde_json::json!({"maxSurge": 2, "maxUnavailable": "25%"})
        );
    }

    #[test]
    fn secret_bytes_become_base64_and_bad_time_is_named() {
        use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
        let s = core::Secret {
            metadata: Some(ObjectMeta {
                creation_timestamp: Some(Time {
                    seconds: Some(i64::MAX),
                    nanos: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = decode(&envelope("v1", "Secret", &s.encode_to_vec()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field metadata.creationTimestamp"), "{err}");
        let s = core::Secret {
            data: [("k".to_string(), vec![0u8, 255])].into(),
            string_data: [("plain".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        let json = decode(&envelope("v1", "Secret", &s.encode_to_vec())).unwrap();
        assert_eq!(json["data"]["k"], "AP8=");
        assert_eq!(json["stringData"]["plain"], "v");
    }
}
