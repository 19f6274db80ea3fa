//! PATCH semantics on JSON objects: JSON merge patch (RFC 7386), JSON patch (RFC 6902, with
//! kube's 3 MiB accumulated copy limit), strategic merge patch with the upstream merge keys
//! and directives for the built-in kinds, and the server-side apply merge. It owns the merge
//! algorithms and their error texts; it must never validate the result, talk to storage or
//! decide conflicts on resourceVersion (the apiserver does all three).
//!
//! RFC 6902/7386 come from the `json-patch` crate. Strategic merge patch is written by hand:
//! no Rust crate implements Kubernetes' directives (`$patch`, `$setElementOrder/…`,
//! `$retainKeys`, `$deleteFromPrimitiveList/…`). The merge keys are those of the upstream
//! `patchStrategy`/`patchMergeKey` struct tags (k8s.io/api core/v1 and apps/v1).
//!
//! List order follows upstream `normalizeElementOrder`: `$setElementOrder` (or else the patch
//! list) orders the patched elements and they are interleaved with the live-only ones by live
//! order, so a new element sent without `$setElementOrder` lands in front, as on kube-apiserver.
//!
//! Server-side apply with field ownership lives in [`crate::apply`]; [`apply`] here is its plain
//! merge for writers that track no ownership (the `scale` subresource's apply body).

use serde_json::{Map, Value};

/// Largest total size of values copied by JSON patch `copy` operations (kube-apiserver's limit).
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The PATCH media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// Parses a PATCH `Content-Type`; `None` for anything else (the apiserver answers 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Why a patch could not be applied. The apiserver maps `UnsupportedStrategicMerge` to 415 and
/// the others to 400/422 (`TestFailed` to 422, like upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error(
        "json patch must be a JSON array of operations: {0}; send [{{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}}]"
    )]
    InvalidJsonPatch(String),
    #[error("json patch operation {index} ({op} {path}) failed: {detail}")]
    JsonPatchOperation {
        index: usize,
        op: String,
        path: String,
        detail: String,
    },
    #[error(
        "json patch copy operations copied more than {limit} bytes (operation {index}); split the patch into smaller ones"
    )]
    CopyLimit { index: usize, limit: usize },
    #[error("merge patch must be a JSON object, got {0}; send {{\"spec\":{{...}}}}")]
    NotAnObject(&'static str),
    #[error(
        "strategic merge patch is not supported for {kind}; use application/merge-patch+json or application/json-patch+json"
    )]
    UnsupportedStrategicMerge { kind: String },
    #[error("strategic merge patch at {path}: {detail}")]
    Strategic { path: String, detail: String },
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Applies a JSON merge patch (RFC 7386) and returns the patched object.
pub fn merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::NotAnObject(type_name(patch)));
    }
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

/// Applies a JSON patch (RFC 6902, including `test`) and returns the patched object. The
/// original is untouched when any operation fails.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    json_patch_with_limit(target, patch, MAX_JSON_PATCH_COPY_BYTES)
}

/// [`json_patch`] with an explicit accumulated `copy` size limit.
pub fn json_patch_with_limit(
    target: &Value,
    patch: &Value,
    copy_limit: usize,
) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut doc = target.clone();
    let mut copied = 0usize;
    for (index, op) in ops.0.iter().enumerate() {
        let (name, path) = match op {
            json_patch::PatchOperation::Add(o) => ("add", o.path.to_string()),
            json_patch::PatchOperation::Remove(o) => ("remove", o.path.to_string()),
            json_patch::PatchOperation::Replace(o) => ("replace", o.path.to_string()),
            json_patch::PatchOperation::Move(o) => ("move", o.path.to_string()),
            json_patch::PatchOperation::Copy(o) => ("copy", o.path.to_string()),
            json_patch::PatchOperation::Test(o) => ("test", o.path.to_string()),
        };
        if let json_patch::PatchOperation::Copy(o) = op
            && let Some(source) = doc.pointer(o.from.as_str())
        {
            copied += serde_json::to_vec(source).map(|v| v.len()).unwrap_or(0);
            if copied > copy_limit {
                return Err(PatchError::CopyLimit {
                    index,
                    limit: copy_limit,
                });
            }
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            let detail = match e.kind {
                json_patch::PatchErrorKind::TestFailed => {
                    "test operation failed: value did not match".to_string()
                }
                json_patch::PatchErrorKind::InvalidPointer => {
                    format!("path {path:?} does not exist in the object")
                }
                json_patch::PatchErrorKind::InvalidFromPointer => {
                    "\"from\" path does not exist in the object".to_string()
                }
                other => other.to_string(),
            };
            PatchError::JsonPatchOperation {
                index,
                op: name.into(),
                path: path.clone(),
                detail,
            }
        })?;
    }
    Ok(doc)
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Atomic: the patch's list replaces the original (the default).
    Replace,
    /// List of objects merged by the value of this key.
    MergeByKey(&'static str),
    /// List of scalars merged as a set (patchStrategy merge without merge key).
    MergePrimitives,
}

