//! OpenAPI v3 documents berth serves at `/openapi/v3` (the index) and `/openapi/v3/<group-version>`, for
//! kubectl's field-validation probe (`create -f`, `apply -f`, `apply --server-side`) and `kubectl explain`.
//!
//! Each group-version document carries one PATCH operation per kind (a POST on the collection for the
//! create-only `RegistryCheck`, as upstream documents `tokenreviews`), tagged with
//! `x-kubernetes-group-version-kind` and listing the `fieldValidation` parameter (what kubectl looks for
//! before sending `fieldValidation=Strict`), and `components.schemas` with every type reachable from the
//! kinds, with upstream descriptions, so `kubectl explain pod.spec.imagePullSecrets` prints real text.
//! The built-in schemas come from k8s-openapi's `schemars` impls (generated from the upstream OpenAPI
//! spec, so they cannot drift from the typed structs); berth's RegistryHost and RegistryCheck schemas are
//! written here.
//! Patch-merge extensions are added from a small table. No `requestBody` is advertised: kubectl would
//! then compute strategic merge patches from these schemas instead of its compiled-in types.
//!
//! Everything is built once (`OnceLock`) and served as `&'static [u8]` plus a content hash for ETags and
//! the `?hash=` query the index advertises. This module never reads requests or does IO.

use std::sync::OnceLock;

use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::resources::{self, BERTH_GROUP, ResourceInfo};

/// Kubernetes version berth presents: `info.version` here and the base of `/version`'s gitVersion (the API
/// server builds both from this one constant so they never disagree). kubectl 1.32 is the client berth targets.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

/// One served document.
#[derive(Debug)]
pub struct Document {
    /// Path below `/openapi/v3/`: `api/v1`, `apis/apps/v1`, `apis/berth.dev/v1`.
    pub path: String,
    /// The JSON bytes.
    pub bytes: Vec<u8>,
    /// Uppercase hex SHA-256 of `bytes`: the `?hash=` value and a strong ETag.
    pub hash: String,
}

struct Built {
    index: Document,
    documents: Vec<Document>,
    schemas: Map<String, Value>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(build)
}

/// The `/openapi/v3` index: `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=..."},...}}`.
pub fn index() -> &'static Document {
    &built().index
}

/// Every group-version document.
pub fn documents() -> &'static [Document] {
    &built().documents
}

/// The document served at `/openapi/v3/<path>` (`path` without leading slash or query).
pub fn document(path: &str) -> Option<&'static Document> {
    let path = path.trim_start_matches('/');
    built().documents.iter().find(|d| d.path == path)
}

/// Every component schema of every document, by name (`io.k8s.api.core.v1.Pod`), after the same
/// post-processing as the served documents. Used by [`crate::fields`] to walk objects.
pub fn schemas() -> &'static Map<String, Value> {
    &built().schemas
}

/// The document path of a group-version: `api/v1` for core, `apis/<group>/<version>` otherwise.
pub fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(bytes))
}

