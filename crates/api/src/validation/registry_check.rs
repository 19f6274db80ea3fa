//! Validation of berth's create-only `berth.dev/v1 RegistryCheck` (a review-style request, like upstream's
//! TokenReview): `spec.server` in the forms a registry Secret's `auths` key takes, the credential as either
//! `username` + `password` or a `secretRef` (never both), `nodeName`, `image` and `fetchCertificate`, with
//! upstream-form causes. Metadata is not validated (the object is never stored, so it needs no name).
//!
//! The checks are local: they never dial the registry, never read the referenced Secret and never copy the
//! password into a message (a bad password is only ever reported as present or missing).

use serde_json::{Map, Value};

use super::berth::check_host_port;
use super::names;
use super::{FieldError, Invalid, Path, finish, str_at};

/// Validates a RegistryCheck request.
pub fn validate_registry_check(obj: &Value) -> Result<(), Invalid> {
    let mut errs = Vec::new();
    validate(obj, &mut errs);
    finish(errs)
}

/// The registry part of `server`: `host[:port]` after an optional `http://` or `https://` and before an
/// optional path, the forms `kubectl create secret docker-registry --docker-server` writes.
pub fn registry_of_server(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or("")
}

fn string_field<'a>(
    spec: &'a Map<String, Value>,
    key: &str,
    path: &Path,
    errs: &mut Vec<FieldError>,
) -> &'a str {
    match spec.get(key) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            errs.push(super::berth::type_error(&path.child(key), other, "string"));
            ""
        }
    }
}

fn validate(obj: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::new("spec");
    let Some(spec) = obj.get("spec").and_then(Value::as_object) else {
        errs.push(FieldError::required(
            &path,
            "the registry (spec.server or spec.image) to check",
        ));
        return;
    };
    let server = string_field(spec, "server", &path, errs);
    let image = string_field(spec, "image", &path, errs);
    if server.is_empty() {
        if image.is_empty() {
            errs.push(FieldError::required(
                &path.child("server"),
                "the registry as host[:port] (or set spec.image to check its registry)",
            ));
        }
    } else {
        let host = registry_of_server(server);
        if host.is_empty() {
            errs.push(FieldError::invalid_str(
                &path.child("server"),
                server,
                "must name a registry: host[:port], optionally with https:// and a path, e.g. registry.example.com:5000",
            ));
        } else if let Err(msg) = check_host_port(host) {
            errs.push(FieldError::invalid_str(&path.child("server"), server, msg));
        }
    }
    if image.chars().any(char::is_whitespace) {
        errs.push(FieldError::invalid_str(
            &path.child("image"),
            image,
            "must be an image reference without whitespace, e.g. registry.example.com:5000/team/app:1.0",
        ));
    }
    let username = string_field(spec, "username", &path, errs);
    let has_password = match spec.get("password") {
        None | Some(Value::Null) => false,
        Some(Value::String(p)) => !p.is_empty(),
        Some(other) => {
            // A type error names the JSON type only, never the value.
            errs.push(super::berth::type_error(
                &path.child("password"),
                other,
                "string",
            ));
            false
        }
    };
    let secret_ref = spec.get("secretRef").filter(|v| !v.is_null());
    if let Some(r) = secret_ref {
        let rp = path.child("secretRef");
        match r.as_object() {
            Some(r) => validate_secret_ref(r, &rp, errs),
            None => errs.push(super::berth::type_error(&rp, r, "object")),
        }
        if !username.is_empty() || has_password {
            errs.push(FieldError::forbidden(
                &rp,
                "may not be set together with spec.username or spec.password: test either a Secret or typed credentials",
            ));
        }
    } else if !username.is_empty() && !has_password {
        errs.push(FieldError::required(
            &path.child("password"),
            "the password or token for spec.username",
        ));
    } else if username.is_empty() && has_password {
        errs.push(FieldError::required(
            &path.child("username"),
            "the user name the password belongs to",
        ));
    }
    let node = string_field(spec, "nodeName", &path, errs);
    if !node.is_empty() {
        for msg in names::is_dns1123_subdomain(node) {
            errs.push(FieldError::invalid_str(&path.child("nodeName"), node, msg));
        }
    }
    match spec.get("fetchCertificate") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(other) => errs.push(super::berth::type_error(
            &path.child("fetchCertificate"),
            other,
            "boolean",
        )),
    }
}

