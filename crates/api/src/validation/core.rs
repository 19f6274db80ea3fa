//! core/v1 rules of upstream `pkg/apis/core/validation/validation.go` for the kinds berth serves: Pod
//! (spec, containers, ports, env, volumes, tolerations, pull secrets, update restrictions), Secret
//! (types, keys, size, dockerconfig JSON, immutability), ConfigMap, Namespace, ServiceAccount, Event.
//!
//! Secret values are decoded only to measure them and to check that docker configs are JSON objects;
//! every message about them carries `<secret contents redacted>` instead of the value.

use std::collections::{BTreeSet, HashSet};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::names;
use super::{
    BadValue, EMPTY, FieldError, Path, arr_at, obj_at, semantic_eq, str_at, validate_labels,
};

/// Upstream `MaxSecretSize` (also the ConfigMap limit).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];

/// The updatable pod spec fields, as listed in upstream's `pod updates may not change fields` text.
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(super) fn validate_pod(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").and_then(Value::as_object).unwrap_or(&EMPTY);
    validate_pod_spec(spec, &Path::new("spec"), errs);
}

/// `ValidatePodSpec` for the fields berth uses.
pub(super) fn validate_pod_spec(
    spec: &Map<String, Value>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let volumes = validate_volumes(arr_at(spec, "volumes"), &path.child("volumes"), errs);
    let mut names = HashSet::new();
    let containers = arr_at(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&path.child("containers"), ""));
    }
    for (i, c) in arr_at(spec, "initContainers").iter().enumerate() {
        validate_container(
            c,
            &path.child("initContainers").index(i),
            &volumes,
            &mut names,
            errs,
        );
    }
    for (i, c) in containers.iter().enumerate() {
        validate_container(
            c,
            &path.child("containers").index(i),
            &volumes,
            &mut names,
            errs,
        );
    }
    match spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "" => errs.push(FieldError::required(&path.child("restartPolicy"), "")),
        p if !RESTART_POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            p,
            RESTART_POLICIES,
        )),
        _ => {}
    }
    match str_at(spec, "dnsPolicy") {
        "" => errs.push(FieldError::required(&path.child("dnsPolicy"), "")),
        p if !DNS_POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            p,
            DNS_POLICIES,
        )),
        _ => {}
    }
    validate_labels(
        obj_at(spec, "nodeSelector"),
        &path.child("nodeSelector"),
        errs,
    );
    for key in ["serviceAccountName", "nodeName"] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            for msg in names::is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid_str(&path.child(key), v, msg));
            }
        }
    }
    for key in ["hostname", "subdomain"] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            for msg in names::is_dns1123_label(v) {
                errs.push(FieldError::invalid_str(&path.child(key), v, msg));
            }
        }
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        let n = v.as_i64().unwrap_or(0);
        if !(1..=i64::from(u32::MAX)).contains(&n) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                BadValue::from_json(v),
                names::inclusive_range_error(1, i64::from(u32::MAX)),
            ));
        }
    }
    validate_image_pull_secrets(
        arr_at(spec, "imagePullSecrets"),
        &path.child("imagePullSecrets"),
        errs,
    );
    validate_tolerations(
        arr_at(spec, "tolerations"),
        &path.child("tolerations"),
        errs,
    );
}

/// Upstream only checks that a pull-secret reference carries nothing but a name. berth also requires
/// the name to be a valid Secret name: a reference such as `other-ns/creds` can never resolve (pull
/// secrets are read from the pod's own namespace only) and would silently fall back to anonymous pulls.
fn validate_image_pull_secrets(refs: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, r) in refs.iter().enumerate() {
        let p = path.index(i);
        let Some(m) = r.as_object() else {
            errs.push(FieldError::invalid(
                &p,
                BadValue::from_json(r),
                "must be an object with a `name`",
            ));
            continue;
        };
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
            continue;
        }
        for msg in names::is_dns1123_subdomain(name) {
            errs.push(FieldError::invalid_str(&p.child("name"), name, msg));
        }
    }
}