fn build() -> Built {
    let mut documents = Vec::new();
    let mut all_schemas = Map::new();
    for gv in resources::group_versions() {
        let kinds: Vec<&ResourceInfo> = resources::resources_of(gv.group, gv.version).collect();
        let mut schemas = component_schemas(gv.group, gv.version);
        for info in &kinds {
            if let Some(Value::Object(s)) = schemas.get_mut(info.schema_name) {
                s.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": info.group, "kind": info.kind, "version": info.version}]),
                );
                // k8s-openapi marks `metadata` required on every kind; upstream's documents do not.
                if let Some(Value::Array(req)) = s.get_mut("required") {
                    req.retain(|r| r != "metadata");
                    if req.is_empty() {
                        s.remove("required");
                    }
                }
            }
        }
        add_patch_extensions(&mut schemas);
        let mut paths = Map::new();
        for info in &kinds {
            if info.verbs.contains(&"patch") {
                paths.insert(item_path(info), patch_operation(info));
            } else {
                // A create-only (review-style) kind: upstream documents a POST on the collection. kubectl's
                // fieldValidation probe reads PATCH operations only (and without it falls back to /openapi/v2,
                // which berth does not serve), so the same path also carries a PATCH entry that says it is
                // answered 405 and exists to advertise `fieldValidation` for the kind.
                let mut item = create_operation(info);
                let mut marker = patch_operation(info);
                marker["patch"]["description"] = json!(format!(
                    "not served ({} is create-only: the API answers 405); listed so clients see that creating a {} takes the fieldValidation parameter",
                    info.plural, info.kind
                ));
                item["patch"] = marker["patch"].take();
                paths.insert(info.collection_path(None), item);
            }
        }
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
            "paths": paths,
            "components": {"schemas": schemas},
        });
        for (k, v) in schemas {
            all_schemas.entry(k).or_insert(v);
        }
        let bytes = serde_json::to_vec(&doc).expect("openapi documents serialize");
        documents.push(Document {
            path: document_path(gv.group, gv.version),
            hash: hash(&bytes),
            bytes,
        });
    }
    let mut index_paths = Map::new();
    for d in &documents {
        index_paths.insert(
            d.path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", d.path, d.hash)}),
        );
    }
    let index_bytes =
        serde_json::to_vec(&json!({"paths": index_paths})).expect("openapi index serializes");
    let index = Document {
        path: String::new(),
        hash: hash(&index_bytes),
        bytes: index_bytes,
    };
    Built {
        index,
        documents,
        schemas: all_schemas,
    }
}

/// Component schemas for one group-version: the kinds and everything they reference.
fn component_schemas(group: &str, version: &str) -> Map<String, Value> {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    match (group, version) {
        ("", "v1") => {
            generator.subschema_for::<core::ConfigMap>();
            generator.subschema_for::<core::Event>();
            generator.subschema_for::<core::Namespace>();
            generator.subschema_for::<core::Node>();
            generator.subschema_for::<core::Pod>();
            generator.subschema_for::<core::Secret>();
            generator.subschema_for::<core::ServiceAccount>();
        }
        ("apps", "v1") => {
            generator.subschema_for::<apps::ControllerRevision>();
            generator.subschema_for::<apps::Deployment>();
            generator.subschema_for::<apps::ReplicaSet>();
            generator.subschema_for::<apps::StatefulSet>();
        }
        ("coordination.k8s.io", "v1") => {
            generator.subschema_for::<coordination::Lease>();
        }
        _ => {
            generator.subschema_for::<ObjectMeta>();
        }
    }
    let mut schemas = generator.take_definitions(true);
    if group == BERTH_GROUP {
        for (name, schema) in registry_host_schemas()
            .into_iter()
            .chain(registry_check_schemas())
        {
            schemas.insert(name.into(), schema);
        }
    }
    schemas.sort_keys();
    schemas
}

/// `/api/v1/namespaces/{namespace}/pods/{name}` or `/api/v1/namespaces/{name}`.
fn item_path(info: &ResourceInfo) -> String {
    let root = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    if info.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}/{{name}}", info.plural)
    } else {
        format!("{root}/{}/{{name}}", info.plural)
    }
}

fn operation_id(info: &ResourceInfo) -> String {
    let mut group: String = if info.group.is_empty() {
        "Core".into()
    } else {
        info.group.split('.').map(capitalize).collect()
    };
    group.push_str(&capitalize(info.version));
    let scope = if info.namespaced { "Namespaced" } else { "" };
    format!("patch{group}{scope}{}", info.kind)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn patch_operation(info: &ResourceInfo) -> Value {
    let mut parameters = vec![json!({
        "name": "name", "in": "path", "required": true,
        "description": format!("name of the {}", info.kind),
        "schema": {"type": "string", "uniqueItems": true},
    })];
    if info.namespaced {
        parameters.push(json!({
            "name": "namespace", "in": "path", "required": true,
            "description": "object name and auth scope, such as for teams and projects",
            "schema": {"type": "string", "uniqueItems": true},
        }));
    }
    parameters.push(json!({
        "name": "fieldValidation", "in": "query",
        "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        "schema": {"type": "string", "uniqueItems": true},
    }));
    json!({"patch": {
        "description": format!("partially update the specified {}", info.kind),
        "operationId": operation_id(info),
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", info.schema_name)}}}},
            "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", info.schema_name)}}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
    }})
}

