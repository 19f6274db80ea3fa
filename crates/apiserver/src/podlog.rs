//! `pods/log`: the API server's half of kubelet's log contract, proxied to the berth node agent that runs the pod.
//!
//! It parses and validates `PodLogOptions` from the query (upstream conversions and `ValidatePodLogOptions`
//! texts), resolves the container as upstream's `validateContainer` does, finds the node's agent from the Node
//! object (`status.addresses` InternalIP, `status.daemonEndpoints.kubeletEndpoint.Port`, and the annotation
//! `berth.dev/serving-cert-sha256`), and then calls `GET /containerLogs/{ns}/{pod}/{container}` over TLS with only
//! the parameters the user set. The agent is authenticated by pinning that SHA-256 of its self-signed serving
//! certificate (nothing else about its certificate is trusted), and the API server authenticates itself with the
//! client certificate `berth:apiserver` signed by the cluster CA. A 2xx answer streams through unbuffered (so
//! `kubectl logs -f` follows); any other answer becomes a Status with the agent's code and text, as kubelet's
//! texts reach kubectl upstream. An unscheduled pod answers an empty log, as upstream does.
//!
//! The TLS client is hand-assembled (tokio-rustls + hyper's HTTP/1 connection over the pinned configuration of
//! `tlspin::pinned_client_config`, which node agents use between themselves too) rather than a general
//! HTTP client because the trust decision is a per-request fingerprint pin with a fixed client identity; no pooled
//! client exposes that without wrapping the same pieces. This module must never follow redirects, never send the
//! user's bearer token to an agent, and never trust an agent certificate that does not match the Node's pin.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tlspin::{CertificatePin, pinned_client_config};

use api::Status;
use api::resources::{self, ResourceInfo};
use api::validation::{BadValue, FieldError, Invalid, Path};

use crate::app::{App, Call};
use crate::handlers::{HResult, load};

/// The Node annotation holding the lowercase hex SHA-256 of the agent's serving certificate (DER).
pub const SERVING_CERT_ANNOTATION: &str = "berth.dev/serving-cert-sha256";
/// How long connecting and the TLS handshake to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to send its response headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upstream `maxReadLength` for an error body relayed from the kubelet.
const MAX_ERROR_BODY: usize = 50_000;

/// The client identity presented to node agents.
pub struct AgentClient {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

impl AgentClient {
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        AgentClient {
            chain,
            key,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    fn tls_config(&self, pin: [u8; 32]) -> Result<rustls::ClientConfig, rustls::Error> {
        let pinned = CertificatePin::new(pin).with_mismatch(|presented, pinned| {
            format!(
                "the agent presented a serving certificate with SHA-256 {presented}, but its Node pins {pinned} in the annotation {SERVING_CERT_ANNOTATION}; restart the agent so it republishes its certificate"
            )
        });
        pinned_client_config(
            self.provider.clone(),
            pinned,
            self.chain.clone(),
            self.key.clone_key(),
        )
    }
}

/// `PodLogOptions` as the query carries them; the container is resolved separately.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// Upstream's query conversion of a bool: absent or `false`/`0` (any case) is false, anything else true.
fn query_bool(call: &Call, name: &str) -> bool {
    call.param(name)
        .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"))
}

fn query_int(call: &Call, name: &str) -> Result<Option<i64>, Status> {
    match call.param(name) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            Status::bad_request(format!(
                "couldn't parse the query parameter {name}={v:?}: it must be an integer"
            ))
        }),
    }
}

