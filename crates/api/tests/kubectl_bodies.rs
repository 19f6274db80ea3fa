//! End-to-end checks of the crate's request pipeline (strict field check -> defaults -> validation ->
//! Status) on the bodies real kubectl 1.32 sends (decoded from kubectl-evidence/*.pb, built here by
//! code), and on the error cases whose kubectl output kubectl-compat.md §8.2 records.

use api::resources::{by_api_version_kind, lookup};
use api::{Status, defaults, fields, validate_create};
use base64::Engine as _;
use serde_json::{Value, json};

/// Runs the pipeline the API server uses for a create in `namespace` and returns the stored object or
/// the Status a client would see.
fn create(body: Value, namespace: Option<&str>) -> Result<Value, Status> {
    let raw = serde_json::to_vec(&body).expect("body serializes");
    let info = by_api_version_kind(
        body["apiVersion"].as_str().unwrap(),
        body["kind"].as_str().unwrap(),
    )
    .expect("served kind");
    let duplicates = fields::duplicate_fields(&raw).expect("valid json");
    let report = fields::check(info, &body);
    if let Some(m) = report.mismatches.first() {
        return Err(Status::bad_request(fields::type_error(info, m)));
    }
    if let Some(msg) = fields::strict_error(&report.unknown, &duplicates) {
        return Err(Status::bad_request(msg));
    }
    let mut obj = body;
    if let (true, Some(ns)) = (info.namespaced, namespace) {
        obj["metadata"]["namespace"] = json!(ns);
    }
    defaults::apply(info, &mut obj);
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    validate_create(info, &obj).map_err(|e| Status::invalid(info, &name, &e))?;
    Ok(obj)
}

fn docker_config() -> String {
    base64::engine::general_purpose::STANDARD.encode(
        r#"{"auths":{"www.3rdregistry.com":{"username":"u","password":"p","email":"e@x.com","auth":"dTpw"}}}"#,
    )
}

#[test]
fn kubectl_create_secret_docker_registry_is_accepted() {
    let body = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"myregistrykey","generation":0},
        "data":{".dockerconfigjson": docker_config()},"type":"kubernetes.io/dockerconfigjson"});
    let stored = create(body, Some("default")).expect("accepted");
    assert_eq!(stored["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(stored["metadata"]["namespace"], "default");
}

#[test]
fn kubectl_create_namespace_is_accepted_and_labelled() {
    let body =
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team1","generation":0}});
    let stored = create(body, None).expect("accepted");
    assert_eq!(
        stored["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team1"
    );
    assert_eq!(stored["status"]["phase"], "Active");
}

#[test]
fn kubectl_create_deployment_is_accepted_with_gogo_zero_values() {
    let body = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","generation":0,"labels":{"app":"x"}},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}},
          "template":{"metadata":{"generation":0,"labels":{"app":"x"}},
            "spec":{"containers":[{"name":"app","image":"www.3rdregistry.com/team/app:1.0","stdin":false,"stdinOnce":false,"tty":false}],
              "hostNetwork":false,"hostPID":false,"hostIPC":false}},
          "strategy":{},"minReadySeconds":0,"paused":false},
        "status":{"observedGeneration":0,"replicas":0,"updatedReplicas":0,"availableReplicas":0,"unavailableReplicas":0,"readyReplicas":0}});
    let stored = create(body, Some("default")).expect("accepted");
    assert_eq!(stored["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn kubectl_run_body_with_null_timestamp_and_empty_status_is_accepted() {
    let body = json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":"foo","creationTimestamp":null,"labels":{"run":"foo"}},
        "spec":{"containers":[{"name":"foo","image":"busybox","resources":{}}],"restartPolicy":"Always","dnsPolicy":"ClusterFirst"},"status":{}});
    let stored = create(body, Some("default")).expect("accepted");
    assert_eq!(stored["spec"]["containers"][0]["imagePullPolicy"], "Always");
}

#[test]
fn invalid_pod_gives_the_two_cause_422_kubectl_prints() {
    let body = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"foo2"},
        "spec":{"restartPolicy":"Sometimes","containers":[{"name":"app"}]}});
    let status = create(body, Some("default")).unwrap_err();
    let v = status.to_value();
    assert_eq!(v["code"], 422);
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(v["details"]["kind"], "Pod");
    assert_eq!(v["details"]["name"], "foo2");
    assert_eq!(
        v["details"]["causes"],
        json!([{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"},
               {"reason":"FieldValueNotSupported","message":"Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"","field":"spec.restartPolicy"}])
    );
}

#[test]
fn docker_registry_secret_without_its_key_gives_the_upstream_message() {
    let body = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad1"},"type":"kubernetes.io/dockerconfigjson","data":{}});
    let status = create(body, Some("default")).unwrap_err();
    assert_eq!(
        status.message,
        "Secret \"bad1\" is invalid: data[.dockerconfigjson]: Required value"
    );
}

#[test]
fn malformed_docker_config_is_rejected_without_echoing_it() {
    let secret_text = "{\"auths\": hunter2-password";
    let body = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad2"},"type":"kubernetes.io/dockerconfigjson",
        "stringData":{".dockerconfigjson": secret_text}});
    let status = create(body, Some("default")).unwrap_err();
    let text = String::from_utf8(status.to_json()).unwrap();
    assert!(
        text.contains("data[.dockerconfigjson]: Invalid value: \\\"<secret contents redacted>\\\""),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn unknown_and_duplicate_fields_give_the_strict_decoding_400() {
    let status = create(
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"foo"},"spec":{"containerz":[],"containers":[{"name":"a","image":"x"}]}}),
        Some("default"),
    )
    .unwrap_err();
    assert_eq!((status.code, status.reason), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "strict decoding error: unknown field \"spec.containerz\""
    );
    let raw = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b"}}"#;
    assert_eq!(fields::duplicate_fields(raw).unwrap(), ["metadata.name"]);
}

#[test]
fn not_found_for_apps_names_the_group() {
    let sts = lookup("apps", "v1", "statefulsets").unwrap();
    assert_eq!(
        Status::not_found(sts, "nope").message,
        "statefulsets.apps \"nope\" not found"
    );
}
