//! `POST /apis/berth.dev/v1/registrychecks`: berth's review-style "test this registry connection" request, shaped
//! like upstream's TokenReview and SelfSubjectAccessReview (create-only, answered in `status`, never stored).
//!
//! The handler decodes and validates the `RegistryCheck` (`api::validation::validate_registry_check`), resolves
//! the credential to test, picks the node whose agent runs the check (`spec.nodeName`, which must be Ready, or
//! the first Ready node by name), and forwards the request to that agent's `POST /registryChecks` over the
//! same pinned mutual-TLS channel `pods/log` uses ([`crate::podlog::send`]). The agent answers with the
//! status (`result` Accepted | Rejected | Unreachable | UntrustedCertificate | PlainHTTPOnly, `reason`, `host`,
//! `message`, and with `spec.fetchCertificate` the presented `chain`), which is returned with `201 Created`.
//!
//! Authorization: any person's token (admin or viewer) may create a check, as anyone may create a
//! SelfSubjectAccessReview upstream, because it changes nothing; the node identity may not (a node has no
//! business asking another node to dial a registry). A `spec.secretRef` is read here with the requester's own
//! authority (the same rule as `GET /api/v1/namespaces/{ns}/secrets/{name}`), and the Secret travels to the
//! agent inside the mutually authenticated request, so the agent never reads a Secret on a requester's behalf.
//!
//! This module must never store the object, never log or echo `spec.password` (the response's spec has it
//! removed and the agent request is never logged), and never send anything to an agent whose serving
//! certificate does not match its Node's pin.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use api::Status;
use api::resources::{self, BERTH_GROUP, ResourceInfo};
use api::validation::{BadValue, FieldError, Invalid, Path};

use crate::app::{App, Call, status_response};
use crate::auth::Role;
use crate::codec::{self, FieldValidation};
use crate::handlers::{HResult, load};
use crate::podlog::{AgentEndpoint, send};
use crate::routes::ResourcePath;

/// The agent's path for registry checks.
pub const AGENT_PATH: &str = "/registryChecks";
/// Largest agent answer accepted (a status with a certificate chain is a few KiB).
const MAX_ANSWER: usize = 1 << 20;
/// The Secret types a check can take a credential from.
const REGISTRY_SECRET_TYPES: [&str; 2] =
    ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"];

/// Whether a resource path is the `registrychecks` collection (or below it).
pub fn handles(rp: &ResourcePath) -> bool {
    rp.group == BERTH_GROUP && rp.version == "v1" && rp.resource == "registrychecks"
}

fn info() -> &'static ResourceInfo {
    resources::lookup(BERTH_GROUP, "v1", "registrychecks").expect("registrychecks are registered")
}

/// A password or token from `spec.password`; Debug never shows it.
struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Serves one request to the `registrychecks` resource.
pub async fn serve(app: &App, call: Call, rp: ResourcePath) -> Response {
    match handle(app, &call, &rp).await {
        Ok(r) => r,
        Err(s) => status_response(&s),
    }
}

