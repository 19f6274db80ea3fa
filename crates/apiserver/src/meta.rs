//! Server-owned metadata semantics (upstream `ObjectMeta` rules as kube-apiserver applies them): uid,
//! creationTimestamp, resourceVersion injection from the store revision, generation bumps on spec changes,
//! generateName suffixes, and the fields a client may not set. Pure functions over `serde_json::Value`; this
//! module must never touch storage or HTTP.

use rand::Rng;
use serde_json::{Map, Value, json};

/// Characters upstream uses for generateName suffixes (`utilrand.String`: no vowels, no confusables).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Upstream `maxGeneratedNameLength = 63 - randomLength`.
const MAX_GENERATED_PREFIX: usize = 58;

/// RFC 3339 UTC with second precision, as upstream `metav1.Time` serializes.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `base + 5 random characters`, with `base` cut so the result fits 63 characters.
pub fn generate_name(base: &str) -> String {
    let base = if base.len() > MAX_GENERATED_PREFIX {
        &base[..MAX_GENERATED_PREFIX]
    } else {
        base
    };
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// `metadata` of an object, created if absent.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or("")
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    let m = meta_mut(obj);
    if finalizers.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(finalizers));
    }
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Sets `metadata.resourceVersion` to the store revision.
pub fn set_resource_version(obj: &mut Value, revision: u64) {
    meta_mut(obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

/// Removes fields that are never persisted inside the stored value (the revision is the store's own).
/// `managedFields` are persisted: the handlers compute them on every write.
pub fn strip_for_storage(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
}

/// Drops the gogo zero values protobuf bodies carry and client-set server fields before a create.
pub fn prepare_create(obj: &mut Value, api_version: &str, kind: &str) {
    let o = obj.as_object_mut().expect("object");
    o.insert("apiVersion".into(), json!(api_version));
    o.insert("kind".into(), json!(kind));
    let m = meta_mut(obj);
    for f in [
        "uid",
        "resourceVersion",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    ] {
        m.remove(f);
    }
    for f in ["name", "generateName", "namespace"] {
        if m.get(f)
            .is_some_and(|v| v.is_null() || v.as_str() == Some(""))
        {
            m.remove(f);
        }
    }
    for f in ["labels", "annotations"] {
        if m.get(f)
            .is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
        {
            m.remove(f);
        }
    }
    if m.get("finalizers")
        .is_some_and(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
    {
        m.remove("finalizers");
    }
    if m.get("ownerReferences")
        .is_some_and(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
    {
        m.remove("ownerReferences");
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    m.insert("generation".into(), json!(1));
}

/// Carries the server-owned metadata of `old` into an update `new`, and bumps `generation` when the spec (or,
/// for kinds without a spec, anything outside metadata and status) changed.
pub fn prepare_update(new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let spec_changed = spec_of(new) != spec_of(old);
    let m = meta_mut(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
    ] {
        match old_meta.get(f) {
            Some(v) => {
                m.insert(f.into(), v.clone());
            }
            None => {
                m.remove(f);
            }
        }
    }
    m.remove("managedFields");
    m.remove("selfLink");
    let generation = old_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    m.insert(
        "generation".into(),
        json!(if spec_changed {
            generation + 1
        } else {
            generation
        }),
    );
}

fn spec_of(obj: &Value) -> Value {
    match obj.get("spec") {
        Some(s) => s.clone(),
        None => {
            let mut o = obj.clone();
            if let Some(map) = o.as_object_mut() {
                map.remove("metadata");
                map.remove("status");
            }
            o
        }
    }
}

/// The owner uids an object lists in `metadata.ownerReferences`, with their `blockOwnerDeletion` flag.
pub fn owner_refs(obj: &Value) -> Vec<(String, bool)> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    let uid = r.get("uid")?.as_str()?.to_string();
                    Some((
                        uid,
                        r.get("blockOwnerDeletion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_have_five_char_suffix_and_fit_63() {
        let n = generate_name("gen-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("gen-"));
        assert!(n[4..].bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        assert_eq!(generate_name(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn generation_bumps_only_on_spec_change() {
        let mut old = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
        prepare_create(&mut old, "apps/v1", "Deployment");
        let mut same =
            json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        prepare_update(&mut same, &old);
        assert_eq!(same["metadata"]["generation"], 1);
        assert_eq!(same["metadata"]["uid"], old["metadata"]["uid"]);
        let mut changed = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        prepare_update(&mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 2);
    }

    #[test]
    fn create_drops_protobuf_zero_values_and_client_server_fields() {
        let mut o = json!({"metadata": {"name": "a", "namespace": "", "generateName": "", "uid": "evil",
            "resourceVersion": "9", "labels": {}, "creationTimestamp": null}});
        prepare_create(&mut o, "v1", "Secret");
        let m = o["metadata"].as_object().unwrap();
        assert!(
            !m.contains_key("namespace")
                && !m.contains_key("generateName")
                && !m.contains_key("labels")
        );
        assert_ne!(m["uid"], "evil");
        assert!(!m.contains_key("resourceVersion"));
        assert!(m["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    }
}