/// Kinds whose strategic merge schema is known.
pub const STRATEGIC_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "Secret",
    "ConfigMap",
    "Namespace",
    "ServiceAccount",
    "Event",
    "Node",
    "ControllerRevision",
    "Lease",
];

/// Whether strategic merge patch is available for a kind (upstream refuses it for custom
/// resources with 415; berth does the same for its own kinds such as RegistryHost).
pub fn supports_strategic_merge(kind: &str) -> bool {
    STRATEGIC_KINDS.contains(&kind)
}

fn pod_spec_path<'a>(kind: &str, path: &'a [&'a str]) -> Option<&'a [&'a str]> {
    match kind {
        "Pod" => path.strip_prefix(&["spec"][..]),
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            path.strip_prefix(&["spec", "template", "spec"][..])
        }
        _ => None,
    }
}

/// The merge strategy of the list at `path` (field names from the root; list elements do not
/// add a segment) in an object of `kind`, from the upstream struct tags.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    use ListStrategy::*;
    if let [.., "metadata", last] = path {
        return match *last {
            "finalizers" => MergePrimitives,
            "ownerReferences" => MergeByKey("uid"),
            _ => Replace,
        };
    }
    if let Some(rest) = pod_spec_path(kind, path) {
        return match rest {
            [
                "containers"
                | "initContainers"
                | "ephemeralContainers"
                | "volumes"
                | "imagePullSecrets",
            ] => MergeByKey("name"),
            ["schedulingGates" | "resourceClaims"] => MergeByKey("name"),
            ["hostAliases"] => MergeByKey("ip"),
            ["topologySpreadConstraints"] => MergeByKey("topologyKey"),
            [
                "containers" | "initContainers" | "ephemeralContainers",
                field,
            ] => match *field {
                "ports" => MergeByKey("containerPort"),
                "env" => MergeByKey("name"),
                "volumeMounts" => MergeByKey("mountPath"),
                "volumeDevices" => MergeByKey("devicePath"),
                _ => Replace,
            },
            _ => Replace,
        };
    }
    match (kind, path) {
        (_, ["status", "conditions"]) => MergeByKey("type"),
        ("Pod", ["status", "podIPs" | "hostIPs"]) => MergeByKey("ip"),
        ("Node", ["status", "addresses"]) => MergeByKey("type"),
        ("Node", ["status", "images" | "volumesAttached"]) => Replace,
        ("Node", ["spec", "podCIDRs"]) => MergePrimitives,
        ("ServiceAccount", ["secrets"]) => MergeByKey("name"),
        ("ServiceAccount", ["imagePullSecrets"]) => Replace,
        _ => Replace,
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const RETAIN_KEYS: &str = "$retainKeys";
const PATCH: &str = "$patch";

struct Smp<'a> {
    kind: &'a str,
}

fn err(path: &[&str], detail: impl Into<String>) -> PatchError {
    PatchError::Strategic {
        path: if path.is_empty() {
            "<root>".into()
        } else {
            path.join(".")
        },
        detail: detail.into(),
    }
}