async fn handle(app: &App, call: &Call, rp: &ResourcePath) -> HResult {
    let info = info();
    if rp.namespace.is_some() || rp.subresource.is_some() {
        return Err(Status::not_found_path());
    }
    if call.method != Method::POST || rp.name.is_some() {
        // Create-only: nothing is stored, so there is nothing to get, list, watch, update or delete.
        return Err(Status::method_not_allowed(info, None, call.method.as_str()));
    }
    if call.role == Role::Node {
        let reason = Status::forbidden_reason(call.role.user(), "create", info, None, None);
        return Err(Status::forbidden(info, "", &reason));
    }
    let mut warnings = Vec::new();
    let obj = codec::decode_body(call, info, FieldValidation::from_call(call)?, &mut warnings)?;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != info.api_version)
        || (!kind.is_empty() && kind != info.kind)
    {
        return Err(Status::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind} does not match {}",
            info.api_version, info.kind
        )));
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    api::validation::validate_registry_check(&obj).map_err(|e| Status::invalid(info, &name, &e))?;
    let out = codec::output(call)?;
    let spec = obj
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let text = |k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let password = spec
        .get("password")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(|p| Password(p.to_string()));
    let secret = match spec.get("secretRef").and_then(Value::as_object) {
        Some(r) => Some(read_secret(app, info, &name, r).await?),
        None => None,
    };
    let (node_name, endpoint) = pick_node(app, &text("nodeName")).await?;
    let Some(client) = app.agent_client.as_ref() else {
        return Err(Status::internal(
            "this API server has no client certificate for node agents",
        ));
    };
    let mut request = json!({
        "server": text("server"),
        "image": text("image"),
        "fetchCertificate": spec.get("fetchCertificate").and_then(Value::as_bool).unwrap_or(false),
    });
    if let Some(p) = &password {
        request["username"] = json!(text("username"));
        request["password"] = json!(p.0);
    }
    if let Some(s) = secret {
        request["secret"] = s;
    }
    let body = bytes::Bytes::from(serde_json::to_vec(&request).expect("json serializes"));
    let url = format!("https://{}:{}{AGENT_PATH}", endpoint.host, endpoint.port);
    let resp = send(client, &endpoint, Method::POST, AGENT_PATH, Some(body))
        .await
        .map_err(|detail| {
            Status::backend_unreachable(format!(
                "Post {url:?}: {detail} (node agent of node {node_name:?}; check that it runs and that its address and port on the Node are current)"
            ))
        })?;
    let code = resp.status();
    let answer = axum::body::to_bytes(Body::new(resp.into_body()), MAX_ANSWER)
        .await
        .map_err(|e| {
            Status::backend_unreachable(format!(
                "reading the registry check answer of the node agent of node {node_name:?}: {e}"
            ))
        })?;
    if !code.is_success() {
        let text = String::from_utf8_lossy(&answer).trim_end().to_string();
        let text = if text.is_empty() {
            format!(
                "the node agent of node {node_name:?} answered {} without a message; upgrade it to a berth agent that serves registry checks",
                code.as_u16()
            )
        } else {
            text
        };
        return Err(Status::relayed(code.as_u16(), text));
    }
    let mut status: Value = serde_json::from_slice(&answer).map_err(|e| {
        Status::internal(&format!(
            "the node agent of node {node_name:?} answered the registry check with invalid JSON: {e}"
        ))
    })?;
    if !status.is_object() {
        return Err(Status::internal(&format!(
            "the node agent of node {node_name:?} answered the registry check with a non-object"
        )));
    }
    status["nodeName"] = json!(node_name);
    let result = status.get("result").and_then(Value::as_str).unwrap_or("");
    let failed_host = status.get("host").and_then(Value::as_str).unwrap_or("");
    tracing::info!(
        server = %text("server"),
        image = %text("image"),
        node = %node_name,
        result,
        host = failed_host,
        "registry check"
    );
    let answered = response_object(&obj, status);
    let mut resp = codec::respond_object(StatusCode::CREATED, info, answered, 0, &out);
    codec::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// The object returned: the request's metadata and spec (without the password) and the agent's status.
