//! apps/v1 rules of upstream `pkg/apis/apps/validation/validation.go`: Deployment, ReplicaSet and
//! StatefulSet specs (selector required, non-empty and matching the template labels, replicas and
//! limits non-negative, strategies), selector immutability, the StatefulSet update restrictions, and
//! ControllerRevision (data mandatory and immutable, revision non-negative).
//!
//! Label selectors are evaluated here only as far as validation needs (matchLabels and
//! matchExpressions against the template's labels); this module never selects stored objects.

use serde_json::{Map, Value};

use super::core::validate_pod_spec;
use super::names;
use super::{
    BadValue, EMPTY, FIELD_IMMUTABLE, FieldError, IS_NEGATIVE_ERROR_MSG, Path, arr_at, obj_at,
    semantic_eq, str_at, validate_labels,
};

const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

fn spec(obj: &Value) -> &Map<String, Value> {
    obj.get("spec").and_then(Value::as_object).unwrap_or(&EMPTY)
}

pub(super) fn validate_deployment(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    let path = Path::new("spec");
    validate_replicas_and_limits(spec, &path, errs);
    let selector_ok = validate_selector(spec, &path, "deployment", errs);
    validate_template(spec, &path, selector_ok, errs);
    let strategy = obj_at(spec, "strategy");
    let sp = path.child("strategy");
    match str_at(strategy, "type") {
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    &sp.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = obj_at(strategy, "rollingUpdate");
            let rp = sp.child("rollingUpdate");
            let unavailable =
                int_or_percent(ru.get("maxUnavailable"), &rp.child("maxUnavailable"), errs);
            let surge = int_or_percent(ru.get("maxSurge"), &rp.child("maxSurge"), errs);
            if unavailable == Some(0) && surge == Some(0) {
                errs.push(FieldError::invalid(
                    &rp.child("maxUnavailable"),
                    BadValue::from_json(ru.get("maxUnavailable").unwrap_or(&Value::Null)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some(Value::String(s)) = ru.get("maxUnavailable")
                && s.trim_end_matches('%')
                    .parse::<u64>()
                    .is_ok_and(|p| p > 100)
            {
                errs.push(FieldError::invalid_str(
                    &rp.child("maxUnavailable"),
                    s,
                    "must not be greater than 100%",
                ));
            }
        }
        "" => errs.push(FieldError::required(&sp.child("type"), "")),
        other => errs.push(FieldError::not_supported(
            &sp.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let Some(pds) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        let min_ready = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pds <= min_ready {
            errs.push(FieldError::invalid(
                &path.child("progressDeadlineSeconds"),
                BadValue::Int(pds),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

pub(super) fn validate_replica_set(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    let path = Path::new("spec");
    validate_replicas_and_limits(spec, &path, errs);
    let selector_ok = validate_selector(spec, &path, "replicaset", errs);
    validate_template(spec, &path, selector_ok, errs);
}

pub(super) fn validate_stateful_set(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    let path = Path::new("spec");
    validate_replicas_and_limits(spec, &path, errs);
    match str_at(spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required(&path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::not_supported(
            &path.child("podManagementPolicy"),
            other,
            &["OrderedReady", "Parallel"],
        )),
    }
    let strategy = obj_at(spec, "updateStrategy");
    let sp = path.child("updateStrategy");
    match str_at(strategy, "type") {
        "" => errs.push(FieldError::required(&sp, "")),
        "OnDelete" => {
            if strategy.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::invalid(
                    &sp.child("rollingUpdate"),
                    BadValue::Raw(strategy["rollingUpdate"].to_string()),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = obj_at(strategy, "rollingUpdate");
            if let Some(p) = ru.get("partition").and_then(Value::as_i64)
                && p < 0
            {
                errs.push(FieldError::invalid(
                    &sp.child("rollingUpdate").child("partition"),
                    BadValue::Int(p),
                    IS_NEGATIVE_ERROR_MSG,
                ));
            }
            int_or_percent(
                ru.get("maxUnavailable"),
                &sp.child("rollingUpdate").child("maxUnavailable"),
                errs,
            );
        }
        other => errs.push(FieldError::not_supported(
            &sp.child("type"),
            other,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    let policy = obj_at(spec, "persistentVolumeClaimRetentionPolicy");
    for key in ["whenDeleted", "whenScaled"] {
        let v = str_at(policy, key);
        if !v.is_empty() && v != "Retain" && v != "Delete" {
            errs.push(FieldError::not_supported(
                &path
                    .child("persistentVolumeClaimRetentionPolicy")
                    .child(key),
                v,
                &["Retain", "Delete"],
            ));
        }
    }
    let service_name = str_at(spec, "serviceName");
    if !service_name.is_empty() {
        for msg in names::is_dns1123_label(service_name) {
            errs.push(FieldError::invalid_str(
                &path.child("serviceName"),
                service_name,
                msg,
            ));
        }
    }
    let selector_ok = validate_selector(spec, &path, "statefulset", errs);
    validate_template(spec, &path, selector_ok, errs);
}

fn validate_replicas_and_limits(
    spec: &Map<String, Value>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    for key in [
        "replicas",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        if let Some(n) = spec.get(key).and_then(Value::as_i64)
            && n < 0
        {
            errs.push(FieldError::invalid(
                &path.child(key),
                BadValue::Int(n),
                IS_NEGATIVE_ERROR_MSG,
            ));
        }
    }
}

/// Selector present, non-empty and syntactically valid; returns whether it can be matched.
fn validate_selector(
    spec: &Map<String, Value>,
    path: &Path,
    what: &str,
    errs: &mut Vec<FieldError>,
) -> bool {
    let sp = path.child("selector");
    let Some(selector) = spec.get("selector").and_then(Value::as_object) else {
        errs.push(FieldError::required(&sp, ""));
        return false;
    };
    let labels = obj_at(selector, "matchLabels");
    let exprs = arr_at(selector, "matchExpressions");
    let before = errs.len();
    validate_labels(labels, &sp.child("matchLabels"), errs);
    for (i, e) in exprs.iter().enumerate() {
        let ep = sp.child("matchExpressions").index(i);
        let e = e.as_object().unwrap_or(&EMPTY);
        let key = str_at(e, "key");
        for msg in names::is_qualified_name(key) {
            errs.push(FieldError::invalid_str(&ep.child("key"), key, msg));
        }
        let values = arr_at(e, "values");
        match str_at(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &ep.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &ep.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &ep.child("operator"),
                other,
                SELECTOR_OPERATORS,
            )),
        }
    }
    if labels.is_empty() && exprs.is_empty() {
        errs.push(FieldError::invalid(
            &sp,
            BadValue::Raw(go_label_selector(selector)),
            format!("empty selector is invalid for {what}"),
        ));
        return false;
    }
    errs.len() == before
}

fn validate_template(
    spec: &Map<String, Value>,
    path: &Path,
    selector_ok: bool,
    errs: &mut Vec<FieldError>,
) {
    let tp = path.child("template");
    let Some(template) = spec.get("template").and_then(Value::as_object) else {
        errs.push(FieldError::required(&tp, ""));
        return;
    };
    let tmeta = obj_at(template, "metadata");
    let labels = obj_at(tmeta, "labels");
    if selector_ok && !selector_matches(obj_at(spec, "selector"), labels) {
        errs.push(FieldError::invalid(
            &tp.child("metadata").child("labels"),
            BadValue::from_json(&Value::Object(labels.clone())),
            "`selector` does not match template `labels`",
        ));
    }
    validate_labels(labels, &tp.child("metadata").child("labels"), errs);
    let pod_spec = obj_at(template, "spec");
    validate_pod_spec(pod_spec, &tp.child("spec"), errs);
    let restart = str_at(pod_spec, "restartPolicy");
    if !restart.is_empty() && restart != "Always" {
        errs.push(FieldError::not_supported(
            &tp.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if pod_spec
        .get("activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::invalid(
            &tp.child("spec").child("activeDeadlineSeconds"),
            BadValue::from_json(&pod_spec["activeDeadlineSeconds"]),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
}

/// Whether a label selector (matchLabels AND matchExpressions) selects `labels`.
pub fn selector_matches(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = obj_at(selector, "matchLabels")
        .iter()
        .all(|(k, v)| label(k) == v.as_str());
    let exprs_ok = arr_at(selector, "matchExpressions").iter().all(|e| {
        let e = e.as_object().unwrap_or(&EMPTY);
        let key = str_at(e, "key");
        let values: Vec<&str> = arr_at(e, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        match str_at(e, "operator") {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// IntOrString: an integer >= 0 or a valid percent string; returns the integer or percent number.
fn int_or_percent(v: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v? {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.push(FieldError::invalid(
                    path,
                    BadValue::Int(n),
                    IS_NEGATIVE_ERROR_MSG,
                ));
            }
            Some(n)
        }
        Value::String(s) => {
            let msgs = names::is_valid_percent(s);
            if msgs.is_empty() {
                s.trim_end_matches('%').parse().ok()
            } else {
                for msg in msgs {
                    errs.push(FieldError::invalid_str(path, s, msg));
                }
                None
            }
        }
        Value::Null => None,
        other => {
            errs.push(FieldError::invalid(
                path,
                BadValue::from_json(other),
                "must be an integer or percentage (e.g '5%')",
            ));
            None
        }
    }
}

/// Go `%#v` of a `metav1.LabelSelector`, as upstream prints it in `field is immutable` errors.
pub(super) fn go_label_selector(selector: &Map<String, Value>) -> String {
    let labels: std::collections::BTreeMap<&str, &str> = obj_at(selector, "matchLabels")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    let exprs = arr_at(selector, "matchExpressions");
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                let e = e.as_object().unwrap_or(&EMPTY);
                let values: Vec<String> = arr_at(e, "values")
                    .iter()
                    .map(|v| crate::status::quote(v.as_str().unwrap_or("")))
                    .collect();
                let values = if values.is_empty() {
                    "[]string(nil)".to_string()
                } else {
                    format!("[]string{{{}}}", values.join(", "))
                };
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                    crate::status::quote(str_at(e, "key")),
                    crate::status::quote(str_at(e, "operator"))
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        super::go_string_map(&labels)
    )
}

/// apps/v1 Deployments and ReplicaSets: `spec.selector` is immutable.
pub(super) fn validate_selector_immutable(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let (ns, os) = (spec(new).get("selector"), spec(old).get("selector"));
    if !semantic_eq(ns, os) {
        let rendered = go_label_selector(ns.and_then(Value::as_object).unwrap_or(&EMPTY));
        errs.push(FieldError::invalid(
            &Path::new("spec").child("selector"),
            BadValue::Raw(rendered),
            FIELD_IMMUTABLE,
        ));
    }
}

/// `ValidateControllerRevision`: `data` is mandatory and `revision` non-negative.
pub(super) fn validate_controller_revision(obj: &Value, errs: &mut Vec<FieldError>) {
    if obj.get("data").is_none_or(Value::is_null) {
        errs.push(FieldError::required(
            &Path::new("data"),
            "data is mandatory",
        ));
    }
    if let Some(r) = obj.get("revision").and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid(
            &Path::new("revision"),
            BadValue::Int(r),
            IS_NEGATIVE_ERROR_MSG,
        ));
    }
}

/// `ValidateControllerRevisionUpdate`: `data` is immutable.
pub(super) fn validate_controller_revision_update(
    new: &Value,
    old: &Value,
    errs: &mut Vec<FieldError>,
) {
    if !semantic_eq(new.get("data"), old.get("data")) {
        errs.push(FieldError::invalid(
            &Path::new("data"),
            BadValue::Omit,
            FIELD_IMMUTABLE,
        ));
    }
}

/// `ValidateStatefulSetUpdate`: only replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
/// persistentVolumeClaimRetentionPolicy and minReadySeconds may change.
pub(super) fn validate_stateful_set_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let mut munged = spec(new).clone();
    let old_spec = spec(old);
    for key in [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ] {
        match old_spec.get(key) {
            Some(v) => munged.insert(key.into(), v.clone()),
            None => munged.remove(key),
        };
    }
    if !semantic_eq(
        Some(&Value::Object(munged)),
        Some(&Value::Object(old_spec.clone())),
    ) {
        errs.push(FieldError::forbidden(
            &Path::new("spec"),
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use crate::resources::by_kind_name;
    use crate::validation::{validate_create, validate_update};
    use serde_json::json;

    fn workload(kind: &str, spec: Value) -> Value {
        json!({"apiVersion":"apps/v1","kind":kind,"metadata":{"name":"web","namespace":"default"},"spec":spec})
    }

    fn basic_spec() -> Value {
        json!({"selector":{"matchLabels":{"app":"web"}},
               "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"r.io/app:1"}]}}})
    }

    fn errors(kind: &str, spec: Value) -> Vec<String> {
        let info = by_kind_name(kind).unwrap();
        let mut obj = workload(kind, spec);
        defaults::apply(info, &mut obj);
        validate_create(info, &obj)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn update_errors(kind: &str, new: Value, old: Value) -> Vec<String> {
        let info = by_kind_name(kind).unwrap();
        let (mut new, mut old) = (workload(kind, new), workload(kind, old));
        defaults::apply(info, &mut new);
        defaults::apply(info, &mut old);
        validate_update(info, &new, &old)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn valid_workloads_pass() {
        for kind in ["Deployment", "ReplicaSet", "StatefulSet"] {
            assert_eq!(errors(kind, basic_spec()), Vec::<String>::new(), "{kind}");
        }
    }

    #[test]
    fn kubectl_create_deployment_body_is_valid() {
        let info = by_kind_name("Deployment").unwrap();
        // The protobuf body of `kubectl create deployment x --image=...` (kubectl 1.32), decoded with its
        // gogo zero values, as in kubectl-evidence/create-deployment-x.pb.decoded.json.
        let mut obj = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"x","namespace":"default","generation":0,"labels":{"app":"x"}},
            "spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}},
              "template":{"metadata":{"generation":0,"labels":{"app":"x"}},
                "spec":{"containers":[{"name":"app","image":"www.3rdregistry.com/team/app:1.0","stdin":false,"stdinOnce":false,"tty":false}],
                  "hostNetwork":false,"hostPID":false,"hostIPC":false}},
              "strategy":{},"minReadySeconds":0,"paused":false},
            "status":{"observedGeneration":0,"replicas":0,"updatedReplicas":0,"availableReplicas":0,"unavailableReplicas":0,"readyReplicas":0}});
        defaults::apply(info, &mut obj);
        assert_eq!(validate_create(info, &obj), Ok(()));
    }

    #[test]
    fn selector_is_required_and_must_match_template_labels() {
        let mut spec = basic_spec();
        spec.as_object_mut().unwrap().remove("selector");
        assert_eq!(
            errors("Deployment", spec),
            ["spec.selector: Required value"]
        );
        let mut spec = basic_spec();
        spec["selector"] = json!({"matchLabels":{"app":"other"}});
        assert_eq!(
            errors("Deployment", spec.clone()),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
            ]
        );
        assert_eq!(errors("StatefulSet", spec).len(), 1);
        let mut spec = basic_spec();
        spec["selector"] = json!({});
        assert_eq!(
            errors("Deployment", spec),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn match_expressions_select_and_validate() {
        let mut spec = basic_spec();
        spec["selector"] =
            json!({"matchExpressions":[{"key":"app","operator":"In","values":["web","api"]}]});
        assert_eq!(errors("ReplicaSet", spec.clone()), Vec::<String>::new());
        spec["selector"] =
            json!({"matchExpressions":[{"key":"app","operator":"NotIn","values":["web"]}]});
        assert_eq!(errors("ReplicaSet", spec.clone()).len(), 1);
        spec["selector"] = json!({"matchExpressions":[{"key":"app","operator":"In"},{"key":"x","operator":"Near"}]});
        let errs = errors("ReplicaSet", spec);
        assert_eq!(
            errs[0],
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(
            errs[1],
            "spec.selector.matchExpressions[1].operator: Unsupported value: \"Near\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
        );
    }

    #[test]
    fn replicas_must_not_be_negative_and_restart_policy_must_be_always() {
        let mut spec = basic_spec();
        spec["replicas"] = json!(-1);
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
        let errs = errors("Deployment", spec);
        assert_eq!(
            errs[0],
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            errs[1],
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        );
    }

    #[test]
    fn template_pod_spec_errors_carry_template_paths() {
        let mut spec = basic_spec();
        spec["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("image");
        assert_eq!(
            errors("Deployment", spec),
            ["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn deployment_strategy_rules() {
        let mut spec = basic_spec();
        spec["strategy"] =
            json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":0,"maxSurge":"0%"}});
        assert_eq!(
            errors("Deployment", spec.clone()),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
            ]
        );
        spec["strategy"] = json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"150%","maxSurge":"x"}});
        let errs = errors("Deployment", spec.clone());
        assert!(
            errs[0].starts_with(
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x\": a valid percent string"
            ),
            "{errs:?}"
        );
        assert_eq!(
            errs[1],
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
        );
        spec["strategy"] = json!({"type":"Recreate","rollingUpdate":{}});
        assert_eq!(
            errors("Deployment", spec.clone()),
            [
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
        spec["strategy"] = json!({"type":"Blue"});
        assert_eq!(
            errors("Deployment", spec.clone()),
            [
                "spec.strategy.type: Unsupported value: \"Blue\": supported values: \"Recreate\", \"RollingUpdate\""
            ]
        );
        spec["strategy"] = json!({"type":"Recreate"});
        spec["minReadySeconds"] = json!(700);
        assert_eq!(
            errors("Deployment", spec),
            [
                "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"
            ]
        );
    }

    #[test]
    fn statefulset_policies_are_enumerations() {
        let mut spec = basic_spec();
        spec["podManagementPolicy"] = json!("Random");
        spec["updateStrategy"] = json!({"type":"RollingUpdate","rollingUpdate":{"partition":-1}});
        spec["serviceName"] = json!("Web_Svc");
        let errs = errors("StatefulSet", spec);
        assert_eq!(
            errs[0],
            "spec.podManagementPolicy: Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\""
        );
        assert_eq!(
            errs[1],
            "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(
            errs[2].starts_with("spec.serviceName: Invalid value: \"Web_Svc\""),
            "{errs:?}"
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = basic_spec();
        let mut new = basic_spec();
        new["selector"] = json!({"matchLabels":{"app":"web","tier":"x"}});
        new["template"]["metadata"]["labels"] = json!({"app":"web","tier":"x"});
        assert_eq!(
            update_errors("Deployment", new.clone(), old.clone()),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
        assert_eq!(update_errors("ReplicaSet", new, old.clone()).len(), 1);
        let mut scaled = basic_spec();
        scaled["replicas"] = json!(5);
        scaled["template"]["spec"]["containers"][0]["image"] = json!("r.io/app:2");
        assert_eq!(
            update_errors("Deployment", scaled, old),
            Vec::<String>::new()
        );
    }

    #[test]
    fn statefulset_update_may_change_only_the_allowed_fields() {
        let old = basic_spec();
        let mut ok = basic_spec();
        ok["replicas"] = json!(3);
        ok["template"]["spec"]["containers"][0]["image"] = json!("r.io/app:2");
        ok["updateStrategy"] = json!({"type":"OnDelete"});
        assert_eq!(
            update_errors("StatefulSet", ok, old.clone()),
            Vec::<String>::new()
        );
        let mut bad = basic_spec();
        bad["serviceName"] = json!("other");
        assert_eq!(
            update_errors("StatefulSet", bad, old),
            [
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ]
        );
    }
}
