//! `berth pull`, `berth images`, `berth rmi` as a user runs them, against the real docker-registry
//! (TLS + htpasswd) with a kubectl-style dockerconfigjson Secret file.

use std::process::Command;

use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "cli-canary-5d1e";

fn berth(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("run berth")
}

fn secret_yaml(host: &str, user: &str, password: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = format!(
        r#"{{"auths":{{"{host}":{{"username":"{user}","password":"{password}","auth":"{}"}}}}}}"#,
        b64(&format!("{user}:{password}"))
    );
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\n  namespace: default\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        b64(&config)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_a_secret_file_prints_kubelet_style_and_lists_the_image() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("hello.txt", "hello from berth\n")], Compression::Gzip)
        .layer(vec![Entry::file("bin/app", vec![7u8; 4096]).mode(0o755)], Compression::Zstd)
        .build()
        .unwrap();
    img.push(&registry, "team/app:v1", Some(&Credentials::new("alice", PASSWORD)))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let good = dir.path().join("regcred.yaml");
    std::fs::write(&good, secret_yaml(&registry.host_port(), "alice", PASSWORD)).unwrap();
    let root = dir.path().join("root");
    let image = format!("{}/team/app:v1", registry.host_port());

    let out = berth(
        &root,
        &["pull", &image, "--secret", good.to_str().unwrap(), "--ca-file", ca.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull failed: {stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("Successfully pulled image {image:?} in ")),
        "{stdout}"
    );
    assert!(stdout.contains("Image size: "), "{stdout}");
    assert!(stdout.contains(&format!("Digest: {}", img.digest())), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let out = berth(&root, &["images", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], image);
    assert_eq!(list[0]["digest"], img.digest());

    let out = berth(&root, &["rmi", &image]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("Untagged: {image}")), "{stdout}");
    assert!(stdout.contains(img.digest()), "blobs collected: {stdout}");
    let out = berth(&root, &["images", "-o", "json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_without_trust_names_the_host_and_the_unknown_authority() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/team/app:v1", registry.host_port());
    let out = berth(&dir.path().join("root"), &["pull", &image]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("x509: certificate signed by unknown authority"), "{stderr}");
    assert!(stderr.contains(&registry.host_port()), "names host:port: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_json_output_streams_progress_lines_then_the_result() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("a", "a")], Compression::Gzip)
        .build()
        .unwrap();
    img.push(&registry, "lib/a:1", None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let image = format!("{}/lib/a:1", registry.host_port());
    let out = berth(
        &dir.path().join("root"),
        &["pull", &image, "--ca-file", ca.to_str().unwrap(), "-o", "json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "resolved");
    assert!(lines.iter().any(|l| l["event"] == "done"));
    let last = lines.last().unwrap();
    assert_eq!(last["digest"], img.digest());
    assert_eq!(last["credential"], "anonymous");
}
