//! kubectl end-to-end tests of Secrets against `berth server`: typed `create secret docker-registry` (protobuf
//! body), listing with the server-side Table, `-o yaml`, `describe` (sizes only), bad `.dockerconfigjson`, the
//! viewer and invalid-token identities, encryption at rest (the password never reaches the server log or the
//! SQLite files) and key rotation.

#[path = "kubectl_harness.rs"]
mod harness;

use harness::Server;

const PASSWORD: &str = "Canary-Pa55word-7f3a9";

fn create_registry_secret(s: &Server, ns: Option<&str>) -> harness::Run {
    let mut args = vec![
        "create",
        "secret",
        "docker-registry",
        "myregistrykey",
        "--docker-server=www.3rdregistry.com",
        "--docker-username=janedoe",
        "--docker-password",
        PASSWORD,
        "--docker-email=jane@example.com",
    ];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    s.kubectl(&args)
}

#[test]
fn docker_registry_secret_round_trip_never_leaks_the_password() {
    let s = Server::start();
    assert_eq!(
        create_registry_secret(&s, None).ok().trim(),
        "secret/myregistrykey created"
    );
    assert_eq!(
        s.kubectl(&["create", "namespace", "team1"]).ok().trim(),
        "namespace/team1 created"
    );
    assert_eq!(
        create_registry_secret(&s, Some("team1")).ok().trim(),
        "secret/myregistrykey created"
    );

    let dup = create_registry_secret(&s, None);
    assert!(
        dup.err()
            .contains("error: failed to create secret secrets \"myregistrykey\" already exists"),
        "{}",
        dup.stderr
    );

    let list = s.kubectl(&["get", "secrets"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"]);
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("myregistrykey"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..3],
        ["myregistrykey", "kubernetes.io/dockerconfigjson", "1"]
    );

    let all = s.kubectl(&["get", "secrets", "-A"]);
    assert!(
        all.ok()
            .lines()
            .any(|l| l.starts_with("team1") && l.contains("myregistrykey")),
        "{}",
        all.stdout
    );

    let yaml = s.kubectl(&["get", "secret", "myregistrykey", "-o", "yaml"]);
    let out = yaml.ok();
    assert!(
        out.contains("type: kubernetes.io/dockerconfigjson"),
        "{out}"
    );
    assert!(out.contains(".dockerconfigjson: "), "{out}");
    assert!(
        out.contains("uid: ")
            && out.contains("resourceVersion: ")
            && out.contains("creationTimestamp: "),
        "{out}"
    );

    let describe = s.kubectl(&["describe", "secret", "myregistrykey"]);
    let d = describe.ok();
    assert!(d.contains("Type:  kubernetes.io/dockerconfigjson"), "{d}");
    assert!(
        d.lines()
            .any(|l| l.starts_with(".dockerconfigjson:") && l.trim_end().ends_with("bytes")),
        "{d}"
    );
    assert!(!d.contains(PASSWORD));

    // Encryption at rest: neither the plaintext password nor its base64 forms are in the database files.
    let db = s.database_bytes();
    assert!(!db.is_empty());
    let needle = PASSWORD.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "password found in the SQLite files"
    );
    assert!(
        !db.windows(10).any(|w| w == b"3rdregistr"),
        "dockerconfigjson plaintext found in the SQLite files"
    );
    let logs = s.logs();
    assert!(!logs.contains(PASSWORD), "password found in the server log");
    assert!(
        logs.contains("created"),
        "server log has no request records:\n{logs}"
    );
}

#[test]
fn dockerconfigjson_that_is_not_json_is_rejected_and_not_stored() {
    let s = Server::start();
    let bad = s.kubectl(&[
        "create",
        "secret",
        "generic",
        "bad",
        "--type=kubernetes.io/dockerconfigjson",
        "--from-literal=.dockerconfigjson=nope",
    ]);
    let e = bad.err();
    assert!(
        e.contains("Secret \"bad\" is invalid: data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\""),
        "{e}"
    );
    assert!(!e.contains("nope"));
    let get = s.kubectl(&["get", "secret", "bad"]);
    assert!(
        get.err()
            .contains("Error from server (NotFound): secrets \"bad\" not found"),
        "{}",
        get.stderr
    );
}

#[test]
fn viewer_may_read_but_not_write_and_bad_tokens_are_unauthorized() {
    let s = Server::start();
    let viewer = s.viewer_kubeconfig();
    let denied = s.kubectl_as(&viewer, &["create", "namespace", "v1"], None);
    assert!(
        denied.err().contains("namespaces is forbidden: User \"berth-viewer\" cannot create resource \"namespaces\" in API group \"\" at the cluster scope"),
        "{}",
        denied.stderr
    );
    let read = s.kubectl_as(&viewer, &["get", "namespaces", "-o", "name"], None);
    assert!(read.ok().contains("namespace/default"), "{}", read.stdout);

    let text = std::fs::read_to_string(s.kubeconfig()).unwrap();
    let token_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap();
    let forged = text.replace(token_line, "    token: not-a-valid-token");
    let path = s.file("forged.kubeconfig", &forged);
    let r = s.kubectl_as(std::path::Path::new(&path), &["get", "pods"], None);
    assert!(
        r.err()
            .contains("error: You must be logged in to the server (Unauthorized)"),
        "{}",
        r.stderr
    );
}

#[test]
fn default_namespaces_and_service_accounts_exist_at_first_start() {
    let s = Server::start();
    let ns = s.kubectl(&["get", "namespaces", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.ok().lines().any(|l| l == format!("namespace/{n}")),
            "{}",
            ns.stdout
        );
    }
    assert_eq!(
        s.kubectl(&["create", "namespace", "team2"]).ok().trim(),
        "namespace/team2 created"
    );
    let sa = s.kubectl(&[
        "get",
        "serviceaccount",
        "default",
        "-n",
        "team2",
        "-o",
        "name",
    ]);
    assert_eq!(sa.ok().trim(), "serviceaccount/default");
    let missing = s.kubectl(&[
        "create",
        "secret",
        "generic",
        "x",
        "--from-literal=a=b",
        "-n",
        "nope",
    ]);
    assert!(
        missing.err().contains("namespaces \"nope\" not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn rotated_key_still_decrypts_secrets_after_restart() {
    let s = Server::start();
    create_registry_secret(&s, None).ok();
    let before = s
        .kubectl(&["get", "secret", "myregistrykey", "-o", "jsonpath={.data}"])
        .ok()
        .to_string();
    let mut s = s;
    let status = s.stop();
    assert!(status.success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["secrets", "rotate-key", "--data-dir"])
        .arg(s.data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 rewritten"), "{text}");
    let s = s.restart_stopped();
    let after = s.kubectl(&["get", "secret", "myregistrykey", "-o", "jsonpath={.data}"]);
    assert_eq!(after.ok(), before);
}
