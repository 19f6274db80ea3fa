//! Conversion of decoded k8s-pb (prost) messages into the JSON form the Kubernetes JSON
//! serializer uses: camelCase names, embedded Go structs inlined, bytes as base64,
//! `Time` as RFC 3339, `IntOrString` as a number or a string, `Quantity` as a string.
//! It owns only the value mapping; it must never decode wire bytes itself (prost does) nor
//! know which kinds exist (the generated table and `protobuf::decode` do).
//!
//! Written by hand because k8s-pb 0.9 ships neither serde support nor a conversion into
//! k8s-openapi types. Presence follows kubectl's gogo encoder (which writes every non-pointer
//! scalar even when empty): an empty string means "unset" and is dropped, numbers and
//! booleans that were on the wire are kept, and an empty message is dropped only for the
//! fields that are non-pointer structs in Go (where `{}` and absent mean the same thing);
//! a pointer message such as `emptyDir: {}` is kept because its presence carries meaning.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// A value that could not be expressed as JSON, with the JSON path to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConvertError {
    /// JSON field path, outermost first (e.g. `metadata.creationTimestamp`).
    pub path: Vec<String>,
    pub message: String,
}

impl ConvertError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn within(mut self, segment: &str) -> Self {
        self.path.insert(0, segment.to_string());
        self
    }

    pub(crate) fn path_string(&self) -> String {
        self.path.join(".")
    }
}

/// Fields that are non-pointer structs in the Go types: gogo always writes them, so an
/// empty one carries no information and is dropped like the JSON path's defaulting would.
const VALUE_STRUCT_FIELDS: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "strategy",
    "updateStrategy",
    "resources",
];

/// A protobuf message with a JSON form.
pub(crate) trait ToJson {
    /// The JSON value; `Value::Null` means "unset" (dropped by the enclosing field).
    fn to_json(&self) -> Result<Value, ConvertError>;
}

/// A struct field's JSON value, `None` when the field is to be omitted.
pub(crate) trait FieldJson {
    fn field_json(&self, name: &str) -> Result<Option<Value>, ConvertError>;
}

impl FieldJson for Option<String> {
    fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
        Ok(self
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.clone())))
    }
}

macro_rules! scalar_field {
    ($($t:ty),*) => {$(
        impl FieldJson for Option<$t> {
            fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
                Ok(self.map(Value::from))
            }
        }
        impl FieldJson for Vec<$t> {
            fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
                Ok((!self.is_empty()).then(|| Value::Array(self.iter().map(|v| Value::from(*v)).collect())))
            }
        }
    )*};
}
scalar_field!(bool, i32, i64);

impl FieldJson for Option<Vec<u8>> {
    fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
        Ok(self
            .as_ref()
            .filter(|b| !b.is_empty())
            .map(|b| Value::String(BASE64.encode(b))))
    }
}

impl FieldJson for Vec<String> {
    fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
        Ok((!self.is_empty())
            .then(|| Value::Array(self.iter().cloned().map(Value::String).collect())))
    }
}

impl<T: ToJson> FieldJson for Vec<T> {
    fn field_json(&self, name: &str) -> Result<Option<Value>, ConvertError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut items = Vec::with_capacity(self.len());
        for (i, item) in self.iter().enumerate() {
            let v = item
                .to_json()
                .map_err(|e| e.within(&format!("{name}[{i}]")))?;
            items.push(if v.is_null() {
                Value::Object(Map::new())
            } else {
                v
            });
        }
        Ok(Some(Value::Array(items)))
    }
}

impl FieldJson for BTreeMap<String, String> {
    fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
        Ok((!self.is_empty()).then(|| {
            Value::Object(
                self.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )
        }))
    }
}

impl FieldJson for BTreeMap<String, Vec<u8>> {
    fn field_json(&self, _: &str) -> Result<Option<Value>, ConvertError> {
        Ok((!self.is_empty()).then(|| {
            Value::Object(
                self.iter()
                    .map(|(k, v)| (k.clone(), Value::String(BASE64.encode(v))))
                    .collect(),
            )
        }))
    }
}

impl<T: ToJson> FieldJson for BTreeMap<String, T> {
    fn field_json(&self, name: &str) -> Result<Option<Value>, ConvertError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut map = Map::new();
        for (k, v) in self {
            let v = v.to_json().map_err(|e| e.within(&format!("{name}[{k}]")))?;
            map.insert(k.clone(), v);
        }
        Ok(Some(Value::Object(map)))
    }
}

