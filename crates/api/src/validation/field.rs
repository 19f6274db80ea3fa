//! Field errors in the form of apimachinery `pkg/util/validation/field/errors.go`: an error type
//! (`Required value`, `Invalid value`, ...), the field path (`spec.containers[0].image`), the bad
//! value rendered like Go's `%q`/`%v`/`%#v`, and a detail; plus [`Invalid`], the list of them that
//! becomes a 422 `Status`.
//!
//! Callers that validate secret material pass [`BadValue::Redacted`] so the content never reaches a
//! message; nothing here ever reads object data on its own.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::status::quote;

/// The kinds of field error upstream knows, with their `StatusCause` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// `FieldValueNotFound` / `Not found`.
    NotFound,
    /// `FieldValueRequired` / `Required value`.
    Required,
    /// `FieldValueDuplicate` / `Duplicate value`.
    Duplicate,
    /// `FieldValueInvalid` / `Invalid value`.
    Invalid,
    /// `FieldValueNotSupported` / `Unsupported value`.
    NotSupported,
    /// `FieldValueForbidden` / `Forbidden`.
    Forbidden,
    /// `FieldValueTooLong` / `Too long`.
    TooLong,
    /// `FieldValueTooMany` / `Too many`.
    TooMany,
    /// `FieldValueTypeInvalid` / `Invalid value`.
    TypeInvalid,
    /// `InternalError` / `Internal error`.
    Internal,
}

impl ErrorType {
    /// The `StatusCause.reason` string.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
            ErrorType::Internal => "InternalError",
        }
    }

    /// The human prefix of the message body.
    pub fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// The offending value, rendered the way Go's `field.Error.ErrorBody` prints it.
#[derive(Clone, PartialEq)]
pub enum BadValue {
    /// Not shown at all.
    Omit,
    /// Go `null`.
    Null,
    /// A string, printed quoted (`%q`).
    Str(String),
    /// An integer, printed bare.
    Int(i64),
    /// A float, printed bare.
    Float(f64),
    /// A boolean, printed bare.
    Bool(bool),
    /// Already rendered text (Go `%#v` of a struct or map), printed as is.
    Raw(String),
    /// Secret material: printed as upstream does, `"<secret contents redacted>"`.
    Redacted,
}

impl fmt::Debug for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Redacted => f.write_str("Redacted"),
            other => f.write_str(&other.render().unwrap_or_else(|| "Omit".into())),
        }
    }
}

impl BadValue {
    fn render(&self) -> Option<String> {
        match self {
            BadValue::Omit => None,
            BadValue::Null => Some("null".into()),
            BadValue::Str(s) => Some(quote(s)),
            BadValue::Int(i) => Some(i.to_string()),
            BadValue::Float(x) => Some(x.to_string()),
            BadValue::Bool(b) => Some(b.to_string()),
            BadValue::Raw(s) => Some(s.clone()),
            BadValue::Redacted => Some(quote("<secret contents redacted>")),
        }
    }

    /// The rendering of a JSON value: scalars as Go prints them, string maps as
    /// `map[string]string{"a":"b"}`, anything else as compact JSON.
    pub fn from_json(v: &Value) -> BadValue {
        match v {
            Value::Null => BadValue::Null,
            Value::Bool(b) => BadValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => BadValue::Int(i),
                None => BadValue::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => BadValue::Str(s.clone()),
            Value::Object(m) if m.values().all(Value::is_string) => {
                let sorted: BTreeMap<&str, &str> = m
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                    .collect();
                BadValue::Raw(go_string_map(&sorted))
            }
            other => BadValue::Raw(other.to_string()),
        }
    }
}