fn validate_volumes(
    volumes: &[Value],
    path: &Path,
    errs: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        let v = v.as_object().unwrap_or(&EMPTY);
        let name = str_at(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            for msg in names::is_dns1123_label(name) {
                errs.push(FieldError::invalid_str(&p.child("name"), name, msg));
            }
            if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    &p.child("name"),
                    BadValue::Str(name.to_string()),
                ));
            }
        }
        let sources = v
            .iter()
            .filter(|(k, val)| k.as_str() != "name" && !val.is_null())
            .count();
        if sources == 0 {
            errs.push(FieldError::required(&p, "must specify a volume type"));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(
                &p,
                "may not specify more than 1 volume type",
            ));
        }
    }
    seen
}

fn validate_container(
    c: &Value,
    path: &Path,
    volumes: &BTreeSet<String>,
    names_seen: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let c = c.as_object().unwrap_or(&EMPTY);
    let name = str_at(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        for msg in names::is_dns1123_label(name) {
            errs.push(FieldError::invalid_str(&path.child("name"), name, msg));
        }
        if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(
                &path.child("name"),
                BadValue::Str(name.to_string()),
            ));
        }
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid_str(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    match str_at(c, "imagePullPolicy") {
        "" => errs.push(FieldError::required(&path.child("imagePullPolicy"), "")),
        p if !PULL_POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            p,
            PULL_POLICIES,
        )),
        _ => {}
    }
    match str_at(c, "terminationMessagePolicy") {
        "" => errs.push(FieldError::required(
            &path.child("terminationMessagePolicy"),
            "",
        )),
        p if !TERMINATION_MESSAGE_POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            p,
            TERMINATION_MESSAGE_POLICIES,
        )),
        _ => {}
    }
    validate_ports(arr_at(c, "ports"), &path.child("ports"), errs);
    for (i, e) in arr_at(c, "env").iter().enumerate() {
        let p = path.child("env").index(i);
        let n = e.get("name").and_then(Value::as_str).unwrap_or("");
        if n.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            for msg in names::is_env_var_name(n) {
                errs.push(FieldError::invalid_str(&p.child("name"), n, msg));
            }
        }
    }
    for (i, m) in arr_at(c, "volumeMounts").iter().enumerate() {
        let p = path.child("volumeMounts").index(i);
        let m = m.as_object().unwrap_or(&EMPTY);
        let n = str_at(m, "name");
        if n.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !volumes.contains(n) {
            errs.push(FieldError::new_not_found(&p.child("name"), n));
        }
        if str_at(m, "mountPath").is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        }
    }
}

impl FieldError {
    fn new_not_found(path: &Path, value: &str) -> Self {
        FieldError {
            error_type: super::ErrorType::NotFound,
            field: path.as_str().to_string(),
            bad_value: BadValue::Str(value.to_string()),
            detail: String::new(),
        }
    }
}

fn validate_ports(ports: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut names_seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let port = port.as_object().unwrap_or(&EMPTY);
        let name = str_at(port, "name");
        if !name.is_empty() {
            for msg in names::is_valid_port_name(name) {
                errs.push(FieldError::invalid_str(&p.child("name"), name, msg));
            }
            if !names_seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    &p.child("name"),
                    BadValue::Str(name.to_string()),
                ));
            }
        }
        match port.get("containerPort") {
            None | Some(Value::Null) => {
                errs.push(FieldError::required(&p.child("containerPort"), ""))
            }
            Some(v) => {
                let n = v.as_i64().unwrap_or(0);
                if n == 0 {
                    errs.push(FieldError::required(&p.child("containerPort"), ""));
                } else if !(1..=65535).contains(&n) {
                    errs.push(FieldError::invalid(
                        &p.child("containerPort"),
                        BadValue::Int(n),
                        names::inclusive_range_error(1, 65535),
                    ));
                }
            }
        }
        if let Some(n) = port.get("hostPort").and_then(Value::as_i64)
            && n != 0
            && !(1..=65535).contains(&n)
        {
            errs.push(FieldError::invalid(
                &p.child("hostPort"),
                BadValue::Int(n),
                names::inclusive_range_error(1, 65535),
            ));
        }
        match str_at(port, "protocol") {
            "" => errs.push(FieldError::required(&p.child("protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(
                &p.child("protocol"),
                proto,
                PROTOCOLS,
            )),
            _ => {}
        }
    }
}