fn validate_secret_ref(r: &Map<String, Value>, path: &Path, errs: &mut Vec<FieldError>) {
    let name = str_at(r, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name of a kubernetes.io/dockerconfigjson Secret",
        ));
    } else {
        for msg in names::is_dns1123_subdomain(name) {
            errs.push(FieldError::invalid_str(&path.child("name"), name, msg));
        }
    }
    let ns = str_at(r, "namespace");
    if ns.is_empty() {
        errs.push(FieldError::required(
            &path.child("namespace"),
            "namespace of the Secret (RegistryCheck is cluster-scoped)",
        ));
    } else {
        for msg in names::is_dns1123_label(ns) {
            errs.push(FieldError::invalid_str(&path.child("namespace"), ns, msg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(spec: Value) -> Vec<String> {
        match validate_registry_check(
            &json!({"apiVersion": "berth.dev/v1", "kind": "RegistryCheck", "spec": spec}),
        ) {
            Ok(()) => Vec::new(),
            Err(e) => e.errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn typed_credentials_a_secret_or_none_are_accepted_without_a_name() {
        assert!(
            messages(
                json!({"server": "registry.example.com:5000", "username": "u", "password": "p"})
            )
            .is_empty()
        );
        assert!(messages(json!({"server": "https://index.docker.io/v1/"})).is_empty());
        assert!(
            messages(json!({"image": "127.0.0.1:5000/team/app:1", "fetchCertificate": true}))
                .is_empty()
        );
        assert!(messages(json!({"server": "[::1]:5000", "secretRef": {"namespace": "default", "name": "regcred"}, "nodeName": "node-a"})).is_empty());
    }

    #[test]
    fn the_registry_is_required_and_must_be_host_port() {
        assert_eq!(
            messages(json!({})),
            [
                "spec.server: Required value: the registry as host[:port] (or set spec.image to check its registry)"
            ]
        );
        let m = messages(json!({"server": "registry.example.com:99999"}));
        assert_eq!(
            m,
            [
                "spec.server: Invalid value: \"registry.example.com:99999\": the port must be a number between 1 and 65535"
            ]
        );
        assert_eq!(
            registry_of_server("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(registry_of_server("reg:5000"), "reg:5000");
    }

    #[test]
    fn credentials_come_as_a_pair_or_a_secret_never_both_and_the_password_is_never_shown() {
        let m = messages(json!({"server": "r.io", "username": "u"}));
        assert_eq!(
            m,
            ["spec.password: Required value: the password or token for spec.username"]
        );
        let m = messages(json!({"server": "r.io", "password": "hunter2-secret"}));
        assert_eq!(
            m,
            ["spec.username: Required value: the user name the password belongs to"]
        );
        let m = messages(
            json!({"server": "r.io", "username": "u", "password": "hunter2-secret",
            "secretRef": {"namespace": "default", "name": "regcred"}}),
        );
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("spec.secretRef: Forbidden: may not be set together"),
            "{m:?}"
        );
        let m = messages(json!({"server": "r.io", "secretRef": {"name": "Bad_Name"}}));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[1].starts_with("spec.secretRef.namespace: Required value"),
            "{m:?}"
        );
        let m = messages(json!({"server": "r.io", "username": "u", "password": 12345}));
        assert!(m.iter().all(|x| !x.contains("12345")), "{m:?}");
        assert!(
            m[0].starts_with("spec.password: Invalid value: \"integer\""),
            "{m:?}"
        );
    }

    #[test]
    fn node_name_and_fetch_certificate_are_typed() {
        let m =
            messages(json!({"server": "r.io", "nodeName": "Node_A", "fetchCertificate": "yes"}));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].starts_with("spec.nodeName: Invalid value: \"Node_A\""),
            "{m:?}"
        );
        assert!(
            m[1].starts_with("spec.fetchCertificate: Invalid value: \"string\""),
            "{m:?}"
        );
    }
}