/// Go `%#v` of a `map[string]string` (keys sorted, as Go's fmt prints maps).
pub fn go_string_map(m: &BTreeMap<&str, &str>) -> String {
    if m.is_empty() {
        return "map[string]string(nil)".into();
    }
    let inner: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
        .collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

/// A field path such as `spec.containers[0].image` or `data[.dockerconfigjson]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(String);

impl Path {
    /// A root path with one element.
    pub fn new(name: &str) -> Self {
        Path(name.to_string())
    }

    /// The empty path (upstream `field.NewPath("")`).
    pub fn root() -> Self {
        Path(String::new())
    }

    /// `path.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// `path[i]`.
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    /// `path[key]` (keys are not quoted, as upstream).
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One field error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of error.
    pub error_type: ErrorType,
    /// Rendered field path.
    pub field: String,
    /// The offending value.
    pub bad_value: BadValue,
    /// Extra explanation.
    pub detail: String,
}

impl FieldError {
    fn new(
        error_type: ErrorType,
        path: &Path,
        bad_value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            error_type,
            field: path.0.clone(),
            bad_value,
            detail: detail.into(),
        }
    }

    /// `Required value[: detail]`.
    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, path, BadValue::Omit, detail)
    }

    /// `Invalid value: <value>: detail`.
    pub fn invalid(path: &Path, value: BadValue, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, path, value, detail)
    }

    /// `Invalid value: "<s>": detail` for a string value.
    pub fn invalid_str(path: &Path, value: &str, detail: impl Into<String>) -> Self {
        Self::new(
            ErrorType::Invalid,
            path,
            BadValue::Str(value.to_string()),
            detail,
        )
    }

    /// `Unsupported value: "<value>": supported values: "a", "b"`.
    pub fn not_supported(path: &Path, value: &str, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let q: Vec<String> = supported.iter().map(|s| quote(s)).collect();
            format!("supported values: {}", q.join(", "))
        };
        Self::new(
            ErrorType::NotSupported,
            path,
            BadValue::Str(value.to_string()),
            detail,
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: &Path, value: BadValue) -> Self {
        Self::new(ErrorType::Duplicate, path, value, "")
    }

    /// `Forbidden: detail`.
    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, path, BadValue::Omit, detail)
    }

    /// `Too long: may not be more than <max> bytes` (the value is never shown).
    pub fn too_long(path: &Path, max: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            path,
            BadValue::Omit,
            format!("may not be more than {max} bytes"),
        )
    }

    /// `Too many: <n>: must have at most <max> items`.
    pub fn too_many(path: &Path, actual: usize, max: usize) -> Self {
        Self::new(
            ErrorType::TooMany,
            path,
            BadValue::Int(actual as i64),
            format!("must have at most {max} items"),
        )
    }

    /// `Invalid value: <v>: field is immutable`.
    pub fn immutable(path: &Path, value: BadValue) -> Self {
        Self::new(ErrorType::Invalid, path, value, FIELD_IMMUTABLE)
    }

    /// The message body without the field (`Required value`, `Invalid value: "x": ...`).
    pub fn body(&self) -> String {
        let mut s = match self.error_type {
            ErrorType::Required
            | ErrorType::Forbidden
            | ErrorType::TooLong
            | ErrorType::Internal => self.error_type.text().to_string(),
            t => match self.bad_value.render() {
                Some(v) => format!("{}: {v}", t.text()),
                None => t.text().to_string(),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Upstream `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";

/// A non-empty list of field errors: the object is invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    errors: Vec<FieldError>,
}

impl From<Vec<FieldError>> for Invalid {
    fn from(errors: Vec<FieldError>) -> Self {
        Invalid { errors }
    }
}

impl Invalid {
    /// The field errors, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The aggregate text as apimachinery's `ToAggregate().Error()` renders it: one error inline, several
    /// (duplicates dropped) as `[a, b]`.
    pub fn aggregate(&self) -> String {
        let mut seen = std::collections::HashSet::new();
        let msgs: Vec<String> = self
            .errors
            .iter()
            .map(|e| e.to_string())
            .filter(|m| seen.insert(m.clone()))
            .collect();
        if msgs.len() == 1 {
            msgs.into_iter().next().unwrap_or_default()
        } else {
            format!("[{}]", msgs.join(", "))
        }
    }

    /// `<Kind> "<name>" is invalid: <aggregate>`; `qualified_kind` is `Pod` or `Deployment.apps`.
    pub fn status_message(&self, qualified_kind: &str, name: &str) -> String {
        if self.errors.is_empty() {
            format!("{qualified_kind} {} is invalid", quote(name))
        } else {
            format!(
                "{qualified_kind} {} is invalid: {}",
                quote(name),
                self.aggregate()
            )
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.aggregate())
    }
}

impl std::error::Error for Invalid {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_render_like_apimachinery_error_body() {
        let p = Path::new("spec").child("replicas");
        assert_eq!(FieldError::required(&p, "").body(), "Required value");
        assert_eq!(
            FieldError::required(&p, "name or generateName is required").body(),
            "Required value: name or generateName is required"
        );
        assert_eq!(
            FieldError::invalid(&p, BadValue::Int(-1), "must be greater than or equal to 0")
                .to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::too_long(&Path::new("data"), 1048576).to_string(),
            "data: Too long: may not be more than 1048576 bytes"
        );
        assert_eq!(FieldError::forbidden(&p, "nope").body(), "Forbidden: nope");
        assert_eq!(
            FieldError::duplicate(&p, BadValue::Str("a".into())).body(),
            "Duplicate value: \"a\""
        );
        assert_eq!(
            FieldError::invalid(
                &Path::new("data").key(".dockercfg"),
                BadValue::Redacted,
                "unexpected end of JSON input"
            )
            .to_string(),
            "data[.dockercfg]: Invalid value: \"<secret contents redacted>\": unexpected end of JSON input"
        );
        assert_eq!(
            FieldError::not_supported(&p, "x", &[]).body(),
            "Unsupported value: \"x\""
        );
        assert_eq!(
            FieldError::invalid(&p, BadValue::Null, "d").body(),
            "Invalid value: null: d"
        );
    }

    #[test]
    fn string_maps_render_like_go_percent_hash_v() {
        assert_eq!(
            BadValue::from_json(&json!({"b":"2","a":"1"}))
                .render()
                .unwrap(),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(
            BadValue::from_json(&json!({})).render().unwrap(),
            "map[string]string(nil)"
        );
        assert_eq!(BadValue::from_json(&json!(3)).render().unwrap(), "3");
        assert_eq!(BadValue::from_json(&json!([1])).render().unwrap(), "[1]");
    }

    #[test]
    fn redacted_values_never_show_in_debug() {
        let e = FieldError::invalid(&Path::new("data"), BadValue::Redacted, "x");
        assert!(
            !format!("{e:?}").contains("secret contents"),
            "debug shows the placeholder name only"
        );
    }

    #[test]
    fn aggregate_drops_duplicate_messages() {
        let p = Path::new("a");
        let inv = Invalid::from(vec![
            FieldError::required(&p, ""),
            FieldError::required(&p, ""),
        ]);
        assert_eq!(inv.aggregate(), "a: Required value");
        assert_eq!(
            Invalid::from(vec![]).status_message("Pod", "x"),
            "Pod \"x\" is invalid"
        );
    }

    #[test]
    fn paths_render_children_indexes_and_keys() {
        let p = Path::new("spec")
            .child("containers")
            .index(2)
            .child("ports")
            .index(0);
        assert_eq!(p.as_str(), "spec.containers[2].ports[0]");
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
        assert_eq!(Path::root().child("x").as_str(), "x");
    }
}
