//! `kind: Status` error objects in the exact form kube-apiserver sends (apimachinery
//! `pkg/api/errors/errors.go`): HTTP code, reason, message text and `details {name, group, kind, causes}`.
//!
//! kubectl prints these messages verbatim (`Error from server (NotFound): pods "foo" not found`), so the
//! texts are upstream's, character for character. This module only builds values; it never decides which
//! error applies to a request and it never puts an object's content (least of all a Secret's) into a
//! message.

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;
use crate::validation::Invalid;

/// Upstream `OptimisticLockErrorMsg`, the reason of a resourceVersion conflict.
pub const OPTIMISTIC_LOCK_ERROR_MSG: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// Body limit of kube-apiserver (`MaxRequestBodyBytes`), for 413 answers.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// One cause in `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, ... (omitted when empty).
    pub reason: String,
    /// Human text of the cause.
    pub message: String,
    /// Field path, e.g. `spec.containers[0].image` (omitted when empty).
    pub field: String,
}

/// `details` of a Status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// Object name.
    pub name: String,
    /// API group of the object.
    pub group: String,
    /// Resource plural for most errors, the Kind for `Invalid` (upstream does the same).
    pub kind: String,
    /// Field-level causes.
    pub causes: Vec<Cause>,
    /// Seconds the client should wait before retrying.
    pub retry_after_seconds: Option<u32>,
}

/// A failure `Status` (or a success one from [`Status::success`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// HTTP status code.
    pub code: u16,
    /// `status` field: `Failure` or `Success`.
    pub status: &'static str,
    /// Machine-readable reason, e.g. `NotFound`; empty for a success.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Details, when upstream sends them (boxed to keep `Result<_, Status>` small).
    pub details: Option<Box<Details>>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Status {}

fn details(info: &ResourceInfo, name: &str) -> Option<Details> {
    Some(Details {
        name: name.to_string(),
        group: info.group.to_string(),
        kind: info.plural.to_string(),
        ..Details::default()
    })
}

impl Status {
    fn failure(
        code: u16,
        reason: &'static str,
        message: impl Into<String>,
        details: Option<Details>,
    ) -> Self {
        Status {
            code,
            status: "Failure",
            reason,
            message: message.into(),
            details: details.map(Box::new),
        }
    }

    /// 200 `Success`, e.g. the answer of a delete: `details{name, group, kind, uid}` upstream; berth
    /// sends name, group and kind.
    pub fn success(info: &ResourceInfo, name: &str) -> Self {
        Status {
            code: 200,
            status: "Success",
            reason: "",
            message: String::new(),
            details: details(info, name).map(Box::new),
        }
    }