impl<T: ToJson> FieldJson for Option<T> {
    fn field_json(&self, name: &str) -> Result<Option<Value>, ConvertError> {
        let Some(inner) = self else { return Ok(None) };
        let v = inner.to_json().map_err(|e| e.within(name))?;
        Ok(match v {
            Value::Null => None,
            Value::Object(m) if m.is_empty() && VALUE_STRUCT_FIELDS.contains(&name) => None,
            other => Some(other),
        })
    }
}

/// Merges an embedded Go struct's fields into the enclosing JSON object.
pub(crate) fn inline_into<T: ToJson>(
    embedded: &Option<T>,
    map: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    if let Some(inner) = embedded
        && let Value::Object(fields) = inner.to_json()?
    {
        map.extend(fields);
    }
    Ok(())
}

/// Implements [`ToJson`] for a k8s-pb message from its `"jsonName" => rust_field` table.
macro_rules! message_to_json {
    ($ty:path { $($json:literal => $field:ident,)* ; inline [$($inl:ident),*] }) => {
        impl super::convert::ToJson for $ty {
            #[allow(unused_mut)]
            fn to_json(&self) -> Result<serde_json::Value, super::convert::ConvertError> {
                use super::convert::FieldJson as _;
                let mut map = serde_json::Map::new();
                $(
                    if let Some(v) = self.$field.field_json($json)? {
                        map.insert($json.to_string(), v);
                    }
                )*
                $( super::convert::inline_into(&self.$inl, &mut map)?; )*
                Ok(serde_json::Value::Object(map))
            }
        }
    };
}
pub(crate) use message_to_json;

fn rfc3339(seconds: i64, nanos: i32, format: SecondsFormat) -> Result<Value, ConvertError> {
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| ConvertError::new(format!("nanos {nanos} is outside 0..1000000000")))?;
    let t = DateTime::from_timestamp(seconds, nanos).ok_or_else(|| {
        ConvertError::new(format!(
            "seconds {seconds} is outside the representable time range"
        ))
    })?;
    Ok(Value::String(t.to_rfc3339_opts(format, true)))
}

impl ToJson for Time {
    /// metav1.Time: RFC 3339 in UTC with whole seconds; a zero-length Time is unset.
    fn to_json(&self) -> Result<Value, ConvertError> {
        match (self.seconds, self.nanos) {
            (None, None) => Ok(Value::Null),
            (s, n) => rfc3339(s.unwrap_or(0), n.unwrap_or(0), SecondsFormat::Secs),
        }
    }
}

impl ToJson for MicroTime {
    /// metav1.MicroTime: RFC 3339 in UTC with six fractional digits.
    fn to_json(&self) -> Result<Value, ConvertError> {
        match (self.seconds, self.nanos) {
            (None, None) => Ok(Value::Null),
            (s, n) => rfc3339(s.unwrap_or(0), n.unwrap_or(0), SecondsFormat::Micros),
        }
    }
}

impl ToJson for IntOrString {
    /// `type` 0 is an int, 1 a string (intstr.Type).
    fn to_json(&self) -> Result<Value, ConvertError> {
        match self.r#type.unwrap_or(0) {
            0 => Ok(Value::from(self.int_val.unwrap_or(0))),
            1 => Ok(Value::String(self.str_val.clone().unwrap_or_default())),
            other => Err(ConvertError::new(format!(
                "IntOrString type {other} is neither 0 (int) nor 1 (string)"
            ))),
        }
    }
}

impl ToJson for Quantity {
    fn to_json(&self) -> Result<Value, ConvertError> {
        Ok(self
            .string
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null))
    }
}

fn raw_json(raw: &Option<Vec<u8>>, what: &str) -> Result<Value, ConvertError> {
    match raw.as_deref() {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| ConvertError::new(format!("{what} raw bytes are not JSON: {e}"))),
    }
}

impl ToJson for RawExtension {
    fn to_json(&self) -> Result<Value, ConvertError> {
        raw_json(&self.raw, "RawExtension")
    }
}

impl ToJson for FieldsV1 {
    fn to_json(&self) -> Result<Value, ConvertError> {
        raw_json(&self.raw, "FieldsV1")
    }
}
