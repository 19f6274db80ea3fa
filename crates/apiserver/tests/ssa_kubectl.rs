//! Server-side apply field ownership with the real kubectl (`/usr/bin/kubectl`, or `$KUBECTL`) against an
//! in-process `apiserver::spawn`: fields dropped from a re-apply disappear, managers conflict with upstream's
//! message until `--force-conflicts`, `kubectl create` and `kubectl scale` record `Update` entries that later
//! applies conflict with, status writes get their own entry, and `kubectl get -o yaml` hides managedFields as
//! on a real cluster.

#[path = "common/kubectl.rs"]
mod kubectl;

use kubectl::Kubectl;
use serde_json::Value;

async fn start() -> (
    tempfile::TempDir,
    apiserver::CancellationToken,
    apiserver::Running,
) {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = apiserver::spawn(config, None, shutdown.clone())
        .await
        .unwrap();
    (dir, shutdown, running)
}

/// A Deployment manifest; `replicas: None` leaves the field out, `env` lists `NAME=value` pairs.
fn deployment(replicas: Option<u32>, tier: bool, image: &str, env: &[(&str, &str)]) -> String {
    let mut y = String::from(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    app: web\n",
    );
    if tier {
        y.push_str("    tier: fe\n");
    }
    y.push_str("spec:\n");
    if let Some(r) = replicas {
        y.push_str(&format!("  replicas: {r}\n"));
    }
    y.push_str(&format!(
        "  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
    ));
    if !env.is_empty() {
        y.push_str("        env:\n");
        for (k, v) in env {
            y.push_str(&format!("        - {{name: {k}, value: \"{v}\"}}\n"));
        }
    }
    y
}

async fn get_json(k: &Kubectl, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(k.run(&args, None).await.ok()).unwrap()
}

