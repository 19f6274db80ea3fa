//! Field management over the API with kube-rs against an in-process `apiserver::spawn`: the exact 409 Status of an
//! apply conflict (reason, message, `FieldManagerConflict` causes), the 422 option errors of upstream
//! (`fieldManager` required for apply, `force` only for apply), the 400 for client-sent managedFields, the 500 for
//! an associative list element without its key, `managedFields: [{}]` resetting ownership on update, and a no-op
//! re-apply leaving managedFields (timestamps included) untouched.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

async fn start() -> (tempfile::TempDir, apiserver::CancellationToken, Client) {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = apiserver::spawn(config, None, shutdown.clone())
        .await
        .unwrap();
    let kc = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    (dir, shutdown, Client::try_from(cfg).unwrap())
}

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

/// Sends a PATCH with `content_type` and returns the failure Status.
async fn patch_err(
    client: &Client,
    query: &str,
    content_type: &str,
    body: &Value,
) -> kube::core::Status {
    let req = http::Request::patch(format!("/api/v1/namespaces/default/configmaps/c{query}"))
        .header("Content-Type", content_type)
        .body(serde_json::to_vec(body).unwrap())
        .unwrap();
    match client.request_text(req).await {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected a failure Status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_conflict_is_an_upstream_409_with_field_manager_causes() {
    let (_dir, shutdown, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let alice = config_map(json!({"a": "1", "b": "2"}));
    cms.patch("c", &PatchParams::apply("alice"), &Patch::Apply(&alice))
        .await
        .unwrap();
    let bob = config_map(json!({"a": "9", "b": "8"}));
    let status = patch_err(
        &client,
        "?fieldManager=bob&force=false",
        "application/apply-patch+yaml",
        &bob,
    )
    .await;
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .data.a\n- .data.b"
    );
    let causes = status.details.unwrap().causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].message, "conflict with \"alice\"");
    assert_eq!(causes[0].field, ".data.a");

    // force takes ownership; alice keeps nothing she lost
    let forced = cms
        .patch("c", &PatchParams::apply("bob").force(), &Patch::Apply(&bob))
        .await
        .unwrap();
    let entries = forced.metadata.managed_fields.clone().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].manager.as_deref(), Some("bob"));
    assert_eq!(entries[0].operation.as_deref(), Some("Apply"));

    // a no-op re-apply changes neither the object nor its managedFields (timestamps included)
    let again = cms
        .patch("c", &PatchParams::apply("bob"), &Patch::Apply(&bob))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.managed_fields,
        forced.metadata.managed_fields
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_options_and_server_owned_managed_fields_are_checked_like_upstream() {
    let (_dir, shutdown, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = config_map(json!({"a": "1"}));
    let status = patch_err(&client, "", "application/apply-patch+yaml", &cm).await;
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    cms.patch("c", &PatchParams::apply("alice"), &Patch::Apply(&cm))
        .await
        .unwrap();
    let status = patch_err(
        &client,
        "?force=true",
        "application/merge-patch+json",
        &json!({"data": {"a": "2"}}),
    )
    .await;
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let mut sneaky = cm.clone();
    sneaky["metadata"]["managedFields"] = json!([{"manager": "me", "operation": "Apply"}]);
    let status = patch_err(
        &client,
        "?fieldManager=alice",
        "application/apply-patch+yaml",
        &sneaky,
    )
    .await;
    assert_eq!(
        (status.code, status.message.as_str()),
        (400, "metadata.managedFields must be nil")
    );

    // an update that sends `managedFields: [{}]` resets ownership to its own changes
    let mut live = cms.get("c").await.unwrap();
    live.data.as_mut().unwrap().insert("z".into(), "26".into());
    live.metadata.managed_fields = Some(vec![Default::default()]);
    let replaced = cms
        .replace(
            "c",
            &PostParams {
                field_manager: Some("resetter".into()),
                ..Default::default()
            },
            &live,
        )
        .await
        .unwrap();
    let entries = replaced.metadata.managed_fields.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].manager.as_deref(), Some("resetter"));
    assert_eq!(entries[0].operation.as_deref(), Some("Update"));
    assert_eq!(
        entries[0].fields_v1.as_ref().unwrap().0,
        json!({"f:data": {"f:z": {}}})
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_of_a_list_element_without_its_key_fails_like_upstream() {
    let (_dir, shutdown, client) = start().await;
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"image": "x"}]}}}});
    let req = http::Request::patch("/apis/apps/v1/namespaces/default/deployments/d?fieldManager=m")
        .header("Content-Type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let status = match client.request_text(req).await {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected a failure Status, got {other:?}"),
    };
    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "failed to create typed patch object (default/d; apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
    );
    shutdown.cancel();
}
