//! Discovery (`/api`, `/apis`, `/apis/<g>`, `/api/v1`, `/apis/<g>/<v>`) and OpenAPI (`/openapi/v3`, per
//! group-version documents) at the HTTP edge: the documents are the `api` crate's; this module negotiates the
//! representation (aggregated `apidiscovery.k8s.io/v2` or `v2beta1` only when Accept asks for exactly that, else
//! the legacy documents, via wire's negotiation) and sets the exact Content-Type kubectl requires. It must never
//! build a discovery or OpenAPI document itself.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use api::Status;
use api::discovery::{AggregatedVersion, Root};
use wire::codec::Rendering;

use crate::app::{Call, json_response, status_response};
use crate::routes::Route;

fn bytes_response(bytes: &'static [u8], content_type: &'static str) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Which aggregated version the Accept header asks for, if any.
fn aggregated_version(call: &Call) -> Result<Option<AggregatedVersion>, Status> {
    let accept = call
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let choice =
        wire::codec::negotiate(accept, &[Rendering::AggregatedDiscovery]).map_err(|_| {
            Status::not_acceptable(&[
                "application/json",
                api::discovery::AGGREGATED_V2_CONTENT_TYPE,
            ])
        })?;
    Ok(match (choice.rendering, choice.version.as_deref()) {
        (Rendering::AggregatedDiscovery, Some("v2")) => Some(AggregatedVersion::V2),
        (Rendering::AggregatedDiscovery, Some("v2beta1")) => Some(AggregatedVersion::V2beta1),
        _ => None,
    })
}

/// Serves a discovery route.
pub fn serve(call: &Call, route: &Route) -> Response {
    match serve_inner(call, route) {
        Ok(r) => r,
        Err(s) => status_response(&s),
    }
}

fn serve_inner(call: &Call, route: &Route) -> Result<Response, Status> {
    match route {
        Route::LegacyRoot => Ok(match aggregated_version(call)? {
            Some(v) => bytes_response(api::discovery::aggregated(Root::Api, v), v.content_type()),
            None => {
                let host = call.header(header::HOST);
                json_response(
                    StatusCode::OK,
                    &api::discovery::api_versions(host),
                    "application/json",
                )
            }
        }),
        Route::GroupsRoot => Ok(match aggregated_version(call)? {
            Some(v) => bytes_response(api::discovery::aggregated(Root::Apis, v), v.content_type()),
            None => bytes_response(api::discovery::api_group_list(), "application/json"),
        }),
        Route::Group(group) => {
            let list: Value = serde_json::from_slice(api::discovery::api_group_list())
                .map_err(|e| Status::internal(&format!("group list: {e}")))?;
            let found = list
                .get("groups")
                .and_then(Value::as_array)
                .and_then(|gs| {
                    gs.iter()
                        .find(|g| g.get("name").and_then(Value::as_str) == Some(group.as_str()))
                })
                .ok_or_else(Status::not_found_path)?;
            let mut doc = json!({"kind": "APIGroup", "apiVersion": "v1"});
            for (k, v) in found.as_object().into_iter().flatten() {
                doc[k] = v.clone();
            }
            Ok(json_response(StatusCode::OK, &doc, "application/json"))
        }
        Route::GroupVersion { group, version } => api::discovery::api_resource_list(group, version)
            .map(|b| bytes_response(b, "application/json"))
            .ok_or_else(Status::not_found_path),
        _ => Err(Status::not_found_path()),
    }
}

/// Serves an OpenAPI route. `/openapi/v2` is not served: kubectl 1.29+ use v3 and tolerate the 404.
pub fn openapi(_call: &Call, route: &Route) -> Response {
    let doc = match route {
        Route::OpenApiV3Index => Some(api::openapi::index()),
        Route::OpenApiV3 { gv_path } => api::openapi::document(gv_path),
        _ => None,
    };
    match doc {
        Some(d) => {
            let mut resp = bytes_response(&d.bytes, "application/json");
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", d.hash)) {
                resp.headers_mut().insert(header::ETAG, etag);
            }
            resp
        }
        None => status_response(&Status::not_found_path()),
    }
}
