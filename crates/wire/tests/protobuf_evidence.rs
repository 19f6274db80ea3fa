//! Decodes every protobuf body kubectl 1.32 was captured sending (copied from
//! shared/reference/kubectl-evidence) and compares it with its recorded decode.

use std::path::Path;

fn evidence_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/evidence"))
}

#[test]
fn every_captured_kubectl_body_decodes_to_its_recorded_json() {
    let mut checked = 0;
    for entry in std::fs::read_dir(evidence_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("pb") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("pb.decoded.json")).unwrap())
                .unwrap();
        let decoded =
            wire::protobuf::decode(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // serde_json::Value equality ignores object key order.
        assert_eq!(decoded, expected, "{}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 3, "expected the three captured bodies");
}

#[test]
fn secret_body_carries_the_docker_config_verbatim() {
    let body = std::fs::read(evidence_dir().join("create-secret-docker-registry.pb")).unwrap();
    let secret = wire::protobuf::decode(&body).unwrap();
    let data = secret["data"][".dockerconfigjson"].as_str().unwrap();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(cfg["auths"]["www.3rdregistry.com"]["auth"], "dTpw");
}

#[test]
fn every_truncation_of_a_captured_body_fails_cleanly() {
    let body = std::fs::read(evidence_dir().join("create-deployment-x.pb")).unwrap();
    for cut in 0..body.len() {
        if let Err(e) = wire::protobuf::decode(&body[..cut]) {
            assert!(e.to_string().contains("application/json"), "cut {cut}: {e}");
        }
    }
}

#[test]
fn codec_routes_protobuf_content_type_to_the_decoder() {
    let body = std::fs::read(evidence_dir().join("create-namespace.pb")).unwrap();
    let ns = wire::codec::decode_body(
        "application/vnd.kubernetes.protobuf",
        &body,
        wire::codec::Limits::default(),
    )
    .unwrap();
    assert_eq!(ns["metadata"]["name"], "team1");
    let err = wire::codec::decode_body("application/json", &body, wire::codec::Limits::default())
        .unwrap_err();
    assert!(
        matches!(err, wire::codec::CodecError::Json { line: 1, .. }),
        "{err}"
    );
}
