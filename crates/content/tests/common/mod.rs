//! Shared fixtures for the content store integration tests: deterministic data, descriptors,
//! and OCI manifest/index documents built by code.

#![allow(dead_code)]

use content::{Acquired, Algorithm, Descriptor, Digest, Digester, Store};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Deterministic pseudo-random bytes; `seed` makes distinct blobs.
pub fn data(n: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn digest_of(bytes: &[u8]) -> Digest {
    let mut d = Digester::new(Algorithm::Sha256);
    d.update(bytes);
    d.finish()
}

pub fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, digest_of(bytes), bytes.len() as u64)
}

/// Write and commit `bytes` as a blob, returning its descriptor.
pub fn put(store: &Store, media_type: &str, bytes: &[u8]) -> Descriptor {
    let d = desc(media_type, bytes);
    match store.acquire("test", &d, None).unwrap() {
        Acquired::Writer(mut w) => {
            w.write_all(bytes).unwrap();
            w.commit().unwrap();
        }
        Acquired::Exists(_) => {}
    }
    d
}

fn desc_json(d: &Descriptor) -> String {
    format!(
        r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
        d.media_type, d.digest, d.size
    )
}

pub fn manifest_json(config: &Descriptor, layers: &[&Descriptor]) -> Vec<u8> {
    let layers: Vec<String> = layers.iter().map(|l| desc_json(l)).collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{},"layers":[{}]}}"#,
        desc_json(config),
        layers.join(",")
    )
    .into_bytes()
}

pub fn index_json(manifests: &[(&Descriptor, &str)]) -> Vec<u8> {
    let entries: Vec<String> = manifests
        .iter()
        .map(|(d, arch)| {
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                d.media_type, d.digest, d.size
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

/// A committed single-platform image: (manifest, config, layers).
pub fn image(store: &Store, seed: u8) -> (Descriptor, Descriptor, Vec<Descriptor>) {
    let config = put(store, CONFIG, format!(r#"{{"seed":{seed}}}"#).as_bytes());
    let l1 = put(store, LAYER, &data(70_000, seed));
    let l2 = put(store, LAYER, &data(5_000, seed.wrapping_add(100)));
    let m = put(store, MANIFEST, &manifest_json(&config, &[&l1, &l2]));
    (m, config, vec![l1, l2])
}
