//! `berth pull`, `berth images`, `berth rmi` as a user runs them, against the real docker-registry
//! (TLS + htpasswd) with a kubectl-style dockerconfigjson Secret file, `--creds` (argument and
//! standard input) and a Docker config whose credential helper `berth auth match` and `berth pull`
//! must both use.

use std::io::Write;
use std::process::{Command, Stdio};

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

/// `berth ARGS` with `input` on standard input and extra environment.
fn berth_stdin(
    args: &[&str],
    input: &str,
    env: &[(&str, std::ffi::OsString)],
) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn auth_registry(pki: &TestPki) -> (Registry, testkit::image::Image) {
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("x", "x")], Compression::Gzip)
        .build()
        .unwrap();
    img.push(
        &registry,
        "team/app:v1",
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
    (registry, img)
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
        .layer(
            vec![Entry::file("hello.txt", "hello from berth\n")],
            Compression::Gzip,
        )
        .layer(
            vec![Entry::file("bin/app", vec![7u8; 4096]).mode(0o755)],
            Compression::Zstd,
        )
        .build()
        .unwrap();
    img.push(
        &registry,
        "team/app:v1",
        Some(&Credentials::new("alice", PASSWORD)),
    )
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
        &[
            "pull",
            &image,
            "--secret",
            good.to_str().unwrap(),
            "--ca-file",
            ca.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull failed: {stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("Successfully pulled image {image:?} in ")),
        "{stdout}"
    );
    assert!(stdout.contains("Image size: "), "{stdout}");
    assert!(
        stdout.contains(&format!("Digest: {}", img.digest())),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let out = berth(&root, &["images", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], image);
    assert_eq!(list[0]["digest"], img.digest());
    // kubelet 1.28+: `in <pull> (<total> including waiting). Image size: <N> bytes.`
    let first = stdout.lines().next().unwrap();
    let rest = first
        .strip_prefix(&format!("Successfully pulled image {image:?} in "))
        .unwrap();
    let (pull_time, rest) = rest.split_once(" (").unwrap();
    let (total, rest) = rest
        .split_once(" including waiting). Image size: ")
        .unwrap();
    assert_eq!(rest, format!("{} bytes.", list[0]["size"]), "{first}");
    for d in [pull_time, total] {
        assert!(
            d.ends_with("ms") || d.ends_with('s') && d[..d.len() - 1].parse::<f64>().is_ok(),
            "Go duration: {d}"
        );
        if let Some((_, frac)) = d.trim_end_matches('s').split_once('.') {
            assert!(frac.len() <= 3, "truncated to ms: {d}");
        }
    }

    let out = berth(&root, &["rmi", &image]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(
        stderr.contains("x509: certificate signed by unknown authority"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&registry.host_port()),
        "names host:port: {stderr}"
    );
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
        &[
            "pull",
            &image,
            "--ca-file",
            ca.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_on_the_command_line_warn_once_and_creds_user_reads_the_password_from_stdin() {
    let pki = TestPki::new().unwrap();
    let (registry, img) = auth_registry(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let image = format!("{}/team/app:v1", registry.host_port());
    let ca = ca.to_str().unwrap();

    let creds = format!("alice:{PASSWORD}");
    let out = berth(
        &dir.path().join("r1"),
        &["pull", &image, "--creds", &creds, "--ca-file", ca],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stderr.matches("visible to other processes").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("--creds USER"), "{stderr}");
    assert!(
        stdout.contains(&format!("Digest: {}", img.digest())),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let r2 = dir.path().join("r2");
    let out = berth_stdin(
        &[
            "pull",
            &image,
            "--creds",
            "alice",
            "--ca-file",
            ca,
            "-o",
            "json",
            "--root",
            r2.to_str().unwrap(),
        ],
        &format!("{PASSWORD}\n"),
        &[],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("visible to other processes"), "{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["credential"], "--creds user \"alice\"");
    assert!(last["secondsIncludingWaiting"].as_f64().unwrap() >= last["seconds"].as_f64().unwrap());

    let wrong = "wrong-canary-77aa";
    let r3 = dir.path().join("r3");
    let out = berth_stdin(
        &[
            "pull",
            &image,
            "--creds",
            "alice",
            "--ca-file",
            ca,
            "--root",
            r3.to_str().unwrap(),
        ],
        &format!("{wrong}\n"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains(wrong) && !String::from_utf8_lossy(&out.stdout).contains(wrong));

    let out = berth(&dir.path().join("r4"), &["pull", &image, "--creds", ":x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("user name is empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_uses_the_docker_config_helper_that_auth_match_lists() {
    use std::os::unix::fs::PermissionsExt;
    let pki = TestPki::new().unwrap();
    let (registry, img) = auth_registry(&pki).await;
    let host = registry.host_port();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread url\n[ \"$url\" = {host} ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"{PASSWORD}\"}}' \"$url\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"credHelpers":{{"{host}":"berthtest"}}}}"#),
    )
    .unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.clone())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let env = [("PATH", path)];
    let image = format!("{host}/team/app:v1");
    let root = dir.path().join("root");

    let out = berth_stdin(
        &[
            "auth",
            "match",
            &image,
            "--docker-config",
            config.to_str().unwrap(),
            "-o",
            "json",
        ],
        "",
        &env,
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        report["credentials"][0]["source"], "credentialHelper",
        "{report:#}"
    );
    assert_eq!(report["credentials"][0]["helper"], "berthtest");

    let out = berth_stdin(
        &[
            "pull",
            &image,
            "--docker-config",
            config.to_str().unwrap(),
            "--ca-file",
            ca.to_str().unwrap(),
            "-o",
            "json",
            "--root",
            root.to_str().unwrap(),
        ],
        "",
        &env,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["digest"], img.digest());
    assert!(
        last["credential"]
            .as_str()
            .unwrap()
            .contains("credential helper docker-credential-berthtest"),
        "{last}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
}
