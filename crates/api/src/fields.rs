//! Unknown-, duplicate- and wrongly-typed-field detection behind `fieldValidation=Strict|Warn|Ignore`,
//! with upstream's texts: `strict decoding error: unknown field "spec.containers[0].imagee"` (400) or,
//! for Warn, one `unknown field "..."` warning per field.
//!
//! Approach: the decoded object is walked against the OpenAPI component schemas of [`crate::openapi`]
//! (k8s-openapi's copies of the upstream schemas, plus RegistryHost's). Compared with deserializing into
//! the k8s-openapi struct and diffing the re-serialized output, the walk reports every unknown field at
//! its exact input path in one pass, covers RegistryHost (which has no Rust type), never copies a value
//! into a message (serde's type errors quote the offending value, which for a Secret is the secret),
//! and allocates nothing but the report. Duplicate keys cannot survive parsing into a `Value`, so
//! [`duplicate_fields`] scans the raw JSON bytes instead. `null` values are ignored everywhere, as Go's
//! decoder ignores them. This module never mutates objects.

use std::collections::HashSet;

use base64::Engine as _;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::openapi;
use crate::resources::ResourceInfo;

/// A field whose JSON type does not match the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    /// Path like `spec.containers[0].ports[0].containerPort`.
    pub path: String,
    /// What the schema wants (`int32`, `string`, `[]object`, `base64 bytes`, ...).
    pub expected: String,
    /// JSON type found (`string`, `number`, `object`, ...), or `invalid base64` for byte fields.
    pub found: String,
}

/// The outcome of walking an object against its schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Unknown field paths, without leading dot: `spec.containers[0].imagee`.
    pub unknown: Vec<String>,
    /// Fields of the wrong JSON type.
    pub mismatches: Vec<TypeMismatch>,
}

/// Unknown field paths of `obj` (without leading dot, in document order).
pub fn unknown_fields(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    check(info, obj).unknown
}

/// Walks `obj` against the schema of `info`'s kind.
pub fn check(info: &ResourceInfo, obj: &Value) -> Report {
    let mut report = Report::default();
    let schemas = openapi::schemas();
    if let Some(schema) = schemas.get(info.schema_name) {
        walk(schemas, schema, obj, "", &mut report);
    }
    report
}

/// Upstream's strict-decoding message for the unknown and duplicate fields found, `None` if there are
/// none: `strict decoding error: unknown field "a", duplicate field "b"`.
pub fn strict_error(unknown: &[String], duplicates: &[String]) -> Option<String> {
    let parts = field_messages(unknown, duplicates);
    if parts.is_empty() {
        None
    } else {
        Some(format!("strict decoding error: {}", parts.join(", ")))
    }
}

/// The `fieldValidation=Warn` warnings (one per field), to send as `Warning: 299 - "<text>"` headers.
pub fn warnings(unknown: &[String], duplicates: &[String]) -> Vec<String> {
    field_messages(unknown, duplicates)
}

fn field_messages(unknown: &[String], duplicates: &[String]) -> Vec<String> {
    unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .chain(
            duplicates
                .iter()
                .map(|p| format!("duplicate field \"{p}\"")),
        )
        .collect()
}

/// Upstream's 400 text for a body that does not decode into the kind:
/// `Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field
/// spec.containers[0].ports[0].containerPort of type int32`.
pub fn type_error(info: &ResourceInfo, m: &TypeMismatch) -> String {
    let detail = if m.found == "invalid base64" {
        format!("illegal base64 data in field {}", m.path)
    } else if m.found == "invalid quantity" {
        format!(
            "quantities must match the regular expression '{QUANTITY_PATTERN}' (field {})",
            m.path
        )
    } else {
        format!(
            "json: cannot unmarshal {} into Go struct field {} of type {}",
            m.found, m.path, m.expected
        )
    };
    format!(
        "{} in version {:?} cannot be handled as a {}: {detail}",
        info.kind, info.version, info.kind
    )
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Follows `$ref` and single-element `allOf` wrappers to the schema that describes the value.
fn resolve<'a>(schemas: &'a Map<String, Value>, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix("#/components/schemas/")
                .and_then(|n| schemas.get(n))
            {
                Some(s) => schema = s,
                None => return schema,
            }
        } else if let Some(Value::Array(all)) = schema.get("allOf")
            && all.len() == 1
        {
            schema = &all[0];
        } else {
            return schema;
        }
    }
    schema
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type(schema: &Value) -> String {
    match (
        schema.get("type").and_then(Value::as_str),
        schema.get("format").and_then(Value::as_str),
    ) {
        (Some("integer"), Some(f)) => f.to_string(),
        (Some("integer"), None) => "int64".into(),
        (Some("number"), _) => "float64".into(),
        (Some("boolean"), _) => "bool".into(),
        (Some("string"), Some("byte")) => "[]uint8".into(),
        (Some("string"), _) => "string".into(),
        (Some("array"), _) => "[]object".into(),
        _ => "object".into(),
    }
}

