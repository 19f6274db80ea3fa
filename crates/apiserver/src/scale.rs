//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets as an `autoscaling/v1` `Scale`:
//! reads `spec.replicas`, `status.replicas` and the selector of the parent, and writes `spec.replicas` back with
//! compare-and-swap, recording the writer in `managedFields` as upstream does (an `Update` entry with
//! `subresource: scale` that takes `spec.replicas` from its previous owners). It must never change anything of
//! the parent but `spec.replicas` and that ownership.

use axum::http::StatusCode;
use serde_json::{Value, json};

use api::Status;
use api::resources::ResourceInfo;
use store::StoreError;

use crate::app::{App, Call, json_response};
use crate::codec::{self, FieldValidation, PatchKind};
use crate::handlers::{HResult, Part, commit_update, load, prepare_write, store_status};
use crate::meta;

/// Renders a label selector the way upstream `metav1.FormatLabelSelector` does (`a=b,c in (d,e)`).
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// The Scale of a parent object.
pub fn scale_of(parent: &Value) -> Value {
    let m = parent.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            metadata[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": parent.get("spec").and_then(|s| s.get("replicas")).and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": parent.get("status").and_then(|s| s.get("replicas")).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(parent.get("spec").and_then(|s| s.get("selector"))),
        },
    })
}

pub async fn get(app: &App, info: &ResourceInfo, ns: Option<&str>, name: &str) -> HResult {
    let (obj, _) = load(app, info, ns, name)
        .await?
        .ok_or_else(|| Status::not_found(info, name))?;
    Ok(json_response(StatusCode::OK, &scale_of(&obj), codec::JSON))
}

fn replicas_of(scale: &Value) -> Result<i64, Status> {
    let r = scale.get("spec").and_then(|s| s.get("replicas"));
    match r {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| Status::bad_request("spec.replicas must be an integer")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn write(
    app: &App,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    manager: &str,
    replicas: i64,
    expected_rv: Option<&str>,
    old: Value,
    rev: u64,
) -> Result<Option<Value>, Status> {
    if let Some(rv) = expected_rv
        && rv != rev.to_string()
    {
        return Err(Status::conflict_modified(info, name));
    }
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(replicas);
    let mut new = prepare_write(info, Part::Main, new, &old)?;
    crate::handlers::record_update(info, "scale", manager, &old, &mut new, None);
    match commit_update(app, info, ns, name, new, rev).await {
        Ok((new, _, _)) => Ok(Some(scale_of(&new))),
        Err(StoreError::Conflict { .. }) if expected_rv.is_none() => Ok(None),
        Err(e) => Err(store_status(info, name, e)),
    }
}

pub async fn update(
    app: &App,
    call: &Call,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> HResult {
    let scale: Value = serde_json::from_slice(&call.body)
        .map_err(|e| Status::bad_request(format!("couldn't decode the Scale: {e}")))?;
    let replicas = replicas_of(&scale)?;
    if replicas < 0 {
        return Err(scale_invalid(name, replicas));
    }
    let expected = meta::meta_str(&scale, "resourceVersion").map(str::to_string);
    let manager = crate::handlers::field_manager(call);
    loop {
        let (old, rev) = load(app, info, ns, name)
            .await?
            .ok_or_else(|| Status::not_found(info, name))?;
        if let Some(s) = write(
            app,
            info,
            ns,
            name,
            &manager,
            replicas,
            expected.as_deref(),
            old,
            rev,
        )
        .await?
        {
            return Ok(json_response(StatusCode::OK, &s, codec::JSON));
        }
    }
}

fn scale_invalid(name: &str, replicas: i64) -> Status {
    let scale_info = ResourceInfo {
        kind: "Scale",
        group: "autoscaling",
        ..*api::resources::lookup("apps", "v1", "deployments").expect("deployments are registered")
    };
    let err = api::validation::FieldError::invalid(
        &api::validation::Path::new("spec").child("replicas"),
        api::validation::BadValue::Int(replicas),
        api::validation::IS_NEGATIVE_ERROR_MSG,
    );
    Status::invalid(&scale_info, name, &api::Invalid::from(vec![err]))
}

pub async fn patch(
    app: &App,
    call: &Call,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> HResult {
    let kind = PatchKind::from_call(call, info)?;
    let validation = FieldValidation::from_call(call)?;
    let manager = crate::handlers::field_manager(call);
    loop {
        let (old, rev) = load(app, info, ns, name)
            .await?
            .ok_or_else(|| Status::not_found(info, name))?;
        let current = scale_of(&old);
        let mut warnings = Vec::new();
        let _ = validation;
        let patched = codec::apply_patch(
            call,
            info,
            kind,
            FieldValidation::Ignore,
            &current,
            &mut warnings,
        )?;
        let replicas = replicas_of(&patched)?;
        if replicas < 0 {
            return Err(scale_invalid(name, replicas));
        }
        let expected = meta::meta_str(&patched, "resourceVersion")
            .filter(|rv| Some(*rv) != meta::meta_str(&current, "resourceVersion"))
            .map(str::to_string);
        if let Some(s) = write(
            app,
            info,
            ns,
            name,
            &manager,
            replicas,
            expected.as_deref(),
            old,
            rev,
        )
        .await?
        {
            return Ok(json_response(StatusCode::OK, &s, codec::JSON));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reports_spec_status_and_selector_of_the_parent() {
        let d = json!({"metadata": {"name": "x", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=x,tier in (a,b)");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }
}