impl LogOptions {
    /// Parses and validates the query of a `pods/log` request (`name` is the pod, for the 422 message).
    pub fn from_call(call: &Call, name: &str) -> Result<Self, Status> {
        let since_time = match call.param("sinceTime").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => {
                let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|e| {
                    Status::bad_request(format!(
                        "couldn't parse the query parameter sinceTime={v:?}: {e}; use RFC 3339, e.g. 2024-05-01T12:00:00Z"
                    ))
                })?;
                Some(
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            }
        };
        let opts = LogOptions {
            container: call.param("container").unwrap_or("").to_string(),
            follow: query_bool(call, "follow"),
            previous: query_bool(call, "previous"),
            timestamps: query_bool(call, "timestamps"),
            since_seconds: query_int(call, "sinceSeconds")?,
            since_time,
            tail_lines: query_int(call, "tailLines")?,
            limit_bytes: query_int(call, "limitBytes")?,
        };
        opts.validate()
            .map_err(|e| Status::invalid_kind("", "PodLogOptions", name, &e))?;
        Ok(opts)
    }

    /// Upstream `ValidatePodLogOptions`.
    fn validate(&self) -> Result<(), Invalid> {
        let mut errs = Vec::new();
        if let Some(t) = self.tail_lines
            && t < 0
        {
            errs.push(FieldError::invalid(
                &Path::new("tailLines"),
                BadValue::Int(t),
                api::validation::IS_NEGATIVE_ERROR_MSG,
            ));
        }
        if let Some(l) = self.limit_bytes
            && l < 1
        {
            errs.push(FieldError::invalid(
                &Path::new("limitBytes"),
                BadValue::Int(l),
                "must be greater than 0",
            ));
        }
        match (self.since_seconds, &self.since_time) {
            (Some(_), Some(_)) => errs.push(FieldError::forbidden(
                &Path::new(""),
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(s), None) if s < 1 => errs.push(FieldError::invalid(
                &Path::new("sinceSeconds"),
                BadValue::Int(s),
                "must be greater than 0",
            )),
            _ => {}
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Invalid::from(errs))
        }
    }

    /// The agent's query: only what the user set, in kubelet's parameter names.
    pub fn agent_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if self.follow {
            q.append_pair("follow", "true");
        }
        if self.previous {
            q.append_pair("previous", "true");
        }
        if self.timestamps {
            q.append_pair("timestamps", "true");
        }
        if let Some(s) = self.since_seconds {
            q.append_pair("sinceSeconds", &s.to_string());
        }
        if let Some(t) = &self.since_time {
            q.append_pair("sinceTime", t);
        }
        if let Some(t) = self.tail_lines {
            q.append_pair("tailLines", &t.to_string());
        }
        if let Some(l) = self.limit_bytes {
            q.append_pair("limitBytes", &l.to_string());
        }
        q.finish()
    }
}

fn container_names<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
}

/// Upstream `validateContainer`: the only container when none is named, else the named one must exist (init,
/// regular or ephemeral).
pub fn resolve_container(pod: &Value, requested: &str) -> Result<String, Status> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let all: Vec<&str> = container_names(pod, "initContainers")
        .chain(container_names(pod, "containers"))
        .chain(container_names(pod, "ephemeralContainers"))
        .collect();
    if requested.is_empty() {
        let regular: Vec<&str> = container_names(pod, "containers").collect();
        return match regular.as_slice() {
            [only] => Ok(only.to_string()),
            [] => Err(Status::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => Err(Status::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                all.join(" ")
            ))),
        };
    }
    if all.contains(&requested) {
        Ok(requested.to_string())
    } else {
        Err(Status::bad_request(format!(
            "container {requested} is not valid for pod {pod_name}"
        )))
    }
}

/// Where a node's agent listens and which certificate it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    pub host: String,
    pub port: u16,
    pub pin: [u8; 32],
}

