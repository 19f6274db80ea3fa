//! The `pods/binding` subresource (POST a `v1 Binding`), as upstream's `BindingREST`: the Binding's name must be
//! the pod's, its target a Node by name; the pod gets `spec.nodeName` and the condition `PodScheduled=True`
//! (upstream `UpdatePodCondition`: a new lastTransitionTime only when the status changes), and the Binding's
//! annotations are merged into the pod's. A pod that is already bound or being deleted is a 409 on
//! `pods/binding`, a missing pod a 404; the answer is a 201 `Success` Status. The write is a compare-and-swap on
//! the pod's revision, retried on a lost race, so two schedulers can never both bind one pod. Like upstream it
//! bypasses the pod update validation that forbids changing `spec.nodeName`; it must never change anything else.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use api::Status;
use api::resources::ResourceInfo;
use api::validation::{FieldError, Invalid, Path};
use store::StoreError;

use crate::app::{App, Call, json_response};
use crate::handlers::{HResult, commit_update, load, store_status};
use crate::{codec, meta};

/// How many times the bind re-reads the pod after losing a compare-and-swap race.
const CAS_ATTEMPTS: usize = 16;

/// Upstream `ValidatePodBinding`.
fn validate(binding: &Value) -> Result<(), Invalid> {
    let target = binding.get("target").and_then(Value::as_object);
    let empty = Map::new();
    let target = target.unwrap_or(&empty);
    let kind = target.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = target.get("name").and_then(Value::as_str).unwrap_or("");
    let path = Path::new("target");
    let mut errs = Vec::new();
    if !kind.is_empty() && kind != "Node" {
        errs.push(FieldError::not_supported(
            &path.child("kind"),
            kind,
            &["Node", "<empty>"],
        ));
    }
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::from(errs))
    }
}

/// Upstream `podutil.UpdatePodCondition` for `PodScheduled=True` at `now`.
fn set_scheduled(pod: &mut Value, now: &str) {
    let status = pod
        .as_object_mut()
        .expect("pods are objects")
        .entry("status")
        .or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = status
        .as_object_mut()
        .expect("checked above")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("checked above");
    let mut condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now});
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(old) => {
            if old.get("status").and_then(Value::as_str) == Some("True")
                && let Some(t) = old.get("lastTransitionTime")
            {
                condition["lastTransitionTime"] = t.clone();
            }
            *old = condition;
        }
        None => list.push(condition),
    }
}

/// `POST /api/v1/namespaces/{ns}/pods/{name}/binding`.
pub async fn create(
    app: &App,
    call: &Call,
    pods: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> HResult {
    let binding = codec::decode_untyped(call)?;
    let api_version = binding
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = binding.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != "v1") || (!kind.is_empty() && kind != "Binding") {
        return Err(Status::bad_request(format!(
            "not a Binding object: the body is {api_version}/{kind}; send apiVersion v1, kind Binding"
        )));
    }
    if meta::meta_str(&binding, "name").unwrap_or("") != name {
        return Err(Status::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    if let Some(body_ns) = meta::meta_str(&binding, "namespace")
        && Some(body_ns) != ns
    {
        return Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    validate(&binding).map_err(|e| Status::invalid_kind("", "Binding", name, &e))?;
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    let annotations = binding
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let dry_run = match call.param("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(Status::bad_request(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    for _ in 0..CAS_ATTEMPTS {
        let Some((mut pod, rev)) = load(app, pods, ns, name).await? else {
            return Err(Status::not_found(pods, name));
        };
        if meta::is_deleting(&pod) {
            return Err(Status::conflict_on(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let current = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !current.is_empty() {
            return Err(Status::conflict_on(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is already assigned to node {current:?}"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        if !annotations.is_empty() {
            let m = meta::meta_mut(&mut pod);
            let pod_annotations = m.entry("annotations").or_insert_with(|| json!({}));
            if !pod_annotations.is_object() {
                *pod_annotations = json!({});
            }
            let target = pod_annotations.as_object_mut().expect("checked above");
            for (k, v) in &annotations {
                target.insert(k.clone(), v.clone());
            }
        }
        set_scheduled(&mut pod, &meta::now_rfc3339());
        if dry_run {
            break;
        }
        match commit_update(app, pods, ns, name, pod, rev).await {
            Ok(_) => {
                tracing::info!(namespace = ns.unwrap_or(""), pod = name, %node, "bound");
                break;
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_status(pods, name, e)),
        }
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        "application/json",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_validation_matches_upstream() {
        let ok = json!({"target": {"kind": "Node", "name": "n1"}});
        assert!(validate(&ok).is_ok());
        assert!(validate(&json!({"target": {"name": "n1"}})).is_ok());
        let bad = validate(&json!({"target": {"kind": "Pod"}})).unwrap_err();
        let msgs: Vec<String> = bad.errors().iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\"",
                "target.name: Required value",
            ]
        );
    }

    #[test]
    fn scheduled_condition_replaces_an_unschedulable_one_and_keeps_a_true_transition_time() {
        let mut pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        set_scheduled(&mut pod, "2026-01-02T00:00:00Z");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": "2026-01-02T00:00:00Z"}])
        );
        set_scheduled(&mut pod, "2026-01-03T00:00:00Z");
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-02T00:00:00Z"
        );
        let mut bare = json!({"spec": {}});
        set_scheduled(&mut bare, "t");
        assert_eq!(bare["status"]["conditions"][0]["type"], "PodScheduled");
    }
}
