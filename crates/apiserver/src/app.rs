//! The request pipeline: authentication (bearer token -> role), the request body limit, routing, and the
//! non-resource endpoints (version, health, discovery, OpenAPI). Resource requests go to [`crate::handlers`].
//! This module must never log a request body or an `Authorization` header.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use api::Status;
use store::Storage;

use crate::auth::{Authenticator, Role};
use crate::routes::{self, Health, Route};

/// Upstream `MaxRequestBodyBytes`.
pub const MAX_BODY: usize = api::status::MAX_REQUEST_BODY_BYTES;

/// Version reported at `/version` (with berth's build metadata) and in OpenAPI `info.version`.
pub const KUBE_VERSION: &str = api::openapi::KUBERNETES_VERSION;

/// Shared state of every request.
pub struct App {
    pub store: Arc<dyn Storage>,
    pub auth: Authenticator,
    pub shutdown: CancellationToken,
    /// Set once bootstrap (default namespaces) finished; `/readyz` answers 200 only then.
    pub ready: std::sync::atomic::AtomicBool,
    /// The client identity for `pods/log` requests to node agents.
    pub agent_client: Option<crate::podlog::AgentClient>,
    /// Active namespaces, kept by [`crate::nscache::NamespaceCache::run`] (started by the server; an `App` without
    /// that task reads the store for every namespace check).
    pub namespaces: Arc<crate::nscache::NamespaceCache>,
}

pub type AppRef = Arc<App>;

/// The axum router: every path goes through [`dispatch`].
pub fn router(app: AppRef) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(app)
}