impl AgentEndpoint {
    /// Reads the endpoint from a Node object as the agent publishes it.
    pub fn from_node(node: &Value, node_name: &str) -> Result<Self, Status> {
        let unusable = |what: &str| {
            Status::backend_unreachable(format!(
                "node {node_name:?} {what}, so the API server cannot reach its agent for logs; check that a berth agent runs as this node (berth agent --node-name {node_name}) and that it has registered"
            ))
        };
        let host = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .filter(|a| !a.is_empty())
            .ok_or_else(|| unusable("publishes no InternalIP address"))?;
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                unusable("publishes no agent port (status.daemonEndpoints.kubeletEndpoint.Port)")
            })?;
        let pin_hex = node
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SERVING_CERT_ANNOTATION))
            .and_then(Value::as_str)
            .ok_or_else(|| unusable(&format!("has no {SERVING_CERT_ANNOTATION} annotation")))?;
        let pin: [u8; 32] = hex::decode(pin_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                unusable(&format!(
                    "has an annotation {SERVING_CERT_ANNOTATION} that is not 64 hex digits"
                ))
            })?;
        Ok(AgentEndpoint {
            host: host.to_string(),
            port,
            pin,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `GET .../pods/{name}/log`.
pub async fn get(
    app: &App,
    call: &Call,
    pods: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> HResult {
    let opts = LogOptions::from_call(call, name)?;
    let Some((pod, _)) = load(app, pods, ns, name).await? else {
        return Err(Status::not_found(pods, name));
    };
    let container = resolve_container(&pod, &opts.container)?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node_name.is_empty() {
        // Upstream: no location, an empty log.
        return Ok(text_response(Body::empty()));
    }
    let nodes = resources::lookup("", "v1", "nodes").expect("nodes are registered");
    let Some((node, _)) = load(app, nodes, None, node_name).await? else {
        return Err(Status::not_found(nodes, node_name));
    };
    let endpoint = AgentEndpoint::from_node(&node, node_name)?;
    let Some(client) = app.agent_client.as_ref() else {
        return Err(Status::internal(
            "this API server has no client certificate for node agents",
        ));
    };
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        segment(ns.unwrap_or("")),
        segment(name),
        segment(&container)
    );
    let query = opts.agent_query();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    let url = format!("https://{}{path}", endpoint.authority());
    let failed = |detail: String| {
        Status::backend_unreachable(format!(
            "Get {url:?}: {detail} (node agent of node {node_name:?}; check that it runs and that its address and port on the Node are current)"
        ))
    };
    let resp = fetch(client, &endpoint, &path).await.map_err(failed)?;
    let status = resp.status();
    if status.is_success() {
        let shutdown = app.shutdown.clone();
        let stream = Body::new(resp.into_body())
            .into_data_stream()
            .take_until(shutdown.cancelled_owned());
        return Ok(text_response(Body::from_stream(stream)));
    }
    let body = axum::body::to_bytes(Body::new(resp.into_body()), MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim_end().to_string();
    let text = if text.is_empty() {
        format!(
            "the node agent of node {node_name:?} answered {} without a message",
            status.as_u16()
        )
    } else {
        text
    };
    Err(Status::relayed(status.as_u16(), text))
}

fn text_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// One GET to an agent on a fresh TLS connection; the connection lives as long as the response body.
async fn fetch(
    client: &AgentClient,
    endpoint: &AgentEndpoint,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    send(client, endpoint, axum::http::Method::GET, path, None).await
}

/// One request to an agent (optionally with a JSON body) on a fresh TLS connection with the pinned serving
/// certificate and the API server's client certificate; shared by `pods/log` and `registrychecks`.
pub(crate) async fn send(
    client: &AgentClient,
    endpoint: &AgentEndpoint,
    method: axum::http::Method,
    path: &str,
    json_body: Option<bytes::Bytes>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let config = client
        .tls_config(endpoint.pin)
        .map_err(|e| format!("tls configuration: {e}"))?;
    let authority = endpoint.authority();
    let server_name = match endpoint.host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("invalid host {:?}: {e}", endpoint.host))?,
    };
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("dial tcp {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls handshake with {authority}: {e}"))
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("dial tcp {authority}: timed out after {CONNECT_TIMEOUT:?}"))??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http handshake with {authority}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "node agent connection ended with an error");
        }
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "berth-apiserver");
    if json_body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(json_body.map(Body::from).unwrap_or_else(Body::empty))
        .map_err(|e| format!("request: {e}"))?;
    tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| format!("no response from {authority} within {RESPONSE_TIMEOUT:?}"))?
        .map_err(|e| format!("request to {authority}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(query: &[(&str, &str)]) -> Call {
        Call {
            method: axum::http::Method::GET,
            headers: Default::default(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Default::default(),
            role: crate::auth::Role::Admin,
        }
    }

    #[test]
    fn only_the_parameters_the_user_set_are_passed_on() {
        let o = LogOptions::from_call(&call(&[]), "p").unwrap();
        assert_eq!(o.agent_query(), "");
        let o = LogOptions::from_call(
            &call(&[
                ("follow", "true"),
                ("previous", "false"),
                ("timestamps", "1"),
                ("tailLines", "10"),
                ("limitBytes", "500"),
                ("sinceTime", "2024-05-01T14:00:00+02:00"),
                ("container", "app"),
            ]),
            "p",
        )
        .unwrap();
        assert_eq!(o.container, "app");
        assert_eq!(
            o.agent_query(),
            "follow=true&timestamps=true&sinceTime=2024-05-01T12%3A00%3A00Z&tailLines=10&limitBytes=500"
        );
        let o = LogOptions::from_call(&call(&[("sinceSeconds", "30")]), "p").unwrap();
        assert_eq!(o.agent_query(), "sinceSeconds=30");
    }

    #[test]
    fn invalid_options_get_upstream_errors() {
        let e = LogOptions::from_call(
            &call(&[
                ("tailLines", "-1"),
                ("limitBytes", "0"),
                ("sinceSeconds", "0"),
            ]),
            "web",
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"web\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, limitBytes: Invalid value: 0: must be greater than 0, sinceSeconds: Invalid value: 0: must be greater than 0]"
        );
        let e = LogOptions::from_call(
            &call(&[("sinceSeconds", "5"), ("sinceTime", "2024-05-01T12:00:00Z")]),
            "web",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("at most one of `sinceTime` or `sinceSeconds` may be specified"),
            "{}",
            e.message
        );
        let e = LogOptions::from_call(&call(&[("tailLines", "ten")]), "web").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("tailLines=\"ten\""), "{}", e.message);
        let e = LogOptions::from_call(&call(&[("sinceTime", "yesterday")]), "web").unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn container_resolution_follows_upstream_validate_container() {
        let one = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(resolve_container(&one, "").unwrap(), "app");
        let two = json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            resolve_container(&two, "").unwrap_err().message,
            "a container name must be specified for pod web, choose one of: [init a b]"
        );
        assert_eq!(resolve_container(&two, "init").unwrap(), "init");
        let e = resolve_container(&two, "c").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "container c is not valid for pod web")
        );
    }

    #[test]
    fn agent_endpoint_is_read_from_the_node_and_names_what_is_missing() {
        let pin = "ab".repeat(32);
        let node = json!({"metadata": {"name": "n1", "annotations": {SERVING_CERT_ANNOTATION: pin}},
            "status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.2"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        let ep = AgentEndpoint::from_node(&node, "n1").unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.port, ep.pin),
            ("127.0.0.2", 10250, [0xab; 32])
        );
        assert_eq!(ep.authority(), "127.0.0.2:10250");
        let mut no_pin = node.clone();
        no_pin["metadata"]["annotations"] = json!({});
        let e = AgentEndpoint::from_node(&no_pin, "n1").unwrap_err();
        assert!(
            e.message
                .starts_with("node \"n1\" has no berth.dev/serving-cert-sha256 annotation"),
            "{}",
            e.message
        );
        let mut no_port = node.clone();
        no_port["status"]["daemonEndpoints"] = json!({});
        assert!(
            AgentEndpoint::from_node(&no_port, "n1")
                .unwrap_err()
                .message
                .contains("publishes no agent port")
        );
        let v6 = AgentEndpoint {
            host: "::1".into(),
            port: 1,
            pin: [0; 32],
        };
        assert_eq!(v6.authority(), "[::1]:1");
    }
}