/// The POST operation of a create-only kind, with the `fieldValidation` parameter kubectl looks for.
fn create_operation(info: &ResourceInfo) -> Value {
    let schema = json!({"$ref": format!("#/components/schemas/{}", info.schema_name)});
    json!({"post": {
        "description": format!("create a {}", info.kind),
        "operationId": format!("create{}", &operation_id(info)["patch".len()..]),
        "parameters": [{
            "name": "fieldValidation", "in": "query",
            "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) and Strict.",
            "schema": {"type": "string", "uniqueItems": true},
        }],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
            "201": {"description": "Created", "content": {"application/json": {"schema": schema}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": "post",
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
    }})
}

/// Upstream's `patchStrategy`/`patchMergeKey` and list-type tags of the list fields berth's kinds use:
/// (schema, property, merge key, strategy, list-map keys).
const PATCH_EXTENSIONS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "name",
        "merge",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "name",
        "merge",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "name",
        "merge",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "name",
        "merge,retainKeys",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "name",
        "merge",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "ip",
        "merge",
        &["ip"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "containerPort",
        "merge",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "env",
        "name",
        "merge",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "mountPath",
        "merge",
        &["mountPath"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "devicePath",
        "merge",
        &["devicePath"],
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "name",
        "merge",
        &[],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "type",
        "merge",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "type",
        "merge",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "type",
        "merge",
        &[],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "type",
        "merge",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "type",
        "merge",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "type",
        "merge",
        &["type"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
        "merge",
        &["uid"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "",
        "merge",
        &[],
    ),
];

fn add_patch_extensions(schemas: &mut Map<String, Value>) {
    for (schema, property, key, strategy, map_keys) in PATCH_EXTENSIONS {
        let Some(p) = schemas
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
        else {
            continue;
        };
        let Some(p) = p.as_object_mut() else { continue };
        if !key.is_empty() {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if map_keys.is_empty() {
            if key.is_empty() {
                p.insert("x-kubernetes-list-type".into(), json!("set"));
            }
        } else {
            p.insert("x-kubernetes-list-type".into(), json!("map"));
            p.insert("x-kubernetes-list-map-keys".into(), json!(map_keys));
        }
    }
    if let Some(p) = schemas
        .get_mut("io.k8s.api.apps.v1.DeploymentSpec")
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut("strategy"))
        .and_then(Value::as_object_mut)
    {
        p.insert("x-kubernetes-patch-strategy".into(), json!("retainKeys"));
    }
}

fn registry_host_schemas() -> Vec<(&'static str, Value)> {
    let meta_ref = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    vec![
        (
            "dev.berth.v1.RegistryHost",
            json!({
                "description": "RegistryHost holds the trust and mirror settings berth's node agents apply to one registry host: the CA bundle or pinned certificate fingerprints that authenticate it, an optional client certificate, and mirrors to try first. It is cluster-scoped and applied live on every node.",
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Always berth.dev/v1."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Always RegistryHost."},
                    "metadata": {"allOf": [{"$ref": meta_ref}], "description": "Standard object's metadata."},
                    "spec": {"allOf": [{"$ref": "#/components/schemas/dev.berth.v1.RegistryHostSpec"}], "description": "Desired trust and mirror settings for the registry host."},
                },
            }),
        ),
        (
            "dev.berth.v1.RegistryHostSpec",
            json!({
                "description": "RegistryHostSpec describes how to reach and trust one registry.",
                "type": "object",
                "required": ["host"],
                "properties": {
                    "host": {"type": "string", "description": "Registry as host or host:port exactly as it appears in image references, e.g. registry.example.com:5000 or [::1]:5000. No scheme and no path."},
                    "caBundle": {"type": "string", "description": "PEM-encoded CA certificates trusted for this host only, in addition to the system roots. Fetch and review them with `berth trust fetch host:port`."},
                    "pinnedFingerprints": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "description": "SHA-256 fingerprints of certificates that must appear in the presented chain, each as sha256:<64 lowercase hex digits> (as printed by `berth trust fetch`)."},
                    "clientCertificateSecretRef": {"allOf": [{"$ref": "#/components/schemas/dev.berth.v1.SecretReference"}], "description": "Reference to a kubernetes.io/tls Secret whose tls.crt and tls.key are presented to this host for mutual TLS."},
                    "mirrors": {"type": "array", "items": {"$ref": "#/components/schemas/dev.berth.v1.RegistryMirror"}, "x-kubernetes-list-type": "atomic", "description": "Mirrors tried in order before the host itself (containerd hosts.toml semantics)."},
                    "insecure": {"type": "boolean", "description": "Allow plain http for this host. Explicit only: a TLS failure never falls back to http, and credentials are never sent over plain http."},
                },
            }),
        ),
        (
            "dev.berth.v1.RegistryMirror",
            json!({
                "description": "RegistryMirror is one endpoint tried before the registry host itself.",
                "type": "object",
                "required": ["endpoint"],
                "properties": {
                    "endpoint": {"type": "string", "description": "Base URL of the mirror with scheme, e.g. https://mirror.example.com:5000 (http only for a plain-http mirror)."},
                    "resolve": {"type": "boolean", "description": "Whether tags may be resolved through this mirror (containerd capability \"resolve\"); without it the mirror serves pulls by digest only."},
                    "sendCredentials": {"type": "boolean", "description": "Whether the pod's credentials for the host are sent to this mirror. Off by default: credentials go only to the host they were written for."},
                },
            }),
        ),
        (
            "dev.berth.v1.SecretReference",
            json!({
                "description": "SecretReference names a Secret in a namespace.",
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {
                    "name": {"type": "string", "description": "Name of the Secret."},
                    "namespace": {"type": "string", "description": "Namespace of the Secret."},
                },
                "x-kubernetes-map-type": "atomic",
            }),
        ),
    ]
}

fn registry_check_schemas() -> Vec<(&'static str, Value)> {
    let meta_ref = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    vec![
        (
            "dev.berth.v1.RegistryCheck",
            json!({
                "description": "RegistryCheck asks a node agent to connect to a registry with the given credentials (or those of a Secret) and the node's own trust, and answers how that went: Accepted, Rejected, Unreachable, UntrustedCertificate or PlainHTTPOnly, with the failing host:port, the full message with its fix and, on request, the presented certificate chain. It is create-only and never stored; the password is never echoed back.",
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Always berth.dev/v1."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Always RegistryCheck."},
                    "metadata": {"allOf": [{"$ref": meta_ref}], "description": "Standard object's metadata (ignored: the check is never stored)."},
                    "spec": {"allOf": [{"$ref": "#/components/schemas/dev.berth.v1.RegistryCheckSpec"}], "description": "What to check."},
                    "status": {"allOf": [{"$ref": "#/components/schemas/dev.berth.v1.RegistryCheckStatus"}], "description": "The answer, filled in by the server."},
                },
            }),
        ),
        (
            "dev.berth.v1.RegistryCheckSpec",
            json!({
                "description": "RegistryCheckSpec names the registry, the credentials and the node to check from.",
                "type": "object",
                "properties": {
                    "server": {"type": "string", "description": "The registry as written in a registry Secret's auths key: host[:port], optionally with https:// and a path (https://index.docker.io/v1/ means Docker Hub). Defaults to the registry of image."},
                    "username": {"type": "string", "description": "User name to log in with (with password)."},
                    "password": {"type": "string", "description": "Password or token to log in with. Used once for the check; never stored, logged or returned."},
                    "secretRef": {"allOf": [{"$ref": "#/components/schemas/dev.berth.v1.SecretReference"}], "description": "A kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg Secret whose credential for the registry (kubelet's matching rules) is tested instead of username and password. The requester must be allowed to read it."},
                    "nodeName": {"type": "string", "description": "The node whose agent runs the check; by default a Ready node."},
                    "image": {"type": "string", "description": "An image reference whose repository is used for the login scope and whose manifest is checked (HEAD) with the credential."},
                    "fetchCertificate": {"type": "boolean", "description": "Also fetch and return the certificate chain the registry (or the host that failed) presents."},
                },
            }),
        ),
        (
            "dev.berth.v1.RegistryCheckStatus",
            json!({
                "description": "RegistryCheckStatus is the node agent's answer.",
                "type": "object",
                "properties": {
                    "result": {"type": "string", "description": "Accepted, Rejected, Unreachable, UntrustedCertificate or PlainHTTPOnly."},
                    "reason": {"type": "string", "description": "A machine-readable detail: the TLS failure class (unknown_authority, name_mismatch, ...) or the registry error kind (unauthorized, denied, network, ...)."},
                    "host": {"type": "string", "description": "The host:port the result is about (the one that failed, e.g. a token server)."},
                    "message": {"type": "string", "description": "What happened, in full, with the fix."},
                    "nodeName": {"type": "string", "description": "The node whose agent ran the check."},
                    "chain": {"type": "array", "items": {"$ref": "#/components/schemas/dev.berth.v1.CertificateSummary"}, "x-kubernetes-list-type": "atomic", "description": "The certificates the host presented, leaf first (when spec.fetchCertificate)."},
                    "chainHost": {"type": "string", "description": "The host:port whose chain is in chain."},
                    "verdict": {"type": "string", "description": "The verdict on chain: ok, or the TLS failure class."},
                },
            }),
        ),
        (
            "dev.berth.v1.CertificateSummary",
            json!({
                "description": "CertificateSummary is one presented certificate as a person checks it.",
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "description": "Subject distinguished name."},
                    "issuer": {"type": "string", "description": "Issuer distinguished name."},
                    "sha256": {"type": "string", "description": "SHA-256 fingerprint of the DER certificate, as sha256:<64 lowercase hex digits>."},
                    "notBefore": {"type": "string", "description": "Start of validity (RFC 3339)."},
                    "notAfter": {"type": "string", "description": "End of validity (RFC 3339)."},
                    "isCA": {"type": "boolean", "description": "The certificate is a CA (basicConstraints CA:TRUE)."},
                    "selfSigned": {"type": "boolean", "description": "Issuer equals subject."},
                    "pem": {"type": "string", "description": "The certificate in PEM (public data), for trusting it after the fingerprint is confirmed."},
                },
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str) -> Value {
        serde_json::from_slice(&document(path).unwrap().bytes).unwrap()
    }

    #[test]
    fn index_points_at_every_group_version_with_its_hash() {
        let index: Value = serde_json::from_slice(&index().bytes).unwrap();
        for d in documents() {
            let url = index["paths"][&d.path]["serverRelativeURL"]
                .as_str()
                .unwrap();
            assert_eq!(url, format!("/openapi/v3/{}?hash={}", d.path, d.hash));
            assert_eq!(d.hash, hash(&d.bytes));
        }
        let paths: Vec<_> = index["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            paths,
            [
                "api/v1",
                "apis/apps/v1",
                "apis/coordination.k8s.io/v1",
                "apis/berth.dev/v1"
            ]
        );
    }

    #[test]
    fn every_kind_has_a_patch_operation_with_gvk_and_field_validation() {
        for info in resources::all() {
            let d = doc(&document_path(info.group, info.version));
            let op = if info.verbs.contains(&"patch") {
                &d["paths"][item_path(info)]["patch"]
            } else {
                &d["paths"][info.collection_path(None)]["patch"]
            };
            assert_eq!(
                op["x-kubernetes-group-version-kind"],
                json!({"group": info.group, "version": info.version, "kind": info.kind}),
                "{}",
                info.kind
            );
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            );
            assert!(
                op.get("requestBody").is_none(),
                "no requestBody: kubectl would compute SMP from partial schemas"
            );
            let schema = &d["components"]["schemas"][info.schema_name];
            assert_eq!(
                schema["x-kubernetes-group-version-kind"][0]["kind"],
                info.kind
            );
        }
        let d = doc("api/v1");
        assert!(
            d["paths"]
                .get("/api/v1/namespaces/{namespace}/pods/{name}")
                .is_some()
        );
        assert!(d["paths"].get("/api/v1/namespaces/{name}").is_some());
        assert_eq!(
            d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["operationId"],
            "patchCoreV1NamespacedPod"
        );
        assert_eq!(
            doc("apis/berth.dev/v1")["paths"]["/apis/berth.dev/v1/registryhosts/{name}"]["patch"]["operationId"],
            "patchBerthDevV1RegistryHost"
        );
    }

    #[test]
    fn explain_paths_resolve_to_real_descriptions() {
        let d = doc("api/v1");
        let s = &d["components"]["schemas"];
        let pod_spec_ref = s["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["allOf"][0]["$ref"]
            .as_str()
            .unwrap();
        assert_eq!(
            pod_spec_ref,
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let ips = &s["io.k8s.api.core.v1.PodSpec"]["properties"]["imagePullSecrets"];
        assert!(
            ips["description"]
                .as_str()
                .unwrap()
                .starts_with("ImagePullSecrets is an optional list of references to secrets")
        );
        assert_eq!(
            ips["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.LocalObjectReference"
        );
        assert_eq!(ips["x-kubernetes-patch-merge-key"], "name");
        assert!(
            s["io.k8s.api.core.v1.LocalObjectReference"]["properties"]["name"]["description"]
                .as_str()
                .unwrap()
                .starts_with("Name of the referent")
        );
        assert!(
            s["io.k8s.api.core.v1.Secret"]["properties"]["type"]["description"]
                .as_str()
                .unwrap()
                .contains("Used to facilitate programmatic handling of secret data")
        );
        assert!(s["io.k8s.api.core.v1.Pod"].get("required").is_none());
        let apps = doc("apis/apps/v1");
        let a = &apps["components"]["schemas"];
        assert!(
            a["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]["description"]
                .as_str()
                .unwrap()
                .contains("replace existing pods")
        );
        assert!(a["io.k8s.api.apps.v1.StatefulSetSpec"]["properties"]["podManagementPolicy"]["description"].as_str().is_some());
        assert!(
            a["io.k8s.api.core.v1.PodSpec"].is_object(),
            "templates' pod specs are explainable too"
        );
    }

    #[test]
    fn no_reference_dangles() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        for d in documents() {
            let v: Value = serde_json::from_slice(&d.bytes).unwrap();
            let mut out = Vec::new();
            refs(&v, &mut out);
            assert!(!out.is_empty());
            for r in out {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{r} is not a component ref"));
                assert!(
                    v["components"]["schemas"].get(name).is_some(),
                    "{} references missing {name}",
                    d.path
                );
            }
        }
    }

    #[test]
    fn documents_are_deterministic_and_reasonably_small() {
        let first = build();
        let second = build();
        for (a, b) in first.documents.iter().zip(&second.documents) {
            assert_eq!(a.hash, b.hash, "{} must not change between builds", a.path);
            assert!(
                a.bytes.len() < 1_000_000,
                "{} is {} bytes",
                a.path,
                a.bytes.len()
            );
        }
        assert!(std::ptr::eq(index(), index()), "built once");
    }

    #[test]
    fn registry_check_is_documented_as_a_post_on_its_collection_with_a_field_validation_marker() {
        let d = doc("apis/berth.dev/v1");
        let paths = &d["paths"];
        assert!(
            paths
                .get("/apis/berth.dev/v1/registrychecks/{name}")
                .is_none()
        );
        let op = &paths["/apis/berth.dev/v1/registrychecks"]["post"];
        assert_eq!(op["operationId"], "createBerthDevV1RegistryCheck");
        assert_eq!(
            op["x-kubernetes-group-version-kind"]["kind"],
            "RegistryCheck"
        );
        let marker = &paths["/apis/berth.dev/v1/registrychecks"]["patch"];
        assert!(
            marker["description"]
                .as_str()
                .unwrap()
                .starts_with("not served (registrychecks is create-only"),
            "{marker}"
        );
        let s = &d["components"]["schemas"];
        for field in [
            "server",
            "username",
            "password",
            "secretRef",
            "nodeName",
            "image",
            "fetchCertificate",
        ] {
            assert!(
                s["dev.berth.v1.RegistryCheckSpec"]["properties"][field].is_object(),
                "{field}"
            );
        }
        assert!(s["dev.berth.v1.CertificateSummary"]["properties"]["sha256"].is_object());
    }

    #[test]
    fn registry_host_schema_is_served_with_object_meta() {
        let d = doc("apis/berth.dev/v1");
        let s = &d["components"]["schemas"];
        assert_eq!(
            s["dev.berth.v1.RegistryHostSpec"]["required"],
            json!(["host"])
        );
        assert!(s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(document("/apis/berth.dev/v1").is_some());
        assert!(document("apis/batch/v1").is_none());
    }
}
