//! End-to-end tests of `berth image parse` and `berth auth match`: they run the built binary with fixture files
//! written by the test, and assert on stdout, stderr and the exit status.

use std::path::Path;
use std::process::{Command, Output};

fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.args(args)
        .env_remove("DOCKER_CONFIG")
        .env("BERTH_LOG", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run berth")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard base64 with padding (the berth crate does not depend on a base64 crate; fixtures need only this).
fn b64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn fixture_base64_is_standard() {
    assert_eq!(b64("foo:bar"), "Zm9vOmJhcg==");
    assert_eq!(b64("ping:pong"), "cGluZzpwb25n");
    assert_eq!(b64("ab"), "YWI=");
}

/// A `kubernetes.io/dockerconfigjson` Secret manifest as `kubectl get secret -o yaml` prints it.
fn write_secret(dir: &Path, name: &str, auths: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        b64(&format!(r#"{{"auths":{auths}}}"#))
    );
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[test]
fn image_parse_json_has_exact_fields() {
    let o = berth(&["image", "parse", "nginx", "-o", "json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "domain": "docker.io", "path": "library/nginx", "tag": null, "digest": null,
            "name": "docker.io/library/nginx", "familiar": "nginx", "normalized": "docker.io/library/nginx:latest"
        })
    );
}

#[test]
fn image_parse_keeps_port_tag_and_digest() {
    let d = format!("sha256:{}", "a".repeat(64));
    let r = format!("reg.example.com:5000/team/app:1.2@{d}");
    let o = berth(&["image", "parse", &r, "-o", "json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["domain"], "reg.example.com:5000");
    assert_eq!(v["path"], "team/app");
    assert_eq!(v["tag"], "1.2");
    assert_eq!(v["digest"], d.as_str());
    assert_eq!(v["familiar"], r.as_str());
    // ParseDockerRef: the digest wins over the tag.
    assert_eq!(
        v["normalized"],
        format!("reg.example.com:5000/team/app@{d}")
    );
}

#[test]
fn image_parse_text_output() {
    let o = berth(&["image", "parse", "library/busybox:1.36"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("name:       docker.io/library/busybox\n"),
        "{out}"
    );
    assert!(out.contains("familiar:   busybox:1.36\n"), "{out}");
    assert!(out.contains("digest:     <none>\n"), "{out}");
}

#[test]
fn image_parse_invalid_prints_upstream_error_and_exits_1() {
    let cases = [
        ("nginx::1", "invalid reference format"),
        (
            "docker.io/Foo/bar",
            "invalid reference format: repository name (Foo/bar) must be lowercase",
        ),
        (
            &"a".repeat(64),
            "cannot specify 64-byte hexadecimal strings",
        ),
        ("app@sha256:abc", "invalid reference format"),
        (
            &format!("app@sha256:{}", "a".repeat(40)),
            "invalid checksum digest length",
        ),
    ];
    for (input, want) in cases {
        let o = berth(&["image", "parse", input], &[]);
        assert_eq!(o.status.code(), Some(1), "{input}");
        assert!(stderr(&o).contains(want), "{input}: {}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn auth_match_lists_secrets_in_order_without_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_secret(
        dir.path(),
        "regcred",
        &format!(
            r#"{{"reg.example.com":{{"auth":"{}"}}}}"#,
            b64("robot:pa55word")
        ),
    );
    let b = write_secret(
        dir.path(),
        "team",
        r#"{"https://reg.example.com/v1/team":{"username":"alice","password":"t0ken"}}"#,
    );
    let o = berth(
        &[
            "auth",
            "match",
            "reg.example.com/team/app:1",
            "--secret",
            &a,
            "--secret",
            &b,
            "-o",
            "json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("pa55word")
            && !out.contains("t0ken")
            && !out.contains(&b64("robot:pa55word")),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let creds = v["credentials"].as_array().unwrap();
    // Reverse-sorted index: the longer key "reg.example.com/team" is tried before "reg.example.com".
    let got: Vec<(&str, &str, &str)> = creds
        .iter()
        .map(|c| {
            (
                c["secret"].as_str().unwrap(),
                c["key"].as_str().unwrap(),
                c["username"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("team", "https://reg.example.com/v1/team", "alice"),
            ("regcred", "reg.example.com", "robot")
        ]
    );
    assert_eq!(creds[0]["normalizedKey"], "reg.example.com/team");
}

#[test]
fn auth_match_text_names_secret_key_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_secret(
        dir.path(),
        "hub",
        r#"{"https://index.docker.io/v1/":{"username":"bob","password":"x"}}"#,
    );
    let o = berth(&["auth", "match", "nginx", "--secret", &a], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("image nginx is looked up as docker.io/library/nginx"),
        "{out}"
    );
    assert!(
        out.contains(r#"1. secret default/hub: key "https://index.docker.io/v1/" (normalized index.docker.io), Docker Hub default-key fallback: user "bob""#),
        "{out}"
    );
}

#[test]
fn auth_match_without_match_explains_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_secret(
        dir.path(),
        "regcred",
        r#"{"reg.example.com:5000":{"username":"u","password":"p"},"*.example.com":{"username":"w","password":"p"}}"#,
    );
    let o = berth(
        &["auth", "match", "a.b.example.com/app", "--secret", &a],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("no credential matches a.b.example.com/app"),
        "{out}"
    );
    assert!(
        out.contains(
            r#"key "reg.example.com:5000": key has port 5000 but the image registry has no port"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"key "*.example.com": key host "*.example.com" has 3 labels"#),
        "{out}"
    );
}

#[test]
fn auth_match_reports_malformed_secret_by_name_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "kind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            b64(r#"{"auths": nope-secret}"#)
        ),
    )
    .unwrap();
    let o = berth(
        &["auth", "match", "nginx", "--secret", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(
            r#"secret "regcred": .data[".dockerconfigjson"]: invalid JSON at line 1 column 12"#
        ),
        "{err}"
    );
    assert!(!err.contains("nope-secret"), "{err}");
}

#[test]
fn auth_match_docker_config_default_path_comes_after_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("dockercfg");
    std::fs::create_dir(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.json"),
        format!(
            r#"{{"auths":{{"reg.example.com":{{"auth":"{}"}}}}}}"#,
            b64("node-user:np")
        ),
    )
    .unwrap();
    let a = write_secret(
        dir.path(),
        "pod",
        r#"{"reg.example.com":{"username":"pod-user","password":"pp"}}"#,
    );
    let o = berth(
        &[
            "auth",
            "match",
            "reg.example.com/app",
            "--secret",
            &a,
            "--docker-config",
            "-o",
            "json",
        ],
        &[("DOCKER_CONFIG", cfg_dir.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let users: Vec<&str> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["pod-user", "node-user"]);
    assert_eq!(v["credentials"][1]["source"], "dockerConfig");
    assert!(
        v["credentials"][1]["file"]
            .as_str()
            .unwrap()
            .ends_with("dockercfg/config.json")
    );
}

#[test]
fn auth_match_ignored_secret_type_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opaque.yaml");
    std::fs::write(
        &path,
        "kind: Secret\nmetadata: {name: plain}\ntype: Opaque\nstringData: {token: x}\n",
    )
    .unwrap();
    let o = berth(
        &["auth", "match", "nginx", "--secret", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(r#"note: secret plain: not used: type is "Opaque""#),
        "{out}"
    );
}