    /// 404 `pods "foo" not found`, `deployments.apps "web" not found`.
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::failure(
            404,
            "NotFound",
            format!("{} {} not found", info.qualified_resource(), quote(name)),
            details(info, name),
        )
    }

    /// 404 for a namespace that does not exist while acting on a namespaced resource
    /// (`namespaces "nope" not found`).
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::failure(
            404,
            "NotFound",
            format!("namespaces {} not found", quote(namespace)),
            Some(Details {
                name: namespace.to_string(),
                kind: "namespaces".to_string(),
                ..Details::default()
            }),
        )
    }

    /// 404 without details, for paths that name no resource:
    /// `the server could not find the requested resource`.
    pub fn not_found_path() -> Self {
        Self::failure(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(Details::default()),
        )
    }

    /// 409 `pods "foo" already exists`.
    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::failure(
            409,
            "AlreadyExists",
            format!(
                "{} {} already exists",
                info.qualified_resource(),
                quote(name)
            ),
            details(info, name),
        )
    }

    /// 409 `Operation cannot be fulfilled on pods "foo": <reason>`.
    pub fn conflict(info: &ResourceInfo, name: &str, reason: &str) -> Self {
        Self::failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: {reason}",
                info.qualified_resource(),
                quote(name)
            ),
            details(info, name),
        )
    }

    /// 409 on a subresource or any resource named by string, e.g.
    /// `Operation cannot be fulfilled on pods/binding "foo": pod foo is already assigned to node "n1"`.
    pub fn conflict_on(group: &str, resource: &str, name: &str, reason: &str) -> Self {
        let qualified = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        Self::failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} {}: {reason}",
                quote(name)
            ),
            Some(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: resource.to_string(),
                ..Details::default()
            }),
        )
    }

    /// 409 for a stale `metadata.resourceVersion` (the optimistic-lock message).
    pub fn conflict_modified(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(info, name, OPTIMISTIC_LOCK_ERROR_MSG)
    }

    /// 422 `Pod "foo" is invalid: ...` with one cause per field error.
    pub fn invalid(info: &ResourceInfo, name: &str, invalid: &Invalid) -> Self {
        Self::invalid_kind(info.group, info.kind, name, invalid)
    }

    /// 422 for any group and kind (e.g. `autoscaling`/`Scale`): `Scale.autoscaling "web" is invalid: ...`.
    pub fn invalid_kind(group: &str, kind: &str, name: &str, invalid: &Invalid) -> Self {
        let causes = invalid
            .errors()
            .iter()
            .map(|e| Cause {
                reason: e.error_type.reason().to_string(),
                message: e.body(),
                field: e.field.clone(),
            })
            .collect();
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::failure(
            422,
            "Invalid",
            invalid.status_message(&qualified_kind, name),
            Some(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: kind.to_string(),
                causes,
                retry_after_seconds: None,
            }),
        )
    }

    /// 400 with the message as given, e.g. `strict decoding error: unknown field "spec.containerz"`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(400, "BadRequest", message, None)
    }

    /// 403 `pods "foo" is forbidden: <reason>` (`pods is forbidden: ...` without a name).
    pub fn forbidden(info: &ResourceInfo, name: &str, reason: &str) -> Self {
        let message = if name.is_empty() {
            format!("{} is forbidden: {reason}", info.qualified_resource())
        } else {
            format!(
                "{} {} is forbidden: {reason}",
                info.qualified_resource(),
                quote(name)
            )
        };
        Self::failure(403, "Forbidden", message, details(info, name))
    }

    /// The RBAC denial text upstream puts in a 403:
    /// `User "bob" cannot create resource "pods" in API group "" in the namespace "default"`.
    pub fn forbidden_reason(
        user: &str,
        verb: &str,
        info: &ResourceInfo,
        subresource: Option<&str>,
        namespace: Option<&str>,
    ) -> String {
        let resource = match subresource {
            Some(s) => format!("{}/{s}", info.plural),
            None => info.plural.to_string(),
        };
        let scope = match namespace {
            Some(ns) if info.namespaced => format!(" in the namespace {}", quote(ns)),
            _ => " at the cluster scope".to_string(),
        };
        format!(
            "User {} cannot {verb} resource {} in API group {}{scope}",
            quote(user),
            quote(&resource),
            quote(info.group)
        )
    }

    /// 401; upstream's message is `Unauthorized` for a failed authentication.
    pub fn unauthorized(message: &str) -> Self {
        let message = if message.is_empty() {
            "not authorized"
        } else {
            message
        };
        Self::failure(401, "Unauthorized", message, None)
    }

    /// 405 `<verb> is not supported on resources of kind "pods/log"`.
    pub fn method_not_allowed(info: &ResourceInfo, subresource: Option<&str>, verb: &str) -> Self {
        let resource = match subresource {
            Some(s) => format!("{}/{s}", info.qualified_resource()),
            None => info.qualified_resource(),
        };
        Self::failure(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind {}",
                quote(&resource)
            ),
            Some(Details {
                group: info.group.to_string(),
                kind: info.plural.to_string(),
                ..Details::default()
            }),
        )
    }

    /// 410 `Gone` with a free-form message.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::failure(410, "Gone", message, None)
    }

    /// 410 `Expired` for a watch or list from a compacted revision:
    /// `too old resource version: <requested> (<oldest available>)`.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::failure(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            None,
        )
    }

    /// 413 `Request entity too large: limit is 3145728`.
    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::failure(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
            None,
        )
    }

    /// 415 for a body in a format the endpoint does not decode.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::failure(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    /// 406 when no offered response type is acceptable.
    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::failure(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    /// 429 with `details.retryAfterSeconds` (the HTTP layer must also send a `Retry-After` header).
    pub fn too_many_requests(message: &str, retry_after_seconds: u32) -> Self {
        Self::failure(
            429,
            "TooManyRequests",
            message,
            Some(Details {
                retry_after_seconds: Some(retry_after_seconds),
                ..Details::default()
            }),
        )
    }

    /// 504 for a request that ran past its deadline.
    pub fn timeout(message: &str) -> Self {
        Self::failure(504, "Timeout", message, None)
    }

    /// A failure relayed from a backend (a node agent's answer to `pods/log`): its code and text, with the
    /// reason upstream uses for that code (`BadRequest`, `NotFound`, `Forbidden`, ...; none otherwise).
    pub fn relayed(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Gone",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "",
        };
        Self::failure(code, reason, message, None)
    }

    /// 500 without a reason, as upstream answers a failed connection to a kubelet: kubectl prints
    /// `Error from server: <message>`.
    pub fn backend_unreachable(message: impl Into<String>) -> Self {
        Self::failure(500, "", message, None)
    }

    /// 500 `Internal error occurred: <message>`, with the message also as the single cause.
    pub fn internal(message: &str) -> Self {
        Self::failure(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
            Some(Details {
                causes: vec![Cause {
                    reason: String::new(),
                    message: message.to_string(),
                    field: String::new(),
                }],
                ..Details::default()
            }),
        )
    }

    /// The `kind: Status` object as JSON, with fields in upstream order and empty ones omitted.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!(self.status));
        if !self.message.is_empty() {
            m.insert("message".into(), json!(self.message));
        }
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            let mut dm = Map::new();
            if !d.name.is_empty() {
                dm.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                dm.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                dm.insert("kind".into(), json!(d.kind));
            }
            if !d.causes.is_empty() {
                let causes = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cm = Map::new();
                        if !c.reason.is_empty() {
                            cm.insert("reason".into(), json!(c.reason));
                        }
                        if !c.message.is_empty() {
                            cm.insert("message".into(), json!(c.message));
                        }
                        if !c.field.is_empty() {
                            cm.insert("field".into(), json!(c.field));
                        }
                        Value::Object(cm)
                    })
                    .collect();
                dm.insert("causes".into(), Value::Array(causes));
            }
            if let Some(s) = d.retry_after_seconds {
                dm.insert("retryAfterSeconds".into(), json!(s));
            }
            m.insert("details".into(), Value::Object(dm));
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }

    /// The JSON bytes of [`Status::to_value`].
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).expect("a Status value always serializes")
    }
}

