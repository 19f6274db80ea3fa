//! Name hashes of the workload controllers: the Deployment `pod-template-hash` (ReplicaSet names
//! `<deployment>-<hash>`) and the StatefulSet ControllerRevision hash (`<statefulset>-<hash>`). Upstream hashes
//! with 32-bit FNV-1a, appends the collision count as four little-endian bytes, prints the sum in decimal and
//! maps each digit through the "safe" alphabet `bcdfghjklmnpqrstvwxz2456789`. Upstream feeds the hasher Go's
//! `spew` dump of the struct, which has no equivalent outside Go, so berth feeds it the canonical JSON of the
//! object (keys sorted, no whitespace): names keep upstream's shape and alphabet and are stable across restarts,
//! but are not byte-identical to a kube-controller-manager's. FNV-1a is five lines, written here because the
//! `fnv` crate only offers the 64-bit variant. Pure functions, no IO.

use serde_json::Value;

/// The alphabet upstream's `rand.SafeEncodeString` maps bytes through (no vowels, no confusable characters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv32a(u32);

impl Fnv32a {
    pub(crate) fn new() -> Self {
        Fnv32a(0x811c_9dc5)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    pub(crate) fn sum32(self) -> u32 {
        self.0
    }
}

/// Upstream's `rand.SafeEncodeString`: every byte replaced by `SAFE_ALPHABET[byte % 27]`.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// Canonical JSON: object keys sorted at every level, no insignificant whitespace.
pub(crate) fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

fn hash_with_collisions(data: &[u8], collision_count: Option<i32>) -> String {
    let mut h = Fnv32a::new();
    h.write(data);
    if let Some(c) = collision_count {
        // Upstream writes uint32(*collisionCount) little-endian.
        h.write(&(c as u32).to_le_bytes());
    }
    safe_encode(&h.sum32().to_string())
}

/// The `pod-template-hash` of a Deployment's pod template (a `PodTemplateSpec` as JSON) and its
/// `status.collisionCount`.
pub fn pod_template_hash(template: &Value, collision_count: Option<i32>) -> String {
    hash_with_collisions(canonical_json(template).as_bytes(), collision_count)
}

/// The hash part of a StatefulSet ControllerRevision name, from the revision's `data` and the set's
/// `status.collisionCount`.
pub fn controller_revision_hash(data: &Value, collision_count: Option<i32>) -> String {
    hash_with_collisions(canonical_json(data).as_bytes(), collision_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        // Go's hash/fnv golden32a table plus the FNV reference's "foobar".
        for (input, want) in [
            ("", 0x811c9dc5u32),
            ("a", 0xe40c292c),
            ("ab", 0x4d2505ca),
            ("abc", 0x1a47e90b),
            ("foobar", 0xbf9cf968),
        ] {
            let mut h = Fnv32a::new();
            h.write(input.as_bytes());
            assert_eq!(h.sum32(), want, "fnv32a({input:?})");
        }
    }

    #[test]
    fn safe_encoding_maps_decimal_digits_like_upstream() {
        // '0' is byte 48, 48 % 27 = 21 -> '4'; '6' is 54 % 27 = 0 -> 'b'.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert_eq!(safe_encode(""), "");
    }

    #[test]
    fn template_hash_uses_only_the_safe_alphabet_and_ignores_key_order() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let b = json!({"spec": {"containers": [{"image": "x", "name": "c"}]}, "metadata": {"labels": {"app": "web"}}});
        let ha = pod_template_hash(&a, None);
        assert_eq!(ha, pod_template_hash(&b, None));
        assert!(!ha.is_empty() && ha.len() <= 10);
        assert!(ha.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{ha}");
        let changed = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "y"}]}});
        assert_ne!(ha, pod_template_hash(&changed, None));
    }

    #[test]
    fn collision_count_changes_the_hash_and_zero_differs_from_absent() {
        let t = json!({"spec": {"containers": [{"name": "c", "image": "x"}]}});
        let none = pod_template_hash(&t, None);
        let zero = pod_template_hash(&t, Some(0));
        let one = pod_template_hash(&t, Some(1));
        assert_ne!(none, zero);
        assert_ne!(zero, one);
        // The collision count is hashed as 4 little-endian bytes after the object, as upstream.
        let mut h = Fnv32a::new();
        h.write(canonical_json(&t).as_bytes());
        h.write(&[1, 0, 0, 0]);
        assert_eq!(one, safe_encode(&h.sum32().to_string()));
    }
}