/// The `fieldsV1` of the entry of `manager` with `operation`, as compact JSON text ("" when absent).
fn owned(obj: &Value, manager: &str, operation: &str) -> String {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapply_without_a_field_removes_it_and_get_hides_managed_fields() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    let first = deployment(
        Some(2),
        true,
        "r.example.com/app:1",
        &[("A", "1"), ("B", "2")],
    );
    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&first))
        .await;
    assert_eq!(out.ok().trim(), "deployment.apps/web serverside-applied");
    let d = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(d["metadata"]["labels"]["tier"], "fe");
    let fields = owned(&d, "kubectl", "Apply");
    assert!(fields.contains(r#""f:tier":{}"#), "{fields}");
    assert!(fields.contains(r#""k:{\"name\":\"B\"}""#), "{fields}");
    let entry = &d["metadata"]["managedFields"][0];
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));

    let second = deployment(Some(2), false, "r.example.com/app:1", &[("A", "1")]);
    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&second))
        .await;
    assert_eq!(out.ok().trim(), "deployment.apps/web serverside-applied");
    let d = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "web"}));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "A", "value": "1"}])
    );
    assert!(!owned(&d, "kubectl", "Apply").contains("f:tier"));

    // kubectl hides managedFields by default, exactly as against a real cluster
    let yaml = k.run(&["get", "deploy", "web", "-o", "yaml"], None).await;
    assert!(!yaml.ok().contains("managedFields"), "{}", yaml.stdout);
    let shown = k
        .run(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "yaml",
                "--show-managed-fields",
            ],
            None,
        )
        .await;
    assert!(
        shown.ok().contains("manager: kubectl\n"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("operation: Apply"),
        "{}",
        shown.stdout
    );

    // the server owns managedFields: an apply that sends them is refused like upstream
    let sneaky = second.replace(
        "  name: web\n",
        "  name: web\n  managedFields:\n  - manager: me\n    operation: Apply\n",
    );
    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&sneaky))
        .await;
    assert!(
        out.err().contains("metadata.managedFields must be nil"),
        "{}",
        out.stderr
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliers_conflict_until_force_conflicts() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    let alice = deployment(Some(2), false, "r.example.com/app:1", &[]);
    k.run(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        Some(&alice),
    )
    .await
    .ok();
    // same values from another manager: shared ownership, no conflict
    k.run(
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        Some(&alice),
    )
    .await
    .ok();
    let bob = deployment(Some(3), false, "r.example.com/app:2", &[]);
    let out = k
        .run(
            &["apply", "--server-side", "--field-manager=carol", "-f", "-"],
            Some(&bob),
        )
        .await;
    let err = out.err();
    assert!(
        err.contains(
            "Apply failed with 4 conflicts: conflicts with \"alice\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image\nconflicts with \"bob\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
        ),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    let d = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 2);

    let single =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n";
    let out = k
        .run(
            &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
            Some(single),
        )
        .await;
    assert!(
        out.err()
            .contains("Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"),
        "{}",
        out.stderr
    );
    let out = k
        .run(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=carol",
                "-f",
                "-",
            ],
            Some(&bob),
        )
        .await;
    assert_eq!(out.ok().trim(), "deployment.apps/web serverside-applied");
    let d = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(owned(&d, "carol", "Apply").contains("f:replicas"));
    assert!(!owned(&d, "alice", "Apply").contains("f:replicas"));
    assert!(!owned(&d, "bob", "Apply").contains("f:image"));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_after_create_shares_fields_and_conflicts_on_change() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    let manifest = deployment(Some(2), false, "r.example.com/app:1", &[]);
    k.run(&["create", "-f", "-"], Some(&manifest)).await.ok();
    let d = get_json(&k, &["deploy", "web"]).await;
    let created = owned(&d, "kubectl-create", "Update");
    // the creator owns what it sent and the defaults, in upstream's encoding
    assert!(created.contains(r#""f:replicas":{}"#), "{created}");
    assert!(
        created.contains(r#""f:revisionHistoryLimit":{}"#),
        "{created}"
    );
    assert!(
        created.contains(r#""k:{\"name\":\"app\"}":{".":{}"#),
        "{created}"
    );

    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .await;
    assert_eq!(out.ok().trim(), "deployment.apps/web serverside-applied");
    let d = get_json(&k, &["deploy", "web"]).await;
    assert!(owned(&d, "kubectl", "Apply").contains("f:image"));
    assert!(owned(&d, "kubectl-create", "Update").contains("f:image"));

    let changed = deployment(Some(2), false, "r.example.com/app:2", &[]);
    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&changed))
        .await;
    assert!(
        out.err().contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.template.spec.containers[name=\"app\"].image"
        ),
        "{}",
        out.stderr
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_then_apply_of_replicas_conflicts_and_status_writes_own_status() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    let manifest = deployment(Some(1), false, "r.example.com/app:1", &[]);
    k.run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .await
        .ok();
    let out = k.run(&["scale", "deploy/web", "--replicas=3"], None).await;
    assert_eq!(out.ok().trim(), "deployment.apps/web scaled");
    let d = get_json(&k, &["deploy", "web"]).await;
    let scaler = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "scale")
        .expect("a scale entry")
        .clone();
    assert_eq!(scaler["operation"], "Update");
    assert_eq!(scaler["apiVersion"], "apps/v1");
    assert_eq!(
        scaler["fieldsV1"],
        serde_json::json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(!owned(&d, "kubectl", "Apply").contains("f:replicas"));

    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .await;
    let expected = format!(
        "Apply failed with 1 conflict: conflict with {:?} with subresource \"scale\" using apps/v1: .spec.replicas",
        scaler["manager"].as_str().unwrap()
    );
    assert!(out.err().contains(&expected), "{}", out.stderr);

    // without replicas the apply goes through and the scaled value stays
    let without = deployment(None, false, "r.example.com/app:1", &[]);
    k.run(&["apply", "--server-side", "-f", "-"], Some(&without))
        .await
        .ok();
    let d = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 3);

    // a status write gets its own entry and leaves spec ownership alone
    k.run(
        &[
            "patch",
            "deploy",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":1}}"#,
        ],
        None,
    )
    .await
    .ok();
    let d = get_json(&k, &["deploy", "web"]).await;
    let status_entry = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "status")
        .expect("a status entry")
        .clone();
    assert_eq!(status_entry["manager"], "kubectl-patch");
    assert_eq!(
        status_entry["fieldsV1"],
        serde_json::json!({"f:status": {"f:observedGeneration": {}}})
    );
    assert!(owned(&d, "kubectl", "Apply").contains("f:image"));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_takes_over_from_client_side_apply() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    let v1 = deployment(Some(2), false, "r.example.com/app:1", &[("A", "1")]);
    assert_eq!(
        k.run(&["apply", "-f", "-"], Some(&v1)).await.ok().trim(),
        "deployment.apps/web created"
    );
    let v2 = deployment(Some(2), false, "r.example.com/app:2", &[("A", "1")]);
    assert_eq!(
        k.run(&["apply", "-f", "-"], Some(&v2)).await.ok().trim(),
        "deployment.apps/web configured"
    );
    let d = get_json(&k, &["deploy", "web"]).await;
    assert!(owned(&d, "kubectl-client-side-apply", "Update").contains("f:image"));

    // the first server-side apply changes a field client-side apply owned: no conflict, then kubectl
    // migrates the client-side entries to its own
    let v3 = deployment(Some(2), false, "r.example.com/app:3", &[("A", "1")]);
    let out = k
        .run(&["apply", "--server-side", "-f", "-"], Some(&v3))
        .await;
    assert_eq!(
        out.ok().trim(),
        "deployment.apps/web serverside-applied",
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Warning"), "{}", out.stderr);
    let d = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "r.example.com/app:3"
    );
    assert_eq!(owned(&d, "kubectl-client-side-apply", "Update"), "");
    assert!(owned(&d, "kubectl", "Apply").contains("f:image"));
    let last = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(last.contains("r.example.com/app:3"), "{last}");

    // from now on dropping a field removes it
    let v4 = deployment(Some(2), false, "r.example.com/app:3", &[]);
    k.run(&["apply", "--server-side", "-f", "-"], Some(&v4))
        .await
        .ok();
    let d = get_json(&k, &["deploy", "web"]).await;
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none()
    );
    shutdown.cancel();
}
