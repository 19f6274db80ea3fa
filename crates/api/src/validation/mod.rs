//! Create and update validation of served objects, following kube-apiserver's
//! `pkg/apis/{core,apps,coordination}/validation` and apimachinery's ObjectMeta rules, with upstream field paths
//! and message texts so kubectl prints the same 422 errors.
//!
//! Objects are validated *after* defaulting ([`crate::defaults::apply`]) and after the API server has
//! filled `metadata.name` from `generateName` and `metadata.namespace` from the URL (cleared for
//! cluster-scoped kinds), exactly as upstream orders it. Validation only reads the object: it never
//! mutates it, never looks at storage, and never copies Secret data into a message.

mod apps;
mod berth;
mod coordination;
mod core;
mod field;
pub mod names;
mod registry_check;

use serde_json::{Map, Value};

pub use apps::selector_matches;
pub use field::{BadValue, ErrorType, FIELD_IMMUTABLE, FieldError, Invalid, Path, go_string_map};
pub use registry_check::{registry_of_server, validate_registry_check};

use crate::resources::ResourceInfo;

/// Upstream `IsNegativeErrorMsg`.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
/// Upstream `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Validates a new object of kind `info` (already defaulted).
pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Result<(), Invalid> {
    let mut errs = Vec::new();
    validate_object(info, obj, &mut errs);
    finish(errs)
}

/// Validates an update of `old` to `new` (both defaulted; `new` carries the request's changes).
pub fn validate_update(info: &ResourceInfo, new: &Value, old: &Value) -> Result<(), Invalid> {
    let mut errs = Vec::new();
    validate_object_meta_update(meta(new), meta(old), &mut errs);
    match (info.group, info.kind) {
        ("", "Pod") => core::validate_pod_update(new, old, &mut errs),
        ("", "Secret") => core::validate_secret_update(new, old, &mut errs),
        ("", "ConfigMap") => core::validate_config_map_update(new, old, &mut errs),
        ("apps", "Deployment") | ("apps", "ReplicaSet") => {
            apps::validate_selector_immutable(new, old, &mut errs)
        }
        ("apps", "StatefulSet") => apps::validate_stateful_set_update(new, old, &mut errs),
        ("apps", "ControllerRevision") => {
            apps::validate_controller_revision_update(new, old, &mut errs)
        }
        _ => {}
    }
    validate_object(info, new, &mut errs);
    finish(errs)
}

/// Validates an update through the `status` subresource: only metadata rules apply, because the API
/// server keeps the stored `spec` for status writes (as upstream's status strategies do).
pub fn validate_status_update(
    info: &ResourceInfo,
    new: &Value,
    old: &Value,
) -> Result<(), Invalid> {
    let mut errs = Vec::new();
    validate_object_meta_update(meta(new), meta(old), &mut errs);
    validate_object_meta(info, meta(new), &mut errs);
    finish(errs)
}

fn finish(errs: Vec<FieldError>) -> Result<(), Invalid> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::from(errs))
    }
}

fn validate_object(info: &ResourceInfo, obj: &Value, errs: &mut Vec<FieldError>) {
    validate_object_meta(info, meta(obj), errs);
    match (info.group, info.kind) {
        ("", "Pod") => core::validate_pod(obj, errs),
        ("", "Secret") => core::validate_secret(obj, errs),
        ("", "ConfigMap") => core::validate_config_map(obj, errs),
        ("", "Namespace") => core::validate_namespace(obj, errs),
        ("", "ServiceAccount") => core::validate_service_account(obj, errs),
        ("", "Event") => core::validate_event(obj, errs),
        ("apps", "Deployment") => apps::validate_deployment(obj, errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, errs),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, errs),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(obj, errs),
        ("coordination.k8s.io", "Lease") => coordination::validate_lease(obj, errs),
        (crate::resources::BERTH_GROUP, "RegistryHost") => berth::validate_registry_host(obj, errs),
        _ => {}
    }
}

/// The name rule of a kind: DNS-1123 labels for namespaces, subdomains for everything else berth serves.
fn name_fn(info: &ResourceInfo) -> fn(&str, bool) -> Vec<String> {
    match (info.group, info.kind) {
        ("", "Namespace") => names::name_is_dns_label,
        _ => names::name_is_dns_subdomain,
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

pub(crate) fn meta(obj: &Value) -> &Map<String, Value> {
    obj.get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&EMPTY)
}

pub(crate) fn str_at<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn obj_at<'a>(m: &'a Map<String, Value>, key: &str) -> &'a Map<String, Value> {
    m.get(key).and_then(Value::as_object).unwrap_or(&EMPTY)
}