/// Go's `%q` of a string: double-quoted with Go escapes.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{by_kind_name, lookup};
    use crate::validation::{FieldError, Path};

    fn pods() -> &'static ResourceInfo {
        lookup("", "v1", "pods").unwrap()
    }

    #[test]
    fn not_found_matches_upstream_for_core_and_apps() {
        let s = Status::not_found(pods(), "nope");
        assert_eq!(
            s.to_value(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"pods \"nope\" not found","reason":"NotFound",
                   "details":{"name":"nope","kind":"pods"},"code":404})
        );
        let s = Status::not_found(by_kind_name("StatefulSet").unwrap(), "nope");
        assert_eq!(s.message, "statefulsets.apps \"nope\" not found");
        assert_eq!(
            s.to_value()["details"],
            json!({"name":"nope","group":"apps","kind":"statefulsets"})
        );
    }

    #[test]
    fn already_exists_and_conflict_texts_match_upstream() {
        let secrets = lookup("", "v1", "secrets").unwrap();
        let s = Status::already_exists(secrets, "myregistrykey");
        assert_eq!((s.code, s.reason), (409, "AlreadyExists"));
        assert_eq!(s.message, "secrets \"myregistrykey\" already exists");
        let s = Status::conflict_modified(pods(), "foo");
        assert_eq!(s.reason, "Conflict");
        assert_eq!(
            s.message,
            "Operation cannot be fulfilled on pods \"foo\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn invalid_with_one_cause_is_inline_and_with_two_is_bracketed() {
        let one = Invalid::from(vec![FieldError::required(
            &Path::new("spec")
                .child("containers")
                .index(0)
                .child("image"),
            "",
        )]);
        let s = Status::invalid(pods(), "foo2", &one);
        assert_eq!(
            s.message,
            "Pod \"foo2\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(
            s.to_value()["details"],
            json!({"name":"foo2","kind":"Pod","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"}]})
        );
        let two = Invalid::from(vec![
            FieldError::required(
                &Path::new("spec")
                    .child("containers")
                    .index(0)
                    .child("image"),
                "",
            ),
            FieldError::not_supported(
                &Path::new("spec").child("restartPolicy"),
                "Sometimes",
                &["Always", "OnFailure", "Never"],
            ),
        ]);
        let s = Status::invalid(pods(), "foo2", &two);
        assert_eq!(
            s.message,
            "Pod \"foo2\" is invalid: [spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
        );
        assert_eq!(s.code, 422);
        let deploy = by_kind_name("Deployment").unwrap();
        let s = Status::invalid(deploy, "web", &one);
        assert!(
            s.message
                .starts_with("Deployment.apps \"web\" is invalid: "),
            "{}",
            s.message
        );
        assert_eq!(s.to_value()["details"]["group"], "apps");
    }

    #[test]
    fn forbidden_texts_match_upstream_rbac_denials() {
        let reason = Status::forbidden_reason("bob", "create", pods(), None, Some("default"));
        assert_eq!(
            reason,
            "User \"bob\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let s = Status::forbidden(pods(), "", &reason);
        assert_eq!(
            s.message,
            "pods is forbidden: User \"bob\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let nodes = lookup("", "v1", "nodes").unwrap();
        let reason = Status::forbidden_reason("x", "list", nodes, None, Some("default"));
        assert!(
            reason.ends_with("in API group \"\" at the cluster scope"),
            "{reason}"
        );
        assert_eq!(
            Status::forbidden(nodes, "n1", "no").message,
            "nodes \"n1\" is forbidden: no"
        );
    }

    #[test]
    fn transport_level_errors_carry_upstream_codes_and_texts() {
        assert_eq!(
            Status::expired(1, 1000).message,
            "too old resource version: 1 (1000)"
        );
        assert_eq!(
            (Status::expired(1, 2).code, Status::expired(1, 2).reason),
            (410, "Expired")
        );
        let s = Status::request_entity_too_large(MAX_REQUEST_BODY_BYTES);
        assert_eq!(
            (s.code, s.message.as_str()),
            (413, "Request entity too large: limit is 3145728")
        );
        let s = Status::unsupported_media_type(&["application/json", "application/yaml"]);
        assert_eq!(s.code, 415);
        assert_eq!(
            s.message,
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
        );
        let s = Status::internal("etcd down");
        assert_eq!(
            (s.code, s.message.as_str()),
            (500, "Internal error occurred: etcd down")
        );
        assert_eq!(s.to_value()["details"]["causes"][0]["message"], "etcd down");
        let s = Status::unauthorized("Unauthorized");
        assert_eq!((s.code, s.reason), (401, "Unauthorized"));
        let s = Status::method_not_allowed(pods(), Some("log"), "create");
        assert_eq!(
            (s.code, s.message.as_str()),
            (
                405,
                "create is not supported on resources of kind \"pods/log\""
            )
        );
        let s = Status::too_many_requests("too many requests, please try again later", 1);
        assert_eq!(s.to_value()["details"]["retryAfterSeconds"], 1);
        assert_eq!(Status::bad_request("x").to_value().get("details"), None);
    }

    #[test]
    fn every_status_has_kind_api_version_and_code() {
        for s in [
            Status::not_found_path(),
            Status::gone("gone"),
            Status::timeout("t"),
            Status::success(pods(), "a"),
        ] {
            let v = s.to_value();
            assert_eq!(v["kind"], "Status");
            assert_eq!(v["apiVersion"], "v1");
            assert_eq!(v["code"], s.code);
        }
        assert_eq!(Status::success(pods(), "a").to_value()["status"], "Success");
    }

    #[test]
    fn quote_escapes_like_go_percent_q() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(quote("\u{1}"), "\"\\x01\"");
    }
}
