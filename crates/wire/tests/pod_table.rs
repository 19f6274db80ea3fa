//! Pod rows for the states kubectl users see, compared with what `kubectl get pods -o wide`
//! prints against a real cluster for the same status.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wire::table::{IncludeObject, row, table};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn pod(status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"},
        "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "r.example/team/app:1.0"}]},
        "status": status,
    })
}

fn cells(p: &Value) -> Vec<Value> {
    row("Pod", p, IncludeObject::None, now())["cells"]
        .as_array()
        .unwrap()
        .clone()
}

fn status_of(p: &Value) -> String {
    cells(p)[2].as_str().unwrap().to_string()
}

#[test]
fn running_pod() {
    let p = pod(json!({"phase": "Running", "podIPs": [{"ip": "10.1.0.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:55:03Z"}}}]}));
    assert_eq!(
        cells(&p),
        vec![
            json!("web"),
            json!("1/1"),
            json!("Running"),
            json!("0"),
            json!("5m"),
            json!("10.1.0.5"),
            json!("node1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

#[test]
fn pending_pod_without_statuses() {
    let mut p = pod(json!({"phase": "Pending"}));
    p["spec"].as_object_mut().unwrap().remove("nodeName");
    let c = cells(&p);
    assert_eq!(
        (c[1].as_str(), c[2].as_str(), c[5].as_str(), c[6].as_str()),
        (Some("0/1"), Some("Pending"), Some("<none>"), Some("<none>"))
    );
}

#[test]
fn err_image_pull_and_back_off() {
    for reason in ["ErrImagePull", "ImagePullBackOff", "ContainerCreating"] {
        let p = pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "x"}}}]}));
        assert_eq!(status_of(&p), reason);
        assert_eq!(cells(&p)[1], "0/1");
    }
}

#[test]
fn crash_loop_back_off_with_restarts_and_last_restart_age() {
    let p = pod(json!({"phase": "Running",
        "containerStatuses": [{"name": "app", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:58:30Z"}}}]}));
    let c = cells(&p);
    assert_eq!(c[2], "CrashLoopBackOff");
    assert_eq!(c[3], "4 (90s ago)");
}

#[test]
fn completed_pod_has_completed_condition() {
    let p = pod(json!({"phase": "Succeeded",
        "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2024-05-01T11:56:00Z"}}}]}));
    let r = row("Pod", &p, IncludeObject::None, now());
    assert_eq!(r["cells"][1], "0/1");
    assert_eq!(r["cells"][2], "Completed");
    assert_eq!(r["conditions"][0]["reason"], "Succeeded");
}

#[test]
fn error_exit_and_signal_without_reason() {
    let p = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "app", "restartCount": 0,
        "state": {"terminated": {"exitCode": 2}}}]}),
    );
    assert_eq!(status_of(&p), "ExitCode:2");
    let p = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "app", "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
    );
    assert_eq!(status_of(&p), "Signal:9");
}

#[test]
fn terminating_pod() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:50Z");
    assert_eq!(status_of(&p), "Terminating");
    // a finished pod being deleted keeps its terminal status
    let mut done = pod(
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    done["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:50Z");
    assert_eq!(status_of(&done), "Completed");
}

#[test]
fn init_container_states() {
    let mut p = pod(json!({"phase": "Pending",
        "initContainerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "restartCount": 0, "state": {"running": {}}}],
        "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}));
    p["spec"]["initContainers"] = json!([{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]);
    assert_eq!(status_of(&p), "Init:1/2");

    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting": {"reason": "ImagePullBackOff"}});
    assert_eq!(status_of(&p), "Init:ImagePullBackOff");

    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
    p["status"]["initContainerStatuses"][1]["restartCount"] = json!(2);
    assert_eq!(status_of(&p), "Init:ExitCode:3");
    assert_eq!(cells(&p)[3], "2");

    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting": {"reason": "CrashLoopBackOff"}});
    assert_eq!(status_of(&p), "Init:CrashLoopBackOff");
}

#[test]
fn sidecar_init_container_counts_toward_ready_total() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [{"name": "proxy", "restartCount": 1, "started": true, "ready": true, "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    p["spec"]["initContainers"] =
        json!([{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]);
    let c = cells(&p);
    assert_eq!(c[1], "2/2");
    assert_eq!(c[2], "Running");
    assert_eq!(c[3], "1 (60s ago)");
}

#[test]
fn completed_container_with_running_sibling_is_not_ready() {
    let p = json!({"metadata": {"name": "two"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    // containers are scanned last to first, so "a" (Completed) decides the reason; no Ready condition
    assert_eq!(status_of(&p), "NotReady");
}

#[test]
fn readiness_gates_column() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "example.com/lb", "status": "True"}]}),
    );
    p["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/other"}]);
    assert_eq!(cells(&p)[8], "1/2");
}

#[test]
fn watch_event_table_has_one_row() {
    let p = pod(json!({"phase": "Pending"}));
    let t = table(
        "Pod",
        std::slice::from_ref(&p),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["rows"].as_array().unwrap().len(), 1);
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
}