/// A JSON response with a `kind: Status` body and the status code it carries.
pub fn status_response(status: &Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, status.to_json()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status.code == 429
        && let Some(secs) = status.details.as_ref().and_then(|d| d.retry_after_seconds)
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A 200 JSON response.
pub fn json_response(code: StatusCode, value: &Value, content_type: &'static str) -> Response {
    let body = serde_json::to_vec(value).expect("json values serialize");
    let mut resp = (code, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Paths anonymous clients may read (upstream `system:public-info-viewer`).
fn is_public(route: &Route) -> bool {
    matches!(route, Route::Version | Route::Health(_))
}

async fn read_body(body: Body, headers: &HeaderMap) -> Result<Bytes, Status> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > MAX_BODY as u64
    {
        return Err(Status::request_entity_too_large(MAX_BODY));
    }
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Status::bad_request(format!("failed to read the request body: {e}")))?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(Status::request_entity_too_large(MAX_BODY));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// One parsed request, handed to the handlers.
pub struct Call {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    pub role: Role,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub(crate) async fn dispatch(State(app): State<AppRef>, req: Request<Body>) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let route = routes::parse(parts.uri.path());
    let role = match parts.headers.get(header::AUTHORIZATION) {
        Some(h) => match h.to_str().ok().and_then(|h| app.auth.authenticate(h)) {
            Some(role) => Some(role),
            None => return status_response(&Status::unauthorized("Unauthorized")),
        },
        None => None,
    };
    let role = match role {
        Some(role) => role,
        None if is_public(&route) => Role::Viewer,
        None => return status_response(&Status::unauthorized("Unauthorized")),
    };
    let body = match read_body(body, &parts.headers).await {
        Ok(b) => b,
        Err(status) => return status_response(&status),
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let call = Call {
        method: parts.method,
        headers: parts.headers,
        query,
        body,
        role,
    };
    let method = call.method.clone();
    let mut resp = match route {
        Route::Resource(rp) if crate::registrycheck::handles(&rp) => {
            crate::registrycheck::serve(&app, call, rp).await
        }
        Route::Resource(rp) => crate::handlers::resource(&app, call, rp).await,
        other => non_resource(&app, &call, other).await,
    };
    let elapsed = started.elapsed();
    // `Server-Timing` (W3C): the time from receiving the request head to handing the encoded response to the
    // connection (body read, authentication, handler, serialization; not the network write), for benchmarks and
    // browser developer tools. Clients that do not know the header ignore it.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "handler;dur={:.3}",
        elapsed.as_secs_f64() * 1000.0
    )) {
        resp.headers_mut().insert(SERVER_TIMING, v);
    }
    tracing::debug!(%method, path = parts.uri.path(), status = resp.status().as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
    resp
}

/// The response header carrying the server's own time for a request (see [`dispatch`]).
pub const SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

async fn non_resource(app: &App, call: &Call, route: Route) -> Response {
    if call.method != Method::GET && call.method != Method::HEAD {
        return status_response(&Status::not_found_path());
    }
    match route {
        Route::Version => json_response(StatusCode::OK, &version_info(), "application/json"),
        Route::Health(h) => health(app, h).await,
        Route::LegacyRoot | Route::GroupsRoot | Route::Group(_) | Route::GroupVersion { .. } => {
            crate::discovery::serve(call, &route)
        }
        Route::OpenApiV3Index | Route::OpenApiV3 { .. } | Route::OpenApiV2 => {
            crate::discovery::openapi(call, &route)
        }
        Route::Resource(_) | Route::NotFound => status_response(&Status::not_found_path()),
    }
}

/// The `/version` document: a real-looking upstream version with berth's own version as build metadata.
pub fn version_info() -> Value {
    let berth = env!("CARGO_PKG_VERSION");
    let mut parts = KUBE_VERSION.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("{KUBE_VERSION}-berth.{berth}"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "n/a (berth is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn health(app: &App, which: Health) -> Response {
    let ok = match which {
        Health::Livez | Health::Healthz => app.store.current_revision().await.is_ok(),
        Health::Readyz => {
            app.ready.load(std::sync::atomic::Ordering::Acquire)
                && !app.shutdown.is_cancelled()
                && app.store.current_revision().await.is_ok()
        }
    };
    let mut resp = if ok {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::{Token, TokenStore};
    use tower::ServiceExt;

    pub(crate) struct TestApp {
        pub _dir: tempfile::TempDir,
        pub app: AppRef,
        pub admin: Token,
        pub viewer: Token,
    }

    pub(crate) async fn test_app() -> TestApp {
        test_app_in(tempfile::tempdir().unwrap()).await
    }

    /// A ready app on an existing data dir (which may already hold objects).
    pub(crate) async fn test_app_in(dir: tempfile::TempDir) -> TestApp {
        let store = crate::storage::open(dir.path()).unwrap();
        let mut tokens = TokenStore::open(dir.path()).unwrap();
        let admin = tokens.issue(Role::Admin).unwrap();
        let viewer = tokens.issue(Role::Viewer).unwrap();
        let app = Arc::new(App {
            store,
            auth: tokens.authenticator(),
            shutdown: CancellationToken::new(),
            ready: std::sync::atomic::AtomicBool::new(true),
            agent_client: None,
            namespaces: Default::default(),
        });
        crate::lifecycle::bootstrap(&app).await.unwrap();
        TestApp {
            _dir: dir,
            app,
            admin,
            viewer,
        }
    }

    pub(crate) async fn send(
        app: &AppRef,
        token: Option<&Token>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {}", t.expose()));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(app.clone())
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body)
    }

    fn json(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[tokio::test]
    async fn requests_without_a_valid_token_get_401_status_but_health_and_version_are_public() {
        let t = test_app().await;
        let (code, _, body) = send(&t.app, None, "GET", "/api/v1/pods", &[], vec![]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(json(&body)["reason"], "Unauthorized");
        assert_eq!(json(&body)["kind"], "Status");
        let bad = Token::from_string("nope".into());
        let (code, _, _) = send(&t.app, Some(&bad), "GET", "/version", &[], vec![]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _, body) = send(&t.app, None, "GET", "/readyz", &[], vec![]).await;
        assert_eq!((code, &body[..]), (StatusCode::OK, &b"ok"[..]));
        let (code, _, body) = send(&t.app, None, "GET", "/version", &[], vec![]).await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            json(&body)["gitVersion"]
                .as_str()
                .unwrap()
                .starts_with("v1.32.0-berth.")
        );
        assert!(json(&body)["goVersion"].is_string());
    }

    #[tokio::test]
    async fn version_and_openapi_info_name_the_same_kubernetes_version() {
        let t = test_app().await;
        let (_, _, body) = send(&t.app, None, "GET", "/version", &[], vec![]).await;
        let version = json(&body);
        let git = version["gitVersion"].as_str().unwrap();
        let (_, _, body) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            "/openapi/v3/api/v1",
            &[],
            vec![],
        )
        .await;
        let info = json(&body)["info"]["version"].as_str().unwrap().to_string();
        assert_eq!(git.split('-').next().unwrap(), info);
        assert_eq!(
            format!(
                "v{}.{}.0",
                version["major"].as_str().unwrap(),
                version["minor"].as_str().unwrap()
            ),
            info
        );
    }

    #[tokio::test]
    async fn viewer_writes_are_forbidden_with_the_upstream_message() {
        let t = test_app().await;
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec();
        let (code, _, resp) = send(
            &t.app,
            Some(&t.viewer),
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[("content-type", "application/json")],
            body.clone(),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            json(&resp)["message"],
            "configmaps is forbidden: User \"berth-viewer\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
        let (code, _, _) = send(
            &t.app,
            Some(&t.viewer),
            "GET",
            "/api/v1/namespaces/default/configmaps",
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn bodies_over_3_mib_get_413_and_nothing_is_stored() {
        let t = test_app().await;
        let mut body =
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":""#
                .to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_BODY));
        body.extend(br#""}}"#);
        let (code, _, resp) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            json(&resp)["message"],
            "Request entity too large: limit is 3145728"
        );
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            "/api/v1/namespaces/default/configmaps/big",
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn aggregated_discovery_is_served_only_when_asked_with_its_exact_content_type() {
        let t = test_app().await;
        let agg =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        let (code, headers, body) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            "/apis",
            &[("accept", agg)],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            headers["content-type"],
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        assert_eq!(json(&body)["kind"], "APIGroupDiscoveryList");
        let (_, headers, body) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            "/apis",
            &[("accept", "application/json")],
            vec![],
        )
        .await;
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(json(&body)["kind"], "APIGroupList");
        let (code, _, body) = send(&t.app, Some(&t.admin), "GET", "/apis/apps", &[], vec![]).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(json(&body)["kind"], "APIGroup");
    }

    #[tokio::test]
    async fn watch_from_a_compacted_revision_ends_with_a_410_expired_event() {
        let t = test_app().await;
        for i in 0..3 {
            let body =
                format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c{i}"}}}}"#);
            send(
                &t.app,
                Some(&t.admin),
                "POST",
                "/api/v1/namespaces/default/configmaps",
                &[],
                body.into_bytes(),
            )
            .await;
        }
        let rev = t.app.store.current_revision().await.unwrap();
        t.app.store.compact(rev).await.unwrap();
        let (code, _, body) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=2",
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let line: Value =
            serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(line["type"], "ERROR");
        assert_eq!(line["object"]["code"], 410);
        assert_eq!(line["object"]["reason"], "Expired");
        assert!(
            line["object"]["message"]
                .as_str()
                .unwrap()
                .starts_with("too old resource version: 2 (")
        );
    }

    #[tokio::test]
    async fn watch_without_bookmarks_allowed_ends_at_timeout_and_sends_initial_state() {
        let t = test_app().await;
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w"}}"#.to_vec();
        send(
            &t.app,
            Some(&t.admin),
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[],
            body,
        )
        .await;
        let started = std::time::Instant::now();
        let (code, _, body) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["type"], "ADDED");
        assert_eq!(lines[0]["object"]["metadata"]["name"], "w");
    }

    #[tokio::test]
    async fn field_validation_strict_rejects_and_warn_warns_about_unknown_fields() {
        let t = test_app().await;
        let body =
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u"},"dataz":{"a":"b"}}"#
                .to_vec();
        let path = "/api/v1/namespaces/default/configmaps";
        let ct = [("content-type", "application/json")];
        let (code, _, resp) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            &ct,
            body.clone(),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(
            json(&resp)["message"],
            "strict decoding error: unknown field \"dataz\""
        );
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            &format!("{path}/u"),
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (code, headers, _) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            &format!("{path}?fieldValidation=Warn"),
            &ct,
            body,
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(headers["warning"], "299 - \"unknown field \\\"dataz\\\"\"");
    }

    #[tokio::test]
    async fn dry_run_validates_but_stores_nothing_and_stale_updates_conflict() {
        let t = test_app().await;
        let path = "/api/v1/namespaces/default/configmaps";
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"}}"#.to_vec();
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            &format!("{path}?dryRun=All"),
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "GET",
            &format!("{path}/d"),
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (_, _, created) = send(&t.app, Some(&t.admin), "POST", path, &[], body).await;
        let mut obj = json(&created);
        obj["data"] = serde_json::json!({"k": "v"});
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "PUT",
            &format!("{path}/d"),
            &[],
            obj.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, _, resp) = send(
            &t.app,
            Some(&t.admin),
            "PUT",
            &format!("{path}/d"),
            &[],
            obj.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, StatusCode::CONFLICT);
        assert_eq!(json(&resp)["reason"], "Conflict");
    }

    #[tokio::test]
    async fn malformed_bodies_and_invalid_names_get_upstream_errors_and_store_nothing() {
        let t = test_app().await;
        let path = "/api/v1/namespaces/default/configmaps";
        let (code, _, resp) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            path,
            &[("content-type", "application/json")],
            b"{\"apiVersion\":".to_vec(),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(
            json(&resp)["message"]
                .as_str()
                .unwrap()
                .contains("line 1 column"),
            "{resp:?}"
        );
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n".to_vec();
        let (code, _, _) = send(
            &t.app,
            Some(&t.admin),
            "POST",
            path,
            &[("content-type", "application/yaml")],
            yaml,
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let bad =
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec();
        let (code, _, resp) = send(&t.app, Some(&t.admin), "POST", path, &[], bad).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json(&resp)["reason"], "Invalid");
        assert!(json(&resp)["message"].as_str().unwrap().starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ));
        let (_, _, list) = send(&t.app, Some(&t.admin), "GET", path, &[], vec![]).await;
        assert_eq!(json(&list)["items"].as_array().unwrap().len(), 0);
    }
}
