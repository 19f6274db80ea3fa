//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets: building the `autoscaling/v1
//! Scale` view of a workload (what `kubectl scale` reads and patches) and applying a changed Scale back
//! to the workload's `spec.replicas`, with upstream's `ValidateScale` rule.
//!
//! It only converts between object shapes; reading and writing the stored workload (and its
//! resourceVersion checks) is the API server's job.

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;
use crate::validation::{BadValue, FieldError, IS_NEGATIVE_ERROR_MSG, Invalid, Path};

/// Group, version and kind of the Scale object.
pub const SCALE_GROUP: &str = "autoscaling";
/// Version of the Scale object.
pub const SCALE_VERSION: &str = "v1";
/// Kind of the Scale object.
pub const SCALE_KIND: &str = "Scale";

fn has_scale(info: &ResourceInfo) -> bool {
    info.subresource("scale").is_some()
}

/// The `autoscaling/v1 Scale` of a workload, or `None` when the kind has no scale subresource.
pub fn scale_of(info: &ResourceInfo, obj: &Value) -> Option<Value> {
    if !has_scale(info) {
        return None;
    }
    let mut meta = Map::new();
    if let Some(m) = obj.get("metadata").and_then(Value::as_object) {
        for key in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = m.get(key).filter(|v| !v.is_null()) {
                meta.insert(key.into(), v.clone());
            }
        }
    }
    let spec = obj.get("spec");
    let replicas = spec
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let status_replicas = obj
        .get("status")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = spec
        .and_then(|s| s.get("selector"))
        .and_then(Value::as_object)
        .map(selector_string)
        .unwrap_or_default();
    Some(json!({
        "kind": SCALE_KIND,
        "apiVersion": format!("{SCALE_GROUP}/{SCALE_VERSION}"),
        "metadata": meta,
        "spec": {"replicas": replicas},
        "status": {"replicas": status_replicas, "selector": selector},
    }))
}

/// Validates `scale` (`spec.replicas` >= 0) and writes its replicas into the workload. The caller
/// renders an error with [`crate::status::Status::invalid_kind`] using `autoscaling`/`Scale`.
pub fn apply_scale(info: &ResourceInfo, obj: &mut Value, scale: &Value) -> Result<(), Invalid> {
    let path = Path::new("spec").child("replicas");
    if !has_scale(info) {
        return Err(Invalid::from(vec![FieldError::forbidden(
            &Path::new("kind"),
            format!("{} has no scale subresource", info.qualified_resource()),
        )]));
    }
    let replicas = match scale.get("spec").and_then(|s| s.get("replicas")) {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(n) if i32::try_from(n).is_ok() => n,
            _ => {
                return Err(Invalid::from(vec![FieldError::invalid(
                    &path,
                    BadValue::from_json(v),
                    "must be a 32-bit integer",
                )]));
            }
        },
    };
    if replicas < 0 {
        return Err(Invalid::from(vec![FieldError::invalid(
            &path,
            BadValue::Int(replicas),
            IS_NEGATIVE_ERROR_MSG,
        )]));
    }
    let Some(o) = obj.as_object_mut() else {
        return Err(Invalid::from(vec![FieldError::invalid(
            &Path::root(),
            BadValue::Omit,
            "the workload is not an object",
        )]));
    };
    let spec = o.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec["replicas"] = json!(replicas);
    Ok(())
}

/// A label selector in its string form (`metav1.LabelSelectorAsSelector(...).String()`): requirements
/// sorted by key, `k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`, joined with commas.
pub fn selector_string(selector: &Map<String, Value>) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let mut values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            values.sort_unstable();
            let text = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            };
            reqs.push((key.to_string(), text));
        }
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind_name;
    use crate::status::Status;

    fn deploy() -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","namespace":"default","uid":"u1","resourceVersion":"7","labels":{"x":"y"}},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web","tier":"fe"}}},"status":{"replicas":2}})
    }

    #[test]
    fn scale_view_carries_replicas_and_selector() {
        let s = scale_of(by_kind_name("Deployment").unwrap(), &deploy()).unwrap();
        assert_eq!(
            s,
            json!({"kind":"Scale","apiVersion":"autoscaling/v1",
                "metadata":{"name":"web","namespace":"default","uid":"u1","resourceVersion":"7"},
                "spec":{"replicas":2},"status":{"replicas":2,"selector":"app=web,tier=fe"}})
        );
        assert!(scale_of(by_kind_name("Pod").unwrap(), &deploy()).is_none());
    }

    #[test]
    fn applying_a_scale_sets_replicas_and_rejects_negatives() {
        let info = by_kind_name("StatefulSet").unwrap();
        let mut obj = deploy();
        apply_scale(info, &mut obj, &json!({"spec":{"replicas":5}})).unwrap();
        assert_eq!(obj["spec"]["replicas"], 5);
        let err = apply_scale(info, &mut obj, &json!({"spec":{"replicas":-1}})).unwrap_err();
        assert_eq!(
            Status::invalid_kind(SCALE_GROUP, SCALE_KIND, "web", &err).message,
            "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            obj["spec"]["replicas"], 5,
            "a rejected scale leaves the workload alone"
        );
        assert!(apply_scale(info, &mut obj, &json!({"spec":{"replicas":"3"}})).is_err());
        assert!(apply_scale(by_kind_name("Secret").unwrap(), &mut obj, &json!({})).is_err());
    }

    #[test]
    fn selector_strings_sort_requirements_by_key() {
        let sel = json!({"matchLabels":{"b":"2"},"matchExpressions":[
            {"key":"a","operator":"In","values":["y","x"]},{"key":"c","operator":"DoesNotExist"},
            {"key":"d","operator":"Exists"},{"key":"e","operator":"NotIn","values":["z"]}]});
        assert_eq!(
            selector_string(sel.as_object().unwrap()),
            "a in (x,y),b=2,!c,d,e notin (z)"
        );
        assert_eq!(selector_string(&Map::new()), "");
    }
}