/// Upstream's `resource.ParseQuantity` pattern, quoted in its error message.
const QUANTITY_PATTERN: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";
const QUANTITY_SCHEMA: &str = "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Whether `s` parses as a `resource.Quantity`: a signed decimal number followed by nothing, a binary
/// (`Ki`..`Ei`) or decimal (`n`, `u`, `m`, `k`, `M`..`E`) suffix, or a decimal exponent (`e3`, `E-2`).
pub fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    match suffix.strip_prefix(['e', 'E']) {
        Some(exp) => {
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    value: &Value,
    path: &str,
    report: &mut Report,
) {
    if value.is_null() {
        return;
    }
    if schema.get("$ref").and_then(Value::as_str) == Some(QUANTITY_SCHEMA)
        && let Some(s) = value.as_str()
        && !is_quantity(s)
    {
        report.mismatches.push(TypeMismatch {
            path: path.into(),
            expected: "resource.Quantity".into(),
            found: "invalid quantity".into(),
        });
        return;
    }
    let schema = resolve(schemas, schema);
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_string() || value.is_number()) {
            report.mismatches.push(TypeMismatch {
                path: path.into(),
                expected: "string or int".into(),
                found: json_type(value).into(),
            });
        }
        return;
    }
    let mismatch = |report: &mut Report| {
        report.mismatches.push(TypeMismatch {
            path: path.into(),
            expected: go_type(schema),
            found: json_type(value).into(),
        });
    };
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => match value.as_str() {
            None => mismatch(report),
            Some(s) if schema.get("format").and_then(Value::as_str) == Some("byte") => {
                if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                    report.mismatches.push(TypeMismatch {
                        path: path.into(),
                        expected: "[]uint8".into(),
                        found: "invalid base64".into(),
                    });
                }
            }
            Some(_) => {}
        },
        Some("integer") => {
            if !value.as_number().is_some_and(|n| n.is_i64() || n.is_u64()) {
                mismatch(report);
            }
        }
        Some("number") => {
            if !value.is_number() {
                mismatch(report);
            }
        }
        Some("boolean") => {
            if !value.is_boolean() {
                mismatch(report);
            }
        }
        Some("array") => match value.as_array() {
            None => mismatch(report),
            Some(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        walk(schemas, item_schema, item, &format!("{path}[{i}]"), report);
                    }
                }
            }
        },
        Some("object") | None => {
            let Some(obj) = value.as_object() else {
                if schema.get("type").is_some() {
                    mismatch(report);
                }
                return;
            };
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, v) in obj {
                    match props.get(k) {
                        Some(s) => walk(schemas, s, v, &join(path, k), report),
                        None if v.is_null() => {}
                        None => report.unknown.push(join(path, k)),
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, v) in obj {
                    walk(schemas, additional, v, &join(path, k), report);
                }
            }
        }
        Some(_) => {}
    }
}