pub(crate) fn arr_at<'a>(m: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    m.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `ValidateObjectMeta`: name (or generateName), namespace presence, generation, labels, annotations,
/// owner references and finalizers.
fn validate_object_meta(info: &ResourceInfo, m: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    let path = Path::new("metadata");
    let name_fn = name_fn(info);
    let generate_name = str_at(m, "generateName");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid_str(
                &path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = str_at(m, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid_str(&path.child("name"), name, msg));
        }
    }
    let namespace = str_at(m, "namespace");
    if info.namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in names::name_is_dns_label(namespace, false) {
                errs.push(FieldError::invalid_str(
                    &path.child("namespace"),
                    namespace,
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(g) = m.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid(
            &path.child("generation"),
            BadValue::Int(g),
            IS_NEGATIVE_ERROR_MSG,
        ));
    }
    validate_labels(obj_at(m, "labels"), &path.child("labels"), errs);
    validate_annotations(obj_at(m, "annotations"), &path.child("annotations"), errs);
    validate_owner_references(
        arr_at(m, "ownerReferences"),
        &path.child("ownerReferences"),
        errs,
    );
    validate_finalizers(arr_at(m, "finalizers"), &path.child("finalizers"), errs);
}

/// `ValidateLabels`: keys are qualified names, values label values; errors sit on the map's path.
pub(crate) fn validate_labels(
    labels: &Map<String, Value>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    for (k, v) in labels {
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid_str(path, k, msg));
        }
        match v.as_str() {
            Some(s) => {
                for msg in names::is_valid_label_value(s) {
                    errs.push(FieldError::invalid_str(path, s, msg));
                }
            }
            None => errs.push(FieldError::invalid(
                &path.key(k),
                BadValue::from_json(v),
                "must be a string",
            )),
        }
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive), total size at most 256 KiB.
fn validate_annotations(annotations: &Map<String, Value>, path: &Path, errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    for (k, v) in annotations {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid_str(path, k, msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(refs: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut controllers = 0;
    for (i, r) in refs.iter().enumerate() {
        let r = r.as_object().unwrap_or(&EMPTY);
        let p = path.index(i);
        if str_at(r, "apiVersion").is_empty() {
            errs.push(FieldError::invalid_str(
                &p.child("apiVersion"),
                "",
                "version must not be empty",
            ));
        }
        if str_at(r, "kind").is_empty() {
            errs.push(FieldError::invalid_str(
                &p.child("kind"),
                "",
                "kind must not be empty",
            ));
        }
        if str_at(r, "name").is_empty() {
            errs.push(FieldError::invalid_str(
                &p.child("name"),
                "",
                "name must not be empty",
            ));
        }
        if str_at(r, "uid").is_empty() {
            errs.push(FieldError::invalid_str(
                &p.child("uid"),
                "",
                "uid must not be empty",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errs.push(FieldError::invalid(
            path,
            BadValue::Raw(Value::Array(refs.to_vec()).to_string()),
            "Only one reference can have Controller set to true",
        ));
    }
}

fn validate_finalizers(finalizers: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for f in finalizers {
        let f = f.as_str().unwrap_or("");
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid_str(path, f, msg));
        }
    }
}

/// `ValidateObjectMetaUpdate`: name, namespace, uid, creationTimestamp and generateName are immutable,
/// a set deletionTimestamp cannot be cleared.
fn validate_object_meta_update(
    new: &Map<String, Value>,
    old: &Map<String, Value>,
    errs: &mut Vec<FieldError>,
) {
    let path = Path::new("metadata");
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        let (n, o) = (str_at(new, key), str_at(old, key));
        if n != o {
            errs.push(FieldError::immutable(
                &path.child(key),
                BadValue::Str(n.to_string()),
            ));
        }
    }
    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null())
        && new.get("deletionTimestamp").is_none_or(Value::is_null)
    {
        errs.push(FieldError::invalid(
            &path.child("deletionTimestamp"),
            BadValue::Null,
            FIELD_IMMUTABLE,
        ));
    }
}

/// JSON equality that treats absent, `null` and empty lists or maps alike (apimachinery's semantic
/// equality treats nil and empty slices and maps as equal).
pub(crate) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn is_empty(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.values().all(|v| is_empty(Some(v))),
            _ => false,
        }
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.iter().all(|(k, v)| semantic_eq(Some(v), y.get(k)))
                && y.iter()
                    .all(|(k, v)| x.contains_key(k) || is_empty(Some(v)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| semantic_eq(Some(a), Some(b)))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) if !is_empty(Some(x)) || !is_empty(Some(y)) => x == y,
        _ => is_empty(a) && is_empty(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind_name;
    use serde_json::json;

    fn cm(meta: Value) -> Value {
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":meta})
    }

    fn messages(r: Result<(), Invalid>) -> Vec<String> {
        r.err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn missing_name_and_namespace_are_required() {
        let info = by_kind_name("ConfigMap").unwrap();
        assert_eq!(
            messages(validate_create(info, &cm(json!({})))),
            [
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value"
            ]
        );
    }

    #[test]
    fn invalid_names_use_subdomain_or_label_rules_per_kind() {
        let info = by_kind_name("Secret").unwrap();
        let obj = json!({"metadata":{"name":"K_7","namespace":"default"},"type":"Opaque"});
        let msgs = messages(validate_create(info, &obj));
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].starts_with(
                "metadata.name: Invalid value: \"K_7\": a lowercase RFC 1123 subdomain"
            ),
            "{}",
            msgs[0]
        );
        let ns = by_kind_name("Namespace").unwrap();
        let msgs = messages(validate_create(ns, &json!({"metadata":{"name":"a.b"}})));
        assert!(
            msgs[0]
                .starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"),
            "{msgs:?}"
        );
        assert!(validate_create(ns, &json!({"metadata":{"name":"team1"}})).is_ok());
    }

    #[test]
    fn cluster_scoped_objects_may_not_carry_a_namespace() {
        let ns = by_kind_name("Node").unwrap();
        assert_eq!(
            messages(validate_create(
                ns,
                &json!({"metadata":{"name":"n1","namespace":"default"}})
            )),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn generate_name_is_checked_as_a_prefix() {
        let info = by_kind_name("ConfigMap").unwrap();
        let obj = cm(json!({"generateName":"Gen-","name":"gen-abcde","namespace":"default"}));
        let msgs = messages(validate_create(info, &obj));
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].starts_with("metadata.generateName: Invalid value: \"Gen-\""),
            "{msgs:?}"
        );
    }

    #[test]
    fn labels_and_annotations_follow_upstream_rules() {
        let info = by_kind_name("ConfigMap").unwrap();
        let obj = cm(
            json!({"name":"a","namespace":"default","labels":{"app":"-bad","ok/x":"y","a/b/c":"v"},
            "annotations":{"Example.com/Key":"fine","bad key":"v"}}),
        );
        let msgs = messages(validate_create(info, &obj));
        assert!(
            msgs.iter().any(|m| m.starts_with(
                "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"
            )),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with(
                "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist"
            )),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with(
                "metadata.annotations: Invalid value: \"bad key\": name part must consist"
            )),
            "{msgs:?}"
        );
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        let big = cm(
            json!({"name":"a","namespace":"default","annotations":{"k":"x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)}}),
        );
        assert_eq!(
            messages(validate_create(info, &big)),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn owner_references_need_identity_and_at_most_one_controller() {
        let info = by_kind_name("ConfigMap").unwrap();
        let r = json!({"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs","uid":"u1","controller":true});
        let obj =
            cm(json!({"name":"a","namespace":"default","ownerReferences":[r, r, {"kind":"X"}]}));
        let msgs = messages(validate_create(info, &obj));
        assert!(
            msgs.contains(
                &"metadata.ownerReferences[2].uid: Invalid value: \"\": uid must not be empty"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.ends_with("Only one reference can have Controller set to true")),
            "{msgs:?}"
        );
    }

    #[test]
    fn immutable_metadata_fields_are_rejected_on_update() {
        let info = by_kind_name("ConfigMap").unwrap();
        let old = cm(
            json!({"name":"a","namespace":"default","uid":"1","creationTimestamp":"2024-01-01T00:00:00Z"}),
        );
        let new = cm(
            json!({"name":"a","namespace":"default","uid":"2","creationTimestamp":"2024-01-01T00:00:00Z"}),
        );
        assert_eq!(
            messages(validate_update(info, &new, &old)),
            ["metadata.uid: Invalid value: \"2\": field is immutable"]
        );
        assert!(validate_update(info, &old, &old).is_ok());
    }

    #[test]
    fn semantic_equality_ignores_nulls_and_empty_collections() {
        assert!(semantic_eq(
            Some(&json!({"a":null,"b":[]})),
            Some(&json!({}))
        ));
        assert!(semantic_eq(None, Some(&json!({"x":{}}))));
        assert!(!semantic_eq(Some(&json!({"a":1})), Some(&json!({}))));
        assert!(semantic_eq(Some(&json!({"a":1.0})), Some(&json!({"a":1}))));
        assert!(!semantic_eq(Some(&json!([1])), Some(&json!([1, 2]))));
    }
}