fn validate_tolerations(tolerations: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let t = t.as_object().unwrap_or(&EMPTY);
        let key = str_at(t, "key");
        if !key.is_empty() {
            for msg in names::is_qualified_name(key) {
                errs.push(FieldError::invalid_str(&p.child("key"), key, msg));
            }
        }
        let op = str_at(t, "operator");
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid_str(
                &p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.contains_key("tolerationSeconds")
            && !t["tolerationSeconds"].is_null()
            && str_at(t, "effect") != "NoExecute"
        {
            errs.push(FieldError::invalid_str(
                &p.child("effect"),
                str_at(t, "effect"),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "" | "Equal" => {
                let v = str_at(t, "value");
                for msg in names::is_valid_label_value(v) {
                    errs.push(FieldError::invalid_str(&p.child("value"), v, msg));
                }
            }
            "Exists" => {
                if !str_at(t, "value").is_empty() {
                    errs.push(FieldError::invalid_str(
                        &p.child("operator"),
                        str_at(t, "value"),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &p.child("operator"),
                other,
                TOLERATION_OPERATORS,
            )),
        }
        let effect = str_at(t, "effect");
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &p.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
}

/// `ValidatePodUpdate`: only container images, activeDeadlineSeconds (shortened, never removed),
/// additional tolerations and terminationGracePeriodSeconds (negative -> 1) may change.
pub(super) fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let spec_path = Path::new("spec");
    let new_spec = new.get("spec").and_then(Value::as_object).unwrap_or(&EMPTY);
    let old_spec = old.get("spec").and_then(Value::as_object).unwrap_or(&EMPTY);
    for key in ["containers", "initContainers"] {
        if arr_at(new_spec, key).len() != arr_at(old_spec, key).len() {
            errs.push(FieldError::forbidden(
                &spec_path.child(key),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    let new_ads = new_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    if let Some(old_ads) = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
    {
        match new_ads {
            None => errs.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                BadValue::Null,
                "must not update from a positive integer to nil value",
            )),
            Some(n) if n > old_ads => errs.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                BadValue::Int(n),
                "must be less than or equal to previous value",
            )),
            _ => {}
        }
    }
    let old_tolerations = arr_at(old_spec, "tolerations");
    let new_tolerations = arr_at(new_spec, "tolerations");
    for (i, t) in old_tolerations.iter().enumerate() {
        if !new_tolerations
            .iter()
            .any(|n| semantic_eq(Some(n), Some(t)))
        {
            errs.push(FieldError::forbidden(
                &spec_path.child("tolerations").index(i),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
        }
    }
    // Munge the updatable fields of the new spec back to the old values and compare what is left.
    let mut munged = new_spec.clone();
    for key in ["containers", "initContainers"] {
        if let (Some(Value::Array(nc)), Some(oc)) = (
            munged.get_mut(key),
            old_spec.get(key).and_then(Value::as_array),
        ) {
            for (n, o) in nc.iter_mut().zip(oc) {
                if let (Some(n), Some(image)) = (n.as_object_mut(), o.get("image")) {
                    n.insert("image".into(), image.clone());
                }
            }
        }
    }
    for key in ["activeDeadlineSeconds", "tolerations"] {
        match old_spec.get(key) {
            Some(v) => munged.insert(key.into(), v.clone()),
            None => munged.remove(key),
        };
    }
    let old_grace = old_spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = munged
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        munged.insert(
            "terminationGracePeriodSeconds".into(),
            old_spec["terminationGracePeriodSeconds"].clone(),
        );
    }
    let munged = Value::Object(munged);
    let old_spec_value = Value::Object(old_spec.clone());
    if !semantic_eq(Some(&munged), Some(&old_spec_value)) {
        let mut changed = Vec::new();
        diff_paths("spec", &old_spec_value, &munged, &mut changed);
        errs.push(FieldError::forbidden(
            &spec_path,
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n  changed: {}", changed.join(", ")),
        ));
    }
}

/// Paths whose values differ between `old` and `new` (upstream prints a Go struct diff here; berth names
/// the changed paths instead).
pub(super) fn diff_paths(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if semantic_eq(Some(old), Some(new)) {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                let (ov, nv) = (
                    o.get(k).unwrap_or(&Value::Null),
                    n.get(k).unwrap_or(&Value::Null),
                );
                diff_paths(&format!("{path}.{k}"), ov, nv, out);
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (ov, nv)) in o.iter().zip(n).enumerate() {
                diff_paths(&format!("{path}[{i}]"), ov, nv, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// Decoded `data` entries of a Secret or ConfigMap `binaryData`; undecodable values are reported as
/// invalid base64 (they can only come from a hand-built object: JSON decoding already requires base64).
fn decoded_data(obj: &Value, key: &str, errs: &mut Vec<FieldError>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let path = Path::new(key);
    for (k, v) in obj.get(key).and_then(Value::as_object).unwrap_or(&EMPTY) {
        match v
            .as_str()
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
        {
            Some(Ok(bytes)) => out.push((k.clone(), bytes)),
            _ => errs.push(FieldError::invalid(
                &path.key(k),
                BadValue::Redacted,
                "must be base64-encoded bytes",
            )),
        }
    }
    out
}

/// `ValidateSecret`.
pub(super) fn validate_secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let data_path = Path::new("data");
    let data = decoded_data(obj, "data", errs);
    let mut total = 0usize;
    for (k, v) in &data {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid_str(&data_path.key(k), k, msg));
        }
        total += v.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SECRET_SIZE));
    }
    let get = |key: &str| {
        data.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    };
    let secret_type = obj.get("type").and_then(Value::as_str).unwrap_or("");
    match secret_type {
        "kubernetes.io/service-account-token" => {
            let annotations = obj_at(super::meta(obj), "annotations");
            if str_at(annotations, "kubernetes.io/service-account.name").is_empty() {
                errs.push(FieldError::required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let key = if secret_type == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match get(key) {
                None => errs.push(FieldError::required(&data_path.key(key), "")),
                Some(bytes) => {
                    if let Err(msg) = check_json_object(bytes) {
                        errs.push(FieldError::invalid(
                            &data_path.key(key),
                            BadValue::Redacted,
                            msg,
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if get("username").is_none() && get("password").is_none() => {
            errs.push(FieldError::required(&data_path.key("username"), ""));
            errs.push(FieldError::required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if get("ssh-privatekey").is_none_or(<[u8]>::is_empty) => {
            errs.push(FieldError::required(&data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            if get("tls.crt").is_none() {
                errs.push(FieldError::required(&data_path.key("tls.crt"), ""));
            }
            if get("tls.key").is_none() {
                errs.push(FieldError::required(&data_path.key("tls.key"), ""));
            }
        }
        _ => {}
    }
}

/// Upstream unmarshals docker configs into `map[string]interface{}`; this reproduces its outcomes
/// (`null` is accepted, other non-objects are not) with Go's texts where they carry no content. Syntax
/// errors give serde_json's position text, which never quotes the input.
fn check_json_object(bytes: &[u8]) -> Result<(), String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("unexpected end of JSON input".into());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) | Ok(Value::Null) => Ok(()),
        Ok(other) => {
            let what = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            Err(format!(
                "json: cannot unmarshal {what} into Go value of type map[string]interface {{}}"
            ))
        }
        Err(e) if e.is_eof() => Err("unexpected end of JSON input".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// `ValidateSecretUpdate`: `type` is immutable, and so are `data` and `immutable` once `immutable` is true.
pub(super) fn validate_secret_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let (nt, ot) = (
        new.get("type").and_then(Value::as_str).unwrap_or(""),
        old.get("type").and_then(Value::as_str).unwrap_or(""),
    );
    if nt != ot {
        errs.push(FieldError::immutable(
            &Path::new("type"),
            BadValue::Str(nt.to_string()),
        ));
    }
    validate_immutable_data(new, old, &["data"], errs);
}

fn validate_immutable_data(new: &Value, old: &Value, keys: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            &Path::new("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
    for key in keys {
        if !semantic_eq(new.get(*key), old.get(*key)) {
            errs.push(FieldError::forbidden(
                &Path::new(key),
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// `ValidateConfigMap`: keys, no key in both `data` and `binaryData`, total size at most 1 MiB.
pub(super) fn validate_config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    let data = obj.get("data").and_then(Value::as_object).unwrap_or(&EMPTY);
    for (k, v) in data {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid_str(&Path::new("data").key(k), k, msg));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in decoded_data(obj, "binaryData", errs) {
        for msg in names::is_config_map_key(&k) {
            errs.push(FieldError::invalid_str(
                &Path::new("binaryData").key(&k),
                &k,
                msg,
            ));
        }
        if data.contains_key(&k) {
            errs.push(FieldError::invalid_str(
                &Path::new("binaryData").key(&k),
                &k,
                "duplicate of key present in data",
            ));
        }
        total += v.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&Path::root(), MAX_SECRET_SIZE));
    }
}

pub(super) fn validate_config_map_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    validate_immutable_data(new, old, &["data", "binaryData"], errs);
}

/// `ValidateNamespace`: finalizers are qualified names.
pub(super) fn validate_namespace(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").and_then(Value::as_object).unwrap_or(&EMPTY);
    for (i, f) in arr_at(spec, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid_str(
                &Path::new("spec").child("finalizers").index(i),
                f,
                msg,
            ));
        }
    }
    if let Some(phase) = obj
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        && !phase.is_empty()
        && phase != "Active"
        && phase != "Terminating"
    {
        errs.push(FieldError::not_supported(
            &Path::new("status").child("phase"),
            phase,
            &["Active", "Terminating"],
        ));
    }
}

/// `ValidateServiceAccount`: secret and pull-secret references are names.
pub(super) fn validate_service_account(obj: &Value, errs: &mut Vec<FieldError>) {
    let top = obj.as_object().unwrap_or(&EMPTY);
    validate_image_pull_secrets(
        arr_at(top, "imagePullSecrets"),
        &Path::new("imagePullSecrets"),
        errs,
    );
}

/// `ValidateEvent` (core/v1): the involved object's namespace must match the event's.
pub(super) fn validate_event(obj: &Value, errs: &mut Vec<FieldError>) {
    let top = obj.as_object().unwrap_or(&EMPTY);
    let involved = obj_at(top, "involvedObject");
    let ns = str_at(super::meta(obj), "namespace");
    let ins = str_at(involved, "namespace");
    if !ins.is_empty() && ins != ns {
        errs.push(FieldError::invalid_str(
            &Path::new("involvedObject").child("namespace"),
            ins,
            "does not match event.namespace",
        ));
    }
    if let Some(t) = top.get("type").and_then(Value::as_str)
        && !t.is_empty()
        && t != "Normal"
        && t != "Warning"
    {
        errs.push(FieldError::not_supported(
            &Path::new("type"),
            t,
            &["Normal", "Warning"],
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::defaults;
    use crate::resources::by_kind_name;
    use crate::validation::{validate_create, validate_update};
    use base64::Engine as _;
    use serde_json::{Value, json};

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn errors_of(kind: &str, obj: Value) -> Vec<String> {
        let info = by_kind_name(kind).unwrap();
        let mut obj = obj;
        defaults::apply(info, &mut obj);
        validate_create(info, &obj)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn update_errors(kind: &str, new: Value, old: Value) -> Vec<String> {
        let info = by_kind_name(kind).unwrap();
        let (mut new, mut old) = (new, old);
        defaults::apply(info, &mut new);
        defaults::apply(info, &mut old);
        validate_update(info, &new, &old)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"foo","namespace":"default"},"spec":spec})
    }

    fn secret(t: &str, data: Value) -> Value {
        json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"default"},"type":t,"data":data})
    }

    #[test]
    fn valid_pod_passes() {
        let p = pod(
            json!({"containers":[{"name":"app","image":"www.3rdregistry.com/team/app:1.0",
            "ports":[{"containerPort":80,"name":"http"}],"env":[{"name":"A_B","value":"1"}],
            "volumeMounts":[{"name":"data","mountPath":"/data"}]}],
            "volumes":[{"name":"data","emptyDir":{}}],"imagePullSecrets":[{"name":"myregistrykey"}],
            "tolerations":[{"key":"k","operator":"Exists","effect":"NoSchedule"}]}),
        );
        assert_eq!(errors_of("Pod", p), Vec::<String>::new());
    }

    #[test]
    fn pod_requires_containers_and_images() {
        assert_eq!(
            errors_of("Pod", pod(json!({}))),
            ["spec.containers: Required value"]
        );
        assert_eq!(
            errors_of("Pod", pod(json!({"containers":[{"name":"a"}]}))),
            ["spec.containers[0].image: Required value"]
        );
        assert_eq!(
            errors_of(
                "Pod",
                pod(json!({"containers":[{"name":"a","image":" busybox"}]}))
            ),
            [
                "spec.containers[0].image: Invalid value: \" busybox\": must not have leading or trailing whitespace"
            ]
        );
    }

    #[test]
    fn container_names_must_be_unique_dns_labels() {
        let errs = errors_of(
            "Pod",
            pod(
                json!({"initContainers":[{"name":"a","image":"x"}],"containers":[{"name":"a","image":"x"},{"name":"B_1","image":"x"},{"image":"x"}]}),
            ),
        );
        assert_eq!(errs[0], "spec.containers[0].name: Duplicate value: \"a\"");
        assert!(
            errs[1].starts_with(
                "spec.containers[1].name: Invalid value: \"B_1\": a lowercase RFC 1123 label"
            ),
            "{errs:?}"
        );
        assert_eq!(errs[2], "spec.containers[2].name: Required value");
    }

    #[test]
    fn restart_pull_and_dns_policies_are_enumerations() {
        let errs = errors_of(
            "Pod",
            pod(
                json!({"restartPolicy":"Sometimes","dnsPolicy":"Google","containers":[{"name":"a","image":"x","imagePullPolicy":"Maybe"}]}),
            ),
        );
        assert_eq!(
            errs,
            [
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn ports_are_range_checked_and_names_unique() {
        let errs = errors_of(
            "Pod",
            pod(json!({"containers":[{"name":"a","image":"x","ports":[
            {"containerPort":0},{"containerPort":70000,"protocol":"ICMP"},{"containerPort":80,"name":"http"},{"containerPort":81,"name":"http"},{"containerPort":82,"hostPort":-1}]}]})),
        );
        assert_eq!(
            errs,
            [
                "spec.containers[0].ports[0].containerPort: Required value",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[3].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[4].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn env_names_and_volume_mounts_are_checked() {
        let errs = errors_of(
            "Pod",
            pod(
                json!({"containers":[{"name":"a","image":"x","env":[{"name":"1BAD"},{"value":"x"}],
            "volumeMounts":[{"name":"nope","mountPath":"/x"},{"name":"v"}]}],"volumes":[{"name":"v","emptyDir":{}},{"name":"v","emptyDir":{}},{"name":"w","emptyDir":{},"hostPath":{"path":"/"}}]}),
            ),
        );
        assert_eq!(errs[0], "spec.volumes[1].name: Duplicate value: \"v\"");
        assert_eq!(
            errs[1],
            "spec.volumes[2]: Forbidden: may not specify more than 1 volume type"
        );
        assert!(errs[2].starts_with("spec.containers[0].env[0].name: Invalid value: \"1BAD\": a valid environment variable name"), "{errs:?}");
        assert_eq!(errs[3], "spec.containers[0].env[1].name: Required value");
        assert_eq!(
            errs[4],
            "spec.containers[0].volumeMounts[0].name: Not found: \"nope\""
        );
        assert_eq!(
            errs[5],
            "spec.containers[0].volumeMounts[1].mountPath: Required value"
        );
    }

    #[test]
    fn image_pull_secret_names_must_be_secret_names() {
        let errs = errors_of(
            "Pod",
            pod(
                json!({"containers":[{"name":"a","image":"x"}],"imagePullSecrets":[{"name":""},{"name":"other-ns/creds"},{"name":"ok"}]}),
            ),
        );
        assert_eq!(errs[0], "spec.imagePullSecrets[0].name: Required value");
        assert!(errs[1].starts_with("spec.imagePullSecrets[1].name: Invalid value: \"other-ns/creds\": a lowercase RFC 1123 subdomain"), "{errs:?}");
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn active_deadline_and_tolerations_are_checked() {
        let errs = errors_of(
            "Pod",
            pod(
                json!({"containers":[{"name":"a","image":"x"}],"activeDeadlineSeconds":0,
            "tolerations":[{"operator":"Equal","value":"x"},{"key":"k","operator":"Exists","value":"v"},{"key":"k","operator":"Like"},{"key":"k","effect":"Sometimes"}]}),
            ),
        );
        assert_eq!(
            errs[0],
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 4294967295, inclusive"
        );
        assert_eq!(
            errs[1],
            "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""
        );
        assert_eq!(
            errs[2],
            "spec.tolerations[1].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'"
        );
        assert_eq!(
            errs[3],
            "spec.tolerations[2].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\""
        );
        assert!(
            errs[4].starts_with("spec.tolerations[3].effect: Unsupported value: \"Sometimes\""),
            "{errs:?}"
        );
    }

    #[test]
    fn pod_update_may_change_image_but_not_ports() {
        let old =
            pod(json!({"containers":[{"name":"a","image":"x:1","ports":[{"containerPort":80}]}]}));
        let new_image =
            pod(json!({"containers":[{"name":"a","image":"x:2","ports":[{"containerPort":80}]}]}));
        assert_eq!(
            update_errors("Pod", new_image, old.clone()),
            Vec::<String>::new()
        );
        let new_port =
            pod(json!({"containers":[{"name":"a","image":"x:1","ports":[{"containerPort":81}]}]}));
        let errs = update_errors("Pod", new_port, old.clone());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"), "{errs:?}");
        assert!(
            errs[0].contains("spec.containers[0].ports[0].containerPort"),
            "{errs:?}"
        );
        let more = pod(
            json!({"containers":[{"name":"a","image":"x:1","ports":[{"containerPort":80}]},{"name":"b","image":"y"}]}),
        );
        assert_eq!(
            update_errors("Pod", more, old),
            ["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn pod_update_allows_toleration_additions_and_shorter_deadlines_only() {
        let t1 = json!({"key":"a","operator":"Exists"});
        let t2 = json!({"key":"b","operator":"Exists"});
        let old = pod(
            json!({"containers":[{"name":"a","image":"x"}],"tolerations":[t1],"activeDeadlineSeconds":100}),
        );
        let added = pod(
            json!({"containers":[{"name":"a","image":"x"}],"tolerations":[t1, t2],"activeDeadlineSeconds":50}),
        );
        assert_eq!(
            update_errors("Pod", added, old.clone()),
            Vec::<String>::new()
        );
        let removed = pod(
            json!({"containers":[{"name":"a","image":"x"}],"tolerations":[t2],"activeDeadlineSeconds":200}),
        );
        let errs = update_errors("Pod", removed, old.clone());
        assert_eq!(
            errs[0],
            "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
        );
        assert_eq!(
            errs[1],
            "spec.tolerations[0]: Forbidden: existing toleration can not be modified except its tolerationSeconds"
        );
        let cleared = pod(json!({"containers":[{"name":"a","image":"x"}],"tolerations":[t1]}));
        assert_eq!(
            update_errors("Pod", cleared, old),
            [
                "spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"
            ]
        );
    }

    #[test]
    fn pod_update_allows_negative_grace_period_to_become_one() {
        let old = pod(
            json!({"containers":[{"name":"a","image":"x"}],"terminationGracePeriodSeconds":-1}),
        );
        let new =
            pod(json!({"containers":[{"name":"a","image":"x"}],"terminationGracePeriodSeconds":1}));
        assert_eq!(update_errors("Pod", new, old.clone()), Vec::<String>::new());
        let new =
            pod(json!({"containers":[{"name":"a","image":"x"}],"terminationGracePeriodSeconds":5}));
        assert_eq!(update_errors("Pod", new, old).len(), 1);
    }

    #[test]
    fn dockerconfigjson_secret_requires_a_json_object() {
        let ok = secret(
            "kubernetes.io/dockerconfigjson",
            json!({".dockerconfigjson": b64(br#"{"auths":{"r.io":{"auth":"dTpw"}}}"#)}),
        );
        assert_eq!(errors_of("Secret", ok), Vec::<String>::new());
        assert_eq!(
            errors_of(
                "Secret",
                secret("kubernetes.io/dockerconfigjson", json!({}))
            ),
            ["data[.dockerconfigjson]: Required value"]
        );
        let bad = secret(
            "kubernetes.io/dockerconfigjson",
            json!({".dockerconfigjson": b64(b"no-json-hunter2")}),
        );
        let errs = errors_of("Secret", bad);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": invalid JSON"), "{errs:?}");
        assert!(!errs[0].contains("hunter2"));
        let string = secret(
            "kubernetes.io/dockerconfigjson",
            json!({".dockerconfigjson": b64(b"\"hunter2\"")}),
        );
        let errs = errors_of("Secret", string);
        assert_eq!(
            errs,
            [
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": json: cannot unmarshal string into Go value of type map[string]interface {}"
            ]
        );
        let empty = secret(
            "kubernetes.io/dockerconfigjson",
            json!({".dockerconfigjson": ""}),
        );
        assert_eq!(
            errors_of("Secret", empty),
            [
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": unexpected end of JSON input"
            ]
        );
        let null = secret(
            "kubernetes.io/dockerconfigjson",
            json!({".dockerconfigjson": b64(b"null")}),
        );
        assert_eq!(
            errors_of("Secret", null),
            Vec::<String>::new(),
            "go accepts null into a map"
        );
    }

    #[test]
    fn dockercfg_basic_auth_ssh_and_tls_require_their_keys() {
        assert_eq!(
            errors_of("Secret", secret("kubernetes.io/dockercfg", json!({}))),
            ["data[.dockercfg]: Required value"]
        );
        assert_eq!(
            errors_of(
                "Secret",
                secret("kubernetes.io/dockercfg", json!({".dockercfg": b64(b"{}")}))
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            errors_of("Secret", secret("kubernetes.io/basic-auth", json!({}))),
            [
                "data[username]: Required value",
                "data[password]: Required value"
            ]
        );
        assert_eq!(
            errors_of(
                "Secret",
                secret("kubernetes.io/basic-auth", json!({"password": ""}))
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            errors_of(
                "Secret",
                secret("kubernetes.io/ssh-auth", json!({"ssh-privatekey": ""}))
            ),
            ["data[ssh-privatekey]: Required value"]
        );
        assert_eq!(
            errors_of(
                "Secret",
                secret("kubernetes.io/tls", json!({"tls.crt": ""}))
            ),
            ["data[tls.key]: Required value"]
        );
        assert_eq!(
            errors_of(
                "Secret",
                secret("kubernetes.io/service-account-token", json!({}))
            ),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        assert_eq!(
            errors_of("Secret", secret("example.com/custom", json!({}))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn secret_keys_and_total_size_are_limited() {
        let errs = errors_of(
            "Secret",
            secret(
                "Opaque",
                json!({"config.json=x": b64(b"1"), "..": b64(b"1")}),
            ),
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e == "data[..]: Invalid value: \"..\": must not be '..'"),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with(
                "data[config.json=x]: Invalid value: \"config.json=x\": a valid config key"
            )),
            "{errs:?}"
        );
        let half = vec![b'a'; super::MAX_SECRET_SIZE / 2];
        let at_limit = secret("Opaque", json!({"a": b64(&half), "b": b64(&half)}));
        assert_eq!(errors_of("Secret", at_limit), Vec::<String>::new());
        let over = secret(
            "Opaque",
            json!({"a": b64(&half), "b": b64(&half), "c": b64(b"x")}),
        );
        assert_eq!(
            errors_of("Secret", over),
            ["data: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn secret_type_and_immutable_data_cannot_change() {
        let old = secret("Opaque", json!({"a": b64(b"1")}));
        let new = secret(
            "kubernetes.io/tls",
            json!({"tls.crt": b64(b"1"), "tls.key": b64(b"1")}),
        );
        assert_eq!(
            update_errors("Secret", new, old),
            ["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
        let mut old = secret("Opaque", json!({"a": b64(b"1")}));
        old["immutable"] = json!(true);
        let mut new = secret("Opaque", json!({"a": b64(b"2")}));
        new["immutable"] = json!(true);
        assert_eq!(
            update_errors("Secret", new, old.clone()),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let new = secret("Opaque", json!({"a": b64(b"1")}));
        assert_eq!(
            update_errors("Secret", new, old),
            ["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn config_map_keys_may_not_repeat_across_data_and_binary_data() {
        let cm = json!({"metadata":{"name":"c","namespace":"default"},"data":{"a":"x","bad key":"y"},"binaryData":{"a": b64(b"z")}});
        let errs = errors_of("ConfigMap", cm);
        assert!(
            errs[0].starts_with("data[bad key]: Invalid value: \"bad key\""),
            "{errs:?}"
        );
        assert_eq!(
            errs[1],
            "binaryData[a]: Invalid value: \"a\": duplicate of key present in data"
        );
    }

    #[test]
    fn event_namespace_must_match_involved_object() {
        let ev = json!({"metadata":{"name":"e","namespace":"default"},"involvedObject":{"kind":"Pod","namespace":"other","name":"p"},"type":"Normal"});
        assert_eq!(
            errors_of("Event", ev),
            ["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
        );
    }

    #[test]
    fn namespace_finalizers_must_be_qualified_names() {
        let ns =
            json!({"metadata":{"name":"team1"},"spec":{"finalizers":["kubernetes","bad/one/two"]}});
        let errs = errors_of("Namespace", ns);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("spec.finalizers[1]: Invalid value: \"bad/one/two\""),
            "{errs:?}"
        );
    }
}