/// Paths of keys that occur twice in the same JSON object of `body` (`metadata.name`,
/// `spec.containers[0].image`), in document order. Fails only on malformed JSON.
pub fn duplicate_fields(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let mut dups = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Scan {
        path: String::new(),
        dups: &mut dups,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(dups)
}

struct Scan<'a> {
    path: String,
    dups: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Scan {
                path: format!("{}[{i}]", self.path),
                dups: &mut *self.dups,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = join(&self.path, &key);
            if !seen.insert(key) {
                self.dups.push(child.clone());
            }
            map.next_value_seed(Scan {
                path: child,
                dups: &mut *self.dups,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind_name;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"foo","creationTimestamp":null,"labels":{"app":"x"}},"spec":spec,"status":{}})
    }

    #[test]
    fn known_fields_and_kubectl_nulls_pass() {
        let p = pod(
            json!({"containers":[{"name":"a","image":"x","ports":[{"containerPort":80}],
            "resources":{"limits":{"cpu":"1","memory":1024}},"env":[{"name":"A","value":"1"}]}],
            "imagePullSecrets":[{"name":"k"}],"nodeSelector":{"disk":"ssd"}}),
        );
        assert_eq!(check(by_kind_name("Pod").unwrap(), &p), Report::default());
    }

    #[test]
    fn unknown_fields_are_reported_at_their_paths() {
        let p = pod(
            json!({"containerz":[],"containers":[{"name":"a","imagee":"x","ports":[{"containerPort":80,"hostIp":"1"}]}]}),
        );
        let p = {
            let mut p = p;
            p["metadata"]["nam"] = json!("x");
            p["extra"] = json!(1);
            p
        };
        assert_eq!(
            unknown_fields(by_kind_name("Pod").unwrap(), &p),
            [
                "metadata.nam",
                "spec.containerz",
                "spec.containers[0].imagee",
                "spec.containers[0].ports[0].hostIp",
                "extra"
            ]
        );
    }

    #[test]
    fn field_names_are_case_sensitive() {
        let p = pod(json!({"containers":[{"name":"a","Image":"x"}]}));
        assert_eq!(
            unknown_fields(by_kind_name("Pod").unwrap(), &p),
            ["spec.containers[0].Image"]
        );
    }

    #[test]
    fn workloads_secrets_and_registry_hosts_are_checked() {
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},
            "spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}},"strategy":{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}},
              "template":{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"app","image":"i","stdin":false}],"hostNetwork":false}},
              "paused":false,"minReadySecs":0}});
        assert_eq!(
            unknown_fields(by_kind_name("Deployment").unwrap(), &d),
            ["spec.minReadySecs"]
        );
        let s = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{".dockerconfigjson":"e30="},"stringData":{"a":"b"},"type":"Opaque","dat":{}});
        assert_eq!(unknown_fields(by_kind_name("Secret").unwrap(), &s), ["dat"]);
        let r = json!({"apiVersion":"berth.dev/v1","kind":"RegistryHost","metadata":{"name":"r"},"spec":{"host":"r.io","mirror":["m"]}});
        assert_eq!(
            unknown_fields(by_kind_name("RegistryHost").unwrap(), &r),
            ["spec.mirror"]
        );
    }

    #[test]
    fn free_form_fields_are_not_reported() {
        let p = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{"f:containers":{}}}}]},
            "spec":{"containers":[{"name":"a","image":"x"}]}});
        assert_eq!(
            unknown_fields(by_kind_name("Pod").unwrap(), &p),
            Vec::<String>::new()
        );
    }

    #[test]
    fn wrong_types_are_reported_without_values() {
        let info = by_kind_name("Pod").unwrap();
        let p = pod(
            json!({"containers":[{"name":"a","image":"x","ports":[{"containerPort":"80"}],"stdin":"yes"}],"hostNetwork":1}),
        );
        let r = check(info, &p);
        assert_eq!(r.mismatches.len(), 3, "{r:?}");
        assert_eq!(
            type_error(info, &r.mismatches[0]),
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field spec.containers[0].ports[0].containerPort of type int32"
        );
        assert_eq!(r.mismatches[1].path, "spec.containers[0].stdin");
        assert_eq!(r.mismatches[2].expected, "bool");
        let s = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"k":"not base64 hunter2!"}});
        let secrets = by_kind_name("Secret").unwrap();
        let r = check(secrets, &s);
        let msg = type_error(secrets, &r.mismatches[0]);
        assert_eq!(
            msg,
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in field data.k"
        );
        assert!(!msg.contains("hunter2"));
    }

    #[test]
    fn quantities_are_parsed_like_upstream() {
        for q in [
            "1",
            "500m",
            "1.5Gi",
            "+1",
            "-2k",
            "1e3",
            "1E-2",
            "0.5",
            ".5",
            "128974848",
            "129M",
            "123Mi",
            "7n",
        ] {
            assert!(is_quantity(q), "{q}");
        }
        for q in ["", "abc", "1Xi", "1..2", "m", "1e", "1mm", "Gi", "1 Gi"] {
            assert!(!is_quantity(q), "{q}");
        }
        let info = by_kind_name("Pod").unwrap();
        let p = pod(
            json!({"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"lots","memory":"1Gi"}}}]}),
        );
        let r = check(info, &p);
        assert_eq!(r.mismatches.len(), 1);
        assert_eq!(
            type_error(info, &r.mismatches[0]),
            "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (field spec.containers[0].resources.limits.cpu)"
        );
    }

    #[test]
    fn strict_and_warn_texts_match_upstream() {
        assert_eq!(
            strict_error(&["spec.containerz".into()], &[]).unwrap(),
            "strict decoding error: unknown field \"spec.containerz\""
        );
        assert_eq!(
            strict_error(&["a".into()], &["metadata.name".into()]).unwrap(),
            "strict decoding error: unknown field \"a\", duplicate field \"metadata.name\""
        );
        assert_eq!(strict_error(&[], &[]), None);
        assert_eq!(
            warnings(&["spec.x".into()], &[]),
            ["unknown field \"spec.x\""]
        );
    }

    #[test]
    fn duplicate_keys_are_found_in_raw_json() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"containers":[{"name":"c","image":"x","image":"y"}]},"kind":"Pod","kind":"Pod"}"#;
        assert_eq!(
            duplicate_fields(body).unwrap(),
            ["metadata.name", "spec.containers[0].image", "kind"]
        );
        assert_eq!(
            duplicate_fields(br#"{"a":[{"b":1},{"b":2}]}"#).unwrap(),
            Vec::<String>::new()
        );
        assert!(duplicate_fields(b"{\"a\":").is_err());
        assert!(duplicate_fields(b"{} x").is_err());
    }
}
