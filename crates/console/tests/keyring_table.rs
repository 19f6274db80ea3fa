//! The shared matching table (`testdata/keyring-cases.json`) run against berth's Rust crates: kubelet's keyring
//! (`credentials`) and distribution/reference normalisation (`oci`). The console's JavaScript port runs the same
//! table (`e2e/keyring.test.mjs`, started by `browser.rs`), so a row that holds here and there proves both agree.

use std::collections::BTreeMap;

use credentials::keyring::{is_default_registry_match, normalize_key, urls_match};
use credentials::{Origin, PullKeyring, PullSecret};
use serde_json::Value;

fn table() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/keyring-cases.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows<'a>(t: &'a Value, name: &str) -> &'a Vec<Value> {
    t[name]
        .as_array()
        .unwrap_or_else(|| panic!("table has no {name}"))
}

#[test]
fn urls_match_rows_hold_in_the_credentials_crate() {
    let t = table();
    for row in rows(&t, "urlsMatch") {
        let (glob, target, want) = (
            row[0].as_str().unwrap(),
            row[1].as_str().unwrap(),
            row[2].as_bool().unwrap(),
        );
        assert_eq!(urls_match(glob, target), want, "{glob} vs {target}");
    }
}

#[test]
fn normalize_key_rows_hold_in_the_credentials_crate() {
    let t = table();
    for row in rows(&t, "normalizeKey") {
        let key = row[0].as_str().unwrap();
        assert_eq!(normalize_key(key).ok().as_deref(), row[1].as_str(), "{key}");
    }
}

#[test]
fn default_registry_rows_hold_in_the_credentials_crate() {
    let t = table();
    for row in rows(&t, "defaultRegistryMatch") {
        let image = row[0].as_str().unwrap();
        assert_eq!(
            is_default_registry_match(image),
            row[1].as_bool().unwrap(),
            "{image:?}"
        );
    }
}

#[test]
fn lookup_rows_hold_in_the_credentials_crate() {
    let t = table();
    for case in rows(&t, "lookup") {
        let secrets: Vec<PullSecret> = case["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let auths: serde_json::Map<String, Value> = s["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| {
                        (
                            k.as_str().unwrap().to_owned(),
                            serde_json::json!({"username": "u", "password": "p"}),
                        )
                    })
                    .collect();
                let mut data = BTreeMap::new();
                data.insert(
                    ".dockerconfigjson".to_owned(),
                    serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap(),
                );
                PullSecret::from_parts(
                    Some("default"),
                    s["name"].as_str().unwrap(),
                    "kubernetes.io/dockerconfigjson",
                    data,
                )
            })
            .collect();
        let image = case["image"].as_str().unwrap();
        let keyring = PullKeyring::from_secrets(&secrets).unwrap();
        let got: Vec<(String, String)> = keyring
            .lookup(image)
            .unwrap()
            .credentials
            .into_iter()
            .map(|c| {
                let Origin::Secret { name, .. } = c.origin else {
                    panic!("not a secret origin")
                };
                (name, c.key)
            })
            .collect();
        let want: Vec<(String, String)> = case["want"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w[0].as_str().unwrap().to_owned(),
                    w[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want, "{image} with {}", case["secrets"]);
    }
}

#[test]
fn reference_rows_hold_in_the_oci_crate() {
    let t = table();
    for row in rows(&t, "references") {
        let input = row[0].as_str().unwrap();
        let got = oci::Reference::parse_normalized(input)
            .ok()
            .map(|r| r.name());
        assert_eq!(got.as_deref(), row[1].as_str(), "{input:?}");
    }
}