fn response_object(request: &Value, status: Value) -> Value {
    let mut spec = request
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    spec.remove("password");
    let mut metadata = Map::new();
    if let Some(m) = request.get("metadata").and_then(Value::as_object) {
        for k in ["name", "generateName", "labels", "annotations"] {
            if let Some(v) = m.get(k) {
                metadata.insert(k.to_string(), v.clone());
            }
        }
    }
    metadata.insert(
        "creationTimestamp".into(),
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    json!({
        "apiVersion": format!("{BERTH_GROUP}/v1"),
        "kind": "RegistryCheck",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    })
}

/// Reads the Secret named by `spec.secretRef` with the requester's authority and checks that it holds
/// registry credentials.
async fn read_secret(
    app: &App,
    info: &ResourceInfo,
    check_name: &str,
    r: &Map<String, Value>,
) -> Result<Value, Status> {
    let secrets = resources::lookup("", "v1", "secrets").expect("secrets are registered");
    let ns = r.get("namespace").and_then(Value::as_str).unwrap_or("");
    let name = r.get("name").and_then(Value::as_str).unwrap_or("");
    let Some((secret, _)) = load(app, secrets, Some(ns), name).await? else {
        return Err(Status::invalid(
            info,
            check_name,
            &Invalid::from(vec![FieldError::invalid_str(
                &Path::new("spec").child("secretRef"),
                &format!("{ns}/{name}"),
                format!(
                    "secret {name:?} not found in namespace {ns:?}: create it (Secrets, Create Secret) or fix the reference"
                ),
            )]),
        ));
    };
    let ty = secret
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Opaque");
    if !REGISTRY_SECRET_TYPES.contains(&ty) {
        return Err(Status::invalid(
            info,
            check_name,
            &Invalid::from(vec![FieldError::invalid(
                &Path::new("spec").child("secretRef"),
                BadValue::Str(format!("{ns}/{name}")),
                format!(
                    "the Secret is of type {ty:?}; a registry check needs a kubernetes.io/dockerconfigjson (or kubernetes.io/dockercfg) Secret"
                ),
            )]),
        ));
    }
    // Only what the agent needs to build kubelet's keyring: identity, type and data.
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": secret.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
        "type": ty,
        "data": secret.get("data").cloned().unwrap_or_else(|| json!({})),
    }))
}

/// Whether a Node's `Ready` condition is `True`.
fn is_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
}

