//! Label selectors (`metav1.LabelSelector`): matching an object's labels, the server-side query string of the
//! equality part, and owner references. Pure functions; the controllers always re-check matches locally so a
//! coarse server-side filter is never trusted alone.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::Resource;

/// True when `labels` satisfy `selector` (matchLabels and matchExpressions: In, NotIn, Exists, DoesNotExist).
/// An empty selector matches everything, as upstream's `LabelSelectorAsSelector`.
pub(crate) fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let eq = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    eq && exprs
}

/// The `labelSelector` query of the selector's matchLabels (`a=b,c=d`); expressions are checked locally.
pub(crate) fn query(selector: &LabelSelector) -> String {
    selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The controller owner reference of `obj` (controller=true, blockOwnerDeletion=true).
pub(crate) fn controller_ref<K: Resource<DynamicType = ()>>(obj: &K) -> OwnerReference {
    let mut r = obj
        .controller_owner_ref(&())
        .expect("objects read from the API server have a name and uid");
    r.block_owner_deletion = Some(true);
    r
}

/// The uid of the controller owner of an object's metadata, when it has one.
pub(crate) fn controller_uid(refs: Option<&Vec<OwnerReference>>) -> Option<&str> {
    refs?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_matches_labels_and_expressions() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        let l = |v: serde_json::Value| -> BTreeMap<String, String> {
            serde_json::from_value(v).unwrap()
        };
        assert!(matches(&sel, &l(json!({"app": "web", "tier": "a"}))));
        assert!(!matches(&sel, &l(json!({"app": "web", "tier": "c"}))));
        assert!(!matches(
            &sel,
            &l(json!({"app": "web", "tier": "a", "canary": "1"}))
        ));
        assert!(!matches(&sel, &l(json!({"app": "db", "tier": "a"}))));
        assert_eq!(query(&sel), "app=web");
    }
}
