//! The seam to the `wire` crate's Table rendering, patch application and selector evaluation: maps request
//! parameters to wire's calls and wire's errors to upstream Status codes (415 for an unsupported strategic merge,
//! 422 for a failed JSON-patch `test`, 400 otherwise). It must never grow its own copy of a wire format.

use serde_json::{Value, json};

use api::Status;
use api::resources::ResourceInfo;
use wire::patch::PatchError;
use wire::selectors::{FieldSelector, LabelSelector};

use crate::app::Call;
use crate::codec::{self, FieldValidation, PatchKind};

/// A server-side Table of `objects` (rows carry PartialObjectMetadata, the upstream default). The
/// objects are consumed: each row takes its object's metadata without copying it.
pub fn table(info: &ResourceInfo, objects: Vec<Value>, rev: u64, cont: Option<&str>) -> Value {
    let mut t = wire::table::table_owned(
        info.kind,
        objects,
        wire::table::IncludeObject::Metadata,
        chrono::Utc::now(),
    );
    let mut metadata = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    t["metadata"] = metadata;
    t
}

/// [`table`] as JSON bytes, written straight from `objects` (see `wire::table::encode_table`): the list path.
pub fn encode_table(
    info: &ResourceInfo,
    objects: &[Value],
    rev: u64,
    cont: Option<&str>,
) -> Vec<u8> {
    let mut metadata = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    wire::table::encode_table(
        info.kind,
        objects,
        wire::table::IncludeObject::Metadata,
        chrono::Utc::now(),
        &metadata,
    )
}

fn patch_status(info: &ResourceInfo, err: PatchError) -> Status {
    match &err {
        PatchError::UnsupportedStrategicMerge { .. } => Status::unsupported_media_type(&[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]),
        PatchError::JsonPatchOperation { op, .. } if op == "test" => {
            let mut s = Status::bad_request(err.to_string());
            s.code = 422;
            s.reason = "Invalid";
            let _ = info;
            s
        }
        _ => Status::bad_request(err.to_string()),
    }
}

/// Applies the request's patch (JSON, merge, strategic merge or server-side apply) to `old`, then checks the
/// result's fields per `fieldValidation`.
pub fn patch(
    call: &Call,
    info: &ResourceInfo,
    kind: PatchKind,
    validation: FieldValidation,
    old: &Value,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    let format = if kind == PatchKind::Apply {
        wire::codec::Format::Yaml
    } else {
        wire::codec::Format::Json
    };
    let body = wire::codec::decode(
        format,
        &call.body,
        wire::codec::Limits {
            max_body_bytes: crate::app::MAX_BODY,
        },
    )
    .map_err(codec::codec_status)?;
    let target_kind = old.get("kind").and_then(Value::as_str).unwrap_or(info.kind);
    let result = match kind {
        PatchKind::Json => wire::patch::json_patch(old, &body),
        PatchKind::Merge => wire::patch::merge_patch(old, &body),
        PatchKind::Strategic => wire::patch::strategic_merge_patch(target_kind, old, &body),
        PatchKind::Apply => {
            let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
            if api_version != info.api_version || body_kind != info.kind {
                return Err(Status::bad_request(format!(
                    "the apply configuration must have apiVersion {:?} and kind {:?}, got {api_version:?} and {body_kind:?}",
                    info.api_version, info.kind
                )));
            }
            wire::patch::apply(Some(old), &body, target_kind)
        }
    }
    .map_err(|e| patch_status(info, e))?;
    if !result.is_object() {
        return Err(Status::bad_request(
            "the patched object is not a JSON object",
        ));
    }
    if target_kind == info.kind {
        codec::check_fields(info, &result, None, validation, warnings)?;
    }
    Ok(result)
}

/// Parsed `labelSelector` and `fieldSelector`.
pub struct Selectors {
    kind: &'static str,
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

impl Selectors {
    pub fn parse(label: &str, field: &str, info: &ResourceInfo) -> Result<Self, Status> {
        let label = if label.trim().is_empty() {
            None
        } else {
            Some(LabelSelector::parse(label).map_err(|e| Status::bad_request(e.to_string()))?)
        };
        let field = if field.trim().is_empty() {
            None
        } else {
            let f = FieldSelector::parse(field).map_err(|e| Status::bad_request(e.to_string()))?;
            f.check_supported(info.kind)
                .map_err(|e| Status::bad_request(e.to_string()))?;
            Some(f)
        };
        Ok(Selectors {
            kind: info.kind,
            label,
            field,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.label.as_ref().is_none_or(|l| l.matches_object(obj))
            && self
                .field
                .as_ref()
                .is_none_or(|f| f.matches(self.kind, obj))
    }
}
