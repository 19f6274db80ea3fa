//! The HTTP edge of object formats: picks the request body decoder from `Content-Type` (JSON, YAML, Kubernetes
//! protobuf), the response form from `Accept` (JSON, YAML, server-side Table), applies patches, and evaluates
//! label/field selectors. The formats themselves belong to the `wire` crate; this module only wires HTTP
//! headers and query parameters to them and must never implement a format of its own, nor log a body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use api::Status;
use api::resources::ResourceInfo;

use crate::app::Call;
use wire::codec::{Format, Rendering};

/// The JSON media type.
pub const JSON: &str = "application/json";
/// The YAML media type.
pub const YAML: &str = "application/yaml";
/// Kubernetes protobuf.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
/// The PartialObjectMetadata response media type.
pub const METADATA: &str = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io";
/// The Table response media type kubectl asks for.
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Response representation chosen from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Table,
    /// `meta.k8s.io/v1` PartialObjectMetadata(List), as client-go metadata informers and kube-rs ask.
    Metadata,
}

/// `fieldValidation` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_call(call: &Call) -> Result<Self, Status> {
        match call.param("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(Status::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Picks the response form from `Accept` (wire's negotiation; Table is offered on every resource endpoint).
pub fn output(call: &Call) -> Result<Output, Status> {
    let accept = call
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let choice = wire::codec::negotiate(
        accept,
        &[Rendering::Table, Rendering::PartialObjectMetadata],
    )
    .map_err(|_| Status::not_acceptable(&[JSON, YAML, TABLE]))?;
    Ok(match (choice.rendering, choice.format) {
        (Rendering::Table, _) => Output::Table,
        (Rendering::PartialObjectMetadata, _) => Output::Metadata,
        (_, Format::Yaml) => Output::Yaml,
        _ => Output::Json,
    })
}

/// Maps a body decoding error to its Status (413 for size, 415 for the media type, else 400).
pub fn codec_status(err: wire::codec::CodecError) -> Status {
    use wire::codec::CodecError;
    match err {
        CodecError::TooLarge { limit, .. } => Status::request_entity_too_large(limit),
        CodecError::UnsupportedMediaType(ct) => {
            let _ = ct;
            Status::unsupported_media_type(&[JSON, YAML, PROTOBUF])
        }
        other => Status::bad_request(other.to_string()),
    }
}

fn limits() -> wire::codec::Limits {
    wire::codec::Limits {
        max_body_bytes: crate::app::MAX_BODY,
    }
}

/// Parses a stored object.
pub fn parse_stored(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Serializes an object for storage.
pub fn to_stored(obj: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(obj).expect("json values serialize"))
}

/// Decodes a create/update body by its Content-Type, then checks unknown fields per `validation`.
pub fn decode_body(
    call: &Call,
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    let ct = call.header(header::CONTENT_TYPE);
    let ct = if ct.trim().is_empty() { JSON } else { ct };
    if !matches!(media_type(ct).as_str(), JSON | YAML | PROTOBUF) {
        return Err(Status::unsupported_media_type(&[JSON, YAML, PROTOBUF]));
    }
    let obj = wire::codec::decode_body(ct, &call.body, limits()).map_err(codec_status)?;
    if !obj.is_object() {
        return Err(Status::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let json_body = (media_type(ct) == JSON).then_some(&call.body[..]);
    check_fields(info, &obj, json_body, validation, warnings)?;
    Ok(obj)
}

/// Decodes a body of a kind outside the resource registry (a `Binding`) by its Content-Type, without
/// unknown-field checks.
pub fn decode_untyped(call: &Call) -> Result<Value, Status> {
    let ct = call.header(header::CONTENT_TYPE);
    let ct = if ct.trim().is_empty() { JSON } else { ct };
    if !matches!(media_type(ct).as_str(), JSON | YAML | PROTOBUF) {
        return Err(Status::unsupported_media_type(&[JSON, YAML, PROTOBUF]));
    }
    let obj = wire::codec::decode_body(ct, &call.body, limits()).map_err(codec_status)?;
    if !obj.is_object() {
        return Err(Status::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(obj)
}

fn decode_yaml(body: &[u8]) -> Result<Value, Status> {
    wire::codec::decode(Format::Yaml, body, limits()).map_err(codec_status)
}

/// Unknown, duplicate and mistyped fields (`api::fields`): a mistyped field is always a 400 (the body does not
/// decode into the kind); unknown and duplicate fields are a 400 under Strict, warnings under Warn.
pub fn check_fields(
    info: &ResourceInfo,
    obj: &Value,
    body: Option<&[u8]>,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<(), Status> {
    let report = api::fields::check(info, obj);
    if let Some(m) = report.mismatches.first() {
        return Err(Status::bad_request(api::fields::type_error(info, m)));
    }
    if validation == FieldValidation::Ignore {
        return Ok(());
    }
    let duplicates = match body {
        Some(b) => api::fields::duplicate_fields(b).unwrap_or_default(),
        None => Vec::new(),
    };
    match validation {
        FieldValidation::Strict => match api::fields::strict_error(&report.unknown, &duplicates) {
            Some(msg) => Err(Status::bad_request(msg)),
            None => Ok(()),
        },
        _ => {
            warnings.extend(api::fields::warnings(&report.unknown, &duplicates));
            Ok(())
        }
    }
}

/// Adds upstream `Warning: 299 - "..."` headers.
pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

fn with_content_type(code: StatusCode, body: Vec<u8>, ct: &'static str) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn encode(code: StatusCode, value: &Value, out: Output) -> Response {
    let (body, ct) = match out {
        Output::Yaml => (
            serde_yaml::to_string(value)
                .expect("yaml serializes")
                .into_bytes(),
            YAML,
        ),
        Output::Table => (serde_json::to_vec(value).expect("json serializes"), TABLE),
        Output::Metadata => (
            serde_json::to_vec(value).expect("json serializes"),
            METADATA,
        ),
        Output::Json => (serde_json::to_vec(value).expect("json serializes"), JSON),
    };
    with_content_type(code, body, ct)
}

/// One object in the requested form.
pub fn respond_object(
    code: StatusCode,
    info: &ResourceInfo,
    obj: Value,
    rev: u64,
    out: &Output,
) -> Response {
    match out {
        Output::Table => encode(code, &table(info, vec![obj], rev, None), Output::Table),
        Output::Metadata => encode(
            code,
            &wire::table::partial_object_metadata(&obj),
            Output::Metadata,
        ),
        other => encode(code, &obj, *other),
    }
}

/// A list in the requested form.
pub fn respond_list(
    info: &ResourceInfo,
    items: Vec<Value>,
    rev: u64,
    cont: Option<String>,
    out: &Output,
) -> Response {
    match out {
        Output::Table => with_content_type(
            StatusCode::OK,
            crate::bridge::encode_table(info, &items, rev, cont.as_deref()),
            TABLE,
        ),
        Output::Metadata => {
            let mut metadata = json!({"resourceVersion": rev.to_string()});
            if let Some(c) = cont {
                metadata["continue"] = json!(c);
            }
            let items: Vec<Value> = items
                .iter()
                .map(wire::table::partial_object_metadata)
                .collect();
            let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
            encode(StatusCode::OK, &list, Output::Metadata)
        }
        other => {
            let mut metadata = json!({"resourceVersion": rev.to_string()});
            if let Some(c) = cont {
                metadata["continue"] = json!(c);
            }
            let list = json!({
                "kind": info.list_kind,
                "apiVersion": info.api_version,
                "metadata": metadata,
                "items": items,
            });
            encode(StatusCode::OK, &list, *other)
        }
    }
}

/// A server-side Table of `objects` (consumed).
pub fn table(info: &ResourceInfo, objects: Vec<Value>, rev: u64, cont: Option<&str>) -> Value {
    crate::bridge::table(info, objects, rev, cont)
}

/// The patch format of a PATCH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_call(call: &Call, _info: &ResourceInfo) -> Result<Self, Status> {
        let ct = media_type(call.header(header::CONTENT_TYPE));
        match ct.as_str() {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            _ => Err(Status::unsupported_media_type(&[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ])),
        }
    }
}

/// The body of a server-side apply to an absent object: the applied configuration itself.
pub fn apply_create_body(
    call: &Call,
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    let obj = decode_yaml(&call.body)?;
    if !obj.is_object() {
        return Err(Status::bad_request(
            "the apply configuration must be an object",
        ));
    }
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != info.api_version || kind != info.kind {
        return Err(Status::bad_request(format!(
            "the apply configuration must have apiVersion {:?} and kind {:?}, got {api_version:?} and {kind:?}",
            info.api_version, info.kind
        )));
    }
    let json_body = call
        .body
        .trim_ascii_start()
        .starts_with(b"{")
        .then_some(&call.body[..]);
    check_fields(info, &obj, json_body, validation, warnings)?;
    Ok(obj)
}

/// Applies the request's patch to `old`.
pub fn apply_patch(
    call: &Call,
    info: &ResourceInfo,
    kind: PatchKind,
    validation: FieldValidation,
    old: &Value,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    crate::bridge::patch(call, info, kind, validation, old, warnings)
}

/// Label and field selectors of a list, watch or deletecollection.
pub struct Selectors {
    inner: crate::bridge::Selectors,
}

impl Selectors {
    pub fn parse(call: &Call, info: &ResourceInfo) -> Result<Self, Status> {
        Ok(Selectors {
            inner: crate::bridge::Selectors::parse(
                call.param("labelSelector").unwrap_or(""),
                call.param("fieldSelector").unwrap_or(""),
                info,
            )?,
        })
    }
    pub fn matches(&self, obj: &Value) -> bool {
        self.inner.matches(obj)
    }
}

/// Upstream QoS class of a pod: BestEffort without requests/limits, Guaranteed when every container's requests
/// equal its limits for cpu and memory, else Burstable.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| {
            pod.get("spec")
                .and_then(|s| s.get(*k))
                .and_then(Value::as_array)
        })
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c
            .get("resources")
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object);
        let lim = c
            .get("resources")
            .and_then(|r| r.get("limits"))
            .and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Namespaces carry the `kubernetes` finalizer in `spec.finalizers` from creation (upstream `PrepareForCreate`).
pub fn namespace_defaults(obj: &mut Value) {
    obj["spec"]["finalizers"] = json!(["kubernetes"]);
}