/// Applies a strategic merge patch to an object of `kind`.
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    if !supports_strategic_merge(kind) {
        return Err(PatchError::UnsupportedStrategicMerge {
            kind: kind.to_string(),
        });
    }
    let (Value::Object(orig), Value::Object(p)) = (original, patch) else {
        return Err(PatchError::NotAnObject(type_name(patch)));
    };
    let smp = Smp { kind };
    match smp.merge_map(Some(orig.clone()), p, &mut Vec::new())? {
        Some(m) => Ok(Value::Object(m)),
        None => Ok(Value::Object(Map::new())),
    }
}

impl Smp<'_> {
    /// Merges a patch map into an original map. `None` means "delete this map".
    fn merge_map<'p>(
        &self,
        original: Option<Map<String, Value>>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<Option<Map<String, Value>>, PatchError> {
        let mut out = original.unwrap_or_default();
        match patch.get(PATCH).map(|v| v.as_str()) {
            None | Some(Some("merge")) => {}
            // the patch (minus directives) becomes the whole new value
            Some(Some("replace")) => out.clear(),
            // upstream handleDirectiveInMergeMap: the map becomes empty
            Some(Some("delete")) => return Ok(Some(Map::new())),
            Some(other) => {
                return Err(err(
                    path,
                    format!("unknown $patch directive {other:?}; use replace, merge or delete"),
                ));
            }
        }
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let keys = retain
                .as_array()
                .ok_or_else(|| err(path, "$retainKeys must be a list of field names"))?
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or_else(|| err(path, "$retainKeys entries must be strings"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for k in patch.keys().filter(|k| !k.starts_with('$')) {
                if !keys.contains(&k.as_str()) && !patch[k].is_null() {
                    return Err(err(
                        path,
                        format!("$retainKeys does not list {k:?}, which the patch sets; add it"),
                    ));
                }
            }
            out.retain(|k, _| keys.contains(&k.as_str()));
        }
        for (k, v) in patch {
            if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE) {
                let remove = v
                    .as_array()
                    .ok_or_else(|| err(path, format!("{k} must be a list")))?;
                if let Some(Value::Array(list)) = out.get_mut(field) {
                    list.retain(|item| !remove.contains(item));
                }
                continue;
            }
            if k.starts_with('$') {
                continue;
            }
            path.push(k.as_str());
            if v.is_null() {
                out.remove(k);
            } else {
                let order = patch
                    .get(&format!("{SET_ORDER}{k}"))
                    .and_then(Value::as_array)
                    .map(Vec::as_slice);
                let merged = self.merge_value(out.remove(k), v, order, path)?;
                if let Some(m) = merged {
                    out.insert(k.clone(), m);
                }
            }
            path.pop();
        }
        // `$setElementOrder` without a patch list for the field only reorders the live list
        for (k, order) in patch {
            if let Some(field) = k.strip_prefix(SET_ORDER)
                && patch.get(field).is_none_or(Value::is_null)
            {
                path.push(field);
                let strategy = list_strategy(self.kind, path);
                if let (Some(Value::Array(list)), Value::Array(order)) = (out.get_mut(field), order)
                    && strategy != ListStrategy::Replace
                {
                    let live = list.clone();
                    *list = normalize_order(std::mem::take(list), order, &live, strategy);
                }
                path.pop();
            }
        }
        Ok(Some(out))
    }

    fn merge_value<'p>(
        &self,
        original: Option<Value>,
        patch: &'p Value,
        order: Option<&'p [Value]>,
        path: &mut Vec<&'p str>,
    ) -> Result<Option<Value>, PatchError> {
        match patch {
            Value::Object(p) => {
                let orig = match original {
                    Some(Value::Object(m)) => Some(m),
                    _ => None,
                };
                Ok(self.merge_map(orig, p, path)?.map(Value::Object))
            }
            Value::Array(p) => {
                let orig = match original {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                self.merge_list(orig, p, order, path)
                    .map(|l| Some(Value::Array(l)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// Merges a list; a merging list is then ordered like upstream `normalizeElementOrder`:
    /// `$setElementOrder` (or else the patch list) orders the patched elements, live order the
    /// rest, and the two are interleaved by live order.
    fn merge_list<'p>(
        &self,
        original: Vec<Value>,
        patch: &'p [Value],
        order: Option<&'p [Value]>,
        path: &mut Vec<&'p str>,
    ) -> Result<Vec<Value>, PatchError> {
        let replace_all = patch
            .iter()
            .any(|e| e.get(PATCH).and_then(Value::as_str) == Some("replace"));
        let strategy = list_strategy(self.kind, path);
        if replace_all || strategy == ListStrategy::Replace {
            let mut out = Vec::new();
            for e in patch {
                if e.get(PATCH).is_some() && e.as_object().is_some_and(|m| m.len() == 1) {
                    continue;
                }
                // strip directives from the new elements by merging them into nothing
                if let Some(v) = self.merge_value(None, e, None, path)? {
                    out.push(v);
                }
            }
            return Ok(out);
        }
        match strategy {
            ListStrategy::MergePrimitives => {
                let mut out = original.clone();
                for e in patch {
                    if e.is_object() || e.is_array() {
                        return Err(err(
                            path,
                            "list merges as a set of scalars but the patch holds an object or list",
                        ));
                    }
                    if !out.contains(e) {
                        out.push(e.clone());
                    }
                }
                Ok(normalize_order(
                    out,
                    order.unwrap_or(patch),
                    &original,
                    strategy,
                ))
            }
            ListStrategy::MergeByKey(key) => {
                let mut out = original.clone();
                for e in patch {
                    let Value::Object(pm) = e else {
                        return Err(err(
                            path,
                            format!("list merges by {key:?} but an element is {}", type_name(e)),
                        ));
                    };
                    let Some(kv) = pm.get(key) else {
                        return Err(err(
                            path,
                            format!("element {e} does not contain declared merge key {key:?}"),
                        ));
                    };
                    let pos = out.iter().position(|o| o.get(key) == Some(kv));
                    if pm.get(PATCH).and_then(Value::as_str) == Some("delete") {
                        out.retain(|o| o.get(key) != Some(kv));
                        continue;
                    }
                    match pos {
                        Some(i) => {
                            let existing = out[i].as_object().cloned();
                            match self.merge_map(existing, pm, path)? {
                                Some(m) => out[i] = Value::Object(m),
                                None => {
                                    out.remove(i);
                                }
                            }
                        }
                        None => {
                            if let Some(m) = self.merge_map(None, pm, path)? {
                                out.push(Value::Object(m));
                            }
                        }
                    }
                }
                Ok(normalize_order(
                    out,
                    order.unwrap_or(patch),
                    &original,
                    strategy,
                ))
            }
            ListStrategy::Replace => unreachable!("handled above"),
        }
    }
}

/// Upstream `normalizeElementOrder` + `mergeSortedSlice`: elements named in `order` come in
/// that order, the others keep their live order, and a live-only element is placed before a
/// patched element only when both are in the live list and it came first there (so a new
/// element without `$setElementOrder` lands in front, exactly like kube-apiserver).
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    live: &[Value],
    strategy: ListStrategy,
) -> Vec<Value> {
    let same = |a: &Value, b: &Value| match strategy {
        ListStrategy::MergeByKey(key) => a.get(key).is_some() && a.get(key) == b.get(key),
        _ => a == b,
    };
    let index = |list: &[Value], item: &Value| list.iter().position(|x| same(x, item));
    let (mut patched, mut live_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|m| index(order, m).is_some());
    patched.sort_by_key(|m| index(order, m));
    live_only.sort_by_key(|m| index(live, m).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patched.len() + live_only.len());
    let (mut left, mut right) = (
        live_only.into_iter().peekable(),
        patched.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((index(live, l), index(live, r)), (Some(li), Some(ri)) if li < ri)
            }
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

/// Server-side apply's merge without field ownership: creates the object from `applied` when
/// `live` is absent, otherwise merges `applied` into `live` with the kind's list semantics
/// ([`crate::apply::merge`]). Errors come back as [`PatchError::Strategic`] at the root.
pub fn apply(live: Option<&Value>, applied: &Value, kind: &str) -> Result<Value, PatchError> {
    if !applied.is_object() {
        return Err(PatchError::NotAnObject(type_name(applied)));
    }
    crate::apply::merge(kind, live, applied).map_err(|e| err(&[], e.to_string()))
}