/// The node that runs the check: the requested one (which must be Ready), else the first Ready node by name.
async fn pick_node(app: &App, requested: &str) -> Result<(String, AgentEndpoint), Status> {
    let nodes = resources::lookup("", "v1", "nodes").expect("nodes are registered");
    if !requested.is_empty() {
        let Some((node, _)) = load(app, nodes, None, requested).await? else {
            return Err(Status::not_found(nodes, requested));
        };
        if !is_ready(&node) {
            return Err(Status::relayed(
                503,
                format!(
                    "node {requested:?} is not Ready, so its agent cannot run the registry check; pick a Ready node (kubectl get nodes) or leave spec.nodeName empty"
                ),
            ));
        }
        return Ok((
            requested.to_string(),
            AgentEndpoint::from_node(&node, requested)?,
        ));
    }
    let page = app
        .store
        .list(&nodes.storage_prefix(), store::ListOptions::default())
        .await
        .map_err(|e| crate::handlers::store_status(nodes, "", e))?;
    let mut ready: Vec<(String, Value)> = page
        .items
        .iter()
        .filter_map(|kv| codec::parse_stored(&kv.value).ok())
        .filter(is_ready)
        .map(|n| {
            let name = n
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (name, n)
        })
        .collect();
    ready.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((name, node)) = ready.into_iter().next() else {
        return Err(Status::relayed(
            503,
            "no node is Ready, so no agent can run the registry check; start berth server with its embedded agent or join a node with berth agent",
        ));
    };
    let endpoint = AgentEndpoint::from_node(&node, &name)?;
    Ok((name, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{send as call_api, test_app};

    const PATH: &str = "/apis/berth.dev/v1/registrychecks";

    fn json_of(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn the_answer_never_echoes_the_password() {
        let request = json!({"apiVersion": "berth.dev/v1", "kind": "RegistryCheck",
            "metadata": {"name": "try", "uid": "ignored"},
            "spec": {"server": "r.io", "username": "u", "password": "hunter2-secret"}});
        let out = response_object(&request, json!({"result": "Accepted"}));
        let text = out.to_string();
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert_eq!(out["spec"], json!({"server": "r.io", "username": "u"}));
        assert_eq!(out["metadata"]["name"], "try");
        assert!(out["metadata"].get("uid").is_none());
        assert_eq!(out["status"]["result"], "Accepted");
        assert!(
            !format!("{:?}", Password("hunter2-secret".into())).contains("hunter2"),
            "Debug redacts"
        );
    }

    #[test]
    fn only_ready_nodes_run_checks() {
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert!(is_ready(&ready));
        assert!(!is_ready(&not_ready));
        assert!(!is_ready(&json!({})));
    }

    #[tokio::test]
    async fn checks_are_create_only_and_not_for_the_node_identity() {
        let t = test_app().await;
        let (code, _, body) = call_api(&t.app, Some(&t.admin), "GET", PATH, &[], vec![]).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{body:?}");
        let (code, _, _) = call_api(
            &t.app,
            Some(&t.admin),
            "DELETE",
            &format!("{PATH}/x"),
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        let mut tokens = crate::auth::TokenStore::open(t._dir.path()).unwrap();
        let node = tokens.issue(Role::Node).unwrap();
        let app = std::sync::Arc::new(App {
            store: t.app.store.clone(),
            auth: tokens.authenticator(),
            shutdown: t.app.shutdown.clone(),
            ready: std::sync::atomic::AtomicBool::new(true),
            agent_client: None,
            namespaces: Default::default(),
        });
        let body =
            br#"{"apiVersion":"berth.dev/v1","kind":"RegistryCheck","spec":{"server":"r.io"}}"#;
        let (code, _, resp) = call_api(&app, Some(&node), "POST", PATH, &[], body.to_vec()).await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            json_of(&resp)["message"],
            "registrychecks.berth.dev is forbidden: User \"system:node\" cannot create resource \"registrychecks\" in API group \"berth.dev\" at the cluster scope"
        );
    }

    #[tokio::test]
    async fn invalid_checks_get_422_without_the_password_and_no_node_is_503() {
        let t = test_app().await;
        let body = br#"{"apiVersion":"berth.dev/v1","kind":"RegistryCheck","spec":{"server":"r.io:0","password":"hunter2-secret"}}"#;
        let (code, _, resp) =
            call_api(&t.app, Some(&t.viewer), "POST", PATH, &[], body.to_vec()).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        let text = String::from_utf8_lossy(&resp).to_string();
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("spec.server"), "{text}");
        assert!(text.contains("spec.username: Required value"), "{text}");
        let body = br#"{"apiVersion":"berth.dev/v1","kind":"RegistryCheck","spec":{"server":"r.io","secretRef":{"namespace":"default","name":"nope"}}}"#;
        let (code, _, resp) =
            call_api(&t.app, Some(&t.viewer), "POST", PATH, &[], body.to_vec()).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            json_of(&resp)["message"]
                .as_str()
                .unwrap()
                .contains("secret \"nope\" not found in namespace \"default\""),
            "{resp:?}"
        );
        let body =
            br#"{"apiVersion":"berth.dev/v1","kind":"RegistryCheck","spec":{"server":"r.io"}}"#;
        let (code, _, resp) =
            call_api(&t.app, Some(&t.viewer), "POST", PATH, &[], body.to_vec()).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{resp:?}");
        assert!(
            json_of(&resp)["message"]
                .as_str()
                .unwrap()
                .starts_with("no node is Ready"),
            "{resp:?}"
        );
    }

    #[tokio::test]
    async fn an_opaque_secret_cannot_be_tested() {
        let t = test_app().await;
        let secret = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"plain"},"type":"Opaque","data":{"k":"dg=="}}"#;
        let (code, _, _) = call_api(
            &t.app,
            Some(&t.admin),
            "POST",
            "/api/v1/namespaces/default/secrets",
            &[],
            secret.to_vec(),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        let body = br#"{"apiVersion":"berth.dev/v1","kind":"RegistryCheck","spec":{"server":"r.io","secretRef":{"namespace":"default","name":"plain"}}}"#;
        let (code, _, resp) =
            call_api(&t.app, Some(&t.viewer), "POST", PATH, &[], body.to_vec()).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            json_of(&resp)["message"]
                .as_str()
                .unwrap()
                .contains("the Secret is of type \"Opaque\""),
            "{resp:?}"
        );
    }
}
